//! Facet values as an index shows them: counts summed across nodes, listed in the index's
//! order and cut at its `maxValuesPerFacet` ([`FacetOrder`]); stats spanned.

use miroir_proto::settings::SHARD_FIELD;
use serde_json::{Map, Value, json};
use std::cmp::Reverse;

/// How an index shows facet values (its `faceting` setting): at most `max_values` per
/// facet, alphabetically or by count.
#[derive(Debug, Clone)]
pub struct FacetOrder {
    /// `maxValuesPerFacet`.
    pub max_values: usize,
    /// `sortFacetValuesBy`: facet (or `*`) → `alpha` or `count`.
    pub sort_by: Map<String, Value>,
}

impl Default for FacetOrder {
    fn default() -> Self {
        Self {
            max_values: 100,
            sort_by: Map::new(),
        }
    }
}

impl FacetOrder {
    /// From an index's settings (Meilisearch's defaults when unknown).
    pub fn from_settings(settings: Option<&Map<String, Value>>) -> Self {
        let faceting = settings.and_then(|s| s.get("faceting"));
        Self {
            max_values: faceting
                .and_then(|f| f.get("maxValuesPerFacet"))
                .and_then(Value::as_u64)
                .map_or(100, |n| n as usize),
            sort_by: faceting
                .and_then(|f| f.get("sortFacetValuesBy"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Whether `facet`'s values are sorted by count (`sortFacetValuesBy`: the facet's own
    /// entry, else `*`).
    pub fn by_count(&self, facet: &str) -> bool {
        self.sort_by
            .get(facet)
            .or_else(|| self.sort_by.get("*"))
            .and_then(Value::as_str)
            == Some("count")
    }

    /// `values` (value, count) of `facet` in the index's order, cut at `max_values`, as
    /// Meilisearch 1.50 lists them (milli's `facet_distribution.rs`). A distribution lists
    /// the facet's numbers, then its strings. By count: most frequent first, equal counts
    /// the greater (normalized) value first. Alphabetically: strings by normalized value;
    /// numbers as printed (`10` before `2`) when the search has at most 3 000 candidates,
    /// which Meilisearch scans document by document, by value above that. When numbers fill
    /// the list from the facet tree (by count, or above 3 000), Meilisearch's cut misses
    /// the strings and lists them all. A facet search has strings only, in the same order.
    pub(crate) fn keep(
        &self,
        facet: &str,
        values: Vec<(String, u64)>,
        search: bool,
        candidates: u64,
    ) -> Vec<(String, u64)> {
        // Numbers with their value, parsed once.
        let mut numbers: Vec<(f64, (String, u64))> = Vec::new();
        let mut strings: Vec<(String, u64)> = Vec::new();
        for (value, count) in values {
            match (!search).then(|| facet_number(&value)).flatten() {
                Some(number) => numbers.push((number, (value, count))),
                None => strings.push((value, count)),
            }
        }
        let by_count = self.by_count(facet);
        let scanned = by_count || candidates > LINEAR_SCAN_CANDIDATES;
        if by_count {
            numbers.sort_by(|(x, a), (y, b)| b.1.cmp(&a.1).then(y.total_cmp(x)));
            strings.sort_by_cached_key(|(value, count)| {
                (
                    Reverse(*count),
                    Reverse(normalize_facet(value)),
                    value.clone(),
                )
            });
        } else {
            if scanned {
                numbers.sort_by(|(x, _), (y, _)| x.total_cmp(y));
            } else {
                numbers.sort_by(|(_, a), (_, b)| a.cmp(b));
            }
            strings.sort_by_cached_key(|(value, _)| (normalize_facet(value), value.clone()));
        }
        numbers.truncate(self.max_values);
        if !(scanned && numbers.len() == self.max_values && !search) {
            strings.truncate(self.max_values - numbers.len());
        }
        let mut kept: Vec<(String, u64)> = numbers.into_iter().map(|(_, v)| v).collect();
        kept.extend(strings);
        kept
    }
}

/// Meilisearch counts a facet's values from documents when a search has at most this many
/// candidates, and from its facet tree above (`LINEAR_SCAN_CANDIDATES_THRESHOLD`).
const LINEAR_SCAN_CANDIDATES: u64 = 3000;

/// A facet value as Meilisearch compares and groups it: trimmed, compatibility-decomposed,
/// lower-cased (milli's `normalize_facet`).
fn normalize_facet(value: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    value.trim().nfkd().collect::<String>().to_lowercase()
}

/// The number a facet value prints, when it is one: Meilisearch prints a numeric facet
/// value as its `f64` (`1980`, `2.5`), so `02134` or `1e3` are strings.
fn facet_number(value: &str) -> Option<f64> {
    let number: f64 = value.parse().ok()?;
    (number.is_finite() && number.to_string() == value).then_some(number)
}

/// Sums facet counts per value and keeps the index's first `maxValuesPerFacet` values in
/// its order for a search with `candidates` matches; takes the min of mins and max of
/// maxes.
pub fn merge_facets<'a>(
    answers: impl Iterator<Item = &'a Value>,
    order: &FacetOrder,
    candidates: u64,
) -> (Value, Value) {
    let mut distribution: Map<String, Value> = Map::new();
    let mut stats: Map<String, Value> = Map::new();
    for answer in answers {
        // `facets: ["*"]` asks nodes for every filterable attribute, Miroir's included.
        for (facet, values) in answer["facetDistribution"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(facet, _)| *facet != SHARD_FIELD)
        {
            let merged = distribution
                .entry(facet.clone())
                .or_insert_with(|| json!({}));
            for (value, count) in values.as_object().into_iter().flatten() {
                let total = merged[value].as_u64().unwrap_or(0) + count.as_u64().unwrap_or(0);
                merged[value] = json!(total);
            }
        }
        for (facet, range) in answer["facetStats"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(facet, _)| *facet != SHARD_FIELD)
        {
            let (min, max) = (range["min"].as_f64(), range["max"].as_f64());
            let entry = stats
                .entry(facet.clone())
                .or_insert_with(|| json!({"min": min, "max": max}));
            if let (Some(min), Some(current)) = (min, entry["min"].as_f64()) {
                entry["min"] = json!(current.min(min));
            }
            if let (Some(max), Some(current)) = (max, entry["max"].as_f64()) {
                entry["max"] = json!(current.max(max));
            }
        }
    }
    // Values in the index's order, cut at its maxValuesPerFacet.
    for (facet, values) in distribution.iter_mut() {
        if let Value::Object(map) = values {
            let counts = std::mem::take(map)
                .into_iter()
                .map(|(value, count)| (value, count.as_u64().unwrap_or(0)))
                .collect();
            map.extend(
                order
                    .keep(facet, counts, false, candidates)
                    .into_iter()
                    .map(|(value, count)| (value, json!(count))),
            );
        }
    }
    (Value::Object(distribution), Value::Object(stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facets_never_show_miroirs_field() {
        // `facets: ["*"]` makes nodes count every filterable attribute, Miroir's included.
        let a = json!({"facetDistribution": {"genre": {"a": 1}, "_miroir_shard": {"3": 1}}, "facetStats": {"_miroir_shard": {"min": 3.0, "max": 3.0}}});
        let (distribution, stats) = merge_facets(std::iter::once(&a), &FacetOrder::default(), 1);
        assert_eq!(distribution, json!({"genre": {"a": 1}}));
        assert_eq!(stats, json!({}));
    }

    #[test]
    fn facets_sum_and_stats_span() {
        let a = json!({"facetDistribution": {"genre": {"b": 1, "a": 2}}, "facetStats": {"year": {"min": 2000.0, "max": 2005.0}}});
        let b = json!({"facetDistribution": {"genre": {"a": 1}}, "facetStats": {"year": {"min": 1990.0, "max": 2001.0}}});
        let (distribution, stats) = merge_facets([&a, &b].into_iter(), &FacetOrder::default(), 4);
        assert_eq!(distribution, json!({"genre": {"a": 3, "b": 1}}));
        assert_eq!(stats, json!({"year": {"min": 1990.0, "max": 2005.0}}));
        let top = FacetOrder {
            max_values: 1,
            sort_by: json!({"*": "count"}).as_object().unwrap().clone(),
        };
        let (distribution, _) = merge_facets([&a, &b].into_iter(), &top, 4);
        assert_eq!(distribution, json!({"genre": {"a": 3}}));
    }

    /// Orders Meilisearch 1.50 was seen giving (docs/dev/meilisearch-reference.md).
    #[test]
    fn facet_values_are_listed_as_meilisearch_1_50_lists_them() {
        let order = |by: &str, max: usize| FacetOrder {
            max_values: max,
            sort_by: json!({"*": by}).as_object().unwrap().clone(),
        };
        let list = |order: FacetOrder, values: &[&str], candidates: u64| -> Vec<String> {
            let values = values.iter().map(|v| (v.to_string(), 10)).collect();
            order
                .keep("f", values, false, candidates)
                .into_iter()
                .map(|(v, _)| v)
                .collect()
        };
        let genres = ["Blues", "jazz", "Metal", "pop", "Rock"];
        assert_eq!(list(order("count", 2), &genres, 50), ["Rock", "pop"]);
        assert_eq!(
            list(order("alpha", 100), &genres, 50),
            ["Blues", "jazz", "Metal", "pop", "Rock"]
        );
        // A string that reads as a number ("9") cannot be told from one: not used here.
        let mixed = ["b", "A", "x9", "100", "10", "2.5", "2", "1", "-3"];
        assert_eq!(
            list(order("count", 100), &mixed, 50),
            ["100", "10", "2.5", "2", "1", "-3", "x9", "b", "A"]
        );
        // Numbers filling the list leave every string after them.
        assert_eq!(list(order("count", 1), &mixed, 50), ["100", "x9", "b", "A"]);
        assert_eq!(
            list(order("alpha", 100), &mixed, 3000),
            ["-3", "1", "10", "100", "2", "2.5", "A", "b", "x9"]
        );
        assert_eq!(
            list(order("alpha", 100), &mixed, 3001),
            ["-3", "1", "2", "2.5", "10", "100", "A", "b", "x9"]
        );
        assert_eq!(
            list(order("alpha", 1), &mixed, 3001),
            ["-3", "A", "b", "x9"]
        );
        assert_eq!(list(order("alpha", 2), &mixed, 3000), ["-3", "1"]);
        // A facet search lists strings only, equal counts the greater first.
        let values = genres.iter().map(|v| (v.to_string(), 10)).collect();
        let searched: Vec<String> = order("count", 3)
            .keep("f", values, true, 0)
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(searched, ["Rock", "pop", "Metal"]);
    }
}
