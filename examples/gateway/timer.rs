//! hyper's header-read timer, with one Tokio timer per connection reused for every request.
//!
//! hyper asks its `Timer` for a new sleep each time it starts reading a request head and drops
//! it when the head is in. With `hyper_util`'s `TokioTimer` that is a Tokio timer inserted into
//! and removed from the runtime's timer wheel per request. Here the dropped timer goes back to
//! its connection and the next request moves its deadline later, which Tokio does without
//! touching the wheel while the timer is pending.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// One connection's timer source: give each connection its own (`ConnTimer::default()`).
#[derive(Clone, Default)]
pub(crate) struct ConnTimer {
    spare: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline.into());
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline.into())),
        };
        Box::pin(Reused {
            sleep: Some(sleep),
            home: Arc::clone(&self.spare),
        })
    }
}

/// A sleep that returns its Tokio timer to the connection when dropped.
struct Reused {
    sleep: Option<Pin<Box<Sleep>>>,
    home: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

impl Future for Reused {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for Reused {}

impl Drop for Reused {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            *self.home.lock().unwrap_or_else(PoisonError::into_inner) = Some(sleep);
        }
    }
}
