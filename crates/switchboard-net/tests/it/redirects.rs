//! Redirects: every hop is checked again, and the refused target never sees a request.

use switchboard_net::{Blocked, ClientOptions, NetError, Redirects, SafeClient};

use crate::support::{Server, assert_blocked, client, following, only_127_0_0_1};

#[tokio::test]
async fn a_redirect_to_a_refused_loopback_address_never_reaches_it() {
    let allowed = Server::start([127, 0, 0, 1]).await;
    let forbidden = Server::start([127, 0, 0, 2]).await;
    let safe = following(only_127_0_0_1());
    let port = forbidden.port();
    let targets = [
        format!("http://127.0.0.2:{port}/ok"),
        format!("http://2130706434:{port}/ok"),
        format!("http://0177.0.0.2:{port}/ok"),
        format!("http://[::ffff:127.0.0.2]:{port}/ok"),
        format!("http://[::1]:{port}/ok"),
    ];
    for to in &targets {
        for status in [301, 302, 303, 307, 308] {
            let url = allowed.redirect_to(to, status);
            let err = safe.get_json::<serde_json::Value>(&url).await.unwrap_err();
            assert_blocked(&err, Blocked::Loopback, to);
            let err = safe.client().get(url).send().await.unwrap_err();
            assert_blocked(&NetError::from(err), Blocked::Loopback, to);
        }
    }
    assert_eq!(
        forbidden.hits(),
        0,
        "the refused server must never be asked"
    );
    assert_eq!(allowed.hits(), targets.len() * 5 * 2);
}

#[tokio::test]
async fn a_redirect_to_a_name_resolving_to_a_refused_address_is_refused() {
    // Loopback is allowed only as 127.0.0.2, so the first server is reached by address and
    // the name `localhost` (127.0.0.1 in /etc/hosts) is refused once resolved.
    let server = Server::start([127, 0, 0, 2]).await;
    let target = Server::start([127, 0, 0, 1]).await;
    let safe = following(
        switchboard_net::Destinations::from_config(false, ["127.0.0.2"]).expect("allowlist"),
    );
    let to = format!("http://localhost:{}/ok", target.port());
    let err = safe
        .get_json::<serde_json::Value>(&server.redirect_to(&to, 302))
        .await
        .unwrap_err();
    assert_blocked(&err, Blocked::Loopback, &to);
    assert_eq!(target.hits(), 0);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn an_allowed_redirect_is_followed() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = following(only_127_0_0_1());
    let to = server.url("/json").to_string();
    let answer: serde_json::Value = safe
        .get_json(&server.redirect_to(&to, 302))
        .await
        .expect("json");
    assert_eq!(answer["hello"], "world");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn redirect_loops_stop_at_the_hop_limit() {
    let server = Server::start([127, 0, 0, 1]).await;
    let options = ClientOptions {
        max_redirects: 3,
        ..ClientOptions::default()
    };
    // `/loop` answers 307 to itself: same origin, so even the default mode follows it.
    let safe = SafeClient::new(only_127_0_0_1(), options).expect("client");
    let err = safe
        .get_json::<serde_json::Value>(&server.url("/loop"))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Redirect { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(server.hits(), 4, "the first request and three redirects");
}

#[tokio::test]
async fn the_default_mode_follows_only_same_origin_307_and_308() {
    let server = Server::start([127, 0, 0, 1]).await;
    let other = Server::start([127, 0, 0, 1]).await;
    let safe = client(switchboard_net::Destinations::public_only().with_loopback(true));
    assert_eq!(safe.options().redirects, Redirects::SameOrigin);
    let same = server.url("/json").to_string();
    for status in [307, 308] {
        let answer: serde_json::Value = safe
            .get_json(&server.redirect_to(&same, status))
            .await
            .expect("json");
        assert_eq!(answer["hello"], "world");
    }
    // A 302 keeps nothing of a POST, and another origin (another port here) would get the
    // caller's headers: neither is followed; the redirect comes back to the caller.
    let cross = other.url("/json").to_string();
    for (to, status) in [(&same, 302), (&cross, 307)] {
        let url = server.redirect_to(to, status);
        let response = safe.client().get(url.clone()).send().await.expect("answer");
        assert_eq!(response.status().as_u16(), status);
        let err = safe.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert!(matches!(err, NetError::Redirect { .. }), "{err:?}");
    }
    assert_eq!(other.hits(), 0);
}

#[tokio::test]
async fn never_mode_follows_nothing() {
    let server = Server::start([127, 0, 0, 1]).await;
    let options = ClientOptions {
        redirects: Redirects::Never,
        ..ClientOptions::default()
    };
    let safe = SafeClient::new(only_127_0_0_1(), options).expect("client");
    let url = server.redirect_to(server.url("/json").as_str(), 307);
    let response = safe.client().get(url).send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 307);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = following(only_127_0_0_1());
    for to in ["file:///etc/passwd", "ftp://127.0.0.1/x"] {
        let err = safe
            .get_json::<serde_json::Value>(&server.redirect_to(to, 302))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Redirect { .. }), "{to}: {err:?}");
    }
}
