//! A problem at a field: the one shape of error that compiling a reaction,
//! `karo validate` and loading the configuration share, so that a path never has
//! to be parsed back out of a message.

use std::fmt;

/// A problem at a field path: `spec.matchers[1].value`, a config key such as
/// `webhook.auth.username`, or empty for the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for FieldError {}
