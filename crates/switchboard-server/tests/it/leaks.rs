//! Secrets never reach a log, an API answer or the database in plaintext.

use reqwest::Method;
use serde_json::json;

use crate::support::{OWNER_PASSWORD, TestServer, captured_logs};

#[tokio::test]
async fn no_secret_in_logs_answers_or_database() {
    let server = TestServer::start().await;
    let (owner, org, setup_token) = server.setup_with_token("acme").await;
    // The API token the sign-in answered with, which every request below carries.
    let login_token = owner.token().expect("a signed-in client").to_owned();
    let org = org["id"].as_str().unwrap();
    let mut answers = String::new();

    let issued = owner
        .ok(
            Method::POST,
            "/api/v1/me/tokens",
            Some(json!({"name": "leaktest"})),
        )
        .await;
    let token_secret = issued["secret"].as_str().unwrap().to_owned();
    let bearer = "bearer-credential-5f1c2e";
    let basic_password = "basic-password-8d0a77";
    let header_value = "header-value-c93b41";
    for (name, credential) in [
        ("Bearer", json!({"kind": "bearer", "token": bearer})),
        (
            "Basic",
            json!({"kind": "basic", "username": "svc", "password": basic_password}),
        ),
        (
            "Headers",
            json!({"kind": "headers", "headers": {"X-Api-Key": header_value}}),
        ),
    ] {
        let created = owner
            .ok(
                Method::POST,
                &format!("/api/v1/orgs/{org}/connectors"),
                Some(json!({
                    "name": name, "url": "https://example.org/mcp", "credential": credential
                })),
            )
            .await;
        answers.push_str(&created.to_string());
        let id = created["id"].as_str().unwrap();
        answers.push_str(
            &owner
                .ok(Method::GET, &format!("/api/v1/connectors/{id}"), None)
                .await
                .to_string(),
        );
    }
    answers.push_str(
        &owner
            .ok(Method::GET, &format!("/api/v1/orgs/{org}/connectors"), None)
            .await
            .to_string(),
    );
    answers.push_str(
        &owner
            .ok(Method::GET, &format!("/api/v1/orgs/{org}/audit"), None)
            .await
            .to_string(),
    );
    answers.push_str(
        &owner
            .ok(Method::GET, "/api/v1/me/tokens", None)
            .await
            .to_string(),
    );
    // A failed sign-in with a password that is close to the real one.
    let _ = server
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"email": "owner@example.org", "password": "wrong-pw-6e1d"}),
        )
        .await;

    let dump = serde_json::to_string(&server.app.store().export().await.unwrap()).unwrap();
    let logs = captured_logs();
    assert!(logs.contains("request"), "trace logging was captured");
    for secret in [
        OWNER_PASSWORD,
        setup_token.as_str(),
        login_token.as_str(),
        token_secret.as_str(),
        bearer,
        basic_password,
        header_value,
        "wrong-pw-6e1d",
    ] {
        assert!(!logs.contains(secret), "a secret reached the log");
        assert!(!answers.contains(secret), "a secret reached an API answer");
        assert!(!dump.contains(secret), "a secret is stored in plaintext");
    }
    // The credentials are really there, sealed, and open again.
    let access = server
        .app
        .org_access(&actor(&server).await, org.parse().unwrap())
        .await
        .unwrap();
    let connectors = server
        .app
        .connectors(
            &access,
            switchboard_service::PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let bearer_id = connectors
        .items
        .iter()
        .find(|c| c.name.as_str() == "Bearer")
        .unwrap()
        .id;
    let opened = server
        .app
        .shared_credential(&access, bearer_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(opened, switchboard_service::CredentialInput::Bearer { token } if token == bearer)
    );
}

async fn actor(server: &TestServer) -> switchboard_service::Actor {
    let email = switchboard_domain::Email::parse("owner@example.org").unwrap();
    let (user, _) = server
        .app
        .store()
        .user_login(&email)
        .await
        .unwrap()
        .unwrap();
    switchboard_service::Actor {
        user,
        credential: switchboard_service::Credential::ApiToken,
    }
}
