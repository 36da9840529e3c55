//! Serving the public and admin ports, connection by connection, so that
//! the fault mode reaches the public port's connections at the TCP level and
//! both ports bound how long a client may take over its request headers.
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
//! The admin port has no fault mode: its connections are always served.
//!
//! Header timeout: hyper closes a connection whose request headers have not
//! arrived whole within `--header-timeout` (a slow-loris client would
//! otherwise hold a task and a socket for ever); each such close is counted
//! (`header_timeouts`). Body timeouts are the router's
//! ([`crate::api::deadline`]).
//!
//! TLS (`--tls-cert`): the handshake runs in the connection's task once
//! the fault mode lets the connection through, bounded by
//! `--header-timeout`; a failed or timed-out handshake closes the
//! connection and is counted (`tls_handshake_failures`).
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
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::faults::{FaultMode, Faults};
use crate::stats::{Counters, add};

/// How a port serves its connections.
#[derive(Clone)]
pub(crate) struct Serving {
    /// `public` or `admin`, for logs.
    pub what: &'static str,
    /// The fault mode to apply to every connection; `None` on the admin
    /// port.
    pub faults: Option<watch::Receiver<Arc<Faults>>>,
    /// `--header-timeout`, also the TLS handshake's.
    pub header_timeout: Duration,
    /// TLS for every connection (`--tls-cert`); `None`: plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// Where header timeouts are counted.
    pub counters: Arc<Counters>,
    /// Stops accepting, and asks open connections to finish.
    pub shutdown: CancellationToken,
    /// How long open connections get to finish after `shutdown`.
    pub grace: Duration,
}

/// Serves `router` on `listener` until `shutdown`, applying the fault mode
/// (if any) to every connection; then drains connections for at most
/// `grace`.
pub(crate) async fn serve(listener: TcpListener, router: Router, serving: Serving) {
    let Serving {
        shutdown, grace, ..
    } = serving.clone();
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                connections.spawn(handle_connection(stream, router.clone(), serving.clone()));
            }
            Err(err) => {
                // Out of file descriptors and the like: back off a little
                // rather than spin, and keep serving what is open.
                tracing::warn!(%err, port = serving.what, "cannot accept a connection");
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
            port = serving.what,
            "connections still open at the end of the grace period"
        );
    }
}

/// One connection, from accept to close.
async fn handle_connection(stream: TcpStream, router: Router, serving: Serving) {
    let Serving {
        faults,
        header_timeout,
        counters,
        shutdown,
        tls,
        ..
    } = serving;
    // Connection-level modes first: nothing is read until the mode is normal.
    let mut faults = faults;
    if let Some(faults) = faults.as_mut() {
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
    }
    let _ = stream.set_nodelay(true);
    let (stream, handle) = match duplicate(stream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(%err, "cannot prepare a connection");
            return;
        }
    };
    let connection = Connection {
        router,
        handle,
        faults,
        header_timeout,
        counters,
        shutdown,
    };
    match tls {
        None => connection.serve(TokioIo::new(stream)).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        add(&connection.counters.tls_handshake_failures, 1);
                        tracing::debug!(%err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        add(&connection.counters.tls_handshake_failures, 1);
                        tracing::debug!(?header_timeout, "TLS handshake did not finish in time");
                        return;
                    }
                },
                () = connection.shutdown.cancelled() => return,
            };
            connection.serve(TokioIo::new(stream)).await;
        }
    }
}

/// A connection let through by the fault mode, ready for HTTP.
struct Connection {
    router: Router,
    /// A duplicate of the socket's descriptor, to reset it.
    handle: std::net::TcpStream,
    faults: Option<watch::Receiver<Arc<Faults>>>,
    header_timeout: Duration,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

impl Connection {
    /// Serves HTTP/1.1 on `io` (the socket, or TLS over it) until the
    /// client closes, the fault mode turns to `refuse`, or shutdown.
    async fn serve<I>(self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Connection {
            router,
            handle,
            faults,
            header_timeout,
            counters,
            shutdown,
        } = self;
        let service = TowerToHyperService::new(router);
        let connection = http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(io, service);
        tokio::pin!(connection);
        let refused = async {
            match faults {
                Some(mut faults) => faults
                    .wait_for(|f| f.mode == FaultMode::Refuse)
                    .await
                    .is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    if err.is_timeout() {
                        add(&counters.header_timeouts, 1);
                        tracing::debug!(?header_timeout, "closed a connection whose headers did not arrive in time");
                    } else {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                }
            }
            refused = refused => {
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
