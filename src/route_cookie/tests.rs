use std::convert::Infallible;
use std::time::Duration;

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use tower::{service_fn, ServiceExt};

use super::*;

/// What the inner service saw.
#[derive(Debug, Default)]
struct Seen {
    cookies: Vec<String>,
    route: Option<String>,
}

/// Sends a request with `cookies` through `layer` to a service that answers `status` with
/// `set_cookies`; returns what the inner service saw and the response's `Set-Cookie`s.
async fn exchange(
    layer: &RouteCookieLayer,
    cookies: &[&str],
    status: StatusCode,
    set_cookies: &[&str],
) -> (Seen, Vec<String>) {
    let set_cookies: Vec<String> = set_cookies.iter().map(|s| s.to_string()).collect();
    let svc = layer.layer(service_fn(move |req: Request<()>| {
        let set_cookies = set_cookies.clone();
        async move {
            let seen = Seen {
                cookies: req
                    .headers()
                    .get_all(COOKIE)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect(),
                route: req
                    .extensions()
                    .get::<IncomingRoute>()
                    .map(|r| r.as_str().to_owned()),
            };
            let mut res = Response::new(seen);
            *res.status_mut() = status;
            for c in set_cookies {
                res.headers_mut().append(SET_COOKIE, c.parse().unwrap());
            }
            Ok::<_, Infallible>(res)
        }
    }));
    let mut req = Request::new(());
    for c in cookies {
        req.headers_mut().append(COOKIE, c.parse().unwrap());
    }
    let res = svc.oneshot(req).await.unwrap();
    let set = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (res.into_body(), set)
}

fn node2() -> RouteCookieLayer {
    RouteCookieLayer::new("id", "node2")
}

const OK: StatusCode = StatusCode::OK;

#[tokio::test]
async fn incoming_route_is_stripped_and_remembered() {
    let (seen, _) = exchange(&node2(), &["a=1; id=AbC-_9.node1; b=2"], OK, &[]).await;
    assert_eq!(seen.cookies, ["a=1; id=AbC-_9; b=2"]);
    assert_eq!(seen.route.as_deref(), Some("node1"));

    // The local route is stripped too.
    let (seen, _) = exchange(&node2(), &["id=X.node2"], OK, &[]).await;
    assert_eq!(seen.cookies, ["id=X"]);
    assert_eq!(seen.route.as_deref(), Some("node2"));
}

#[tokio::test]
async fn everything_after_the_first_separator_is_the_route() {
    let (seen, _) = exchange(&node2(), &["id=X.node1.extra"], OK, &[]).await;
    assert_eq!(seen.cookies, ["id=X"]);
    assert_eq!(seen.route.as_deref(), Some("node1.extra"));
    let (seen, set) = exchange(&node2(), &["id=X."], OK, &[]).await;
    assert_eq!(seen.cookies, ["id=X"]);
    assert_eq!(seen.route, None, "an empty route is no route");
    assert_eq!(set.len(), 1, "and is re-pinned: {set:?}");
}

#[tokio::test]
async fn other_cookies_and_headers_are_left_byte_for_byte() {
    let lines = ["a=1;b=2 ;  xid=Q.node1", "ID=Z.node1;idx=W.node1"];
    let (seen, set) = exchange(&node2(), &lines, OK, &[]).await;
    assert_eq!(seen.cookies, lines, "names are exact and case-sensitive");
    assert_eq!(seen.route, None);
    assert!(set.is_empty());
}

#[tokio::test]
async fn every_cookie_header_is_stripped_and_the_last_session_cookie_counts() {
    let lines = ["id=A.node1; x=1", "y=2", "id=B.node3"];
    let (seen, set) = exchange(&node2(), &lines, OK, &[]).await;
    assert_eq!(seen.cookies, ["id=A; x=1", "y=2", "id=B"]);
    // tower-cookies keeps the last cookie of a name, so that is the session's id.
    assert_eq!(seen.route.as_deref(), Some("node3"));
    assert_eq!(
        set,
        ["id=B.node2; Path=/; Secure; HttpOnly; SameSite=Strict"]
    );
}

#[tokio::test]
async fn quoted_values_keep_their_quotes() {
    let (seen, set) = exchange(&node2(), &["id=\"Q.node1\""], OK, &["id=\"N\"; Path=/"]).await;
    assert_eq!(seen.cookies, ["id=\"Q\""]);
    assert_eq!(set, ["id=\"N.node2\"; Path=/"]);
}

#[tokio::test]
async fn a_header_that_is_not_text_passes_through() {
    let layer = node2();
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(req.headers()[COOKIE].clone()))
    }));
    let raw = HeaderValue::from_bytes(b"id=\xffX.node1").unwrap();
    let mut req = Request::new(());
    req.headers_mut().insert(COOKIE, raw.clone());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.body(), &raw);
    assert!(res.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn outgoing_session_cookie_gets_the_local_route() {
    let tower_sessions_style =
        "id=Fn0Jx1B7Yq3c; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=3600";
    let (_, set) = exchange(
        &node2(),
        &[],
        OK,
        &["theme=dark; Path=/", tower_sessions_style, "idx=1"],
    )
    .await;
    assert_eq!(
        set,
        [
            "theme=dark; Path=/",
            "id=Fn0Jx1B7Yq3c.node2; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=3600",
            "idx=1",
        ]
    );
    let (_, set) = exchange(&node2(), &[], OK, &["id=bare"]).await;
    assert_eq!(set, ["id=bare.node2"], "no attributes at all");
}

#[tokio::test]
async fn a_route_the_app_wrote_is_replaced() {
    let (_, set) = exchange(&node2(), &[], OK, &["id=V.other; Path=/"]).await;
    assert_eq!(set, ["id=V.node2; Path=/"]);
}

#[tokio::test]
async fn removal_cookies_are_left_alone() {
    let removals = [
        // What tower-cookies writes for a deleted session.
        "id=; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=0; Expires=Fri, 24 Nov 2023 00:00:00 GMT",
        "id=old; Max-Age=0",
        "id=old; max-age=-1; Path=/",
        "id=\"\"; Path=/",
    ];
    for removal in removals {
        let (_, set) = exchange(&node2(), &["id=old.node1"], OK, &[removal]).await;
        assert_eq!(set, [removal], "untouched, and not re-pinned");
    }
}

#[tokio::test]
async fn a_session_from_another_node_is_repinned() {
    let (seen, set) = exchange(&node2(), &["id=S.node1"], OK, &[]).await;
    assert_eq!(seen.route.as_deref(), Some("node1"));
    assert_eq!(
        set,
        ["id=S.node2; Path=/; Secure; HttpOnly; SameSite=Strict"]
    );

    // A session cookie without a route (issued before the layer was there) pins nothing,
    // so it is pinned here.
    let (seen, set) = exchange(&node2(), &["id=S"], OK, &[]).await;
    assert_eq!(seen.route, None);
    assert_eq!(
        set,
        ["id=S.node2; Path=/; Secure; HttpOnly; SameSite=Strict"]
    );
}

#[tokio::test]
async fn own_sessions_and_requests_without_one_are_not_repinned() {
    let (_, set) = exchange(&node2(), &["id=S.node2"], OK, &[]).await;
    assert!(set.is_empty());
    let (_, set) = exchange(&node2(), &["other=1"], OK, &[]).await;
    assert!(set.is_empty());
    let (_, set) = exchange(&node2(), &[], OK, &[]).await;
    assert!(set.is_empty());
    let (_, set) = exchange(&node2(), &["id=.node1"], OK, &[]).await;
    assert!(set.is_empty(), "an empty id is not re-issued");
}

#[tokio::test]
async fn the_session_layers_cookie_wins_over_repinning() {
    // `cycle_id()` on a failed-over session: the new id gets the local route, and the old
    // one is not issued again.
    let (_, set) = exchange(
        &node2(),
        &["id=OLD.node1"],
        OK,
        &["id=NEW; HttpOnly; Path=/"],
    )
    .await;
    assert_eq!(set, ["id=NEW.node2; HttpOnly; Path=/"]);
}

#[tokio::test]
async fn server_errors_are_not_repinned_but_their_cookies_are_routed() {
    let (_, set) = exchange(
        &node2(),
        &["id=S.node1"],
        StatusCode::INTERNAL_SERVER_ERROR,
        &[],
    )
    .await;
    assert!(set.is_empty());
    let (_, set) = exchange(
        &node2(),
        &["id=S.node1"],
        StatusCode::SERVICE_UNAVAILABLE,
        &["id=T"],
    )
    .await;
    assert_eq!(set, ["id=T.node2"]);
    // 4xx answers are re-pinned like any other.
    let (_, set) = exchange(&node2(), &["id=S.node1"], StatusCode::NOT_FOUND, &[]).await;
    assert_eq!(set.len(), 1);
}

#[tokio::test]
async fn repinned_cookie_attributes_are_configurable() {
    let layer = node2()
        .path(Some("/app"))
        .domain(Some("example.com"))
        .max_age(Some(Duration::from_secs(1800)))
        .secure(false)
        .http_only(false)
        .same_site(Some(SameSite::Lax));
    let (_, set) = exchange(&layer, &["id=S.node1"], OK, &[]).await;
    assert_eq!(
        set,
        ["id=S.node2; Path=/app; Domain=example.com; Max-Age=1800; SameSite=Lax"]
    );
    let layer = node2().path(None).same_site(None).secure(false);
    let (_, set) = exchange(&layer, &["id=S.node1"], OK, &[]).await;
    assert_eq!(set, ["id=S.node2; HttpOnly"]);
    let layer = node2().path(Some("/a;b\r\n"));
    let (_, set) = exchange(&layer, &["id=S.node1"], OK, &[]).await;
    assert!(
        set[0].starts_with("id=S.node2; Path=/ab; "),
        "`;` and controls are dropped: {set:?}"
    );
}

#[tokio::test]
async fn another_separator() {
    let layer = RouteCookieLayer::new("JSESSIONID", "tomcat2").separator('!');
    let (seen, set) = exchange(
        &layer,
        &["JSESSIONID=ABC!tomcat1"],
        OK,
        &["JSESSIONID=DEF.x; Path=/app"],
    )
    .await;
    assert_eq!(seen.cookies, ["JSESSIONID=ABC"]);
    assert_eq!(seen.route.as_deref(), Some("tomcat1"));
    assert_eq!(set, ["JSESSIONID=DEF.x!tomcat2; Path=/app"]);
}

#[test]
fn invalid_names_and_routes_are_refused() {
    for name in ["", "a b", "a;b", "a=b", "s\u{e9}ance"] {
        let err = RouteCookieLayer::try_new(name, "node1").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidCookie { .. }), "{name}");
    }
    for route in ["", "node 1", "node.1", "n;1", "n\u{f6}d"] {
        let err = RouteCookieLayer::try_new("id", route).unwrap_err();
        assert!(err.to_string().contains("must be ASCII letters"), "{err}");
    }
    let layer = RouteCookieLayer::try_new("JSESSIONID", "Tomcat_2-b").unwrap();
    assert_eq!(layer.cookie_name(), "JSESSIONID");
    assert_eq!(layer.local_route(), "Tomcat_2-b");
}

#[test]
#[should_panic(expected = "RouteCookieLayer::new: invalid affinity cookie")]
fn new_panics_on_an_invalid_route() {
    let _ = RouteCookieLayer::new("id", "node 1");
}

#[test]
fn separators_that_could_be_in_a_route_or_break_a_cookie_are_refused() {
    for sep in ['a', '7', '-', '_', ';', ',', '"', '\\', ' ', '\u{e9}'] {
        let r = std::panic::catch_unwind(|| RouteCookieLayer::new("id", "n1").separator(sep));
        assert!(r.is_err(), "{sep:?}");
    }
    for sep in ['.', '!', '~', ':'] {
        let _ = RouteCookieLayer::new("id", "n1").separator(sep);
    }
}

#[tokio::test]
async fn errors_and_readiness_come_from_the_inner_service() {
    use tower::Service;
    let (mock, mut handle) = tower_test::mock::pair::<Request<()>, Response<()>>();
    let mut svc = node2().layer(mock);
    handle.allow(0);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending());
    handle.allow(1);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut req = Request::new(());
    req.headers_mut()
        .insert(COOKIE, "id=S.node1".parse().unwrap());
    let fut = svc.call(req);
    let (got, send) = handle.next_request().await.unwrap();
    assert_eq!(got.headers()[COOKIE], "id=S");
    send.send_error("backend gone");
    let err = fut.await.unwrap_err();
    assert_eq!(err.to_string(), "backend gone");
}

#[test]
fn layer_and_service_are_cheap_shared_and_debuggable() {
    fn assert_bounds<T: Clone + Send + Sync + 'static>() {}
    assert_bounds::<RouteCookieLayer>();
    assert_bounds::<
        RouteCookie<tower::util::BoxCloneSyncService<Request<()>, Response<()>, Infallible>>,
    >();
    let layer = node2().secure(false);
    let svc = layer.layer(());
    assert!(format!("{layer:?}").contains("local_route: \"node2\""));
    assert!(format!("{svc:?}").contains("secure: false"));
    let () = svc.into_inner();
}
