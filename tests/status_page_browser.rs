//! The status page in a real browser: runs `examples/gateway/` (two demo backends), sends
//! it some traffic, then loads `/upstream-status` in Debian's headless Chromium. The rendered
//! DOM must list both demo peers with their state, and a screenshot is saved to
//! `target/status-page.png` (its path is printed).
//!
//! Without Chromium the test is skipped with a note, except under CI (`CI` set), where it
//! fails: `.ci/run` installs Chromium.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::example::{gateway_binary, Kill};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Prints to the real stderr, which the test harness does not capture.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `target/` (or `CARGO_TARGET_DIR`): this test runs from `<target>/debug/deps/`.
fn target_dir() -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop(); // the test binary
    path.pop(); // deps/
    path.pop(); // debug/
    path
}

/// Runs headless Chromium on `url` with `args`, killing it after a minute.
fn chromium(profile: &Path, args: &[&str], url: &str) -> Output {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Read both pipes on threads so that Chromium never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut buf);
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within a minute: {args:?} {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The peer rows of the rendered page: `(data-peer, data-health, text of the state pill)`.
fn peer_rows(dom: &str) -> Vec<(String, String, String)> {
    dom.split("<tr class=\"peer ")
        .skip(1)
        .map(|row| {
            let attr = |name: &str| {
                let start = row.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                row[start..start + row[start..].find('"').unwrap()].to_owned()
            };
            let pill = row.split("<span class=\"state ").nth(1).unwrap();
            let pill = &pill[pill.find('>').unwrap() + 1..pill.find("</span>").unwrap()];
            (attr("data-peer"), attr("data-health"), pill.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).is_file() {
        if std::env::var_os("CI").is_some() {
            panic!("{CHROMIUM} not found; .ci/run installs it (apt-get install -y chromium)");
        }
        note(&format!(
            "SKIPPED status_page_renders_in_headless_chromium: {CHROMIUM} not found \
             (install it with `apt-get install -y chromium` to run this browser test)"
        ));
        return;
    }

    let mut child = Command::new(gateway_binary(&[]))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the gateway example");
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut demo_peers = Vec::new();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("gateway printed its address").unwrap();
        if let Some((_, peer)) = line.split_once(" on ").filter(|_| line.starts_with("demo")) {
            demo_peers.push(peer.to_owned());
        }
        if let Some(rest) = line.strip_prefix("gateway listening on http://") {
            break rest.parse().unwrap();
        }
    };
    assert_eq!(demo_peers.len(), 2, "two demo backends: {demo_peers:?}");

    // Traffic at a changing pace for the rest of the test, and a look at the page every
    // second (each look samples the request counts): the sparklines have something to draw.
    let sent = Arc::new(AtomicUsize::new(0));
    let traffic = tokio::spawn({
        let sent = Arc::clone(&sent);
        async move {
            for i in 0u64.. {
                assert_eq!(support::get(addr, "/index.jsp").await.0, 200);
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(40 + 25 * (i / 8 % 6))).await;
            }
        }
    });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let (status, _, json) = support::get(addr, "/upstream-status?format=json").await;
        assert_eq!(status, 200, "{json}");
    }
    let before = sent.load(Ordering::SeqCst) as u64;
    let (_, _, json) = support::get(addr, "/upstream-status?format=json").await;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let peers = doc["upstreams"][0]["peers"].as_array().unwrap();
    let requests: Vec<u64> = peers
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .collect();
    let total: u64 = requests.iter().sum();
    assert!(
        total >= before && total <= before + 1,
        "{before} sent: {json}"
    );
    assert!(
        requests[0].abs_diff(requests[1]) <= 1,
        "round-robin: {json}"
    );
    assert!(
        peers.iter().all(|p| p["rate"].as_f64().unwrap() > 0.0),
        "{json}"
    );

    let profile = std::env::temp_dir().join(format!("status-page-chromium-{}", std::process::id()));
    let url = format!("http://{addr}/upstream-status");

    // The DOM as Chromium parsed it: a row per demo peer, with its state.
    let out = tokio::task::block_in_place(|| chromium(&profile, &["--dump-dom"], &url));
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("<title>gateway</title>"), "{dom}");
    assert!(dom.contains(r#"<section class="upstream" data-upstream="tserver">"#));
    let rows = peer_rows(&dom);
    let expected: Vec<_> = demo_peers
        .iter()
        .map(|p| (p.clone(), "up".to_owned(), "up".to_owned()))
        .collect();
    assert_eq!(rows, expected, "every demo peer is listed, up");
    assert_eq!(dom.matches("<polyline").count(), 2, "a sparkline per peer");

    // The screenshot, for people.
    let png = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let out = tokio::task::block_in_place(|| {
        chromium(&profile, &[&shot, "--window-size=1200,800"], &url)
    });
    let _ = std::fs::remove_dir_all(&profile);
    traffic.abort();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}); chromium said:\n{}",
            png.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 10_000,
        "a page, not a blank: {} bytes",
        bytes.len()
    );
    note(&format!("status page screenshot: {}", png.display()));
}
