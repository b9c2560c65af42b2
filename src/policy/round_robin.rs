use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{BuildIndex, Candidates, Policy};
use crate::{PeerSet, Weights};

/// nginx's smooth weighted round-robin, the default policy.
///
/// Each pick adds every candidate's `effective_weight` to its `current_weight`, takes the
/// candidate with the largest `current_weight` (the first one on ties) and subtracts the total
/// from it. Weights `{a:5, b:1, c:1}` give `a a b a c a a` every cycle. A failure lowers a
/// peer's `effective_weight` by `weight / max_fails`; it climbs back by one per pick.
///
/// # Large upstreams
///
/// nginx's pick looks at every peer. For more than 32 peers this policy precomputes one
/// cycle of the sequence (the steady state: every peer available at full weight) and, while
/// nothing disturbs it, picks by stepping through the cycle with one atomic increment: the
/// same peers in the same order, in constant time. Any disturbance (a failure, a status
/// change, a peer at `max_conns`, a retry) switches to nginx's exact algorithm from the exact
/// state reached; once every peer has been healthy for a whole cycle, the state is realigned
/// to the start of the cycle and the fast path resumes. nginx would instead carry on from its
/// shifted state: the share of each peer is the same, the order within that one cycle may
/// differ.
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

/// Peer sets up to this size use nginx's loop alone: it is as fast as the schedule there.
const SCHEDULE_MIN_PEERS: usize = 33;
/// The longest cycle kept (4 Mi picks, 16 MiB).
const SCHEDULE_MAX_LEN: u64 = 1 << 22;
/// Set in [`Schedule::state`] while nginx's loop is in charge.
const SLOW: u64 = 1 << 63;

/// One precomputed cycle of the smooth sequence, for large peer sets; see [`RoundRobin`].
#[derive(Debug)]
pub struct Schedule {
    /// The peers of one cycle, in order (weights divided by their greatest common divisor,
    /// which gives the same sequence).
    cycle: Box<[u32]>,
    /// Sum of the real weights.
    total: i64,
    /// Picks made on the fast path since the cycle was (re)aligned, or [`SLOW`].
    state: AtomicU64,
    /// The peer set's health generation the cycle is aligned with.
    aligned: AtomicU64,
    /// Consecutive healthy slow picks, towards realignment.
    healthy_run: AtomicU64,
}

impl Schedule {
    pub(crate) fn new(peers: &PeerSet) -> Option<Self> {
        if peers.len() < SCHEDULE_MIN_PEERS {
            return None;
        }
        let weights: Vec<u64> = peers.iter().map(|p| u64::from(p.weight())).collect();
        let g = weights.iter().copied().fold(0, gcd);
        let len: u64 = weights.iter().map(|w| w / g).sum();
        if g == 0 || len > SCHEDULE_MAX_LEN {
            return None;
        }
        let scaled: Vec<i64> = weights.iter().map(|w| (w / g) as i64).collect();
        let mut current = vec![0i64; scaled.len()];
        let mut cycle = Vec::with_capacity(len as usize);
        for _ in 0..len {
            let mut best = 0;
            for (i, w) in scaled.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= len as i64;
            cycle.push(best as u32);
        }
        // The cycle starts from all-zero weights; a set rebuilt after a membership change
        // carries its peers' weights over, and starts on nginx's loop until realigned.
        let at_start = peers.weights().iter().all(|w| w.current == 0);
        let healthy = at_start
            && peers.iter().enumerate().all(|(i, _)| {
                peers.is_available_at(i, 0) && peers.get(i).is_some_and(|p| !p.is_down())
            });
        Some(Self {
            cycle: cycle.into(),
            total: weights.iter().sum::<u64>() as i64,
            state: AtomicU64::new(if healthy { 0 } else { SLOW }),
            aligned: AtomicU64::new(peers.generation()),
            healthy_run: AtomicU64::new(0),
        })
    }

    /// Writes into `weights` nginx's exact state after `picks` picks from the start of the
    /// cycle: `current = r * weight - total * (times picked)`, `r` the position in the cycle.
    fn materialize(&self, peers: &PeerSet, weights: &mut [Weights], picks: u64) {
        let r = (picks % self.cycle.len() as u64) as usize;
        for (w, p) in weights.iter_mut().zip(peers.iter()) {
            w.current = r as i64 * i64::from(p.weight());
        }
        for &i in &self.cycle[..r] {
            weights[i as usize].current -= self.total;
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl BuildIndex for RoundRobin {
    type Index = Option<Schedule>;

    fn build_index(&self, peers: &PeerSet) -> Option<Schedule> {
        Schedule::new(peers)
    }
}

impl<Req> Policy<Req> for RoundRobin {
    type Key = ();

    fn key(&self, _: &Req) {}

    fn pick(&self, ctx: &Candidates<'_>, schedule: &Option<Schedule>, _: &mut ()) -> Option<usize> {
        let Some(s) = schedule else {
            return ctx.smooth(|_| true);
        };
        let peers = ctx.peers();
        let first_try = !ctx.has_tried();
        if first_try && s.aligned.load(Relaxed) == peers.generation() {
            let v = s.state.fetch_add(1, Relaxed);
            if v & SLOW == 0 {
                let i = s.cycle[(v % s.cycle.len() as u64) as usize] as usize;
                if ctx.is_candidate(i) {
                    return Some(i);
                }
                // This pick did not happen: nginx's loop takes over from before it.
                return slow(ctx, s, Some(v));
            }
        }
        slow(ctx, s, None)
    }
}

impl Schedule {
    /// Switches to nginx's loop, writing into `weights` the state the fast path reached
    /// (`failed_at`: the fast pick that did not happen).
    fn take_over(&self, peers: &PeerSet, weights: &mut [Weights], failed_at: Option<u64>) {
        let before = self.state.fetch_or(SLOW, Relaxed);
        if before & SLOW == 0 {
            let picks = failed_at.unwrap_or(before).min(before);
            self.materialize(peers, weights, picks);
            self.healthy_run.store(0, Relaxed);
        }
    }

    /// nginx's loop among the candidates `listed`, such as `least_conn`'s ties, from the
    /// exact state reached. Such a pick disturbs the cycle: it does not count towards
    /// realigning it.
    pub(crate) fn smooth_among(&self, ctx: &Candidates<'_>, listed: &[usize]) -> Option<usize> {
        let peers = ctx.peers();
        let mut weights = peers.weights();
        self.take_over(peers, &mut weights, None);
        self.healthy_run.store(0, Relaxed);
        ctx.smooth_listed(&mut weights, listed)
    }
}

/// nginx's loop, after switching to it from the fast path if needed; realigns the cycle
/// once every peer has been healthy for a whole cycle.
fn slow(ctx: &Candidates<'_>, s: &Schedule, failed_at: Option<u64>) -> Option<usize> {
    let peers = ctx.peers();
    let mut weights = peers.weights();
    s.take_over(peers, &mut weights, failed_at);
    let chosen = ctx.smooth_locked(&mut weights, |_| true);
    if ctx.has_tried() || !peers.all_healthy(&weights, ctx.now_ms()) {
        s.healthy_run.store(0, Relaxed);
        return chosen;
    }
    let run = s.healthy_run.fetch_add(1, Relaxed) + 1;
    let at_start = weights.iter().all(|w| w.current == 0);
    if at_start || run >= s.cycle.len() as u64 {
        for w in weights.iter_mut() {
            w.current = 0;
        }
        s.aligned.store(peers.generation(), Relaxed);
        s.healthy_run.store(0, Relaxed);
        s.state.store(0, Relaxed);
    }
    chosen
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
                    &None,
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
        assert_eq!(Policy::<()>::pick(&RoundRobin, &ctx, &None, &mut ()), None);
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

    /// Picks with and without the precomputed cycle, side by side.
    fn pick_with(set: &PeerSet, index: &Option<Schedule>, tried: &Tried) -> Option<usize> {
        let ctx = Candidates::new(set, tried, Instant::now());
        Policy::<()>::pick(&RoundRobin, &ctx, index, &mut ())
    }

    fn big(n: usize) -> Vec<Peer> {
        (0..n)
            .map(|i| Peer::new(format!("p{i}"), ()).weight(1 + (i * 7 % 5) as u32))
            .collect()
    }

    #[test]
    fn schedule_gives_nginx_sequence() {
        let peers = big(40);
        let (fast, exact) = (PeerSet::new(&peers), PeerSet::new(&peers));
        let index = RoundRobin.build_index(&fast);
        assert!(index.is_some(), "40 peers use the schedule");
        let cycle: usize = peers.iter().map(|p| p.get_weight() as usize).sum();
        let tried = Tried::new();
        for k in 0..3 * cycle {
            assert_eq!(
                pick_with(&fast, &index, &tried),
                pick_with(&exact, &None, &tried),
                "pick {k}"
            );
        }
        assert_eq!(
            index.as_ref().unwrap().state.load(Relaxed),
            3 * cycle as u64,
            "all fast"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_follows_nginx_through_a_failure_and_realigns() {
        let peers = big(50);
        let (fast, exact) = (PeerSet::new(&peers), PeerSet::new(&peers));
        let index = RoundRobin.build_index(&fast);
        let cycle: u64 = peers.iter().map(|p| u64::from(p.get_weight())).sum();
        let tried = Tried::new();
        for _ in 0..cycle + 17 {
            assert_eq!(
                pick_with(&fast, &index, &tried),
                pick_with(&exact, &None, &tried)
            );
        }
        // Peer 3 fails: both take nginx's exact path from the exact same state.
        let now = Instant::now();
        fast.record(3, true, now);
        exact.record(3, true, now);
        for k in 0..2 * cycle {
            assert_eq!(
                pick_with(&fast, &index, &tried),
                pick_with(&exact, &None, &tried),
                "{k}"
            );
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        let mut counts = vec![0u64; peers.len()];
        for _ in 0..4 * cycle {
            counts[pick_with(&fast, &index, &tried).unwrap()] += 1;
        }
        let s = index.as_ref().unwrap();
        assert_eq!(
            s.state.load(Relaxed) & SLOW,
            0,
            "realigned: back on the fast path"
        );
        // Whole cycles after the realignment give every peer exactly its weight.
        let mut counts = vec![0u64; peers.len()];
        for _ in 0..2 * cycle {
            counts[pick_with(&fast, &index, &tried).unwrap()] += 1;
        }
        for (i, p) in peers.iter().enumerate() {
            assert_eq!(counts[i], 2 * u64::from(p.get_weight()), "peer {i}");
        }
    }

    #[test]
    fn schedule_skips_a_full_peer_exactly() {
        let peers: Vec<_> = big(40).into_iter().map(|p| p.max_conns(1)).collect();
        let (fast, exact) = (PeerSet::new(&peers), PeerSet::new(&peers));
        let index = RoundRobin.build_index(&fast);
        let tried = Tried::new();
        let now = Instant::now();
        for _ in 0..30 {
            assert_eq!(
                pick_with(&fast, &index, &tried),
                pick_with(&exact, &None, &tried)
            );
        }
        fast.acquire(5, now);
        exact.acquire(5, now);
        for k in 0..200 {
            assert_eq!(
                pick_with(&fast, &index, &tried),
                pick_with(&exact, &None, &tried),
                "{k}"
            );
        }
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
