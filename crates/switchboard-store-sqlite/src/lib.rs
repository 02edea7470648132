//! The SQLite backend of the [`Store`] trait: one embedded database file, the default.
//!
//! Every connection runs in WAL mode (readers never wait for the writer) with foreign keys
//! enforced, a busy timeout, and `synchronous = NORMAL` (durable across application crashes;
//! a power loss can lose the last commits but never corrupts the file). Every write runs in a
//! `BEGIN IMMEDIATE` transaction, which takes SQLite's single writer lock up front: two writers
//! then queue on the busy timeout instead of failing when one tries to upgrade a read lock, and
//! a check made inside the transaction (such as "an owner remains") cannot be raced.
//!
//! The chat's writes and lookups on the path of every turn have connections of their own
//! (`batch`): the writes a thread, the lookups read-only connections used on the caller's
//! thread. Everything else goes through sqlx's pool.
//!
//! Layout: one module per part of the trait; `rows` knows how values are laid out in rows,
//! `error` how sqlx errors become [`StoreError`]s.

mod accounts;
mod audit;
mod batch;
mod chat;
mod connectors;
mod error;
mod functions;
mod maintenance;
mod oauth;
mod orgs;
mod rows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row, Transaction};
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
use tempfile::TempDir;

use crate::batch::{Readers, Writer};
use crate::error::{DbResultExt, migrate_error};

/// The migrations in this crate's `migrations/` folder, compiled in.
static MIGRATOR: Migrator = sqlx::migrate!();

/// How long a connection waits for another's write lock before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read on the caller's thread (`batch::Readers`) waits for the database before
/// giving up with `Unavailable`: it holds that thread meanwhile, so not long. A reader waits
/// at all only while another connection recovers the database after a crash.
const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a caller waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections to a database file: several readers run at once in WAL mode; writers queue.
const FILE_CONNECTIONS: u32 = 8;

/// A [`Store`] kept in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The chat's writes, on a thread and connection of their own (see `batch`). Writes
    /// queue on SQLite's single writer lock either way, so one connection costs them nothing,
    /// and its page cache survives its own commits.
    chat_writer: Writer,
    /// The chat's reads on the path of every message, run on the caller's thread (see
    /// `batch::Readers`).
    chat_readers: Arc<Readers>,
    /// The temporary directory of a private database (`sqlite::memory:`), removed with the
    /// last copy of the store.
    _scratch: Option<Arc<TempDir>>,
}

/// What a connection of the pool reports about its settings, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `PRAGMA journal_mode`: `wal`.
    pub journal_mode: String,
    /// `PRAGMA foreign_keys`.
    pub foreign_keys: bool,
    /// `PRAGMA busy_timeout`, in milliseconds.
    pub busy_timeout_ms: i64,
    /// `PRAGMA synchronous`: 0 off, 1 normal, 2 full, 3 extra.
    pub synchronous: i64,
}

/// Whether a location asks for an in-memory database: a private one, see [`SqliteStore::open`].
fn is_memory(location: &str) -> bool {
    location == ":memory:" || location.contains(":memory:") || location.contains("mode=memory")
}

/// Begins a write transaction holding the writer lock (`BEGIN IMMEDIATE`).
pub(crate) async fn begin_write(pool: &SqlitePool) -> StoreResult<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await.db()
}

/// Begins a read transaction, so that several queries see one consistent state.
pub(crate) async fn begin_read(pool: &SqlitePool) -> StoreResult<Transaction<'static, Sqlite>> {
    pool.begin().await.db()
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url_or_path`: a `sqlite:` URL such as
    /// `sqlite://data/switchboard.db`, or a plain file path.
    ///
    /// `sqlite::memory:` opens a private database that lasts as long as the store. It is kept
    /// in a file of a temporary directory, removed when the store is dropped, rather than in
    /// memory: the chat's writer and the pool need two connections to the same database,
    /// which an in-memory database cannot give them.
    ///
    /// Does not apply migrations; call [`Store::migrate`] before use.
    pub async fn open(url_or_path: &str) -> StoreResult<Self> {
        let (options, scratch) = if is_memory(url_or_path) {
            let dir = tempfile::Builder::new()
                .prefix("switchboard-")
                .tempdir()
                .map_err(|e| StoreError::Backend(format!("cannot make a private database: {e}")))?;
            let options = SqliteConnectOptions::new().filename(dir.path().join("private.db"));
            (options, Some(Arc::new(dir)))
        } else if url_or_path.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url_or_path).map_err(|e| {
                StoreError::Backend(format!("invalid sqlite location {url_or_path:?}: {e}"))
            })?;
            (options, None)
        } else {
            (SqliteConnectOptions::new().filename(url_or_path), None)
        };
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal);
        let options = options.journal_mode(SqliteJournalMode::Wal);
        // A connection to a local file does not go away unnoticed, so it is not tested with
        // a round trip to its worker thread each time it is taken from the pool.
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_CONNECTIONS)
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .db()?;
        let chat_writer = Writer::start(options.get_filename(), BUSY_TIMEOUT).await?;
        let chat_readers = Arc::new(Readers::new(options.get_filename(), READER_BUSY_TIMEOUT));
        Ok(Self {
            pool,
            chat_writer,
            chat_readers,
            _scratch: scratch,
        })
    }

    /// Opens a private database (see [`SqliteStore::open`]) and applies the migrations: for
    /// tests.
    pub async fn open_in_memory() -> StoreResult<Self> {
        let store = Self::open("sqlite::memory:").await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Every table in the database (SQLite's own excluded) with its columns in order,
    /// sorted by table name. The shared test suite compares this with [`switchboard_store::SCHEMA`].
    pub async fn table_layout(&self) -> StoreResult<Vec<(String, Vec<String>)>> {
        maintenance::layout(&self.pool).await
    }

    /// The settings a pooled connection actually runs with.
    pub async fn connection_settings(&self) -> StoreResult<ConnectionSettings> {
        let mut conn = self.conn().await?;
        let mut pragma = async |name: &str| {
            sqlx::query(&format!("PRAGMA {name}"))
                .fetch_one(&mut *conn)
                .await
                .db()
        };
        let journal_mode: String = pragma("journal_mode").await?.try_get(0).db()?;
        let foreign_keys: i64 = pragma("foreign_keys").await?.try_get(0).db()?;
        let busy_timeout_ms: i64 = pragma("busy_timeout").await?.try_get(0).db()?;
        let synchronous: i64 = pragma("synchronous").await?.try_get(0).db()?;
        Ok(ConnectionSettings {
            journal_mode: journal_mode.to_ascii_lowercase(),
            foreign_keys: foreign_keys == 1,
            busy_timeout_ms,
            synchronous,
        })
    }

    /// Closes every connection; the store cannot be used afterwards.
    pub async fn close(&self) {
        self.chat_writer.close().await;
        self.chat_readers.close();
        self.pool.close().await;
    }

    async fn conn(&self) -> StoreResult<PoolConnection<Sqlite>> {
        self.pool.acquire().await.db()
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(migrate_error)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }

    async fn instance_setting(&self, key: &str) -> StoreResult<Option<String>> {
        accounts::instance_setting(&self.pool, key).await
    }

    async fn set_instance_setting(&self, key: &str, value: Option<&str>) -> StoreResult<()> {
        accounts::set_instance_setting(&self.pool, key, value).await
    }

    async fn user_count(&self) -> StoreResult<u64> {
        accounts::user_count(&mut *self.conn().await?).await
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
        accounts::user(&mut *self.conn().await?, id).await
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
        orgs::organization(&mut *self.conn().await?, id).await
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
        orgs::role_of(&mut *self.conn().await?, org, user).await
    }

    async fn member(&self, org: OrgId, user: UserId) -> StoreResult<Member> {
        orgs::member(&mut *self.conn().await?, org, user).await
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
        connectors::create(&self.pool, connector, audit).await
    }

    async fn list_connectors(&self, org: OrgId, page: PageRequest) -> StoreResult<Page<Connector>> {
        connectors::list(&self.pool, org, page).await
    }

    async fn connector(&self, org: OrgId, id: ConnectorId) -> StoreResult<Connector> {
        connectors::connector(&mut *self.conn().await?, org, id).await
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
        connectors::update(&self.pool, org, id, patch, audit).await
    }

    async fn delete_connector(
        &self,
        org: OrgId,
        id: ConnectorId,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        connectors::delete(&self.pool, org, id, audit).await
    }

    async fn connector_credential(
        &self,
        org: OrgId,
        id: ConnectorId,
        holder: Option<UserId>,
    ) -> StoreResult<Option<StoredCredential>> {
        connectors::credential(&self.pool, org, id, holder).await
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
        oauth::client(&self.pool, org, connector, issuer).await
    }

    async fn put_oauth_client(
        &self,
        org: OrgId,
        client: &StoredOAuthClient,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        oauth::put_client(&self.pool, org, client, audit).await
    }

    async fn delete_oauth_clients(&self, org: OrgId, connector: ConnectorId) -> StoreResult<u64> {
        oauth::delete_clients(&self.pool, org, connector).await
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
        oauth::grant(&self.pool, org, connector, holder).await
    }

    async fn oauth_grant_by_id(&self, grant: GrantId) -> StoreResult<OAuthGrant> {
        oauth::grant_by_id(&self.pool, grant).await
    }

    async fn oauth_grants_of_connector(
        &self,
        org: OrgId,
        connector: ConnectorId,
    ) -> StoreResult<Vec<OAuthGrant>> {
        oauth::grants_of_connector(&self.pool, org, connector).await
    }

    async fn save_oauth_grant(
        &self,
        org: OrgId,
        grant: &NewGrant,
        audit: &NewAuditEvent,
    ) -> StoreResult<OAuthGrant> {
        oauth::save_grant(&self.pool, org, grant, audit).await
    }

    async fn claim_grant_refresh(
        &self,
        grant: GrantId,
        lease_holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<OAuthGrant>> {
        oauth::claim_refresh(&self.pool, grant, lease_holder, now, until).await
    }

    async fn finish_grant_refresh(
        &self,
        grant: GrantId,
        lease_holder: &str,
        sealed: &str,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        oauth::finish_refresh(&self.pool, grant, lease_holder, sealed, expires_at, now).await
    }

    async fn release_grant_refresh(&self, grant: GrantId, lease_holder: &str) -> StoreResult<()> {
        oauth::release_refresh(&self.pool, grant, lease_holder).await
    }

    async fn revoke_oauth_grant(
        &self,
        grant: GrantId,
        version: i64,
        reason: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        oauth::revoke_grant(&self.pool, grant, version, reason, now, audit).await
    }

    async fn delete_oauth_grant(
        &self,
        org: OrgId,
        connector: ConnectorId,
        holder: Option<UserId>,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        oauth::delete_grant(&self.pool, org, connector, holder, audit).await
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
        functions::sync(&self.pool, org, connector, found, new_functions, now, audit).await
    }

    async fn list_functions_page(
        &self,
        org: OrgId,
        connector: ConnectorId,
        member: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<FunctionView>> {
        functions::list_page(&self.pool, org, connector, member, page).await
    }

    async fn function(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
        member: UserId,
    ) -> StoreResult<FunctionView> {
        functions::one(&self.pool, org, connector, name, member).await
    }

    async fn function_versions(
        &self,
        org: OrgId,
        connector: ConnectorId,
        name: &str,
    ) -> StoreResult<Vec<FunctionVersion>> {
        functions::versions(&self.pool, org, connector, name).await
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
        functions::approve(&self.pool, org, connector, name, hash, now, audit).await
    }

    async fn chat_model(&self, org: OrgId) -> StoreResult<Option<StoredChatModel>> {
        chat::chat_model(&mut *self.pool.acquire().await.db()?, org).await
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
        chat::conversation(&self.chat_readers, org, user, id)
    }

    async fn conversation_org(&self, user: UserId, id: ConversationId) -> StoreResult<OrgId> {
        chat::conversation_org(&self.chat_readers, user, id)
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
        chat::chat_messages(&self.chat_readers, conversation)
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
        chat::start_turn(&self.chat_writer, turn, events, policy_generation).await
    }

    async fn turn(&self, id: TurnId) -> StoreResult<TurnRecord> {
        chat::turn(&self.pool, id).await
    }

    async fn open_turn(&self, conversation: ConversationId) -> StoreResult<Option<TurnRecord>> {
        chat::open_turn(&self.pool, conversation).await
    }

    async fn save_turn(&self, save: &TurnSave<'_>) -> StoreResult<Option<Vec<ChatEvent>>> {
        chat::save_turn(&self.chat_writer, save).await
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
        chat::append_chat_events(&self.chat_writer, conversation, turn, events).await
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
        audit::append(&mut *self.conn().await?, event).await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        audit::list(&self.pool, filter, page).await
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
