//! `--busy-poll USECS`: a worker keeps polling its sockets, rather than sleeping, for that
//! long after its last request, as HAProxy's `busy-polling` does.
//!
//! On a virtual machine, a thread that sleeps in `epoll_wait` lets its vCPU halt, and waking
//! it then goes through the hypervisor: tens of microseconds, more than the proxy's own work
//! on a request. A worker that polls with a zero timeout meanwhile is woken by no one. It
//! costs a core's time while it polls: hence the window after the last request, after which
//! the worker sleeps as before, and the default off.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What one worker's requests tell its poller: one per worker, shared by its connections.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Requests so far. Written by the worker's own thread only.
    requests: AtomicU64,
    /// The poller is asleep, waiting for `wake`.
    asleep: AtomicBool,
    wake: Notify,
}

impl Activity {
    /// Counts a request, waking the poller if it sleeps.
    pub(crate) fn request(&self) {
        // One thread writes: a load and a store, no read-modify-write.
        self.requests
            .store(self.requests.load(Relaxed).wrapping_add(1), Relaxed);
        if self.asleep.load(Relaxed) {
            self.asleep.store(false, Relaxed);
            self.wake.notify_one();
        }
    }
}

/// Starts the poller on the current (current-thread) runtime: it yields to the runtime while
/// requests came within `window`, and each time the runtime has nothing else to run it polls
/// its I/O driver without blocking (Tokio's yield). Then it sleeps until the next request.
pub(crate) fn start(window: Duration) -> Arc<Activity> {
    let activity = Arc::new(Activity::default());
    let shared = Arc::clone(&activity);
    tokio::spawn(async move {
        loop {
            let mut seen = shared.requests.load(Relaxed);
            let mut since = Instant::now();
            loop {
                tokio::task::yield_now().await;
                // Lets a process the kernel put on this core run first, not after a slice.
                std::thread::yield_now();
                let now = shared.requests.load(Relaxed);
                if now != seen {
                    (seen, since) = (now, Instant::now());
                } else if since.elapsed() >= window {
                    break;
                }
            }
            // Requests come on this thread, so none is counted between the check above and
            // this; and `notify_one` keeps a permit for a `notified` not yet waiting.
            shared.asleep.store(true, Relaxed);
            shared.wake.notified().await;
        }
    });
    activity
}
