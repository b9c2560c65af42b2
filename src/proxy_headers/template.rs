//! Header values written the nginx way: literal text and `$variables`.

use std::io::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue, InvalidHeaderValue};
use http::request::Parts;

use crate::ConfigError;

/// A parsed `proxy_set_header` value such as `$remote_addr` or `for=$remote_addr;x`.
#[derive(Clone)]
pub(crate) struct Template {
    parts: Box<[Part]>,
    value: Value,
}

/// How [`Template::value`] makes the value.
#[derive(Clone)]
enum Value {
    /// For each request.
    PerRequest,
    /// Once, when the layer was built: the same for every request (`None`: empty).
    Fixed(Option<HeaderValue>),
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("parts", &self.parts)
            .finish()
    }
}

#[derive(Clone)]
enum Part {
    Literal(Box<[u8]>),
    Var(Var),
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(text) => write!(f, "{:?}", String::from_utf8_lossy(text)),
            Self::Var(var) => write!(f, "{var:?}"),
        }
    }
}

/// The variables a template may use.
#[derive(Debug, Clone)]
enum Var {
    /// `$host`: the request line's host, else the `Host` header's host, lowercased and
    /// without port or trailing dot, else the configured server name.
    Host,
    /// `$proxy_host`: the configured proxied host (nginx: the `proxy_pass` host).
    ProxyHost,
    /// `$remote_addr`: the client address.
    RemoteAddr,
    /// `$proxy_add_x_forwarded_for`: the client's `X-Forwarded-For` values, then the client
    /// address.
    ProxyAddXForwardedFor,
    /// `$scheme`.
    Scheme,
    /// `$request_uri`: the original path and query.
    RequestUri,
    /// `$http_<name>`: a request header (`_` stands for `-`).
    Http(HeaderName),
}

/// What a template is evaluated against: the request as the client sent it, and the facts
/// the layer knows.
pub(crate) struct Ctx<'a> {
    pub(crate) parts: &'a Parts,
    pub(crate) client: Option<IpAddr>,
    /// `client` as `$remote_addr` writes it, when it was made already (a connection's).
    pub(crate) client_text: Option<&'a HeaderValue>,
    pub(crate) scheme: &'a [u8],
    pub(crate) proxy_host: &'a [u8],
    pub(crate) server_name: &'a [u8],
}

impl Template {
    /// Parses `value` for header `name`. Literal text must be valid in a header value (no
    /// control characters other than tab); variables are `$name` or `${name}`, and their
    /// names are not case-sensitive, as in nginx.
    pub(crate) fn parse(name: &str, value: &str) -> Result<Self, ConfigError> {
        let invalid_value = || ConfigError::InvalidHeaderValue {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let unknown = |variable: &str| ConfigError::UnknownVariable {
            name: name.to_owned(),
            variable: variable.to_owned(),
        };
        let mut parts = Vec::new();
        let mut rest = value;
        while !rest.is_empty() {
            let Some(after) = rest.strip_prefix('$') else {
                let end = rest.find('$').unwrap_or(rest.len());
                let literal = &rest[..end];
                if !literal.bytes().all(valid_value_byte) {
                    return Err(invalid_value());
                }
                parts.push(Part::Literal(literal.as_bytes().into()));
                rest = &rest[end..];
                continue;
            };
            let (var, written, next) = match after.strip_prefix('{') {
                Some(inner) => {
                    let close = inner.find('}').ok_or_else(|| unknown(rest))?;
                    (&inner[..close], &rest[..close + 3], &inner[close + 1..])
                }
                None => {
                    let len = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..len], &rest[..len + 1], &after[len..])
                }
            };
            let var = Var::parse(var).ok_or_else(|| unknown(written))?;
            parts.push(Part::Var(var));
            rest = next;
        }
        Ok(Self {
            parts: parts.into(),
            value: Value::PerRequest,
        })
    }

    /// Makes the value once if it is the same for every request: text and `$proxy_host`
    /// (`proxy_host`, known when the layer is built).
    pub(crate) fn resolve(&mut self, proxy_host: &[u8]) {
        let mut out = Vec::new();
        for part in &*self.parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text),
                Part::Var(Var::ProxyHost) => out.extend_from_slice(proxy_host),
                Part::Var(_) => return,
            }
        }
        if let Ok(value) = buffer_value(out) {
            self.value = Value::Fixed(value);
        }
    }

    /// The value for one request: `Ok(None)` when it is empty (nginx then sends no header),
    /// `Err` when it is not a valid header value. A fixed value or a single variable is
    /// made without building a string.
    pub(crate) fn value(&self, ctx: &Ctx<'_>) -> Result<Option<HeaderValue>, InvalidHeaderValue> {
        match (&self.value, &*self.parts) {
            (Value::Fixed(value), _) => Ok(value.clone()),
            (Value::PerRequest, [Part::Var(var)]) => var.value(ctx),
            (Value::PerRequest, _) => {
                let mut out = buffer();
                self.eval(ctx, &mut out);
                buffer_value(out)
            }
        }
    }

    /// Appends the value for one request to `out`.
    pub(crate) fn eval(&self, ctx: &Ctx<'_>, out: &mut Vec<u8>) {
        for part in &*self.parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text),
                Part::Var(var) => var.eval(ctx, out),
            }
        }
    }
}

impl Var {
    fn parse(name: &str) -> Option<Self> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let name = name.to_ascii_lowercase();
        Some(match name.as_str() {
            "host" => Self::Host,
            "proxy_host" => Self::ProxyHost,
            "remote_addr" => Self::RemoteAddr,
            "proxy_add_x_forwarded_for" => Self::ProxyAddXForwardedFor,
            "scheme" => Self::Scheme,
            "request_uri" => Self::RequestUri,
            _ => {
                let header = name.strip_prefix("http_").filter(|h| !h.is_empty())?;
                Self::Http(HeaderName::from_bytes(header.replace('_', "-").as_bytes()).ok()?)
            }
        })
    }

    /// The value of this variable alone; what [`Var::eval`] writes, as a header value.
    fn value(&self, ctx: &Ctx<'_>) -> Result<Option<HeaderValue>, InvalidHeaderValue> {
        match self {
            Self::Host => host_value(ctx.parts, ctx.server_name),
            Self::RemoteAddr => match (ctx.client_text, ctx.client) {
                (Some(text), _) => Ok(Some(text.clone())),
                (None, Some(ip)) => bytes_value(IpText::new(ip).as_bytes()),
                (None, None) => Ok(None),
            },
            Self::Scheme => match ctx.scheme {
                b"http" => Ok(Some(HeaderValue::from_static("http"))),
                b"https" => Ok(Some(HeaderValue::from_static("https"))),
                scheme => bytes_value(scheme),
            },
            Self::RequestUri => {
                let pq = ctx.parts.uri.path_and_query();
                bytes_value(pq.map_or(&b""[..], |pq| pq.as_str().as_bytes()))
            }
            Self::Http(name) => {
                let mut lines = ctx.parts.headers.get_all(name).iter();
                match (lines.next(), lines.next()) {
                    (None, _) => Ok(None),
                    (Some(first), None) => Ok(shared(first)),
                    (Some(first), Some(_)) if separator(name).is_none() => Ok(shared(first)),
                    _ => self.value_in_buffer(ctx),
                }
            }
            Self::ProxyHost | Self::ProxyAddXForwardedFor => self.value_in_buffer(ctx),
        }
    }

    fn value_in_buffer(&self, ctx: &Ctx<'_>) -> Result<Option<HeaderValue>, InvalidHeaderValue> {
        let mut out = buffer();
        self.eval(ctx, &mut out);
        buffer_value(out)
    }

    fn eval(&self, ctx: &Ctx<'_>, out: &mut Vec<u8>) {
        match self {
            Self::Host => out.extend_from_slice(&host(ctx.parts, ctx.server_name)),
            Self::ProxyHost => out.extend_from_slice(ctx.proxy_host),
            Self::RemoteAddr => {
                if let Some(ip) = ctx.client {
                    out.extend_from_slice(IpText::new(ip).as_bytes());
                }
            }
            Self::ProxyAddXForwardedFor => {
                let existing = ctx.parts.headers.get_all(header_x_forwarded_for());
                let mut first = true;
                for v in existing.iter() {
                    if !std::mem::take(&mut first) {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(v.as_bytes());
                }
                if let Some(ip) = ctx.client {
                    if !first {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(IpText::new(ip).as_bytes());
                }
            }
            Self::Scheme => out.extend_from_slice(ctx.scheme),
            Self::RequestUri => {
                if let Some(pq) = ctx.parts.uri.path_and_query() {
                    out.extend_from_slice(pq.as_str().as_bytes());
                }
            }
            Self::Http(name) => http_header(ctx.parts, name, out),
        }
    }
}

/// An address as `Display` writes it, which is also how nginx writes `$remote_addr`
/// (`192.0.2.7`, `2001:db8::1`, `::ffff:192.0.2.7`), formatted on the stack: no `String`,
/// and no `fmt` machinery at all for IPv4.
pub(crate) struct IpText {
    buf: [u8; IpText::CAP],
    len: usize,
}

impl IpText {
    /// The longest IPv6 text, `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`, in brackets.
    const CAP: usize = 47;

    /// `ip` as `Display` writes it.
    pub(crate) fn new(ip: IpAddr) -> Self {
        Self::write(ip, false)
    }

    /// `ip` as an RFC 7239 node: an IPv6 address in brackets.
    pub(crate) fn node(ip: IpAddr) -> Self {
        Self::write(ip, true)
    }

    fn write(ip: IpAddr, brackets: bool) -> Self {
        let mut text = Self {
            buf: [0; Self::CAP],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                let mut rest = &mut text.buf[..];
                // Cannot fail: `CAP` holds the longest form.
                let _ = if brackets {
                    write!(rest, "[{v6}]")
                } else {
                    write!(rest, "{v6}")
                };
                text.len = Self::CAP - rest.len();
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn header_x_forwarded_for() -> HeaderName {
    HeaderName::from_static("x-forwarded-for")
}

/// What joins the lines of header `name` in `$http_<name>`: `"; "` for `Cookie`, `", "` for
/// `X-Forwarded-For`; `None` for any other header, whose first line is taken (nginx 1.22).
fn separator(name: &HeaderName) -> Option<&'static [u8]> {
    if name == header::COOKIE {
        Some(b"; ")
    } else if name == "x-forwarded-for" {
        Some(b", ")
    } else {
        None
    }
}

/// `$http_<name>`, see [`separator`].
fn http_header(parts: &Parts, name: &HeaderName, out: &mut Vec<u8>) {
    let Some(sep) = separator(name) else {
        if let Some(v) = parts.headers.get(name) {
            out.extend_from_slice(v.as_bytes());
        }
        return;
    };
    for (i, v) in parts.headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(v.as_bytes());
    }
}

/// nginx's `$host`: the host of the request line (absolute-form, or HTTP/2's `:authority`),
/// else of the `Host` header, checked and normalized as nginx does; else `server_name`.
pub(crate) fn host(parts: &Parts, server_name: &[u8]) -> Vec<u8> {
    let from_uri = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let from_header = || parts.headers.get(header::HOST).map(|v| v.as_bytes());
    from_uri
        .or_else(from_header)
        .and_then(normalize_host)
        .unwrap_or_else(|| server_name.to_vec())
}

/// `$host` as a header value (see [`host`]): the client's own `Host` value, sharing its
/// bytes, when it is already normal (lower case, no port, no trailing dot), else one copy.
fn host_value(
    parts: &Parts,
    server_name: &[u8],
) -> Result<Option<HeaderValue>, InvalidHeaderValue> {
    let (raw, header) = match parts.uri.authority() {
        Some(authority) => (authority.as_str().as_bytes(), None),
        None => match parts.headers.get(header::HOST) {
            Some(header) => (header.as_bytes(), Some(header)),
            None => return bytes_value(server_name),
        },
    };
    let Some(len) = host_len(raw) else {
        return bytes_value(server_name);
    };
    let host = &raw[..len];
    if host.iter().any(u8::is_ascii_uppercase) {
        return buffer_value(host.to_ascii_lowercase());
    }
    match header {
        Some(header) if len == raw.len() => Ok(shared(header)),
        _ => bytes_value(host),
    }
}

/// nginx's host normalization, see [`host_len`]; ASCII is lowercased.
fn normalize_host(raw: &[u8]) -> Option<Vec<u8>> {
    host_len(raw).map(|len| raw[..len].to_ascii_lowercase())
}

/// nginx's host validation: no `/`, no control characters or spaces, no `..`; the port (after
/// `:` outside an IPv6 literal) and one trailing dot are dropped. The length of what is
/// left; `None` for an invalid or empty host.
fn host_len(raw: &[u8]) -> Option<usize> {
    #[derive(PartialEq)]
    enum State {
        Usual,
        Literal,
        Rest,
    }
    let mut state = State::Usual;
    let mut host_len = raw.len();
    let mut last_dot: Option<usize> = None;
    for (i, &ch) in raw.iter().enumerate() {
        match ch {
            b'.' => {
                if i > 0 && last_dot == Some(i - 1) {
                    return None;
                }
                last_dot = Some(i);
            }
            b':' if state == State::Usual => {
                host_len = i;
                state = State::Rest;
            }
            b'[' if i == 0 => state = State::Literal,
            b']' if state == State::Literal => {
                host_len = i + 1;
                state = State::Rest;
            }
            b'/' => return None,
            c if c <= 0x20 || c == 0x7f => return None,
            _ => {}
        }
    }
    if host_len > 0 && last_dot == Some(host_len - 1) {
        host_len -= 1;
    }
    (host_len > 0).then_some(host_len)
}

/// A copy of a client's value, sharing its bytes; `None` when it is empty. Never marked
/// sensitive, as a value built from its bytes would not be.
fn shared(value: &HeaderValue) -> Option<HeaderValue> {
    let mut value = value.clone();
    value.set_sensitive(false);
    (!value.is_empty()).then_some(value)
}

/// `bytes`, copied, as a header value; `None` when empty.
fn bytes_value(bytes: &[u8]) -> Result<Option<HeaderValue>, InvalidHeaderValue> {
    if bytes.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_bytes(bytes).map(Some)
}

/// A buffer to build a value in, as large as most values (`X-Forwarded-For` with two
/// addresses, a `Forwarded` element with a host): it seldom grows.
pub(crate) fn buffer() -> Vec<u8> {
    Vec::with_capacity(64)
}

/// A value built in `out`, without copying it; `None` when empty.
pub(crate) fn buffer_value(out: Vec<u8>) -> Result<Option<HeaderValue>, InvalidHeaderValue> {
    if out.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_maybe_shared(Bytes::from(out)).map(Some)
}

/// Bytes allowed in a header value: visible ASCII, space, tab, and obs-text.
pub(crate) fn valid_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// What `template` writes, checking that the value the layer sends is the same.
    fn eval(template: &str, parts: &Parts, client: Option<&str>) -> String {
        let mut t = Template::parse("x-test", template).unwrap();
        let ctx = Ctx {
            parts,
            client: client.map(|c| c.parse().unwrap()),
            client_text: None,
            scheme: b"https",
            proxy_host: b"tserver",
            server_name: b"gw.local",
        };
        let mut out = Vec::new();
        t.eval(&ctx, &mut out);
        for resolved in [false, true] {
            if resolved {
                t.resolve(ctx.proxy_host);
            }
            let value = t.value(&ctx).unwrap();
            let sent = value.as_ref().map_or(&b""[..], HeaderValue::as_bytes);
            assert_eq!(sent, out, "{template}, resolved: {resolved}");
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn variables_and_literals() {
        let p = parts(
            "/a/b?c=d",
            &[("host", "Shop.Example.COM:8080"), ("user-agent", "curl/8")],
        );
        assert_eq!(eval("$host", &p, None), "shop.example.com");
        assert_eq!(eval("$http_host", &p, None), "Shop.Example.COM:8080");
        assert_eq!(eval("$proxy_host", &p, None), "tserver");
        assert_eq!(eval("$scheme", &p, None), "https");
        assert_eq!(eval("$request_uri", &p, None), "/a/b?c=d");
        assert_eq!(eval("$remote_addr", &p, Some("::1")), "::1");
        assert_eq!(eval("$remote_addr", &p, None), "");
        assert_eq!(
            eval("ua=${http_user_agent}x;$HTTP_USER_AGENT", &p, None),
            "ua=curl/8x;curl/8"
        );
        assert_eq!(eval("$http_missing", &p, None), "");
        assert_eq!(eval("plain text", &p, None), "plain text");
        assert_eq!(eval("", &p, None), "");
    }

    #[test]
    fn proxy_add_x_forwarded_for_appends_the_client() {
        let p = parts("/", &[]);
        assert_eq!(
            eval("$proxy_add_x_forwarded_for", &p, Some("192.0.2.7")),
            "192.0.2.7"
        );
        let mut p = parts("/", &[("x-forwarded-for", "203.0.113.9, 198.51.100.2")]);
        p.headers
            .append("x-forwarded-for", "10.1.1.1".parse().unwrap());
        assert_eq!(
            eval("$proxy_add_x_forwarded_for", &p, Some("2001:db8::1")),
            "203.0.113.9, 198.51.100.2, 10.1.1.1, 2001:db8::1"
        );
        assert_eq!(
            eval("$http_x_forwarded_for", &p, None),
            "203.0.113.9, 198.51.100.2, 10.1.1.1"
        );
    }

    #[test]
    fn repeated_headers_follow_nginx() {
        let mut p = parts("/", &[("cookie", "a=1"), ("x-dup", "first")]);
        p.headers.append("cookie", "b=2".parse().unwrap());
        p.headers.append("x-dup", "second".parse().unwrap());
        assert_eq!(eval("$http_cookie", &p, None), "a=1; b=2");
        assert_eq!(eval("$http_x_dup", &p, None), "first");
    }

    #[test]
    fn host_follows_nginx_rules() {
        let host_of = |h: &str| {
            let p = parts("/", &[("host", h)]);
            let value = host_value(&p, b"fallback").unwrap().unwrap();
            assert_eq!(value.as_bytes(), host(&p, b"fallback"), "{h}");
            String::from_utf8(host(&p, b"fallback")).unwrap()
        };
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("EXAMPLE.com."), "example.com");
        assert_eq!(host_of("example.com.:80"), "example.com");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
        assert_eq!(host_of("[2001:DB8::1]"), "[2001:db8::1]");
        assert_eq!(host_of("127.0.0.1:80"), "127.0.0.1");
        // Only the last dot of all is a trailing one, in the port too (nginx 1.22 on loopback
        // answered `a.` and `a`).
        assert_eq!(host_of("a.:1.2"), "a.");
        assert_eq!(host_of("a.:12"), "a");
        // Invalid hosts (nginx answers 400) fall back to the server name.
        assert_eq!(host_of("a..b"), "fallback");
        assert_eq!(host_of(":80"), "fallback");
        assert_eq!(host_of("."), "fallback");
        assert_eq!(host_of("a/b"), "fallback");
        assert_eq!(host_of("a b"), "fallback");
        // Each byte in the middle of a host: refused, the start of the port, or kept.
        for b in 0..=255u8 {
            let expected = match b {
                0..=0x20 | 0x7f | b'/' => None,
                b':' => Some(1),
                _ => Some(3),
            };
            assert_eq!(host_len(&[b'a', b, b'b']), expected, "byte {b:#x}");
        }
        // The request line's host wins over the header.
        let p = parts("http://Line.Example:81/x", &[("host", "header.example")]);
        assert_eq!(host(&p, b""), b"line.example");
        assert_eq!(host_value(&p, b"").unwrap().unwrap(), "line.example");
        // No host at all: the server name, or nothing.
        assert_eq!(host(&parts("/", &[]), b"gw.local"), b"gw.local");
        assert_eq!(
            host_value(&parts("/", &[]), b"gw.local").unwrap().unwrap(),
            "gw.local"
        );
        assert_eq!(host_value(&parts("/", &[]), b"").unwrap(), None);
        assert_eq!(
            host_value(&parts("/", &[("host", ":1")]), b"").unwrap(),
            None
        );
    }

    #[test]
    fn single_variables_share_the_client_bytes() {
        let p = parts("/", &[("host", "shop.example"), ("x-a", "1"), ("x-a", "2")]);
        let shares = |template: &str, header: &str| {
            let value = eval_value(template, &p);
            value.as_bytes().as_ptr() == p.headers[header].as_bytes().as_ptr()
        };
        assert!(shares("$host", "host"));
        assert!(shares("$http_host", "host"));
        assert!(shares("$http_x_a", "x-a"));
        // Normalized: a copy.
        let p = parts("/", &[("host", "Shop.Example")]);
        assert_eq!(eval_value("$host", &p), "shop.example");
        // A client's sensitive value is not sent as sensitive, as before.
        let mut p = parts("/", &[]);
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        p.headers.insert("x-secret", secret);
        assert!(!eval_value("$http_x_secret", &p).is_sensitive());
    }

    fn eval_value(template: &str, parts: &Parts) -> HeaderValue {
        let t = Template::parse("x-test", template).unwrap();
        let ctx = Ctx {
            parts,
            client: None,
            client_text: None,
            scheme: b"http",
            proxy_host: b"",
            server_name: b"",
        };
        t.value(&ctx).unwrap().unwrap()
    }

    #[test]
    fn ip_text_is_display() {
        let text = |ip: IpAddr| String::from_utf8(IpText::new(ip).as_bytes().to_vec()).unwrap();
        // Every octet value, in every position.
        for o in 0..=255u8 {
            for ip in [
                [o, 0, 9, 10],
                [99, o, 100, 1],
                [255, 10, o, 0],
                [1, 2, 3, o],
            ] {
                let ip = IpAddr::from(ip);
                assert_eq!(text(ip), ip.to_string());
            }
        }
        // nginx's `$remote_addr`: IPv6 without brackets, IPv4-mapped as `::ffff:a.b.c.d`.
        for (ip, written) in [
            ("::1", "::1"),
            ("::", "::"),
            ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("fe80::1:2:3:4", "fe80::1:2:3:4"),
            ("::ffff:192.0.2.7", "::ffff:192.0.2.7"),
            ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
            ("::1.2.3.4", "::102:304"), // IPv4-compatible (deprecated): Rust writes hex
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(text(ip), written);
            assert_eq!(text(ip), ip.to_string());
            let node = IpText::node(ip);
            assert_eq!(node.as_bytes(), format!("[{written}]").as_bytes());
        }
        assert_eq!(IpText::node([192, 0, 2, 7].into()).as_bytes(), b"192.0.2.7");
    }

    #[test]
    fn bad_templates_are_config_errors() {
        let err = |v: &str| Template::parse("X-A", v).unwrap_err();
        assert_eq!(
            err("$nope"),
            ConfigError::UnknownVariable {
                name: "X-A".into(),
                variable: "$nope".into()
            }
        );
        assert_eq!(
            err("a ${host"),
            ConfigError::UnknownVariable {
                name: "X-A".into(),
                variable: "${host".into()
            }
        );
        assert!(matches!(err("$"), ConfigError::UnknownVariable { .. }));
        assert!(matches!(err("${}"), ConfigError::UnknownVariable { .. }));
        assert!(matches!(err("a$-b"), ConfigError::UnknownVariable { .. }));
        assert!(matches!(err("$http_"), ConfigError::UnknownVariable { .. }));
        assert_eq!(
            err("a\r\nInjected: yes"),
            ConfigError::InvalidHeaderValue {
                name: "X-A".into(),
                value: "a\r\nInjected: yes".into()
            }
        );
        assert!(matches!(
            err("nul\0"),
            ConfigError::InvalidHeaderValue { .. }
        ));
        assert!(matches!(
            err("del\x7f"),
            ConfigError::InvalidHeaderValue { .. }
        ));
        assert!(Template::parse("X-A", "tab\tok é").is_ok());
    }
}
