//! Calls from the gateway to Meilisearch nodes go through Miroir's one node client
//! ([`miroir_proto::node_client`]: hyper-util with rustls, a pool per node, timeouts and an
//! answer limit), shared with the control plane; failing over between replicas is here.

pub mod load;
pub mod reports;
pub mod trouble;

pub use miroir_proto::node_client::{NodeAnswer, NodeBody, NodeClient, Unreachable};
use std::time::Duration;

/// A node call that failed inside the gateway (its task panicked), as the node being
/// unreachable: a read asks another replica, a write counts it as not acknowledged.
pub fn failed_inside(node: &str, error: &str) -> Unreachable {
    Unreachable {
        node: node.to_owned(),
        detail: format!("the call failed inside the gateway: {error}"),
    }
}

/// Tries `candidates` in turn until one gives an answer: the first within its own call's
/// timeout, the others sharing one more `node_timeout`, so a read that fails over never
/// lasts past twice the node timeout, however many nodes are slow. Without an answer, the
/// last error seen (`None`: no candidate, or none failed before the shared timeout).
pub async fn in_turn<C, T, E, F, Fut>(
    node_timeout: Duration,
    candidates: impl IntoIterator<Item = C>,
    mut try_one: F,
) -> Result<T, Option<E>>
where
    F: FnMut(C) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut candidates = candidates.into_iter();
    let Some(first) = candidates.next() else {
        return Err(None);
    };
    let mut last = match try_one(first).await {
        Ok(answer) => return Ok(answer),
        Err(error) => Some(error),
    };
    let others = async {
        for candidate in candidates {
            match try_one(candidate).await {
                Ok(answer) => return Some(answer),
                Err(error) => last = Some(error),
            }
        }
        None
    };
    let answered = tokio::time::timeout(node_timeout, others).await;
    answered.ok().flatten().ok_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failing_over_takes_at_most_two_node_timeouts() {
        let timeout = Duration::from_millis(100);
        let started = tokio::time::Instant::now();
        // Every node hangs (a minute): the first is cut by its own call's timeout (here,
        // by hand), the others by the one they share.
        let answer: Result<(), Option<usize>> = in_turn(timeout, 0..5, |i| async move {
            let wait = if i == 0 {
                timeout
            } else {
                Duration::from_secs(60)
            };
            tokio::time::sleep(wait).await;
            Err(i)
        })
        .await;
        assert_eq!(
            answer,
            Err(Some(0)),
            "the last error seen is the first node's"
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= 2 * timeout && elapsed < Duration::from_secs(30),
            "{elapsed:?}: not one minute per node"
        );
        // The second answers at once after the first failed.
        let answer = in_turn(timeout, 0..5, |i| async move {
            if i == 1 { Ok(i) } else { Err(i) }
        })
        .await;
        assert_eq!(answer, Ok(1));
    }
}
