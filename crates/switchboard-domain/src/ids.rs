//! Typed ids, so a connector id can never be passed where a user id is expected.
//!
//! Ids are UUID version 7: they sort by creation time, which makes them usable as pagination
//! cursors and keeps B-tree inserts local.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// Identifies an organization.
    OrgId
);
id_type!(
    /// Identifies a user account.
    UserId
);
id_type!(
    /// Identifies a connector.
    ConnectorId
);
id_type!(
    /// Identifies one function (tool) of a connector.
    FunctionId
);
id_type!(
    /// Identifies a personal API token.
    ApiTokenId
);
id_type!(
    /// Identifies an audit event.
    AuditEventId
);
id_type!(
    /// Identifies an OAuth grant: the tokens one holder has for one connector.
    GrantId
);
id_type!(
    /// Identifies an OAuth client registration with one authorization server.
    OAuthClientId
);
id_type!(
    /// Identifies a conversation.
    ConversationId
);
id_type!(
    /// Identifies one turn of a conversation: a member's message and everything the assistant
    /// did to answer it.
    TurnId
);
