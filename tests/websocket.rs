//! A WebSocket through the gateway over real sockets: a tungstenite echo backend on
//! 127.0.0.1, the crate's layers and `Upstream` with an `HttpPeer` in front of it, served by
//! hyper with upgrades, and a tungstenite client that upgrades and exchanges messages.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceBuilder;
use tower_upstream::proxy_headers::{ProxyHeadersLayer, RewriteResponseLayer, UpgradeLayer};
use tower_upstream::{HttpClient, Peer, Upstream};

mod support;

use support::ws::{echo_backend, upgrade};

/// The gateway: the seed's headers, upgrades tunnelled, served with upgrades.
async fn gateway(peer: SocketAddr) -> SocketAddr {
    let client = HttpClient::builder().build();
    let upstream = Upstream::builder()
        .name("tserver")
        .peer(Peer::new(
            peer.to_string(),
            client.peer(&peer.to_string()).unwrap(),
        ))
        .build()
        .unwrap();
    let headers = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .build()
        .unwrap();
    let responses = RewriteResponseLayer::builder()
        .redirect_default()
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(UpgradeLayer::new())
        .layer(responses)
        .layer(headers)
        .service(upstream);
    support::ws::serve_with_upgrades(svc).await
}

#[tokio::test]
async fn websocket_messages_cross_the_gateway() {
    let (backend, mut handshakes) = echo_backend().await;
    let gw = gateway(backend).await;

    let mut req = format!("ws://{gw}/chat").into_client_request().unwrap();
    req.headers_mut()
        .insert("host", "Gateway.Test".parse().unwrap());
    // Hop-by-hop headers named by the client must not reach the peer, even on an upgrade.
    req.headers_mut()
        .insert("connection", "Upgrade, X-Secret".parse().unwrap());
    req.headers_mut()
        .insert("x-secret", "s3cret".parse().unwrap());
    let (mut ws, res) = upgrade(gw, req).await;
    assert_eq!(
        res.headers()["upgrade"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase(),
        "websocket"
    );

    let seen = handshakes.recv().await.unwrap();
    assert_eq!(seen["host"], "gateway.test");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["connection"], "upgrade");
    assert!(!seen.contains_key("x-secret"), "{seen:?}");

    support::ws::assert_echoes(&mut ws, 20).await;
    let big = vec![7u8; 256 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
    // The backend ends the session; the tunnel then closes the client side too.
    while let Some(msg) = ws.next().await {
        if msg.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn two_websockets_at_once_and_plain_http_alongside() {
    let (backend, _handshakes) = echo_backend().await;
    let gw = gateway(backend).await;
    let open = || async move {
        let stream = TcpStream::connect(gw).await.unwrap();
        let req = format!("ws://{gw}/").into_client_request().unwrap();
        tokio_tungstenite::client_async(req, stream)
            .await
            .unwrap()
            .0
    };
    let (mut a, mut b) = (open().await, open().await);
    a.send(Message::text("from a")).await.unwrap();
    b.send(Message::text("from b")).await.unwrap();
    assert_eq!(b.next().await.unwrap().unwrap(), Message::text("from b"));
    assert_eq!(a.next().await.unwrap().unwrap(), Message::text("from a"));

    // A plain request to a WebSocket-only backend is still answered as HTTP.
    let (status, _, _) = support::get(gw, "/").await;
    assert!(status >= 400, "{status}");
}

/// A peer that does not switch protocols: the client gets its answer, as plain HTTP.
#[tokio::test]
async fn refused_upgrade_is_a_plain_answer() {
    let backend = support::spawn_backend("plain").await;
    let gw = gateway(backend.addr).await;
    let stream = TcpStream::connect(gw).await.unwrap();
    let req = format!("ws://{gw}/").into_client_request().unwrap();
    let err = tokio_tungstenite::client_async(req, stream)
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => {
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["x-backend"], "plain");
        }
        other => panic!("expected the backend's plain answer, got {other:?}"),
    }
}
