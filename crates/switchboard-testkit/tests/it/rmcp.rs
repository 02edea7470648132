//! The in-process rmcp server, with sessions and stateless.

use serde_json::json;
use switchboard_testkit::{RmcpMode, RmcpOptions, RmcpServer};

use crate::wire::{handshake, post, request, tool_names};

#[tokio::test]
async fn session_mode_answers_initialize_and_calls_tools() {
    let server = RmcpServer::start().await;
    let (session, result) = handshake(server.url()).await;
    assert!(session.is_some(), "session mode hands out a session id");
    assert_eq!(result["serverInfo"]["name"], "switchboard-testkit-rmcp");
    let tools = post(
        server.url(),
        session.as_deref(),
        &request(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(
        tool_names(&tools.message.unwrap()),
        ["add", "big", "echo", "slow"]
    );
    let call = post(
        server.url(),
        session.as_deref(),
        &request(
            3,
            "tools/call",
            json!({ "name": "big", "arguments": { "bytes": 1000 } }),
        ),
    )
    .await;
    let call = call.message.unwrap();
    assert_eq!(
        call["result"]["content"][0]["text"].as_str().unwrap().len(),
        1000
    );
    assert_eq!(server.stats().tool_calls(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn stateless_mode_answers_without_a_session() {
    let server = RmcpServer::start_with(RmcpOptions {
        mode: RmcpMode::Stateless,
        tools_page_size: Some(3),
        ..Default::default()
    })
    .await;
    let reply = post(
        server.url(),
        None,
        &crate::wire::initialize_request("2025-11-25"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.session.is_none(),
        "stateless mode hands out no session id"
    );
    assert!(reply.message.unwrap()["result"]["protocolVersion"].is_string());

    // Pages of three: the first page names a cursor for the rest.
    let first = post(server.url(), None, &request(2, "tools/list", json!({}))).await;
    let first = first.message.unwrap();
    assert_eq!(tool_names(&first), ["add", "big", "echo"]);
    let cursor = first["result"]["nextCursor"].as_str().unwrap().to_owned();
    let rest = post(
        server.url(),
        None,
        &request(3, "tools/list", json!({ "cursor": cursor })),
    )
    .await;
    let rest = rest.message.unwrap();
    assert_eq!(tool_names(&rest), ["slow"]);
    assert!(rest["result"].get("nextCursor").is_none(), "{rest}");
}
