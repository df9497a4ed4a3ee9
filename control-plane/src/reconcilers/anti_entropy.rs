//! Continuous anti-entropy: the leader compares every shard's in-sync copies (across
//! groups, and within a group when RF > 1) and repairs what differs, so replicas changed
//! out of band (a document edited or deleted directly on one node, a node restored from
//! an old snapshot) become equal again without an operator. On the leader only:
//!
//! ```text
//! each copy: digests (id → document hash), page by page with the shard filter ──►
//! ids whose digests differ ──► queues drained, those ids read again (a write in flight
//! is not a difference) ──► still different: the shard's writes held, barrier, read once
//! more, majority value written to the others, writes released
//! ```
//!
//! Which copy is right: the value most copies hold; on a tie the copy first in the
//! routing's order (lowest group, then the shard's read-node order), as catch-up takes
//! its source. With two copies a document edited out of band on that first copy is
//! spread to the other: without per-document versions (docs/shard-moves.md) nothing
//! tells the two apart; three copies decide by majority.
//!
//! Reads and repairs are paced to `--anti-entropy-rate` documents a second. A pass is
//! idempotent and nothing of it is persisted: a new leader starts its own passes.

use crate::anti_entropy_progress::Tracker;
use crate::reconcilers::shard_moves::{StepError, barrier};
use crate::shard_copy::{self, Pace};
use crate::state::{ServiceState, now_ms};
use crate::topology::route_mut;
use miroir_proto::pb;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many error lines are kept per pass.
const MAX_ERRORS: usize = 20;

/// Runs until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let interval = state.config.anti_entropy_interval;
    let tracker = &state.anti_entropy;
    let schedule = |tracker: &Tracker| {
        let next = (!interval.is_zero()).then(|| Instant::now() + interval);
        tracker.lock().next_pass_at_ms = next.map_or(0, |_| now_ms() + interval.as_millis() as u64);
        next
    };
    let mut next = schedule(tracker);
    loop {
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = tracker.wake.notified() => {}
                }
            }
            None => tracker.wake.notified().await,
        }
        let asked = tracker.lock().requested != 0;
        let due = next.is_some_and(|at| Instant::now() >= at);
        if !asked && !due {
            continue;
        }
        if !state.leads_settled() {
            // A follower (or a leader still settling) runs none; an operator's request
            // waits for it to settle.
            if asked {
                tokio::time::sleep(Duration::from_millis(500)).await;
                tracker.wake.notify_one();
            } else {
                next = schedule(tracker);
            }
            continue;
        }
        pass(&state, if asked { "operator" } else { "schedule" }).await;
        next = schedule(tracker);
    }
}

/// One pass over every shard of every index.
async fn pass(state: &Arc<ServiceState>, trigger: &str) {
    let tracker = &state.anti_entropy;
    let topology = state.topology();
    let shards = shards_to_compare(&topology);
    let number = {
        let mut inner = tracker.lock();
        inner.started += 1;
        if inner.requested != 0 && inner.requested <= inner.started {
            inner.requested = 0;
        }
        inner.running = Some(pb::AntiEntropyPass {
            number: inner.started,
            trigger: trigger.to_owned(),
            started_at_ms: now_ms(),
            shards_total: shards.len() as u32,
            ..Default::default()
        });
        inner.started
    };
    let started = Instant::now();
    tracing::info!(
        number,
        trigger,
        shards = shards.len(),
        "anti-entropy pass started"
    );
    let mut pace = Pace::new(state.config.anti_entropy_rate);
    for shard in &shards {
        if !state.leads_settled() {
            tracker
                .update(|p| push_error(p, format!("{shard}: this control plane stopped leading")));
            break;
        }
        let compared = compare_shard(state, shard, &mut pace).await;
        let metrics = &state.metrics.anti_entropy;
        match compared {
            Ok(Compared::Skipped(why)) => {
                tracing::debug!(%shard, why, "anti-entropy skipped a shard");
                tracker.update(|p| p.shards_skipped += 1);
            }
            Ok(Compared::Done {
                documents,
                differences,
                repaired,
            }) => {
                metrics.shards_checked.inc();
                metrics.documents_compared.inc_by(documents);
                metrics.differences.inc_by(differences);
                metrics.repaired.inc_by(repaired);
                if differences > 0 {
                    tracing::warn!(%shard, differences, repaired, "anti-entropy repaired copies that differed");
                }
                tracker.update(|p| {
                    p.shards_checked += 1;
                    p.documents_compared += documents;
                    p.differences += differences;
                    p.repaired += repaired;
                });
            }
            Err(error) => {
                metrics.shard_errors.inc();
                tracing::warn!(%shard, %error, "anti-entropy could not compare a shard");
                tracker.update(|p| push_error(p, format!("{shard}: {error}")));
            }
        }
    }
    let mut inner = tracker.lock();
    if let Some(mut done) = inner.running.take() {
        done.finished_at_ms = now_ms();
        inner.differences += done.differences;
        inner.repaired += done.repaired;
        tracing::info!(
            number,
            shards_checked = done.shards_checked,
            shards_skipped = done.shards_skipped,
            documents_compared = done.documents_compared,
            differences = done.differences,
            repaired = done.repaired,
            errors = done.errors.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "anti-entropy pass finished"
        );
        inner.last = Some(done);
    }
    state.metrics.anti_entropy.passes.inc();
    state
        .metrics
        .anti_entropy
        .last_finished
        .set((now_ms() / 1000) as i64);
}

fn push_error(pass: &mut pb::AntiEntropyPass, line: String) {
    if pass.errors.len() < MAX_ERRORS {
        pass.errors.push(line);
    }
}

/// One shard of one index, to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ShardKey {
    uid: String,
    shard: u32,
}

impl std::fmt::Display for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/shard {}", self.uid, self.shard)
    }
}

/// Every shard of every index with a primary key (an index without one has no document).
fn shards_to_compare(topology: &pb::Topology) -> Vec<ShardKey> {
    topology
        .indexes
        .iter()
        .filter(|i| i.primary_key.is_some())
        .flat_map(|i| {
            (0..i.shard_count).map(|shard| ShardKey {
                uid: i.uid.clone(),
                shard,
            })
        })
        .collect()
}

/// Why a shard is not compared now, or its in-sync copies on serving nodes in
/// authority order (lowest group first, then the read-node order), the index's primary
/// key, and the group whose route holds the shard's writes. `ours`: the shard's writes
/// are held by this pass, which is no reason to skip it.
fn copies(
    topology: &pb::Topology,
    key: &ShardKey,
    ours: bool,
) -> Result<(Vec<pb::Node>, String, u32), String> {
    let index = topology
        .indexes
        .iter()
        .find(|i| i.uid == key.uid)
        .ok_or("the index no longer exists")?;
    let pk = index
        .primary_key
        .clone()
        .ok_or("the index has no primary key")?;
    if topology
        .moves
        .iter()
        .any(|m| m.index_uid == key.uid && m.shard == key.shard)
    {
        return Err("a shard move is on it".into());
    }
    let active_groups = topology.active_groups();
    let mut routings: Vec<&pb::GroupRouting> = index
        .routing
        .iter()
        .filter(|r| active_groups.contains(&r.group_id))
        .collect();
    routings.sort_by_key(|r| r.group_id);
    let mut nodes: Vec<pb::Node> = Vec::new();
    for routing in &routings {
        let Some(route) = routing.shards.get(key.shard as usize) else {
            continue;
        };
        if route.blocked && !ours {
            return Err("its writes are held (a cutover, a catch-up, a rename)".into());
        }
        if !route.stale_nodes.is_empty() {
            return Err("a copy is stale; catch-up repairs it".into());
        }
        for id in route.in_sync() {
            let node = topology.nodes.iter().find(|n| &n.id == id && n.checked());
            match node {
                Some(node) if !nodes.iter().any(|n| n.id == node.id) => nodes.push(node.clone()),
                Some(_) => {}
                None => return Err(format!("node {id} does not serve")),
            }
        }
    }
    if nodes.len() < 2 {
        return Err("fewer than two copies".into());
    }
    let group = routings.first().map_or(0, |r| r.group_id);
    Ok((nodes, pk, group))
}

enum Compared {
    Skipped(String),
    Done {
        documents: u64,
        differences: u64,
        repaired: u64,
    },
}

/// Compares one shard's copies and repairs what differs.
async fn compare_shard(
    state: &Arc<ServiceState>,
    key: &ShardKey,
    pace: &mut Pace,
) -> Result<Compared, String> {
    let (nodes, pk, _) = match copies(&state.topology(), key, false) {
        Ok(found) => found,
        Err(why) => return Ok(Compared::Skipped(why)),
    };
    let client = &state.nodes;
    let mut digests = Vec::with_capacity(nodes.len());
    let mut documents = 0;
    for node in &nodes {
        let read = shard_copy::read_digests(client, node, &key.uid, &pk, key.shard, pace).await?;
        documents += read.len() as u64;
        digests.push(read);
    }
    let suspects = differing(&digests);
    if suspects.is_empty() {
        return Ok(Compared::Done {
            documents,
            differences: 0,
            repaired: 0,
        });
    }
    // Writes in flight reach the copies at different times: wait for the queues, then
    // look at the suspects again.
    shard_copy::drain_queues(client, nodes.iter(), &key.uid).await?;
    let suspects: Vec<&String> = suspects.iter().collect();
    let values = read_values(client, &nodes, &key.uid, &pk, &suspects, pace).await?;
    let still: Vec<&String> = suspects
        .into_iter()
        .filter(|id| !all_equal(&values, id))
        .collect();
    if still.is_empty() {
        return Ok(Compared::Done {
            documents,
            differences: 0,
            repaired: 0,
        });
    }
    let (differences, repaired) =
        repair_held(state, key, &still, pace)
            .await
            .map_err(|e| match e {
                StepError::NotLeader => "this control plane stopped leading".to_owned(),
                StepError::Failed(error) => error,
            })?;
    Ok(Compared::Done {
        documents,
        differences,
        repaired,
    })
}

/// The ids whose digest is not the same on every copy (absent counts as a value).
fn differing(digests: &[HashMap<String, u64>]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (i, copy) in digests.iter().enumerate() {
        for (id, hash) in copy {
            if digests
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && other.get(id) != Some(hash))
            {
                ids.insert(id.clone());
            }
        }
    }
    ids
}

/// Each copy's documents among `ids`.
async fn read_values(
    client: &crate::nodes::NodeClient,
    nodes: &[pb::Node],
    uid: &str,
    pk: &str,
    ids: &[&String],
    pace: &mut Pace,
) -> Result<Vec<HashMap<String, Value>>, String> {
    let mut values = Vec::with_capacity(nodes.len());
    for node in nodes {
        pace.take(ids.len() as u64).await;
        values.push(shard_copy::fetch_ids(client, node, uid, pk, ids).await?);
    }
    Ok(values)
}

fn all_equal(values: &[HashMap<String, Value>], id: &str) -> bool {
    values.windows(2).all(|w| w[0].get(id) == w[1].get(id))
}

/// The value most copies hold (`None`: absent); on a tie the one the first of those
/// copies holds.
fn majority<'a>(values: &'a [HashMap<String, Value>], id: &str) -> Option<&'a Value> {
    let held: Vec<Option<&Value>> = values.iter().map(|copy| copy.get(id)).collect();
    let votes = |value: &Option<&Value>| held.iter().filter(|v| *v == value).count();
    // `max_by_key` keeps the last of equal maxima: walk from the end so the first wins.
    held.iter()
        .rev()
        .max_by_key(|v| votes(v))
        .copied()
        .flatten()
}

/// Holds the shard's writes, waits for every gateway and the copies' queues, reads `ids`
/// once more and makes every copy hold the majority value. (differences, repaired).
async fn repair_held(
    state: &Arc<ServiceState>,
    key: &ShardKey,
    ids: &[&String],
    pace: &mut Pace,
) -> Result<(u64, u64), StepError> {
    let route_key = {
        let (_, _, group) = copies(&state.topology(), key, false)?;
        (key.uid.clone(), group, key.shard)
    };
    state.set_catch_up_hold(&route_key, true);
    let held = state
        .commit(|t, _| {
            let free = copies(t, key, false).is_ok();
            if free && let Some(route) = route_mut(t, &route_key) {
                route.blocked = true;
            }
            Ok((
                free,
                format!("anti-entropy of {key}: writes held to repair"),
            ))
        })
        .await;
    let result = match held {
        Ok((true, topology)) => {
            let work = repair_under_hold(state, key, ids, topology.version, pace);
            let limit = state.config.cutover_timeout;
            tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                Err(StepError::Failed(format!(
                    "the repair under held writes took longer than {}; writes released",
                    humantime::format_duration(limit)
                )))
            })
        }
        Ok((false, _)) => Err(StepError::Failed(
            "the shard changed hands before its writes could be held".into(),
        )),
        Err(error) => Err(error.into()),
    };
    let released = state
        .commit(|t, _| {
            if let Some(route) = route_mut(t, &route_key) {
                route.blocked = false;
            }
            Ok(((), format!("anti-entropy of {key}: writes released")))
        })
        .await;
    state.set_catch_up_hold(&route_key, false);
    released?;
    result
}

async fn repair_under_hold(
    state: &Arc<ServiceState>,
    key: &ShardKey,
    ids: &[&String],
    version: u64,
    pace: &mut Pace,
) -> Result<(u64, u64), StepError> {
    barrier(state, version).await?;
    let (nodes, pk, _) = copies(&state.topology(), key, true)?;
    let client = &state.nodes;
    shard_copy::drain_queues(client, nodes.iter(), &key.uid).await?;
    let values = read_values(client, &nodes, &key.uid, &pk, ids, pace).await?;
    let mut differences = 0;
    let mut repairs: Vec<(Vec<Value>, Vec<&String>)> = vec![Default::default(); nodes.len()];
    for id in ids.iter().copied() {
        if all_equal(&values, id) {
            continue;
        }
        differences += 1;
        let winner = majority(&values, id);
        for (copy, (writes, deletes)) in values.iter().zip(&mut repairs) {
            if copy.get(id.as_str()) == winner {
                continue;
            }
            match winner {
                Some(document) => writes.push(document.clone()),
                None => deletes.push(id),
            }
        }
    }
    let mut repaired = 0;
    for (node, (writes, deletes)) in nodes.iter().zip(&repairs) {
        if writes.is_empty() && deletes.is_empty() {
            continue;
        }
        if !state.may_act_as_leader() {
            return Err(StepError::NotLeader);
        }
        pace.take((writes.len() + deletes.len()) as u64).await;
        shard_copy::write_and_delete(client, node, &key.uid, &pk, writes, deletes).await?;
        repaired += (writes.len() + deletes.len()) as u64;
    }
    Ok((differences, repaired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn copy(documents: &[(&str, Value)]) -> HashMap<String, Value> {
        documents
            .iter()
            .map(|(id, v)| (id.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn the_majority_wins_and_a_tie_goes_to_the_first_copy() {
        let a = json!({"id": 1, "v": "a"});
        let b = json!({"id": 1, "v": "b"});
        // Edited on one copy of three: the two others win.
        let values = [
            copy(&[("1", b.clone())]),
            copy(&[("1", a.clone())]),
            copy(&[("1", a.clone())]),
        ];
        assert_eq!(majority(&values, "1"), Some(&a));
        // Deleted on one copy of three: the document comes back.
        let values = [
            copy(&[]),
            copy(&[("1", a.clone())]),
            copy(&[("1", a.clone())]),
        ];
        assert_eq!(majority(&values, "1"), Some(&a));
        // Added on one copy of three: it goes.
        let values = [copy(&[]), copy(&[("1", a.clone())]), copy(&[])];
        assert_eq!(majority(&values, "1"), None);
        // Two copies that disagree: the first.
        let values = [copy(&[("1", b.clone())]), copy(&[("1", a.clone())])];
        assert_eq!(majority(&values, "1"), Some(&b));
        let values = [copy(&[]), copy(&[("1", a.clone())])];
        assert_eq!(majority(&values, "1"), None);
    }

    #[test]
    fn digests_that_differ_anywhere_are_suspects() {
        let digests = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
            pairs.iter().map(|(id, h)| (id.to_string(), *h)).collect()
        };
        let found = differing(&[
            digests(&[("1", 10), ("2", 20), ("3", 30)]),
            digests(&[("1", 10), ("2", 21), ("4", 40)]),
            digests(&[("1", 10), ("2", 20), ("3", 30)]),
        ]);
        assert_eq!(found, ["2", "3", "4"].map(String::from).into());
    }

    #[test]
    fn a_documents_hash_ignores_the_order_of_its_fields_only() {
        let one: Value = serde_json::from_str(r#"{"id": 1, "a": [1, {"x": 2, "y": 3}]}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{"a": [1, {"y": 3, "x": 2}], "id": 1}"#).unwrap();
        let other: Value =
            serde_json::from_str(r#"{"id": 1, "a": [{"x": 2, "y": 3}, 1]}"#).unwrap();
        assert_eq!(
            shard_copy::document_hash(&one),
            shard_copy::document_hash(&two)
        );
        assert_ne!(
            shard_copy::document_hash(&one),
            shard_copy::document_hash(&other)
        );
        assert_ne!(
            shard_copy::document_hash(&json!({"a": "1"})),
            shard_copy::document_hash(&json!({"a": 1}))
        );
    }
}
