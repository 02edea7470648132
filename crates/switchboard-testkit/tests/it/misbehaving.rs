//! The misbehaving server reaches `tools/call`, then breaks in the way it was asked to.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{Behaviour, Misbehaving, TOOL_NAME};

use crate::wire::{ACCEPT_BOTH, Sse, client, handshake, post, request, tool_names};

fn call() -> Value {
    request(
        7,
        "tools/call",
        json!({ "name": TOOL_NAME, "arguments": {} }),
    )
}

async fn post_raw(url: &str, session: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("mcp-session-id", session)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_behaviour_gets_through_the_handshake_and_lists_its_tool() {
    for behaviour in [
        Behaviour::DieMidCall,
        Behaviour::Hang,
        Behaviour::MalformedJson,
        Behaviour::Oversized(10),
        Behaviour::cut_sse_stream(),
    ] {
        let server = Misbehaving::start(behaviour.clone()).await;
        let (session, _) = handshake(server.url()).await;
        let tools = post(
            server.url(),
            session.as_deref(),
            &request(2, "tools/list", json!({})),
        )
        .await;
        assert_eq!(
            tool_names(&tools.message.unwrap()),
            [TOOL_NAME],
            "{behaviour:?}"
        );
        assert_eq!(server.stats().initializes(), 1);
        assert_eq!(server.stats().tool_calls(), 0);
    }
}

#[tokio::test]
async fn requests_without_a_session_get_400() {
    let server = Misbehaving::start(Behaviour::Hang).await;
    let reply = post(
        server.url(),
        None,
        &request(1, "server/discover", json!({})),
    )
    .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn die_mid_call_breaks_the_response_body() {
    let server = Misbehaving::start(Behaviour::DieMidCall).await;
    let (session, _) = handshake(server.url()).await;
    let response = post_raw(server.url(), &session.unwrap(), &call()).await;
    assert!(response.text().await.is_err(), "the body must break off");
    assert_eq!(server.stats().tool_calls(), 1);
}

#[tokio::test]
async fn hang_never_answers() {
    let server = Misbehaving::start(Behaviour::Hang).await;
    let (session, _) = handshake(server.url()).await;
    let sent = client()
        .post(server.url())
        .header("accept", ACCEPT_BOTH)
        .header("mcp-session-id", session.unwrap())
        .timeout(Duration::from_millis(300))
        .json(&call())
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    assert_eq!(server.stats().tool_calls(), 1);
}

#[tokio::test]
async fn malformed_json_is_not_json() {
    let server = Misbehaving::start(Behaviour::MalformedJson).await;
    let (session, _) = handshake(server.url()).await;
    let body = post_raw(server.url(), &session.unwrap(), &call())
        .await
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
}

#[tokio::test]
async fn oversized_answers_with_that_many_bytes() {
    let server = Misbehaving::start(Behaviour::Oversized(3 * 1024 * 1024)).await;
    let (session, _) = handshake(server.url()).await;
    let reply = post(server.url(), session.as_deref(), &call()).await;
    let text = reply.message.unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .len();
    assert_eq!(text, 3 * 1024 * 1024);
}

#[tokio::test]
async fn expire_session_answers_404_once_then_accepts_a_new_session() {
    let server = Misbehaving::start(Behaviour::ExpireSession).await;
    let (first, _) = handshake(server.url()).await;
    let expired = post(server.url(), first.as_deref(), &call()).await;
    assert_eq!(expired.status, 404);
    let again = post(server.url(), first.as_deref(), &call()).await;
    assert_eq!(again.status, 404, "an expired session stays expired");

    let (second, _) = handshake(server.url()).await;
    assert_ne!(first, second);
    let reply = post(server.url(), second.as_deref(), &call()).await;
    assert_eq!(reply.message.unwrap()["result"]["content"][0]["text"], "ok");
    assert_eq!(server.stats().initializes(), 2);
    assert_eq!(server.stats().expired(), 2);

    let deleted = client()
        .delete(server.url())
        .header("mcp-session-id", second.unwrap())
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    assert!(server.stats().delete_received());
}

#[tokio::test]
async fn cut_sse_stream_primes_drops_and_resumes_with_last_event_id() {
    for abrupt in [false, true] {
        cut_sse_stream_resumes(abrupt).await;
    }
}

async fn cut_sse_stream_resumes(abrupt: bool) {
    let server = Misbehaving::start(Behaviour::CutSseStream {
        retry: Duration::from_millis(50),
        abrupt,
    })
    .await;
    let (session, _) = handshake(server.url()).await;
    let session = session.unwrap();
    let response = post_raw(server.url(), &session, &call()).await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = Sse::new(response);
    let priming = events.next().await.expect("a priming event");
    assert_eq!(priming.data, "");
    assert_eq!(priming.retry, Some(50));
    let last_event_id = priming.id.expect("the priming event has an id");
    assert!(
        events.next().await.is_none(),
        "the stream is cut before the result"
    );

    let resumed = client()
        .get(server.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("last-event-id", &last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let mut events = Sse::new(resumed);
    let result = events
        .next()
        .await
        .expect("the result on the resumed stream");
    let message: Value = serde_json::from_str(&result.data).unwrap();
    assert_eq!(message["id"], 7);
    assert_eq!(message["result"]["content"][0]["text"], "resumed result");
    assert_eq!(server.stats().last_event_id(), Some(last_event_id));
    assert_eq!(server.stats().resumed(), 1);
    assert!(server.stats().resume_delay().is_some());
}
