//! The engine's error: what failed, in plain words, and whether trying again may help.

use switchboard_net::NetError;

/// Why an engine operation failed.
///
/// Messages never contain credentials, header values or full URLs with query strings: they go
/// into probe reports, API answers and logs.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The outbound client refused or failed the request (SSRF rules, DNS, connect, timeout).
    #[error("{0}")]
    Net(#[from] NetError),
    /// The server wants credentials that are missing or were rejected.
    #[error("the server asks for authentication (HTTP {status})")]
    AuthRequired {
        /// 401 or 403.
        status: u16,
        /// The `WWW-Authenticate` challenge, if the server sent one.
        challenge: Option<String>,
    },
    /// Nothing at the URL speaks MCP in any transport Switchboard knows.
    #[error("no MCP server answered at this URL: {0}")]
    NotMcp(String),
    /// The server broke the protocol (malformed messages, unexpected answers).
    #[error("the server broke the MCP protocol: {0}")]
    Protocol(String),
    /// The server answered with a JSON-RPC error.
    #[error("the server refused: {0}")]
    Server(String),
    /// The connection ended, or the session could not be kept.
    #[error("the connection to the server was lost: {0}")]
    Disconnected(String),
    /// The server did not answer in time.
    #[error("the server did not answer within {0} seconds")]
    Timeout(u64),
    /// The caller cancelled.
    #[error("the call was cancelled")]
    Cancelled,
    /// The server has no function, resource or prompt by that name.
    #[error("{kind} {name:?} is not offered by this server")]
    Unknown {
        /// `function`, `resource` or `prompt`.
        kind: &'static str,
        /// What was asked for.
        name: String,
    },
    /// The arguments do not match the function's input schema; the server was not called.
    #[error("the arguments do not match the function's input schema: {0}")]
    InvalidArguments(String),
    /// Earlier attempts failed and the engine waits before reconnecting.
    #[error(
        "the server is unreachable; the next attempt is in {retry_in_secs} s (last error: {last})"
    )]
    BackingOff {
        /// Seconds until the next attempt.
        retry_in_secs: u64,
        /// The last failure.
        last: String,
    },
    /// The engine is shutting down.
    #[error("the connector engine is shutting down")]
    ShuttingDown,
}

impl ConnectError {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Net(e) => e.is_retryable(),
            ConnectError::Disconnected(_)
            | ConnectError::Timeout(_)
            | ConnectError::BackingOff { .. } => true,
            _ => false,
        }
    }
}

impl ConnectError {
    /// The 401 or 403 somewhere in `e`'s source chain, as [`ConnectError::AuthRequired`]
    /// with its status and `WWW-Authenticate` challenge: rmcp's transport reports a 401 as an
    /// `AuthRequiredError` and a 403 that carries a challenge (`insufficient_scope`, RFC 6750
    /// §3.1) as an `InsufficientScopeError`, wrapped in transport and service errors. Callers
    /// need the challenge to authorize (or step up) and try again.
    pub(crate) fn auth_failure_in(e: &(dyn std::error::Error + 'static)) -> Option<ConnectError> {
        use rmcp::transport::streamable_http_client::{AuthRequiredError, InsufficientScopeError};
        let mut current = Some(e);
        while let Some(err) = current {
            if let Some(auth) = err.downcast_ref::<AuthRequiredError>() {
                return Some(ConnectError::AuthRequired {
                    status: 401,
                    challenge: Some(auth.www_authenticate_header.clone()),
                });
            }
            if let Some(scope) = err.downcast_ref::<InsufficientScopeError>() {
                return Some(ConnectError::AuthRequired {
                    status: 403,
                    challenge: Some(scope.www_authenticate_header.clone()),
                });
            }
            current = err.source();
        }
        None
    }
}

/// Result of an engine operation.
pub type Result<T, E = ConnectError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use rmcp::transport::DynamicTransportError;
    use rmcp::transport::streamable_http_client::{
        AuthRequiredError, InsufficientScopeError, StreamableHttpError,
    };

    use super::*;

    /// The error as it reaches the engine: the transport's error inside rmcp's dynamic wrapper.
    fn wrapped(e: StreamableHttpError<std::io::Error>) -> DynamicTransportError {
        DynamicTransportError::from_parts("test", std::any::TypeId::of::<()>(), Box::new(e))
    }

    #[test]
    fn a_401_and_a_403_keep_their_status_and_challenge() {
        let challenge = r#"Bearer resource_metadata="https://m.example/prm""#;
        let unauthorized = wrapped(StreamableHttpError::AuthRequired(AuthRequiredError::new(
            challenge.into(),
        )));
        let Some(ConnectError::AuthRequired {
            status,
            challenge: found,
        }) = ConnectError::auth_failure_in(&unauthorized)
        else {
            panic!("no auth failure found");
        };
        assert_eq!((status, found.as_deref()), (401, Some(challenge)));

        let step_up = r#"Bearer error="insufficient_scope", scope="files:write""#;
        let forbidden = wrapped(StreamableHttpError::InsufficientScope(
            InsufficientScopeError::new(step_up.into(), Some("files:write".into())),
        ));
        let Some(ConnectError::AuthRequired {
            status,
            challenge: found,
        }) = ConnectError::auth_failure_in(&forbidden)
        else {
            panic!("no auth failure found");
        };
        assert_eq!((status, found.as_deref()), (403, Some(step_up)));

        let other = wrapped(StreamableHttpError::SessionExpired);
        assert!(ConnectError::auth_failure_in(&other).is_none());
    }
}
