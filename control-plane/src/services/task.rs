//! `TaskService`: fleet-wide task uids and the node tasks behind them.

use crate::error::ControlPlaneError;
use crate::state::ServiceState;
use crate::store::{NewTask, TaskFilter};
use miroir_proto::pb;
use miroir_proto::pb::task_service_server::TaskService;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Largest page of tasks.
const MAX_TASK_PAGE: u32 = 1000;

/// Implements `miroir.v1.TaskService`.
pub struct TaskApi {
    state: Arc<ServiceState>,
}

impl TaskApi {
    /// A service over `state`.
    pub fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn start_export(
        &self,
        request: Request<pb::StartExportRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let request = request.into_inner();
        serde_json::from_str::<serde_json::Value>(&request.details_json).map_err(|e| {
            ControlPlaneError::InvalidArgument(format!("details_json is not JSON: {e}"))
        })?;
        let token = self.state.leader_token()?;
        let task = self
            .state
            .store
            .create_task(
                token,
                NewTask {
                    index_uid: None,
                    task_type: "export".into(),
                    node_tasks_json: "[]".into(),
                    details_json: request.details_json.clone(),
                    enqueued_at_ms: request.enqueued_at_ms,
                    error_json: String::new(),
                    cancels: Vec::new(),
                    settings_patch: None,
                    custom_metadata: None,
                    reserve: false,
                    decided: true,
                },
            )
            .await?;
        let task = task.into_proto()?;
        crate::export::start(self.state.clone(), task.uid, request);
        Ok(Response::new(task))
    }

    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(
            record(&self.state, request.into_inner()).await?,
        ))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let uid = request.into_inner().uid;
        let task = self
            .state
            .store
            .get_task(uid)
            .await?
            .ok_or_else(|| ControlPlaneError::task_not_found(uid))?;
        Ok(Response::new(task.into_proto()?))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 20,
            n => n.min(MAX_TASK_PAGE),
        };
        let filter = TaskFilter {
            from: request.from,
            limit,
            index_uids: request.index_uids,
            task_types: request.task_types,
            uids: request.uids,
            reverse: request.reverse,
            canceled_by: request.canceled_by,
            after_enqueued_at_ms: request.after_enqueued_at_ms,
            before_enqueued_at_ms: request.before_enqueued_at_ms,
            statuses: request.statuses,
            started: (request.after_started_at_ms, request.before_started_at_ms),
            finished: (request.after_finished_at_ms, request.before_finished_at_ms),
            unrecorded_only: request.unrecorded_only,
        };
        let page = self.state.store.list_tasks(&filter).await?;
        let more = page.more;
        let tasks = page
            .rows
            .into_iter()
            .map(|row| row.into_proto())
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            tasks.last().map(|t| {
                if request.reverse {
                    t.uid + 1
                } else {
                    t.uid.saturating_sub(1)
                }
            })
        } else {
            None
        };
        Ok(Response::new(pb::ListTasksResponse {
            tasks,
            next,
            total: page.total,
            unrecorded: page.unrecorded,
        }))
    }

    async fn delete_tasks(
        &self,
        request: Request<pb::DeleteTasksRequest>,
    ) -> Result<Response<pb::DeleteTasksResponse>, Status> {
        let token = self.state.leader_token()?;
        let deleted = self
            .state
            .store
            .delete_tasks(token, &request.into_inner().uids)
            .await?;
        Ok(Response::new(pb::DeleteTasksResponse { deleted }))
    }

    async fn record_task_outcome(
        &self,
        request: Request<pb::RecordTaskOutcomeRequest>,
    ) -> Result<Response<pb::RecordTaskOutcomeResponse>, Status> {
        let token = self.state.leader_token()?;
        let request = request.into_inner();
        let (status, times) = check_outcome(request.uid, &request.outcome_json)?;
        let recorded = self
            .state
            .store
            .record_task_outcome(token, request.uid, &request.outcome_json, status, times)
            .await?;
        // Recorded once: the task finished, and webhooks hear of it once.
        if recorded {
            crate::webhooks::deliver(&self.state, request.uid, &request.outcome_json);
        }
        Ok(Response::new(pb::RecordTaskOutcomeResponse { recorded }))
    }

    async fn attach_node_tasks(
        &self,
        request: Request<pb::AttachNodeTasksRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let token = self.state.leader_token()?;
        let request = request.into_inner();
        if !request.error_json.is_empty() {
            serde_json::from_str::<serde_json::Value>(&request.error_json).map_err(|e| {
                ControlPlaneError::InvalidArgument(format!("error_json is not JSON: {e}"))
            })?;
        }
        let node_tasks_json = node_tasks_json(request.node_tasks)?;
        let uid = request.uid;
        let task = self
            .state
            .store
            .attach_node_tasks(token, uid, &node_tasks_json, &request.error_json)
            .await?
            .ok_or_else(|| ControlPlaneError::task_not_found(uid))?;
        Ok(Response::new(task.into_proto()?))
    }
}

/// Node tasks as stored (`tasks.node_tasks`).
fn node_tasks_json(node_tasks: Vec<pb::NodeTask>) -> Result<String, ControlPlaneError> {
    let node_tasks: Vec<crate::store::NodeTaskPersistence> = node_tasks
        .into_iter()
        .map(|t| crate::store::NodeTaskPersistence {
            node_id: t.node_id,
            node_task_uid: t.node_task_uid,
        })
        .collect();
    serde_json::to_string(&node_tasks).map_err(|e| ControlPlaneError::Internal(e.to_string()))
}

/// Start and finish times of an outcome, in ms since the epoch.
type OutcomeTimes = (Option<u64>, Option<u64>);

/// An outcome is the view of task `uid` in a final status (returned, with its start and
/// finish times); anything else would freeze a wrong answer.
fn check_outcome(
    uid: u32,
    outcome: &str,
) -> Result<(&'static str, OutcomeTimes), ControlPlaneError> {
    let view: serde_json::Value = serde_json::from_str(outcome).map_err(|e| {
        ControlPlaneError::InvalidArgument(format!("outcome_json is not JSON: {e}"))
    })?;
    if view["uid"].as_u64() != Some(u64::from(uid)) {
        return Err(ControlPlaneError::InvalidArgument(format!(
            "outcome_json is not the view of task {uid}"
        )));
    }
    let status = match view["status"].as_str() {
        Some("succeeded") => "succeeded",
        Some("failed") => "failed",
        Some("canceled") => "canceled",
        other => {
            return Err(ControlPlaneError::InvalidArgument(format!(
                "outcome_json has status {other:?}: only a finished task's outcome is recorded"
            )));
        }
    };
    let time = |key: &str| {
        view[key]
            .as_str()
            .and_then(miroir_proto::time::parse_rfc3339_ms)
    };
    Ok((status, (time("startedAt"), time("finishedAt"))))
}

/// Allocates a task uid and records `request` (the leader only).
pub async fn record(
    state: &ServiceState,
    request: pb::CreateTaskRequest,
) -> Result<pb::Task, ControlPlaneError> {
    record_with(state, request, None).await
}

/// Records `request` as a settings change's task and queues `patch` (a settings object,
/// JSON) for the two-phase commit, in one transaction.
pub async fn record_settings_change(
    state: &ServiceState,
    request: pb::CreateTaskRequest,
    patch: String,
) -> Result<pb::Task, ControlPlaneError> {
    record_with(state, request, Some(patch)).await
}

async fn record_with(
    state: &ServiceState,
    request: pb::CreateTaskRequest,
    settings_patch: Option<String>,
) -> Result<pb::Task, ControlPlaneError> {
    if request.task_type.trim().is_empty() {
        return Err(ControlPlaneError::InvalidArgument(
            "task_type is required".into(),
        ));
    }
    let details_json = if request.details_json.trim().is_empty() {
        "{}".to_owned()
    } else {
        serde_json::from_str::<serde_json::Value>(&request.details_json).map_err(|e| {
            ControlPlaneError::InvalidArgument(format!("details_json is not JSON: {e}"))
        })?;
        request.details_json
    };
    let node_tasks_json = node_tasks_json(request.node_tasks)?;
    let token = state.leader_token()?;
    let task = state
        .store
        .create_task(
            token,
            NewTask {
                index_uid: request.index_uid,
                task_type: request.task_type,
                node_tasks_json,
                details_json,
                enqueued_at_ms: request.enqueued_at_ms,
                error_json: request.error_json,
                cancels: request.cancels,
                // A settings change is decided by the control plane, never reserved.
                reserve: request.reserve && settings_patch.is_none(),
                decided: false,
                settings_patch,
                custom_metadata: request.custom_metadata,
            },
        )
        .await?;
    task.into_proto()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_finished_view_of_the_same_task_is_an_outcome() {
        for status in ["succeeded", "failed", "canceled"] {
            let view = format!(r#"{{"uid": 4, "status": "{status}"}}"#);
            assert_eq!(check_outcome(4, &view).ok(), Some((status, (None, None))));
        }
        let timed = r#"{"uid": 4, "status": "canceled", "finishedAt": "2026-12-06T06:38:27.851Z"}"#;
        assert_eq!(
            check_outcome(4, timed).ok(),
            Some(("canceled", (None, Some(1_796_539_107_851)))),
            "a task canceled before it started has no start"
        );
        for (uid, view) in [
            (4, r#"{"uid": 4, "status": "processing"}"#),
            (4, r#"{"uid": 4, "status": "enqueued"}"#),
            (4, r#"{"uid": 4}"#),
            (4, r#"{"uid": 5, "status": "succeeded"}"#),
            (4, "not json"),
        ] {
            assert!(check_outcome(uid, view).is_err(), "{view}");
        }
    }
}
