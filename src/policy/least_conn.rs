use std::cell::Cell;

use super::{BuildIndex, Candidates, Policy, RoundRobin, Schedule};
use crate::PeerSet;

/// nginx's `least_conn`: the peer with the fewest active requests per unit of weight.
///
/// Peers are compared by `active * other.weight < other.active * weight`; among those that tie
/// with the best, the choice is made by smooth weighted round-robin, exactly as nginx does.
/// Active requests are counted by the [`Upstream`] from the pick until the response body is
/// finished or dropped.
///
/// Like nginx, a pick walks every peer to find the fewest; that walk also lists the peers
/// that tie, and nginx's second walk goes over the list alone. When every peer ties (all
/// idle, or all equally busy), that second walk is the plain round-robin pick, and for more
/// than 32 peers it is made as [`RoundRobin`] makes it: in constant time, from a precomputed
/// cycle of the same sequence.
///
/// ```
/// use tokio::time::Instant;
/// use tower_upstream::policy::{BuildIndex, Candidates, LeastConn, Policy};
/// use tower_upstream::{Peer, PeerSet, Tried};
///
/// let peers = PeerSet::new(&[Peer::new("a", ()), Peer::new("b", ())]);
/// let index = LeastConn::new().build_index(&peers);
/// let now = Instant::now();
/// peers.acquire(0, now); // one request in flight on "a"
/// let tried = Tried::new();
/// let pick = Policy::<()>::pick(&LeastConn::new(), &Candidates::new(&peers, &tried, now), &index, &mut ());
/// assert_eq!(pick, Some(1));
/// ```
///
/// [`Upstream`]: crate::Upstream
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct LeastConn;

impl LeastConn {
    /// The `least_conn` policy.
    pub const fn new() -> Self {
        Self
    }
}

impl BuildIndex for LeastConn {
    /// [`RoundRobin`]'s cycle, for the picks where every peer ties.
    type Index = Option<Schedule>;

    fn build_index(&self, peers: &PeerSet) -> Option<Schedule> {
        Schedule::new(peers)
    }
}

impl<Req> Policy<Req> for LeastConn {
    type Key = ();

    fn key(&self, _: &Req) {}

    fn pick(&self, ctx: &Candidates<'_>, schedule: &Option<Schedule>, _: &mut ()) -> Option<usize> {
        let peers = ctx.peers();
        if peers.is_single() {
            return ctx.smooth(|_| true);
        }
        // The list of ties is kept between picks, so that a pick allocates nothing.
        let mut ties = TIES.try_with(Cell::take).unwrap_or_default();
        let chosen = pick_among_ties::<Req>(ctx, schedule, &mut ties);
        let _ = TIES.try_with(|t| t.set(ties));
        chosen
    }
}

thread_local! {
    static TIES: Cell<Vec<usize>> = const { Cell::new(Vec::new()) };
}

/// nginx's two walks: the first finds the fewest active requests per weight and lists the
/// candidates that tie with it; the second, the smooth round-robin, goes over that list only.
fn pick_among_ties<Req>(
    ctx: &Candidates<'_>,
    schedule: &Option<Schedule>,
    ties: &mut Vec<usize>,
) -> Option<usize> {
    let peers = ctx.peers();
    ties.clear();
    // Active requests and weight of the first candidate with the fewest per weight.
    let mut best: Option<(u64, u64)> = None;
    for (i, p) in peers.iter().enumerate() {
        if !ctx.is_candidate(i) {
            continue;
        }
        let (conns, weight) = (u64::from(p.active()), u64::from(p.weight()));
        match best {
            Some((bc, bw)) if conns * bw > bc * weight => {}
            Some((bc, bw)) if conns * bw == bc * weight => ties.push(i),
            _ => {
                best = Some((conns, weight));
                ties.clear();
                ties.push(i);
            }
        }
    }
    match ties.len() {
        0 => None,
        // A clear winner: nginx leaves the round-robin weights alone.
        1 => Some(ties[0]),
        // Every peer is a candidate and they all tie: nginx's walk among the ties is the
        // round-robin pick.
        n if n == peers.len() => Policy::<Req>::pick(&RoundRobin, ctx, schedule, &mut ()),
        // Requests that start or end on other threads meanwhile do not change the list:
        // the pick is made from the counts the first walk read, as nginx makes both walks
        // from one state.
        _ => match schedule {
            Some(s) => s.smooth_among(ctx, ties),
            None => ctx.smooth_listed(&mut peers.weights(), ties),
        },
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::policy::round_robin::tests::weighted;
    use crate::Tried;

    fn pick(set: &PeerSet) -> usize {
        let tried = Tried::new();
        Policy::<()>::pick(
            &LeastConn,
            &Candidates::new(set, &tried, Instant::now()),
            &None,
            &mut (),
        )
        .unwrap()
    }

    #[test]
    fn fewest_per_weight_then_round_robin() {
        let set = weighted(&[2, 1, 1]);
        let now = Instant::now();
        // All idle: a three-way tie, broken by smooth WRR over one full cycle.
        let order: Vec<_> = (0..4).map(|_| pick(&set)).collect();
        assert_eq!(order, [0, 1, 2, 0]);
        // a has 2 active with weight 2 (1 per unit), b has 1, c has 0: c wins.
        set.acquire(0, now);
        set.acquire(0, now);
        set.acquire(1, now);
        assert_eq!(pick(&set), 2);
        // c at 1: a (2/2), b (1/1) and c (1/1) tie again, and the round-robin cycle
        // restarts at a (the clear win of c did not touch the weights).
        set.acquire(2, now);
        assert_eq!(pick(&set), 0);
        set.release(0);
        set.release(0);
        assert_eq!(pick(&set), 0, "a now has 0 active");
    }

    #[test]
    fn picks_a_peer_while_other_threads_change_the_counts() {
        // Between the two walks, requests on other threads may start and end: a pick must
        // still find a peer (every peer here is available).
        let set = std::sync::Arc::new(weighted(&[1, 1, 2, 1]));
        let picks_per_thread = 50_000;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let set = std::sync::Arc::clone(&set);
                std::thread::spawn(move || {
                    let now = Instant::now();
                    let (mut none, mut in_flight) = (0, std::collections::VecDeque::new());
                    for _ in 0..picks_per_thread {
                        match pick_with(&set, &None, &Tried::new()) {
                            Some(i) => {
                                set.acquire(i, now);
                                in_flight.push_back(i);
                            }
                            None => none += 1,
                        }
                        // Each thread keeps a few requests in flight.
                        if in_flight.len() > 2 {
                            set.release(in_flight.pop_front().unwrap());
                        }
                    }
                    none
                })
            })
            .collect();
        let none: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(none, 0, "picks that found no peer");
    }

    /// One pick by `least_conn` with `index`, skipping the peers in `tried`.
    fn pick_with(set: &PeerSet, index: &Option<Schedule>, tried: &Tried) -> Option<usize> {
        let ctx = Candidates::new(set, tried, Instant::now());
        Policy::<()>::pick(&LeastConn, &ctx, index, &mut ())
    }

    /// nginx's `least_conn` (its module's two walks) over healthy peers of `weights`, with
    /// `state` their (current, effective) weights and `active` their requests in flight,
    /// skipping those `tried`: the model the picks are checked against.
    fn nginx_pick(
        weights: &[u32],
        state: &mut [(i64, i64)],
        active: &[u64],
        tried: &Tried,
    ) -> Option<usize> {
        let per_weight = |i: usize, b: usize| {
            (
                active[i] * u64::from(weights[b]),
                active[b] * u64::from(weights[i]),
            )
        };
        let (mut best, mut many) = (None, false);
        for i in (0..weights.len()).filter(|&i| !tried.contains(i)) {
            match best.map(|b| per_weight(i, b)) {
                Some((l, r)) if l > r => {}
                Some((l, r)) if l == r => many = true,
                _ => (best, many) = (Some(i), false),
            }
        }
        let b = best?;
        if !many {
            return Some(b);
        }
        let (mut total, mut chosen) = (0, None::<usize>);
        for i in (b..weights.len()).filter(|&i| !tried.contains(i)) {
            let (l, r) = per_weight(i, b);
            if l != r {
                continue;
            }
            state[i].0 += state[i].1;
            total += state[i].1;
            if state[i].1 < i64::from(weights[i]) {
                state[i].1 += 1;
            }
            if chosen.is_none_or(|c| state[i].0 > state[c].0) {
                chosen = Some(i);
            }
        }
        let c = chosen?;
        state[c].0 -= total;
        Some(c)
    }

    proptest::proptest! {
        /// With the round-robin cycle (more than 32 peers) the picks are those of nginx's two
        /// walks alone, as the cycle-less set makes them: for sequences shorter than one cycle,
        /// which the cycle then never realigns (see `RoundRobin`), through ties of every
        /// peer, clear winners, ties of a few and retries, as requests start and end.
        #[test]
        fn schedule_gives_nginx_picks(
            weights in proptest::collection::vec(1u32..=4, 33..=48),
            steps in proptest::collection::vec((0u8..6, 0usize..48), 1..60),
        ) {
            let (plain, fast) = (weighted(&weights), weighted(&weights));
            let index = LeastConn.build_index(&fast);
            proptest::prop_assert!(index.is_some());
            let now = Instant::now();
            for (op, peer) in steps {
                let peer = peer % weights.len();
                match op {
                    // A request starts on the pick, or on a given peer.
                    0..=2 => {
                        let a = pick_with(&plain, &None, &Tried::new());
                        let b = pick_with(&fast, &index, &Tried::new());
                        proptest::prop_assert_eq!(a, b);
                        if op == 0 {
                            plain.acquire(a.unwrap(), now);
                            fast.acquire(a.unwrap(), now);
                        }
                    }
                    3 => {
                        plain.acquire(peer, now);
                        fast.acquire(peer, now);
                    }
                    4 => {
                        plain.release(peer);
                        fast.release(peer);
                    }
                    // A retry, which skips the peer tried first.
                    _ => {
                        let mut tried = Tried::new();
                        tried.insert(peer);
                        let a = pick_with(&plain, &None, &tried);
                        let b = pick_with(&fast, &index, &tried);
                        proptest::prop_assert_eq!(a, b);
                    }
                }
            }
        }

        /// Pick for pick the model's: with 2 to 48 peers (the cycle above 32), ties of every
        /// peer, of some and none, and retries.
        #[test]
        fn picks_are_nginx_picks(
            weights in proptest::collection::vec(1u32..=4, 2..=48),
            steps in proptest::collection::vec((0u8..6, 0usize..48), 1..80),
        ) {
            let set = weighted(&weights);
            let index = LeastConn.build_index(&set);
            let mut state: Vec<(i64, i64)> =
                weights.iter().map(|&w| (0, i64::from(w))).collect();
            let now = Instant::now();
            for (op, peer) in steps {
                let peer = peer % weights.len();
                let mut tried = Tried::new();
                match op {
                    3 => set.acquire(peer, now),
                    4 => set.release(peer),
                    _ => {
                        if op == 5 {
                            tried.insert(peer);
                        }
                        let active: Vec<u64> =
                            set.iter().map(|p| u64::from(p.active())).collect();
                        let model = nginx_pick(&weights, &mut state, &active, &tried);
                        let pick = pick_with(&set, &index, &tried);
                        proptest::prop_assert_eq!(pick, model);
                        if op == 0 {
                            set.acquire(pick.unwrap(), now);
                        }
                    }
                }
            }
        }
    }
}
