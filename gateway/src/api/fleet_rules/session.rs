//! Read-your-writes sessions (`X-Miroir-Session`): a write's task is remembered for its
//! session, and a read in the session first waits for that task to finish.

use super::{SESSION, buffered, credential, header_text, is_read};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use std::time::{Duration, Instant};

/// Waits before a read of a session; remembers a session's write.
pub async fn session(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(session) = header_text(&request, SESSION) else {
        return next.run(request).await;
    };
    let session = format!("{}:{session}", credential(&request));
    if is_read(request.method(), request.uri().path()) {
        wait_for_session(&state, &session).await;
        return next.run(request).await;
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::ACCEPTED {
        return response;
    }
    let (response, answer) = buffered(response).await;
    if let Some(answer) = answer {
        record_session(&state, &session, &answer).await;
    }
    response
}

/// Remembers the task of a session's write, from its `202` answer.
async fn record_session(state: &AppState, session: &str, answer: &str) {
    let task_uid = serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|a| a["taskUid"].as_u64());
    if let Some(uid) = task_uid {
        state.fleet.session_wrote(session, uid as u32).await;
    }
}

/// Waits until the session's last write task finished (bounded by `--node-timeout`).
async fn wait_for_session(state: &AppState, session: &str) {
    let Some(uid) = state.fleet.session_last_write(session).await else {
        return;
    };
    let deadline = Instant::now() + state.config.node_timeout;
    while Instant::now() < deadline {
        let Ok(task) = state
            .control_plane
            .get_task(miroir_proto::pb::GetTaskRequest { uid })
            .await
        else {
            return;
        };
        let view = crate::tasks::view::view(&task, &state.topology.current(), &state.nodes).await;
        if view["status"]
            .as_str()
            .is_some_and(crate::tasks::view::is_final)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tracing::warn!(
        task = uid,
        "session read went ahead before its write finished"
    );
}
