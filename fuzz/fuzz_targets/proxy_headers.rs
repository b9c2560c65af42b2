//! Header rewriting: `RealIpLayer` and `ProxyHeadersLayer` (`proxy_set_header` with nginx
//! variables, `X-Forwarded-*`, `Forwarded`, `Via`, hop-by-hop removal) on hostile requests
//! and responses.
//!
//! The input is lines: the request target, then request headers (`name: value`), an empty
//! line, the response status, then response headers. Checked:
//!
//! - no panic;
//! - the peer never gets a hop-by-hop header, nor one the client named in `Connection`
//!   (unless the gateway sets it itself); the client never gets one from the peer;
//! - `X-Real-IP` is the address `RealIpLayer::client_addr` finds, and `X-Forwarded-For` is
//!   the client's list with that address appended;
//! - the `Forwarded` value the gateway sends, read back by a `RealIpLayer` that trusts the
//!   gateway, gives the client address;
//! - `Host` is a valid, lower-case host without a port, or absent;
//! - `X-Uri` is the request's path and query; the gateway's own headers appear once;
//! - a `101 Switching Protocols` the client did not ask for never reaches it.
#![no_main]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{service_fn, Layer, ServiceExt};
use tower_upstream::proxy_headers::{ProxyHeadersLayer, RealIpHeader, RealIpLayer};

mod common;

static REAL_IP: LazyLock<RealIpLayer> = LazyLock::new(|| {
    RealIpLayer::builder()
        .trust("10.0.0.0/8")
        .trust("::1")
        .header(RealIpHeader::XForwardedFor)
        .recursive(true)
        .build()
        .unwrap()
});

static HEADERS: LazyLock<ProxyHeadersLayer> = LazyLock::new(|| {
    ProxyHeadersLayer::builder()
        .set("Host", "$host")
        .set("X-Real-IP", "$remote_addr")
        .x_forwarded()
        .forwarded()
        .via("gw")
        .set("X-Uri", "$request_uri")
        .set("X-Cookie", "[$http_cookie]")
        .set("X-Ua", "${http_user_agent}")
        .build()
        .unwrap()
});

/// Reads `Forwarded` as the next proxy would: it trusts us (any address) and takes the last
/// element.
static NEXT_HOP: LazyLock<RealIpLayer> = LazyLock::new(|| {
    RealIpLayer::builder()
        .trust("0.0.0.0/0")
        .trust("::/0")
        .header(RealIpHeader::Forwarded)
        .build()
        .unwrap()
});

const SET_BY_GATEWAY: [&str; 10] = [
    "host",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "via",
    "x-uri",
    "x-cookie",
    "x-ua",
];

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn header_line(line: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = line.split_once(':')?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
    let value = HeaderValue::from_str(value.trim_start()).ok()?;
    Some((name, value))
}

/// The names the `Connection` headers list.
fn connection_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect()
}

/// `exempt`: the headers the gateway sets after removing the hop-by-hop ones.
fn check_no_hop_by_hop(sent: &HeaderMap, named: &[HeaderName], exempt: &[&str], side: &str) {
    for name in HOP_BY_HOP {
        assert!(!sent.contains_key(name), "{side} got hop-by-hop {name}");
    }
    for name in named {
        if !exempt.contains(&name.as_str()) {
            assert!(
                !sent.contains_key(name),
                "{side} got {name}, named in Connection"
            );
        }
    }
}

/// nginx's `$host` rules. (A trailing dot is kept when the port has a dot too, as nginx
/// does: `a.:1.2` gives `a.`.)
fn valid_host(host: &[u8]) -> bool {
    !host.is_empty()
        && !host.windows(2).any(|w| w == b"..")
        && !host
            .iter()
            .any(|&b| b.is_ascii_uppercase() || b == b'/' || b <= 0x20 || b == 0x7f)
        && (host.starts_with(b"[") || !host.contains(&b':'))
}

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let mut lines = lines.iter();
    let target = lines.next().map_or("/", String::as_str);
    let mut req = Request::get(target)
        .body(())
        .unwrap_or_else(|_| Request::new(()));
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = header_line(line) {
            req.headers_mut().append(name, value);
        }
    }
    let status = lines
        .next()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response_headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = header_line(line) {
            response_headers.append(name, value);
        }
    }
    // The connection comes from a trusted proxy or from a client, by the input's length.
    let remote: SocketAddr = match data.len() % 3 {
        0 => "10.0.0.2:40000".parse().unwrap(),
        1 => "[::1]:40000".parse().unwrap(),
        _ => "192.0.2.9:40000".parse().unwrap(),
    };
    req.extensions_mut().insert(remote);
    let client_headers = req.headers().clone();
    let named = connection_names(&client_headers);
    let uri = req.uri().clone();
    let peer_named = connection_names(&response_headers);

    let seen: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
    let peer = {
        let seen = seen.clone();
        service_fn(move |req: Request<()>| {
            *seen.lock().unwrap() = Some(req.headers().clone());
            let mut res = Response::new(());
            *res.status_mut() = status;
            *res.headers_mut() = response_headers.clone();
            std::future::ready(Ok::<_, Infallible>(res))
        })
    };
    let svc = REAL_IP.layer(HEADERS.layer(peer));
    let res = common::ready(svc.oneshot(req)).expect("infallible");
    let sent = seen.lock().unwrap().take().expect("the peer was called");

    check_no_hop_by_hop(&sent, &named, &SET_BY_GATEWAY, "the peer");
    check_no_hop_by_hop(res.headers(), &peer_named, &[], "the client");
    assert_ne!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    for name in SET_BY_GATEWAY {
        assert!(sent.get_all(name).iter().count() <= 1, "{name} twice");
    }

    let client: IpAddr = REAL_IP.client_addr(remote.ip(), &client_headers);
    assert_eq!(sent["x-real-ip"], client.to_string().as_str());
    let mut xff: Vec<Vec<u8>> = client_headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    xff.push(client.to_string().into_bytes());
    assert_eq!(sent["x-forwarded-for"].as_bytes(), xff.join(&b", "[..]));

    let forwarded = sent.get(header::FORWARDED).expect("always sent");
    let mut next = HeaderMap::new();
    next.insert(header::FORWARDED, forwarded.clone());
    assert_eq!(
        NEXT_HOP.client_addr("10.9.9.9".parse().unwrap(), &next),
        client,
        "Forwarded read back: {forwarded:?}"
    );

    if let Some(host) = sent.get(header::HOST) {
        assert!(valid_host(host.as_bytes()), "Host {host:?}");
    }
    match uri.path_and_query() {
        Some(pq) => assert_eq!(sent["x-uri"], pq.as_str()),
        None => assert!(!sent.contains_key("x-uri")),
    }
});
