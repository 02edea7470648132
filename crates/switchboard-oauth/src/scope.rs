//! Which scopes to ask for: MCP's "Scope Selection Strategy" for the first authorization and
//! the scope union of its "Step-Up Authorization Flow" for later ones.

use crate::challenge::Challenge;
use crate::metadata::{AuthServerMetadata, ProtectedResourceMetadata};

/// The scope that asks for a refresh token (OpenID Connect Core §11; MCP "Refresh Tokens").
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The scopes of a first authorization: the `scope` of the challenge when it has one (it is
/// authoritative for the request that failed), else every scope of the protected-resource
/// metadata's `scopes_supported`, else none (the `scope` parameter is then left out).
///
/// With `offline_access` set, `offline_access` is added when the authorization server lists it
/// in its `scopes_supported`, and never otherwise (MCP "Refresh Tokens": a client MAY ask for
/// it when listed; asking for an unlisted scope can make the request fail).
pub fn select(
    challenge: Option<&Challenge>,
    resource: Option<&ProtectedResourceMetadata>,
    server: &AuthServerMetadata,
    offline_access: bool,
) -> Vec<String> {
    let from_challenge = challenge.map(Challenge::scopes).unwrap_or_default();
    let mut scopes = if !from_challenge.is_empty() {
        from_challenge
    } else {
        resource
            .and_then(|r| r.scopes_supported.clone())
            .unwrap_or_default()
    };
    if offline_access
        && !scopes.is_empty()
        && server.lists_scope(OFFLINE_ACCESS)
        && !scopes.iter().any(|s| s == OFFLINE_ACCESS)
    {
        scopes.push(OFFLINE_ACCESS.to_owned());
    }
    scopes
}

/// The scopes of a step-up authorization: everything asked for before, then the challenge's
/// scopes that are new, in that order (MCP "Step-Up Authorization Flow", step 2), so the new
/// token keeps the permissions the other operations need.
pub fn union(previous: &[String], challenged: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(previous.len() + challenged.len());
    for s in previous.iter().chain(challenged) {
        if !s.is_empty() && !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Joins scopes into the space-delimited form of the `scope` parameter (RFC 6749 §3.3).
pub fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Counts step-up authorizations for one operation, so a server that keeps answering
/// `insufficient_scope` cannot keep the client authorizing forever (MCP "Step-Up
/// Authorization Flow", step 4: retry "no more than a few times").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    attempts: u32,
    limit: u32,
}

impl StepUp {
    /// The default limit: two step-ups, so with the first authorization at most three
    /// authorizations are made for one operation.
    pub const DEFAULT_LIMIT: u32 = 2;

    /// A counter allowing `limit` step-ups.
    pub fn new(limit: u32) -> Self {
        Self { attempts: 0, limit }
    }

    /// Records a step-up about to be made; `false` when the limit is reached and the failure
    /// should be treated as final.
    pub fn try_again(&mut self) -> bool {
        if self.attempts >= self.limit {
            return false;
        }
        self.attempts += 1;
        true
    }

    /// Step-ups made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl Default for StepUp {
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge;

    fn metadata(scopes: Option<&[&str]>) -> AuthServerMetadata {
        let mut doc = serde_json::json!({"issuer": "https://a.example"});
        if let Some(s) = scopes {
            doc["scopes_supported"] = serde_json::json!(s);
        }
        serde_json::from_value(doc).unwrap()
    }

    fn prm(scopes: Option<&[&str]>) -> ProtectedResourceMetadata {
        let mut doc = serde_json::json!({"resource": "https://m.example/mcp"});
        if let Some(s) = scopes {
            doc["scopes_supported"] = serde_json::json!(s);
        }
        serde_json::from_value(doc).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_challenge_wins_then_scopes_supported_then_nothing() {
        let with_scope = challenge::parse(r#"Bearer scope="mcp:basic""#);
        let without = challenge::parse("Bearer");
        let prm_scopes = prm(Some(&["mcp:read", "mcp:write"]));
        let none = metadata(None);
        assert_eq!(
            select(with_scope.first(), Some(&prm_scopes), &none, true),
            ["mcp:basic"]
        );
        assert_eq!(
            select(without.first(), Some(&prm_scopes), &none, true),
            ["mcp:read", "mcp:write"]
        );
        assert_eq!(
            select(None, Some(&prm(None)), &none, true),
            Vec::<String>::new()
        );
        assert_eq!(select(None, None, &none, true), Vec::<String>::new());
    }

    #[test]
    fn offline_access_only_when_listed_and_wanted() {
        let prm_scopes = prm(Some(&["mcp:basic"]));
        let listed = metadata(Some(&["mcp:basic", "offline_access"]));
        let unlisted = metadata(Some(&["mcp:basic"]));
        assert_eq!(
            select(None, Some(&prm_scopes), &listed, true),
            ["mcp:basic", "offline_access"]
        );
        assert_eq!(
            select(None, Some(&prm_scopes), &listed, false),
            ["mcp:basic"]
        );
        assert_eq!(
            select(None, Some(&prm_scopes), &unlisted, true),
            ["mcp:basic"]
        );
        // No scope parameter at all stays that way: the server decides the default.
        assert!(select(None, None, &listed, true).is_empty());
    }

    #[test]
    fn step_up_keeps_what_was_asked_before() {
        assert_eq!(
            union(&s(&["mcp:basic"]), &s(&["mcp:write"])),
            ["mcp:basic", "mcp:write"]
        );
        assert_eq!(union(&s(&["a", "b"]), &s(&["b", "a"])), ["a", "b"]);
        assert_eq!(union(&[], &s(&["x"])), ["x"]);
        assert_eq!(join(&s(&["a", "b"])), "a b");
    }

    #[test]
    fn step_ups_are_limited() {
        let mut guard = StepUp::default();
        assert!(guard.try_again());
        assert!(guard.try_again());
        assert!(!guard.try_again());
        assert_eq!(guard.attempts(), 2);
        assert!(!StepUp::new(0).try_again());
    }
}
