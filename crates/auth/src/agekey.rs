//! (age keys: see the crate doc)
