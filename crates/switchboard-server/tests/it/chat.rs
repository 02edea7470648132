//! The assistant end to end: a provider double speaking the real OpenAI and Mistral streaming
//! wire formats drives real MCP servers through the API, under the members' permissions.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_domain::ProviderKind;
use switchboard_testkit::{
    Everything, LlmDouble, Mode, RmcpServer, Scripted, call_then_answer, last_message,
};

use crate::support::{Client, TestServer, active_connector};

/// One event of a conversation's stream.
#[derive(Debug, Clone)]
pub struct Ev {
    pub id: i64,
    pub kind: String,
    pub data: Value,
}

/// Reads a conversation's stream from `after` until `stop` accepts an event (which is
/// returned last) or a timeout.
pub async fn read_until(
    client: &Client,
    base: &str,
    conversation: &str,
    after: i64,
    stop: impl Fn(&Ev) -> bool,
) -> Vec<Ev> {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/api/v1/conversations/{conversation}/events"))
        .header("last-event-id", after.to_string());
    if let Some(t) = client.token() {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no stop event; got {out:#?}"))
            .expect("the stream ended")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (0, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().unwrap_or(0);
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if kind.is_empty() {
                continue;
            }
            let ev = Ev {
                id,
                kind,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            };
            let done = stop(&ev);
            out.push(ev);
            if done {
                return out;
            }
        }
    }
}

fn ended(ev: &Ev) -> bool {
    ev.kind == "done" || ev.kind == "error"
}

fn kinds(events: &[Ev]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| *k != "text_delta")
        .collect()
}

fn text_of(events: &[Ev]) -> String {
    events
        .iter()
        .filter(|e| e.kind == "text_delta")
        .map(|e| e.data["text"].as_str().unwrap_or(""))
        .collect()
}

/// A server with one owner, the model set to `double`, and a validated connector `Tools`
/// on a real rmcp server. Returns the owner, the org id and the connector id.
pub async fn world(server: &TestServer, double: &LlmDouble, url: &str) -> (Client, String, String) {
    let (owner, org) = server.setup("acme").await;
    let org = org["id"].as_str().unwrap().to_owned();
    double.require_key("sk-test-key-123");
    owner
        .ok(
            Method::PUT,
            &format!("/api/v1/orgs/{org}/chat-model"),
            Some(json!({
                "kind": double.kind().as_str(), "base_url": double.base_url().as_str(),
                "model": "test-model", "api_key": "sk-test-key-123",
            })),
        )
        .await;
    let id = active_connector(&owner, &org, "Tools", url).await;
    (owner, org, id)
}

pub async fn conversation(owner: &Client, org: &str, connectors: &[&str]) -> String {
    let c = owner
        .ok(
            Method::POST,
            &format!("/api/v1/orgs/{org}/conversations"),
            Some(json!({"title": "Test", "connectors": connectors})),
        )
        .await;
    c["id"].as_str().unwrap().to_owned()
}

async fn say(owner: &Client, conv: &str, text: &str) -> Value {
    let (status, body) = owner
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"content": text}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body
}

/// Reads the stream from `after` until the next approval request; returns the request and the
/// id of its event.
async fn next_approval(owner: &Client, base: &str, conv: &str, after: i64) -> (Value, i64) {
    let events = read_until(owner, base, conv, after, |e| e.kind == "approval_needed").await;
    let last = events.last().unwrap();
    (last.data.clone(), last.id)
}

/// Answers the approval request `ask` with `answer`.
async fn answer(owner: &Client, conv: &str, ask: &Value, answer: &str) -> (StatusCode, Value) {
    let call_id = ask["call_id"].as_str().unwrap();
    owner
        .post(
            &format!("/api/v1/conversations/{conv}/approvals/{call_id}"),
            json!({"answer": answer}),
        )
        .await
}

/// Sets the organization's handling of untrusted content to `standard`.
async fn standard(owner: &Client, org: &str) {
    owner
        .ok(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}"),
            Some(json!({"settings": {"new_functions": "held", "untrusted_content": "standard"}})),
        )
        .await;
}

async fn prefer(owner: &Client, connector: &str, function: &str, preference: &str) {
    owner
        .ok(
            Method::PUT,
            &format!("/api/v1/connectors/{connector}/functions/{function}/preference"),
            Some(json!({"preference": preference})),
        )
        .await;
}

#[tokio::test]
async fn an_allowed_call_runs_and_its_wrapped_result_reaches_the_model() {
    for kind in [ProviderKind::OpenAi, ProviderKind::Mistral] {
        let upstream = RmcpServer::start().await;
        let double = LlmDouble::start(
            kind,
            call_then_answer(
                "Tools__echo",
                json!({"text": "hi there"}),
                "The echo said hi there.",
            ),
        )
        .await;
        let server = TestServer::start().await;
        let (owner, org, tools) = world(&server, &double, upstream.url()).await;
        prefer(&owner, &tools, "echo", "always").await;
        let conv = conversation(&owner, &org, &[&tools]).await;

        let turn = say(&owner, &conv, "Echo hi there please").await;
        assert!(turn["id"].is_string());
        let events = read_until(&owner, &server.base, &conv, 0, ended).await;
        assert_eq!(
            kinds(&events),
            ["turn_started", "tool_call_requested", "tool_result", "done"],
            "{kind}: {events:#?}"
        );
        let requested = &events[1].data;
        assert_eq!(requested["connector"], "Tools");
        assert_eq!(requested["function"], "echo");
        assert_eq!(requested["decision"]["rule"], "member_always");
        assert_eq!(events[2].data["outcome"], "ok");
        assert_eq!(text_of(&events), "The echo said hi there.");
        assert_eq!(upstream.stats().tool_calls(), 1);

        // The model saw the result wrapped with where it came from, and its key.
        let requests = double.requests();
        assert_eq!(requests.len(), 2);
        let (role, content) = last_message(&requests[1]);
        assert_eq!(role, "tool");
        assert!(
            content.contains("source=\"function echo of connector Tools\""),
            "{content}"
        );
        assert!(content.contains("hi there"), "{content}");
        assert!(
            double
                .authorizations()
                .iter()
                .all(|a| a.as_deref() == Some("Bearer sk-test-key-123"))
        );
        let tools_offered: Vec<&str> = requests[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert!(tools_offered.contains(&"Tools__echo"), "{tools_offered:?}");

        // The history holds the whole turn; the model's key is never shown.
        let view = owner
            .ok(Method::GET, &format!("/api/v1/conversations/{conv}"), None)
            .await;
        let roles: Vec<&str> = view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"]["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
        assert!(view["open_turn"].is_null());
        let model = owner
            .ok(Method::GET, &format!("/api/v1/orgs/{org}/chat-model"), None)
            .await;
        assert_eq!(model["has_api_key"], true);
        assert!(!model.to_string().contains("sk-test-key-123"));

        // The audit log has the call, with the conversation and a digest of the arguments.
        let audit = owner
            .ok(
                Method::GET,
                &format!("/api/v1/orgs/{org}/audit?action=function_called"),
                None,
            )
            .await;
        let entry = &audit["items"][0];
        assert_eq!(entry["detail"]["via"], "chat", "{audit}");
        assert_eq!(entry["detail"]["conversation"], conv.as_str());
        assert_eq!(entry["detail"]["outcome"], "ok");
        assert_eq!(entry["detail"]["decision"]["rule"], "member_always");
        assert!(entry["detail"]["arguments_sha256"].as_str().unwrap().len() == 64);
        server.stop().await;
    }
}

#[tokio::test]
async fn ask_waits_for_the_member_and_each_answer_is_honoured() {
    let upstream = RmcpServer::start().await;
    let double = LlmDouble::start(
        ProviderKind::OpenAi,
        call_then_answer("Tools__add", json!({"a": 2, "b": 3}), "Done."),
    )
    .await;
    let server = TestServer::start().await;
    let (owner, org, tools) = world(&server, &double, upstream.url()).await;
    let conv = conversation(&owner, &org, &[&tools]).await;

    // Allow once: the call waits, then runs.
    say(&owner, &conv, "Add 2 and 3").await;
    let (ask, last) = next_approval(&owner, &server.base, &conv, 0).await;
    assert_eq!(ask["function"], "add");
    assert_eq!(ask["rule"], "default_ask");
    assert_eq!(ask["arguments"], json!({"a": 2, "b": 3}));
    assert_eq!(
        upstream.stats().tool_calls(),
        0,
        "nothing runs before the answer"
    );
    let view = owner
        .ok(Method::GET, &format!("/api/v1/conversations/{conv}"), None)
        .await;
    assert_eq!(view["open_turn"]["status"], "waiting");
    // A second message while the turn waits is refused.
    let (status, body) = owner
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"content": "and?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        answer(&owner, &conv, &ask, "allow_once").await.0,
        StatusCode::OK
    );
    let rest = read_until(&owner, &server.base, &conv, last, ended).await;
    assert_eq!(kinds(&rest), ["tool_result", "done"], "{rest:#?}");
    assert_eq!(rest[0].data["outcome"], "ok");
    assert_eq!(upstream.stats().tool_calls(), 1);
    // Answering twice is a conflict, not a second run.
    let (status, _) = answer(&owner, &conv, &ask, "allow_once").await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Deny: the model is told, the server is not called.
    say(&owner, &conv, "Add again").await;
    let (ask, last) = next_approval(&owner, &server.base, &conv, rest.last().unwrap().id).await;
    assert_eq!(answer(&owner, &conv, &ask, "deny").await.0, StatusCode::OK);
    let rest = read_until(&owner, &server.base, &conv, last, ended).await;
    assert_eq!(rest[0].data["outcome"], "not_run");
    assert_eq!(upstream.stats().tool_calls(), 1);
    let requests = double.requests();
    let (_, content) = last_message(requests.last().unwrap());
    assert!(content.contains("the member declined"), "{content}");

    // Always allow: runs, and the preference is stored, so the next turn does not ask.
    say(&owner, &conv, "Add once more").await;
    let (ask, last) = next_approval(&owner, &server.base, &conv, rest.last().unwrap().id).await;
    assert_eq!(
        answer(&owner, &conv, &ask, "always_allow").await.0,
        StatusCode::OK
    );
    let rest = read_until(&owner, &server.base, &conv, last, ended).await;
    assert_eq!(upstream.stats().tool_calls(), 2);
    let fns = owner
        .ok(
            Method::GET,
            &format!("/api/v1/connectors/{tools}/functions"),
            None,
        )
        .await;
    let add = fns
        .as_array()
        .or(fns["items"].as_array())
        .unwrap()
        .iter()
        .find(|f| f["name"] == "add")
        .unwrap()
        .clone();
    assert_eq!(add["preference"], "always", "{add}");
    // Tool output is in this conversation now, and `add` does not say it is read-only: under
    // the organization's strict setting (the default) "always" still asks.
    say(&owner, &conv, "And once more").await;
    let (ask, last) = next_approval(&owner, &server.base, &conv, rest.last().unwrap().id).await;
    assert_eq!(ask["rule"], "untrusted_content");
    owner
        .ok(
            Method::POST,
            &format!("/api/v1/conversations/{conv}/cancel"),
            None,
        )
        .await;
    let rest = read_until(&owner, &server.base, &conv, last, ended).await;
    // Under the standard setting the member's "always" applies as it is.
    standard(&owner, &org).await;
    say(&owner, &conv, "And once more").await;
    let last = read_until(&owner, &server.base, &conv, rest.last().unwrap().id, ended).await;
    assert_eq!(
        kinds(&last),
        ["turn_started", "tool_call_requested", "tool_result", "done"]
    );
    assert_eq!(upstream.stats().tool_calls(), 3);
    server.stop().await;
}

#[tokio::test]
async fn blocked_and_held_functions_are_refused_without_asking() {
    let upstream = RmcpServer::start().await;
    let double = LlmDouble::start(ProviderKind::Mistral, |body: &Value| {
        match last_message(body) {
            ("tool", _) => Scripted::text("Could not."),
            _ => Scripted::tool_calls([
                ("Tools__echo", json!({"text": "x"})),
                ("Tools__nothing", json!({})),
            ]),
        }
    })
    .await;
    let server = TestServer::start().await;
    let (owner, org, tools) = world(&server, &double, upstream.url()).await;
    owner
        .ok(
            Method::PUT,
            &format!("/api/v1/connectors/{tools}/functions/echo/floor"),
            Some(json!({"floor": "blocked"})),
        )
        .await;
    let conv = conversation(&owner, &org, &[&tools]).await;
    say(&owner, &conv, "Echo x").await;
    let events = read_until(&owner, &server.base, &conv, 0, ended).await;
    let results: Vec<&Ev> = events.iter().filter(|e| e.kind == "tool_result").collect();
    assert_eq!(results.len(), 2, "{events:#?}");
    assert!(
        results[0].data["reason"]
            .as_str()
            .unwrap()
            .contains("an admin blocked it")
    );
    assert!(
        results[1].data["reason"]
            .as_str()
            .unwrap()
            .contains("no function named")
    );
    assert!(!events.iter().any(|e| e.kind == "approval_needed"));
    assert_eq!(upstream.stats().tool_calls(), 0);
    // A blocked function is not even offered to the model.
    let offered = double.requests()[0]["tools"].to_string();
    assert!(!offered.contains("Tools__echo"), "{offered}");
    server.stop().await;
}

#[tokio::test]
async fn parallel_calls_run_together_and_cancelling_stops_them_at_the_server() {
    let upstream = RmcpServer::start().await;
    let double = LlmDouble::start(ProviderKind::OpenAi, |body: &Value| {
        match last_message(body) {
            ("tool", _) => Scripted::text("Both done."),
            _ => Scripted::tool_calls([
                ("Tools__slow", json!({"steps": 2, "delay_ms": 100})),
                ("Tools__slow", json!({"steps": 2, "delay_ms": 100})),
            ]),
        }
    })
    .await;
    let server = TestServer::start().await;
    let (owner, org, tools) = world(&server, &double, upstream.url()).await;
    prefer(&owner, &tools, "slow", "always").await;
    standard(&owner, &org).await;
    let conv = conversation(&owner, &org, &[&tools]).await;
    say(&owner, &conv, "Run both").await;
    let events = read_until(&owner, &server.base, &conv, 0, ended).await;
    let results = events.iter().filter(|e| e.kind == "tool_result").count();
    assert_eq!(results, 2, "{events:#?}");
    assert!(
        events.iter().any(|e| e.kind == "tool_progress"),
        "progress is streamed"
    );
    assert_eq!(upstream.stats().tool_calls(), 2);

    // Now a long one, cancelled while it runs.
    let long = LlmDouble::start(
        ProviderKind::OpenAi,
        call_then_answer(
            "Tools__slow",
            json!({"steps": 100, "delay_ms": 200}),
            "never",
        ),
    )
    .await;
    owner
        .ok(
            Method::PUT,
            &format!("/api/v1/orgs/{org}/chat-model"),
            Some(json!({"kind": "openai", "base_url": long.base_url().as_str(), "model": "m"})),
        )
        .await;
    say(&owner, &conv, "Run a long one").await;
    let started = read_until(
        &owner,
        &server.base,
        &conv,
        events.last().unwrap().id,
        |e| e.kind == "tool_progress",
    )
    .await;
    owner
        .ok(
            Method::POST,
            &format!("/api/v1/conversations/{conv}/cancel"),
            None,
        )
        .await;
    let rest = read_until(
        &owner,
        &server.base,
        &conv,
        started.last().unwrap().id,
        ended,
    )
    .await;
    assert_eq!(
        rest.last().unwrap().data["outcome"],
        "cancelled",
        "{rest:#?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upstream.stats().cancelled() < 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        upstream.stats().cancelled(),
        1,
        "the server was told to stop"
    );
    // The cancelled turn's history is complete: every tool call has its answer.
    let view = owner
        .ok(Method::GET, &format!("/api/v1/conversations/{conv}"), None)
        .await;
    let last = view["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["body"]["role"], "tool", "{last}");
    server.stop().await;
}

#[tokio::test]
async fn the_step_limit_ends_a_model_that_keeps_calling() {
    let upstream = RmcpServer::start().await;
    let double = LlmDouble::start(ProviderKind::OpenAi, |body: &Value| {
        if body["tools"].as_array().is_none_or(|t| t.is_empty()) {
            Scripted::text("I stop here.")
        } else {
            Scripted::tool_calls([("Tools__echo", json!({"text": "again"}))])
        }
    })
    .await;
    let server = TestServer::start().await;
    let (owner, org, tools) = world(&server, &double, upstream.url()).await;
    prefer(&owner, &tools, "echo", "always").await;
    standard(&owner, &org).await;
    let conv = conversation(&owner, &org, &[&tools]).await;
    say(&owner, &conv, "Loop").await;
    let events = read_until(&owner, &server.base, &conv, 0, ended).await;
    assert_eq!(events.last().unwrap().data["outcome"], "answered");
    // Ten steps may call tools; the last request is made without tools.
    assert_eq!(upstream.stats().tool_calls(), 9, "{events:#?}");
    assert_eq!(double.requests().len(), 11);
    server.stop().await;
}

#[tokio::test]
async fn a_servers_question_reaches_the_member_and_the_call_goes_on() {
    let Ok(everything) = Everything::try_start(Mode::StreamableHttp).await else {
        assert!(
            std::env::var_os("CI").is_none(),
            "server-everything is missing in CI"
        );
        eprintln!("skipped: server-everything is not installed (bash scripts/peers)");
        return;
    };
    let tool = "Tools__trigger-elicitation-request";
    let double = LlmDouble::start(
        ProviderKind::OpenAi,
        call_then_answer(tool, json!({}), "Thanks."),
    )
    .await;
    let server = TestServer::start().await;
    let (owner, org, tools) = world(&server, &double, everything.url()).await;
    prefer(&owner, &tools, "trigger-elicitation-request", "always").await;
    let conv = conversation(&owner, &org, &[&tools]).await;
    say(&owner, &conv, "Ask me something").await;
    let events = read_until(&owner, &server.base, &conv, 0, |e| {
        e.kind == "elicitation_requested"
    })
    .await;
    let ask = events.last().unwrap().data.clone();
    assert_eq!(ask["connector"], "Tools");
    assert!(ask["schema"]["properties"].is_object(), "{ask}");
    // Fill in every required field from its type.
    let mut content = serde_json::Map::new();
    for (name, field) in ask["schema"]["properties"].as_object().unwrap() {
        let value = match field["type"].as_str() {
            Some("boolean") => json!(true),
            Some("number") | Some("integer") => json!(3),
            _ => match field["enum"].as_array() {
                Some(options) => options[0].clone(),
                None => match field["format"].as_str() {
                    Some("email") => json!("a@example.org"),
                    Some("uri") => json!("https://example.org"),
                    Some("date") => json!("2026-11-21"),
                    Some("date-time") => json!("2026-11-21T10:00:00Z"),
                    _ => json!("Ada"),
                },
            },
        };
        content.insert(name.clone(), value);
    }
    let id = ask["elicitation_id"].as_str().unwrap();
    let (status, body) = owner
        .post(
            &format!("/api/v1/conversations/{conv}/elicitations/{id}"),
            json!({"action": "accept", "content": content}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let rest = read_until(
        &owner,
        &server.base,
        &conv,
        events.last().unwrap().id,
        ended,
    )
    .await;
    let result = rest
        .iter()
        .find(|e| e.kind == "tool_result")
        .expect("a result");
    assert_eq!(result.data["outcome"], "ok", "{rest:#?}");
    assert!(
        result.data["content"].as_str().unwrap().contains("accept"),
        "{result:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_member_without_a_model_or_with_anothers_conversation_gets_clear_errors() {
    let server = TestServer::start().await;
    let (owner, org) = server.setup("acme").await;
    let org = org["id"].as_str().unwrap();
    let conv = conversation(&owner, org, &[]).await;
    let (status, body) = owner
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.to_string().contains("no language model"), "{body}");
    let (member, _) =
        crate::support::add_member(&server, &owner, org, "m@example.org", "member").await;
    let (status, _) = member.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another member's conversation is invisible"
    );
    let (status, _) = member
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = owner
        .call(
            Method::PUT,
            &format!("/api/v1/orgs/{org}/chat-model"),
            Some(json!({"kind": "openai", "base_url": "ftp://x", "model": "m"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().contains("base_url"), "{body}");
    let (status, _) = member
        .call(
            Method::PUT,
            &format!("/api/v1/orgs/{org}/chat-model"),
            Some(json!({"kind": "openai", "base_url": "https://api.example.org/v1", "model": "m"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins set the model");
    server.stop().await;
}

#[tokio::test]
async fn with_500_functions_across_20_connectors_the_model_searches_for_them() {
    const TOPICS: [&str; 20] = [
        "invoice",
        "calendar",
        "ticket",
        "wiki",
        "repository",
        "payroll",
        "inventory",
        "shipment",
        "contract",
        "lead",
        "campaign",
        "survey",
        "badge",
        "printer",
        "expense",
        "vacation",
        "incident",
        "backup",
        "license",
        "forecast",
    ];
    const VERBS: [&str; 25] = [
        "list",
        "create",
        "archive",
        "export",
        "import",
        "rename",
        "tag",
        "untag",
        "share",
        "lock",
        "unlock",
        "copy",
        "merge",
        "split",
        "count",
        "summarize",
        "translate",
        "print",
        "schedule",
        "approve",
        "reject",
        "assign",
        "close",
        "reopen",
        "audit",
    ];
    let mut upstreams = Vec::new();
    for topic in TOPICS {
        let catalog = VERBS
            .iter()
            .map(|verb| {
                (
                    format!("{verb}_{topic}"),
                    format!("{verb} a {topic} record in the {topic} system"),
                )
            })
            .collect();
        upstreams.push(
            RmcpServer::start_with(switchboard_testkit::RmcpOptions {
                catalog,
                ..Default::default()
            })
            .await,
        );
    }
    // The model searches, then calls the best match it was given.
    let double = LlmDouble::start(ProviderKind::OpenAi, |body: &Value| {
        let offered: Vec<String> = body["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| t["function"]["name"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        match last_message(body) {
            ("user", _) => Scripted::tool_calls([(
                "search_functions",
                json!({"query": "reopen a closed incident"}),
            )]),
            ("tool", c) if c.contains("reopen_incident ran") => Scripted::text("Reopened."),
            ("tool", c)
                if c.contains("reopen_incident")
                    && offered.iter().any(|n| n == "C16__reopen_incident") =>
            {
                Scripted::tool_calls([("C16__reopen_incident", json!({}))])
            }
            _ => Scripted::text("Reopened."),
        }
    })
    .await;
    let server = TestServer::start().await;
    let (owner, org) = server.setup("acme").await;
    let org = org["id"].as_str().unwrap().to_owned();
    owner
        .ok(
            Method::PUT,
            &format!("/api/v1/orgs/{org}/chat-model"),
            Some(json!({"kind": "openai", "base_url": double.base_url().as_str(), "model": "m"})),
        )
        .await;
    let mut ids = Vec::new();
    for (i, upstream) in upstreams.iter().enumerate() {
        let id = active_connector(&owner, &org, &format!("C{i}"), upstream.url()).await;
        ids.push(id);
    }
    prefer(&owner, &ids[16], "reopen_incident", "always").await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let conv = conversation(&owner, &org, &refs).await;
    say(&owner, &conv, "Please help with my work").await;
    let events = read_until(&owner, &server.base, &conv, 0, ended).await;
    assert_eq!(upstreams[16].stats().tool_calls(), 1, "{events:#?}");
    let requests = double.requests();
    // 20 × (25 catalog + 4 built-in) functions, but the model is given a handful.
    let first = requests[0]["tools"].as_array().unwrap();
    assert_eq!(first[0]["function"]["name"], "search_functions");
    assert!(first.len() <= 9, "{} tools offered", first.len());
    let second = requests[1]["tools"].to_string();
    assert!(
        second.contains("C16__reopen_incident"),
        "the match is offered after the search"
    );
    assert_eq!(events.last().unwrap().data["outcome"], "answered");
}

#[tokio::test]
async fn an_attached_resource_and_a_prompt_enter_the_context_with_their_provenance() {
    let upstream = switchboard_testkit::PythonServer::start(
        switchboard_testkit::BASIC_SERVER,
        switchboard_testkit::PyTransport::StreamableHttp,
    )
    .await;
    let double = LlmDouble::start(ProviderKind::Mistral, |_: &Value| {
        Scripted::text("Summarized.")
    })
    .await;
    let server = TestServer::start().await;
    let (owner, org, tools) = world(&server, &double, upstream.url()).await;
    let conv = conversation(&owner, &org, &[&tools]).await;
    let (status, body) = owner
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({
                "content": "Use these",
                "attachments": [
                    {"type": "resource", "connector_id": tools, "uri": "note://hello"},
                    {"type": "prompt", "connector_id": tools, "name": "summarize",
                     "arguments": {"text": "a long story", "style": "brief"}},
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    read_until(&owner, &server.base, &conv, 0, ended).await;
    let request = &double.requests()[0];
    let messages = request["messages"].as_array().unwrap();
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect();
    let resource = texts
        .iter()
        .find(|t| t.starts_with("<attached_resource"))
        .unwrap_or_else(|| panic!("no resource in {texts:?}"));
    assert!(resource.contains("uri=\"note://hello\""), "{resource}");
    assert!(resource.contains("connector=\"Tools\""), "{resource}");
    assert!(
        texts.iter().any(|t| t.contains("a long story")),
        "the prompt's text: {texts:?}"
    );
    assert_eq!(*texts.last().unwrap(), "Use these");

    // Attaching from a connector the conversation does not enable is refused.
    let other = conversation(&owner, &org, &[]).await;
    let (status, body) = owner
        .post(
            &format!("/api/v1/conversations/{other}/messages"),
            json!({"content": "x", "attachments": [{"type": "resource", "connector_id": tools, "uri": "note://hello"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.to_string()
            .contains("not enabled in this conversation"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_servers_sampling_request_runs_on_the_model_only_when_allowed_and_approved() {
    let Ok(everything) = Everything::try_start(Mode::StreamableHttp).await else {
        assert!(
            std::env::var_os("CI").is_none(),
            "server-everything is missing in CI"
        );
        eprintln!("skipped: server-everything is not installed (bash scripts/peers)");
        return;
    };
    let tool = "Tools__trigger-sampling-request";
    // The chat's requests start with Switchboard's instructions; the server's own request
    // starts with its system prompt.
    let double = LlmDouble::start(ProviderKind::OpenAi, move |body: &Value| {
        let first = body["messages"][0]["content"].as_str().unwrap_or("");
        if first.contains("helpful test server") {
            return Scripted::text("A haiku from the model");
        }
        match last_message(body) {
            ("tool", _) => Scripted::text("Here it is."),
            _ => {
                Scripted::tool_calls([(tool, json!({"prompt": "write a haiku", "maxTokens": 50}))])
            }
        }
    })
    .await;
    let server = TestServer::start().await;
    let (owner, org, tools) = world(&server, &double, everything.url()).await;
    prefer(&owner, &tools, "trigger-sampling-request", "always").await;
    let conv = conversation(&owner, &org, &[&tools]).await;

    // The organization does not allow sampling (the default): the server is refused, and
    // the model is never asked on its behalf.
    say(&owner, &conv, "A poem please").await;
    let events = read_until(&owner, &server.base, &conv, 0, ended).await;
    assert!(
        !events.iter().any(|e| e.kind == "sampling_requested"),
        "{events:#?}"
    );
    let result = events.iter().find(|e| e.kind == "tool_result").unwrap();
    assert!(!result.data.to_string().contains("A haiku"), "{result:?}");
    assert_eq!(double.requests().len(), 2, "only the chat's own requests");

    // Allowed: the member sees what the server asks and approves; the model answers it.
    owner
        .ok(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}"),
            Some(json!({"settings": {"new_functions": "held", "untrusted_content": "standard", "sampling": true}})),
        )
        .await;
    say(&owner, &conv, "Another poem").await;
    let asked = read_until(
        &owner,
        &server.base,
        &conv,
        events.last().unwrap().id,
        |e| e.kind == "sampling_requested",
    )
    .await;
    let request = asked.last().unwrap().data.clone();
    assert_eq!(request["connector"], "Tools");
    assert!(
        request["messages"].to_string().contains("write a haiku"),
        "{request}"
    );
    let id = request["sampling_id"].as_str().unwrap();
    let (status, body) = owner
        .post(
            &format!("/api/v1/conversations/{conv}/samplings/{id}"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let rest = read_until(&owner, &server.base, &conv, asked.last().unwrap().id, ended).await;
    let result = rest
        .iter()
        .find(|e| e.kind == "tool_result")
        .expect("a result");
    assert!(
        result.data["content"]
            .as_str()
            .unwrap()
            .contains("A haiku from the model"),
        "{result:?}"
    );
    server.stop().await;
}
