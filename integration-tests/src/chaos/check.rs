//! The chaos run's checker, once every fault is undone and the fleet is whole again:
//!
//! - every acknowledged write is on every replica of its shard (nodes read directly);
//! - no deleted document came back;
//! - every gateway's view equals the model;
//! - every client task finished, and as `succeeded` (each was a valid write).

use super::clients::{Expected, Record, doc_id};
use super::fleet::{ChaosFleet, INDEX};
use crate::{Meili, ShardDocuments};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What the checker found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Acknowledged writes missing or different on some replica.
    pub lost: Vec<String>,
    /// Deleted documents found on some replica.
    pub resurrected: Vec<String>,
    /// Shards whose replicas differ.
    pub replicas_differ: Vec<String>,
    /// Gateways whose documents differ from the model.
    pub gateway_views_differ: Vec<String>,
    /// Acknowledged writes' tasks by final status.
    pub tasks: BTreeMap<String, u64>,
    /// Tasks that did not end `succeeded`, a few of them.
    pub untruthful_tasks: Vec<String>,
}

/// Checks the fleet against the model in `record`.
pub async fn check(fleet: &ChaosFleet, record: &Record) -> Findings {
    let mut findings = Findings::default();
    let mut nodes: HashMap<String, Meili> = fleet
        .nodes
        .iter()
        .map(|(id, node)| (id.clone(), Meili::new(&node.url)))
        .collect();
    nodes.insert(fleet.spare.0.clone(), Meili::new(&fleet.spare.1.url));
    for node in nodes.values() {
        node.quiesce().await;
    }
    let topology = fleet.topology().await;
    let Some(index) = topology.indexes.iter().find(|i| i.uid == INDEX) else {
        findings.lost.push("the index is gone".into());
        return findings;
    };
    let shard_of = |id: &str| miroir_proto::placement::shard_for_key(id, index.shard_count).0;
    // Each shard's documents as its replicas agree on them (the first replica's).
    let mut agreed: HashMap<u32, ShardDocuments> = HashMap::new();
    let mut copies: HashMap<u32, Vec<(String, ShardDocuments)>> = HashMap::new();
    for routing in &index.routing {
        for route in &routing.shards {
            for owner in route.read_nodes.iter().chain(&route.write_nodes) {
                if copies
                    .get(&route.shard)
                    .is_some_and(|c| c.iter().any(|(n, _)| n == owner))
                {
                    continue;
                }
                let Some(node) = nodes.get(owner) else {
                    continue;
                };
                let copy = node.shard_documents(INDEX, route.shard).await;
                copies
                    .entry(route.shard)
                    .or_default()
                    .push((owner.clone(), copy));
            }
        }
    }
    for (shard, held) in &copies {
        let (first_owner, first) = &held[0];
        for (owner, copy) in &held[1..] {
            if copy != first {
                let differing = first
                    .keys()
                    .chain(copy.keys())
                    .filter(|id| first.get(*id) != copy.get(*id))
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>();
                findings.replicas_differ.push(format!(
                    "shard {shard}: {first_owner} and {owner} differ on {differing:?}"
                ));
            }
        }
        agreed.insert(*shard, first.clone());
    }
    let mut replay: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (i, doc) in record.docs.iter().enumerate() {
        let id = doc_id(i);
        let expected = doc.lock().await.clone();
        let replicas = copies
            .get(&shard_of(&id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        match expected {
            Expected::Present(doc) => {
                for (owner, copy) in replicas {
                    if copy.get(&id) != Some(&doc) {
                        findings.lost.push(format!(
                            "{id} on {owner}: expected {doc:?}, held {:?}",
                            copy.get(&id)
                        ));
                    }
                }
                replay.insert(id, doc);
            }
            Expected::Absent => {
                for (owner, copy) in replicas {
                    if copy.contains_key(&id) {
                        findings.resurrected.push(format!("{id} on {owner}"));
                    }
                }
            }
            Expected::Unknown => {
                if let Some(doc) = agreed.get(&shard_of(&id)).and_then(|s| s.get(&id)) {
                    replay.insert(id, doc.clone());
                }
            }
        }
    }
    for url in &fleet.gateway_urls {
        let gateway = Meili::new(url);
        let (status, browse) = gateway
            .get(&format!("/indexes/{INDEX}/documents?limit=100000"))
            .await;
        let served: BTreeMap<String, Map<String, Value>> = browse["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| Some((d["id"].as_str()?.to_owned(), d.as_object()?.clone())))
            .collect();
        if status != 200 || served != replay {
            let differing = served
                .keys()
                .chain(replay.keys())
                .filter(|id| served.get(*id) != replay.get(*id))
                .take(5)
                .cloned()
                .collect::<Vec<_>>();
            findings.gateway_views_differ.push(format!(
                "{url}: status {status}, {} documents served, {} in the model, differing {differing:?}",
                served.len(),
                replay.len()
            ));
        }
    }
    check_tasks(fleet, record, &mut findings).await;
    findings
}

/// Every acknowledged write's task, through the gateways in turn, until it ends.
async fn check_tasks(fleet: &ChaosFleet, record: &Record, findings: &mut Findings) {
    let tasks = record
        .tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let gateways: Vec<Meili> = fleet.gateway_urls.iter().map(|u| Meili::new(u)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, uid) in tasks.iter().enumerate() {
        let gateway = &gateways[i % gateways.len()];
        let status = loop {
            let (code, task) = gateway.get(&format!("/tasks/{uid}")).await;
            let status = task["status"].as_str().unwrap_or("").to_owned();
            if code == 200 && matches!(status.as_str(), "succeeded" | "failed" | "canceled") {
                if status != "succeeded" && findings.untruthful_tasks.len() < 10 {
                    findings
                        .untruthful_tasks
                        .push(format!("task {uid}: {status}: {}", task["error"]));
                }
                break status;
            }
            if Instant::now() > deadline {
                if findings.untruthful_tasks.len() < 10 {
                    findings
                        .untruthful_tasks
                        .push(format!("task {uid}: answered {code}, still {status:?}"));
                }
                break format!("unfinished ({status})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        *findings.tasks.entry(status).or_default() += 1;
    }
}
