//! Concurrent calls to many nodes, collected whole: a call that panics comes back as an
//! error under its own tag instead of ending the collection, so the other nodes' answers
//! are kept and the failed one is retried or reported like any failed node.

use std::collections::HashMap;
use std::future::Future;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Runs every `(tag, call)` on its own task (in the current span) and returns each tag
/// with its call's output, or with the panic's message when the call panicked. The order
/// is the order of completion.
pub async fn join_tagged<K, T, F>(
    calls: impl IntoIterator<Item = (K, F)>,
) -> Vec<(K, Result<T, String>)>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut running = JoinSet::new();
    let mut tags = HashMap::new();
    for (tag, call) in calls {
        let task = running.spawn(call.in_current_span());
        tags.insert(task.id(), tag);
    }
    let mut outcomes = Vec::with_capacity(tags.len());
    while let Some(joined) = running.join_next_with_id().await {
        let (id, outcome) = match joined {
            Ok((id, output)) => (id, Ok(output)),
            Err(error) => {
                tracing::error!(%error, "a concurrent call failed inside Miroir");
                (error.id(), Err(error.to_string()))
            }
        };
        if let Some(tag) = tags.remove(&id) {
            outcomes.push((tag, outcome));
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_panics_is_reported_under_its_tag_and_the_others_are_kept() {
        let calls = (0..5).map(|i| {
            (i, async move {
                tokio::task::yield_now().await;
                assert!(i != 1, "call {i} fails inside Miroir");
                i * 10
            })
        });
        let mut outcomes = join_tagged(calls).await;
        outcomes.sort_by_key(|(tag, _)| *tag);
        assert_eq!(outcomes.len(), 5, "every call is collected");
        assert!(matches!(&outcomes[1], (1, Err(message)) if message.contains("panic")));
        for (tag, outcome) in outcomes.iter().filter(|(tag, _)| *tag != 1) {
            assert_eq!(outcome, &Ok(tag * 10));
        }
    }
}
