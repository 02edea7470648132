//! `switchboard call`: calls a function by hand, reading the answer as server-sent events so
//! progress is shown while the function works, then prints its result.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::cli::CallArgs;
use crate::client::{Api, ApiError};
use crate::output::{base64_decoded_len, human_bytes, print_json, str_field, terminal_safe, text};
use crate::remote::{id_of, resolve_connector, resolve_org};
use crate::sse;

/// `call CONNECTOR FUNCTION`.
pub async fn run(api: &Api, args: CallArgs) -> Result<()> {
    let arguments = arguments(args.args.as_deref(), args.args_file.as_deref())?;
    let org = resolve_org(api, args.org.org.as_deref()).await?;
    let found = resolve_connector(api, &org, &args.connector).await?;
    let function = args.function;
    let mut response = api
        .post_events(
            &[
                "connectors",
                &id_of(&found)?,
                "functions",
                &function,
                "call",
            ],
            &json!({ "arguments": arguments }),
        )
        .await?;
    let streamed = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let outcome = if streamed {
        read_events(&mut response).await?
    } else {
        // A proxy or an older server may answer with the plain JSON outcome; it is the same.
        let body = response
            .bytes()
            .await
            .context("the server's answer broke off")?;
        serde_json::from_slice(&body).context("the server's answer is not JSON")?
    };
    finish(args.output.json, &outcome, &function)
}

/// The arguments from `--args` (inline, or `-` for standard input) or `--args-file`; `{}`
/// without either. Errors name `arguments`, as the server's do.
fn arguments(inline: Option<&str>, file: Option<&Path>) -> Result<Value> {
    let (raw, source) = match (inline, file) {
        (Some("-"), _) => {
            let mut raw = String::new();
            std::io::stdin()
                .read_to_string(&mut raw)
                .context("arguments: cannot read standard input")?;
            (raw, "standard input".to_owned())
        }
        (Some(raw), _) => (raw.to_owned(), "--args".to_owned()),
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("arguments: cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(json!({})),
    };
    parse_arguments(&raw, &source)
}

fn parse_arguments(raw: &str, source: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(raw)
        .map_err(|e| anyhow!("arguments: {source} is not valid JSON ({e})"))?;
    let found = match &value {
        Value::Object(_) => return Ok(value),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    bail!("arguments: must be a JSON object such as {{\"a\": 1}}, found {found} in {source}")
}

/// Reads events until the `result` (returned) or `error` (returned as the API's error), showing
/// each `progress` event as it comes.
async fn read_events(response: &mut reqwest::Response) -> Result<Value> {
    let mut parser = sse::Parser::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| anyhow!("the server's answer broke off: {e}"))?;
        let Some(chunk) = chunk else {
            bail!("the server's answer ended before the call's result");
        };
        for event in parser.feed(&chunk) {
            match event.name.as_str() {
                "progress" => eprintln!("{}", progress_line(&event.data)),
                "result" => {
                    return serde_json::from_str(&event.data)
                        .context("the server's result is not JSON");
                }
                "error" => return Err(ApiError::from_event(&event.data).into()),
                // Events a newer server may add are not ours to interpret.
                _ => {}
            }
        }
    }
}

/// A progress number without a needless `.0`.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// `progress 2/5: message`, from a `progress` event's data.
fn progress_line(data: &str) -> String {
    let Ok(p) = serde_json::from_str::<Value>(data) else {
        return "progress".into();
    };
    let mut line = format!(
        "progress {}",
        p.get("progress")
            .and_then(Value::as_f64)
            .map_or("?".into(), number)
    );
    if let Some(total) = p.get("total").and_then(Value::as_f64) {
        line.push_str(&format!("/{}", number(total)));
    }
    if let Some(message) = str_field(&p, "message") {
        line.push_str(": ");
        line.push_str(message);
    }
    // The message is the connector server's text.
    if std::io::stderr().is_terminal() {
        terminal_safe(&line)
    } else {
        line
    }
}

/// One line standing for content that is not text.
pub fn summarize(content: &Value) -> String {
    let kind = str_field(content, "type").unwrap_or("unknown");
    let size_of = |v: &Value| -> String {
        match (
            str_field(v, "data"),
            str_field(v, "blob"),
            str_field(v, "text"),
        ) {
            (Some(b64), _, _) | (None, Some(b64), _) => human_bytes(base64_decoded_len(b64)),
            (None, None, Some(text)) => human_bytes(text.len() as u64),
            _ => "no data".into(),
        }
    };
    match kind {
        "text" => text(content, "text"),
        "image" | "audio" => format!(
            "[{kind} {}, {}]",
            text(content, "mimeType"),
            size_of(content)
        ),
        "resource_link" => format!("[resource link {}]", text(content, "uri")),
        "resource" => {
            let resource = content.get("resource").unwrap_or(&Value::Null);
            format!(
                "[resource {}, {}, {}]",
                text(resource, "uri"),
                text(resource, "mimeType"),
                size_of(resource)
            )
        }
        other => format!("[{other} content]"),
    }
}

/// The result for people: text as it is, other content summarized, then structured content.
fn render(result: &Value) -> String {
    let structured = result.get("structured").filter(|s| !s.is_null());
    let mut out = String::new();
    for item in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match (str_field(item, "type"), str_field(item, "text")) {
            // Tools with structured output are asked to repeat it as JSON text for older
            // clients (MCP 2025-06-18, "Structured Content"); printing both says it twice.
            (Some("text"), Some(t))
                if structured.is_some()
                    && serde_json::from_str::<Value>(t).ok().as_ref() == structured =>
            {
                continue;
            }
            (Some("text"), Some(t)) => out.push_str(t),
            _ => out.push_str(&summarize(item)),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    if let Some(structured) = structured {
        out.push_str(&serde_json::to_string_pretty(structured).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Prints the outcome and decides the exit: a result the tool marked as an error fails the
/// command.
fn finish(json: bool, outcome: &Value, function: &str) -> Result<()> {
    let result = outcome.get("result").unwrap_or(&Value::Null);
    let is_error = result.get("is_error").and_then(Value::as_bool) == Some(true);
    if json {
        print_json(outcome);
    } else {
        let rendered = render(result);
        // A tool's error goes where errors go, so a script capturing standard output does not
        // take it for a result.
        let terminal = if is_error {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let rendered = if terminal {
            terminal_safe(&rendered)
        } else {
            rendered
        };
        if is_error {
            eprint!("{rendered}");
        } else {
            out!("{rendered}");
        }
        if let Some(cut) = result.get("truncated").filter(|t| !t.is_null()) {
            let over = cut
                .get("original_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .saturating_sub(cut.get("limit_bytes").and_then(Value::as_u64).unwrap_or(0));
            eprintln!("(result cut: {over} bytes over the limit)");
        }
    }
    if is_error {
        bail!("{function} reported an error");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_an_object() {
        assert_eq!(
            parse_arguments(r#"{"a":1}"#, "--args").unwrap(),
            json!({"a": 1})
        );
        let e = parse_arguments("[1]", "--args").unwrap_err().to_string();
        assert!(
            e.starts_with("arguments: must be a JSON object") && e.contains("an array"),
            "{e}"
        );
        let e = parse_arguments("{a:1}", "args.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("arguments: args.json is not valid JSON"),
            "{e}"
        );
        assert_eq!(arguments(None, None).unwrap(), json!({}));
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(r#"{"progress":2.0,"total":5.0,"message":"step 2 of 5"}"#),
            "progress 2/5: step 2 of 5"
        );
        assert_eq!(
            progress_line(r#"{"progress":0.25,"total":null,"message":null}"#),
            "progress 0.25"
        );
    }

    #[test]
    fn results_are_rendered_by_kind() {
        let result = json!({
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "mimeType": "image/png", "data": "A".repeat(16384)},
                {"type": "audio", "mimeType": "audio/wav", "data": "AAAA"},
                {"type": "resource_link", "uri": "note://x", "name": "x"},
                {"type": "resource", "resource": {"uri": "note://y", "mimeType": "text/plain", "text": "abc"}},
                {"type": "hologram"}
            ],
            "structured": {"temperature": 21},
            "is_error": false,
            "truncated": null
        });
        assert_eq!(
            render(&result),
            "hello\n[image image/png, 12 KiB]\n[audio audio/wav, 3 bytes]\n[resource link note://x]\n\
             [resource note://y, text/plain, 3 bytes]\n[hologram content]\n{\n  \"temperature\": 21\n}\n"
        );
    }

    #[test]
    fn structured_content_repeated_as_text_is_printed_once() {
        let result = json!({
            "content": [
                {"type": "text", "text": "{\"city\": \"Oslo\", \"t\": 12.0}"},
                {"type": "text", "text": "a note"}
            ],
            "structured": {"t": 12.0, "city": "Oslo"}
        });
        assert_eq!(
            render(&result),
            "a note\n{\n  \"city\": \"Oslo\",\n  \"t\": 12.0\n}\n"
        );
    }

    #[test]
    fn a_tool_error_fails_the_command() {
        let outcome = json!({"result": {"content": [], "is_error": true}});
        let e = finish(false, &outcome, "add").unwrap_err().to_string();
        assert_eq!(e, "add reported an error");
        assert!(finish(false, &json!({"result": {"content": []}}), "add").is_ok());
    }
}
