//! The gateway example's workers (`examples/gateway/workers.rs`): connections are spread
//! evenly over the workers, whatever the kernel's `SO_REUSEPORT` hash does, and a worker's
//! count goes down as its connections close.

#[path = "../examples/gateway/workers.rs"]
mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Which worker (thread) holds each open connection, by the client's port.
type Served = Arc<Mutex<HashMap<u16, ThreadId>>>;

/// Starts `n` workers on a free loopback port. Each keeps the connections it is given open
/// until the client closes them, noting them in the returned map meanwhile.
fn start(n: usize) -> (std::net::SocketAddr, Served) {
    let listeners = workers::bind("127.0.0.1:0".parse().unwrap(), n).unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let sets = listeners.into_iter().map(|l| vec![l]).collect();
    let served = Served::default();
    let noted = Arc::clone(&served);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = runtime.block_on(workers::run(sets, move |mut connections| {
            let noted = Arc::clone(&noted);
            async move {
                loop {
                    let accepted = connections.accept().await?;
                    let port = accepted.client.port();
                    let me = std::thread::current().id();
                    noted.lock().unwrap().insert(port, me);
                    let noted = Arc::clone(&noted);
                    tokio::spawn(async move {
                        let mut stream = accepted.stream;
                        // Until the client closes.
                        let _ = stream.read(&mut [0; 1]).await;
                        // Uncounted before it is seen gone: a test that waits for the map
                        // finds the workers' counts already down.
                        drop(accepted.live);
                        noted.lock().unwrap().remove(&port);
                    });
                }
            }
        }));
    });
    (addr, served)
}

/// Waits until `count` connections are noted, and returns how many each worker holds.
async fn per_worker(served: &Served, count: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let map = served.lock().unwrap();
            if map.len() == count {
                let mut per: HashMap<ThreadId, usize> = HashMap::new();
                for id in map.values() {
                    *per.entry(*id).or_default() += 1;
                }
                let mut counts: Vec<usize> = per.into_values().collect();
                counts.sort_unstable();
                return counts;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} connections noted",
            served.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connections_are_spread_evenly_over_the_workers() {
    let (addr, served) = start(2);
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    // The kernel's hash alone gives an uneven split (27 and 38 in one measured run).
    assert_eq!(per_worker(&served, 64).await, [32, 32]);

    // Closed connections no longer count: the next ones go where they are fewest.
    let closed: Vec<u16> = {
        let map = served.lock().unwrap();
        let busiest = *map.values().next().unwrap();
        let ports: Vec<u16> = map
            .iter()
            .filter(|(_, id)| **id == busiest)
            .map(|(p, _)| *p)
            .take(10)
            .collect();
        ports
    };
    clients.retain(|c| !closed.contains(&c.local_addr().unwrap().port()));
    assert_eq!(per_worker(&served, 54).await, [22, 32]);
    for _ in 0..10 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    assert_eq!(per_worker(&served, 64).await, [32, 32]);
}

#[tokio::test]
async fn one_worker_takes_every_connection() {
    let (addr, served) = start(1);
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    assert_eq!(per_worker(&served, 8).await, [8]);
}
