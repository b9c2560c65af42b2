use super::{BuildIndex, Candidates, Policy};
use crate::PeerSet;

/// nginx's smooth weighted round-robin, the default policy.
///
/// Each pick adds every candidate's `effective_weight` to its `current_weight`, takes the
/// candidate with the largest `current_weight` (the first one on ties) and subtracts the total
/// from it. Weights `{a:5, b:1, c:1}` give `a a b a c a a` every cycle. A failure lowers a
/// peer's `effective_weight` by `weight / max_fails`; it climbs back by one per pick.
///
/// See the [module docs](super) for an example.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RoundRobin;

impl RoundRobin {
    /// The smooth weighted round-robin policy.
    pub const fn new() -> Self {
        Self
    }
}

impl BuildIndex for RoundRobin {
    type Index = ();

    fn build_index(&self, _: &PeerSet) {}
}

impl<Req> Policy<Req> for RoundRobin {
    type Key = ();

    fn key(&self, _: &Req) {}

    fn pick(&self, ctx: &Candidates<'_>, _: &(), _: &mut ()) -> Option<usize> {
        ctx.smooth(|_| true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::{Peer, Tried};

    pub(crate) fn weighted(weights: &[u32]) -> PeerSet {
        let peers: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Peer::new(((b'a' + i as u8) as char).to_string(), ()).weight(w))
            .collect();
        PeerSet::new(&peers)
    }

    fn sequence(set: &PeerSet, n: usize) -> String {
        let now = Instant::now();
        (0..n)
            .map(|_| {
                let tried = Tried::new();
                let i = Policy::<()>::pick(
                    &RoundRobin,
                    &Candidates::new(set, &tried, now),
                    &(),
                    &mut (),
                )
                .unwrap();
                set.get(i).unwrap().name().to_owned()
            })
            .collect()
    }

    #[test]
    fn nginx_sequences() {
        // Computed by hand from nginx's ngx_http_upstream_get_peer, and checked against a
        // real nginx in tests/nginx_balance.rs.
        assert_eq!(sequence(&weighted(&[5, 1, 1]), 14), "aabacaaaabacaa");
        assert_eq!(sequence(&weighted(&[3, 2, 1]), 12), "abacbaabacba");
        assert_eq!(
            sequence(&weighted(&[1, 2, 3, 4]), 20),
            "dcbdacdbcddcbdacdbcd"
        );
        assert_eq!(sequence(&weighted(&[1, 1]), 4), "abab");
    }

    #[test]
    fn exact_distribution_over_10000_picks() {
        for weights in [&[5, 1, 1][..], &[3, 2, 1], &[1, 2, 3, 4], &[7, 3], &[1; 9]] {
            let set = weighted(weights);
            let total: u32 = weights.iter().sum();
            let n = 10_000 - 10_000 % total as usize;
            let picks = sequence(&set, n);
            for (i, &w) in weights.iter().enumerate() {
                let name = (b'a' + i as u8) as char;
                let got = picks.chars().filter(|&c| c == name).count();
                assert_eq!(
                    got,
                    n / total as usize * w as usize,
                    "{weights:?} peer {name}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn skips_down_failed_and_tried() {
        let peers = [
            Peer::new("a", ()),
            Peer::new("b", ()).down(),
            Peer::new("c", ()),
        ];
        let set = PeerSet::new(&peers);
        let now = Instant::now();
        set.record(0, true, now);
        assert_eq!(sequence(&set, 3), "ccc");
        let mut tried = Tried::new();
        tried.insert(2);
        let ctx = Candidates::new(&set, &tried, now);
        assert_eq!(Policy::<()>::pick(&RoundRobin, &ctx, &(), &mut ()), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        // Back after fail_timeout, but with effective_weight 0 (= 1 - weight / max_fails),
        // which climbs back by one per pick: nginx gives a one pick of delay.
        assert_eq!(sequence(&set, 4), "caca");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_a_recovered_peer() {
        let peers = [
            Peer::new("a", ())
                .weight(10)
                .slow_start(Duration::from_secs(10)),
            Peer::new("b", ()).weight(10),
        ];
        let set = PeerSet::new(&peers);
        let share = |set: &PeerSet| {
            let s = sequence(set, 200);
            s.chars().filter(|&c| c == 'a').count()
        };
        assert_eq!(share(&set), 100, "no ramp before any failure");
        set.record(0, true, Instant::now()); // a fails (max_fails 1): out for 10 s
        tokio::time::advance(Duration::from_secs(11)).await;
        set.acquire(0, Instant::now()); // the probe after fail_timeout ...
        set.record(0, false, Instant::now()); // ... succeeds: a is back, ramping up
        set.release(0);
        let early = share(&set);
        tokio::time::advance(Duration::from_secs(5)).await;
        let half = share(&set);
        tokio::time::advance(Duration::from_secs(5)).await;
        let full = share(&set);
        assert!(
            early <= 25,
            "1 s into a 10 s slow start a got {early} of 200"
        );
        assert!((55..=80).contains(&half), "half way a got {half} of 200");
        assert_eq!(full, 100, "after the slow start a is back to its weight");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_after_set_active() {
        let peers = [
            Peer::new("a", ())
                .weight(4)
                .slow_start(Duration::from_secs(8))
                .down(),
            Peer::new("b", ()).weight(4),
        ];
        let set = PeerSet::new(&peers);
        set.get(0).unwrap().set_status(crate::PeerStatus::Active);
        let s = sequence(&set, 40);
        let a = s.chars().filter(|&c| c == 'a').count();
        assert!(a <= 8, "a just came back: {a} of 40");
    }

    #[test]
    fn effective_weight_recovers_one_per_pick() {
        let peers = [
            Peer::new("a", ()).weight(4).max_fails(2),
            Peer::new("b", ()).weight(4),
        ];
        let set = PeerSet::new(&peers);
        set.record(0, true, Instant::now()); // effective 4 -> 2, fails 1 < max_fails
        assert_eq!(set.weights()[0].effective, 2);
        sequence(&set, 1);
        assert_eq!(set.weights()[0].effective, 3);
        sequence(&set, 1);
        assert_eq!(set.weights()[0].effective, 4);
        sequence(&set, 1);
        assert_eq!(set.weights()[0].effective, 4);
    }
}
