use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::policy::{ClientAddr, ConnectAddr};
use crate::proxy_headers::ProxyHeadersLayer;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn layer(header: RealIpHeader, recursive: bool) -> RealIpLayer {
    RealIpLayer::builder()
        .trust("10.0.0.0/8")
        .trust("::1")
        .header(header)
        .recursive(recursive)
        .build()
        .unwrap()
}

#[test]
fn untrusted_clients_cannot_choose_their_address() {
    let l = layer(RealIpHeader::XForwardedFor, true);
    let spoofed = headers(&[("x-forwarded-for", "10.0.0.9, 1.1.1.1")]);
    assert_eq!(
        l.client_addr(ip("203.0.113.9"), &spoofed),
        ip("203.0.113.9")
    );
    let l = layer(RealIpHeader::XRealIp, false);
    let spoofed = headers(&[("x-real-ip", "1.1.1.1")]);
    assert_eq!(
        l.client_addr(ip("2001:db8::9"), &spoofed),
        ip("2001:db8::9")
    );
    // Trusting nobody (the default) changes nothing.
    let nobody = RealIpLayer::builder().build().unwrap();
    assert_eq!(nobody.client_addr(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
}

#[test]
fn non_recursive_takes_the_last_entry() {
    let l = layer(RealIpHeader::XForwardedFor, false);
    let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
    assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("10.0.0.2"));
}

#[test]
fn recursive_skips_trusted_hops_from_the_right() {
    let l = layer(RealIpHeader::XForwardedFor, true);
    let h = headers(&[(
        "x-forwarded-for",
        "6.6.6.6, 203.0.113.9, 10.0.0.3, 10.0.0.2",
    )]);
    assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("203.0.113.9"));
    // Several header lines make one list.
    let h = headers(&[
        ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
        ("x-forwarded-for", "10.0.0.2"),
    ]);
    assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("203.0.113.9"));
    // Everyone trusted: the leftmost address.
    let h = headers(&[("x-forwarded-for", "10.0.0.5,10.0.0.2")]);
    assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("10.0.0.5"));
    // IPv6 loopback proxy, IPv6 client.
    let h = headers(&[("x-forwarded-for", "2001:db8::7")]);
    assert_eq!(l.client_addr(ip("::1"), &h), ip("2001:db8::7"));
    // A dual-stack socket reports IPv4 proxies as mapped addresses.
    let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(l.client_addr(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.9"));
}

#[test]
fn malformed_entries_are_never_taken() {
    let l = layer(RealIpHeader::XForwardedFor, true);
    // The walk stops at the malformed entry: the last good address reached stands.
    let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip, 10.0.0.2")]);
    assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("10.0.0.2"));
    for bad in [
        "garbage",
        "1.2.3.4:0",
        "1.2.3.4:99999",
        "[::1]",
        "::1]:80",
        "1.2.3",
        "[1.2.3.4]:80",
    ] {
        let h = headers(&[("x-forwarded-for", bad)]);
        assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("10.0.0.1"), "{bad}");
    }
    // No header at all.
    assert_eq!(
        l.client_addr(ip("10.0.0.1"), &HeaderMap::new()),
        ip("10.0.0.1")
    );
}

#[test]
fn addresses_with_ports_like_nginx() {
    let l = layer(RealIpHeader::XRealIp, false);
    for (value, want) in [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:443", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
    ] {
        let h = headers(&[("x-real-ip", value)]);
        assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip(want), "{value}");
    }
}

#[test]
fn forwarded_and_custom_headers() {
    let l = layer(RealIpHeader::Forwarded, true);
    let h = headers(&[(
        "forwarded",
        "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.2;by=10.0.0.1",
    )]);
    assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("2001:db8::7"));
    // An obfuscated or unknown node stops the walk, like a malformed one.
    let h = headers(&[("forwarded", "for=6.6.6.6, for=_hidden, for=10.0.0.2")]);
    assert_eq!(l.client_addr(ip("10.0.0.1"), &h), ip("10.0.0.2"));

    let custom = RealIpHeader::Other(HeaderName::from_static("cf-connecting-ip"));
    let l = layer(custom, false);
    let h = headers(&[("cf-connecting-ip", "198.51.100.4")]);
    assert_eq!(l.client_addr(ip("10.9.9.9"), &h), ip("198.51.100.4"));
}

#[test]
fn bad_blocks_are_config_errors() {
    let err = RealIpLayer::builder()
        .trust("10.0.0.0/8")
        .trust("10.0.0.1/8")
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::InvalidCidr {
            value: "10.0.0.1/8".into()
        }
    );
}

/// The resolved address reaches `ConnectAddr` (so `IpHash`) and `$remote_addr`; a spoofing
/// client reaches neither.
#[tokio::test]
async fn the_service_feeds_ip_hash_and_x_real_ip() {
    let stack = |remote: &str, xff: &str| {
        let headers = ProxyHeadersLayer::builder()
            .set("X-Real-IP", "$remote_addr")
            .build()
            .unwrap();
        let svc = layer(RealIpHeader::XForwardedFor, true).layer(headers.layer(service_fn(
            |req: Request<()>| async move {
                let hashed = ConnectAddr.client_addr(&req).unwrap();
                let mut res = Response::new(());
                res.extensions_mut().insert(hashed);
                res.extensions_mut().insert(req.headers().clone());
                Ok::<_, Infallible>(res)
            },
        )));
        let mut req = Request::get("/")
            .header("x-forwarded-for", xff)
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(remote.parse::<SocketAddr>().unwrap());
        svc.oneshot(req)
    };
    let res = stack("10.0.0.1:4000", "198.51.100.4, 10.0.0.2")
        .await
        .unwrap();
    assert_eq!(res.extensions().get::<IpAddr>(), Some(&ip("198.51.100.4")));
    assert_eq!(
        res.extensions().get::<HeaderMap>().unwrap()["x-real-ip"],
        "198.51.100.4"
    );

    let res = stack("203.0.113.9:4000", "10.0.0.2").await.unwrap();
    assert_eq!(res.extensions().get::<IpAddr>(), Some(&ip("203.0.113.9")));
    assert_eq!(
        res.extensions().get::<HeaderMap>().unwrap()["x-real-ip"],
        "203.0.113.9"
    );
}
