//! Upstream and peer statistics exported through the [`metrics` facade](::metrics)
//! (feature `metrics`), so that any exporter (Prometheus, StatsD, ...) can publish them.
//!
//! A [`MetricsExporter`] reads the same cheap snapshot as [`Upstream::stats`] and sets the
//! metrics below, labelled `upstream` and `peer`, on the installed recorder. Call
//! [`MetricsExporter::export`] before each scrape, or let [`MetricsExporter::spawn`] do it
//! on an interval. Nothing is added to the request path.
//!
//! | metric | kind | value |
//! |---|---|---|
//! | `upstream_peer_requests_total` | counter | attempts sent to the peer |
//! | `upstream_peer_responses_total` | counter | responses, by `class` (`1xx` ... `5xx`) |
//! | `upstream_peer_failures_total` | counter | failures, by `kind` (`error`, `timeout`, `invalid_header`, `status`) |
//! | `upstream_peer_active` | gauge | requests in flight |
//! | `upstream_peer_fails` | gauge | failures counted towards `max_fails` |
//! | `upstream_peer_weight` | gauge | configured weight |
//! | `upstream_peer_effective_weight` | gauge | nginx's `effective_weight` |
//! | `upstream_peer_available` | gauge | 1 if it takes new requests, else 0 |
//! | `upstream_peer_unavailable_seconds` | gauge | how long it stays out after failures or an ejection |
//! | `upstream_peer_state` | gauge | 1 for its [`PeerHealth`] (`state` label: `up`, `draining`, `down`, `unavailable`, `full`), 0 for the others |
//! | `upstream_peer_response_time_seconds` | gauge | moving average of the time to the response head |
//! | `upstream_peers_up` | gauge | peers that take new requests (label `upstream` only) |
//!
//! Counters are set with [`Counter::absolute`](::metrics::Counter::absolute) from the
//! upstream's own counts. A removed peer's metrics stay in the recorder until it forgets
//! them (the Prometheus exporter has an idle timeout for that).
//!
//! # Example
//!
//! ```
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use tower_upstream::metrics::MetricsExporter;
//! use tower_upstream::{upstream::ReplayBody, Peer, Upstream};
//!
//! # let svc = tower::service_fn(|_: http::Request<ReplayBody<String>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! let upstream = Upstream::builder()
//!     .name("tserver")
//!     .peer(Peer::new("tomcat1", svc.clone()).weight(3))
//!     .peer(Peer::new("tomcat2", svc))
//!     .build()
//!     .unwrap();
//! let exporter = MetricsExporter::new().upstream(upstream);
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || exporter.export());
//!
//! let weight = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     let key = key.key();
//!     let peer = key.labels().find(|l| l.key() == "peer")?;
//!     (key.name() == "upstream_peer_weight" && peer.value() == "tomcat1").then_some(value)
//! });
//! assert_eq!(weight, Some(DebugValue::Gauge(3.0.into())));
//! ```
//!
//! [`Upstream::stats`]: crate::Upstream::stats
//! [`PeerHealth`]: crate::stats::PeerHealth

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Label, SharedString, Unit};

use crate::stats::{PeerHealth, PeerStats, StatsSource, UpstreamStats};

/// Sets the metrics of one or more upstreams on the installed `metrics` recorder; see the
/// [module docs](self).
#[derive(Clone, Default)]
#[must_use]
pub struct MetricsExporter {
    sources: Vec<Arc<dyn StatsSource>>,
}

impl MetricsExporter {
    /// An exporter of no upstream yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an upstream (or any [`StatsSource`]).
    pub fn upstream(mut self, source: impl StatsSource) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// Takes a snapshot of every upstream and sets their metrics on the recorder in use.
    pub fn export(&self) {
        describe();
        for source in &self.sources {
            export_upstream(&source.stats());
        }
    }

    /// Exports now, then every `period`, on the current Tokio runtime, until the task is
    /// aborted.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or if `period` is zero.
    pub fn spawn(self, period: Duration) -> tokio::task::JoinHandle<()> {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::spawn(async move {
            loop {
                interval.tick().await;
                self.export();
            }
        })
    }
}

impl fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsExporter")
            .field("upstreams", &self.sources.len())
            .finish()
    }
}

const REQUESTS: &str = "upstream_peer_requests_total";
const RESPONSES: &str = "upstream_peer_responses_total";
const FAILURES: &str = "upstream_peer_failures_total";
const ACTIVE: &str = "upstream_peer_active";
const FAILS: &str = "upstream_peer_fails";
const WEIGHT: &str = "upstream_peer_weight";
const EFFECTIVE_WEIGHT: &str = "upstream_peer_effective_weight";
const AVAILABLE: &str = "upstream_peer_available";
const UNAVAILABLE: &str = "upstream_peer_unavailable_seconds";
const STATE: &str = "upstream_peer_state";
const RESPONSE_TIME: &str = "upstream_peer_response_time_seconds";
const PEERS_UP: &str = "upstream_peers_up";

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const HEALTH: [PeerHealth; 5] = [
    PeerHealth::Up,
    PeerHealth::Draining,
    PeerHealth::Down,
    PeerHealth::Unavailable,
    PeerHealth::Full,
];

fn describe() {
    describe_counter!(REQUESTS, Unit::Count, "Attempts sent to the peer.");
    describe_counter!(
        RESPONSES,
        Unit::Count,
        "Responses from the peer, by status class."
    );
    describe_counter!(
        FAILURES,
        Unit::Count,
        "Failed attempts on the peer, by kind."
    );
    describe_gauge!(ACTIVE, Unit::Count, "Requests in flight to the peer.");
    describe_gauge!(FAILS, Unit::Count, "Failures counted towards max_fails.");
    describe_gauge!(WEIGHT, "Configured weight of the peer.");
    describe_gauge!(EFFECTIVE_WEIGHT, "nginx's effective_weight of the peer.");
    describe_gauge!(AVAILABLE, "1 if the peer takes new requests, else 0.");
    describe_gauge!(
        UNAVAILABLE,
        Unit::Seconds,
        "How long the peer stays out after failures or an ejection."
    );
    describe_gauge!(STATE, "1 for the peer's state, 0 for the others.");
    describe_gauge!(
        RESPONSE_TIME,
        Unit::Seconds,
        "Moving average of the time to the response head."
    );
    describe_gauge!(PEERS_UP, Unit::Count, "Peers that take new requests.");
}

fn export_upstream(u: &UpstreamStats) {
    let upstream = SharedString::from(u.name.clone());
    gauge!(PEERS_UP, "upstream" => upstream.clone()).set(u.up() as f64);
    for p in &u.peers {
        export_peer(&upstream, p);
    }
}

fn export_peer(upstream: &SharedString, p: &PeerStats) {
    let labels = [
        Label::new("upstream", upstream.clone()),
        Label::new("peer", p.name.clone()),
    ];
    let with = |key: &'static str, value: &'static str| {
        let mut l = labels.to_vec();
        l.push(Label::new(key, value));
        l
    };
    counter!(REQUESTS, labels.to_vec()).absolute(p.requests);
    for (class, &n) in CLASSES.iter().zip(&p.responses) {
        counter!(RESPONSES, with("class", class)).absolute(n);
    }
    let f = &p.failures;
    for (kind, n) in [
        ("error", f.error),
        ("timeout", f.timeout),
        ("invalid_header", f.invalid_header),
        ("status", f.status),
    ] {
        counter!(FAILURES, with("kind", kind)).absolute(n);
    }
    gauge!(ACTIVE, labels.to_vec()).set(p.active);
    gauge!(FAILS, labels.to_vec()).set(p.fails);
    gauge!(WEIGHT, labels.to_vec()).set(p.weight);
    gauge!(EFFECTIVE_WEIGHT, labels.to_vec()).set(p.effective_weight as f64);
    gauge!(AVAILABLE, labels.to_vec()).set(u8::from(p.available));
    gauge!(UNAVAILABLE, labels.to_vec()).set(p.unavailable_for.unwrap_or_default());
    let health = p.health();
    for h in HEALTH {
        gauge!(STATE, with("state", h.as_str())).set(u8::from(h == health));
    }
    // No response yet: the gauge is left as it was (absent until the first one).
    if let Some(t) = p.response_time {
        gauge!(RESPONSE_TIME, labels.to_vec()).set(t);
    }
}
