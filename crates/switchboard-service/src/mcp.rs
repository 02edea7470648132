//! Talking to connectors' servers through the engine: validation, discovery with pinning,
//! calls under policy, resources and prompts, and the diff of a changed function.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use switchboard_connect::{
    CallOptions, Catalog, ConnectError, ProbeReport, Progress, Target, ToolResult,
};
use switchboard_domain::{
    AuditAction, AuthMethod, Connector, ConnectorId, ConnectorStatus, ConnectorUrl,
    FunctionDefinition, NewAuditEvent, NewFunctionState, ReviewState, SyncSummary,
};
use switchboard_policy::{Context, Decision, Input, Outcome};
use switchboard_store::{ConnectorPatch, DiscoveredFunction, PageRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::oauth::{GrantUse, holder_of};
use crate::secrets::sha256_hex;
use crate::{AdminAccess, App, CredentialInput, Error, OrgAccess, Result};

/// What validating a connector found and did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Validation {
    /// The connector afterwards.
    pub connector: Connector,
    /// The probe, step by step.
    #[schema(value_type = Object)]
    pub report: ProbeReport,
    /// What discovery changed in the pinned functions, when it ran.
    pub functions: Option<SyncSummary>,
    /// How the server wants to be authenticated, step by step with the evidence, when it
    /// asked for credentials.
    #[schema(value_type = Option<Object>)]
    pub auth: Option<switchboard_oauth::Detection>,
}

/// A probe of a URL: the connection report and, when the server asked for credentials, how
/// it wants to be authenticated.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Probe {
    /// The connection, step by step.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub report: ProbeReport,
    /// Auth detection, step by step with its evidence.
    #[schema(value_type = Option<Object>)]
    pub auth: Option<switchboard_oauth::Detection>,
}

/// A function called by hand through the API or the CLI.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallOutcome {
    /// The permission decision that let the call through.
    pub decision: Decision,
    /// The result.
    #[schema(value_type = Object)]
    pub result: ToolResult,
}

/// One field that differs between the approved and the current definition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    /// Where, as a JSON pointer into the definition (`/description`, `/input_schema/properties/q`).
    pub path: String,
    /// The approved value; absent when the field was added.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The current value; absent when the field was removed.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// The difference an admin reviews before approving a changed function.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FunctionDiff {
    /// The function's review state.
    pub review_state: ReviewState,
    /// The approved definition, if one was ever approved.
    pub approved: Option<FunctionDefinition>,
    /// The definition the server offers now.
    pub current: FunctionDefinition,
    /// Hash of the current definition: what an approval names.
    pub current_hash: String,
    /// Every changed field.
    pub changes: Vec<FieldChange>,
}

/// Lists the differences between two JSON values as pointer-addressed changes.
pub fn diff_json(before: &Value, after: &Value) -> Vec<FieldChange> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<FieldChange>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    walk(&p, x.get(k), y.get(k), out);
                }
            }
            (a, b) if a == b => {}
            (a, b) => out.push(FieldChange {
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.to_owned()
                },
                before: a.cloned(),
                after: b.cloned(),
            }),
        }
    }
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    out
}

/// The headers a stored credential becomes.
fn headers_for(credential: Option<CredentialInput>) -> Vec<(String, String)> {
    match credential {
        None => Vec::new(),
        Some(CredentialInput::Bearer { token }) => {
            vec![("Authorization".into(), format!("Bearer {token}"))]
        }
        Some(CredentialInput::Basic { username, password }) => {
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            vec![("Authorization".into(), format!("Basic {pair}"))]
        }
        Some(CredentialInput::Headers { headers }) => headers.into_iter().collect(),
    }
}

/// What a member must bring for a connector authenticated with `method`, in words.
fn credential_words(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Bearer => "bearer token",
        AuthMethod::Basic => "user name and password",
        AuthMethod::Headers => "headers",
        AuthMethod::Oauth => "authorization",
        AuthMethod::None | AuthMethod::Unknown => "credential",
    }
}

/// How a call ended, in the audit log's words.
pub(crate) fn call_outcome(result: &std::result::Result<ToolResult, ConnectError>) -> &'static str {
    match result {
        Ok(r) if r.is_error => "tool_error",
        Ok(_) => "ok",
        Err(ConnectError::InvalidArguments(_)) => "invalid_arguments",
        Err(ConnectError::Cancelled) => "cancelled",
        Err(_) => "failed",
    }
}

pub(crate) fn connect_error(e: ConnectError) -> Error {
    match e {
        ConnectError::InvalidArguments(m) => {
            Error::Validation(switchboard_domain::ValidationError::new("arguments", m))
        }
        ConnectError::Unknown { kind, .. } => Error::NotFound(kind),
        ConnectError::AuthRequired { .. } => {
            Error::NeedsAuth(format!("{e}; the connector needs credentials"))
        }
        other => Error::Upstream(other.to_string()),
    }
}

impl App {
    /// The engine's target for a connector as `access`'s member uses it: its URL, the
    /// credential as headers (the organization's or the member's own, static or an OAuth
    /// grant, refreshed first when about to expire), and the transport that answered last
    /// time. Also the grant used, so a 401 can refresh exactly that version.
    async fn target(
        &self,
        access: &OrgAccess,
        connector: &Connector,
    ) -> Result<(Target, Option<GrantUse>)> {
        let holder = holder_of(access, connector);
        let (headers, grant) = if connector.auth_method == AuthMethod::Oauth {
            let grant = self
                .grant_authorization(access.org(), connector, holder)
                .await?;
            (
                vec![("Authorization".to_owned(), grant.authorization.clone())],
                Some(grant),
            )
        } else {
            // A shared credential is read only when the connector says it has one.
            let credential = if holder.is_none() && !connector.has_credential {
                None
            } else {
                self.static_credential(access, connector.id, holder).await?
            };
            if credential.is_none() && holder.is_some() && connector.auth_method != AuthMethod::None
            {
                return Err(Error::NeedsAuth(format!(
                    "every member brings their own credential for {}, and you have not set \
                     yours: set your own {}",
                    connector.name,
                    credential_words(connector.auth_method)
                )));
            }
            (headers_for(credential), None)
        };
        Ok((
            Target {
                url: connector.url.as_url().clone(),
                headers,
                transport: connector.transport,
            },
            grant,
        ))
    }

    /// Runs one engine operation against a connector with its credential. A 401 on an OAuth
    /// grant refreshes that grant (once, for all concurrent callers) and tries once more; a
    /// 403 asking for more scope is remembered, so the next authorization asks for it. The
    /// outer error is about credentials, the inner one is the engine's.
    async fn with_connector<T, F, Fut>(
        &self,
        access: &OrgAccess,
        connector: &Connector,
        op: F,
    ) -> Result<std::result::Result<T, ConnectError>>
    where
        F: Fn(Target) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, ConnectError>>,
    {
        let (target, grant) = self.target(access, connector).await?;
        let first = op(target.clone()).await;
        match (&first, grant) {
            (Err(ConnectError::AuthRequired { status: 401, .. }), Some(used)) => {
                let fresh = self
                    .refresh_grant(access.org(), connector, used.grant, used.version)
                    .await?;
                let mut target = target;
                target.headers = vec![("Authorization".to_owned(), fresh.authorization)];
                Ok(op(target).await)
            }
            (
                Err(ConnectError::AuthRequired {
                    status: 403,
                    challenge: Some(challenge),
                }),
                Some(_),
            ) => {
                self.remember_step_up(access, connector, challenge).await?;
                Err(Error::NeedsAuth(
                    "the server wants more permissions than the grant has; authorize the \
                     connector again to grant them"
                        .into(),
                ))
            }
            _ => Ok(first),
        }
    }

    /// Probes any URL with an optional credential, for `switchboard probe` (admins only: it
    /// makes the server connect out).
    pub async fn probe_url(
        &self,
        _access: &AdminAccess,
        url: &str,
        credential: Option<CredentialInput>,
    ) -> Result<Probe> {
        let url = ConnectorUrl::parse(url, &self.config.http)?;
        if let Some(c) = &credential {
            c.check()?;
        }
        let target = Target {
            url: url.as_url().clone(),
            headers: headers_for(credential),
            transport: None,
        };
        let report = self.engine.probe(&target).await.0;
        let auth = match report.auth {
            Some(_) => Some(self.oauth.client.detect(&target.url, &target.headers).await),
            None => None,
        };
        Ok(Probe { report, auth })
    }

    /// Records what auth detection found on a connector: the recommended method while none
    /// was chosen, and the authorization server's details for OAuth.
    fn apply_detection(
        &self,
        connector: &Connector,
        detection: &switchboard_oauth::Detection,
        patch: &mut ConnectorPatch,
    ) -> Result<()> {
        if connector.auth_method == AuthMethod::Unknown && detection.method != AuthMethod::Unknown {
            patch.auth_method = Some(detection.method);
        }
        if let Some(server) = &detection.oauth {
            patch.auth_detail = Some(Some(
                serde_json::to_value(server).map_err(|e| Error::Internal(e.to_string()))?,
            ));
        }
        Ok(())
    }

    /// Validates a connector: probes it, records what answered, pins what it offers and sets
    /// it `active`, or `needs_auth`/`error` with the failing step. When the credential it
    /// would use is missing (an OAuth connector nobody authorized yet, or a per-member one
    /// where the admin has not set their own), it probes without one, runs auth detection and
    /// sets `needs_auth` with what is missing as the last error.
    pub async fn validate_connector(
        &self,
        access: &AdminAccess,
        id: ConnectorId,
    ) -> Result<Validation> {
        let connector = self.store.connector(access.org(), id).await?;
        if connector.status == ConnectorStatus::Disabled {
            return Err(Error::Conflict {
                field: "status",
                message: "the connector is disabled; enable it first".into(),
            });
        }
        // Without a credential to validate with (no OAuth grant yet, or a per-member
        // connector where the admin has not set their own), the server is still probed
        // without one: detection then says what it wants, and the connector waits for it.
        let (target, missing) = match self.target(access, &connector).await {
            Ok((target, _)) => (target, None),
            Err(Error::NeedsAuth(why)) => (
                Target {
                    url: connector.url.as_url().clone(),
                    headers: Vec::new(),
                    transport: connector.transport,
                },
                Some(why),
            ),
            Err(e) => return Err(e),
        };
        let (report, catalog) = self.engine.probe(&target).await;
        let mut patch = ConnectorPatch::at(self.now());
        let mut functions = None;
        match (&catalog, &report.session, &missing) {
            (Some(catalog), Some(session), None) => {
                patch.status = Some((ConnectorStatus::Active, None));
                patch.transport = Some((session.transport, session.protocol_version.clone()));
                if connector.auth_method == AuthMethod::Unknown {
                    patch.auth_method = Some(AuthMethod::None);
                }
                functions = Some(self.pin(access, &connector, catalog).await?);
            }
            // The server asked for the credential that is missing (or did not need one after
            // all): the connector waits for it, and the last error names what is missing.
            (_, _, Some(why)) if report.ok || report.auth.is_some() => {
                let answered = if report.ok {
                    " (the server also answers without credentials: choose the auth method \
                     none if it needs none)"
                } else {
                    ""
                };
                patch.status = Some((ConnectorStatus::NeedsAuth, Some(format!("{why}{answered}"))));
            }
            _ => {
                let step = report.failed_step.unwrap_or("probe");
                let reason = report
                    .steps
                    .iter()
                    .find(|s| s.name == step)
                    .and_then(|s| s.reason.clone())
                    .unwrap_or_else(|| "failed".into());
                let status = if report.auth.is_some() {
                    ConnectorStatus::NeedsAuth
                } else {
                    ConnectorStatus::Error
                };
                patch.status = Some((status, Some(format!("{step}: {reason}"))));
            }
        }
        let mut auth = None;
        if report.auth.is_some() {
            let detection = self.oauth.client.detect(&target.url, &target.headers).await;
            self.apply_detection(&connector, &detection, &mut patch)?;
            auth = Some(detection);
        }
        let audit = NewAuditEvent::new(AuditAction::ConnectorValidated, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(json!({ "ok": report.ok, "failed_step": report.failed_step }));
        let connector = self
            .store
            .update_connector(access.org(), id, &patch, &audit)
            .await?;
        // A new transport or credential may have been chosen; the next call opens afresh.
        self.engine.forget(id).await;
        Ok(Validation {
            connector,
            report,
            functions,
            auth,
        })
    }

    /// Records a discovered catalog in the store: new functions arrive as the organization's
    /// setting says (all approved on a connector's first discovery, which an admin started),
    /// changed ones are held, missing ones are marked removed.
    async fn pin(
        &self,
        access: &OrgAccess,
        connector: &Connector,
        catalog: &Catalog,
    ) -> Result<SyncSummary> {
        // One row is enough to tell a first discovery from a later one.
        let one = PageRequest {
            after: None,
            limit: 1,
        };
        let first = self
            .store
            .list_functions_page(access.org(), connector.id, access.user(), one)
            .await?
            .items
            .is_empty();
        let new_functions = if first {
            NewFunctionState::Allowed
        } else {
            self.store
                .organization(access.org())
                .await?
                .settings
                .new_functions
        };
        let found: Vec<DiscoveredFunction> = catalog
            .tools
            .iter()
            .cloned()
            .map(DiscoveredFunction::new)
            .collect();
        let audit = NewAuditEvent::new(AuditAction::FunctionsSynced, access.actor())
            .org(access.org())
            .target("connector", connector.id);
        Ok(self
            .store
            .sync_functions(
                access.org(),
                connector.id,
                &found,
                new_functions,
                self.now(),
                &audit,
            )
            .await?)
    }

    /// Asks the server for its functions again now and pins what changed.
    pub async fn refresh_functions(
        &self,
        access: &AdminAccess,
        id: ConnectorId,
    ) -> Result<SyncSummary> {
        let connector = self.active_connector(access, id).await?;
        let catalog = self
            .with_connector(access, &connector, |t| async move {
                self.engine.catalog(id, &t, true).await
            })
            .await?
            .map_err(connect_error)?;
        self.pin(access, &connector, &catalog).await
    }

    /// Re-discovers a connector after its server said its tools changed, so a changed
    /// definition is held at once rather than at the next validation. Runs without a person,
    /// so it acts with the organization's own rights.
    pub async fn on_tools_changed(&self, id: ConnectorId) -> Result<SyncSummary> {
        let org = self.store.connector_org(id).await?;
        let connector = self.store.connector(org, id).await?;
        let access = OrgAccess::system(org);
        let catalog = self
            .with_connector(&access, &connector, |t| async move {
                self.engine.catalog(id, &t, true).await
            })
            .await?
            .map_err(connect_error)?;
        self.pin(&access, &connector, &catalog).await
    }

    /// Spawns the task that keeps pinned functions in step with servers' list changes.
    pub fn watch_list_changes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = Arc::downgrade(self);
        let mut changes = self.engine.list_changes();
        tokio::spawn(async move {
            loop {
                let change = match changes.recv().await {
                    Ok(change) => change,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(app) = app.upgrade() else { return };
                if change.kind == switchboard_connect::ListKind::Tools
                    && let Err(e) = app.on_tools_changed(change.connector).await
                {
                    tracing::warn!(connector = %change.connector, error = %e, "re-discovery after a list change failed");
                }
            }
        })
    }

    async fn active_connector(&self, access: &OrgAccess, id: ConnectorId) -> Result<Connector> {
        let connector = self.store.connector(access.org(), id).await?;
        match connector.status {
            ConnectorStatus::Active => Ok(connector),
            ConnectorStatus::Disabled => Err(Error::Conflict {
                field: "status",
                message: "the connector is disabled".into(),
            }),
            // Validating again would not help: the server wants credentials, so say so with
            // the code clients act on (authorize, or set a credential).
            ConnectorStatus::NeedsAuth => Err(Error::NeedsAuth(format!(
                "the connector needs credentials{}",
                connector
                    .last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ))),
            other => Err(Error::Conflict {
                field: "status",
                message: format!(
                    "the connector is {other}; validate it first{}",
                    connector
                        .last_error
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ),
            }),
        }
    }

    /// Calls a function by hand. The call itself is the member's approval for a function on
    /// "ask"; blocked, "never", held, changed and removed functions are refused with the rule
    /// that refused them.
    pub async fn call_function(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        name: &str,
        arguments: Value,
        progress: Option<mpsc::UnboundedSender<Progress>>,
        cancel: CancellationToken,
    ) -> Result<CallOutcome> {
        let connector = self.active_connector(access, id).await?;
        let view = self
            .store
            .function(access.org(), id, name, access.user())
            .await?;
        let decision = switchboard_policy::decide(Input {
            connector_available: true,
            review: view.function.review_state,
            floor: view.function.floor,
            preference: view.preference,
            context: Context::Clean,
        });
        let digest = sha256_hex(&arguments.to_string());
        if decision.outcome == Outcome::Deny {
            self.audit_call(access, id, name, &digest, decision, "refused", 0)
                .await?;
            return Err(Error::Forbidden(format!(
                "{name} may not be called: {}",
                rule_words(decision)
            )));
        }
        let started = Instant::now();
        let result = self
            .run_tool(access, &connector, &view, arguments, progress, cancel, None)
            .await?;
        let millis = started.elapsed().as_millis() as u64;
        let outcome = call_outcome(&result);
        self.audit_call(access, id, name, &digest, decision, outcome, millis)
            .await?;
        Ok(CallOutcome {
            decision,
            result: result.map_err(connect_error)?,
        })
    }

    /// Runs a function that the caller already decided may run, with the holder's
    /// credentials (refreshing an OAuth grant once on a 401).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_tool(
        &self,
        access: &OrgAccess,
        connector: &Connector,
        view: &switchboard_store::FunctionView,
        arguments: Value,
        progress: Option<mpsc::UnboundedSender<Progress>>,
        cancel: CancellationToken,
        handler: Option<Arc<dyn switchboard_connect::ServerRequests>>,
    ) -> Result<std::result::Result<ToolResult, ConnectError>> {
        let options = CallOptions {
            timeout: self.config.call_timeout,
            progress,
            cancel,
            handler,
            max_result_bytes: self.config.max_result_bytes,
        };
        let id = connector.id;
        let name = view.function.definition.name.as_str();
        let schema = &view.function.definition.input_schema;
        self.with_connector(access, connector, |t| {
            let (arguments, options) = (arguments.clone(), options.clone());
            async move {
                let started = Instant::now();
                let result = self
                    .engine
                    .call_tool(id, &t, name, arguments, schema, options)
                    .await;
                self.chat
                    .tool_nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                result
            }
        })
        .await
    }

    /// Appends a direct function call to the audit log (see [`call_audit_event`]).
    #[allow(clippy::too_many_arguments)]
    async fn audit_call(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        name: &str,
        digest: &str,
        decision: Decision,
        outcome: &str,
        millis: u64,
    ) -> Result<()> {
        let audit = call_audit_event(access, id, name, digest, decision, outcome, millis, None);
        Ok(self.store.append_audit(&audit).await?)
    }

    /// The server's resources and resource templates.
    pub async fn resources(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let catalog = self.catalog(access, id).await?;
        Ok((
            catalog.resources.clone(),
            catalog.resource_templates.clone(),
        ))
    }

    /// The server's prompts.
    pub async fn prompts(&self, access: &OrgAccess, id: ConnectorId) -> Result<Vec<Value>> {
        Ok(self.catalog(access, id).await?.prompts.clone())
    }

    async fn catalog(&self, access: &OrgAccess, id: ConnectorId) -> Result<Arc<Catalog>> {
        let connector = self.active_connector(access, id).await?;
        self.with_connector(access, &connector, |t| async move {
            self.engine.catalog(id, &t, false).await
        })
        .await?
        .map_err(connect_error)
    }

    /// Reads one of the server's resources.
    pub async fn read_resource(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        uri: &str,
    ) -> Result<Vec<Value>> {
        let connector = self.active_connector(access, id).await?;
        self.with_connector(access, &connector, |t| async move {
            self.engine.read_resource(id, &t, uri).await
        })
        .await?
        .map_err(connect_error)
    }

    /// Gets one of the server's prompts with its arguments.
    pub async fn get_prompt(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        name: &str,
        arguments: Value,
    ) -> Result<Value> {
        let connector = self.active_connector(access, id).await?;
        self.with_connector(access, &connector, |t| {
            let arguments = arguments.clone();
            async move { self.engine.get_prompt(id, &t, name, arguments).await }
        })
        .await?
        .map_err(connect_error)
    }

    /// Asks the server to complete an argument.
    pub async fn complete(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        reference: Value,
        argument: &str,
        value: &str,
    ) -> Result<Vec<String>> {
        let connector = self.active_connector(access, id).await?;
        self.with_connector(access, &connector, |t| {
            let reference = reference.clone();
            async move {
                self.engine
                    .complete(id, &t, reference, argument, value)
                    .await
            }
        })
        .await?
        .map_err(connect_error)
    }

    /// The difference between a function's approved and current definitions.
    pub async fn function_diff(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        name: &str,
    ) -> Result<FunctionDiff> {
        let view = self
            .store
            .function(access.org(), id, name, access.user())
            .await?;
        let f = view.function;
        let versions = self.store.function_versions(access.org(), id, name).await?;
        let approved = f
            .approved_hash
            .as_ref()
            .and_then(|h| versions.iter().find(|v| &v.hash == h))
            .map(|v| v.definition.clone());
        let to_value = |d: &FunctionDefinition| serde_json::to_value(d).unwrap_or(Value::Null);
        let changes = match &approved {
            Some(a) => diff_json(&to_value(a), &to_value(&f.definition)),
            None => diff_json(&json!({}), &to_value(&f.definition)),
        };
        Ok(FunctionDiff {
            review_state: f.review_state,
            approved,
            current: f.definition,
            current_hash: f.definition_hash,
            changes,
        })
    }

    /// Closes the sessions of a connector whose URL, credential or status changed.
    pub(crate) async fn forget_sessions(&self, id: ConnectorId) {
        self.engine.forget(id).await;
    }

    /// Closes every upstream session; call at shutdown.
    pub async fn shutdown(&self) {
        self.engine.shutdown().await;
    }
}

/// A policy rule in words, for refusals.
pub fn rule_words(decision: Decision) -> &'static str {
    decision.rule.words()
}

/// The audit entry of a function call: who, which function, a digest of the arguments, the
/// decision and its rule, the outcome and the duration; `conversation` when the assistant made
/// the call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn call_audit_event(
    access: &OrgAccess,
    id: ConnectorId,
    name: &str,
    digest: &str,
    decision: Decision,
    outcome: &str,
    millis: u64,
    conversation: Option<switchboard_domain::ConversationId>,
) -> NewAuditEvent {
    let via = if conversation.is_some() {
        "chat"
    } else {
        "direct"
    };
    NewAuditEvent::new(AuditAction::FunctionCalled, Some(access.user()))
        .org(access.org())
        .target("connector", id)
        .detail(json!({
            "function": name, "arguments_sha256": digest, "decision": decision,
            "outcome": outcome, "duration_ms": millis, "via": via,
            "conversation": conversation,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_changed_field() {
        let before = json!({"name": "f", "description": "Reads", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}});
        let after = json!({"name": "f", "description": "Reads. Also emails", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}, "to": {"type": "string"}}}});
        let changes = diff_json(&before, &after);
        let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/description", "/input_schema/properties/to"]);
        assert_eq!(changes[1].before, None);
        assert!(diff_json(&before, &before).is_empty());
    }

    #[test]
    fn credentials_become_headers() {
        let h = headers_for(Some(CredentialInput::Basic {
            username: "u".into(),
            password: "p".into(),
        }));
        assert_eq!(
            h,
            vec![("Authorization".to_owned(), "Basic dTpw".to_owned())]
        );
    }
}
