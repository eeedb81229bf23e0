//! Deciding whether a stored leaf certificate still fits, and re-issuing it from its CA when it
//! does not (expiry window, changed subject or SANs, another CA, forced rotation). Never touches a CA.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::inspect::{SanKey, authority_key_id, cert_sans, key_matches};
use super::{
    CERT_MODE, CertKeyPair, CertificateAuthority, KEY_MODE, LeafSpec, Lifetimes, PkiError, Reissue,
    issue_leaf, read_optional, unix_seconds, write_file,
};

/// When and how leaves are (re-)issued in one load.
pub(super) struct Renewal {
    pub(super) lifetimes: Lifetimes,
    pub(super) reissue: Reissue,
    pub(super) now: SystemTime,
}

/// Why a stored leaf must be re-issued, if it must.
fn leaf_needs_reissue(
    ca: &CertificateAuthority,
    spec: &LeafSpec,
    cert: &X509Certificate<'_>,
    key: &KeyPair,
    renew: &Renewal,
) -> Option<&'static str> {
    if renew.reissue == Reissue::All {
        return Some("rotation requested");
    }
    if !key_matches(cert, key) {
        return Some("key does not match certificate");
    }
    if cert.issuer().as_raw() != ca.subject_raw.as_slice()
        || (ca.subject_key_id.is_some() && authority_key_id(cert) != ca.subject_key_id)
    {
        return Some("signed by another CA");
    }
    let renew_before = i64::try_from(renew.lifetimes.renew_before.as_secs()).unwrap_or(i64::MAX);
    let renew_at = unix_seconds(renew.now).saturating_add(renew_before);
    if cert.validity().not_after.timestamp() <= renew_at {
        return Some("expires soon");
    }
    let common_names: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if common_names.last() != Some(&spec.common_name.as_str()) {
        return Some("common name changed");
    }
    let orgs: BTreeSet<&str> = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let wanted_orgs: BTreeSet<&str> = spec.organizations.iter().map(String::as_str).collect();
    if orgs != wanted_orgs {
        return Some("organizations changed");
    }
    let present = cert_sans(cert);
    if spec
        .sans
        .iter()
        .any(|san| !present.contains(&SanKey::from(san)))
    {
        return Some("missing subject alternative name");
    }
    None
}

/// Loads a leaf certificate and key, re-issuing the certificate from `ca` when it is missing or
/// no longer fits `spec`. The key is kept when it is still usable.
pub(super) fn ensure_leaf(
    dir: &Path,
    ca: &CertificateAuthority,
    spec: &LeafSpec,
    renew: &Renewal,
) -> Result<CertKeyPair, PkiError> {
    let cert_path = dir.join(spec.cert_file);
    let key_path = dir.join(spec.key_file);
    let stored_key = match read_optional(&key_path)? {
        Some(pem) => match KeyPair::from_pem(&pem) {
            Ok(key) => Some((key, pem)),
            Err(error) => {
                tracing::warn!(path = %key_path.display(), %error, "replacing unreadable key");
                None
            }
        },
        None => None,
    };

    if let (Some((key, key_pem)), Some(cert_pem)) = (&stored_key, read_optional(&cert_path)?) {
        let reason = match CertificateDer::from_pem_slice(cert_pem.as_bytes()) {
            Ok(der) => match X509Certificate::from_der(&der) {
                Ok((_, cert)) => leaf_needs_reissue(ca, spec, &cert, key, renew),
                Err(_) => Some("certificate does not parse"),
            },
            Err(_) => Some("certificate does not decode"),
        };
        match reason {
            None => {
                return Ok(CertKeyPair {
                    cert_pem,
                    key_pem: key_pem.clone(),
                });
            }
            Some(reason) => {
                tracing::info!(path = %cert_path.display(), reason, "re-issuing certificate");
            }
        }
    }

    let (key, key_pem) = match stored_key {
        Some(pair) => pair,
        None => {
            let key = KeyPair::generate().map_err(|source| PkiError::GenerateKey { source })?;
            let pem = key.serialize_pem();
            write_file(&key_path, &pem, KEY_MODE)?;
            (key, pem)
        }
    };
    let leaf_pem = issue_leaf(ca, spec, &key, renew.now, renew.lifetimes.leaf)?;
    let mut cert_pem = leaf_pem;
    cert_pem.push_str(&ca.cert_pem);
    write_file(&cert_path, &cert_pem, CERT_MODE)?;
    Ok(CertKeyPair { cert_pem, key_pem })
}
