//! The static token file (`--token-auth-file`): CSV lines `token,user,uid[,"group1,group2"]`,
//! read as upstream's `tokenfile` authenticator reads them (Go's `encoding/csv` rules).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::auth::UserIdentity;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("failed to read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "token file '{path}' must have at least 3 columns (token, user name, user uid), found {found}"
    )]
    Columns { path: PathBuf, found: usize },
    #[error("token file '{path}' line {line}: {reason}")]
    Csv {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
}

/// Tokens from a token file, each naming a user.
#[derive(Default, Clone)]
pub struct StaticTokens {
    tokens: HashMap<String, UserIdentity>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl StaticTokens {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<StaticTokens, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the file's contents; `path` is only for messages. Empty tokens are skipped and a
    /// later duplicate wins, as upstream (which only warns about both).
    pub fn parse(path: &Path, text: &str) -> Result<StaticTokens, TokenFileError> {
        let mut tokens = HashMap::new();
        for record in parse_csv(path, text)? {
            if record.len() < 3 {
                return Err(TokenFileError::Columns {
                    path: path.to_path_buf(),
                    found: record.len(),
                });
            }
            let mut fields = record.into_iter();
            let (Some(token), Some(name), Some(uid)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if token.is_empty() {
                tracing::warn!(path = %path.display(), "empty token in token file");
                continue;
            }
            let groups = fields
                .next()
                .map(|g| g.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            if tokens.contains_key(&token) {
                tracing::warn!(path = %path.display(), user = %name, "duplicate token in token file");
            }
            tokens.insert(
                token,
                UserIdentity {
                    name,
                    uid,
                    groups,
                    extra: Default::default(),
                },
            );
        }
        Ok(StaticTokens { tokens })
    }

    /// The user a token names.
    pub fn get(&self, token: &str) -> Option<&UserIdentity> {
        self.tokens.get(token)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Go `encoding/csv` with a variable number of fields: `,` separates, `"` quotes (with `""` for
/// a quote, newlines allowed inside), blank lines are skipped, `\r\n` is a newline, and a bare
/// quote inside an unquoted field is an error.
fn parse_csv(path: &Path, text: &str) -> Result<Vec<Vec<String>>, TokenFileError> {
    let err = |line: usize, reason: &'static str| TokenFileError::Csv {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let text = text.replace("\r\n", "\n");
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        if chars.peek() == Some(&'\n') {
            chars.next();
            line += 1;
            continue;
        }
        let mut record = Vec::new();
        loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(err(line, "extraneous or missing \" in quoted-field")),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                if !matches!(chars.peek(), None | Some(',') | Some('\n')) {
                    return Err(err(line, "extraneous or missing \" in quoted-field"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '\n' {
                        break;
                    }
                    if c == '"' {
                        return Err(err(line, "bare \" in non-quoted-field"));
                    }
                    field.push(c);
                    chars.next();
                }
            }
            record.push(field);
            match chars.next() {
                Some(',') => continue,
                Some(_) => {
                    line += 1;
                    break;
                }
                None => break,
            }
        }
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StaticTokens, TokenFileError> {
        StaticTokens::parse(Path::new("tokens.csv"), text)
    }

    #[test]
    fn lines_name_users_with_optional_groups() {
        let tokens = parse(
            "t1,alice,uid-1,\"dev,ops\"\r\n\nt2,bob,uid-2\n,nobody,uid-3\n\"t,4\",\"carol \"\"c\"\"\",uid-4,solo\nt2,bob2,uid-5\n",
        )
        .unwrap();
        type User<'a> = (&'a str, &'a str, Vec<&'a str>);
        let table: [(&str, Option<User>); 5] = [
            ("t1", Some(("alice", "uid-1", vec!["dev", "ops"]))),
            ("t2", Some(("bob2", "uid-5", vec![]))),
            ("t,4", Some(("carol \"c\"", "uid-4", vec!["solo"]))),
            ("", None),
            ("t3", None),
        ];
        for (token, want) in table {
            let got = tokens.get(token).map(|u| {
                (
                    u.name.as_str(),
                    u.uid.as_str(),
                    u.groups.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{token}");
        }
        assert_eq!(tokens.len(), 3);
    }

    #[test]
    fn malformed_files_are_errors() {
        let table = [
            (
                "t1,alice\n",
                "must have at least 3 columns (token, user name, user uid), found 2",
            ),
            ("t1,al\"ice,uid\n", "bare \" in non-quoted-field"),
            (
                "\"t1,alice,uid\n",
                "extraneous or missing \" in quoted-field",
            ),
            (
                "\"t1\"x,alice,uid\n",
                "extraneous or missing \" in quoted-field",
            ),
        ];
        for (text, message) in table {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(message), "{text:?}: {e}");
        }
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn load_reports_the_path() {
        let e = StaticTokens::load(Path::new("/nonexistent/tokens.csv")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tokens.csv"));
    }
}
