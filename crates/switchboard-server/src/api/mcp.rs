//! Reaching a connector's server: validation, probing, calls, resources, prompts, reviews.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_domain::SyncSummary;
use switchboard_service::{CallOutcome, CredentialInput, FunctionDiff, Validation};
use tokio_util::sync::CancellationToken;

use super::{connector_access, org_access};
use crate::State;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;

/// Probes the connector's server, records what answered, pins its functions and sets its
/// status (owners and admins). The report says, step by step, what happened.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/validate", tag = "connectors",
    params(("connector_id" = String, Path)),
    responses((status = 200, body = Validation), (status = 409, description = "the connector is disabled", body = crate::error::ErrorBody)))]
pub(crate) async fn validate_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<Validation>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state.app.validate_connector(&access.admin()?, id).await?,
    ))
}

/// Asks the server for its functions again now and pins what changed (owners and admins).
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/refresh", tag = "connectors",
    params(("connector_id" = String, Path)), responses((status = 200, body = SyncSummary), (status = 502, body = crate::error::ErrorBody)))]
pub(crate) async fn refresh_functions(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<SyncSummary>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state.app.refresh_functions(&access.admin()?, id).await?,
    ))
}

/// A URL to probe, with an optional credential.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProbeRequest {
    url: String,
    credential: Option<CredentialInput>,
}

/// Probes a URL without registering it (owners and admins): the same step-by-step report a
/// validation gives.
#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/probe", tag = "connectors", request_body = ProbeRequest,
    params(("org_id" = String, Path)), responses((status = 200, description = "the probe report", body = Object)))]
pub(crate) async fn probe_url(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Body(req): Body<ProbeRequest>,
) -> ApiResult<Json<switchboard_service::Probe>> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    Ok(Json(
        state
            .app
            .probe_url(&access, &req.url, req.credential)
            .await?,
    ))
}

/// A function's arguments.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallRequest {
    /// The arguments, checked against the function's input schema before the server is called.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    arguments: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// Calls a function by hand. Calling it is the member's approval for a function on "ask";
/// blocked, "never", held and changed functions are refused with the rule that refused them.
/// With `Accept: text/event-stream` the answer is a stream of `progress` events and one
/// `result` (or `error`) event; closing the stream cancels the call.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/functions/{name}/call", tag = "functions", request_body = CallRequest,
    params(("connector_id" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, body = CallOutcome),
        (status = 403, description = "policy refused the call", body = crate::error::ErrorBody),
        (status = 422, description = "the arguments do not match the schema", body = crate::error::ErrorBody),
        (status = 502, description = "the server failed", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn call_function(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((connector_id, name)): Path<(String, String)>,
    headers: HeaderMap,
    Body(req): Body<CallRequest>,
) -> ApiResult<Response> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_stream {
        let outcome = state
            .app
            .call_function(
                &access,
                id,
                &name,
                req.arguments,
                None,
                CancellationToken::new(),
            )
            .await?;
        return Ok(Json(outcome).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    // Dropping the response stream (the client went away) drops this guard and cancels the call.
    let guard = cancel.clone().drop_guard();
    let app = state.app.clone();
    let call = tokio::spawn(async move {
        app.call_function(&access, id, &name, req.arguments, Some(tx), cancel)
            .await
    });
    let progress = tokio_stream_from(rx).map(|p| Ok::<_, Infallible>(event("progress", &p)));
    let finish = futures::stream::once(async move {
        let _guard = guard;
        let event = match call.await {
            Ok(Ok(outcome)) => event("result", &outcome),
            Ok(Err(e)) => error_event(ApiError::from(e)),
            Err(_) => error_event(ApiError::from(switchboard_service::Error::Internal(
                "the call task failed".into(),
            ))),
        };
        Ok(event)
    });
    Ok(Sse::new(progress.chain(finish))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn event<T: Serialize>(name: &str, data: &T) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}

fn error_event(e: ApiError) -> Event {
    Event::default().event("error").data(e.body_json())
}

/// The server's resources and resource templates.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ResourceList {
    #[schema(value_type = Vec<Object>)]
    resources: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    resource_templates: Vec<Value>,
}

/// Lists the server's resources and resource templates.
#[utoipa::path(get, path = "/api/v1/connectors/{connector_id}/resources", tag = "resources",
    params(("connector_id" = String, Path)), responses((status = 200, body = ResourceList)))]
pub(crate) async fn list_resources(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<ResourceList>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    let (resources, resource_templates) = state.app.resources(&access, id).await?;
    Ok(Json(ResourceList {
        resources,
        resource_templates,
    }))
}

/// A resource to read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadRequest {
    uri: String,
}

/// A resource's contents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReadResponse {
    #[schema(value_type = Vec<Object>)]
    contents: Vec<Value>,
}

/// Reads one of the server's resources.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/resources/read", tag = "resources", request_body = ReadRequest,
    params(("connector_id" = String, Path)), responses((status = 200, body = ReadResponse)))]
pub(crate) async fn read_resource(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
    Body(req): Body<ReadRequest>,
) -> ApiResult<Json<ReadResponse>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(ReadResponse {
        contents: state.app.read_resource(&access, id, &req.uri).await?,
    }))
}

/// The server's prompts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PromptList {
    #[schema(value_type = Vec<Object>)]
    prompts: Vec<Value>,
}

/// Lists the server's prompt templates.
#[utoipa::path(get, path = "/api/v1/connectors/{connector_id}/prompts", tag = "resources",
    params(("connector_id" = String, Path)), responses((status = 200, body = PromptList)))]
pub(crate) async fn list_prompts(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<PromptList>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(PromptList {
        prompts: state.app.prompts(&access, id).await?,
    }))
}

/// A prompt's arguments.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PromptRequest {
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    arguments: Value,
}

/// Gets a prompt filled in with its arguments.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/prompts/{name}/get", tag = "resources", request_body = PromptRequest,
    params(("connector_id" = String, Path), ("name" = String, Path)), responses((status = 200, description = "the prompt's messages", body = Object)))]
pub(crate) async fn get_prompt(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((connector_id, name)): Path<(String, String)>,
    Body(req): Body<PromptRequest>,
) -> ApiResult<Json<Value>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state
            .app
            .get_prompt(&access, id, &name, req.arguments)
            .await?,
    ))
}

/// An argument to complete.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRequest {
    /// `{"type": "ref/prompt", "name": …}` or `{"type": "ref/resource", "uri": …}`.
    #[serde(rename = "ref")]
    #[schema(value_type = Object)]
    reference: Value,
    argument: String,
    #[serde(default)]
    value: String,
}

/// Suggested values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CompleteResponse {
    values: Vec<String>,
}

/// Asks the server to complete a prompt or resource-template argument.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/complete", tag = "resources", request_body = CompleteRequest,
    params(("connector_id" = String, Path)), responses((status = 200, body = CompleteResponse)))]
pub(crate) async fn complete(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
    Body(req): Body<CompleteRequest>,
) -> ApiResult<Json<CompleteResponse>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    let values = state
        .app
        .complete(&access, id, req.reference, &req.argument, &req.value)
        .await?;
    Ok(Json(CompleteResponse { values }))
}

/// The difference between a function's approved and current definitions, for review.
#[utoipa::path(get, path = "/api/v1/connectors/{connector_id}/functions/{name}/diff", tag = "functions",
    params(("connector_id" = String, Path), ("name" = String, Path)), responses((status = 200, body = FunctionDiff)))]
pub(crate) async fn function_diff(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((connector_id, name)): Path<(String, String)>,
) -> ApiResult<Json<FunctionDiff>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(state.app.function_diff(&access, id, &name).await?))
}
