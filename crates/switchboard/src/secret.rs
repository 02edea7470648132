//! Configuration values that are secrets: their `Debug` and `Display` never show the secret,
//! so a stray `{:?}` in a log line or an error message cannot leak them.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use zeroize::Zeroizing;

/// The text of a key ring (`sbk1:` lines), as given in `SWITCHBOARD_MASTER_KEY`.
#[derive(Clone)]
pub struct MasterKeyText(Zeroizing<String>);

impl MasterKeyText {
    /// Wraps key text.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The key text, for parsing into a key ring.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MasterKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A language model provider's API key (`SWITCHBOARD_CHAT_MODEL_API_KEY`, or the file
/// `chat.model_api_key_file` names).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyText(Zeroizing<String>);

impl ApiKeyText {
    /// Wraps a key.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The key, for the provider's `Authorization` header only; never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which database backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres://` and `postgresql://` URLs.
    Postgres,
}

/// A database URL. PostgreSQL URLs usually carry a password, so it is shown with the password
/// replaced by `[redacted]`; [`DatabaseUrl::expose`] gives the real text to the driver only.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl {
    text: Zeroizing<String>,
    backend: Backend,
}

impl DatabaseUrl {
    /// Checks that `text` names a backend Switchboard has.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let backend = if text.starts_with("sqlite:") {
            Backend::Sqlite
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            // Echo only the scheme: the rest may hold a password.
            let scheme = text.split_once(':').map_or("(none)", |(s, _)| s);
            return Err(format!(
                "must start with sqlite:// or postgres://, found scheme {scheme:?}"
            ));
        };
        if backend == Backend::Sqlite
            && text
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .is_empty()
        {
            return Err(
                "a sqlite URL must name a file, as in sqlite://./data/switchboard.db".into(),
            );
        }
        if backend == Backend::Postgres {
            url::Url::parse(text).map_err(|e| format!("is not a valid postgres URL ({e})"))?;
        }
        Ok(Self {
            text: Zeroizing::new(text.to_owned()),
            backend,
        })
    }

    /// The SQLite database in a data directory: the default.
    pub fn sqlite_in(data_dir: &std::path::Path) -> Self {
        let path = data_dir.join("switchboard.db");
        Self {
            text: Zeroizing::new(format!("sqlite://{}", path.display())),
            backend: Backend::Sqlite,
        }
    }

    /// Which backend it selects.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The full URL, password included. Hand it to the driver; never print it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The file a SQLite URL names, if it names one (an in-memory database names none).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let rest = self
            .text
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        Some(PathBuf::from(path))
    }

    /// The URL with any password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        if self.backend == Backend::Postgres {
            if let Ok(mut url) = url::Url::parse(&self.text) {
                if url.password().is_some() {
                    // Setting a password only fails for URLs that cannot have one, and this
                    // one just had one.
                    let _ = url.set_password(Some("[redacted]"));
                    return url.to_string().replace("%5Bredacted%5D", "[redacted]");
                }
                return url.to_string();
            }
            return "postgres://[redacted]".into();
        }
        self.text.to_string()
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_password_never_shows() {
        let url = DatabaseUrl::parse("postgres://sb:hunter2@db.internal:5432/switchboard").unwrap();
        assert_eq!(url.backend(), Backend::Postgres);
        for shown in [format!("{url:?}"), url.to_string(), url.redacted()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        assert!(url.expose().contains("hunter2"));
    }

    #[test]
    fn sqlite_paths() {
        let url = DatabaseUrl::sqlite_in(std::path::Path::new("./data"));
        assert_eq!(url.expose(), "sqlite://./data/switchboard.db");
        assert_eq!(
            url.sqlite_path().unwrap(),
            PathBuf::from("./data/switchboard.db")
        );
        let abs = DatabaseUrl::parse("sqlite:///var/lib/sb/x.db?mode=rwc").unwrap();
        assert_eq!(
            abs.sqlite_path().unwrap(),
            PathBuf::from("/var/lib/sb/x.db")
        );
        assert!(DatabaseUrl::parse("sqlite:").is_err());
    }

    #[test]
    fn unknown_schemes_are_refused_without_echoing_the_rest() {
        let e = DatabaseUrl::parse("mysql://root:hunter2@x/db").unwrap_err();
        assert!(e.contains("\"mysql\"") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn master_key_debug_is_redacted() {
        let key = MasterKeyText::new("sbk1:abc:secretbytes".into());
        assert_eq!(format!("{key:?}"), "[redacted]");
    }

    #[test]
    fn api_key_debug_is_redacted() {
        let key = ApiKeyText::new("sk-secret".into());
        assert_eq!(format!("{key:?}"), "[redacted]");
        assert_eq!(key.expose(), "sk-secret");
    }
}
