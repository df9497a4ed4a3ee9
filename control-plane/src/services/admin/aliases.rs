//! Index aliases: set (create or switch atomically), list, remove.
//!
//! A switch is two versions, each behind the barrier: the alias is marked `switching`
//! (every gateway then holds requests through it, and the barrier also waits for the
//! requests gateways routed through it before), then it names the new index. So once
//! `SetAlias` answers, no request through the alias reaches the old index, and every
//! live gateway routes by the new one.

use super::*;

pub(super) async fn set_alias(
    api: &AdminApi,
    request: Request<pb::SetAliasRequest>,
) -> Result<Response<pb::AliasResponse>, Status> {
    let pb::SetAliasRequest { name, index_uid } = request.into_inner();
    let state = &api.state;
    let _one_at_a_time = state.alias_lock.lock().await;
    let previous = topology::check_alias(&state.topology(), &name, &index_uid)?;
    let previous = match previous {
        Some(current) if current == index_uid => {
            let topology = state.topology();
            let alias = topology.aliases.iter().find(|a| a.name == name).cloned();
            return Ok(Response::new(pb::AliasResponse {
                alias,
                previous_index_uid: current,
                topology_version: topology.version,
            }));
        }
        Some(current) => {
            // Hold requests through the alias on every gateway, and let those already
            // routed to the old index finish.
            let (_, topology) = state
                .commit(|t, _| {
                    let alias = topology::set_alias(t, &name, &current, true)?;
                    Ok((
                        alias,
                        format!("alias {name} switching from {current} to {index_uid}"),
                    ))
                })
                .await?;
            if let Err(error) = state.barrier(topology.version).await {
                // Nothing switched: let the requests through to the old index again.
                let _ = state
                    .commit(|t, _| {
                        let alias = topology::set_alias(t, &name, &current, false)?;
                        Ok((alias, format!("alias {name} stays on {current}: {error}")))
                    })
                    .await;
                return Err(error.into());
            }
            current
        }
        None => String::new(),
    };
    let (alias, topology) = state
        .commit(|t, _| {
            let alias = topology::set_alias(t, &name, &index_uid, false)?;
            let reason = if previous.is_empty() {
                format!("alias {name} created for index {index_uid}")
            } else {
                format!("alias {name} switched from {previous} to {index_uid}")
            };
            Ok((alias, reason))
        })
        .await?;
    state.barrier(topology.version).await?;
    tracing::info!(alias = %name, index = %index_uid, previous = %previous, version = topology.version, "alias set");
    Ok(Response::new(pb::AliasResponse {
        alias: Some(alias),
        previous_index_uid: previous,
        topology_version: topology.version,
    }))
}

pub(super) async fn list_aliases(
    api: &AdminApi,
    _request: Request<pb::ListAliasesRequest>,
) -> Result<Response<pb::ListAliasesResponse>, Status> {
    let topology = api.state.topology();
    Ok(Response::new(pb::ListAliasesResponse {
        aliases: topology.aliases.clone(),
        topology_version: topology.version,
    }))
}

pub(super) async fn remove_alias(
    api: &AdminApi,
    request: Request<pb::RemoveAliasRequest>,
) -> Result<Response<pb::AliasResponse>, Status> {
    let name = request.into_inner().name;
    let state = &api.state;
    let _one_at_a_time = state.alias_lock.lock().await;
    let (alias, topology) = state
        .commit(|t, _| {
            let alias = topology::remove_alias(t, &name)?;
            let reason = format!("alias {name} of index {} removed", alias.index_uid);
            Ok((alias, reason))
        })
        .await?;
    state.barrier(topology.version).await?;
    Ok(Response::new(pb::AliasResponse {
        previous_index_uid: alias.index_uid.clone(),
        alias: Some(alias),
        topology_version: topology.version,
    }))
}
