//! A WebSocket through a gateway imported from nginx's usual WebSocket configuration
//! (`proxy_http_version 1.1`, `proxy_set_header Upgrade $http_upgrade`, `Connection
//! "upgrade"`): the importer reports those lines as ignored, because the built gateway
//! tunnels upgrades by itself, through error pages and locations.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceBuilder;
use tower_upstream::config::nginx::{self, Outcome};
use tower_upstream::config::Gateway;

/// A WebSocket echo server on 127.0.0.1:0; the handshake headers it receives are sent on
/// the returned channel.
async fn echo_backend() -> (SocketAddr, mpsc::UnboundedReceiver<HeaderMap>) {
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
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Serves `gateway` with upgrades, as `examples/gateway/` does.
async fn serve(gateway: Gateway) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(remote);
                    req
                })
                .service(gateway.clone());
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

#[tokio::test]
async fn nginx_websocket_config_tunnels_upgrades() {
    let (backend, mut handshakes) = echo_backend().await;
    let imported = nginx::import(&format!(
        "http {{
            upstream chat {{ server {backend}; }}
            server {{
                error_page 502 504 /50x.html;
                location = /50x.html {{ return 200 'sorry'; }}
                location /chat {{
                    proxy_pass http://chat;
                    proxy_http_version 1.1;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection \"upgrade\";
                    proxy_set_header Host $host;
                }}
            }}
        }}"
    ))
    .unwrap();
    let report: Vec<_> = imported
        .report
        .iter()
        .map(|e| (e.line(), e.directive(), e.outcome()))
        .collect();
    assert_eq!(
        report,
        [
            (8, "proxy_http_version", Outcome::Ignored),
            (9, "proxy_set_header", Outcome::Ignored),
            (10, "proxy_set_header", Outcome::Ignored),
        ]
    );
    let gw = serve(imported.config.build().unwrap()).await;

    let mut req = format!("ws://{gw}/chat").into_client_request().unwrap();
    req.headers_mut()
        .insert("host", "Chat.Example".parse().unwrap());
    let stream = TcpStream::connect(gw).await.unwrap();
    let (mut ws, res) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("the gateway tunnels the upgrade");
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    let seen = handshakes.recv().await.unwrap();
    assert_eq!(seen["host"], "chat.example");
    assert_eq!(seen["connection"], "upgrade");
    assert_eq!(seen["upgrade"], "websocket");
    for i in 0..10 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    ws.close(None).await.unwrap();
}
