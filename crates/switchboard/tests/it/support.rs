//! Test support: runs the built `switchboard` binary in a scratch directory with a clean
//! environment, starts servers on a free loopback port, and opens an installation's database
//! in-process to look at what the binary stored.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_seal::{KeyRing, Sealed};
use switchboard_service::{Actor, App, ConnectorInput, CredentialInput, ServiceConfig, Store};
use switchboard_store_sqlite::SqliteStore;

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Asserts success and returns itself.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "expected success, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts failure with exit code 1 and a single `error: ` line, and returns that line.
    #[track_caller]
    pub fn error(self) -> String {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit code 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.starts_with("warning:"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got:\n{}",
            self.stderr
        );
        let line = lines[0];
        assert!(line.starts_with("error: "), "{line}");
        line["error: ".len()..].to_owned()
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A scratch installation: a working directory (holding `./data` by default) and a separate
/// directory for the command line's credentials.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new, empty scratch directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The working directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Where `login` keeps its credentials.
    pub fn config_dir(&self) -> PathBuf {
        self.path().join("cli-config")
    }

    /// A command running the binary here. Every `SWITCHBOARD_` variable of the test's own
    /// environment is removed, so a developer's settings cannot change what a test sees.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(args).current_dir(self.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SWITCHBOARD_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("RUST_LOG")
            .env("SWITCHBOARD_CONFIG_DIR", self.config_dir());
        cmd
    }

    /// Runs the binary with `env` set and `stdin` (or nothing) as standard input.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the switchboard binary starts");
        let mut input = child.stdin.take().expect("piped stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("writing stdin");
        }
        drop(input);
        let out = child
            .wait_with_output()
            .expect("the switchboard binary finishes");
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs the binary.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[], None)
    }

    /// Runs the binary with standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run_with(args, &[], Some(stdin))
    }

    /// Creates an owner and organization with `admin create-owner`.
    pub fn create_owner(&self, email: &str, org: &str, env: &[(&str, &str)]) {
        let args = [
            "admin",
            "create-owner",
            "--email",
            email,
            "--name",
            "Test Owner",
            "--org",
            org,
            "--password-stdin",
        ];
        self.run_with(&args, env, Some(&format!("{PASSWORD}\n")))
            .ok();
    }

    /// Starts `switchboard serve` on a free loopback port and waits until it listens.
    pub fn serve(&self, env: &[(&str, &str)]) -> Server {
        self.serve_with(&[], env)
    }

    /// Starts `switchboard serve` on a free loopback port with more flags, and waits until it
    /// listens.
    pub fn serve_with(&self, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let mut cmd = self.command(&args);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the switchboard binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            None,
        );
        let (tx, rx) = mpsc::channel();
        drain(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            Some(tx),
        );
        // A generous bound that only matters when the server hangs; the wait ends as soon as
        // the line appears.
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "the server did not report its address\nstderr:\n{}\nstdout:\n{}",
                        stderr.lock().unwrap(),
                        stdout.lock().unwrap()
                    );
                }
            }
        };
        Server {
            child,
            url,
            stdout,
            stderr,
        }
    }

    /// Signs in the command line as `email`.
    pub fn login(&self, server: &Server, email: &str) {
        self.run_stdin(
            &[
                "login",
                "--server",
                &server.url,
                "--email",
                email,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    }
}

/// A command still running, whose output arrives line by line.
pub struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    stdout_text: Arc<Mutex<String>>,
    stderr_text: Arc<Mutex<String>>,
}

impl Scratch {
    /// Starts the binary with `env` set and no standard input, without waiting for it.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the switchboard binary starts");
        let stdout_text = Arc::new(Mutex::new(String::new()));
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (out_tx, stdout) = mpsc::channel();
        let (err_tx, stderr) = mpsc::channel();
        drain(
            child.stdout.take().expect("piped stdout"),
            stdout_text.clone(),
            Some(out_tx),
        );
        drain(
            child.stderr.take().expect("piped stderr"),
            stderr_text.clone(),
            Some(err_tx),
        );
        Running {
            child,
            stdout,
            stderr,
            stdout_text,
            stderr_text,
        }
    }
}

impl Running {
    /// The first line of standard output (`stdout`) or standard error that `wanted` accepts,
    /// waiting up to `limit`; panics with what the command printed when none comes.
    pub fn line(&mut self, stdout: bool, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + limit;
        let lines = if stdout { &self.stdout } else { &self.stderr };
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no such line within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_text.lock().unwrap(),
                    self.stderr_text.lock().unwrap()
                ),
            }
        }
    }

    /// Waits up to `limit` for the command to finish, and returns what it printed.
    pub fn finish(mut self, limit: Duration) -> Output {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the command") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the command did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_text.lock().unwrap(),
                    self.stderr_text.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The pipes close with the process; each reader then finishes its last lines and
        // drops its sender, which ends the wait at once (the bound is for a stuck reader).
        for lines in [&self.stdout, &self.stderr] {
            while lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
        }
        Output {
            status,
            stdout: self.stdout_text.lock().unwrap().clone(),
            stderr: self.stderr_text.lock().unwrap().clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Copies a child's output into `buffer`, line by line, also sending each line to `lines`.
fn drain(
    pipe: impl Read + Send + 'static,
    buffer: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            buffer.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
}

/// A running `switchboard serve`. Killed on drop if a test ends without stopping it.
pub struct Server {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// What it has written to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What it has written to standard output so far (its log).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for it to exit.
    pub fn terminate(self) -> ExitStatus {
        self.send_term();
        self.wait()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_term(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
    }

    /// Waits for it to exit (after [`Server::send_term`]).
    pub fn wait(mut self) -> ExitStatus {
        let status = self.child.wait().expect("the server exits");
        if !status.success() {
            eprintln!(
                "server stdout:\n{}\nserver stderr:\n{}",
                self.stdout.lock().unwrap(),
                self.stderr()
            );
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "server stdout:\n{}\nserver stderr:\n{}",
                    self.stdout.lock().unwrap(),
                    self.stderr()
                );
            }
        }
    }
}

/// Waits until `done` holds, checking often; panics naming `what` when it has not held after
/// a generous bound, which only a broken program reaches.
#[track_caller]
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The mode bits of a file or directory.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A runtime for the in-process parts of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// An installation opened in-process: its store and the application over it.
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The application.
    pub app: App,
}

/// Opens a store and builds the application with the key ring in `key_file`.
pub async fn open_with(store: Arc<dyn Store>, key_file: &Path) -> Opened {
    let text = std::fs::read_to_string(key_file).expect("the key file is readable");
    let ring = KeyRing::parse(&text).expect("the key file parses");
    let app =
        App::new(store.clone(), ring, ServiceConfig::default()).expect("the application starts");
    Opened { store, app }
}

/// Opens the default SQLite database of a data directory with its generated key.
pub async fn open_data_dir(data_dir: &Path) -> Opened {
    let store = SqliteStore::open(data_dir.join("switchboard.db").to_str().unwrap())
        .await
        .expect("the database opens");
    open_with(Arc::new(store), &data_dir.join("master.key")).await
}

/// Signs `email` in through the service, as the server would for an API token.
pub async fn actor(app: &App, email: &str) -> Actor {
    let issued = app
        .login_for_token(email, PASSWORD, "test", "test", None)
        .await
        .expect("the test account signs in");
    app.token_actor(&issued.secret)
        .await
        .expect("the token is readable")
        .expect("the token is live")
}

/// A connector with a bearer credential, created through the service, so its credential is
/// sealed the way the server seals one. Returns its organization, id and stored sealed value.
pub async fn connector_with_secret(
    opened: &Opened,
    email: &str,
    name: &str,
    token: &str,
) -> SealedConnector {
    let actor = actor(&opened.app, email).await;
    let (org, _) = opened
        .app
        .my_organizations(&actor)
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("an organization");
    let access = opened.app.org_access(&actor, org.id).await.unwrap();
    let connector = opened
        .app
        .create_connector(
            &access.admin().unwrap(),
            ConnectorInput {
                name: name.into(),
                url: "https://mcp.example.com/mcp".into(),
                description: None,
                credential: Some(CredentialInput::Bearer {
                    token: token.into(),
                }),
                credential_scope: None,
                auth_method: None,
            },
        )
        .await
        .expect("the connector is created");
    let sealed = sealed_credential(opened, &access, connector.id).await;
    SealedConnector {
        actor,
        org: org.id,
        id: connector.id,
        sealed,
    }
}

/// A connector made by [`connector_with_secret`].
pub struct SealedConnector {
    /// Its creator.
    pub actor: Actor,
    /// Its organization.
    pub org: switchboard_domain::OrgId,
    /// Its id.
    pub id: switchboard_domain::ConnectorId,
    /// Its credential as stored.
    pub sealed: Sealed,
}

/// A connector's shared credential as stored (sealed).
pub async fn sealed_credential(
    opened: &Opened,
    access: &switchboard_service::OrgAccess,
    id: switchboard_domain::ConnectorId,
) -> Sealed {
    let stored = opened
        .store
        .connector_credential(access.org(), id, None)
        .await
        .unwrap()
        .expect("a stored credential");
    Sealed::from_stored(stored.sealed)
}

/// Opens a connector's credential through the application, as the connector engine would.
pub async fn open_credential(
    opened: &Opened,
    actor: &Actor,
    org: switchboard_domain::OrgId,
    id: switchboard_domain::ConnectorId,
) -> Result<String, String> {
    let access = opened
        .app
        .org_access(actor, org)
        .await
        .map_err(|e| e.to_string())?;
    match opened
        .app
        .shared_credential(&access, id)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(CredentialInput::Bearer { token }) => Ok(token),
        other => Err(format!("unexpected credential {other:?}")),
    }
}

/// A signed-in API client of one server.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// An API answer: its status and its body (JSON, or `null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// The stable error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl Api {
    /// Signs `email` in with a personal API token.
    pub async fn sign_in(server_url: &str, email: &str) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let response = http
            .post(format!("{server_url}/api/v1/auth/token"))
            .json(&json!({"email": email, "password": PASSWORD, "name": "test"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let issued: Value = response.json().await.unwrap();
        Api {
            base: server_url.to_owned(),
            token: issued["secret"]
                .as_str()
                .expect("a token secret")
                .to_owned(),
            http,
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, body, text }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// The id of the caller's first organization.
    pub async fn org(&self) -> String {
        let orgs = self.get("/orgs").await;
        assert_eq!(orgs.status, 200, "{}", orgs.text);
        let list = orgs
            .body
            .as_array()
            .or_else(|| orgs.body["items"].as_array())
            .unwrap_or_else(|| panic!("no list in {}", orgs.text));
        let first = &list[0];
        first["organization"]["id"]
            .as_str()
            .or_else(|| first["id"].as_str())
            .unwrap_or_else(|| panic!("no organization id in {first}"))
            .to_owned()
    }

    /// Sends a request that must succeed; its body.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.send(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&answer.status),
            "{method} {path}: {} {}",
            answer.status,
            answer.text
        );
        answer.body
    }
}
