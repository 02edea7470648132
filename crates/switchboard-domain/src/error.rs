//! The one error every validation rule returns: which field was wrong and why.

use std::borrow::Cow;

/// A value was refused by a validation rule.
///
/// `field` names the offending input as a client sent it (for example `name` or `url`), so an
/// API answer or a CLI message can point at it; `message` says what is wrong in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The input field that was refused.
    pub field: Cow<'static, str>,
    /// What is wrong with it, lowercase, without a trailing period.
    pub message: String,
}

impl ValidationError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
