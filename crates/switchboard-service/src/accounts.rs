//! Accounts: the first owner, signing in, browser sessions, personal API tokens, passwords.

use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use switchboard_domain::{
    ApiToken, ApiTokenId, AuditAction, Email, NewAuditEvent, OrgId, OrgSettings, OrgSlug,
    Organization, Password, Session, Timestamp, User, UserId, ValidationError, check_display_name,
};
use switchboard_store::{NewOrganization, NewUser};

use crate::secrets::{hash_password, random_token, sha256_hex, verify_password};
use crate::{Actor, App, Credential, Error, Page, PageRequest, Result};

/// The instance setting holding the hash of the one-time setup token.
const SETUP_TOKEN_KEY: &str = "setup_token_sha256";
/// Personal API tokens start with this, so secret scanners and people can recognize them.
pub const API_TOKEN_PREFIX: &str = "sbp_";

/// Whether the installation still needs its first owner.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct SetupState {
    /// True until the first owner exists.
    pub needed: bool,
}

/// What is needed to create an owner and their organization.
#[derive(Debug, Clone)]
pub struct OwnerInput {
    /// Login.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Password.
    pub password: String,
    /// The organization's short name.
    pub org_slug: String,
    /// The organization's display name.
    pub org_name: String,
}

/// A freshly opened browser session. `secret` goes into the cookie and is never stored.
#[derive(Debug)]
pub struct NewSession {
    /// Who signed in.
    pub user: User,
    /// The cookie value.
    pub secret: String,
    /// The CSRF token the page must echo on state-changing requests.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: Timestamp,
}

/// A freshly issued API token. `secret` is shown once and never stored.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token's record.
    pub token: ApiToken,
    /// The secret to hand to the user.
    pub secret: String,
}

impl App {
    /// Whether the first owner still has to be created.
    pub async fn setup_state(&self) -> Result<SetupState> {
        Ok(SetupState {
            needed: self.store.user_count().await? == 0,
        })
    }

    /// While no user exists, makes a new one-time setup token (replacing any earlier one) and
    /// returns it so the operator can be shown it; `None` once setup is done.
    pub async fn ensure_setup_token(&self) -> Result<Option<String>> {
        if self.store.user_count().await? > 0 {
            return Ok(None);
        }
        let token = random_token();
        self.store
            .set_instance_setting(SETUP_TOKEN_KEY, Some(&sha256_hex(&token)))
            .await?;
        Ok(Some(token))
    }

    /// Creates the first owner with the setup token printed at start.
    pub async fn complete_setup(
        &self,
        token: &str,
        input: OwnerInput,
    ) -> Result<(User, Organization)> {
        let expected = self.store.instance_setting(SETUP_TOKEN_KEY).await?;
        let given = sha256_hex(token);
        let matches = expected
            .as_deref()
            .is_some_and(|e| bool::from(e.as_bytes().ct_eq(given.as_bytes())));
        if !matches {
            return Err(Error::Unauthenticated(
                "the setup token is wrong or was already used".into(),
            ));
        }
        self.create_first_owner(input).await
    }

    /// Creates the first owner without a token (the operator's `admin create-owner` command,
    /// which runs with direct access to the database). Once an owner exists it creates a
    /// further owner with a new organization, which is how an operator recovers access.
    pub async fn create_owner(&self, input: OwnerInput) -> Result<(User, Organization)> {
        if self.store.user_count().await? == 0 {
            return self.create_first_owner(input).await;
        }
        let (user, org) = self.owner_records(input).await?;
        let audit = [
            NewAuditEvent::new(AuditAction::UserCreated, None).target("user", user.id),
            NewAuditEvent::new(AuditAction::OrgCreated, Some(user.id))
                .org(org.id)
                .target("organization", org.id),
        ];
        // One transaction, so a slug that is taken leaves no account without an organization
        // behind (which would also make the same command fail on the email when retried).
        self.store.create_owner(&user, &org, &audit).await?;
        Ok((
            self.store.user(user.id).await?,
            self.store.organization(org.id).await?,
        ))
    }

    async fn create_first_owner(&self, input: OwnerInput) -> Result<(User, Organization)> {
        let (user, org) = self.owner_records(input).await?;
        let audit = NewAuditEvent::new(AuditAction::SetupCompleted, Some(user.id))
            .org(org.id)
            .target("organization", org.id)
            .detail(json!({ "email": user.email.as_str(), "slug": org.slug.as_str() }));
        self.store
            .create_first_owner(&user, &org, SETUP_TOKEN_KEY, &audit)
            .await?;
        Ok((
            self.store.user(user.id).await?,
            self.store.organization(org.id).await?,
        ))
    }

    async fn owner_records(&self, input: OwnerInput) -> Result<(NewUser, NewOrganization)> {
        let email = Email::parse(&input.email)?;
        let display_name = check_display_name("display_name", &input.display_name)?;
        let password = Password::new(input.password)?;
        let slug = OrgSlug::parse(&input.org_slug)?;
        let org_name = check_display_name("org_name", &input.org_name)?;
        let now = self.now();
        let user = NewUser {
            id: UserId::new(),
            email,
            display_name,
            password_hash: Some(hash_password(password.expose()).await?),
            created_at: now,
        };
        let org = NewOrganization {
            id: OrgId::new(),
            slug,
            name: org_name,
            settings: OrgSettings::default(),
            created_at: now,
        };
        Ok((user, org))
    }

    /// Checks an email and password, under the sign-in rate limits. `client` is the caller's
    /// address, for the per-client limit and the audit log.
    async fn check_password(&self, email: &str, password: &str, client: &str) -> Result<User> {
        let now = Instant::now();
        let account_key = email.trim().to_ascii_lowercase();
        for (limiter, key) in [
            (&self.login_by_account, account_key.as_str()),
            (&self.login_by_client, client),
        ] {
            if let Err(wait) = limiter.check(key, now) {
                return Err(Error::RateLimited(wait));
            }
        }
        let found = match Email::parse(email) {
            Ok(e) => self.store.user_login(&e).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        if verify_password(password, hash).await?
            && let Some(user) = user
        {
            self.login_by_account.clear(&account_key);
            return Ok(user);
        }
        self.login_by_account.fail(&account_key, now);
        self.login_by_client.fail(client, now);
        let audit = NewAuditEvent::new(AuditAction::LoginFailed, user.as_ref().map(|u| u.id))
            .detail(json!({ "email": account_key, "client": client }));
        self.store.append_audit(&audit).await?;
        Err(Error::Unauthenticated("email or password is wrong".into()))
    }

    /// Signs in with a password and opens a browser session.
    pub async fn login(&self, email: &str, password: &str, client: &str) -> Result<NewSession> {
        let user = self.check_password(email, password, client).await?;
        let now = self.now();
        let secret = random_token();
        let session = Session {
            token_hash: sha256_hex(&secret),
            user_id: user.id,
            csrf_token: random_token(),
            created_at: now,
            expires_at: now.plus_seconds(self.config.session_ttl.as_secs() as i64),
        };
        let audit = NewAuditEvent::new(AuditAction::Login, Some(user.id))
            .detail(json!({ "method": "password", "client": client }));
        self.store.create_session(&session, &audit).await?;
        Ok(NewSession {
            user,
            secret,
            csrf_token: session.csrf_token,
            expires_at: session.expires_at,
        })
    }

    /// Signs in with a password and issues a personal API token, for the command line.
    pub async fn login_for_token(
        &self,
        email: &str,
        password: &str,
        client: &str,
        token_name: &str,
        days: Option<u32>,
    ) -> Result<IssuedToken> {
        let user = self.check_password(email, password, client).await?;
        // The sign-in is recorded with the token it issued, so neither is stored without the
        // other.
        let login = NewAuditEvent::new(AuditAction::Login, Some(user.id))
            .detail(json!({ "method": "password", "client": client, "for": "api_token" }));
        self.issue_token_for(user.id, token_name, days, Some(login))
            .await
    }

    /// The user behind a session cookie, if the session is live.
    pub async fn session_actor(&self, secret: &str) -> Result<Option<Actor>> {
        let found = self.store.session(&sha256_hex(secret), self.now()).await?;
        Ok(found.map(|(session, user)| Actor {
            user,
            credential: Credential::Session {
                csrf_token: session.csrf_token,
            },
        }))
    }

    /// The user behind an API token, if the token is live. Records its use.
    pub async fn token_actor(&self, secret: &str) -> Result<Option<Actor>> {
        if !secret.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let now = self.now();
        let Some((token, user)) = self.store.api_token(&sha256_hex(secret), now).await? else {
            return Ok(None);
        };
        // Only note use once a minute, so a busy script does not write on every request.
        if token
            .last_used_at
            .is_none_or(|t| now.millis() - t.millis() > 60_000)
        {
            self.store.touch_api_token(token.id, now).await?;
        }
        Ok(Some(Actor {
            user,
            credential: Credential::ApiToken,
        }))
    }

    /// Ends a browser session. The sign-out is recorded only if it ended one (a second
    /// sign-out racing the first records nothing).
    pub async fn logout(&self, actor: &Actor, secret: &str) -> Result<()> {
        let audit = NewAuditEvent::new(AuditAction::Logout, Some(actor.id()));
        self.store
            .delete_session(&sha256_hex(secret), &audit)
            .await?;
        Ok(())
    }

    /// Issues a personal API token to the actor.
    pub async fn issue_token(
        &self,
        actor: &Actor,
        name: &str,
        days: Option<u32>,
    ) -> Result<IssuedToken> {
        self.issue_token_for(actor.id(), name, days, None).await
    }

    /// Issues a token to `user`; `login` is the sign-in that asked for it, recorded with it.
    async fn issue_token_for(
        &self,
        user: UserId,
        name: &str,
        days: Option<u32>,
        login: Option<NewAuditEvent>,
    ) -> Result<IssuedToken> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ValidationError::new("name", "must be 1 to 64 characters").into());
        }
        let max = self.config.max_token_days;
        let days = days.unwrap_or(90.min(max));
        if days == 0 || days > max {
            return Err(
                ValidationError::new("expires_in_days", format!("must be 1 to {max}")).into(),
            );
        }
        let secret = format!("{API_TOKEN_PREFIX}{}", random_token());
        let now = self.now();
        let token = ApiToken {
            id: ApiTokenId::new(),
            user_id: user,
            name: name.to_owned(),
            prefix: secret[..API_TOKEN_PREFIX.len() + 6].to_owned(),
            created_at: now,
            expires_at: now.plus_seconds(i64::from(days) * 86_400),
            last_used_at: None,
            revoked_at: None,
        };
        let issued = NewAuditEvent::new(AuditAction::TokenIssued, Some(user))
            .target("api_token", token.id)
            .detail(json!({ "name": token.name, "prefix": token.prefix, "expires_at": token.expires_at }));
        let audit: Vec<NewAuditEvent> = login.into_iter().chain([issued]).collect();
        self.store
            .create_api_token(&token, &sha256_hex(&secret), &audit)
            .await?;
        Ok(IssuedToken { token, secret })
    }

    /// One page of the actor's API tokens, newest first.
    pub async fn list_tokens(&self, actor: &Actor, page: PageRequest) -> Result<Page<ApiToken>> {
        Ok(self.store.list_api_tokens(actor.id(), page).await?)
    }

    /// Revokes one of the actor's API tokens.
    pub async fn revoke_token(&self, actor: &Actor, id: ApiTokenId) -> Result<ApiToken> {
        let audit =
            NewAuditEvent::new(AuditAction::TokenRevoked, Some(actor.id())).target("api_token", id);
        Ok(self
            .store
            .revoke_api_token(actor.id(), id, self.now(), &audit)
            .await?)
    }

    /// Changes the actor's password after checking the current one; ends their sessions.
    pub async fn change_password(&self, actor: &Actor, current: &str, new: String) -> Result<()> {
        let new = Password::new(new)?;
        let Some((_, hash)) = self.store.user_login(&actor.user.email).await? else {
            return Err(Error::NotFound("user"));
        };
        if !verify_password(current, hash).await? {
            return Err(Error::Unauthenticated(
                "the current password is wrong".into(),
            ));
        }
        let hash = hash_password(new.expose()).await?;
        let audit = NewAuditEvent::new(AuditAction::PasswordChanged, Some(actor.id()))
            .target("user", actor.id());
        Ok(self.store.set_password(actor.id(), &hash, &audit).await?)
    }
}
