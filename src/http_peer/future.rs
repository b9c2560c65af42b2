//! The response future of `HttpPeer`: take an idle connection or open one, write the
//! request, and read the response head within the read timeout.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::body::PeerBody;
use super::conn::Conn;
use super::connect::connect;
use super::decode::{self, Head};
use super::encode::{self, Framing};
use super::error::Error;
use super::pool::Pool;
use super::upgraded::PeerUpgrade;
use crate::BoxError;

/// Body bytes gathered before a write: a small body goes out with its head in one write.
const WRITE_CHUNK: usize = 16 * 1024;

type Connecting = Pin<Box<dyn Future<Output = Result<Conn, Error>> + Send>>;

/// Response future for [`HttpPeer`](super::HttpPeer).
///
/// The whole exchange is one state machine in one allocation: no task, channel or boxed
/// future per request (only opening a new connection boxes its future).
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B> {
    inner: Inner<B>,
}

enum Inner<B> {
    Failed(Option<Error>),
    Running(Pin<Box<Exchange<B>>>),
}

impl<B> ResponseFuture<B> {
    pub(crate) fn new(pool: Arc<Pool>, req: Request<B>) -> Self {
        let method = req.method().clone();
        Self {
            inner: Inner::Running(Box::pin(Exchange {
                pool,
                method,
                req: Some(req),
                head: None,
                body: None,
                framing: Framing::Empty,
                sent: 0,
                body_done: false,
                conn: None,
                reused: false,
                connecting: None,
                step: Step::Acquire,
                wpos: 0,
                replayable: true,
                received: false,
                carry: None,
                close: false,
                upgrade: false,
                deadline: None,
                timer_set: false,
            })),
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            inner: Inner::Failed(Some(error)),
        }
    }
}

impl<B> Future for ResponseFuture<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<PeerBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Failed(error) => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
            Inner::Running(exchange) => match ready!(exchange.as_mut().poll(cx)) {
                Ok(res) => Poll::Ready(Ok(res)),
                // The caller may send the request elsewhere: give its head back.
                Err(e) => Poll::Ready(Err(e.with_head(exchange.as_mut().take_head()))),
            },
        }
    }
}

impl<B> fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Acquire,
    Connect,
    Send,
    ReadHead,
}

/// How writing the request ended.
enum Sent {
    All,
    /// The connection was found closed before it could have carried the request.
    Retry,
    /// The backend answered before the body was all sent (a `413`, say).
    Early(Head),
}

/// How reading the response head ended.
enum Got {
    Head(Head),
    /// The connection was found closed before it could have carried the request.
    Retry,
}

pin_project! {
    struct Exchange<B> {
        pool: Arc<Pool>,
        method: Method,
        // Until the head is written into a connection's buffer.
        req: Option<Request<B>>,
        // The head once written, kept to be given back with an error (see
        // `Error::take_request_head`).
        head: Option<Parts>,
        #[pin]
        body: Option<B>,
        framing: Framing,
        // Body bytes taken so far, to hold a `Content-Length` to its word.
        sent: u64,
        body_done: bool,
        conn: Option<Conn>,
        // Whether `conn` came from the pool (and so may have been closed while idle).
        reused: bool,
        connecting: Option<Connecting>,
        // The request bytes to send again on the next connection, after a retry.
        carry: Option<Vec<u8>>,
        step: Step,
        // How much of the connection's write buffer is written.
        wpos: usize,
        // Whether the write buffer still holds every byte of the request taken so far, so
        // that it can be sent again on another connection.
        replayable: bool,
        // Whether any byte of the response arrived.
        received: bool,
        // The request says `Connection: close` (noted as its head is written).
        close: bool,
        // The request asks to switch protocols (noted as its head is written).
        upgrade: bool,
        deadline: Option<Instant>,
        // The connection's timer is set to `deadline`.
        timer_set: bool,
    }
}

impl<B> Future for Exchange<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<PeerBody>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match *this.step {
                Step::Acquire => match this.pool.checkout() {
                    Some(conn) => self.as_mut().start(conn, true),
                    None => {
                        let pool = this.pool.clone();
                        *this.connecting = Some(Box::pin(async move {
                            connect(&pool.target, pool.config.connect_timeout).await
                        }));
                        *this.step = Step::Connect;
                    }
                },
                Step::Connect => {
                    let connecting = this.connecting.as_mut().expect("connecting");
                    let conn = ready!(connecting.as_mut().poll(cx))?;
                    *this.connecting = None;
                    self.as_mut().start(conn, false);
                }
                Step::Send => match ready!(self.as_mut().poll_send(cx))? {
                    Sent::All => *self.as_mut().project().step = Step::ReadHead,
                    Sent::Retry => self.as_mut().retry(),
                    Sent::Early(head) => return Poll::Ready(self.respond(head)),
                },
                Step::ReadHead => match ready!(self.as_mut().poll_head(cx, false))? {
                    Got::Head(head) => return Poll::Ready(self.respond(head)),
                    Got::Retry => self.as_mut().retry(),
                },
            }
        }
    }
}

impl<B> Exchange<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Hands the request to `conn`: its head (the first time) goes into the write buffer,
    /// and the read timeout starts.
    fn start(self: Pin<&mut Self>, mut conn: Conn, reused: bool) {
        let mut this = self.project();
        if let Some(carry) = this.carry.take() {
            conn.wbuf = carry;
        } else if let Some(mut req) = this.req.take() {
            *this.framing = encode::framing(&mut req);
            conn.wbuf.clear();
            let noted = encode::head(&req, *this.framing, &this.pool.host, &mut conn.wbuf);
            *this.close = noted.close;
            *this.upgrade = noted.upgrade;
            let (head, body) = req.into_parts();
            *this.head = Some(head);
            if *this.framing == Framing::Empty {
                *this.body_done = true;
            } else {
                this.body.set(Some(body));
            }
        }
        *this.reused = reused;
        *this.wpos = 0;
        *this.received = false;
        *this.timer_set = false;
        *this.conn = Some(conn);
        *this.step = Step::Send;
        if this.deadline.is_none() {
            *this.deadline = Some(Instant::now() + this.pool.config.read_timeout);
        }
    }

    /// The request's head, written or not.
    fn take_head(self: Pin<&mut Self>) -> Option<Parts> {
        let this = self.project();
        match this.req.take() {
            Some(req) => Some(req.into_parts().0),
            None => this.head.take(),
        }
    }

    /// Drops the connection, keeping the request bytes for the next one.
    fn retry(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(conn) = this.conn.take() {
            *this.carry = Some(conn.wbuf);
        }
        *this.step = Step::Acquire;
    }

    /// Whether the request can be sent again on another connection after this one closed
    /// without a byte of response: the connection was an idle one (which the backend may
    /// close at any time), the request is idempotent and it is all still in the buffer
    /// (RFC 9112, section 9.3.1).
    fn can_replay(&self) -> bool {
        self.reused
            && !self.received
            && self.replayable
            && self.body_done
            && self.method.is_idempotent()
    }

    /// Writes the head and the body.
    fn poll_send(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Sent, Error>> {
        loop {
            let mut this = self.as_mut().project();
            let conn = this.conn.as_mut().expect("connection");
            // Gather body data first, so that a small body leaves with its head.
            if !*this.body_done && conn.wbuf.len() - *this.wpos < WRITE_CHUNK {
                let body = this.body.as_mut().as_pin_mut().expect("body");
                match body.poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            take_data(data, *this.framing, this.sent, &mut conn.wbuf)?;
                        }
                        continue;
                    }
                    Poll::Ready(None) => {
                        end_body(*this.framing, *this.sent, &mut conn.wbuf)?;
                        *this.body_done = true;
                        this.body.set(None);
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Error::request(e))),
                    Poll::Pending => {}
                }
            }
            if *this.wpos < conn.wbuf.len() {
                match conn.poll_flush_wbuf(cx, this.wpos) {
                    Poll::Ready(Ok(())) => {
                        if !*this.body_done {
                            // More body to come: this part need not be kept.
                            conn.wbuf.clear();
                            *this.wpos = 0;
                            *this.replayable = false;
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) if *this.wpos == 0 && *this.replayable => {
                        if *this.reused {
                            tracing::trace!(error = %e, "idle upstream connection was closed");
                            return Poll::Ready(Ok(Sent::Retry));
                        }
                        // Not a byte written: as good as a failed connect.
                        return Poll::Ready(Err(Error::connect(e.into())));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::request(e))),
                    Poll::Pending => {}
                }
            } else if *this.body_done {
                return Poll::Ready(Ok(Sent::All));
            }
            // Waiting for the body or the socket; the backend may answer early.
            return match ready!(self.as_mut().poll_head(cx, true))? {
                Got::Head(head) => Poll::Ready(Ok(Sent::Early(head))),
                Got::Retry => Poll::Ready(Ok(Sent::Retry)),
            };
        }
    }

    /// Reads the response head, skipping interim (1xx) responses other than `101`. While
    /// the request is still being sent (`early`), a closed connection is an error.
    fn poll_head(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        early: bool,
    ) -> Poll<Result<Got, Error>> {
        loop {
            let this = self.as_mut().project();
            let conn = this.conn.as_mut().expect("connection");
            match decode::head(&mut conn.rbuf, this.method) {
                Ok(Some(head)) => {
                    let status = head.response.status();
                    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                        continue;
                    }
                    return Poll::Ready(Ok(Got::Head(head)));
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(Error::invalid_response(e))),
            }
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    if !early && self.can_replay() {
                        return Poll::Ready(Ok(Got::Retry));
                    }
                    let eof = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection before sending a response",
                    );
                    return Poll::Ready(Err(Error::request(eof)));
                }
                Poll::Ready(Ok(_)) => *this.received = true,
                Poll::Ready(Err(e)) => {
                    if !early && self.can_replay() {
                        return Poll::Ready(Ok(Got::Retry));
                    }
                    return Poll::Ready(Err(Error::request(e)));
                }
                Poll::Pending => {
                    ready!(self.as_mut().poll_timer(cx));
                    tracing::debug!(timeout = ?self.pool.config.read_timeout, "upstream timed out (read)");
                    return Poll::Ready(Err(Error::read_timeout()));
                }
            }
        }
    }

    /// Ready when the read timeout has elapsed.
    fn poll_timer(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let conn = this.conn.as_mut().expect("connection");
        if !*this.timer_set {
            let deadline = this.deadline.expect("started");
            // One timer per connection, moved on for each request: tokio pushes a pending
            // timer's deadline later without a trip through its wheel, where a new timer
            // per request would be inserted and removed each time.
            match &mut conn.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => conn.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            *this.timer_set = true;
        }
        conn.timer.as_mut().expect("set above").as_mut().poll(cx)
    }

    /// The response, its body reading from the connection.
    fn respond(self: Pin<&mut Self>, head: Head) -> Result<Response<PeerBody>, Error> {
        let mut this = self.project();
        this.body.set(None);
        let mut conn = this.conn.take().expect("connection");
        // An early answer may come while the end of the request is still in the buffer: the
        // backend, which waits for it, would read the next request as its rest.
        let all_written = *this.wpos == conn.wbuf.len();
        if conn.wbuf.capacity() > 4 * WRITE_CHUNK {
            // An upload's large frames went through it: not to be kept while idle.
            conn.wbuf = Vec::new();
        }
        let Head {
            mut response,
            framing,
            keep_alive,
        } = head;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if !*this.upgrade {
                return Err(Error::invalid_response(decode::InvalidResponse(
                    "101 to a request that asked for no upgrade",
                )));
            }
            let rest = conn.rbuf.split().freeze();
            response
                .extensions_mut()
                .insert(PeerUpgrade::new(conn.io, rest));
            return Ok(response.map(|()| PeerBody::empty()));
        }
        // A body not sent to its end leaves the connection in an unknown state.
        let reusable = keep_alive && !*this.close && *this.body_done && all_written;
        let pool = reusable.then(|| this.pool.clone());
        Ok(response.map(|()| PeerBody::new(framing, conn, pool)))
    }
}

/// Appends a data frame to `wbuf`, framed as the request says.
fn take_data<D: Buf>(
    mut data: D,
    framing: Framing,
    sent: &mut u64,
    wbuf: &mut Vec<u8>,
) -> Result<(), Error> {
    let len = data.remaining();
    if len == 0 {
        return Ok(());
    }
    *sent += len as u64;
    match framing {
        Framing::Length(declared) if *sent > declared => {
            return Err(Error::request(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request body is longer than its content-length",
            )));
        }
        Framing::Chunked => encode::chunk_size(len, wbuf),
        _ => {}
    }
    while data.has_remaining() {
        let chunk = data.chunk();
        wbuf.extend_from_slice(chunk);
        let n = chunk.len();
        data.advance(n);
    }
    if framing == Framing::Chunked {
        wbuf.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Ends the body's framing once it has no more data.
fn end_body(framing: Framing, sent: u64, wbuf: &mut Vec<u8>) -> Result<(), Error> {
    match framing {
        Framing::Chunked => wbuf.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(declared) if sent < declared => {
            return Err(Error::request(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "request body is shorter than its content-length",
            )));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "future_tests.rs"]
mod tests;
