//! Turning what went wrong into an [`LlmError`]: HTTP statuses, the provider's own words from
//! its error body, network failures, and the scrubbing that keeps the API key out of all of
//! them.

use serde_json::Value;
use switchboard_net::NetError;

use crate::{ApiKey, LlmError};

/// Most characters of a provider's message kept in an error.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// Most bytes of an error body read to find the provider's message.
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The error for an answer with a status other than 2xx. `message` is the provider's words,
/// already extracted.
pub(crate) fn status_error(status: u16, message: String) -> LlmError {
    match status {
        401 | 403 => LlmError::Unauthorized { status, message },
        // 408 (the provider gave up waiting) and 429 (rate or quota limit) pass, as do server
        // errors (OpenAI's 500 and 503, Cloudflare's 52x in front of some providers).
        408 | 429 | 500..=599 => LlmError::Busy { status, message },
        300..=399 => LlmError::Config(format!(
            "the model provider answered with a redirect ({status}); check the base URL"
        )),
        400..=499 => LlmError::Refused { status, message },
        _ => LlmError::Protocol(format!("unexpected HTTP status {status}")),
    }
}

/// The provider's message in an error body: OpenAI's `{"error":{"message":…}}` (and the
/// `{"error":"…"}` of Ollama and others), Mistral's `{"message":…}` or `{"detail":…}`, where a
/// detail may be a FastAPI-style list of `{"loc":[…],"msg":…}`. A plain-text body is taken as
/// it is; any other (an HTML error page) gives nothing.
pub(crate) fn provider_message(body: &[u8], plain_text: bool) -> Option<String> {
    let found = match serde_json::from_slice::<Value>(body) {
        Ok(json) => message_in(&json),
        Err(_) if plain_text => std::str::from_utf8(body).ok().map(str::to_owned),
        Err(_) => None,
    }?;
    let capped = cap(&found);
    (!capped.is_empty()).then_some(capped)
}

fn message_in(json: &Value) -> Option<String> {
    match json {
        Value::String(text) => Some(text.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(message_in).collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        Value::Object(fields) => {
            if let Some(msg) = fields.get("msg").and_then(Value::as_str) {
                // A FastAPI validation item: where, then what.
                let at = fields
                    .get("loc")
                    .and_then(Value::as_array)
                    .map(|loc| {
                        loc.iter()
                            .map(|p| match p {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .filter(|loc| !loc.is_empty());
                return Some(match at {
                    Some(at) => format!("{at}: {msg}"),
                    None => msg.to_owned(),
                });
            }
            ["error", "message", "detail"]
                .iter()
                .find_map(|key| fields.get(*key).and_then(message_in))
        }
        _ => None,
    }
}

/// `text` on one line, without control characters, at most [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn cap(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut words = text.split(|c: char| c.is_whitespace() || c.is_control());
    let mut first = true;
    for word in words.by_ref().filter(|w| !w.is_empty()) {
        if !first {
            out.push(' ');
            count += 1;
        }
        first = false;
        for c in word.chars() {
            if count == MAX_MESSAGE_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// A failure to send the request or to read its answer's head.
pub(crate) fn from_net(err: NetError) -> LlmError {
    match err {
        NetError::Dns { .. }
        | NetError::Connect { .. }
        | NetError::Timeout { .. }
        | NetError::Request { .. } => LlmError::Unreachable(err.to_string()),
        // The address is refused by the SSRF rules, or the URL is unusable: the operator must
        // change the base URL or the allowlist; trying again will not help.
        NetError::Blocked { .. }
        | NetError::Unverified { .. }
        | NetError::Scheme { .. }
        | NetError::InvalidUrl { .. }
        | NetError::Redirect { .. }
        | NetError::Config { .. }
        | NetError::Build { .. } => LlmError::Config(format!("the model provider: {err}")),
        NetError::TooLarge { .. } | NetError::Decode { .. } | NetError::Status { .. } => {
            LlmError::Protocol(err.to_string())
        }
        _ => LlmError::Unreachable(err.to_string()),
    }
}

/// A failure while the reply streams: the connection broke or went silent.
pub(crate) fn broken_stream(err: reqwest::Error) -> LlmError {
    LlmError::Unreachable(format!("the reply broke off: {}", NetError::from(err)))
}

/// `err` with every occurrence of the key's text replaced, in case a provider (or a proxy in
/// front of it) echoed the key in its message.
pub(crate) fn scrub(err: LlmError, key: Option<&ApiKey>) -> LlmError {
    let Some(key) = key.map(ApiKey::expose).filter(|k| !k.is_empty()) else {
        return err;
    };
    let clean = |s: String| {
        if s.contains(key) {
            s.replace(key, "[redacted]")
        } else {
            s
        }
    };
    match err {
        LlmError::Unreachable(m) => LlmError::Unreachable(clean(m)),
        LlmError::Busy { status, message } => LlmError::Busy {
            status,
            message: clean(message),
        },
        LlmError::Unauthorized { status, message } => LlmError::Unauthorized {
            status,
            message: clean(message),
        },
        LlmError::Refused { status, message } => LlmError::Refused {
            status,
            message: clean(message),
        },
        LlmError::Protocol(m) => LlmError::Protocol(clean(m)),
        LlmError::Config(m) => LlmError::Config(clean(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Option<String> {
        provider_message(body.as_bytes(), false)
    }

    #[test]
    fn messages_are_found_in_every_provider_shape() {
        assert_eq!(
            message(
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#
            ),
            Some("Incorrect API key provided".into())
        );
        assert_eq!(
            message(r#"{"error":"model \"llama9\" not found"}"#),
            Some("model \"llama9\" not found".into())
        );
        assert_eq!(
            message(
                r#"{"object":"error","message":"Invalid model: nope","type":"invalid_model","param":null,"code":"1500"}"#
            ),
            Some("Invalid model: nope".into())
        );
        assert_eq!(
            message(r#"{"detail":"Unauthorized"}"#),
            Some("Unauthorized".into())
        );
        assert_eq!(
            message(
                r#"{"object":"error","message":{"detail":[{"type":"missing","loc":["body","messages",0,"content"],"msg":"Field required"}]},"type":"invalid_request_message_order"}"#
            ),
            Some("body.messages.0.content: Field required".into())
        );
        assert_eq!(message("<html>oops</html>"), None);
        assert_eq!(
            provider_message(b"404 page not found\n", true),
            Some("404 page not found".into())
        );
        assert_eq!(message(r#"{"error":{"code":"x"}}"#), None);
    }

    #[test]
    fn long_messages_are_capped_on_one_line() {
        let long = format!("line one\nline\ttwo {}", "x".repeat(1000));
        let capped = cap(&long);
        assert!(capped.starts_with("line one line two xxx"));
        assert_eq!(capped.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(capped.ends_with('…'));
    }

    #[test]
    fn statuses_map_to_kinds() {
        let m = || "m".to_owned();
        assert!(matches!(
            status_error(401, m()),
            LlmError::Unauthorized { .. }
        ));
        assert!(matches!(
            status_error(403, m()),
            LlmError::Unauthorized { .. }
        ));
        assert!(matches!(status_error(429, m()), LlmError::Busy { .. }));
        assert!(matches!(status_error(503, m()), LlmError::Busy { .. }));
        assert!(matches!(status_error(400, m()), LlmError::Refused { .. }));
        assert!(matches!(status_error(404, m()), LlmError::Refused { .. }));
        assert!(matches!(status_error(422, m()), LlmError::Refused { .. }));
        assert!(matches!(status_error(301, m()), LlmError::Config(_)));
    }

    #[test]
    fn the_key_is_scrubbed_from_messages() {
        let key = ApiKey::new("sk-secret");
        let err = scrub(
            LlmError::Unauthorized {
                status: 401,
                message: "bad key sk-secret given".into(),
            },
            Some(&key),
        );
        assert_eq!(
            err.to_string(),
            "the model provider refused the API key (401): bad key [redacted] given"
        );
    }
}
