//! Owned by a later issue.
