//! Behaviour tests of apply and update tracking over a small fake schema.
