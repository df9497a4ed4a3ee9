//! A federated multi-search (DESIGN §5): each query runs as a search of its own, its hits
//! weighted and merged into one list in which a document several queries of one index
//! match shows once; each index counts, and facets, the union of what its queries match
//! from a federated search of its own on the nodes ([`union_of`]).

use super::facets::{FacetOrder, merge_facets};
use super::query::{Member, Paging, SearchQuery};
use super::scatter::SearchFailure;
use crate::api::auth::Caller;
use crate::api::consistency::SettingsFloor;
use crate::state::AppState;
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::HashSet;

/// How the merge treats the hits of one query.
#[derive(Clone, Debug, PartialEq)]
pub struct FederatedQuery {
    /// Its index.
    pub uid: String,
    /// `federationOptions.weight`.
    pub weight: f64,
    /// Whether the client asked for `_rankingScore`.
    pub show_score: bool,
    /// The index's primary key: tells apart a document several queries match.
    pub primary_key: Option<String>,
    /// Whether the primary key was added to `attributesToRetrieve` (then taken out).
    pub pk_injected: bool,
    /// A placeholder search without sort or vector ranks nothing.
    pub unranked: bool,
}

impl FederatedQuery {
    /// Makes `query` what the nodes run for it (the first hits the federation's window
    /// needs, with scores) and says how its hits merge. `alone`: the only query of its
    /// index, whose hits need no telling apart.
    pub fn plan(
        uid: &str,
        query: &mut SearchQuery,
        weight: f64,
        paging: &Paging,
        show_performance: bool,
        alone: bool,
        primary_key: Option<String>,
    ) -> Self {
        let show_score = query.show_ranking_score.or(false);
        query.limit = Member::Given(paging.required());
        query.show_ranking_score = Member::Given(true);
        if show_performance {
            query.show_performance_details = Member::Given(true);
        }
        // The primary key tells a document matched by two queries of one index.
        let mut pk_injected = false;
        if !alone
            && let Some(pk) = &primary_key
            && let Member::Given(attributes) = &mut query.attributes_to_retrieve
            && !attributes.iter().any(|a| a == "*" || a == pk)
        {
            attributes.push(pk.clone());
            pk_injected = true;
        }
        let unranked = query.words().trim().is_empty()
            && query.sort.is_absent()
            && query.hybrid.is_none()
            && query.rest.get("vector").is_none_or(Value::is_null);
        Self {
            uid: uid.to_owned(),
            weight,
            show_score,
            primary_key,
            pk_injected,
            unranked,
        }
    }
}

/// One hit of a federated search, before the merge.
struct FederatedHit {
    /// `_rankingScore` × the query's weight.
    score: f64,
    /// Whether the query ranks nothing (a placeholder search without sort or vector):
    /// Meilisearch compares hits by their lists of weighted rule scores, and a
    /// placeholder's list is empty, which ranks below any other hit whatever the weights.
    unranked: bool,
    /// The query's position.
    position: usize,
    /// Its rank in the query's list.
    rank: usize,
    /// Index and primary key value: a document several queries of one index match.
    identity: Option<(String, String)>,
    hit: Value,
}

/// The federated list's window: every query's hits (`answers`, in the queries' order)
/// with `_federation`, by weighted score (an unranked query's after the others), a
/// document several queries of one index match kept where it ranks best.
pub fn merge_hits(
    queries: &[FederatedQuery],
    answers: Vec<Map<String, Value>>,
    paging: &Paging,
) -> Vec<Value> {
    let mut hits: Vec<FederatedHit> = Vec::new();
    for (position, (query, mut answer)) in queries.iter().zip(answers).enumerate() {
        let Some(Value::Array(list)) = answer.get_mut("hits").map(Value::take) else {
            continue;
        };
        for (rank, mut hit) in list.into_iter().enumerate() {
            let score = hit["_rankingScore"].as_f64().unwrap_or(0.0) * query.weight;
            let mut identity = None;
            if let Some(object) = hit.as_object_mut() {
                if !query.show_score {
                    object.remove("_rankingScore");
                }
                object.insert(
                    "_federation".into(),
                    json!({"indexUid": query.uid, "queriesPosition": position, "weightedRankingScore": score}),
                );
                // A primary key added only to tell documents apart is taken back out.
                let value = query.primary_key.as_ref().and_then(|pk| {
                    if query.pk_injected {
                        object.remove(pk)
                    } else {
                        object.get(pk).cloned()
                    }
                });
                identity = value.map(|value| (query.uid.clone(), value.to_string()));
            }
            hits.push(FederatedHit {
                score,
                unranked: query.unranked,
                position,
                rank,
                identity,
                hit,
            });
        }
    }
    hits.sort_by(|a, b| {
        let by_score = match (a.unranked, b.unranked) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal),
        };
        by_score
            .then(a.position.cmp(&b.position))
            .then(a.rank.cmp(&b.rank))
    });
    let (skip, take) = paging.window();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    hits.into_iter()
        // Without its primary key (not displayed) a hit cannot be matched: kept.
        .filter(|h| {
            h.identity
                .as_ref()
                .is_none_or(|identity| seen.insert(identity.clone()))
        })
        .skip(skip)
        .take(take)
        .map(|h| h.hit)
        .collect()
}

/// What the queries of one index match together: the union's size, and its facets
/// (`{"distribution", "stats"}`) when `facetsByIndex` asks for them.
pub struct Union {
    /// The documents the index's queries match together.
    pub total: u64,
    /// `{"distribution", "stats"}` when asked for.
    pub facets: Option<Value>,
    /// Shards left out.
    pub degraded: Vec<String>,
}

/// Each covering node runs the index's queries as one federated search over its own shards
/// (every query's filter ANDed with them) and counts their union there; the shards hold
/// disjoint documents, so the nodes' counts and facet counts add up to the index's.
pub async fn union_of(
    state: &AppState,
    caller: &Caller,
    floor: SettingsFloor,
    uid: &str,
    queries: Vec<SearchQuery>,
    facets: Option<&Value>,
) -> Result<Union, SearchFailure> {
    let mut node_queries = Vec::new();
    for mut query in queries {
        caller
            .restrict_search(uid, &mut query)
            .map_err(SearchFailure::Miroir)?;
        let mut query = query.to_json();
        query["indexUid"] = json!(uid);
        node_queries.push(query);
    }
    let mut federation = json!({"limit": 0, "offset": 0});
    if let Some(facets) = facets {
        federation["facetsByIndex"] = json!({ uid: facets });
    }
    let mut body = Map::new();
    body.insert("queries".into(), Value::Array(node_queries));
    body.insert("federation".into(), federation);
    let read = crate::read::plan::ReadPlan::new(state, uid, crate::read::plan::next_turn(), floor)?;
    let gathered = crate::read::scatter::gather_from(
        state,
        read,
        "/multi-search",
        crate::read::scatter::NodeRequest::Federated(&body),
    )
    .await?;
    let total = gathered
        .answers
        .iter()
        .map(|a| a["estimatedTotalHits"].as_u64().unwrap_or(0))
        .sum();
    let facets = match facets {
        None => None,
        Some(_) => {
            let answers: Vec<Value> = gathered
                .answers
                .iter()
                .map(|a| {
                    let own = &a["facetsByIndex"][uid];
                    json!({"facetDistribution": own["distribution"], "facetStats": own["stats"]})
                })
                .collect();
            let settings = crate::api::settings::cached(state, uid).await;
            let order = FacetOrder::from_settings(settings.as_deref());
            let (distribution, stats) = merge_facets(answers.iter(), &order, total);
            Some(json!({"distribution": distribution, "stats": stats}))
        }
    };
    Ok(Union {
        total,
        facets,
        degraded: gathered.degraded,
    })
}

/// `mergeFacets`: every index's facets (`{"distribution", "stats"}`, by index uid, each
/// already in its index's order and cut) as one, as Meilisearch's `FederatedFacets::merge`
/// does: counts summed index after index, then the values of each facet ordered by how the
/// first index that lists it sorts it (by count, most first, equal counts as they came;
/// alphabetically by the value as shown), cut at `mergeFacets.maxValuesPerFacet` if set.
pub fn merge_index_facets(
    facets: &Map<String, Value>,
    orders: &[FacetOrder],
    max_values: Option<usize>,
) -> (Value, Value) {
    // (facet, its (value, count) in the order met, sorted by count)
    type Merged = (String, Vec<(String, u64)>, bool);
    let mut distribution: Vec<Merged> = Vec::new();
    for (own, order) in facets.values().zip(orders) {
        for (facet, values) in own["distribution"].as_object().into_iter().flatten() {
            let at = match distribution.iter().position(|(name, _, _)| name == facet) {
                Some(at) => at,
                None => {
                    distribution.push((facet.clone(), Vec::new(), order.by_count(facet)));
                    distribution.len() - 1
                }
            };
            let merged = &mut distribution[at].1;
            for (value, count) in values.as_object().into_iter().flatten() {
                let count = count.as_u64().unwrap_or(0);
                match merged.iter_mut().find(|(v, _)| v == value) {
                    Some((_, total)) => *total += count,
                    None => merged.push((value.clone(), count)),
                }
            }
        }
    }
    let mut out = Map::new();
    for (facet, mut values, by_count) in distribution {
        if by_count {
            values.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        } else {
            values.sort_by(|a, b| a.0.cmp(&b.0));
        }
        values.truncate(max_values.unwrap_or(usize::MAX));
        let values: Map<String, Value> = values.into_iter().map(|(v, c)| (v, json!(c))).collect();
        out.insert(facet, Value::Object(values));
    }
    let stats: Vec<Value> = facets
        .values()
        .map(|f| json!({"facetStats": f["stats"]}))
        .collect();
    let (_, stats) = merge_facets(stats.iter(), &FacetOrder::default(), 0);
    (Value::Object(out), stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(uid: &str, weight: f64, pk_injected: bool, unranked: bool) -> FederatedQuery {
        FederatedQuery {
            uid: uid.into(),
            weight,
            show_score: false,
            primary_key: Some("id".into()),
            pk_injected,
            unranked,
        }
    }

    fn answer(hits: Value) -> Map<String, Value> {
        json!({ "hits": hits }).as_object().unwrap().clone()
    }

    #[test]
    fn a_query_is_planned_for_the_federations_window() {
        let mut q = super::super::query::SearchQuery::of(
            json!({"q": "", "attributesToRetrieve": ["title"], "showRankingScore": true}),
        );
        let paging = Paging::new(Some(5), Some(10), None, None);
        let planned =
            FederatedQuery::plan("m", &mut q, 2.0, &paging, false, false, Some("id".into()));
        assert!(planned.show_score && planned.pk_injected && planned.unranked);
        assert_eq!(q.limit, Member::Given(15));
        assert_eq!(
            q.attributes_to_retrieve,
            Member::Given(vec!["title".into(), "id".into()])
        );
    }

    #[test]
    fn hits_merge_by_weighted_score_and_a_document_shows_once() {
        let queries = [
            query("m", 1.0, true, false),
            query("m", 2.0, true, false),
            query("b", 1.0, false, true),
        ];
        let answers = vec![
            answer(json!([{"id": 1, "_rankingScore": 0.9}, {"id": 2, "_rankingScore": 0.3}])),
            answer(json!([{"id": 2, "_rankingScore": 0.4}])),
            answer(json!([{"id": 1, "_rankingScore": 1.0}])),
        ];
        let page = merge_hits(&queries, answers, &Paging::new(None, None, None, None));
        let shown: Vec<(Value, Value)> = page
            .iter()
            .map(|h| {
                (
                    h["_federation"]["indexUid"].clone(),
                    h["_federation"]["queriesPosition"].clone(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (json!("m"), json!(0)),
                (json!("m"), json!(1)),
                (json!("b"), json!(2))
            ],
            "m's 2 ranks best in query 1 (0.8), once; b ranks nothing, so comes last"
        );
        assert_eq!(
            page[0],
            json!({"_federation": {"indexUid": "m", "queriesPosition": 0, "weightedRankingScore": 0.9}})
        );
        assert_eq!(page[2]["id"], 1, "not injected there: kept");
    }

    #[test]
    fn merged_facets_sum_index_after_index() {
        let facets = json!({
            "a": {"distribution": {"genre": {"rock": 2, "jazz": 1}}, "stats": {"year": {"min": 1.0, "max": 3.0}}},
            "b": {"distribution": {"genre": {"jazz": 5}}, "stats": {"year": {"min": 0.0, "max": 2.0}}},
        });
        let by_count = FacetOrder {
            max_values: 100,
            sort_by: json!({"*": "count"}).as_object().unwrap().clone(),
        };
        let (distribution, stats) = merge_index_facets(
            facets.as_object().unwrap(),
            &[by_count, FacetOrder::default()],
            Some(1),
        );
        assert_eq!(distribution, json!({"genre": {"jazz": 6}}));
        assert_eq!(stats, json!({"year": {"min": 0.0, "max": 3.0}}));
    }
}
