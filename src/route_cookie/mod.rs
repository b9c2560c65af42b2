//! Tomcat's `jvmRoute` for Rust backends: a layer that puts the local route on the session
//! cookie of a session middleware such as tower-sessions' `SessionManagerLayer`.
//!
//! A gateway with [`Affinity::route`] sends each request to the peer named by the route in
//! its session cookie (`id=<session id>.<route>`). Tomcat writes that suffix itself; a Rust
//! backend gets it from [`RouteCookieLayer`], placed *outside* its session layer:
//!
//! - **Incoming:** in every `Cookie` header, the session cookie's value is cut at the first
//!   separator (`.`), so the session layer sees the id it issued. The route that came with
//!   it is kept as an [`IncomingRoute`] request extension.
//! - **Outgoing:** each `Set-Cookie` of the session cookie gets `.<local route>` appended to
//!   its value, attributes untouched. Removal cookies (empty value, or `Max-Age` of zero or
//!   less) are left as they are. A new id after `cycle_id()` is a new `Set-Cookie`, so it
//!   gets the route like any other.
//! - **Re-pinning:** when the request's session cookie named another route (or none), and
//!   the response sets no session cookie, the layer issues one itself:
//!   `Set-Cookie: <name>=<id>.<local route>` with the attributes configured here. This is
//!   Tomcat's `JvmRouteBinderValve`: after a failover, the survivor takes the session over
//!   and later requests go straight to it. With a store shared by all nodes (Redis, a
//!   database) nothing else has to change, because the store's key never had the route in
//!   it. Responses with a 5xx status are not re-pinned, as tower-sessions does not save a
//!   session on them either.
//!
//! The layer does not depend on tower-sessions: it works with any middleware that keeps its
//! session id in one cookie whose values do not contain the separator (tower-sessions' ids
//! are base64url). It does not read `;jsessionid=` path parameters. When a request carries
//! several session cookies (set for different paths), every one is stripped, and the last
//! one is the session for re-pinning and [`IncomingRoute`], as tower-cookies keeps the last
//! cookie of a name.
//!
//! # Cookie attributes of a re-pinned session
//!
//! The session layer usually writes the cookie; the attributes configured here are only
//! used when this layer re-issues it, and should match the session layer's. The defaults
//! are tower-sessions' defaults: `Path=/`, `HttpOnly`, `SameSite=Strict`, `Secure`, no
//! `Max-Age` (a browser-session cookie). **`Secure` is on by default, as in tower-sessions:**
//! behind plain HTTP (`SessionManagerLayer::with_secure(false)`) turn it off with
//! [`RouteCookieLayer::secure`], and set [`RouteCookieLayer::max_age`] when the sessions
//! expire on inactivity.
//!
//! # Example
//!
//! ```
//! use http::{header, Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_upstream::route_cookie::{IncomingRoute, RouteCookieLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Stands in for a session layer: echoes the session id it was given, and sets the
//! // cookie on `/login`.
//! let sessions = service_fn(|req: Request<String>| async move {
//!     let cookies = req.headers()[header::COOKIE].to_str().unwrap().to_owned();
//!     let moved_from = req.extensions().get::<IncomingRoute>().map(|r| r.as_str().to_owned());
//!     let mut res = Response::builder();
//!     if req.uri() == "/login" {
//!         res = res.header(header::SET_COOKIE, "id=NEW; HttpOnly; Path=/");
//!     }
//!     res.body(format!("{cookies} {moved_from:?}"))
//! });
//! let node2 = ServiceBuilder::new()
//!     .layer(RouteCookieLayer::new("id", "node2").secure(false))
//!     .service(sessions);
//!
//! // The session layer's own Set-Cookie gets the route.
//! let req = Request::get("/login").header(header::COOKIE, "id=OLD.node2").body(String::new())?;
//! let res = node2.clone().oneshot(req).await?;
//! assert_eq!(res.headers()[header::SET_COOKIE], "id=NEW.node2; HttpOnly; Path=/");
//! assert_eq!(res.body(), r#"id=OLD Some("node2")"#);
//!
//! // A session of node1, failed over to node2: re-pinned to node2.
//! let req = Request::get("/").header(header::COOKIE, "theme=dark; id=S1D.node1").body(String::new())?;
//! let res = node2.clone().oneshot(req).await?;
//! assert_eq!(res.body(), r#"theme=dark; id=S1D Some("node1")"#);
//! assert_eq!(
//!     res.headers()[header::SET_COOKIE],
//!     "id=S1D.node2; Path=/; HttpOnly; SameSite=Strict",
//! );
//!
//! // Its own session: nothing to add.
//! let req = Request::get("/").header(header::COOKIE, "id=S2D.node2").body(String::new())?;
//! let res = node2.oneshot(req).await?;
//! assert!(res.headers().get(header::SET_COOKIE).is_none());
//! # Ok(()) }
//! ```
//!
//! # Example: tower-sessions and axum
//!
//! `RouteCookieLayer` goes outside the session layer (axum's `Router::layer` wraps bottom to
//! top, so it is added last):
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use http::{header, Request};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_sessions::{MemoryStore, Session, SessionManagerLayer};
//! use tower_upstream::route_cookie::RouteCookieLayer;
//!
//! async fn visits(session: Session) -> String {
//!     let n = session.get::<u64>("visits").await.ok().flatten().unwrap_or(0) + 1;
//!     session.insert("visits", n).await.ok();
//!     n.to_string()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/", get(visits))
//!     .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false))
//!     .layer(RouteCookieLayer::new("id", "node1").secure(false));
//!
//! let res = app.clone().oneshot(Request::new(Body::empty())).await?;
//! let set_cookie = res.headers()[header::SET_COOKIE].to_str()?.to_owned();
//! let (pair, _) = set_cookie.split_once(';').unwrap(); // id=<session id>.node1
//! assert!(pair.starts_with("id=") && pair.ends_with(".node1"), "{pair}");
//!
//! // Sent back with its route, the cookie still finds the session.
//! let req = Request::get("/").header(header::COOKIE, pair).body(Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "2");
//! # Ok(()) }
//! ```
//!
//! `examples/session_cluster.rs` runs two such backends behind a gateway and fails one over.
//!
//! [`Affinity::route`]: crate::affinity::Affinity::route

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::header::{Entry, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::affinity::{CookieAttributes, SameSite};
use crate::ConfigError;

/// Applies [`RouteCookie`]: strips routes from the incoming session cookie and writes the
/// local route on the outgoing one. See the [module docs](self) for an example.
///
/// Cloning the layer is cheap; its settings are shared behind an `Arc`.
#[derive(Clone)]
#[must_use]
pub struct RouteCookieLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    name: String,
    route: String,
    separator: char,
    attrs: CookieAttributes,
}

impl RouteCookieLayer {
    /// The layer for the session cookie `cookie_name` (tower-sessions: `id`) on the node
    /// whose route is `local_route` (the gateway's [`Peer::route`]).
    ///
    /// # Panics
    ///
    /// If the name is not a cookie name (RFC 6265 token) or the route is not made of ASCII
    /// letters, digits, `-` and `_`. [`RouteCookieLayer::try_new`] returns an error instead.
    ///
    /// [`Peer::route`]: crate::Peer::route
    pub fn new(cookie_name: &str, local_route: &str) -> Self {
        match Self::try_new(cookie_name, local_route) {
            Ok(layer) => layer,
            Err(e) => panic!("RouteCookieLayer::new: {e}"),
        }
    }

    /// Like [`RouteCookieLayer::new`], for a name or route read from configuration.
    ///
    /// ```
    /// use tower_upstream::route_cookie::RouteCookieLayer;
    ///
    /// assert!(RouteCookieLayer::try_new("id", "node-1").is_ok());
    /// assert!(RouteCookieLayer::try_new("id", "node 1").is_err());
    /// assert!(RouteCookieLayer::try_new("my id", "node1").is_err());
    /// ```
    pub fn try_new(cookie_name: &str, local_route: &str) -> Result<Self, ConfigError> {
        if cookie_name.is_empty() || !cookie_name.bytes().all(is_token) {
            return Err(ConfigError::InvalidCookie {
                reason: format!("`{cookie_name}` is not a cookie name"),
            });
        }
        if !route_ok(local_route) {
            return Err(ConfigError::InvalidCookie {
                reason: format!(
                    "route `{local_route}` must be ASCII letters, digits, `-` or `_` \
                     to be written in a cookie"
                ),
            });
        }
        Ok(Self {
            config: Arc::new(Config {
                name: cookie_name.to_owned(),
                route: local_route.to_owned(),
                separator: '.',
                attrs: CookieAttributes {
                    path: Some("/".to_owned()),
                    domain: None,
                    max_age: None,
                    secure: true,
                    http_only: true,
                    same_site: Some(SameSite::Strict),
                },
            }),
        })
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// What separates the id from the route (default `.`, as Tomcat and the gateway's
    /// [`RouteAffinity`](crate::affinity::RouteAffinity) use).
    ///
    /// ```
    /// # use tower_upstream::route_cookie::RouteCookieLayer;
    /// let layer = RouteCookieLayer::new("id", "node1").separator('!');
    /// ```
    ///
    /// # Panics
    ///
    /// If `separator` could be part of a route, or cannot be written in a cookie value
    /// (it must be visible ASCII other than `"`, `,`, `;` and `\`).
    pub fn separator(mut self, separator: char) -> Self {
        let usable = separator.is_ascii_graphic()
            && !matches!(separator, '"' | ',' | ';' | '\\')
            && !route_ok(separator.encode_utf8(&mut [0; 4]));
        assert!(
            usable,
            "RouteCookieLayer: `{separator}` cannot separate routes"
        );
        self.config().separator = separator;
        self
    }

    /// `Path=` of a re-issued cookie (default `/`; `None` leaves it out).
    ///
    /// ```
    /// # use tower_upstream::route_cookie::RouteCookieLayer;
    /// let layer = RouteCookieLayer::new("id", "node1").path(Some("/app"));
    /// ```
    pub fn path(mut self, path: Option<&str>) -> Self {
        self.config().attrs.path = path.map(attribute);
        self
    }

    /// `Domain=` of a re-issued cookie (default: none).
    ///
    /// ```
    /// # use tower_upstream::route_cookie::RouteCookieLayer;
    /// let layer = RouteCookieLayer::new("id", "node1").domain(Some("example.com"));
    /// ```
    pub fn domain(mut self, domain: Option<&str>) -> Self {
        self.config().attrs.domain = domain.map(attribute);
        self
    }

    /// `Max-Age=` of a re-issued cookie (default: none, a browser-session cookie). Set it
    /// to the session layer's inactivity expiry.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_upstream::route_cookie::RouteCookieLayer;
    /// let layer = RouteCookieLayer::new("id", "node1").max_age(Some(Duration::from_secs(3600)));
    /// ```
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.config().attrs.max_age = max_age;
        self
    }

    /// `Secure` on a re-issued cookie (default on, as in tower-sessions; turn it off for
    /// plain HTTP).
    ///
    /// ```
    /// # use tower_upstream::route_cookie::RouteCookieLayer;
    /// let layer = RouteCookieLayer::new("id", "node1").secure(false);
    /// ```
    pub fn secure(mut self, on: bool) -> Self {
        self.config().attrs.secure = on;
        self
    }

    /// `HttpOnly` on a re-issued cookie (default on).
    ///
    /// ```
    /// # use tower_upstream::route_cookie::RouteCookieLayer;
    /// let layer = RouteCookieLayer::new("id", "node1").http_only(false);
    /// ```
    pub fn http_only(mut self, on: bool) -> Self {
        self.config().attrs.http_only = on;
        self
    }

    /// `SameSite=` of a re-issued cookie (default `Strict`, as in tower-sessions; `None`
    /// leaves the attribute out).
    ///
    /// ```
    /// # use tower_upstream::{affinity::SameSite, route_cookie::RouteCookieLayer};
    /// let layer = RouteCookieLayer::new("id", "node1").same_site(Some(SameSite::Lax));
    /// ```
    pub fn same_site(mut self, same_site: Option<SameSite>) -> Self {
        self.config().attrs.same_site = same_site;
        self
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.config.name
    }

    /// The route this node writes.
    pub fn local_route(&self) -> &str {
        &self.config.route
    }
}

impl fmt::Debug for RouteCookieLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteCookieLayer")
            .field("cookie_name", &self.name)
            .field("local_route", &self.route)
            .field("separator", &self.separator)
            .field("attributes", &self.attrs)
            .finish()
    }
}

impl<S> Layer<S> for RouteCookieLayer {
    type Service = RouteCookie<S>;

    fn layer(&self, inner: S) -> RouteCookie<S> {
        RouteCookie {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Strips routes from the incoming session cookie and writes the local route on the
/// outgoing one; built by [`RouteCookieLayer`]. See the [module docs](self) for an example.
#[derive(Clone)]
pub struct RouteCookie<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RouteCookie<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RouteCookie<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteCookie")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// Request extension: the route the session cookie carried when it arrived (Tomcat's
/// `JvmRouteOriginalSessionID` attribute, for the route part). Absent when the request had
/// no session cookie or its value had no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRoute(Box<str>);

impl IncomingRoute {
    /// The route.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RouteCookie<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let session = strip_routes(&self.config, req.headers_mut());
        let mut reissue = None;
        if let Some(Session { id, route }) = session {
            if route.as_deref() != Some(self.config.route.as_str()) && !id.is_empty() {
                reissue = Some(id.into_boxed_str());
            }
            if let Some(route) = route {
                req.extensions_mut()
                    .insert(IncomingRoute(route.into_boxed_str()));
            }
        }
        ResponseFuture {
            inner: self.inner.call(req),
            config: Arc::clone(&self.config),
            reissue,
        }
    }
}

pin_project! {
    /// Response future of [`RouteCookie`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        config: Arc<Config>,
        reissue: Option<Box<str>>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("reissue", &self.reissue)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let reissue = this.reissue.take();
        let set = add_route(this.config, res.headers_mut());
        if let Some(id) = reissue {
            if !set && !res.status().is_server_error() {
                reissue_cookie(this.config, res.headers_mut(), &id);
            }
        }
        Poll::Ready(Ok(res))
    }
}

// ===== cookie editing =====

/// The session cookie a request carried (the last one, as tower-cookies keeps the last of
/// several with one name): its id without the route, and the route.
#[derive(Debug, PartialEq, Eq)]
struct Session {
    id: String,
    route: Option<String>,
}

/// RFC 6265 `token` characters (cookie names).
fn is_token(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
                | b'{'
                | b'}'
        )
}

fn route_ok(route: &str) -> bool {
    !route.is_empty()
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A cookie attribute value without `;` or control characters (dropped, so the
/// `Set-Cookie` line stays one valid header value).
fn attribute(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control() && *c != ';')
        .collect()
}

/// Splits a cookie value into its optional surrounding double quotes and the inside.
fn unquote(value: &str) -> (&str, &str, &str) {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => ("\"", inner, "\""),
        None => ("", value, ""),
    }
}

/// Cuts the route off the session cookie in every `Cookie` header; returns the last
/// session cookie seen.
fn strip_routes(config: &Config, headers: &mut HeaderMap) -> Option<Session> {
    let Entry::Occupied(mut entry) = headers.entry(COOKIE) else {
        return None;
    };
    let mut session = None;
    for value in entry.iter_mut() {
        let Ok(line) = value.to_str() else {
            continue;
        };
        let mut changed = false;
        let mut pairs: Vec<String> = Vec::new();
        for pair in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let ours = pair
                .split_once('=')
                .filter(|(name, _)| name.trim() == config.name);
            let Some((name, raw)) = ours else {
                pairs.push(pair.to_owned());
                continue;
            };
            let (open, inner, close) = unquote(raw.trim());
            match inner.split_once(config.separator) {
                Some((id, route)) => {
                    changed = true;
                    pairs.push(format!("{}={open}{id}{close}", name.trim()));
                    session = Some(Session {
                        id: id.to_owned(),
                        route: (!route.is_empty()).then(|| route.to_owned()),
                    });
                }
                None => {
                    pairs.push(pair.to_owned());
                    session = Some(Session {
                        id: inner.to_owned(),
                        route: None,
                    });
                }
            }
        }
        if changed {
            // Made of pieces of a valid header value, joined by "; ".
            if let Ok(v) = HeaderValue::from_str(&pairs.join("; ")) {
                *value = v;
            }
        }
    }
    session
}

/// Appends the local route to every `Set-Cookie` of the session cookie that sets a value;
/// returns whether the response had a `Set-Cookie` for it at all.
fn add_route(config: &Config, headers: &mut HeaderMap) -> bool {
    let Entry::Occupied(mut entry) = headers.entry(SET_COOKIE) else {
        return false;
    };
    let mut seen = false;
    for value in entry.iter_mut() {
        let Ok(line) = value.to_str() else {
            continue;
        };
        let (pair, attrs) = match line.find(';') {
            Some(at) => line.split_at(at),
            None => (line, ""),
        };
        let Some((name, raw)) = pair.split_once('=') else {
            continue;
        };
        if name.trim() != config.name {
            continue;
        }
        seen = true;
        let (open, inner, close) = unquote(raw.trim());
        if inner.is_empty() || is_removal(attrs) {
            continue;
        }
        // An id that already has a route (from an app that writes its own) gets ours instead.
        let id = inner
            .split_once(config.separator)
            .map_or(inner, |(id, _)| id);
        let line = format!(
            "{}={open}{id}{}{}{close}{attrs}",
            name.trim(),
            config.separator,
            config.route
        );
        if let Ok(v) = HeaderValue::from_str(&line) {
            *value = v;
        }
    }
    seen
}

/// Whether `Set-Cookie` attributes say the cookie is to be removed now (`Max-Age` of zero
/// or less).
fn is_removal(attrs: &str) -> bool {
    attrs.split(';').any(|attr| {
        attr.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("max-age")
                && v.trim().parse::<i64>().is_ok_and(|secs| secs <= 0)
        })
    })
}

/// `Set-Cookie: <name>=<id><sep><route>` with the configured attributes.
fn reissue_cookie(config: &Config, headers: &mut HeaderMap, id: &str) {
    let mut cookie = format!("{}={id}{}{}", config.name, config.separator, config.route);
    config.attrs.append_to(&mut cookie);
    // The id came from a valid `Cookie` header, the rest is validated or filtered.
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests;
