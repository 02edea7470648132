//! Organizations, their members and the roles that decide what a member may do.

use serde::{Deserialize, Serialize};

use crate::{Email, OrgId, Timestamp, UntrustedContent, UserId, ValidationError};

/// A member's role in one organization.
///
/// Ordered from least to most powerful, so `role >= Role::Admin` reads as "at least admin".
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Chats, enables connectors for a conversation, sets their own function preferences.
    Member,
    /// Also manages connectors, members (except owners), policies and the audit log.
    Admin,
    /// Also manages owners; an organization always keeps at least one.
    Owner,
}

impl Role {
    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Whether this role may create, change or delete connectors and set policy floors.
    pub fn is_admin(self) -> bool {
        self >= Role::Admin
    }
}

impl std::str::FromStr for Role {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(ValidationError::new(
                "role",
                "must be one of owner, admin, member",
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An organization's short name, used in URLs and on the command line: lowercase ASCII letters,
/// digits and inner hyphens, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct OrgSlug(String);

impl OrgSlug {
    /// Validates a slug.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let err = |m: &str| ValidationError::new("slug", m.to_owned());
        if raw.is_empty() || raw.len() > 64 {
            return Err(err("must be 1 to 64 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(
                "must contain only lowercase letters, digits and hyphens",
            ));
        }
        if raw.starts_with('-') || raw.ends_with('-') {
            return Err(err("must not start or end with a hyphen"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slug's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgSlug {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OrgSlug> for String {
    fn from(s: OrgSlug) -> Self {
        s.0
    }
}

impl std::fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happens to a function that a connector starts offering after it was first validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NewFunctionState {
    /// It waits for an admin's review before the model can see it (the safe default).
    Held,
    /// It is usable at once, under the usual floors and preferences.
    Allowed,
}

impl NewFunctionState {
    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            NewFunctionState::Held => "held",
            NewFunctionState::Allowed => "allowed",
        }
    }
}

impl std::str::FromStr for NewFunctionState {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "held" => Ok(Self::Held),
            "allowed" => Ok(Self::Allowed),
            _ => Err(ValidationError::new(
                "new_functions",
                "must be held or allowed",
            )),
        }
    }
}

/// Organization-wide settings an admin can change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrgSettings {
    /// Whether functions that appear after validation wait for review.
    pub new_functions: NewFunctionState,
    /// Whether tool output in a conversation makes the assistant ask before calling a function
    /// that may change something.
    #[serde(default = "strict")]
    pub untrusted_content: UntrustedContent,
    /// Whether a connector's server may ask the organization's model to generate text
    /// (MCP sampling); each request is still shown to the member to approve.
    #[serde(default)]
    pub sampling: bool,
}

fn strict() -> UntrustedContent {
    UntrustedContent::Strict
}

impl Default for OrgSettings {
    fn default() -> Self {
        Self {
            new_functions: NewFunctionState::Held,
            untrusted_content: UntrustedContent::Strict,
            sampling: false,
        }
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its short name.
    pub slug: OrgSlug,
    /// Its display name.
    pub name: String,
    /// Its settings.
    pub settings: OrgSettings,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A user's membership in an organization, as listed to its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    /// The member's user id.
    pub user_id: UserId,
    /// The member's login.
    pub email: Email,
    /// The member's display name.
    pub display_name: String,
    /// The member's role here.
    pub role: Role,
    /// When they joined.
    pub joined_at: Timestamp,
}

/// Checks a display name (of a user or an organization): 1 to 100 characters, no control
/// characters.
pub fn check_display_name(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 100 {
        return Err(ValidationError::new(field, "must be 1 to 100 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Member);
        assert!(Role::Admin.is_admin() && Role::Owner.is_admin() && !Role::Member.is_admin());
        assert_eq!("owner".parse::<Role>().unwrap(), Role::Owner);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn slugs() {
        assert!(OrgSlug::parse("acme-labs2").is_ok());
        for bad in ["", "Acme", "-acme", "acme-", "ac me", &"a".repeat(65)] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad}");
        }
    }
}
