//! Differential test: `Locations` picks the location a real nginx picks.
//!
//! One nginx (Debian's 1.22) runs on loopback with one `server` per configuration of
//! `support/location_cases.rs`, each location answering `return 200 "<name>";`, plus a
//! server with `error_page` lines. The same configurations run as `Locations` behind hyper
//! servers on loopback. Every request target is written verbatim into a request line over a
//! plain TCP connection (so `//secret`, `/%73ecret` and `/a/../b` reach both servers as
//! they are), and the two answers must be the same: the same location, or the same status
//! (including nginx's `400`s). The table's own expectations are checked against nginx too.
//!
//! A few targets are answered differently on purpose, by hyper rather than by `Locations`
//! (hyper rejects request targets nginx accepts); they are listed in `KNOWN_DIFFERENCES`
//! and checked to still behave as listed.
//!
//! Without nginx the test is skipped, or fails under CI: see `tests/support/nginx.rs`.

#[path = "support/location_cases.rs"]
mod cases;
#[path = "support/nginx.rs"]
mod nginx;
mod support;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder};
use tower_upstream::location::{ErrorPage, ErrorPageStatus, ErrorPages, Locations};

use cases::{Config, Want, CASES, CONFIGS};

/// Targets not in the table, compared between nginx and `Locations` only.
const EXTRA: &[(&Config, &str)] = &[
    (&cases::DOCS, "/\u{e9}"),
    (&cases::DOCS, "/%C3%A9"),
    (&cases::DOCS, "/%c3%a9cret"),
    (&cases::DOCS, "/secret#frag"),
    (&cases::DOCS, "/%23/../secret"),
    (&cases::DOCS, "/%25"),
    (&cases::DOCS, "/%3F/secret"),
    (&cases::DOCS, "/%2Fsecret"),
    (&cases::DOCS, "/%2F%2Fsecret"),
    (&cases::DOCS, "/\"{}|^[]"),
    (&cases::DOCS, "/documents/1.JpEg"),
    (&cases::DOCS, "/documents/%2E%2E/images/a.gif"),
    (&cases::DOCS, "/images/%2e%2e%2fdocuments%2f1.gif"),
    (&cases::DOCS, "/a/b/c/./../../secret/"),
    (&cases::DOCS, "/a/..."),
    (&cases::DOCS, "/a/.../secret"),
    (&cases::DOCS, "/%FF.jpg"),
    (&cases::DOCS, "/x.JPG%0A"),
    (&cases::DOCS, "/%"),
    (&cases::DOCS, "/%e"),
    (&cases::DOCS, "/%%"),
    (&cases::DOCS, "/a/%2E"),
    (&cases::DOCS, "/a/%2E%2E"),
    (&cases::DOCS, "/.."),
    (&cases::REGEX, "/x/%2e%2e/a.php"),
    (&cases::REGEX, "/a.pHp"),
    (&cases::REGEX, "/a.php?x=.html"),
    (&cases::REGEX, "/a.php%3F.html"),
    (&cases::NESTED, "/a/b/../c/x.js"),
    (&cases::NESTED, "/a/b/%2e%2e/b/x.css"),
    (&cases::NESTED, "/r/x.TXT"),
    (&cases::SEED, "/a.php5"),
    (&cases::SEED, "/dwr/"),
    (&cases::SEED, "/404.HTML"),
    (&cases::SPARSE, "//"),
    (&cases::SPARSE, "/%2F"),
    (&cases::NO_MERGE, "///a/x"),
    (&cases::NO_MERGE, "/a/%2F/x"),
];

/// Targets hyper answers itself before `Locations` sees them: `(config, raw target, what
/// nginx answers, what the hyper server answers, why)`.
const KNOWN_DIFFERENCES: &[(&Config, &[u8], Want, Want, &str)] = &[
    (
        &cases::DOCS,
        b"/\xff.jpg",
        Want::Loc("gif-jpg"),
        Want::Status(400),
        "hyper (the `http` crate) rejects request targets that are not UTF-8",
    ),
    (
        &cases::DOCS,
        b"/a<b>",
        Want::Loc("root"),
        Want::Status(400),
        "the `http` crate rejects `<` and `>` in paths",
    ),
    (
        &cases::DOCS,
        b"/a`b",
        Want::Loc("root"),
        Want::Status(400),
        "the `http` crate rejects a backtick in paths",
    ),
];

/// `error_page` lines and the locations they go to, on both sides.
const ERROR_PAGE_SERVER: &str = r#"
        error_page 404 /404.html;
        error_page 500 502 503 504 /50x.html;
        error_page 418 = @teapot;
        location / { return 404; }
        location = /404.html { return 200 "404-page"; }
        location = /50x.html { return 200 "50x-page"; }
        location /down { return 502; }
        location /tea { return 418; }
        location @teapot { return 200 "teapot"; }
        location = /ok { return 200 "ok"; }
"#;

const ERROR_PAGE_TARGETS: &[&str] = &[
    "/x",
    "/404.html",
    "/down/y?q=1",
    "/down",
    "/tea",
    "/tea/../ok",
    "/ok",
    "/50x.html",
    "/../x",
    "/%2e%2e",
];

type Svc = BoxCloneSyncService<Request<Incoming>, Response<Full<Bytes>>, Infallible>;
type Boxed = UnsyncBoxBody<Bytes, hyper::Error>;
type PageSvc = BoxCloneSyncService<Request<Boxed>, Response<Full<Bytes>>, Infallible>;

fn answer<B>(
    status: u16,
    body: &'static str,
) -> BoxCloneSyncService<Request<B>, Response<Full<Bytes>>, Infallible>
where
    B: Send + 'static,
{
    BoxCloneSyncService::new(service_fn(move |_: Request<B>| async move {
        let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(res)
    }))
}

fn nginx_config(ports: &[u16]) -> String {
    let mut http = String::new();
    for (config, port) in CONFIGS.iter().zip(ports) {
        let merge = if config.merge_slashes { "on" } else { "off" };
        let _ = write!(
            http,
            "    # {}\n    server {{\n        listen 127.0.0.1:{port};\n        merge_slashes {merge};\n{}    }}\n",
            config.name,
            cases::nginx_locations(config),
        );
    }
    let _ = write!(
        http,
        "    server {{\n        listen 127.0.0.1:{};\n{ERROR_PAGE_SERVER}    }}\n",
        ports[CONFIGS.len()]
    );
    http
}

/// The `Locations` of the error-page server, wrapped in `ErrorPage` as the nginx lines say.
async fn serve_error_pages() -> SocketAddr {
    let locations: Locations<PageSvc> = Locations::builder()
        .prefix("/", answer(404, "not found"))
        .exact("/404.html", answer(200, "404-page"))
        .exact("/50x.html", answer(200, "50x-page"))
        .prefix("/down", answer(502, "bad gateway"))
        .prefix("/tea", answer(418, "teapot?"))
        .named("@teapot", answer(200, "teapot"))
        .exact("/ok", answer(200, "ok"))
        .build()
        .unwrap();
    let pages = ErrorPages::builder()
        .page([404], "/404.html")
        .page([500, 502, 503, 504], "/50x.html")
        .page_with([418], ErrorPageStatus::Page, "@teapot")
        .build()
        .unwrap();
    let app = ErrorPage::new(locations, pages);
    // Error pages need a request body with `Default`; hyper's `Incoming` has none.
    let svc = ServiceBuilder::new()
        .map_request(|req: Request<Incoming>| req.map(|body| body.boxed_unsync()))
        .service(app);
    support::serve(svc).await
}

/// What a server answered: `Loc(body)` for a 200, else its status.
fn as_want(res: &nginx::Response) -> Result<Want, String> {
    if res.status != 200 {
        return Ok(Want::Status(res.status));
    }
    let body = String::from_utf8_lossy(&res.body).into_owned();
    Ok(Want::Loc(Box::leak(body.into_boxed_str())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_choose_what_nginx_chooses() {
    let Some(bin) = nginx::require("nginx_parity") else {
        return;
    };
    let nginx = nginx::Nginx::start(&bin, CONFIGS.len() + 1, |ports, _| nginx_config(ports));
    let nginx_addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], nginx.ports()[i]));

    let mut ours = Vec::new();
    for config in CONFIGS {
        let locations = cases::build(config, |name| -> Svc { answer(200, name) });
        ours.push(support::serve(locations).await);
    }
    let config_index =
        |config: &Config| CONFIGS.iter().position(|c| c.name == config.name).unwrap();

    let mut mismatches = Vec::new();
    let mut compared = 0;
    let targets = CASES
        .iter()
        .map(|&(c, path, want)| (c, path, Some(want)))
        .chain(EXTRA.iter().map(|&(c, path)| (c, path, None)));
    for (config, path, want) in targets {
        let i = config_index(config);
        let theirs = as_want(&nginx::get(None, nginx_addr(i), path).await).unwrap();
        let mine = as_want(&nginx::get(None, ours[i], path).await).unwrap();
        compared += 1;
        if theirs != mine {
            mismatches.push(format!(
                "[{}] {path}: nginx {theirs:?}, Locations {mine:?}",
                config.name
            ));
        }
        if let Some(want) = want {
            if theirs != want {
                mismatches.push(format!(
                    "[{}] {path}: nginx {theirs:?}, the table says {want:?}",
                    config.name
                ));
            }
        }
    }

    for &(config, target, nginx_says, hyper_says, why) in KNOWN_DIFFERENCES {
        let i = config_index(config);
        let theirs = as_want(&nginx::get_raw(None, nginx_addr(i), target).await).unwrap();
        let mine = as_want(&nginx::get_raw(None, ours[i], target).await).unwrap();
        let shown = String::from_utf8_lossy(target);
        if (theirs, mine) != (nginx_says, hyper_says) {
            mismatches.push(format!(
                "[{}] {shown:?} (known difference: {why}): nginx {theirs:?} (listed {nginx_says:?}), ours {mine:?} (listed {hyper_says:?})",
                config.name
            ));
        }
    }

    let pages = serve_error_pages().await;
    for path in ERROR_PAGE_TARGETS {
        let theirs = nginx::get(None, nginx_addr(CONFIGS.len()), path).await;
        let mine = nginx::get(None, pages, path).await;
        compared += 1;
        let body = |r: &nginx::Response| {
            if r.status == 400 {
                String::new() // nginx's own HTML page
            } else {
                String::from_utf8_lossy(&r.body).into_owned()
            }
        };
        if (theirs.status, body(&theirs)) != (mine.status, body(&mine)) {
            mismatches.push(format!(
                "[error_page] {path}: nginx {} {:?}, ours {} {:?}",
                theirs.status,
                body(&theirs),
                mine.status,
                body(&mine)
            ));
        }
    }

    nginx::note(&format!(
        "nginx_parity: {compared} targets compared with nginx ({} table cases, {} extra, {} error-page), {} known differences checked, {} mismatches",
        CASES.len(),
        EXTRA.len(),
        ERROR_PAGE_TARGETS.len(),
        KNOWN_DIFFERENCES.len(),
        mismatches.len()
    ));
    assert!(
        mismatches.is_empty(),
        "{}\n\nnginx logs:\n{}",
        mismatches.join("\n"),
        nginx.logs()
    );
}
