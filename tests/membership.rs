//! Membership changes under load lose no request: peers are removed, added back and
//! re-weighted continuously while 40 connections send GETs through the gateway.

mod support;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tower_upstream::{HttpPeer, Peer, Upstream};

use support::{serve, spawn_backend, Conn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_load_lose_no_request() {
    let backends = [
        spawn_backend("a").await,
        spawn_backend("b").await,
        spawn_backend("c").await,
    ];
    let peer = |i: usize, name: &str| {
        Peer::new(name, HttpPeer::new(&backends[i].addr.to_string()).unwrap())
    };
    let upstream = Upstream::builder()
        .peer(peer(0, "a"))
        .peer(peer(1, "b"))
        .build()
        .unwrap();
    let gateway = serve(upstream.clone()).await;

    let done = Arc::new(AtomicBool::new(false));
    let changer = tokio::spawn({
        let (upstream, done) = (upstream.clone(), done.clone());
        let c = peer(2, "c");
        let b = peer(1, "b");
        async move {
            let mut changes = 0;
            while !done.load(Ordering::Relaxed) {
                upstream.add_peer(c.clone()).unwrap();
                upstream.set_weight("a", 1 + changes % 3).unwrap();
                upstream.remove_peer("b").unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                upstream.add_peer(b.clone()).unwrap();
                upstream.remove_peer("c").unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                changes += 1;
            }
            changes
        }
    });

    let mut clients = JoinSet::new();
    for _ in 0..40 {
        clients.spawn(async move {
            let mut conn = Conn::open(Ipv4Addr::LOCALHOST.into(), gateway).await;
            let mut failed = 0;
            for _ in 0..50 {
                let (status, backend, body) = conn.get("/").await;
                if status != 200 || backend != body {
                    failed += 1;
                }
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(r) = clients.join_next().await {
        failed += r.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let changes = changer.await.unwrap();
    let served: usize = backends.iter().map(|b| b.requests()).sum();
    eprintln!("membership: {changes} rounds of 5 changes during 2,000 requests");
    assert!(changes > 5, "the peers changed while the load ran");
    assert_eq!(failed, 0);
    assert_eq!(served, 2_000, "every request served exactly once");
    assert!(backends[2].requests() > 0, "the added peer took requests");
}
