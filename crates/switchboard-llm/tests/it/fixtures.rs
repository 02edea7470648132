//! Recorded streams in each provider's documented wire format, served over HTTP by the double
//! and parsed into events and a reply.

use switchboard_domain::ProviderKind;
use switchboard_llm::{FinishReason, LlmError, ModelEvent, Reply, ToolCall, Usage};
use switchboard_testkit::{LlmDouble, Scripted};

use crate::support::{Collected, ask, collect, fixture, model};

async fn replay(kind: ProviderKind, name: &str) -> Collected {
    let body = fixture(name);
    let double = LlmDouble::start(kind, move |_| Scripted::sse(body.clone())).await;
    let model = model(&double, None);
    collect(model.as_ref(), &ask("hi")).await
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Option<Usage> {
    Some(Usage {
        prompt_tokens,
        completion_tokens,
    })
}

#[tokio::test]
async fn openai_text_streams_as_it_arrives() {
    let got = replay(ProviderKind::OpenAi, "openai_text.sse").await;
    assert_eq!(
        got.events,
        vec![
            ModelEvent::Text("It is".into()),
            ModelEvent::Text(" sunny in".into()),
            ModelEvent::Text(" Paris — 21 °C.".into()),
            ModelEvent::Done(Reply {
                content: "It is sunny in Paris — 21 °C.".into(),
                tool_calls: vec![],
                finish: FinishReason::Stop,
                usage: usage(112, 11),
            }),
        ]
    );
}

#[tokio::test]
async fn openai_tool_call_fragments_are_joined() {
    let got = replay(ProviderKind::OpenAi, "openai_tool_call.sse").await;
    assert_eq!(
        got.reply(),
        Reply {
            content: String::new(),
            tool_calls: vec![call(
                "call_Q3vT8xWm1LpZk9RdYc2NfHs7",
                "get_weather",
                r#"{"city":"Zürich"}"#
            )],
            finish: FinishReason::ToolCalls,
            usage: usage(88, 16),
        }
    );
    assert!(got.texts().is_empty());
}

#[tokio::test]
async fn openai_parallel_tool_calls_keep_their_order() {
    let got = replay(ProviderKind::OpenAi, "openai_parallel_tool_calls.sse").await;
    let reply = got.reply();
    assert_eq!(
        reply.tool_calls,
        vec![
            call(
                "call_A1bC2dE3fG4hI5jK6lM7nO8p",
                "get_weather",
                r#"{"city": "Paris"}"#
            ),
            call(
                "call_Z9yX8wV7uT6sR5qP4oN3mL2k",
                "get_time",
                r#"{"timezone": "Asia/Tokyo"}"#
            ),
        ]
    );
    assert_eq!(reply.finish, FinishReason::ToolCalls);
    assert_eq!(reply.usage, usage(95, 41));
}

#[tokio::test]
async fn mistral_text_with_usage_on_the_last_chunk() {
    let got = replay(ProviderKind::Mistral, "mistral_text.sse").await;
    assert_eq!(got.texts(), vec!["Bonjour", " ! Il fait", " beau."]);
    assert_eq!(
        got.reply(),
        Reply {
            content: "Bonjour ! Il fait beau.".into(),
            tool_calls: vec![],
            finish: FinishReason::Stop,
            usage: usage(34, 8),
        }
    );
}

#[tokio::test]
async fn mistral_whole_tool_calls_in_one_chunk() {
    let got = replay(ProviderKind::Mistral, "mistral_tool_calls.sse").await;
    assert_eq!(
        got.reply(),
        Reply {
            content: String::new(),
            tool_calls: vec![
                call("k3R9tQ2wZ", "get_weather", r#"{"city": "Lyon"}"#),
                call("Vb7nM4xP1", "get_time", r#"{"timezone": "Europe/Paris"}"#),
            ],
            finish: FinishReason::ToolCalls,
            usage: usage(120, 51),
        }
    );
}

#[tokio::test]
async fn mistral_arguments_sent_as_an_object_are_serialized() {
    let got = replay(
        ProviderKind::Mistral,
        "mistral_tool_call_object_arguments.sse",
    )
    .await;
    assert_eq!(got.texts(), vec!["Je regarde."]);
    let reply = got.reply();
    assert_eq!(reply.content, "Je regarde.");
    assert_eq!(reply.tool_calls.len(), 1);
    let arguments: serde_json::Value =
        serde_json::from_str(&reply.tool_calls[0].arguments).unwrap();
    assert_eq!(
        arguments,
        serde_json::json!({ "query": "congés", "limit": 3 })
    );
}

#[tokio::test]
async fn a_finished_reply_without_done_is_complete() {
    let got = replay(ProviderKind::OpenAi, "ollama_without_done.sse").await;
    assert_eq!(
        got.reply(),
        Reply {
            content: "Hello".into(),
            tool_calls: vec![],
            finish: FinishReason::Stop,
            usage: None,
        }
    );
}

#[tokio::test]
async fn a_stream_that_ends_before_the_finish_is_an_error() {
    let got = replay(ProviderKind::OpenAi, "openai_cut_off.sse").await;
    assert_eq!(got.texts(), vec!["The answer is"]);
    assert!(
        matches!(got.error(), LlmError::Unreachable(m) if m.contains("cut off")),
        "{:?}",
        got.error
    );
}

#[tokio::test]
async fn an_error_inside_the_stream_ends_it() {
    let got = replay(ProviderKind::OpenAi, "openai_error_mid_stream.sse").await;
    assert_eq!(got.texts(), vec!["Let me"]);
    let error = got.error();
    assert!(error.is_retryable());
    assert_eq!(
        error.to_string(),
        "the model provider could not be reached: the provider broke off the reply: \
         The server had an error while processing your request. Sorry about that!"
    );
}

#[tokio::test]
async fn an_unreadable_chunk_is_a_protocol_error() {
    let got = replay(ProviderKind::OpenAi, "openai_malformed_chunk.sse").await;
    assert_eq!(got.texts(), vec!["Hi"]);
    assert!(
        matches!(got.error(), LlmError::Protocol(_)),
        "{:?}",
        got.error
    );
}
