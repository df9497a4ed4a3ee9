//! One search, stage by stage: the covering set and what each node is asked
//! ([`super::plan`]), the node calls ([`super::scatter`]), the merge ([`super::merge`]) and
//! the answer ([`super::respond`]); a node holding every shard answers alone.

use super::facets::FacetOrder;
use super::hedge::race;
use super::merge::merge;
use super::plan::{ReadPlan, SearchPlan, next_turn};
use super::query::SearchQuery;
use super::respond::{Pinned, Searched, Timing, one_node_answer, search_body};
use super::scatter::{HedgeScope, NodeRequest, SearchFailure, gather_from, hedge_target};
use crate::api::auth::Caller;
use crate::api::consistency::SettingsFloor;
use crate::nodes::NodeBody;
use crate::state::AppState;
use axum::http::StatusCode;
use miroir_proto::settings::SHARD_FIELD;
use serde_json::{Map, Value};
use std::time::Instant;

/// Scatter-gather and merge one search. With `raw_ok` (a single search, answered as is) a
/// one-node answer may come back as the node's bytes; multi-search merges answers and
/// needs them parsed.
pub async fn run_search(
    state: &AppState,
    caller: &Caller,
    floor: SettingsFloor,
    uid: &str,
    mut query: SearchQuery,
    raw_ok: bool,
) -> Result<Searched, SearchFailure> {
    caller
        .restrict_search(uid, &mut query)
        .map_err(SearchFailure::Miroir)?;
    let settings = crate::api::settings::cached(state, uid).await;
    let mut read = ReadPlan::pinned(state, uid, next_turn(), floor, |primary_key| {
        let filter = query.filter.as_ref()?;
        super::pinned::keys_of_filter(filter, primary_key)
    })?;
    match from_one_node(state, &read, &query, settings.as_deref(), raw_ok).await {
        OneNode::Answered(searched) => return searched,
        OneNode::Skipped => {}
        // The scatter-gather asks the other copies.
        OneNode::Failed(node) => read.exclude(state, node),
    }
    let plan = SearchPlan::new(
        &query,
        settings.as_deref(),
        read.index().primary_key.clone(),
    );
    let path = format!("/indexes/{uid}/search");
    let pinned = read.pinned.then(|| Pinned {
        shards: read.shards.len(),
        of: read.index().shard_count,
        planned_in: read.planned_in,
    });
    let started = Instant::now();
    let gathered = gather_from(state, read, &path, NodeRequest::Search(&plan.node_query)).await?;
    let waited = started.elapsed();
    let merging = Instant::now();
    let merged = merge(&plan, gathered.answers);
    let timing = Timing {
        waited,
        merged: merging.elapsed(),
        pinned,
    };
    Ok(Searched {
        body: search_body(&plan, query.words(), merged, timing, raw_ok),
        raw: None,
        degraded: gathered.degraded,
    })
}

/// What asking one node for the whole search gave.
enum OneNode {
    Answered(Result<Searched, SearchFailure>),
    /// Not a one-node read, or an answer that needs the scatter-gather path.
    Skipped,
    /// The node (and its hedge, if any) did not answer.
    Failed(String),
}

/// When one node holds every shard of the index and is asked for all of them, there is
/// nothing to merge: it gets the client's own query (no page mode, no scores, no shard
/// filter) and its answer is passed on with Miroir's field removed and facet values cut to
/// the index's `maxValuesPerFacet` (nodes hold a higher one). `None` when this does not
/// apply, or the node that failed (the scatter-gather path then asks the other copies).
async fn from_one_node(
    state: &AppState,
    read: &ReadPlan,
    query: &SearchQuery,
    settings: Option<&Map<String, Value>>,
    raw_ok: bool,
) -> OneNode {
    // Under a settings floor the scatter-gather path reports what the floor left out; a
    // pinned read asked for its performance details shows the plan's stage there.
    if read.floor > 0 || (read.pinned && query.show_performance_details.or(false)) {
        return OneNode::Skipped;
    }
    let (topology, plan, uid) = (&read.topology, &read.plan, &read.index().uid);
    let Some((node_id, _)) = plan.assignments.iter().next() else {
        return OneNode::Skipped;
    };
    if plan.assignments.len() != 1 || !plan.missing.is_empty() || !plan.unfiltered.contains(node_id)
    {
        return OneNode::Skipped;
    }
    let Some(node) = topology.nodes.iter().find(|n| &n.id == node_id) else {
        return OneNode::Skipped;
    };

    let path = format!("/indexes/{uid}/search");
    let scope = HedgeScope {
        index: read.index(),
        excluded: &read.excluded,
    };
    // Another copy of the shards read gets the client's query as it is when it holds
    // only them, else with their shard filter.
    let hedge = hedge_target(
        state,
        topology,
        scope,
        node_id,
        &read.shards,
        |unfiltered| {
            if unfiltered {
                NodeBody::json(query)
            } else {
                NodeRequest::Search(query).for_node(&read.shards, false)
            }
        },
    );
    let primary = raw_search(
        state.clone(),
        node_id.clone(),
        node.address.clone(),
        path.clone(),
        NodeBody::json(query),
    );
    let answer = match hedge {
        None => primary.await,
        Some(target) => {
            race(&state.hedges, primary, target.delay, || {
                raw_search(
                    state.clone(),
                    target.node.clone(),
                    target.address,
                    path.clone(),
                    target.body,
                )
            })
            .await
            .0
        }
    };
    let Ok((status, bytes)) = answer else {
        return OneNode::Failed(node_id.clone());
    };
    // A single search's answer with no facet holding more values than the index shows
    // needs no change but Miroir's field: the node's bytes pass with it cut out, sparing a
    // parse and a re-serialization.
    let as_sent = || {
        raw_ok
            && (!query.names_facets()
                || crate::read::strip::most_facet_values(&bytes)
                    .is_some_and(|n| n <= FacetOrder::from_settings(settings).max_values))
    };
    match status {
        200 if as_sent() => OneNode::Answered(Ok(Searched {
            body: Map::new(),
            raw: Some(crate::read::strip::strip_member(&bytes, SHARD_FIELD)),
            degraded: Vec::new(),
        })),
        200 => serde_json::from_slice(&bytes)
            .ok()
            .and_then(|body| one_node_answer(body, settings))
            .map_or(OneNode::Skipped, |searched| OneNode::Answered(Ok(searched))),
        400..=499 => {
            let error = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            OneNode::Answered(Err(SearchFailure::Node(status, error)))
        }
        _ => OneNode::Failed(node_id.clone()),
    }
}

/// A search sent to one node under passive health, its answer's status and bytes.
async fn raw_search(
    state: AppState,
    node: String,
    address: String,
    path: String,
    body: NodeBody,
) -> Result<(u16, bytes::Bytes), crate::nodes::Unreachable> {
    let call = state
        .nodes
        .send_raw(&node, &address, http::Method::POST, &path, Some(body));
    crate::nodes::trouble::watched(&state, &node, call).await
}
