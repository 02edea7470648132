//! What only a real PostgreSQL server can show: rules that must hold between concurrent
//! connections, the column types behind `SCHEMA`, and how driver failures are classified.

use std::time::Duration;

use serde_json::json;
use switchboard_domain::{
    AuditAction, AuthMethod, ConnectorId, ConnectorName, ConnectorStatus, ConnectorUrl,
    CredentialKind, CredentialScope, FunctionDefinition, GrantId, HttpAllowance, NewFunctionState,
    OrgId, Role,
};
use switchboard_store::{
    ColumnType, DiscoveredFunction, NewConnector, NewGrant, SCHEMA, Store, StoreError,
    StoredCredential,
};
use switchboard_store_postgres::PostgresStore;

use crate::fixtures::{T0, add, audit, new_org, new_user, owner_with_org};
use crate::harness::Server;

fn new_connector(org: OrgId, name: &str) -> NewConnector {
    NewConnector {
        id: ConnectorId::new(),
        org_id: org,
        name: ConnectorName::parse(name).expect("valid name"),
        url: ConnectorUrl::parse("https://mcp.example.org/mcp", &HttpAllowance::default())
            .expect("valid url"),
        description: None,
        status: ConnectorStatus::Connecting,
        auth_method: AuthMethod::None,
        credential_scope: CredentialScope::Shared,
        credential: None,
        created_at: T0,
    }
}

fn tool(name: &str) -> DiscoveredFunction {
    DiscoveredFunction::new(FunctionDefinition {
        name: name.to_owned(),
        title: None,
        description: Some(format!("the {name} tool")),
        input_schema: json!({"type": "object"}),
        output_schema: None,
        annotations: None,
    })
}

/// Waits until `n` other sessions of this database are blocked on a lock, so a test knows its
/// concurrent calls are really queued behind the transaction it holds.
async fn wait_for_lock_waiters(store: &PostgresStore, n: i64) {
    for _ in 0..1000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .expect("read pg_stat_activity");
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} sessions never queued on the lock");
}

/// Two owners demoting (or removing) each other at the same moment: without a lock taken
/// before counting owners, both would see the other still an owner and the organization
/// would end with none. The calls are held behind a lock on the organization row until both
/// are queued, then released together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_owner_rule_holds_between_concurrent_transactions() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let store = server.fresh_store().await;
    for removal in [false, true] {
        let (a, org) = owner_with_org(&store, if removal { "ada" } else { "bob" }).await;
        let b = add(&store, org, if removal { "cy" } else { "dee" }, Role::Owner).await;

        let mut gate = store.pool().begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE")
            .bind(org.0)
            .execute(&mut *gate)
            .await
            .expect("lock organization");

        let change = |user| {
            let store = store.clone();
            tokio::spawn(async move {
                let event = audit(AuditAction::RoleChanged, Some(user)).org(org);
                if removal {
                    store.remove_member(org, user, &event).await
                } else {
                    store
                        .set_role(org, user, Role::Member, &event)
                        .await
                        .map(|_| ())
                }
            })
        };
        let first = change(a);
        let second = change(b);
        wait_for_lock_waiters(&store, 2).await;
        gate.commit().await.expect("release organization");

        let results = [first.await.expect("task"), second.await.expect("task")];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastOwner)))
            .count();
        assert_eq!((ok, refused), (1, 1), "removal={removal}: {results:?}");

        let owners: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'owner'",
        )
        .bind(org.0)
        .fetch_one(store.pool())
        .await
        .expect("count owners");
        assert_eq!(owners, 1, "removal={removal}");
    }
    store.close().await;
    server.cleanup().await;
}

/// Two replicas discovering the same new functions at once: the connector lock makes the
/// second pass see the first's rows (and report them unchanged) instead of failing on the
/// unique (connector, name) constraint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_syncs_of_one_connector_serialize() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let store = server.fresh_store().await;
    let (_, org) = owner_with_org(&store, "ada").await;
    let connector = new_connector(org, "Docs");
    store
        .create_connector(&connector, &audit(AuditAction::ConnectorCreated, None))
        .await
        .expect("create connector");

    let mut gate = store.pool().begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM connectors WHERE id = $1 FOR UPDATE")
        .bind(connector.id.0)
        .execute(&mut *gate)
        .await
        .expect("lock connector");
    let sync = || {
        let store = store.clone();
        let id = connector.id;
        tokio::spawn(async move {
            let found = [tool("search"), tool("fetch")];
            let event = audit(AuditAction::FunctionsSynced, None).org(org);
            store
                .sync_functions(org, id, &found, NewFunctionState::Held, T0, &event)
                .await
        })
    };
    let first = sync();
    let second = sync();
    wait_for_lock_waiters(&store, 2).await;
    gate.commit().await.expect("release connector");

    let mut summaries = [
        first.await.expect("task").expect("first sync"),
        second.await.expect("task").expect("second sync"),
    ];
    summaries.sort_by_key(|s| s.unchanged);
    assert_eq!(summaries[0].added, vec!["fetch", "search"]);
    assert_eq!(summaries[1].added, Vec::<String>::new());
    assert_eq!(summaries[1].unchanged, 2);
    store.close().await;
    server.cleanup().await;
}

/// A member's own credential or grant being written while the member is removed: whichever
/// commits first, the member ends without one. The write is held (by a lock on the member's
/// user row, which its foreign key check needs) after it has checked the membership; the
/// removal then queues behind it, and must still delete what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_races_with_their_own_writes() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let store = server.fresh_store().await;
    let (_, org) = owner_with_org(&store, "ada").await;
    let connector = new_connector(org, "Docs");
    store
        .create_connector(&connector, &audit(AuditAction::ConnectorCreated, None))
        .await
        .expect("create connector");
    for grant in [false, true] {
        let bob = add(&store, org, if grant { "bob" } else { "cy" }, Role::Member).await;
        let mut gate = store.pool().begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(bob.0)
            .execute(&mut *gate)
            .await
            .expect("lock the user");

        let write = {
            let store = store.clone();
            let id = connector.id;
            tokio::spawn(async move {
                let event = audit(AuditAction::CredentialChanged, Some(bob)).org(org);
                if grant {
                    let new = NewGrant {
                        id: GrantId::new(),
                        connector: id,
                        holder: Some(bob),
                        issuer: "https://auth.example.org".into(),
                        sealed: "tokens".into(),
                        expires_at: None,
                        now: T0,
                    };
                    store.save_oauth_grant(org, &new, &event).await.map(|_| ())
                } else {
                    let credential = StoredCredential {
                        kind: CredentialKind::Bearer,
                        sealed: "secret".into(),
                    };
                    store
                        .set_member_credential(org, id, bob, Some(&credential), T0, &event)
                        .await
                }
            })
        };
        wait_for_lock_waiters(&store, 1).await;
        let remove = {
            let store = store.clone();
            tokio::spawn(async move {
                let event = audit(AuditAction::MemberRemoved, None).org(org);
                store.remove_member(org, bob, &event).await
            })
        };
        wait_for_lock_waiters(&store, 2).await;
        gate.commit().await.expect("release the user");

        write.await.expect("task").expect("the write went first");
        remove
            .await
            .expect("task")
            .expect("the removal went second");
        assert_eq!(
            store
                .connector_credential(org, connector.id, Some(bob))
                .await
                .expect("read credential"),
            None,
            "grant={grant}"
        );
        assert_eq!(
            store
                .oauth_grant(org, connector.id, Some(bob))
                .await
                .expect("read grant"),
            None,
            "grant={grant}"
        );
    }
    store.close().await;
    server.cleanup().await;
}

/// Two setup requests racing on an empty instance create exactly one first owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_setup_creates_one_owner() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let store = server.fresh_store().await;

    // Hold the lock setup takes until both calls are queued behind it.
    let mut gate = store.pool().begin().await.expect("begin");
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *gate)
        .await
        .expect("lock users");
    let setup = |name: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let user = new_user(name);
            let org = new_org(name);
            let event = audit(AuditAction::SetupCompleted, Some(user.id)).org(org.id);
            store
                .create_first_owner(&user, &org, "setup_token", &event)
                .await
        })
    };
    let first = setup("first");
    let second = setup("second");
    wait_for_lock_waiters(&store, 2).await;
    gate.commit().await.expect("release users");

    let results = [first.await.expect("task"), second.await.expect("task")];
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict { field: "setup", .. })))
        .count();
    assert_eq!((ok, refused), (1, 1), "{results:?}");
    assert_eq!(store.user_count().await.expect("count"), 1);
    store.close().await;
    server.cleanup().await;
}

/// The migrated tables are exactly `SCHEMA`'s, column for column, with the PostgreSQL types
/// the backend promises (so `db copy` never has to convert a value).
#[tokio::test]
async fn tables_and_column_types_match_the_shared_schema() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let store = server.fresh_store().await;

    let layout: Vec<(String, Vec<String>)> = store
        .table_layout()
        .await
        .expect("layout")
        .into_iter()
        .filter(|(name, _)| {
            name != switchboard_store::testsuite::MIGRATIONS_TABLE
                && !switchboard_store::testsuite::TRIGGER_TABLES.contains(&name.as_str())
        })
        .collect();
    let mut expected: Vec<(String, Vec<String>)> = SCHEMA
        .iter()
        .map(|t| {
            (
                t.name.to_owned(),
                t.columns.iter().map(|(c, _)| (*c).to_owned()).collect(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(layout, expected);

    for table in SCHEMA {
        for (column, ty) in table.columns {
            let actual: String = sqlx::query_scalar(
                "SELECT data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
            )
            .bind(table.name)
            .bind(column)
            .fetch_one(store.pool())
            .await
            .expect("column type");
            let want = match ty {
                ColumnType::Uuid => "uuid",
                ColumnType::Text => "text",
                ColumnType::Int => "bigint",
                ColumnType::Json => "jsonb",
                ColumnType::Bool => "boolean",
            };
            assert_eq!(actual, want, "{}.{column}", table.name);
        }
    }
    store.close().await;
    server.cleanup().await;
}

/// Running the migrations again (as every replica does at start) changes nothing.
#[tokio::test]
async fn migrating_twice_is_harmless() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let store = server.fresh_store().await;
    owner_with_org(&store, "ada").await;
    store.migrate().await.expect("second migration");
    assert_eq!(store.user_count().await.expect("count"), 1);
    store.close().await;
    server.cleanup().await;
}

/// Text this version cannot parse back into its enum is reported as corrupt data, not as a
/// driver error and not silently mapped to some default.
#[tokio::test]
async fn unknown_enum_text_reads_as_corrupt() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let store = server.fresh_store().await;
    let (owner, org) = owner_with_org(&store, "ada").await;
    sqlx::query("UPDATE memberships SET role = 'root' WHERE org_id = $1")
        .bind(org.0)
        .execute(store.pool())
        .await
        .expect("corrupt the role");
    let err = store.role_of(org, owner).await.expect_err("must not parse");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store
        .organizations_of(owner)
        .await
        .expect_err("must not parse");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    store.close().await;
    server.cleanup().await;
}

/// A server that does not answer is `Unavailable` (worth retrying), a URL of another database
/// kind is a final `Backend` error.
#[tokio::test]
async fn connection_failures_are_classified() {
    let Some(server) = Server::from_env() else {
        return;
    };
    // Port 1 (tcpmux) is not served on a test machine, so the connection is refused at once.
    let err = PostgresStore::open("postgres://nobody@127.0.0.1:1/postgres")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    let err = PostgresStore::open("sqlite://switchboard.db")
        .await
        .expect_err("not a postgres url");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");

    let store = server.fresh_store().await;
    store.ping().await.expect("ping");
    store.close().await;
    let err = store.ping().await.expect_err("pool is closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    server.cleanup().await;
}
