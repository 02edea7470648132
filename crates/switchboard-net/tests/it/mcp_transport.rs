//! The guarded `reqwest::Client` handed to rmcp's streamable-HTTP transport, as the connector
//! engine will hand it.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{ClientJsonRpcMessage, ClientRequest, PingRequest, RequestId};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
};
use switchboard_net::{Blocked, Destinations, NetError};

use crate::support::{Server, assert_blocked, client, only_127_0_0_1};

fn ping() -> ClientJsonRpcMessage {
    ClientJsonRpcMessage::request(
        ClientRequest::PingRequest(PingRequest::default()),
        RequestId::Number(1),
    )
}

/// rmcp wraps reqwest's error in `StreamableHttpError::Client` without a `source`, so the
/// engine unwraps that variant and converts the reqwest error.
fn refusal(err: StreamableHttpError<reqwest::Error>) -> NetError {
    match err {
        StreamableHttpError::Client(e) => NetError::from(e),
        other => panic!("expected a client error, got {other:?}"),
    }
}

#[tokio::test]
async fn rmcp_posts_are_held_to_the_checks() {
    let server = Server::start([127, 0, 0, 1]).await;
    let forbidden = Server::start([127, 0, 0, 2]).await;
    let http: reqwest::Client = client(Destinations::public_only()).client().clone();
    for uri in [
        format!("http://127.0.0.1:{}/mcp", server.port()),
        format!("http://2130706433:{}/mcp", server.port()),
        format!("http://[::ffff:127.0.0.1]:{}/mcp", server.port()),
        format!("http://localhost:{}/mcp", server.port()),
    ] {
        let err = http
            .post_message(Arc::from(uri.as_str()), ping(), None, None, HashMap::new())
            .await
            .expect_err("refused");
        assert_blocked(&refusal(err), Blocked::Loopback, &uri);
    }
    assert_eq!(server.hits(), 0);

    // A client that follows redirects anywhere allowed: 127.0.0.1 is allowed and answers with
    // a 307 to 127.0.0.2, which is not.
    let http: reqwest::Client = crate::support::following(only_127_0_0_1()).client().clone();
    let to = format!("http://127.0.0.2:{}/mcp", forbidden.port());
    let uri = server.redirect_to(&to, 307);
    let err = http
        .post_message(Arc::from(uri.as_str()), ping(), None, None, HashMap::new())
        .await
        .expect_err("refused");
    assert_blocked(&refusal(err), Blocked::Loopback, &to);
    assert_eq!(forbidden.hits(), 0);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn the_client_is_the_type_the_transport_takes() {
    let safe = client(only_127_0_0_1());
    let config = StreamableHttpClientTransportConfig::with_uri("http://127.0.0.1:9/mcp");
    let _transport = StreamableHttpClientTransport::with_client(safe.client().clone(), config);
}
