//! The `session_cluster` example's setup over real sockets on 127.0.0.1: two axum nodes with
//! tower-sessions and `RouteCookieLayer` over one store, behind an `Upstream` with
//! `Affinity::route("id")`. Sessions stick to their node; when a node is killed, its
//! sessions move to the survivor without a failed GET, their counters carry on, and the
//! survivor re-pins them to itself.
//!
//! The Redis variants use tower-sessions' Redis store at `REDIS_URL` (`.ci/run` starts a
//! `redis-server` on loopback). Without `REDIS_URL` they are skipped with a note, or fail
//! under CI (`CI` set).

#[path = "../examples/session_cluster.rs"]
#[allow(dead_code, unreachable_pub)]
mod cluster;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tower_sessions::{MemoryStore, SessionStore};

use cluster::{Client, Node, Reply, SESSION_COOKIE};

/// Sessions created through the gateway.
const SESSIONS: usize = 6;
/// Requests per session before the kill, and again after it (every fifth only reads).
const ROUNDS: u64 = 30;
/// Clients reading victim sessions while the node is killed.
const READERS: usize = 4;
/// Requests per connection: each session uses several connections to the gateway.
const PER_CONNECTION: usize = 4;

fn note(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `REDIS_URL`, or `None` after a note; under CI a missing URL fails the test.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: REDIS_URL is not set; under CI the Redis tests must run \
             (.ci/run installs redis-server, starts it on 127.0.0.1 and exports REDIS_URL)"
        ),
        _ => {
            note(&format!(
                "SKIPPED {test}: REDIS_URL is not set (start `redis-server --port 6390 --bind \
                 127.0.0.1 --save '' --appendonly no` and set REDIS_URL=redis://127.0.0.1:6390)"
            ));
            None
        }
    }
}

/// The session id in a cookie value `<id>.<route>`.
fn id_of(cookie: &str) -> &str {
    let value = cookie.strip_prefix("id=").unwrap_or(cookie);
    value.split('.').next().unwrap()
}

/// One user: a cookie-keeping client, the node that created its session, its counter.
struct User {
    client: Client,
    owner: String,
    id: String,
    count: u64,
}

/// What went wrong, shared by the tasks (a failed GET is recorded, not panicked on, so the
/// final count is reported).
#[derive(Clone, Default)]
struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    fn push(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// GETs `path`; a transport error or a status other than 200 is a failure.
async fn get(client: &mut Client, path: &str, failures: &Failures) -> Option<Reply> {
    match client.get(path).await {
        Ok(reply) if reply.status == 200 => Some(reply),
        Ok(reply) => {
            failures.push(format!("GET {path}: {} {}", reply.status, reply.body));
            None
        }
        Err(e) => {
            failures.push(format!("GET {path}: {e}"));
            None
        }
    }
}

/// `ROUNDS` requests of one user, checking each answer; `expect_node` is the node that must
/// serve them, and `moving` says the first one must be a fallback that re-pins the session.
async fn rounds(mut user: User, expect_node: String, moving: bool, failures: Failures) -> User {
    let expect_node = expect_node.as_str();
    for round in 0..ROUNDS {
        let read_only = round % 5 == 4;
        let path = if read_only { "/peek" } else { "/count" };
        let Some(reply) = get(&mut user.client, path, &failures).await else {
            return user;
        };
        let expected = if read_only {
            user.count
        } else {
            user.count + 1
        };
        let who = format!("session {} round {round} {path}", user.id);
        let check = |ok: bool, what: &str| {
            if !ok {
                failures.push(format!("{who}: {what}: {reply:?}"));
            }
        };
        check(reply.count() == Some((expect_node, expected)), "answer");
        check(reply.upstream == expect_node, "served by");
        let first_move = moving && round == 0;
        let affinity = if first_move {
            format!("cookie {} fallback", user.owner)
        } else {
            format!("cookie {expect_node}")
        };
        check(reply.affinity == affinity, "affinity");
        let set_cookie = reply.set_cookie.as_deref();
        let pinned = format!("id={}.{expect_node}", user.id);
        // tower-sessions sets the cookie when the session changed; otherwise only the
        // re-pinning does.
        if !read_only || first_move {
            check(set_cookie == Some(pinned.as_str()), "Set-Cookie");
        } else {
            check(set_cookie.is_none(), "no Set-Cookie");
        }
        user.count = expected;
    }
    user.owner = expect_node.to_owned();
    user
}

/// A reader of one victim session: `/peek` in a loop on its own connections until `stop`.
struct ReaderLog {
    gets: usize,
    moved_at: Option<usize>,
}

async fn reader(
    mut client: Client,
    id: String,
    floor: u64,
    stop: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
    failures: Failures,
) -> ReaderLog {
    let mut log = ReaderLog {
        gets: 0,
        moved_at: None,
    };
    let mut last = floor;
    while !stop.load(Ordering::SeqCst) {
        let Some(reply) = get(&mut client, "/peek", &failures).await else {
            return log;
        };
        log.gets += 1;
        started.fetch_add(1, Ordering::SeqCst);
        let who = format!("reader of {id}, GET {}", log.gets);
        let Some((node, n)) = reply.count() else {
            failures.push(format!("{who}: {reply:?}"));
            return log;
        };
        if n < last {
            failures.push(format!("{who}: the counter went back from {last} to {n}"));
        }
        last = n;
        let expected = match (node, log.moved_at) {
            ("node1", None) => ("cookie node1", None),
            ("node2", None) => {
                log.moved_at = Some(log.gets);
                // Re-pinned by RouteCookieLayer: /peek does not change the session, so
                // tower-sessions sets no cookie of its own.
                ("cookie node1 fallback", Some(format!("id={id}.node2")))
            }
            ("node2", Some(_)) => ("cookie node2", None),
            _ => {
                failures.push(format!("{who}: back on node1 after moving: {reply:?}"));
                return log;
            }
        };
        if (reply.affinity.as_str(), reply.set_cookie.as_deref())
            != (expected.0, expected.1.as_deref())
        {
            failures.push(format!("{who}: expected {expected:?}: {reply:?}"));
        }
    }
    log
}

/// The whole story over two nodes with the stores `stores`; returns a one-line summary.
async fn failover<S>(stores: [S; 2]) -> String
where
    S: SessionStore + Clone,
{
    let [store1, store2] = stores;
    let nodes = [
        Node::spawn("node1", store1).await.unwrap(),
        Node::spawn("node2", store2).await.unwrap(),
    ];
    let gateway = cluster::gateway(&[&nodes[0], &nodes[1]]).await.unwrap();
    let failures = Failures::default();

    // New sessions are balanced round-robin, and each cookie names its node.
    let mut users = Vec::new();
    for _ in 0..SESSIONS {
        let mut client = Client::new(gateway, PER_CONNECTION);
        let reply = client.get("/count").await.unwrap();
        assert_eq!((reply.status, reply.affinity.as_str()), (200, "none"));
        let (node, n) = reply.count().unwrap();
        assert_eq!(n, 1);
        let cookie = reply.set_cookie.clone().unwrap();
        assert!(cookie.ends_with(&format!(".{node}")), "{cookie}");
        assert_eq!(client.cookie(SESSION_COOKIE).unwrap(), &cookie[3..]);
        users.push(User {
            owner: node.to_owned(),
            id: id_of(&cookie).to_owned(),
            client,
            count: 1,
        });
    }
    let on = |node: &str, users: &[User]| users.iter().filter(|u| u.owner == node).count();
    assert_eq!((on("node1", &users), on("node2", &users)), (3, 3));

    // Every request of a session goes to its node, over several connections.
    let mut tasks = JoinSet::new();
    for user in users {
        let owner = user.owner.clone();
        tasks.spawn(rounds(user, owner, false, failures.clone()));
    }
    let mut users = tasks.join_all().await;
    let failed = failures.take();
    assert!(failed.is_empty(), "before the kill: {failed:#?}");

    // Readers keep node1's sessions busy while node1 dies; the counting users wait between
    // two requests (see below).
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let victims: Vec<&User> = users.iter().filter(|u| u.owner == "node1").collect();
    let mut readers = JoinSet::new();
    for i in 0..READERS {
        let user = victims[i % victims.len()];
        readers.spawn(reader(
            user.client.fork(),
            user.id.clone(),
            user.count,
            stop.clone(),
            started.clone(),
            failures.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) < READERS * 20 {
        assert!(
            Instant::now() < deadline,
            "the readers stalled: {:#?}",
            failures.take()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let before_kill = started.load(Ordering::SeqCst);
    let killed = Instant::now();
    nodes[0].kill().await;

    // The counting users carry on. They were between two requests at the kill: a count
    // that node1 had saved but not yet answered when it died would be counted again after
    // the retry (a GET is retried: at least once, not exactly once). The readers' GETs went
    // on through the kill, some of them in flight on node1.
    let mut tasks = JoinSet::new();
    for user in users.drain(..) {
        let moving = user.owner == "node1";
        tasks.spawn(rounds(user, "node2".into(), moving, failures.clone()));
    }
    let mut users = tasks.join_all().await;
    let after = killed.elapsed();
    stop.store(true, Ordering::SeqCst);
    let logs = readers.join_all().await;
    let failed = failures.take();
    assert!(failed.is_empty(), "after the kill: {failed:#?}");
    for (i, log) in logs.iter().enumerate() {
        assert!(log.moved_at.is_some(), "reader {i} was re-pinned to node2");
    }
    for user in &users {
        assert_eq!(user.count, 1 + 2 * (ROUNDS - ROUNDS / 5), "{}", user.id);
        assert_eq!(user.owner, "node2");
    }

    // The survivor gives a session a new id (login): the new id gets its route, the data stays.
    let user = &mut users[0];
    let reply = user.client.get("/rotate").await.unwrap();
    let cookie = reply.set_cookie.clone().unwrap();
    assert_ne!(id_of(&cookie), user.id);
    assert!(cookie.ends_with(".node2"), "{cookie}");
    assert_eq!(reply.count(), Some(("node2", user.count)));
    let reply = user.client.get("/count").await.unwrap();
    assert_eq!(reply.count(), Some(("node2", user.count + 1)));
    assert_eq!(reply.affinity, "cookie node2");
    assert_eq!(reply.set_cookie.as_deref(), Some(cookie.as_str()));

    let reads: usize = logs.iter().map(|l| l.gets).sum();
    let counting = SESSIONS as u64 * (1 + 2 * ROUNDS) + 2;
    format!(
        "{} GETs by {SESSIONS} sessions over {PER_CONNECTION}-request connections and \
         {reads} by {READERS} readers ({before_kill} before the kill), 0 failed; 3 sessions \
         moved from node1 to node2 with continuous counters; {after:?} from the kill to the \
         last counting request",
        counting
    )
}

/// Runs `f`, failing the test instead of hanging if a server stops answering.
async fn within_a_minute<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the scenario took more than a minute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_sessions_survive_their_node() {
    let store = MemoryStore::default();
    let summary = within_a_minute(failover([store.clone(), store])).await;
    note(&format!("memory store: {summary}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_sessions_survive_their_node() {
    let Some(url) = redis_url("redis_store_sessions_survive_their_node") else {
        return;
    };
    // One pool per node, as two processes would have.
    let stores = [
        cluster::redis_store(&url, 4).await.unwrap(),
        cluster::redis_store(&url, 4).await.unwrap(),
    ];
    let summary = within_a_minute(failover(stores)).await;
    note(&format!("redis store: {summary}"));
}

/// The example's walk-through, as `cargo run --example session_cluster` prints it.
async fn check_walkthrough<S>(stores: [S; 2], name: &str)
where
    S: SessionStore + Clone,
{
    let mut out = Vec::new();
    let steps = cluster::walkthrough(stores, name, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    let counts: Vec<_> = steps.iter().map(|s| s.reply.count().unwrap()).collect();
    assert_eq!(
        counts,
        [
            ("node1", 1),
            ("node1", 2),
            ("node1", 3),
            ("node2", 4),
            ("node2", 5),
            ("node2", 6)
        ],
        "{out}"
    );
    assert!(
        out.contains("-- node1, which holds the session, is stopped --"),
        "{out}"
    );
    let id = id_of(&steps[0].cookie);
    for (i, step) in steps.iter().enumerate() {
        let route = if i < 3 { "node1" } else { "node2" };
        assert_eq!(step.cookie, format!("{id}.{route}"), "{out}");
    }
    assert!(
        out.contains(
            "4. GET /count -> 200 node2 count=4  [node2, x-affinity: cookie node1 fallback]"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_with_the_memory_store() {
    let store = MemoryStore::default();
    within_a_minute(check_walkthrough([store.clone(), store], "memory")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_with_the_redis_store() {
    let Some(url) = redis_url("walkthrough_with_the_redis_store") else {
        return;
    };
    let stores = [
        cluster::redis_store(&url, 2).await.unwrap(),
        cluster::redis_store(&url, 2).await.unwrap(),
    ];
    within_a_minute(check_walkthrough(stores, "redis")).await;
}
