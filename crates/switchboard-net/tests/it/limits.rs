//! Body size limit and timeouts. Durations are set small and never asserted on: the tests look
//! at the kind of error only.

use std::time::Duration;

use switchboard_net::{ClientOptions, NetError, SafeClient, read_limited};

use crate::support::{BIG, Server, only_127_0_0_1};

fn with(options: ClientOptions) -> SafeClient {
    SafeClient::new(only_127_0_0_1(), options).expect("client")
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = with(ClientOptions {
        max_body_bytes: 1024,
        ..ClientOptions::default()
    });
    // `/big` declares its length; `/chunked` does not, so the limit trips while reading.
    for path in ["/big", "/chunked"] {
        let err = safe
            .get_json::<serde_json::Value>(&server.url(path))
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::TooLarge { limit: 1024, .. }),
            "{path}: {err:?}"
        );
        assert!(!err.is_retryable());
        let response = safe
            .client()
            .get(server.url(path))
            .send()
            .await
            .expect("answer");
        let err = read_limited(response, 1024).await.unwrap_err();
        assert!(matches!(err, NetError::TooLarge { .. }), "{path}: {err:?}");
    }
    // At the limit exactly, the body is read whole.
    for path in ["/big", "/chunked"] {
        let response = safe
            .client()
            .get(server.url(path))
            .send()
            .await
            .expect("answer");
        let body = read_limited(response, BIG).await.expect("body");
        assert_eq!(body.len(), BIG, "{path}");
    }
    let small: serde_json::Value = safe.get_json(&server.url("/json")).await.expect("json");
    assert_eq!(small["hello"], "world");
}

#[tokio::test]
async fn the_total_timeout_covers_a_stalled_answer_and_a_stalled_body() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = with(ClientOptions {
        total_timeout: Some(Duration::from_millis(300)),
        ..ClientOptions::default()
    });
    for path in ["/stall", "/stall-body"] {
        let err = safe
            .get_json::<serde_json::Value>(&server.url(path))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Timeout { .. }), "{path}: {err:?}");
        assert!(err.is_retryable());
    }
    // The raw client carries the same timeout.
    let err = safe
        .client()
        .get(server.url("/stall"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(NetError::from(err), NetError::Timeout { .. }));
}

#[tokio::test]
async fn the_idle_timeout_bounds_a_stream_without_a_total_timeout() {
    let server = Server::start([127, 0, 0, 1]).await;
    let safe = with(ClientOptions {
        total_timeout: None,
        idle_timeout: Some(Duration::from_millis(300)),
        ..ClientOptions::default()
    });
    let response = safe
        .client()
        .get(server.url("/stall-body"))
        .send()
        .await
        .expect("headers arrive");
    let err = read_limited(response, 1024).await.unwrap_err();
    assert!(matches!(err, NetError::Timeout { .. }), "{err:?}");
}
