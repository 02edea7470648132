//! `switchboard org`: organizations and their members.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::OrgCommand;
use crate::client::Api;
use crate::output::{Table, print_json, str_field, text, time};
use crate::prompt;
use crate::remote::{OrgRef, my_orgs, resolve_org};

/// Finds a member by email (case-insensitively: the server keeps emails lowercase) or user id.
async fn resolve_member(api: &Api, org: &OrgRef, wanted: &str) -> Result<Value> {
    let members = api.list_all(&["orgs", &org.id, "members"]).await?;
    members
        .into_iter()
        .find(|m| {
            str_field(m, "email").is_some_and(|e| e.eq_ignore_ascii_case(wanted.trim()))
                || str_field(m, "user_id") == Some(wanted)
        })
        .ok_or_else(|| anyhow::anyhow!("email: {wanted:?} is not a member of {}", org.slug))
}

fn member_id(member: &Value) -> Result<String> {
    match str_field(member, "user_id") {
        Some(id) => Ok(id.to_owned()),
        None => bail!("the server's answer has no user_id"),
    }
}

/// `org ...`.
pub async fn run(api: &Api, json: bool, org: Option<&str>, command: OrgCommand) -> Result<()> {
    match command {
        OrgCommand::List => {
            let orgs = my_orgs(api).await?;
            if json {
                print_json(&Value::Array(orgs));
                return Ok(());
            }
            let mut table = Table::new(&["slug", "name", "role", "created", "id"]);
            for o in &orgs {
                table.row(vec![
                    text(o, "organization.slug"),
                    text(o, "organization.name"),
                    text(o, "role"),
                    time(o, "organization.created_at"),
                    text(o, "organization.id"),
                ]);
            }
            table.print_or("you belong to no organization");
        }
        OrgCommand::Create { slug, name } => {
            let name = name.unwrap_or_else(|| slug.clone());
            let created = api
                .post(&["orgs"], &json!({ "slug": slug, "name": name }))
                .await?;
            if json {
                print_json(&created);
            } else {
                outln!(
                    "created the organization {} ({}); you are its owner",
                    text(&created, "slug"),
                    text(&created, "name")
                );
            }
        }
        OrgCommand::Show { slug } => {
            let target = resolve_org(api, slug.as_deref().or(org)).await?;
            let shown = api.get(&["orgs", &target.id]).await?;
            if json {
                print_json(&shown);
                return Ok(());
            }
            Table::details(vec![
                ("slug", text(&shown, "slug")),
                ("name", text(&shown, "name")),
                ("new functions", text(&shown, "settings.new_functions")),
                ("created", time(&shown, "created_at")),
                ("id", text(&shown, "id")),
            ])
            .print();
        }
        OrgCommand::Members => {
            let target = resolve_org(api, org).await?;
            let members = api.list_all(&["orgs", &target.id, "members"]).await?;
            if json {
                print_json(&Value::Array(members));
                return Ok(());
            }
            let mut table = Table::new(&["email", "name", "role", "joined"]);
            for m in &members {
                table.row(vec![
                    text(m, "email"),
                    text(m, "display_name"),
                    text(m, "role"),
                    time(m, "joined_at"),
                ]);
            }
            table.print_or("no members");
        }
        OrgCommand::AddMember {
            email,
            role,
            name,
            password,
        } => {
            let target = resolve_org(api, org).await?;
            let mut body = json!({ "email": email, "role": role.as_str() });
            if let Some(name) = name {
                body["display_name"] = json!(name);
            }
            if password {
                let password =
                    prompt::new_password("Initial password for the new account: ", false)?;
                body["password"] = json!(*password);
            }
            let member = api.post(&["orgs", &target.id, "members"], &body).await?;
            if json {
                print_json(&member);
            } else {
                outln!(
                    "added {} to {} as {}",
                    text(&member, "email"),
                    target.slug,
                    text(&member, "role")
                );
            }
        }
        OrgCommand::SetRole { email, role } => {
            let target = resolve_org(api, org).await?;
            let member = resolve_member(api, &target, &email).await?;
            let id = member_id(&member)?;
            let changed = api
                .patch(
                    &["orgs", &target.id, "members", &id],
                    &json!({ "role": role.as_str() }),
                )
                .await?;
            if json {
                print_json(&changed);
            } else {
                outln!(
                    "{} is now {} of {}",
                    text(&member, "email"),
                    role.as_str(),
                    target.slug
                );
            }
        }
        OrgCommand::RemoveMember { email } => {
            let target = resolve_org(api, org).await?;
            let member = resolve_member(api, &target, &email).await?;
            let id = member_id(&member)?;
            api.delete(&["orgs", &target.id, "members", &id]).await?;
            if json {
                print_json(&json!({ "removed": member }));
            } else {
                outln!("removed {} from {}", text(&member, "email"), target.slug);
            }
        }
    }
    Ok(())
}
