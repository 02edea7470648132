//! Language models for the chat: the [`ChatModel`] trait, the conversation it is given and the
//! streamed reply it produces, and the providers that implement it over HTTP.
//!
//! Architecture invariant: this crate knows nothing of MCP, connectors or permissions. A tool
//! is a name, a description and a JSON schema; what calling it means is the chat crate's
//! business. API boundary: providers reach the network only through the SSRF-aware
//! [`switchboard_net::SafeClient`], because a provider's base URL is entered by an admin.
//!
//! [`connect`] gives a [`ChatModel`] for a [`ProviderConfig`]: Mistral's chat completions or
//! OpenAI's (and every server that speaks them: Ollama, vLLM, the llama.cpp server, LM
//! Studio). Both stream the reply as server-sent events; the provider yields the text as it
//! arrives, puts tool calls together from their pieces, and ends with the whole [`Reply`].
//! One reply is bounded in size ([`Limits`]); the API key never appears in an error, a log
//! line or `Debug` output.

mod assemble;
mod config;
mod errors;
mod provider;
mod sse;
mod wire;

use std::sync::Arc;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_net::SafeClient;

pub use config::{ApiKey, Limits, ProviderConfig, client_options};
pub use switchboard_domain::ProviderKind;

/// The model `config` names, reached through `client` with the default [`Limits`].
///
/// `client` should be built with [`client_options`]: no total timeout, which would cut long
/// replies off, and an idle timeout, which ends a reply whose provider went silent. Its
/// [`switchboard_net::Destinations`] decide whether a provider on a private or loopback
/// address (a local Ollama) may be reached. Nothing is sent until the first request; a base
/// URL that cannot be used fails then, with [`LlmError::Config`].
pub fn connect(client: SafeClient, config: ProviderConfig) -> Arc<dyn ChatModel> {
    connect_with(client, config, Limits::default())
}

/// [`connect`] with other [`Limits`].
pub fn connect_with(
    client: SafeClient,
    config: ProviderConfig,
    limits: Limits,
) -> Arc<dyn ChatModel> {
    Arc::new(provider::ChatCompletions::new(client, config, limits))
}

/// One message of the conversation a model is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// Instructions from the platform.
    System {
        /// The text.
        content: String,
    },
    /// What the member wrote, or content the member attached.
    User {
        /// The text.
        content: String,
    },
    /// What the model answered: text, tool calls, or both.
    Assistant {
        /// The text; empty when the model only called tools.
        content: String,
        /// The tools it called, in its order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, given back to the model.
    Tool {
        /// The id of the call it answers.
        call_id: String,
        /// The tool's name, which some providers require beside the id.
        name: String,
        /// The result as text.
        content: String,
    },
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call, echoed in the [`Message::Tool`] that answers it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments exactly as the model wrote them: JSON text, possibly malformed, which the
    /// caller parses and checks.
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON schema of its arguments.
    pub parameters: Value,
}

/// One request to a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Sampling temperature, when the caller wants one.
    pub temperature: Option<f32>,
    /// Most tokens the reply may have.
    pub max_tokens: Option<u32>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished its answer.
    Stop,
    /// It wants tools called.
    ToolCalls,
    /// It hit the token limit.
    Length,
    /// The provider filtered the output.
    ContentFilter,
    /// A reason this crate does not know, as the provider gave it.
    Other(String),
}

/// Tokens used by one request, as the provider counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the request.
    pub prompt_tokens: u64,
    /// Tokens of the reply.
    pub completion_tokens: u64,
}

/// A whole reply, assembled from the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Its text.
    pub content: String,
    /// The tools it called, complete.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Tokens used, when the provider said.
    pub usage: Option<Usage>,
}

/// What a reply stream yields: text as it is generated, then the whole reply, last.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelEvent {
    /// More text.
    Text(String),
    /// The complete reply; nothing follows it.
    Done(Reply),
}

/// A reply as it streams in.
pub type ReplyStream = BoxStream<'static, Result<ModelEvent, LlmError>>;

/// A language model that answers with text and tool calls.
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync {
    /// Sends the request and streams the reply. The stream ends with exactly one
    /// [`ModelEvent::Done`] or an error; dropping it cancels the request.
    async fn stream(&self, request: &ChatRequest) -> Result<ReplyStream, LlmError>;
}

/// Why a model could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider could not be reached, or the connection broke; worth retrying.
    #[error("the model provider could not be reached: {0}")]
    Unreachable(String),
    /// The provider is overloaded or limits this key; worth retrying later.
    #[error("the model provider is busy ({status}): {message}")]
    Busy {
        /// The HTTP status.
        status: u16,
        /// The provider's words.
        message: String,
    },
    /// The provider refused the key.
    #[error("the model provider refused the API key ({status}): {message}")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The provider's words.
        message: String,
    },
    /// The provider refused the request.
    #[error("the model provider refused the request ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The provider's words.
        message: String,
    },
    /// The provider answered something this crate cannot read.
    #[error("the model provider answered in an unexpected format: {0}")]
    Protocol(String),
    /// The provider's configuration is unusable.
    #[error("{0}")]
    Config(String),
}

impl LlmError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Unreachable(_) | LlmError::Busy { .. })
    }
}
