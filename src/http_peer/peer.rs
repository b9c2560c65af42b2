//! The `HttpPeer` service.

use std::fmt;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::{Request, Response, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;
use tower::Service;

use super::error::{Error, InvalidAuthority};
use super::future::ResponseFuture;
use super::uri::{parse_authority, upstream_uri};
use super::HttpClient;

/// A [`Service`] that sends every request to one backend over a pooled [`HttpClient`].
///
/// Made with [`HttpClient::peer`] or [`HttpPeer::new`]. Clones share the client's pool.
/// See the [module docs](super) for an example.
pub struct HttpPeer<B> {
    client: HttpClient<B>,
    authority: Authority,
}

impl<B> HttpPeer<B>
where
    B: Body + Send,
    B::Data: Send,
{
    /// Creates a peer for `authority` (`host[:port]`) with a new default [`HttpClient`].
    ///
    /// Each call makes its own connection pool; use [`HttpClient::peer`] to share one.
    ///
    /// ```
    /// use tower_upstream::http_peer::HttpPeer;
    ///
    /// let peer = HttpPeer::<String>::new("127.0.0.1:8080").unwrap();
    /// assert_eq!(peer.authority(), "127.0.0.1:8080");
    /// ```
    pub fn new(authority: &str) -> Result<Self, InvalidAuthority> {
        let authority = parse_authority(authority)?;
        Ok(Self::from_parts(HttpClient::new(), authority))
    }
}

impl<B> HttpPeer<B> {
    pub(crate) fn from_parts(client: HttpClient<B>, authority: Authority) -> Self {
        Self { client, authority }
    }

    /// The backend this peer sends requests to.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The client (and so the pool) this peer uses.
    pub fn client(&self) -> &HttpClient<B> {
        &self.client
    }
}

impl<B> Service<Request<B>> for HttpPeer<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response<Incoming>;
    type Error = Error;
    type Future = ResponseFuture;

    /// Always ready: the pool opens connections on demand.
    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match upstream_uri(req.uri(), &self.authority) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => return ResponseFuture::failed(Error::invalid_uri(e)),
        }
        *req.version_mut() = Version::HTTP_11;
        let assigned = capture_connection(&mut req);
        let inner = self.client.inner.request(req);
        ResponseFuture::new(inner, assigned, self.client.read_timeout)
    }
}

impl<B> Clone for HttpPeer<B> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            authority: self.authority.clone(),
        }
    }
}

impl<B> fmt::Debug for HttpPeer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPeer")
            .field("authority", &self.authority)
            .field("client", &self.client)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_clone<T: Clone>() {}

    #[test]
    fn peer_and_future_are_send_sync() {
        type B = http_body_util::Full<bytes::Bytes>;
        assert_send_sync::<HttpPeer<B>>();
        assert_send_sync::<HttpClient<B>>();
        assert_send_sync::<ResponseFuture>();
        assert_send_sync::<Error>();
        assert_clone::<HttpPeer<B>>();
        // No `B: Clone` needed to clone a peer.
        assert_clone::<HttpPeer<hyper::body::Incoming>>();
    }

    #[test]
    fn peer_rejects_bad_authority() {
        let client = HttpClient::<String>::new();
        assert!(client.peer("").is_err());
        assert!(client.peer("u@h").is_err());
        let peer = client.peer("[::1]:8080").unwrap();
        assert_eq!(peer.authority().host(), "[::1]");
        assert_eq!(peer.authority().port_u16(), Some(8080));
    }
}
