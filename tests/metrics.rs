//! `MetricsExporter` (feature `metrics`): every peer's statistics reach the installed
//! `metrics` recorder with `upstream` and `peer` labels. Run by `.ci/run` with
//! `cargo test --features metrics --test metrics`.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tower::{service_fn, BoxError, ServiceExt};
use tower_upstream::metrics::MetricsExporter;
use tower_upstream::upstream::{NextUpstream, ReplayBody};
use tower_upstream::{Peer, PeerStatus, Upstream};

type Svc =
    tower::util::BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

fn answering(status: u16) -> Svc {
    Svc::new(service_fn(
        move |_: Request<ReplayBody<String>>| async move {
            let mut res = Response::new(String::new());
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, BoxError>(res)
        },
    ))
}

fn refusing() -> Svc {
    Svc::new(service_fn(|_: Request<ReplayBody<String>>| async {
        Err::<Response<String>, BoxError>(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        )
    }))
}

/// The snapshot as `"name{label=value,...}" => value`, labels sorted.
fn values(snapshotter: &Snapshotter) -> BTreeMap<String, f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let kind = key.kind();
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let value = match (kind, value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => n as f64,
                (MetricKind::Gauge, DebugValue::Gauge(x)) => x.into_inner(),
                other => panic!("unexpected metric {other:?}"),
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

async fn send(u: &Upstream<Svc>, n: usize) {
    for _ in 0..n {
        let res = u
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
        let _ = res.into_body().collect().await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_peer_is_exported_with_its_labels() {
    let u = Upstream::builder()
        .name("tserver")
        .peer(Peer::new("a", answering(200)).weight(2))
        .peer(Peer::new("b", answering(502)).max_fails(2))
        .peer(Peer::new("c", refusing()))
        .peer(Peer::new("d", answering(200)))
        .next_upstream(NextUpstream::parse("error timeout http_502").unwrap())
        .build()
        .unwrap();
    u.set_status("d", PeerStatus::Draining).unwrap();
    send(&u, 4).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let exporter = MetricsExporter::new().upstream(u.clone());
    metrics::with_local_recorder(&recorder, || exporter.export());
    let v = values(&snapshotter);
    // `extra` is a third label, as `key=value`.
    let get = |name: &str, peer: &str, extra: &str| {
        let mut labels = vec![format!("peer={peer}"), "upstream=tserver".to_owned()];
        labels.extend((!extra.is_empty()).then(|| extra.to_owned()));
        labels.sort();
        let key = format!("{name}{{{}}}", labels.join(","));
        *v.get(&key).unwrap_or_else(|| panic!("no {key} in {v:#?}"))
    };

    // `b` answers 502 (listed: a failure, and the request moves on), `c` refuses, `d` is
    // draining (no new requests): the counters are the upstream's own.
    let requests: Vec<f64> = ["a", "b", "c", "d"]
        .iter()
        .map(|p| get("upstream_peer_requests_total", p, ""))
        .collect();
    let stats = u.stats();
    let expected: Vec<f64> = stats.peers.iter().map(|p| p.requests as f64).collect();
    assert_eq!(requests, expected);
    assert!(
        requests[1] >= 1.0 && requests[2] >= 1.0 && requests[3] == 0.0,
        "{requests:?}"
    );
    assert_eq!(
        get("upstream_peer_responses_total", "a", "class=2xx"),
        requests[0]
    );
    assert_eq!(
        get("upstream_peer_responses_total", "b", "class=5xx"),
        requests[1]
    );
    assert_eq!(
        get("upstream_peer_failures_total", "b", "kind=status"),
        requests[1]
    );
    assert_eq!(get("upstream_peer_failures_total", "c", "kind=error"), 1.0);
    assert_eq!(
        get("upstream_peer_failures_total", "c", "kind=timeout"),
        0.0
    );

    assert_eq!(get("upstream_peer_weight", "a", ""), 2.0);
    assert_eq!(get("upstream_peer_available", "a", ""), 1.0);
    assert_eq!(get("upstream_peer_active", "a", ""), 0.0);
    assert!(get("upstream_peer_response_time_seconds", "a", "") >= 0.0);
    // `c` failed once with max_fails=1: out for the 9 s left of its fail_timeout.
    assert_eq!(get("upstream_peer_available", "c", ""), 0.0);
    assert_eq!(get("upstream_peer_fails", "c", ""), 1.0);
    assert_eq!(get("upstream_peer_effective_weight", "c", ""), 0.0);
    assert_eq!(get("upstream_peer_unavailable_seconds", "c", ""), 9.001);
    assert_eq!(get("upstream_peer_state", "c", "state=unavailable"), 1.0);
    assert_eq!(get("upstream_peer_state", "c", "state=up"), 0.0);
    assert_eq!(get("upstream_peer_state", "d", "state=draining"), 1.0);
    assert_eq!(get("upstream_peer_state", "a", "state=up"), 1.0);
    assert_eq!(v["upstream_peers_up{upstream=tserver}"], stats.up() as f64);
    assert!(
        !v.contains_key("upstream_peer_response_time_seconds{peer=d,upstream=tserver}"),
        "no response time before a response"
    );
}

#[tokio::test(start_paused = true)]
async fn spawn_exports_on_an_interval() {
    let u = Upstream::builder()
        .name("tserver")
        .peer(Peer::new("a", answering(200)))
        .build()
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The only test in this binary that installs a global recorder.
    recorder.install().unwrap();
    let task = MetricsExporter::new()
        .upstream(u.clone())
        .spawn(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let requests =
        |v: &BTreeMap<String, f64>| v["upstream_peer_requests_total{peer=a,upstream=tserver}"];
    assert_eq!(requests(&values(&snapshotter)), 0.0, "exported at once");
    send(&u, 3).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        requests(&values(&snapshotter)),
        0.0,
        "not before the period"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(requests(&values(&snapshotter)), 3.0);
    task.abort();
}
