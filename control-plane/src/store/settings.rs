//! Queued settings changes for the two-phase commit.

use super::*;

impl Store {
    /// Queues a settings change with no client task (Miroir's own), if `token` still
    /// leads; returns its id.
    pub async fn enqueue_settings_change(
        &self,
        token: FencingToken,
        index_uid: &str,
        patch: &str,
        now_ms: u64,
    ) -> Result<i64> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("enqueue_settings_change").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "enqueue_settings_change",
                source,
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO settings_changes (index_uid, task_uid, patch, created_at_ms)
                 VALUES ($1, NULL, $2, $3) RETURNING id",
            )
            .bind(index_uid)
            .bind(patch)
            .bind(now_ms as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            tx.commit().await.map_err(map)?;
            Ok(id)
        }
        .await;
        self.observe("enqueue_settings_change", started, result.is_ok());
        result
    }

    /// Queued settings changes, oldest first.
    pub async fn settings_changes(&self) -> Result<Vec<SettingsChangePersistence>> {
        self.measured("settings_changes", async {
            sqlx::query_as::<_, SettingsChangePersistence>(
                "SELECT id, index_uid, task_uid, patch, created_at_ms FROM settings_changes
                 ORDER BY id",
            )
            .fetch_all(&self.pool)
            .await
        })
        .await
    }

    /// Forgets a settings change that committed or failed, if `token` still leads.
    pub async fn delete_settings_change(&self, token: FencingToken, id: i64) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("delete_settings_change").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "delete_settings_change",
                source,
            };
            sqlx::query("DELETE FROM settings_changes WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            tx.commit().await.map_err(map)
        }
        .await;
        self.observe("delete_settings_change", started, result.is_ok());
        result
    }
}
