//! The connection a `101 Switching Protocols` response hands over.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Where the connection of a `101` response from an [`HttpPeer`](super::HttpPeer) waits to
/// be taken: it is in the response's extensions, and [`take`](PeerUpgrade::take) gives the
/// [`Upgraded`] stream once. Clones share the one connection (extensions must be `Clone`).
///
/// [`UpgradeLayer`](crate::proxy_headers::UpgradeLayer) takes it to tunnel WebSocket
/// connections; it plays the part of hyper's `OnUpgrade` for this client.
#[derive(Clone)]
pub struct PeerUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl PeerUpgrade {
    pub(crate) fn new(io: TcpStream, read_buf: Bytes) -> Self {
        Self(Arc::new(Mutex::new(Some(Upgraded { io, read_buf }))))
    }

    /// The upgraded connection, the first time it is asked for.
    pub fn take(&self) -> Option<Upgraded> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl fmt::Debug for PeerUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerUpgrade").finish_non_exhaustive()
    }
}

/// A connection to a peer after `101 Switching Protocols`: bytes the peer sent after its
/// response head come first, then the socket.
#[derive(Debug)]
pub struct Upgraded {
    io: TcpStream,
    read_buf: Bytes,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_buf.has_remaining() {
            let n = this.read_buf.len().min(buf.remaining());
            buf.put_slice(&this.read_buf[..n]);
            this.read_buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
