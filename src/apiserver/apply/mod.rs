//! Server-side apply: field managers, managedFields and conflict detection.
