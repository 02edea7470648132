//! `SafeClient`: a `reqwest::Client` with the SSRF checks built in, plus helpers that add body
//! limits and plain-words errors.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::guard::{GuardLayer, GuardedResolver, Target, redirect_policy};
use crate::{Destinations, NetError};

/// Which redirects the client follows. Every redirect it follows is checked again, hop by hop,
/// and the connection it leads to goes through the same resolver and connector checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redirects {
    /// Follow none: a redirect comes back to the caller as the response.
    Never,
    /// Follow only 307 and 308 redirects within the origin first requested; any other comes
    /// back to the caller as the response. A 301, 302 or 303 would turn a POST into a bodyless
    /// GET, and another origin would receive the caller's custom headers (an MCP session id,
    /// an API key), which reqwest strips only for `Authorization`, `Cookie` and the like.
    /// This is what rmcp's own default client does, and the default here.
    #[default]
    SameOrigin,
    /// Follow redirects to any origin that passes the checks, up to the hop limit. For plain
    /// GETs of public documents such as OAuth metadata.
    Any,
}

/// Timeouts and limits of a [`SafeClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Longest wait for a connection, name resolution and TLS handshake included.
    pub connect_timeout: Duration,
    /// Longest time one request may take, from connecting until the body has been read.
    /// `None` for a client that holds long-lived event streams (rmcp's streamable-HTTP GET
    /// stream and streamed tool results), which would otherwise be cut off.
    pub total_timeout: Option<Duration>,
    /// Longest silence between two reads of a response. Bounds a stalled server when there
    /// is no total timeout.
    pub idle_timeout: Option<Duration>,
    /// Largest body [`SafeClient::get_json`], [`SafeClient::post_form`] and
    /// [`SafeClient::read_body`] accept, in bytes.
    pub max_body_bytes: usize,
    /// Which redirects to follow.
    pub redirects: Redirects,
    /// Most redirects followed for one request.
    pub max_redirects: usize,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Some(Duration::from_secs(30)),
            idle_timeout: None,
            max_body_bytes: 4 * 1024 * 1024,
            redirects: Redirects::SameOrigin,
            max_redirects: 5,
            user_agent: concat!("switchboard/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The one HTTP client for requests to user-supplied URLs.
///
/// Cloning is cheap and shares the connection pool. The checks live inside the
/// [`reqwest::Client`] that [`SafeClient::client`] returns, so code that only gets that client
/// (rmcp's transport) is held to them too:
///
/// - host names are resolved by a resolver that hands on only allowed addresses, and the
///   connection goes to one of exactly those;
/// - IP literals, which reqwest never resolves, are refused by a connector layer before a
///   socket is opened, on the first request and after every redirect;
/// - the peer address of every new connection is checked again once connected;
/// - redirects are checked hop by hop (see [`Redirects`]);
/// - proxies from the environment are ignored, so none can carry a request past the checks.
#[derive(Debug, Clone)]
pub struct SafeClient {
    client: reqwest::Client,
    destinations: Arc<Destinations>,
    options: Arc<ClientOptions>,
}

impl SafeClient {
    /// Builds a client that may reach public addresses and whatever `destinations` allows.
    pub fn new(destinations: Destinations, options: ClientOptions) -> Result<Self, NetError> {
        Self::build(destinations, options, Extra::None)
    }

    fn build(
        destinations: Destinations,
        options: ClientOptions,
        extra: Extra,
    ) -> Result<Self, NetError> {
        let destinations = Arc::new(destinations);
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver {
                destinations: destinations.clone(),
            })
            .redirect(redirect_policy(
                destinations.clone(),
                options.redirects,
                options.max_redirects,
            ))
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.clone());
        if let Some(total) = options.total_timeout {
            builder = builder.timeout(total);
        }
        if let Some(idle) = options.idle_timeout {
            builder = builder.read_timeout(idle);
        }
        // Layers added first sit closest to the socket; the guard goes on last, outermost, so
        // it sees every connection first.
        match extra {
            Extra::None => {}
            #[cfg(test)]
            Extra::Tripwire => builder = builder.connector_layer(tests::TripwireLayer),
        }
        let client = builder
            .connector_layer(GuardLayer {
                destinations: destinations.clone(),
            })
            .build()
            .map_err(|e| NetError::Build {
                reason: std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string()),
            })?;
        Ok(Self {
            client,
            destinations,
            options: Arc::new(options),
        })
    }

    /// The guarded `reqwest::Client`, for code that needs one (rmcp's streamable-HTTP
    /// transport). Its errors convert with `NetError::from` or [`NetError::find_in`].
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The allowlist this client enforces.
    pub fn destinations(&self) -> &Destinations {
        &self.destinations
    }

    /// The timeouts and limits this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Checks what can be checked without the network: the scheme is `http` or `https`, there
    /// is a host, and a literal IP host is allowed. Host names are checked when they resolve.
    pub fn check_url(&self, url: &Url) -> Result<(), NetError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NetError::Scheme {
                scheme: url.scheme().to_owned(),
            });
        }
        let Some(host) = url.host_str() else {
            return Err(NetError::InvalidUrl {
                reason: "the URL has no host".into(),
            });
        };
        Target::from_host(host).check_before_connect(&self.destinations)
    }

    /// A request builder for `url`, after [`SafeClient::check_url`].
    pub fn request(&self, method: Method, url: &Url) -> Result<RequestBuilder, NetError> {
        self.check_url(url)?;
        Ok(self.client.request(method, url.clone()))
    }

    /// Sends a request built with [`SafeClient::request`] (or with any builder: it is sent
    /// through this client whatever client made it). The response may have any status.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, NetError> {
        let request = request.build().map_err(NetError::from)?;
        self.check_url(request.url())?;
        self.client.execute(request).await.map_err(NetError::from)
    }

    /// Reads a response body within this client's body limit.
    pub async fn read_body(&self, response: Response) -> Result<Bytes, NetError> {
        read_limited(response, self.options.max_body_bytes).await
    }

    /// GETs `url` and decodes its JSON body. Answers other than 2xx are errors.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, NetError> {
        let request = self
            .request(Method::GET, url)?
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        self.json_answer(request).await
    }

    /// POSTs `form` as `application/x-www-form-urlencoded` to `url` and decodes the JSON
    /// answer. Answers other than 2xx are errors; use [`SafeClient::send`] to read the body of
    /// an error answer (an OAuth error response, for example).
    pub async fn post_form<F, T>(&self, url: &Url, form: &F) -> Result<T, NetError>
    where
        F: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let request = self
            .request(Method::POST, url)?
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .form(form);
        self.json_answer(request).await
    }

    async fn json_answer<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, NetError> {
        let response = self.send(request).await?;
        let host = host_of(&response);
        let status = response.status();
        if status.is_redirection() {
            return Err(NetError::Redirect {
                reason: format!(
                    "{host} answered with a redirect ({status}) this client does not follow"
                ),
            });
        }
        if !status.is_success() {
            return Err(NetError::Status {
                host,
                status: status.as_u16(),
            });
        }
        let body = self.read_body(response).await?;
        serde_json::from_slice(&body).map_err(|e| NetError::Decode {
            host,
            // serde_json's message can quote the body (a token, say); give only the position.
            reason: format!(
                "not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        })
    }
}

/// Which extra layer to put under the guard; only tests put one.
enum Extra {
    None,
    #[cfg(test)]
    Tripwire,
}

/// Reads `response`'s body, failing with [`NetError::TooLarge`] as soon as it is known to be
/// longer than `max_bytes`: at once when the `Content-Length` says so, else when the chunks
/// read so far pass the limit. The client's timeouts keep applying while the body is read.
pub async fn read_limited(mut response: Response, max_bytes: usize) -> Result<Bytes, NetError> {
    let host = host_of(&response);
    let too_large = || NetError::TooLarge {
        host: host.clone(),
        limit: max_bytes,
    };
    let declared = response.content_length();
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |n| n as usize).min(max_bytes);
    let mut body = BytesMut::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(NetError::from)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn host_of(response: &Response) -> String {
    response.url().host_str().unwrap_or("the server").to_owned()
}

#[cfg(test)]
mod tests;
