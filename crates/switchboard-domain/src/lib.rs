//! Switchboard's vocabulary: ids, entities and the validation rules that make a value legal.
//!
//! Architecture invariant: this crate performs no IO and knows no async runtime, database,
//! HTTP or MCP library. Everything here is plain data and pure functions, so every other crate
//! can depend on it and its rules can be tested without setting anything up.

mod account;
mod audit;
mod chat;
mod connector;
mod error;
mod function;
mod ids;
mod org;
pub mod sanitize;
mod timestamp;

pub use account::{ApiToken, Email, Password, Session, User};
pub use audit::{AuditAction, AuditEvent, NewAuditEvent};
pub use chat::{
    ChatEvent, ChatMessage, Conversation, MAX_TITLE_CHARS, ProviderKind, TurnRecord, TurnStatus,
    UntrustedContent, chat_model_seal_context, check_title,
};
pub use connector::{
    AuthMethod, ClientSource, Connector, ConnectorName, ConnectorStatus, ConnectorUrl,
    CredentialKind, CredentialScope, Description, GrantStatus, HttpAllowance, Transport,
    client_seal_context, credential_seal_context, grant_seal_context, pending_seal_context,
};
pub use error::ValidationError;
pub use function::{
    FloorPolicy, Function, FunctionDefinition, FunctionVersion, MemberPreference, ReviewState,
    SyncSummary, definition_hash,
};
pub use ids::{
    ApiTokenId, AuditEventId, ConnectorId, ConversationId, FunctionId, GrantId, OAuthClientId,
    OrgId, TurnId, UserId,
};
pub use org::{
    Member, NewFunctionState, OrgSettings, OrgSlug, Organization, Role, check_display_name,
};
pub use timestamp::Timestamp;

/// Validates a page size given by a client, so every list endpoint applies the same bounds.
pub fn page_limit(requested: Option<u32>) -> Result<u32, ValidationError> {
    const DEFAULT: u32 = 50;
    const MAX: u32 = 200;
    match requested {
        None => Ok(DEFAULT),
        Some(0) => Err(ValidationError::new("limit", "must be at least 1")),
        Some(n) if n > MAX => Err(ValidationError::new(
            "limit",
            format!("must be at most {MAX}"),
        )),
        Some(n) => Ok(n),
    }
}
