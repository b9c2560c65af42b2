use std::cell::Cell;
use std::hash::{BuildHasher, Hasher, RandomState};

use super::{BuildIndex, Candidates, Policy, WeightRanges, HASH_TRIES};
use crate::PeerSet;

/// nginx's `random` and `random two least_conn`.
///
/// `random` picks a peer with probability proportional to its weight. `two least_conn` picks
/// two distinct peers that way and keeps the one with fewer active requests per unit of weight
/// (the power of two choices), which spreads load well without looking at every peer. Unusable
/// peers are re-drawn; after 20 draws, or with fewer than two peers, the pick falls back to
/// smooth round-robin, as in nginx.
///
/// ```
/// use tokio::time::Instant;
/// use tower_upstream::policy::{BuildIndex, Candidates, Policy, Random};
/// use tower_upstream::{Peer, PeerSet, Tried};
///
/// let peers = PeerSet::new(&[Peer::new("a", ()), Peer::new("b", ()).down()]);
/// let policy = Random::two_least_conn();
/// let ranges = policy.build_index(&peers);
/// let tried = Tried::new();
/// let ctx = Candidates::new(&peers, &tried, Instant::now());
/// assert_eq!(Policy::<()>::pick(&policy, &ctx, &ranges, &mut 0), Some(0));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Random {
    two: bool,
}

impl Random {
    /// nginx `random`: weighted random choice.
    pub const fn new() -> Self {
        Self { two: false }
    }

    /// nginx `random two least_conn`: the less loaded of two weighted random choices.
    pub const fn two_least_conn() -> Self {
        Self { two: true }
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        h.finish() | 1
    });
}

/// xorshift64*: statistically fine for load balancing, and needs no dependency.
pub(crate) fn next_random() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A weighted random peer.
fn peek(ranges: &WeightRanges, total: u64) -> usize {
    ranges.find(next_random() % total)
}

impl BuildIndex for Random {
    type Index = WeightRanges;

    fn build_index(&self, peers: &PeerSet) -> WeightRanges {
        WeightRanges::new(peers)
    }
}

impl<Req> Policy<Req> for Random {
    /// Draws made so far by this request.
    type Key = u32;

    fn key(&self, _: &Req) -> u32 {
        0
    }

    fn pick(&self, ctx: &Candidates<'_>, ranges: &WeightRanges, tries: &mut u32) -> Option<usize> {
        let peers = ctx.peers();
        if *tries > HASH_TRIES || peers.len() < 2 {
            return ctx.smooth(|_| true);
        }
        let mut first: Option<usize> = None;
        loop {
            let i = peek(ranges, peers.total_weight());
            if first != Some(i) && ctx.is_candidate(i) {
                if !self.two {
                    return Some(i);
                }
                if let Some(f) = first {
                    let load = |i: usize| {
                        let p = peers.get(i).expect("index in range");
                        (u64::from(p.active()), u64::from(p.weight()))
                    };
                    let ((ic, iw), (fc, fw)) = (load(i), load(f));
                    return Some(if ic * fw > fc * iw { f } else { i });
                }
                first = Some(i);
            }
            *tries += 1;
            if *tries > HASH_TRIES {
                return ctx.smooth(|_| true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::policy::round_robin::tests::weighted;
    use crate::Tried;

    fn counts(policy: Random, set: &PeerSet, n: usize) -> Vec<usize> {
        let ranges = policy.build_index(set);
        let mut counts = vec![0; set.len()];
        let tried = Tried::new();
        for _ in 0..n {
            let ctx = Candidates::new(set, &tried, Instant::now());
            counts[Policy::<()>::pick(&policy, &ctx, &ranges, &mut 0).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn random_follows_weights() {
        let c = counts(Random::new(), &weighted(&[3, 1]), 40_000);
        // Expect 30000:10000; allow 5 % (the standard deviation is about 90).
        assert!((28_500..31_500).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn two_choices_avoid_the_loaded_peer() {
        let set = weighted(&[1, 1, 1]);
        let now = Instant::now();
        for _ in 0..5 {
            set.acquire(0, now);
        }
        let c = counts(Random::two_least_conn(), &set, 3_000);
        // The two draws are distinct, so one of them always has fewer active requests.
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 1_000 && c[2] > 1_000, "{c:?}");
    }
}
