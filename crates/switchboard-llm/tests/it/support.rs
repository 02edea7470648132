//! Shared helpers: a loopback-allowing client, a provider in front of the double, the
//! conversation used for the request snapshots, and stream collection.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use switchboard_llm::{
    ApiKey, ChatModel, ChatRequest, LlmError, Message, ModelEvent, ProviderConfig, Reply, ToolCall,
    ToolSpec, client_options,
};
use switchboard_net::{ClientOptions, Destinations, SafeClient};
use switchboard_testkit::LlmDouble;

/// A client that may reach loopback, with the options a model client is meant to have.
pub fn client() -> SafeClient {
    client_with(client_options())
}

/// A loopback-allowing client with other options.
pub fn client_with(options: ClientOptions) -> SafeClient {
    SafeClient::new(Destinations::public_only().with_loopback(true), options).expect("a client")
}

/// The provider for `double`, sending `key` if given.
pub fn model(double: &LlmDouble, key: Option<&str>) -> Arc<dyn ChatModel> {
    switchboard_llm::connect(client(), config(double, key))
}

/// The configuration for `double`.
pub fn config(double: &LlmDouble, key: Option<&str>) -> ProviderConfig {
    ProviderConfig {
        kind: double.kind(),
        base_url: double.base_url(),
        model: "test-model".into(),
        api_key: key.map(ApiKey::new),
    }
}

/// A request with one user message.
pub fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::User {
            content: text.into(),
        }],
        ..ChatRequest::default()
    }
}

/// A conversation with every kind of message: system, user, an assistant that called two
/// tools, their results, and the tools on offer.
pub fn conversation() -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::System {
                content: "You are the ACME assistant. Use the tools when they help.".into(),
            },
            Message::User {
                content: "What's the weather in Lyon, and what time is it there?".into(),
            },
            Message::Assistant {
                content: String::new(),
                tool_calls: vec![
                    ToolCall {
                        id: "call_1".into(),
                        name: "weather__current".into(),
                        arguments: r#"{"city":"Lyon"}"#.into(),
                    },
                    ToolCall {
                        id: "call_2".into(),
                        name: "clock__now".into(),
                        arguments: r#"{"timezone":"Europe/Paris"}"#.into(),
                    },
                ],
            },
            Message::Tool {
                call_id: "call_1".into(),
                name: "weather__current".into(),
                content: "18 °C, light rain".into(),
            },
            Message::Tool {
                call_id: "call_2".into(),
                name: "clock__now".into(),
                content: "14:05".into(),
            },
            Message::Assistant {
                content: "In Lyon it is 14:05, 18 °C with light rain.".into(),
                tool_calls: vec![],
            },
            Message::User {
                content: "Thanks! Should I take an umbrella?".into(),
            },
        ],
        tools: vec![
            ToolSpec {
                name: "weather__current".into(),
                description: "The current weather in a city.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": { "city": { "type": "string" } },
                    "required": ["city"],
                }),
            },
            ToolSpec {
                name: "clock__now".into(),
                description: "The time now in a time zone.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": { "timezone": { "type": "string" } },
                    "required": ["timezone"],
                }),
            },
        ],
        temperature: Some(0.2),
        max_tokens: Some(1024),
    }
}

/// What a stream yielded: its events, then the error that ended it, if one did.
#[derive(Debug)]
pub struct Collected {
    pub events: Vec<ModelEvent>,
    pub error: Option<LlmError>,
}

impl Collected {
    /// The texts of the `Text` events, in order.
    pub fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ModelEvent::Text(t) => Some(t.clone()),
                ModelEvent::Done(_) => None,
            })
            .collect()
    }

    /// The reply of the one `Done` event, which must be the last event.
    pub fn reply(&self) -> Reply {
        assert!(self.error.is_none(), "the stream failed: {:?}", self.error);
        let dones = self
            .events
            .iter()
            .filter(|e| matches!(e, ModelEvent::Done(_)))
            .count();
        assert_eq!(dones, 1, "exactly one Done: {:?}", self.events);
        match self.events.last() {
            Some(ModelEvent::Done(reply)) => reply.clone(),
            other => panic!("the last event is not Done: {other:?}"),
        }
    }

    /// The error that ended the stream, which must have ended with one.
    pub fn error(&self) -> &LlmError {
        assert!(
            !self.events.iter().any(|e| matches!(e, ModelEvent::Done(_))),
            "a failed stream has no Done: {:?}",
            self.events
        );
        self.error.as_ref().expect("the stream ended with an error")
    }
}

/// Sends `request` and reads the stream to its end; an error opening it counts as the
/// stream's error.
pub async fn collect(model: &dyn ChatModel, request: &ChatRequest) -> Collected {
    let mut stream = match model.stream(request).await {
        Ok(stream) => stream,
        Err(error) => {
            return Collected {
                events: vec![],
                error: Some(error),
            };
        }
    };
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing follows an error");
                return Collected {
                    events,
                    error: Some(error),
                };
            }
        }
    }
    Collected {
        events,
        error: None,
    }
}

/// A recorded stream from `tests/it/fixtures`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}
