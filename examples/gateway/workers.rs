//! Worker threads, like nginx's worker processes: each runs a current-thread Tokio runtime
//! and accepts from its own `SO_REUSEPORT` listener, so a connection and the requests on it
//! stay on one thread, with no work stealing and no cross-thread wake-ups. What the workers
//! share (the upstream's peers and their state) is in `Arc`s and atomics.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

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
pub(crate) async fn run<F, Fut>(
    mut sets: Vec<Vec<std::net::TcpListener>>,
    serve: F,
) -> io::Result<()>
where
    F: Fn(Vec<TcpListener>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<()>>,
{
    let first = sets.remove(0);
    for (i, set) in sets.into_iter().enumerate() {
        let serve = serve.clone();
        std::thread::Builder::new()
            .name(format!("worker-{}", i + 1))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker runtime");
                let result = runtime.block_on(async move { serve(registered(set)?).await });
                if let Err(e) = result {
                    eprintln!("gateway worker {}: {e}", i + 1);
                    std::process::exit(1);
                }
            })?;
    }
    serve(registered(first)?).await
}

/// The listeners, registered with the current runtime.
fn registered(set: Vec<std::net::TcpListener>) -> io::Result<Vec<TcpListener>> {
    set.into_iter().map(TcpListener::from_std).collect()
}
