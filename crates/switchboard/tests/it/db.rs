//! `db migrate` and `db copy`, SQLite to SQLite always and SQLite to PostgreSQL when
//! `SWITCHBOARD_TEST_POSTGRES_URL` names a server the test may create a database on.

use std::sync::Arc;

use switchboard_store_postgres::PostgresStore;
use switchboard_store_sqlite::SqliteStore;

use crate::support::{
    Scratch, connector_with_secret, open_credential, open_data_dir, open_with, runtime,
};

/// An installation with an owner and a connector whose credential is sealed.
fn populated() -> (Scratch, crate::support::SealedConnector) {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let made = runtime().block_on(async {
        let opened = open_data_dir(&s.data_dir()).await;
        connector_with_secret(&opened, "ada@example.org", "github", "s3cret-token").await
    });
    (s, made)
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
    let (s, made) = populated();
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
    let (s, made) = populated();
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
