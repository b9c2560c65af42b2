//! `PeerSet`'s failure bookkeeping with requests on two threads at the same moment: nginx
//! does it under its zone's lock, so what it guarantees must hold here too.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::policy::{Candidates, LeastConn, Policy};
use crate::{Peer, PeerSet, Tried};

#[test]
fn a_success_on_another_thread_never_erases_a_failure() {
    // After a failure, `accessed == checked`: nginx resets `fails` on a success only once a
    // pick after `fail_timeout` has moved `checked` on. Successes run meanwhile on another
    // thread; each round's failure must still be counted when its `record` returns.
    const ROUNDS: u64 = 100_000;
    let set = Arc::new(PeerSet::new(&[Peer::new("a", ()), Peer::new("b", ())]));
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let successes = {
        let (set, stop) = (Arc::clone(&set), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(SeqCst) {
                set.record(0, false, t0);
            }
        })
    };
    let mut lost = 0;
    for k in 1..=ROUNDS {
        // Past `fail_timeout` (10 s) since the last failure: the pick moves `checked`.
        let t = t0 + Duration::from_secs(11 * k);
        set.acquire(0, t);
        set.record(0, true, t);
        set.release(0);
        if set.get(0).unwrap().fails() == 0 {
            lost += 1;
        }
    }
    stop.store(true, SeqCst);
    successes.join().unwrap();
    assert_eq!(
        lost, 0,
        "failures erased by a success that came before them"
    );
}

#[test]
fn one_request_probes_a_failed_peer_after_fail_timeout() {
    // nginx sets `checked` as it picks a failed peer whose `fail_timeout` has passed, under
    // its lock: one request tries it, the others skip it for another `fail_timeout`. Here a
    // pick and its count are two steps, and requests on two threads can both pick before
    // either counts: that order, set out step by step.
    let t0 = Instant::now();
    let t = t0 + Duration::from_secs(11);
    let set = PeerSet::new(&[Peer::new("a", ()), Peer::new("b", ()), Peer::new("c", ())]);
    // b and c busy, so that least_conn prefers a; a failed (max_fails 1).
    set.acquire(1, t0);
    set.acquire(2, t0);
    set.record(0, true, t0);
    let tried = Tried::new();
    let pick = || {
        Policy::<()>::pick(
            &LeastConn::new(),
            &Candidates::new(&set, &tried, t),
            &None,
            &mut (),
        )
    };
    assert_eq!(
        (pick(), pick()),
        (Some(0), Some(0)),
        "both pick a before either counts"
    );
    assert!(set.try_acquire(0, t), "the first is a's probe");
    assert!(!set.try_acquire(0, t), "the second must pick again");
    assert_eq!(
        pick(),
        Some(1),
        "a is out until the probe ends or fail_timeout passes"
    );
}
