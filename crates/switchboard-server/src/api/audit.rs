//! The audit log: listing with filters, and export as JSON lines.

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Path, State as AxState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use switchboard_domain::{AuditAction, AuditEvent, Timestamp, UserId};
use switchboard_service::{AuditQuery, PageRequest};

use super::{List, ListQuery, org_access, parse_field};
use crate::State;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;

/// Filters of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only this action, such as `connector_created`.
    action: Option<String>,
    /// Only this actor's user id.
    actor: Option<String>,
    /// Only events at or after this RFC 3339 time.
    since: Option<String>,
    /// Only events before this RFC 3339 time.
    until: Option<String>,
    /// `newest` (default) or `oldest` first.
    order: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl AuditParams {
    fn query(&self) -> ApiResult<AuditQuery> {
        let time = |field: &'static str, raw: &Option<String>| -> ApiResult<Option<Timestamp>> {
            raw.as_deref()
                .map(|s| {
                    Timestamp::parse_rfc3339(s).map_err(|_| {
                        ApiError::new(
                            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                            "validation_failed",
                            format!(
                                "{field}: must be an RFC 3339 time such as 2026-01-31T12:00:00Z"
                            ),
                        )
                        .field(field)
                    })
                })
                .transpose()
        };
        Ok(AuditQuery {
            action: self
                .action
                .as_deref()
                .map(|a| a.parse::<AuditAction>())
                .transpose()
                .map_err(switchboard_service::Error::from)?,
            actor: self
                .actor
                .as_deref()
                .map(|a| parse_field::<UserId>("actor", a))
                .transpose()?,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }

    fn newest_first(&self) -> ApiResult<bool> {
        match self.order.as_deref() {
            None | Some("newest") => Ok(true),
            Some("oldest") => Ok(false),
            Some(_) => Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "order: must be newest or oldest",
            )
            .field("order")),
        }
    }
}

/// One page of the organization's audit log (owners and admins).
#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/audit", tag = "audit",
    params(("org_id" = String, Path), AuditParams), responses((status = 200, body = List<AuditEvent>), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_audit(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Params(params): Params<AuditParams>,
) -> ApiResult<Json<List<AuditEvent>>> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    let page = ListQuery::from_parts(params.limit.clone(), params.cursor.clone()).page()?;
    let events = state
        .app
        .audit_log(&access, params.query()?, params.newest_first()?, page)
        .await?;
    Ok(Json(events.into()))
}

/// The whole filtered log, oldest first, as JSON lines (owners and admins). Streamed page by
/// page, so a long log never sits in memory at once.
#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/audit/export", tag = "audit",
    params(("org_id" = String, Path), AuditParams),
    responses((status = 200, content_type = "application/x-ndjson", description = "one event per line")))]
pub(crate) async fn export_audit(
    AxState(state): AxState<State>,
    Authed(actor): Authed,
    Path(org_id): Path<String>,
    Params(params): Params<AuditParams>,
) -> ApiResult<Response> {
    let access = org_access(&state, &actor, &org_id).await?.admin()?;
    let query = params.query()?;
    let app = state.app.clone();
    let pages = futures::stream::unfold(Some(None), move |cursor| {
        let (app, access, query) = (app.clone(), access.clone(), query.clone());
        async move {
            let after = cursor?;
            let page = PageRequest { after, limit: 200 };
            match app.audit_log(&access, query, false, page).await {
                Ok(page) => {
                    let mut chunk = String::new();
                    for event in &page.items {
                        chunk.push_str(&serde_json::to_string(event).unwrap_or_default());
                        chunk.push('\n');
                    }
                    let next = page.next.map(Some);
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export stopped");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.jsonl\"",
            ),
        ],
        HttpBody::from_stream(pages),
    )
        .into_response())
}
