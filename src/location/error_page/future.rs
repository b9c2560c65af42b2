//! Response future of [`ErrorPage`](super::ErrorPage).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::uri::{Parts, Uri};
use http::{header, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::Service;

use super::pages::{ErrorPageStatus, ErrorPages, Page, Target};
use crate::location::InternalRedirect;

pin_project! {
    /// Response future of [`ErrorPage`](super::ErrorPage): the inner service's response,
    /// or the error page that replaces it.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, Oneshot<S, Request<B>>>,
        redirect: Option<Redirect<S>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, G> {
        Inner { #[pin] future: F },
        Page { #[pin] future: G, error: StatusCode, status: ErrorPageStatus },
    }
}

/// What an error page needs: the request's head, the service to fetch it from, the pages.
pub(crate) struct Redirect<E> {
    pub(crate) head: Request<()>,
    pub(crate) target: E,
    pub(crate) pages: ErrorPages,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(future: S::Future, redirect: Option<Redirect<S>>) -> Self {
        Self {
            state: State::Inner { future },
            redirect,
        }
    }
}

/// The request for `page`, made from the original request's head.
fn page_request<B: Default>(head: Request<()>, target: &Target) -> Request<B> {
    let (mut parts, ()) = head.into_parts();
    match target {
        Target::Uri(path) => {
            // nginx: an error page is fetched with GET, except for HEAD requests.
            if parts.method != Method::HEAD {
                parts.method = Method::GET;
            }
            let mut uri = Parts::default();
            uri.scheme = parts.uri.scheme().cloned();
            uri.authority = parts.uri.authority().cloned();
            uri.path_and_query = Some(path.clone());
            parts.uri = Uri::from_parts(uri).unwrap_or_else(|_| {
                // Only a URI with a scheme but no authority can fail; use the path alone.
                Uri::from(path.clone())
            });
            parts.extensions.insert(InternalRedirect::uri());
        }
        Target::Named(name) => {
            parts
                .extensions
                .insert(InternalRedirect::named(name.clone()));
        }
        Target::Redirect(_) => unreachable!("client redirects need no request"),
    }
    Request::from_parts(parts, B::default())
}

fn with_status<B>(mut res: Response<B>, status: StatusCode) -> Response<B> {
    *res.status_mut() = status;
    res
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Default,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let res = ready!(future.poll(cx))?;
                    let error = res.status();
                    let page = match this.redirect.as_ref().and_then(|r| r.pages.get(error)) {
                        Some(page) => page.clone(),
                        None => return Poll::Ready(Ok(res)),
                    };
                    let redirect = this.redirect.take().expect("checked above");
                    let Page { target, status } = page;
                    if let Target::Redirect(location) = &target {
                        let status = match status {
                            ErrorPageStatus::Fixed(s) if is_redirect(s) => s,
                            _ => StatusCode::FOUND,
                        };
                        let mut res = with_status(Response::new(ResBody::default()), status);
                        res.headers_mut().insert(header::LOCATION, location.clone());
                        return Poll::Ready(Ok(res));
                    }
                    tracing::debug!(%error, ?target, "error page");
                    let req = page_request(redirect.head, &target);
                    this.state.set(State::Page {
                        future: Oneshot::new(redirect.target, req),
                        error,
                        status,
                    });
                }
                StateProj::Page {
                    future,
                    error,
                    status,
                } => {
                    let res = ready!(future.poll(cx))?;
                    let status = match *status {
                        ErrorPageStatus::Error if is_error(res.status()) => res.status(),
                        ErrorPageStatus::Error => *error,
                        ErrorPageStatus::Page => res.status(),
                        ErrorPageStatus::Fixed(s) => s,
                    };
                    return Poll::Ready(Ok(with_status(res, status)));
                }
            }
        }
    }
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn is_error(s: StatusCode) -> bool {
    s.is_client_error() || s.is_server_error()
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Page { .. } => "error page",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}
