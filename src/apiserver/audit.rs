//! Audit log (placeholder).
