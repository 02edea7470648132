//! `switchboard serve` as an operator runs it: a stop signal lets the requests in flight finish,
//! and every request leaves one log line with its request id.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use switchboard_testkit::RmcpServer;

use crate::support::{Scratch, runtime, wait_until};

#[test]
fn a_call_in_flight_when_sigterm_arrives_finishes_and_new_connections_are_refused() {
    let rt = runtime();
    let upstream = rt.block_on(RmcpServer::start());
    // The `slow` call waits at the MCP server until released, so it is in flight for as long as
    // the test needs, whatever the machine's speed.
    upstream.hold_slow_calls();
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let server = s.serve(&[("SWITCHBOARD_ALLOW_HTTP_LOOPBACK", "true")]);
    s.login(&server, "ada@example.org");
    s.run(&["connector", "add", "Tools", upstream.url()]).ok();
    s.run(&["connector", "test", "Tools"]).ok();

    let call = s.spawn(
        &[
            "call",
            "Tools",
            "slow",
            "--args",
            r#"{"steps": 2, "delay_ms": 1}"#,
        ],
        &[],
    );
    wait_until("the call reaches the MCP server", || {
        upstream.stats().tool_calls() == 1
    });
    server.send_term();
    wait_until("the server logs the signal", || {
        server.stdout().contains("received SIGTERM")
    });
    // The server stops accepting while the call is still held: a new connection is refused.
    let addr = server.url.trim_start_matches("http://").to_owned();
    wait_until("new connections are refused after SIGTERM", || {
        TcpStream::connect(&addr).is_err()
    });

    upstream.release_slow_calls();
    let out = call.finish(Duration::from_secs(120)).ok();
    assert_eq!(out.stdout, "done after 2 steps\n", "{}", out.stderr);
    let status = server.wait();
    assert!(
        status.success(),
        "the server exits with 0 after draining, got {status}"
    );
}

#[test]
fn every_request_logs_one_json_line_with_its_request_id_and_status() {
    let rt = runtime();
    let s = Scratch::new();
    let server = s.serve_with(&["--log-format", "json"], &[]);
    let request_id = "test-request-5be0c2";
    let (status, echoed) = rt.block_on(async {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            // The query string must stay out of the log: it could carry a secret by mistake.
            .get(format!("{}/api/v1/setup?note=query-text-91d4", server.url))
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        (response.status().as_u16(), echoed)
    });
    assert_eq!(status, 200);
    assert_eq!(echoed, request_id, "the answer carries the caller's id");

    wait_until("the request's log line", || {
        server.stdout().contains(request_id)
    });
    let log = server.stdout();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id && l["message"] == "request finished")
        .collect();
    assert_eq!(finished.len(), 1, "one line for the request:\n{log}");
    let line = finished[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(line["latency_ms"].is_u64(), "{line}");
    assert_eq!(line["span"]["method"], "GET", "{line}");
    assert_eq!(line["span"]["path"], "/api/v1/setup", "{line}");
    assert!(!log.contains("query-text-91d4"), "{log}");
    assert!(server.terminate().success());
}
