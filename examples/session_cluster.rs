//! Two axum backends sharing their sessions, behind the gateway with `Affinity::route`: the
//! Tomcat cluster of the seed, in Rust.
//!
//! ```text
//! cargo run --example session_cluster                                   # in-memory store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example session_cluster  # tower-sessions' Redis store
//! ```
//!
//! Each node runs tower-sessions over one shared store, with `RouteCookieLayer` outside the
//! session layer, so its session cookie reads `id=<session id>.node1` (Tomcat's `jvmRoute`).
//! The gateway is an `Upstream` with `Affinity::route("id")`: a request goes to the node its
//! cookie names. The walk-through counts in a session, stops the node that owns it, and
//! shows the next request landing on the other node with the counter going on, and that node
//! taking the session over (`JvmRouteBinderValve`).
//!
//! Everything listens on 127.0.0.1 with ports picked by the system; the program exits 0
//! once the walk-through has shown the counter carry on. `tests/session_cluster.rs` builds
//! on the same functions.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceBuilder;
use tower_sessions::{Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config as RedisConfig, Pool};
use tower_sessions_redis_store::RedisStore;
use tower_upstream::affinity::{Affinity, AffinityDecision};
use tower_upstream::http_peer::PeerBody;
use tower_upstream::route_cookie::RouteCookieLayer;
use tower_upstream::{HttpClient, Peer, ResponseBody, SelectedPeer, Upstream};

/// The errors of this example.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// tower-sessions' default cookie name.
pub const SESSION_COOKIE: &str = "id";

// ===== the backends =====

/// The app of one node: `/count` adds one to the session's counter, `/peek` reads it,
/// `/rotate` gives the session a new id (`Session::cycle_id`, as at login). Each answers
/// `<node> count=<n>`.
pub fn app<S>(node: &'static str, store: S) -> Router
where
    S: SessionStore + Clone,
{
    Router::new()
        .route("/count", get(count))
        .route("/peek", get(peek))
        .route("/rotate", get(rotate))
        .with_state(node)
        // Plain HTTP on loopback: no `Secure` (tower-sessions and the layer default to it).
        .layer(SessionManagerLayer::new(store).with_secure(false))
        // Outside the session layer: it sees the cookie before and after tower-sessions.
        .layer(RouteCookieLayer::new(SESSION_COOKIE, node).secure(false))
}

type Answer = Result<String, (StatusCode, String)>;

fn failed(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn count(State(node): State<&'static str>, session: Session) -> Answer {
    let n = session.get::<u64>("count").await.map_err(failed)?;
    let n = n.unwrap_or(0) + 1;
    session.insert("count", n).await.map_err(failed)?;
    Ok(format!("{node} count={n}"))
}

async fn peek(State(node): State<&'static str>, session: Session) -> Answer {
    let n = session.get::<u64>("count").await.map_err(failed)?;
    Ok(format!("{node} count={}", n.unwrap_or(0)))
}

async fn rotate(State(node): State<&'static str>, session: Session) -> Answer {
    session.cycle_id().await.map_err(failed)?;
    let n = session.get::<u64>("count").await.map_err(failed)?;
    Ok(format!("{node} count={}", n.unwrap_or(0)))
}

/// A node serving [`app`] on 127.0.0.1, which can be killed like a crashed process: its
/// listener closes and every connection is dropped, requests in flight included.
pub struct Node {
    /// The node's name, which is also its route.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    tasks: Arc<Mutex<JoinSet<()>>>,
    killed: Arc<AtomicBool>,
}

impl Node {
    /// Starts the node `name` over `store` on a free port of 127.0.0.1.
    pub async fn spawn<S>(name: &'static str, store: S) -> Result<Self, Error>
    where
        S: SessionStore + Clone,
    {
        let app = app(name, store);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let killed = Arc::new(AtomicBool::new(false));
        let (conns, dead) = (tasks.clone(), killed.clone());
        tasks.lock().unwrap().spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let svc = TowerToHyperService::new(app.clone());
                let mut conns = conns.lock().unwrap();
                if dead.load(Ordering::SeqCst) {
                    return;
                }
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            name,
            addr,
            tasks,
            killed,
        })
    }

    /// Kills the node and waits until its listener and connections are gone.
    pub async fn kill(&self) {
        let mut tasks = {
            let mut tasks = self.tasks.lock().unwrap();
            self.killed.store(true, Ordering::SeqCst);
            tasks.abort_all();
            std::mem::take(&mut *tasks)
        };
        while tasks.join_next().await.is_some() {}
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("killed", &self.killed)
            .finish_non_exhaustive()
    }
}

/// tower-sessions' Redis store on a pool of `size` connections to `url`.
pub async fn redis_store(url: &str, size: usize) -> Result<RedisStore<Pool>, Error> {
    let pool = Pool::new(RedisConfig::from_url(url)?, None, None, None, size)?;
    pool.init().await?;
    Ok(RedisStore::new(pool))
}

// ===== the gateway =====

/// The gateway: an [`Upstream`] over the nodes (each peer's route is the node's name) with
/// `Affinity::route("id")`, served by hyper on a free port of 127.0.0.1. Each response says
/// which node served it (`x-upstream`) and how affinity decided (`x-affinity`: `cookie
/// node1`, `none`, with ` fallback` when the pinned node could not serve).
pub async fn gateway(nodes: &[&Node]) -> Result<SocketAddr, Error> {
    let client = HttpClient::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(10))
        .build();
    let mut builder = Upstream::builder().name("cluster");
    for node in nodes {
        let peer = client.peer(&node.addr.to_string())?;
        builder = builder.peer(Peer::new(node.name, peer).route(node.name));
    }
    let upstream = builder.affinity(Affinity::route(SESSION_COOKIE)).build()?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .map_response(report_choice)
                .service(upstream.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Adds `x-upstream` and `x-affinity` from the response extensions the upstream sets.
/// What the gateway answers with: the peer's body, counted by the upstream.
type GatewayBody = ResponseBody<PeerBody>;

fn report_choice(mut res: Response<GatewayBody>) -> Response<GatewayBody> {
    let peer = res
        .extensions()
        .get::<SelectedPeer>()
        .map(|p| p.name().to_owned());
    let affinity = res.extensions().get::<AffinityDecision>().map(|d| {
        let mut text = d.source().as_str().to_owned();
        if let Some(route) = d.route() {
            text = format!("{text} {route}");
        }
        if d.is_fallback() {
            text.push_str(" fallback");
        }
        text
    });
    for (name, value) in [("x-upstream", peer), ("x-affinity", affinity)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}

// ===== a client that keeps cookies =====

/// One answer of the gateway.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body: `<node> count=<n>`.
    pub body: String,
    /// The node that served it (`x-upstream`).
    pub upstream: String,
    /// How affinity chose it (`x-affinity`).
    pub affinity: String,
    /// The session cookie it set, `id=<value>`, if any.
    pub set_cookie: Option<String>,
}

impl Reply {
    /// The node and the counter in the body.
    pub fn count(&self) -> Option<(&str, u64)> {
        let (node, n) = self.body.split_once(" count=")?;
        Some((node, n.parse().ok()?))
    }
}

/// An HTTP/1.1 client of the gateway that keeps cookies like a browser and opens a new
/// connection every `per_connection` requests.
pub struct Client {
    gateway: SocketAddr,
    jar: BTreeMap<String, String>,
    conn: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
    sent_on_conn: usize,
    per_connection: usize,
}

impl Client {
    /// A client without cookies.
    pub fn new(gateway: SocketAddr, per_connection: usize) -> Self {
        Self {
            gateway,
            jar: BTreeMap::new(),
            conn: None,
            sent_on_conn: 0,
            per_connection: per_connection.max(1),
        }
    }

    /// Another client with a copy of this one's cookies (the same session), on its own
    /// connections.
    pub fn fork(&self) -> Self {
        Self {
            jar: self.jar.clone(),
            ..Self::new(self.gateway, self.per_connection)
        }
    }

    /// The value of the cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.get(name).map(String::as_str)
    }

    /// GETs `path` with the client's cookies, and keeps the cookies the answer sets.
    pub async fn get(&mut self, path: &str) -> Result<Reply, Error> {
        if self.sent_on_conn == self.per_connection {
            self.conn = None;
        }
        let mut sender = match self.conn.take() {
            Some(sender) => sender,
            None => {
                self.sent_on_conn = 0;
                let stream = tokio::net::TcpStream::connect(self.gateway).await?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        sender.ready().await?;
        let mut req = Request::get(path).header("host", "cluster.test");
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
            req = req.header(COOKIE, cookies.join("; "));
        }
        let res = sender.send_request(req.body(Empty::new())?).await?;
        self.conn = Some(sender);
        self.sent_on_conn += 1;

        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (upstream, affinity) = (header("x-upstream"), header("x-affinity"));
        let mut set_cookie = None;
        for line in res.headers().get_all(SET_COOKIE) {
            let Some((name, value, removal)) = parse_set_cookie(line.to_str()?) else {
                continue;
            };
            if name == SESSION_COOKIE {
                set_cookie = Some(format!("{name}={value}"));
            }
            if removal {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            upstream,
            affinity,
            set_cookie,
        })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("gateway", &self.gateway)
            .field("jar", &self.jar)
            .field("sent_on_conn", &self.sent_on_conn)
            .field("per_connection", &self.per_connection)
            .finish_non_exhaustive()
    }
}

/// `(name, value, is a removal)` of a `Set-Cookie` line.
fn parse_set_cookie(line: &str) -> Option<(&str, &str, bool)> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let value = value.trim().trim_matches('"');
    let expired = parts.any(|attr| {
        attr.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("max-age")
                && v.trim().parse::<i64>().is_ok_and(|s| s <= 0)
        })
    });
    Some((name.trim(), value, value.is_empty() || expired))
}

// ===== the walk-through =====

/// One request of the walk-through.
#[derive(Debug, Clone)]
pub struct Step {
    /// The answer.
    pub reply: Reply,
    /// The session cookie the client held after it.
    pub cookie: String,
}

/// Runs the walk-through over two nodes with the stores `stores` and prints each step to
/// `out`: three requests counting in a new session, its node stopped, three more requests.
pub async fn walkthrough<S>(
    stores: [S; 2],
    store_name: &str,
    out: &mut dyn Write,
) -> Result<Vec<Step>, Error>
where
    S: SessionStore + Clone,
{
    let [store1, store2] = stores;
    let nodes = [
        Node::spawn("node1", store1).await?,
        Node::spawn("node2", store2).await?,
    ];
    let gateway = gateway(&[&nodes[0], &nodes[1]]).await?;
    writeln!(out, "session store: {store_name}")?;
    for node in &nodes {
        writeln!(out, "{} on {} (route {0})", node.name, node.addr)?;
    }
    writeln!(
        out,
        "gateway on http://{gateway}, Affinity::route(\"{SESSION_COOKIE}\")\n"
    )?;

    let mut client = Client::new(gateway, 2);
    let mut steps = Vec::new();
    let mut owner = None;
    for i in 1..=6 {
        if i == 4 {
            let owner = owner.as_deref().ok_or("no request was served")?;
            let node = nodes
                .iter()
                .find(|n| n.name == owner)
                .ok_or("an unknown node answered")?;
            node.kill().await;
            writeln!(out, "-- {owner}, which holds the session, is stopped --")?;
        }
        let reply = client.get("/count").await?;
        let cookie = client.cookie(SESSION_COOKIE).unwrap_or("-").to_owned();
        writeln!(
            out,
            "{i}. GET /count -> {} {}  [{}, x-affinity: {}]{}",
            reply.status,
            reply.body,
            reply.upstream,
            reply.affinity,
            match &reply.set_cookie {
                Some(c) => format!("  Set-Cookie: {c}"),
                None => String::new(),
            }
        )?;
        if reply.status != 200 {
            return Err(format!("request {i} failed: {} {}", reply.status, reply.body).into());
        }
        owner.get_or_insert(reply.upstream.clone());
        steps.push(Step { reply, cookie });
    }

    let counts: Vec<u64> = steps
        .iter()
        .filter_map(|s| s.reply.count().map(|(_, n)| n))
        .collect();
    if counts != [1, 2, 3, 4, 5, 6] {
        return Err(format!("the counter went {counts:?}").into());
    }
    let id = |cookie: &str| cookie.split('.').next().unwrap_or_default().to_owned();
    let (owner, survivor) = (&steps[0].reply.upstream, &steps[5].reply.upstream);
    let repinned = steps[3].reply.set_cookie.as_deref().unwrap_or_default();
    if survivor == owner
        || !steps[3].reply.affinity.ends_with("fallback")
        || !repinned.ends_with(&format!(".{survivor}"))
        || steps[4..]
            .iter()
            .any(|s| s.reply.affinity != format!("cookie {survivor}"))
        || id(&steps[0].cookie) != id(&steps[5].cookie)
    {
        return Err("the session was not taken over as expected".into());
    }
    writeln!(
        out,
        "\nthe counter went on from 3 to 4 on {survivor}, which re-pinned the session to \
         itself; the session id never changed."
    )?;
    Ok(steps)
}

#[tokio::main]
async fn main() {
    let result = match std::env::var("REDIS_URL") {
        Ok(url) => match (redis_store(&url, 2).await, redis_store(&url, 2).await) {
            (Ok(a), Ok(b)) => {
                walkthrough([a, b], &format!("Redis at {url}"), &mut std::io::stdout()).await
            }
            (Err(e), _) | (_, Err(e)) => Err(format!("cannot use Redis at {url}: {e}").into()),
        },
        Err(_) => {
            let store = tower_sessions::MemoryStore::default();
            walkthrough(
                [store.clone(), store],
                "memory (one store shared in-process; set REDIS_URL for Redis)",
                &mut std::io::stdout(),
            )
            .await
        }
    };
    if let Err(e) = result {
        eprintln!("session_cluster: {e}");
        std::process::exit(1);
    }
}
