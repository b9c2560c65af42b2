//! The `HttpPeer` service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::body::PeerBody;
use super::error::{Error, InvalidAuthority};
use super::future::ResponseFuture;
use super::pool::Pool;
use super::uri::origin_form;
use super::HttpClient;

/// A [`Service`] that sends every request to one backend over a pooled [`HttpClient`].
///
/// Made with [`HttpClient::peer`] or [`HttpPeer::new`]. Clones share the client's pool.
/// See the [module docs](super) for an example.
pub struct HttpPeer<B> {
    client: HttpClient<B>,
    pool: Arc<Pool>,
}

impl<B> HttpPeer<B>
where
    B: Body + Send + 'static,
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
        HttpClient::new().peer(authority)
    }
}

impl<B> HttpPeer<B> {
    pub(crate) fn from_parts(client: HttpClient<B>, pool: Arc<Pool>) -> Self {
        Self { client, pool }
    }

    /// The backend this peer sends requests to.
    pub fn authority(&self) -> &Authority {
        &self.pool.authority
    }

    /// The client (and so the pool) this peer uses.
    pub fn client(&self) -> &HttpClient<B> {
        &self.client
    }
}

impl<B> Service<Request<B>> for HttpPeer<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response<PeerBody>;
    type Error = Error;
    type Future = ResponseFuture<B>;

    /// Always ready: the pool opens connections on demand.
    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match origin_form(req.uri()) {
            Ok(None) => {}
            Ok(Some(uri)) => *req.uri_mut() = uri,
            Err(e) => {
                let (head, _) = req.into_parts();
                return ResponseFuture::failed(Error::invalid_uri(e).with_head(Some(head)));
            }
        }
        // The head is written as HTTP/1.1, with a missing `Host` added (see `encode::head`).
        ResponseFuture::new(self.pool.clone(), req)
    }
}

impl<B> Clone for HttpPeer<B> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            pool: self.pool.clone(),
        }
    }
}

impl<B> fmt::Debug for HttpPeer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPeer")
            .field("authority", &self.pool.authority)
            .field("client", &self.client)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    fn assert_clone<T: Clone>() {}

    #[test]
    fn peer_and_future_are_send_sync() {
        type B = http_body_util::Full<bytes::Bytes>;
        assert_send_sync::<HttpPeer<B>>();
        assert_send_sync::<HttpClient<B>>();
        assert_send::<ResponseFuture<B>>();
        assert_send_sync::<PeerBody>();
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
