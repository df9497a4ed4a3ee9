//! `POST /dumps` and `POST /snapshots`: every node of the fleet makes its own, under one
//! client task that succeeds when all of them did. A node's dump or snapshot holds its
//! own shard copies; restoring a fleet is restoring each node from its own, with the
//! control plane's store from the same time (docs/operations.md).

use super::error::MeiliError;
use super::tasks::on_every_node;
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

/// `POST /dumps`: a `dumpCreation` task; once it succeeded, `details.miroirDumpUids` names
/// each node's dump (`dumpUid` stays null: there is no one dump).
pub async fn create_dump(State(state): State<AppState>) -> Result<Response, MeiliError> {
    on_every_node(
        &state,
        None,
        "/dumps",
        "dumpCreation",
        json!({"dumpUid": null}),
    )
    .await
}

/// `POST /snapshots`: a `snapshotCreation` task.
pub async fn create_snapshot(State(state): State<AppState>) -> Result<Response, MeiliError> {
    on_every_node(&state, None, "/snapshots", "snapshotCreation", Value::Null).await
}
