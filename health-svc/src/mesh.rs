//! Checking the mesh services: each one is asked
//! `grpc.health.v1.Health/Check` for its own gRPC service name, on an
//! interval, with a deadline. The channel connects lazily and reconnects by
//! itself, so a service that comes back is seen SERVING at the next check
//! without restarting anything.
//!
//! What an answer means:
//! - SERVING: serving;
//! - any other status, `NOT_FOUND` (the server does not know that service:
//!   the address points at another service) or `UNIMPLEMENTED` (no health
//!   service there): it answered, but it is not serving what we asked for;
//! - no answer within the deadline, or a transport failure: unreachable.

use std::time::{Duration, SystemTime};

use edge_proto::service_names;
use edge_runtime::client::{AuthedChannel, ClientArgs, Credentials, InvalidEndpoint};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::board::{Check, HealthBoard, Serving};
use crate::config::MeshTargets;

/// A service to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Short name (`ingest`, `store`, `sync`).
    pub name: &'static str,
    /// The gRPC service name asked about.
    pub grpc_service: &'static str,
    /// Its address.
    pub url: String,
    /// The flag that set the address, for error messages.
    pub flag: &'static str,
}

impl MeshTargets {
    /// The services in the order they are reported.
    pub fn targets(&self) -> Vec<Target> {
        vec![
            Target {
                name: "ingest",
                grpc_service: service_names::INGEST,
                url: self.ingest_url.clone(),
                flag: "--ingest-url",
            },
            Target {
                name: "store",
                grpc_service: service_names::READINGS,
                url: self.store_url.clone(),
                flag: "--store-url",
            },
            Target {
                name: "sync",
                grpc_service: service_names::SYNC,
                url: self.sync_url.clone(),
                flag: "--sync-url",
            },
        ]
    }
}

/// Checks one service.
#[derive(Clone)]
pub struct Checker {
    client: HealthClient<AuthedChannel>,
    service: &'static str,
    timeout: Duration,
}

impl Checker {
    /// A checker of `service` at `url`, giving up after `timeout`
    /// (connecting included), connecting with `credentials`' TLS (the
    /// health service itself needs no token).
    pub fn new(
        url: &str,
        service: &'static str,
        timeout: Duration,
        credentials: &Credentials,
    ) -> Result<Self, InvalidEndpoint> {
        let args = ClientArgs {
            connect_timeout: timeout,
            request_timeout: timeout,
        };
        let channel = edge_runtime::client::channel(url, &args, credentials)?;
        Ok(Checker {
            client: HealthClient::new(channel),
            service,
            timeout,
        })
    }

    /// Asks once.
    pub async fn check(&self) -> Check {
        let request = HealthCheckRequest {
            service: self.service.to_owned(),
        };
        let answer = tokio::time::timeout(self.timeout, self.client.clone().check(request)).await;
        match answer {
            Err(_) => unreachable(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
            Ok(Ok(reply)) => match reply.into_inner().status() {
                ServingStatus::Serving => Check {
                    state: Serving::Serving,
                    error: None,
                },
                other => Check {
                    state: Serving::NotServing,
                    error: Some(format!("health check answered {}", other.as_str_name())),
                },
            },
            Ok(Err(status)) if status.code() == Code::NotFound => Check {
                state: Serving::NotServing,
                error: Some(format!(
                    "the server there does not serve {} (wrong address?)",
                    self.service
                )),
            },
            Ok(Err(status)) if status.code() == Code::Unimplemented => Check {
                state: Serving::NotServing,
                error: Some("the server there has no grpc.health.v1 service".into()),
            },
            Ok(Err(status)) => unreachable(describe(&status)),
        }
    }
}

fn unreachable(error: String) -> Check {
    Check {
        state: Serving::Unreachable,
        error: Some(error),
    }
}

/// A status as one line: the message, with the innermost cause when tonic
/// keeps it in the source chain (e.g. "connection refused").
fn describe(status: &tonic::Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    };
    let mut source = std::error::Error::source(status);
    let mut innermost = None;
    while let Some(err) = source {
        innermost = Some(err.to_string());
        source = err.source();
    }
    if let Some(cause) = innermost.filter(|c| !text.contains(c.as_str())) {
        text = format!("{text}: {cause}");
    }
    text
}

/// Checks service `index` of `board` with `checker` every `interval` until
/// `stop`, logging each change of state.
pub async fn watch(
    board: HealthBoard,
    index: usize,
    checker: Checker,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        let check = tokio::select! {
            () = stop.cancelled() => return,
            check = checker.check() => check,
        };
        let error = check.error.clone().unwrap_or_default();
        let state = check.state;
        if board.set_service(index, check, SystemTime::now()).is_some() {
            let service = checker.service;
            match state {
                Serving::Serving => tracing::info!(service, "mesh service serving"),
                _ => {
                    tracing::warn!(service, state = state.as_str(), %error, "mesh service not serving")
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
