//! The leader lease, and the control planes and gateways replicas share through the store.

use super::*;

impl Store {
    /// Takes the leader lease for `holder`, bumping the fencing token: always when `force`
    /// (SQLite, where the process holding the file lock leads), otherwise only when no one
    /// holds it or the holder's lease has expired (`None` then).
    pub async fn take_leader_lease(
        &self,
        holder: &str,
        holder_address: &str,
        ttl: Duration,
        now_ms: u64,
        force: bool,
    ) -> Result<Option<LeaderLeasePersistence>> {
        let condition = if force {
            ""
        } else {
            " WHERE leader_lease.expires_at_ms < excluded.acquired_at_ms"
        };
        let sql = format!(
            "INSERT INTO leader_lease (name, holder, holder_address, fencing_token, acquired_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, 1, $4, $5)
             ON CONFLICT (name) DO UPDATE SET
                 holder = excluded.holder,
                 holder_address = excluded.holder_address,
                 fencing_token = leader_lease.fencing_token + 1,
                 acquired_at_ms = excluded.acquired_at_ms,
                 expires_at_ms = excluded.expires_at_ms{condition}
             RETURNING name, holder, holder_address, fencing_token, acquired_at_ms, expires_at_ms"
        );
        self.measured("take_leader_lease", async {
            sqlx::query_as::<_, LeaderLeasePersistence>(&sql)
                .bind(LEADER_LEASE)
                .bind(holder)
                .bind(holder_address)
                .bind(now_ms as i64)
                .bind(
                    now_ms
                        .saturating_add(ttl.as_millis() as u64)
                        .min(i64::MAX as u64) as i64,
                )
                .fetch_optional(&self.pool)
                .await
        })
        .await
    }

    /// Extends the lease held with `token`; false when it is no longer ours.
    pub async fn renew_leader_lease(
        &self,
        token: FencingToken,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<bool> {
        let renewed = self
            .measured("renew_leader_lease", async {
                sqlx::query(
                    "UPDATE leader_lease SET expires_at_ms = $1
                     WHERE name = $2 AND fencing_token = $3 AND expires_at_ms >= $4",
                )
                .bind(now_ms.saturating_add(ttl.as_millis() as u64) as i64)
                .bind(LEADER_LEASE)
                .bind(token.0 as i64)
                .bind(now_ms as i64)
                .execute(&self.pool)
                .await
            })
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// The lease as stored, if anyone ever took it.
    pub async fn leader_lease(&self) -> Result<Option<LeaderLeasePersistence>> {
        self.measured("leader_lease", async {
            sqlx::query_as::<_, LeaderLeasePersistence>(
                "SELECT name, holder, holder_address, fencing_token, acquired_at_ms, expires_at_ms
                 FROM leader_lease WHERE name = $1",
            )
            .bind(LEADER_LEASE)
            .fetch_optional(&self.pool)
            .await
        })
        .await
    }

    /// Records that control plane `id` (at `address`) is alive now.
    pub async fn record_control_plane(&self, id: &str, address: &str, now_ms: u64) -> Result<()> {
        self.measured("record_control_plane", async {
            sqlx::query(
                "INSERT INTO control_planes (id, address, last_seen_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                     last_seen_ms = excluded.last_seen_ms",
            )
            .bind(id)
            .bind(address)
            .bind(now_ms as i64)
            .execute(&self.pool)
            .await
            .map(|_| ())
        })
        .await
    }

    /// Control planes seen since `since_ms`, by id.
    pub async fn control_planes(&self, since_ms: u64) -> Result<Vec<ControlPlanePersistence>> {
        self.measured("control_planes", async {
            sqlx::query_as::<_, ControlPlanePersistence>(
                "SELECT id, address, last_seen_ms FROM control_planes
                 WHERE last_seen_ms >= $1 ORDER BY id",
            )
            .bind(since_ms as i64)
            .fetch_all(&self.pool)
            .await
        })
        .await
    }

    /// Records gateways as this control plane sees them; a row only moves forward in time
    /// (another replica may have seen the same gateway more recently).
    pub async fn record_gateways(&self, gateways: &[GatewayPersistence]) -> Result<()> {
        if gateways.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = async {
            let map = |source| ControlPlaneError::Store {
                operation: "record_gateways",
                source,
            };
            let mut tx = self.begin("record_gateways").await?;
            for gateway in gateways {
                sqlx::query(
                    "INSERT INTO gateways (id, address, applied_version, last_seen_ms)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                         applied_version = excluded.applied_version,
                         last_seen_ms = excluded.last_seen_ms
                     WHERE excluded.last_seen_ms >= gateways.last_seen_ms",
                )
                .bind(&gateway.id)
                .bind(&gateway.address)
                .bind(gateway.applied_version)
                .bind(gateway.last_seen_ms)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
            tx.commit().await.map_err(map)
        }
        .await;
        self.observe("record_gateways", started, result.is_ok());
        result
    }

    /// Gateways any control plane saw since `since_ms`.
    pub async fn gateways_seen(&self, since_ms: u64) -> Result<Vec<GatewayPersistence>> {
        self.measured("gateways_seen", async {
            sqlx::query_as::<_, GatewayPersistence>(
                "SELECT id, address, applied_version, last_seen_ms FROM gateways
                 WHERE last_seen_ms >= $1 ORDER BY id",
            )
            .bind(since_ms as i64)
            .fetch_all(&self.pool)
            .await
        })
        .await
    }
}
