//! The `edge.v1.CloudHealthService` handlers, and the one conversion from
//! the board's [`Health`] to the contract's messages.

use std::pin::Pin;
use std::time::SystemTime;

use edge_cloud_link::LinkState;
use edge_proto::v1 as pb;
use edge_proto::v1::cloud_health_service_server::CloudHealthService;
use futures::{Stream, StreamExt as _};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::board::{Health, HealthBoard, Link, Serving};

/// The CloudHealthService implementation.
pub struct HealthGrpc {
    board: HealthBoard,
    /// Ends WatchCloudHealth streams at shutdown, so a connected dashboard
    /// does not hold the server open for the whole grace period.
    stop: CancellationToken,
}

impl HealthGrpc {
    /// Handlers over `board`; `stop` ends open streams.
    pub fn new(board: HealthBoard, stop: CancellationToken) -> Self {
        HealthGrpc { board, stop }
    }
}

type HealthStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchCloudHealthResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CloudHealthService for HealthGrpc {
    async fn get_cloud_health(
        &self,
        _request: Request<pb::GetCloudHealthRequest>,
    ) -> Result<Response<pb::GetCloudHealthResponse>, Status> {
        Ok(Response::new(pb::GetCloudHealthResponse {
            health: Some(to_proto(&self.board.get(), SystemTime::now())),
        }))
    }

    type WatchCloudHealthStream = HealthStream;

    async fn watch_cloud_health(
        &self,
        _request: Request<pb::WatchCloudHealthRequest>,
    ) -> Result<Response<Self::WatchCloudHealthStream>, Status> {
        // The current health at once, then one message per state change (the
        // board wakes watchers on state changes only). A slow reader sees
        // the latest health, not every intermediate one.
        let updates = WatchStream::new(self.board.subscribe())
            .map(|health| {
                Ok(pb::WatchCloudHealthResponse {
                    health: Some(to_proto(&health, SystemTime::now())),
                })
            })
            .take_until(self.stop.clone().cancelled_owned());
        Ok(Response::new(Box::pin(updates)))
    }
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// The contract's link state for a probe state.
pub fn link_state(link: &Link) -> pb::CloudLinkState {
    match link.state() {
        None => pb::CloudLinkState::NotConfigured,
        Some(LinkState::Unknown) => pb::CloudLinkState::Unknown,
        Some(LinkState::Online) => pb::CloudLinkState::Online,
        Some(LinkState::Degraded) => pb::CloudLinkState::Degraded,
        Some(LinkState::Offline) => pb::CloudLinkState::Offline,
    }
}

fn serving_state(state: Serving) -> pb::ServingState {
    match state {
        Serving::Unknown => pb::ServingState::Unknown,
        Serving::Serving => pb::ServingState::Serving,
        Serving::NotServing => pb::ServingState::NotServing,
        Serving::Unreachable => pb::ServingState::Unreachable,
    }
}

/// `health` as the contract's message, composed at `now`.
pub fn to_proto(health: &Health, now: SystemTime) -> pb::CloudHealth {
    let link = match &health.link {
        Link::NotConfigured => pb::CloudLink {
            state: pb::CloudLinkState::NotConfigured as i32,
            reason: "no cloud URL configured (--cloud-url / EDGE_CLOUD_URL): the site runs offline by design".into(),
            ..Default::default()
        },
        Link::Probed { url, status } => pb::CloudLink {
            state: link_state(&health.link) as i32,
            cloud_url: url.clone(),
            since: Some(timestamp(status.since)),
            reachability_since: Some(timestamp(status.reachability_since)),
            last_success_at: status.last_success_at.map(timestamp),
            last_probe_at: status.last_probe_at.map(timestamp),
            last_latency: status
                .last_latency
                .and_then(|d| prost_types::Duration::try_from(d).ok()),
            success_ratio: status.success_ratio.unwrap_or(0.0),
            window_probes: status.window_probes,
            last_error: status.last_error.clone().unwrap_or_default(),
            reason: status.reason.clone().unwrap_or_default(),
        },
    };
    pb::CloudHealth {
        link: Some(link),
        services: health
            .services
            .iter()
            .map(|s| pb::MeshServiceHealth {
                name: s.name.to_owned(),
                grpc_service: s.grpc_service.to_owned(),
                address: s.address.clone(),
                state: serving_state(s.state) as i32,
                since: Some(timestamp(s.since)),
                last_check_at: s.last_check_at.map(timestamp),
                error: s.error.clone().unwrap_or_default(),
            })
            .collect(),
        mesh_healthy: health.mesh_healthy(),
        cloud_reachable: health.link.is_reachable(),
        observed_at: Some(timestamp(now)),
    }
}
