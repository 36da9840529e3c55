//! Accepting connections under limits, with or without TLS.
//!
//! A gRPC port faces every device on the site's network, so the accept loop
//! holds the line before HTTP/2 starts:
//! - at most `max_connections` at once: one more is closed at once (a
//!   gateway retries; hundreds of idle sockets cannot take the process's
//!   file descriptors or memory);
//! - at most `max_connections_per_ip` from one address, so one host cannot
//!   take every slot;
//! - a connection must finish its TLS handshake and send the HTTP/2
//!   preface within `handshake_timeout` of being accepted, so half-open and
//!   slow connections are closed instead of held for ever (after the
//!   preface, HTTP/2 keep-alive pings find dead peers);
//! - handshakes run concurrently, each in its own task, so fifty slow
//!   clients do not hold up the gateway behind them.
//!
//! Every refusal is counted in `connections_refused_total{server,reason}`.

use std::future::Future as _;
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
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Time from accept to the end of the HTTP/2 preface (TLS handshake
    /// included).
    pub handshake_timeout: Duration,
}

/// The HTTP/2 client preface, which every gRPC connection starts with.
const PREFACE_BYTES: usize = 24;

/// Connections open per address.
type PerIp = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

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
    ip: std::net::IpAddr,
    per_ip: PerIp,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics()
            .connections_open
            .add(-1, &[opentelemetry::KeyValue::new("server", self.server)]);
        let mut per_ip = match self.per_ip.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Takes a place for `ip` unless it holds `max` already.
fn take_ip(per_ip: &PerIp, ip: std::net::IpAddr, max: usize) -> bool {
    let mut per_ip = match per_ip.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    let open = per_ip.entry(ip).or_insert(0);
    if *open >= max.max(1) {
        return false;
    }
    *open += 1;
    true
}

/// The deadline for the HTTP/2 preface and the bytes of it seen so far.
struct Preface {
    deadline: Pin<Box<tokio::time::Sleep>>,
    seen: usize,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection, TLS or plaintext.
pub struct Conn {
    transport: Transport,
    peer: PeerInfo,
    preface: Option<Preface>,
    slot: Slot,
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
        let this = self.get_mut();
        if let Some(preface) = &mut this.preface
            && preface.deadline.as_mut().poll(cx).is_ready()
        {
            metrics()
                .connections_refused
                .add(1, &labels(this.slot.server, "reason", "handshake_timeout"));
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the handshake timeout",
            )));
        }
        let before = buf.filled().len();
        let read = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let (Poll::Ready(Ok(())), Some(preface)) = (&read, &mut this.preface) {
            preface.seen += buf.filled().len() - before;
            if preface.seen >= PREFACE_BYTES {
                this.preface = None;
            }
        }
        read
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
    let per_ip: PerIp = PerIp::default();
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
            if !take_ip(&per_ip, remote.ip(), limits.max_connections_per_ip) {
                metrics()
                    .connections_refused
                    .add(1, &labels(server, "reason", "max_connections_per_ip"));
                drop(stream);
                continue;
            }
            metrics()
                .connections_open
                .add(1, &[opentelemetry::KeyValue::new("server", server)]);
            let slot = Slot {
                _permit: permit,
                server,
                ip: remote.ip(),
                per_ip: per_ip.clone(),
            };
            let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
            let sender = sender.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let handshake = handshake(stream, remote, acceptor);
                match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(Ok((transport, peer))) => {
                        let conn = Conn {
                            transport,
                            peer,
                            preface: Some(Preface {
                                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                                seen: 0,
                            }),
                            slot,
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

/// The TLS handshake (in plaintext, nothing: the preface deadline bounds the
/// wait for the first bytes).
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
        None => Ok((Transport::Plain(stream), peer)),
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
