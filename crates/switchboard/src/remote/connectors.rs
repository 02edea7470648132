//! `switchboard connector`: connectors, their credentials, functions and function policies. The
//! subcommands that reach a connector's server are in `engine.rs`.

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::{ConnectorCommand, CredentialArgs, FloorArg, PreferenceArg};
use crate::client::Api;
use crate::output::{Table, print_json, text, time, truncate};
use crate::prompt;
use crate::remote::loopback::{Loopback, Returned};
use crate::remote::{OrgRef, engine, id_of, resolve_connector, resolve_org};

/// Splits `Name: value` (the colon may also be an equals sign, as in curl's habit of
/// `-H Name=value` being a common slip).
fn parse_header(line: &str) -> Result<(String, String)> {
    let Some((name, value)) = line.split_once(':').or_else(|| line.split_once('=')) else {
        bail!("credential.headers: expected 'Name: value', found a line without a colon");
    };
    let name = name.trim();
    if name.is_empty() {
        bail!("credential.headers: a header line has no name");
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// The credential the flags describe, reading any secret now; `None` when none is given.
pub(crate) fn credential(args: &CredentialArgs) -> Result<Option<Value>> {
    if args.bearer {
        let token = prompt::secret("Bearer token: ", "bearer token", false)?;
        return Ok(Some(json!({ "kind": "bearer", "token": *token })));
    }
    if let Some(username) = &args.basic {
        let password = prompt::secret(&format!("Password for {username}: "), "password", false)?;
        return Ok(Some(
            json!({ "kind": "basic", "username": username, "password": *password }),
        ));
    }
    if args.header.is_empty() && !args.headers_stdin {
        return Ok(None);
    }
    let mut headers = Map::new();
    for line in &args.header {
        let (name, value) = parse_header(line)?;
        headers.insert(name, Value::String(value));
    }
    if args.headers_stdin {
        for line in prompt::stdin_lines()? {
            if line.trim().is_empty() {
                continue;
            }
            let (name, value) = parse_header(&line)?;
            headers.insert(name, Value::String(value));
        }
    }
    Ok(Some(json!({ "kind": "headers", "headers": headers })))
}

fn print_connector(json: bool, c: &Value) {
    if json {
        print_json(c);
        return;
    }
    Table::details(vec![
        ("name", text(c, "name")),
        ("url", text(c, "url")),
        ("description", text(c, "description")),
        ("status", text(c, "status")),
        ("last error", text(c, "last_error")),
        ("auth", text(c, "auth_method")),
        ("credential", text(c, "has_credential")),
        ("credential held by", text(c, "credential_scope")),
        ("transport", text(c, "transport")),
        ("protocol", text(c, "protocol_version")),
        ("created", time(c, "created_at")),
        ("updated", time(c, "updated_at")),
        ("id", text(c, "id")),
    ])
    .print();
}

/// `connector ...`.
pub async fn run(
    api: &Api,
    json: bool,
    org: Option<&str>,
    command: ConnectorCommand,
) -> Result<()> {
    let org = resolve_org(api, org).await?;
    match command {
        ConnectorCommand::List => list(api, json, &org).await,
        ConnectorCommand::Add {
            name,
            url,
            description,
            per_member,
            auth,
            credential: cred,
        } => {
            let mut body = json!({ "name": name, "url": url });
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            if per_member {
                body["credential_scope"] = json!("member");
            }
            if let Some(auth) = auth {
                body["auth_method"] = json!(auth.as_str());
            }
            if let Some(cred) = credential(&cred)? {
                body["credential"] = cred;
            }
            let created = api.post(&["orgs", &org.id, "connectors"], &body).await?;
            if !json {
                outln!(
                    "added the connector {} to {}",
                    text(&created, "name"),
                    org.slug
                );
            }
            print_connector(json, &created);
            Ok(())
        }
        ConnectorCommand::Show { connector } => {
            let found = resolve_connector(api, &org, &connector).await?;
            let shown = api.get(&["connectors", &id_of(&found)?]).await?;
            print_connector(json, &shown);
            Ok(())
        }
        ConnectorCommand::Edit {
            connector,
            name,
            url,
            description,
            clear_description,
            remove_credential,
            credential: cred,
            auth,
            per_member,
            shared,
        } => {
            let found = resolve_connector(api, &org, &connector).await?;
            let mut patch = Map::new();
            if let Some(name) = name {
                patch.insert("name".into(), json!(name));
            }
            if let Some(url) = url {
                patch.insert("url".into(), json!(url));
            }
            if let Some(description) = description {
                patch.insert("description".into(), json!(description));
            }
            if clear_description {
                patch.insert("description".into(), Value::Null);
            }
            if remove_credential {
                patch.insert("credential".into(), Value::Null);
            } else if let Some(cred) = credential(&cred)? {
                patch.insert("credential".into(), cred);
            }
            if let Some(auth) = auth {
                patch.insert("auth_method".into(), json!(auth.as_str()));
            }
            if per_member {
                patch.insert("credential_scope".into(), json!("member"));
            } else if shared {
                patch.insert("credential_scope".into(), json!("shared"));
            }
            if patch.is_empty() {
                bail!(
                    "nothing to change; give at least one of --name, --url, --description, --clear-description, a credential, --remove-credential, --auth, --per-member or --shared"
                );
            }
            let changed = api
                .patch(&["connectors", &id_of(&found)?], &Value::Object(patch))
                .await?;
            if !json {
                outln!("changed the connector {}", text(&changed, "name"));
            }
            print_connector(json, &changed);
            Ok(())
        }
        ConnectorCommand::Rm { connector, yes } => {
            let found = resolve_connector(api, &org, &connector).await?;
            let name = text(&found, "name");
            if !yes {
                if !prompt::interactive() {
                    bail!("deleting a connector needs --yes when standard input is not a terminal");
                }
                let question = format!(
                    "Delete the connector {name} with its functions, policies and credentials?"
                );
                if !prompt::confirm(&question)? {
                    bail!("nothing deleted");
                }
            }
            api.delete(&["connectors", &id_of(&found)?]).await?;
            if json {
                print_json(&json!({ "deleted": found }));
            } else {
                outln!("deleted the connector {name}");
            }
            Ok(())
        }
        ConnectorCommand::Enable { connector } => {
            set_enabled(api, json, &org, &connector, true).await
        }
        ConnectorCommand::Disable { connector } => {
            set_enabled(api, json, &org, &connector, false).await
        }
        ConnectorCommand::Functions { connector } => {
            let found = resolve_connector(api, &org, &connector).await?;
            let functions = api
                .list_all(&["connectors", &id_of(&found)?, "functions"])
                .await?;
            if json {
                print_json(&Value::Array(functions));
                return Ok(());
            }
            let mut table = Table::new(&[
                "function",
                "review",
                "floor",
                "your preference",
                "decision",
                "because",
                "description",
            ]);
            for f in &functions {
                table.row(vec![
                    text(f, "name"),
                    text(f, "review_state"),
                    text(f, "floor"),
                    text(f, "preference"),
                    text(f, "decision.outcome"),
                    text(f, "decision.rule"),
                    truncate(&text(f, "description"), 60),
                ]);
            }
            table.print_or(&format!(
                "the connector {} has no functions yet",
                text(&found, "name")
            ));
            Ok(())
        }
        ConnectorCommand::Floor {
            connector,
            function,
            floor,
        } => {
            let found = resolve_connector(api, &org, &connector).await?;
            let floor = match floor {
                FloorArg::Allowed => "allowed",
                FloorArg::Ask => "ask",
                FloorArg::Blocked => "blocked",
            };
            let id = id_of(&found)?;
            let info = api
                .put(
                    &["connectors", &id, "functions", &function, "floor"],
                    &json!({ "floor": floor }),
                )
                .await?;
            print_function(
                json,
                &info,
                &format!(
                    "the floor of {}.{function} is now {floor}",
                    text(&found, "name")
                ),
            );
            Ok(())
        }
        ConnectorCommand::Prefer {
            connector,
            function,
            preference,
        } => {
            let found = resolve_connector(api, &org, &connector).await?;
            let preference = match preference {
                PreferenceArg::Always => json!("always"),
                PreferenceArg::Ask => json!("ask"),
                PreferenceArg::Never => json!("never"),
                PreferenceArg::Clear => Value::Null,
            };
            let id = id_of(&found)?;
            let info = api
                .put(
                    &["connectors", &id, "functions", &function, "preference"],
                    &json!({ "preference": preference }),
                )
                .await?;
            let said = match preference.as_str() {
                Some(p) => format!(
                    "your preference for {}.{function} is now {p}",
                    text(&found, "name")
                ),
                None => format!(
                    "your preference for {}.{function} is cleared",
                    text(&found, "name")
                ),
            };
            print_function(json, &info, &said);
            Ok(())
        }
        ConnectorCommand::Test { connector } => engine::test(api, json, &org, &connector).await,
        ConnectorCommand::Connect {
            connector,
            open,
            loopback,
            timeout,
        } => connect(api, json, &org, &connector, open, loopback || open, timeout).await,
        ConnectorCommand::Disconnect { connector } => {
            let found = resolve_connector(api, &org, &connector).await?;
            api.delete(&["connectors", &id_of(&found)?, "authorization"])
                .await?;
            if !json {
                outln!("disconnected {connector}; its tokens were revoked and deleted");
            }
            Ok(())
        }
        ConnectorCommand::MyCredential {
            connector,
            remove,
            credential: cred,
        } => {
            let found = resolve_connector(api, &org, &connector).await?;
            let id = id_of(&found)?;
            if remove {
                api.delete(&["connectors", &id, "credential"]).await?;
                if !json {
                    outln!("removed your credential for {connector}");
                }
                return Ok(());
            }
            let Some(body) = credential(&cred)? else {
                bail!(
                    "give a credential (--bearer, --basic USER, --header or --headers-stdin), or --remove"
                );
            };
            api.put(&["connectors", &id, "credential"], &body).await?;
            if !json {
                outln!("set your credential for {connector}");
            }
            Ok(())
        }
        ConnectorCommand::Refresh { connector } => {
            engine::refresh(api, json, &org, &connector).await
        }
        ConnectorCommand::Diff {
            connector,
            function,
        } => engine::diff(api, json, &org, &connector, &function).await,
        ConnectorCommand::Approve {
            connector,
            function,
            hash,
            yes,
        } => engine::approve(api, json, &org, &connector, &function, hash, yes).await,
        ConnectorCommand::Resources { connector } => {
            engine::resources(api, json, &org, &connector).await
        }
        ConnectorCommand::Read { connector, uri } => {
            engine::read(api, json, &org, &connector, &uri).await
        }
        ConnectorCommand::Prompts { connector } => {
            engine::prompts(api, json, &org, &connector).await
        }
        ConnectorCommand::Prompt {
            connector,
            prompt,
            args,
        } => engine::prompt(api, json, &org, &connector, &prompt, args).await,
    }
}

fn print_function(json: bool, info: &Value, said: &str) {
    if json {
        print_json(info);
    } else if info.get("decision").is_some() {
        outln!(
            "{said}; a call would now be {} ({})",
            text(info, "decision.outcome"),
            text(info, "decision.rule")
        );
    } else {
        outln!("{said}");
    }
}

async fn list(api: &Api, json: bool, org: &OrgRef) -> Result<()> {
    let connectors = api.list_all(&["orgs", &org.id, "connectors"]).await?;
    if json {
        print_json(&Value::Array(connectors));
        return Ok(());
    }
    let mut table = Table::new(&["name", "status", "auth", "url", "description"]);
    for c in &connectors {
        table.row(vec![
            text(c, "name"),
            text(c, "status"),
            text(c, "auth_method"),
            text(c, "url"),
            truncate(&text(c, "description"), 50),
        ]);
    }
    table.print_or(&format!("the organization {} has no connectors", org.slug));
    Ok(())
}

async fn set_enabled(
    api: &Api,
    json: bool,
    org: &OrgRef,
    connector: &str,
    enabled: bool,
) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let action = if enabled { "enable" } else { "disable" };
    let changed = api
        .post(&["connectors", &id_of(&found)?, action], &json!({}))
        .await?;
    if json {
        print_json(&changed);
    } else {
        outln!(
            "{} is now {}",
            text(&found, "name"),
            text(&changed, "status")
        );
    }
    Ok(())
}

/// `connector connect`: starts the authorization, shows (or opens) the link, and waits until
/// the grant is stored or the wait runs out. With `loopback` the browser also comes back to
/// this command at a loopback address (see `loopback.rs`), which ends the wait at once;
/// either way the grant is confirmed with the API before it is reported.
async fn connect(
    api: &Api,
    json: bool,
    org: &OrgRef,
    connector: &str,
    open: bool,
    loopback: bool,
    timeout: u64,
) -> Result<()> {
    let found = resolve_connector(api, org, connector).await?;
    let id = id_of(&found)?;
    let before = api.get(&["connectors", &id, "authorization"]).await?;
    let mut listener = if loopback {
        Some(Loopback::bind(&text(&found, "name")).await?)
    } else {
        None
    };
    let mut body = json!({});
    if let Some(listener) = &listener {
        body["return_to"] = json!(listener.url());
    }
    let started = api.post(&["connectors", &id, "authorize"], &body).await?;
    let url = text(&started, "url");
    if json {
        outln!("{started}");
    } else {
        eprintln!(
            "Open this link in a browser to connect {connector} (it works once):\n\n    {url}\n"
        );
    }
    if open && let Err(e) = open_in_browser(&url) {
        eprintln!("could not open a browser ({e}); open the link by hand");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let spinner = crate::spinner::Spinner::start("waiting for the authorization to complete");
    let connected = |now: &Value| {
        now.get("updated_at") != before.get("updated_at")
            && now.get("connected") == Some(&Value::Bool(true))
    };
    let status = loop {
        tokio::select! {
            returned = next_return(&mut listener) => match returned {
                Some(Returned::Connected) => {
                    let now = api.get(&["connectors", &id, "authorization"]).await?;
                    if connected(&now) {
                        break now;
                    }
                }
                Some(Returned::Failed(why)) => {
                    drop(spinner);
                    bail!("the authorization of {connector} failed: {why}");
                }
                // The listener stopped: asking the server is left.
                None => listener = None,
            },
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                let now = api.get(&["connectors", &id, "authorization"]).await?;
                if connected(&now) {
                    // The server may have seen the grant a moment before the browser follows
                    // its redirect here: give the browser its page rather than a closed port.
                    if let Some(listener) = &mut listener {
                        let _ = tokio::time::timeout(BROWSER_GRACE, listener.next()).await;
                    }
                    break now;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                drop(spinner);
                bail!(
                    "the authorization did not complete within {timeout} seconds; run the command again"
                );
            }
        }
    };
    drop(spinner);
    if json {
        outln!("{status}");
    } else {
        let whose = match status.get("holder").and_then(Value::as_str) {
            Some("member") => " to your account",
            _ => " for the organization",
        };
        outln!("connected {connector}{whose}");
    }
    Ok(())
}

/// How long a command that learned of the grant from the server waits for the browser to
/// arrive at its loopback listener.
const BROWSER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The next outcome the browser brings to the loopback listener; never, without one.
async fn next_return(listener: &mut Option<Loopback>) -> Option<Returned> {
    match listener {
        Some(listener) => listener.next().await,
        None => std::future::pending().await,
    }
}

/// Opens `url` with the desktop's default handler.
fn open_in_browser(url: &str) -> std::io::Result<()> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines() {
        assert_eq!(
            parse_header("X-Api-Key: abc:def").unwrap(),
            ("X-Api-Key".into(), "abc:def".into())
        );
        assert_eq!(
            parse_header("X-Key=v").unwrap(),
            ("X-Key".into(), "v".into())
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header(": v").is_err());
    }
}
