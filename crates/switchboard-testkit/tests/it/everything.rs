//! server-everything starts in both of its HTTP modes.

use switchboard_testkit::{Everything, Mode};

use crate::wire::{handshake, post, request, sse_transport_initialize, tool_names};

#[tokio::test]
async fn streamable_http_answers_initialize_and_lists_tools() {
    let server = Everything::start(Mode::StreamableHttp).await;
    assert!(server.url().ends_with("/mcp"));
    let (session, result) = handshake(server.url()).await;
    assert!(session.is_some(), "server-everything is session-based");
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    let tools = post(
        server.url(),
        session.as_deref(),
        &request(2, "tools/list", serde_json::json!({})),
    )
    .await;
    let names = tool_names(&tools.message.unwrap());
    assert!(names.iter().any(|name| name == "echo"), "{names:?}");
}

#[tokio::test]
async fn sse_mode_answers_initialize_over_the_old_transport() {
    let server = Everything::start(Mode::Sse).await;
    assert!(server.url().ends_with("/sse"));
    let result = sse_transport_initialize(server.url()).await;
    assert!(result["serverInfo"]["name"].is_string(), "{result}");
}
