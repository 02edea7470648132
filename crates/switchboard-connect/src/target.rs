//! What to connect to: a URL and the headers that authenticate to it.

use std::fmt;

use sha2::{Digest, Sha256};
use switchboard_domain::{ConnectorId, Transport};
use url::Url;

/// Where a connector's server is and how to authenticate. The headers are secrets: `Debug`
/// shows only their names.
#[derive(Clone)]
pub struct Target {
    /// The server URL.
    pub url: Url,
    /// Headers sent with every request, such as `Authorization`.
    pub headers: Vec<(String, String)>,
    /// The transport that answered last time, tried first.
    pub transport: Option<Transport>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.as_str())
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("transport", &self.transport)
            .finish()
    }
}

impl Target {
    /// A target with no credentials.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            headers: Vec::new(),
            transport: None,
        }
    }

    /// A fingerprint of the credentials, so sessions opened with different credentials are
    /// never shared (and a changed credential opens a new session).
    pub fn credential_fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (name, value) in &self.headers {
            h.update(name.to_ascii_lowercase().as_bytes());
            h.update([0]);
            h.update(value.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// Identifies one pooled session: a connector and the credentials used for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The connector.
    pub connector: ConnectorId,
    /// [`Target::credential_fingerprint`].
    pub credential: String,
}

impl SessionKey {
    /// The key for a connector's target.
    pub fn new(connector: ConnectorId, target: &Target) -> Self {
        Self {
            connector,
            credential: target.credential_fingerprint(),
        }
    }
}
