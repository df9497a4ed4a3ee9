//! `ServiceState`: what every handler and reconciler shares.
//!
//! It holds the leadership status, the newest committed topology (published on a watch
//! channel), a short history for watchers that resume, and the store. All topology changes
//! go through [`ServiceState::commit`], which serializes them, persists the new version
//! under the leader's fencing token, then publishes it.

use crate::config::Config;
use crate::error::{ControlPlaneError, Result};
use crate::gateways::GatewayRegistry;
use crate::metrics::Metrics;
use crate::nodes::NodeClient;
use crate::store::{IndexRenames, Store};
use miroir_proto::pb::{self, NodeState};
use miroir_proto::{FencingToken, TopologyVersion};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Versions kept in memory for watchers that resume after a short disconnect.
const HISTORY_IN_MEMORY: usize = 256;

/// Whether this control plane may commit.
#[derive(Clone, Debug)]
pub enum LeadershipStatus {
    /// This process leads, with this fencing token.
    Leader {
        /// Term of this leader.
        token: FencingToken,
        /// When leadership was taken.
        since_ms: u64,
    },
    /// Another process leads.
    Follower {
        /// Id of the leader.
        leader_id: String,
        /// Its address.
        leader_address: String,
        /// Its fencing token.
        token: FencingToken,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// State shared by the gRPC services and the reconcilers.
pub struct ServiceState {
    /// Flags the process started with.
    pub config: Config,
    /// This control plane's id.
    pub id: String,
    /// Durable state.
    pub store: Store,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Live gateways.
    pub gateways: GatewayRegistry,
    /// Client for calls to Meilisearch nodes.
    pub nodes: NodeClient,
    leadership: RwLock<LeadershipStatus>,
    topology: watch::Sender<Arc<pb::Topology>>,
    history: Mutex<VecDeque<Arc<pb::Topology>>>,
    commit_lock: tokio::sync::Mutex<()>,
    /// Wakes the key sync reconciler after a key change.
    pub key_sync: tokio::sync::Notify,
    /// Wakes the settings reconciler after a settings change is queued.
    pub settings_wake: tokio::sync::Notify,
    /// Held while node settings are being changed (a two-phase commit, a drift pass or a
    /// repair on demand), so two never interleave on one node.
    pub settings_lock: tokio::sync::Mutex<()>,
    /// Serializes experimental-feature changes (each checks on a node, then records).
    pub features_lock: tokio::sync::Mutex<()>,
    /// Held while a rename or swap holds writes to its indexes, so the shard-move
    /// reconciler releases only holds no running rename or swap owns.
    pub write_holds_lock: tokio::sync::Mutex<()>,
    /// Serializes alias changes (a switch spans two commits).
    pub alias_lock: tokio::sync::Mutex<()>,
    /// Wakes the shard-move reconciler after an operation is planned or controlled.
    pub moves_wake: tokio::sync::Notify,
    /// Live progress of the shard moves this leader drives.
    pub move_progress: crate::move_progress::MoveProgress,
    /// When the leader lease was last taken or renewed (Postgres), on this process's clock.
    lease_renewed_at: Mutex<Option<std::time::Instant>>,
    /// Shards whose writes a catch-up running here holds (its last pass), so the
    /// shard-move reconciler does not release them as left over.
    catch_up_holds: Mutex<std::collections::HashSet<crate::topology::RouteKey>>,
    /// The exports (`POST /export`) this leader runs.
    pub exports: crate::running_exports::Exports,
    /// The anti-entropy passes this leader runs.
    pub anti_entropy: crate::anti_entropy_progress::Tracker,
    /// Nodes a gateway reported that are being checked now (one check per node at once).
    pub trouble_checks: Mutex<std::collections::HashSet<String>>,
}

impl ServiceState {
    /// The shards a catch-up running here holds.
    pub fn catch_up_holds(&self) -> std::collections::HashSet<crate::topology::RouteKey> {
        self.catch_up_holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records (`held`) or forgets that a catch-up running here holds `key`.
    pub fn set_catch_up_hold(&self, key: &crate::topology::RouteKey, held: bool) {
        let mut holds = self
            .catch_up_holds
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if held {
            holds.insert(key.clone());
        } else {
            holds.remove(key);
        }
    }

    /// Loads the newest topology (committing an empty version 1 on a new store).
    pub async fn load(
        config: Config,
        store: Store,
        metrics: Arc<Metrics>,
        leadership: LeadershipStatus,
    ) -> Result<Arc<Self>> {
        let topology = store.load_latest_topology().await?;
        let empty = topology.is_none();
        let topology = topology.unwrap_or_default();
        let nodes = config
            .node_client
            .options(&config.master_key, config.node_timeout)
            .map_err(|e| ControlPlaneError::InvalidArgument(e.to_string()))
            .and_then(|options| {
                NodeClient::new(options)
                    .map_err(|e| ControlPlaneError::Internal(format!("node HTTP client: {e}")))
            })?;
        let state = Arc::new(Self {
            nodes,
            id: config.id(),
            config,
            store,
            metrics,
            gateways: GatewayRegistry::default(),
            leadership: RwLock::new(leadership),
            topology: watch::Sender::new(Arc::new(topology.clone())),
            history: Mutex::new(VecDeque::from([Arc::new(topology)])),
            commit_lock: tokio::sync::Mutex::new(()),
            key_sync: tokio::sync::Notify::new(),
            settings_wake: tokio::sync::Notify::new(),
            settings_lock: tokio::sync::Mutex::new(()),
            features_lock: tokio::sync::Mutex::new(()),
            write_holds_lock: tokio::sync::Mutex::new(()),
            alias_lock: tokio::sync::Mutex::new(()),
            moves_wake: tokio::sync::Notify::new(),
            move_progress: Default::default(),
            lease_renewed_at: Mutex::new(None),
            catch_up_holds: Mutex::default(),
            anti_entropy: Default::default(),
            exports: Default::default(),
            trouble_checks: Mutex::default(),
        });
        if empty && matches!(state.leadership(), LeadershipStatus::Leader { .. }) {
            state.commit_initial().await?;
        }
        state.update_gauges(&state.topology());
        Ok(state)
    }

    /// Commits version 1 of a new store: an empty fleet with Meilisearch's two default
    /// keys, as a new Meilisearch has.
    pub async fn commit_initial(&self) -> Result<()> {
        self.commit(|t, now| {
            t.keys = crate::topology::default_keys(now);
            Ok(((), "initial topology with the default API keys".to_owned()))
        })
        .await?;
        Ok(())
    }

    /// Changes the leadership status (the leadership loop, on Postgres).
    pub fn set_leadership(&self, status: LeadershipStatus) {
        let leads = matches!(status, LeadershipStatus::Leader { .. });
        let led = std::mem::replace(
            &mut *self.leadership.write().unwrap_or_else(|e| e.into_inner()),
            status,
        );
        if leads && !matches!(led, LeadershipStatus::Leader { .. }) {
            self.metrics.leadership_acquired.inc();
        }
        self.metrics
            .is_leader
            .set(matches!(self.leadership(), LeadershipStatus::Leader { .. }) as i64);
    }

    /// Serves a version another process committed (a follower learning of the leader's
    /// commits), if it is newer than what this process has.
    pub fn adopt(&self, topology: pb::Topology) {
        if topology.version <= self.topology().version {
            return;
        }
        self.publish(Arc::new(topology));
    }

    /// Serves `topology` (newer than the current one): kept in the short history for
    /// resuming watchers, counted in the gauges, sent to every watcher.
    fn publish(&self, topology: Arc<pb::Topology>) {
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            history.push_back(topology.clone());
            while history.len() > HISTORY_IN_MEMORY {
                history.pop_front();
            }
        }
        self.update_gauges(&topology);
        // Nodes gone from the topology: their connection pools close.
        self.nodes
            .inner()
            .retain(|address| topology.nodes.iter().any(|n| n.address == address));
        self.topology.send_replace(topology);
    }

    /// Sets the status of a task the control plane decides (a settings change, an
    /// export), if this process still leads: `processing` records when it started, a
    /// final status also when it finished, with `error`.
    pub async fn decide_task(
        &self,
        uid: u32,
        status: &str,
        started_at_ms: u64,
        error: Option<&serde_json::Value>,
    ) -> Result<()> {
        let finished = matches!(status, "succeeded" | "failed" | "canceled");
        let error_json = error.map(serde_json::Value::to_string).unwrap_or_default();
        self.store
            .set_task_status(
                self.leader_token()?,
                uid,
                crate::store::TaskStatusUpdate {
                    status,
                    started_at_ms,
                    finished_at_ms: if finished { now_ms() } else { 0 },
                    error_json: &error_json,
                },
            )
            .await
    }

    /// The barrier as a step: every live gateway applied `version` (and finished the
    /// requests it routed by older ones), else UNAVAILABLE naming those that did not.
    pub async fn barrier(&self, version: u64) -> Result<()> {
        let lagging = self.await_applied(version).await;
        if lagging.is_empty() {
            Ok(())
        } else {
            Err(ControlPlaneError::Unavailable(format!(
                "gateways {lagging:?} have not acknowledged topology version {version}"
            )))
        }
    }

    /// The barrier (DESIGN §3): returns once every live gateway — connected to this
    /// replica or, on Postgres, to any other (through the store) — has applied `version`
    /// or later. A gateway silent for `--gateway-ttl` stops holding it; the ids of gateways
    /// still behind when that bound passes are returned.
    pub async fn await_applied(&self, version: u64) -> Vec<String> {
        let ttl = self.config.gateway_ttl;
        let deadline = std::time::Instant::now() + ttl;
        let shared = self.store.backend() == crate::store::Backend::Postgres;
        loop {
            let now = now_ms();
            // The freshest sighting of each gateway wins.
            let mut freshest: std::collections::HashMap<String, (i64, i64)> = self
                .gateways
                .seen_within(ttl, now)
                .into_iter()
                .map(|g| (g.id, (g.applied_version, g.last_seen_ms)))
                .collect();
            if shared {
                let since = now.saturating_sub(ttl.as_millis() as u64);
                for row in self.store.gateways_seen(since).await.unwrap_or_default() {
                    let entry = freshest.entry(row.id).or_insert((0, 0));
                    if row.last_seen_ms >= entry.1 {
                        *entry = (row.applied_version, row.last_seen_ms);
                    }
                }
            }
            let mut lagging: Vec<String> = freshest
                .into_iter()
                .filter(|(_, (applied, _))| (*applied as u64) < version)
                .map(|(id, _)| id)
                .collect();
            if lagging.is_empty() || std::time::Instant::now() >= deadline {
                lagging.sort();
                return lagging;
            }
            tokio::time::sleep(std::time::Duration::from_millis(if shared {
                20
            } else {
                5
            }))
            .await;
        }
    }

    /// Records a successful take or renewal of the leader lease.
    pub fn lease_renewed(&self, at: std::time::Instant) {
        *self
            .lease_renewed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// Whether this process has led for at least one gateway lease: a new leader (or a
    /// restarted process) first lets every gateway's write lease run out or be renewed by
    /// it, so a gateway that has not reconnected yet, and so is not in the barrier, takes
    /// no write routed by a table older than the ones its reconcilers publish.
    pub fn leads_settled(&self) -> bool {
        match self.leadership() {
            LeadershipStatus::Leader { since_ms, .. } => {
                now_ms().saturating_sub(since_ms)
                    >= self.config.gateway_lease_ttl.as_millis() as u64
            }
            LeadershipStatus::Follower { .. } => false,
        }
    }

    /// Whether this process may act on nodes as the leader right now: it leads and, on
    /// Postgres, renewed its lease within two thirds of the TTL, so no other process can
    /// have taken it (that needs a whole TTL without renewal). Work that writes to nodes
    /// outside a commit (a shard move's copy and repairs) checks this before each write,
    /// the way commits check the fencing token.
    pub fn may_act_as_leader(&self) -> bool {
        if !matches!(self.leadership(), LeadershipStatus::Leader { .. }) {
            return false;
        }
        if self.store.backend() == crate::store::Backend::Sqlite {
            return true;
        }
        let margin = self.config.leader_lease_ttl * 2 / 3;
        self.lease_renewed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < margin)
    }

    /// "sqlite" or "postgres".
    pub fn coordination(&self) -> &'static str {
        match self.store.backend() {
            crate::store::Backend::Sqlite => "sqlite",
            crate::store::Backend::Postgres => "postgres",
        }
    }

    /// "leader" or "follower".
    pub fn role(&self) -> &'static str {
        match self.leadership() {
            LeadershipStatus::Leader { .. } => "leader",
            LeadershipStatus::Follower { .. } => "follower",
        }
    }

    /// The leadership status.
    pub fn leadership(&self) -> LeadershipStatus {
        self.leadership
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The fencing token while this replica leads; `NotLeader`, naming the leader, else.
    pub fn leader_token(&self) -> Result<FencingToken> {
        match self.leadership() {
            LeadershipStatus::Leader { token, .. } => Ok(token),
            LeadershipStatus::Follower {
                leader_id,
                leader_address,
                ..
            } => Err(ControlPlaneError::NotLeader(format!(
                "{leader_id} at {leader_address} leads"
            ))),
        }
    }

    /// The newest committed topology.
    pub fn topology(&self) -> Arc<pb::Topology> {
        self.topology.borrow().clone()
    }

    /// A receiver that sees every newly committed topology.
    pub fn subscribe(&self) -> watch::Receiver<Arc<pb::Topology>> {
        self.topology.subscribe()
    }

    /// Applies `change` to a copy of the newest topology and commits the result as the
    /// next version. `change` returns its answer and the reason recorded with the
    /// version. A change that leaves the topology as it was commits nothing.
    pub async fn commit<T>(
        &self,
        change: impl FnOnce(&mut pb::Topology, u64) -> Result<(T, String)>,
    ) -> Result<(T, Arc<pb::Topology>)> {
        self.commit_renaming(&IndexRenames::default(), change).await
    }

    /// [`ServiceState::commit`] for a change that renames indexes: their recorded tasks
    /// and queued settings changes are renamed in the same transaction.
    pub async fn commit_renaming<T>(
        &self,
        renames: &IndexRenames,
        change: impl FnOnce(&mut pb::Topology, u64) -> Result<(T, String)>,
    ) -> Result<(T, Arc<pb::Topology>)> {
        let token = self.leader_token()?;
        let _serialized = self.commit_lock.lock().await;
        let current = self.topology();
        let mut next = (*current).clone();
        let now_us = now_us();
        let (answer, reason) = change(&mut next, now_us / 1000)?;
        if next == *current && current.version > 0 {
            return Ok((answer, current));
        }
        next.version = TopologyVersion(current.version).next().0;
        next.committed_at_ms = now_us / 1000;
        next.committed_at_us = now_us;
        next.reason = reason;
        self.store
            .commit_topology(token, &next, self.config.topology_history.max(1), renames)
            .await?;
        let next = Arc::new(next);
        tracing::info!(version = next.version, reason = %next.reason, "topology committed");
        self.publish(next.clone());
        Ok((answer, next))
    }

    /// Every committed version after `after`, up to `up_to`, oldest first. When the
    /// history no longer reaches back that far (or `after` is 0), just the newest: each
    /// snapshot is complete, so a watcher that gets it has everything.
    pub async fn versions_between(
        &self,
        after: u64,
        up_to: &Arc<pb::Topology>,
    ) -> Result<Vec<Arc<pb::Topology>>> {
        if after == 0 || after >= up_to.version {
            return Ok(vec![up_to.clone()]);
        }
        {
            let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if history.front().is_some_and(|t| t.version <= after + 1) {
                return Ok(history
                    .iter()
                    .filter(|t| t.version > after && t.version <= up_to.version)
                    .cloned()
                    .collect());
            }
        }
        let stored = self
            .store
            .load_topology_versions(TopologyVersion(after), TopologyVersion(up_to.version))
            .await?;
        if stored.first().is_some_and(|t| t.version == after + 1) {
            Ok(stored.into_iter().map(Arc::new).collect())
        } else {
            Ok(vec![up_to.clone()])
        }
    }

    fn update_gauges(&self, topology: &pb::Topology) {
        self.metrics.topology_version.set(topology.version as i64);
        let count = |state: NodeState| {
            topology
                .nodes
                .iter()
                .filter(|n| n.state == state as i32)
                .count() as i64
        };
        self.metrics.shard_moves.set(topology.moves.len() as i64);
        self.metrics.set_node_counts(&[
            ("joining", count(NodeState::Joining)),
            ("active", count(NodeState::Active)),
            ("draining", count(NodeState::Draining)),
            ("failed", count(NodeState::Failed)),
        ]);
        self.metrics
            .is_leader
            .set(matches!(self.leadership(), LeadershipStatus::Leader { .. }) as i64);
    }

    /// Who leads, as this process sees it.
    pub fn leader_info(&self) -> pb::LeaderInfo {
        let (leader_id, leader_address, token, is_self) = match self.leadership() {
            LeadershipStatus::Leader { token, .. } => (
                self.id.clone(),
                self.config.advertise_address(),
                token,
                true,
            ),
            LeadershipStatus::Follower {
                leader_id,
                leader_address,
                token,
            } => (leader_id, leader_address, token, false),
        };
        pb::LeaderInfo {
            leader_id,
            leader_address,
            fencing_token: token.0,
            is_self,
            answered_by: self.id.clone(),
            coordination: self.coordination().to_owned(),
        }
    }
}
