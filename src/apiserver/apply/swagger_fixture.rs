//! Test-only loader of upstream's OpenAPI v2 document into a [`TypeTable`].
