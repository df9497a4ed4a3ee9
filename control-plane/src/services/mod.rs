//! gRPC service implementations. Each handler validates, calls into
//! [`crate::state::ServiceState`], and converts errors to statuses via
//! `From<ControlPlaneError> for tonic::Status` (the one mapping).

pub mod admin;
pub mod task;
pub mod topology;
