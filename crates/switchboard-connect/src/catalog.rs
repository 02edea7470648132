//! Discovery: everything a server offers (tools, resources, resource templates, prompts),
//! following pagination cursors and refusing a server whose cursors go round in circles.

use std::collections::HashSet;
use std::future::Future;

use rmcp::model::PaginatedRequestParams;
use serde::Serialize;
use serde_json::{Value, json};
use switchboard_domain::FunctionDefinition;

use crate::error::{ConnectError, Result};
use crate::session::Session;

/// What a server offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Catalog {
    /// Its tools, as function definitions.
    pub tools: Vec<FunctionDefinition>,
    /// Its resources, as the protocol's JSON.
    pub resources: Vec<Value>,
    /// Its resource templates, as the protocol's JSON.
    pub resource_templates: Vec<Value>,
    /// Its prompts, as the protocol's JSON.
    pub prompts: Vec<Value>,
    /// How long the server said these lists stay fresh (the shortest of its `ttlMs` hints),
    /// if it said.
    #[serde(skip)]
    pub fresh_for: Option<std::time::Duration>,
}

impl Catalog {
    /// A tool's definition by name.
    pub fn tool(&self, name: &str) -> Option<&FunctionDefinition> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// The most pages one list may have: a server that sends more is either broken or hostile.
const MAX_PAGES: usize = 1000;

/// Follows `nextCursor` until the list ends. A cursor seen twice means the server would make us
/// loop forever, so the list is refused.
pub(crate) async fn all_pages<T, F, Fut>(what: &str, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let (page, next) = fetch(cursor.take()).await?;
        items.extend(page);
        match next {
            None => return Ok(items),
            Some(next) if !seen.insert(next.clone()) => {
                return Err(ConnectError::Protocol(format!(
                    "the {what} list repeats a pagination cursor"
                )));
            }
            Some(next) => cursor = Some(next),
        }
    }
    Err(ConnectError::Protocol(format!(
        "the {what} list has more than {MAX_PAGES} pages"
    )))
}

fn params(cursor: Option<String>) -> Option<PaginatedRequestParams> {
    cursor.map(|c| serde_json::from_value(json!({ "cursor": c })).unwrap_or_default())
}

fn protocol_error(e: rmcp::ServiceError) -> ConnectError {
    crate::call::service_error(e)
}

/// A tool as the protocol describes it, turned into a function definition.
pub(crate) fn definition(tool: &Value) -> Result<FunctionDefinition> {
    let field = |k: &str| tool.get(k).filter(|v| !v.is_null()).cloned();
    let def = FunctionDefinition {
        name: tool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        title: tool.get("title").and_then(Value::as_str).map(str::to_owned),
        description: tool
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        input_schema: field("inputSchema").unwrap_or_else(|| json!({"type": "object"})),
        output_schema: field("outputSchema"),
        annotations: field("annotations"),
    };
    def.check()
        .map_err(|e| ConnectError::Protocol(format!("a tool definition is invalid: {e}")))?;
    Ok(def)
}

/// Lists everything the server offers, per its declared capabilities.
pub(crate) async fn discover(session: &Session) -> Result<Catalog> {
    let caps = &session.server.capabilities;
    let peer = &session.peer;
    let mut catalog = Catalog::default();
    // The shortest freshness hint of any page (SEP-2549 `ttlMs`).
    let ttl = std::sync::Mutex::new(None::<u64>);
    let hint = |ms: Option<u64>| {
        if let Some(ms) = ms {
            let mut t = ttl.lock().unwrap_or_else(|p| p.into_inner());
            *t = Some(t.map_or(ms, |cur| cur.min(ms)));
        }
    };
    let hint = &hint;
    if caps.tools.is_some() {
        let tools = all_pages("tool", |cursor| async move {
            let page = peer
                .list_tools(params(cursor))
                .await
                .map_err(protocol_error)?;
            hint(page.ttl_ms);
            let next = page.next_cursor.clone();
            let values: Vec<Value> = page
                .tools
                .iter()
                .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
                .collect();
            Ok((values, next))
        })
        .await?;
        catalog.tools = tools.iter().map(definition).collect::<Result<_>>()?;
    }
    if caps.resources.is_some() {
        catalog.resources = all_pages("resource", |cursor| async move {
            let page = peer
                .list_resources(params(cursor))
                .await
                .map_err(protocol_error)?;
            hint(page.ttl_ms);
            Ok((to_values(&page.resources), page.next_cursor.clone()))
        })
        .await?;
        // Templates are optional even for servers with resources; a server that does not
        // implement the method has none.
        catalog.resource_templates = all_pages("resource template", |cursor| async move {
            match peer.list_resource_templates(params(cursor)).await {
                Ok(page) => Ok((
                    to_values(&page.resource_templates),
                    page.next_cursor.clone(),
                )),
                Err(rmcp::ServiceError::McpError(e))
                    if e.code == rmcp::model::ErrorCode::METHOD_NOT_FOUND =>
                {
                    Ok((Vec::new(), None))
                }
                Err(e) => Err(protocol_error(e)),
            }
        })
        .await?;
    }
    if caps.prompts.is_some() {
        catalog.prompts = all_pages("prompt", |cursor| async move {
            let page = peer
                .list_prompts(params(cursor))
                .await
                .map_err(protocol_error)?;
            hint(page.ttl_ms);
            Ok((to_values(&page.prompts), page.next_cursor.clone()))
        })
        .await?;
    }
    catalog.fresh_for = ttl
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .map(std::time::Duration::from_millis);
    Ok(catalog)
}

fn to_values<T: Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_cursors_and_refuses_loops() {
        let pages = |script: Vec<(Vec<u8>, Option<&'static str>)>| {
            let script = std::sync::Arc::new(std::sync::Mutex::new(script.into_iter()));
            move |_cursor: Option<String>| {
                let next = script.lock().unwrap().next();
                async move {
                    let (items, cursor) = next.expect("asked for a page past the end");
                    Ok((items, cursor.map(str::to_owned)))
                }
            }
        };
        let got = all_pages(
            "tool",
            pages(vec![
                (vec![1, 2], Some("a")),
                (vec![3], Some("b")),
                (vec![4], None),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(got, vec![1, 2, 3, 4]);
        let looping = all_pages(
            "tool",
            pages(vec![
                (vec![1], Some("a")),
                (vec![2], Some("b")),
                (vec![3], Some("a")),
            ]),
        )
        .await;
        assert!(matches!(looping, Err(ConnectError::Protocol(m)) if m.contains("repeats")));
    }

    #[test]
    fn tool_definitions_keep_every_field() {
        let def = definition(&json!({
            "name": "search", "title": "Search", "description": "Finds",
            "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "outputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}
        }))
        .unwrap();
        assert_eq!(def.title.as_deref(), Some("Search"));
        assert_eq!(def.annotations, Some(json!({"readOnlyHint": true})));
        assert!(definition(&json!({"name": ""})).is_err());
    }
}
