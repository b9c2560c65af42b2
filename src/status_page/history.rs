//! Recent request rates per peer, from samples of its request count taken when the page
//! renders.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::UpstreamStats;

/// How far back the sparkline goes.
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// Samples closer together than this are not kept (several viewers, quick reloads).
const MIN_GAP: Duration = Duration::from_secs(1);
/// A bound on the samples of one peer, whatever the clock does.
const MAX_SAMPLES: usize = 128;

/// Samples of `(time, requests)` per `(source, peer name)`.
#[derive(Debug, Default)]
pub(super) struct History {
    peers: HashMap<(usize, String), VecDeque<(Instant, u64)>>,
}

/// One peer's recent request rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Rates {
    /// Requests per second between the two newest samples.
    pub(super) now: Option<f64>,
    /// Each interval between samples, oldest first.
    pub(super) points: Vec<Interval>,
}

/// Requests per second between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Interval {
    /// Seconds before now at its start.
    pub(super) from: f64,
    /// Seconds before now at its end.
    pub(super) to: f64,
    /// Requests per second.
    pub(super) rate: f64,
}

impl History {
    /// Takes a sample of every peer in `stats` (forgetting peers no longer there) and
    /// returns the rates, in the order of `stats` and their peers.
    pub(super) fn update(&mut self, now: Instant, stats: &[UpstreamStats]) -> Vec<Vec<Rates>> {
        let mut old = std::mem::take(&mut self.peers);
        stats
            .iter()
            .enumerate()
            .map(|(source, upstream)| {
                upstream
                    .peers
                    .iter()
                    .map(|peer| {
                        let key = (source, peer.name.clone());
                        let mut samples = old.remove(&key).unwrap_or_default();
                        let rates = sample(&mut samples, now, peer.requests);
                        self.peers.insert(key, samples);
                        rates
                    })
                    .collect()
            })
            .collect()
    }
}

/// The sum of the peers' rates, if any has one yet.
pub(super) fn total(rates: &[Rates]) -> Option<f64> {
    rates
        .iter()
        .filter_map(|r| r.now)
        .fold(None, |sum, r| Some(sum.unwrap_or(0.0) + r))
}

fn sample(samples: &mut VecDeque<(Instant, u64)>, now: Instant, requests: u64) -> Rates {
    if samples
        .back()
        .is_none_or(|&(t, _)| now.saturating_duration_since(t) >= MIN_GAP)
    {
        samples.push_back((now, requests));
    }
    // Keep one sample from before the window: the start of its first interval.
    while samples.len() > 2 && now.saturating_duration_since(samples[1].0) >= WINDOW {
        samples.pop_front();
    }
    while samples.len() > MAX_SAMPLES {
        samples.pop_front();
    }
    let points: Vec<_> = samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(&(t0, r0), &(t1, r1))| {
            let dt = t1.saturating_duration_since(t0).as_secs_f64();
            // A peer removed and added again starts counting from zero.
            Interval {
                from: now.saturating_duration_since(t0).as_secs_f64(),
                to: now.saturating_duration_since(t1).as_secs_f64(),
                rate: r1.saturating_sub(r0) as f64 / dt,
            }
        })
        .collect();
    Rates {
        now: points.last().map(|i| i.rate),
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::PeerStats;

    fn upstream(requests: &[(&str, u64)]) -> Vec<UpstreamStats> {
        let peers = requests
            .iter()
            .map(|&(name, n)| {
                let mut p = PeerStats::new(name);
                p.requests = n;
                p
            })
            .collect();
        vec![UpstreamStats::new("u", peers)]
    }

    #[tokio::test(start_paused = true)]
    async fn rates_between_samples_at_least_a_second_apart() {
        let mut h = History::default();
        let t0 = Instant::now();
        let r = h.update(t0, &upstream(&[("a", 0), ("b", 5)]));
        assert_eq!(r[0][0], Rates::default(), "one sample: no rate yet");
        // Half a second later: too soon for a new sample.
        let r = h.update(
            t0 + Duration::from_millis(500),
            &upstream(&[("a", 1), ("b", 5)]),
        );
        assert_eq!(r[0][0].now, None);
        let r = h.update(
            t0 + Duration::from_secs(2),
            &upstream(&[("a", 10), ("b", 5)]),
        );
        assert_eq!(r[0][0].now, Some(5.0));
        assert_eq!(r[0][1].now, Some(0.0));
        let r = h.update(
            t0 + Duration::from_secs(4),
            &upstream(&[("a", 14), ("b", 9)]),
        );
        let rates =
            |r: &Rates| -> Vec<_> { r.points.iter().map(|i| (i.from, i.to, i.rate)).collect() };
        assert_eq!(rates(&r[0][0]), [(4.0, 2.0, 5.0), (2.0, 0.0, 2.0)]);
        assert_eq!(rates(&r[0][1]), [(4.0, 2.0, 0.0), (2.0, 0.0, 2.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn old_samples_and_removed_peers_are_forgotten() {
        let mut h = History::default();
        let t0 = Instant::now();
        for i in 0..100u64 {
            h.update(
                t0 + Duration::from_secs(i),
                &upstream(&[("a", i * 3), ("gone", i)]),
            );
        }
        let now = t0 + Duration::from_secs(100);
        let r = h.update(now, &upstream(&[("a", 300)]));
        assert_eq!(h.peers.len(), 1, "the removed peer's samples are dropped");
        let points = &r[0][0].points;
        assert_eq!(points.len(), 60, "one minute of one-second intervals");
        assert!(points.iter().all(|i| i.to < 60.0 && i.rate == 3.0));
        assert_eq!(points[0].from, 60.0);
        // Counting again from zero (removed and added back): no negative rate.
        let r = h.update(now + Duration::from_secs(1), &upstream(&[("a", 2)]));
        assert_eq!(r[0][0].now, Some(0.0));
    }
}
