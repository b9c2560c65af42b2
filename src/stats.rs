//! Per-peer statistics: a cheap snapshot of every peer's state and counters.
//!
//! [`Upstream::stats`](crate::Upstream::stats) reads every peer's atomics and returns an
//! [`UpstreamStats`]: no lock is held while requests run, so a status page or a metrics
//! exporter can poll it every second. [`StatusPage`](crate::status_page::StatusPage) shows
//! it as HTML and JSON.
//!
//! ```
//! use std::time::Duration;
//! use tower_upstream::stats::PeerHealth;
//! use tower_upstream::{upstream::ReplayBody, Peer, PeerStatus, Upstream};
//!
//! # let svc = tower::service_fn(|_: http::Request<ReplayBody<String>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! let upstream = Upstream::builder()
//!     .name("tserver")
//!     .peer(Peer::new("tomcat1", svc.clone()).weight(2))
//!     .peer(Peer::new("tomcat2", svc))
//!     .build()
//!     .unwrap();
//! upstream.set_status("tomcat2", PeerStatus::Draining).unwrap();
//!
//! let stats = upstream.stats();
//! assert_eq!(stats.name, "tserver");
//! let health: Vec<_> = stats.peers.iter().map(|p| (p.name.as_str(), p.health())).collect();
//! assert_eq!(health, [("tomcat1", PeerHealth::Up), ("tomcat2", PeerHealth::Draining)]);
//! assert_eq!((stats.peers[0].weight, stats.peers[0].unavailable_for), (2, None));
//! assert_eq!(stats.up(), 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::PeerStatus;

/// What one attempt on a peer ended in, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response with this status.
    Status(u16),
    /// A failure of this kind (see [`Failures`]).
    Failed(FailureKind),
}

/// The kinds of failure counted per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Error = 0,
    Timeout = 1,
    InvalidHeader = 2,
    /// A status listed in `proxy_next_upstream` (`http_502`, ...).
    Status = 3,
}

/// Lock-free counters of one peer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    classes: [AtomicU64; 5],
    failures: [AtomicU64; 4],
    /// Milliseconds since the set's epoch, 0 for never.
    last_failure: AtomicU64,
    /// Exponentially weighted moving average of the time to the response head, in
    /// microseconds; 0 until the first response.
    ewma_us: AtomicU64,
}

/// Weight of the newest sample in the response-time average.
const EWMA_ALPHA: f64 = 0.2;

impl Counters {
    pub(crate) fn count(&self, outcome: Outcome, elapsed: Duration, now_ms: u64) {
        self.requests.fetch_add(1, Relaxed);
        match outcome {
            Outcome::Status(status) => {
                if let Some(c) = self.classes.get(usize::from(status / 100).wrapping_sub(1)) {
                    c.fetch_add(1, Relaxed);
                }
                let sample = (elapsed.as_micros() as u64).max(1);
                let _ = self.ewma_us.fetch_update(Relaxed, Relaxed, |old| {
                    Some(if old == 0 {
                        sample
                    } else {
                        ((old as f64) + EWMA_ALPHA * (sample as f64 - old as f64)).max(1.0) as u64
                    })
                });
            }
            Outcome::Failed(kind) => {
                self.failures[kind as usize].fetch_add(1, Relaxed);
                self.last_failure.store(now_ms, Relaxed);
            }
        }
    }

    /// A listed status is a response and a failure at once.
    pub(crate) fn count_listed(&self, now_ms: u64) {
        self.failures[FailureKind::Status as usize].fetch_add(1, Relaxed);
        self.last_failure.store(now_ms, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> (u64, [u64; 5], Failures, u64, Option<Duration>) {
        let f = |k: FailureKind| self.failures[k as usize].load(Relaxed);
        let ewma = self.ewma_us.load(Relaxed);
        (
            self.requests.load(Relaxed),
            std::array::from_fn(|i| self.classes[i].load(Relaxed)),
            Failures {
                error: f(FailureKind::Error),
                timeout: f(FailureKind::Timeout),
                invalid_header: f(FailureKind::InvalidHeader),
                status: f(FailureKind::Status),
            },
            self.last_failure.load(Relaxed),
            (ewma != 0).then(|| Duration::from_micros(ewma)),
        )
    }
}

/// Failures of a peer by kind, since the upstream was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failures {
    /// Connection and transfer errors.
    pub error: u64,
    /// Connect and read timeouts.
    pub timeout: u64,
    /// Invalid response heads.
    pub invalid_header: u64,
    /// Responses with a status listed in `proxy_next_upstream`.
    pub status: u64,
}

impl Failures {
    /// All failures.
    pub fn total(&self) -> u64 {
        self.error + self.timeout + self.invalid_header + self.status
    }
}

/// A snapshot of one peer; see [`Upstream::stats`](crate::Upstream::stats).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The peer's name.
    pub name: String,
    /// The peer's route.
    pub route: String,
    /// Whether it is a backup peer.
    pub backup: bool,
    /// Its administrative status.
    pub status: PeerStatus,
    /// Whether a new request could be sent to it now.
    pub available: bool,
    /// How long it stays out after failing `max_fails` times (the rest of its
    /// `fail_timeout`) or after an outlier ejection; `None` when neither keeps it out.
    pub unavailable_for: Option<Duration>,
    /// Configured weight.
    pub weight: u32,
    /// nginx's `effective_weight` now (lower after failures).
    pub effective_weight: i64,
    /// Failures counted towards `max_fails` now.
    pub fails: u32,
    /// Requests in flight.
    pub active: u32,
    /// Attempts sent to the peer.
    pub requests: u64,
    /// Responses by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses: [u64; 5],
    /// Failures by kind.
    pub failures: Failures,
    /// How long ago the last failure was.
    pub last_failure: Option<Duration>,
    /// Moving average of the time to the response head.
    pub response_time: Option<Duration>,
}

impl PeerStats {
    /// The snapshot of an idle, active peer called `name` with weight 1, for sources other
    /// than an [`Upstream`](crate::Upstream); set the public fields to fill it in.
    ///
    /// ```
    /// use tower_upstream::stats::{PeerHealth, PeerStats};
    ///
    /// let mut peer = PeerStats::new("10.0.0.1:8080");
    /// peer.requests = 42;
    /// assert_eq!((peer.route.as_str(), peer.health()), ("10.0.0.1:8080", PeerHealth::Up));
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            route: name.clone(),
            name,
            backup: false,
            status: PeerStatus::Active,
            available: true,
            unavailable_for: None,
            weight: 1,
            effective_weight: 1,
            fails: 0,
            active: 0,
            requests: 0,
            responses: [0; 5],
            failures: Failures::default(),
            last_failure: None,
            response_time: None,
        }
    }

    /// The peer's state at a glance: its administrative status, then whether failures,
    /// an ejection or `max_conns` keep new requests away.
    pub fn health(&self) -> PeerHealth {
        match self.status {
            PeerStatus::Down => PeerHealth::Down,
            PeerStatus::Draining => PeerHealth::Draining,
            PeerStatus::Active if self.available => PeerHealth::Up,
            PeerStatus::Active if self.unavailable_for.is_some() => PeerHealth::Unavailable,
            PeerStatus::Active => PeerHealth::Full,
        }
    }
}

/// A peer's state at a glance; see [`PeerStats::health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerHealth {
    /// Takes new requests.
    Up,
    /// Serves only the sessions pinned to it ([`PeerStatus::Draining`]).
    Draining,
    /// Marked down ([`PeerStatus::Down`]).
    Down,
    /// Out for a while after `max_fails` failures or an outlier ejection
    /// (see [`PeerStats::unavailable_for`]).
    Unavailable,
    /// At its `max_conns`.
    Full,
}

impl PeerHealth {
    /// A short name: `up`, `draining`, `down`, `unavailable` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Draining => "draining",
            Self::Down => "down",
            Self::Unavailable => "unavailable",
            Self::Full => "full",
        }
    }
}

impl std::fmt::Display for PeerHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of an upstream; see [`Upstream::stats`](crate::Upstream::stats).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamStats {
    /// The upstream's name.
    pub name: String,
    /// Its peers, primaries then backups, in configuration order.
    pub peers: Vec<PeerStats>,
}

impl UpstreamStats {
    /// A snapshot made of these parts (for tests, and for sources other than an
    /// [`Upstream`](crate::Upstream)).
    pub fn new(name: impl Into<String>, peers: Vec<PeerStats>) -> Self {
        Self {
            name: name.into(),
            peers,
        }
    }

    /// Peers that take new requests now.
    pub fn up(&self) -> usize {
        self.peers.iter().filter(|p| p.available).count()
    }

    /// Requests in flight, over all peers.
    pub fn active(&self) -> u64 {
        self.peers.iter().map(|p| u64::from(p.active)).sum()
    }

    /// Attempts sent, over all peers.
    pub fn requests(&self) -> u64 {
        self.peers.iter().map(|p| p.requests).sum()
    }
}

/// Anything that can take an [`UpstreamStats`] snapshot: an [`Upstream`] of any peer and
/// policy type, or a closure. [`StatusPage`] and the metrics exporter read their upstreams
/// through it, so upstreams of different types can share one page.
///
/// ```
/// use tower_upstream::stats::{StatsSource, UpstreamStats};
///
/// let source = || UpstreamStats::new("static", Vec::new());
/// assert_eq!(source.stats().name, "static");
/// ```
///
/// [`Upstream`]: crate::Upstream
/// [`StatusPage`]: crate::status_page::StatusPage
pub trait StatsSource: Send + Sync + 'static {
    /// A snapshot taken now.
    fn stats(&self) -> UpstreamStats;
}

impl<S, P> StatsSource for crate::Upstream<S, P>
where
    P: crate::policy::BuildIndex,
    Self: Send + Sync + 'static,
{
    fn stats(&self) -> UpstreamStats {
        crate::Upstream::stats(self)
    }
}

impl<F> StatsSource for F
where
    F: Fn() -> UpstreamStats + Send + Sync + 'static,
{
    fn stats(&self) -> UpstreamStats {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_average() {
        let c = Counters::default();
        c.count(Outcome::Status(200), Duration::from_millis(10), 5);
        c.count(Outcome::Status(503), Duration::from_millis(20), 6);
        c.count(
            Outcome::Failed(FailureKind::Timeout),
            Duration::from_secs(1),
            7,
        );
        c.count_listed(8);
        let (requests, classes, failures, last, ewma) = c.snapshot();
        assert_eq!(requests, 3);
        assert_eq!(classes, [0, 1, 0, 0, 1]);
        assert_eq!(
            (failures.timeout, failures.status, failures.total()),
            (1, 1, 2)
        );
        assert_eq!(last, 8);
        // 10 ms, then 20 % of the way to 20 ms: 12 ms.
        assert_eq!(ewma, Some(Duration::from_millis(12)));
        c.count(Outcome::Status(999), Duration::ZERO, 9); // no class, no panic
    }
}
