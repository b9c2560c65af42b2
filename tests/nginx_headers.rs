//! Differential test: the request headers a peer receives through the crate's gateway are
//! the ones it receives through a real nginx (Debian's 1.22) on loopback, apart from the
//! documented differences below.
//!
//! One echo backend (hyper, 127.0.0.1:0) answers every request with the request line's
//! version and the headers it received. nginx proxies to it with the seed's two lines
//! (`location /seed/`: `proxy_set_header Host $host; proxy_set_header X-Real-IP
//! $remote_addr;`) and with a fuller set (`location /full/`: `$proxy_host`,
//! `$proxy_add_x_forwarded_for`, `$scheme`, `$request_uri`, `$http_*`, a removal). The
//! gateway is built from `ProxyHeadersLayer` with the same lines, over an `Upstream` named
//! `tserver` with one `HttpPeer`. The same raw requests, from the same client addresses
//! (127.0.0.1, 127.0.0.2 and `::1` when the machine has IPv6), go to both.
//!
//! Documented differences, applied to nginx's side before comparing (each is asserted to
//! happen, so the list cannot go stale):
//!
//! | nginx sends | the gateway | why |
//! |---|---|---|
//! | `HTTP/1.0` with `Connection: close` | `HTTP/1.1`, no `Connection` | nginx's default `proxy_http_version 1.0`; the crate keeps connections alive |
//! | headers named in the client's `Connection` | removed | RFC 9110 §7.6.1: they are hop-by-hop |
//! | `Proxy-Connection`, `Proxy-Authorization`, `Trailer` | removed | hop-by-hop (nginx 1.22 passes them on) |
//!
//! A second test does the same for responses: `proxy_redirect default`, `proxy_cookie_path`,
//! `proxy_cookie_domain` and `proxy_hide_header` in front of a Tomcat-like backend give the
//! client the same `Location`, `Refresh` and `Set-Cookie` headers.
//!
//! Without nginx the tests are skipped, or fails under CI: see `tests/support/nginx.rs`.
//! `NGINX_HEADERS_VERBOSE=1` prints what the backend received each way.

#[path = "support/nginx.rs"]
mod nginx;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceBuilder;
use tower_upstream::proxy_headers::{ProxyHeadersLayer, RewriteResponseLayer, UpgradeLayer};
use tower_upstream::{HttpClient, Peer, Upstream};

/// What the backend saw: the request line's version, then each header as `name: value`
/// (names lowercased by hyper), in the order received.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    version: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn parse(body: &[u8]) -> Seen {
        let text = String::from_utf8_lossy(body);
        let mut lines = text.split('\n');
        let version = lines.next().unwrap().to_owned();
        let mut headers = Vec::new();
        let mut body = String::new();
        for line in lines {
            if let Some(b) = line.strip_prefix("body=") {
                body = b.to_owned();
            } else if let Some((n, v)) = line.split_once(": ") {
                headers.push((n.to_owned(), v.to_owned()));
            }
        }
        Seen {
            version,
            headers,
            body,
        }
    }

    /// The headers sorted by name, keeping the order of a name's lines.
    fn sorted(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        h.sort_by(|a, b| a.0.cmp(&b.0));
        h
    }
}

/// The echo backend.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let mut text = format!("{:?}\n", req.version());
                for (n, v) in req.headers() {
                    text.push_str(&format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                }
                let body = req.into_body().collect().await.unwrap().to_bytes();
                text.push_str(&format!("body={}\n", String::from_utf8_lossy(&body)));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The crate's gateway in front of `backend` with `headers` and `responses`, listening on
/// `bind`.
async fn gateway(
    bind: &str,
    backend: SocketAddr,
    headers: ProxyHeadersLayer,
    responses: RewriteResponseLayer,
) -> SocketAddr {
    let client = HttpClient::builder().build();
    let upstream = Upstream::builder()
        .name("tserver")
        .peer(Peer::new(
            backend.to_string(),
            client.peer(&backend.to_string()).unwrap(),
        ))
        .build()
        .unwrap();
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(remote);
                    req
                })
                .layer(UpgradeLayer::new())
                .layer(responses.clone())
                .layer(headers.clone())
                .service(upstream.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(svc),
                    )
                    .await;
            });
        }
    });
    addr
}

/// Sends `raw` from `src` to `addr` and returns the final (non-1xx) response's status, head
/// and body (framed by `Content-Length`).
async fn exchange(src: IpAddr, addr: SocketAddr, raw: &str) -> (u16, String, Vec<u8>) {
    let run = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(src, 0))?;
        let mut stream = socket.connect(addr).await?;
        stream.write_all(raw.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                let n = stream.read(&mut chunk).await?;
                assert!(n > 0, "connection closed before a response: {buf:?}");
                buf.extend_from_slice(&chunk[..n]);
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            if (100..200).contains(&status) {
                buf.drain(..end + 4);
                continue;
            }
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                assert!(n > 0, "body cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            return std::io::Result::Ok((status, head, body));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| panic!("{raw:?} to {addr}: timed out"))
        .unwrap_or_else(|e| panic!("{raw:?} to {addr}: {e}"))
}

/// One request of the comparison.
struct Case {
    name: &'static str,
    /// `{path}` is replaced by the location's path.
    raw: &'static str,
    src: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "plain",
        raw: "GET {path}a?x=1 HTTP/1.1\r\nHost: test\r\nUser-Agent: diff/1\r\nAccept: */*\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "host with case, trailing dot and port",
        raw: "GET {path} HTTP/1.1\r\nHost: Test.EXAMPLE.com.:8080\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "hop-by-hop headers",
        raw: "GET {path}h HTTP/1.1\r\nHost: test\r\nConnection: keep-alive, X-Secret\r\n\
              Keep-Alive: timeout=5\r\nX-Secret: s3cret\r\nTE: trailers\r\n\
              Proxy-Connection: keep-alive\r\nUpgrade: websocket\r\nTrailer: X-Checksum\r\n\
              Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Kept: yes\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "Connection: close, X-Secret",
        raw: "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close, X-Secret\r\n\
              X-Secret: s3cret\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "spoofed X-Real-IP and an existing X-Forwarded-For",
        raw: "GET {path} HTTP/1.1\r\nHost: test\r\nX-Real-IP: 6.6.6.6\r\n\
              X-Forwarded-For: 203.0.113.9, 198.51.100.2\r\nForwarded: for=6.6.6.6\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "another client address",
        raw: "GET {path} HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n",
        src: "127.0.0.2",
    },
    Case {
        name: "HTTP/1.0 without Host",
        raw: "GET {path} HTTP/1.0\r\nUser-Agent: old/0.1\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "absolute URI",
        raw: "GET http://Absolute.Example{path}abs HTTP/1.1\r\nHost: other.example\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "repeated lines",
        raw: "GET {path} HTTP/1.1\r\nHost: test\r\nX-Dup: a\r\nX-Dup: b\r\nCookie: a=1\r\n\
              Cookie: b=2\r\nUser-Agent: first\r\n\r\n",
        src: "127.0.0.1",
    },
    Case {
        name: "POST with Content-Length",
        raw: "POST {path}form HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
              Content-Length: 11\r\n\r\nhello world",
        src: "127.0.0.1",
    },
    Case {
        name: "chunked POST with Expect: 100-continue",
        raw: "POST {path}up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
              Expect: 100-continue\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        src: "127.0.0.1",
    },
];

/// nginx's side with the documented differences applied; panics if one of them did not
/// show, so the table above stays true.
fn without_documented_differences(case: &str, raw: &str, nginx: &Seen) -> Seen {
    let mut out = nginx.clone();
    assert_eq!(
        nginx.version, "HTTP/1.0",
        "{case}: nginx's proxy_http_version"
    );
    out.version = "HTTP/1.1".into();
    let pos = |name: &str, out: &Seen| out.headers.iter().position(|(n, _)| n == name);
    let close = pos("connection", &out).unwrap_or_else(|| panic!("{case}: no Connection"));
    assert_eq!(out.headers.remove(close).1, "close", "{case}");
    // What the client's request carried that nginx forwards and the gateway must not.
    let client_headers: Vec<(String, String)> = raw
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let sent = |name: &str| client_headers.iter().any(|(n, _)| n == name);
    for name in ["proxy-connection", "proxy-authorization", "trailer"] {
        if sent(name) {
            let at = pos(name, &out)
                .unwrap_or_else(|| panic!("{case}: nginx was expected to forward {name}"));
            out.headers.remove(at);
        }
    }
    // Headers named in `Connection`: nginx forwards those it does not remove by itself
    // (`Keep-Alive`, `TE`, `Upgrade` it does).
    let named: Vec<String> = client_headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    for name in &named {
        while let Some(at) = pos(name, &out) {
            out.headers.remove(at);
        }
    }
    if named.iter().any(|n| n == "x-secret") {
        assert!(
            nginx.headers.iter().any(|(n, _)| n == "x-secret"),
            "{case}: nginx was expected to forward X-Secret"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_receive_the_same_headers_as_behind_nginx() {
    let Some(bin) = nginx::require("nginx_headers") else {
        return;
    };
    let backend = echo_backend().await;
    let ipv6 = nginx::ipv6_loopback_available();
    let nginx = nginx::Nginx::start(&bin, 1, |ports, _| {
        let listen6 = if ipv6 {
            format!("listen [::1]:{};", ports[0])
        } else {
            String::new()
        };
        format!(
            "
    upstream tserver {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port};
        {listen6}
        server_name test.local;
        location /seed/ {{
            proxy_pass http://tserver;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
        }}
        location /full/ {{
            proxy_pass http://tserver;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Accept-Encoding \"\";
            proxy_set_header X-Uri \"u=$request_uri;ua=$http_user_agent;c=$http_cookie\";
        }}
    }}
",
            port = ports[0]
        )
    });
    let nginx4 = SocketAddr::from(([127, 0, 0, 1], nginx.ports()[0]));
    let nginx6 = SocketAddr::new("::1".parse().unwrap(), nginx.ports()[0]);

    let seed = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .server_name("test.local")
        .build()
        .unwrap();
    let full = ProxyHeadersLayer::builder()
        .proxy_host("tserver")
        .server_name("test.local")
        .set("X-Real-IP", "$remote_addr")
        .x_forwarded()
        .set("Accept-Encoding", "")
        .set("X-Uri", "u=$request_uri;ua=$http_user_agent;c=$http_cookie")
        .build()
        .unwrap();
    let mut gateways = Vec::new();
    for (path, layer) in [("/seed/", seed), ("/full/", full)] {
        let none = RewriteResponseLayer::builder().build().unwrap();
        let v4 = gateway("127.0.0.1:0", backend, layer.clone(), none.clone()).await;
        let v6 = if ipv6 {
            Some(gateway("[::1]:0", backend, layer, none).await)
        } else {
            None
        };
        gateways.push((path, v4, v6));
    }

    let mut compared = 0;
    for (path, gw4, gw6) in &gateways {
        let mut runs: Vec<(&str, &str, &str, SocketAddr, SocketAddr)> = CASES
            .iter()
            .map(|c| (c.name, c.raw, c.src, nginx4, *gw4))
            .collect();
        if let Some(gw6) = gw6 {
            let raw =
                "GET {path}six HTTP/1.1\r\nHost: [::1]\r\nX-Forwarded-For: 2001:db8::9\r\n\r\n";
            runs.push(("IPv6 client", raw, "::1", nginx6, *gw6));
            let raw = "GET {path} HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n";
            runs.push(("IPv6 literal host with port", raw, "::1", nginx6, *gw6));
        } else {
            nginx::note("nginx_headers: no IPv6 loopback here; the IPv6 cases were skipped");
        }
        for (name, raw, src, to_nginx, to_gateway) in runs {
            let raw = raw.replace("{path}", path);
            let src: IpAddr = src.parse().unwrap();
            let (s1, _, b1) = exchange(src, to_nginx, &raw).await;
            let (s2, _, b2) = exchange(src, to_gateway, &raw).await;
            let case = format!("{path} {name}");
            assert_eq!((s1, s2), (200, 200), "{case}");
            let (via_nginx, via_gateway) = (Seen::parse(&b1), Seen::parse(&b2));
            let expected = without_documented_differences(&case, &raw, &via_nginx);
            if std::env::var_os("NGINX_HEADERS_VERBOSE").is_some() {
                nginx::note(&format!(
                    "{case}\n  nginx   {} {:?}\n  gateway {} {:?}",
                    via_nginx.version, via_nginx.headers, via_gateway.version, via_gateway.headers
                ));
            }
            assert_eq!(
                via_gateway.version, expected.version,
                "{case}: request line version"
            );
            assert_eq!(
                via_gateway.sorted(),
                expected.sorted(),
                "{case}:\n nginx sent   {:?}\n gateway sent {:?}",
                via_nginx.headers,
                via_gateway.headers
            );
            assert_eq!(via_gateway.body, via_nginx.body, "{case}: body");
            compared += 1;
        }
    }
    nginx::note(&format!(
        "nginx_headers: {compared} requests, same headers as nginx apart from the documented differences"
    ));
    assert!(compared >= 2 * CASES.len());
}

// ===== responses =====

/// A backend that answers like a Tomcat app under `/app`: redirects and cookies that name
/// its own address and path, a header to hide, and hop-by-hop headers. The last path
/// segment picks the redirect.
async fn tomcat_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                let me = format!("http://{addr}");
                let mut res = Response::builder();
                match req.uri().path().rsplit('/').next().unwrap() {
                    "1" => res = res.header("location", format!("{me}/app/login?x=1")),
                    "2" => res = res.header("location", format!("{me}/other")),
                    "3" => res = res.header("location", "/app/relative"),
                    "4" => {
                        res = res
                            .header("location", format!("{me}/app/"))
                            .header("refresh", format!("5; url={me}/app/next"))
                    }
                    _ => {
                        res = res
                            .header("location", "http://other.example/app/")
                            .header("refresh", format!("0;URL={me}/app/x"))
                    }
                }
                let res = res
                    .header("set-cookie", "JSESSIONID=8F3A; Path=/app; HttpOnly")
                    .header("set-cookie", "b=2;path=/app/x;Domain=.Tomcat.Internal")
                    .header("set-cookie", "c=3; Path=/other; Domain=other.example")
                    .header("set-cookie", "novalue; Path=/app")
                    .header("set-cookie", "d=4 ; Path = /app/ ; Secure")
                    .header("x-hidden", "1")
                    .header("x-kept", "1")
                    .header("connection", "X-Internal")
                    .header("x-internal", "1")
                    .header("keep-alive", "timeout=3")
                    .body(Full::new(Bytes::from_static(b"moved\n")))
                    .unwrap();
                Ok::<_, Infallible>(res)
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The values of header `name` in a response head, in order.
fn head_values(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// `proxy_redirect default`, `proxy_cookie_path`, `proxy_cookie_domain` and
/// `proxy_hide_header` give the client the same `Location`, `Refresh` and `Set-Cookie`
/// through the gateway as through nginx, for `location /shop/ { proxy_pass
/// http://<peer>/app/; }`. Documented differences: nginx runs with `absolute_redirect off`
/// (by default it makes relative redirects absolute again), and it passes on the header
/// that the peer's `Connection` names, which the gateway removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_receive_the_same_rewritten_responses_as_from_nginx() {
    let Some(bin) = nginx::require("nginx_headers (responses)") else {
        return;
    };
    let backend = tomcat_backend().await;
    let nginx = nginx::Nginx::start(&bin, 1, |ports, _| {
        format!(
            "
    server {{
        listen 127.0.0.1:{port};
        # nginx would turn the relative Location that `proxy_redirect default` makes back
        # into an absolute URL with its own host and port; the gateway leaves it relative.
        absolute_redirect off;
        location /shop/ {{
            proxy_pass http://{backend}/app/;
            proxy_cookie_path /app /;
            proxy_cookie_domain tomcat.internal shop.example;
            proxy_hide_header X-Hidden;
        }}
    }}
",
            port = ports[0]
        )
    });
    let nginx = SocketAddr::from(([127, 0, 0, 1], nginx.ports()[0]));
    let responses = RewriteResponseLayer::builder()
        .redirect_peer("/app/", "/shop/")
        .cookie_path("/app", "/")
        .cookie_domain("tomcat.internal", "shop.example")
        .hide_header("X-Hidden")
        .build()
        .unwrap();
    let headers = ProxyHeadersLayer::builder().build().unwrap();
    let gw = gateway("127.0.0.1:0", backend, headers, responses).await;
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    for n in 1..=5 {
        // The gateway has no location mapping here: it asks the peer for /app/N directly.
        let to_nginx = format!("GET /shop/{n} HTTP/1.1\r\nHost: shop.example\r\n\r\n");
        let to_gateway = format!("GET /app/{n} HTTP/1.1\r\nHost: shop.example\r\n\r\n");
        let (s1, via_nginx, _) = exchange(local, nginx, &to_nginx).await;
        let (s2, via_gateway, _) = exchange(local, gw, &to_gateway).await;
        assert_eq!((s1, s2), (200, 200));
        if std::env::var_os("NGINX_HEADERS_VERBOSE").is_some() {
            nginx::note(&format!("response {n}\n{via_nginx}\n--\n{via_gateway}\n"));
        }
        for name in ["location", "refresh", "set-cookie", "x-hidden", "x-kept"] {
            assert_eq!(
                head_values(&via_gateway, name),
                head_values(&via_nginx, name),
                "response {n}, {name}"
            );
        }
        // The rewrite did happen where it should.
        let location = &head_values(&via_gateway, "location")[0];
        assert_eq!(
            location.starts_with("/shop/"),
            n == 1 || n == 4,
            "{location}"
        );
        // Documented difference: nginx passes on the header the peer's `Connection` names.
        assert_eq!(head_values(&via_nginx, "x-internal"), ["1"]);
        assert!(head_values(&via_gateway, "x-internal").is_empty());
        assert!(head_values(&via_gateway, "keep-alive").is_empty());
    }
}
