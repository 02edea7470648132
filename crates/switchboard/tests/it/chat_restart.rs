//! Turns that outlive their process: an approval answered after a restart, a crash in the
//! middle of a tool call that is not run twice, and an approval answered on another server
//! sharing PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_domain::ProviderKind;
use switchboard_testkit::{LlmDouble, RmcpServer, call_then_answer};

use crate::support::{Api, Scratch, runtime};

const OWNER: &str = "ada@example.org";
/// A short lease, so a turn whose process died is recovered within seconds.
const ENV: [(&str, &str); 2] = [
    ("SWITCHBOARD_ALLOW_HTTP_LOOPBACK", "true"),
    ("SWITCHBOARD_CHAT_LEASE_SECS", "2"),
];

/// Polls the conversation until `done` accepts it.
async fn wait(api: &Api, conv: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = api
            .ok(
                reqwest::Method::GET,
                &format!("/conversations/{conv}"),
                None,
            )
            .await;
        if done(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited for {what}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets the model, registers and validates the connector `Tools`, and starts a conversation
/// with it; returns the conversation and connector ids.
async fn prepare(api: &Api, double: &LlmDouble, url: &str) -> (String, String) {
    use reqwest::Method;
    let org = api.org().await;
    api.ok(
        Method::PUT,
        &format!("/orgs/{org}/chat-model"),
        Some(json!({"kind": double.kind().as_str(), "base_url": double.base_url().as_str(), "model": "m"})),
    )
    .await;
    let c = api
        .ok(
            Method::POST,
            &format!("/orgs/{org}/connectors"),
            Some(json!({"name": "Tools", "url": url})),
        )
        .await;
    let tools = c["id"].as_str().unwrap().to_owned();
    api.ok(Method::POST, &format!("/connectors/{tools}/validate"), None)
        .await;
    let conv = api
        .ok(
            Method::POST,
            &format!("/orgs/{org}/conversations"),
            Some(json!({"connectors": [tools]})),
        )
        .await;
    (conv["id"].as_str().unwrap().to_owned(), tools)
}

fn waiting(view: &Value) -> bool {
    view["open_turn"]["status"] == "waiting"
}

fn ended(view: &Value) -> bool {
    view["open_turn"].is_null() && view["messages"].as_array().is_some_and(|m| !m.is_empty())
}

fn last_tool_message(view: &Value) -> String {
    view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["body"]["role"] == "tool")
        .map(|m| m["body"]["content"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn a_paused_turn_resumes_after_a_restart_and_a_crash_mid_call_is_not_run_twice() {
    use reqwest::Method;
    let rt = runtime();
    let upstream = rt.block_on(RmcpServer::start());
    let double = rt.block_on(LlmDouble::start(
        ProviderKind::OpenAi,
        call_then_answer(
            "Tools__slow",
            json!({"steps": 30, "delay_ms": 100}),
            "Finished.",
        ),
    ));
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &ENV);

    // An approval asked before a restart is answered after it, and the turn completes.
    let server = s.serve(&ENV);
    let (conv, tools) = rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let ids = prepare(&api, &double, upstream.url()).await;
        api.ok(
            Method::POST,
            &format!("/conversations/{}/messages", ids.0),
            Some(json!({"content": "Work slowly"})),
        )
        .await;
        wait(&api, &ids.0, "the approval", waiting).await;
        ids
    });
    server.terminate();
    let server = s.serve(&ENV);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let view = wait(&api, &conv, "the approval after the restart", waiting).await;
        let call_id = view["open_turn"]["approvals"][0]["call_id"]
            .as_str()
            .unwrap()
            .to_owned();
        api.ok(
            Method::POST,
            &format!("/conversations/{conv}/approvals/{call_id}"),
            Some(json!({"answer": "allow_once"})),
        )
        .await;
        let view = wait(&api, &conv, "the answer", ended).await;
        assert!(
            last_tool_message(&view).contains("done after 30 steps"),
            "{view}"
        );
        assert_eq!(upstream.stats().tool_calls(), 1);
        // From now on the function is always allowed, so the next call runs at once.
        api.ok(
            Method::PUT,
            &format!("/connectors/{tools}/functions/slow/preference"),
            Some(json!({"preference": "always"})),
        )
        .await;
        let org = api.org().await;
        api.ok(
            Method::PATCH,
            &format!("/orgs/{org}"),
            Some(json!({"settings": {"new_functions": "held", "untrusted_content": "standard"}})),
        )
        .await;
        api.ok(
            Method::POST,
            &format!("/conversations/{conv}/messages"),
            Some(json!({"content": "Again"})),
        )
        .await;
        // Wait until the call reached the server, then crash.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while upstream.stats().tool_calls() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the call never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    drop(server); // SIGKILL: no chance to finish or record anything.

    let server = s.serve(&ENV);
    rt.block_on(async {
        let api = Api::sign_in(&server.url, OWNER).await;
        let view = wait(&api, &conv, "the recovered turn", |v| {
            v["open_turn"].is_null() && last_tool_message(v).contains("unknown")
        })
        .await;
        assert!(
            last_tool_message(&view).contains("was not run again"),
            "{view}"
        );
        // Give a wrongly repeated call time to show.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            upstream.stats().tool_calls(),
            2,
            "the interrupted call was not sent again"
        );
    });
    server.terminate();
}

#[test]
fn two_servers_on_postgres_an_approval_answered_on_the_other_completes_the_turn() {
    let Ok(admin_url) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SWITCHBOARD_TEST_POSTGRES_URL must be set under CI"
        );
        eprintln!("SWITCHBOARD_TEST_POSTGRES_URL is not set; skipping the two-server chat test");
        return;
    };
    use reqwest::Method;
    let rt = runtime();
    let name = format!(
        "sb_chat_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut database = url::Url::parse(&admin_url).unwrap();
    database.set_path(&format!("/{name}"));
    rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    let upstream = rt.block_on(RmcpServer::start());
    let double = rt.block_on(LlmDouble::start(
        ProviderKind::Mistral,
        call_then_answer("Tools__add", json!({"a": 20, "b": 22}), "It is 42."),
    ));
    let s = Scratch::new();
    let env = [
        ENV[0],
        ENV[1],
        ("SWITCHBOARD_DATABASE_URL", database.as_str()),
    ];
    s.create_owner(OWNER, "acme", &env);
    let one = s.serve(&env);
    let two = s.serve(&env);
    rt.block_on(async {
        let a = Api::sign_in(&one.url, OWNER).await;
        let b = Api::sign_in(&two.url, OWNER).await;
        let (conv, _) = prepare(&a, &double, upstream.url()).await;
        a.ok(
            Method::POST,
            &format!("/conversations/{conv}/messages"),
            Some(json!({"content": "Add"})),
        )
        .await;
        let view = wait(&b, &conv, "the approval, seen on the other server", waiting).await;
        let call_id = view["open_turn"]["approvals"][0]["call_id"]
            .as_str()
            .unwrap()
            .to_owned();
        b.ok(
            Method::POST,
            &format!("/conversations/{conv}/approvals/{call_id}"),
            Some(json!({"answer": "allow_once"})),
        )
        .await;
        let view = wait(&a, &conv, "the answer, seen on the first server", ended).await;
        assert!(last_tool_message(&view).contains("42"), "{view}");
        let last = view["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["body"]["content"], "It is 42.");
        assert_eq!(upstream.stats().tool_calls(), 1);
    });
    one.terminate();
    two.terminate();
}
