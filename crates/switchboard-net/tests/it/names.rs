//! Host names: judged by the addresses they resolve to.

use switchboard_net::{Blocked, Destinations, NetError};
use url::Url;

use crate::support::{Server, assert_blocked, client};

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = client(Destinations::public_only());
    let url = Url::parse(&format!("http://localhost:{}/ok", server.port())).expect("url");
    // A name cannot be judged before it resolves.
    assert!(safe.check_url(&url).is_ok());
    let err = safe.get_json::<serde_json::Value>(&url).await.unwrap_err();
    assert_blocked(&err, Blocked::Loopback, "localhost");
    assert!(
        err.to_string().contains("(the address of localhost)"),
        "the message names the host: {err}"
    );
    assert!(!err.is_retryable());
    let err = safe.client().get(url.clone()).send().await.unwrap_err();
    assert_blocked(&NetError::from(err), Blocked::Loopback, "localhost");
    // Only names in /etc/hosts are used: any other would send a DNS query off this machine.
    let upper = format!("http://LOCALHOST:{}/ok", server.port());
    let err = safe.client().get(upper.as_str()).send().await.unwrap_err();
    assert_blocked(&NetError::from(err), Blocked::Loopback, &upper);
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn a_name_is_reached_when_its_addresses_are_allowed() {
    let server = Server::start([127, 0, 0, 1]).await;
    let url = Url::parse(&format!("http://localhost:{}/json", server.port())).expect("url");
    for destinations in [
        Destinations::public_only().with_loopback(true),
        // The operator vouches for the name itself.
        Destinations::from_config(false, ["localhost"]).expect("allowlist"),
    ] {
        let safe = client(destinations);
        let answer: serde_json::Value = safe.get_json(&url).await.expect("json");
        assert_eq!(answer["hello"], "world");
    }
    assert_eq!(server.hits(), 2);
}
