//! Per-kind strategy for built-in types: defaulting, validation, field selectors.
