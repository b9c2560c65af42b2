//! One peer pick per policy, for 2 to 4096 peers, plus one request through an `Upstream`.
//!
//! `cargo bench --bench pick`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use http_body_util::Empty;
use tokio::time::Instant;
use tower::{service_fn, ServiceExt};
use tower_upstream::policy::{
    key, Candidates, ConsistentHash, IpHash, IpHashKey, LeastConn, Policy, Random, RoundRobin,
};
use tower_upstream::upstream::ReplayBody;
use tower_upstream::{Peer, PeerSet, Tried, Upstream};

const SIZES: [usize; 4] = [2, 16, 256, 4096];

fn peers(n: usize) -> PeerSet {
    // Mixed weights so that the weighted paths are exercised.
    let peers: Vec<_> = (0..n)
        .map(|i| {
            Peer::new(format!("10.0.{}.{}:80", i / 256, i % 256), ()).weight(1 + (i % 3) as u32)
        })
        .collect();
    PeerSet::new(&peers)
}

fn bench_policy<P>(c: &mut Criterion, name: &str, policy: P, req: &Request<()>)
where
    P: Policy<Request<()>>,
{
    bench_policy_on(c, name, policy, req, peers);
}

/// [`bench_policy`] on the sets `make` builds.
fn bench_policy_on<P>(
    c: &mut Criterion,
    name: &str,
    policy: P,
    req: &Request<()>,
    make: impl Fn(usize) -> PeerSet,
) where
    P: Policy<Request<()>>,
{
    let mut group = c.benchmark_group(format!("pick/{name}"));
    for n in SIZES {
        let set = make(n);
        let index = policy.build_index(&set);
        let tried = Tried::new();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut key = policy.key(black_box(req));
                let candidates = Candidates::new(&set, &tried, Instant::now());
                black_box(policy.pick(&candidates, &index, &mut key))
            })
        });
    }
    group.finish();
}

fn picks(c: &mut Criterion) {
    let mut req = Request::get("/catalog/item/42?page=3").body(()).unwrap();
    req.extensions_mut()
        .insert(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 17)));
    bench_policy(c, "round_robin", RoundRobin::new(), &req);
    bench_policy(c, "ip_hash", IpHash::new(), &req);
    bench_policy(
        c,
        "consistent_hash",
        ConsistentHash::new(key::RequestUri),
        &req,
    );
    bench_policy(c, "least_conn", LeastConn::new(), &req);
    // One request in flight on the first peer: every other peer ties, which nginx breaks by
    // a round-robin walk among them.
    let one_busy = |n| {
        let set = peers(n);
        set.acquire(0, Instant::now());
        set
    };
    bench_policy_on(c, "least_conn_one_busy", LeastConn::new(), &req, one_busy);
    bench_policy(c, "random_two_least_conn", Random::two_least_conn(), &req);
    // The ip_hash function alone, without the peer walk.
    c.bench_function("ip_hash/fold", |b| {
        let key = IpHashKey::new(Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 17))));
        b.iter(|| black_box(key.fold(black_box(89))))
    });
}

fn oneshot(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let backend = service_fn(|_: Request<ReplayBody<Empty<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(()))
    });
    let upstream = Upstream::builder()
        .peers((0..16).map(|i| Peer::new(format!("p{i}"), backend)))
        .build()
        .unwrap();
    c.bench_function("upstream/oneshot_16_peers", |b| {
        b.iter(|| {
            rt.block_on(
                upstream
                    .clone()
                    .oneshot(Request::new(Empty::<Bytes>::new())),
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, picks, oneshot);
criterion_main!(benches);
