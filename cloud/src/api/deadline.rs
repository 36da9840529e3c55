//! `--body-timeout`: a request body must arrive whole within a deadline
//! that starts when the handler chain begins (headers read). The body is
//! wrapped so that reading it past the deadline fails with [`BodyTimedOut`],
//! which [`super::body::read_limited`] answers `408` with `Connection:
//! close`. A client trickling a body byte by byte cannot hold a handler (and
//! the write connection behind it) for longer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// The body did not arrive within `--body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub(crate) struct BodyTimedOut(pub Duration);

/// A body that fails once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(this.timeout).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Puts the request body under a deadline of `timeout` from now.
pub(crate) async fn body_deadline(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        })
    });
    next.run(request).await
}

/// The deadline `err` (or one of its causes) reports, if it is a timeout.
pub(crate) fn timed_out(err: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(BodyTimedOut(timeout)) = err.downcast_ref::<BodyTimedOut>() {
            return Some(*timeout);
        }
        cause = err.source();
    }
    None
}
