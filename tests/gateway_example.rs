//! Runs `examples/gateway/` as a user would (its embedded default: two demo backends) and
//! checks what the README promises: two requests show both backends, with the seed's
//! `Host $host` and `X-Real-IP $remote_addr` headers; and that large bodies pass through it
//! whole.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};

mod support;

use support::example::{gateway_binary, Kill};

/// Starts the gateway example with `args`; its address, and the guard that stops it.
fn start(args: &[&str]) -> (SocketAddr, Kill) {
    support::example::spawn(
        Command::new(gateway_binary(&[]))
            .args(["--listen", "127.0.0.1:0"])
            .args(args),
    )
}

#[tokio::test]
async fn gateway_example_serves_both_demo_backends() {
    let (addr, _guard) = start(&[]);
    let (s1, _, first) = support::get(addr, "/index.jsp").await;
    let (s2, _, second) = support::get(addr, "/index.jsp").await;
    assert_eq!((s1, s2), (200, 200));
    assert!(first.starts_with("tomcat1"), "{first}");
    assert!(second.starts_with("tomcat2"), "{second}");
    for body in [&first, &second] {
        assert!(body.contains("Host: gateway.test"), "Host $host: {body}");
        assert!(
            body.contains("X-Real-IP: 127.0.0.1"),
            "X-Real-IP $remote_addr: {body}"
        );
    }
}

/// With `--policy ip-hash` the client's address reaches the policy too: every request from
/// 127.0.0.1 goes to the same backend (round-robin, which ip_hash uses for a request without
/// an address, would alternate).
#[tokio::test]
async fn ip_hash_keeps_a_client_on_one_backend() {
    let (addr, _guard) = start(&["--policy", "ip-hash"]);
    let mut served = Vec::new();
    for _ in 0..4 {
        let (status, _, body) = support::get(addr, "/index.jsp").await;
        assert_eq!(status, 200);
        assert!(body.contains("X-Real-IP: 127.0.0.1"), "{body}");
        served.push(body.split(' ').next().unwrap().to_owned());
    }
    assert!(served.iter().all(|s| *s == served[0]), "{served:?}");
}

/// 3 MiB that differ from one 64 KiB frame to the next.
fn large_body() -> Vec<Bytes> {
    (0..48u8)
        .map(|i| Bytes::from(vec![b'a' + i % 26; 64 * 1024]))
        .collect()
}

#[tokio::test]
async fn large_bodies_pass_through_whole() {
    // `/length`: one `Content-Length` body; `/chunked`: frame by frame.
    let backend = support::serve(tower::service_fn(|req: Request<Incoming>| async move {
        let frames = large_body();
        let body = if req.uri().path() == "/length" {
            Either::Left(Full::new(frames.concat().into()))
        } else {
            let frames = frames
                .into_iter()
                .map(|f| Ok::<_, Infallible>(Frame::data(f)));
            Either::Right(StreamBody::new(futures_util::stream::iter(frames)))
        };
        Ok::<_, Infallible>(Response::new(body))
    }))
    .await;
    let (addr, _guard) = start(&["--peer", &format!("{backend}=1")]);
    let expected = large_body().concat();
    // One connection, kept alive: each response ends where the next begins.
    let mut conn = support::Conn::open("127.0.0.1".parse().unwrap(), addr).await;
    for path in ["/length", "/chunked", "/length", "/chunked"] {
        let (status, _, body) = conn.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body.len(), expected.len(), "{path}");
        assert!(body.as_bytes() == expected, "{path}: body differs");
    }
}

#[tokio::test]
async fn a_second_gateway_on_a_taken_port_does_not_start() {
    let (addr, _first) = start(&[]);
    let mut second = Command::new(gateway_binary(&[]))
        .args(["--listen", &addr.to_string(), "--peer", "127.0.0.1:9"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second gateway");
    // `SO_REUSEPORT` alone would let it share the port and run on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second gateway started on {addr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&format!("listen {addr}")), "{stderr}");
    // The first one still serves.
    assert_eq!(support::get(addr, "/index.jsp").await.0, 200);
}

/// Time the gateway's main thread (its first worker, here the only one) has run, from
/// `/proc/PID/schedstat`.
fn on_cpu(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    let ns = stat.split_whitespace().next().unwrap().parse().unwrap();
    std::time::Duration::from_nanos(ns)
}

/// `--busy-poll USECS`: after a request the worker keeps running, polling its sockets, until
/// USECS have passed without one; then it sleeps in the kernel again.
#[tokio::test]
async fn busy_poll_polls_after_a_request_then_sleeps() {
    use std::time::Duration;
    let (addr, guard) = start(&["--workers", "1", "--busy-poll", "1000000"]);
    let pid = guard.0.id();
    let (status, _, body) = support::get(addr, "/index.jsp").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("tomcat1"), "{body}");
    let start = on_cpu(pid);
    std::thread::sleep(Duration::from_millis(300));
    let polling = on_cpu(pid) - start;
    // Polling, it runs whenever it gets a core: most of the 300 ms on an idle machine, and
    // still a good share of them on a busy one.
    assert!(polling > Duration::from_millis(30), "{polling:?}");
    // The 1 s window has passed: asleep.
    std::thread::sleep(Duration::from_millis(1200));
    let start = on_cpu(pid);
    std::thread::sleep(Duration::from_millis(300));
    let idle = on_cpu(pid) - start;
    assert!(idle < Duration::from_millis(15), "{idle:?}");
    // And a request wakes it to serve and poll again.
    let (status, _, body) = support::get(addr, "/index.jsp").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("tomcat2"), "{body}");
    let start = on_cpu(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert!(on_cpu(pid) - start > Duration::from_millis(30));
}

/// nginx's `keepalive_requests`, default 1000: the response to a connection's last request
/// says `Connection: close`, and the gateway closes the connection after it.
#[tokio::test]
async fn a_connection_closes_after_keepalive_requests() {
    for (args, limit) in [(&["--keepalive-requests", "3"][..], 3), (&[][..], 1000)] {
        let (addr, _guard) = start(args);
        assert_eq!(
            support::closes_after(addr, limit + 1).await,
            Some(limit),
            "{args:?}"
        );
    }
}
