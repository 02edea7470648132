//! The logical schema both backends keep, table by table, and the snapshot `db copy` moves.
//!
//! Each backend writes its own migrations in its own SQL dialect; this list is what they must
//! agree on. The shared test suite checks that every table a backend has is listed here, so a
//! table added to a migration but forgotten here fails a test instead of being silently left
//! behind by `db copy`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// How a column's values are typed, across both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A UUID (`BLOB` in SQLite, `UUID` in PostgreSQL).
    Uuid,
    /// Text.
    Text,
    /// A 64-bit integer (timestamps are milliseconds since the epoch).
    Int,
    /// A JSON document (`TEXT` in SQLite, `JSONB` in PostgreSQL).
    Json,
    /// A boolean (`INTEGER` 0 or 1 in SQLite, `BOOLEAN` in PostgreSQL).
    Bool,
}

/// One table: its name and columns, in the order parents come before children.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// Table name.
    pub name: &'static str,
    /// Columns and their types.
    pub columns: &'static [(&'static str, ColumnType)],
    /// The `ORDER BY` list that makes exports deterministic.
    pub order_by: &'static str,
}

use ColumnType::{Bool, Int, Json, Text, Uuid as U};

/// Every table, parents before children, so importing in this order satisfies foreign keys.
pub const SCHEMA: &[TableSpec] = &[
    TableSpec {
        name: "instance_settings",
        columns: &[("key", Text), ("value", Text)],
        order_by: "key",
    },
    TableSpec {
        name: "users",
        columns: &[
            ("id", U),
            ("email", Text),
            ("display_name", Text),
            ("password_hash", Text),
            ("created_at", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "organizations",
        columns: &[
            ("id", U),
            ("slug", Text),
            ("name", Text),
            ("new_functions", Text),
            ("created_at", Int),
            // Added by migration 0003.
            ("untrusted_content", Text),
            ("sampling", Bool),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "memberships",
        columns: &[
            ("org_id", U),
            ("user_id", U),
            ("role", Text),
            ("created_at", Int),
        ],
        order_by: "org_id, user_id",
    },
    TableSpec {
        name: "sessions",
        columns: &[
            ("token_hash", Text),
            ("user_id", U),
            ("csrf_token", Text),
            ("created_at", Int),
            ("expires_at", Int),
        ],
        order_by: "token_hash",
    },
    TableSpec {
        name: "api_tokens",
        columns: &[
            ("id", U),
            ("user_id", U),
            ("name", Text),
            ("token_hash", Text),
            ("prefix", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("last_used_at", Int),
            ("revoked_at", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "connectors",
        columns: &[
            ("id", U),
            ("org_id", U),
            ("name", Text),
            ("name_folded", Text),
            ("url", Text),
            ("description", Text),
            ("status", Text),
            ("last_error", Text),
            ("auth_method", Text),
            ("transport", Text),
            ("protocol_version", Text),
            ("created_at", Int),
            ("updated_at", Int),
            // Added by migration 0002; columns added later go last, where ALTER TABLE puts them.
            ("credential_scope", Text),
            ("auth_detail", Json),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "connector_credentials",
        columns: &[
            ("id", U),
            ("connector_id", U),
            ("user_id", U),
            ("kind", Text),
            ("sealed", Text),
            ("updated_at", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "oauth_clients",
        columns: &[
            ("id", U),
            ("connector_id", U),
            ("issuer", Text),
            ("source", Text),
            ("sealed", Text),
            ("created_at", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "oauth_grants",
        columns: &[
            ("id", U),
            ("connector_id", U),
            ("user_id", U),
            ("issuer", Text),
            ("status", Text),
            ("reason", Text),
            ("sealed", Text),
            ("expires_at", Int),
            ("version", Int),
            ("lease_holder", Text),
            ("lease_until", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "oauth_pending",
        columns: &[
            ("state_hash", Text),
            ("org_id", U),
            ("connector_id", U),
            ("user_id", U),
            ("holder_user_id", U),
            ("binding_hash", Text),
            ("sealed", Text),
            ("created_at", Int),
            ("expires_at", Int),
        ],
        order_by: "state_hash",
    },
    TableSpec {
        name: "functions",
        columns: &[
            ("id", U),
            ("connector_id", U),
            ("name", Text),
            ("definition", Json),
            ("definition_hash", Text),
            ("approved_hash", Text),
            ("review_state", Text),
            ("floor", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "function_versions",
        columns: &[
            ("function_id", U),
            ("hash", Text),
            ("definition", Json),
            ("first_seen_at", Int),
        ],
        order_by: "function_id, hash",
    },
    TableSpec {
        name: "member_preferences",
        columns: &[
            ("function_id", U),
            ("user_id", U),
            ("preference", Text),
            ("updated_at", Int),
        ],
        order_by: "function_id, user_id",
    },
    TableSpec {
        name: "chat_models",
        columns: &[
            ("org_id", U),
            ("kind", Text),
            ("base_url", Text),
            ("model", Text),
            ("sealed_key", Text),
            ("updated_at", Int),
        ],
        order_by: "org_id",
    },
    TableSpec {
        name: "conversations",
        columns: &[
            ("id", U),
            ("org_id", U),
            ("user_id", U),
            ("title", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("last_message_seq", Int),
            ("last_event_seq", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "conversation_connectors",
        columns: &[
            ("conversation_id", U),
            ("connector_id", U),
            ("position", Int),
        ],
        order_by: "conversation_id, connector_id",
    },
    TableSpec {
        name: "chat_turns",
        columns: &[
            ("id", U),
            ("conversation_id", U),
            ("org_id", U),
            ("user_id", U),
            ("status", Text),
            ("state", Json),
            ("version", Int),
            ("lease_until", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "chat_messages",
        columns: &[
            ("conversation_id", U),
            ("seq", Int),
            ("turn_id", U),
            ("body", Json),
            ("created_at", Int),
        ],
        order_by: "conversation_id, seq",
    },
    TableSpec {
        name: "chat_events",
        columns: &[
            ("conversation_id", U),
            ("seq", Int),
            ("turn_id", U),
            ("kind", Text),
            ("data", Json),
            ("created_at", Int),
        ],
        order_by: "conversation_id, seq",
    },
    TableSpec {
        name: "audit_events",
        columns: &[
            ("id", U),
            ("org_id", U),
            ("actor_id", U),
            ("action", Text),
            ("target", Text),
            ("detail", Json),
            ("created_at", Int),
        ],
        order_by: "id",
    },
];

/// One value of one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// SQL `NULL`.
    Null,
    /// A UUID.
    Uuid(Uuid),
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
    /// A JSON document.
    Json(Value),
    /// A boolean.
    Bool(bool),
}

/// The rows of one table, each in [`TableSpec::columns`] order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDump {
    /// Table name.
    pub name: String,
    /// Rows.
    pub rows: Vec<Vec<Cell>>,
}

/// Every table's rows, in [`SCHEMA`] order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The tables.
    pub tables: Vec<TableDump>,
}

impl Snapshot {
    /// How many rows the snapshot holds in all.
    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}
