//! Index aliases: a request that names an alias — in its path (`/indexes/{alias}/…`) or in
//! a task filter (`indexUids=`) — is routed as if it named the alias's index. The name
//! is resolved before routing, under a pin of the topology version it was resolved at,
//! held until the request is answered: the control plane's switch (alias marked
//! `switching`, barrier, alias moved, barrier) then knows that no request resolved by the
//! old target is still running once its first barrier passed. While an alias is
//! switching, requests through it wait for the version that moves it (at most
//! `--cutover-write-wait`). Multi-search queries resolve their `indexUid` in their
//! handler ([`index_of`]).

use super::error::MeiliError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use miroir_proto::ErrorType;
use miroir_proto::pb;

/// The index `name` stands for: an alias's index, else `name` itself.
pub fn index_of<'a>(topology: &'a pb::Topology, name: &'a str) -> &'a str {
    topology
        .aliases
        .iter()
        .find(|a| a.name == name)
        .map_or(name, |a| a.index_uid.as_str())
}

/// Routes requests through aliases to their indexes (a middleware in front of routing).
pub async fn resolve(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // The common case costs one look at the served snapshot.
    if state.topology.current().aliases.is_empty() {
        return next.run(request).await;
    }
    let deadline = tokio::time::Instant::now() + state.config.cutover_write_wait;
    loop {
        let (pin, topology) = state.topology.pin();
        let Some((uri, used)) = rewrite(request.uri(), &topology.aliases) else {
            drop(pin);
            return next.run(request).await;
        };
        if let Some(switching) = used.iter().find(|a| a.switching) {
            drop(pin);
            if !state
                .topology
                .wait_for_newer(topology.version, deadline)
                .await
            {
                return MeiliError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "miroir_alias_switching",
                    ErrorType::System,
                    format!(
                        "alias `{}` is being switched to another index and the switch did not finish within {}; retry",
                        switching.name,
                        humantime::format_duration(state.config.cutover_write_wait)
                    ),
                )
                .into_response();
            }
            continue;
        }
        if request.method() == Method::DELETE
            && let Some(alias) = used.first()
            && request.uri().path().trim_end_matches('/') == format!("/indexes/{}", alias.name)
        {
            return MeiliError::invalid(
                "miroir_alias_not_deletable",
                format!(
                    "`{}` is an alias of index `{}`: delete the index by its own uid, or remove the alias (`miroir-ctl alias remove {}`).",
                    alias.name, alias.index_uid, alias.name
                ),
            )
            .into_response();
        }
        *request.uri_mut() = uri;
        let response = next.run(request).await;
        drop(pin);
        return response;
    }
}

/// `uri` with the aliases it names replaced by their indexes, and the aliases used; `None`
/// when it names none.
fn rewrite<'a>(uri: &Uri, aliases: &'a [pb::IndexAlias]) -> Option<(Uri, Vec<&'a pb::IndexAlias>)> {
    let find = |name: &str| aliases.iter().find(|a| a.name == name);
    let path = uri.path();
    let mut used = Vec::new();
    let mut new_path = None;
    if let Some(rest) = path.strip_prefix("/indexes/") {
        let (name, tail) = rest.split_once('/').map_or((rest, ""), |(n, t)| (n, t));
        if let Some(alias) = find(name) {
            used.push(alias);
            let slash = if rest.contains('/') { "/" } else { "" };
            new_path = Some(format!("/indexes/{}{slash}{tail}", alias.index_uid));
        }
    }
    let mut new_query = None;
    if matches!(path, "/tasks" | "/tasks/cancel" | "/batches")
        && let Some(query) = uri.query()
    {
        let mut changed = false;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(key, value)| {
                if key != "indexUids" {
                    return (key.into_owned(), value.into_owned());
                }
                let names: Vec<&str> = value
                    .split(',')
                    .map(|name| match find(name.trim()) {
                        Some(alias) => {
                            changed = true;
                            used.push(alias);
                            alias.index_uid.as_str()
                        }
                        None => name,
                    })
                    .collect();
                (key.into_owned(), names.join(","))
            })
            .collect();
        if changed {
            new_query = Some(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish(),
            );
        }
    }
    if used.is_empty() {
        return None;
    }
    let path = new_path.as_deref().unwrap_or(path);
    let path_and_query = match new_query.as_deref().or(uri.query()) {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Some((Uri::from_parts(parts).ok()?, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> Vec<pb::IndexAlias> {
        vec![
            pb::IndexAlias {
                name: "movies".into(),
                index_uid: "movies_v2".into(),
                switching: false,
            },
            pb::IndexAlias {
                name: "books".into(),
                index_uid: "books_1".into(),
                switching: true,
            },
        ]
    }

    fn rewritten(uri: &str) -> Option<(String, Vec<String>)> {
        let aliases = aliases();
        rewrite(&uri.parse().unwrap(), &aliases).map(|(uri, used)| {
            (
                uri.to_string(),
                used.iter().map(|a| a.name.clone()).collect(),
            )
        })
    }

    #[test]
    fn paths_and_task_filters_naming_an_alias_name_its_index() {
        assert_eq!(
            rewritten("/indexes/movies/search?q=a"),
            Some((
                "/indexes/movies_v2/search?q=a".into(),
                vec!["movies".into()]
            ))
        );
        assert_eq!(
            rewritten("/indexes/movies"),
            Some(("/indexes/movies_v2".into(), vec!["movies".into()]))
        );
        assert_eq!(
            rewritten("/indexes/movies/settings/ranking-rules"),
            Some((
                "/indexes/movies_v2/settings/ranking-rules".into(),
                vec!["movies".into()]
            ))
        );
        assert_eq!(
            rewritten("/tasks?indexUids=movies,other&limit=2"),
            Some((
                "/tasks?indexUids=movies_v2%2Cother&limit=2".into(),
                vec!["movies".into()]
            ))
        );
        assert_eq!(
            rewritten("/tasks?indexUids=books"),
            Some(("/tasks?indexUids=books_1".into(), vec!["books".into()]))
        );
    }

    #[test]
    fn other_names_and_routes_are_left_alone() {
        assert_eq!(rewritten("/indexes/movies_v2/search"), None);
        assert_eq!(rewritten("/indexes/moviesX/search"), None);
        assert_eq!(rewritten("/indexes"), None);
        assert_eq!(rewritten("/tasks?indexUids=other"), None);
        assert_eq!(rewritten("/keys/movies"), None);
        assert_eq!(rewritten("/multi-search"), None);
    }

    #[test]
    fn an_alias_stands_for_its_index() {
        let topology = pb::Topology {
            aliases: aliases(),
            ..Default::default()
        };
        assert_eq!(index_of(&topology, "movies"), "movies_v2");
        assert_eq!(index_of(&topology, "movies_v2"), "movies_v2");
        assert_eq!(index_of(&topology, "other"), "other");
    }
}
