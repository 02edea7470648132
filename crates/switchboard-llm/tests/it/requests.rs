//! The exact body each provider is sent for a conversation with every kind of message, as the
//! double received it over HTTP.

use serde_json::Value;
use switchboard_domain::ProviderKind;
use switchboard_testkit::{LlmDouble, Scripted};

use crate::support::{collect, conversation, model};

async fn body_sent(kind: ProviderKind) -> Value {
    let double = LlmDouble::start(kind, |_| Scripted::text("Yes, take one.")).await;
    let model = model(&double, Some("sk-test"));
    let collected = collect(model.as_ref(), &conversation()).await;
    collected.reply();
    let mut requests = double.requests();
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

#[tokio::test]
async fn openai_request_body() {
    let body = body_sent(ProviderKind::OpenAi).await;
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(body);
    });
}

#[tokio::test]
async fn mistral_request_body() {
    let body = body_sent(ProviderKind::Mistral).await;
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(body);
    });
}
