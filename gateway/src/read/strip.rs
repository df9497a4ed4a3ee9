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

/// A node's error message as one Meilisearch would word it for the client's request, or
/// `None` when it needs no change: `_miroir_shard` taken out of attribute lists
/// ([`unlisted`]) and Miroir's shard filter out of the filter it quotes
/// ([`without_shard_filter`]).
pub fn client_error_message(message: &str) -> Option<String> {
    let field = miroir_proto::settings::SHARD_FIELD;
    match unlisted(message, field) {
        Some(listed) => Some(without_shard_filter(&listed).unwrap_or(listed)),
        None => without_shard_filter(message),
    }
}

/// A filter error that quotes the filter a node ran, `["<shard filter>", <client's>…]`,
/// reworded as for the client's filter alone. Meilisearch ends such a message with
/// `START:END <the parsed filter, printed>` and prints the array as
/// `("_miroir_shard" IN [...]) AND <rest>`: `rest` is the client's one condition in
/// parentheses, or its array's conditions as they are (the gateway flattens the array
/// into the node's). One node prints the one condition bare, so its parentheses go, and
/// the positions move back by what was cut. `None` when the message quotes no shard filter.
pub fn without_shard_filter(message: &str) -> Option<String> {
    const SHARD_CONDITION: &str = "(\"_miroir_shard\" IN [";
    const AND: &str = "]) AND ";
    let (head, last) = message.rsplit_once('\n').unwrap_or(("", message));
    let (range, printed) = last.split_once(' ')?;
    let rest = printed
        .strip_prefix(SHARD_CONDITION)
        .and_then(|tail| Some(&tail[tail.find(AND)? + AND.len()..]))?;
    let mut cut = printed.len() - rest.len();
    let rest = match one_group(rest) {
        Some(inner) => {
            cut += 1;
            inner
        }
        None => rest,
    };
    let (start, end) = range.split_once(':')?;
    let shift = |position: &str| -> Option<usize> {
        Some(position.parse::<usize>().ok()?.saturating_sub(cut))
    };
    let (start, end) = (shift(start)?, shift(end)?);
    let line = format!("{start}:{end} {rest}");
    Some(if message.contains('\n') {
        format!("{head}\n{line}")
    } else {
        line
    })
}

/// `text` without its outer parentheses when they hold all of it (`(a AND b)`), not when
/// they close earlier (`(a) AND (b)`); quoted values may hold parentheses.
fn one_group(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in inner.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => quoted = false,
            (true, false, _) => {}
            (false, _, '"') => quoted = true,
            (false, _, '(') => depth += 1,
            (false, _, ')') => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    (depth == 0).then_some(inner)
}

/// A node's error message with `attribute` taken out of the attribute lists it holds
/// (`` `a`, `_miroir_shard`, `b` `` or `` `a, _miroir_shard, b` ``), or `None` when it names
/// no such attribute. A list of that attribute alone ("Available filterable attributes
/// patterns are: `_miroir_shard`.") becomes Meilisearch's sentence for an index without
/// such attributes ("This index does not have configured filterable attributes.").
pub fn unlisted(message: &str, attribute: &str) -> Option<String> {
    let quoted = format!("`{attribute}`");
    if !message.contains(attribute) {
        return None;
    }
    let mut out = message
        .replace(&format!("{quoted}, "), "")
        .replace(&format!(", {quoted}"), "")
        .replace(&format!("`{attribute}, "), "`")
        .replace(&format!(", {attribute}`"), "`")
        .replace(&format!(", {attribute}, "), ", ");
    while let Some(at) = out.find(&quoted) {
        let start = out[..at].rfind(". ").map_or(0, |i| i + 2);
        let end = out[at..].find('.').map_or(out.len(), |i| at + i + 1);
        // "Available facet-searchable attributes patterns are": the kind of list.
        let kind = out[start..at]
            .strip_prefix("Available ")
            .and_then(|s| s.split(" attribute").next())
            .unwrap_or("filterable")
            .to_owned();
        out.replace_range(
            start..end,
            &format!("This index does not have configured {kind} attributes."),
        );
    }
    (out != message).then_some(out)
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
    fn the_shard_filter_leaves_quoted_filters() {
        // Messages of Meilisearch 1.50 for the node's filter, and for the client's alone.
        let cases = [
            (
                "Index `a`: Attribute `title` is not filterable. Available filterable attribute patterns are: `genre`.\n63:68 (\"_miroir_shard\" IN [\"a\", \"b\"]) AND ((\"genre\" = \"rock\") AND (\"title\" = \"a\"))",
                "Index `a`: Attribute `title` is not filterable. Available filterable attribute patterns are: `genre`.\n26:31 (\"genre\" = \"rock\") AND (\"title\" = \"a\")",
            ),
            (
                "x\n62:67 (\"_miroir_shard\" IN [\"a\", \"b\"]) AND (\"genre\" = \"rock\") AND (\"title\" = \"x\")",
                "x\n26:31 (\"genre\" = \"rock\") AND (\"title\" = \"x\")",
            ),
            (
                "x\n62:67 (\"_miroir_shard\" IN [\"a\", \"b\"]) AND ((\"genre\" = \"rock\") OR (\"title\" = \"a\"))",
                "x\n25:30 (\"genre\" = \"rock\") OR (\"title\" = \"a\")",
            ),
            (
                "x\n39:44 (\"_miroir_shard\" IN [\"a\", \"b\"]) AND (\"title\" = \"a\")",
                "x\n2:7 \"title\" = \"a\"",
            ),
            (
                "x\n44:49 (\"_miroir_shard\" IN [\"a\", \"b\"]) AND (NOT (\"title\" = \"a\"))",
                "x\n7:12 NOT (\"title\" = \"a\")",
            ),
            (
                "x\n60:65 (\"_miroir_shard\" IN [\"a\", \"b\"]) AND ((\"genre\" = \"é)\") AND (\"title\" EXISTS))",
                "x\n23:28 (\"genre\" = \"é)\") AND (\"title\" EXISTS)",
            ),
        ];
        for (node, client) in cases {
            assert_eq!(
                without_shard_filter(node).as_deref(),
                Some(client),
                "{node}"
            );
        }
        assert_eq!(
            without_shard_filter("Was expecting a value.\n9:9 genre = "),
            None
        );
        assert_eq!(
            client_error_message("Available filterable attribute patterns are: `_miroir_shard`, `genre`.\n34:35 (\"_miroir_shard\" IN [\"a\"]) AND (\"t\" = \"a\")").as_deref(),
            Some("Available filterable attribute patterns are: `genre`.\n2:3 \"t\" = \"a\"")
        );
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
        // Meilisearch 1.50's facet messages: one quoted list.
        assert_eq!(
            hide("Invalid facet distribution: Pattern `title` is not filterable. Available filterable attributes patterns are: `Year, _miroir_shard, genre`.").as_deref(),
            Some("Invalid facet distribution: Pattern `title` is not filterable. Available filterable attributes patterns are: `Year, genre`.")
        );
        assert_eq!(
            hide("Invalid facet distribution: Pattern `title` is not filterable. Available filterable attributes patterns are: `_miroir_shard`.").as_deref(),
            Some("Invalid facet distribution: Pattern `title` is not filterable. This index does not have configured filterable attributes.")
        );
        assert_eq!(
            hide("Attribute `title` is not facet-searchable. Available facet-searchable attributes patterns are: `_miroir_shard`. To make it facet-searchable add it to the `filterableAttributes` index settings.").as_deref(),
            Some("Attribute `title` is not facet-searchable. This index does not have configured facet-searchable attributes. To make it facet-searchable add it to the `filterableAttributes` index settings.")
        );
    }
}
