//! Runs `examples/gateway/` as a user would (its embedded default: two demo backends) and
//! checks what the README promises: two requests show both backends, with the seed's
//! `Host $host` and `X-Real-IP $remote_addr` headers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

mod support;

use support::example::{gateway_binary, Kill};

#[tokio::test]
async fn gateway_example_serves_both_demo_backends() {
    let mut child = Command::new(gateway_binary(&[]))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the gateway example");
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("gateway printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("gateway listening on http://") {
            break rest.parse().unwrap();
        }
    };
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
