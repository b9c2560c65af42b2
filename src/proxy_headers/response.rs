//! [`RewriteResponseLayer`]: nginx's `proxy_hide_header`, `proxy_redirect`,
//! `proxy_cookie_domain` and `proxy_cookie_path`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{self, HeaderName, HeaderValue};
use http::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::rewrite::{self, CookieRule, Redirect, RedirectFrom};
use super::value::valid_value;
use crate::{ConfigError, SelectedPeer};

/// Builder for [`RewriteResponseLayer`], made with [`RewriteResponseLayer::builder`].
///
/// Starts with nothing to do: no header is hidden (nginx hides `Date`, `Server`, `X-Pad`
/// and `X-Accel-*`), and redirects and cookies are left alone.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RewriteResponseBuilder {
    hide: Vec<String>,
    redirects: Vec<(Option<String>, String, String)>,
    cookie_domains: Vec<(String, String)>,
    cookie_paths: Vec<(String, String)>,
}

impl RewriteResponseBuilder {
    /// nginx `proxy_hide_header`: the peer's header `name` is not passed to the client.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RewriteResponseLayer;
    /// let layer = RewriteResponseLayer::builder().hide_header("X-Powered-By").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn hide_header(mut self, name: &str) -> Self {
        self.hide.push(name.to_owned());
        self
    }

    /// nginx `proxy_redirect FROM TO`: a `Location` or `Refresh` URL that starts with `from`
    /// (compared case-sensitively) gets `to` instead. Rules are tried in order.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RewriteResponseLayer;
    /// let layer = RewriteResponseLayer::builder()
    ///     .redirect("http://tserver/", "https://shop.example/")
    ///     .build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn redirect(mut self, from: &str, to: &str) -> Self {
        self.redirects.push((None, from.to_owned(), to.to_owned()));
        self
    }

    /// nginx `proxy_redirect default` for a location that maps the public prefix `/` to the
    /// same path on the peer: `http://<peer>/...` becomes `/...`, where `<peer>` is the name
    /// of the peer that answered (its [`SelectedPeer`]; name peers `host:port`).
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RewriteResponseLayer;
    /// let layer = RewriteResponseLayer::builder().redirect_default().build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn redirect_default(self) -> Self {
        self.redirect_peer("/", "/")
    }

    /// `proxy_redirect default` for a location that maps `public_path` to `peer_path`:
    /// `http://<peer><peer_path>...` becomes `<public_path>...`.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RewriteResponseLayer;
    /// // location /shop/ { proxy_pass http://tserver/app/; }
    /// let layer = RewriteResponseLayer::builder().redirect_peer("/app/", "/shop/").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn redirect_peer(mut self, peer_path: &str, public_path: &str) -> Self {
        self.redirects.push((
            Some(String::new()),
            peer_path.to_owned(),
            public_path.to_owned(),
        ));
        self
    }

    /// nginx `proxy_cookie_domain FROM TO`: a `Set-Cookie` whose `Domain` is `from`
    /// (ignoring ASCII case and a leading dot, which is kept) gets `to` instead.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RewriteResponseLayer;
    /// let layer = RewriteResponseLayer::builder()
    ///     .cookie_domain("tomcat.internal", "shop.example")
    ///     .build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn cookie_domain(mut self, from: &str, to: &str) -> Self {
        let strip = |d: &str| d.strip_prefix('.').unwrap_or(d).to_owned();
        self.cookie_domains.push((strip(from), strip(to)));
        self
    }

    /// nginx `proxy_cookie_path FROM TO`: a `Set-Cookie` whose `Path` starts with `from`
    /// (case-sensitively) gets `to` in place of that prefix. Tomcat's `Path=/app` session
    /// cookie behind a gateway that maps `/` to `/app/`:
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RewriteResponseLayer;
    /// let layer = RewriteResponseLayer::builder().cookie_path("/app", "/").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn cookie_path(mut self, from: &str, to: &str) -> Self {
        self.cookie_paths.push((from.to_owned(), to.to_owned()));
        self
    }

    /// Checks every name and value and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] for a hidden header's name and
    /// [`ConfigError::InvalidHeaderValue`] for a rule with control characters.
    pub fn build(self) -> Result<RewriteResponseLayer, ConfigError> {
        let checked = |header: &str, v: &str| {
            if valid_value(v) {
                Ok(v.as_bytes().into())
            } else {
                Err(ConfigError::InvalidHeaderValue {
                    name: header.to_owned(),
                    value: v.to_owned(),
                })
            }
        };
        let hide = self
            .hide
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| ConfigError::InvalidHeaderName { name: n.clone() })
            })
            .collect::<Result<_, _>>()?;
        let redirects = self
            .redirects
            .iter()
            .map(|(peer, from, to)| {
                let from = checked("Location", from)?;
                let from = match peer {
                    Some(_) => RedirectFrom::Peer(from),
                    None => RedirectFrom::Fixed(from),
                };
                Ok(Redirect {
                    from,
                    to: checked("Location", to)?,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let cookie_rules = |rules: &[(String, String)]| {
            rules
                .iter()
                .map(|(from, to)| {
                    Ok(CookieRule {
                        from: checked("Set-Cookie", from)?,
                        to: checked("Set-Cookie", to)?,
                    })
                })
                .collect::<Result<_, ConfigError>>()
        };
        Ok(RewriteResponseLayer {
            config: Arc::new(Config {
                hide,
                redirects,
                cookie_domains: cookie_rules(&self.cookie_domains)?,
                cookie_paths: cookie_rules(&self.cookie_paths)?,
            }),
        })
    }
}

#[derive(Debug)]
struct Config {
    hide: Box<[HeaderName]>,
    redirects: Box<[Redirect]>,
    cookie_domains: Box<[CookieRule]>,
    cookie_paths: Box<[CookieRule]>,
}

impl Config {
    fn apply<B>(&self, res: &mut Response<B>) {
        let peer = res
            .extensions()
            .get::<SelectedPeer>()
            .map(|p| p.name().to_owned());
        let headers = res.headers_mut();
        for name in &*self.hide {
            headers.remove(name);
        }
        if !self.redirects.is_empty() {
            let rules = &*self.redirects;
            let peer = peer.as_deref();
            rewrite_all(headers, header::LOCATION, |v| {
                rewrite::location(v, rules, peer)
            });
            rewrite_all(headers, header::REFRESH, |v| {
                rewrite::refresh(v, rules, peer)
            });
        }
        if !(self.cookie_domains.is_empty() && self.cookie_paths.is_empty()) {
            rewrite_all(headers, header::SET_COOKIE, |v| {
                rewrite::set_cookie(v, &self.cookie_domains, &self.cookie_paths)
            });
        }
    }
}

/// Rewrites each line of header `name` in place, keeping their order.
fn rewrite_all(
    headers: &mut http::HeaderMap,
    name: HeaderName,
    mut f: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) {
    if !headers.contains_key(&name) {
        return;
    }
    let values: Vec<HeaderValue> = headers
        .get_all(&name)
        .iter()
        .map(|v| match f(v.as_bytes()).map(|new| HeaderValue::from_bytes(&new)) {
            Some(Ok(new)) => new,
            Some(Err(_)) => {
                tracing::debug!(header = %name, "rewritten value is invalid; kept the original");
                v.clone()
            }
            None => v.clone(),
        })
        .collect();
    headers.remove(&name);
    for v in values {
        headers.append(name.clone(), v);
    }
}

/// Layer that rewrites the headers of a peer's response; built with
/// [`RewriteResponseLayer::builder`]. See the [module docs](super) for an example.
///
/// It sits outside the [`Upstream`](crate::Upstream), whose responses name the peer that
/// answered ([`SelectedPeer`]), which [`redirect_default`](RewriteResponseBuilder::redirect_default)
/// needs. Cloning the layer, or its services, shares one configuration.
#[derive(Debug, Clone)]
pub struct RewriteResponseLayer {
    config: Arc<Config>,
}

impl RewriteResponseLayer {
    /// Starts a configuration that changes nothing.
    pub fn builder() -> RewriteResponseBuilder {
        RewriteResponseBuilder::default()
    }
}

impl<S> Layer<S> for RewriteResponseLayer {
    type Service = RewriteResponse<S>;

    fn layer(&self, inner: S) -> RewriteResponse<S> {
        RewriteResponse {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Middleware that rewrites response headers; made by [`RewriteResponseLayer`].
#[derive(Clone)]
pub struct RewriteResponse<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RewriteResponse<S> {
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

impl<S: fmt::Debug> fmt::Debug for RewriteResponse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RewriteResponse")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, Req, ResBody> Service<Req> for RewriteResponse<S>
where
    S: Service<Req, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            config: Arc::clone(&self.config),
        }
    }
}

pin_project! {
    /// Response future for [`RewriteResponse`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        config: Arc<Config>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
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
        this.config.apply(&mut res);
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, StatusCode};
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::upstream::ReplayBody;
    use crate::{Peer, Upstream};

    fn values(res: &Response<impl Sized>, name: &str) -> Vec<String> {
        res.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn tomcat_behind_the_gateway() {
        let tomcat = service_fn(|_: Request<ReplayBody<String>>| async {
            let res = Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "http://127.0.0.1:18081/app/login?next=%2F")
                .header("refresh", "3; url=http://127.0.0.1:18081/app/")
                .header("set-cookie", "JSESSIONID=8F3A; Path=/app; HttpOnly")
                .header(
                    "set-cookie",
                    "theme=dark; Domain=.tomcat.internal; Path=/app/ui",
                )
                .header("set-cookie", "plain=1")
                .header("x-powered-by", "Servlet/4.0")
                .header("server", "Apache-Coyote/1.1")
                .body(String::new())
                .unwrap();
            Ok::<_, Infallible>(res)
        });
        let upstream = Upstream::builder()
            .peer(Peer::new("127.0.0.1:18081", tomcat))
            .build()
            .unwrap();
        let layer = RewriteResponseLayer::builder()
            .hide_header("X-Powered-By")
            .redirect_peer("/app/", "/")
            .cookie_path("/app", "/")
            .cookie_domain(".tomcat.internal", "shop.example")
            .build()
            .unwrap();
        let res = layer
            .layer(upstream)
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(values(&res, "location"), ["/login?next=%2F"]);
        assert_eq!(values(&res, "refresh"), ["3; url=/"]);
        assert_eq!(
            values(&res, "set-cookie"),
            [
                "JSESSIONID=8F3A; Path=/; HttpOnly",
                "theme=dark; Domain=.shop.example; Path=//ui",
                "plain=1",
            ]
        );
        assert!(!res.headers().contains_key("x-powered-by"));
        assert_eq!(values(&res, "server"), ["Apache-Coyote/1.1"]); // nginx would hide it
    }

    #[tokio::test]
    async fn fixed_redirects_apply_in_order_without_a_selected_peer() {
        let peer = service_fn(|_: Request<()>| async {
            let res = Response::builder()
                .header("location", "http://tserver/a/b")
                .body(())
                .unwrap();
            Ok::<_, Infallible>(res)
        });
        let layer = RewriteResponseLayer::builder()
            .redirect_default() // no SelectedPeer here: never matches
            .redirect("http://tserver/a/", "https://shop.example/")
            .redirect("http://tserver/", "/never/")
            .build()
            .unwrap();
        let res = layer.layer(peer).oneshot(Request::new(())).await.unwrap();
        assert_eq!(values(&res, "location"), ["https://shop.example/b"]);
    }

    #[test]
    fn invalid_rules_are_refused() {
        let b = RewriteResponseLayer::builder;
        assert_eq!(
            b().hide_header("bad name").build().unwrap_err(),
            ConfigError::InvalidHeaderName {
                name: "bad name".into()
            }
        );
        assert_eq!(
            b().redirect("http://a/", "/\r\nSet-Cookie: x=1")
                .build()
                .unwrap_err(),
            ConfigError::InvalidHeaderValue {
                name: "Location".into(),
                value: "/\r\nSet-Cookie: x=1".into()
            }
        );
        assert!(matches!(
            b().cookie_path("/app", "/\n").build(),
            Err(ConfigError::InvalidHeaderValue { .. })
        ));
    }
}
