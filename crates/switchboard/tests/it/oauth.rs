//! OAuth connectors end to end, against real processes only: oidc-provider as the authorization
//! server, the Python SDK's protected MCP server, headless Chromium going through the real login
//! and consent pages, and `switchboard serve` (one, or two sharing a PostgreSQL database).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_domain::{ConnectorId, OrgId, Timestamp, grant_seal_context};
use switchboard_seal::{KeyRing, Sealed};
use switchboard_testkit::{Authorization, Browser, OidcOptions, OidcProvider, ProtectedMcpServer};

use crate::support::{Answer, Api, PASSWORD, Scratch, Server, open_data_dir, runtime};

/// The owner every test signs in as.
const OWNER: &str = "ada@example.org";

/// What the OAuth tests ask of the shared client besides plain requests.
impl Api {
    /// Calls a connector's function with `arguments`.
    async fn call(&self, connector: &str, function: &str, arguments: Value) -> Answer {
        self.post(
            &format!("/connectors/{connector}/functions/{function}/call"),
            json!({ "arguments": arguments }),
        )
        .await
    }

    async fn connector(&self, id: &str) -> Value {
        let answer = self.get(&format!("/connectors/{id}")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body
    }

    async fn authorization(&self, id: &str) -> Answer {
        self.get(&format!("/connectors/{id}/authorization")).await
    }
}

/// Opens `url` in headless Chromium, signs in as `alice`, consents, and lets Switchboard's
/// callback page load in that same browser (so the binding cookie set by the start link goes
/// with it), reporting the page's `#outcome`.
async fn browse(browser: &Browser, url: &str, callback_prefix: &str) -> Authorization {
    browser
        .clone()
        .with_outcome("#outcome")
        .with_timeout(Duration::from_secs(90))
        .authorize(url, callback_prefix)
        .await
        .expect("the browser completes the authorization")
}

/// The peers of one test: the authorization server and the MCP server it protects.
struct Upstream {
    oidc: OidcProvider,
    mcp: ProtectedMcpServer,
}

async fn peers(options: OidcOptions) -> Upstream {
    let oidc = OidcProvider::start(options).await;
    let mcp = ProtectedMcpServer::start(oidc.issuer()).await;
    Upstream { oidc, mcp }
}

/// The server environment every OAuth test needs: loopback peers over plain http.
const LOOPBACK: (&str, &str) = ("SWITCHBOARD_ALLOW_HTTP_LOOPBACK", "true");

/// Registers the protected server as a shared connector without choosing an auth method.
async fn register(api: &Api, url: &str) -> String {
    let org = api.org().await;
    let created = api
        .post(
            &format!("/orgs/{org}/connectors"),
            json!({"name": "Protected", "url": url, "credential_scope": "shared"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_owned()
}

/// Registers, validates (which detects OAuth) and authorizes the connector for the
/// organization through the browser; returns the connector id and the browser's run.
async fn connect(api: &Api, browser: &Browser, mcp_url: &str) -> (String, Value, Authorization) {
    let id = register(api, mcp_url).await;
    let validation = api
        .post(&format!("/connectors/{id}/validate"), json!({}))
        .await;
    assert_eq!(validation.status, 200, "{}", validation.text);
    let started = api
        .post(
            &format!("/connectors/{id}/authorize"),
            json!({"for": "organization"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text);
    let url = started.body["url"].as_str().unwrap().to_owned();
    let run = browse(browser, &url, &format!("{}/oauth/callback", api.base)).await;
    (id, validation.body, run)
}

/// Calls the protected server's `whoami`, which answers the access token's subject.
async fn whoami(api: &Api, id: &str) -> Answer {
    api.call(id, "whoami", json!({})).await
}

fn assert_called_as(answer: &Answer, login: &str) {
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.text.contains(&format!("\"{login}\"")) || answer.text.contains(login),
        "the call did not run as {login}: {}",
        answer.text
    );
    assert_ne!(answer.body["is_error"], true, "{}", answer.text);
}

fn browser() -> Option<Browser> {
    Browser::find()
}

#[test]
fn an_admin_connects_an_oauth_connector_through_the_browser_and_calls_it() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let p = rt.block_on(peers(OidcOptions::default()));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    // The default cookie settings (Secure): Chromium keeps Secure cookies from loopback.
    let server = s.serve(&[LOOPBACK]);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let id = register(&api, p.mcp.url()).await;

        // Validation meets the 401, detects OAuth and shows its evidence.
        let validation = api
            .post(&format!("/connectors/{id}/validate"), json!({}))
            .await;
        assert_eq!(validation.status, 200, "{}", validation.text);
        let v = &validation.body;
        assert_eq!(v["connector"]["status"], "needs_auth", "{v:#}");
        assert_eq!(v["connector"]["auth_method"], "oauth", "{v:#}");
        assert_eq!(v["auth"]["method"], "oauth", "{v:#}");
        assert_eq!(v["auth"]["oauth"]["issuer"], p.oidc.issuer(), "{v:#}");
        let steps = v["auth"]["steps"].as_array().expect("evidence steps");
        let step = |name: &str| {
            steps
                .iter()
                .find(|s| s["name"] == name && s["outcome"] == "found")
                .unwrap_or_else(|| panic!("no successful {name} step in {steps:#?}"))
                .clone()
        };
        let challenge = step("mcp_request");
        assert_eq!(challenge["status"], 401, "{challenge}");
        assert_eq!(
            challenge["header"]["name"], "www-authenticate",
            "{challenge}"
        );
        let prm = step("protected_resource_metadata");
        assert_eq!(prm["url"], p.mcp.resource_metadata_url(), "{prm}");
        assert_eq!(prm["status"], 200, "{prm}");
        let asm = step("authorization_server_metadata");
        assert!(
            asm["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/.well-known/", p.oidc.issuer())),
            "{asm}"
        );
        assert_eq!(asm["status"], 200, "{asm}");
        // The connector remembers it, and a call before the authorization says what to do.
        let stored = api.connector(&id).await;
        assert_eq!(stored["status"], "needs_auth", "{stored}");
        assert_eq!(stored["auth_method"], "oauth", "{stored}");
        let early = whoami(&api, &id).await;
        assert_eq!(early.status, 409, "{}", early.text);
        assert_eq!(early.code(), "needs_auth", "{}", early.text);
        let status = api.authorization(&id).await;
        assert_eq!(status.status, 200, "{}", status.text);
        assert_eq!(status.body["connected"], false, "{}", status.text);

        // The start link.
        let started = api
            .post(&format!("/connectors/{id}/authorize"), json!({}))
            .await;
        assert_eq!(started.status, 200, "{}", started.text);
        let start = &started.body;
        assert_eq!(start["issuer"], p.oidc.issuer(), "{start}");
        assert!(
            start["scopes"].as_array().unwrap().contains(&json!("mcp")),
            "the product must ask for the scope the server needs: {start}"
        );
        let url = start["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/oauth/start?state=", server.url)),
            "{url}"
        );

        let run = browse(&browser, url, &format!("{}/oauth/callback", server.url)).await;
        assert_eq!(run.steps, ["login", "consent"], "{run:?}");
        assert_eq!(run.status, Some(200), "{run:?}");
        let query = reqwest::Url::parse(&run.final_url).unwrap();
        let iss = query
            .query_pairs()
            .find(|(k, _)| k == "iss")
            .map(|(_, v)| v.into_owned());
        assert_eq!(iss.as_deref(), Some(p.oidc.issuer()), "{run:?}");
        let outcome = run
            .outcome
            .clone()
            .expect("the callback page has an outcome");
        assert!(
            outcome.contains("Protected is connected for the organization"),
            "{outcome}"
        );

        let connector = api.connector(&id).await;
        assert_eq!(connector["status"], "active", "{connector}");
        let functions = api.get(&format!("/connectors/{id}/functions")).await;
        assert_eq!(functions.status, 200, "{}", functions.text);
        for name in ["whoami", "token_info", "echo"] {
            assert!(
                functions.text.contains(&format!("\"{name}\"")),
                "no {name} in {}",
                functions.text
            );
        }
        let status = api.authorization(&id).await;
        assert_eq!(status.body["connected"], true, "{}", status.text);
        assert_eq!(status.body["status"], "active", "{}", status.text);
        assert_eq!(status.body["issuer"], p.oidc.issuer(), "{}", status.text);

        assert_called_as(&whoami(&api, &id).await, "alice");
        // The token was issued for this resource (RFC 8707) with the scope it needs.
        let info = api.call(&id, "token_info", json!({})).await;
        assert_eq!(info.status, 200, "{}", info.text);
        assert!(info.text.contains("mcp"), "{}", info.text);
        assert!(info.text.contains(p.mcp.url()), "{}", info.text);

        // Disconnecting deletes the grant: calls need an authorization again.
        let gone = api
            .send(
                reqwest::Method::DELETE,
                &format!("/connectors/{id}/authorization"),
                None,
            )
            .await;
        assert_eq!(gone.status, 204, "{}", gone.text);
        let status = api.authorization(&id).await;
        assert_eq!(status.body["connected"], false, "{}", status.text);
        let after = whoami(&api, &id).await;
        assert_eq!(after.code(), "needs_auth", "{}", after.text);
    });
    drop(server);
}

/// Runs `count` calls of `whoami` at once on each API client, and returns every answer.
async fn concurrent_calls(apis: &[Api], id: &str, count: usize) -> Vec<Answer> {
    let mut set = tokio::task::JoinSet::new();
    for api in apis {
        for _ in 0..count {
            let api = api.clone();
            let id = id.to_owned();
            set.spawn(async move { whoami(&api, &id).await });
        }
    }
    let mut answers = Vec::new();
    while let Some(answer) = set.join_next().await {
        answers.push(answer.unwrap());
    }
    answers
}

/// Waits until the access token the grant holds has expired: compares the authorization's
/// `expires_at` with the clock, in a bounded loop.
async fn wait_for_expiry(api: &Api, id: &str) {
    let status = api.authorization(id).await;
    let expires_at = status.body["expires_at"]
        .as_str()
        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no expires_at in {}", status.text))
        .millis();
    for _ in 0..600 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        if now > expires_at + 500 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the access token did not expire (expires_at {expires_at})");
}

/// Short-lived access tokens: a few seconds, so that the test waits past their expiry. A
/// fresh one is used without refresh for half its lifetime.
fn short_tokens() -> OidcOptions {
    OidcOptions {
        access_token_ttl: Duration::from_secs(5),
        ..OidcOptions::default()
    }
}

#[test]
fn fifty_concurrent_calls_with_an_expired_token_refresh_it_once() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let p = rt.block_on(peers(short_tokens()));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK]);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let (id, _, run) = connect(&api, &browser, p.mcp.url()).await;
        assert_eq!(run.status, Some(200), "{run:?}");
        assert_eq!(api.connector(&id).await["status"], "active");

        wait_for_expiry(&api, &id).await;
        let before = p.oidc.token_requests().await.unwrap();
        let answers = concurrent_calls(std::slice::from_ref(&api), &id, 50).await;
        let after = p.oidc.token_requests().await.unwrap();
        for answer in &answers {
            assert_called_as(answer, "alice");
        }
        assert_eq!(
            after - before,
            1,
            "50 calls with an expired token must refresh it exactly once\n{}",
            p.oidc.output()
        );
    });
}

#[test]
fn two_servers_sharing_postgres_refresh_an_expired_token_once() {
    let Ok(admin_url) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") else {
        // CI must run this test, never pass it vacuously (scripts/test starts a cluster).
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SWITCHBOARD_TEST_POSTGRES_URL must be set under CI"
        );
        eprintln!(
            "SWITCHBOARD_TEST_POSTGRES_URL is not set; skipping the two-server refresh test \
             (scripts/test sets it)"
        );
        return;
    };
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let name = format!(
        "sb_oauth_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut database = url::Url::parse(&admin_url).expect("SWITCHBOARD_TEST_POSTGRES_URL is a URL");
    database.set_path(&format!("/{name}"));
    rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    let p = rt.block_on(peers(short_tokens()));
    let s = Scratch::new();
    let env = [LOOPBACK, ("SWITCHBOARD_DATABASE_URL", database.as_str())];
    s.create_owner(OWNER, "acme", &env);
    // Both use the key the first command generated in the shared data directory.
    let one = s.serve(&env);
    let two = s.serve(&env);
    rt.block_on(async {
        let api_one = Api::sign_in(&one.url, OWNER).await;
        let api_two = Api::sign_in(&two.url, OWNER).await;
        let (id, _, run) = connect(&api_one, &browser, p.mcp.url()).await;
        assert_eq!(run.status, Some(200), "{run:?}");
        assert_eq!(api_two.connector(&id).await["status"], "active");
        // Both processes have used the grant, so both hold sessions with the old token.
        assert_called_as(&whoami(&api_one, &id).await, "alice");
        assert_called_as(&whoami(&api_two, &id).await, "alice");

        wait_for_expiry(&api_one, &id).await;
        let before = p.oidc.token_requests().await.unwrap();
        let answers = concurrent_calls(&[api_one.clone(), api_two.clone()], &id, 25).await;
        let after = p.oidc.token_requests().await.unwrap();
        for answer in &answers {
            assert_called_as(answer, "alice");
        }
        assert_eq!(
            after - before,
            1,
            "two processes must refresh the shared grant exactly once\n{}",
            p.oidc.output()
        );
    });
    drop(one);
    drop(two);
    rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
}

#[test]
fn an_outage_keeps_the_grant_and_a_revoked_grant_needs_a_new_authorization() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let p = rt.block_on(peers(short_tokens()));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK]);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let (id, _, run) = connect(&api, &browser, p.mcp.url()).await;
        assert_eq!(run.status, Some(200), "{run:?}");
        assert_eq!(api.connector(&id).await["status"], "active");

        // A passing failure at the token endpoint: the call fails, the grant stays.
        p.oidc.set_token_outage(true).await.unwrap();
        wait_for_expiry(&api, &id).await;
        let failed = whoami(&api, &id).await;
        assert_eq!(failed.status, 503, "{}", failed.text);
        assert_eq!(failed.code(), "unavailable", "{}", failed.text);
        let status = api.authorization(&id).await;
        assert_eq!(status.body["connected"], true, "{}", status.text);
        assert_eq!(status.body["status"], "active", "{}", status.text);
        assert_eq!(api.connector(&id).await["status"], "active");

        // The outage passes: the same grant works again.
        p.oidc.set_token_outage(false).await.unwrap();
        assert_called_as(&whoami(&api, &id).await, "alice");

        // The authorization server forgets the grant: the next refresh is refused for good.
        assert!(p.oidc.revoke_all_grants().await.unwrap() >= 1);
        wait_for_expiry(&api, &id).await;
        let refused = whoami(&api, &id).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert_eq!(refused.code(), "needs_auth", "{}", refused.text);
        let status = api.authorization(&id).await;
        assert_eq!(status.body["connected"], false, "{}", status.text);
        assert_eq!(status.body["status"], "revoked", "{}", status.text);
        let reason = status.body["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("invalid_grant"), "{}", status.text);
        let connector = api.connector(&id).await;
        assert_eq!(connector["status"], "needs_auth", "{connector}");
        // And it stays so: no further token requests for a revoked grant.
        let before = p.oidc.token_requests().await.unwrap();
        let again = whoami(&api, &id).await;
        assert_eq!(again.code(), "needs_auth", "{}", again.text);
        assert_eq!(p.oidc.token_requests().await.unwrap(), before);
    });
}

#[test]
fn the_callback_refuses_unknown_states_and_other_browsers() {
    let rt = runtime();
    let p = rt.block_on(peers(OidcOptions::default()));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK]);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let id = register(&api, p.mcp.url()).await;
        let validation = api
            .post(&format!("/connectors/{id}/validate"), json!({}))
            .await;
        assert_eq!(validation.status, 200, "{}", validation.text);
        // A plain client with no cookie store: every request is "another browser".
        let plain = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = |response: reqwest::Response| async move {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        };

        // A state nobody issued.
        let (status, text) = page(
            plain
                .get(format!(
                    "{}/oauth/callback?code=abc&state=made-up&iss={}",
                    server.url,
                    p.oidc.issuer()
                ))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 404, "{text}");
        assert!(text.contains("id=\"outcome\""), "{text}");
        assert!(!text.contains("is connected"), "{text}");

        // A real start link opened here, whose callback then arrives without the cookie.
        let started = api
            .post(&format!("/connectors/{id}/authorize"), json!({}))
            .await;
        assert_eq!(started.status, 200, "{}", started.text);
        let start_url = started.body["url"].as_str().unwrap().to_owned();
        let opened = plain.get(&start_url).send().await.unwrap();
        assert_eq!(opened.status(), 303);
        let cookie = opened
            .headers()
            .get("set-cookie")
            .expect("the start link sets the binding cookie")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cookie.starts_with("sb_oauth_binding="), "{cookie}");
        for attribute in ["Path=/oauth", "HttpOnly", "SameSite=Lax", "Secure"] {
            assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
        }
        let location = opened.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&p.oidc.authorization_endpoint()),
            "{location}"
        );
        let state = reqwest::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("a state");
        let callback = format!(
            "{}/oauth/callback?code=abc&state={state}&iss={}",
            server.url,
            p.oidc.issuer()
        );
        let (status, text) = page(plain.get(&callback).send().await.unwrap()).await;
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("another browser"), "{text}");
        // A wrong cookie is another browser too.
        let (status, text) = page(
            plain
                .get(&callback)
                .header("cookie", "sb_oauth_binding=0000")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            status >= 400 && !text.contains("is connected"),
            "{status} {text}"
        );
        // The refused callback used the authorization up, and the start link opens once.
        let twice = plain.get(&start_url).send().await.unwrap();
        assert!(twice.status().is_client_error(), "{}", twice.status());

        let status = api.authorization(&id).await;
        assert_eq!(status.body["connected"], false, "{}", status.text);
        assert_eq!(api.connector(&id).await["status"], "needs_auth");
    });
}

/// Where a JWT (RFC 7519, compact form) starts in `bytes`: a header and a payload, each
/// base64url-encoded JSON and so starting with `eyJ`, joined by a dot. Looking for `eyJ` alone
/// would also find it by chance inside the random base64url of a sealed value.
fn find_jwt(bytes: &[u8]) -> Option<usize> {
    let b64url = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    (0..bytes.len()).find(|&at| {
        if !bytes[at..].starts_with(b"eyJ") {
            return false;
        }
        let header = bytes[at..].iter().take_while(|b| b64url(b)).count();
        bytes[at + header..].starts_with(b".eyJ") && header >= 10
    })
}

/// Which files under `dir` hold `needle` (or a JWT, for [`JWT`]), read as bytes, with some
/// context around the first match.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let position = |bytes: &[u8]| {
            if needle == JWT {
                find_jwt(bytes)
            } else {
                bytes.windows(needle.len()).position(|w| w == needle)
            }
        };
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && let Some(at) = position(&bytes)
        {
            // Some context, so a failure shows which value held it.
            let around = &bytes[at.saturating_sub(160)..(at + 200).min(bytes.len())];
            found.push(format!(
                "{}: …{}…",
                path.display(),
                String::from_utf8_lossy(around)
            ));
        }
    }
    found
}

/// Stands for "any JWT" in [`files_containing`].
const JWT: &[u8] = b"<jwt>";

#[test]
fn no_token_leaks_into_logs_answers_or_the_database() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let p = rt.block_on(peers(short_tokens()));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK, ("SWITCHBOARD_LOG_LEVEL", "trace")]);
    let (answers, org, id) = rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let (id, validation, run) = connect(&api, &browser, p.mcp.url()).await;
        assert_eq!(run.status, Some(200), "{run:?}");
        assert_called_as(&whoami(&api, &id).await, "alice");
        // A refresh, so the log has seen a refresh-token round too.
        wait_for_expiry(&api, &id).await;
        let before = p.oidc.token_requests().await.unwrap();
        let call = whoami(&api, &id).await;
        assert_called_as(&call, "alice");
        assert!(p.oidc.token_requests().await.unwrap() > before);
        // The token the server holds now, as the MCP server saw it.
        let info = api.call(&id, "token_info", json!({})).await;
        let connector = api.get(&format!("/connectors/{id}")).await;
        let status = api.authorization(&id).await;
        let org = api.org().await;
        let list = api.get(&format!("/orgs/{org}/connectors")).await;
        let audit = api.get(&format!("/orgs/{org}/audit")).await;
        let answers = vec![
            validation.to_string(),
            connector.text,
            status.text,
            list.text,
            audit.text,
            call.text,
            info.text,
        ];
        (answers, org, id)
    });
    // The log goes to standard output; standard error has the address line.
    let log = format!("{}{}", server.stdout(), server.stderr());
    // Trace level really is on, and the OAuth work happened in this log.
    assert!(log.contains("TRACE"), "{log}");
    assert!(log.contains("/oauth/callback"), "{log}");
    if let Some(at) = find_jwt(log.as_bytes()) {
        panic!(
            "a JWT is in the log: {}",
            &log[at..(at + 200).min(log.len())]
        );
    }
    for needle in ["refresh_token=", "\"refresh_token\"", "code_verifier="] {
        assert!(!log.contains(needle), "{needle} is in the log:\n{log}");
    }
    for answer in &answers {
        assert!(
            find_jwt(answer.as_bytes()).is_none(),
            "a JWT is in an answer: {answer}"
        );
    }
    drop(server);
    let leaks = files_containing(&s.data_dir(), JWT);
    assert!(
        leaks.is_empty(),
        "a JWT is stored in plain text in {leaks:?}"
    );

    // The tokens themselves, opened from the sealed grant with the master key: neither the
    // current access token nor the refresh token appears anywhere.
    let tokens = rt.block_on(async {
        let opened = open_data_dir(&s.data_dir()).await;
        let org: OrgId = org.parse().unwrap();
        let id: ConnectorId = id.parse().unwrap();
        let grant = opened
            .store
            .oauth_grant(org, id, None)
            .await
            .unwrap()
            .expect("the organization's grant is stored");
        let ring =
            KeyRing::parse(&std::fs::read_to_string(s.data_dir().join("master.key")).unwrap())
                .unwrap();
        let plain = ring
            .open(
                &Sealed::from_stored(grant.sealed.clone()),
                &grant_seal_context(id, None, &grant.issuer),
            )
            .expect("the grant opens with its context");
        let tokens: Value = serde_json::from_slice(&plain).unwrap();
        tokens
    });
    let access = tokens["access_token"].as_str().expect("an access token");
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");
    assert_eq!(
        find_jwt(access.as_bytes()),
        Some(0),
        "the access token is a JWT: the check works"
    );
    for (what, secret) in [("access token", access), ("refresh token", refresh)] {
        assert!(!log.contains(secret), "the {what} is in the log");
        for answer in &answers {
            assert!(
                !answer.contains(secret),
                "the {what} is in an answer: {answer}"
            );
        }
        let stored = files_containing(&s.data_dir(), secret.as_bytes());
        assert!(
            stored.is_empty(),
            "the {what} is stored in plain text in {stored:?}"
        );
    }
}

// ---- Per-member credentials, pre-registered clients, validation before a grant, the CLI ----

/// Adds a new account `email` to the caller's first organization as a plain member.
async fn add_member(api: &Api, email: &str) {
    let org = api.org().await;
    let added = api
        .post(
            &format!("/orgs/{org}/members"),
            json!({"email": email, "role": "member", "display_name": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
}

/// Opens `url` in Chromium signed in at the authorization server as `login`.
async fn browse_as(browser: &Browser, login: &str, url: &str, prefix: &str) -> Authorization {
    browse(&browser.clone().with_login(login), url, prefix).await
}

/// Registers a connector with `body` (name, url and more) in the caller's first organization.
async fn create(api: &Api, body: Value) -> String {
    let org = api.org().await;
    let created = api.post(&format!("/orgs/{org}/connectors"), body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn validate(api: &Api, id: &str) -> Value {
    let validation = api
        .post(&format!("/connectors/{id}/validate"), json!({}))
        .await;
    assert_eq!(validation.status, 200, "{}", validation.text);
    validation.body
}

/// A token value unique to this run, so that a search for it finds only this test's copies.
fn unique_token(who: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sb-static-{who}-{nanos:x}-{}", std::process::id())
}

#[test]
fn members_bring_their_own_bearer_tokens_and_each_call_runs_as_its_owner() {
    let rt = runtime();
    let ada_token = unique_token("ada");
    let bob_token = unique_token("bob");
    let mcp = rt.block_on(ProtectedMcpServer::start_static(&[
        ("ada", &ada_token),
        ("bob", &bob_token),
    ]));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK, ("SWITCHBOARD_LOG_LEVEL", "trace")]);
    let (answers, api_tokens) = rt.block_on(async {
        let ada = Api::sign_in(&server.url, OWNER).await;
        add_member(&ada, "bob@example.org").await;
        let bob = Api::sign_in(&server.url, "bob@example.org").await;
        let id = create(
            &ada,
            json!({"name": "Tokens", "url": mcp.url(), "credential_scope": "member",
                   "auth_method": "bearer"}),
        )
        .await;
        let mut answers = Vec::new();

        // The admin has not set their own token yet: validation meets the 401, shows it and
        // says what is missing.
        let v = validate(&ada, &id).await;
        assert_eq!(v["connector"]["status"], "needs_auth", "{v:#}");
        assert_eq!(v["connector"]["credential_scope"], "member", "{v:#}");
        let last_error = v["connector"]["last_error"].as_str().unwrap_or_default();
        assert!(
            last_error.contains("set your own bearer token"),
            "{last_error}"
        );
        let steps = v["auth"]["steps"].as_array().expect("detection steps");
        assert!(
            steps
                .iter()
                .any(|s| s["name"] == "mcp_request" && s["status"] == 401),
            "{steps:#?}"
        );
        answers.push(v.to_string());

        // Each member sets their own token; the answer never holds it.
        let set = ada
            .send(
                reqwest::Method::PUT,
                &format!("/connectors/{id}/credential"),
                Some(json!({"kind": "bearer", "token": ada_token})),
            )
            .await;
        assert_eq!(set.status, 204, "{}", set.text);
        let v = validate(&ada, &id).await;
        assert_eq!(v["connector"]["status"], "active", "{v:#}");
        assert_eq!(
            v["connector"]["has_credential"], false,
            "no shared one: {v:#}"
        );
        answers.push(v.to_string());
        assert_called_as(&whoami(&ada, &id).await, "ada");

        // Bob has none: the call says what he must bring.
        let refused = whoami(&bob, &id).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert_eq!(refused.code(), "needs_auth", "{}", refused.text);
        let message = refused.body["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.contains("you have not set yours") && message.contains("bearer token"),
            "{message}"
        );
        answers.push(refused.text);

        let set = bob
            .send(
                reqwest::Method::PUT,
                &format!("/connectors/{id}/credential"),
                Some(json!({"kind": "bearer", "token": bob_token})),
            )
            .await;
        assert_eq!(set.status, 204, "{}", set.text);
        // Interleaved, each call runs with its caller's own token.
        for _ in 0..2 {
            let as_bob = whoami(&bob, &id).await;
            assert_called_as(&as_bob, "bob");
            let as_ada = whoami(&ada, &id).await;
            assert_called_as(&as_ada, "ada");
            answers.extend([as_bob.text, as_ada.text]);
        }

        // A member cannot set the organization's credential, nor read anyone's.
        let shared = bob
            .send(
                reqwest::Method::PATCH,
                &format!("/connectors/{id}"),
                Some(json!({"credential": {"kind": "bearer", "token": "x"}})),
            )
            .await;
        assert_eq!(shared.status, 403, "{}", shared.text);

        // Bob removes his token: he needs one again, Ada is unaffected.
        let removed = bob
            .send(
                reqwest::Method::DELETE,
                &format!("/connectors/{id}/credential"),
                None,
            )
            .await;
        assert_eq!(removed.status, 204, "{}", removed.text);
        assert_eq!(whoami(&bob, &id).await.code(), "needs_auth");
        assert_called_as(&whoami(&ada, &id).await, "ada");

        let org = ada.org().await;
        for path in [
            format!("/connectors/{id}"),
            format!("/orgs/{org}/connectors"),
            format!("/connectors/{id}/functions"),
            format!("/orgs/{org}/audit"),
        ] {
            for api in [&ada, &bob] {
                answers.push(api.get(&path).await.text);
            }
        }
        // The Switchboard API tokens their sign-ins answered with, sent with every request.
        (answers, [ada.token.clone(), bob.token.clone()])
    });
    let log = format!("{}{}", server.stdout(), server.stderr());
    assert!(log.contains("TRACE"), "trace logging is on");
    drop(server);
    for token in [&ada_token, &bob_token, &api_tokens[0], &api_tokens[1]] {
        for answer in &answers {
            assert!(!answer.contains(token.as_str()), "a token is in {answer}");
        }
        assert!(!log.contains(token.as_str()), "a token is in the log");
        let stored = files_containing(&s.data_dir(), token.as_bytes());
        assert!(
            stored.is_empty(),
            "a token is stored in plain text: {stored:?}"
        );
    }
}

#[test]
fn every_member_connects_their_own_account_and_calls_run_as_that_login() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let p = rt.block_on(peers(OidcOptions::default()));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK]);
    rt.block_on(async {
        let ada = Api::sign_in(&server.url, OWNER).await;
        add_member(&ada, "bob@example.org").await;
        let bob = Api::sign_in(&server.url, "bob@example.org").await;
        let id = create(
            &ada,
            json!({"name": "Protected", "url": p.mcp.url(), "credential_scope": "member",
                   "auth_method": "oauth"}),
        )
        .await;
        let callback = format!("{}/oauth/callback", server.url);

        // Before anyone connects: validation detects OAuth and waits for a grant.
        let v = validate(&ada, &id).await;
        assert_eq!(v["connector"]["status"], "needs_auth", "{v:#}");
        assert_eq!(v["auth"]["oauth"]["issuer"], p.oidc.issuer(), "{v:#}");

        // The organization cannot hold this connector's grant.
        let for_org = ada
            .post(
                &format!("/connectors/{id}/authorize"),
                json!({"for": "organization"}),
            )
            .await;
        assert_eq!(for_org.status, 409, "{}", for_org.text);

        // Ada (an owner) connects her own account as alice; that also validates the connector.
        let started = ada
            .post(&format!("/connectors/{id}/authorize"), json!({}))
            .await;
        assert_eq!(started.status, 200, "{}", started.text);
        let run = browse_as(
            &browser,
            "alice",
            started.body["url"].as_str().unwrap(),
            &callback,
        )
        .await;
        let outcome = run.outcome.clone().unwrap_or_default();
        assert!(
            outcome.contains("Protected is connected to your account"),
            "{run:?}"
        );
        assert_eq!(ada.connector(&id).await["status"], "active");
        assert_called_as(&whoami(&ada, &id).await, "alice");

        // Bob has no grant of his own: his calls and his status say so.
        let refused = whoami(&bob, &id).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert_eq!(refused.code(), "needs_auth", "{}", refused.text);
        assert!(
            refused.text.contains("you have not connected your account"),
            "{}",
            refused.text
        );
        let status = bob.authorization(&id).await;
        assert_eq!(status.status, 200, "{}", status.text);
        assert_eq!(status.body["connected"], false, "{}", status.text);
        assert_eq!(status.body["holder"], "member", "{}", status.text);
        assert_eq!(status.body["status"], Value::Null, "{}", status.text);
        let status = ada.authorization(&id).await;
        assert_eq!(status.body["connected"], true, "{}", status.text);
        assert_eq!(status.body["holder"], "member", "{}", status.text);

        // Bob connects his own account as bob.
        let started = bob
            .post(&format!("/connectors/{id}/authorize"), json!({}))
            .await;
        assert_eq!(started.status, 200, "{}", started.text);
        let run = browse_as(
            &browser,
            "bob",
            started.body["url"].as_str().unwrap(),
            &callback,
        )
        .await;
        assert!(
            run.outcome
                .as_deref()
                .is_some_and(|o| o.contains("connected to your account")),
            "{run:?}"
        );
        let status = bob.authorization(&id).await;
        assert_eq!(status.body["connected"], true, "{}", status.text);
        assert_eq!(status.body["issuer"], p.oidc.issuer(), "{}", status.text);
        assert_called_as(&whoami(&bob, &id).await, "bob");
        assert_called_as(&whoami(&ada, &id).await, "alice");
        let info = bob.call(&id, "token_info", json!({})).await;
        assert!(info.text.contains("bob"), "{}", info.text);

        // Bob disconnects: only his grant goes.
        let gone = bob
            .send(
                reqwest::Method::DELETE,
                &format!("/connectors/{id}/authorization"),
                None,
            )
            .await;
        assert_eq!(gone.status, 204, "{}", gone.text);
        assert_eq!(whoami(&bob, &id).await.code(), "needs_auth");
        assert_eq!(bob.authorization(&id).await.body["connected"], false);
        assert_called_as(&whoami(&ada, &id).await, "alice");
        assert_eq!(ada.authorization(&id).await.body["connected"], true);
    });
}

#[test]
fn a_pre_registered_client_entered_by_an_admin_is_used_and_nothing_is_registered() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    // Switchboard first: the client is registered with its callback address.
    let server = s.serve(&[LOOPBACK]);
    let callback = format!("{}/oauth/callback", server.url);
    let secret = unique_token("client-secret");
    let client = json!({
        "client_id": "switchboard-preregistered",
        "client_secret": secret,
        "redirect_uris": [callback],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let p = rt.block_on(peers(OidcOptions {
        clients: vec![client],
        ..short_tokens()
    }));
    let answers = rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let id = register(&api, p.mcp.url()).await;
        let v = validate(&api, &id).await;
        assert_eq!(v["connector"]["auth_method"], "oauth", "{v:#}");

        let entered = api
            .send(
                reqwest::Method::PUT,
                &format!("/connectors/{id}/oauth/client"),
                Some(json!({"client_id": "switchboard-preregistered", "client_secret": secret})),
            )
            .await;
        assert_eq!(entered.status, 204, "{}", entered.text);

        let started = api
            .post(&format!("/connectors/{id}/authorize"), json!({}))
            .await;
        assert_eq!(started.status, 200, "{}", started.text);
        let run = browse(&browser, started.body["url"].as_str().unwrap(), &callback).await;
        assert_eq!(run.status, Some(200), "{run:?}");
        assert_eq!(api.connector(&id).await["status"], "active");

        // The tokens were issued to the pre-registered client.
        let info = api.call(&id, "token_info", json!({})).await;
        assert_eq!(info.status, 200, "{}", info.text);
        let claims: Value = info.body["result"]["content"][0]["text"]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| panic!("no token_info text in {}", info.text));
        assert_eq!(claims["client_id"], "switchboard-preregistered", "{claims}");
        // A refresh authenticates as that client too (client_secret_basic).
        wait_for_expiry(&api, &id).await;
        let before = p.oidc.token_requests().await.unwrap();
        assert_called_as(&whoami(&api, &id).await, "alice");
        assert!(p.oidc.token_requests().await.unwrap() > before);

        let org = api.org().await;
        let audit = api.get(&format!("/orgs/{org}/audit")).await;
        assert!(audit.text.contains("preregistered"), "{}", audit.text);
        vec![
            entered.text,
            started.text,
            info.text,
            audit.text,
            api.get(&format!("/connectors/{id}")).await.text,
            api.authorization(&id).await.text,
        ]
    });
    // Dynamic registration was never asked for.
    let requests = p.oidc.output();
    assert!(requests.contains("POST /token"), "{requests}");
    assert!(!requests.contains("POST /reg"), "{requests}");
    for answer in &answers {
        assert!(
            !answer.contains(&secret),
            "the client secret is in {answer}"
        );
    }
    drop(server);
    let stored = files_containing(&s.data_dir(), secret.as_bytes());
    assert!(
        stored.is_empty(),
        "the client secret is stored in plain text: {stored:?}"
    );
}

#[test]
fn validating_an_oauth_connector_before_any_grant_detects_and_waits_for_authorization() {
    let rt = runtime();
    let p = rt.block_on(peers(OidcOptions::default()));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK]);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        // The admin chose OAuth: no detection has run, no grant exists.
        let id = create(
            &api,
            json!({"name": "Protected", "url": p.mcp.url(), "auth_method": "oauth"}),
        )
        .await;
        let created = api.connector(&id).await;
        assert_eq!(created["auth_detail"], Value::Null, "{created}");

        let v = validate(&api, &id).await;
        let connector = &v["connector"];
        assert_eq!(connector["status"], "needs_auth", "{v:#}");
        assert_eq!(connector["auth_method"], "oauth", "{v:#}");
        let last_error = connector["last_error"].as_str().unwrap_or_default();
        assert!(
            last_error.contains("has not connected this connector yet"),
            "{last_error}"
        );
        // Detection ran and reports its steps.
        assert_eq!(v["auth"]["method"], "oauth", "{v:#}");
        assert_eq!(v["auth"]["oauth"]["issuer"], p.oidc.issuer(), "{v:#}");
        let steps = v["auth"]["steps"].as_array().expect("detection steps");
        for name in [
            "mcp_request",
            "protected_resource_metadata",
            "authorization_server_metadata",
        ] {
            assert!(
                steps
                    .iter()
                    .any(|s| s["name"] == name && s["outcome"] == "found"),
                "no {name} step in {steps:#?}"
            );
        }
        assert_eq!(v["report"]["ok"], false, "{v:#}");
        // What detection found is kept for the authorization.
        let stored = api.connector(&id).await;
        assert_eq!(stored["status"], "needs_auth", "{stored}");
        assert_eq!(stored["last_error"], connector["last_error"], "{stored}");
        assert_eq!(stored["auth_detail"]["issuer"], p.oidc.issuer(), "{stored}");
        let call = whoami(&api, &id).await;
        assert_eq!(call.code(), "needs_auth", "{}", call.text);

        // The authorization starts from what validation stored; a loopback return address
        // must be one.
        for bad in [
            "http://evil.example.com:8080/back",
            "http://localhost:8080/back",
            "https://127.0.0.1:8080/back",
        ] {
            let refused = api
                .post(
                    &format!("/connectors/{id}/authorize"),
                    json!({"return_to": bad}),
                )
                .await;
            assert_eq!(refused.status, 422, "{bad}: {}", refused.text);
            assert_eq!(
                refused.body["error"]["field"], "return_to",
                "{}",
                refused.text
            );
        }
        let started = api
            .post(
                &format!("/connectors/{id}/authorize"),
                json!({"return_to": "http://127.0.0.1:9/back"}),
            )
            .await;
        assert_eq!(started.status, 200, "{}", started.text);
        assert_eq!(started.body["issuer"], p.oidc.issuer(), "{}", started.text);
        assert_eq!(
            started.body["return_to"], "http://127.0.0.1:9/back",
            "{}",
            started.text
        );
    });
}

/// `switchboard` signed in as the owner, with a validated OAuth connector `Protected` shared by
/// the organization.
fn cli_with_protected(rt: &tokio::runtime::Runtime, p: &Upstream) -> (Scratch, Server) {
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[LOOPBACK]);
    s.login(&server, OWNER);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let id = register(&api, p.mcp.url()).await;
        let v = validate(&api, &id).await;
        assert_eq!(v["connector"]["status"], "needs_auth", "{v:#}");
    });
    (s, server)
}

#[test]
fn the_command_line_prints_the_link_and_reports_the_connection_once_the_browser_is_done() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let p = rt.block_on(peers(OidcOptions::default()));
    let (s, server) = cli_with_protected(&rt, &p);

    let mut connect = s.spawn(
        &["connector", "connect", "Protected", "--timeout", "180"],
        &[],
    );
    let line = connect.line(false, Duration::from_secs(60), |l| {
        l.contains("/oauth/start?state=")
    });
    let url = line.trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/oauth/start?state=", server.url)),
        "{url}"
    );
    let run = rt.block_on(browse(
        &browser,
        &url,
        &format!("{}/oauth/callback", server.url),
    ));
    assert!(
        run.outcome
            .as_deref()
            .is_some_and(|o| o.contains("connected for the organization")),
        "{run:?}"
    );
    let out = connect.finish(Duration::from_secs(60)).ok();
    assert_eq!(
        out.stdout.trim(),
        "connected Protected for the organization",
        "{out:?}"
    );

    // The grant works for the command line's calls too.
    let called = s.run(&["call", "Protected", "whoami"]).ok();
    assert!(called.stdout.contains("alice"), "{called:?}");
}

#[test]
fn the_command_line_waits_on_a_loopback_port_and_the_browser_comes_back_to_it() {
    let Some(browser) = browser() else { return };
    let rt = runtime();
    let p = rt.block_on(peers(OidcOptions::default()));
    let (s, server) = cli_with_protected(&rt, &p);
    let args = [
        "connector",
        "connect",
        "Protected",
        "--loopback",
        "--json",
        "--timeout",
        "180",
    ];

    // A failure after the browser came back (the code cannot be exchanged while the token
    // endpoint is down) reaches the command through the browser too, and ends it at once.
    rt.block_on(p.oidc.set_token_outage(true)).unwrap();
    let mut failing = s.spawn(&args, &[]);
    let line = failing.line(true, Duration::from_secs(60), |l| l.starts_with('{'));
    let started: Value = serde_json::from_str(&line).unwrap();
    let return_to = started["return_to"].as_str().unwrap().to_owned();
    let run = rt.block_on(browse(
        &browser,
        started["url"].as_str().unwrap(),
        &return_to,
    ));
    assert_eq!(run.param("outcome").as_deref(), Some("failed"), "{run:?}");
    assert!(
        run.outcome
            .as_deref()
            .is_some_and(|o| o.contains("did not complete") || o.contains("unavailable")),
        "{run:?}"
    );
    let error = failing.finish(Duration::from_secs(60)).error();
    assert!(
        error.contains("the authorization of Protected failed") && error.contains("unavailable"),
        "{error}"
    );
    rt.block_on(p.oidc.set_token_outage(false)).unwrap();

    let mut connect = s.spawn(&args, &[]);
    let line = connect.line(true, Duration::from_secs(60), |l| l.starts_with('{'));
    let started: Value = serde_json::from_str(&line).unwrap();
    let url = started["url"].as_str().expect("a start link").to_owned();
    let return_to = started["return_to"]
        .as_str()
        .expect("the loopback address")
        .to_owned();
    assert!(return_to.starts_with("http://127.0.0.1:"), "{return_to}");
    assert!(
        url.starts_with(&format!("{}/oauth/start?state=", server.url)),
        "{url}"
    );

    // The callback sends the browser on to the command, which answers with the outcome.
    let run = rt.block_on(browse(&browser, &url, &return_to));
    assert_eq!(run.status, Some(200), "{run:?}");
    assert_eq!(
        run.param("outcome").as_deref(),
        Some("connected"),
        "{run:?}"
    );
    assert_eq!(
        run.param("holder").as_deref(),
        Some("organization"),
        "{run:?}"
    );
    assert!(run.final_url.starts_with(&return_to), "{run:?}");
    assert!(
        run.outcome
            .as_deref()
            .is_some_and(|o| o.contains("Protected is connected")),
        "{run:?}"
    );
    let out = connect.finish(Duration::from_secs(60)).ok();
    let last = out.stdout.lines().last().unwrap_or_default();
    let status: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["holder"], "shared", "{status}");
    assert_eq!(status["issuer"], p.oidc.issuer(), "{status}");
    // The secrets stay with the server: no code or token went through the command.
    assert!(!out.stdout.contains("code="), "{out:?}");
    assert!(find_jwt(out.stdout.as_bytes()).is_none(), "{out:?}");

    let called = s.run(&["call", "Protected", "whoami"]).ok();
    assert!(called.stdout.contains("alice"), "{called:?}");
}
