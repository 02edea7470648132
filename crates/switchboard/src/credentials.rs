//! The command line's sign-in state: the server and API token `switchboard login` keeps, in
//! `credentials.toml` in the user's configuration directory, readable by the user only.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::client::Api;
use crate::keys::{create_private_dir, write_private_atomic};

/// The file's name inside the configuration directory.
const FILE_NAME: &str = "credentials.toml";

/// What `login` keeps.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The server's URL.
    pub server: String,
    /// The API token's secret.
    pub token: String,
    /// The token's id, to revoke it on `logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("token", &"[redacted]")
            .field("token_id", &self.token_id)
            .finish()
    }
}

/// The configuration directory: `$SWITCHBOARD_CONFIG_DIR`, else `$XDG_CONFIG_HOME/switchboard`,
/// else `~/.config/switchboard`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHBOARD_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("switchboard"));
    }
    let home = dirs::home_dir()
        .ok_or_else(|| anyhow!("cannot find your home directory; set SWITCHBOARD_CONFIG_DIR"))?;
    Ok(home.join(".config").join("switchboard"))
}

/// The credentials file's path.
pub fn path() -> Result<PathBuf> {
    Ok(config_dir()?.join(FILE_NAME))
}

/// Reads the kept credentials, if any.
pub fn load() -> Result<Option<Credentials>> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => zeroize::Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let credentials =
        toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?;
    Ok(Some(credentials))
}

/// Keeps credentials, replacing earlier ones, with mode 0600 in a 0700 directory.
pub fn save(credentials: &Credentials) -> Result<PathBuf> {
    let path = path()?;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let text = zeroize::Zeroizing::new(
        toml::to_string(credentials).context("cannot write the credentials")?,
    );
    write_private_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Forgets the kept credentials; returns whether there were any.
pub fn remove() -> Result<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// A signed-in API client. `SWITCHBOARD_SERVER` and `SWITCHBOARD_TOKEN` take precedence over
/// the kept credentials, for scripts and CI jobs that should not depend on a file.
pub fn signed_in() -> Result<Api> {
    let kept = load()?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let server = env("SWITCHBOARD_SERVER").or_else(|| kept.as_ref().map(|c| c.server.clone()));
    let token = env("SWITCHBOARD_TOKEN").or_else(|| kept.as_ref().map(|c| c.token.clone()));
    match (server, token) {
        (Some(server), Some(token)) => Api::new(&server, Some(token)),
        (None, Some(_)) => {
            bail!("SWITCHBOARD_TOKEN is set but no server is known; set SWITCHBOARD_SERVER too")
        }
        _ => bail!("not signed in; run `switchboard login` first"),
    }
}
