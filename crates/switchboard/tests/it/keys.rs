//! The master key: generated on first start with private file modes, refused when lost, and
//! rotated for both the generated key and a key the operator supplies.

use switchboard_seal::KeyRing;

use crate::support::{
    Scratch, connector_with_secret, mode, open_credential, open_data_dir, open_with, runtime,
};

#[test]
fn first_start_generates_a_private_key_in_a_private_directory() {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    assert_eq!(mode(&s.data_dir()), 0o700);
    let key_file = s.data_dir().join("master.key");
    assert_eq!(mode(&key_file), 0o600);
    let ring = KeyRing::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(ring.key_ids().len(), 1);
    // `config check` now reports the key it found, by id only.
    let out = s.run(&["config", "check"]).ok();
    assert!(out.stdout.contains(ring.current_id()), "{}", out.stdout);
}

#[test]
fn generate_key_writes_a_private_file_and_never_overwrites() {
    let s = Scratch::new();
    let printed = s.run(&["admin", "generate-key"]).ok().stdout;
    KeyRing::parse(&printed).expect("the printed key parses");
    s.run(&["admin", "generate-key", "--output", "new.key"])
        .ok();
    let path = s.path().join("new.key");
    assert_eq!(mode(&path), 0o600);
    let before = std::fs::read(&path).unwrap();
    let error = s
        .run(&["admin", "generate-key", "--output", "new.key"])
        .error();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_lost_key_is_not_silently_replaced() {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    std::fs::remove_file(s.data_dir().join("master.key")).unwrap();
    // Migrations need no key, so they still run.
    s.run(&["db", "migrate"]).ok();
    let args = [
        "admin",
        "create-owner",
        "--email",
        "bob@example.org",
        "--name",
        "Bob",
        "--org",
        "bobs",
        "--password-stdin",
    ];
    let error = s.run_stdin(&args, "correct horse battery\n").error();
    assert!(
        error.contains("no master key") && error.contains("restore"),
        "{error}"
    );
    assert!(!s.data_dir().join("master.key").exists());
}

#[test]
fn rotating_the_generated_key_reseals_every_credential() {
    let s = Scratch::new();
    s.create_owner("ada@example.org", "acme", &[]);
    let rt = runtime();
    let before = rt.block_on(async {
        let opened = open_data_dir(&s.data_dir()).await;
        connector_with_secret(&opened, "ada@example.org", "github", "s3cret-token").await
    });
    let old_id = before.sealed.key_id().unwrap().to_owned();

    let out = s.run(&["admin", "rotate-key"]).ok();
    assert!(
        out.stdout.contains("resealed 1 stored secrets"),
        "{}",
        out.stdout
    );

    let key_file = s.data_dir().join("master.key");
    assert_eq!(mode(&key_file), 0o600);
    let ring = KeyRing::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(ring.key_ids().len(), 1, "the old key is gone from the file");
    assert_ne!(ring.current_id(), old_id);
    // No temporary files are left beside the key.
    let names: Vec<String> = std::fs::read_dir(s.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");

    rt.block_on(async {
        let opened = open_data_dir(&s.data_dir()).await;
        let access = opened
            .app
            .org_access(&before.actor, before.org)
            .await
            .unwrap();
        let sealed = crate::support::sealed_credential(&opened, &access, before.id).await;
        assert_eq!(
            sealed.key_id(),
            Some(ring.current_id()),
            "the stored value now names the new key"
        );
        assert_ne!(sealed, before.sealed);
        assert_eq!(
            open_credential(&opened, &before.actor, before.org, before.id)
                .await
                .unwrap(),
            "s3cret-token"
        );
    });

    // Rotating again works the same way.
    s.run(&["admin", "rotate-key"]).ok();
    rt.block_on(async {
        let opened = open_data_dir(&s.data_dir()).await;
        assert_eq!(
            open_credential(&opened, &before.actor, before.org, before.id)
                .await
                .unwrap(),
            "s3cret-token"
        );
    });
}

#[test]
fn rotating_a_supplied_key_needs_a_new_key_file() {
    let s = Scratch::new();
    s.run(&["admin", "generate-key", "--output", "old.key"])
        .ok();
    let env = [("SWITCHBOARD_MASTER_KEY_FILE", "old.key")];
    s.create_owner("ada@example.org", "acme", &env);
    assert!(
        !s.data_dir().join("master.key").exists(),
        "a supplied key means none is generated"
    );
    let rt = runtime();
    let db = s.data_dir().join("switchboard.db");
    let store = || async {
        std::sync::Arc::new(
            switchboard_store_sqlite::SqliteStore::open(db.to_str().unwrap())
                .await
                .unwrap(),
        )
    };
    let before = rt.block_on(async {
        let opened = open_with(store().await, &s.path().join("old.key")).await;
        connector_with_secret(&opened, "ada@example.org", "github", "s3cret-token").await
    });

    let error = s.run_with(&["admin", "rotate-key"], &env, None).error();
    assert!(error.contains("--new-key-file"), "{error}");

    s.run(&["admin", "generate-key", "--output", "new.key"])
        .ok();
    let old_text = std::fs::read(s.path().join("old.key")).unwrap();
    let out = s
        .run_with(
            &["admin", "rotate-key", "--new-key-file", "new.key"],
            &env,
            None,
        )
        .ok();
    assert!(
        out.stdout.contains("switch the configuration"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(s.path().join("old.key")).unwrap(),
        old_text,
        "a supplied key file is never written"
    );

    rt.block_on(async {
        let new = open_with(store().await, &s.path().join("new.key")).await;
        assert_eq!(
            open_credential(&new, &before.actor, before.org, before.id)
                .await
                .unwrap(),
            "s3cret-token"
        );
        let old = open_with(store().await, &s.path().join("old.key")).await;
        assert!(
            open_credential(&old, &before.actor, before.org, before.id)
                .await
                .is_err(),
            "the old key opens nothing now"
        );
    });
    // With the configuration switched, the server-side commands work with the new key.
    s.run_with(
        &["config", "check"],
        &[("SWITCHBOARD_MASTER_KEY_FILE", "new.key")],
        None,
    )
    .ok();
}
