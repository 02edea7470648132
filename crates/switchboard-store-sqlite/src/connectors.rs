//! Connectors and their stored credentials, always looked up within one organization.

use sqlx::{SqliteConnection, SqlitePool};
use switchboard_domain::{Connector, ConnectorId, NewAuditEvent, OrgId, Timestamp, UserId};
use switchboard_store::{
    ConnectorPatch, NewConnector, Page, PageRequest, StoreError, StoreResult, StoredCredential,
};
use uuid::Uuid;

use crate::error::DbResultExt;
use crate::rows::{self, CONNECTOR_SELECT};
use crate::{audit, begin_read, begin_write, orgs};

fn name_taken(name: &str) -> String {
    format!("a connector named \"{name}\" already exists in this organization")
}

/// Fails with `NotFound("connector")` unless connector `id` belongs to `org`: the one check
/// that keeps every connector-scoped method inside its organization.
pub(crate) async fn check_scope(
    conn: &mut SqliteConnection,
    org: OrgId,
    id: ConnectorId,
) -> StoreResult<()> {
    sqlx::query_scalar::<_, i64>("SELECT 1 FROM connectors WHERE id = ? AND org_id = ?")
        .bind(id.0)
        .bind(org.0)
        .fetch_optional(conn)
        .await
        .db()?
        .map(|_| ())
        .ok_or(StoreError::NotFound("connector"))
}

/// One connector of an organization.
pub(crate) async fn connector(
    conn: &mut SqliteConnection,
    org: OrgId,
    id: ConnectorId,
) -> StoreResult<Connector> {
    let row = sqlx::query(&format!(
        "{CONNECTOR_SELECT} WHERE c.id = ? AND c.org_id = ?"
    ))
    .bind(id.0)
    .bind(org.0)
    .fetch_optional(conn)
    .await
    .db()?
    .ok_or(StoreError::NotFound("connector"))?;
    rows::connector(&row)
}

/// Stores, replaces or (with `None`) removes the organization's shared credential.
async fn put_shared_credential(
    conn: &mut SqliteConnection,
    id: ConnectorId,
    credential: Option<&StoredCredential>,
    at: Timestamp,
) -> StoreResult<()> {
    match credential {
        Some(c) => {
            // Replacing keeps the row's id; the write lock makes update-then-insert safe.
            let done = sqlx::query(
                "UPDATE connector_credentials SET kind = ?, sealed = ?, updated_at = ? \
                 WHERE connector_id = ? AND user_id IS NULL",
            )
            .bind(c.kind.as_str())
            .bind(&c.sealed)
            .bind(at.millis())
            .bind(id.0)
            .execute(&mut *conn)
            .await
            .db()?;
            if done.rows_affected() == 0 {
                sqlx::query(
                    "INSERT INTO connector_credentials \
                     (id, connector_id, user_id, kind, sealed, updated_at) \
                     VALUES (?, ?, NULL, ?, ?, ?)",
                )
                .bind(Uuid::now_v7())
                .bind(id.0)
                .bind(c.kind.as_str())
                .bind(&c.sealed)
                .bind(at.millis())
                .execute(&mut *conn)
                .await
                .db()?;
            }
        }
        None => {
            sqlx::query(
                "DELETE FROM connector_credentials WHERE connector_id = ? AND user_id IS NULL",
            )
            .bind(id.0)
            .execute(&mut *conn)
            .await
            .db()?;
        }
    }
    Ok(())
}

pub(crate) async fn create(
    pool: &SqlitePool,
    new: &NewConnector,
    event: &NewAuditEvent,
) -> StoreResult<Connector> {
    let mut tx = begin_write(pool).await?;
    orgs::organization(&mut tx, new.org_id).await?;
    sqlx::query(
        "INSERT INTO connectors (id, org_id, name, name_folded, url, description, status, \
         last_error, auth_method, transport, protocol_version, created_at, updated_at, \
         credential_scope, auth_detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL, ?, ?, ?, NULL)",
    )
    .bind(new.id.0)
    .bind(new.org_id.0)
    .bind(new.name.as_str())
    .bind(new.name.folded())
    .bind(new.url.as_str())
    .bind(new.description.as_ref().map(|d| d.as_str()))
    .bind(new.status.as_str())
    .bind(new.auth_method.as_str())
    .bind(new.created_at.millis())
    .bind(new.created_at.millis())
    .bind(new.credential_scope.as_str())
    .execute(&mut *tx)
    .await
    .unique_as("name", || name_taken(new.name.as_str()))?;
    if let Some(credential) = &new.credential {
        put_shared_credential(&mut tx, new.id, Some(credential), new.created_at).await?;
    }
    audit::append(&mut tx, event).await?;
    let created = connector(&mut tx, new.org_id, new.id).await?;
    tx.commit().await.db()?;
    Ok(created)
}

pub(crate) async fn list(
    pool: &SqlitePool,
    org: OrgId,
    page: PageRequest,
) -> StoreResult<Page<Connector>> {
    let found = sqlx::query(&format!(
        "{CONNECTOR_SELECT} WHERE c.org_id = ?1 AND (?2 IS NULL OR c.id > ?2) \
         ORDER BY c.id LIMIT ?3"
    ))
    .bind(org.0)
    .bind(page.after)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(pool)
    .await
    .db()?;
    let items = found
        .iter()
        .map(rows::connector)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page.limit, |c| c.id.0))
}

pub(crate) async fn connector_org(pool: &SqlitePool, id: ConnectorId) -> StoreResult<OrgId> {
    let org: Option<Uuid> = sqlx::query_scalar("SELECT org_id FROM connectors WHERE id = ?")
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .db()?;
    org.map(OrgId).ok_or(StoreError::NotFound("connector"))
}

pub(crate) async fn update(
    pool: &SqlitePool,
    org: OrgId,
    id: ConnectorId,
    patch: &ConnectorPatch,
    event: &NewAuditEvent,
) -> StoreResult<Connector> {
    let mut tx = begin_write(pool).await?;
    let mut c = connector(&mut tx, org, id).await?;
    if let Some(name) = &patch.name {
        c.name = name.clone();
    }
    if let Some(url) = &patch.url {
        c.url = url.clone();
    }
    if let Some(description) = &patch.description {
        c.description = description.clone();
    }
    if let Some((status, last_error)) = &patch.status {
        c.status = *status;
        c.last_error = last_error.clone();
    }
    if let Some(method) = patch.auth_method {
        c.auth_method = method;
    }
    if let Some((transport, version)) = &patch.transport {
        c.transport = Some(*transport);
        c.protocol_version = Some(version.clone());
    }
    if let Some(scope) = patch.credential_scope {
        c.credential_scope = scope;
    }
    if let Some(detail) = &patch.auth_detail {
        c.auth_detail = detail.clone();
    }
    let auth_detail = c
        .auth_detail
        .as_ref()
        .map(|d| rows::to_json("auth detail", d))
        .transpose()?;
    sqlx::query(
        "UPDATE connectors SET name = ?, name_folded = ?, url = ?, description = ?, status = ?, \
         last_error = ?, auth_method = ?, transport = ?, protocol_version = ?, updated_at = ?, \
         credential_scope = ?, auth_detail = ? \
         WHERE id = ?",
    )
    .bind(c.name.as_str())
    .bind(c.name.folded())
    .bind(c.url.as_str())
    .bind(c.description.as_ref().map(|d| d.as_str()))
    .bind(c.status.as_str())
    .bind(c.last_error.as_deref())
    .bind(c.auth_method.as_str())
    .bind(c.transport.map(|t| t.as_str()))
    .bind(c.protocol_version.as_deref())
    .bind(patch.updated_at.millis())
    .bind(c.credential_scope.as_str())
    .bind(auth_detail)
    .bind(id.0)
    .execute(&mut *tx)
    .await
    .unique_as("name", || name_taken(c.name.as_str()))?;
    if let Some(credential) = &patch.credential {
        put_shared_credential(&mut tx, id, credential.as_ref(), patch.updated_at).await?;
    }
    audit::append(&mut tx, event).await?;
    let updated = connector(&mut tx, org, id).await?;
    tx.commit().await.db()?;
    Ok(updated)
}

pub(crate) async fn delete(
    pool: &SqlitePool,
    org: OrgId,
    id: ConnectorId,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    // Functions, versions, preferences, credentials, OAuth client registrations, grants and
    // pending authorizations go with it by ON DELETE CASCADE.
    let done = sqlx::query("DELETE FROM connectors WHERE id = ? AND org_id = ?")
        .bind(id.0)
        .bind(org.0)
        .execute(&mut *tx)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("connector"));
    }
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}

pub(crate) async fn credential(
    pool: &SqlitePool,
    org: OrgId,
    id: ConnectorId,
    holder: Option<UserId>,
) -> StoreResult<Option<StoredCredential>> {
    let mut tx = begin_read(pool).await?;
    check_scope(&mut tx, org, id).await?;
    // `IS` compares NULL with NULL as equal, so one statement serves both kinds of holder.
    let row = sqlx::query(
        "SELECT kind, sealed FROM connector_credentials WHERE connector_id = ? AND user_id IS ?",
    )
    .bind(id.0)
    .bind(holder.map(|u| u.0))
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    match row {
        Some(row) => Ok(Some(StoredCredential {
            kind: rows::enum_col(&row, "kind")?,
            sealed: rows::get(&row, "sealed")?,
        })),
        None => Ok(None),
    }
}

/// Fails with `NotFound("member")` unless `user` is a member of `org`: a member's own
/// credentials and grants exist only while they belong to the organization (removing a member
/// deletes them, and this keeps a late write from bringing them back).
pub(crate) async fn check_member(
    conn: &mut SqliteConnection,
    org: OrgId,
    user: UserId,
) -> StoreResult<()> {
    sqlx::query_scalar::<_, i64>("SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ?")
        .bind(org.0)
        .bind(user.0)
        .fetch_optional(conn)
        .await
        .db()?
        .map(|_| ())
        .ok_or(StoreError::NotFound("member"))
}

pub(crate) async fn set_member_credential(
    pool: &SqlitePool,
    org: OrgId,
    id: ConnectorId,
    user: UserId,
    credential: Option<&StoredCredential>,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    check_scope(&mut tx, org, id).await?;
    check_member(&mut tx, org, user).await?;
    match credential {
        Some(c) => {
            // An upsert on the (connector_id, user_id) index keeps the row's id on replace.
            sqlx::query(
                "INSERT INTO connector_credentials \
                 (id, connector_id, user_id, kind, sealed, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (connector_id, user_id) DO UPDATE SET kind = excluded.kind, \
                 sealed = excluded.sealed, updated_at = excluded.updated_at",
            )
            .bind(Uuid::now_v7())
            .bind(id.0)
            .bind(user.0)
            .bind(c.kind.as_str())
            .bind(&c.sealed)
            .bind(now.millis())
            .execute(&mut *tx)
            .await
            .db()?;
        }
        None => {
            sqlx::query("DELETE FROM connector_credentials WHERE connector_id = ? AND user_id = ?")
                .bind(id.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .db()?;
        }
    }
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}
