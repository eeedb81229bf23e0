//! Just enough DER to give a certificate the exact subject Kubernetes expects. rcgen keeps one
//! value per attribute type, but Kubernetes encodes every group as its own `O` attribute, so
//! the subject is encoded here and spliced into the rcgen-built certificate, which is then
//! re-signed. Never parses untrusted input: it only walks DER that rcgen just produced.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{KeyPair, SigningKey};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_OID: u8 = 0x06;
const TAG_BIT_STRING: u8 = 0x03;
/// `[0] EXPLICIT Version` at the start of a v3 TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// id-at-organizationName, 2.5.4.10.
const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// Why a generated certificate could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    /// The certificate does not have the layout RFC 5280 prescribes.
    #[error("unexpected certificate layout")]
    Layout,
    /// The new TBSCertificate could not be signed.
    #[error("signing failed")]
    Sign,
}

fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // Short form; the cast cannot truncate below 0x80.
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_length(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// One DER element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tlv<'a> {
    tag: u8,
    /// The value bytes.
    content: &'a [u8],
    /// Tag, length and value together.
    element: &'a [u8],
}

/// Splits the first element off `input`, returning it and the bytes after it.
fn split_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, after_len) = after_tag.split_first()?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > std::mem::size_of::<usize>() {
            return None;
        }
        let len_bytes = after_len.get(..count)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    let element = input.get(..end)?;
    let content = element.get(header..)?;
    let rest = input.get(end..)?;
    Some((
        Tlv {
            tag,
            content,
            element,
        },
        rest,
    ))
}

/// The children of a constructed element's content.
fn children(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (child, rest) = split_tlv(content)?;
        out.push(child);
        content = rest;
    }
    Some(out)
}

/// A DER `Name` with one RDN per organization, then the common name (Go's `pkix.Name` order).
/// An empty common name is omitted, as Go does.
pub(crate) fn encode_subject(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        let mut pair = tlv(TAG_OID, oid);
        pair.extend(tlv(TAG_UTF8_STRING, value.as_bytes()));
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &pair))
    };
    let mut rdns = Vec::new();
    for org in organizations {
        rdns.extend(attribute(&OID_ORGANIZATION, org));
    }
    if !common_name.is_empty() {
        rdns.extend(attribute(&OID_COMMON_NAME, common_name));
    }
    tlv(TAG_SEQUENCE, &rdns)
}

/// Replaces the subject of `cert_der` with `subject_der` and signs the result with
/// `issuer_key` (the key that signed the original, so the signature algorithm is unchanged).
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    issuer_key: &KeyPair,
) -> Result<Vec<u8>, DerError> {
    let (cert, rest) = split_tlv(cert_der).ok_or(DerError::Layout)?;
    if cert.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(DerError::Layout);
    }
    let parts = children(cert.content).ok_or(DerError::Layout)?;
    let [tbs, algorithm, signature] = parts.as_slice() else {
        return Err(DerError::Layout);
    };
    if (tbs.tag, algorithm.tag, signature.tag) != (TAG_SEQUENCE, TAG_SEQUENCE, TAG_BIT_STRING) {
        return Err(DerError::Layout);
    }
    let fields = children(tbs.content).ok_or(DerError::Layout)?;
    // version?, serialNumber, signature, issuer, validity, subject, ...
    let subject_index = match fields.first() {
        Some(first) if first.tag == TAG_VERSION => 5,
        _ => 4,
    };
    if fields.get(subject_index).map(|f| f.tag) != Some(TAG_SEQUENCE) {
        return Err(DerError::Layout);
    }
    let mut new_tbs_content = Vec::with_capacity(tbs.content.len() + subject_der.len());
    for (index, field) in fields.iter().enumerate() {
        if index == subject_index {
            new_tbs_content.extend_from_slice(subject_der);
        } else {
            new_tbs_content.extend_from_slice(field.element);
        }
    }
    let new_tbs = tlv(TAG_SEQUENCE, &new_tbs_content);
    let new_signature = issuer_key.sign(&new_tbs).map_err(|_| DerError::Sign)?;
    let mut bits = Vec::with_capacity(new_signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend(new_signature);
    let mut content = new_tbs;
    content.extend_from_slice(algorithm.element);
    content.extend(tlv(TAG_BIT_STRING, &bits));
    Ok(tlv(TAG_SEQUENCE, &content))
}

/// PEM-encodes a DER certificate (64-character base64 lines, as OpenSSL and Go write them).
pub(crate) fn certificate_pem(der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_short_and_long_forms() {
        let table: [(usize, &[u8]); 5] = [
            (0, &[0x00]),
            (0x7f, &[0x7f]),
            (0x80, &[0x81, 0x80]),
            (0x100, &[0x82, 0x01, 0x00]),
            (0x01_0000, &[0x83, 0x01, 0x00, 0x00]),
        ];
        for (len, expected) in table {
            let mut out = Vec::new();
            push_length(&mut out, len);
            assert_eq!(out, expected, "{len}");
        }
    }

    #[test]
    fn split_tlv_roundtrips_and_rejects_truncation() {
        let long = vec![7u8; 300];
        for content in [&b""[..], b"abc", &long] {
            let encoded = tlv(0x04, content);
            let (got, rest) = split_tlv(&encoded).unwrap();
            let expected = Tlv {
                tag: 0x04,
                content,
                element: &encoded,
            };
            assert_eq!((got, rest), (expected, &[][..]));
            assert!(split_tlv(&encoded[..encoded.len() - 1]).is_none());
        }
        assert!(split_tlv(&[0x30]).is_none());
        assert!(split_tlv(&[0x30, 0x80]).is_none());
        assert!(split_tlv(&[0x30, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1]).is_none());
    }

    #[test]
    fn subject_lists_each_organization_then_the_common_name() {
        let subject = encode_subject("u", &["a".into(), "b".into()]);
        let (name, _) = split_tlv(&subject).unwrap();
        let rdns = children(name.content).unwrap();
        assert_eq!(rdns.len(), 3);
        let empty = encode_subject("", &[]);
        assert_eq!(empty, vec![0x30, 0x00]);
    }

    #[test]
    fn garbage_is_a_layout_error() {
        let key = KeyPair::generate().unwrap();
        let table: [&[u8]; 4] = [b"", b"\x30\x00", b"\x30\x03\x02\x01\x01", b"\x04\x00"];
        for input in table {
            assert_eq!(
                replace_subject(input, b"\x30\x00", &key),
                Err(DerError::Layout)
            );
        }
    }
}
