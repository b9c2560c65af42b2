//! Helpers shared by the fuzz targets.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future that never waits on I/O or timers (services made of `service_fn`s over
/// in-memory bodies) to completion, without a runtime.
///
/// # Panics
///
/// If the future is still pending after many polls: it waits on something that will never
/// wake it here, which these targets never do.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the future did not complete without I/O");
}

/// Splits the input into lines (`\n`), lossily as UTF-8.
pub fn lines(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}
