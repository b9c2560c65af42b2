//! Response future of [`Locations`](super::Locations).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::Service;

pin_project! {
    /// Response future of [`Locations`](super::Locations): the chosen location's service,
    /// driven from readiness to response, or the router's own `400`/`404`/`500`.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Routed { #[pin] future: Oneshot<S, Req> },
        Status { status: StatusCode },
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn routed(future: Oneshot<S, Req>) -> Self {
        Self {
            kind: Kind::Routed { future },
        }
    }

    pub(crate) fn status(status: StatusCode) -> Self {
        Self {
            kind: Kind::Status { status },
        }
    }
}

impl<S, Req, ResBody> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Routed { future } => future.poll(cx),
            KindProj::Status { status } => {
                let mut res = Response::new(ResBody::default());
                *res.status_mut() = *status;
                Poll::Ready(Ok(res))
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Routed { .. } => f.write_str("ResponseFuture(routed)"),
            Kind::Status { status } => write!(f, "ResponseFuture({status})"),
        }
    }
}
