//! [`ProxyPass`]: `proxy_pass` with a URI part, which replaces the matched location prefix.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{Request, Uri};
use tower::{Layer, Service};

use super::matched::{InternalRedirect, MatchedLocation};
use crate::ConfigError;

/// Layer of [`ProxyPass`]: `proxy_pass http://upstream/uri;` for a location's target.
///
/// ```
/// # use tower_upstream::location::ProxyPassLayer;
/// let layer = ProxyPassLayer::new("/")?; // location /app/ { proxy_pass http://tserver/; }
/// # Ok::<_, tower_upstream::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ProxyPassLayer {
    uri: Arc<str>,
}

impl ProxyPassLayer {
    /// The URI part of `proxy_pass`: a path starting with `/`, without query.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidProxyPassUri`] when `uri` is not such a path.
    pub fn new(uri: &str) -> Result<Self, ConfigError> {
        let valid = uri.starts_with('/')
            && !uri.contains(['?', '#'])
            && PathAndQuery::try_from(uri).is_ok();
        if !valid {
            return Err(ConfigError::InvalidProxyPassUri { uri: uri.into() });
        }
        Ok(Self { uri: uri.into() })
    }
}

impl<S> Layer<S> for ProxyPassLayer {
    type Service = ProxyPass<S>;

    fn layer(&self, inner: S) -> ProxyPass<S> {
        ProxyPass {
            inner,
            uri: self.uri.clone(),
        }
    }
}

/// Rewrites the request URI as nginx's `proxy_pass` does when it has a URI part: the part
/// of the normalised path that matched the location is replaced by that URI, and the query
/// string is kept (`location /app/` + `proxy_pass http://tserver/;` sends `/app/x?q=1` as
/// `/x?q=1`).
///
/// It reads the [`MatchedLocation`] that [`Locations`](super::Locations) sets, so it goes
/// on a location's target, in front of the [`Upstream`](crate::Upstream). Without it the
/// request goes upstream as the client sent it, which is `proxy_pass` without a URI part.
/// For requests that did not match a prefix or exact location (nginx rejects `proxy_pass`
/// with a URI in regex and named locations) the URI is left as it is.
///
/// As in nginx, the rest of the path is sent normalised, percent-encoded again if the
/// client's path had escapes (`/app/a%20b` becomes `/a%20b`, `/app//x` becomes `/x`).
pub struct ProxyPass<S> {
    inner: S,
    uri: Arc<str>,
}

impl<S> ProxyPass<S> {
    /// Wraps `inner`; see [`ProxyPassLayer::new`] for `uri`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidProxyPassUri`] when `uri` is not a path.
    pub fn new(inner: S, uri: &str) -> Result<Self, ConfigError> {
        Ok(ProxyPassLayer::new(uri)?.layer(inner))
    }

    /// The layer, as [`ProxyPassLayer::new`].
    ///
    /// # Errors
    ///
    /// As [`ProxyPassLayer::new`].
    pub fn layer(uri: &str) -> Result<ProxyPassLayer, ConfigError> {
        ProxyPassLayer::new(uri)
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

impl<S: Clone> Clone for ProxyPass<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            uri: self.uri.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ProxyPass<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyPass")
            .field("inner", &self.inner)
            .field("uri", &self.uri)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for ProxyPass<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(m) = req.extensions().get::<MatchedLocation>() {
            let internal = req.extensions().get::<InternalRedirect>().is_some();
            if let Some(uri) = rewrite(req.uri(), m, &self.uri, internal) {
                *req.uri_mut() = uri;
            }
        }
        self.inner.call(req)
    }
}

/// `uri` with the matched location's prefix replaced by `replacement`; `None` when the
/// location is not a prefix or exact one.
pub(crate) fn rewrite(
    uri: &Uri,
    m: &MatchedLocation,
    replacement: &str,
    internal: bool,
) -> Option<Uri> {
    if !m.kind().is_static() {
        return None;
    }
    debug_assert!(m.path().starts_with(m.pattern().as_bytes()));
    let rest = m.path().get(m.pattern().len()..)?;
    let mut path = String::with_capacity(replacement.len() + rest.len() + 16);
    path.push_str(replacement);
    // nginx escapes the rest only when the client's path had escapes (or after an internal
    // redirect); otherwise it is a piece of the client's path, valid as it is.
    let escape = m.was_quoted() || internal || std::str::from_utf8(rest).is_err();
    if escape {
        escape_into(&mut path, rest);
    } else {
        path.push_str(std::str::from_utf8(rest).expect("checked"));
    }
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path).ok()?);
    Uri::from_parts(parts).ok()
}

/// nginx's `NGX_ESCAPE_URI`: controls, space, `"#%<>?\^{|}` and backtick, DEL and
/// non-ASCII bytes are percent-encoded.
pub(crate) fn escape_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        let escape = b <= b' '
            || b >= 0x7f
            || matches!(
                b,
                b'"' | b'#' | b'%' | b'<' | b'>' | b'?' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            );
        if escape {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push(b as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_nginx() {
        let mut out = String::new();
        escape_into(&mut out, b"a b?c%d#e\"f\xff/g~h[i]");
        assert_eq!(out, "a%20b%3Fc%25d%23e%22f%FF/g~h[i]");
    }

    #[test]
    fn invalid_uris_are_config_errors() {
        for bad in ["", "x", "/a?b", "/a#b", "/a b"] {
            assert!(ProxyPassLayer::new(bad).is_err(), "{bad:?}");
        }
        assert!(ProxyPassLayer::new("/").is_ok());
        assert!(ProxyPassLayer::new("/v2/api/").is_ok());
    }
}
