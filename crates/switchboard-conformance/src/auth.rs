//! The authorization scenarios' client side: obtaining and renewing a bearer token with
//! `switchboard-oauth` when the engine reports that the server wants one.
//!
//! The suite's mock authorization server answers `/authorize` with an immediate redirect, so
//! the person's part of the flow is played by fetching the authorization URL without
//! following the redirect and reading the code, `state` and `iss` from `Location`.

use std::sync::Mutex;

use anyhow::{Context as _, bail, ensure};
use reqwest::header::LOCATION;
use serde_json::Value;
use switchboard_domain::HttpAllowance;
use switchboard_net::{ClientOptions, Redirects, SafeClient};
use switchboard_oauth::challenge;
use switchboard_oauth::scope::{self, StepUp};
use switchboard_oauth::{
    ApplicationType, AuthClient, AuthServer, CallbackParams, ClientConfig, ClientRegistration,
    PreRegisteredClient, Secret, TokenSet,
};
use url::Url;

/// Where the mock authorization server sends the "browser" back; never contacted.
const REDIRECT_URI: &str = "http://localhost:3000/oauth/callback";

/// The client ID metadata document URL the suite's `auth/basic-cimd` scenario expects. The
/// mock server does not fetch it, and nothing serves it here.
const METADATA_DOCUMENT_URL: &str = "https://conformance-test.local/client-metadata.json";

/// Most authorizations after a 401 for one operation: the first, and one more when the
/// token is refused again (the authorization server moved, say).
const MAX_FRESH_AUTHORIZATIONS: u32 = 2;

/// The OAuth side of a conformance run.
pub(crate) struct Authorizer {
    oauth: AuthClient,
    /// A client that follows no redirect, to read the authorization server's `Location`.
    browser: SafeClient,
    server_url: Url,
    pre_registered: Option<PreRegisteredClient>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    registration: Option<ClientRegistration>,
    /// The scopes asked for last, which a step-up adds to.
    requested: Vec<String>,
}

/// Counts the authorizations made for one operation.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    fresh: u32,
    step_up: StepUp,
}

impl Authorizer {
    /// The authorizer for `server_url`. `context` is `MCP_CONFORMANCE_CONTEXT`: when it holds
    /// a `client_id`, that is a pre-registered client (with `client_secret` and `issuer`
    /// when given).
    pub(crate) fn new(
        http: &SafeClient,
        server_url: &Url,
        context: &Value,
    ) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new(
            "Switchboard conformance client",
            Url::parse(REDIRECT_URI).expect("a valid constant"),
        );
        config.metadata_document_url =
            Some(Url::parse(METADATA_DOCUMENT_URL).expect("a valid constant"));
        // The redirect goes to the local machine, as for a native application.
        config.application_type = ApplicationType::Native;
        // The suite's servers listen on loopback over plain http.
        config.http = HttpAllowance {
            loopback: true,
            hosts: Vec::new(),
        };
        let oauth = AuthClient::new(http, config).context("cannot set up the OAuth client")?;
        let browser = SafeClient::new(
            http.destinations().clone(),
            ClientOptions {
                redirects: Redirects::Never,
                ..ClientOptions::default()
            },
        )
        .context("cannot build the HTTP client")?;
        let text = |k: &str| context.get(k).and_then(Value::as_str).map(str::to_owned);
        let pre_registered = text("client_id").map(|client_id| PreRegisteredClient {
            issuer: text("issuer"),
            client_id,
            client_secret: text("client_secret").map(Secret::new),
            auth_method: None,
        });
        Ok(Self {
            oauth,
            browser,
            server_url: server_url.clone(),
            pre_registered,
            state: Mutex::new(State::default()),
        })
    }

    /// Answers a 401 or 403 from the server: authorizes (again, or with more scopes) and
    /// returns the `Authorization` header value to retry with. Fails when the answer is not
    /// one a new token can fix, or when the retry limits are reached.
    pub(crate) async fn answer(
        &self,
        status: u16,
        challenge: Option<&str>,
        attempts: &mut Attempts,
    ) -> anyhow::Result<String> {
        let challenges = challenge.map(challenge::parse).unwrap_or_default();
        let bearer = challenge::bearer(&challenges);
        let step_up = status == 403 && bearer.is_some_and(|c| c.is_insufficient_scope());
        if status == 403 && !step_up {
            bail!("the server refused the token (HTTP 403) without asking for more scope");
        }
        if step_up {
            ensure!(
                attempts.step_up.try_again(),
                "the server still answers insufficient_scope after {} step-up authorizations; \
                 giving up",
                attempts.step_up.attempts()
            );
        } else {
            attempts.fresh += 1;
            ensure!(
                attempts.fresh <= MAX_FRESH_AUTHORIZATIONS,
                "the server refuses every token it is given (HTTP {status}); giving up"
            );
        }
        // Discovery runs every time: the protected resource may have moved to another
        // authorization server since the last token.
        let server = self
            .oauth
            .discover(&self.server_url, challenge)
            .await
            .context("OAuth discovery failed")?;
        tracing::info!(
            issuer = %server.issuer,
            resource = %server.resource,
            source = ?server.source,
            scopes = ?server.scopes,
            "discovered the authorization server"
        );
        let (registration, previous) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (
                state.registration.clone().filter(|r| r.is_for(&server)),
                state.requested.clone(),
            )
        };
        let registration = match registration {
            Some(r) => r,
            None => {
                let r = self
                    .oauth
                    .register(&server, self.pre_registered.as_ref())
                    .await
                    .context("client registration failed")?;
                tracing::info!(client_id = %r.client_id, source = %r.source, method = %r.auth_method, "registered");
                r
            }
        };
        let scopes = match bearer {
            Some(c) if step_up => scope::union(&previous, &c.scopes()),
            _ => server.scopes.clone(),
        };
        let tokens = if machine_only(&server) {
            // No person to send anywhere: the server authorizes clients by their own
            // credentials (the oauth-client-credentials extension).
            self.oauth
                .client_credentials(&server, &registration, &scopes)
                .await
                .context("the client credentials grant failed")?
        } else {
            self.authorize(&server, &registration, &scopes).await?
        };
        let header = tokens.authorization();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.registration = Some(registration);
        state.requested = scopes;
        Ok(header)
    }

    /// The authorization code flow, with the mock server's immediate redirect standing in for
    /// the person.
    async fn authorize(
        &self,
        server: &AuthServer,
        registration: &ClientRegistration,
        scopes: &[String],
    ) -> anyhow::Result<TokenSet> {
        let request = self.oauth.begin(server, registration, scopes)?;
        let callback = self.follow(&request.url).await?;
        let tokens = self
            .oauth
            .finish(&request.pending, registration, &callback)
            .await
            .context("the authorization response or the token request failed")?;
        tracing::info!(scopes = ?tokens.scopes, expires_at = ?tokens.expires_at, "authorized");
        Ok(tokens)
    }

    /// GETs the authorization URL and reads the redirect back to the client.
    async fn follow(&self, url: &Url) -> anyhow::Result<CallbackParams> {
        let request = self.browser.request(reqwest::Method::GET, url)?;
        let response = self.browser.send(request).await?;
        let status = response.status();
        ensure!(
            status.is_redirection(),
            "the authorization endpoint answered HTTP {status} instead of redirecting back"
        );
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("the authorization endpoint's redirect has no Location")?;
        let back = url
            .join(location)
            .context("the redirect's Location is not a URL")?;
        let expected = Url::parse(REDIRECT_URI).expect("a valid constant");
        ensure!(
            back.origin() == expected.origin() && back.path() == expected.path(),
            "the authorization endpoint redirected somewhere other than the redirect URI"
        );
        Ok(CallbackParams::from_url(&back))
    }
}

/// Whether the authorization server offers the client credentials grant and not the
/// authorization code grant.
fn machine_only(server: &AuthServer) -> bool {
    server
        .metadata
        .grant_types_supported
        .as_ref()
        .is_some_and(|grants| {
            grants.iter().any(|g| g == "client_credentials")
                && !grants.iter().any(|g| g == "authorization_code")
        })
}
