//! Hedged reads: a node call of a read that has not answered within that node's recent
//! 95th percentile latency is sent again to another live copy of the same shards, and the
//! first answer is used ("The Tail at Scale"). A budget keeps hedges to about a tenth of
//! node calls, so a slow fleet is not asked twice for everything. No dependency on the
//! gateway's state, which holds [`Hedges`].

use miroir_proto::pb;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Each node call earns a tenth of a hedge, up to [`BURST`] hedges saved.
const EARNED_PER_CALL: u64 = 100;
const COST: u64 = 1_000;
const BURST: u64 = 100 * COST;

/// The hedges' budget and counts.
#[derive(Debug)]
pub struct Hedges {
    /// Thousandths of a hedge.
    budget: AtomicU64,
    /// Hedges sent.
    pub sent: Counter,
    /// Hedges whose answer was used (it came first).
    pub won: Counter,
}

impl Default for Hedges {
    fn default() -> Self {
        Self {
            // Enough for a start: hedges are possible before many calls were made.
            budget: AtomicU64::new(10 * COST),
            sent: Counter::default(),
            won: Counter::default(),
        }
    }
}

impl Hedges {
    /// A node call of a read: adds to the budget.
    pub fn earn(&self) {
        let _ = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + EARNED_PER_CALL).min(BURST))
            });
    }

    /// Takes one hedge from the budget, if there is one.
    fn spend(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(COST)
            })
            .is_ok()
    }
}

/// Another live node, not `excluded`, holding an in-sync copy of every one of `shards` in
/// an active group: the least costly by `cost`, or `None`.
pub fn alternative(
    index: &pb::Index,
    topology: &pb::Topology,
    node: &str,
    shards: &[u32],
    excluded: &HashSet<String>,
    cost: &dyn Fn(&str) -> f64,
) -> Option<String> {
    let active = topology.active_groups();
    let holds = |candidate: &str| {
        shards.iter().all(|&shard| {
            index.routing.iter().any(|g| {
                active.contains(&g.group_id)
                    && g.shards
                        .get(shard as usize)
                        .is_some_and(|r| r.is_in_sync(candidate))
            })
        })
    };
    topology
        .nodes
        .iter()
        .filter(|n| n.id != node && n.serves() && !excluded.contains(&n.id))
        .filter(|n| holds(&n.id))
        .min_by(|a, b| cost(&a.id).total_cmp(&cost(&b.id)))
        .map(|n| n.id.clone())
}

/// Runs `primary`; if it has not answered after `delay` and the budget allows, starts
/// `hedge` too and returns the first good answer (`true` when the hedge's). A failed
/// answer waits for the other call, whose answer is then used, good or not. The call
/// that loses is not dropped: it finishes on its own task, its answer unused, so that its
/// node's latency is learnt (a dropped call would hide how slow the node is, and the
/// replica choice and the next hedges would keep asking it).
pub async fn race<T, E, P, H>(
    hedges: &Hedges,
    primary: P,
    delay: Duration,
    hedge: impl FnOnce() -> H,
) -> (Result<T, E>, bool)
where
    P: Future<Output = Result<T, E>> + Send + 'static,
    H: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let mut primary = Box::pin(primary);
    tokio::select! {
        biased;
        answer = &mut primary => return (answer, false),
        () = tokio::time::sleep(delay) => {}
    }
    if !hedges.spend() {
        return (primary.await, false);
    }
    hedges.sent.inc();
    let mut hedge = Box::pin(hedge());
    tokio::select! {
        biased;
        answer = &mut primary => match answer {
            Ok(answer) => {
                tokio::spawn(hedge);
                (Ok(answer), false)
            }
            Err(_) => (hedge.await, true),
        },
        answer = &mut hedge => match answer {
            Ok(answer) => {
                hedges.won.inc();
                tokio::spawn(primary);
                (Ok(answer), true)
            }
            Err(_) => (primary.await, false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn after(ms: u64, answer: Result<&'static str, ()>) -> Result<&'static str, ()> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        answer
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_is_hedged_and_the_first_good_answer_wins() {
        let hedges = Hedges::default();
        let delay = Duration::from_millis(10);
        // Answered before the delay: no hedge.
        let answer = race(&hedges, after(5, Ok("primary")), delay, || {
            after(1, Ok("hedge"))
        })
        .await;
        assert_eq!(answer, (Ok("primary"), false));
        assert_eq!(hedges.sent.get(), 0);
        // Slow: the hedge answers first.
        let answer = race(&hedges, after(50, Ok("primary")), delay, || {
            after(1, Ok("hedge"))
        })
        .await;
        assert_eq!(answer, (Ok("hedge"), true));
        assert_eq!((hedges.sent.get(), hedges.won.get()), (1, 1));
        // A failed hedge leaves the primary's answer.
        let answer = race(&hedges, after(50, Ok("primary")), delay, || {
            after(1, Err(()))
        })
        .await;
        assert_eq!(answer, (Ok("primary"), false));
        // A failed primary leaves the hedge's.
        let answer = race(&hedges, after(20, Err(())), delay, || {
            after(30, Ok("hedge"))
        })
        .await;
        assert_eq!(answer, (Ok("hedge"), true));
        assert_eq!((hedges.sent.get(), hedges.won.get()), (3, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn hedges_stay_within_the_budget() {
        let hedges = Hedges::default();
        let mut sent = 0;
        for _ in 0..100 {
            hedges.earn();
            let (_, hedged) = race(
                &hedges,
                after(50, Ok("primary")),
                Duration::from_millis(1),
                || after(1, Ok("hedge")),
            )
            .await;
            sent += usize::from(hedged);
        }
        // The first ten from the starting budget, then one per ten calls.
        assert_eq!(sent, 10 + 10);
        assert_eq!(hedges.sent.get(), 20);
    }
}
