//! Hop-by-hop headers: meaningful for one connection only, never forwarded.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};

/// The headers that are hop-by-hop whatever `Connection` says (RFC 9110 §7.6.1, plus the
/// non-standard `Keep-Alive` and `Proxy-Connection`).
pub(crate) static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is one of the fixed hop-by-hop headers.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop_bit(name.as_str()) != 0
}

/// `1 << i` for the name `HOP_BY_HOP[i]` (lower case), 0 for any other name. A `match` on
/// the text costs a fraction of comparing nine `HeaderName`s.
fn hop_by_hop_bit(name: &str) -> u16 {
    let i = match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return 0,
    };
    1 << i
}

/// Removes the hop-by-hop headers from `headers`: `Connection`, `Keep-Alive`,
/// `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade`, and every header that `Connection` names.
///
/// Names in `Connection` that are not valid header names are ignored.
///
/// ```
/// use http::HeaderMap;
/// use tower_upstream::proxy_headers::remove_hop_by_hop_headers;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("connection", "close, X-Secret".parse().unwrap());
/// headers.insert("x-secret", "s3cret".parse().unwrap());
/// headers.insert("accept", "*/*".parse().unwrap());
/// remove_hop_by_hop_headers(&mut headers);
/// assert_eq!(headers.len(), 1);
/// assert_eq!(headers["accept"], "*/*");
/// ```
pub fn remove_hop_by_hop_headers(headers: &mut HeaderMap) {
    // One pass over the names finds the fixed ones that are there, so only those are
    // removed. Most messages carry none (a header named in `Connection` needs `Connection`,
    // itself hop-by-hop).
    let present = headers
        .keys()
        .fold(0, |set, name| set | hop_by_hop_bit(name.as_str()));
    if present == 0 {
        return;
    }
    // The headers `Connection` names that are there, in its order. Usually there are none
    // (`keep-alive` without `Keep-Alive`, `close`), and nothing is allocated.
    let is_there = |token: &[u8]| {
        let fixed = HOP_BY_HOP
            .iter()
            .position(|h| token.eq_ignore_ascii_case(h.as_str().as_bytes()));
        match fixed {
            Some(i) => present & 1 << i != 0,
            None => std::str::from_utf8(token).is_ok_and(|name| headers.contains_key(name)),
        }
    };
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|token| is_there(token))
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & 1 << i != 0 {
            headers.remove(name);
        }
    }
}

/// The comma-separated tokens of every `Connection` header, trimmed, empty ones skipped.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(header::CONNECTION).iter().flat_map(tokens)
}

/// The comma-separated tokens of one field value.
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Whether `Connection` carries the token `token` (ASCII case-insensitive).
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| value_has_token(v, token))
}

/// Whether one `Connection` value carries the token `token` (ASCII case-insensitive).
pub(crate) fn value_has_token(value: &HeaderValue, token: &str) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the request asks to switch protocols: HTTP/1.1 with an `Upgrade` header and the
/// `upgrade` token in `Connection` (RFC 9110 §7.8).
pub(crate) fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_has(req.headers(), "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn names(map: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<_> = map.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_bits_follow_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_bit(name.as_str()), 1 << i, "{name}");
            assert!(is_hop_by_hop(name));
        }
        assert_eq!(hop_by_hop_bit("host"), 0);
        assert_eq!(hop_by_hop_bit("Connection"), 0); // names are lower case
        assert!(!is_hop_by_hop(&header::EXPECT));
    }

    #[test]
    fn fixed_list_is_removed() {
        let mut map = headers(&[
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Content-Length", "3"),
            ("Authorization", "Bearer t"),
        ]);
        remove_hop_by_hop_headers(&mut map);
        assert_eq!(names(&map), ["authorization", "content-length"]);
    }

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut map = headers(&[
            ("Connection", "close, X-Secret"),
            ("X-Secret", "s3cret"),
            ("X-Kept", "1"),
        ]);
        remove_hop_by_hop_headers(&mut map);
        assert_eq!(names(&map), ["x-kept"]);

        // Several Connection lines, odd spacing and case, empty and invalid tokens.
        let mut map = headers(&[
            ("Connection", " X-A ,,x-b"),
            ("Connection", "X-C, bad token"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-c", "3"),
            ("x-d", "4"),
        ]);
        remove_hop_by_hop_headers(&mut map);
        assert_eq!(names(&map), ["x-d"]);
    }

    /// Removing only what is there leaves the map exactly as removing every name did, in
    /// the same order (the order hyper writes the lines in).
    #[test]
    fn same_map_as_removing_every_name() {
        fn remove_every_name(headers: &mut HeaderMap) {
            if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
                return;
            }
            let named: Vec<HeaderName> = connection_tokens(headers)
                .filter_map(|token| HeaderName::from_bytes(token).ok())
                .collect();
            for name in named.iter().chain(&HOP_BY_HOP) {
                headers.remove(name);
            }
        }
        let pool = [
            ("connection", "keep-alive"),
            ("connection", "close, X-A"),
            ("connection", "Keep-Alive, te, x-b, bad token"),
            ("connection", "connection, upgrade"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("host", "h"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("accept", "*/*"),
            ("cookie", "c=1"),
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..5000 {
            let mut map = HeaderMap::new();
            for _ in 0..random(9) {
                let (n, v) = pool[random(pool.len())];
                map.append(n, v.parse().unwrap());
            }
            let mut expected = map.clone();
            remove_every_name(&mut expected);
            remove_hop_by_hop_headers(&mut map);
            let lines = |m: &HeaderMap| {
                m.iter()
                    .map(|(n, v)| format!("{n}: {v:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(lines(&map), lines(&expected));
        }
    }

    #[test]
    fn upgrade_requests_need_both_headers_and_http_1_1() {
        let req = |version, conn: &str, upgrade: bool| {
            let mut b = Request::builder()
                .version(version)
                .header("connection", conn);
            if upgrade {
                b = b.header("upgrade", "websocket");
            }
            b.body(()).unwrap()
        };
        assert!(is_upgrade_request(&req(Version::HTTP_11, "Upgrade", true)));
        assert!(is_upgrade_request(&req(
            Version::HTTP_11,
            "keep-alive, upgrade",
            true
        )));
        assert!(!is_upgrade_request(&req(
            Version::HTTP_11,
            "keep-alive",
            true
        )));
        assert!(!is_upgrade_request(&req(
            Version::HTTP_11,
            "upgrade",
            false
        )));
        assert!(!is_upgrade_request(&req(Version::HTTP_10, "upgrade", true)));
        assert!(!is_upgrade_request(&req(
            Version::HTTP_11,
            "upgrades",
            true
        )));
    }
}
