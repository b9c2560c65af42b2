//! Rewriting response header values: `proxy_redirect` for `Location` and `Refresh`,
//! `proxy_cookie_domain` and `proxy_cookie_path` for `Set-Cookie`.

/// One `proxy_redirect` rule.
#[derive(Debug, Clone)]
pub(crate) struct Redirect {
    pub(crate) from: RedirectFrom,
    pub(crate) to: Box<[u8]>,
}

/// What a redirect rule matches at the start of the URL.
#[derive(Debug, Clone)]
pub(crate) enum RedirectFrom {
    /// A fixed prefix, compared case-sensitively as in nginx.
    Fixed(Box<[u8]>),
    /// `http://<the peer that answered><path>` (`proxy_redirect default`).
    Peer(Box<[u8]>),
}

/// `Location`: the first rule whose prefix starts the value replaces that prefix.
pub(crate) fn location(value: &[u8], rules: &[Redirect], peer: Option<&str>) -> Option<Vec<u8>> {
    redirect_at(value, 0, rules, peer)
}

/// `Refresh` (`5; url=http://...`): the rules apply to what follows `url=` (any case).
pub(crate) fn refresh(value: &[u8], rules: &[Redirect], peer: Option<&str>) -> Option<Vec<u8>> {
    let at = value
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"url="))?;
    redirect_at(value, at + 4, rules, peer)
}

fn redirect_at(
    value: &[u8],
    start: usize,
    rules: &[Redirect],
    peer: Option<&str>,
) -> Option<Vec<u8>> {
    let url = &value[start..];
    rules.iter().find_map(|rule| {
        let matched = match &rule.from {
            RedirectFrom::Fixed(prefix) => url.starts_with(prefix).then_some(prefix.len()),
            RedirectFrom::Peer(path) => {
                let peer = peer?.as_bytes();
                let rest = url.strip_prefix(b"http://")?.strip_prefix(peer)?;
                rest.starts_with(path)
                    .then_some("http://".len() + peer.len() + path.len())
            }
        }?;
        let mut out = Vec::with_capacity(value.len() + rule.to.len());
        out.extend_from_slice(&value[..start]);
        out.extend_from_slice(&rule.to);
        out.extend_from_slice(&url[matched..]);
        Some(out)
    })
}

/// One `proxy_cookie_domain` or `proxy_cookie_path` rule.
#[derive(Debug, Clone)]
pub(crate) struct CookieRule {
    pub(crate) from: Box<[u8]>,
    pub(crate) to: Box<[u8]>,
}

/// `Set-Cookie`: rewrites the `Domain` attribute (equal to a rule's domain, ignoring ASCII
/// case and a leading dot, which is kept) and the `Path` attribute (starting with a rule's
/// prefix, case-sensitively). The first matching rule of each kind wins. A rewritten cookie
/// is written back as nginx writes it: `name=value; Attr=value; Flag`.
pub(crate) fn set_cookie(
    value: &[u8],
    domains: &[CookieRule],
    paths: &[CookieRule],
) -> Option<Vec<u8>> {
    let mut attrs: Vec<(&[u8], Option<Vec<u8>>)> = value
        .split(|&b| b == b';')
        .map(|attr| {
            let attr = trim_spaces(attr);
            match attr.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    trim_spaces(&attr[..eq]),
                    Some(trim_spaces(&attr[eq + 1..]).to_vec()),
                ),
                None => (attr, None),
            }
        })
        .collect();
    // A cookie without `=` is left alone (nginx).
    attrs.first()?.1.as_ref()?;
    let mut changed = false;
    for (key, value) in attrs.iter_mut().skip(1) {
        let Some(v) = value else { continue };
        let new = if key.eq_ignore_ascii_case(b"domain") {
            rewrite_domain(v, domains)
        } else if key.eq_ignore_ascii_case(b"path") {
            rewrite_path(v, paths)
        } else {
            None
        };
        if let Some(new) = new {
            *v = new;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() + 16);
    for (i, (key, value)) in attrs.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(key);
        if let Some(v) = value {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
    Some(out)
}

fn rewrite_domain(value: &[u8], rules: &[CookieRule]) -> Option<Vec<u8>> {
    let (dot, domain) = match value.strip_prefix(b".") {
        Some(rest) => (&b"."[..], rest),
        None => (&b""[..], value),
    };
    let rule = rules.iter().find(|r| r.from.eq_ignore_ascii_case(domain))?;
    Some([dot, &rule.to].concat())
}

fn rewrite_path(value: &[u8], rules: &[CookieRule]) -> Option<Vec<u8>> {
    let rule = rules.iter().find(|r| value.starts_with(&r.from))?;
    Some([&rule.to[..], &value[rule.from.len()..]].concat())
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(from: &str, to: &str) -> Redirect {
        Redirect {
            from: RedirectFrom::Fixed(from.as_bytes().into()),
            to: to.as_bytes().into(),
        }
    }

    fn peer(path: &str, to: &str) -> Redirect {
        Redirect {
            from: RedirectFrom::Peer(path.as_bytes().into()),
            to: to.as_bytes().into(),
        }
    }

    fn s(v: Option<Vec<u8>>) -> Option<String> {
        v.map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn location_prefixes() {
        let rules = [
            peer("/", "/"),
            fixed("http://tserver/", "https://shop.example/"),
        ];
        let loc = |v: &str| s(location(v.as_bytes(), &rules, Some("127.0.0.1:18081")));
        assert_eq!(
            loc("http://127.0.0.1:18081/login?x=1").as_deref(),
            Some("/login?x=1")
        );
        assert_eq!(loc("http://127.0.0.1:18081/").as_deref(), Some("/"));
        assert_eq!(
            loc("http://tserver/a").as_deref(),
            Some("https://shop.example/a")
        );
        // Other peers, other schemes, no slash, different case: untouched (nginx compares
        // case-sensitively).
        assert_eq!(loc("http://127.0.0.1:18082/login"), None);
        assert_eq!(loc("https://127.0.0.1:18081/login"), None);
        assert_eq!(loc("http://127.0.0.1:18081"), None);
        assert_eq!(loc("HTTP://tserver/a"), None);
        assert_eq!(loc("/relative"), None);
        // Without a SelectedPeer, peer rules never match.
        assert_eq!(s(location(b"http://127.0.0.1:18081/", &rules, None)), None);
    }

    #[test]
    fn peer_rule_with_paths() {
        let rules = [peer("/app/", "/shop/")];
        assert_eq!(
            s(location(
                b"http://10.0.0.5:8080/app/cart",
                &rules,
                Some("10.0.0.5:8080")
            ))
            .as_deref(),
            Some("/shop/cart")
        );
        assert_eq!(
            s(location(
                b"http://10.0.0.5:8080/other",
                &rules,
                Some("10.0.0.5:8080")
            )),
            None
        );
    }

    #[test]
    fn refresh_rewrites_after_url() {
        let rules = [peer("/", "/")];
        let r = |v: &str| s(refresh(v.as_bytes(), &rules, Some("10.0.0.5:8080")));
        assert_eq!(
            r("5; URL=http://10.0.0.5:8080/next").as_deref(),
            Some("5; URL=/next")
        );
        assert_eq!(
            r("0;url=http://10.0.0.5:8080/a").as_deref(),
            Some("0;url=/a")
        );
        assert_eq!(r("5"), None);
        assert_eq!(r("5; url=http://elsewhere/"), None);
    }

    fn rule(from: &str, to: &str) -> CookieRule {
        CookieRule {
            from: from.as_bytes().into(),
            to: to.as_bytes().into(),
        }
    }

    #[test]
    fn tomcat_session_cookie_path() {
        let paths = [rule("/app", "/")];
        let out = set_cookie(b"JSESSIONID=8F3A2B; Path=/app; HttpOnly", &[], &paths);
        assert_eq!(
            s(out).as_deref(),
            Some("JSESSIONID=8F3A2B; Path=/; HttpOnly")
        );
        let out = set_cookie(b"JSESSIONID=1;path=/app/x;Secure", &[], &paths);
        assert_eq!(s(out).as_deref(), Some("JSESSIONID=1; path=//x; Secure"));
        // Case-sensitive prefix, and cookies without a matching path are untouched.
        assert_eq!(set_cookie(b"a=1; Path=/APP", &[], &paths), None);
        assert_eq!(set_cookie(b"a=1; Path=/other", &[], &paths), None);
        assert_eq!(set_cookie(b"a=1", &[], &paths), None);
    }

    #[test]
    fn cookie_domain_ignores_case_and_keeps_the_dot() {
        let domains = [rule("tomcat.internal", "shop.example")];
        assert_eq!(
            s(set_cookie(
                b"id=1; Domain=.Tomcat.Internal; Path=/",
                &domains,
                &[]
            ))
            .as_deref(),
            Some("id=1; Domain=.shop.example; Path=/")
        );
        assert_eq!(
            s(set_cookie(b"id=1; domain=tomcat.internal", &domains, &[])).as_deref(),
            Some("id=1; domain=shop.example")
        );
        // Only an exact domain: no suffix match.
        assert_eq!(
            set_cookie(b"id=1; Domain=a.tomcat.internal", &domains, &[]),
            None
        );
    }

    #[test]
    fn first_rule_wins_and_both_attributes_change() {
        let domains = [rule("a.test", "b.test")];
        let paths = [rule("/app/", "/"), rule("/app", "/x")];
        assert_eq!(
            s(set_cookie(
                b"k=v ;  Path = /app/z ; Domain=a.test",
                &domains,
                &paths
            ))
            .as_deref(),
            Some("k=v; Path=/z; Domain=b.test")
        );
        assert_eq!(set_cookie(b"flag-only; Path=/app", &domains, &paths), None);
    }
}
