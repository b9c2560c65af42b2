//! The response future of `HttpPeer`: take an idle connection or open one, send, and wait
//! for the response head within the read timeout.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use hyper::client::conn::http1::SendRequest;

use super::body::PeerBody;
use super::connect::connect;
use super::error::Error;
use super::pool::Pool;
use crate::BoxError;

type Boxed<B> = Pin<Box<dyn Future<Output = Result<Response<PeerBody<B>>, Error>> + Send>>;

/// Response future for [`HttpPeer`](super::HttpPeer).
///
/// hyper's send future is unnameable, so the exchange is one boxed future: one allocation per
/// request, where hyper-util's client makes several.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B> {
    inner: Boxed<B>,
}

impl<B> ResponseFuture<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(pool: Arc<Pool<B>>, req: Request<B>) -> Self {
        Self {
            inner: Box::pin(exchange(pool, req)),
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            inner: Box::pin(async move { Err(error) }),
        }
    }
}

impl<B> Future for ResponseFuture<B> {
    type Output = Result<Response<PeerBody<B>>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B> fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

async fn exchange<B>(
    pool: Arc<Pool<B>>,
    mut req: Request<B>,
) -> Result<Response<PeerBody<B>>, Error>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let (mut tx, reused) = match pool.checkout() {
            Some(tx) => (tx, true),
            None => (
                connect(&pool.target, pool.config.connect_timeout).await?,
                false,
            ),
        };
        if !tx.is_ready() {
            if let Err(e) = ready(&mut tx).await {
                if reused {
                    // Closed while idle, before anything was written: take another one.
                    continue;
                }
                return Err(Error::connect(e.into()));
            }
        }
        let sent = tx.try_send_request(req);
        match tokio::time::timeout(pool.config.read_timeout, sent).await {
            Ok(Ok(res)) => return Ok(PeerBody::response(res, tx, pool)),
            Ok(Err(mut e)) => match e.take_message() {
                // The peer closed a kept-alive connection as we picked it, and nothing was
                // written: retry on another one, as hyper-util does. A new connection that
                // fails this way is an error like any other.
                Some(back) if reused => {
                    tracing::trace!(error = %e.error(), "idle upstream connection was closed");
                    req = back;
                }
                // Not written: as good as a failed connect.
                Some(_) => return Err(Error::connect(e.into_error().into())),
                None => return Err(Error::request(e.into_error())),
            },
            Err(_) => {
                tracing::debug!(timeout = ?pool.config.read_timeout, "upstream timed out (read)");
                // Dropping the send future closes the connection.
                return Err(Error::read_timeout());
            }
        }
    }
}

fn ready<B>(tx: &mut SendRequest<B>) -> impl Future<Output = hyper::Result<()>> + '_ {
    std::future::poll_fn(move |cx| tx.poll_ready(cx))
}
