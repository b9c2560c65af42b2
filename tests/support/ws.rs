//! WebSocket helpers shared by the WebSocket tests: a tungstenite echo backend, a server
//! that serves a gateway with upgrades, and a client handshake through it.

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::client::{
    Request as ClientRequest, Response as ClientResponse,
};
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tower::ServiceBuilder;

/// The client side of a WebSocket opened by [`upgrade`].
pub type WsClient = WebSocketStream<TcpStream>;

/// A WebSocket echo server on 127.0.0.1:0; the handshake headers it receives are sent on
/// the returned channel.
pub async fn echo_backend() -> (SocketAddr, mpsc::UnboundedReceiver<HeaderMap>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                // The signature is tungstenite's.
                #[allow(clippy::result_large_err)]
                let record = |req: &WsRequest, res: WsResponse| {
                    let _ = tx.send(req.headers().clone());
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        return;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Serves `svc` on 127.0.0.1:0 with upgrades, as `examples/gateway/` does: each request
/// carries the client's `SocketAddr` as an extension.
pub async fn serve_with_upgrades<S, B>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(remote);
                    req
                })
                .service(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(svc),
                    )
                    .await;
            });
        }
    });
    addr
}

/// Connects to `gw` and upgrades with `req`; the gateway must switch protocols.
pub async fn upgrade(gw: SocketAddr, req: ClientRequest) -> (WsClient, ClientResponse) {
    let stream = TcpStream::connect(gw).await.unwrap();
    let (ws, res) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("the gateway tunnels the upgrade");
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    (ws, res)
}

/// Sends `message 0` .. `message {count - 1}` and checks each comes back.
pub async fn assert_echoes(ws: &mut WsClient, count: usize) {
    for i in 0..count {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
}
