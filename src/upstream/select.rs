//! Choosing the next peer for one request: session affinity first, then the policy over
//! the primaries, then over the backups (nginx's per-request peer data).

use tokio::time::Instant;

use super::members::Members;
use super::{Shared, Tier};
use crate::affinity::{rendezvous, AffinityDecision, AffinitySource, Place, Resolved, Sticky};
use crate::policy::{BuildIndex, Candidates, Policy};
use crate::Tried;

/// Where one request stands in its choice of peers.
pub(crate) struct Selection<K> {
    key: K,
    initial: K,
    /// Peers tried, per tier (primaries, backups).
    tried: [Tried; 2],
    in_backup: bool,
    attempted: bool,
    pub(crate) sticky: Sticky,
    /// The affinity fallback refused to move the session (`Fallback::Strict`).
    pub(crate) refused: bool,
    pub(crate) fallback: bool,
    pub(crate) last_backup: bool,
}

impl<K: Clone> Selection<K> {
    pub(crate) fn new(key: K, sticky: Sticky) -> Self {
        Self {
            initial: key.clone(),
            key,
            tried: [Tried::new(), Tried::new()],
            in_backup: false,
            attempted: false,
            sticky,
            refused: false,
            fallback: false,
            last_backup: false,
        }
    }

    /// What affinity decided, for the response extension.
    pub(crate) fn decision(&self, policy_source: Option<AffinitySource>) -> AffinityDecision {
        AffinityDecision {
            source: self
                .sticky
                .source
                .or(policy_source)
                .unwrap_or(AffinitySource::None),
            route: self.sticky.route.clone(),
            fallback: self.fallback,
        }
    }
}

impl<S, P> Members<S, P>
where
    P: BuildIndex,
{
    fn tier(&self, backup: bool) -> Option<&Tier<S, P>> {
        if backup {
            self.backup.as_ref()
        } else {
            Some(&self.primary)
        }
    }

    /// Picks the next peer for a request and marks it tried.
    pub(crate) fn select<Req>(
        &self,
        shared: &Shared<S, P>,
        sel: &mut Selection<P::Key>,
        now: Instant,
    ) -> Option<(&Tier<S, P>, usize)>
    where
        P: Policy<Req>,
    {
        let first = !std::mem::replace(&mut sel.attempted, true);
        let found = self.select_once(shared, sel, now);
        let found = match found {
            Some(found) => Some(found),
            None if shared.quick_recovery && first && !sel.refused => {
                // Every peer failed: forget the failures and try once more (old nginx).
                tracing::warn!(upstream = %shared.name, "all peers failed; resetting their failures");
                for tier in std::iter::once(&self.primary).chain(&self.backup) {
                    for i in 0..tier.peers.len() {
                        tier.peers.reset_fails(i);
                    }
                }
                self.select_once(shared, sel, now)
            }
            None => None,
        };
        let (backup, i) = found?;
        sel.tried[usize::from(backup)].insert(i);
        sel.last_backup = backup;
        Some((self.tier(backup)?, i))
    }

    fn select_once<Req>(
        &self,
        shared: &Shared<S, P>,
        sel: &mut Selection<P::Key>,
        now: Instant,
    ) -> Option<Place>
    where
        P: Policy<Req>,
    {
        let policy = &shared.policy;
        if let (Some(table), Some(pin)) = (&self.affinity, sel.sticky.pin) {
            return self.select_pinned(table.fallback, pin, sel, now);
        }
        if !sel.in_backup {
            let tried = &sel.tried[0];
            if let Some(i) = self.pick_in(policy, &self.primary, &mut sel.key, tried, now) {
                return Some((false, i));
            }
            self.backup.as_ref()?;
            sel.in_backup = true;
            sel.key = sel.initial.clone();
        }
        let backup = self.backup.as_ref()?;
        let i = self.pick_in(policy, backup, &mut sel.key, &sel.tried[1], now)?;
        Some((true, i))
    }

    /// A request pinned to `pin`: that peer if it can serve, else the fallback.
    fn select_pinned<K>(
        &self,
        fallback: Resolved,
        pin: Place,
        sel: &mut Selection<K>,
        now: Instant,
    ) -> Option<Place> {
        if self.can_serve(pin, sel, now, true) {
            return Some(pin);
        }
        sel.fallback = true;
        match fallback {
            Resolved::Strict => {
                sel.refused = true;
                None
            }
            Resolved::Backup(place) => self.can_serve(place, sel, now, false).then_some(place),
            Resolved::Rebalance => {
                let key = sel.sticky.key.as_deref().unwrap_or_default().as_bytes();
                [false, true].into_iter().find_map(|backup| {
                    let tier = self.tier(backup)?;
                    let candidates = tier
                        .peers
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| self.can_serve((backup, i), sel, now, false))
                        .map(|(i, p)| (i, p.name(), p.weight()));
                    rendezvous::pick(key, candidates).map(|i| (backup, i))
                })
            }
        }
    }

    /// Whether the peer at `place` is untried and available (a `Draining` peer only for its
    /// own sessions).
    fn can_serve<K>(
        &self,
        (backup, i): Place,
        sel: &Selection<K>,
        now: Instant,
        own: bool,
    ) -> bool {
        let Some(tier) = self.tier(backup) else {
            return false;
        };
        if sel.tried[usize::from(backup)].contains(i) {
            return false;
        }
        if own {
            tier.peers.is_available_for_session(i, now)
        } else {
            tier.peers.is_available(i, now)
        }
    }

    /// nginx's `peer.tries`: the peers that are not down, primaries and backups.
    pub(crate) fn tries(&self) -> u32 {
        std::iter::once(&self.primary)
            .chain(&self.backup)
            .flat_map(|t| t.peers.iter())
            .filter(|p| !p.is_down())
            .count() as u32
    }

    fn pick_in<Req>(
        &self,
        policy: &P,
        tier: &Tier<S, P>,
        key: &mut P::Key,
        tried: &Tried,
        now: Instant,
    ) -> Option<usize>
    where
        P: Policy<Req>,
    {
        let candidates = Candidates::new(&tier.peers, tried, now);
        if tier.peers.is_single() {
            return candidates.is_candidate(0).then_some(0);
        }
        policy.pick(&candidates, &tier.index, key)
    }
}
