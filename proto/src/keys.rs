//! API keys as Meilisearch has them: the value derived from the master key and the uid,
//! UUID v4 uids, the actions and what each grants, index patterns.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Every action a key can hold.
pub const ACTIONS: &[&str] = &[
    "*",
    "search",
    "documents.*",
    "documents.add",
    "documents.get",
    "documents.delete",
    "indexes.*",
    "indexes.create",
    "indexes.get",
    "indexes.update",
    "indexes.delete",
    "indexes.swap",
    "tasks.*",
    "tasks.cancel",
    "tasks.delete",
    "tasks.get",
    "settings.*",
    "settings.get",
    "settings.update",
    "stats.*",
    "stats.get",
    "metrics.*",
    "metrics.get",
    "dumps.*",
    "dumps.create",
    "snapshots.*",
    "snapshots.create",
    "version",
    "keys.create",
    "keys.get",
    "keys.update",
    "keys.delete",
    "experimental.get",
    "experimental.update",
    "export",
    "network.get",
    "network.update",
    "chatCompletions",
    "chats.*",
    "chats.get",
    "chats.delete",
    "chatsSettings.*",
    "chatsSettings.get",
    "chatsSettings.update",
    "*.get",
    "webhooks.get",
    "webhooks.update",
    "webhooks.delete",
    "webhooks.create",
    "webhooks.*",
    "indexes.compact",
    "fields.post",
    "tasks.compact",
    "dynamicSearchRules.get",
    "dynamicSearchRules.create",
    "dynamicSearchRules.update",
    "dynamicSearchRules.delete",
    "dynamicSearchRules.*",
];

/// The key's value: lowercase hex of HMAC-SHA256 keyed by the master key over the uid,
/// exactly as Meilisearch derives it, so the same uid gives the same value on every node.
pub fn key_value(master_key: &str, uid: &str) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(master_key.as_bytes()) else {
        return String::new();
    };
    mac.update(uid.to_ascii_lowercase().as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random UUID v4, lowercase and hyphenated.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Whether `uid` is a UUID in any form Meilisearch's `Uuid::parse_str` reads (hyphenated,
/// 32 digits, braced, `urn:uuid:`); returns it lowercase and hyphenated.
pub fn parse_uid(uid: &str) -> Option<String> {
    uuid::Uuid::try_parse(uid)
        .ok()
        .map(|uid| uid.hyphenated().to_string())
}

/// Whether two secrets are equal, in a time that depends on their lengths only, not on
/// where they first differ: a key cannot be guessed byte by byte from timings.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Whether holding `granted` allows `required` (`*` allows everything, `documents.*`
/// every `documents.` action, and so on).
pub fn action_allows(granted: &[String], required: &str) -> bool {
    granted.iter().any(|g| {
        g == "*"
            || g == required
            // Meilisearch 1.50's `*.get`: every reading action.
            || (g == "*.get" && required.ends_with(".get"))
            || g.strip_suffix(".*").is_some_and(|prefix| {
                required
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
    })
}

/// Whether an index pattern (`*`, `movies`, `movies_*`) matches `index`.
pub fn index_matches(pattern: &str, index: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => index.starts_with(prefix),
        None => pattern == index,
    }
}

/// Whether any of `patterns` matches `index`.
pub fn indexes_allow(patterns: &[String], index: &str) -> bool {
    patterns.iter().any(|p| index_matches(p, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_match_meilisearch() {
        // Pinned from Python's hmac module (hmac.new(master, uid, sha256).hexdigest()).
        let value = key_value("aSampleMasterKey", "01b4bc42-eb33-4041-b481-254d00cce834");
        assert_eq!(
            value,
            "2851f7ebdf501b0b988cf5dea285f466d6806eaedc41bc2df10ef8c4a897f003"
        );
        assert_eq!(
            value,
            key_value("aSampleMasterKey", "01B4BC42-EB33-4041-B481-254D00CCE834")
        );
        assert_ne!(
            value,
            key_value("anotherMasterKey", "01b4bc42-eb33-4041-b481-254d00cce834")
        );
    }

    #[test]
    fn uids_are_v4_and_parse() {
        let uid = new_uid();
        assert_eq!(parse_uid(&uid).as_deref(), Some(uid.as_str()));
        assert_eq!(&uid[14..15], "4");
        assert!(parse_uid("not-a-uuid").is_none());
        // Hyphens only where a UUID has them.
        assert!(parse_uid("01b4bc42eb33-4041-b481-254d00cce834").is_none());
        assert!(parse_uid("0-1b4bc42eb334041b481254d00cce834").is_none());
        assert!(parse_uid("01b4bc42-eb33-4041-b481-254d00cce83é").is_none());
        assert_eq!(
            parse_uid("{01b4bc42-eb33-4041-b481-254d00cce834}").as_deref(),
            Some("01b4bc42-eb33-4041-b481-254d00cce834")
        );
        assert!(same_secret(b"masterKey-0123", b"masterKey-0123"));
        assert!(!same_secret(b"masterKey-0123", b"masterKey-0124"));
        assert!(!same_secret(b"masterKey-0123", b"masterKey-012"));
        assert_eq!(
            parse_uid("01B4BC42EB334041B481254D00CCE834").as_deref(),
            Some("01b4bc42-eb33-4041-b481-254d00cce834")
        );
    }

    #[test]
    fn actions_and_patterns() {
        let granted = vec!["documents.*".to_owned(), "search".to_owned()];
        assert!(action_allows(&granted, "documents.add"));
        assert!(action_allows(&granted, "search"));
        assert!(!action_allows(&granted, "indexes.create"));
        assert!(!action_allows(
            &["documents.*".to_owned()],
            "documentsx.add"
        ));
        assert!(action_allows(&["*".to_owned()], "keys.get"));
        assert!(index_matches("movies_*", "movies_fr"));
        assert!(!index_matches("movies_*", "books"));
        assert!(index_matches("*", "anything"));
        assert!(!index_matches("movies", "movies_fr"));
    }
}
