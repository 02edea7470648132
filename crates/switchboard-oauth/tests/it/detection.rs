//! Detection: which method a server wants, and the evidence a person reads.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;
use switchboard_domain::AuthMethod;
use switchboard_net::Destinations;
use switchboard_oauth::{DiscoverySource, Outcome};

use crate::support::{Log, as_metadata, auth_client, auth_client_with, recorded, serve};

fn unauthorized(challenge: &'static str) -> impl IntoResponse {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "unauthorized",
    )
}

#[tokio::test]
async fn an_open_server_needs_nothing_and_its_probe_session_is_ended() {
    let log = Log::default();
    let server = serve(|_| {
        recorded(
            Router::new().route(
                "/mcp",
                post(|| async {
                    let mut h = HeaderMap::new();
                    h.insert("mcp-session-id", "s-1".parse().unwrap());
                    (
                        h,
                        axum::Json(json!({"jsonrpc": "2.0", "id": 0, "result": {}})),
                    )
                })
                .delete(|| async { StatusCode::NO_CONTENT }),
            ),
            &log,
        )
    })
    .await;
    let found = auth_client().detect(&server.url("/mcp"), &[]).await;
    assert_eq!(found.method, AuthMethod::None, "{found:?}");
    assert!(found.problem.is_none());
    assert_eq!(found.steps.len(), 1);
    assert_eq!(found.steps[0].name, "mcp_request");
    assert_eq!(found.steps[0].status, Some(200));
    let lines: Vec<String> = log.all().into_iter().map(|s| s.line).collect();
    assert_eq!(lines, ["POST /mcp", "DELETE /mcp"]);
}

#[tokio::test]
async fn a_basic_challenge_means_basic_without_looking_for_oauth() {
    let log = Log::default();
    let server = serve(|_| {
        recorded(
            Router::new().route(
                "/mcp",
                post(|| async { unauthorized(r#"Basic realm="tools", charset="UTF-8""#) }),
            ),
            &log,
        )
    })
    .await;
    let found = auth_client().detect(&server.url("/mcp"), &[]).await;
    assert_eq!(found.method, AuthMethod::Basic, "{found:?}");
    assert_eq!(found.challenges[0].realm(), Some("tools"));
    let header = found.steps[0].header.as_ref().expect("the decisive header");
    assert_eq!(header.name, "www-authenticate");
    assert!(header.value.starts_with("Basic"));
    assert_eq!(log.all().len(), 1, "no metadata was looked for");
}

#[tokio::test]
async fn a_bearer_challenge_without_metadata_means_a_static_token() {
    let server = serve(|_| {
        Router::new().route(
            "/mcp",
            post(|| async { unauthorized(r#"Bearer realm="api""#) }),
        )
    })
    .await;
    let found = auth_client().detect(&server.url("/mcp"), &[]).await;
    assert_eq!(found.method, AuthMethod::Bearer, "{found:?}");
    assert!(found.oauth.is_none() && found.problem.is_none());
    let steps: Vec<(&str, Option<u16>, Outcome)> = found
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status, s.outcome))
        .collect();
    assert_eq!(
        steps,
        [
            ("mcp_request", Some(401), Outcome::Found),
            ("protected_resource_metadata", Some(404), Outcome::NotFound),
            ("protected_resource_metadata", Some(404), Outcome::NotFound),
            (
                "legacy_authorization_server_metadata",
                Some(404),
                Outcome::NotFound
            ),
        ]
    );
    assert!(
        found.steps[1]
            .url
            .as_deref()
            .unwrap()
            .ends_with("/.well-known/oauth-protected-resource/mcp")
    );
}

#[tokio::test]
async fn oauth_is_found_with_every_step_written_down() {
    let server = serve(|base| {
        let challenge =
            format!(r#"Bearer resource_metadata="{base}/meta/prm.json", scope="mcp:read""#);
        let prm = json!({
            "resource": format!("{base}/mcp"),
            "authorization_servers": [format!("{base}/tenant")],
            "scopes_supported": ["mcp:read", "mcp:write"],
        });
        let metadata = as_metadata(
            &format!("{base}/tenant"),
            json!({"client_id_metadata_document_supported": true}),
        );
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
                "/meta/prm.json",
                get(move || async move { axum::Json(prm) }),
            )
            .route(
                "/.well-known/openid-configuration/tenant",
                get(move || async move { axum::Json(metadata) }),
            )
    })
    .await;
    let found = auth_client().detect(&server.url("/mcp"), &[]).await;
    assert_eq!(found.method, AuthMethod::Oauth, "{found:?}");
    let oauth = found.oauth.expect("the OAuth details");
    assert_eq!(oauth.resource, format!("{}/mcp", server.base));
    assert_eq!(oauth.issuer, format!("{}/tenant", server.base));
    assert_eq!(oauth.source, DiscoverySource::ProtectedResource);
    assert_eq!(oauth.scopes, ["mcp:read", "offline_access"]);
    assert!(oauth.registration.metadata_document && oauth.registration.dynamic);
    let trail: Vec<(&str, Outcome)> = found
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.outcome))
        .collect();
    assert_eq!(
        trail,
        [
            ("mcp_request", Outcome::Found),
            ("protected_resource_metadata", Outcome::Found),
            // RFC 8414 with the path inserted, then OpenID Connect with the path inserted.
            ("authorization_server_metadata", Outcome::NotFound),
            ("authorization_server_metadata", Outcome::Found),
        ]
    );
    assert!(found.steps[1].reason.contains("named by the challenge"));
    // The report round-trips, so it can be stored with the connector.
    let json = serde_json::to_value(&oauth).unwrap();
    assert_eq!(
        serde_json::from_value::<switchboard_oauth::AuthServer>(json).unwrap(),
        oauth
    );
}

#[tokio::test]
async fn a_private_address_is_refused_and_the_report_says_so() {
    let server = serve(|_| Router::new().route("/mcp", post(|| async { "open" }))).await;
    let strict = auth_client_with(Destinations::public_only());
    let found = strict.detect(&server.url("/mcp"), &[]).await;
    assert_eq!(found.method, AuthMethod::Unknown);
    assert_eq!(found.steps[0].outcome, Outcome::Refused, "{found:?}");
    let problem = found.problem.expect("a problem");
    assert!(problem.contains("loopback"), "{problem}");
}
