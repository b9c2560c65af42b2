//! [`StatusPage`]: a `tower::Service` that shows upstreams and their peers, as an HTML page
//! and as JSON (what nginx Plus's dashboard and HAProxy's stats page give their users).
//!
//! Mount it at a path of your choosing. A `GET` answers a self-refreshing HTML page: one
//! table per upstream, one row per peer, with its state in colour (up, draining, down,
//! unavailable with the time left, full), weight and effective weight, active and total
//! requests, a sparkline of the recent request rate, responses by status class, failures by
//! kind, and the moving average of its response time. `?format=json` answers the same data
//! as JSON. Other methods get `405`, other formats `404`; with [`StatusPage::path`] set,
//! other paths get `404` too. The page needs no JavaScript, and every name on it is escaped.
//!
//! The page reads each upstream through a [`StatsSource`]: any [`Upstream`] (whatever its
//! peer and policy types) or a closure returning an [`UpstreamStats`].
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use http_body_util::BodyExt;
//! use tower::{service_fn, ServiceExt};
//! use tower_upstream::status_page::StatusPage;
//! use tower_upstream::{upstream::ReplayBody, Peer, Upstream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let svc = service_fn(|_: Request<ReplayBody<String>>| async {
//! #     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//! # });
//! let upstream = Upstream::builder()
//!     .name("tserver")
//!     .peer(Peer::new("tomcat1", svc.clone()))
//!     .peer(Peer::new("<tomcat2>", svc))
//!     .build()?;
//! let page = StatusPage::new().upstream(upstream.clone());
//!
//! let res = page.clone().oneshot(Request::get("/").body(())?).await?;
//! assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
//! let html = String::from_utf8(res.into_body().collect().await?.to_bytes().to_vec())?;
//! assert!(html.contains(r#"<tr class="peer up" data-peer="tomcat1" data-health="up">"#));
//! assert!(html.contains("&lt;tomcat2&gt;")); // names are escaped
//!
//! let res = page.clone().oneshot(Request::get("/?format=json").body(())?).await?;
//! let json = String::from_utf8(res.into_body().collect().await?.to_bytes().to_vec())?;
//! assert!(json.contains(r#""name":"tserver""#) && json.contains(r#""health":"up""#));
//!
//! let res = page.oneshot(Request::post("/").body(())?).await?;
//! assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
//! # Ok(()) }
//! ```
//!
//! With axum, mount it with `Router::route_service("/upstream-status", page)`: its error type
//! is [`Infallible`]. `examples/gateway/` serves it at `/upstream-status` in front of its
//! upstream.
//!
//! # Request rate
//!
//! The sparkline is drawn from samples of each peer's request count that the page takes
//! whenever it renders (HTML or JSON), at most one a second, over the last minute. A page
//! nobody looks at takes no samples and costs nothing.
//!
//! # Sharing
//!
//! Cloning a `StatusPage` is cheap, and clones share the rate samples.
//!
//! [`Upstream`]: crate::Upstream
//! [`UpstreamStats`]: crate::stats::UpstreamStats
//! [`Infallible`]: std::convert::Infallible

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use tower::Service;

use crate::stats::{StatsSource, UpstreamStats};

mod history;
mod html;
mod json;

use history::{History, Rates};

/// A status page over one or more upstreams; see the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct StatusPage {
    config: Arc<Config>,
    history: Arc<Mutex<History>>,
}

#[derive(Clone)]
struct Config {
    sources: Vec<Arc<dyn StatsSource>>,
    title: String,
    refresh: Duration,
    path: Option<String>,
}

impl Default for StatusPage {
    fn default() -> Self {
        Self {
            config: Arc::new(Config {
                sources: Vec::new(),
                title: "Upstream status".to_owned(),
                refresh: Duration::from_secs(2),
                path: None,
            }),
            history: Arc::default(),
        }
    }
}

impl StatusPage {
    /// A page with no upstream yet, titled "Upstream status", refreshing every 2 seconds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an upstream (or any [`StatsSource`]) to the page, below the others.
    ///
    /// ```
    /// # use tower_upstream::{status_page::StatusPage, stats::UpstreamStats};
    /// let page = StatusPage::new().upstream(|| UpstreamStats::new("static", Vec::new()));
    /// assert_eq!(page.snapshot()[0].name, "static");
    /// ```
    pub fn upstream(mut self, source: impl StatsSource) -> Self {
        Arc::make_mut(&mut self.config)
            .sources
            .push(Arc::new(source));
        self
    }

    /// The page's title.
    ///
    /// ```
    /// # use tower_upstream::status_page::StatusPage;
    /// assert!(StatusPage::new().title("edge-1").html().contains("<title>edge-1</title>"));
    /// ```
    pub fn title(mut self, title: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).title = title.into();
        self
    }

    /// How often the HTML page reloads itself (whole seconds, at least 1; `Duration::ZERO`:
    /// never).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_upstream::status_page::StatusPage;
    /// let page = StatusPage::new().refresh(Duration::from_secs(5));
    /// assert!(page.html().contains(r#"<meta http-equiv="refresh" content="5">"#));
    /// ```
    pub fn refresh(mut self, every: Duration) -> Self {
        Arc::make_mut(&mut self.config).refresh = every;
        self
    }

    /// Answers only at `path` (with or without a trailing `/`), `404` elsewhere. By default
    /// the page answers at any path, for routers that already matched it.
    ///
    /// ```
    /// # use tower_upstream::status_page::StatusPage;
    /// let page = StatusPage::new().path("/upstream-status");
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).path = Some(path.into());
        self
    }

    /// A snapshot of every upstream on the page, in order.
    pub fn snapshot(&self) -> Vec<UpstreamStats> {
        self.config.sources.iter().map(|s| s.stats()).collect()
    }

    /// The HTML page as it would be served now (this takes a rate sample).
    pub fn html(&self) -> String {
        let (view, rates) = self.sample();
        html::render(&self.view_config(), &view, &rates)
    }

    /// The JSON document as it would be served now (this takes a rate sample).
    pub fn json(&self) -> String {
        let (view, rates) = self.sample();
        json::render(&view, &rates)
    }

    fn sample(&self) -> (Vec<UpstreamStats>, Vec<Vec<Rates>>) {
        let stats = self.snapshot();
        let now = tokio::time::Instant::now();
        let rates = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(now, &stats);
        (stats, rates)
    }

    fn view_config(&self) -> html::View<'_> {
        html::View {
            title: &self.config.title,
            refresh: self.config.refresh,
            now: SystemTime::now(),
        }
    }

    fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
        if let Some(path) = &self.config.path {
            if req.uri().path().trim_end_matches('/') != path.trim_end_matches('/') {
                return plain(StatusCode::NOT_FOUND, "404 Not Found\n");
            }
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let format = req
            .uri()
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("format="));
        let res = match format {
            None | Some("html") => {
                let mut res = ok("text/html; charset=utf-8", self.html());
                // No script runs on this page, whatever a peer's name holds.
                res.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
                );
                res
            }
            Some("json") => ok("application/json", self.json()),
            Some(_) => return plain(StatusCode::NOT_FOUND, "404 Not Found: unknown format\n"),
        };
        head_only(req, res)
    }
}

fn ok(content_type: &'static str, body: String) -> Response<Body> {
    let mut res = Response::new(Body::new(Bytes::from(body)));
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut res = ok("text/plain; charset=utf-8", text.to_owned());
    *res.status_mut() = status;
    res
}

/// A `HEAD` request gets the headers of a `GET` (with its length) and no body.
fn head_only<B>(req: &Request<B>, res: Response<Body>) -> Response<Body> {
    if req.method() != Method::HEAD {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let len = http_body::Body::size_hint(&body).exact().unwrap_or(0);
    parts.headers.insert(header::CONTENT_LENGTH, len.into());
    Response::from_parts(parts, Body::new(Bytes::new()))
}

impl fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusPage")
            .field("upstreams", &self.config.sources.len())
            .field("title", &self.config.title)
            .field("refresh", &self.config.refresh)
            .field("path", &self.config.path)
            .finish()
    }
}

impl<B> Service<Request<B>> for StatusPage {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            response: Some(self.respond(&req)),
        }
    }
}

/// Response future for [`StatusPage`]: the page is rendered in `call`, so it is ready at
/// once.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    response: Option<Response<Body>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        let res = self
            .response
            .take()
            .expect("ResponseFuture polled after completion");
        Poll::Ready(Ok(res))
    }
}

/// Response body of a [`StatusPage`]: the whole page in one frame.
#[derive(Debug)]
pub struct Body {
    inner: Full<Bytes>,
}

impl Body {
    fn new(bytes: Bytes) -> Self {
        Self {
            inner: Full::new(bytes),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
