//! `HttpPeer`'s keep-alive pool, against a raw HTTP/1.1 backend on 127.0.0.1 that counts the
//! connections it accepts and sees closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tower_upstream::http_peer::{HttpClient, HttpPeer};

/// What the raw backend answers to one request, by its path.
fn answer(method: &str, path: &str) -> Vec<u8> {
    match path {
        "/close" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(),
        "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        "/big" => {
            let body = vec![b'x'; 256 * 1024];
            let mut out =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            out.extend_from_slice(&body);
            out
        }
        _ if method == "HEAD" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".to_vec(),
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    }
}

struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl Backend {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits (at most 2 s) for the backend to have seen `n` connections closed by the client.
    async fn until_closed(&self, n: usize) {
        for _ in 0..200 {
            if self.closed() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} connections closed, expected {n}", self.closed());
    }
}

/// Serves keep-alive HTTP/1.1 by hand (request heads only, no request bodies), so that the
/// test sees every connection's end. With `close_after`, the backend closes each connection
/// that long after answering, as a backend with a short keep-alive timeout does.
async fn backend(delay: Duration, close_after: Option<Duration>) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closed): (Arc<AtomicUsize>, Arc<AtomicUsize>) = Default::default();
    let (a, c) = (Arc::clone(&accepted), Arc::clone(&closed));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                serve(stream, delay, close_after).await;
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Backend {
        addr,
        accepted,
        closed,
    }
}

/// Returns when the client closed the connection (or the backend did).
async fn serve(mut stream: TcpStream, delay: Duration, close_after: Option<Duration>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut words = head.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        // `/race` on a kept-alive connection: closed unanswered, as by a backend whose
        // keep-alive timeout fires as the request arrives.
        if path == "/race" && served > 0 {
            return;
        }
        served += 1;
        tokio::time::sleep(delay).await;
        if stream.write_all(&answer(method, path)).await.is_err() || path == "/close" {
            return;
        }
        if let Some(after) = close_after {
            tokio::time::sleep(after).await;
            return;
        }
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

async fn read_all(
    peer: &HttpPeer<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> (StatusCode, Bytes) {
    let res = peer.clone().oneshot(req).await.unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

fn peer(client: &HttpClient<Empty<Bytes>>, backend: &Backend) -> HttpPeer<Empty<Bytes>> {
    client.peer(&backend.addr.to_string()).unwrap()
}

#[tokio::test]
async fn bodiless_responses_give_their_connection_back() {
    let backend = backend(Duration::ZERO, None).await;
    let peer = peer(&HttpClient::new(), &backend);
    for _ in 0..5 {
        assert_eq!(
            read_all(&peer, get("/empty")).await.0,
            StatusCode::NO_CONTENT
        );
        let head = Request::builder()
            .method(Method::HEAD)
            .uri("/")
            .body(Empty::new())
            .unwrap();
        assert_eq!(read_all(&peer, head).await, (StatusCode::OK, Bytes::new()));
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_the_connection() {
    let backend = backend(Duration::ZERO, None).await;
    let peer = peer(&HttpClient::new(), &backend);
    let res = peer.clone().oneshot(get("/big")).await.unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    // The rest of /big must not be read as the next response.
    backend.until_closed(1).await;
    assert_eq!(
        read_all(&peer, get("/")).await,
        (StatusCode::OK, "ok".into())
    );
    assert_eq!(backend.accepted(), 2);
    // A body read to its end keeps the connection.
    let (_, big) = read_all(&peer, get("/big")).await;
    assert_eq!(big.len(), 256 * 1024);
    assert_eq!(read_all(&peer, get("/")).await.1, "ok");
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let backend = backend(Duration::ZERO, None).await;
    let peer = peer(&HttpClient::new(), &backend);
    for _ in 0..3 {
        assert_eq!(read_all(&peer, get("/close")).await.1, "ok");
    }
    assert_eq!(backend.accepted(), 3);
}

#[tokio::test]
async fn a_request_that_says_close_does_not_give_its_connection_back() {
    let backend = backend(Duration::ZERO, None).await;
    let peer = peer(&HttpClient::new(), &backend);
    for value in ["close", "keep-alive, Close"] {
        let mut req = get("/");
        req.headers_mut()
            .insert("connection", value.parse().unwrap());
        read_all(&peer, req).await;
    }
    // Then two requests that keep theirs: one connection for both.
    read_all(&peer, get("/")).await;
    read_all(&peer, get("/")).await;
    assert_eq!(backend.accepted(), 3);
}

#[tokio::test]
async fn connections_closed_by_the_backend_while_idle_are_replaced() {
    let backend = backend(Duration::ZERO, Some(Duration::from_millis(20))).await;
    let peer = peer(&HttpClient::new(), &backend);
    for i in 1..=3 {
        assert_eq!(read_all(&peer, get("/")).await.1, "ok");
        backend.until_closed(i).await;
        // Let the client's connection task see the FIN.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.accepted(), 3);
}

/// A POST, which is not sent again when a kept-alive connection fails it, is not given an
/// idle connection that the backend has closed: the pool sees the close and opens another.
#[tokio::test]
async fn a_post_never_gets_a_connection_the_backend_closed() {
    let backend = backend(Duration::ZERO, Some(Duration::from_millis(20))).await;
    let peer = peer(&HttpClient::new(), &backend);
    for i in 1..=3 {
        // The GET's connection, closed by the backend while idle, is left for the POST.
        assert_eq!(read_all(&peer, get("/")).await.1, "ok");
        backend.until_closed(2 * i - 1).await;
        // Let the runtime's I/O driver see the FIN.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let post = Request::post("/").body(Empty::new()).unwrap();
        match peer.clone().oneshot(post).await {
            Ok(res) => assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok"),
            Err(e) => panic!("POST {i} on the closed connection: {e}"),
        }
        backend.until_closed(2 * i).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.accepted(), 6);
}

/// RFC 9112, section 9.3.1: an idempotent request that a kept-alive connection carried
/// without an answer is sent again on a new connection; a POST is not.
#[tokio::test]
async fn unanswered_requests_on_kept_alive_connections_are_retried_if_idempotent() {
    let backend = backend(Duration::ZERO, None).await;
    let peer = peer(&HttpClient::new(), &backend);
    assert_eq!(read_all(&peer, get("/")).await.1, "ok");
    assert_eq!(read_all(&peer, get("/race")).await.1, "ok");
    assert_eq!(backend.accepted(), 2, "one retry on a new connection");

    let post = Request::post("/race").body(Empty::new()).unwrap();
    let err = peer.clone().oneshot(post).await.unwrap_err();
    assert!(!err.is_connect() && !err.is_timeout(), "{err}");
    assert_eq!(backend.accepted(), 2, "a POST is not sent twice");
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let backend = backend(Duration::ZERO, None).await;
    let client = HttpClient::builder()
        .pool_idle_timeout(Duration::from_millis(100))
        .build();
    let peer = peer(&client, &backend);
    assert_eq!(read_all(&peer, get("/")).await.1, "ok");
    assert_eq!(read_all(&peer, get("/")).await.1, "ok");
    assert_eq!(backend.closed(), 0);
    // Closed with no further request to notice it.
    backend.until_closed(1).await;
    assert_eq!(read_all(&peer, get("/")).await.1, "ok");
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let backend = backend(Duration::from_millis(100), None).await;
    let client = HttpClient::builder().pool_max_idle_per_host(1).build();
    let peer = peer(&client, &backend);
    // Three at once need three connections; two are closed when they are done.
    let all = futures_util::future::join_all((0..3).map(|_| read_all(&peer, get("/")))).await;
    assert!(all.iter().all(|(s, b)| *s == StatusCode::OK && b == "ok"));
    assert_eq!(backend.accepted(), 3);
    backend.until_closed(2).await;
    assert_eq!(read_all(&peer, get("/")).await.1, "ok");
    assert_eq!(backend.accepted(), 3);
}

#[tokio::test]
async fn max_idle_zero_turns_keep_alive_off() {
    let backend = backend(Duration::ZERO, None).await;
    let client = HttpClient::builder().pool_max_idle_per_host(0).build();
    let peer = peer(&client, &backend);
    for i in 1..=3 {
        assert_eq!(read_all(&peer, get("/")).await.1, "ok");
        backend.until_closed(i).await;
    }
    assert_eq!(backend.accepted(), 3);
}

#[tokio::test]
async fn peers_of_one_client_and_authority_share_connections() {
    let backend = backend(Duration::ZERO, None).await;
    let client = HttpClient::new();
    let (a, b) = (peer(&client, &backend), peer(&client, &backend));
    for _ in 0..3 {
        assert_eq!(read_all(&a, get("/")).await.1, "ok");
        assert_eq!(read_all(&b, get("/")).await.1, "ok");
    }
    assert_eq!(backend.accepted(), 1);
    // Another client has its own pool.
    let c = peer(&HttpClient::new(), &backend);
    assert_eq!(read_all(&c, get("/")).await.1, "ok");
    assert_eq!(backend.accepted(), 2);
}

/// A backend on a runtime and thread of its own, which outlive the client's runtimes.
fn backend_on_own_thread() -> Backend {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = runtime();
        rt.block_on(async move {
            tx.send(backend(Duration::ZERO, None).await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_connection_left_by_a_runtime_that_ended_is_not_used() {
    // One client on two runtimes in turn on one thread, as tests sharing a client do.
    let backend = backend_on_own_thread();
    let client = HttpClient::builder().build();
    let peer = peer(&client, &backend);
    let first = runtime();
    assert_eq!(first.block_on(read_all(&peer, get("/"))).1, "ok");
    drop(first);
    // The idle connection's runtime is gone, and with it whatever would read its answer: a
    // POST written on it would reach the backend and fail.
    let second = runtime();
    let post = Request::post("/").body(Empty::new()).unwrap();
    let (status, body) = second.block_on(read_all(&peer, post));
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(backend.accepted(), 2, "the POST went on a new connection");
}

#[test]
fn idle_connections_are_closed_after_a_runtime_ended_before_its_reaper_ran() {
    let backend = backend_on_own_thread();
    let client = HttpClient::builder()
        .pool_idle_timeout(Duration::from_millis(100))
        .build();
    let peer = peer(&client, &backend);
    let first = runtime();
    // The connection's return starts the reaper, a task this runtime ends before running.
    assert_eq!(first.block_on(read_all(&peer, get("/"))).1, "ok");
    drop(first);
    runtime().block_on(async {
        assert_eq!(read_all(&peer, get("/")).await.1, "ok");
        // The first connection, unusable, was closed; the second closes at its idle
        // timeout, with no further request to notice it.
        backend.until_closed(2).await;
    });
}
