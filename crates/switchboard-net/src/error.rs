//! `NetError`: what went wrong with an outbound request, in words fit for an operator.
//!
//! Messages name hosts and addresses, never a full URL (its query string may carry a code or a
//! token), a header or a body.

use std::error::Error as StdError;
use std::net::IpAddr;

use crate::classify::Blocked;

/// Why an outbound request failed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The destination address is not public and the operator's allowlist does not permit it.
    #[error("refusing to connect to {}: {class}", target(host, addr))]
    Blocked {
        /// The host as written in the URL (a name or an address).
        host: String,
        /// The address that was refused.
        addr: IpAddr,
        /// Why it was refused.
        class: Blocked,
    },
    /// The URL's scheme is not `http` or `https`.
    #[error("refusing a {scheme} URL: only http and https are allowed")]
    Scheme {
        /// The scheme that was refused.
        scheme: String,
    },
    /// The URL cannot be requested at all (no host, or not buildable into a request).
    #[error("invalid URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The safety checks could not see where a connection was going, so it was not made.
    #[error("refusing to connect: {reason}")]
    Unverified {
        /// What could not be checked.
        reason: String,
    },
    /// The host name could not be resolved.
    #[error("could not resolve {host}: {reason}")]
    Dns {
        /// The name.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// No connection could be made, or it broke.
    #[error("could not connect to {host}: {reason}")]
    Connect {
        /// The host.
        host: String,
        /// What happened.
        reason: String,
    },
    /// The connect timeout or the total request timeout ran out.
    #[error("timed out talking to {host}")]
    Timeout {
        /// The host.
        host: String,
    },
    /// The response body is larger than allowed.
    #[error("the response from {host} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The host.
        host: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A redirect was refused, or was not followed where the caller needed a final answer.
    #[error("redirect refused: {reason}")]
    Redirect {
        /// Why.
        reason: String,
    },
    /// The server answered with a status the caller did not accept.
    #[error("{host} answered with HTTP status {status}")]
    Status {
        /// The host.
        host: String,
        /// The status code.
        status: u16,
    },
    /// The response body is not what was expected.
    #[error("could not read the response from {host}: {reason}")]
    Decode {
        /// The host.
        host: String,
        /// What was wrong, without quoting the body.
        reason: String,
    },
    /// Any other failure while sending the request or reading the response.
    #[error("request to {host} failed: {reason}")]
    Request {
        /// The host.
        host: String,
        /// What happened.
        reason: String,
    },
    /// An allowlist entry is malformed.
    #[error("invalid allowlist entry {entry:?}: {reason}")]
    Config {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (for example, no TLS roots could be loaded).
    #[error("could not build the HTTP client: {reason}")]
    Build {
        /// What failed.
        reason: String,
    },
}

fn target(host: &str, addr: &IpAddr) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(literal) if literal == *addr => addr.to_string(),
        _ => format!("{addr} (the address of {host})"),
    }
}

impl NetError {
    /// Whether trying the same request again later may succeed. Refusals, malformed input and
    /// client errors are final; network trouble, timeouts, 408, 425, 429 and 5xx answers other
    /// than 501 and 505 are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            NetError::Dns { .. }
            | NetError::Connect { .. }
            | NetError::Timeout { .. }
            | NetError::Request { .. } => true,
            NetError::Status { status, .. } => {
                matches!(status, 408 | 425 | 429)
                    || (*status >= 500 && !matches!(status, 501 | 505))
            }
            NetError::Blocked { .. }
            | NetError::Scheme { .. }
            | NetError::InvalidUrl { .. }
            | NetError::Unverified { .. }
            | NetError::TooLarge { .. }
            | NetError::Redirect { .. }
            | NetError::Decode { .. }
            | NetError::Config { .. }
            | NetError::Build { .. } => false,
        }
    }

    /// Whether this is a refusal by the SSRF rules (as opposed to a network failure).
    pub fn is_blocked(&self) -> bool {
        matches!(self, NetError::Blocked { .. } | NetError::Unverified { .. })
    }

    /// The first `NetError` in `err`'s source chain, `err` included.
    ///
    /// The checks inside the `reqwest::Client` (resolver, connector layer, redirect policy)
    /// raise `NetError`s that reqwest, hyper and callers such as rmcp wrap in their own
    /// errors; this digs the refusal back out.
    pub fn find_in(err: &(dyn StdError + 'static)) -> Option<NetError> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<NetError>() {
                return Some(found.clone());
            }
            current = e.source();
        }
        None
    }
}

impl From<reqwest::Error> for NetError {
    /// Sorts a reqwest error into a `NetError`, preferring a refusal raised by this crate's
    /// own checks. The URL reqwest attaches is reduced to its host.
    fn from(err: reqwest::Error) -> Self {
        if let Some(found) = NetError::find_in(&err) {
            return found;
        }
        let host = err
            .url()
            .and_then(|u| u.host_str())
            .unwrap_or("the server")
            .to_owned();
        let reason = source_chain(&err);
        if err.is_timeout() {
            NetError::Timeout { host }
        } else if err.is_connect() {
            NetError::Connect { host, reason }
        } else if err.is_redirect() {
            NetError::Redirect { reason }
        } else if err.is_builder() {
            NetError::InvalidUrl { reason }
        } else if err.is_decode() {
            // A decoding error may quote the body; say only that it did not decode.
            NetError::Decode {
                host,
                reason: "the body is not in the expected format".into(),
            }
        } else if let Some(status) = err.status() {
            NetError::Status {
                host,
                status: status.as_u16(),
            }
        } else {
            NetError::Request { host, reason }
        }
    }
}

/// The messages of `err`'s sources (not `err` itself, whose message carries the URL), each
/// once, joined by ": ".
fn source_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = err.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    if parts.is_empty() {
        "unknown error".into()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_messages_name_the_address_and_the_class() {
        let literal = NetError::Blocked {
            host: "169.254.169.254".into(),
            addr: "169.254.169.254".parse().unwrap(),
            class: Blocked::LinkLocal,
        };
        assert_eq!(
            literal.to_string(),
            "refusing to connect to 169.254.169.254: link-local address (cloud metadata endpoints live here)"
        );
        let v6 = NetError::Blocked {
            host: "[::1]".into(),
            addr: "::1".parse().unwrap(),
            class: Blocked::Loopback,
        };
        assert_eq!(
            v6.to_string(),
            "refusing to connect to ::1: loopback address"
        );
        let named = NetError::Blocked {
            host: "localhost".into(),
            addr: "127.0.0.1".parse().unwrap(),
            class: Blocked::Loopback,
        };
        assert_eq!(
            named.to_string(),
            "refusing to connect to 127.0.0.1 (the address of localhost): loopback address"
        );
    }

    #[test]
    fn retryable_and_final_are_kept_apart() {
        let host = || "h".to_string();
        let retryable = [
            NetError::Dns {
                host: host(),
                reason: "r".into(),
            },
            NetError::Connect {
                host: host(),
                reason: "r".into(),
            },
            NetError::Timeout { host: host() },
            NetError::Status {
                host: host(),
                status: 503,
            },
            NetError::Status {
                host: host(),
                status: 429,
            },
        ];
        for e in retryable {
            assert!(e.is_retryable(), "{e}");
        }
        let final_ = [
            NetError::Blocked {
                host: host(),
                addr: "10.0.0.1".parse().unwrap(),
                class: Blocked::Private,
            },
            NetError::Scheme {
                scheme: "file".into(),
            },
            NetError::TooLarge {
                host: host(),
                limit: 1,
            },
            NetError::Redirect { reason: "r".into() },
            NetError::Status {
                host: host(),
                status: 404,
            },
            NetError::Status {
                host: host(),
                status: 501,
            },
        ];
        for e in final_ {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn find_in_walks_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(NetError);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let inner = NetError::Timeout { host: "h".into() };
        let outer = Wrapper(inner.clone());
        assert_eq!(NetError::find_in(&outer), Some(inner));
    }
}
