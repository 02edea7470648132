//! The behaviour every Store backend must show. Each backend's integration tests call
//! [`run_all`] with a factory that opens a fresh, migrated, empty store.
//!
//! The suite is the specification both backends are held to, so it pins exact outcomes: which
//! error variant and which `field` or `NotFound` subject a refusal carries, how lists are
//! ordered (names by their bytes, not by a locale), what a sync pass reports, and that a write
//! that fails leaves neither a change nor an audit event behind.
//!
//! Each case is a named async function run on its own fresh store in its own task, so a
//! failing case is reported by name and does not stop the others; [`run_all`] panics at the
//! end with the list of failures.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use serde_json::json;
use switchboard_domain::{
    ApiToken, ApiTokenId, AuditAction, AuditEvent, AuthMethod, ChatEvent, ClientSource, Connector,
    ConnectorId, ConnectorName, ConnectorStatus, ConnectorUrl, Conversation, ConversationId,
    CredentialKind, CredentialScope, Description, Email, FloorPolicy, Function, FunctionDefinition,
    FunctionVersion, GrantId, GrantStatus, HttpAllowance, MemberPreference, NewAuditEvent,
    NewFunctionState, OAuthClientId, OrgId, OrgSettings, OrgSlug, Organization, ProviderKind,
    ReviewState, Role, Session, SyncSummary, Timestamp, Transport, TurnId, TurnRecord, TurnStatus,
    UntrustedContent, User, UserId, chat_model_seal_context, client_seal_context,
    credential_seal_context, grant_seal_context, pending_seal_context,
};
use uuid::Uuid;

use crate::{
    AuditFilter, Cell, ConnectorPatch, ConversationPatch, DiscoveredFunction, FunctionView,
    NewChatEvent, NewConnector, NewGrant, NewOrganization, NewUser, OAuthGrant, Page, PageRequest,
    PendingAuthorization, SCHEMA, Snapshot, Store, StoreError, StoreResult, StoredChatModel,
    StoredCredential, StoredOAuthClient, TurnSave,
};

/// A backend's actual tables, each with its column names, as the backend reports them.
pub type TableLayout = Vec<(String, Vec<String>)>;

/// The migration bookkeeping table sqlx keeps; not part of [`SCHEMA`] and never exported.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Tables the database keeps for itself, maintained by its triggers: counters that tell a
/// process its caches went stale (see [`crate::ChatCatalog`]). They hold no data of their own,
/// so they are not part of [`SCHEMA`] and a copy starts them afresh.
pub const TRIGGER_TABLES: &[&str] = &["policy_generations"];

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Opener = Arc<dyn Fn() -> BoxFuture<Arc<dyn Store>> + Send + Sync>;
type Case = fn(Cx) -> BoxFuture<()>;

/// What a case gets: its own fresh store, and a way to open more (for export and import).
struct Cx {
    store: Arc<dyn Store>,
    open: Opener,
}

impl Cx {
    async fn fresh(&self) -> Arc<dyn Store> {
        (self.open)().await
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), (|cx| Box::pin($name(cx))) as Case)),*]
    };
}

/// Every case, in the order they run.
const CASES: &[(&str, Case)] = cases![
    store_basics,
    instance_settings_round_trip,
    first_owner_setup,
    first_owner_setup_only_once,
    create_owner_is_one_transaction,
    users_create_and_read,
    user_email_is_unique_ignoring_case,
    set_password_ends_sessions,
    sessions_expire_and_end,
    sign_ins_and_outs_are_audited_with_their_change,
    api_tokens_lifecycle,
    api_tokens_paginate_newest_first,
    organizations_create_read_update,
    organizations_of_sorts_slugs_by_bytes,
    organizations_paginate_by_slug,
    members_add_read_and_change,
    add_new_member_is_one_transaction,
    members_paginate_without_gaps,
    last_owner_cannot_be_demoted,
    last_owner_cannot_be_removed,
    concurrent_demotions_keep_an_owner,
    remove_member_drops_their_preferences_and_credentials,
    connectors_create_and_read,
    connector_names_are_unique_ignoring_case,
    connectors_are_scoped_to_their_organization,
    connectors_paginate_without_gaps,
    update_connector_applies_the_patch,
    delete_connector_cascades,
    concurrent_creates_with_one_folded_name,
    sync_adds_functions_as_the_setting_says,
    sync_holds_changed_and_restores_approved,
    sync_keeps_pending_functions_pending,
    sync_marks_removed_and_brings_back,
    sync_counts_a_repeated_name_once,
    approve_function_checks_the_hash,
    floors_and_preferences,
    functions_sort_by_bytes,
    functions_paginate_by_name,
    audit_is_scoped_to_the_organization,
    audit_filters,
    audit_paginates_both_directions,
    failed_writes_leave_no_trace,
    reseal_all_rewrites_every_credential,
    export_import_round_trip,
    import_refuses_a_target_with_users,
    import_replaces_what_an_empty_target_holds,
    import_rejects_a_malformed_snapshot,
    connector_credential_scope_and_auth_detail,
    member_credentials_upsert_and_delete,
    member_credentials_are_scoped,
    oauth_clients_upsert_and_delete,
    pending_authorizations_are_taken_once,
    pending_authorizations_expire,
    concurrent_takes_of_one_pending_authorization,
    oauth_grants_save_and_replace,
    oauth_grants_are_scoped,
    grant_refresh_lease_is_exclusive,
    concurrent_refresh_claims_have_one_winner,
    revoke_and_delete_grants,
    remove_member_drops_their_oauth_state,
    delete_connector_takes_its_oauth_state,
    reseal_all_covers_oauth_secrets,
    org_chat_settings_round_trip,
    chat_model_set_get_and_clear,
    conversations_are_scoped_to_their_member,
    conversations_refuse_connectors_of_other_organizations,
    conversations_list_most_recent_first_and_paginate,
    update_conversation_applies_the_patch,
    start_turn_conflicts_while_a_turn_is_open,
    save_turn_is_compare_and_swap,
    concurrent_saves_of_one_turn_have_one_winner,
    chat_events_are_numbered_contiguously,
    concurrent_appends_number_events_without_gaps,
    messages_are_appended_only_by_save_turn,
    claim_stalled_turns_claims_expired_leases_once,
    concurrent_claims_split_stalled_turns,
    extend_turn_lease_needs_the_current_version,
    chat_catalog_reads_what_turns_decide_with,
    policy_generation_moves_with_every_policy_change,
    saves_under_a_moved_policy_generation_are_refused,
    delete_conversation_cascades,
    deleting_a_connector_removes_it_from_conversations,
    remove_member_drops_their_conversations,
    reseal_all_covers_the_chat_model_key,
];

/// Runs every case, each on a fresh store from `open`, and checks that the tables `layout`
/// reports for a fresh store are exactly those of [`SCHEMA`] (plus [`MIGRATIONS_TABLE`]).
///
/// `open` must return a new, migrated, empty database each time it is called. `layout` is the
/// backend's own hook listing its tables and their columns. Run it in a multi-threaded Tokio
/// runtime so the concurrency cases really overlap. Panics, naming every failed case, if any
/// case fails.
pub async fn run_all<S, Open, OpenFut, Layout, LayoutFut>(open: Open, layout: Layout)
where
    S: Store,
    Open: Fn() -> OpenFut + Send + Sync + 'static,
    OpenFut: Future<Output = Arc<S>> + Send + 'static,
    Layout: Fn(Arc<S>) -> LayoutFut,
    LayoutFut: Future<Output = TableLayout>,
{
    let open = Arc::new(open);
    let opener: Opener = {
        let open = open.clone();
        Arc::new(move || {
            let fut = open();
            Box::pin(async move { fut.await as Arc<dyn Store> })
        })
    };

    let mut failures = Vec::new();
    let first = open().await;
    let backend = first.backend();
    if let Err(message) = check_layout(layout(first).await) {
        eprintln!("store suite ({backend}): case `tables_match_schema` FAILED: {message}");
        failures.push(("tables_match_schema", message));
    }

    for (name, case) in CASES {
        let cx = Cx {
            store: opener().await,
            open: opener.clone(),
        };
        match tokio::spawn(case(cx)).await {
            Ok(()) => eprintln!("store suite ({backend}): case `{name}` ok"),
            Err(e) => {
                let message = match e.try_into_panic() {
                    Ok(payload) => panic_message(payload.as_ref()),
                    Err(e) => e.to_string(),
                };
                eprintln!("store suite ({backend}): case `{name}` FAILED: {message}");
                failures.push((name, message));
            }
        }
    }

    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, message)| format!("  case `{name}`: {message}"))
            .collect();
        panic!(
            "store suite ({backend}): {} of {} cases failed:\n{}",
            failures.len(),
            CASES.len() + 1,
            list.join("\n")
        );
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a non-text payload".to_owned()
    }
}

/// The live tables must be exactly [`SCHEMA`]'s, with the same columns: a table or column
/// added by a migration but missing from `SCHEMA` would be silently left behind by `db copy`.
fn check_layout(layout: TableLayout) -> Result<(), String> {
    let actual: BTreeMap<String, BTreeSet<String>> = layout
        .into_iter()
        .filter(|(name, _)| name != MIGRATIONS_TABLE && !TRIGGER_TABLES.contains(&name.as_str()))
        .map(|(name, columns)| (name, columns.into_iter().collect()))
        .collect();
    let expected: BTreeMap<String, BTreeSet<String>> = SCHEMA
        .iter()
        .map(|t| {
            let columns = t.columns.iter().map(|(c, _)| (*c).to_owned()).collect();
            (t.name.to_owned(), columns)
        })
        .collect();
    let mut problems = Vec::new();
    for name in expected.keys().filter(|n| !actual.contains_key(*n)) {
        problems.push(format!("table {name} is in SCHEMA but not in the database"));
    }
    for name in actual.keys().filter(|n| !expected.contains_key(*n)) {
        problems.push(format!("table {name} is in the database but not in SCHEMA"));
    }
    for (name, columns) in &expected {
        if let Some(found) = actual.get(name)
            && found != columns
        {
            problems.push(format!(
                "table {name} has columns {found:?}, SCHEMA lists {columns:?}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// ---- fixtures -----------------------------------------------------------------------------

/// A fixed point in time, offset by `ms`: tests never depend on the clock except where the
/// store stamps audit events itself.
fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_760_000_000_000 + ms)
}

fn ev(action: AuditAction) -> NewAuditEvent {
    NewAuditEvent::new(action, None)
}

fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap()
}

fn new_user(address: &str) -> NewUser {
    NewUser {
        id: UserId::new(),
        email: email(address),
        display_name: format!("Person {address}"),
        password_hash: Some(format!("$argon2id$v=19$hash-of-{address}")),
        created_at: at(1),
    }
}

async fn user(s: &dyn Store, address: &str) -> User {
    s.create_user(&new_user(address), &ev(AuditAction::UserCreated))
        .await
        .unwrap()
}

fn new_org(slug: &str) -> NewOrganization {
    NewOrganization {
        id: OrgId::new(),
        slug: OrgSlug::parse(slug).unwrap(),
        name: format!("Org {slug}"),
        settings: OrgSettings::default(),
        created_at: at(2),
    }
}

async fn org(s: &dyn Store, slug: &str, owner: UserId) -> Organization {
    let new = new_org(slug);
    let event = ev(AuditAction::OrgCreated).org(new.id);
    s.create_organization(&new, owner, &event).await.unwrap()
}

/// An organization `acme` owned by `ada@example.org`.
async fn world(s: &dyn Store) -> (Organization, User) {
    let ada = user(s, "ada@example.org").await;
    let acme = org(s, "acme", ada.id).await;
    (acme, ada)
}

async fn join(s: &dyn Store, org: OrgId, address: &str, role: Role) -> User {
    let u = user(s, address).await;
    let event = ev(AuditAction::MemberAdded).org(org);
    s.add_member(org, u.id, role, at(3), &event).await.unwrap();
    u
}

fn new_connector(org: OrgId, name: &str) -> NewConnector {
    NewConnector {
        id: ConnectorId::new(),
        org_id: org,
        name: ConnectorName::parse(name).unwrap(),
        url: url(&format!(
            "https://mcp.example.org/{}",
            name.to_ascii_lowercase()
        )),
        description: None,
        status: ConnectorStatus::Connecting,
        auth_method: AuthMethod::Unknown,
        credential_scope: CredentialScope::Shared,
        credential: None,
        created_at: at(4),
    }
}

fn url(raw: &str) -> ConnectorUrl {
    ConnectorUrl::parse(raw, &HttpAllowance::default()).unwrap()
}

async fn connector(s: &dyn Store, org: OrgId, name: &str) -> Connector {
    let event = ev(AuditAction::ConnectorCreated).org(org);
    s.create_connector(&new_connector(org, name), &event)
        .await
        .unwrap()
}

fn credential(sealed: &str) -> StoredCredential {
    StoredCredential {
        kind: CredentialKind::Bearer,
        sealed: sealed.to_owned(),
    }
}

/// The authorization server the OAuth cases use.
const ISSUER: &str = "https://auth.example.org";

fn oauth_client_of(connector: ConnectorId, issuer: &str, sealed: &str) -> StoredOAuthClient {
    StoredOAuthClient {
        id: OAuthClientId::new(),
        connector,
        issuer: issuer.to_owned(),
        source: ClientSource::Dynamic,
        sealed: sealed.to_owned(),
        created_at: at(20),
    }
}

/// Tokens received at `now` from [`ISSUER`], the access token valid for an hour.
fn new_grant(connector: ConnectorId, holder: Option<UserId>, sealed: &str, now: i64) -> NewGrant {
    NewGrant {
        id: GrantId::new(),
        connector,
        holder,
        issuer: ISSUER.to_owned(),
        sealed: sealed.to_owned(),
        expires_at: Some(at(now + 3_600_000)),
        now: at(now),
    }
}

async fn save_grant(s: &dyn Store, org: OrgId, new: &NewGrant) -> OAuthGrant {
    s.save_oauth_grant(org, new, &ev(AuditAction::OAuthConnected).org(org))
        .await
        .unwrap()
}

async fn grant_now(s: &dyn Store, id: GrantId) -> OAuthGrant {
    s.oauth_grant_by_id(id).await.unwrap()
}

/// An authorization `user` started for `holder`, under state `state`, expiring at `expires`.
fn pending_of(
    org: OrgId,
    connector: ConnectorId,
    user: UserId,
    holder: Option<UserId>,
    state: &str,
    expires: i64,
) -> PendingAuthorization {
    PendingAuthorization {
        state_hash: format!("state-hash-{state}"),
        org,
        connector,
        user,
        holder,
        binding_hash: format!("binding-hash-{state}"),
        sealed: format!("sealed-verifier-{state}"),
        created_at: at(10),
        expires_at: at(expires),
    }
}

/// The state hashes of every pending authorization in the database, sorted.
async fn pending_states(s: &dyn Store) -> Vec<String> {
    let snapshot = s.export().await.unwrap();
    let mut states: Vec<String> = rows_of(&snapshot, "oauth_pending")
        .iter()
        .map(|row| match &row[0] {
            Cell::Text(t) => t.clone(),
            other => panic!("state_hash is {other:?}"),
        })
        .collect();
    states.sort();
    states
}

fn definition(name: &str, description: &str) -> FunctionDefinition {
    FunctionDefinition {
        name: name.to_owned(),
        title: None,
        description: Some(description.to_owned()),
        input_schema: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        output_schema: None,
        annotations: Some(json!({"readOnlyHint": true})),
    }
}

fn tool(name: &str, description: &str) -> DiscoveredFunction {
    DiscoveredFunction::new(definition(name, description))
}

fn synced(org: OrgId) -> NewAuditEvent {
    ev(AuditAction::FunctionsSynced).org(org)
}

/// Runs a discovery pass and returns its summary.
async fn sync(
    s: &dyn Store,
    org: OrgId,
    connector: ConnectorId,
    found: &[DiscoveredFunction],
    new_functions: NewFunctionState,
    now: i64,
) -> SyncSummary {
    s.sync_functions(org, connector, found, new_functions, at(now), &synced(org))
        .await
        .unwrap()
}

/// A function as stored, read as someone without a preference.
async fn func(s: &dyn Store, org: OrgId, connector: ConnectorId, name: &str) -> Function {
    s.function(org, connector, name, UserId::new())
        .await
        .unwrap()
        .function
}

/// The organization's model as an admin would set it at `ms`.
fn chat_model_of(sealed_key: Option<&str>, ms: i64) -> StoredChatModel {
    StoredChatModel {
        kind: ProviderKind::Mistral,
        base_url: "https://api.mistral.ai/v1".to_owned(),
        model: "mistral-large-latest".to_owned(),
        sealed_key: sealed_key.map(str::to_owned),
        updated_at: at(ms),
    }
}

/// A conversation of `user` in `org`, created (and last updated) at `ms`.
fn conversation_of(
    org: OrgId,
    user: UserId,
    title: &str,
    connectors: &[ConnectorId],
    ms: i64,
) -> Conversation {
    Conversation {
        id: ConversationId::new(),
        org_id: org,
        user_id: user,
        title: title.to_owned(),
        connectors: connectors.to_vec(),
        created_at: at(ms),
        updated_at: at(ms),
    }
}

async fn new_conversation(
    s: &dyn Store,
    org: OrgId,
    user: UserId,
    title: &str,
    connectors: &[ConnectorId],
    ms: i64,
) -> Conversation {
    let c = conversation_of(org, user, title, connectors, ms);
    s.create_conversation(&c).await.unwrap();
    c
}

/// A running turn of `c` started at `ms`, without a lease.
fn turn_of(c: &Conversation, ms: i64) -> TurnRecord {
    TurnRecord {
        id: TurnId::new(),
        conversation_id: c.id,
        org_id: c.org_id,
        user_id: c.user_id,
        status: TurnStatus::Running,
        state: json!({"step": 0, "started": ms, "text": "ünïcode \"quoted\""}),
        version: 1,
        lease_until: None,
        created_at: at(ms),
    }
}

/// Starts `turn_of(c, ms)` with one event and returns it as stored.
async fn started(s: &dyn Store, c: &Conversation, ms: i64) -> TurnRecord {
    let t = turn_of(c, ms);
    start(s, &t, &events_of(&["turn_started"])).await.unwrap();
    s.turn(t.id).await.unwrap()
}

/// Events of the given kinds, each with some data.
fn events_of(kinds: &[&str]) -> Vec<NewChatEvent> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| NewChatEvent {
            kind: (*kind).to_owned(),
            data: json!({"i": i, "kind": kind, "nested": {"list": [1, null, true]}}),
        })
        .collect()
}

fn seqs(events: &[ChatEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

fn kinds(events: &[ChatEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// A save of `turn` from `version` at `ms` that keeps it running without a lease and appends
/// nothing; cases override fields with struct update syntax.
fn save_of<'a>(turn: &TurnRecord, version: i64, state: &'a Value, ms: i64) -> TurnSave<'a> {
    TurnSave {
        id: turn.id,
        conversation: turn.conversation_id,
        version,
        policy_generation: 0,
        status: TurnStatus::Running,
        state,
        lease_until: None,
        events: &[],
        messages: &[],
        audit: &[],
        now: at(ms),
    }
}

/// Every function of a connector with `member`'s preference, read page after page.
async fn functions_of(
    s: &dyn Store,
    org: OrgId,
    connector: ConnectorId,
    member: UserId,
) -> StoreResult<Vec<FunctionView>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list_functions_page(org, connector, member, PageRequest { after, limit: 100 })
            .await?;
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// The organization's policy generation as `chat_catalog` reports it (0 if it is gone).
async fn generation_of(s: &dyn Store, org: OrgId) -> i64 {
    s.chat_catalog(org, UserId::new())
        .await
        .map_or(0, |c| c.policy_generation)
}

/// Starts a turn under the organization's current policy generation.
async fn start(
    s: &dyn Store,
    t: &TurnRecord,
    events: &[NewChatEvent],
) -> StoreResult<Vec<ChatEvent>> {
    let generation = generation_of(s, t.org_id).await;
    s.start_turn(t, events, generation)
        .await
        .map(|stored| stored.expect("no policy changed meanwhile"))
}

/// Saves under the organization's current policy generation, whatever `save` names.
async fn save(s: &dyn Store, save: TurnSave<'_>) -> StoreResult<Option<Vec<ChatEvent>>> {
    let generation = match s.turn(save.id).await {
        Ok(turn) => generation_of(s, turn.org_id).await,
        Err(_) => 0,
    };
    s.save_turn(&TurnSave {
        policy_generation: generation,
        ..save
    })
    .await
}

/// The rows of the chat tables (and the conversations'), for "nothing was written" checks.
async fn chat_rows(s: &dyn Store) -> Vec<Vec<Vec<Cell>>> {
    let snapshot = s.export().await.unwrap();
    [
        "conversations",
        "conversation_connectors",
        "chat_turns",
        "chat_messages",
        "chat_events",
    ]
    .iter()
    .map(|t| rows_of(&snapshot, t).to_vec())
    .collect()
}

fn first(limit: u32) -> PageRequest {
    PageRequest { after: None, limit }
}

fn filter(org: OrgId) -> AuditFilter {
    AuditFilter {
        org_id: org,
        action: None,
        actor_id: None,
        since: None,
        until: None,
        newest_first: false,
    }
}

/// Every event an organization's log shows, oldest first.
async fn log(s: &dyn Store, org: OrgId) -> Vec<AuditEvent> {
    list_log(s, &filter(org)).await
}

async fn list_log(s: &dyn Store, f: &AuditFilter) -> Vec<AuditEvent> {
    let page = s.list_audit(f, first(10_000)).await.unwrap();
    assert_eq!(page.next, None);
    page.items
}

/// How many audit events exist in the whole database, whichever organization they concern.
async fn audit_count(s: &dyn Store) -> usize {
    rows_of(&s.export().await.unwrap(), "audit_events").len()
}

fn rows_of<'a>(snapshot: &'a Snapshot, table: &str) -> &'a [Vec<Cell>] {
    &snapshot
        .tables
        .iter()
        .find(|t| t.name == table)
        .unwrap_or_else(|| panic!("the snapshot has no table {table}"))
        .rows
}

/// Builds a row of `table` from column values by name, in [`SCHEMA`]'s column order.
fn row(table: &str, values: &[(&str, Cell)]) -> Vec<Cell> {
    let spec = SCHEMA.iter().find(|t| t.name == table).unwrap();
    spec.columns
        .iter()
        .map(|(column, _)| {
            values
                .iter()
                .find(|(c, _)| c == column)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no value for {table}.{column}"))
        })
        .collect()
}

/// A member's own credential for a connector, as a `connector_credentials` row, for cases
/// that build their database through `import` (which also checks that imported rows read
/// back like rows the store wrote).
fn member_credential_row(connector: ConnectorId, holder: UserId, sealed: &str) -> Vec<Cell> {
    row(
        "connector_credentials",
        &[
            ("id", Cell::Uuid(Uuid::now_v7())),
            ("connector_id", Cell::Uuid(connector.0)),
            ("user_id", Cell::Uuid(holder.0)),
            ("kind", Cell::Text("bearer".into())),
            ("sealed", Cell::Text(sealed.into())),
            ("updated_at", Cell::Int(at(9).millis())),
        ],
    )
}

/// Copies `from` into a fresh store with `extra` rows added to `table`.
async fn copy_with(
    cx: &Cx,
    from: &dyn Store,
    table: &str,
    extra: Vec<Vec<Cell>>,
) -> Arc<dyn Store> {
    let mut snapshot = from.export().await.unwrap();
    let dump = snapshot
        .tables
        .iter_mut()
        .find(|t| t.name == table)
        .unwrap();
    dump.rows.extend(extra);
    let target = cx.fresh().await;
    target.import(&snapshot).await.unwrap();
    target
}

#[track_caller]
fn conflict<T: Debug>(result: StoreResult<T>, field: &str) -> String {
    match result {
        Err(StoreError::Conflict { field: f, message }) if f == field => {
            assert!(!message.is_empty(), "a conflict must say what clashed");
            message
        }
        other => panic!("expected a conflict on `{field}`, got {other:?}"),
    }
}

#[track_caller]
fn not_found<T: Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::NotFound(w)) if w == what => {}
        other => panic!("expected `{what} not found`, got {other:?}"),
    }
}

#[track_caller]
fn last_owner<T: Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::LastOwner) => {}
        other => panic!("expected LastOwner, got {other:?}"),
    }
}

/// Walks every page of a list, checking the paging rules on the way: no page is longer than
/// its limit, a page with a cursor is full and its cursor is its last item's id.
async fn all_pages<T, F, Fut>(limit: u32, mut fetch: F, id: impl Fn(&T) -> Uuid) -> Vec<T>
where
    T: Debug,
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..10_000 {
        let page = fetch(PageRequest { after, limit }).await.unwrap();
        assert!(page.items.len() <= limit as usize, "page over its limit");
        match page.next {
            Some(next) => {
                assert_eq!(
                    page.items.len(),
                    limit as usize,
                    "a page with a cursor is full"
                );
                assert_eq!(
                    page.items.last().map(&id),
                    Some(next),
                    "cursor is the last id"
                );
                out.extend(page.items);
                after = Some(next);
            }
            None => {
                out.extend(page.items);
                return out;
            }
        }
    }
    panic!("pagination never ended")
}

fn assert_unique_sorted(ids: &[Uuid], descending: bool) {
    for pair in ids.windows(2) {
        if descending {
            assert!(pair[0] > pair[1], "ids not strictly descending: {ids:?}");
        } else {
            assert!(pair[0] < pair[1], "ids not strictly ascending: {ids:?}");
        }
    }
}

// ---- basics and settings ------------------------------------------------------------------

async fn store_basics(cx: Cx) {
    let s = &*cx.store;
    assert!(["sqlite", "postgres"].contains(&s.backend()));
    s.ping().await.unwrap();
    // Migrating an up-to-date database changes nothing.
    s.migrate().await.unwrap();
    assert_eq!(s.user_count().await.unwrap(), 0);
    // A fresh database holds every table of SCHEMA, in order, and no rows at all.
    let snapshot = s.export().await.unwrap();
    let names: Vec<&str> = snapshot.tables.iter().map(|t| t.name.as_str()).collect();
    let expected: Vec<&str> = SCHEMA.iter().map(|t| t.name).collect();
    assert_eq!(names, expected);
    assert_eq!(snapshot.row_count(), 0);
}

async fn instance_settings_round_trip(cx: Cx) {
    let s = &*cx.store;
    assert_eq!(s.instance_setting("setup_token").await.unwrap(), None);
    s.set_instance_setting("setup_token", Some("abc"))
        .await
        .unwrap();
    s.set_instance_setting("other", Some("x")).await.unwrap();
    assert_eq!(
        s.instance_setting("setup_token").await.unwrap().as_deref(),
        Some("abc")
    );
    s.set_instance_setting("setup_token", Some("def"))
        .await
        .unwrap();
    assert_eq!(
        s.instance_setting("setup_token").await.unwrap().as_deref(),
        Some("def")
    );
    s.set_instance_setting("setup_token", None).await.unwrap();
    assert_eq!(s.instance_setting("setup_token").await.unwrap(), None);
    assert_eq!(
        s.instance_setting("other").await.unwrap().as_deref(),
        Some("x")
    );
    // Removing what is not there is not an error.
    s.set_instance_setting("missing", None).await.unwrap();
}

// ---- accounts -----------------------------------------------------------------------------

async fn first_owner_setup(cx: Cx) {
    let s = &*cx.store;
    s.set_instance_setting("setup_token", Some("hash-of-token"))
        .await
        .unwrap();
    s.set_instance_setting("keep", Some("me")).await.unwrap();
    let ada = new_user("ada@example.org");
    let acme = new_org("acme");
    let event = ev(AuditAction::SetupCompleted).org(acme.id);
    s.create_first_owner(&ada, &acme, "setup_token", &event)
        .await
        .unwrap();

    assert_eq!(s.user_count().await.unwrap(), 1);
    assert_eq!(s.instance_setting("setup_token").await.unwrap(), None);
    assert_eq!(
        s.instance_setting("keep").await.unwrap().as_deref(),
        Some("me")
    );
    let orgs = s.organizations_of(ada.id).await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].0.id, acme.id);
    assert_eq!(orgs[0].0.slug, acme.slug);
    assert_eq!(orgs[0].1, Role::Owner);
    let owner = s.member(acme.id, ada.id).await.unwrap();
    assert_eq!(owner.role, Role::Owner);
    assert_eq!(owner.joined_at, acme.created_at);
    let events = log(s, acme.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::SetupCompleted);
}

async fn first_owner_setup_only_once(cx: Cx) {
    let s = &*cx.store;
    let ada = new_user("ada@example.org");
    let acme = new_org("acme");
    let event = ev(AuditAction::SetupCompleted).org(acme.id);
    s.create_first_owner(&ada, &acme, "setup_token", &event)
        .await
        .unwrap();
    s.set_instance_setting("setup_token", Some("second"))
        .await
        .unwrap();
    let before = audit_count(s).await;

    let bob = new_user("bob@example.org");
    let beta = new_org("beta");
    let event = ev(AuditAction::SetupCompleted).org(beta.id);
    conflict(
        s.create_first_owner(&bob, &beta, "setup_token", &event)
            .await,
        "setup",
    );
    // Nothing of the refused setup was kept: no user, no organization, token still there.
    assert_eq!(s.user_count().await.unwrap(), 1);
    not_found(s.organization(beta.id).await, "organization");
    assert_eq!(
        s.instance_setting("setup_token").await.unwrap().as_deref(),
        Some("second")
    );
    assert_eq!(audit_count(s).await, before);
}

async fn create_owner_is_one_transaction(cx: Cx) {
    let s = &*cx.store;
    let (acme, _) = world(s).await;
    let before = audit_count(s).await;
    let bob = new_user("bob@example.org");
    let beta = new_org("beta");
    let events = [
        ev(AuditAction::UserCreated),
        ev(AuditAction::OrgCreated).org(beta.id),
    ];
    s.create_owner(&bob, &beta, &events).await.unwrap();
    assert_eq!(s.role_of(beta.id, bob.id).await.unwrap(), Some(Role::Owner));
    assert_eq!(s.user(bob.id).await.unwrap().email, bob.email);
    assert_eq!(audit_count(s).await, before + 2);

    // A slug that is taken keeps neither the account nor any event.
    let carl = new_user("carl@example.org");
    let mut taken = new_org("x");
    taken.slug = acme.slug.clone();
    conflict(s.create_owner(&carl, &taken, &events).await, "slug");
    assert!(s.user_login(&carl.email).await.unwrap().is_none());
    // An address that is taken keeps no organization.
    let gamma = new_org("gamma");
    conflict(
        s.create_owner(&new_user("BOB@example.org"), &gamma, &events)
            .await,
        "email",
    );
    not_found(s.organization(gamma.id).await, "organization");
    assert_eq!(audit_count(s).await, before + 2);
}

async fn users_create_and_read(cx: Cx) {
    let s = &*cx.store;
    let new = new_user("  Ada@Example.ORG ");
    let ada = s
        .create_user(&new, &ev(AuditAction::UserCreated))
        .await
        .unwrap();
    assert_eq!(
        ada,
        User {
            id: new.id,
            email: email("ada@example.org"),
            display_name: new.display_name.clone(),
            created_at: new.created_at,
        }
    );
    assert_eq!(s.user(ada.id).await.unwrap(), ada);
    let login = s.user_login(&email("ADA@example.org")).await.unwrap();
    assert_eq!(login, Some((ada.clone(), new.password_hash.clone())));

    let mut no_password = new_user("sso@example.org");
    no_password.password_hash = None;
    let sso = s
        .create_user(&no_password, &ev(AuditAction::UserCreated))
        .await
        .unwrap();
    assert_eq!(s.user_login(&sso.email).await.unwrap(), Some((sso, None)));

    assert_eq!(
        s.user_login(&email("nobody@example.org")).await.unwrap(),
        None
    );
    not_found(s.user(UserId::new()).await, "user");
    assert_eq!(s.user_count().await.unwrap(), 2);
    assert_eq!(audit_count(s).await, 2);
}

async fn user_email_is_unique_ignoring_case(cx: Cx) {
    let s = &*cx.store;
    user(s, "ada@example.org").await;
    let before = audit_count(s).await;
    let again = new_user(" ADA@Example.org");
    let message = conflict(
        s.create_user(&again, &ev(AuditAction::UserCreated)).await,
        "email",
    );
    assert!(message.contains("ada@example.org"), "{message}");
    assert_eq!(s.user_count().await.unwrap(), 1);
    not_found(s.user(again.id).await, "user");
    assert_eq!(audit_count(s).await, before);
}

fn session_of(user: UserId, hash: &str, expires: i64) -> Session {
    Session {
        token_hash: hash.to_owned(),
        user_id: user,
        csrf_token: format!("csrf-{hash}"),
        created_at: at(0),
        expires_at: at(expires),
    }
}

async fn sign_ins_and_outs_are_audited_with_their_change(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let login = NewAuditEvent::new(AuditAction::Login, Some(ada.id));
    let before = audit_count(s).await;
    s.create_session(&session_of(ada.id, "h1", 1000), &login)
        .await
        .unwrap();
    assert_eq!(audit_count(s).await, before + 1);
    // A session that cannot be stored leaves no sign-in behind.
    conflict(
        s.create_session(&session_of(ada.id, "h1", 1000), &login)
            .await,
        "token_hash",
    );
    not_found(
        s.create_session(&session_of(UserId::new(), "h2", 1000), &login)
            .await,
        "user",
    );
    assert_eq!(audit_count(s).await, before + 1);

    // Signing out is audited only when it ended a session.
    let logout = NewAuditEvent::new(AuditAction::Logout, Some(ada.id));
    assert!(s.delete_session("h1", &logout).await.unwrap());
    assert_eq!(audit_count(s).await, before + 2);
    assert!(!s.delete_session("h1", &logout).await.unwrap());
    assert_eq!(audit_count(s).await, before + 2);

    // A token issued by a password sign-in: both events, in order, with the token.
    let events = [
        NewAuditEvent::new(AuditAction::Login, Some(ada.id)),
        NewAuditEvent::new(AuditAction::TokenIssued, Some(ada.id)),
    ];
    let t = token_of(ada.id, "cli", 0);
    s.create_api_token(&t, "tok", &events).await.unwrap();
    let snapshot = s.export().await.unwrap();
    let table = SCHEMA.iter().find(|t| t.name == "audit_events").unwrap();
    let column = |name: &str| table.columns.iter().position(|(c, _)| *c == name).unwrap();
    let (id, action) = (column("id"), column("action"));
    let mut rows: Vec<(Cell, Cell)> = rows_of(&snapshot, "audit_events")
        .iter()
        .map(|r| (r[id].clone(), r[action].clone()))
        .collect();
    rows.sort_by_key(|(id, _)| match id {
        Cell::Uuid(u) => *u,
        other => panic!("audit id is {other:?}"),
    });
    let actions: Vec<Cell> = rows.into_iter().map(|(_, a)| a).rev().take(2).collect();
    assert_eq!(
        actions,
        vec![
            Cell::Text("token_issued".into()),
            Cell::Text("login".into())
        ]
    );
    // A token that cannot be stored leaves neither event behind.
    let count = audit_count(s).await;
    conflict(
        s.create_api_token(&token_of(ada.id, "dup", 0), "tok", &events)
            .await,
        "token_hash",
    );
    assert_eq!(audit_count(s).await, count);
}

async fn set_password_ends_sessions(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let bob = user(s, "bob@example.org").await;
    s.create_session(&session_of(ada.id, "s1", 1000), &ev(AuditAction::Login))
        .await
        .unwrap();
    s.create_session(&session_of(ada.id, "s2", 1000), &ev(AuditAction::Login))
        .await
        .unwrap();
    s.create_session(&session_of(bob.id, "s3", 1000), &ev(AuditAction::Login))
        .await
        .unwrap();
    let before = audit_count(s).await;

    let event = ev(AuditAction::PasswordChanged).target("user", ada.id);
    s.set_password(ada.id, "new-hash", &event).await.unwrap();
    let login = s.user_login(&ada.email).await.unwrap().unwrap();
    assert_eq!(login.1.as_deref(), Some("new-hash"));
    assert_eq!(s.session("s1", at(10)).await.unwrap(), None);
    assert_eq!(s.session("s2", at(10)).await.unwrap(), None);
    // Other people's sessions are untouched.
    assert!(s.session("s3", at(10)).await.unwrap().is_some());
    assert_eq!(audit_count(s).await, before + 1);

    not_found(s.set_password(UserId::new(), "x", &event).await, "user");
    assert_eq!(audit_count(s).await, before + 1);
}

async fn sessions_expire_and_end(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let s1 = session_of(ada.id, "h1", 1000);
    s.create_session(&s1, &ev(AuditAction::Login))
        .await
        .unwrap();
    assert_eq!(
        s.session("h1", at(999)).await.unwrap(),
        Some((s1.clone(), ada.clone()))
    );
    // A session is expired from its expiry instant on.
    assert_eq!(s.session("h1", at(1000)).await.unwrap(), None);
    assert_eq!(s.session("unknown", at(0)).await.unwrap(), None);

    s.create_session(&session_of(ada.id, "h2", 500), &ev(AuditAction::Login))
        .await
        .unwrap();
    s.create_session(&session_of(ada.id, "h3", 2000), &ev(AuditAction::Login))
        .await
        .unwrap();
    // Expired at `now` means expires_at <= now: h1 (at 1000) and h2 go, h3 stays.
    assert_eq!(s.delete_expired_sessions(at(1000)).await.unwrap(), 2);
    assert_eq!(s.delete_expired_sessions(at(1000)).await.unwrap(), 0);
    assert!(s.session("h3", at(1500)).await.unwrap().is_some());
    let logout = ev(AuditAction::Logout);
    assert!(s.delete_session("h3", &logout).await.unwrap());
    assert_eq!(s.session("h3", at(1500)).await.unwrap(), None);
    assert!(!s.delete_session("h3", &logout).await.unwrap());

    not_found(
        s.create_session(
            &session_of(UserId::new(), "h4", 10),
            &ev(AuditAction::Login),
        )
        .await,
        "user",
    );
}

fn token_of(user: UserId, name: &str, created: i64) -> ApiToken {
    ApiToken {
        id: ApiTokenId::new(),
        user_id: user,
        name: name.to_owned(),
        prefix: format!("sb_{name}"),
        created_at: at(created),
        expires_at: at(10_000),
        last_used_at: None,
        revoked_at: None,
    }
}

async fn api_tokens_lifecycle(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let bob = user(s, "bob@example.org").await;
    let issued = ev(AuditAction::TokenIssued);
    let t1 = token_of(ada.id, "laptop", 0);
    let t2 = token_of(ada.id, "ci", 100);
    s.create_api_token(&t1, "hash1", std::slice::from_ref(&issued))
        .await
        .unwrap();
    s.create_api_token(&t2, "hash2", std::slice::from_ref(&issued))
        .await
        .unwrap();

    assert_eq!(
        s.api_token("hash1", at(5)).await.unwrap(),
        Some((t1.clone(), ada.clone()))
    );
    assert_eq!(
        s.api_token("hash1", at(10_000)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(s.api_token("nope", at(5)).await.unwrap(), None);

    s.touch_api_token(t1.id, at(50)).await.unwrap();
    let (used, _) = s.api_token("hash1", at(51)).await.unwrap().unwrap();
    assert_eq!(used.last_used_at, Some(at(50)));
    not_found(
        s.touch_api_token(ApiTokenId::new(), at(50)).await,
        "api token",
    );

    // Newest first.
    let ids: Vec<_> = tokens_of(s, ada.id).await.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![t2.id, t1.id]);
    assert!(tokens_of(s, bob.id).await.is_empty());

    let revoked = ev(AuditAction::TokenRevoked);
    not_found(
        s.revoke_api_token(bob.id, t1.id, at(60), &revoked).await,
        "api token",
    );
    let r = s
        .revoke_api_token(ada.id, t1.id, at(60), &revoked)
        .await
        .unwrap();
    assert_eq!(r.revoked_at, Some(at(60)));
    assert_eq!(r.last_used_at, Some(at(50)));
    assert_eq!(s.api_token("hash1", at(61)).await.unwrap(), None);
    // Revoking again keeps the first revocation time.
    let again = s
        .revoke_api_token(ada.id, t1.id, at(70), &revoked)
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(at(60)));
    let listed = tokens_of(s, ada.id).await;
    assert_eq!(listed.len(), 2, "revoked tokens stay listed");
    assert_eq!(listed[1].revoked_at, Some(at(60)));
    assert!(s.api_token("hash2", at(61)).await.unwrap().is_some());

    let before = audit_count(s).await;
    let t3 = token_of(bob.id, "dup", 200);
    conflict(
        s.create_api_token(&t3, "hash2", std::slice::from_ref(&issued))
            .await,
        "token_hash",
    );
    not_found(
        s.create_api_token(
            &token_of(UserId::new(), "ghost", 0),
            "hash9",
            std::slice::from_ref(&issued),
        )
        .await,
        "user",
    );
    assert_eq!(audit_count(s).await, before);
    assert!(tokens_of(s, bob.id).await.is_empty());
}

/// Every token of `user`, in one page.
async fn tokens_of(s: &dyn Store, user: UserId) -> Vec<ApiToken> {
    let page = s.list_api_tokens(user, first(1000)).await.unwrap();
    assert_eq!(page.next, None);
    page.items
}

async fn api_tokens_paginate_newest_first(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let bob = user(s, "bob@example.org").await;
    let issued = [ev(AuditAction::TokenIssued)];
    let mut mine = Vec::new();
    // Two tokens share each creation time, so ties are broken by id.
    for i in 0..7 {
        let t = token_of(ada.id, &format!("t{i}"), i64::from(i / 2) * 10);
        s.create_api_token(&t, &format!("ada{i}"), &issued)
            .await
            .unwrap();
        mine.push(t);
    }
    let theirs = token_of(bob.id, "bob", 5);
    s.create_api_token(&theirs, "bob", &issued).await.unwrap();
    mine.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id.0)));
    let expected: Vec<Uuid> = mine.iter().map(|t| t.id.0).collect();

    for limit in [1, 2, 3, 7, 50] {
        let listed = all_pages(limit, |p| s.list_api_tokens(ada.id, p), |t| t.id.0).await;
        let got: Vec<Uuid> = listed.iter().map(|t| t.id.0).collect();
        assert_eq!(got, expected, "limit {limit}");
    }
    // A cursor that is someone else's token finds nothing.
    let foreign = PageRequest {
        after: Some(theirs.id.0),
        limit: 3,
    };
    let empty = s.list_api_tokens(ada.id, foreign).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.next, None);
}

// ---- organizations and members ------------------------------------------------------------

async fn organizations_create_read_update(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let new = new_org("acme");
    let acme = s
        .create_organization(&new, ada.id, &ev(AuditAction::OrgCreated).org(new.id))
        .await
        .unwrap();
    assert_eq!(
        acme,
        Organization {
            id: new.id,
            slug: new.slug.clone(),
            name: new.name.clone(),
            settings: OrgSettings::default(),
            created_at: new.created_at,
        }
    );
    assert_eq!(s.organization(acme.id).await.unwrap(), acme);
    assert_eq!(s.role_of(acme.id, ada.id).await.unwrap(), Some(Role::Owner));

    let before = audit_count(s).await;
    let dup = new_org("acme");
    let message = conflict(
        s.create_organization(&dup, ada.id, &ev(AuditAction::OrgCreated))
            .await,
        "slug",
    );
    assert!(message.contains("acme"), "{message}");
    not_found(s.organization(dup.id).await, "organization");
    not_found(
        s.create_organization(
            &new_org("ghost"),
            UserId::new(),
            &ev(AuditAction::OrgCreated),
        )
        .await,
        "user",
    );
    assert_eq!(audit_count(s).await, before);

    let updated = ev(AuditAction::OrgUpdated).org(acme.id);
    let renamed = s
        .update_organization(acme.id, Some("Acme Labs"), None, &updated)
        .await
        .unwrap();
    assert_eq!(renamed.name, "Acme Labs");
    assert_eq!(renamed.settings, OrgSettings::default());
    let allowed = OrgSettings {
        new_functions: NewFunctionState::Allowed,
        ..OrgSettings::default()
    };
    let changed = s
        .update_organization(acme.id, None, Some(&allowed), &updated)
        .await
        .unwrap();
    assert_eq!(changed.name, "Acme Labs");
    assert_eq!(changed.settings, allowed);
    assert_eq!(s.organization(acme.id).await.unwrap(), changed);
    assert_eq!(audit_count(s).await, before + 2);
    not_found(
        s.update_organization(OrgId::new(), Some("x"), None, &updated)
            .await,
        "organization",
    );
}

async fn organizations_of_sorts_slugs_by_bytes(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let bob = user(s, "bob@example.org").await;
    org(s, "acme", ada.id).await;
    org(s, "ab", ada.id).await;
    org(s, "a-c", ada.id).await;
    let zeta = org(s, "zeta", bob.id).await;
    s.add_member(
        zeta.id,
        ada.id,
        Role::Member,
        at(3),
        &ev(AuditAction::MemberAdded),
    )
    .await
    .unwrap();
    org(s, "other", bob.id).await;
    // By bytes, '-' sorts before letters; a locale-aware collation would put "ab" first.
    let listed: Vec<(String, Role)> = s
        .organizations_of(ada.id)
        .await
        .unwrap()
        .into_iter()
        .map(|(o, r)| (o.slug.to_string(), r))
        .collect();
    let expected = [
        ("a-c", Role::Owner),
        ("ab", Role::Owner),
        ("acme", Role::Owner),
        ("zeta", Role::Member),
    ];
    let expected: Vec<(String, Role)> = expected
        .iter()
        .map(|(s, r)| ((*s).to_owned(), *r))
        .collect();
    assert_eq!(listed, expected);
    assert!(s.organizations_of(UserId::new()).await.unwrap().is_empty());
}

async fn organizations_paginate_by_slug(cx: Cx) {
    let s = &*cx.store;
    let ada = user(s, "ada@example.org").await;
    let bob = user(s, "bob@example.org").await;
    for slug in ["acme", "ab", "a-c", "b", "zz", "m-1"] {
        org(s, slug, ada.id).await;
    }
    let zeta = org(s, "zeta", bob.id).await;
    s.add_member(
        zeta.id,
        ada.id,
        Role::Member,
        at(3),
        &ev(AuditAction::MemberAdded),
    )
    .await
    .unwrap();
    let other = org(s, "other", bob.id).await;
    let everything = s.organizations_of(ada.id).await.unwrap();
    assert_eq!(everything.len(), 7);

    for limit in [1, 2, 3, 7, 50] {
        let listed = all_pages(limit, |p| s.list_organizations(ada.id, p), |(o, _)| o.id.0).await;
        assert_eq!(listed, everything, "limit {limit}");
    }
    // A cursor naming an organization the user is not in finds nothing.
    let foreign = PageRequest {
        after: Some(other.id.0),
        limit: 3,
    };
    let empty = s.list_organizations(ada.id, foreign).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.next, None);
    let nobody = s.list_organizations(UserId::new(), first(3)).await.unwrap();
    assert!(nobody.items.is_empty());
}

async fn members_add_read_and_change(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let bob = user(s, "bob@example.org").await;
    let added = ev(AuditAction::MemberAdded).org(acme.id);
    let m = s
        .add_member(acme.id, bob.id, Role::Member, at(5), &added)
        .await
        .unwrap();
    assert_eq!(m.user_id, bob.id);
    assert_eq!(m.email, bob.email);
    assert_eq!(m.display_name, bob.display_name);
    assert_eq!(m.role, Role::Member);
    assert_eq!(m.joined_at, at(5));
    assert_eq!(s.member(acme.id, bob.id).await.unwrap(), m);
    assert_eq!(
        s.role_of(acme.id, bob.id).await.unwrap(),
        Some(Role::Member)
    );

    let before = audit_count(s).await;
    let message = conflict(
        s.add_member(acme.id, bob.id, Role::Admin, at(6), &added)
            .await,
        "email",
    );
    assert!(message.contains("bob@example.org"), "{message}");
    assert_eq!(
        s.role_of(acme.id, bob.id).await.unwrap(),
        Some(Role::Member)
    );
    not_found(
        s.add_member(acme.id, UserId::new(), Role::Member, at(6), &added)
            .await,
        "user",
    );
    not_found(
        s.add_member(OrgId::new(), bob.id, Role::Member, at(6), &added)
            .await,
        "organization",
    );
    assert_eq!(audit_count(s).await, before);

    let carl = user(s, "carl@example.org").await;
    assert_eq!(s.role_of(acme.id, carl.id).await.unwrap(), None);
    not_found(s.member(acme.id, carl.id).await, "member");
    let role = ev(AuditAction::RoleChanged).org(acme.id);
    not_found(
        s.set_role(acme.id, carl.id, Role::Admin, &role).await,
        "member",
    );
    not_found(
        s.remove_member(acme.id, carl.id, &ev(AuditAction::MemberRemoved))
            .await,
        "member",
    );

    let promoted = s
        .set_role(acme.id, bob.id, Role::Admin, &role)
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Admin);
    assert_eq!(promoted.joined_at, at(5));
    assert_eq!(s.role_of(acme.id, bob.id).await.unwrap(), Some(Role::Admin));

    // Membership is per organization.
    let beta = org(s, "beta", carl.id).await;
    not_found(s.member(beta.id, bob.id).await, "member");
    assert_eq!(s.role_of(beta.id, bob.id).await.unwrap(), None);
}

async fn add_new_member_is_one_transaction(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let added = ev(AuditAction::MemberAdded).org(acme.id);
    let dan = new_user("dan@example.org");
    let m = s
        .add_new_member(acme.id, &dan, Role::Admin, &added)
        .await
        .unwrap();
    assert_eq!(
        (m.user_id, m.role, m.joined_at),
        (dan.id, Role::Admin, dan.created_at)
    );
    assert_eq!(s.user(dan.id).await.unwrap().email, dan.email);
    assert_eq!(s.member(acme.id, dan.id).await.unwrap(), m);

    let users_before = s.user_count().await.unwrap();
    let audit_before = audit_count(s).await;
    let mut taken = new_user("other@example.org");
    taken.email = ada.email.clone();
    conflict(
        s.add_new_member(acme.id, &taken, Role::Member, &added)
            .await,
        "email",
    );
    let orphan = new_user("orphan@example.org");
    not_found(
        s.add_new_member(OrgId::new(), &orphan, Role::Member, &added)
            .await,
        "organization",
    );
    assert_eq!(
        s.user_count().await.unwrap(),
        users_before,
        "no account is left behind"
    );
    assert!(s.user_login(&orphan.email).await.unwrap().is_none());
    assert_eq!(audit_count(s).await, audit_before);
}

async fn members_paginate_without_gaps(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let mut ids = vec![ada.id.0];
    for i in 0..6 {
        ids.push(
            join(s, acme.id, &format!("m{i}@example.org"), Role::Member)
                .await
                .id
                .0,
        );
    }
    // Members of another organization never show.
    let beta = org(s, "beta", ada.id).await;
    join(s, beta.id, "outsider@example.org", Role::Member).await;
    ids.sort();

    for limit in [1, 3, 6, 7, 50] {
        let listed = all_pages(limit, |p| s.list_members(acme.id, p), |m| m.user_id.0).await;
        let got: Vec<Uuid> = listed.iter().map(|m| m.user_id.0).collect();
        assert_eq!(got, ids, "limit {limit}");
    }
    let after_last = PageRequest {
        after: ids.last().copied(),
        limit: 3,
    };
    let empty = s.list_members(acme.id, after_last).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.next, None);
}

async fn last_owner_cannot_be_demoted(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let role = ev(AuditAction::RoleChanged).org(acme.id);
    let before = audit_count(s).await;
    last_owner(s.set_role(acme.id, ada.id, Role::Admin, &role).await);
    last_owner(s.set_role(acme.id, ada.id, Role::Member, &role).await);
    assert_eq!(s.role_of(acme.id, ada.id).await.unwrap(), Some(Role::Owner));
    assert_eq!(audit_count(s).await, before);

    // Keeping the role of the last owner is no change and is allowed.
    s.set_role(acme.id, ada.id, Role::Owner, &role)
        .await
        .unwrap();

    let bob = join(s, acme.id, "bob@example.org", Role::Owner).await;
    s.set_role(acme.id, ada.id, Role::Admin, &role)
        .await
        .unwrap();
    last_owner(s.set_role(acme.id, bob.id, Role::Member, &role).await);
    assert_eq!(s.role_of(acme.id, bob.id).await.unwrap(), Some(Role::Owner));

    // Another organization's owners do not count.
    let beta = org(s, "beta", ada.id).await;
    last_owner(s.set_role(beta.id, ada.id, Role::Member, &role).await);
}

async fn last_owner_cannot_be_removed(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let removed = ev(AuditAction::MemberRemoved).org(acme.id);
    let before = audit_count(s).await;
    last_owner(s.remove_member(acme.id, ada.id, &removed).await);
    assert_eq!(s.role_of(acme.id, ada.id).await.unwrap(), Some(Role::Owner));
    assert_eq!(audit_count(s).await, before);

    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    s.remove_member(acme.id, bob.id, &removed).await.unwrap();
    assert_eq!(s.role_of(acme.id, bob.id).await.unwrap(), None);
    not_found(s.remove_member(acme.id, bob.id, &removed).await, "member");
    // The account itself stays.
    assert_eq!(s.user(bob.id).await.unwrap(), bob);

    let carl = join(s, acme.id, "carl@example.org", Role::Owner).await;
    s.remove_member(acme.id, ada.id, &removed).await.unwrap();
    last_owner(s.remove_member(acme.id, carl.id, &removed).await);
}

async fn concurrent_demotions_keep_an_owner(cx: Cx) {
    let s = cx.store.clone();
    let (acme, ada) = world(&*s).await;
    let bob = join(&*s, acme.id, "bob@example.org", Role::Owner).await;
    let role = ev(AuditAction::RoleChanged).org(acme.id);
    for round in 0..5 {
        let tasks: Vec<_> = [ada.id, bob.id]
            .into_iter()
            .map(|u| {
                let s = s.clone();
                let role = role.clone();
                tokio::spawn(async move { s.set_role(acme.id, u, Role::Member, &role).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::LastOwner) => {}
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one demotion may pass");
        let owners = s
            .list_members(acme.id, first(10))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|m| m.role == Role::Owner)
            .count();
        assert_eq!(owners, 1, "round {round}");
        for u in [ada.id, bob.id] {
            s.set_role(acme.id, u, Role::Owner, &role).await.unwrap();
        }
    }
}

async fn remove_member_drops_their_preferences_and_credentials(cx: Cx) {
    let a = &*cx.store;
    let (acme, ada) = world(a).await;
    let bob = join(a, acme.id, "bob@example.org", Role::Member).await;
    let beta = org(a, "beta", ada.id).await;
    a.add_member(
        beta.id,
        bob.id,
        Role::Member,
        at(3),
        &ev(AuditAction::MemberAdded),
    )
    .await
    .unwrap();
    let docs = connector(a, acme.id, "Docs").await;
    let wiki = connector(a, beta.id, "Wiki").await;
    sync(
        a,
        acme.id,
        docs.id,
        &[tool("search", "s")],
        NewFunctionState::Allowed,
        5,
    )
    .await;
    sync(
        a,
        beta.id,
        wiki.id,
        &[tool("read", "r")],
        NewFunctionState::Allowed,
        5,
    )
    .await;
    let pref = ev(AuditAction::PreferenceChanged);
    for (o, c, f, p) in [
        (acme.id, docs.id, "search", MemberPreference::Always),
        (beta.id, wiki.id, "read", MemberPreference::Never),
    ] {
        a.set_preference(o, c, f, bob.id, Some(p), at(6), &pref)
            .await
            .unwrap();
        a.set_preference(o, c, f, ada.id, Some(p), at(6), &pref)
            .await
            .unwrap();
    }
    let s = copy_with(
        &cx,
        a,
        "connector_credentials",
        vec![
            member_credential_row(docs.id, bob.id, "bob-docs"),
            member_credential_row(wiki.id, bob.id, "bob-wiki"),
            member_credential_row(docs.id, ada.id, "ada-docs"),
        ],
    )
    .await;
    let s = &*s;
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(bob.id))
            .await
            .unwrap(),
        Some(credential("bob-docs"))
    );

    s.remove_member(
        acme.id,
        bob.id,
        &ev(AuditAction::MemberRemoved).org(acme.id),
    )
    .await
    .unwrap();
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(bob.id))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.function(acme.id, docs.id, "search", bob.id)
            .await
            .unwrap()
            .preference,
        None
    );
    // Other members and other organizations keep theirs.
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(ada.id))
            .await
            .unwrap(),
        Some(credential("ada-docs"))
    );
    assert_eq!(
        s.function(acme.id, docs.id, "search", ada.id)
            .await
            .unwrap()
            .preference,
        Some(MemberPreference::Always)
    );
    assert_eq!(
        s.connector_credential(beta.id, wiki.id, Some(bob.id))
            .await
            .unwrap(),
        Some(credential("bob-wiki"))
    );
    assert_eq!(
        s.function(beta.id, wiki.id, "read", bob.id)
            .await
            .unwrap()
            .preference,
        Some(MemberPreference::Never)
    );
}

// ---- connectors ---------------------------------------------------------------------------

async fn connectors_create_and_read(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let mut new = new_connector(acme.id, "GitHub");
    new.description = Some(Description::parse("Code and issues").unwrap());
    new.auth_method = AuthMethod::Bearer;
    new.credential = Some(credential("sealed-org"));
    new.created_at = at(10);
    let created = ev(AuditAction::ConnectorCreated).org(acme.id);
    let github = s.create_connector(&new, &created).await.unwrap();
    assert_eq!(
        github,
        Connector {
            id: new.id,
            org_id: acme.id,
            name: new.name.clone(),
            url: new.url.clone(),
            description: new.description.clone(),
            status: ConnectorStatus::Connecting,
            last_error: None,
            auth_method: AuthMethod::Bearer,
            has_credential: true,
            credential_scope: CredentialScope::Shared,
            auth_detail: None,
            transport: None,
            protocol_version: None,
            created_at: at(10),
            updated_at: at(10),
        }
    );
    assert_eq!(s.connector(acme.id, github.id).await.unwrap(), github);
    assert_eq!(s.connector_org(github.id).await.unwrap(), acme.id);
    not_found(s.connector_org(ConnectorId::new()).await, "connector");
    not_found(s.connector(acme.id, ConnectorId::new()).await, "connector");
    assert_eq!(
        s.connector_credential(acme.id, github.id, None)
            .await
            .unwrap(),
        Some(credential("sealed-org"))
    );
    assert_eq!(
        s.connector_credential(acme.id, github.id, Some(ada.id))
            .await
            .unwrap(),
        None
    );

    let jira = connector(s, acme.id, "Jira").await;
    assert!(!jira.has_credential);
    assert_eq!(jira.description, None);
    assert_eq!(
        s.connector_credential(acme.id, jira.id, None)
            .await
            .unwrap(),
        None
    );

    let listed = s.list_connectors(acme.id, first(10)).await.unwrap();
    let mut expected = vec![github.id, jira.id];
    expected.sort();
    assert_eq!(
        listed.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(listed.next, None);

    not_found(
        s.create_connector(&new_connector(OrgId::new(), "Ghost"), &created)
            .await,
        "organization",
    );
    let events = log(s, acme.id).await;
    let n = events
        .iter()
        .filter(|e| e.action == AuditAction::ConnectorCreated)
        .count();
    assert_eq!(n, 2);
}

async fn connector_names_are_unique_ignoring_case(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let github = connector(s, acme.id, "GitHub").await;
    let jira = connector(s, acme.id, "Jira").await;
    let before = audit_count(s).await;

    let mut again = new_connector(acme.id, "github");
    again.credential = Some(credential("must-not-stay"));
    let message = conflict(
        s.create_connector(&again, &ev(AuditAction::ConnectorCreated))
            .await,
        "name",
    );
    assert!(message.contains("already exists"), "{message}");
    assert!(message.contains("github"), "{message}");
    not_found(s.connector(acme.id, again.id).await, "connector");

    let mut rename = ConnectorPatch::at(at(20));
    rename.name = Some(ConnectorName::parse("GITHUB").unwrap());
    let updated = ev(AuditAction::ConnectorUpdated).org(acme.id);
    conflict(
        s.update_connector(acme.id, jira.id, &rename, &updated)
            .await,
        "name",
    );
    assert_eq!(s.connector(acme.id, jira.id).await.unwrap(), jira);
    assert_eq!(audit_count(s).await, before);
    let snapshot = s.export().await.unwrap();
    assert!(rows_of(&snapshot, "connector_credentials").is_empty());

    // Changing only the case of one's own name is fine.
    let renamed = s
        .update_connector(acme.id, github.id, &rename, &updated)
        .await
        .unwrap();
    assert_eq!(renamed.name.as_str(), "GITHUB");

    // The same name in another organization is fine.
    let beta = org(s, "beta", ada.id).await;
    connector(s, beta.id, "github").await;
    assert_eq!(
        s.list_connectors(acme.id, first(10))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

async fn connectors_are_scoped_to_their_organization(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = user(s, "bob@example.org").await;
    let beta = org(s, "beta", bob.id).await;
    let mut new = new_connector(acme.id, "Docs");
    new.credential = Some(credential("sealed"));
    let docs = s
        .create_connector(&new, &ev(AuditAction::ConnectorCreated))
        .await
        .unwrap();
    let found = [tool("search", "v1")];
    sync(s, acme.id, docs.id, &found, NewFunctionState::Allowed, 5).await;
    let functions = functions_of(s, acme.id, docs.id, ada.id).await.unwrap();
    let before = audit_count(s).await;
    let hash = found[0].hash.clone();

    let e = ev(AuditAction::ConnectorUpdated).org(beta.id);
    let mut patch = ConnectorPatch::at(at(9));
    patch.name = Some(ConnectorName::parse("Stolen").unwrap());
    patch.credential = Some(None);
    for o in [beta.id, OrgId::new()] {
        not_found(s.connector(o, docs.id).await, "connector");
        not_found(
            s.update_connector(o, docs.id, &patch, &e).await,
            "connector",
        );
        not_found(s.delete_connector(o, docs.id, &e).await, "connector");
        not_found(s.connector_credential(o, docs.id, None).await, "connector");
        not_found(
            s.sync_functions(o, docs.id, &[], NewFunctionState::Allowed, at(9), &e)
                .await,
            "connector",
        );
        not_found(functions_of(s, o, docs.id, bob.id).await, "connector");
        not_found(s.function(o, docs.id, "search", bob.id).await, "connector");
        not_found(s.function_versions(o, docs.id, "search").await, "connector");
        not_found(
            s.set_floor(o, docs.id, "search", FloorPolicy::Blocked, at(9), &e)
                .await,
            "connector",
        );
        not_found(
            s.set_preference(
                o,
                docs.id,
                "search",
                bob.id,
                Some(MemberPreference::Always),
                at(9),
                &e,
            )
            .await,
            "connector",
        );
        not_found(
            s.approve_function(o, docs.id, "search", &hash, at(9), &e)
                .await,
            "connector",
        );
    }
    // An unknown connector id in the right organization is just as absent.
    not_found(s.connector(acme.id, ConnectorId::new()).await, "connector");
    not_found(
        functions_of(s, acme.id, ConnectorId::new(), ada.id).await,
        "connector",
    );

    assert_eq!(s.connector(acme.id, docs.id).await.unwrap(), docs);
    assert_eq!(
        functions_of(s, acme.id, docs.id, ada.id).await.unwrap(),
        functions
    );
    assert_eq!(
        s.connector_credential(acme.id, docs.id, None)
            .await
            .unwrap(),
        Some(credential("sealed"))
    );
    assert_eq!(audit_count(s).await, before);
}

async fn connectors_paginate_without_gaps(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let beta = org(s, "beta", ada.id).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(connector(s, acme.id, &format!("Tool{i}")).await.id.0);
    }
    connector(s, beta.id, "Tool0").await;
    connector(s, beta.id, "Other").await;
    ids.sort();
    for limit in [1, 2, 3, 7, 8] {
        let listed = all_pages(limit, |p| s.list_connectors(acme.id, p), |c| c.id.0).await;
        assert!(listed.iter().all(|c| c.org_id == acme.id));
        let got: Vec<Uuid> = listed.iter().map(|c| c.id.0).collect();
        assert_eq!(got, ids, "limit {limit}");
    }
}

async fn update_connector_applies_the_patch(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let mut new = new_connector(acme.id, "Docs");
    new.description = Some(Description::parse("Team docs").unwrap());
    let docs = s
        .create_connector(&new, &ev(AuditAction::ConnectorCreated))
        .await
        .unwrap();
    let e = ev(AuditAction::ConnectorUpdated).org(acme.id);
    let before = audit_count(s).await;

    let mut p = ConnectorPatch::at(at(100));
    p.url = Some(url("https://docs.example.org/mcp"));
    p.description = Some(None);
    p.status = Some((ConnectorStatus::Error, Some("the server timed out".into())));
    p.auth_method = Some(AuthMethod::Oauth);
    p.transport = Some((Transport::StreamableHttp, "2025-11-25".into()));
    p.credential = Some(Some(credential("first")));
    let u = s.update_connector(acme.id, docs.id, &p, &e).await.unwrap();
    let expected = Connector {
        url: url("https://docs.example.org/mcp"),
        description: None,
        status: ConnectorStatus::Error,
        last_error: Some("the server timed out".into()),
        auth_method: AuthMethod::Oauth,
        has_credential: true,
        transport: Some(Transport::StreamableHttp),
        protocol_version: Some("2025-11-25".into()),
        updated_at: at(100),
        ..docs.clone()
    };
    assert_eq!(u, expected);
    assert_eq!(s.connector(acme.id, docs.id).await.unwrap(), expected);
    assert_eq!(
        s.connector_credential(acme.id, docs.id, None)
            .await
            .unwrap(),
        Some(credential("first"))
    );

    let mut p = ConnectorPatch::at(at(200));
    p.status = Some((ConnectorStatus::Active, None));
    p.credential = Some(Some(StoredCredential {
        kind: CredentialKind::Headers,
        sealed: "second".into(),
    }));
    let u = s.update_connector(acme.id, docs.id, &p, &e).await.unwrap();
    assert_eq!(u.status, ConnectorStatus::Active);
    assert_eq!(u.last_error, None);
    assert_eq!(
        s.connector_credential(acme.id, docs.id, None)
            .await
            .unwrap(),
        Some(StoredCredential {
            kind: CredentialKind::Headers,
            sealed: "second".into()
        })
    );
    let snapshot = s.export().await.unwrap();
    assert_eq!(
        rows_of(&snapshot, "connector_credentials").len(),
        1,
        "replaced, not added"
    );

    // An empty patch changes only the time.
    let u2 = s
        .update_connector(acme.id, docs.id, &ConnectorPatch::at(at(300)), &e)
        .await
        .unwrap();
    assert_eq!(
        u2,
        Connector {
            updated_at: at(300),
            ..u.clone()
        }
    );

    let mut p = ConnectorPatch::at(at(400));
    p.credential = Some(None);
    p.description = Some(Some(Description::parse("Back again").unwrap()));
    let u3 = s.update_connector(acme.id, docs.id, &p, &e).await.unwrap();
    assert!(!u3.has_credential);
    assert_eq!(
        u3.description.as_ref().map(|d| d.as_str()),
        Some("Back again")
    );
    assert_eq!(
        s.connector_credential(acme.id, docs.id, None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(audit_count(s).await, before + 4);

    not_found(
        s.update_connector(acme.id, ConnectorId::new(), &ConnectorPatch::at(at(1)), &e)
            .await,
        "connector",
    );
}

async fn delete_connector_cascades(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let mut new = new_connector(acme.id, "Docs");
    new.credential = Some(credential("sealed"));
    let docs = s
        .create_connector(&new, &ev(AuditAction::ConnectorCreated).org(acme.id))
        .await
        .unwrap();
    let keep = connector(s, acme.id, "Keep").await;
    for c in [docs.id, keep.id] {
        sync(
            s,
            acme.id,
            c,
            &[tool("a", "1"), tool("b", "1")],
            NewFunctionState::Allowed,
            5,
        )
        .await;
        sync(
            s,
            acme.id,
            c,
            &[tool("a", "2"), tool("b", "1")],
            NewFunctionState::Allowed,
            6,
        )
        .await;
        s.set_preference(
            acme.id,
            c,
            "a",
            bob.id,
            Some(MemberPreference::Ask),
            at(7),
            &ev(AuditAction::PreferenceChanged),
        )
        .await
        .unwrap();
    }
    let s2 = copy_with(
        &cx,
        s,
        "connector_credentials",
        vec![member_credential_row(docs.id, bob.id, "bob")],
    )
    .await;
    let s = &*s2;
    let before = s.export().await.unwrap();

    let deleted = ev(AuditAction::ConnectorDeleted)
        .org(acme.id)
        .target("connector", docs.id);
    s.delete_connector(acme.id, docs.id, &deleted)
        .await
        .unwrap();
    not_found(s.connector(acme.id, docs.id).await, "connector");
    not_found(s.connector_org(docs.id).await, "connector");
    not_found(
        s.delete_connector(acme.id, docs.id, &deleted).await,
        "connector",
    );

    // Everything hanging off the deleted connector is gone; the other one keeps all of its.
    let after = s.export().await.unwrap();
    for (table, gone) in [
        ("connectors", 1),
        ("connector_credentials", 2),
        ("functions", 2),
        ("function_versions", 3),
        ("member_preferences", 1),
    ] {
        assert_eq!(
            rows_of(&after, table).len() + gone,
            rows_of(&before, table).len(),
            "{table}"
        );
    }
    assert_eq!(
        functions_of(s, acme.id, keep.id, ada.id)
            .await
            .unwrap()
            .len(),
        2
    );
    // The audit log outlives what it describes.
    assert_eq!(
        rows_of(&after, "audit_events").len(),
        rows_of(&before, "audit_events").len() + 1
    );
    let events = log(s, acme.id).await;
    assert!(
        events
            .iter()
            .any(|e| e.action == AuditAction::ConnectorCreated)
    );
    let last = events.last().unwrap();
    assert_eq!(last.action, AuditAction::ConnectorDeleted);
    assert_eq!(last.target, Some(format!("connector:{}", docs.id)));

    // The name is free again.
    connector(s, acme.id, "docs").await;
}

async fn concurrent_creates_with_one_folded_name(cx: Cx) {
    let s = cx.store.clone();
    let (acme, _ada) = world(&*s).await;
    let before = audit_count(&*s).await;
    let tasks: Vec<_> = (0..20u32)
        .map(|i| {
            // Twenty spellings of one name, differing only in case.
            let name: String = "Searcher"
                .chars()
                .enumerate()
                .map(|(k, ch)| {
                    if i & (1 << (k % 5)) != 0 {
                        ch.to_ascii_uppercase()
                    } else {
                        ch.to_ascii_lowercase()
                    }
                })
                .collect();
            let s = s.clone();
            let new = new_connector(acme.id, &name);
            let event = ev(AuditAction::ConnectorCreated).org(acme.id);
            tokio::spawn(async move { s.create_connector(&new, &event).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Conflict { field: "name", .. }) => {}
            Err(e) => panic!("expected a name conflict, got {e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(
        s.list_connectors(acme.id, first(50))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(audit_count(&*s).await, before + 1);
}

// ---- functions ----------------------------------------------------------------------------

async fn sync_adds_functions_as_the_setting_says(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let found = [tool("search", "find pages"), tool("fetch", "read a page")];
    let event = synced(acme.id).detail(json!({"trigger": "validation"}));
    let summary = s
        .sync_functions(
            acme.id,
            docs.id,
            &found,
            NewFunctionState::Held,
            at(10),
            &event,
        )
        .await
        .unwrap();
    assert_eq!(summary.added, vec!["fetch", "search"]);
    assert!(summary.changed.is_empty() && summary.removed.is_empty());
    assert_eq!(summary.unchanged, 0);

    let listed = functions_of(s, acme.id, docs.id, ada.id).await.unwrap();
    let names: Vec<&str> = listed
        .iter()
        .map(|v| v.function.definition.name.as_str())
        .collect();
    assert_eq!(names, vec!["fetch", "search"]);
    for view in &listed {
        let f = &view.function;
        let d = found
            .iter()
            .find(|d| d.definition.name == f.definition.name)
            .unwrap();
        assert_eq!(f.connector_id, docs.id);
        assert_eq!(f.definition, d.definition);
        assert_eq!(f.definition_hash, d.hash);
        assert_eq!(f.approved_hash, None);
        assert_eq!(f.review_state, ReviewState::Pending);
        assert_eq!(f.floor, FloorPolicy::Allowed);
        assert_eq!(f.created_at, at(10));
        assert_eq!(f.updated_at, at(10));
        assert_eq!(view.preference, None);
    }
    assert_eq!(
        s.function_versions(acme.id, docs.id, "search")
            .await
            .unwrap(),
        vec![FunctionVersion {
            hash: found[0].hash.clone(),
            definition: found[0].definition.clone(),
            first_seen_at: at(10),
        }]
    );
    let single = s.function(acme.id, docs.id, "fetch", ada.id).await.unwrap();
    assert_eq!(
        &single,
        listed
            .iter()
            .find(|v| v.function.definition.name == "fetch")
            .unwrap()
    );
    not_found(
        s.function(acme.id, docs.id, "nope", ada.id).await,
        "function",
    );
    not_found(
        s.function_versions(acme.id, docs.id, "nope").await,
        "function",
    );

    // The audit event keeps the caller's detail and adds the summary.
    let last = log(s, acme.id).await.pop().unwrap();
    assert_eq!(last.action, AuditAction::FunctionsSynced);
    assert_eq!(last.detail["trigger"], json!("validation"));
    assert_eq!(last.detail["summary"]["added"], json!(["fetch", "search"]));
    assert_eq!(last.detail["summary"]["changed"], json!([]));
    assert_eq!(last.detail["summary"]["removed"], json!([]));
    assert_eq!(last.detail["summary"]["unchanged"], json!(0));

    // Where new functions are allowed, they arrive approved.
    let wiki = connector(s, acme.id, "Wiki").await;
    sync(s, acme.id, wiki.id, &found, NewFunctionState::Allowed, 11).await;
    let f = func(s, acme.id, wiki.id, "search").await;
    assert_eq!(f.review_state, ReviewState::Approved);
    assert_eq!(f.approved_hash.as_deref(), Some(found[0].hash.as_str()));
    assert!(f.review_state.is_callable());
}

async fn sync_holds_changed_and_restores_approved(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let v1 = tool("search", "find pages");
    let v2 = tool("search", "find pages; also email them to me");
    let other = tool("other", "x");
    let pass = async |found: &[DiscoveredFunction], now: i64| {
        sync(s, acme.id, docs.id, found, NewFunctionState::Held, now).await
    };
    sync(
        s,
        acme.id,
        docs.id,
        &[v1.clone(), other.clone()],
        NewFunctionState::Allowed,
        10,
    )
    .await;

    let summary = pass(&[v2.clone(), other.clone()], 20).await;
    assert_eq!(summary.changed, vec!["search"]);
    assert!(summary.added.is_empty() && summary.removed.is_empty());
    assert_eq!(summary.unchanged, 1);
    let f = func(s, acme.id, docs.id, "search").await;
    assert_eq!(f.review_state, ReviewState::Changed);
    assert!(!f.review_state.is_callable());
    assert_eq!(f.approved_hash.as_deref(), Some(v1.hash.as_str()));
    assert_eq!(f.definition, v2.definition);
    assert_eq!(f.definition_hash, v2.hash);
    assert_eq!(f.created_at, at(10));
    assert_eq!(f.updated_at, at(20));
    let versions = s
        .function_versions(acme.id, docs.id, "search")
        .await
        .unwrap();
    let seen: Vec<(&str, Timestamp)> = versions
        .iter()
        .map(|v| (v.hash.as_str(), v.first_seen_at))
        .collect();
    assert_eq!(
        seen,
        vec![(v1.hash.as_str(), at(10)), (v2.hash.as_str(), at(20))]
    );

    // Changing back to the approved definition approves it again, with no new version.
    let summary = pass(&[v1.clone(), other.clone()], 30).await;
    assert_eq!(summary.changed, vec!["search"]);
    let f = func(s, acme.id, docs.id, "search").await;
    assert_eq!(f.review_state, ReviewState::Approved);
    assert_eq!(f.approved_hash.as_deref(), Some(v1.hash.as_str()));
    assert_eq!(f.definition, v1.definition);
    assert_eq!(f.updated_at, at(30));
    let versions = s
        .function_versions(acme.id, docs.id, "search")
        .await
        .unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].first_seen_at, at(10));

    // Nothing changed: nothing written, nothing audited.
    let before = audit_count(s).await;
    let summary = pass(&[other.clone(), v1.clone()], 40).await;
    assert_eq!(summary.unchanged, 2);
    assert!(summary.added.is_empty() && summary.changed.is_empty() && summary.removed.is_empty());
    assert_eq!(audit_count(s).await, before);
    let f = func(s, acme.id, docs.id, "search").await;
    assert_eq!(f.updated_at, at(30));
}

async fn sync_keeps_pending_functions_pending(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let v1 = tool("search", "one");
    let v2 = tool("search", "two");
    sync(s, acme.id, docs.id, &[v1], NewFunctionState::Held, 10).await;
    // Even where new functions are now allowed, a function never approved that changes stays
    // pending: there is no approved definition to fall back on.
    let summary = sync(
        s,
        acme.id,
        docs.id,
        std::slice::from_ref(&v2),
        NewFunctionState::Allowed,
        20,
    )
    .await;
    assert_eq!(summary.changed, vec!["search"]);
    let f = func(s, acme.id, docs.id, "search").await;
    assert_eq!(f.review_state, ReviewState::Pending);
    assert_eq!(f.approved_hash, None);
    assert_eq!(f.definition_hash, v2.hash);
    let approved = s
        .approve_function(
            acme.id,
            docs.id,
            "search",
            &v2.hash,
            at(30),
            &ev(AuditAction::FunctionApproved),
        )
        .await
        .unwrap();
    assert_eq!(approved.review_state, ReviewState::Approved);
    assert_eq!(approved.approved_hash.as_deref(), Some(v2.hash.as_str()));
}

async fn sync_marks_removed_and_brings_back(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let search = tool("search", "s");
    let fetch = tool("fetch", "f");
    let pass = async |found: &[DiscoveredFunction], now: i64| {
        sync(s, acme.id, docs.id, found, NewFunctionState::Allowed, now).await
    };
    pass(&[search.clone(), fetch.clone()], 10).await;

    let summary = pass(std::slice::from_ref(&search), 20).await;
    assert_eq!(summary.removed, vec!["fetch"]);
    assert_eq!(summary.unchanged, 1);
    let f = func(s, acme.id, docs.id, "fetch").await;
    assert_eq!(f.review_state, ReviewState::Removed);
    assert!(!f.review_state.is_callable());
    assert_eq!(
        f.approved_hash.as_deref(),
        Some(fetch.hash.as_str()),
        "approval kept"
    );
    assert_eq!(f.definition, fetch.definition, "last definition kept");
    assert_eq!(f.updated_at, at(20));
    assert_eq!(
        functions_of(s, acme.id, docs.id, ada.id)
            .await
            .unwrap()
            .len(),
        2,
        "still listed"
    );

    // Still missing: already removed, so no change and no audit event.
    let before = audit_count(s).await;
    let summary = pass(std::slice::from_ref(&search), 30).await;
    assert!(summary.removed.is_empty() && summary.added.is_empty());
    assert_eq!(audit_count(s).await, before);
    assert_eq!(
        s.function_versions(acme.id, docs.id, "fetch")
            .await
            .unwrap()
            .len(),
        1
    );

    // Back unchanged: offered again as added, and approved again.
    let summary = pass(&[search.clone(), fetch.clone()], 40).await;
    assert_eq!(summary.added, vec!["fetch"]);
    assert_eq!(summary.unchanged, 1);
    let f = func(s, acme.id, docs.id, "fetch").await;
    assert_eq!(f.review_state, ReviewState::Approved);

    // Back with another definition: added, but held as changed.
    pass(std::slice::from_ref(&search), 50).await;
    let fetch2 = tool("fetch", "f, and more");
    let summary = pass(&[search.clone(), fetch2.clone()], 60).await;
    assert_eq!(summary.added, vec!["fetch"]);
    assert!(summary.changed.is_empty());
    let f = func(s, acme.id, docs.id, "fetch").await;
    assert_eq!(f.review_state, ReviewState::Changed);
    assert_eq!(f.approved_hash.as_deref(), Some(fetch.hash.as_str()));
    assert_eq!(
        s.function_versions(acme.id, docs.id, "fetch")
            .await
            .unwrap()
            .len(),
        2
    );

    // Everything gone at once.
    let summary = pass(&[], 70).await;
    assert_eq!(summary.removed, vec!["fetch", "search"]);
}

async fn sync_counts_a_repeated_name_once(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let first_seen = tool("search", "first");
    let found = [first_seen.clone(), tool("search", "second")];
    let summary = sync(s, acme.id, docs.id, &found, NewFunctionState::Held, 10).await;
    assert_eq!(summary.added, vec!["search"]);
    assert_eq!(summary.unchanged, 0);
    let f = func(s, acme.id, docs.id, "search").await;
    assert_eq!(f.definition, first_seen.definition);
    assert_eq!(
        s.function_versions(acme.id, docs.id, "search")
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn approve_function_checks_the_hash(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let v1 = tool("search", "one");
    let v2 = tool("search", "two");
    for (found, now) in [(&v1, 10), (&v2, 20)] {
        sync(
            s,
            acme.id,
            docs.id,
            std::slice::from_ref(found),
            NewFunctionState::Allowed,
            now,
        )
        .await;
    }
    let approve = ev(AuditAction::FunctionApproved).org(acme.id);
    let before = audit_count(s).await;
    // The admin reviewed v1, but the server has moved on to v2.
    conflict(
        s.approve_function(acme.id, docs.id, "search", &v1.hash, at(30), &approve)
            .await,
        "hash",
    );
    let f = func(s, acme.id, docs.id, "search").await;
    assert_eq!(f.review_state, ReviewState::Changed);
    assert_eq!(f.approved_hash.as_deref(), Some(v1.hash.as_str()));
    assert_eq!(audit_count(s).await, before);

    let approved = s
        .approve_function(acme.id, docs.id, "search", &v2.hash, at(40), &approve)
        .await
        .unwrap();
    assert_eq!(approved.review_state, ReviewState::Approved);
    assert_eq!(approved.approved_hash.as_deref(), Some(v2.hash.as_str()));
    assert_eq!(approved.updated_at, at(40));
    assert_eq!(func(s, acme.id, docs.id, "search").await, approved);
    assert_eq!(audit_count(s).await, before + 1);

    not_found(
        s.approve_function(acme.id, docs.id, "nope", &v2.hash, at(50), &approve)
            .await,
        "function",
    );
    // A function the server no longer offers cannot be approved.
    sync(s, acme.id, docs.id, &[], NewFunctionState::Allowed, 60).await;
    conflict(
        s.approve_function(acme.id, docs.id, "search", &v2.hash, at(70), &approve)
            .await,
        "name",
    );
    let f = func(s, acme.id, docs.id, "search").await;
    assert_eq!(f.review_state, ReviewState::Removed);
}

async fn floors_and_preferences(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let outsider = user(s, "carl@example.org").await;
    let docs = connector(s, acme.id, "Docs").await;
    sync(
        s,
        acme.id,
        docs.id,
        &[tool("search", "s"), tool("write", "w")],
        NewFunctionState::Allowed,
        10,
    )
    .await;
    let floor = ev(AuditAction::FloorChanged).org(acme.id);
    let pref = ev(AuditAction::PreferenceChanged).org(acme.id);
    let before = audit_count(s).await;

    let f = s
        .set_floor(acme.id, docs.id, "write", FloorPolicy::Ask, at(20), &floor)
        .await
        .unwrap();
    assert_eq!(f.floor, FloorPolicy::Ask);
    assert_eq!(f.updated_at, at(20));
    assert_eq!(func(s, acme.id, docs.id, "write").await, f);
    assert_eq!(
        func(s, acme.id, docs.id, "search").await.floor,
        FloorPolicy::Allowed
    );
    not_found(
        s.set_floor(acme.id, docs.id, "nope", FloorPolicy::Ask, at(20), &floor)
            .await,
        "function",
    );

    let v = s
        .set_preference(
            acme.id,
            docs.id,
            "write",
            bob.id,
            Some(MemberPreference::Always),
            at(30),
            &pref,
        )
        .await
        .unwrap();
    assert_eq!(v.preference, Some(MemberPreference::Always));
    assert_eq!(v.function.floor, FloorPolicy::Ask);
    assert_eq!(
        s.function(acme.id, docs.id, "write", bob.id)
            .await
            .unwrap()
            .preference,
        Some(MemberPreference::Always)
    );
    assert_eq!(
        s.function(acme.id, docs.id, "write", ada.id)
            .await
            .unwrap()
            .preference,
        None
    );
    let listed = functions_of(s, acme.id, docs.id, bob.id).await.unwrap();
    let prefs: Vec<_> = listed.iter().map(|v| v.preference).collect();
    assert_eq!(prefs, vec![None, Some(MemberPreference::Always)]);

    let v = s
        .set_preference(
            acme.id,
            docs.id,
            "write",
            bob.id,
            Some(MemberPreference::Never),
            at(31),
            &pref,
        )
        .await
        .unwrap();
    assert_eq!(v.preference, Some(MemberPreference::Never));
    // A new floor never resets a member's choice.
    s.set_floor(
        acme.id,
        docs.id,
        "write",
        FloorPolicy::Blocked,
        at(32),
        &floor,
    )
    .await
    .unwrap();
    assert_eq!(
        s.function(acme.id, docs.id, "write", bob.id)
            .await
            .unwrap()
            .preference,
        Some(MemberPreference::Never)
    );

    let v = s
        .set_preference(acme.id, docs.id, "write", bob.id, None, at(33), &pref)
        .await
        .unwrap();
    assert_eq!(v.preference, None);
    assert_eq!(
        functions_of(s, acme.id, docs.id, bob.id).await.unwrap()[1].preference,
        None
    );
    // Clearing what is not set is fine.
    s.set_preference(acme.id, docs.id, "write", bob.id, None, at(34), &pref)
        .await
        .unwrap();
    assert_eq!(audit_count(s).await, before + 6);

    not_found(
        s.set_preference(
            acme.id,
            docs.id,
            "write",
            outsider.id,
            Some(MemberPreference::Always),
            at(35),
            &pref,
        )
        .await,
        "member",
    );
    not_found(
        s.set_preference(
            acme.id,
            docs.id,
            "nope",
            bob.id,
            Some(MemberPreference::Always),
            at(35),
            &pref,
        )
        .await,
        "function",
    );
    assert_eq!(audit_count(s).await, before + 6);
}

async fn functions_sort_by_bytes(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let found: Vec<_> = ["alpha", "B_tool", "a_tool", "Zeta", "a-b", "ab"]
        .iter()
        .map(|n| tool(n, "x"))
        .collect();
    sync(s, acme.id, docs.id, &found, NewFunctionState::Allowed, 10).await;
    let names: Vec<String> = functions_of(s, acme.id, docs.id, ada.id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.function.definition.name)
        .collect();
    // Byte order (what SQLite's BINARY and PostgreSQL's "C" collation give), never a locale's.
    assert_eq!(
        names,
        vec!["B_tool", "Zeta", "a-b", "a_tool", "ab", "alpha"]
    );
}

async fn functions_paginate_by_name(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let mail = connector(s, acme.id, "Mail").await;
    let found: Vec<_> = [
        "alpha", "B_tool", "a_tool", "Zeta", "a-b", "ab", "x1", "x10", "x2",
    ]
    .iter()
    .map(|n| tool(n, "x"))
    .collect();
    sync(s, acme.id, docs.id, &found, NewFunctionState::Allowed, 10).await;
    sync(
        s,
        acme.id,
        mail.id,
        &[tool("send", "x")],
        NewFunctionState::Allowed,
        10,
    )
    .await;
    let pref = ev(AuditAction::PreferenceChanged).org(acme.id);
    s.set_preference(
        acme.id,
        docs.id,
        "x10",
        ada.id,
        Some(MemberPreference::Always),
        at(11),
        &pref,
    )
    .await
    .unwrap();
    let everything = functions_of(s, acme.id, docs.id, ada.id).await.unwrap();
    assert_eq!(everything.len(), found.len());

    for limit in [1, 2, 4, 9, 50] {
        let listed = all_pages(
            limit,
            |p| s.list_functions_page(acme.id, docs.id, ada.id, p),
            |v| v.function.id.0,
        )
        .await;
        assert_eq!(listed, everything, "limit {limit}");
    }
    // A cursor naming another connector's function finds nothing.
    let send = func(s, acme.id, mail.id, "send").await;
    let foreign = PageRequest {
        after: Some(send.id.0),
        limit: 3,
    };
    let empty = s
        .list_functions_page(acme.id, docs.id, ada.id, foreign)
        .await
        .unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.next, None);
    // Scoped like every organization's list.
    let bob = user(s, "bob@example.org").await;
    let beta = org(s, "beta", bob.id).await;
    not_found(
        s.list_functions_page(beta.id, docs.id, bob.id, first(3))
            .await,
        "connector",
    );
}

// ---- audit log ----------------------------------------------------------------------------

async fn audit_is_scoped_to_the_organization(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = user(s, "bob@example.org").await;
    let beta = org(s, "beta", bob.id).await;
    let carl = join(s, acme.id, "carl@example.org", Role::Member).await;
    let dave = user(s, "dave@example.org").await;

    let login = |u: UserId| NewAuditEvent::new(AuditAction::Login, Some(u));
    let t0 = crate::now();
    s.append_audit(&login(carl.id)).await.unwrap();
    s.append_audit(&login(dave.id)).await.unwrap();
    s.append_audit(&login(bob.id)).await.unwrap();
    s.append_audit(&login(ada.id)).await.unwrap();
    let by_outsider = NewAuditEvent::new(AuditAction::OrgUpdated, Some(dave.id))
        .org(acme.id)
        .target("organization", acme.id)
        .detail(json!({"name": {"from": "Org acme", "to": "Acme"}}));
    s.append_audit(&by_outsider).await.unwrap();
    s.append_audit(&ev(AuditAction::OrgUpdated).org(beta.id))
        .await
        .unwrap();
    let t1 = crate::now();

    let events = log(s, acme.id).await;
    let shown: Vec<(AuditAction, Option<UserId>)> =
        events.iter().map(|e| (e.action, e.actor_id)).collect();
    assert_eq!(
        shown,
        vec![
            (AuditAction::OrgCreated, None),
            (AuditAction::MemberAdded, None),
            (AuditAction::Login, Some(carl.id)),
            (AuditAction::Login, Some(ada.id)),
            (AuditAction::OrgUpdated, Some(dave.id)),
        ]
    );
    let stored = events.last().unwrap();
    assert_eq!(stored.org_id, Some(acme.id));
    assert_eq!(stored.target, by_outsider.target);
    assert_eq!(stored.detail, by_outsider.detail);
    assert!(stored.created_at >= t0 && stored.created_at <= t1);
    assert_eq!(events[2].org_id, None);
    assert_eq!(events[2].detail, json!({}));

    let beta_events: Vec<(AuditAction, Option<UserId>)> = log(s, beta.id)
        .await
        .iter()
        .map(|e| (e.action, e.actor_id))
        .collect();
    assert_eq!(
        beta_events,
        vec![
            (AuditAction::OrgCreated, None),
            (AuditAction::Login, Some(bob.id)),
            (AuditAction::OrgUpdated, None),
        ]
    );

    // Only current members' sign-ins show: once carl leaves, his go with him.
    s.remove_member(
        acme.id,
        carl.id,
        &ev(AuditAction::MemberRemoved).org(acme.id),
    )
    .await
    .unwrap();
    let events = log(s, acme.id).await;
    assert!(!events.iter().any(|e| e.actor_id == Some(carl.id)));
    assert_eq!(events.last().unwrap().action, AuditAction::MemberRemoved);
    assert!(log(s, OrgId::new()).await.is_empty());
}

async fn audit_filters(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let pause = || tokio::time::sleep(Duration::from_millis(5));
    pause().await;
    let e = |action, actor: UserId| NewAuditEvent::new(action, Some(actor)).org(acme.id);
    s.append_audit(&e(AuditAction::ConnectorCreated, ada.id))
        .await
        .unwrap();
    pause().await;
    s.append_audit(&e(AuditAction::ConnectorUpdated, bob.id))
        .await
        .unwrap();
    pause().await;
    s.append_audit(&e(AuditAction::ConnectorCreated, bob.id))
        .await
        .unwrap();
    s.append_audit(&NewAuditEvent::new(AuditAction::Login, Some(bob.id)))
        .await
        .unwrap();

    let all = log(s, acme.id).await;
    assert_eq!(all.len(), 6);
    let [_created, _added, e1, e2, e3, login] = &all[..] else {
        panic!("unexpected log {all:?}")
    };
    let ids = |events: Vec<AuditEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();

    let mut f = filter(acme.id);
    f.action = Some(AuditAction::ConnectorCreated);
    assert_eq!(ids(list_log(s, &f).await), vec![e1.id, e3.id]);
    f.actor_id = Some(bob.id);
    assert_eq!(ids(list_log(s, &f).await), vec![e3.id]);

    let mut f = filter(acme.id);
    f.actor_id = Some(bob.id);
    assert_eq!(ids(list_log(s, &f).await), vec![e2.id, e3.id, login.id]);
    f.newest_first = true;
    assert_eq!(ids(list_log(s, &f).await), vec![login.id, e3.id, e2.id]);

    // `since` is inclusive, `until` exclusive.
    let mut f = filter(acme.id);
    f.since = Some(e2.created_at);
    assert_eq!(ids(list_log(s, &f).await), vec![e2.id, e3.id, login.id]);
    let mut f = filter(acme.id);
    f.until = Some(e2.created_at);
    let before_e2 = ids(list_log(s, &f).await);
    assert_eq!(before_e2.last(), Some(&e1.id));
    assert!(!before_e2.contains(&e2.id));
    f.since = Some(e1.created_at);
    assert_eq!(ids(list_log(s, &f).await), vec![e1.id]);

    let mut f = filter(acme.id);
    f.action = Some(AuditAction::Logout);
    assert!(list_log(s, &f).await.is_empty());
}

async fn audit_paginates_both_directions(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    for i in 0..11 {
        let event = NewAuditEvent::new(AuditAction::ConnectorUpdated, Some(ada.id))
            .org(acme.id)
            .target("n", i);
        s.append_audit(&event).await.unwrap();
    }
    let total = log(s, acme.id).await;
    assert_eq!(total.len(), 12);
    let targets: Vec<_> = total[1..]
        .iter()
        .map(|e| e.target.clone().unwrap())
        .collect();
    let expected: Vec<_> = (0..11).map(|i| format!("n:{i}")).collect();
    assert_eq!(targets, expected, "oldest first is the order of appending");

    for limit in [1, 4, 5, 12, 13] {
        let f = filter(acme.id);
        let oldest = all_pages(limit, |p| s.list_audit(&f, p), |e| e.id.0).await;
        let oldest: Vec<Uuid> = oldest.iter().map(|e| e.id.0).collect();
        assert_unique_sorted(&oldest, false);
        assert_eq!(oldest.len(), 12, "limit {limit}");

        let f = AuditFilter {
            newest_first: true,
            ..filter(acme.id)
        };
        let newest = all_pages(limit, |p| s.list_audit(&f, p), |e| e.id.0).await;
        let newest: Vec<Uuid> = newest.iter().map(|e| e.id.0).collect();
        assert_unique_sorted(&newest, true);
        let mut reversed = oldest.clone();
        reversed.reverse();
        assert_eq!(newest, reversed, "limit {limit}");
    }

    // Paging composes with filters.
    let f = AuditFilter {
        action: Some(AuditAction::ConnectorUpdated),
        newest_first: true,
        ..filter(acme.id)
    };
    let paged = all_pages(3, |p| s.list_audit(&f, p), |e| e.id.0).await;
    assert_eq!(paged.len(), 11);
    assert!(
        paged
            .iter()
            .all(|e| e.action == AuditAction::ConnectorUpdated)
    );
}

async fn failed_writes_leave_no_trace(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let docs = connector(s, acme.id, "Docs").await;
    let v1 = tool("search", "one");
    let v2 = tool("search", "two");
    for (found, now) in [(&v1, 10), (&v2, 20)] {
        sync(
            s,
            acme.id,
            docs.id,
            std::slice::from_ref(found),
            NewFunctionState::Allowed,
            now,
        )
        .await;
    }
    s.create_api_token(
        &token_of(ada.id, "t", 0),
        "taken",
        &[ev(AuditAction::TokenIssued)],
    )
    .await
    .unwrap();
    let before = s.export().await.unwrap();
    let e = |a| ev(a).org(acme.id);

    conflict(
        s.create_user(&new_user("ADA@example.org"), &e(AuditAction::UserCreated))
            .await,
        "email",
    );
    conflict(
        s.create_organization(&new_org("acme"), bob.id, &e(AuditAction::OrgCreated))
            .await,
        "slug",
    );
    conflict(
        s.add_member(
            acme.id,
            bob.id,
            Role::Admin,
            at(1),
            &e(AuditAction::MemberAdded),
        )
        .await,
        "email",
    );
    let mut dup = new_connector(acme.id, "DOCS");
    dup.credential = Some(credential("x"));
    conflict(
        s.create_connector(&dup, &e(AuditAction::ConnectorCreated))
            .await,
        "name",
    );
    let other = new_connector(acme.id, "Other");
    let mut patch = ConnectorPatch::at(at(1));
    patch.name = Some(ConnectorName::parse("docs").unwrap());
    not_found(
        s.update_connector(acme.id, other.id, &patch, &e(AuditAction::ConnectorUpdated))
            .await,
        "connector",
    );
    last_owner(
        s.set_role(acme.id, ada.id, Role::Member, &e(AuditAction::RoleChanged))
            .await,
    );
    last_owner(
        s.remove_member(acme.id, ada.id, &e(AuditAction::MemberRemoved))
            .await,
    );
    conflict(
        s.approve_function(
            acme.id,
            docs.id,
            "search",
            &v1.hash,
            at(30),
            &e(AuditAction::FunctionApproved),
        )
        .await,
        "hash",
    );
    conflict(
        s.create_api_token(
            &token_of(bob.id, "t", 0),
            "taken",
            &[e(AuditAction::TokenIssued)],
        )
        .await,
        "token_hash",
    );
    conflict(
        s.create_first_owner(
            &new_user("x@example.org"),
            &new_org("x"),
            "k",
            &e(AuditAction::SetupCompleted),
        )
        .await,
        "setup",
    );
    not_found(
        s.set_password(UserId::new(), "h", &e(AuditAction::PasswordChanged))
            .await,
        "user",
    );
    not_found(
        s.set_floor(
            acme.id,
            docs.id,
            "nope",
            FloorPolicy::Ask,
            at(1),
            &e(AuditAction::FloorChanged),
        )
        .await,
        "function",
    );
    not_found(
        s.revoke_api_token(
            bob.id,
            ApiTokenId::new(),
            at(1),
            &e(AuditAction::TokenRevoked),
        )
        .await,
        "api token",
    );

    assert_eq!(
        s.export().await.unwrap(),
        before,
        "a refused write changes nothing at all"
    );
}

// ---- maintenance --------------------------------------------------------------------------

async fn reseal_all_rewrites_every_credential(cx: Cx) {
    let empty = cx.fresh().await;
    assert_eq!(empty.reseal_all(&|_, s| Ok(s.to_owned())).await.unwrap(), 0);

    let a = &*cx.store;
    let (acme, _ada) = world(a).await;
    let bob = join(a, acme.id, "bob@example.org", Role::Member).await;
    let mut new = new_connector(acme.id, "Docs");
    new.credential = Some(credential("org-secret"));
    let docs = a
        .create_connector(&new, &ev(AuditAction::ConnectorCreated))
        .await
        .unwrap();
    connector(a, acme.id, "Bare").await;
    let s = copy_with(
        &cx,
        a,
        "connector_credentials",
        vec![member_credential_row(docs.id, bob.id, "bob-secret")],
    )
    .await;
    let s = &*s;
    let org_context = credential_seal_context(docs.id, None);
    let bob_context = credential_seal_context(docs.id, Some(bob.id));

    let seen = Mutex::new(Vec::new());
    let rewrite = |context: &str, sealed: &str| -> Result<String, String> {
        seen.lock().unwrap().push(context.to_owned());
        Ok(format!("{sealed}|{context}"))
    };
    assert_eq!(s.reseal_all(&rewrite).await.unwrap(), 2);
    let mut contexts = seen.lock().unwrap().clone();
    contexts.sort();
    let mut expected = vec![org_context.clone(), bob_context.clone()];
    expected.sort();
    assert_eq!(contexts, expected);
    let org_sealed = format!("org-secret|{org_context}");
    let bob_sealed = format!("bob-secret|{bob_context}");
    assert_eq!(
        s.connector_credential(acme.id, docs.id, None)
            .await
            .unwrap()
            .unwrap()
            .sealed,
        org_sealed
    );
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(bob.id))
            .await
            .unwrap()
            .unwrap()
            .sealed,
        bob_sealed
    );

    // One value that cannot be resealed stops the pass and leaves every value as it was.
    let before = s.export().await.unwrap();
    let failing = |context: &str, sealed: &str| -> Result<String, String> {
        if context.contains(":user:") {
            Err("authentication tag mismatch".to_owned())
        } else {
            Ok(format!("new-{sealed}"))
        }
    };
    match s.reseal_all(&failing).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("authentication tag mismatch"), "{message}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(s.export().await.unwrap(), before);
}

/// Fills every table of [`SCHEMA`] with at least one row, through the trait.
async fn populate(s: &dyn Store) -> (Organization, User, Connector) {
    s.set_instance_setting("instance_id", Some("abc"))
        .await
        .unwrap();
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Admin).await;
    let mut nopw = new_user("sso@example.org");
    nopw.password_hash = None;
    s.create_user(&nopw, &ev(AuditAction::UserCreated))
        .await
        .unwrap();
    s.create_session(&session_of(ada.id, "sess", 5000), &ev(AuditAction::Login))
        .await
        .unwrap();
    let t = token_of(ada.id, "cli", 0);
    s.create_api_token(&t, "tok", &[ev(AuditAction::TokenIssued)])
        .await
        .unwrap();
    s.touch_api_token(t.id, at(7)).await.unwrap();
    s.create_api_token(
        &token_of(bob.id, "old", 1),
        "tok2",
        &[ev(AuditAction::TokenIssued)],
    )
    .await
    .unwrap();
    let mut new = new_connector(acme.id, "Docs");
    new.description = Some(Description::parse("Docs, with \"quotes\" and ünïcode").unwrap());
    new.credential = Some(credential("sealed"));
    let docs = s
        .create_connector(&new, &ev(AuditAction::ConnectorCreated).org(acme.id))
        .await
        .unwrap();
    let mut p = ConnectorPatch::at(at(50));
    p.transport = Some((Transport::Sse, "2024-11-05".into()));
    p.credential_scope = Some(CredentialScope::Member);
    p.auth_detail = Some(Some(json!({
        "issuer": ISSUER,
        "scopes_supported": ["read", "write"],
        "pkce": {"methods": ["S256"], "required": true, "n": 1.5, "none": null},
    })));
    p.status = Some((
        ConnectorStatus::NeedsAuth,
        Some("401 from the server".into()),
    ));
    let docs = s
        .update_connector(acme.id, docs.id, &p, &ev(AuditAction::ConnectorUpdated))
        .await
        .unwrap();
    let mut def = definition("search", "s");
    def.output_schema = Some(json!({"type": "object", "properties": {"n": {"type": "integer"}}}));
    def.title = Some("Search".into());
    sync(
        s,
        acme.id,
        docs.id,
        &[DiscoveredFunction::new(def), tool("other", "o")],
        NewFunctionState::Allowed,
        60,
    )
    .await;
    sync(
        s,
        acme.id,
        docs.id,
        &[tool("search", "changed")],
        NewFunctionState::Allowed,
        61,
    )
    .await;
    s.set_preference(
        acme.id,
        docs.id,
        "search",
        bob.id,
        Some(MemberPreference::Ask),
        at(62),
        &ev(AuditAction::PreferenceChanged),
    )
    .await
    .unwrap();
    s.set_member_credential(
        acme.id,
        docs.id,
        bob.id,
        Some(&credential("bob-own")),
        at(63),
        &ev(AuditAction::CredentialChanged).org(acme.id),
    )
    .await
    .unwrap();
    s.put_oauth_client(
        acme.id,
        &oauth_client_of(docs.id, ISSUER, "client"),
        &ev(AuditAction::OAuthClientRegistered).org(acme.id),
    )
    .await
    .unwrap();
    save_grant(s, acme.id, &new_grant(docs.id, None, "org-tokens", 64)).await;
    let mut bobs = new_grant(docs.id, Some(bob.id), "bob-tokens", 65);
    bobs.expires_at = None;
    let bobs = save_grant(s, acme.id, &bobs).await;
    // A lease in flight, so that the lease columns are copied too.
    s.claim_grant_refresh(bobs.id, "replica-1", at(66), at(90_000))
        .await
        .unwrap()
        .unwrap();
    s.create_pending_authorization(&pending_of(
        acme.id,
        docs.id,
        bob.id,
        Some(bob.id),
        "populate",
        1_000_000,
    ))
    .await
    .unwrap();
    s.append_audit(
        &NewAuditEvent::new(AuditAction::Login, Some(ada.id))
            .detail(json!({"ip": "127.0.0.1", "n": 1.5, "list": [1, null, true]})),
    )
    .await
    .unwrap();
    // Chat: settings unlike the defaults, a model with a key, and a conversation with a
    // connector, an ended turn (history) and an open one holding a lease.
    let settings = OrgSettings {
        untrusted_content: UntrustedContent::Standard,
        sampling: true,
        ..OrgSettings::default()
    };
    s.update_organization(acme.id, None, Some(&settings), &ev(AuditAction::OrgUpdated))
        .await
        .unwrap();
    s.set_chat_model(
        acme.id,
        Some(&chat_model_of(Some("sealed-key"), 67)),
        &ev(AuditAction::ChatModelChanged).org(acme.id),
    )
    .await
    .unwrap();
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[docs.id], 70).await;
    let ended = turn_of(&talk, 71);
    start(s, &ended, &events_of(&["turn_started"]))
        .await
        .unwrap();
    let state = json!({"done": true, "n": 1.5});
    let messages = [
        json!({"role": "user", "content": "hi"}),
        json!({"role": "assistant", "content": "hello, ünïcode", "tool_calls": []}),
    ];
    let done = events_of(&["done"]);
    save(
        s,
        TurnSave {
            status: TurnStatus::Done,
            events: &done,
            messages: &messages,
            ..save_of(&ended, 1, &state, 72)
        },
    )
    .await
    .unwrap()
    .unwrap();
    let mut open = turn_of(&talk, 73);
    open.lease_until = Some(at(90_000));
    start(s, &open, &events_of(&["turn_started", "text_delta"]))
        .await
        .unwrap();
    (acme, ada, docs)
}

async fn export_import_round_trip(cx: Cx) {
    let a = &*cx.store;
    let (acme, ada, docs) = populate(a).await;
    let snapshot = a.export().await.unwrap();
    let names: Vec<&str> = snapshot.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, SCHEMA.iter().map(|t| t.name).collect::<Vec<_>>());
    for table in &snapshot.tables {
        assert!(!table.rows.is_empty(), "populate left {} empty", table.name);
    }
    // Each row is in SCHEMA's column order with cells of the declared type.
    for (table, spec) in snapshot.tables.iter().zip(SCHEMA) {
        for row in &table.rows {
            assert_eq!(row.len(), spec.columns.len(), "{}", table.name);
            for (cell, (column, ty)) in row.iter().zip(spec.columns) {
                let fits = matches!(
                    (cell, ty),
                    (Cell::Null, _)
                        | (Cell::Uuid(_), crate::ColumnType::Uuid)
                        | (Cell::Text(_), crate::ColumnType::Text)
                        | (Cell::Int(_), crate::ColumnType::Int)
                        | (Cell::Json(_), crate::ColumnType::Json)
                        | (Cell::Bool(_), crate::ColumnType::Bool)
                );
                assert!(fits, "{}.{column}: {cell:?} is not {ty:?}", table.name);
            }
        }
    }

    let b = cx.fresh().await;
    b.import(&snapshot).await.unwrap();
    assert_eq!(b.export().await.unwrap(), snapshot);
    // The copy answers like the original.
    assert_eq!(b.connector(acme.id, docs.id).await.unwrap(), docs);
    assert_eq!(
        functions_of(&*b, acme.id, docs.id, ada.id).await.unwrap(),
        functions_of(a, acme.id, docs.id, ada.id).await.unwrap()
    );
    assert_eq!(log(&*b, acme.id).await, log(a, acme.id).await);
    assert_eq!(
        b.session("sess", at(1)).await.unwrap(),
        a.session("sess", at(1)).await.unwrap()
    );
    assert_eq!(b.user_count().await.unwrap(), 3);
    assert_eq!(
        b.oauth_client(acme.id, docs.id, ISSUER).await.unwrap(),
        a.oauth_client(acme.id, docs.id, ISSUER).await.unwrap()
    );
    let grants = a.oauth_grants_of_connector(acme.id, docs.id).await.unwrap();
    assert_eq!(grants.len(), 2);
    assert_eq!(
        b.oauth_grants_of_connector(acme.id, docs.id).await.unwrap(),
        grants
    );
    // The organization's credential and the member's (the grants' holders are the same two).
    for holder in grants.iter().map(|g| g.holder) {
        let copied = b
            .connector_credential(acme.id, docs.id, holder)
            .await
            .unwrap();
        assert!(copied.is_some());
        assert_eq!(
            copied,
            a.connector_credential(acme.id, docs.id, holder)
                .await
                .unwrap()
        );
    }
    // The chat rows read back alike, and numbering goes on where the original left off.
    let talks = a
        .list_conversations(acme.id, ada.id, first(10))
        .await
        .unwrap();
    assert_eq!(talks.items.len(), 1);
    assert_eq!(
        b.list_conversations(acme.id, ada.id, first(10))
            .await
            .unwrap(),
        talks
    );
    let talk = &talks.items[0];
    assert_eq!(
        b.chat_messages(talk.id).await.unwrap(),
        a.chat_messages(talk.id).await.unwrap()
    );
    assert_eq!(
        b.chat_events(talk.id, 0, 100).await.unwrap(),
        a.chat_events(talk.id, 0, 100).await.unwrap()
    );
    let open = b.open_turn(talk.id).await.unwrap().unwrap();
    assert_eq!(Some(&open), a.open_turn(talk.id).await.unwrap().as_ref());
    assert_eq!(
        b.chat_model(acme.id).await.unwrap(),
        a.chat_model(acme.id).await.unwrap()
    );
    assert_eq!(
        b.organization(acme.id).await.unwrap(),
        a.organization(acme.id).await.unwrap()
    );
    let more = b
        .append_chat_events(talk.id, open.id, &events_of(&["text_delta"]))
        .await
        .unwrap();
    assert_eq!(seqs(&more), [5]);

    let state = "state-hash-populate";
    let taken = b.take_pending_authorization(state, at(1)).await.unwrap();
    assert!(taken.is_some());
    assert_eq!(
        taken,
        a.take_pending_authorization(state, at(1)).await.unwrap()
    );

    // A snapshot survives its JSON form, as `db copy` may write it to a file.
    let text = serde_json::to_string(&snapshot).unwrap();
    let parsed: Snapshot = serde_json::from_str(&text).unwrap();
    let c = cx.fresh().await;
    c.import(&parsed).await.unwrap();
    assert_eq!(c.export().await.unwrap(), snapshot);
}

async fn import_refuses_a_target_with_users(cx: Cx) {
    let a = &*cx.store;
    populate(a).await;
    let snapshot = a.export().await.unwrap();
    conflict(a.import(&snapshot).await, "target");
    assert_eq!(a.export().await.unwrap(), snapshot);

    let b = cx.fresh().await;
    user(&*b, "someone@example.org").await;
    let before = b.export().await.unwrap();
    conflict(b.import(&snapshot).await, "target");
    assert_eq!(b.export().await.unwrap(), before);
}

async fn import_replaces_what_an_empty_target_holds(cx: Cx) {
    let a = &*cx.store;
    populate(a).await;
    let snapshot = a.export().await.unwrap();
    // A target without users may still hold a setup token and refused sign-ins; after the
    // import it holds exactly the snapshot.
    let b = cx.fresh().await;
    b.set_instance_setting("setup_token", Some("pending"))
        .await
        .unwrap();
    b.set_instance_setting("instance_id", Some("other"))
        .await
        .unwrap();
    b.append_audit(&ev(AuditAction::LoginFailed)).await.unwrap();
    b.import(&snapshot).await.unwrap();
    assert_eq!(b.export().await.unwrap(), snapshot);
}

async fn import_rejects_a_malformed_snapshot(cx: Cx) {
    let a = &*cx.store;
    populate(a).await;
    let good = a.export().await.unwrap();
    let b = cx.fresh().await;

    let mut unknown = good.clone();
    unknown.tables.push(crate::TableDump {
        name: "nonsense".into(),
        rows: vec![],
    });
    let mut short = good.clone();
    short.tables[1].rows[0].pop();
    let mut mistyped = good.clone();
    mistyped.tables[1].rows[0][0] = Cell::Text("not a uuid".into());
    for bad in [&unknown, &short, &mistyped] {
        match b.import(bad).await {
            Err(StoreError::Corrupt(_)) => {}
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // A snapshot whose rows break a foreign key fails as a whole: nothing is kept.
    let mut orphan = good.clone();
    let member = rows_of(&good, "memberships")[0][1].clone();
    let users = orphan
        .tables
        .iter_mut()
        .find(|t| t.name == "users")
        .unwrap();
    users.rows.retain(|r| r[0] != member);
    assert!(b.import(&orphan).await.is_err());
    let after = b.export().await.unwrap();
    assert_eq!(after.row_count(), 0);
    b.import(&good).await.unwrap();
    assert_eq!(b.export().await.unwrap(), good);
}

// ---- authentication: connector fields and member credentials ------------------------------

async fn connector_credential_scope_and_auth_detail(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let mut new = new_connector(acme.id, "Docs");
    new.credential_scope = CredentialScope::Member;
    let docs = s
        .create_connector(&new, &ev(AuditAction::ConnectorCreated).org(acme.id))
        .await
        .unwrap();
    assert_eq!(docs.credential_scope, CredentialScope::Member);
    assert_eq!(docs.auth_detail, None);
    let plain = connector(s, acme.id, "Plain").await;
    assert_eq!(plain.credential_scope, CredentialScope::Shared);

    let detail = json!({
        "issuer": ISSUER,
        "scopes_supported": ["read", "write"],
        "nested": {"n": 1.5, "none": null, "text": "ünïcode \"quoted\""},
    });
    let e = ev(AuditAction::ConnectorUpdated).org(acme.id);
    let mut p = ConnectorPatch::at(at(10));
    p.auth_detail = Some(Some(detail.clone()));
    p.credential_scope = Some(CredentialScope::Shared);
    let u = s.update_connector(acme.id, docs.id, &p, &e).await.unwrap();
    assert_eq!(
        u,
        Connector {
            credential_scope: CredentialScope::Shared,
            auth_detail: Some(detail.clone()),
            updated_at: at(10),
            ..docs.clone()
        }
    );
    assert_eq!(s.connector(acme.id, docs.id).await.unwrap(), u);
    let listed = s.list_connectors(acme.id, first(10)).await.unwrap().items;
    assert!(listed.contains(&u), "{listed:?}");

    // A patch that does not mention them keeps both.
    let mut p = ConnectorPatch::at(at(20));
    p.status = Some((ConnectorStatus::Active, None));
    let u2 = s.update_connector(acme.id, docs.id, &p, &e).await.unwrap();
    assert_eq!(u2.auth_detail, Some(detail));
    assert_eq!(u2.credential_scope, CredentialScope::Shared);

    // `Some(None)` clears the detail.
    let mut p = ConnectorPatch::at(at(30));
    p.auth_detail = Some(None);
    p.credential_scope = Some(CredentialScope::Member);
    let u3 = s.update_connector(acme.id, docs.id, &p, &e).await.unwrap();
    assert_eq!(u3.auth_detail, None);
    assert_eq!(u3.credential_scope, CredentialScope::Member);
    assert_eq!(s.connector(acme.id, docs.id).await.unwrap(), u3);
}

async fn member_credentials_upsert_and_delete(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let mut new = new_connector(acme.id, "Docs");
    new.credential = Some(credential("org-secret"));
    let docs = s
        .create_connector(&new, &ev(AuditAction::ConnectorCreated).org(acme.id))
        .await
        .unwrap();
    let e = ev(AuditAction::CredentialChanged).org(acme.id);
    let before = audit_count(s).await;
    let bob_row = |snapshot: &Snapshot| {
        rows_of(snapshot, "connector_credentials")
            .iter()
            .find(|r| r[2] == Cell::Uuid(bob.id.0))
            .cloned()
    };

    s.set_member_credential(
        acme.id,
        docs.id,
        bob.id,
        Some(&credential("bob-1")),
        at(10),
        &e,
    )
    .await
    .unwrap();
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(bob.id))
            .await
            .unwrap(),
        Some(credential("bob-1"))
    );
    let first_row = bob_row(&s.export().await.unwrap()).unwrap();

    // Replacing keeps the one row (and its id); the organization's credential is untouched.
    let replaced = StoredCredential {
        kind: CredentialKind::Headers,
        sealed: "bob-2".into(),
    };
    s.set_member_credential(acme.id, docs.id, bob.id, Some(&replaced), at(11), &e)
        .await
        .unwrap();
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(bob.id))
            .await
            .unwrap(),
        Some(replaced.clone())
    );
    assert_eq!(
        s.connector_credential(acme.id, docs.id, None)
            .await
            .unwrap(),
        Some(credential("org-secret"))
    );
    let snapshot = s.export().await.unwrap();
    assert_eq!(rows_of(&snapshot, "connector_credentials").len(), 2);
    let second_row = bob_row(&snapshot).unwrap();
    assert_eq!(second_row[0], first_row[0], "replaced in place");
    assert_eq!(second_row[5], Cell::Int(at(11).millis()));

    s.set_member_credential(
        acme.id,
        docs.id,
        ada.id,
        Some(&credential("ada-1")),
        at(12),
        &e,
    )
    .await
    .unwrap();
    // `has_credential` speaks of the organization's credential only.
    let mut p = ConnectorPatch::at(at(13));
    p.credential = Some(None);
    let c = s
        .update_connector(acme.id, docs.id, &p, &ev(AuditAction::ConnectorUpdated))
        .await
        .unwrap();
    assert!(!c.has_credential);
    assert!(!s.connector(acme.id, docs.id).await.unwrap().has_credential);

    // Removing takes only that member's; removing what is not there is no error.
    s.set_member_credential(acme.id, docs.id, bob.id, None, at(14), &e)
        .await
        .unwrap();
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(bob.id))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(ada.id))
            .await
            .unwrap(),
        Some(credential("ada-1"))
    );
    s.set_member_credential(acme.id, docs.id, bob.id, None, at(15), &e)
        .await
        .unwrap();
    // Every accepted change is audited, in its own transaction.
    assert_eq!(audit_count(s).await, before + 6);
    let changed = log(s, acme.id)
        .await
        .iter()
        .filter(|e| e.action == AuditAction::CredentialChanged)
        .count();
    assert_eq!(changed, 5);
}

async fn member_credentials_are_scoped(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let beta = org(s, "beta", ada.id).await;
    let docs = connector(s, acme.id, "Docs").await;
    let wiki = connector(s, beta.id, "Wiki").await;
    let outsider = user(s, "eve@example.org").await;
    let e = ev(AuditAction::CredentialChanged).org(acme.id);
    let c = credential("x");
    let before = s.export().await.unwrap();

    for o in [beta.id, OrgId::new()] {
        for given in [Some(&c), None] {
            not_found(
                s.set_member_credential(o, docs.id, bob.id, given, at(5), &e)
                    .await,
                "connector",
            );
        }
        not_found(
            s.connector_credential(o, docs.id, Some(bob.id)).await,
            "connector",
        );
    }
    not_found(
        s.set_member_credential(acme.id, wiki.id, ada.id, Some(&c), at(5), &e)
            .await,
        "connector",
    );
    not_found(
        s.set_member_credential(acme.id, ConnectorId::new(), ada.id, Some(&c), at(5), &e)
            .await,
        "connector",
    );
    // Only a member of the connector's organization can hold a credential there.
    for who in [outsider.id, UserId::new()] {
        not_found(
            s.set_member_credential(acme.id, docs.id, who, Some(&c), at(5), &e)
                .await,
            "member",
        );
    }
    not_found(
        s.set_member_credential(beta.id, wiki.id, bob.id, Some(&c), at(5), &e)
            .await,
        "member",
    );
    assert_eq!(
        s.export().await.unwrap(),
        before,
        "a refused write changes nothing at all"
    );
}

// ---- authentication: OAuth clients and pending authorizations -----------------------------

async fn oauth_clients_upsert_and_delete(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let wiki = connector(s, acme.id, "Wiki").await;
    let e = ev(AuditAction::OAuthClientRegistered).org(acme.id);
    let before = audit_count(s).await;
    assert_eq!(
        s.oauth_client(acme.id, docs.id, ISSUER).await.unwrap(),
        None
    );

    let first = oauth_client_of(docs.id, ISSUER, "client-1");
    s.put_oauth_client(acme.id, &first, &e).await.unwrap();
    assert_eq!(
        s.oauth_client(acme.id, docs.id, ISSUER).await.unwrap(),
        Some(first.clone())
    );
    // Another issuer is another registration; another connector keeps its own.
    let other = oauth_client_of(docs.id, "https://other.example.org", "client-x");
    s.put_oauth_client(acme.id, &other, &e).await.unwrap();
    let wikis = oauth_client_of(wiki.id, ISSUER, "client-w");
    s.put_oauth_client(acme.id, &wikis, &e).await.unwrap();

    // Registering again with the same issuer replaces the registration whole, id included.
    let second = StoredOAuthClient {
        source: ClientSource::Preregistered,
        created_at: at(30),
        ..oauth_client_of(docs.id, ISSUER, "client-2")
    };
    s.put_oauth_client(acme.id, &second, &e).await.unwrap();
    assert_eq!(
        s.oauth_client(acme.id, docs.id, ISSUER).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        s.oauth_client(acme.id, docs.id, &other.issuer)
            .await
            .unwrap(),
        Some(other.clone())
    );
    assert_eq!(
        rows_of(&s.export().await.unwrap(), "oauth_clients").len(),
        3
    );
    // Issuers are compared exactly.
    assert_eq!(
        s.oauth_client(acme.id, docs.id, "https://AUTH.example.org")
            .await
            .unwrap(),
        None
    );
    assert_eq!(audit_count(s).await, before + 4);

    // Scope: another organization sees no connector, and changes nothing.
    let beta = org(s, "beta", ada.id).await;
    let snapshot = s.export().await.unwrap();
    for o in [beta.id, OrgId::new()] {
        not_found(s.oauth_client(o, wiki.id, ISSUER).await, "connector");
        not_found(s.put_oauth_client(o, &wikis, &e).await, "connector");
        not_found(s.delete_oauth_clients(o, wiki.id).await, "connector");
    }
    assert_eq!(s.export().await.unwrap(), snapshot);

    assert_eq!(s.delete_oauth_clients(acme.id, docs.id).await.unwrap(), 2);
    assert_eq!(
        s.oauth_client(acme.id, docs.id, ISSUER).await.unwrap(),
        None
    );
    assert_eq!(
        s.oauth_client(acme.id, wiki.id, ISSUER).await.unwrap(),
        Some(wikis)
    );
    assert_eq!(s.delete_oauth_clients(acme.id, docs.id).await.unwrap(), 0);
}

async fn pending_authorizations_are_taken_once(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let docs = connector(s, acme.id, "Docs").await;
    let for_org = pending_of(acme.id, docs.id, ada.id, None, "one", 1_000);
    let for_bob = pending_of(acme.id, docs.id, bob.id, Some(bob.id), "two", 1_000);
    s.create_pending_authorization(&for_org).await.unwrap();
    s.create_pending_authorization(&for_bob).await.unwrap();

    // A state hash is taken once; a clash changes nothing.
    let before = s.export().await.unwrap();
    conflict(
        s.create_pending_authorization(&pending_of(acme.id, docs.id, bob.id, None, "one", 2_000))
            .await,
        "state",
    );
    // The connector must be the given organization's.
    let beta = org(s, "beta", ada.id).await;
    let before_beta = s.export().await.unwrap();
    not_found(
        s.create_pending_authorization(&pending_of(beta.id, docs.id, ada.id, None, "x", 1_000))
            .await,
        "connector",
    );
    not_found(
        s.create_pending_authorization(&pending_of(
            acme.id,
            ConnectorId::new(),
            ada.id,
            None,
            "y",
            1_000,
        ))
        .await,
        "connector",
    );
    assert_eq!(s.export().await.unwrap(), before_beta);
    assert_eq!(
        rows_of(&before, "oauth_pending"),
        rows_of(&before_beta, "oauth_pending")
    );

    assert_eq!(
        s.take_pending_authorization(&for_org.state_hash, at(500))
            .await
            .unwrap(),
        Some(for_org.clone())
    );
    assert_eq!(
        s.take_pending_authorization(&for_org.state_hash, at(500))
            .await
            .unwrap(),
        None,
        "a second callback with the same state finds nothing"
    );
    assert_eq!(
        s.take_pending_authorization("state-hash-unknown", at(500))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.take_pending_authorization(&for_bob.state_hash, at(999))
            .await
            .unwrap(),
        Some(for_bob)
    );
    assert!(pending_states(s).await.is_empty());
}

async fn pending_authorizations_expire(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let [early, late, later] = [("early", 100), ("late", 200), ("later", 300)]
        .map(|(state, expires)| pending_of(acme.id, docs.id, ada.id, None, state, expires));
    for p in [&early, &late, &later] {
        s.create_pending_authorization(p).await.unwrap();
    }
    // Expired at its expiry time exactly, like a session; taking an expired one removes it.
    assert_eq!(
        s.take_pending_authorization(&early.state_hash, at(100))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        pending_states(s).await,
        vec![late.state_hash.clone(), later.state_hash.clone()]
    );
    assert_eq!(
        s.delete_expired_pending_authorizations(at(199))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.delete_expired_pending_authorizations(at(200))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.take_pending_authorization(&later.state_hash, at(299))
            .await
            .unwrap(),
        Some(later)
    );
    assert_eq!(
        s.delete_expired_pending_authorizations(at(10_000))
            .await
            .unwrap(),
        0
    );
}

async fn concurrent_takes_of_one_pending_authorization(cx: Cx) {
    let s = cx.store.clone();
    let (acme, ada) = world(&*s).await;
    let docs = connector(&*s, acme.id, "Docs").await;
    for round in 0..3 {
        let p = pending_of(
            acme.id,
            docs.id,
            ada.id,
            None,
            &format!("round-{round}"),
            10_000,
        );
        s.create_pending_authorization(&p).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = s.clone();
                let state = p.state_hash.clone();
                tokio::spawn(async move { s.take_pending_authorization(&state, at(5)).await })
            })
            .collect();
        let mut taken = 0;
        for task in tasks {
            if let Some(got) = task.await.unwrap().unwrap() {
                assert_eq!(got, p);
                taken += 1;
            }
        }
        assert_eq!(taken, 1, "round {round}: exactly one callback completes");
    }
}

// ---- authentication: OAuth grants ---------------------------------------------------------

async fn oauth_grants_save_and_replace(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let docs = connector(s, acme.id, "Docs").await;
    let before = audit_count(s).await;
    assert_eq!(s.oauth_grant(acme.id, docs.id, None).await.unwrap(), None);
    assert!(
        s.oauth_grants_of_connector(acme.id, docs.id)
            .await
            .unwrap()
            .is_empty()
    );

    let first = new_grant(docs.id, None, "org-tokens-1", 10);
    let org_grant = save_grant(s, acme.id, &first).await;
    assert_eq!(
        org_grant,
        OAuthGrant {
            id: first.id,
            connector: docs.id,
            holder: None,
            issuer: ISSUER.into(),
            status: GrantStatus::Active,
            reason: None,
            sealed: "org-tokens-1".into(),
            expires_at: first.expires_at,
            version: 1,
            lease_holder: None,
            lease_until: None,
            created_at: at(10),
            updated_at: at(10),
        }
    );
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, None).await.unwrap(),
        Some(org_grant.clone())
    );
    assert_eq!(grant_now(s, first.id).await, org_grant);
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, Some(bob.id)).await.unwrap(),
        None
    );

    // A member's grant is a second one, beside the organization's.
    let bobs = save_grant(
        s,
        acme.id,
        &new_grant(docs.id, Some(bob.id), "bob-tokens-1", 11),
    )
    .await;
    assert_eq!((bobs.holder, bobs.version), (Some(bob.id), 1));
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, Some(bob.id)).await.unwrap(),
        Some(bobs.clone())
    );

    // Saving again replaces in place: the id and creation time stay; issuer, tokens and expiry
    // are new; the version goes up; a revocation and a lease in flight are cleared.
    s.claim_grant_refresh(org_grant.id, "replica-a", at(12), at(60_000))
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.revoke_oauth_grant(
            org_grant.id,
            1,
            "invalid_grant",
            at(13),
            &ev(AuditAction::OAuthGrantRevoked).org(acme.id),
        )
        .await
        .unwrap()
    );
    let mut again = new_grant(docs.id, None, "org-tokens-2", 20);
    again.issuer = "https://new-auth.example.org".into();
    again.expires_at = None;
    let replaced = save_grant(s, acme.id, &again).await;
    assert_eq!(
        replaced,
        OAuthGrant {
            issuer: again.issuer.clone(),
            sealed: "org-tokens-2".into(),
            expires_at: None,
            version: 2,
            updated_at: at(20),
            ..org_grant.clone()
        }
    );
    not_found(s.oauth_grant_by_id(again.id).await, "oauth grant");
    assert_eq!(grant_now(s, org_grant.id).await, replaced);

    let mut expected = vec![replaced, bobs];
    expected.sort_by_key(|g| g.id.0);
    assert_eq!(
        s.oauth_grants_of_connector(acme.id, docs.id).await.unwrap(),
        expected
    );
    assert_eq!(rows_of(&s.export().await.unwrap(), "oauth_grants").len(), 2);
    // Three saves and one revocation; claiming a lease is not audited.
    assert_eq!(audit_count(s).await, before + 4);
}

async fn oauth_grants_are_scoped(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let beta = org(s, "beta", ada.id).await;
    let docs = connector(s, acme.id, "Docs").await;
    let wiki = connector(s, beta.id, "Wiki").await;
    let outsider = user(s, "eve@example.org").await;
    let g = save_grant(s, acme.id, &new_grant(docs.id, None, "tokens", 5)).await;
    let before = s.export().await.unwrap();
    let e = ev(AuditAction::OAuthConnected).org(beta.id);

    for o in [beta.id, OrgId::new()] {
        not_found(s.oauth_grant(o, docs.id, None).await, "connector");
        not_found(s.oauth_grants_of_connector(o, docs.id).await, "connector");
        not_found(
            s.save_oauth_grant(o, &new_grant(docs.id, None, "stolen", 6), &e)
                .await,
            "connector",
        );
        not_found(
            s.delete_oauth_grant(o, docs.id, None, &e).await,
            "connector",
        );
    }
    not_found(
        s.oauth_grant(acme.id, ConnectorId::new(), None).await,
        "connector",
    );
    // A member grant needs a holder who is a member of the connector's organization.
    for (o, c, who) in [
        (acme.id, docs.id, outsider.id),
        (acme.id, docs.id, UserId::new()),
        (beta.id, wiki.id, bob.id),
    ] {
        not_found(
            s.save_oauth_grant(o, &new_grant(c, Some(who), "x", 6), &e)
                .await,
            "member",
        );
    }
    not_found(s.oauth_grant_by_id(GrantId::new()).await, "oauth grant");
    assert_eq!(
        s.export().await.unwrap(),
        before,
        "a refused write changes nothing at all"
    );
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, None).await.unwrap(),
        Some(g)
    );
}

async fn grant_refresh_lease_is_exclusive(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let g = save_grant(s, acme.id, &new_grant(docs.id, None, "tokens-1", 10)).await;

    let claimed = s
        .claim_grant_refresh(g.id, "a", at(20), at(100))
        .await
        .unwrap()
        .expect("a free lease is granted");
    assert_eq!(
        claimed,
        OAuthGrant {
            lease_holder: Some("a".into()),
            lease_until: Some(at(100)),
            ..g.clone()
        }
    );
    // Nobody gets it while it holds, up to and including its last instant; not even its
    // holder a second time.
    for (who, now) in [("b", 21), ("b", 100), ("a", 50)] {
        assert_eq!(
            s.claim_grant_refresh(g.id, who, at(now), at(now + 80))
                .await
                .unwrap(),
            None,
            "{who} at {now}"
        );
    }
    // Only the holder may finish or release it.
    assert!(
        !s.finish_grant_refresh(g.id, "b", "tokens-b", None, at(30))
            .await
            .unwrap()
    );
    s.release_grant_refresh(g.id, "b").await.unwrap();
    assert_eq!(grant_now(s, g.id).await, claimed);

    // The holder stores the rotated tokens: version up, lease cleared.
    assert!(
        s.finish_grant_refresh(g.id, "a", "tokens-2", Some(at(3_600_040)), at(40))
            .await
            .unwrap()
    );
    let refreshed = OAuthGrant {
        sealed: "tokens-2".into(),
        expires_at: Some(at(3_600_040)),
        version: 2,
        updated_at: at(40),
        ..g.clone()
    };
    assert_eq!(grant_now(s, g.id).await, refreshed);
    assert!(
        !s.finish_grant_refresh(g.id, "a", "tokens-3", None, at(41))
            .await
            .unwrap(),
        "a finished lease is gone"
    );

    // The lease is free at once, and the claim hands over the newest tokens.
    let b = s
        .claim_grant_refresh(g.id, "b", at(41), at(120))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.sealed.as_str(), b.version), ("tokens-2", 2));
    s.release_grant_refresh(g.id, "b").await.unwrap();
    assert_eq!(grant_now(s, g.id).await, refreshed, "released");

    // A lease that ran out can be taken over; its old holder can then no longer finish.
    s.claim_grant_refresh(g.id, "c", at(50), at(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.claim_grant_refresh(g.id, "d", at(60), at(200))
            .await
            .unwrap(),
        None
    );
    let d = s
        .claim_grant_refresh(g.id, "d", at(61), at(200))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.lease_holder.as_deref(), Some("d"));
    assert!(
        !s.finish_grant_refresh(g.id, "c", "late", None, at(62))
            .await
            .unwrap()
    );
    // A holder whose lease ran out while nobody took over still stores its tokens: the server
    // has already rotated the refresh token, and dropping the new one would lose the grant.
    assert!(
        s.finish_grant_refresh(g.id, "d", "tokens-3", None, at(500))
            .await
            .unwrap()
    );
    let now = grant_now(s, g.id).await;
    assert_eq!((now.sealed.as_str(), now.version), ("tokens-3", 3));
    assert_eq!(now.expires_at, None);

    // A revoked grant is not refreshed, and an unknown one has no lease to give.
    assert!(
        s.revoke_oauth_grant(
            g.id,
            3,
            "invalid_grant",
            at(501),
            &ev(AuditAction::OAuthGrantRevoked).org(acme.id),
        )
        .await
        .unwrap()
    );
    assert_eq!(
        s.claim_grant_refresh(g.id, "e", at(502), at(600))
            .await
            .unwrap(),
        None
    );
    let unknown = GrantId::new();
    assert_eq!(
        s.claim_grant_refresh(unknown, "e", at(502), at(600))
            .await
            .unwrap(),
        None
    );
    assert!(
        !s.finish_grant_refresh(unknown, "e", "x", None, at(503))
            .await
            .unwrap()
    );
    s.release_grant_refresh(unknown, "e").await.unwrap();
}

async fn concurrent_refresh_claims_have_one_winner(cx: Cx) {
    let s = cx.store.clone();
    let (acme, _ada) = world(&*s).await;
    let docs = connector(&*s, acme.id, "Docs").await;
    let g = save_grant(&*s, acme.id, &new_grant(docs.id, None, "tokens", 10)).await;
    for round in 0..6i64 {
        let now = 1_000 * (round + 1);
        // Every other round starts from a lease that ran out, which must be taken over by
        // exactly one claimer too.
        if round % 2 == 1 {
            s.claim_grant_refresh(g.id, "stale", at(now - 100), at(now - 1))
                .await
                .unwrap()
                .unwrap();
        }
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let s = s.clone();
                let holder = format!("replica-{round}-{i}");
                tokio::spawn(async move {
                    s.claim_grant_refresh(g.id, &holder, at(now), at(now + 500))
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(claimed) = task.await.unwrap().unwrap() {
                winners.push(claimed.lease_holder.unwrap());
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(
            grant_now(&*s, g.id).await.lease_holder,
            Some(winners[0].clone())
        );
        assert!(
            s.finish_grant_refresh(
                g.id,
                &winners[0],
                &format!("tokens-{round}"),
                None,
                at(now + 1)
            )
            .await
            .unwrap()
        );
        assert_eq!(grant_now(&*s, g.id).await.version, round + 2);
    }
}

async fn revoke_and_delete_grants(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let docs = connector(s, acme.id, "Docs").await;
    let g = save_grant(s, acme.id, &new_grant(docs.id, None, "org-1", 10)).await;
    let bobs = save_grant(s, acme.id, &new_grant(docs.id, Some(bob.id), "bob-1", 11)).await;
    let revoked = ev(AuditAction::OAuthGrantRevoked).org(acme.id);
    let before = audit_count(s).await;

    // A refusal of older tokens does not revoke newer ones.
    let g2 = save_grant(s, acme.id, &new_grant(docs.id, None, "org-2", 20)).await;
    assert_eq!(g2.version, 2);
    assert!(
        !s.revoke_oauth_grant(g.id, 1, "invalid_grant", at(30), &revoked)
            .await
            .unwrap()
    );
    assert_eq!(grant_now(s, g.id).await, g2);

    s.claim_grant_refresh(g.id, "a", at(31), at(100))
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.revoke_oauth_grant(
            g.id,
            2,
            "invalid_grant: refresh token expired",
            at(32),
            &revoked
        )
        .await
        .unwrap()
    );
    let r = grant_now(s, g.id).await;
    assert_eq!(
        r,
        OAuthGrant {
            status: GrantStatus::Revoked,
            reason: Some("invalid_grant: refresh token expired".into()),
            updated_at: at(32),
            ..g2.clone()
        },
        "revoked, the lease cleared, the tokens kept"
    );
    // Revoking again changes nothing; the refresher whose tokens were refused cannot store any.
    assert!(
        !s.revoke_oauth_grant(g.id, 2, "again", at(33), &revoked)
            .await
            .unwrap()
    );
    assert!(
        !s.finish_grant_refresh(g.id, "a", "x", None, at(34))
            .await
            .unwrap()
    );
    assert_eq!(grant_now(s, g.id).await, r);
    not_found(
        s.revoke_oauth_grant(GrantId::new(), 1, "x", at(35), &revoked)
            .await,
        "oauth grant",
    );
    assert_eq!(audit_count(s).await, before + 2);

    // Deleting a member's grant leaves the organization's, and the other way round.
    let disconnected = ev(AuditAction::OAuthDisconnected).org(acme.id);
    assert!(
        s.delete_oauth_grant(acme.id, docs.id, Some(bob.id), &disconnected)
            .await
            .unwrap()
    );
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, Some(bob.id)).await.unwrap(),
        None
    );
    not_found(s.oauth_grant_by_id(bobs.id).await, "oauth grant");
    assert!(
        !s.delete_oauth_grant(acme.id, docs.id, Some(bob.id), &disconnected)
            .await
            .unwrap()
    );
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, None).await.unwrap(),
        Some(r)
    );
    assert!(
        s.delete_oauth_grant(acme.id, docs.id, None, &disconnected)
            .await
            .unwrap()
    );
    assert!(
        s.oauth_grants_of_connector(acme.id, docs.id)
            .await
            .unwrap()
            .is_empty()
    );
    // Only the deletions that deleted something are in the log.
    assert_eq!(audit_count(s).await, before + 4);
    let events = log(s, acme.id).await;
    let count = |a| events.iter().filter(|e| e.action == a).count();
    assert_eq!(count(AuditAction::OAuthDisconnected), 2);
    assert_eq!(count(AuditAction::OAuthGrantRevoked), 1);
}

async fn remove_member_drops_their_oauth_state(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Admin).await;
    let beta = org(s, "beta", ada.id).await;
    s.add_member(
        beta.id,
        bob.id,
        Role::Member,
        at(3),
        &ev(AuditAction::MemberAdded),
    )
    .await
    .unwrap();
    let docs = connector(s, acme.id, "Docs").await;
    let wiki = connector(s, beta.id, "Wiki").await;
    let org_grant = save_grant(s, acme.id, &new_grant(docs.id, None, "org", 5)).await;
    save_grant(s, acme.id, &new_grant(docs.id, Some(bob.id), "bob", 5)).await;
    let adas = save_grant(s, acme.id, &new_grant(docs.id, Some(ada.id), "ada", 5)).await;
    let bob_wiki = save_grant(s, beta.id, &new_grant(wiki.id, Some(bob.id), "bw", 5)).await;
    for (o, c, user, holder, state) in [
        // Bob's own, one he started for the organization, and one that would make him a holder.
        (acme.id, docs.id, bob.id, Some(bob.id), "bob-own"),
        (acme.id, docs.id, bob.id, None, "bob-for-org"),
        (acme.id, docs.id, ada.id, Some(bob.id), "for-bob"),
        // What stays: Ada's, and Bob's in the other organization.
        (acme.id, docs.id, ada.id, Some(ada.id), "ada-own"),
        (beta.id, wiki.id, bob.id, Some(bob.id), "bob-beta"),
    ] {
        s.create_pending_authorization(&pending_of(o, c, user, holder, state, 10_000))
            .await
            .unwrap();
    }

    s.remove_member(
        acme.id,
        bob.id,
        &ev(AuditAction::MemberRemoved).org(acme.id),
    )
    .await
    .unwrap();
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, Some(bob.id)).await.unwrap(),
        None
    );
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, None).await.unwrap(),
        Some(org_grant),
        "the organization's grant stays, whoever connected it"
    );
    assert_eq!(
        s.oauth_grant(acme.id, docs.id, Some(ada.id)).await.unwrap(),
        Some(adas)
    );
    assert_eq!(
        s.oauth_grant(beta.id, wiki.id, Some(bob.id)).await.unwrap(),
        Some(bob_wiki)
    );
    assert_eq!(
        pending_states(s).await,
        vec![
            "state-hash-ada-own".to_owned(),
            "state-hash-bob-beta".to_owned()
        ]
    );
}

async fn delete_connector_takes_its_oauth_state(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let docs = connector(s, acme.id, "Docs").await;
    let keep = connector(s, acme.id, "Keep").await;
    for c in [docs.id, keep.id] {
        s.put_oauth_client(
            acme.id,
            &oauth_client_of(c, ISSUER, "client"),
            &ev(AuditAction::OAuthClientRegistered),
        )
        .await
        .unwrap();
        save_grant(s, acme.id, &new_grant(c, None, "org", 5)).await;
        save_grant(s, acme.id, &new_grant(c, Some(bob.id), "bob", 5)).await;
        s.set_member_credential(
            acme.id,
            c,
            bob.id,
            Some(&credential("bob")),
            at(5),
            &ev(AuditAction::CredentialChanged),
        )
        .await
        .unwrap();
        s.create_pending_authorization(&pending_of(
            acme.id,
            c,
            ada.id,
            None,
            &c.to_string(),
            10_000,
        ))
        .await
        .unwrap();
    }
    let before = s.export().await.unwrap();
    s.delete_connector(acme.id, docs.id, &ev(AuditAction::ConnectorDeleted))
        .await
        .unwrap();
    let after = s.export().await.unwrap();
    for (table, column, gone) in [
        ("oauth_clients", 1, 1),
        ("oauth_grants", 1, 2),
        ("oauth_pending", 2, 1),
        ("connector_credentials", 1, 1),
    ] {
        assert_eq!(
            rows_of(&after, table).len() + gone,
            rows_of(&before, table).len(),
            "{table}"
        );
        assert!(
            rows_of(&after, table)
                .iter()
                .all(|r| r[column] == Cell::Uuid(keep.id.0)),
            "{table} keeps only the other connector's rows"
        );
    }
    assert_eq!(
        s.oauth_grants_of_connector(acme.id, keep.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn reseal_all_covers_oauth_secrets(cx: Cx) {
    let s = &*cx.store;
    let (acme, _ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let mut new = new_connector(acme.id, "Docs");
    new.credential = Some(credential("org-secret"));
    let docs = s
        .create_connector(&new, &ev(AuditAction::ConnectorCreated))
        .await
        .unwrap();
    s.set_member_credential(
        acme.id,
        docs.id,
        bob.id,
        Some(&credential("bob-secret")),
        at(5),
        &ev(AuditAction::CredentialChanged),
    )
    .await
    .unwrap();
    s.put_oauth_client(
        acme.id,
        &oauth_client_of(docs.id, ISSUER, "client-secret"),
        &ev(AuditAction::OAuthClientRegistered),
    )
    .await
    .unwrap();
    let org_grant = save_grant(s, acme.id, &new_grant(docs.id, None, "org-tokens", 6)).await;
    let bob_grant = save_grant(
        s,
        acme.id,
        &new_grant(docs.id, Some(bob.id), "bob-tokens", 6),
    )
    .await;
    let pending = pending_of(acme.id, docs.id, bob.id, Some(bob.id), "p", 10_000);
    s.create_pending_authorization(&pending).await.unwrap();

    // One value that cannot be resealed stops the pass, whichever table it is in, and leaves
    // every value as it was.
    let before = s.export().await.unwrap();
    for failing_kind in [
        "connector-credential:",
        "oauth-client:",
        "oauth-grant:",
        "oauth-pending:",
    ] {
        let failing = |context: &str, sealed: &str| -> Result<String, String> {
            if context.starts_with(failing_kind) {
                Err("authentication tag mismatch".to_owned())
            } else {
                Ok(format!("new-{sealed}"))
            }
        };
        match s.reseal_all(&failing).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("authentication tag mismatch"), "{message}")
            }
            other => panic!("{failing_kind}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(s.export().await.unwrap(), before, "{failing_kind}");
    }

    let seen = Mutex::new(Vec::new());
    let rewrite = |context: &str, sealed: &str| -> Result<String, String> {
        seen.lock().unwrap().push(context.to_owned());
        Ok(format!("{sealed}|{context}"))
    };
    assert_eq!(s.reseal_all(&rewrite).await.unwrap(), 6);
    let mut contexts = seen.lock().unwrap().clone();
    contexts.sort();
    let mut expected = vec![
        credential_seal_context(docs.id, None),
        credential_seal_context(docs.id, Some(bob.id)),
        client_seal_context(docs.id, ISSUER),
        grant_seal_context(docs.id, None, ISSUER),
        grant_seal_context(docs.id, Some(bob.id), ISSUER),
        pending_seal_context(&pending.state_hash),
    ];
    expected.sort();
    assert_eq!(contexts, expected);

    let sealed_for = |value: &str, context: String| format!("{value}|{context}");
    assert_eq!(
        s.connector_credential(acme.id, docs.id, Some(bob.id))
            .await
            .unwrap()
            .unwrap()
            .sealed,
        sealed_for("bob-secret", credential_seal_context(docs.id, Some(bob.id)))
    );
    assert_eq!(
        s.oauth_client(acme.id, docs.id, ISSUER)
            .await
            .unwrap()
            .unwrap()
            .sealed,
        sealed_for("client-secret", client_seal_context(docs.id, ISSUER))
    );
    // Resealing is not a change of tokens: the version and everything else stay.
    assert_eq!(
        grant_now(s, org_grant.id).await,
        OAuthGrant {
            sealed: sealed_for("org-tokens", grant_seal_context(docs.id, None, ISSUER)),
            ..org_grant
        }
    );
    assert_eq!(
        grant_now(s, bob_grant.id).await.sealed,
        sealed_for(
            "bob-tokens",
            grant_seal_context(docs.id, Some(bob.id), ISSUER)
        )
    );
    assert_eq!(
        s.take_pending_authorization(&pending.state_hash, at(11))
            .await
            .unwrap()
            .unwrap()
            .sealed,
        sealed_for(
            "sealed-verifier-p",
            pending_seal_context(&pending.state_hash)
        )
    );
}

// ---- chat ---------------------------------------------------------------------------------

async fn org_chat_settings_round_trip(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    // Organizations start with the defaults: strict about untrusted content, no sampling.
    assert_eq!(acme.settings.untrusted_content, UntrustedContent::Strict);
    assert!(!acme.settings.sampling);
    assert_eq!(
        s.organization(acme.id).await.unwrap().settings,
        OrgSettings::default()
    );

    let open = OrgSettings {
        new_functions: NewFunctionState::Allowed,
        untrusted_content: UntrustedContent::Standard,
        sampling: true,
    };
    let mut new = new_org("globex");
    new.settings = open.clone();
    let globex = s
        .create_organization(&new, ada.id, &ev(AuditAction::OrgCreated))
        .await
        .unwrap();
    assert_eq!(globex.settings, open);
    assert_eq!(s.organization(globex.id).await.unwrap().settings, open);
    let mine = s.organizations_of(ada.id).await.unwrap();
    assert_eq!(
        mine.iter()
            .map(|(o, _)| o.settings.clone())
            .collect::<Vec<_>>(),
        [OrgSettings::default(), open.clone()]
    );

    // Each setting changes on its own, and a rename keeps them.
    let updated = ev(AuditAction::OrgUpdated);
    let sampling_only = OrgSettings {
        sampling: true,
        ..OrgSettings::default()
    };
    let changed = s
        .update_organization(acme.id, None, Some(&sampling_only), &updated)
        .await
        .unwrap();
    assert_eq!(changed.settings, sampling_only);
    let renamed = s
        .update_organization(acme.id, Some("Acme Labs"), None, &updated)
        .await
        .unwrap();
    assert_eq!(renamed.settings, sampling_only);
    let back = s
        .update_organization(globex.id, None, Some(&OrgSettings::default()), &updated)
        .await
        .unwrap();
    assert_eq!(back.settings, OrgSettings::default());
    assert_eq!(s.organization(globex.id).await.unwrap(), back);
    assert_eq!(s.organization(acme.id).await.unwrap(), renamed);
}

async fn chat_model_set_get_and_clear(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let globex = org(s, "globex", ada.id).await;
    assert_eq!(s.chat_model(acme.id).await.unwrap(), None);
    let before = audit_count(s).await;
    let changed = |org: OrgId| ev(AuditAction::ChatModelChanged).org(org);

    let keyed = chat_model_of(Some("sealed-key"), 10);
    s.set_chat_model(acme.id, Some(&keyed), &changed(acme.id))
        .await
        .unwrap();
    assert_eq!(s.chat_model(acme.id).await.unwrap(), Some(keyed.clone()));
    assert_eq!(s.chat_model(globex.id).await.unwrap(), None);

    // Setting again replaces the whole row, key included.
    let local = StoredChatModel {
        kind: ProviderKind::OpenAi,
        base_url: "http://localhost:11434/v1".to_owned(),
        model: "llama3.2".to_owned(),
        sealed_key: None,
        updated_at: at(20),
    };
    s.set_chat_model(acme.id, Some(&local), &changed(acme.id))
        .await
        .unwrap();
    assert_eq!(s.chat_model(acme.id).await.unwrap(), Some(local.clone()));
    s.set_chat_model(globex.id, Some(&keyed), &changed(globex.id))
        .await
        .unwrap();

    s.set_chat_model(acme.id, None, &changed(acme.id))
        .await
        .unwrap();
    assert_eq!(s.chat_model(acme.id).await.unwrap(), None);
    assert_eq!(s.chat_model(globex.id).await.unwrap(), Some(keyed.clone()));
    // Clearing what is not set is not an error.
    s.set_chat_model(acme.id, None, &changed(acme.id))
        .await
        .unwrap();
    assert_eq!(audit_count(s).await, before + 5);
    assert_eq!(
        log(s, acme.id)
            .await
            .iter()
            .filter(|e| e.action == AuditAction::ChatModelChanged)
            .count(),
        4
    );

    let ghost = OrgId::new();
    not_found(
        s.set_chat_model(ghost, Some(&keyed), &changed(ghost)).await,
        "organization",
    );
    assert_eq!(audit_count(s).await, before + 5);
}

async fn conversations_are_scoped_to_their_member(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Admin).await;
    let globex = org(s, "globex", ada.id).await;
    let docs = connector(s, acme.id, "Docs").await;
    let talk = new_conversation(s, acme.id, ada.id, "Ada's talk", &[docs.id], 10).await;
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id).await.unwrap(),
        talk
    );
    assert_eq!(s.conversation_org(ada.id, talk.id).await.unwrap(), acme.id);
    not_found(s.conversation_org(bob.id, talk.id).await, "conversation");
    not_found(
        s.conversation_org(ada.id, ConversationId::new()).await,
        "conversation",
    );

    // Another member (even an admin), the same member in another organization, and a
    // stranger all see nothing.
    let stranger = UserId::new();
    for (o, u) in [
        (acme.id, bob.id),
        (globex.id, ada.id),
        (acme.id, stranger),
        (OrgId::new(), ada.id),
    ] {
        not_found(s.conversation(o, u, talk.id).await, "conversation");
        let patch = ConversationPatch {
            title: Some("taken over".into()),
            ..ConversationPatch::default()
        };
        not_found(
            s.update_conversation(o, u, talk.id, &patch).await,
            "conversation",
        );
        not_found(s.delete_conversation(o, u, talk.id).await, "conversation");
        let page = s.list_conversations(o, u, first(10)).await.unwrap();
        assert!(page.items.is_empty());
        // Nor may a turn be started in it on someone else's behalf.
        let mut t = turn_of(&talk, 20);
        t.org_id = o;
        t.user_id = u;
        not_found(start(s, &t, &[]).await, "conversation");
    }
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id).await.unwrap(),
        talk
    );
    assert_eq!(s.open_turn(talk.id).await.unwrap(), None);

    // Only members have conversations, and ids are unique.
    let before = chat_rows(s).await;
    not_found(
        s.create_conversation(&conversation_of(acme.id, stranger, "x", &[], 30))
            .await,
        "member",
    );
    not_found(
        s.create_conversation(&conversation_of(globex.id, bob.id, "x", &[], 30))
            .await,
        "member",
    );
    let mut dup = conversation_of(acme.id, bob.id, "dup", &[], 30);
    dup.id = talk.id;
    conflict(s.create_conversation(&dup).await, "id");
    assert_eq!(chat_rows(s).await, before);

    // Bob's own conversation is his alone.
    let bobs = new_conversation(s, acme.id, bob.id, "Bob's", &[], 40).await;
    assert_eq!(
        s.list_conversations(acme.id, bob.id, first(10))
            .await
            .unwrap()
            .items,
        std::slice::from_ref(&bobs)
    );
    assert_eq!(
        s.list_conversations(acme.id, ada.id, first(10))
            .await
            .unwrap()
            .items,
        [talk]
    );
    not_found(
        s.conversation(acme.id, ada.id, bobs.id).await,
        "conversation",
    );
}

async fn conversations_refuse_connectors_of_other_organizations(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let globex = org(s, "globex", ada.id).await;
    let docs = connector(s, acme.id, "Docs").await;
    let wiki = connector(s, acme.id, "Wiki").await;
    let foreign = connector(s, globex.id, "Foreign").await;

    let before = chat_rows(s).await;
    for connectors in [
        vec![foreign.id],
        vec![docs.id, foreign.id],
        vec![ConnectorId::new()],
    ] {
        not_found(
            s.create_conversation(&conversation_of(acme.id, ada.id, "x", &connectors, 10))
                .await,
            "connector",
        );
    }
    assert_eq!(
        chat_rows(s).await,
        before,
        "a refused create writes nothing"
    );

    // The list keeps its order; a connector named twice is kept at its first place.
    let mut talk = conversation_of(acme.id, ada.id, "Talk", &[wiki.id, docs.id, wiki.id], 10);
    s.create_conversation(&talk).await.unwrap();
    talk.connectors = vec![wiki.id, docs.id];
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id).await.unwrap(),
        talk
    );

    let before = chat_rows(s).await;
    let patch = ConversationPatch {
        title: Some("Renamed".into()),
        connectors: Some(vec![docs.id, foreign.id]),
        now: Some(at(20)),
    };
    not_found(
        s.update_conversation(acme.id, ada.id, talk.id, &patch)
            .await,
        "connector",
    );
    assert_eq!(
        chat_rows(s).await,
        before,
        "a refused update writes nothing"
    );
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id).await.unwrap(),
        talk
    );
}

async fn conversations_list_most_recent_first_and_paginate(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    // Times with ties, created out of order.
    let mut all = Vec::new();
    for (i, ms) in [30, 10, 50, 30, 20, 50, 40].into_iter().enumerate() {
        all.push(new_conversation(s, acme.id, ada.id, &format!("talk {i}"), &[], ms).await);
    }
    new_conversation(s, acme.id, bob.id, "bob's", &[], 100).await;
    let expected = |all: &[Conversation]| {
        let mut sorted = all.to_vec();
        sorted.sort_by_key(|c| std::cmp::Reverse((c.updated_at, c.id.0)));
        sorted
    };
    for limit in [1, 2, 3, 7, 50] {
        let listed = all_pages(
            limit,
            |page| s.list_conversations(acme.id, ada.id, page),
            |c| c.id.0,
        )
        .await;
        assert_eq!(listed, expected(&all), "limit {limit}");
    }

    // Starting a turn moves a conversation to the front.
    let oldest = all.iter().find(|c| c.updated_at == at(10)).unwrap().id;
    let t = turn_of(all.iter().find(|c| c.id == oldest).unwrap(), 60);
    start(s, &t, &[]).await.unwrap();
    let page = s
        .list_conversations(acme.id, ada.id, first(2))
        .await
        .unwrap();
    assert_eq!(page.items[0].id, oldest);
    assert_eq!(page.items[0].updated_at, at(60));
    let moved = all.iter_mut().find(|c| c.id == oldest).unwrap();
    moved.updated_at = at(60);
    let listed = all_pages(
        3,
        |page| s.list_conversations(acme.id, ada.id, page),
        |c| c.id.0,
    )
    .await;
    assert_eq!(listed, expected(&all));

    // A cursor that is not one of this member's conversations gives an empty page.
    let bobs = s
        .list_conversations(acme.id, bob.id, first(1))
        .await
        .unwrap()
        .items[0]
        .id;
    for after in [bobs.0, Uuid::now_v7()] {
        let page = s
            .list_conversations(
                acme.id,
                ada.id,
                PageRequest {
                    after: Some(after),
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page,
            Page {
                items: vec![],
                next: None
            }
        );
    }
}

async fn update_conversation_applies_the_patch(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let wiki = connector(s, acme.id, "Wiki").await;
    let mut talk = new_conversation(s, acme.id, ada.id, "Talk", &[docs.id], 10).await;

    // An empty patch changes nothing.
    let same = s
        .update_conversation(acme.id, ada.id, talk.id, &ConversationPatch::default())
        .await
        .unwrap();
    assert_eq!(same, talk);

    let renamed = s
        .update_conversation(
            acme.id,
            ada.id,
            talk.id,
            &ConversationPatch {
                title: Some("Renamed".into()),
                now: Some(at(20)),
                ..ConversationPatch::default()
            },
        )
        .await
        .unwrap();
    talk.title = "Renamed".into();
    talk.updated_at = at(20);
    assert_eq!(renamed, talk);

    let relinked = s
        .update_conversation(
            acme.id,
            ada.id,
            talk.id,
            &ConversationPatch {
                connectors: Some(vec![wiki.id, docs.id]),
                // A time before the last update does not move it back.
                now: Some(at(15)),
                ..ConversationPatch::default()
            },
        )
        .await
        .unwrap();
    talk.connectors = vec![wiki.id, docs.id];
    assert_eq!(relinked, talk);

    let emptied = s
        .update_conversation(
            acme.id,
            ada.id,
            talk.id,
            &ConversationPatch {
                connectors: Some(vec![]),
                ..ConversationPatch::default()
            },
        )
        .await
        .unwrap();
    talk.connectors = vec![];
    assert_eq!(emptied, talk);
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id).await.unwrap(),
        talk
    );
    not_found(
        s.update_conversation(
            acme.id,
            ada.id,
            ConversationId::new(),
            &ConversationPatch::default(),
        )
        .await,
        "conversation",
    );
}

async fn start_turn_conflicts_while_a_turn_is_open(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[], 10).await;
    let other = new_conversation(s, acme.id, ada.id, "Other", &[], 10).await;
    assert_eq!(s.open_turn(talk.id).await.unwrap(), None);
    not_found(s.turn(TurnId::new()).await, "turn");

    // The turn is stored as given, at version 1 whatever the caller said.
    let mut first_turn = turn_of(&talk, 20);
    first_turn.version = 7;
    first_turn.lease_until = Some(at(1_000));
    let stored = start(s, &first_turn, &events_of(&["turn_started"]))
        .await
        .unwrap();
    assert_eq!(seqs(&stored), [1]);
    first_turn.version = 1;
    assert_eq!(s.turn(first_turn.id).await.unwrap(), first_turn);
    assert_eq!(
        s.open_turn(talk.id).await.unwrap(),
        Some(first_turn.clone())
    );
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id)
            .await
            .unwrap()
            .updated_at,
        at(20)
    );

    // While it runs, and while it waits, no second turn starts; nothing is written.
    let before = chat_rows(s).await;
    let second = turn_of(&talk, 30);
    conflict(start(s, &second, &events_of(&["x"])).await, "turn");
    let state = json!({"waiting": "approval"});
    save(
        s,
        TurnSave {
            status: TurnStatus::Waiting,
            ..save_of(&first_turn, 1, &state, 31)
        },
    )
    .await
    .unwrap()
    .unwrap();
    conflict(start(s, &second, &[]).await, "turn");
    assert_eq!(
        s.open_turn(talk.id).await.unwrap().map(|t| t.status),
        Some(TurnStatus::Waiting)
    );
    not_found(s.turn(second.id).await, "turn");
    let after = chat_rows(s).await;
    assert_eq!(before[3..], after[3..], "no message or event was written");

    // Another conversation is not held up, and a taken id is a conflict too.
    let mut elsewhere = turn_of(&other, 32);
    elsewhere.id = first_turn.id;
    conflict(start(s, &elsewhere, &[]).await, "turn");
    elsewhere.id = TurnId::new();
    start(s, &elsewhere, &[]).await.unwrap();

    // Once the turn ends, the next one may start.
    let state = json!({"done": true});
    save(
        s,
        TurnSave {
            status: TurnStatus::Cancelled,
            ..save_of(&first_turn, 2, &state, 33)
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(s.open_turn(talk.id).await.unwrap(), None);
    start(s, &second, &[]).await.unwrap();
    assert_eq!(s.open_turn(talk.id).await.unwrap().unwrap().id, second.id);
    assert_eq!(
        s.turn(first_turn.id).await.unwrap().status,
        TurnStatus::Cancelled
    );
}

async fn save_turn_is_compare_and_swap(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[], 10).await;
    let t = started(s, &talk, 20).await;
    assert_eq!(t.version, 1);

    let state = json!({"step": 1, "pending": ["call-1"]});
    let progress = events_of(&["tool_call"]);
    let saved = save(
        s,
        TurnSave {
            lease_until: Some(at(5_000)),
            events: &progress,
            ..save_of(&t, 1, &state, 30)
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(seqs(&saved), [2]);
    assert_eq!(saved[0].turn_id, t.id);
    assert_eq!(saved[0].data, progress[0].data);
    assert_eq!(saved[0].created_at, at(30));
    let now = s.turn(t.id).await.unwrap();
    assert_eq!(
        now,
        TurnRecord {
            state: state.clone(),
            version: 2,
            lease_until: Some(at(5_000)),
            ..t.clone()
        }
    );
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id)
            .await
            .unwrap()
            .updated_at,
        at(30)
    );

    // A save from the old version loses and writes nothing at all.
    let before = s.export().await.unwrap();
    let stale_state = json!({"stale": true});
    let stale_events = events_of(&["stale"]);
    let stale_messages = [json!({"role": "assistant", "content": "stale"})];
    let lost = save(
        s,
        TurnSave {
            status: TurnStatus::Done,
            events: &stale_events,
            messages: &stale_messages,
            ..save_of(&t, 1, &stale_state, 40)
        },
    )
    .await
    .unwrap();
    assert_eq!(lost, None);
    assert_eq!(s.export().await.unwrap(), before);
    assert_eq!(s.turn(t.id).await.unwrap(), now);

    // The current version wins, and the numbering goes on without a gap.
    let done = json!({"done": true});
    let end = events_of(&["done"]);
    let saved = save(
        s,
        TurnSave {
            status: TurnStatus::Done,
            events: &end,
            ..save_of(&t, 2, &done, 50)
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(seqs(&saved), [3]);
    let ended = s.turn(t.id).await.unwrap();
    assert_eq!(
        (ended.status, ended.version, ended.lease_until),
        (TurnStatus::Done, 3, None)
    );

    let ghost = TurnRecord {
        id: TurnId::new(),
        ..t.clone()
    };
    not_found(save(s, save_of(&ghost, 1, &done, 60)).await, "turn");
}

async fn concurrent_saves_of_one_turn_have_one_winner(cx: Cx) {
    let s = cx.store.clone();
    let (acme, ada) = world(&*s).await;
    let talk = new_conversation(&*s, acme.id, ada.id, "Talk", &[], 10).await;
    let t = started(&*s, &talk, 20).await;
    for round in 0..4i64 {
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let s = s.clone();
                let t = t.clone();
                tokio::spawn(async move {
                    let state = json!({"round": round, "writer": i});
                    let events = events_of(&["step", "step"]);
                    let messages = [json!({"writer": i})];
                    save(
                        &*s,
                        TurnSave {
                            events: &events,
                            messages: &messages,
                            ..save_of(&t, round + 1, &state, 30 + round)
                        },
                    )
                    .await
                    .map(|saved| saved.map(|events| (i, events)))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(won) = task.await.unwrap().unwrap() {
                winners.push(won);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        let (writer, events) = &winners[0];
        assert_eq!(seqs(events), [2 + 2 * round, 3 + 2 * round]);
        let now = s.turn(t.id).await.unwrap();
        assert_eq!(now.version, round + 2);
        assert_eq!(now.state, json!({"round": round, "writer": writer}));
    }
    let events = s.chat_events(talk.id, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), (1..=9).collect::<Vec<_>>());
    let messages = s.chat_messages(talk.id).await.unwrap();
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

async fn chat_events_are_numbered_contiguously(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[], 10).await;
    let other = new_conversation(s, acme.id, ada.id, "Other", &[], 10).await;
    assert!(s.chat_events(talk.id, 0, 100).await.unwrap().is_empty());

    let t = turn_of(&talk, 20);
    let opening = events_of(&["turn_started", "text_delta"]);
    let stored = start(s, &t, &opening).await.unwrap();
    assert_eq!(seqs(&stored), [1, 2]);
    assert_eq!(kinds(&stored), ["turn_started", "text_delta"]);
    assert!(
        stored
            .iter()
            .all(|e| e.turn_id == t.id && e.created_at == at(20))
    );

    let streamed = s
        .append_chat_events(
            talk.id,
            t.id,
            &events_of(&["text_delta", "text_delta", "progress"]),
        )
        .await
        .unwrap();
    assert_eq!(seqs(&streamed), [3, 4, 5]);
    assert_eq!(
        s.append_chat_events(talk.id, t.id, &[]).await.unwrap(),
        vec![]
    );
    let state = json!({"step": 1});
    let saved = save(
        s,
        TurnSave {
            events: &events_of(&["tool_call", "approval_needed"]),
            ..save_of(&t, 1, &state, 30)
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(seqs(&saved), [6, 7]);
    // A save without events takes no number.
    let saved = save(s, save_of(&t, 2, &state, 31)).await.unwrap().unwrap();
    assert!(saved.is_empty());
    let more = s
        .append_chat_events(talk.id, t.id, &events_of(&["text_delta"]))
        .await
        .unwrap();
    assert_eq!(seqs(&more), [8]);

    // Read back in order, whole or from a point, at most `limit`.
    let all = s.chat_events(talk.id, 0, 100).await.unwrap();
    assert_eq!(seqs(&all), (1..=8).collect::<Vec<_>>());
    assert_eq!(
        kinds(&all),
        [
            "turn_started",
            "text_delta",
            "text_delta",
            "text_delta",
            "progress",
            "tool_call",
            "approval_needed",
            "text_delta"
        ]
    );
    assert_eq!(all[..2], stored[..]);
    assert_eq!(all[2..5], streamed[..]);
    assert_eq!(all[2].data, events_of(&["text_delta"])[0].data);
    assert_eq!(seqs(&s.chat_events(talk.id, 3, 2).await.unwrap()), [4, 5]);
    assert_eq!(seqs(&s.chat_events(talk.id, 6, 100).await.unwrap()), [7, 8]);
    assert!(s.chat_events(talk.id, 8, 100).await.unwrap().is_empty());
    assert!(s.chat_events(talk.id, 0, 0).await.unwrap().is_empty());

    // Each conversation counts on its own.
    let u = turn_of(&other, 40);
    let first_other = start(s, &u, &events_of(&["turn_started"])).await.unwrap();
    assert_eq!(seqs(&first_other), [1]);
    assert!(s.chat_events(other.id, 1, 10).await.unwrap().is_empty());

    // Events go only to a turn of the conversation they name.
    let before = chat_rows(s).await;
    not_found(
        s.append_chat_events(other.id, t.id, &events_of(&["x"]))
            .await,
        "turn",
    );
    not_found(
        s.append_chat_events(talk.id, TurnId::new(), &events_of(&["x"]))
            .await,
        "turn",
    );
    assert_eq!(chat_rows(s).await, before);
}

async fn concurrent_appends_number_events_without_gaps(cx: Cx) {
    let s = cx.store.clone();
    let (acme, ada) = world(&*s).await;
    let talk = new_conversation(&*s, acme.id, ada.id, "Talk", &[], 10).await;
    let t = started(&*s, &talk, 20).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let kind = format!("delta-{i}");
                s.append_chat_events(talk.id, t.id, &events_of(&[&kind, &kind, &kind]))
                    .await
            })
        })
        .collect();
    let mut given = Vec::new();
    for task in tasks {
        let stored = task.await.unwrap().unwrap();
        // One append's events are numbered together, one after the other.
        assert_eq!(stored.len(), 3);
        assert_eq!(stored[1].seq, stored[0].seq + 1);
        assert_eq!(stored[2].seq, stored[0].seq + 2);
        given.extend(seqs(&stored));
    }
    given.sort();
    assert_eq!(given, (2..=49).collect::<Vec<_>>());
    let all = s.chat_events(talk.id, 0, 1000).await.unwrap();
    assert_eq!(seqs(&all), (1..=49).collect::<Vec<_>>());
}

async fn messages_are_appended_only_by_save_turn(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[], 10).await;
    let t = started(s, &talk, 20).await;
    s.append_chat_events(talk.id, t.id, &events_of(&["text_delta"]))
        .await
        .unwrap();
    let state = json!({"step": 1});
    save(
        s,
        TurnSave {
            events: &events_of(&["tool_call"]),
            ..save_of(&t, 1, &state, 30)
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert!(s.chat_messages(talk.id).await.unwrap().is_empty());

    let history = [
        json!({"role": "user", "content": "What is in the docs?"}),
        json!({"role": "assistant", "tool_calls": [{"id": "call-1", "name": "search"}]}),
        json!({"role": "tool", "tool_call_id": "call-1", "content": "ünïcode \"quoted\""}),
        json!({"role": "assistant", "content": "Here is what I found."}),
    ];
    let done = json!({"done": true});
    save(
        s,
        TurnSave {
            status: TurnStatus::Done,
            messages: &history,
            ..save_of(&t, 2, &done, 40)
        },
    )
    .await
    .unwrap()
    .unwrap();
    let stored = s.chat_messages(talk.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        stored.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        history
    );
    assert!(
        stored
            .iter()
            .all(|m| m.turn_id == t.id && m.created_at == at(40))
    );

    // The next turn's history follows on; a stale save adds none.
    let next = started(s, &talk, 50).await;
    let stale = [json!({"stale": true})];
    assert_eq!(
        save(
            s,
            TurnSave {
                status: TurnStatus::Done,
                messages: &stale,
                ..save_of(&next, 2, &done, 60)
            }
        )
        .await
        .unwrap(),
        None
    );
    let reply = [
        json!({"role": "user", "content": "Thanks"}),
        json!({"role": "assistant", "content": "You're welcome"}),
    ];
    save(
        s,
        TurnSave {
            status: TurnStatus::Failed,
            messages: &reply,
            ..save_of(&next, 1, &done, 60)
        },
    )
    .await
    .unwrap()
    .unwrap();
    let stored = s.chat_messages(talk.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(stored[4].turn_id, next.id);
    assert_eq!(stored[5].body, reply[1]);
    // Another conversation has its own, empty, history.
    let other = new_conversation(s, acme.id, ada.id, "Other", &[], 70).await;
    assert!(s.chat_messages(other.id).await.unwrap().is_empty());
}

async fn claim_stalled_turns_claims_expired_leases_once(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let turn_with = async |lease: Option<i64>, status: TurnStatus| {
        let c = new_conversation(s, acme.id, ada.id, "t", &[], 1).await;
        let mut t = turn_of(&c, 2);
        t.lease_until = lease.map(at);
        start(s, &t, &[]).await.unwrap();
        if status != TurnStatus::Running {
            let state = json!({"status": status.as_str()});
            save(
                s,
                TurnSave {
                    status,
                    lease_until: t.lease_until,
                    ..save_of(&t, 1, &state, 3)
                },
            )
            .await
            .unwrap()
            .unwrap();
        }
        s.turn(t.id).await.unwrap()
    };
    let never = turn_with(None, TurnStatus::Running).await;
    let expired = turn_with(Some(100), TurnStatus::Running).await;
    let just_now = turn_with(Some(200), TurnStatus::Running).await;
    let held = turn_with(Some(300), TurnStatus::Running).await;
    let waiting = turn_with(None, TurnStatus::Waiting).await;
    let waiting_expired = turn_with(Some(100), TurnStatus::Waiting).await;
    let ended = turn_with(Some(100), TurnStatus::Done).await;

    // At 200, the turn without a lease and the one whose lease ended before 200 are stalled;
    // a lease that ends exactly now still holds, and waiting or ended turns are never taken.
    let claimed = s.claim_stalled_turns(at(200), at(1_000), 10).await.unwrap();
    let mut expected: Vec<TurnRecord> = [&never, &expired]
        .into_iter()
        .map(|t| TurnRecord {
            version: t.version + 1,
            lease_until: Some(at(1_000)),
            ..t.clone()
        })
        .collect();
    expected.sort_by_key(|t| t.id.0);
    assert_eq!(claimed, expected);
    for t in &expected {
        assert_eq!(&s.turn(t.id).await.unwrap(), t);
    }
    // Claimed once: until their new lease runs out, nobody claims them again.
    assert!(
        s.claim_stalled_turns(at(200), at(1_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The process that drove them before lost them: its saves no longer match.
    let state = json!({});
    assert_eq!(
        save(s, save_of(&never, 1, &state, 202)).await.unwrap(),
        None
    );
    for t in [&just_now, &held, &waiting, &waiting_expired, &ended] {
        assert_eq!(&s.turn(t.id).await.unwrap(), t);
    }

    // Later, more leases have run out; `limit` caps how many one call takes.
    let first_batch = s.claim_stalled_turns(at(400), at(2_000), 1).await.unwrap();
    assert_eq!(first_batch.len(), 1);
    let second_batch = s.claim_stalled_turns(at(400), at(2_000), 10).await.unwrap();
    let mut ids: Vec<TurnId> = first_batch
        .iter()
        .chain(&second_batch)
        .map(|t| t.id)
        .collect();
    ids.sort_by_key(|id| id.0);
    let mut expected = vec![just_now.id, held.id];
    expected.sort_by_key(|id| id.0);
    assert_eq!(ids, expected);
    assert!(
        s.claim_stalled_turns(at(400), at(2_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.claim_stalled_turns(at(5_000), at(6_000), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_claims_split_stalled_turns(cx: Cx) {
    let s = cx.store.clone();
    let (acme, ada) = world(&*s).await;
    let mut stalled = Vec::new();
    for i in 0..20 {
        let c = new_conversation(&*s, acme.id, ada.id, "t", &[], i).await;
        let mut t = turn_of(&c, i);
        t.lease_until = (i % 2 == 0).then(|| at(i));
        start(&*s, &t, &[]).await.unwrap();
        stalled.push(t.id);
    }
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_stalled_turns(at(100), at(10_000), 4).await })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        let batch = task.await.unwrap().unwrap();
        assert!(batch.len() <= 4);
        claimed.extend(batch.into_iter().map(|t| {
            assert_eq!((t.version, t.lease_until), (2, Some(at(10_000))));
            t.id
        }));
    }
    // Whatever a claimer skipped is still there for the next call; no turn went twice.
    let rest = s
        .claim_stalled_turns(at(100), at(10_000), 100)
        .await
        .unwrap();
    claimed.extend(rest.into_iter().map(|t| t.id));
    let unique: BTreeSet<Uuid> = claimed.iter().map(|id| id.0).collect();
    assert_eq!(unique.len(), claimed.len(), "a turn was claimed twice");
    assert_eq!(unique, stalled.iter().map(|id| id.0).collect());
}

async fn extend_turn_lease_needs_the_current_version(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[], 10).await;
    let t = started(s, &talk, 20).await;
    assert!(s.extend_turn_lease(t.id, 1, at(500)).await.unwrap());
    let extended = s.turn(t.id).await.unwrap();
    assert_eq!(
        extended,
        TurnRecord {
            lease_until: Some(at(500)),
            ..t.clone()
        },
        "the version stays"
    );
    // The lease is not claimable while it lasts, and an extension keeps it that way.
    assert!(
        s.claim_stalled_turns(at(400), at(900), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.extend_turn_lease(t.id, 1, at(800)).await.unwrap());
    assert!(
        s.claim_stalled_turns(at(600), at(900), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // After a save (or a claim) the old version no longer holds it.
    let state = json!({"step": 1});
    save(
        s,
        TurnSave {
            lease_until: Some(at(700)),
            ..save_of(&t, 1, &state, 30)
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!s.extend_turn_lease(t.id, 1, at(5_000)).await.unwrap());
    assert_eq!(s.turn(t.id).await.unwrap().lease_until, Some(at(700)));
    assert!(s.extend_turn_lease(t.id, 2, at(5_000)).await.unwrap());
    assert_eq!(s.turn(t.id).await.unwrap().lease_until, Some(at(5_000)));
    assert!(
        !s.extend_turn_lease(TurnId::new(), 1, at(5_000))
            .await
            .unwrap()
    );
}

async fn delete_conversation_cascades(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let fill = async |title: &str| {
        let c = new_conversation(s, acme.id, ada.id, title, &[docs.id], 10).await;
        let ended = started(s, &c, 20).await;
        let done = json!({"done": true});
        save(
            s,
            TurnSave {
                status: TurnStatus::Done,
                events: &events_of(&["done"]),
                messages: &[json!({"role": "user", "content": title})],
                ..save_of(&ended, 1, &done, 30)
            },
        )
        .await
        .unwrap()
        .unwrap();
        let open = started(s, &c, 40).await;
        (c, ended, open)
    };
    let (talk, ended, open) = fill("Talk").await;
    let (keep, _, _) = fill("Keep").await;
    let kept_before: Vec<usize> = chat_rows(s).await.iter().map(Vec::len).collect();

    s.delete_conversation(acme.id, ada.id, talk.id)
        .await
        .unwrap();
    not_found(
        s.conversation(acme.id, ada.id, talk.id).await,
        "conversation",
    );
    not_found(s.turn(ended.id).await, "turn");
    not_found(s.turn(open.id).await, "turn");
    assert_eq!(s.open_turn(talk.id).await.unwrap(), None);
    assert!(s.chat_events(talk.id, 0, 100).await.unwrap().is_empty());
    assert!(s.chat_messages(talk.id).await.unwrap().is_empty());
    // The driver of the open turn finds it gone.
    let state = json!({});
    not_found(save(s, save_of(&open, 1, &state, 50)).await, "turn");
    not_found(
        s.append_chat_events(talk.id, open.id, &events_of(&["x"]))
            .await,
        "turn",
    );
    assert!(!s.extend_turn_lease(open.id, 1, at(60)).await.unwrap());
    not_found(
        s.delete_conversation(acme.id, ada.id, talk.id).await,
        "conversation",
    );

    // Exactly half of every chat table is left: the other conversation's rows.
    let left: Vec<usize> = chat_rows(s).await.iter().map(Vec::len).collect();
    assert_eq!(left, kept_before.iter().map(|n| n / 2).collect::<Vec<_>>());
    assert_eq!(
        s.conversation(acme.id, ada.id, keep.id).await.unwrap(),
        Conversation {
            updated_at: at(40),
            ..keep
        }
    );
    assert_eq!(s.chat_events(keep.id, 0, 100).await.unwrap().len(), 3);
    assert_eq!(s.chat_messages(keep.id).await.unwrap().len(), 1);
    assert!(s.open_turn(keep.id).await.unwrap().is_some());
}

async fn deleting_a_connector_removes_it_from_conversations(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    let wiki = connector(s, acme.id, "Wiki").await;
    let mail = connector(s, acme.id, "Mail").await;
    let mut talk =
        new_conversation(s, acme.id, ada.id, "Talk", &[docs.id, wiki.id, mail.id], 10).await;
    let mut other = new_conversation(s, acme.id, ada.id, "Other", &[wiki.id], 10).await;
    s.delete_connector(acme.id, wiki.id, &ev(AuditAction::ConnectorDeleted))
        .await
        .unwrap();
    talk.connectors = vec![docs.id, mail.id];
    other.connectors = vec![];
    assert_eq!(
        s.conversation(acme.id, ada.id, talk.id).await.unwrap(),
        talk
    );
    assert_eq!(
        s.conversation(acme.id, ada.id, other.id).await.unwrap(),
        other
    );
    // The order of those left stays, and new ones go after them.
    let patched = s
        .update_conversation(
            acme.id,
            ada.id,
            talk.id,
            &ConversationPatch {
                connectors: Some(vec![mail.id, docs.id]),
                ..ConversationPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.connectors, [mail.id, docs.id]);
}

async fn remove_member_drops_their_conversations(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let globex = org(s, "globex", ada.id).await;
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let event = ev(AuditAction::MemberAdded).org(globex.id);
    s.add_member(globex.id, bob.id, Role::Member, at(3), &event)
        .await
        .unwrap();
    let bobs = new_conversation(s, acme.id, bob.id, "Bob's", &[], 10).await;
    let bob_turn = started(s, &bobs, 20).await;
    let bobs_elsewhere = new_conversation(s, globex.id, bob.id, "Elsewhere", &[], 10).await;
    let adas = new_conversation(s, acme.id, ada.id, "Ada's", &[], 10).await;

    s.remove_member(
        acme.id,
        bob.id,
        &ev(AuditAction::MemberRemoved).org(acme.id),
    )
    .await
    .unwrap();
    not_found(s.turn(bob_turn.id).await, "turn");
    assert!(s.chat_events(bobs.id, 0, 10).await.unwrap().is_empty());
    assert_eq!(
        s.conversation(globex.id, bob.id, bobs_elsewhere.id)
            .await
            .unwrap(),
        bobs_elsewhere
    );
    assert_eq!(
        s.conversation(acme.id, ada.id, adas.id).await.unwrap(),
        adas
    );
    // Coming back does not bring them back.
    join_again(s, acme.id, bob.id).await;
    not_found(
        s.conversation(acme.id, bob.id, bobs.id).await,
        "conversation",
    );
    assert!(
        s.list_conversations(acme.id, bob.id, first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn join_again(s: &dyn Store, org: OrgId, user: UserId) {
    let event = ev(AuditAction::MemberAdded).org(org);
    s.add_member(org, user, Role::Member, at(100), &event)
        .await
        .unwrap();
}

async fn reseal_all_covers_the_chat_model_key(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let globex = org(s, "globex", ada.id).await;
    let changed = ev(AuditAction::ChatModelChanged);
    s.set_chat_model(acme.id, Some(&chat_model_of(Some("api-key"), 10)), &changed)
        .await
        .unwrap();
    // A model without a key has nothing to reseal.
    s.set_chat_model(globex.id, Some(&chat_model_of(None, 10)), &changed)
        .await
        .unwrap();

    let before = s.export().await.unwrap();
    let failing = |context: &str, sealed: &str| -> Result<String, String> {
        if context.starts_with("chat-model-key:") {
            Err("authentication tag mismatch".to_owned())
        } else {
            Ok(format!("new-{sealed}"))
        }
    };
    match s.reseal_all(&failing).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("authentication tag mismatch"), "{message}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(s.export().await.unwrap(), before);

    let seen = Mutex::new(Vec::new());
    let rewrite = |context: &str, sealed: &str| -> Result<String, String> {
        seen.lock().unwrap().push(context.to_owned());
        Ok(format!("{sealed}|{context}"))
    };
    assert_eq!(s.reseal_all(&rewrite).await.unwrap(), 1);
    let context = chat_model_seal_context(acme.id);
    assert_eq!(*seen.lock().unwrap(), std::slice::from_ref(&context));
    assert_eq!(
        s.chat_model(acme.id).await.unwrap(),
        Some(chat_model_of(Some(&format!("api-key|{context}")), 10))
    );
    assert_eq!(
        s.chat_model(globex.id).await.unwrap(),
        Some(chat_model_of(None, 10))
    );
}

async fn chat_catalog_reads_what_turns_decide_with(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let (other, _) = (org(s, "other", ada.id).await, ());
    let docs = connector(s, acme.id, "Docs").await;
    let alpha = connector(s, acme.id, "alpha").await;
    connector(s, other.id, "Elsewhere").await;
    sync(
        s,
        acme.id,
        docs.id,
        &[tool("search", "Find"), tool("read", "Read")],
        NewFunctionState::Allowed,
        5,
    )
    .await;
    sync(
        s,
        acme.id,
        alpha.id,
        &[tool("ping", "Ping")],
        NewFunctionState::Allowed,
        5,
    )
    .await;
    s.set_preference(
        acme.id,
        docs.id,
        "search",
        ada.id,
        Some(MemberPreference::Always),
        at(6),
        &ev(AuditAction::PreferenceChanged).org(acme.id),
    )
    .await
    .unwrap();

    let catalog = s.chat_catalog(acme.id, ada.id).await.unwrap();
    assert_eq!(
        catalog.settings,
        s.organization(acme.id).await.unwrap().settings
    );
    let names: Vec<&str> = catalog.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["alpha", "Docs"],
        "the organization's connectors, by name ignoring case"
    );
    let functions: Vec<(ConnectorId, &str, Option<MemberPreference>)> = catalog
        .functions
        .iter()
        .map(|v| {
            (
                v.function.connector_id,
                v.function.definition.name.as_str(),
                v.preference,
            )
        })
        .collect();
    assert_eq!(
        functions,
        [
            (alpha.id, "ping", None),
            (docs.id, "read", None),
            (docs.id, "search", Some(MemberPreference::Always)),
        ]
    );
    // Another member sees the same functions without Ada's preference.
    let bob = join(s, acme.id, "bob@example.org", Role::Member).await;
    let theirs = s.chat_catalog(acme.id, bob.id).await.unwrap();
    assert!(theirs.functions.iter().all(|v| v.preference.is_none()));
    assert_eq!(theirs.policy_generation, catalog.policy_generation);
    not_found(s.chat_catalog(OrgId::new(), ada.id).await, "organization");
}

async fn policy_generation_moves_with_every_policy_change(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let (other, _) = (org(s, "other", ada.id).await, ());
    let generation = async || {
        s.chat_catalog(acme.id, ada.id)
            .await
            .unwrap()
            .policy_generation
    };
    let mut last = generation().await;
    let mut moved = async |what: &str| {
        let now = generation().await;
        assert!(
            now > last,
            "{what} must move the policy generation ({last} -> {now})"
        );
        last = now;
    };
    let e = ev(AuditAction::FloorChanged).org(acme.id);

    let docs = connector(s, acme.id, "Docs").await;
    moved("creating a connector").await;
    sync(
        s,
        acme.id,
        docs.id,
        &[tool("search", "Find")],
        NewFunctionState::Allowed,
        5,
    )
    .await;
    moved("discovering a function").await;
    s.set_floor(acme.id, docs.id, "search", FloorPolicy::Ask, at(6), &e)
        .await
        .unwrap();
    moved("setting a floor").await;
    s.set_preference(
        acme.id,
        docs.id,
        "search",
        ada.id,
        Some(MemberPreference::Always),
        at(7),
        &e,
    )
    .await
    .unwrap();
    moved("choosing a preference").await;
    s.set_preference(
        acme.id,
        docs.id,
        "search",
        ada.id,
        Some(MemberPreference::Ask),
        at(8),
        &e,
    )
    .await
    .unwrap();
    moved("changing a preference").await;
    s.set_preference(acme.id, docs.id, "search", ada.id, None, at(9), &e)
        .await
        .unwrap();
    moved("dropping a preference").await;
    let patch = ConnectorPatch {
        status: Some((ConnectorStatus::Disabled, None)),
        ..ConnectorPatch::at(at(9))
    };
    s.update_connector(acme.id, docs.id, &patch, &e)
        .await
        .unwrap();
    moved("disabling a connector").await;
    let settings = OrgSettings {
        untrusted_content: UntrustedContent::Standard,
        ..OrgSettings::default()
    };
    s.update_organization(acme.id, None, Some(&settings), &e)
        .await
        .unwrap();
    moved("changing the organization's settings").await;
    let model = chat_model_of(None, 10);
    let changed = ev(AuditAction::ChatModelChanged).org(acme.id);
    s.set_chat_model(acme.id, Some(&model), &changed)
        .await
        .unwrap();
    moved("setting the organization's model").await;
    assert_eq!(
        s.chat_catalog(acme.id, ada.id).await.unwrap().model,
        Some(model.clone())
    );
    s.set_chat_model(acme.id, Some(&chat_model_of(Some("key"), 11)), &changed)
        .await
        .unwrap();
    moved("replacing the organization's model").await;
    s.set_chat_model(acme.id, None, &changed).await.unwrap();
    moved("clearing the organization's model").await;
    assert_eq!(s.chat_catalog(acme.id, ada.id).await.unwrap().model, None);
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[docs.id], 10).await;
    sync(s, acme.id, docs.id, &[], NewFunctionState::Allowed, 11).await;
    moved("a function disappearing").await;
    s.delete_connector(acme.id, docs.id, &e).await.unwrap();
    moved("deleting a connector").await;

    // What does not change a turn's decisions leaves it alone, and so do other organizations.
    // A conversation's connector list is the member's choice for the turns to come: creating
    // one and changing its list leave every catalog of the organization as it was.
    let before = generation().await;
    let other_talk = new_conversation(s, acme.id, ada.id, "More", &[], 12).await;
    let patch = ConversationPatch {
        connectors: Some(vec![]),
        ..ConversationPatch::default()
    };
    s.update_conversation(acme.id, ada.id, talk.id, &patch)
        .await
        .unwrap();
    s.delete_conversation(acme.id, ada.id, other_talk.id)
        .await
        .unwrap();
    let turn = started(s, &talk, 20).await;
    let state = json!({"step": 1});
    save(
        s,
        TurnSave {
            events: &events_of(&["text_delta"]),
            ..save_of(&turn, 1, &state, 21)
        },
    )
    .await
    .unwrap()
    .unwrap();
    s.append_chat_events(talk.id, turn.id, &events_of(&["tool_progress"]))
        .await
        .unwrap();
    s.update_conversation(
        acme.id,
        ada.id,
        talk.id,
        &ConversationPatch {
            title: Some("Renamed".into()),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
    connector(s, other.id, "Elsewhere").await;
    assert_eq!(generation().await, before);
}

async fn saves_under_a_moved_policy_generation_are_refused(cx: Cx) {
    let s = &*cx.store;
    let (acme, ada) = world(s).await;
    let docs = connector(s, acme.id, "Docs").await;
    sync(
        s,
        acme.id,
        docs.id,
        &[tool("search", "Find")],
        NewFunctionState::Allowed,
        5,
    )
    .await;
    let talk = new_conversation(s, acme.id, ada.id, "Talk", &[docs.id], 10).await;
    let read = s
        .chat_catalog(acme.id, ada.id)
        .await
        .unwrap()
        .policy_generation;
    let e = ev(AuditAction::FloorChanged).org(acme.id);

    // A turn decided under an older generation does not start, and nothing is written.
    s.set_floor(acme.id, docs.id, "search", FloorPolicy::Blocked, at(11), &e)
        .await
        .unwrap();
    let before = chat_rows(s).await;
    let t = turn_of(&talk, 20);
    assert_eq!(
        s.start_turn(&t, &events_of(&["turn_started"]), read)
            .await
            .unwrap(),
        None
    );
    assert_eq!(chat_rows(s).await, before);
    let read = s
        .chat_catalog(acme.id, ada.id)
        .await
        .unwrap()
        .policy_generation;
    s.start_turn(&t, &events_of(&["turn_started"]), read)
        .await
        .unwrap()
        .unwrap();

    // Nor is a save: the version stays, no event, message or audit entry is written.
    s.set_floor(acme.id, docs.id, "search", FloorPolicy::Allowed, at(21), &e)
        .await
        .unwrap();
    let state = json!({"decided": "under the old floor"});
    let audit = [ev(AuditAction::FunctionCalled).org(acme.id)];
    let (before, entries) = (chat_rows(s).await, audit_count(s).await);
    let stale = TurnSave {
        policy_generation: read,
        events: &events_of(&["tool_call_requested"]),
        messages: &[json!({"role": "user"})],
        audit: &audit,
        status: TurnStatus::Done,
        ..save_of(&t, 1, &state, 22)
    };
    assert_eq!(s.save_turn(&stale).await.unwrap(), None);
    assert_eq!(chat_rows(s).await, before);
    assert_eq!(audit_count(s).await, entries);

    // Under the current one it is saved, with its audit entries.
    let read = s
        .chat_catalog(acme.id, ada.id)
        .await
        .unwrap()
        .policy_generation;
    let stored = s
        .save_turn(&TurnSave {
            policy_generation: read,
            ..stale
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&stored), ["tool_call_requested"]);
    assert_eq!(s.turn(t.id).await.unwrap().version, 2);
    assert_eq!(audit_count(s).await, entries + 1);
    // A turn that is gone is not found, whatever the generation.
    let gone = TurnSave {
        id: TurnId::new(),
        ..save_of(&t, 2, &state, 23)
    };
    not_found(s.save_turn(&gone).await, "turn");
}
