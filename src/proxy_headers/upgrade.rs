//! [`UpgradeLayer`]: tunnels accepted protocol upgrades (WebSocket) between the client and
//! the peer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::header;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::hop_by_hop::{connection_has, is_upgrade_request};
use crate::http_peer::{PeerUpgrade, Upgraded};

/// Request extension: the client's connection will be handed over if the peer switches
/// protocols, so [`ProxyHeaders`](super::ProxyHeaders) forwards `Upgrade`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upgrading;

/// Layer that tunnels protocol upgrades (WebSocket); see the [module docs](super).
///
/// For a request that asks to upgrade (HTTP/1.1, `Connection: upgrade`, an `Upgrade`
/// header) on a connection served with hyper's `serve_connection_with_upgrades`, the layer
/// takes hyper's [`OnUpgrade`] from the request before it goes on, and marks the request so
/// that [`ProxyHeaders`](super::ProxyHeaders) forwards `Upgrade` and `Connection: upgrade`
/// to the peer. When the peer answers `101 Switching Protocols`, the client gets that answer
/// and a spawned Tokio task copies bytes both ways between the two upgraded connections until
/// either side closes. Any other answer goes back as it is, and the client's connection stays
/// plain HTTP.
///
/// It must sit outside [`ProxyHeadersLayer`](super::ProxyHeadersLayer), which removes the
/// `Upgrade` header of any request this layer has not marked. The peer must be an HTTP/1.1
/// client that supports upgrades: [`HttpPeer`](crate::HttpPeer), which hands over the
/// connection as a [`PeerUpgrade`] response extension, or hyper's client (`OnUpgrade`).
#[derive(Debug, Clone, Copy, Default)]
pub struct UpgradeLayer {
    _priv: (),
}

impl UpgradeLayer {
    /// Creates the layer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for UpgradeLayer {
    type Service = Upgrade<S>;

    fn layer(&self, inner: S) -> Upgrade<S> {
        Upgrade { inner }
    }
}

/// Middleware that tunnels protocol upgrades; made by [`UpgradeLayer`].
#[derive(Debug, Clone)]
pub struct Upgrade<S> {
    inner: S,
}

impl<S> Upgrade<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        Self { inner }
    }

    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Upgrade<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let client = if is_upgrade_request(&req) {
            let on_upgrade = req.extensions_mut().remove::<OnUpgrade>();
            if on_upgrade.is_some() {
                req.extensions_mut().insert(Upgrading);
            }
            on_upgrade
        } else {
            None
        };
        ResponseFuture {
            inner: self.inner.call(req),
            client,
        }
    }
}

pin_project! {
    /// Response future for [`Upgrade`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        client: Option<OnUpgrade>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("upgrade", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Poll::Ready(Ok(res));
        }
        let peer = match res.extensions_mut().remove::<OnUpgrade>() {
            Some(on_upgrade) => Some(PeerSide::Hyper(on_upgrade)),
            None => res
                .extensions_mut()
                .remove::<PeerUpgrade>()
                .and_then(|p| p.take())
                .map(PeerSide::Direct),
        };
        match (this.client.take(), peer) {
            (Some(client), Some(peer)) if switches(&res) => {
                tokio::spawn(tunnel(client, peer));
            }
            _ => {
                // A 101 that cannot be tunnelled: the client must not switch protocols.
                tracing::debug!("101 from the peer cannot be tunnelled; answering 502");
                *res.status_mut() = StatusCode::BAD_GATEWAY;
                res.headers_mut().remove(header::UPGRADE);
                res.headers_mut().remove(header::CONNECTION);
            }
        }
        Poll::Ready(Ok(res))
    }
}

/// Whether a 101 response tells the client to switch: `Upgrade` and `Connection: upgrade`.
fn switches<B>(res: &Response<B>) -> bool {
    res.headers().contains_key(header::UPGRADE) && connection_has(res.headers(), "upgrade")
}

/// The peer's end of a tunnel: from a hyper client, or from [`HttpPeer`](crate::http_peer::HttpPeer).
enum PeerSide {
    Hyper(OnUpgrade),
    Direct(Upgraded),
}

/// Waits for both upgrades, then copies bytes both ways until either side closes.
async fn tunnel(client: OnUpgrade, peer: PeerSide) {
    // The client's side is ready once hyper has written the 101 to it.
    let mut client = match client.await {
        Ok(client) => TokioIo::new(client),
        Err(error) => {
            tracing::debug!(%error, "upgrade failed; no tunnel");
            return;
        }
    };
    let copied = match peer {
        PeerSide::Hyper(peer) => match peer.await {
            Ok(peer) => tokio::io::copy_bidirectional(&mut client, &mut TokioIo::new(peer)).await,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed; no tunnel");
                return;
            }
        },
        PeerSide::Direct(mut peer) => tokio::io::copy_bidirectional(&mut client, &mut peer).await,
    };
    match copied {
        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
        Err(error) => tracing::debug!(%error, "tunnel failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{service_fn, ServiceExt};

    use super::*;

    /// A peer that answers `status`, saying whether the request was marked for a tunnel.
    async fn call(req: Request<()>, status: StatusCode) -> Response<()> {
        let peer = service_fn(move |req: Request<()>| async move {
            let marked = req.extensions().get::<Upgrading>().is_some();
            let res = Response::builder()
                .status(status)
                .header("x-marked", marked.to_string())
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(())
                .unwrap();
            Ok::<_, Infallible>(res)
        });
        UpgradeLayer::new().layer(peer).oneshot(req).await.unwrap()
    }

    fn upgrade_request() -> Request<()> {
        Request::get("/")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn plain_requests_pass_through() {
        let res = call(Request::new(()), StatusCode::OK).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-marked"], "false");
    }

    /// Without hyper's `OnUpgrade` (a server not serving upgrades, or a test) nothing is
    /// marked, and a 101 cannot reach the client.
    #[tokio::test]
    async fn no_connection_to_hand_over_means_no_switch() {
        let res = call(upgrade_request(), StatusCode::SWITCHING_PROTOCOLS).await;
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(res.headers()["x-marked"], "false");
        assert!(!res.headers().contains_key("upgrade"));
        let res = call(upgrade_request(), StatusCode::BAD_REQUEST).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}
