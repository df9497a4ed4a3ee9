//! Leadership on Postgres (DESIGN §4): a lease row `(holder, fencing_token, expires_at)`.
//! The leader renews it every third of `--leader-lease-ttl` and steps down when it cannot
//! (taken by another, or not renewed for a whole TTL); followers try to take it and succeed
//! only once it expired, which bumps the fencing token so the old leader's late writes are
//! refused by the store. Followers learn each committed version from Postgres NOTIFY (and
//! a poll, in case a notification is missed) and serve it to their watchers.

use crate::config::Config;
use crate::state::{LeadershipStatus, ServiceState, now_ms};
use crate::store::{LeaderLeasePersistence, Store, TOPOLOGY_CHANNEL};
use miroir_proto::FencingToken;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn leader(lease: &LeaderLeasePersistence) -> LeadershipStatus {
    LeadershipStatus::Leader {
        token: FencingToken(lease.fencing_token as u64),
        since_ms: lease.acquired_at_ms as u64,
    }
}

fn follower(lease: Option<LeaderLeasePersistence>) -> LeadershipStatus {
    match lease {
        Some(lease) => LeadershipStatus::Follower {
            leader_id: lease.holder,
            leader_address: lease.holder_address,
            token: FencingToken(lease.fencing_token as u64),
        },
        None => LeadershipStatus::Follower {
            leader_id: String::new(),
            leader_address: String::new(),
            token: FencingToken(0),
        },
    }
}

/// At start: leads if the lease is free or expired, else follows its holder.
pub async fn contend(store: &Store, config: &Config) -> anyhow::Result<LeadershipStatus> {
    let taken = store
        .take_leader_lease(
            &config.id(),
            &config.advertise_address(),
            config.leader_lease_ttl,
            now_ms(),
            false,
        )
        .await?;
    Ok(match taken {
        Some(lease) => leader(&lease),
        None => follower(store.leader_lease().await?),
    })
}

/// Renews or contends for the lease until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let ttl = state.config.leader_lease_ttl;
    let period = (ttl / 3).max(Duration::from_millis(100));
    let mut last_renewed = Instant::now();
    // When the current lease expires, as a follower last read it: it tries again right
    // then, so a dead leader is replaced within one TTL of its last renewal.
    let mut lease_expires_ms: Option<u64> = None;
    loop {
        if let Err(error) = state
            .store
            .record_control_plane(&state.id, &state.config.advertise_address(), now_ms())
            .await
        {
            tracing::warn!(%error, "could not record this control plane on the store");
        }
        let pause = match (state.leadership(), lease_expires_ms) {
            (LeadershipStatus::Follower { .. }, Some(expires)) => {
                let until_expiry = Duration::from_millis(expires.saturating_sub(now_ms()) + 5);
                until_expiry.min(period)
            }
            _ => period,
        };
        tokio::time::sleep(pause).await;
        match state.leadership() {
            LeadershipStatus::Leader { token, .. } => {
                match state.store.renew_leader_lease(token, ttl, now_ms()).await {
                    Ok(true) => {
                        last_renewed = Instant::now();
                        state.lease_renewed(last_renewed);
                    }
                    Ok(false) => step_down(&state, "its lease was taken or expired").await,
                    Err(error) if last_renewed.elapsed() >= ttl => {
                        step_down(&state, &format!("it could not renew its lease: {error}")).await
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not renew the leader lease; retrying")
                    }
                }
            }
            LeadershipStatus::Follower { .. } => {
                let taken = state
                    .store
                    .take_leader_lease(
                        &state.id,
                        &state.config.advertise_address(),
                        ttl,
                        now_ms(),
                        false,
                    )
                    .await;
                match taken {
                    Ok(Some(lease)) => {
                        last_renewed = Instant::now();
                        state.lease_renewed(last_renewed);
                        take_over(&state, &lease).await;
                    }
                    Ok(None) => {
                        if let Ok(lease) = state.store.leader_lease().await {
                            lease_expires_ms = lease.as_ref().map(|l| l.expires_at_ms as u64);
                            state.set_leadership(follower(lease));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not contend for the leader lease"),
                }
            }
        }
    }
}

async fn step_down(state: &ServiceState, why: &str) {
    let lease = state.store.leader_lease().await.ok().flatten();
    tracing::warn!(why, "this control plane is no longer the leader");
    state.set_leadership(follower(lease));
}

/// Becomes the leader: first serves the newest committed version (so the next commit
/// follows it), then leads; a store no leader ever initialized gets its first version.
async fn take_over(state: &ServiceState, lease: &LeaderLeasePersistence) {
    match state.store.load_latest_topology().await {
        Ok(Some(topology)) => state.adopt(topology),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "took the lease but cannot read the topology; giving it up at expiry");
            return;
        }
    }
    state.set_leadership(leader(lease));
    tracing::info!(
        fencing_token = lease.fencing_token,
        topology_version = state.topology().version,
        "this control plane is now the leader"
    );
    if state.topology().version == 0
        && let Err(error) = state.commit_initial().await
    {
        tracing::warn!(%error, "could not commit the initial topology");
    }
    // Reconcilers that wait for work look again now.
    state.settings_wake.notify_one();
    state.key_sync.notify_one();
}

/// Loads each version another replica commits, woken by NOTIFY (or a poll every second).
pub async fn follow_commits(state: Arc<ServiceState>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&state.config.store).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for topology commits; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(TOPOLOGY_CHANNEL).await {
            tracing::warn!(%error, "cannot listen for topology commits; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            let woken = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
            if let Ok(Err(error)) = woken {
                tracing::warn!(%error, "topology notifications lost; reconnecting");
                break;
            }
            if matches!(state.leadership(), LeadershipStatus::Leader { .. }) {
                continue;
            }
            match state.store.load_latest_topology().await {
                Ok(Some(topology)) => state.adopt(topology),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot load the newest topology"),
            }
        }
    }
}
