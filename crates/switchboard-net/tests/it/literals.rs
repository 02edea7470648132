//! IP-literal URLs: loopback refused by default in every spelling, allowed when configured.

use switchboard_net::{Blocked, Destinations, NetError};
use url::Url;

use crate::support::{Server, assert_blocked, client, only_127_0_0_1};

/// Every way of writing a loopback address that reaches the network layer, for `port`.
fn loopback_spellings(port: u16) -> Vec<String> {
    [
        "http://127.0.0.1:{port}/ok",
        "http://2130706433:{port}/ok",
        "http://0x7f000001:{port}/ok",
        "http://0177.0.0.1:{port}/ok",
        "http://0x7f.0.0.1:{port}/ok",
        "http://127.1:{port}/ok",
        "http://127.0.1:{port}/ok",
        "http://017700000001:{port}/ok",
        "http://127.0.0.1.:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
        "http://[::ffff:7f00:1]:{port}/ok",
        "http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/ok",
        "http://[::1]:{port}/ok",
        "http://[0:0:0:0:0:0:0:1]:{port}/ok",
        "http://[::127.0.0.1]:{port}/ok",
        "http://[64:ff9b::127.0.0.1]:{port}/ok",
        "https://127.0.0.1:{port}/ok",
    ]
    .iter()
    .map(|s| s.replace("{port}", &port.to_string()))
    .collect()
}

#[tokio::test]
async fn the_url_parser_reduces_ipv4_spellings_to_dotted_quad() {
    // What reaches the network layer: the checks rely on reqwest's URL parser doing this.
    for (spelling, host) in [
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://127.0.0.1./", "127.0.0.1"),
        ("http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),
    ] {
        let url = Url::parse(spelling).expect("url");
        assert_eq!(url.host_str(), Some(host), "{spelling}");
    }
}

#[tokio::test]
async fn loopback_literals_are_refused_by_default_in_every_spelling() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = client(Destinations::public_only());
    for spelling in loopback_spellings(server.port()) {
        let url = Url::parse(&spelling).expect("url");
        // The pure check…
        assert_blocked(
            &safe.check_url(&url).unwrap_err(),
            Blocked::Loopback,
            &spelling,
        );
        // …the wrapper…
        let err = safe.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert_blocked(&err, Blocked::Loopback, &spelling);
        // …and the raw reqwest::Client, which is what rmcp is handed. The raw string goes to
        // reqwest unparsed by the test, as rmcp passes its configured URI.
        let err = safe
            .client()
            .get(spelling.as_str())
            .send()
            .await
            .unwrap_err();
        assert_blocked(&NetError::from(err), Blocked::Loopback, &spelling);
    }
    assert_eq!(server.hits(), 0, "no request may reach the server");
}

#[tokio::test]
async fn refusals_say_what_was_refused_in_plain_words() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = client(Destinations::public_only());
    let err = safe
        .client()
        .get(server.url("/ok?token=secret-value"))
        .send()
        .await
        .unwrap_err();
    let message = NetError::from(err).to_string();
    assert_eq!(
        message,
        "refusing to connect to 127.0.0.1: loopback address"
    );
    assert!(!message.contains("secret-value"));
}

#[tokio::test]
async fn an_allowlisted_address_is_reached() {
    let server = Server::start([127, 0, 0, 1]).await;
    for destinations in [
        only_127_0_0_1(),
        Destinations::public_only().with_loopback(true),
    ] {
        let safe = client(destinations.clone());
        let answer: serde_json::Value = safe.get_json(&server.url("/json")).await.expect("json");
        assert_eq!(answer["hello"], "world", "{destinations:?}");
        // The raw client gets through as well: its guard could read the connector's
        // destination and the connection's peer address (both fail closed otherwise).
        let text = safe
            .client()
            .get(server.url("/ok"))
            .send()
            .await
            .expect("answer")
            .text()
            .await
            .expect("body");
        assert_eq!(text, "ok");
        // The same server by its IPv4-mapped IPv6 name is the same address.
        let mapped = format!("http://[::ffff:127.0.0.1]:{}/ok", server.port());
        assert!(safe.check_url(&Url::parse(&mapped).expect("url")).is_ok());
    }
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn an_allowlist_for_one_loopback_address_does_not_open_the_others() {
    let server = Server::start([127, 0, 0, 2]).await;
    let safe = client(only_127_0_0_1());
    let err = safe
        .get_json::<serde_json::Value>(&server.url("/json"))
        .await
        .unwrap_err();
    assert_blocked(&err, Blocked::Loopback, "127.0.0.2");
    let err = safe
        .client()
        .get(server.url("/ok"))
        .send()
        .await
        .unwrap_err();
    assert_blocked(&NetError::from(err), Blocked::Loopback, "127.0.0.2");
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn post_form_sends_the_form_and_decodes_the_answer() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = client(only_127_0_0_1());
    let answer: std::collections::BTreeMap<String, String> = safe
        .post_form(
            &server.url("/form"),
            &[("grant_type", "client_credentials")],
        )
        .await
        .expect("answer");
    assert_eq!(answer["grant_type"], "client_credentials");
}

#[tokio::test]
async fn non_success_answers_are_status_errors() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = client(only_127_0_0_1());
    let err = safe
        .get_json::<serde_json::Value>(&server.url("/missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = safe
        .get_json::<serde_json::Value>(&server.url("/ok"))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn other_schemes_are_refused() {
    let safe = client(Destinations::public_only().with_loopback(true));
    for url in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/",
        "gopher://127.0.0.1:70/",
    ] {
        let err = safe.check_url(&Url::parse(url).expect("url")).unwrap_err();
        assert!(matches!(err, NetError::Scheme { .. }), "{url}: {err:?}");
        let err = safe
            .get_json::<serde_json::Value>(&Url::parse(url).expect("url"))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Scheme { .. }), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn a_refused_port_is_a_retryable_connect_error() {
    // Bind, note the port, close: nothing listens there any more.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let safe = client(only_127_0_0_1());
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
    let err = safe.get_json::<serde_json::Value>(&url).await.unwrap_err();
    assert!(matches!(err, NetError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}
