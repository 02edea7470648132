//! Small builders for the records the tests store.

use switchboard_domain::{
    AuditAction, Email, NewAuditEvent, OrgId, OrgSettings, OrgSlug, Role, Timestamp, UserId,
};
use switchboard_store::{NewOrganization, NewUser, Store};

/// A fixed, plausible clock value.
pub const T0: Timestamp = Timestamp::from_millis(1_763_702_400_000);

/// An audit event with no organization yet.
pub fn audit(action: AuditAction, actor: Option<UserId>) -> NewAuditEvent {
    NewAuditEvent::new(action, actor)
}

/// A user `name@example.org` with a password hash.
pub fn new_user(name: &str) -> NewUser {
    NewUser {
        id: UserId::new(),
        email: Email::parse(&format!("{name}@example.org")).expect("valid email"),
        display_name: name.to_owned(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        created_at: T0,
    }
}

/// An organization with default settings.
pub fn new_org(slug: &str) -> NewOrganization {
    NewOrganization {
        id: OrgId::new(),
        slug: OrgSlug::parse(slug).expect("valid slug"),
        name: slug.to_uppercase(),
        settings: OrgSettings::default(),
        created_at: T0,
    }
}

/// A user who owns a new organization; returns both ids.
pub async fn owner_with_org(store: &dyn Store, name: &str) -> (UserId, OrgId) {
    let user = new_user(name);
    let org = new_org(&format!("{name}-org"));
    store
        .create_user(&user, &audit(AuditAction::UserCreated, None))
        .await
        .expect("create user");
    store
        .create_organization(
            &org,
            user.id,
            &audit(AuditAction::OrgCreated, Some(user.id)),
        )
        .await
        .expect("create organization");
    (user.id, org.id)
}

/// Adds a new user to `org` with `role`.
pub async fn add(store: &dyn Store, org: OrgId, name: &str, role: Role) -> UserId {
    let user = new_user(name);
    store
        .create_user(&user, &audit(AuditAction::UserCreated, None))
        .await
        .expect("create user");
    store
        .add_member(
            org,
            user.id,
            role,
            T0,
            &audit(AuditAction::MemberAdded, None).org(org),
        )
        .await
        .expect("add member");
    user.id
}
