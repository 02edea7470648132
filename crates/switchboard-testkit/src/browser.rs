//! A real headless Chromium, driven by Playwright (`tests/peers/npm/browser_authorize.mjs`), that
//! goes through an authorization server's login and consent pages as a person would.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::peers::Peers;

/// Names another Chromium binary than [`DEFAULT_CHROMIUM`].
pub const CHROMIUM_VAR: &str = "SWITCHBOARD_TEST_CHROMIUM";

/// Where Debian's `chromium` package puts the browser (`.ci/run` installs it).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long one authorization may take, login and consent included, unless changed with
/// [`Browser::with_timeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// At most this many browsers run at once in one test process: each is a handful of processes,
/// and the machines have two cores.
static RUNNING: Semaphore = Semaphore::const_new(2);

/// Headless Chromium with a fresh, empty profile for every authorization. It only reaches
/// loopback: every other host is refused, so nothing leaves the machine.
#[derive(Debug, Clone)]
pub struct Browser {
    chromium: PathBuf,
    login: String,
    timeout: Duration,
    outcome_selector: Option<String>,
}

/// Where the browser ended up.
#[derive(Debug, Clone, Deserialize)]
pub struct Authorization {
    /// The first URL under the redirect prefix that the browser requested, query included
    /// (`code`, `state`, `iss`, or `error`).
    pub final_url: String,
    /// The HTTP status the redirect target answered with, or `None` when it did not answer.
    pub status: Option<u16>,
    /// The pages the browser went through, in order: `"login"`, `"consent"`.
    pub steps: Vec<String>,
    /// The text of the redirect target's element chosen by [`Browser::with_outcome`], once
    /// that page loaded; `None` without a selector.
    #[serde(default)]
    pub outcome: Option<String>,
}

impl Authorization {
    /// The value of the query parameter `name` of [`Authorization::final_url`].
    pub fn param(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&self.final_url).ok()?;
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

impl Browser {
    /// The browser named by [`CHROMIUM_VAR`], else [`DEFAULT_CHROMIUM`]. When it is missing,
    /// `None` after saying (once) how to install it, so the test can return early; under
    /// `CI=true` a missing browser is a failure instead, so CI never skips the browser tests.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when the browser is missing.
    pub fn find() -> Option<Browser> {
        let chromium = std::env::var_os(CHROMIUM_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
        if chromium.is_file() {
            return Some(Browser {
                chromium,
                login: "alice".to_owned(),
                timeout: DEFAULT_TIMEOUT,
                outcome_selector: None,
            });
        }
        let advice = format!(
            "no Chromium at {} (install Debian's `chromium`: apt-get install chromium, as .ci/run \
             does, or name another binary in {CHROMIUM_VAR})",
            chromium.display()
        );
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{advice}; CI must run the browser tests");
        }
        static NOTICE: Once = Once::new();
        NOTICE.call_once(|| {
            // Past the test harness's capture, so that a passing run shows it too.
            let _ = writeln!(std::io::stderr(), "skipping the browser tests: {advice}");
        });
        None
    }

    /// Signs in as `login` (the token's subject) instead of `alice`.
    pub fn with_login(mut self, login: &str) -> Browser {
        self.login = login.to_owned();
        self
    }

    /// Lets the redirect target load in the browser (with the browser's cookies) and reports
    /// the text of its element matching the CSS `selector` as [`Authorization::outcome`].
    pub fn with_outcome(mut self, selector: &str) -> Browser {
        self.outcome_selector = Some(selector.to_owned());
        self
    }

    /// Allows an authorization `timeout` instead of a minute.
    pub fn with_timeout(mut self, timeout: Duration) -> Browser {
        self.timeout = timeout;
        self
    }

    /// The Chromium binary it runs.
    pub fn chromium(&self) -> &Path {
        &self.chromium
    }

    /// Opens `authorization_url`, signs in on oidc-provider's development login page, confirms
    /// the consent page, and returns once the browser is sent to a URL starting with
    /// `redirect_prefix`. The request to that URL goes through, so a callback listener started
    /// by the test serves it ([`Authorization::status`] says what it answered).
    ///
    /// Fails with the page's text when the browser lands elsewhere (an error page, say), and
    /// after the timeout.
    pub async fn authorize(
        &self,
        authorization_url: &str,
        redirect_prefix: &str,
    ) -> anyhow::Result<Authorization> {
        let peers = Peers::locate();
        let node = peers.node();
        let script = peers.browser_script();
        let _permit = RUNNING
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut command = Command::new(&node);
        command
            .arg(&script)
            .arg("--url")
            .arg(authorization_url)
            .arg("--redirect-prefix")
            .arg(redirect_prefix)
            .arg("--chromium")
            .arg(&self.chromium)
            .arg("--login")
            .arg(&self.login)
            .arg("--timeout-ms")
            .arg(self.timeout.as_millis().to_string());
        if let Some(selector) = &self.outcome_selector {
            command.arg("--outcome-selector").arg(selector);
        }
        command
            .env("PEER_NPM_DIR", peers.npm_dir())
            .current_dir(peers.workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own group, so that Chromium's processes go with it.
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let group = GroupGuard(child.id());
        // The script keeps its own deadline; this one only catches a script that hangs.
        let limit = self.timeout + Duration::from_secs(30);
        let output = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .with_context(|| format!("the browser did not finish within {limit:?}"))??;
        drop(group);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "the browser did not reach {redirect_prefix} ({}):\n{stderr}{stdout}",
                output.status
            );
        }
        let line = stdout
            .lines()
            .rev()
            .find(|line| line.starts_with('{'))
            .with_context(|| format!("the browser script printed no result:\n{stdout}{stderr}"))?;
        serde_json::from_str(line).with_context(|| format!("the browser script printed {line:?}"))
    }
}

/// Kills a process group when dropped: the browser script's, Chromium included, whether it
/// finished, failed or timed out.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self
            .0
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            // The group is usually gone already; nothing to do about a failure.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}
