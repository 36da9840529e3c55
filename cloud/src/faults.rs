//! Fault injection: what the public port does wrong, set at run time through
//! the admin port (`PUT /admin/faults`) so tests and demos can make the cloud
//! slow, flaky, throttling, picky or dark without restarting it.
//!
//! The current [`Faults`] live in a `watch` channel: request middleware reads
//! the latest value, and every open connection holds a receiver so that a
//! change of [`FaultMode`] reaches connections that are already open, not
//! only new ones (see [`crate::server`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How the public port treats connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Serve requests.
    #[default]
    Normal,
    /// Accept TCP and reset it at once (no HTTP answer, health fails too).
    /// Open connections are reset as well.
    Refuse,
    /// Accept TCP and never read or answer, until the mode changes or the
    /// server stops. Requests on open connections stall the same way.
    BlackHole,
}

/// The faults in force. Missing fields take their defaults, so `{}` is a
/// healthy cloud and `{"mode":"refuse"}` changes only the mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Connection-level behaviour of the public port.
    pub mode: FaultMode,
    /// Added before handling every public request, health included.
    pub latency_ms: u64,
    /// Added after a batch, unsent report or simple reading is committed and
    /// before it is answered: makes "committed, but the client timed out".
    pub reply_delay_ms: u64,
    /// Share (0 to 1) of data requests (not `/health`) answered with
    /// `error_status` before anything is done.
    pub error_rate: f64,
    /// Status of those answers (400 to 599; default 503).
    pub error_status: u16,
    /// Share (0 to 1) of data requests answered `429` with `Retry-After`.
    pub throttle_rate: f64,
    /// The `Retry-After` of throttled answers, in seconds (default 1).
    pub retry_after_seconds: u64,
    /// Versions of these sensors are rejected, one by one, as unregistered.
    pub reject_sensors: Vec<String>,
    /// A batch holding any version of these sensors is refused whole with a
    /// `400 invalid_batch` that names no reading and no field.
    pub batch_reject_sensors: Vec<String>,
    /// `/health` answers `503`.
    pub health_down: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            mode: FaultMode::Normal,
            latency_ms: 0,
            reply_delay_ms: 0,
            error_rate: 0.0,
            error_status: 503,
            throttle_rate: 0.0,
            retry_after_seconds: 1,
            reject_sensors: Vec::new(),
            batch_reject_sensors: Vec::new(),
            health_down: false,
        }
    }
}

/// Longest delay the admin API accepts, so a typo cannot hang a test run
/// for days.
const MAX_DELAY_MS: u64 = 3_600_000;

/// A `PUT /admin/faults` body that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidFaults {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Faults {
    /// A healthy cloud.
    pub fn normal() -> Self {
        Faults::default()
    }

    /// Checks ranges: rates in 0..=1, statuses 400..=599, bounded delays.
    pub fn validate(&self) -> Result<(), InvalidFaults> {
        let rate = |field: &'static str, value: f64| {
            if value.is_finite() && (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(InvalidFaults {
                    field,
                    message: format!("must be between 0 and 1, got {value}"),
                })
            }
        };
        rate("error_rate", self.error_rate)?;
        rate("throttle_rate", self.throttle_rate)?;
        if !(400..=599).contains(&self.error_status) {
            return Err(InvalidFaults {
                field: "error_status",
                message: format!(
                    "must be an HTTP error status (400 to 599), got {}",
                    self.error_status
                ),
            });
        }
        for (field, value) in [
            ("latency_ms", self.latency_ms),
            ("reply_delay_ms", self.reply_delay_ms),
        ] {
            if value > MAX_DELAY_MS {
                return Err(InvalidFaults {
                    field,
                    message: format!("must be at most {MAX_DELAY_MS} (one hour), got {value}"),
                });
            }
        }
        if self.retry_after_seconds > 86_400 {
            return Err(InvalidFaults {
                field: "retry_after_seconds",
                message: format!(
                    "must be at most 86400 (one day), got {}",
                    self.retry_after_seconds
                ),
            });
        }
        Ok(())
    }
}

/// The shared, changeable fault configuration.
#[derive(Clone)]
pub struct FaultState {
    tx: Arc<watch::Sender<Arc<Faults>>>,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            tx: Arc::new(watch::Sender::new(Arc::new(Faults::normal()))),
        }
    }
}

impl FaultState {
    /// The faults in force now.
    pub fn current(&self) -> Arc<Faults> {
        self.tx.borrow().clone()
    }

    /// The mode in force now.
    pub fn mode(&self) -> FaultMode {
        self.tx.borrow().mode
    }

    /// Replaces the faults (already validated) and wakes every watcher.
    pub fn set(&self, faults: Faults) {
        if faults.mode != self.mode() {
            tracing::warn!(mode = ?faults.mode, "public port fault mode changed");
        }
        self.tx.send_replace(Arc::new(faults));
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Faults>> {
        self.tx.subscribe()
    }
}

/// True with probability `rate` (0 never, 1 always).
pub(crate) fn roll(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults() {
        let faults: Faults = serde_json::from_str(r#"{"mode":"black_hole"}"#).expect("parses");
        assert_eq!(faults.mode, FaultMode::BlackHole);
        assert_eq!(faults.error_status, 503);
        assert_eq!(faults.retry_after_seconds, 1);
        assert!(faults.validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Faults>(r#"{"error_rat":1}"#).is_err());
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let bad = Faults {
            throttle_rate: 1.5,
            ..Faults::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("throttle_rate"));
        let bad = Faults {
            error_status: 200,
            ..Faults::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("error_status"));
    }

    #[test]
    fn rolls_are_never_and_always_at_the_ends() {
        assert!((0..1000).all(|_| !roll(0.0)));
        assert!((0..1000).all(|_| roll(1.0)));
    }
}
