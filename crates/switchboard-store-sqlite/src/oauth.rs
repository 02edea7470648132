//! OAuth state: client registrations, authorizations awaiting their callback, and grants with
//! their refresh lease.
//!
//! The lease is plain SQL on purpose (a conditional `UPDATE` whose `WHERE` says who may take
//! it), the same statement as in the PostgreSQL backend, so both backends give one answer to
//! "who may refresh now". In SQLite every write runs under the single writer lock anyway.

use sqlx::SqlitePool;
use switchboard_domain::{
    ConnectorId, GrantId, GrantStatus, NewAuditEvent, OrgId, Timestamp, UserId,
};
use switchboard_store::{
    NewGrant, OAuthGrant, PendingAuthorization, StoreError, StoreResult, StoredOAuthClient,
};

use crate::connectors::{check_member, check_scope};
use crate::error::DbResultExt;
use crate::rows::{self, CLIENT_COLS, GRANT_COLS, PENDING_COLS};
use crate::{audit, begin_read, begin_write};

// ---- client registrations -----------------------------------------------------------------

pub(crate) async fn client(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    issuer: &str,
) -> StoreResult<Option<StoredOAuthClient>> {
    let mut tx = begin_read(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let row = sqlx::query(&format!(
        "SELECT {CLIENT_COLS} FROM oauth_clients WHERE connector_id = ? AND issuer = ?"
    ))
    .bind(connector.0)
    .bind(issuer)
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    row.as_ref().map(rows::oauth_client).transpose()
}

pub(crate) async fn put_client(
    pool: &SqlitePool,
    org: OrgId,
    client: &StoredOAuthClient,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, client.connector).await?;
    // A new registration replaces the old one whole, id included: it is a different client at
    // the authorization server, not an edit of the old one.
    sqlx::query("DELETE FROM oauth_clients WHERE connector_id = ? AND issuer = ?")
        .bind(client.connector.0)
        .bind(&client.issuer)
        .execute(&mut *tx)
        .await
        .db()?;
    sqlx::query(&format!(
        "INSERT INTO oauth_clients ({CLIENT_COLS}) VALUES (?, ?, ?, ?, ?, ?)"
    ))
    .bind(client.id.0)
    .bind(client.connector.0)
    .bind(&client.issuer)
    .bind(client.source.as_str())
    .bind(&client.sealed)
    .bind(client.created_at.millis())
    .execute(&mut *tx)
    .await
    .unique_as("id", || {
        "an oauth client with this id already exists".to_owned()
    })?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}

pub(crate) async fn delete_clients(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
) -> StoreResult<u64> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let done = sqlx::query("DELETE FROM oauth_clients WHERE connector_id = ?")
        .bind(connector.0)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(done.rows_affected())
}

// ---- pending authorizations ---------------------------------------------------------------

pub(crate) async fn create_pending(
    pool: &SqlitePool,
    pending: &PendingAuthorization,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, pending.org, pending.connector).await?;
    sqlx::query(&format!(
        "INSERT INTO oauth_pending ({PENDING_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&pending.state_hash)
    .bind(pending.org.0)
    .bind(pending.connector.0)
    .bind(pending.user.0)
    .bind(pending.holder.map(|u| u.0))
    .bind(&pending.binding_hash)
    .bind(&pending.sealed)
    .bind(pending.created_at.millis())
    .bind(pending.expires_at.millis())
    .execute(&mut *tx)
    .await
    .unique_as("state", || {
        "an authorization with this state is already pending".to_owned()
    })?;
    tx.commit().await.db()
}

pub(crate) async fn take_pending(
    pool: &SqlitePool,
    state_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<PendingAuthorization>> {
    let mut tx = begin_write(pool).await?;
    // Deleting and returning in one statement is what makes the take one-time: of two
    // callbacks with the same state, only one gets the row.
    let row = sqlx::query(&format!(
        "DELETE FROM oauth_pending WHERE state_hash = ? RETURNING {PENDING_COLS}"
    ))
    .bind(state_hash)
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    let taken = row.as_ref().map(rows::pending).transpose()?;
    tx.commit().await.db()?;
    Ok(taken.filter(|p| p.expires_at > now))
}

pub(crate) async fn delete_expired_pending(pool: &SqlitePool, now: Timestamp) -> StoreResult<u64> {
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query("DELETE FROM oauth_pending WHERE expires_at <= ?")
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(done.rows_affected())
}

// ---- grants -------------------------------------------------------------------------------

pub(crate) async fn grant(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    holder: Option<UserId>,
) -> StoreResult<Option<OAuthGrant>> {
    let mut tx = begin_read(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    // `IS` compares NULL with NULL as equal, so one statement serves both kinds of holder.
    let row = sqlx::query(&format!(
        "SELECT {GRANT_COLS} FROM oauth_grants WHERE connector_id = ? AND user_id IS ?"
    ))
    .bind(connector.0)
    .bind(holder.map(|u| u.0))
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    row.as_ref().map(rows::oauth_grant).transpose()
}

pub(crate) async fn grant_by_id(pool: &SqlitePool, id: GrantId) -> StoreResult<OAuthGrant> {
    let row = sqlx::query(&format!(
        "SELECT {GRANT_COLS} FROM oauth_grants WHERE id = ?"
    ))
    .bind(id.0)
    .fetch_optional(pool)
    .await
    .db()?
    .ok_or(StoreError::NotFound("oauth grant"))?;
    rows::oauth_grant(&row)
}

pub(crate) async fn grants_of_connector(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
) -> StoreResult<Vec<OAuthGrant>> {
    let mut tx = begin_read(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let found = sqlx::query(&format!(
        "SELECT {GRANT_COLS} FROM oauth_grants WHERE connector_id = ? ORDER BY id"
    ))
    .bind(connector.0)
    .fetch_all(&mut *tx)
    .await
    .db()?;
    found.iter().map(rows::oauth_grant).collect()
}

pub(crate) async fn save_grant(
    pool: &SqlitePool,
    org: OrgId,
    new: &NewGrant,
    event: &NewAuditEvent,
) -> StoreResult<OAuthGrant> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, new.connector).await?;
    if let Some(holder) = new.holder {
        check_member(&mut tx, org, holder).await?;
    }
    // Update first, insert if there was nothing: the writer lock makes the pair atomic, and
    // one statement covers both kinds of holder (an upsert would need a different conflict
    // target for the organization's partial index).
    let updated = sqlx::query(&format!(
        "UPDATE oauth_grants SET issuer = ?, status = 'active', reason = NULL, sealed = ?, \
         expires_at = ?, version = version + 1, lease_holder = NULL, lease_until = NULL, \
         updated_at = ? WHERE connector_id = ? AND user_id IS ? RETURNING {GRANT_COLS}"
    ))
    .bind(&new.issuer)
    .bind(&new.sealed)
    .bind(new.expires_at.map(Timestamp::millis))
    .bind(new.now.millis())
    .bind(new.connector.0)
    .bind(new.holder.map(|u| u.0))
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    let row = match updated {
        Some(row) => row,
        None => sqlx::query(&format!(
            "INSERT INTO oauth_grants ({GRANT_COLS}) \
             VALUES (?, ?, ?, ?, 'active', NULL, ?, ?, 1, NULL, NULL, ?, ?) \
             RETURNING {GRANT_COLS}"
        ))
        .bind(new.id.0)
        .bind(new.connector.0)
        .bind(new.holder.map(|u| u.0))
        .bind(&new.issuer)
        .bind(&new.sealed)
        .bind(new.expires_at.map(Timestamp::millis))
        .bind(new.now.millis())
        .bind(new.now.millis())
        .fetch_one(&mut *tx)
        .await
        .unique_as("id", || {
            "an oauth grant with this id already exists".to_owned()
        })?,
    };
    let saved = rows::oauth_grant(&row)?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()?;
    Ok(saved)
}

pub(crate) async fn claim_refresh(
    pool: &SqlitePool,
    id: GrantId,
    lease_holder: &str,
    now: Timestamp,
    until: Timestamp,
) -> StoreResult<Option<OAuthGrant>> {
    let mut tx = begin_write(pool).await?;
    let row = sqlx::query(&format!(
        "UPDATE oauth_grants SET lease_holder = ?, lease_until = ? \
         WHERE id = ? AND status = 'active' AND (lease_until IS NULL OR lease_until < ?) \
         RETURNING {GRANT_COLS}"
    ))
    .bind(lease_holder)
    .bind(until.millis())
    .bind(id.0)
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    let claimed = row.as_ref().map(rows::oauth_grant).transpose()?;
    tx.commit().await.db()?;
    Ok(claimed)
}

pub(crate) async fn finish_refresh(
    pool: &SqlitePool,
    id: GrantId,
    lease_holder: &str,
    sealed: &str,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> StoreResult<bool> {
    let mut tx = begin_write(pool).await?;
    // No check of lease_until: see Store::finish_grant_refresh for why an expired lease that
    // nobody took over still lets its holder store the rotated tokens.
    let done = sqlx::query(
        "UPDATE oauth_grants SET sealed = ?, expires_at = ?, version = version + 1, \
         lease_holder = NULL, lease_until = NULL, updated_at = ? \
         WHERE id = ? AND lease_holder = ?",
    )
    .bind(sealed)
    .bind(expires_at.map(Timestamp::millis))
    .bind(now.millis())
    .bind(id.0)
    .bind(lease_holder)
    .execute(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn release_refresh(
    pool: &SqlitePool,
    id: GrantId,
    lease_holder: &str,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    sqlx::query(
        "UPDATE oauth_grants SET lease_holder = NULL, lease_until = NULL \
         WHERE id = ? AND lease_holder = ?",
    )
    .bind(id.0)
    .bind(lease_holder)
    .execute(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()
}

pub(crate) async fn revoke_grant(
    pool: &SqlitePool,
    id: GrantId,
    version: i64,
    reason: &str,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<bool> {
    let mut tx = begin_write(pool).await?;
    let current: Option<(i64, String)> =
        sqlx::query_as("SELECT version, status FROM oauth_grants WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
    match current {
        None => return Err(StoreError::NotFound("oauth grant")),
        Some((v, status)) if v != version || status != GrantStatus::Active.as_str() => {
            return Ok(false);
        }
        Some(_) => {}
    }
    sqlx::query(
        "UPDATE oauth_grants SET status = 'revoked', reason = ?, lease_holder = NULL, \
         lease_until = NULL, updated_at = ? WHERE id = ?",
    )
    .bind(reason)
    .bind(now.millis())
    .bind(id.0)
    .execute(&mut *tx)
    .await
    .db()?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()?;
    Ok(true)
}

pub(crate) async fn delete_grant(
    pool: &SqlitePool,
    org: OrgId,
    connector: ConnectorId,
    holder: Option<UserId>,
    event: &NewAuditEvent,
) -> StoreResult<bool> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, connector).await?;
    let done = sqlx::query("DELETE FROM oauth_grants WHERE connector_id = ? AND user_id IS ?")
        .bind(connector.0)
        .bind(holder.map(|u| u.0))
        .execute(&mut *tx)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        // Nothing was disconnected, so there is nothing to record.
        return Ok(false);
    }
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()?;
    Ok(true)
}
