//! Chat: the organization's language model, members' conversations, turns saved
//! compare-and-swap on their version, and the numbered history and event stream.
//!
//! Sequence numbers come from counters on the conversation's row (`last_message_seq`,
//! `last_event_seq`), advanced in the transaction that appends; every write here runs under
//! SQLite's single writer lock (`BEGIN IMMEDIATE`), so numbers are contiguous and no two
//! transactions hand out the same one. The statements are the PostgreSQL backend's, so both
//! give the same answers.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::{SqliteConnection, SqlitePool};
use switchboard_domain::{
    ChatEvent, ChatMessage, ConnectorId, Conversation, ConversationId, NewAuditEvent, OrgId,
    Timestamp, TurnId, TurnRecord, TurnStatus, UserId,
};
use switchboard_store::{
    ChatCatalog, ConversationPatch, NewChatEvent, Page, PageRequest, StoreError, StoreResult,
    StoredChatModel, TurnSave,
};

use crate::connectors::check_scope;
use crate::error::DbResultExt;
use crate::rows::{
    self, CHAT_MODEL_COLS, CONNECTOR_SELECT, CONVERSATION_SELECT, EVENT_COLS, FUNCTION_COLS,
    MESSAGE_COLS, PREFERENCE_JOIN, TURN_COLS, to_json,
};
use crate::{audit, begin_read, begin_write, orgs};

// ---- the organization's model -------------------------------------------------------------

pub(crate) async fn chat_model(
    pool: &SqlitePool,
    org: OrgId,
) -> StoreResult<Option<StoredChatModel>> {
    let row = sqlx::query(&format!(
        "SELECT {CHAT_MODEL_COLS} FROM chat_models WHERE org_id = ?"
    ))
    .bind(org.0)
    .fetch_optional(pool)
    .await
    .db()?;
    row.as_ref().map(rows::chat_model).transpose()
}

pub(crate) async fn set_chat_model(
    pool: &SqlitePool,
    org: OrgId,
    model: Option<&StoredChatModel>,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    orgs::organization(&mut tx, org).await?;
    match model {
        Some(m) => {
            sqlx::query(
                "INSERT INTO chat_models (org_id, kind, base_url, model, sealed_key, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (org_id) DO UPDATE SET kind = excluded.kind, \
                 base_url = excluded.base_url, model = excluded.model, \
                 sealed_key = excluded.sealed_key, updated_at = excluded.updated_at",
            )
            .bind(org.0)
            .bind(m.kind.as_str())
            .bind(&m.base_url)
            .bind(&m.model)
            .bind(m.sealed_key.as_deref())
            .bind(m.updated_at.millis())
            .execute(&mut *tx)
            .await
            .db()?;
        }
        None => {
            sqlx::query("DELETE FROM chat_models WHERE org_id = ?")
                .bind(org.0)
                .execute(&mut *tx)
                .await
                .db()?;
        }
    }
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}

// ---- conversations ------------------------------------------------------------------------

/// Fails with `NotFound("conversation")` unless conversation `id` is `user`'s in `org`.
async fn check_conversation(
    conn: &mut SqliteConnection,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<()> {
    sqlx::query_scalar::<_, i64>(
        "SELECT 1 FROM conversations WHERE id = ? AND org_id = ? AND user_id = ?",
    )
    .bind(id.0)
    .bind(org.0)
    .bind(user.0)
    .fetch_optional(conn)
    .await
    .db()?
    .map(|_| ())
    .ok_or(StoreError::NotFound("conversation"))
}

/// Reads one of `user`'s conversations.
async fn fetch_conversation(
    conn: &mut SqliteConnection,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<Conversation> {
    let row = sqlx::query(&format!(
        "{CONVERSATION_SELECT} WHERE c.id = ? AND c.org_id = ? AND c.user_id = ?"
    ))
    .bind(id.0)
    .bind(org.0)
    .bind(user.0)
    .fetch_optional(conn)
    .await
    .db()?
    .ok_or(StoreError::NotFound("conversation"))?;
    rows::conversation(&row)
}

/// Replaces a conversation's connectors with `connectors`, each checked to be `org`'s; a
/// connector named twice is kept at its first place.
async fn put_connectors(
    conn: &mut SqliteConnection,
    org: OrgId,
    conversation: ConversationId,
    connectors: &[ConnectorId],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM conversation_connectors WHERE conversation_id = ?")
        .bind(conversation.0)
        .execute(&mut *conn)
        .await
        .db()?;
    let mut seen = HashSet::new();
    for (position, id) in connectors.iter().filter(|id| seen.insert(**id)).enumerate() {
        check_scope(&mut *conn, org, *id).await?;
        sqlx::query(
            "INSERT INTO conversation_connectors (conversation_id, connector_id, position) \
             VALUES (?, ?, ?)",
        )
        .bind(conversation.0)
        .bind(id.0)
        .bind(position as i64)
        .execute(&mut *conn)
        .await
        .db()?;
    }
    Ok(())
}

pub(crate) async fn create_conversation(
    pool: &SqlitePool,
    conversation: &Conversation,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    orgs::role_of(&mut tx, conversation.org_id, conversation.user_id)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    sqlx::query(
        "INSERT INTO conversations (id, org_id, user_id, title, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(conversation.id.0)
    .bind(conversation.org_id.0)
    .bind(conversation.user_id.0)
    .bind(&conversation.title)
    .bind(conversation.created_at.millis())
    .bind(conversation.updated_at.millis())
    .execute(&mut *tx)
    .await
    .unique_as("id", || {
        "a conversation with this id already exists".to_owned()
    })?;
    put_connectors(
        &mut tx,
        conversation.org_id,
        conversation.id,
        &conversation.connectors,
    )
    .await?;
    tx.commit().await.db()
}

pub(crate) async fn conversation(
    pool: &SqlitePool,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<Conversation> {
    fetch_conversation(&mut *pool.acquire().await.db()?, org, user, id).await
}

pub(crate) async fn conversation_org(
    pool: &SqlitePool,
    user: UserId,
    id: ConversationId,
) -> StoreResult<OrgId> {
    let org: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT org_id FROM conversations WHERE id = ? AND user_id = ?")
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(pool)
            .await
            .db()?;
    org.map(OrgId).ok_or(StoreError::NotFound("conversation"))
}

pub(crate) async fn list_conversations(
    pool: &SqlitePool,
    org: OrgId,
    user: UserId,
    page: PageRequest,
) -> StoreResult<Page<Conversation>> {
    // Keyset paging on (updated_at, id), descending: the cursor's own values are looked up
    // within the same owner, so a cursor from someone else's list finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND (c.updated_at, c.id) < (SELECT k.updated_at, k.id FROM conversations k \
               WHERE k.id = ?4 AND k.org_id = ?1 AND k.user_id = ?2)"
        }
        None => "",
    };
    let sql = format!(
        "{CONVERSATION_SELECT} WHERE c.org_id = ?1 AND c.user_id = ?2{cursor} \
         ORDER BY c.updated_at DESC, c.id DESC LIMIT ?3"
    );
    let mut query = sqlx::query(&sql)
        .bind(org.0)
        .bind(user.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let found = query.fetch_all(pool).await.db()?;
    let items = found
        .iter()
        .map(rows::conversation)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page.limit, |c| c.id.0))
}

pub(crate) async fn update_conversation(
    pool: &SqlitePool,
    org: OrgId,
    user: UserId,
    id: ConversationId,
    patch: &ConversationPatch,
) -> StoreResult<Conversation> {
    let mut tx = begin_write(pool).await?;
    check_conversation(&mut tx, org, user, id).await?;
    sqlx::query(
        "UPDATE conversations SET title = COALESCE(?, title), \
         updated_at = MAX(updated_at, COALESCE(?, updated_at)) WHERE id = ?",
    )
    .bind(patch.title.as_deref())
    .bind(patch.now.map(Timestamp::millis))
    .bind(id.0)
    .execute(&mut *tx)
    .await
    .db()?;
    if let Some(connectors) = &patch.connectors {
        put_connectors(&mut tx, org, id, connectors).await?;
    }
    let conversation = fetch_conversation(&mut tx, org, user, id).await?;
    tx.commit().await.db()?;
    Ok(conversation)
}

pub(crate) async fn delete_conversation(
    pool: &SqlitePool,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    // Turns, messages, events and the connector list go with it by ON DELETE CASCADE.
    let done = sqlx::query("DELETE FROM conversations WHERE id = ? AND org_id = ? AND user_id = ?")
        .bind(id.0)
        .bind(org.0)
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    tx.commit().await.db()
}

pub(crate) async fn chat_messages(
    pool: &SqlitePool,
    conversation: ConversationId,
) -> StoreResult<Vec<ChatMessage>> {
    let found = sqlx::query(&format!(
        "SELECT {MESSAGE_COLS} FROM chat_messages WHERE conversation_id = ? ORDER BY seq"
    ))
    .bind(conversation.0)
    .fetch_all(pool)
    .await
    .db()?;
    found.iter().map(rows::chat_message).collect()
}

// ---- numbering ----------------------------------------------------------------------------

/// Hands out the next `events` event and `messages` message numbers of a conversation and, with
/// `touch`, moves its `updated_at` forward; returns the first number of each range.
/// `NotFound("conversation")` if it is gone.
async fn reserve(
    conn: &mut SqliteConnection,
    conversation: ConversationId,
    events: usize,
    messages: usize,
    touch: Option<Timestamp>,
) -> StoreResult<(i64, i64)> {
    let (events, messages) = (events as i64, messages as i64);
    let (last_event, last_message): (i64, i64) = sqlx::query_as(
        "UPDATE conversations SET last_event_seq = last_event_seq + ?, \
         last_message_seq = last_message_seq + ?, \
         updated_at = MAX(updated_at, COALESCE(?, updated_at)) \
         WHERE id = ? RETURNING last_event_seq, last_message_seq",
    )
    .bind(events)
    .bind(messages)
    .bind(touch.map(Timestamp::millis))
    .bind(conversation.0)
    .fetch_optional(&mut *conn)
    .await
    .db()?
    .ok_or(StoreError::NotFound("conversation"))?;
    Ok((last_event - events + 1, last_message - messages + 1))
}

/// `rows` groups of `columns` placeholders, for a multi-row `VALUES`.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// Inserts events numbered from `first`, in one statement.
async fn insert_events(
    conn: &mut SqliteConnection,
    conversation: ConversationId,
    turn: TurnId,
    events: &[NewChatEvent],
    first: i64,
    at: Timestamp,
) -> StoreResult<Vec<ChatEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO chat_events (conversation_id, seq, turn_id, kind, data, created_at) \
         VALUES {}",
        placeholders(events.len(), 6)
    );
    let mut query = sqlx::query(&sql);
    for (seq, event) in (first..).zip(events) {
        query = query
            .bind(conversation.0)
            .bind(seq)
            .bind(turn.0)
            .bind(&event.kind)
            .bind(to_json("chat event", &event.data)?)
            .bind(at.millis());
    }
    query.execute(&mut *conn).await.db()?;
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
    conn: &mut SqliteConnection,
    conversation: ConversationId,
    turn: TurnId,
    messages: &[Value],
    first: i64,
    at: Timestamp,
) -> StoreResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO chat_messages (conversation_id, seq, turn_id, body, created_at) VALUES {}",
        placeholders(messages.len(), 5)
    );
    let mut query = sqlx::query(&sql);
    for (seq, body) in (first..).zip(messages) {
        query = query
            .bind(conversation.0)
            .bind(seq)
            .bind(turn.0)
            .bind(to_json("chat message", body)?)
            .bind(at.millis());
    }
    query.execute(&mut *conn).await.db()?;
    Ok(())
}

// ---- the catalog a turn decides with ------------------------------------------------------

/// The organization's policy generation (0 before its first change).
async fn policy_generation(conn: &mut SqliteConnection, org: OrgId) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT generation FROM policy_generations WHERE org_id = ?), 0)",
    )
    .bind(org.0)
    .fetch_one(conn)
    .await
    .db()
}

pub(crate) async fn chat_catalog(
    pool: &SqlitePool,
    org: OrgId,
    member: UserId,
) -> StoreResult<ChatCatalog> {
    let mut tx = begin_read(pool).await?;
    let policy_generation = policy_generation(&mut tx, org).await?;
    let settings = orgs::organization(&mut tx, org).await?.settings;
    let connectors = sqlx::query(&format!(
        "{CONNECTOR_SELECT} WHERE c.org_id = ? ORDER BY c.name_folded"
    ))
    .bind(org.0)
    .fetch_all(&mut *tx)
    .await
    .db()?
    .iter()
    .map(rows::connector)
    .collect::<StoreResult<Vec<_>>>()?;
    let functions = sqlx::query(&format!(
        "SELECT {FUNCTION_COLS}, p.preference FROM functions f {PREFERENCE_JOIN} \
         JOIN connectors c ON c.id = f.connector_id \
         WHERE c.org_id = ? ORDER BY c.name_folded, f.name"
    ))
    .bind(member.0)
    .bind(org.0)
    .fetch_all(&mut *tx)
    .await
    .db()?
    .iter()
    .map(rows::function_view)
    .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().await.db()?;
    Ok(ChatCatalog {
        policy_generation,
        settings,
        connectors,
        functions,
    })
}

// ---- turns --------------------------------------------------------------------------------

fn turn_open() -> StoreError {
    StoreError::conflict("turn", "the conversation already has a turn in progress")
}

pub(crate) async fn start_turn(
    pool: &SqlitePool,
    turn: &TurnRecord,
    events: &[NewChatEvent],
    generation: i64,
) -> StoreResult<Option<Vec<ChatEvent>>> {
    let mut tx = begin_write(pool).await?;
    check_conversation(&mut tx, turn.org_id, turn.user_id, turn.conversation_id).await?;
    if policy_generation(&mut tx, turn.org_id).await? != generation {
        return Ok(None);
    }
    // Checked first, under the writer lock, so that the partial unique index behind it (which
    // SQLite does not name in its error) only ever reports a taken id.
    let open = sqlx::query_scalar::<_, i64>(
        "SELECT 1 FROM chat_turns WHERE conversation_id = ? AND status IN ('running', 'waiting')",
    )
    .bind(turn.conversation_id.0)
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    if open.is_some() {
        return Err(turn_open());
    }
    sqlx::query(&format!(
        "INSERT INTO chat_turns ({TURN_COLS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
    ))
    .bind(turn.id.0)
    .bind(turn.conversation_id.0)
    .bind(turn.org_id.0)
    .bind(turn.user_id.0)
    .bind(turn.status.as_str())
    .bind(to_json("turn state", &turn.state)?)
    .bind(turn.lease_until.map(Timestamp::millis))
    .bind(turn.created_at.millis())
    .bind(turn.created_at.millis())
    .execute(&mut *tx)
    .await
    .unique_as("turn", || "a turn with this id already exists".to_owned())?;
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
    tx.commit().await.db()?;
    Ok(Some(stored))
}

pub(crate) async fn turn(pool: &SqlitePool, id: TurnId) -> StoreResult<TurnRecord> {
    let row = sqlx::query(&format!("SELECT {TURN_COLS} FROM chat_turns WHERE id = ?"))
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .db()?
        .ok_or(StoreError::NotFound("turn"))?;
    rows::turn(&row)
}

pub(crate) async fn open_turn(
    pool: &SqlitePool,
    conversation: ConversationId,
) -> StoreResult<Option<TurnRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {TURN_COLS} FROM chat_turns \
         WHERE conversation_id = ? AND status IN ('running', 'waiting')"
    ))
    .bind(conversation.0)
    .fetch_optional(pool)
    .await
    .db()?;
    row.as_ref().map(rows::turn).transpose()
}

pub(crate) async fn save_turn(
    pool: &SqlitePool,
    save: &TurnSave<'_>,
) -> StoreResult<Option<Vec<ChatEvent>>> {
    let mut tx = begin_write(pool).await?;
    let conversation = save.conversation;
    // The conversation's row first, then the turn's, in the same order as the PostgreSQL
    // backend, whose row locks this order keeps free of deadlocks.
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
        "UPDATE chat_turns SET status = ?, state = ?, lease_until = ?, version = version + 1, \
         updated_at = ? WHERE id = ? AND conversation_id = ? AND version = ? \
         AND COALESCE((SELECT generation FROM policy_generations g \
                       WHERE g.org_id = chat_turns.org_id), 0) = ? \
         RETURNING 1",
    )
    .bind(save.status.as_str())
    .bind(to_json("turn state", save.state)?)
    .bind(save.lease_until.map(Timestamp::millis))
    .bind(save.now.millis())
    .bind(save.id.0)
    .bind(conversation.0)
    .bind(save.version)
    .bind(save.policy_generation)
    .fetch_optional(&mut *tx)
    .await
    .unique_as("turn", || {
        "the conversation already has a turn in progress".to_owned()
    })?;
    if done.is_none() {
        // Someone saved (or claimed) first, or the policy changed, or the turn is gone:
        // dropping the transaction undoes the numbering.
        let exists = sqlx::query_scalar::<_, i64>(
            "SELECT 1 FROM chat_turns WHERE id = ? AND conversation_id = ?",
        )
        .bind(save.id.0)
        .bind(conversation.0)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        tx.rollback().await.db()?;
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
        audit::append(&mut tx, entry).await?;
    }
    tx.commit().await.db()?;
    Ok(Some(stored))
}

pub(crate) async fn extend_turn_lease(
    pool: &SqlitePool,
    id: TurnId,
    version: i64,
    lease_until: Timestamp,
) -> StoreResult<bool> {
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query("UPDATE chat_turns SET lease_until = ? WHERE id = ? AND version = ?")
        .bind(lease_until.millis())
        .bind(id.0)
        .bind(version)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn append_chat_events(
    pool: &SqlitePool,
    conversation: ConversationId,
    turn: TurnId,
    events: &[NewChatEvent],
) -> StoreResult<Vec<ChatEvent>> {
    let mut tx = begin_write(pool).await?;
    sqlx::query_scalar::<_, i64>("SELECT 1 FROM chat_turns WHERE id = ? AND conversation_id = ?")
        .bind(turn.0)
        .bind(conversation.0)
        .fetch_optional(&mut *tx)
        .await
        .db()?
        .ok_or(StoreError::NotFound("turn"))?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (first, _) = reserve(&mut tx, conversation, events.len(), 0, None).await?;
    let stored = insert_events(
        &mut tx,
        conversation,
        turn,
        events,
        first,
        switchboard_store::now(),
    )
    .await?;
    tx.commit().await.db()?;
    Ok(stored)
}

pub(crate) async fn chat_events(
    pool: &SqlitePool,
    conversation: ConversationId,
    after: i64,
    limit: u32,
) -> StoreResult<Vec<ChatEvent>> {
    let found = sqlx::query(&format!(
        "SELECT {EVENT_COLS} FROM chat_events WHERE conversation_id = ? AND seq > ? \
         ORDER BY seq LIMIT ?"
    ))
    .bind(conversation.0)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .db()?;
    found.iter().map(rows::chat_event).collect()
}

pub(crate) async fn claim_stalled_turns(
    pool: &SqlitePool,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> StoreResult<Vec<TurnRecord>> {
    let mut tx = begin_write(pool).await?;
    // The writer lock makes select-then-update one step: no other process can claim between.
    let found = sqlx::query(&format!(
        "UPDATE chat_turns SET lease_until = ?1, version = version + 1, updated_at = ?2 \
         WHERE id IN (SELECT id FROM chat_turns \
                      WHERE status = ?3 AND (lease_until IS NULL OR lease_until < ?2) \
                      ORDER BY lease_until NULLS FIRST, id LIMIT ?4) \
         RETURNING {TURN_COLS}"
    ))
    .bind(lease_until.millis())
    .bind(now.millis())
    .bind(TurnStatus::Running.as_str())
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let mut claimed = found
        .iter()
        .map(rows::turn)
        .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().await.db()?;
    claimed.sort_by_key(|t| t.id.0);
    Ok(claimed)
}
