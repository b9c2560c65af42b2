//! `HttpPeer` against real hyper backends on 127.0.0.1.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower::ServiceExt;
use tower_upstream::http_peer::{HttpClient, HttpPeer};

type ResBody = UnsyncBoxBody<Bytes, Infallible>;

/// A test backend: its address and how many TCP connections it accepted.
struct Backend {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
}

/// Serves HTTP/1.1 on 127.0.0.1:0 with `handler`, counting accepted connections.
async fn spawn_backend<F, Fut>(handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<ResBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let svc = hyper::service::service_fn(move |req| {
                let res = handler(req);
                async move { Ok::<_, Infallible>(res.await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    Backend { addr, accepts }
}

/// A body streamed from a channel: one data frame per message, ends when the sender drops.
struct ChannelBody(mpsc::Receiver<Bytes>);

fn channel_body() -> (mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = mpsc::channel(1);
    (tx, ChannelBody(rx))
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(http_body::Frame::data(data))))
    }
}

fn full(body: impl Into<Bytes>) -> ResBody {
    Full::new(body.into()).boxed_unsync()
}

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

/// A backend that answers with what it saw: `<version> <uri> host=<host>`.
async fn echo_head_backend() -> Backend {
    spawn_backend(|req: Request<Incoming>| async move {
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(|h| h.to_str().unwrap().to_owned());
        let seen = format!(
            "{:?} {} host={}",
            req.version(),
            req.uri(),
            host.unwrap_or_default()
        );
        Response::new(full(seen))
    })
    .await
}

async fn body_string<B>(res: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn get_reaches_backend_with_path_query_and_host() {
    let backend = echo_head_backend().await;
    let authority = backend.addr.to_string();
    let peer = HttpClient::builder().build().peer(&authority).unwrap();

    let req = Request::get("/a/b?x=1&y=2").body(empty()).unwrap();
    let res = peer.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        body_string(res).await,
        format!("HTTP/1.1 /a/b?x=1&y=2 host={authority}")
    );

    // Absolute form: the peer's authority replaces the one in the URI.
    let req = Request::get("http://example.com/p?q")
        .body(empty())
        .unwrap();
    let res = peer.clone().oneshot(req).await.unwrap();
    assert_eq!(
        body_string(res).await,
        format!("HTTP/1.1 /p?q host={authority}")
    );

    // An explicit Host header is left alone, and the version is forced to HTTP/1.1.
    for version in [Version::HTTP_10, Version::HTTP_2] {
        let req = Request::get("/h")
            .version(version)
            .header("host", "public.example")
            .body(empty())
            .unwrap();
        let res = peer.clone().oneshot(req).await.unwrap();
        assert_eq!(body_string(res).await, "HTTP/1.1 /h host=public.example");
    }
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let backend = echo_head_backend().await;
    let peer = HttpPeer::new(&backend.addr.to_string()).unwrap();

    for i in 0..20 {
        let req = Request::get(format!("/{i}")).body(empty()).unwrap();
        let res = peer.clone().oneshot(req).await.unwrap();
        assert!(body_string(res).await.contains(&format!(" /{i} ")));
    }
    assert_eq!(backend.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let peer = HttpPeer::new(&addr.to_string()).unwrap();

    let err = peer
        .oneshot(Request::get("/").body(empty()).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(err.to_string(), "upstream connect error");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn silent_backend_hits_read_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = HttpClient::builder()
        .read_timeout(Duration::from_millis(200))
        .build();
    let peer = client.peer(&addr.to_string()).unwrap();

    let start = Instant::now();
    let result = timeout(
        Duration::from_secs(2),
        peer.oneshot(Request::get("/").body(empty()).unwrap()),
    )
    .await
    .expect("read timeout did not fire within 2 s");
    let err = result.unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(err.is_timeout(), "{err:?}");
    assert!(!err.is_connect(), "{err:?}");
    assert_eq!(err.to_string(), "upstream timed out (read)");
}

/// A peer on `backend` whose response heads must come within `read_timeout`.
fn peer_with_read_timeout(backend: &Backend, read_timeout: Duration) -> HttpPeer<Full<Bytes>> {
    let client = HttpClient::builder().read_timeout(read_timeout).build();
    client.peer(&backend.addr.to_string()).unwrap()
}

#[tokio::test]
async fn read_timeout_on_pooled_connection_closes_it() {
    let backend = spawn_backend(|req: Request<Incoming>| async move {
        if req.uri().path() == "/hang" {
            std::future::pending::<()>().await;
        }
        Response::new(full("ok"))
    })
    .await;
    let peer = peer_with_read_timeout(&backend, Duration::from_millis(200));
    let get = |path: &str| Request::get(path).body(empty()).unwrap();

    let res = peer.clone().oneshot(get("/ok")).await.unwrap();
    assert_eq!(body_string(res).await, "ok");
    let mut err = peer.clone().oneshot(get("/hang")).await.unwrap_err();
    assert!(err.is_timeout() && !err.is_connect(), "{err:?}");
    assert_eq!(err.take_request_head().unwrap().uri, "/hang");
    // The timed-out connection is not handed out again.
    let res = peer.clone().oneshot(get("/ok")).await.unwrap();
    assert_eq!(body_string(res).await, "ok");
    assert_eq!(backend.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn read_timeout_restarts_for_each_request_on_a_pooled_connection() {
    // Each answer takes most of the read timeout; together they take more than it.
    let backend = spawn_backend(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_millis(120)).await;
        Response::new(full("ok"))
    })
    .await;
    let peer = peer_with_read_timeout(&backend, Duration::from_millis(200));
    let start = Instant::now();
    for _ in 0..3 {
        let res = peer
            .clone()
            .oneshot(Request::get("/").body(empty()).unwrap())
            .await
            .expect("answered within its own read timeout");
        assert_eq!(body_string(res).await, "ok");
    }
    assert!(start.elapsed() >= Duration::from_millis(360));
    assert_eq!(
        backend.accepts.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
}

/// A listener with a full accept queue drops new SYNs, so connecting to it hangs.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn unanswered_connect_hits_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue; further connects are left unanswered.
    let mut fillers = Vec::new();
    while let Ok(Ok(stream)) = timeout(
        Duration::from_millis(100),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        fillers.push(stream);
        assert!(fillers.len() < 64, "accept queue never filled up");
    }

    let client = HttpClient::builder()
        .connect_timeout(Duration::from_millis(200))
        .build();
    let peer = client.peer(&addr.to_string()).unwrap();
    let start = Instant::now();
    let err = timeout(
        Duration::from_secs(2),
        peer.oneshot(Request::get("/").body(empty()).unwrap()),
    )
    .await
    .expect("connect timeout did not fire within 2 s")
    .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(err.is_connect(), "{err:?}");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.to_string(), "upstream timed out (connect)");
    drop(listener);
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    // Backend -> test: request body bytes as they arrive.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Bytes>();
    // Test -> backend: permission to send the next response chunk.
    let (go_tx, go_rx) = mpsc::unbounded_channel::<()>();
    let go_rx = Arc::new(Mutex::new(Some(go_rx)));

    let backend = spawn_backend(move |req: Request<Incoming>| {
        let seen_tx = seen_tx.clone();
        let go_rx = go_rx.lock().unwrap().take();
        async move {
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    seen_tx.send(data).unwrap();
                }
            }
            let mut go_rx = go_rx.expect("one request only");
            let (tx, res_body) = channel_body();
            tokio::spawn(async move {
                for chunk in ["one", "two", "three"] {
                    go_rx.recv().await.unwrap();
                    tx.send(Bytes::from(chunk)).await.unwrap();
                }
            });
            Response::new(res_body.boxed_unsync())
        }
    })
    .await;

    let peer = HttpPeer::new(&backend.addr.to_string()).unwrap();
    let (body_tx, body) = channel_body();
    let req = Request::post("/upload").body(body).unwrap();
    let response = tokio::spawn(peer.oneshot(req));

    // Each chunk reaches the backend before the next one is sent.
    for chunk in ["first", "second", "last"] {
        body_tx.send(Bytes::from(chunk)).await.unwrap();
        let mut got = Vec::new();
        while got.len() < chunk.len() {
            let data = timeout(Duration::from_secs(5), seen_rx.recv())
                .await
                .expect("backend did not see the chunk before the next was sent")
                .unwrap();
            got.extend_from_slice(&data);
        }
        assert_eq!(got, chunk.as_bytes());
    }
    drop(body_tx);

    let res = timeout(Duration::from_secs(5), response)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Each response chunk reaches the client before the backend sends the next one.
    let mut body = res.into_body();
    for chunk in ["one", "two", "three"] {
        go_tx.send(()).unwrap();
        let mut got = Vec::new();
        while got.len() < chunk.len() {
            let frame = timeout(Duration::from_secs(5), body.frame())
                .await
                .expect("response chunk did not arrive on its own")
                .unwrap()
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(got, chunk.as_bytes());
    }
    let rest = timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
}

#[tokio::test]
async fn large_post_body_arrives_intact() {
    let backend = spawn_backend(|req: Request<Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::new(full(body))
    })
    .await;
    let peer = HttpPeer::new(&backend.addr.to_string()).unwrap();

    // 1 MiB of non-repeating-looking bytes (xorshift).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let payload: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let req = Request::post("/echo")
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let res = peer.oneshot(req).await.unwrap();
    let echoed = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "echoed body differs");
}

#[tokio::test]
async fn empty_body_type_works() {
    let backend = echo_head_backend().await;
    let peer = HttpClient::builder()
        .build::<Empty<Bytes>>()
        .peer(&backend.addr.to_string())
        .unwrap();
    let res = peer
        .oneshot(Request::get("/e").body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert!(body_string(res).await.contains(" /e "));
}

/// One request from a current-thread runtime of its own on this thread; its body is read.
fn get_on_own_runtime(rt: &tokio::runtime::Runtime, peer: &HttpPeer<Full<Bytes>>) {
    rt.block_on(async {
        let req = Request::get("/").body(empty()).unwrap();
        let res = timeout(Duration::from_secs(5), peer.clone().oneshot(req))
            .await
            .expect("answered within 5 s")
            .unwrap();
        assert_eq!(body_string(res).await, "ok");
    });
}

#[test]
fn current_thread_runtimes_do_not_share_connections() {
    // Two workers as the gateway example runs them: a current-thread runtime per thread,
    // one peer between them. A socket is served by the runtime that opened it, so worker B
    // must open its own connection rather than borrow worker A's idle one.
    let backend_rt = tokio::runtime::Runtime::new().unwrap();
    let backend = backend_rt.block_on(spawn_backend(|_req: Request<Incoming>| async {
        Response::new(full("ok"))
    }));
    let client = HttpClient::builder().build();
    let peer = client.peer(&backend.addr.to_string()).unwrap();
    let current = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (a_done, b_may_start) = std::sync::mpsc::channel();
    let (b_done, a_may_go_on) = std::sync::mpsc::channel();
    let peer_a = peer.clone();
    let a = std::thread::spawn(move || {
        let rt = current();
        get_on_own_runtime(&rt, &peer_a);
        a_done.send(()).unwrap();
        a_may_go_on.recv().unwrap();
        // Its own idle connection again.
        get_on_own_runtime(&rt, &peer_a);
    });
    let b = std::thread::spawn(move || {
        b_may_start.recv().unwrap();
        let rt = current();
        get_on_own_runtime(&rt, &peer);
        get_on_own_runtime(&rt, &peer);
        b_done.send(()).unwrap();
    });
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(
        backend.accepts.load(Ordering::SeqCst),
        2,
        "one connection per worker"
    );
}

#[test]
fn a_multi_thread_runtime_shares_connections_between_its_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(spawn_backend(|_req: Request<Incoming>| async {
        Response::new(full("ok"))
    }));
    let client = HttpClient::builder().build();
    let peer = client.peer(&backend.addr.to_string()).unwrap();
    // Sequential requests, each from a task that may run on either worker thread: the one
    // idle connection serves them all.
    for _ in 0..20 {
        let peer = peer.clone();
        rt.block_on(rt.spawn(async move {
            let req = Request::get("/").body(empty()).unwrap();
            let res = peer.oneshot(req).await.unwrap();
            assert_eq!(body_string(res).await, "ok");
        }))
        .unwrap();
    }
    assert_eq!(backend.accepts.load(Ordering::SeqCst), 1);
}
