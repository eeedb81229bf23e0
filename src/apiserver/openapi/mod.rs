//! OpenAPI v2 and v3 documents and the type facts (schema) they are built from.
//!
//! Everything here is built lazily on first use and cached for the life of the process, so
//! server start-up pays nothing. This module only describes the API; it never serves HTTP or
//! touches the store.

pub mod definitions;
pub mod facts;
pub mod operations;
pub mod paths;
mod subresources;
pub mod types;
pub mod v2_protobuf;
pub mod v3;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::apiserver::schema::TypeTable;

/// The Kubernetes release whose API the documents describe (`info.version` in v3).
pub const KUBERNETES_VERSION: &str = "v1.35.0";

/// A serialised document with its content hash (uppercase hex SHA-512, as upstream uses in
/// `/openapi/v3` URLs and ETags).
#[derive(Debug, Clone)]
pub struct Document {
    pub bytes: Bytes,
    pub hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        // Serialising a `Value` cannot fail: all map keys are strings.
        Document::from_bytes(serde_json::to_vec(value).unwrap_or_default())
    }

    fn from_bytes(bytes: Vec<u8>) -> Document {
        let hash = Sha512::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        Document {
            bytes: Bytes::from(bytes),
            hash,
        }
    }

    /// The value of an `ETag` header for this document.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

fn parsed_facts() -> facts::Facts {
    match facts::parse(facts::TABLE) {
        Ok(f) => f,
        Err(error) => {
            // A unit test parses the embedded table, so this only happens on a broken build.
            tracing::error!(%error, "embedded OpenAPI type facts do not parse; serving without them");
            facts::Facts::default()
        }
    }
}

/// The served definitions: k8s-openapi's schemas with the project's facts applied.
fn built_definitions() -> Map<String, Value> {
    let mut defs = definitions::generate();
    facts::apply(&parsed_facts(), &mut defs);
    defs
}

/// The type facts of every served definition, for patching, apply and validation.
pub fn builtin_types() -> &'static TypeTable {
    static TABLE: OnceLock<TypeTable> = OnceLock::new();
    TABLE.get_or_init(|| types::type_table(&built_definitions()))
}

fn v2_value(defs: Map<String, Value>, entries: &[paths::PathEntry]) -> Value {
    let mut paths = Map::new();
    for e in entries {
        paths.insert(e.path.clone(), Value::Object(e.item.clone()));
    }
    paths.sort_keys();
    json!({
        "definitions": defs,
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "security": [{"BearerToken": []}],
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey"
            }
        },
        "swagger": "2.0"
    })
}

/// `GET /openapi/v2` as JSON.
pub fn v2_document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| Document::new(&v2_value(built_definitions(), &paths::all_paths())))
}

/// `GET /openapi/v2` as the gnostic protobuf message ([`v2_protobuf::CONTENT_TYPE`]), which
/// kubectl 1.27 and 1.28 require for explain and apply.
pub fn v2_protobuf_document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| {
        let value = v2_value(built_definitions(), &paths::all_paths());
        Document::from_bytes(v2_protobuf::encode(&value))
    })
}

/// Every v3 document, keyed by its path (`api/v1`, `apis/apps/v1`, `apis`, `version`, ...).
fn v3_documents() -> &'static BTreeMap<String, Document> {
    static DOCS: OnceLock<BTreeMap<String, Document>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let defs = built_definitions();
        let entries = paths::all_paths();
        let mut by_doc: BTreeMap<&str, Vec<&paths::PathEntry>> = BTreeMap::new();
        for e in &entries {
            by_doc.entry(e.doc.as_str()).or_default().push(e);
        }
        by_doc
            .into_iter()
            .map(|(doc, es)| {
                let value = v3::document(&es, &defs, KUBERNETES_VERSION);
                (doc.to_string(), Document::new(&value))
            })
            .collect()
    })
}

/// `GET /openapi/v3`: the index of group-version documents with their hashed URLs.
pub fn v3_index() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| {
        let paths: Map<String, Value> = v3_documents()
            .iter()
            .map(|(path, doc)| {
                let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
                (path.clone(), json!({ "serverRelativeURL": url }))
            })
            .collect();
        Document::new(&json!({ "paths": paths }))
    })
}

/// `GET /openapi/v3/<path>` for `path` such as `api/v1` or `apis/apps/v1`.
pub fn v3_document(path: &str) -> Option<&'static Document> {
    v3_documents().get(path.trim_matches('/'))
}

#[cfg(test)]
mod tests;
