//! [`Locations`]: the router service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::util::Oneshot;
use tower::Service;

use super::builder::Builder;
use super::future::ResponseFuture;
use super::matched::{InternalRedirect, MatchedLocation};
use super::matcher::Matcher;
use super::normalize::InvalidPath;

/// A `tower::Service` that sends each request to the service of the location nginx would
/// choose.
///
/// See the [module docs](super) for the rules and an example.
pub struct Locations<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    matcher: Matcher,
    services: Box<[S]>,
}

impl<S> Locations<S> {
    /// A builder; add locations, then [`build`](Builder::build).
    pub fn builder() -> Builder<S> {
        Builder::default()
    }

    pub(crate) fn from_parts(matcher: Matcher, services: Box<[S]>) -> Self {
        Self {
            shared: Arc::new(Shared { matcher, services }),
        }
    }

    /// The location for a request to `path` (raw, as sent: percent-encoded; a `?` and what
    /// follows is ignored), or `None` when no location matches.
    ///
    /// Named and [`internal`](super::Location::internal) locations are not excluded here;
    /// the service answers `404` for an internal one.
    ///
    /// # Errors
    ///
    /// [`InvalidPath`] when nginx would answer `400 Bad Request`.
    ///
    /// ```
    /// # use tower_upstream::location::Locations;
    /// # let svc = tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) });
    /// let locations = Locations::builder()
    ///     .prefix("/", svc.clone())
    ///     .prefix("/secret", svc)
    ///     .build()?;
    /// for path in ["/secret", "//secret", "/%73ecret", "/admin/../secret"] {
    ///     assert_eq!(locations.find(path)?.unwrap().pattern(), "/secret");
    /// }
    /// assert!(locations.find("/../secret").is_err());
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn find(&self, path: &str) -> Result<Option<MatchedLocation>, InvalidPath> {
        self.shared.matcher.find(path.as_bytes())
    }

    /// The named location `name` (with its `@`), as matched for a request to `path`.
    pub fn named(&self, name: &str, path: &str) -> Option<MatchedLocation> {
        self.shared.matcher.named(name, path.as_bytes())
    }

    /// The service of a location this router returned (located by
    /// [`MatchedLocation::id`]).
    ///
    /// # Panics
    ///
    /// If `location` comes from a larger `Locations`; one from a smaller one gives an
    /// unrelated service.
    pub fn service(&self, location: &MatchedLocation) -> &S {
        &self.shared.services[location.id()]
    }

    /// The number of locations, nested ones included.
    pub fn len(&self) -> usize {
        self.shared.services.len()
    }

    /// Whether there are no locations: every request gets `404`.
    pub fn is_empty(&self) -> bool {
        self.shared.services.is_empty()
    }

    /// The location for `req`, or the status to answer with.
    fn route<B>(&self, req: &Request<B>) -> Result<MatchedLocation, StatusCode> {
        let redirect = req.extensions().get::<InternalRedirect>();
        let path = req.uri().path();
        if let Some(name) = redirect.and_then(InternalRedirect::named_location) {
            // nginx: "could not find named location" is a 500.
            return self
                .named(name, path)
                .ok_or(StatusCode::INTERNAL_SERVER_ERROR);
        }
        match self.find(path) {
            Ok(Some(m)) if m.info.internal && redirect.is_none() => Err(StatusCode::NOT_FOUND),
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(StatusCode::NOT_FOUND),
            Err(_) => Err(StatusCode::BAD_REQUEST),
        }
    }
}

impl<S> Clone for Locations<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for Locations<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let locations: Vec<_> = self
            .shared
            .matcher
            .locs
            .iter()
            .map(|loc| match loc.info.kind.modifier() {
                "" => loc.info.pattern.to_string(),
                modifier => format!("{modifier} {}", loc.info.pattern),
            })
            .collect();
        f.debug_struct("Locations")
            .field("locations", &locations)
            .field("merge_slashes", &self.shared.matcher.merge_slashes)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Locations<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    /// Always ready: the target is known only once the request is seen, and its readiness
    /// is driven in the response future (see the module docs, "Backpressure").
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.route(&req) {
            Ok(location) => {
                tracing::trace!(%location, uri = %req.uri(), "location");
                let service = self.shared.services[location.id()].clone();
                req.extensions_mut().insert(location);
                ResponseFuture::routed(Oneshot::new(service, req))
            }
            Err(status) => ResponseFuture::status(status),
        }
    }
}
