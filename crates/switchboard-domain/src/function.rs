//! Functions (a connector's tools), their pinned definitions and the two policy layers.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::connector::string_enum;
use crate::org::NewFunctionState;
use crate::{ConnectorId, FunctionId, Timestamp, ValidationError};

/// Everything a model is told about a function. Its hash pins it: any change in any field makes
/// a new hash, and a function whose hash moved away from the approved one is held for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionDefinition {
    /// The tool's name, as the server calls it.
    pub name: String,
    /// A human title, if the server gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The description the model reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// JSON Schema of the structured result, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<Value>,
    /// Behaviour hints such as `readOnlyHint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub annotations: Option<Value>,
}

/// SHA-256 over the definition's canonical JSON, hex encoded.
///
/// Canonical here means object keys sorted by their UTF-8 bytes, no insignificant white space
/// and serde_json's shortest number form (the parts of RFC 8785 that matter for tool
/// definitions). Sorting is done explicitly rather than relying on `serde_json::Map`'s order,
/// which changes when any crate in the build enables `preserve_order`.
pub fn definition_hash(def: &FunctionDefinition) -> String {
    let value = serde_json::to_value(def).unwrap_or(Value::Null);
    let mut out = String::new();
    write_canonical(&value, &mut out);
    hex::encode(Sha256::digest(out.as_bytes()))
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

string_enum!(
    /// Whether a function's current definition has been reviewed.
    ReviewState, "review_state" {
        /// The current definition is the approved one.
        Approved = "approved",
        /// A function that appeared after validation and waits for its first review.
        Pending = "pending",
        /// The definition changed since it was approved; held until an admin approves again.
        Changed = "changed",
        /// The server no longer offers it.
        Removed = "removed",
    }
);

impl ReviewState {
    /// Works out a function's review state after discovery saw `new_hash`, and its approved
    /// hash, from what was stored before (`None` for a function never seen).
    ///
    /// A definition that changes back to the approved one is approved again; a pending function
    /// that changes stays pending; every other change away from the approved hash is held.
    pub fn after_discovery(
        previous_approved_hash: Option<Option<&str>>,
        new_hash: &str,
        new_functions: NewFunctionState,
    ) -> (ReviewState, Option<String>) {
        match previous_approved_hash {
            None => match new_functions {
                NewFunctionState::Allowed => (ReviewState::Approved, Some(new_hash.to_owned())),
                NewFunctionState::Held => (ReviewState::Pending, None),
            },
            Some(None) => (ReviewState::Pending, None),
            Some(Some(approved)) if approved == new_hash => {
                (ReviewState::Approved, Some(approved.to_owned()))
            }
            Some(Some(approved)) => (ReviewState::Changed, Some(approved.to_owned())),
        }
    }

    /// Whether a function in this state may be offered to a model at all.
    pub fn is_callable(self) -> bool {
        self == ReviewState::Approved
    }
}

string_enum!(
    /// The admin's floor for a function: the least strict treatment members may choose.
    FloorPolicy, "floor" {
        /// Members decide.
        Allowed = "allowed",
        /// Every call is asked, whatever the member chose.
        Ask = "ask",
        /// No call is made.
        Blocked = "blocked",
    }
);

string_enum!(
    /// A member's own choice for a function.
    MemberPreference, "preference" {
        /// Call without asking (where the floor allows it).
        Always = "always",
        /// Ask before every call.
        Ask = "ask",
        /// Never call it.
        Never = "never",
    }
);

/// A function of a connector, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Function {
    /// Its id.
    pub id: FunctionId,
    /// The connector that offers it.
    pub connector_id: ConnectorId,
    /// The definition last seen on the server.
    pub definition: FunctionDefinition,
    /// Hash of `definition`.
    pub definition_hash: String,
    /// Hash of the definition an admin approved, if any.
    pub approved_hash: Option<String>,
    /// Review state.
    pub review_state: ReviewState,
    /// The admin's floor.
    pub floor: FloorPolicy,
    /// When it was first seen.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// One definition a function has had, kept so an admin can compare versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionVersion {
    /// Hash of the definition.
    pub hash: String,
    /// The definition.
    pub definition: FunctionDefinition,
    /// When it was first seen.
    pub first_seen_at: Timestamp,
}

/// What a discovery pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncSummary {
    /// Functions seen for the first time.
    pub added: Vec<String>,
    /// Functions whose definition moved away from the approved one.
    pub changed: Vec<String>,
    /// Functions the server no longer offers.
    pub removed: Vec<String>,
    /// Functions seen again with no change.
    pub unchanged: usize,
}

impl FunctionDefinition {
    /// Checks what a server sent before it is stored: a name, and an object schema.
    pub fn check(&self) -> Result<(), ValidationError> {
        if self.name.is_empty() || self.name.len() > 128 {
            return Err(ValidationError::new("name", "must be 1 to 128 characters"));
        }
        if !self.input_schema.is_object() {
            return Err(ValidationError::new(
                "input_schema",
                "must be a JSON object",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(description: &str) -> FunctionDefinition {
        FunctionDefinition {
            name: "search".into(),
            title: None,
            description: Some(description.into()),
            input_schema: json!({"type": "object", "properties": {"q": {"type": "string"}, "a": {}}}),
            output_schema: None,
            annotations: Some(json!({"readOnlyHint": true})),
        }
    }

    #[test]
    fn hash_ignores_key_order_and_sees_every_change() {
        let a = def("find things");
        let mut b = a.clone();
        b.input_schema =
            json!({"properties": {"a": {}, "q": {"type": "string"}}, "type": "object"});
        assert_eq!(definition_hash(&a), definition_hash(&b));
        assert_ne!(
            definition_hash(&a),
            definition_hash(&def("find things; also email me"))
        );
        let mut c = a.clone();
        c.annotations = Some(json!({"readOnlyHint": false}));
        assert_ne!(definition_hash(&a), definition_hash(&c));
        assert_eq!(definition_hash(&a).len(), 64);
    }

    #[test]
    fn review_state_transitions() {
        use NewFunctionState::*;
        use ReviewState as R;
        type Case<'a> = (
            Option<Option<&'a str>>,
            &'a str,
            NewFunctionState,
            R,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (None, "h1", Held, R::Pending, None),
            (None, "h1", Allowed, R::Approved, Some("h1")),
            (Some(None), "h2", Allowed, R::Pending, None),
            (Some(Some("h1")), "h1", Held, R::Approved, Some("h1")),
            (Some(Some("h1")), "h2", Allowed, R::Changed, Some("h1")),
        ];
        for (prev, new, setting, state, approved) in cases {
            let got = ReviewState::after_discovery(*prev, new, *setting);
            assert_eq!(
                got,
                (*state, approved.map(str::to_owned)),
                "{prev:?} {new} {setting:?}"
            );
        }
    }
}
