//! How failures reach the caller: HTTP statuses with the provider's own words, network
//! failures, a silent or broken stream, an oversized reply, and the API key kept out of all of
//! them and of the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use switchboard_domain::ProviderKind;
use switchboard_llm::{
    ApiKey, Limits, LlmError, ModelEvent, ProviderConfig, client_options, connect, connect_with,
};
use switchboard_net::{ClientOptions, Destinations, SafeClient};
use switchboard_testkit::{LlmDouble, Scripted};

use crate::support::{ask, client, client_with, collect, config, model};

const KEY: &str = "sk-proj-Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1";

async fn answer(kind: ProviderKind, scripted: Scripted) -> LlmError {
    let double = LlmDouble::start(kind, move |_| scripted.clone()).await;
    let model = model(&double, Some(KEY));
    let got = collect(model.as_ref(), &ask("hi")).await;
    let error = got.error().to_string();
    assert!(!error.contains(KEY), "the key leaked: {error}");
    got.error.expect("an error")
}

#[tokio::test]
async fn statuses_map_to_error_kinds_with_the_providers_words() {
    use ProviderKind::{Mistral, OpenAi};
    let openai =
        |m: &str| format!(r#"{{"error":{{"message":"{m}","type":"x","param":null,"code":null}}}}"#);
    let cases = [
        (OpenAi, 401, openai("Incorrect API key provided"), "refused the API key (401): Incorrect API key provided"),
        (OpenAi, 403, openai("Country not supported"), "refused the API key (403): Country not supported"),
        (OpenAi, 429, openai("Rate limit reached for gpt-4o"), "busy (429): Rate limit reached for gpt-4o"),
        (OpenAi, 500, openai("The server had an error"), "busy (500): The server had an error"),
        (OpenAi, 503, "<html>Service Unavailable</html>".to_owned(), "busy (503): service unavailable"),
        (OpenAi, 400, openai("Invalid schema for function 'x'"), "refused the request (400): Invalid schema for function 'x'"),
        (OpenAi, 404, r#"{"error":"model \"llama9\" not found, try pulling it first"}"#.to_owned(), "refused the request (404): model \"llama9\" not found, try pulling it first"),
        (Mistral, 401, r#"{"detail":"Unauthorized"}"#.to_owned(), "refused the API key (401): Unauthorized"),
        (Mistral, 400, r#"{"object":"error","message":"Invalid model: mistral-huge","type":"invalid_model","param":null,"code":"1500"}"#.to_owned(), "refused the request (400): Invalid model: mistral-huge"),
        (Mistral, 422, r#"{"object":"error","message":{"detail":[{"type":"missing","loc":["body","messages"],"msg":"Field required"}]},"type":"invalid_request_error"}"#.to_owned(), "refused the request (422): body.messages: Field required"),
        (Mistral, 429, r#"{"message":"Requests rate limit exceeded"}"#.to_owned(), "busy (429): Requests rate limit exceeded"),
        (Mistral, 502, "upstream connect error".to_owned(), "busy (502): upstream connect error"),
    ];
    for (kind, status, body, expected) in cases {
        let error = answer(kind, Scripted::status(status, body)).await;
        let text = error.to_string();
        assert!(text.ends_with(expected), "{kind} {status}: {text}");
        let retryable = matches!(status, 429 | 500..=599);
        assert_eq!(error.is_retryable(), retryable, "{kind} {status}");
    }
}

#[tokio::test]
async fn a_long_provider_message_is_capped() {
    let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(5000));
    let error = answer(ProviderKind::Mistral, Scripted::status(400, long)).await;
    let LlmError::Refused { message, .. } = error else {
        panic!("{error:?}")
    };
    assert!(message.chars().count() <= 301, "{}", message.len());
}

#[tokio::test]
async fn a_key_the_provider_echoes_is_scrubbed() {
    let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}."}}}}"#);
    let error = answer(ProviderKind::OpenAi, Scripted::status(401, body)).await;
    assert_eq!(
        error.to_string(),
        "the model provider refused the API key (401): Incorrect API key provided: [redacted]."
    );
    assert!(!format!("{error:?}").contains(KEY));
}

#[tokio::test]
async fn the_double_checks_the_key() {
    for kind in [ProviderKind::OpenAi, ProviderKind::Mistral] {
        let double = LlmDouble::start(kind, |_| Scripted::text("hello")).await;
        double.require_key(KEY);
        let right = collect(model(&double, Some(KEY)).as_ref(), &ask("hi")).await;
        assert_eq!(right.reply().content, "hello");
        let wrong = collect(model(&double, Some("sk-wrong")).as_ref(), &ask("hi")).await;
        assert!(
            matches!(wrong.error(), LlmError::Unauthorized { status: 401, .. }),
            "{kind}: {:?}",
            wrong.error
        );
        let none = collect(model(&double, None).as_ref(), &ask("hi")).await;
        assert!(matches!(none.error(), LlmError::Unauthorized { .. }));
        assert_eq!(
            double.authorizations(),
            vec![
                Some(format!("Bearer {KEY}")),
                Some("Bearer sk-wrong".into()),
                None
            ]
        );
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let model = connect(
        client(),
        ProviderConfig {
            kind: ProviderKind::OpenAi,
            base_url: format!("http://127.0.0.1:{port}/v1").parse().unwrap(),
            model: "m".into(),
            api_key: Some(ApiKey::new(KEY)),
        },
    );
    let got = collect(model.as_ref(), &ask("hi")).await;
    assert!(
        matches!(got.error(), LlmError::Unreachable(_)),
        "{:?}",
        got.error
    );
    assert!(got.error().is_retryable());
}

#[tokio::test]
async fn a_provider_the_allowlist_refuses_is_a_configuration_error() {
    let double = LlmDouble::start(ProviderKind::OpenAi, |_| Scripted::text("hi")).await;
    let strict = SafeClient::new(Destinations::public_only(), client_options()).unwrap();
    let model = connect(strict, config(&double, Some(KEY)));
    let got = collect(model.as_ref(), &ask("hi")).await;
    assert!(
        matches!(got.error(), LlmError::Config(m) if m.contains("loopback")),
        "{:?}",
        got.error
    );
    assert!(double.requests().is_empty());
}

#[tokio::test]
async fn a_wrong_base_path_is_refused_with_the_providers_404() {
    let double = LlmDouble::start(ProviderKind::OpenAi, |_| Scripted::text("hi")).await;
    let mut config = config(&double, None);
    config.base_url.set_path("/");
    let got = collect(connect(client(), config).as_ref(), &ask("hi")).await;
    assert!(
        matches!(got.error(), LlmError::Refused { status: 404, .. }),
        "{:?}",
        got.error
    );
}

#[tokio::test]
async fn a_provider_that_goes_silent_is_cut_off_by_the_idle_timeout() {
    let double = LlmDouble::start(ProviderKind::OpenAi, |_| Scripted::hang()).await;
    let options = ClientOptions {
        idle_timeout: Some(Duration::from_millis(300)),
        ..client_options()
    };
    let model = connect(client_with(options), config(&double, None));
    let got = collect(model.as_ref(), &ask("hi")).await;
    assert!(
        matches!(got.error(), LlmError::Unreachable(_)),
        "{:?}",
        got.error
    );
}

#[tokio::test]
async fn a_connection_broken_mid_reply_is_unreachable() {
    for kind in [ProviderKind::OpenAi, ProviderKind::Mistral] {
        let double = LlmDouble::start(kind, |_| Scripted::text("one two three").cut_off()).await;
        let got = collect(model(&double, None).as_ref(), &ask("hi")).await;
        assert!(
            matches!(got.error(), LlmError::Unreachable(_)),
            "{kind}: {:?}",
            got.error
        );
    }
}

#[tokio::test]
async fn a_reply_past_the_limit_is_refused() {
    let double = LlmDouble::start(ProviderKind::OpenAi, |_| {
        Scripted::text("word ".repeat(100))
    })
    .await;
    let model = connect_with(
        client(),
        config(&double, None),
        Limits {
            max_reply_bytes: 64,
        },
    );
    let got = collect(model.as_ref(), &ask("hi")).await;
    assert_eq!(
        got.texts().concat().len(),
        60,
        "text up to the limit came through"
    );
    assert!(
        matches!(got.error(), LlmError::Protocol(m) if m.contains("limit of 64 bytes")),
        "{:?}",
        got.error
    );
}

#[tokio::test]
async fn a_json_answer_instead_of_a_stream_is_a_protocol_error() {
    let body = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#;
    let error = answer(ProviderKind::OpenAi, Scripted::status(200, body)).await;
    assert!(matches!(error, LlmError::Protocol(_)), "{error:?}");
}

/// A `MakeWriter` that keeps everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_key_never_reaches_the_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let double = LlmDouble::start(ProviderKind::Mistral, |_| {
        Scripted::tool_calls([("lookup", serde_json::json!({ "q": "x" }))])
    })
    .await;
    double.require_key(KEY);
    let model = model(&double, Some(KEY));
    let mut stream = model.stream(&ask("hi")).await.unwrap();
    while let Some(event) = stream.next().await {
        if let ModelEvent::Done(reply) = event.unwrap() {
            assert_eq!(reply.tool_calls[0].name, "lookup");
        }
    }
    let bad = switchboard_llm::connect(client(), config(&double, Some("sk-wrong-key-1234")));
    assert!(bad.stream(&ask("hi")).await.is_err());

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("asking the model"),
        "the test saw the logs: {text}"
    );
    assert!(!text.contains(KEY), "the key is in the logs:\n{text}");
    assert!(
        !text.contains("sk-wrong-key-1234"),
        "a key is in the logs:\n{text}"
    );
}
