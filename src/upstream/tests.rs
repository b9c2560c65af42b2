use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, BoxError, ServiceExt};

use super::*;
use crate::policy::{IpHash, LeastConn};
use crate::Peer;

type Svc =
    tower::util::BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

fn ok(name: &'static str) -> Svc {
    Svc::new(service_fn(
        move |_: Request<ReplayBody<String>>| async move {
            Ok::<_, BoxError>(Response::new(name.to_owned()))
        },
    ))
}

fn timing_out() -> Svc {
    Svc::new(service_fn(|_: Request<ReplayBody<String>>| async {
        Err::<Response<String>, BoxError>(tower::timeout::error::Elapsed::new().into())
    }))
}

async fn send<P>(u: &Upstream<Svc, P>) -> (StatusCode, Option<String>)
where
    P: Policy<Request<String>>,
{
    send_req(u, Request::new(String::new())).await
}

async fn send_req<P>(u: &Upstream<Svc, P>, req: Request<String>) -> (StatusCode, Option<String>)
where
    P: Policy<Request<String>>,
{
    let res = u.clone().oneshot(req).await.unwrap();
    let peer = res
        .extensions()
        .get::<SelectedPeer>()
        .map(|p| p.name().to_owned());
    (res.status(), peer)
}

#[tokio::test]
async fn clones_share_the_cursor() {
    let u = Upstream::builder()
        .peer(Peer::new("a", ok("a")))
        .peer(Peer::new("b", ok("b")))
        .build()
        .unwrap();
    // Each request on a fresh clone, as TowerToHyperService does.
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(send(&u.clone()).await.1.unwrap());
    }
    assert_eq!(names, ["a", "b", "a", "b"]);
}

#[tokio::test]
async fn timeout_is_504() {
    let u = Upstream::builder()
        .peer(Peer::new("slow", timing_out()))
        .build()
        .unwrap();
    assert_eq!(send(&u).await.0, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn backup_only_when_primaries_unavailable() {
    let u = Upstream::builder()
        .peer(Peer::new("a", ok("a")))
        .peer(Peer::new("b", ok("b")).down())
        .peer(Peer::new("spare", ok("spare")).backup())
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(send(&u).await.1.as_deref(), Some("a"));
    }
    u.peer("a").unwrap().set_down(true);
    let res = u
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    let selected = res.extensions().get::<SelectedPeer>().unwrap();
    assert_eq!((selected.name(), selected.is_backup()), ("spare", true));
    u.peer("spare").unwrap().set_down(true);
    let res = u
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(res.extensions().get::<SelectedPeer>().is_none());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"502 Bad Gateway\n");
}

#[tokio::test]
async fn unavailable_status_is_configurable() {
    let u = Upstream::builder()
        .peer(Peer::new("a", ok("a")).down())
        .unavailable_status(StatusCode::SERVICE_UNAVAILABLE)
        .build()
        .unwrap();
    assert_eq!(send(&u).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn config_errors() {
    let err = |b: Builder<Svc>| b.build().unwrap_err().to_string();
    assert_eq!(
        err(Upstream::builder().name("t")),
        "upstream `t` has no primary peers"
    );
    assert_eq!(
        err(Upstream::builder()
            .name("t")
            .peer(Peer::new("x", ok("x")).backup())),
        "upstream `t` has no primary peers"
    );
    assert_eq!(
        err(Upstream::builder().peer(Peer::new("x", ok("x")).weight(0))),
        "peer `x` has weight 0; it must be between 1 and 65535"
    );
    assert_eq!(
        err(Upstream::builder()
            .name("t")
            .peer(Peer::new("x", ok("x")))
            .peer(Peer::new("x", ok("y")))),
        "upstream `t` has two peers named `x`"
    );
    assert_eq!(
        err(Upstream::builder()
            .peer(Peer::new("x", ok("x")))
            .unavailable_status(StatusCode::OK)),
        "status 200 is not a 5xx status"
    );
}

#[tokio::test]
async fn ip_hash_sticks_across_clones() {
    let u = Upstream::builder()
        .peers(["a", "b", "c"].map(|n| Peer::new(n, ok(n))))
        .policy(IpHash::new())
        .build()
        .unwrap();
    for (client, want) in [
        ("10.1.2.3:1", "b"),
        ("127.0.0.1:2", "c"),
        ("192.0.2.1:3", "a"),
    ] {
        for _ in 0..5 {
            let mut req = Request::new(String::new());
            req.extensions_mut()
                .insert(client.parse::<SocketAddr>().unwrap());
            assert_eq!(
                send_req(&u.clone(), req).await.1.as_deref(),
                Some(want),
                "{client}"
            );
        }
    }
}

#[tokio::test]
async fn active_count_lasts_until_the_body_is_done() {
    let u = Upstream::builder()
        .peer(Peer::new("a", ok("a")))
        .peer(Peer::new("b", ok("b")))
        .policy(LeastConn::new())
        .build()
        .unwrap();
    let first = u
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(u.peer("a").unwrap().active(), 1);
    // "a" still has a body in flight, so least_conn picks "b".
    assert_eq!(send(&u).await.1.as_deref(), Some("b"));
    drop(first);
    assert_eq!(u.peer("a").unwrap().active(), 0);
    assert_eq!(u.peer("b").unwrap().active(), 0);
}

#[test]
fn service_is_clone_send_sync_static() {
    fn assert<T: Clone + Send + Sync + 'static>(_: &T) {}
    let u = Upstream::builder()
        .peer(Peer::new("a", ok("a")))
        .build()
        .unwrap();
    assert(&u);
    fn infallible<T: tower::Service<Request<String>, Error = Infallible>>(_: &T) {}
    infallible(&u);
}

#[tokio::test]
async fn membership_changes_keep_the_others_state() {
    let u = Upstream::builder()
        .peer(Peer::new("a", ok("a")))
        .peer(Peer::new("b", ok("b")))
        .build()
        .unwrap();
    let before = u.peer("a").unwrap();
    before.set_status(crate::PeerStatus::Draining);
    assert_eq!(send(&u).await.1.as_deref(), Some("b"));
    u.add_peer(Peer::new("c", ok("c")).weight(2)).unwrap();
    assert!(
        Arc::ptr_eq(&before, &u.peer("a").unwrap()),
        "a kept its state"
    );
    assert_eq!(u.peer("a").unwrap().status(), crate::PeerStatus::Draining);
    assert_eq!(u.peer("b").unwrap().active(), 0);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(send(&u).await.1.unwrap());
    }
    assert_eq!(seen.iter().filter(|n| *n == "c").count(), 4, "{seen:?}");
    assert_eq!(seen.iter().filter(|n| *n == "b").count(), 2, "{seen:?}");
    u.set_weight("c", 1).unwrap();
    u.set_status("a", crate::PeerStatus::Active).unwrap();
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(send(&u).await.1.unwrap());
    }
    for name in ["a", "b", "c"] {
        assert_eq!(
            seen.iter().filter(|n| *n == name).count(),
            10,
            "{name}: {seen:?}"
        );
    }
    u.remove_peer("b").unwrap();
    assert!(u.peer("b").is_none());
    assert_eq!(u.peer_names(), ["a", "c"]);
    assert_eq!(
        u.remove_peer("nope").unwrap_err().to_string(),
        "no peer is named `nope`"
    );
    assert!(u.set_weight("a", 0).is_err(), "invalid weights are refused");
    assert_eq!(
        u.peer_names(),
        ["a", "c"],
        "a refused change changes nothing"
    );
}

#[tokio::test]
async fn removed_peer_finishes_its_request() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let slow = Svc::new(service_fn(move |_: Request<ReplayBody<String>>| {
        let rx = rx.clone();
        async move {
            if let Some(rx) = rx.lock().await.take() {
                let _ = rx.await;
            }
            Ok::<_, BoxError>(Response::new("slow".to_owned()))
        }
    }));
    let u = Upstream::builder()
        .peer(Peer::new("slow", slow))
        .peer(Peer::new("other", ok("other")))
        .build()
        .unwrap();
    let in_flight = tokio::spawn(u.clone().oneshot(Request::new(String::new())));
    tokio::task::yield_now().await;
    u.remove_peer("slow").unwrap();
    assert_eq!(send(&u).await.1.as_deref(), Some("other"));
    tx.send(()).unwrap();
    let res = in_flight.await.unwrap().unwrap();
    assert_eq!(
        res.extensions().get::<SelectedPeer>().unwrap().name(),
        "slow"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow");
}

/// A `Discover` fed by a channel, as a registry watcher would be.
struct Changes(tokio::sync::mpsc::UnboundedReceiver<tower::discover::Change<String, Svc>>);

impl futures_core::Stream for Changes {
    type Item = Result<tower::discover::Change<String, Svc>, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(Ok))
    }
}

#[tokio::test]
async fn discover_stream_drives_membership() {
    use tower::discover::Change;
    let u = Upstream::builder()
        .peer(Peer::new("seed", ok("seed")))
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn({
        let u = u.clone();
        async move { u.discover(Changes(rx), Peer::new).await }
    });
    tx.send(Change::Insert("x".into(), ok("x"))).unwrap();
    tx.send(Change::Insert("y".into(), ok("y"))).unwrap();
    tx.send(Change::Remove("seed".into())).unwrap();
    tx.send(Change::Remove("unknown".into())).unwrap(); // refused, logged, not fatal
    drop(tx);
    driver.await.unwrap().unwrap();
    assert_eq!(u.peer_names(), ["x", "y"]);
    let mut seen: Vec<_> = Vec::new();
    for _ in 0..4 {
        seen.push(send(&u).await.1.unwrap());
    }
    assert_eq!(seen, ["x", "y", "x", "y"]);
}

#[tokio::test(start_paused = true)]
async fn resolve_keeps_one_peer_per_address() {
    let u = Upstream::builder()
        .peer(Peer::new("static", ok("static")))
        .build()
        .unwrap();
    let resolver = tokio::spawn({
        let u = u.clone();
        async move {
            u.resolve("127.0.0.1:18080".into(), Duration::from_secs(5), |addr| {
                Peer::new(addr.to_string(), ok("resolved"))
            })
            .await
        }
    });
    // The first lookup happens at once; give it a moment (loopback literal: no DNS).
    for _ in 0..100 {
        if u.peer_names().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(u.peer_names(), ["static", "127.0.0.1:18080"]);
    resolver.abort();
}

#[test]
fn max_conns_holds_across_threads() {
    // Requests on several threads at once: no peer ever serves more than its `max_conns`.
    const MAX: usize = 2;
    let in_flight: Arc<Vec<std::sync::atomic::AtomicUsize>> =
        Arc::new((0..3).map(|_| Default::default()).collect());
    let most: Arc<Vec<std::sync::atomic::AtomicUsize>> =
        Arc::new((0..3).map(|_| Default::default()).collect());
    let peer = |i: usize| {
        let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
        let svc = Svc::new(service_fn(move |_: Request<ReplayBody<String>>| {
            let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = in_flight[i].fetch_add(1, SeqCst) + 1;
                most[i].fetch_max(now, SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                in_flight[i].fetch_sub(1, SeqCst);
                Ok::<_, BoxError>(Response::new(String::new()))
            }
        }));
        Peer::new(format!("p{i}"), svc).max_conns(MAX as u32)
    };
    let u = Upstream::builder().peers((0..3).map(peer)).build().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let u = u.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let clients = (0..4).map(|_| {
                        let u = u.clone();
                        async move {
                            for _ in 0..2_000 {
                                let res = u.clone().oneshot(Request::new(String::new())).await;
                                // All peers full: the upstream's own 502, as nginx answers.
                                drop(res.unwrap().into_body().collect().await);
                            }
                        }
                    });
                    futures_util::future::join_all(clients).await;
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (i, m) in most.iter().enumerate() {
        let m = m.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            m <= MAX,
            "peer p{i} served {m} requests at once, max_conns {MAX}"
        );
    }
}
