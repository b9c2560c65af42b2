//! The response body of `HttpPeer`: hyper's `Incoming`, which hands its connection back to
//! the peer's pool once read to the end.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONNECTION;
use http::{Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::pool::Pool;

/// The body of a response from an [`HttpPeer`](super::HttpPeer).
///
/// It streams hyper's [`Incoming`] body unchanged. When it has been read to the end (or has
/// nothing to read) the connection goes back to the peer's pool for the next request; a body
/// dropped before its end closes the connection, since what is left of the response would
/// otherwise be read as the next one.
pub struct PeerBody<B> {
    inner: Incoming,
    conn: Option<Reuse<B>>,
}

struct Reuse<B> {
    tx: SendRequest<B>,
    pool: Arc<Pool<B>>,
}

impl<B> PeerBody<B> {
    /// Wraps the response of a request sent on `tx`. Upgraded (`101`) and `Connection: close`
    /// connections are never reused.
    pub(crate) fn response(
        res: Response<Incoming>,
        tx: SendRequest<B>,
        pool: Arc<Pool<B>>,
    ) -> Response<Self> {
        let reusable = res.status() != StatusCode::SWITCHING_PROTOCOLS
            && !res
                .headers()
                .get_all(CONNECTION)
                .iter()
                .any(|v| has_close(v.as_bytes()));
        let conn = reusable.then_some(Reuse { tx, pool });
        res.map(|inner| {
            let mut body = Self { inner, conn };
            body.release_if_done();
            body
        })
    }

    fn release_if_done(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            if let Some(Reuse { tx, pool }) = self.conn.take() {
                pool.checkin(tx);
            }
        }
    }
}

/// Whether a `Connection` value lists `close` (tokens are case-insensitive).
fn has_close(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

impl<B> http_body::Body for PeerBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.release_if_done(),
            Poll::Ready(None) => {
                if let Some(Reuse { tx, pool }) = this.conn.take() {
                    pool.checkin(tx);
                }
            }
            // The connection is in an unknown state: let it close.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for PeerBody<B> {
    fn drop(&mut self) {
        // A server that stops polling at `is_end_stream` never sees the end: release here.
        self.release_if_done();
    }
}

impl<B> fmt::Debug for PeerBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerBody")
            .field("inner", &self.inner)
            .field("reusable", &self.conn.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::has_close;

    #[test]
    fn connection_close_tokens() {
        assert!(has_close(b"close"));
        assert!(has_close(b"Keep-Alive, CLOSE"));
        assert!(!has_close(b"keep-alive"));
        assert!(!has_close(b"closed"));
    }
}
