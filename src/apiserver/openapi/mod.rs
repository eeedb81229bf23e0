//! OpenAPI v2 and v3 documents and the type facts (schema) they are built from.
