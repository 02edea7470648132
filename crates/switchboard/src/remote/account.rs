//! Signing in and out, and the signed-in user's own account: profile, password, API tokens.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::{LoginArgs, LogoutArgs, UserCommand};
use crate::client::{Api, ApiError, parse_server};
use crate::credentials::{self, Credentials};
use crate::output::{Table, print_json, str_field, text, time};
use crate::prompt;
use crate::remote::id_of;

/// The default token name: which machine the token lives on, so the user can tell their
/// tokens apart in `user tokens`.
fn default_token_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    match host {
        Some(host) => crate::output::truncate(&format!("cli@{host}"), 64),
        None => "cli".to_owned(),
    }
}

/// `login`.
pub async fn login(args: LoginArgs) -> Result<()> {
    let kept = credentials::load().ok().flatten();
    let server = match args.server {
        Some(server) => server,
        None => prompt::ask(
            "Server URL",
            kept.as_ref().map(|c| c.server.as_str()),
            "--server",
        )?,
    };
    let server_url = parse_server(&server)?;
    if server_url.scheme() == "http" && !is_loopback(&server_url) {
        eprintln!(
            "warning: {server_url} uses plain http; your password and token cross the network unencrypted"
        );
    }
    let email = match args.email {
        Some(email) => email,
        None => prompt::ask("Email", None, "--email")?,
    };
    let password = prompt::secret("Password: ", "password", args.password_stdin)?;
    let api = Api::new(server_url.as_str(), None)?;
    let mut body = json!({
        "email": email,
        "password": *password,
        "name": args.token_name.unwrap_or_else(default_token_name),
    });
    if let Some(days) = args.expires_in_days {
        body["expires_in_days"] = json!(days);
    }
    let issued = api.post(&["auth", "token"], &body).await?;
    let Some(secret) = str_field(&issued, "secret") else {
        bail!("the server's answer holds no token");
    };
    let token_id = str_field(&issued, "token.id").map(str::to_owned);
    let path = credentials::save(&Credentials {
        server: server_url.to_string(),
        token: secret.to_owned(),
        token_id,
    })?;

    // The token this login replaces is of no more use; revoke it rather than leave a live
    // credential nobody holds. Best effort: it may have expired or been revoked already.
    if let Some(old) = kept.filter(|k| k.server == server_url.as_str() && k.token != secret)
        && let (Ok(old_api), Some(id)) = (Api::new(&old.server, Some(old.token)), old.token_id)
    {
        let _ = old_api.delete(&["me", "tokens", &id]).await;
    }
    outln!(
        "signed in to {server_url} as {email}; token {} expires {}; kept in {}",
        text(&issued, "token.name"),
        time(&issued, "token.expires_at"),
        path.display()
    );
    Ok(())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `logout`.
pub async fn logout(args: LogoutArgs) -> Result<()> {
    let Some(kept) = credentials::load()? else {
        outln!("not signed in");
        return Ok(());
    };
    let api = Api::new(&kept.server, Some(kept.token.clone()))?;
    let revoked = async {
        let id = match &kept.token_id {
            Some(id) => id.clone(),
            None => find_own_token(&api, &kept.token).await?,
        };
        api.delete(&["me", "tokens", &id]).await.map(|_| ())
    }
    .await;
    match revoked {
        Ok(()) => {}
        // Rejected as unknown or unauthenticated: the token is already dead, which is the goal.
        Err(e)
            if e.downcast_ref::<ApiError>()
                .is_some_and(|a| matches!(a.status.as_u16(), 401 | 404)) => {}
        Err(e) if args.forget => {
            eprintln!("warning: the token could not be revoked ({e:#}); forgetting it anyway")
        }
        Err(e) => {
            bail!("{e:#}; the token is still kept (use --forget to drop it without revoking)")
        }
    }
    credentials::remove()?;
    outln!("signed out of {}", kept.server);
    Ok(())
}

/// The id of the kept token, found among the user's tokens by its prefix.
async fn find_own_token(api: &Api, secret: &str) -> Result<String> {
    let tokens = api.list_all(&["me", "tokens"]).await?;
    tokens
        .iter()
        .find(|t| str_field(t, "prefix").is_some_and(|p| !p.is_empty() && secret.starts_with(p)))
        .map(id_of)
        .transpose()?
        .ok_or_else(|| anyhow::anyhow!("the kept token is not among your tokens"))
}

/// `user ...`.
pub async fn user(api: &Api, json: bool, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Me => {
            let me = api.get(&["me"]).await?;
            if json {
                print_json(&me);
                return Ok(());
            }
            Table::details(vec![
                ("email", text(&me, "user.email")),
                ("name", text(&me, "user.display_name")),
                ("id", text(&me, "user.id")),
                ("created", time(&me, "user.created_at")),
                ("server", api.server().to_string()),
            ])
            .print();
            let mut orgs = Table::new(&["organization", "name", "role"]);
            for o in me
                .get("organizations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                orgs.row(vec![
                    text(o, "organization.slug"),
                    text(o, "organization.name"),
                    text(o, "role"),
                ]);
            }
            outln!();
            orgs.print_or("member of no organization");
        }
        UserCommand::Password { password_stdin } => {
            let current = prompt::secret("Current password: ", "current password", password_stdin)?;
            let new = prompt::new_password("New password: ", password_stdin)?;
            api.post(
                &["me", "password"],
                &json!({"current_password": *current, "new_password": *new}),
            )
            .await?;
            outln!("password changed; your browser sessions were ended, API tokens still work");
        }
        UserCommand::Tokens => {
            let tokens = api.list_all(&["me", "tokens"]).await?;
            if json {
                print_json(&Value::Array(tokens));
                return Ok(());
            }
            let mut table = Table::new(&[
                "name",
                "prefix",
                "created",
                "expires",
                "last used",
                "revoked",
                "id",
            ]);
            for t in &tokens {
                table.row(vec![
                    text(t, "name"),
                    text(t, "prefix"),
                    time(t, "created_at"),
                    time(t, "expires_at"),
                    time(t, "last_used_at"),
                    time(t, "revoked_at"),
                    text(t, "id"),
                ]);
            }
            table.print_or("no API tokens");
        }
        UserCommand::TokenCreate {
            name,
            expires_in_days,
        } => {
            let mut body = json!({ "name": name });
            if let Some(days) = expires_in_days {
                body["expires_in_days"] = json!(days);
            }
            let issued = api.post(&["me", "tokens"], &body).await?;
            if json {
                print_json(&issued);
                return Ok(());
            }
            eprintln!(
                "created token {} (expires {}); its secret, shown only now:",
                text(&issued, "token.name"),
                time(&issued, "token.expires_at")
            );
            outln!("{}", text(&issued, "secret"));
        }
        UserCommand::TokenRevoke { token } => {
            let tokens = api.list_all(&["me", "tokens"]).await?;
            let matches: Vec<&Value> = tokens
                .iter()
                .filter(|t| {
                    str_field(t, "id") == Some(token.as_str())
                        || str_field(t, "prefix") == Some(token.as_str())
                        || str_field(t, "name") == Some(token.as_str())
                })
                .collect();
            let target = match matches.as_slice() {
                [one] => *one,
                [] => bail!("token: you have no token with the id, prefix or name {token:?}"),
                _ => bail!(
                    "token: several tokens are named {token:?}; give the id instead (see `switchboard user tokens`)"
                ),
            };
            let id = id_of(target)?;
            let answer = api.delete(&["me", "tokens", &id]).await?;
            if json {
                print_json(&answer);
            } else {
                outln!(
                    "revoked token {} ({})",
                    text(target, "name"),
                    text(target, "prefix")
                );
            }
        }
    }
    Ok(())
}
