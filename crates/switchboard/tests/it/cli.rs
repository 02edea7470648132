//! The server and the command-line client together: `serve` on a loopback port, `login`, the
//! connector commands with table and JSON output, errors, `logout`, and a graceful stop.

use serde_json::Value;

use crate::support::{PASSWORD, Scratch, mode};

#[test]
fn a_fresh_server_prints_a_setup_token_and_stops_on_sigterm() {
    let s = Scratch::new();
    let server = s.serve(&[]);
    let stderr = server.stderr();
    assert!(stderr.contains("setup token"), "{stderr}");
    assert!(
        stderr.contains("/api/v1/setup") && stderr.contains("admin create-owner"),
        "{stderr}"
    );
    assert_eq!(mode(&s.data_dir()), 0o700);
    assert_eq!(mode(&s.data_dir().join("master.key")), 0o600);
    let status = server.terminate();
    assert!(
        status.success(),
        "the server exits with 0 after SIGTERM, got {status}"
    );
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn the_command_line_manages_connectors_through_a_running_server() {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let server = s.serve(&[]);
    assert!(
        !server.stderr().contains("setup token"),
        "no setup token once an owner exists"
    );

    // Before signing in, API commands say what to do.
    let error = s.run(&["connector", "list"]).error();
    assert!(error.contains("switchboard login"), "{error}");

    s.login(&server, "ada@example.org");
    let credentials = s.config_dir().join("credentials.toml");
    assert_eq!(mode(&credentials), 0o600);
    let kept = std::fs::read_to_string(&credentials).unwrap();
    assert!(
        kept.contains(&server.url) && kept.contains("sbp_"),
        "{kept}"
    );
    assert!(!kept.contains(PASSWORD));

    let me = s.run(&["user", "me", "--json"]).ok().json();
    assert_eq!(me["user"]["email"], "ada@example.org");
    assert_eq!(me["organizations"][0]["organization"]["slug"], "acme");

    // Add: the bearer token comes from standard input, never from the arguments.
    let added = s
        .run_stdin(
            &[
                "connector",
                "add",
                "github",
                "https://mcp.example.com/mcp",
                "--description",
                "Code hosting",
                "--bearer",
                "--json",
            ],
            "s3cret-token\n",
        )
        .ok()
        .json();
    assert_eq!(added["name"], "github");
    assert_eq!(added["has_credential"], true);
    assert_eq!(added["auth_method"], "bearer");
    assert!(!added.to_string().contains("s3cret-token"));
    s.run(&[
        "connector",
        "add",
        "Docs",
        "https://docs.example.com/mcp",
        "--header",
        "X-Api-Key: k1",
    ])
    .ok();

    let list = s.run(&["connector", "list", "--json"]).ok().json();
    let mut listed = names(&list);
    listed.sort_unstable();
    assert_eq!(listed, ["Docs", "github"]);
    let table = s.run(&["connector", "list"]).ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("NAME") && header.contains("STATUS") && header.contains("URL"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.contains("github")
            && l.contains("connecting")
            && l.contains("https://mcp.example.com/mcp")),
        "{table}"
    );

    // Show, by name in any case, or by --org explicitly.
    let shown = s
        .run(&["connector", "show", "GitHub", "--json", "--org", "acme"])
        .ok()
        .json();
    assert_eq!(shown["id"], added["id"]);
    let details = s.run(&["connector", "show", "github"]).ok().stdout;
    assert!(
        details.contains("Code hosting") && details.contains("bearer"),
        "{details}"
    );

    let edited = s
        .run(&[
            "connector",
            "edit",
            "github",
            "--name",
            "gh",
            "--clear-description",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(edited["name"], "gh");
    assert_eq!(edited["description"], Value::Null);
    let edited = s
        .run(&["connector", "edit", "gh", "--remove-credential", "--json"])
        .ok()
        .json();
    assert_eq!(edited["has_credential"], false);

    let disabled = s.run(&["connector", "disable", "gh", "--json"]).ok().json();
    assert_eq!(disabled["status"], "disabled");
    let out = s.run(&["connector", "enable", "gh"]).ok();
    assert!(
        out.stdout.contains("gh is now connecting"),
        "{}",
        out.stdout
    );

    let functions = s
        .run(&["connector", "functions", "gh", "--json"])
        .ok()
        .json();
    assert_eq!(functions, Value::Array(vec![]));

    // Errors: one line naming the field, exit code 1.
    let error = s
        .run(&["connector", "add", "bad-name", "https://x.example.com/mcp"])
        .error();
    assert!(
        error.starts_with("name: ") && error.contains("letters and digits"),
        "{error}"
    );
    let error = s
        .run(&["connector", "add", "plain", "http://x.example.com/mcp"])
        .error();
    assert!(error.starts_with("url: "), "{error}");
    let error = s
        .run(&["connector", "add", "gh", "https://other.example.com/mcp"])
        .error();
    assert!(
        error.starts_with("name: "),
        "a duplicate name is named too: {error}"
    );
    let error = s.run(&["connector", "show", "nope"]).error();
    assert!(error.contains("nope"), "{error}");
    let error = s.run(&["connector", "list", "--org", "elsewhere"]).error();
    assert!(error.contains("elsewhere"), "{error}");

    // Deleting asks for --yes when nobody is at a terminal.
    let error = s.run(&["connector", "rm", "gh"]).error();
    assert!(error.contains("--yes"), "{error}");
    s.run(&["connector", "rm", "gh", "--yes"]).ok();
    assert_eq!(
        names(&s.run(&["connector", "list", "--json"]).ok().json()),
        ["Docs"]
    );

    // Every change is in the audit log.
    let audit = s
        .run(&["audit", "list", "--json", "--limit", "200"])
        .ok()
        .json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "connector_created",
        "connector_updated",
        "connector_disabled",
        "connector_enabled",
        "connector_deleted",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let exported = s
        .run(&["audit", "export", "--action", "connector_created"])
        .ok()
        .stdout;
    assert_eq!(exported.lines().count(), 2, "{exported}");
    for line in exported.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["action"], "connector_created");
    }

    // Logging out revokes the token and forgets it.
    let token = kept
        .lines()
        .find_map(|l| l.strip_prefix("token = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    s.run(&["logout"]).ok();
    assert!(!credentials.exists());
    let error = s.run(&["user", "me"]).error();
    assert!(error.contains("not signed in"), "{error}");
    let error = s
        .run_with(
            &["user", "me"],
            &[
                ("SWITCHBOARD_SERVER", server.url.as_str()),
                ("SWITCHBOARD_TOKEN", token.as_str()),
            ],
            None,
        )
        .error();
    assert!(
        error.contains("switchboard login"),
        "the revoked token is refused: {error}"
    );

    let status = server.terminate();
    assert!(
        status.success(),
        "the server exits with 0 after SIGTERM, got {status}"
    );
}

#[test]
fn editing_a_connector_changes_its_auth_method_and_who_holds_its_credential() {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let server = s.serve(&[]);
    s.login(&server, "ada@example.org");
    let added = s
        .run(&[
            "connector",
            "add",
            "Docs",
            "https://docs.example.com/mcp",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(added["auth_method"], "unknown");
    assert_eq!(added["credential_scope"], "shared");

    let edited = s
        .run(&[
            "connector",
            "edit",
            "Docs",
            "--auth",
            "oauth",
            "--per-member",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(edited["auth_method"], "oauth", "{edited}");
    assert_eq!(edited["credential_scope"], "member", "{edited}");
    let shown = s.run(&["connector", "show", "Docs", "--json"]).ok().json();
    assert_eq!(shown["auth_method"], "oauth", "{shown}");
    assert_eq!(shown["credential_scope"], "member", "{shown}");

    // Back to one shared credential, sent as headers; the table says what changed.
    let out = s
        .run(&["connector", "edit", "Docs", "--shared", "--auth", "headers"])
        .ok();
    assert!(out.stdout.contains("changed the connector Docs"), "{out:?}");
    assert!(out.stdout.contains("headers"), "{out:?}");
    let held_by = out
        .stdout
        .lines()
        .find(|l| l.contains("credential held by"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(held_by.contains("shared"), "{held_by}");
    let shown = s.run(&["connector", "show", "Docs", "--json"]).ok().json();
    assert_eq!(shown["auth_method"], "headers", "{shown}");
    assert_eq!(shown["credential_scope"], "shared", "{shown}");

    // Each flag alone changes only its own field.
    let edited = s
        .run(&["connector", "edit", "Docs", "--per-member", "--json"])
        .ok()
        .json();
    assert_eq!(edited["auth_method"], "headers", "{edited}");
    assert_eq!(edited["credential_scope"], "member", "{edited}");

    // Both scopes at once is a usage error; an unknown method is refused by the parser.
    let both = s.run(&["connector", "edit", "Docs", "--per-member", "--shared"]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    assert!(both.stderr.contains("--shared"), "{both:?}");
    let unknown = s.run(&["connector", "edit", "Docs", "--auth", "unknown"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let error = s.run(&["connector", "edit", "Docs"]).error();
    assert!(
        error.contains("--auth") && error.contains("--per-member"),
        "{error}"
    );

    // Every change is audited with what it changed.
    let audit = s
        .run(&["audit", "export", "--action", "connector_updated"])
        .ok()
        .stdout;
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(audit.contains("\"credential_scope\":\"member\""), "{audit}");
    assert!(audit.contains("\"auth_method\":\"oauth\""), "{audit}");
}

#[test]
fn org_and_user_commands() {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let server = s.serve(&[]);
    s.login(&server, "ada@example.org");

    s.run(&["org", "create", "labs", "--name", "Acme Labs"])
        .ok();
    let error = s.run(&["connector", "list"]).error();
    assert!(
        error.contains("--org") && error.contains("acme") && error.contains("labs"),
        "{error}"
    );

    s.run_stdin(
        &[
            "org",
            "add-member",
            "bob@example.org",
            "--org",
            "labs",
            "--name",
            "Bob",
            "--password",
        ],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    s.run(&[
        "org",
        "set-role",
        "bob@example.org",
        "admin",
        "--org",
        "labs",
    ])
    .ok();
    let members = s
        .run(&["org", "members", "--org", "labs", "--json"])
        .ok()
        .json();
    let bob = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "bob@example.org")
        .expect("bob is a member");
    assert_eq!(bob["role"], "admin");
    s.run(&["org", "remove-member", "bob@example.org", "--org", "labs"])
        .ok();
    let members = s
        .run(&["org", "members", "--org", "labs", "--json"])
        .ok()
        .json();
    assert_eq!(members.as_array().unwrap().len(), 1);

    let created = s
        .run(&["user", "token-create", "ci", "--expires-in-days", "7"])
        .ok();
    assert!(
        created.stdout.trim().starts_with("sbp_"),
        "only the secret goes to stdout: {}",
        created.stdout
    );
    let tokens = s.run(&["user", "tokens", "--json"]).ok().json();
    assert!(tokens.as_array().unwrap().iter().any(|t| t["name"] == "ci"));
    s.run(&["user", "token-revoke", "ci"]).ok();
    let error = s
        .run(&["user", "token-create", "x", "--expires-in-days", "100000"])
        .error();
    assert!(error.starts_with("expires_in_days: "), "{error}");

    let new_password = "another long password";
    s.run_stdin(
        &["user", "password", "--password-stdin"],
        &format!("{PASSWORD}\n{new_password}\n"),
    )
    .ok();
    let error = s
        .run_stdin(
            &[
                "login",
                "--server",
                &server.url,
                "--email",
                "ada@example.org",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .error();
    assert!(error.contains("wrong"), "{error}");
    assert!(server.terminate().success());
}

#[test]
fn function_floors_and_preferences() {
    use switchboard_domain::{AuditAction, FunctionDefinition, NewAuditEvent, NewFunctionState};
    use switchboard_store::DiscoveredFunction;

    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    // Discovery belongs to the connector engine; here its result is written straight into the
    // store, so the policy commands have a function to work on.
    crate::support::runtime().block_on(async {
        let opened = crate::support::open_data_dir(&s.data_dir()).await;
        let made =
            crate::support::connector_with_secret(&opened, "ada@example.org", "github", "t0ken")
                .await;
        let found = [DiscoveredFunction::new(FunctionDefinition {
            name: "search_issues".into(),
            title: None,
            description: Some("Searches issues".into()),
            input_schema: serde_json::json!({"type": "object"}),
            output_schema: None,
            annotations: None,
        })];
        let audit = NewAuditEvent::new(AuditAction::FunctionsSynced, None)
            .org(made.org)
            .target("connector", made.id);
        opened
            .store
            .sync_functions(
                made.org,
                made.id,
                &found,
                NewFunctionState::Allowed,
                switchboard_store::now(),
                &audit,
            )
            .await
            .unwrap();
    });
    let server = s.serve(&[]);
    s.login(&server, "ada@example.org");

    let table = s.run(&["connector", "functions", "github"]).ok().stdout;
    assert!(
        table
            .lines()
            .any(|l| l.contains("search_issues") && l.contains("Searches issues")),
        "{table}"
    );

    let out = s
        .run(&["connector", "floor", "github", "search_issues", "ask"])
        .ok();
    assert!(out.stdout.contains("is now ask"), "{}", out.stdout);
    let info = s
        .run(&[
            "connector",
            "prefer",
            "github",
            "search_issues",
            "never",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(info["floor"], "ask");
    assert_eq!(info["preference"], "never");
    let info = s
        .run(&[
            "connector",
            "prefer",
            "github",
            "search_issues",
            "clear",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(info["preference"], Value::Null);
    let listed = s
        .run(&["connector", "functions", "github", "--json"])
        .ok()
        .json();
    assert_eq!(listed[0]["floor"], "ask");

    let error = s
        .run(&[
            "connector",
            "floor",
            "github",
            "no_such_function",
            "blocked",
        ])
        .error();
    assert!(error.contains("not found"), "{error}");
    assert!(server.terminate().success());
}
