//! Replica groups: add, list, remove.

use super::*;

pub(super) async fn add_group(
    api: &AdminApi,
    request: Request<pb::AddGroupRequest>,
) -> Result<Response<pb::GroupResponse>, Status> {
    let request = request.into_inner();
    let nodes: Vec<(String, String)> = request
        .nodes
        .into_iter()
        .map(|n| (n.id, n.address))
        .collect();
    let ((group, operation_id), topology) = api
        .state
        .commit(|t, now| {
            crate::operations::ensure_no_open_operation(t)?;
            let group = topology::add_group(t, request.id, &nodes, now)?;
            let operation_id = if t.indexes.is_empty() {
                None
            } else {
                crate::operations::plan_fill_group(t, group.id, now)?
            };
            let mut reason = format!("group {} added with {} node(s)", group.id, nodes.len());
            if let Some(id) = operation_id {
                reason.push_str(&format!("; operation {id} fills it"));
            }
            Ok(((group, operation_id), reason))
        })
        .await?;
    api.state.moves_wake.notify_one();
    Ok(Response::new(pb::GroupResponse {
        group: Some(group),
        nodes: topology
            .nodes
            .iter()
            .filter(|n| n.group_id == group.id)
            .cloned()
            .collect(),
        topology_version: topology.version,
        operation_id,
    }))
}

pub(super) async fn list_groups(
    api: &AdminApi,
    _request: Request<pb::ListGroupsRequest>,
) -> Result<Response<pb::ListGroupsResponse>, Status> {
    let topology = api.state.topology();
    let groups = topology
        .groups
        .iter()
        .map(|group| pb::GroupSummary {
            group: Some(*group),
            nodes: topology
                .nodes
                .iter()
                .filter(|n| n.group_id == group.id)
                .cloned()
                .collect(),
        })
        .collect();
    Ok(Response::new(pb::ListGroupsResponse {
        groups,
        topology_version: topology.version,
    }))
}

pub(super) async fn remove_group(
    api: &AdminApi,
    request: Request<pb::RemoveGroupRequest>,
) -> Result<Response<pb::GroupResponse>, Status> {
    let id = request.into_inner().id;
    let ((group, nodes), topology) = api
        .state
        .commit(|t, _| {
            let (group, nodes) = topology::remove_group(t, id)?;
            let reason = format!("group {id} removed with {} node(s)", nodes.len());
            Ok(((group, nodes), reason))
        })
        .await?;
    Ok(Response::new(pb::GroupResponse {
        group: Some(group),
        nodes,
        topology_version: topology.version,
        operation_id: None,
    }))
}
