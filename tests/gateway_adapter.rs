//! The gateway example's tower-to-hyper adapter (`examples/gateway/adapter.rs`): a ready
//! stack is called in place, with no clone per request; one that is not ready is driven by a
//! clone until it is; a readiness error is the request's error.

#[path = "../examples/gateway/adapter.rs"]
mod adapter;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};

use adapter::InPlace;
use futures_util::future::{self, Ready};
use hyper::service::Service as _;

/// Answers with the number of requests this instance has served, counts its clones, and is
/// not ready for its first `not_ready` polls (counted over all clones); or fails them.
struct Counting {
    served: usize,
    clones: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    not_ready: usize,
    fail: bool,
}

impl Counting {
    fn new(not_ready: usize) -> Self {
        Self {
            served: 0,
            clones: Arc::default(),
            polls: Arc::default(),
            not_ready,
            fail: false,
        }
    }

    fn cloned(&self) -> Self {
        self.clones.fetch_add(1, SeqCst);
        Self {
            served: self.served,
            clones: Arc::clone(&self.clones),
            polls: Arc::clone(&self.polls),
            not_ready: self.not_ready,
            fail: self.fail,
        }
    }
}

/// The adapter clones through `Clone`; this wrapper counts those clones.
struct Tracked(Counting);

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked(self.0.cloned())
    }
}

impl tower::Service<u32> for Tracked {
    type Response = (u32, usize);
    type Error = &'static str;
    type Future = Ready<Result<(u32, usize), &'static str>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.0.fail {
            return Poll::Ready(Err("not ready: failed"));
        }
        if self.0.polls.fetch_add(1, SeqCst) < self.0.not_ready {
            // Ready on the next poll: ask for one.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        self.0.served += 1;
        future::ready(Ok((req, self.0.served)))
    }
}

#[tokio::test]
async fn a_ready_stack_is_called_in_place_without_a_clone() {
    let inner = Counting::new(0);
    let clones = Arc::clone(&inner.clones);
    let svc = InPlace::new(Tracked(inner));
    for n in 1..=3 {
        // The same instance serves each request: its own count goes up.
        assert_eq!(svc.call(n).await, Ok((n, n as usize)));
    }
    assert_eq!(clones.load(SeqCst), 0);
}

#[tokio::test]
async fn a_stack_not_ready_is_driven_by_a_clone_until_it_is() {
    // Not ready when the adapter asks, nor on the clone's first poll: ready on the second.
    let inner = Counting::new(2);
    let (clones, polls) = (Arc::clone(&inner.clones), Arc::clone(&inner.polls));
    let svc = InPlace::new(Tracked(inner));
    assert_eq!(svc.call(7).await, Ok((7, 1)));
    assert_eq!(clones.load(SeqCst), 1);
    assert_eq!(polls.load(SeqCst), 3);
    // Ready from now on: called in place again, where nothing was served yet.
    assert_eq!(svc.call(8).await, Ok((8, 1)));
    assert_eq!(clones.load(SeqCst), 1);
}

#[tokio::test]
async fn a_readiness_error_is_the_requests_error() {
    let mut inner = Counting::new(0);
    inner.fail = true;
    let svc = InPlace::new(Tracked(inner));
    assert_eq!(svc.call(1).await, Err("not ready: failed"));
}

/// Answers each request with how many this instance has served.
#[derive(Clone, Default)]
struct Served(usize);

impl tower::Service<http::Request<hyper::body::Incoming>> for Served {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.0 += 1;
        future::ready(Ok(http::Response::new(self.0.to_string())))
    }
}

#[tokio::test]
async fn it_serves_a_hyper_connection_in_place() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // Spawned as the gateway spawns it: the connection's future is `Send`.
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), InPlace::new(Served::default())),
        );
    });
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for n in 1..=3 {
        let req = http::Request::get("/")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = client.send_request(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        // One service for the connection's requests, not a fresh clone for each.
        assert_eq!(body, n.to_string());
    }
}
