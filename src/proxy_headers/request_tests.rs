use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use http::header::HeaderMap;
use http::{Request, Response, StatusCode, Version};
use tower::{service_fn, Layer, ServiceExt};

use super::*;

/// Sends `req` through `layer` to a peer that records the headers it received; returns
/// them.
async fn forward(layer: &ProxyHeadersLayer, req: Request<()>) -> HeaderMap {
    let peer = service_fn(|req: Request<()>| async move {
        let mut res = Response::new(());
        res.extensions_mut().insert(req.headers().clone());
        Ok::<_, Infallible>(res)
    });
    let res = layer.layer(peer).oneshot(req).await.unwrap();
    res.extensions().get::<HeaderMap>().unwrap().clone()
}

fn request(client: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::get("/index.jsp?a=1");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let mut req = b.body(()).unwrap();
    req.extensions_mut()
        .insert(client.parse::<SocketAddr>().unwrap());
    req
}

/// The received headers as sorted `name: value` lines.
fn lines(headers: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = headers
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
        .collect();
    out.sort();
    out
}

fn seed() -> ProxyHeadersLayer {
    ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .build()
        .unwrap()
}

#[tokio::test]
async fn seed_lines_ipv4_client_and_spoofed_x_real_ip() {
    let req = request(
        "192.0.2.7:50000",
        &[
            ("host", "Gateway.Test:8080"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("accept", "*/*"),
        ],
    );
    let seen = forward(&seed(), req).await;
    assert_eq!(
        lines(&seen),
        [
            "accept: */*",
            "host: gateway.test",
            "x-forwarded-for: 6.6.6.6", // not set by the seed: passed on
            "x-real-ip: 192.0.2.7",
        ]
    );
}

#[tokio::test]
async fn ipv6_client_in_every_header() {
    let layer = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .x_forwarded()
        .forwarded()
        .scheme("https")
        .build()
        .unwrap();
    let req = request(
        "[2001:db8::7]:50000",
        &[
            ("host", "[2001:DB8::1]:8443"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    );
    let seen = forward(&layer, req).await;
    assert_eq!(
        lines(&seen),
        [
            "forwarded: for=\"[2001:db8::7]\";host=\"[2001:DB8::1]:8443\";proto=https",
            "host: [2001:db8::1]",
            "x-forwarded-for: 203.0.113.9, 2001:db8::7",
            "x-forwarded-host: [2001:db8::1]",
            "x-forwarded-proto: https",
            "x-real-ip: 2001:db8::7",
        ]
    );
}

#[tokio::test]
async fn chain_of_proxies_appends_to_every_list() {
    let layer = ProxyHeadersLayer::builder()
        .x_forwarded()
        .forwarded()
        .via("gw1")
        .build()
        .unwrap();
    let mut req = request(
        "198.51.100.7:1234",
        &[
            ("host", "shop.example"),
            ("x-forwarded-for", "203.0.113.9, 10.1.0.1"),
            ("x-forwarded-for", "10.2.0.1"),
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
            ("via", "1.0 fred, 1.1 p.example.net"),
        ],
    );
    *req.version_mut() = Version::HTTP_10;
    let seen = forward(&layer, req).await;
    assert_eq!(
        seen["x-forwarded-for"],
        "203.0.113.9, 10.1.0.1, 10.2.0.1, 198.51.100.7"
    );
    assert_eq!(
        seen["forwarded"],
        "for=192.0.2.60;proto=http;by=203.0.113.43, for=198.51.100.7;host=shop.example;proto=http"
    );
    assert_eq!(seen["via"], "1.0 fred, 1.1 p.example.net, 1.0 gw1");
    assert_eq!(seen.get_all("x-forwarded-for").iter().count(), 1);
}

/// Found by `fuzz/fuzz_targets/proxy_headers.rs`: a client's `Forwarded` value with an open
/// quote swallowed the element the gateway appended, so the next proxy saw the gateway as the
/// client. Such values are dropped; closed ones are kept.
#[tokio::test]
async fn forwarded_with_an_open_quote_cannot_swallow_our_element() {
    let layer = ProxyHeadersLayer::builder().forwarded().build().unwrap();
    let req = request(
        "198.51.100.7:1234",
        &[
            ("forwarded", "for=192.0.2.60"),
            ("forwarded", "for=\"abc"),
            ("forwarded", "for=\"x\\"),
            ("host", "shop.example"),
        ],
    );
    let seen = forward(&layer, req).await;
    assert_eq!(
        seen["forwarded"],
        "for=192.0.2.60, for=198.51.100.7;host=shop.example;proto=http"
    );
    let next_hop = crate::proxy_headers::RealIpLayer::builder()
        .trust("0.0.0.0/0")
        .header(crate::proxy_headers::RealIpHeader::Forwarded)
        .build()
        .unwrap();
    let client = next_hop.client_addr("10.0.0.1".parse().unwrap(), &seen);
    assert_eq!(client, "198.51.100.7".parse::<IpAddr>().unwrap());
}

/// The peer's `Connection` is removed; an `Upstream`'s own `Connection: close` (its client
/// body was not read to the end) is kept.
#[tokio::test]
async fn upstreams_connection_close_is_kept() {
    let layer = seed();
    for closing in [false, true] {
        let peer = service_fn(move |_: Request<()>| async move {
            let mut res = Response::new(());
            res.headers_mut()
                .insert("connection", "x-peer".parse().unwrap());
            res.headers_mut().insert("x-peer", "1".parse().unwrap());
            if closing {
                res.headers_mut()
                    .append("connection", "close".parse().unwrap());
                res.extensions_mut()
                    .insert(crate::upstream::CloseConnection);
            }
            Ok::<_, Infallible>(res)
        });
        let req = request("198.51.100.7:1234", &[]);
        let res = layer.layer(peer).oneshot(req).await.unwrap();
        assert!(!res.headers().contains_key("x-peer"));
        let connection: Vec<_> = res.headers().get_all("connection").iter().collect();
        if closing {
            assert_eq!(connection, ["close"]);
        } else {
            assert!(connection.is_empty());
        }
    }
}

#[tokio::test]
async fn nginx_defaults_host_and_expect() {
    let req = || {
        request(
            "192.0.2.7:1",
            &[("host", "gateway.test"), ("expect", "100-continue")],
        )
    };
    // `$proxy_host` unset: no Host, so an HttpPeer writes its own address.
    let plain = ProxyHeadersLayer::builder().build().unwrap();
    assert!(lines(&forward(&plain, req()).await).is_empty());
    let named = ProxyHeadersLayer::builder()
        .proxy_host("tserver")
        .build()
        .unwrap();
    assert_eq!(lines(&forward(&named, req()).await), ["host: tserver"]);
    let fixed = ProxyHeadersLayer::builder()
        .set("Host", "backend.internal")
        .set("Expect", "$http_expect")
        .build()
        .unwrap();
    assert_eq!(
        lines(&forward(&fixed, req()).await),
        ["expect: 100-continue", "host: backend.internal"]
    );
}

#[tokio::test]
async fn connection_close_x_secret_strips_x_secret() {
    let req = request(
        "192.0.2.7:1",
        &[
            ("host", "gateway.test"),
            ("connection", "close, X-Secret"),
            ("x-secret", "s3cret"),
            ("x-kept", "1"),
        ],
    );
    let seen = forward(&seed(), req).await;
    assert_eq!(
        lines(&seen),
        ["host: gateway.test", "x-kept: 1", "x-real-ip: 192.0.2.7"]
    );
}

#[tokio::test]
async fn every_hop_by_hop_header_is_removed() {
    let req = request(
        "192.0.2.7:1",
        &[
            ("host", "gateway.test"),
            ("connection", "keep-alive, x-real-ip, host"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
        ],
    );
    let seen = forward(&seed(), req).await;
    // Naming a configured header in `Connection` cannot remove it.
    assert_eq!(lines(&seen), ["host: gateway.test", "x-real-ip: 192.0.2.7"]);
}

#[tokio::test]
async fn empty_values_remove_and_closures_compute() {
    let layer = ProxyHeadersLayer::builder()
        .set("Accept-Encoding", "")
        .set("X-Empty-Var", "$http_missing")
        .set_with("X-Method", |p: &http::request::Parts| {
            HeaderValue::from_str(p.method.as_str()).ok()
        })
        .set_with("X-None", |_: &http::request::Parts| None)
        .set_with("X-Blank", HeaderValue::from_static(""))
        .set("X-Uri", "uri=$request_uri")
        .build()
        .unwrap();
    let req = request(
        "192.0.2.7:1",
        &[("accept-encoding", "gzip"), ("x-none", "from client")],
    );
    assert_eq!(
        lines(&forward(&layer, req).await),
        ["x-method: GET", "x-uri: uri=/index.jsp?a=1"]
    );
}

#[tokio::test]
async fn set_headers_replace_every_client_line() {
    // More headers than are made on the stack, and the seed's.
    let mut builder = ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr");
    for i in 0..INLINE_VALUES {
        builder = builder.set(&format!("X-N{i}"), &i.to_string());
    }
    for layer in [seed(), builder.build().unwrap()] {
        let mut req = request(
            "192.0.2.7:1",
            &[
                ("host", "a.example"),
                ("x-real-ip", "6.6.6.6"),
                ("x-n3", "x"),
            ],
        );
        req.headers_mut()
            .append("x-real-ip", "6.6.6.7".parse().unwrap());
        req.headers_mut()
            .append("host", "b.example".parse().unwrap());
        let seen = forward(&layer, req).await;
        let all = |name: &str| seen.get_all(name).iter().cloned().collect::<Vec<_>>();
        assert_eq!(all("x-real-ip"), ["192.0.2.7"]);
        assert_eq!(all("host"), ["a.example"]);
        if seen.contains_key("x-n0") {
            assert_eq!(seen.len(), INLINE_VALUES + 2);
            assert_eq!(all("x-n3"), ["3"]);
        } else {
            assert_eq!(
                lines(&seen),
                ["host: a.example", "x-n3: x", "x-real-ip: 192.0.2.7"]
            );
        }
    }
}

#[tokio::test]
async fn scheme_from_extension_or_absolute_uri() {
    let layer = ProxyHeadersLayer::builder()
        .set("X-Forwarded-Proto", "$scheme")
        .build()
        .unwrap();
    let mut req = request("192.0.2.7:1", &[]);
    req.extensions_mut().insert(http::uri::Scheme::HTTPS);
    assert_eq!(forward(&layer, req).await["x-forwarded-proto"], "https");
    let req = Request::get("https://shop.example/").body(()).unwrap();
    assert_eq!(forward(&layer, req).await["x-forwarded-proto"], "https");
    let req = request("192.0.2.7:1", &[]);
    assert_eq!(forward(&layer, req).await["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn client_address_prefers_the_ip_extension() {
    let mut req = request("10.0.0.1:1", &[("host", "h")]);
    req.extensions_mut()
        .insert("203.0.113.9".parse::<IpAddr>().unwrap());
    assert_eq!(forward(&seed(), req).await["x-real-ip"], "203.0.113.9");
    // No address at all: no X-Real-IP, and XFF keeps what the client sent.
    let layer = ProxyHeadersLayer::builder()
        .set("X-Real-IP", "$remote_addr")
        .x_forwarded()
        .build()
        .unwrap();
    let req = Request::get("/")
        .header("x-forwarded-for", "203.0.113.9")
        .body(())
        .unwrap();
    let seen = forward(&layer, req).await;
    assert!(!seen.contains_key("x-real-ip"));
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9");
}

#[tokio::test]
async fn the_connections_client_serves_requests_without_an_address() {
    let layer = ProxyHeadersLayer::builder()
        .set("X-Real-IP", "$remote_addr")
        .set("X-Client", "ip=$remote_addr")
        .x_forwarded()
        .forwarded()
        .build()
        .unwrap();
    let peer = service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(req.headers().clone()))
    });
    let svc = layer
        .layer(peer)
        .with_client_addr("2001:db8::7".parse().unwrap());
    assert!(format!("{svc:?}").contains("2001:db8::7"));
    let send = |req: Request<()>| {
        let svc = svc.clone();
        async move { svc.oneshot(req).await.unwrap().into_body() }
    };
    // The same lines as with the address in the request's extensions.
    let req = || {
        Request::get("/")
            .header("host", "h")
            .header("x-forwarded-for", "203.0.113.9")
            .body(())
            .unwrap()
    };
    let seen = send(req()).await;
    let mut with_extension = req();
    with_extension
        .extensions_mut()
        .insert("[2001:db8::7]:50000".parse::<SocketAddr>().unwrap());
    assert_eq!(lines(&seen), lines(&forward(&layer, with_extension).await));
    assert_eq!(seen["x-real-ip"], "2001:db8::7");
    assert_eq!(seen["x-client"], "ip=2001:db8::7");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 2001:db8::7");
    assert_eq!(seen["forwarded"], "for=\"[2001:db8::7]\";host=h;proto=http");
    // An address in the request's extensions (RealIp's) comes first, in every header.
    let mut real = req();
    real.extensions_mut()
        .insert("192.0.2.1".parse::<IpAddr>().unwrap());
    let seen = send(real).await;
    assert_eq!(seen["x-real-ip"], "192.0.2.1");
    assert_eq!(seen["x-client"], "ip=192.0.2.1");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 192.0.2.1");
}

#[test]
fn invalid_configurations_are_refused() {
    let err = |b: ProxyHeadersBuilder| b.build().unwrap_err();
    let b = ProxyHeadersLayer::builder;
    assert_eq!(
        err(b().set("Bad Name", "x")),
        ConfigError::InvalidHeaderName {
            name: "Bad Name".into()
        }
    );
    assert_eq!(
        err(b().set("X-A", "v\r\nX-Injected: 1")),
        ConfigError::InvalidHeaderValue {
            name: "X-A".into(),
            value: "v\r\nX-Injected: 1".into()
        }
    );
    assert_eq!(
        err(b().set("X-A", "$remote_adr")),
        ConfigError::UnknownVariable {
            name: "X-A".into(),
            variable: "$remote_adr".into()
        }
    );
    assert_eq!(
        err(b().set("Connection", "upgrade")),
        ConfigError::HopByHopHeader {
            name: "Connection".into()
        }
    );
    assert!(matches!(
        err(b().set_with("Upgrade", HeaderValue::from_static("websocket"))),
        ConfigError::HopByHopHeader { .. }
    ));
    assert!(matches!(
        err(b().via("two words")),
        ConfigError::InvalidHeaderValue { .. }
    ));
    assert!(matches!(
        err(b().proxy_host("a\nb")),
        ConfigError::InvalidHeaderValue { .. }
    ));
    assert!(matches!(
        err(b().scheme("\0")),
        ConfigError::InvalidHeaderValue { .. }
    ));
    // nginx's keep-alive idiom is accepted: the header is never forwarded anyway.
    assert!(b().set("Connection", "").build().is_ok());
    assert!(b().via("gw.example:8080").build().is_ok());
}

// ===== responses =====

async fn respond(upgrade: bool, res: Response<()>) -> Response<()> {
    let res = std::sync::Mutex::new(Some(res));
    let res = std::sync::Arc::new(res);
    let peer = service_fn(move |_: Request<()>| {
        let res = res.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(res) }
    });
    let mut req = Request::get("/")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(())
        .unwrap();
    if upgrade {
        req.extensions_mut().insert(Upgrading);
    }
    seed().layer(peer).oneshot(req).await.unwrap()
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_removed() {
    let res = Response::builder()
        .header("connection", "close, X-Internal")
        .header("keep-alive", "timeout=5")
        .header("transfer-encoding", "chunked")
        .header("x-internal", "1")
        .header("proxy-authenticate", "Basic")
        .header("set-cookie", "a=1")
        .body(())
        .unwrap();
    let res = respond(false, res).await;
    assert_eq!(lines(res.headers()), ["set-cookie: a=1"]);
}

#[tokio::test]
async fn upgrades_are_forwarded_only_when_tunnelled() {
    let peer_saw = |upgrade: bool| async move {
        let mut req = request(
            "192.0.2.7:1",
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
        );
        if upgrade {
            req.extensions_mut().insert(Upgrading);
        }
        lines(&forward(&seed(), req).await)
    };
    assert_eq!(
        peer_saw(true).await,
        [
            "connection: upgrade",
            "upgrade: websocket",
            "x-real-ip: 192.0.2.7"
        ]
    );
    assert_eq!(peer_saw(false).await, ["x-real-ip: 192.0.2.7"]);

    let switching = || {
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .body(())
            .unwrap()
    };
    let res = respond(true, switching()).await;
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        lines(res.headers()),
        [
            "connection: upgrade",
            "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "upgrade: websocket"
        ]
    );
    // A 101 nobody asked for is not passed on.
    let res = respond(false, switching()).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(!res.headers().contains_key("upgrade"));
}

#[test]
fn debug_shows_the_configuration() {
    let text = format!("{:?}", seed());
    assert!(text.contains("\"x-real-ip\""), "{text}");
    assert!(text.contains("RemoteAddr"), "{text}");
    let text = format!(
        "{:?}",
        ProxyHeadersLayer::builder()
            .set("X-A", "v=$host")
            .build()
            .unwrap()
    );
    assert!(text.contains("\"v=\""), "{text}");
}
