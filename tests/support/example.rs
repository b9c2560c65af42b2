//! Running `examples/gateway/` from a test, as a user would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Kills the child process when dropped, so a failing test leaves no gateway behind.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the gateway example with `features` and returns its path. `cargo test` builds the
/// examples, but not when a single test target is selected, nor with extra features.
pub fn gateway_binary(features: &[&str]) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--quiet", "--example", "gateway"];
    if !features.is_empty() {
        args.push("--features");
        args.extend(features);
    }
    let status = Command::new(cargo)
        .args(&args)
        .status()
        .expect("run cargo build --example gateway");
    assert!(status.success(), "building the gateway example failed");
    // This test runs from `<target>/debug/deps/`.
    let mut path = std::env::current_exe().unwrap();
    path.pop(); // the test binary
    path.pop(); // deps/
    path.push("examples");
    path.push("gateway");
    path
}

/// Starts the gateway example as `cmd` says and waits for the address it prints first; the
/// guard stops it. Its further output is read and dropped: a closed pipe would fail its next
/// log line.
pub fn spawn(cmd: &mut Command) -> (SocketAddr, Kill) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the gateway example");
    let stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("gateway printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("gateway listening on http://") {
            break rest.parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (addr, guard)
}
