//! The routes: `/api/v1/...`, health, readiness, metrics and the OpenAPI document.

mod accounts;
mod audit;
mod chat;
mod connectors;
mod mcp;
mod oauth;
mod orgs;

use std::str::FromStr;

use axum::extract::State as AxState;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router, middleware};
use serde::{Deserialize, Deserializer, Serialize};
use switchboard_service::{Page, PageRequest};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::State;
use crate::error::{ApiError, ApiResult};

pub(crate) use accounts::*;
pub(crate) use audit::*;
pub(crate) use chat::*;
pub(crate) use connectors::*;
pub(crate) use mcp::*;
pub use oauth::escape_html;
pub(crate) use oauth::*;
pub(crate) use orgs::*;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes under `/api/v1`, recorded as they are mounted: axum cannot list a router's
/// routes, and a test needs them to check that each one is in the OpenAPI document.
pub(crate) struct ApiRoutes {
    router: Router<State>,
    paths: Vec<&'static str>,
}

impl ApiRoutes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    fn route(mut self, path: &'static str, method_router: MethodRouter<State>) -> Self {
        self.paths.push(path);
        self.router = self.router.route(path, method_router);
        self
    }

    /// The paths mounted, relative to `/api/v1`.
    pub(crate) fn paths(&self) -> &[&'static str] {
        &self.paths
    }
}

/// Every route under `/api/v1`.
pub(crate) fn api_routes() -> ApiRoutes {
    ApiRoutes::new()
        .route("/setup", get(setup_state).post(complete_setup))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/token", post(login_for_token))
        .route("/me", get(me))
        .route("/me/password", post(change_password))
        .route("/me/tokens", get(list_tokens).post(create_token))
        .route("/me/tokens/{token_id}", delete(revoke_token))
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/orgs/{org_id}", get(get_org).patch(update_org))
        .route("/orgs/{org_id}/members", get(list_members).post(add_member))
        .route(
            "/orgs/{org_id}/members/{user_id}",
            axum::routing::patch(set_role).delete(remove_member),
        )
        .route(
            "/orgs/{org_id}/connectors",
            get(list_connectors).post(create_connector),
        )
        .route("/orgs/{org_id}/audit", get(list_audit))
        .route(
            "/orgs/{org_id}/chat-model",
            get(get_chat_model)
                .put(set_chat_model)
                .delete(clear_chat_model),
        )
        .route(
            "/orgs/{org_id}/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route(
            "/conversations/{conversation_id}",
            get(get_conversation)
                .patch(update_conversation)
                .delete(delete_conversation),
        )
        .route(
            "/conversations/{conversation_id}/messages",
            post(post_message),
        )
        .route(
            "/conversations/{conversation_id}/events",
            get(conversation_events),
        )
        .route(
            "/conversations/{conversation_id}/approvals/{call_id}",
            post(answer_approval),
        )
        .route(
            "/conversations/{conversation_id}/elicitations/{elicitation_id}",
            post(answer_elicitation),
        )
        .route(
            "/conversations/{conversation_id}/samplings/{sampling_id}",
            post(answer_sampling),
        )
        .route("/conversations/{conversation_id}/cancel", post(cancel_turn))
        .route("/orgs/{org_id}/audit/export", get(export_audit))
        .route(
            "/connectors/{connector_id}",
            get(get_connector)
                .patch(update_connector)
                .delete(delete_connector),
        )
        .route("/connectors/{connector_id}/enable", post(enable_connector))
        .route(
            "/connectors/{connector_id}/disable",
            post(disable_connector),
        )
        .route("/connectors/{connector_id}/functions", get(list_functions))
        .route(
            "/connectors/{connector_id}/functions/{name}/floor",
            put(set_floor),
        )
        .route(
            "/connectors/{connector_id}/functions/{name}/preference",
            put(set_preference),
        )
        .route(
            "/connectors/{connector_id}/functions/{name}/versions",
            get(function_versions),
        )
        .route(
            "/connectors/{connector_id}/functions/{name}/approve",
            post(approve_function),
        )
        .route("/orgs/{org_id}/probe", post(probe_url))
        .route(
            "/connectors/{connector_id}/validate",
            post(validate_connector),
        )
        .route(
            "/connectors/{connector_id}/refresh",
            post(refresh_functions),
        )
        .route("/connectors/{connector_id}/resources", get(list_resources))
        .route(
            "/connectors/{connector_id}/resources/read",
            post(read_resource),
        )
        .route("/connectors/{connector_id}/prompts", get(list_prompts))
        .route(
            "/connectors/{connector_id}/prompts/{name}/get",
            post(get_prompt),
        )
        .route("/connectors/{connector_id}/complete", post(complete))
        .route(
            "/connectors/{connector_id}/functions/{name}/call",
            post(call_function),
        )
        .route(
            "/connectors/{connector_id}/functions/{name}/diff",
            get(function_diff),
        )
        .route(
            "/connectors/{connector_id}/authorize",
            post(authorize_connector),
        )
        .route(
            "/connectors/{connector_id}/authorization",
            get(authorization_status).delete(disconnect_connector),
        )
        .route(
            "/connectors/{connector_id}/oauth/client",
            put(set_oauth_client),
        )
        .route(
            "/connectors/{connector_id}/credential",
            put(set_my_credential).delete(remove_my_credential),
        )
        .route("/openapi.json", get(openapi))
}

pub(crate) fn routes(state: State) -> Router {
    let api = api_routes().router;
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    Router::new()
        .nest("/api/v1", api)
        .route("/oauth/start", get(oauth::start))
        .route("/oauth/callback", get(oauth::callback))
        .route("/oauth/client-metadata.json", get(oauth::client_metadata))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not accept that method")
        })
        .layer(middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    // The path only, never the query string, which could carry a secret by mistake.
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                })
                // One line per request at the default level (tower-http's own is at debug); the
                // span adds the request id, method and path to it. For a stream the latency is
                // the time to its first byte.
                .on_response(|response: &axum::http::Response<_>, latency: std::time::Duration, _: &tracing::Span| {
                    tracing::info!(
                        status = response.status().as_u16(),
                        latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                        "request finished"
                    );
                }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "the database does not answer", body = crate::error::ErrorBody)
))]
pub(crate) async fn readyz(AxState(state): AxState<State>) -> ApiResult<&'static str> {
    state.app.ready().await?;
    Ok("ready")
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "metrics")))]
pub(crate) async fn metrics(AxState(state): AxState<State>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_json(),
    )
        .into_response()
}

/// Query parameters of every list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Page size, 1 to 200 (default 50).
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ListQuery {
    pub(crate) fn from_parts(limit: Option<String>, cursor: Option<String>) -> Self {
        Self { limit, cursor }
    }

    pub(crate) fn page(&self) -> ApiResult<PageRequest> {
        let limit = self
            .limit
            .as_deref()
            .map(|l| parse_field::<u32>("limit", l))
            .transpose()?;
        let limit =
            switchboard_domain::page_limit(limit).map_err(switchboard_service::Error::from)?;
        let after = self
            .cursor
            .as_deref()
            .map(|c| parse_field::<Uuid>("cursor", c))
            .transpose()?;
        Ok(PageRequest { after, limit })
    }
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct List<T> {
    /// The items.
    items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    next_cursor: Option<String>,
}

impl<T> From<Page<T>> for List<T> {
    fn from(page: Page<T>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next.map(|id| id.to_string()),
        }
    }
}

/// Parses a path or query value, naming the field when it does not parse.
pub(crate) fn parse_field<T: FromStr>(field: &'static str, raw: &str) -> ApiResult<T> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {raw:?} is not valid"),
        )
        .field(field)
    })
}

/// Deserializes a field that may be absent (leave as is), `null` (clear) or a value (set).
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A `201 Created` with a JSON body.
pub(crate) fn created<T: Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}
