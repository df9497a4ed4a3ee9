//! Who is calling, and what they may do (DESIGN §5 "Auth"): the master key, an API key
//! from the topology, or a tenant token signed with one. The gateway checks every request
//! itself against the topology's keys and applies a tenant token's search rules to the
//! query; nodes are always called with the master key (see docs/gateway.md, "Auth").

use super::error::{ErrorType, MeiliError};
use crate::read::query::SearchQuery;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use miroir_proto::keys::{action_allows, index_matches, indexes_allow, key_value};
use miroir_proto::pb;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The credential a request was authenticated with, as a request extension.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The master key: everything.
    Master,
    /// An API key.
    Key(Arc<pb::ApiKey>),
    /// A tenant token: search only, on the indexes its rules and its key allow.
    Tenant {
        /// The key that signed it.
        key: Arc<pb::ApiKey>,
        /// `searchRules`: index pattern → rule (`null`, `{}` or `{"filter": …}`).
        rules: Map<String, Value>,
    },
}

/// Actions on the instance rather than on its indexes: Meilisearch grants them only to a
/// key whose `indexes` is `["*"]` (a key limited to some indexes gets 403 there, while
/// listings such as `GET /indexes`, `/stats` or `/tasks` show it its own indexes).
const INSTANCE_ACTIONS: &[&str] = &[
    "keys.get",
    "keys.create",
    "keys.update",
    "keys.delete",
    "version",
    "dumps.create",
    "export",
    "snapshots.create",
    "experimental.get",
    "experimental.update",
    "webhooks.get",
    "webhooks.create",
    "webhooks.update",
    "webhooks.delete",
    "chats.get",
    "chats.delete",
    "chatsSettings.get",
    "chatsSettings.update",
    "chatCompletions",
];

impl Caller {
    /// Whether the caller may run `action` (on `index`, when the route has one).
    pub fn allows(&self, action: &str, index: Option<&str>) -> bool {
        match self {
            Self::Master => true,
            Self::Key(key) => {
                action_allows(&key.actions, action)
                    && match index {
                        Some(index) => indexes_allow(&key.indexes, index),
                        // The instance's own routes are for keys on every index only.
                        None => {
                            !INSTANCE_ACTIONS.contains(&action)
                                || key.indexes.iter().any(|p| p == "*")
                        }
                    }
            }
            Self::Tenant { key, rules } => {
                action == "search"
                    && index.is_none_or(|i| {
                        indexes_allow(&key.indexes, i) && rules.keys().any(|p| index_matches(p, i))
                    })
            }
        }
    }

    /// Who the caller is as far as what it may read goes: the result cache shares an
    /// answer only between requests with the same permissions.
    pub fn cache_identity(&self) -> String {
        match self {
            Self::Master => "master".into(),
            Self::Key(key) => format!("key:{}", key.uid),
            Self::Tenant { key, rules } => {
                format!("tenant:{}:{}", key.uid, Value::Object(rules.clone()))
            }
        }
    }

    /// Whether `index` shows in listings (`GET /indexes`, `GET /stats`).
    pub fn sees(&self, index: &str) -> bool {
        match self {
            Self::Master => true,
            Self::Key(key) | Self::Tenant { key, .. } => indexes_allow(&key.indexes, index),
        }
    }

    /// The index patterns the caller is limited to, or `None` when it sees every index.
    pub fn index_patterns(&self) -> Option<&[String]> {
        match self {
            Self::Master => None,
            Self::Key(key) | Self::Tenant { key, .. } => {
                (!key.indexes.iter().any(|p| p == "*")).then_some(key.indexes.as_slice())
            }
        }
    }

    /// Checks a search on `index` and ANDs a tenant token's rule filter into `query`.
    pub fn restrict_search(&self, index: &str, query: &mut SearchQuery) -> Result<(), MeiliError> {
        if !self.allows("search", Some(index)) {
            return Err(match self {
                Self::Tenant { rules, .. } => {
                    let allowed: Vec<&String> = rules.keys().collect();
                    invalid_api_key(format!(
                        "The provided tenant token cannot acces the index `{index}`, allowed indexes are {allowed:?}."
                    ))
                }
                _ => forbidden(),
            });
        }
        let Self::Tenant { rules, .. } = self else {
            return Ok(());
        };
        // The most specific matching rule: exact names before patterns, longer first.
        let rule = rules
            .iter()
            .filter(|(pattern, _)| index_matches(pattern, index))
            .max_by_key(|(pattern, _)| (!pattern.ends_with('*'), pattern.len()))
            .map(|(_, rule)| rule);
        if let Some(filter) = rule.and_then(|r| r.get("filter")).filter(|f| !f.is_null()) {
            query.filter = Some(match query.filter.take().filter(|f| !f.is_null()) {
                None => filter.clone(),
                Some(own) => fuse_filters(own, filter.clone()),
            });
        }
        Ok(())
    }
}

/// Two filters ANDed, in Meilisearch's array form (the outer array is an AND; inner arrays
/// are ORs, so arrays are concatenated rather than nested).
pub fn fuse_filters(left: Value, right: Value) -> Value {
    let parts = |v: Value| match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut all = parts(left);
    all.extend(parts(right));
    Value::Array(all)
}

fn invalid_api_key(message: impl Into<String>) -> MeiliError {
    MeiliError::new(
        StatusCode::FORBIDDEN,
        "invalid_api_key",
        ErrorType::Auth,
        message,
    )
}

/// Meilisearch's answer to a key that may not do what it asks.
pub fn forbidden() -> MeiliError {
    invalid_api_key("The provided API key is invalid.")
}

/// The action Meilisearch requires for a route, or `None` for routes open to any key.
pub fn required_action(method: &Method, route: &str) -> Option<&'static str> {
    let action = match (route, method.as_str()) {
        (
            "/indexes/{uid}/search"
            | "/indexes/{uid}/facet-search"
            | "/indexes/{uid}/similar"
            | "/multi-search",
            _,
        ) => "search",
        ("/indexes/{uid}/documents", "POST" | "PUT") => "documents.add",
        ("/indexes/{uid}/documents" | "/indexes/{uid}/documents/{id}", "GET")
        | ("/indexes/{uid}/documents/fetch", _) => "documents.get",
        ("/indexes/{uid}/documents" | "/indexes/{uid}/documents/{id}", "DELETE")
        | ("/indexes/{uid}/documents/delete-batch" | "/indexes/{uid}/documents/delete", _) => {
            "documents.delete"
        }
        ("/indexes", "POST") => "indexes.create",
        ("/indexes" | "/indexes/{uid}", "GET") => "indexes.get",
        ("/indexes/{uid}", "PATCH") => "indexes.update",
        ("/indexes/{uid}", "DELETE") => "indexes.delete",
        ("/indexes/{uid}/compact", _) => "indexes.compact",
        ("/indexes/{uid}/fields", _) => "fields.post",
        ("/swap-indexes", _) => "indexes.swap",
        ("/dumps", _) => "dumps.create",
        ("/export", _) => "export",
        ("/experimental-features", "GET") => "experimental.get",
        ("/experimental-features", _) => "experimental.update",
        ("/snapshots", _) => "snapshots.create",
        ("/tasks" | "/tasks/{uid}" | "/batches" | "/batches/{uid}", "GET") => "tasks.get",
        ("/tasks/cancel", _) => "tasks.cancel",
        ("/tasks", "DELETE") => "tasks.delete",
        ("/indexes/{uid}/settings" | "/indexes/{uid}/settings/{name}", "GET") => "settings.get",
        ("/indexes/{uid}/settings" | "/indexes/{uid}/settings/{name}", _) => "settings.update",
        ("/stats" | "/indexes/{uid}/stats", _) => "stats.get",
        ("/version", _) => "version",
        ("/keys" | "/keys/{key}", "GET") => "keys.get",
        ("/keys", "POST") => "keys.create",
        ("/keys/{key}", "PATCH") => "keys.update",
        ("/keys/{key}", "DELETE") => "keys.delete",
        ("/chats" | "/chats/{workspace}", "GET") => "chats.get",
        ("/chats/{workspace}", "DELETE") => "chats.delete",
        ("/chats/{workspace}/settings", "GET") => "chatsSettings.get",
        ("/chats/{workspace}/settings", _) => "chatsSettings.update",
        ("/chats/{workspace}/chat/completions", _) => "chatCompletions",
        ("/webhooks" | "/webhooks/{uuid}", "GET") => "webhooks.get",
        ("/webhooks", "POST") => "webhooks.create",
        ("/webhooks/{uuid}", "PATCH") => "webhooks.update",
        ("/webhooks/{uuid}", "DELETE") => "webhooks.delete",
        _ => return None,
    };
    Some(action)
}

/// Meilisearch's credential check for every route but `/health` and Miroir's own; puts
/// the [`Caller`] into the request's extensions.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path == "/health" || path.starts_with("/_miroir/") {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let index = route
        .starts_with("/indexes/{uid}")
        .then(|| path.split('/').nth(2).map(str::to_owned))
        .flatten();
    let token = match bearer_token(request.headers()) {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    let caller = match identify(&state, token) {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let allowed = required_action(request.method(), &route)
        .is_none_or(|action| caller.allows(action, index.as_deref()));
    if !allowed {
        return forbidden().into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The token of `Authorization: Bearer …`, or Meilisearch's 401 without one.
fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, MeiliError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            MeiliError::new(
                StatusCode::UNAUTHORIZED,
                "missing_authorization_header",
                ErrorType::Auth,
                "The Authorization header is missing. It must use the bearer authorization method.",
            )
        })
}

/// The caller behind the request's bearer token, when it is the master key or an admin
/// API key (every action on every index): Miroir's fleet page shows the whole fleet.
pub fn fleet_admin(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Caller, MeiliError> {
    let caller = identify(state, bearer_token(headers)?)?;
    let admin = match &caller {
        Caller::Master => true,
        Caller::Key(key) => {
            key.actions.iter().any(|a| a == "*") && key.indexes.iter().any(|i| i == "*")
        }
        Caller::Tenant { .. } => false,
    };
    if admin {
        Ok(caller)
    } else {
        Err(invalid_api_key(
            "The fleet page needs the master key or an admin API key (actions `*` on indexes `*`).",
        ))
    }
}

/// The caller behind a bearer token.
fn identify(state: &AppState, token: &str) -> Result<Caller, MeiliError> {
    if miroir_proto::keys::same_secret(token.as_bytes(), state.config.master_key.as_bytes()) {
        return Ok(Caller::Master);
    }
    let now_ms = miroir_proto::time::now_ms();
    let live = |key: &pb::ApiKey| key.expires_at_ms.is_none_or(|at| at > now_ms);
    if let Some(key) = state
        .keys
        .find(&state.topology.current(), &state.config.master_key, token)
    {
        return if live(&key) {
            Ok(Caller::Key(key))
        } else {
            Err(forbidden())
        };
    }
    if token.matches('.').count() == 2 {
        return tenant(state, token, now_ms);
    }
    Err(forbidden())
}

/// Verifies a tenant token: a JWT signed (HS256/384/512) with the value of the key named
/// by its `apiKeyUid`, not expired, whose key may search.
fn tenant(state: &AppState, token: &str, now_ms: u64) -> Result<Caller, MeiliError> {
    let invalid = || invalid_api_key("The provided tenant token is invalid.");
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|e| invalid_api_key(format!("Could not decode tenant token, {e}.")))
    };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let header_json: Value = serde_json::from_slice(&decode(header)?)
        .map_err(|e| invalid_api_key(format!("Could not decode tenant token, {e}.")))?;
    let claims: Value = serde_json::from_slice(&decode(payload)?)
        .map_err(|e| invalid_api_key(format!("Could not decode tenant token, {e}.")))?;
    let signature = decode(signature)?;
    let key_uid = claims["apiKeyUid"].as_str().ok_or_else(invalid)?;
    let topology = state.topology.current();
    let key = topology
        .keys
        .iter()
        .find(|k| k.uid == key_uid)
        .ok_or_else(invalid)?;
    if key.expires_at_ms.is_some_and(|at| at <= now_ms) || !action_allows(&key.actions, "search") {
        return Err(invalid());
    }
    let secret = key_value(&state.config.master_key, &key.uid);
    let signed = format!("{header}.{payload}");
    macro_rules! verify {
        ($digest:ty) => {
            Hmac::<$digest>::new_from_slice(secret.as_bytes()).is_ok_and(|mut mac| {
                mac.update(signed.as_bytes());
                mac.verify_slice(&signature).is_ok()
            })
        };
    }
    let verified = match header_json["alg"].as_str() {
        Some("HS256") => verify!(sha2::Sha256),
        Some("HS384") => verify!(sha2::Sha384),
        Some("HS512") => verify!(sha2::Sha512),
        _ => false,
    };
    if !verified {
        return Err(invalid());
    }
    if let Some(exp) = claims.get("exp").filter(|e| !e.is_null()) {
        let exp = exp.as_u64().ok_or_else(invalid)?;
        let now = now_ms / 1000;
        if exp <= now {
            return Err(invalid_api_key(format!(
                "Tenant token expired. Was valid up to `{exp}` and we're now `{now}`."
            )));
        }
    }
    // Rules as a list of index patterns, or a map of pattern → rule.
    let rules = match &claims["searchRules"] {
        Value::Array(patterns) => patterns
            .iter()
            .filter_map(|p| Some((p.as_str()?.to_owned(), Value::Null)))
            .collect(),
        Value::Object(map) => map.clone(),
        _ => return Err(invalid()),
    };
    Ok(Caller::Tenant {
        key: Arc::new(key.clone()),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_fuse_as_one_and() {
        assert_eq!(
            fuse_filters(json!("a = 1"), json!("b = 2")),
            json!(["a = 1", "b = 2"])
        );
        assert_eq!(
            fuse_filters(json!(["a = 1", ["b = 2", "c = 3"]]), json!("d = 4")),
            json!(["a = 1", ["b = 2", "c = 3"], "d = 4"])
        );
    }

    #[test]
    fn the_instances_routes_need_a_key_on_every_index() {
        let key = |indexes: &[&str]| {
            Caller::Key(Arc::new(pb::ApiKey {
                actions: vec!["*".into()],
                indexes: indexes.iter().map(|i| i.to_string()).collect(),
                ..Default::default()
            }))
        };
        let limited = key(&["movies"]);
        assert!(!limited.allows("keys.get", None));
        assert!(!limited.allows("version", None));
        assert!(
            limited.allows("stats.get", None),
            "listings show its own indexes"
        );
        assert!(limited.allows("search", Some("movies")));
        assert!(key(&["*"]).allows("keys.get", None));
    }

    #[test]
    fn tenant_rules_pick_the_most_specific_filter() {
        let key = Arc::new(pb::ApiKey {
            actions: vec!["search".into()],
            indexes: vec!["*".into()],
            ..Default::default()
        });
        let rules = json!({"*": {"filter": "public = true"}, "movies": {"filter": "user = 1"}});
        let caller = Caller::Tenant {
            key,
            rules: rules.as_object().unwrap().clone(),
        };
        let mut query = SearchQuery::default();
        query.filter = Some(json!("genre = drama"));
        caller.restrict_search("movies", &mut query).unwrap();
        assert_eq!(query.filter, Some(json!(["genre = drama", "user = 1"])));
        let mut query = SearchQuery::default();
        caller.restrict_search("books", &mut query).unwrap();
        assert_eq!(query.filter, Some(json!("public = true")));
        assert!(!caller.allows("documents.add", Some("movies")));
    }

    #[test]
    fn routes_need_meilisearch_actions() {
        assert_eq!(
            required_action(&Method::POST, "/indexes/{uid}/documents"),
            Some("documents.add")
        );
        assert_eq!(
            required_action(&Method::GET, "/keys/{key}"),
            Some("keys.get")
        );
        assert_eq!(
            required_action(&Method::DELETE, "/tasks"),
            Some("tasks.delete")
        );
        assert_eq!(
            required_action(&Method::PATCH, "/indexes/{uid}/settings/{name}"),
            Some("settings.update")
        );
    }
}
