//! OAuth for connectors: the API that starts, shows and ends an authorization, the browser
//! pages it passes through (`/oauth/start`, `/oauth/callback`), and Switchboard's client ID
//! metadata document.

use axum::Json;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use switchboard_service::{
    AuthorizationStart, AuthorizationStatus, CredentialInput, OAuthClientInput,
};

use super::connector_access;
use crate::State;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;

/// The cookie that binds an authorization to the browser that opened its start link.
const BINDING_COOKIE: &str = "sb_oauth_binding";

/// Whose grant an authorization is for.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorizeRequest {
    /// `organization` for the grant the whole organization shares (admins), `member` for
    /// the caller's own. Defaults to what the connector's credential scope calls for.
    #[serde(rename = "for")]
    holder: Option<Holder>,
    /// For a command-line client on the browser's machine: a loopback address
    /// (`http://127.0.0.1:PORT/...` or `http://[::1]:PORT/...`, RFC 8252 §7.3) it listens at.
    /// After the callback the browser is sent there, with `outcome=connected` (and
    /// `connector`, `holder`) or `outcome=failed` (and `message`) added to the query.
    return_to: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum Holder {
    Organization,
    Member,
}

/// Starts an OAuth authorization of a connector. The answer's `url` is a one-time link to
/// open in a browser: it leads through the authorization server's sign-in and consent pages
/// and back to Switchboard, which stores the grant.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/authorize", tag = "oauth", request_body = AuthorizeRequest,
    params(("connector_id" = String, Path)),
    responses((status = 200, body = AuthorizationStart), (status = 409, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
pub(crate) async fn authorize_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
    Body(req): Body<AuthorizeRequest>,
) -> ApiResult<Json<AuthorizationStart>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    let for_org = req.holder.map(|h| matches!(h, Holder::Organization));
    Ok(Json(
        state
            .app
            .authorize_connector(&access, id, for_org, req.return_to.as_deref())
            .await?,
    ))
}

/// Where the caller's grant for a connector stands (the organization's on a shared
/// connector). Never the tokens.
#[utoipa::path(get, path = "/api/v1/connectors/{connector_id}/authorization", tag = "oauth",
    params(("connector_id" = String, Path)), responses((status = 200, body = AuthorizationStatus)))]
pub(crate) async fn authorization_status(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<AuthorizationStatus>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(state.app.authorization_status(&access, id).await?))
}

/// Disconnects: revokes the grant's tokens at the authorization server where it offers
/// revocation, and deletes them.
#[utoipa::path(delete, path = "/api/v1/connectors/{connector_id}/authorization", tag = "oauth",
    params(("connector_id" = String, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn disconnect_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    if state.app.disconnect_connector(&access, id, None).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("authorization"))
    }
}

/// Enters a client registered out of band with the connector's authorization server (owners
/// and admins); the secret is sealed and never returned.
#[utoipa::path(put, path = "/api/v1/connectors/{connector_id}/oauth/client", tag = "oauth", request_body = OAuthClientInput,
    params(("connector_id" = String, Path)), responses((status = 204), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn set_oauth_client(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
    Body(req): Body<OAuthClientInput>,
) -> ApiResult<StatusCode> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    state
        .app
        .set_oauth_client(&access.admin()?, id, req)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the caller's own static credential, on a connector where every member brings their
/// own. Sealed at rest, never returned.
#[utoipa::path(put, path = "/api/v1/connectors/{connector_id}/credential", tag = "connectors", request_body = CredentialInput,
    params(("connector_id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn set_my_credential(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
    Body(req): Body<CredentialInput>,
) -> ApiResult<StatusCode> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    state.app.set_my_credential(&access, id, Some(req)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the caller's own static credential.
#[utoipa::path(delete, path = "/api/v1/connectors/{connector_id}/credential", tag = "connectors",
    params(("connector_id" = String, Path)), responses((status = 204)))]
pub(crate) async fn remove_my_credential(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    state.app.set_my_credential(&access, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The start link: binds the authorization to this browser with a cookie, then sends it to
/// the authorization server. The cookie is `SameSite=Lax` because the callback arrives as a
/// top-level navigation from the authorization server's site, which a `Strict` cookie would
/// not accompany.
pub(crate) async fn start(AxState(state): AxState<State>, RawQuery(query): RawQuery) -> Response {
    let state_param = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned());
    let Some(state_param) = state_param else {
        return page(
            StatusCode::BAD_REQUEST,
            "This link is incomplete",
            "It carries no authorization to start. Start again from Switchboard.",
        );
    };
    match state.app.open_authorization(&state_param).await {
        Ok((url, binding)) => {
            let secure = if state.config.cookie_secure {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{BINDING_COOKIE}={binding}; Path=/oauth; Max-Age=900; HttpOnly; SameSite=Lax{secure}"
            );
            let mut response = Redirect::to(&url).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => failure_page(e),
    }
}

/// The redirect back from the authorization server: completes the authorization and shows
/// the outcome in words, or sends the browser on to the loopback address of the command-line
/// client that started it, with the outcome in the query.
pub(crate) async fn callback(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let binding = cookie(&headers, BINDING_COOKIE);
    let completion = state
        .app
        .complete_authorization(&query.unwrap_or_default(), binding.as_deref())
        .await;
    let mut response = match (completion.outcome, completion.return_to) {
        (outcome, Some(mut url)) => {
            {
                let mut pairs = url.query_pairs_mut();
                match outcome {
                    Ok(done) => pairs
                        .append_pair("outcome", "connected")
                        .append_pair("connector", &done.connector)
                        .append_pair("holder", holder_name(done.holder)),
                    // The message as the API would give it: 5xx details stay in the log.
                    Err(e) => pairs
                        .append_pair("outcome", "failed")
                        .append_pair("message", ApiError::from(e).message()),
                };
            }
            let mut response = Redirect::to(url.as_str()).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        (Ok(done), None) => page(
            StatusCode::OK,
            "Connected",
            &format!(
                "{} is connected{}. You can close this window.",
                done.connector,
                match done.holder {
                    switchboard_domain::CredentialScope::Shared => " for the organization",
                    switchboard_domain::CredentialScope::Member => " to your account",
                }
            ),
        ),
        (Err(e), None) => failure_page(e),
    };
    // The binding has served its one purpose.
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{BINDING_COOKIE}=; Path=/oauth; Max-Age=0; HttpOnly; SameSite=Lax{secure}"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Switchboard's client ID metadata document, for authorization servers that accept URL
/// client ids. Served only where the public URL is https.
pub(crate) async fn client_metadata(AxState(state): AxState<State>) -> Response {
    match state.app.client_metadata_document() {
        Some(doc) => Json(doc).into_response(),
        None => ApiError::not_found("client metadata document").into_response(),
    }
}

/// The query's name for whose grant an authorization made.
fn holder_name(holder: switchboard_domain::CredentialScope) -> &'static str {
    match holder {
        switchboard_domain::CredentialScope::Shared => "organization",
        switchboard_domain::CredentialScope::Member => "member",
    }
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

fn failure_page(e: switchboard_service::Error) -> Response {
    let error = ApiError::from(e);
    page(
        error.status(),
        "The connection did not complete",
        error.message(),
    )
}

/// A small page for the browser: the outcome of a step a person took there.
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Switchboard</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
         <h1>{title}</h1><p id=\"outcome\">{message}</p></body></html>",
        title = escape_html(title),
        message = escape_html(message),
    );
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(
            escape_html("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_binding_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; sb_oauth_binding=abc"),
        );
        assert_eq!(cookie(&headers, BINDING_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
