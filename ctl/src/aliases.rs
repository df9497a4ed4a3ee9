//! `miroir-ctl alias set|list|remove`: index aliases.

use crate::client::status_error;
use crate::output::{self, Format};
use miroir_proto::pb::{self, admin_service_client::AdminServiceClient};
use serde::Serialize;
use tonic::transport::Channel;

#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Point an alias at an index: creates it, or switches it atomically (every gateway
    /// moves at one topology version; requests through it wait meanwhile).
    Set {
        /// The alias, the name clients use as an index uid.
        name: String,
        /// The index it names.
        index: String,
    },
    /// Every alias and its index.
    List,
    /// Remove an alias (its index stays).
    Remove {
        /// The alias.
        name: String,
    },
}

/// An alias as printed.
#[derive(Serialize)]
struct AliasView {
    name: String,
    index: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_index: Option<String>,
    topology_version: u64,
}

impl AliasView {
    fn of(response: pb::AliasResponse) -> anyhow::Result<Self> {
        let alias = response
            .alias
            .ok_or_else(|| anyhow::anyhow!("the control plane answered without an alias"))?;
        Ok(Self {
            name: alias.name,
            index: alias.index_uid,
            previous_index: (!response.previous_index_uid.is_empty())
                .then_some(response.previous_index_uid),
            topology_version: response.topology_version,
        })
    }
}

pub async fn run(
    admin: &mut AdminServiceClient<Channel>,
    command: AliasCommand,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        AliasCommand::Set { name, index } => {
            let response = admin
                .set_alias(pb::SetAliasRequest {
                    name,
                    index_uid: index,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let view = AliasView::of(response)?;
            output::print(format, &view, |a| match &a.previous_index {
                Some(previous) if previous != &a.index => format!(
                    "alias {} switched from {previous} to {} (topology version {}, served by every gateway)",
                    a.name, a.index, a.topology_version
                ),
                Some(_) => format!("alias {} already names {}", a.name, a.index),
                None => format!(
                    "alias {} created for {} (topology version {}, served by every gateway)",
                    a.name, a.index, a.topology_version
                ),
            })
        }
        AliasCommand::List => {
            let response = admin
                .list_aliases(pb::ListAliasesRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let views: Vec<AliasView> = response
                .aliases
                .into_iter()
                .map(|a| AliasView {
                    name: a.name,
                    index: a.index_uid,
                    previous_index: None,
                    topology_version: response.topology_version,
                })
                .collect();
            output::print(format, &views, |views| {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|a| vec![a.name.clone(), a.index.clone()])
                    .collect();
                output::table(&["ALIAS", "INDEX"], &rows)
            })
        }
        AliasCommand::Remove { name } => {
            let response = admin
                .remove_alias(pb::RemoveAliasRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            let view = AliasView::of(response)?;
            output::print(format, &view, |a| {
                format!("alias {} removed (index {} stays)", a.name, a.index)
            })
        }
    }
}
