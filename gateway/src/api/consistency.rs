//! Settings consistency as clients see it: `X-Miroir-Settings-Version: N` on responses
//! about an index with committed settings, `X-Miroir-Settings-Inconsistent: true` while a
//! change is between propose and commit, and the read floor a client sets with
//! `X-Miroir-Min-Settings-Version: N` (reads then avoid nodes not verified at N or later).

use super::error::MeiliError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use std::collections::HashSet;

/// The committed settings version of the index a response is about.
pub const SETTINGS_VERSION: &str = "x-miroir-settings-version";
/// Present (`true`) while the index's settings change is between propose and commit.
pub const SETTINGS_INCONSISTENT: &str = "x-miroir-settings-inconsistent";
/// The settings version a read must see at least.
pub const MIN_SETTINGS_VERSION: &str = "x-miroir-min-settings-version";

/// The request's `X-Miroir-Min-Settings-Version` (0: none): put in the request's
/// extensions by [`settings_headers`], taken by the handlers that read from nodes and
/// handed to every read plan they make, on whatever task runs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsFloor(pub u64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SettingsFloor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<SettingsFloor>()
            .copied()
            .unwrap_or_default())
    }
}

/// Nodes holding `index` that are not verified at settings version `floor` or later.
pub fn nodes_behind(index: &pb::Index, floor: u64) -> HashSet<String> {
    if floor == 0 {
        return HashSet::new();
    }
    index
        .routing
        .iter()
        .flat_map(|g| &g.shards)
        .flat_map(|s| s.read_nodes.iter().chain(&s.write_nodes))
        .filter(|node| {
            !index
                .node_settings
                .iter()
                .any(|v| &v.node_id == *node && v.version >= floor)
        })
        .cloned()
        .collect()
}

/// The index uid of an `/indexes/{uid}…` path.
fn index_of_path(path: &str) -> Option<&str> {
    path.strip_prefix("/indexes/")?
        .split('/')
        .next()
        .filter(|uid| !uid.is_empty())
}

/// Reads the floor header, runs the request under it and marks the response.
pub async fn settings_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let floor = match request.headers().get(MIN_SETTINGS_VERSION) {
        None => 0,
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(floor) => floor,
            None => {
                return MeiliError::invalid(
                    "bad_request",
                    format!(
                        "`X-Miroir-Min-Settings-Version` must be a non-negative integer, got `{}`.",
                        String::from_utf8_lossy(value.as_bytes())
                    ),
                )
                .into_response();
            }
        },
    };
    let uid = index_of_path(request.uri().path()).map(str::to_owned);
    let mut request = request;
    request.extensions_mut().insert(SettingsFloor(floor));
    let mut response = next.run(request).await;
    if let Some(uid) = uid {
        let topology = state.topology.current();
        if let Some(index) = topology.indexes.iter().find(|i| i.uid == uid) {
            let headers = response.headers_mut();
            if index.settings_version > 0 {
                headers.insert(SETTINGS_VERSION, HeaderValue::from(index.settings_version));
            }
            if index.pending_settings.is_some() {
                headers.insert(SETTINGS_INCONSISTENT, HeaderValue::from_static("true"));
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_index() {
        assert_eq!(index_of_path("/indexes/movies/search"), Some("movies"));
        assert_eq!(index_of_path("/indexes/movies"), Some("movies"));
        assert_eq!(index_of_path("/indexes/"), None);
        assert_eq!(index_of_path("/multi-search"), None);
    }

    #[test]
    fn nodes_behind_the_floor() {
        let index = pb::Index {
            routing: vec![pb::GroupRouting {
                group_id: 0,
                shards: vec![pb::ShardRoute {
                    shard: 0,
                    read_nodes: vec!["a".into(), "b".into()],
                    write_nodes: vec!["a".into(), "b".into()],
                    blocked: false,
                    stale_nodes: Vec::new(),
                }],
            }],
            settings_version: 3,
            node_settings: vec![
                pb::NodeSettingsVersion {
                    node_id: "a".into(),
                    version: 3,
                },
                pb::NodeSettingsVersion {
                    node_id: "b".into(),
                    version: 2,
                },
            ],
            ..Default::default()
        };
        assert!(nodes_behind(&index, 0).is_empty());
        assert_eq!(nodes_behind(&index, 3), HashSet::from(["b".to_owned()]));
        assert_eq!(nodes_behind(&index, 4).len(), 2);
    }
}
