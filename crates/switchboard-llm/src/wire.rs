//! The two chat-completion dialects on the wire: the request body each provider expects, and
//! the streamed chunks it answers with, read tolerantly into one shape.
//!
//! Both follow OpenAI's chat completions API (`POST /chat/completions`; "Create chat
//! completion" and "The chat completion chunk object" in OpenAI's API reference). Mistral's
//! differences, from its API reference ("Chat Completion") and its function-calling guide:
//! a tool message carries the tool's `name` beside `tool_call_id`; there is no
//! `stream_options` (usage comes on the last chunk anyway); tool use is asked for with
//! `tool_choice: "auto"` and `parallel_tool_calls: true`; and each tool call streams whole in
//! one delta, its `arguments` a JSON string (an object is accepted too).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchboard_domain::ProviderKind;

use crate::{ChatRequest, FinishReason, Message, ToolCall, ToolSpec, Usage};

/// Which request field carries the token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenLimitField {
    /// `max_tokens`: Mistral, and every OpenAI-compatible server (Ollama, vLLM, llama.cpp,
    /// LM Studio).
    MaxTokens,
    /// `max_completion_tokens`: OpenAI itself, which deprecates `max_tokens` and refuses it
    /// for its reasoning models.
    MaxCompletionTokens,
}

/// The JSON body of a streamed chat-completion request.
pub(crate) fn request_body(
    kind: ProviderKind,
    model: &str,
    request: &ChatRequest,
    limit_field: TokenLimitField,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let messages = request
        .messages
        .iter()
        .map(|m| message(kind, m))
        .collect::<Vec<_>>();
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(true));
    if kind == ProviderKind::OpenAi {
        // Without it OpenAI sends no usage in a stream; with it, one last chunk with empty
        // `choices` carries the usage of the whole request.
        body.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if !request.tools.is_empty() {
        let tools = request.tools.iter().map(tool).collect::<Vec<_>>();
        body.insert("tools".into(), Value::Array(tools));
        if kind == ProviderKind::Mistral {
            body.insert("tool_choice".into(), json!("auto"));
            body.insert("parallel_tool_calls".into(), json!(true));
        }
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), float(temperature));
    }
    if let Some(max) = request.max_tokens {
        let field = match limit_field {
            TokenLimitField::MaxTokens => "max_tokens",
            TokenLimitField::MaxCompletionTokens => "max_completion_tokens",
        };
        body.insert(field.into(), json!(max));
    }
    Value::Object(body)
}

/// An `f32` as the JSON number it was written as (`0.2`, not `0.20000000298023224`, which a
/// plain widening to `f64` gives).
fn float(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn message(kind: ProviderKind, message: &Message) -> Value {
    match message {
        Message::System { content } => json!({ "role": "system", "content": content }),
        Message::User { content } => json!({ "role": "user", "content": content }),
        Message::Assistant {
            content,
            tool_calls,
        } => {
            let mut out = Map::new();
            out.insert("role".into(), json!("assistant"));
            // Both APIs take a null content when the model only called tools; an empty string
            // would read as "the model said nothing".
            let content = if content.is_empty() && !tool_calls.is_empty() {
                Value::Null
            } else {
                json!(content)
            };
            out.insert("content".into(), content);
            if !tool_calls.is_empty() {
                let calls = tool_calls.iter().map(tool_call).collect::<Vec<_>>();
                out.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(out)
        }
        Message::Tool {
            call_id,
            name,
            content,
        } => match kind {
            ProviderKind::Mistral => json!({
                "role": "tool",
                "name": name,
                "tool_call_id": call_id,
                "content": content,
            }),
            ProviderKind::OpenAi => json!({
                "role": "tool",
                "tool_call_id": call_id,
                "content": content,
            }),
        },
    }
}

fn tool_call(call: &ToolCall) -> Value {
    json!({
        "id": call.id,
        "type": "function",
        "function": { "name": call.name, "arguments": call.arguments },
    })
}

fn tool(spec: &ToolSpec) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": spec.parameters,
        },
    })
}

/// One streamed chunk (`chat.completion.chunk`), with only the fields this crate reads. Every
/// field is optional and may be `null`, because OpenAI-compatible servers differ in what they
/// leave out.
#[derive(Debug, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub(crate) choices: Option<Vec<Choice>>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
    /// An error reported inside the stream (OpenAI does so when it fails mid-reply).
    #[serde(default)]
    pub(crate) error: Option<Value>,
}

/// One choice of a chunk; this crate asks for one, index 0.
#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub(crate) index: Option<u64>,
    #[serde(default)]
    pub(crate) delta: Option<Delta>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

/// What a chunk adds to the message.
#[derive(Debug, Deserialize)]
pub(crate) struct Delta {
    /// A string; Mistral may send a list of content chunks (`{"type":"text","text":…}`,
    /// `{"type":"thinking",…}`) instead.
    #[serde(default)]
    pub(crate) content: Option<Value>,
    #[serde(default)]
    pub(crate) tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a tool call: OpenAI streams the id and name first, then the arguments in
/// fragments, all under the call's `index`; Mistral sends the whole call at once.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolCallDelta {
    #[serde(default)]
    pub(crate) index: Option<u64>,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) function: Option<FunctionDelta>,
}

/// The function part of a tool-call piece.
#[derive(Debug, Deserialize)]
pub(crate) struct FunctionDelta {
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// A string (a fragment of JSON text, or all of it); an object is serialized.
    #[serde(default)]
    pub(crate) arguments: Option<Value>,
}

/// Token counts as both providers report them.
#[derive(Debug, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) completion_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens.unwrap_or(0),
            completion_tokens: usage.completion_tokens.unwrap_or(0),
        }
    }
}

impl Delta {
    /// The text this delta adds: the string, or the text parts of a list of content chunks
    /// (a reasoning model's `thinking` parts are not part of the answer).
    pub(crate) fn text(&self) -> String {
        match &self.content {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        }
    }
}

impl FunctionDelta {
    /// The arguments fragment as text.
    pub(crate) fn arguments_text(&self) -> Option<String> {
        match &self.arguments {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        }
    }
}

/// The finish reason a provider names, in this crate's words.
pub(crate) fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        // `function_call` is what OpenAI's deprecated functions API said.
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        // Mistral says `model_length` when the model's context is full.
        "length" | "model_length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_keeps_its_written_value() {
        assert_eq!(float(0.2).to_string(), "0.2");
        assert_eq!(float(1.0).to_string(), "1.0");
    }

    #[test]
    fn openai_itself_gets_max_completion_tokens() {
        let request = ChatRequest {
            messages: vec![Message::User {
                content: "hi".into(),
            }],
            max_tokens: Some(100),
            ..ChatRequest::default()
        };
        let body = request_body(
            ProviderKind::OpenAi,
            "gpt-4o",
            &request,
            TokenLimitField::MaxCompletionTokens,
        );
        assert_eq!(body["max_completion_tokens"], 100);
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("tools").is_none());
        assert!(body.get("temperature").is_none());
    }

    #[test]
    fn mistral_asks_for_tools_only_when_it_offers_some() {
        let request = ChatRequest::default();
        let body = request_body(
            ProviderKind::Mistral,
            "mistral-large-latest",
            &request,
            TokenLimitField::MaxTokens,
        );
        assert!(body.get("tool_choice").is_none());
        assert!(body.get("parallel_tool_calls").is_none());
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn an_assistant_message_with_text_and_no_calls_keeps_its_text() {
        let m = Message::Assistant {
            content: String::new(),
            tool_calls: vec![],
        };
        assert_eq!(
            message(ProviderKind::OpenAi, &m),
            json!({ "role": "assistant", "content": "" })
        );
    }

    #[test]
    fn content_chunks_give_their_text_only() {
        let delta: Delta = serde_json::from_value(json!({
            "content": [
                { "type": "thinking", "thinking": [{ "type": "text", "text": "hmm" }] },
                { "type": "text", "text": "Hello" },
            ]
        }))
        .unwrap();
        assert_eq!(delta.text(), "Hello");
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason("model_length"), FinishReason::Length);
        assert_eq!(
            finish_reason("error"),
            FinishReason::Other("error".to_owned())
        );
    }
}
