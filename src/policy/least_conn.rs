use super::{BuildIndex, Candidates, Policy};
use crate::PeerSet;

/// nginx's `least_conn`: the peer with the fewest active requests per unit of weight.
///
/// Peers are compared by `active * other.weight < other.active * weight`; among those that tie
/// with the best, the choice is made by smooth weighted round-robin, exactly as nginx does.
/// Active requests are counted by the [`Upstream`] from the pick until the response body is
/// finished or dropped.
///
/// ```
/// use tokio::time::Instant;
/// use tower_upstream::policy::{Candidates, LeastConn, Policy};
/// use tower_upstream::{Peer, PeerSet, Tried};
///
/// let peers = PeerSet::new(&[Peer::new("a", ()), Peer::new("b", ())]);
/// let now = Instant::now();
/// peers.acquire(0, now); // one request in flight on "a"
/// let tried = Tried::new();
/// let pick = Policy::<()>::pick(&LeastConn::new(), &Candidates::new(&peers, &tried, now), &(), &mut ());
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
    type Index = ();

    fn build_index(&self, _: &PeerSet) {}
}

impl<Req> Policy<Req> for LeastConn {
    type Key = ();

    fn key(&self, _: &Req) {}

    fn pick(&self, ctx: &Candidates<'_>, _: &(), _: &mut ()) -> Option<usize> {
        let peers = ctx.peers();
        if peers.is_single() {
            return ctx.smooth(|_| true);
        }
        // Snapshot the counters once so that both passes agree on who ties.
        let load = |i: usize| {
            let p = peers.get(i).expect("index in range");
            (u64::from(p.active()), u64::from(p.weight()))
        };
        let mut best: Option<(usize, u64, u64)> = None;
        let mut many = false;
        for i in 0..peers.len() {
            if !ctx.is_candidate(i) {
                continue;
            }
            let (conns, weight) = load(i);
            match best {
                Some((_, bc, bw)) if conns * bw > bc * weight => {}
                Some((_, bc, bw)) if conns * bw == bc * weight => many = true,
                _ => {
                    best = Some((i, conns, weight));
                    many = false;
                }
            }
        }
        let (first, bc, bw) = best?;
        if !many {
            // A clear winner: nginx leaves the round-robin weights alone.
            return Some(first);
        }
        ctx.smooth(|i| {
            i >= first && {
                let (conns, weight) = load(i);
                conns * bw == bc * weight
            }
        })
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
            &(),
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
}
