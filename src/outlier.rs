//! Envoy-style outlier detection: consecutive server errors eject a peer for a time that
//! grows with each ejection. Opt-in, beyond nginx.

use std::time::Duration;

/// Ejects a peer after `consecutive_5xx` server errors in a row (5xx responses, failed
/// connections, timeouts), for `base_ejection_time` times the number of times it has been
/// ejected, at most `max_ejection_time`. A peer that has behaved for one base ejection time
/// after coming back earns one ejection off its count. At most `max_ejection_percent` % of a
/// peer set (but always at least one peer) is ejected at once, so a cluster-wide problem
/// never ejects everything. The defaults are Envoy's: 5, 30 s, 300 s, 10 %.
///
/// ```
/// use std::time::Duration;
/// use tower_upstream::OutlierDetection;
///
/// let od = OutlierDetection::new()
///     .consecutive_5xx(3)
///     .base_ejection_time(Duration::from_secs(10));
/// assert_eq!(od.ejection_time(1), Duration::from_secs(10));
/// assert_eq!(od.ejection_time(4), Duration::from_secs(40));
/// assert_eq!(od.ejection_time(100), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct OutlierDetection {
    pub(crate) consecutive_5xx: u32,
    pub(crate) base_ejection_time: Duration,
    pub(crate) max_ejection_time: Duration,
    pub(crate) max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

impl OutlierDetection {
    /// Envoy's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Server errors in a row that eject a peer (at least 1).
    pub fn consecutive_5xx(mut self, n: u32) -> Self {
        self.consecutive_5xx = n.max(1);
        self
    }

    /// The first ejection's length; the n-th lasts n times as long.
    pub fn base_ejection_time(mut self, d: Duration) -> Self {
        self.base_ejection_time = d;
        self
    }

    /// The longest ejection.
    pub fn max_ejection_time(mut self, d: Duration) -> Self {
        self.max_ejection_time = d;
        self
    }

    /// The most peers of a set ejected at once, in percent (at least one peer may be).
    pub fn max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = percent.min(100);
        self
    }

    /// How long the `n`-th ejection of a peer lasts.
    pub fn ejection_time(&self, n: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(n.max(1))
            .min(self.max_ejection_time.max(self.base_ejection_time))
    }

    /// How many peers of a set of `len` may be ejected at once.
    pub(crate) fn max_ejected(&self, len: usize) -> usize {
        (len * usize::from(self.max_ejection_percent) / 100).max(1)
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::{advance, Instant};

    use super::*;
    use crate::{Peer, PeerSet};

    fn set(n: usize, od: OutlierDetection) -> PeerSet {
        let peers: Vec<_> = (0..n).map(|i| Peer::new(format!("p{i}"), ())).collect();
        PeerSet::new(&peers).with_outlier_detection(od)
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_grows_and_decays() {
        let od = OutlierDetection::new()
            .consecutive_5xx(3)
            .base_ejection_time(Duration::from_secs(10))
            .max_ejection_percent(50);
        let s = set(2, od);
        let errors = |n| {
            for _ in 0..n {
                s.observe(0, true, Instant::now());
            }
        };
        errors(2);
        s.observe(0, false, Instant::now()); // a success breaks the run
        errors(2);
        assert!(!s.is_ejected(0, Instant::now()));
        errors(1);
        assert!(s.is_ejected(0, Instant::now()), "three in a row");
        assert!(!s.is_available(0, Instant::now()));
        advance(Duration::from_secs(10)).await;
        assert!(!s.is_ejected(0, Instant::now()), "first ejection: 10 s");
        errors(3);
        advance(Duration::from_secs(19)).await;
        assert!(s.is_ejected(0, Instant::now()), "second ejection: 20 s");
        advance(Duration::from_secs(1)).await;
        assert!(!s.is_ejected(0, Instant::now()));
        // Good behaviour for one base time after coming back takes one ejection off.
        advance(Duration::from_secs(11)).await;
        s.observe(0, false, Instant::now());
        errors(3);
        advance(Duration::from_secs(19)).await;
        assert!(
            s.is_ejected(0, Instant::now()),
            "back to a 20 s ejection, not 30 s"
        );
        advance(Duration::from_secs(1)).await;
        assert!(!s.is_ejected(0, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn never_ejects_more_than_the_cap() {
        let od = OutlierDetection::new().consecutive_5xx(1);
        let s = set(4, od); // 10 % of 4 rounds down: one peer at most
        s.observe(0, true, Instant::now());
        s.observe(1, true, Instant::now());
        assert!(s.is_ejected(0, Instant::now()));
        assert!(
            !s.is_ejected(1, Instant::now()),
            "the cap keeps the second one in"
        );
    }

    #[test]
    fn the_cap_holds_when_peers_fail_together() {
        // Two peers hit their threshold on two threads at the same moment: only one may go.
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::Arc;
        const ROUNDS: usize = 20_000;
        let od = OutlierDetection::new().consecutive_5xx(1);
        // 10 % of 2 rounds up: one at most. A fresh set per round, both threads spinning
        // until the round starts, so that their `observe` calls overlap.
        let sets: Arc<Vec<PeerSet>> = Arc::new((0..ROUNDS).map(|_| set(2, od)).collect());
        let now = Instant::now();
        let round = Arc::new(AtomicUsize::new(0));
        let other = {
            let (sets, round) = (Arc::clone(&sets), Arc::clone(&round));
            std::thread::spawn(move || {
                for r in 1..=ROUNDS {
                    while round.load(SeqCst) < r {
                        std::hint::spin_loop();
                    }
                    sets[r - 1].observe(1, true, now);
                }
            })
        };
        for r in 1..=ROUNDS {
            round.store(r, SeqCst);
            sets[r - 1].observe(0, true, now);
        }
        other.join().unwrap();
        let over = sets
            .iter()
            .filter(|s| s.is_ejected(0, now) && s.is_ejected(1, now))
            .count();
        assert_eq!(over, 0, "rounds where both peers were ejected");
    }
}
