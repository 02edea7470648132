//! Capability handles: proof, checked once, that the caller may act in an organization.
//!
//! A service function that changes connectors takes an [`AdminAccess`]; the only way to get one
//! is [`OrgAccess::admin`], and the only way to get an [`OrgAccess`] is through
//! [`crate::App::org_access`], which checks membership in the store. So a handler cannot forget
//! a permission check: without the handle it cannot call the function at all.

use switchboard_domain::{OrgId, Role, User, UserId};

use crate::{Error, Result};

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A browser session; state-changing requests must echo its CSRF token.
    Session {
        /// The session's CSRF token.
        csrf_token: String,
    },
    /// A personal API token.
    ApiToken,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Who they are.
    pub user: User,
    /// How they signed in.
    pub credential: Credential,
}

impl Actor {
    /// Their user id.
    pub fn id(&self) -> UserId {
        self.user.id
    }
}

/// Proof that `user` is a member of `org` with `role`.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    org: OrgId,
    user: UserId,
    role: Role,
    system: bool,
}

impl OrgAccess {
    pub(crate) fn new(org: OrgId, user: UserId, role: Role) -> Self {
        Self {
            org,
            user,
            role,
            system: false,
        }
    }

    /// Access for work Switchboard does on its own in an organization (re-discovery after a
    /// server's list change), with no person behind it.
    pub(crate) fn system(org: OrgId) -> Self {
        Self {
            org,
            user: UserId(uuid_nil()),
            role: Role::Admin,
            system: true,
        }
    }

    /// Who acts, for the audit log: `None` for Switchboard itself.
    pub fn actor(&self) -> Option<UserId> {
        (!self.system).then_some(self.user)
    }

    /// The organization.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// The member.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The member's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Upgrades to admin access, if the member is an admin or owner.
    pub fn admin(&self) -> Result<AdminAccess> {
        if self.role.is_admin() {
            Ok(AdminAccess(self.clone()))
        } else {
            Err(Error::Forbidden(
                "only an owner or admin of this organization may do this".into(),
            ))
        }
    }
}

fn uuid_nil() -> switchboard_store::Uuid {
    switchboard_store::Uuid::nil()
}

/// Proof that the caller is an admin or owner of the organization.
#[derive(Debug, Clone)]
pub struct AdminAccess(OrgAccess);

impl std::ops::Deref for AdminAccess {
    type Target = OrgAccess;
    fn deref(&self) -> &OrgAccess {
        &self.0
    }
}

impl AdminAccess {
    /// Whether the admin is also an owner (only owners may grant or take away ownership).
    pub fn is_owner(&self) -> bool {
        self.0.role == Role::Owner
    }
}
