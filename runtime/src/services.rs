//! Several services in one process (`edge up`), started and stopped in an
//! order the caller states, so the wiring of a mesh is only which service
//! goes where.
//!
//! Each service is stopped in a *stage*: on shutdown, stage 0's services are
//! told to stop, and once all of them have ended, stage 1's are, and so on.
//! A service whose callers live in the same process stops after them (the
//! store after ingest and sync), so their last calls still find it. A
//! service that ends before shutdown either takes the process down with it
//! or is reported and left ended, as [`OnEarlyExit`] says.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::serve::ServeError;
use crate::shutdown::Shutdown;

/// A built service, listening and ready to run.
pub trait Service: Send + 'static {
    /// The address its gRPC server listens on (the real port when bound to 0).
    fn local_addr(&self) -> SocketAddr;

    /// Serves until `shutdown` is cancelled, then drains and stops its own
    /// background work.
    fn run(self, shutdown: Shutdown) -> impl Future<Output = Result<(), ServeError>> + Send;
}

/// What ending before shutdown means for the rest of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEarlyExit {
    /// The process shuts down: the others cannot do their work without it.
    StopProcess,
    /// The others go on; its error is logged now and returned at exit.
    KeepRunning,
}

/// A service of the set could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// Its server failed.
    #[error("{name} failed: {source}")]
    Failed {
        /// The service.
        name: &'static str,
        /// What failed.
        #[source]
        source: ServeError,
    },
    /// Its task or thread ended without a result (it panicked).
    #[error("{name} ended without a result (its task panicked)")]
    Lost {
        /// The service.
        name: &'static str,
    },
    /// Its thread or its runtime could not be started.
    #[error("cannot start {name}'s thread: {source}")]
    Thread {
        /// The service.
        name: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// It could not be built on its thread.
    #[error("{name} could not start: {source}")]
    Start {
        /// The service.
        name: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

struct Member {
    name: &'static str,
    stage: usize,
    stop: Shutdown,
    done: oneshot::Receiver<Result<(), ServeError>>,
}

/// The services of one process and the order they stop in.
pub struct Services {
    process: Shutdown,
    members: Vec<Member>,
    /// The service whose failure came first while the process was up: the
    /// error reported at exit, as the likely cause of the rest.
    first_early_failure: Arc<Mutex<Option<&'static str>>>,
}

impl Services {
    /// An empty set; `process` is the process's shutdown token (cancelled on
    /// SIGTERM, or by a service that ends with [`OnEarlyExit::StopProcess`]).
    pub fn new(process: Shutdown) -> Self {
        Self {
            process,
            members: Vec::new(),
            first_early_failure: Arc::default(),
        }
    }

    /// Runs `service` on this runtime until its stage is stopped.
    pub fn spawn<S: Service>(
        &mut self,
        name: &'static str,
        stage: usize,
        on_exit: OnEarlyExit,
        service: S,
    ) {
        let stop = Shutdown::new();
        let (tx, done) = oneshot::channel();
        let watch = self.watcher(name, on_exit);
        tokio::spawn(watch.follow(service.run(stop.clone()), tx));
        self.members.push(Member {
            name,
            stage,
            stop,
            done,
        });
    }

    /// Builds and runs a service on an OS thread of its own, with a
    /// single-threaded runtime, at CPU priority `nice` (Linux: the nice value
    /// is the thread's alone), so its CPU work runs only on what the rest of
    /// the process leaves. Returns once it is built, with its address.
    pub async fn spawn_on_thread<S, B, Fut, E>(
        &mut self,
        name: &'static str,
        stage: usize,
        on_exit: OnEarlyExit,
        nice: i32,
        build: B,
    ) -> Result<SocketAddr, ServicesError>
    where
        S: Service,
        B: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let stop = Shutdown::new();
        let (addr_tx, addr_rx) = oneshot::channel();
        let (tx, done) = oneshot::channel();
        let watch = self.watcher(name, on_exit);
        let service_stop = stop.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Err(err) = rustix::process::setpriority_process(None, nice) {
                    tracing::warn!(%err, service = name, "cannot lower the thread's CPU priority; it runs at normal priority");
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = addr_tx.send(Err(ServicesError::Thread { name, source }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let service = match build().await {
                        Ok(service) => service,
                        Err(err) => {
                            let _ = addr_tx.send(Err(ServicesError::Start {
                                name,
                                source: Box::new(err),
                            }));
                            return;
                        }
                    };
                    let _ = addr_tx.send(Ok(service.local_addr()));
                    watch.follow(service.run(service_stop), tx).await;
                });
            })
            .map_err(|source| ServicesError::Thread { name, source })?;
        let addr = addr_rx.await.map_err(|_| ServicesError::Lost { name })??;
        self.members.push(Member {
            name,
            stage,
            stop,
            done,
        });
        Ok(addr)
    }

    fn watcher(&self, name: &'static str, on_exit: OnEarlyExit) -> Watcher {
        Watcher {
            name,
            on_exit,
            process: self.process.clone(),
            first_early_failure: self.first_early_failure.clone(),
        }
    }

    /// Waits for the process's shutdown, then stops the services stage by
    /// stage. Every failure is logged; the one returned is the first that
    /// happened while the process was up, else the first in stopping order.
    pub async fn run(self) -> Result<(), ServicesError> {
        self.process.cancelled().await;
        let early = self
            .first_early_failure
            .lock()
            .ok()
            .and_then(|first| *first);
        let mut members = self.members;
        members.sort_by_key(|m| m.stage);
        let mut first_error = None;
        let mut early_error = None;
        let mut rest = members.into_iter().peekable();
        while let Some(stage) = rest.peek().map(|m| m.stage) {
            let mut this_stage = Vec::new();
            while let Some(member) = rest.next_if(|m| m.stage == stage) {
                member.stop.cancel();
                this_stage.push(member);
            }
            for member in this_stage {
                let error = match member.done.await {
                    Ok(Ok(())) => continue,
                    Ok(Err(source)) => ServicesError::Failed {
                        name: member.name,
                        source,
                    },
                    Err(_) => ServicesError::Lost { name: member.name },
                };
                tracing::error!(%error, "a service of this process failed");
                if Some(member.name) == early {
                    early_error = Some(error);
                } else {
                    first_error.get_or_insert(error);
                }
            }
        }
        early_error.or(first_error).map_or(Ok(()), Err)
    }
}

/// Says what a service's early end means, as soon as it ends.
struct Watcher {
    name: &'static str,
    on_exit: OnEarlyExit,
    process: Shutdown,
    first_early_failure: Arc<Mutex<Option<&'static str>>>,
}

impl Watcher {
    /// Runs the service in a task of its own, so that a panic is seen as its
    /// end too, then hands its result (none after a panic) to `done`.
    async fn follow(
        self,
        run: impl Future<Output = Result<(), ServeError>> + Send + 'static,
        done: oneshot::Sender<Result<(), ServeError>>,
    ) {
        let result = tokio::spawn(run).await.ok();
        self.ended(result.as_ref());
        if let Some(result) = result {
            let _ = done.send(result);
        }
    }

    /// `result` is `None` when the service panicked.
    fn ended(&self, result: Option<&Result<(), ServeError>>) {
        if self.process.is_cancelled() {
            return;
        }
        if !matches!(result, Some(Ok(())))
            && let Ok(mut first) = self.first_early_failure.lock()
        {
            first.get_or_insert(self.name);
        }
        match (self.on_exit, result) {
            (OnEarlyExit::StopProcess, _) => {
                tracing::error!(
                    service = self.name,
                    "stopped on its own; shutting the process down"
                );
                self.process.cancel();
            }
            (OnEarlyExit::KeepRunning, Some(Err(err))) => {
                tracing::error!(service = self.name, %err, "failed; the rest of the process keeps running");
            }
            (OnEarlyExit::KeepRunning, None) => {
                tracing::error!(
                    service = self.name,
                    "panicked; the rest of the process keeps running"
                );
            }
            (OnEarlyExit::KeepRunning, Some(Ok(()))) => {
                tracing::warn!(service = self.name, "stopped on its own");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Records when it is stopped; ends on its own when `fail_at_once`.
    struct Probe {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
        fail_at_once: bool,
    }

    impl Service for Probe {
        fn local_addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 0))
        }

        async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
            if !self.fail_at_once {
                shutdown.cancelled().await;
                // Give a later stage the chance to be stopped too early.
                tokio::task::yield_now().await;
            }
            self.log.lock().expect("not poisoned").push(self.name);
            Ok(())
        }
    }

    fn probe(name: &'static str, log: &Arc<Mutex<Vec<&'static str>>>, fail: bool) -> Probe {
        Probe {
            name,
            log: log.clone(),
            fail_at_once: fail,
        }
    }

    #[tokio::test]
    async fn stages_stop_in_order_once_the_process_stops() {
        let process = Shutdown::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut services = Services::new(process.clone());
        services.spawn(
            "store",
            2,
            OnEarlyExit::StopProcess,
            probe("store", &log, false),
        );
        services.spawn(
            "health",
            0,
            OnEarlyExit::KeepRunning,
            probe("health", &log, false),
        );
        services.spawn(
            "ingest",
            1,
            OnEarlyExit::StopProcess,
            probe("ingest", &log, false),
        );
        let addr = services
            .spawn_on_thread("sync", 1, OnEarlyExit::KeepRunning, 0, {
                let log = log.clone();
                move || async move { Ok::<_, std::io::Error>(probe("sync", &log, false)) }
            })
            .await
            .expect("built");
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        process.cancel();
        services.run().await.expect("all stopped cleanly");
        let log = log.lock().expect("not poisoned").clone();
        assert_eq!(log.first(), Some(&"health"));
        assert_eq!(log.last(), Some(&"store"));
        assert_eq!(log.len(), 4);
    }

    #[tokio::test]
    async fn a_service_that_must_not_end_alone_stops_the_process() {
        let process = Shutdown::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut services = Services::new(process.clone());
        services.spawn(
            "health",
            0,
            OnEarlyExit::KeepRunning,
            probe("health", &log, false),
        );
        services.spawn(
            "store",
            1,
            OnEarlyExit::StopProcess,
            probe("store", &log, true),
        );
        tokio::time::timeout(Duration::from_secs(10), services.run())
            .await
            .expect("the process stopped by itself")
            .expect("an early clean end is not a failure");
        assert!(process.is_cancelled());
    }

    /// Panics as soon as it runs.
    struct Panics;

    impl Service for Panics {
        fn local_addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 0))
        }

        async fn run(self, _shutdown: Shutdown) -> Result<(), ServeError> {
            panic!("a bug in the service");
        }
    }

    #[tokio::test]
    async fn a_panic_is_an_early_end_and_is_the_error_reported() {
        let process = Shutdown::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut services = Services::new(process.clone());
        services.spawn(
            "health",
            0,
            OnEarlyExit::KeepRunning,
            probe("health", &log, false),
        );
        services.spawn("store", 1, OnEarlyExit::StopProcess, Panics);
        let err = tokio::time::timeout(Duration::from_secs(10), services.run())
            .await
            .expect("the process stopped by itself")
            .expect_err("a panic is a failure");
        assert!(
            matches!(err, ServicesError::Lost { name: "store" }),
            "{err}"
        );
        assert_eq!(*log.lock().expect("not poisoned"), vec!["health"]);
    }

    #[tokio::test]
    async fn a_service_that_cannot_be_built_on_its_thread_says_why() {
        let mut services = Services::new(Shutdown::new());
        let err = services
            .spawn_on_thread("sync", 0, OnEarlyExit::KeepRunning, 0, || async {
                Err::<Probe, _>(std::io::Error::other("no cloud"))
            })
            .await
            .expect_err("the build failed");
        assert_eq!(err.to_string(), "sync could not start: no cloud");
    }
}
