//! `config check`, `config default` and `completions`.

use crate::support::Scratch;

#[test]
fn check_accepts_the_defaults_without_a_file_and_creates_nothing() {
    let s = Scratch::new();
    let out = s.run(&["config", "check"]).ok();
    assert!(
        out.stdout.contains("listen = \"127.0.0.1:8080\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("database_url = \"sqlite://./data/switchboard.db\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("generated on first start"),
        "{}",
        out.stdout
    );
    assert!(
        !s.data_dir().exists(),
        "config check must not create the data directory"
    );
}

#[test]
fn check_merges_file_env_and_flags() {
    let s = Scratch::new();
    std::fs::write(
        s.path().join("sb.toml"),
        "listen = \"127.0.0.1:9000\"\ndata_dir = \"./state\"\n[security]\nsession_hours = 4\n",
    )
    .unwrap();
    let env = [
        ("SWITCHBOARD_SESSION_HOURS", "6"),
        ("SWITCHBOARD_ALLOW_HTTP_HOSTS", "mcp.internal,10.0.0.0/8"),
    ];
    let out = s
        .run_with(
            &[
                "config",
                "check",
                "--config",
                "sb.toml",
                "--listen",
                "127.0.0.1:9100",
            ],
            &env,
            None,
        )
        .ok();
    for expected in [
        "listen = \"127.0.0.1:9100\"",
        "data_dir = \"./state\"",
        "database_url = \"sqlite://./state/switchboard.db\"",
        "session_hours = 6",
        "allow_http_hosts = [\"mcp.internal\", \"10.0.0.0/8\"]",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            out.stdout
        );
    }
    // The file can also be named through the environment.
    let out = s
        .run_with(
            &["config", "check"],
            &[("SWITCHBOARD_CONFIG", "sb.toml")],
            None,
        )
        .ok();
    assert!(out.stdout.contains("session_hours = 4"), "{}", out.stdout);
}

#[test]
fn check_names_an_unknown_key() {
    let s = Scratch::new();
    std::fs::write(
        s.path().join("sb.toml"),
        "[security]\ncookie_secure = true\ncookie_secur = false\n",
    )
    .unwrap();
    let error = s.run(&["config", "check", "--config", "sb.toml"]).error();
    assert!(
        error.contains("sb.toml") && error.contains("line 3"),
        "{error}"
    );
    assert!(
        error.contains("unknown key security.cookie_secur"),
        "{error}"
    );
}

#[test]
fn check_names_bad_values_and_their_source() {
    let s = Scratch::new();
    std::fs::write(
        s.path().join("hosts.toml"),
        "[security]\nallow_http_hosts = [\"*.corp.example\"]\n",
    )
    .unwrap();
    let error = s
        .run(&["config", "check", "--config", "hosts.toml"])
        .error();
    assert!(
        error.contains("security.allow_http_hosts[0]") && error.contains("wildcard"),
        "{error}"
    );

    let error = s
        .run_with(
            &["config", "check"],
            &[("SWITCHBOARD_LISTEN", "localhost")],
            None,
        )
        .error();
    assert!(error.starts_with("SWITCHBOARD_LISTEN: "), "{error}");
    let error = s
        .run_with(
            &["config", "check"],
            &[("SWITCHBOARD_COOKIE_SECURE", "sometimes")],
            None,
        )
        .error();
    assert!(error.starts_with("SWITCHBOARD_COOKIE_SECURE: "), "{error}");
    let error = s
        .run_with(
            &["config", "check"],
            &[("SWITCHBOARD_DATABASE_URL", "mysql://u:hunter2@db/x")],
            None,
        )
        .error();
    assert!(
        error.starts_with("SWITCHBOARD_DATABASE_URL: ") && !error.contains("hunter2"),
        "{error}"
    );
    let error = s
        .run_with(
            &["config", "check"],
            &[("SWITCHBOARD_MASTER_KEY", "not a key")],
            None,
        )
        .error();
    assert!(error.contains("SWITCHBOARD_MASTER_KEY"), "{error}");
    let error = s
        .run(&["config", "check", "--config", "missing.toml"])
        .error();
    assert!(error.contains("missing.toml"), "{error}");
}

#[test]
fn check_shows_and_bounds_the_connector_settings() {
    let s = Scratch::new();
    let out = s.run(&["config", "check"]).ok();
    assert!(
        out.stdout.contains(
            "[connectors]\ncall_timeout_secs = 60\nmax_result_bytes = 4194304\nsession_idle_secs = 300\n"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let printed = s.run(&["config", "default"]).ok().stdout;
    for key in [
        "SWITCHBOARD_CALL_TIMEOUT_SECS",
        "SWITCHBOARD_MAX_RESULT_BYTES",
        "SWITCHBOARD_SESSION_IDLE_SECS",
    ] {
        assert!(printed.contains(key), "config default explains {key}");
    }

    std::fs::write(
        s.path().join("sb.toml"),
        "[connectors]\ncall_timeout_secs = 30\nsession_idle_secs = 600\n",
    )
    .unwrap();
    let out = s
        .run_with(
            &["config", "check", "--config", "sb.toml"],
            &[("SWITCHBOARD_MAX_RESULT_BYTES", "65536")],
            None,
        )
        .ok();
    for expected in [
        "call_timeout_secs = 30",
        "max_result_bytes = 65536",
        "session_idle_secs = 600",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            out.stdout
        );
    }

    // A call limit past the request timeout is valid but worth a warning: calls that do not
    // stream are cut at the shorter one.
    let out = s
        .run_with(
            &["config", "check"],
            &[("SWITCHBOARD_CALL_TIMEOUT_SECS", "300")],
            None,
        )
        .ok();
    assert!(
        out.stderr
            .contains("warning: connectors.call_timeout_secs (300)"),
        "{}",
        out.stderr
    );

    for (var, value) in [
        ("SWITCHBOARD_CALL_TIMEOUT_SECS", "0"),
        ("SWITCHBOARD_MAX_RESULT_BYTES", "100"),
        ("SWITCHBOARD_SESSION_IDLE_SECS", "86401"),
        ("SWITCHBOARD_CALL_TIMEOUT_SECS", "soon"),
    ] {
        let error = s
            .run_with(&["config", "check"], &[(var, value)], None)
            .error();
        assert!(error.starts_with(&format!("{var}: ")), "{error}");
    }
    std::fs::write(
        s.path().join("bad.toml"),
        "[connectors]\nmax_result_bytes = 1\n",
    )
    .unwrap();
    let error = s.run(&["config", "check", "--config", "bad.toml"]).error();
    assert!(
        error.contains("connectors.max_result_bytes: must be between 1024 and"),
        "{error}"
    );
}

#[test]
fn check_shows_the_chat_settings_and_never_the_model_key() {
    let s = Scratch::new();
    let out = s.run(&["config", "check"]).ok();
    assert!(
        out.stdout.contains(
            "[chat]\nstep_limit = 10\nlease_secs = 30\nmax_output_chars = 16000\n\
             max_functions = 64\nmax_function_tokens = 12000\nsearch_matches = 8\n\
             # default model: none"
        ),
        "{}",
        out.stdout
    );
    let printed = s.run(&["config", "default"]).ok().stdout;
    for key in [
        "SWITCHBOARD_CHAT_STEP_LIMIT",
        "SWITCHBOARD_CHAT_LEASE_SECS",
        "SWITCHBOARD_CHAT_MAX_OUTPUT_CHARS",
        "SWITCHBOARD_CHAT_MODEL_KIND",
        "SWITCHBOARD_CHAT_MODEL_API_KEY",
        "SWITCHBOARD_CHAT_MODEL_API_KEY_FILE",
    ] {
        assert!(printed.contains(key), "config default explains {key}");
    }

    std::fs::write(
        s.path().join("sb.toml"),
        "[chat]\nstep_limit = 3\nmodel_kind = \"openai\"\n\
         model_base_url = \"http://127.0.0.1:11434/v1\"\n",
    )
    .unwrap();
    let env = [
        ("SWITCHBOARD_CHAT_MODEL_NAME", "llama3.2"),
        ("SWITCHBOARD_CHAT_MODEL_API_KEY", "sk-hunter2"),
    ];
    let out = s
        .run_with(&["config", "check", "--config", "sb.toml"], &env, None)
        .ok();
    for expected in [
        "step_limit = 3\n",
        "model_kind = \"openai\"\nmodel_base_url = \"http://127.0.0.1:11434/v1\"\n\
         model_name = \"llama3.2\"\n# model API key: from SWITCHBOARD_CHAT_MODEL_API_KEY\n",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));

    // A partial default model is an error that names what is missing.
    let error = s.run(&["config", "check", "--config", "sb.toml"]).error();
    assert!(
        error.contains("missing chat.model_name (SWITCHBOARD_CHAT_MODEL_NAME)"),
        "{error}"
    );
    // A key in the file is refused, and not echoed.
    std::fs::write(
        s.path().join("key.toml"),
        "[chat]\nmodel_api_key = \"sk-hunter2\"\n",
    )
    .unwrap();
    let error = s.run(&["config", "check", "--config", "key.toml"]).error();
    assert!(
        error.contains("chat.model_api_key") && !error.contains("hunter2"),
        "{error}"
    );
    // The key from a file; a missing file is found by the check, not at start.
    std::fs::write(s.path().join("model.key"), "sk-hunter2\n").unwrap();
    let env = [
        ("SWITCHBOARD_CHAT_MODEL_NAME", "llama3.2"),
        ("SWITCHBOARD_CHAT_MODEL_API_KEY_FILE", "model.key"),
    ];
    let out = s
        .run_with(&["config", "check", "--config", "sb.toml"], &env, None)
        .ok();
    assert!(
        out.stdout.contains("model_api_key_file = \"model.key\"")
            && !out.stdout.contains("hunter2"),
        "{}",
        out.stdout
    );
    let env = [
        ("SWITCHBOARD_CHAT_MODEL_NAME", "llama3.2"),
        ("SWITCHBOARD_CHAT_MODEL_API_KEY_FILE", "missing.key"),
    ];
    let error = s
        .run_with(&["config", "check", "--config", "sb.toml"], &env, None)
        .error();
    assert!(
        error.starts_with("chat.model_api_key_file: cannot read missing.key"),
        "{error}"
    );
    for (var, value) in [
        ("SWITCHBOARD_CHAT_STEP_LIMIT", "0"),
        ("SWITCHBOARD_CHAT_LEASE_SECS", "7200"),
        ("SWITCHBOARD_CHAT_MODEL_KIND", "anthropic"),
    ] {
        let error = s
            .run_with(&["config", "check"], &[(var, value)], None)
            .error();
        assert!(error.starts_with(&format!("{var}: ")), "{error}");
    }
}

#[test]
fn the_default_file_parses_back_and_passes_check() {
    let s = Scratch::new();
    let printed = s.run(&["config", "default"]).ok().stdout;
    assert!(
        printed.lines().filter(|l| l.starts_with('#')).count() > 20,
        "the example explains its keys"
    );
    std::fs::write(s.path().join("default.toml"), &printed).unwrap();
    let with_file = s
        .run(&["config", "check", "--config", "default.toml"])
        .ok()
        .stdout;
    let without = s.run(&["config", "check"]).ok().stdout;
    // The effective settings are the same with the example file as with no file at all.
    let body = |out: &str| {
        out.lines()
            .skip_while(|l| l.starts_with('#') || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&with_file), body(&without));
}

#[test]
fn completions_for_bash() {
    let s = Scratch::new();
    let out = s.run(&["completions", "bash"]).ok();
    assert!(
        out.stdout.contains("_switchboard()"),
        "{}",
        &out.stdout[..out.stdout.len().min(300)]
    );
    for word in ["connector", "rotate-key", "create-owner"] {
        assert!(out.stdout.contains(word), "completions miss {word}");
    }
}
