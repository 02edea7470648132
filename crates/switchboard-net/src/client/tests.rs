//! Real-client tests that name addresses outside loopback, run with a tripwire under the guard.
//!
//! Nothing outside loopback may ever be contacted from this machine. Beneath the guard these
//! clients carry a second connector layer, the tripwire, that refuses every destination other
//! than a loopback literal or `localhost` with an error of its own. A test that expects the
//! guard's refusal therefore fails, without a packet sent, if the guard ever lets such an
//! address through. The servers the tests talk to listen on 127.0.0.1.

use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header::LOCATION};
use tower::{Layer, Service};

use super::*;
use crate::Blocked;
use crate::guard::BoxError;

/// The tripwire's own error, so a test can tell it apart from the guard's refusals.
#[derive(Debug)]
struct Tripped(String);

impl std::fmt::Display for Tripped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tripwire: the guard let {} through", self.0)
    }
}

impl std::error::Error for Tripped {}

/// Whether the tripwire lets a connection to `target` go on.
fn tripwire_allows(target: &Target) -> bool {
    match target {
        Target::Literal { addr, .. } => addr.to_canonical().is_loopback(),
        Target::Name(name) => name == "localhost",
    }
}

#[derive(Clone)]
pub(super) struct TripwireLayer;

impl<S> Layer<S> for TripwireLayer {
    type Service = Tripwire<S>;
    fn layer(&self, inner: S) -> Tripwire<S> {
        Tripwire(inner)
    }
}

#[derive(Clone)]
pub(super) struct Tripwire<S>(S);

impl<S, R> Service<R> for Tripwire<S>
where
    R: Debug,
    S: Service<R>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let text = format!("{request:?}");
        match Target::from_connector_request(&request) {
            Ok(target) if tripwire_allows(&target) => {
                let fut = self.0.call(request);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            _ => Box::pin(std::future::ready(Err(Box::new(Tripped(text)) as BoxError))),
        }
    }
}

fn tripwired(destinations: Destinations, redirects: Redirects) -> SafeClient {
    let options = ClientOptions {
        redirects,
        ..ClientOptions::default()
    };
    SafeClient::build(destinations, options, Extra::Tripwire).expect("client")
}

/// Starts a loopback server that answers `/go?to=URL&status=N` with that redirect and counts
/// every request.
async fn redirector() -> (SocketAddr, Arc<AtomicUsize>) {
    #[derive(serde::Deserialize)]
    struct Go {
        to: String,
        status: u16,
    }
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/go",
        axum::routing::any(move |Query(go): Query<Go>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let status = StatusCode::from_u16(go.status).unwrap_or(StatusCode::FOUND);
                (status, [(LOCATION, go.to)])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hits)
}

fn go(server: SocketAddr, to: &str, status: u16) -> Url {
    let mut url = Url::parse(&format!("http://{server}/go")).expect("url");
    url.query_pairs_mut()
        .append_pair("to", to)
        .append_pair("status", &status.to_string());
    url
}

fn assert_refused(err: NetError, class: Blocked, what: &str) {
    match err {
        NetError::Blocked { class: got, .. } => assert_eq!(got, class, "{what}"),
        other => panic!("{what}: expected the guard's refusal, got {other:?} ({other})"),
    }
}

#[test]
fn the_tripwire_passes_only_loopback() {
    for host in ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost"] {
        assert!(tripwire_allows(&Target::from_host(host)), "{host}");
    }
    for host in [
        "169.254.169.254",
        "10.0.0.1",
        "[fd00::1]",
        "example.org",
        "0.0.0.0",
    ] {
        assert!(!tripwire_allows(&Target::from_host(host)), "{host}");
    }
}

/// The guard inside the raw `reqwest::Client` refuses every class before connecting, for URLs
/// that never went through `check_url`.
#[tokio::test]
async fn the_raw_client_refuses_every_class_before_connecting() {
    let safe = tripwired(Destinations::public_only(), Redirects::Any);
    let cases = [
        (
            "http://169.254.169.254/latest/meta-data/",
            Blocked::LinkLocal,
        ),
        ("http://[::ffff:169.254.169.254]/", Blocked::LinkLocal),
        ("http://[64:ff9b::169.254.169.254]/", Blocked::LinkLocal),
        ("http://10.0.0.1/", Blocked::Private),
        ("http://192.168.1.1/", Blocked::Private),
        ("http://172.16.5.4/", Blocked::Private),
        ("http://100.64.0.1/", Blocked::SharedAddress),
        ("http://[fd00::1]/", Blocked::UniqueLocal),
        ("http://[fe80::1]/", Blocked::LinkLocal),
        ("http://224.0.0.1/", Blocked::Multicast),
        ("http://0.0.0.0/", Blocked::Unspecified),
        ("http://[::]/", Blocked::Unspecified),
        ("http://255.255.255.255/", Blocked::Broadcast),
        ("https://192.0.2.10/", Blocked::Documentation),
        ("http://[2002:a9fe:a9fe::1]/", Blocked::LinkLocal),
        // Decimal, octal and hex spellings of 10.0.0.1 and 169.254.169.254.
        ("http://167772161/", Blocked::Private),
        ("http://012.0.0.01/", Blocked::Private),
        ("http://0xa9fea9fe/", Blocked::LinkLocal),
        ("http://0251.0376.0251.0376/", Blocked::LinkLocal),
        ("http://169.254.43518/", Blocked::LinkLocal),
    ];
    for (url, class) in cases {
        let err = safe
            .client()
            .get(url)
            .send()
            .await
            .expect_err("must be refused");
        assert_refused(NetError::from(err), class, url);
        let parsed = Url::parse(url).expect("url");
        assert_refused(
            safe.check_url(&parsed).expect_err("check_url refuses"),
            class,
            url,
        );
    }
}

#[tokio::test]
async fn a_redirect_to_the_metadata_endpoint_is_refused() {
    let (server, hits) = redirector().await;
    let safe = tripwired(
        Destinations::from_config(false, ["127.0.0.1/32"]).expect("allowlist"),
        Redirects::Any,
    );
    let targets = [
        (
            "http://169.254.169.254/latest/meta-data/",
            Blocked::LinkLocal,
        ),
        ("http://[::ffff:a9fe:a9fe]/", Blocked::LinkLocal),
        ("http://2852039166/", Blocked::LinkLocal),
        ("http://10.0.0.1:8080/", Blocked::Private),
        ("http://[fd00::1]/", Blocked::UniqueLocal),
    ];
    for (status, (to, class)) in [301u16, 302, 303, 307, 308].into_iter().zip(targets) {
        let before = hits.load(Ordering::SeqCst);
        let url = go(server, to, status);
        // Through the wrapper…
        let err = safe.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert_refused(err, class, to);
        // …and through the raw client, as rmcp would use it.
        let err = safe.client().get(url.clone()).send().await.unwrap_err();
        assert_refused(NetError::from(err), class, to);
        assert_eq!(hits.load(Ordering::SeqCst), before + 2, "{to}");
    }
}

#[tokio::test]
async fn same_origin_mode_hands_a_cross_origin_redirect_back_unfollowed() {
    let (server, _hits) = redirector().await;
    let safe = tripwired(
        Destinations::from_config(false, ["127.0.0.1/32"]).expect("allowlist"),
        Redirects::SameOrigin,
    );
    let url = go(server, "http://169.254.169.254/", 307);
    let response = safe.client().get(url.clone()).send().await.expect("answer");
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    let err = safe.get_json::<serde_json::Value>(&url).await.unwrap_err();
    assert!(matches!(err, NetError::Redirect { .. }), "{err:?}");
}
