//! Nodes: add, list, show, drain, repair, remove.

use super::*;

pub(super) async fn add_node(
    api: &AdminApi,
    request: Request<pb::AddNodeRequest>,
) -> Result<Response<pb::NodeResponse>, Status> {
    let request = request.into_inner();
    let ((node, operation_id), topology) = api
        .state
        .commit(|t, now| {
            crate::operations::ensure_no_open_operation(t)?;
            let (node, created_group) = topology::add_node(
                t,
                &request.id,
                &request.address,
                GroupId(request.group_id),
                now,
            )?;
            let operation_id = crate::operations::plan_add_node(t, &node.id, node.group_id, now)?;
            let mut reason = if created_group {
                format!("node {} added to new group {}", node.id, node.group_id)
            } else {
                format!("node {} added to group {}", node.id, node.group_id)
            };
            if let Some(id) = operation_id {
                reason.push_str(&format!("; operation {id} moves its share of shards to it"));
            }
            Ok(((node, operation_id), reason))
        })
        .await?;
    api.state.moves_wake.notify_one();
    Ok(Response::new(pb::NodeResponse {
        node: Some(node),
        topology_version: topology.version,
        operation_id,
    }))
}

pub(super) async fn list_nodes(
    api: &AdminApi,
    _request: Request<pb::ListNodesRequest>,
) -> Result<Response<pb::ListNodesResponse>, Status> {
    let topology = api.state.topology();
    Ok(Response::new(pb::ListNodesResponse {
        nodes: topology.nodes.clone(),
        topology_version: topology.version,
    }))
}

pub(super) async fn get_node(
    api: &AdminApi,
    request: Request<pb::GetNodeRequest>,
) -> Result<Response<pb::NodeResponse>, Status> {
    Ok(Response::new(api.node_response(&request.into_inner().id)?))
}

pub(super) async fn drain_node(
    api: &AdminApi,
    request: Request<pb::DrainNodeRequest>,
) -> Result<Response<pb::NodeResponse>, Status> {
    let id = request.into_inner().id;
    api.move_off(id, false).await
}

pub(super) async fn repair_node(
    api: &AdminApi,
    request: Request<pb::RepairNodeRequest>,
) -> Result<Response<pb::NodeResponse>, Status> {
    let id = request.into_inner().id;
    api.move_off(id, true).await
}

pub(super) async fn remove_node(
    api: &AdminApi,
    request: Request<pb::RemoveNodeRequest>,
) -> Result<Response<pb::NodeResponse>, Status> {
    let id = request.into_inner().id;
    let (node, topology) = api
        .state
        .commit(|t, now| {
            let node = topology::remove_node(t, &id, now)?;
            Ok((node, format!("node {id} removed")))
        })
        .await?;
    Ok(Response::new(pb::NodeResponse {
        node: Some(node),
        topology_version: topology.version,
        operation_id: None,
    }))
}

impl AdminApi {
    /// Drain (or, with `repair`, repair a failed node): plan moving every copy it holds.
    async fn move_off(
        &self,
        id: String,
        repair: bool,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let ((node, operation_id), topology) = self
            .state
            .commit(|t, now| {
                crate::operations::ensure_no_open_operation(t)?;
                let node = if repair {
                    let node = t
                        .nodes
                        .iter()
                        .find(|n| n.id == id)
                        .cloned()
                        .ok_or_else(|| {
                            ControlPlaneError::NotFound(format!("node {id:?} does not exist"))
                        })?;
                    if node.state() != pb::NodeState::Failed {
                        return Err(ControlPlaneError::FailedPrecondition(format!(
                            "node {id:?} has not failed; drain it instead (`miroir-ctl node drain {id}`)"
                        )));
                    }
                    node
                } else {
                    topology::drain_node(t, &id, now)?
                };
                let operation_id = crate::operations::plan_drain(t, &id, repair, now)?;
                let verb = if repair { "repair of failed" } else { "drain of" };
                let reason = match operation_id {
                    Some(op) => format!("{verb} node {id}: operation {op} moves its copies"),
                    None => format!("{verb} node {id}: it holds no copy"),
                };
                Ok(((node, operation_id), reason))
            })
            .await?;
        self.state.moves_wake.notify_one();
        Ok(Response::new(pb::NodeResponse {
            node: Some(node),
            topology_version: topology.version,
            operation_id,
        }))
    }

    fn node_response(&self, id: &str) -> Result<pb::NodeResponse, ControlPlaneError> {
        let topology = self.state.topology();
        let node = topology
            .nodes
            .iter()
            .find(|n| n.id == id)
            .cloned()
            .ok_or_else(|| ControlPlaneError::NotFound(format!("node {id:?} does not exist")))?;
        Ok(pb::NodeResponse {
            node: Some(node),
            topology_version: topology.version,
            operation_id: None,
        })
    }
}
