//! The response future of `HttpPeer`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use hyper_util::client::legacy;
use hyper_util::client::legacy::connect::CaptureConnection;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::error::Error;

pin_project! {
    /// Response future for [`HttpPeer`](super::HttpPeer).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Failed {
            error: Option<Error>,
        },
        Sending {
            #[pin]
            inner: legacy::ResponseFuture,
            // Set by hyper-util once a connection is assigned to the request, right before
            // the request is written.
            assigned: CaptureConnection,
            read_timeout: Duration,
            // Armed when `assigned` is first seen set.
            #[pin]
            sleep: Option<Sleep>,
        },
    }
}

impl ResponseFuture {
    pub(crate) fn new(
        inner: legacy::ResponseFuture,
        assigned: CaptureConnection,
        read_timeout: Duration,
    ) -> Self {
        Self {
            state: State::Sending {
                inner,
                assigned,
                read_timeout,
                sleep: None,
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Incoming>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
            StateProj::Sending {
                inner,
                assigned,
                read_timeout,
                mut sleep,
            } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result.map_err(|e| {
                        let assigned = assigned.connection_metadata().is_some();
                        let error = Error::from_client(e, assigned);
                        tracing::debug!(%error, source = ?std::error::Error::source(&error));
                        error
                    }));
                }
                if sleep.is_none() {
                    // The capture is set synchronously inside the inner poll, just before the
                    // request is written, so checking after each inner poll starts the clock
                    // at the right time without needing a wakeup of its own.
                    if assigned.connection_metadata().is_none() {
                        return Poll::Pending;
                    }
                    sleep.set(Some(tokio::time::sleep(*read_timeout)));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                    tracing::debug!(timeout = ?read_timeout, "upstream timed out (read)");
                    return Poll::Ready(Err(Error::read_timeout()));
                }
                Poll::Pending
            }
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Failed { .. } => "failed",
            State::Sending { sleep: None, .. } => "connecting",
            State::Sending { sleep: Some(_), .. } => "awaiting response head",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
