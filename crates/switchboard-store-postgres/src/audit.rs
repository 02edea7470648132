//! The audit log: appending events inside other writes' transactions, and listing an
//! organization's log.

use sqlx::{PgConnection, PgPool};
use switchboard_domain::{AuditEvent, AuditEventId, NewAuditEvent};
use switchboard_store::{AuditFilter, Page, PageRequest, StoreResult};

use crate::error::backend;
use crate::rows::{self, AUDIT_COLUMNS};

/// Appends `event` on `conn`, stamped with a fresh id and the store's clock. Called inside the
/// transaction of the change it records, so both commit or neither does.
pub(crate) async fn append(conn: &mut PgConnection, event: &NewAuditEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, org_id, actor_id, action, target, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(AuditEventId::new().0)
    .bind(event.org_id.map(|o| o.0))
    .bind(event.actor_id.map(|u| u.0))
    .bind(event.action.as_str())
    .bind(event.target.as_deref())
    .bind(&event.detail)
    .bind(switchboard_store::now().millis())
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn append_audit(pool: &PgPool, event: &NewAuditEvent) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    append(&mut conn, event).await
}

pub(crate) async fn list_audit(
    pool: &PgPool,
    filter: &AuditFilter,
    page: PageRequest,
) -> StoreResult<Page<AuditEvent>> {
    // Ids are UUIDv7 and PostgreSQL compares UUIDs bytewise, so id order is write order and the
    // cursor is simply the last id seen, in whichever direction the list runs.
    let (cursor_op, order) = if filter.newest_first {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    // Events without an organization (sign-ins) belong to the log of every organization their
    // actor is a member of now; membership is checked at read time, so a removed member's
    // sign-ins leave the log with them.
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_events a \
         WHERE (a.org_id = $1 OR (a.org_id IS NULL AND a.actor_id IN \
                (SELECT m.user_id FROM memberships m WHERE m.org_id = $1))) \
           AND ($2::text IS NULL OR a.action = $2) \
           AND ($3::uuid IS NULL OR a.actor_id = $3) \
           AND ($4::bigint IS NULL OR a.created_at >= $4) \
           AND ($5::bigint IS NULL OR a.created_at < $5) \
           AND ($6::uuid IS NULL OR a.id {cursor_op} $6) \
         ORDER BY a.id {order} LIMIT $7"
    );
    let rows = sqlx::query(&sql)
        .bind(filter.org_id.0)
        .bind(filter.action.map(|a| a.as_str()))
        .bind(filter.actor_id.map(|u| u.0))
        .bind(filter.since.map(|t| t.millis()))
        .bind(filter.until.map(|t| t.millis()))
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    let events = rows
        .iter()
        .map(rows::audit_event)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(events, page.limit, |e| e.id.0))
}
