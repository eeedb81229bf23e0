//! Reading facts back out of stored certificates: SANs, key identifiers, whether a key
//! belongs to a certificate, expiry. Read-only; never writes or signs anything.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{KeyPair, SanType};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::{DAY, unix_seconds};

/// A comparable form of the SANs this module issues.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SanKey {
    Dns(String),
    Ip(IpAddr),
    Unsupported,
}

impl From<&SanType> for SanKey {
    fn from(san: &SanType) -> Self {
        match san {
            SanType::DnsName(name) => SanKey::Dns(name.as_str().to_owned()),
            SanType::IpAddress(ip) => SanKey::Ip(*ip),
            _ => SanKey::Unsupported,
        }
    }
}

pub(crate) fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

pub(crate) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

pub(crate) fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

pub(crate) fn cert_sans(cert: &X509Certificate<'_>) -> BTreeSet<SanKey> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(SanKey::Dns((*dns).to_owned())),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(SanKey::Ip),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// Days left before a PEM certificate expires (negative once expired); for `certificate check`.
pub fn days_until_expiry(cert_pem: &str, now: SystemTime) -> Option<i64> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let seconds = cert.validity().not_after.timestamp() - unix_seconds(now);
    Some(seconds.div_euclid(i64::try_from(DAY.as_secs()).unwrap_or(86_400)))
}

/// What `certificate check` shows about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// `CN=...,O=...` style subject, as x509 prints it.
    pub subject: String,
    /// Extended key usages (`ServerAuth`, `ClientAuth`) or `CA` for a CA certificate.
    pub usages: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Hex serial number.
    pub serial: String,
}

/// Summarizes the first certificate of a PEM file; `None` when it does not parse.
pub fn summarize(cert_pem: &str) -> Option<CertSummary> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let mut usages = Vec::new();
    if cert.is_ca() {
        usages.push("CA".to_owned());
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            usages.push("ServerAuth".to_owned());
        }
        if eku.value.client_auth {
            usages.push("ClientAuth".to_owned());
        }
    }
    Some(CertSummary {
        subject: cert.subject().to_string(),
        usages,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.raw_serial_as_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_sans_decode_from_four_or_sixteen_bytes_only() {
        let v6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let table: [(&[u8], Option<&str>); 4] = [
            (&[10, 43, 0, 1], Some("10.43.0.1")),
            (&v6, Some("::1")),
            (&[1, 2, 3], None),
            (&[], None),
        ];
        for (bytes, expected) in table {
            let expected = expected.map(|s| s.parse::<IpAddr>().unwrap());
            assert_eq!(ip_from_bytes(bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn expiry_of_garbage_is_unknown() {
        assert_eq!(days_until_expiry("", SystemTime::now()), None);
        assert_eq!(days_until_expiry("not pem", SystemTime::now()), None);
    }
}
