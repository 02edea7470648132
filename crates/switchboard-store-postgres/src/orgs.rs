//! Organizations, their members and the rule that every organization keeps an owner.

use sqlx::{PgConnection, PgPool};
use switchboard_domain::{
    Member, NewAuditEvent, OrgId, OrgSettings, Organization, Role, Timestamp, UserId,
};
use switchboard_store::{NewOrganization, NewUser, Page, PageRequest, StoreError, StoreResult};

use crate::audit::append;
use crate::error::{backend, is_foreign_key_violation, unique_violation};
use crate::rows::{self, MEMBER_COLUMNS, ORG_COLUMNS};

/// Inserts an organization, turning a taken slug into a conflict on `slug`.
pub(crate) async fn insert_organization(
    conn: &mut PgConnection,
    org: &NewOrganization,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO organizations \
         (id, slug, name, new_functions, created_at, untrusted_content, sampling) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
    .map_err(|e| match unique_violation(&e) {
        Some("organizations_slug_key") | Some("organizations_pkey") => StoreError::conflict(
            "slug",
            format!(
                "an organization with the slug \"{}\" already exists",
                org.slug
            ),
        ),
        _ => backend(e),
    })?;
    Ok(())
}

/// Inserts a membership. A missing user is `NotFound("user")`; an existing membership is left
/// to the caller, which knows how to name it.
pub(crate) async fn insert_membership(
    conn: &mut PgConnection,
    org: OrgId,
    user: UserId,
    role: Role,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(org.0)
    .bind(user.0)
    .bind(role.as_str())
    .bind(now.millis())
    .execute(conn)
    .await
    .map(|_| ())
}

/// Locks an organization's row until the transaction ends, serializing every change to its
/// membership. `FOR NO KEY UPDATE` conflicts with itself but not with the key-share locks that
/// foreign key checks take, so inserting a connector meanwhile is not held up.
async fn lock_org(conn: &mut PgConnection, org: OrgId) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
        .bind(org.0)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("organization"))?;
    Ok(())
}

pub(crate) async fn fetch_organization(
    conn: &mut PgConnection,
    id: OrgId,
) -> StoreResult<Organization> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM organizations o WHERE o.id = $1");
    let row = sqlx::query(&sql)
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("organization"))?;
    rows::organization(&row)
}

async fn fetch_member(conn: &mut PgConnection, org: OrgId, user: UserId) -> StoreResult<Member> {
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.org_id = $1 AND m.user_id = $2"
    );
    let row = sqlx::query(&sql)
        .bind(org.0)
        .bind(user.0)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("member"))?;
    rows::member(&row)
}

/// How many owners an organization has, read under [`lock_org`].
async fn owner_count(conn: &mut PgConnection, org: OrgId) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = $2")
        .bind(org.0)
        .bind(Role::Owner.as_str())
        .fetch_one(conn)
        .await
        .map_err(backend)
}

pub(crate) async fn create_organization(
    pool: &PgPool,
    org: &NewOrganization,
    owner: UserId,
    audit: &NewAuditEvent,
) -> StoreResult<Organization> {
    let mut tx = pool.begin().await.map_err(backend)?;
    crate::accounts::fetch_user(&mut tx, owner).await?;
    insert_organization(&mut tx, org).await?;
    insert_membership(&mut tx, org.id, owner, Role::Owner, org.created_at)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound("user")
            } else {
                backend(e)
            }
        })?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Organization {
        id: org.id,
        slug: org.slug.clone(),
        name: org.name.clone(),
        settings: org.settings.clone(),
        created_at: org.created_at,
    })
}

pub(crate) async fn organization(pool: &PgPool, id: OrgId) -> StoreResult<Organization> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    fetch_organization(&mut conn, id).await
}

pub(crate) async fn organizations_of(
    pool: &PgPool,
    user: UserId,
) -> StoreResult<Vec<(Organization, Role)>> {
    let sql = format!(
        "SELECT {ORG_COLUMNS}, m.role FROM organizations o \
         JOIN memberships m ON m.org_id = o.id \
         WHERE m.user_id = $1 ORDER BY o.slug COLLATE \"C\""
    );
    sqlx::query(&sql)
        .bind(user.0)
        .fetch_all(pool)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| Ok((rows::organization(row)?, rows::get_parsed(row, "role")?)))
        .collect()
}

pub(crate) async fn list_organizations(
    pool: &PgPool,
    user: UserId,
    page: PageRequest,
) -> StoreResult<Page<(Organization, Role)>> {
    // Keyset paging on the slug (unique), by its bytes as in `organizations_of`. The cursor's
    // slug is looked up among the user's own organizations, so an organization they do not
    // belong to finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND o.slug COLLATE \"C\" > (SELECT k.slug FROM organizations k \
               JOIN memberships km ON km.org_id = k.id WHERE k.id = $3 AND km.user_id = $1)"
        }
        None => "",
    };
    let sql = format!(
        "SELECT {ORG_COLUMNS}, m.role FROM organizations o \
         JOIN memberships m ON m.org_id = o.id \
         WHERE m.user_id = $1{cursor} ORDER BY o.slug COLLATE \"C\" LIMIT $2"
    );
    let mut query = sqlx::query(&sql)
        .bind(user.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let orgs = query
        .fetch_all(pool)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| Ok((rows::organization(row)?, rows::get_parsed(row, "role")?)))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(orgs, page.limit, |(o, _)| o.id.0))
}

pub(crate) async fn update_organization(
    pool: &PgPool,
    id: OrgId,
    name: Option<&str>,
    settings: Option<&OrgSettings>,
    audit: &NewAuditEvent,
) -> StoreResult<Organization> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let sql = format!(
        "UPDATE organizations o SET name = COALESCE($2, o.name), \
         new_functions = COALESCE($3, o.new_functions), \
         untrusted_content = COALESCE($4, o.untrusted_content), \
         sampling = COALESCE($5, o.sampling) WHERE o.id = $1 RETURNING {ORG_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(id.0)
        .bind(name)
        .bind(settings.map(|s| s.new_functions.as_str()))
        .bind(settings.map(|s| s.untrusted_content.as_str()))
        .bind(settings.map(|s| s.sampling))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("organization"))?;
    let org = rows::organization(&row)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(org)
}

pub(crate) async fn role_of(pool: &PgPool, org: OrgId, user: UserId) -> StoreResult<Option<Role>> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org.0)
            .bind(user.0)
            .fetch_optional(pool)
            .await
            .map_err(backend)?;
    role.map(|r| rows::parse("role", &r)).transpose()
}

pub(crate) async fn member(pool: &PgPool, org: OrgId, user: UserId) -> StoreResult<Member> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    fetch_member(&mut conn, org, user).await
}

pub(crate) async fn list_members(
    pool: &PgPool,
    org: OrgId,
    page: PageRequest,
) -> StoreResult<Page<Member>> {
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.org_id = $1 AND ($2::uuid IS NULL OR m.user_id > $2) \
         ORDER BY m.user_id LIMIT $3"
    );
    let members = sqlx::query(&sql)
        .bind(org.0)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(backend)?
        .iter()
        .map(rows::member)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(members, page.limit, |m| m.user_id.0))
}

pub(crate) async fn add_member(
    pool: &PgPool,
    org: OrgId,
    user: UserId,
    role: Role,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<Member> {
    let mut tx = pool.begin().await.map_err(backend)?;
    lock_org(&mut tx, org).await?;
    let account = crate::accounts::fetch_user(&mut tx, user).await?;
    insert_membership(&mut tx, org, user, role, now)
        .await
        .map_err(|e| match unique_violation(&e) {
            Some("memberships_pkey") => StoreError::conflict(
                "email",
                format!("{} is already a member of this organization", account.email),
            ),
            _ => backend(e),
        })?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Member {
        user_id: account.id,
        email: account.email,
        display_name: account.display_name,
        role,
        joined_at: now,
    })
}

pub(crate) async fn add_new_member(
    pool: &PgPool,
    org: OrgId,
    user: &NewUser,
    role: Role,
    audit: &NewAuditEvent,
) -> StoreResult<Member> {
    let mut tx = pool.begin().await.map_err(backend)?;
    lock_org(&mut tx, org).await?;
    crate::accounts::insert_user(&mut tx, user).await?;
    insert_membership(&mut tx, org, user.id, role, user.created_at)
        .await
        .map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Member {
        user_id: user.id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        role,
        joined_at: user.created_at,
    })
}

pub(crate) async fn set_role(
    pool: &PgPool,
    org: OrgId,
    user: UserId,
    role: Role,
    audit: &NewAuditEvent,
) -> StoreResult<Member> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Two owners demoting each other at once would each see the other still an owner; with the
    // organization locked first, the second one sees the first's change and is refused.
    lock_org(&mut tx, org).await?;
    let mut current = fetch_member(&mut tx, org, user).await?;
    if current.role == Role::Owner && role != Role::Owner && owner_count(&mut tx, org).await? <= 1 {
        return Err(StoreError::LastOwner);
    }
    sqlx::query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2")
        .bind(org.0)
        .bind(user.0)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    current.role = role;
    Ok(current)
}

pub(crate) async fn remove_member(
    pool: &PgPool,
    org: OrgId,
    user: UserId,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    lock_org(&mut tx, org).await?;
    let current = fetch_member(&mut tx, org, user).await?;
    if current.role == Role::Owner && owner_count(&mut tx, org).await? <= 1 {
        return Err(StoreError::LastOwner);
    }
    // The membership goes first: writers of a member's own credentials and grants hold it
    // with FOR KEY SHARE (connectors::check_member), so this waits for any such write in
    // flight, and the deletions below (each seeing what committed before it, under READ
    // COMMITTED) then remove what it wrote.
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org.0)
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    // What the member kept in this organization goes with them; their preferences,
    // credentials and grants elsewhere stay. Foreign keys cannot express "in this
    // organization", so it is done here.
    for sql in [
        "DELETE FROM member_preferences p USING functions f, connectors c \
         WHERE p.function_id = f.id AND f.connector_id = c.id \
           AND c.org_id = $1 AND p.user_id = $2",
        "DELETE FROM connector_credentials k USING connectors c \
         WHERE k.connector_id = c.id AND c.org_id = $1 AND k.user_id = $2",
        "DELETE FROM oauth_grants g USING connectors c \
         WHERE g.connector_id = c.id AND c.org_id = $1 AND g.user_id = $2",
        // The authorizations they started (for the organization or for themselves), and any
        // that would have made them a holder.
        "DELETE FROM oauth_pending WHERE org_id = $1 AND (user_id = $2 OR holder_user_id = $2)",
    ] {
        sqlx::query(sql)
            .bind(org.0)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}
