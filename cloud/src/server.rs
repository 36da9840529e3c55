//! Serving the public port, connection by connection, so that the fault
//! mode reaches connections at the TCP level.
//!
//! `axum::serve` hides its connections, so a `refuse` or `black_hole` mode
//! could only affect new ones. Here every accepted connection gets its own
//! task and its own receiver of the fault configuration:
//!
//! - `refuse`: the socket gets `SO_LINGER 0` and is closed, so the client
//!   sees a reset and no HTTP answer. An open connection is reset the moment
//!   the mode changes, even mid-request.
//! - `black_hole`: a new connection is held without reading a byte until the
//!   mode changes (then it is served or reset as the new mode says) or the
//!   server stops. A request on an open connection stalls in the fault gate
//!   ([`crate::api`]) until the mode changes.
//! - `normal`: the connection is served by hyper's HTTP/1 server.
//!
//! To reset a connection hyper owns, the task keeps a duplicate of the
//! socket's file descriptor: setting `SO_LINGER 0` through it and closing
//! both makes the kernel send RST.
//!
//! Shutdown: stop accepting, ask every connection to finish its in-flight
//! request and close, and wait for them up to a grace period.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::faults::{FaultMode, Faults};

/// Serves `router` on `listener` until `shutdown`, applying the fault mode
/// to every connection; then drains connections for at most `grace`.
pub(crate) async fn serve_public(
    listener: TcpListener,
    router: Router,
    faults: watch::Receiver<Arc<Faults>>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                connections.spawn(handle_connection(
                    stream,
                    router.clone(),
                    faults.clone(),
                    shutdown.clone(),
                ));
            }
            Err(err) => {
                // Out of file descriptors and the like: back off a little
                // rather than spin, and keep serving what is open.
                tracing::warn!(%err, "cannot accept a connection");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open at the end of the grace period"
        );
    }
}

/// One connection, from accept to close.
async fn handle_connection(
    stream: TcpStream,
    router: Router,
    mut faults: watch::Receiver<Arc<Faults>>,
    shutdown: CancellationToken,
) {
    // Connection-level modes first: nothing is read until the mode is normal.
    loop {
        let mode = faults.borrow_and_update().mode;
        match mode {
            FaultMode::Normal => break,
            FaultMode::Refuse => {
                reset(&stream);
                return;
            }
            FaultMode::BlackHole => {
                tokio::select! {
                    changed = faults.changed() => if changed.is_err() { return },
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
    let _ = stream.set_nodelay(true);
    let (stream, handle) = match duplicate(stream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(%err, "cannot prepare a connection");
            return;
        }
    };
    let service = TowerToHyperService::new(router);
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(err) = served {
                tracing::debug!(%err, "connection ended with an error");
            }
        }
        refused = async { faults.wait_for(|f| f.mode == FaultMode::Refuse).await.is_ok() } => {
            if refused {
                reset(&handle);
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            if let Err(err) = connection.await {
                tracing::debug!(%err, "connection ended with an error during shutdown");
            }
        }
    }
}

/// Splits a stream into the one hyper serves and a descriptor kept to
/// reset it.
fn duplicate(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let stream = stream.into_std()?;
    let handle = stream.try_clone()?;
    Ok((TcpStream::from_std(stream)?, handle))
}

/// Makes the socket's close a reset (RST): `SO_LINGER` with a zero timeout.
/// The socket closes when the caller drops its last descriptor.
fn reset<S: std::os::fd::AsFd>(socket: &S) {
    if let Err(err) = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%err, "cannot set SO_LINGER on a refused connection");
    }
}
