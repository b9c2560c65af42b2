//! A real nginx for differential tests: find the binary, write a config into a temp dir,
//! start it on loopback, wait for its ports, and kill it on drop.
//!
//! Include it with `#[path = "support/nginx.rs"] mod nginx;`. Each test binary uses only part
//! of it, hence the `dead_code` allowance.
//!
//! nginx runs with `master_process off`, so the process we spawn is the one that serves:
//! killing it (even with `SIGKILL`, all `std` offers) leaves no orphaned worker holding the
//! ports, and all per-process state (such as round-robin weights) lives in that one process.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// The nginx binary: `nginx` in `PATH`, else `/usr/sbin/nginx` (Debian's place, often not in
/// a non-root `PATH`).
pub(crate) fn find_binary() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"));
    in_path
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
}

/// The nginx binary, or `None` after printing a skip note when it is not installed.
///
/// Under CI (`CI` set) a missing nginx panics instead: there a skipped differential test
/// would pass silently, and `.ci/run` is expected to install nginx.
pub(crate) fn require(test: &str) -> Option<PathBuf> {
    if let Some(bin) = find_binary() {
        return Some(bin);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: nginx not found; .ci/run installs it (apt-get install -y nginx)");
    }
    note(&format!(
        "SKIPPED {test}: nginx not found in PATH or at /usr/sbin/nginx \
         (install it with `apt-get install -y nginx` to run this differential test)"
    ));
    None
}

/// Prints `line` to stderr even when the test harness captures output (it captures only
/// `print!`/`eprint!`), so a skipped check shows in a normal `cargo test` run.
pub(crate) fn note(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether `[::1]` can be bound here (IPv6 may be disabled in containers).
pub(crate) fn ipv6_loopback_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// `n` distinct ports that were free on 127.0.0.1 a moment ago.
///
/// All listeners are held until every port is known, so the ports differ; they are released
/// before nginx binds them, so another process may take one in between: [`Nginx::start`]
/// retries with new ports when nginx reports "Address already in use".
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A running nginx, killed (and its temp dir removed) on drop.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    ports: Vec<u16>,
}

const START_ATTEMPTS: usize = 3;
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl Nginx {
    /// Starts `bin` with an `http {}` block whose contents `http` builds from `nports` free
    /// ports, and waits until all of them accept connections on 127.0.0.1.
    ///
    /// `http` receives the ports and the temp dir (for any file the config needs). The
    /// surrounding config (one process, logs and temp paths in the temp dir, no `user`
    /// switch) is written here. Panics with nginx's error log if it does not come up.
    pub(crate) fn start(
        bin: &Path,
        nports: usize,
        http: impl Fn(&[u16], &Path) -> String,
    ) -> Nginx {
        for attempt in 1..=START_ATTEMPTS {
            let ports = free_ports(nports);
            let dir = temp_dir();
            let conf = main_config(&dir, &http(&ports, &dir));
            std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
            let child = Command::new(bin)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                // -e: the error log used before the config is read (Debian's default is
                // /var/log/nginx/error.log, which we must not touch).
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-g")
                .arg(format!(
                    "daemon off; pid {};",
                    dir.join("nginx.pid").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("stderr.log")).expect("stderr.log"))
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut nginx = Nginx { child, dir, ports };
            match nginx.wait_ready() {
                Ok(()) => return nginx,
                Err(log) if log.contains("Address already in use") && attempt < START_ATTEMPTS => {
                    eprintln!("nginx: a port was taken meanwhile, retrying with new ports");
                    // Dropping `nginx` kills it and removes its dir.
                }
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait nginx") {
                return Err(format!("nginx exited with {status}\n{}", self.logs()));
            }
            // nginx writes its pid file only once every `listen` socket is bound (it keeps
            // retrying a busy address for a while first), so a port that accepts before that
            // may belong to someone else.
            let pid = std::fs::read_to_string(self.dir.join("nginx.pid")).unwrap_or_default();
            let ready = pid.trim() == self.child.id().to_string()
                && self.ports.iter().all(|&port| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
                });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx ports {:?} not accepting after {START_TIMEOUT:?}\n{}",
                    self.ports,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The ports given to the config, in order.
    pub(crate) fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The temp dir holding the config and logs.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// nginx's stderr and error log, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "error.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let _ = writeln!(out, "--- {name}\n{text}");
        }
        out
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // Keep the config and logs of a failed test for a look.
            eprintln!("nginx config and logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh, unique temp dir (no `tempfile` dependency).
fn temp_dir() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tower-upstream-nginx-{}-{}-{nanos}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create nginx temp dir");
    dir
}

/// The config around the test's `http {}` contents: everything nginx writes goes to `dir`.
fn main_config(dir: &Path, http: &str) -> String {
    let d = dir.display();
    format!(
        "\
# Generated by tests/support/nginx.rs.
# One process serving: nginx keeps balancer state (round-robin weights) per worker.
master_process off;
worker_processes 1;
error_log {d}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {d}/access.log;
    default_type text/plain;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

{http}
}}
"
    )
}

/// A response read by [`get`].
#[derive(Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The status line and headers, as received.
    pub(crate) head: String,
    /// Everything after the headers (not de-chunked: `return` and proxied responses with a
    /// `Content-Length` arrive as is).
    pub(crate) body: Vec<u8>,
}

/// `GET path` over a new connection to `addr` from source address `src` (any 127/8 address
/// works on Linux loopback without configuration; `None`: the OS picks), with
/// `Connection: close`, reading to the end.
pub(crate) async fn get(src: Option<IpAddr>, addr: SocketAddr, path: &str) -> Response {
    get_raw(src, addr, path.as_bytes()).await
}

/// As [`get`], with a request target of any bytes, written verbatim into the request line
/// (nothing is normalised or escaped: `//a`, `/%2e%2e/` and even non-UTF-8 bytes reach the
/// server as given).
pub(crate) async fn get_raw(src: Option<IpAddr>, addr: SocketAddr, target: &[u8]) -> Response {
    let path = String::from_utf8_lossy(target);
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let exchange = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        if let Some(src) = src {
            socket.bind(SocketAddr::new(src, 0))?;
        }
        let mut stream = socket.connect(addr).await?;
        stream.write_all(&request).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        std::io::Result::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} from {src:?} to {addr}: timed out"))
        .unwrap_or_else(|e| panic!("GET {path} from {src:?} to {addr}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "GET {path}: no end of headers in {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: bad status line in {head:?}"));
    Response {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}
