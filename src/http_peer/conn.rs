//! One HTTP/1.1 connection to a peer: the socket and its read and write buffers.
//!
//! The connection has no task of its own: the request's future writes to it and reads the
//! response head, and the response body reads the rest. hyper's client instead drives each
//! connection from a spawned task and talks to it over channels, which costs two task
//! wake-ups and several channel operations per request.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Reads ask for at least this much room.
const READ_CHUNK: usize = 8 * 1024;

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) io: TcpStream,
    /// Bytes read and not yet consumed.
    pub(crate) rbuf: BytesMut,
    /// The request head (and small bodies) being written; kept to reuse its allocation.
    pub(crate) wbuf: Vec<u8>,
    /// The read timeout of the request in flight, kept for the next one (see
    /// `Exchange::poll_timer`).
    pub(crate) timer: Option<Pin<Box<Sleep>>>,
    /// The thread that opened the socket, whose runtime's I/O driver it is registered with
    /// (see `Pool::checkout`).
    pub(crate) owner: usize,
}

impl Conn {
    pub(crate) fn new(io: TcpStream) -> Self {
        Self {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(512),
            timer: None,
            owner: super::pool::thread_slot(),
        }
    }

    /// Reads more bytes into `rbuf`. `Ok(0)` is the end of the stream.
    ///
    /// Through `AsyncRead`, which takes a short read to mean the socket is drained (as nginx
    /// does): the next read waits for the next event instead of trying a `recv` that would
    /// fail with `EAGAIN`, one wasted syscall per request.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }

    /// Writes `buf[*pos..]`, advancing `pos`, until all of it is written.
    pub(crate) fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        pos: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *pos < buf.len() {
            match self.io.try_write(&buf[*pos..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.io.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `wbuf` from `pos`, advancing `pos`.
    pub(crate) fn poll_flush_wbuf(
        &mut self,
        cx: &mut Context<'_>,
        pos: &mut usize,
    ) -> Poll<io::Result<()>> {
        let buf = std::mem::take(&mut self.wbuf);
        let polled = self.poll_write_all(cx, &buf, pos);
        self.wbuf = buf;
        polled
    }

    /// Whether an idle connection can still carry a request: the peer has neither closed
    /// it nor sent anything unasked. Costs a syscall only when the socket was seen readable;
    /// otherwise a look at its readiness, with no waker to register and no task budget
    /// spent, as a poll would.
    pub(crate) fn is_reusable(&mut self) -> bool {
        if !self.rbuf.is_empty() || self.driver_gone() {
            return false;
        }
        if self.rbuf.capacity() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
        // Would block: nothing to read. The end of the stream, stray bytes or an error
        // would have been.
        matches!(
            self.io.try_read_buf(&mut self.rbuf),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Whether the runtime that opened the socket has shut down: its I/O driver will never
    /// report the socket ready again, yet a read finds it idle. A request written on it
    /// would reach the peer and its answer never be read (a client shared by runtimes one
    /// after the other on a thread, as tests do). Asked of the driver through the write
    /// side, which an idle connection has ready (no lock, no waker stored), with a waker
    /// that does nothing: no task waits on an idle connection. Outside the task's budget,
    /// so that an exhausted budget cannot hide the answer.
    fn driver_gone(&self) -> bool {
        let ready = pin!(tokio::task::unconstrained(poll_fn(|cx| {
            self.io.poll_write_ready(cx)
        })));
        matches!(
            ready.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(Err(_))
        )
    }
}
