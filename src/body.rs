//! The response body of an [`Upstream`](crate::Upstream).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::PeerSet;

pin_project! {
    /// Response body of an [`Upstream`](crate::Upstream): the peer's body, or a short text
    /// body the upstream made itself (for `502`, `503`, `504`).
    ///
    /// While the peer's body is being read, the request counts as active on that peer (for
    /// `least_conn` and `max_conns`); it stops counting when the body ends or is dropped.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Upstream { #[pin] body: B, active: Option<Active> },
        Synthetic { body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn upstream(body: B, active: Active) -> Self {
        Self {
            inner: Inner::Upstream {
                body,
                active: Some(active),
            },
        }
    }

    pub(crate) fn synthetic(body: Bytes) -> Self {
        Self {
            inner: Inner::Synthetic {
                body: Full::new(body),
            },
        }
    }

    /// Whether the upstream made this body itself instead of a peer.
    pub fn is_synthetic(&self) -> bool {
        matches!(self.inner, Inner::Synthetic { .. })
    }
}

/// An empty synthetic body, so that routers and error pages in front of an
/// [`Upstream`](crate::Upstream) can answer on their own.
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::synthetic(Bytes::new())
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_synthetic() {
            "synthetic"
        } else {
            "upstream"
        };
        f.debug_tuple("ResponseBody").field(&kind).finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Upstream { body, active } => {
                let frame = ready!(body.poll_frame(cx));
                if !matches!(frame, Some(Ok(_))) {
                    active.take();
                }
                Poll::Ready(frame)
            }
            InnerProj::Synthetic { body } => match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(Err(never)) => match never {},
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream { body, .. } => body.is_end_stream(),
            Inner::Synthetic { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream { body, .. } => body.size_hint(),
            Inner::Synthetic { body } => body.size_hint(),
        }
    }
}

/// One request in flight on a peer; dropping it ends the count (nginx `peer->conns--`).
pub(crate) struct Active {
    peers: Arc<PeerSet>,
    index: usize,
}

impl Active {
    /// Counts a request as started on peer `index` unless it is at its `max_conns` (see
    /// [`PeerSet::try_acquire`]).
    pub(crate) fn try_acquire(
        peers: &Arc<PeerSet>,
        index: usize,
        now: tokio::time::Instant,
    ) -> Option<Self> {
        peers.try_acquire(index, now).then(|| Self {
            peers: Arc::clone(peers),
            index,
        })
    }

    pub(crate) fn peers(&self) -> &PeerSet {
        &self.peers
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.peers.release(self.index);
    }
}
