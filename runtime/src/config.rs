//! Flags every service takes, flattened into each service's own clap config.
//!
//! Every flag has an `EDGE_*` environment fallback (Kubernetes sets those from
//! ConfigMaps) and a default that works on a laptop, so `edge up` needs none.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// Exit code for a configuration error (`EX_CONFIG` would be 78; we follow
/// `EX_USAGE`, 64, as the services are configured through flags and env).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Default largest gRPC message a service accepts or sends, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Flags shared by every service binary and by `edge up`.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Log filter in `tracing` EnvFilter syntax (e.g. `info,store_svc=debug`).
    #[arg(long, env = "EDGE_LOG", default_value = "info")]
    pub log: String,

    /// Log line format (logs go to stderr).
    #[arg(long, env = "EDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of the Prometheus `/metrics` endpoint. One per process.
    #[arg(long, env = "EDGE_METRICS_ADDR", default_value_t = crate::ports::listen(crate::ports::METRICS))]
    pub metrics_addr: SocketAddr,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "EDGE_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// How long in-flight calls may take to finish after SIGTERM before the
    /// process exits anyway. Keep it below the pod's terminationGracePeriod.
    #[arg(long, env = "EDGE_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Per-call gRPC metrics (`grpc_server_requests_total`,
    /// `grpc_server_duration_seconds`) and spans. On by default; off only to
    /// measure what they cost.
    #[arg(long, env = "EDGE_RPC_TELEMETRY", default_value_t = true, action = clap::ArgAction::Set)]
    pub rpc_telemetry: bool,

    /// Parse every flag and environment value as start-up does, say whether
    /// they are accepted, and exit without binding or connecting (a bad value
    /// exits 64 naming its flag). For checking a site's configuration before
    /// deploying it.
    #[arg(long)]
    pub check_config: bool,

    /// TLS, credentials and connection limits.
    #[command(flatten)]
    pub security: crate::security::SecurityArgs,
}

impl Default for RuntimeArgs {
    fn default() -> Self {
        Self {
            log: "info".into(),
            log_format: LogFormat::Text,
            metrics_addr: crate::ports::listen(crate::ports::METRICS),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_grace: Duration::from_secs(20),
            rpc_telemetry: true,
            check_config: false,
            security: crate::security::SecurityArgs::default(),
        }
    }
}

impl RuntimeArgs {
    /// `--check-config` was given: says so on stdout (for the operator or
    /// the script that asked) and tells the caller to stop before starting
    /// anything.
    pub fn only_check_config(&self, program: &str) -> bool {
        if self.check_config {
            println!("{program}: configuration accepted");
        }
        self.check_config
    }
}

/// Parses the process arguments into `T`. Help and version print and exit 0;
/// any configuration error prints clap's message (which names the flag) and
/// exits with [`EXIT_BAD_CONFIG`].
pub fn parse_config<T: Parser>() -> T {
    match T::try_parse() {
        Ok(config) => config,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_BAD_CONFIG } else { 0 };
            // Printing is the whole point here: this runs before logging exists.
            let _ = err.print();
            std::process::exit(code);
        }
    }
}
