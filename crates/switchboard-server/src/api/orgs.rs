//! Organizations and their members.

use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use switchboard_domain::{Member, OrgId, OrgSettings, Organization, Role, UserId};
use switchboard_service::{NewMemberInput, OrgAccess};

use super::{List, ListQuery, OrgMembership, created, parse_field};
use crate::State;
use crate::auth::Authed;
use crate::error::ApiResult;
use crate::extract::{Body, Params};

/// Resolves the `{org_id}` path segment to the caller's access in that organization.
pub(crate) async fn org_access(
    state: &State,
    actor: &switchboard_service::Actor,
    raw: &str,
) -> ApiResult<OrgAccess> {
    let org: OrgId = parse_field("org_id", raw)?;
    Ok(state.app.org_access(actor, org).await?)
}

/// The caller's organizations with their role in each, by slug.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "organizations", params(ListQuery),
    responses((status = 200, body = List<OrgMembership>)))]
pub(crate) async fn list_orgs(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<List<OrgMembership>>> {
    let page = state.app.organizations(&actor, query.page()?).await?;
    Ok(Json(page.map(OrgMembership::from).into()))
}

/// A new organization.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrgRequest {
    /// Short name: lowercase letters, digits and hyphens.
    slug: String,
    /// Display name.
    name: String,
}

/// Creates an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "organizations", request_body = NewOrgRequest, responses(
    (status = 201, body = Organization), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)
))]
pub(crate) async fn create_org(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Body(req): Body<NewOrgRequest>,
) -> ApiResult<Response> {
    Ok(created(
        state
            .app
            .create_organization(&actor, &req.slug, &req.name)
            .await?,
    ))
}

/// An organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org_id}", tag = "organizations",
    params(("org_id" = String, Path)), responses((status = 200, body = Organization), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_org(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Organization>> {
    let access = org_access(&state, &actor, &org_id).await?;
    Ok(Json(state.app.organization(&access).await?))
}

/// Changes to an organization.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateOrgRequest {
    name: Option<String>,
    settings: Option<OrgSettings>,
}

/// Renames an organization or changes its settings (owners and admins).
#[utoipa::path(patch, path = "/api/v1/orgs/{org_id}", tag = "organizations", request_body = UpdateOrgRequest,
    params(("org_id" = String, Path)), responses((status = 200, body = Organization), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn update_org(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Body(req): Body<UpdateOrgRequest>,
) -> ApiResult<Json<Organization>> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    Ok(Json(
        state
            .app
            .update_organization(&access, req.name.as_deref(), req.settings)
            .await?,
    ))
}

/// An organization's members.
#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/members", tag = "organizations",
    params(("org_id" = String, Path), ListQuery), responses((status = 200, body = List<Member>)))]
pub(crate) async fn list_members(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<List<Member>>> {
    let access = org_access(&state, &actor, &org_id).await?;
    Ok(Json(
        state.app.members(&access, query.page()?).await?.into(),
    ))
}

/// A member to add: an existing account by email, or a new account (give `password`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMemberRequest {
    email: String,
    role: Role,
    display_name: Option<String>,
    password: Option<String>,
}

/// Adds a member (owners and admins; only owners add owners).
#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/members", tag = "organizations", request_body = NewMemberRequest,
    params(("org_id" = String, Path)), responses((status = 201, body = Member), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn add_member(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Body(req): Body<NewMemberRequest>,
) -> ApiResult<Response> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    let input = NewMemberInput {
        email: req.email,
        role: req.role,
        display_name: req.display_name,
        password: req.password,
    };
    Ok(created(state.app.add_member(&access, input).await?))
}

/// A new role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleRequest {
    role: Role,
}

/// Changes a member's role.
#[utoipa::path(patch, path = "/api/v1/orgs/{org_id}/members/{user_id}", tag = "organizations", request_body = RoleRequest,
    params(("org_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = Member), (status = 409, description = "would leave no owner", body = crate::error::ErrorBody)))]
pub(crate) async fn set_role(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((org_id, user_id)): Path<(String, String)>,
    Body(req): Body<RoleRequest>,
) -> ApiResult<Json<Member>> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    let user: UserId = parse_field("user_id", &user_id)?;
    Ok(Json(state.app.set_role(&access, user, req.role).await?))
}

/// Removes a member (or, for one's own id, leaves the organization).
#[utoipa::path(delete, path = "/api/v1/orgs/{org_id}/members/{user_id}", tag = "organizations",
    params(("org_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 409, description = "would leave no owner", body = crate::error::ErrorBody)))]
pub(crate) async fn remove_member(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path((org_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let access = org_access(&state, &actor, &org_id).await?;
    let user: UserId = parse_field("user_id", &user_id)?;
    state.app.remove_member(&access, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
