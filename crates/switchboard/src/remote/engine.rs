//! Commands that reach a connector's server through Switchboard: `connector test`, `probe`,
//! `connector refresh`, the review of changed functions (`diff`, `approve`), resources and
//! prompts.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::ProbeArgs;
use crate::client::Api;
use crate::output::{
    Table, base64_decoded_len, human_bytes, print_json, reviewable, str_field, terminal_safe, text,
    truncate,
};
use crate::prompt;
use crate::remote::connectors::credential;
use crate::remote::{OrgRef, id_of, resolve_connector, resolve_org};
use crate::spinner::Spinner;

/// Prints a probe report's steps as a table.
fn print_steps(report: &Value) {
    let mut table = Table::new(&["step", "result", "time", "detail"]);
    table.align_right(&[2]);
    for step in report
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let outcome = text(step, "outcome");
        let (time, detail) = match outcome.as_str() {
            // A skipped step never ran, so neither a time nor a detail means anything.
            "skipped" => ("-".to_owned(), "-".to_owned()),
            "failed" => (format!("{} ms", text(step, "millis")), text(step, "reason")),
            _ => (format!("{} ms", text(step, "millis")), text(step, "detail")),
        };
        table.row(vec![text(step, "name"), outcome, time, detail]);
    }
    table.print_or("the report has no steps");
}

/// `name version` of the server that answered, or `-`.
fn server_name(session: &Value) -> String {
    match (
        str_field(session, "server_name"),
        str_field(session, "server_version"),
    ) {
        (Some(name), Some(version)) => format!("{name} {version}"),
        (Some(name), None) => name.to_owned(),
        _ => "-".into(),
    }
}

/// A list of names for a details row, `-` when empty.
fn names(value: &Value, key: &str) -> String {
    let listed: Vec<&str> = value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if listed.is_empty() {
        "-".into()
    } else {
        listed.join(", ")
    }
}

/// The rows describing a discovery pass's summary.
fn summary_rows(summary: &Value) -> Vec<(&'static str, String)> {
    vec![
        ("added", names(summary, "added")),
        ("changed", names(summary, "changed")),
        ("removed", names(summary, "removed")),
        ("unchanged", text(summary, "unchanged")),
    ]
}

/// The error a failed report ends the command with: the failing step and why, plus what to do
/// when the server asked for credentials.
fn report_failure(report: &Value, credential_hint: &str) -> anyhow::Error {
    let step = str_field(report, "failed_step").unwrap_or("probe");
    let reason = report
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|s| str_field(s, "name") == Some(step))
        .and_then(|s| str_field(s, "reason"))
        .unwrap_or("failed");
    let hint = if report.get("auth").is_some_and(|a| !a.is_null()) {
        format!(" ({credential_hint})")
    } else {
        String::new()
    };
    anyhow::anyhow!("{step}: {reason}{hint}")
}

fn report_ok(report: &Value) -> bool {
    report.get("ok").and_then(Value::as_bool) == Some(true)
}

/// `connector test`.
pub async fn test(api: &Api, json: bool, org: &OrgRef, connector: &str) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let name = text(&found, "name");
    let spinner = Spinner::start(&format!("testing {name}…"));
    let answer = api
        .post(&["connectors", &id_of(&found)?, "validate"], &json!({}))
        .await;
    spinner.stop();
    let answer = answer?;
    let report = answer.get("report").cloned().unwrap_or(Value::Null);
    if json {
        print_json(&answer);
    } else {
        print_steps(&report);
        outln!();
        let c = answer.get("connector").cloned().unwrap_or(Value::Null);
        let mut rows = vec![("status", text(&c, "status"))];
        if str_field(&c, "last_error").is_some() {
            rows.push(("last error", text(&c, "last_error")));
        }
        rows.extend([
            ("transport", text(&c, "transport")),
            ("protocol", text(&c, "protocol_version")),
        ]);
        if let Some(session) = report.get("session").filter(|s| !s.is_null()) {
            rows.push(("server", server_name(session)));
        }
        match answer.get("functions").filter(|f| !f.is_null()) {
            Some(summary) => rows.extend(summary_rows(summary)),
            None => rows.push(("functions", "not discovered".into())),
        }
        Table::details(rows).print();
    }
    if report_ok(&report) {
        Ok(())
    } else {
        Err(report_failure(
            &report,
            &format!("add a credential with `switchboard connector edit {name} --bearer`"),
        ))
    }
}

/// `probe URL`.
pub async fn probe(api: &Api, args: ProbeArgs) -> Result<()> {
    let org = resolve_org(api, args.org.org.as_deref()).await?;
    // Secrets are read before the spinner starts, so a question at the terminal is not drawn
    // over.
    let mut body = json!({ "url": args.url });
    if let Some(cred) = credential(&args.credential)? {
        body["credential"] = cred;
    }
    let spinner = Spinner::start(&format!("probing {}…", args.url));
    let report = api.post(&["orgs", &org.id, "probe"], &body).await;
    spinner.stop();
    let report = report?;
    if args.output.json {
        print_json(&report);
    } else {
        print_steps(&report);
        outln!();
        let mut rows = vec![("url", text(&report, "url"))];
        if let Some(session) = report.get("session").filter(|s| !s.is_null()) {
            rows.extend([
                ("transport", text(session, "transport")),
                ("protocol", text(session, "protocol_version")),
                ("server", server_name(session)),
            ]);
        }
        if let Some(counts) = report.get("counts").filter(|c| !c.is_null()) {
            rows.push((
                "offers",
                format!(
                    "{} tools, {} resources, {} resource templates, {} prompts",
                    text(counts, "tools"),
                    text(counts, "resources"),
                    text(counts, "resource_templates"),
                    text(counts, "prompts")
                ),
            ));
        }
        if let Some(auth) = report.get("auth").filter(|a| !a.is_null()) {
            let challenge = match str_field(auth, "challenge") {
                Some(c) => format!(", WWW-Authenticate: {c}"),
                None => String::new(),
            };
            rows.push((
                "auth",
                format!(
                    "the server asked for credentials (HTTP {}{challenge})",
                    text(auth, "status")
                ),
            ));
        }
        Table::details(rows).print();
    }
    if report_ok(&report) {
        Ok(())
    } else {
        Err(report_failure(
            &report,
            "probe again with --bearer, --basic USER or --headers-stdin",
        ))
    }
}

/// `connector refresh`.
pub async fn refresh(api: &Api, json: bool, org: &OrgRef, connector: &str) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let name = text(&found, "name");
    let summary = api
        .post(&["connectors", &id_of(&found)?, "refresh"], &json!({}))
        .await?;
    if json {
        print_json(&summary);
        return Ok(());
    }
    Table::details(summary_rows(&summary)).print();
    if summary
        .get("changed")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
    {
        outln!(
            "\nchanged functions are held until approved; review one with `switchboard connector diff {name} FUNCTION`"
        );
    }
    Ok(())
}

/// A review state in words.
fn review_words(state: &str) -> &str {
    match state {
        "approved" => "approved; the current definition is the approved one",
        "pending" => "pending; new and never approved",
        "changed" => "changed since it was approved; held until approved again",
        "removed" => "removed; the server no longer offers it",
        other => other,
    }
}

/// Prints a diff for review; on standard error when standard output carries JSON.
fn print_diff(diff: &Value, connector: &str, function: &str, to_stderr: bool) {
    let mut lines = vec![format!(
        "{function} on {connector}: {}",
        review_words(&text(diff, "review_state"))
    )];
    let changes: &[Value] = diff
        .get("changes")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    if changes.is_empty() {
        lines.push("no changes from the approved definition".into());
    }
    for change in changes {
        // Never shortened: what a reviewer does not see is what a changed description hides.
        // The values come escaped by reviewable(); the path holds property names chosen by the
        // connector's server, so it is escaped too.
        lines.push(format!(
            "{}: {} → {}",
            terminal_safe(&text(change, "path")),
            reviewable(change.get("before")),
            reviewable(change.get("after"))
        ));
    }
    lines.push(format!("hash: {}", text(diff, "current_hash")));
    let out = lines.join("\n");
    if to_stderr {
        eprintln!("{out}");
    } else {
        outln!("{out}");
    }
}

/// `connector diff`.
pub async fn diff(
    api: &Api,
    json: bool,
    org: &OrgRef,
    connector: &str,
    function: &str,
) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let name = text(&found, "name");
    let diff = api
        .get(&["connectors", &id_of(&found)?, "functions", function, "diff"])
        .await?;
    if json {
        print_json(&diff);
        return Ok(());
    }
    print_diff(&diff, &name, function, false);
    if str_field(&diff, "review_state") != Some("approved") {
        outln!(
            "approve with: switchboard connector approve {name} {function} --hash {}",
            text(&diff, "current_hash")
        );
    }
    Ok(())
}

/// `connector approve`.
pub async fn approve(
    api: &Api,
    json: bool,
    org: &OrgRef,
    connector: &str,
    function: &str,
    hash: Option<String>,
    yes: bool,
) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let name = text(&found, "name");
    let id = id_of(&found)?;
    let hash = match hash {
        Some(hash) => hash,
        None => {
            let diff = api
                .get(&["connectors", &id, "functions", function, "diff"])
                .await?;
            if str_field(&diff, "review_state") == Some("approved") {
                if json {
                    print_json(&diff);
                } else {
                    outln!("{function} on {name} is already approved");
                }
                return Ok(());
            }
            print_diff(&diff, &name, function, json);
            if !yes {
                if !prompt::interactive() {
                    bail!(
                        "approving without --hash needs --yes when standard input is not a terminal"
                    );
                }
                if !prompt::confirm(&format!("Approve this definition of {function}?"))? {
                    bail!("nothing approved");
                }
            }
            match str_field(&diff, "current_hash") {
                Some(hash) => hash.to_owned(),
                None => bail!("the server's diff names no hash to approve"),
            }
        }
    };
    let approved = api
        .post(
            &["connectors", &id, "functions", function, "approve"],
            &json!({ "hash": hash }),
        )
        .await?;
    if json {
        print_json(&approved);
    } else {
        outln!(
            "approved {function} on {name}; it is now {}",
            text(&approved, "review_state")
        );
    }
    Ok(())
}

/// `connector resources`.
pub async fn resources(api: &Api, json: bool, org: &OrgRef, connector: &str) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let listed = api
        .get(&["connectors", &id_of(&found)?, "resources"])
        .await?;
    if json {
        print_json(&listed);
        return Ok(());
    }
    let items = |key: &str| -> Vec<Value> {
        listed
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (resources, templates) = (items("resources"), items("resource_templates"));
    if resources.is_empty() && templates.is_empty() {
        outln!("the server of {} offers no resources", text(&found, "name"));
        return Ok(());
    }
    if !resources.is_empty() {
        let mut table = Table::new(&["uri", "name", "type", "description"]);
        for r in &resources {
            table.row(vec![
                text(r, "uri"),
                text(r, "name"),
                text(r, "mimeType"),
                truncate(&text(r, "description"), 60),
            ]);
        }
        table.print();
    }
    if !templates.is_empty() {
        if !resources.is_empty() {
            outln!();
        }
        let mut table = Table::new(&["template", "name", "type", "description"]);
        for t in &templates {
            table.row(vec![
                text(t, "uriTemplate"),
                text(t, "name"),
                text(t, "mimeType"),
                truncate(&text(t, "description"), 60),
            ]);
        }
        table.print();
    }
    Ok(())
}

/// Prints text from a connector's server, guarded when it goes to a terminal.
fn print_text(text: &str) {
    let text = if std::io::stdout().is_terminal() {
        terminal_safe(text)
    } else {
        text.to_owned()
    };
    if text.ends_with('\n') {
        out!("{text}");
    } else {
        outln!("{text}");
    }
}

/// `connector read`.
pub async fn read(api: &Api, json: bool, org: &OrgRef, connector: &str, uri: &str) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let answer = api
        .post(
            &["connectors", &id_of(&found)?, "resources", "read"],
            &json!({ "uri": uri }),
        )
        .await?;
    if json {
        print_json(&answer);
        return Ok(());
    }
    let contents: &[Value] = answer
        .get("contents")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    for item in contents {
        // One resource can hold several parts; each is named only when there is more than one.
        if contents.len() > 1 {
            outln!("── {} ({})", text(item, "uri"), text(item, "mimeType"));
        }
        match (str_field(item, "text"), str_field(item, "blob")) {
            (Some(t), _) => print_text(t),
            (None, Some(blob)) => outln!(
                "[blob {}, {}, {}]",
                text(item, "uri"),
                text(item, "mimeType"),
                human_bytes(base64_decoded_len(blob))
            ),
            (None, None) => outln!("[{} without content]", text(item, "uri")),
        }
    }
    Ok(())
}

/// `connector prompts`.
pub async fn prompts(api: &Api, json: bool, org: &OrgRef, connector: &str) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let listed = api.get(&["connectors", &id_of(&found)?, "prompts"]).await?;
    if json {
        print_json(&listed);
        return Ok(());
    }
    let mut table = Table::new(&["prompt", "arguments", "description"]);
    for p in listed
        .get("prompts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // Optional arguments in brackets, as in a usage line.
        let arguments: Vec<String> = p
            .get("arguments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| {
                let name = text(a, "name");
                if a.get("required").and_then(Value::as_bool) == Some(true) {
                    name
                } else {
                    format!("[{name}]")
                }
            })
            .collect();
        table.row(vec![
            text(p, "name"),
            if arguments.is_empty() {
                "-".into()
            } else {
                arguments.join(" ")
            },
            truncate(&text(p, "description"), 60),
        ]);
    }
    table.print_or(&format!(
        "the server of {} offers no prompts",
        text(&found, "name")
    ));
    Ok(())
}

/// `connector prompt`.
pub async fn prompt(
    api: &Api,
    json: bool,
    org: &OrgRef,
    connector: &str,
    name: &str,
    args: Vec<(String, String)>,
) -> Result<()> {
    let mut arguments = Map::new();
    for (key, value) in args {
        if arguments.contains_key(&key) {
            bail!("arguments: {key} is given twice");
        }
        arguments.insert(key, Value::String(value));
    }
    let found = resolve_connector(api, org, connector).await?;
    let answer = api
        .post(
            &["connectors", &id_of(&found)?, "prompts", name, "get"],
            &json!({ "arguments": arguments }),
        )
        .await?;
    if json {
        print_json(&answer);
        return Ok(());
    }
    if let Some(description) = str_field(&answer, "description") {
        outln!("# {description}");
    }
    for message in answer
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        outln!("{}:", text(message, "role"));
        match message.get("content") {
            Some(content) if str_field(content, "type") == Some("text") => {
                print_text(str_field(content, "text").unwrap_or_default())
            }
            Some(content) => outln!("{}", crate::remote::call::summarize(content)),
            None => outln!("-"),
        }
    }
    Ok(())
}
