//! Where a header's value comes from: an nginx template, a closure, or a built-in.

use std::fmt;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue, InvalidHeaderValue};
use http::request::Parts;
use http::Version;

use super::forwarded;
use super::template::{self, Ctx, Template};

/// Makes a header value from the request as the client sent it, like tower-http's
/// `MakeHeaderValue`. Returning `None` (or an empty value) leaves the header out.
///
/// Implemented for closures `Fn(&Parts) -> Option<HeaderValue>` and for a fixed
/// [`HeaderValue`]:
///
/// ```
/// use http::{request::Parts, HeaderValue};
/// use tower_upstream::proxy_headers::ProxyHeadersLayer;
///
/// let layer = ProxyHeadersLayer::builder()
///     .set_with("X-Method", |req: &Parts| HeaderValue::from_str(req.method.as_str()).ok())
///     .set_with("X-Gateway", HeaderValue::from_static("gw1"))
///     .build()?;
/// # Ok::<_, tower_upstream::ConfigError>(())
/// ```
pub trait MakeHeaderValue: Send + Sync + 'static {
    /// The value for this request, or `None` to send no such header.
    fn make_header_value(&self, req: &Parts) -> Option<HeaderValue>;
}

impl<F> MakeHeaderValue for F
where
    F: Fn(&Parts) -> Option<HeaderValue> + Send + Sync + 'static,
{
    fn make_header_value(&self, req: &Parts) -> Option<HeaderValue> {
        self(req)
    }
}

impl MakeHeaderValue for HeaderValue {
    fn make_header_value(&self, _: &Parts) -> Option<HeaderValue> {
        Some(self.clone())
    }
}

/// A configured header's value source.
#[derive(Clone)]
pub(crate) enum Source {
    Template(Template),
    Make(Arc<dyn MakeHeaderValue>),
    /// The client's `Forwarded` values, then this hop's element.
    Forwarded,
    /// The client's `Via` values, then `<version> <pseudonym>`.
    Via(Box<[u8]>),
}

impl Source {
    /// The value for one request; `None` when it is empty (nginx then sends no header) or,
    /// which a template cannot produce, not a valid header value.
    pub(crate) fn make(&self, name: &HeaderName, ctx: &Ctx<'_>) -> Option<HeaderValue> {
        let out = match self {
            Self::Template(t) => return valid(name, t.value(ctx)),
            Self::Make(m) => return m.make_header_value(ctx.parts).filter(|v| !v.is_empty()),
            Self::Forwarded => {
                let mut out = template::buffer();
                // A client's value with an open quote would swallow our element: drop it.
                append_existing(ctx.parts, name, &mut out, forwarded::is_closed);
                let host = ctx.parts.uri.authority().map(|a| a.as_str().as_bytes());
                let host = host.or_else(|| {
                    let h = ctx.parts.headers.get(header::HOST)?;
                    Some(h.as_bytes())
                });
                forwarded::write_element(&mut out, ctx.client, host, ctx.scheme);
                out
            }
            Self::Via(pseudonym) => {
                let mut out = template::buffer();
                append_existing(ctx.parts, name, &mut out, |_| true);
                out.extend_from_slice(version(ctx.parts.version).as_bytes());
                out.push(b' ');
                out.extend_from_slice(pseudonym);
                out
            }
        };
        valid(name, template::buffer_value(out))
    }
}

/// The value made for header `name`, if it was a valid one.
fn valid(
    name: &HeaderName,
    value: Result<Option<HeaderValue>, InvalidHeaderValue>,
) -> Option<HeaderValue> {
    value.unwrap_or_else(|_| {
        tracing::debug!(header = %name, "computed header value is invalid; not sent");
        None
    })
}

/// The request's own lines of header `name` that `keep` accepts, joined with `", "`, and a
/// `", "` after them.
fn append_existing(
    parts: &Parts,
    name: &HeaderName,
    out: &mut Vec<u8>,
    keep: impl Fn(&[u8]) -> bool,
) {
    for v in parts.headers.get_all(name) {
        if !keep(v.as_bytes()) {
            tracing::debug!(header = %name, "client value with an open quote; not forwarded");
            continue;
        }
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b", ");
    }
}

/// The protocol version as `Via` writes it (RFC 9110 §7.6.3).
fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Whether `pseudonym` may follow the version in `Via`: a token, or `host[:port]`.
pub(crate) fn valid_pseudonym(pseudonym: &str) -> bool {
    !pseudonym.is_empty()
        && pseudonym
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:[]".contains(&b))
}

/// Bytes allowed in a header value.
pub(crate) fn valid_value(value: &str) -> bool {
    value.bytes().all(template::valid_value_byte)
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Template(t) => f.debug_tuple("Template").field(t).finish(),
            Self::Make(_) => f.write_str("Make(..)"),
            Self::Forwarded => f.write_str("Forwarded"),
            Self::Via(p) => f
                .debug_tuple("Via")
                .field(&String::from_utf8_lossy(p))
                .finish(),
        }
    }
}
