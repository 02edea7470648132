//! The checks that live inside the `reqwest::Client`: a resolver, a connector layer and a
//! redirect policy. Whoever holds the client, this crate's wrappers or rmcp's transport, goes
//! through all three.
//!
//! - [`GuardedResolver`] resolves host names and hands reqwest only the addresses that pass, so
//!   the address that was checked is the address connected to; a second DNS answer is never
//!   asked for.
//! - [`GuardLayer`] wraps reqwest's connector. reqwest does not resolve IP literals, so this is
//!   where they are refused, before any socket is opened, for the first request and for every
//!   redirect alike. After a connection is made it also compares the peer address with the
//!   rules, so nothing that somehow bypassed the resolver is ever used.
//! - [`redirect_policy`] refuses redirects to other schemes, downgrades to plain http, chains
//!   that are too long and literal addresses that are not allowed, with a clear error before
//!   the connector is reached.

use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Extensions;
use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use tower::{Layer, Service};
use url::Url;

use crate::client::Redirects;
use crate::{Destinations, NetError};

/// The error type reqwest's connector and resolver hooks work with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves host names with the system resolver and keeps only the allowed addresses.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) destinations: Arc<Destinations>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let destinations = self.destinations.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| NetError::Dns {
                    host: host.clone(),
                    reason: e.to_string(),
                })?
                .collect();
            let allowed = filter_resolved(&destinations, &host, &found)?;
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The addresses of `found` that `destinations` allows for `host`, or the refusal of the
/// first one when none is allowed.
///
/// When only some are refused the name is still usable: the refused addresses are dropped
/// (and logged), and the connection goes to an allowed one. A name whose every address is
/// refused is refused.
pub(crate) fn filter_resolved(
    destinations: &Destinations,
    host: &str,
    found: &[SocketAddr],
) -> Result<Vec<SocketAddr>, NetError> {
    let mut allowed = Vec::with_capacity(found.len());
    let mut first_refusal = None;
    for addr in found {
        match destinations.check_resolved(host, addr.ip()) {
            Ok(()) => allowed.push(*addr),
            Err(class) => {
                tracing::warn!(
                    host,
                    addr = %addr.ip(),
                    class = class.as_str(),
                    "dropping a refused address from a DNS answer"
                );
                first_refusal.get_or_insert(NetError::Blocked {
                    host: host.to_owned(),
                    addr: addr.ip(),
                    class,
                });
            }
        }
    }
    if !allowed.is_empty() {
        return Ok(allowed);
    }
    Err(first_refusal.unwrap_or_else(|| NetError::Dns {
        host: host.to_owned(),
        reason: "the name has no addresses".into(),
    }))
}

/// Where a new connection is going, as the connector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An IP literal: reqwest connects to it without asking the resolver.
    Literal {
        /// The host as it appears in the URI.
        host: String,
        /// The address.
        addr: IpAddr,
    },
    /// A host name: the resolver has checked its addresses.
    Name(String),
}

impl Target {
    /// Reads the destination out of the request reqwest hands its connector.
    ///
    /// reqwest 0.13 passes a sealed `Unnameable(Uri)` to connector layers and offers no
    /// accessor, but derives `Debug`, which prints `Unnameable(<uri>)`. Reading that is the
    /// only way to see the destination from a layer. Anything that does not read back as a URI
    /// with a host is refused, so a change in that format closes every connection (and the
    /// tests fail) rather than opening any.
    pub(crate) fn from_connector_request(request: &impl Debug) -> Result<Self, NetError> {
        let text = format!("{request:?}");
        let uri = text
            .strip_prefix("Unnameable(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|inner| inner.parse::<http::Uri>().ok())
            .ok_or_else(|| NetError::Unverified {
                reason: "the destination of a new connection could not be read".into(),
            })?;
        let host = uri.host().ok_or_else(|| NetError::Unverified {
            reason: "a new connection has no destination host".into(),
        })?;
        Ok(Self::from_host(host))
    }

    /// Sorts a URI host into literal or name, the way hyper-util's connector does: a bracketed
    /// IPv6 address or a dotted-quad IPv4 address is connected to directly.
    pub(crate) fn from_host(host: &str) -> Self {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(addr) => Target::Literal {
                host: host.to_owned(),
                addr,
            },
            Err(_) => Target::Name(host.to_ascii_lowercase()),
        }
    }

    /// The check made before connecting: literals are judged here; names were judged by the
    /// resolver.
    pub(crate) fn check_before_connect(&self, destinations: &Destinations) -> Result<(), NetError> {
        match self {
            Target::Literal { host, addr } => {
                destinations
                    .check_ip(*addr)
                    .map_err(|class| NetError::Blocked {
                        host: host.clone(),
                        addr: *addr,
                        class,
                    })
            }
            Target::Name(_) => Ok(()),
        }
    }

    /// The check made once connected, on the peer address the socket reports.
    pub(crate) fn check_peer(
        &self,
        destinations: &Destinations,
        peer: Option<SocketAddr>,
    ) -> Result<(), NetError> {
        let Some(peer) = peer else {
            return Err(NetError::Unverified {
                reason: "the address of a new connection could not be read".into(),
            });
        };
        let (host, verdict) = match self {
            Target::Literal { host, .. } => (host, destinations.check_ip(peer.ip())),
            Target::Name(name) => (name, destinations.check_resolved(name, peer.ip())),
        };
        verdict.map_err(|class| NetError::Blocked {
            host: host.clone(),
            addr: peer.ip(),
            class,
        })
    }
}

/// A tower layer around reqwest's connector that refuses connections to disallowed addresses.
#[derive(Debug, Clone)]
pub(crate) struct GuardLayer {
    pub(crate) destinations: Arc<Destinations>,
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            destinations: self.destinations.clone(),
        }
    }
}

/// The service [`GuardLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    destinations: Arc<Destinations>,
}

impl<S, R> Service<R> for Guard<S>
where
    R: Debug,
    S: Service<R>,
    S::Response: Connection + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let target = match Target::from_connector_request(&request)
            .and_then(|t| t.check_before_connect(&self.destinations).map(|()| t))
        {
            Ok(target) => target,
            Err(refusal) => {
                log_refusal(&refusal);
                return Box::pin(std::future::ready(Err(refusal.into())));
            }
        };
        let connecting = self.inner.call(request);
        let destinations = self.destinations.clone();
        Box::pin(async move {
            let conn = connecting.await.map_err(Into::into)?;
            let mut extras = Extensions::new();
            conn.connected().get_extras(&mut extras);
            let peer = extras.get::<HttpInfo>().map(HttpInfo::remote_addr);
            if let Err(refusal) = target.check_peer(&destinations, peer) {
                log_refusal(&refusal);
                // Dropping `conn` closes the socket before a byte of the request is written.
                return Err(refusal.into());
            }
            Ok(conn)
        })
    }
}

fn log_refusal(refusal: &NetError) {
    tracing::warn!(error = %refusal, "refused an outbound connection");
}

/// What to do with one redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Follow it.
    Follow,
    /// Do not follow it; hand the redirect response to the caller.
    Stop,
    /// Fail the request.
    Refuse(NetError),
}

/// Decides one redirect: `status` pointing at `next`, after the URLs in `previous` (the first
/// of which is the one originally requested).
pub(crate) fn judge_redirect(
    destinations: &Destinations,
    mode: Redirects,
    max_redirects: usize,
    status: http::StatusCode,
    next: &Url,
    previous: &[Url],
) -> Verdict {
    match mode {
        Redirects::Never => return Verdict::Stop,
        Redirects::SameOrigin => {
            // Only 307 and 308 keep the method and the body, and only the same origin may see
            // the headers the caller added (an MCP session id, an API key): anything else is
            // the caller's to handle, as rmcp's own default client does.
            let keeps_body = matches!(
                status,
                http::StatusCode::TEMPORARY_REDIRECT | http::StatusCode::PERMANENT_REDIRECT
            );
            let same_origin = previous
                .first()
                .is_some_and(|u| u.origin() == next.origin());
            if !keeps_body || !same_origin {
                return Verdict::Stop;
            }
        }
        Redirects::Any => {}
    }
    if previous.len() > max_redirects {
        return Verdict::Refuse(NetError::Redirect {
            reason: format!("more than {max_redirects} redirects"),
        });
    }
    if !matches!(next.scheme(), "http" | "https") {
        return Verdict::Refuse(NetError::Redirect {
            reason: format!("a redirect to a {} URL", next.scheme()),
        });
    }
    if next.scheme() == "http" && previous.last().is_some_and(|u| u.scheme() == "https") {
        return Verdict::Refuse(NetError::Redirect {
            reason: format!(
                "a redirect from https down to plain http ({})",
                next.host_str().unwrap_or("no host")
            ),
        });
    }
    let Some(host) = next.host_str() else {
        return Verdict::Refuse(NetError::Redirect {
            reason: "a redirect to a URL without a host".into(),
        });
    };
    if let Err(refusal) = Target::from_host(host).check_before_connect(destinations) {
        return Verdict::Refuse(refusal);
    }
    Verdict::Follow
}

/// The reqwest redirect policy that applies [`judge_redirect`] to every hop.
pub(crate) fn redirect_policy(
    destinations: Arc<Destinations>,
    mode: Redirects,
    max_redirects: usize,
) -> Policy {
    if mode == Redirects::Never {
        return Policy::none();
    }
    Policy::custom(move |attempt: Attempt<'_>| {
        let verdict = judge_redirect(
            &destinations,
            mode,
            max_redirects,
            attempt.status(),
            attempt.url(),
            attempt.previous(),
        );
        match verdict {
            Verdict::Follow => attempt.follow(),
            Verdict::Stop => attempt.stop(),
            Verdict::Refuse(refusal) => {
                log_refusal(&refusal);
                attempt.error(refusal)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::classify::Blocked;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Mirrors reqwest's sealed connector request, whose derived `Debug` the guard reads.
    #[derive(Debug)]
    struct Unnameable(http::Uri);

    /// A connector that records what it was asked to connect to and never opens a socket.
    #[derive(Clone, Default)]
    struct Recorder {
        calls: Arc<Mutex<Vec<String>>>,
    }

    /// A connection that cannot report its peer. `HttpInfo` has no public constructor, so a
    /// fake cannot; the post-connect check must then refuse, which the tests rely on. The peer
    /// check itself is tested on `Target::check_peer`.
    struct FakeConn;

    impl Connection for FakeConn {
        fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
            hyper_util::client::legacy::connect::Connected::new()
        }
    }

    impl Service<Unnameable> for Recorder {
        type Response = FakeConn;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<FakeConn, BoxError>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Unnameable) -> Self::Future {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(req.0.to_string());
            }
            Box::pin(std::future::ready(Ok(FakeConn)))
        }
    }

    fn connect(destinations: Destinations, uri: &str) -> (Result<(), NetError>, Vec<String>) {
        let recorder = Recorder::default();
        let mut guard = GuardLayer {
            destinations: Arc::new(destinations),
        }
        .layer(recorder.clone());
        let request = Unnameable(uri.parse().unwrap_or_else(|e| panic!("{uri}: {e}")));
        let result = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(guard.call(request))
            .map(|_| ())
            .map_err(|e| NetError::find_in(&*e).expect("a NetError"));
        let calls = recorder.calls.lock().map(|c| c.clone()).unwrap_or_default();
        (result, calls)
    }

    #[test]
    fn literal_addresses_never_reach_the_connector() {
        let cases = [
            ("http://169.254.169.254/", Blocked::LinkLocal),
            ("http://169.254.169.254:80/", Blocked::LinkLocal),
            ("https://10.0.0.1/", Blocked::Private),
            ("http://172.16.0.1/", Blocked::Private),
            ("http://192.168.1.1:8080/", Blocked::Private),
            ("http://100.64.0.1/", Blocked::SharedAddress),
            ("http://[fd00::1]/", Blocked::UniqueLocal),
            ("http://[fe80::1]/", Blocked::LinkLocal),
            ("http://224.0.0.1/", Blocked::Multicast),
            ("http://[ff02::1]/", Blocked::Multicast),
            ("http://0.0.0.0/", Blocked::Unspecified),
            ("http://[::]/", Blocked::Unspecified),
            ("http://255.255.255.255/", Blocked::Broadcast),
            ("http://127.0.0.1/", Blocked::Loopback),
            ("http://[::1]/", Blocked::Loopback),
            ("http://[::ffff:7f00:1]/", Blocked::Loopback),
            ("http://[::ffff:a9fe:a9fe]/", Blocked::LinkLocal),
            ("http://[64:ff9b::a9fe:a9fe]/", Blocked::LinkLocal),
            ("http://[2002:a00:1::1]/", Blocked::Private),
            ("http://[2001::1]/", Blocked::Teredo),
            ("http://192.0.2.1/", Blocked::Documentation),
            ("http://240.0.0.1/", Blocked::Reserved),
        ];
        for (uri, class) in cases {
            let (result, calls) = connect(Destinations::public_only(), uri);
            match result {
                Err(NetError::Blocked { class: got, .. }) => assert_eq!(got, class, "{uri}"),
                other => panic!("{uri}: expected a refusal, got {other:?}"),
            }
            assert!(calls.is_empty(), "{uri} reached the connector: {calls:?}");
        }
    }

    #[test]
    fn allowed_literals_and_names_reach_the_connector_and_are_checked_after() {
        // The fake connection cannot report its peer, so the post-connect check refuses it:
        // the request did reach the connector, and an unreadable peer is never trusted.
        let allowed = Destinations::public_only().with_loopback(true);
        for uri in ["http://127.0.0.1:8080/", "http://example.org/"] {
            let (result, calls) = connect(allowed.clone(), uri);
            assert_eq!(calls.len(), 1, "{uri}");
            assert!(
                matches!(result, Err(NetError::Unverified { .. })),
                "{uri}: {result:?}"
            );
        }
    }

    #[test]
    fn an_unreadable_destination_is_refused() {
        #[derive(Debug)]
        struct Other;
        let err = Target::from_connector_request(&Other).unwrap_err();
        assert!(matches!(err, NetError::Unverified { .. }));
        let err =
            Target::from_connector_request(&Unnameable("/no/host".parse().unwrap())).unwrap_err();
        assert!(matches!(err, NetError::Unverified { .. }));
    }

    #[test]
    fn targets_are_read_like_the_connector_reads_them() {
        let t = Target::from_connector_request(&Unnameable("http://[::1]:9/".parse().unwrap()))
            .unwrap();
        assert_eq!(
            t,
            Target::Literal {
                host: "[::1]".into(),
                addr: ip("::1")
            }
        );
        assert_eq!(
            Target::from_host("Example.ORG"),
            Target::Name("example.org".into())
        );
        assert_eq!(
            Target::from_host("10.0.0.1"),
            Target::Literal {
                host: "10.0.0.1".into(),
                addr: ip("10.0.0.1")
            }
        );
    }

    #[test]
    fn peer_check() {
        let d = Destinations::from_config(false, ["mcp.internal"]).unwrap();
        let peer = |s: &str| Some(SocketAddr::new(ip(s), 443));
        let name = Target::Name("mcp.internal".into());
        assert_eq!(name.check_peer(&d, peer("10.0.0.5")), Ok(()));
        let other = Target::Name("example.org".into());
        assert!(matches!(
            other.check_peer(&d, peer("10.0.0.5")),
            Err(NetError::Blocked {
                class: Blocked::Private,
                ..
            })
        ));
        assert_eq!(other.check_peer(&d, peer("93.184.216.34")), Ok(()));
        assert!(matches!(
            other.check_peer(&d, None),
            Err(NetError::Unverified { .. })
        ));
    }

    #[test]
    fn resolved_addresses_are_filtered() {
        let sock = |s: &str| SocketAddr::new(ip(s), 0);
        let d = Destinations::public_only();
        let mixed = [sock("10.0.0.1"), sock("93.184.216.34")];
        assert_eq!(
            filter_resolved(&d, "mixed.example", &mixed),
            Ok(vec![sock("93.184.216.34")])
        );
        let private = [sock("127.0.0.1"), sock("::1")];
        assert_eq!(
            filter_resolved(&d, "localhost", &private),
            Err(NetError::Blocked {
                host: "localhost".into(),
                addr: ip("127.0.0.1"),
                class: Blocked::Loopback
            })
        );
        assert!(matches!(
            filter_resolved(&d, "empty.example", &[]),
            Err(NetError::Dns { .. })
        ));
        let vouched = Destinations::from_config(false, ["mcp.internal"]).unwrap();
        assert_eq!(
            filter_resolved(&vouched, "mcp.internal", &[sock("10.0.0.1")]),
            Ok(vec![sock("10.0.0.1")])
        );
    }

    #[test]
    fn redirects_are_judged_hop_by_hop() {
        use http::StatusCode as S;
        let d = Destinations::from_config(false, ["127.0.0.1/32"]).unwrap();
        let start = [url("http://127.0.0.1:8080/a")];
        let judge = |mode, status, next: &str, previous: &[Url]| {
            judge_redirect(&d, mode, 3, status, &url(next), previous)
        };
        let refused_class = |v: Verdict| match v {
            Verdict::Refuse(NetError::Blocked { class, .. }) => Some(class),
            _ => None,
        };

        // Any: every hop re-checked.
        assert_eq!(
            judge(Redirects::Any, S::FOUND, "http://127.0.0.1:8080/b", &start),
            Verdict::Follow
        );
        assert_eq!(
            judge(Redirects::Any, S::FOUND, "https://example.org/", &start),
            Verdict::Follow
        );
        assert_eq!(
            refused_class(judge(
                Redirects::Any,
                S::FOUND,
                "http://169.254.169.254/latest/meta-data/",
                &start
            )),
            Some(Blocked::LinkLocal)
        );
        assert_eq!(
            refused_class(judge(
                Redirects::Any,
                S::FOUND,
                "http://127.0.0.2:9/",
                &start
            )),
            Some(Blocked::Loopback)
        );
        assert_eq!(
            refused_class(judge(
                Redirects::Any,
                S::FOUND,
                "http://[::ffff:10.0.0.1]/",
                &start
            )),
            Some(Blocked::Private)
        );
        assert_eq!(
            refused_class(judge(
                Redirects::Any,
                S::FOUND,
                "http://2130706434/",
                &start
            )),
            Some(Blocked::Loopback),
            "127.0.0.2 in decimal"
        );
        assert!(matches!(
            judge(Redirects::Any, S::FOUND, "file:///etc/passwd", &start),
            Verdict::Refuse(NetError::Redirect { .. })
        ));
        assert!(matches!(
            judge(
                Redirects::Any,
                S::FOUND,
                "http://example.org/",
                &[url("https://example.org/")]
            ),
            Verdict::Refuse(NetError::Redirect { .. })
        ));
        let long: Vec<Url> = (0..4)
            .map(|i| url(&format!("http://127.0.0.1:8080/{i}")))
            .collect();
        assert!(matches!(
            judge(Redirects::Any, S::FOUND, "http://127.0.0.1:8080/x", &long),
            Verdict::Refuse(NetError::Redirect { .. })
        ));
        assert_eq!(
            judge(
                Redirects::Any,
                S::FOUND,
                "http://127.0.0.1:8080/x",
                &long[..3]
            ),
            Verdict::Follow
        );

        // SameOrigin: only 307/308 to the same origin; the rest goes back to the caller.
        assert_eq!(
            judge(
                Redirects::SameOrigin,
                S::TEMPORARY_REDIRECT,
                "http://127.0.0.1:8080/b",
                &start
            ),
            Verdict::Follow
        );
        assert_eq!(
            judge(
                Redirects::SameOrigin,
                S::FOUND,
                "http://127.0.0.1:8080/b",
                &start
            ),
            Verdict::Stop
        );
        assert_eq!(
            judge(
                Redirects::SameOrigin,
                S::PERMANENT_REDIRECT,
                "http://169.254.169.254/",
                &start
            ),
            Verdict::Stop
        );

        // Never.
        assert_eq!(
            judge(
                Redirects::Never,
                S::TEMPORARY_REDIRECT,
                "http://127.0.0.1:8080/b",
                &start
            ),
            Verdict::Stop
        );
    }
}
