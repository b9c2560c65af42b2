//! Writing a request head, and choosing how its body is framed.
//!
//! The framing rules are hyper's client's, so that backends see what they saw before:
//! a body the caller set `Content-Length` or `Transfer-Encoding` for is sent that way, a body
//! of known size gets a `Content-Length`, any other body is chunked (except for `GET`, `HEAD`
//! and `CONNECT`, which are sent without one), and an empty body adds nothing.

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body::Body;

use crate::proxy_headers::hop_by_hop::value_has_token;

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body bytes at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Chooses the framing of `req`'s body and makes its headers say so, except that an empty
/// body's `Transfer-Encoding` is left for [`head`] to skip: most requests have neither, and
/// a look-up to remove it costs as much as writing the whole head.
pub(crate) fn framing<B: Body>(req: &mut Request<B>) -> Framing {
    if req.body().is_end_stream() {
        return Framing::Empty;
    }
    let exact = req.body().size_hint().exact();
    let method_has_no_body = matches!(*req.method(), Method::GET | Method::HEAD | Method::CONNECT);
    let headers = req.headers_mut();
    if headers.contains_key(TRANSFER_ENCODING) {
        if !ends_chunked(headers) {
            // `gzip` alone would leave the body unframed: add `chunked`, as hyper does.
            let mut values: Vec<HeaderValue> =
                headers.get_all(TRANSFER_ENCODING).iter().cloned().collect();
            if let Some(last) = values.pop() {
                let mut bytes = last.as_bytes().to_vec();
                bytes.extend_from_slice(b", chunked");
                values.push(
                    HeaderValue::from_bytes(&bytes)
                        .unwrap_or_else(|_| HeaderValue::from_static("chunked")),
                );
            }
            headers.remove(TRANSFER_ENCODING);
            for value in values {
                headers.append(TRANSFER_ENCODING, value);
            }
        }
        headers.remove(CONTENT_LENGTH);
        return Framing::Chunked;
    }
    if let Some(len) = content_length(headers) {
        return Framing::Length(len);
    }
    if let Some(len) = exact {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        return Framing::Length(len);
    }
    if method_has_no_body {
        return Framing::Empty;
    }
    headers.remove(CONTENT_LENGTH);
    headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    Framing::Chunked
}

/// Whether the last transfer coding is `chunked`.
pub(crate) fn ends_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The `Content-Length`, if every value is the same valid number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .try_fold(None, |len, value| {
            add_content_length(len, value.as_bytes()).map(Some)
        })?
}

/// Folds one `Content-Length` field value (a comma-separated list) into the length read from
/// the values before it (`None` for the first): `None` when it is not a number or differs.
pub(crate) fn add_content_length(len: Option<u64>, value: &[u8]) -> Option<u64> {
    let mut len = len;
    for part in value.split(|&b| b == b',') {
        let n = parse_u64(part.trim_ascii())?;
        if len.is_some_and(|l| l != n) {
            return None;
        }
        len = Some(n);
    }
    len
}

/// Digits only (no sign, no spaces), as RFC 9110 defines `Content-Length`.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// What [`head`] noticed in the fields it wrote, so that nothing looks them up again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Noted {
    /// `Connection: close`: the connection ends with this exchange.
    pub(crate) close: bool,
    /// An `Upgrade` field: a `101` answer is expected.
    pub(crate) upgrade: bool,
}

/// Appends `METHOD target HTTP/1.1`, the headers and the blank line to `dst`: with
/// [`Framing::Empty`], without `Transfer-Encoding`; without a `Host`, with `host` last (where
/// hyper's client added it).
pub(crate) fn head<B>(
    req: &Request<B>,
    framing: Framing,
    host: &HeaderValue,
    dst: &mut Vec<u8>,
) -> Noted {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    dst.reserve(32 + target.len() + req.headers().len() * 32);
    dst.extend_from_slice(req.method().as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    let mut noted = Noted::default();
    let mut has_host = false;
    for (name, value) in req.headers() {
        if *name == HOST {
            has_host = true;
        } else if *name == CONNECTION {
            noted.close |= value_has_token(value, "close");
        } else if *name == UPGRADE {
            noted.upgrade = true;
        } else if *name == TRANSFER_ENCODING && framing == Framing::Empty {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if !has_host {
        dst.extend_from_slice(b"host: ");
        dst.extend_from_slice(host.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    noted
}

/// Appends one chunk's size line to `dst` (`1a\r\n`).
pub(crate) fn chunk_size(len: usize, dst: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.extend_from_slice(&digits[i..]);
    dst.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{Empty, Full, StreamBody};

    use super::*;

    type Frames =
        StreamBody<futures_util::stream::Empty<Result<http_body::Frame<Bytes>, std::io::Error>>>;

    fn streaming() -> Frames {
        StreamBody::new(futures_util::stream::empty())
    }

    #[test]
    fn empty_bodies_add_nothing() {
        let mut req = Request::post("/").body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(framing(&mut req), Framing::Empty);
        assert!(req.headers().is_empty());
        // A `Transfer-Encoding` on an empty body is not written.
        let mut req = Request::post("/")
            .header("transfer-encoding", "chunked")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(framing(&mut req), Framing::Empty);
        let mut out = Vec::new();
        head(
            &req,
            Framing::Empty,
            &HeaderValue::from_static("h"),
            &mut out,
        );
        assert_eq!(out, b"POST / HTTP/1.1\r\nhost: h\r\n\r\n");
    }

    #[test]
    fn known_sizes_get_a_content_length() {
        let mut req = Request::post("/")
            .body(Full::new(Bytes::from("hello")))
            .unwrap();
        assert_eq!(framing(&mut req), Framing::Length(5));
        assert_eq!(req.headers()["content-length"], "5");
    }

    #[test]
    fn caller_headers_are_respected() {
        let mut req = Request::post("/")
            .header("content-length", "5")
            .body(streaming())
            .unwrap();
        assert_eq!(framing(&mut req), Framing::Length(5));
        let mut req = Request::post("/")
            .header("content-length", "5")
            .header("transfer-encoding", "gzip")
            .body(streaming())
            .unwrap();
        assert_eq!(framing(&mut req), Framing::Chunked);
        assert!(!req.headers().contains_key("content-length"));
        assert_eq!(req.headers()["transfer-encoding"], "gzip, chunked");
    }

    #[test]
    fn unknown_sizes_are_chunked_except_for_get() {
        let mut req = Request::post("/").body(streaming()).unwrap();
        assert_eq!(framing(&mut req), Framing::Chunked);
        assert_eq!(req.headers()["transfer-encoding"], "chunked");
        let mut req = Request::get("/").body(streaming()).unwrap();
        assert_eq!(framing(&mut req), Framing::Empty);
        assert!(req.headers().is_empty());
    }

    #[test]
    fn head_notes_close_and_upgrade() {
        let noted = |fields: &[(&str, &str)]| {
            let mut req = Request::get("/");
            for (name, value) in fields {
                req = req.header(*name, *value);
            }
            let mut out = Vec::new();
            let host = HeaderValue::from_static("h");
            let noted = head(&req.body(()).unwrap(), Framing::Empty, &host, &mut out);
            (noted.close, noted.upgrade)
        };
        assert_eq!(noted(&[]), (false, false));
        assert_eq!(noted(&[("connection", "keep-alive, Close")]), (true, false));
        assert_eq!(
            noted(&[("connection", "x"), ("connection", "close")]),
            (true, false)
        );
        assert_eq!(noted(&[("connection", "closed")]), (false, false));
        assert_eq!(noted(&[("upgrade", "websocket")]), (false, true));
    }

    #[test]
    fn content_length_values() {
        let map = |vals: &[&str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(CONTENT_LENGTH, v.parse().unwrap());
            }
            h
        };
        assert_eq!(content_length(&map(&["42"])), Some(42));
        assert_eq!(content_length(&map(&["42", "42, 42"])), Some(42));
        assert_eq!(content_length(&map(&["42", "43"])), None);
        assert_eq!(content_length(&map(&["+42"])), None);
        assert_eq!(content_length(&map(&[""])), None);
        assert_eq!(content_length(&map(&["99999999999999999999"])), None);
        assert_eq!(content_length(&map(&[])), None);
    }

    #[test]
    fn heads_and_chunk_sizes() {
        let req = Request::get("/a?b=1")
            .header("host", "x")
            .header("x-v", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .body(())
            .unwrap();
        let default = HeaderValue::from_static("peer:81");
        let mut out = Vec::new();
        assert_eq!(
            head(&req, Framing::Empty, &default, &mut out),
            Noted::default()
        );
        assert_eq!(
            out,
            b"GET /a?b=1 HTTP/1.1\r\nhost: x\r\nx-v: caf\xe9\r\n\r\n"
        );
        // No `Host`: the peer's, last.
        let req = Request::get("/").header("x-v", "1").body(()).unwrap();
        let mut out = Vec::new();
        head(&req, Framing::Empty, &default, &mut out);
        assert_eq!(out, b"GET / HTTP/1.1\r\nx-v: 1\r\nhost: peer:81\r\n\r\n");
        let mut out = Vec::new();
        chunk_size(0x1a2b, &mut out);
        chunk_size(0, &mut out);
        assert_eq!(out, b"1a2b\r\n0\r\n");
    }
}
