//! Commands that work through a running server's REST API, and what they share: finding the
//! organization and the connector a command means from the names people type.

pub mod account;
pub mod audit;
pub mod call;
pub mod connectors;
pub mod engine;
pub mod loopback;
pub mod orgs;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::client::Api;
use crate::output::str_field;

/// An organization the signed-in user belongs to.
#[derive(Debug, Clone)]
pub struct OrgRef {
    /// Its id.
    pub id: String,
    /// Its slug.
    pub slug: String,
}

/// The organizations of the signed-in user, each as `{organization, role}`, every page of them.
pub async fn my_orgs(api: &Api) -> Result<Vec<Value>> {
    api.list_all(&["orgs"]).await
}

/// Picks the organization named by `--org` (a slug, or an id), or the user's only one.
pub async fn resolve_org(api: &Api, wanted: Option<&str>) -> Result<OrgRef> {
    let orgs = my_orgs(api).await?;
    let org_ref = |v: &Value| OrgRef {
        id: str_field(v, "organization.id")
            .unwrap_or_default()
            .to_owned(),
        slug: str_field(v, "organization.slug")
            .unwrap_or_default()
            .to_owned(),
    };
    match wanted {
        Some(wanted) => orgs
            .iter()
            .map(org_ref)
            .find(|o| o.slug.eq_ignore_ascii_case(wanted) || o.id == wanted)
            .ok_or_else(|| {
                anyhow::anyhow!("org: you are not a member of an organization {wanted:?}")
            }),
        None => match orgs.as_slice() {
            [only] => Ok(org_ref(only)),
            [] => bail!(
                "you belong to no organization; create one with `switchboard org create SLUG`"
            ),
            several => {
                let slugs: Vec<String> = several.iter().map(|o| org_ref(o).slug).collect();
                bail!(
                    "you belong to several organizations ({}); choose one with --org SLUG",
                    slugs.join(", ")
                )
            }
        },
    }
}

/// Finds a connector of the organization by name (case-insensitively, as the server keeps
/// names unique) or by id.
pub async fn resolve_connector(api: &Api, org: &OrgRef, wanted: &str) -> Result<Value> {
    let connectors = api.list_all(&["orgs", &org.id, "connectors"]).await?;
    let by = |pred: &dyn Fn(&Value) -> bool| connectors.iter().find(|c| pred(c)).cloned();
    by(&|c| str_field(c, "name") == Some(wanted))
        .or_else(|| by(&|c| str_field(c, "name").is_some_and(|n| n.eq_ignore_ascii_case(wanted))))
        .or_else(|| by(&|c| str_field(c, "id") == Some(wanted)))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "connector: the organization {} has no connector {wanted:?}",
                org.slug
            )
        })
}

/// The id field of an API object.
pub fn id_of(value: &Value) -> Result<String> {
    match str_field(value, "id") {
        Some(id) => Ok(id.to_owned()),
        None => bail!("the server's answer has no id"),
    }
}
