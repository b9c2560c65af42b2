//! A bounded fault-injection soak on loopback: mixed GET/POST load through the full gateway
//! stack while its peers are killed, restarted, made to hang and made to answer `502` on a
//! schedule.
//!
//! Three backends on 127.0.0.1 record every POST they receive (id and body hash) in one
//! ledger. The gateway is `RealIpLayer` + `ProxyHeadersLayer` (the seed's headers and
//! `X-Forwarded-*`) in front of an `Upstream` of three `HttpPeer`s with nginx's
//! `proxy_next_upstream error timeout http_502`. Clients keep `connections` keep-alive
//! connections busy until `duration` has passed; every POST carries a unique id and a
//! random body of 0 to 160 KiB (some larger than the 64 KiB replay buffer).
//!
//! The fault schedule repeats every `cycle`: a peer killed and restarted, a peer answering
//! `502`, a peer hanging, every peer killed at once, a hang and a `502` together, another
//! kill. Afterwards the [`Report`] says what happened; [`Report::violations`] lists what
//! must not: a GET that did not succeed outside the windows where every peer was down (or
//! got anything but a clean `502`/`503` inside one), a POST delivered twice, a POST
//! answered `200` whose body did not arrive byte for byte, a header the gateway should
//! have set or removed, file descriptors or memory that stayed.
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_upstream::proxy_headers::{ProxyHeadersLayer, RealIpLayer};
use tower_upstream::upstream::{NextUpstream, ReplayBody};
use tower_upstream::{HttpClient, Peer, Upstream};

use crate::support::killable::Killable;

/// What the soak does.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long clients send requests.
    pub duration: Duration,
    /// Concurrent client connections.
    pub connections: usize,
    /// Length of one round of the fault schedule (repeated to fill `duration`).
    pub cycle: Duration,
    /// The peers' `fail_timeout`.
    pub fail_timeout: Duration,
    /// The gateway's read timeout (how long a hanging peer holds a request).
    pub read_timeout: Duration,
    /// Percentage of requests that are POSTs.
    pub post_percent: u64,
    /// Seed of the request mix and the bodies.
    pub seed: u64,
}

/// How a peer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Answer502,
    Hang,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Kill(usize),
    Restart(usize),
    Set(usize, Mode),
}

/// One round of faults, at fractions of the cycle: a kill and a `502` together, a hang,
/// every peer killed, a hang and a `502` together, then calm. Each fault lasts longer than
/// the read timeout, and ends at least 15 % of a cycle (more than `read_timeout +
/// fail_timeout` in both soaks) before a fault on a peer that covered for it, so that
/// outside the all-down window one peer is always healthy in the gateway's eyes too.
const SCHEDULE: &[(f64, Action)] = &[
    (0.06, Action::Kill(0)),
    (0.10, Action::Set(1, Mode::Answer502)),
    (0.16, Action::Restart(0)),
    (0.20, Action::Set(1, Mode::Normal)),
    (0.36, Action::Set(2, Mode::Hang)),
    (0.48, Action::Set(2, Mode::Normal)),
    (0.50, Action::Kill(0)),
    (0.50, Action::Kill(1)),
    (0.50, Action::Kill(2)),
    (0.56, Action::Restart(0)),
    (0.56, Action::Restart(1)),
    (0.56, Action::Restart(2)),
    (0.72, Action::Set(0, Mode::Hang)),
    (0.72, Action::Set(1, Mode::Answer502)),
    (0.84, Action::Set(0, Mode::Normal)),
    (0.84, Action::Set(1, Mode::Normal)),
];

const PEERS: usize = 3;
/// Longest a hanging peer holds a request (it lets go earlier when its hang ends).
const HANG_LIMIT: Duration = Duration::from_secs(30);
/// Longest a client waits for one answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the backends received: POST id -> (deliveries, 64-bit prefix of the body's SHA-256).
type Ledger = Arc<Mutex<HashMap<u64, (u32, u64)>>>;

fn sha(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

fn prefix(sha: &[u8; 32]) -> u64 {
    u64::from_be_bytes(sha[..8].try_into().unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A backend: answers by its mode, records POSTs, counts requests whose proxy headers are
/// not what the gateway must send.
async fn backend(
    index: usize,
    mode: watch::Receiver<Mode>,
    ledger: Ledger,
    anomalies: Arc<AtomicU64>,
) -> Killable {
    Killable::spawn(move |req: Request<Incoming>| {
        let (mut mode, ledger, anomalies) = (mode.clone(), ledger.clone(), anomalies.clone());
        async move {
            if *mode.borrow() == Mode::Hang {
                let ended = mode.wait_for(|m| *m != Mode::Hang);
                let _ = tokio::time::timeout(HANG_LIMIT, ended).await;
                return Err(io::Error::other("hung up"));
            }
            let h = req.headers();
            let proper = h.get("x-real-ip").is_some_and(|v| v == "127.0.0.1")
                && h.get("x-forwarded-for").is_some_and(|v| v == "127.0.0.1")
                && !h.contains_key("x-hop")
                && !h.contains_key("connection");
            if !proper {
                anomalies.fetch_add(1, Ordering::Relaxed);
            }
            let id: Option<u64> = h
                .get("x-soak-id")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let post = req.method() == Method::POST;
            let body = req.into_body().collect().await.map_err(io::Error::other)?;
            let digest = sha(&body.to_bytes());
            if post {
                let mut ledger = ledger.lock().unwrap();
                let entry = ledger
                    .entry(id.unwrap_or(u64::MAX))
                    .or_insert((0, prefix(&digest)));
                entry.0 += 1;
                if entry.1 != prefix(&digest) {
                    // A second delivery with another body: poison the hash.
                    entry.1 = !prefix(&digest);
                }
            }
            let mut res = Response::builder()
                .header("x-backend", index.to_string())
                .header("x-body-sha256", hex(&digest));
            if *mode.borrow() == Mode::Answer502 {
                res = res.status(StatusCode::BAD_GATEWAY);
            }
            Ok(res.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
        }
    })
    .await
}

type Gateway = Upstream<tower_upstream::HttpPeer<ReplayBody<Incoming>>>;

/// The gateway on 127.0.0.1: serves until the returned task set is dropped.
async fn gateway(peers: &[SocketAddr], config: &Config) -> (SocketAddr, Gateway, JoinSet<()>) {
    let client: HttpClient<ReplayBody<Incoming>> = HttpClient::builder()
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(config.read_timeout)
        .pool_idle_timeout(Duration::from_secs(1))
        .build();
    let upstream = Upstream::builder()
        .name("soak")
        .peers(peers.iter().enumerate().map(|(i, addr)| {
            Peer::new(format!("p{i}"), client.peer(&addr.to_string()).unwrap())
                .fail_timeout(config.fail_timeout)
        }))
        .next_upstream(NextUpstream::parse("error timeout http_502").unwrap())
        .build()
        .unwrap();
    let real_ip = RealIpLayer::builder().build().unwrap();
    let headers = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .x_forwarded()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tasks = JoinSet::new();
    let gateway = upstream.clone();
    tasks.spawn(async move {
        while let Ok((stream, client)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(client);
                    req
                })
                .layer(real_ip.clone())
                .layer(headers.clone())
                .service(upstream.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    (addr, gateway, tasks)
}

/// xorshift64*: the request mix and the bodies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A body length: mostly small, some past the 64 KiB replay buffer.
    fn body_len(&mut self) -> usize {
        (match self.below(10) {
            0 => 0,
            1..=5 => self.below(4 * 1024),
            6..=8 => 4 * 1024 + self.below(60 * 1024),
            _ => 64 * 1024 + self.below(96 * 1024),
        }) as usize
    }

    fn bytes(&mut self, len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out.into()
    }
}

/// How one request ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ending {
    /// A status; `peer`: the answer came from a backend (it has `x-backend`), not from the
    /// gateway itself.
    Status { code: u16, peer: bool },
    /// The connection failed (reset, closed without an answer): how.
    Transport(&'static str),
    /// No answer within the client's timeout.
    Timeout,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, peer: true } => write!(f, "{code} from a peer"),
            Self::Status { code, peer: false } => write!(f, "{code} from the gateway"),
            Self::Transport(how) => write!(f, "connection error ({how})"),
            Self::Timeout => f.write_str("client timeout"),
        }
    }
}

/// A GET that did not end in `200`.
#[derive(Debug, Clone)]
struct Failure {
    start: Duration,
    end: Duration,
    ending: Ending,
}

/// What one client connection task saw.
#[derive(Default)]
struct ClientLog {
    gets: u64,
    posts: u64,
    get_failures: Vec<Failure>,
    /// Each POST: id, body hash prefix, and `Ok(the answer echoed the right hash)` for a
    /// `200`, else how it ended.
    posted: Vec<(u64, u64, Result<bool, Ending>)>,
    reconnects: u64,
    /// Answers with `Connection: close` (the gateway could not read a body to its end).
    closes: u64,
    /// Connections found closed before a request without a `Connection: close` first.
    unannounced: u64,
}

async fn connect(
    gateway: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(gateway))
        .await
        .ok()?
        .ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

async fn client(
    gateway: SocketAddr,
    seed: u64,
    post_percent: u64,
    start: Instant,
    deadline: Instant,
    ids: Arc<AtomicU64>,
) -> ClientLog {
    let mut rng = Rng(seed | 1);
    let mut log = ClientLog::default();
    let mut sender = None;
    // Whether the last answer on this connection said `Connection: close`.
    let mut announced = false;
    while Instant::now() < deadline {
        let Some(s) = &mut sender else {
            sender = connect(gateway).await;
            announced = false;
            log.reconnects += 1;
            if sender.is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            continue;
        };
        if s.ready().await.is_err() {
            // Closed before this request went out: fine only if the gateway said so.
            if !announced {
                log.unannounced += 1;
            }
            sender = None;
            continue;
        }
        let post = rng.below(100) < post_percent;
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let body = if post {
            let len = rng.body_len();
            rng.bytes(len)
        } else {
            Bytes::new()
        };
        let digest = sha(&body);
        let req = Request::builder()
            .method(if post { Method::POST } else { Method::GET })
            .uri(if post { "/orders" } else { "/items?page=1" })
            .header("host", "gateway.test")
            .header("x-soak-id", id.to_string())
            .header("connection", "x-hop")
            .header("x-hop", "must not reach a peer")
            .body(Full::new(body))
            .unwrap();
        let sent = Instant::now();
        let exchange = async {
            let res = s.send_request(req).await.map_err(|e| {
                Ending::Transport(if e.is_canceled() {
                    "canceled"
                } else if e.is_incomplete_message() {
                    "incomplete"
                } else {
                    "send"
                })
            })?;
            let closing = res
                .headers()
                .get("connection")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let code = res.status().as_u16();
            let peer = res.headers().contains_key("x-backend");
            let echoed = res
                .headers()
                .get("x-body-sha256")
                .map(|v| v.as_bytes().to_vec());
            res.into_body()
                .collect()
                .await
                .map_err(|_| Ending::Transport("body"))?;
            Ok::<_, Ending>((code, peer, echoed, closing))
        };
        let outcome = match tokio::time::timeout(CLIENT_TIMEOUT, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Ending::Timeout),
        };
        if post {
            log.posts += 1;
        } else {
            log.gets += 1;
        }
        let result = match outcome {
            Ok((code, peer, echoed, closing)) => {
                announced = closing;
                log.closes += u64::from(closing);
                if code == 200 {
                    Ok(echoed.as_deref() == Some(hex(&digest).as_bytes()))
                } else {
                    Err(Ending::Status { code, peer })
                }
            }
            Err(ending) => {
                sender = None;
                Err(ending)
            }
        };
        match result {
            _ if post => log.posted.push((id, prefix(&digest), result)),
            Ok(_) => {}
            Err(ending) => log.get_failures.push(Failure {
                start: sent - start,
                end: Instant::now() - start,
                ending,
            }),
        }
    }
    log
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// A memory figure of this process from `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// GET failures of one kind, in one all-down window or outside all of them.
#[derive(Debug)]
struct GetGroup {
    ending: Ending,
    window: Option<usize>,
    count: u64,
    first: Duration,
    last: Duration,
}

impl GetGroup {
    /// A clean `502`/`503` while every peer was down: allowed.
    fn is_clean(&self) -> bool {
        self.window.is_some()
            && matches!(
                self.ending,
                Ending::Status {
                    code: 502 | 503,
                    ..
                }
            )
    }
}

/// What a soak did and saw.
#[derive(Debug)]
pub struct Report {
    config: Config,
    elapsed: Duration,
    gets: u64,
    posts: u64,
    reconnects: u64,
    /// Answers with `Connection: close`, and connections closed without one.
    closes: (u64, u64),
    /// GETs that did not end in 200.
    get_failures: Vec<GetGroup>,
    /// Non-200 POSTs by how they ended and how many times the backends got them.
    post_endings: Vec<((Ending, u32), u64)>,
    duplicates: u64,
    lost: u64,
    corrupt: u64,
    anomalies: u64,
    /// Windows (from, to) in which every peer was down, widened by `fail_timeout` + 1 s after.
    all_down: Vec<(Duration, Duration)>,
    events: Vec<(Duration, String)>,
    /// Per peer: attempts, 2xx, 5xx answers, errors, timeouts.
    peers: Vec<(String, [u64; 5])>,
    fds: (usize, usize),
    /// Resident memory before, after, and at its peak (KiB).
    rss_kib: (u64, u64, u64),
    /// Live heap bytes before and after.
    heap: (usize, usize),
    bounds: Bounds,
}

/// How much may stay after the load.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Growth of the live heap, in KiB: what the process still holds (a leak shows here).
    pub heap_kib: u64,
    /// Growth of the resident memory, in KiB: the heap plus what the allocator keeps.
    pub rss_kib: u64,
}

impl Report {
    /// Everything that must not happen; empty when the soak passed.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for g in self.get_failures.iter().filter(|g| !g.is_clean()) {
            let place = match g.window {
                Some(_) => "while every peer was down, but not a clean 502/503",
                None => "with a peer up",
            };
            out.push(format!(
                "{} GETs failed with {} {place} ({:.2}-{:.2} s)",
                g.count,
                g.ending,
                g.first.as_secs_f64(),
                g.last.as_secs_f64()
            ));
        }
        for (what, n) in [
            (
                "client connections closed without Connection: close",
                self.closes.1,
            ),
            ("POSTs delivered more than once", self.duplicates),
            (
                "POSTs answered 200 whose body did not arrive intact",
                self.lost,
            ),
            ("POST bodies that arrived altered", self.corrupt),
            ("requests with wrong proxy headers", self.anomalies),
        ] {
            if n > 0 {
                out.push(format!("{n} {what}"));
            }
        }
        if self.fds.1 > self.fds.0 + 8 {
            out.push(format!(
                "file descriptors: {} before, {} after the load",
                self.fds.0, self.fds.1
            ));
        }
        if self.heap.1 as u64 > self.heap.0 as u64 + self.bounds.heap_kib * 1024 {
            out.push(format!(
                "live heap: {} bytes before, {} after the load (bound: +{} KiB)",
                self.heap.0, self.heap.1, self.bounds.heap_kib
            ));
        }
        if self.rss_kib.1 > self.rss_kib.0 + self.bounds.rss_kib {
            out.push(format!(
                "memory: {} KiB before, {} KiB after the load (bound: +{} KiB)",
                self.rss_kib.0, self.rss_kib.1, self.bounds.rss_kib
            ));
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let total = self.gets + self.posts;
        writeln!(
            f,
            "soak: {:.1} s, {} connections, fault cycle {:.1} s, fail_timeout {} ms, \
             read_timeout {} ms",
            self.elapsed.as_secs_f64(),
            c.connections,
            c.cycle.as_secs_f64(),
            c.fail_timeout.as_millis(),
            c.read_timeout.as_millis()
        )?;
        writeln!(
            f,
            "requests: {total} ({} GET, {} POST), {:.0}/s; {} client connections, {} answers \
             with Connection: close, {} connections closed unannounced",
            self.gets,
            self.posts,
            total as f64 / self.elapsed.as_secs_f64(),
            self.reconnects,
            self.closes.0,
            self.closes.1
        )?;
        let get_failed: u64 = self.get_failures.iter().map(|g| g.count).sum();
        writeln!(f, "GET: {} answered 200", self.gets - get_failed)?;
        for g in &self.get_failures {
            let when = match g.window {
                Some(w) => format!("while every peer was down (window {})", w + 1),
                None => "with a peer up".to_owned(),
            };
            writeln!(
                f,
                "  {} x {} {when}, {:.2}-{:.2} s",
                g.count,
                g.ending,
                g.first.as_secs_f64(),
                g.last.as_secs_f64()
            )?;
        }
        let post_failed: u64 = self.post_endings.iter().map(|(_, n)| n).sum();
        writeln!(
            f,
            "POST: {} answered 200 with the body verified by the peer",
            self.posts - post_failed
        )?;
        for ((ending, delivered), n) in &self.post_endings {
            writeln!(f, "  {n} x {ending}, delivered {delivered} time(s)")?;
        }
        writeln!(
            f,
            "duplicates: {}, lost bodies: {}, altered bodies: {}, wrong proxy headers: {}",
            self.duplicates, self.lost, self.corrupt, self.anomalies
        )?;
        for (name, [attempts, ok, server_errors, errors, timeouts]) in &self.peers {
            writeln!(
                f,
                "gateway -> {name}: {attempts} attempts, {ok} x 2xx, {server_errors} x 5xx, \
                 {errors} errors, {timeouts} timeouts"
            )?;
        }
        writeln!(
            f,
            "file descriptors: {} before, {} after; live heap: {} KiB before, {} KiB after; \
             RSS: {} KiB before, {} KiB after (peak {} KiB)",
            self.fds.0,
            self.fds.1,
            self.heap.0 / 1024,
            self.heap.1 / 1024,
            self.rss_kib.0,
            self.rss_kib.1,
            self.rss_kib.2
        )?;
        for (i, (from, to)) in self.all_down.iter().enumerate() {
            writeln!(
                f,
                "window {}: every peer down, plus fail_timeout + 1 s: {:.2}-{:.2} s",
                i + 1,
                from.as_secs_f64(),
                to.as_secs_f64()
            )?;
        }
        let events: Vec<String> = self
            .events
            .iter()
            .map(|(t, e)| format!("{:.2}s {e}", t.as_secs_f64()))
            .collect();
        writeln!(f, "faults: {}", events.join(", "))
    }
}

/// Runs a soak. `live_heap` tells the bytes allocated and not freed yet (the test binary's
/// counting global allocator).
pub async fn run(config: Config, bounds: Bounds, live_heap: fn() -> usize) -> Report {
    let ledger: Ledger = Arc::default();
    let anomalies = Arc::new(AtomicU64::new(0));
    let mut modes = Vec::new();
    let mut backends = Vec::new();
    for i in 0..PEERS {
        let (tx, rx) = watch::channel(Mode::Normal);
        modes.push(tx);
        backends.push(backend(i, rx, ledger.clone(), anomalies.clone()).await);
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (gw, upstream, gateway_task) = gateway(&addrs, &config).await;

    let fds_before = open_fds();
    let rss_before = rss_kib();
    let heap_before = live_heap();
    let start = Instant::now();
    let deadline = start + config.duration;

    // The fault schedule, round after round, while the clients run.
    let scheduler = {
        let backends = backends.clone();
        let modes = modes.clone();
        let cycle = config.cycle;
        let fail_timeout = config.fail_timeout;
        tokio::spawn(async move {
            let mut events = Vec::new();
            let mut windows = Vec::new();
            let mut up = [true; PEERS];
            let mut down_since = None;
            let mut round = 0u32;
            'rounds: loop {
                for &(at, action) in SCHEDULE {
                    let when = start + cycle * round + cycle.mul_f64(at);
                    if when >= deadline {
                        break 'rounds;
                    }
                    tokio::time::sleep_until(when).await;
                    let what = match action {
                        Action::Kill(i) => {
                            backends[i].kill();
                            up[i] = false;
                            format!("kill p{i}")
                        }
                        Action::Restart(i) => {
                            backends[i].restart().await;
                            up[i] = true;
                            format!("restart p{i}")
                        }
                        Action::Set(i, mode) => {
                            modes[i].send_replace(mode);
                            format!("p{i} {mode:?}")
                        }
                    };
                    let now = start.elapsed();
                    events.push((now, what));
                    if up.iter().all(|u| !u) && down_since.is_none() {
                        down_since = Some(now);
                    }
                    if up.iter().all(|&u| u) {
                        if let Some(from) = down_since.take() {
                            windows.push((from, now + fail_timeout + Duration::from_secs(1)));
                        }
                    }
                }
                round += 1;
            }
            (events, windows, up)
        })
    };

    let ids = Arc::new(AtomicU64::new(1));
    let mut clients = JoinSet::new();
    for i in 0..config.connections {
        let seed = config
            .seed
            .wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        clients.spawn(client(
            gw,
            seed,
            config.post_percent,
            start,
            deadline,
            ids.clone(),
        ));
    }
    let mut logs = Vec::new();
    while let Some(log) = clients.join_next().await {
        logs.push(log.expect("a client task panicked"));
    }
    let elapsed = start.elapsed();
    let (events, all_down, up) = scheduler.await.expect("the scheduler panicked");

    // Back to normal: every peer up and serving.
    for (i, b) in backends.iter().enumerate() {
        modes[i].send_replace(Mode::Normal);
        if !up[i] {
            b.restart().await;
        }
    }

    // The ledger against what the clients saw; then the bookkeeping goes, before memory is
    // measured.
    let window_of = |f: &Failure| {
        all_down
            .iter()
            .position(|&(from, to)| f.end >= from && f.start <= to)
    };
    let (mut duplicates, mut lost, mut corrupt) = (0, 0, 0);
    let mut post_endings: HashMap<(Ending, u32), u64> = HashMap::new();
    let mut get_failures: Vec<GetGroup> = Vec::new();
    let (mut gets, mut posts, mut reconnects, mut closes) = (0, 0, 0, (0, 0));
    {
        let ledger = std::mem::take(&mut *ledger.lock().unwrap());
        for log in logs {
            gets += log.gets;
            posts += log.posts;
            reconnects += log.reconnects;
            closes.0 += log.closes;
            closes.1 += log.unannounced;
            for f in log.get_failures {
                let window = window_of(&f);
                match get_failures
                    .iter_mut()
                    .find(|g| g.ending == f.ending && g.window == window)
                {
                    Some(g) => {
                        g.count += 1;
                        g.first = g.first.min(f.start);
                        g.last = g.last.max(f.end);
                    }
                    None => get_failures.push(GetGroup {
                        ending: f.ending,
                        window,
                        count: 1,
                        first: f.start,
                        last: f.end,
                    }),
                }
            }
            for (id, hash, result) in log.posted {
                let (count, got) = ledger.get(&id).copied().unwrap_or((0, 0));
                if count > 1 {
                    duplicates += 1;
                }
                if count >= 1 && got != hash {
                    corrupt += 1;
                }
                match result {
                    Ok(echoed) => {
                        if count != 1 || got != hash || !echoed {
                            lost += 1;
                        }
                    }
                    Err(ending) => *post_endings.entry((ending, count)).or_default() += 1,
                }
            }
        }
    }
    get_failures.sort_by(|a, b| (a.window, &a.ending).cmp(&(b.window, &b.ending)));
    let mut post_endings: Vec<_> = post_endings.into_iter().collect();
    post_endings.sort();

    // Pooled connections (1 s idle timeout) and released hangs close; then measure.
    let settle = Instant::now() + Duration::from_secs(10);
    while open_fds() > fds_before && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fds_after = open_fds();
    let rss_after = rss_kib();
    let heap_after = live_heap();
    let peers = upstream
        .stats()
        .peers
        .into_iter()
        .map(|p| {
            let f = p.failures;
            (
                p.name,
                [
                    p.requests,
                    p.responses[1],
                    p.responses[4],
                    f.error,
                    f.timeout,
                ],
            )
        })
        .collect();
    drop(gateway_task);
    for b in &backends {
        b.kill();
    }
    Report {
        config,
        elapsed,
        gets,
        posts,
        reconnects,
        closes,
        get_failures,
        post_endings,
        duplicates,
        lost,
        corrupt,
        anomalies: anomalies.load(Ordering::Relaxed),
        all_down,
        events,
        peers,
        fds: (fds_before, fds_after),
        rss_kib: (rss_before, rss_after, status_kib("VmHWM:")),
        heap: (heap_before, heap_after),
        bounds,
    }
}
