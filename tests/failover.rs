//! Passive failover over real sockets on loopback: refused, silent, 502-answering and killed
//! peers; a POST that must not be sent twice.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_upstream::upstream::{NextUpstream, ReplayBody};
use tower_upstream::{HttpClient, HttpPeer, Peer, Upstream};

use support::killable::Killable;
use support::{serve, spawn_backend, Conn};

type Client = HttpClient<ReplayBody<Incoming>>;
type Counted = tower::util::BoxCloneSyncService<
    Request<ReplayBody<Incoming>>,
    Response<tower_upstream::http_peer::PeerBody>,
    tower_upstream::http_peer::Error,
>;

fn client() -> Client {
    HttpClient::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_millis(300))
        .build()
}

fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A backend that accepts connections and never answers.
async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// Records when each peer is called (every attempt, failed or not).
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<(&'static str, Instant)>>>);

impl Attempts {
    fn peer(&self, name: &'static str, addr: SocketAddr, client: &Client) -> Peer<Counted> {
        let log = self.clone();
        let svc = tower::ServiceBuilder::new()
            .map_request(move |req: Request<ReplayBody<Incoming>>| {
                log.0.lock().unwrap().push((name, Instant::now()));
                req
            })
            .service(client.peer(&addr.to_string()).unwrap());
        Peer::new(name, Counted::new(svc))
    }

    fn of(&self, name: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.0 == name)
            .map(|a| a.1)
            .collect()
    }
}

#[tokio::test]
async fn refused_silent_and_502_peers_are_passed_over() {
    let good = spawn_backend("good").await;
    let bad502 = Killable::spawn(|_| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"bad gateway")));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        Ok(res)
    })
    .await;
    let client = client();
    let attempts = Attempts::default();
    let upstream = Upstream::builder()
        .peer(attempts.peer("refused", closed_port(), &client))
        .peer(attempts.peer("silent", silent_backend().await, &client))
        .peer(attempts.peer("bad502", bad502.addr, &client))
        .peer(attempts.peer("good", good.addr, &client))
        .next_upstream(NextUpstream::parse("error timeout http_502").unwrap())
        .build()
        .unwrap();
    let gateway = serve(upstream.clone()).await;
    for _ in 0..20 {
        let (status, backend, _) = support::get(gateway, "/").await;
        assert_eq!((status, backend.as_str()), (200, "good"));
    }
    // Each bad peer was tried once, then left alone for fail_timeout (10 s).
    for name in ["refused", "silent", "bad502"] {
        assert_eq!(attempts.of(name).len(), 1, "{name}");
        assert_eq!(upstream.peer(name).unwrap().fails(), 1, "{name}");
    }
    assert_eq!(good.requests(), 20);
}

#[tokio::test]
async fn unlisted_502_is_passed_to_the_client() {
    let bad502 = Killable::spawn(|_| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"from the peer")));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        Ok(res)
    })
    .await;
    let good = spawn_backend("good").await;
    let upstream = Upstream::builder()
        .peer(Peer::new(
            "bad502",
            HttpPeer::new(&bad502.addr.to_string()).unwrap(),
        ))
        .peer(Peer::new(
            "good",
            HttpPeer::new(&good.addr.to_string()).unwrap(),
        ))
        .build()
        .unwrap();
    let gateway = serve(upstream).await;
    let (status, _, body) = support::get(gateway, "/").await;
    assert_eq!((status, body.as_str()), (502, "from the peer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_peer_under_load_loses_no_get() {
    let fail_timeout = Duration::from_millis(400);
    let served = Arc::new(AtomicUsize::new(0));
    let backends = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let served = served.clone();
            v.push(
                Killable::spawn(move |_| {
                    served.fetch_add(1, Ordering::Relaxed);
                    async { Ok(Response::new(Full::new(Bytes::from_static(b"ok")))) }
                })
                .await,
            );
        }
        v
    };
    let client = client();
    let attempts = Attempts::default();
    let names = ["p0", "p1", "victim"];
    let upstream = Upstream::builder()
        .peers(
            backends
                .iter()
                .zip(names)
                .map(|(b, n)| attempts.peer(n, b.addr, &client).fail_timeout(fail_timeout)),
        )
        .build()
        .unwrap();
    let gateway = serve(upstream).await;

    // 5,000 GETs over 50 concurrent keep-alive connections; the victim dies after 1,000.
    let sent = Arc::new(AtomicUsize::new(0));
    let killed_at = Arc::new(Mutex::new(None));
    let mut clients = JoinSet::new();
    for _ in 0..50 {
        let (sent, killed_at) = (sent.clone(), killed_at.clone());
        let victim = backends[2].clone();
        clients.spawn(async move {
            let mut conn = Conn::open("127.0.0.1".parse().unwrap(), gateway).await;
            let mut failures = 0;
            for _ in 0..100 {
                if sent.fetch_add(1, Ordering::SeqCst) == 1_000 {
                    victim.kill();
                    *killed_at.lock().unwrap() = Some(Instant::now());
                }
                let (status, _, body) = conn.get("/item").await;
                if status != 200 || body != "ok" {
                    failures += 1;
                }
            }
            failures
        });
    }
    let mut failures = 0;
    while let Some(r) = clients.join_next().await {
        failures += r.unwrap();
    }
    let killed_at = killed_at.lock().unwrap().expect("the victim was killed");
    assert_eq!(failures, 0, "every GET moved on to a live peer");
    assert_eq!(
        served.load(Ordering::Relaxed),
        5_000,
        "each GET served exactly once"
    );

    // After the kill, the victim is tried in bursts: the requests in flight or picked before
    // the first failure was recorded, then one probe per fail_timeout.
    let after: Vec<_> = attempts
        .of("victim")
        .into_iter()
        .filter(|t| *t > killed_at)
        .collect();
    assert!(!after.is_empty(), "the victim was tried after its death");
    let first = after[0];
    eprintln!(
        "victim: {} attempts before the kill, {} after ({} after the first failure burst)",
        attempts.of("victim").len() - after.len(),
        after.len(),
        after
            .iter()
            .filter(|t| t.duration_since(first) > Duration::from_millis(100))
            .count()
    );
    let probes: Vec<_> = after
        .iter()
        .filter(|t| t.duration_since(first) > Duration::from_millis(100))
        .collect();
    for pair in probes.windows(2) {
        let gap = pair[1].duration_since(*pair[0]);
        assert!(
            gap >= fail_timeout - Duration::from_millis(20),
            "probes {gap:?} apart"
        );
    }
    if let Some(p) = probes.first() {
        assert!(p.duration_since(first) >= fail_timeout - Duration::from_millis(20));
    }
    drop(backends);
}

#[tokio::test]
async fn post_that_reached_a_dying_peer_is_not_sent_twice() {
    for non_idempotent in [false, true] {
        let received: Arc<Mutex<Vec<(&str, Bytes)>>> = Arc::default();
        let dying = {
            let received = received.clone();
            Killable::spawn(move |req: Request<Incoming>| {
                let received = received.clone();
                async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    received.lock().unwrap().push(("dying", body));
                    // Dies after reading the whole request: hyper closes the connection
                    // without a response.
                    Err(std::io::Error::other("killed"))
                }
            })
            .await
        };
        let healthy = {
            let received = received.clone();
            Killable::spawn(move |req: Request<Incoming>| {
                let received = received.clone();
                async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    received.lock().unwrap().push(("healthy", body));
                    Ok(Response::new(Full::new(Bytes::from_static(b"stored"))))
                }
            })
            .await
        };
        let mut next = NextUpstream::new();
        if non_idempotent {
            next = NextUpstream::parse("error timeout non_idempotent").unwrap();
        }
        let upstream = Upstream::builder()
            .peer(Peer::new(
                "dying",
                HttpPeer::new(&dying.addr.to_string()).unwrap(),
            ))
            .peer(Peer::new(
                "healthy",
                HttpPeer::new(&healthy.addr.to_string()).unwrap(),
            ))
            .next_upstream(next)
            .build()
            .unwrap();
        let gateway = serve(upstream).await;

        let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::post("/orders")
            .header("host", "gateway.test")
            .body(Full::new(Bytes::from(payload.clone())))
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let received = received.lock().unwrap().clone();
        if non_idempotent {
            assert_eq!(res.status(), 200);
            assert_eq!(received.len(), 2);
            assert_eq!(received[1].0, "healthy");
            assert_eq!(received[1].1, payload, "replayed byte for byte");
        } else {
            assert_eq!(res.status(), 502);
            assert_eq!(received.len(), 1, "the POST reached one backend, once");
        }
        assert_eq!((received[0].0, &received[0].1[..]), ("dying", &payload[..]));
    }
}

/// A request extension that counts its copies.
#[derive(Default)]
struct Copies(Arc<AtomicUsize>);

impl Clone for Copies {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(&self.0))
    }
}

#[tokio::test]
async fn a_failed_attempt_gives_the_head_back_for_the_next() {
    // Echoes the request's `x-id` and body.
    let echo = Killable::spawn(|req: Request<Incoming>| async move {
        let id = req.headers().get("x-id").cloned();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut res = Response::new(Full::new(body));
        if let Some(id) = id {
            res.headers_mut().insert("x-id", id);
        }
        Ok(res)
    })
    .await;
    let silent = silent_backend().await;
    // With `error timeout` nothing is copied: each failed attempt's error gives the head
    // back. With a status listed, a response could be passed over, and a response cannot
    // give the head back: the two attempts another may follow get copies.
    for (next, copies) in [("error timeout", 0), ("error timeout http_502", 2)] {
        let client: HttpClient<ReplayBody<Full<Bytes>>> = HttpClient::builder()
            .read_timeout(Duration::from_millis(200))
            .build();
        let peer =
            |name, addr: SocketAddr| Peer::new(name, client.peer(&addr.to_string()).unwrap());
        // Smooth round-robin takes them in this order: refused, then silent, then echo.
        let upstream = Upstream::builder()
            .peer(peer("refused", closed_port()))
            .peer(peer("silent", silent))
            .peer(peer("echo", echo.addr))
            .next_upstream(NextUpstream::parse(next).unwrap())
            .build()
            .unwrap();
        let counted = Copies::default();
        let mut req = Request::put("/cart")
            .header("x-id", "7")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        req.extensions_mut().insert(Copies(Arc::clone(&counted.0)));
        let res = tower::ServiceExt::oneshot(upstream.clone(), req)
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{next}");
        assert_eq!(res.headers()["x-id"], "7", "{next}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello", "{next}");
        assert_eq!(counted.0.load(Ordering::SeqCst), copies, "{next}");
        for name in ["refused", "silent"] {
            assert_eq!(upstream.peer(name).unwrap().fails(), 1, "{next}: {name}");
        }
    }
}
