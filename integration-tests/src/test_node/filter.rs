//! Meilisearch filter expressions: parsing and evaluation against JSON documents.
//!
//! Grammar (keywords case-insensitive), as in Meilisearch's `filter-parser` crate:
//!
//! ```text
//! expr      = and ("OR" and)*
//! and       = not ("AND" not)*
//! not       = "NOT" not | primary
//! primary   = "(" expr ")" | geo | condition
//! condition = attr ("=" | "!=" | ">" | ">=" | "<" | "<=") value
//!           | attr value "TO" value
//!           | attr ["NOT"] "EXISTS" | attr "IS" ["NOT"] ("NULL" | "EMPTY")
//!           | attr ["NOT"] "IN" "[" value ("," value)* [","] "]"
//!           | attr ["NOT"] ("CONTAINS" | "STARTS" "WITH") value
//! geo       = "_geoRadius(" lat "," lng "," meters ")"
//!           | "_geoBoundingBox([" lat "," lng "],[" lat "," lng "])"
//! ```
//!
//! The array form `["a = 1", ["b = 2", "c = 3"]]` means `a = 1 AND (b = 2 OR c = 3)`.
//! String comparisons are case-insensitive, as Meilisearch normalizes facet values.

use serde_json::Value;

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// All must hold.
    And(Vec<Filter>),
    /// One must hold.
    Or(Vec<Filter>),
    /// Must not hold.
    Not(Box<Filter>),
    /// `attr op value`.
    Compare(String, Op, String),
    /// `attr from TO to`.
    Range(String, String, String),
    /// `attr EXISTS`.
    Exists(String),
    /// `attr IS NULL`.
    IsNull(String),
    /// `attr IS EMPTY`.
    IsEmpty(String),
    /// `attr IN [values]`.
    In(String, Vec<String>),
    /// `attr CONTAINS value`: a string value holding `value` (the `containsFilter`
    /// experimental feature).
    Contains(String, String),
    /// `attr STARTS WITH value` (the same feature).
    StartsWith(String, String),
    /// `_geoRadius(lat, lng, meters)`.
    GeoRadius(f64, f64, f64),
    /// `_geoBoundingBox([top, right], [bottom, left])`.
    GeoBox((f64, f64), (f64, f64)),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// Parses the JSON form a client sends: a string, or an array of strings and arrays.
pub fn parse_json(filter: &Value) -> Result<Option<Filter>, String> {
    match filter {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => parse(s).map(Some),
        Value::Array(items) => {
            let mut and = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => {
                        if !s.trim().is_empty() {
                            and.push(parse(s)?);
                        }
                    }
                    Value::Array(inner) => {
                        let mut or = Vec::new();
                        for s in inner {
                            let Value::String(s) = s else {
                                return Err(format!(
                                    "Invalid syntax for the filter parameter: `expected String, found: {s}`."
                                ));
                            };
                            if !s.trim().is_empty() {
                                or.push(parse(s)?);
                            }
                        }
                        if !or.is_empty() {
                            and.push(Filter::Or(or));
                        }
                    }
                    other => {
                        return Err(format!(
                            "Invalid syntax for the filter parameter: `expected String, [String], found: {other}`."
                        ));
                    }
                }
            }
            Ok((!and.is_empty()).then_some(Filter::And(and)))
        }
        other => Err(format!(
            "Invalid syntax for the filter parameter: `expected String, Array, found: {other}`."
        )),
    }
}

/// Where `input` uses `CONTAINS` or `STARTS WITH`, as Meilisearch reports it in its
/// `feature_not_enabled` error: the operator's 1-based start and end columns.
pub fn contains_operator(input: &str) -> Option<(usize, usize)> {
    let tokens = tokenize(input).ok()?;
    let word = |i: usize, keyword: &str| matches!(tokens.get(i), Some(Token::Word { text, quoted: false, .. }) if text.eq_ignore_ascii_case(keyword));
    let column = |byte: usize| input[..byte].chars().count() + 1;
    (1..tokens.len()).find_map(|i| {
        let Some(Token::Word { start, text, .. }) = tokens.get(i) else {
            return None;
        };
        if word(i, "CONTAINS") {
            Some((column(*start), column(*start) + text.chars().count()))
        } else if word(i, "STARTS") && word(i + 1, "WITH") {
            let Some(Token::Word { start: with, .. }) = tokens.get(i + 1) else {
                return None;
            };
            Some((column(*start), column(*with) + 4))
        } else {
            None
        }
    })
}

/// Parses a filter string.
pub fn parse(input: &str) -> Result<Filter, String> {
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        input,
    };
    let filter = parser.or()?;
    if parser.pos < parser.tokens.len() {
        return Err(format!(
            "Found unexpected characters at the end of the filter: `{}`. You probably forgot an `OR` or an `AND` rule.",
            parser.rest()
        ));
    }
    Ok(filter)
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A bare word or quoted string; `quoted` keeps keywords literal.
    Word {
        text: String,
        quoted: bool,
        start: usize,
    },
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            '[' => {
                tokens.push(Token::LBracket);
                i += 1;
            }
            ']' => {
                tokens.push(Token::RBracket);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '=' => {
                tokens.push(Token::Op(Op::Eq));
                i += 1;
            }
            '!' if chars.get(i + 1).map(|c| c.1) == Some('=') => {
                tokens.push(Token::Op(Op::Ne));
                i += 2;
            }
            '>' | '<' => {
                let eq = chars.get(i + 1).map(|c| c.1) == Some('=');
                tokens.push(Token::Op(match (c, eq) {
                    ('>', true) => Op::Ge,
                    ('>', false) => Op::Gt,
                    ('<', true) => Op::Le,
                    _ => Op::Lt,
                }));
                i += if eq { 2 } else { 1 };
            }
            '\'' | '"' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(&(_, c)) = chars.get(i) else {
                        return Err(format!(
                            "Expression `{}` is missing the following closing delimiter: `{quote}`.",
                            &input[at..]
                        ));
                    };
                    i += 1;
                    if c == '\\' {
                        if let Some(&(_, next)) = chars.get(i) {
                            text.push(next);
                            i += 1;
                        }
                    } else if c == quote {
                        break;
                    } else {
                        text.push(c);
                    }
                }
                tokens.push(Token::Word {
                    text,
                    quoted: true,
                    start: at,
                });
            }
            _ => {
                let start = i;
                while i < chars.len() {
                    let c = chars[i].1;
                    if c.is_whitespace() || "()[],=!<>'\"".contains(c) {
                        break;
                    }
                    i += 1;
                }
                if i == start {
                    return Err(format!("Unexpected character `{c}` in filter `{input}`."));
                }
                let text: String = chars[start..i].iter().map(|c| c.1).collect();
                tokens.push(Token::Word {
                    text,
                    quoted: false,
                    start: at,
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    input: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn rest(&self) -> String {
        match self.tokens.get(self.pos) {
            Some(Token::Word { start, .. }) => self.input[*start..].to_owned(),
            _ => String::new(),
        }
    }

    fn keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word { text, quoted: false, .. }) if text.eq_ignore_ascii_case(keyword))
    }

    fn keyword_at(&self, offset: usize, keyword: &str) -> bool {
        matches!(self.tokens.get(self.pos + offset), Some(Token::Word { text, quoted: false, .. }) if text.eq_ignore_ascii_case(keyword))
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), String> {
        if self.peek() == Some(&token) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("Was expecting {what} in filter `{}`.", self.input))
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut items = vec![self.and()?];
        while self.keyword("OR") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::Or(items)
        })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut items = vec![self.not()?];
        while self.keyword("AND") {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::And(items)
        })
    }

    fn not(&mut self) -> Result<Filter, String> {
        if self.keyword("NOT") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.tokens.get(self.pos) {
            Some(Token::Word { text, .. }) => {
                self.pos += 1;
                Ok(text.clone())
            }
            _ => Err(format!(
                "Was expecting {what} but instead got `{}` in filter `{}`.",
                self.rest(),
                self.input
            )),
        }
    }

    fn number(&mut self) -> Result<f64, String> {
        let word = self.word("a number")?;
        word.parse::<f64>().map_err(|_| {
            format!(
                "Was expecting a number but found `{word}` in filter `{}`.",
                self.input
            )
        })
    }

    fn primary(&mut self) -> Result<Filter, String> {
        match self.peek() {
            Some(Token::LParen) => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(Token::RParen, "a closing parenthesis `)`")?;
                Ok(inner)
            }
            Some(Token::Word {
                text,
                quoted: false,
                ..
            }) if text.eq_ignore_ascii_case("_geoRadius") => {
                self.pos += 1;
                self.expect(Token::LParen, "`(` after _geoRadius")?;
                let lat = self.number()?;
                self.expect(Token::Comma, "`,`")?;
                let lng = self.number()?;
                self.expect(Token::Comma, "`,`")?;
                let meters = self.number()?;
                self.expect(Token::RParen, "`)`")?;
                Ok(Filter::GeoRadius(lat, lng, meters))
            }
            Some(Token::Word {
                text,
                quoted: false,
                ..
            }) if text.eq_ignore_ascii_case("_geoBoundingBox") => {
                self.pos += 1;
                self.expect(Token::LParen, "`(` after _geoBoundingBox")?;
                let point = |p: &mut Self| -> Result<(f64, f64), String> {
                    p.expect(Token::LBracket, "`[`")?;
                    let lat = p.number()?;
                    p.expect(Token::Comma, "`,`")?;
                    let lng = p.number()?;
                    p.expect(Token::RBracket, "`]`")?;
                    Ok((lat, lng))
                };
                let top_right = point(self)?;
                self.expect(Token::Comma, "`,`")?;
                let bottom_left = point(self)?;
                self.expect(Token::RParen, "`)`")?;
                Ok(Filter::GeoBox(top_right, bottom_left))
            }
            _ => self.condition(),
        }
    }

    fn condition(&mut self) -> Result<Filter, String> {
        let attribute = self.word("an attribute")?;
        if self.keyword("EXISTS") {
            self.pos += 1;
            return Ok(Filter::Exists(attribute));
        }
        if self.keyword("NOT") && self.keyword_at(1, "EXISTS") {
            self.pos += 2;
            return Ok(Filter::Not(Box::new(Filter::Exists(attribute))));
        }
        if self.keyword("IS") {
            self.pos += 1;
            let negate = self.keyword("NOT");
            if negate {
                self.pos += 1;
            }
            let filter = if self.keyword("NULL") {
                Filter::IsNull(attribute)
            } else if self.keyword("EMPTY") {
                Filter::IsEmpty(attribute)
            } else {
                return Err(format!(
                    "Was expecting `NULL` or `EMPTY` after `IS` in filter `{}`.",
                    self.input
                ));
            };
            self.pos += 1;
            return Ok(if negate {
                Filter::Not(Box::new(filter))
            } else {
                filter
            });
        }
        let negate = self.keyword("NOT")
            && (self.keyword_at(1, "CONTAINS")
                || (self.keyword_at(1, "STARTS") && self.keyword_at(2, "WITH")));
        if negate {
            self.pos += 1;
        }
        let starts = self.keyword("STARTS") && self.keyword_at(1, "WITH");
        if starts || self.keyword("CONTAINS") {
            self.pos += if starts { 2 } else { 1 };
            let value = self.word("a value")?;
            let filter = if starts {
                Filter::StartsWith(attribute, value)
            } else {
                Filter::Contains(attribute, value)
            };
            return Ok(if negate {
                Filter::Not(Box::new(filter))
            } else {
                filter
            });
        }
        let negate_in = self.keyword("NOT") && self.keyword_at(1, "IN");
        if negate_in {
            self.pos += 1;
        }
        if self.keyword("IN") {
            self.pos += 1;
            self.expect(Token::LBracket, "`[` after IN")?;
            let mut values = Vec::new();
            while self.peek() != Some(&Token::RBracket) {
                values.push(self.word("a value")?);
                if self.peek() == Some(&Token::Comma) {
                    self.pos += 1;
                } else if self.peek() != Some(&Token::RBracket) {
                    return Err(format!(
                        "Expected matching `]` after the list of values in filter `{}`.",
                        self.input
                    ));
                }
            }
            self.pos += 1;
            let filter = Filter::In(attribute, values);
            return Ok(if negate_in {
                Filter::Not(Box::new(filter))
            } else {
                filter
            });
        }
        match self.peek().cloned() {
            Some(Token::Op(op)) => {
                self.pos += 1;
                let value = self.word("a value")?;
                Ok(Filter::Compare(attribute, op, value))
            }
            Some(Token::Word { .. }) => {
                let from = self.word("a value")?;
                if !self.keyword("TO") {
                    return Err(format!(
                        "Was expecting an operation `=`, `!=`, `>=`, `>`, `<=`, `<`, `IN`, `NOT IN`, `TO`, `EXISTS`, `NOT EXISTS`, `IS NULL`, `IS NOT NULL`, `IS EMPTY`, `IS NOT EMPTY`, `CONTAINS`, `NOT CONTAINS`, `STARTS WITH`, `NOT STARTS WITH`, `_geoRadius`, or `_geoBoundingBox` at `{}`.",
                        self.input.trim()
                    ));
                }
                self.pos += 1;
                let to = self.word("a value")?;
                Ok(Filter::Range(attribute, from, to))
            }
            _ => Err(format!(
                "Was expecting an operation `=`, `!=`, `>=`, `>`, `<=`, `<`, `IN`, `NOT IN`, `TO`, `EXISTS`, `NOT EXISTS`, `IS NULL`, `IS NOT NULL`, `IS EMPTY`, `IS NOT EMPTY`, `CONTAINS`, `NOT CONTAINS`, `STARTS WITH`, `NOT STARTS WITH`, `_geoRadius`, or `_geoBoundingBox` at `{}`.",
                self.input.trim()
            )),
        }
    }
}

impl Filter {
    /// Every attribute the filter names (for the filterable-attributes check).
    pub fn attributes(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_attributes(&mut out);
        out
    }

    fn collect_attributes<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::And(items) | Filter::Or(items) => {
                items.iter().for_each(|f| f.collect_attributes(out))
            }
            Filter::Not(inner) => inner.collect_attributes(out),
            Filter::Compare(a, _, _)
            | Filter::Range(a, _, _)
            | Filter::Exists(a)
            | Filter::IsNull(a)
            | Filter::IsEmpty(a)
            | Filter::In(a, _)
            | Filter::Contains(a, _)
            | Filter::StartsWith(a, _) => out.push(a),
            Filter::GeoRadius(..) | Filter::GeoBox(..) => out.push("_geo"),
        }
    }

    /// Whether `document` matches.
    pub fn matches(&self, document: &Value) -> bool {
        match self {
            Filter::And(items) => items.iter().all(|f| f.matches(document)),
            Filter::Or(items) => items.iter().any(|f| f.matches(document)),
            Filter::Not(inner) => !inner.matches(document),
            // `a != v` is `NOT a = v`: documents without `a` match it.
            Filter::Compare(attribute, Op::Ne, value) => !leaves(document, attribute)
                .iter()
                .any(|v| compare(v, Op::Eq, value)),
            Filter::Compare(attribute, op, value) => leaves(document, attribute)
                .iter()
                .any(|v| compare(v, *op, value)),
            Filter::Range(attribute, from, to) => leaves(document, attribute)
                .iter()
                .any(|v| compare(v, Op::Ge, from) && compare(v, Op::Le, to)),
            Filter::Exists(attribute) => lookup(document, attribute).is_some(),
            Filter::IsNull(attribute) => matches!(lookup(document, attribute), Some(Value::Null)),
            Filter::IsEmpty(attribute) => match lookup(document, attribute) {
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                _ => false,
            },
            Filter::In(attribute, values) => leaves(document, attribute)
                .iter()
                .any(|v| values.iter().any(|value| compare(v, Op::Eq, value))),
            // Facet strings are compared lower-cased, as Meilisearch normalizes them.
            Filter::Contains(attribute, value) | Filter::StartsWith(attribute, value) => {
                let value = value.to_lowercase();
                leaves(document, attribute).iter().any(|v| {
                    v.as_str().is_some_and(|s| {
                        let s = s.to_lowercase();
                        match self {
                            Filter::Contains(..) => s.contains(&value),
                            _ => s.starts_with(&value),
                        }
                    })
                })
            }
            Filter::GeoRadius(lat, lng, meters) => geo_point(document)
                .is_some_and(|(dlat, dlng)| haversine_m(*lat, *lng, dlat, dlng) <= *meters),
            Filter::GeoBox((top, right), (bottom, left)) => {
                geo_point(document).is_some_and(|(lat, lng)| {
                    lat <= *top
                        && lat >= *bottom
                        && if left <= right {
                            lng >= *left && lng <= *right
                        } else {
                            lng >= *left || lng <= *right
                        }
                })
            }
        }
    }
}

/// The value at a dotted path, looking through nested objects (`a.b.c`); a key that
/// itself contains dots is also found.
pub fn lookup<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    let object = document.as_object()?;
    if let Some(value) = object.get(path) {
        return Some(value);
    }
    for (i, _) in path.match_indices('.') {
        if let Some(inner) = object.get(&path[..i]) {
            if let Some(found) = lookup(inner, &path[i + 1..]) {
                return Some(found);
            }
            if let Value::Array(items) = inner {
                for item in items {
                    if let Some(found) = lookup(item, &path[i + 1..]) {
                        return Some(found);
                    }
                }
            }
        }
    }
    None
}

/// The scalar values at a path, flattening arrays (an array field matches if any element does).
pub fn leaves<'a>(document: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
            other => out.push(other),
        }
    }
    if let Some(value) = lookup(document, path) {
        flatten(value, &mut out);
    }
    out
}

fn compare(value: &Value, op: Op, literal: &str) -> bool {
    let number = literal.trim().parse::<f64>().ok();
    match (value, number) {
        (Value::Number(n), Some(literal)) => {
            let Some(n) = n.as_f64() else { return false };
            match op {
                Op::Eq => n == literal,
                Op::Ne => n != literal,
                Op::Gt => n > literal,
                Op::Ge => n >= literal,
                Op::Lt => n < literal,
                Op::Le => n <= literal,
            }
        }
        (Value::String(s), _) => {
            let (a, b) = (s.to_lowercase(), literal.to_lowercase());
            match op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Lt => a < b,
                Op::Le => a <= b,
            }
        }
        (Value::Bool(b), _) => match op {
            Op::Eq => literal.eq_ignore_ascii_case(&b.to_string()),
            Op::Ne => !literal.eq_ignore_ascii_case(&b.to_string()),
            _ => false,
        },
        _ => false,
    }
}

/// The document's `_geo` point, if it has one.
pub fn geo_point(document: &Value) -> Option<(f64, f64)> {
    let geo = document.get("_geo")?;
    let get = |key: &str| -> Option<f64> {
        match geo.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    };
    Some((get("lat")?, get("lng")?))
}

/// Great-circle distance in meters, as Meilisearch computes it.
pub fn haversine_m(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let r = 6_371_008.8_f64;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * r * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: &str, document: Value) -> bool {
        parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(&document)
    }

    #[test]
    fn contains_and_starts_with() {
        let doc = json!({"title": "The Kefir Saga", "tags": ["alpha", "Beta"], "year": 1999});
        assert!(check("title CONTAINS kefir", doc.clone()));
        assert!(check("title CONTAINS 'IR SA'", doc.clone()));
        assert!(!check("title NOT CONTAINS kefir", doc.clone()));
        assert!(check("tags STARTS WITH be", doc.clone()));
        assert!(!check("title STARTS WITH kefir", doc.clone()));
        assert!(check(
            "title NOT STARTS WITH kefir AND tags CONTAINS lph",
            doc.clone()
        ));
        assert!(!check("year CONTAINS 99", doc), "numbers are not strings");
        assert_eq!(contains_operator("doggo CONTAINS kefir"), Some((7, 15)));
        assert_eq!(
            contains_operator("doggo != echo AND doggo CONTAINS kefir"),
            Some((25, 33))
        );
        assert_eq!(contains_operator("a STARTS WITH b"), Some((3, 14)));
        assert_eq!(contains_operator("contains = 'CONTAINS'"), None);
    }

    #[test]
    fn comparisons_ranges_and_sets() {
        let doc = json!({"id": 1, "genre": "Horror", "year": 1999, "tags": ["a", "b"], "nested": {"x": 5}});
        assert!(check("genre = horror", doc.clone()));
        assert!(check("genre = 'Horror'", doc.clone()));
        assert!(check("year > 1990 AND year <= 1999", doc.clone()));
        assert!(check("year 1990 TO 2000", doc.clone()));
        assert!(!check("year != 1999", doc.clone()));
        assert!(check("tags = b", doc.clone()));
        assert!(check("nested.x >= 5", doc.clone()));
        assert!(check("id IN [3, 1, 2]", doc.clone()));
        assert!(check("id NOT IN [3, 2]", doc.clone()));
        assert!(check("NOT genre = comedy", doc.clone()));
        assert!(check("genre = comedy OR year = 1999", doc.clone()));
        assert!(check(
            "(genre = comedy OR genre = horror) AND year = 1999",
            doc.clone()
        ));
        assert!(check("missing != 3", doc.clone()));
        assert!(check("genre EXISTS", doc.clone()));
        assert!(check("missing NOT EXISTS", doc.clone()));
        assert!(!check("genre IS NULL", doc.clone()));
        assert!(check("genre IS NOT EMPTY", doc.clone()));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let doc = json!({"a": 1, "b": 0, "c": 1});
        // a = 1 OR (b = 1 AND c = 0)
        assert!(check("a = 1 OR b = 1 AND c = 0", doc));
    }

    #[test]
    fn the_array_form_is_and_of_ors() {
        let filter = parse_json(&json!(["a = 1", ["b = 2", "c = 3"]]))
            .unwrap()
            .unwrap();
        assert!(filter.matches(&json!({"a": 1, "c": 3})));
        assert!(!filter.matches(&json!({"a": 1, "c": 4})));
    }

    #[test]
    fn geo_filters() {
        let doc = json!({"_geo": {"lat": 45.47, "lng": 9.18}});
        assert!(check(
            "_geoRadius(45.4777599, 9.1967508, 2000)",
            doc.clone()
        ));
        assert!(!check("_geoRadius(45.4777599, 9.1967508, 10)", doc.clone()));
        assert!(check("_geoBoundingBox([46, 10], [45, 9])", doc));
    }

    #[test]
    fn syntax_errors_are_reported() {
        for bad in [
            "genre =",
            "genre",
            "(a = 1",
            "a = 1 b = 2",
            "a IN [1, 2",
            "a IS",
            "'unterminated",
        ] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
