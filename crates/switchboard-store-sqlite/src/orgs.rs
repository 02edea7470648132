//! Organizations and their members, including the rule that an organization keeps an owner.

use sqlx::{SqliteConnection, SqlitePool};
use switchboard_domain::{
    Member, NewAuditEvent, OrgId, OrgSettings, Organization, Role, Timestamp, UserId,
};
use switchboard_store::{NewOrganization, NewUser, Page, PageRequest, StoreError, StoreResult};

use crate::error::DbResultExt;
use crate::rows::{self, ORG_COLS, USER_COLS};
use crate::{accounts, audit, begin_write};

/// Inserts an organization row; a taken slug is a `Conflict` on `slug`.
pub(crate) async fn insert_organization(
    conn: &mut SqliteConnection,
    org: &NewOrganization,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO organizations \
         (id, slug, name, new_functions, created_at, untrusted_content, sampling) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(org.id.0)
    .bind(org.slug.as_str())
    .bind(&org.name)
    .bind(org.settings.new_functions.as_str())
    .bind(org.created_at.millis())
    .bind(org.settings.untrusted_content.as_str())
    .bind(org.settings.sampling)
    .execute(conn)
    .await
    .unique_as("slug", || {
        format!(
            "an organization with the slug \"{}\" already exists",
            org.slug
        )
    })?;
    Ok(())
}

/// Inserts a membership row; `Conflict` on `email` (named after the user's address, the
/// field an admin typed) if the user is already a member.
pub(crate) async fn insert_membership(
    conn: &mut SqliteConnection,
    org: OrgId,
    user: UserId,
    role: Role,
    at: Timestamp,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)")
        .bind(org.0)
        .bind(user.0)
        .bind(role.as_str())
        .bind(at.millis())
        .execute(conn)
        .await
        .unique_as("email", || {
            "this user is already a member of this organization".to_owned()
        })?;
    Ok(())
}

/// An organization by id, `NotFound` if there is none.
pub(crate) async fn organization(
    conn: &mut SqliteConnection,
    id: OrgId,
) -> StoreResult<Organization> {
    let row = sqlx::query(&format!(
        "SELECT {ORG_COLS} FROM organizations o WHERE o.id = ?"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .db()?
    .ok_or(StoreError::NotFound("organization"))?;
    rows::organization(&row)
}

pub(crate) async fn create_organization(
    pool: &SqlitePool,
    org: &NewOrganization,
    owner: UserId,
    event: &NewAuditEvent,
) -> StoreResult<Organization> {
    let mut tx = begin_write(pool).await?;
    accounts::user(&mut tx, owner).await?;
    insert_organization(&mut tx, org).await?;
    insert_membership(&mut tx, org.id, owner, Role::Owner, org.created_at).await?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()?;
    Ok(Organization {
        id: org.id,
        slug: org.slug.clone(),
        name: org.name.clone(),
        settings: org.settings.clone(),
        created_at: org.created_at,
    })
}

pub(crate) async fn organizations_of(
    pool: &SqlitePool,
    user: UserId,
) -> StoreResult<Vec<(Organization, Role)>> {
    let found = sqlx::query(&format!(
        "SELECT {ORG_COLS}, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id \
         WHERE m.user_id = ? ORDER BY o.slug"
    ))
    .bind(user.0)
    .fetch_all(pool)
    .await
    .db()?;
    found
        .iter()
        .map(|row| Ok((rows::organization(row)?, rows::enum_col(row, "role")?)))
        .collect()
}

pub(crate) async fn list_organizations(
    pool: &SqlitePool,
    user: UserId,
    page: PageRequest,
) -> StoreResult<Page<(Organization, Role)>> {
    // Keyset paging on the slug (unique), by its bytes as in `organizations_of`. The cursor's
    // slug is looked up among the user's own organizations, so an organization they do not
    // belong to finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND o.slug > (SELECT k.slug FROM organizations k \
               JOIN memberships km ON km.org_id = k.id WHERE k.id = ?3 AND km.user_id = ?1)"
        }
        None => "",
    };
    let sql = format!(
        "SELECT {ORG_COLS}, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id \
         WHERE m.user_id = ?1{cursor} ORDER BY o.slug LIMIT ?2"
    );
    let mut query = sqlx::query(&sql)
        .bind(user.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let found = query.fetch_all(pool).await.db()?;
    let orgs = found
        .iter()
        .map(|row| Ok((rows::organization(row)?, rows::enum_col(row, "role")?)))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(orgs, page.limit, |(o, _)| o.id.0))
}

pub(crate) async fn update_organization(
    pool: &SqlitePool,
    id: OrgId,
    name: Option<&str>,
    settings: Option<&OrgSettings>,
    event: &NewAuditEvent,
) -> StoreResult<Organization> {
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query(
        "UPDATE organizations SET name = COALESCE(?, name), \
         new_functions = COALESCE(?, new_functions), \
         untrusted_content = COALESCE(?, untrusted_content), \
         sampling = COALESCE(?, sampling) WHERE id = ?",
    )
    .bind(name)
    .bind(settings.map(|s| s.new_functions.as_str()))
    .bind(settings.map(|s| s.untrusted_content.as_str()))
    .bind(settings.map(|s| s.sampling))
    .bind(id.0)
    .execute(&mut *tx)
    .await
    .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("organization"));
    }
    let org = organization(&mut tx, id).await?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()?;
    Ok(org)
}

pub(crate) async fn role_of(
    conn: &mut SqliteConnection,
    org: OrgId,
    user: UserId,
) -> StoreResult<Option<Role>> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?")
            .bind(org.0)
            .bind(user.0)
            .fetch_optional(conn)
            .await
            .db()?;
    role.map(|r| rows::parse("memberships.role", &r))
        .transpose()
}

pub(crate) async fn member(
    conn: &mut SqliteConnection,
    org: OrgId,
    user: UserId,
) -> StoreResult<Member> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLS}, m.role, m.created_at AS joined_at \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.org_id = ? AND m.user_id = ?"
    ))
    .bind(org.0)
    .bind(user.0)
    .fetch_optional(conn)
    .await
    .db()?
    .ok_or(StoreError::NotFound("member"))?;
    rows::member(&row)
}

pub(crate) async fn list_members(
    pool: &SqlitePool,
    org: OrgId,
    page: PageRequest,
) -> StoreResult<Page<Member>> {
    let found = sqlx::query(&format!(
        "SELECT {USER_COLS}, m.role, m.created_at AS joined_at \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.org_id = ?1 AND (?2 IS NULL OR m.user_id > ?2) \
         ORDER BY m.user_id LIMIT ?3"
    ))
    .bind(org.0)
    .bind(page.after)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(pool)
    .await
    .db()?;
    let members = found
        .iter()
        .map(rows::member)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(members, page.limit, |m| m.user_id.0))
}

pub(crate) async fn add_member(
    pool: &SqlitePool,
    org: OrgId,
    user: UserId,
    role: Role,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<Member> {
    let mut tx = begin_write(pool).await?;
    organization(&mut tx, org).await?;
    let account = accounts::user(&mut tx, user).await?;
    insert_membership(&mut tx, org, user, role, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { field, .. } => StoreError::conflict(
                field,
                format!("{} is already a member of this organization", account.email),
            ),
            other => other,
        })?;
    audit::append(&mut tx, event).await?;
    let added = member(&mut tx, org, user).await?;
    tx.commit().await.db()?;
    Ok(added)
}

pub(crate) async fn add_new_member(
    pool: &SqlitePool,
    org: OrgId,
    user: &NewUser,
    role: Role,
    event: &NewAuditEvent,
) -> StoreResult<Member> {
    let mut tx = begin_write(pool).await?;
    organization(&mut tx, org).await?;
    accounts::insert_user(&mut tx, user).await?;
    insert_membership(&mut tx, org, user.id, role, user.created_at).await?;
    audit::append(&mut tx, event).await?;
    let added = member(&mut tx, org, user.id).await?;
    tx.commit().await.db()?;
    Ok(added)
}

async fn owner_count(conn: &mut SqliteConnection, org: OrgId) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = ? AND role = 'owner'")
        .bind(org.0)
        .fetch_one(conn)
        .await
        .db()
}

pub(crate) async fn set_role(
    pool: &SqlitePool,
    org: OrgId,
    user: UserId,
    role: Role,
    event: &NewAuditEvent,
) -> StoreResult<Member> {
    // The write transaction holds SQLite's single writer lock from BEGIN IMMEDIATE on, so
    // changing first and counting owners afterwards cannot race with another demotion.
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query("UPDATE memberships SET role = ? WHERE org_id = ? AND user_id = ?")
        .bind(role.as_str())
        .bind(org.0)
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("member"));
    }
    if owner_count(&mut tx, org).await? == 0 {
        tx.rollback().await.db()?;
        return Err(StoreError::LastOwner);
    }
    audit::append(&mut tx, event).await?;
    let changed = member(&mut tx, org, user).await?;
    tx.commit().await.db()?;
    Ok(changed)
}

pub(crate) async fn remove_member(
    pool: &SqlitePool,
    org: OrgId,
    user: UserId,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query("DELETE FROM memberships WHERE org_id = ? AND user_id = ?")
        .bind(org.0)
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("member"));
    }
    if owner_count(&mut tx, org).await? == 0 {
        tx.rollback().await.db()?;
        return Err(StoreError::LastOwner);
    }
    // What the member kept in this organization goes with them; what they keep in other
    // organizations stays.
    sqlx::query(
        "DELETE FROM member_preferences WHERE user_id = ? AND function_id IN \
         (SELECT f.id FROM functions f JOIN connectors c ON c.id = f.connector_id \
          WHERE c.org_id = ?)",
    )
    .bind(user.0)
    .bind(org.0)
    .execute(&mut *tx)
    .await
    .db()?;
    for sql in [
        "DELETE FROM connector_credentials WHERE user_id = ? AND connector_id IN \
         (SELECT id FROM connectors WHERE org_id = ?)",
        "DELETE FROM oauth_grants WHERE user_id = ? AND connector_id IN \
         (SELECT id FROM connectors WHERE org_id = ?)",
        // Both the authorizations they started (for the organization or for themselves) and
        // any that would have made them a holder.
        "DELETE FROM oauth_pending WHERE (user_id = ?1 OR holder_user_id = ?1) AND org_id = ?2",
    ] {
        sqlx::query(sql)
            .bind(user.0)
            .bind(org.0)
            .execute(&mut *tx)
            .await
            .db()?;
    }
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}
