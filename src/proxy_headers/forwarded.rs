//! RFC 7239 `Forwarded`: writing one element, and reading the `for=` nodes of a header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::template::IpText;

/// Appends the RFC 7239 element `for=<client>;host=<host>;proto=<proto>` to `out`.
///
/// An IPv6 client is written as a quoted, bracketed node (`for="[2001:db8::1]"`); values that
/// are not tokens (a host with a port, say) are quoted, with `"` and `\` escaped.
pub(crate) fn write_element(
    out: &mut Vec<u8>,
    client: Option<IpAddr>,
    host: Option<&[u8]>,
    proto: &[u8],
) {
    let mut first = true;
    let mut pair = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        if !std::mem::take(&mut first) {
            out.push(b';');
        }
        out.extend_from_slice(name);
        out.push(b'=');
        write_value(out, value);
    };
    match client {
        Some(ip) => pair(out, b"for", IpText::node(ip).as_bytes()),
        // RFC 7239 §6.2: a proxy that does not know the address says so.
        None => pair(out, b"for", b"unknown"),
    }
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        pair(out, b"host", host);
    }
    if !proto.is_empty() {
        pair(out, b"proto", proto);
    }
}

/// `value` as a token if it is one, else as a quoted-string.
fn write_value(out: &mut Vec<u8>, value: &[u8]) {
    if !value.is_empty() && value.iter().all(|&b| is_tchar(b)) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `for=` node of each element of a `Forwarded` value, left to right: `Some(ip)` for an
/// address (with or without a port), `None` for an element without `for`, an `unknown` or
/// obfuscated node, or anything malformed.
pub(crate) fn for_nodes(value: &[u8]) -> Vec<Option<IpAddr>> {
    split_outside_quotes(value, b',')
        .into_iter()
        .filter(|element| !trim(element).is_empty())
        .map(|element| {
            let mut found = None;
            for pair in split_outside_quotes(element, b';') {
                let pair = trim(pair);
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                let (name, value) = (&pair[..eq], &pair[eq + 1..]);
                if name.eq_ignore_ascii_case(b"for") {
                    // A repeated `for` makes the element ambiguous: trust neither.
                    if found.is_some() {
                        return None;
                    }
                    found = Some(unquote(value).as_deref().and_then(parse_node));
                }
            }
            found.flatten()
        })
        .collect()
}

/// Whether a `Forwarded` value closes every quoted-string it opens. A value with a dangling
/// quote or escape would swallow an element appended after it.
pub(crate) fn is_closed(value: &[u8]) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for &b in value {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        }
    }
    !quoted && !escaped
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Splits at `sep` bytes that are not inside a quoted-string.
fn split_outside_quotes(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A token as it is, or the contents of a well-formed quoted-string; `None` otherwise.
fn unquote(value: &[u8]) -> Option<Vec<u8>> {
    let Some(inner) = value.strip_prefix(b"\"") else {
        return (!value.is_empty() && value.iter().all(|&b| is_tchar(b))).then(|| value.to_vec());
    };
    let inner = inner.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.push(*bytes.next()?),
            b'"' => return None,
            _ => out.push(b),
        }
    }
    Some(out)
}

/// `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80` (ports may be obfuscated:
/// `_abc`). `unknown` and obfuscated identifiers are not addresses.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(node).ok()?;
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, port) = match node.split_once(':') {
        Some((v4, port)) => (v4, Some(port)),
        None => (node, None),
    };
    if port.is_some_and(|p| !valid_port(p)) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(obf) => {
            !obf.is_empty()
                && obf
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        }
        None => {
            !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(client: Option<&str>, host: Option<&str>, proto: &str) -> String {
        let mut out = Vec::new();
        write_element(
            &mut out,
            client.map(|c| c.parse().unwrap()),
            host.map(str::as_bytes),
            proto.as_bytes(),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn elements_quote_ipv6_and_ports() {
        assert_eq!(
            element(Some("192.0.2.43"), Some("example.com"), "http"),
            "for=192.0.2.43;host=example.com;proto=http"
        );
        assert_eq!(
            element(Some("2001:db8:cafe::17"), Some("example.com:8443"), "https"),
            "for=\"[2001:db8:cafe::17]\";host=\"example.com:8443\";proto=https"
        );
        assert_eq!(
            element(Some("::1"), Some("[::1]:8080"), "http"),
            "for=\"[::1]\";host=\"[::1]:8080\";proto=http"
        );
        assert_eq!(element(None, None, "http"), "for=unknown;proto=http");
        assert_eq!(
            element(Some("10.0.0.1"), Some("a\"b\\c"), "http"),
            "for=10.0.0.1;host=\"a\\\"b\\\\c\";proto=http"
        );
    }

    fn nodes(value: &str) -> Vec<Option<IpAddr>> {
        for_nodes(value.as_bytes())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn for_nodes_of_rfc_examples() {
        assert_eq!(nodes("for=\"_gazonk\""), vec![None]);
        assert_eq!(
            nodes("For=\"[2001:db8:cafe::17]:4711\""),
            vec![ip("2001:db8:cafe::17")]
        );
        assert_eq!(
            nodes("for=192.0.2.60;proto=http;by=203.0.113.43"),
            vec![ip("192.0.2.60")]
        );
        assert_eq!(
            nodes("for=192.0.2.43, for=198.51.100.17"),
            vec![ip("192.0.2.43"), ip("198.51.100.17")]
        );
        assert_eq!(
            nodes("for=unknown, for=\"192.0.2.1:80\""),
            vec![None, ip("192.0.2.1")]
        );
    }

    #[test]
    fn quoted_commas_and_semicolons_do_not_split() {
        assert_eq!(
            nodes("host=\"a,b;c\";for=10.0.0.1, for=10.0.0.2"),
            vec![ip("10.0.0.1"), ip("10.0.0.2")]
        );
    }

    #[test]
    fn malformed_nodes_are_not_addresses() {
        for bad in [
            "for=[::1]",          // brackets are not token characters: must be quoted
            "for=\"::1\"",        // IPv6 needs brackets
            "for=\"[::1\"",       // unbalanced
            "for=\"[::1]x\"",     // junk after the bracket
            "for=\"10.0.0.1:0\"", // port 0
            "for=\"10.0.0.1:99999\"",
            "for=10.0.0.256",
            "for=\"10.0.0.1", // unterminated quote
            "for=",
            "proto=http", // no for
            "for=10.0.0.1;for=10.0.0.2",
            "for=\"1.2.3.4\"x",
        ] {
            assert_eq!(nodes(bad), vec![None], "{bad}");
        }
        assert_eq!(nodes("for=\"10.0.0.1:_a1\""), vec![ip("10.0.0.1")]);
        assert!(is_closed(b"for=\"[::1]\";host=\"a\\\"b\""));
        assert!(!is_closed(b"for=\"abc"));
        assert!(!is_closed(b"for=\"abc\\"));
        assert_eq!(nodes(" , for=10.0.0.1 ,"), vec![ip("10.0.0.1")]);
    }
}
