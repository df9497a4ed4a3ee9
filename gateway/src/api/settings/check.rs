//! A settings change checked before it is committed, as one Meilisearch checks it before
//! it enqueues a task: the body's shape first (each member's type and values, the first
//! fault in the body's order, under the member's `invalid_settings_*` code), then the
//! experimental features it needs, then each embedder's own rules. A change a node would
//! refuse at once is refused at once, rather than accepted and failed as a task after the
//! two-phase commit.

use super::embedders;
use super::shape::{Field, Location, Object, Shape, check, required, setting, unknown_field};
use crate::api::error::MeiliError;
use miroir_proto::settings::KEYS;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Checks a whole settings body (`PATCH /indexes/{uid}/settings`).
pub fn settings(
    body: &Map<String, Value>,
    features: &BTreeMap<String, bool>,
) -> Result<(), MeiliError> {
    for (key, value) in body {
        let Some((shape, code)) = member(key) else {
            return Err(MeiliError::invalid(
                "bad_request",
                unknown_field(&Location::default(), key, KEYS),
            ));
        };
        if !value.is_null() {
            check(value, shape, &Location::new(format!(".{key}")))
                .map_err(|message| MeiliError::invalid(code, message))?;
        }
    }
    rules(body, features)
}

/// Checks the value of one setting sent to its own route (`PUT …/settings/ranking-rules`):
/// faults in its shape are located from the value itself (`[0]`, `.maxTotalHits`), an
/// embedder's as in a whole body (`.embedders.x`).
pub fn one(key: &str, value: &Value, features: &BTreeMap<String, bool>) -> Result<(), MeiliError> {
    if let Some((shape, code)) = member(key)
        && !value.is_null()
    {
        check(value, shape, &Location::default())
            .map_err(|message| MeiliError::invalid(code, message))?;
    }
    rules(&Map::from_iter([(key.to_owned(), value.clone())]), features)
}

/// What comes after the shape, in Meilisearch's order: the experimental features the
/// change needs, then each embedder's rules.
fn rules(change: &Map<String, Value>, features: &BTreeMap<String, bool>) -> Result<(), MeiliError> {
    let enabled = |feature: &str| features.get(feature) == Some(&true);
    let embedders = change.get("embedders").and_then(Value::as_object);
    if let Some(embedders) = embedders {
        embedders::features(embedders, &enabled)?;
    }
    for (key, feature, name, link) in [
        ("chat", "chatCompletions", "chat completions", "835"),
        ("foreignKeys", "foreignKeys", "foreign_keys", "873"),
    ] {
        if change.get(key).is_some_and(|v| !v.is_null()) && !enabled(feature) {
            return Err(MeiliError::invalid(
                "feature_not_enabled",
                format!(
                    "setting `{key}` in the index settings requires enabling the `{name}` experimental feature. See https://github.com/orgs/meilisearch/discussions/{link}"
                ),
            ));
        }
    }
    match embedders {
        Some(embedders) => embedders::rules(embedders),
        None => Ok(()),
    }
}

/// A setting's shape and the code of its errors.
fn member(key: &str) -> Option<(Shape, &'static str)> {
    const STRINGS: Shape = Shape::List(&Shape::Text);
    Some(match key {
        "displayedAttributes" => (STRINGS, "invalid_settings_displayed_attributes"),
        "searchableAttributes" => (STRINGS, "invalid_settings_searchable_attributes"),
        "filterableAttributes" => (
            Shape::List(&Shape::TextOr(&FILTERABLE_RULE)),
            "invalid_settings_filterable_attributes",
        ),
        "sortableAttributes" => (STRINGS, "invalid_settings_sortable_attributes"),
        "foreignKeys" => (
            Shape::List(&Shape::Object(&FOREIGN_KEY)),
            "invalid_settings_foreign_keys",
        ),
        "rankingRules" => (
            Shape::List(&Shape::TextWith(ranking_rule)),
            "invalid_settings_ranking_rules",
        ),
        "stopWords" => (STRINGS, "invalid_settings_stop_words"),
        "nonSeparatorTokens" => (STRINGS, "invalid_settings_non_separator_tokens"),
        "separatorTokens" => (STRINGS, "invalid_settings_separator_tokens"),
        "dictionary" => (STRINGS, "invalid_settings_dictionary"),
        "synonyms" => (Shape::Map(&STRINGS), "invalid_settings_synonyms"),
        "distinctAttribute" => (Shape::Text, "invalid_settings_distinct_attribute"),
        "proximityPrecision" => (
            Shape::OneOf(&["byWord", "byAttribute"]),
            "invalid_settings_proximity_precision",
        ),
        "typoTolerance" => (
            Shape::Object(&TYPO_TOLERANCE),
            "invalid_settings_typo_tolerance",
        ),
        "faceting" => (Shape::Object(&FACETING), "invalid_settings_faceting"),
        "pagination" => (Shape::Object(&PAGINATION), "invalid_settings_pagination"),
        "embedders" => (embedders::EMBEDDERS, "invalid_settings_embedders"),
        "searchCutoffMs" => (Shape::Count, "invalid_settings_search_cutoff_ms"),
        "localizedAttributes" => (
            Shape::List(&Shape::Object(&LOCALIZED_RULE)),
            "invalid_settings_localized_attributes",
        ),
        "facetSearch" => (Shape::Bool, "invalid_settings_facet_search"),
        "prefixSearch" => (
            Shape::OneOf(&["indexingTime", "disabled"]),
            "invalid_settings_prefix_search",
        ),
        "chat" => (Shape::Object(&CHAT), "invalid_settings_index_chat"),
        _ => return None,
    })
}

const FILTERABLE_RULE: Object = Object {
    fields: &[
        required("attributePatterns", Shape::List(&Shape::Text)),
        Field {
            name: "features",
            shape: Shape::Object(&FILTERABLE_FEATURES),
            nullable: false,
            required: false,
        },
    ],
    open: false,
    then: None,
};

const FILTERABLE_FEATURES: Object = Object {
    fields: &[
        super::shape::optional("facetSearch", Shape::Bool),
        super::shape::optional(
            "filter",
            Shape::Object(&Object {
                fields: &[
                    super::shape::optional("equality", Shape::Bool),
                    super::shape::optional("comparison", Shape::Bool),
                ],
                open: false,
                then: None,
            }),
        ),
    ],
    open: false,
    then: None,
};

const FOREIGN_KEY: Object = Object {
    fields: &[
        required("foreignIndexUid", Shape::Text),
        required("fieldName", Shape::Text),
    ],
    open: false,
    then: None,
};

const TYPO_TOLERANCE: Object = Object {
    fields: &[
        setting("enabled", Shape::Bool),
        setting(
            "minWordSizeForTypos",
            Shape::Object(&Object {
                fields: &[
                    setting("oneTypo", Shape::Byte),
                    setting("twoTypos", Shape::Byte),
                ],
                open: false,
                then: Some(min_word_sizes),
            }),
        ),
        setting("disableOnWords", Shape::List(&Shape::Text)),
        setting("disableOnAttributes", Shape::List(&Shape::Text)),
        setting("disableOnNumbers", Shape::Bool),
    ],
    open: false,
    then: None,
};

/// Two typos need words at least as long as one typo does.
fn min_word_sizes(sizes: &Map<String, Value>) -> Result<(), String> {
    let size = |name| sizes.get(name).and_then(Value::as_u64);
    match (size("oneTypo"), size("twoTypos")) {
        (Some(one), Some(two)) if one > two => Err(format!(
            "`minWordSizeForTypos` setting is invalid. `oneTypo` and `twoTypos` fields should be between `0` and `255`, and `twoTypos` should be greater or equals to `oneTypo` but found `oneTypo: {one}` and twoTypos: {two}`."
        )),
        _ => Ok(()),
    }
}

const FACETING: Object = Object {
    fields: &[
        setting("maxValuesPerFacet", Shape::Count),
        setting(
            "sortFacetValuesBy",
            Shape::Map(&Shape::OneOf(&["alpha", "count"])),
        ),
    ],
    open: false,
    then: None,
};

const PAGINATION: Object = Object {
    fields: &[setting("maxTotalHits", Shape::NonZeroCount)],
    open: false,
    then: None,
};

const LOCALIZED_RULE: Object = Object {
    fields: &[
        required("attributePatterns", Shape::List(&Shape::Text)),
        required("locales", Shape::List(&Shape::OneOf(LOCALES))),
    ],
    open: false,
    then: None,
};

const CHAT: Object = Object {
    fields: &[
        setting("description", Shape::Text),
        setting("documentTemplate", Shape::Text),
        setting("documentTemplateMaxBytes", Shape::Count),
        setting(
            "searchParameters",
            Shape::Object(&Object {
                fields: &[
                    setting(
                        "hybrid",
                        Shape::Object(&Object {
                            fields: &[
                                setting("semanticRatio", Shape::Ratio("semanticRatio")),
                                required("embedder", Shape::Text),
                            ],
                            open: false,
                            then: None,
                        }),
                    ),
                    setting("limit", Shape::Count),
                    setting("sort", Shape::List(&Shape::Text)),
                    setting("distinct", Shape::Text),
                    setting(
                        "matchingStrategy",
                        Shape::OneOf(&["last", "all", "frequency"]),
                    ),
                    setting("attributesToSearchOn", Shape::List(&Shape::Text)),
                    setting(
                        "rankingScoreThreshold",
                        Shape::Ratio("rankingScoreThreshold"),
                    ),
                ],
                open: false,
                then: None,
            }),
        ),
    ],
    open: false,
    then: None,
};

/// The locales of `localizedAttributes`, in the order Meilisearch lists them.
const LOCALES: &[&str] = &[
    "af", "ak", "am", "ar", "az", "be", "bn", "bg", "ca", "cs", "da", "de", "el", "en", "eo", "et",
    "fi", "fr", "gu", "he", "hi", "hr", "hu", "hy", "id", "it", "jv", "ja", "kn", "ka", "km", "ko",
    "la", "lv", "lt", "ml", "mr", "mk", "my", "ne", "nl", "nb", "or", "pa", "fa", "pl", "pt", "ro",
    "ru", "si", "sk", "sl", "sn", "es", "sr", "sv", "ta", "te", "tl", "th", "tk", "tr", "uk", "ur",
    "uz", "vi", "yi", "zh", "zu", "afr", "aka", "amh", "ara", "aze", "bel", "ben", "bul", "cat",
    "ces", "dan", "deu", "ell", "eng", "epo", "est", "fin", "fra", "guj", "heb", "hin", "hrv",
    "hun", "hye", "ind", "ita", "jav", "jpn", "kan", "kat", "khm", "kor", "lat", "lav", "lit",
    "mal", "mar", "mkd", "mya", "nep", "nld", "nob", "ori", "pan", "pes", "pol", "por", "ron",
    "rus", "sin", "slk", "slv", "sna", "spa", "srp", "swe", "tam", "tel", "tgl", "tha", "tuk",
    "tur", "ukr", "urd", "uzb", "vie", "yid", "zho", "zul", "cmn",
];

/// A ranking rule as Meilisearch 1.50 reads one: a built-in name, or `field:asc` /
/// `field:desc` on a field that is not one of the reserved geo names.
fn ranking_rule(text: &str) -> Result<(), String> {
    const BUILT_IN: [&str; 8] = [
        "words",
        "typo",
        "proximity",
        "attribute",
        "attributeRank",
        "wordPosition",
        "sort",
        "exactness",
    ];
    const RESERVED: [&str; 6] = [
        "_geo",
        "_geoDistance",
        "_geoPoint",
        "_geoRadius",
        "_geoBoundingBox",
        "_geoPolygon",
    ];
    if BUILT_IN.contains(&text) {
        return Ok(());
    }
    let Some((field, "asc" | "desc")) = text.rsplit_once(':') else {
        return Err(format!(
            "`{text}` ranking rule is invalid. Valid ranking rules are words, typo, sort, proximity, attribute, exactness and custom ranking rules."
        ));
    };
    let reserved = |name: &str, only: &str| {
        format!(
            "`{name}` is a reserved keyword and thus can't be used as a ranking rule. `{name}` can only be used for {only} at search time"
        )
    };
    if field.starts_with("_geoPoint") && (field == "_geoPoint" || field.starts_with("_geoPoint(")) {
        return Err(reserved("_geoPoint", "sorting"));
    }
    let is_reserved = RESERVED.contains(&field)
        || ["_geoRadius(", "_geoBoundingBox(", "_geo(", "_geoDistance("]
            .iter()
            .any(|prefix| field.starts_with(prefix));
    if !is_reserved {
        Ok(())
    } else if field.starts_with("_geoRadius") {
        Err(reserved("_geoRadius", "filtering"))
    } else if field.starts_with("_geoBoundingBox") {
        Err(reserved("_geoBoundingBox", "filtering"))
    } else {
        Err(format!(
            "`{field}` is a reserved keyword and thus can't be used as a ranking rule"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(body: Value) -> (String, String) {
        let error = settings(body.as_object().unwrap(), &BTreeMap::new()).unwrap_err();
        (error.code.to_owned(), error.message)
    }

    #[test]
    fn the_first_fault_in_the_bodys_order_is_refused_under_its_members_code() {
        assert_eq!(
            refusal(json!({"stopWords": ["a"], "rankingRules": 5, "synonyms": 1})),
            (
                "invalid_settings_ranking_rules".into(),
                "Invalid value type at `.rankingRules`: expected an array, but found a positive integer: `5`".into()
            )
        );
        let (code, message) = refusal(json!({"bogus": 1, "rankingRules": 5}));
        assert_eq!(code, "bad_request");
        assert!(message.starts_with(
            "Unknown field `bogus`: expected one of `displayedAttributes`, `searchableAttributes`"
        ));
        assert_eq!(
            refusal(
                json!({"typoTolerance": {"minWordSizeForTypos": {"oneTypo": 9, "twoTypos": 5}}})
            )
            .1,
            "Invalid value at `.typoTolerance.minWordSizeForTypos`: `minWordSizeForTypos` setting is invalid. `oneTypo` and `twoTypos` fields should be between `0` and `255`, and `twoTypos` should be greater or equals to `oneTypo` but found `oneTypo: 9` and twoTypos: 5`."
        );
        assert_eq!(
            refusal(json!({"filterableAttributes": [{"features": {}}]})).1,
            "Missing field `attributePatterns` inside `.filterableAttributes[0]`"
        );
        // Shape before features: a chat body of the wrong type is not a feature error.
        assert_eq!(refusal(json!({"chat": 1})).0, "invalid_settings_index_chat");
        assert_eq!(refusal(json!({"chat": {}})).0, "feature_not_enabled");
        let features = BTreeMap::new();
        assert!(
            settings(
                json!({"rankingRules": ["words", "title:asc", "x:asc:desc"], "pagination": null, "faceting": {"maxValuesPerFacet": 0}})
                    .as_object()
                    .unwrap(),
                &features
            )
            .is_ok()
        );
    }

    #[test]
    fn ranking_rules_read_as_milli_reads_them() {
        for ok in [
            "words",
            "wordPosition",
            "price:asc",
            "a:b:desc",
            ":asc",
            "_vectors:desc",
        ] {
            assert_eq!(ranking_rule(ok), Ok(()), "{ok}");
        }
        for (bad, message) in [
            (
                "asc(title)",
                "`asc(title)` ranking rule is invalid. Valid ranking rules are words, typo, sort, proximity, attribute, exactness and custom ranking rules.",
            ),
            (
                "x:",
                "`x:` ranking rule is invalid. Valid ranking rules are words, typo, sort, proximity, attribute, exactness and custom ranking rules.",
            ),
            (
                "_geo:asc",
                "`_geo` is a reserved keyword and thus can't be used as a ranking rule",
            ),
            (
                "_geo(1):desc",
                "`_geo(1)` is a reserved keyword and thus can't be used as a ranking rule",
            ),
            (
                "_geoPoint(1, 2):asc",
                "`_geoPoint` is a reserved keyword and thus can't be used as a ranking rule. `_geoPoint` can only be used for sorting at search time",
            ),
            (
                "_geoRadius(1,2,3):asc",
                "`_geoRadius` is a reserved keyword and thus can't be used as a ranking rule. `_geoRadius` can only be used for filtering at search time",
            ),
        ] {
            assert_eq!(ranking_rule(bad), Err(message.to_owned()), "{bad}");
        }
    }

    #[test]
    fn a_sub_route_locates_faults_from_its_value() {
        let error = one("rankingRules", &json!(["x"]), &BTreeMap::new()).unwrap_err();
        assert_eq!(
            error.message,
            "Invalid value at `[0]`: `x` ranking rule is invalid. Valid ranking rules are words, typo, sort, proximity, attribute, exactness and custom ranking rules."
        );
    }
}
