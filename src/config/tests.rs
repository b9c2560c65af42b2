//! The built gateway, without sockets: static files, `index`, error pages, `return`,
//! body limits, and the errors of `build`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

use super::*;
use crate::ConfigError;

/// A directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(files: &[(&str, &str)]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-upstream-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        for (path, content) in files {
            let path = dir.join(path);
            if let Some(content) = content.strip_prefix("dir:") {
                assert!(content.is_empty());
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
        }
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gateway(nginx_server_block: &str) -> Gateway {
    let text = format!("http {{\nserver {{\n{nginx_server_block}\n}}\n}}");
    nginx::import(&text).unwrap().config.build().unwrap()
}

async fn send(
    gateway: &Gateway,
    method: Method,
    path: &str,
    body: &'static str,
) -> (StatusCode, HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-length", body.len())
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let res = gateway.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn get(gateway: &Gateway, path: &str) -> (u16, String) {
    let (status, _, body) = send(gateway, Method::GET, path, "").await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn root_serves_the_normalised_path() {
    let dir = TempDir::new(&[("a/b.txt", "b"), ("404.html", "not here")]);
    let gw = gateway(&format!(
        "root {};\nerror_page 404 /404.html;\nlocation / {{ }}\nlocation ~ \\.txt$ {{ }}",
        dir.path().display()
    ));
    assert_eq!(get(&gw, "/a/b.txt").await, (200, "b".into()));
    assert_eq!(get(&gw, "/x/../a/%62.txt").await, (200, "b".into()));
    assert_eq!(get(&gw, "//a///b.txt?q=1").await, (200, "b".into()));
    assert_eq!(get(&gw, "/a/c.txt").await, (404, "not here".into()));
    assert_eq!(get(&gw, "/../a/b.txt").await.0, 400);
    // A directory without its slash is redirected, permanently as nginx does.
    let (status, headers, _) = send(&gw, Method::GET, "/a", "").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "/a/");
    let (_, headers, _) = send(&gw, Method::GET, "/x/../%61?q=1", "").await;
    assert_eq!(headers["location"], "/a/?q=1");
}

#[tokio::test]
async fn index_redirects_internally_to_the_first_file_that_exists() {
    let dir = TempDir::new(&[
        ("index.html", "root index"),
        ("java/index.jsp", "jsp file"),
        ("both/index.html", "both: html"),
        ("both/index.jsp", "both: jsp"),
        ("empty/", "dir:"),
        ("fallback.html", "fallback"),
        ("fb/", "dir:"),
    ]);
    let root = dir.path().display();
    let gw = gateway(&format!(
        "location / {{ root {root}; index index.html index.jsp; }}
         location ~ \\.jsp$ {{ return 200 'the jsp location'; }}
         location /fb/ {{ root {root}; index missing.html /fallback.html; }}
         location /loop/ {{ root {root}; index /loop/; }}"
    ));
    assert_eq!(get(&gw, "/").await, (200, "root index".into()));
    // The redirect goes through the locations again: index.jsp is the jsp location's.
    assert_eq!(get(&gw, "/java/").await, (200, "the jsp location".into()));
    assert_eq!(get(&gw, "/both/").await, (200, "both: html".into()));
    assert_eq!(get(&gw, "/both/?x=1").await, (200, "both: html".into()));
    assert_eq!(get(&gw, "/empty/").await.0, 403);
    assert_eq!(get(&gw, "/missing/").await.0, 404);
    assert_eq!(get(&gw, "/fb/").await, (200, "fallback".into()));
    // nginx tests the directory when an index file is missing: none, 404.
    assert_eq!(get(&gw, "/fb/nodir/").await.0, 404);
    assert_eq!(get(&gw, "/loop/").await.0, 500);
    // Only GET, HEAD and POST look for an index.
    let (status, _, _) = send(&gw, Method::DELETE, "/", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn nginx_default_index_is_index_html() {
    let dir = TempDir::new(&[("index.html", "default index")]);
    let gw = gateway(&format!("location / {{ root {}; }}", dir.path().display()));
    assert_eq!(get(&gw, "/").await, (200, "default index".into()));
}

#[tokio::test]
async fn error_pages_of_the_matched_location_or_the_server() {
    let gw = gateway(
        "error_page 404 /404.html;
         location / { return 404; }
         location = /404.html { return 200 'server page'; }
         location /app/ {
             error_page 404 /app404.html;
             return 404;
             location /app/inner/ { return 404; }
         }
         location /plain/ { error_page 500 /500.html; return 404; }
         location = /app404.html { return 200 'app page'; }",
    );
    assert_eq!(get(&gw, "/x").await, (404, "server page".into()));
    assert_eq!(get(&gw, "/app/x").await, (404, "app page".into()));
    // Nested locations inherit the pages of the one around them.
    assert_eq!(get(&gw, "/app/inner/x").await, (404, "app page".into()));
    // A location's own lines replace the server's entirely.
    assert_eq!(get(&gw, "/plain/x").await, (404, String::new()));
}

#[tokio::test]
async fn return_answers_at_once() {
    let gw = gateway(
        "location / { return 200 'hello'; proxy_pass http://127.0.0.1:1; }
         location /old { return 301 /new; }
         location /gone { return http://example.com/; }
         location /teapot { return 418; }",
    );
    let (status, headers, body) = send(&gw, Method::GET, "/", "").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "hello"));
    assert_eq!(headers["content-type"], "text/plain");
    let (status, headers, _) = send(&gw, Method::GET, "/old", "").await;
    assert_eq!(
        (status.as_u16(), headers["location"].to_str().unwrap()),
        (301, "/new")
    );
    let (status, headers, _) = send(&gw, Method::GET, "/gone", "").await;
    assert_eq!(
        (status.as_u16(), headers["location"].to_str().unwrap()),
        (302, "http://example.com/")
    );
    assert_eq!(get(&gw, "/teapot").await, (418, String::new()));
}

#[tokio::test]
async fn unsupported_handlers_answer_502() {
    let gw = gateway("location ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; }");
    let (status, body) = get(&gw, "/index.php").await;
    assert_eq!(status, 502);
    assert_eq!(
        body,
        "502 Bad Gateway: `fastcgi_pass 127.0.0.1:9000` is not supported here (location ~ \\.php$)\n"
    );
}

#[tokio::test]
async fn client_max_body_size() {
    let gw = gateway(
        "client_max_body_size 4;
         location / { return 204; }
         location /big/ { client_max_body_size 0; return 204; }
         location /small/ { client_max_body_size 2; return 204; }",
    );
    let status = |path: &'static str, body: &'static str| {
        let gw = gw.clone();
        async move { send(&gw, Method::POST, path, body).await.0.as_u16() }
    };
    assert_eq!(status("/", "1234").await, 204);
    assert_eq!(status("/", "12345").await, 413);
    assert_eq!(status("/big/", "123456789").await, 204);
    assert_eq!(status("/small/", "123").await, 413);
    // The request for an error page has no body, whatever the client's `Content-Length`.
    let gw = gateway(
        "error_page 502 /50x.html;
         location /up/ { client_max_body_size 0; return 502; }
         location = /50x.html { client_max_body_size 1; return 200 'page'; }",
    );
    let (status, _, body) = send(&gw, Method::POST, "/up/", "0123456789").await;
    assert_eq!((status.as_u16(), body.as_str()), (502, "page"));
    // nginx's default is 1 MiB.
    let gw = gateway("location / { return 204; }");
    let big: &'static str = Box::leak("x".repeat((1 << 20) + 1).into_boxed_str());
    assert_eq!(send(&gw, Method::POST, "/", big).await.0, 413);
}

#[test]
fn build_errors_name_the_item() {
    let err = |config: &GatewayConfig| config.build().unwrap_err();
    let with_location = |location: LocationConfig| {
        let mut config = GatewayConfig::new();
        config.upstreams = vec![UpstreamConfig::new(
            "app",
            [PeerConfig::new("127.0.0.1:9001")],
        )];
        config.locations = vec![location];
        config
    };
    let mut pass = LocationConfig::new(None, "/");
    pass.proxy_pass = Some("http://ap".parse().unwrap());
    assert_eq!(
        err(&with_location(pass)),
        ConfigError::UnknownUpstream {
            location: "location /".into(),
            upstream: "ap".into()
        }
    );
    let mut regex_uri = LocationConfig::new(Some(Modifier::Regex), r"\.jsp$");
    regex_uri.proxy_pass = Some("http://app/x/".parse().unwrap());
    assert!(matches!(
        err(&with_location(regex_uri)),
        ConfigError::InvalidLocation { location, .. } if location == r"location ~ \.jsp$"
    ));
    for status in [444, 99, 1000] {
        let mut ret = LocationConfig::new(None, "/");
        ret.return_ = Some(ReturnConfig::new(status, None));
        assert!(
            matches!(err(&with_location(ret)), ConfigError::InvalidReturn { .. }),
            "{status}"
        );
    }

    let mut dup = with_location(LocationConfig::new(None, "/"));
    dup.locations[0].root = Some("/srv".into());
    dup.upstreams.push(dup.upstreams[0].clone());
    assert_eq!(
        err(&dup),
        ConfigError::DuplicateUpstream {
            upstream: "app".into()
        }
    );
    let mut bad = with_location(LocationConfig::new(None, "/"));
    bad.locations[0].root = Some("/srv".into());
    bad.upstreams[0].peers[0].addr = "a b".into();
    assert_eq!(
        err(&bad),
        ConfigError::InvalidPeerAddress {
            upstream: "app".into(),
            peer: "a b".into()
        }
    );
    bad.upstreams[0].peers[0] = PeerConfig::new("127.0.0.1:1").weight(0);
    assert!(matches!(err(&bad), ConfigError::InvalidWeight { .. }));
    for key in ["$remote_addr", "request_uri", "$http_", "$http_bad name"] {
        bad.upstreams[0] = UpstreamConfig::new("app", [PeerConfig::new("127.0.0.1:1")])
            .policy(PolicyConfig::ConsistentHash(key.into()));
        assert_eq!(
            err(&bad),
            ConfigError::UnsupportedHashKey {
                upstream: "app".into(),
                key: key.into()
            }
        );
    }
    for key in ["$request_uri", "$http_x_user", "$cookie_sid", "$arg_k"] {
        bad.upstreams[0] = UpstreamConfig::new("app", [PeerConfig::new("127.0.0.1:1")])
            .policy(PolicyConfig::ConsistentHash(key.into()));
        bad.build().unwrap();
    }
}

#[test]
fn proxy_pass_urls() {
    let parse = |s: &str| s.parse::<ProxyPassConfig>();
    assert_eq!(
        parse("http://tserver").unwrap(),
        ProxyPassConfig::new("tserver", None)
    );
    assert_eq!(
        parse("HTTP://127.0.0.1:8080/a/").unwrap(),
        ProxyPassConfig::new("127.0.0.1:8080", Some("/a/".into()))
    );
    for (bad, reason) in [
        ("https://tserver", "https peers are not supported"),
        ("tserver", "it must start with http://"),
        ("http://$host", "variables are not supported"),
        ("http:///x", "no upstream name"),
        ("http://user@host", "no upstream name"),
    ] {
        assert_eq!(
            parse(bad).unwrap_err(),
            ConfigError::InvalidProxyPass {
                value: bad.into(),
                reason: reason.into()
            }
        );
    }
}
