//! Whole exchanges with the provider double, in both wire formats: text, tool calls in each
//! provider's style, a two-step exchange with tool results, and cancellation.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchboard_domain::ProviderKind;
use switchboard_llm::{FinishReason, Message, ModelEvent};
use switchboard_testkit::{LlmDouble, Scripted, call_then_answer, last_message};

use crate::support::{ask, collect, model};

const KINDS: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Mistral];

#[tokio::test]
async fn text_streams_in_pieces_with_usage() {
    for kind in KINDS {
        let double = LlmDouble::start(kind, |_| {
            Scripted::text("The quick brown fox").with_usage(12, 5)
        })
        .await;
        let got = collect(model(&double, None).as_ref(), &ask("hi")).await;
        assert_eq!(
            got.texts(),
            vec!["The ", "quick ", "brown ", "fox"],
            "{kind}"
        );
        let reply = got.reply();
        assert_eq!(reply.content, "The quick brown fox");
        assert_eq!(reply.finish, FinishReason::Stop);
        let usage = reply.usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
        assert_eq!(double.completed(), 1);
    }
}

#[tokio::test]
async fn tool_calls_come_in_each_providers_style() {
    for kind in KINDS {
        let double = LlmDouble::start(kind, |_| {
            Scripted::text_then_tools(
                "Let me look.",
                vec![
                    ("weather__current", json!({ "city": "Lyon" })),
                    ("clock__now", json!({ "timezone": "Europe/Paris" })),
                ],
            )
        })
        .await;
        let got = collect(model(&double, None).as_ref(), &ask("hi")).await;
        let reply = got.reply();
        assert_eq!(reply.content, "Let me look.", "{kind}");
        assert_eq!(reply.finish, FinishReason::ToolCalls);
        let names: Vec<&str> = reply.tool_calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["weather__current", "clock__now"]);
        let args: Value = serde_json::from_str(&reply.tool_calls[1].arguments).unwrap();
        assert_eq!(args, json!({ "timezone": "Europe/Paris" }));
        for call in &reply.tool_calls {
            match kind {
                ProviderKind::OpenAi => {
                    let rest = call.id.strip_prefix("call_").expect("call_ prefix");
                    assert_eq!(rest.len(), 24);
                    assert!(rest.chars().all(|c| c.is_ascii_alphanumeric()));
                }
                ProviderKind::Mistral => {
                    assert_eq!(call.id.len(), 9, "{}", call.id);
                    assert!(call.id.chars().all(|c| c.is_ascii_alphanumeric()));
                }
            }
        }
        assert_ne!(reply.tool_calls[0].id, reply.tool_calls[1].id);
    }
}

#[tokio::test]
async fn a_tool_result_goes_back_and_the_model_answers() {
    for kind in KINDS {
        let double = LlmDouble::start(
            kind,
            call_then_answer("weather__current", json!({ "city": "Lyon" }), "18 °C."),
        )
        .await;
        let model = model(&double, None);
        let mut request = ask("Weather in Lyon?");
        let first = collect(model.as_ref(), &request).await.reply();
        assert_eq!(first.finish, FinishReason::ToolCalls);
        let call = first.tool_calls[0].clone();
        request.messages.push(Message::Assistant {
            content: first.content,
            tool_calls: vec![call.clone()],
        });
        request.messages.push(Message::Tool {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: "18 °C".into(),
        });
        let second = collect(model.as_ref(), &request).await.reply();
        assert_eq!(second.content, "18 °C.", "{kind}");

        let sent = double.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(last_message(&sent[1]), ("tool", "18 °C"));
        let tool_message = sent[1]["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(tool_message["tool_call_id"], json!(call.id));
        match kind {
            ProviderKind::Mistral => assert_eq!(tool_message["name"], "weather__current"),
            ProviderKind::OpenAi => assert!(tool_message.get("name").is_none()),
        }
        let assistant = &sent[1]["messages"][1];
        assert_eq!(assistant["content"], Value::Null);
        assert_eq!(assistant["tool_calls"][0]["id"], json!(call.id));
    }
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_request() {
    for kind in KINDS {
        let words = "word ".repeat(200);
        let double = LlmDouble::start(kind, move |_| {
            Scripted::text(words.clone()).with_chunk_delay(Duration::from_millis(20))
        })
        .await;
        let model = model(&double, None);
        let mut stream = model.stream(&ask("hi")).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first, ModelEvent::Text("word ".into()));
        drop(stream);
        assert!(
            double.wait_cancelled(1).await,
            "{kind}: the double saw the client go away"
        );
        assert_eq!(double.completed(), 0);
    }
}

#[tokio::test]
async fn mistral_refuses_openai_only_fields_like_the_real_api() {
    // The double's strictness is what makes the Mistral request snapshot meaningful: a stray
    // `stream_options` would be a 422 there.
    let double = LlmDouble::start(ProviderKind::Mistral, |_| Scripted::text("hi")).await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", double.base_url());
    let response = client
        .post(url)
        .json(&json!({
            "model": "m",
            "messages": [{ "role": "user", "content": "hi" }],
            "stream": true,
            "stream_options": { "include_usage": true },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
}

#[tokio::test]
async fn one_connection_serves_one_request_after_another() {
    for kind in KINDS {
        let double = LlmDouble::start(kind, |_| Scripted::text("Hello there")).await;
        let model = model(&double, None);
        for _ in 0..3 {
            let got = collect(model.as_ref(), &ask("hi")).await;
            assert_eq!(got.reply().content, "Hello there", "{kind}");
        }
        assert_eq!(double.completed(), 3, "{kind}");
        assert_eq!(
            double.connections(),
            1,
            "{kind}: a reply's connection was not kept"
        );
    }
}
