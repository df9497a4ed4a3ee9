//! Error codes shared by every Miroir service, each mapped once to a gRPC code and an
//! HTTP status so the control plane, the gateway and the CLI agree on what went wrong.

use http::StatusCode;

/// The classes of failure a Miroir service reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceErrorCode {
    /// The caller's input is malformed.
    InvalidArgument,
    /// The thing named does not exist.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The request is valid but the cluster's state does not allow it now.
    FailedPrecondition,
    /// A limit was reached (e.g. task uids exhausted).
    ResourceExhausted,
    /// The service (or its leader, store or a node) cannot be reached now; retry.
    Unavailable,
    /// The request came from a deposed leader or used stale state.
    Aborted,
    /// A bug or an unexpected failure.
    Internal,
}

impl ServiceErrorCode {
    /// The gRPC status code for this error.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Aborted => tonic::Code::Aborted,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists => StatusCode::CONFLICT,
            Self::FailedPrecondition => StatusCode::CONFLICT,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Aborted => StatusCode::CONFLICT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code of a gRPC status received from another Miroir process.
    pub fn from_grpc_code(code: tonic::Code) -> Self {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Self::InvalidArgument,
            tonic::Code::NotFound => Self::NotFound,
            tonic::Code::AlreadyExists => Self::AlreadyExists,
            tonic::Code::FailedPrecondition => Self::FailedPrecondition,
            tonic::Code::ResourceExhausted => Self::ResourceExhausted,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Self::Unavailable,
            tonic::Code::Aborted => Self::Aborted,
            _ => Self::Internal,
        }
    }
}

/// An error that knows its [`ServiceErrorCode`].
pub trait ServiceError: std::error::Error {
    /// The class of this error.
    fn error_code(&self) -> ServiceErrorCode;

    /// The error as a gRPC status with a readable message.
    fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.error_code().grpc_code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_round_trip() {
        for code in [
            ServiceErrorCode::InvalidArgument,
            ServiceErrorCode::NotFound,
            ServiceErrorCode::AlreadyExists,
            ServiceErrorCode::FailedPrecondition,
            ServiceErrorCode::ResourceExhausted,
            ServiceErrorCode::Unavailable,
            ServiceErrorCode::Aborted,
            ServiceErrorCode::Internal,
        ] {
            assert_eq!(ServiceErrorCode::from_grpc_code(code.grpc_code()), code);
        }
        assert_eq!(
            ServiceErrorCode::NotFound.http_status(),
            StatusCode::NOT_FOUND
        );
    }
}
