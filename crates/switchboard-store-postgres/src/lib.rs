//! The PostgreSQL backend of [`switchboard_store::Store`], for installations that outgrow one
//! machine or run several replicas against one database.
//!
//! Architecture invariant: every trait method is one transaction on a native [`PgPool`], built
//! from runtime queries (`sqlx::query` with binds), so the crate builds without a database.
//! Values are stored the way the shared [`switchboard_store::SCHEMA`] says: UUID columns,
//! BIGINT milliseconds for times, JSONB for JSON and the domain enums' text forms, so that
//! `db copy` moves rows between this backend and SQLite without converting anything.
//!
//! Concurrency: rules that span rows (an organization keeps an owner, setup happens once) are
//! enforced under row or table locks taken at the start of the transaction, so they hold under
//! READ COMMITTED with several replicas writing at once.

mod accounts;
mod audit;
mod chat;
mod connectors;
mod error;
mod functions;
mod maintenance;
mod oauth;
mod orgs;
mod rows;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use switchboard_domain::{
    ApiToken, ApiTokenId, AuditEvent, ChatEvent, ChatMessage, Connector, ConnectorId, Conversation,
    ConversationId, Email, FloorPolicy, Function, FunctionVersion, GrantId, Member,
    MemberPreference, NewAuditEvent, NewFunctionState, OrgId, OrgSettings, Organization, Role,
    Session, SyncSummary, Timestamp, TurnId, TurnRecord, User, UserId,
};
use switchboard_store::{
    AuditFilter, ChatCatalog, ConnectorPatch, ConversationPatch, DiscoveredFunction, FunctionView,
    NewChatEvent, NewConnector, NewGrant, NewOrganization, NewUser, OAuthGrant, Page, PageRequest,
    PendingAuthorization, Resealer, Snapshot, Store, StoreError, StoreResult, StoredChatModel,
    StoredCredential, StoredOAuthClient, TurnSave,
};

use crate::error::backend;

/// How long a request waits for a pooled connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per pool. Each trait method holds one connection for one short transaction, so
/// a small pool serves many concurrent requests; several replicas multiply it.
const MAX_CONNECTIONS: u32 = 10;

/// A [`Store`] kept in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`). Does not migrate;
    /// call [`Store::migrate`] for that.
    ///
    /// A server that does not answer is retried for up to ten seconds (it may still be
    /// starting next to this process) before the result is `StoreError::Unavailable`.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(StoreError::Backend(
                "a postgres database url must start with postgres:// or postgresql://".into(),
            ));
        }
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid postgres database url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Ok(PostgresStore { pool })
    }

    /// The connection pool, for PostgreSQL-only features that live beside the trait (such as
    /// LISTEN/NOTIFY between replicas).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Every table in the store's schema with its columns in order, sorted by table name
    /// (migration bookkeeping included). The shared test suite compares this with
    /// [`switchboard_store::SCHEMA`].
    pub async fn table_layout(&self) -> StoreResult<Vec<(String, Vec<String>)>> {
        maintenance::layout(&self.pool).await
    }

    /// Closes every connection; the store cannot be used afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        // The migrator holds a PostgreSQL advisory lock while it runs, so replicas starting
        // together apply each migration once.
        sqlx::migrate!().run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => backend(e),
            other => StoreError::Backend(format!("migration failed: {other}")),
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn instance_setting(&self, key: &str) -> StoreResult<Option<String>> {
        accounts::instance_setting(&self.pool, key).await
    }

    async fn set_instance_setting(&self, key: &str, value: Option<&str>) -> StoreResult<()> {
        accounts::set_instance_setting(&self.pool, key, value).await
    }

    async fn user_count(&self) -> StoreResult<u64> {
        accounts::user_count(&self.pool).await
    }

    async fn create_first_owner(
        &self,
        user: &NewUser,
        org: &NewOrganization,
        consume: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        accounts::create_first_owner(&self.pool, user, org, consume, audit).await
    }

    async fn create_owner(
        &self,
        user: &NewUser,
        org: &NewOrganization,
        audit: &[NewAuditEvent],
    ) -> StoreResult<()> {
        accounts::create_owner(&self.pool, user, org, audit).await
    }

    async fn create_user(&self, user: &NewUser, audit: &NewAuditEvent) -> StoreResult<User> {
        accounts::create_user(&self.pool, user, audit).await
    }

    async fn user(&self, id: UserId) -> StoreResult<User> {
        accounts::user(&self.pool, id).await
    }

    async fn user_login(&self, email: &Email) -> StoreResult<Option<(User, Option<String>)>> {
        accounts::user_login(&self.pool, email).await
    }

    async fn set_password(&self, id: UserId, hash: &str, audit: &NewAuditEvent) -> StoreResult<()> {
        accounts::set_password(&self.pool, id, hash, audit).await
    }

    async fn create_session(&self, session: &Session, audit: &NewAuditEvent) -> StoreResult<()> {
        accounts::create_session(&self.pool, session, audit).await
    }

    async fn session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<(Session, User)>> {
        accounts::session(&self.pool, token_hash, now).await
    }

    async fn delete_session(&self, token_hash: &str, audit: &NewAuditEvent) -> StoreResult<bool> {
        accounts::delete_session(&self.pool, token_hash, audit).await
    }

    async fn delete_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        accounts::delete_expired_sessions(&self.pool, now).await
    }

    async fn create_api_token(
        &self,
        token: &ApiToken,
        token_hash: &str,
        audit: &[NewAuditEvent],
    ) -> StoreResult<()> {
        accounts::create_api_token(&self.pool, token, token_hash, audit).await
    }

    async fn api_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<(ApiToken, User)>> {
        accounts::api_token(&self.pool, token_hash, now).await
    }

    async fn touch_api_token(&self, id: ApiTokenId, now: Timestamp) -> StoreResult<()> {
        accounts::touch_api_token(&self.pool, id, now).await
    }

    async fn list_api_tokens(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<ApiToken>> {
        accounts::list_api_tokens(&self.pool, user, page).await
    }

    async fn revoke_api_token(
        &self,
        user: UserId,
        id: ApiTokenId,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiToken> {
        accounts::revoke_api_token(&self.pool, user, id, now, audit).await
    }

    async fn create_organization(
        &self,
        org: &NewOrganization,
        owner: UserId,
        audit: &NewAuditEvent,
    ) -> StoreResult<Organization> {
        orgs::create_organization(&self.pool, org, owner, audit).await
    }

    async fn organization(&self, id: OrgId) -> StoreResult<Organization> {
        orgs::organization(&self.pool, id).await
    }

    async fn organizations_of(&self, user: UserId) -> StoreResult<Vec<(Organization, Role)>> {
        orgs::organizations_of(&self.pool, user).await
    }

    async fn list_organizations(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<(Organization, Role)>> {
        orgs::list_organizations(&self.pool, user, page).await
    }

    async fn update_organization(
        &self,
        id: OrgId,
        name: Option<&str>,
        settings: Option<&OrgSettings>,
        audit: &NewAuditEvent,
    ) -> StoreResult<Organization> {
        orgs::update_organization(&self.pool, id, name, settings, audit).await
    }

    async fn role_of(&self, org: OrgId, user: UserId) -> StoreResult<Option<Role>> {
        orgs::role_of(&self.pool, org, user).await
    }

    async fn member(&self, org: OrgId, user: UserId) -> StoreResult<Member> {
        orgs::member(&self.pool, org, user).await
    }

    async fn list_members(&self, org: OrgId, page: PageRequest) -> StoreResult<Page<Member>> {
        orgs::list_members(&self.pool, org, page).await
    }

    async fn add_new_member(
        &self,
        org: OrgId,
        user: &NewUser,
        role: Role,
        audit: &NewAuditEvent,
    ) -> StoreResult<Member> {
        orgs::add_new_member(&self.pool, org, user, role, audit).await
    }

    async fn add_member(
        &self,
        org: OrgId,
        user: UserId,
        role: Role,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Member> {
        orgs::add_member(&self.pool, org, user, role, now, audit).await
    }

    async fn set_role(
        &self,
        org: OrgId,
        user: UserId,
        role: Role,
        audit: &NewAuditEvent,
    ) -> StoreResult<Member> {
        orgs::set_role(&self.pool, org, user, role, audit).await
    }

    async fn remove_member(
        &self,
        org: OrgId,
        user: UserId,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        orgs::remove_member(&self.pool, org, user, audit).await
    }

    async fn create_connector(
        &self,
        connector: &NewConnector,
        audit: &NewAuditEvent,
    ) -> StoreResult<Connector> {
        connectors::create_connector(&self.pool, connector, audit).await
    }

    async fn list_connectors(&self, org: OrgId, page: PageRequest) -> StoreResult<Page<Connector>> {
        connectors::list_connectors(&self.pool, org, page).await
    }

    async fn connector(&self, org: OrgId, id: ConnectorId) -> StoreResult<Connector> {
        connectors::connector(&self.pool, org, id).await
    }

    async fn connector_org(&self, id: ConnectorId) -> StoreResult<OrgId> {
        connectors::connector_org(&self.pool, id).await
    }

    async fn update_connector(
        &self,
        org: OrgId,
        id: ConnectorId,
        patch: &ConnectorPatch,
        audit: &NewAuditEvent,
    ) -> StoreResult<Connector> {
        connectors::update_connector(&self.pool, org, id, patch, audit).await
    }

    async fn delete_connector(
        &self,
        org: OrgId,
        id: ConnectorId,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        connectors::delete_connector(&self.pool, org, id, audit).await
    }

    async fn connector_credential(
        &self,
        org: OrgId,
        id: ConnectorId,
        holder: Option<UserId>,
    ) -> StoreResult<Option<StoredCredential>> {
        connectors::connector_credential(&self.pool, org, id, holder).await
    }

    async fn set_member_credential(
        &self,
        org: OrgId,
        connector: ConnectorId,
        user: UserId,
        credential: Option<&StoredCredential>,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        connectors::set_member_credential(&self.pool, org, connector, user, credential, now, audit)
            .await
    }

    async fn oauth_client(
        &self,
        org: OrgId,
        connector: ConnectorId,
        issuer: &str,
    ) -> StoreResult<Option<StoredOAuthClient>> {
        oauth::oauth_client(&self.pool, org, connector, issuer).await
    }

    async fn put_oauth_client(
        &self,
        org: OrgId,
        client: &StoredOAuthClient,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        oauth::put_oauth_client(&self.pool, org, client, audit).await
    }

    async fn delete_oauth_clients(&self, org: OrgId, connector: ConnectorId) -> StoreResult<u64> {
        oauth::delete_oauth_clients(&self.pool, org, connector).await
    }

    async fn create_pending_authorization(
        &self,
        pending: &PendingAuthorization,
    ) -> StoreResult<()> {
        oauth::create_pending(&self.pool, pending).await
    }

    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<PendingAuthorization>> {
        oauth::take_pending(&self.pool, state_hash, now).await
    }

    async fn delete_expired_pending_authorizations(&self, now: Timestamp) -> StoreResult<u64> {
        oauth::delete_expired_pending(&self.pool, now).await
    }

    async fn oauth_grant(
        &self,
        org: OrgId,
        connector: ConnectorId,
        holder: Option<UserId>,
    ) -> StoreResult<Option<OAuthGrant>> {
        oauth::oauth_grant(&self.pool, org, connector, holder).await
    }

    async fn oauth_grant_by_id(&self, grant: GrantId) -> StoreResult<OAuthGrant> {
        oauth::oauth_grant_by_id(&self.pool, grant).await
    }

    async fn oauth_grants_of_connector(
        &self,
        org: OrgId,
        connector: ConnectorId,
    ) -> StoreResult<Vec<OAuthGrant>> {
        oauth::oauth_grants_of_connector(&self.pool, org, connector).await
    }

    async fn save_oauth_grant(
        &self,
        org: OrgId,
        grant: &NewGrant,
        audit: &NewAuditEvent,
    ) -> StoreResult<OAuthGrant> {
        oauth::save_oauth_grant(&self.pool, org, grant, audit).await
    }

    async fn claim_grant_refresh(
        &self,
        grant: GrantId,
        lease_holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<OAuthGrant>> {
        oauth::claim_grant_refresh(&self.pool, grant, lease_holder, now, until).await
    }

    async fn finish_grant_refresh(
        &self,
        grant: GrantId,
        lease_holder: &str,
        sealed: &str,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        oauth::finish_grant_refresh(&self.pool, grant, lease_holder, sealed, expires_at, now).await
    }

    async fn release_grant_refresh(&self, grant: GrantId, lease_holder: &str) -> StoreResult<()> {
        oauth::release_grant_refresh(&self.pool, grant, lease_holder).await
    }

    async fn revoke_oauth_grant(
        &self,
        grant: GrantId,
        version: i64,
        reason: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        oauth::revoke_oauth_grant(&self.pool, grant, version, reason, now, audit).await
    }

    async fn delete_oauth_grant(
        &self,
        org: OrgId,
        connector: ConnectorId,
        holder: Option<UserId>,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        oauth::delete_oauth_grant(&self.pool, org, connector, holder, audit).await
    }

    async fn sync_functions(
        &self,
        org: OrgId,
        connector: ConnectorId,
        found: &[DiscoveredFunction],
        new_functions: NewFunctionState,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<SyncSummary> {
        functions::sync_functions(&self.pool, org, connector, found, new_functions, now, audit)
            .await
    }

    async fn list_functions_page(
        &self,
        org: OrgId,
        connector: ConnectorId,
        member: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<FunctionView>> {
        functions::list_functions_page(&self.pool, org, connector, member, page).await
    }

    async fn function(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        member: UserId,
    ) -> StoreResult<FunctionView> {
        functions::function(&self.pool, org, connector, name, member).await
    }

    async fn function_versions(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
    ) -> StoreResult<Vec<FunctionVersion>> {
        functions::function_versions(&self.pool, org, connector, name).await
    }

    async fn set_floor(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        floor: FloorPolicy,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Function> {
        functions::set_floor(&self.pool, org, connector, name, floor, now, audit).await
    }

    async fn set_preference(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        member: UserId,
        preference: Option<MemberPreference>,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<FunctionView> {
        functions::set_preference(
            &self.pool, org, connector, name, member, preference, now, audit,
        )
        .await
    }

    async fn approve_function(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        hash: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Function> {
        functions::approve_function(&self.pool, org, connector, name, hash, now, audit).await
    }

    async fn chat_model(&self, org: OrgId) -> StoreResult<Option<StoredChatModel>> {
        chat::chat_model(&mut *self.pool.acquire().await.map_err(backend)?, org).await
    }

    async fn set_chat_model(
        &self,
        org: OrgId,
        model: Option<&StoredChatModel>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        chat::set_chat_model(&self.pool, org, model, audit).await
    }

    async fn create_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        chat::create_conversation(&self.pool, conversation).await
    }

    async fn conversation(
        &self,
        org: OrgId,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<Conversation> {
        chat::conversation(&self.pool, org, user, id).await
    }

    async fn conversation_org(&self, user: UserId, id: ConversationId) -> StoreResult<OrgId> {
        chat::conversation_org(&self.pool, user, id).await
    }

    async fn list_conversations(
        &self,
        org: OrgId,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<Conversation>> {
        chat::list_conversations(&self.pool, org, user, page).await
    }

    async fn update_conversation(
        &self,
        org: OrgId,
        user: UserId,
        id: ConversationId,
        patch: &ConversationPatch,
    ) -> StoreResult<Conversation> {
        chat::update_conversation(&self.pool, org, user, id, patch).await
    }

    async fn delete_conversation(
        &self,
        org: OrgId,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<()> {
        chat::delete_conversation(&self.pool, org, user, id).await
    }

    async fn chat_messages(&self, conversation: ConversationId) -> StoreResult<Vec<ChatMessage>> {
        chat::chat_messages(&self.pool, conversation).await
    }

    async fn chat_catalog(&self, org: OrgId, member: UserId) -> StoreResult<ChatCatalog> {
        chat::chat_catalog(&self.pool, org, member).await
    }

    async fn start_turn(
        &self,
        turn: &TurnRecord,
        events: &[NewChatEvent],
        policy_generation: i64,
    ) -> StoreResult<Option<Vec<ChatEvent>>> {
        chat::start_turn(&self.pool, turn, events, policy_generation).await
    }

    async fn turn(&self, id: TurnId) -> StoreResult<TurnRecord> {
        chat::turn(&self.pool, id).await
    }

    async fn open_turn(&self, conversation: ConversationId) -> StoreResult<Option<TurnRecord>> {
        chat::open_turn(&self.pool, conversation).await
    }

    async fn save_turn(&self, save: &TurnSave<'_>) -> StoreResult<Option<Vec<ChatEvent>>> {
        chat::save_turn(&self.pool, save).await
    }

    async fn extend_turn_lease(
        &self,
        id: TurnId,
        version: i64,
        lease_until: Timestamp,
    ) -> StoreResult<bool> {
        chat::extend_turn_lease(&self.pool, id, version, lease_until).await
    }

    async fn append_chat_events(
        &self,
        conversation: ConversationId,
        turn: TurnId,
        events: &[NewChatEvent],
    ) -> StoreResult<Vec<ChatEvent>> {
        chat::append_chat_events(&self.pool, conversation, turn, events).await
    }

    async fn chat_events(
        &self,
        conversation: ConversationId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<ChatEvent>> {
        chat::chat_events(&self.pool, conversation, after, limit).await
    }

    async fn claim_stalled_turns(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<TurnRecord>> {
        chat::claim_stalled_turns(&self.pool, now, lease_until, limit).await
    }

    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        audit::append_audit(&self.pool, event).await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        audit::list_audit(&self.pool, filter, page).await
    }

    async fn reseal_all(&self, reseal: Resealer<'_>) -> StoreResult<u64> {
        maintenance::reseal_all(&self.pool, reseal).await
    }

    async fn export(&self) -> StoreResult<Snapshot> {
        maintenance::export(&self.pool).await
    }

    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()> {
        maintenance::import(&self.pool, snapshot).await
    }
}
