//! Removes one member (`"key": value`) from every object of a JSON text without parsing it
//! into values: a node's answer then passes through with Miroir's `_miroir_shard` taken
//! out, at the cost of one scan instead of a parse and a re-serialization.
//!
//! A key only matches where it is a key, never inside a string. Malformed input is
//! returned unchanged from the point where it stops making sense.

/// `json` without any member named `key` (compared as the raw, unescaped key text).
///
/// The key's quoted text is found with a vectorized substring search; the bytes between
/// matches are copied whole. In valid JSON a `"` that no backslash escapes opens or
/// closes a string, and a closing one is never followed by a letter, so an unescaped
/// match is a whole string token; followed by `:`, it is a key.
pub fn strip_member(json: &[u8], key: &str) -> Vec<u8> {
    let needle = format!("\"{key}\"");
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut out: Vec<u8> = Vec::with_capacity(json.len());
    // Everything before `copied` is in `out` or dropped.
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = finder.find(&json[from..]) {
        let at = from + found;
        from = at + 1;
        let escapes = json[..at].iter().rev().take_while(|b| **b == b'\\').count();
        let after_key = skip_whitespace(json, at + needle.len());
        if escapes % 2 == 1 || json.get(after_key) != Some(&b':') {
            continue;
        }
        let value_start = skip_whitespace(json, after_key + 1);
        let Some(value_end) = skip_value(json, value_start) else {
            continue;
        };
        let next = skip_whitespace(json, value_end);
        match json.get(next) {
            // `{"k":1,"a":…}` or `,"k":1,"a":…`: drop the member and its following comma.
            Some(b',') => {
                out.extend_from_slice(&json[copied..at]);
                copied = skip_whitespace(json, next + 1);
            }
            // Last member: drop the comma written before it, if any.
            Some(b'}') => {
                out.extend_from_slice(&json[copied..at]);
                while out.last().is_some_and(|b: &u8| b.is_ascii_whitespace()) {
                    out.pop();
                }
                if out.last() == Some(&b',') {
                    out.pop();
                }
                copied = next;
            }
            _ => continue,
        }
        from = copied;
    }
    out.extend_from_slice(&json[copied..]);
    out
}

/// The most values any facet has in a search answer's `facetDistribution` (0 without
/// one), read without building values; `None` when `json` is not a JSON object. A
/// one-node answer whose facets are within the index's `maxValuesPerFacet` then passes
/// through as bytes.
pub fn most_facet_values(json: &[u8]) -> Option<usize> {
    use serde::Deserialize;
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    /// Counts the members of a map (a facet's values), skipping them.
    struct Members(usize);
    impl<'de> serde::Deserialize<'de> for Members {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a map of facet values")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                    let mut n = 0;
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Members(n))
                }
            }
            d.deserialize_map(V)
        }
    }
    /// The largest member count among a map's values (a distribution's facets).
    struct Largest(usize);
    impl<'de> serde::Deserialize<'de> for Largest {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Largest;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a facet distribution")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Largest, A::Error> {
                    let mut most = 0;
                    while let Some((IgnoredAny, Members(n))) = map.next_entry()? {
                        most = most.max(n);
                    }
                    Ok(Largest(most))
                }
            }
            d.deserialize_map(V)
        }
    }
    // The answer's members are skipped as text; only `facetDistribution` is read.
    let member_after = |i: usize| {
        let i = skip_whitespace(json, i);
        (json.get(i) == Some(&b'"')).then_some(i)
    };
    let mut i = skip_whitespace(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    if json.get(skip_whitespace(json, i + 1)) == Some(&b'}') {
        return Some(0);
    }
    i += 1;
    loop {
        let key_start = member_after(i)?;
        let key_end = skip_string(json, key_start)?;
        let colon = skip_whitespace(json, key_end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_whitespace(json, colon + 1);
        let value_end = skip_value(json, value_start)?;
        if &json[key_start..key_end] == b"\"facetDistribution\"" {
            let mut deserializer =
                serde_json::Deserializer::from_slice(&json[value_start..value_end]);
            return Largest::deserialize(&mut deserializer).ok().map(|l| l.0);
        }
        i = skip_whitespace(json, value_end);
        match json.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Some(0),
            _ => return None,
        }
    }
}

fn skip_whitespace(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The index just past the string starting at `start` (a `"`), jumping to each quote or
/// backslash.
fn skip_string(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < json.len() {
        i += memchr::memchr2(b'"', b'\\', &json[i..])?;
        match json[i] {
            b'\\' => i += 2,
            _ => return Some(i + 1),
        }
    }
    None
}

/// The index just past the value starting at `start`.
fn skip_value(json: &[u8], start: usize) -> Option<usize> {
    match json.get(start)? {
        b'"' => skip_string(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < json.len() {
                match json[i] {
                    b'"' => {
                        i = skip_string(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while i < json.len()
                && !matches!(json[i], b',' | b'}' | b']')
                && !json[i].is_ascii_whitespace()
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// A node's error message with `attribute` taken out of the attribute lists it holds
/// (`` `a`, `_miroir_shard`, `b` ``), or `None` when it names no such attribute. A list of
/// that attribute alone becomes Meilisearch's sentence for an index without filterable
/// attributes (the only list a hidden attribute is in).
pub fn unlisted(message: &str, attribute: &str) -> Option<String> {
    let quoted = format!("`{attribute}`");
    if !message.contains(&quoted) {
        return None;
    }
    let mut out = message
        .replace(&format!("{quoted}, "), "")
        .replace(&format!(", {quoted}"), "");
    while let Some(at) = out.find(&quoted) {
        let start = out[..at].rfind(". ").map_or(0, |i| i + 2);
        let end = out[at..].find('.').map_or(out.len(), |i| at + i + 1);
        out.replace_range(
            start..end,
            "This index does not have configured filterable attributes.",
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn most_facet_values_counts_the_largest_facet() {
        let answer = json!({
            "hits": [{"facetDistribution": {"x": {"a": 1, "b": 2, "c": 3, "d": 4}}}],
            "facetDistribution": {"genre": {"a": 1, "b": 2}, "year": {"1": 1, "2": 1, "3": 1}},
            "facetStats": {"year": {"min": 1.0, "max": 3.0}},
        });
        let bytes = serde_json::to_vec(&answer).unwrap();
        assert_eq!(most_facet_values(&bytes), Some(3));
        assert_eq!(most_facet_values(br#"{"hits":[]}"#), Some(0));
        assert_eq!(
            most_facet_values(
                br#" { "hits" : [ {"t":"}{\"","n":[1.5e3,null,true]} ] , "facetDistribution" : {"a":{"x":1}} } "#
            ),
            Some(1)
        );
        assert_eq!(most_facet_values(br#"{"hits":[],}"#), None);
        assert_eq!(most_facet_values(br#"{}"#), Some(0));
        assert_eq!(most_facet_values(br#"{"facetDistribution":{}}"#), Some(0));
        assert_eq!(most_facet_values(br#"[1]"#), None);
        assert_eq!(most_facet_values(br#"{"facetDistribution":"#), None);
    }

    fn strip(value: &str) -> Value {
        let out = strip_member(value.as_bytes(), "_miroir_shard");
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn members_go_wherever_they_are() {
        assert_eq!(
            strip(
                r#"{"hits":[{"_miroir_shard":3,"id":1},{"id":2,"_miroir_shard":4},{"id":3, "_miroir_shard" : 5 , "t":"x"}],"q":"a"}"#
            ),
            json!({"hits": [{"id": 1}, {"id": 2}, {"id": 3, "t": "x"}], "q": "a"})
        );
        assert_eq!(
            strip(
                r#"{"_formatted":{"_miroir_shard":"3"},"_matchesPosition":{"_miroir_shard":[{"start":0,"length":1}],"t":[]}}"#
            ),
            json!({"_formatted": {}, "_matchesPosition": {"t": []}})
        );
        assert_eq!(strip(r#"{"_miroir_shard":{"a":[1,{"b":"}"}]}}"#), json!({}));
    }

    #[test]
    fn strings_that_look_like_the_key_are_left_alone() {
        let text = r#"{"title":"\"_miroir_shard\":1","note":"a, \"_miroir_shard\": 2}","list":["_miroir_shard"],"_miroir_shard":7}"#;
        assert_eq!(
            strip(text),
            json!({"title": "\"_miroir_shard\":1", "note": "a, \"_miroir_shard\": 2}", "list": ["_miroir_shard"]})
        );
        assert_eq!(
            strip(r#"{"q":"x\\","_miroir_shard":1}"#),
            json!({"q": "x\\"})
        );
        assert_eq!(
            strip(r#"{"x\"_miroir_shard":1,"y\\\"_miroir_shard":2}"#),
            json!({"x\"_miroir_shard": 1, "y\\\"_miroir_shard": 2})
        );
        assert_eq!(
            strip(r#"{"_miroir_shardx":1}"#),
            json!({"_miroir_shardx": 1})
        );
    }

    #[test]
    fn matches_a_parse_and_remove_on_generated_answers() {
        for i in 0..50u32 {
            let hits: Vec<Value> = (0..(i % 7))
                .map(|h| {
                    json!({
                        "id": h,
                        "title": format!("t{i} \"q\" {{}} ,"),
                        "_miroir_shard": h * i,
                        "nested": {"a": [h, {"b": "_miroir_shard"}]},
                        "_formatted": {"_miroir_shard": (h * i).to_string(), "title": "x"},
                    })
                })
                .collect();
            let answer = json!({"hits": hits, "query": "_miroir_shard", "estimatedTotalHits": i});
            let mut expected = answer.clone();
            for hit in expected["hits"].as_array_mut().into_iter().flatten() {
                let object = hit.as_object_mut().unwrap();
                object.remove("_miroir_shard");
                object["_formatted"]
                    .as_object_mut()
                    .unwrap()
                    .remove("_miroir_shard");
            }
            for text in [
                answer.to_string(),
                serde_json::to_string_pretty(&answer).unwrap(),
            ] {
                assert_eq!(strip(&text), expected);
            }
        }
    }

    #[test]
    fn a_hidden_attribute_leaves_error_lists() {
        let hide = |m: &str| unlisted(m, "_miroir_shard");
        assert_eq!(hide("Attribute `x` is not filterable."), None);
        assert_eq!(
            hide("Index `m`: Attribute `title` is not filterable. Available filterable attributes are: `_miroir_shard`, `genre`.\n1:6 title = x").as_deref(),
            Some("Index `m`: Attribute `title` is not filterable. Available filterable attributes are: `genre`.\n1:6 title = x")
        );
        assert_eq!(
            hide("Available filterable attribute patterns are: `Zeta`, `_miroir_shard`, `genre`.")
                .as_deref(),
            Some("Available filterable attribute patterns are: `Zeta`, `genre`.")
        );
        assert_eq!(
            hide("Inside `.queries[1]`: Index `m`: Attribute `title` is not filterable. Available filterable attribute patterns are: `_miroir_shard`.\n1:6 title = x").as_deref(),
            Some("Inside `.queries[1]`: Index `m`: Attribute `title` is not filterable. This index does not have configured filterable attributes.\n1:6 title = x")
        );
    }
}
