//! The pure parts of authentication: service-account JWTs (ES256 signing and verification,
//! claims), bootstrap tokens and the static token file. Never reads the store or the network;
//! the API server's authenticator (`apiserver::authn`) does the live lookups.

pub mod bootstrap;
pub mod claims;
pub mod jwt;
pub mod token_file;
