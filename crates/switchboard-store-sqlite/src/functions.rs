//! A connector's functions: discovery sync with definition pinning, floors, member
//! preferences and approval.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::{SqliteConnection, SqlitePool};
use switchboard_domain::{
    ConnectorId, FloorPolicy, Function, FunctionId, FunctionVersion, MemberPreference,
    NewAuditEvent, NewFunctionState, OrgId, ReviewState, SyncSummary, Timestamp, UserId,
};
use switchboard_store::{
    DiscoveredFunction, FunctionView, Page, PageRequest, StoreError, StoreResult,
};
use uuid::Uuid;

use crate::connectors::check_scope;
use crate::error::DbResultExt;
use crate::rows::{self, FUNCTION_COLS, PREFERENCE_JOIN};
use crate::{audit, begin_read, begin_write, orgs};

/// What sync needs to know about a stored function.
struct Known {
    id: Uuid,
    hash: String,
    approved: Option<String>,
    state: ReviewState,
}

/// Records a definition in the function's history unless that exact one is there already.
async fn keep_version(
    conn: &mut SqliteConnection,
    function: Uuid,
    hash: &str,
    definition: &str,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO function_versions (function_id, hash, definition, first_seen_at) \
         VALUES (?, ?, ?, ?) ON CONFLICT (function_id, hash) DO NOTHING",
    )
    .bind(function)
    .bind(hash)
    .bind(definition)
    .bind(now.millis())
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// The caller's audit detail with the sync summary added under `summary`.
fn detail_with_summary(detail: &Value, summary: &SyncSummary) -> StoreResult<Value> {
    let summary = serde_json::to_value(summary)
        .map_err(|e| StoreError::Backend(format!("sync summary: {e}")))?;
    Ok(match detail {
        Value::Object(map) => {
            let mut map = map.clone();
            map.insert("summary".to_owned(), summary);
            Value::Object(map)
        }
        Value::Null => json!({ "summary": summary }),
        other => json!({ "detail": other, "summary": summary }),
    })
}

pub(crate) async fn sync(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    found: &[DiscoveredFunction],
    new_functions: NewFunctionState,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<SyncSummary> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, connector).await?;

    let stored = sqlx::query(
        "SELECT id, name, definition_hash, approved_hash, review_state \
         FROM functions WHERE connector_id = ?",
    )
    .bind(connector.0)
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let mut known = HashMap::with_capacity(stored.len());
    for row in &stored {
        known.insert(
            rows::get::<String>(row, "name")?,
            Known {
                id: rows::get(row, "id")?,
                hash: rows::get(row, "definition_hash")?,
                approved: rows::get(row, "approved_hash")?,
                state: rows::enum_col(row, "review_state")?,
            },
        );
    }

    let mut summary = SyncSummary::default();
    let mut seen = HashSet::with_capacity(found.len());
    for f in found {
        let name = f.definition.name.as_str();
        // A server that lists one name twice gets its first definition counted.
        if !seen.insert(name) {
            continue;
        }
        let definition = rows::to_json("function definition", &f.definition)?;
        let id = match known.get(name) {
            None => {
                let (state, approved) = ReviewState::after_discovery(None, &f.hash, new_functions);
                let id = FunctionId::new().0;
                sqlx::query(
                    "INSERT INTO functions (id, connector_id, name, definition, definition_hash, \
                     approved_hash, review_state, floor, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id)
                .bind(connector.0)
                .bind(name)
                .bind(&definition)
                .bind(&f.hash)
                .bind(approved)
                .bind(state.as_str())
                .bind(FloorPolicy::Allowed.as_str())
                .bind(now.millis())
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .db()?;
                summary.added.push(name.to_owned());
                id
            }
            Some(k) => {
                let (state, approved) = ReviewState::after_discovery(
                    Some(k.approved.as_deref()),
                    &f.hash,
                    new_functions,
                );
                let moved = k.hash != f.hash;
                // A function that comes back after being removed is offered anew: it counts
                // as added, whatever its definition.
                if k.state == ReviewState::Removed {
                    summary.added.push(name.to_owned());
                } else if moved {
                    summary.changed.push(name.to_owned());
                } else {
                    summary.unchanged += 1;
                }
                if moved || state != k.state || approved != k.approved {
                    sqlx::query(
                        "UPDATE functions SET definition = ?, definition_hash = ?, \
                         approved_hash = ?, review_state = ?, updated_at = ? WHERE id = ?",
                    )
                    .bind(&definition)
                    .bind(&f.hash)
                    .bind(approved)
                    .bind(state.as_str())
                    .bind(now.millis())
                    .bind(k.id)
                    .execute(&mut *tx)
                    .await
                    .db()?;
                }
                k.id
            }
        };
        keep_version(&mut tx, id, &f.hash, &definition, now).await?;
    }

    for (name, k) in &known {
        if seen.contains(name.as_str()) || k.state == ReviewState::Removed {
            continue;
        }
        // The definition and approval stay, so a function that comes back unchanged is
        // approved again without review.
        sqlx::query("UPDATE functions SET review_state = ?, updated_at = ? WHERE id = ?")
            .bind(ReviewState::Removed.as_str())
            .bind(now.millis())
            .bind(k.id)
            .execute(&mut *tx)
            .await
            .db()?;
        summary.removed.push(name.clone());
    }

    summary.added.sort();
    summary.changed.sort();
    summary.removed.sort();
    if !(summary.added.is_empty() && summary.changed.is_empty() && summary.removed.is_empty()) {
        let mut event = event.clone();
        event.detail = detail_with_summary(&event.detail, &summary)?;
        audit::append(&mut tx, &event).await?;
    }
    tx.commit().await.db()?;
    Ok(summary)
}

/// One function of a connector by name, with `member`'s preference.
async fn view(
    conn: &mut SqliteConnection,
    connector: ConnectorId,
    name: &str,
    member: UserId,
) -> StoreResult<FunctionView> {
    let row = sqlx::query(&format!(
        "SELECT {FUNCTION_COLS}, p.preference FROM functions f {PREFERENCE_JOIN} \
         WHERE f.connector_id = ? AND f.name = ?"
    ))
    .bind(member.0)
    .bind(connector.0)
    .bind(name)
    .fetch_optional(conn)
    .await
    .db()?
    .ok_or(StoreError::NotFound("function"))?;
    rows::function_view(&row)
}

pub(crate) async fn list_page(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    member: UserId,
    page: PageRequest,
) -> StoreResult<Page<FunctionView>> {
    let mut tx = begin_read(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    // Keyset paging on the name (unique per connector), by its bytes (SQLite's BINARY
    // collation), the same on every backend. The cursor's name is looked up among this
    // connector's functions, so another connector's id finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND f.name > (SELECT k.name FROM functions k \
               WHERE k.id = ?4 AND k.connector_id = ?2)"
        }
        None => "",
    };
    let sql = format!(
        "SELECT {FUNCTION_COLS}, p.preference FROM functions f \
         LEFT JOIN member_preferences p ON p.function_id = f.id AND p.user_id = ?1 \
         WHERE f.connector_id = ?2{cursor} ORDER BY f.name LIMIT ?3"
    );
    let mut query = sqlx::query(&sql)
        .bind(member.0)
        .bind(connector.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let found = query.fetch_all(&mut *tx).await.db()?;
    let views = found
        .iter()
        .map(rows::function_view)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(views, page.limit, |v| v.function.id.0))
}

pub(crate) async fn one(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    member: UserId,
) -> StoreResult<FunctionView> {
    let mut tx = begin_read(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    view(&mut tx, connector, name, member).await
}

/// One function of a connector by name.
async fn function(
    conn: &mut SqliteConnection,
    connector: ConnectorId,
    name: &str,
) -> StoreResult<Function> {
    let row = sqlx::query(&format!(
        "SELECT {FUNCTION_COLS} FROM functions f WHERE f.connector_id = ? AND f.name = ?"
    ))
    .bind(connector.0)
    .bind(name)
    .fetch_optional(conn)
    .await
    .db()?
    .ok_or(StoreError::NotFound("function"))?;
    rows::function(&row)
}

async fn function_id(
    conn: &mut SqliteConnection,
    connector: ConnectorId,
    name: &str,
) -> StoreResult<Uuid> {
    sqlx::query_scalar("SELECT id FROM functions WHERE connector_id = ? AND name = ?")
        .bind(connector.0)
        .bind(name)
        .fetch_optional(conn)
        .await
        .db()?
        .ok_or(StoreError::NotFound("function"))
}

pub(crate) async fn versions(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
) -> StoreResult<Vec<FunctionVersion>> {
    let mut tx = begin_read(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let id = function_id(&mut tx, connector, name).await?;
    let found = sqlx::query(
        "SELECT hash, definition, first_seen_at FROM function_versions \
         WHERE function_id = ? ORDER BY first_seen_at, hash",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .db()?;
    found
        .iter()
        .map(|row| {
            Ok(FunctionVersion {
                hash: rows::get(row, "hash")?,
                definition: rows::json_col(row, "definition")?,
                first_seen_at: rows::ts(row, "first_seen_at")?,
            })
        })
        .collect()
}

pub(crate) async fn set_floor(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    floor: FloorPolicy,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<Function> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let done = sqlx::query(
        "UPDATE functions SET floor = ?, updated_at = ? WHERE connector_id = ? AND name = ?",
    )
    .bind(floor.as_str())
    .bind(now.millis())
    .bind(connector.0)
    .bind(name)
    .execute(&mut *tx)
    .await
    .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("function"));
    }
    audit::append(&mut tx, event).await?;
    let function = function(&mut tx, connector, name).await?;
    tx.commit().await.db()?;
    Ok(function)
}

#[allow(clippy::too_many_arguments)] // mirrors the trait method, one argument per input
pub(crate) async fn set_preference(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    member: UserId,
    preference: Option<MemberPreference>,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<FunctionView> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let id = function_id(&mut tx, connector, name).await?;
    if orgs::role_of(&mut tx, org, member).await?.is_none() {
        return Err(StoreError::NotFound("member"));
    }
    match preference {
        Some(p) => sqlx::query(
            "INSERT INTO member_preferences (function_id, user_id, preference, updated_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (function_id, user_id) \
             DO UPDATE SET preference = excluded.preference, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(member.0)
        .bind(p.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .db()?,
        None => sqlx::query("DELETE FROM member_preferences WHERE function_id = ? AND user_id = ?")
            .bind(id)
            .bind(member.0)
            .execute(&mut *tx)
            .await
            .db()?,
    };
    audit::append(&mut tx, event).await?;
    let updated = view(&mut tx, connector, name, member).await?;
    tx.commit().await.db()?;
    Ok(updated)
}

pub(crate) async fn approve(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    hash: &str,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<Function> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let current = function(&mut tx, connector, name).await?;
    if current.review_state == ReviewState::Removed {
        return Err(StoreError::conflict(
            "name",
            format!("function \"{name}\" is no longer offered by the connector"),
        ));
    }
    if current.definition_hash != hash {
        return Err(StoreError::conflict(
            "hash",
            format!(
                "the definition of function \"{name}\" changed since it was reviewed; \
                 review the current definition"
            ),
        ));
    }
    sqlx::query(
        "UPDATE functions SET approved_hash = ?, review_state = ?, updated_at = ? WHERE id = ?",
    )
    .bind(hash)
    .bind(ReviewState::Approved.as_str())
    .bind(now.millis())
    .bind(current.id.0)
    .execute(&mut *tx)
    .await
    .db()?;
    audit::append(&mut tx, event).await?;
    let approved = function(&mut tx, connector, name).await?;
    tx.commit().await.db()?;
    Ok(approved)
}
