//! One location match among 10, 100 and 1,000 locations, for three mixes of prefix and
//! regex locations, plus one request through a `Locations` service.
//!
//! `cargo bench --bench locations`
//!
//! Each match includes the path normalisation and the `MatchedLocation` it returns. The
//! paths are chosen so that every regex of the level must be tried: one request matches a
//! deep prefix and no regex (all regexes fail), one matches the last regex.

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use tower::{service_fn, util::BoxCloneSyncService, ServiceExt};
use tower_upstream::location::{Location, Locations};

type Svc = BoxCloneSyncService<Request<()>, Response<()>, Infallible>;

const SIZES: [usize; 3] = [10, 100, 1000];

fn svc() -> Svc {
    BoxCloneSyncService::new(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }))
}

/// `n` locations, `regex_percent` of them regexes: prefixes `/svcI/` (with `/svcI/vJ/`
/// below some), and regexes alternating between extension suffixes (`~* \.extI$`) and
/// anchored API paths (`~ ^/apiI/v[0-9]+/`).
fn locations(n: usize, regex_percent: usize) -> Locations<Svc> {
    let regexes = n * regex_percent / 100;
    let prefixes = n - regexes;
    let mut builder = Locations::builder().prefix("/", svc());
    for i in 1..prefixes {
        builder = if i % 4 == 0 {
            builder.location(Location::prefix(format!("/svc{}/v{i}/", i / 4), svc()))
        } else {
            builder.prefix(format!("/svc{i}/"), svc())
        };
    }
    for i in 0..regexes {
        builder = if i % 2 == 0 {
            builder.regex_nocase(format!(r"\.ext{i}$"), svc())
        } else {
            builder.regex(format!(r"^/api{i}/v[0-9]+/"), svc())
        };
    }
    builder.build().unwrap()
}

fn matches(c: &mut Criterion) {
    for (mix, percent) in [("prefix", 0), ("regex_10pct", 10), ("regex_50pct", 50)] {
        let mut group = c.benchmark_group(format!("locations/{mix}"));
        for n in SIZES {
            let locations = locations(n, percent);
            let deep = "/svc2/v8/users/42/profile";
            assert!(locations.find(deep).unwrap().is_some());
            group.bench_with_input(BenchmarkId::new("prefix_hit", n), &n, |b, _| {
                b.iter(|| black_box(locations.find(black_box(deep))))
            });
            let regexes = n * percent / 100;
            if regexes > 0 {
                // The last regex location (in order): an extension or an API path.
                let last = regexes - 1;
                let path = if last % 2 == 0 {
                    format!("/static/file.EXT{last}")
                } else {
                    format!("/api{last}/v2/items")
                };
                let m = locations.find(&path).unwrap().unwrap();
                assert!(m.kind().is_regex(), "{path} -> {m}");
                group.bench_with_input(BenchmarkId::new("last_regex_hit", n), &n, |b, _| {
                    b.iter(|| black_box(locations.find(black_box(&path))))
                });
            }
        }
        group.finish();
    }

    let locations = locations(1000, 10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("locations/oneshot_1000_locations", |b| {
        b.iter(|| {
            let req = Request::get("/svc2/v8/users/42?x=1").body(()).unwrap();
            rt.block_on(locations.clone().oneshot(req)).unwrap()
        })
    });
}

criterion_group!(benches, matches);
criterion_main!(benches);
