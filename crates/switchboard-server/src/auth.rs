//! Who is calling: API tokens, session cookies with CSRF protection, the client's address.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use subtle::ConstantTimeEq;
use switchboard_service::{Actor, Credential};

use crate::State;
use crate::error::ApiError;

/// The session cookie: HttpOnly, so page scripts cannot read it.
pub const SESSION_COOKIE: &str = "sb_session";
/// The CSRF cookie: readable by the page, which echoes it in `X-CSRF-Token`.
pub const CSRF_COOKIE: &str = "sb_csrf";
/// The header state-changing requests authenticated by cookie must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The signed-in caller. Extracting it authenticates the request: a personal API token in
/// `Authorization: Bearer`, or a session cookie; with a cookie, any method other than GET, HEAD
/// and OPTIONS must also carry the session's CSRF token in `X-CSRF-Token`.
pub struct Authed(pub Actor);

impl FromRequestParts<State> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::unauthenticated(
                        "the Authorization header must be `Bearer <api token>`",
                    )
                })?;
            return match state.app.token_actor(token).await? {
                Some(actor) => Ok(Authed(actor)),
                None => Err(ApiError::unauthenticated(
                    "the API token is invalid, expired or revoked",
                )),
            };
        }
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthenticated(
                "sign in first: send an API token or a session cookie",
            ));
        };
        let Some(actor) = state.app.session_actor(&secret).await? else {
            return Err(ApiError::unauthenticated(
                "the session has ended; sign in again",
            ));
        };
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let Credential::Session { csrf_token } = &actor.credential else {
                return Err(ApiError::unauthenticated(
                    "the session has ended; sign in again",
                ));
            };
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !bool::from(given.ct_eq(csrf_token.as_bytes())) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "the X-CSRF-Token header is missing or does not match the session",
                ));
            }
        }
        Ok(Authed(actor))
    }
}

/// The session cookie's secret from the request, when present (for logout).
pub fn session_secret(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `Set-Cookie` values that open a session (`max_age` seconds) or, with `None`, end it.
pub fn session_cookies(secure: bool, session: Option<(&str, &str, i64)>) -> [HeaderValue; 2] {
    let attrs = |http_only: bool, max_age: i64| {
        format!(
            "; Path=/; SameSite=Strict; Max-Age={max_age}{}{}",
            if http_only { "; HttpOnly" } else { "" },
            if secure { "; Secure" } else { "" }
        )
    };
    let (secret, csrf, max_age) = session.unwrap_or(("", "", 0));
    let make = |name: &str, value: &str, http_only: bool| {
        HeaderValue::from_str(&format!("{name}={value}{}", attrs(http_only, max_age)))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    };
    [
        make(SESSION_COOKIE, secret, true),
        make(CSRF_COOKIE, csrf, false),
    ]
}

/// The caller's address: the peer, or behind a trusted proxy the first `X-Forwarded-For` hop.
pub struct ClientAddr(pub String);

impl FromRequestParts<State> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        if state.config.trust_forwarded_for
            && let Some(first) = forwarded
        {
            return Ok(ClientAddr(first.to_owned()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(ClientAddr(peer.unwrap_or_else(|| "unknown".into())))
    }
}
