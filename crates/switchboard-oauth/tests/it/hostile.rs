//! Servers whose OAuth setup must be refused: each would otherwise let someone else collect
//! the grant, downgrade the flow, or point Switchboard at its own network.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchboard_oauth::OAuthError;

use crate::support::{Log, Server, as_metadata, auth_client, recorded, serve};

/// A protected MCP server at `/mcp` whose challenge names its metadata, with the
/// protected-resource metadata `prm` and authorization-server metadata `metadata` (both built
/// from the base URL) at their well-known places, recording every request.
async fn protected(
    log: &Log,
    prm: impl FnOnce(&str) -> Value,
    metadata: impl FnOnce(&str) -> Value,
) -> Server {
    let log = log.clone();
    serve(move |base| {
        let challenge = format!(
            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
        );
        let (prm, metadata) = (prm(base), metadata(base));
        recorded(
            Router::new()
                .route(
                    "/mcp",
                    post(move || async move {
                        (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, challenge)],
                        )
                    }),
                )
                .route(
                    "/.well-known/oauth-protected-resource/mcp",
                    get(move || async move { axum::Json(prm) }),
                )
                .route(
                    "/.well-known/oauth-authorization-server",
                    get(move || async move { axum::Json(metadata) }),
                ),
            &log,
        )
    })
    .await
}

fn prm_for(base: &str) -> Value {
    json!({"resource": format!("{base}/mcp"), "authorization_servers": [base]})
}

async fn discover(server: &Server) -> Result<switchboard_oauth::AuthServer, OAuthError> {
    let challenge = format!(
        r#"Bearer resource_metadata="{}/.well-known/oauth-protected-resource/mcp""#,
        server.base
    );
    auth_client()
        .discover(&server.url("/mcp"), Some(&challenge))
        .await
}

#[tokio::test]
async fn metadata_for_another_resource_is_refused_before_any_authorization_server_is_asked() {
    let log = Log::default();
    let server = protected(
        &log,
        |base| json!({"resource": "https://evil.example.com/mcp", "authorization_servers": [base]}),
        |base| as_metadata(base, json!({})),
    )
    .await;
    let err = discover(&server).await.unwrap_err();
    assert!(matches!(err, OAuthError::ResourceMismatch { .. }), "{err}");
    assert!(err.to_string().contains("evil.example.com"), "{err}");
    assert!(
        log.matching("GET /.well-known/oauth-authorization-server")
            .is_empty()
    );
}

#[tokio::test]
async fn metadata_claiming_another_issuer_is_not_used() {
    let log = Log::default();
    let server = protected(&log, prm_for, |base| {
        as_metadata(base, json!({"issuer": "https://attacker.example.com"}))
    })
    .await;
    let err = discover(&server).await.unwrap_err();
    assert!(
        matches!(&err, OAuthError::IssuerMismatch { found, .. } if found == "https://attacker.example.com"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_without_pkce_s256_is_refused() {
    for methods in [json!(["plain"]), Value::Null] {
        let log = Log::default();
        let server = protected(&log, prm_for, move |base| {
            let mut doc = as_metadata(base, json!({}));
            doc["code_challenge_methods_supported"] = methods;
            doc
        })
        .await;
        let err = discover(&server).await.unwrap_err();
        assert!(matches!(err, OAuthError::PkceUnsupported { .. }), "{err}");
    }
}

#[tokio::test]
async fn a_token_endpoint_on_a_private_address_is_refused() {
    let log = Log::default();
    let server = protected(&log, prm_for, |base| {
        as_metadata(base, json!({"token_endpoint": "https://10.0.0.7/token"}))
    })
    .await;
    let err = discover(&server).await.unwrap_err();
    assert!(err.is_blocked(), "{err}");
    assert!(err.to_string().contains("10.0.0.7"), "{err}");
}

#[tokio::test]
async fn plain_http_endpoints_are_refused_outside_what_the_operator_allows() {
    let log = Log::default();
    let server = protected(&log, prm_for, |base| {
        as_metadata(
            base,
            json!({"authorization_endpoint": "http://auth.example.com/authorize"}),
        )
    })
    .await;
    let err = discover(&server).await.unwrap_err();
    assert_eq!(
        err,
        OAuthError::InsecureEndpoint {
            which: "authorization endpoint".into(),
            host: "auth.example.com".into()
        }
    );
}

#[tokio::test]
async fn metadata_pointing_at_the_cloud_metadata_address_is_never_fetched() {
    let log = Log::default();
    let server = protected(
        &log,
        |_| {
            json!({
                "resource": "unused",
                "authorization_servers": ["http://169.254.169.254/latest"],
            })
        },
        |base| as_metadata(base, json!({})),
    )
    .await;
    // The challenge names a metadata URL on the link-local address; it is refused, and the
    // well-known documents of the server itself are used instead, which name a resource that
    // is not this server.
    let challenge = r#"Bearer resource_metadata="https://169.254.169.254/prm""#;
    let mut steps = Vec::new();
    let err = auth_client()
        .discover_recorded(&server.url("/mcp"), Some(challenge), &mut steps)
        .await
        .unwrap_err();
    assert_eq!(
        steps[0].outcome,
        switchboard_oauth::Outcome::Refused,
        "{steps:?}"
    );
    assert!(steps[0].reason.contains("169.254.169.254"), "{steps:?}");
    assert!(matches!(err, OAuthError::ResourceMismatch { .. }), "{err}");
}

#[tokio::test]
async fn broken_metadata_is_reported_not_taken_for_absent() {
    let log = Log::default();
    let server = protected(
        &log,
        |base| json!({"authorization_servers": [base]}),
        |base| as_metadata(base, json!({})),
    )
    .await;
    let err = discover(&server).await.unwrap_err();
    assert!(
        matches!(&err, OAuthError::InvalidMetadata { document, .. } if document == "protected-resource metadata"),
        "{err}"
    );
    // Nothing was guessed: no request went to the 2025-03-26 places.
    assert!(
        log.matching("GET /.well-known/oauth-authorization-server")
            .is_empty()
    );
}

#[tokio::test]
async fn an_authorization_server_on_plain_http_elsewhere_is_named_as_the_reason() {
    let log = Log::default();
    let server = protected(
        &log,
        |base| json!({"resource": format!("{base}/mcp"), "authorization_servers": ["http://auth.example.com"]}),
        |base| as_metadata(base, json!({})),
    )
    .await;
    let err = discover(&server).await.unwrap_err();
    assert!(matches!(err, OAuthError::InsecureEndpoint { .. }), "{err}");
}
