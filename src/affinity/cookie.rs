//! A cookie the balancer inserts to pin a client to a peer (HAProxy
//! `cookie SERVERID insert indirect nocache`, nginx Plus `sticky cookie`).

use std::fmt::Write as _;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

use super::route::cookie_values;
use crate::ConfigError;

/// The `SameSite` attribute of the inserted cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

/// The attributes of a `Set-Cookie` the crate writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CookieAttributes {
    pub(crate) path: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: Option<SameSite>,
}

impl CookieAttributes {
    /// Appends `; Path=...; Domain=...; Max-Age=...; Secure; HttpOnly; SameSite=...`.
    pub(crate) fn append_to(&self, cookie: &mut String) {
        if let Some(path) = &self.path {
            let _ = write!(cookie, "; Path={path}");
        }
        if let Some(domain) = &self.domain {
            let _ = write!(cookie, "; Domain={domain}");
        }
        if let Some(max_age) = self.max_age {
            let _ = write!(cookie, "; Max-Age={}", max_age.as_secs());
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        if self.http_only {
            cookie.push_str("; HttpOnly");
        }
        match self.same_site {
            Some(SameSite::Strict) => cookie.push_str("; SameSite=Strict"),
            Some(SameSite::Lax) => cookie.push_str("; SameSite=Lax"),
            Some(SameSite::None) => cookie.push_str("; SameSite=None"),
            None => {}
        }
    }
}

/// Settings of the cookie inserted by [`Affinity::cookie`](super::Affinity::cookie).
///
/// Defaults: `Path=/; HttpOnly; SameSite=Lax`, a session cookie (no `Max-Age`), not
/// `Secure`, `indirect` (the peer never sees the cookie) and `nocache`
/// (`Cache-Control: private` on responses that set it).
#[derive(Clone)]
#[must_use]
pub struct InsertCookie {
    pub(crate) name: String,
    key: Option<Vec<u8>>,
    attrs: CookieAttributes,
    pub(crate) indirect: bool,
    pub(crate) nocache: bool,
}

impl std::fmt::Debug for InsertCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertCookie")
            .field("name", &self.name)
            .field("signed", &self.key.is_some())
            .field("attributes", &self.attrs)
            .field("indirect", &self.indirect)
            .field("nocache", &self.nocache)
            .finish()
    }
}

const MIN_SECRET: usize = 16;

impl InsertCookie {
    pub(crate) fn new(name: &str, key: Option<Vec<u8>>) -> Self {
        Self {
            name: name.to_owned(),
            key,
            attrs: CookieAttributes {
                path: Some("/".into()),
                domain: None,
                max_age: None,
                secure: false,
                http_only: true,
                same_site: Some(SameSite::Lax),
            },
            indirect: true,
            nocache: true,
        }
    }

    /// `Path=` (default `/`; `None` leaves it out).
    pub fn path(mut self, path: Option<&str>) -> Self {
        self.attrs.path = path.map(str::to_owned);
        self
    }

    /// `Domain=` (default: none).
    pub fn domain(mut self, domain: Option<&str>) -> Self {
        self.attrs.domain = domain.map(str::to_owned);
        self
    }

    /// `Max-Age=` (default: a session cookie).
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.attrs.max_age = max_age;
        self
    }

    /// `Secure` (default off: turn it on behind TLS).
    pub fn secure(mut self, on: bool) -> Self {
        self.attrs.secure = on;
        self
    }

    /// `HttpOnly` (default on).
    pub fn http_only(mut self, on: bool) -> Self {
        self.attrs.http_only = on;
        self
    }

    /// `SameSite=` (default `Lax`; `None` leaves the attribute out).
    pub fn same_site(mut self, same_site: Option<SameSite>) -> Self {
        self.attrs.same_site = same_site;
        self
    }

    /// HAProxy `indirect` (default on): the cookie is removed from requests before they
    /// reach the peer.
    pub fn indirect(mut self, on: bool) -> Self {
        self.indirect = on;
        self
    }

    /// HAProxy `nocache` (default on): a response that sets the cookie is marked
    /// `Cache-Control: private`, so a shared cache never hands one client's pin to another.
    pub fn nocache(mut self, on: bool) -> Self {
        self.nocache = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !token(&self.name) {
            return Err(ConfigError::InvalidCookie {
                reason: format!(
                    "cookie name `{}` must be letters, digits, `-` or `_`",
                    self.name
                ),
            });
        }
        if self.key.as_ref().is_some_and(|k| k.len() < MIN_SECRET) {
            return Err(ConfigError::InvalidCookie {
                reason: format!("the signing secret must be at least {MIN_SECRET} bytes"),
            });
        }
        for attr in [&self.attrs.path, &self.attrs.domain].into_iter().flatten() {
            if attr.bytes().any(|b| b.is_ascii_control() || b == b';') {
                return Err(ConfigError::InvalidCookie {
                    reason: format!("cookie attribute `{attr}` has `;` or a control character"),
                });
            }
        }
        Ok(())
    }

    /// Whether a route can be written in this cookie as it is.
    pub(crate) fn route_ok(route: &str) -> bool {
        !route.is_empty()
            && route
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    fn sign(&self, key: &[u8], route: &str, nonce: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(route.as_bytes());
        mac.update(b".");
        mac.update(nonce.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(32);
        for b in &tag[..16] {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    fn verify(&self, key: &[u8], route: &str, nonce: &str, tag: &str) -> bool {
        let Some(tag) = decode_hex(tag) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(route.as_bytes());
        mac.update(b".");
        mac.update(nonce.as_bytes());
        // Constant time, on the 128 leftmost bits we send.
        tag.len() == 16 && mac.verify_truncated_left(&tag).is_ok()
    }

    /// The first valid pin in the request: `(route, session key)`. A forged or tampered value
    /// is skipped, as if absent.
    pub(crate) fn read<'a>(&'a self, headers: &'a HeaderMap) -> Option<(&'a str, &'a str)> {
        cookie_values(headers, &self.name).find_map(|value| match &self.key {
            None => Self::route_ok(value).then_some((value, value)),
            Some(key) => {
                let mut parts = value.splitn(3, '.');
                let (route, nonce, tag) = (parts.next()?, parts.next()?, parts.next()?);
                let ok = Self::route_ok(route)
                    && !nonce.is_empty()
                    && self.verify(key, route, nonce, tag);
                ok.then_some((route, nonce))
            }
        })
    }

    /// Removes this cookie from the request's `Cookie` headers (`indirect`). Works on bytes,
    /// so a line with non-ASCII bytes loses our cookie too and keeps its other bytes.
    pub(crate) fn strip(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(COOKIE) {
            return;
        }
        let name = self.name.as_bytes();
        let kept: Vec<Vec<u8>> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| {
                let pairs: Vec<&[u8]> = v
                    .as_bytes()
                    .split(|&b| b == b';')
                    .map(<[u8]>::trim_ascii)
                    .filter(|p| !p.is_empty())
                    .filter(|p| {
                        let eq = p.iter().position(|&b| b == b'=');
                        eq.is_none_or(|eq| &p[..eq] != name)
                    })
                    .collect();
                (!pairs.is_empty()).then(|| pairs.join(&b"; "[..]))
            })
            .collect();
        headers.remove(COOKIE);
        for line in kept {
            // Pieces of a valid value joined by "; ": always valid.
            if let Ok(v) = HeaderValue::from_bytes(&line) {
                headers.append(COOKIE, v);
            }
        }
    }

    /// Adds the `Set-Cookie` pinning the client to `route`, keeping the session key `nonce`
    /// (or making a new one), and `Cache-Control: private` if `nocache`.
    pub(crate) fn set(&self, headers: &mut HeaderMap, route: &str, nonce: Option<&str>) {
        let value = match &self.key {
            None => route.to_owned(),
            Some(key) => {
                let fresh;
                let nonce = match nonce {
                    Some(n) => n,
                    None => {
                        fresh = format!("{:016x}", crate::policy::random::next_random());
                        &fresh
                    }
                };
                format!("{route}.{nonce}.{}", self.sign(key, route, nonce))
            }
        };
        let mut cookie = format!("{}={value}", self.name);
        self.attrs.append_to(&mut cookie);
        // Validated names, attributes and routes make a valid header value.
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, v);
        }
        if self.nocache {
            mark_private(headers);
        }
    }
}

/// `Cache-Control: private`, keeping other directives but dropping `public`.
fn mark_private(headers: &mut HeaderMap) {
    let existing: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty() && !d.eq_ignore_ascii_case("public"))
        .collect();
    if existing
        .iter()
        .any(|d| d.eq_ignore_ascii_case("private") || d.eq_ignore_ascii_case("no-store"))
    {
        return;
    }
    let mut directives = existing;
    directives.push("private".into());
    if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
        headers.insert(CACHE_CONTROL, v);
    }
}

/// Hex digits only: `u8::from_str_radix` would also take `+f` for `0f`, a second spelling
/// of a valid tag.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123";

    fn request(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, cookie.parse().unwrap());
        h
    }

    #[test]
    fn signed_round_trip_and_forgery() {
        let c = InsertCookie::new("SERVERID", Some(SECRET.to_vec()));
        let mut res = HeaderMap::new();
        c.set(&mut res, "node1", Some("00ff00ff00ff00ff"));
        let set = res[SET_COOKIE].to_str().unwrap().to_owned();
        assert!(set.starts_with("SERVERID=node1.00ff00ff00ff00ff."), "{set}");
        assert!(set.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{set}");
        assert_eq!(res[CACHE_CONTROL], "private");
        let value = set
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("SERVERID=");
        let req = request(&format!("a=1; SERVERID={value}"));
        assert_eq!(c.read(&req), Some(("node1", "00ff00ff00ff00ff")));
        // The client edits the route: the signature no longer matches.
        let forged = value.replacen("node1", "node2", 1);
        assert_eq!(c.read(&request(&format!("SERVERID={forged}"))), None);
        // Another secret does not verify either.
        let other = InsertCookie::new("SERVERID", Some(b"another-secret-0000".to_vec()));
        assert_eq!(other.read(&req), None);
        // Garbage.
        for bad in ["node1", "node1..", "node1.x.zz", "node1.x.", ".x.y"] {
            assert_eq!(c.read(&request(&format!("SERVERID={bad}"))), None, "{bad}");
        }
    }

    /// Found with `fuzz/fuzz_targets/affinity_cookie.rs`'s oracle: `u8::from_str_radix`
    /// took `+f` for `0f`, so a tag had a second spelling that verified.
    #[test]
    fn a_tag_has_one_spelling() {
        let c = InsertCookie::new("SERVERID", Some(SECRET.to_vec()));
        // A nonce whose tag has a byte below 0x10 (written `0x`): one in 16 bytes is.
        let (nonce, tag, at) = (0u32..)
            .find_map(|n| {
                let nonce = format!("{n:016x}");
                let tag = c.sign(SECRET, "node1", &nonce);
                let at = (0..tag.len()).step_by(2).find(|&i| &tag[i..=i] == "0")?;
                Some((nonce, tag, at))
            })
            .unwrap();
        let cookie = |tag: &str| request(&format!("SERVERID=node1.{nonce}.{tag}"));
        assert_eq!(c.read(&cookie(&tag)), Some(("node1", nonce.as_str())));
        assert_eq!(
            c.read(&cookie(&tag.to_uppercase())),
            Some(("node1", nonce.as_str()))
        );
        let plus = format!("{}+{}", &tag[..at], &tag[at + 1..]);
        assert_eq!(c.read(&cookie(&plus)), None, "{plus}");
        assert_eq!(decode_hex("+f"), None);
        assert_eq!(decode_hex("-1"), None);
        assert_eq!(decode_hex("0f"), Some(vec![15]));
    }

    #[test]
    fn unsigned_is_the_route() {
        let c = InsertCookie::new("SERVERID", None)
            .same_site(None)
            .path(None);
        let mut res = HeaderMap::new();
        c.set(&mut res, "s1", None);
        assert_eq!(res[SET_COOKIE], "SERVERID=s1; HttpOnly");
        assert_eq!(c.read(&request("SERVERID=s1")), Some(("s1", "s1")));
    }

    #[test]
    fn strip_removes_only_our_cookie() {
        let c = InsertCookie::new("SERVERID", None);
        let mut h = request("a=1; SERVERID=s1; b=2");
        h.append(COOKIE, "SERVERID=s2".parse().unwrap());
        c.strip(&mut h);
        let lines: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(lines, ["a=1; b=2"]);
    }

    /// Found by `fuzz/fuzz_targets/affinity_cookie.rs`: a `Cookie` line with a non-ASCII
    /// byte reached the peer with our cookie in it (and the byte replaced by U+FFFD).
    #[test]
    fn strip_works_on_lines_that_are_not_text() {
        let c = InsertCookie::new("SERVERID", None);
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_bytes(b"x=\xff; SERVERID=s1;y=2").unwrap(),
        );
        h.append(COOKIE, HeaderValue::from_bytes(b"SERVERID=s2").unwrap());
        c.strip(&mut h);
        let lines: Vec<_> = h.get_all(COOKIE).iter().map(|v| v.as_bytes()).collect();
        assert_eq!(lines, [&b"x=\xff; y=2"[..]]);
    }

    #[test]
    fn private_keeps_other_directives() {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, "public, max-age=60".parse().unwrap());
        mark_private(&mut h);
        assert_eq!(h[CACHE_CONTROL], "max-age=60, private");
    }

    #[test]
    fn validation() {
        assert!(InsertCookie::new("SERVERID", Some(b"short".to_vec()))
            .validate()
            .is_err());
        assert!(InsertCookie::new("bad name", None).validate().is_err());
        assert!(InsertCookie::new("ok", None)
            .path(Some("/a;b"))
            .validate()
            .is_err());
        assert!(InsertCookie::new("ok", Some(SECRET.to_vec()))
            .validate()
            .is_ok());
    }
}
