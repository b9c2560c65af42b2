//! [`ErrorPage`]: nginx's `error_page`, replacing error responses with the answer of
//! another location or service.
//!
//! `error_page 500 502 503 504 /50x.html;` makes nginx answer a `502` with the content of
//! `/50x.html`, fetched by an internal redirect that goes through location matching again.
//! [`ErrorPage`] does the same around a [`Locations`]: for a listed status it sends a second
//! request to (a clone of) the same `Locations` and answers with that, under the status
//! [`ErrorPageStatus`] says. To answer with some other service, give it a location (a named
//! one, or an [`internal`](super::Location::internal) exact one) and point the page there.
//!
//! - A target URI (`/50x.html`) is fetched with `GET` (a `HEAD` stays a `HEAD`), the
//!   client's headers and request extensions, an empty body, and an [`InternalRedirect`]
//!   extension, so that [`internal`](super::Location::internal) locations answer it.
//! - A named location (`@fallback`) gets the original method and URI, an empty body, and
//!   `InternalRedirect::named("@fallback")`, which [`Locations`] follows.
//! - Any other target redirects the client (`302 Found` with `Location`).
//!
//! An error page is applied once: an error from the page service is passed on as it is
//! (nginx's `recursive_error_pages off`).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, util::BoxCloneSyncService, Layer, ServiceExt};
//! use tower_upstream::location::{ErrorPageLayer, ErrorPages, Locations};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type Svc = BoxCloneSyncService<Request<String>, Response<String>, Infallible>;
//! let fixed = |status: u16, body: &'static str| -> Svc {
//!     BoxCloneSyncService::new(service_fn(move |_: Request<String>| async move {
//!         let mut res = Response::new(body.to_owned());
//!         *res.status_mut() = StatusCode::from_u16(status).unwrap();
//!         Ok::<_, Infallible>(res)
//!     }))
//! };
//! let locations = Locations::builder()
//!     .prefix("/", fixed(502, "upstream down"))
//!     .exact("/50x.html", fixed(200, "<h1>Sorry</h1>"))
//!     .build()?;
//! // error_page 500 502 503 504 /50x.html;
//! let pages = ErrorPages::builder().page([500, 502, 503, 504], "/50x.html").build()?;
//! let app = ErrorPageLayer::new(pages).layer(locations);
//!
//! let res = app.oneshot(Request::get("/app").body(String::new())?).await?;
//! assert_eq!(res.status(), StatusCode::BAD_GATEWAY); // the error's status...
//! assert_eq!(res.body(), "<h1>Sorry</h1>"); // ...with the page's content
//! # Ok(()) }
//! ```
//!
//! # Request and response bodies
//!
//! The page request has an empty body, `ReqBody::default()`, and a client redirect an empty
//! response body, `ResBody::default()`. hyper's `Incoming` has no `Default`: convert the
//! request body first, for example to `axum::body::Body` or http-body-util's
//! `UnsyncBoxBody` (both are `Default`).
//!
//! # Cost
//!
//! To be able to send the page request, each request's method, URI, headers and extensions
//! are cloned before it goes to the inner service (nothing is cloned when no page is
//! configured).
//!
//! # Differences from nginx
//!
//! - Every response with a listed status is replaced, including those a backend sent:
//!   nginx's `proxy_intercept_errors on`. (With nginx's default, `off`, only the errors
//!   nginx makes itself are, such as the `502` of an unreachable upstream.)
//! - With [`ErrorPageStatus::Error`], a page request that itself fails with `4xx`/`5xx`
//!   answers with that status (nginx does this for its own errors, such as a missing page
//!   file, but sends the original status for a failing proxied page).
//! - The page request has no body, including for a named location.
//!
//! # Why the pages come from the wrapped service
//!
//! A separate page service of another type would have to produce the very same response
//! type, and with body types such as `UnsyncBoxBody<Bytes, Box<dyn Error + Send + Sync>>`
//! rustc then cannot prove the server future `Send` inside `tokio::spawn` ("implementation
//! of `Service` is not general enough"). One service type avoids that, and it is nginx's
//! model anyway: the redirect goes through the server's locations.
//!
//! [`Locations`]: super::Locations
//! [`InternalRedirect`]: super::InternalRedirect

mod future;
mod pages;

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

pub use future::ResponseFuture;
pub use pages::{ErrorPageStatus, ErrorPages, ErrorPagesBuilder};

use future::Redirect;

/// Layer of [`ErrorPage`]. See the [module docs](self) for an example.
#[derive(Debug, Clone)]
#[must_use]
pub struct ErrorPageLayer {
    pages: ErrorPages,
}

impl ErrorPageLayer {
    /// Error pages `pages`, fetched from the wrapped service.
    pub fn new(pages: ErrorPages) -> Self {
        Self { pages }
    }
}

impl<S> Layer<S> for ErrorPageLayer {
    type Service = ErrorPage<S>;

    fn layer(&self, inner: S) -> ErrorPage<S> {
        ErrorPage::new(inner, self.pages.clone())
    }
}

/// Replaces responses whose status has an error page with that page, fetched from the
/// wrapped service itself: nginx's `error_page`. See the [module docs](self).
#[derive(Clone)]
pub struct ErrorPage<S> {
    inner: S,
    pages: ErrorPages,
}

impl<S> ErrorPage<S> {
    /// Wraps `inner`, typically a [`Locations`](super::Locations).
    pub fn new(inner: S, pages: ErrorPages) -> Self {
        Self { inner, pages }
    }

    /// The layer, as [`ErrorPageLayer::new`].
    pub fn layer(pages: ErrorPages) -> ErrorPageLayer {
        ErrorPageLayer::new(pages)
    }

    /// The error pages.
    pub fn pages(&self) -> &ErrorPages {
        &self.pages
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming `self`.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ErrorPage<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorPage")
            .field("inner", &self.inner)
            .field("pages", &self.pages)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorPage<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Default,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let redirect = (!self.pages.is_empty()).then(|| {
            let mut head = Request::new(());
            *head.method_mut() = req.method().clone();
            *head.uri_mut() = req.uri().clone();
            *head.version_mut() = req.version();
            *head.headers_mut() = req.headers().clone();
            *head.extensions_mut() = req.extensions().clone();
            Redirect {
                head,
                // The page goes through a clone of the inner service, driven to readiness
                // by its own `Oneshot`; the ready inner service takes this request.
                target: self.inner.clone(),
                pages: self.pages.clone(),
            }
        });
        ResponseFuture::new(self.inner.call(req), redirect)
    }
}
