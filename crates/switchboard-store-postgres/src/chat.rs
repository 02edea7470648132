//! Chat: the organization's language model, members' conversations, turns saved
//! compare-and-swap on their version, and the numbered history and event stream.
//!
//! Several replicas write at once, so:
//! - Sequence numbers come from counters on the conversation's row (`last_message_seq`,
//!   `last_event_seq`), advanced by an `UPDATE … RETURNING` in the transaction that appends.
//!   The row lock that update takes is held until commit, so appenders to one conversation
//!   queue and the numbers they get are contiguous; a rolled-back transaction gives its numbers
//!   back.
//! - Writes that touch both lock the conversation's row before the turn's (and deleting a
//!   conversation locks it before cascading to its turns), so they cannot deadlock.
//! - A save is `UPDATE … WHERE version = $n`: under READ COMMITTED a second save of the same
//!   turn waits for the first to commit, re-checks its `WHERE` against the new row and matches
//!   nothing.
//! - Claiming stalled turns locks candidates with `FOR NO KEY UPDATE SKIP LOCKED`, so
//!   concurrent claimers split the turns between them instead of waiting or claiming twice.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use switchboard_domain::{
    ChatEvent, ChatMessage, ConnectorId, Conversation, ConversationId, NewAuditEvent, OrgId,
    Timestamp, TurnId, TurnRecord, TurnStatus, UserId,
};
use switchboard_store::{
    ChatCatalog, ConversationPatch, NewChatEvent, Page, PageRequest, StoreError, StoreResult,
    StoredChatModel, TurnSave,
};
use uuid::Uuid;

use crate::audit::append;
use crate::connectors::{check_member, check_scope};
use crate::error::{backend, unique_violation};
use crate::orgs::fetch_organization;
use crate::rows::{
    self, CHAT_MODEL_COLUMNS, CONNECTOR_COLUMNS, CONVERSATION_SELECT, EVENT_COLUMNS,
    FUNCTION_COLUMNS, MESSAGE_COLUMNS, TURN_COLUMNS,
};

/// The partial unique index that allows one turn per conversation that has not ended.
const OPEN_TURN_KEY: &str = "chat_turns_open_key";

fn turn_open() -> StoreError {
    StoreError::conflict("turn", "the conversation already has a turn in progress")
}

// ---- the organization's model -------------------------------------------------------------

pub(crate) async fn chat_model(
    conn: &mut PgConnection,
    org: OrgId,
) -> StoreResult<Option<StoredChatModel>> {
    let row = sqlx::query(&format!(
        "SELECT {CHAT_MODEL_COLUMNS} FROM chat_models WHERE org_id = $1"
    ))
    .bind(org.0)
    .fetch_optional(conn)
    .await
    .map_err(backend)?;
    row.as_ref().map(rows::chat_model).transpose()
}

pub(crate) async fn set_chat_model(
    pool: &PgPool,
    org: OrgId,
    model: Option<&StoredChatModel>,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // FOR KEY SHARE keeps the organization from being deleted before the insert below, which
    // would otherwise fail on the foreign key instead of saying `NotFound`.
    sqlx::query_scalar::<_, i32>("SELECT 1 FROM organizations WHERE id = $1 FOR KEY SHARE")
        .bind(org.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("organization"))?;
    let query = match model {
        Some(m) => sqlx::query(
            "INSERT INTO chat_models (org_id, kind, base_url, model, sealed_key, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id) DO UPDATE SET kind = EXCLUDED.kind, \
             base_url = EXCLUDED.base_url, model = EXCLUDED.model, \
             sealed_key = EXCLUDED.sealed_key, updated_at = EXCLUDED.updated_at",
        )
        .bind(org.0)
        .bind(m.kind.as_str())
        .bind(&m.base_url)
        .bind(&m.model)
        .bind(m.sealed_key.as_deref())
        .bind(m.updated_at.millis()),
        None => sqlx::query("DELETE FROM chat_models WHERE org_id = $1").bind(org.0),
    };
    query.execute(&mut *tx).await.map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}

// ---- conversations ------------------------------------------------------------------------

/// Fails with `NotFound("conversation")` unless conversation `id` is `user`'s in `org`.
/// With `lock`, also locks its row (see the module documentation for the order).
async fn check_conversation(
    conn: &mut PgConnection,
    org: OrgId,
    user: UserId,
    id: ConversationId,
    lock: bool,
) -> StoreResult<()> {
    let sql = format!(
        "SELECT 1 FROM conversations WHERE id = $1 AND org_id = $2 AND user_id = $3{}",
        if lock { " FOR NO KEY UPDATE" } else { "" }
    );
    sqlx::query_scalar::<_, i32>(&sql)
        .bind(id.0)
        .bind(org.0)
        .bind(user.0)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .map(|_| ())
        .ok_or(StoreError::NotFound("conversation"))
}

/// Reads one of `user`'s conversations.
async fn fetch_conversation(
    conn: &mut PgConnection,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<Conversation> {
    let row = sqlx::query(&format!(
        "{CONVERSATION_SELECT} WHERE c.id = $1 AND c.org_id = $2 AND c.user_id = $3"
    ))
    .bind(id.0)
    .bind(org.0)
    .bind(user.0)
    .fetch_optional(conn)
    .await
    .map_err(backend)?
    .ok_or(StoreError::NotFound("conversation"))?;
    rows::conversation(&row)
}

/// Replaces a conversation's connectors with `connectors`, each checked to be `org`'s (and
/// held against deletion until commit); a connector named twice is kept at its first place.
async fn put_connectors(
    conn: &mut PgConnection,
    org: OrgId,
    conversation: ConversationId,
    connectors: &[ConnectorId],
) -> StoreResult<()> {
    let mut seen = HashSet::new();
    let ids: Vec<Uuid> = connectors
        .iter()
        .filter(|id| seen.insert(**id))
        .map(|id| id.0)
        .collect();
    for id in &ids {
        check_scope(&mut *conn, org, ConnectorId(*id), true).await?;
    }
    sqlx::query("DELETE FROM conversation_connectors WHERE conversation_id = $1")
        .bind(conversation.0)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    // Positions count from 0 in list order (WITH ORDINALITY counts from 1).
    sqlx::query(
        "INSERT INTO conversation_connectors (conversation_id, connector_id, position) \
         SELECT $1, c.id, c.n - 1 FROM UNNEST($2::uuid[]) WITH ORDINALITY AS c (id, n)",
    )
    .bind(conversation.0)
    .bind(&ids)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn create_conversation(
    pool: &PgPool,
    conversation: &Conversation,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Held until commit: a member removed meanwhile takes their conversations with them.
    check_member(&mut tx, conversation.org_id, conversation.user_id).await?;
    sqlx::query(
        "INSERT INTO conversations (id, org_id, user_id, title, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(conversation.id.0)
    .bind(conversation.org_id.0)
    .bind(conversation.user_id.0)
    .bind(&conversation.title)
    .bind(conversation.created_at.millis())
    .bind(conversation.updated_at.millis())
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if unique_violation(&e) == Some("conversations_pkey") {
            StoreError::conflict("id", "a conversation with this id already exists")
        } else {
            backend(e)
        }
    })?;
    put_connectors(
        &mut tx,
        conversation.org_id,
        conversation.id,
        &conversation.connectors,
    )
    .await?;
    tx.commit().await.map_err(backend)
}

pub(crate) async fn conversation(
    pool: &PgPool,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<Conversation> {
    fetch_conversation(&mut *pool.acquire().await.map_err(backend)?, org, user, id).await
}

pub(crate) async fn conversation_org(
    pool: &PgPool,
    user: UserId,
    id: ConversationId,
) -> StoreResult<OrgId> {
    let org: Option<Uuid> =
        sqlx::query_scalar("SELECT org_id FROM conversations WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(pool)
            .await
            .map_err(backend)?;
    org.map(OrgId).ok_or(StoreError::NotFound("conversation"))
}

pub(crate) async fn list_conversations(
    pool: &PgPool,
    org: OrgId,
    user: UserId,
    page: PageRequest,
) -> StoreResult<Page<Conversation>> {
    // Keyset paging on (updated_at, id), descending: the cursor's own values are looked up
    // within the same owner, so a cursor from someone else's list finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND (c.updated_at, c.id) < (SELECT k.updated_at, k.id FROM conversations k \
               WHERE k.id = $4 AND k.org_id = $1 AND k.user_id = $2)"
        }
        None => "",
    };
    let sql = format!(
        "{CONVERSATION_SELECT} WHERE c.org_id = $1 AND c.user_id = $2{cursor} \
         ORDER BY c.updated_at DESC, c.id DESC LIMIT $3"
    );
    let mut query = sqlx::query(&sql)
        .bind(org.0)
        .bind(user.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let found = query.fetch_all(pool).await.map_err(backend)?;
    let items = found
        .iter()
        .map(rows::conversation)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page.limit, |c| c.id.0))
}

pub(crate) async fn update_conversation(
    pool: &PgPool,
    org: OrgId,
    user: UserId,
    id: ConversationId,
    patch: &ConversationPatch,
) -> StoreResult<Conversation> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let done = sqlx::query(
        "UPDATE conversations SET title = COALESCE($4, title), \
         updated_at = GREATEST(updated_at, $5) \
         WHERE id = $1 AND org_id = $2 AND user_id = $3",
    )
    .bind(id.0)
    .bind(org.0)
    .bind(user.0)
    .bind(patch.title.as_deref())
    .bind(patch.now.map(Timestamp::millis))
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    if let Some(connectors) = &patch.connectors {
        put_connectors(&mut tx, org, id, connectors).await?;
    }
    let conversation = fetch_conversation(&mut tx, org, user, id).await?;
    tx.commit().await.map_err(backend)?;
    Ok(conversation)
}

pub(crate) async fn delete_conversation(
    pool: &PgPool,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<()> {
    // Turns, messages, events and the connector list go with it by ON DELETE CASCADE.
    let done =
        sqlx::query("DELETE FROM conversations WHERE id = $1 AND org_id = $2 AND user_id = $3")
            .bind(id.0)
            .bind(org.0)
            .bind(user.0)
            .execute(pool)
            .await
            .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    Ok(())
}

pub(crate) async fn chat_messages(
    pool: &PgPool,
    conversation: ConversationId,
) -> StoreResult<Vec<ChatMessage>> {
    let found = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE conversation_id = $1 ORDER BY seq"
    ))
    .bind(conversation.0)
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    found.iter().map(rows::chat_message).collect()
}

// ---- numbering ----------------------------------------------------------------------------

/// Hands out the next `events` event and `messages` message numbers of a conversation and, with
/// `touch`, moves its `updated_at` forward; returns the first number of each range. Locks the
/// conversation's row until commit. `NotFound("conversation")` if it is gone.
async fn reserve(
    conn: &mut PgConnection,
    conversation: ConversationId,
    events: usize,
    messages: usize,
    touch: Option<Timestamp>,
) -> StoreResult<(i64, i64)> {
    let (events, messages) = (events as i64, messages as i64);
    let (last_event, last_message): (i64, i64) = sqlx::query_as(
        "UPDATE conversations SET last_event_seq = last_event_seq + $2, \
         last_message_seq = last_message_seq + $3, updated_at = GREATEST(updated_at, $4) \
         WHERE id = $1 RETURNING last_event_seq, last_message_seq",
    )
    .bind(conversation.0)
    .bind(events)
    .bind(messages)
    .bind(touch.map(Timestamp::millis))
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .ok_or(StoreError::NotFound("conversation"))?;
    Ok((last_event - events + 1, last_message - messages + 1))
}

/// Inserts events numbered from `first`, in one statement.
async fn insert_events(
    conn: &mut PgConnection,
    conversation: ConversationId,
    turn: TurnId,
    events: &[NewChatEvent],
    first: i64,
    at: Timestamp,
) -> StoreResult<Vec<ChatEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let data: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    sqlx::query(
        "INSERT INTO chat_events (conversation_id, seq, turn_id, kind, data, created_at) \
         SELECT $1, $3 + e.n - 1, $2, e.kind, e.data, $4 \
         FROM UNNEST($5::text[], $6::jsonb[]) WITH ORDINALITY AS e (kind, data, n)",
    )
    .bind(conversation.0)
    .bind(turn.0)
    .bind(first)
    .bind(at.millis())
    .bind(&kinds)
    .bind(&data)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok((first..)
        .zip(events)
        .map(|(seq, event)| ChatEvent {
            seq,
            turn_id: turn,
            kind: event.kind.clone(),
            data: event.data.clone(),
            created_at: at,
        })
        .collect())
}

/// Inserts history messages numbered from `first`, in one statement.
async fn insert_messages(
    conn: &mut PgConnection,
    conversation: ConversationId,
    turn: TurnId,
    messages: &[Value],
    first: i64,
    at: Timestamp,
) -> StoreResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO chat_messages (conversation_id, seq, turn_id, body, created_at) \
         SELECT $1, $3 + m.n - 1, $2, m.body, $4 \
         FROM UNNEST($5::jsonb[]) WITH ORDINALITY AS m (body, n)",
    )
    .bind(conversation.0)
    .bind(turn.0)
    .bind(first)
    .bind(at.millis())
    .bind(messages)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

// ---- the catalog a turn decides with ------------------------------------------------------

/// The organization's policy generation (0 before its first change).
async fn policy_generation(conn: &mut PgConnection, org: OrgId) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT generation FROM policy_generations WHERE org_id = $1), 0)",
    )
    .bind(org.0)
    .fetch_one(conn)
    .await
    .map_err(backend)
}

pub(crate) async fn chat_catalog(
    pool: &PgPool,
    org: OrgId,
    member: UserId,
) -> StoreResult<ChatCatalog> {
    // One snapshot for all five reads.
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let policy_generation = policy_generation(&mut tx, org).await?;
    let settings = fetch_organization(&mut tx, org).await?.settings;
    let connectors = sqlx::query(&format!(
        "SELECT {CONNECTOR_COLUMNS} FROM connectors c WHERE c.org_id = $1 \
         ORDER BY c.name_folded COLLATE \"C\""
    ))
    .bind(org.0)
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?
    .iter()
    .map(rows::connector)
    .collect::<StoreResult<Vec<_>>>()?;
    let functions = sqlx::query(&format!(
        "SELECT {FUNCTION_COLUMNS}, p.preference FROM functions f \
         JOIN connectors c ON c.id = f.connector_id \
         LEFT JOIN member_preferences p ON p.function_id = f.id AND p.user_id = $2 \
         WHERE c.org_id = $1 ORDER BY c.name_folded COLLATE \"C\", f.name COLLATE \"C\""
    ))
    .bind(org.0)
    .bind(member.0)
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?
    .iter()
    .map(rows::function_view)
    .collect::<StoreResult<Vec<_>>>()?;
    let model = chat_model(&mut tx, org).await?;
    tx.commit().await.map_err(backend)?;
    Ok(ChatCatalog {
        policy_generation,
        settings,
        model,
        connectors,
        functions,
    })
}

// ---- turns --------------------------------------------------------------------------------

pub(crate) async fn start_turn(
    pool: &PgPool,
    turn: &TurnRecord,
    events: &[NewChatEvent],
    generation: i64,
) -> StoreResult<Option<Vec<ChatEvent>>> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // The conversation's row first (the lock order), which also serializes two starts.
    check_conversation(
        &mut tx,
        turn.org_id,
        turn.user_id,
        turn.conversation_id,
        true,
    )
    .await?;
    if policy_generation(&mut tx, turn.org_id).await? != generation {
        return Ok(None);
    }
    sqlx::query(&format!(
        "INSERT INTO chat_turns ({TURN_COLUMNS}, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $8)"
    ))
    .bind(turn.id.0)
    .bind(turn.conversation_id.0)
    .bind(turn.org_id.0)
    .bind(turn.user_id.0)
    .bind(turn.status.as_str())
    .bind(&turn.state)
    .bind(turn.lease_until.map(Timestamp::millis))
    .bind(turn.created_at.millis())
    .execute(&mut *tx)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(OPEN_TURN_KEY) => turn_open(),
        Some("chat_turns_pkey") => {
            StoreError::conflict("turn", "a turn with this id already exists")
        }
        _ => backend(e),
    })?;
    let (first, _) = reserve(
        &mut tx,
        turn.conversation_id,
        events.len(),
        0,
        Some(turn.created_at),
    )
    .await?;
    let stored = insert_events(
        &mut tx,
        turn.conversation_id,
        turn.id,
        events,
        first,
        turn.created_at,
    )
    .await?;
    tx.commit().await.map_err(backend)?;
    Ok(Some(stored))
}

pub(crate) async fn turn(pool: &PgPool, id: TurnId) -> StoreResult<TurnRecord> {
    let row = sqlx::query(&format!(
        "SELECT {TURN_COLUMNS} FROM chat_turns WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(pool)
    .await
    .map_err(backend)?
    .ok_or(StoreError::NotFound("turn"))?;
    rows::turn(&row)
}

pub(crate) async fn open_turn(
    pool: &PgPool,
    conversation: ConversationId,
) -> StoreResult<Option<TurnRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {TURN_COLUMNS} FROM chat_turns \
         WHERE conversation_id = $1 AND status IN ('running', 'waiting')"
    ))
    .bind(conversation.0)
    .fetch_optional(pool)
    .await
    .map_err(backend)?;
    row.as_ref().map(rows::turn).transpose()
}

pub(crate) async fn save_turn(
    pool: &PgPool,
    save: &TurnSave<'_>,
) -> StoreResult<Option<Vec<ChatEvent>>> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let conversation = save.conversation;
    // Numbering locks the conversation's row before the turn's is updated (the lock order);
    // if the save loses, the rollback gives the numbers back.
    let (first_event, first_message) = reserve(
        &mut tx,
        conversation,
        save.events.len(),
        save.messages.len(),
        Some(save.now),
    )
    .await
    .map_err(|e| match e {
        StoreError::NotFound(_) => StoreError::NotFound("turn"),
        other => other,
    })?;
    let done = sqlx::query(
        "UPDATE chat_turns SET status = $3, state = $4, lease_until = $5, \
         version = version + 1, updated_at = $6 \
         WHERE id = $1 AND conversation_id = $7 AND version = $2 \
         AND COALESCE((SELECT generation FROM policy_generations g \
                       WHERE g.org_id = chat_turns.org_id), 0) = $8",
    )
    .bind(save.id.0)
    .bind(save.version)
    .bind(save.status.as_str())
    .bind(save.state)
    .bind(save.lease_until.map(Timestamp::millis))
    .bind(save.now.millis())
    .bind(conversation.0)
    .bind(save.policy_generation)
    .execute(&mut *tx)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(OPEN_TURN_KEY) => turn_open(),
        _ => backend(e),
    })?;
    if done.rows_affected() == 0 {
        // Someone saved (or claimed) first, or the policy changed, or the turn is gone.
        let exists = sqlx::query_scalar::<_, i32>(
            "SELECT 1 FROM chat_turns WHERE id = $1 AND conversation_id = $2",
        )
        .bind(save.id.0)
        .bind(conversation.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        tx.rollback().await.map_err(backend)?;
        return match exists {
            Some(_) => Ok(None),
            None => Err(StoreError::NotFound("turn")),
        };
    }
    let stored = insert_events(
        &mut tx,
        conversation,
        save.id,
        save.events,
        first_event,
        save.now,
    )
    .await?;
    insert_messages(
        &mut tx,
        conversation,
        save.id,
        save.messages,
        first_message,
        save.now,
    )
    .await?;
    for entry in save.audit {
        append(&mut tx, entry).await?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(Some(stored))
}

pub(crate) async fn extend_turn_lease(
    pool: &PgPool,
    id: TurnId,
    version: i64,
    lease_until: Timestamp,
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE chat_turns SET lease_until = $3 WHERE id = $1 AND version = $2")
        .bind(id.0)
        .bind(version)
        .bind(lease_until.millis())
        .execute(pool)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn append_chat_events(
    pool: &PgPool,
    conversation: ConversationId,
    turn: TurnId,
    events: &[NewChatEvent],
) -> StoreResult<Vec<ChatEvent>> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query_scalar::<_, i32>("SELECT 1 FROM chat_turns WHERE id = $1 AND conversation_id = $2")
        .bind(turn.0)
        .bind(conversation.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("turn"))?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (first, _) = reserve(&mut tx, conversation, events.len(), 0, None).await?;
    // The insert's foreign key check takes a key-share lock on the turn, which does not
    // conflict with a concurrent save's update of it; a turn deleted meanwhile (with its
    // conversation) makes the numbering above fail first.
    let stored = insert_events(
        &mut tx,
        conversation,
        turn,
        events,
        first,
        switchboard_store::now(),
    )
    .await?;
    tx.commit().await.map_err(backend)?;
    Ok(stored)
}

pub(crate) async fn chat_events(
    pool: &PgPool,
    conversation: ConversationId,
    after: i64,
    limit: u32,
) -> StoreResult<Vec<ChatEvent>> {
    let found = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM chat_events WHERE conversation_id = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3"
    ))
    .bind(conversation.0)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    found.iter().map(rows::chat_event).collect()
}

pub(crate) async fn claim_stalled_turns(
    pool: &PgPool,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> StoreResult<Vec<TurnRecord>> {
    // SKIP LOCKED passes over turns another claimer (or a save) holds right now; a turn whose
    // claim committed meanwhile is re-checked against the new row and no longer qualifies.
    let found = sqlx::query(&format!(
        "UPDATE chat_turns SET lease_until = $1, version = version + 1, updated_at = $2 \
         WHERE id IN (SELECT id FROM chat_turns \
                      WHERE status = $3 AND (lease_until IS NULL OR lease_until < $2) \
                      ORDER BY lease_until NULLS FIRST, id LIMIT $4 \
                      FOR NO KEY UPDATE SKIP LOCKED) \
         RETURNING {TURN_COLUMNS}"
    ))
    .bind(lease_until.millis())
    .bind(now.millis())
    .bind(TurnStatus::Running.as_str())
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    let mut claimed = found
        .iter()
        .map(rows::turn)
        .collect::<StoreResult<Vec<_>>>()?;
    claimed.sort_by_key(|t| t.id.0);
    Ok(claimed)
}
