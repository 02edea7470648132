//! `db migrate` and `db copy`, SQLite to SQLite always and SQLite to PostgreSQL when
//! `SWITCHBOARD_TEST_POSTGRES_URL` names a server the test may create a database on.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use switchboard_domain::{
    AuditAction, Conversation, ConversationId, Email, NewAuditEvent, ProviderKind, TurnId,
    TurnRecord, TurnStatus, UserId, chat_model_seal_context,
};
use switchboard_seal::{KeyRing, Sealed};
use switchboard_store::{NewChatEvent, Store, StoredChatModel, TurnSave};
use switchboard_store_postgres::PostgresStore;
use switchboard_store_sqlite::SqliteStore;

use crate::support::{
    Opened, Scratch, SealedConnector, connector_with_secret, open_credential, open_data_dir,
    open_with, runtime,
};

/// The chat rows [`populated`] adds.
struct Chat {
    user: UserId,
    conversation: ConversationId,
}

/// An installation with an owner, a connector whose credential is sealed, the organization's
/// language model with a sealed key, and a conversation on the connector with an ended turn
/// (history) and an open one (events and a lease).
fn populated() -> (Scratch, SealedConnector, Chat) {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let (made, chat) = runtime().block_on(async {
        let opened = open_data_dir(&s.data_dir()).await;
        let made =
            connector_with_secret(&opened, "ada@example.org", "github", "s3cret-token").await;
        let chat = add_chat(&opened, &key_ring(&s.data_dir().join("master.key")), &made).await;
        (made, chat)
    });
    (s, made, chat)
}

fn key_ring(key_file: &Path) -> KeyRing {
    KeyRing::parse(&std::fs::read_to_string(key_file).unwrap()).unwrap()
}

fn event(kind: &str) -> NewChatEvent {
    NewChatEvent {
        kind: kind.to_owned(),
        data: json!({"kind": kind, "text": "ünïcode"}),
    }
}

async fn add_chat(opened: &Opened, ring: &KeyRing, made: &SealedConnector) -> Chat {
    let store = &*opened.store;
    let (user, _) = store
        .user_login(&Email::parse("ada@example.org").unwrap())
        .await
        .unwrap()
        .expect("the owner exists");
    let now = switchboard_store::now();
    let sealed = ring.seal(b"model-api-key", &chat_model_seal_context(made.org));
    store
        .set_chat_model(
            made.org,
            Some(&StoredChatModel {
                kind: ProviderKind::Mistral,
                base_url: "https://api.mistral.ai/v1".into(),
                model: "mistral-small-latest".into(),
                sealed_key: Some(sealed.as_str().to_owned()),
                updated_at: now,
            }),
            &NewAuditEvent::new(AuditAction::ChatModelChanged, Some(user.id)).org(made.org),
        )
        .await
        .unwrap();
    let conversation = Conversation {
        id: ConversationId::new(),
        org_id: made.org,
        user_id: user.id,
        title: "Copied".into(),
        connectors: vec![made.id],
        created_at: now,
        updated_at: now,
    };
    store.create_conversation(&conversation).await.unwrap();
    let turn = |status| TurnRecord {
        id: TurnId::new(),
        conversation_id: conversation.id,
        org_id: made.org,
        user_id: user.id,
        status,
        state: json!({"step": 0}),
        version: 1,
        lease_until: None,
        created_at: now,
    };
    let generation = store
        .chat_catalog(made.org, user.id)
        .await
        .unwrap()
        .policy_generation;
    let ended = turn(TurnStatus::Running);
    store
        .start_turn(&ended, &[event("turn_started")], generation)
        .await
        .unwrap()
        .expect("no policy changed");
    store
        .save_turn(&TurnSave {
            id: ended.id,
            conversation: conversation.id,
            version: 1,
            policy_generation: generation,
            status: TurnStatus::Done,
            state: &json!({"done": true}),
            lease_until: None,
            events: &[event("done")],
            messages: &[
                json!({"role": "user", "content": "hi"}),
                json!({"role": "assistant", "content": "hello"}),
            ],
            audit: &[],
            now,
        })
        .await
        .unwrap()
        .expect("the save wins");
    let open = TurnRecord {
        lease_until: Some(now),
        ..turn(TurnStatus::Running)
    };
    store
        .start_turn(
            &open,
            &[event("turn_started"), event("text_delta")],
            generation,
        )
        .await
        .unwrap()
        .expect("no policy changed");
    Chat {
        user: user.id,
        conversation: conversation.id,
    }
}

/// Checks that a copy holds the chat rows [`add_chat`] wrote and that the model's key opens
/// with the installation's key ring.
async fn check_chat(copy: &dyn Store, ring: &KeyRing, made: &SealedConnector, chat: &Chat) {
    let conversation = copy
        .conversation(made.org, chat.user, chat.conversation)
        .await
        .unwrap();
    assert_eq!(conversation.connectors, [made.id]);
    assert_eq!(
        copy.chat_messages(chat.conversation).await.unwrap().len(),
        2
    );
    let events = copy.chat_events(chat.conversation, 0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let open = copy.open_turn(chat.conversation).await.unwrap().unwrap();
    assert!(open.lease_until.is_some());
    let model = copy.chat_model(made.org).await.unwrap().unwrap();
    let key = ring
        .open(
            &Sealed::from_stored(model.sealed_key.unwrap()),
            &chat_model_seal_context(made.org),
        )
        .unwrap();
    assert_eq!(&key[..], b"model-api-key");
}

fn sqlite_url(s: &Scratch) -> String {
    format!("sqlite://{}", s.data_dir().join("switchboard.db").display())
}

#[test]
fn migrate_creates_the_default_database() {
    let s = Scratch::new();
    let out = s.run(&["db", "migrate"]).ok();
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
    assert!(s.data_dir().join("switchboard.db").exists());
    s.run(&["db", "migrate"]).ok();
}

#[test]
fn copy_from_sqlite_to_sqlite_keeps_everything() {
    let (s, made, chat) = populated();
    let target = s.path().join("copy/target.db");
    let target_url = format!("sqlite://{}", target.display());
    let out = s
        .run(&["db", "copy", "--from", &sqlite_url(&s), "--to", &target_url])
        .ok();
    assert!(
        out.stdout.contains("the copy matches the source"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("connector_credentials")
                && l.split_whitespace().filter(|w| *w == "1").count() == 2),
        "{}",
        out.stdout
    );

    // The copy opens with the same key and holds the same secret.
    runtime().block_on(async {
        let store = Arc::new(SqliteStore::open(target.to_str().unwrap()).await.unwrap());
        let opened = open_with(store, &s.data_dir().join("master.key")).await;
        assert_eq!(opened.store.user_count().await.unwrap(), 1);
        assert_eq!(
            open_credential(&opened, &made.actor, made.org, made.id)
                .await
                .unwrap(),
            "s3cret-token"
        );
        let ring = key_ring(&s.data_dir().join("master.key"));
        check_chat(&*opened.store, &ring, &made, &chat).await;
    });

    // A second copy into the same, no longer empty, database is refused.
    let error = s
        .run(&["db", "copy", "--from", &sqlite_url(&s), "--to", &target_url])
        .error();
    assert!(error.contains("already holds data"), "{error}");
    let error = s
        .run(&[
            "db",
            "copy",
            "--from",
            "sqlite://./nothing-here.db",
            "--to",
            &target_url,
        ])
        .error();
    assert!(error.contains("does not exist"), "{error}");
    assert!(!s.path().join("nothing-here.db").exists());
}

#[test]
fn copy_from_sqlite_to_postgres() {
    let Ok(admin_url) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") else {
        // CI must run this test, never pass it vacuously (scripts/test starts a cluster).
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SWITCHBOARD_TEST_POSTGRES_URL must be set under CI"
        );
        eprintln!(
            "SWITCHBOARD_TEST_POSTGRES_URL is not set; skipping the PostgreSQL copy (scripts/test sets it)"
        );
        return;
    };
    let (s, made, chat) = populated();
    let rt = runtime();
    let name = format!(
        "sb_copy_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut target_url =
        url::Url::parse(&admin_url).expect("SWITCHBOARD_TEST_POSTGRES_URL is a URL");
    target_url.set_path(&format!("/{name}"));
    rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("the test server accepts connections");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
    });

    let out = s
        .run(&[
            "db",
            "copy",
            "--from",
            &sqlite_url(&s),
            "--to",
            target_url.as_str(),
        ])
        .ok();
    assert!(
        out.stdout.contains("from sqlite") && out.stdout.contains("to postgres"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("the copy matches the source"),
        "{}",
        out.stdout
    );

    rt.block_on(async {
        let store = Arc::new(PostgresStore::open(target_url.as_str()).await.unwrap());
        let opened = open_with(store.clone(), &s.data_dir().join("master.key")).await;
        assert_eq!(
            open_credential(&opened, &made.actor, made.org, made.id)
                .await
                .unwrap(),
            "s3cret-token"
        );
        let ring = key_ring(&s.data_dir().join("master.key"));
        check_chat(&*opened.store, &ring, &made, &chat).await;
        drop(opened);
        store.pool().close().await;
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
}
