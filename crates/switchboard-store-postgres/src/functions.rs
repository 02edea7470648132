//! Functions: recording what discovery found (with definition pinning), the admin's floors,
//! members' preferences and approvals.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, PgPool};
use switchboard_domain::{
    ConnectorId, FloorPolicy, Function, FunctionId, FunctionVersion, MemberPreference,
    NewAuditEvent, NewFunctionState, OrgId, ReviewState, SyncSummary, Timestamp, UserId,
};
use switchboard_store::{
    DiscoveredFunction, FunctionView, Page, PageRequest, StoreError, StoreResult,
};
use uuid::Uuid;

use crate::audit::append;
use crate::connectors::fetch_connector;
use crate::error::backend;
use crate::rows::{self, FUNCTION_COLUMNS};

/// A function's stored state as far as discovery needs it.
struct Known {
    id: Uuid,
    definition_hash: String,
    approved_hash: Option<String>,
    review_state: ReviewState,
}

fn definition_json(f: &DiscoveredFunction) -> StoreResult<serde_json::Value> {
    serde_json::to_value(&f.definition)
        .map_err(|e| StoreError::Backend(format!("cannot encode function definition: {e}")))
}

/// Keeps every definition just seen in its function's history, in one statement; a
/// definition seen before keeps the time it was first seen.
async fn keep_versions(conn: &mut PgConnection, seen: Versions, now: Timestamp) -> StoreResult<()> {
    if seen.ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO function_versions (function_id, hash, definition, first_seen_at) \
         SELECT id, hash, definition, $4 \
         FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[]) AS v (id, hash, definition) \
         ON CONFLICT (function_id, hash) DO NOTHING",
    )
    .bind(seen.ids)
    .bind(seen.hashes)
    .bind(seen.definitions)
    .bind(now.millis())
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// The definitions a discovery pass saw, as columns for [`keep_versions`].
#[derive(Default)]
struct Versions {
    ids: Vec<Uuid>,
    hashes: Vec<String>,
    definitions: Vec<serde_json::Value>,
}

impl Versions {
    fn push(&mut self, id: Uuid, found: &DiscoveredFunction, definition: serde_json::Value) {
        self.ids.push(id);
        self.hashes.push(found.hash.clone());
        self.definitions.push(definition);
    }
}

pub(crate) async fn sync_functions(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    found: &[DiscoveredFunction],
    new_functions: NewFunctionState,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<SyncSummary> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Locking the connector serializes discovery passes over it, so two replicas syncing at
    // once cannot both insert the same new function or interleave their updates.
    fetch_connector(&mut tx, org, connector, true).await?;

    let known_rows: Vec<(Uuid, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT id, name, definition_hash, approved_hash, review_state \
         FROM functions WHERE connector_id = $1 ORDER BY name COLLATE \"C\"",
    )
    .bind(connector.0)
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let mut known = HashMap::with_capacity(known_rows.len());
    let mut names = Vec::with_capacity(known_rows.len());
    for (id, name, definition_hash, approved_hash, state) in known_rows {
        let review_state = rows::parse::<ReviewState>("review_state", &state)?;
        names.push(name.clone());
        known.insert(
            name,
            Known {
                id,
                definition_hash,
                approved_hash,
                review_state,
            },
        );
    }

    let mut summary = SyncSummary::default();
    let mut versions = Versions::default();
    let mut seen = HashSet::with_capacity(found.len());
    for f in found {
        let name = &f.definition.name;
        // A server that lists a name twice is buggy; the first definition counts, as on every
        // backend, rather than failing the whole discovery pass.
        if !seen.insert(name.as_str()) {
            continue;
        }
        match known.get(name) {
            None => {
                let (state, approved) = ReviewState::after_discovery(None, &f.hash, new_functions);
                let id = FunctionId::new().0;
                let definition = definition_json(f)?;
                sqlx::query(
                    "INSERT INTO functions (id, connector_id, name, definition, definition_hash, \
                     approved_hash, review_state, floor, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                )
                .bind(id)
                .bind(connector.0)
                .bind(name)
                .bind(&definition)
                .bind(&f.hash)
                .bind(approved.as_deref())
                .bind(state.as_str())
                .bind(FloorPolicy::Allowed.as_str())
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                versions.push(id, f, definition);
                summary.added.push(name.clone());
            }
            Some(k) => {
                let (state, approved) = ReviewState::after_discovery(
                    Some(k.approved_hash.as_deref()),
                    &f.hash,
                    new_functions,
                );
                let moved = k.definition_hash != f.hash;
                // A function the server offers again after dropping it is reported as added:
                // for the people reading the summary it has (re)appeared.
                if k.review_state == ReviewState::Removed {
                    summary.added.push(name.clone());
                } else if moved {
                    summary.changed.push(name.clone());
                } else {
                    summary.unchanged += 1;
                }
                // Written whenever anything differs, not only the hash, so a row whose state
                // disagrees with its hashes (say, after an import) is put right.
                let definition = definition_json(f)?;
                if moved || state != k.review_state || approved != k.approved_hash {
                    sqlx::query(
                        "UPDATE functions SET definition = $2, definition_hash = $3, \
                         approved_hash = $4, review_state = $5, updated_at = $6 WHERE id = $1",
                    )
                    .bind(k.id)
                    .bind(&definition)
                    .bind(&f.hash)
                    .bind(approved.as_deref())
                    .bind(state.as_str())
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                }
                // Offered again unchanged, the definition is normally in the history already;
                // recording it anyway completes a history that lacks it (an imported
                // snapshot, say) at the cost of no extra statement.
                versions.push(k.id, f, definition);
            }
        }
    }

    keep_versions(&mut tx, versions, now).await?;

    let gone: Vec<Uuid> = names
        .iter()
        .filter(|name| !seen.contains(name.as_str()))
        .filter_map(|name| known.get(name).map(|k| (name, k)))
        .filter(|(_, k)| k.review_state != ReviewState::Removed)
        .map(|(name, k)| {
            summary.removed.push(name.clone());
            k.id
        })
        .collect();
    if !gone.is_empty() {
        // The approved hash stays: if the function comes back unchanged it is approved again.
        sqlx::query("UPDATE functions SET review_state = $2, updated_at = $3 WHERE id = ANY($1)")
            .bind(&gone)
            .bind(ReviewState::Removed.as_str())
            .bind(now.millis())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }

    summary.added.sort();
    summary.changed.sort();
    summary.removed.sort();
    if !(summary.added.is_empty() && summary.changed.is_empty() && summary.removed.is_empty()) {
        let mut event = audit.clone();
        event.detail = with_summary(&audit.detail, &summary)?;
        append(&mut tx, &event).await?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(summary)
}

/// The caller's detail with the summary added under `summary`, so the log says what changed.
fn with_summary(
    detail: &serde_json::Value,
    summary: &SyncSummary,
) -> StoreResult<serde_json::Value> {
    let summary = serde_json::to_value(summary)
        .map_err(|e| StoreError::Backend(format!("cannot encode sync summary: {e}")))?;
    Ok(match detail {
        serde_json::Value::Object(base) => {
            let mut merged = base.clone();
            merged.insert("summary".to_owned(), summary);
            serde_json::Value::Object(merged)
        }
        serde_json::Value::Null => serde_json::json!({ "summary": summary }),
        other => serde_json::json!({ "detail": other, "summary": summary }),
    })
}

/// One function of a connector (checked to be `org`'s), locked for update when `lock` is set.
async fn fetch_function(
    conn: &mut PgConnection,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    lock: bool,
) -> StoreResult<Function> {
    fetch_connector(conn, org, connector, false).await?;
    let sql = format!(
        "SELECT {FUNCTION_COLUMNS} FROM functions f WHERE f.connector_id = $1 AND f.name = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(connector.0)
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("function"))?;
    rows::function(&row)
}

async fn fetch_views(
    conn: &mut PgConnection,
    org: OrgId,
    connector: ConnectorId,
    name: Option<&str>,
    member: UserId,
) -> StoreResult<Vec<FunctionView>> {
    fetch_connector(conn, org, connector, false).await?;
    let sql = format!(
        "SELECT {FUNCTION_COLUMNS}, p.preference FROM functions f \
         LEFT JOIN member_preferences p ON p.function_id = f.id AND p.user_id = $3 \
         WHERE f.connector_id = $1 AND ($2::text IS NULL OR f.name = $2) ORDER BY f.name COLLATE \"C\""
    );
    sqlx::query(&sql)
        .bind(connector.0)
        .bind(name)
        .bind(member.0)
        .fetch_all(conn)
        .await
        .map_err(backend)?
        .iter()
        .map(rows::function_view)
        .collect()
}

pub(crate) async fn list_functions_page(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    member: UserId,
    page: PageRequest,
) -> StoreResult<Page<FunctionView>> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    fetch_connector(&mut conn, org, connector, false).await?;
    // Keyset paging on the name (unique per connector), by its bytes as in `fetch_views`. The
    // cursor's name is looked up among this connector's functions, so another connector's id
    // finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND f.name COLLATE \"C\" > (SELECT k.name FROM functions k \
               WHERE k.id = $4 AND k.connector_id = $1)"
        }
        None => "",
    };
    let sql = format!(
        "SELECT {FUNCTION_COLUMNS}, p.preference FROM functions f \
         LEFT JOIN member_preferences p ON p.function_id = f.id AND p.user_id = $2 \
         WHERE f.connector_id = $1{cursor} ORDER BY f.name COLLATE \"C\" LIMIT $3"
    );
    let mut query = sqlx::query(&sql)
        .bind(connector.0)
        .bind(member.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let views = query
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?
        .iter()
        .map(rows::function_view)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(views, page.limit, |v| v.function.id.0))
}

pub(crate) async fn function(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    member: UserId,
) -> StoreResult<FunctionView> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    fetch_views(&mut conn, org, connector, Some(name), member)
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound("function"))
}

pub(crate) async fn function_versions(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
) -> StoreResult<Vec<FunctionVersion>> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    let function = fetch_function(&mut conn, org, connector, name, false).await?;
    sqlx::query(
        "SELECT hash, definition, first_seen_at FROM function_versions \
         WHERE function_id = $1 ORDER BY first_seen_at, hash COLLATE \"C\"",
    )
    .bind(function.id.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?
    .iter()
    .map(rows::function_version)
    .collect()
}

pub(crate) async fn set_floor(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    floor: FloorPolicy,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<Function> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let mut function = fetch_function(&mut tx, org, connector, name, true).await?;
    sqlx::query("UPDATE functions SET floor = $2, updated_at = $3 WHERE id = $1")
        .bind(function.id.0)
        .bind(floor.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    function.floor = floor;
    function.updated_at = now;
    Ok(function)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn set_preference(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    member: UserId,
    preference: Option<MemberPreference>,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<FunctionView> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let function = fetch_function(&mut tx, org, connector, name, false).await?;
    // Preferences belong to members: one for an outsider would never be cleaned up by
    // `remove_member` and would reveal nothing useful anyway.
    let is_member: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org.0)
            .bind(member.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    if is_member.is_none() {
        return Err(StoreError::NotFound("member"));
    }
    let query = match preference {
        Some(p) => sqlx::query(
            "INSERT INTO member_preferences (function_id, user_id, preference, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (function_id, user_id) \
             DO UPDATE SET preference = EXCLUDED.preference, updated_at = EXCLUDED.updated_at",
        )
        .bind(function.id.0)
        .bind(member.0)
        .bind(p.as_str())
        .bind(now.millis()),
        None => {
            sqlx::query("DELETE FROM member_preferences WHERE function_id = $1 AND user_id = $2")
                .bind(function.id.0)
                .bind(member.0)
        }
    };
    query.execute(&mut *tx).await.map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(FunctionView {
        function,
        preference,
    })
}

pub(crate) async fn approve_function(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    name: &str,
    hash: &str,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<Function> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // The row lock makes the hash comparison and the approval one step: a discovery pass that
    // changes the definition meanwhile either lands before (and the hash no longer matches) or
    // after (and sees the approval).
    let mut function = fetch_function(&mut tx, org, connector, name, true).await?;
    if function.review_state == ReviewState::Removed {
        return Err(StoreError::conflict(
            "name",
            format!("function \"{name}\" is no longer offered by the connector"),
        ));
    }
    if function.definition_hash != hash {
        return Err(StoreError::conflict(
            "hash",
            format!(
                "the definition of function \"{name}\" changed since it was reviewed; \
                 review the current definition"
            ),
        ));
    }
    sqlx::query(
        "UPDATE functions SET approved_hash = $2, review_state = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(function.id.0)
    .bind(hash)
    .bind(ReviewState::Approved.as_str())
    .bind(now.millis())
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    function.approved_hash = Some(hash.to_owned());
    function.review_state = ReviewState::Approved;
    function.updated_at = now;
    Ok(function)
}
