//! The seed's `server` block (`shared/seed/nginx.conf`) as a hyper server: its `location`
//! list, `root /www/ROOT`, `proxy_pass http://tserver` and `error_page` lines.
//!
//! ```text
//! cargo run --example seed_locations                  # the seed as written
//! cargo run --example seed_locations -- --fixed       # with the regexes it meant
//! cargo run --example seed_locations -- --peer 127.0.0.1:18081 --peer 127.0.0.1:18082 --root /www/ROOT
//! ```
//!
//! Options: `--listen ADDR` (default 127.0.0.1:8080), `--peer HOST:PORT` (repeat; default:
//! two demo backends in-process), `--root DIR` (default: a temp dir with `index.html`,
//! `404.html` and `50x.html`), `--fixed`.
//!
//! | seed                                   | here                                             |
//! |----------------------------------------|--------------------------------------------------|
//! | `location ~ .*.(php|php5)?$` + FastCGI | `502 no FastCGI server here` (see below)         |
//! | `location ~ .(jsp|jspx|do|htm)?$`      | the `tserver` `Upstream`, `X-Real-IP` set        |
//! | `location ~ (/dwr/)?`                  | the `tserver` `Upstream`, `X-Real-IP` set        |
//! | `location /` + `root /www/ROOT`        | tower-http's `ServeDir` on `--root`              |
//! | `location = /404.html`, `= /50x.html`  | `ServeDir` on `--root`                           |
//! | `error_page 404 /404.html;` ...        | `ErrorPage` around the `Locations`               |
//!
//! There is no FastCGI client in this crate, so the PHP location answers what nginx answers
//! when nothing listens on `127.0.0.1:9000`: `502 Bad Gateway`, which `error_page` turns
//! into `/50x.html`.
//!
//! **The seed's regexes are sloppy**, and nginx takes them literally:
//! `.*.(php|php5)?$` matches every path (the group is optional and `.` is any character),
//! so in the seed as written *every* request but `/404.html` and `/50x.html` goes to the
//! PHP location, and the `jsp`, `dwr` and `/` locations are never reached (checked against
//! a real nginx in `tests/nginx_parity.rs`). `--fixed` uses what was meant:
//! `~ \.(php|php5)$`, `~ \.(jsp|jspx|do|htm)$` and `^~ /dwr/`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_http::services::ServeDir;
use tower_upstream::location::{ErrorPage, ErrorPages, Location, Locations, ProxyPass};
use tower_upstream::{BoxError, ConfigError, HttpClient, Peer, Upstream};

/// Request body inside the gateway: error pages need one with `Default`, which hyper's
/// `Incoming` is not.
pub type ReqBody = UnsyncBoxBody<Bytes, hyper::Error>;
/// Response body of every location.
pub type ResBody = UnsyncBoxBody<Bytes, BoxError>;
/// What every location is: one type, so `Locations` can hold them all.
pub type Svc = BoxCloneSyncService<Request<ReqBody>, Response<ResBody>, Infallible>;
/// The whole server block.
pub type App = ErrorPage<Locations<Svc>>;

/// Which regex locations to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regexes {
    /// The seed's, as written.
    Seed,
    /// What the seed meant.
    Fixed,
}

/// hyper's request body, boxed.
pub fn boxed_request(req: Request<Incoming>) -> Request<ReqBody> {
    req.map(|body| body.boxed_unsync())
}

fn boxed<S, B>(svc: S) -> Svc
where
    S: tower::Service<Request<ReqBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(svc.map_response(box_body))
}

fn box_body<B>(res: Response<B>) -> Response<ResBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    res.map(|body| body.map_err(|e| -> BoxError { e.into() }).boxed_unsync())
}

/// The PHP location: no FastCGI server, so `502` as nginx would answer.
fn no_fastcgi() -> Svc {
    boxed(service_fn(|_: Request<ReqBody>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"no FastCGI server here\n")));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        Ok::<_, Infallible>(res)
    }))
}

/// `root dir;` for location `prefix`: nginx serves `dir` + `$uri`, the normalised path,
/// so `ServeDir` gets the request with the normalised path (`ProxyPass` with the
/// location's own prefix), and `/a/../index.html` is served as `/index.html`.
fn root(dir: &Path, prefix: &str) -> Result<Svc, ConfigError> {
    Ok(boxed(ProxyPass::new(ServeDir::new(dir), prefix)?))
}

/// `upstream tserver { server ...; server ...; }` with `proxy_set_header X-Real-IP
/// $remote_addr` (and `Host $host`, which is the client's `Host`, left as it is). The
/// client address comes from the `SocketAddr` request extension the server loop sets.
pub fn tserver(peers: &[String]) -> Result<Svc, Box<dyn std::error::Error>> {
    let client = HttpClient::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(60))
        .build();
    let mut builder = Upstream::builder().name("tserver");
    for addr in peers {
        builder = builder.peer(Peer::new(addr.as_str(), client.peer(addr)?));
    }
    let upstream = builder.build()?;
    let with_real_ip = ServiceBuilder::new()
        .map_request(|mut req: Request<ReqBody>| {
            if let Some(client) = req.extensions().get::<SocketAddr>().copied() {
                let ip = HeaderValue::from_str(&client.ip().to_string())
                    .expect("an IP is a valid header");
                req.headers_mut().insert("x-real-ip", ip);
            }
            req
        })
        .service(upstream);
    Ok(boxed(with_real_ip))
}

/// The server block: locations in the seed's order, then its `error_page` lines.
pub fn app(root_dir: &Path, tserver: Svc, regexes: Regexes) -> Result<App, ConfigError> {
    let (php, java, dwr) = match regexes {
        Regexes::Seed => (
            Location::regex(".*.(php|php5)?$", no_fastcgi()),
            Location::regex(".(jsp|jspx|do|htm)?$", tserver.clone()),
            Location::regex("(/dwr/)?", tserver),
        ),
        Regexes::Fixed => (
            Location::regex(r"\.(php|php5)$", no_fastcgi()),
            Location::regex(r"\.(jsp|jspx|do|htm)$", tserver.clone()),
            Location::prefix_no_regex("/dwr/", tserver),
        ),
    };
    let locations = Locations::builder()
        .location(php)
        .location(java)
        .location(dwr)
        .prefix("/", root(root_dir, "/")?)
        .exact("/404.html", root(root_dir, "/404.html")?)
        .exact("/50x.html", root(root_dir, "/50x.html")?)
        .build()?;
    let pages = ErrorPages::builder()
        .page([404], "/404.html")
        .page([500, 502, 503, 504], "/50x.html")
        .build()?;
    Ok(ErrorPage::new(locations, pages))
}

/// Writes a small `/www/ROOT` into `dir`.
pub fn write_demo_root(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("index.html"), "<h1>ROOT index</h1>\n")?;
    std::fs::write(dir.join("404.html"), "<h1>404 page</h1>\n")?;
    std::fs::write(dir.join("50x.html"), "<h1>50x page</h1>\n")?;
    Ok(())
}

/// Serves `app` on `listener`, giving each request the client's `SocketAddr`.
pub async fn serve(listener: TcpListener, app: App) -> std::io::Result<()> {
    loop {
        let (stream, client) = listener.accept().await?;
        let svc = ServiceBuilder::new()
            .map_request(move |req: Request<Incoming>| {
                let mut req = boxed_request(req);
                req.extensions_mut().insert(client);
                req
            })
            .service(app.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .await;
        });
    }
}

/// A demo backend, standing in for one of the seed's Tomcats.
async fn demo_backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                let real_ip = req.headers().get("x-real-ip").cloned();
                let text = format!(
                    "{name} served {} {} (X-Real-IP: {})\n",
                    req.method(),
                    req.uri(),
                    real_ip
                        .as_ref()
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-"),
                );
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

const USAGE: &str =
    "usage: seed_locations [--listen ADDR] [--peer HOST:PORT]... [--root DIR] [--fixed]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut peers = Vec::new();
    let mut root_dir: Option<PathBuf> = None;
    let mut regexes = Regexes::Seed;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => listen = value()?.parse()?,
            "--peer" => peers.push(value()?),
            "--root" => root_dir = Some(value()?.into()),
            "--fixed" => regexes = Regexes::Fixed,
            _ => return Err(USAGE.into()),
        }
    }
    if peers.is_empty() {
        for name in ["tomcat1", "tomcat2"] {
            let addr = demo_backend(name).await?;
            println!("demo backend {name} on {addr}");
            peers.push(addr.to_string());
        }
    }
    let root_dir = match root_dir {
        Some(dir) => dir,
        None => {
            let dir = std::env::temp_dir().join(format!("seed-www-root-{}", std::process::id()));
            write_demo_root(&dir)?;
            println!("demo root {}", dir.display());
            dir
        }
    };
    let app = app(&root_dir, tserver(&peers)?, regexes)?;
    let listener = TcpListener::bind(listen).await?;
    println!(
        "seed_locations ({regexes:?} regexes) listening on http://{}",
        listener.local_addr()?
    );
    serve(listener, app).await?;
    Ok(())
}
