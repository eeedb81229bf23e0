//! Compact JWS tokens signed with ES256 (ECDSA P-256, SHA-256), the algorithm of the server's
//! service-account key. Pure: signs and verifies bytes, never decides what a token grants.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, BIT STRING of
/// 66 bytes); the 65-byte uncompressed point follows. Used to derive upstream's key id.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("service-account key is not a PKCS#8 PEM private key: {reason}")]
    KeyPem { reason: String },
    #[error("service-account key is not an ECDSA P-256 key: {reason}")]
    KeyType { reason: String },
    #[error("failed to sign token")]
    Sign,
    #[error("token is not a compact JWS with three parts")]
    Malformed,
    #[error("token {part} is not base64url-encoded JSON")]
    Encoding { part: &'static str },
    #[error("token algorithm {alg:?} is not supported")]
    Algorithm { alg: String },
    #[error("invalid signature, no keys found")]
    NoKeys,
    #[error("square/go-jose: error in cryptographic primitive")]
    Signature,
}

/// Signs tokens with one ES256 key; knows its key id (`kid`) as upstream derives it.
pub struct JwtSigner {
    key: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// Loads the PKCS#8 PEM private key (as `server/tls/service.key` holds it).
    pub fn from_pkcs8_pem(pem: &str) -> Result<JwtSigner, JwtError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| JwtError::KeyPem {
            reason: e.to_string(),
        })?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(JwtError::KeyPem {
                reason: "not a PKCS#8 \"PRIVATE KEY\" block".into(),
            });
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| JwtError::KeyType {
            reason: e.to_string(),
        })?;
        let key_id = key_id(key.public_key().as_ref());
        Ok(JwtSigner { key, key_id, rng })
    }

    /// The key id: base64url of the SHA-256 of the public key's SubjectPublicKeyInfo DER.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A verifier for the tokens this signer issues.
    pub fn verifier(&self) -> JwtVerifier {
        JwtVerifier {
            keys: vec![VerifyingKey {
                key_id: self.key_id.clone(),
                point: self.key.public_key().as_ref().to_vec(),
            }],
        }
    }

    /// Signs `claims` (a JSON object) into a compact JWS: `header.payload.signature`.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let header = serde_json::to_vec(&header).map_err(|_| JwtError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| JwtError::Sign)?;
        let mut out = URL_SAFE_NO_PAD.encode(header);
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .key
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(out)
    }
}

/// upstream's `keyIDFromPublicKey` for a P-256 point.
fn key_id(point: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(P256_SPKI_PREFIX);
    hasher.update(point);
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

#[derive(Debug, Clone)]
struct VerifyingKey {
    key_id: String,
    point: Vec<u8>,
}

/// Verifies ES256 signatures against a set of public keys (several during key rotation).
#[derive(Debug, Clone)]
pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
}

impl JwtVerifier {
    /// Checks the signature and returns the payload's claims. The key is picked by `kid` when
    /// the token names one, else every key is tried, as upstream.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header_json = decode_json(header, "header")?;
        let alg = header_json.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != "ES256" {
            return Err(JwtError::Algorithm { alg: alg.into() });
        }
        let kid = header_json
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty());
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Encoding { part: "signature" })?;
        let signed = &token[..header.len() + 1 + payload.len()];
        let candidates: Vec<&VerifyingKey> = self
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| kid == k.key_id))
            .collect();
        if candidates.is_empty() {
            return Err(JwtError::NoKeys);
        }
        let ok = candidates.iter().any(|k| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &k.point)
                .verify(signed.as_bytes(), &signature)
                .is_ok()
        });
        if !ok {
            return Err(JwtError::Signature);
        }
        decode_json(payload, "payload")
    }
}

fn decode_json(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Encoding { part: what })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Encoding { part: what }),
    }
}

/// The `iss` claim of a token WITHOUT verifying it: only to pick the authenticator that should
/// verify it (upstream's `hasCorrectIssuer`). Never trust anything else read this way.
pub fn unverified_issuer(token: &str) -> Option<String> {
    if token.trim_start().starts_with('{') {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let claims = decode_json(payload, "payload").ok()?;
    claims.get("iss").and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn test_key_pem() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }

    #[test]
    fn round_trip_returns_the_claims_and_names_the_key() {
        let signer = JwtSigner::from_pkcs8_pem(&test_key_pem()).unwrap();
        let claims = json!({"iss": "https://issuer", "sub": "x", "n": 1});
        let token = signer.sign(&claims).unwrap();
        let got = signer.verifier().verify(&token).unwrap();
        assert_eq!(Value::Object(got), claims);
        let header = decode_json(token.split('.').next().unwrap(), "header").unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], signer.key_id());
        assert_eq!(signer.key_id().len(), 43);
        assert_eq!(unverified_issuer(&token).as_deref(), Some("https://issuer"));
    }

    #[test]
    fn tampered_foreign_and_malformed_tokens_are_rejected() {
        let signer = JwtSigner::from_pkcs8_pem(&test_key_pem()).unwrap();
        let other = JwtSigner::from_pkcs8_pem(&test_key_pem()).unwrap();
        let token = signer.sign(&json!({"sub": "a"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"b"}"#);
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let unknown_kid = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"nope"}"#);
        let no_kid = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
        let table: Vec<(&str, String, JwtError)> = vec![
            (
                "payload swapped",
                format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
                JwtError::Signature,
            ),
            (
                "signed by another key",
                other.sign(&json!({"sub": "a"})).unwrap(),
                JwtError::NoKeys,
            ),
            (
                "alg none",
                format!("{none_header}.{}.", parts[1]),
                JwtError::Algorithm { alg: "none".into() },
            ),
            (
                "unknown kid",
                format!("{unknown_kid}.{}.{}", parts[1], parts[2]),
                JwtError::NoKeys,
            ),
            (
                "no kid, bad signature",
                format!("{no_kid}.{}.{}", parts[1], parts[2]),
                JwtError::Signature,
            ),
            ("two parts", "a.b".into(), JwtError::Malformed),
            ("four parts", format!("{token}.x"), JwtError::Malformed),
            (
                "garbage header",
                format!("!!.{}.{}", parts[1], parts[2]),
                JwtError::Encoding { part: "header" },
            ),
        ];
        for (case, token, want) in table {
            assert_eq!(
                signer.verifier().verify(&token).unwrap_err(),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn keys_that_are_not_pkcs8_p256_are_errors() {
        let rsa_like = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let table = ["", "garbage", rsa_like];
        for pem in table {
            assert!(JwtSigner::from_pkcs8_pem(pem).is_err(), "{pem:?}");
        }
    }

    #[test]
    fn unverified_issuer_ignores_non_jwts() {
        for token in ["", "abc", "{\"iss\":\"x\"}.a.b", "a.!!.b", "a.e30.b.c"] {
            assert_eq!(unverified_issuer(token), None, "{token}");
        }
    }
}
