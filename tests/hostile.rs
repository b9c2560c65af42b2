//! Hostile clients against the gateway stack (the seed's `proxy_set_header` lines in front of
//! an `Upstream`), over raw sockets: request smuggling attempts, bad framing, oversized
//! headers, header tricks and slow clients. Each gets a clean 4xx, or is forwarded in a
//! safe, normalised form; the peer never sees a request the gateway did not frame itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;
use tower_upstream::proxy_headers::{ProxyHeadersLayer, RealIpLayer};
use tower_upstream::{HttpPeer, Peer, Upstream};

/// What the peer received: method, path, headers, body.
type Seen = Arc<Mutex<Vec<(String, String, http::HeaderMap, Bytes)>>>;

async fn recording_backend() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let log = log.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let path = parts
                        .uri
                        .path_and_query()
                        .map_or("", |p| p.as_str())
                        .to_owned();
                    log.lock()
                        .unwrap()
                        .push((parts.method.to_string(), path, parts.headers, body));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// The gateway: RealIp (no trusted proxies) + the seed's two proxy_set_header lines, with a
/// 500 ms limit on reading a request head.
async fn gateway(backend: SocketAddr) -> SocketAddr {
    let upstream = Upstream::builder()
        .peer(Peer::new(
            backend.to_string(),
            HttpPeer::new(&backend.to_string()).unwrap(),
        ))
        .build()
        .unwrap();
    let real_ip = RealIpLayer::builder().build().unwrap();
    let headers = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, client)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(client);
                    req
                })
                .layer(real_ip.clone())
                .layer(headers.clone())
                .service(upstream.clone());
            tokio::spawn(async move {
                let mut server = auto::Builder::new(TokioExecutor::new());
                server
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(500));
                let _ = server
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    addr
}

/// Sends raw bytes and reads what the gateway answers until it closes the connection or
/// stays quiet for 700 ms (a kept-alive connection).
async fn raw(gateway: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(gateway).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|s| s.get(..3)?.parse().ok())
        .collect()
}

async fn setup() -> (SocketAddr, Seen) {
    let (backend, seen) = recording_backend().await;
    (gateway(backend).await, seen)
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together() {
    let (gw, seen) = setup().await;
    let answer = raw(
        gw,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let codes = statuses(&answer);
    let seen = seen.lock().unwrap();
    if codes.first() == Some(&400) {
        assert!(seen.is_empty(), "rejected, nothing forwarded: {seen:?}");
    } else {
        // Accepted as chunked (RFC 9112: Transfer-Encoding wins): an empty POST, and the
        // rest is the client's own next request, answered separately on this connection.
        assert_eq!(seen.len(), codes.len(), "{answer}");
        assert_eq!((seen[0].0.as_str(), seen[0].1.as_str()), ("POST", "/a"));
        assert!(seen[0].3.is_empty(), "the body the gateway framed: none");
        assert!(seen
            .iter()
            .all(|r| r.2.get_all("content-length").iter().count() <= 1));
    }
}

#[tokio::test]
async fn duplicate_content_length_is_rejected() {
    let (gw, seen) = setup().await;
    let answer = raw(
        gw,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 12\r\n\r\nhello, world",
    )
    .await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn obs_fold_is_rejected() {
    let (gw, seen) = setup().await;
    let answer = raw(
        gw,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn oversized_head_is_refused() {
    let (gw, seen) = setup().await;
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2_000 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(250)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let answer = raw(gw, &request).await;
    let codes = statuses(&answer);
    assert!(
        codes.is_empty() || codes == [431],
        "a clean refusal: {answer:.200}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn connection_header_cannot_strip_what_the_gateway_sets() {
    let (gw, seen) = setup().await;
    let answer = raw(
        gw,
        b"GET /p HTTP/1.1\r\nHost: shop.example\r\nConnection: close, X-Real-IP, Host, X-Secret\r\n\
          X-Real-IP: 6.6.6.6\r\nX-Secret: s3cret\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    let seen = seen.lock().unwrap();
    let headers = &seen[0].2;
    assert_eq!(
        headers["x-real-ip"], "127.0.0.1",
        "set by the gateway, not the client"
    );
    assert_eq!(headers["host"], "shop.example");
    assert!(
        headers.get("x-secret").is_none(),
        "named in Connection: hop-by-hop"
    );
    assert!(headers
        .get("connection")
        .is_none_or(|v| v != "close, X-Real-IP, Host, X-Secret"));
}

#[tokio::test]
async fn invalid_host_is_not_forwarded_as_is() {
    let (gw, seen) = setup().await;
    let answer = raw(gw, b"GET / HTTP/1.1\r\nHost: evil.example/../x\r\n\r\n").await;
    let codes = statuses(&answer);
    let seen = seen.lock().unwrap();
    if codes == [400] {
        assert!(seen.is_empty());
    } else {
        assert_eq!(codes, [200], "{answer}");
        let host = seen[0]
            .2
            .get("host")
            .map(|h| h.to_str().unwrap().to_owned());
        assert_ne!(
            host.as_deref(),
            Some("evil.example/../x"),
            "not passed through"
        );
    }
}

#[tokio::test]
async fn slow_client_is_cut_off() {
    let (gw, seen) = setup().await;
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // ...and never finishes its head (slowloris). The gateway gives up after 500 ms.
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the gateway closed the connection");
    let answer = String::from_utf8_lossy(&out);
    assert!(statuses(&answer).iter().all(|&c| c == 408), "{answer}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn garbage_gets_400_and_nothing_reaches_the_peer() {
    let (gw, seen) = setup().await;
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS ClientHello
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
    ] {
        let answer = raw(gw, junk).await;
        let codes = statuses(&answer);
        assert!(
            codes.iter().all(|c| (400..500).contains(c)),
            "{junk:?}: {answer}"
        );
    }
    assert!(seen.lock().unwrap().is_empty());
}
