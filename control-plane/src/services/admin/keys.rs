//! API keys, kept in the topology and synced to every node.

use super::*;

pub(super) async fn create_key(
    api: &AdminApi,
    request: Request<pb::CreateKeyRequest>,
) -> Result<Response<pb::KeyResponse>, Status> {
    let mut key = request
        .into_inner()
        .key
        .ok_or_else(|| ControlPlaneError::InvalidArgument("a key is required".into()))?;
    if key.uid.is_empty() {
        key.uid = miroir_proto::keys::new_uid();
    }
    if let Some(bad) = key
        .actions
        .iter()
        .find(|a| !miroir_proto::keys::ACTIONS.contains(&a.as_str()))
    {
        return Err(ControlPlaneError::InvalidArgument(format!("unknown action `{bad}`")).into());
    }
    let (key, topology) = api
        .state
        .commit(|t, now| {
            let key = topology::create_key(t, key, now)?;
            let reason = format!("API key {} created", key.uid);
            Ok((key, reason))
        })
        .await?;
    crate::reconcilers::key_sync::sync_all(&api.state).await;
    Ok(Response::new(pb::KeyResponse {
        key: Some(key),
        topology_version: topology.version,
    }))
}

pub(super) async fn update_key(
    api: &AdminApi,
    request: Request<pb::UpdateKeyRequest>,
) -> Result<Response<pb::KeyResponse>, Status> {
    let request = request.into_inner();
    let (key, topology) = api
        .state
        .commit(|t, now| {
            let key = topology::update_key(
                t,
                &request.uid,
                request.update_name.then(|| request.name.clone()),
                request
                    .update_description
                    .then(|| request.description.clone()),
                now,
            )?;
            Ok((key, format!("API key {} updated", request.uid)))
        })
        .await?;
    crate::reconcilers::key_sync::sync_all(&api.state).await;
    Ok(Response::new(pb::KeyResponse {
        key: Some(key),
        topology_version: topology.version,
    }))
}

pub(super) async fn delete_key(
    api: &AdminApi,
    request: Request<pb::DeleteKeyRequest>,
) -> Result<Response<pb::KeyResponse>, Status> {
    let uid = request.into_inner().uid;
    let (key, topology) = api
        .state
        .commit(|t, _| {
            let key = topology::delete_key(t, &uid)?;
            Ok((key, format!("API key {uid} deleted")))
        })
        .await?;
    crate::reconcilers::key_sync::sync_all(&api.state).await;
    Ok(Response::new(pb::KeyResponse {
        key: Some(key),
        topology_version: topology.version,
    }))
}
