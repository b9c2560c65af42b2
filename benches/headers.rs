//! Header rewriting per request: the seed's `proxy_set_header` lines plus `X-Forwarded-*`,
//! through `ProxyHeaders` around a service that answers at once.
//!
//! `cargo bench --bench headers`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::{service_fn, Layer, ServiceExt};
use tower_upstream::proxy_headers::ProxyHeadersLayer;

fn request() -> Request<()> {
    let mut req = Request::get("/shop/cart?item=42")
        .header("host", "shop.example")
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .header("connection", "keep-alive")
        .header("x-forwarded-for", "198.51.100.7")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert("192.0.2.10:50000".parse::<SocketAddr>().unwrap());
    req
}

fn headers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let inner = service_fn(|req: Request<()>| async move {
        black_box(&req);
        Ok::<_, Infallible>(Response::new(()))
    });
    let seed = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .build()
        .unwrap()
        .layer(inner);
    c.bench_function("headers/seed_two_lines", |b| {
        b.iter(|| rt.block_on(seed.clone().oneshot(request())).unwrap())
    });
    let full = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .x_forwarded()
        .forwarded()
        .build()
        .unwrap()
        .layer(inner);
    c.bench_function("headers/x_forwarded_and_forwarded", |b| {
        b.iter(|| rt.block_on(full.clone().oneshot(request())).unwrap())
    });
    c.bench_function("headers/baseline_no_rewrite", |b| {
        b.iter(|| rt.block_on(inner.oneshot(request())).unwrap())
    });
}

criterion_group!(benches, headers);
criterion_main!(benches);
