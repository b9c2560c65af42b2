//! Tomcat / mod_jk session routes: `JSESSIONID=<id>.<route>` in a cookie or a `;jsessionid=`
//! path parameter.

use http::header::COOKIE;
use http::HeaderMap;

/// Where a route is looked for first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RouteOrder {
    /// Cookies first, then the path parameter (mod_jk, Tomcat's default).
    #[default]
    CookieFirst,
    /// The path parameter first (mod_proxy_balancer's order).
    UrlFirst,
}

/// Where a session id was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Cookie,
    Url,
}

/// Every value of the cookies called `name`, in order, across all `Cookie` headers
/// (RFC 6265: pairs separated by `;`, optional spaces around them).
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then(|| v.trim_matches('"'))
        })
}

/// The value of the `;<name>=` path parameter: up to the next `;`, `?`, `/` or `#`.
pub(crate) fn path_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = path;
    while let Some(at) = rest.find(';') {
        rest = &rest[at + 1..];
        if let Some(value) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            let end = value.find([';', '?', '/', '#']).unwrap_or(value.len());
            return Some(&value[..end]);
        }
    }
    None
}

/// The route of a session id: the text after the first `separator`.
pub(crate) fn route_of(id: &str, separator: char) -> Option<&str> {
    id.split_once(separator)
        .map(|(_, route)| route)
        .filter(|r| !r.is_empty())
}

/// The session ids of a request, in the configured order, with where each was found.
pub(crate) fn session_ids<'a>(
    headers: &'a HeaderMap,
    path: &'a str,
    cookie: &'a str,
    param: Option<&'a str>,
    order: RouteOrder,
) -> impl Iterator<Item = (&'a str, Found)> + 'a {
    let cookies = cookie_values(headers, cookie).map(|v| (v, Found::Cookie));
    let url = param
        .and_then(|p| path_param(path, p))
        .map(|v| (v, Found::Url));
    let (before, after) = match order {
        RouteOrder::CookieFirst => (None, url),
        RouteOrder::UrlFirst => (url, None),
    };
    before.into_iter().chain(cookies).chain(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, c.parse().unwrap());
        }
        h
    }

    #[test]
    fn cookies_in_order_across_headers() {
        let h = headers(&["a=1; JSESSIONID=X.node1", "JSESSIONID=Y.node2;b=2"]);
        let v: Vec<_> = cookie_values(&h, "JSESSIONID").collect();
        assert_eq!(v, ["X.node1", "Y.node2"]);
        assert_eq!(
            cookie_values(&h, "jsessionid").count(),
            0,
            "names are case-sensitive"
        );
    }

    #[test]
    fn path_parameter() {
        assert_eq!(
            path_param("/app/x;jsessionid=AB.n1?y=1", "jsessionid"),
            Some("AB.n1")
        );
        assert_eq!(
            path_param("/app;jsessionid=AB.n1/more", "jsessionid"),
            Some("AB.n1")
        );
        assert_eq!(
            path_param("/app;other=1;jsessionid=Q.n2", "jsessionid"),
            Some("Q.n2")
        );
        assert_eq!(path_param("/app/jsessionid=Q.n2", "jsessionid"), None);
        assert_eq!(path_param("/app;jsessionidx=Q", "jsessionid"), None);
    }

    #[test]
    fn routes() {
        assert_eq!(route_of("ABC.tomcat1", '.'), Some("tomcat1"));
        assert_eq!(
            route_of("ABC.tomcat1.x", '.'),
            Some("tomcat1.x"),
            "after the first dot"
        );
        assert_eq!(route_of("ABC", '.'), None);
        assert_eq!(route_of("ABC.", '.'), None);
    }

    #[test]
    fn order() {
        let h = headers(&["JSESSIONID=C.n1"]);
        let path = "/x;jsessionid=U.n2";
        let ids: Vec<_> = session_ids(
            &h,
            path,
            "JSESSIONID",
            Some("jsessionid"),
            RouteOrder::CookieFirst,
        )
        .collect();
        assert_eq!(ids, [("C.n1", Found::Cookie), ("U.n2", Found::Url)]);
        let ids: Vec<_> = session_ids(
            &h,
            path,
            "JSESSIONID",
            Some("jsessionid"),
            RouteOrder::UrlFirst,
        )
        .collect();
        assert_eq!(ids, [("U.n2", Found::Url), ("C.n1", Found::Cookie)]);
    }
}
