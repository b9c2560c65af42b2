//! The seed's gateway: nginx's `upstream tserver` with two peers, `proxy_set_header Host $host`
//! and `proxy_set_header X-Real-IP $remote_addr`, as a hyper server (hop-by-hop headers
//! removed, WebSocket upgrades tunnelled).
//!
//! ```text
//! cargo run --example gateway                       # two demo backends in-process
//! cargo run --example gateway -- --peer 127.0.0.1:18081=1 --peer 127.0.0.1:18082=1
//! ```
//!
//! The upstream's status page is at `/upstream-status` (`?format=json` for JSON).
//!
//! Options: `--listen ADDR` (default 127.0.0.1:8080), `--peer HOST:PORT[=WEIGHT]` (repeat),
//! `--backup HOST:PORT`, `--policy round-robin|ip-hash|least-conn|random-two`, `--workers N`
//! (default: one per core), `--busy-poll USECS` (see `busy_poll`; default off),
//! `--keepalive-requests N` (nginx's `keepalive_requests`, see `keepalive`; default 1000).
//!
//! Or a whole gateway from a file (`tower_upstream::config`), its `listen` addresses used
//! unless `--listen` is given:
//!
//! ```text
//! cargo run --example gateway -- --nginx-conf nginx.conf --listen 127.0.0.1:8080
//! cargo run --example gateway --features serde -- --config examples/gateway.toml
//! ```
//!
//! The nginx importer's report (directives ignored or unsupported, with their lines) is
//! printed to stderr.

mod adapter;
mod busy_poll;
mod keepalive;
mod timer;
mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use adapter::InPlace;
use busy_poll::Activity;
use bytes::Bytes;
use futures_util::future::{self, TryFutureExt};
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use keepalive::KeepaliveRequests;
use tokio::net::TcpListener;
use tower::{Layer, ServiceBuilder};
use tower_upstream::config::{nginx, Gateway, GatewayConfig};
use tower_upstream::policy::{BuildIndex, IpHash, LeastConn, Policy, Random, RoundRobin};
use tower_upstream::proxy_headers::{ProxyHeadersLayer, UpgradeLayer};
use tower_upstream::status_page::{self, StatusPage};
use tower_upstream::upstream::ReplayBody;
use tower_upstream::{HttpClient, HttpPeer, Peer, Upstream};
use workers::{Accepted, Connections};

// A per-thread caching allocator: the proxy allocates and frees a few dozen small objects per
// request (hyper's buffers, header maps, futures), which glibc's malloc makes a tenth of the
// gateway's user time. nginx has its per-request pools for the same reason. jemalloc rather
// than mimalloc: it leaves the unused part of an idle connection's buffers untouched, so
// 10,000 idle connections stay small.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: gateway [--listen ADDR] [--peer HOST:PORT[=WEIGHT]]... \
[--backup HOST:PORT]... [--policy round-robin|ip-hash|least-conn|random-two] [--workers N] \
[--busy-poll USECS] [--keepalive-requests N] [--config FILE.toml | --nginx-conf FILE]";

struct Args {
    listen: SocketAddr,
    peers: Vec<(String, u32, bool)>,
    policy: String,
    workers: usize,
    /// `--busy-poll`: how long a worker polls after its last request before it sleeps.
    busy_poll: Option<Duration>,
    /// `--keepalive-requests`: nginx's `keepalive_requests`, requests per client connection
    /// (default: the configuration file's, else nginx's 1000).
    keepalive_requests: Option<u32>,
    /// `--listen` was given.
    listen_set: bool,
    config: Option<PathBuf>,
    nginx_conf: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        peers: Vec::new(),
        policy: "round-robin".into(),
        workers: 0,
        busy_poll: None,
        keepalive_requests: None,
        listen_set: false,
        config: None,
        nginx_conf: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => {
                args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?;
                args.listen_set = true;
            }
            "--config" => args.config = Some(value()?.into()),
            "--nginx-conf" => args.nginx_conf = Some(value()?.into()),
            "--peer" => {
                let v = value()?;
                let (addr, weight) = match v.split_once('=') {
                    Some((a, w)) => (a, w.parse().map_err(|e| format!("--peer {v}: {e}"))?),
                    None => (v.as_str(), 1),
                };
                args.peers.push((addr.to_owned(), weight, false));
            }
            "--backup" => args.peers.push((value()?, 1, true)),
            "--policy" => args.policy = value()?,
            "--workers" => {
                args.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?;
            }
            "--busy-poll" => {
                let us: u64 = value()?.parse().map_err(|e| format!("--busy-poll: {e}"))?;
                args.busy_poll = (us > 0).then(|| Duration::from_micros(us));
            }
            "--keepalive-requests" => {
                args.keepalive_requests = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--keepalive-requests: {e}"))?,
                );
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// A demo backend, standing in for one of the seed's Tomcats.
async fn demo_backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                let header = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                let text = format!(
                    "{name} ({addr}) served {} {}  Host: {}  X-Real-IP: {}\n",
                    req.method(),
                    req.uri(),
                    header("host"),
                    header("x-real-ip"),
                );
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            });
            tokio::spawn(async move {
                let server = auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(addr)
}

async fn run<P>(
    args: &Args,
    peers: Vec<Peer<HttpPeer<ReplayBody<Incoming>>>>,
    policy: P,
) -> Result<(), Box<dyn std::error::Error>>
where
    P: BuildIndex + Policy<Request<Incoming>> + Send + Sync + 'static,
    P::Key: Send,
{
    let upstream = Upstream::builder()
        .name("tserver")
        .peers(peers)
        .policy(policy)
        .build()?;
    let listeners = workers::bind(args.listen, args.workers)
        .map_err(|e| format!("listen {}: {e}", args.listen))?;
    let addr = listeners[0].local_addr()?;
    // Printed first: tests and scripts read the address from this line.
    println!("gateway listening on http://{addr}");
    println!("try: curl -s http://{addr}/index.jsp; curl -s http://{addr}/index.jsp");
    println!("status page: http://{addr}/upstream-status");
    let status_page = StatusPage::new()
        .title("gateway")
        .upstream(upstream.clone());
    // proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr;
    let headers = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .build()?;
    // ip_hash reads the client's address from each request's extensions; `$remote_addr` has
    // it from the connection (`with_client_addr`). The extension, a map allocated for each
    // request, is added only where the policy reads it.
    let addr_extension = args.policy == "ip-hash";
    let busy_poll = args.busy_poll;
    let keepalive_requests = args.keepalive_requests.unwrap_or(keepalive::DEFAULT);
    let sets = listeners.into_iter().map(|l| vec![l]).collect();
    workers::run(sets, move |connections| {
        let (upstream, status_page, headers) =
            (upstream.clone(), status_page.clone(), headers.clone());
        let activity = busy_poll.map(busy_poll::start);
        accept_proxy(
            connections,
            upstream,
            status_page,
            headers,
            addr_extension,
            activity,
            keepalive_requests,
        )
    })
    .await?;
    Ok(())
}

/// Proxies this worker's connections to `upstream`, the status page aside.
async fn accept_proxy<P>(
    mut connections: Connections,
    upstream: Upstream<HttpPeer<ReplayBody<Incoming>>, P>,
    status_page: StatusPage,
    headers: ProxyHeadersLayer,
    addr_extension: bool,
    activity: Option<Arc<Activity>>,
    keepalive_requests: u32,
) -> std::io::Result<()>
where
    P: BuildIndex + Policy<Request<Incoming>> + Send + Sync + 'static,
    P::Key: Send,
{
    loop {
        let Accepted {
            stream,
            client,
            live,
        } = connections.accept().await?;
        let proxy = headers
            .layer(upstream.clone())
            .with_client_addr(client.ip());
        let activity = activity.clone();
        let svc = ServiceBuilder::new()
            .map_request(move |mut req: Request<Incoming>| {
                if let Some(activity) = &activity {
                    activity.request();
                }
                if addr_extension {
                    req.extensions_mut().insert(client);
                }
                req
            })
            .layer(UpgradeLayer::new()) // WebSocket tunnels
            .service(proxy);
        // The status page is matched before the upstream; everything else is proxied.
        let svc = WithStatusPage {
            page: status_page.clone(),
            proxy: svc,
        };
        let svc = KeepaliveRequests::new(svc, keepalive_requests);
        tokio::spawn(serve(stream, InPlace::new(svc), live));
    }
}

/// `/upstream-status` to the status page, everything else to `proxy`. A `Service` of its
/// own rather than a `service_fn` closure, so that it is called in place (see `adapter`) and
/// adds no extra future around the proxy's.
#[derive(Clone)]
struct WithStatusPage<S> {
    page: StatusPage,
    proxy: S,
}

type PageResponse = Response<status_page::Body>;
type Routed<B> = Response<Either<status_page::Body, B>>;

impl<S, B> tower::Service<Request<Incoming>> for WithStatusPage<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    type Response = Routed<B>;
    type Error = Infallible;
    type Future = future::Either<
        future::MapOk<status_page::ResponseFuture, fn(PageResponse) -> Routed<B>>,
        future::MapOk<S::Future, fn(Response<B>) -> Routed<B>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.proxy.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        if req.uri().path() == "/upstream-status" {
            let page = tower::Service::call(&mut self.page, req);
            let left: fn(PageResponse) -> Routed<B> = |res| res.map(Either::Left);
            future::Either::Left(page.map_ok(left))
        } else {
            let right: fn(Response<B>) -> Routed<B> = |res| res.map(Either::Right);
            future::Either::Right(self.proxy.call(req).map_ok(right))
        }
    }
}

fn main() {
    let mut args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // Each worker is a thread with a current-thread runtime, like an nginx worker process
    // (see `workers`); this thread is the first. 0 (the default): one per core.
    if args.workers == 0 {
        args.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(Into::into)
        .and_then(|rt| rt.block_on(start(args)));
    if let Err(e) = result {
        eprintln!("gateway: {e}");
        std::process::exit(1);
    }
}

async fn start(mut args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.config.is_some() || args.nginx_conf.is_some() {
        return serve_config(&args).await;
    }
    if args.peers.is_empty() {
        // The embedded default: the seed's two Tomcats, played by two in-process backends.
        for name in ["tomcat1", "tomcat2"] {
            let addr = demo_backend(name).await?;
            println!("demo backend {name} on {addr}");
            args.peers.push((addr.to_string(), 1, false));
        }
    }
    let client = HttpClient::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(60))
        .build();
    let mut peers = Vec::new();
    for (addr, weight, backup) in &args.peers {
        let mut peer = Peer::new(addr.as_str(), client.peer(addr)?).weight(*weight);
        if *backup {
            peer = peer.backup();
        }
        peers.push(peer);
    }
    match args.policy.as_str() {
        "round-robin" => run(&args, peers, RoundRobin::new()).await,
        "ip-hash" => run(&args, peers, IpHash::new()).await,
        "least-conn" => run(&args, peers, LeastConn::new()).await,
        "random-two" => run(&args, peers, Random::two_least_conn()).await,
        other => Err(format!("unknown policy {other}\n{USAGE}").into()),
    }
}

/// `--config` or `--nginx-conf`: the gateway the file describes.
async fn serve_config(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if !args.peers.is_empty()
        || args.policy != "round-robin"
        || args.config.is_some() == args.nginx_conf.is_some()
    {
        return Err(format!(
            "--config or --nginx-conf, one of them, without --peer, --backup, --policy\n{USAGE}"
        )
        .into());
    }
    let config = match (&args.config, &args.nginx_conf) {
        (Some(toml), _) => read_toml(toml)?,
        (_, Some(path)) => {
            let imported = nginx::import_file(path)?;
            for e in &imported.report {
                eprintln!(
                    "{}:{}: {}: {}: {}",
                    path.display(),
                    e.line(),
                    e.directive(),
                    e.outcome(),
                    e.message()
                );
            }
            imported.config
        }
        (None, None) => unreachable!("checked above"),
    };
    let gateway = config.build()?;
    let addrs = if args.listen_set || config.listen.is_empty() {
        vec![args.listen]
    } else {
        config.listen.clone()
    };
    // One listener per address for each worker.
    let mut sets: Vec<Vec<std::net::TcpListener>> = (0..args.workers).map(|_| Vec::new()).collect();
    for addr in addrs {
        let listeners =
            workers::bind(addr, args.workers).map_err(|e| format!("listen {addr}: {e}"))?;
        // Printed first: tests and scripts read the address from this line.
        println!("gateway listening on http://{}", listeners[0].local_addr()?);
        for (set, listener) in sets.iter_mut().zip(listeners) {
            set.push(listener);
        }
    }
    let busy_poll = args.busy_poll;
    let keepalive_requests = args
        .keepalive_requests
        .or(config.keepalive_requests)
        .unwrap_or(keepalive::DEFAULT);
    workers::run(sets, move |connections| {
        accept(
            connections,
            gateway.clone(),
            busy_poll.map(busy_poll::start),
            keepalive_requests,
        )
    })
    .await?;
    Ok(())
}

#[cfg(feature = "serde")]
fn read_toml(path: &Path) -> Result<GatewayConfig, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

#[cfg(not(feature = "serde"))]
fn read_toml(_: &Path) -> Result<GatewayConfig, Box<dyn std::error::Error>> {
    Err("--config needs the `serde` feature: \
         cargo run --example gateway --features serde -- --config FILE.toml"
        .into())
}

/// Serves `gateway` on this worker's connections, as `run` serves the upstream.
async fn accept(
    mut connections: Connections,
    gateway: Gateway,
    activity: Option<Arc<Activity>>,
    keepalive_requests: u32,
) -> std::io::Result<()> {
    loop {
        let Accepted {
            stream,
            client,
            live,
        } = connections.accept().await?;
        let svc = ServiceBuilder::new()
            .map_request(with_client(client, activity.clone()))
            .service(gateway.clone());
        let svc = KeepaliveRequests::new(svc, keepalive_requests);
        tokio::spawn(serve(stream, InPlace::new(svc), live));
    }
}

/// Puts the client's address in each request: `$remote_addr` and `ip_hash` read it there.
/// Counts the request for `--busy-poll`.
fn with_client(
    client: SocketAddr,
    activity: Option<Arc<Activity>>,
) -> impl Fn(Request<Incoming>) -> Request<Incoming> + Clone {
    move |mut req| {
        if let Some(activity) = &activity {
            activity.request();
        }
        req.extensions_mut().insert(client);
        req
    }
}

/// Serves one client connection: HTTP/1.1 like the seed's `listen 80`, with upgrades for
/// WebSocket tunnels, and slow clients bounded: a request head must arrive within 30 s.
/// `live` counts it as its worker's until it ends (a tunnel it hands over is not counted).
async fn serve<S, B>(stream: tokio::net::TcpStream, svc: S, live: workers::Live)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // nginx's `tcp_nodelay on`: a response is never held back waiting for an ACK.
    let _ = stream.set_nodelay(true);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(timer::ConnTimer::default())
        .header_read_timeout(Duration::from_secs(30))
        // Each response's head and body go out from one buffer, in one `send`. hyper's
        // vectored writes queue them apart, which costs more instructions (about 375 a
        // request) than copying a small body; a large one is copied at memcpy speed.
        .writev(false)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
    drop(live);
}
