//! Authority validation and request URI rewriting.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;

use super::error::{InvalidAuthority, Reason};

/// Parses a `host[:port]` authority, refusing schemes, paths, userinfo and empty parts.
pub(crate) fn parse_authority(input: &str) -> Result<Authority, InvalidAuthority> {
    let fail = |reason| Err(InvalidAuthority::new(input, reason, None));
    if input.is_empty() {
        return fail(Reason::Empty);
    }
    if input.contains("://") {
        return fail(Reason::Scheme);
    }
    if input.contains(['/', '?', '#']) {
        return fail(Reason::Path);
    }
    if input.contains('@') {
        return fail(Reason::Userinfo);
    }
    let authority: Authority = input
        .parse()
        .map_err(|e| InvalidAuthority::new(input, Reason::Syntax, Some(e)))?;
    if authority.host().is_empty() {
        return fail(Reason::Empty);
    }
    // `host:` parses, with no port; so does `host:99999`, whose `port_u16` is `None`.
    let has_port_separator = match authority.as_str().rfind(']') {
        Some(end) => authority.as_str()[end..].contains(':'),
        None => authority.as_str().contains(':'),
    };
    if has_port_separator && authority.port_u16().is_none() {
        return fail(Reason::Port);
    }
    Ok(authority)
}

/// Builds `http://<authority><path-and-query>` from a request URI in origin, absolute or
/// asterisk form. A missing path becomes `/`; the query is kept.
pub(crate) fn upstream_uri(uri: &Uri, authority: &Authority) -> Result<Uri, http::Error> {
    let path_and_query = match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') || pq.as_str() == "*" => pq.clone(),
        // An absolute URI such as `http://a?x` has an empty path.
        Some(pq) => format!("/{}", pq.as_str()).parse::<PathAndQuery>()?,
        None => PathAndQuery::from_static("/"),
    };
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(uri: &str) -> String {
        let uri: Uri = uri.parse().unwrap();
        let authority = Authority::from_static("10.0.0.1:8080");
        upstream_uri(&uri, &authority).unwrap().to_string()
    }

    #[test]
    fn origin_form_keeps_path_and_query() {
        assert_eq!(rewrite("/"), "http://10.0.0.1:8080/");
        assert_eq!(rewrite("/a/b?x=1&y"), "http://10.0.0.1:8080/a/b?x=1&y");
    }

    #[test]
    fn absolute_form_replaces_scheme_and_authority() {
        assert_eq!(
            rewrite("https://user@example.com:9/p?q=%20"),
            "http://10.0.0.1:8080/p?q=%20"
        );
        assert_eq!(rewrite("http://example.com"), "http://10.0.0.1:8080/");
        assert_eq!(
            rewrite("http://example.com?x=1"),
            "http://10.0.0.1:8080/?x=1"
        );
    }

    #[test]
    fn missing_path_becomes_slash() {
        // Authority form (as in CONNECT) has no path at all.
        assert_eq!(rewrite("example.com:443"), "http://10.0.0.1:8080/");
    }

    #[test]
    fn asterisk_form_is_kept() {
        let uri = Uri::from_static("*");
        let out = upstream_uri(&uri, &Authority::from_static("h:1")).unwrap();
        assert_eq!(out.path_and_query().unwrap().as_str(), "*");
        assert_eq!(out.authority().unwrap().as_str(), "h:1");
    }

    #[test]
    fn valid_authorities() {
        for ok in [
            "127.0.0.1:18081",
            "[::1]:8080",
            "[::1]",
            "backend.local:80",
            "backend.local",
            "localhost:65535",
        ] {
            let authority = parse_authority(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(authority.as_str(), ok);
        }
    }

    #[test]
    fn invalid_authorities() {
        for (bad, reason) in [
            ("", Reason::Empty),
            (":80", Reason::Empty),
            ("http://backend:80", Reason::Scheme),
            ("backend:80/path", Reason::Path),
            ("backend:80?q", Reason::Path),
            ("backend#f", Reason::Path),
            ("user@backend:80", Reason::Userinfo),
            ("user:pw@backend", Reason::Userinfo),
            ("backend:", Reason::Port),
            ("backend:99999", Reason::Port),
            ("[::1]:", Reason::Port),
            ("back end", Reason::Syntax),
            ("[::1", Reason::Syntax),
            ("backend:http", Reason::Port),
        ] {
            match parse_authority(bad) {
                Ok(a) => panic!("{bad:?} accepted as {a}"),
                Err(e) => assert_eq!(e.reason(), reason, "{bad:?}: {e}"),
            }
        }
    }

    #[test]
    fn invalid_authority_display_is_lowercase_and_names_input() {
        let err = parse_authority("user@backend").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid upstream authority `user@backend`: userinfo is not allowed"
        );
    }
}
