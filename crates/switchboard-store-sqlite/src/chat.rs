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

use crate::batch::{Batch, BatchError, Readers, Writer};
use crate::connectors::check_scope;
use crate::error::DbResultExt;
use crate::rows::{
    self, CHAT_MODEL_COLS, CONNECTOR_SELECT, CONVERSATION_SELECT, Columns, EVENT_COLS,
    FUNCTION_COLS, MESSAGE_COLS, PREFERENCE_JOIN, TURN_COLS, to_json,
};
use crate::{audit, begin_read, begin_write, orgs};

// ---- the organization's model -------------------------------------------------------------

pub(crate) async fn chat_model(
    conn: &mut SqliteConnection,
    org: OrgId,
) -> StoreResult<Option<StoredChatModel>> {
    let row = sqlx::query(&format!(
        "SELECT {CHAT_MODEL_COLS} FROM chat_models WHERE org_id = ?"
    ))
    .bind(org.0)
    .fetch_optional(conn)
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

pub(crate) fn conversation(
    readers: &Readers,
    org: OrgId,
    user: UserId,
    id: ConversationId,
) -> StoreResult<Conversation> {
    let mut batch = Batch::new();
    batch
        .push(CONVERSATION_SELECT)
        .push(" WHERE c.id = ")
        .bind(id.0)
        .push(" AND c.org_id = ")
        .bind(org.0)
        .push(" AND c.user_id = ")
        .bind(user.0)
        .end();
    match readers.read(&batch)?.first() {
        Some(row) => rows::conversation(row),
        None => Err(StoreError::NotFound("conversation")),
    }
}

pub(crate) fn conversation_org(
    readers: &Readers,
    user: UserId,
    id: ConversationId,
) -> StoreResult<OrgId> {
    let mut batch = Batch::new();
    batch
        .push("SELECT org_id FROM conversations WHERE id = ")
        .bind(id.0)
        .push(" AND user_id = ")
        .bind(user.0)
        .end();
    match readers.read(&batch)?.first() {
        Some(row) => row.uuid("org_id").map(OrgId),
        None => Err(StoreError::NotFound("conversation")),
    }
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

pub(crate) fn chat_messages(
    readers: &Readers,
    conversation: ConversationId,
) -> StoreResult<Vec<ChatMessage>> {
    let mut batch = Batch::new();
    batch
        .push(format!(
            "SELECT {MESSAGE_COLS} FROM chat_messages WHERE conversation_id = "
        ))
        .bind(conversation.0)
        .push(" ORDER BY seq")
        .end();
    readers
        .read(&batch)?
        .iter()
        .map(rows::chat_message)
        .collect()
}

// ---- numbering ----------------------------------------------------------------------------

/// Adds to `batch`, under `condition` (which writes an SQL expression), the insert of `events`
/// and `messages` numbered after the conversation's counters (`last_event_seq`,
/// `last_message_seq`), then the advance of those counters and, with `touch`, of
/// `updated_at`. The caller reads the counters earlier in the same batch to know the numbers
/// given (see [`numbered`]).
#[allow(clippy::too_many_arguments)]
fn push_appends(
    batch: &mut Batch,
    conversation: ConversationId,
    turn: TurnId,
    events: &[NewChatEvent],
    messages: &[Value],
    at: Timestamp,
    touch: Option<Timestamp>,
    condition: &dyn Fn(&mut Batch),
) -> StoreResult<()> {
    let (event_count, message_count) = (events.len(), messages.len());
    let events = events
        .iter()
        .map(|e| Ok((e.kind.as_str(), to_json("chat event", &e.data)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    push_numbered(
        batch,
        "chat_events (conversation_id, seq, turn_id, kind, data, created_at)",
        "last_event_seq",
        "v.column2, v.column3",
        (conversation, turn, at),
        events,
        |b, (kind, data)| {
            b.bind(kind).push(", ").bind(data);
        },
        condition,
    );
    let messages = messages
        .iter()
        .map(|body| to_json("chat message", body))
        .collect::<StoreResult<Vec<_>>>()?;
    push_numbered(
        batch,
        "chat_messages (conversation_id, seq, turn_id, body, created_at)",
        "last_message_seq",
        "v.column2",
        (conversation, turn, at),
        messages,
        |b, body| {
            b.bind(body);
        },
        condition,
    );
    batch
        .push("UPDATE conversations SET last_event_seq = last_event_seq + ")
        .push(event_count)
        .push(", last_message_seq = last_message_seq + ")
        .push(message_count)
        .push(", updated_at = MAX(updated_at, COALESCE(")
        .bind(touch.map(Timestamp::millis))
        .push(", updated_at)) WHERE id = ")
        .bind(conversation.0)
        .push(" AND ");
    condition(batch);
    batch.end();
    Ok(())
}

/// Adds to `batch`, under `condition`, the insert into `table` (its name and columns) of
/// `rows`, numbered after the conversation's `counter`: each row is the conversation, its
/// number, the turn, the values `row` binds (read back as `values`) and the time. Nothing is
/// added for no rows.
#[allow(clippy::too_many_arguments)]
fn push_numbered<T>(
    batch: &mut Batch,
    table: &str,
    counter: &str,
    values: &str,
    (conversation, turn, at): (ConversationId, TurnId, Timestamp),
    rows: Vec<T>,
    row: impl Fn(&mut Batch, T),
    condition: &dyn Fn(&mut Batch),
) {
    if rows.is_empty() {
        return;
    }
    batch
        .push(format!(
            "INSERT INTO {table} SELECT c.id, c.{counter} + v.column1, "
        ))
        .bind(turn.0)
        .push(format!(", {values}, "))
        .bind(at.millis())
        .push(" FROM conversations c, (VALUES ");
    for (n, values) in (1..).zip(rows) {
        batch
            .push(if n == 1 { "(" } else { ", (" })
            .push(n)
            .push(", ");
        row(batch, values);
        batch.push(")");
    }
    batch
        .push(") v WHERE c.id = ")
        .bind(conversation.0)
        .push(" AND ");
    condition(batch);
    batch.end();
}

/// The events [`push_appends`] stored, from the conversation's `last_event_seq` read before.
fn numbered(
    last_event: i64,
    turn: TurnId,
    events: &[NewChatEvent],
    at: Timestamp,
) -> Vec<ChatEvent> {
    (last_event + 1..)
        .zip(events)
        .map(|(seq, event)| ChatEvent {
            seq,
            turn_id: turn,
            kind: event.kind.clone(),
            data: event.data.clone(),
            created_at: at,
        })
        .collect()
}

/// The start of an SQL expression for an organization's policy generation (0 before its
/// first change); the organization and `), 0)` follow.
const GENERATION: &str = "COALESCE((SELECT generation FROM policy_generations WHERE org_id = ";

// ---- the catalog a turn decides with ------------------------------------------------------

/// The organization's policy generation (0 before its first change).
async fn policy_generation(conn: &mut SqliteConnection, org: OrgId) -> StoreResult<i64> {
    sqlx::query_scalar(&format!("SELECT {GENERATION}?), 0)"))
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
    let model = chat_model(&mut tx, org).await?;
    tx.commit().await.db()?;
    Ok(ChatCatalog {
        policy_generation,
        settings,
        model,
        connectors,
        functions,
    })
}

// ---- turns --------------------------------------------------------------------------------

fn turn_open() -> StoreError {
    StoreError::conflict("turn", "the conversation already has a turn in progress")
}

pub(crate) async fn start_turn(
    writer: &Writer,
    turn: &TurnRecord,
    events: &[NewChatEvent],
    generation: i64,
) -> StoreResult<Option<Vec<ChatEvent>>> {
    // One batch (see `batch`): read what decides, then write only if it allows the start. The
    // open-turn check keeps the partial unique index behind it (which SQLite does not name in
    // its error) to reporting a taken id.
    let (id, c) = (turn.id.0, turn.conversation_id.0);
    let (org, user) = (turn.org_id.0, turn.user_id.0);
    let found = |b: &mut Batch| {
        b.push("EXISTS (SELECT 1 FROM conversations WHERE id = ")
            .bind(c)
            .push(" AND org_id = ")
            .bind(org)
            .push(" AND user_id = ")
            .bind(user)
            .push(")");
    };
    let current = |b: &mut Batch| {
        b.push(GENERATION).bind(org).push("), 0)");
    };
    let busy = |b: &mut Batch| {
        b.push("EXISTS (SELECT 1 FROM chat_turns WHERE conversation_id = ")
            .bind(c)
            .push(" AND status IN ('running', 'waiting'))");
    };
    let mut batch = Batch::new();
    batch.push("SELECT ");
    found(&mut batch);
    batch.push(" AS found, ");
    current(&mut batch);
    batch.push(" AS generation, ");
    busy(&mut batch);
    batch
        .push(" AS busy, (SELECT last_event_seq FROM conversations WHERE id = ")
        .bind(c)
        .push(") AS last_event")
        .end();
    batch
        .push(format!(
            "INSERT INTO chat_turns ({TURN_COLS}, updated_at) SELECT "
        ))
        .bind(id)
        .push(", ")
        .bind(c)
        .push(", ")
        .bind(org)
        .push(", ")
        .bind(user)
        .push(", ")
        .bind(turn.status.as_str())
        .push(", ")
        .bind(to_json("turn state", &turn.state)?)
        .push(", 1, ")
        .bind(turn.lease_until.map(Timestamp::millis))
        .push(", ")
        .bind(turn.created_at.millis())
        .push(", ")
        .bind(turn.created_at.millis())
        .push(" WHERE ");
    found(&mut batch);
    batch.push(" AND ");
    current(&mut batch);
    batch.push(" = ").bind(generation).push(" AND NOT ");
    busy(&mut batch);
    batch.end();
    let started = |b: &mut Batch| {
        b.push("EXISTS (SELECT 1 FROM chat_turns WHERE id = ")
            .bind(id)
            .push(")");
    };
    push_appends(
        &mut batch,
        turn.conversation_id,
        turn.id,
        events,
        &[],
        turn.created_at,
        Some(turn.created_at),
        &started,
    )?;
    let rows = writer
        .run(batch)
        .await
        .map_err(|e| e.unique_as("turn", || "a turn with this id already exists".to_owned()))?;
    let read = rows.first().ok_or_else(|| missing("start_turn"))?;
    if read.int("found")? == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    if read.int("generation")? != generation {
        return Ok(None);
    }
    if read.int("busy")? != 0 {
        return Err(turn_open());
    }
    Ok(Some(numbered(
        read.int("last_event")?,
        turn.id,
        events,
        turn.created_at,
    )))
}

/// The error for a batch that returned fewer rows than its statements produce.
fn missing(what: &str) -> StoreError {
    StoreError::Backend(format!("{what} returned no row"))
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
    writer: &Writer,
    save: &TurnSave<'_>,
) -> StoreResult<Option<Vec<ChatEvent>>> {
    // One batch (see `batch`): whether the turn is still at the caller's version and policy
    // generation, then every write under that condition, the turn's own row last so that the
    // condition reads the same in each statement.
    let (id, c) = (save.id.0, save.conversation.0);
    let (version, generation) = (save.version, save.policy_generation);
    let current = |b: &mut Batch| {
        b.push("EXISTS (SELECT 1 FROM chat_turns t WHERE t.id = ")
            .bind(id)
            .push(" AND t.conversation_id = ")
            .bind(c)
            .push(" AND t.version = ")
            .bind(version)
            .push(" AND ")
            .push(GENERATION)
            .push("t.org_id), 0) = ")
            .bind(generation)
            .push(")");
    };
    let mut batch = Batch::new();
    batch.push("SELECT ");
    current(&mut batch);
    batch
        .push(" AS current, EXISTS (SELECT 1 FROM chat_turns WHERE id = ")
        .bind(id)
        .push(" AND conversation_id = ")
        .bind(c)
        .push(") AS found, (SELECT last_event_seq FROM conversations WHERE id = ")
        .bind(c)
        .push(") AS last_event")
        .end();
    push_appends(
        &mut batch,
        save.conversation,
        save.id,
        save.events,
        save.messages,
        save.now,
        Some(save.now),
        &current,
    )?;
    audit::push_append(&mut batch, save.audit, &current)?;
    batch
        .push("UPDATE chat_turns SET status = ")
        .bind(save.status.as_str())
        .push(", state = ")
        .bind(to_json("turn state", save.state)?)
        .push(", lease_until = ")
        .bind(save.lease_until.map(Timestamp::millis))
        .push(", version = version + 1, updated_at = ")
        .bind(save.now.millis())
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND ");
    current(&mut batch);
    batch.end();
    let rows = writer.run(batch).await.map_err(|e| {
        e.unique_as("turn", || {
            "the conversation already has a turn in progress".to_owned()
        })
    })?;
    let read = rows.first().ok_or_else(|| missing("save_turn"))?;
    if read.int("current")? == 0 {
        // Someone saved (or claimed) first, or the policy changed, or the turn is gone.
        return match read.int("found")? {
            0 => Err(StoreError::NotFound("turn")),
            _ => Ok(None),
        };
    }
    Ok(Some(numbered(
        read.int("last_event")?,
        save.id,
        save.events,
        save.now,
    )))
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
    writer: &Writer,
    conversation: ConversationId,
    turn: TurnId,
    events: &[NewChatEvent],
) -> StoreResult<Vec<ChatEvent>> {
    let found = |b: &mut Batch| {
        b.push("EXISTS (SELECT 1 FROM chat_turns WHERE id = ")
            .bind(turn.0)
            .push(" AND conversation_id = ")
            .bind(conversation.0)
            .push(")");
    };
    let mut batch = Batch::new();
    batch.push("SELECT ");
    found(&mut batch);
    batch
        .push(" AS found, (SELECT last_event_seq FROM conversations WHERE id = ")
        .bind(conversation.0)
        .push(") AS last_event")
        .end();
    let at = switchboard_store::now();
    push_appends(
        &mut batch,
        conversation,
        turn,
        events,
        &[],
        at,
        None,
        &found,
    )?;
    let rows = writer.run(batch).await.map_err(BatchError::store)?;
    let read = rows.first().ok_or_else(|| missing("append_chat_events"))?;
    if read.int("found")? == 0 {
        return Err(StoreError::NotFound("turn"));
    }
    Ok(numbered(read.int("last_event")?, turn, events, at))
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
