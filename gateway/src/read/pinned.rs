//! Primary-key pinning: a read that can only match documents with given primary keys (a
//! filter with `pk = X` or `pk IN [X, Y]` ANDed with the rest, or `ids` in a document
//! fetch) needs only the shards those keys hash to, so only their nodes are asked.
//!
//! Pinning never changes an answer: it is taken only where the filter's grammar is read
//! with certainty (top-level `AND`s, Meilisearch's upper-case keywords, values whose shard
//! key is their text); anything else asks every shard, as before.

use miroir_proto::placement::shard_for_key;
use serde_json::Value;

/// The primary keys `filter` pins on attribute `primary_key`, if it pins any.
pub fn keys_of_filter(filter: &Value, primary_key: &str) -> Option<Vec<String>> {
    match filter {
        Value::String(text) => keys_of_text(text, primary_key),
        // The elements are ANDed: one that pins is enough. An inner array is an OR: it
        // pins the union, when each of its conditions pins.
        Value::Array(elements) => elements.iter().find_map(|element| match element {
            Value::String(text) => keys_of_text(text, primary_key),
            Value::Array(any_of) => {
                let mut keys = Vec::new();
                for condition in any_of {
                    keys.extend(keys_of_text(condition.as_str()?, primary_key)?);
                }
                Some(keys)
            }
            _ => None,
        }),
        _ => None,
    }
}

/// The keys of a document fetch's `ids` (strings, or integers written plainly).
pub fn keys_of_ids(ids: &Value) -> Option<Vec<String>> {
    ids.as_array()?
        .iter()
        .map(|id| match id {
            Value::String(s) => plain_key(s, true),
            Value::Number(n) => plain_key(&n.to_string(), false),
            _ => None,
        })
        .collect()
}

/// The shards `keys` hash to, sorted, once each.
pub fn shards_of(keys: &[String], shard_count: u32) -> Vec<u32> {
    let mut shards: Vec<u32> = keys
        .iter()
        .map(|key| shard_for_key(key, shard_count).0)
        .collect();
    shards.sort_unstable();
    shards.dedup();
    shards
}

/// A filter string's keys: one of its top-level conditions (split on `AND`; none when an
/// `OR` is at the top level) is `pk = value` or `pk IN [values]`.
fn keys_of_text(text: &str, primary_key: &str) -> Option<Vec<String>> {
    let tokens = tokens(text)?;
    if tokens.contains(&Token::Word("OR")) {
        return None;
    }
    tokens
        .split(|t| *t == Token::Word("AND"))
        .find_map(|condition| condition_keys(condition, primary_key))
}

fn condition_keys(condition: &[Token], primary_key: &str) -> Option<Vec<String>> {
    let field = |t: &Token| {
        matches!(t, Token::Word(w) if *w == primary_key)
            || matches!(t, Token::Quoted(q) if q == primary_key)
    };
    match condition {
        [name, Token::Equals, value] if field(name) => Some(vec![value.key()?]),
        [
            name,
            Token::Word("IN"),
            Token::Open,
            values @ ..,
            Token::Close,
        ] if field(name) => {
            let keys: Option<Vec<String>> = values
                .split(|t| *t == Token::Comma)
                .map(|value| match value {
                    [value] => value.key(),
                    _ => None,
                })
                .collect();
            keys.filter(|k| !k.is_empty())
        }
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    Quoted(String),
    Equals,
    Open,
    Close,
    Comma,
    /// Anything else (comparisons, parentheses): a condition with one never pins.
    Other,
}

impl Token<'_> {
    /// The shard key of a value token.
    fn key(&self) -> Option<String> {
        match self {
            Token::Word(word) => plain_key(word, false),
            Token::Quoted(text) => plain_key(text, true),
            _ => None,
        }
    }
}

/// `value`'s shard key when it is certain: a number is compared as a number, so only an
/// integer written plainly (`12`, not `012` or `12.0`) has its text as key; other text
/// is its own key, but a bare word that is a keyword is not a value.
fn plain_key(value: &str, quoted: bool) -> Option<String> {
    let numeric = value.parse::<f64>().is_ok();
    let digits = value.strip_prefix('-').unwrap_or(value);
    let plain_integer = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !digits.starts_with('0'));
    let keyword = !quoted
        && matches!(
            value,
            "AND" | "OR" | "NOT" | "IN" | "TO" | "EXISTS" | "IS" | "NULL" | "EMPTY"
        );
    (!keyword && (!numeric || plain_integer)).then(|| value.to_owned())
}

/// The filter's tokens, or `None` for text this reader does not follow (an unterminated
/// quote).
fn tokens(text: &str) -> Option<Vec<Token<'_>>> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            sign @ (b'=' | b'[' | b']' | b',') => {
                tokens.push(match sign {
                    b'=' => Token::Equals,
                    b'[' => Token::Open,
                    b']' => Token::Close,
                    _ => Token::Comma,
                });
                i += 1;
            }
            quote @ (b'"' | b'\'') => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    let c = *bytes.get(j)?;
                    if c == b'\\' && j + 1 < bytes.len() {
                        value.push(char::from(bytes[j + 1]));
                        j += 2;
                    } else if c == quote {
                        break;
                    } else {
                        let ch = text[j..].chars().next()?;
                        value.push(ch);
                        j += ch.len_utf8();
                    }
                }
                tokens.push(Token::Quoted(value));
                i = j + 1;
            }
            b'!' | b'<' | b'>' | b'(' | b')' => {
                tokens.push(Token::Other);
                i += 1;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b' ' | b'\t'
                            | b'\n'
                            | b'\r'
                            | b'='
                            | b'['
                            | b']'
                            | b','
                            | b'"'
                            | b'\''
                            | b'!'
                            | b'<'
                            | b'>'
                            | b'('
                            | b')'
                    )
                {
                    i += 1;
                }
                tokens.push(Token::Word(&text[start..i]));
            }
        }
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(filter: Value) -> Option<Vec<String>> {
        keys_of_filter(&filter, "id")
    }

    #[test]
    fn conditions_on_the_primary_key_pin_their_keys() {
        assert_eq!(keys(json!("id = 12")), Some(vec!["12".into()]));
        assert_eq!(
            keys(json!("genre = rock AND id IN [a, 'b c', \"d\\\"e\"]")),
            Some(vec!["a".into(), "b c".into(), "d\"e".into()])
        );
        assert_eq!(
            keys(json!(["genre = rock", "id = x"])),
            Some(vec!["x".into()])
        );
        assert_eq!(
            keys(json!([["id = 1", "id = 2"], "year > 3"])),
            Some(vec!["1".into(), "2".into()])
        );
        assert_eq!(keys(json!("'id' = 7")), Some(vec!["7".into()]));
    }

    #[test]
    fn anything_uncertain_asks_every_shard() {
        for filter in [
            json!("id = 1 OR genre = rock"),
            json!("NOT id = 1"),
            json!("id != 1"),
            json!("id > 1"),
            json!("id = 1.0"),
            json!("id = 01"),
            json!("id = '01'"),
            json!("id IN []"),
            json!("(id = 1)"),
            json!("id = 1 and genre = rock"),
            json!("title = 1"),
            json!("id = 'unterminated"),
            json!([["id = 1", "genre = rock"]]),
            json!(5),
        ] {
            // `id = 1 and …` is not Meilisearch's keyword: its first condition still pins
            // only if it stands alone; here the words run on, so nothing pins.
            assert_eq!(keys(filter.clone()), None, "{filter}");
        }
        assert_eq!(keys(json!("id = 0")), Some(vec!["0".into()]));
        assert_eq!(keys(json!("id = -4")), Some(vec!["-4".into()]));
    }

    #[test]
    fn fetched_ids_pin_their_shards() {
        assert_eq!(
            keys_of_ids(&json!(["a", 3])),
            Some(vec!["a".into(), "3".into()])
        );
        assert_eq!(keys_of_ids(&json!([1.5])), None);
        assert_eq!(keys_of_ids(&json!("a")), None);
        let shards = shards_of(&["a".into(), "a".into(), "3".into()], 8);
        assert!(shards.len() <= 2 && shards.windows(2).all(|w| w[0] < w[1]));
    }
}
