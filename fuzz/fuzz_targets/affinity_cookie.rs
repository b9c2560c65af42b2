//! Inserted-cookie verification: an `Upstream` with `Affinity::cookie` (HMAC-signed
//! `SERVERID=<route>.<nonce>.<tag>`), fed forged, edited and garbage cookies.
//!
//! The input is lines, each a `Cookie` header value. Checked:
//!
//! - no panic, and every request is answered;
//! - a pin is accepted exactly when the first `SERVERID` value that verifies under an
//!   independent oracle (HMAC-SHA256 over `route.nonce` with the secret, the 128 leftmost
//!   bits as 32 hex digits) names a peer: then that peer answers and no new cookie is set;
//!   otherwise the request is balanced and the response sets a cookie that the oracle
//!   verifies, for the peer that answered;
//! - the peer never sees a `SERVERID` cookie (`indirect`), and every other cookie pair
//!   reaches it byte for byte, in order.
#![no_main]

use std::sync::{LazyLock, Mutex};

use hmac::{Hmac, Mac};
use http::header::{HeaderValue, COOKIE, SET_COOKIE};
use http::{Request, Response};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, BoxError, ServiceExt};
use tower_upstream::affinity::{Affinity, AffinityDecision, AffinitySource};
use tower_upstream::upstream::ReplayBody;
use tower_upstream::{Peer, SelectedPeer, Upstream};

mod common;

type Svc = BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

/// The secret of the committed seeds (`fuzz/corpus/affinity_cookie`).
const SECRET: &[u8] = b"fuzzing-secret-0123456789";
const ROUTES: [&str; 3] = ["node1", "node_2", "n-3"];

static SEEN: LazyLock<Mutex<Vec<HeaderValue>>> = LazyLock::new(Mutex::default);

static UP: LazyLock<Upstream<Svc>> = LazyLock::new(|| {
    let peers = ROUTES.map(|route| {
        let svc = service_fn(move |req: Request<ReplayBody<String>>| {
            *SEEN.lock().unwrap() = req.headers().get_all(COOKIE).iter().cloned().collect();
            std::future::ready(Ok::<_, BoxError>(Response::new(route.to_owned())))
        });
        Peer::new(format!("{route}:8080"), Svc::new(svc)).route(route)
    });
    Upstream::builder()
        .peers(peers)
        .affinity(Affinity::cookie("SERVERID", SECRET))
        .build()
        .unwrap()
});

/// The oracle: whether `value` is `route.nonce.tag` with the right tag, and its route.
fn verified(value: &str) -> Option<&str> {
    let mut parts = value.splitn(3, '.');
    let (route, nonce, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let route_ok = !route.is_empty()
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !route_ok || nonce.is_empty() {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(format!("{route}.{nonce}").as_bytes());
    let full = mac.finalize().into_bytes();
    let want: String = full[..16].iter().map(|b| format!("{b:02x}")).collect();
    (tag.len() == 32 && tag.eq_ignore_ascii_case(&want)).then_some(route)
}

/// Cookie pairs as bytes: `(name, whole pair)`, trimmed, empty ones skipped; a pair without
/// `=` has no name.
fn pairs(lines: &[HeaderValue]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    lines
        .iter()
        .flat_map(|l| l.as_bytes().split(|&b| b == b';'))
        .map(|p| p.trim_ascii())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let name = p.iter().position(|&b| b == b'=').map(|eq| p[..eq].to_vec());
            (name, p.to_vec())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let cookies: Vec<HeaderValue> = data
        .split(|&b| b == b'\n')
        .filter_map(|l| HeaderValue::from_bytes(l).ok())
        .collect();
    let mut req = Request::new(String::new());
    for c in &cookies {
        req.headers_mut().append(COOKIE, c.clone());
    }
    let res = common::ready(UP.clone().oneshot(req)).expect("peers never fail");
    assert_eq!(res.status(), 200);
    let peer = res
        .extensions()
        .get::<SelectedPeer>()
        .unwrap()
        .route()
        .to_owned();
    let decision = res.extensions().get::<AffinityDecision>().unwrap().clone();
    let seen = std::mem::take(&mut *SEEN.lock().unwrap());

    // The first SERVERID value that verifies, in the lines that are text.
    let pin = cookies
        .iter()
        .filter_map(|l| l.to_str().ok())
        .flat_map(|l| l.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .filter(|(name, _)| *name == "SERVERID")
        .find_map(|(_, value)| verified(value.trim_matches('"')));
    match pin.filter(|r| ROUTES.contains(r)) {
        Some(route) => {
            assert_eq!(
                (decision.source(), decision.route()),
                (AffinitySource::Cookie, Some(route))
            );
            assert_eq!(peer, route);
            assert!(res.headers().get(SET_COOKIE).is_none(), "already pinned");
        }
        None => {
            assert_eq!(decision.source(), AffinitySource::None, "{cookies:?}");
            let set = res.headers()[SET_COOKIE].to_str().unwrap();
            let value = set
                .strip_prefix("SERVERID=")
                .and_then(|v| v.split(';').next())
                .unwrap();
            assert_eq!(verified(value), Some(peer.as_str()), "{set}");
        }
    }

    let sent = pairs(&seen);
    assert!(
        sent.iter()
            .all(|(name, _)| name.as_deref() != Some(b"SERVERID")),
        "the peer saw SERVERID: {seen:?}"
    );
    let others: Vec<_> = pairs(&cookies)
        .into_iter()
        .filter(|(name, _)| name.as_deref() != Some(b"SERVERID"))
        .collect();
    assert_eq!(
        sent, others,
        "the other cookies reach the peer as they were"
    );
});
