//! Conversations with the assistant: their records, turns, stored stream events, and the
//! organization's choice of language model.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connector::string_enum;
use crate::{ConnectorId, ConversationId, OrgId, Timestamp, TurnId, UserId, ValidationError};

/// Longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// A member's conversation with the assistant. Only its member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// The organization it belongs to.
    pub org_id: OrgId,
    /// The member it belongs to.
    pub user_id: UserId,
    /// Its title.
    pub title: String,
    /// The connectors whose functions the assistant may use in it.
    pub connectors: Vec<ConnectorId>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a turn last started or ended in it.
    pub updated_at: Timestamp,
}

/// Checks a conversation title: trimmed, not empty, at most [`MAX_TITLE_CHARS`] characters,
/// no control characters.
pub fn check_title(raw: &str) -> Result<String, ValidationError> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(ValidationError::new("title", "must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ValidationError::new(
            "title",
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "title",
            "must not contain control characters",
        ));
    }
    Ok(title.to_owned())
}

string_enum!(
    /// Where a turn stands.
    TurnStatus, "status" {
        /// The assistant is working on it: waiting for the model or for tool calls.
        Running = "running",
        /// It waits for the member to answer an approval or a server's question.
        Waiting = "waiting",
        /// The assistant answered.
        Done = "done",
        /// It stopped on an error.
        Failed = "failed",
        /// The member cancelled it.
        Cancelled = "cancelled",
    }
);

impl TurnStatus {
    /// Whether the turn has ended, one way or another.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// A turn as stored: its status and the chat state machine's state, which the store keeps
/// without reading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// Its id.
    pub id: TurnId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The organization.
    pub org_id: OrgId,
    /// The member whose turn it is.
    pub user_id: UserId,
    /// Where it stands.
    pub status: TurnStatus,
    /// The state machine's state, as JSON.
    pub state: Value,
    /// Bumped by every save; a save names the version it read, so two replicas never both
    /// advance the same turn.
    pub version: i64,
    /// Until when the process driving it holds it; a running turn whose lease ran out is
    /// picked up by another process.
    pub lease_until: Option<Timestamp>,
    /// When it started.
    pub created_at: Timestamp,
}

/// One message of a conversation's history, as stored after its turn ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    /// Position in the conversation, from 1.
    pub seq: i64,
    /// The turn that produced it.
    pub turn_id: TurnId,
    /// The message, as the chat crate defines it (role, content, tool calls).
    #[schema(value_type = Object)]
    pub body: Value,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// One event of a conversation's stream, stored so a client can resume where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatEvent {
    /// Position in the conversation's stream, from 1; the SSE event id.
    pub seq: i64,
    /// The turn it belongs to.
    pub turn_id: TurnId,
    /// The event's kind, the SSE event name (`text_delta`, `approval_needed`, …).
    pub kind: String,
    /// The event's data.
    #[schema(value_type = Object)]
    pub data: Value,
    /// When it was stored.
    pub created_at: Timestamp,
}

string_enum!(
    /// Which wire format a model provider speaks.
    ProviderKind, "kind" {
        /// Mistral's chat completions API.
        Mistral = "mistral",
        /// The OpenAI chat completions API, as OpenAI, Ollama, vLLM, the llama.cpp server and
        /// LM Studio serve it.
        OpenAi = "openai",
    }
);

string_enum!(
    /// How far the assistant trusts a conversation after tool output entered it.
    UntrustedContent, "untrusted_content" {
        /// After untrusted content, a call to a function not annotated read-only is asked
        /// first, even when the member chose "always" (the default).
        Strict = "strict",
        /// The members' choices apply unchanged.
        Standard = "standard",
    }
);

/// The associated data an organization's model API key is sealed with.
pub fn chat_model_seal_context(org: OrgId) -> String {
    format!("chat-model-key:{org}")
}
