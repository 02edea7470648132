//! The audit log's events: append-only records of who did what.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connector::string_enum;
use crate::{AuditEventId, OrgId, Timestamp, UserId, ValidationError};

string_enum!(
    /// What happened.
    AuditAction, "action" {
        /// A user signed in.
        Login = "login",
        /// A sign-in was refused.
        LoginFailed = "login_failed",
        /// A user signed out.
        Logout = "logout",
        /// The first owner and organization were set up.
        SetupCompleted = "setup_completed",
        /// An organization was created.
        OrgCreated = "org_created",
        /// An organization's settings changed.
        OrgUpdated = "org_updated",
        /// A user account was created.
        UserCreated = "user_created",
        /// A user changed their password.
        PasswordChanged = "password_changed",
        /// A member was added.
        MemberAdded = "member_added",
        /// A member was removed.
        MemberRemoved = "member_removed",
        /// A member's role changed.
        RoleChanged = "role_changed",
        /// A connector was registered.
        ConnectorCreated = "connector_created",
        /// A connector's fields changed.
        ConnectorUpdated = "connector_updated",
        /// A connector was deleted.
        ConnectorDeleted = "connector_deleted",
        /// A connector was enabled.
        ConnectorEnabled = "connector_enabled",
        /// A connector was disabled.
        ConnectorDisabled = "connector_disabled",
        /// A connector was probed and validated (or failed validation).
        ConnectorValidated = "connector_validated",
        /// A function was called.
        FunctionCalled = "function_called",
        /// A connector's stored credential was set or cleared.
        CredentialChanged = "credential_changed",
        /// An admin changed a function's floor.
        FloorChanged = "floor_changed",
        /// A member changed their preference for a function.
        PreferenceChanged = "preference_changed",
        /// An admin approved a function's definition.
        FunctionApproved = "function_approved",
        /// Discovery found new, changed or removed functions.
        FunctionsSynced = "functions_synced",
        /// A personal API token was issued.
        TokenIssued = "token_issued",
        /// A personal API token was revoked.
        TokenRevoked = "token_revoked",
        /// An OAuth client was registered with an authorization server, or entered by an admin.
        OAuthClientRegistered = "oauth_client_registered",
        /// An OAuth authorization completed and a grant was stored.
        OAuthConnected = "oauth_connected",
        /// An authorization server refused a grant for good; the holder must authorize again.
        OAuthGrantRevoked = "oauth_grant_revoked",
        /// A holder disconnected an OAuth grant; its tokens were revoked and deleted.
        OAuthDisconnected = "oauth_disconnected",
        /// An admin set or cleared the organization's language model.
        ChatModelChanged = "chat_model_changed",
        /// A member answered a request to approve a function call in a conversation.
        ApprovalAnswered = "approval_answered",
    }
);

/// An event as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Its id; ids sort in the order events were written.
    pub id: AuditEventId,
    /// The organization it concerns, if any (sign-ins concern a user, not an organization).
    pub org_id: Option<OrgId>,
    /// Who acted, when known.
    pub actor_id: Option<UserId>,
    /// What happened.
    pub action: AuditAction,
    /// What it happened to, as `kind:id`, for example `connector:0193…`.
    pub target: Option<String>,
    /// Details that depend on the action. Never holds a secret.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// When it happened.
    pub created_at: Timestamp,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// The organization it concerns.
    pub org_id: Option<OrgId>,
    /// Who acted.
    pub actor_id: Option<UserId>,
    /// What happened.
    pub action: AuditAction,
    /// What it happened to.
    pub target: Option<String>,
    /// Details.
    pub detail: Value,
}

impl NewAuditEvent {
    /// An event with no organization, target or detail yet.
    pub fn new(action: AuditAction, actor_id: Option<UserId>) -> Self {
        Self {
            org_id: None,
            actor_id,
            action,
            target: None,
            detail: Value::Object(Default::default()),
        }
    }

    /// Sets the organization.
    pub fn org(mut self, org_id: OrgId) -> Self {
        self.org_id = Some(org_id);
        self
    }

    /// Sets the target, as `kind:id`.
    pub fn target(mut self, kind: &str, id: impl std::fmt::Display) -> Self {
        self.target = Some(format!("{kind}:{id}"));
        self
    }

    /// Sets the details.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// Gives the event its id and time.
    pub fn stamp(self, id: AuditEventId, created_at: Timestamp) -> AuditEvent {
        AuditEvent {
            id,
            org_id: self.org_id,
            actor_id: self.actor_id,
            action: self.action,
            target: self.target,
            detail: self.detail,
            created_at,
        }
    }
}
