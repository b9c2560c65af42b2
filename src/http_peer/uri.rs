//! Authority validation and request URI rewriting.

use http::uri::{Authority, PathAndQuery};
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

/// The request URI as a backend wants it: origin form (`/path?query`). Absolute and
/// authority forms lose their scheme and authority, a missing path becomes `/`, the query is
/// kept and the asterisk form (`OPTIONS *`) stays. `None` when the URI is fine as it is, which
/// is the case for every request a server received in origin form: no allocation then.
pub(crate) fn origin_form(uri: &Uri) -> Result<Option<Uri>, http::Error> {
    let pq = uri.path_and_query().map(PathAndQuery::as_str);
    let in_origin_form = uri.scheme().is_none()
        && uri.authority().is_none()
        && pq.is_some_and(|pq| pq.starts_with('/') || pq == "*");
    if in_origin_form {
        return Ok(None);
    }
    let path_and_query = match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') || pq.as_str() == "*" => pq.clone(),
        // An absolute URI such as `http://a?x` has an empty path.
        Some(pq) => format!("/{}", pq.as_str()).parse::<PathAndQuery>()?,
        None => PathAndQuery::from_static("/"),
    };
    Ok(Some(Uri::from(path_and_query)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(uri: &str) -> String {
        let uri: Uri = uri.parse().unwrap();
        match origin_form(&uri).unwrap() {
            Some(new) => new.to_string(),
            None => format!("unchanged {uri}"),
        }
    }

    #[test]
    fn origin_form_is_kept_as_it_is() {
        assert_eq!(rewrite("/"), "unchanged /");
        assert_eq!(rewrite("/a/b?x=1&y"), "unchanged /a/b?x=1&y");
        assert_eq!(rewrite("*"), "unchanged *");
    }

    #[test]
    fn absolute_form_loses_scheme_and_authority() {
        assert_eq!(rewrite("https://user@example.com:9/p?q=%20"), "/p?q=%20");
        assert_eq!(rewrite("http://example.com"), "/");
        assert_eq!(rewrite("http://example.com?x=1"), "/?x=1");
    }

    #[test]
    fn missing_path_becomes_slash() {
        // Authority form (as in CONNECT) has no path at all.
        assert_eq!(rewrite("example.com:443"), "/");
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
