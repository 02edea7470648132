//! Integration tests of the conformance client: how it refuses to run when misused, and one
//! scenario of the real suite at each protocol revision (the whole matrix is
//! `scripts/conformance`).

use std::process::{Command, Output};

use switchboard_testkit::Peers;

const CLIENT: &str = env!("CARGO_BIN_EXE_switchboard-conformance");

/// Runs the client against a URL nothing listens on (port 9, discard), with `scenario` set.
fn run_client(scenario: Option<&str>) -> Output {
    let mut command = Command::new(CLIENT);
    command.arg("http://127.0.0.1:9/mcp");
    command.env_remove("MCP_CONFORMANCE_CONTEXT");
    match scenario {
        Some(name) => command.env("MCP_CONFORMANCE_SCENARIO", name),
        None => command.env_remove("MCP_CONFORMANCE_SCENARIO"),
    };
    command.output().expect("the client runs")
}

#[test]
fn without_a_scenario_it_says_what_is_missing() {
    let out = run_client(None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MCP_CONFORMANCE_SCENARIO"), "{stderr}");
}

#[test]
fn authorization_scenarios_are_refused_by_name_before_any_request() {
    let out = run_client(Some("auth/metadata-default"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not implemented yet"), "{stderr}");
}

#[test]
fn the_suite_passes_tools_call_at_both_revisions() {
    let peers = Peers::locate();
    let preload = peers
        .workspace_root()
        .join("tests/conformance/loopback.cjs");
    for revision in ["2025-11-25", "2026-07-28"] {
        let out = Command::new(peers.node())
            .arg(peers.conformance_script())
            .args(["client", "--command", CLIENT, "--scenario", "tools_call"])
            .args(["--spec-version", revision, "--force"])
            // Keeps the suite's mock server on loopback (see the preload's comment).
            .env("NODE_OPTIONS", format!("--require {}", preload.display()))
            .output()
            .expect("the conformance suite runs");
        assert!(
            out.status.success(),
            "tools_call at {revision} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
