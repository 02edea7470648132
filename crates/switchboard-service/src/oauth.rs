//! OAuth for connectors: starting an authorization, completing it at the callback, and keeping
//! each grant's access token fresh.
//!
//! The flow, for a web platform:
//!
//! 1. [`App::authorize_connector`] (API) discovers or reads the connector's authorization
//!    server, finds or makes a client registration for its issuer, and stores a pending
//!    authorization. It answers a one-time *start link* under Switchboard's own URL.
//! 2. [`App::open_authorization`] (the start link, opened in the person's browser) binds the
//!    pending authorization to that browser with a random cookie and redirects to the
//!    authorization server. A callback that arrives in another browser is refused, so a link
//!    forwarded to someone else cannot attach their account to the starter's grant.
//! 3. [`App::complete_authorization`] (the callback) takes the pending authorization once,
//!    checks the binding, `state` and `iss`, exchanges the code and stores the grant sealed.
//!
//! Refresh is single-flight: in one process a lock per grant, across processes a lease in
//! the database ([`Store::claim_grant_refresh`]). The rotated refresh token is stored before
//! the new access token is handed out. A passing failure (network, 5xx) keeps the grant; a
//! final one (`invalid_grant`) revokes it with the reason and the holder must authorize again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_domain::{
    AuditAction, AuthMethod, ClientSource, Connector, ConnectorId, ConnectorStatus,
    CredentialScope, GrantId, GrantStatus, NewAuditEvent, OAuthClientId, OrgId, Timestamp, UserId,
    client_seal_context, grant_seal_context, pending_seal_context,
};
use switchboard_oauth::{
    AuthClient, AuthServer, CallbackParams, ClientRegistration, OAuthError, PreRegisteredClient,
    Secret, TokenEndpointAuth, TokenKind, TokenSet, state_digest,
};
use switchboard_store::{
    ConnectorPatch, NewGrant, OAuthGrant, PendingAuthorization, StoredOAuthClient,
};
use url::Url;

use crate::secrets::{random_token, sha256_hex};
use crate::{AdminAccess, App, Error, OrgAccess, Result};

/// How long before its expiry an access token is refreshed.
const REFRESH_LEEWAY_SECONDS: i64 = 60;
/// How long one process may hold a grant's refresh lease.
const LEASE_SECONDS: i64 = 30;
/// How often a process waiting for another one's refresh looks again.
const LEASE_POLL: Duration = Duration::from_millis(100);
/// Attempts at a refresh that fails for a passing reason, and the pause before each retry.
const REFRESH_BACKOFF: &[Duration] = &[Duration::from_millis(250), Duration::from_millis(1000)];

/// Switchboard's OAuth client and the per-grant refresh locks of this process.
pub(crate) struct OAuthState {
    pub(crate) client: AuthClient,
    locks: Mutex<HashMap<GrantId, Arc<tokio::sync::Mutex<()>>>>,
}

impl OAuthState {
    pub(crate) fn new(client: AuthClient) -> Self {
        Self {
            client,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, grant: GrantId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(grant)
            .or_default()
            .clone()
    }
}

/// Where the redirect back from authorization servers lands.
pub(crate) fn callback_url(public: &Url) -> Url {
    join(public, "oauth/callback")
}

/// Where Switchboard serves its client ID metadata document. Authorization servers fetch it
/// over https only, so a plain-http installation serves none.
pub(crate) fn metadata_document_url(public: &Url) -> Option<Url> {
    (public.scheme() == "https").then(|| join(public, "oauth/client-metadata.json"))
}

fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

/// What the flow keeps between the start and the callback, sealed.
#[derive(Serialize, Deserialize)]
struct SealedFlow {
    pending: switchboard_oauth::PendingAuthorization,
    authorization_url: String,
    /// Where the browser goes after the callback: a command-line client's loopback listener.
    #[serde(default)]
    return_to: Option<String>,
}

/// The longest loopback return address accepted.
const MAX_RETURN_TO: usize = 512;

/// Checks a loopback return address (RFC 8252 §7.3): `http` to the loopback IP literal
/// `127.0.0.1` or `[::1]` with an explicit port, no user information and no fragment. Only a
/// client on the machine of the browser can listen there, so the redirect cannot lead the
/// browser anywhere else; `localhost` is refused as §8.3 advises, since a name may resolve
/// elsewhere.
fn loopback_return(raw: &str) -> Result<Url> {
    let invalid = |message: &str| {
        Error::Validation(switchboard_domain::ValidationError::new(
            "return_to",
            message.to_owned(),
        ))
    };
    if raw.len() > MAX_RETURN_TO {
        return Err(invalid("must be at most 512 characters"));
    }
    let url = Url::parse(raw).map_err(|_| invalid("must be a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        _ => false,
    };
    if url.scheme() != "http" || !loopback || url.port().is_none() {
        return Err(invalid(
            "must be a loopback address with a port, such as http://127.0.0.1:PORT/path",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(invalid("must have no user information and no fragment"));
    }
    Ok(url)
}

/// A started authorization: the link to open in a browser.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthorizationStart {
    /// Open this in a browser (one time): it leads to the authorization server's sign-in and
    /// consent pages, and back to Switchboard.
    pub url: String,
    /// The issuer of the authorization server.
    pub issuer: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// After this, the link no longer works.
    pub expires_at: Timestamp,
    /// The loopback address the browser is sent to after the callback, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_to: Option<String>,
}

/// Where a holder's OAuth grant stands, as the API shows it (never the tokens).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthorizationStatus {
    /// Whether a usable grant exists.
    pub connected: bool,
    /// Whose grant this is: `organization` or `member`.
    pub holder: CredentialScope,
    /// `active` or `revoked`, when a grant exists.
    pub status: Option<GrantStatus>,
    /// Why the grant was revoked.
    pub reason: Option<String>,
    /// The issuer of the tokens.
    pub issuer: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When the access token expires.
    pub expires_at: Option<Timestamp>,
    /// When the grant was last renewed.
    pub updated_at: Option<Timestamp>,
}

/// A pre-registered OAuth client an admin enters for a connector.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientInput {
    /// The client id.
    pub client_id: String,
    /// The client secret, for a confidential client; sealed at rest, never returned.
    pub client_secret: Option<String>,
    /// How the client authenticates at the token endpoint: `none`, `client_secret_basic` or
    /// `client_secret_post`. Chosen from what the server offers when left out.
    pub token_endpoint_auth_method: Option<String>,
}

impl std::fmt::Debug for OAuthClientInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClientInput")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// The connector and holder an authorization completed for.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The connector's name.
    pub connector: String,
    /// Whose grant it is.
    pub holder: CredentialScope,
}

/// What the callback did, and where the browser goes next.
#[derive(Debug)]
pub struct Completion {
    /// The outcome.
    pub outcome: Result<Connected>,
    /// The loopback address a command-line client waits at (see
    /// [`App::authorize_connector`]). Set only once the callback is known to come from the
    /// browser that opened the start link, so another browser is never sent there.
    pub return_to: Option<Url>,
}

/// A grant's access token as one request uses it, and which grant version it came from (so a
/// 401 can ask for a refresh of exactly that version).
#[derive(Clone)]
pub(crate) struct GrantUse {
    pub(crate) grant: GrantId,
    pub(crate) version: i64,
    pub(crate) authorization: String,
}

/// An OAuth failure as the service reports it: passing failures are `Unavailable`, refusals by
/// the authorization server and failed checks are `Upstream`, with the reason in plain words.
fn oauth_error(e: OAuthError) -> Error {
    if e.is_retryable() {
        Error::Unavailable(e.to_string())
    } else {
        Error::Upstream(e.to_string())
    }
}

impl App {
    /// Who holds the grant `access` asks about: the organization or the member, as
    /// `for_org` says, or by default as the connector's credential scope says. The
    /// organization's grant is an admin's to manage.
    fn holder_for(
        &self,
        access: &OrgAccess,
        connector: &Connector,
        for_org: Option<bool>,
    ) -> Result<Option<UserId>> {
        let for_org = for_org.unwrap_or(connector.credential_scope == CredentialScope::Shared);
        match (connector.credential_scope, for_org) {
            (CredentialScope::Shared, true) => {
                access.admin()?;
                Ok(None)
            }
            (CredentialScope::Member, false) => Ok(Some(access.user())),
            (CredentialScope::Shared, false) => Err(Error::Conflict {
                field: "holder",
                message: "this connector uses one grant for the whole organization; an admin \
                          connects it for the organization"
                    .into(),
            }),
            (CredentialScope::Member, true) => Err(Error::Conflict {
                field: "holder",
                message: "every member connects their own account to this connector".into(),
            }),
        }
    }

    /// The connector's authorization server: as detection stored it, or discovered now (and
    /// stored) when detection has not run.
    pub(crate) async fn auth_server(
        &self,
        org: OrgId,
        connector: &Connector,
    ) -> Result<AuthServer> {
        if let Some(detail) = &connector.auth_detail
            && let Ok(server) = serde_json::from_value::<AuthServer>(detail.clone())
        {
            return Ok(server);
        }
        let server = self
            .oauth
            .client
            .discover(connector.url.as_url(), None)
            .await
            .map_err(oauth_error)?;
        let mut patch = ConnectorPatch::at(self.now());
        patch.auth_detail = Some(Some(
            serde_json::to_value(&server).map_err(|e| Error::Internal(e.to_string()))?,
        ));
        let audit = NewAuditEvent::new(AuditAction::ConnectorUpdated, None)
            .org(org)
            .target("connector", connector.id)
            .detail(serde_json::json!({ "auth_detail": "discovered" }));
        self.store
            .update_connector(org, connector.id, &patch, &audit)
            .await?;
        Ok(server)
    }

    fn open_client(&self, stored: &StoredOAuthClient) -> Result<ClientRegistration> {
        let context = client_seal_context(stored.connector, &stored.issuer);
        let plain = self.open_sealed(&stored.sealed, &context, "an OAuth client registration")?;
        serde_json::from_slice(&plain).map_err(|e| Error::Internal(e.to_string()))
    }

    pub(crate) fn open_sealed(&self, sealed: &str, context: &str, what: &str) -> Result<Vec<u8>> {
        self.keys
            .open(
                &switchboard_seal::Sealed::from_stored(sealed.to_owned()),
                context,
            )
            .map(|p| p.to_vec())
            .map_err(|e| Error::Internal(format!("{what} cannot be opened: {e}")))
    }

    fn seal_json<T: Serialize>(&self, value: &T, context: &str) -> Result<String> {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?,
        );
        Ok(self.keys.seal(&plain, context).as_str().to_owned())
    }

    async fn store_client(
        &self,
        org: OrgId,
        actor: Option<UserId>,
        connector: ConnectorId,
        registration: &ClientRegistration,
    ) -> Result<()> {
        let sealed = self.seal_json(
            registration,
            &client_seal_context(connector, &registration.issuer),
        )?;
        let stored = StoredOAuthClient {
            id: OAuthClientId::new(),
            connector,
            issuer: registration.issuer.clone(),
            source: registration.source,
            sealed,
            created_at: self.now(),
        };
        let audit = NewAuditEvent::new(AuditAction::OAuthClientRegistered, actor)
            .org(org)
            .target("connector", connector)
            .detail(serde_json::json!({
                "issuer": registration.issuer,
                "source": registration.source,
            }));
        self.store.put_oauth_client(org, &stored, &audit).await?;
        Ok(())
    }

    /// The client registration for `server`'s issuer: the stored one, or a new one (a client
    /// ID metadata document or dynamic registration), stored for next time.
    async fn registration(
        &self,
        access: &OrgAccess,
        connector: ConnectorId,
        server: &AuthServer,
    ) -> Result<ClientRegistration> {
        if let Some(stored) = self
            .store
            .oauth_client(access.org(), connector, &server.issuer)
            .await?
        {
            let registration = self.open_client(&stored)?;
            if registration.is_for(server) {
                return Ok(registration);
            }
        }
        let registration = self
            .oauth
            .client
            .register(server, None)
            .await
            .map_err(oauth_error)?;
        self.store_client(access.org(), access.actor(), connector, &registration)
            .await?;
        Ok(registration)
    }

    /// The client ID metadata document Switchboard serves, where its public URL is https.
    pub fn client_metadata_document(&self) -> Option<serde_json::Value> {
        self.oauth.client.metadata_document()
    }

    /// Enters a client registered out of band with the connector's authorization server
    /// (admins only). Used instead of a metadata document or dynamic registration.
    pub async fn set_oauth_client(
        &self,
        access: &AdminAccess,
        id: ConnectorId,
        input: OAuthClientInput,
    ) -> Result<()> {
        let connector = self.store.connector(access.org(), id).await?;
        require_oauth(&connector)?;
        let server = self.auth_server(access.org(), &connector).await?;
        let client_id = input.client_id.trim();
        if client_id.is_empty() || client_id.len() > 512 {
            return Err(Error::Validation(switchboard_domain::ValidationError::new(
                "client_id",
                "must be 1 to 512 characters",
            )));
        }
        let auth_method = match input.token_endpoint_auth_method.as_deref() {
            None => None,
            Some(name) => Some(TokenEndpointAuth::from_name(name).ok_or_else(|| {
                Error::Validation(switchboard_domain::ValidationError::new(
                    "token_endpoint_auth_method",
                    "must be none, client_secret_basic or client_secret_post",
                ))
            })?),
        };
        let pre = PreRegisteredClient {
            issuer: Some(server.issuer.clone()),
            client_id: client_id.to_owned(),
            client_secret: input
                .client_secret
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            auth_method,
        };
        let registration = self
            .oauth
            .client
            .register(&server, Some(&pre))
            .await
            .map_err(|e| {
                Error::Validation(switchboard_domain::ValidationError::new(
                    "client",
                    e.to_string(),
                ))
            })?;
        debug_assert_eq!(registration.source, ClientSource::Preregistered);
        self.store_client(access.org(), access.actor(), id, &registration)
            .await
    }

    /// Starts an OAuth authorization for a connector: for the organization (admins, on a
    /// connector with one shared grant) or for the member themself (on a connector where every
    /// member connects their own account); `for_org` left out follows the connector's
    /// credential scope. Answers the one-time link to open in a browser.
    ///
    /// `return_to` is for a command-line client on the browser's machine: a loopback address
    /// (RFC 8252 §7.3) it listens at, where the browser is sent after the callback with the
    /// outcome, so the client need not poll and the person sees its answer.
    pub async fn authorize_connector(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        for_org: Option<bool>,
        return_to: Option<&str>,
    ) -> Result<AuthorizationStart> {
        let return_to = return_to.map(loopback_return).transpose()?;
        let connector = self.store.connector(access.org(), id).await?;
        let holder = self.holder_for(access, &connector, for_org)?;
        require_oauth(&connector)?;
        let mut server = self.auth_server(access.org(), &connector).await?;
        // A step-up asks again for what the grant had, plus what the server asked for since.
        if let Some(grant) = self.store.oauth_grant(access.org(), id, holder).await?
            && let Ok(tokens) = self.open_tokens(&grant)
        {
            server.scopes = switchboard_oauth::scope::union(&server.scopes, &tokens.scopes);
        }
        let registration = self.registration(access, id, &server).await?;
        let request = self
            .oauth
            .client
            .begin(&server, &registration, &server.scopes)
            .map_err(oauth_error)?;
        let state_hash = state_digest(&request.pending.state);
        let flow = SealedFlow {
            authorization_url: request.url.to_string(),
            pending: request.pending.clone(),
            return_to: return_to.as_ref().map(Url::to_string),
        };
        let pending = PendingAuthorization {
            state_hash: state_hash.clone(),
            org: access.org(),
            connector: id,
            user: access.user(),
            holder,
            // Unbound until the start link is opened in a browser.
            binding_hash: String::new(),
            sealed: self.seal_json(&flow, &pending_seal_context(&state_hash))?,
            created_at: request.pending.created_at,
            expires_at: request.pending.expires_at,
        };
        self.store.create_pending_authorization(&pending).await?;
        let mut url = join(&self.config.public_url, "oauth/start");
        url.query_pairs_mut()
            .append_pair("state", &request.pending.state);
        Ok(AuthorizationStart {
            url: url.to_string(),
            issuer: server.issuer,
            scopes: request.pending.scopes,
            expires_at: request.pending.expires_at,
            return_to: return_to.map(String::from),
        })
    }

    /// Opens a start link: binds the pending authorization to this browser and answers the
    /// authorization server's URL and the binding secret for the cookie. A link opens once.
    pub async fn open_authorization(&self, state: &str) -> Result<(String, String)> {
        let state_hash = state_digest(state);
        let mut pending = self
            .store
            .take_pending_authorization(&state_hash, self.now())
            .await?
            .ok_or(Error::NotFound(
                "authorization (it expired or was already used)",
            ))?;
        if !pending.binding_hash.is_empty() {
            // Opened before: whoever opened it first owns it now, and nobody can finish it.
            return Err(Error::Conflict {
                field: "state",
                message: "this authorization link was already opened; start again".into(),
            });
        }
        let binding = random_token();
        pending.binding_hash = sha256_hex(&binding);
        let plain = self.open_sealed(
            &pending.sealed,
            &pending_seal_context(&state_hash),
            "a pending authorization",
        )?;
        let flow: SealedFlow =
            serde_json::from_slice(&plain).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.create_pending_authorization(&pending).await?;
        Ok((flow.authorization_url, binding))
    }

    /// Completes an authorization at the callback: `query` is the callback's query string,
    /// `binding` the cookie the start link set. Stores the grant and, when the grant makes the
    /// connector usable, validates it: always after the organization's grant, and after an
    /// admin's own grant on a per-member connector that is not active yet.
    pub async fn complete_authorization(&self, query: &str, binding: Option<&str>) -> Completion {
        let mut return_to = None;
        let outcome = self
            .finish_authorization(query, binding, &mut return_to)
            .await;
        Completion { outcome, return_to }
    }

    async fn finish_authorization(
        &self,
        query: &str,
        binding: Option<&str>,
        return_to: &mut Option<Url>,
    ) -> Result<Connected> {
        let params = CallbackParams::from_query(query);
        let Some(state) = params.state.clone() else {
            return Err(Error::Validation(switchboard_domain::ValidationError::new(
                "state",
                "the authorization server sent no state",
            )));
        };
        let state_hash = state_digest(&state);
        let pending = self
            .store
            .take_pending_authorization(&state_hash, self.now())
            .await?
            .ok_or(Error::NotFound(
                "authorization (it expired or was already used)",
            ))?;
        let bound = binding.is_some_and(|b| {
            !pending.binding_hash.is_empty()
                && subtle::ConstantTimeEq::ct_eq(
                    sha256_hex(b).as_bytes(),
                    pending.binding_hash.as_bytes(),
                )
                .into()
        });
        if !bound {
            return Err(Error::Forbidden(
                "this authorization was started in another browser; start it again here".into(),
            ));
        }
        let plain = self.open_sealed(
            &pending.sealed,
            &pending_seal_context(&state_hash),
            "a pending authorization",
        )?;
        let flow: SealedFlow =
            serde_json::from_slice(&plain).map_err(|e| Error::Internal(e.to_string()))?;
        // The browser that opened the start link: from here on it may be sent back to the
        // client waiting for it, failures included. Checked again, as it was stored.
        *return_to = flow
            .return_to
            .as_deref()
            .and_then(|raw| loopback_return(raw).ok());
        let stored = self
            .store
            .oauth_client(pending.org, pending.connector, &flow.pending.issuer)
            .await?
            .ok_or(Error::NotFound("OAuth client registration"))?;
        let registration = self.open_client(&stored)?;
        let tokens = self
            .oauth
            .client
            .finish(&flow.pending, &registration, &params)
            .await
            .map_err(oauth_error)?;
        let connector = self.store.connector(pending.org, pending.connector).await?;
        self.save_grant(&pending, &connector, &flow.pending.issuer, &tokens)
            .await?;
        let holder = if pending.holder.is_some() {
            CredentialScope::Member
        } else {
            CredentialScope::Shared
        };
        self.validate_after_grant(&pending, &connector).await?;
        Ok(Connected {
            connector: connector.name.to_string(),
            holder,
        })
    }

    /// Validates a connector that a new grant makes usable, as the admin who started the
    /// authorization, so it turns active without another step: always after the
    /// organization's grant, and after an admin's own grant on a per-member connector that is
    /// not active yet (validation uses the admin's own grant there). A member who is no admin
    /// cannot validate; their grant serves their own calls once an admin has.
    async fn validate_after_grant(
        &self,
        pending: &PendingAuthorization,
        connector: &Connector,
    ) -> Result<()> {
        if pending.holder.is_some() && connector.status == ConnectorStatus::Active {
            return Ok(());
        }
        let role = self
            .store
            .role_of(pending.org, pending.user)
            .await?
            .ok_or(Error::NotFound("member"))?;
        let access = OrgAccess::new(pending.org, pending.user, role);
        if let Ok(admin) = access.admin()
            && let Err(e) = self.validate_connector(&admin, connector.id).await
        {
            tracing::warn!(connector = %connector.id, error = %e, "validation after authorization failed");
        }
        Ok(())
    }

    async fn save_grant(
        &self,
        pending: &PendingAuthorization,
        connector: &Connector,
        issuer: &str,
        tokens: &TokenSet,
    ) -> Result<OAuthGrant> {
        let sealed = self.seal_json(
            tokens,
            &grant_seal_context(connector.id, pending.holder, issuer),
        )?;
        let grant = NewGrant {
            id: GrantId::new(),
            connector: connector.id,
            holder: pending.holder,
            issuer: issuer.to_owned(),
            sealed,
            expires_at: tokens.expires_at,
            now: self.now(),
        };
        let audit = NewAuditEvent::new(AuditAction::OAuthConnected, Some(pending.user))
            .org(pending.org)
            .target("connector", connector.id)
            .detail(serde_json::json!({
                "issuer": issuer,
                "holder": if pending.holder.is_some() { "member" } else { "organization" },
                "scopes": tokens.scopes,
            }));
        // The connector may have been waiting for this grant.
        if pending.holder.is_none() && connector.status == ConnectorStatus::NeedsAuth {
            let mut patch = ConnectorPatch::at(self.now());
            patch.status = Some((ConnectorStatus::Connecting, None));
            let note = NewAuditEvent::new(AuditAction::ConnectorUpdated, Some(pending.user))
                .org(pending.org)
                .target("connector", connector.id);
            self.store
                .update_connector(pending.org, connector.id, &patch, &note)
                .await?;
        }
        let saved = self
            .store
            .save_oauth_grant(pending.org, &grant, &audit)
            .await?;
        // Sessions opened with the old tokens close; the next call opens one with these.
        self.engine.forget(connector.id).await;
        Ok(saved)
    }

    fn open_tokens(&self, grant: &OAuthGrant) -> Result<TokenSet> {
        let context = grant_seal_context(grant.connector, grant.holder, &grant.issuer);
        let plain = self.open_sealed(&grant.sealed, &context, "an OAuth grant")?;
        serde_json::from_slice(&plain).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Where the caller's grant for a connector stands: the organization's for a shared
    /// connector, the member's own otherwise.
    pub async fn authorization_status(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
    ) -> Result<AuthorizationStatus> {
        let connector = self.store.connector(access.org(), id).await?;
        let holder = holder_of(access, &connector);
        let grant = self.store.oauth_grant(access.org(), id, holder).await?;
        let scopes = match &grant {
            Some(g) => self.open_tokens(g).map(|t| t.scopes).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(AuthorizationStatus {
            connected: grant
                .as_ref()
                .is_some_and(|g| g.status == GrantStatus::Active),
            holder: connector.credential_scope,
            status: grant.as_ref().map(|g| g.status),
            reason: grant.as_ref().and_then(|g| g.reason.clone()),
            issuer: grant.as_ref().map(|g| g.issuer.clone()),
            scopes,
            expires_at: grant.as_ref().and_then(|g| g.expires_at),
            updated_at: grant.as_ref().map(|g| g.updated_at),
        })
    }

    /// Disconnects the caller's grant (the organization's needs an admin; `for_org` as for
    /// [`App::authorize_connector`]): revokes the tokens at the authorization server where it
    /// offers revocation (RFC 7009), then deletes them. A revocation that fails is logged;
    /// the tokens are deleted all the same.
    pub async fn disconnect_connector(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        for_org: Option<bool>,
    ) -> Result<bool> {
        let connector = self.store.connector(access.org(), id).await?;
        let holder = self.holder_for(access, &connector, for_org)?;
        let Some(grant) = self.store.oauth_grant(access.org(), id, holder).await? else {
            return Ok(false);
        };
        if let Ok(tokens) = self.open_tokens(&grant) {
            self.revoke_tokens(access.org(), &connector, &grant, &tokens)
                .await;
        }
        let audit = NewAuditEvent::new(AuditAction::OAuthDisconnected, access.actor())
            .org(access.org())
            .target("connector", id)
            .detail(serde_json::json!({
                "holder": if holder.is_some() { "member" } else { "organization" },
            }));
        let deleted = self
            .store
            .delete_oauth_grant(access.org(), id, holder, &audit)
            .await?;
        self.engine.forget(id).await;
        Ok(deleted)
    }

    async fn revoke_tokens(
        &self,
        org: OrgId,
        connector: &Connector,
        grant: &OAuthGrant,
        tokens: &TokenSet,
    ) {
        let Ok(server) = self.auth_server(org, connector).await else {
            return;
        };
        let Ok(Some(stored)) = self
            .store
            .oauth_client(org, connector.id, &grant.issuer)
            .await
        else {
            return;
        };
        let Ok(registration) = self.open_client(&stored) else {
            return;
        };
        // The refresh token first: revoking it ends the whole grant at most servers.
        let mut tokens_to_revoke = Vec::new();
        if let Some(refresh) = &tokens.refresh_token {
            tokens_to_revoke.push((refresh, TokenKind::RefreshToken));
        }
        tokens_to_revoke.push((&tokens.access_token, TokenKind::AccessToken));
        for (token, kind) in tokens_to_revoke {
            if let Err(e) = self
                .oauth
                .client
                .revoke(&server, &registration, token, kind)
                .await
            {
                tracing::warn!(connector = %connector.id, error = %e, "revoking a token failed; it is deleted here all the same");
            }
        }
    }

    /// Remembers the scopes a 403 `insufficient_scope` challenge asked for, so the next
    /// authorization of the connector asks for them too (RFC 6750 §3.1, MCP step-up).
    pub(crate) async fn remember_step_up(
        &self,
        access: &OrgAccess,
        connector: &Connector,
        challenge: &str,
    ) -> Result<()> {
        let challenges = switchboard_oauth::challenge::parse(challenge);
        let Some(bearer) = switchboard_oauth::challenge::bearer(&challenges) else {
            return Ok(());
        };
        if !bearer.is_insufficient_scope() || bearer.scopes().is_empty() {
            return Ok(());
        }
        let mut server = self.auth_server(access.org(), connector).await?;
        let wanted = switchboard_oauth::scope::union(&server.scopes, &bearer.scopes());
        if wanted == server.scopes {
            return Ok(());
        }
        server.scopes = wanted;
        let mut patch = ConnectorPatch::at(self.now());
        patch.auth_detail = Some(Some(
            serde_json::to_value(&server).map_err(|e| Error::Internal(e.to_string()))?,
        ));
        let audit = NewAuditEvent::new(AuditAction::ConnectorUpdated, access.actor())
            .org(access.org())
            .target("connector", connector.id)
            .detail(serde_json::json!({ "scopes": server.scopes }));
        self.store
            .update_connector(access.org(), connector.id, &patch, &audit)
            .await?;
        Ok(())
    }

    /// The `Authorization` value for a holder's grant, refreshed first when it is about to
    /// expire.
    pub(crate) async fn grant_authorization(
        &self,
        org: OrgId,
        connector: &Connector,
        holder: Option<UserId>,
    ) -> Result<GrantUse> {
        let grant = self
            .store
            .oauth_grant(org, connector.id, holder)
            .await?
            .ok_or_else(|| not_connected(holder))?;
        if grant.status == GrantStatus::Revoked {
            return Err(needs_auth(grant.reason.as_deref()));
        }
        let tokens = self.open_tokens(&grant)?;
        // At most half the token's lifetime: a token that lives less than twice the leeway
        // would otherwise count as expiring from the moment it is issued, and every call
        // would refresh it.
        let leeway = tokens.expires_at.map_or(REFRESH_LEEWAY_SECONDS, |at| {
            ((at.millis() - tokens.obtained_at.millis()) / 2000).clamp(0, REFRESH_LEEWAY_SECONDS)
        });
        if tokens.expires_within(self.now(), leeway) {
            return self
                .refresh_grant(org, connector, grant.id, grant.version)
                .await;
        }
        Ok(GrantUse {
            grant: grant.id,
            version: grant.version,
            authorization: tokens.authorization(),
        })
    }

    /// Refreshes a grant whose tokens at `stale_version` are expiring or were refused, once
    /// for everyone: callers in this process queue on a lock, other processes on the lease;
    /// whoever comes second finds the new version and uses it.
    pub(crate) async fn refresh_grant(
        &self,
        org: OrgId,
        connector: &Connector,
        grant_id: GrantId,
        stale_version: i64,
    ) -> Result<GrantUse> {
        let lock = self.oauth.lock_for(grant_id);
        let _turn = lock.lock().await;
        let waited_until = self.now().plus_seconds(2 * LEASE_SECONDS);
        loop {
            let grant = match self.store.oauth_grant_by_id(grant_id).await {
                Ok(grant) => grant,
                Err(switchboard_store::StoreError::NotFound(_)) => {
                    return Err(not_connected(None));
                }
                Err(e) => return Err(e.into()),
            };
            if grant.status == GrantStatus::Revoked {
                return Err(needs_auth(grant.reason.as_deref()));
            }
            if grant.version != stale_version {
                let tokens = self.open_tokens(&grant)?;
                return Ok(GrantUse {
                    grant: grant.id,
                    version: grant.version,
                    authorization: tokens.authorization(),
                });
            }
            let lease = format!("{}:{}", std::process::id(), random_token());
            let now = self.now();
            let Some(claimed) = self
                .store
                .claim_grant_refresh(grant_id, &lease, now, now.plus_seconds(LEASE_SECONDS))
                .await?
            else {
                if self.now() > waited_until {
                    return Err(Error::Unavailable(
                        "another process has been refreshing this connector's token for too long"
                            .into(),
                    ));
                }
                tokio::time::sleep(LEASE_POLL).await;
                continue;
            };
            if claimed.version != stale_version {
                // Someone finished a refresh between our read and our claim.
                self.store.release_grant_refresh(grant_id, &lease).await?;
                continue;
            }
            return self.refresh_claimed(org, connector, &claimed, &lease).await;
        }
    }

    async fn refresh_claimed(
        &self,
        org: OrgId,
        connector: &Connector,
        grant: &OAuthGrant,
        lease: &str,
    ) -> Result<GrantUse> {
        let (tokens, server, registration) = match self.refresh_inputs(org, connector, grant).await
        {
            Ok(inputs) => inputs,
            Err(e) => {
                self.store.release_grant_refresh(grant.id, lease).await?;
                return Err(e);
            }
        };
        let outcome = self
            .refresh_with_backoff(&server, &registration, &tokens)
            .await;
        match outcome {
            Ok(tokens) => {
                let sealed = self.seal_json(
                    &tokens,
                    &grant_seal_context(grant.connector, grant.holder, &grant.issuer),
                )?;
                // Stored before use: the server has already rotated the refresh token.
                let stored = self
                    .store
                    .finish_grant_refresh(grant.id, lease, &sealed, tokens.expires_at, self.now())
                    .await?;
                if !stored {
                    return Err(Error::Unavailable(
                        "the refreshed token could not be stored; try again".into(),
                    ));
                }
                Ok(GrantUse {
                    grant: grant.id,
                    version: grant.version + 1,
                    authorization: tokens.authorization(),
                })
            }
            Err(e) if e.is_grant_lost() => {
                let reason = format!("the authorization server refused the grant: {e}");
                let audit = NewAuditEvent::new(AuditAction::OAuthGrantRevoked, None)
                    .org(org)
                    .target("connector", grant.connector)
                    .detail(serde_json::json!({
                        "holder": if grant.holder.is_some() { "member" } else { "organization" },
                        "reason": reason,
                    }));
                self.store
                    .revoke_oauth_grant(grant.id, grant.version, &reason, self.now(), &audit)
                    .await?;
                if grant.holder.is_none() {
                    let mut patch = ConnectorPatch::at(self.now());
                    patch.status = Some((ConnectorStatus::NeedsAuth, Some(reason.clone())));
                    let note = NewAuditEvent::new(AuditAction::ConnectorUpdated, None)
                        .org(org)
                        .target("connector", grant.connector);
                    self.store
                        .update_connector(org, grant.connector, &patch, &note)
                        .await?;
                }
                self.engine.forget(grant.connector).await;
                Err(needs_auth(Some(&reason)))
            }
            Err(e) => {
                self.store.release_grant_refresh(grant.id, lease).await?;
                Err(Error::Unavailable(format!(
                    "the token could not be refreshed ({e}); the grant is kept, try again later"
                )))
            }
        }
    }

    /// What a refresh needs: the grant's tokens, the authorization server and the client
    /// registration with its issuer.
    async fn refresh_inputs(
        &self,
        org: OrgId,
        connector: &Connector,
        grant: &OAuthGrant,
    ) -> Result<(TokenSet, AuthServer, ClientRegistration)> {
        let tokens = self.open_tokens(grant)?;
        let server = self.auth_server(org, connector).await?;
        let stored = self
            .store
            .oauth_client(org, connector.id, &grant.issuer)
            .await?
            .ok_or(Error::NotFound("OAuth client registration"))?;
        Ok((tokens, server, self.open_client(&stored)?))
    }

    /// One refresh at the token endpoint, retried with backoff while it fails for a passing
    /// reason.
    async fn refresh_with_backoff(
        &self,
        server: &AuthServer,
        registration: &ClientRegistration,
        tokens: &TokenSet,
    ) -> std::result::Result<TokenSet, OAuthError> {
        let mut pauses = REFRESH_BACKOFF.iter();
        loop {
            match self
                .oauth
                .client
                .refresh(server, registration, tokens)
                .await
            {
                Err(e) if e.is_retryable() => match pauses.next() {
                    Some(pause) => tokio::time::sleep(*pause).await,
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }
}

/// Whose credential `access`'s member uses on a connector: the organization's on a shared
/// connector, their own otherwise.
pub(crate) fn holder_of(access: &OrgAccess, connector: &Connector) -> Option<UserId> {
    match connector.credential_scope {
        CredentialScope::Shared => None,
        CredentialScope::Member => Some(access.user()),
    }
}

fn require_oauth(connector: &Connector) -> Result<()> {
    if connector.auth_method == AuthMethod::Oauth {
        return Ok(());
    }
    Err(Error::Conflict {
        field: "auth_method",
        message: format!(
            "the connector authenticates with {}, not OAuth",
            connector.auth_method
        ),
    })
}

fn not_connected(holder: Option<UserId>) -> Error {
    Error::NeedsAuth(if holder.is_some() {
        "you have not connected your account to this connector yet".into()
    } else {
        "the organization has not connected this connector yet; an admin must authorize it".into()
    })
}

fn needs_auth(reason: Option<&str>) -> Error {
    Error::NeedsAuth(format!(
        "the connector must be authorized again{}",
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_ip_literals_with_a_port_are_return_addresses() {
        for good in [
            "http://127.0.0.1:41234/switchboard/abc",
            "http://127.0.0.1:9/",
            "http://[::1]:8000/done?x=1",
        ] {
            assert!(loopback_return(good).is_ok(), "{good}");
        }
        for bad in [
            "https://127.0.0.1:443/",
            "http://localhost:8000/",
            "http://127.0.0.2:8000/",
            "http://127.0.0.1/",
            "http://evil.example.com:8000/",
            "http://user:pw@127.0.0.1:8000/",
            "http://127.0.0.1:8000/#frag",
            "javascript:alert(1)",
            "not a url",
        ] {
            let error = loopback_return(bad).expect_err(bad);
            assert!(
                matches!(&error, Error::Validation(v) if v.field == "return_to"),
                "{bad}: {error:?}"
            );
        }
        let long = format!("http://127.0.0.1:8000/{}", "a".repeat(600));
        assert!(loopback_return(&long).is_err());
    }
}
