//! Fleet operations (shard moves): replication factor changes, listing, pause, resume, cancel.

use super::*;

pub(super) async fn set_replication_factor(
    api: &AdminApi,
    request: Request<pb::SetReplicationFactorRequest>,
) -> Result<Response<pb::OperationResponse>, Status> {
    let request = request.into_inner();
    let (operation_id, topology) = api
        .state
        .commit(|t, now| {
            crate::operations::ensure_no_open_operation(t)?;
            let id = crate::operations::plan_replication(
                t,
                &request.uid,
                request.replication_factor,
                now,
            )?;
            Ok((
                id,
                format!(
                    "replication factor of index {} set to {}",
                    request.uid, request.replication_factor
                ),
            ))
        })
        .await?;
    api.state.moves_wake.notify_one();
    Ok(Response::new(operation_response(
        &api.state,
        &topology,
        operation_id.unwrap_or(topology.version),
    )))
}

pub(super) async fn list_operations(
    api: &AdminApi,
    _request: Request<pb::ListOperationsRequest>,
) -> Result<Response<pb::ListOperationsResponse>, Status> {
    let topology = api.state.topology();
    let mut operations = topology.operations.clone();
    operations.sort_by_key(|op| (!crate::operations::is_open(op), std::cmp::Reverse(op.id)));
    Ok(Response::new(pb::ListOperationsResponse {
        operations,
        moves: api.state.move_progress.overlay(&topology.moves),
        topology_version: topology.version,
        live: matches!(api.state.leadership(), LeadershipStatus::Leader { .. }),
    }))
}

pub(super) async fn get_operation(
    api: &AdminApi,
    request: Request<pb::OperationRequest>,
) -> Result<Response<pb::OperationResponse>, Status> {
    let id = request.into_inner().id;
    let topology = api.state.topology();
    if !topology.operations.iter().any(|o| o.id == id) {
        return Err(ControlPlaneError::NotFound(format!("operation {id} does not exist")).into());
    }
    Ok(Response::new(operation_response(&api.state, &topology, id)))
}

pub(super) async fn pause_operation(
    api: &AdminApi,
    request: Request<pb::OperationRequest>,
) -> Result<Response<pb::OperationResponse>, Status> {
    api.control(request.into_inner().id, pb::OperationState::Paused)
        .await
}

pub(super) async fn resume_operation(
    api: &AdminApi,
    request: Request<pb::OperationRequest>,
) -> Result<Response<pb::OperationResponse>, Status> {
    api.control(request.into_inner().id, pb::OperationState::Running)
        .await
}

pub(super) async fn cancel_operation(
    api: &AdminApi,
    request: Request<pb::OperationRequest>,
) -> Result<Response<pb::OperationResponse>, Status> {
    api.control(request.into_inner().id, pb::OperationState::Cancelling)
        .await
}

impl AdminApi {
    async fn control(
        &self,
        id: u64,
        to: pb::OperationState,
    ) -> Result<Response<pb::OperationResponse>, Status> {
        let (_, topology) = self
            .state
            .commit(|t, now| {
                let op = crate::operations::control(t, id, to, now)?;
                Ok((
                    (),
                    format!(
                        "operation {id} ({}) now {}",
                        op.description,
                        op.state().name()
                    ),
                ))
            })
            .await?;
        self.state.moves_wake.notify_one();
        Ok(Response::new(operation_response(
            &self.state,
            &topology,
            id,
        )))
    }
}

/// An index of `topology`, or NOT_FOUND in Meilisearch's words.
/// Operation `id` with its moves (live progress overlaid on the leader).
fn operation_response(
    state: &ServiceState,
    topology: &pb::Topology,
    id: u64,
) -> pb::OperationResponse {
    let moves: Vec<pb::ShardMove> = topology
        .moves
        .iter()
        .filter(|m| m.operation_id == id)
        .cloned()
        .collect();
    pb::OperationResponse {
        operation: topology.operations.iter().find(|o| o.id == id).cloned(),
        moves: state.move_progress.overlay(&moves),
        topology_version: topology.version,
    }
}
