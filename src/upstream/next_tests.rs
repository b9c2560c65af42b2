//! Unit tests of `proxy_next_upstream` behaviour, with scripted peers and paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, BoxError, ServiceExt};

use super::*;
use crate::Peer;

type Svc =
    tower::util::BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

/// What a scripted peer does with a request.
#[derive(Clone, Copy)]
enum Does {
    /// Answers 200 with its name.
    Answer,
    /// Answers this status with its name as the body.
    Status(u16),
    /// Refuses the connection: the request is never read.
    Refuse,
    /// Reads the whole request, then the connection breaks.
    Reset,
    /// Waits this long, then times out.
    Stall(Duration),
}

/// Every attempt, in order: (peer, method, body received).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, String, String)>>>);

impl Log {
    fn peers(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|e| e.0.clone()).collect()
    }
    fn bodies(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|e| e.2.clone()).collect()
    }
}

fn peer(name: &'static str, does: Does, log: &Log) -> Peer<Svc> {
    let log = log.clone();
    let svc = service_fn(move |req: Request<ReplayBody<String>>| {
        let log = log.clone();
        async move {
            let method = req.method().to_string();
            if let Does::Refuse = does {
                log.0
                    .lock()
                    .unwrap()
                    .push((name.into(), method, String::new()));
                let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                return Err::<Response<String>, BoxError>(e.into());
            }
            let body = req.into_body().collect().await?.to_bytes();
            let body = String::from_utf8(body.to_vec()).unwrap();
            log.0.lock().unwrap().push((name.into(), method, body));
            match does {
                Does::Answer => Ok(Response::new(name.to_owned())),
                Does::Status(s) => {
                    let mut res = Response::new(name.to_owned());
                    *res.status_mut() = StatusCode::from_u16(s).unwrap();
                    Ok(res)
                }
                Does::Reset => {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
                }
                Does::Stall(d) => {
                    tokio::time::sleep(d).await;
                    Err(tower::timeout::error::Elapsed::new().into())
                }
                Does::Refuse => unreachable!(),
            }
        }
    });
    Peer::new(name, Svc::new(svc))
}

async fn call(u: &Upstream<Svc>, method: Method, body: &str) -> (u16, String, Option<String>) {
    let req = Request::builder()
        .method(method)
        .body(body.to_owned())
        .unwrap();
    let res = u.clone().oneshot(req).await.unwrap();
    let peer = res
        .extensions()
        .get::<SelectedPeer>()
        .map(|p| p.name().to_owned());
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), peer)
}

fn get(u: &Upstream<Svc>) -> impl std::future::Future<Output = (u16, String, Option<String>)> + '_ {
    call(u, Method::GET, "")
}

#[tokio::test(start_paused = true)]
async fn error_moves_on_and_failed_peer_waits_fail_timeout() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("bad", Does::Refuse, &log))
        .peer(peer("good", Does::Answer, &log))
        .build()
        .unwrap();
    assert_eq!(get(&u).await, (200, "good".into(), Some("good".into())));
    assert_eq!(log.peers(), ["bad", "good"]);
    for _ in 0..5 {
        assert_eq!(get(&u).await.0, 200);
    }
    assert_eq!(log.peers().iter().filter(|p| *p == "bad").count(), 1);
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..10 {
        assert_eq!(get(&u).await.0, 200, "the probe fails over too");
    }
    assert_eq!(
        log.peers().iter().filter(|p| *p == "bad").count(),
        2,
        "one probe"
    );
}

#[tokio::test]
async fn off_answers_the_failure() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("bad", Does::Refuse, &log))
        .peer(peer("good", Does::Answer, &log))
        .next_upstream(NextUpstream::off())
        .build()
        .unwrap();
    assert_eq!(
        get(&u).await,
        (502, "502 Bad Gateway\n".into(), Some("bad".into()))
    );
    assert_eq!(log.peers(), ["bad"]);
}

#[tokio::test]
async fn each_peer_is_tried_once_then_the_last_failure_answers() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Refuse, &log))
        .peer(peer("b", Does::Reset, &log))
        .peer(peer("c", Does::Refuse, &log))
        .peer(peer("off", Does::Answer, &log).down())
        .build()
        .unwrap();
    assert_eq!(get(&u).await.0, 502);
    assert_eq!(log.peers(), ["a", "b", "c"]);
}

#[tokio::test]
async fn tries_limits_attempts() {
    let log = Log::default();
    let u = Upstream::builder()
        .peers(["a", "b", "c"].map(|n| peer(n, Does::Refuse, &log)))
        .peer(peer("d", Does::Answer, &log))
        .next_upstream(NextUpstream::new().tries(2))
        .build()
        .unwrap();
    assert_eq!(get(&u).await.0, 502);
    assert_eq!(log.peers(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn timeout_limits_new_attempts() {
    let log = Log::default();
    let stall = Does::Stall(Duration::from_secs(4));
    let u = Upstream::builder()
        .peers(["a", "b", "c"].map(|n| peer(n, stall, &log)))
        .next_upstream(NextUpstream::new().timeout(Duration::from_secs(6)))
        .build()
        .unwrap();
    // a fails at 4 s (< 6 s: move on), b at 8 s (>= 6 s: stop), with b's timeout.
    assert_eq!(get(&u).await.0, 504);
    assert_eq!(log.peers(), ["a", "b"]);
}

#[tokio::test]
async fn post_is_not_replayed_once_sent() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Reset, &log))
        .peer(peer("b", Does::Answer, &log))
        .build()
        .unwrap();
    assert_eq!(call(&u, Method::POST, "order=1").await.0, 502);
    assert_eq!(
        log.peers(),
        ["a"],
        "the body reached a: nginx does not send it twice"
    );
    // PUT is idempotent: it moves on (a is now failed, so b first: use fresh peers).
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Reset, &log))
        .peer(peer("b", Does::Answer, &log))
        .build()
        .unwrap();
    assert_eq!(call(&u, Method::PUT, "x").await.0, 200);
    assert_eq!(log.peers(), ["a", "b"]);
}

#[tokio::test]
async fn post_moves_on_when_nothing_was_sent() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Refuse, &log))
        .peer(peer("b", Does::Answer, &log))
        .build()
        .unwrap();
    assert_eq!(call(&u, Method::POST, "order=1").await.0, 200);
    assert_eq!(log.peers(), ["a", "b"]);
    assert_eq!(log.bodies()[1], "order=1");
}

#[tokio::test]
async fn non_idempotent_replays_the_identical_body() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Reset, &log))
        .peer(peer("b", Does::Answer, &log))
        .next_upstream(NextUpstream::parse("error timeout non_idempotent").unwrap())
        .build()
        .unwrap();
    let body = "x".repeat(60_000) + "end";
    assert_eq!(call(&u, Method::POST, &body).await.0, 200);
    assert_eq!(log.peers(), ["a", "b"]);
    assert_eq!(log.bodies(), [body.clone(), body]);
}

#[tokio::test]
async fn large_body_is_streamed_and_not_replayed_once_read() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Reset, &log))
        .peer(peer("b", Does::Answer, &log))
        .next_upstream(NextUpstream::new().body_buffer_size(1024))
        .build()
        .unwrap();
    let body = "y".repeat(4096);
    assert_eq!(call(&u, Method::PUT, &body).await.0, 502);
    assert_eq!(log.peers(), ["a"]);
    assert_eq!(log.bodies(), std::slice::from_ref(&body));
    // Refused: the body was never read, so it can still go to the next peer.
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Refuse, &log))
        .peer(peer("b", Does::Answer, &log))
        .next_upstream(NextUpstream::new().body_buffer_size(1024))
        .build()
        .unwrap();
    assert_eq!(call(&u, Method::POST, &body).await.0, 200);
    assert_eq!(log.bodies()[1], body);
}

/// Found by `tests/soak.rs`: answering before a streamed body was read to its end, the
/// upstream let hyper close the client's keep-alive connection unannounced, and the client's
/// next request on it failed. Such answers now say `Connection: close`.
#[tokio::test]
async fn unread_body_closes_the_client_connection_and_says_so() {
    let send = |u: Upstream<Svc>, body: String| async move {
        let req = Request::post("/").body(body).unwrap();
        let res = u.oneshot(req).await.unwrap();
        let close = res.headers().get(http::header::CONNECTION).cloned();
        let marked = res.extensions().get::<CloseConnection>().is_some();
        (res.status().as_u16(), close, marked)
    };
    let refusing = |log: &Log| {
        Upstream::builder()
            .peer(peer("a", Does::Refuse, log))
            .peer(peer("b", Does::Refuse, log))
            .next_upstream(NextUpstream::new().body_buffer_size(1024))
            .build()
            .unwrap()
    };
    let (log, large, small) = (Log::default(), "y".repeat(4096), "y".repeat(512));
    let (status, close, marked) = send(refusing(&log), large.clone()).await;
    assert_eq!(
        (status, close.as_ref().map(|v| v.to_str().unwrap())),
        (502, Some("close"))
    );
    assert!(marked, "ProxyHeaders keeps the header by this marker");
    // A buffered body was read whole: the connection can go on.
    assert_eq!(send(refusing(&log), small).await, (502, None, false));
    // A streamed body the peer read to its end.
    let u = Upstream::builder()
        .peer(peer("a", Does::Answer, &log))
        .next_upstream(NextUpstream::new().body_buffer_size(1024))
        .build()
        .unwrap();
    assert_eq!(send(u, large).await, (200, None, false));
}

#[tokio::test]
async fn listed_statuses_move_on_and_count_except_403_404() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Status(502), &log))
        .peer(peer("b", Does::Status(404), &log))
        .peer(peer("c", Does::Answer, &log))
        .next_upstream(NextUpstream::parse("error timeout http_502 http_404").unwrap())
        .build()
        .unwrap();
    assert_eq!(get(&u).await, (200, "c".into(), Some("c".into())));
    assert_eq!(log.peers(), ["a", "b", "c"]);
    assert_eq!(u.peer("a").unwrap().fails(), 1);
    assert_eq!(
        u.peer("b").unwrap().fails(),
        0,
        "404 never counts as a failure"
    );
}

#[tokio::test]
async fn unlisted_status_is_an_answer() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Status(500), &log))
        .peer(peer("b", Does::Answer, &log))
        .build()
        .unwrap();
    assert_eq!(get(&u).await, (500, "a".into(), Some("a".into())));
    assert_eq!(
        u.peer("a").unwrap().fails(),
        0,
        "http_500 not listed: not a failure"
    );
}

#[tokio::test]
async fn last_listed_response_is_passed_on_when_no_peer_is_left() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Status(503), &log))
        .peer(peer("b", Does::Status(503), &log))
        .next_upstream(NextUpstream::parse("error timeout http_503").unwrap())
        .build()
        .unwrap();
    assert_eq!(get(&u).await, (503, "b".into(), Some("b".into())));
    assert_eq!(log.peers(), ["a", "b"]);
}

#[tokio::test]
async fn backups_take_over_within_one_request() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Refuse, &log))
        .peer(peer("b", Does::Refuse, &log))
        .peer(peer("spare", Does::Answer, &log).backup())
        .build()
        .unwrap();
    let res = u
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    let selected = res.extensions().get::<SelectedPeer>().unwrap();
    assert_eq!((selected.name(), selected.is_backup()), ("spare", true));
    assert_eq!(log.peers(), ["a", "b", "spare"]);
}

#[tokio::test]
async fn budget_stops_retries() {
    let log = Log::default();
    let u = Upstream::builder()
        .peers(["a", "b", "c", "d"].map(|n| peer(n, Does::Refuse, &log)))
        // No floor and 0 %: the budget never allows a retry.
        .next_upstream(NextUpstream::new().budget(Duration::from_secs(10), 0, 0.0))
        .build()
        .unwrap();
    assert_eq!(get(&u).await.0, 502);
    assert_eq!(log.peers().len(), 1);
}

#[test]
fn next_upstream_parse_errors() {
    assert_eq!(
        NextUpstream::parse("error http_418")
            .unwrap_err()
            .to_string(),
        "invalid proxy_next_upstream value `http_418`"
    );
}

#[tokio::test(start_paused = true)]
async fn outlier_detection_ejects_a_peer_returning_500s() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("sick", Does::Status(500), &log))
        .peer(peer("fine", Does::Answer, &log))
        .outlier_detection(
            crate::OutlierDetection::new()
                .consecutive_5xx(3)
                .base_ejection_time(Duration::from_secs(30))
                .max_ejection_percent(50),
        )
        .build()
        .unwrap();
    // Round-robin alternates; the sick peer's third 500 ejects it.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(&u).await.0);
    }
    assert_eq!(statuses, [500, 200, 500, 200, 500, 200, 200, 200, 200, 200]);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(log.peers().iter().filter(|p| *p == "sick").count(), 3);
    let mut sick = 0;
    for _ in 0..4 {
        if get(&u).await.0 == 500 {
            sick += 1;
        }
    }
    assert_eq!(sick, 2, "back in rotation after the ejection");
}

#[tokio::test(start_paused = true)]
async fn everything_failed_answers_502_unless_quick_recovery() {
    for quick in [false, true] {
        let log = Log::default();
        let u = Upstream::builder()
            .peer(peer("a", Does::Refuse, &log))
            .peer(peer("b", Does::Refuse, &log))
            .quick_recovery(quick)
            .error_page(
                StatusCode::BAD_GATEWAY,
                http::HeaderValue::from_static("text/html"),
                "<h1>down</h1>",
            )
            .build()
            .unwrap();
        assert_eq!(get(&u).await.0, 502);
        assert_eq!(log.peers(), ["a", "b"]);
        // Both failed within fail_timeout: nginx 1.22 answers at once ("no live upstreams").
        let (status, body, _) = get(&u).await;
        assert_eq!((status, body.as_str()), (502, "<h1>down</h1>"));
        let tried_again = log.peers().len() - 2;
        assert_eq!(
            tried_again,
            if quick { 2 } else { 0 },
            "quick recovery {quick}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn stats_count_responses_and_failures() {
    let log = Log::default();
    let u = Upstream::builder()
        .peer(peer("a", Does::Refuse, &log))
        .peer(peer("b", Does::Status(502), &log))
        .peer(peer("c", Does::Answer, &log))
        .peer(peer("spare", Does::Answer, &log).backup())
        .next_upstream(NextUpstream::parse("error timeout http_502").unwrap())
        .build()
        .unwrap();
    assert_eq!(get(&u).await.0, 200);
    let stats = u.stats();
    let by_name = |n: &str| stats.peers.iter().find(|p| p.name == n).unwrap().clone();
    let (a, b, c, spare) = (by_name("a"), by_name("b"), by_name("c"), by_name("spare"));
    assert_eq!(
        (a.requests, a.failures.error, a.fails, a.available),
        (1, 1, 1, false)
    );
    assert_eq!((b.requests, b.responses[4], b.failures.status), (1, 1, 1));
    assert_eq!((c.requests, c.responses[1], c.failures.total()), (1, 1, 0));
    assert!(c.response_time.is_some() && a.last_failure.is_some());
    assert_eq!((spare.backup, spare.requests), (true, 0));
    assert_eq!(stats.name, "upstream");
}

/// A request extension that counts its copies.
#[derive(Default)]
struct Copies(Arc<std::sync::atomic::AtomicUsize>);

impl Clone for Copies {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(Arc::clone(&self.0))
    }
}

impl Copies {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Sends a GET with a `Copies` extension and an `x-id` header; the status and how many times
/// the head was copied.
async fn copies(u: &Upstream<Svc>) -> (u16, usize) {
    let copies = Copies::default();
    let mut req = Request::builder()
        .header("x-id", "7")
        .body(String::new())
        .unwrap();
    req.extensions_mut().insert(Copies(Arc::clone(&copies.0)));
    let res = u.clone().oneshot(req).await.unwrap();
    (res.status().as_u16(), copies.count())
}

/// A peer that answers 200 if the head reached it whole (the header and the extension),
/// else 500; `fail` refuses the connection first.
fn checking_peer(name: &'static str, fail: bool) -> Peer<Svc> {
    let svc = service_fn(move |req: Request<ReplayBody<String>>| async move {
        if fail {
            let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err::<Response<String>, BoxError>(e.into());
        }
        let whole = req.headers()["x-id"] == "7" && req.extensions().get::<Copies>().is_some();
        let mut res = Response::new(name.to_owned());
        *res.status_mut() = if whole {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Ok(res)
    });
    Peer::new(name, Svc::new(svc))
}

#[tokio::test]
async fn head_is_copied_only_while_another_attempt_may_follow() {
    // One peer: no attempt can follow, so the head itself is sent.
    let one = Upstream::builder()
        .peer(checking_peer("a", false))
        .build()
        .unwrap();
    assert_eq!(copies(&one).await, (200, 0));
    // `proxy_next_upstream off`, or `tries 1`: the same with two peers.
    for next in [NextUpstream::off(), NextUpstream::new().tries(1)] {
        let u = Upstream::builder()
            .peers([checking_peer("a", false), checking_peer("b", false)])
            .next_upstream(next)
            .build()
            .unwrap();
        assert_eq!(copies(&u).await, (200, 0));
    }
    // Two peers: the first attempt sends a copy, and the retry after a failure the head
    // itself, whole.
    let two = Upstream::builder()
        .peers([checking_peer("a", true), checking_peer("b", false)])
        .build()
        .unwrap();
    assert_eq!(copies(&two).await, (200, 1));
    // Three peers, the first failing: copies for the first two attempts only.
    let three = Upstream::builder()
        .peers([
            checking_peer("a", true),
            checking_peer("b", false),
            checking_peer("c", false),
        ])
        .build()
        .unwrap();
    assert_eq!(copies(&three).await, (200, 2));
}
