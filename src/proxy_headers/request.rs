//! [`ProxyHeadersLayer`]: nginx's `proxy_set_header`, with hop-by-hop headers removed both
//! ways. See the [module docs](super) for an example.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::hop_by_hop::{is_hop_by_hop, is_upgrade_request, remove_hop_by_hop_headers};
use super::template::{Ctx, IpText, Template};
use super::upgrade::Upgrading;
use super::value::{valid_pseudonym, valid_value, MakeHeaderValue, Source};
use crate::policy::{ClientAddr, ConnectAddr};
use crate::upstream::CloseConnection;
use crate::ConfigError;

// ===== ProxyHeadersBuilder =====

/// Builder for [`ProxyHeadersLayer`], made with [`ProxyHeadersLayer::builder`].
///
/// Starts from nginx's defaults: `Host $proxy_host` and `Expect ""`; every other client
/// header is passed on, except the hop-by-hop ones. A later setting for the same header
/// replaces an earlier one.
#[derive(Clone, Default)]
#[must_use]
pub struct ProxyHeadersBuilder {
    headers: Vec<(String, Pending)>,
    scheme: Option<String>,
    proxy_host: Option<String>,
    server_name: Option<String>,
}

#[derive(Clone)]
enum Pending {
    Template(String),
    Make(Arc<dyn MakeHeaderValue>),
    Forwarded,
    Via(String),
}

impl ProxyHeadersBuilder {
    /// nginx `proxy_set_header NAME VALUE`: `value` is text with nginx variables
    /// (`$host`, `$proxy_host`, `$remote_addr`, `$proxy_add_x_forwarded_for`, `$scheme`,
    /// `$request_uri`, `$http_<name>`). A value that comes out empty sends no such header,
    /// so `set(name, "")` removes a client header.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::ProxyHeadersLayer;
    /// let layer = ProxyHeadersLayer::builder()
    ///     .set("Host", "$host")
    ///     .set("X-Real-IP", "$remote_addr")
    ///     .set("Accept-Encoding", "")
    ///     .build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn set(self, name: &str, value: &str) -> Self {
        self.push(name, Pending::Template(value.to_owned()))
    }

    /// Sets header `name` to what `make` returns for each request (a closure over the
    /// request's [`Parts`](http::request::Parts), or a fixed [`HeaderValue`]).
    pub fn set_with<M: MakeHeaderValue>(self, name: &str, make: M) -> Self {
        self.push(name, Pending::Make(Arc::new(make)))
    }

    /// The usual trio: `X-Forwarded-For $proxy_add_x_forwarded_for`,
    /// `X-Forwarded-Proto $scheme` and `X-Forwarded-Host $host`.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::ProxyHeadersLayer;
    /// let layer = ProxyHeadersLayer::builder().x_forwarded().build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn x_forwarded(self) -> Self {
        self.set("X-Forwarded-For", "$proxy_add_x_forwarded_for")
            .set("X-Forwarded-Proto", "$scheme")
            .set("X-Forwarded-Host", "$host")
    }

    /// Appends an RFC 7239 `Forwarded` element, `for=<client>;host=<Host>;proto=<scheme>`,
    /// to the client's own `Forwarded` values. IPv6 clients and values with a port are
    /// quoted: `for="[2001:db8::1]";host="example.com:8080"`.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::ProxyHeadersLayer;
    /// let layer = ProxyHeadersLayer::builder().forwarded().build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn forwarded(self) -> Self {
        self.push("Forwarded", Pending::Forwarded)
    }

    /// Appends `<version> <pseudonym>` to `Via` (`1.1 gw1`), after the client's own values.
    /// `pseudonym` is a token or `host[:port]`.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::ProxyHeadersLayer;
    /// let layer = ProxyHeadersLayer::builder().via("gw1").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn via(self, pseudonym: &str) -> Self {
        self.push("Via", Pending::Via(pseudonym.to_owned()))
    }

    /// The value of `$proxy_host`, which the default `Host` uses: nginx's `proxy_pass` host
    /// (the upstream's name for `proxy_pass http://tserver`). Unset, `$proxy_host` is empty,
    /// so the default sends no `Host` and an [`HttpPeer`] fills in its own address.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::ProxyHeadersLayer;
    /// let layer = ProxyHeadersLayer::builder().proxy_host("tserver").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    ///
    /// [`HttpPeer`]: crate::HttpPeer
    pub fn proxy_host(mut self, host: &str) -> Self {
        self.proxy_host = Some(host.to_owned());
        self
    }

    /// The value of `$scheme` (default `http`); a [`Scheme`](http::uri::Scheme) request
    /// extension or an absolute request URI overrides it per request.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::ProxyHeadersLayer;
    /// let layer = ProxyHeadersLayer::builder().scheme("https").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = Some(scheme.to_owned());
        self
    }

    /// nginx `server_name`: what `$host` is when the request names no valid host
    /// (default: empty).
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::ProxyHeadersLayer;
    /// let layer = ProxyHeadersLayer::builder().server_name("gw.example").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_owned());
        self
    }

    fn push(mut self, name: &str, value: Pending) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }

    /// Checks every name and value and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`], [`ConfigError::InvalidHeaderValue`] (control
    /// characters in a value), [`ConfigError::UnknownVariable`], and
    /// [`ConfigError::HopByHopHeader`] for a non-empty value given to a hop-by-hop header.
    pub fn build(self) -> Result<ProxyHeadersLayer, ConfigError> {
        let mut headers: Vec<(HeaderName, Source)> = Vec::new();
        let defaults = [
            ("Host", Pending::Template("$proxy_host".into())),
            ("Expect", Pending::Template(String::new())),
        ];
        for (name, pending) in defaults
            .into_iter()
            .chain(self.headers.iter().map(|(n, p)| (n.as_str(), p.clone())))
        {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::InvalidHeaderName {
                    name: name.to_owned(),
                }
            })?;
            let invalid = |value: &str| ConfigError::InvalidHeaderValue {
                name: name.to_owned(),
                value: value.to_owned(),
            };
            let source = match pending {
                Pending::Template(value) => {
                    if is_hop_by_hop(&header) {
                        if value.is_empty() {
                            // nginx's `proxy_set_header Connection ""`: already never sent.
                            continue;
                        }
                        return Err(ConfigError::HopByHopHeader {
                            name: name.to_owned(),
                        });
                    }
                    Source::Template(Template::parse(name, &value)?)
                }
                _ if is_hop_by_hop(&header) => {
                    return Err(ConfigError::HopByHopHeader {
                        name: name.to_owned(),
                    })
                }
                Pending::Make(make) => Source::Make(make),
                Pending::Forwarded => Source::Forwarded,
                Pending::Via(p) if valid_pseudonym(&p) => Source::Via(p.into_bytes().into()),
                Pending::Via(p) => return Err(invalid(&p)),
            };
            headers.retain(|(n, _)| *n != header);
            headers.push((header, source));
        }
        let fact = |name: &str, value: Option<String>, default: &str| {
            let value = value.unwrap_or_else(|| default.to_owned());
            if valid_value(&value) {
                Ok(value.into_bytes().into_boxed_slice())
            } else {
                Err(ConfigError::InvalidHeaderValue {
                    name: name.to_owned(),
                    value,
                })
            }
        };
        let scheme = fact("$scheme", self.scheme, "http")?;
        let proxy_host = fact("$proxy_host", self.proxy_host, "")?;
        let server_name = fact("server_name", self.server_name, "")?;
        for (_, source) in &mut headers {
            if let Source::Template(template) = source {
                template.resolve(&proxy_host);
            }
        }
        let config = Config {
            scheme,
            proxy_host,
            server_name,
            headers: headers.into(),
        };
        Ok(ProxyHeadersLayer {
            config: Arc::new(config),
        })
    }
}

impl fmt::Debug for ProxyHeadersBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyHeadersBuilder")
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("scheme", &self.scheme)
            .field("proxy_host", &self.proxy_host)
            .field("server_name", &self.server_name)
            .finish()
    }
}

// ===== ProxyHeadersLayer =====

struct Config {
    headers: Box<[(HeaderName, Source)]>,
    scheme: Box<[u8]>,
    proxy_host: Box<[u8]>,
    server_name: Box<[u8]>,
}

/// Layer that rewrites request headers like nginx's `proxy_set_header` and removes
/// hop-by-hop headers from requests and responses. Built with [`ProxyHeadersLayer::builder`];
/// see the [module docs](super) for an example.
///
/// Cloning the layer, or the services it makes, shares one configuration (an `Arc`).
#[derive(Clone)]
pub struct ProxyHeadersLayer {
    config: Arc<Config>,
}

impl ProxyHeadersLayer {
    /// Starts a configuration with nginx's defaults.
    pub fn builder() -> ProxyHeadersBuilder {
        ProxyHeadersBuilder::default()
    }
}

impl<S> Layer<S> for ProxyHeadersLayer {
    type Service = ProxyHeaders<S>;

    fn layer(&self, inner: S) -> ProxyHeaders<S> {
        ProxyHeaders {
            inner,
            config: Arc::clone(&self.config),
            client: None,
        }
    }
}

impl fmt::Debug for ProxyHeadersLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyHeadersLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("Config")
            .field("headers", &self.headers)
            .field("scheme", &text(&self.scheme))
            .field("proxy_host", &text(&self.proxy_host))
            .field("server_name", &text(&self.server_name))
            .finish()
    }
}

// ===== ProxyHeaders =====

/// How many header values [`ProxyHeaders`] makes on the stack before it needs a `Vec`.
const INLINE_VALUES: usize = 16;

/// Middleware that rewrites request headers and removes hop-by-hop headers both ways; made
/// by [`ProxyHeadersLayer`]. See the [module docs](super) for an example.
#[derive(Clone)]
pub struct ProxyHeaders<S> {
    inner: S,
    config: Arc<Config>,
    /// The connection's client, from [`with_client_addr`](ProxyHeaders::with_client_addr).
    client: Option<Client>,
}

/// A connection's client address and its `$remote_addr` text, made once per connection.
#[derive(Clone, Debug)]
struct Client {
    ip: IpAddr,
    text: HeaderValue,
}

impl<S> ProxyHeaders<S> {
    /// Sets the address of the client on the connection this service serves, for a server
    /// that makes a service per connection, as hyper's `serve_connection` is given one.
    ///
    /// Its requests then need no `SocketAddr` extension for `$remote_addr`,
    /// `$proxy_add_x_forwarded_for` or `Forwarded`, and `$remote_addr`'s text is made once
    /// for the connection rather than for each request. An address in a request's
    /// extensions (the one [`RealIp`](super::RealIp) found, say) still comes first.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use http::{Request, Response};
    /// use tower::{Layer, Service, ServiceExt};
    /// use tower_upstream::proxy_headers::ProxyHeadersLayer;
    ///
    /// # tokio_test::block_on(async {
    /// let layer = ProxyHeadersLayer::builder()
    ///     .set("X-Real-IP", "$remote_addr")
    ///     .build()?;
    /// let echo = tower::service_fn(|req: Request<()>| async move {
    ///     Ok::<_, Infallible>(Response::new(req.headers()["x-real-ip"].clone()))
    /// });
    /// // One service per connection, from 192.0.2.7.
    /// let mut svc = layer
    ///     .layer(echo)
    ///     .with_client_addr(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    ///
    /// let res = svc.ready().await?.call(Request::new(())).await?;
    /// assert_eq!(res.body(), "192.0.2.7");
    ///
    /// // A request's own address, as RealIp puts it there, comes first.
    /// let mut req = Request::new(());
    /// req.extensions_mut().insert(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
    /// let res = svc.ready().await?.call(req).await?;
    /// assert_eq!(res.body(), "203.0.113.9");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_client_addr(mut self, ip: IpAddr) -> Self {
        let text = IpText::new(ip);
        // An address's text is always a valid header value.
        let text = HeaderValue::from_bytes(text.as_bytes()).expect("an address is a valid value");
        self.client = Some(Client { ip, text });
        self
    }

    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> fmt::Debug for ProxyHeaders<S>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyHeaders")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("client", &self.client.as_ref().map(|c| c.ip))
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ProxyHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let upgrade = req.extensions().get::<Upgrading>().is_some() && is_upgrade_request(&req);
        // The request's own address, else the connection's, whose text is made already.
        let (client, client_text) = match (ConnectAddr.client_addr(&req), &self.client) {
            (Some(ip), Some(c)) if ip == c.ip => (Some(ip), Some(&c.text)),
            (Some(ip), _) => (Some(ip), None),
            (None, Some(c)) => (Some(c.ip), Some(&c.text)),
            (None, None) => (None, None),
        };
        let (mut parts, body) = req.into_parts();
        let config = &*self.config;
        // Every value is made from the request as the client sent it, before any change; on
        // the stack unless the configuration sets many headers.
        let mut inline: [Option<HeaderValue>; INLINE_VALUES] = Default::default();
        let mut spilled;
        let values = match config.headers.len() {
            n if n <= INLINE_VALUES => &mut inline[..n],
            n => {
                spilled = vec![None; n];
                &mut spilled[..]
            }
        };
        {
            let scheme = parts
                .extensions
                .get::<http::uri::Scheme>()
                .or(parts.uri.scheme())
                .map_or(&*config.scheme, |s| s.as_str().as_bytes());
            let ctx = Ctx {
                parts: &parts,
                client,
                client_text,
                scheme,
                proxy_host: &config.proxy_host,
                server_name: &config.server_name,
            };
            for (value, (name, source)) in values.iter_mut().zip(&*config.headers) {
                *value = source.make(name, &ctx);
            }
        }
        let upgrade = upgrade
            .then(|| parts.headers.get(header::UPGRADE).cloned())
            .flatten();
        remove_hop_by_hop_headers(&mut parts.headers);
        for ((name, _), value) in config.headers.iter().zip(values) {
            // `insert` replaces every line of the client's.
            match value.take() {
                Some(value) => parts.headers.insert(name, value),
                None => parts.headers.remove(name),
            };
        }
        let upgrading = upgrade.is_some();
        if let Some(protocol) = upgrade {
            parts.headers.insert(header::UPGRADE, protocol);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture {
            inner: future,
            upgrade: upgrading,
        }
    }
}

// ===== ResponseFuture =====

pin_project! {
    /// Response future for [`ProxyHeaders`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        upgrade: bool,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("upgrade", &self.upgrade)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        clean_response(&mut res, *this.upgrade);
        Poll::Ready(Ok(res))
    }
}

/// Removes the hop-by-hop headers of a peer's response, keeping the `Connection: close` of
/// an `Upstream` that could not read the client's whole body. A `101 Switching Protocols` keeps
/// its `Upgrade` (with `Connection: upgrade`) when the request was forwarded as an upgrade;
/// one that nobody asked for becomes `502 Bad Gateway`.
fn clean_response<B>(res: &mut Response<B>, upgrade: bool) {
    let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    let protocol = (switching && upgrade)
        .then(|| res.headers().get(header::UPGRADE).cloned())
        .flatten();
    remove_hop_by_hop_headers(res.headers_mut());
    if res.extensions().get::<CloseConnection>().is_some() {
        // The gateway's own: the client's connection closes after this response.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !switching {
        return;
    }
    match protocol {
        Some(protocol) => {
            let headers = res.headers_mut();
            headers.insert(header::UPGRADE, protocol);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        None => {
            tracing::debug!("peer switched protocols without an upgrade to forward");
            *res.status_mut() = StatusCode::BAD_GATEWAY;
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
