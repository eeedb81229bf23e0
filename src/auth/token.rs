//! Join tokens: the server token file (`K10<sha256 of the server CA>::server:<secret>`), the
//! parser for every form an agent may be given (full, bare password, bootstrap token), and
//! bootstrap token generation. Never logs or displays a secret through `Debug`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::Rng;
use sha2::{Digest, Sha256};

use super::pki::write_file_atomically;

/// Prefix of a full join token (k3s's "version 1" format).
pub const TOKEN_PREFIX: &str = "K10";
/// User name of the server token.
pub const SERVER_USER: &str = "server";
/// Length of the hex-encoded CA hash in a full token.
const CA_HASH_LEN: usize = 64;
/// Random bytes in a generated server secret (hex-encoded: 32 characters).
const SECRET_BYTES: usize = 16;
const BOOTSTRAP_ID_LEN: usize = 6;
const BOOTSTRAP_SECRET_LEN: usize = 16;
const BOOTSTRAP_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const TOKEN_FILE_MODE: u32 = 0o600;

/// Errors parsing, reading or writing tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is empty.
    #[error("token must not be empty")]
    Empty,
    /// The CA hash of a full token has the wrong length.
    #[error("invalid token CA hash length {len}: expected {CA_HASH_LEN} hex characters")]
    HashLength { len: usize },
    /// The token is none of the accepted forms.
    #[error(
        "invalid token format: expected K10<ca-hash>::<user>:<password>, a bootstrap token or a bare password"
    )]
    Format,
    /// A bootstrap token does not match `[a-z0-9]{6}.[a-z0-9]{16}`.
    #[error("invalid bootstrap token: expected [a-z0-9]{{6}}.[a-z0-9]{{16}}")]
    Bootstrap,
    /// The token file could not be read.
    #[error("failed to read token file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The token file could not be written.
    #[error("failed to write token file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// The directory of the token file could not be created.
    #[error("failed to create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    /// The token file holds something that is not a server token.
    #[error("invalid token in {path}: {source}")]
    Stored {
        path: PathBuf,
        source: Box<TokenError>,
    },
    /// The token file holds a bootstrap token instead of a user and password.
    #[error("token file {path} holds a bootstrap token, expected <user>:<password>")]
    StoredBootstrap { path: PathBuf },
    /// `--token` differs from the token the server was first started with.
    #[error(
        "the given token does not match the server token in {path}; use the original token or remove the file to change it"
    )]
    Mismatch { path: PathBuf },
    /// A token pins a different CA than the cluster's.
    #[error("token CA hash {token_hash} does not match the cluster CA certificate hash {ca_hash}")]
    CaHashMismatch { token_hash: String, ca_hash: String },
}

/// A kubeadm-style bootstrap token, `<id>.<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// A new random token.
    pub fn generate() -> BootstrapToken {
        let mut rng = rand::rng();
        let mut pick = |len: usize| -> String {
            (0..len)
                .map(|_| {
                    let index = rng.random_range(0..BOOTSTRAP_ALPHABET.len());
                    BOOTSTRAP_ALPHABET
                        .get(index)
                        .copied()
                        .map_or('0', char::from)
                })
                .collect()
        };
        let id = pick(BOOTSTRAP_ID_LEN);
        let secret = pick(BOOTSTRAP_SECRET_LEN);
        BootstrapToken { id, secret }
    }

    /// Parses `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub fn parse(token: &str) -> Result<BootstrapToken, TokenError> {
        let (id, secret) = token.split_once('.').ok_or(TokenError::Bootstrap)?;
        let valid = |part: &str, len: usize| {
            part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if valid(id, BOOTSTRAP_ID_LEN) && valid(secret, BOOTSTRAP_SECRET_LEN) {
            Ok(BootstrapToken {
                id: id.to_owned(),
                secret: secret.to_owned(),
            })
        } else {
            Err(TokenError::Bootstrap)
        }
    }

    /// Whether `token` is a well-formed bootstrap token.
    pub fn is_valid(token: &str) -> bool {
        Self::parse(token).is_ok()
    }

    /// The public token ID (the `bootstrap-token-<id>` Secret's suffix).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret half.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The credentials part of a join token.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenCredentials {
    /// `<user>:<password>`; the user is empty for a bare password.
    Password { username: String, password: String },
    /// A bootstrap token.
    Bootstrap(BootstrapToken),
}

impl fmt::Display for TokenCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenCredentials::Password { username, password } => {
                write!(f, "{username}:{password}")
            }
            TokenCredentials::Bootstrap(token) => write!(f, "{token}"),
        }
    }
}

impl fmt::Debug for TokenCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenCredentials::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            TokenCredentials::Bootstrap(token) => f.debug_tuple("Bootstrap").field(token).finish(),
        }
    }
}

/// A parsed join token: an optional pinned CA hash and the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the server CA PEM, when the token pins one.
    pub ca_hash: Option<String>,
    /// The credentials.
    pub credentials: TokenCredentials,
}

impl JoinToken {
    /// A full server token for the CA `ca_pem` and `secret`.
    pub fn server(ca_pem: &[u8], secret: &str) -> JoinToken {
        JoinToken {
            ca_hash: Some(ca_hash(ca_pem)),
            credentials: TokenCredentials::Password {
                username: SERVER_USER.to_owned(),
                password: secret.to_owned(),
            },
        }
    }

    /// Parses any form k3s accepts: `K10<hash>::<user>:<password>`, `K10<hash>::<bootstrap>`,
    /// `K10::<creds>` (no pinned CA), a bare bootstrap token, or a bare password (taken
    /// verbatim, with an empty user).
    pub fn parse(token: &str) -> Result<JoinToken, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        let Some(rest) = token.strip_prefix(TOKEN_PREFIX) else {
            let credentials = match BootstrapToken::parse(token) {
                Ok(bootstrap) => TokenCredentials::Bootstrap(bootstrap),
                Err(_) => TokenCredentials::Password {
                    username: String::new(),
                    password: token.to_owned(),
                },
            };
            return Ok(JoinToken {
                ca_hash: None,
                credentials,
            });
        };
        let (ca_hash, creds) = match rest.split_once("::") {
            Some((hash, creds)) => {
                if !hash.is_empty() && hash.len() != CA_HASH_LEN {
                    return Err(TokenError::HashLength { len: hash.len() });
                }
                ((!hash.is_empty()).then(|| hash.to_owned()), creds)
            }
            None => (None, rest),
        };
        let credentials = match BootstrapToken::parse(creds) {
            Ok(bootstrap) => TokenCredentials::Bootstrap(bootstrap),
            Err(_) => match creds.split_once(':') {
                Some((username, password)) if !password.is_empty() => TokenCredentials::Password {
                    username: username.to_owned(),
                    password: password.to_owned(),
                },
                _ => return Err(TokenError::Format),
            },
        };
        Ok(JoinToken {
            ca_hash,
            credentials,
        })
    }

    /// The password, or the whole bootstrap token, that authenticates the holder.
    pub fn secret(&self) -> String {
        match &self.credentials {
            TokenCredentials::Password { password, .. } => password.clone(),
            TokenCredentials::Bootstrap(token) => token.to_string(),
        }
    }

    /// Checks the CA a server presented against the pinned hash; a token without a hash accepts
    /// any CA (k3s only warns then).
    pub fn verify_ca(&self, ca_pem: &[u8]) -> Result<(), TokenError> {
        match &self.ca_hash {
            None => Ok(()),
            Some(pinned) => {
                let actual = ca_hash(ca_pem);
                if pinned.eq_ignore_ascii_case(&actual) {
                    Ok(())
                } else {
                    Err(TokenError::CaHashMismatch {
                        token_hash: pinned.clone(),
                        ca_hash: actual,
                    })
                }
            }
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = self.ca_hash.as_deref().unwrap_or("");
        write!(f, "{TOKEN_PREFIX}{hash}::{}", self.credentials)
    }
}

/// Hex SHA-256 of the CA certificate file's bytes (k3s's hash for a single-certificate CA).
pub fn ca_hash(ca_pem: &[u8]) -> String {
    Sha256::digest(ca_pem)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random server secret: 32 lowercase hex characters.
pub fn generate_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the server token file `<data-dir>/server/token`, creating it on first start with
/// `requested` (`--token`, any accepted form) or a random secret. The secret never changes
/// afterwards: a different `requested` is an error. The CA hash is rewritten if the CA changed.
pub fn load_or_create_server_token(
    path: &Path,
    ca_pem: &[u8],
    requested: Option<&str>,
) -> Result<JoinToken, TokenError> {
    let requested = requested
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(JoinToken::parse)
        .transpose()?;
    if let Some(token) = &requested {
        token.verify_ca(ca_pem)?;
    }

    let stored = match fs::read_to_string(path) {
        Ok(text) => Some(parse_stored(path, text.trim())?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(TokenError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };

    let secret = match (&stored, &requested) {
        (Some(stored), Some(requested)) if stored.secret() != requested.secret() => {
            return Err(TokenError::Mismatch {
                path: path.to_path_buf(),
            });
        }
        (Some(stored), _) => stored.secret(),
        (None, Some(requested)) => requested.secret(),
        (None, None) => generate_secret(),
    };
    let token = JoinToken::server(ca_pem, &secret);
    if stored.as_ref() != Some(&token) {
        write_token_file(path, &token)?;
    }
    Ok(token)
}

fn parse_stored(path: &Path, text: &str) -> Result<JoinToken, TokenError> {
    let token = JoinToken::parse(text).map_err(|source| TokenError::Stored {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    if matches!(token.credentials, TokenCredentials::Bootstrap(_)) {
        return Err(TokenError::StoredBootstrap {
            path: path.to_path_buf(),
        });
    }
    Ok(token)
}

fn write_token_file(path: &Path, token: &JoinToken) -> Result<(), TokenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| TokenError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let contents = format!("{token}\n");
    write_file_atomically(path, contents.as_bytes(), TOKEN_FILE_MODE).map_err(|source| {
        TokenError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn password(username: &str, password: &str) -> TokenCredentials {
        TokenCredentials::Password {
            username: username.into(),
            password: password.into(),
        }
    }

    fn bootstrap(token: &str) -> TokenCredentials {
        TokenCredentials::Bootstrap(BootstrapToken::parse(token).unwrap())
    }

    #[test]
    fn parse_accepts_every_k3s_form() {
        let full = format!("K10{HASH}::server:s3cret");
        let full_bootstrap = format!("K10{HASH}::abcdef.0123456789abcdef");
        let table = [
            (full.as_str(), Some(HASH), password("server", "s3cret")),
            ("K10::node:pw", None, password("node", "pw")),
            ("K10::user:pa:ss", None, password("user", "pa:ss")),
            ("K10user:pw", None, password("user", "pw")),
            (
                full_bootstrap.as_str(),
                Some(HASH),
                bootstrap("abcdef.0123456789abcdef"),
            ),
            (
                "abcdef.0123456789abcdef",
                None,
                bootstrap("abcdef.0123456789abcdef"),
            ),
            ("justasecret", None, password("", "justasecret")),
            ("user:pw", None, password("", "user:pw")),
        ];
        for (input, hash, credentials) in table {
            let token = JoinToken::parse(input).unwrap();
            assert_eq!(token.ca_hash.as_deref(), hash, "{input}");
            assert_eq!(token.credentials, credentials, "{input}");
        }
    }

    #[test]
    fn parse_rejects_malformed_tokens() {
        let table = [
            ("", "token must not be empty"),
            ("K10abc::server:pw", "invalid token CA hash length 3"),
            ("K10::server:", "invalid token format"),
            ("K10::nocolon", "invalid token format"),
            ("K10", "invalid token format"),
        ];
        for (input, message) in table {
            let err = JoinToken::parse(input).unwrap_err();
            assert!(err.to_string().starts_with(message), "{input}: {err}");
        }
    }

    #[test]
    fn display_roundtrips_through_parse() {
        let table = [
            JoinToken::server(CA, "0123"),
            JoinToken {
                ca_hash: None,
                credentials: password("node", "x"),
            },
            JoinToken {
                ca_hash: Some(HASH.into()),
                credentials: TokenCredentials::Bootstrap(BootstrapToken::generate()),
            },
        ];
        for token in table {
            assert_eq!(JoinToken::parse(&token.to_string()).unwrap(), token);
        }
    }

    #[test]
    fn server_token_has_k10_prefix_ca_hash_and_server_user() {
        let token = JoinToken::server(CA, "abc").to_string();
        let expected_hash = format!("{:x}", Sha256::digest(CA));
        assert_eq!(token, format!("K10{expected_hash}::server:abc"));
    }

    #[test]
    fn verify_ca_checks_the_pinned_hash_only_when_present() {
        let pinned = JoinToken::server(CA, "x");
        assert!(pinned.verify_ca(CA).is_ok());
        assert!(matches!(
            pinned.verify_ca(b"another CA"),
            Err(TokenError::CaHashMismatch { .. })
        ));
        let unpinned = JoinToken::parse("secret").unwrap();
        assert!(unpinned.verify_ca(b"anything").is_ok());
    }

    #[test]
    fn server_token_file_is_created_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("server").join("token");
        let first = load_or_create_server_token(&path, CA, None).unwrap();
        let secret = first.secret();
        assert_eq!(secret.len(), 32);
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{first}\n"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let second = load_or_create_server_token(&path, CA, None).unwrap();
        assert_eq!(first, second);
        // The same secret given as --token, bare or in full form, is accepted.
        for given in [secret.clone(), first.to_string()] {
            let again = load_or_create_server_token(&path, CA, Some(&given)).unwrap();
            assert_eq!(again, first);
        }
    }

    #[test]
    fn requested_token_is_used_on_first_start_and_must_match_later() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        let token = load_or_create_server_token(&path, CA, Some("mysecret")).unwrap();
        assert_eq!(token.secret(), "mysecret");
        let err = load_or_create_server_token(&path, CA, Some("other")).unwrap_err();
        assert!(matches!(err, TokenError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn requested_token_pinning_another_ca_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        let foreign = format!("K10{HASH}::server:pw");
        let err = load_or_create_server_token(&path, CA, Some(&foreign)).unwrap_err();
        assert!(matches!(err, TokenError::CaHashMismatch { .. }), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn stored_token_gets_the_new_ca_hash_but_keeps_its_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        let old = load_or_create_server_token(&path, b"old CA", None).unwrap();
        let new = load_or_create_server_token(&path, CA, None).unwrap();
        assert_eq!(old.secret(), new.secret());
        assert_eq!(new.ca_hash, Some(ca_hash(CA)));
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{new}\n"));
    }

    #[test]
    fn unusable_stored_tokens_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let table = [
            ("K10abc::server:pw", "invalid token in"),
            ("abcdef.0123456789abcdef", "holds a bootstrap token"),
        ];
        for (contents, message) in table {
            let path = tmp.path().join("token");
            fs::write(&path, contents).unwrap();
            let err = load_or_create_server_token(&path, CA, None).unwrap_err();
            assert!(err.to_string().contains(message), "{contents}: {err}");
        }
    }

    #[test]
    fn bootstrap_tokens_are_generated_and_validated() {
        for _ in 0..50 {
            let token = BootstrapToken::generate();
            let text = token.to_string();
            assert!(BootstrapToken::is_valid(&text), "{text}");
            assert_eq!(BootstrapToken::parse(&text).unwrap(), token);
            assert_eq!(token.id().len(), 6);
            assert_eq!(token.secret().len(), 16);
        }
        let table = [
            ("abcdef.0123456789abcdef", true),
            ("ABCDEF.0123456789abcdef", false),
            ("abcde.0123456789abcdef", false),
            ("abcdef.0123456789abcde", false),
            ("abcdef0123456789abcdef", false),
            ("abcdef.0123456789abcdef.", false),
            ("abc-ef.0123456789abcdef", false),
            ("", false),
        ];
        for (input, valid) in table {
            assert_eq!(BootstrapToken::is_valid(input), valid, "{input}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let token = JoinToken::server(CA, "topsecret");
        assert!(!format!("{token:?}").contains("topsecret"));
        let bootstrap = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert!(!format!("{bootstrap:?}").contains("0123456789abcdef"));
    }
}
