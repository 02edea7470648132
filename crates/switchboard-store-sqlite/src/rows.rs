//! Column lists and row decoders shared by the queries: one place that knows how a domain
//! value is laid out in SQLite.

use std::str::FromStr;

use rusqlite::types::Value;
use sqlx::Row;
use sqlx::sqlite::{Sqlite, SqliteRow};
use switchboard_domain::{
    ApiToken, ApiTokenId, AuditEvent, AuditEventId, ChatEvent, ChatMessage, Connector, ConnectorId,
    ConnectorName, ConnectorUrl, Conversation, ConversationId, Description, Email, Function,
    FunctionDefinition, FunctionId, GrantId, Member, OAuthClientId, OrgId, OrgSettings, OrgSlug,
    Organization, Session, Timestamp, TurnId, TurnRecord, User, UserId, ValidationError,
};
use switchboard_store::{
    FunctionView, OAuthGrant, PendingAuthorization, StoreError, StoreResult, StoredChatModel,
    StoredOAuthClient,
};
use uuid::Uuid;

use crate::batch;
use crate::error::{DbResultExt, corrupt};

/// A user's columns, read from a table aliased `u`.
pub(crate) const USER_COLS: &str = "u.id AS u_id, u.email AS u_email, \
     u.display_name AS u_display_name, u.created_at AS u_created_at";

/// An organization's columns, read from a table aliased `o`.
pub(crate) const ORG_COLS: &str = "o.id AS o_id, o.slug AS o_slug, o.name AS o_name, \
     o.new_functions AS o_new_functions, o.created_at AS o_created_at, \
     o.untrusted_content AS o_untrusted_content, o.sampling AS o_sampling";

/// An API token's columns (without its secret hash), read from a table aliased `t`.
pub(crate) const TOKEN_COLS: &str = "t.id AS t_id, t.user_id AS t_user_id, t.name AS t_name, \
     t.prefix AS t_prefix, t.created_at AS t_created_at, t.expires_at AS t_expires_at, \
     t.last_used_at AS t_last_used_at, t.revoked_at AS t_revoked_at";

/// A connector's columns from a table aliased `c`, with whether it has a shared credential.
pub(crate) const CONNECTOR_SELECT: &str = "SELECT c.id, c.org_id, c.name, c.url, \
     c.description, c.status, c.last_error, c.auth_method, c.transport, c.protocol_version, \
     c.created_at, c.updated_at, c.credential_scope, c.auth_detail, \
     EXISTS (SELECT 1 FROM connector_credentials k \
             WHERE k.connector_id = c.id AND k.user_id IS NULL) AS has_credential \
     FROM connectors c";

/// An OAuth client registration's columns.
pub(crate) const CLIENT_COLS: &str = "id, connector_id, issuer, source, sealed, created_at";

/// An OAuth grant's columns, unaliased so they also serve `RETURNING` clauses.
pub(crate) const GRANT_COLS: &str = "id, connector_id, user_id, issuer, status, reason, sealed, \
     expires_at, version, lease_holder, lease_until, created_at, updated_at";

/// A pending authorization's columns, unaliased so they also serve `RETURNING` clauses.
pub(crate) const PENDING_COLS: &str = "state_hash, org_id, connector_id, user_id, \
     holder_user_id, binding_hash, sealed, created_at, expires_at";

/// A function's columns, read from a table aliased `f`.
pub(crate) const FUNCTION_COLS: &str = "f.id, f.connector_id, f.definition, \
     f.definition_hash, f.approved_hash, f.review_state, f.floor, f.created_at, f.updated_at";

/// The join that adds one member's preference (`p.preference`) to functions aliased `f`; the
/// member's id is its one parameter.
pub(crate) const PREFERENCE_JOIN: &str = "LEFT JOIN member_preferences p \
     ON p.function_id = f.id AND p.user_id = ?";

/// The audit log's columns.
pub(crate) const AUDIT_COLS: &str = "id, org_id, actor_id, action, target, detail, created_at";

/// Reads one column, mapping a decoding failure to `Corrupt`.
pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).db()
}

/// A row a decoder reads: a pooled query's, or a batch's ([`batch::Row`]), so that the rows
/// the chat reads on its own connections decode as the pool's do.
pub(crate) trait Columns {
    /// An integer column.
    fn int(&self, column: &str) -> StoreResult<i64>;
    /// A UUID column (16 bytes).
    fn uuid(&self, column: &str) -> StoreResult<Uuid>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;

    /// A text column.
    fn text(&self, column: &str) -> StoreResult<String> {
        self.opt_text(column)?
            .ok_or_else(|| corrupt(column, "NULL where text belongs"))
    }

    /// A millisecond timestamp.
    fn time(&self, column: &str) -> StoreResult<Timestamp> {
        self.int(column).map(Timestamp::from_millis)
    }

    /// A JSON text column, read into a typed value.
    fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        serde_json::from_str(&self.text(column)?).map_err(|e| corrupt(column, e))
    }
}

impl Columns for SqliteRow {
    fn int(&self, column: &str) -> StoreResult<i64> {
        get(self, column)
    }

    fn uuid(&self, column: &str) -> StoreResult<Uuid> {
        get(self, column)
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        get(self, column)
    }
}

impl Columns for batch::Row {
    fn int(&self, column: &str) -> StoreResult<i64> {
        match self.value(column) {
            Some(Value::Integer(n)) => Ok(*n),
            Some(Value::Null) | None => Err(absent(column)),
            Some(other) => Err(corrupt(column, format!("{other:?} is not an integer"))),
        }
    }

    fn uuid(&self, column: &str) -> StoreResult<Uuid> {
        match self.value(column) {
            Some(Value::Blob(bytes)) => Uuid::from_slice(bytes).map_err(|e| corrupt(column, e)),
            Some(Value::Null) | None => Err(absent(column)),
            Some(other) => Err(corrupt(column, format!("{other:?} is not a UUID"))),
        }
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        match self.value(column) {
            Some(Value::Text(text)) => Ok(Some(text.clone())),
            Some(Value::Null) => Ok(None),
            None => Err(absent(column)),
            Some(other) => Err(corrupt(column, format!("{other:?} is not text"))),
        }
    }
}

/// A value a batch's row lacks: the query's fault, not the data's.
fn absent(column: &str) -> StoreError {
    StoreError::Backend(format!("the batch's {column} is missing"))
}

/// Reads a millisecond timestamp.
pub(crate) fn ts(row: &SqliteRow, column: &str) -> StoreResult<Timestamp> {
    get::<i64>(row, column).map(Timestamp::from_millis)
}

/// Reads a nullable millisecond timestamp.
pub(crate) fn opt_ts(row: &SqliteRow, column: &str) -> StoreResult<Option<Timestamp>> {
    Ok(get::<Option<i64>>(row, column)?.map(Timestamp::from_millis))
}

/// Parses stored text with a domain `FromStr`, mapping a failure to `Corrupt`.
pub(crate) fn parse<T>(what: &str, raw: &str) -> StoreResult<T>
where
    T: FromStr<Err = ValidationError>,
{
    raw.parse()
        .map_err(|e: ValidationError| corrupt(what, format!("{raw:?}: {}", e.message)))
}

/// Reads a text column and parses it into a domain enum.
pub(crate) fn enum_col<T>(row: &SqliteRow, column: &str) -> StoreResult<T>
where
    T: FromStr<Err = ValidationError>,
{
    parse(column, &get::<String>(row, column)?)
}

/// Reads a JSON text column into a typed value.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    column: &str,
) -> StoreResult<T> {
    let raw: String = get(row, column)?;
    serde_json::from_str(&raw).map_err(|e| corrupt(column, e))
}

/// Reads a nullable JSON text column into a typed value.
pub(crate) fn opt_json_col<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    column: &str,
) -> StoreResult<Option<T>> {
    match get::<Option<String>>(row, column)? {
        Some(raw) => serde_json::from_str(&raw)
            .map(Some)
            .map_err(|e| corrupt(column, e)),
        None => Ok(None),
    }
}

/// Serializes a value for a JSON text column.
pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| switchboard_store::StoreError::Backend(format!("{what}: {e}")))
}

/// Decodes [`USER_COLS`].
pub(crate) fn user(row: &SqliteRow) -> StoreResult<User> {
    let email: String = get(row, "u_email")?;
    Ok(User {
        id: UserId(get(row, "u_id")?),
        email: Email::parse(&email).map_err(|e| corrupt("users.email", e))?,
        display_name: get(row, "u_display_name")?,
        created_at: ts(row, "u_created_at")?,
    })
}

/// Decodes [`ORG_COLS`].
pub(crate) fn organization(row: &SqliteRow) -> StoreResult<Organization> {
    let slug: String = get(row, "o_slug")?;
    Ok(Organization {
        id: OrgId(get(row, "o_id")?),
        slug: OrgSlug::parse(&slug).map_err(|e| corrupt("organizations.slug", e))?,
        name: get(row, "o_name")?,
        settings: OrgSettings {
            new_functions: enum_col(row, "o_new_functions")?,
            untrusted_content: enum_col(row, "o_untrusted_content")?,
            sampling: get(row, "o_sampling")?,
        },
        created_at: ts(row, "o_created_at")?,
    })
}

/// Decodes [`USER_COLS`] plus the membership's `role` and `joined_at`.
pub(crate) fn member(row: &SqliteRow) -> StoreResult<Member> {
    let user = user(row)?;
    Ok(Member {
        user_id: user.id,
        email: user.email,
        display_name: user.display_name,
        role: enum_col(row, "role")?,
        joined_at: ts(row, "joined_at")?,
    })
}

/// Decodes a session's own columns.
pub(crate) fn session(row: &SqliteRow) -> StoreResult<Session> {
    Ok(Session {
        token_hash: get(row, "token_hash")?,
        user_id: UserId(get(row, "user_id")?),
        csrf_token: get(row, "csrf_token")?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
    })
}

/// Decodes [`TOKEN_COLS`].
pub(crate) fn api_token(row: &SqliteRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: ApiTokenId(get(row, "t_id")?),
        user_id: UserId(get(row, "t_user_id")?),
        name: get(row, "t_name")?,
        prefix: get(row, "t_prefix")?,
        created_at: ts(row, "t_created_at")?,
        expires_at: ts(row, "t_expires_at")?,
        last_used_at: opt_ts(row, "t_last_used_at")?,
        revoked_at: opt_ts(row, "t_revoked_at")?,
    })
}

/// Decodes [`CONNECTOR_SELECT`].
pub(crate) fn connector(row: &SqliteRow) -> StoreResult<Connector> {
    let name: String = get(row, "name")?;
    let url: String = get(row, "url")?;
    let url = url::Url::parse(&url).map_err(|e| corrupt("connectors.url", e))?;
    let description = match get::<Option<String>>(row, "description")? {
        Some(d) => Some(Description::parse(&d).map_err(|e| corrupt("connectors.description", e))?),
        None => None,
    };
    let transport = match get::<Option<String>>(row, "transport")? {
        Some(t) => Some(parse("transport", &t)?),
        None => None,
    };
    Ok(Connector {
        id: ConnectorId(get(row, "id")?),
        org_id: OrgId(get(row, "org_id")?),
        name: ConnectorName::parse(&name).map_err(|e| corrupt("connectors.name", e))?,
        url: ConnectorUrl::from_trusted(url),
        description,
        status: enum_col(row, "status")?,
        last_error: get(row, "last_error")?,
        auth_method: enum_col(row, "auth_method")?,
        has_credential: get(row, "has_credential")?,
        credential_scope: enum_col(row, "credential_scope")?,
        auth_detail: opt_json_col(row, "auth_detail")?,
        transport,
        protocol_version: get(row, "protocol_version")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

/// Decodes [`CLIENT_COLS`].
pub(crate) fn oauth_client(row: &SqliteRow) -> StoreResult<StoredOAuthClient> {
    Ok(StoredOAuthClient {
        id: OAuthClientId(get(row, "id")?),
        connector: ConnectorId(get(row, "connector_id")?),
        issuer: get(row, "issuer")?,
        source: enum_col(row, "source")?,
        sealed: get(row, "sealed")?,
        created_at: ts(row, "created_at")?,
    })
}

/// Decodes [`GRANT_COLS`].
pub(crate) fn oauth_grant(row: &SqliteRow) -> StoreResult<OAuthGrant> {
    Ok(OAuthGrant {
        id: GrantId(get(row, "id")?),
        connector: ConnectorId(get(row, "connector_id")?),
        holder: get::<Option<Uuid>>(row, "user_id")?.map(UserId),
        issuer: get(row, "issuer")?,
        status: enum_col(row, "status")?,
        reason: get(row, "reason")?,
        sealed: get(row, "sealed")?,
        expires_at: opt_ts(row, "expires_at")?,
        version: get(row, "version")?,
        lease_holder: get(row, "lease_holder")?,
        lease_until: opt_ts(row, "lease_until")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

/// Decodes [`PENDING_COLS`].
pub(crate) fn pending(row: &SqliteRow) -> StoreResult<PendingAuthorization> {
    Ok(PendingAuthorization {
        state_hash: get(row, "state_hash")?,
        org: OrgId(get(row, "org_id")?),
        connector: ConnectorId(get(row, "connector_id")?),
        user: UserId(get(row, "user_id")?),
        holder: get::<Option<Uuid>>(row, "holder_user_id")?.map(UserId),
        binding_hash: get(row, "binding_hash")?,
        sealed: get(row, "sealed")?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
    })
}

/// Decodes [`FUNCTION_COLS`].
pub(crate) fn function(row: &SqliteRow) -> StoreResult<Function> {
    Ok(Function {
        id: FunctionId(get(row, "id")?),
        connector_id: ConnectorId(get(row, "connector_id")?),
        definition: json_col::<FunctionDefinition>(row, "definition")?,
        definition_hash: get(row, "definition_hash")?,
        approved_hash: get(row, "approved_hash")?,
        review_state: enum_col(row, "review_state")?,
        floor: enum_col(row, "floor")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

/// Decodes [`FUNCTION_COLS`] plus `p.preference` from [`PREFERENCE_JOIN`].
pub(crate) fn function_view(row: &SqliteRow) -> StoreResult<FunctionView> {
    let preference = match get::<Option<String>>(row, "preference")? {
        Some(p) => Some(parse("preference", &p)?),
        None => None,
    };
    Ok(FunctionView {
        function: function(row)?,
        preference,
    })
}

/// Decodes [`AUDIT_COLS`].
pub(crate) fn audit_event(row: &SqliteRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: AuditEventId(get(row, "id")?),
        org_id: get::<Option<Uuid>>(row, "org_id")?.map(OrgId),
        actor_id: get::<Option<Uuid>>(row, "actor_id")?.map(UserId),
        action: enum_col(row, "action")?,
        target: get(row, "target")?,
        detail: json_col(row, "detail")?,
        created_at: ts(row, "created_at")?,
    })
}

/// A chat model's columns.
pub(crate) const CHAT_MODEL_COLS: &str = "kind, base_url, model, sealed_key, updated_at";

/// Decodes [`CHAT_MODEL_COLS`].
pub(crate) fn chat_model(row: &SqliteRow) -> StoreResult<StoredChatModel> {
    Ok(StoredChatModel {
        kind: enum_col(row, "kind")?,
        base_url: get(row, "base_url")?,
        model: get(row, "model")?,
        sealed_key: get(row, "sealed_key")?,
        updated_at: ts(row, "updated_at")?,
    })
}

/// A conversation's columns from a table aliased `c`, with its connectors in order as one
/// comma-separated list of hex ids (`connectors`, NULL when there are none).
pub(crate) const CONVERSATION_SELECT: &str = "SELECT c.id, c.org_id, c.user_id, c.title, \
     c.created_at, c.updated_at, \
     (SELECT group_concat(hex(cc.connector_id), ',' ORDER BY cc.position) \
      FROM conversation_connectors cc WHERE cc.conversation_id = c.id) AS connectors \
     FROM conversations c";

/// Decodes [`CONVERSATION_SELECT`].
pub(crate) fn conversation(row: &impl Columns) -> StoreResult<Conversation> {
    let connectors = match row.opt_text("connectors")? {
        Some(list) => list
            .split(',')
            .map(|hex| {
                Uuid::try_parse(hex)
                    .map(ConnectorId)
                    .map_err(|e| corrupt("conversation_connectors.connector_id", e))
            })
            .collect::<StoreResult<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(Conversation {
        id: ConversationId(row.uuid("id")?),
        org_id: OrgId(row.uuid("org_id")?),
        user_id: UserId(row.uuid("user_id")?),
        title: row.text("title")?,
        connectors,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A turn's columns, unaliased so they also serve `RETURNING` clauses.
pub(crate) const TURN_COLS: &str = "id, conversation_id, org_id, user_id, status, state, \
     version, lease_until, created_at";

/// Decodes [`TURN_COLS`].
pub(crate) fn turn(row: &SqliteRow) -> StoreResult<TurnRecord> {
    Ok(TurnRecord {
        id: TurnId(get(row, "id")?),
        conversation_id: ConversationId(get(row, "conversation_id")?),
        org_id: OrgId(get(row, "org_id")?),
        user_id: UserId(get(row, "user_id")?),
        status: enum_col(row, "status")?,
        state: json_col(row, "state")?,
        version: get(row, "version")?,
        lease_until: opt_ts(row, "lease_until")?,
        created_at: ts(row, "created_at")?,
    })
}

/// A history message's columns.
pub(crate) const MESSAGE_COLS: &str = "seq, turn_id, body, created_at";

/// Decodes [`MESSAGE_COLS`].
pub(crate) fn chat_message(row: &impl Columns) -> StoreResult<ChatMessage> {
    Ok(ChatMessage {
        seq: row.int("seq")?,
        turn_id: TurnId(row.uuid("turn_id")?),
        body: row.json("body")?,
        created_at: row.time("created_at")?,
    })
}

/// A stream event's columns.
pub(crate) const EVENT_COLS: &str = "seq, turn_id, kind, data, created_at";

/// Decodes [`EVENT_COLS`].
pub(crate) fn chat_event(row: &SqliteRow) -> StoreResult<ChatEvent> {
    Ok(ChatEvent {
        seq: get(row, "seq")?,
        turn_id: TurnId(get(row, "turn_id")?),
        kind: get(row, "kind")?,
        data: json_col(row, "data")?,
        created_at: ts(row, "created_at")?,
    })
}
