//! nginx's `keepalive_requests` (default 1000): after that many requests on one client
//! connection, the response carries `Connection: close` and the connection closes after it;
//! the client opens a new one, which any worker may accept.
//!
//! nginx does this to free a connection's memory from time to time. On a machine with idle
//! cores it also moves a busy client between workers: the new connection lands on whichever
//! worker the kernel hands it to (see the README's Performance section).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, StatusCode};

/// nginx's default `keepalive_requests`.
pub(crate) const DEFAULT: u32 = 1000;

/// Wraps one connection's service: the response to its `limit`th request closes it.
#[derive(Clone)]
pub(crate) struct KeepaliveRequests<S> {
    inner: S,
    limit: u32,
    // Shared by the clones of one connection's service (a stack that is not ready is driven
    // by a clone, see `adapter`), so each request counts once.
    served: Arc<AtomicU32>,
}

impl<S> KeepaliveRequests<S> {
    /// As nginx, `limit` 0 closes every connection after its first response.
    pub(crate) fn new(inner: S, limit: u32) -> Self {
        Self {
            inner,
            limit,
            served: Arc::new(AtomicU32::new(0)),
        }
    }
}

impl<S, B, RB> tower::Service<Request<B>> for KeepaliveRequests<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let served = self
            .served
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let last = served >= self.limit;
        ResponseFuture {
            fut: self.inner.call(req),
            last,
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`KeepaliveRequests`].
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        fut: F,
        last: bool,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.fut.poll(cx))?;
        // A 101 hands the connection over to a tunnel: closing it would break the upgrade.
        if *this.last && res.status() != StatusCode::SWITCHING_PROTOCOLS {
            // hyper closes the connection after a response that says so.
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(res))
    }
}
