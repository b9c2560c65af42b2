//! The real-IP parser: `RealIpLayer::client_addr` over `X-Real-IP`, `X-Forwarded-For`,
//! `Forwarded` and a custom header, recursive or not, and `set_real_ip_from` blocks.
//!
//! The input is lines: the first is an extra `set_real_ip_from` entry, every other line is
//! one value of the header read. Checked:
//!
//! - no panic, in the header parsers or in the CIDR parser;
//! - a client that is not a trusted proxy keeps its own address, whatever it sends;
//! - an address taken from the headers is written there: some run of address characters
//!   in a value (with a `:port` dropped) parses to it;
//! - without `real_ip_recursive`, the address comes from the last entry, so appending a
//!   well-formed entry always makes it the answer; with it, appending a well-formed
//!   *untrusted* entry does;
//! - an extra trusted entry that builds is trusted: that address may set the client address.
#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_upstream::proxy_headers::{RealIpHeader, RealIpLayer};

mod common;

const TRUSTED: [&str; 3] = ["10.0.0.0/8", "::1", "2001:db8::/32"];

fn header_kinds() -> [(RealIpHeader, HeaderName); 4] {
    [
        (RealIpHeader::XRealIp, HeaderName::from_static("x-real-ip")),
        (
            RealIpHeader::XForwardedFor,
            HeaderName::from_static("x-forwarded-for"),
        ),
        (RealIpHeader::Forwarded, http::header::FORWARDED),
        (
            RealIpHeader::Other(HeaderName::from_static("cf-connecting-ip")),
            HeaderName::from_static("cf-connecting-ip"),
        ),
    ]
}

/// Every configuration: (layer, header name, kind, recursive).
static LAYERS: LazyLock<Vec<(RealIpLayer, HeaderName, RealIpHeader, bool)>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for (kind, name) in header_kinds() {
        for recursive in [false, true] {
            let mut b = RealIpLayer::builder()
                .header(kind.clone())
                .recursive(recursive);
            for t in TRUSTED {
                b = b.trust(t);
            }
            out.push((b.build().unwrap(), name.clone(), kind.clone(), recursive));
        }
    }
    out
});

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Whether `addr` is written somewhere in `values`: a run of address characters (quotes'
/// backslashes removed), with or without a trailing `:port`, parses to it.
fn written_in(addr: IpAddr, values: &[HeaderValue]) -> bool {
    values.iter().any(|v| {
        let text: String = String::from_utf8_lossy(v.as_bytes()).replace('\\', "");
        text.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
            .any(|run| {
                let without_port = run.rsplit_once(':').map(|(a, _)| a);
                [Some(run), without_port]
                    .into_iter()
                    .flatten()
                    .any(|cand| cand.parse::<IpAddr>() == Ok(addr))
            })
    })
}

/// A well-formed last entry for `kind` naming `addr`.
fn entry(kind: &RealIpHeader, addr: IpAddr) -> String {
    match (kind, addr) {
        (RealIpHeader::Forwarded, IpAddr::V6(v6)) => format!("for=\"[{v6}]:8080\""),
        (RealIpHeader::Forwarded, IpAddr::V4(v4)) => format!("for={v4}"),
        (_, addr) => addr.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let (extra_trust, values) = lines.split_first().expect("split gives one line at least");
    let values: Vec<HeaderValue> = values
        .iter()
        .filter_map(|v| HeaderValue::from_str(v).ok())
        .collect();

    let trusted_remote = ip("10.1.2.3");
    let untrusted = [ip("192.0.2.1"), ip("2001:db9::1"), ip("::ffff:192.0.2.1")];
    for (layer, name, kind, recursive) in LAYERS.iter() {
        let mut headers = HeaderMap::new();
        for v in &values {
            headers.append(name.clone(), v.clone());
        }
        for remote in untrusted {
            assert_eq!(layer.client_addr(remote, &headers), remote, "untrusted");
        }
        for remote in [trusted_remote, ip("::1"), ip("::ffff:10.0.0.1")] {
            let got = layer.client_addr(remote, &headers);
            assert!(
                got == remote || written_in(got, &values),
                "{got} is not in {values:?}"
            );
        }
        // A proxy we trust appends the client it saw: that entry decides.
        let client = ip("203.0.113.50");
        let mut appended = headers.clone();
        appended.append(
            name.clone(),
            HeaderValue::from_str(&entry(kind, client)).unwrap(),
        );
        assert_eq!(
            layer.client_addr(trusted_remote, &appended),
            client,
            "recursive {recursive}: appended {:?}",
            appended.get_all(name).iter().collect::<Vec<_>>()
        );
    }

    // The CIDR parser: no panic; an entry that builds trusts its own address.
    if let Ok(layer) = RealIpLayer::builder().trust(extra_trust).build() {
        if let Ok(addr) = extra_trust.parse::<IpAddr>() {
            let mut headers = HeaderMap::new();
            headers.insert("x-real-ip", HeaderValue::from_static("198.51.100.7"));
            assert_eq!(layer.client_addr(addr, &headers), ip("198.51.100.7"));
        }
    }
});
