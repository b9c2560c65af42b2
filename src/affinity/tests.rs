//! Affinity through an `Upstream`, with scripted peers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{Request, Response, StatusCode};
use tower::{service_fn, BoxError, ServiceExt};

use super::*;
use crate::upstream::ReplayBody;
use crate::{Peer, PeerStatus, SelectedPeer, Upstream};

type Svc =
    tower::util::BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

/// Cookie headers each peer received, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Option<String>)>>>);

fn peer(route: &'static str, refuse: bool, seen: &Seen) -> Peer<Svc> {
    let seen = seen.clone();
    let svc = service_fn(move |req: Request<ReplayBody<String>>| {
        let cookie = req
            .headers()
            .get(COOKIE)
            .map(|v| v.to_str().unwrap().to_owned());
        seen.0.lock().unwrap().push((route.to_owned(), cookie));
        async move {
            if refuse {
                let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                return Err::<Response<String>, BoxError>(e.into());
            }
            Ok(Response::new(route.to_owned()))
        }
    });
    Peer::new(format!("{route}:8080"), Svc::new(svc)).route(route)
}

fn cluster(seen: &Seen, affinity: impl Into<Affinity>) -> Upstream<Svc> {
    Upstream::builder()
        .peers(["tomcat1", "tomcat2", "tomcat3"].map(|r| peer(r, false, seen)))
        .affinity(affinity)
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    route: Option<String>,
    decision: Option<AffinityDecision>,
    set_cookie: Option<String>,
    cache_control: Option<String>,
}

async fn send(u: &Upstream<Svc>, path: &str, cookie: Option<&str>) -> Answer {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let res = u
        .clone()
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    Answer {
        status: res.status(),
        route: res
            .extensions()
            .get::<SelectedPeer>()
            .map(|p| p.route().to_owned()),
        decision: res.extensions().get::<AffinityDecision>().cloned(),
        set_cookie: header(SET_COOKIE),
        cache_control: header(CACHE_CONTROL),
    }
}

#[tokio::test]
async fn route_cookie_sticks_for_1000_requests() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::route("JSESSIONID"));
    for _ in 0..1000 {
        let a = send(&u, "/app/page", Some("JSESSIONID=8A3F.tomcat2")).await;
        assert_eq!(a.route.as_deref(), Some("tomcat2"));
        let d = a.decision.unwrap();
        assert_eq!(
            (d.source(), d.route(), d.is_fallback()),
            (AffinitySource::Cookie, Some("tomcat2"), false)
        );
    }
    // The id reached the peer unchanged.
    assert_eq!(
        seen.0.lock().unwrap()[0].1.as_deref(),
        Some("JSESSIONID=8A3F.tomcat2")
    );
}

#[tokio::test]
async fn route_in_url_and_cookie_wins() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::route("JSESSIONID"));
    for _ in 0..1000 {
        let a = send(&u, "/app/cart;jsessionid=77.tomcat3?x=1", None).await;
        assert_eq!(a.route.as_deref(), Some("tomcat3"));
        assert_eq!(a.decision.unwrap().source(), AffinitySource::Url);
    }
    let both = send(
        &u,
        "/app;jsessionid=77.tomcat3",
        Some("JSESSIONID=8A3F.tomcat1"),
    )
    .await;
    assert_eq!(
        both.route.as_deref(),
        Some("tomcat1"),
        "cookie first by default"
    );
    let url_first = cluster(
        &seen,
        Affinity::route("JSESSIONID").order(RouteOrder::UrlFirst),
    );
    let a = send(
        &url_first,
        "/app;jsessionid=77.tomcat3",
        Some("JSESSIONID=8A3F.tomcat1"),
    )
    .await;
    assert_eq!(a.route.as_deref(), Some("tomcat3"));
}

#[tokio::test]
async fn first_known_route_among_several_cookies() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::route("JSESSIONID"));
    let a = send(&u, "/", Some("JSESSIONID=1.gone; JSESSIONID=2.tomcat3")).await;
    assert_eq!(a.route.as_deref(), Some("tomcat3"));
}

#[tokio::test]
async fn unknown_route_is_a_new_session() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::route("JSESSIONID"));
    let mut routes = Vec::new();
    for _ in 0..3 {
        let a = send(&u, "/", Some("JSESSIONID=1.tomcat9")).await;
        assert_eq!(a.decision.unwrap().source(), AffinitySource::None);
        routes.push(a.route.unwrap());
    }
    assert_eq!(routes, ["tomcat1", "tomcat2", "tomcat3"], "round-robin");
}

#[tokio::test]
async fn dead_owner_moves_each_session_to_one_survivor() {
    let seen = Seen::default();
    let u = Upstream::builder()
        .peer(peer("tomcat1", false, &seen))
        .peer(peer("tomcat2", true, &seen)) // refuses connections: dead
        .peer(peer("tomcat3", false, &seen))
        .peer(peer("tomcat4", false, &seen))
        .affinity(Affinity::route("JSESSIONID"))
        .build()
        .unwrap();
    let mut survivors = HashSet::new();
    for s in 0..40 {
        let cookie = format!("JSESSIONID=S{s}.tomcat2");
        let first = send(&u, "/", Some(&cookie)).await;
        assert_eq!(first.status, 200, "the GET moved on");
        let owner = first.route.clone().unwrap();
        assert_ne!(owner, "tomcat2");
        assert!(first.decision.as_ref().unwrap().is_fallback());
        for _ in 0..25 {
            let a = send(&u, "/", Some(&cookie)).await;
            assert_eq!(
                a.route.as_ref(),
                Some(&owner),
                "session {s} stays on one survivor"
            );
        }
        survivors.insert(owner);
    }
    assert_eq!(
        survivors.len(),
        3,
        "different sessions spread over the survivors"
    );
    // The dead peer was tried once, then left alone for fail_timeout.
    let tries = seen
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.0 == "tomcat2")
        .count();
    assert_eq!(tries, 1);
}

#[tokio::test]
async fn draining_keeps_sessions_but_takes_no_new_ones() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::route("JSESSIONID"));
    let draining = "tomcat2";
    u.peer("tomcat2:8080")
        .unwrap()
        .set_status(PeerStatus::Draining);
    for _ in 0..20 {
        let a = send(&u, "/", None).await;
        assert_ne!(
            a.route.as_deref(),
            Some(draining),
            "no new session on a draining peer"
        );
    }
    let cookie = format!("JSESSIONID=OLD.{draining}");
    for _ in 0..20 {
        let a = send(&u, "/", Some(&cookie)).await;
        assert_eq!(a.route.as_deref(), Some(draining), "existing sessions stay");
    }
}

#[tokio::test]
async fn strict_answers_503_and_backup_names_a_peer() {
    let seen = Seen::default();
    let strict = Upstream::builder()
        .peers(["tomcat1", "tomcat2"].map(|r| peer(r, false, &seen)))
        .affinity(Affinity::route("JSESSIONID"))
        .affinity_fallback(Fallback::Strict)
        .build()
        .unwrap();
    strict.primary().get(0).unwrap().set_down(true);
    let a = send(&strict, "/", Some("JSESSIONID=X.tomcat1")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.decision.unwrap().is_fallback());

    let redirect = Upstream::builder()
        .peers(["tomcat1", "tomcat2", "tomcat3"].map(|r| peer(r, false, &seen)))
        .affinity(Affinity::route("JSESSIONID"))
        .affinity_fallback(Fallback::Backup("tomcat3".into()))
        .build()
        .unwrap();
    redirect.primary().get(0).unwrap().set_down(true);
    for _ in 0..5 {
        let a = send(&redirect, "/", Some("JSESSIONID=X.tomcat1")).await;
        assert_eq!(a.route.as_deref(), Some("tomcat3"));
    }
}

const SECRET: &[u8] = b"a shared secret of 32 bytes.....";

fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn inserted_cookie_pins_and_is_hidden_from_peers() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::cookie("SERVERID", SECRET));
    let first = send(&u, "/", Some("theme=dark")).await;
    let set = first.set_cookie.expect("a new client gets a cookie");
    assert_eq!(first.cache_control.as_deref(), Some("private"));
    let pinned = first.route.unwrap();
    let cookie = format!("theme=dark; {}", cookie_of(&set));
    for _ in 0..1000 {
        let a = send(&u, "/", Some(&cookie)).await;
        assert_eq!(a.route.as_ref(), Some(&pinned));
        assert_eq!(
            a.set_cookie, None,
            "set only when missing or pointing elsewhere"
        );
        assert_eq!(a.cache_control, None);
    }
    // indirect: the peers never saw SERVERID, but did see the app's own cookie.
    for (_, c) in seen.0.lock().unwrap().iter() {
        assert_eq!(c.as_deref(), Some("theme=dark"));
    }
}

#[tokio::test]
async fn forged_cookie_does_not_choose_the_peer() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::cookie("SERVERID", SECRET));
    let first = send(&u, "/", None).await;
    let value = cookie_of(&first.set_cookie.unwrap());
    let pinned = first.route.unwrap();
    let other = ["tomcat1", "tomcat2", "tomcat3"]
        .into_iter()
        .find(|r| *r != pinned)
        .unwrap();
    let forged = value.replacen(&pinned, other, 1);
    let mut chosen = HashSet::new();
    for _ in 0..6 {
        let a = send(&u, "/", Some(&forged)).await;
        assert_eq!(a.decision.unwrap().source(), AffinitySource::None);
        assert!(
            a.set_cookie.is_some(),
            "a fresh, valid cookie replaces the forged one"
        );
        chosen.insert(a.route.unwrap());
    }
    assert_eq!(
        chosen.len(),
        3,
        "balanced like a new client, not sent to {other}"
    );
}

#[tokio::test]
async fn inserted_cookie_moves_to_a_survivor_and_is_reissued() {
    let seen = Seen::default();
    let u = cluster(&seen, Affinity::cookie("SERVERID", SECRET));
    let first = send(&u, "/", None).await;
    let cookie = cookie_of(&first.set_cookie.unwrap());
    let owner = first.route.unwrap();
    u.primary()
        .iter()
        .find(|p| p.route() == owner)
        .unwrap()
        .set_down(true);
    let moved = send(&u, "/", Some(&cookie)).await;
    let survivor = moved.route.unwrap();
    assert_ne!(survivor, owner);
    assert!(moved.decision.unwrap().is_fallback());
    let reissued = cookie_of(&moved.set_cookie.expect("re-pinned to the survivor"));
    assert!(
        reissued.starts_with(&format!("SERVERID={survivor}.")),
        "{reissued}"
    );
    let nonce = |c: &str| c.split('.').nth(1).unwrap().to_owned();
    assert_eq!(nonce(&reissued), nonce(&cookie), "same session key");
    for _ in 0..10 {
        let a = send(&u, "/", Some(&reissued)).await;
        assert_eq!(a.route.as_ref(), Some(&survivor));
        assert_eq!(a.set_cookie, None);
    }
}

#[test]
fn config_errors() {
    let seen = Seen::default();
    let dup = Upstream::builder()
        .peer(peer("tomcat1", false, &seen))
        .peer(Peer::new("other", peer("x", false, &seen).service().clone()).route("tomcat1"))
        .affinity(Affinity::route("JSESSIONID"))
        .build()
        .unwrap_err();
    assert_eq!(dup.to_string(), "two peers have the route `tomcat1`");
    let unknown = Upstream::builder()
        .peer(peer("tomcat1", false, &seen))
        .affinity(Affinity::route("JSESSIONID"))
        .affinity_fallback(Fallback::Backup("nope".into()))
        .build()
        .unwrap_err();
    assert_eq!(unknown.to_string(), "no peer has the route `nope`");
    let bad_route = Upstream::builder()
        .peer(Peer::new(
            "127.0.0.1:1",
            peer("x", false, &seen).service().clone(),
        ))
        .affinity(Affinity::cookie("SERVERID", SECRET))
        .build()
        .unwrap_err();
    assert!(
        bad_route.to_string().contains("set one with Peer::route"),
        "{bad_route}"
    );
    let short = Upstream::builder()
        .peer(peer("tomcat1", false, &seen))
        .affinity(Affinity::cookie("SERVERID", &b"short"[..]))
        .build()
        .unwrap_err();
    assert!(short.to_string().contains("at least 16 bytes"), "{short}");
}
