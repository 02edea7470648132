//! The committed OpenAPI document matches the one the code generates, and the routes the
//! router mounts.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::TestServer;

#[test]
fn committed_openapi_document_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let generated = switchboard_server::openapi_json() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is out of date; regenerate it with `UPDATE_OPENAPI=1 cargo test -p switchboard-server --test it openapi`"
    );
}

#[test]
fn every_operation_documents_its_answers() {
    let doc: serde_json::Value = serde_json::from_str(&switchboard_server::openapi_json()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            assert!(
                op["summary"].is_string() || op["description"].is_string(),
                "{method} {path} has no description"
            );
        }
    }
}

/// Every route mounted under `/api/v1` is in the OpenAPI document, with each method it answers,
/// and every documented operation there is mounted: a handler left out of utoipa's `paths(...)`
/// (or documented but never routed) fails here.
///
/// Axum cannot list a router's routes, so the paths come from the list the router is built
/// from ([`switchboard_server::mounted_api_paths`]), and the methods from asking the running
/// server: a method a route does not take is answered 405 before any handler runs.
#[tokio::test]
async fn every_mounted_api_route_is_documented() {
    let doc: Value = serde_json::from_str(&switchboard_server::openapi_json()).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/api/v1/"))
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect();

    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let mut mounted = BTreeSet::new();
    for path in switchboard_server::mounted_api_paths() {
        // The document does not describe itself.
        if path == "/api/v1/openapi.json" {
            continue;
        }
        let url = format!("{}{}", server.base, with_placeholders(&path));
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            // Unauthenticated, so nothing changes; only whether the route takes the method
            // matters.
            let status = http
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap()
                .status();
            if status != StatusCode::METHOD_NOT_ALLOWED {
                mounted.insert((method.to_string(), path.clone()));
            }
        }
    }
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "mounted but not in the OpenAPI document (add the handler to `paths(...)` in openapi.rs): {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        unrouted.is_empty(),
        "in the OpenAPI document but not mounted: {unrouted:?}"
    );
    server.stop().await;
}

/// A route template with each `{parameter}` replaced by a value; any value reaches the route.
fn with_placeholders(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
