//! Drives `examples/seed_locations.rs` (the seed's server block) over real sockets, with two
//! backends and a `/www/ROOT` in a temp dir: once with the seed's regexes as written, which
//! send everything but the two exact pages to the PHP location (as nginx does), and once
//! with the regexes the seed meant.

#[path = "support/nginx.rs"]
mod raw;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/seed_locations.rs"]
mod seed;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use seed::Regexes;
use tokio::net::TcpListener;

struct Site {
    addr: SocketAddr,
    root: PathBuf,
    _backends: [support::Backend; 2],
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn start(regexes: Regexes) -> Site {
    let backends = [
        support::spawn_backend("tomcat1").await,
        support::spawn_backend("tomcat2").await,
    ];
    static SITES: AtomicUsize = AtomicUsize::new(0);
    let root = std::env::temp_dir().join(format!(
        "seed-locations-test-{}-{}",
        std::process::id(),
        SITES.fetch_add(1, Ordering::Relaxed)
    ));
    seed::write_demo_root(&root).unwrap();
    let peers: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let app = seed::app(&root, seed::tserver(&peers).unwrap(), regexes).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(seed::serve(listener, app));
    Site {
        addr,
        root,
        _backends: backends,
    }
}

const PAGE_404: &str = "<h1>404 page</h1>\n";
const PAGE_50X: &str = "<h1>50x page</h1>\n";
const INDEX: &str = "<h1>ROOT index</h1>\n";

#[tokio::test]
async fn the_seed_as_written_sends_everything_to_php() {
    let site = start(Regexes::Seed).await;
    // `.*.(php|php5)?$` matches every path; no FastCGI: 502, shown as /50x.html.
    for path in ["/", "/index.jsp", "/dwr/engine.js", "/index.html", "/x.php"] {
        let (status, backend, body) = support::get(site.addr, path).await;
        assert_eq!(
            (status, backend.as_str(), body.as_str()),
            (502, "", PAGE_50X),
            "{path}"
        );
    }
    // Exact locations still win.
    assert_eq!(
        support::get(site.addr, "/404.html").await,
        (200, String::new(), PAGE_404.into())
    );
    assert_eq!(
        support::get(site.addr, "/50x.html").await,
        (200, String::new(), PAGE_50X.into())
    );
    assert_eq!(support::get(site.addr, "/x/../50x.html").await.2, PAGE_50X);
    assert_eq!(support::get(site.addr, "/../x").await.0, 400);
}

#[tokio::test]
async fn the_fixed_seed_routes_as_meant() {
    let site = start(Regexes::Fixed).await;
    let get = |path: &'static str| support::get(site.addr, path);

    // jsp/do/htm and /dwr/ go to tserver, round-robin, with X-Real-IP.
    let mut seen = Vec::new();
    for path in ["/index.jsp", "/app/list.do", "/dwr/engine.js", "/page.htm"] {
        let (status, backend, body) = get(path).await;
        assert_eq!((status, body.as_str()), (200, backend.as_str()), "{path}");
        seen.push(backend);
    }
    assert_eq!(seen, ["tomcat1", "tomcat2", "tomcat1", "tomcat2"]);

    // PHP: no FastCGI, 502 with the 50x page.
    assert_eq!(
        get("/index.php").await,
        (502, String::new(), PAGE_50X.into())
    );
    // `location /` serves the root, normalised as nginx does.
    assert_eq!(get("/").await, (200, String::new(), INDEX.into()));
    assert_eq!(get("/index.html").await.2, INDEX);
    assert_eq!(get("/a/../index.html").await.2, INDEX);
    assert_eq!(get("//%69ndex.html").await.2, INDEX);
    // Missing files: 404 with the 404 page; above the root: 400.
    assert_eq!(
        get("/missing.txt").await,
        (404, String::new(), PAGE_404.into())
    );
    assert_eq!(get("/%2e%2e/etc/passwd").await.0, 400);
    // Exact pages.
    assert_eq!(
        get("/50x.html").await,
        (200, String::new(), PAGE_50X.into())
    );
}

#[tokio::test]
async fn the_upstream_gets_the_client_address_as_x_real_ip() {
    let site = start(Regexes::Fixed).await;
    let from = "127.0.0.9".parse().unwrap();
    let res = raw::get(Some(from), site.addr, "/index.jsp").await;
    assert_eq!(res.status, 200);
    // The demo backend echoes the X-Real-IP it got.
    assert!(
        res.head.contains("x-seen-real-ip: 127.0.0.9"),
        "{}",
        res.head
    );
}
