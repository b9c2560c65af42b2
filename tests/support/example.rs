//! Running `examples/gateway/` from a test, as a user would.

use std::path::PathBuf;
use std::process::{Child, Command};

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
