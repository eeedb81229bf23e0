//! Image references parsed and normalised as docker/distribution's `reference` package does
//! (`busybox` → `docker.io/library/busybox:latest`), with its error messages. Pure.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use thiserror::Error;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a string is not an image reference (distribution's messages, word for word).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name must be lowercase")]
    Uppercase,
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    #[error("invalid repository name ({name}), cannot specify 64-byte hexadecimal strings")]
    HexName { name: String },
    #[error("invalid checksum digest format")]
    DigestFormat,
    #[error("unsupported digest algorithm")]
    DigestAlgorithm,
    #[error("invalid checksum digest length")]
    DigestLength,
}

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host and optional port (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// Repository path (`library/busybox`).
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let path_component = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
    let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let host = format!(r"(?:{domain_component}(?:\.{domain_component})*|\[[a-fA-F0-9:]+\])");
    let domain = format!(r"{host}(?::[0-9]+)?");
    let name = format!(r"(?:{domain}/)?{path_component}(?:/{path_component})*");
    let tag = r"[\w][\w.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    let re = format!(r"^({name})(?::({tag}))?(?:@({digest}))?$");
    Regex::new(&re).unwrap_or_else(|_| unreachable!("static reference grammar compiles"))
});

static HEX64: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-f0-9]{64}$").unwrap_or_else(|_| unreachable!("static regex compiles"))
});

impl Reference {
    /// Parses a reference as users write it, normalising the domain (`docker.io`, `library/`).
    /// Does not add a default tag: see [`Reference::with_default_tag`].
    pub fn parse_normalized(s: &str) -> Result<Self, ReferenceError> {
        if HEX64.is_match(s) {
            return Err(ReferenceError::HexName {
                name: s.to_string(),
            });
        }
        let (domain, remainder) = split_docker_domain(s);
        let name_part = remainder
            .split_once([':', '@'])
            .map_or(remainder.as_str(), |(n, _)| n);
        if name_part.to_lowercase() != name_part {
            return Err(ReferenceError::Uppercase);
        }
        Self::parse(&format!("{domain}/{remainder}"))
    }

    /// Parses a fully qualified reference (no normalisation), as distribution's `Parse`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let Some(caps) = REFERENCE.captures(s) else {
            if s.is_empty() {
                return Err(ReferenceError::NameEmpty);
            }
            if REFERENCE.is_match(&s.to_lowercase()) {
                return Err(ReferenceError::Uppercase);
            }
            return Err(ReferenceError::InvalidFormat);
        };
        let name = caps.get(1).map_or("", |m| m.as_str());
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        let (domain, path) = match name.split_once('/') {
            Some((d, p)) if d.contains(['.', ':']) || d == "localhost" || d != d.to_lowercase() => {
                (d.to_string(), p.to_string())
            }
            _ => (String::new(), name.to_string()),
        };
        let tag = caps.get(2).map(|m| m.as_str().to_string());
        let digest = match caps.get(3) {
            Some(m) => Some(validate_digest(m.as_str())?),
            None => None,
        };
        Ok(Self {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Adds `:latest` when there is neither tag nor digest (the kubelet's `applyDefaultImageTag`).
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_string());
        }
        self
    }

    /// `domain/path`.
    pub fn repository(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// What the manifest is fetched by: the digest when there is one, else the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits the registry host off as distribution's `splitDockerDomain`: the first component is a
/// host only when it has a `.` or `:`, is `localhost`, or has upper case letters.
fn split_docker_domain(s: &str) -> (String, String) {
    let (mut domain, mut remainder) = match s.split_once('/') {
        Some((d, r)) if d.contains(['.', ':']) || d == "localhost" || d != d.to_lowercase() => {
            (d.to_string(), r.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), s.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

/// Checks a digest as go-digest's `Validate`: known algorithm, right length, lowercase hex.
fn validate_digest(d: &str) -> Result<String, ReferenceError> {
    let (alg, hex) = d.split_once(':').ok_or(ReferenceError::DigestFormat)?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::DigestAlgorithm),
    };
    if hex.len() != len {
        return Err(ReferenceError::DigestLength);
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ReferenceError::DigestFormat);
    }
    Ok(d.to_string())
}

/// The kubelet's message for an image name it cannot parse (waiting reason `InvalidImageName`).
pub fn invalid_image_name_message(image: &str, err: &ReferenceError) -> String {
    format!(
        "Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: {err}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_references_as_distribution() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
            ("foo/bar/baz:v1", "docker.io/foo/bar/baz:v1"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
            ("[::1]:5000/x:y", "[::1]:5000/x:y"),
            ("ghcr.io/a_b/c__d-e.f", "ghcr.io/a_b/c__d-e.f:latest"),
            ("Example.com/x", "Example.com/x:latest"),
        ];
        for (input, want) in cases {
            let r = Reference::parse_normalized(input).map(Reference::with_default_tag);
            assert_eq!(r.map(|r| r.to_string()).as_deref(), Ok(*want), "{input}");
        }
    }

    #[test]
    fn keeps_tag_and_digest() {
        let r = Reference::parse_normalized(&format!("host:5000/a/b:t@{D}")).unwrap();
        assert_eq!(r.domain, "host:5000");
        assert_eq!(r.path, "a/b");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.object(), D);
        let r = Reference::parse_normalized(&format!("busybox@{D}"))
            .unwrap()
            .with_default_tag();
        assert_eq!(r.tag, None, "no default tag with a digest");
    }

    #[test]
    fn rejects_invalid_names_with_upstream_messages() {
        let long = format!("a/{}", "b".repeat(260));
        let cases: &[(&str, &str)] = &[
            ("", "invalid reference format"),
            (
                "Busybox",
                "invalid reference format: repository name must be lowercase",
            ),
            (
                "foo/Bar",
                "invalid reference format: repository name must be lowercase",
            ),
            ("busybox:", "invalid reference format"),
            ("-busybox", "invalid reference format"),
            ("a//b", "invalid reference format"),
            ("busybox:tag with space", "invalid reference format"),
            ("x@sha256:abc", "invalid reference format"),
            (
                "x@md5:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm",
            ),
            (
                "x@sha256:0123456789abcdef0123456789abcdef",
                "invalid checksum digest length",
            ),
            (
                &long,
                "repository name must not be more than 255 characters",
            ),
            (
                &D[7..],
                "invalid repository name (e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855), cannot specify 64-byte hexadecimal strings",
            ),
        ];
        for (input, want) in cases {
            let err = Reference::parse_normalized(input).unwrap_err();
            assert_eq!(err.to_string(), *want, "{input:?}");
        }
        assert_eq!(Reference::parse("").unwrap_err(), ReferenceError::NameEmpty);
    }

    #[test]
    fn invalid_image_name_message_matches_kubelet() {
        assert_eq!(
            invalid_image_name_message("Foo", &ReferenceError::Uppercase),
            "Failed to apply default image tag \"Foo\": couldn't parse image name \"Foo\": invalid reference format: repository name must be lowercase"
        );
    }
}
