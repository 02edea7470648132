//! `switchboard audit`: reading and exporting the organization's audit log.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use switchboard_domain::Timestamp;

use crate::cli::{AuditCommand, AuditFilterArgs};
use crate::client::{Api, split_page};
use crate::output::{Table, print_json, str_field, text, time, truncate};
use crate::remote::{OrgRef, resolve_org};

/// Reads `--since`/`--until`: RFC 3339, or an age like `30m`, `24h`, `7d` counted back from now.
fn parse_time(flag: &str, raw: &str, now: Timestamp) -> Result<Timestamp> {
    let raw = raw.trim();
    if let Ok(t) = Timestamp::parse_rfc3339(raw) {
        return Ok(t);
    }
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds > 0 && !number.is_empty() => {
            Ok(now.plus_seconds(-n.saturating_mul(seconds)))
        }
        _ => bail!(
            "{flag}: expected an RFC 3339 time such as 2026-01-31T12:00:00Z or an age such as 30m, 24h or 7d, found {raw:?}"
        ),
    }
}

fn now() -> Timestamp {
    switchboard_store::now()
}

/// The filter as query parameters, with `--actor` resolved from an email to a user id.
async fn filter_query(
    api: &Api,
    org: &OrgRef,
    filter: &AuditFilterArgs,
) -> Result<Vec<(&'static str, String)>> {
    let mut query = Vec::new();
    if let Some(action) = &filter.action {
        query.push(("action", action.clone()));
    }
    if let Some(actor) = &filter.actor {
        let id = if actor.contains('@') {
            let members = api.list_all(&["orgs", &org.id, "members"]).await?;
            members
                .iter()
                .find(|m| str_field(m, "email").is_some_and(|e| e.eq_ignore_ascii_case(actor)))
                .and_then(|m| str_field(m, "user_id"))
                .map(str::to_owned)
                .with_context(|| format!("actor: {actor:?} is not a member of {}", org.slug))?
        } else {
            actor.clone()
        };
        query.push(("actor", id));
    }
    let now = now();
    if let Some(since) = &filter.since {
        query.push(("since", parse_time("since", since, now)?.to_rfc3339()));
    }
    if let Some(until) = &filter.until {
        query.push(("until", parse_time("until", until, now)?.to_rfc3339()));
    }
    Ok(query)
}

/// Whether an exported event passes the filter. The server filters too; checking here as well
/// means an export never holds more than was asked for, whatever the server supports.
fn matches(event: &Value, query: &[(&str, String)]) -> bool {
    let created = str_field(event, "created_at").and_then(|t| Timestamp::parse_rfc3339(t).ok());
    query.iter().all(|(key, wanted)| match *key {
        "action" => str_field(event, "action") == Some(wanted.as_str()),
        "actor" => str_field(event, "actor_id") == Some(wanted.as_str()),
        "since" => match (created, Timestamp::parse_rfc3339(wanted)) {
            (Some(c), Ok(w)) => c >= w,
            _ => true,
        },
        "until" => match (created, Timestamp::parse_rfc3339(wanted)) {
            (Some(c), Ok(w)) => c < w,
            _ => true,
        },
        _ => true,
    })
}

/// `audit ...`.
pub async fn run(api: &Api, json: bool, org: Option<&str>, command: AuditCommand) -> Result<()> {
    let org = resolve_org(api, org).await?;
    match command {
        AuditCommand::List {
            filter,
            limit,
            cursor,
        } => {
            let mut query = filter_query(api, &org, &filter).await?;
            query.push(("limit", limit.to_string()));
            if let Some(cursor) = cursor {
                query.push(("cursor", cursor));
            }
            let page = api.get_query(&["orgs", &org.id, "audit"], &query).await?;
            if json {
                print_json(&page);
                return Ok(());
            }
            let (events, next) = split_page(page)?;
            // Show who acted by email rather than by id; the member list has them all, except
            // for people who have since left.
            let members = api
                .list_all(&["orgs", &org.id, "members"])
                .await
                .unwrap_or_default();
            let emails: HashMap<&str, &str> = members
                .iter()
                .filter_map(|m| Some((str_field(m, "user_id")?, str_field(m, "email")?)))
                .collect();
            let mut table = Table::new(&["time", "action", "actor", "target", "detail"]);
            for e in &events {
                let actor = str_field(e, "actor_id").map_or_else(
                    || "-".to_owned(),
                    |id| emails.get(id).map_or(id, |m| m).to_string(),
                );
                let detail = match e.get("detail") {
                    None | Some(Value::Null) => "-".to_owned(),
                    Some(d) => d.to_string(),
                };
                table.row(vec![
                    time(e, "created_at"),
                    text(e, "action"),
                    actor,
                    text(e, "target"),
                    truncate(&detail, 70),
                ]);
            }
            table.print_or("no matching events");
            if let Some(next) = next {
                eprintln!("more: --cursor {next}");
            }
            Ok(())
        }
        AuditCommand::Export { filter, output } => {
            let query = filter_query(api, &org, &filter).await?;
            let mut response = api
                .stream(&["orgs", &org.id, "audit", "export"], &query)
                .await?;
            let mut sink: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(crate::output::Stdout)),
            };
            // Lines can span chunks, so bytes wait here until their line ends.
            let mut pending: Vec<u8> = Vec::new();
            let mut written = 0u64;
            let mut emit = |line: &[u8], sink: &mut dyn Write| -> Result<()> {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                let event: Value = serde_json::from_slice(line)
                    .context("the export holds a line that is not JSON")?;
                if matches(&event, &query) {
                    sink.write_all(line)?;
                    sink.write_all(b"\n")?;
                    written += 1;
                }
                Ok(())
            };
            while let Some(chunk) = response.chunk().await.context("the export broke off")? {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    emit(&line[..line.len() - 1], &mut *sink)?;
                }
            }
            emit(&pending, &mut *sink)?;
            sink.flush()?;
            if let Some(path) = output {
                eprintln!("exported {written} events to {}", path.display());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn times_and_ages() {
        let now = Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap();
        assert_eq!(
            parse_time("since", "24h", now).unwrap().to_rfc3339(),
            "2026-01-31T00:00:00Z"
        );
        assert_eq!(
            parse_time("since", "7d", now).unwrap().to_rfc3339(),
            "2026-01-25T00:00:00Z"
        );
        assert_eq!(
            parse_time("since", "2026-01-01T10:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-01-01T10:00:00Z"
        );
        for bad in ["", "h", "24", "3y", "yesterday"] {
            assert!(parse_time("since", bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn export_filter() {
        let event =
            json!({"action": "login", "actor_id": "u1", "created_at": "2026-01-02T00:00:00Z"});
        assert!(matches(
            &event,
            &[("action", "login".into()), ("actor", "u1".into())]
        ));
        assert!(!matches(&event, &[("action", "logout".into())]));
        assert!(matches(
            &event,
            &[
                ("since", "2026-01-01T00:00:00Z".into()),
                ("until", "2026-01-03T00:00:00Z".into())
            ]
        ));
        assert!(!matches(
            &event,
            &[("since", "2026-01-03T00:00:00Z".into())]
        ));
    }
}
