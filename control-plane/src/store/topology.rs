//! Topology versions: the newest, a range for watchers that resume, and the fenced commit.

use super::*;

/// Index renames committed with a topology version (see [`Store::commit_topology`]).
#[derive(Debug, Default)]
pub struct IndexRenames {
    /// Old uid → new uid, applied all at once.
    pub pairs: Vec<(String, String)>,
    /// The first task uid left as it is (the renaming task's own).
    pub keep_task: Option<u32>,
}

impl Store {
    /// The newest committed topology, if any.
    pub async fn load_latest_topology(&self) -> Result<Option<pb::Topology>> {
        let row = self
            .measured("load_latest_topology", async {
                sqlx::query_as::<_, TopologyVersionPersistence>(
                    "SELECT version, committed_at_ms, reason, snapshot FROM topology_versions
                     ORDER BY version DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await
            })
            .await?;
        row.map(|row| row.decode()).transpose()
    }

    /// Committed versions in `(after, up_to]`, oldest first (those still retained).
    pub async fn load_topology_versions(
        &self,
        after: TopologyVersion,
        up_to: TopologyVersion,
    ) -> Result<Vec<pb::Topology>> {
        let rows = self
            .measured("load_topology_versions", async {
                sqlx::query_as::<_, TopologyVersionPersistence>(
                    "SELECT version, committed_at_ms, reason, snapshot FROM topology_versions
                     WHERE version > $1 AND version <= $2 ORDER BY version",
                )
                .bind(after.0 as i64)
                .bind(up_to.0 as i64)
                .fetch_all(&self.pool)
                .await
            })
            .await?;
        rows.into_iter().map(|row| row.decode()).collect()
    }

    /// Commits a new topology version, if `token` still leads; keeps the newest `retain`.
    /// `renames` (old uid → new uid, all at once: a swap names both ways) rewrites the
    /// index the recorded tasks and queued settings changes name, in the same
    /// transaction, as Meilisearch rewrites its task history; tasks from `keep_task` on
    /// keep theirs (the rename's own task names the old uid).
    pub async fn commit_topology(
        &self,
        token: FencingToken,
        topology: &pb::Topology,
        retain: u64,
        renames: &IndexRenames,
    ) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("commit_topology").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "commit_topology",
                source,
            };
            // Each pair through a name no index can have, so that a swap's two renames
            // do not meet.
            for step in 0..2 {
                for (i, (old, new)) in renames.pairs.iter().enumerate() {
                    // `~` is in no index uid.
                    let parked = format!("~miroir-rename-{i}");
                    let (from, to) = if step == 0 {
                        (old.as_str(), parked.as_str())
                    } else {
                        (parked.as_str(), new.as_str())
                    };
                    let (quoted_from, quoted_to) = (
                        format!("\"indexUid\":{}", serde_json::Value::from(from)),
                        format!("\"indexUid\":{}", serde_json::Value::from(to)),
                    );
                    sqlx::query(
                        "UPDATE tasks SET index_uid = $1,
                             outcome = replace(outcome, $2, $3)
                         WHERE index_uid = $4 AND uid < $5",
                    )
                    .bind(to)
                    .bind(&quoted_from)
                    .bind(&quoted_to)
                    .bind(from)
                    .bind(renames.keep_task.map_or(i64::MAX, i64::from))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                    sqlx::query("UPDATE settings_changes SET index_uid = $1 WHERE index_uid = $2")
                        .bind(to)
                        .bind(from)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?;
                }
            }
            sqlx::query(
                "INSERT INTO topology_versions (version, committed_at_ms, reason, snapshot)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(topology.version as i64)
            .bind(topology.committed_at_ms as i64)
            .bind(&topology.reason)
            .bind(topology.encode_to_vec())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            sqlx::query("DELETE FROM topology_versions WHERE version <= $1")
                .bind(topology.version as i64 - retain as i64)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            if self.backend == Backend::Postgres {
                // Delivered at commit: followers load the new version at once.
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(TOPOLOGY_CHANNEL)
                    .bind(topology.version.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
            }
            tx.commit().await.map_err(map)
        }
        .await;
        self.observe("commit_topology", started, result.is_ok());
        result
    }
}
