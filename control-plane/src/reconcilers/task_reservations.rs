//! Fails the write tasks whose gateway reserved them and stopped before attaching their
//! node tasks: after `--task-reservation-timeout` nobody will, and the client following
//! the task is told so instead of waiting forever. Likewise exports whose leader stopped
//! ([`crate::export::fail_interrupted`]).

use crate::state::ServiceState;
use std::sync::Arc;

/// Runs until the process stops; acts while this replica leads.
pub async fn run(state: Arc<ServiceState>) {
    let timeout = state.config.task_reservation_timeout;
    let mut interval = tokio::time::interval((timeout / 10).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(30),
    ));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Ok(token) = state.leader_token() else {
            continue;
        };
        crate::export::fail_interrupted(&state).await;
        let now = crate::state::now_ms();
        let before = now.saturating_sub(timeout.as_millis() as u64);
        let error = crate::error::meili_error(
            "miroir_task_unattached",
            miroir_proto::ErrorType::System,
            format!(
                "The gateway that accepted this write stopped before recording which node tasks carry it (no record within {}). The write may have been applied on some nodes: read the documents back, and send it again if needed.",
                humantime::format_duration(timeout)
            ),
        );
        match state
            .store
            .expire_reservations(token, before, &error.to_string(), now)
            .await
        {
            Ok(0) => {}
            Ok(expired) => {
                tracing::warn!(expired, "reserved write tasks never attached were failed")
            }
            Err(error) => tracing::warn!(%error, "could not expire reserved tasks"),
        }
    }
}
