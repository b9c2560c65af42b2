//! The shared, lock-light state of one tier of peers (the primaries or the backups).
//!
//! This is nginx's `ngx_http_upstream_rr_peers_t`: per-peer failure counters, active request
//! counts and the smooth round-robin weights. Everything a [`Policy`] looks at is here, and a
//! `PeerSet` can be built without any service, so policies are tested with no I/O.
//!
//! [`Policy`]: crate::policy::Policy

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::{Counters, Outcome, PeerStats};
use crate::{OutlierDetection, Peer};

/// The run-time state of one peer, shared by every clone of the upstream.
pub struct PeerState {
    name: Arc<str>,
    route: Arc<str>,
    weight: AtomicU32,
    // Configuration, atomic so that a peer kept across a change of membership takes its new
    // parameters (see `PeerSet::rebuild`) while requests in flight use it.
    max_fails: AtomicU32,
    fail_timeout_ms: AtomicU64,
    slow_start_ms: AtomicU64,
    max_conns: AtomicU32,
    epoch: Instant,
    /// When the peer came back, for slow start (ms since the epoch; 0: not ramping).
    recovered_at: AtomicU64,
    counters: Counters,
    /// The set's health generation, shared by its peers: bumped on every change that can
    /// alter the round-robin sequence (a failure, a status change, a recovery).
    generation: Arc<AtomicU64>,
    status: AtomicU8,
    fails: AtomicU32,
    conns: AtomicU32,
    /// Milliseconds since the set's epoch; nginx's `peer->checked`.
    checked: AtomicU64,
    /// Milliseconds since the set's epoch; nginx's `peer->accessed` (last failure).
    accessed: AtomicU64,
    /// Held while a failure is counted (`fails`, `accessed`, `checked`) and while a success
    /// decides whether to reset `fails`, which nginx does under its zone's lock: a success
    /// on another thread cannot then erase a failure.
    failing: Mutex<()>,
    /// Outlier detection: server errors in a row, times ejected, ejected until (ms).
    consecutive_5xx: AtomicU32,
    ejections: AtomicU32,
    ejected_until: AtomicU64,
}

impl PeerState {
    fn new<S>(p: &Peer<S>, epoch: Instant, generation: &Arc<AtomicU64>) -> Self {
        Self {
            name: p.name.clone(),
            route: p.route.clone().unwrap_or_else(|| p.name.clone()),
            weight: AtomicU32::new(p.weight),
            max_fails: AtomicU32::new(p.max_fails),
            fail_timeout_ms: AtomicU64::new(millis_of(p.fail_timeout)),
            slow_start_ms: AtomicU64::new(millis_of(p.slow_start)),
            epoch,
            recovered_at: AtomicU64::new(0),
            generation: Arc::clone(generation),
            counters: Counters::default(),
            max_conns: AtomicU32::new(p.max_conns),
            status: AtomicU8::new(if p.down {
                PeerStatus::Down
            } else {
                PeerStatus::Active
            } as u8),
            fails: AtomicU32::new(0),
            conns: AtomicU32::new(0),
            checked: AtomicU64::new(0),
            accessed: AtomicU64::new(0),
            failing: Mutex::new(()),
            consecutive_5xx: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// The peer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The peer's route (for session affinity).
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The configured weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    /// The configured `max_fails`.
    pub fn max_fails(&self) -> u32 {
        self.max_fails.load(Relaxed)
    }

    /// The configured `fail_timeout`.
    pub fn fail_timeout(&self) -> Duration {
        Duration::from_millis(self.fail_timeout_ms.load(Relaxed))
    }

    /// The configured `max_conns` (0 = unlimited).
    pub fn max_conns(&self) -> u32 {
        self.max_conns.load(Relaxed)
    }

    /// The peer's administrative status.
    pub fn status(&self) -> PeerStatus {
        PeerStatus::from_u8(self.status.load(Relaxed))
    }

    /// Changes the peer's status; every clone of the upstream sees it at once. A peer that
    /// becomes `Active` again starts its slow start, if it has one.
    pub fn set_status(&self, status: PeerStatus) {
        let old = self.status.swap(status as u8, Relaxed);
        if old != status as u8 {
            self.generation.fetch_add(1, Relaxed);
        }
        if status == PeerStatus::Active && old != PeerStatus::Active as u8 {
            self.recovered(Instant::now());
        }
    }

    fn recovered(&self, now: Instant) {
        self.generation.fetch_add(1, Relaxed);
        if self.slow_start_ms.load(Relaxed) != 0 {
            let ms = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
            self.recovered_at.store(ms, Relaxed);
        }
    }

    /// The most `effective_weight` slow start allows at `now_ms`: the full weight once the
    /// slow start is over, else in proportion to the time since the peer came back (at
    /// least 1).
    #[inline]
    pub(crate) fn ramp_cap(&self, now_ms: u64) -> i64 {
        let weight = i64::from(self.weight());
        let since = self.recovered_at.load(Relaxed);
        if since == 0 {
            return weight;
        }
        let elapsed = now_ms.saturating_sub(since);
        // Read once: a change of membership may set it meanwhile, to 0 too.
        let slow_start = self.slow_start_ms.load(Relaxed);
        if elapsed >= slow_start {
            return weight;
        }
        let cap = u128::from(self.weight()) * u128::from(elapsed) / u128::from(slow_start);
        (cap as i64).max(1)
    }

    /// Takes `p`'s parameters, keeping the run-time state (requests in flight, failures,
    /// statistics): `max_fails`, `fail_timeout`, `max_conns`, `slow_start`, and `down`, which
    /// marks it down (a peer not configured `down` keeps the status it has). The weight is
    /// the caller's, with the round-robin state; the name and route stay.
    fn configure<S>(&self, p: &Peer<S>) {
        self.max_fails.store(p.max_fails, Relaxed);
        self.fail_timeout_ms
            .store(millis_of(p.fail_timeout), Relaxed);
        self.slow_start_ms.store(millis_of(p.slow_start), Relaxed);
        self.max_conns.store(p.max_conns, Relaxed);
        if p.down {
            self.set_status(PeerStatus::Down);
        }
    }

    /// `fails >= max_fails`, with failures counted (`max_fails` not 0).
    fn failed_out(&self) -> bool {
        let max = self.max_fails();
        max != 0 && self.fails.load(Relaxed) >= max
    }

    /// Whether the peer is marked down.
    pub fn is_down(&self) -> bool {
        self.status() == PeerStatus::Down
    }

    /// Marks the peer down (never chosen) or active again.
    pub fn set_down(&self, down: bool) {
        self.set_status(if down {
            PeerStatus::Down
        } else {
            PeerStatus::Active
        });
    }

    /// Failures counted since the last reset (nginx `peer->fails`).
    pub fn fails(&self) -> u32 {
        self.fails.load(Relaxed)
    }

    /// Requests in flight to this peer (nginx `peer->conns`).
    pub fn active(&self) -> u32 {
        self.conns.load(Relaxed)
    }
}

impl fmt::Debug for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerState")
            .field("name", &self.name)
            .field("weight", &self.weight())
            .field("status", &self.status())
            .field("fails", &self.fails())
            .field("active", &self.active())
            .finish()
    }
}

/// A peer's administrative status, changeable at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerStatus {
    /// Takes new requests and sessions.
    Active = 0,
    /// Serves only requests pinned to it by session affinity; takes no new session
    /// (mod_jk `activation=D`, nginx Plus `drain`). For rolling restarts without replication.
    Draining = 1,
    /// Takes nothing (nginx `down`).
    Down = 2,
}

impl PeerStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Active,
            1 => Self::Draining,
            _ => Self::Down,
        }
    }
}

/// Smooth weighted round-robin state of one peer (nginx `current_weight`/`effective_weight`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weights {
    /// nginx `current_weight`.
    pub current: i64,
    /// nginx `effective_weight`: drops on failure, climbs back by one per pick.
    pub effective: i64,
}

/// One tier of peers: the primaries or the backups of an upstream.
///
/// ```
/// use tower_upstream::{Peer, PeerSet};
///
/// let set = PeerSet::new(&[Peer::new("a", ()).weight(2), Peer::new("b", ())]);
/// assert_eq!(set.len(), 2);
/// assert_eq!(set.total_weight(), 3);
/// assert_eq!(set.get(1).unwrap().name(), "b");
/// ```
pub struct PeerSet {
    peers: Box<[Arc<PeerState>]>,
    weights: Mutex<Box<[Weights]>>,
    total_weight: u64,
    single: bool,
    epoch: Instant,
    outlier: Option<OutlierDetection>,
    generation: Arc<AtomicU64>,
    /// Held while deciding an ejection, so that peers failing together on several threads
    /// cannot all pass the cap; shared with the sets rebuilt from this one.
    ejecting: Arc<Mutex<()>>,
}

impl PeerSet {
    /// A set made of these peers' parameters (their services are not kept).
    ///
    /// A set of one peer is nginx's "single" case: its failures are not counted.
    pub fn new<S>(peers: &[Peer<S>]) -> Self {
        Self::build(peers, peers.len() == 1)
    }

    pub(crate) fn build<S>(peers: &[Peer<S>], single: bool) -> Self {
        Self::rebuild(peers, single, None)
    }

    /// A set of `peers`; those already in `previous` (same name) keep their state, their
    /// counters and their round-robin weights, so a change of membership disturbs nobody
    /// else, and take their new parameters (see `PeerState::configure`). In-flight requests
    /// still hold `previous` and finish on it.
    pub(crate) fn rebuild<S>(peers: &[Peer<S>], single: bool, previous: Option<&PeerSet>) -> Self {
        let epoch = previous.map_or_else(Instant::now, |p| p.epoch);
        let generation = previous.map_or_else(
            || Arc::new(AtomicU64::new(0)),
            |p| Arc::clone(&p.generation),
        );
        let old = |name: &str| {
            let set = previous?;
            let i = set.peers.iter().position(|p| &*p.name == name)?;
            Some((Arc::clone(&set.peers[i]), set.weights()[i]))
        };
        let mut states = Vec::with_capacity(peers.len());
        let mut weights = Vec::with_capacity(peers.len());
        for p in peers {
            match old(&p.name) {
                Some((state, w)) => {
                    state.configure(p);
                    let changed = state.weight.swap(p.weight, Relaxed) != p.weight;
                    weights.push(if changed {
                        Weights {
                            current: w.current,
                            effective: i64::from(p.weight),
                        }
                    } else {
                        w
                    });
                    states.push(state);
                }
                None => {
                    weights.push(Weights {
                        current: 0,
                        effective: i64::from(p.weight),
                    });
                    states.push(Arc::new(PeerState::new(p, epoch, &generation)));
                }
            }
        }
        generation.fetch_add(1, Relaxed);
        Self {
            total_weight: peers.iter().map(|p| u64::from(p.weight)).sum(),
            peers: states.into(),
            weights: Mutex::new(weights.into()),
            single,
            epoch,
            generation,
            outlier: previous.and_then(|p| p.outlier),
            ejecting: previous.map_or_else(Default::default, |p| Arc::clone(&p.ejecting)),
        }
    }

    /// Number of peers, `down` ones included.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the set has no peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Sum of all weights, `down` peers included (nginx `peers->total_weight`).
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// nginx `peers->single`: one primary and no backup, so failures are not counted.
    pub fn is_single(&self) -> bool {
        self.single
    }

    /// The peer at `index`.
    pub fn get(&self, index: usize) -> Option<&PeerState> {
        self.peers.get(index).map(|p| &**p)
    }

    /// The shared state of the peer at `index`, which outlives membership changes.
    pub fn get_shared(&self, index: usize) -> Option<Arc<PeerState>> {
        self.peers.get(index).cloned()
    }

    /// All peers in configuration order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &PeerState> {
        self.peers.iter().map(|p| &**p)
    }

    /// Counts the outcome of one attempt on peer `index` in its statistics.
    pub(crate) fn count(&self, index: usize, outcome: Outcome, elapsed: Duration, now: Instant) {
        let now = self.millis(now);
        self.peers[index].counters.count(outcome, elapsed, now);
    }

    /// Counts a response with a listed status as a failure too.
    pub(crate) fn count_listed(&self, index: usize, now: Instant) {
        let now = self.millis(now);
        self.peers[index].counters.count_listed(now);
    }

    /// A snapshot of every peer's state and counters.
    pub fn stats(&self, backup: bool, now: Instant) -> Vec<PeerStats> {
        let now_ms = self.millis(now);
        let weights = self.weights().clone();
        self.peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (requests, responses, failures, last, response_time) = p.counters.snapshot();
                PeerStats {
                    name: p.name.to_string(),
                    route: p.route.to_string(),
                    backup,
                    status: p.status(),
                    available: self.is_available_at(i, now_ms),
                    unavailable_for: self.unavailable_until(p, now_ms).map(Duration::from_millis),
                    weight: p.weight(),
                    effective_weight: weights[i].effective,
                    fails: p.fails(),
                    active: p.active(),
                    requests,
                    responses,
                    failures,
                    last_failure: (last != 0)
                        .then(|| Duration::from_millis(now_ms.saturating_sub(last))),
                    response_time,
                }
            })
            .collect()
    }

    /// How many milliseconds more peer `p` stays out because of its failures or an
    /// ejection (`None`: neither keeps it out at `now_ms`).
    fn unavailable_until(&self, p: &PeerState, now_ms: u64) -> Option<u64> {
        let failed = !self.single && p.failed_out();
        // `is_usable_at` keeps a failed peer out while `now - checked <= fail_timeout`.
        let back = if failed {
            p.checked
                .load(Relaxed)
                .saturating_add(p.fail_timeout_ms.load(Relaxed))
                .saturating_add(1)
        } else {
            0
        };
        let back = back.max(p.ejected_until.load(Relaxed));
        (back > now_ms).then(|| back - now_ms)
    }

    /// The health generation: it changes whenever a failure, a status change or a recovery
    /// may change the round-robin sequence.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Whether every peer can take a new request at `now` with its full weight: the
    /// steady state in which the smooth round-robin sequence is a fixed cycle.
    pub(crate) fn all_healthy(&self, weights: &[Weights], now_ms: u64) -> bool {
        self.peers
            .iter()
            .zip(weights)
            .enumerate()
            .all(|(i, (p, w))| {
                w.effective == i64::from(p.weight())
                    && p.ramp_cap(now_ms) == i64::from(p.weight())
                    && self.is_available_at(i, now_ms)
            })
    }

    /// Locks the smooth round-robin weights. Policies that update weights hold this lock for
    /// the whole pick, as nginx holds the upstream's lock.
    pub fn weights(&self) -> MutexGuard<'_, Box<[Weights]>> {
        // A panic while holding the lock cannot leave the integers inconsistent in a way
        // that matters more than refusing service would, so poisoning is ignored.
        self.weights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `now` as milliseconds since the set was made, offset by one so that "never" (0) is
    /// always in the past.
    pub(crate) fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// Whether peer `index` may be chosen at `now`: not down, not failed within
    /// `fail_timeout` (`fails >= max_fails`), not at `max_conns`.
    pub fn is_available(&self, index: usize, now: Instant) -> bool {
        self.is_available_at(index, self.millis(now))
    }

    #[inline]
    pub(crate) fn is_available_at(&self, index: usize, now_ms: u64) -> bool {
        self.is_usable_at(index, now_ms, false)
    }

    /// Whether peer `index` may serve a request that is pinned to it by session affinity:
    /// like [`PeerSet::is_available`], but a `Draining` peer still serves its sessions.
    pub fn is_available_for_session(&self, index: usize, now: Instant) -> bool {
        self.is_usable_at(index, self.millis(now), true)
    }

    #[inline]
    fn is_usable_at(&self, index: usize, now_ms: u64, draining_ok: bool) -> bool {
        let Some(p) = self.peers.get(index) else {
            return false;
        };
        match PeerStatus::from_u8(p.status.load(Relaxed)) {
            PeerStatus::Active => {}
            PeerStatus::Draining if draining_ok => {}
            _ => return false,
        }
        if !self.single
            && p.failed_out()
            && now_ms.saturating_sub(p.checked.load(Relaxed)) <= p.fail_timeout_ms.load(Relaxed)
        {
            return false;
        }
        if p.ejected_until.load(Relaxed) > now_ms {
            return false;
        }
        let max = p.max_conns();
        max == 0 || p.conns.load(Relaxed) < max
    }

    /// Counts a request to peer `index` as started (nginx's bookkeeping after a pick):
    /// `conns += 1`, and `checked` moves to `now` once `fail_timeout` has passed since the
    /// last check, which lets the next success reset the failure count.
    pub fn acquire(&self, index: usize, now: Instant) {
        self.acquire_at(index, self.millis(now));
    }

    fn acquire_at(&self, index: usize, now_ms: u64) {
        let p = &self.peers[index];
        let before = p.conns.fetch_add(1, Relaxed);
        self.counted(index, before, now_ms);
    }

    /// [`PeerSet::acquire`] unless peer `index` is at its `max_conns`: whether it was counted.
    ///
    /// A pick and its count are two steps, and another thread's request may fill the peer
    /// between them; nginx, whose shared peers are locked for both, never sends more than
    /// `max_conns`. Neither does the [`Upstream`](crate::Upstream), which counts with this
    /// and picks again when it fails.
    pub fn try_acquire(&self, index: usize, now: Instant) -> bool {
        let p = &self.peers[index];
        let now_ms = self.millis(now);
        let probe = self.claim_probe(p, now_ms);
        if let Probe::Taken = probe {
            return false;
        }
        let max = p.max_conns();
        if max == 0 {
            self.acquire_at(index, now_ms);
            return true;
        }
        let counted = p
            .conns
            .fetch_update(Relaxed, Relaxed, |c| (c < max).then_some(c + 1));
        match counted {
            Ok(before) => {
                self.counted(index, before, now_ms);
                true
            }
            Err(_) => {
                if let Probe::Claimed { before, at } = probe {
                    // Not sent after all: the probe is for another request to make.
                    let _ = p.checked.compare_exchange(at, before, Relaxed, Relaxed);
                }
                false
            }
        }
    }

    /// For a peer out after `max_fails` failures whose `fail_timeout` has passed, claims the
    /// one request that tries it again, by moving `checked` to `now_ms` as nginx does when it
    /// picks it.
    fn claim_probe(&self, p: &PeerState, now_ms: u64) -> Probe {
        if self.single || !p.failed_out() {
            return Probe::NotOut;
        }
        let checked = p.checked.load(Relaxed);
        let due = now_ms.saturating_sub(checked) > p.fail_timeout_ms.load(Relaxed);
        if due
            && p.checked
                .compare_exchange(checked, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            Probe::Claimed {
                before: checked,
                at: now_ms,
            }
        } else {
            Probe::Taken
        }
    }

    /// The rest of nginx's bookkeeping after peer `index`'s count went from `before` up by one.
    fn counted(&self, index: usize, before: u32, now: u64) {
        let p = &self.peers[index];
        let max = p.max_conns();
        if max != 0 && before + 1 == max {
            // Full: it stops being a candidate, which changes the round-robin sequence.
            self.generation.fetch_add(1, Relaxed);
        }
        let checked = p.checked.load(Relaxed);
        if now.saturating_sub(checked) > p.fail_timeout_ms.load(Relaxed) {
            let _ = p.checked.compare_exchange(checked, now, Relaxed, Relaxed);
        }
    }

    /// Forgets peer `index`'s failures, as if it had just succeeded after a check.
    pub fn reset_fails(&self, index: usize) {
        self.peers[index].fails.store(0, Relaxed);
        self.generation.fetch_add(1, Relaxed);
    }

    /// Counts a request to peer `index` as finished (`conns -= 1`).
    pub fn release(&self, index: usize) {
        let p = &self.peers[index];
        let before = p
            .conns
            .fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_sub(1)))
            .unwrap_or(0);
        let max = p.max_conns();
        if max != 0 && before == max {
            self.generation.fetch_add(1, Relaxed);
        }
    }

    /// Records the outcome of a request to peer `index`, as nginx's `free_round_robin_peer`.
    ///
    /// A failure increments `fails`, stamps `accessed`/`checked` and lowers the peer's
    /// `effective_weight` by `weight / max_fails`. A success resets `fails` only when a check
    /// has happened since the last failure (`accessed < checked`).
    pub fn record(&self, index: usize, failed: bool, now: Instant) {
        let p = &self.peers[index];
        if self.single {
            p.fails.store(0, Relaxed);
            return;
        }
        if failed {
            self.generation.fetch_add(1, Relaxed);
            let now = self.millis(now);
            let fails = {
                let _counting = lock(&p.failing);
                p.accessed.store(now, Relaxed);
                p.checked.store(now, Relaxed);
                p.fails.fetch_add(1, Relaxed) + 1
            };
            if let Some(drop) = p.weight().checked_div(p.max_fails()) {
                let mut w = self.weights();
                let e = &mut w[index].effective;
                *e = (*e - i64::from(drop)).max(0);
                if fails >= p.max_fails() {
                    tracing::warn!(peer = %p.name, fails, "upstream server temporarily disabled");
                }
            }
        } else if p.fails.load(Relaxed) != 0 {
            // Nothing to reset, nearly always: no lock then.
            let _deciding = lock(&p.failing);
            if p.accessed.load(Relaxed) < p.checked.load(Relaxed) {
                let fails = p.fails.swap(0, Relaxed);
                let max = p.max_fails();
                if max != 0 && fails >= max {
                    p.recovered(now);
                }
            }
        }
    }
}

impl PeerSet {
    /// Turns on outlier detection for this set.
    pub fn with_outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// Whether peer `index` is ejected by outlier detection at `now`.
    pub fn is_ejected(&self, index: usize, now: Instant) -> bool {
        let now = self.millis(now);
        self.peers
            .get(index)
            .is_some_and(|p| p.ejected_until.load(Relaxed) > now)
    }

    /// Feeds outlier detection with the outcome of a request to peer `index`:
    /// `server_error` for a 5xx response, a failed connection or a timeout.
    pub fn observe(&self, index: usize, server_error: bool, now: Instant) {
        let Some(od) = self.outlier else { return };
        let p = &self.peers[index];
        let now_ms = self.millis(now);
        if !server_error {
            p.consecutive_5xx.store(0, Relaxed);
            // Behaved for one base ejection time since coming back: one ejection off.
            let back = p.ejected_until.load(Relaxed);
            let base = od.base_ejection_time.as_millis() as u64;
            if back != 0 && now_ms > back.saturating_add(base) {
                let _ = p
                    .ejections
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
                let _ = p
                    .ejected_until
                    .compare_exchange(back, now_ms, Relaxed, Relaxed);
            }
            return;
        }
        if p.consecutive_5xx.fetch_add(1, Relaxed) + 1 < od.consecutive_5xx {
            return;
        }
        // Rare (a threshold reached), so a lock costs nothing that matters here.
        let _deciding = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let ejected = self
            .peers
            .iter()
            .filter(|q| q.ejected_until.load(Relaxed) > now_ms)
            .count();
        if ejected >= od.max_ejected(self.peers.len()) {
            return;
        }
        p.consecutive_5xx.store(0, Relaxed);
        self.generation.fetch_add(1, Relaxed);
        let n = p.ejections.fetch_add(1, Relaxed) + 1;
        let time = od.ejection_time(n);
        p.ejected_until
            .store(now_ms.saturating_add(time.as_millis() as u64), Relaxed);
        tracing::warn!(peer = %p.name, ejections = n, ?time, "upstream peer ejected as an outlier");
    }
}

impl fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSet")
            .field("peers", &self.peers)
            .field("total_weight", &self.total_weight)
            .field("single", &self.single)
            .finish()
    }
}

/// The peers already tried by one request (nginx `rrp->tried`), a small bit set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tried {
    low: u64,
    high: Vec<u64>,
}

impl Tried {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether peer `index` was tried.
    #[inline]
    pub fn contains(&self, index: usize) -> bool {
        if index < 64 {
            self.low & (1 << index) != 0
        } else {
            let i = index / 64 - 1;
            self.high
                .get(i)
                .is_some_and(|w| w & (1 << (index % 64)) != 0)
        }
    }

    /// Marks peer `index` as tried.
    pub fn insert(&mut self, index: usize) {
        if index < 64 {
            self.low |= 1 << index;
        } else {
            let i = index / 64 - 1;
            if self.high.len() <= i {
                self.high.resize(i + 1, 0);
            }
            self.high[i] |= 1 << (index % 64);
        }
    }

    /// Whether no peer was tried.
    pub fn is_empty(&self) -> bool {
        self.low == 0 && self.high.iter().all(|&w| w == 0)
    }

    /// Forgets every peer (nginx does this when it moves on to the backup peers).
    pub fn clear(&mut self) {
        self.low = 0;
        self.high.clear();
    }
}

impl fmt::Debug for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = 64 * (1 + self.high.len());
        f.debug_set()
            .entries((0..n).filter(|&i| self.contains(i)))
            .finish()
    }
}

/// What [`PeerSet::claim_probe`] found.
enum Probe {
    /// The peer is not out for failures: no probe to claim.
    NotOut,
    /// This request is the peer's probe; `checked` moved from `before` to `at`.
    Claimed { before: u64, at: u64 },
    /// Another request claimed the probe first.
    Taken,
}

/// A duration in whole milliseconds, saturating.
fn millis_of(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// A lock over nothing but the order of a peer's bookkeeping: a panic cannot leave it broken.
fn lock(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[path = "peer_set_threads.rs"]
mod threads;

#[cfg(test)]
mod tests {
    use super::*;

    fn set(weights: &[u32]) -> PeerSet {
        let peers: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Peer::new(format!("p{i}"), ()).weight(w))
            .collect();
        PeerSet::new(&peers)
    }

    #[test]
    fn tried_bits_beyond_64() {
        let mut t = Tried::new();
        for i in [0, 5, 63, 64, 200, 4095] {
            assert!(!t.contains(i));
            t.insert(i);
            assert!(t.contains(i));
        }
        assert!(!t.contains(1) && !t.contains(65) && !t.contains(4094));
        t.clear();
        assert!(!t.contains(4095) && !t.contains(0));
    }

    #[tokio::test(start_paused = true)]
    async fn max_fails_and_fail_timeout() {
        let s = set(&[1, 1]);
        let now = Instant::now();
        assert!(s.is_available(0, now));
        s.acquire(0, now);
        s.record(0, true, now);
        s.release(0);
        // max_fails=1: one failure disables the peer for fail_timeout (10 s).
        assert!(!s.is_available(0, now));
        assert!(!s.is_available(0, now + Duration::from_secs(10)));
        let later = now + Duration::from_millis(10_001);
        assert!(s.is_available(0, later));
        // The probe after fail_timeout: a success resets the counter.
        s.acquire(0, later);
        s.record(0, false, later);
        assert_eq!(s.get(0).unwrap().fails(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn success_inside_fail_timeout_does_not_reset() {
        let peers = [Peer::new("a", ()).max_fails(3), Peer::new("b", ())];
        let s3 = PeerSet::new(&peers);
        let now = Instant::now();
        s3.record(0, true, now);
        s3.acquire(0, now);
        s3.record(0, false, now + Duration::from_secs(1));
        assert_eq!(s3.get(0).unwrap().fails(), 1, "nginx keeps counting");
    }

    #[test]
    fn failure_lowers_effective_weight() {
        let peers = [
            Peer::new("a", ()).weight(6).max_fails(3),
            Peer::new("b", ()),
        ];
        let s = PeerSet::new(&peers);
        s.record(0, true, Instant::now());
        assert_eq!(s.weights()[0].effective, 4);
        for _ in 0..5 {
            s.record(0, true, Instant::now());
        }
        assert_eq!(s.weights()[0].effective, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stats_say_how_long_a_peer_stays_out() {
        use crate::stats::PeerHealth;
        let peers = [
            Peer::new("failed", ()),
            Peer::new("ejected", ()).max_fails(0),
            Peer::new("full", ()).max_conns(1),
            Peer::new("spare", ()),
        ];
        let s = PeerSet::new(&peers).with_outlier_detection(
            OutlierDetection::new()
                .consecutive_5xx(1)
                .base_ejection_time(Duration::from_secs(30))
                .max_ejection_percent(100),
        );
        let now = Instant::now();
        s.record(0, true, now); // max_fails=1: out for fail_timeout (10 s)
        s.observe(1, true, now); // ejected for 30 s
        s.acquire(2, now);
        let stats = s.stats(false, now + Duration::from_secs(4));
        let health: Vec<_> = stats
            .iter()
            .map(|p| (p.health(), p.unavailable_for))
            .collect();
        assert_eq!(
            health,
            [
                // fail_timeout is over 10 s after the failure, plus nginx's one tick.
                (PeerHealth::Unavailable, Some(Duration::from_millis(6_001))),
                (PeerHealth::Unavailable, Some(Duration::from_secs(26))),
                (PeerHealth::Full, None),
                (PeerHealth::Up, None),
            ]
        );
        let later = s.stats(false, now + Duration::from_secs(11));
        assert_eq!(
            later[0].health(),
            PeerHealth::Up,
            "one probe is let through"
        );
        assert_eq!(later[0].unavailable_for, None);
        assert_eq!(later[1].unavailable_for, Some(Duration::from_secs(19)));
        s.get(3).unwrap().set_status(PeerStatus::Draining);
        assert_eq!(s.stats(false, now)[3].health(), PeerHealth::Draining);
        s.get(3).unwrap().set_down(true);
        assert_eq!(s.stats(false, now)[3].health(), PeerHealth::Down);
    }

    #[test]
    fn single_peer_ignores_failures_and_max_conns_limits() {
        let s = PeerSet::new(&[Peer::new("a", ()).max_conns(1)]);
        let now = Instant::now();
        s.record(0, true, now);
        assert!(
            s.is_available(0, now),
            "nginx ignores max_fails for a single peer"
        );
        s.acquire(0, now);
        assert!(!s.is_available(0, now), "max_conns still applies");
        s.release(0);
        assert!(s.is_available(0, now));
    }

    #[test]
    fn try_acquire_stops_at_max_conns() {
        let s = PeerSet::new(&[Peer::new("a", ()).max_conns(2), Peer::new("b", ())]);
        let now = Instant::now();
        assert!(s.try_acquire(0, now) && s.try_acquire(0, now));
        assert!(!s.try_acquire(0, now), "full");
        assert_eq!(
            s.get(0).unwrap().active(),
            2,
            "a refused request is not counted"
        );
        s.release(0);
        assert!(s.try_acquire(0, now));
        // Without max_conns, always counted.
        assert!((0..100).all(|_| s.try_acquire(1, now)));
        assert_eq!(s.get(1).unwrap().active(), 100);
    }

    #[test]
    fn a_kept_peer_takes_its_new_parameters_and_keeps_its_state() {
        let now = Instant::now();
        let before = PeerSet::new(&[Peer::new("a", ()), Peer::new("b", ())]);
        before.acquire(0, now);
        before.record(0, true, now);
        let changed = Peer::new("a", ())
            .weight(3)
            .max_conns(1)
            .max_fails(5)
            .fail_timeout(Duration::from_secs(60))
            .down();
        let after = PeerSet::rebuild(&[changed, Peer::new("b", ())], false, Some(&before));
        let a = after.get(0).unwrap();
        assert_eq!(
            (a.weight(), a.max_conns(), a.max_fails(), a.fail_timeout()),
            (3, 1, 5, Duration::from_secs(60))
        );
        assert!(a.is_down());
        assert_eq!(
            (a.active(), a.fails()),
            (1, 1),
            "in flight and failed, as before"
        );
        // The request in flight ends on the set it started with: the state is one.
        before.release(0);
        assert_eq!(after.get(0).unwrap().active(), 0);
    }

    #[test]
    fn a_probe_refused_by_max_conns_is_left_for_the_next_request() {
        let s = PeerSet::new(&[Peer::new("a", ()).max_conns(1), Peer::new("b", ())]);
        let t0 = Instant::now();
        assert!(s.try_acquire(0, t0));
        s.record(0, true, t0); // out for fail_timeout (10 s), one request still in flight
        let t = t0 + Duration::from_secs(11);
        assert!(!s.try_acquire(0, t), "full");
        s.release(0);
        assert!(
            s.is_available(0, t),
            "the refused request did not use up the probe"
        );
        assert!(s.try_acquire(0, t), "the probe");
        s.release(0); // room again: only the probe keeps it out now
        assert!(!s.is_available(0, t), "one probe per fail_timeout");
    }
}
