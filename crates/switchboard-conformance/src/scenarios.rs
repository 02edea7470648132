//! The scenarios: what a client does in each, expressed as calls on the connector engine.
//!
//! Everything goes through [`Engine`]: the handshake (whichever protocol generation the mock
//! server speaks), discovery, calls, elicitation answers and reconnection are the engine's. This
//! file only decides which calls a scenario needs and checks that they succeeded; when a
//! scenario fails, the engine is what failed.
//!
//! Authorization scenarios (`auth/…`) run the same calls; when the engine reports that the
//! server wants a token ([`ConnectError::AuthRequired`]), [`Authorizer`] obtains one with
//! `switchboard-oauth` (or more scope, on a 403 `insufficient_scope`), puts it in the target's
//! `Authorization` header, and the call is tried again.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use switchboard_connect::{
    AcceptDefaults, CallOptions, Catalog, ConnectError, Engine, PoolConfig, SessionConfig, Target,
    ToolResult,
};
use switchboard_domain::ConnectorId;
use switchboard_net::{ClientOptions, Destinations, SafeClient};

use crate::Invocation;
use crate::arguments;
use crate::auth::{Attempts, Authorizer};

/// The suite gives a client 30 seconds per scenario; every wait here ends well before that, so
/// a hang shows up as this program's error rather than as the suite's timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A client scenario this program knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// `initialize`: the handshake, then discovery.
    Initialize,
    /// `tools_call`: list the tools and call `add_numbers`.
    ToolsCall,
    /// `elicitation-sep1034-client-defaults`: answer an elicitation with the schema's defaults.
    ElicitationDefaults,
    /// `sse-retry`: a call whose response stream closes early and must be resumed (SEP-1699).
    SseRetry,
    /// `request-metadata`: per-request `_meta` and version negotiation (SEP-2575).
    RequestMetadata,
    /// `sep-2322-client-request-state`: multi-round-trip calls and their `requestState`.
    RequestState,
    /// `http-standard-headers`: `Mcp-Method` and `Mcp-Name` on every request (SEP-2243).
    StandardHeaders,
    /// `http-custom-headers`: `Mcp-Param-*` headers for annotated arguments (SEP-2243).
    CustomHeaders,
    /// `http-invalid-tool-headers`: tools with invalid `x-mcp-header` annotations are dropped.
    InvalidToolHeaders,
    /// `json-schema-ref-no-deref`: a network `$ref` in an input schema is never fetched.
    SchemaRefNoDeref,
    /// `json-schema-2020-12-preservation`: an input schema reaches the caller unaltered.
    SchemaPreservation,
    /// `auth/…`: list the tools and call each, authorizing whenever the server asks (the
    /// scenarios differ in how the server and its authorization server behave, not in what
    /// the client is asked to do).
    Authorization,
}

impl Scenario {
    /// Every scenario by the name the suite uses.
    const ALL: [(&'static str, Scenario); 11] = [
        ("initialize", Scenario::Initialize),
        ("tools_call", Scenario::ToolsCall),
        (
            "elicitation-sep1034-client-defaults",
            Scenario::ElicitationDefaults,
        ),
        ("sse-retry", Scenario::SseRetry),
        ("request-metadata", Scenario::RequestMetadata),
        ("sep-2322-client-request-state", Scenario::RequestState),
        ("http-standard-headers", Scenario::StandardHeaders),
        ("http-custom-headers", Scenario::CustomHeaders),
        ("http-invalid-tool-headers", Scenario::InvalidToolHeaders),
        ("json-schema-ref-no-deref", Scenario::SchemaRefNoDeref),
        (
            "json-schema-2020-12-preservation",
            Scenario::SchemaPreservation,
        ),
    ];

    fn from_name(name: &str) -> anyhow::Result<Self> {
        if let Some((_, scenario)) = Self::ALL.iter().find(|(n, _)| *n == name) {
            return Ok(*scenario);
        }
        if name.starts_with("auth/") {
            return Ok(Scenario::Authorization);
        }
        let known: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
        bail!(
            "unknown scenario {name:?}; this client knows {}",
            known.join(", ")
        )
    }
}

/// Runs the scenario the suite asked for, then closes every session (a session-based server
/// gets its DELETE).
pub(crate) async fn run(invocation: &Invocation) -> anyhow::Result<()> {
    let scenario = Scenario::from_name(&invocation.scenario)?;
    let client = Client::new(invocation)?;
    let outcome = client.act_out(scenario).await;
    client.engine.shutdown().await;
    outcome
}

/// The engine with the one connector a scenario talks to.
struct Client {
    engine: Engine,
    connector: ConnectorId,
    /// The server and the credentials to send; the token changes as authorization proceeds.
    target: Mutex<Target>,
    context: Value,
    /// Present in the authorization scenarios.
    authorizer: Option<Authorizer>,
}

impl Client {
    fn new(invocation: &Invocation) -> anyhow::Result<Self> {
        // The product's outbound rules plus loopback, where the suite's mock servers listen.
        // No total timeout: the engine holds event streams open for as long as a session lives.
        let http = SafeClient::new(
            Destinations::public_only().with_loopback(true),
            ClientOptions {
                total_timeout: None,
                idle_timeout: Some(Duration::from_secs(30)),
                ..ClientOptions::default()
            },
        )
        .context("cannot build the HTTP client")?;
        let config = PoolConfig {
            session: SessionConfig {
                connect_timeout: CALL_TIMEOUT,
                ..SessionConfig::default()
            },
            ..PoolConfig::default()
        };
        let authorizer = if invocation.scenario.starts_with("auth/") {
            Some(Authorizer::new(
                &http,
                &invocation.server,
                &invocation.context,
            )?)
        } else {
            None
        };
        // A conformance client has no person to ask, so it accepts every form with the
        // defaults the form declares, which is what SEP-1034 tests.
        let engine = Engine::new(http, config, Arc::new(AcceptDefaults));
        Ok(Self {
            engine,
            connector: ConnectorId::new(),
            target: Mutex::new(Target::new(invocation.server.clone())),
            context: invocation.context.clone(),
            authorizer,
        })
    }

    /// The target as it stands (with the latest token, if any).
    fn target(&self) -> Target {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `op` with the current target; when the server asks for authorization, authorizes
    /// and runs it again, within the authorizer's retry limits.
    async fn authorized<T, F, Fut>(&self, op: F) -> Result<T, anyhow::Error>
    where
        F: Fn(Target) -> Fut,
        Fut: Future<Output = Result<T, ConnectError>>,
    {
        let mut attempts = Attempts::default();
        loop {
            let error = match op(self.target()).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let ConnectError::AuthRequired { status, challenge } = &error else {
                return Err(error.into());
            };
            let Some(authorizer) = &self.authorizer else {
                return Err(error.into());
            };
            tracing::info!(
                status,
                challenge = challenge.as_deref().unwrap_or("(none)"),
                "the server asks for authorization"
            );
            let header = authorizer
                .answer(*status, challenge.as_deref(), &mut attempts)
                .await
                .with_context(|| format!("answering HTTP {status}"))?;
            let mut target = self.target.lock().unwrap_or_else(|p| p.into_inner());
            target
                .headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
            target.headers.push(("Authorization".into(), header));
        }
    }

    async fn act_out(&self, scenario: Scenario) -> anyhow::Result<()> {
        match scenario {
            // Connecting and discovering is the whole of these: the suite checks the handshake
            // (`initialize`), and the metadata on every request and the retry after the server
            // refuses the first protocol version (`request-metadata`).
            Scenario::Initialize | Scenario::RequestMetadata => {
                self.catalog().await?;
            }
            Scenario::SchemaRefNoDeref => self.schema_ref_no_deref().await?,
            Scenario::ToolsCall => {
                let catalog = self.catalog().await?;
                let result = self
                    .call(&catalog, "add_numbers", json!({ "a": 2, "b": 3 }))
                    .await?;
                expect_success(&result)?;
            }
            Scenario::ElicitationDefaults => {
                let catalog = self.catalog().await?;
                let result = self
                    .call(&catalog, "test_client_elicitation_defaults", json!({}))
                    .await?;
                expect_success(&result)?;
                let text = text_of(&result);
                ensure!(
                    text.starts_with("Elicitation completed"),
                    "the server did not get an accepted elicitation: {text}"
                );
            }
            Scenario::SseRetry => {
                let catalog = self.catalog().await?;
                let result = self.call(&catalog, "test_reconnection", json!({})).await?;
                expect_success(&result)?;
            }
            // Every tool at once: multi-round calls run side by side must keep their rounds
            // apart, and a result without `resultType` is complete.
            Scenario::RequestState => {
                let catalog = self.catalog().await?;
                let calls = catalog.tools.iter().map(|tool| {
                    self.call(
                        &catalog,
                        &tool.name,
                        arguments::for_tool(&tool.input_schema),
                    )
                });
                for result in futures::future::join_all(calls).await {
                    expect_success(&result?)?;
                }
            }
            Scenario::StandardHeaders => self.use_everything().await?,
            Scenario::CustomHeaders => self.custom_headers().await?,
            // The engine (through rmcp) drops tools whose annotations are invalid, so what is
            // left in the catalog is what may be called; calling each proves the valid ones
            // survived.
            Scenario::InvalidToolHeaders => {
                let catalog = self.catalog().await?;
                for tool in &catalog.tools {
                    let arguments = arguments::for_tool(&tool.input_schema);
                    expect_success(&self.call(&catalog, &tool.name, arguments).await?)?;
                }
            }
            Scenario::SchemaPreservation => self.schema_preservation().await?,
            Scenario::Authorization => {
                let catalog = self.catalog().await?;
                for tool in &catalog.tools {
                    let arguments = arguments::for_tool(&tool.input_schema);
                    expect_success(&self.call(&catalog, &tool.name, arguments).await?)?;
                }
            }
        }
        Ok(())
    }

    /// Discovery, fresh from the server.
    async fn catalog(&self) -> anyhow::Result<Arc<Catalog>> {
        let catalog = self
            .authorized(
                |target| async move { self.engine.catalog(self.connector, &target, true).await },
            )
            .await
            .context("discovery failed")?;
        let names: Vec<&str> = catalog.tools.iter().map(|t| t.name.as_str()).collect();
        tracing::info!(
            tools = ?names,
            resources = catalog.resources.len(),
            prompts = catalog.prompts.len(),
            "discovered"
        );
        Ok(catalog)
    }

    /// Calls a tool the catalog lists, with the schema the catalog holds for it.
    async fn call(
        &self,
        catalog: &Catalog,
        name: &str,
        arguments: Value,
    ) -> anyhow::Result<ToolResult> {
        let tool = catalog
            .tool(name)
            .with_context(|| format!("the server does not list the tool {name:?}"))?;
        let options = CallOptions {
            timeout: CALL_TIMEOUT,
            ..CallOptions::default()
        };
        let result = self
            .authorized(|target| {
                let (arguments, options) = (arguments.clone(), options.clone());
                async move {
                    self.engine
                        .call_tool(
                            self.connector,
                            &target,
                            name,
                            arguments,
                            &tool.input_schema,
                            options,
                        )
                        .await
                }
            })
            .await
            .with_context(|| format!("calling {name:?} failed"))?;
        tracing::info!(tool = name, is_error = result.is_error, text = %text_of(&result), "called");
        Ok(result)
    }

    /// Lists, calls, reads and gets everything the server offers.
    async fn use_everything(&self) -> anyhow::Result<()> {
        let catalog = self.catalog().await?;
        for tool in &catalog.tools {
            let arguments = arguments::for_tool(&tool.input_schema);
            expect_success(&self.call(&catalog, &tool.name, arguments).await?)?;
        }
        for resource in &catalog.resources {
            let uri = resource
                .get("uri")
                .and_then(Value::as_str)
                .context("a listed resource has no URI")?;
            let contents = self
                .authorized(|target| async move {
                    self.engine
                        .read_resource(self.connector, &target, uri)
                        .await
                })
                .await
                .with_context(|| format!("reading {uri:?} failed"))?;
            tracing::info!(uri, contents = contents.len(), "read");
        }
        for prompt in &catalog.prompts {
            let name = prompt
                .get("name")
                .and_then(Value::as_str)
                .context("a listed prompt has no name")?;
            let answer = self
                .authorized(|target| async move {
                    self.engine
                        .get_prompt(self.connector, &target, name, arguments::for_prompt(prompt))
                        .await
                })
                .await
                .with_context(|| format!("getting the prompt {name:?} failed"))?;
            let messages = answer
                .get("messages")
                .and_then(Value::as_array)
                .map(Vec::len);
            tracing::info!(prompt = name, messages = messages.unwrap_or(0), "got");
        }
        Ok(())
    }

    /// Calls the tools the scenario names in its context, with its arguments.
    async fn custom_headers(&self) -> anyhow::Result<()> {
        let calls = self
            .context
            .get("toolCalls")
            .and_then(Value::as_array)
            .context("MCP_CONFORMANCE_CONTEXT has no toolCalls list")?;
        let catalog = self.catalog().await?;
        for call in calls {
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .context("a toolCalls entry has no name")?;
            let arguments = arguments::without_nulls(call.get("arguments").unwrap_or(&json!({})));
            expect_success(&self.call(&catalog, name, arguments).await?)?;
        }
        Ok(())
    }

    /// Lists the tools, then tries the one whose schema has a network `$ref`: the engine
    /// validates arguments against that schema before calling, which is where a careless
    /// validator would fetch the reference. The engine leaves such a schema unchecked and
    /// calls; this scenario's server implements no calls, so its refusal is expected. Fetching
    /// the reference is what must not happen, and the suite watches for that.
    async fn schema_ref_no_deref(&self) -> anyhow::Result<()> {
        let catalog = self.catalog().await?;
        let Some(tool) = catalog.tools.first() else {
            bail!("the server lists no tools");
        };
        let arguments = json!({ "id": "user-1" });
        match self.call(&catalog, &tool.name, arguments).await {
            Ok(result) => expect_success(&result)?,
            Err(e) => match e.downcast_ref::<ConnectError>() {
                Some(ConnectError::InvalidArguments(why)) => {
                    tracing::warn!(tool = %tool.name, "the engine refused to call the tool: {why}");
                }
                Some(ConnectError::Server(why)) => {
                    tracing::info!(tool = %tool.name, "the server refused the call: {why}");
                }
                _ => return Err(e),
            },
        }
        Ok(())
    }

    /// Sends the focal tool's input schema, as the catalog holds it, back through the echo
    /// tool, so the suite can see which keywords survived discovery.
    async fn schema_preservation(&self) -> anyhow::Result<()> {
        let catalog = self.catalog().await?;
        let focal = catalog
            .tool("json_schema_2020_12_tool")
            .context("the server does not list json_schema_2020_12_tool")?;
        let arguments = json!({ "schema": focal.input_schema });
        expect_success(&self.call(&catalog, "json_schema_echo", arguments).await?)?;
        Ok(())
    }
}

/// Fails when the tool reported an error.
fn expect_success(result: &ToolResult) -> anyhow::Result<()> {
    ensure!(
        !result.is_error,
        "the tool reported an error: {}",
        text_of(result)
    );
    Ok(())
}

/// The text items of a result, joined.
fn text_of(result: &ToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|item| item.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_found_by_name() {
        assert_eq!(
            Scenario::from_name("tools_call").unwrap(),
            Scenario::ToolsCall
        );
        assert_eq!(
            Scenario::from_name("auth/metadata-default").unwrap(),
            Scenario::Authorization
        );
        let unknown = Scenario::from_name("no-such-scenario").unwrap_err();
        assert!(unknown.to_string().contains("tools_call"), "{unknown}");
    }
}
