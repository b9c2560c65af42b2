//! The `Upstream` served by a real hyper server in front of real hyper backends, all on
//! loopback: weighted distribution and ip_hash stickiness across many connections.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use tokio::time::Instant;
use tower_upstream::policy::{BuildIndex, Candidates, IpHash, IpHashKey, Policy};
use tower_upstream::{HttpPeer, Peer, Tried, Upstream};

use support::{serve, spawn_backend, Conn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_distribution_is_exact_across_connections() {
    let (a, b, c) = (
        spawn_backend("a").await,
        spawn_backend("b").await,
        spawn_backend("c").await,
    );
    let upstream = Upstream::builder()
        .peer(Peer::new("a", HttpPeer::new(&a.addr.to_string()).unwrap()).weight(5))
        .peer(Peer::new("b", HttpPeer::new(&b.addr.to_string()).unwrap()).weight(2))
        .peer(Peer::new("c", HttpPeer::new(&c.addr.to_string()).unwrap()))
        .build()
        .unwrap();
    let gateway = serve(upstream).await;

    // 50 concurrent client connections, 16 keep-alive requests each: 800 = 100 cycles of 8.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(Ipv4Addr::LOCALHOST.into(), gateway).await;
            let mut seen = Vec::new();
            for _ in 0..16 {
                let (status, backend, body) = conn.get("/").await;
                assert_eq!(status, 200);
                assert_eq!(backend, body);
                seen.push(backend);
            }
            seen
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for name in t.await.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    // Every pick is one step of the same smooth sequence, whatever the interleaving, so a
    // whole number of cycles gives the weights exactly.
    assert_eq!(counts["a"], 500);
    assert_eq!(counts["b"], 200);
    assert_eq!(counts["c"], 100);
    assert_eq!((a.requests(), b.requests(), c.requests()), (500, 200, 100));
    // Keep-alive to the peers: far fewer upstream connections than requests.
    assert!(a.connections.load(std::sync::atomic::Ordering::SeqCst) <= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_sticks_per_client_network() {
    let backends = [
        spawn_backend("a").await,
        spawn_backend("b").await,
        spawn_backend("c").await,
    ];
    let names = ["a", "b", "c"];
    let upstream = Upstream::builder()
        .peers(
            backends
                .iter()
                .zip(names)
                .map(|(b, n)| Peer::new(n, HttpPeer::new(&b.addr.to_string()).unwrap())),
        )
        .policy(IpHash::new())
        .build()
        .unwrap();
    let gateway = serve(upstream.clone()).await;

    // 60 client networks (127.0.N.1), each with 4 connections of 3 requests.
    let mut seen_backends = HashMap::new();
    for n in 1..=60u8 {
        let client = Ipv4Addr::new(127, 0, n, 1);
        // The peer nginx's ip_hash picks for this client, computed by the policy alone.
        let tried = Tried::new();
        let policy = IpHash::new();
        let primary = upstream.primary();
        let ranges = policy.build_index(&primary);
        let mut key = IpHashKey::new(Some(IpAddr::V4(client)));
        let candidates = Candidates::new(&primary, &tried, Instant::now());
        let want =
            Policy::<http::Request<()>>::pick(&policy, &candidates, &ranges, &mut key).unwrap();
        for _ in 0..4 {
            let mut conn = Conn::open(client.into(), gateway).await;
            for _ in 0..3 {
                let (status, backend, _) = conn.get("/session").await;
                assert_eq!(status, 200);
                assert_eq!(backend, names[want], "client {client}");
            }
        }
        *seen_backends.entry(names[want]).or_insert(0) += 1;
    }
    assert_eq!(
        seen_backends.len(),
        3,
        "clients spread over all peers: {seen_backends:?}"
    );
    let total: usize = backends.iter().map(|b| b.requests()).sum();
    assert_eq!(total, 60 * 4 * 3);
}

#[tokio::test]
async fn dead_peer_fails_over_and_is_skipped() {
    let live = spawn_backend("live").await;
    // A port with nothing listening: bind, note it, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let upstream = Upstream::builder()
        .peer(Peer::new("dead", HttpPeer::new(&dead.to_string()).unwrap()))
        .peer(Peer::new(
            "live",
            HttpPeer::new(&live.addr.to_string()).unwrap(),
        ))
        .build()
        .unwrap();
    let gateway = serve(upstream.clone()).await;
    // The first request tries "dead", is refused, and moves on (proxy_next_upstream error).
    for _ in 0..10 {
        let (status, backend, _) = support::get(gateway, "/").await;
        assert_eq!((status, backend.as_str()), (200, "live"));
    }
    assert_eq!(upstream.peer("dead").unwrap().fails(), 1);
}
