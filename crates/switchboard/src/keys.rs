//! The master key on disk: reading it, generating it on first start, writing key files so that
//! only their owner can read them, and rotating it.
//!
//! Every write of a key file goes to a temporary file in the same directory which is synced and
//! then renamed over the target, so a crash leaves either the old file or the new one, never a
//! torn one.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use switchboard_seal::{KeyRing, Sealed};
use switchboard_service::Store;

use crate::config::MasterKeySource;

/// Creates `dir` and any missing parents with mode 0700: the directory holds the master key
/// and the database, which no other local user has any business listing.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))
}

/// Opens a new file that only its owner may read or write, failing if it exists.
fn create_private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A temporary file beside `path`, already holding `contents` and synced to disk.
fn write_temp_beside(path: &Path, contents: &[u8]) -> Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let written = create_private_file(&temp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", temp.display()));
    }
    Ok(temp)
}

/// Syncs a directory so that a rename inside it survives a power loss.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Best effort: some file systems refuse to sync a directory, and the rename itself has
        // already happened.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

/// Replaces (or creates) `path` with `contents`, mode 0600, atomically.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let temp = write_temp_beside(path, contents)?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot replace {}", path.display()));
    }
    sync_dir(path);
    Ok(())
}

/// Creates `path` with `contents`, mode 0600, only if it does not exist yet. Returns `false`
/// when it already existed. The hard link is what makes this safe against two processes
/// starting at once: exactly one of them links its complete file into place.
pub fn write_private_new(path: &Path, contents: &[u8]) -> Result<bool> {
    let temp = write_temp_beside(path, contents)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Reads a key ring from a file, warning when others may read it.
pub fn read_ring(path: &Path) -> Result<KeyRing> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the master key file {}", path.display()))?,
    );
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the master key file {} has mode {mode:o}; other users may read it (run chmod 600 on it)",
                path.display()
            );
        }
    }
    KeyRing::parse(&text).with_context(|| format!("the master key file {}", path.display()))
}

/// Reads the key from its source; `None` when the data-directory key does not exist yet.
pub fn load(source: &MasterKeySource) -> Result<Option<KeyRing>> {
    match source {
        MasterKeySource::Env(text) => KeyRing::parse(text.expose())
            .map(Some)
            .context("SWITCHBOARD_MASTER_KEY"),
        MasterKeySource::File(path) => {
            if !path.exists() {
                bail!(
                    "the master key file {} (security.master_key_file) does not exist; make one with \
                     `switchboard admin generate-key --output {}`",
                    path.display(),
                    path.display()
                );
            }
            read_ring(path).map(Some)
        }
        MasterKeySource::DataDir(path) => {
            if path.exists() {
                read_ring(path).map(Some)
            } else {
                Ok(None)
            }
        }
    }
}

/// Reads the key, generating the data-directory key on the first start of a new installation.
/// Returns the ring and whether it was just generated.
///
/// A missing key file for a database that already has accounts means the key was lost or the
/// configuration points at the wrong place. Generating a fresh key then would make every
/// stored credential unreadable without anyone noticing, so this refuses instead.
pub async fn load_or_generate(
    source: &MasterKeySource,
    store: &dyn Store,
) -> Result<(KeyRing, bool)> {
    if let Some(ring) = load(source)? {
        return Ok((ring, false));
    }
    let MasterKeySource::DataDir(path) = source else {
        unreachable!("only the data-directory key can be absent");
    };
    let users = store
        .user_count()
        .await
        .context("cannot read the database")?;
    if users > 0 {
        bail!(
            "no master key at {} but the database already holds {users} accounts: restore the key \
             file from a backup, or point security.master_key_file or SWITCHBOARD_MASTER_KEY at it",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let ring = KeyRing::generate();
    if write_private_new(path, ring.to_text().as_bytes())? {
        tracing::info!(
            key = ring.current_id(),
            "generated a new master key in {}",
            path.display()
        );
        Ok((ring, true))
    } else {
        // Another process starting at the same moment wrote its key first; use that one.
        Ok((read_ring(path)?, false))
    }
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// How many sealed values were rewritten.
    pub resealed: u64,
    /// The keys that sealed before.
    pub old_ids: Vec<String>,
    /// The key that seals now.
    pub new_id: String,
}

/// Reseals every stored secret under `ring`'s current key, in one transaction.
async fn reseal_all(ring: &KeyRing, store: &dyn Store) -> Result<u64> {
    let reseal = |context: &str, sealed: &str| {
        ring.reseal(&Sealed::from_stored(sealed.to_owned()), context)
            .map(|s| s.as_str().to_owned())
            .map_err(|e| e.to_string())
    };
    store
        .reseal_all(&reseal)
        .await
        .context("resealing the stored secrets failed; nothing was changed in the database")
}

/// Rotates the key kept in the data directory, in three steps that each leave a key file able
/// to open everything in the database:
///
/// 1. write a ring with the new key in front of the old ones: it opens old and new values;
/// 2. reseal every value under the new key, in one transaction;
/// 3. write a ring with only the new key, now that nothing needs the old ones.
pub async fn rotate_in_place(
    path: &Path,
    next: Option<KeyRing>,
    store: &dyn Store,
) -> Result<Rotation> {
    let old = read_ring(path)?;
    let next = next.unwrap_or_else(KeyRing::generate);
    if old.key_ids().contains(&next.current_id()) {
        bail!(
            "the new key {} is already in the key ring",
            next.current_id()
        );
    }
    let during = old.with_new_current(&next);
    write_private_atomic(path, during.to_text().as_bytes())?;
    let resealed = reseal_all(&during, store).await?;
    write_private_atomic(path, during.current_only().to_text().as_bytes())?;
    Ok(Rotation {
        resealed,
        old_ids: old.key_ids().into_iter().map(str::to_owned).collect(),
        new_id: next.current_id().to_owned(),
    })
}

/// Reseals everything from a key the operator supplies to another one they supply. Switchboard
/// does not own either file, so the operator switches the configuration afterwards.
pub async fn rotate_external(old: &KeyRing, next: &KeyRing, store: &dyn Store) -> Result<Rotation> {
    if old.key_ids().contains(&next.current_id()) {
        bail!(
            "the new key {} is already in the current key ring; generate a new one",
            next.current_id()
        );
    }
    let during = old.with_new_current(next);
    let resealed = reseal_all(&during, store).await?;
    Ok(Rotation {
        resealed,
        old_ids: old.key_ids().into_iter().map(str::to_owned).collect(),
        new_id: next.current_id().to_owned(),
    })
}

/// Reads a key file made by `admin generate-key` for a rotation.
pub fn read_new_key(path: &Path) -> Result<KeyRing> {
    read_ring(path).map_err(|e| anyhow!("--new-key-file: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_and_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let file = dir.join("k");
        assert!(write_private_new(&file, b"one").unwrap());
        assert!(!write_private_new(&file, b"two").unwrap());
        assert_eq!(std::fs::read(&file).unwrap(), b"one");
        write_private_atomic(&file, b"three").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"three");
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&file), 0o600);
        }
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn data_dir_key_is_absent_until_generated() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("master.key");
        assert!(
            load(&MasterKeySource::DataDir(path.clone()))
                .unwrap()
                .is_none()
        );
        let e = load(&MasterKeySource::File(path)).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
