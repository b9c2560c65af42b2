//! Tomcat session routes: `JSESSIONID` cookies and the `;jsessionid=` path parameter, read
//! by an `Upstream` with `Affinity::route`.
//!
//! The input is lines: the request target, then `Cookie` header values. Checked:
//!
//! - no panic, and every request is answered by a peer;
//! - the decision (source, route) equals a plain reading of the spec: the first `JSESSIONID`
//!   cookie (in header order, then pair order) whose id has a known route after its first
//!   `.`, else the first `;jsessionid=` parameter of the path if its route is known, else
//!   none; the peer that answered is the one with that route;
//! - the session id reaches the peer unchanged (the `Cookie` lines are the client's);
//! - whatever else the request carries, a valid cookie sent first decides;
//! - with the pinned peer down, the session falls back to one survivor, the same one for
//!   every request of the session.
#![no_main]

use std::sync::{LazyLock, Mutex};

use http::header::{HeaderValue, COOKIE};
use http::{Request, Response};
use libfuzzer_sys::fuzz_target;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, BoxError, ServiceExt};
use tower_upstream::affinity::{Affinity, AffinityDecision, AffinitySource};
use tower_upstream::upstream::ReplayBody;
use tower_upstream::{Peer, PeerStatus, SelectedPeer, Upstream};

mod common;

type Svc = BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

const ROUTES: [&str; 3] = ["tomcat1", "tomcat2", "node.3"];

/// The `Cookie` lines the last peer call received.
static SEEN: LazyLock<Mutex<Vec<HeaderValue>>> = LazyLock::new(Mutex::default);

fn cluster() -> Upstream<Svc> {
    let peers = ROUTES.map(|route| {
        let svc = service_fn(move |req: Request<ReplayBody<String>>| {
            *SEEN.lock().unwrap() = req.headers().get_all(COOKIE).iter().cloned().collect();
            std::future::ready(Ok::<_, BoxError>(Response::new(route.to_owned())))
        });
        Peer::new(format!("{route}:8080"), Svc::new(svc)).route(route)
    });
    Upstream::builder()
        .peers(peers)
        .affinity(Affinity::route("JSESSIONID"))
        .build()
        .unwrap()
}

static UP: LazyLock<Upstream<Svc>> = LazyLock::new(cluster);
/// The same cluster with `tomcat1` down.
static ONE_DOWN: LazyLock<Upstream<Svc>> = LazyLock::new(|| {
    let u = cluster();
    u.set_status("tomcat1:8080", PeerStatus::Down).unwrap();
    u
});

struct Answer {
    peer: String,
    decision: AffinityDecision,
    seen: Vec<HeaderValue>,
}

fn send(upstream: &Upstream<Svc>, target: &str, cookies: &[HeaderValue]) -> Answer {
    let mut req = Request::new(String::new());
    if let Ok(uri) = target.parse() {
        *req.uri_mut() = uri;
    }
    for c in cookies {
        req.headers_mut().append(COOKIE, c.clone());
    }
    let res = common::ready(upstream.clone().oneshot(req)).expect("peers never fail");
    assert_eq!(res.status(), 200);
    Answer {
        peer: res
            .extensions()
            .get::<SelectedPeer>()
            .unwrap()
            .route()
            .to_owned(),
        decision: res.extensions().get::<AffinityDecision>().unwrap().clone(),
        seen: std::mem::take(&mut *SEEN.lock().unwrap()),
    }
}

/// The spec, read plainly: the text after the first `.` of an id, if it names a peer.
fn known_route(id: &str) -> Option<&'static str> {
    let dot = id.find('.')?;
    ROUTES.into_iter().find(|r| *r == &id[dot + 1..])
}

fn expected(path: &str, cookies: &[HeaderValue]) -> Option<(AffinitySource, &'static str)> {
    for line in cookies {
        let Ok(line) = line.to_str() else { continue };
        for pair in line.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name == "JSESSIONID" {
                if let Some(r) = known_route(value.trim_matches('"')) {
                    return Some((AffinitySource::Cookie, r));
                }
            }
        }
    }
    let at = path.find(";jsessionid=")?;
    let value = &path[at + ";jsessionid=".len()..];
    let end = value.find([';', '?', '/', '#']).unwrap_or(value.len());
    known_route(&value[..end]).map(|r| (AffinitySource::Url, r))
}

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let (target, rest) = lines.split_first().expect("one line at least");
    let cookies: Vec<HeaderValue> = rest
        .iter()
        .filter_map(|l| HeaderValue::from_str(l).ok())
        .collect();
    let path = target
        .parse::<http::Uri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| "/".to_owned());

    let a = send(&UP, target, &cookies);
    let want = expected(&path, &cookies);
    let got = (a.decision.source(), a.decision.route());
    match want {
        Some((source, route)) => {
            assert_eq!(got, (source, Some(route)), "{target:?} {cookies:?}");
            assert_eq!(a.peer, route);
        }
        None => assert_eq!(got, (AffinitySource::None, None), "{target:?} {cookies:?}"),
    }
    assert!(!a.decision.is_fallback());
    assert_eq!(
        a.seen, cookies,
        "the peer gets the client's cookies as they were"
    );

    // A valid session cookie sent first decides, whatever follows.
    let mut first = vec![HeaderValue::from_static("JSESSIONID=ABC.tomcat2")];
    first.extend(cookies.iter().cloned());
    let a = send(&UP, target, &first);
    assert_eq!(a.peer, "tomcat2");
    assert_eq!(a.decision.source(), AffinitySource::Cookie);

    // Pinned to a peer that is down: one survivor for the session, every time.
    let a = send(&ONE_DOWN, target, &cookies);
    assert_ne!(a.peer, "tomcat1");
    if want.is_some_and(|(_, r)| r == "tomcat1") {
        assert!(a.decision.is_fallback());
        assert_eq!(a.decision.route(), Some("tomcat1"));
        let again = send(&ONE_DOWN, target, &cookies);
        assert_eq!(again.peer, a.peer, "the fallback is stable");
    }
});
