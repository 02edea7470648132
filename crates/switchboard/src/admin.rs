//! `switchboard admin`: operator tasks that go straight to the database, for when there is no
//! account to sign in with yet (or none left), and the master key's life cycle.

use anyhow::{Context, Result, bail};
use switchboard_seal::KeyRing;
use switchboard_service::{App, OwnerInput};

use crate::cli::{CreateOwnerArgs, RotateKeyArgs};
use crate::config::{Config, MasterKeySource};
use crate::{backend, keys, prompt};

/// `admin create-owner`.
pub async fn create_owner(config: &Config, args: CreateOwnerArgs) -> Result<()> {
    // Ask before touching the database, so a mistyped password costs nothing.
    let password = prompt::new_password("Password for the new owner: ", args.password_stdin)?;
    let store = backend::open_migrated(&config.database_url).await?;
    let (ring, generated) = keys::load_or_generate(&config.master_key, &*store).await?;
    if let (true, MasterKeySource::DataDir(path)) = (generated, &config.master_key) {
        eprintln!(
            "generated a new master key in {}; back it up",
            path.display()
        );
    }
    let app = App::new(store, ring, config.service_config(config.listen))
        .context("cannot start the application")?;
    let input = OwnerInput {
        email: args.email,
        display_name: args.name,
        password: password.to_string(),
        org_name: args.org_name.unwrap_or_else(|| args.org.clone()),
        org_slug: args.org,
    };
    let (user, org) = app
        .create_owner(input)
        .await
        .map_err(crate::service_error)?;
    outln!(
        "created {} ({}) as owner of the organization {} ({})",
        user.email.as_str(),
        user.display_name,
        org.slug.as_str(),
        org.name
    );
    Ok(())
}

/// `admin rotate-key`.
pub async fn rotate_key(config: &Config, args: RotateKeyArgs) -> Result<()> {
    let next = args
        .new_key_file
        .as_deref()
        .map(keys::read_new_key)
        .transpose()?;
    let store = backend::open_migrated(&config.database_url).await?;
    let rotation = match &config.master_key {
        MasterKeySource::DataDir(path) => {
            if !path.exists() {
                bail!(
                    "there is no master key at {} yet; nothing to rotate",
                    path.display()
                );
            }
            keys::rotate_in_place(path, next, &*store).await?
        }
        external => {
            let Some(next) = next else {
                bail!(
                    "the master key comes from {external}, which Switchboard does not write: make a \
                     new key with `switchboard admin generate-key --output NEW` and pass \
                     --new-key-file NEW"
                );
            };
            let old = keys::load(external)?.context("the current master key could not be read")?;
            keys::rotate_external(&old, &next, &*store).await?
        }
    };
    outln!(
        "resealed {} stored secrets from key {} to key {}",
        rotation.resealed,
        rotation.old_ids.join(", "),
        rotation.new_id
    );
    match (&config.master_key, &args.new_key_file) {
        (MasterKeySource::DataDir(path), _) => {
            outln!("{} now holds only the new key; back it up", path.display());
        }
        (_, Some(new_file)) => outln!(
            "now switch the configuration to the new key before starting the server: set \
             security.master_key_file (or SWITCHBOARD_MASTER_KEY_FILE) to {}, or put its text in \
             SWITCHBOARD_MASTER_KEY; the old key no longer opens anything",
            new_file.display()
        ),
        (_, None) => unreachable!("an external rotation needs --new-key-file"),
    }
    Ok(())
}

/// `admin generate-key`.
pub fn generate_key(output: Option<&std::path::Path>) -> Result<()> {
    let ring = KeyRing::generate();
    match output {
        Some(path) => {
            if !keys::write_private_new(path, ring.to_text().as_bytes())? {
                bail!("{} already exists; choose another path", path.display());
            }
            outln!(
                "wrote a new master key (id {}) to {} with mode 0600",
                ring.current_id(),
                path.display()
            );
        }
        None => {
            out!("{}", *ring.to_text());
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                eprintln!(
                    "(this is a secret; prefer --output PATH, which writes a file only you can read)"
                );
            }
        }
    }
    Ok(())
}
