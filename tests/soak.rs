//! Fault-injection soak through the full gateway stack on loopback (see
//! `tests/support/soak.rs`): peers killed, restarted, hanging and answering 502 under mixed
//! GET/POST load. Every GET succeeds unless every peer is down, no POST reaches a backend
//! twice, no body that was answered `200` is lost, and nothing leaks.
//!
//! The short soak runs with `cargo test`; the long one (60 s, 200 connections) with
//! `cargo test --release --test soak -- --ignored --nocapture`.

#[path = "support/soak.rs"]
mod soak;
mod support;

use std::alloc::System;
use std::time::Duration;

use cap::Cap;
use soak::{Bounds, Config};

/// Counts the bytes this test binary has allocated and not freed: the live heap, which
/// the soak compares before and after the load (resident memory also holds what the
/// allocator keeps for reuse).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

async fn soak(config: Config, bounds: Bounds) {
    let report = soak::run(config, bounds, || ALLOCATOR.allocated()).await;
    eprintln!("{report}");
    let violations = report.violations();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Every fault kind once, in 10 s at 50 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak() {
    let config = Config {
        duration: Duration::from_secs(10),
        connections: 50,
        cycle: Duration::from_secs(10),
        fail_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_secs(1),
        post_percent: 35,
        seed: 0x5eed_0001,
    };
    let bounds = Bounds {
        heap_kib: 4 * 1024,
        rss_kib: 64 * 1024,
    };
    soak(config, bounds).await;
}

/// The long soak: 60 s at 200 connections, three rounds of faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "60 s of load: cargo test --release --test soak -- --ignored --nocapture"]
async fn long_soak() {
    let config = Config {
        duration: Duration::from_secs(60),
        connections: 200,
        cycle: Duration::from_secs(20),
        fail_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        post_percent: 35,
        seed: 0x5eed_0060,
    };
    let bounds = Bounds {
        heap_kib: 4 * 1024,
        rss_kib: 192 * 1024,
    };
    soak(config, bounds).await;
}
