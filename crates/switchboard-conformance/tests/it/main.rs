//! Integration tests of the conformance client: how it refuses to run when misused, and a few
//! scenarios of the real suite at each protocol revision, authorization included (the whole
//! matrix is `scripts/conformance`).

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

/// Runs one scenario of the real suite at `revision`'s wire; panics with the suite's output
/// when it fails.
fn suite_passes(scenario: &str, revision: &str) {
    let peers = Peers::locate();
    let preload = peers
        .workspace_root()
        .join("tests/conformance/loopback.cjs");
    let out = Command::new(peers.node())
        .arg(peers.conformance_script())
        .args(["client", "--command", CLIENT, "--scenario", scenario])
        .args(["--spec-version", revision, "--force"])
        // Keeps the suite's mock server on loopback (see the preload's comment).
        .env("NODE_OPTIONS", format!("--require {}", preload.display()))
        .output()
        .expect("the conformance suite runs");
    assert!(
        out.status.success(),
        "{scenario} at {revision} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_suite_passes_tools_call_at_both_revisions() {
    for revision in ["2025-11-25", "2026-07-28"] {
        suite_passes("tools_call", revision);
    }
}

#[test]
fn the_suite_passes_the_oauth_flow_at_both_revisions() {
    // Discovery, dynamic registration, PKCE, `resource`, and the token endpoint's client
    // authentication; then the calls with the token.
    for revision in ["2025-11-25", "2026-07-28"] {
        suite_passes("auth/metadata-default", revision);
        suite_passes("auth/token-endpoint-auth-basic", revision);
    }
    // A pre-registered client handed over in MCP_CONFORMANCE_CONTEXT.
    suite_passes("auth/pre-registration", "2026-07-28");
}

#[test]
fn the_suite_sees_forged_and_foreign_metadata_refused() {
    for scenario in [
        "auth/resource-mismatch",
        "auth/metadata-issuer-mismatch",
        "auth/iss-wrong-issuer",
        "auth/iss-supported-missing",
    ] {
        suite_passes(scenario, "2026-07-28");
    }
}

#[test]
fn the_suite_passes_the_2025_03_26_fallbacks() {
    for scenario in [
        "auth/2025-03-26-oauth-metadata-backcompat",
        "auth/2025-03-26-oauth-endpoint-fallback",
    ] {
        suite_passes(scenario, "2025-03-26");
    }
}
