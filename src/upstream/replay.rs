//! Request bodies that can be sent to a second peer.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// The request body an [`Upstream`](crate::Upstream) sends to a peer.
///
/// A body that fits in the [`NextUpstream::body_buffer_size`] was read completely before the
/// first attempt and is sent, byte for byte, to every peer the request tries. A larger one
/// is streamed: its first bytes, then the rest as the client sends it. A streamed body can be
/// handed to another peer only if the first peer never started reading it (the connection
/// failed).
///
/// [`NextUpstream::body_buffer_size`]: super::NextUpstream::body_buffer_size
pub struct ReplayBody<B> {
    state: State<B>,
}

enum State<B> {
    Buffered {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// Not read yet: the stream is still in the shared slot.
    Waiting {
        slot: Arc<Mutex<Option<Stream<B>>>>,
        hint: SizeHint,
    },
    Streaming(Stream<B>),
    Done,
}

pub(crate) struct Stream<B> {
    prefix: Option<Bytes>,
    body: B,
    /// Set once the client's body has been read to its end.
    ended: Arc<AtomicBool>,
}

/// Where a request's body is kept between attempts.
pub(crate) enum Replay<B> {
    Buffered {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    Streamed {
        slot: Arc<Mutex<Option<Stream<B>>>>,
        hint: SizeHint,
        ended: Arc<AtomicBool>,
    },
}

impl<B> Replay<B> {
    /// Whether the client's body has been read to its end (always, for a buffered one).
    /// When it has not, the client's connection cannot carry another request.
    pub(crate) fn is_complete(&self) -> bool {
        match self {
            Self::Buffered { .. } => true,
            Self::Streamed { ended, .. } => ended.load(Ordering::Acquire),
        }
    }
}

impl<B: Body> Replay<B> {
    /// A complete body.
    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self::Buffered { data, trailers }
    }

    /// The bytes read so far, then the rest of `body`.
    pub(crate) fn streamed(prefix: Bytes, body: B) -> Self {
        let mut hint = body.size_hint();
        let n = prefix.len() as u64;
        hint.set_lower(hint.lower().saturating_add(n));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(n));
        }
        let prefix = (!prefix.is_empty()).then_some(prefix);
        let ended = Arc::new(AtomicBool::new(false));
        Self::Streamed {
            slot: Arc::new(Mutex::new(Some(Stream {
                prefix,
                body,
                ended: Arc::clone(&ended),
            }))),
            hint,
            ended,
        }
    }

    /// Whether another attempt can still send the whole body.
    pub(crate) fn can_replay(&self) -> bool {
        match self {
            Self::Buffered { .. } => true,
            Self::Streamed { slot, .. } => slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some(),
        }
    }

    /// The body for one attempt.
    pub(crate) fn body(&self) -> ReplayBody<B> {
        let state = match self {
            Self::Buffered { data, trailers } => State::Buffered {
                data: (!data.is_empty()).then(|| data.clone()),
                trailers: trailers.clone(),
            },
            Self::Streamed { slot, hint, .. } => State::Waiting {
                slot: Arc::clone(slot),
                hint: *hint,
            },
        };
        ReplayBody { state }
    }
}

/// Reads `body` until it ends or holds more than `limit` bytes.
pub(crate) struct Buffering<B> {
    body: Option<B>,
    buf: BytesMut,
    limit: usize,
}

impl<B> Buffering<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(body: B, limit: usize) -> Self {
        Self {
            body: Some(body),
            buf: BytesMut::new(),
            limit,
        }
    }

    /// Polls until the body is complete, or known to be too large to keep.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Replay<B>, BoxError>> {
        let body = self.body.as_mut().expect("polled after completion");
        if body.is_end_stream() && self.buf.is_empty() {
            return Poll::Ready(Ok(Replay::buffered(Bytes::new(), None)));
        }
        if body.size_hint().lower() > self.limit as u64 {
            let body = self.body.take().expect("checked above");
            return Poll::Ready(Ok(Replay::streamed(Bytes::new(), body)));
        }
        loop {
            let body = self.body.as_mut().expect("checked above");
            match ready!(Pin::new(body).poll_frame(cx)) {
                None => {
                    let data = std::mem::take(&mut self.buf).freeze();
                    return Poll::Ready(Ok(Replay::buffered(data, None)));
                }
                Some(Err(e)) => return Poll::Ready(Err(e.into())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        self.buf
                            .extend_from_slice(&data.copy_to_bytes(data.remaining()));
                        if self.buf.len() > self.limit {
                            let body = self.body.take().expect("checked above");
                            let prefix = std::mem::take(&mut self.buf).freeze();
                            return Poll::Ready(Ok(Replay::streamed(prefix, body)));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body.
                        let data = std::mem::take(&mut self.buf).freeze();
                        let trailers = frame.into_trailers().ok();
                        return Poll::Ready(Ok(Replay::buffered(data, trailers)));
                    }
                },
            }
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match &mut self.state {
                State::Buffered { data, trailers } => {
                    if let Some(data) = data.take() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let frame = trailers.take().map(|t| Ok(Frame::trailers(t)));
                    self.state = State::Done;
                    return Poll::Ready(frame);
                }
                State::Waiting { slot, .. } => {
                    let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                    let Some(stream) = taken else {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err("request body was already sent".into())));
                    };
                    self.state = State::Streaming(stream);
                }
                State::Streaming(stream) => {
                    if let Some(prefix) = stream.prefix.take() {
                        return Poll::Ready(Some(Ok(Frame::data(prefix))));
                    }
                    let frame = ready!(Pin::new(&mut stream.body).poll_frame(cx));
                    // The end: no more frames, trailers, or a last data frame (after which
                    // a reader may stop polling).
                    if frame.as_ref().is_none_or(|f| {
                        f.as_ref().is_ok_and(Frame::is_trailers) || stream.body.is_end_stream()
                    }) {
                        stream.ended.store(true, Ordering::Release);
                    }
                    return Poll::Ready(match frame {
                        None => {
                            self.state = State::Done;
                            None
                        }
                        Some(Err(e)) => Some(Err(e.into())),
                        Some(Ok(frame)) => {
                            Some(Ok(frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))))
                        }
                    });
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            State::Waiting { .. } => false,
            State::Streaming(s) => s.prefix.is_none() && s.body.is_end_stream(),
            State::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            State::Waiting { hint, .. } => *hint,
            State::Streaming(s) => {
                let n = s.prefix.as_ref().map_or(0, |p| p.len() as u64);
                let mut hint = s.body.size_hint();
                hint.set_lower(hint.lower().saturating_add(n));
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper.saturating_add(n));
                }
                hint
            }
            State::Done => SizeHint::with_exact(0),
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.state {
            State::Buffered { .. } => "buffered",
            State::Waiting { .. } | State::Streaming(_) => "streamed",
            State::Done => "done",
        };
        f.debug_tuple("ReplayBody").field(&kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    async fn collect<B>(body: ReplayBody<B>) -> Result<Bytes, BoxError>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        Ok(body.collect().await?.to_bytes())
    }

    async fn buffer<B>(body: B, limit: usize) -> Replay<B>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut b = Buffering::new(body, limit);
        std::future::poll_fn(|cx| b.poll(cx)).await.unwrap()
    }

    #[tokio::test]
    async fn small_body_is_replayed_identically() {
        let replay = buffer(Full::new(Bytes::from_static(b"hello")), 64).await;
        assert!(matches!(replay, Replay::Buffered { .. }));
        for _ in 0..3 {
            assert!(replay.can_replay());
            assert_eq!(collect(replay.body()).await.unwrap(), "hello");
        }
    }

    #[tokio::test]
    async fn large_body_streams_once() {
        let body = Chunked((0..10).map(|i| Bytes::from(vec![b'a' + i; 10])).collect());
        let replay = buffer(body, 25).await;
        assert!(matches!(replay, Replay::Streamed { .. }));
        assert!(replay.can_replay(), "not read by any attempt yet");
        let unread = replay.body();
        drop(unread);
        assert!(
            replay.can_replay(),
            "an attempt that never read it gives it back"
        );
        let all = collect(replay.body()).await.unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(&all[..10], b"aaaaaaaaaa");
        assert_eq!(&all[90..], b"jjjjjjjjjj");
        assert!(!replay.can_replay());
        assert!(replay.is_complete(), "read to its end");
        assert!(collect(replay.body()).await.is_err());
    }

    #[tokio::test]
    async fn a_streamed_body_is_complete_only_once_read_to_its_end() {
        let body = Chunked((0..10).map(|i| Bytes::from(vec![b'a' + i; 10])).collect());
        let replay = buffer(body, 25).await;
        assert!(!replay.is_complete());
        let mut attempt = replay.body();
        for _ in 0..3 {
            std::future::poll_fn(|cx| Pin::new(&mut attempt).poll_frame(cx)).await;
        }
        drop(attempt);
        assert!(
            !replay.is_complete(),
            "an attempt read part of it and failed"
        );
        let small = buffer(Full::new(Bytes::from_static(b"hello")), 64).await;
        assert!(small.is_complete());
    }

    #[tokio::test]
    async fn empty_body_is_end_stream() {
        let replay = buffer(http_body_util::Empty::<Bytes>::new(), 64).await;
        let body = replay.body();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    /// A body that yields its chunks one frame at a time, as a client upload would.
    struct Chunked(std::collections::VecDeque<Bytes>);

    impl Body for Chunked {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }
}
