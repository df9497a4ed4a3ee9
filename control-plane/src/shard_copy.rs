//! Reading, copying and comparing one shard's documents between nodes: the data work of a
//! shard move. Every call goes through [`NodeClient`] (timeout, master key, span).
//!
//! A shard's documents are found on a node with the filter `_miroir_shard IN ["<tag>"]`, paged
//! with offset and limit. Offset paging is not stable under concurrent writes (a delete
//! shifts later pages), so the copy may miss or repeat documents; that is fine because
//! verification compares the whole shard afterwards and repairs, and the last
//! verification runs while writes to the shard are held.

use crate::nodes::NodeClient;
use http::Method;
use miroir_proto::pb;
use miroir_proto::settings::shard_filter;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Documents per page read from a node, and per batch written to one: large pages keep the
/// number of filtered reads (each a scan of the shard's filter on the node) low.
pub const PAGE: usize = 5000;
/// Pages of one shard read at once from one node.
const PARALLEL_PAGES: usize = 4;

fn base(node: &pb::Node) -> &str {
    node.address.trim_end_matches('/')
}

fn describe(node: &pb::Node, error: &crate::nodes::NodeCallError) -> String {
    let message = error.error["message"].as_str().unwrap_or("failed");
    format!("node {}: {message}", node.id)
}

/// The id of `document` under primary key `pk`, as Meilisearch compares ids.
fn document_id(document: &Value, pk: &str) -> Option<String> {
    match document.get(pk)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One page of `shard`'s documents on `node`, and the shard's document count there.
async fn fetch_page(
    client: &NodeClient,
    node: &pb::Node,
    uid: &str,
    shard: u32,
    offset: usize,
) -> Result<(Vec<Value>, u64), String> {
    let body = json!({
        "filter": shard_filter(&[shard]),
        "offset": offset,
        "limit": PAGE,
    });
    let url = format!("{}/indexes/{uid}/documents/fetch", base(node));
    match client.send(&node.id, Method::POST, url, Some(body)).await {
        Ok((200, answer)) => {
            let total = answer["total"].as_u64().unwrap_or(0);
            let results = answer["results"].as_array().cloned().unwrap_or_default();
            Ok((results, total))
        }
        Ok((status, answer)) => Err(format!(
            "node {}: reading shard {shard} answered {status}: {answer}",
            node.id
        )),
        Err(error) => Err(describe(node, &error)),
    }
}

/// Every document of `shard` on `node`, by id.
pub async fn read_shard(
    client: &NodeClient,
    node: &pb::Node,
    uid: &str,
    pk: &str,
    shard: u32,
) -> Result<HashMap<String, Value>, String> {
    let mut documents = HashMap::new();
    let keep = |page: Vec<Value>, documents: &mut HashMap<String, Value>| {
        for document in page {
            if let Some(id) = document_id(&document, pk) {
                documents.insert(id, document);
            }
        }
    };
    // The first page tells the count; the pages it announces are read a few at a time
    // (a cutover waits on this), then on until a page comes back empty.
    let (first, total) = fetch_page(client, node, uid, shard, 0).await?;
    if first.is_empty() {
        return Ok(documents);
    }
    let mut offset = first.len();
    keep(first, &mut documents);
    let announced: Vec<usize> = (offset..total as usize).step_by(PAGE).collect();
    for batch in announced.chunks(PARALLEL_PAGES) {
        let mut pages = tokio::task::JoinSet::new();
        for &at in batch {
            let (client, node, uid) = (client.clone(), node.clone(), uid.to_owned());
            pages.spawn(async move { fetch_page(&client, &node, &uid, shard, at).await });
        }
        while let Some(joined) = pages.join_next().await {
            let (page, _) = joined.map_err(|e| format!("page read panicked: {e}"))??;
            offset += page.len();
            keep(page, &mut documents);
        }
    }
    loop {
        let (page, _) = fetch_page(client, node, uid, shard, offset).await?;
        if page.is_empty() {
            return Ok(documents);
        }
        offset += page.len();
        keep(page, &mut documents);
    }
}

/// Enqueues `method path body` on `node`; its task uid.
async fn enqueue(
    client: &NodeClient,
    node: &pb::Node,
    method: Method,
    path: String,
    body: Value,
) -> Result<u64, String> {
    client
        .enqueue(
            &node.id,
            method,
            format!("{}{path}", base(node)),
            Some(body),
        )
        .await
        .map_err(|e| describe(node, &e))
}

/// Waits for `uid` on `node` and fails unless it succeeded.
async fn succeeded(client: &NodeClient, node: &pb::Node, uid: u64) -> Result<(), String> {
    let task = client
        .wait_task(&node.id, base(node), uid)
        .await
        .map_err(|e| describe(node, &e))?;
    if task["status"] == "succeeded" {
        Ok(())
    } else {
        Err(format!(
            "node {}: task {uid} {}: {}",
            node.id, task["status"], task["error"]
        ))
    }
}

/// One shard's documents going from a source node to target nodes.
#[derive(Clone, Copy)]
pub struct Transfer<'a> {
    /// The client for node calls.
    pub client: &'a NodeClient,
    /// Where the documents are read (authoritative).
    pub source: &'a pb::Node,
    /// Where they go.
    pub targets: &'a [pb::Node],
    /// Index uid.
    pub uid: &'a str,
    /// The index's primary key.
    pub pk: &'a str,
    /// The shard.
    pub shard: u32,
    /// Checked before every write to a node: whether this process may still act (a
    /// deposed leader must not write to nodes the new leader has moved on from).
    pub may_write: &'a (dyn Fn() -> bool + Sync),
}

impl Transfer<'_> {
    fn fenced(&self) -> Result<(), String> {
        if (self.may_write)() {
            Ok(())
        } else {
            Err("this control plane no longer leads; the move is left to the new leader".into())
        }
    }
}

/// Copies every document of `shard` from `source` to each of `targets`, page by page,
/// reporting `(copied, total)` after each page; the number of documents read.
pub async fn copy(t: &Transfer<'_>, progress: impl Fn(u64, u64)) -> Result<u64, String> {
    let Transfer {
        client,
        source,
        targets,
        uid,
        pk,
        shard,
        ..
    } = *t;
    let path = miroir_proto::node_paths::documents_with_primary_key(uid, pk);
    let mut offset = 0;
    let mut last: Vec<Option<u64>> = vec![None; targets.len()];
    loop {
        let (page, total) = fetch_page(client, source, uid, shard, offset).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len();
        let body = Value::Array(page);
        t.fenced()?;
        for (target, last) in targets.iter().zip(&mut last) {
            *last = Some(enqueue(client, target, Method::POST, path.clone(), body.clone()).await?);
        }
        progress(offset as u64, total.max(offset as u64));
    }
    // A node runs its tasks in order: the last one done means all are.
    for (target, last) in targets.iter().zip(last) {
        if let Some(uid) = last {
            succeeded(client, target, uid).await?;
        }
    }
    Ok(offset as u64)
}

/// Waits until `node` has run every task of index `uid` enqueued on it before this call
/// (tasks of other indexes do not hold it).
async fn drain_queue(client: &NodeClient, node: &pb::Node, uid: &str) -> Result<(), String> {
    let newest = client
        .get(&node.id, format!("{}/tasks?limit=1", base(node)))
        .await
        .map_err(|e| describe(node, &e))?;
    let Some(newest) = newest["results"][0]["uid"].as_u64() else {
        return Ok(());
    };
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        let open = client
            .get(
                &node.id,
                format!(
                    "{}/tasks?statuses=enqueued,processing&indexUids={uid}&from={newest}&limit=1",
                    base(node)
                ),
            )
            .await
            .map_err(|e| describe(node, &e))?;
        if open["results"].as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// [`drain_queue`] on every node of `nodes` at once.
pub async fn drain_queues<'a>(
    client: &NodeClient,
    nodes: impl Iterator<Item = &'a pb::Node>,
    uid: &str,
) -> Result<(), String> {
    let mut drains = tokio::task::JoinSet::new();
    for node in nodes {
        let (client, node, uid) = (client.clone(), node.clone(), uid.to_owned());
        drains.spawn(async move { drain_queue(&client, &node, &uid).await });
    }
    while let Some(joined) = drains.join_next().await {
        joined.map_err(|e| format!("queue wait panicked: {e}"))??;
    }
    Ok(())
}

/// Passes of [`repair_until_small`] stop once a pass repairs at most this many documents.
pub const SMALL_ENOUGH: u64 = 100;
/// At most this many passes of [`repair_until_small`].
pub const MAX_PASSES: usize = 4;

/// [`verify_and_repair`] while writes flow, until a pass repairs at most [`SMALL_ENOUGH`]
/// documents or no fewer than the pass before (at most [`MAX_PASSES`]), each pass after the
/// source's and targets' queues ran: writes taken but not yet indexed are not differences,
/// so the pass under held writes that follows has little to repair. `on_pass(pass,
/// repaired)` after each; the documents repaired in all.
pub async fn repair_until_small(
    t: &Transfer<'_>,
    on_pass: impl Fn(usize, u64),
) -> Result<u64, String> {
    let (mut last, mut total) = (u64::MAX, 0);
    for pass in 1..=MAX_PASSES {
        drain_queues(t.client, std::iter::once(t.source).chain(t.targets), t.uid).await?;
        let repaired = verify_and_repair(t).await?;
        total += repaired;
        on_pass(pass, repaired);
        if repaired <= SMALL_ENOUGH || repaired >= last {
            break;
        }
        last = repaired;
    }
    Ok(total)
}

/// Compares `shard` on `source` with each target and makes every target equal to the
/// source: documents missing or different are written again, documents the source does
/// not have are deleted. The number of documents repaired, over all targets.
///
/// The source is authoritative: a write is acknowledged only once the shard's current
/// owners (the source among them) took it, so anything a target has that the source
/// lacks was never acknowledged, or was deleted since it was copied.
pub async fn verify_and_repair(t: &Transfer<'_>) -> Result<u64, String> {
    let Transfer {
        client,
        source,
        targets,
        uid,
        pk,
        shard,
        ..
    } = *t;
    // Source and targets are read at the same time.
    let reads = targets
        .iter()
        .map(|target| read_shard(client, target, uid, pk, shard));
    let (expected, helds) =
        tokio::try_join!(read_shard(client, source, uid, pk, shard), try_all(reads))?;
    let mut repaired = 0;
    for (target, held) in targets.iter().zip(helds) {
        let stale: Vec<Value> = expected
            .iter()
            .filter(|(id, document)| held.get(*id) != Some(*document))
            .map(|(_, document)| document.clone())
            .collect();
        let extra: Vec<&String> = held
            .keys()
            .filter(|id| !expected.contains_key(*id))
            .collect();
        repaired += (stale.len() + extra.len()) as u64;
        if !stale.is_empty() || !extra.is_empty() {
            t.fenced()?;
        }
        write_and_delete(client, target, uid, pk, &stale, &extra).await?;
    }
    Ok(repaired)
}

/// Writes `documents` (whole, replacing) to `node` and deletes `ids` from it, in pages,
/// and waits until the node ran them.
pub async fn write_and_delete(
    client: &NodeClient,
    node: &pb::Node,
    uid: &str,
    pk: &str,
    documents: &[Value],
    ids: &[&String],
) -> Result<(), String> {
    let mut tasks = Vec::new();
    for chunk in documents.chunks(PAGE) {
        let path = miroir_proto::node_paths::documents_with_primary_key(uid, pk);
        tasks.push(enqueue(client, node, Method::POST, path, json!(chunk)).await?);
    }
    for chunk in ids.chunks(PAGE) {
        let path = format!("/indexes/{uid}/documents/delete-batch");
        tasks.push(enqueue(client, node, Method::POST, path, json!(chunk)).await?);
    }
    for task in tasks {
        succeeded(client, node, task).await?;
    }
    Ok(())
}

/// A hash of `document` that does not depend on the order of its fields (two nodes may
/// return one document's fields in different orders).
pub fn document_hash(document: &Value) -> u64 {
    fn feed(value: &Value, hasher: &mut std::hash::DefaultHasher) {
        use std::hash::Hash;
        match value {
            Value::Null => 0u8.hash(hasher),
            Value::Bool(b) => (1u8, b).hash(hasher),
            Value::Number(n) => (2u8, n.to_string()).hash(hasher),
            Value::String(s) => (3u8, s).hash(hasher),
            Value::Array(items) => {
                (4u8, items.len()).hash(hasher);
                items.iter().for_each(|item| feed(item, hasher));
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_unstable();
                (5u8, keys.len()).hash(hasher);
                for key in keys {
                    key.hash(hasher);
                    feed(&map[key], hasher);
                }
            }
        }
    }
    let mut hasher = std::hash::DefaultHasher::new();
    feed(document, &mut hasher);
    std::hash::Hasher::finish(&hasher)
}

/// Every document of `shard` on `node` as (id → [`document_hash`]), read page by page in
/// offset order, paced by `pace`. Paging
/// under concurrent writes may miss or repeat a document: callers confirm what differs.
pub async fn read_digests(
    client: &NodeClient,
    node: &pb::Node,
    uid: &str,
    pk: &str,
    shard: u32,
    pace: &mut Pace,
) -> Result<HashMap<String, u64>, String> {
    let mut digests = HashMap::new();
    let mut offset = 0;
    loop {
        let (page, _) = fetch_page(client, node, uid, shard, offset).await?;
        if page.is_empty() {
            return Ok(digests);
        }
        offset += page.len();
        pace.take(page.len() as u64).await;
        for document in &page {
            if let Some(id) = document_id(document, pk) {
                digests.insert(id, document_hash(document));
            }
        }
    }
}

/// The documents of `ids` that `node` holds, by id.
pub async fn fetch_ids(
    client: &NodeClient,
    node: &pb::Node,
    uid: &str,
    pk: &str,
    ids: &[&String],
) -> Result<HashMap<String, Value>, String> {
    let mut documents = HashMap::new();
    for chunk in ids.chunks(1000) {
        let body = json!({"ids": chunk, "limit": chunk.len()});
        let url = format!("{}/indexes/{uid}/documents/fetch", base(node));
        match client.send(&node.id, Method::POST, url, Some(body)).await {
            Ok((200, answer)) => {
                for document in answer["results"].as_array().into_iter().flatten() {
                    if let Some(id) = document_id(document, pk) {
                        documents.insert(id, document.clone());
                    }
                }
            }
            Ok((status, answer)) => {
                return Err(format!(
                    "node {}: fetching documents by id answered {status}: {answer}",
                    node.id
                ));
            }
            Err(error) => return Err(describe(node, &error)),
        }
    }
    Ok(documents)
}

/// Runs `futures` one after the other (targets are few); all their values or the first
/// error.
async fn try_all<T>(
    futures: impl Iterator<Item = impl std::future::Future<Output = Result<T, String>>>,
) -> Result<Vec<T>, String> {
    let mut values = Vec::new();
    for future in futures {
        values.push(future.await?);
    }
    Ok(values)
}

/// Deletes every document of `shard` from `node` (a copy that is no longer an owner's).
pub async fn delete_shard(
    client: &NodeClient,
    node: &pb::Node,
    uid: &str,
    shard: u32,
) -> Result<(), String> {
    let path = format!("/indexes/{uid}/documents/delete");
    let body = json!({"filter": shard_filter(&[shard])});
    let task = client
        .send(
            &node.id,
            Method::POST,
            format!("{}{path}", base(node)),
            Some(body),
        )
        .await
        .map_err(|e| describe(node, &e))?;
    match task {
        (202, answer) => match answer["taskUid"].as_u64() {
            Some(uid) => succeeded(client, node, uid).await,
            None => Err(format!("node {}: no task in {answer}", node.id)),
        },
        // The index is gone from the node: nothing left to delete.
        (404, answer) if answer["code"] == "index_not_found" => Ok(()),
        (status, answer) => Err(format!("node {}: {status} {answer}", node.id)),
    }
}

/// Paces work (an anti-entropy pass) to `per_second` documents read or written (0: no limit).
pub struct Pace {
    per_second: u64,
    started: tokio::time::Instant,
    spent: u64,
}

impl Pace {
    /// A pace of `per_second` documents, from now.
    pub fn new(per_second: u64) -> Self {
        Self {
            per_second,
            started: tokio::time::Instant::now(),
            spent: 0,
        }
    }

    /// Counts `documents` and waits until the pass is within its rate again.
    pub async fn take(&mut self, documents: u64) {
        if self.per_second == 0 {
            return;
        }
        self.spent += documents;
        let due = self.started
            + std::time::Duration::from_secs_f64(self.spent as f64 / self.per_second as f64);
        tokio::time::sleep_until(due).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_pass_is_paced_to_its_rate() {
        let mut pace = Pace::new(1000);
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            pace.take(500).await;
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let mut unlimited = Pace::new(0);
        let started = tokio::time::Instant::now();
        unlimited.take(1_000_000).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
