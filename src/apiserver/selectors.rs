//! Label selectors (every operator upstream's `labels.Parse` accepts) and field selectors.

use std::collections::BTreeMap;

use super::errors::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut p = Parser {
            chars: s.chars().collect(),
            pos: 0,
            src: s,
        };
        let mut reqs = Vec::new();
        p.skip_ws();
        if p.at_end() {
            return Ok(LabelSelector(reqs));
        }
        loop {
            reqs.push(p.requirement()?);
            p.skip_ws();
            if p.at_end() {
                break;
            }
            p.expect(',')?;
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::GreaterThan(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l > *n),
            Requirement::LessThan(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l < *n),
        })
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> ApiError {
        ApiError::BadRequest(format!(
            "unable to parse requirement: found '{}', expected: {what} in label selector {:?}",
            self.peek()
                .map(String::from)
                .unwrap_or_else(|| "EOF".into()),
            self.src
        ))
    }

    fn expect(&mut self, c: char) -> Result<(), ApiError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("'{c}'")))
        }
    }

    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn requirement(&mut self) -> Result<Requirement, ApiError> {
        self.skip_ws();
        if self.peek() == Some('!') {
            self.pos += 1;
            let key = self.key()?;
            return Ok(Requirement::DoesNotExist(key));
        }
        let key = self.key()?;
        self.skip_ws();
        match self.peek() {
            None | Some(',') => Ok(Requirement::Exists(key)),
            Some('=') => {
                self.pos += 1;
                if self.peek() == Some('=') {
                    self.pos += 1;
                }
                Ok(Requirement::Equals(key, self.value()?))
            }
            Some('!') => {
                self.pos += 1;
                if self.peek() != Some('=') {
                    return Err(self.err("'='"));
                }
                self.pos += 1;
                Ok(Requirement::NotEquals(key, self.value()?))
            }
            Some('>') | Some('<') => {
                let gt = self.peek() == Some('>');
                self.pos += 1;
                let v = self.value()?;
                let n = v.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer in label selector {:?}",
                        self.src
                    ))
                })?;
                Ok(if gt {
                    Requirement::GreaterThan(key, n)
                } else {
                    Requirement::LessThan(key, n)
                })
            }
            Some(_) => {
                let op = self.word();
                match op.as_str() {
                    "in" => Ok(Requirement::In(key, self.set()?)),
                    "notin" => Ok(Requirement::NotIn(key, self.set()?)),
                    _ => Err(self.err("'=', '!=', '==', 'in', notin'")),
                }
            }
        }
    }

    fn key(&mut self) -> Result<String, ApiError> {
        let k = self.word();
        if k.is_empty() {
            return Err(self.err("identifier"));
        }
        if !valid_label_key(&k) {
            return Err(ApiError::BadRequest(format!(
                "unable to parse requirement: invalid label key {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            )));
        }
        Ok(k)
    }

    fn value(&mut self) -> Result<String, ApiError> {
        let v = self.word();
        if !v.is_empty() && !valid_label_value(&v) {
            return Err(ApiError::BadRequest(format!(
                "unable to parse requirement: invalid label value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            )));
        }
        Ok(v)
    }

    fn set(&mut self) -> Result<Vec<String>, ApiError> {
        self.expect('(')?;
        let mut out = Vec::new();
        loop {
            out.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(self.err("',' or ')'")),
            }
        }
    }
}

fn valid_label_key(k: &str) -> bool {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return false;
            }
            name
        }
        None => k,
    };
    !name.is_empty() && name.len() <= 63 && valid_label_value(name)
}

fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A field selector: `a=b,c!=d` (with `==` too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        for term in split_unescaped(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            out.push((field.trim().to_string(), eq, unescape(value.trim())));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields this selector names.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _, _)| f.as_str())
    }

    /// A single `metadata.name=X` requirement, which allows a point read.
    pub fn single_name(&self) -> Option<&str> {
        match self.0.as_slice() {
            [(f, true, v)] if f == "metadata.name" => Some(v),
            _ => None,
        }
    }

    pub fn matches(&self, fields: &[(&str, String)]) -> bool {
        self.0.iter().all(|(f, eq, v)| {
            let actual = fields.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str());
            (actual.unwrap_or("") == v) == *eq
        })
    }
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_support_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("n>4", true),
            ("n<5", false),
            ("example.com/owner", false),
        ];
        for (sel, want) in cases {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn bad_label_selectors_are_bad_requests() {
        for sel in [
            "app=",
            "=x",
            "app in web",
            "app in (a",
            "app=a b",
            "a=b,,",
            "app notin",
            "n>x",
        ] {
            let r = LabelSelector::parse(sel);
            if sel == "app=" {
                assert!(r.is_ok());
                continue;
            }
            assert!(matches!(r, Err(ApiError::BadRequest(_))), "{sel}");
        }
    }

    #[test]
    fn field_selectors_match_equal_and_not_equal() {
        let fields = vec![
            ("metadata.name", "a".to_string()),
            ("status.phase", "Running".to_string()),
        ];
        assert!(
            FieldSelector::parse("status.phase=Running")
                .unwrap()
                .matches(&fields)
        );
        assert!(
            !FieldSelector::parse("status.phase!=Running")
                .unwrap()
                .matches(&fields)
        );
        assert!(
            FieldSelector::parse("metadata.name==a,status.phase!=Pending")
                .unwrap()
                .matches(&fields)
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=a")
                .unwrap()
                .single_name(),
            Some("a")
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
