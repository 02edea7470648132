//! Reading the audit log.

use switchboard_domain::{AuditAction, AuditEvent, Timestamp, UserId};
use switchboard_store::AuditFilter;

use crate::{AdminAccess, App, Page, PageRequest, Result};

/// Which events an admin asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only this actor.
    pub actor: Option<UserId>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
}

impl App {
    /// One page of the organization's audit log, newest first or oldest first.
    pub async fn audit_log(
        &self,
        access: &AdminAccess,
        query: AuditQuery,
        newest_first: bool,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>> {
        let filter = AuditFilter {
            org_id: access.org(),
            action: query.action,
            actor_id: query.actor,
            since: query.since,
            until: query.until,
            newest_first,
        };
        Ok(self.store.list_audit(&filter, page).await?)
    }
}
