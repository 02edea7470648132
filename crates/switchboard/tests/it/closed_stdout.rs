//! Commands whose reader has gone away (`switchboard ... | head`) end quietly with success,
//! instead of panicking on the closed pipe.

use std::process::Stdio;

use crate::support::{Output, Scratch};

/// Runs the binary with a standard output whose reading end is already closed, so its first
/// write fails with a broken pipe.
fn run_with_closed_stdout(s: &Scratch, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = s
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("the switchboard binary runs");
    Output {
        status: out.status,
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `args` prints something when read, and ends quietly with success when not.
#[track_caller]
fn quiet_when_unread(s: &Scratch, args: &[&str]) {
    let read = s.run(args).ok();
    assert!(!read.stdout.is_empty(), "{args:?} prints something");
    let unread = run_with_closed_stdout(s, args);
    assert_eq!(
        unread.status.code(),
        Some(0),
        "{args:?} with a closed standard output\nstderr:\n{}",
        unread.stderr
    );
    assert!(
        !unread.stderr.contains("panicked") && !unread.stderr.contains("error"),
        "{args:?}: {}",
        unread.stderr
    );
}

#[test]
fn local_commands_end_quietly_when_their_output_is_not_read() {
    let s = Scratch::new();
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["config", "default"],
        &["config", "check"],
    ] {
        quiet_when_unread(&s, args);
    }
}

#[test]
fn api_commands_end_quietly_when_their_output_is_not_read() {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let server = s.serve(&[]);
    s.login(&server, "ada@example.org");
    for args in [
        &["user", "me", "--json"][..],
        &["user", "me"],
        &["org", "list"],
        &["audit", "list", "--json"],
        &["audit", "export"],
    ] {
        quiet_when_unread(&s, args);
    }
    assert!(server.terminate().success());
}
