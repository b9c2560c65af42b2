//! The `Upstream` mounted in an axum `Router` with `nest_service` and `fallback_service`,
//! served by `axum::serve` on loopback, with no `HandleErrorLayer`.

mod support;

use axum::{routing::get, Router};
use tower_upstream::{HttpPeer, Peer, Upstream};

/// A backend that answers with the path it received.
async fn echo_path_backend() -> std::net::SocketAddr {
    let app = Router::new().fallback(|uri: http::Uri| async move { format!("backend saw {uri}") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn nest_service_and_fallback_service() {
    let backend = echo_path_backend().await;
    let upstream = Upstream::builder()
        .peer(Peer::new(
            "app",
            HttpPeer::new(&backend.to_string()).unwrap(),
        ))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/health", get(|| async { "gateway ok" }))
        .nest_service("/api", upstream.clone())
        .fallback_service(upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(support::get(gateway, "/health").await.2, "gateway ok");
    // nest_service strips its prefix before the upstream sees the request.
    assert_eq!(
        support::get(gateway, "/api/users?id=7").await.2,
        "backend saw /users?id=7"
    );
    assert_eq!(
        support::get(gateway, "/static/x.css").await.2,
        "backend saw /static/x.css"
    );
}

#[tokio::test]
async fn unavailable_upstream_is_a_502_response_not_a_dropped_connection() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = Upstream::builder()
        .peer(Peer::new("dead", HttpPeer::new(&dead.to_string()).unwrap()))
        .build()
        .unwrap();
    let app = Router::new().fallback_service(upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut conn = support::Conn::open("127.0.0.1".parse().unwrap(), gateway).await;
    for _ in 0..3 {
        let (status, _, body) = conn.get("/").await;
        assert_eq!((status, body.as_str()), (502, "502 Bad Gateway\n"));
    }
}
