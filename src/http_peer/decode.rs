//! Reading a response head, and how its body is framed (RFC 9112, section 6.3).

use std::fmt;
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

use super::encode::{add_content_length, ends_chunked};
use crate::proxy_headers::hop_by_hop::connection_has;

/// Headers a response head may have, as hyper's default.
const MAX_HEADERS: usize = 100;
/// Heads with up to this many fields are read without a heap allocation for their places.
const FEW_HEADERS: usize = 24;
/// A response head bigger than this is refused (nginx's `proxy_buffer_size` is 4 or 8 KiB;
/// hyper's limit is about 400 KiB).
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// The backend's response cannot be read as HTTP/1.1: nginx's `invalid_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidResponse(pub(crate) &'static str);

impl fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid response from upstream: {}", self.0)
    }
}

impl std::error::Error for InvalidResponse {}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (`HEAD`, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the backend closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) response: Response<()>,
    pub(crate) framing: Framing,
    /// Whether the connection can carry another request once the body is read.
    pub(crate) keep_alive: bool,
}

/// Parses a response head at the start of `buf`, removing it from `buf`. `Ok(None)` when
/// more bytes are needed. Interim (1xx other than 101) responses are returned like any other:
/// the caller skips them.
pub(crate) fn head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, InvalidResponse> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(InvalidResponse("response head too large"))
        }
        Err(_) => return Err(InvalidResponse("malformed response head")),
    };
    if len > MAX_HEAD {
        return Err(InvalidResponse("response head too large"));
    }
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(InvalidResponse("invalid status code"))?;
    // Header values share the head's bytes rather than being copied one by one: their
    // places in the head, noted while `parsed` borrows it, become slices of it once frozen.
    let base = buf.as_ptr() as usize;
    let count = parsed.headers.len();
    // Most heads have a handful of fields: their places fit on the stack, with no 1.6 KiB
    // array to clear for each response.
    let mut few = [(0u32, 0u32, 0u32, 0u32); FEW_HEADERS];
    let mut many = Vec::new();
    let spans = if count <= FEW_HEADERS {
        &mut few[..count]
    } else {
        many.resize(count, (0, 0, 0, 0));
        &mut many[..]
    };
    for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
        // Offsets within the head, which is under `MAX_HEAD`: they fit.
        let name = (h.name.as_ptr() as usize - base) as u32;
        let value = (h.value.as_ptr() as usize - base) as u32;
        *span = (
            name,
            name + h.name.len() as u32,
            value,
            value + h.value.len() as u32,
        );
    }
    let bytes: Bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut seen = Seen::default();
    for &(name, name_end, value, value_end) in &*spans {
        let name = HeaderName::from_bytes(&bytes[name as usize..name_end as usize])
            .map_err(|_| InvalidResponse("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value as usize..value_end as usize))
            .map_err(|_| InvalidResponse("invalid header value"))?;
        seen.note(&name, &value);
        headers.append(name, value);
    }
    let (framing, mut keep_alive) = framing(method, status, version, &mut headers, seen)?;
    if seen.connection {
        let close = connection_has(&headers, "close");
        keep_alive &= match version {
            Version::HTTP_11 => !close,
            _ => connection_has(&headers, "keep-alive") && !close,
        };
    } else {
        keep_alive &= version == Version::HTTP_11;
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some(Head {
        response,
        framing,
        keep_alive,
    }))
}

/// Which of the headers that decide framing and keep-alive a head has, noted as it is read so
/// that a head without them is not searched for them again, and the `Content-Length` they
/// give.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    content_length: ContentLength,
    transfer_encoding: bool,
    connection: bool,
}

/// The `Content-Length` fields of a head, folded as they are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ContentLength {
    #[default]
    Absent,
    Valid(u64),
    /// Not a number, or values that differ.
    Invalid,
}

impl Seen {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if *name == CONTENT_LENGTH {
            let before = match self.content_length {
                ContentLength::Absent => None,
                ContentLength::Valid(len) => Some(len),
                ContentLength::Invalid => return,
            };
            self.content_length = match add_content_length(before, value.as_bytes()) {
                Some(len) => ContentLength::Valid(len),
                None => ContentLength::Invalid,
            };
        } else if *name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if *name == CONNECTION {
            self.connection = true;
        }
    }
}

fn framing(
    method: &Method,
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    seen: Seen,
) -> Result<(Framing, bool), InvalidResponse> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if method == Method::CONNECT && status.is_success() {
        // The connection is a tunnel now, which this client does not offer.
        return Ok((Framing::Empty, false));
    }
    if seen.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(InvalidResponse("transfer-encoding in an HTTP/1.0 response"));
        }
        // Both headers: the coding wins, the length goes, and the connection is not trusted
        // again (RFC 9112, section 6.3, item 3).
        let smuggled = headers.remove(CONTENT_LENGTH).is_some();
        return Ok(if ends_chunked(headers) {
            (Framing::Chunked, !smuggled)
        } else {
            (Framing::Close, false)
        });
    }
    match seen.content_length {
        ContentLength::Valid(len) => Ok((Framing::Length(len), true)),
        ContentLength::Invalid => Err(InvalidResponse("invalid content-length")),
        ContentLength::Absent => Ok((Framing::Close, false)),
    }
}

// ===== chunked =====

/// A chunked body being decoded from a connection's read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then a blank line.
    Trailers,
}

/// What the decoder found in the buffer.
#[derive(Debug)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The body ended, with trailer fields if there were any.
    End(Option<HeaderMap>),
}

/// A chunk-size line or the trailers may not grow past this.
const MAX_LINE: usize = 16 * 1024;

impl Chunked {
    /// Decodes what it can from the front of `buf`. `Ok(None)`: more bytes are needed.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Decoded>, InvalidResponse> {
        loop {
            match *self {
                Chunked::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        let _ = buf.split_to(used);
                        *self = Chunked::Trailers;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        let _ = buf.split_to(used);
                        *self = Chunked::Data(size);
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_LINE => return Ok(None),
                    _ => return Err(InvalidResponse("invalid chunk size line")),
                },
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Some(Decoded::Data(data)));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(InvalidResponse("chunk data not followed by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => return trailers(buf),
            }
        }
    }
}

fn trailers(buf: &mut BytesMut) -> Result<Option<Decoded>, InvalidResponse> {
    if buf.starts_with(b"\r\n") {
        let _ = buf.split_to(2);
        return Ok(Some(Decoded::End(None)));
    }
    let mut slots = [httparse::EMPTY_HEADER; 64];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((used, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for field in fields.iter() {
                let name = HeaderName::from_bytes(field.name.as_bytes());
                let value = HeaderValue::from_bytes(field.value);
                if let (Ok(name), Ok(value)) = (name, value) {
                    map.append(name, value);
                }
            }
            let _ = buf.split_to(used);
            Ok(Some(Decoded::End((!map.is_empty()).then_some(map))))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_LINE => Ok(None),
        _ => Err(InvalidResponse("invalid trailers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<Head>, InvalidResponse> {
        head(&mut BytesMut::from(raw), &method)
    }

    fn ok(raw: &str) -> Head {
        parse(raw, Method::GET).unwrap().unwrap()
    }

    #[test]
    fn heads_and_framing() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
        assert_eq!(h.response.status(), 200);
        assert_eq!(h.response.headers()["x-a"], "b");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let h = ok("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = ok("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", Method::HEAD)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
    }

    #[test]
    fn repeated_lengths_and_long_heads() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        // More fields than fit on the stack: their places go to the heap, values unchanged.
        let fields: String = (0..FEW_HEADERS + 10)
            .map(|i| format!("X-F{i}: v{i}\r\n"))
            .collect();
        let h = ok(&format!(
            "HTTP/1.1 200 OK\r\n{fields}Content-Length: 2\r\n\r\nhi"
        ));
        assert_eq!(h.framing, Framing::Length(2));
        assert_eq!(h.response.headers().len(), FEW_HEADERS + 11);
        let last = format!("x-f{}", FEW_HEADERS + 9);
        assert_eq!(
            h.response.headers()[last.as_str()],
            format!("v{}", FEW_HEADERS + 9).as_str()
        );
    }

    #[test]
    fn keep_alive_rules() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n");
        assert!(!h.keep_alive);
        let h = ok("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = ok("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
    }

    #[test]
    fn length_and_coding_together_is_chunked_and_not_reused() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(!h.response.headers().contains_key("content-length"));
    }

    #[test]
    fn invalid_heads() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "garbage\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "{raw:?}");
        }
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(parse(&big, Method::GET).is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nX: 1\r\n", Method::GET)
            .unwrap()
            .is_none());
    }

    fn decode_all(raw: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), InvalidResponse> {
        let mut buf = BytesMut::new();
        let mut state = Chunked::Size;
        let mut out = Vec::new();
        // One byte at a time: every state must cope with a partial buffer.
        for &b in raw {
            buf.extend_from_slice(&[b]);
            while let Some(step) = state.decode(&mut buf)? {
                match step {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::End(t) => return Ok((out, t)),
                }
            }
        }
        Err(InvalidResponse("incomplete"))
    }

    #[test]
    fn chunked_bodies() {
        let (data, trailers) = decode_all(b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\n\r\n").unwrap();
        assert_eq!(data, b"hello!");
        assert!(trailers.is_none());
        let (data, trailers) = decode_all(b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n").unwrap();
        assert_eq!(data, b"abc");
        assert_eq!(trailers.unwrap()["x-t"], "1");
        assert!(decode_all(b"3\r\nabcd\r\n0\r\n\r\n").is_err());
        assert!(decode_all(b"zz\r\n").is_err());
    }
}
