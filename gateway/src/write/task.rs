//! The task of a write, recorded before its nodes are written (DESIGN §6: a write the
//! nodes took always has a task to follow): the control plane reserves the uid, the
//! nodes are written, then the node tasks (or the error that failed the write) are
//! attached. If the control plane cannot be reached to attach them, the client still
//! gets its task uid and the gateway keeps trying in the background; a reservation
//! nobody attaches is failed by the control plane after `--task-reservation-timeout`.
//! Also the answers a write gives: `202` with the task, or a task failed before any node.

use crate::api::error::MeiliError;
use crate::state::AppState;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::ErrorCode;
use miroir_proto::pb;
use serde_json::Value;
use std::time::Duration;

/// How long a gateway keeps trying to attach node tasks in the background: well within
/// the control plane's default `--task-reservation-timeout` (10 min).
const ATTACH_RETRY_FOR: Duration = Duration::from_secs(300);

/// Records a client task through the control plane.
pub async fn record_task(
    state: &AppState,
    request: pb::CreateTaskRequest,
) -> Result<pb::Task, MeiliError> {
    state
        .control_plane
        .create_task(request)
        .await
        .map_err(|s| MeiliError::from_status(&s))
}

/// `202 Accepted` with the task's summary, as Meilisearch answers a write.
pub fn accepted(task: &pb::Task) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(crate::tasks::view::summary(task)),
    )
        .into_response()
}

/// The error for an answer without the task the control plane should have recorded.
pub(crate) fn no_task() -> MeiliError {
    MeiliError::internal("the control plane recorded no task")
}

/// Records a task that failed before reaching any node, as Meilisearch reports failures
/// of asynchronous operations: 202 now, a failed task later.
pub async fn failed_task(
    state: &AppState,
    index_uid: &str,
    task_type: &str,
    details: Value,
    error: MeiliError,
) -> Result<Response, MeiliError> {
    let request = pb::CreateTaskRequest {
        index_uid: Some(index_uid.to_owned()),
        task_type: task_type.to_owned(),
        node_tasks: Vec::new(),
        details_json: details.to_string(),
        enqueued_at_ms: miroir_proto::time::now_ms(),
        error_json: error.body().to_string(),
        cancels: Vec::new(),
        custom_metadata: None,
        reserve: false,
    };
    Ok(accepted(&record_task(state, request).await?))
}

/// Reserves the task of a write about to be sent to nodes.
pub async fn reserve(
    state: &AppState,
    mut request: pb::CreateTaskRequest,
) -> Result<pb::Task, MeiliError> {
    request.reserve = true;
    request.node_tasks.clear();
    let index = request.index_uid.clone();
    let task = record_task(state, request).await?;
    // Before any node sees the write: the result cache's mark (`read::cache`).
    if let Some(uid) = index
        && let Err(error) = crate::read::cache::write_started(state, &uid, task.uid).await
    {
        attach_to_control_plane(state, task, Vec::new(), Some(&error.body())).await;
        return Err(error);
    }
    Ok(task)
}

/// Attaches what the write made (node tasks, and the error when it failed) to its
/// reserved task; the task to answer with. While the control plane cannot be reached (a
/// leader's failover) it tries again for up to `--task-attach-wait` before answering:
/// a task left for the background would be failed as unattached if this gateway stopped
/// before attaching it, though the nodes took the write (the chaos run found one).
pub async fn attach(
    state: &AppState,
    reserved: pb::Task,
    node_tasks: Vec<pb::NodeTask>,
    error: Option<&Value>,
) -> pb::Task {
    let task = attach_to_control_plane(state, reserved, node_tasks, error).await;
    // The result cache's mark is cleared once every node finished the write.
    crate::read::cache::watch_write(state, &task, error);
    task
}

async fn attach_to_control_plane(
    state: &AppState,
    mut reserved: pb::Task,
    node_tasks: Vec<pb::NodeTask>,
    error: Option<&Value>,
) -> pb::Task {
    let request = pb::AttachNodeTasksRequest {
        uid: reserved.uid,
        node_tasks: node_tasks.clone(),
        error_json: error.map(Value::to_string).unwrap_or_default(),
    };
    let deadline = tokio::time::Instant::now() + state.config.task_attach_wait;
    let mut pause = Duration::from_millis(100);
    let attached = loop {
        match state.control_plane.attach_node_tasks(request.clone()).await {
            Err(status)
                if ErrorCode::of(&status) == ErrorCode::ControlPlaneUnavailable
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            attached => break attached,
        }
    };
    match attached {
        Ok(task) => task,
        Err(status) => {
            tracing::warn!(
                task = reserved.uid,
                error = %status.message(),
                "node tasks not attached yet: retrying in the background"
            );
            tokio::spawn(retry_attach(state.clone(), request));
            reserved.node_tasks = node_tasks;
            reserved
        }
    }
}

/// Retries attaching with a backoff (250 ms doubling to 30 s) for [`ATTACH_RETRY_FOR`].
async fn retry_attach(state: AppState, request: pb::AttachNodeTasksRequest) {
    let deadline = tokio::time::Instant::now() + ATTACH_RETRY_FOR;
    let mut pause = Duration::from_millis(250);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        match state.control_plane.attach_node_tasks(request.clone()).await {
            Ok(_) => {
                tracing::info!(task = request.uid, "node tasks attached");
                return;
            }
            Err(status) if ErrorCode::of(&status) == ErrorCode::TaskNotFound => return,
            Err(status) => {
                tracing::debug!(task = request.uid, error = %status.message(), "node tasks still not attached");
            }
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
    tracing::error!(
        task = request.uid,
        "node tasks never attached: the control plane will fail this task after its reservation timeout"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::GatewayState;

    fn request() -> pb::CreateTaskRequest {
        pb::CreateTaskRequest {
            index_uid: Some("i".into()),
            task_type: "documentAdditionOrUpdate".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn nothing_is_written_without_a_reserved_task() {
        // The control plane of a test gateway listens nowhere.
        let state = GatewayState::for_tests(pb::Topology::default());
        let error = reserve(&state, request()).await.unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_control_plane_unavailable"
            )
        );
    }

    #[tokio::test]
    async fn a_write_the_nodes_took_is_answered_with_its_task_even_when_attaching_waits() {
        let state = GatewayState::for_tests(pb::Topology::default());
        let reserved = pb::Task {
            uid: 7,
            index_uid: Some("i".into()),
            task_type: "documentAdditionOrUpdate".into(),
            status: Some("reserved".into()),
            ..Default::default()
        };
        let node_task = pb::NodeTask {
            node_id: "a".into(),
            node_task_uid: 3,
        };
        let task = attach(&state, reserved, vec![node_task.clone()], None).await;
        assert_eq!((task.uid, task.node_tasks), (7, vec![node_task]));
        let response = accepted(&pb::Task {
            uid: 7,
            ..Default::default()
        });
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let summary: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(summary["taskUid"], 7);
    }
}
