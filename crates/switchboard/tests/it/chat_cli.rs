//! `switchboard chat`, run as a person runs it: in a terminal (tmux), against a `switchboard
//! serve` with a real MCP server as its connector and the testkit's model provider double as
//! the organization's model. The double calls the connector's `add`, which the member's default
//! preference asks about, so the member approves it at the terminal.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_domain::ProviderKind;
use switchboard_testkit::{Everything, LlmDouble, Mode, RmcpServer, Scripted, last_message};

use crate::support::{Scratch, Server, runtime};

const OWNER: &str = "ada@example.org";
/// The model's final answer, once it has the function's result.
const ANSWER: &str = "The adder says 2 + 3 = 5.";

/// A responder for the double: call `Tools.add` (on the wire `Tools__add`, the connector's
/// name and the function's), answer once the result is in, and never answer a question asked
/// "slowly" (so the member can cancel it).
fn responder(body: &Value) -> Scripted {
    match last_message(body) {
        ("tool", _) => Scripted::text(ANSWER),
        ("user", question) if question.contains("slowly") => Scripted::hang(),
        _ => Scripted::tool_calls([("Tools__add", json!({"a": 2, "b": 3}))]),
    }
}

/// An installation whose owner signed the command line in, with the connector `Tools` (a real
/// MCP server) tested and the double as the organization's model. The server may reach
/// loopback addresses over plain http, where both the MCP server and the double listen.
struct Setup {
    s: Scratch,
    server: Server,
    _upstream: RmcpServer,
    model: LlmDouble,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let rt = runtime();
    let upstream = rt.block_on(RmcpServer::start());
    let model = rt.block_on(LlmDouble::start(ProviderKind::OpenAi, responder));
    let (s, server) = installation("Tools", upstream.url());
    set_model(&s, &server, &rt, &model);
    Setup {
        s,
        server,
        _upstream: upstream,
        model,
        rt,
    }
}

/// A scratch installation with its server, the owner signed in, and the connector `name` at
/// `url`, tested.
fn installation(name: &str, url: &str) -> (Scratch, Server) {
    let s = Scratch::new();
    s.create_owner(OWNER, "acme", &[]);
    let server = s.serve(&[("SWITCHBOARD_ALLOW_HTTP_LOOPBACK", "true")]);
    s.login(&server, OWNER);
    s.run(&["connector", "add", name, url]).ok();
    s.run(&["connector", "test", name]).ok();
    (s, server)
}

/// Makes the double the organization's model. There is no command for it; an admin sets it
/// through the API, here with the token `login` kept.
fn set_model(s: &Scratch, server: &Server, rt: &tokio::runtime::Runtime, model: &LlmDouble) {
    let kept: toml::Value =
        toml::from_str(&std::fs::read_to_string(s.config_dir().join("credentials.toml")).unwrap())
            .unwrap();
    let token = kept["token"].as_str().unwrap().to_owned();
    let org = s.run(&["org", "show", "--json"]).ok().json();
    let org_id = org["id"].as_str().expect("the organization's id");
    let url = format!("{}/api/v1/orgs/{org_id}/chat-model", server.url);
    let body = json!({"kind": "openai", "base_url": model.base_url().as_str(), "model": "double"});
    let status = rt.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .put(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "setting the model: {status}");
}

/// Checks the audit log holds the chat's call of `add`, allowed by the member.
fn assert_audited(s: &Scratch) {
    let listed = s
        .run(&["audit", "list", "--action", "function_called", "--json"])
        .ok()
        .json();
    let events = listed
        .as_array()
        .or_else(|| listed["items"].as_array())
        .unwrap_or_else(|| panic!("no list in {listed}"));
    let call = events
        .iter()
        .find(|e| e["detail"]["via"] == "chat")
        .unwrap_or_else(|| panic!("no call from the chat in {listed}"));
    assert_eq!(call["detail"]["function"], "add", "{call}");
    assert_eq!(call["detail"]["outcome"], "ok", "{call}");
    assert!(call["detail"]["conversation"].is_string(), "{call}");
}

/// A tmux server of the test's own (its own socket), holding one session that runs a command.
/// The server is killed when this is dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Whether tmux is installed. Under `CI=true` a missing tmux fails the test instead: CI
    /// must run the terminal tests, never pass them vacuously (`.ci/run` installs tmux).
    fn available() -> bool {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tmux is not installed; CI must run the terminal tests (.ci/run installs it)"
            );
            eprintln!(
                "skipping the terminal test of `switchboard chat`: tmux is not installed \
                 (apt-get install tmux)"
            );
        }
        found
    }

    /// Starts `args` of the binary in a 200×50 terminal in `dir`, with the scratch
    /// installation's environment. When the command ends, the pane says `[exited CODE]` and
    /// stays, so what it printed can still be read.
    fn start(s: &Scratch, args: &[&str]) -> Tmux {
        let socket = format!(
            "switchboard-test-{}-{}",
            std::process::id(),
            s.path().file_name().unwrap().to_string_lossy()
        );
        let tmux = Tmux { socket };
        let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_switchboard"))
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect();
        let script = format!(
            "cd {dir} && {cmd}; echo \"[exited $?]\"; sleep 600",
            dir = shell_quote(s.path().display().to_string()),
            cmd = quoted.join(" ")
        );
        // The tmux server starts here and passes its environment on to the pane: the same clean
        // one `Scratch::command` gives the binary.
        let clean = s.command(&[]);
        let mut tmux_cmd = Command::new("tmux");
        for (key, value) in clean.get_envs() {
            match value {
                Some(value) => tmux_cmd.env(key, value),
                None => tmux_cmd.env_remove(key),
            };
        }
        tmux_cmd
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-s", "chat", "-x", "200", "-y", "50", &script])
            .env("TERM", "xterm-256color")
            .current_dir(s.path());
        tmux.check(&mut tmux_cmd);
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    fn check(&self, cmd: &mut Command) -> String {
        let out = cmd.output().expect("tmux runs");
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text`, then Enter.
    fn type_line(&self, text: &str) {
        self.check(self.command().args(["send-keys", "-t", "chat", "-l", text]));
        self.check(self.command().args(["send-keys", "-t", "chat", "Enter"]));
    }

    /// Presses a key, such as `C-c`.
    fn press(&self, key: &str) {
        self.check(self.command().args(["send-keys", "-t", "chat", key]));
    }

    /// What the terminal shows, scroll-back included, without colours.
    fn screen(&self) -> String {
        self.check(
            self.command()
                .args(["capture-pane", "-p", "-J", "-S", "-", "-t", "chat"]),
        )
    }

    /// Waits until `ready` accepts the screen, for at most a minute; returns the screen.
    fn wait_for(&self, what: &str, server: &Server, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited a minute for {what}; the terminal shows:\n{screen}\n\
                     server log:\n{}",
                    server.stdout()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

fn shell_quote(s: impl AsRef<str>) -> String {
    format!("'{}'", s.as_ref().replace('\'', r"'\''"))
}

/// How many times `needle` appears in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_member_approves_a_call_at_the_terminal_and_cancels_an_answer() {
    if !Tmux::available() {
        return;
    }
    // Every part is bound: a part left out would be dropped, and stopped, at once.
    let Setup {
        s,
        server,
        _upstream,
        model,
        rt: _rt,
    } = setup();
    let tmux = Tmux::start(&s, &["chat", "--connector", "Tools", "--title", "Sums"]);
    let screen = tmux.wait_for("the prompt", &server, |t| t.contains("you> "));
    assert!(
        screen.contains(": Sums, with Tools."),
        "the conversation is introduced:\n{screen}"
    );

    tmux.type_line("What is 2 + 3?");
    let screen = tmux.wait_for("the approval question", &server, |t| {
        t.contains("Allow? [y] once / [a] always / [n] no:")
    });
    for expected in [
        r#"→ Tools.add({"a":2,"b":3})"#,
        "Approval needed: Tools.add",
        r#"  arguments: {"a":2,"b":3}"#,
        "  asked because: ",
    ] {
        assert!(screen.contains(expected), "no {expected:?} in\n{screen}");
    }
    // Nothing ran before the member answered.
    assert_eq!(model.requests().len(), 1);

    tmux.type_line("y");
    let screen = tmux.wait_for("the answer and the next prompt", &server, |t| {
        t.contains(ANSWER) && count(t, "you> ") == 2
    });
    assert!(screen.contains("← Tools.add: 5"), "{screen}");
    // The function's result reached the model.
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (role, content) = last_message(&requests[1]);
    assert!(role == "tool" && content.contains("\n5\n"), "{content}");

    // Ctrl-C while an answer is coming cancels it, and the prompt comes back.
    tmux.type_line("Now think slowly about it.");
    let deadline = Instant::now() + Duration::from_secs(60);
    while model.requests().len() < 3 {
        assert!(Instant::now() < deadline, "the model was not asked again");
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.press("C-c");
    tmux.wait_for("the cancelled answer and the next prompt", &server, |t| {
        t.contains("(the answer was cancelled)") && count(t, "you> ") == 3
    });

    tmux.type_line("/quit");
    let screen = tmux.wait_for("the command to end", &server, |t| t.contains("[exited "));
    assert!(screen.contains("[exited 0]"), "{screen}");
    assert!(
        screen.contains("switchboard chat --conversation "),
        "says how to come back:\n{screen}"
    );
    assert_audited(&s);
}

#[test]
fn a_script_on_standard_input_is_a_dialogue_without_colours() {
    let Setup {
        s,
        server: _server,
        _upstream,
        model,
        rt: _rt,
    } = setup();
    let out = s
        .run_stdin(
            &["chat", "--connector", "tools"],
            "What is 2 + 3?\nmaybe\ny\n/quit\n",
        )
        .ok();
    assert!(!out.stdout.contains('\x1b'), "{}", out.stdout);
    // What was read is shown after its prompt, so the output reads as the dialogue it was.
    for expected in [
        "you> What is 2 + 3?\n",
        "→ Tools.add({\"a\":2,\"b\":3})\n",
        "Allow? [y] once / [a] always / [n] no: maybe\n",
        "Answer y (allow once), a (always allow) or n (deny).\n",
        "Allow? [y] once / [a] always / [n] no: y\n",
        "← Tools.add: 5\n",
        &format!("{ANSWER}\nyou> /quit\n"),
    ] {
        assert!(
            out.stdout.contains(expected),
            "no {expected:?} in\n{}",
            out.stdout
        );
    }
    assert_eq!(model.requests().len(), 2);
    assert_audited(&s);

    // The conversation goes on where it stopped; without a model answer left to give, the
    // end of input leaves at the prompt.
    let id = out
        .stdout
        .split("--conversation ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no conversation id in\n{}", out.stdout))
        .to_owned();
    let again = s.run_stdin(&["chat", "--conversation", &id], "").ok();
    assert!(
        again
            .stdout
            .starts_with(&format!("Conversation {id}: New conversation (")),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains(" messages so far).") && !again.stdout.contains("(0 messages"),
        "{}",
        again.stdout
    );

    // A connector the organization does not have is named.
    let error = s.run_stdin(&["chat", "--connector", "Nope"], "").error();
    assert!(error.contains("no connector \"Nope\""), "{error}");
}

#[test]
fn a_connectors_question_is_answered_field_by_field() {
    let rt = runtime();
    let upstream = rt.block_on(Everything::start(Mode::StreamableHttp));
    let model = rt.block_on(LlmDouble::start(
        ProviderKind::OpenAi,
        |body| match last_message(body) {
            ("tool", _) => Scripted::text("Thank you."),
            _ => Scripted::tool_calls([("Everything__trigger-elicitation-request", json!({}))]),
        },
    ));
    let (s, _server) = installation("Everything", upstream.url());
    set_model(&s, &_server, &rt, &model);

    // The server's form has these fields, asked in this (alphabetical) order; a wrong or
    // missing answer is asked again, and Enter takes the default.
    let answers = [
        "",             // birthdate, optional
        "y",            // check
        "",             // email, optional
        "",             // firstLine: the default
        "",             // homepage, optional
        "500",          // integer: over its maximum
        "7",            // integer
        "Dogs",         // legacyTitledEnum, by its title
        "",             // name: required
        "Ada Lovelace", // name
        "",             // number: the default
        "Tuna, 3",      // titledMultipleSelectEnum: by title and by number
        "",             // titledSingleSelectEnum: the default
        "Piano",        // untitledMultipleSelectEnum
        "ross",         // untitledSingleSelectEnum
    ];
    let script = format!(
        "Ask me for my details\ny\ny\n{}\n/quit\n",
        answers.join("\n")
    );
    let out = s
        .run_stdin(&["chat", "--connector", "Everything"], &script)
        .ok();
    for expected in [
        "Approval needed: Everything.trigger-elicitation-request\n",
        "Everything asks: Please provide inputs for the following fields:\n",
        "Answer? [y] yes / [n] decline / [c] cancel: y\n",
        "  Integer (a whole number, optional) [42]: 500\n  must be at most 100\n",
        "  String (text): \n  This field is required.\n",
        "[It was a dark and stormy night.]",
        "Thank you.\n",
    ] {
        assert!(
            out.stdout.contains(expected),
            "no {expected:?} in\n{}",
            out.stdout
        );
    }
    // The server got the answers: the model read them in the function's result.
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (role, result) = last_message(&requests[1]);
    assert_eq!(role, "tool");
    for line in [
        "- Name: Ada Lovelace",
        "- Agreed to terms: true",
        "- Favorite Integer: 7",
        "- Favorite Number: 3.14",
    ] {
        assert!(result.contains(line), "no {line:?} in {result}");
    }
}
