use std::convert::Infallible;
use std::net::SocketAddr;

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
