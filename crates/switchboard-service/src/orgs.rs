//! Organizations and their members.

use serde_json::json;
use switchboard_domain::{
    AuditAction, Email, Member, NewAuditEvent, OrgId, OrgSettings, OrgSlug, Organization, Password,
    Role, UserId, ValidationError, check_display_name,
};
use switchboard_store::{NewOrganization, NewUser};

use crate::secrets::hash_password;
use crate::{Actor, AdminAccess, App, Error, OrgAccess, Page, PageRequest, Result};

/// A member to add: an existing user by email, or a new local account when `password` is
/// given for an address nobody uses yet.
#[derive(Debug, Clone)]
pub struct NewMemberInput {
    /// Their login.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// Display name for a new account.
    pub display_name: Option<String>,
    /// Initial password for a new account.
    pub password: Option<String>,
}

impl App {
    /// Checks that `actor` belongs to `org` and returns the handle that proves it. Outsiders
    /// get `NotFound`, so they cannot tell whether the organization exists.
    pub async fn org_access(&self, actor: &Actor, org: OrgId) -> Result<OrgAccess> {
        match self.store.role_of(org, actor.id()).await? {
            Some(role) => Ok(OrgAccess::new(org, actor.id(), role)),
            None => Err(Error::NotFound("organization")),
        }
    }

    /// Every organization the actor belongs to, with their role in each, by slug.
    pub async fn my_organizations(&self, actor: &Actor) -> Result<Vec<(Organization, Role)>> {
        Ok(self.store.organizations_of(actor.id()).await?)
    }

    /// One page of [`App::my_organizations`].
    pub async fn organizations(
        &self,
        actor: &Actor,
        page: PageRequest,
    ) -> Result<Page<(Organization, Role)>> {
        Ok(self.store.list_organizations(actor.id(), page).await?)
    }

    /// Creates an organization owned by the actor.
    pub async fn create_organization(
        &self,
        actor: &Actor,
        slug: &str,
        name: &str,
    ) -> Result<Organization> {
        let org = NewOrganization {
            id: OrgId::new(),
            slug: OrgSlug::parse(slug)?,
            name: check_display_name("name", name)?,
            settings: OrgSettings::default(),
            created_at: self.now(),
        };
        let audit = NewAuditEvent::new(AuditAction::OrgCreated, Some(actor.id()))
            .org(org.id)
            .target("organization", org.id)
            .detail(json!({ "slug": org.slug.as_str() }));
        Ok(self
            .store
            .create_organization(&org, actor.id(), &audit)
            .await?)
    }

    /// The organization.
    pub async fn organization(&self, access: &OrgAccess) -> Result<Organization> {
        Ok(self.store.organization(access.org()).await?)
    }

    /// Renames an organization or changes its settings.
    pub async fn update_organization(
        &self,
        access: &AdminAccess,
        name: Option<&str>,
        settings: Option<OrgSettings>,
    ) -> Result<Organization> {
        let name = name.map(|n| check_display_name("name", n)).transpose()?;
        let audit = NewAuditEvent::new(AuditAction::OrgUpdated, Some(access.user()))
            .org(access.org())
            .target("organization", access.org())
            .detail(json!({ "name": name, "settings": settings }));
        Ok(self
            .store
            .update_organization(access.org(), name.as_deref(), settings.as_ref(), &audit)
            .await?)
    }

    /// The organization's members.
    pub async fn members(&self, access: &OrgAccess, page: PageRequest) -> Result<Page<Member>> {
        Ok(self.store.list_members(access.org(), page).await?)
    }

    /// Adds a member. Only owners may add owners.
    pub async fn add_member(&self, access: &AdminAccess, input: NewMemberInput) -> Result<Member> {
        if input.role == Role::Owner && !access.is_owner() {
            return Err(Error::Forbidden(
                "only an owner may add another owner".into(),
            ));
        }
        let email = Email::parse(&input.email)?;
        let now = self.now();
        match self.store.user_login(&email).await? {
            Some((user, _)) => {
                if input.password.is_some() {
                    return Err(ValidationError::new(
                        "password",
                        "must not be given for an existing account; the user keeps their own password",
                    )
                    .into());
                }
                let audit = NewAuditEvent::new(AuditAction::MemberAdded, Some(access.user()))
                    .org(access.org())
                    .target("user", user.id)
                    .detail(json!({ "email": email.as_str(), "role": input.role }));
                Ok(self
                    .store
                    .add_member(access.org(), user.id, input.role, now, &audit)
                    .await?)
            }
            None => {
                let Some(password) = input.password else {
                    return Err(ValidationError::new(
                        "password",
                        "is required to create an account for an address nobody uses yet",
                    )
                    .into());
                };
                let password = Password::new(password)?;
                let display_name = match input.display_name.as_deref() {
                    Some(n) => check_display_name("display_name", n)?,
                    None => email
                        .as_str()
                        .split('@')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                };
                let user = NewUser {
                    id: UserId::new(),
                    email: email.clone(),
                    display_name,
                    password_hash: Some(hash_password(password.expose()).await?),
                    created_at: now,
                };
                let audit = NewAuditEvent::new(AuditAction::MemberAdded, Some(access.user()))
                    .org(access.org())
                    .target("user", user.id)
                    .detail(
                        json!({ "email": email.as_str(), "role": input.role, "new_account": true }),
                    );
                Ok(self
                    .store
                    .add_new_member(access.org(), &user, input.role, &audit)
                    .await?)
            }
        }
    }

    /// Changes a member's role. Only owners may grant ownership or change an owner's role.
    pub async fn set_role(&self, access: &AdminAccess, user: UserId, role: Role) -> Result<Member> {
        let current = self.store.member(access.org(), user).await?;
        if (role == Role::Owner || current.role == Role::Owner) && !access.is_owner() {
            return Err(Error::Forbidden(
                "only an owner may grant or change ownership".into(),
            ));
        }
        let audit = NewAuditEvent::new(AuditAction::RoleChanged, Some(access.user()))
            .org(access.org())
            .target("user", user)
            .detail(json!({ "from": current.role, "to": role }));
        Ok(self
            .store
            .set_role(access.org(), user, role, &audit)
            .await?)
    }

    /// Removes a member. Members may remove themselves; admins may remove others, and only
    /// owners may remove an owner.
    pub async fn remove_member(&self, access: &OrgAccess, user: UserId) -> Result<()> {
        let target = self.store.member(access.org(), user).await?;
        if user != access.user() {
            let admin = access.admin()?;
            if target.role == Role::Owner && !admin.is_owner() {
                return Err(Error::Forbidden("only an owner may remove an owner".into()));
            }
        }
        let audit = NewAuditEvent::new(AuditAction::MemberRemoved, Some(access.user()))
            .org(access.org())
            .target("user", user)
            .detail(json!({ "email": target.email.as_str(), "role": target.role }));
        Ok(self.store.remove_member(access.org(), user, &audit).await?)
    }
}
