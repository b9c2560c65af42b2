//! One peer's keep-alive connections: LIFO stacks of idle HTTP/1.1 connections, one per
//! thread.
//!
//! hyper-util's pool keys every checkout by scheme and authority in a hash map and spawns a
//! task per request to notice when a connection is idle again. A peer talks to one authority,
//! so its pool is a plain `Vec` behind a mutex; a connection goes back when its response body
//! has been read to the end (see `PeerBody`).
//!
//! Each thread has its own stack, as each nginx worker has its own `keepalive` cache: a
//! socket is registered with the I/O driver of the runtime that opened it, so using it from
//! another runtime pays a cross-thread wake-up on every event, and threads would contend for
//! one lock. On a multi-thread runtime, whose workers share one I/O driver, a thread whose
//! stack is empty takes another thread's idle connection rather than open one; on
//! current-thread runtimes (one per worker, like nginx's processes) it opens its own.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::connect::Target;
use http::uri::Authority;
use http::HeaderValue;

/// Settings shared by every pool of one [`HttpClient`](super::HttpClient).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
}

/// The connections to one authority.
pub(crate) struct Pool {
    pub(crate) config: Arc<Config>,
    pub(crate) authority: Authority,
    /// `Host` for requests that have none, as hyper-util's client would add.
    pub(crate) host: HeaderValue,
    pub(crate) target: Target,
    /// One stack per thread slot, most recently used last: it is the least likely to have
    /// been closed by the peer.
    idle: Box<[Mutex<Vec<Idle>>]>,
    reaper_running: AtomicBool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    /// This thread's stack.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        lock(&self.idle[thread_slot() % self.idle.len()])
    }

    /// The most recently used open connection this thread may use, if any. Closed and
    /// expired ones are dropped.
    ///
    /// One this thread opened, from its own stack, first. Then, where the runtime's workers
    /// share one I/O driver (a multi-thread runtime), any other: better than a new one, and
    /// the number of connections stays bounded by the requests in flight. A socket opened by
    /// another current-thread runtime is never taken: each of its events would wake that
    /// runtime's thread, which then wakes this one (this made 2 workers slower than 1).
    pub(crate) fn checkout(&self) -> Option<Conn> {
        let me = thread_slot();
        let own = me % self.idle.len();
        let others = (1..self.idle.len()).map(|i| (own + i) % self.idle.len());
        // Asked at most once: when a connection opened elsewhere comes up, or before other
        // threads' stacks are searched.
        let mut shared_driver = None;
        for slot in std::iter::once(own).chain(others) {
            if slot != own && !*shared_driver.get_or_insert_with(runtime_shares_io_driver) {
                // This thread's connections are all on its own stack.
                return None;
            }
            let mut idle = lock(&self.idle[slot]);
            let mut i = idle.len();
            while i > 0 {
                i -= 1;
                let entry = &mut idle[i];
                if entry.conn.owner != me
                    && !*shared_driver.get_or_insert_with(runtime_shares_io_driver)
                {
                    continue;
                }
                if entry.since.elapsed() < self.config.idle_timeout && entry.conn.is_reusable() {
                    return Some(idle.remove(i).conn);
                }
                idle.remove(i);
            }
        }
        None
    }

    /// Keeps `conn` for the next request, unless the pool is full or keep-alive is off.
    pub(crate) fn checkin(self: &Arc<Self>, conn: Conn) {
        if self.config.max_idle == 0 {
            return;
        }
        {
            let mut idle = self.idle();
            if idle.len() >= self.config.max_idle {
                // Keep the warmest: drop the one idle the longest.
                idle.remove(0);
            }
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        if !self.reaper_running.load(Ordering::Acquire) {
            self.start_reaper();
        }
    }

    /// Drops every connection idle for longer than the idle timeout (or closed).
    fn reap(&self) -> usize {
        let timeout = self.config.idle_timeout;
        let mut left = 0;
        for stack in &self.idle {
            let mut idle = lock(stack);
            idle.retain_mut(|idle| idle.since.elapsed() < timeout && idle.conn.is_reusable());
            left += idle.len();
        }
        left
    }

    pub(crate) fn new(config: Arc<Config>, authority: Authority) -> Self {
        let host = HeaderValue::from_str(authority.as_str())
            .expect("a parsed authority is a valid header value");
        let target = Target::new(&authority);
        Self {
            config,
            authority,
            host,
            target,
            idle: (0..slots()).map(|_| Mutex::default()).collect(),
            reaper_running: AtomicBool::new(false),
        }
    }

    /// Closes idle connections once they pass the idle timeout, even with no traffic to
    /// notice them, like hyper-util's idle interval. One task per pool while it has idle
    /// connections; it ends when the pool is dropped or empty, or with its runtime.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_running.swap(true, Ordering::AcqRel) {
            return;
        }
        // Outside a runtime (a response dropped after its runtime ended) there is no timer:
        // checkout still drops expired connections.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaper_running.store(false, Ordering::Release);
            return;
        };
        let pool = Arc::downgrade(self);
        let every = (self.config.idle_timeout / 2).max(Duration::from_millis(10));
        // Made before the task: a task dropped before its first poll (its runtime shutting
        // down) drops it too, and the flag is cleared.
        let running = Running {
            pool: pool.clone(),
            armed: true,
        };
        runtime.spawn(async move {
            // The whole guard, not only the field the loop sets, belongs to the task.
            let mut running = running;
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                if pool.reap() > 0 {
                    continue;
                }
                running.armed = false;
                pool.reaper_running.store(false, Ordering::Release);
                // A check-in that still saw the flag set started no reaper: look again
                // (the stacks' locks order its push before this look, or the flag before
                // its own). If another reaper took over meanwhile, the flag is its.
                if pool.reap() == 0 || pool.reaper_running.swap(true, Ordering::AcqRel) {
                    return;
                }
                running.armed = true;
            }
        });
    }
}

/// Clears `reaper_running` however the reaper ends (returned, or dropped with its runtime,
/// polled or not), so that the next connection starts a new one; unless the reaper gave the
/// flag up already (`armed` false).
struct Running {
    pool: Weak<Pool>,
    armed: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade().filter(|_| self.armed) {
            pool.reaper_running.store(false, Ordering::Release);
        }
    }
}

fn lock<T>(stack: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    // The critical sections only push and pop: a panic cannot leave a stack broken.
    stack.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stacks per pool: one per core is enough for one runtime worker per core; more threads
/// share slots.
fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(64))
}

/// Whether the current runtime's threads all use one I/O driver (a multi-thread runtime), so
/// that a socket opened on one of them is served as well on any other.
fn runtime_shares_io_driver() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// A number given to each thread the first time it uses a pool.
pub(crate) fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|slot| *slot)
}
