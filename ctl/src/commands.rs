//! The subcommands.

use crate::Cli;
use crate::client::{connect, status_error};
use crate::moves;
use crate::output::{self, GroupView, IndexView, NodeView, StatusView};
use miroir_proto::pb::{self, admin_service_client::AdminServiceClient};
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Leader, topology version, nodes, groups, gateways and indexes.
    Status,
    /// Add, list, drain or remove Meilisearch nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Add, list or remove replica groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// List indexes or show one with its routing table.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Operations moving shard copies (node add, drain, repair, group add, replication
    /// change): list, follow, pause, resume, cancel.
    Moves {
        #[command(subcommand)]
        command: Option<crate::moves::MovesCommand>,
    },
    /// Index aliases: another name for an index, switched atomically (a reindex with no
    /// downtime: fill a new index, then `alias set NAME NEW`).
    #[command(subcommand)]
    Alias(crate::aliases::AliasCommand),
    /// The leader's continuous anti-entropy (comparing every shard's copies and repairing
    /// what differs): status, or a pass now.
    AntiEntropy {
        #[command(subcommand)]
        command: crate::anti_entropy::AntiEntropyCommand,
    },
    /// Wait until every live gateway serves a topology version (the barrier); fails
    /// naming the gateways still behind once the control plane's --gateway-ttl (30 s by
    /// default) has passed. Give --timeout more than that TTL to see them named.
    WaitApplied {
        /// The version to wait for (default: the current one).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Run a local fleet: a control plane, N nodes and a gateway, until Ctrl-C.
    Dev(crate::dev::DevArgs),
    /// Copy indexes from a running Meilisearch (--from URL --api-key KEY) or a Meilisearch
    /// dump (--dump FILE) into the fleet through a gateway: settings first, then the
    /// documents in pages, with progress; resumable (run it again).
    Import(crate::import::ImportArgs),
}

/// What `wait-applied` found.
#[derive(serde::Serialize)]
struct AppliedView {
    version: u64,
    lagging: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Add a node to a replica group (created if needed while no index exists). With
    /// indexes, the node takes its share of shard copies through an operation.
    Add {
        /// Stable node id, e.g. meili-0.
        #[arg(long)]
        id: String,
        /// The node's Meilisearch URL, e.g. http://127.0.0.1:7700.
        #[arg(long)]
        address: String,
        /// Replica group to join.
        #[arg(long, default_value_t = 0)]
        group: u32,
        /// Follow the operation until every shard moved.
        #[arg(long)]
        wait: bool,
    },
    /// List every node.
    List,
    /// Show one node.
    Show {
        /// Node id.
        id: String,
    },
    /// Move every shard copy off a node (an operation); then it can be removed.
    Drain {
        /// Node id.
        id: String,
        /// Follow the operation until every shard moved.
        #[arg(long)]
        wait: bool,
    },
    /// Restore the copies a failed node held from surviving replicas (an operation);
    /// the node is removed from the fleet at the end.
    Repair {
        /// Node id (state failed).
        id: String,
        /// Follow the operation until every shard moved.
        #[arg(long)]
        wait: bool,
    },
    /// Take a node out of the fleet.
    Remove {
        /// Node id.
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Add a replica group with its nodes. With indexes, the group is filled from a live
    /// group (an operation) and serves reads once every shard is copied.
    Add {
        /// Group number; the next free one when omitted.
        #[arg(long)]
        id: Option<u32>,
        /// A node of the group as ID=URL, e.g. meili-9=http://10.0.0.9:7700; repeat.
        #[arg(long = "node", value_parser = parse_node_spec)]
        nodes: Vec<pb::NodeSpec>,
        /// Follow the operation until the group is filled.
        #[arg(long)]
        wait: bool,
    },
    /// List every group with its nodes.
    List,
    /// Remove a group and its nodes (refused unless other groups hold every shard).
    Remove {
        /// Group number.
        id: u32,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum IndexCommand {
    /// List every index.
    List,
    /// Show an index with its routing table per group.
    Show {
        /// Index uid.
        uid: String,
    },
    /// Change an index's replication factor in every group (an operation).
    Replication {
        /// Index uid.
        uid: String,
        /// Copies of each shard inside each group.
        replication_factor: u32,
        /// Follow the operation until every shard moved.
        #[arg(long)]
        wait: bool,
    },
    /// Show the committed settings version and hash, and each node's hash read now and
    /// whether it matches.
    Settings {
        /// Index uid.
        uid: String,
        /// Repair every node whose settings differ from the committed ones, now.
        #[arg(long)]
        repair: bool,
    },
}

fn parse_node_spec(spec: &str) -> Result<pb::NodeSpec, String> {
    let (id, address) = spec
        .split_once('=')
        .ok_or_else(|| format!("expected ID=URL, got {spec:?}"))?;
    Ok(pb::NodeSpec {
        id: id.to_owned(),
        address: address.to_owned(),
    })
}

fn node_of(response: pb::NodeResponse) -> anyhow::Result<NodeView> {
    response
        .node
        .as_ref()
        .map(NodeView::from)
        .ok_or_else(|| anyhow::anyhow!("the control plane answered without a node"))
}

fn one_node_text(verb: &str) -> impl Fn(&NodeView) -> String + '_ {
    move |n| {
        format!(
            "node {} {verb}: group {}, state {}, address {}",
            n.id, n.group, n.state, n.address
        )
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Command::Dev(args) => return crate::dev::run(args).await,
        Command::Import(args) => return crate::import::run(args).await,
        command => command,
    };
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let channel = connect(&cli.control_plane, timeout).await?;
    let mut admin = AdminServiceClient::new(channel);
    let format = cli.output;
    match command {
        Command::Status => {
            let status = admin
                .get_cluster_status(pb::GetClusterStatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            output::print(format, &StatusView::from(&status), output::status_text)
        }
        Command::Node(command) => match command {
            NodeCommand::Add {
                id,
                address,
                group,
                wait,
            } => {
                let response = admin
                    .add_node(pb::AddNodeRequest {
                        id,
                        address,
                        group_id: group,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let operation = response.operation_id;
                if !(wait && format == output::Format::Json) {
                    output::print(format, &node_of(response)?, one_node_text("added"))?;
                }
                moves::started(&mut admin, operation, wait, format).await
            }
            NodeCommand::List => {
                let response = admin
                    .list_nodes(pb::ListNodesRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let nodes: Vec<NodeView> = response.nodes.iter().map(NodeView::from).collect();
                output::print(format, &nodes, |n| output::nodes_table(n))
            }
            NodeCommand::Show { id } => {
                let response = admin
                    .get_node(pb::GetNodeRequest { id })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                output::print(format, &node_of(response)?, one_node_text("is in"))
            }
            NodeCommand::Drain { id, wait } => {
                let response = admin
                    .drain_node(pb::DrainNodeRequest { id })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let operation = response.operation_id;
                if !(wait && format == output::Format::Json) {
                    output::print(format, &node_of(response)?, one_node_text("draining"))?;
                }
                moves::started(&mut admin, operation, wait, format).await
            }
            NodeCommand::Repair { id, wait } => {
                let response = admin
                    .repair_node(pb::RepairNodeRequest { id })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let operation = response.operation_id;
                if !(wait && format == output::Format::Json) {
                    output::print(format, &node_of(response)?, one_node_text("being repaired"))?;
                }
                moves::started(&mut admin, operation, wait, format).await
            }
            NodeCommand::Remove { id } => {
                let response = admin
                    .remove_node(pb::RemoveNodeRequest { id })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                output::print(format, &node_of(response)?, one_node_text("removed"))
            }
        },
        Command::Group(command) => match command {
            GroupCommand::Add { id, nodes, wait } => {
                let response = admin
                    .add_group(pb::AddGroupRequest { id, nodes })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let group = group_view(&response)?;
                if !(wait && format == output::Format::Json) {
                    output::print(format, &group, |g| {
                        format!(
                            "group {} added ({}) with node(s) {}",
                            g.id,
                            g.state,
                            g.nodes.join(", ")
                        )
                    })?;
                }
                moves::started(&mut admin, response.operation_id, wait, format).await
            }
            GroupCommand::List => {
                let response = admin
                    .list_groups(pb::ListGroupsRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let groups: Vec<GroupView> = response
                    .groups
                    .iter()
                    .filter_map(|s| {
                        s.group.map(|g| GroupView {
                            id: g.id,
                            state: output::group_state(g.state),
                            nodes: s.nodes.iter().map(|n| n.id.clone()).collect(),
                        })
                    })
                    .collect();
                output::print(format, &groups, |g| output::groups_table(g))
            }
            GroupCommand::Remove { id } => {
                let response = admin
                    .remove_group(pb::RemoveGroupRequest { id })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let group = group_view(&response)?;
                output::print(format, &group, |g| {
                    format!(
                        "group {} removed with {} node(s): {}",
                        g.id,
                        g.nodes.len(),
                        g.nodes.join(", ")
                    )
                })
            }
        },
        Command::WaitApplied { version } => {
            let answer = admin
                .await_applied(pb::AwaitAppliedRequest {
                    version: version.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let view = AppliedView {
                version: answer.version,
                lagging: answer.lagging,
            };
            output::print(format, &view, |v| {
                if v.lagging.is_empty() {
                    format!("every live gateway serves topology version {}", v.version)
                } else {
                    format!(
                        "gateways behind topology version {}: {}",
                        v.version,
                        v.lagging.join(", ")
                    )
                }
            })?;
            if view.lagging.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} gateway(s) behind", view.lagging.len())
            }
        }
        Command::Index(command) => match command {
            IndexCommand::List => {
                let response = admin
                    .list_indexes(pb::ListIndexesRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let indexes: Vec<IndexView> = response
                    .indexes
                    .iter()
                    .map(|i| IndexView::new(i, false))
                    .collect();
                output::print(format, &indexes, |i| output::indexes_table(i))
            }
            IndexCommand::Show { uid } => {
                let response = admin
                    .get_index(pb::GetIndexRequest { uid })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let index = response
                    .index
                    .as_ref()
                    .map(|i| IndexView::new(i, true))
                    .ok_or_else(|| {
                        anyhow::anyhow!("the control plane answered without an index")
                    })?;
                output::print(format, &index, output::routing_text)
            }
            IndexCommand::Replication {
                uid,
                replication_factor,
                wait,
            } => {
                let response = admin
                    .set_replication_factor(pb::SetReplicationFactorRequest {
                        uid: uid.clone(),
                        replication_factor,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let operation = response
                    .operation
                    .filter(|op| {
                        op.moves_total > 0 || op.state != pb::OperationState::Succeeded as i32
                    })
                    .map(|op| op.id);
                if format == output::Format::Text {
                    println!("index {uid}: replication factor {replication_factor}");
                }
                moves::started(&mut admin, operation, wait, format).await
            }
            IndexCommand::Settings { uid, repair } => {
                let request = pb::GetIndexSettingsRequest { uid };
                let report = if repair {
                    admin.repair_index_settings(request).await
                } else {
                    admin.get_index_settings(request).await
                }
                .map_err(status_error)?
                .into_inner();
                let view = output::SettingsView::new(&report, repair);
                output::print(format, &view, output::settings_text)
            }
        },
        Command::Moves { command } => {
            moves::run(
                &mut admin,
                command.unwrap_or(moves::MovesCommand::List),
                format,
            )
            .await
        }
        Command::Alias(command) => crate::aliases::run(&mut admin, command, format).await,
        Command::AntiEntropy { command } => {
            crate::anti_entropy::run(&mut admin, command, format).await
        }
        Command::Dev(_) | Command::Import(_) => unreachable!("handled above"),
    }
}

fn group_view(response: &pb::GroupResponse) -> anyhow::Result<GroupView> {
    let group = response
        .group
        .ok_or_else(|| anyhow::anyhow!("the control plane answered without a group"))?;
    Ok(GroupView {
        id: group.id,
        state: output::group_state(group.state),
        nodes: response.nodes.iter().map(|n| n.id.clone()).collect(),
    })
}
