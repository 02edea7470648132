//! The authorization code flow, refresh and revocation, checked on the wire: what reaches the
//! authorization server, and what never does.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Form;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use switchboard_domain::ClientSource;
use switchboard_oauth::{
    AuthServer, CallbackParams, ClientRegistration, OAuthError, TokenEndpointAuth, TokenKind,
    pkce_challenge,
};
use url::Url;

use crate::support::{Log, Server, as_metadata, auth_client, recorded, serve};

/// How the test authorization server's token endpoint answers.
#[derive(Clone)]
enum TokenAnswer {
    /// 200 with this JSON.
    Json(Value),
    /// This status with this JSON.
    Error(u16, Value),
    /// A 307 to this URL.
    Redirect(String),
}

/// A protected resource and its authorization server on one origin, with dynamic
/// registration, a token endpoint that answers as `answers` says (one answer per request, the
/// last repeating), and revocation.
async fn authorization_server(log: &Log, answers: Vec<TokenAnswer>) -> Server {
    let answers = Arc::new(Mutex::new(answers));
    let log = log.clone();
    serve(move |base| {
        let prm = json!({
            "resource": format!("{base}/mcp"),
            "authorization_servers": [base],
            "scopes_supported": ["mcp:read"],
        });
        let metadata = as_metadata(base, json!({}));
        recorded(
            Router::new()
                .route(
                    "/.well-known/oauth-protected-resource/mcp",
                    get(move || async move { axum::Json(prm) }),
                )
                .route(
                    "/.well-known/oauth-authorization-server",
                    get(move || async move { axum::Json(metadata) }),
                )
                .route(
                    "/register",
                    post(|| async {
                        (
                            StatusCode::CREATED,
                            axum::Json(json!({
                                "client_id": "dyn-client",
                                "client_secret": "dyn-secret",
                                "client_secret_expires_at": 0,
                                "token_endpoint_auth_method": "client_secret_basic",
                            })),
                        )
                    }),
                )
                .route(
                    "/token",
                    post(move |Form(_): Form<Vec<(String, String)>>| {
                        let answers = answers.clone();
                        async move {
                            let answer = {
                                let mut all = answers.lock().unwrap();
                                if all.len() > 1 {
                                    all.remove(0)
                                } else {
                                    all[0].clone()
                                }
                            };
                            token_response(answer)
                        }
                    }),
                )
                .route("/revoke", post(|| async { StatusCode::OK })),
            &log,
        )
    })
    .await
}

fn token_response(answer: TokenAnswer) -> Response {
    match answer {
        TokenAnswer::Json(v) => axum::Json(v).into_response(),
        TokenAnswer::Error(status, v) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(v)).into_response()
        }
        TokenAnswer::Redirect(to) => {
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
        }
    }
}

fn tokens(access: &str, refresh: Option<&str>) -> TokenAnswer {
    let mut v = json!({"access_token": access, "token_type": "bearer", "expires_in": 3600});
    if let Some(r) = refresh {
        v["refresh_token"] = json!(r);
    }
    TokenAnswer::Json(v)
}

async fn discovered(server: &Server) -> AuthServer {
    auth_client()
        .discover(&server.url("/mcp"), Some("Bearer"))
        .await
        .expect("discovery")
}

/// Plays the person: reads the authorization URL's parameters and comes back with a code.
fn come_back(authorization: &Url, iss: Option<&str>) -> CallbackParams {
    let state = authorization
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state");
    let mut query = format!("code=the-code&state={state}");
    if let Some(iss) = iss {
        query.push_str(&format!(
            "&iss={}",
            url::form_urlencoded::byte_serialize(iss.as_bytes()).collect::<String>()
        ));
    }
    CallbackParams::from_query(&query)
}

#[tokio::test]
async fn the_code_flow_sends_pkce_resource_and_client_authentication() {
    let log = Log::default();
    let server = authorization_server(
        &log,
        vec![tokens("at-1", Some("rt-1")), tokens("at-2", None)],
    )
    .await;
    let oauth = auth_client();
    let found = discovered(&server).await;
    assert_eq!(found.scopes, ["mcp:read", "offline_access"]);

    let client = oauth.register(&found, None).await.expect("registration");
    assert_eq!(client.source, ClientSource::Dynamic);
    assert_eq!(client.auth_method, TokenEndpointAuth::ClientSecretBasic);
    assert_eq!(client.secret_expires_at, None);
    let registration: Value =
        serde_json::from_str(&log.matching("POST /register")[0].body).unwrap();
    assert_eq!(registration["application_type"], "web");
    assert_eq!(
        registration["redirect_uris"],
        json!(["https://switchboard.example/oauth/callback"])
    );
    assert_eq!(
        registration["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );

    let started = oauth.begin(&found, &client, &found.scopes).expect("begin");
    let params: std::collections::HashMap<String, String> =
        started.url.query_pairs().into_owned().collect();
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], "dyn-client");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(
        params["code_challenge"],
        pkce_challenge(started.pending.code_verifier.expose())
    );
    assert_eq!(params["scope"], "mcp:read offline_access");
    assert_eq!(params["resource"], format!("{}/mcp", server.base));
    assert_eq!(params["state"], started.pending.state);

    // The pending authorization survives storage as JSON.
    let pending: switchboard_oauth::PendingAuthorization =
        serde_json::from_str(&serde_json::to_string(&started.pending).unwrap()).unwrap();
    let callback = come_back(&started.url, Some(&server.base));
    let granted = oauth
        .finish(&pending, &client, &callback)
        .await
        .expect("tokens");
    assert_eq!(granted.access_token.expose(), "at-1");
    assert_eq!(granted.authorization(), "Bearer at-1");
    assert_eq!(granted.scopes, ["mcp:read", "offline_access"]);
    assert!(granted.expires_at.is_some());

    let exchange = &log.matching("POST /token")[0];
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("dyn-client:dyn-secret")
    );
    assert_eq!(
        exchange.authorization.as_deref(),
        Some(expected_basic.as_str())
    );
    assert_eq!(
        exchange.field("grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(exchange.field("code").as_deref(), Some("the-code"));
    assert_eq!(
        exchange.field("code_verifier").as_deref(),
        Some(pending.code_verifier.expose())
    );
    assert_eq!(
        exchange.field("resource"),
        Some(format!("{}/mcp", server.base))
    );
    assert_eq!(
        exchange.field("client_secret"),
        None,
        "one authentication method only"
    );

    // A refresh sends the resource again and keeps the refresh token the server did not
    // replace.
    let refreshed = oauth
        .refresh(&found, &client, &granted)
        .await
        .expect("refresh");
    assert_eq!(refreshed.access_token.expose(), "at-2");
    assert_eq!(
        refreshed.refresh_token.as_ref().map(|t| t.expose()),
        Some("rt-1")
    );
    let refresh = &log.matching("POST /token")[1];
    assert_eq!(
        refresh.field("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(refresh.field("refresh_token").as_deref(), Some("rt-1"));
    assert_eq!(
        refresh.field("resource"),
        Some(format!("{}/mcp", server.base))
    );

    let token = refreshed.refresh_token.clone().unwrap();
    let revoked = oauth
        .revoke(&found, &client, &token, TokenKind::RefreshToken)
        .await
        .expect("revocation");
    assert!(revoked);
    let revocation = &log.matching("POST /revoke")[0];
    assert_eq!(revocation.field("token").as_deref(), Some("rt-1"));
    assert_eq!(
        revocation.field("token_type_hint").as_deref(),
        Some("refresh_token")
    );
}

#[tokio::test]
async fn a_forged_callback_never_reaches_the_token_endpoint() {
    let log = Log::default();
    let server = authorization_server(&log, vec![tokens("at", None)]).await;
    let oauth = auth_client();
    let found = discovered(&server).await;
    let client = oauth.register(&found, None).await.unwrap();
    let started = oauth.begin(&found, &client, &found.scopes).unwrap();
    for (callback, expected) in [
        (
            come_back(&started.url, Some("https://evil.example.com")),
            "IssMismatch",
        ),
        // The server advertises `iss`, so a response without one is refused too.
        (come_back(&started.url, None), "IssMissing"),
        (
            CallbackParams::from_query("code=c&state=not-the-state"),
            "StateMismatch",
        ),
    ] {
        let err = oauth
            .finish(&started.pending, &client, &callback)
            .await
            .unwrap_err();
        assert!(format!("{err:?}").starts_with(expected), "{err:?}");
    }
    assert!(log.matching("POST /token").is_empty());
}

#[tokio::test]
async fn a_token_endpoint_that_redirects_elsewhere_is_refused() {
    let log = Log::default();
    let server = authorization_server(
        &log,
        vec![TokenAnswer::Redirect("http://localhost:9/token".into())],
    )
    .await;
    let oauth = auth_client();
    let found = discovered(&server).await;
    let client = oauth.register(&found, None).await.unwrap();
    let started = oauth.begin(&found, &client, &found.scopes).unwrap();
    let err = oauth
        .finish(
            &started.pending,
            &client,
            &come_back(&started.url, Some(&server.base)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, OAuthError::Redirect { status: 307, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn refresh_failures_tell_a_lost_grant_from_a_passing_one() {
    let log = Log::default();
    let server = authorization_server(
        &log,
        vec![
            tokens("at", Some("rt")),
            TokenAnswer::Error(503, json!({"error": "temporarily_unavailable"})),
            TokenAnswer::Error(429, json!({})),
            TokenAnswer::Error(
                400,
                json!({"error": "invalid_grant", "error_description": "revoked by the user"}),
            ),
        ],
    )
    .await;
    let oauth = auth_client();
    let found = discovered(&server).await;
    let client: ClientRegistration = oauth.register(&found, None).await.unwrap();
    let started = oauth.begin(&found, &client, &found.scopes).unwrap();
    let granted = oauth
        .finish(
            &started.pending,
            &client,
            &come_back(&started.url, Some(&server.base)),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let passing = oauth.refresh(&found, &client, &granted).await.unwrap_err();
        assert!(
            passing.is_retryable() && !passing.is_grant_lost(),
            "{passing}"
        );
    }
    let lost = oauth.refresh(&found, &client, &granted).await.unwrap_err();
    assert!(lost.is_grant_lost() && !lost.is_retryable(), "{lost}");
    assert!(lost.to_string().contains("revoked by the user"), "{lost}");
}
