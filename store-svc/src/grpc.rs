//! The `edge.v1.StoreService` handlers: proto in, validated domain types to the
//! writer and the database, proto out. [`StoreError`] is the one place where
//! failures become gRPC statuses.

use std::sync::Arc;

use edge_proto::v1 as pb;
use edge_proto::v1::store_service_server::StoreService;
use tonic::{Request, Response, Status};

use crate::db::{Database, DbError};
use crate::model::{
    FieldViolation, MAX_APPEND_READINGS, NewReading, Outcome, ReadingQuery, us_to_timestamp,
};
use crate::writer::{WriteError, Writer};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is malformed.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How a database error looks to callers: transient (retry) or not.
fn db_status(err: &DbError) -> Status {
    const FULL: &str = "the site's storage is full; nothing of this call was stored";
    const RETRY: &str = "the site database is unavailable; nothing of this call was stored, retry";
    match err {
        DbError::Query(
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
        )
        | DbError::Connect { .. } => Status::unavailable(RETRY),
        DbError::Query(sqlx::Error::Database(db)) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                // PostgreSQL disk full / out of memory; SQLite SQLITE_FULL (13).
                "53100" | "53200" | "13" => Status::resource_exhausted(FULL),
                // PostgreSQL connection (08), operator intervention (57),
                // resources (53), serialization (40); SQLite BUSY (5), LOCKED (6)
                // and their extended codes.
                c if c.starts_with("08")
                    || c.starts_with("57")
                    || c.starts_with("53")
                    || c.starts_with("40") =>
                {
                    Status::unavailable(RETRY)
                }
                c if c.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)) => {
                    Status::unavailable(RETRY)
                }
                _ => Status::internal("the site database failed; see store-svc logs"),
            }
        }
        _ => Status::internal("the site database failed; see store-svc logs"),
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        match err {
            StoreError::Invalid(violations) => {
                edge_runtime::status::invalid_argument("invalid store request", violations)
            }
            StoreError::Write(WriteError::Closed) => {
                Status::unavailable("store-svc is shutting down")
            }
            StoreError::Write(WriteError::Db(err)) => db_status(&err),
            StoreError::Db(err) => {
                tracing::error!(error = %err, "store query failed");
                db_status(&err)
            }
        }
    }
}

/// The StoreService implementation.
pub struct StoreGrpc {
    writer: Writer,
    db: Arc<Database>,
}

impl StoreGrpc {
    /// Handlers over `db`, appending through `writer`.
    pub fn new(writer: Writer, db: Arc<Database>) -> Self {
        Self { writer, db }
    }
}

fn outcome_to_proto(outcome: Outcome) -> pb::ReadingOutcome {
    match outcome {
        Outcome::Stored => pb::ReadingOutcome::Stored,
        Outcome::Duplicate => pb::ReadingOutcome::Duplicate,
        Outcome::Conflict => pb::ReadingOutcome::Conflict,
    }
}

#[tonic::async_trait]
impl StoreService for StoreGrpc {
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let raw = request.into_inner().readings;
        if raw.len() > MAX_APPEND_READINGS {
            return Err(StoreError::Invalid(vec![(
                "readings".into(),
                format!(
                    "at most {MAX_APPEND_READINGS} readings per call, got {}",
                    raw.len()
                ),
            )])
            .into());
        }
        let mut readings = Vec::with_capacity(raw.len());
        let mut violations = Vec::new();
        for (i, reading) in raw.into_iter().enumerate() {
            match NewReading::from_proto(reading, &format!("readings[{i}]")) {
                Ok(reading) => readings.push(reading),
                Err(mut errs) => violations.append(&mut errs),
            }
        }
        if !violations.is_empty() {
            // ingest-svc validates first; a bad append is a caller bug, so the
            // whole call is refused rather than partly applied.
            return Err(StoreError::Invalid(violations).into());
        }
        let outcomes = self
            .writer
            .append(readings)
            .await
            .map_err(StoreError::from)?;
        let results = outcomes
            .into_iter()
            .map(|o| pb::AppendResult {
                outcome: outcome_to_proto(o.outcome) as i32,
                seq: u64::try_from(o.seq).unwrap_or(0),
                clock_suspect: o.clock_suspect,
                version: Some(o.version.to_proto()),
            })
            .collect();
        Ok(Response::new(pb::AppendResponse { results }))
    }

    async fn query_readings(
        &self,
        request: Request<pb::QueryReadingsRequest>,
    ) -> Result<Response<pb::QueryReadingsResponse>, Status> {
        let query = ReadingQuery::from_proto(request.into_inner()).map_err(StoreError::Invalid)?;
        let (rows, next) = self.db.query(&query).await.map_err(StoreError::from)?;
        Ok(Response::new(pb::QueryReadingsResponse {
            readings: rows.into_iter().map(|r| r.into_proto()).collect(),
            next_page_token: next.map(|c| query.encode_token(c)).unwrap_or_default(),
        }))
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let stats = self.db.stats().await.map_err(StoreError::from)?;
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Response::new(pb::GetStatsResponse {
            site_id: stats.site_id,
            backend: stats.backend.to_owned(),
            total_readings: to_u64(stats.total_readings),
            total_versions: to_u64(stats.total_versions),
            unsynced_versions: to_u64(stats.unsynced_versions),
            dead_letters: to_u64(stats.dead_letters),
            oldest_unsynced_at: stats.oldest_unsynced_us.map(us_to_timestamp),
            database_bytes: to_u64(stats.database_bytes),
            last_seq: to_u64(stats.last_seq),
            hlc: Some(pb::Hlc {
                physical_ms: stats.hlc.physical_ms,
                logical: u32::from(stats.hlc.logical),
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::error::{DatabaseError, ErrorKind};
    use tonic::Code;

    use super::*;

    /// A database error carrying only a code, as either driver reports it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "database error {}", self.0)
        }
    }
    impl std::error::Error for Coded {}
    impl DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn code_for(code: &'static str) -> Code {
        db_status(&DbError::Query(sqlx::Error::Database(Box::new(Coded(
            code,
        )))))
        .code()
    }

    #[test]
    fn full_storage_is_resource_exhausted() {
        assert_eq!(code_for("53100"), Code::ResourceExhausted); // PostgreSQL disk_full
        assert_eq!(code_for("13"), Code::ResourceExhausted); // SQLITE_FULL
    }

    #[test]
    fn transient_failures_are_unavailable() {
        assert_eq!(code_for("08006"), Code::Unavailable); // PostgreSQL connection failure
        assert_eq!(code_for("57P01"), Code::Unavailable); // admin shutdown
        assert_eq!(code_for("40001"), Code::Unavailable); // serialization failure
        assert_eq!(code_for("5"), Code::Unavailable); // SQLITE_BUSY
        assert_eq!(code_for("517"), Code::Unavailable); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(
            db_status(&DbError::Query(sqlx::Error::PoolTimedOut)).code(),
            Code::Unavailable
        );
    }

    #[test]
    fn other_failures_are_internal_without_details() {
        let status = db_status(&DbError::Query(sqlx::Error::Database(Box::new(Coded(
            "23505",
        )))));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("23505"));
    }
}
