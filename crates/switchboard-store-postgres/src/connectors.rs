//! Connectors and their stored credentials.

use sqlx::{PgConnection, PgPool};
use switchboard_domain::{
    Connector, ConnectorId, ConnectorName, NewAuditEvent, OrgId, Timestamp, UserId,
};
use switchboard_store::{
    ConnectorPatch, NewConnector, Page, PageRequest, StoreError, StoreResult, StoredCredential,
};
use uuid::Uuid;

use crate::audit::append;
use crate::error::{backend, is_foreign_key_violation, unique_violation};
use crate::rows::{self, CONNECTOR_COLUMNS};

fn name_conflict(name: &ConnectorName) -> StoreError {
    StoreError::conflict(
        "name",
        format!("a connector named \"{name}\" already exists in this organization"),
    )
}

/// One connector of `org`, optionally locked for the rest of the transaction. A connector of
/// another organization is `NotFound`, exactly like one that does not exist.
pub(crate) async fn fetch_connector(
    conn: &mut PgConnection,
    org: OrgId,
    id: ConnectorId,
    lock: bool,
) -> StoreResult<Connector> {
    let sql = format!(
        "SELECT {CONNECTOR_COLUMNS} FROM connectors c WHERE c.id = $1 AND c.org_id = $2{}",
        if lock { " FOR UPDATE OF c" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(id.0)
        .bind(org.0)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("connector"))?;
    rows::connector(&row)
}

/// Fails with `NotFound("connector")` unless connector `id` belongs to `org`.
///
/// With `hold`, also keeps the connector from being deleted until the transaction ends, for
/// writes that insert rows under it: `FOR KEY SHARE` is the lock a foreign key check takes, so
/// it does not hold up updates of the connector itself, and a connector deleted meanwhile is
/// `NotFound` here rather than a foreign key error later.
pub(crate) async fn check_scope(
    conn: &mut PgConnection,
    org: OrgId,
    id: ConnectorId,
    hold: bool,
) -> StoreResult<()> {
    let sql = format!(
        "SELECT 1 FROM connectors WHERE id = $1 AND org_id = $2{}",
        if hold { " FOR KEY SHARE" } else { "" }
    );
    sqlx::query_scalar::<_, i32>(&sql)
        .bind(id.0)
        .bind(org.0)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .map(|_| ())
        .ok_or(StoreError::NotFound("connector"))
}

/// Fails with `NotFound("member")` unless `user` is a member of `org`, and holds the
/// membership until the transaction ends: a member's own credentials and grants exist only
/// while they belong to the organization. `remove_member` deletes the membership row before
/// their credentials and grants, so either it waits for this transaction and then deletes what
/// it wrote, or this one waits for it and finds no membership.
pub(crate) async fn check_member(
    conn: &mut PgConnection,
    org: OrgId,
    user: UserId,
) -> StoreResult<()> {
    sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM memberships WHERE org_id = $1 AND user_id = $2 FOR KEY SHARE",
    )
    .bind(org.0)
    .bind(user.0)
    .fetch_optional(conn)
    .await
    .map_err(backend)?
    .map(|_| ())
    .ok_or(StoreError::NotFound("member"))
}

/// Sets (or with `None`, removes) the organization's shared credential of a connector.
async fn put_shared_credential(
    conn: &mut PgConnection,
    connector: ConnectorId,
    credential: Option<&StoredCredential>,
    now: Timestamp,
) -> StoreResult<()> {
    let query = match credential {
        Some(c) => sqlx::query(
            "INSERT INTO connector_credentials (id, connector_id, user_id, kind, sealed, updated_at) \
             VALUES ($1, $2, NULL, $3, $4, $5) \
             ON CONFLICT (connector_id) WHERE user_id IS NULL \
             DO UPDATE SET kind = EXCLUDED.kind, sealed = EXCLUDED.sealed, \
                           updated_at = EXCLUDED.updated_at",
        )
        .bind(Uuid::now_v7())
        .bind(connector.0)
        .bind(c.kind.as_str())
        .bind(&c.sealed)
        .bind(now.millis()),
        None => sqlx::query(
            "DELETE FROM connector_credentials WHERE connector_id = $1 AND user_id IS NULL",
        )
        .bind(connector.0),
    };
    query.execute(conn).await.map_err(backend)?;
    Ok(())
}

pub(crate) async fn create_connector(
    pool: &PgPool,
    connector: &NewConnector,
    audit: &NewAuditEvent,
) -> StoreResult<Connector> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query(
        "INSERT INTO connectors (id, org_id, name, name_folded, url, description, status, \
         last_error, auth_method, transport, protocol_version, created_at, updated_at, \
         credential_scope, auth_detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, NULL, NULL, $9, $9, $10, NULL)",
    )
    .bind(connector.id.0)
    .bind(connector.org_id.0)
    .bind(connector.name.as_str())
    .bind(connector.name.folded())
    .bind(connector.url.as_str())
    .bind(connector.description.as_ref().map(|d| d.as_str()))
    .bind(connector.status.as_str())
    .bind(connector.auth_method.as_str())
    .bind(connector.created_at.millis())
    .bind(connector.credential_scope.as_str())
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if is_foreign_key_violation(&e) {
            StoreError::NotFound("organization")
        } else if unique_violation(&e) == Some("connectors_org_id_name_folded_key") {
            name_conflict(&connector.name)
        } else {
            backend(e)
        }
    })?;
    if let Some(credential) = &connector.credential {
        put_shared_credential(
            &mut tx,
            connector.id,
            Some(credential),
            connector.created_at,
        )
        .await?;
    }
    let created = fetch_connector(&mut tx, connector.org_id, connector.id, false).await?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(created)
}

pub(crate) async fn list_connectors(
    pool: &PgPool,
    org: OrgId,
    page: PageRequest,
) -> StoreResult<Page<Connector>> {
    let sql = format!(
        "SELECT {CONNECTOR_COLUMNS} FROM connectors c \
         WHERE c.org_id = $1 AND ($2::uuid IS NULL OR c.id > $2) ORDER BY c.id LIMIT $3"
    );
    let items = sqlx::query(&sql)
        .bind(org.0)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(backend)?
        .iter()
        .map(rows::connector)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page.limit, |c| c.id.0))
}

pub(crate) async fn connector(
    pool: &PgPool,
    org: OrgId,
    id: ConnectorId,
) -> StoreResult<Connector> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    fetch_connector(&mut conn, org, id, false).await
}

pub(crate) async fn connector_org(pool: &PgPool, id: ConnectorId) -> StoreResult<OrgId> {
    let org: Option<Uuid> = sqlx::query_scalar("SELECT org_id FROM connectors WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    org.map(OrgId).ok_or(StoreError::NotFound("connector"))
}

pub(crate) async fn update_connector(
    pool: &PgPool,
    org: OrgId,
    id: ConnectorId,
    patch: &ConnectorPatch,
    audit: &NewAuditEvent,
) -> StoreResult<Connector> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Read, apply the patch in Rust, write every column back: under the row lock nobody can
    // change the connector in between, and the patch semantics stay in one readable place.
    let mut c = fetch_connector(&mut tx, org, id, true).await?;
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
    if let Some(auth_method) = patch.auth_method {
        c.auth_method = auth_method;
    }
    if let Some((transport, protocol_version)) = &patch.transport {
        c.transport = Some(*transport);
        c.protocol_version = Some(protocol_version.clone());
    }
    if let Some(scope) = patch.credential_scope {
        c.credential_scope = scope;
    }
    if let Some(detail) = &patch.auth_detail {
        c.auth_detail = detail.clone();
    }
    c.updated_at = patch.updated_at;
    sqlx::query(
        "UPDATE connectors SET name = $3, name_folded = $4, url = $5, description = $6, \
         status = $7, last_error = $8, auth_method = $9, transport = $10, \
         protocol_version = $11, updated_at = $12, credential_scope = $13, auth_detail = $14 \
         WHERE id = $1 AND org_id = $2",
    )
    .bind(id.0)
    .bind(org.0)
    .bind(c.name.as_str())
    .bind(c.name.folded())
    .bind(c.url.as_str())
    .bind(c.description.as_ref().map(|d| d.as_str()))
    .bind(c.status.as_str())
    .bind(c.last_error.as_deref())
    .bind(c.auth_method.as_str())
    .bind(c.transport.map(|t| t.as_str()))
    .bind(c.protocol_version.as_deref())
    .bind(c.updated_at.millis())
    .bind(c.credential_scope.as_str())
    .bind(&c.auth_detail)
    .execute(&mut *tx)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some("connectors_org_id_name_folded_key") => name_conflict(&c.name),
        _ => backend(e),
    })?;
    if let Some(credential) = &patch.credential {
        put_shared_credential(&mut tx, id, credential.as_ref(), patch.updated_at).await?;
        c.has_credential = credential.is_some();
    }
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(c)
}

pub(crate) async fn delete_connector(
    pool: &PgPool,
    org: OrgId,
    id: ConnectorId,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Functions, their versions and preferences, credentials, OAuth client registrations,
    // grants and pending authorizations go by ON DELETE CASCADE.
    let deleted = sqlx::query("DELETE FROM connectors WHERE id = $1 AND org_id = $2")
        .bind(id.0)
        .bind(org.0)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound("connector"));
    }
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}

pub(crate) async fn connector_credential(
    pool: &PgPool,
    org: OrgId,
    id: ConnectorId,
    holder: Option<UserId>,
) -> StoreResult<Option<StoredCredential>> {
    // The join keeps the organization check and the read in one statement; a connector that
    // is not this organization's must still be told apart from one without a credential.
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT k.kind, k.sealed FROM connectors c \
         LEFT JOIN connector_credentials k ON k.connector_id = c.id \
              AND k.user_id IS NOT DISTINCT FROM $3 \
         WHERE c.id = $1 AND c.org_id = $2",
    )
    .bind(id.0)
    .bind(org.0)
    .bind(holder.map(|u| u.0))
    .fetch_optional(pool)
    .await
    .map_err(backend)?;
    match row {
        None => Err(StoreError::NotFound("connector")),
        Some((Some(kind), Some(sealed))) => Ok(Some(StoredCredential {
            kind: rows::parse("kind", &kind)?,
            sealed,
        })),
        Some(_) => Ok(None),
    }
}

pub(crate) async fn set_member_credential(
    pool: &PgPool,
    org: OrgId,
    id: ConnectorId,
    user: UserId,
    credential: Option<&StoredCredential>,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    check_scope(&mut tx, org, id, true).await?;
    check_member(&mut tx, org, user).await?;
    let query = match credential {
        Some(c) => sqlx::query(
            "INSERT INTO connector_credentials (id, connector_id, user_id, kind, sealed, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (connector_id, user_id) WHERE user_id IS NOT NULL \
             DO UPDATE SET kind = EXCLUDED.kind, sealed = EXCLUDED.sealed, \
                           updated_at = EXCLUDED.updated_at",
        )
        .bind(Uuid::now_v7())
        .bind(id.0)
        .bind(user.0)
        .bind(c.kind.as_str())
        .bind(&c.sealed)
        .bind(now.millis()),
        None => sqlx::query(
            "DELETE FROM connector_credentials WHERE connector_id = $1 AND user_id = $2",
        )
        .bind(id.0)
        .bind(user.0),
    };
    query.execute(&mut *tx).await.map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}
