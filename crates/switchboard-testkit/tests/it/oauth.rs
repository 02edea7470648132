//! The OAuth peers work together with no Switchboard code in between: oidc-provider, the
//! protected MCP server and Chromium, driven by hand with plain HTTP as an MCP client would
//! (MCP authorization, 2025-11-25: RFC 9728 discovery, RFC 7591 registration, PKCE, RFC 8707).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use switchboard_testkit::{Browser, OidcOptions, OidcProvider, ProtectedMcpServer};
use tokio::task::JoinHandle;

use crate::wire::{client, initialize_request, post_with_token, request, tool_names};

/// A loopback listener standing in for a client's redirect URI; it records every query it gets.
struct Callback {
    url: String,
    queries: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Callback {
    async fn start() -> Callback {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let app =
            Router::new()
                .route(
                    "/callback",
                    get(
                        |State(queries): State<Arc<Mutex<Vec<String>>>>,
                         RawQuery(query): RawQuery| async move {
                            queries.lock().unwrap().push(query.unwrap_or_default());
                            "signed in; you may close this window"
                        },
                    ),
                )
                .with_state(queries.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Callback { url, queries, task }
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A PKCE pair (RFC 7636): a random verifier and its S256 challenge.
struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

async fn get_json(url: &str) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

/// Follows the MCP client's discovery: the 401 challenge names the protected-resource metadata,
/// which names the authorization server, whose RFC 8414 metadata names the endpoints.
async fn discover(mcp_url: &str) -> (Value, Value) {
    let response = client()
        .post(mcp_url)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_request("2025-11-25"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "an MCP request without a token");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate challenge")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let metadata_url = challenge
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no resource_metadata in {challenge}"));
    let resource = get_json(metadata_url).await;
    let issuer = resource["authorization_servers"][0].as_str().unwrap();
    let server = get_json(&format!("{issuer}/.well-known/oauth-authorization-server")).await;
    (resource, server)
}

/// Registers a public client (RFC 7591) with `redirect_uri`; returns its client id.
async fn register(server: &Value, redirect_uri: &str) -> String {
    let response = client()
        .post(server["registration_endpoint"].as_str().unwrap())
        .json(&json!({
            "client_name": "switchboard-testkit",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "dynamic client registration");
    let client: Value = response.json().await.unwrap();
    client["client_id"].as_str().unwrap().to_owned()
}

fn authorization_url(
    server: &Value,
    client_id: &str,
    redirect_uri: &str,
    pkce: &Pkce,
    resource: &str,
) -> String {
    reqwest::Url::parse_with_params(
        server["authorization_endpoint"].as_str().unwrap(),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
            ("scope", "mcp"),
            ("state", "state-42"),
            ("resource", resource),
        ],
    )
    .unwrap()
    .to_string()
}

/// A POST to the token endpoint; returns the status and the JSON answer.
async fn token_request(server: &Value, form: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .post(server["token_endpoint"].as_str().unwrap())
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The claims of a JWT, unverified (the resource server is the one that verifies).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The text of the first content block of a `tools/call` answer.
fn tool_text(message: &Value) -> String {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a tool result: {message}"))
        .to_owned()
}

/// A signed-in, consented authorization for `mcp_url`: the tokens and what led to them.
struct Signed {
    server: Value,
    client_id: String,
    tokens: Value,
}

/// Discovery, registration, the browser through login and consent, and the code exchange.
async fn sign_in(browser: &Browser, callback: &Callback, mcp_url: &str) -> Signed {
    let (_, server) = discover(mcp_url).await;
    let client_id = register(&server, &callback.url).await;
    let pkce = pkce();
    let url = authorization_url(&server, &client_id, &callback.url, &pkce, mcp_url);
    let authorization = browser.authorize(&url, &callback.url).await.unwrap();
    assert_eq!(authorization.steps, ["login", "consent"]);
    assert_eq!(authorization.status, Some(200), "the callback answered");
    assert_eq!(authorization.param("state").as_deref(), Some("state-42"));
    let code = authorization
        .param("code")
        .unwrap_or_else(|| panic!("no code in {}", authorization.final_url));
    let (status, tokens) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback.url),
            ("code_verifier", &pkce.verifier),
            ("client_id", &client_id),
            ("resource", mcp_url),
        ],
    )
    .await;
    assert_eq!(status, 200, "code exchange: {tokens}");
    Signed {
        server,
        client_id,
        tokens,
    }
}

/// A refresh-token grant for the client of `signed`, without a `resource` (the grant has one).
async fn refresh_with(signed: &Signed, refresh_token: &str) -> (u16, Value) {
    token_request(
        &signed.server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &signed.client_id),
        ],
    )
    .await
}

#[tokio::test]
async fn the_protected_server_challenges_and_both_metadata_documents_are_served() {
    let issuer = OidcProvider::start(OidcOptions::default()).await;
    let mcp = ProtectedMcpServer::start(issuer.issuer()).await;

    let (resource, server) = discover(mcp.url()).await;
    assert_eq!(resource["resource"], mcp.url(), "{resource}");
    assert_eq!(resource["authorization_servers"], json!([issuer.issuer()]));
    assert_eq!(resource["scopes_supported"], json!(["mcp"]));

    assert_eq!(server["issuer"], issuer.issuer());
    assert_eq!(server["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        server["registration_endpoint"],
        issuer.registration_endpoint()
    );
    assert_eq!(
        server["authorization_endpoint"],
        issuer.authorization_endpoint()
    );
    assert_eq!(server["token_endpoint"], issuer.token_endpoint());
    assert_eq!(server["response_types_supported"], json!(["code"]));
    for field in ["revocation_endpoint", "introspection_endpoint", "jwks_uri"] {
        assert!(server[field].is_string(), "{field} in {server}");
    }
    let openid = get_json(&format!(
        "{}/.well-known/openid-configuration",
        issuer.issuer()
    ))
    .await;
    assert_eq!(openid["issuer"], issuer.issuer());

    // A token that is no JWT from the issuer gets the same challenge.
    let reply = post_with_token(
        mcp.url(),
        None,
        Some("not-a-token"),
        &initialize_request("2025-11-25"),
    )
    .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn a_static_token_server_accepts_only_its_tokens_and_names_their_subjects() {
    let mcp = ProtectedMcpServer::start_static(&[("alice", "tok-alice"), ("bob", "tok-bob")]).await;

    // No token, or another one: a plain Bearer challenge that points at no OAuth metadata.
    for token in [None, Some("tok-mallory")] {
        let response = client()
            .post(mcp.url())
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token.unwrap_or_default())
            .json(&initialize_request("2025-11-25"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(!challenge.contains("resource_metadata"), "{challenge}");
    }
    let metadata = client()
        .get(mcp.resource_metadata_url())
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 404);

    for (subject, token) in [("alice", "tok-alice"), ("bob", "tok-bob")] {
        let init = post_with_token(
            mcp.url(),
            None,
            Some(token),
            &initialize_request("2025-11-25"),
        )
        .await;
        assert_eq!(init.status, 200, "{}", mcp.output());
        let whoami = post_with_token(
            mcp.url(),
            init.session.as_deref(),
            Some(token),
            &request(
                2,
                "tools/call",
                json!({ "name": "whoami", "arguments": {} }),
            ),
        )
        .await;
        assert_eq!(tool_text(&whoami.message.unwrap()), subject);
    }
}

#[tokio::test]
async fn the_authorization_server_requires_pkce() {
    let issuer = OidcProvider::start(OidcOptions::default()).await;
    let callback = Callback::start().await;
    let server = get_json(&issuer.metadata_url()).await;
    let client_id = register(&server, &callback.url).await;
    let url = reqwest::Url::parse_with_params(
        &issuer.authorization_endpoint(),
        &[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", callback.url.as_str()),
            ("scope", "mcp"),
            ("state", "s"),
        ],
    )
    .unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects.get(url).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&callback.url), "{location}");
    assert!(location.contains("error=invalid_request"), "{location}");
    assert!(location.contains("PKCE"), "{location}");
}

#[tokio::test]
async fn a_browser_signs_in_and_the_token_opens_the_protected_server() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let issuer = OidcProvider::start(OidcOptions::default()).await;
    let mcp = ProtectedMcpServer::start(issuer.issuer()).await;
    let callback = Callback::start().await;

    let signed = sign_in(&browser, &callback, mcp.url()).await;
    assert_eq!(callback.queries().len(), 1, "the callback was served once");
    let access = signed.tokens["access_token"].as_str().unwrap();
    assert_eq!(signed.tokens["token_type"], "Bearer");
    assert_eq!(signed.tokens["scope"], "mcp");
    let jwt = claims(access);
    assert_eq!(jwt["aud"], mcp.url(), "the resource picked the audience");
    assert_eq!(jwt["sub"], "alice");
    assert_eq!(jwt["iss"], issuer.issuer());
    assert_eq!(jwt["client_id"], signed.client_id.as_str());

    let init = post_with_token(
        mcp.url(),
        None,
        Some(access),
        &initialize_request("2025-11-25"),
    )
    .await;
    assert_eq!(init.status, 200, "{}", mcp.output());
    let session = init.session.as_deref();
    let tools = post_with_token(
        mcp.url(),
        session,
        Some(access),
        &request(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(tools.status, 200);
    let mut names = tool_names(&tools.message.unwrap());
    names.sort();
    assert_eq!(names, ["echo", "token_info", "whoami"]);
    let whoami = post_with_token(
        mcp.url(),
        session,
        Some(access),
        &request(
            3,
            "tools/call",
            json!({ "name": "whoami", "arguments": {} }),
        ),
    )
    .await;
    assert_eq!(tool_text(&whoami.message.unwrap()), "alice");

    // The refresh token is rotated: the new pair works, the old refresh token is spent.
    let refresh = signed.tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = token_request(
        &signed.server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &signed.client_id),
            ("resource", mcp.url()),
        ],
    )
    .await;
    assert_eq!(status, 200, "refresh: {refreshed}");
    let new_refresh = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, refresh, "the refresh token rotates");
    let new_access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(claims(new_access)["aud"], mcp.url());
    let again = post_with_token(
        mcp.url(),
        None,
        Some(new_access),
        &initialize_request("2025-11-25"),
    )
    .await;
    assert_eq!(again.status, 200);

    // Introspection (RFC 7662) sees the new refresh token; revocation (RFC 7009) ends it.
    let introspect = || async {
        let response = client()
            .post(signed.server["introspection_endpoint"].as_str().unwrap())
            .form(&[("token", new_refresh), ("client_id", &signed.client_id)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    let active = introspect().await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["client_id"], signed.client_id.as_str());
    let revoked = client()
        .post(signed.server["revocation_endpoint"].as_str().unwrap())
        .form(&[("token", new_refresh), ("client_id", &signed.client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect().await["active"], false);

    let (status, reused) = token_request(
        &signed.server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &signed.client_id),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(reused["error"], "invalid_grant");
}

#[tokio::test]
async fn a_token_endpoint_outage_keeps_the_grant_and_revoking_every_grant_ends_it() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let issuer = OidcProvider::start(OidcOptions {
        access_token_ttl: Duration::from_secs(2),
        ..OidcOptions::default()
    })
    .await;
    let mcp = ProtectedMcpServer::start(issuer.issuer()).await;
    let callback = Callback::start().await;

    let signed = sign_in(&browser, &callback, mcp.url()).await;
    assert_eq!(signed.tokens["expires_in"], 2, "the configured TTL");
    let access = signed.tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        issuer.token_requests().await.unwrap(),
        1,
        "the code exchange"
    );
    let refresh = signed.tokens["refresh_token"].as_str().unwrap().to_owned();

    issuer.set_token_outage(true).await.unwrap();
    let (status, body) = refresh_with(&signed, &refresh).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        issuer.token_requests().await.unwrap(),
        2,
        "refused, but counted"
    );

    // The outage passed without touching the grant: the same refresh token still works.
    issuer.set_token_outage(false).await.unwrap();
    let (status, body) = refresh_with(&signed, &refresh).await;
    assert_eq!(status, 200, "{body}");
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(issuer.token_requests().await.unwrap(), 3);

    assert_eq!(issuer.revoke_all_grants().await.unwrap(), 1);
    let (status, body) = refresh_with(&signed, &rotated).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(issuer.token_requests().await.unwrap(), 4);

    // The first access token has expired by now, or soon: the MCP server then refuses it.
    let expires = claims(&access)["exp"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tokio::time::sleep(Duration::from_secs((expires + 1).saturating_sub(now))).await;
    let expired = post_with_token(
        mcp.url(),
        None,
        Some(&access),
        &initialize_request("2025-11-25"),
    )
    .await;
    assert_eq!(expired.status, 401, "an expired access token");
}

#[tokio::test]
async fn a_pre_registered_client_signs_in_and_a_token_for_another_resource_is_refused() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let callback = Callback::start().await;
    let issuer = OidcProvider::start(OidcOptions {
        clients: vec![json!({
            "client_id": "switchboard",
            "client_secret": "pre-registered-secret",
            "redirect_uris": [callback.url],
            "token_endpoint_auth_method": "client_secret_post",
        })],
        ..OidcOptions::default()
    })
    .await;
    assert_eq!(issuer.clients().len(), 1);
    let mcp = ProtectedMcpServer::start(issuer.issuer()).await;
    let server = get_json(&issuer.metadata_url()).await;

    // The same issuer, but the token is for another resource: the MCP server must refuse it.
    let other = "http://127.0.0.1:9/elsewhere";
    let pkce = pkce();
    let url = authorization_url(&server, "switchboard", &callback.url, &pkce, other);
    let authorization = browser
        .clone()
        .with_login("bob")
        .authorize(&url, &callback.url)
        .await
        .unwrap();
    let code = authorization.param("code").expect("a code");
    assert_eq!(
        authorization.param("iss").as_deref(),
        Some(issuer.issuer()),
        "RFC 9207"
    );
    let (status, tokens) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback.url),
            ("code_verifier", &pkce.verifier),
            ("client_id", "switchboard"),
            ("client_secret", "pre-registered-secret"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["aud"], other);
    assert_eq!(claims(access)["sub"], "bob");
    let refused = post_with_token(
        mcp.url(),
        None,
        Some(access),
        &initialize_request("2025-11-25"),
    )
    .await;
    assert_eq!(refused.status, 401, "a token for another audience");
    assert!(
        mcp.output().contains("refused a token for audience"),
        "{}",
        mcp.output()
    );
}

#[tokio::test]
async fn a_bad_pre_registered_client_stops_the_authorization_server_with_the_reason() {
    let error = OidcProvider::try_start(OidcOptions {
        clients: vec![json!({ "client_id": "no-secret" })],
        ..OidcOptions::default()
    })
    .await
    .expect_err("a client without a secret or an auth method of none is invalid");
    let message = format!("{error:#}");
    assert!(
        message.contains("without announcing its address"),
        "{message}"
    );
    assert!(message.contains("client_secret is mandatory"), "{message}");
}
