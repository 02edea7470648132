//! The HTTP client for Switchboard's REST API: one request helper per method, JSON in and out,
//! and every error answer turned into one plain line (`field: message`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

/// How long an ordinary API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An error answer from the API: `{"error":{"code","message","field"}}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, in plain words.
    pub message: String,
    /// The input field that was refused, if one was.
    pub field: Option<String>,
    /// Whether the request carried a token, so a 401 means that token is no longer good.
    pub with_token: bool,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) if !self.message.starts_with(&format!("{field}:")) => {
                write!(f, "{field}: {}", self.message)?
            }
            _ => f.write_str(&self.message)?,
        }
        if self.status == StatusCode::UNAUTHORIZED && self.with_token {
            f.write_str(" (sign in again with `switchboard login`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Reads an error answer; bodies that are not the API's error shape (a proxy's HTML page,
    /// say) become a message naming the status.
    fn from_body(status: StatusCode, body: &str, with_token: bool) -> Self {
        match parse_error(body) {
            Some((message, field)) => Self {
                status,
                message,
                field,
                with_token,
            },
            None => Self {
                status,
                message: format!(
                    "the server answered {status}{}",
                    if body.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", first_line(body))
                    }
                ),
                field: None,
                with_token,
            },
        }
    }

    /// Reads the `error` event of a streamed answer, whose data is the same error body.
    pub fn from_event(data: &str) -> Self {
        let (message, field) = parse_error(data).unwrap_or_else(|| {
            (
                format!(
                    "the server reported an error it did not describe: {}",
                    first_line(data)
                ),
                None,
            )
        });
        Self {
            // The HTTP status was 200 before the stream began; the error came inside it.
            status: StatusCode::OK,
            message,
            field,
            with_token: false,
        }
    }
}

/// The message and field of an error body `{"error":{"message","field"}}`.
fn parse_error(body: &str) -> Option<(String, Option<String>)> {
    let parsed: Value = serde_json::from_str(body).ok()?;
    let error = parsed.get("error")?;
    let get = |k: &str| error.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((get("message")?, get("field")))
}

fn first_line(body: &str) -> String {
    crate::output::truncate(body.trim().lines().next().unwrap_or_default(), 200)
}

/// A client for one server, optionally signed in with an API token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Checks and normalizes a server URL as a person typed it.
pub fn parse_server(raw: &str) -> Result<Url> {
    let raw = raw.trim();
    let mut url =
        Url::parse(raw).map_err(|e| anyhow!("the server URL {raw:?} is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("the server URL must start with http:// or https://, found {raw:?}");
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        bail!("the server URL must hold only a scheme, host, port and path, found {raw:?}");
    }
    // A trailing slash lets the API's path be appended under a path prefix (a server behind
    // a proxy at /switchboard/).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

impl Api {
    /// A client for the server at `server`.
    pub fn new(server: &str, token: Option<String>) -> Result<Self> {
        let base = parse_server(server)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("switchboard-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { http, base, token })
    }

    /// The server's base URL.
    pub fn server(&self) -> &Url {
        &self.base
    }

    /// The URL of `/api/v1/<segments>`, each segment percent-encoded (names can hold any
    /// character the server allows).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("http URLs have a path");
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// Sends a request and returns the raw answer once it is known to be a success.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Option<Duration>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response> {
        let url = self.url(segments);
        let mut request = self.http.request(method, url.clone());
        if let Some(accept) = accept {
            request = request.header(reqwest::header::ACCEPT, accept);
        }
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "it did not answer in time".to_owned()
            } else if e.is_connect() {
                "the connection failed".to_owned()
            } else {
                e.to_string()
            };
            anyhow!("cannot reach the server at {}: {why}", self.base)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ApiError::from_body(status, &body, self.token.is_some()).into())
    }

    /// Sends a request and parses the JSON answer (`null` for an empty one, such as 204).
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let response = self
            .send(method, segments, query, body, Some(REQUEST_TIMEOUT), None)
            .await?;
        let bytes = response
            .bytes()
            .await
            .context("the server's answer broke off")?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the server's answer is not JSON")
    }

    /// `GET`.
    pub async fn get(&self, segments: &[&str]) -> Result<Value> {
        self.call(Method::GET, segments, &[], None).await
    }

    /// `GET` with a query string.
    pub async fn get_query(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value> {
        self.call(Method::GET, segments, query, None).await
    }

    /// `POST` with a JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::POST, segments, &[], Some(body)).await
    }

    /// `PUT` with a JSON body.
    pub async fn put(&self, segments: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::PUT, segments, &[], Some(body)).await
    }

    /// `PATCH` with a JSON body.
    pub async fn patch(&self, segments: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::PATCH, segments, &[], Some(body)).await
    }

    /// `DELETE`.
    pub async fn delete(&self, segments: &[&str]) -> Result<Value> {
        self.call(Method::DELETE, segments, &[], None).await
    }

    /// Every item of a list, following `next_cursor` through the pages. Also accepts a plain
    /// JSON array, which some list endpoints answer with.
    pub async fn list_all(&self, segments: &[&str]) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "200".to_owned())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page = self.get_query(segments, &query).await?;
            let (page_items, next) = split_page(page)?;
            items.extend(page_items);
            match next {
                // A server that hands back the cursor it was given would loop forever.
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// A streamed `GET` without the usual time limit, for exports.
    pub async fn stream(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        self.send(Method::GET, segments, query, None, None, None)
            .await
    }

    /// A `GET` answered with server-sent events (`text/event-stream`), without the usual time
    /// limit: the stream stays open until the caller drops it.
    pub async fn get_events(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        self.send(
            Method::GET,
            segments,
            query,
            None,
            None,
            Some("text/event-stream"),
        )
        .await
    }

    /// A `POST` answered with server-sent events (`text/event-stream`), without the usual
    /// time limit: the server bounds the call itself and keeps the stream alive meanwhile.
    pub async fn post_events(&self, segments: &[&str], body: &Value) -> Result<reqwest::Response> {
        self.send(
            Method::POST,
            segments,
            &[],
            Some(body),
            None,
            Some("text/event-stream"),
        )
        .await
    }
}

/// The items and next cursor of a list answer, paged or plain.
pub fn split_page(page: Value) -> Result<(Vec<Value>, Option<String>)> {
    match page {
        Value::Array(items) => Ok((items, None)),
        Value::Object(mut map) => {
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                _ => bail!("the server's answer is not a list"),
            };
            let next = map
                .remove("next_cursor")
                .and_then(|c| c.as_str().map(str::to_owned));
            Ok((items, next))
        }
        _ => bail!("the server's answer is not a list"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_bodies_become_one_line() {
        let body = r#"{"error":{"code":"validation","message":"must contain only ASCII letters and digits, found '-'","field":"name"}}"#;
        let e = ApiError::from_body(StatusCode::UNPROCESSABLE_ENTITY, body, true);
        assert_eq!(
            e.to_string(),
            "name: must contain only ASCII letters and digits, found '-'"
        );
        let e = ApiError::from_body(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"not_found","message":"connector not found","field":null}}"#,
            true,
        );
        assert_eq!(e.to_string(), "connector not found");
        let e = ApiError::from_body(StatusCode::BAD_GATEWAY, "<html>\nbad gateway</html>", true);
        assert_eq!(e.to_string(), "the server answered 502 Bad Gateway: <html>");
        let e = ApiError::from_body(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":"unauthenticated","message":"sign in first"}}"#,
            true,
        );
        assert!(e.to_string().starts_with("sign in first (sign in again"));
        // Without a token (signing in), a 401 is about the password, not a stale token.
        let body = r#"{"error":{"code":"unauthenticated","message":"email or password is wrong"}}"#;
        let e = ApiError::from_body(StatusCode::UNAUTHORIZED, body, false);
        assert_eq!(e.to_string(), "email or password is wrong");
        // A message that already names its field is not prefixed twice.
        let body = r#"{"error":{"code":"validation_failed","message":"url: must use https","field":"url"}}"#;
        let e = ApiError::from_body(StatusCode::UNPROCESSABLE_ENTITY, body, true);
        assert_eq!(e.to_string(), "url: must use https");
    }

    #[test]
    fn error_events_read_like_error_answers() {
        let data = r#"{"error":{"code":"validation_failed","message":"at /a: \"x\" is not of type \"integer\"","field":"arguments"}}"#;
        assert_eq!(
            ApiError::from_event(data).to_string(),
            r#"arguments: at /a: "x" is not of type "integer""#
        );
        let e = ApiError::from_event("oops\nmore");
        assert_eq!(
            e.to_string(),
            "the server reported an error it did not describe: oops"
        );
    }

    #[test]
    fn urls_are_built_under_the_base_path() {
        let api = Api::new("https://sb.example.com/prefix", None).unwrap();
        assert_eq!(
            api.url(&["connectors", "abc", "functions", "a/b c"])
                .as_str(),
            "https://sb.example.com/prefix/api/v1/connectors/abc/functions/a%2Fb%20c"
        );
        let api = Api::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(api.url(&["me"]).as_str(), "http://127.0.0.1:8080/api/v1/me");
        assert!(Api::new("127.0.0.1:8080", None).is_err());
        assert!(Api::new("ftp://x", None).is_err());
    }

    #[test]
    fn pages_and_plain_lists() {
        let (items, next) = split_page(json!({"items": [1, 2], "next_cursor": "c"})).unwrap();
        assert_eq!((items.len(), next.as_deref()), (2, Some("c")));
        let (items, next) = split_page(json!([1])).unwrap();
        assert_eq!((items.len(), next), (1, None));
        assert!(split_page(json!({"x": 1})).is_err());
    }
}
