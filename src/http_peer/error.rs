//! Errors returned by [`HttpPeer`](super::HttpPeer) and [`HttpClient::peer`](super::HttpClient::peer).

use std::error::Error as StdError;
use std::fmt;

use http::request::Parts;

use crate::BoxError;

// ===== Error =====

/// An error from an [`HttpPeer`](super::HttpPeer) request.
///
/// The error is opaque: ask it what happened with the predicates.
///
/// | what happened | `Display` | [`is_connect`] | [`is_timeout`] |
/// |---|---|---|---|
/// | connection refused, unreachable, DNS failure, handshake failure | `upstream connect error` | `true` | `false` |
/// | `connect_timeout` elapsed (or the OS timed the connect out) | `upstream timed out (connect)` | `true` | `true` |
/// | `read_timeout` elapsed before the response head arrived | `upstream timed out (read)` | `false` | `true` |
/// | the response head could not be parsed (nginx's `invalid_header`) | `upstream sent an invalid response` | `false` | `false` |
/// | any other failure once a connection was assigned (the backend closed it early, the request body failed, ...) | `upstream request error` | `false` | `false` |
/// | the request URI could not be rebuilt for the backend (not expected in practice) | `request uri cannot be sent upstream` | `false` | `false` |
///
/// [`source`](StdError::source) returns the underlying error: the `io::Error` of a failed
/// connect or name resolution or of a failed exchange, the request body's error, or what was
/// wrong with the response. Timeouts measured by the client have no source.
///
/// # Was the request sent?
///
/// When [`is_connect`] is `true` no byte of the request reached the backend, so the request can
/// be sent to another peer whatever its method. For every other error the request may have been
/// sent in part or in full, and only idempotent requests should be retried, as nginx does with
/// `proxy_next_upstream` and non-idempotent methods.
///
/// [`is_connect`]: Error::is_connect
/// [`is_timeout`]: Error::is_timeout
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
    // Boxed: an error is rare, and a small `Error` keeps every poll's result small.
    head: Option<Box<Parts>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    ConnectTimeout,
    ReadTimeout,
    Request,
    InvalidResponse,
    InvalidUri,
}

impl Error {
    /// Returns `true` if no connection to the backend could be set up, so the request was not
    /// sent: refused, unreachable, name resolution failed, or the connect timeout elapsed.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::ConnectTimeout)
    }

    /// Returns `true` for nginx's `timeout` class: the connect timeout or the read timeout
    /// elapsed. [`is_connect`](Error::is_connect) tells the two apart.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::ConnectTimeout | Kind::ReadTimeout)
    }

    /// Returns `true` if the backend's response head could not be parsed as HTTP/1.1 (nginx's
    /// `invalid_header` for `proxy_next_upstream`).
    pub fn is_invalid_response(&self) -> bool {
        self.kind == Kind::InvalidResponse
    }

    /// Takes back the head of the request that failed (method, URI, version, headers and
    /// extensions), so that it can be sent to another peer without a copy made in advance.
    /// It is the head as the peer sent it: a URI in absolute form became origin form, and
    /// `Content-Length` or `Transfer-Encoding` say how the body was framed. `None` once
    /// taken.
    ///
    /// [`Upstream`](crate::Upstream) takes it for its next attempt when its peers are
    /// `HttpPeer`s, instead of copying every request's head in case the attempt fails.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use http::Request;
    /// use tower::ServiceExt;
    /// use tower_upstream::http_peer::HttpPeer;
    ///
    /// // Nothing listens on port 1 of the loopback: the connect is refused.
    /// let peer = HttpPeer::<String>::new("127.0.0.1:1").unwrap();
    /// let req = Request::get("/cart").header("x-id", "7").body(String::new()).unwrap();
    /// let mut err = peer.oneshot(req).await.unwrap_err();
    /// assert!(err.is_connect());
    /// let head = err.take_request_head().unwrap();
    /// assert_eq!(head.uri, "/cart");
    /// assert_eq!(head.headers["x-id"], "7");
    /// assert!(err.take_request_head().is_none());
    /// # }
    /// ```
    pub fn take_request_head(&mut self) -> Option<Parts> {
        self.head.take().map(|head| *head)
    }

    pub(crate) fn with_head(mut self, head: Option<Parts>) -> Self {
        self.head = head.map(Box::new);
        self
    }

    pub(crate) fn read_timeout() -> Self {
        Self {
            kind: Kind::ReadTimeout,
            source: None,
            head: None,
        }
    }

    pub(crate) fn invalid_uri(source: http::Error) -> Self {
        Self {
            kind: Kind::InvalidUri,
            source: Some(source.into()),
            head: None,
        }
    }

    pub(crate) fn connect(source: BoxError) -> Self {
        Self {
            kind: Kind::Connect,
            source: Some(source),
            head: None,
        }
    }

    pub(crate) fn connect_timeout() -> Self {
        Self {
            kind: Kind::ConnectTimeout,
            source: None,
            head: None,
        }
    }

    /// The OS timed the connect out (an unanswered SYN).
    pub(crate) fn connect_timeout_from(source: BoxError) -> Self {
        Self {
            kind: Kind::ConnectTimeout,
            source: Some(source),
            head: None,
        }
    }

    /// A failure once the request was handed to a connection: it may have been sent.
    pub(crate) fn request(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Request,
            source: Some(source.into()),
            head: None,
        }
    }

    /// The response head did not parse.
    pub(crate) fn invalid_response(source: super::decode::InvalidResponse) -> Self {
        Self {
            kind: Kind::InvalidResponse,
            source: Some(source.into()),
            head: None,
        }
    }
}

// Not derived: the request's head would be printed, its cookies and credentials with it.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .field("request_head_kept", &self.head.is_some())
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Connect => "upstream connect error",
            Kind::ConnectTimeout => "upstream timed out (connect)",
            Kind::ReadTimeout => "upstream timed out (read)",
            Kind::Request => "upstream request error",
            Kind::InvalidResponse => "upstream sent an invalid response",
            Kind::InvalidUri => "request uri cannot be sent upstream",
        })
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| &**e as _)
    }
}

// ===== InvalidAuthority =====

/// The string given to [`HttpClient::peer`](super::HttpClient::peer) or
/// [`HttpPeer::new`](super::HttpPeer::new) is not a usable `host[:port]` authority.
#[derive(Debug)]
pub struct InvalidAuthority {
    input: String,
    reason: Reason,
    source: Option<http::uri::InvalidUri>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Empty,
    Scheme,
    Path,
    Userinfo,
    Port,
    Syntax,
}

impl InvalidAuthority {
    pub(crate) fn new(input: &str, reason: Reason, source: Option<http::uri::InvalidUri>) -> Self {
        Self {
            input: input.to_owned(),
            reason,
            source,
        }
    }

    #[cfg(test)]
    pub(crate) fn reason(&self) -> Reason {
        self.reason
    }
}

impl fmt::Display for InvalidAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.reason {
            Reason::Empty => "host is empty",
            Reason::Scheme => "a scheme is not allowed, peers always speak http",
            Reason::Path => "a path, query or fragment is not allowed",
            Reason::Userinfo => "userinfo is not allowed",
            Reason::Port => "port must be a number from 0 to 65535",
            Reason::Syntax => "expected `host[:port]`",
        };
        write!(f, "invalid upstream authority `{}`: {reason}", self.input)
    }
}

impl StdError for InvalidAuthority {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_timeout_predicates_and_display() {
        let err = Error::read_timeout();
        assert!(err.is_timeout());
        assert!(!err.is_connect());
        assert_eq!(err.to_string(), "upstream timed out (read)");
        assert!(err.source().is_none());
    }

    #[test]
    fn debug_does_not_print_the_kept_head() {
        let req = http::Request::get("/a")
            .header("cookie", "JSESSIONID=secret")
            .body(())
            .unwrap();
        let mut err = Error::read_timeout().with_head(Some(req.into_parts().0));
        let debug = format!("{err:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("request_head_kept: true"), "{debug}");
        assert_eq!(
            err.take_request_head().unwrap().headers["cookie"],
            "JSESSIONID=secret"
        );
    }
}
