//! A tower service as a hyper service for one connection, without a clone per request.
//!
//! hyper calls its services through `&self`, and `hyper_util`'s `TowerToHyperService` meets
//! that by cloning the whole tower stack for every request and driving the clone with
//! `oneshot`. Each clone and drop touches the reference counts of the stack's shared parts
//! (the upstream, its peers' pools, the header rules). With several workers those counts are
//! shared by every core, and each request moves their cache lines between cores.
//!
//! One HTTP/1 connection has one request in flight at a time, so its service can be held in
//! a `RefCell` and called in place. A stack that is not ready at once (never the case for the
//! gateway's, whose `poll_ready` is always ready) is cloned and driven as before.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// `svc` served to one connection, called in place when it is ready.
pub(crate) struct InPlace<S> {
    svc: RefCell<S>,
}

impl<S> InPlace<S> {
    pub(crate) fn new(svc: S) -> Self {
        Self {
            svc: RefCell::new(svc),
        }
    }
}

impl<S, R> hyper::service::Service<R> for InPlace<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, R>;

    fn call(&self, req: R) -> Self::Future {
        let mut svc = self.svc.borrow_mut();
        // A tower service is called only once ready. A stack that is not ready now is
        // polled again by a clone of its own, with the connection's waker.
        let ready = svc.poll_ready(&mut Context::from_waker(Waker::noop()));
        let state = match ready {
            Poll::Ready(Ok(())) => State::Called { fut: svc.call(req) },
            Poll::Ready(Err(e)) => State::Failed { error: Some(e) },
            Poll::Pending => State::Waiting {
                fut: svc.clone().oneshot(req),
            },
        };
        ResponseFuture { state }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`InPlace`].
    pub(crate) struct ResponseFuture<S: Service<R>, R> {
        #[pin]
        state: State<S, R>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S: Service<R>, R> {
        Called { #[pin] fut: S::Future },
        Waiting { #[pin] fut: Oneshot<S, R> },
        Failed { error: Option<S::Error> },
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut } => fut.poll(cx),
            StateProj::Waiting { fut } => fut.poll(cx),
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}
