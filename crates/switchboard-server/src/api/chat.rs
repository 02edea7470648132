//! Conversations with the assistant: the organization's model, conversations, messages,
//! approvals, a server's questions, and the event stream that resumes from the last event id.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use switchboard_domain::{ChatEvent, ConnectorId, Conversation, ConversationId};
use switchboard_service::{
    Answer, Attachment, ConversationInput, ConversationView, ElicitationAnswer, ModelInfo,
    ModelSettings, OrgAccess, TurnView,
};

use super::{List, ListQuery, created, org_access, parse_field};
use crate::State;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params};

async fn conversation_access(
    state: &State,
    actor: &switchboard_service::Actor,
    raw: &str,
) -> ApiResult<(OrgAccess, ConversationId)> {
    let id: ConversationId = parse_field("conversation_id", raw)?;
    Ok((state.app.conversation_access(actor, id).await?, id))
}

/// The language model the organization's conversations use; `null` when none is set.
#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/chat-model", tag = "chat",
    params(("org_id" = String, Path)), responses((status = 200, body = Option<ModelInfo>)))]
pub(crate) async fn get_chat_model(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Option<ModelInfo>>> {
    let access = org_access(&state, &actor, &org_id).await?;
    Ok(Json(state.app.chat_model_info(&access).await?))
}

/// Sets the organization's language model; the key is sealed and never shown again (owners
/// and admins).
#[utoipa::path(put, path = "/api/v1/orgs/{org_id}/chat-model", tag = "chat", request_body = ModelSettings,
    params(("org_id" = String, Path)),
    responses((status = 200, body = ModelInfo), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn set_chat_model(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Body(req): Body<ModelSettings>,
) -> ApiResult<Json<ModelInfo>> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    Ok(Json(state.app.set_chat_model(&access, req).await?))
}

/// Removes the organization's model; the operator's default applies (owners and admins).
#[utoipa::path(delete, path = "/api/v1/orgs/{org_id}/chat-model", tag = "chat",
    params(("org_id" = String, Path)), responses((status = 204)))]
pub(crate) async fn clear_chat_model(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
) -> ApiResult<StatusCode> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    state.app.clear_chat_model(&access).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a conversation.
#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/conversations", tag = "chat", request_body = ConversationInput,
    params(("org_id" = String, Path)),
    responses((status = 201, body = Conversation), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn create_conversation(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Body(req): Body<ConversationInput>,
) -> ApiResult<Response> {
    let access = org_access(&state, &actor, &org_id).await?;
    Ok(created(state.app.create_conversation(&access, req).await?))
}

/// The member's conversations, most recent first.
#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/conversations", tag = "chat",
    params(("org_id" = String, Path), ListQuery), responses((status = 200, body = List<Conversation>)))]
pub(crate) async fn list_conversations(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<List<Conversation>>> {
    let access = org_access(&state, &actor, &org_id).await?;
    Ok(Json(
        state
            .app
            .conversations(&access, query.page()?)
            .await?
            .into(),
    ))
}

/// A conversation with its messages and the turn under way.
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}", tag = "chat",
    params(("conversation_id" = String, Path)), responses((status = 200, body = ConversationView)))]
pub(crate) async fn get_conversation(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(conversation_id): Path<String>,
) -> ApiResult<Json<ConversationView>> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    Ok(Json(state.app.conversation(&access, id).await?))
}

/// Changes to a conversation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateConversationRequest {
    /// A new title.
    title: Option<String>,
    /// The connectors the assistant may use, replacing the list.
    #[schema(value_type = Option<Vec<String>>)]
    connectors: Option<Vec<ConnectorId>>,
}

/// Renames a conversation or changes which connectors are enabled in it.
#[utoipa::path(patch, path = "/api/v1/conversations/{conversation_id}", tag = "chat",
    request_body = UpdateConversationRequest, params(("conversation_id" = String, Path)),
    responses((status = 200, body = Conversation)))]
pub(crate) async fn update_conversation(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(conversation_id): Path<String>,
    Body(req): Body<UpdateConversationRequest>,
) -> ApiResult<Json<Conversation>> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    Ok(Json(
        state
            .app
            .update_conversation(&access, id, req.title, req.connectors)
            .await?,
    ))
}

/// Deletes a conversation; a turn under way is cancelled first.
#[utoipa::path(delete, path = "/api/v1/conversations/{conversation_id}", tag = "chat",
    params(("conversation_id" = String, Path)), responses((status = 204)))]
pub(crate) async fn delete_conversation(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(conversation_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    state.app.delete_conversation(&access, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A member's message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageRequest {
    /// What the member writes.
    content: String,
    /// Resources and prompts to add, from the conversation's connectors.
    #[serde(default)]
    attachments: Vec<Attachment>,
}

/// Posts the member's message; the assistant's turn starts and its answer streams on
/// `GET /conversations/{id}/events`.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/messages", tag = "chat",
    request_body = MessageRequest, params(("conversation_id" = String, Path)),
    responses((status = 202, body = TurnView),
        (status = 409, description = "a turn is under way, or no model is set", body = crate::error::ErrorBody)))]
pub(crate) async fn post_message(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(conversation_id): Path<String>,
    Body(req): Body<MessageRequest>,
) -> ApiResult<Response> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    let turn = state
        .app
        .send_message(&access, id, req.content, req.attachments)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(turn)).into_response())
}

/// An answer to an approval request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalRequest {
    /// `allow_once`, `always_allow` (also sets the member's preference) or `deny`.
    #[schema(value_type = String)]
    answer: Answer,
}

/// Answers an approval request of the turn under way, on any replica.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/approvals/{call_id}", tag = "chat",
    request_body = ApprovalRequest, params(("conversation_id" = String, Path), ("call_id" = String, Path)),
    responses((status = 200, body = TurnView), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn answer_approval(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((conversation_id, call_id)): Path<(String, String)>,
    Body(req): Body<ApprovalRequest>,
) -> ApiResult<Json<TurnView>> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    Ok(Json(
        state
            .app
            .answer_approval(&access, id, &call_id, req.answer)
            .await?,
    ))
}

/// Answers a question a connector's server asked during a call (elicitation): `accept` with
/// `content`, `decline` or `cancel`.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/elicitations/{elicitation_id}", tag = "chat",
    request_body = Object, params(("conversation_id" = String, Path), ("elicitation_id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn answer_elicitation(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((conversation_id, elicitation_id)): Path<(String, String)>,
    Body(answer): Body<ElicitationAnswer>,
) -> ApiResult<StatusCode> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    state
        .app
        .answer_elicitation(&access, id, &elicitation_id, answer)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An answer to a server's request to use the organization's model.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SamplingAnswerRequest {
    /// Whether the member lets the server's request run on the organization's model.
    approve: bool,
}

/// Approves or refuses a server's sampling request made during a call (only asked where the
/// organization allows sampling).
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/samplings/{sampling_id}", tag = "chat",
    request_body = SamplingAnswerRequest, params(("conversation_id" = String, Path), ("sampling_id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn answer_sampling(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((conversation_id, sampling_id)): Path<(String, String)>,
    Body(req): Body<SamplingAnswerRequest>,
) -> ApiResult<StatusCode> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    state
        .app
        .answer_sampling(&access, id, &sampling_id, req.approve)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels the turn under way.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/cancel", tag = "chat",
    params(("conversation_id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn cancel_turn(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(conversation_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    state.app.cancel_turn(&access, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where to resume an event stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct EventsQuery {
    /// Resume after this event id (the `Last-Event-ID` header does the same).
    after: Option<String>,
}

/// The conversation's events as server-sent events: `turn_started`, `text_delta`,
/// `tool_call_requested`, `approval_needed`, `tool_progress`, `tool_result`,
/// `elicitation_requested`, `elicitation_answered`, `sampling_requested`,
/// `sampling_answered`, `done`, `error`. Each carries its id;
/// a client that reconnects with `Last-Event-ID` (or `?after=`) gets what it missed.
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/events", tag = "chat",
    params(("conversation_id" = String, Path), EventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "the event stream")))]
pub(crate) async fn conversation_events(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(conversation_id): Path<String>,
    Params(query): Params<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (access, id) = conversation_access(&state, &actor, &conversation_id).await?;
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.after);
    let after = match raw {
        Some(raw) => raw.trim().parse::<i64>().map_err(|_| {
            ApiError::from(switchboard_service::Error::Validation(
                switchboard_domain::ValidationError::new("after", "must be an event id (a number)"),
            ))
        })?,
        None => 0,
    };
    let stream = state
        .app
        .chat_events(&access, id, after)
        .await?
        .into_stream()
        .map(|e: ChatEvent| Ok::<_, Infallible>(sse_event(&e)));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse_event(e: &ChatEvent) -> Event {
    Event::default()
        .id(e.seq.to_string())
        .event(e.kind.clone())
        .data(serde_json::to_string(&e.data).unwrap_or_else(|_| "{}".into()))
}
