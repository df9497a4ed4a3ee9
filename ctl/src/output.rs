//! Views of the control plane's answers, printed as aligned text or JSON.

use miroir_proto::pb::{self, GroupState, NodeState};
use serde::Serialize;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned, human-readable text.
    Text,
    /// JSON, for scripts.
    Json,
}

/// A node as printed.
#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    pub group: u32,
    pub state: &'static str,
    pub state_changed_at_ms: u64,
}

pub fn node_state(state: i32) -> &'static str {
    NodeState::name_of(state)
}

pub fn group_state(state: i32) -> &'static str {
    GroupState::name_of(state)
}

impl From<&pb::Node> for NodeView {
    fn from(node: &pb::Node) -> Self {
        Self {
            id: node.id.clone(),
            address: node.address.clone(),
            group: node.group_id,
            state: node_state(node.state),
            state_changed_at_ms: node.state_changed_at_ms,
        }
    }
}

/// A group as printed.
#[derive(Debug, Serialize)]
pub struct GroupView {
    pub id: u32,
    pub state: &'static str,
    pub nodes: Vec<String>,
}

/// A shard route as printed.
#[derive(Debug, Serialize)]
pub struct ShardView {
    pub shard: u32,
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub blocked: bool,
}

/// A group's routing table as printed.
#[derive(Debug, Serialize)]
pub struct RoutingView {
    pub group: u32,
    pub shards: Vec<ShardView>,
}

/// An index as printed.
#[derive(Debug, Serialize)]
pub struct IndexView {
    pub uid: String,
    pub primary_key: Option<String>,
    pub shard_count: u32,
    pub replication_factor: u32,
    pub settings_version: u64,
    pub created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Vec<RoutingView>>,
}

impl IndexView {
    pub fn new(index: &pb::Index, with_routing: bool) -> Self {
        Self {
            uid: index.uid.clone(),
            primary_key: index.primary_key.clone(),
            shard_count: index.shard_count,
            replication_factor: index.replication_factor,
            settings_version: index.settings_version,
            created_at_ms: index.created_at_ms,
            routing: with_routing.then(|| {
                index
                    .routing
                    .iter()
                    .map(|g| RoutingView {
                        group: g.group_id,
                        shards: g
                            .shards
                            .iter()
                            .map(|s| ShardView {
                                shard: s.shard,
                                read: s.read_nodes.clone(),
                                write: s.write_nodes.clone(),
                                blocked: s.blocked,
                            })
                            .collect(),
                    })
                    .collect()
            }),
        }
    }
}

/// A gateway as printed.
#[derive(Debug, Serialize)]
pub struct GatewayView {
    pub id: String,
    pub address: String,
    pub applied_version: u64,
    pub lag: u64,
    pub last_heartbeat_ms_ago: u64,
    pub connected: bool,
}

/// The leader as printed.
#[derive(Debug, Serialize)]
pub struct LeaderView {
    pub id: String,
    pub address: String,
    pub fencing_token: u64,
    pub coordination: String,
    pub answered_by: String,
}

/// The cluster status as printed.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub leader: Option<LeaderView>,
    pub topology_version: u64,
    pub store: String,
    pub nodes: Vec<NodeView>,
    pub groups: Vec<GroupView>,
    pub gateways: Vec<GatewayView>,
    pub indexes: Vec<IndexView>,
    pub settings: SettingsCounts,
    pub control_planes: Vec<ControlPlaneView>,
}

/// A control-plane process as printed.
#[derive(Debug, Serialize)]
pub struct ControlPlaneView {
    pub id: String,
    pub address: String,
    pub role: String,
    pub last_seen_ms_ago: u64,
}

/// What the settings reconcilers did since the control plane started.
#[derive(Debug, Serialize)]
pub struct SettingsCounts {
    pub commits: u64,
    pub failures: u64,
    pub drift_repairs: u64,
}

/// One node's settings, as `miroir-ctl index settings` prints it.
#[derive(Debug, Serialize)]
pub struct NodeSettingsView {
    pub node: String,
    pub hash: String,
    pub matches: bool,
    pub verified_version: u64,
    pub error: String,
}

/// An index's settings versions across nodes.
#[derive(Debug, Serialize)]
pub struct SettingsView {
    pub uid: String,
    pub settings_version: u64,
    pub settings_hash: String,
    pub pending_change: Option<u64>,
    pub pending_target_version: Option<u64>,
    pub repaired: Option<u32>,
    pub nodes: Vec<NodeSettingsView>,
    pub settings: serde_json::Value,
}

impl SettingsView {
    pub fn new(report: &pb::IndexSettingsReport, repair: bool) -> Self {
        Self {
            uid: report.uid.clone(),
            settings_version: report.settings_version,
            settings_hash: report.settings_hash.clone(),
            pending_change: report.pending.map(|p| p.change_id),
            pending_target_version: report.pending.map(|p| p.target_version),
            repaired: repair.then_some(report.repaired),
            nodes: report
                .nodes
                .iter()
                .map(|n| NodeSettingsView {
                    node: n.node_id.clone(),
                    hash: n.hash.clone(),
                    matches: n.matches,
                    verified_version: n.verified_version,
                    error: n.error.clone(),
                })
                .collect(),
            settings: serde_json::from_str(&report.settings_json)
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

fn short(hash: &str) -> String {
    if hash.is_empty() {
        "-".to_owned()
    } else {
        hash.chars().take(12).collect()
    }
}

pub fn settings_text(view: &SettingsView) -> String {
    let mut out = format!(
        "index:     {}
",
        view.uid
    );
    out.push_str(&format!(
        "settings:  version {}, hash {}",
        view.settings_version,
        short(&view.settings_hash)
    ));
    if let (Some(change), Some(target)) = (view.pending_change, view.pending_target_version) {
        out.push_str(&format!(
            " (change {change} between propose and commit, as version {target})"
        ));
    }
    out.push('\n');
    if let Some(repaired) = view.repaired {
        out.push_str(&format!("repaired:  {repaired} node(s)\n"));
    }
    out.push('\n');
    out.push_str(&table(
        &["NODE", "HASH", "MATCHES", "VERIFIED VERSION", "ERROR"],
        &view
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.node.clone(),
                    short(&n.hash),
                    if n.matches { "yes" } else { "no" }.to_owned(),
                    n.verified_version.to_string(),
                    n.error.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    out
}

impl From<&pb::ClusterStatus> for StatusView {
    fn from(status: &pb::ClusterStatus) -> Self {
        Self {
            leader: status.leader.as_ref().map(|l| LeaderView {
                id: l.leader_id.clone(),
                address: l.leader_address.clone(),
                fencing_token: l.fencing_token,
                coordination: l.coordination.clone(),
                answered_by: l.answered_by.clone(),
            }),
            topology_version: status.topology_version,
            store: status.store.clone(),
            nodes: status.nodes.iter().map(NodeView::from).collect(),
            groups: status
                .groups
                .iter()
                .map(|g| GroupView {
                    id: g.id,
                    state: group_state(g.state),
                    nodes: status
                        .nodes
                        .iter()
                        .filter(|n| n.group_id == g.id)
                        .map(|n| n.id.clone())
                        .collect(),
                })
                .collect(),
            gateways: status
                .gateways
                .iter()
                .map(|g| GatewayView {
                    id: g.id.clone(),
                    address: g.address.clone(),
                    applied_version: g.applied_version,
                    lag: g.lag,
                    last_heartbeat_ms_ago: g.last_heartbeat_ms_ago,
                    connected: g.connected,
                })
                .collect(),
            indexes: status
                .indexes
                .iter()
                .map(|i| IndexView {
                    uid: i.uid.clone(),
                    primary_key: i.primary_key.clone(),
                    shard_count: i.shard_count,
                    replication_factor: i.replication_factor,
                    settings_version: i.settings_version,
                    created_at_ms: 0,
                    routing: None,
                })
                .collect(),
            control_planes: status
                .control_planes
                .iter()
                .map(|cp| ControlPlaneView {
                    id: cp.id.clone(),
                    address: cp.address.clone(),
                    role: cp.role.clone(),
                    last_seen_ms_ago: cp.last_seen_ms_ago,
                })
                .collect(),
            settings: SettingsCounts {
                commits: status.settings_commits,
                failures: status.settings_failures,
                drift_repairs: status.settings_drift_repairs,
            },
        }
    }
}

/// Aligns rows under a header, two spaces between columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn nodes_table(nodes: &[NodeView]) -> String {
    table(
        &["ID", "GROUP", "STATE", "ADDRESS"],
        &nodes
            .iter()
            .map(|n| {
                vec![
                    n.id.clone(),
                    n.group.to_string(),
                    n.state.to_owned(),
                    n.address.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

pub fn groups_table(groups: &[GroupView]) -> String {
    table(
        &["GROUP", "STATE", "NODES"],
        &groups
            .iter()
            .map(|g| vec![g.id.to_string(), g.state.to_owned(), g.nodes.join(",")])
            .collect::<Vec<_>>(),
    )
}

pub fn indexes_table(indexes: &[IndexView]) -> String {
    table(
        &["UID", "SHARDS", "RF", "SETTINGS VERSION", "PRIMARY KEY"],
        &indexes
            .iter()
            .map(|i| {
                vec![
                    i.uid.clone(),
                    i.shard_count.to_string(),
                    i.replication_factor.to_string(),
                    i.settings_version.to_string(),
                    i.primary_key.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

pub fn status_text(status: &StatusView) -> String {
    let mut out = String::new();
    match &status.leader {
        Some(l) => out.push_str(&format!(
            "leader:    {} at {} (fencing token {}, {}; answered by {})\n",
            l.id, l.address, l.fencing_token, l.coordination, l.answered_by
        )),
        None => out.push_str("leader:    unknown\n"),
    }
    out.push_str(&format!("store:     {}\n", status.store));
    let fencing_token = status.leader.as_ref().map_or(0, |l| l.fencing_token);
    out.push_str(&format!(
        "\ncontrol planes ({}):\n",
        status.control_planes.len()
    ));
    out.push_str(&table(
        &["ID", "ROLE", "FENCING TOKEN", "LAST SEEN", "ADDRESS"],
        &status
            .control_planes
            .iter()
            .map(|cp| {
                vec![
                    cp.id.clone(),
                    cp.role.clone(),
                    if cp.role == "leader" {
                        fencing_token.to_string()
                    } else {
                        "-".to_owned()
                    },
                    format!("{} ms ago", cp.last_seen_ms_ago),
                    cp.address.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    out.push_str("\n\n");
    out.push_str(&format!("topology:  version {}\n", status.topology_version));
    out.push_str(&format!("\nnodes ({}):\n", status.nodes.len()));
    out.push_str(&nodes_table(&status.nodes));
    out.push_str(&format!("\n\ngroups ({}):\n", status.groups.len()));
    out.push_str(&groups_table(&status.groups));
    out.push_str(&format!("\n\ngateways ({}):\n", status.gateways.len()));
    out.push_str(&table(
        &[
            "ID",
            "APPLIED VERSION",
            "LAG",
            "LAST HEARTBEAT",
            "CONNECTED",
            "ADDRESS",
        ],
        &status
            .gateways
            .iter()
            .map(|g| {
                vec![
                    g.id.clone(),
                    g.applied_version.to_string(),
                    g.lag.to_string(),
                    format!("{} ms ago", g.last_heartbeat_ms_ago),
                    if g.connected { "yes" } else { "no" }.to_owned(),
                    g.address.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    out.push_str(&format!("\n\nindexes ({}):\n", status.indexes.len()));
    out.push_str(&indexes_table(&status.indexes));
    out.push_str(&format!(
        "\n\nsettings:  {} committed, {} failed, {} node repair(s) by the drift reconciler\n",
        status.settings.commits, status.settings.failures, status.settings.drift_repairs
    ));
    out
}

pub fn routing_text(index: &IndexView) -> String {
    let mut out = indexes_table(std::slice::from_ref(index));
    for group in index.routing.iter().flatten() {
        out.push_str(&format!("\n\nrouting, group {}:\n", group.group));
        out.push_str(&table(
            &["SHARD", "READ", "WRITE", "BLOCKED"],
            &group
                .shards
                .iter()
                .map(|s| {
                    vec![
                        s.shard.to_string(),
                        s.read.join(","),
                        s.write.join(","),
                        if s.blocked { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
    }
    out
}

/// Prints `value` as JSON, or `text()` as text.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Text => println!("{}", text(value)),
    }
    Ok(())
}
