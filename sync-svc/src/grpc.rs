//! The `edge.v1.SyncService` handlers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use edge_proto::v1 as pb;
use edge_proto::v1::sync_service_server::SyncService;
use futures::Stream;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::drain::Drain;
use crate::status::StatusBoard;

/// Least time between two WatchStatus messages: a busy drain changes its
/// status many times a second, a watcher needs a few.
const WATCH_MIN_INTERVAL: Duration = Duration::from_millis(250);

/// The SyncService implementation.
pub struct SyncGrpc {
    status: StatusBoard,
    /// Set once sync-svc knows its site and started draining; empty while
    /// starting, and forever when no cloud is configured.
    drain: Arc<OnceCell<Arc<Drain>>>,
    enabled: bool,
    /// Ends WatchStatus streams at shutdown, so a connected dashboard does
    /// not hold the server open for the whole grace period.
    stop: CancellationToken,
}

impl SyncGrpc {
    /// Handlers over the shared status and drain; `stop` ends open streams.
    pub fn new(
        status: StatusBoard,
        drain: Arc<OnceCell<Arc<Drain>>>,
        enabled: bool,
        stop: CancellationToken,
    ) -> Self {
        SyncGrpc {
            status,
            drain,
            enabled,
            stop,
        }
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::WatchStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SyncService for SyncGrpc {
    async fn sync_now(
        &self,
        _request: Request<pb::SyncNowRequest>,
    ) -> Result<Response<pb::SyncNowResponse>, Status> {
        if !self.enabled {
            return Err(Status::failed_precondition(
                "no cloud is configured (--cloud-url / EDGE_CLOUD_URL): the site runs offline",
            ));
        }
        match self.drain.get() {
            Some(drain) => drain.sync_now().await,
            None => {
                return Err(Status::unavailable(
                    "sync-svc is still starting (waiting for store-svc); try again shortly",
                ));
            }
        }
        Ok(Response::new(pb::SyncNowResponse {}))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(pb::GetStatusResponse {
            status: Some(self.status.get()),
        }))
    }

    type WatchStatusStream = StatusStream;

    async fn watch_status(
        &self,
        _request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let mut updates = self.status.subscribe();
        let stop = self.stop.clone();
        let stream = async_stream(move |tx| async move {
            loop {
                let status = updates.borrow_and_update().clone();
                if tx
                    .send(Ok(pb::WatchStatusResponse {
                        status: Some(status),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(WATCH_MIN_INTERVAL).await;
                tokio::select! {
                    changed = updates.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = stop.cancelled() => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a small channel; the task ends when the
/// receiver (the client's call) goes away.
fn async_stream<F, Fut>(produce: F) -> StatusStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::WatchStatusResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
