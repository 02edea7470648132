//! The loopback redirect of `connector connect` (RFC 8252 §7.3): the command listens on
//! `127.0.0.1` at a port the system picks and a path with a random part, hands that address to
//! the server as the authorization's `return_to`, and the server sends the browser there once
//! its callback has stored the grant (or failed). The command then learns the outcome at once
//! instead of polling, and the browser shows it.
//!
//! What arrives here is only a hint: tokens never pass through it (the server keeps them), and
//! `connector connect` confirms a success with the API before reporting it. The random path
//! keeps other local programs from ending the wait by guessing the address.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest request head read from the browser.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may take to send its request head; browsers open idle speculative
/// connections, which must not hold anything up.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server reported through the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// The grant is stored.
    Connected,
    /// The authorization failed, with the server's words.
    Failed(String),
}

/// A listening loopback address; dropping it stops listening.
pub struct Loopback {
    url: String,
    returned: mpsc::Receiver<Returned>,
    task: JoinHandle<()>,
}

impl Loopback {
    /// Listens on `127.0.0.1` at a free port. `connector` names the connector on the page
    /// the browser shows.
    pub async fn bind(connector: &str) -> Result<Loopback> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("cannot listen on a loopback port for the browser")?;
        let port = listener.local_addr()?.port();
        let path = format!(
            "/switchboard/connect/{}",
            switchboard_service::secrets::random_token()
        );
        let url = format!("http://127.0.0.1:{port}{path}");
        let (tx, returned) = mpsc::channel(4);
        let connector = connector.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let (tx, path, connector) = (tx.clone(), path.clone(), connector.clone());
                // One task per connection, so that an idle one cannot delay the real request.
                tokio::spawn(async move {
                    if let Ok(Some(returned)) = serve(stream, &path, &connector).await {
                        let _ = tx.send(returned).await;
                    }
                });
            }
        });
        Ok(Loopback {
            url,
            returned,
            task,
        })
    }

    /// The address to give the server as `return_to`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits until the browser arrives with an outcome.
    pub async fn next(&mut self) -> Option<Returned> {
        self.returned.recv().await
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one connection: the page with the outcome when the request is for `path` with an
/// outcome in its query, else 404. Returns the outcome it saw.
async fn serve(mut stream: TcpStream, path: &str, connector: &str) -> Result<Option<Returned>> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .context("the request head did not arrive")??;
    let returned = parse(&head, path);
    let (status, title, message) = match &returned {
        Some(Returned::Connected) => (
            "200 OK",
            "Connected",
            format!(
                "{connector} is connected. You can close this window and return to the terminal."
            ),
        ),
        Some(Returned::Failed(why)) => (
            "200 OK",
            "The connection did not complete",
            format!("{why}. The terminal says what to do next."),
        ),
        None => ("404 Not Found", "Not found", "Nothing is here.".to_owned()),
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · \
         Switchboard</title></head><body style=\"font-family:system-ui,sans-serif;\
         max-width:36rem;margin:4rem auto;padding:0 1rem\"><h1>{title}</h1>\
         <p id=\"outcome\">{message}</p></body></html>",
        title = switchboard_server::escape_html(title),
        message = switchboard_server::escape_html(&message),
    );
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nreferrer-policy: no-referrer\r\n\
         content-security-policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(returned)
}

/// Reads until the end of the request head (an empty line), at most [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        anyhow::ensure!(head.len() < MAX_HEAD, "the request head is too long");
        let read = stream.read(&mut buffer).await?;
        anyhow::ensure!(read > 0, "the connection closed before a request arrived");
        head.extend_from_slice(&buffer[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The outcome a request head carries: `GET <path>?outcome=connected`, or
/// `outcome=failed&message=...`. Anything else is no outcome.
fn parse(head: &str, path: &str) -> Option<Returned> {
    let mut words = head.lines().next()?.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    let (target_path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || target_path != path {
        return None;
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    match param("outcome")? {
        "connected" => Some(Returned::Connected),
        "failed" => Some(Returned::Failed(
            param("message")
                .unwrap_or("the server gave no reason")
                .to_owned(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_path_with_an_outcome_counts() {
        let path = "/switchboard/connect/abc";
        let head = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert_eq!(
            parse(
                &head("/switchboard/connect/abc?outcome=connected&connector=X"),
                path
            ),
            Some(Returned::Connected)
        );
        assert_eq!(
            parse(
                &head("/switchboard/connect/abc?outcome=failed&message=access%20denied"),
                path
            ),
            Some(Returned::Failed("access denied".into()))
        );
        assert_eq!(parse(&head("/favicon.ico"), path), None);
        assert_eq!(
            parse(&head("/switchboard/connect/abd?outcome=connected"), path),
            None
        );
        assert_eq!(parse(&head(path), path), None);
        assert_eq!(
            parse(
                "POST /switchboard/connect/abc?outcome=connected HTTP/1.1\r\n\r\n",
                path
            ),
            None
        );
    }

    #[tokio::test]
    async fn a_browser_request_ends_the_wait_and_gets_a_page() {
        let mut loopback = Loopback::bind("Protected").await.unwrap();
        let url = format!("{}?outcome=connected&connector=Protected", loopback.url());
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        // An idle connection first, as a browser's speculative one: it must not block.
        let idle = TcpStream::connect(
            loopback
                .url()
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap(),
        )
        .await
        .unwrap();
        let page = client.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let text = page.text().await.unwrap();
        assert!(text.contains("Protected is connected"), "{text}");
        assert_eq!(loopback.next().await, Some(Returned::Connected));
        drop(idle);
        let missing = client
            .get(loopback.url().replace("/connect/", "/other/"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    }
}
