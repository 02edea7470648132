//! The connector registry, functions and their policies.

use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use switchboard_domain::{
    AuthMethod, Connector, ConnectorId, CredentialScope, FloorPolicy, Function, FunctionVersion,
    MemberPreference,
};
use switchboard_service::{
    ConnectorInput, ConnectorUpdate, CredentialInput, FunctionInfo, OrgAccess,
};

use super::{List, ListQuery, created, double_option, org_access, parse_field};
use crate::State;
use crate::auth::Authed;
use crate::error::ApiResult;
use crate::extract::{Body, Params};

pub(crate) async fn connector_access(
    state: &State,
    actor: &switchboard_service::Actor,
    raw: &str,
) -> ApiResult<(OrgAccess, ConnectorId)> {
    let id: ConnectorId = parse_field("connector_id", raw)?;
    Ok((state.app.connector_access(actor, id).await?, id))
}

/// An organization's connectors.
#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/connectors", tag = "connectors",
    params(("org_id" = String, Path), ListQuery), responses((status = 200, body = List<Connector>)))]
pub(crate) async fn list_connectors(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<List<Connector>>> {
    let access = org_access(&state, &actor, &org_id).await?;
    Ok(Json(
        state.app.connectors(&access, query.page()?).await?.into(),
    ))
}

/// A connector to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewConnectorRequest {
    /// ASCII letters and digits, 1 to 64, unique in the organization ignoring case.
    name: String,
    /// The MCP server's URL (`https`, or `http` where the operator allows it).
    url: String,
    /// At most 500 characters.
    description: Option<String>,
    /// A static credential shared by the organization; sealed at rest, never returned.
    credential: Option<CredentialInput>,
    /// Who holds the credential: `shared` (the organization, the default) or `member` (every
    /// member brings their own token or connects their own account).
    credential_scope: Option<CredentialScope>,
    /// The auth method, when chosen rather than detected.
    auth_method: Option<AuthMethod>,
}

/// Registers a connector (owners and admins).
#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/connectors", tag = "connectors", request_body = NewConnectorRequest,
    params(("org_id" = String, Path)),
    responses((status = 201, body = Connector), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Body(req): Body<NewConnectorRequest>,
) -> ApiResult<Response> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    let input = ConnectorInput {
        name: req.name,
        url: req.url,
        description: req.description,
        credential: req.credential,
        credential_scope: req.credential_scope,
        auth_method: req.auth_method,
    };
    Ok(created(state.app.create_connector(&access, input).await?))
}

/// A connector.
#[utoipa::path(get, path = "/api/v1/connectors/{connector_id}", tag = "connectors",
    params(("connector_id" = String, Path)), responses((status = 200, body = Connector), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<Connector>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(state.app.connector(&access, id).await?))
}

/// Changes to a connector: absent fields stay, `null` clears `description` or removes
/// `credential`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateConnectorRequest {
    name: Option<String>,
    url: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<CredentialInput>)]
    credential: Option<Option<CredentialInput>>,
    /// `shared` or `member`.
    credential_scope: Option<CredentialScope>,
    /// The auth method to use instead of the detected one.
    auth_method: Option<AuthMethod>,
}

/// Changes a connector (owners and admins). A new URL sends it back to `connecting`.
#[utoipa::path(patch, path = "/api/v1/connectors/{connector_id}", tag = "connectors", request_body = UpdateConnectorRequest,
    params(("connector_id" = String, Path)), responses((status = 200, body = Connector), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn update_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
    Body(req): Body<UpdateConnectorRequest>,
) -> ApiResult<Json<Connector>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    let update = ConnectorUpdate {
        name: req.name,
        url: req.url,
        description: req.description,
        credential: req.credential,
        credential_scope: req.credential_scope,
        auth_method: req.auth_method,
    };
    Ok(Json(
        state
            .app
            .update_connector(&access.admin()?, id, update)
            .await?,
    ))
}

/// Deletes a connector with its functions, policies and credentials.
#[utoipa::path(delete, path = "/api/v1/connectors/{connector_id}", tag = "connectors",
    params(("connector_id" = String, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    state.app.delete_connector(&access.admin()?, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a connector; it goes back to `connecting` until validated.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/enable", tag = "connectors",
    params(("connector_id" = String, Path)), responses((status = 200, body = Connector)))]
pub(crate) async fn enable_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<Connector>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state
            .app
            .set_connector_enabled(&access.admin()?, id, true)
            .await?,
    ))
}

/// Disables a connector: none of its functions can be called.
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/disable", tag = "connectors",
    params(("connector_id" = String, Path)), responses((status = 200, body = Connector)))]
pub(crate) async fn disable_connector(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
) -> ApiResult<Json<Connector>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state
            .app
            .set_connector_enabled(&access.admin()?, id, false)
            .await?,
    ))
}

/// A connector's functions with their policies and the caller's current decision, by name.
#[utoipa::path(get, path = "/api/v1/connectors/{connector_id}/functions", tag = "functions",
    params(("connector_id" = String, Path), ListQuery), responses((status = 200, body = List<FunctionInfo>)))]
pub(crate) async fn list_functions(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(connector_id): Path<String>,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<List<FunctionInfo>>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state
            .app
            .functions(&access, id, query.page()?)
            .await?
            .into(),
    ))
}

/// The admin's floor for a function.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FloorRequest {
    floor: FloorPolicy,
}

/// Sets a function's floor (owners and admins).
#[utoipa::path(put, path = "/api/v1/connectors/{connector_id}/functions/{name}/floor", tag = "functions", request_body = FloorRequest,
    params(("connector_id" = String, Path), ("name" = String, Path)), responses((status = 200, body = FunctionInfo)))]
pub(crate) async fn set_floor(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((connector_id, name)): Path<(String, String)>,
    Body(req): Body<FloorRequest>,
) -> ApiResult<Json<FunctionInfo>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state
            .app
            .set_floor(&access.admin()?, id, &name, req.floor)
            .await?,
    ))
}

/// The caller's own preference for a function; `null` clears it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreferenceRequest {
    preference: Option<MemberPreference>,
}

/// Sets the caller's preference for a function.
#[utoipa::path(put, path = "/api/v1/connectors/{connector_id}/functions/{name}/preference", tag = "functions", request_body = PreferenceRequest,
    params(("connector_id" = String, Path), ("name" = String, Path)), responses((status = 200, body = FunctionInfo)))]
pub(crate) async fn set_preference(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((connector_id, name)): Path<(String, String)>,
    Body(req): Body<PreferenceRequest>,
) -> ApiResult<Json<FunctionInfo>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state
            .app
            .set_preference(&access, id, &name, req.preference)
            .await?,
    ))
}

/// Every definition a function has had, oldest first.
///
/// Not paged: a function gains a version only when its server presents a definition it never
/// had, and each change holds the function until an admin reviews it, so the history stays
/// short.
#[utoipa::path(get, path = "/api/v1/connectors/{connector_id}/functions/{name}/versions", tag = "functions",
    params(("connector_id" = String, Path), ("name" = String, Path)), responses((status = 200, body = Vec<FunctionVersion>)))]
pub(crate) async fn function_versions(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((connector_id, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<FunctionVersion>>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(state.app.function_versions(&access, id, &name).await?))
}

/// The definition hash the admin reviewed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveRequest {
    hash: String,
}

/// Approves a function's current definition (owners and admins).
#[utoipa::path(post, path = "/api/v1/connectors/{connector_id}/functions/{name}/approve", tag = "functions", request_body = ApproveRequest,
    params(("connector_id" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Function), (status = 409, description = "the definition changed again", body = crate::error::ErrorBody)))]
pub(crate) async fn approve_function(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((connector_id, name)): Path<(String, String)>,
    Body(req): Body<ApproveRequest>,
) -> ApiResult<Json<Function>> {
    let (access, id) = connector_access(&state, &actor, &connector_id).await?;
    Ok(Json(
        state
            .app
            .approve_function(&access.admin()?, id, &name, &req.hash)
            .await?,
    ))
}
