//! The audit log: appending an event (inside the caller's transaction or batch) and listing
//! them.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use switchboard_domain::{AuditEvent, AuditEventId, NewAuditEvent};
use switchboard_store::{AuditFilter, Page, PageRequest, StoreResult};

use crate::batch::Batch;
use crate::error::DbResultExt;
use crate::rows::{self, AUDIT_COLS};

const AUDIT_INSERT: &str =
    "INSERT INTO audit_events (id, org_id, actor_id, action, target, detail, created_at)";

/// Appends `event`, stamped now, on `conn`. Writes call this inside their own transaction so
/// the change and its record commit together.
pub(crate) async fn append(conn: &mut SqliteConnection, event: &NewAuditEvent) -> StoreResult<()> {
    let detail = rows::to_json("audit detail", &event.detail)?;
    sqlx::query(&format!("{AUDIT_INSERT} VALUES (?, ?, ?, ?, ?, ?, ?)"))
        .bind(AuditEventId::new().0)
        .bind(event.org_id.map(|o| o.0))
        .bind(event.actor_id.map(|u| u.0))
        .bind(event.action.as_str())
        .bind(event.target.as_deref())
        .bind(detail)
        .bind(switchboard_store::now().millis())
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Adds to `batch` the append of `events`, stamped now, written only if `condition` (which
/// writes an SQL expression) holds when the statement runs.
pub(crate) fn push_append(
    batch: &mut Batch,
    events: &[NewAuditEvent],
    condition: &dyn Fn(&mut Batch),
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let now = switchboard_store::now().millis();
    batch.push(AUDIT_INSERT).push(" SELECT * FROM (VALUES ");
    for (i, event) in events.iter().enumerate() {
        batch
            .push(if i == 0 { "(" } else { ", (" })
            .bind(AuditEventId::new().0)
            .push(", ")
            .bind(event.org_id.map(|o| o.0))
            .push(", ")
            .bind(event.actor_id.map(|u| u.0))
            .push(", ")
            .bind(event.action.as_str())
            .push(", ")
            .bind(event.target.as_deref())
            .push(", ")
            .bind(rows::to_json("audit detail", &event.detail)?)
            .push(", ")
            .bind(now)
            .push(")");
    }
    batch.push(") WHERE ");
    condition(batch);
    batch.end();
    Ok(())
}

/// An organization's events: those recorded in it, and the organization-less events (such
/// as sign-ins) of its current members.
pub(crate) async fn list(
    pool: &SqlitePool,
    filter: &AuditFilter,
    page: PageRequest,
) -> StoreResult<Page<AuditEvent>> {
    let org = filter.org_id.0;
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {AUDIT_COLS} FROM audit_events WHERE (org_id = "
    ));
    q.push_bind(org);
    q.push(
        " OR (org_id IS NULL AND actor_id IN \
         (SELECT user_id FROM memberships WHERE org_id = ",
    );
    q.push_bind(org);
    q.push(")))");
    if let Some(action) = filter.action {
        q.push(" AND action = ").push_bind(action.as_str());
    }
    if let Some(actor) = filter.actor_id {
        q.push(" AND actor_id = ").push_bind(actor.0);
    }
    if let Some(since) = filter.since {
        q.push(" AND created_at >= ").push_bind(since.millis());
    }
    if let Some(until) = filter.until {
        q.push(" AND created_at < ").push_bind(until.millis());
    }
    // Ids are UUIDv7 stored as big-endian bytes, so comparing the BLOBs compares write order.
    if let Some(after) = page.after {
        q.push(if filter.newest_first {
            " AND id < "
        } else {
            " AND id > "
        })
        .push_bind(after);
    }
    q.push(if filter.newest_first {
        " ORDER BY id DESC LIMIT "
    } else {
        " ORDER BY id ASC LIMIT "
    });
    q.push_bind(i64::from(page.limit) + 1);
    let found = q.build().fetch_all(pool).await.db()?;
    let events = found
        .iter()
        .map(rows::audit_event)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(events, page.limit, |e| e.id.0))
}
