//! The control plane's errors, mapped to gRPC statuses in one place.

use miroir_proto::ServiceErrorCode;
use miroir_proto::error::ServiceError;

/// Everything a control-plane operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
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

/// An error in Meilisearch's shape (`message`, `code`, `type`, `link`), as a failed task
/// carries it; `kind` is Meilisearch's `type` (`invalid_request`, `system`, `internal`).
pub fn meili_error(code: &str, kind: &str, message: impl Into<String>) -> serde_json::Value {
    serde_json::json!({
        "message": message.into(),
        "code": code,
        "type": kind,
        "link": format!("https://docs.meilisearch.com/errors#{code}"),
    })
}

impl ServiceError for ControlPlaneError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::InvalidArgument(_) => ServiceErrorCode::InvalidArgument,
            Self::NotFound(_) => ServiceErrorCode::NotFound,
            Self::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) => ServiceErrorCode::FailedPrecondition,
            Self::ResourceExhausted(_) => ServiceErrorCode::ResourceExhausted,
            Self::Unavailable(_) | Self::NotLeader(_) | Self::Store { .. } => {
                ServiceErrorCode::Unavailable
            }
            Self::Fenced { .. } => ServiceErrorCode::Aborted,
            Self::Internal(_) => ServiceErrorCode::Internal,
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
