//! Miroir's error codes. A control plane puts the code of every error it answers in the
//! gRPC status details (a `google.rpc.ErrorInfo` in domain [`ERROR_DOMAIN`]), so the
//! gateway and the CLI learn what went wrong without matching messages or gRPC codes;
//! [`ErrorCode::spec`] maps each code, once, to its gRPC code, HTTP status and
//! Meilisearch `code` and `type`.

use http::StatusCode;
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of the `ErrorInfo` Miroir puts in its gRPC statuses.
pub const ERROR_DOMAIN: &str = "miroir.dev";

/// Meilisearch's error types (an error's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The request is wrong.
    InvalidRequest,
    /// The server failed.
    Internal,
    /// Credentials are missing or wrong.
    Auth,
    /// A node, the control plane or the gateway is unavailable.
    System,
}

impl ErrorType {
    /// The name Meilisearch gives this type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Internal => "internal",
            Self::Auth => "auth",
            Self::System => "system",
        }
    }
}

/// An error in Meilisearch's shape (`message`, `code`, `type`, `link`), as answers and
/// failed tasks carry it; Miroir's own codes (`miroir_…`) link to Miroir's docs.
pub fn meili_error_body(code: &str, kind: ErrorType, message: &str) -> serde_json::Value {
    let link = if code.starts_with("miroir_") {
        format!("https://github.com/miroir/miroir/blob/main/docs/errors.md#{code}")
    } else {
        format!("https://docs.meilisearch.com/errors#{code}")
    };
    serde_json::json!({
        "message": message,
        "code": code,
        "type": kind.as_str(),
        "link": link,
    })
}

/// What a Miroir service's error means, machine-readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The caller's input is malformed.
    InvalidArgument,
    /// The index uid is not one Meilisearch accepts.
    InvalidIndexUid,
    /// The index does not exist.
    IndexNotFound,
    /// The index to create (or rename to) exists already.
    IndexAlreadyExists,
    /// The index has a primary key already, and another was given.
    IndexPrimaryKeyAlreadyExists,
    /// The API key does not exist.
    ApiKeyNotFound,
    /// An API key with this uid exists already.
    ApiKeyAlreadyExists,
    /// The task does not exist.
    TaskNotFound,
    /// The webhook does not exist.
    WebhookNotFound,
    /// The webhook cannot be added (Meilisearch's limit on webhooks).
    InvalidWebhooks,
    /// A node, group or operation named does not exist.
    NotFound,
    /// The node, group or webhook to add exists already.
    AlreadyExists,
    /// The fleet's state does not allow the change now (no group yet, a move in
    /// progress, too few nodes); it may once the fleet changes.
    FailedPrecondition,
    /// A limit was reached (e.g. task uids exhausted).
    ResourceExhausted,
    /// The control plane (its leader or its store) cannot answer now; retry.
    ControlPlaneUnavailable,
    /// The request reached a deposed leader; retry.
    Fenced,
    /// A bug or an unexpected failure.
    Internal,
}

/// How one [`ErrorCode`] is answered on each wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorSpec {
    /// The gRPC status code.
    pub grpc: tonic::Code,
    /// The HTTP status.
    pub http: StatusCode,
    /// The Meilisearch error `code`.
    pub meili_code: &'static str,
    /// The Meilisearch error `type`.
    pub meili_type: ErrorType,
}

const fn spec(
    grpc: tonic::Code,
    http: StatusCode,
    meili_code: &'static str,
    meili_type: ErrorType,
) -> ErrorSpec {
    ErrorSpec {
        grpc,
        http,
        meili_code,
        meili_type,
    }
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [Self; 17] = [
        Self::InvalidArgument,
        Self::InvalidIndexUid,
        Self::IndexNotFound,
        Self::IndexAlreadyExists,
        Self::IndexPrimaryKeyAlreadyExists,
        Self::ApiKeyNotFound,
        Self::ApiKeyAlreadyExists,
        Self::TaskNotFound,
        Self::WebhookNotFound,
        Self::InvalidWebhooks,
        Self::NotFound,
        Self::AlreadyExists,
        Self::FailedPrecondition,
        Self::ResourceExhausted,
        Self::ControlPlaneUnavailable,
        Self::Fenced,
        Self::Internal,
    ];

    /// The one mapping of a code to its gRPC code, HTTP status and Meilisearch error.
    pub const fn spec(self) -> ErrorSpec {
        use ErrorType::{Internal, InvalidRequest, System};
        use tonic::Code;
        match self {
            Self::InvalidArgument => spec(
                Code::InvalidArgument,
                StatusCode::BAD_REQUEST,
                "bad_request",
                InvalidRequest,
            ),
            Self::InvalidIndexUid => spec(
                Code::InvalidArgument,
                StatusCode::BAD_REQUEST,
                "invalid_index_uid",
                InvalidRequest,
            ),
            Self::IndexNotFound => spec(
                Code::NotFound,
                StatusCode::NOT_FOUND,
                "index_not_found",
                InvalidRequest,
            ),
            Self::IndexAlreadyExists => spec(
                Code::AlreadyExists,
                StatusCode::CONFLICT,
                "index_already_exists",
                InvalidRequest,
            ),
            Self::IndexPrimaryKeyAlreadyExists => spec(
                Code::FailedPrecondition,
                StatusCode::BAD_REQUEST,
                "index_primary_key_already_exists",
                InvalidRequest,
            ),
            Self::ApiKeyNotFound => spec(
                Code::NotFound,
                StatusCode::NOT_FOUND,
                "api_key_not_found",
                InvalidRequest,
            ),
            Self::ApiKeyAlreadyExists => spec(
                Code::AlreadyExists,
                StatusCode::CONFLICT,
                "api_key_already_exists",
                InvalidRequest,
            ),
            Self::TaskNotFound => spec(
                Code::NotFound,
                StatusCode::NOT_FOUND,
                "task_not_found",
                InvalidRequest,
            ),
            Self::WebhookNotFound => spec(
                Code::NotFound,
                StatusCode::NOT_FOUND,
                "webhook_not_found",
                InvalidRequest,
            ),
            Self::InvalidWebhooks => spec(
                Code::ResourceExhausted,
                StatusCode::BAD_REQUEST,
                "invalid_webhooks",
                InvalidRequest,
            ),
            Self::NotFound => spec(
                Code::NotFound,
                StatusCode::NOT_FOUND,
                "miroir_not_found",
                InvalidRequest,
            ),
            Self::AlreadyExists => spec(
                Code::AlreadyExists,
                StatusCode::CONFLICT,
                "miroir_already_exists",
                InvalidRequest,
            ),
            Self::FailedPrecondition => spec(
                Code::FailedPrecondition,
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_fleet_not_ready",
                System,
            ),
            Self::ResourceExhausted => spec(
                Code::ResourceExhausted,
                StatusCode::TOO_MANY_REQUESTS,
                "miroir_resource_exhausted",
                System,
            ),
            Self::ControlPlaneUnavailable => spec(
                Code::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_control_plane_unavailable",
                System,
            ),
            Self::Fenced => spec(
                Code::Aborted,
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_fenced",
                System,
            ),
            Self::Internal => spec(
                Code::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                Internal,
            ),
        }
    }

    /// The name this code travels under in a status's `ErrorInfo.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::InvalidIndexUid => "INVALID_INDEX_UID",
            Self::IndexNotFound => "INDEX_NOT_FOUND",
            Self::IndexAlreadyExists => "INDEX_ALREADY_EXISTS",
            Self::IndexPrimaryKeyAlreadyExists => "INDEX_PRIMARY_KEY_ALREADY_EXISTS",
            Self::ApiKeyNotFound => "API_KEY_NOT_FOUND",
            Self::ApiKeyAlreadyExists => "API_KEY_ALREADY_EXISTS",
            Self::TaskNotFound => "TASK_NOT_FOUND",
            Self::WebhookNotFound => "WEBHOOK_NOT_FOUND",
            Self::InvalidWebhooks => "INVALID_WEBHOOKS",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::ControlPlaneUnavailable => "CONTROL_PLANE_UNAVAILABLE",
            Self::Fenced => "FENCED",
            Self::Internal => "INTERNAL",
        }
    }

    /// `message` as the Meilisearch error this code is answered as.
    pub fn meili_body(self, message: &str) -> serde_json::Value {
        let spec = self.spec();
        meili_error_body(spec.meili_code, spec.meili_type, message)
    }

    /// A gRPC status with this code in its details.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        let details = ErrorDetails::with_error_info(
            self.reason(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        tonic::Status::with_error_details(self.spec().grpc, message, details)
    }

    /// The code of a status received from another process: the Miroir code in its
    /// details, else one read from its gRPC code (a transport failure, a deadline, or a
    /// status from a process that is not a Miroir control plane).
    pub fn of(status: &tonic::Status) -> Self {
        if let Some(info) = status.get_details_error_info()
            && info.domain == ERROR_DOMAIN
            && let Some(code) = Self::ALL.into_iter().find(|c| c.reason() == info.reason)
        {
            return code;
        }
        match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Self::InvalidArgument,
            tonic::Code::NotFound => Self::NotFound,
            tonic::Code::AlreadyExists => Self::AlreadyExists,
            tonic::Code::FailedPrecondition => Self::FailedPrecondition,
            tonic::Code::ResourceExhausted => Self::ResourceExhausted,
            // Every status Miroir's control plane answers carries its code in the details:
            // one without them whose code is Unknown or Cancelled is the client's own
            // (the connection broke mid-call, e.g. the control plane was killed), so the
            // call may be retried, as for Unavailable. Found by the chaos run.
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled => Self::ControlPlaneUnavailable,
            tonic::Code::Aborted => Self::Fenced,
            _ => Self::Internal,
        }
    }
}

/// An error that knows its [`ErrorCode`].
pub trait ServiceError: std::error::Error {
    /// What this error means.
    fn error_code(&self) -> ErrorCode;

    /// The error as a gRPC status with a readable message and its code in the details.
    fn to_status(&self) -> tonic::Status {
        self.error_code().status(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_travels_in_the_status_details() {
        for code in ErrorCode::ALL {
            let status = code.status("m");
            assert_eq!(status.code(), code.spec().grpc);
            assert_eq!(ErrorCode::of(&status), code, "{code:?}");
            // Through the wire's headers, as a gateway receives it.
            let response = status.into_http::<()>();
            let received = tonic::Status::from_header_map(response.headers())
                .expect("a status in the headers");
            assert_eq!(ErrorCode::of(&received), code, "{code:?} over the wire");
            assert_eq!(received.message(), "m");
        }
    }

    #[test]
    fn reasons_and_meilisearch_codes_are_unique() {
        let reasons: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.reason()).collect();
        assert_eq!(reasons.len(), ErrorCode::ALL.len());
        let codes: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.spec().meili_code).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn statuses_without_details_are_read_from_their_grpc_code() {
        assert_eq!(
            ErrorCode::of(&tonic::Status::unavailable("connection refused")),
            ErrorCode::ControlPlaneUnavailable
        );
        assert_eq!(
            ErrorCode::of(&tonic::Status::deadline_exceeded("late")),
            ErrorCode::ControlPlaneUnavailable
        );
        assert_eq!(
            ErrorCode::of(&tonic::Status::not_found("x")),
            ErrorCode::NotFound
        );
        // A call whose connection broke (tonic's transport errors) is retryable.
        assert_eq!(
            ErrorCode::of(&tonic::Status::unknown("transport error")),
            ErrorCode::ControlPlaneUnavailable
        );
        assert_eq!(
            ErrorCode::of(&tonic::Status::cancelled("h2 stream reset")),
            ErrorCode::ControlPlaneUnavailable
        );
        assert_eq!(
            ErrorCode::of(&tonic::Status::internal("failed to decode")),
            ErrorCode::Internal
        );
        // Another domain's reason is not taken for Miroir's.
        let foreign = tonic::Status::with_error_details(
            tonic::Code::NotFound,
            "x",
            ErrorDetails::with_error_info(
                "INDEX_NOT_FOUND",
                "example.com",
                std::collections::HashMap::new(),
            ),
        );
        assert_eq!(ErrorCode::of(&foreign), ErrorCode::NotFound);
    }
}
