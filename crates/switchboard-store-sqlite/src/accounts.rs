//! Instance settings, user accounts, browser sessions and personal API tokens.

use sqlx::{SqliteConnection, SqlitePool};
use switchboard_domain::{
    ApiToken, ApiTokenId, Email, NewAuditEvent, Role, Session, Timestamp, User, UserId,
};
use switchboard_store::{NewOrganization, NewUser, Page, PageRequest, StoreError, StoreResult};

use crate::error::DbResultExt;
use crate::rows::{self, TOKEN_COLS, USER_COLS};
use crate::{audit, begin_write, orgs};

pub(crate) async fn instance_setting(pool: &SqlitePool, key: &str) -> StoreResult<Option<String>> {
    sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = ?")
        .bind(key)
        .fetch_optional(pool)
        .await
        .db()
}

pub(crate) async fn set_instance_setting(
    pool: &SqlitePool,
    key: &str,
    value: Option<&str>,
) -> StoreResult<()> {
    match value {
        Some(value) => sqlx::query(
            "INSERT INTO instance_settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(pool)
        .await
        .db()?,
        None => sqlx::query("DELETE FROM instance_settings WHERE key = ?")
            .bind(key)
            .execute(pool)
            .await
            .db()?,
    };
    Ok(())
}

pub(crate) async fn user_count(conn: &mut SqliteConnection) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(conn)
        .await
        .db()?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Inserts a user row; a taken address is a `Conflict` on `email`.
pub(crate) async fn insert_user(conn: &mut SqliteConnection, user: &NewUser) -> StoreResult<User> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(user.id.0)
    .bind(user.email.as_str())
    .bind(&user.display_name)
    .bind(user.password_hash.as_deref())
    .bind(user.created_at.millis())
    .execute(conn)
    .await
    .unique_as("email", || {
        format!("an account with the email {} already exists", user.email)
    })?;
    Ok(User {
        id: user.id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        created_at: user.created_at,
    })
}

pub(crate) async fn create_first_owner(
    pool: &SqlitePool,
    user: &NewUser,
    org: &NewOrganization,
    consume: &str,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    if user_count(&mut tx).await? > 0 {
        return Err(StoreError::conflict(
            "setup",
            "setup has already been completed",
        ));
    }
    insert_user(&mut tx, user).await?;
    orgs::insert_organization(&mut tx, org).await?;
    orgs::insert_membership(&mut tx, org.id, user.id, Role::Owner, org.created_at).await?;
    sqlx::query("DELETE FROM instance_settings WHERE key = ?")
        .bind(consume)
        .execute(&mut *tx)
        .await
        .db()?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}

pub(crate) async fn create_owner(
    pool: &SqlitePool,
    user: &NewUser,
    org: &NewOrganization,
    events: &[NewAuditEvent],
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    insert_user(&mut tx, user).await?;
    orgs::insert_organization(&mut tx, org).await?;
    orgs::insert_membership(&mut tx, org.id, user.id, Role::Owner, org.created_at).await?;
    for event in events {
        audit::append(&mut tx, event).await?;
    }
    tx.commit().await.db()
}

pub(crate) async fn create_user(
    pool: &SqlitePool,
    user: &NewUser,
    event: &NewAuditEvent,
) -> StoreResult<User> {
    let mut tx = begin_write(pool).await?;
    let created = insert_user(&mut tx, user).await?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()?;
    Ok(created)
}

/// A user by id, `NotFound` if there is none.
pub(crate) async fn user(conn: &mut SqliteConnection, id: UserId) -> StoreResult<User> {
    let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users u WHERE u.id = ?"))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .db()?
        .ok_or(StoreError::NotFound("user"))?;
    rows::user(&row)
}

pub(crate) async fn user_login(
    pool: &SqlitePool,
    email: &Email,
) -> StoreResult<Option<(User, Option<String>)>> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLS}, u.password_hash FROM users u WHERE u.email = ?"
    ))
    .bind(email.as_str())
    .fetch_optional(pool)
    .await
    .db()?;
    match row {
        Some(row) => Ok(Some((rows::user(&row)?, rows::get(&row, "password_hash")?))),
        None => Ok(None),
    }
}

pub(crate) async fn set_password(
    pool: &SqlitePool,
    id: UserId,
    hash: &str,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
        .bind(hash)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    // A new password must lock out whoever held the old one, so every session ends.
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .db()?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}

pub(crate) async fn create_session(
    pool: &SqlitePool,
    session: &Session,
    event: &NewAuditEvent,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    user(&mut tx, session.user_id).await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&session.token_hash)
    .bind(session.user_id.0)
    .bind(&session.csrf_token)
    .bind(session.created_at.millis())
    .bind(session.expires_at.millis())
    .execute(&mut *tx)
    .await
    .unique_as("token_hash", || {
        "a session with this token already exists".to_owned()
    })?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()
}

pub(crate) async fn session(
    pool: &SqlitePool,
    token_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<(Session, User)>> {
    // A session is live while `now` is strictly before its expiry.
    let row = sqlx::query(&format!(
        "SELECT s.token_hash, s.user_id, s.csrf_token, s.created_at, s.expires_at, {USER_COLS} \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = ? AND s.expires_at > ?"
    ))
    .bind(token_hash)
    .bind(now.millis())
    .fetch_optional(pool)
    .await
    .db()?;
    match row {
        Some(row) => Ok(Some((rows::session(&row)?, rows::user(&row)?))),
        None => Ok(None),
    }
}

pub(crate) async fn delete_session(
    pool: &SqlitePool,
    token_hash: &str,
    event: &NewAuditEvent,
) -> StoreResult<bool> {
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(&mut *tx)
        .await
        .db()?;
    let ended = done.rows_affected() > 0;
    if ended {
        audit::append(&mut tx, event).await?;
    }
    tx.commit().await.db()?;
    Ok(ended)
}

pub(crate) async fn delete_expired_sessions(pool: &SqlitePool, now: Timestamp) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
        .bind(now.millis())
        .execute(pool)
        .await
        .db()?;
    Ok(done.rows_affected())
}

pub(crate) async fn create_api_token(
    pool: &SqlitePool,
    token: &ApiToken,
    token_hash: &str,
    events: &[NewAuditEvent],
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    user(&mut tx, token.user_id).await?;
    sqlx::query(
        "INSERT INTO api_tokens \
         (id, user_id, name, token_hash, prefix, created_at, expires_at, last_used_at, revoked_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .unique_as("token_hash", || {
        "a token with this secret already exists".to_owned()
    })?;
    for event in events {
        audit::append(&mut tx, event).await?;
    }
    tx.commit().await.db()
}

pub(crate) async fn api_token(
    pool: &SqlitePool,
    token_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<(ApiToken, User)>> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLS}, {USER_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = ? AND t.revoked_at IS NULL AND t.expires_at > ?"
    ))
    .bind(token_hash)
    .bind(now.millis())
    .fetch_optional(pool)
    .await
    .db()?;
    match row {
        Some(row) => Ok(Some((rows::api_token(&row)?, rows::user(&row)?))),
        None => Ok(None),
    }
}

pub(crate) async fn touch_api_token(
    pool: &SqlitePool,
    id: ApiTokenId,
    now: Timestamp,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
        .bind(now.millis())
        .bind(id.0)
        .execute(pool)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("api token"));
    }
    Ok(())
}

pub(crate) async fn list_api_tokens(
    pool: &SqlitePool,
    user: UserId,
    page: PageRequest,
) -> StoreResult<Page<ApiToken>> {
    // Keyset paging on (created_at, id), descending: the cursor's own values are looked up
    // among the same user's tokens, so a cursor from someone else's list finds nothing.
    let cursor = match page.after {
        Some(_) => {
            " AND (t.created_at, t.id) < (SELECT k.created_at, k.id FROM api_tokens k \
               WHERE k.id = ?3 AND k.user_id = ?1)"
        }
        None => "",
    };
    let sql = format!(
        "SELECT {TOKEN_COLS} FROM api_tokens t WHERE t.user_id = ?1{cursor} \
         ORDER BY t.created_at DESC, t.id DESC LIMIT ?2"
    );
    let mut query = sqlx::query(&sql)
        .bind(user.0)
        .bind(i64::from(page.limit) + 1);
    if let Some(after) = page.after {
        query = query.bind(after);
    }
    let found = query.fetch_all(pool).await.db()?;
    let tokens = found
        .iter()
        .map(rows::api_token)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(tokens, page.limit, |t| t.id.0))
}

pub(crate) async fn revoke_api_token(
    pool: &SqlitePool,
    user: UserId,
    id: ApiTokenId,
    now: Timestamp,
    event: &NewAuditEvent,
) -> StoreResult<ApiToken> {
    let mut tx = begin_write(pool).await?;
    // Revoking twice keeps the first revocation time.
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND user_id = ?",
    )
    .bind(now.millis())
    .bind(id.0)
    .bind(user.0)
    .execute(&mut *tx)
    .await
    .db()?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("api token"));
    }
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLS} FROM api_tokens t WHERE t.id = ?"
    ))
    .bind(id.0)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    let token = rows::api_token(&row)?;
    audit::append(&mut tx, event).await?;
    tx.commit().await.db()?;
    Ok(token)
}
