//! `AdminService`: nodes, groups, indexes, keys, operations and the cluster, one file
//! each; the trait implementation below only hands each RPC to its file.

mod aliases;
mod cluster;
mod groups;
mod indexes;
mod keys;
mod nodes;
mod operations;

use crate::error::ControlPlaneError;
use crate::state::{LeadershipStatus, ServiceState};
use crate::store::IndexRenames;
use crate::topology::{self, IndexLayout};
use miroir_proto::GroupId;
use miroir_proto::pb;
use miroir_proto::pb::admin_service_server::AdminService;
use serde_json::{Value, json};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Implements `miroir.v1.AdminService`.
pub struct AdminApi {
    state: Arc<ServiceState>,
}

impl AdminApi {
    /// A service over `state`.
    pub fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        nodes::add_node(self, request).await
    }

    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        nodes::list_nodes(self, request).await
    }

    async fn get_node(
        &self,
        request: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        nodes::get_node(self, request).await
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        nodes::drain_node(self, request).await
    }

    async fn repair_node(
        &self,
        request: Request<pb::RepairNodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        nodes::repair_node(self, request).await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        nodes::remove_node(self, request).await
    }

    async fn add_group(
        &self,
        request: Request<pb::AddGroupRequest>,
    ) -> Result<Response<pb::GroupResponse>, Status> {
        groups::add_group(self, request).await
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        groups::list_groups(self, request).await
    }

    async fn remove_group(
        &self,
        request: Request<pb::RemoveGroupRequest>,
    ) -> Result<Response<pb::GroupResponse>, Status> {
        groups::remove_group(self, request).await
    }

    async fn create_index(
        &self,
        request: Request<pb::CreateIndexRequest>,
    ) -> Result<Response<pb::IndexResponse>, Status> {
        indexes::create_index(self, request).await
    }

    async fn list_indexes(
        &self,
        request: Request<pb::ListIndexesRequest>,
    ) -> Result<Response<pb::ListIndexesResponse>, Status> {
        indexes::list_indexes(self, request).await
    }

    async fn get_index(
        &self,
        request: Request<pb::GetIndexRequest>,
    ) -> Result<Response<pb::IndexResponse>, Status> {
        indexes::get_index(self, request).await
    }

    async fn delete_index(
        &self,
        request: Request<pb::DeleteIndexRequest>,
    ) -> Result<Response<pb::IndexResponse>, Status> {
        indexes::delete_index(self, request).await
    }

    async fn update_index(
        &self,
        request: Request<pb::UpdateIndexRequest>,
    ) -> Result<Response<pb::IndexResponse>, Status> {
        indexes::update_index(self, request).await
    }

    async fn set_primary_key(
        &self,
        request: Request<pb::SetPrimaryKeyRequest>,
    ) -> Result<Response<pb::IndexResponse>, Status> {
        indexes::set_primary_key(self, request).await
    }

    async fn swap_indexes(
        &self,
        request: Request<pb::SwapIndexesRequest>,
    ) -> Result<Response<pb::SwapIndexesResponse>, Status> {
        indexes::swap_indexes(self, request).await
    }

    async fn update_index_settings(
        &self,
        request: Request<pb::UpdateIndexSettingsRequest>,
    ) -> Result<Response<pb::IndexResponse>, Status> {
        indexes::update_index_settings(self, request).await
    }

    async fn get_index_settings(
        &self,
        request: Request<pb::GetIndexSettingsRequest>,
    ) -> Result<Response<pb::IndexSettingsReport>, Status> {
        indexes::get_index_settings(self, request).await
    }

    async fn repair_index_settings(
        &self,
        request: Request<pb::GetIndexSettingsRequest>,
    ) -> Result<Response<pb::IndexSettingsReport>, Status> {
        indexes::repair_index_settings(self, request).await
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::KeyResponse>, Status> {
        keys::create_key(self, request).await
    }

    async fn update_key(
        &self,
        request: Request<pb::UpdateKeyRequest>,
    ) -> Result<Response<pb::KeyResponse>, Status> {
        keys::update_key(self, request).await
    }

    async fn delete_key(
        &self,
        request: Request<pb::DeleteKeyRequest>,
    ) -> Result<Response<pb::KeyResponse>, Status> {
        keys::delete_key(self, request).await
    }

    async fn put_webhook(
        &self,
        request: Request<pb::PutWebhookRequest>,
    ) -> Result<Response<pb::WebhookResponse>, Status> {
        cluster::put_webhook(self, request).await
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::WebhookResponse>, Status> {
        cluster::delete_webhook(self, request).await
    }

    async fn update_experimental_features(
        &self,
        request: Request<pb::UpdateExperimentalFeaturesRequest>,
    ) -> Result<Response<pb::ExperimentalFeaturesResponse>, Status> {
        cluster::update_experimental_features(self, request).await
    }

    async fn set_replication_factor(
        &self,
        request: Request<pb::SetReplicationFactorRequest>,
    ) -> Result<Response<pb::OperationResponse>, Status> {
        operations::set_replication_factor(self, request).await
    }

    async fn list_operations(
        &self,
        request: Request<pb::ListOperationsRequest>,
    ) -> Result<Response<pb::ListOperationsResponse>, Status> {
        operations::list_operations(self, request).await
    }

    async fn get_operation(
        &self,
        request: Request<pb::OperationRequest>,
    ) -> Result<Response<pb::OperationResponse>, Status> {
        operations::get_operation(self, request).await
    }

    async fn pause_operation(
        &self,
        request: Request<pb::OperationRequest>,
    ) -> Result<Response<pb::OperationResponse>, Status> {
        operations::pause_operation(self, request).await
    }

    async fn resume_operation(
        &self,
        request: Request<pb::OperationRequest>,
    ) -> Result<Response<pb::OperationResponse>, Status> {
        operations::resume_operation(self, request).await
    }

    async fn cancel_operation(
        &self,
        request: Request<pb::OperationRequest>,
    ) -> Result<Response<pb::OperationResponse>, Status> {
        operations::cancel_operation(self, request).await
    }

    async fn get_cluster_status(
        &self,
        request: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        cluster::get_cluster_status(self, request).await
    }

    async fn get_leader(
        &self,
        request: Request<pb::GetLeaderRequest>,
    ) -> Result<Response<pb::LeaderInfo>, Status> {
        cluster::get_leader(self, request).await
    }

    async fn await_applied(
        &self,
        request: Request<pb::AwaitAppliedRequest>,
    ) -> Result<Response<pb::AwaitAppliedResponse>, Status> {
        cluster::await_applied(self, request).await
    }

    async fn set_alias(
        &self,
        request: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::AliasResponse>, Status> {
        aliases::set_alias(self, request).await
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        aliases::list_aliases(self, request).await
    }

    async fn remove_alias(
        &self,
        request: Request<pb::RemoveAliasRequest>,
    ) -> Result<Response<pb::AliasResponse>, Status> {
        aliases::remove_alias(self, request).await
    }

    async fn get_anti_entropy_status(
        &self,
        _request: Request<pb::GetAntiEntropyStatusRequest>,
    ) -> Result<Response<pb::AntiEntropyStatus>, Status> {
        // The status lives in the leader's memory (a follower forwards the call).
        self.state.leader_token()?;
        Ok(Response::new(self.anti_entropy_status()))
    }

    async fn run_anti_entropy(
        &self,
        _request: Request<pb::RunAntiEntropyRequest>,
    ) -> Result<Response<pb::AntiEntropyStatus>, Status> {
        self.state.leader_token()?;
        self.state.anti_entropy.request();
        Ok(Response::new(self.anti_entropy_status()))
    }
}

impl AdminApi {
    fn anti_entropy_status(&self) -> pb::AntiEntropyStatus {
        let config = &self.state.config;
        self.state.anti_entropy.status(
            config.anti_entropy_interval,
            config.anti_entropy_rate,
            &self.state.id,
        )
    }
}

/// One node request: method, path, JSON body.
type Step = (http::Method, String, Option<Value>);
