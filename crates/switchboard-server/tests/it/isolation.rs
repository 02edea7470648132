//! The isolation matrix: for every organization- or connector-scoped endpoint, an outsider
//! sees nothing and changes nothing, a member is refused what only admins may do, and an admin
//! succeeds. The matrix is checked against the OpenAPI document, so a new endpoint without a
//! row fails this test.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_store::Snapshot;
use switchboard_testkit::{BASIC_SERVER, PyTransport, PythonServer};

use crate::support::{Client, TestServer, add_member};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Needs {
    Member,
    Admin,
}

struct Row {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    needs: Needs,
    /// What a caller who may use the endpoint gets, when not a success: the world's connector
    /// is open (no OAuth, no per-member credentials), so some requests are refused for what
    /// they ask, after the permission check passed.
    allowed: Option<StatusCode>,
}

fn row(method: Method, path: &'static str, body: Option<Value>, needs: Needs) -> Row {
    Row {
        method,
        path,
        body,
        needs,
        allowed: None,
    }
}

fn row_refused(
    method: Method,
    path: &'static str,
    body: Option<Value>,
    needs: Needs,
    allowed: StatusCode,
) -> Row {
    Row {
        allowed: Some(allowed),
        ..row(method, path, body, needs)
    }
}

fn matrix() -> Vec<Row> {
    use Needs::*;
    vec![
        row(Method::GET, "/api/v1/orgs/{org_id}", None, Member),
        row(
            Method::PATCH,
            "/api/v1/orgs/{org_id}",
            Some(json!({"name": "Renamed"})),
            Admin,
        ),
        row(Method::GET, "/api/v1/orgs/{org_id}/members", None, Member),
        row(
            Method::POST,
            "/api/v1/orgs/{org_id}/members",
            Some(
                json!({"email": "new@example.org", "role": "member", "password": "a long password"}),
            ),
            Admin,
        ),
        row(
            Method::PATCH,
            "/api/v1/orgs/{org_id}/members/{user_id}",
            Some(json!({"role": "admin"})),
            Admin,
        ),
        row(
            Method::DELETE,
            "/api/v1/orgs/{org_id}/members/{user_id}",
            None,
            Admin,
        ),
        row(
            Method::GET,
            "/api/v1/orgs/{org_id}/connectors",
            None,
            Member,
        ),
        row(
            Method::POST,
            "/api/v1/orgs/{org_id}/connectors",
            Some(json!({"name": "Fresh", "url": "https://example.org/mcp"})),
            Admin,
        ),
        row(Method::GET, "/api/v1/orgs/{org_id}/audit", None, Admin),
        row(
            Method::GET,
            "/api/v1/orgs/{org_id}/chat-model",
            None,
            Member,
        ),
        row(
            Method::PUT,
            "/api/v1/orgs/{org_id}/chat-model",
            Some(
                json!({"kind": "openai", "base_url": "https://api.example.org/v1", "model": "m", "api_key": "k"}),
            ),
            Admin,
        ),
        row(
            Method::DELETE,
            "/api/v1/orgs/{org_id}/chat-model",
            None,
            Admin,
        ),
        row(
            Method::GET,
            "/api/v1/orgs/{org_id}/conversations",
            None,
            Member,
        ),
        row(
            Method::POST,
            "/api/v1/orgs/{org_id}/conversations",
            Some(json!({"title": "Mine", "connectors": ["{connector_id}"]})),
            Member,
        ),
        row(
            Method::GET,
            "/api/v1/orgs/{org_id}/audit/export",
            None,
            Admin,
        ),
        row(
            Method::POST,
            "/api/v1/orgs/{org_id}/probe",
            Some(json!({"url": "{upstream}"})),
            Admin,
        ),
        row(
            Method::GET,
            "/api/v1/connectors/{connector_id}",
            None,
            Member,
        ),
        row(
            Method::PATCH,
            "/api/v1/connectors/{connector_id}",
            Some(json!({"description": "changed"})),
            Admin,
        ),
        row(
            Method::DELETE,
            "/api/v1/connectors/{connector_id}",
            None,
            Admin,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/enable",
            None,
            Admin,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/disable",
            None,
            Admin,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/validate",
            None,
            Admin,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/refresh",
            None,
            Admin,
        ),
        row(
            Method::GET,
            "/api/v1/connectors/{connector_id}/functions",
            None,
            Member,
        ),
        row(
            Method::PUT,
            "/api/v1/connectors/{connector_id}/functions/{name}/floor",
            Some(json!({"floor": "ask"})),
            Admin,
        ),
        row(
            Method::PUT,
            "/api/v1/connectors/{connector_id}/functions/{name}/preference",
            Some(json!({"preference": "always"})),
            Member,
        ),
        row(
            Method::GET,
            "/api/v1/connectors/{connector_id}/functions/{name}/versions",
            None,
            Member,
        ),
        row(
            Method::GET,
            "/api/v1/connectors/{connector_id}/functions/{name}/diff",
            None,
            Member,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/functions/{name}/approve",
            Some(json!({"hash": "{hash}"})),
            Admin,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/functions/{name}/call",
            Some(json!({"arguments": {"text": "hi"}})),
            Member,
        ),
        row(
            Method::GET,
            "/api/v1/connectors/{connector_id}/resources",
            None,
            Member,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/resources/read",
            Some(json!({"uri": "note://hello"})),
            Member,
        ),
        row(
            Method::GET,
            "/api/v1/connectors/{connector_id}/prompts",
            None,
            Member,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/prompts/{prompt}/get",
            Some(json!({"arguments": {"text": "some text", "style": "brief"}})),
            Member,
        ),
        row(
            Method::POST,
            "/api/v1/connectors/{connector_id}/complete",
            Some(
                json!({"ref": {"type": "ref/prompt", "name": "summarize"}, "argument": "style", "value": "b"}),
            ),
            Member,
        ),
        // Authorizing an open connector is refused as a conflict, after the admin check.
        row_refused(
            Method::POST,
            "/api/v1/connectors/{connector_id}/authorize",
            Some(json!({})),
            Admin,
            StatusCode::CONFLICT,
        ),
        row(
            Method::GET,
            "/api/v1/connectors/{connector_id}/authorization",
            None,
            Member,
        ),
        row_refused(
            Method::DELETE,
            "/api/v1/connectors/{connector_id}/authorization",
            None,
            Admin,
            StatusCode::NOT_FOUND,
        ),
        // The connector does not use OAuth, so there is no server to enter a client for.
        row_refused(
            Method::PUT,
            "/api/v1/connectors/{connector_id}/oauth/client",
            Some(json!({"client_id": "switchboard"})),
            Admin,
            StatusCode::CONFLICT,
        ),
        // The organization holds this connector's credential; members have none of their own.
        row_refused(
            Method::PUT,
            "/api/v1/connectors/{connector_id}/credential",
            Some(json!({"kind": "bearer", "token": "mine"})),
            Member,
            StatusCode::CONFLICT,
        ),
        row_refused(
            Method::DELETE,
            "/api/v1/connectors/{connector_id}/credential",
            None,
            Member,
            StatusCode::CONFLICT,
        ),
    ]
}

struct World {
    server: TestServer,
    admin: Client,
    member: Client,
    outsider: Client,
    org_id: String,
    connector_id: String,
    victim_id: String,
    hash: String,
    upstream: String,
}

async fn world(upstream: &str) -> World {
    let server = TestServer::start().await;
    let (owner, org) = server.setup("alpha").await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    let (admin, _) = add_member(&server, &owner, &org_id, "admin@example.org", "admin").await;
    let (member, _) = add_member(&server, &owner, &org_id, "member@example.org", "member").await;
    let (_, victim_id) = add_member(&server, &owner, &org_id, "victim@example.org", "member").await;

    // The outsider owns another organization and has never belonged to this one.
    let beta = owner
        .ok(
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"slug": "beta", "name": "Beta"})),
        )
        .await;
    let beta_id = beta["id"].as_str().unwrap();
    let (outsider, _) = add_member(&server, &owner, beta_id, "outsider@example.org", "owner").await;
    let me = owner.ok(Method::GET, "/api/v1/me", None).await;
    let owner_id = me["user"]["id"].as_str().unwrap();
    owner
        .ok(
            Method::DELETE,
            &format!("/api/v1/orgs/{beta_id}/members/{owner_id}"),
            None,
        )
        .await;

    let connector = owner
        .ok(
            Method::POST,
            &format!("/api/v1/orgs/{org_id}/connectors"),
            Some(json!({"name": "Docs", "url": upstream})),
        )
        .await;
    let connector_id = connector["id"].as_str().unwrap().to_owned();
    let validation = owner
        .ok(
            Method::POST,
            &format!("/api/v1/connectors/{connector_id}/validate"),
            None,
        )
        .await;
    assert_eq!(validation["connector"]["status"], "active", "{validation}");
    let functions = owner
        .ok(
            Method::GET,
            &format!("/api/v1/connectors/{connector_id}/functions"),
            None,
        )
        .await;
    let echo = functions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "echo")
        .expect("echo is offered");
    let hash = echo["definition_hash"].as_str().unwrap().to_owned();
    World {
        server,
        admin,
        member,
        outsider,
        org_id,
        connector_id,
        victim_id,
        hash,
        upstream: upstream.to_owned(),
    }
}

impl World {
    fn path(&self, template: &str) -> String {
        template
            .replace("{org_id}", &self.org_id)
            .replace("{connector_id}", &self.connector_id)
            .replace("{user_id}", &self.victim_id)
            .replace("{name}", "echo")
            .replace("{prompt}", "summarize")
    }

    fn body(&self, body: &Option<Value>) -> Option<Value> {
        body.as_ref().map(|b| {
            let text = b
                .to_string()
                .replace("{connector_id}", &self.connector_id)
                .replace("{hash}", &self.hash)
                .replace("{upstream}", &self.upstream);
            serde_json::from_str(&text).unwrap()
        })
    }

    /// Everything stored except what merely records access (audit events, token use).
    async fn state(&self) -> Snapshot {
        let mut snapshot = self.server.app.store().export().await.unwrap();
        snapshot
            .tables
            .retain(|t| t.name != "audit_events" && t.name != "api_tokens");
        snapshot
    }
}

#[tokio::test]
async fn matrix_covers_every_scoped_endpoint() {
    let doc: Value = serde_json::from_str(&switchboard_server::openapi_json()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !(path.contains("{org_id}") || path.contains("{connector_id}")) {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let covered: BTreeSet<_> = matrix()
        .iter()
        .map(|r| (r.method.to_string(), r.path.replace("{prompt}", "{name}")))
        .collect();
    assert_eq!(
        covered, documented,
        "every organization- or connector-scoped endpoint needs a matrix row"
    );
}

#[tokio::test]
async fn outsiders_see_nothing_and_members_cannot_administer() {
    // One real MCP server (the Python SDK's, with tools, resources and prompts) serves every
    // world's connector.
    let upstream = PythonServer::start(BASIC_SERVER, PyTransport::StreamableHttp).await;
    for row in matrix() {
        let w = world(upstream.url()).await;
        let path = w.path(row.path);
        let body = w.body(&row.body);
        let label = format!("{} {}", row.method, row.path);

        let before = w.state().await;
        let (status, err) = w
            .outsider
            .call(row.method.clone(), &path, body.clone())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "outsider, {label}: {err}");
        assert!(
            !err.to_string().contains(&w.org_id),
            "outsider, {label}: the answer leaks nothing"
        );
        assert_eq!(
            w.state().await,
            before,
            "outsider, {label}: nothing changed"
        );

        let allowed = |status: StatusCode| match row.allowed {
            Some(expected) => status == expected,
            None => status.is_success(),
        };
        let (status, err) = w.member.call(row.method.clone(), &path, body.clone()).await;
        match row.needs {
            Needs::Member => assert!(allowed(status), "member, {label}: {status} {err}"),
            Needs::Admin => {
                assert_eq!(status, StatusCode::FORBIDDEN, "member, {label}: {err}");
                assert_eq!(w.state().await, before, "member, {label}: nothing changed");
            }
        }

        let (status, err) = w.admin.call(row.method.clone(), &path, body.clone()).await;
        assert!(allowed(status), "admin, {label}: {status} {err}");
    }
}

/// A conversation is its member's alone: nobody else, not even an owner of the same
/// organization, sees or changes it through any conversation endpoint.
#[tokio::test]
async fn conversations_are_private_to_their_member() {
    let upstream = PythonServer::start(BASIC_SERVER, PyTransport::StreamableHttp).await;
    let w = world(upstream.url()).await;
    let conv = w
        .member
        .ok(
            Method::POST,
            &format!("/api/v1/orgs/{}/conversations", w.org_id),
            Some(json!({"title": "Private", "connectors": [w.connector_id]})),
        )
        .await;
    let conv_id = conv["id"].as_str().unwrap();
    let doc: Value = serde_json::from_str(&switchboard_server::openapi_json()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{conversation_id}") {
            continue;
        }
        let path = path
            .replace("{conversation_id}", conv_id)
            .replace("{call_id}", "call_1")
            .replace("{elicitation_id}", "e1")
            .replace("{sampling_id}", "s1");
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // A body each endpoint accepts, so what answers is the access check.
            let body = if method == Method::PATCH {
                Some(json!({"title": "t"}))
            } else if method != Method::POST {
                None
            } else if path.ends_with("/messages") {
                Some(json!({"content": "x"}))
            } else if path.contains("/approvals/") {
                Some(json!({"answer": "deny"}))
            } else if path.contains("/elicitations/") {
                Some(json!({"action": "decline"}))
            } else if path.contains("/samplings/") {
                Some(json!({"approve": false}))
            } else {
                None
            };
            for (who, client) in [("admin", &w.admin), ("outsider", &w.outsider)] {
                let before = w.state().await;
                let (status, err) = client.call(method.clone(), &path, body.clone()).await;
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{who}, {method} {path}: {err}"
                );
                assert!(
                    !err.to_string().contains("Private"),
                    "{who}, {method} {path}"
                );
                assert_eq!(
                    w.state().await,
                    before,
                    "{who}, {method} {path} changed nothing"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "every conversation endpoint was tried ({checked})"
    );
    let (status, _) = w
        .member
        .get(&format!("/api/v1/conversations/{conv_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "its member still sees it");
}

/// An API token is its user's alone: nobody else, not even an owner of the same organization,
/// revokes it, though they know its id; the answer is the one for a token that does not exist.
#[tokio::test]
async fn another_user_cannot_revoke_a_users_token() {
    let server = TestServer::start().await;
    let (owner, org) = server.setup("alpha").await;
    let org_id = org["id"].as_str().unwrap();
    let (member, _) = add_member(&server, &owner, org_id, "member@example.org", "member").await;
    let (admin, _) = add_member(&server, &owner, org_id, "admin@example.org", "admin").await;
    let issued = member
        .ok(
            Method::POST,
            "/api/v1/me/tokens",
            Some(json!({"name": "ci"})),
        )
        .await;
    let token_id = issued["token"]["id"].as_str().unwrap();
    let ci = Client::new(
        &server.base,
        Some(issued["secret"].as_str().unwrap().to_owned()),
    );
    let path = format!("/api/v1/me/tokens/{token_id}");

    for (who, other) in [("owner", &owner), ("admin", &admin)] {
        let (status, err) = other.call(Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {err}");
        assert_eq!(err["error"]["code"], "not_found", "{who}: {err}");
        let (status, _) = ci.get("/api/v1/me").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "after the {who}'s try the token still works"
        );
    }
    // Its user can revoke it, so the refusals above were about whose token it is.
    let (status, err) = member.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
    assert_eq!(ci.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
}
