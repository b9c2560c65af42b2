//! Worker threads, like nginx's worker processes: each runs a current-thread Tokio runtime
//! and accepts from its own `SO_REUSEPORT` listener, so a connection and the requests on it
//! stay on one thread, with no work stealing and no cross-thread wake-ups. What the workers
//! share (the upstream's peers and their state) is in `Arc`s and atomics.
//!
//! The kernel spreads connections over `SO_REUSEPORT` listeners by a hash of their addresses,
//! which leaves workers uneven: 64 connections came as 27 and 38 on two workers, where
//! nginx's shared listener gave 30 and 35. The busier worker's connections then wait longer
//! for it. So, like Envoy's exact connection balance, a worker that accepts a connection while
//! another worker serves fewer hands it over to that one: the counts stay within one of each
//! other. A handed-over connection costs a cross-thread wake-up once, when it opens.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Opens `n` listeners on `addr`, all bound to the same port (picked first when `addr`'s
/// port is 0), for the kernel to spread connections over. Fails if something listens there
/// already.
pub(crate) fn bind(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    // With `SO_REUSEPORT` alone, a second gateway on the same port would start without an
    // error and take part of the first one's connections. A plain listener cannot share the
    // port: bind one first, and let it go.
    let probe = std::net::TcpListener::bind(addr)?;
    let addr = probe.local_addr()?;
    drop(probe);
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        listeners.push(socket.listen(1024)?.into_std()?);
    }
    Ok(listeners)
}

/// Runs `serve` on each set of listeners, one set per worker: the first in the calling
/// runtime, the others on threads of their own. Returns when the first worker's `serve`
/// does.
pub(crate) async fn run<F, Fut>(sets: Vec<Vec<std::net::TcpListener>>, serve: F) -> io::Result<()>
where
    F: Fn(Connections) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<()>>,
{
    let (balance, mut handoffs) = Balance::new(sets.len());
    let mut workers = sets.into_iter().zip(handoffs.drain(..)).enumerate();
    let (_, (first, first_handoff)) = workers.next().expect("at least one worker");
    for (i, (set, handoff)) in workers {
        let serve = serve.clone();
        let balance = Arc::clone(&balance);
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker runtime");
                let result = runtime.block_on(async move {
                    serve(Connections::new(i, set, handoff, balance)?).await
                });
                if let Err(e) = result {
                    eprintln!("gateway worker {i}: {e}");
                    std::process::exit(1);
                }
            })?;
    }
    serve(Connections::new(0, first, first_handoff, balance)?).await
}

/// How many connections each worker serves, and the way to hand one over to each.
struct Balance {
    /// Under a lock, so that two workers accepting at once cannot both pick the same one.
    live: Mutex<Box<[usize]>>,
    handoff: Box<[mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>]>,
}

type Handoff = mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>;

impl Balance {
    fn new(workers: usize) -> (Arc<Self>, Vec<Handoff>) {
        let (senders, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Self {
            live: Mutex::new(vec![0; workers].into_boxed_slice()),
            handoff: Vec::into_boxed_slice(senders),
        };
        (Arc::new(balance), receivers)
    }

    /// The worker to serve a connection `me` accepted: the one serving the fewest, `me` when
    /// it is one of them. Counted from now on.
    fn assign(&self, me: usize) -> usize {
        let mut live = self.live();
        let mut best = me;
        for (i, &n) in live.iter().enumerate() {
            if n < live[best] {
                best = i;
            }
        }
        live[best] += 1;
        best
    }

    /// Moves a connection counted for `from` to `to`.
    fn moved(&self, from: usize, to: usize) {
        let mut live = self.live();
        live[from] -= 1;
        live[to] += 1;
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Box<[usize]>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One worker's incoming connections: those its listeners accept and it keeps, and those
/// other workers hand over.
pub(crate) struct Connections {
    worker: usize,
    listeners: Vec<TcpListener>,
    /// The listener that gave the last connection.
    last: usize,
    handoff: Handoff,
    balance: Arc<Balance>,
}

/// A connection for this worker to serve. It counts as served until dropped.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) client: SocketAddr,
    pub(crate) live: Live,
}

/// Counts a connection as served by its worker until dropped: keep it as long as the
/// connection.
pub(crate) struct Live {
    balance: Arc<Balance>,
    worker: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.balance.live()[self.worker] -= 1;
    }
}

impl Connections {
    fn new(
        worker: usize,
        set: Vec<std::net::TcpListener>,
        handoff: Handoff,
        balance: Arc<Balance>,
    ) -> io::Result<Self> {
        let listeners = set
            .into_iter()
            .map(TcpListener::from_std)
            .collect::<io::Result<_>>()?;
        Ok(Self {
            worker,
            listeners,
            last: 0,
            handoff,
            balance,
        })
    }

    /// The next connection for this worker. Fails as `accept` does on a listener.
    pub(crate) async fn accept(&mut self) -> io::Result<Accepted> {
        loop {
            let next = poll_fn(|cx| {
                if let Poll::Ready(Some((stream, client))) = self.handoff.poll_recv(cx) {
                    return Poll::Ready(Ok(Next::Handed(stream, client)));
                }
                // Starting after the listener that gave the last one: none waits on another.
                let n = self.listeners.len();
                for k in 1..=n {
                    let i = (self.last + k) % n;
                    if let Poll::Ready(accepted) = self.listeners[i].poll_accept(cx) {
                        self.last = i;
                        return Poll::Ready(accepted.map(|(s, c)| Next::Accepted(s, c)));
                    }
                }
                Poll::Pending
            })
            .await?;
            let (stream, client) = match next {
                // Already counted for this worker by the one that handed it over.
                Next::Handed(stream, client) => (stream, client),
                Next::Accepted(stream, client) => {
                    let to = self.balance.assign(self.worker);
                    if to == self.worker {
                        let live = self.live();
                        return Ok(Accepted {
                            stream,
                            client,
                            live,
                        });
                    }
                    // Taken off this worker's I/O driver, to be registered with `to`'s.
                    let Ok(stream) = stream.into_std() else {
                        // Closed, as a connection that fails in `accept` would be.
                        self.balance.live()[to] -= 1;
                        continue;
                    };
                    match self.balance.handoff[to].send((stream, client)) {
                        Ok(()) => continue,
                        // `to` has stopped (and the process with it): served here.
                        Err(mpsc::error::SendError(back)) => {
                            self.balance.moved(to, self.worker);
                            back
                        }
                    }
                }
            };
            let live = self.live();
            // One that cannot be registered with this worker's I/O driver is closed, as a
            // connection that fails in `accept` would be.
            if let Ok(stream) = TcpStream::from_std(stream) {
                return Ok(Accepted {
                    stream,
                    client,
                    live,
                });
            }
        }
    }

    /// Counts a connection as this worker's (already counted in `Balance`) until dropped.
    fn live(&self) -> Live {
        Live {
            balance: Arc::clone(&self.balance),
            worker: self.worker,
        }
    }
}

/// What a worker's `accept` found.
enum Next {
    /// A connection another worker accepted and handed over.
    Handed(std::net::TcpStream, SocketAddr),
    /// A connection one of its listeners accepted.
    Accepted(TcpStream, SocketAddr),
}
