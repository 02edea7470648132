//! What a provider needs to be reached: its kind, base URL, model and API key, plus the limits
//! that bound one reply and the client options a streaming provider wants.

use std::fmt;
use std::time::Duration;

use switchboard_domain::ProviderKind;
use switchboard_net::ClientOptions;
use url::Url;
use zeroize::Zeroizing;

/// A provider's API key.
///
/// The text is wiped from memory when the key is dropped, and `Debug` prints `[redacted]`, so a
/// key inside a logged [`ProviderConfig`] stays hidden. The providers also scrub the key's text
/// out of every error message they build, in case a provider echoes it back.
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(Zeroizing::new(key.into()))
    }

    /// The key's text, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self::new(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

/// Which provider to talk to, and as whom.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The wire format it speaks.
    pub kind: ProviderKind,
    /// The API's base URL, to which `chat/completions` is appended: `https://api.openai.com/v1`,
    /// `https://api.mistral.ai/v1`, `http://localhost:11434/v1` for Ollama. A trailing slash
    /// makes no difference.
    pub base_url: Url,
    /// The model's name, as the provider spells it.
    pub model: String,
    /// The key sent as `Authorization: Bearer`; `None` for a local server that needs none.
    pub api_key: Option<ApiKey>,
}

/// Bounds on what one reply may hold, so a provider (or whoever answers in its name) cannot
/// make Switchboard buffer without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of text, tool-call names, ids and arguments one reply may add up to; a reply
    /// that grows past it fails with [`crate::LlmError::Protocol`]. Also bounds the length of
    /// one line of the event stream.
    pub max_reply_bytes: usize,
}

impl Limits {
    /// 4 MiB: far above any real reply (a model's output is bounded by its token limit),
    /// small enough that a runaway stream cannot hurt the server.
    pub const DEFAULT_MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_reply_bytes: Self::DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

/// The [`ClientOptions`] a [`switchboard_net::SafeClient`] should be built with for
/// [`crate::connect`].
///
/// A reply streams for as long as the model writes, often longer than a total request timeout
/// would allow, so there is none; an idle timeout (two minutes, to leave room for a model that
/// thinks before its first token) cuts off a provider that stops sending instead. The
/// providers use whatever client they are given: one with a total timeout ends long replies
/// with [`crate::LlmError::Unreachable`].
pub fn client_options() -> ClientOptions {
    ClientOptions {
        total_timeout: None,
        idle_timeout: Some(Duration::from_secs(120)),
        ..ClientOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let config = ProviderConfig {
            kind: ProviderKind::OpenAi,
            base_url: "https://api.openai.com/v1".parse().unwrap(),
            model: "gpt-4o".into(),
            api_key: Some(ApiKey::new("sk-very-secret")),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert_eq!(config.api_key.unwrap().expose(), "sk-very-secret");
    }

    #[test]
    fn streaming_options_have_no_total_timeout() {
        let options = client_options();
        assert_eq!(options.total_timeout, None);
        assert!(options.idle_timeout.is_some());
    }
}
