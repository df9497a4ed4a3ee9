//! The plan of a read: which nodes are asked for which shards ([`ReadPlan`], a covering
//! set under the request's settings floor), and for a search what each node is asked
//! ([`SearchPlan`]).

use super::facets::FacetOrder;
use super::failure::SearchFailure;
use super::query::{Member, Paging, SearchQuery};
use crate::api::consistency::SettingsFloor;
use crate::config::ReplicaSelection;
use crate::nodes::load::NodeLoads;
use crate::state::AppState;
use miroir_proto::pb;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Rotates the group and replica chosen first, spreading reads.
static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

/// The next read's turn in the rotation.
pub fn next_turn() -> usize {
    ROUND_ROBIN.fetch_add(1, Ordering::Relaxed)
}

/// Which node serves which shards, and the shards nobody can serve.
#[derive(Debug, Default, PartialEq)]
pub struct CoveringSet {
    /// node id → shards it is asked for.
    pub assignments: BTreeMap<String, Vec<u32>>,
    /// Shards with no live replica in any active group.
    pub missing: Vec<u32>,
    /// Nodes asked for every shard they hold a copy of: they need no shard filter.
    pub unfiltered: HashSet<String>,
}

/// How a read chooses among the live copies that could serve it.
#[derive(Clone, Copy)]
pub enum Choice<'a> {
    /// In turn: reads spread evenly, whatever each node's load.
    Turn,
    /// The less loaded of two candidates taken in turn (by latency average times calls
    /// in flight, [`NodeLoads::cost`]): a slow or busy replica is avoided while the others
    /// share the reads.
    LeastLoaded(&'a NodeLoads),
}

impl Choice<'_> {
    fn cost(&self, node: &str) -> f64 {
        match self {
            Self::Turn => 0.0,
            Self::LeastLoaded(loads) => loads.cost(node),
        }
    }

    /// Of `candidates` (in turn order), the first, or the second when it costs less.
    fn pick<'n>(&self, candidates: &[&'n String]) -> Option<&'n String> {
        match candidates {
            [] => None,
            [first, second, ..] if self.cost(second) < self.cost(first) => Some(*second),
            [first, ..] => Some(*first),
        }
    }
}

/// The choice `--replica-selection` asks for.
pub fn choice(state: &AppState) -> Choice<'_> {
    match state.config.replica_selection {
        ReplicaSelection::LeastLoaded => Choice::LeastLoaded(&state.loads),
        ReplicaSelection::RoundRobin => Choice::Turn,
    }
}

/// For each shard, one live read node: one node for all of them when a live node holds
/// them all (chosen in turn among such nodes), else groups are tried in turn starting at
/// `turn`, and within a group the replicas rotate with the shard so load spreads.
pub fn covering_set(index: &pb::Index, topology: &pb::Topology, turn: usize) -> CoveringSet {
    let shards: Vec<u32> = (0..index.shard_count).collect();
    covering_set_for(
        index,
        topology,
        turn,
        &shards,
        &HashSet::new(),
        Choice::Turn,
    )
}

/// [`covering_set`] for some shards only, never choosing a node of `excluded`, and
/// choosing among candidates as `choice` says: with [`Choice::LeastLoaded`], the groups
/// are tried from the least loaded (its most loaded node) and each shard's replica is the
/// less loaded of two.
pub fn covering_set_for(
    index: &pb::Index,
    topology: &pb::Topology,
    turn: usize,
    shards: &[u32],
    excluded: &HashSet<String>,
    choice: Choice,
) -> CoveringSet {
    let live: HashSet<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.serves() && !excluded.contains(&n.id))
        .map(|n| n.id.as_str())
        .collect();
    let active = topology.active_groups();
    let mut groups: Vec<&pb::GroupRouting> = index
        .routing
        .iter()
        .filter(|r| active.contains(&r.group_id))
        .collect();
    let mut set = CoveringSet::default();
    // A live node that can serve every shard asked for answers alone (rotating among such
    // nodes by turn): one call, and nothing to merge when it holds only these shards.
    let mut whole: Vec<&String> = groups
        .iter()
        .flat_map(|g| g.shards.first().map(|r| r.in_sync()).into_iter().flatten())
        .filter(|node| live.contains(node.as_str()))
        .filter(|node| {
            shards.iter().all(|&shard| {
                groups.iter().any(|g| {
                    g.shards
                        .get(shard as usize)
                        .is_some_and(|r| r.is_in_sync(node))
                })
            })
        })
        .collect();
    whole.sort();
    whole.dedup();
    if !whole.is_empty() && !shards.is_empty() {
        let len = whole.len();
        whole.rotate_left(turn % len);
        if let Some(node) = choice.pick(&whole) {
            set.assignments.insert(node.clone(), shards.to_vec());
        }
    }
    let spread = set.assignments.is_empty();
    if spread && !groups.is_empty() {
        let len = groups.len();
        groups.rotate_left(turn % len);
        if let Choice::LeastLoaded(_) = choice {
            // A read waits for its slowest node: a group costs what its most loaded live
            // node does. The sort is stable, so equal groups keep their turn.
            let group_cost = |g: &pb::GroupRouting| {
                g.shards
                    .iter()
                    .flat_map(|r| r.in_sync())
                    .filter(|n| live.contains(n.as_str()))
                    .map(|n| choice.cost(n))
                    .fold(0.0, f64::max)
            };
            groups.sort_by(|a, b| group_cost(a).total_cmp(&group_cost(b)));
        }
    }
    for &shard in shards.iter().filter(|_| spread) {
        let chosen = groups.iter().find_map(|group| {
            let route = group.shards.get(shard as usize)?;
            let mut alive: Vec<&String> = route
                .in_sync()
                .filter(|n| live.contains(n.as_str()))
                .collect();
            if alive.is_empty() {
                return None;
            }
            let len = alive.len();
            alive.rotate_left((turn + shard as usize) % len);
            choice.pick(&alive)
        });
        match chosen {
            Some(node) => match set.assignments.get_mut(node.as_str()) {
                Some(assigned) => assigned.push(shard),
                None => {
                    set.assignments.insert(node.clone(), vec![shard]);
                }
            },
            None => set.missing.push(shard),
        }
    }
    // A node asked for all the shards it holds (read or write copies, in any group) has
    // nothing to hide: its answer is exactly those shards. This relies on the routing
    // naming every node that still holds a shard's documents (moves keep a source in the
    // routing or in the move's record until its copy is deleted; see
    // docs/architecture.md).
    for (node, assigned) in &set.assignments {
        if holds_exactly(index, topology, node, assigned) {
            set.unfiltered.insert(node.clone());
        }
    }
    set
}

/// Whether the shards `node` holds a copy of (read or write copies, in any group, or in a
/// move) are `assigned` and no others: asked for them, it has nothing to hide.
pub fn holds_exactly(
    index: &pb::Index,
    topology: &pb::Topology,
    node: &str,
    assigned: &[u32],
) -> bool {
    let node = &node.to_owned();
    let held = (0..index.shard_count as usize)
        .filter(|&shard| {
            index.routing.iter().any(|group| {
                group.shards.get(shard).is_some_and(|route| {
                    route.read_nodes.contains(node) || route.write_nodes.contains(node)
                })
            }) || topology.moves.iter().any(|m| {
                m.index_uid == index.uid
                    && m.shard as usize == shard
                    && (m.old_owners.contains(node) || m.new_owners.contains(node))
            })
        })
        .count();
    held == assigned.len()
}

/// The first covering set of a read of one index, under the request's settings floor,
/// with the topology snapshot it was made from: made once per request, and looked at
/// before the scatter-gather (a node holding everything answers alone).
pub struct ReadPlan {
    /// The snapshot every step of the read uses.
    pub topology: Arc<pb::Topology>,
    /// Keeps this gateway from acknowledging a newer version while the read still uses
    /// this one (a shard move deletes a leaver's copy only after that acknowledgement).
    pub(crate) _pin: crate::topology::VersionPin,
    pub(crate) index: usize,
    /// The request's `X-Miroir-Min-Settings-Version` (0: none).
    pub floor: u64,
    pub(crate) excluded: HashSet<String>,
    pub(crate) turn: usize,
    /// The shards read: all of them, or those a primary key pins ([`super::pinned`]).
    pub shards: Vec<u32>,
    /// Whether a primary key pinned the shards.
    pub pinned: bool,
    /// How long planning took.
    pub planned_in: std::time::Duration,
    /// The covering set the read starts from.
    pub plan: CoveringSet,
}

impl ReadPlan {
    /// Plans a read of `uid` for this `turn`, avoiding nodes behind the settings floor.
    pub fn new(
        state: &AppState,
        uid: &str,
        turn: usize,
        floor: SettingsFloor,
    ) -> Result<Self, SearchFailure> {
        Self::pinned(state, uid, turn, floor, |_| None)
    }

    /// [`ReadPlan::new`] for the shards of the primary keys `keys` finds (given the
    /// index's primary key attribute), or all of them when it finds none.
    pub fn pinned(
        state: &AppState,
        uid: &str,
        turn: usize,
        SettingsFloor(floor): SettingsFloor,
        keys: impl FnOnce(&str) -> Option<Vec<String>>,
    ) -> Result<Self, SearchFailure> {
        let started = std::time::Instant::now();
        let (pin, topology) = state.topology.pin();
        let index = topology
            .indexes
            .iter()
            .position(|i| i.uid == uid)
            .ok_or_else(|| SearchFailure::Miroir(crate::api::indexes::index_not_found(uid)))?;
        let excluded = crate::api::consistency::nodes_behind(&topology.indexes[index], floor);
        let read = &topology.indexes[index];
        let keys: Option<Vec<String>> = read
            .primary_key
            .as_deref()
            .filter(|pk| !pk.is_empty())
            .and_then(keys);
        let (shards, pinned) = match keys {
            Some(keys) => (super::pinned::shards_of(&keys, read.shard_count), true),
            None => ((0..read.shard_count).collect(), false),
        };
        let plan = covering_set_for(
            &topology.indexes[index],
            &topology,
            turn,
            &shards,
            &excluded,
            choice(state),
        );
        Ok(Self {
            topology,
            _pin: pin,
            index,
            floor,
            excluded,
            turn,
            shards,
            pinned,
            planned_in: started.elapsed(),
            plan,
        })
    }

    /// The index read.
    pub fn index(&self) -> &pb::Index {
        &self.topology.indexes[self.index]
    }

    /// Plans the read again without `node` (it failed).
    pub fn exclude(&mut self, state: &AppState, node: String) {
        self.excluded.insert(node);
        self.plan = covering_set_for(
            self.index(),
            &self.topology,
            self.turn,
            &self.shards,
            &self.excluded,
            choice(state),
        );
    }
}

/// What every node of a search is asked, and what the merge then does with the answers:
/// made from the client's query and the index's settings alone, before any node call.
#[derive(Clone, Debug)]
pub struct SearchPlan {
    /// The query each node gets (its shard filter is added per node by the scatter): the
    /// first `skip + take` hits of its shards in page mode, whose `totalHits` is exact where
    /// `estimatedTotalHits` is an estimate, with scores and whatever the merge compares on.
    pub node_query: SearchQuery,
    /// The client's paging, as the answer describes it.
    pub paging: Paging,
    /// Merged hits skipped, then shown: the client's window within `maxTotalHits`.
    pub skip: usize,
    /// See `skip`.
    pub take: usize,
    /// Whether hits are merged by their `_rankingScoreDetails` rule by rule (a sort: the
    /// rules before it, the sort, the rules after it, as Meilisearch ranks).
    pub by_rules: bool,
    /// The attribute hits are made distinct by across nodes: the query's, else the index's.
    pub distinct: Option<String>,
    /// The distinct attribute as a facet, so the total counts each value once across
    /// nodes; with whether the facet was added for that (then it is not shown).
    pub distinct_facet: Option<(String, bool)>,
    /// Attributes added to `attributesToRetrieve` for the merge, taken out of the hits.
    pub injected: Vec<String>,
    /// Whether the client asked for `_rankingScore`.
    pub show_score: bool,
    /// Whether the client asked for `_rankingScoreDetails`.
    pub show_details: bool,
    /// Orders hits of equal rank (one node lists them in indexing order).
    pub primary_key: Option<String>,
    /// How the index shows facet values.
    pub facet_order: FacetOrder,
    /// Whether the client asked for facets.
    pub facets: bool,
    /// Whether the client asked for performance details.
    pub performance: bool,
}

/// Meilisearch's default `pagination.maxTotalHits`.
const DEFAULT_MAX_TOTAL_HITS: usize = 1000;

impl SearchPlan {
    /// The plan of `query` on an index with `settings` (its committed settings, when
    /// known) and `primary_key`.
    pub fn new(
        query: &SearchQuery,
        settings: Option<&Map<String, Value>>,
        primary_key: Option<String>,
    ) -> Self {
        let paging = query.paging();
        let (from, count) = paging.window();
        // The index's `pagination.maxTotalHits` bounds what can be paged through.
        let max_total = settings
            .and_then(|s| s.get("pagination"))
            .and_then(|p| p.get("maxTotalHits"))
            .and_then(Value::as_u64)
            .map_or(DEFAULT_MAX_TOTAL_HITS, |n| n as usize);
        let distinct = match query.distinct.get() {
            Some(attribute) => Some(attribute.clone()),
            None => settings
                .and_then(|s| s.get("distinctAttribute"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let mut node = query.clone();
        node.offset = Member::Absent;
        node.limit = Member::Absent;
        node.page = Member::Given(1);
        // Nothing past `maxTotalHits` is ever shown: nodes are asked for no more.
        let wanted = if from >= max_total {
            0
        } else {
            from.saturating_add(count).min(max_total)
        };
        node.hits_per_page = Member::Given(wanted);
        node.show_ranking_score = Member::Given(true);
        let by_rules = !query.sort_rules().is_empty();
        // A hybrid search reports how many hits shown are semantic: details say which.
        if by_rules || query.is_hybrid() {
            node.show_ranking_score_details = Member::Given(true);
        }
        // With a distinct attribute a node's total counts each value once among its own
        // shards, but one value can live on several nodes: the nodes' values of that
        // attribute (as a facet) let the merge count each once across nodes. Only a
        // filterable attribute can be a facet; a query's own `distinct` on another is left
        // for the nodes to refuse (`invalid_search_distinct`). Without known settings, a
        // query's own is taken to be filterable.
        let distinct_facet = distinct
            .as_ref()
            .filter(|a| match settings {
                Some(settings) => is_filterable(settings, a),
                None => query.distinct.get().is_some(),
            })
            .map(|attribute| {
                let mut facets = node.facets.get().cloned().unwrap_or_default();
                let added = !facets.iter().any(|f| f == attribute || f == "*");
                if added {
                    facets.push(attribute.clone());
                }
                node.facets = Member::Given(facets);
                (attribute.clone(), added)
            });
        let mut injected = Vec::new();
        if let Some(requested) = query.attributes_to_retrieve.get()
            && !requested.iter().any(|a| a == "*")
        {
            let mut attributes = requested.clone();
            // The cross-node distinct needs the distinct attribute's value.
            if let Some(needed) = &distinct
                && !attributes.contains(needed)
            {
                attributes.push(needed.clone());
                injected.push(needed.clone());
            }
            node.attributes_to_retrieve = Member::Given(attributes);
        }
        Self {
            node_query: node,
            paging,
            skip: from.min(max_total),
            take: count.min(max_total.saturating_sub(from)),
            by_rules,
            distinct,
            distinct_facet,
            injected,
            show_score: query.show_ranking_score.or(false),
            show_details: query.show_ranking_score_details.or(false),
            primary_key,
            facet_order: FacetOrder::from_settings(settings),
            facets: query.asks_facets(),
            performance: query.show_performance_details.or(false),
        }
    }
}

#[cfg(test)]
impl SearchPlan {
    /// The plan of a search body on an index keyed by `id` with `settings` (tests).
    pub fn of(query: Value, settings: Value) -> Self {
        Self::new(
            &SearchQuery::of(query),
            settings.as_object(),
            Some("id".into()),
        )
    }
}

/// Whether the index's settings make `attribute` filterable (so it can be a facet).
fn is_filterable(settings: &Map<String, Value>, attribute: &str) -> bool {
    let Some(Value::Array(rules)) = settings.get("filterableAttributes") else {
        return false;
    };
    rules.iter().any(|rule| match rule {
        Value::String(name) => name == attribute || name == "*",
        // Granular form: `{"attributePatterns": [...], "features": {...}}`.
        Value::Object(rule) => rule
            .get("attributePatterns")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|p| p == attribute || p == "*")),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use miroir_proto::pb::GroupState;
    use miroir_proto::pb::NodeState;
    use serde_json::json;

    /// One active group of `nodes`; shard `s` held by `owners(s)`.
    fn layout(
        nodes: &[&str],
        shards: u32,
        owners: impl Fn(u32) -> Vec<&'static str>,
    ) -> (pb::Index, pb::Topology) {
        let topology = pb::Topology {
            nodes: nodes
                .iter()
                .map(|id| pb::Node {
                    id: (*id).into(),
                    state: NodeState::Active as i32,
                    ..Default::default()
                })
                .collect(),
            groups: vec![pb::Group {
                id: 0,
                state: GroupState::Active as i32,
            }],
            ..Default::default()
        };
        let route = |s: u32| pb::ShardRoute {
            shard: s,
            read_nodes: owners(s).into_iter().map(String::from).collect(),
            write_nodes: owners(s).into_iter().map(String::from).collect(),
            blocked: false,
            stale_nodes: Vec::new(),
        };
        let index = pb::Index {
            uid: "i".into(),
            shard_count: shards,
            routing: vec![pb::GroupRouting {
                group_id: 0,
                shards: (0..shards).map(route).collect(),
            }],
            ..Default::default()
        };
        (index, topology)
    }

    #[test]
    fn nodes_asked_for_all_they_hold_need_no_shard_filter() {
        let (index, topology) =
            layout(&["a", "b"], 4, |s| vec![if s % 2 == 0 { "a" } else { "b" }]);
        let plan = covering_set(&index, &topology, 0);
        assert_eq!(
            plan.unfiltered.len(),
            2,
            "RF 1: each node holds exactly its shards"
        );
        let (index, topology) = layout(&["a", "b"], 4, |_| vec!["a", "b"]);
        let plan = covering_set(&index, &topology, 0);
        assert_eq!(
            plan.assignments["a"],
            [0, 1, 2, 3],
            "RF 2 of 2: one node answers"
        );
        assert!(plan.unfiltered.contains("a"));
        let next = covering_set(&index, &topology, 1);
        assert_eq!(
            next.assignments["b"],
            [0, 1, 2, 3],
            "the next turn asks the other"
        );
        let excluded: HashSet<String> = ["a".to_owned()].into();
        let retry = covering_set_for(&index, &topology, 0, &[0, 1, 2, 3], &excluded, Choice::Turn);
        assert_eq!(retry.assignments["b"], [0, 1, 2, 3]);
        assert!(
            retry.unfiltered.contains("b"),
            "b answers for every shard it holds"
        );
        let (index, topology) = layout(&["a", "b", "c"], 3, |s| match s {
            0 => vec!["a", "b"],
            1 => vec!["b", "c"],
            _ => vec!["c", "a"],
        });
        let plan = covering_set(&index, &topology, 0);
        assert!(
            plan.assignments.len() > 1,
            "RF 2 of 3: no node holds everything, so the shards are spread"
        );
    }

    #[test]
    fn the_less_loaded_copy_is_asked_and_equal_ones_in_turn() {
        let loads = NodeLoads::default();
        // `a` answered slowly and has calls waiting; `b` and `c` were never asked.
        loads.answered_in("a", std::time::Duration::from_millis(5));
        let _waiting = loads.start("a");
        let least = Choice::LeastLoaded(&loads);
        let all: Vec<u32> = (0..4).collect();
        let (index, topology) = layout(&["a", "b"], 4, |_| vec!["a", "b"]);
        for turn in 0..4 {
            let plan = covering_set_for(&index, &topology, turn, &all, &HashSet::new(), least);
            assert_eq!(
                plan.assignments.keys().collect::<Vec<_>>(),
                ["b"],
                "turn {turn}"
            );
        }
        // RF 2 of 3: each shard's copy is the less loaded of its two.
        let (index, topology) = layout(&["a", "b", "c"], 3, |s| match s {
            0 => vec!["a", "b"],
            1 => vec!["b", "c"],
            _ => vec!["c", "a"],
        });
        for turn in 0..3 {
            let plan =
                covering_set_for(&index, &topology, turn, &[0, 1, 2], &HashSet::new(), least);
            assert!(!plan.assignments.contains_key("a"), "turn {turn}: {plan:?}");
            assert_eq!(plan.missing, Vec::<u32>::new());
        }
        // Equal costs: the turn decides, as round-robin does.
        let fresh = NodeLoads::default();
        let (index, topology) = layout(&["a", "b"], 4, |_| vec!["a", "b"]);
        let first = covering_set_for(
            &index,
            &topology,
            0,
            &all,
            &HashSet::new(),
            Choice::LeastLoaded(&fresh),
        );
        let next = covering_set_for(
            &index,
            &topology,
            1,
            &all,
            &HashSet::new(),
            Choice::LeastLoaded(&fresh),
        );
        assert_ne!(
            first.assignments.keys().next(),
            next.assignments.keys().next()
        );
    }

    #[test]
    fn nodes_are_asked_for_every_hit_up_to_the_window_in_page_mode() {
        let plan = SearchPlan::of(json!({"q": "a", "offset": 10, "limit": 5}), json!({}));
        assert_eq!(
            plan.node_query.to_json(),
            json!({"q": "a", "page": 1, "hitsPerPage": 15, "showRankingScore": true})
        );
        assert_eq!((plan.skip, plan.take), (10, 5));
        assert_eq!(
            plan.paging,
            Paging::Offset {
                offset: 10,
                limit: 5
            }
        );
        assert!(!plan.show_score && !plan.by_rules);
        // Past `maxTotalHits` nothing is shown, so nothing is asked.
        let plan = plan_with_max(json!({"page": 30, "hitsPerPage": 50}), 1000);
        assert_eq!(plan.node_query.hits_per_page, Member::Given(0));
        assert_eq!((plan.skip, plan.take), (1000, 0));
        let plan = plan_with_max(json!({"offset": 90, "limit": 20}), 100);
        assert_eq!(plan.node_query.hits_per_page, Member::Given(100));
        assert_eq!((plan.skip, plan.take), (90, 10));
    }

    fn plan_with_max(query: Value, max: u64) -> SearchPlan {
        SearchPlan::of(query, json!({"pagination": {"maxTotalHits": max}}))
    }

    #[test]
    fn a_sort_or_hybrid_search_is_merged_by_ranking_details() {
        let plan = SearchPlan::of(json!({"sort": ["year:desc"]}), json!({}));
        assert!(plan.by_rules);
        assert_eq!(
            plan.node_query.show_ranking_score_details,
            Member::Given(true)
        );
        let plan = SearchPlan::of(json!({"hybrid": {"embedder": "e"}}), json!({}));
        assert!(!plan.by_rules);
        assert_eq!(
            plan.node_query.show_ranking_score_details,
            Member::Given(true)
        );
    }

    #[test]
    fn distinct_brings_its_attribute_as_a_facet_and_in_the_hits() {
        let settings = json!({"distinctAttribute": "sku", "filterableAttributes": ["sku"]});
        let plan = SearchPlan::of(
            json!({"attributesToRetrieve": ["title"], "facets": ["genre"]}),
            settings,
        );
        assert_eq!(plan.distinct.as_deref(), Some("sku"));
        assert_eq!(plan.distinct_facet, Some(("sku".into(), true)));
        assert_eq!(
            plan.node_query.facets,
            Member::Given(vec!["genre".into(), "sku".into()])
        );
        assert_eq!(plan.injected, ["sku"]);
        assert_eq!(
            plan.node_query.attributes_to_retrieve,
            Member::Given(vec!["title".into(), "sku".into()])
        );
        // Not filterable: no facet to count by; the merge still dedups the hits.
        let plan = SearchPlan::of(
            json!({"distinct": "color"}),
            json!({"filterableAttributes": []}),
        );
        assert_eq!(plan.distinct.as_deref(), Some("color"));
        assert_eq!(plan.distinct_facet, None);
        assert!(plan.node_query.facets.is_absent());
    }
}
