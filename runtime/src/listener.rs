//! Accepting connections under limits, with or without TLS.
//!
//! A gRPC port faces every device on the site's network, so the accept loop
//! holds the line before HTTP/2 starts:
//! - at most `max_connections` at once: one more is closed at once (a
//!   gateway retries; hundreds of idle sockets cannot take the process's
//!   file descriptors or memory);
//! - a connection must finish its TLS handshake (or, in plaintext, send its
//!   first bytes) within `handshake_timeout`, so half-open and slow
//!   connections are closed instead of held for ever;
//! - handshakes run concurrently, each in its own task, so fifty slow
//!   clients do not hold up the gateway behind them.
//!
//! Every refusal is counted in `connections_refused_total{server,reason}`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use crate::security_metrics::{labels, metrics};

/// How connections are accepted.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// Connections open at once; one more is closed on accept.
    pub max_connections: usize,
    /// Time for a TLS handshake, or in plaintext for the first bytes.
    pub handshake_timeout: Duration,
}

/// Who is at the other end of a connection, as the transport knows it; the
/// credential check reads it from each call's extensions.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The common name of a client certificate the handshake verified
    /// against `--tls-client-ca`.
    pub client_cert_name: Option<Arc<str>>,
}

/// Counts a connection open for as long as it lives, and holds its place
/// under the connection limit.
struct Slot {
    _permit: OwnedSemaphorePermit,
    server: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics()
            .connections_open
            .add(-1, &[opentelemetry::KeyValue::new("server", self.server)]);
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection, TLS or plaintext.
pub struct Conn {
    transport: Transport,
    peer: PeerInfo,
    _slot: Slot,
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The stream of accepted connections a tonic server serves.
pub struct Incoming {
    receiver: mpsc::Receiver<Conn>,
}

impl Stream for Incoming {
    type Item = Result<Conn, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// Accepts on `listener` (TLS with `tls`, plaintext without) under
/// `limits`, until the returned stream is dropped. `server` labels the
/// metrics.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: AcceptLimits,
    server: &'static str,
) -> Incoming {
    let (sender, receiver) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => return,
            };
            let (stream, remote) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors, mostly: wait a little rather
                    // than spin, and keep accepting.
                    tracing::warn!(%err, server, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                metrics()
                    .connections_refused
                    .add(1, &labels(server, "reason", "max_connections"));
                drop(stream);
                continue;
            };
            metrics()
                .connections_open
                .add(1, &[opentelemetry::KeyValue::new("server", server)]);
            let slot = Slot {
                _permit: permit,
                server,
            };
            let sender = sender.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let handshake = handshake(stream, remote, acceptor);
                match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                    Ok(Ok((transport, peer))) => {
                        let conn = Conn {
                            transport,
                            peer,
                            _slot: slot,
                        };
                        let _ = sender.send(conn).await;
                    }
                    Ok(Err(reason)) => {
                        metrics()
                            .connections_refused
                            .add(1, &labels(server, "reason", reason));
                    }
                    Err(_) => {
                        metrics()
                            .connections_refused
                            .add(1, &labels(server, "reason", "handshake_timeout"));
                    }
                }
            });
        }
    });
    Incoming { receiver }
}

/// The TLS handshake, or in plaintext the wait for the first bytes.
async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: Option<TlsAcceptor>,
) -> Result<(Transport, PeerInfo), &'static str> {
    let mut peer = PeerInfo {
        remote_addr: Some(remote),
        client_cert_name: None,
    };
    match acceptor {
        None => {
            // Readable also on EOF; a closed peer then fails in HTTP/2.
            stream.readable().await.map_err(|_| "closed")?;
            Ok((Transport::Plain(stream), peer))
        }
        Some(acceptor) => {
            let tls = acceptor.accept(stream).await.map_err(|err| {
                tracing::debug!(%err, %remote, "TLS handshake failed");
                "handshake_failed"
            })?;
            peer.client_cert_name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| common_name(leaf.as_ref()));
            Ok((Transport::Tls(Box::new(tls)), peer))
        }
    }
}

/// The subject common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<Arc<str>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(Arc::from)
}
