//! The gateway example's per-connection header-read timer (`examples/gateway/timer.rs`),
//! which reuses one Tokio timer for every request of a connection: each request head still
//! gets the whole timeout, and a connection whose head never ends is still closed (by hyper,
//! without an answer, as nginx does on `client_header_timeout`).

#[path = "../examples/gateway/timer.rs"]
mod timer;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HEAD_TIMEOUT: Duration = Duration::from_millis(300);

/// A hyper HTTP/1.1 server answering `ok`, with a 300 ms header-read timeout on `ConnTimer`.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(timer::ConnTimer::default())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one `ok` response off `s`.
async fn read_ok(s: &mut TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("an answer within 3 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
}

/// Reads until the server closes the connection, and returns what it sent.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .expect("the server closed the connection within 3 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn each_request_gets_the_whole_timeout_on_a_kept_alive_connection() {
    let addr = server().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    // Four requests 200 ms apart: each head is on time, together they take longer than
    // the timeout, so the reused timer must have moved on each time.
    for _ in 0..4 {
        s.write_all(GET).await.unwrap();
        read_ok(&mut s).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(start.elapsed() > 2 * HEAD_TIMEOUT);
    s.write_all(GET).await.unwrap();
    read_ok(&mut s).await;
}

#[tokio::test]
async fn an_unfinished_head_after_served_requests_is_cut_off() {
    let addr = server().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(GET).await.unwrap();
        read_ok(&mut s).await;
    }
    // The third head never ends: the timer, back from the second request, fires.
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert_eq!(answer, "", "closed without an answer");
    let waited = start.elapsed();
    assert!(
        waited >= HEAD_TIMEOUT - Duration::from_millis(20),
        "{waited:?}"
    );
}

#[tokio::test]
async fn an_unfinished_first_head_is_cut_off() {
    let addr = server().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert_eq!(answer, "", "closed without an answer");
    assert!(start.elapsed() >= HEAD_TIMEOUT - Duration::from_millis(20));
}
