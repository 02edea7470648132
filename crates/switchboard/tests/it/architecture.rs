//! The dependency rules of ARCHITECTURE.md, checked against every crate's manifest so that a
//! forbidden dependency fails a test instead of slowly eroding the layering.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Crate name → the names in its `[dependencies]` table (dev-dependencies are not checked:
/// tests may use anything).
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_owned();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

fn users_of(all: &BTreeMap<String, Vec<String>>, dep: &str) -> Vec<String> {
    all.iter()
        .filter(|(_, deps)| deps.iter().any(|d| d == dep))
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn pure_crates_know_no_io() {
    let all = dependencies();
    let io = [
        "tokio",
        "sqlx",
        "axum",
        "reqwest",
        "rmcp",
        "hyper",
        "http",
        "tower",
        "tower-http",
    ];
    for pure in [
        "switchboard-domain",
        "switchboard-policy",
        "switchboard-seal",
        "switchboard-chat",
    ] {
        let deps = all.get(pure).unwrap_or_else(|| panic!("{pure} is missing"));
        for d in deps {
            assert!(
                !io.contains(&d.as_str()),
                "{pure} must stay free of IO but depends on {d}"
            );
        }
    }
}

#[test]
fn only_the_binary_picks_a_store_backend() {
    let all = dependencies();
    for backend in ["switchboard-store-sqlite", "switchboard-store-postgres"] {
        assert_eq!(
            users_of(&all, backend),
            vec!["switchboard".to_owned()],
            "{backend}"
        );
    }
}

#[test]
fn only_the_server_serves_http() {
    let all = dependencies();
    // The testkit starts deliberately broken MCP servers for tests; it is never a dependency
    // of a shipped crate.
    let allowed = ["switchboard-server", "switchboard-testkit"];
    for dep in ["axum", "tower-http"] {
        for user in users_of(&all, dep) {
            assert!(
                allowed.contains(&user.as_str()),
                "{user} depends on {dep}; only the server serves HTTP"
            );
        }
    }
    for (name, deps) in &all {
        if name != "switchboard-testkit" {
            assert!(
                !deps.iter().any(|d| d == "switchboard-testkit"),
                "{name} ships the testkit"
            );
        }
    }
}

#[test]
fn the_model_and_the_connector_engine_do_not_know_each_other() {
    let all = dependencies();
    if let Some(llm) = all.get("switchboard-llm") {
        for d in llm {
            assert!(
                d != "rmcp" && d != "switchboard-connect",
                "switchboard-llm must not know MCP ({d})"
            );
        }
    }
    if let Some(connect) = all.get("switchboard-connect") {
        assert!(
            !connect.iter().any(|d| d == "switchboard-llm"),
            "switchboard-connect must not know the model"
        );
    }
}

#[test]
fn the_chat_loop_knows_neither_store_nor_engine() {
    let all = dependencies();
    let chat = all
        .get("switchboard-chat")
        .expect("switchboard-chat is missing");
    for d in chat {
        assert!(
            ![
                "switchboard-store",
                "switchboard-connect",
                "switchboard-service",
                "switchboard-net",
            ]
            .contains(&d.as_str()),
            "the chat state machine must stay pure but depends on {d}"
        );
    }
}
