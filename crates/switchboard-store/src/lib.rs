//! The storage boundary: the [`Store`] trait, its error type, and the schema every backend keeps.
//!
//! API boundary: callers see coarse, one-transaction operations in domain types. A write that
//! must be audited takes its audit event and appends it in the same transaction, so a change and
//! its audit record are stored together or not at all. No SQL, pool or driver type crosses this
//! boundary; only the binary picks a backend.
//!
//! The `testsuite` feature exposes the `testsuite` module, the behaviour every backend must show; each
//! backend runs it from its own integration tests.

mod records;
mod schema;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use records::*;
pub use schema::{Cell, ColumnType, SCHEMA, Snapshot, TableDump, TableSpec};
pub use uuid::Uuid;

use async_trait::async_trait;
use switchboard_domain::{
    ApiToken, ApiTokenId, AuditEvent, ChatEvent, ChatMessage, Connector, ConnectorId, Conversation,
    ConversationId, Email, FloorPolicy, Function, FunctionVersion, GrantId, Member,
    MemberPreference, NewAuditEvent, NewFunctionState, OrgId, OrgSettings, Organization, Role,
    Session, SyncSummary, Timestamp, TurnId, TurnRecord, User, UserId,
};

/// Why a store operation failed.
///
/// Kept apart so callers can react: `NotFound` and `Conflict` are the client's to fix,
/// `Unavailable` is worth retrying, `Backend` and `Corrupt` are final and go to the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist (or is not visible in this scope).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was violated.
    #[error("{message}")]
    Conflict {
        /// The input field whose value clashed.
        field: &'static str,
        /// What clashed, in plain words.
        message: String,
    },
    /// The change would leave an organization without an owner.
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// The database cannot be reached right now; retrying may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused the operation.
    #[error("database error: {0}")]
    Backend(String),
    /// Stored data does not parse as what it should be.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A conflict on `field`.
    pub fn conflict(field: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            field,
            message: message.into(),
        }
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A function that reseals one sealed value: given the value's seal context and its sealed
/// text, returns the new sealed text or why it could not.
pub type Resealer<'a> = &'a (dyn Fn(&str, &str) -> Result<String, String> + Send + Sync);

/// Everything Switchboard keeps. Each method is one transaction.
///
/// Organization-scoped methods take the organization's id and treat rows of another
/// organization as absent (`NotFound`), so an id guessed across organizations reveals nothing.
// A method's parameters are the keys that scope it (organization, connector, function, member)
// plus the change and its audit event; bundling them into structs would only hide that.
#[allow(clippy::too_many_arguments)]
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // ---- instance settings -------------------------------------------------------------

    /// Reads an installation-wide setting.
    async fn instance_setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Writes (or with `None`, removes) an installation-wide setting.
    async fn set_instance_setting(&self, key: &str, value: Option<&str>) -> StoreResult<()>;

    // ---- accounts ----------------------------------------------------------------------

    /// How many user accounts exist.
    async fn user_count(&self) -> StoreResult<u64>;
    /// Creates the first owner and their organization, only while no user exists yet
    /// (`Conflict` on field `setup` otherwise), and removes the instance setting `consume`
    /// (the one-time setup token) in the same transaction.
    async fn create_first_owner(
        &self,
        user: &NewUser,
        org: &NewOrganization,
        consume: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
    /// Creates a further owner with a new organization of their own once setup is done (the
    /// operator's `admin create-owner`): the user, the organization and the ownership in one
    /// transaction, with `audit` appended in order, so a refused slug leaves no account behind.
    /// `Conflict` on `email` or `slug`.
    async fn create_owner(
        &self,
        user: &NewUser,
        org: &NewOrganization,
        audit: &[NewAuditEvent],
    ) -> StoreResult<()>;
    /// Creates a user; `Conflict` on `email` if the address is taken.
    async fn create_user(&self, user: &NewUser, audit: &NewAuditEvent) -> StoreResult<User>;
    /// A user by id.
    async fn user(&self, id: UserId) -> StoreResult<User>;
    /// A user and their password hash, by email, for signing in.
    async fn user_login(&self, email: &Email) -> StoreResult<Option<(User, Option<String>)>>;
    /// Sets a user's password hash and ends all their browser sessions.
    async fn set_password(&self, id: UserId, hash: &str, audit: &NewAuditEvent) -> StoreResult<()>;

    // ---- browser sessions --------------------------------------------------------------

    /// Stores a new session and appends `audit` (the sign-in) with it.
    async fn create_session(&self, session: &Session, audit: &NewAuditEvent) -> StoreResult<()>;
    /// A live session (not expired at `now`) and its user.
    async fn session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<(Session, User)>>;
    /// Ends a session; returns whether there was one. Ending one that does not exist is not an
    /// error. The audit event (the sign-out) is appended only when a session ended.
    async fn delete_session(&self, token_hash: &str, audit: &NewAuditEvent) -> StoreResult<bool>;
    /// Removes sessions that expired before `now`; returns how many.
    async fn delete_expired_sessions(&self, now: Timestamp) -> StoreResult<u64>;

    // ---- personal API tokens -----------------------------------------------------------

    /// Stores a new token under the hash of its secret and appends `audit` with it, in order:
    /// the issue, preceded by the sign-in when the token is what a password sign-in asked for.
    async fn create_api_token(
        &self,
        token: &ApiToken,
        token_hash: &str,
        audit: &[NewAuditEvent],
    ) -> StoreResult<()>;
    /// A token that is neither revoked nor expired at `now`, and its user, by secret hash.
    async fn api_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<(ApiToken, User)>>;
    /// Records that a token was used.
    async fn touch_api_token(&self, id: ApiTokenId, now: Timestamp) -> StoreResult<()>;
    /// A user's tokens, newest first (ties by id, descending), revoked ones included.
    /// `page.after` is the last token of the previous page; one that is not `user`'s gives an
    /// empty page.
    async fn list_api_tokens(&self, user: UserId, page: PageRequest)
    -> StoreResult<Page<ApiToken>>;
    /// Revokes one of `user`'s tokens; `NotFound` if it is not theirs.
    async fn revoke_api_token(
        &self,
        user: UserId,
        id: ApiTokenId,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiToken>;

    // ---- organizations and members -----------------------------------------------------

    /// Creates an organization with `owner` as its first owner; `Conflict` on `slug`.
    async fn create_organization(
        &self,
        org: &NewOrganization,
        owner: UserId,
        audit: &NewAuditEvent,
    ) -> StoreResult<Organization>;
    /// An organization by id.
    async fn organization(&self, id: OrgId) -> StoreResult<Organization>;
    /// The organizations a user belongs to, with their role in each, ordered by slug (by its
    /// bytes). Every one of them, for callers that need them all at once (`GET /me`); lists
    /// shown page by page use [`Store::list_organizations`].
    async fn organizations_of(&self, user: UserId) -> StoreResult<Vec<(Organization, Role)>>;
    /// One page of [`Store::organizations_of`], in the same order. `page.after` is the last
    /// organization of the previous page; one that `user` is not (or no longer) a member of
    /// gives an empty page.
    async fn list_organizations(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<(Organization, Role)>>;
    /// Changes an organization's name and settings.
    async fn update_organization(
        &self,
        id: OrgId,
        name: Option<&str>,
        settings: Option<&OrgSettings>,
        audit: &NewAuditEvent,
    ) -> StoreResult<Organization>;
    /// A user's role in an organization, or `None` if they are not a member.
    async fn role_of(&self, org: OrgId, user: UserId) -> StoreResult<Option<Role>>;
    /// One member.
    async fn member(&self, org: OrgId, user: UserId) -> StoreResult<Member>;
    /// An organization's members, by user id.
    async fn list_members(&self, org: OrgId, page: PageRequest) -> StoreResult<Page<Member>>;
    /// Adds an existing user; `Conflict` on `email` if they are already a member.
    async fn add_member(
        &self,
        org: OrgId,
        user: UserId,
        role: Role,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Member>;
    /// Creates a user and adds them as a member in one transaction, so a refused membership
    /// never leaves an account behind; `Conflict` on `email` if the address is taken.
    async fn add_new_member(
        &self,
        org: OrgId,
        user: &NewUser,
        role: Role,
        audit: &NewAuditEvent,
    ) -> StoreResult<Member>;
    /// Changes a member's role; `LastOwner` if that would leave no owner.
    async fn set_role(
        &self,
        org: OrgId,
        user: UserId,
        role: Role,
        audit: &NewAuditEvent,
    ) -> StoreResult<Member>;
    /// Removes a member and what they keep in this organization (preferences, static
    /// credentials, OAuth grants, pending authorizations they started or would hold, and
    /// conversations); `LastOwner` if they are its last owner.
    async fn remove_member(
        &self,
        org: OrgId,
        user: UserId,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    // ---- connectors --------------------------------------------------------------------

    /// Registers a connector (with its shared credential, if any); `Conflict` on `name`.
    async fn create_connector(
        &self,
        connector: &NewConnector,
        audit: &NewAuditEvent,
    ) -> StoreResult<Connector>;
    /// An organization's connectors, by id.
    async fn list_connectors(&self, org: OrgId, page: PageRequest) -> StoreResult<Page<Connector>>;
    /// One connector of an organization.
    async fn connector(&self, org: OrgId, id: ConnectorId) -> StoreResult<Connector>;
    /// The organization a connector belongs to. Callers must check membership before using it.
    async fn connector_org(&self, id: ConnectorId) -> StoreResult<OrgId>;
    /// Changes a connector; `Conflict` on `name`.
    async fn update_connector(
        &self,
        org: OrgId,
        id: ConnectorId,
        patch: &ConnectorPatch,
        audit: &NewAuditEvent,
    ) -> StoreResult<Connector>;
    /// Deletes a connector with its functions, policies, credentials, OAuth client
    /// registrations, grants and pending authorizations, and removes it from every
    /// conversation that names it.
    async fn delete_connector(
        &self,
        org: OrgId,
        id: ConnectorId,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
    /// The stored credential of a connector: the organization's (`holder` `None`) or a member's.
    async fn connector_credential(
        &self,
        org: OrgId,
        id: ConnectorId,
        holder: Option<UserId>,
    ) -> StoreResult<Option<StoredCredential>>;
    /// Stores, replaces or (with `None`) removes `user`'s own static credential for a
    /// connector. `NotFound("connector")` for a connector of another organization,
    /// `NotFound("member")` if `user` is not a member of `org`.
    async fn set_member_credential(
        &self,
        org: OrgId,
        connector: ConnectorId,
        user: UserId,
        credential: Option<&StoredCredential>,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    // ---- OAuth client registrations ----------------------------------------------------

    /// The connector's client registration with authorization server `issuer`, if any.
    async fn oauth_client(
        &self,
        org: OrgId,
        connector: ConnectorId,
        issuer: &str,
    ) -> StoreResult<Option<StoredOAuthClient>>;
    /// Stores a client registration; one the connector already has with the same issuer is
    /// replaced, id included, so the stored row is exactly `client` afterwards.
    async fn put_oauth_client(
        &self,
        org: OrgId,
        client: &StoredOAuthClient,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
    /// Forgets every client registration of a connector (for example when its URL, and so
    /// perhaps its authorization server, changed); returns how many there were.
    async fn delete_oauth_clients(&self, org: OrgId, connector: ConnectorId) -> StoreResult<u64>;

    // ---- pending authorizations --------------------------------------------------------

    /// Stores an authorization that was just started. `NotFound("connector")` if the
    /// connector is not `pending.org`'s; `Conflict` on `state` if the state hash is taken.
    async fn create_pending_authorization(&self, pending: &PendingAuthorization)
    -> StoreResult<()>;
    /// Takes the pending authorization with this state hash: removes it and returns it, so a
    /// callback can complete it only once, on whichever replica it arrives. An expired one
    /// (`expires_at <= now`) is removed too but not returned.
    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<PendingAuthorization>>;
    /// Removes pending authorizations that expired at or before `now`; returns how many.
    async fn delete_expired_pending_authorizations(&self, now: Timestamp) -> StoreResult<u64>;

    // ---- OAuth grants ------------------------------------------------------------------

    /// The grant `holder` (`None`: the organization) has for a connector, revoked or not.
    async fn oauth_grant(
        &self,
        org: OrgId,
        connector: ConnectorId,
        holder: Option<UserId>,
    ) -> StoreResult<Option<OAuthGrant>>;
    /// A grant by id, whatever its organization: for the refresh path, which starts from a
    /// grant id. `NotFound("oauth grant")` if it is gone.
    async fn oauth_grant_by_id(&self, grant: GrantId) -> StoreResult<OAuthGrant>;
    /// Every grant of a connector (the organization's and its members'), by id.
    async fn oauth_grants_of_connector(
        &self,
        org: OrgId,
        connector: ConnectorId,
    ) -> StoreResult<Vec<OAuthGrant>>;
    /// Stores the tokens of a completed authorization as the holder's grant for the
    /// connector. A grant the holder already has is replaced in place (its id and creation time
    /// stay): new issuer and tokens, status active, no reason, version + 1, lease cleared. A
    /// new grant starts at version 1. `NotFound("connector")` for another organization's
    /// connector, `NotFound("member")` if a member holder is not a member of `org`.
    async fn save_oauth_grant(
        &self,
        org: OrgId,
        grant: &NewGrant,
        audit: &NewAuditEvent,
    ) -> StoreResult<OAuthGrant>;
    /// Claims the right to refresh an active grant until `until`, so that of all processes
    /// sharing the database only one spends the refresh token (a rotated refresh token is
    /// single-use, and reusing it can make the server revoke the whole grant).
    ///
    /// Succeeds, returning the grant as it stands under the lease, when the grant is active and
    /// nobody holds an unexpired lease (`lease_until` unset or before `now`); otherwise
    /// returns `None`, also for a grant that is gone. The winner must refresh with the tokens
    /// returned here, not with ones read earlier: another process may have finished a refresh
    /// in between. `lease_holder` must be unique to this attempt.
    async fn claim_grant_refresh(
        &self,
        grant: GrantId,
        lease_holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<OAuthGrant>>;
    /// Stores the token set a refresh produced, version + 1, and clears the lease, but only
    /// while `lease_holder` still holds it; returns whether it did. A lease whose time ran out
    /// still counts as held until someone else claims it, because the server has already
    /// rotated the refresh token and dropping the new one would lose the grant.
    async fn finish_grant_refresh(
        &self,
        grant: GrantId,
        lease_holder: &str,
        sealed: &str,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Gives up a refresh lease without new tokens (the refresh failed for a passing reason);
    /// does nothing unless `lease_holder` holds it.
    async fn release_grant_refresh(&self, grant: GrantId, lease_holder: &str) -> StoreResult<()>;
    /// Marks a grant revoked with `reason` and clears its lease, but only while it is active
    /// and still at `version`, the version whose tokens the server refused: newer tokens (from
    /// a new authorization or another process's refresh) are not what was refused. Returns
    /// whether it revoked; the audit event is appended only then. `NotFound("oauth grant")` if the
    /// grant is gone.
    async fn revoke_oauth_grant(
        &self,
        grant: GrantId,
        version: i64,
        reason: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Deletes the grant `holder` has for a connector; returns whether there was one. The
    /// audit event is appended only when a grant was deleted.
    async fn delete_oauth_grant(
        &self,
        org: OrgId,
        connector: ConnectorId,
        holder: Option<UserId>,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    // ---- functions and policies --------------------------------------------------------

    /// Records what discovery found: new functions arrive as `new_functions` says, changed
    /// ones are held, missing ones are marked removed, every definition seen is kept.
    async fn sync_functions(
        &self,
        org: OrgId,
        connector: ConnectorId,
        found: &[DiscoveredFunction],
        new_functions: NewFunctionState,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<SyncSummary>;
    /// One page of a connector's functions, by name (by its bytes), each with `member`'s
    /// preference. `page.after` is the id of the last function of the previous page; one that
    /// is not the connector's gives an empty page. (A chat turn reads every function of the
    /// organization at once with [`Store::chat_catalog`].)
    async fn list_functions_page(
        &self,
        org: OrgId,
        connector: ConnectorId,
        member: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<FunctionView>>;
    /// One function by name, with `member`'s preference.
    async fn function(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        member: UserId,
    ) -> StoreResult<FunctionView>;
    /// Every definition a function has had, oldest first.
    ///
    /// Not paged, unlike the other lists: a function gains a version only when discovery sees a
    /// definition it never had (one seen again keeps its row), and a changed definition holds
    /// the function until an admin reviews it, so the history stays short in practice. The
    /// versions have no id to page on, and the diff needs the approved one wherever it falls.
    async fn function_versions(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
    ) -> StoreResult<Vec<FunctionVersion>>;
    /// Sets the admin's floor for a function.
    async fn set_floor(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        floor: FloorPolicy,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Function>;
    /// Sets (or with `None`, clears) a member's preference for a function.
    async fn set_preference(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        member: UserId,
        preference: Option<MemberPreference>,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<FunctionView>;
    /// Approves a function's current definition, which must still have hash `hash`
    /// (`Conflict` on `hash` if it changed again meanwhile).
    async fn approve_function(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        hash: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Function>;

    // ---- chat --------------------------------------------------------------------------

    /// The organization's language model, if an admin chose one. Like every method of this
    /// section, it treats another organization's rows as absent.
    async fn chat_model(&self, org: OrgId) -> StoreResult<Option<StoredChatModel>>;
    /// Sets (or with `None`, clears) the organization's language model;
    /// `NotFound("organization")` if there is no such organization.
    async fn set_chat_model(
        &self,
        org: OrgId,
        model: Option<&StoredChatModel>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Creates a conversation; every connector it names must belong to its organization
    /// (`NotFound` on `connector` otherwise), and its user must be a member of it
    /// (`NotFound("member")`). A connector named twice is kept once, at its first place.
    /// `Conflict` on `id` if the id is taken.
    async fn create_conversation(&self, conversation: &Conversation) -> StoreResult<()>;
    /// One of `user`'s conversations; `NotFound` if it is not theirs.
    async fn conversation(
        &self,
        org: OrgId,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<Conversation>;
    /// The organization of `user`'s conversation `id`; `NotFound` when it is not theirs, so
    /// a conversation's id alone finds its scope, as [`Store::connector_org`] does for
    /// connectors.
    async fn conversation_org(&self, user: UserId, id: ConversationId) -> StoreResult<OrgId>;
    /// `user`'s conversations in the organization, most recently updated first (ties by id,
    /// descending). `page.after` is the last conversation of the previous page; one that is
    /// not (or no longer) among `user`'s conversations gives an empty page.
    async fn list_conversations(
        &self,
        org: OrgId,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<Conversation>>;
    /// Changes a conversation's title or connectors (checked as in
    /// [`Store::create_conversation`]); with `patch.now`, moves `updated_at` forward to it.
    /// `NotFound("conversation")` if it is not `user`'s.
    async fn update_conversation(
        &self,
        org: OrgId,
        user: UserId,
        id: ConversationId,
        patch: &ConversationPatch,
    ) -> StoreResult<Conversation>;
    /// Deletes a conversation with its turns, messages and events;
    /// `NotFound("conversation")` if it is not `user`'s.
    async fn delete_conversation(
        &self,
        org: OrgId,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<()>;
    /// A conversation's history: the messages of its ended turns, in order. Not scoped: the
    /// caller has read the conversation as its member first (so do the turn and event
    /// methods below, which take ids only).
    async fn chat_messages(&self, conversation: ConversationId) -> StoreResult<Vec<ChatMessage>>;

    /// What `member`'s turns in `org` decide with, in one consistent read (see
    /// [`ChatCatalog`]). `NotFound("organization")`.
    async fn chat_catalog(&self, org: OrgId, member: UserId) -> StoreResult<ChatCatalog>;
    /// Starts a turn (version 1, whatever `turn.version` says) and appends its first events,
    /// stamped `turn.created_at`, which also becomes the conversation's `updated_at` if later.
    /// Returns the stored events, or `None`, having written nothing, if the organization's
    /// policy generation is no longer `policy_generation` (the caller reads the catalog again).
    /// `Conflict` on `turn` while the conversation has a turn that has not ended (or if the id
    /// is taken); `NotFound("conversation")` unless the conversation is `turn.user_id`'s in
    /// `turn.org_id`.
    async fn start_turn(
        &self,
        turn: &TurnRecord,
        events: &[NewChatEvent],
        policy_generation: i64,
    ) -> StoreResult<Option<Vec<ChatEvent>>>;
    /// A turn by id; `NotFound("turn")`.
    async fn turn(&self, id: TurnId) -> StoreResult<TurnRecord>;
    /// The conversation's turn that has not ended, if any.
    async fn open_turn(&self, conversation: ConversationId) -> StoreResult<Option<TurnRecord>>;
    /// Saves a turn's next state if it is still at `save.version` and the organization's
    /// policy generation is still `save.policy_generation`, in one transaction: the status,
    /// state and lease, the events (numbered after the conversation's last), the audit
    /// entries, and, when the turn ends, its messages appended to the history; the version
    /// goes up by one and the conversation's `updated_at` moves forward to `save.now`. Returns
    /// the stored events, or `None`, having written nothing, when another save (or a claim) or
    /// a policy change came first (the caller reloads and tries again). `NotFound("turn")` if
    /// the turn is gone.
    async fn save_turn(&self, save: &TurnSave<'_>) -> StoreResult<Option<Vec<ChatEvent>>>;
    /// Moves a turn's lease without changing its version, while its driver still holds it;
    /// returns whether it did (false when the version moved on).
    async fn extend_turn_lease(
        &self,
        id: TurnId,
        version: i64,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;
    /// Appends events that do not change the turn's state (text as it streams, progress),
    /// stamped with the store's clock. `NotFound("turn")` unless the turn is in `conversation`.
    async fn append_chat_events(
        &self,
        conversation: ConversationId,
        turn: TurnId,
        events: &[NewChatEvent],
    ) -> StoreResult<Vec<ChatEvent>>;
    /// A conversation's events after `after` (an event's `seq`), oldest first, at most `limit`.
    async fn chat_events(
        &self,
        conversation: ConversationId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<ChatEvent>>;
    /// Claims up to `limit` running turns whose lease ran out before `now` (or never had one):
    /// each gets the lease `lease_until` and a new version, and is returned as claimed, by id.
    /// Waiting turns are never claimed. Of several processes claiming at once, each turn goes
    /// to one of them.
    async fn claim_stalled_turns(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<TurnRecord>>;

    // ---- audit log ---------------------------------------------------------------------

    /// Appends an event on its own (for events that change nothing else, such as a sign-in).
    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()>;
    /// An organization's events: those recorded in it, and sign-ins of its current members.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>>;

    // ---- maintenance -------------------------------------------------------------------

    /// Reseals every sealed value (connector credentials, OAuth client registrations, grants,
    /// pending authorizations and language model keys) in one transaction; returns how many
    /// were rewritten.
    async fn reseal_all(&self, reseal: Resealer<'_>) -> StoreResult<u64>;
    /// Every row of every table in [`SCHEMA`].
    async fn export(&self) -> StoreResult<Snapshot>;
    /// Loads a snapshot into an empty database, in one transaction; `Conflict` on `target`
    /// if the database already holds users.
    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()>;
}

/// Audit events are stamped by the store as they are appended, with this clock.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}
