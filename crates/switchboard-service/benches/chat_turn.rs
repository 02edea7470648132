//! Benchmark of the host's own time per chat turn with one tool call: the whole turn as the
//! member sees it (message posted to the `done` event), minus the time spent waiting for the
//! model (two streamed requests to a provider double on loopback: only the waits for the
//! provider's answer and its next chunk count) and for the tool call (a real rmcp server on
//! loopback: the engine's call, not the credential and catalog reads around it), both measured
//! by the driver itself in the same run.
//!
//! It prints the host time per turn and the ratio of the whole turn to the model and tool
//! time (the baseline); it never fails on a number (CONVENTIONS rule 9). The target is a host
//! time under 1 ms. Run it with `cargo bench -p switchboard-service --bench chat_turn`
//! (`BENCH_TURNS` sets the number of measured turns, default 200).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_domain::{
    HttpAllowance, MemberPreference, OrgSettings, ProviderKind, UntrustedContent,
};
use switchboard_seal::KeyRing;
use switchboard_service::{
    App, ConnectorInput, ConversationInput, ModelSettings, OwnerInput, ServiceConfig,
};
use switchboard_store_sqlite::SqliteStore;
use switchboard_testkit::{LlmDouble, RmcpServer, call_then_answer};

fn main() {
    let turns: usize = std::env::var("BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(turns));
}

async fn run(turns: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = SqliteStore::open(&url).await.expect("the store opens");
    switchboard_store::Store::migrate(&store)
        .await
        .expect("migrations run");
    let config = ServiceConfig {
        http: HttpAllowance {
            loopback: true,
            hosts: vec![],
        },
        ..ServiceConfig::default()
    };
    let app = Arc::new(App::new(Arc::new(store), KeyRing::generate(), config).expect("the app"));
    let (_, org) = app
        .create_owner(OwnerInput {
            email: "bench@example.org".into(),
            display_name: "Bench".into(),
            password: "a bench password".into(),
            org_slug: "bench".into(),
            org_name: "Bench".into(),
        })
        .await
        .expect("an owner");
    let issued = app
        .login_for_token(
            "bench@example.org",
            "a bench password",
            "bench",
            "bench",
            None,
        )
        .await
        .expect("a token");
    let actor = app
        .token_actor(&issued.secret)
        .await
        .expect("the token reads")
        .expect("the token is valid");
    let access = app.org_access(&actor, org.id).await.expect("membership");
    let admin = access.admin().expect("the owner is an admin");
    app.update_organization(
        &admin,
        None,
        Some(OrgSettings {
            untrusted_content: UntrustedContent::Standard,
            ..OrgSettings::default()
        }),
    )
    .await
    .expect("settings");

    let upstream = RmcpServer::start().await;
    let connector = app
        .create_connector(
            &admin,
            ConnectorInput {
                name: "Tools".into(),
                url: upstream.url().into(),
                description: None,
                credential: None,
                credential_scope: None,
                auth_method: None,
            },
        )
        .await
        .expect("a connector");
    app.validate_connector(&admin, connector.id)
        .await
        .expect("validation");
    app.set_preference(
        &access,
        connector.id,
        "echo",
        Some(MemberPreference::Always),
    )
    .await
    .expect("a preference");
    let double = LlmDouble::start(
        ProviderKind::OpenAi,
        call_then_answer("Tools__echo", json!({"text": "hello"}), "It said hello."),
    )
    .await;
    app.set_chat_model(
        &admin,
        ModelSettings {
            kind: ProviderKind::OpenAi,
            base_url: double.base_url().to_string(),
            model: "bench".into(),
            api_key: None,
        },
    )
    .await
    .expect("a model");

    let warmup = (turns / 10).max(5);
    let mut host = Vec::with_capacity(turns);
    let mut waited = Vec::with_capacity(turns);
    for i in 0..warmup + turns {
        let conversation = app
            .create_conversation(
                &access,
                ConversationInput {
                    title: None,
                    connectors: vec![connector.id],
                },
            )
            .await
            .expect("a conversation");
        let mut events = app
            .chat_events(&access, conversation.id, 0)
            .await
            .expect("the stream");
        let (model_before, tool_before) = app.chat_wait_times();
        let started = Instant::now();
        app.send_message(&access, conversation.id, "Say hello".into(), vec![])
            .await
            .expect("the message");
        loop {
            let event = events.recv().await.expect("the stream goes on");
            if event.kind == "done" || event.kind == "error" {
                assert_eq!(event.kind, "done", "{:?}", event.data);
                break;
            }
        }
        let wall = started.elapsed();
        let (model_after, tool_after) = app.chat_wait_times();
        let outside = (model_after - model_before) + (tool_after - tool_before);
        if i >= warmup {
            host.push(wall.saturating_sub(outside));
            waited.push(outside);
        }
    }
    host.sort();
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let (host_mean, wait_mean) = (mean(&host), mean(&waited));
    let p50 = host[host.len() / 2];
    let p99 = host[(host.len() * 99 / 100).min(host.len() - 1)];
    let ratio = (host_mean + wait_mean).as_secs_f64() / wait_mean.as_secs_f64();
    println!("chat turn with one tool call, {turns} turns after {warmup} warm-up turns");
    println!("  model and tool time (baseline), mean: {wait_mean:?}");
    println!("  host time per turn: mean {host_mean:?}, p50 {p50:?}, p99 {p99:?}");
    println!("  whole turn / baseline: {ratio:.3}");
    let met = if p50 < Duration::from_millis(1) {
        "met"
    } else {
        "not met"
    };
    println!("  target: host time under 1 ms at p50: {met}");
    println!(
        "SUMMARY host_p50_us={} host_mean_us={} ratio={ratio:.3}",
        p50.as_micros(),
        host_mean.as_micros()
    );
}
