//! Image references as users write them (`busybox`, `nginx:1.25`, `ghcr.io/x/y@sha256:…`),
//! normalised the way docker and containerd do (`docker.io/library/busybox:latest`). Pure.

use thiserror::Error;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";

/// Why a string is not an image reference.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference {reference:?} is empty")]
    Empty { reference: String },
    #[error("image reference {reference:?} has an invalid repository path component {component:?}")]
    InvalidPath {
        reference: String,
        component: String,
    },
    #[error("image reference {reference:?} has an invalid tag {tag:?}")]
    InvalidTag { reference: String, tag: String },
    #[error("image reference {reference:?} has an invalid digest {digest:?}")]
    InvalidDigest { reference: String, digest: String },
}

/// A parsed, fully qualified image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path, e.g. `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// `domain/path` without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses and normalises a reference: adds `docker.io`, `library/` for official images and the
/// `latest` tag when neither tag nor digest is given.
pub fn normalize(reference: &str) -> Result<Reference, ReferenceError> {
    let input = reference.trim();
    if input.is_empty() {
        return Err(ReferenceError::Empty {
            reference: reference.to_string(),
        });
    }
    let (name_and_tag, digest) = match input.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (input, None),
    };
    if let Some(d) = digest
        && !valid_digest(d)
    {
        return Err(ReferenceError::InvalidDigest {
            reference: reference.to_string(),
            digest: d.to_string(),
        });
    }
    // The tag separator is the last ':' after the last '/' (a ':' before it is a port).
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag
        .get(last_slash..)
        .and_then(|tail| tail.rfind(':'))
    {
        Some(i) => {
            let at = last_slash + i;
            (
                name_and_tag.get(..at).unwrap_or_default(),
                name_and_tag.get(at + 1..),
            )
        }
        None => (name_and_tag, None),
    };
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(ReferenceError::InvalidTag {
            reference: reference.to_string(),
            tag: t.to_string(),
        });
    }
    let (domain, path) = split_domain(name);
    if path.is_empty() {
        return Err(ReferenceError::Empty {
            reference: reference.to_string(),
        });
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(ReferenceError::InvalidPath {
                reference: reference.to_string(),
                component: component.to_string(),
            });
        }
    }
    let tag = match (tag, digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_string()),
    };
    Ok(Reference {
        domain,
        path,
        tag,
        digest: digest.map(str::to_string),
    })
}

/// [`normalize`] rendered as a string.
pub fn normalize_name(reference: &str) -> Result<String, ReferenceError> {
    normalize(reference).map(|r| r.to_string())
}

fn split_domain(name: &str) -> (String, String) {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !rest.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{rest}")
    } else {
        rest
    };
    (domain, path)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or_default();
        if alnum(b) {
            i += 1;
            continue;
        }
        // a separator run: '.', '_', '__' or any number of '-'
        let start = i;
        while bytes.get(i).is_some_and(|b| !alnum(*b)) {
            i += 1;
        }
        let sep = bytes.get(start..i).unwrap_or_default();
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|b| *b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = t.chars();
    match chars.next() {
        Some(c) if word(c) => {}
        _ => return false,
    }
    t.len() <= 128 && chars.all(|c| word(c) || c == '.' || c == '-')
}

/// `algorithm:hex` with at least 32 hex characters.
fn valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn short_names_are_normalised_like_docker() {
        let with_digest = format!("busybox@{D}");
        let with_digest_want = format!("docker.io/library/busybox@{D}");
        let tag_and_digest = format!("ghcr.io/o/app:v1@{D}");
        let cases: Vec<(&str, &str)> = vec![
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/app", "docker.io/user/app:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:v2", "localhost:5000/app:v2"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("ghcr.io/a/b/c", "ghcr.io/a/b/c:latest"),
            (
                "my-reg:443/a__b/c.d/e--f:t_1.2-x",
                "my-reg:443/a__b/c.d/e--f:t_1.2-x",
            ),
            (&with_digest, &with_digest_want),
            (&tag_and_digest, &tag_and_digest),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_name(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn invalid_references_are_rejected() {
        let cases = [
            ("", "empty"),
            ("Busybox", "path"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("a//b", "path"),
            ("a/-b", "path"),
            ("a..b", "path"),
            ("busybox@sha256:xyz", "digest"),
            ("busybox@nodigest", "digest"),
        ];
        for (input, kind) in cases {
            let err = normalize(input).expect_err(input);
            let got = match err {
                ReferenceError::Empty { .. } => "empty",
                ReferenceError::InvalidPath { .. } => "path",
                ReferenceError::InvalidTag { .. } => "tag",
                ReferenceError::InvalidDigest { .. } => "digest",
            };
            assert_eq!(got, kind, "{input}");
        }
    }

    #[test]
    fn repository_drops_tag_and_digest() {
        let r = normalize(&format!("nginx:1@{D}")).unwrap();
        assert_eq!(r.repository(), "docker.io/library/nginx");
    }
}
