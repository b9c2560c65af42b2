//! Response future of [`Upstream`](crate::Upstream).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::SelectedPeer;
use crate::body::{Active, ResponseBody};
use crate::error::is_timeout;
use crate::BoxError;

pin_project! {
    /// Response future of [`Upstream`](crate::Upstream).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            attempt: Option<Attempt>,
        },
        Unavailable {
            status: StatusCode,
        },
    }
}

/// The peer a request was sent to, and its in-flight count.
pub(crate) struct Attempt {
    pub(crate) active: Active,
    pub(crate) selected: SelectedPeer,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, attempt: Attempt) -> Self {
        Self {
            kind: Kind::Called {
                future,
                attempt: Some(attempt),
            },
        }
    }

    pub(crate) fn unavailable(status: StatusCode) -> Self {
        Self {
            kind: Kind::Unavailable { status },
        }
    }
}

/// The response the upstream makes itself for `status` (nginx's plain error page).
pub(crate) fn synthetic<B>(status: StatusCode) -> Response<ResponseBody<B>> {
    let text = match status {
        StatusCode::BAD_GATEWAY => "502 Bad Gateway\n",
        StatusCode::SERVICE_UNAVAILABLE => "503 Service Unavailable\n",
        StatusCode::GATEWAY_TIMEOUT => "504 Gateway Timeout\n",
        _ => "upstream unavailable\n",
    };
    let mut res = Response::new(ResponseBody::synthetic(text));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Unavailable { status } => Poll::Ready(Ok(synthetic(*status))),
            KindProj::Called { future, attempt } => {
                let result = ready!(future.poll(cx));
                let Attempt { active, selected } = attempt
                    .take()
                    .expect("ResponseFuture polled after completion");
                let now = Instant::now();
                let res = match result {
                    Ok(res) => {
                        active.peers().record(active.index(), false, now);
                        res.map(|body| ResponseBody::upstream(body, active))
                    }
                    Err(err) => {
                        let err: BoxError = err.into();
                        active.peers().record(active.index(), true, now);
                        let timeout = is_timeout(&*err);
                        tracing::warn!(
                            peer = %selected.name(),
                            error = %err,
                            timeout,
                            "upstream request failed"
                        );
                        synthetic(if timeout {
                            StatusCode::GATEWAY_TIMEOUT
                        } else {
                            StatusCode::BAD_GATEWAY
                        })
                    }
                };
                let mut res = res;
                res.extensions_mut().insert(selected);
                Poll::Ready(Ok(res))
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
