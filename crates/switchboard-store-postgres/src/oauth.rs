//! OAuth state: client registrations, authorizations awaiting their callback, and grants with
//! their refresh lease.
//!
//! Several replicas share one database, so everything that must happen once is one statement
//! whose `WHERE` says who may do it: taking a pending authorization is `DELETE … RETURNING`,
//! claiming the refresh lease is a conditional `UPDATE`. Under READ COMMITTED a second
//! statement on the same row waits for the first to commit and then re-checks its `WHERE`
//! against the new row, so exactly one caller wins.

use sqlx::PgPool;
use switchboard_domain::{
    ConnectorId, GrantId, GrantStatus, NewAuditEvent, OrgId, Timestamp, UserId,
};
use switchboard_store::{
    NewGrant, OAuthGrant, PendingAuthorization, StoreError, StoreResult, StoredOAuthClient,
};

use crate::audit::append;
use crate::connectors::{check_member, check_scope};
use crate::error::{backend, unique_violation};
use crate::rows::{self, CLIENT_COLUMNS, GRANT_COLUMNS, PENDING_COLUMNS};

/// Maps a clash on a table's primary key (a caller-chosen id that is taken) to a conflict.
fn id_taken(e: sqlx::Error, pkey: &str, field: &'static str, what: &str) -> StoreError {
    if unique_violation(&e) == Some(pkey) {
        StoreError::conflict(field, format!("{what} already exists"))
    } else {
        backend(e)
    }
}

// ---- client registrations -----------------------------------------------------------------

pub(crate) async fn oauth_client(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    issuer: &str,
) -> StoreResult<Option<StoredOAuthClient>> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, connector, false).await?;
    let row = sqlx::query(&format!(
        "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE connector_id = $1 AND issuer = $2"
    ))
    .bind(connector.0)
    .bind(issuer)
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    row.as_ref().map(rows::oauth_client).transpose()
}

pub(crate) async fn put_oauth_client(
    pool: &PgPool,
    org: OrgId,
    client: &StoredOAuthClient,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, client.connector, true).await?;
    // A new registration replaces the old one whole, id included: it is a different client at
    // the authorization server, not an edit of the old one.
    sqlx::query(&format!(
        "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT ON CONSTRAINT oauth_clients_connector_id_issuer_key \
         DO UPDATE SET id = EXCLUDED.id, source = EXCLUDED.source, sealed = EXCLUDED.sealed, \
                       created_at = EXCLUDED.created_at"
    ))
    .bind(client.id.0)
    .bind(client.connector.0)
    .bind(&client.issuer)
    .bind(client.source.as_str())
    .bind(&client.sealed)
    .bind(client.created_at.millis())
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        id_taken(
            e,
            "oauth_clients_pkey",
            "id",
            "an oauth client with this id",
        )
    })?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}

pub(crate) async fn delete_oauth_clients(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
) -> StoreResult<u64> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, connector, false).await?;
    let deleted = sqlx::query("DELETE FROM oauth_clients WHERE connector_id = $1")
        .bind(connector.0)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
    tx.commit().await.map_err(backend)?;
    Ok(deleted)
}

// ---- pending authorizations ---------------------------------------------------------------

pub(crate) async fn create_pending(
    pool: &PgPool,
    pending: &PendingAuthorization,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, pending.org, pending.connector, true).await?;
    sqlx::query(&format!(
        "INSERT INTO oauth_pending ({PENDING_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
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
    .map_err(|e| {
        id_taken(
            e,
            "oauth_pending_pkey",
            "state",
            "an authorization with this state",
        )
    })?;
    tx.commit().await.map_err(backend)
}

pub(crate) async fn take_pending(
    pool: &PgPool,
    state_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<PendingAuthorization>> {
    // Deleting and returning in one statement is what makes the take one-time: of two
    // callbacks with the same state, on whichever replicas, only one gets the row.
    let row = sqlx::query(&format!(
        "DELETE FROM oauth_pending WHERE state_hash = $1 RETURNING {PENDING_COLUMNS}"
    ))
    .bind(state_hash)
    .fetch_optional(pool)
    .await
    .map_err(backend)?;
    let taken = row.as_ref().map(rows::pending).transpose()?;
    Ok(taken.filter(|p| p.expires_at > now))
}

pub(crate) async fn delete_expired_pending(pool: &PgPool, now: Timestamp) -> StoreResult<u64> {
    let deleted = sqlx::query("DELETE FROM oauth_pending WHERE expires_at <= $1")
        .bind(now.millis())
        .execute(pool)
        .await
        .map_err(backend)?
        .rows_affected();
    Ok(deleted)
}

// ---- grants -------------------------------------------------------------------------------

pub(crate) async fn oauth_grant(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    holder: Option<UserId>,
) -> StoreResult<Option<OAuthGrant>> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, connector, false).await?;
    let row = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants \
         WHERE connector_id = $1 AND user_id IS NOT DISTINCT FROM $2"
    ))
    .bind(connector.0)
    .bind(holder.map(|u| u.0))
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    row.as_ref().map(rows::oauth_grant).transpose()
}

pub(crate) async fn oauth_grant_by_id(pool: &PgPool, id: GrantId) -> StoreResult<OAuthGrant> {
    let row = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(pool)
    .await
    .map_err(backend)?
    .ok_or(StoreError::NotFound("oauth grant"))?;
    rows::oauth_grant(&row)
}

pub(crate) async fn oauth_grants_of_connector(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
) -> StoreResult<Vec<OAuthGrant>> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, connector, false).await?;
    let found = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE connector_id = $1 ORDER BY id"
    ))
    .bind(connector.0)
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    found.iter().map(rows::oauth_grant).collect()
}

pub(crate) async fn save_oauth_grant(
    pool: &PgPool,
    org: OrgId,
    new: &NewGrant,
    audit: &NewAuditEvent,
) -> StoreResult<OAuthGrant> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, new.connector, true).await?;
    if let Some(holder) = new.holder {
        check_member(&mut tx, org, holder).await?;
    }
    // Each kind of holder has its own partial unique index, and ON CONFLICT must name the one
    // it infers from.
    let target = if new.holder.is_some() {
        "(connector_id, user_id) WHERE user_id IS NOT NULL"
    } else {
        "(connector_id) WHERE user_id IS NULL"
    };
    let row = sqlx::query(&format!(
        "INSERT INTO oauth_grants ({GRANT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, 'active', NULL, $5, $6, 1, NULL, NULL, $7, $7) \
         ON CONFLICT {target} DO UPDATE SET issuer = EXCLUDED.issuer, status = 'active', \
             reason = NULL, sealed = EXCLUDED.sealed, expires_at = EXCLUDED.expires_at, \
             version = oauth_grants.version + 1, lease_holder = NULL, lease_until = NULL, \
             updated_at = EXCLUDED.updated_at \
         RETURNING {GRANT_COLUMNS}"
    ))
    .bind(new.id.0)
    .bind(new.connector.0)
    .bind(new.holder.map(|u| u.0))
    .bind(&new.issuer)
    .bind(&new.sealed)
    .bind(new.expires_at.map(Timestamp::millis))
    .bind(new.now.millis())
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| id_taken(e, "oauth_grants_pkey", "id", "an oauth grant with this id"))?;
    let saved = rows::oauth_grant(&row)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(saved)
}

pub(crate) async fn claim_grant_refresh(
    pool: &PgPool,
    id: GrantId,
    lease_holder: &str,
    now: Timestamp,
    until: Timestamp,
) -> StoreResult<Option<OAuthGrant>> {
    let row = sqlx::query(&format!(
        "UPDATE oauth_grants SET lease_holder = $2, lease_until = $3 \
         WHERE id = $1 AND status = 'active' AND (lease_until IS NULL OR lease_until < $4) \
         RETURNING {GRANT_COLUMNS}"
    ))
    .bind(id.0)
    .bind(lease_holder)
    .bind(until.millis())
    .bind(now.millis())
    .fetch_optional(pool)
    .await
    .map_err(backend)?;
    row.as_ref().map(rows::oauth_grant).transpose()
}

pub(crate) async fn finish_grant_refresh(
    pool: &PgPool,
    id: GrantId,
    lease_holder: &str,
    sealed: &str,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> StoreResult<bool> {
    // No check of lease_until: see Store::finish_grant_refresh for why an expired lease that
    // nobody took over still lets its holder store the rotated tokens.
    let updated = sqlx::query(
        "UPDATE oauth_grants SET sealed = $3, expires_at = $4, version = version + 1, \
         lease_holder = NULL, lease_until = NULL, updated_at = $5 \
         WHERE id = $1 AND lease_holder = $2",
    )
    .bind(id.0)
    .bind(lease_holder)
    .bind(sealed)
    .bind(expires_at.map(Timestamp::millis))
    .bind(now.millis())
    .execute(pool)
    .await
    .map_err(backend)?
    .rows_affected();
    Ok(updated == 1)
}

pub(crate) async fn release_grant_refresh(
    pool: &PgPool,
    id: GrantId,
    lease_holder: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE oauth_grants SET lease_holder = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_holder = $2",
    )
    .bind(id.0)
    .bind(lease_holder)
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn revoke_oauth_grant(
    pool: &PgPool,
    id: GrantId,
    version: i64,
    reason: &str,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Locked, so a refresh or a new authorization cannot store newer tokens between this
    // check and the update.
    let current: Option<(i64, String)> =
        sqlx::query_as("SELECT version, status FROM oauth_grants WHERE id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    match current {
        None => return Err(StoreError::NotFound("oauth grant")),
        Some((v, status)) if v != version || status != GrantStatus::Active.as_str() => {
            return Ok(false);
        }
        Some(_) => {}
    }
    sqlx::query(
        "UPDATE oauth_grants SET status = 'revoked', reason = $2, lease_holder = NULL, \
         lease_until = NULL, updated_at = $3 WHERE id = $1",
    )
    .bind(id.0)
    .bind(reason)
    .bind(now.millis())
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(true)
}

pub(crate) async fn delete_oauth_grant(
    pool: &PgPool,
    org: OrgId,
    connector: ConnectorId,
    holder: Option<UserId>,
    audit: &NewAuditEvent,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, connector, false).await?;
    let deleted = sqlx::query(
        "DELETE FROM oauth_grants WHERE connector_id = $1 AND user_id IS NOT DISTINCT FROM $2",
    )
    .bind(connector.0)
    .bind(holder.map(|u| u.0))
    .execute(&mut *tx)
    .await
    .map_err(backend)?
    .rows_affected();
    if deleted == 0 {
        // Nothing was disconnected, so there is nothing to record.
        return Ok(false);
    }
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(true)
}
