//! Test support: a small HTTP server on a loopback address that counts its requests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Query, Request};
use axum::http::{StatusCode, header::LOCATION};
use axum::middleware::{self, Next};
use axum::routing::{any, get, post};
use switchboard_net::{ClientOptions, Destinations, NetError, Redirects, SafeClient};
use tokio::task::JoinHandle;
use url::Url;

/// Size of `/big` and `/chunked`, in bytes.
pub const BIG: usize = 64 * 1024;

/// A server on a loopback address; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

#[derive(serde::Deserialize)]
struct Go {
    to: String,
    #[serde(default = "found")]
    status: u16,
}

fn found() -> u16 {
    302
}

impl Server {
    /// Starts a server on `ip` (which must be a loopback address), on a free port.
    pub async fn start(ip: [u8; 4]) -> Server {
        let ip = IpAddr::from(ip);
        assert!(ip.is_loopback(), "tests only ever listen on loopback");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/json",
                get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
            )
            .route(
                "/form",
                post(
                    |Form(form): Form<std::collections::BTreeMap<String, String>>| async move {
                        axum::Json(form)
                    },
                ),
            )
            .route("/big", get(|| async { vec![b'x'; BIG] }))
            .route(
                "/chunked",
                get(|| async {
                    let chunks = (0..16).map(|_| Ok::<_, std::io::Error>(vec![b'y'; BIG / 16]));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route(
                "/stall",
                get(|| async {
                    // Longer than any timeout a test sets; the server stops with the test.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .route(
                "/stall-body",
                get(|| async {
                    let first =
                        futures::stream::once(async { Ok::<_, std::io::Error>(vec![b'{']) });
                    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
                }),
            )
            .route(
                "/go",
                any(|Query(go): Query<Go>| async move {
                    let status = StatusCode::from_u16(go.status).unwrap_or(StatusCode::FOUND);
                    (status, [(LOCATION, go.to)])
                }),
            )
            .route(
                "/loop",
                any(|| async { (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, "/loop")]) }),
            )
            .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                counter.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            }));
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, hits, task }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).expect("url")
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A `/go` URL that redirects to `to` with `status`.
    pub fn redirect_to(&self, to: &str, status: u16) -> Url {
        let mut url = self.url("/go");
        url.query_pairs_mut()
            .append_pair("to", to)
            .append_pair("status", &status.to_string());
        url
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client with the default options and `destinations`.
pub fn client(destinations: Destinations) -> SafeClient {
    SafeClient::new(destinations, ClientOptions::default()).expect("client")
}

/// A client that follows redirects anywhere allowed.
pub fn following(destinations: Destinations) -> SafeClient {
    let options = ClientOptions {
        redirects: Redirects::Any,
        ..ClientOptions::default()
    };
    SafeClient::new(destinations, options).expect("client")
}

/// The allowlist holding only 127.0.0.1.
pub fn only_127_0_0_1() -> Destinations {
    Destinations::from_config(false, ["127.0.0.1/32"]).expect("allowlist")
}

/// Panics unless `err` is the guard's refusal of `class`.
#[track_caller]
pub fn assert_blocked(err: &NetError, class: switchboard_net::Blocked, what: &str) {
    match err {
        NetError::Blocked { class: got, .. } => assert_eq!(*got, class, "{what}: {err}"),
        other => panic!("{what}: expected a refusal, got {other:?} ({other})"),
    }
}
