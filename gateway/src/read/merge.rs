//! The exact merge of a search's node answers (DESIGN §5): hits ranked across nodes as one
//! node ranks them, made distinct and cut to the client's window; totals added up (each
//! distinct value once); facet counts summed and listed in the index's order; stats
//! spanned.

use super::facets::merge_facets;
use super::plan::SearchPlan;
use miroir_proto::settings::SHARD_FIELD;
use miroir_proto::time::PerformanceDetails;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashSet;

/// A search's node answers, merged.
#[derive(Debug, Default)]
pub struct Merged {
    /// The hits of the client's window, as the client asked for them.
    pub hits: Vec<Value>,
    /// Every candidate across nodes: Meilisearch 1.50 counts them all (`maxTotalHits`
    /// bounds only the hits shown), and so do the nodes, so their counts add up.
    pub total: u64,
    /// Hits shown that came from the semantic search, when a node ran one.
    pub semantic_hits: Option<u64>,
    /// `facetDistribution` and `facetStats`, when facets were asked for.
    pub facets: Option<(Value, Value)>,
    /// The slowest node's `processingTimeMs`.
    pub processing_time_ms: u64,
    /// The query's embedding (every node embeds it alike).
    pub query_vector: Option<Value>,
    /// The nodes' stages, summed, when performance details were asked for.
    pub performance: Option<PerformanceDetails>,
}

/// Merges the 200 answers of every node of `plan`'s search.
pub fn merge(plan: &SearchPlan, mut answers: Vec<Value>) -> Merged {
    let (hits, semantic_hits) = merge_hits(plan, &mut answers);
    let total = plan
        .distinct_facet
        .as_ref()
        .and_then(|(attribute, _)| distinct_total(answers.iter(), attribute))
        .unwrap_or_else(|| {
            answers
                .iter()
                .map(|a| a["totalHits"].as_u64().unwrap_or(0))
                .sum()
        });
    let facets = plan.facets.then(|| {
        let (mut distribution, mut stats) = merge_facets(answers.iter(), &plan.facet_order, total);
        if let Some((attribute, true)) = &plan.distinct_facet {
            for merged in [&mut distribution, &mut stats] {
                if let Some(object) = merged.as_object_mut() {
                    object.remove(attribute);
                }
            }
        }
        (distribution, stats)
    });
    let performance = plan.performance.then(|| {
        let mut details = PerformanceDetails::default();
        for answer in &answers {
            details.add_answer(answer.get("performanceDetails"));
        }
        details
    });
    Merged {
        hits,
        total,
        // Meilisearch reports it when it ran a semantic search (not for
        // `semanticRatio: 0`): the nodes say whether they did.
        semantic_hits: answers
            .iter()
            .any(|a| a.get("semanticHitCount").is_some())
            .then_some(semantic_hits),
        facets,
        processing_time_ms: answers
            .iter()
            .filter_map(|a| a["processingTimeMs"].as_u64())
            .max()
            .unwrap_or(0),
        query_vector: answers.iter().find_map(|a| a.get("queryVector")).cloned(),
        performance,
    }
}

/// The hits of the client's window across `answers` (moved out of them, no copy), with
/// how many of them are semantic.
fn merge_hits(plan: &SearchPlan, answers: &mut [Value]) -> (Vec<Value>, u64) {
    let mut hits: Vec<(usize, usize, Value)> = Vec::new();
    for (position, answer) in answers.iter_mut().enumerate() {
        if let Some(Value::Array(list)) = answer.get_mut("hits").map(Value::take) {
            hits.extend(
                list.into_iter()
                    .enumerate()
                    .map(|(rank, hit)| (position, rank, hit)),
            );
        }
    }
    let score = |hit: &Value| hit["_rankingScore"].as_f64().unwrap_or(0.0);
    hits.sort_by(|a, b| {
        let by_rules = if plan.by_rules {
            compare_details(&a.2["_rankingScoreDetails"], &b.2["_rankingScoreDetails"])
        } else {
            Ordering::Equal
        };
        by_rules
            .then_with(|| {
                score(&b.2)
                    .partial_cmp(&score(&a.2))
                    .unwrap_or(Ordering::Equal)
            })
            // One node lists equal hits in the order it took the documents (its internal
            // ids), which nodes do not report: by primary key, the order of most bulk
            // loads, rather than node by node.
            .then_with(|| match &plan.primary_key {
                Some(pk) => primary_key_order(a.2.get(pk.as_str()), b.2.get(pk.as_str())),
                None => Ordering::Equal,
            })
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    if let Some(attribute) = &plan.distinct {
        let mut seen = HashSet::new();
        hits.retain(|(_, _, hit)| match lookup(hit, attribute) {
            None | Some(Value::Null) => true,
            Some(value) => seen.insert(value.to_string().to_lowercase()),
        });
    }
    let mut semantic_hits = 0;
    let page = hits
        .into_iter()
        .skip(plan.skip)
        .take(plan.take)
        .map(|(_, _, mut hit)| {
            if hit["_rankingScoreDetails"].get("vectorSort").is_some() {
                semantic_hits += 1;
            }
            as_asked(&mut hit, &plan.injected, plan.show_score, plan.show_details);
            hit
        })
        .collect();
    (page, semantic_hits)
}

/// A merged hit as the client asked for it: without Miroir's field, the attributes the
/// gateway added for the merge (`injected`), and the scores it did not ask for.
pub(crate) fn as_asked(hit: &mut Value, injected: &[String], score: bool, details: bool) {
    if let Some(object) = hit.as_object_mut() {
        strip_miroir(object);
        for field in injected {
            object.remove(field);
        }
        if !score {
            object.remove("_rankingScore");
        }
        if !details {
            object.remove("_rankingScoreDetails");
        }
    }
}

/// Removes Miroir's field from a hit, its `_formatted` copy and its match positions.
pub(crate) fn strip_miroir(hit: &mut Map<String, Value>) {
    hit.remove(SHARD_FIELD);
    if let Some(Value::Object(formatted)) = hit.get_mut("_formatted") {
        formatted.remove(SHARD_FIELD);
    }
    if let Some(Value::Object(positions)) = hit.get_mut("_matchesPosition") {
        positions.remove(SHARD_FIELD);
    }
}

/// What a sort compares of a value, as Meilisearch sorts: numbers first, then strings
/// (booleans are the strings `true` and `false` to Meilisearch's facets), compared
/// lowercase; an array by its first element; anything else (null, an object) is no value.
enum SortKey {
    Number(f64),
    Text(String),
}

impl SortKey {
    fn of(value: Option<&Value>) -> Option<Self> {
        let value = match value? {
            Value::Array(items) => items.first()?,
            other => other,
        };
        match value {
            Value::Number(n) => n.as_f64().map(Self::Number),
            Value::String(s) => Some(Self::Text(s.to_lowercase())),
            Value::Bool(b) => Some(Self::Text(b.to_string())),
            _ => None,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(x), Self::Number(y)) => x.total_cmp(y),
            (Self::Text(x), Self::Text(y)) => x.cmp(y),
            (Self::Number(_), Self::Text(_)) => Ordering::Less,
            (Self::Text(_), Self::Number(_)) => Ordering::Greater,
        }
    }
}

/// Orders two sort values; a total order over any JSON, so sorting never panics.
pub(crate) fn sort_value_order(a: Option<&Value>, b: Option<&Value>, ascending: bool) -> Ordering {
    // Documents without a value come last in either direction, as in Meilisearch.
    let ordering = match (SortKey::of(a), SortKey::of(b)) {
        (None, None) => return Ordering::Equal,
        (Some(_), None) => return Ordering::Less,
        (None, Some(_)) => return Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(&y),
    };
    if ascending {
        ordering
    } else {
        ordering.reverse()
    }
}

pub(crate) fn lookup<'a>(hit: &'a Value, path: &str) -> Option<&'a Value> {
    hit.get(path)
        .or_else(|| path.split('.').try_fold(hit, |v, part| v.get(part)))
}

/// Orders two hits by their `_rankingScoreDetails`, rule by rule in `order`: higher
/// `score` first; sort criteria (`attr:asc|desc`) by `value`, geo ones by `distance`.
pub fn compare_details(a: &Value, b: &Value) -> Ordering {
    let Some(entries) = a.as_object() else {
        return Ordering::Equal;
    };
    let mut entries: Vec<(&String, &Value)> = entries.iter().collect();
    entries.sort_by_key(|(_, e)| e["order"].as_u64().unwrap_or(u64::MAX));
    for (name, left) in entries {
        let right = &b[name.as_str()];
        let ascending = !name.ends_with(":desc");
        let ordering = if let Some(l) = left.get("score").and_then(Value::as_f64) {
            right["score"]
                .as_f64()
                .unwrap_or(0.0)
                .partial_cmp(&l)
                .unwrap_or(Ordering::Equal)
        } else if left.get("distance").is_some() {
            sort_value_order(left.get("distance"), right.get("distance"), ascending)
        } else {
            sort_value_order(left.get("value"), right.get("value"), ascending)
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Hits' primary key values in the order one node takes such documents in a bulk load:
/// numbers by value, before strings, strings by their bytes.
pub(crate) fn primary_key_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::Number(_)), Some(Value::String(_))) => Ordering::Less,
        (Some(Value::String(_)), Some(Value::Number(_))) => Ordering::Greater,
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// The number of hits once distinct is applied across nodes: the distinct values seen on
/// any node, each once, plus the hits without a value (each is its own). `None` when a
/// node's answer lacks the attribute's values or may have cut them
/// ([`NODE_MAX_VALUES_PER_FACET`]), and the sum is all that is known.
fn distinct_total<'a>(answers: impl Iterator<Item = &'a Value>, attribute: &str) -> Option<u64> {
    let mut values: HashSet<String> = HashSet::new();
    let mut without = 0;
    for answer in answers {
        let node_total = answer["totalHits"].as_u64()?;
        // No entry: none of the node's hits has a value.
        let node_values = match answer["facetDistribution"].get(attribute) {
            None => 0,
            Some(Value::Object(node_values)) => {
                if node_values.len() as u64 >= miroir_proto::settings::NODE_MAX_VALUES_PER_FACET {
                    return None;
                }
                values.extend(node_values.keys().map(|v| v.to_lowercase()));
                node_values.len() as u64
            }
            Some(_) => return None,
        };
        without += node_total.saturating_sub(node_values);
    }
    Some(values.len() as u64 + without)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn distinct_counts_each_value_once_across_nodes() {
        let answers = [
            json!({"totalHits": 3, "facetDistribution": {"color": {"Red": 2, "blue": 1}}}),
            // "red" again (another case), "green", and one hit without a colour.
            json!({"totalHits": 3, "facetDistribution": {"color": {"red": 1, "green": 4}}}),
            json!({"totalHits": 0, "facetDistribution": {}}),
        ];
        assert_eq!(distinct_total(answers.iter(), "color"), Some(3 + 1 + 1));
        let without_values = [json!({"totalHits": 2})];
        assert_eq!(distinct_total(without_values.iter(), "color"), Some(2));
        let capped = serde_json::Map::from_iter(
            (0..miroir_proto::settings::NODE_MAX_VALUES_PER_FACET)
                .map(|v| (v.to_string(), json!(1))),
        );
        let cut = [json!({"totalHits": 20_000, "facetDistribution": {"color": capped}})];
        assert_eq!(
            distinct_total(cut.iter(), "color"),
            None,
            "a cut list is not counted"
        );
    }

    #[test]
    fn sort_values_are_totally_ordered_across_types() {
        let values = [
            json!("b"),
            json!("A"),
            json!(true),
            json!(false),
            json!({"x": 1}),
            json!(2),
            json!(-1.5),
            json!(null),
            json!([3]),
            json!([]),
            json!(["a"]),
        ];
        for ascending in [true, false] {
            let order = |x: &Value, y: &Value| sort_value_order(Some(x), Some(y), ascending);
            for x in &values {
                assert_eq!(order(x, x), Ordering::Equal, "{x}");
                for y in &values {
                    assert_eq!(order(x, y), order(y, x).reverse(), "{x} {y}");
                    for z in &values {
                        if order(x, y).is_le() && order(y, z).is_le() {
                            assert!(order(x, z).is_le(), "{x} <= {y} <= {z}");
                        }
                    }
                }
            }
            // Sorting many mixed values never panics.
            let mut many: Vec<Value> = values.iter().cycle().take(500).cloned().collect();
            many.sort_by(|x, y| order(x, y));
        }
    }

    fn hit(id: u64, score: f64) -> Value {
        json!({"id": id, "_rankingScore": score, "_miroir_shard": 1})
    }

    #[test]
    fn hits_merge_by_score_then_primary_key_into_the_window() {
        let plan = SearchPlan::of(json!({"offset": 1, "limit": 2}), json!({}));
        let answers = vec![
            json!({"hits": [hit(4, 0.9), hit(2, 0.5)], "totalHits": 7, "processingTimeMs": 3}),
            json!({"hits": [hit(3, 0.9), hit(1, 0.4)], "totalHits": 5, "processingTimeMs": 8}),
        ];
        let merged = merge(&plan, answers);
        assert_eq!(merged.hits, [json!({"id": 4}), json!({"id": 2})]);
        assert_eq!(merged.total, 12);
        assert_eq!(merged.processing_time_ms, 8);
        assert_eq!(merged.semantic_hits, None);
        assert!(merged.facets.is_none() && merged.performance.is_none());
    }

    #[test]
    fn distinct_hits_and_totals_count_each_value_once() {
        let plan = SearchPlan::of(
            json!({"distinct": "sku", "showRankingScore": true}),
            json!({"filterableAttributes": ["sku"]}),
        );
        let with = |id, sku: &str, score| json!({"id": id, "sku": sku, "_rankingScore": score});
        let answers = vec![
            json!({"hits": [with(1, "a", 0.9), with(2, "b", 0.8)], "totalHits": 2,
                   "facetDistribution": {"sku": {"a": 1, "b": 1}}}),
            json!({"hits": [with(3, "A", 0.7)], "totalHits": 1,
                   "facetDistribution": {"sku": {"A": 1}}}),
        ];
        let merged = merge(&plan, answers);
        assert_eq!(
            merged.hits,
            [with(1, "a", 0.9), with(2, "b", 0.8)],
            "`A` is `a` again"
        );
        assert_eq!(merged.total, 2);
        assert!(merged.facets.is_none(), "the facet was Miroir's, not asked");
    }
}
