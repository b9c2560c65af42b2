//! Selection policies: which peer serves a request.
//!
//! Each policy is a plain value that picks a peer index from a [`PeerSet`] snapshot, with no
//! I/O, so it can be tested on its own. They reproduce nginx's choices exactly:
//!
//! | policy | nginx | per-request input |
//! |---|---|---|
//! | [`RoundRobin`] | default (smooth weighted round-robin) | none |
//! | [`IpHash`] | `ip_hash` | client address ([`ClientAddr`]) |
//! | [`ConsistentHash`] | `hash $key consistent` (ketama) | a key ([`HashKey`]) |
//! | [`LeastConn`] | `least_conn` | none |
//! | [`Random`] | `random` and `random two least_conn` | none |
//!
//! Every policy skips peers that are `down`, failed within `fail_timeout`, at `max_conns`,
//! or already tried by this request; the [`Upstream`] then falls back to the backup peers,
//! which it balances with the same policy.
//!
//! # Example
//!
//! ```
//! use tokio::time::Instant;
//! use tower_upstream::policy::{Candidates, Policy, RoundRobin};
//! use tower_upstream::{Peer, PeerSet, Tried};
//!
//! let peers = PeerSet::new(&[
//!     Peer::new("a", ()).weight(5),
//!     Peer::new("b", ()),
//!     Peer::new("c", ()),
//! ]);
//! let policy = RoundRobin::new();
//! let mut order = String::new();
//! for _ in 0..7 {
//!     let tried = Tried::new();
//!     let candidates = Candidates::new(&peers, &tried, Instant::now());
//!     let i = Policy::<()>::pick(&policy, &candidates, &None, &mut ()).unwrap();
//!     order.push_str(peers.get(i).unwrap().name());
//! }
//! assert_eq!(order, "aabacaa"); // nginx's smooth sequence for weights 5:1:1
//! ```
//!
//! [`Upstream`]: crate::Upstream

use tokio::time::Instant;

use crate::peer_set::{PeerSet, PeerState, Tried, Weights};

mod client_addr;
mod consistent_hash;
mod hash_key;
mod ip_hash;
mod least_conn;
pub(crate) mod random;
mod round_robin;

pub use client_addr::{ClientAddr, ConnectAddr};
pub use consistent_hash::{ChashKey, ConsistentHash, Ring};
pub use hash_key::{key, HashKey};
pub use ip_hash::{IpHash, IpHashKey, WeightRanges};
pub use least_conn::LeastConn;
pub use random::Random;
pub use round_robin::{RoundRobin, Schedule};

/// nginx gives up hashing after this many collisions with unusable peers and falls back to
/// round-robin (`tries > 20` in `ip_hash`, `hash` and `random`).
pub(crate) const HASH_TRIES: u32 = 20;

/// The part of a policy that does not depend on the request: data precomputed from a peer
/// set, such as the consistent-hash ring.
pub trait BuildIndex {
    /// The precomputed data; `()` for most policies.
    type Index: Send + Sync + 'static;

    /// Precomputes what [`Policy::pick`] needs about `peers`. Called once per peer set.
    fn build_index(&self, peers: &PeerSet) -> Self::Index;

    /// The kind of affinity the policy gives by itself, if any (`ip_hash`: the client
    /// address; `hash`: a request key), reported in
    /// [`AffinityDecision`](crate::affinity::AffinityDecision).
    fn affinity_source(&self) -> Option<crate::affinity::AffinitySource> {
        None
    }
}

/// A peer selection policy.
///
/// The [`Upstream`] calls [`BuildIndex::build_index`] once per peer set when it is built,
/// [`Policy::key`] once per request (before the request moves into the peer), and
/// [`Policy::pick`] once per attempt. `pick` returns the index of an available, untried peer
/// or `None`.
///
/// # Implementing
///
/// A policy that always prefers the first available peer (nginx has no such thing; it only
/// shows the shape):
///
/// ```
/// use tower_upstream::policy::{BuildIndex, Candidates, Policy};
/// use tower_upstream::PeerSet;
///
/// struct FirstAvailable;
///
/// impl BuildIndex for FirstAvailable {
///     type Index = ();
///     fn build_index(&self, _: &PeerSet) {}
/// }
///
/// impl<Req> Policy<Req> for FirstAvailable {
///     type Key = ();
///     fn key(&self, _: &Req) {}
///     fn pick(&self, c: &Candidates<'_>, _: &(), _: &mut ()) -> Option<usize> {
///         (0..c.peers().len()).find(|&i| c.is_candidate(i))
///     }
/// }
/// ```
///
/// [`Upstream`]: crate::Upstream
pub trait Policy<Req>: BuildIndex {
    /// Per-request state, kept across the attempts of one request (nginx's per-request peer
    /// data, such as the running `ip_hash` value).
    type Key: Clone + Send + 'static;

    /// Extracts the per-request state from the request.
    fn key(&self, req: &Req) -> Self::Key;

    /// Picks a peer among `candidates`, or `None` when there is none.
    fn pick(
        &self,
        candidates: &Candidates<'_>,
        index: &Self::Index,
        key: &mut Self::Key,
    ) -> Option<usize>;
}

/// What a policy picks from: a peer set, the peers this request already tried, and the time.
#[derive(Debug)]
pub struct Candidates<'a> {
    peers: &'a PeerSet,
    tried: &'a Tried,
    now: Instant,
    now_ms: u64,
}

impl<'a> Candidates<'a> {
    /// A pick among `peers` at `now`, skipping those in `tried`.
    pub fn new(peers: &'a PeerSet, tried: &'a Tried, now: Instant) -> Self {
        Self {
            peers,
            tried,
            now,
            now_ms: peers.millis(now),
        }
    }

    /// The peer set.
    pub fn peers(&self) -> &'a PeerSet {
        self.peers
    }

    /// The time of the pick.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Whether this request already tried any peer.
    pub fn has_tried(&self) -> bool {
        !self.tried.is_empty()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Whether peer `i` was already tried by this request.
    pub fn is_tried(&self, i: usize) -> bool {
        self.tried.contains(i)
    }

    /// Whether peer `i` may be picked: untried and available (not down, not failed within
    /// `fail_timeout`, below `max_conns`).
    #[inline]
    pub fn is_candidate(&self, i: usize) -> bool {
        !self.tried.contains(i) && self.peers.is_available_at(i, self.now_ms)
    }

    /// nginx's smooth weighted round-robin among the candidates for which `filter` holds.
    pub fn smooth(&self, filter: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut weights = self.peers.weights();
        self.smooth_locked(&mut weights, filter)
    }

    /// [`Candidates::smooth`] with the weights lock already held.
    pub fn smooth_locked(
        &self,
        weights: &mut [Weights],
        mut filter: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut walk = SmoothWalk::default();
        for (i, peer) in self.peers.iter().enumerate() {
            if filter(i) && self.is_candidate(i) {
                walk.step(i, peer, weights, self.now_ms);
            }
        }
        walk.finish(weights)
    }

    /// The smooth walk over the peers `listed`, in order, found to be candidates by a walk
    /// of this same pick (`least_conn`'s ties): none is checked again.
    pub(crate) fn smooth_listed(&self, weights: &mut [Weights], listed: &[usize]) -> Option<usize> {
        let mut walk = SmoothWalk::default();
        for &i in listed {
            if let Some(peer) = self.peers.get(i) {
                walk.step(i, peer, weights, self.now_ms);
            }
        }
        walk.finish(weights)
    }
}

/// One pass of nginx's smooth weighted round-robin: each peer stepped over gains its
/// effective weight, and the one with the highest current weight then loses the total.
#[derive(Default)]
struct SmoothWalk {
    best: Option<usize>,
    total: i64,
}

impl SmoothWalk {
    #[inline]
    fn step(&mut self, i: usize, peer: &PeerState, weights: &mut [Weights], now_ms: u64) {
        let w = &mut weights[i];
        let effective = w.effective.min(peer.ramp_cap(now_ms));
        w.current += effective;
        self.total += effective;
        if w.effective < i64::from(peer.weight()) {
            w.effective += 1;
        }
        let current = w.current;
        if self.best.is_none_or(|b| current > weights[b].current) {
            self.best = Some(i);
        }
    }

    #[inline]
    fn finish(self, weights: &mut [Weights]) -> Option<usize> {
        let best = self.best?;
        weights[best].current -= self.total;
        Some(best)
    }
}
