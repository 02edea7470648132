//! Calling a function, reading a resource, getting a prompt, completing an argument.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, CompleteRequestParams, ContentBlock, GetPromptRequestParams, InputRequest,
    InputRequiredResult, InputResponses, JsonObject, ReadResourceRequestParams, ServerResult,
    TextContent,
};
use rmcp::service::PeerRequestOptions;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{ConnectError, Result};
use crate::handler::{
    CallRegistration, Progress, ServerRequests, elicitation_from_protocol, elicitation_to_protocol,
    progress_token_key,
};
use crate::session::{Session, describe};

/// How one call runs.
#[derive(Clone)]
pub struct CallOptions {
    /// Longest wait for the result; the server is told to cancel when it passes.
    pub timeout: Duration,
    /// Where progress updates go, if anyone listens.
    pub progress: Option<mpsc::UnboundedSender<Progress>>,
    /// Cancelled by the caller to abandon the call; the server is told.
    pub cancel: CancellationToken,
    /// Who answers the server's elicitation and sampling requests during this call; the
    /// engine's default handler when `None`.
    pub handler: Option<Arc<dyn ServerRequests>>,
    /// Results larger than this (serialized) are cut.
    pub max_result_bytes: usize,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            progress: None,
            cancel: CancellationToken::new(),
            handler: None,
            max_result_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How much of a result was cut.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truncation {
    /// The result's size before cutting, in bytes of JSON.
    pub original_bytes: usize,
    /// The limit it was cut to.
    pub limit_bytes: usize,
}

/// A function's result. A result with `is_error` is the tool reporting failure (the model
/// should see it), not a transport failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolResult {
    /// Every content item as the protocol's JSON: text, image, audio, resource links and
    /// embedded resources alike.
    pub content: Vec<Value>,
    /// Structured content, if the tool returned it.
    pub structured: Option<Value>,
    /// Whether the tool reported an error.
    pub is_error: bool,
    /// Set when the result was cut to the size limit.
    pub truncated: Option<Truncation>,
}

/// Rounds of "input required" answered before giving up on a call (2026-07-28).
const MAX_INPUT_ROUNDS: usize = 8;

/// Turns an rmcp service error into ours.
pub(crate) fn service_error(e: rmcp::ServiceError) -> ConnectError {
    // A 401 or 403 on an open session (a token that expired, a step-up for more scope) must
    // reach the caller with its challenge, not as a lost connection.
    if let rmcp::ServiceError::TransportSend(inner) = &e
        && let Some(auth) = ConnectError::auth_failure_in(inner)
    {
        return auth;
    }
    match e {
        rmcp::ServiceError::McpError(data) => ConnectError::Server(data.message.to_string()),
        rmcp::ServiceError::Timeout { timeout } => ConnectError::Timeout(timeout.as_secs()),
        rmcp::ServiceError::TransportClosed => {
            ConnectError::Disconnected("the transport closed".into())
        }
        rmcp::ServiceError::UnexpectedResponse => {
            ConnectError::Protocol("unexpected response".into())
        }
        rmcp::ServiceError::Cancelled { .. } => ConnectError::Cancelled,
        other => ConnectError::Disconnected(describe(&other)),
    }
}

/// A compiled input schema and the schema it was compiled from.
struct Compiled {
    schema: Value,
    /// `None` remembers a schema that cannot be compiled.
    validator: Option<Arc<jsonschema::Validator>>,
}

/// Compiled input schemas. Compiling a JSON Schema costs far more than checking arguments
/// against it, and a connector's schemas rarely change, so each is compiled once.
///
/// A call brings its schema as a value (the pinned definition, read for that call), so the
/// cache is searched by a hash of the schema's structure and a hit is confirmed by comparing
/// the schema itself: both are far cheaper than writing the schema out as text to name it,
/// and the comparison means two schemas that merely hash alike never share a validator.
type ValidatorCache = std::sync::Mutex<std::collections::HashMap<u64, Vec<Compiled>>>;

fn validators() -> &'static ValidatorCache {
    static CACHE: std::sync::OnceLock<ValidatorCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Most schemas kept compiled; past this the cache starts over rather than grow without bound.
const MAX_CACHED_VALIDATORS: usize = 4096;

/// Hashes a JSON value by its structure: what `==` compares, so equal values hash alike.
fn hash_json(value: &Value, hasher: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match value {
        Value::Null => hasher.write_u8(0),
        Value::Bool(b) => {
            hasher.write_u8(1);
            b.hash(hasher);
        }
        Value::Number(n) => {
            hasher.write_u8(2);
            n.hash(hasher);
        }
        Value::String(s) => {
            hasher.write_u8(3);
            s.hash(hasher);
        }
        Value::Array(items) => {
            hasher.write_u8(4);
            hasher.write_usize(items.len());
            for item in items {
                hash_json(item, hasher);
            }
        }
        Value::Object(map) => {
            hasher.write_u8(5);
            hasher.write_usize(map.len());
            for (key, item) in map {
                key.hash(hasher);
                hash_json(item, hasher);
            }
        }
    }
}

fn validator(schema: &Value) -> Option<Arc<jsonschema::Validator>> {
    let key = {
        let mut hasher = std::hash::DefaultHasher::new();
        hash_json(schema, &mut hasher);
        std::hash::Hasher::finish(&hasher)
    };
    if let Some(hit) = validators()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .and_then(|bucket| bucket.iter().find(|c| c.schema == *schema))
    {
        return hit.validator.clone();
    }
    // A schema that cannot be compiled (an unknown dialect, a `$ref` to the network, which is
    // never fetched) cannot be checked here; the server still validates what it receives.
    let compiled = match jsonschema::validator_for(schema) {
        Ok(v) => Some(Arc::new(v)),
        Err(e) => {
            tracing::warn!(error = %e, "a function's input schema cannot be compiled; its arguments go unchecked");
            None
        }
    };
    let mut cache = validators().lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_CACHED_VALIDATORS {
        cache.clear();
    }
    let bucket = cache.entry(key).or_default();
    // Another caller may have compiled the same schema meanwhile.
    if !bucket.iter().any(|c| c.schema == *schema) {
        bucket.push(Compiled {
            schema: schema.clone(),
            validator: compiled.clone(),
        });
    }
    compiled
}

/// Checks arguments against a tool's input schema before anything is sent.
pub fn check_arguments(schema: &Value, arguments: &Value) -> Result<()> {
    if !arguments.is_object() {
        return Err(ConnectError::InvalidArguments(
            "the arguments must be a JSON object".into(),
        ));
    }
    let Some(validator) = validator(schema) else {
        return Ok(());
    };
    // Nearly every call is valid, and the yes-or-no check allocates nothing; the errors are
    // collected only for a call that will be refused.
    if validator.is_valid(arguments) {
        return Ok(());
    }
    let problems: Vec<String> = validator
        .iter_errors(arguments)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("at {at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConnectError::InvalidArguments(problems.join("; ")))
    }
}

/// Calls a tool: progress is forwarded, the caller can cancel, the server is told when the
/// call is abandoned, "input required" rounds are answered, and the result is cut to size.
///
/// This runs on every call, so the request is built typed rather than through JSON, and the
/// result is only turned into JSON item by item.
pub(crate) async fn call_tool(
    session: &Session,
    name: &str,
    arguments: JsonObject,
    options: CallOptions,
) -> Result<ToolResult> {
    let mut registration = CallRegistration::new(
        &session.handler.0,
        session.call_id(),
        options.handler.clone(),
    );
    let mut params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
    for _ in 0..MAX_INPUT_ROUNDS {
        // A round that answers "input required" sends the same call again with the answers,
        // so each round sends a copy.
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params.clone()));
        let handle = session
            .peer
            .send_cancellable_request(request, PeerRequestOptions::with_timeout(options.timeout))
            .await
            .map_err(service_error)?;
        if let Some(tx) = &options.progress {
            let token = progress_token_key(
                &serde_json::to_value(&handle.progress_token).unwrap_or(Value::Null),
            );
            registration.progress(token, tx.clone());
        }
        let id = handle.id.clone();
        let result = tokio::select! {
            result = handle.await_response() => result.map_err(service_error)?,
            () = options.cancel.cancelled() => {
                let note = CancelledNotificationParam::new(
                    Some(id),
                    Some("cancelled by the caller".to_owned()),
                );
                let _ = session.peer.notify_cancelled(note).await;
                return Err(ConnectError::Cancelled);
            }
        };
        match result {
            ServerResult::CallToolResult(result) => {
                return Ok(cut(result, options.max_result_bytes));
            }
            ServerResult::InputRequiredResult(input) => {
                let handler = options
                    .handler
                    .as_deref()
                    .unwrap_or(&*session.handler.0.default);
                let (responses, state) = answer_input(handler, input).await?;
                // SEP-2322: the state is echoed exactly as received, and left out when the
                // server sent none.
                params.input_responses = Some(responses);
                params.request_state = state;
            }
            _ => {
                return Err(ConnectError::Protocol(
                    "the server answered a call with something else".into(),
                ));
            }
        }
    }
    Err(ConnectError::Protocol(format!(
        "the server asked for input more than {MAX_INPUT_ROUNDS} times"
    )))
}

/// Answers the requests inside an "input required" result (2026-07-28) with the call's handler.
async fn answer_input(
    handler: &dyn ServerRequests,
    input: InputRequiredResult,
) -> Result<(InputResponses, Option<String>)> {
    let mut responses = InputResponses::new();
    for (key, request) in input.input_requests.unwrap_or_default() {
        let answer = match request {
            InputRequest::Elicitation(r) => {
                let params = serde_json::to_value(&r.params).unwrap_or(Value::Null);
                elicitation_to_protocol(&handler.elicit(elicitation_from_protocol(&params)).await)
            }
            InputRequest::CreateMessage(r) => {
                let params = serde_json::to_value(&r.params).unwrap_or(Value::Null);
                handler.sample(params).await.map_err(ConnectError::Server)?
            }
            InputRequest::ListRoots(_) => json!({ "roots": handler.roots().await }),
            _ => {
                return Err(ConnectError::Protocol(
                    "the server asked for a kind of input Switchboard does not know".into(),
                ));
            }
        };
        responses.insert(key, answer);
    }
    Ok((responses, input.request_state))
}

/// Counts the bytes written to it: the size of a value's JSON without building the JSON.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value`'s JSON in bytes; `usize::MAX` for a value that cannot be written,
/// which therefore never fits.
fn json_size<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut count = ByteCount(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// An upper bound of the length of `value`'s JSON, found without writing out its strings: a
/// byte of a string takes at most six bytes (a `\u00XX` escape). Numbers are measured.
fn json_size_bound(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(n) => json_size(n),
        Value::String(s) => 2 + 6 * s.len(),
        Value::Array(items) => 2 + items.iter().map(|v| json_size_bound(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| 4 + 6 * k.len() + json_size_bound(v))
                .sum::<usize>()
        }
    }
}

/// Room for the fixed parts of a result's JSON: its braces, field names and `isError`.
const RESULT_ENVELOPE_BYTES: usize = 128;

/// Room for the fixed parts of a text item's JSON: `{"type":"text","text":""}`.
const TEXT_ITEM_BYTES: usize = 32;

/// Whether an item is plain text, with neither annotations nor `_meta`: nearly every item,
/// and one whose JSON follows from its text alone.
fn plain_text(item: &ContentBlock) -> Option<&TextContent> {
    match item {
        ContentBlock::Text(t) if t.annotations.is_none() && t.meta.is_none() => Some(t),
        _ => None,
    }
}

/// An upper bound of a content item's JSON length: plain text is bounded by its length,
/// other items are measured.
fn content_size_bound(item: &ContentBlock) -> usize {
    match plain_text(item) {
        Some(t) => TEXT_ITEM_BYTES + 6 * t.text.len(),
        None => json_size(item),
    }
}

/// A content item as the protocol's JSON. Plain text moves its text into the value rather
/// than copy it, which matters for large results.
fn content_value(item: ContentBlock) -> Value {
    match item {
        ContentBlock::Text(t) if t.annotations.is_none() && t.meta.is_none() => {
            let mut map = serde_json::Map::new();
            map.insert("type".into(), Value::String("text".into()));
            map.insert("text".into(), Value::String(t.text));
            Value::Object(map)
        }
        other => serde_json::to_value(&other).unwrap_or(Value::Null),
    }
}

/// Turns a result into ours, cut to `limit` bytes of JSON: content items are kept in order
/// while they fit, a text item that crosses the limit is shortened, later items are dropped.
///
/// A result is measured exactly only when a bound of its size does not already show it fits:
/// nearly every result is far below the limit and is never written out just to be measured.
pub(crate) fn cut(result: CallToolResult, limit: usize) -> ToolResult {
    let bound = RESULT_ENVELOPE_BYTES
        + result
            .content
            .iter()
            .map(|item| content_size_bound(item) + 1)
            .sum::<usize>()
        + result
            .structured_content
            .as_ref()
            .map_or(0, json_size_bound)
        + json_size(&result.result_type)
        + json_size(&result.meta);
    let original = (bound > limit)
        .then(|| json_size(&result))
        .filter(|&size| size > limit);
    let is_error = result.is_error.unwrap_or(false);
    let mut structured = result.structured_content.filter(|v| !v.is_null());
    let content = result.content.into_iter().map(content_value);
    let Some(original) = original else {
        return ToolResult {
            content: content.collect(),
            structured,
            is_error,
            truncated: None,
        };
    };
    let mut budget = limit;
    let mut kept = Vec::new();
    for mut item in content {
        let size = json_size(&item);
        if size <= budget {
            budget -= size;
            kept.push(item);
            continue;
        }
        if let Some(text) = item.get("text").and_then(Value::as_str) {
            // Room for the item's other fields.
            let room = budget.saturating_sub(64);
            let mut end = room.min(text.len());
            while end > 0 && !text.is_char_boundary(end) {
                end -= 1;
            }
            if end > 0 {
                item["text"] = Value::String(text[..end].to_owned());
                kept.push(item);
            }
        }
        break;
    }
    if structured.as_ref().is_some_and(|s| json_size(s) > budget) {
        structured = None;
    }
    ToolResult {
        content: kept,
        structured,
        is_error,
        truncated: Some(Truncation {
            original_bytes: original,
            limit_bytes: limit,
        }),
    }
}

/// Reads a resource; returns its contents as the protocol's JSON.
pub(crate) async fn read_resource(session: &Session, uri: &str) -> Result<Vec<Value>> {
    let params: ReadResourceRequestParams = serde_json::from_value(json!({ "uri": uri }))
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let result = session
        .peer
        .read_resource(params)
        .await
        .map_err(service_error)?;
    Ok(result
        .contents
        .iter()
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect())
}

/// Gets a prompt with its arguments; returns the protocol's `GetPromptResult` JSON.
pub(crate) async fn get_prompt(session: &Session, name: &str, arguments: Value) -> Result<Value> {
    let params: GetPromptRequestParams =
        serde_json::from_value(json!({ "name": name, "arguments": arguments })).map_err(|e| {
            ConnectError::InvalidArguments(format!(
                "prompt arguments must be an object of strings: {e}"
            ))
        })?;
    let result = session
        .peer
        .get_prompt(params)
        .await
        .map_err(service_error)?;
    serde_json::to_value(result).map_err(|e| ConnectError::Protocol(e.to_string()))
}

/// Asks the server to complete an argument value. `reference` is the protocol's `ref` object
/// (`{"type": "ref/prompt", "name": …}` or `{"type": "ref/resource", "uri": …}`).
pub(crate) async fn complete(
    session: &Session,
    reference: Value,
    argument: &str,
    value: &str,
) -> Result<Vec<String>> {
    let params: CompleteRequestParams = serde_json::from_value(json!({
        "ref": reference, "argument": { "name": argument, "value": value }
    }))
    .map_err(|e| {
        ConnectError::InvalidArguments(format!("cannot build the completion request: {e}"))
    })?;
    let result = session.peer.complete(params).await.map_err(service_error)?;
    Ok(result.completion.values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let schema =
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
        assert!(check_arguments(&schema, &json!({"a": 1})).is_ok());
        let e = check_arguments(&schema, &json!({"a": "one"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/a"), "{e}");
        assert!(
            check_arguments(&schema, &json!({}))
                .unwrap_err()
                .to_string()
                .contains("required")
        );
        assert!(check_arguments(&schema, &json!([1])).is_err());
    }

    #[test]
    fn sizes_are_those_of_the_json() {
        let value = json!({"content": [{"type": "text", "text": "é \"quoted\" \n"}], "n": 1.5});
        assert_eq!(json_size(&value), serde_json::to_vec(&value).unwrap().len());
    }

    #[test]
    fn size_bounds_are_never_below_the_size() {
        let values = [
            json!(null),
            json!(true),
            json!(-1.7976931348623157e308),
            json!(i64::MIN),
            json!(u64::MAX),
            json!("\u{1} é \"\\ \n"),
            json!({"a\u{7}": [1, "x", {"b": null}], "": {}}),
        ];
        for value in values {
            let exact = serde_json::to_vec(&value).unwrap().len();
            assert!(json_size_bound(&value) >= exact, "{value}");
        }
    }

    #[test]
    fn a_result_is_cut_at_its_exact_size_not_at_its_bound() {
        // Quotes are escaped, so the bound of this text is far above its size.
        let text = "\"".repeat(100);
        let result: CallToolResult =
            serde_json::from_value(json!({"content": [{"type": "text", "text": text}]})).unwrap();
        let exact = json_size(&result);
        assert!(json_size_bound(&json!(text)) > exact);
        assert_eq!(cut(result.clone(), exact).truncated, None);
        let cut_result = cut(result, exact - 1);
        assert_eq!(
            cut_result.truncated,
            Some(Truncation {
                original_bytes: exact,
                limit_bytes: exact - 1
            })
        );
    }

    #[test]
    fn text_items_become_the_same_json_either_way() {
        let items: Vec<ContentBlock> = serde_json::from_value(json!([
            {"type": "text", "text": "plain \"text\""},
            {"type": "text", "text": "noted", "annotations": {"priority": 0.5}},
            {"type": "image", "data": "aGk=", "mimeType": "image/png"}
        ]))
        .unwrap();
        for item in items {
            let expected = serde_json::to_value(&item).unwrap();
            assert!(content_size_bound(&item) >= json_size(&item), "{expected}");
            assert_eq!(content_value(item), expected);
        }
    }

    #[test]
    fn results_that_fit_are_kept_whole() {
        let result: CallToolResult = serde_json::from_value(json!({
            "content": [{"type": "text", "text": "hi"}],
            "structuredContent": {"n": 1},
            "isError": true
        }))
        .unwrap();
        let got = cut(result, 1 << 20);
        assert_eq!(got.content, [json!({"type": "text", "text": "hi"})]);
        assert_eq!(got.structured, Some(json!({"n": 1})));
        assert!(got.is_error && got.truncated.is_none());
    }

    #[test]
    fn oversized_results_are_cut_and_say_so() {
        let big = "x".repeat(10_000);
        let result: CallToolResult = serde_json::from_value(json!({"content": [
            {"type": "text", "text": "first"},
            {"type": "text", "text": big},
            {"type": "image", "data": "aGk=", "mimeType": "image/png"}
        ], "isError": false}))
        .unwrap();
        let cut_result = cut(result.clone(), 2_000);
        let t = cut_result.truncated.clone().unwrap();
        assert!(t.original_bytes > 10_000 && t.limit_bytes == 2_000);
        assert_eq!(cut_result.content.len(), 2);
        assert!(serde_json::to_vec(&cut_result.content).unwrap().len() <= 2_000);
        let whole = cut(result, 1 << 20);
        assert_eq!((whole.content.len(), whole.truncated), (3, None));
    }
}
