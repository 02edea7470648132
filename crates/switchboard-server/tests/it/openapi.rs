//! The committed OpenAPI document matches the one the code generates.

use std::path::PathBuf;

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
