//! Scatter-gather (DESIGN §5): a covering set of nodes, each asked only for the shards
//! assigned to it (`_miroir_shard IN [...]` ANDed with the client's filter, so no shard is
//! counted twice with RF > 1); shards whose node fails are asked again of another live
//! replica; what no replica can serve follows the shard-unavailable policy.

pub use super::failure::SearchFailure;
use super::plan::{CoveringSet, ReadPlan, covering_set_for};
use super::query::SearchQuery;
use crate::api::consistency::SettingsFloor;
use crate::api::error::{ErrorType, MeiliError};
use crate::config::ShardPolicy;
use crate::nodes::{NodeAnswer, NodeBody, Unreachable};
use crate::state::AppState;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use http::Method;
use miroir_proto::pb;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Where a scatter's calls may be hedged: the index read and the nodes it must not ask.
#[derive(Clone, Copy)]
pub struct HedgeScope<'a> {
    pub index: &'a pb::Index,
    pub excluded: &'a HashSet<String>,
}

/// One node's answer in a scatter: its position in the plan, the answer, and the node
/// that gave it when another copy answered in its place (a hedge).
pub type ScatterAnswer = (usize, Result<NodeAnswer, Unreachable>, Option<String>);

/// Sends `body` to every node of `plan` at `path` (POST), each with its own shard filter
/// ANDed with the client's `filter`, inside the current span; answers in plan order. A
/// call not answered by `deadline` (besides its own timeout) counts as unreachable. With
/// a `hedge` scope (and `--hedge-reads`), a call slower than its node's recent 95th
/// percentile is sent again to another copy of its shards ([`super::hedge`]).
pub async fn scatter(
    state: &AppState,
    topology: &pb::Topology,
    plan: &CoveringSet,
    path: &str,
    request: NodeRequest<'_>,
    deadline: Option<tokio::time::Instant>,
    hedge: Option<HedgeScope<'_>>,
) -> Vec<ScatterAnswer> {
    let mut calls: Vec<_> = plan
        .assignments
        .iter()
        .enumerate()
        .filter_map(|(position, (node_id, shards))| {
            let node = topology.nodes.iter().find(|n| &n.id == node_id)?;
            let unfiltered = plan.unfiltered.contains(node_id);
            let node_body = request.for_node(shards, unfiltered);
            let alternative = hedge.and_then(|scope| {
                hedge_target(state, topology, scope, node_id, shards, |other_unfiltered| {
                    // The same shards and the same filtering make the same body: no
                    // second serializing.
                    match &node_body {
                        NodeBody::Json(bytes) if other_unfiltered == unfiltered => {
                            NodeBody::Json(bytes.clone())
                        }
                        _ => request.for_node(shards, other_unfiltered),
                    }
                })
            });
            let (state, node_id, address, path) = (
                state.clone(),
                node_id.clone(),
                node.address.clone(),
                path.to_owned(),
            );
            let named = node_id.clone();
            Some((position, named, async move {
                let call = node_call(state.clone(), node_id.clone(), address, path.clone(), node_body);
                let call = async {
                    match alternative {
                        None => (call.await, None),
                        Some(target) => {
                            let (answer, hedged) = super::hedge::race(&state.hedges, call, target.delay, || {
                                node_call(state.clone(), target.node.clone(), target.address, path.clone(), target.body)
                            })
                            .await;
                            (answer, hedged.then_some(target.node))
                        }
                    }
                };
                let (answer, by) = match deadline {
                    None => call.await,
                    Some(deadline) => tokio::time::timeout_at(deadline, call)
                        .await
                        .unwrap_or_else(|_| {
                            (Err(Unreachable {
                                detail: format!(
                                    "node `{node_id}` did not answer within the time left to retries"
                                ),
                                node: node_id.clone(),
                            }), None)
                        }),
                };
                (position, answer, by)
            }))
        })
        .collect();
    // One node: call it on this task, sparing a spawn and a cross-thread wake-up.
    if calls.len() == 1
        && let Some((_, _, call)) = calls.pop()
    {
        return vec![call.await];
    }
    let calls = calls
        .into_iter()
        .map(|(position, node, call)| ((position, node), call));
    let mut answers: Vec<_> = miroir_proto::fan_out::join_tagged(calls)
        .await
        .into_iter()
        .map(|((position, node), outcome)| match outcome {
            Ok(answer) => answer,
            // A call that panicked is a failed node, retried on another replica or
            // reported, never a shard silently left out.
            Err(error) => (
                position,
                Err(crate::nodes::failed_inside(&node, &error)),
                None,
            ),
        })
        .collect();
    answers.sort_by_key(|(position, ..)| *position);
    answers
}

/// A read's call to one node, under passive health.
async fn node_call(
    state: AppState,
    node: String,
    address: String,
    path: String,
    body: NodeBody,
) -> Result<NodeAnswer, Unreachable> {
    let call = state
        .nodes
        .send(&node, &address, Method::POST, &path, Some(body));
    crate::nodes::trouble::watched(&state, &node, call).await
}

/// Where and when a call to `node` would be hedged.
pub(crate) struct HedgeTarget {
    pub node: String,
    pub address: String,
    pub body: NodeBody,
    pub delay: std::time::Duration,
}

/// The hedge of a read's call to `node` for `shards` (under `--hedge-reads`): after the
/// node's recent 95th percentile, to the least loaded other copy of those shards, with
/// the body `body_for` makes for that copy (given whether it holds exactly these shards);
/// none before the node has answered enough calls, or without such a copy.
pub(crate) fn hedge_target(
    state: &AppState,
    topology: &pb::Topology,
    scope: HedgeScope<'_>,
    node: &str,
    shards: &[u32],
    body_for: impl FnOnce(bool) -> NodeBody,
) -> Option<HedgeTarget> {
    if !state.config.hedge_reads {
        return None;
    }
    state.hedges.earn();
    let own = state.loads.p95(node)?;
    let other =
        super::hedge::alternative(scope.index, topology, node, shards, scope.excluded, &|n| {
            state.loads.cost(n)
        })?;
    // Towards a copy that answers faster (a lower percentile), the hedge goes after that
    // copy's percentile: past it, the copy would most likely have answered already. Towards
    // one no faster, only after twice its percentile: a hedge then covers a node that
    // stopped answering, without loading the fleet for answers that would not come first
    // (docs/benchmarks.md, "Tail latency").
    let theirs = state.loads.p95(&other).unwrap_or(own);
    let delay = if theirs < own { theirs } else { theirs * 2 };
    let address = topology
        .nodes
        .iter()
        .find(|n| n.id == other)?
        .address
        .clone();
    let body = body_for(super::plan::holds_exactly(
        scope.index,
        topology,
        &other,
        shards,
    ));
    Some(HedgeTarget {
        node: other,
        address,
        body,
        delay,
    })
}

/// What a scatter asks of each node, made for the shards the node serves.
#[derive(Clone, Copy)]
pub enum NodeRequest<'a> {
    /// One body (a search, a document fetch, a facet search) and the client's filter.
    One {
        /// The body, without the node's shards.
        body: &'a Map<String, Value>,
        /// The client's filter.
        filter: Option<&'a Value>,
    },
    /// A search: the client's filter is its own.
    Search(&'a SearchQuery),
    /// A federated multi-search body (`queries`, `federation`): every query gets the
    /// node's shards, ANDed with its own filter.
    Federated(&'a Map<String, Value>),
}

impl NodeRequest<'_> {
    pub(crate) fn for_node(&self, shards: &[u32], unfiltered: bool) -> NodeBody {
        match self {
            Self::One { body, filter } => {
                NodeBody::json(&node_query(body, *filter, shards, unfiltered))
            }
            // Serialized from the typed query: no map in between.
            Self::Search(query) => {
                let mut query = (*query).clone();
                if !unfiltered {
                    query.filter = Some(with_shard_filter(query.filter.as_ref(), shards));
                }
                NodeBody::json(&query)
            }
            Self::Federated(body) => {
                let mut node_body = (*body).clone();
                if let Some(Value::Array(queries)) = node_body.get_mut("queries") {
                    for query in queries.iter_mut() {
                        if let Value::Object(own) = query {
                            let filter = own.get("filter").cloned();
                            *query = node_query(own, filter.as_ref(), shards, unfiltered);
                        }
                    }
                }
                NodeBody::json(&node_body)
            }
        }
    }
}

/// The body a node is sent: the client's with the node's shard filter (or, for a node
/// asked for everything it holds, the client's filter alone).
fn node_query(
    body: &Map<String, Value>,
    filter: Option<&Value>,
    shards: &[u32],
    unfiltered: bool,
) -> Value {
    let mut node_body = body.clone();
    if unfiltered {
        match filter {
            Some(filter) => node_body.insert("filter".into(), filter.clone()),
            None => node_body.remove("filter"),
        };
    } else {
        node_body.insert("filter".into(), with_shard_filter(filter, shards));
    }
    Value::Object(node_body)
}

/// The client's filter ANDed with the node's shards, in the array form (an AND of its
/// elements): Meilisearch parses each element on its own, so an error in the client's
/// filter quotes it and points into it as one Meilisearch would, without Miroir's part.
pub fn with_shard_filter(client: Option<&Value>, shards: &[u32]) -> Value {
    let own = miroir_proto::settings::shard_filter(shards);
    match client {
        None | Some(Value::Null) => json!(own),
        Some(Value::String(s)) if s.trim().is_empty() => json!(own),
        Some(Value::String(s)) => json!([own, s]),
        // A malformed array goes on alone: nodes refuse it quoting only the client's.
        Some(Value::Array(items)) if !items.iter().all(well_formed_element) => {
            Value::Array(items.clone())
        }
        Some(Value::Array(items)) => {
            let mut all = vec![json!(own)];
            all.extend(items.iter().cloned());
            Value::Array(all)
        }
        Some(other) => other.clone(),
    }
}

/// An element of a filter array Meilisearch takes: a string, or an array of strings.
fn well_formed_element(element: &Value) -> bool {
    match element {
        Value::String(_) => true,
        Value::Array(inner) => inner.iter().all(Value::is_string),
        _ => false,
    }
}

/// Every successful node answer of one scatter-gather, and the shards nobody served.
pub struct Gathered {
    /// 200 answers: those of the first plan in its order, then those of retries.
    pub answers: Vec<Value>,
    /// For each answer, the node that gave it and its shards: where to ask for more
    /// (a browse's next page).
    pub sources: Vec<CoveringSet>,
    /// `index/shard` left out of the answers (policy `partial`).
    pub degraded: Vec<String>,
    /// The snapshot the read used, kept pinned while the answers are used.
    pub topology: Arc<pb::Topology>,
    _pin: crate::topology::VersionPin,
}

/// How many times shards whose node failed are asked of another replica.
const RETRY_ROUNDS: usize = 2;

/// Scatters `body` over a covering set of `index` and collects the answers. A node that
/// fails (unreachable, timeout, 5xx) has its shards asked of another live replica, in any
/// group; a 4xx is the client's error and ends the request. Shards left unserved make
/// the request fail with 503 `miroir_shard_unavailable` under policy `error`.
pub async fn gather(
    state: &AppState,
    uid: &str,
    turn: usize,
    floor: SettingsFloor,
    path: &str,
    request: NodeRequest<'_>,
) -> Result<Gathered, SearchFailure> {
    gather_from(
        state,
        ReadPlan::new(state, uid, turn, floor)?,
        path,
        request,
    )
    .await
}

/// [`gather`] from a plan already made.
pub async fn gather_from(
    state: &AppState,
    read: ReadPlan,
    path: &str,
    request: NodeRequest<'_>,
) -> Result<Gathered, SearchFailure> {
    let ReadPlan {
        topology,
        _pin,
        index: position,
        floor,
        mut excluded,
        turn,
        mut plan,
        ..
    } = read;
    let index = &topology.indexes[position];
    let mut answers = Vec::new();
    let mut sources = Vec::new();
    let mut lost: Vec<u32> = Vec::new();
    let mut last_error: Option<String> = None;
    // Each call of the first round is bounded by the node timeout; the calls of every
    // retry round share one more: a read never lasts past twice `--node-timeout`,
    // however many replicas are slow.
    let mut deadline = None;
    for round in 0..=RETRY_ROUNDS {
        if round == 1 {
            deadline = Some(tokio::time::Instant::now() + state.config.node_timeout);
        }
        lost.extend(plan.missing.iter().copied());
        let nodes: Vec<(&String, &Vec<u32>)> = plan.assignments.iter().collect();
        let mut failed: Vec<u32> = Vec::new();
        let scope = HedgeScope {
            index,
            excluded: &excluded,
        };
        let round_answers = scatter(
            state,
            &topology,
            &plan,
            path,
            request,
            deadline,
            Some(scope),
        )
        .await;
        for (position, answer, by) in round_answers {
            let (planned, shards) = nodes[position];
            // The copy that answered: a hedge's node when it came first.
            let node = by.as_ref().unwrap_or(planned);
            match answer {
                Ok(answer) if answer.status == 200 => {
                    answers.push(answer.body);
                    sources.push(CoveringSet {
                        assignments: BTreeMap::from([(node.clone(), shards.clone())]),
                        missing: Vec::new(),
                        unfiltered: if super::plan::holds_exactly(index, &topology, node, shards) {
                            HashSet::from([node.clone()])
                        } else {
                            HashSet::new()
                        },
                    });
                }
                Ok(answer) if (400..500).contains(&answer.status) => {
                    let status =
                        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
                    return Err(SearchFailure::Node(status, answer.body));
                }
                failure => {
                    last_error = Some(match failure {
                        Ok(answer) => format!("node `{node}` answered {}", answer.status),
                        Err(unreachable) => unreachable.error()["message"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    });
                    tracing::warn!(node, ?shards, error = ?last_error, "node failed during a read; asking another replica");
                    excluded.insert(planned.clone());
                    excluded.extend(by);
                    failed.extend(shards.iter().copied());
                }
            }
        }
        if failed.is_empty() {
            break;
        }
        if round == RETRY_ROUNDS {
            lost.extend(failed);
            break;
        }
        plan = covering_set_for(
            index,
            &topology,
            turn + round + 1,
            &failed,
            &excluded,
            super::plan::choice(state),
        );
    }
    lost.sort_unstable();
    lost.dedup();
    if !lost.is_empty() && floor > 0 {
        return Err(SearchFailure::Miroir(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_settings_version_stale",
            ErrorType::System,
            format!(
                "Index `{}`: no live nodes verified at settings version {floor} or later can serve shards {lost:?} (committed version: {}).",
                index.uid, index.settings_version
            ),
        )));
    }
    if !lost.is_empty() && state.config.shard_unavailable_policy == ShardPolicy::Error {
        let mut message = format!(
            "Index `{}`: no live replica could serve shards {lost:?}.",
            index.uid
        );
        if let Some(error) = last_error {
            message.push_str(&format!(" Last error: {error}"));
        }
        return Err(SearchFailure::Miroir(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_shard_unavailable",
            ErrorType::System,
            message,
        )));
    }
    let degraded = lost.iter().map(|s| format!("{}/{s}", index.uid)).collect();
    Ok(Gathered {
        answers,
        sources,
        degraded,
        topology,
        _pin,
    })
}

/// Adds `X-Miroir-Degraded: shards=…` when some shards were left out.
pub fn mark_degraded(response: &mut Response, degraded: &[String]) {
    // Several reads of one request (a multi-search's queries) can miss the same shard.
    let mut named = HashSet::new();
    let shards: Vec<&str> = degraded
        .iter()
        .map(String::as_str)
        .filter(|shard| named.insert(*shard))
        .collect();
    if !shards.is_empty()
        && let Ok(value) = HeaderValue::from_str(&format!("shards={}", shards.join(",")))
    {
        response.headers_mut().insert("x-miroir-degraded", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::GatewayState;
    use miroir_proto::pb::{GroupState, NodeState};

    /// A node on loopback answering every call with `status`, its name and the body it
    /// was sent.
    async fn fake_node(name: &'static str, status: u16) -> String {
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| async move {
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let status = StatusCode::from_u16(status).expect("a status");
            (status, axum::Json(json!({"node": name, "sent": sent})))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    /// Index `i`, 3 shards in one group: shards 0 and 1 on `a` and `b`, shard 2 on `c`.
    fn fleet(a: &str, b: &str, c: &str) -> pb::Topology {
        let node = |id: &str, address: &str| pb::Node {
            id: id.into(),
            address: address.into(),
            state: NodeState::Active as i32,
            ..Default::default()
        };
        let route = |shard: u32, owners: &[&str]| pb::ShardRoute {
            shard,
            read_nodes: owners.iter().map(|n| n.to_string()).collect(),
            write_nodes: owners.iter().map(|n| n.to_string()).collect(),
            blocked: false,
            stale_nodes: Vec::new(),
        };
        pb::Topology {
            version: 1,
            nodes: vec![node("a", a), node("b", b), node("c", c)],
            groups: vec![pb::Group {
                id: 0,
                state: GroupState::Active as i32,
            }],
            indexes: vec![pb::Index {
                uid: "i".into(),
                shard_count: 3,
                routing: vec![pb::GroupRouting {
                    group_id: 0,
                    shards: vec![
                        route(0, &["a", "b"]),
                        route(1, &["b", "a"]),
                        route(2, &["c"]),
                    ],
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_failing_nodes_shards_are_asked_again_and_the_unserved_reported() {
        let (failing, healthy) = (fake_node("a", 500).await, fake_node("b", 200).await);
        // `c` refuses connections.
        let state = GatewayState::for_tests(fleet(&failing, &healthy, "http://127.0.0.1:1"));
        let mut query = SearchQuery::default();
        query.filter = Some(json!("genre = rock"));
        let gathered = gather(
            &state,
            "i",
            0,
            SettingsFloor(0),
            "/indexes/i/search",
            NodeRequest::Search(&query),
        )
        .await
        .unwrap();
        assert_eq!(gathered.degraded, ["i/2"], "no other replica holds shard 2");
        // Turn 0 asks `a` for shards 0 and 1 (all it holds: no shard filter); it fails, and
        // `b`, holding exactly those, answers for both.
        let answered: Vec<(&Value, &Value)> = gathered
            .answers
            .iter()
            .map(|answer| (&answer["node"], &answer["sent"]["filter"]))
            .collect();
        assert_eq!(answered, [(&json!("b"), &json!("genre = rock"))]);
    }

    #[tokio::test]
    async fn a_client_error_ends_the_read() {
        let refusing = fake_node("a", 400).await;
        let state = GatewayState::for_tests(fleet(&refusing, &refusing, &refusing));
        let failure = gather(
            &state,
            "i",
            0,
            SettingsFloor(0),
            "/indexes/i/search",
            NodeRequest::Search(&SearchQuery::default()),
        )
        .await
        .err()
        .expect("a failure");
        assert!(matches!(
            failure,
            SearchFailure::Node(StatusCode::BAD_REQUEST, _)
        ));
    }

    #[test]
    fn shard_filters_and_the_client_filter_combine() {
        assert_eq!(
            with_shard_filter(None, &[1, 3]),
            json!(r#"_miroir_shard IN ["_", "/"]"#)
        );
        assert_eq!(
            with_shard_filter(Some(&json!("a = 1 OR b = 2")), &[0]),
            json!([r#"_miroir_shard IN ["-"]"#, "a = 1 OR b = 2"])
        );
        assert_eq!(
            with_shard_filter(Some(&json!(["a = 1", 5])), &[2]),
            json!(["a = 1", 5]),
            "refused by the nodes anyway, and then without Miroir's part"
        );
        assert_eq!(
            with_shard_filter(Some(&json!(["a = 1", ["b = 2", "c = 3"]])), &[2]),
            json!([r#"_miroir_shard IN [":"]"#, "a = 1", ["b = 2", "c = 3"]])
        );
    }
}
