//! The response body of `HttpPeer`: read straight from the connection, which goes back to
//! the peer's pool once the body has been read to its end.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::conn::Conn;
use super::decode::{Chunked, Decoded, Framing};
use super::error::Error;
use super::pool::Pool;

/// The body of a response from an [`HttpPeer`](super::HttpPeer).
///
/// It reads the body from the connection as the server asks for it: a `Content-Length` body
/// in pieces as they arrive, a chunked body chunk by chunk (with its trailers, if any), and a
/// body with neither until the backend closes. Once read to the end, the connection goes back
/// to the peer's pool for the next request; a body dropped before its end closes the
/// connection, since what is left of the response would otherwise be read as the next one.
pub struct PeerBody {
    state: State,
    conn: Option<Conn>,
    /// Where the connection goes at the end, if it may carry another request.
    pool: Option<Arc<Pool>>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

impl PeerBody {
    /// The body of a response framed as `framing` on `conn`. A body with nothing to read
    /// gives the connection back at once.
    pub(crate) fn new(framing: Framing, conn: Conn, pool: Option<Arc<Pool>>) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::Size),
            Framing::Close => State::Close,
        };
        let mut body = Self {
            state,
            conn: Some(conn),
            pool,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// A body with nothing in it and no connection (a `101`, whose connection is handed
    /// over).
    pub(crate) fn empty() -> Self {
        Self {
            state: State::Done,
            conn: None,
            pool: None,
        }
    }

    /// The body has been read: the connection goes back to the pool if it may.
    fn finish(&mut self) {
        self.state = State::Done;
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take()) {
            // Bytes beyond the response mean the peer does not frame its messages as it says.
            if conn.rbuf.is_empty() {
                pool.checkin(conn);
            }
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.state = State::Done;
        self.conn = None;
        self.pool = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for PeerBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if !conn.rbuf.is_empty() {
                        let take = usize::try_from(*left)
                            .map_or(conn.rbuf.len(), |l| l.min(conn.rbuf.len()));
                        let data = conn.rbuf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(chunked) => match chunked.decode(&mut conn.rbuf) {
                    Ok(Some(Decoded::Data(data))) => {
                        return Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Ok(Some(Decoded::End(trailers))) => {
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(Error::request(e)),
                },
                State::Close => {
                    if !conn.rbuf.is_empty() {
                        let data = conn.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let eof = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection before the end of the body",
                    );
                    return this.fail(Error::request(eof));
                }
                Ok(_) => {}
                Err(e) => return this.fail(Error::request(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl fmt::Debug for PeerBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerBody")
            .field("state", &self.state)
            .field("reusable", &self.pool.is_some())
            .finish()
    }
}
