/// Extracts the key that [`ConsistentHash`] hashes, like nginx's `hash $key consistent`.
///
/// `hash` returns nginx's `ngx_crc32_long` of the key bytes (standard CRC-32), or `None` when
/// the request has no key or an empty one; such a request is balanced by round-robin, as nginx
/// does with an empty key. Ready-made keys are in [`key`]; closures returning
/// `Option<impl AsRef<[u8]>>` work too:
///
/// ```
/// use tower_upstream::policy::{ConsistentHash, HashKey};
///
/// let by_tenant = |req: &http::Request<()>| {
///     req.headers().get("x-tenant").map(|v| v.as_bytes().to_vec())
/// };
/// let req = http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(by_tenant.hash(&req), Some(crc32fast::hash(b"acme")));
/// let policy = ConsistentHash::new(by_tenant);
/// # let _ = policy;
/// ```
///
/// [`ConsistentHash`]: super::ConsistentHash
pub trait HashKey<Req> {
    /// CRC-32 of the request's key, or `None` when it has none.
    fn hash(&self, req: &Req) -> Option<u32>;
}

fn crc(bytes: &[u8]) -> Option<u32> {
    (!bytes.is_empty()).then(|| crc32fast::hash(bytes))
}

impl<F, Req, K> HashKey<Req> for F
where
    F: Fn(&Req) -> Option<K>,
    K: AsRef<[u8]>,
{
    fn hash(&self, req: &Req) -> Option<u32> {
        self(req).and_then(|k| crc(k.as_ref()))
    }
}

/// Ready-made [`HashKey`]s for the keys nginx users hash on most.
pub mod key {
    use http::header::{HeaderName, COOKIE};
    use http::Request;

    use super::{crc, HashKey};

    /// nginx `$request_uri`: the path and query as the client sent them.
    ///
    /// ```
    /// use tower_upstream::policy::{key, HashKey};
    ///
    /// let req = http::Request::get("/a/b?c=d").body(()).unwrap();
    /// assert_eq!(key::RequestUri.hash(&req), Some(crc32fast::hash(b"/a/b?c=d")));
    /// ```
    #[derive(Debug, Clone, Copy, Default)]
    pub struct RequestUri;

    impl<B> HashKey<Request<B>> for RequestUri {
        fn hash(&self, req: &Request<B>) -> Option<u32> {
            req.uri()
                .path_and_query()
                .and_then(|pq| crc(pq.as_str().as_bytes()))
        }
    }

    /// nginx `$http_<name>`: the value of a request header (the first one, if repeated).
    ///
    /// ```
    /// use tower_upstream::policy::{key, HashKey};
    ///
    /// let req = http::Request::builder().header("x-user", "42").body(()).unwrap();
    /// let key = key::Header::new(http::HeaderName::from_static("x-user"));
    /// assert_eq!(key.hash(&req), Some(crc32fast::hash(b"42")));
    /// ```
    #[derive(Debug, Clone)]
    pub struct Header(HeaderName);

    impl Header {
        /// The header called `name`.
        pub fn new(name: HeaderName) -> Self {
            Self(name)
        }
    }

    impl<B> HashKey<Request<B>> for Header {
        fn hash(&self, req: &Request<B>) -> Option<u32> {
            req.headers().get(&self.0).and_then(|v| crc(v.as_bytes()))
        }
    }

    /// nginx `$cookie_<name>`: the value of the first cookie with that name, found as nginx
    /// finds it (name compared ignoring ASCII case, spaces allowed around `=`, value up to the
    /// next `;`, pairs separated by `;` or `,`).
    ///
    /// ```
    /// use tower_upstream::policy::{key, HashKey};
    ///
    /// let req = http::Request::builder()
    ///     .header("cookie", "theme=dark; sid=abc123")
    ///     .body(())
    ///     .unwrap();
    /// assert_eq!(key::Cookie::new("sid").hash(&req), Some(crc32fast::hash(b"abc123")));
    /// ```
    #[derive(Debug, Clone)]
    pub struct Cookie(String);

    impl Cookie {
        /// The cookie called `name`.
        pub fn new(name: impl Into<String>) -> Self {
            Self(name.into())
        }
    }

    impl<B> HashKey<Request<B>> for Cookie {
        fn hash(&self, req: &Request<B>) -> Option<u32> {
            req.headers()
                .get_all(COOKIE)
                .iter()
                .find_map(|v| cookie_value(v.as_bytes(), self.0.as_bytes()))
                .and_then(crc)
        }
    }

    /// nginx's `ngx_http_parse_multi_header_lines` for one `Cookie` header line.
    fn cookie_value<'a>(mut line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        let spaces = |s: &'a [u8]| &s[s.iter().take_while(|&&b| b == b' ').count()..];
        while !line.is_empty() {
            if line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name) {
                if let Some(rest) = spaces(&line[name.len()..]).strip_prefix(b"=") {
                    let rest = spaces(rest);
                    let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
                    return Some(&rest[..end]);
                }
            }
            let next = line.iter().position(|&b| b == b';' || b == b',')?;
            line = spaces(&line[next + 1..]);
        }
        None
    }

    /// nginx `$arg_<name>`: the raw (not percent-decoded) value of the first query argument
    /// with that name.
    ///
    /// Like nginx's `ngx_http_arg`, the name is matched ignoring ASCII case: `?USER=7`
    /// has the key `7` too.
    ///
    /// ```
    /// use tower_upstream::policy::{key, HashKey};
    ///
    /// let req = http::Request::get("/p?x=1&user=7").body(()).unwrap();
    /// assert_eq!(key::Arg::new("user").hash(&req), Some(crc32fast::hash(b"7")));
    /// let req = http::Request::get("/p?User=7").body(()).unwrap();
    /// assert_eq!(key::Arg::new("user").hash(&req), Some(crc32fast::hash(b"7")));
    /// ```
    #[derive(Debug, Clone)]
    pub struct Arg(String);

    impl Arg {
        /// The query argument called `name`.
        pub fn new(name: impl Into<String>) -> Self {
            Self(name.into())
        }
    }

    impl<B> HashKey<Request<B>> for Arg {
        fn hash(&self, req: &Request<B>) -> Option<u32> {
            let name = self.0.as_bytes();
            req.uri()
                .query()?
                .as_bytes()
                .split(|&b| b == b'&')
                .find_map(|pair| {
                    // nginx compares the name with ngx_strlcasestrn: ASCII case-insensitive.
                    let (arg, rest) = pair.split_at_checked(name.len())?;
                    arg.eq_ignore_ascii_case(name)
                        .then_some(rest)?
                        .strip_prefix(b"=")
                })
                .and_then(crc)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn missing_or_empty_keys_are_none() {
            let req = Request::get("/p?user=&x=1")
                .header("cookie", "sid=; other=1")
                .body(())
                .unwrap();
            assert_eq!(Arg::new("user").hash(&req), None);
            assert_eq!(Arg::new("nope").hash(&req), None);
            assert_eq!(Cookie::new("sid").hash(&req), None);
            assert_eq!(Cookie::new("oth").hash(&req), None);
            assert_eq!(Header::new(HeaderName::from_static("x")).hash(&req), None);
        }

        #[test]
        fn arg_name_ignores_ascii_case_like_nginx() {
            // Checked against nginx's $arg_k in tests/nginx_balance.rs.
            let hash =
                |uri: &str, name: &str| Arg::new(name).hash(&Request::get(uri).body(()).unwrap());
            let seven = Some(crc32fast::hash(b"7"));
            assert_eq!(hash("/p?USER=7", "user"), seven);
            assert_eq!(hash("/p?x=1&User=7&user=8", "user"), seven);
            assert_eq!(hash("/p?user=7", "USER"), seven);
            // Still a whole-name match at an argument's start, followed by `=`.
            assert_eq!(hash("/p?xuser=1&users=2&user=7", "user"), seven);
            assert_eq!(hash("/p?user&x=user=1", "user"), None);
            assert_eq!(hash("/p?us", "user"), None);
        }

        #[test]
        fn cookie_parsed_like_nginx() {
            let cases: [(&str, Option<&[u8]>); 6] = [
                ("SID=Abc", Some(b"Abc")),
                ("a=1, sid = x y ; b=2", Some(b"x y ")),
                ("sidx=1; sid=2", Some(b"2")),
                ("a=1,sid=3", Some(b"3")),
                ("a=sid=4", None),
                ("sid", None),
            ];
            for (line, want) in cases {
                assert_eq!(cookie_value(line.as_bytes(), b"sid"), want, "{line}");
            }
        }

        #[test]
        fn cookie_across_headers() {
            let req = Request::get("/")
                .header("cookie", "a=1")
                .header("cookie", "sid=zz")
                .body(())
                .unwrap();
            assert_eq!(Cookie::new("sid").hash(&req), Some(crc32fast::hash(b"zz")));
        }
    }
}
