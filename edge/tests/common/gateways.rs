//! Gateways that behave as real ones do while a site fails under them: each
//! keeps a batch until the site acknowledges it, retrying the same ids after
//! any refusal, and records what the site said it stored. The books they
//! keep are what a test checks the site against.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_runtime::client::AuthedChannel;
use tokio::task::JoinSet;
use tonic::Code;

/// What the fleet saw.
#[derive(Debug, Default)]
pub struct Books {
    /// Every reading acknowledged (STORED or DUPLICATE), by id, with its seq.
    pub acked: HashMap<String, u64>,
    /// Refusals by status code.
    pub refusals: HashMap<Code, u64>,
    /// The last message of each code.
    pub messages: HashMap<Code, String>,
}

/// Gateways ingesting until stopped.
pub struct Fleet {
    books: Arc<Mutex<Books>>,
    acked: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

/// Pause before a refused batch is sent again, as a gateway's backoff.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl Fleet {
    /// `gateways` gateways sending batches of `batch` readings to `ingest`.
    pub fn start(
        ingest: IngestServiceClient<AuthedChannel>,
        gateways: usize,
        batch: usize,
    ) -> Fleet {
        let books = Arc::new(Mutex::new(Books::default()));
        let acked = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for g in 0..gateways {
            let mut client = ingest.clone();
            let (books, acked, refused, stop) =
                (books.clone(), acked.clone(), refused.clone(), stop.clone());
            tasks.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let readings: Vec<pb::Reading> = (0..batch)
                        .map(|i| super::reading(&format!("gw-{g}-{}", i % 7), 20.0))
                        .collect();
                    // The batch is kept until acknowledged, whatever happens.
                    loop {
                        match client
                            .ingest(pb::IngestRequest {
                                readings: readings.clone(),
                            })
                            .await
                        {
                            Ok(reply) => {
                                let reply = reply.into_inner();
                                let mut books = books.lock().expect("books");
                                for result in reply.results {
                                    let outcome = pb::ReadingOutcome::try_from(result.outcome);
                                    assert!(
                                        matches!(
                                            outcome,
                                            Ok(pb::ReadingOutcome::Stored
                                                | pb::ReadingOutcome::Duplicate)
                                        ),
                                        "a valid reading was answered {outcome:?}: {result:?}"
                                    );
                                    assert!(result.seq > 0, "acknowledged without a seq");
                                    books.acked.insert(result.id, result.seq);
                                }
                                acked.fetch_add(batch as u64, Ordering::SeqCst);
                                break;
                            }
                            Err(status) => {
                                assert_ne!(
                                    status.code(),
                                    Code::InvalidArgument,
                                    "valid readings refused as invalid: {status:?}"
                                );
                                refused.fetch_add(1, Ordering::SeqCst);
                                {
                                    let mut books = books.lock().expect("books");
                                    *books.refusals.entry(status.code()).or_default() += 1;
                                    books
                                        .messages
                                        .insert(status.code(), status.message().to_owned());
                                }
                                tokio::time::sleep(RETRY_PAUSE).await;
                            }
                        }
                    }
                }
            });
        }
        Fleet {
            books,
            acked,
            refused,
            stop,
            tasks,
        }
    }

    /// Readings acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Calls refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Refusals with `code` so far.
    pub fn refused_with(&self, code: Code) -> u64 {
        self.books
            .lock()
            .expect("books")
            .refusals
            .get(&code)
            .copied()
            .unwrap_or(0)
    }

    /// Stops after each gateway's batch in hand is acknowledged; the books.
    pub async fn stop(mut self) -> Books {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(done) = self.tasks.join_next().await {
            done.expect("a gateway failed");
        }
        std::mem::take(&mut *self.books.lock().expect("books"))
    }
}
