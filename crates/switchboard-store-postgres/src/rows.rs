//! Turning result rows back into domain values, and the column lists the queries select.
//!
//! Every stored value goes back through the domain's parsers, so a row that no longer satisfies
//! a rule (an enum text this version does not know, a malformed URL) surfaces as
//! `StoreError::Corrupt` naming the column rather than as a value the rest of the server
//! trusts.

use std::str::FromStr;

use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};
use switchboard_domain::{
    ApiToken, AuditEvent, ChatEvent, ChatMessage, Connector, ConnectorId, ConnectorName,
    ConnectorUrl, Conversation, Description, Email, Function, FunctionDefinition, FunctionVersion,
    Member, OrgSettings, OrgSlug, Organization, Session, Timestamp, TurnRecord, User,
};
use switchboard_store::{
    FunctionView, OAuthGrant, PendingAuthorization, StoreError, StoreResult, StoredChatModel,
    StoredOAuthClient,
};
use uuid::Uuid;

/// Reads column `col`, reporting a type mismatch as corrupt data.
pub(crate) fn get<'r, T>(row: &'r PgRow, col: &str) -> StoreResult<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

/// Parses stored text with the domain's parser.
pub(crate) fn parse<T>(col: &str, text: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("column {col} holds {text:?}: {e}")))
}

/// Reads a text column and parses it.
pub(crate) fn get_parsed<T>(row: &PgRow, col: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let text: String = get(row, col)?;
    parse(col, &text)
}

/// Reads a nullable text column and parses it.
fn get_parsed_opt<T>(row: &PgRow, col: &str) -> StoreResult<Option<T>>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let text: Option<String> = get(row, col)?;
    text.map(|t| parse(col, &t)).transpose()
}

fn get_time(row: &PgRow, col: &str) -> StoreResult<Timestamp> {
    get::<i64>(row, col).map(Timestamp::from_millis)
}

fn get_time_opt(row: &PgRow, col: &str) -> StoreResult<Option<Timestamp>> {
    Ok(get::<Option<i64>>(row, col)?.map(Timestamp::from_millis))
}

fn get_id<T: From<Uuid>>(row: &PgRow, col: &str) -> StoreResult<T> {
    get::<Uuid>(row, col).map(T::from)
}

fn get_id_opt<T: From<Uuid>>(row: &PgRow, col: &str) -> StoreResult<Option<T>> {
    Ok(get::<Option<Uuid>>(row, col)?.map(T::from))
}

fn get_definition(row: &PgRow, col: &str) -> StoreResult<FunctionDefinition> {
    let value: serde_json::Value = get(row, col)?;
    serde_json::from_value(value)
        .map_err(|e| StoreError::Corrupt(format!("column {col} is not a function definition: {e}")))
}

/// The columns [`user`] reads, selected from `users` as `u`.
pub(crate) const USER_COLUMNS: &str = "u.id AS user_id, u.email AS user_email, u.display_name AS user_display_name, \
     u.created_at AS user_created_at";

/// A user from [`USER_COLUMNS`].
pub(crate) fn user(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: get_id(row, "user_id")?,
        email: get_parsed_with(row, "user_email", Email::parse)?,
        display_name: get(row, "user_display_name")?,
        created_at: get_time(row, "user_created_at")?,
    })
}

/// The columns [`session`] reads, selected from `sessions` as `s`.
pub(crate) const SESSION_COLUMNS: &str =
    "s.token_hash, s.user_id, s.csrf_token, s.created_at, s.expires_at";

/// A session from [`SESSION_COLUMNS`].
pub(crate) fn session(row: &PgRow) -> StoreResult<Session> {
    Ok(Session {
        token_hash: get(row, "token_hash")?,
        user_id: get_id(row, "user_id")?,
        csrf_token: get(row, "csrf_token")?,
        created_at: get_time(row, "created_at")?,
        expires_at: get_time(row, "expires_at")?,
    })
}

/// The columns [`api_token`] reads, selected from `api_tokens` as `t`.
pub(crate) const API_TOKEN_COLUMNS: &str = "t.id, t.user_id, t.name, t.prefix, t.created_at, \
     t.expires_at, t.last_used_at, t.revoked_at";

/// An API token from [`API_TOKEN_COLUMNS`].
pub(crate) fn api_token(row: &PgRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: get_id(row, "id")?,
        user_id: get_id(row, "user_id")?,
        name: get(row, "name")?,
        prefix: get(row, "prefix")?,
        created_at: get_time(row, "created_at")?,
        expires_at: get_time(row, "expires_at")?,
        last_used_at: get_time_opt(row, "last_used_at")?,
        revoked_at: get_time_opt(row, "revoked_at")?,
    })
}

/// The columns [`organization`] reads, selected from `organizations` as `o`.
pub(crate) const ORG_COLUMNS: &str =
    "o.id, o.slug, o.name, o.new_functions, o.created_at, o.untrusted_content, o.sampling";

/// An organization from [`ORG_COLUMNS`].
pub(crate) fn organization(row: &PgRow) -> StoreResult<Organization> {
    Ok(Organization {
        id: get_id(row, "id")?,
        slug: get_parsed_with(row, "slug", OrgSlug::parse)?,
        name: get(row, "name")?,
        settings: OrgSettings {
            new_functions: get_parsed(row, "new_functions")?,
            untrusted_content: get_parsed(row, "untrusted_content")?,
            sampling: get(row, "sampling")?,
        },
        created_at: get_time(row, "created_at")?,
    })
}

/// The columns [`member`] reads, from `memberships` as `m` joined with `users` as `u`.
pub(crate) const MEMBER_COLUMNS: &str =
    "m.user_id, u.email, u.display_name, m.role, m.created_at AS joined_at";

/// A member from [`MEMBER_COLUMNS`].
pub(crate) fn member(row: &PgRow) -> StoreResult<Member> {
    Ok(Member {
        user_id: get_id(row, "user_id")?,
        email: get_parsed_with(row, "email", Email::parse)?,
        display_name: get(row, "display_name")?,
        role: get_parsed(row, "role")?,
        joined_at: get_time(row, "joined_at")?,
    })
}

/// The columns [`connector`] reads, selected from `connectors` as `c`. Whether a shared
/// credential exists is derived, so it can never disagree with the credentials table.
pub(crate) const CONNECTOR_COLUMNS: &str = "c.id, c.org_id, c.name, c.url, c.description, \
     c.status, c.last_error, c.auth_method, c.transport, c.protocol_version, c.created_at, \
     c.updated_at, c.credential_scope, c.auth_detail, EXISTS (SELECT 1 FROM connector_credentials k \
     WHERE k.connector_id = c.id AND k.user_id IS NULL) AS has_credential";

/// A connector from [`CONNECTOR_COLUMNS`].
pub(crate) fn connector(row: &PgRow) -> StoreResult<Connector> {
    let url: String = get(row, "url")?;
    let url = url::Url::parse(&url)
        .map_err(|e| StoreError::Corrupt(format!("column url holds {url:?}: {e}")))?;
    Ok(Connector {
        id: get_id(row, "id")?,
        org_id: get_id(row, "org_id")?,
        name: get_parsed_with(row, "name", ConnectorName::parse)?,
        url: ConnectorUrl::from_trusted(url),
        description: get::<Option<String>>(row, "description")?
            .map(|d| {
                Description::parse(&d)
                    .map_err(|e| StoreError::Corrupt(format!("column description: {e}")))
            })
            .transpose()?,
        status: get_parsed(row, "status")?,
        last_error: get(row, "last_error")?,
        auth_method: get_parsed(row, "auth_method")?,
        has_credential: get(row, "has_credential")?,
        credential_scope: get_parsed(row, "credential_scope")?,
        auth_detail: get(row, "auth_detail")?,
        transport: get_parsed_opt(row, "transport")?,
        protocol_version: get(row, "protocol_version")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

/// The columns [`oauth_client`] reads, unaliased.
pub(crate) const CLIENT_COLUMNS: &str = "id, connector_id, issuer, source, sealed, created_at";

/// An OAuth client registration from [`CLIENT_COLUMNS`].
pub(crate) fn oauth_client(row: &PgRow) -> StoreResult<StoredOAuthClient> {
    Ok(StoredOAuthClient {
        id: get_id(row, "id")?,
        connector: get_id(row, "connector_id")?,
        issuer: get(row, "issuer")?,
        source: get_parsed(row, "source")?,
        sealed: get(row, "sealed")?,
        created_at: get_time(row, "created_at")?,
    })
}

/// The columns [`oauth_grant`] reads, unaliased so they also serve `RETURNING` clauses.
pub(crate) const GRANT_COLUMNS: &str = "id, connector_id, user_id, issuer, status, reason, \
     sealed, expires_at, version, lease_holder, lease_until, created_at, updated_at";

/// An OAuth grant from [`GRANT_COLUMNS`].
pub(crate) fn oauth_grant(row: &PgRow) -> StoreResult<OAuthGrant> {
    Ok(OAuthGrant {
        id: get_id(row, "id")?,
        connector: get_id(row, "connector_id")?,
        holder: get_id_opt(row, "user_id")?,
        issuer: get(row, "issuer")?,
        status: get_parsed(row, "status")?,
        reason: get(row, "reason")?,
        sealed: get(row, "sealed")?,
        expires_at: get_time_opt(row, "expires_at")?,
        version: get(row, "version")?,
        lease_holder: get(row, "lease_holder")?,
        lease_until: get_time_opt(row, "lease_until")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

/// The columns [`pending`] reads, unaliased so they also serve `RETURNING` clauses.
pub(crate) const PENDING_COLUMNS: &str = "state_hash, org_id, connector_id, user_id, \
     holder_user_id, binding_hash, sealed, created_at, expires_at";

/// A pending authorization from [`PENDING_COLUMNS`].
pub(crate) fn pending(row: &PgRow) -> StoreResult<PendingAuthorization> {
    Ok(PendingAuthorization {
        state_hash: get(row, "state_hash")?,
        org: get_id(row, "org_id")?,
        connector: get_id(row, "connector_id")?,
        user: get_id(row, "user_id")?,
        holder: get_id_opt(row, "holder_user_id")?,
        binding_hash: get(row, "binding_hash")?,
        sealed: get(row, "sealed")?,
        created_at: get_time(row, "created_at")?,
        expires_at: get_time(row, "expires_at")?,
    })
}

fn get_parsed_with<T, E: std::fmt::Display>(
    row: &PgRow,
    col: &str,
    parser: impl Fn(&str) -> Result<T, E>,
) -> StoreResult<T> {
    let text: String = get(row, col)?;
    parser(&text).map_err(|e| StoreError::Corrupt(format!("column {col} holds {text:?}: {e}")))
}

/// The columns [`function`] reads, selected from `functions` as `f`.
pub(crate) const FUNCTION_COLUMNS: &str = "f.id, f.connector_id, f.definition, \
     f.definition_hash, f.approved_hash, f.review_state, f.floor, f.created_at, f.updated_at";

/// A function from [`FUNCTION_COLUMNS`].
pub(crate) fn function(row: &PgRow) -> StoreResult<Function> {
    Ok(Function {
        id: get_id(row, "id")?,
        connector_id: get_id(row, "connector_id")?,
        definition: get_definition(row, "definition")?,
        definition_hash: get(row, "definition_hash")?,
        approved_hash: get(row, "approved_hash")?,
        review_state: get_parsed(row, "review_state")?,
        floor: get_parsed(row, "floor")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

/// A function and a member's preference, from [`FUNCTION_COLUMNS`] and a nullable
/// `preference` column.
pub(crate) fn function_view(row: &PgRow) -> StoreResult<FunctionView> {
    Ok(FunctionView {
        function: function(row)?,
        preference: get_parsed_opt(row, "preference")?,
    })
}

/// A stored definition, from `hash`, `definition` and `first_seen_at`.
pub(crate) fn function_version(row: &PgRow) -> StoreResult<FunctionVersion> {
    Ok(FunctionVersion {
        hash: get(row, "hash")?,
        definition: get_definition(row, "definition")?,
        first_seen_at: get_time(row, "first_seen_at")?,
    })
}

/// The columns [`audit_event`] reads, selected from `audit_events` as `a`.
pub(crate) const AUDIT_COLUMNS: &str =
    "a.id, a.org_id, a.actor_id, a.action, a.target, a.detail, a.created_at";

/// An audit event from [`AUDIT_COLUMNS`].
pub(crate) fn audit_event(row: &PgRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: get_id(row, "id")?,
        org_id: get_id_opt(row, "org_id")?,
        actor_id: get_id_opt(row, "actor_id")?,
        action: get_parsed(row, "action")?,
        target: get(row, "target")?,
        detail: get(row, "detail")?,
        created_at: get_time(row, "created_at")?,
    })
}

/// The columns [`chat_model`] reads.
pub(crate) const CHAT_MODEL_COLUMNS: &str = "kind, base_url, model, sealed_key, updated_at";

/// A chat model from [`CHAT_MODEL_COLUMNS`].
pub(crate) fn chat_model(row: &PgRow) -> StoreResult<StoredChatModel> {
    Ok(StoredChatModel {
        kind: get_parsed(row, "kind")?,
        base_url: get(row, "base_url")?,
        model: get(row, "model")?,
        sealed_key: get(row, "sealed_key")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

/// A conversation's columns from `conversations` as `c`, with its connectors in order as an
/// array (`connectors`).
pub(crate) const CONVERSATION_SELECT: &str = "SELECT c.id, c.org_id, c.user_id, c.title, \
     c.created_at, c.updated_at, \
     ARRAY(SELECT cc.connector_id FROM conversation_connectors cc \
           WHERE cc.conversation_id = c.id ORDER BY cc.position) AS connectors \
     FROM conversations c";

/// A conversation from [`CONVERSATION_SELECT`].
pub(crate) fn conversation(row: &PgRow) -> StoreResult<Conversation> {
    Ok(Conversation {
        id: get_id(row, "id")?,
        org_id: get_id(row, "org_id")?,
        user_id: get_id(row, "user_id")?,
        title: get(row, "title")?,
        connectors: get::<Vec<Uuid>>(row, "connectors")?
            .into_iter()
            .map(ConnectorId)
            .collect(),
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

/// The columns [`turn`] reads, unaliased so they also serve `RETURNING` clauses.
pub(crate) const TURN_COLUMNS: &str = "id, conversation_id, org_id, user_id, status, state, \
     version, lease_until, created_at";

/// A turn from [`TURN_COLUMNS`].
pub(crate) fn turn(row: &PgRow) -> StoreResult<TurnRecord> {
    Ok(TurnRecord {
        id: get_id(row, "id")?,
        conversation_id: get_id(row, "conversation_id")?,
        org_id: get_id(row, "org_id")?,
        user_id: get_id(row, "user_id")?,
        status: get_parsed(row, "status")?,
        state: get(row, "state")?,
        version: get(row, "version")?,
        lease_until: get_time_opt(row, "lease_until")?,
        created_at: get_time(row, "created_at")?,
    })
}

/// The columns [`chat_message`] reads.
pub(crate) const MESSAGE_COLUMNS: &str = "seq, turn_id, body, created_at";

/// A history message from [`MESSAGE_COLUMNS`].
pub(crate) fn chat_message(row: &PgRow) -> StoreResult<ChatMessage> {
    Ok(ChatMessage {
        seq: get(row, "seq")?,
        turn_id: get_id(row, "turn_id")?,
        body: get(row, "body")?,
        created_at: get_time(row, "created_at")?,
    })
}

/// The columns [`chat_event`] reads.
pub(crate) const EVENT_COLUMNS: &str = "seq, turn_id, kind, data, created_at";

/// A stream event from [`EVENT_COLUMNS`].
pub(crate) fn chat_event(row: &PgRow) -> StoreResult<ChatEvent> {
    Ok(ChatEvent {
        seq: get(row, "seq")?,
        turn_id: get_id(row, "turn_id")?,
        kind: get(row, "kind")?,
        data: get(row, "data")?,
        created_at: get_time(row, "created_at")?,
    })
}
