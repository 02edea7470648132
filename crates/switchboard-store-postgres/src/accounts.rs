//! Instance settings, user accounts, browser sessions and personal API tokens.

use sqlx::{PgConnection, PgPool};
use switchboard_domain::{
    ApiToken, ApiTokenId, Email, NewAuditEvent, Role, Session, Timestamp, User, UserId,
};
use switchboard_store::{NewOrganization, NewUser, Page, PageRequest, StoreError, StoreResult};

use crate::audit::append;
use crate::error::{backend, is_foreign_key_violation, unique_violation};
use crate::rows::{self, API_TOKEN_COLUMNS, SESSION_COLUMNS, USER_COLUMNS};

pub(crate) async fn instance_setting(pool: &PgPool, key: &str) -> StoreResult<Option<String>> {
    sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(backend)
}

pub(crate) async fn set_instance_setting(
    pool: &PgPool,
    key: &str,
    value: Option<&str>,
) -> StoreResult<()> {
    let query = match value {
        Some(value) => sqlx::query(
            "INSERT INTO instance_settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value),
        None => sqlx::query("DELETE FROM instance_settings WHERE key = $1").bind(key),
    };
    query.execute(pool).await.map_err(backend)?;
    Ok(())
}

pub(crate) async fn user_count(pool: &PgPool) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    Ok(n.max(0) as u64)
}

/// Inserts a user, turning a taken address into a conflict on `email`.
pub(crate) async fn insert_user(conn: &mut PgConnection, user: &NewUser) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user.id.0)
    .bind(user.email.as_str())
    .bind(&user.display_name)
    .bind(user.password_hash.as_deref())
    .bind(user.created_at.millis())
    .execute(conn)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some("users_email_key") | Some("users_pkey") => StoreError::conflict(
            "email",
            format!("an account with the email {} already exists", user.email),
        ),
        _ => backend(e),
    })?;
    Ok(())
}

/// Holds, until the transaction ends, the lock that makes "no user exists yet" a fact the
/// transaction can rely on: it excludes concurrent inserts into `users` (and another holder of
/// the same lock), while reads go on.
pub(crate) async fn lock_users(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

pub(crate) async fn create_first_owner(
    pool: &PgPool,
    user: &NewUser,
    org: &NewOrganization,
    consume: &str,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Two setup requests racing must not both see an empty instance and create two owners.
    lock_users(&mut tx).await?;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    if users > 0 {
        return Err(StoreError::conflict(
            "setup",
            "setup is already complete: an account exists",
        ));
    }
    insert_user(&mut tx, user).await?;
    crate::orgs::insert_organization(&mut tx, org).await?;
    crate::orgs::insert_membership(&mut tx, org.id, user.id, Role::Owner, org.created_at)
        .await
        .map_err(backend)?;
    sqlx::query("DELETE FROM instance_settings WHERE key = $1")
        .bind(consume)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}

pub(crate) async fn create_owner(
    pool: &PgPool,
    user: &NewUser,
    org: &NewOrganization,
    audit: &[NewAuditEvent],
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    insert_user(&mut tx, user).await?;
    crate::orgs::insert_organization(&mut tx, org).await?;
    crate::orgs::insert_membership(&mut tx, org.id, user.id, Role::Owner, org.created_at)
        .await
        .map_err(backend)?;
    for event in audit {
        append(&mut tx, event).await?;
    }
    tx.commit().await.map_err(backend)
}

pub(crate) async fn create_user(
    pool: &PgPool,
    user: &NewUser,
    audit: &NewAuditEvent,
) -> StoreResult<User> {
    let mut tx = pool.begin().await.map_err(backend)?;
    insert_user(&mut tx, user).await?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(User {
        id: user.id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        created_at: user.created_at,
    })
}

/// A user by id, on any executor (the pool or an open transaction).
pub(crate) async fn fetch_user(conn: &mut PgConnection, id: UserId) -> StoreResult<User> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1");
    let row = sqlx::query(&sql)
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("user"))?;
    rows::user(&row)
}

pub(crate) async fn user(pool: &PgPool, id: UserId) -> StoreResult<User> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    fetch_user(&mut conn, id).await
}

pub(crate) async fn user_login(
    pool: &PgPool,
    email: &Email,
) -> StoreResult<Option<(User, Option<String>)>> {
    let sql = format!("SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = $1");
    let row = sqlx::query(&sql)
        .bind(email.as_str())
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    row.map(|row| Ok((rows::user(&row)?, rows::get(&row, "password_hash")?)))
        .transpose()
}

pub(crate) async fn set_password(
    pool: &PgPool,
    id: UserId,
    hash: &str,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let updated = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(id.0)
        .bind(hash)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound("user"));
    }
    // A new password must lock out whoever may have learnt the old one.
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}

pub(crate) async fn create_session(
    pool: &PgPool,
    session: &Session,
    audit: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&session.token_hash)
    .bind(session.user_id.0)
    .bind(&session.csrf_token)
    .bind(session.created_at.millis())
    .bind(session.expires_at.millis())
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if is_foreign_key_violation(&e) {
            StoreError::NotFound("user")
        } else if unique_violation(&e).is_some() {
            StoreError::conflict("token_hash", "a session with this token already exists")
        } else {
            backend(e)
        }
    })?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)
}

pub(crate) async fn session(
    pool: &PgPool,
    token_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<(Session, User)>> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2"
    );
    let row = sqlx::query(&sql)
        .bind(token_hash)
        .bind(now.millis())
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    row.map(|row| Ok((rows::session(&row)?, rows::user(&row)?)))
        .transpose()
}

pub(crate) async fn delete_session(
    pool: &PgPool,
    token_hash: &str,
    audit: &NewAuditEvent,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let ended = done.rows_affected() > 0;
    if ended {
        append(&mut tx, audit).await?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(ended)
}

pub(crate) async fn delete_expired_sessions(pool: &PgPool, now: Timestamp) -> StoreResult<u64> {
    // The complement of `session`'s test: a session whose expiry is not after `now` is over.
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now.millis())
        .execute(pool)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected())
}

pub(crate) async fn create_api_token(
    pool: &PgPool,
    token: &ApiToken,
    token_hash: &str,
    audit: &[NewAuditEvent],
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at, \
         expires_at, last_used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(token.id.0)
    .bind(token.user_id.0)
    .bind(&token.name)
    .bind(token_hash)
    .bind(&token.prefix)
    .bind(token.created_at.millis())
    .bind(token.expires_at.millis())
    .bind(token.last_used_at.map(Timestamp::millis))
    .bind(token.revoked_at.map(Timestamp::millis))
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if is_foreign_key_violation(&e) {
            StoreError::NotFound("user")
        } else if unique_violation(&e).is_some() {
            StoreError::conflict("token_hash", "a token with this secret already exists")
        } else {
            backend(e)
        }
    })?;
    for event in audit {
        append(&mut tx, event).await?;
    }
    tx.commit().await.map_err(backend)
}

pub(crate) async fn api_token(
    pool: &PgPool,
    token_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<(ApiToken, User)>> {
    let sql = format!(
        "SELECT {API_TOKEN_COLUMNS}, {USER_COLUMNS} FROM api_tokens t \
         JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2"
    );
    let row = sqlx::query(&sql)
        .bind(token_hash)
        .bind(now.millis())
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    row.map(|row| Ok((rows::api_token(&row)?, rows::user(&row)?)))
        .transpose()
}

pub(crate) async fn touch_api_token(
    pool: &PgPool,
    id: ApiTokenId,
    now: Timestamp,
) -> StoreResult<()> {
    let updated = sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(id.0)
        .bind(now.millis())
        .execute(pool)
        .await
        .map_err(backend)?
        .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound("api token"));
    }
    Ok(())
}

pub(crate) async fn list_api_tokens(
    pool: &PgPool,
    user: UserId,
    page: PageRequest,
) -> StoreResult<Page<ApiToken>> {
    // Keyset paging on (created_at, id), descending: the cursor's own values are looked up
    // among the same user's tokens, so a cursor from someone else's list finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND (t.created_at, t.id) < (SELECT k.created_at, k.id FROM api_tokens k \
               WHERE k.id = $3 AND k.user_id = $1)"
        }
        None => "",
    };
    let sql = format!(
        "SELECT {API_TOKEN_COLUMNS} FROM api_tokens t WHERE t.user_id = $1{cursor} \
         ORDER BY t.created_at DESC, t.id DESC LIMIT $2"
    );
    let mut query = sqlx::query(&sql)
        .bind(user.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let tokens = query
        .fetch_all(pool)
        .await
        .map_err(backend)?
        .iter()
        .map(rows::api_token)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(tokens, page.limit, |t| t.id.0))
}

pub(crate) async fn revoke_api_token(
    pool: &PgPool,
    user: UserId,
    id: ApiTokenId,
    now: Timestamp,
    audit: &NewAuditEvent,
) -> StoreResult<ApiToken> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Revoking twice keeps the first revocation time: that is when the token stopped working.
    let sql = format!(
        "UPDATE api_tokens t SET revoked_at = COALESCE(t.revoked_at, $3) \
         WHERE t.id = $1 AND t.user_id = $2 RETURNING {API_TOKEN_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(id.0)
        .bind(user.0)
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("api token"))?;
    let token = rows::api_token(&row)?;
    append(&mut tx, audit).await?;
    tx.commit().await.map_err(backend)?;
    Ok(token)
}
