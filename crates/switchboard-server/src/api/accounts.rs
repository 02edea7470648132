//! Setup, signing in and out, the caller's own account and API tokens.

use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_domain::{ApiToken, ApiTokenId, Organization, Role, Timestamp, User};
use switchboard_service::{OwnerInput, SetupState};

use super::{List, ListQuery, created, parse_field};
use crate::State;
use crate::auth::{Authed, ClientAddr, session_cookies, session_secret};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params};

/// Whether the installation still needs its first owner.
#[utoipa::path(get, path = "/api/v1/setup", tag = "accounts", responses((status = 200, body = SetupState)))]
pub(crate) async fn setup_state(AxState(state): AxState<State>) -> ApiResult<Json<SetupState>> {
    Ok(Json(state.app.setup_state().await?))
}

/// The first owner, created with the one-time setup token the server printed at start.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetupRequest {
    /// The setup token from the server's log.
    token: String,
    /// The owner's login.
    email: String,
    /// The owner's password (at least 12 characters).
    password: String,
    /// The owner's display name.
    display_name: String,
    /// The first organization's short name.
    org_slug: String,
    /// The first organization's display name.
    org_name: String,
}

/// A user and an organization.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SetupResponse {
    user: User,
    organization: Organization,
}

/// Creates the first owner and organization.
#[utoipa::path(post, path = "/api/v1/setup", tag = "accounts", request_body = SetupRequest, responses(
    (status = 201, body = SetupResponse),
    (status = 401, description = "wrong or used setup token", body = crate::error::ErrorBody),
    (status = 409, description = "setup was already done", body = crate::error::ErrorBody),
))]
pub(crate) async fn complete_setup(
    AxState(state): AxState<State>,
    Body(req): Body<SetupRequest>,
) -> ApiResult<Response> {
    let input = OwnerInput {
        email: req.email,
        display_name: req.display_name,
        password: req.password,
        org_slug: req.org_slug,
        org_name: req.org_name,
    };
    let (user, organization) = state.app.complete_setup(&req.token, input).await?;
    Ok(created(SetupResponse { user, organization }))
}

/// Email and password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    email: String,
    password: String,
}

/// An opened browser session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LoginResponse {
    user: User,
    /// Echo this in `X-CSRF-Token` on every state-changing request (it is also in the
    /// `sb_csrf` cookie).
    csrf_token: String,
    expires_at: Timestamp,
}

/// Signs in and sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "accounts", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse),
    (status = 401, body = crate::error::ErrorBody),
    (status = 429, description = "too many failed attempts", body = crate::error::ErrorBody),
))]
pub(crate) async fn login(
    AxState(state): AxState<State>,
    ClientAddr(client): ClientAddr,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Response> {
    let session = state.app.login(&req.email, &req.password, &client).await?;
    let max_age = state.app.config().session_ttl.as_secs() as i64;
    let cookies = session_cookies(
        state.config.cookie_secure,
        Some((&session.secret, &session.csrf_token, max_age)),
    );
    let body = LoginResponse {
        user: session.user,
        csrf_token: session.csrf_token,
        expires_at: session.expires_at,
    };
    let mut response = Json(body).into_response();
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

/// Ends the browser session and clears its cookies.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "accounts", responses((status = 204)))]
pub(crate) async fn logout(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(secret) = session_secret(&headers) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_session",
            "there is no browser session to end; revoke API tokens with DELETE /api/v1/me/tokens/{id}",
        ));
    };
    state.app.logout(&actor, &secret).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    for c in session_cookies(state.config.cookie_secure, None) {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

/// Email, password and the new token's label, for command-line sign-in.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenLoginRequest {
    email: String,
    password: String,
    /// A label for the token, such as `laptop-cli`.
    name: String,
    /// Lifetime in days (default 90, at most the server's limit).
    expires_in_days: Option<u32>,
}

/// A new API token. `secret` is shown only now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IssuedTokenResponse {
    token: ApiToken,
    /// The token to send as `Authorization: Bearer <secret>`. It cannot be shown again.
    secret: String,
}

/// Signs in with a password and issues a personal API token (for the CLI and scripts).
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "accounts", request_body = TokenLoginRequest, responses(
    (status = 201, body = IssuedTokenResponse),
    (status = 401, body = crate::error::ErrorBody),
    (status = 429, body = crate::error::ErrorBody),
))]
pub(crate) async fn login_for_token(
    AxState(state): AxState<State>,
    ClientAddr(client): ClientAddr,
    Body(req): Body<TokenLoginRequest>,
) -> ApiResult<Response> {
    let issued = state
        .app
        .login_for_token(
            &req.email,
            &req.password,
            &client,
            &req.name,
            req.expires_in_days,
        )
        .await?;
    Ok(created(IssuedTokenResponse {
        token: issued.token,
        secret: issued.secret,
    }))
}

/// An organization and the caller's role in it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OrgMembership {
    organization: Organization,
    role: Role,
}

impl From<(Organization, Role)> for OrgMembership {
    fn from((organization, role): (Organization, Role)) -> Self {
        Self { organization, role }
    }
}

/// The caller and their organizations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MeResponse {
    user: User,
    organizations: Vec<OrgMembership>,
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", responses((status = 200, body = MeResponse), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn me(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
) -> ApiResult<Json<MeResponse>> {
    let organizations = state
        .app
        .my_organizations(&actor)
        .await?
        .into_iter()
        .map(OrgMembership::from)
        .collect();
    Ok(Json(MeResponse {
        user: actor.user,
        organizations,
    }))
}

/// The current and the new password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordRequest {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password and ends their browser sessions.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "accounts", request_body = PasswordRequest, responses(
    (status = 204), (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)
))]
pub(crate) async fn change_password(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Body(req): Body<PasswordRequest>,
) -> ApiResult<StatusCode> {
    state
        .app
        .change_password(&actor, &req.current_password, req.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's API tokens, newest first, revoked ones included.
#[utoipa::path(get, path = "/api/v1/me/tokens", tag = "accounts", params(ListQuery),
    responses((status = 200, body = List<ApiToken>)))]
pub(crate) async fn list_tokens(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<List<ApiToken>>> {
    Ok(Json(
        state.app.list_tokens(&actor, query.page()?).await?.into(),
    ))
}

/// A new token's label and lifetime.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenRequest {
    name: String,
    expires_in_days: Option<u32>,
}

/// Issues a personal API token; its secret is shown once.
#[utoipa::path(post, path = "/api/v1/me/tokens", tag = "accounts", request_body = NewTokenRequest, responses((status = 201, body = IssuedTokenResponse)))]
pub(crate) async fn create_token(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Body(req): Body<NewTokenRequest>,
) -> ApiResult<Response> {
    let issued = state
        .app
        .issue_token(&actor, &req.name, req.expires_in_days)
        .await?;
    Ok(created(IssuedTokenResponse {
        token: issued.token,
        secret: issued.secret,
    }))
}

/// Revokes one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/v1/me/tokens/{token_id}", tag = "accounts",
    params(("token_id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke_token(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(token_id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: ApiTokenId = parse_field("token_id", &token_id)?;
    state.app.revoke_token(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
