//! The values passed into and out of the store that are not domain entities themselves.

use serde::{Deserialize, Serialize};
use switchboard_domain::{
    AuditAction, AuthMethod, ConnectorId, ConnectorName, ConnectorStatus, ConnectorUrl,
    CredentialKind, Description, Email, Function, FunctionDefinition, MemberPreference, OrgId,
    OrgSettings, OrgSlug, Timestamp, Transport, UserId,
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
            updated_at: now,
        }
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
