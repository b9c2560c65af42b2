//! The seed's `nginx.conf` (`shared/seed/nginx.conf`, or the copy in `tests/data`), imported
//! with `config::nginx`, built and served over real sockets, with its upstream addresses
//! pointed at two backends on 127.0.0.1 and its `root` at a temp dir:
//!
//! - as written, its regex `.*.(php|php5)?$` matches every path, so everything but the two
//!   exact pages goes to the PHP location, which answers 502 (no FastCGI), shown as
//!   `/50x.html`: what nginx does (`tests/nginx_parity.rs`, `examples/seed_locations.rs`);
//! - with the regexes the seed meant, `/index.jsp` and `/dwr/` go to both backends;
//! - both compared with a real nginx 1.22 serving the same blocks;
//! - the importer's report names every directive it did not apply, on its line;
//! - `examples/gateway/ --nginx-conf` runs the file.

#[path = "support/nginx.rs"]
mod raw;
mod support;

use support::example::gateway_binary;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use tower_upstream::config::nginx::{self, Import, Outcome};

/// The seed: the shared one beside the repository when there is one, else the copy.
fn seed() -> String {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed/nginx.conf");
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-nginx.conf");
    std::fs::read_to_string(shared)
        .or_else(|_| std::fs::read_to_string(copy))
        .expect("the seed's nginx.conf")
}

/// The 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` is not in the seed"))
        + 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Regexes {
    /// As written.
    Seed,
    /// As meant: `\.(php|php5)$`, `\.(jsp|jspx|do|htm)$`, `^~ /dwr/`.
    Fixed,
}

/// A `/www/ROOT` in a temp dir, removed on drop.
struct Root(PathBuf);

const INDEX: &str = "<h1>ROOT index</h1>\n";
const PAGE_404: &str = "<h1>404 page</h1>\n";
const PAGE_50X: &str = "<h1>50x page</h1>\n";

impl Root {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-upstream-nginx-conf-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("app")).unwrap();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("index.html"), INDEX).unwrap();
        std::fs::write(dir.join("404.html"), PAGE_404).unwrap();
        std::fs::write(dir.join("50x.html"), PAGE_50X).unwrap();
        // Only on disk for the `index` check: the redirect goes to the jsp location.
        std::fs::write(dir.join("app/index.jsp"), "<% jsp source %>").unwrap();
        Self(dir)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The seed with its addresses and root replaced, line for line.
fn rewrite(seed: &str, backends: &[support::Backend; 2], root: &Root, regexes: Regexes) -> String {
    let mut text = seed
        .replace("127.0.0.1:18081", &backends[0].addr.to_string())
        .replace("127.0.0.1:18082", &backends[1].addr.to_string())
        .replace("/www/ROOT", &root.0.display().to_string());
    if regexes == Regexes::Fixed {
        for (written, meant) in [
            ("location ~ .*.(php|php5)?$", r"location ~ \.(php|php5)$"),
            (
                "location ~ .(jsp|jspx|do|htm)?$",
                r"location ~ \.(jsp|jspx|do|htm)$",
            ),
            ("location ~ (/dwr/)?", "location ^~ /dwr/"),
        ] {
            assert!(text.contains(written), "{written}");
            text = text.replace(written, meant);
        }
    }
    assert_eq!(text.lines().count(), seed.lines().count());
    text
}

struct Site {
    addr: SocketAddr,
    import: Import,
    backends: [support::Backend; 2],
    _root: Root,
}

async fn start(regexes: Regexes) -> Site {
    let backends = [
        support::spawn_backend("tomcat1").await,
        support::spawn_backend("tomcat2").await,
    ];
    let root = Root::new();
    let import = nginx::import(&rewrite(&seed(), &backends, &root, regexes)).unwrap();
    let gateway = import.config.build().unwrap();
    let addr = support::serve(gateway).await;
    Site {
        addr,
        import,
        backends,
        _root: root,
    }
}

/// `GET path`: status, `x-backend` and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let res = raw::get(None, addr, path).await;
    let backend = res
        .head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-backend")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (
        res.status,
        backend,
        String::from_utf8_lossy(&res.body).into_owned(),
    )
}

#[tokio::test]
async fn the_seed_as_written_loads_and_sends_everything_to_php_as_nginx_does() {
    let site = start(Regexes::Seed).await;
    for path in [
        "/",
        "/index.jsp",
        "/dwr/x",
        "/x.php",
        "/index.html",
        "/app/",
    ] {
        assert_eq!(
            get(site.addr, path).await,
            (502, String::new(), PAGE_50X.into()),
            "{path}"
        );
    }
    assert_eq!(
        get(site.addr, "/404.html").await,
        (200, String::new(), PAGE_404.into())
    );
    assert_eq!(
        get(site.addr, "/50x.html").await,
        (200, String::new(), PAGE_50X.into())
    );
    assert_eq!(site.backends[0].requests() + site.backends[1].requests(), 0);
}

#[tokio::test]
async fn the_seed_with_the_regexes_it_meant_proxies_jsp_and_dwr() {
    let site = start(Regexes::Fixed).await;
    let mut seen = Vec::new();
    for path in ["/index.jsp", "/dwr/x", "/index.jsp", "/dwr/engine.js"] {
        let (status, backend, body) = get(site.addr, path).await;
        assert_eq!((status, body.as_str()), (200, backend.as_str()), "{path}");
        seen.push(backend);
    }
    assert_eq!(seen, ["tomcat1", "tomcat2", "tomcat1", "tomcat2"]);
    assert_eq!(
        (site.backends[0].requests(), site.backends[1].requests()),
        (2, 2)
    );
    // No FastCGI: 502, shown as /50x.html.
    assert_eq!(
        get(site.addr, "/x.php").await,
        (502, String::new(), PAGE_50X.into())
    );
    // The exact pages and `location /` come from the root.
    assert_eq!(
        get(site.addr, "/404.html").await,
        (200, String::new(), PAGE_404.into())
    );
    assert_eq!(
        get(site.addr, "/50x.html").await,
        (200, String::new(), PAGE_50X.into())
    );
    assert_eq!(
        get(site.addr, "/").await,
        (200, String::new(), INDEX.into())
    );
    assert_eq!(
        get(site.addr, "/missing.txt").await,
        (404, String::new(), PAGE_404.into())
    );
    // `index index.html index.jsp ...`: /app/ has an index.jsp, so nginx redirects to
    // /app/index.jsp, which the jsp location proxies.
    let (status, backend, _) = get(site.addr, "/app/").await;
    assert_eq!((status, backend.as_str()), (200, "tomcat1"));
    // A directory with no index file.
    assert_eq!(get(site.addr, "/docs/").await.0, 403);
    // The upstream got the client's address.
    let res = raw::get(Some("127.0.0.9".parse().unwrap()), site.addr, "/a.do").await;
    assert!(
        res.head.contains("x-seen-real-ip: 127.0.0.9"),
        "{}",
        res.head
    );
}

#[tokio::test]
async fn the_report_names_every_directive_not_applied_on_its_line() {
    let site = start(Regexes::Seed).await;
    let text = seed();
    let report = &site.import.report;
    // Each entry is on a line that starts with its directive.
    for entry in report {
        let line = text.lines().nth(entry.line() - 1).unwrap().trim_start();
        assert!(
            line.starts_with(entry.directive()),
            "{entry} is not on line {}: {line:?}",
            entry.line()
        );
    }
    let found = |needle: &str, directive: &str| {
        let line = line_of(&text, needle);
        report
            .iter()
            .find(|e| e.line() == line && e.directive() == directive)
            .map(|e| e.outcome())
    };
    for (needle, directive) in [
        ("fastcgi_pass", "fastcgi_pass"),
        ("fastcgi_index", "fastcgi_index"),
        ("include fcgi.conf", "include"),
        ("include /etc/nginx/conf.d", "include"),
    ] {
        assert_eq!(
            found(needle, directive),
            Some(Outcome::Unsupported),
            "{needle}"
        );
    }
    for directive in [
        "user",
        "worker_processes",
        "error_log",
        "pid",
        "events",
        "worker_connections",
        "default_type",
        "log_format",
        "access_log",
        "server_names_hash_bucket_size",
        "client_header_buffer_size",
        "large_client_header_buffers",
        "sendfile",
        "tcp_nopush",
        "keepalive_timeout",
        "gzip_min_length",
        "gzip_buffers",
        "gzip_http_version",
        "gzip_comp_level",
        "gzip_types",
        "gzip_vary",
    ] {
        let needle = format!("{directive} ");
        assert_eq!(
            found(&needle, directive),
            Some(Outcome::Ignored),
            "{directive}"
        );
    }
    assert_eq!(
        found("include       /etc/nginx/mime.types", "include"),
        Some(Outcome::Ignored)
    );
    // Nothing else: 4 unsupported, 22 ignored.
    assert_eq!(report.len(), 26, "{report}");
    assert_eq!(report.with_outcome(Outcome::Rejected).count(), 0);
}

/// The same requests to a real nginx serving the seed's `upstream` and `server` blocks, and
/// to the gateway importing the whole file.
#[tokio::test]
async fn answers_as_nginx_does() {
    let Some(bin) = raw::require("answers_as_nginx_does") else {
        return;
    };
    let text = seed();
    let first = line_of(&text, "upstream  tserver");
    let last = line_of(&text, "include /etc/nginx/conf.d");
    for regexes in [Regexes::Seed, Regexes::Fixed] {
        let site = start(regexes).await;
        let root = Root::new();
        // No FastCGI server: a port bound without listening, so connecting is refused.
        let unused = tokio::net::TcpSocket::new_v4().unwrap();
        unused.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = unused.local_addr().unwrap().port();
        let rewritten = rewrite(&text, &site.backends, &root, regexes);
        let blocks: Vec<&str> = rewritten.lines().collect();
        let blocks = blocks[first - 1..last - 1].join("\n");
        let nginx = raw::Nginx::start(&bin, 1, |ports, _| {
            blocks
                .replace(
                    "listen       80;",
                    &format!("listen 127.0.0.1:{};", ports[0]),
                )
                .replace("127.0.0.1:9000", &format!("127.0.0.1:{closed}"))
                .replace("include fcgi.conf;", "")
        });
        let nginx_addr = SocketAddr::from(([127, 0, 0, 1], nginx.ports()[0]));
        for path in [
            "/",
            "/index.html",
            "/index.jsp",
            "/a/b.do",
            "/dwr/engine.js",
            "/x.php",
            "/404.html",
            "/50x.html",
            "/missing.txt",
            "/app/",
            "/docs/",
            "/docs",
            "/a/../index.html",
            "//404.html",
        ] {
            let want = get(nginx_addr, path).await;
            let got = get(site.addr, path).await;
            assert_eq!(got.0, want.0, "{regexes:?} {path}: status");
            assert_eq!(got.1, want.1, "{regexes:?} {path}: backend");
            // nginx's own pages for 301 and 403 are HTML; everything else is the same
            // file, page or backend answer.
            if ![301, 403].contains(&want.0) {
                assert_eq!(got.2, want.2, "{regexes:?} {path}: body");
            }
        }
    }
}

#[tokio::test]
async fn the_gateway_example_runs_the_seeds_nginx_conf() {
    let backends = [
        support::spawn_backend("tomcat1").await,
        support::spawn_backend("tomcat2").await,
    ];
    let root = Root::new();
    let conf = root.0.join("nginx.conf");
    std::fs::write(&conf, rewrite(&seed(), &backends, &root, Regexes::Fixed)).unwrap();
    let (addr, mut _guard) = support::example::spawn(
        Command::new(gateway_binary(&[]))
            .arg("--nginx-conf")
            .arg(&conf)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped()),
    );
    let mut stderr = _guard.0.stderr.take().unwrap();
    let (s1, b1, _) = get(addr, "/index.jsp").await;
    let (s2, b2, _) = get(addr, "/dwr/x").await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!((b1.as_str(), b2.as_str()), ("tomcat1", "tomcat2"));
    assert_eq!(
        get(addr, "/x.php").await,
        (502, String::new(), PAGE_50X.into())
    );
    drop(_guard);
    // The report went to stderr, one line per directive, with the file and line.
    let mut report = String::new();
    stderr.read_to_string(&mut report).unwrap();
    let text = seed();
    let at = |needle: &str| format!("{}:{}: ", conf.display(), line_of(&text, needle));
    assert!(
        report.contains(&format!(
            "{}fastcgi_pass: unsupported: no FastCGI client here: the location answers 502 Bad Gateway\n",
            at("fastcgi_pass")
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("{}gzip_vary: ignored: ", at("gzip_vary"))),
        "{report}"
    );
    assert_eq!(report.lines().count(), 26, "{report}");
}

/// The file's `keepalive_requests` closes client connections after as many requests as
/// nginx does with it, unless `--keepalive-requests` says otherwise.
#[tokio::test]
async fn the_gateway_example_applies_keepalive_requests() {
    let backend = support::spawn_backend("tomcat1").await;
    let http = |listen: &str| {
        format!(
            "keepalive_requests 2;\nserver {{\n  listen {listen};\n  location / {{ proxy_pass http://{}; }}\n}}\n",
            backend.addr
        )
    };
    if let Some(bin) = raw::require("the_gateway_example_applies_keepalive_requests") {
        let nginx = raw::Nginx::start(&bin, 1, |ports, _| http(&format!("127.0.0.1:{}", ports[0])));
        let addr = SocketAddr::from(([127, 0, 0, 1], nginx.ports()[0]));
        assert_eq!(support::closes_after(addr, 3).await, Some(2), "nginx");
    }
    let root = Root::new();
    let conf = root.0.join("keepalive.conf");
    std::fs::write(&conf, format!("http {{\n{}}}\n", http("127.0.0.1:0"))).unwrap();
    for (flag, limit) in [(None, 2), (Some("3"), 3)] {
        let mut cmd = Command::new(gateway_binary(&[]));
        cmd.arg("--nginx-conf")
            .arg(&conf)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(Stdio::null());
        if let Some(n) = flag {
            cmd.args(["--keepalive-requests", n]);
        }
        let (addr, _guard) = support::example::spawn(&mut cmd);
        let closes = support::closes_after(addr, limit + 1).await;
        assert_eq!(closes, Some(limit), "{flag:?}");
    }
}

#[test]
fn the_gateway_example_refuses_bad_files_and_toml_without_serde() {
    let root = Root::new();
    let conf = root.0.join("bad.conf");
    std::fs::write(
        &conf,
        "http {\n  server {\n    location / { rewrite ^ /x; }\n  }\n}\n",
    )
    .unwrap();
    let out = Command::new(gateway_binary(&[]))
        .arg("--nginx-conf")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "gateway: the nginx configuration was rejected:\nline 3: rewrite: rejected: unsupported directive\n\n"
    );
    // The example is built without the `serde` feature here.
    let out = Command::new(gateway_binary(&[]))
        .args(["--config", "examples/gateway.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--config needs the `serde` feature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_committed_copy_is_the_seed() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed/nginx.conf");
    let Ok(shared) = std::fs::read_to_string(shared) else {
        raw::note(
            "the_committed_copy_is_the_seed: no shared/seed/nginx.conf beside the repository",
        );
        return;
    };
    let copy = include_str!("data/seed-nginx.conf");
    assert_eq!(copy, shared, "tests/data/seed-nginx.conf is out of date");
}
