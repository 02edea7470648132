//! The OpenAPI document, generated from the handlers' annotations.
//!
//! A committed copy lives at `openapi.json` in the repository root; a test compares it with
//! this output so that an API change without its documentation fails CI.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "Connect an organization's MCP servers to its AI assistant, under per-function permissions.",
        license(name = "Apache-2.0"),
    ),
    paths(
        api::healthz, api::readyz, api::metrics,
        api::setup_state, api::complete_setup, api::login, api::logout, api::login_for_token,
        api::me, api::change_password, api::list_tokens, api::create_token, api::revoke_token,
        api::list_orgs, api::create_org, api::get_org, api::update_org,
        api::list_members, api::add_member, api::set_role, api::remove_member,
        api::list_connectors, api::create_connector, api::get_connector, api::update_connector,
        api::delete_connector, api::enable_connector, api::disable_connector,
        api::list_functions, api::set_floor, api::set_preference, api::function_versions,
        api::approve_function,
        api::list_audit, api::export_audit,
        api::validate_connector, api::refresh_functions, api::probe_url, api::call_function,
        api::list_resources, api::read_resource, api::list_prompts, api::get_prompt, api::complete,
        api::function_diff,
        api::authorize_connector, api::authorization_status, api::disconnect_connector,
        api::set_oauth_client, api::set_my_credential, api::remove_my_credential,
        api::get_chat_model, api::set_chat_model, api::clear_chat_model,
        api::create_conversation, api::list_conversations, api::get_conversation,
        api::update_conversation, api::delete_conversation, api::post_message,
        api::answer_approval, api::answer_elicitation, api::answer_sampling, api::cancel_turn, api::conversation_events,
    ),
    modifiers(&Security),
    security(("api_token" = []), ("session" = [])),
    tags(
        (name = "accounts", description = "Setup, signing in, the caller's account and API tokens"),
        (name = "organizations", description = "Organizations and members"),
        (name = "connectors", description = "The connector registry"),
        (name = "functions", description = "Functions, their floors, preferences and reviews"),
        (name = "resources", description = "A connector's resources and prompt templates"),
        (name = "oauth", description = "OAuth authorization of connectors"),
        (name = "chat", description = "Conversations with the assistant, approvals and their event stream"),
        (name = "audit", description = "The audit log"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sbp_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "browser session; state-changing requests also need the X-CSRF-Token header",
            ))),
        );
    }
}

/// The OpenAPI document as pretty-printed JSON, with the crate's version.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned())
}
