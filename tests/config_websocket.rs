//! A WebSocket through a gateway imported from nginx's usual WebSocket configuration
//! (`proxy_http_version 1.1`, `proxy_set_header Upgrade $http_upgrade`, `Connection
//! "upgrade"`): the importer reports those lines as ignored, because the built gateway
//! tunnels upgrades by itself, through error pages and locations.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower_upstream::config::nginx::{self, Outcome};

mod support;

use support::ws::{echo_backend, upgrade};

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
    let gw = support::ws::serve_with_upgrades(imported.config.build().unwrap()).await;

    let mut req = format!("ws://{gw}/chat").into_client_request().unwrap();
    req.headers_mut()
        .insert("host", "Chat.Example".parse().unwrap());
    let (mut ws, _) = upgrade(gw, req).await;
    let seen = handshakes.recv().await.unwrap();
    assert_eq!(seen["host"], "chat.example");
    assert_eq!(seen["connection"], "upgrade");
    assert_eq!(seen["upgrade"], "websocket");
    support::ws::assert_echoes(&mut ws, 10).await;
    ws.close(None).await.unwrap();
}
