//! The control plane's errors, mapped to gRPC statuses in one place.

use miroir_proto::error::ServiceError;
use miroir_proto::{ErrorCode, ErrorType};

/// Everything a control-plane operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The index uid is not one Meilisearch accepts.
    #[error("{0}")]
    InvalidIndexUid(String),
    /// A node, group, move or operation named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The node, group or webhook to add exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The index does not exist.
    #[error("{0}")]
    IndexNotFound(String),
    /// The index to create, or to rename to, exists already; the message is Meilisearch's.
    #[error("{0}")]
    IndexAlreadyExists(String),
    /// The index has another primary key already.
    #[error("{0}")]
    PrimaryKeyAlreadyExists(String),
    /// The API key does not exist.
    #[error("{0}")]
    ApiKeyNotFound(String),
    /// An API key with this uid exists already.
    #[error("{0}")]
    ApiKeyAlreadyExists(String),
    /// The task does not exist.
    #[error("{0}")]
    TaskNotFound(String),
    /// The webhook does not exist.
    #[error("{0}")]
    WebhookNotFound(String),
    /// Meilisearch's limit on webhooks is reached.
    #[error("{0}")]
    TooManyWebhooks(String),
    /// The cluster's current state does not allow the change.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The change cannot be made now; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// This control plane is not the leader, or lost the lease, so it cannot commit.
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// A write was made with a fencing token that is no longer current.
    #[error(
        "fenced: this control plane's leader term (fencing token {ours}) ended; the current token is {current}"
    )]
    Fenced {
        /// The token this process holds.
        ours: u64,
        /// The token in the store.
        current: u64,
    },
    /// The store failed.
    #[error("store error during {operation}: {source}")]
    Store {
        /// The store operation that failed.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// A bug or unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ControlPlaneError {
    /// Meilisearch's `index_not_found` for `uid`.
    pub fn index_not_found(uid: &str) -> Self {
        Self::IndexNotFound(format!("Index `{uid}` not found."))
    }

    /// Meilisearch's `api_key_not_found` for `uid`.
    pub fn api_key_not_found(uid: &str) -> Self {
        Self::ApiKeyNotFound(format!("API key `{uid}` not found."))
    }

    /// This error as a failed task carries it, in Meilisearch's shape.
    pub fn meili_body(&self) -> serde_json::Value {
        self.error_code().meili_body(&self.to_string())
    }

    /// Meilisearch's `task_not_found` for `uid`.
    pub fn task_not_found(uid: impl std::fmt::Display) -> Self {
        Self::TaskNotFound(format!("Task `{uid}` not found."))
    }
}

/// An error in Meilisearch's shape (`message`, `code`, `type`, `link`), as a failed task
/// carries it.
pub fn meili_error(code: &str, kind: ErrorType, message: impl Into<String>) -> serde_json::Value {
    miroir_proto::error::meili_error_body(code, kind, &message.into())
}

impl ServiceError for ControlPlaneError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::InvalidIndexUid(_) => ErrorCode::InvalidIndexUid,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::IndexNotFound(_) => ErrorCode::IndexNotFound,
            Self::IndexAlreadyExists(_) => ErrorCode::IndexAlreadyExists,
            Self::PrimaryKeyAlreadyExists(_) => ErrorCode::IndexPrimaryKeyAlreadyExists,
            Self::ApiKeyNotFound(_) => ErrorCode::ApiKeyNotFound,
            Self::ApiKeyAlreadyExists(_) => ErrorCode::ApiKeyAlreadyExists,
            Self::TaskNotFound(_) => ErrorCode::TaskNotFound,
            Self::WebhookNotFound(_) => ErrorCode::WebhookNotFound,
            Self::TooManyWebhooks(_) => ErrorCode::InvalidWebhooks,
            Self::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Self::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            Self::Unavailable(_) | Self::NotLeader(_) | Self::Store { .. } => {
                ErrorCode::ControlPlaneUnavailable
            }
            Self::Fenced { .. } => ErrorCode::Fenced,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<ControlPlaneError> for tonic::Status {
    fn from(error: ControlPlaneError) -> Self {
        if matches!(
            error,
            ControlPlaneError::Internal(_) | ControlPlaneError::Store { .. }
        ) {
            tracing::error!(%error, "request failed");
        }
        error.to_status()
    }
}

/// Shorthand for control-plane results.
pub type Result<T, E = ControlPlaneError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_error_code_and_failed_tasks_its_meilisearch_error() {
        let status = tonic::Status::from(ControlPlaneError::index_not_found("movies"));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(ErrorCode::of(&status), ErrorCode::IndexNotFound);
        assert_eq!(status.message(), "Index `movies` not found.");
        let status = tonic::Status::from(ControlPlaneError::NotLeader("b leads".into()));
        assert_eq!(ErrorCode::of(&status), ErrorCode::ControlPlaneUnavailable);
        let body = ControlPlaneError::PrimaryKeyAlreadyExists("has `id`".into()).meili_body();
        assert_eq!(body["code"], "index_primary_key_already_exists");
        assert_eq!(body["type"], "invalid_request");
    }
}
