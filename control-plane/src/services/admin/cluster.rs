//! The cluster as a whole: status, leader, the applied-version barrier, webhooks and experimental features.

use super::*;

pub(super) async fn put_webhook(
    api: &AdminApi,
    request: Request<pb::PutWebhookRequest>,
) -> Result<Response<pb::WebhookResponse>, Status> {
    let request = request.into_inner();
    let webhook = request
        .webhook
        .ok_or_else(|| ControlPlaneError::InvalidArgument("PutWebhook needs a webhook".into()))?;
    let (webhook, topology) = api
        .state
        .commit(|t, _| {
            let reason = format!("webhook {} recorded", webhook.uuid);
            topology::put_webhook(t, webhook.clone(), request.create)?;
            Ok((webhook, reason))
        })
        .await?;
    Ok(Response::new(pb::WebhookResponse {
        webhook: Some(webhook),
        topology_version: topology.version,
    }))
}

pub(super) async fn delete_webhook(
    api: &AdminApi,
    request: Request<pb::DeleteWebhookRequest>,
) -> Result<Response<pb::WebhookResponse>, Status> {
    let uuid = request.into_inner().uuid;
    let (webhook, topology) = api
        .state
        .commit(|t, _| {
            let webhook = topology::delete_webhook(t, &uuid)?;
            Ok((webhook, format!("webhook {uuid} deleted")))
        })
        .await?;
    Ok(Response::new(pb::WebhookResponse {
        webhook: Some(webhook),
        topology_version: topology.version,
    }))
}

pub(super) async fn update_experimental_features(
    api: &AdminApi,
    request: Request<pb::UpdateExperimentalFeaturesRequest>,
) -> Result<Response<pb::ExperimentalFeaturesResponse>, Status> {
    let patch: Value = serde_json::from_str(&request.into_inner().patch_json).map_err(|e| {
        ControlPlaneError::InvalidArgument(format!("`patch_json` is not JSON: {e}"))
    })?;
    Ok(Response::new(
        crate::reconcilers::feature_sync::update(&api.state, patch).await?,
    ))
}

pub(super) async fn get_cluster_status(
    api: &AdminApi,
    _request: Request<pb::GetClusterStatusRequest>,
) -> Result<Response<pb::ClusterStatus>, Status> {
    let topology = api.state.topology();
    let leader = api.state.leader_info();
    let now = crate::state::now_ms();
    let control_planes = match api.state.store.backend() {
        crate::store::Backend::Sqlite => vec![pb::ControlPlaneStatus {
            id: api.state.id.clone(),
            address: api.state.config.advertise_address(),
            role: api.state.role().to_owned(),
            last_seen_ms_ago: 0,
        }],
        crate::store::Backend::Postgres => {
            let window = 3 * api.state.config.leader_lease_ttl.as_millis() as u64;
            api.state
                .store
                .control_planes(now.saturating_sub(window))
                .await?
                .into_iter()
                .map(|cp| pb::ControlPlaneStatus {
                    role: if cp.id == leader.leader_id {
                        "leader"
                    } else {
                        "follower"
                    }
                    .to_owned(),
                    last_seen_ms_ago: now.saturating_sub(cp.last_seen_ms as u64),
                    id: cp.id,
                    address: cp.address,
                })
                .collect()
        }
    };
    Ok(Response::new(pb::ClusterStatus {
        control_planes,
        leader: Some(leader),
        topology_version: topology.version,
        store: api.state.store.description().to_owned(),
        nodes: topology.nodes.clone(),
        groups: topology.groups.clone(),
        gateways: api.gateway_statuses(topology.version, now).await?,
        indexes: topology
            .indexes
            .iter()
            .map(|i| pb::IndexSummary {
                uid: i.uid.clone(),
                shard_count: i.shard_count,
                replication_factor: i.replication_factor,
                settings_version: i.settings_version,
                primary_key: i.primary_key.clone(),
                settings_pending: i.pending_settings.is_some(),
                settings_nodes_behind: topology::nodes_of_index(i)
                    .iter()
                    .filter(|n| {
                        !i.node_settings
                            .iter()
                            .any(|v| &v.node_id == *n && v.version >= i.settings_version)
                    })
                    .count() as u32,
            })
            .collect(),
        settings_drift_repairs: api.state.metrics.settings_drift_repairs.get(),
        settings_commits: api.state.metrics.settings_commits.get(),
        settings_failures: api.state.metrics.settings_failures.get(),
    }))
}

pub(super) async fn get_leader(
    api: &AdminApi,
    _request: Request<pb::GetLeaderRequest>,
) -> Result<Response<pb::LeaderInfo>, Status> {
    Ok(Response::new(api.state.leader_info()))
}

pub(super) async fn await_applied(
    api: &AdminApi,
    request: Request<pb::AwaitAppliedRequest>,
) -> Result<Response<pb::AwaitAppliedResponse>, Status> {
    let current = api.state.topology().version;
    let version = match request.into_inner().version {
        0 => current,
        v if v > current => {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "topology version {v} is not committed (the current one is {current})"
            ))
            .into());
        }
        v => v,
    };
    let lagging = api.state.await_applied(version).await;
    Ok(Response::new(pb::AwaitAppliedResponse { version, lagging }))
}

impl AdminApi {
    /// Live gateways: those connected to this replica and, on Postgres, those other
    /// replicas saw within the gateway TTL (shown as not connected here).
    async fn gateway_statuses(
        &self,
        version: u64,
        now: u64,
    ) -> Result<Vec<pb::GatewayStatus>, ControlPlaneError> {
        let mut statuses = self.state.gateways.statuses(version);
        if self.state.store.backend() == crate::store::Backend::Postgres {
            let since = now.saturating_sub(self.state.config.gateway_ttl.as_millis() as u64);
            for row in self.state.store.gateways_seen(since).await? {
                if statuses.iter().any(|s| s.id == row.id) {
                    continue;
                }
                statuses.push(pb::GatewayStatus {
                    lag: version.saturating_sub(row.applied_version as u64),
                    applied_version: row.applied_version as u64,
                    last_heartbeat_ms_ago: now.saturating_sub(row.last_seen_ms as u64),
                    connected: false,
                    id: row.id,
                    address: row.address,
                });
            }
            statuses.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Ok(statuses)
    }
}
