//! [`Gateway`], the service a [`GatewayConfig`](super::GatewayConfig) builds, and the
//! services it is made of.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use tower_http::services::ServeDir;

use crate::location::{
    escape_into, ErrorPage, ErrorPages, InternalRedirect, Locations, MatchedLocation,
};
use crate::stats::UpstreamStats;
use crate::BoxError;

/// A boxed `Send` future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Request body inside the gateway (error pages need one with `Default`). A named type, not
/// `UnsyncBoxBody<Bytes, BoxError>` itself: with that, rustc cannot prove the futures of
/// `async` blocks `Send` ("implementation of `Service` is not general enough").
pub(crate) type ReqBody = GatewayBody;
/// Response body inside the gateway.
pub(crate) type ResBody = GatewayBody;
/// Every location's target, and the layers around them.
pub(crate) type Svc = BoxCloneSyncService<Request<ReqBody>, Response<ResBody>, Infallible>;

/// Boxes a service into a [`Svc`].
pub(crate) fn boxed<S, B>(svc: S) -> Svc
where
    S: Service<Request<ReqBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(svc.map_response(box_body))
}

pub(crate) fn box_body<B>(res: Response<B>) -> Response<ResBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    res.map(GatewayBody::new)
}

/// A response with `status` and a `text/plain` body (none if empty).
pub(crate) fn text_response(status: StatusCode, text: &str) -> Response<ResBody> {
    let mut res = if text.is_empty() {
        Response::new(ResBody::default())
    } else {
        let mut res = Response::new(full(text.to_owned()));
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        res
    };
    *res.status_mut() = status;
    res
}

fn full(text: String) -> ResBody {
    GatewayBody::new(Full::new(Bytes::from(text)))
}

// ===== Gateway =====

/// The service a [`GatewayConfig`](super::GatewayConfig) builds: its locations, upstreams,
/// error pages and static files, as one `tower::Service`.
///
/// Serve it with hyper as any service, giving each request the client's `SocketAddr` as
/// an extension (for `$remote_addr` and `ip_hash`) and using hyper's
/// `serve_connection_with_upgrades` if WebSockets should be tunnelled; see the
/// [module docs](super) for an example.
///
/// # Clone
///
/// Cloning is cheap (reference counts): the upstreams' state, connection pools and
/// compiled locations are shared by every clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Svc,
    stats: Arc<[StatsFn]>,
}

pub(crate) type StatsFn = Box<dyn Fn() -> UpstreamStats + Send + Sync>;

impl Gateway {
    pub(crate) fn new(inner: Svc, stats: Vec<StatsFn>) -> Self {
        Self {
            inner,
            stats: stats.into(),
        }
    }

    /// A snapshot of each upstream's peers, in configuration order (for a status page or
    /// metrics).
    pub fn stats(&self) -> Vec<UpstreamStats> {
        self.stats.iter().map(|f| f()).collect()
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("upstreams", &self.stats.len())
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Gateway
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let req = req.map(GatewayBody::new);
        ResponseFuture {
            inner: self.inner.call(req),
        }
    }
}

/// Response future of [`Gateway`].
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: BoxFuture<Result<Response<ResBody>, Infallible>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<GatewayBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Response body of [`Gateway`]: a peer's body, a file, or a body the gateway made.
#[derive(Default)]
pub struct GatewayBody {
    inner: UnsyncBoxBody<Bytes, BoxError>,
}

impl GatewayBody {
    /// Boxes `body`.
    pub(crate) fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            inner: body.map_err(Into::into).boxed_unsync(),
        }
    }
}

impl fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayBody").finish_non_exhaustive()
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ===== internal redirects (index) =====

/// Response extension: the location asks for an internal redirect of this request (nginx's
/// `index` does one to the index file it found), which [`Redirects`] follows.
#[derive(Clone)]
struct Redirect(Arc<Mutex<Option<Request<ReqBody>>>>);

/// nginx's limit on internal redirects of one request (`NGX_HTTP_MAX_URI_CHANGES`).
const MAX_REDIRECTS: usize = 10;

/// The outermost service: follows the internal redirects locations ask for.
#[derive(Clone)]
pub(crate) struct Redirects {
    pub(crate) inner: Svc,
}

impl Service<Request<ReqBody>> for Redirects {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut res = inner.clone().oneshot(req).await?;
            for _ in 0..MAX_REDIRECTS {
                let Some(Redirect(next)) = res.extensions_mut().remove::<Redirect>() else {
                    return Ok(res);
                };
                let Some(req) = next.lock().expect("not poisoned").take() else {
                    return Ok(text_response(StatusCode::INTERNAL_SERVER_ERROR, ""));
                };
                // An error page that redirected keeps the error's status.
                let status = res.status();
                res = inner.clone().oneshot(req).await?;
                if status != StatusCode::OK {
                    *res.status_mut() = status;
                }
            }
            tracing::error!("rewrite or internal redirection cycle");
            Ok(text_response(StatusCode::INTERNAL_SERVER_ERROR, ""))
        })
    }
}

// ===== error pages =====

/// nginx's `error_page` with the pages of the location a request matches: [`ErrorPage`]
/// around the locations, with the table of that location (or the server's).
#[derive(Clone)]
pub(crate) struct Pages {
    pub(crate) locations: Locations<Svc>,
    pub(crate) server: ErrorPages,
    /// By location id, when some location has its own `error_page` lines.
    pub(crate) by_location: Option<Arc<[ErrorPages]>>,
}

impl Service<Request<ReqBody>> for Pages {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let pages = match &self.by_location {
            Some(table) => match self.locations.find(req.uri().path()) {
                Ok(Some(m)) => table[m.id()].clone(),
                _ => self.server.clone(),
            },
            None => self.server.clone(),
        };
        if pages.is_empty() {
            Box::pin(self.locations.clone().oneshot(req))
        } else {
            Box::pin(ErrorPage::new(self.locations.clone(), pages).oneshot(req))
        }
    }
}

// ===== location targets =====

/// nginx `client_max_body_size`: `413` for a declared length over the limit; a body that
/// grows past it breaks off (the upstream then answers `400`).
#[derive(Clone)]
pub(crate) struct BodyLimit {
    pub(crate) inner: Svc,
    pub(crate) limit: u64,
}

impl Service<Request<ReqBody>> for BodyLimit {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // An error page's request has the client's headers but an empty body: its
        // `Content-Length` is not its own.
        let declared = (!req.body().is_end_stream())
            .then(|| req.headers().get(CONTENT_LENGTH))
            .flatten()
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limit) {
            tracing::debug!(limit = self.limit, "client intended to send too large body");
            let res = text_response(StatusCode::PAYLOAD_TOO_LARGE, "");
            return Box::pin(std::future::ready(Ok(res)));
        }
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let req = req.map(|body| GatewayBody::new(Limited::new(body, limit)));
        Box::pin(self.inner.clone().oneshot(req))
    }
}

/// A location whose content handler this crate does not have (`fastcgi_pass`, ...):
/// `502 Bad Gateway`, as nginx answers when that backend is down, and a warning.
#[derive(Clone)]
pub(crate) struct Unsupported {
    pub(crate) location: Arc<str>,
    pub(crate) handler: Arc<str>,
}

impl Service<Request<ReqBody>> for Unsupported {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        tracing::warn!(
            location = %self.location,
            handler = %self.handler,
            uri = %req.uri(),
            "502: this location's handler is not supported by tower-upstream"
        );
        let text = format!(
            "502 Bad Gateway: `{}` is not supported here ({})\n",
            self.handler, self.location
        );
        std::future::ready(Ok(text_response(StatusCode::BAD_GATEWAY, &text)))
    }
}

/// nginx `return`.
#[derive(Clone)]
pub(crate) struct Return {
    pub(crate) status: StatusCode,
    pub(crate) text: Option<Arc<str>>,
}

impl Return {
    /// nginx sends the text as `Location` for these.
    pub(crate) fn is_redirect(status: StatusCode) -> bool {
        matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
    }
}

impl Service<Request<ReqBody>> for Return {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<ReqBody>) -> Self::Future {
        let text = self.text.as_deref().unwrap_or("");
        let res = if Self::is_redirect(self.status) {
            let mut res = text_response(self.status, "");
            if let Ok(location) = HeaderValue::from_str(text) {
                res.headers_mut().insert(LOCATION, location);
            }
            res
        } else {
            text_response(self.status, text)
        };
        std::future::ready(Ok(res))
    }
}

/// Static files: nginx's `root` (the file is `root` + the normalised path) and `index`.
#[derive(Clone)]
pub(crate) struct StaticFiles {
    root: Arc<Path>,
    index: Arc<[String]>,
    serve: ServeDir,
}

impl StaticFiles {
    pub(crate) fn new(root: &Path, index: Vec<String>) -> Self {
        Self {
            root: root.into(),
            index: index.into(),
            // Directories are nginx's `index`'s job, done here.
            serve: ServeDir::new(root)
                .append_index_html_on_directories(false)
                .redirect_to_trailing_slash(false),
        }
    }
}

impl Service<Request<ReqBody>> for StaticFiles {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // nginx's `$uri`: the normalised path the location was matched with.
        let path = match req.extensions().get::<MatchedLocation>() {
            Some(m) => Bytes::copy_from_slice(m.path()),
            None => Bytes::copy_from_slice(req.uri().path().as_bytes()),
        };
        let index_method = matches!(*req.method(), Method::GET | Method::HEAD | Method::POST);
        if path.ends_with(b"/") && index_method {
            let (root, index) = (self.root.clone(), self.index.clone());
            return Box::pin(async move { Ok(find_index(&root, &index, &path, req).await) });
        }
        let mut uri = String::with_capacity(path.len() + 16);
        escape_into(&mut uri, &path);
        set_path(&mut req, uri.clone());
        let (serve, root) = (self.serve.clone(), self.root.clone());
        Box::pin(async move {
            // A directory without its slash: nginx's static module redirects permanently
            // (other methods are not allowed, whatever the path).
            if let Some(relative) = index_method
                .then(|| std::str::from_utf8(&path).ok())
                .flatten()
            {
                let file = root.join(relative.trim_start_matches('/'));
                if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_dir()) {
                    uri.push('/');
                    if let Some(query) = req.uri().query() {
                        uri.push('?');
                        uri.push_str(query);
                    }
                    let mut res = text_response(StatusCode::MOVED_PERMANENTLY, "");
                    if let Ok(location) = HeaderValue::try_from(uri) {
                        res.headers_mut().insert(LOCATION, location);
                    }
                    return Ok(res);
                }
            }
            Ok(box_body(serve.oneshot(req).await?))
        })
    }
}

/// Replaces the request's path, keeping its query.
fn set_path(req: &mut Request<ReqBody>, mut path: String) {
    if let Some(query) = req.uri().query() {
        path.push('?');
        path.push_str(query);
    }
    if let Ok(uri) = Uri::try_from(path) {
        *req.uri_mut() = uri;
    }
}

/// nginx's `index` for a request to the directory `path`: an internal redirect to the first
/// index file that exists (a name starting with `/` is redirected to without looking),
/// `403` when none does, `404` when the directory does not exist.
async fn find_index(
    root: &Path,
    index: &[String],
    path: &[u8],
    mut req: Request<ReqBody>,
) -> Response<ResBody> {
    let Ok(dir) = std::str::from_utf8(path) else {
        return text_response(StatusCode::NOT_FOUND, "");
    };
    let dir_path = root.join(dir.trim_start_matches('/'));
    let mut dir_tested = false;
    for name in index {
        let target = if name.starts_with('/') {
            name.clone()
        } else {
            match tokio::fs::metadata(dir_path.join(name)).await {
                Ok(_) => {
                    let mut uri = String::with_capacity(path.len() + name.len());
                    escape_into(&mut uri, path);
                    escape_into(&mut uri, name.as_bytes());
                    uri
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !dir_tested {
                        match tokio::fs::metadata(&dir_path).await {
                            Ok(meta) if meta.is_dir() => dir_tested = true,
                            _ => return text_response(StatusCode::NOT_FOUND, ""),
                        }
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return text_response(StatusCode::FORBIDDEN, "");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    return text_response(StatusCode::NOT_FOUND, "");
                }
                Err(e) => {
                    tracing::error!(error = %e, path = %dir_path.join(name).display(), "index");
                    return text_response(StatusCode::INTERNAL_SERVER_ERROR, "");
                }
            }
        };
        set_path(&mut req, target);
        req.extensions_mut().insert(InternalRedirect::uri());
        let mut res = Response::new(GatewayBody::new(Empty::new()));
        res.extensions_mut()
            .insert(Redirect(Arc::new(Mutex::new(Some(req)))));
        return res;
    }
    tracing::debug!(dir = %dir_path.display(), "directory index is forbidden");
    text_response(StatusCode::FORBIDDEN, "")
}
