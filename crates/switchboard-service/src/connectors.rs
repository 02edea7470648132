//! The connector registry: connectors, their sealed credentials, functions and policies.

use serde::Serialize;
use serde_json::{Value, json};
use switchboard_domain::sanitize::{Finding, sanitize_definition};
use switchboard_domain::{
    AuditAction, AuthMethod, Connector, ConnectorId, ConnectorName, ConnectorStatus, ConnectorUrl,
    CredentialKind, CredentialScope, Description, FloorPolicy, Function, FunctionVersion,
    MemberPreference, NewAuditEvent, ReviewState, UserId, credential_seal_context,
};
use switchboard_policy::{Context, Decision, Input};
use switchboard_seal::Sealed;
use switchboard_store::{ConnectorPatch, FunctionView, NewConnector, StoredCredential};

use crate::{
    Actor, AdminAccess, App, CredentialInput, Error, OrgAccess, Page, PageRequest, Result,
};

/// A connector to register.
#[derive(Debug, Clone)]
pub struct ConnectorInput {
    /// Unique name in the organization.
    pub name: String,
    /// Server URL.
    pub url: String,
    /// What it is for.
    pub description: Option<String>,
    /// A shared static credential for the whole organization.
    pub credential: Option<CredentialInput>,
    /// Who holds the credential: the organization (the default) or each member.
    pub credential_scope: Option<CredentialScope>,
    /// The auth method, when the admin chooses it rather than detection.
    pub auth_method: Option<AuthMethod>,
}

/// Changes to a connector; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectorUpdate {
    /// New name.
    pub name: Option<String>,
    /// New URL (the connector must then be validated again).
    pub url: Option<String>,
    /// New description; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// New shared credential; `Some(None)` removes it.
    pub credential: Option<Option<CredentialInput>>,
    /// Who holds the credential from now on.
    pub credential_scope: Option<CredentialScope>,
    /// The auth method to use, overriding what detection recommended (for example custom
    /// headers where the server also offers OAuth).
    pub auth_method: Option<AuthMethod>,
}

/// A function as a member sees it: its definition, review state, both policy layers and what
/// the permission engine decides for this member right now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FunctionInfo {
    /// The tool's name.
    pub name: String,
    /// Its title.
    pub title: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Its input schema.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// Its output schema.
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<Value>,
    /// Its annotations.
    #[schema(value_type = Option<Object>)]
    pub annotations: Option<Value>,
    /// Hash of the current definition.
    pub definition_hash: String,
    /// Hash of the approved definition.
    pub approved_hash: Option<String>,
    /// Review state.
    pub review_state: ReviewState,
    /// The admin's floor.
    pub floor: FloorPolicy,
    /// This member's preference.
    pub preference: Option<MemberPreference>,
    /// What a call would get now, and why.
    pub decision: Decision,
    /// What the sanitizer noticed in the name, title or description: hidden characters it
    /// removes before a model sees them, and text that reads as instructions to the model.
    pub warnings: Vec<Finding>,
}

impl FunctionInfo {
    fn new(view: FunctionView, connector: &Connector) -> Self {
        let FunctionView {
            function: f,
            preference,
        } = view;
        let (_, warnings) = sanitize_definition(&f.definition);
        let decision = switchboard_policy::decide(Input {
            connector_available: connector.status == ConnectorStatus::Active,
            review: f.review_state,
            floor: f.floor,
            preference,
            context: Context::Clean,
        });
        Self {
            name: f.definition.name,
            title: f.definition.title,
            description: f.definition.description,
            input_schema: f.definition.input_schema,
            output_schema: f.definition.output_schema,
            annotations: f.definition.annotations,
            definition_hash: f.definition_hash,
            approved_hash: f.approved_hash,
            review_state: f.review_state,
            floor: f.floor,
            preference,
            decision,
            warnings,
        }
    }
}

fn unknown_method() -> Error {
    switchboard_domain::ValidationError::new(
        "auth_method",
        "choose none, bearer, basic, headers or oauth; unknown is for detection to replace",
    )
    .into()
}

fn auth_method_for(kind: CredentialKind) -> AuthMethod {
    match kind {
        CredentialKind::Bearer => AuthMethod::Bearer,
        CredentialKind::Basic => AuthMethod::Basic,
        CredentialKind::Headers => AuthMethod::Headers,
    }
}

impl App {
    /// Checks that the actor belongs to the organization that owns `connector`. Outsiders get
    /// `NotFound` for the connector, whether or not it exists.
    pub async fn connector_access(
        &self,
        actor: &Actor,
        connector: ConnectorId,
    ) -> Result<OrgAccess> {
        let org = self.store.connector_org(connector).await?;
        self.org_access(actor, org).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound("connector"),
            other => other,
        })
    }

    fn seal_credential(
        &self,
        connector: ConnectorId,
        input: &CredentialInput,
    ) -> Result<StoredCredential> {
        input.check()?;
        let sealed = self.keys.seal(
            &input.to_plaintext(),
            &credential_seal_context(connector, None),
        );
        Ok(StoredCredential {
            kind: input.kind(),
            sealed: sealed.as_str().to_owned(),
        })
    }

    /// Sets or (with `None`) removes the member's own static credential for a connector whose
    /// members bring their own.
    pub async fn set_my_credential(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        credential: Option<CredentialInput>,
    ) -> Result<()> {
        let connector = self.store.connector(access.org(), id).await?;
        if connector.credential_scope != CredentialScope::Member {
            return Err(Error::Conflict {
                field: "credential_scope",
                message: "this connector uses the organization's credential; an admin sets it"
                    .into(),
            });
        }
        let sealed = match &credential {
            Some(input) => {
                input.check()?;
                let sealed = self.keys.seal(
                    &input.to_plaintext(),
                    &credential_seal_context(id, Some(access.user())),
                );
                Some(StoredCredential {
                    kind: input.kind(),
                    sealed: sealed.as_str().to_owned(),
                })
            }
            None => None,
        };
        let audit = NewAuditEvent::new(AuditAction::CredentialChanged, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(json!({
                "holder": "member",
                "kind": sealed.as_ref().map(|c| c.kind),
            }));
        self.store
            .set_member_credential(
                access.org(),
                id,
                access.user(),
                sealed.as_ref(),
                self.now(),
                &audit,
            )
            .await?;
        self.engine.forget(id).await;
        Ok(())
    }

    /// Opens the organization's shared static credential of a connector.
    pub async fn shared_credential(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
    ) -> Result<Option<CredentialInput>> {
        self.static_credential(access, id, None).await
    }

    /// Opens a connector's static credential held by `holder` (`None`: the organization's),
    /// for the connector engine.
    pub(crate) async fn static_credential(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        holder: Option<UserId>,
    ) -> Result<Option<CredentialInput>> {
        let Some(stored) = self
            .store
            .connector_credential(access.org(), id, holder)
            .await?
        else {
            return Ok(None);
        };
        let plain = self
            .keys
            .open(
                &Sealed::from_stored(stored.sealed),
                &credential_seal_context(id, holder),
            )
            .map_err(|e| {
                Error::Internal(format!("cannot open the credential of connector {id}: {e}"))
            })?;
        CredentialInput::from_plaintext(&plain).map(Some)
    }

    /// The organization's connectors.
    pub async fn connectors(
        &self,
        access: &OrgAccess,
        page: PageRequest,
    ) -> Result<Page<Connector>> {
        Ok(self.store.list_connectors(access.org(), page).await?)
    }

    /// One connector.
    pub async fn connector(&self, access: &OrgAccess, id: ConnectorId) -> Result<Connector> {
        Ok(self.store.connector(access.org(), id).await?)
    }

    /// Registers a connector. It starts as `connecting` until it is validated.
    pub async fn create_connector(
        &self,
        access: &AdminAccess,
        input: ConnectorInput,
    ) -> Result<Connector> {
        let id = ConnectorId::new();
        let name = ConnectorName::parse(&input.name)?;
        let url = ConnectorUrl::parse(&input.url, &self.config.http)?;
        let description = input
            .description
            .as_deref()
            .map(Description::parse)
            .transpose()?;
        let credential_scope = input.credential_scope.unwrap_or(CredentialScope::Shared);
        if credential_scope == CredentialScope::Member && input.credential.is_some() {
            return Err(switchboard_domain::ValidationError::new(
                "credential",
                "a connector whose members bring their own credentials has no shared one",
            )
            .into());
        }
        let credential = input
            .credential
            .as_ref()
            .map(|c| self.seal_credential(id, c))
            .transpose()?;
        let auth_method = match (input.auth_method, &credential) {
            (Some(AuthMethod::Unknown), _) => return Err(unknown_method()),
            (Some(method), _) => method,
            (None, Some(c)) => auth_method_for(c.kind),
            (None, None) => AuthMethod::Unknown,
        };
        let connector = NewConnector {
            id,
            org_id: access.org(),
            name,
            url,
            description,
            status: ConnectorStatus::Connecting,
            auth_method,
            credential_scope,
            credential,
            created_at: self.now(),
        };
        let audit = NewAuditEvent::new(AuditAction::ConnectorCreated, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(json!({
                "name": connector.name.as_str(),
                "url": connector.url.as_str(),
                "credential": connector.credential.as_ref().map(|c| c.kind),
            }));
        Ok(self.store.create_connector(&connector, &audit).await?)
    }

    /// Changes a connector. A new URL sends it back to `connecting`: what was validated was
    /// another server.
    pub async fn update_connector(
        &self,
        access: &AdminAccess,
        id: ConnectorId,
        update: ConnectorUpdate,
    ) -> Result<Connector> {
        let mut patch = ConnectorPatch::at(self.now());
        let mut changed = serde_json::Map::new();
        if let Some(name) = &update.name {
            let name = ConnectorName::parse(name)?;
            changed.insert("name".into(), json!(name.as_str()));
            patch.name = Some(name);
        }
        if let Some(url) = &update.url {
            let url = ConnectorUrl::parse(url, &self.config.http)?;
            changed.insert("url".into(), json!(url.as_str()));
            patch.url = Some(url);
            let current = self.store.connector(access.org(), id).await?;
            if current.status != ConnectorStatus::Disabled {
                patch.status = Some((ConnectorStatus::Connecting, None));
            }
        }
        if let Some(description) = &update.description {
            let description = description.as_deref().map(Description::parse).transpose()?;
            changed.insert(
                "description".into(),
                json!(description.as_ref().map(Description::as_str)),
            );
            patch.description = Some(description);
        }
        if let Some(credential) = &update.credential {
            let sealed = credential
                .as_ref()
                .map(|c| self.seal_credential(id, c))
                .transpose()?;
            changed.insert("credential".into(), json!(sealed.as_ref().map(|c| c.kind)));
            patch.auth_method = Some(
                sealed
                    .as_ref()
                    .map_or(AuthMethod::Unknown, |c| auth_method_for(c.kind)),
            );
            patch.credential = Some(sealed);
        }
        if let Some(scope) = update.credential_scope {
            changed.insert("credential_scope".into(), json!(scope));
            patch.credential_scope = Some(scope);
        }
        if let Some(method) = update.auth_method {
            if method == AuthMethod::Unknown {
                return Err(unknown_method());
            }
            changed.insert("auth_method".into(), json!(method));
            patch.auth_method = Some(method);
        }
        if changed.is_empty() {
            return Err(switchboard_domain::ValidationError::new(
                "body",
                "names no field to change",
            )
            .into());
        }
        let audit = NewAuditEvent::new(AuditAction::ConnectorUpdated, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(Value::Object(changed));
        let updated = self
            .store
            .update_connector(access.org(), id, &patch, &audit)
            .await?;
        // Sessions opened with the old URL or credential must not serve another call.
        self.forget_sessions(id).await;
        Ok(updated)
    }

    /// Enables (back to `connecting`, to be validated) or disables a connector.
    pub async fn set_connector_enabled(
        &self,
        access: &AdminAccess,
        id: ConnectorId,
        enabled: bool,
    ) -> Result<Connector> {
        let current = self.store.connector(access.org(), id).await?;
        let is_enabled = current.status != ConnectorStatus::Disabled;
        if is_enabled == enabled {
            return Ok(current);
        }
        let mut patch = ConnectorPatch::at(self.now());
        let (status, action) = if enabled {
            (ConnectorStatus::Connecting, AuditAction::ConnectorEnabled)
        } else {
            (ConnectorStatus::Disabled, AuditAction::ConnectorDisabled)
        };
        patch.status = Some((status, None));
        let audit = NewAuditEvent::new(action, Some(access.user()))
            .org(access.org())
            .target("connector", id);
        let updated = self
            .store
            .update_connector(access.org(), id, &patch, &audit)
            .await?;
        self.forget_sessions(id).await;
        Ok(updated)
    }

    /// Deletes a connector with its functions, policies and credentials.
    pub async fn delete_connector(&self, access: &AdminAccess, id: ConnectorId) -> Result<()> {
        let current = self.store.connector(access.org(), id).await?;
        let audit = NewAuditEvent::new(AuditAction::ConnectorDeleted, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(json!({ "name": current.name.as_str() }));
        self.store
            .delete_connector(access.org(), id, &audit)
            .await?;
        self.forget_sessions(id).await;
        Ok(())
    }

    /// One page of a connector's functions as this member sees them, by name.
    pub async fn functions(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        page: PageRequest,
    ) -> Result<Page<FunctionInfo>> {
        let connector = self.store.connector(access.org(), id).await?;
        let views = self
            .store
            .list_functions_page(access.org(), id, access.user(), page)
            .await?;
        Ok(views.map(|v| FunctionInfo::new(v, &connector)))
    }

    /// Sets the admin's floor for a function.
    pub async fn set_floor(
        &self,
        access: &AdminAccess,
        id: ConnectorId,
        name: &str,
        floor: FloorPolicy,
    ) -> Result<FunctionInfo> {
        let connector = self.store.connector(access.org(), id).await?;
        let audit = NewAuditEvent::new(AuditAction::FloorChanged, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(json!({ "function": name, "floor": floor }));
        self.store
            .set_floor(access.org(), id, name, floor, self.now(), &audit)
            .await?;
        let view = self
            .store
            .function(access.org(), id, name, access.user())
            .await?;
        Ok(FunctionInfo::new(view, &connector))
    }

    /// Sets (or clears) the member's own preference for a function.
    pub async fn set_preference(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        name: &str,
        preference: Option<MemberPreference>,
    ) -> Result<FunctionInfo> {
        let connector = self.store.connector(access.org(), id).await?;
        let audit = NewAuditEvent::new(AuditAction::PreferenceChanged, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(json!({ "function": name, "preference": preference }));
        let view = self
            .store
            .set_preference(
                access.org(),
                id,
                name,
                access.user(),
                preference,
                self.now(),
                &audit,
            )
            .await?;
        Ok(FunctionInfo::new(view, &connector))
    }

    /// Every definition a function has had.
    pub async fn function_versions(
        &self,
        access: &OrgAccess,
        id: ConnectorId,
        name: &str,
    ) -> Result<Vec<FunctionVersion>> {
        Ok(self.store.function_versions(access.org(), id, name).await?)
    }

    /// Approves a function's current definition, identified by its hash so an admin approves
    /// exactly what they reviewed.
    pub async fn approve_function(
        &self,
        access: &AdminAccess,
        id: ConnectorId,
        name: &str,
        hash: &str,
    ) -> Result<Function> {
        let audit = NewAuditEvent::new(AuditAction::FunctionApproved, Some(access.user()))
            .org(access.org())
            .target("connector", id)
            .detail(json!({ "function": name, "hash": hash }));
        Ok(self
            .store
            .approve_function(access.org(), id, name, hash, self.now(), &audit)
            .await?)
    }
}
