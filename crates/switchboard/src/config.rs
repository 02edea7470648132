//! The operator's configuration: built-in defaults, then a TOML file, then `SWITCHBOARD_`
//! environment variables, then command-line flags, each layer overriding the one before.
//!
//! Every layer is parsed into the same [`Layer`] shape and checked on its own before the
//! layers are merged, so an error names the key the way the operator wrote it: a TOML key and
//! line in the file, an environment variable's name, or a flag.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use switchboard_domain::{HttpAllowance, ProviderKind};
use switchboard_server::ServerConfig;
use switchboard_service::{ChatConfig, ModelSettings, ServiceConfig};
use url::Url;

use crate::secret::{ApiKeyText, DatabaseUrl, MasterKeyText};

/// Prefix of every environment variable the configuration reads.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Name of the generated key file inside the data directory.
pub const KEY_FILE_NAME: &str = "master.key";

/// Environment variables starting with [`ENV_PREFIX`] that are not configuration keys but are
/// still Switchboard's, so `config check` does not call them unknown.
const OTHER_ENV: &[&str] = &["CONFIG", "CONFIG_DIR", "SERVER", "TOKEN", "ORG"];

/// Each key that can come from the environment: its variable (after the prefix) and its key in
/// the file. `MASTER_KEY` and `CHAT_MODEL_API_KEY` have no file key on purpose: key material
/// does not belong in a file that also holds ordinary settings (each has a `_FILE` key naming a
/// file of its own instead).
const ENV_KEYS: &[(&str, &str)] = &[
    ("LISTEN", "listen"),
    ("PUBLIC_URL", "public_url"),
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database_url"),
    ("LOG_FORMAT", "log.format"),
    ("LOG_LEVEL", "log.level"),
    ("MASTER_KEY", "security.master_key"),
    ("MASTER_KEY_FILE", "security.master_key_file"),
    ("ALLOW_HTTP_LOOPBACK", "security.allow_http_loopback"),
    ("ALLOW_HTTP_HOSTS", "security.allow_http_hosts"),
    ("COOKIE_SECURE", "security.cookie_secure"),
    ("SESSION_HOURS", "security.session_hours"),
    ("MAX_TOKEN_DAYS", "security.max_token_days"),
    ("LOGIN_FAILURES", "security.login_failures"),
    ("LOGIN_WINDOW_MINUTES", "security.login_window_minutes"),
    ("MAX_BODY_BYTES", "http.max_body_bytes"),
    ("REQUEST_TIMEOUT_SECS", "http.request_timeout_secs"),
    ("TRUST_FORWARDED_FOR", "http.trust_forwarded_for"),
    ("CALL_TIMEOUT_SECS", "connectors.call_timeout_secs"),
    ("MAX_RESULT_BYTES", "connectors.max_result_bytes"),
    ("SESSION_IDLE_SECS", "connectors.session_idle_secs"),
    ("CHAT_STEP_LIMIT", "chat.step_limit"),
    ("CHAT_LEASE_SECS", "chat.lease_secs"),
    ("CHAT_MAX_OUTPUT_CHARS", "chat.max_output_chars"),
    ("CHAT_MAX_FUNCTIONS", "chat.max_functions"),
    ("CHAT_MAX_FUNCTION_TOKENS", "chat.max_function_tokens"),
    ("CHAT_SEARCH_MATCHES", "chat.search_matches"),
    ("CHAT_MODEL_KIND", "chat.model_kind"),
    ("CHAT_MODEL_BASE_URL", "chat.model_base_url"),
    ("CHAT_MODEL_NAME", "chat.model_name"),
    ("CHAT_MODEL_API_KEY", "chat.model_api_key"),
    ("CHAT_MODEL_API_KEY_FILE", "chat.model_api_key_file"),
];

/// The bounds of each numeric key: wide enough for any sensible installation, narrow enough to
/// catch a slip such as minutes written as seconds.
const BOUNDS: &[(&str, u64, u64)] = &[
    ("security.session_hours", 1, 24 * 30),
    ("security.max_token_days", 1, 3650),
    ("security.login_failures", 1, 1000),
    ("security.login_window_minutes", 1, 24 * 60),
    ("http.max_body_bytes", 1024, 1 << 30),
    ("http.request_timeout_secs", 1, 3600),
    ("connectors.call_timeout_secs", 1, 3600),
    // Below a kilobyte hardly any result fits; above a gigabyte one call could exhaust memory.
    ("connectors.max_result_bytes", 1024, 1 << 30),
    ("connectors.session_idle_secs", 1, 24 * 3600),
    ("chat.step_limit", 1, 100),
    ("chat.lease_secs", 1, 3600),
    ("chat.max_output_chars", 1000, 10_000_000),
    // 0 is meaningful (the model always searches); OpenAI's API takes at most 128 tools.
    ("chat.max_functions", 0, 128),
    ("chat.max_function_tokens", 0, 1_000_000),
    // What a search returns is also given in full, so it stays within the same 128.
    ("chat.search_matches", 1, 128),
];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("must be text or json, found {other:?}")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// A log level such as `info`, or a full tracing filter such as `info,sqlx=warn`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogLevel(String);

impl LogLevel {
    /// The filter text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
        let s = s.trim();
        // A bare word is a level. The filter parser would accept any word as a target name,
        // which would silently turn a typo such as "inof" into "log nothing".
        if !s.contains(['=', ',', '[']) {
            if LEVELS.contains(&s.to_ascii_lowercase().as_str()) {
                return Ok(Self(s.to_ascii_lowercase()));
            }
            return Err(format!("must be one of {}, found {s:?}", LEVELS.join(", ")));
        }
        tracing_subscriber::EnvFilter::try_new(s)
            .map_err(|e| format!("is not a valid log filter ({e})"))?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// One entry of `allow_http_hosts`: a host name, an IP address or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostRule(String);

impl FromStr for HostRule {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let bad = |why: &str| Err(format!("{raw:?} {why}"));
        if s.is_empty() {
            return bad("is empty; expected a host name, an IP address or a CIDR block");
        }
        if s.contains('*') {
            return bad(
                "uses a wildcard, which is not supported; list the hosts or use a CIDR block",
            );
        }
        if s.starts_with('[') {
            return bad("must be written without brackets, as in ::1 or fd00::/8");
        }
        if let Some((addr, bits)) = s.split_once('/') {
            let Ok(ip) = addr.parse::<IpAddr>() else {
                return bad("is not a CIDR block: the part before / must be an IP address");
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match bits.parse::<u8>() {
                Ok(n) if n <= max => return Ok(Self(s.to_owned())),
                _ => {
                    return bad(&format!(
                        "is not a CIDR block: the prefix length must be 0 to {max}"
                    ));
                }
            }
        }
        if s.parse::<IpAddr>().is_ok() {
            return Ok(Self(s.to_owned()));
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return bad("is not a host name, an IP address or a CIDR block");
        }
        Ok(Self(name.to_ascii_lowercase()))
    }
}

impl TryFrom<String> for HostRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// One layer of settings, every one optional. The file is read straight into this shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    #[serde(default, deserialize_with = "deserialize_listen")]
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "deserialize_public_url")]
    public_url: Option<Url>,
    data_dir: Option<PathBuf>,
    database_url: Option<DatabaseUrl>,
    #[serde(default)]
    log: LogLayer,
    #[serde(default)]
    security: SecurityLayer,
    #[serde(default)]
    http: HttpLayer,
    #[serde(default)]
    connectors: ConnectorsLayer,
    #[serde(default)]
    chat: ChatLayer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLayer {
    format: Option<LogFormat>,
    level: Option<LogLevel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityLayer {
    /// Only ever set from the environment.
    #[serde(skip)]
    master_key: Option<MasterKeyText>,
    master_key_file: Option<PathBuf>,
    allow_http_loopback: Option<bool>,
    allow_http_hosts: Option<Vec<HostRule>>,
    cookie_secure: Option<bool>,
    session_hours: Option<u64>,
    max_token_days: Option<u64>,
    login_failures: Option<u64>,
    login_window_minutes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpLayer {
    max_body_bytes: Option<u64>,
    request_timeout_secs: Option<u64>,
    trust_forwarded_for: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorsLayer {
    call_timeout_secs: Option<u64>,
    max_result_bytes: Option<u64>,
    session_idle_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatLayer {
    step_limit: Option<u64>,
    lease_secs: Option<u64>,
    max_output_chars: Option<u64>,
    max_functions: Option<u64>,
    max_function_tokens: Option<u64>,
    search_matches: Option<u64>,
    #[serde(default, deserialize_with = "deserialize_model_kind")]
    model_kind: Option<ProviderKind>,
    #[serde(default, deserialize_with = "deserialize_model_base_url")]
    model_base_url: Option<Url>,
    #[serde(default, deserialize_with = "deserialize_model_name")]
    model_name: Option<String>,
    /// Only ever set from the environment; the file is told where a key belongs instead.
    #[serde(default, deserialize_with = "refuse_key_in_file")]
    model_api_key: Option<ApiKeyText>,
    model_api_key_file: Option<PathBuf>,
}

/// Settings given as command-line flags.
#[derive(Debug, Default)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<DatabaseUrl>,
    /// `--master-key-file`.
    pub master_key_file: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--log-level`.
    pub log_level: Option<LogLevel>,
}

impl Layer {
    /// Parses a configuration file's text. Errors name the key and the line.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|span| {
                1 + text.as_bytes()[..span.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
            });
            // Syntax errors come over several lines; an error here is one line.
            let message = inner
                .message()
                .trim()
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; ");
            let place = match line {
                Some(line) => format!("line {line}: "),
                None => String::new(),
            };
            // serde names an unknown key only by its last part, and the path then ends with
            // it; say which key in full, and which keys its table allows.
            if let Some(rest) = message.strip_prefix("unknown field `") {
                let allowed = rest.split_once(", ").map_or("", |(_, a)| a);
                return format!("{place}unknown key {path}; {allowed}");
            }
            // The path is "." when the error is about the document itself (a syntax error);
            // the message then says what.
            if path.is_empty() || path == "." {
                format!("{place}{message}")
            } else {
                format!("{place}{path}: {message}")
            }
        })
    }

    /// Reads the `SWITCHBOARD_` variables through `get`, which the caller points at the process
    /// environment (or, in tests, at a map).
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        fn parse<T: FromStr>(var: &str, raw: &str) -> Result<T>
        where
            T::Err: fmt::Display,
        {
            raw.trim()
                .parse::<T>()
                .map_err(|e| anyhow!("{ENV_PREFIX}{var}: {e}"))
        }
        let mut layer = Layer::default();
        for &(var, _) in ENV_KEYS {
            let Some(raw) = get(&format!("{ENV_PREFIX}{var}")) else {
                continue;
            };
            let s = &mut layer.security;
            match var {
                "LISTEN" => {
                    layer.listen =
                        Some(parse_listen(&raw).map_err(|e| anyhow!("{ENV_PREFIX}{var}: {e}"))?)
                }
                "PUBLIC_URL" => {
                    layer.public_url = Some(
                        parse_public_url(&raw).map_err(|e| anyhow!("{ENV_PREFIX}{var}: {e}"))?,
                    )
                }
                "DATA_DIR" => layer.data_dir = Some(PathBuf::from(raw)),
                "DATABASE_URL" => layer.database_url = Some(parse(var, &raw)?),
                "LOG_FORMAT" => layer.log.format = Some(parse(var, &raw)?),
                "LOG_LEVEL" => layer.log.level = Some(parse(var, &raw)?),
                "MASTER_KEY" => s.master_key = Some(MasterKeyText::new(raw)),
                "MASTER_KEY_FILE" => s.master_key_file = Some(PathBuf::from(raw)),
                "ALLOW_HTTP_LOOPBACK" => s.allow_http_loopback = Some(parse_bool(var, &raw)?),
                "ALLOW_HTTP_HOSTS" => {
                    let hosts = raw
                        .split(',')
                        .filter(|h| !h.trim().is_empty())
                        .map(|h| parse::<HostRule>(var, h))
                        .collect::<Result<_>>()?;
                    s.allow_http_hosts = Some(hosts);
                }
                "COOKIE_SECURE" => s.cookie_secure = Some(parse_bool(var, &raw)?),
                "SESSION_HOURS" => s.session_hours = Some(parse(var, &raw)?),
                "MAX_TOKEN_DAYS" => s.max_token_days = Some(parse(var, &raw)?),
                "LOGIN_FAILURES" => s.login_failures = Some(parse(var, &raw)?),
                "LOGIN_WINDOW_MINUTES" => s.login_window_minutes = Some(parse(var, &raw)?),
                "MAX_BODY_BYTES" => layer.http.max_body_bytes = Some(parse(var, &raw)?),
                "REQUEST_TIMEOUT_SECS" => layer.http.request_timeout_secs = Some(parse(var, &raw)?),
                "TRUST_FORWARDED_FOR" => {
                    layer.http.trust_forwarded_for = Some(parse_bool(var, &raw)?)
                }
                "CALL_TIMEOUT_SECS" => layer.connectors.call_timeout_secs = Some(parse(var, &raw)?),
                "MAX_RESULT_BYTES" => layer.connectors.max_result_bytes = Some(parse(var, &raw)?),
                "SESSION_IDLE_SECS" => layer.connectors.session_idle_secs = Some(parse(var, &raw)?),
                "CHAT_STEP_LIMIT" => layer.chat.step_limit = Some(parse(var, &raw)?),
                "CHAT_LEASE_SECS" => layer.chat.lease_secs = Some(parse(var, &raw)?),
                "CHAT_MAX_OUTPUT_CHARS" => layer.chat.max_output_chars = Some(parse(var, &raw)?),
                "CHAT_MAX_FUNCTIONS" => layer.chat.max_functions = Some(parse(var, &raw)?),
                "CHAT_MAX_FUNCTION_TOKENS" => {
                    layer.chat.max_function_tokens = Some(parse(var, &raw)?)
                }
                "CHAT_SEARCH_MATCHES" => layer.chat.search_matches = Some(parse(var, &raw)?),
                "CHAT_MODEL_KIND" => {
                    layer.chat.model_kind = Some(
                        parse_model_kind(&raw).map_err(|e| anyhow!("{ENV_PREFIX}{var}: {e}"))?,
                    )
                }
                "CHAT_MODEL_BASE_URL" => {
                    layer.chat.model_base_url = Some(
                        parse_model_base_url(&raw)
                            .map_err(|e| anyhow!("{ENV_PREFIX}{var}: {e}"))?,
                    )
                }
                "CHAT_MODEL_NAME" => {
                    layer.chat.model_name = Some(
                        parse_model_name(&raw).map_err(|e| anyhow!("{ENV_PREFIX}{var}: {e}"))?,
                    )
                }
                "CHAT_MODEL_API_KEY" => {
                    let key = raw.trim();
                    if key.is_empty() {
                        bail!("{ENV_PREFIX}{var}: is set but empty");
                    }
                    layer.chat.model_api_key = Some(ApiKeyText::new(key.to_owned()));
                }
                "CHAT_MODEL_API_KEY_FILE" => {
                    layer.chat.model_api_key_file = Some(PathBuf::from(raw))
                }
                _ => unreachable!("every entry of ENV_KEYS is handled"),
            }
        }
        Ok(layer)
    }

    /// The layer made of command-line flags.
    pub fn from_flags(flags: Flags) -> Self {
        let mut layer = Layer {
            listen: flags.listen,
            data_dir: flags.data_dir,
            database_url: flags.database_url,
            ..Layer::default()
        };
        layer.security.master_key_file = flags.master_key_file;
        layer.log.format = flags.log_format;
        layer.log.level = flags.log_level;
        layer
    }

    /// The numeric values this layer sets, by file key.
    fn numbers(&self) -> [(&'static str, Option<u64>); 15] {
        let s = &self.security;
        let c = &self.connectors;
        let chat = &self.chat;
        [
            ("security.session_hours", s.session_hours),
            ("security.max_token_days", s.max_token_days),
            ("security.login_failures", s.login_failures),
            ("security.login_window_minutes", s.login_window_minutes),
            ("http.max_body_bytes", self.http.max_body_bytes),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
            ("connectors.call_timeout_secs", c.call_timeout_secs),
            ("connectors.max_result_bytes", c.max_result_bytes),
            ("connectors.session_idle_secs", c.session_idle_secs),
            ("chat.step_limit", chat.step_limit),
            ("chat.lease_secs", chat.lease_secs),
            ("chat.max_output_chars", chat.max_output_chars),
            ("chat.max_functions", chat.max_functions),
            ("chat.max_function_tokens", chat.max_function_tokens),
            ("chat.search_matches", chat.search_matches),
        ]
    }

    /// Checks the bounds of the values this layer sets; `name` says how the layer spells a key.
    fn check(&self, name: &dyn Fn(&str) -> String) -> Result<()> {
        for (key, value) in self.numbers() {
            let Some(value) = value else { continue };
            let &(_, min, max) = BOUNDS
                .iter()
                .find(|(k, _, _)| *k == key)
                .expect("every number has bounds");
            if !(min..=max).contains(&value) {
                bail!(
                    "{}: must be between {min} and {max}, found {value}",
                    name(key)
                );
            }
        }
        Ok(())
    }

    /// This layer with every value `top` sets put over it.
    fn overlay(self, top: Layer) -> Layer {
        let (s, t) = (self.security, top.security);
        let (c, tc) = (self.chat, top.chat);
        Layer {
            listen: top.listen.or(self.listen),
            public_url: top.public_url.or(self.public_url),
            data_dir: top.data_dir.or(self.data_dir),
            database_url: top.database_url.or(self.database_url),
            log: LogLayer {
                format: top.log.format.or(self.log.format),
                level: top.log.level.or(self.log.level),
            },
            security: SecurityLayer {
                master_key: t.master_key.or(s.master_key),
                master_key_file: t.master_key_file.or(s.master_key_file),
                allow_http_loopback: t.allow_http_loopback.or(s.allow_http_loopback),
                allow_http_hosts: t.allow_http_hosts.or(s.allow_http_hosts),
                cookie_secure: t.cookie_secure.or(s.cookie_secure),
                session_hours: t.session_hours.or(s.session_hours),
                max_token_days: t.max_token_days.or(s.max_token_days),
                login_failures: t.login_failures.or(s.login_failures),
                login_window_minutes: t.login_window_minutes.or(s.login_window_minutes),
            },
            http: HttpLayer {
                max_body_bytes: top.http.max_body_bytes.or(self.http.max_body_bytes),
                request_timeout_secs: top
                    .http
                    .request_timeout_secs
                    .or(self.http.request_timeout_secs),
                trust_forwarded_for: top
                    .http
                    .trust_forwarded_for
                    .or(self.http.trust_forwarded_for),
            },
            connectors: ConnectorsLayer {
                call_timeout_secs: top
                    .connectors
                    .call_timeout_secs
                    .or(self.connectors.call_timeout_secs),
                max_result_bytes: top
                    .connectors
                    .max_result_bytes
                    .or(self.connectors.max_result_bytes),
                session_idle_secs: top
                    .connectors
                    .session_idle_secs
                    .or(self.connectors.session_idle_secs),
            },
            chat: ChatLayer {
                step_limit: tc.step_limit.or(c.step_limit),
                lease_secs: tc.lease_secs.or(c.lease_secs),
                max_output_chars: tc.max_output_chars.or(c.max_output_chars),
                max_functions: tc.max_functions.or(c.max_functions),
                max_function_tokens: tc.max_function_tokens.or(c.max_function_tokens),
                search_matches: tc.search_matches.or(c.search_matches),
                model_kind: tc.model_kind.or(c.model_kind),
                model_base_url: tc.model_base_url.or(c.model_base_url),
                model_name: tc.model_name.or(c.model_name),
                model_api_key: tc.model_api_key.or(c.model_api_key),
                model_api_key_file: tc.model_api_key_file.or(c.model_api_key_file),
            },
        }
    }
}

/// Parses the URL people and authorization servers reach Switchboard at: `http` or `https`,
/// with no user name, query or fragment. A trailing slash is dropped so paths join cleanly.
pub fn parse_public_url(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https, found {}", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Reads a string from the configuration file and parses it with `parse`, so a bad value
/// gets the same words in the file as in the environment and on the command line.
fn parsed_with<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = String::deserialize(d)?;
    parse(&raw).map(Some).map_err(serde::de::Error::custom)
}

fn deserialize_public_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    parsed_with(d, parse_public_url)
}

/// Parses a listen address, with a hint when the port or the host is missing.
pub fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    raw.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "expected an IP address and port such as 127.0.0.1:8080 or [::]:8080, found {raw:?}"
        )
    })
}

fn deserialize_listen<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    parsed_with(d, parse_listen)
}

fn parse_bool(var: &str, raw: &str) -> Result<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => bail!("{ENV_PREFIX}{var}: expected true or false, found {raw:?}"),
    }
}

/// Parses a provider kind: `mistral`, or `openai` for every OpenAI-compatible server.
pub fn parse_model_kind(raw: &str) -> Result<ProviderKind, String> {
    let s = raw.trim();
    s.to_ascii_lowercase()
        .parse::<ProviderKind>()
        .map_err(|_| format!("must be mistral or openai, found {s:?}"))
}

/// Parses a provider's API base URL, such as `https://api.mistral.ai/v1`: `http` or `https`,
/// without a user, password, query or fragment (a key belongs in `model_api_key`, never in a
/// URL that `config check` prints).
pub fn parse_model_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https, found {}", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    Ok(url)
}

fn parse_model_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(name.to_owned())
}

fn deserialize_model_kind<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ProviderKind>, D::Error> {
    parsed_with(d, parse_model_kind)
}

fn deserialize_model_base_url<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Url>, D::Error> {
    parsed_with(d, parse_model_base_url)
}

fn deserialize_model_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    parsed_with(d, parse_model_name)
}

/// Refuses an API key written in the configuration file, saying where it belongs. The value
/// is never read into a string that an error could show.
fn refuse_key_in_file<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ApiKeyText>, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Err(serde::de::Error::custom(format!(
        "a key does not belong in the configuration file; set {ENV_PREFIX}CHAT_MODEL_API_KEY \
         or name a file holding it in chat.model_api_key_file"
    )))
}

/// The environment variable that sets a file key, for error messages.
fn env_name(key: &str) -> String {
    ENV_KEYS
        .iter()
        .find(|(_, k)| *k == key)
        .map_or_else(|| key.to_owned(), |(var, _)| format!("{ENV_PREFIX}{var}"))
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// The key ring text in `SWITCHBOARD_MASTER_KEY`.
    Env(MasterKeyText),
    /// A file the operator manages (`security.master_key_file`).
    File(PathBuf),
    /// `<data_dir>/master.key`, generated on first start and rotated in place.
    DataDir(PathBuf),
}

impl fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(_) => write!(f, "the {ENV_PREFIX}MASTER_KEY environment variable"),
            Self::File(p) => write!(f, "the file {} (security.master_key_file)", p.display()),
            Self::DataDir(p) => write!(f, "the file {} in the data directory", p.display()),
        }
    }
}

/// Where the default model's API key comes from.
#[derive(Debug, Clone)]
pub enum ModelKeySource {
    /// `SWITCHBOARD_CHAT_MODEL_API_KEY`.
    Env,
    /// The file `chat.model_api_key_file` names.
    File(PathBuf),
}

/// The operator's default language model, for organizations that did not choose one.
#[derive(Debug, Clone)]
pub struct DefaultModel {
    /// The wire format.
    pub kind: ProviderKind,
    /// The API's base URL.
    pub base_url: Url,
    /// The model's name.
    pub name: String,
    /// The API key and where it came from, if the provider needs one.
    pub api_key: Option<(ApiKeyText, ModelKeySource)>,
}

/// The complete, checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    /// Where the HTTP server binds.
    pub listen: SocketAddr,
    /// The URL Switchboard is reached at, when set; otherwise `http://` and the address it
    /// listens on (see [`Config::public_url_for`]).
    pub public_url: Option<Url>,
    /// Where the SQLite database and the generated key live.
    pub data_dir: PathBuf,
    /// The database.
    pub database_url: DatabaseUrl,
    /// Log format.
    pub log_format: LogFormat,
    /// Log level or filter.
    pub log_level: LogLevel,
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
    /// Allow plain http connector URLs to loopback addresses.
    pub allow_http_loopback: bool,
    /// Further hosts plain http connector URLs may reach.
    pub allow_http_hosts: Vec<String>,
    /// Mark cookies `Secure`.
    pub cookie_secure: bool,
    /// Browser session lifetime.
    pub session_hours: u64,
    /// Longest API token lifetime.
    pub max_token_days: u64,
    /// Failed sign-ins allowed per window.
    pub login_failures: u64,
    /// The sign-in window.
    pub login_window_minutes: u64,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Longest request.
    pub request_timeout_secs: u64,
    /// Trust `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Longest wait for a function's result.
    pub call_timeout_secs: u64,
    /// Results larger than this are cut.
    pub max_result_bytes: u64,
    /// Upstream sessions unused this long are closed.
    pub session_idle_secs: u64,
    /// Most model requests in one turn that may call functions.
    pub chat_step_limit: u64,
    /// How long a server holds a turn it works on.
    pub chat_lease_secs: u64,
    /// Longest function output the model is given, in characters.
    pub chat_max_output_chars: u64,
    /// Most functions the model is given in full before it searches them.
    pub chat_max_functions: u64,
    /// Most estimated tokens of functions given in full before the model searches them.
    pub chat_max_function_tokens: u64,
    /// How many best matches a search gives.
    pub chat_search_matches: u64,
    /// The operator's default model, when one is set.
    pub chat_model: Option<DefaultModel>,
}

impl Config {
    /// Loads the configuration: defaults, the file (`file`, if given), the process environment,
    /// then `flags`.
    pub fn load(file: Option<&Path>, flags: Flags) -> Result<Self> {
        Self::assemble(file, &|var| std::env::var(var).ok(), flags)
    }

    /// [`Config::load`] with the environment read through `env`.
    pub fn assemble(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: Flags,
    ) -> Result<Self> {
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                let layer = Layer::from_toml(&text)
                    .map_err(|e| anyhow!("config file {}: {e}", path.display()))?;
                layer
                    .check(&|key| key.to_owned())
                    .with_context(|| format!("config file {}", path.display()))?;
                layer
            }
            None => Layer::default(),
        };
        let from_env = Layer::from_env(env)?;
        from_env.check(&env_name)?;
        let from_flags = Layer::from_flags(flags);
        let merged = from_file.overlay(from_env).overlay(from_flags);
        Self::resolve(merged, file.map(Path::to_path_buf))
    }

    /// Fills in defaults and applies the rules that span keys.
    fn resolve(l: Layer, file: Option<PathBuf>) -> Result<Self> {
        let data_dir = l.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = l
            .database_url
            .unwrap_or_else(|| DatabaseUrl::sqlite_in(&data_dir));
        let s = l.security;
        let master_key = match (s.master_key, s.master_key_file) {
            (Some(_), Some(_)) => bail!(
                "{ENV_PREFIX}MASTER_KEY and security.master_key_file are both set; set only one"
            ),
            (Some(text), None) => MasterKeySource::Env(text),
            (None, Some(path)) => MasterKeySource::File(path),
            (None, None) => MasterKeySource::DataDir(data_dir.join(KEY_FILE_NAME)),
        };
        let service = ServiceConfig::default();
        let server = ServerConfig::default();
        let c = l.chat;
        let key = model_key(c.model_api_key, c.model_api_key_file)?;
        let chat_model = default_model(c.model_kind, c.model_base_url, c.model_name, key)?;
        let chat = &service.chat;
        Ok(Self {
            file,
            listen: l
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_url: l.public_url,
            data_dir,
            database_url,
            log_format: l.log.format.unwrap_or(LogFormat::Text),
            log_level: l.log.level.unwrap_or_else(|| LogLevel("info".into())),
            master_key,
            allow_http_loopback: s.allow_http_loopback.unwrap_or(false),
            allow_http_hosts: s
                .allow_http_hosts
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.0)
                .collect(),
            cookie_secure: s.cookie_secure.unwrap_or(server.cookie_secure),
            session_hours: s
                .session_hours
                .unwrap_or(service.session_ttl.as_secs() / 3600),
            max_token_days: s
                .max_token_days
                .unwrap_or(u64::from(service.max_token_days)),
            login_failures: s.login_failures.unwrap_or(service.login_failures as u64),
            login_window_minutes: s
                .login_window_minutes
                .unwrap_or(service.login_window.as_secs() / 60),
            max_body_bytes: l
                .http
                .max_body_bytes
                .unwrap_or(server.max_body_bytes as u64),
            request_timeout_secs: l
                .http
                .request_timeout_secs
                .unwrap_or(server.request_timeout.as_secs()),
            trust_forwarded_for: l
                .http
                .trust_forwarded_for
                .unwrap_or(server.trust_forwarded_for),
            call_timeout_secs: l
                .connectors
                .call_timeout_secs
                .unwrap_or(service.call_timeout.as_secs()),
            max_result_bytes: l
                .connectors
                .max_result_bytes
                .unwrap_or(service.max_result_bytes as u64),
            session_idle_secs: l
                .connectors
                .session_idle_secs
                .unwrap_or(service.session_idle.as_secs()),
            chat_step_limit: c.step_limit.unwrap_or(u64::from(chat.step_limit)),
            chat_lease_secs: c.lease_secs.unwrap_or(chat.lease.as_secs()),
            chat_max_output_chars: c.max_output_chars.unwrap_or(chat.max_output_chars as u64),
            chat_max_functions: c.max_functions.unwrap_or(chat.budget.max_functions as u64),
            chat_max_function_tokens: c
                .max_function_tokens
                .unwrap_or(chat.budget.max_tokens as u64),
            chat_search_matches: c.search_matches.unwrap_or(chat.budget.matches as u64),
            chat_model,
        })
    }

    /// The public URL: the configured one, or the address the server is listening on.
    pub fn public_url_for(&self, bound: SocketAddr) -> Url {
        self.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{bound}")).expect("an address makes a valid URL")
        })
    }

    /// The settings the application services need; `bound` is the address the server
    /// actually listens on (the configured port may be 0).
    pub fn service_config(&self, bound: SocketAddr) -> ServiceConfig {
        ServiceConfig {
            public_url: self.public_url_for(bound),
            http: HttpAllowance {
                loopback: self.allow_http_loopback,
                hosts: self.allow_http_hosts.clone(),
            },
            session_ttl: Duration::from_secs(self.session_hours * 3600),
            // The bounds checked above keep these well inside u32 and usize.
            max_token_days: self.max_token_days as u32,
            login_failures: self.login_failures as usize,
            login_window: Duration::from_secs(self.login_window_minutes * 60),
            call_timeout: Duration::from_secs(self.call_timeout_secs),
            max_result_bytes: self.max_result_bytes as usize,
            session_idle: Duration::from_secs(self.session_idle_secs),
            chat: self.chat_config(),
        }
    }

    /// The assistant's settings. The bounds checked above keep the numbers inside u32 and
    /// usize.
    fn chat_config(&self) -> ChatConfig {
        let default = ChatConfig::default();
        let mut budget = default.budget;
        budget.max_functions = self.chat_max_functions as usize;
        budget.max_tokens = self.chat_max_function_tokens as usize;
        budget.matches = self.chat_search_matches as usize;
        ChatConfig {
            step_limit: self.chat_step_limit as u32,
            max_output_chars: self.chat_max_output_chars as usize,
            budget,
            lease: Duration::from_secs(self.chat_lease_secs),
            default_model: self.chat_model.as_ref().map(|m| ModelSettings {
                kind: m.kind,
                base_url: m.base_url.to_string(),
                model: m.name.clone(),
                api_key: m.api_key.as_ref().map(|(key, _)| key.expose().to_owned()),
            }),
        }
    }

    /// Settings that are each valid but work against one another, as sentences for
    /// `config check` and the server's log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        // The request timeout ends any answer that has not started by then. A streamed call
        // (Accept: text/event-stream, as the CLI asks) starts at once and is not affected, but a
        // plain JSON call is answered 503 before its own, longer, limit is reached.
        if self.call_timeout_secs > self.request_timeout_secs {
            warnings.push(format!(
                "connectors.call_timeout_secs ({}) is longer than http.request_timeout_secs ({}): \
                 calls that do not stream their answer are cut after {} s",
                self.call_timeout_secs, self.request_timeout_secs, self.request_timeout_secs
            ));
        }
        warnings
    }

    /// The settings the HTTP server needs.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            cookie_secure: self.cookie_secure,
            max_body_bytes: self.max_body_bytes as usize,
            trust_forwarded_for: self.trust_forwarded_for,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
        }
    }

    /// The effective settings as TOML, secrets left out, for `config check`.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let hosts: Vec<String> = self.allow_http_hosts.iter().map(|h| q(h)).collect();
        let key = match &self.master_key {
            MasterKeySource::File(p) => {
                format!("master_key_file = {}\n", q(&p.display().to_string()))
            }
            MasterKeySource::Env(_) => format!("# master key: from {ENV_PREFIX}MASTER_KEY\n"),
            MasterKeySource::DataDir(p) => format!("# master key: {}\n", p.display()),
        };
        format!(
            "listen = {listen}\n{public}data_dir = {data_dir}\ndatabase_url = {db}\n\n\
             [log]\nformat = {format}\nlevel = {level}\n\n\
             [security]\n{key}allow_http_loopback = {loopback}\nallow_http_hosts = [{hosts}]\n\
             cookie_secure = {cookie}\nsession_hours = {session}\nmax_token_days = {token_days}\n\
             login_failures = {failures}\nlogin_window_minutes = {window}\n\n\
             [http]\nmax_body_bytes = {body}\nrequest_timeout_secs = {timeout}\n\
             trust_forwarded_for = {forwarded}\n\n\
             [connectors]\ncall_timeout_secs = {call}\nmax_result_bytes = {result}\n\
             session_idle_secs = {idle}\n\n\
             [chat]\nstep_limit = {steps}\nlease_secs = {lease}\nmax_output_chars = {output}\n\
             max_functions = {functions}\nmax_function_tokens = {tokens}\n\
             search_matches = {matches}\n{model}",
            listen = q(&self.listen.to_string()),
            public = match &self.public_url {
                Some(url) => format!("public_url = {}\n", q(url.as_str())),
                None => "# public_url: http:// and the listening address\n".into(),
            },
            data_dir = q(&self.data_dir.display().to_string()),
            db = q(&self.database_url.redacted()),
            format = q(&self.log_format.to_string()),
            level = q(self.log_level.as_str()),
            loopback = self.allow_http_loopback,
            hosts = hosts.join(", "),
            cookie = self.cookie_secure,
            session = self.session_hours,
            token_days = self.max_token_days,
            failures = self.login_failures,
            window = self.login_window_minutes,
            body = self.max_body_bytes,
            timeout = self.request_timeout_secs,
            forwarded = self.trust_forwarded_for,
            call = self.call_timeout_secs,
            result = self.max_result_bytes,
            idle = self.session_idle_secs,
            steps = self.chat_step_limit,
            lease = self.chat_lease_secs,
            output = self.chat_max_output_chars,
            functions = self.chat_max_functions,
            tokens = self.chat_max_function_tokens,
            matches = self.chat_search_matches,
            model = match &self.chat_model {
                None => "# default model: none; each organization's admins choose one\n".into(),
                Some(m) => format!(
                    "model_kind = {}\nmodel_base_url = {}\nmodel_name = {}\n{}",
                    q(m.kind.as_str()),
                    q(m.base_url.as_str()),
                    q(&m.name),
                    match &m.api_key {
                        None => "# model API key: none\n".to_owned(),
                        Some((_, ModelKeySource::Env)) => {
                            format!("# model API key: from {ENV_PREFIX}CHAT_MODEL_API_KEY\n")
                        }
                        Some((_, ModelKeySource::File(p))) => {
                            format!("model_api_key_file = {}\n", q(&p.display().to_string()))
                        }
                    }
                ),
            },
        )
    }
}

/// The default model's key: from the environment, or read from the file named. Read here, not
/// at start, so `config check` finds a missing or empty file.
fn model_key(
    key: Option<ApiKeyText>,
    file: Option<PathBuf>,
) -> Result<Option<(ApiKeyText, ModelKeySource)>> {
    match (key, file) {
        (Some(_), Some(_)) => bail!(
            "{ENV_PREFIX}CHAT_MODEL_API_KEY and chat.model_api_key_file are both set; set only one"
        ),
        (Some(key), None) => Ok(Some((key, ModelKeySource::Env))),
        (None, Some(path)) => {
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(&path).with_context(|| {
                    format!("chat.model_api_key_file: cannot read {}", path.display())
                })?);
            let key = text.trim();
            if key.is_empty() {
                bail!("chat.model_api_key_file: {} is empty", path.display());
            }
            Ok(Some((
                ApiKeyText::new(key.to_owned()),
                ModelKeySource::File(path),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// The operator's default model: all of kind, base URL and name, or none of them (and then no
/// key either). A partial one is refused, naming what is missing, rather than silently left
/// unused.
fn default_model(
    kind: Option<ProviderKind>,
    base_url: Option<Url>,
    name: Option<String>,
    api_key: Option<(ApiKeyText, ModelKeySource)>,
) -> Result<Option<DefaultModel>> {
    match (kind, base_url, name) {
        (Some(kind), Some(base_url), Some(name)) => Ok(Some(DefaultModel {
            kind,
            base_url,
            name,
            api_key,
        })),
        (None, None, None) => {
            if api_key.is_some() {
                bail!(
                    "chat: a model API key is set but no default model; set chat.model_kind, \
                     chat.model_base_url and chat.model_name too, or remove the key"
                );
            }
            Ok(None)
        }
        (kind, base_url, name) => {
            let missing: Vec<String> = [
                ("chat.model_kind", kind.is_none()),
                ("chat.model_base_url", base_url.is_none()),
                ("chat.model_name", name.is_none()),
            ]
            .into_iter()
            .filter(|(_, missing)| *missing)
            .map(|(key, _)| format!("{key} ({})", env_name(key)))
            .collect();
            bail!(
                "chat: the default model needs model_kind, model_base_url and model_name \
                 together; missing {}",
                missing.join(" and ")
            )
        }
    }
}

/// `SWITCHBOARD_` variables in `vars` that Switchboard does not know, likely typos.
pub fn unknown_env_vars(vars: impl Iterator<Item = String>) -> Vec<String> {
    vars.filter(|v| {
        let Some(rest) = v.strip_prefix(ENV_PREFIX) else {
            return false;
        };
        !ENV_KEYS.iter().any(|(k, _)| *k == rest)
            && !OTHER_ENV.contains(&rest)
            && !rest.starts_with("TEST_")
    })
    .collect()
}

/// The example file `config default` prints: every key at its default, with what it does.
/// A test checks that it parses and matches the built-in defaults, so the two cannot drift.
pub const DEFAULT_TOML: &str = r#"# Switchboard configuration.
#
# Every setting is optional; the values below are the defaults. Settings are taken from, in
# rising precedence: built-in defaults, this file (--config PATH or SWITCHBOARD_CONFIG),
# SWITCHBOARD_* environment variables (named in brackets below), then command-line flags.
# Relative paths are relative to the working directory. Unknown keys are refused.

# Address and port the HTTP server listens on. [SWITCHBOARD_LISTEN]
listen = "127.0.0.1:8080"

# The URL people and OAuth authorization servers reach Switchboard at, behind any proxy. OAuth
# redirects come back to <public_url>/oauth/callback, and the client ID metadata document is
# served at <public_url>/oauth/client-metadata.json. Unset, it is http:// and the listening
# address, which suits a single machine. [SWITCHBOARD_PUBLIC_URL]
# public_url = "https://switchboard.example.com"

# Holds the SQLite database and the generated master key. Created with mode 0700.
# [SWITCHBOARD_DATA_DIR]
data_dir = "./data"

# The database. Defaults to SQLite in the data directory. For PostgreSQL use
# "postgres://user:password@host:5432/switchboard"; a URL holding a password is better given
# as SWITCHBOARD_DATABASE_URL than written here. [SWITCHBOARD_DATABASE_URL]
# database_url = "sqlite://./data/switchboard.db"

[log]
# "text" for people, "json" for log collectors. [SWITCHBOARD_LOG_FORMAT]
format = "text"
# off, error, warn, info, debug or trace, or a filter such as "info,sqlx=warn".
# RUST_LOG, when set, takes precedence. [SWITCHBOARD_LOG_LEVEL]
level = "info"

[security]
# The master key seals every stored credential. By default it is generated on first start
# into <data_dir>/master.key (mode 0600). To supply your own, make one with
# `switchboard admin generate-key` and either point to it here [SWITCHBOARD_MASTER_KEY_FILE]
# or pass its text in SWITCHBOARD_MASTER_KEY. Back it up: without it, stored credentials are
# lost. See `switchboard admin rotate-key --help` for rotation.
# master_key_file = "/etc/switchboard/master.key"

# Allow connector URLs with plain http to loopback addresses (localhost, 127.0.0.0/8, ::1),
# for development. [SWITCHBOARD_ALLOW_HTTP_LOOPBACK]
allow_http_loopback = false
# Further hosts plain http may reach: host names, IP addresses or CIDR blocks such as
# "10.0.0.0/8". [SWITCHBOARD_ALLOW_HTTP_HOSTS, comma separated]
allow_http_hosts = []
# Mark session cookies Secure. Browsers treat http://localhost as secure, so this only needs
# to be off when serving plain http to another host. [SWITCHBOARD_COOKIE_SECURE]
cookie_secure = true
# How long a browser session lasts. [SWITCHBOARD_SESSION_HOURS]
session_hours = 12
# The longest lifetime a personal API token may be given. [SWITCHBOARD_MAX_TOKEN_DAYS]
max_token_days = 365
# Failed sign-ins allowed per account within the window (per client address: three times
# as many). [SWITCHBOARD_LOGIN_FAILURES, SWITCHBOARD_LOGIN_WINDOW_MINUTES]
login_failures = 10
login_window_minutes = 15

[http]
# The largest request body accepted. [SWITCHBOARD_MAX_BODY_BYTES]
max_body_bytes = 1048576
# Requests taking longer are answered with 503. [SWITCHBOARD_REQUEST_TIMEOUT_SECS]
request_timeout_secs = 60
# Take the client address from X-Forwarded-For. Only behind a proxy you run, which sets it;
# otherwise clients could pick their address and dodge the sign-in limits.
# [SWITCHBOARD_TRUST_FORWARDED_FOR]
trust_forwarded_for = false

[connectors]
# The longest wait for a function's result; the connector's server is then told the call is
# cancelled. A call that does not stream its answer is also bound by http.request_timeout_secs.
# [SWITCHBOARD_CALL_TIMEOUT_SECS]
call_timeout_secs = 60
# Results larger than this (as JSON) are cut, and the cut is reported with the result.
# [SWITCHBOARD_MAX_RESULT_BYTES]
max_result_bytes = 4194304
# A session with a connector's server that has not been used for this long is closed; the next
# call opens a new one. [SWITCHBOARD_SESSION_IDLE_SECS]
session_idle_secs = 300

[chat]
# The most model requests in one turn of the assistant that may call functions; the model is
# then asked to answer with what it has. [SWITCHBOARD_CHAT_STEP_LIMIT]
step_limit = 10
# How long a server holds a turn it works on. If that server stops, another (or the same one,
# restarted) picks the turn up after this long. [SWITCHBOARD_CHAT_LEASE_SECS]
lease_secs = 30
# A function's output longer than this many characters is cut before the model reads it.
# [SWITCHBOARD_CHAT_MAX_OUTPUT_CHARS]
max_output_chars = 16000
# When a conversation's functions number more than max_functions, or their names,
# descriptions and schemas come to more than max_function_tokens (estimated), the model gets a
# search over them instead, and the search_matches best matches in full.
# [SWITCHBOARD_CHAT_MAX_FUNCTIONS, SWITCHBOARD_CHAT_MAX_FUNCTION_TOKENS,
# SWITCHBOARD_CHAT_SEARCH_MATCHES]
max_functions = 64
max_function_tokens = 12000
search_matches = 8

# The language model of organizations whose admins have not chosen one. Unset, each
# organization must choose its own. model_kind is "mistral", or "openai" for OpenAI and every
# server speaking its API (Ollama, vLLM, llama.cpp, LM Studio); model_kind, model_base_url and
# model_name are needed together. [SWITCHBOARD_CHAT_MODEL_KIND, SWITCHBOARD_CHAT_MODEL_BASE_URL,
# SWITCHBOARD_CHAT_MODEL_NAME]
# model_kind = "mistral"
# model_base_url = "https://api.mistral.ai/v1"
# model_name = "mistral-medium-latest"
# The model's API key is a secret and is never written here: give it in
# SWITCHBOARD_CHAT_MODEL_API_KEY, or name a file holding only the key.
# [SWITCHBOARD_CHAT_MODEL_API_KEY_FILE]
# model_api_key_file = "/etc/switchboard/model.key"
"#;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn from_text(text: &str, env_pairs: &[(&str, &str)], flags: Flags) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, text).unwrap();
        Config::assemble(Some(&path), &env(env_pairs), flags)
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::assemble(None, &env(&[]), Flags::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database_url.expose(), "sqlite://./data/switchboard.db");
        assert!(
            matches!(&c.master_key, MasterKeySource::DataDir(p) if p == Path::new("./data/master.key"))
        );
        assert!(c.cookie_secure && !c.allow_http_loopback && !c.trust_forwarded_for);
    }

    #[test]
    fn the_public_url_is_checked_and_defaults_to_the_listening_address() {
        let c = from_text("", &[], Flags::default()).unwrap();
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(c.public_url_for(bound).as_str(), "http://127.0.0.1:4321/");
        let c = from_text(
            "",
            &[("SWITCHBOARD_PUBLIC_URL", "https://sb.example.com/base/")],
            Flags::default(),
        )
        .unwrap();
        assert_eq!(
            c.public_url_for(bound).as_str(),
            "https://sb.example.com/base"
        );
        for (raw, problem) in [
            ("ftp://sb.example.com", "must be http or https"),
            ("https://u:p@sb.example.com", "user name or password"),
            ("https://sb.example.com/?a=b", "query or a fragment"),
            ("sb.example.com", "not a URL"),
        ] {
            let err =
                from_text(&format!("public_url = \"{raw}\""), &[], Flags::default()).unwrap_err();
            assert!(format!("{err:#}").contains(problem), "{raw}: {err:#}");
        }
    }

    #[test]
    fn the_printed_default_file_is_the_built_in_defaults() {
        let printed = from_text(DEFAULT_TOML, &[], Flags::default()).unwrap();
        let built_in = Config::assemble(None, &env(&[]), Flags::default()).unwrap();
        assert_eq!(printed.to_toml(), built_in.to_toml());
        let service = printed.service_config(printed.listen);
        let default = ServiceConfig::default();
        assert_eq!(service.session_ttl, default.session_ttl);
        assert_eq!(service.login_window, default.login_window);
        assert_eq!(service.max_token_days, default.max_token_days);
        assert_eq!(service.call_timeout, default.call_timeout);
        assert_eq!(service.max_result_bytes, default.max_result_bytes);
        assert_eq!(service.session_idle, default.session_idle);
        assert_eq!(service.chat.step_limit, default.chat.step_limit);
        assert_eq!(service.chat.lease, default.chat.lease);
        assert_eq!(service.chat.max_output_chars, default.chat.max_output_chars);
        assert_eq!(service.chat.budget, default.chat.budget);
        assert!(service.chat.default_model.is_none());
        assert_eq!(
            printed.server_config().max_body_bytes,
            ServerConfig::default().max_body_bytes
        );
    }

    #[test]
    fn layers_override_in_order() {
        let text =
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/sb\"\n[security]\nsession_hours = 2\n";
        let c = from_text(text, &[], Flags::default()).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.database_url.expose(), "sqlite:///srv/sb/switchboard.db");
        assert_eq!(c.session_hours, 2);

        let c = from_text(
            text,
            &[
                ("SWITCHBOARD_LISTEN", "127.0.0.1:7000"),
                ("SWITCHBOARD_SESSION_HOURS", "3"),
            ],
            Flags::default(),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.session_hours, 3);

        let flags = Flags {
            listen: Some("127.0.0.1:6000".parse().unwrap()),
            ..Flags::default()
        };
        let c = from_text(text, &[("SWITCHBOARD_LISTEN", "127.0.0.1:7000")], flags).unwrap();
        assert_eq!(c.listen.port(), 6000);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = from_text("lisen = \"127.0.0.1:1\"\n", &[], Flags::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen") && e.contains("line 1"), "{e}");
        let e = from_text(
            "[security]\ncookie_secure = true\ncookie_secur = false\n",
            &[],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cookie_secur") && e.contains("security") && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_key_and_source() {
        let e = from_text(
            "[security]\nallow_http_hosts = [\"ok.internal\", \"bad host\"]\n",
            &[],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("security.allow_http_hosts[1]") && e.contains("bad host"),
            "{e}"
        );
        let e = from_text("[http]\nrequest_timeout_secs = 0\n", &[], Flags::default()).unwrap_err();
        assert!(
            format!("{e:#}").contains("http.request_timeout_secs: must be between 1 and 3600"),
            "{e:#}"
        );
        let e = from_text("", &[("SWITCHBOARD_LISTEN", "nope")], Flags::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("SWITCHBOARD_LISTEN:"), "{e}");
        let e = from_text(
            "",
            &[("SWITCHBOARD_COOKIE_SECURE", "maybe")],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("SWITCHBOARD_COOKIE_SECURE:"), "{e}");
        let e = from_text("", &[("SWITCHBOARD_LOGIN_FAILURES", "0")], Flags::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("SWITCHBOARD_LOGIN_FAILURES: must be between"),
            "{e}"
        );
        let e = from_text("[log]\nlevel = \"inof\"\n", &[], Flags::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level") && e.contains("inof"), "{e}");
    }

    #[test]
    fn http_hosts_from_env_are_a_comma_list() {
        let c = from_text(
            "",
            &[(
                "SWITCHBOARD_ALLOW_HTTP_HOSTS",
                "mcp.internal, 10.0.0.0/8,fd00::1",
            )],
            Flags::default(),
        )
        .unwrap();
        assert_eq!(
            c.allow_http_hosts,
            ["mcp.internal", "10.0.0.0/8", "fd00::1"]
        );
        let e = from_text(
            "",
            &[("SWITCHBOARD_ALLOW_HTTP_HOSTS", "10.0.0.0/33")],
            Flags::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("prefix length"), "{e}");
    }

    #[test]
    fn host_rules() {
        for ok in [
            "localhost",
            "mcp.corp.example",
            "10.1.2.3",
            "10.0.0.0/8",
            "::1",
            "fd00::/8",
            "Host-1.Internal.",
        ] {
            assert!(ok.parse::<HostRule>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*.corp",
            "[::1]",
            "-bad.example",
            "a b",
            "10.0.0.0/x",
            "::/129",
            "under_score.x",
        ] {
            assert!(bad.parse::<HostRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn master_key_sources() {
        let c = from_text(
            "",
            &[("SWITCHBOARD_MASTER_KEY", "sbk1:x:y")],
            Flags::default(),
        )
        .unwrap();
        assert!(matches!(c.master_key, MasterKeySource::Env(_)));
        assert!(!format!("{c:?}").contains("sbk1:x:y"));
        let c = from_text(
            "[security]\nmaster_key_file = \"/k\"\n",
            &[],
            Flags::default(),
        )
        .unwrap();
        assert!(matches!(&c.master_key, MasterKeySource::File(p) if p == Path::new("/k")));
        let e = from_text(
            "[security]\nmaster_key_file = \"/k\"\n",
            &[("SWITCHBOARD_MASTER_KEY", "sbk1:x:y")],
            Flags::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("both set"), "{e}");
    }

    #[test]
    fn database_password_is_redacted_in_debug_and_toml() {
        let c = from_text(
            "",
            &[("SWITCHBOARD_DATABASE_URL", "postgres://sb:hunter2@db/sb")],
            Flags::default(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_toml().contains("hunter2"));
    }

    #[test]
    fn connector_settings_reach_the_service() {
        let text = "[connectors]\ncall_timeout_secs = 30\nmax_result_bytes = 65536\n";
        let c = from_text(
            text,
            &[("SWITCHBOARD_SESSION_IDLE_SECS", "90")],
            Flags::default(),
        )
        .unwrap();
        let service = c.service_config(c.listen);
        assert_eq!(service.call_timeout, Duration::from_secs(30));
        assert_eq!(service.max_result_bytes, 65536);
        assert_eq!(service.session_idle, Duration::from_secs(90));
        assert!(c.warnings().is_empty());
        let toml = c.to_toml();
        assert!(
            toml.contains("[connectors]\ncall_timeout_secs = 30\nmax_result_bytes = 65536\nsession_idle_secs = 90\n"),
            "{toml}"
        );

        // The environment overrides the file, and each value is bounds-checked where it is
        // written, so the message names the key as the operator spelt it.
        let c = from_text(
            text,
            &[("SWITCHBOARD_CALL_TIMEOUT_SECS", "120")],
            Flags::default(),
        )
        .unwrap();
        assert_eq!(c.call_timeout_secs, 120);
        assert_eq!(c.warnings().len(), 1, "longer than the request timeout");
        let e = from_text(
            "",
            &[("SWITCHBOARD_MAX_RESULT_BYTES", "10")],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("SWITCHBOARD_MAX_RESULT_BYTES: must be between 1024 and"),
            "{e}"
        );
        let e = from_text(
            "[connectors]\nsession_idle_secs = 0\n",
            &[],
            Flags::default(),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("connectors.session_idle_secs: must be between 1 and 86400"),
            "{e:#}"
        );
        let e = from_text("[connectors]\ncall_timeout = 5\n", &[], Flags::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("connectors.call_timeout"), "{e}");
    }

    #[test]
    fn chat_settings_reach_the_service() {
        let text = "[chat]\nstep_limit = 4\nmax_output_chars = 5000\nmax_functions = 0\n";
        let c = from_text(
            text,
            &[
                ("SWITCHBOARD_CHAT_LEASE_SECS", "90"),
                ("SWITCHBOARD_CHAT_MAX_FUNCTION_TOKENS", "3000"),
                ("SWITCHBOARD_CHAT_SEARCH_MATCHES", "5"),
                ("SWITCHBOARD_CHAT_STEP_LIMIT", "6"),
            ],
            Flags::default(),
        )
        .unwrap();
        let chat = c.service_config(c.listen).chat;
        assert_eq!(chat.step_limit, 6, "the environment overrides the file");
        assert_eq!(chat.lease, Duration::from_secs(90));
        assert_eq!(chat.max_output_chars, 5000);
        assert_eq!(
            (
                chat.budget.max_functions,
                chat.budget.max_tokens,
                chat.budget.matches
            ),
            (0, 3000, 5)
        );
        assert!(chat.default_model.is_none());
        let toml = c.to_toml();
        assert!(
            toml.contains(
                "[chat]\nstep_limit = 6\nlease_secs = 90\nmax_output_chars = 5000\n\
                 max_functions = 0\nmax_function_tokens = 3000\nsearch_matches = 5\n"
            ),
            "{toml}"
        );

        for (var, value, problem) in [
            (
                "SWITCHBOARD_CHAT_STEP_LIMIT",
                "0",
                "must be between 1 and 100",
            ),
            (
                "SWITCHBOARD_CHAT_STEP_LIMIT",
                "101",
                "must be between 1 and 100",
            ),
            (
                "SWITCHBOARD_CHAT_LEASE_SECS",
                "3601",
                "must be between 1 and 3600",
            ),
            (
                "SWITCHBOARD_CHAT_MAX_OUTPUT_CHARS",
                "999",
                "must be between 1000 and",
            ),
            (
                "SWITCHBOARD_CHAT_MAX_FUNCTIONS",
                "129",
                "must be between 0 and 128",
            ),
            (
                "SWITCHBOARD_CHAT_SEARCH_MATCHES",
                "0",
                "must be between 1 and 128",
            ),
            ("SWITCHBOARD_CHAT_LEASE_SECS", "soon", "invalid digit"),
        ] {
            let e = from_text("", &[(var, value)], Flags::default())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{var}: {problem}")), "{e}");
        }
        let e = from_text("[chat]\nmax_output_chars = 10\n", &[], Flags::default()).unwrap_err();
        assert!(
            format!("{e:#}").contains("chat.max_output_chars: must be between 1000 and 10000000"),
            "{e:#}"
        );
        let e = from_text("[chat]\nsteps = 3\n", &[], Flags::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key chat.steps"), "{e}");
    }

    #[test]
    fn the_default_model_needs_kind_url_and_name() {
        let text = "[chat]\nmodel_kind = \"mistral\"\nmodel_base_url = \"https://api.mistral.ai/v1\"\n\
                    model_name = \"mistral-small\"\n";
        let c = from_text(
            text,
            &[("SWITCHBOARD_CHAT_MODEL_API_KEY", "sk-hunter2")],
            Flags::default(),
        )
        .unwrap();
        let model = c
            .service_config(c.listen)
            .chat
            .default_model
            .expect("a default model");
        assert_eq!(model.kind, ProviderKind::Mistral);
        assert_eq!(model.base_url, "https://api.mistral.ai/v1");
        assert_eq!(model.model, "mistral-small");
        assert_eq!(model.api_key.as_deref(), Some("sk-hunter2"));
        // The key never shows: not in Debug, not in what `config check` prints.
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{model:?}").contains("hunter2"));
        let toml = c.to_toml();
        assert!(!toml.contains("hunter2"), "{toml}");
        assert!(
            toml.contains("model_kind = \"mistral\"\nmodel_base_url = \"https://api.mistral.ai/v1\"\n\
                           model_name = \"mistral-small\"\n# model API key: from SWITCHBOARD_CHAT_MODEL_API_KEY\n"),
            "{toml}"
        );

        // All from the environment, with the key from a file.
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("model.key");
        std::fs::write(&key_file, "sk-from-file\n").unwrap();
        let c = from_text(
            "",
            &[
                ("SWITCHBOARD_CHAT_MODEL_KIND", "OpenAI"),
                (
                    "SWITCHBOARD_CHAT_MODEL_BASE_URL",
                    "http://127.0.0.1:11434/v1",
                ),
                ("SWITCHBOARD_CHAT_MODEL_NAME", "llama3.2"),
                (
                    "SWITCHBOARD_CHAT_MODEL_API_KEY_FILE",
                    key_file.to_str().unwrap(),
                ),
            ],
            Flags::default(),
        )
        .unwrap();
        let model = c.service_config(c.listen).chat.default_model.unwrap();
        assert_eq!(model.kind, ProviderKind::OpenAi);
        assert_eq!(model.api_key.as_deref(), Some("sk-from-file"));
        assert!(c.to_toml().contains("model_api_key_file = "));
        assert!(!c.to_toml().contains("sk-from-file"));

        // Partial settings are refused, naming what is missing.
        let e = from_text(
            "[chat]\nmodel_kind = \"openai\"\n",
            &[("SWITCHBOARD_CHAT_MODEL_NAME", "gpt-4o")],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("chat: the default model needs")
                && e.contains("missing chat.model_base_url (SWITCHBOARD_CHAT_MODEL_BASE_URL)")
                && !e.contains("chat.model_name ("),
            "{e}"
        );
        let e = from_text(
            "",
            &[("SWITCHBOARD_CHAT_MODEL_API_KEY", "sk-hunter2")],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no default model") && !e.contains("hunter2"),
            "{e}"
        );
        let e = from_text(
            text,
            &[
                ("SWITCHBOARD_CHAT_MODEL_API_KEY", "sk-hunter2"),
                ("SWITCHBOARD_CHAT_MODEL_API_KEY_FILE", "/k"),
            ],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("both set") && !e.contains("hunter2"), "{e}");
        let e = from_text(
            text,
            &[(
                "SWITCHBOARD_CHAT_MODEL_API_KEY_FILE",
                "/nonexistent/model.key",
            )],
            Flags::default(),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").starts_with("chat.model_api_key_file: cannot read /nonexistent"),
            "{e:#}"
        );

        // A key written in the file is refused without being echoed, and says where it goes.
        let e = from_text(
            "[chat]\nmodel_api_key = \"sk-hunter2\"\n",
            &[],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("chat.model_api_key")
                && e.contains("SWITCHBOARD_CHAT_MODEL_API_KEY")
                && !e.contains("hunter2"),
            "{e}"
        );

        for (var, value, problem) in [
            (
                "SWITCHBOARD_CHAT_MODEL_KIND",
                "anthropic",
                "must be mistral or openai",
            ),
            (
                "SWITCHBOARD_CHAT_MODEL_BASE_URL",
                "ftp://x",
                "must be http or https",
            ),
            (
                "SWITCHBOARD_CHAT_MODEL_BASE_URL",
                "https://u:hunter2@x/v1",
                "must not contain a user",
            ),
            (
                "SWITCHBOARD_CHAT_MODEL_BASE_URL",
                "https://x/v1?key=hunter2",
                "must not have a query",
            ),
            ("SWITCHBOARD_CHAT_MODEL_NAME", " ", "must not be empty"),
            ("SWITCHBOARD_CHAT_MODEL_API_KEY", "", "is set but empty"),
        ] {
            let e = from_text("", &[(var, value)], Flags::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{var}: {problem}")) && !e.contains("hunter2"),
                "{e}"
            );
        }
        let e = from_text("[chat]\nmodel_kind = \"claude\"\n", &[], Flags::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("chat.model_kind") && e.contains("must be mistral or openai"),
            "{e}"
        );
    }

    #[test]
    fn unknown_env_vars_are_found() {
        let vars = [
            "SWITCHBOARD_LISTEN",
            "SWITCHBOARD_LISEN",
            "SWITCHBOARD_TOKEN",
            "SWITCHBOARD_TEST_POSTGRES_URL",
            "HOME",
        ];
        assert_eq!(
            unknown_env_vars(vars.iter().map(|s| s.to_string())),
            ["SWITCHBOARD_LISEN"]
        );
    }
}
