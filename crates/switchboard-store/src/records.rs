//! The values passed into and out of the store that are not domain entities themselves.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_domain::{
    AuditAction, AuthMethod, ClientSource, Connector, ConnectorId, ConnectorName, ConnectorStatus,
    ConnectorUrl, ConversationId, CredentialKind, CredentialScope, Description, Email, Function,
    FunctionDefinition, GrantId, GrantStatus, MemberPreference, NewAuditEvent, OAuthClientId,
    OrgId, OrgSettings, OrgSlug, ProviderKind, Timestamp, Transport, TurnId, TurnStatus, UserId,
};
use uuid::Uuid;

/// A user account about to be created.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Its id.
    pub id: UserId,
    /// Login name.
    pub email: Email,
    /// Display name.
    pub display_name: String,
    /// Argon2id PHC string, or `None` for an account that cannot sign in with a password.
    pub password_hash: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// An organization about to be created.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    /// Its id.
    pub id: OrgId,
    /// Short name.
    pub slug: OrgSlug,
    /// Display name.
    pub name: String,
    /// Settings.
    pub settings: OrgSettings,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A sealed static credential as stored. `sealed` is ciphertext from `switchboard-seal`,
/// sealed for [`switchboard_domain::credential_seal_context`].
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// What kind of credential it is.
    pub kind: CredentialKind,
    /// The sealed secret.
    pub sealed: String,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A connector about to be registered.
#[derive(Debug, Clone)]
pub struct NewConnector {
    /// Its id.
    pub id: ConnectorId,
    /// Its organization.
    pub org_id: OrgId,
    /// Its name.
    pub name: ConnectorName,
    /// Its server URL.
    pub url: ConnectorUrl,
    /// Its description.
    pub description: Option<Description>,
    /// Its initial status.
    pub status: ConnectorStatus,
    /// How to authenticate.
    pub auth_method: AuthMethod,
    /// Who holds its credential (usually [`CredentialScope::Shared`]).
    pub credential_scope: CredentialScope,
    /// The organization's shared credential, if one is given now.
    pub credential: Option<StoredCredential>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Changes to a connector. `None` leaves a field as it is.
#[derive(Debug, Clone)]
pub struct ConnectorPatch {
    /// A new name.
    pub name: Option<ConnectorName>,
    /// A new URL.
    pub url: Option<ConnectorUrl>,
    /// A new description (`Some(None)` clears it).
    pub description: Option<Option<Description>>,
    /// A new status and last error.
    pub status: Option<(ConnectorStatus, Option<String>)>,
    /// A new auth method.
    pub auth_method: Option<AuthMethod>,
    /// What the last validation found.
    pub transport: Option<(Transport, String)>,
    /// A new shared credential (`Some(None)` removes it).
    pub credential: Option<Option<StoredCredential>>,
    /// A new credential scope. Changing it leaves stored credentials and grants in place;
    /// removing those that no longer apply is the caller's decision.
    pub credential_scope: Option<CredentialScope>,
    /// What auth detection found (`Some(None)` clears it).
    pub auth_detail: Option<Option<Value>>,
    /// When the change is made.
    pub updated_at: Timestamp,
}

impl ConnectorPatch {
    /// A patch that changes nothing yet, made at `now`.
    pub fn at(now: Timestamp) -> Self {
        Self {
            name: None,
            url: None,
            description: None,
            status: None,
            auth_method: None,
            transport: None,
            credential: None,
            credential_scope: None,
            auth_detail: None,
            updated_at: now,
        }
    }
}

/// Switchboard's client registration with one authorization server, for one connector.
///
/// `sealed` holds the client credentials (the client id and, for confidential clients, the
/// secret), sealed for [`switchboard_domain::client_seal_context`] of `connector` and `issuer`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredOAuthClient {
    /// Its id.
    pub id: OAuthClientId,
    /// The connector it was registered for.
    pub connector: ConnectorId,
    /// The authorization server's issuer identifier (RFC 8414 `issuer`).
    pub issuer: String,
    /// How the registration came about.
    pub source: ClientSource,
    /// The sealed client credentials.
    pub sealed: String,
    /// When it was registered.
    pub created_at: Timestamp,
}

impl std::fmt::Debug for StoredOAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredOAuthClient")
            .field("id", &self.id)
            .field("connector", &self.connector)
            .field("issuer", &self.issuer)
            .field("source", &self.source)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// An authorization that was started (the person was sent to the authorization server) and
/// awaits its callback. Kept in the database, not in memory, because any replica may receive
/// the callback.
///
/// `sealed` holds what the callback needs and nobody else may read (such as the PKCE
/// verifier), sealed for [`switchboard_domain::pending_seal_context`] of `state_hash`.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// The SHA-256 of the `state` parameter: the key the callback looks it up by. Only the
    /// hash is stored, so reading the table does not let anyone complete the flow.
    pub state_hash: String,
    /// The organization of the connector.
    pub org: OrgId,
    /// The connector being authorized.
    pub connector: ConnectorId,
    /// Who started it; only they may complete it.
    pub user: UserId,
    /// Who will hold the grant: `None` for the organization, else a member.
    pub holder: Option<UserId>,
    /// The hash of the browser binding (a cookie set when the flow started), so a callback
    /// URL replayed in another browser is refused.
    pub binding_hash: String,
    /// The sealed flow secrets.
    pub sealed: String,
    /// When it was started.
    pub created_at: Timestamp,
    /// When it can no longer be completed.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("state_hash", &self.state_hash)
            .field("org", &self.org)
            .field("connector", &self.connector)
            .field("user", &self.user)
            .field("holder", &self.holder)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The OAuth tokens one holder (the organization or a member) has for one connector.
///
/// `sealed` holds the token set (access token, refresh token, scopes), sealed for
/// [`switchboard_domain::grant_seal_context`] of `connector`, `holder` and `issuer`.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthGrant {
    /// Its id; kept when the grant is replaced by a new authorization.
    pub id: GrantId,
    /// The connector it is for.
    pub connector: ConnectorId,
    /// Who holds it: `None` for the organization, else a member.
    pub holder: Option<UserId>,
    /// The authorization server that issued the tokens.
    pub issuer: String,
    /// Whether it is usable.
    pub status: GrantStatus,
    /// Why it was revoked, when it was.
    pub reason: Option<String>,
    /// The sealed token set.
    pub sealed: String,
    /// When the access token expires, if the server said.
    pub expires_at: Option<Timestamp>,
    /// Goes up by one whenever new tokens are stored, so a caller can tell whether the tokens
    /// it used are still the current ones.
    pub version: i64,
    /// Who holds the refresh lease, if anyone (see [`crate::Store::claim_grant_refresh`]).
    pub lease_holder: Option<String>,
    /// Until when the lease holds.
    pub lease_until: Option<Timestamp>,
    /// When the grant was first stored.
    pub created_at: Timestamp,
    /// When it last changed (new tokens, a revocation).
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for OAuthGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthGrant")
            .field("id", &self.id)
            .field("connector", &self.connector)
            .field("holder", &self.holder)
            .field("issuer", &self.issuer)
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .field("lease_holder", &self.lease_holder)
            .field("lease_until", &self.lease_until)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// The tokens a completed authorization produced, about to be stored as a holder's grant.
#[derive(Clone, PartialEq, Eq)]
pub struct NewGrant {
    /// The id to use if the holder has no grant for the connector yet.
    pub id: GrantId,
    /// The connector.
    pub connector: ConnectorId,
    /// Who will hold it: `None` for the organization, else a member.
    pub holder: Option<UserId>,
    /// The authorization server that issued the tokens.
    pub issuer: String,
    /// The sealed token set.
    pub sealed: String,
    /// When the access token expires, if the server said.
    pub expires_at: Option<Timestamp>,
    /// When the tokens were received.
    pub now: Timestamp,
}

impl std::fmt::Debug for NewGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewGrant")
            .field("id", &self.id)
            .field("connector", &self.connector)
            .field("holder", &self.holder)
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A function as discovery found it, with the hash of its definition.
#[derive(Debug, Clone)]
pub struct DiscoveredFunction {
    /// The definition.
    pub definition: FunctionDefinition,
    /// [`switchboard_domain::definition_hash`] of it.
    pub hash: String,
}

impl DiscoveredFunction {
    /// Hashes a definition.
    pub fn new(definition: FunctionDefinition) -> Self {
        let hash = switchboard_domain::definition_hash(&definition);
        Self { definition, hash }
    }
}

/// A function together with one member's preference for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionView {
    /// The function.
    pub function: Function,
    /// The member's preference, if they chose one.
    pub preference: Option<MemberPreference>,
}

/// Which page of a list to return. Lists are ordered by id; `after` is the last id of the
/// previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Return items after this id.
    pub after: Option<Uuid>,
    /// At most this many items.
    pub limit: u32,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next: Option<Uuid>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order: the extra row, if present,
    /// only proves there is a next page.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> Self {
        let limit = limit as usize;
        if rows.len() > limit {
            rows.truncate(limit);
            let next = rows.last().map(&id);
            Self { items: rows, next }
        } else {
            Self {
                items: rows,
                next: None,
            }
        }
    }

    /// The same page with every item converted; the cursor stays.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// Which audit events to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// The organization whose log it is.
    pub org_id: OrgId,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only this actor.
    pub actor_id: Option<UserId>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
    /// Newest first (the default for people) or oldest first (for exports).
    pub newest_first: bool,
}

/// The organization's language model as stored. `sealed_key` is ciphertext from
/// `switchboard-seal`, sealed for [`switchboard_domain::chat_model_seal_context`]; like
/// [`StoredCredential`], its `Debug` leaves the sealed text out.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredChatModel {
    /// The wire format.
    pub kind: ProviderKind,
    /// The API's base URL, up to and without `/chat/completions`.
    pub base_url: String,
    /// The model's name.
    pub model: String,
    /// The sealed API key, when the provider needs one.
    pub sealed_key: Option<String>,
    /// When it was set.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for StoredChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredChatModel")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("has_key", &self.sealed_key.is_some())
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Changes to a conversation; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationPatch {
    /// A new, checked title.
    pub title: Option<String>,
    /// The connectors the assistant may use, replacing the old list.
    pub connectors: Option<Vec<ConnectorId>>,
    /// When the change was made.
    pub now: Option<Timestamp>,
}

/// An event about to be appended to a conversation's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChatEvent {
    /// Its kind.
    pub kind: String,
    /// Its data.
    pub data: Value,
}

/// What a member's chat turn decides with, read at one moment: the organization's settings
/// and model, its connectors, and their functions with the member's preferences.
///
/// `policy_generation` is the organization's counter of changes to any of that, advanced by
/// the database itself on every such write (a conversation's connector list is the member's
/// choice, not a policy, and does not move it). A
/// save that names it (`TurnSave::policy_generation`) happens only while nothing changed, so a
/// process may keep a catalog in memory and still never act on a stale one.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCatalog {
    /// The organization's policy generation when this was read.
    pub policy_generation: i64,
    /// The organization's settings.
    pub settings: OrgSettings,
    /// The organization's model, if an admin set one.
    pub model: Option<StoredChatModel>,
    /// Its connectors, by name.
    pub connectors: Vec<Connector>,
    /// Their functions, by connector then name, with the member's preferences.
    pub functions: Vec<FunctionView>,
}

/// A turn's next state, saved only if nobody saved since `version` was read.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnSave<'a> {
    /// The turn.
    pub id: TurnId,
    /// Its conversation.
    pub conversation: ConversationId,
    /// The version the caller read.
    pub version: i64,
    /// The organization's policy generation the caller decided under (`ChatCatalog`); the
    /// save is refused if it moved since.
    pub policy_generation: i64,
    /// The new status.
    pub status: TurnStatus,
    /// The new state.
    pub state: &'a Value,
    /// The new lease; `None` releases it.
    pub lease_until: Option<Timestamp>,
    /// Events to append.
    pub events: &'a [NewChatEvent],
    /// Messages to append to the conversation's history (when the turn ends).
    pub messages: &'a [Value],
    /// Audit log entries written with the new state.
    pub audit: &'a [NewAuditEvent],
    /// When it happened.
    pub now: Timestamp,
}
