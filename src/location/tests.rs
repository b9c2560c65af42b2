//! Service-level tests of the location module: the router's own answers, internal and named
//! locations, configuration errors, `proxy_pass` rewriting and error pages.

use std::convert::Infallible;

use http::{Method, Request, Response, StatusCode};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::ConfigError;

type Svc = BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

/// Answers `name`, the request's method and URI, and the matched location's id.
fn says(name: &'static str) -> Svc {
    BoxCloneSyncService::new(service_fn(move |req: Request<String>| async move {
        let m = req.extensions().get::<MatchedLocation>().cloned();
        let id = m.map_or("-".to_owned(), |m| m.id().to_string());
        let body = format!("{name} {} {} #{id}", req.method(), req.uri());
        Ok::<_, Infallible>(Response::new(body))
    }))
}

fn status(code: u16, name: &'static str) -> Svc {
    BoxCloneSyncService::new(service_fn(move |_: Request<String>| async move {
        let mut res = Response::new(name.to_owned());
        *res.status_mut() = StatusCode::from_u16(code).unwrap();
        Ok::<_, Infallible>(res)
    }))
}

async fn send<S>(svc: &S, req: Request<String>) -> (StatusCode, String)
where
    S: tower::Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    let res = svc.clone().oneshot(req).await.unwrap();
    (res.status(), res.into_body())
}

fn get(path: &str) -> Request<String> {
    Request::get(path).body(String::new()).unwrap()
}

#[tokio::test]
async fn router_answers_400_404_and_500_itself() {
    let locations = Locations::builder()
        .prefix("/app/", says("app"))
        .named("@named", says("named"))
        .build()
        .unwrap();
    assert_eq!(send(&locations, get("/app/x")).await.1, "app GET /app/x #0");
    assert_eq!(
        send(&locations, get("/other")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&locations, get("/..")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&locations, get("/%00")).await.0,
        StatusCode::BAD_REQUEST
    );
    // A named location is not reachable by path.
    assert_eq!(
        send(&locations, get("/@named")).await.0,
        StatusCode::NOT_FOUND
    );
    let mut req = get("/whatever");
    req.extensions_mut()
        .insert(InternalRedirect::named("@named"));
    assert_eq!(send(&locations, req).await.1, "named GET /whatever #1");
    let mut req = get("/whatever");
    req.extensions_mut()
        .insert(InternalRedirect::named("@missing"));
    assert_eq!(
        send(&locations, req).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn internal_locations_answer_only_redirects() {
    let locations = Locations::builder()
        .prefix("/", says("root"))
        .location(Location::exact("/50x.html", says("page")).internal())
        .build()
        .unwrap();
    assert_eq!(
        send(&locations, get("/50x.html")).await.0,
        StatusCode::NOT_FOUND
    );
    let mut req = get("/50x.html");
    req.extensions_mut().insert(InternalRedirect::uri());
    assert_eq!(send(&locations, req).await.1, "page GET /50x.html #1");
}

#[test]
fn configuration_errors_name_the_location() {
    let err = Locations::builder()
        .regex(r"\.(php", says("x"))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidLocationRegex { location, .. } if location == r"location ~ \.(php"),
        "{err}"
    );
    let err = Locations::builder()
        .regex_nocase(r"(?=x)", says("x"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("location ~* (?=x)"), "{err}");

    let dup =
        |a: Location<Svc>, b: Location<Svc>| Locations::builder().location(a).location(b).build();
    for (a, b) in [
        (
            Location::prefix("/a", says("1")),
            Location::prefix("/a", says("2")),
        ),
        (
            Location::prefix("/a", says("1")),
            Location::prefix_no_regex("/a", says("2")),
        ),
        (
            Location::exact("/a", says("1")),
            Location::exact("/a", says("2")),
        ),
        (
            Location::named("@a", says("1")),
            Location::named("@a", says("2")),
        ),
    ] {
        let err = dup(a, b).unwrap_err();
        assert!(
            matches!(err, ConfigError::DuplicateLocation { .. }),
            "{err}"
        );
    }
    // Allowed by nginx: an exact and a prefix location with the same name, twin regexes.
    assert!(dup(
        Location::exact("/a", says("1")),
        Location::prefix("/a", says("2"))
    )
    .is_ok());
    assert!(dup(
        Location::regex("a", says("1")),
        Location::regex("a", says("2"))
    )
    .is_ok());
    // Duplicates at different levels are fine too.
    assert!(Locations::builder()
        .location(Location::prefix("/a/", says("1")).nest(Location::regex("x", says("2"))))
        .regex("x", says("3"))
        .build()
        .is_ok());

    let invalid = |l: Location<Svc>| match Locations::builder().location(l).build() {
        Err(ConfigError::InvalidLocation { location, reason }) => format!("{location}: {reason}"),
        other => panic!("expected InvalidLocation, got {other:?}"),
    };
    assert!(invalid(Location::named("fallback", says("x"))).contains("starts with `@`"));
    assert!(
        invalid(Location::exact("/a", says("x")).nest(Location::regex("b", says("y"))))
            .contains("exact location")
    );
    assert!(
        invalid(Location::named("@a", says("x")).nest(Location::regex("b", says("y"))))
            .contains("named location")
    );
    assert!(
        invalid(Location::prefix("/a/", says("x")).nest(Location::named("@b", says("y"))))
            .contains("top level")
    );
    let outside =
        invalid(Location::prefix("/a/", says("x")).nest(Location::prefix("/b/", says("y"))));
    assert!(outside.contains("outside"), "{outside}");
}

#[tokio::test]
async fn proxy_pass_replaces_the_prefix_and_keeps_the_query() {
    let upstream = says("tserver");
    let rewritten = || -> Svc {
        BoxCloneSyncService::new(ProxyPassLayer::new("/").unwrap().layer(upstream.clone()))
    };
    let locations = Locations::builder()
        .prefix("/app/", rewritten())
        .exact(
            "/exact",
            BoxCloneSyncService::new(ProxyPass::new(upstream.clone(), "/other").unwrap()),
        )
        .regex(r"\.jsp$", rewritten())
        .prefix("/", upstream.clone())
        .build()
        .unwrap();
    let cases = [
        ("/app/x?q=1", "tserver GET /x?q=1 #0"),
        ("/app/", "tserver GET / #0"),
        ("//app//a/../x", "tserver GET /x #0"),
        ("/app/a%20b?x=%20", "tserver GET /a%20b?x=%20 #0"),
        ("/app/%3F%23", "tserver GET /%3F%23 #0"),
        ("/app/%C3%A9", "tserver GET /%C3%A9 #0"),
        ("/exact?a", "tserver GET /other?a #1"),
        // A regex location: the URI is left alone, as nginx forbids a URI part there.
        ("/app/x.jsp", "tserver GET /app/x.jsp #2"),
        // Without the layer, the client's URI goes upstream unchanged.
        ("//x/../y?z", "tserver GET //x/../y?z #3"),
    ];
    for (path, want) in cases {
        assert_eq!(send(&locations, get(path)).await.1, want, "{path}");
    }
}

#[tokio::test]
async fn proxy_pass_keeps_scheme_and_authority() {
    let svc = ProxyPass::new(says("up"), "/v2/").unwrap();
    let locations = Locations::builder().prefix("/api/", svc).build().unwrap();
    let req = Request::get("http://example.com/api/users?id=7")
        .body(String::new())
        .unwrap();
    assert_eq!(
        send(&locations, req).await.1,
        "up GET http://example.com/v2/users?id=7 #0"
    );
}

#[tokio::test]
async fn error_pages_redirect_internally_to_uris_and_named_locations() {
    let locations = Locations::builder()
        .prefix("/", status(404, "not here"))
        .prefix("/down", status(502, "bad gateway"))
        .prefix("/teapot", status(418, "teapot"))
        .prefix("/moved", status(410, "gone"))
        .prefix("/fine", status(200, "fine"))
        .location(Location::exact("/50x.html", says("50x")).internal())
        .exact("/404.html", says("404"))
        .named("@fallback", says("fallback"))
        .build()
        .unwrap();
    let pages = ErrorPages::builder()
        .page([404], "/404.html")
        .page([500, 502, 503, 504], "/50x.html")
        .page_with([418], ErrorPageStatus::Page, "@fallback")
        .page_with(
            [410],
            ErrorPageStatus::Fixed(StatusCode::MOVED_PERMANENTLY),
            "https://example.com/new",
        )
        .build()
        .unwrap();
    let app = ErrorPageLayer::new(pages).layer(locations);

    let post = Request::post("/down/x?y=1")
        .body("payload".to_owned())
        .unwrap();
    assert_eq!(
        send(&app, post).await,
        (StatusCode::BAD_GATEWAY, "50x GET /50x.html #5".to_owned())
    );
    let head = Request::head("/down").body(String::new()).unwrap();
    assert_eq!(
        send(&app, head).await,
        (StatusCode::BAD_GATEWAY, "50x HEAD /50x.html #5".to_owned())
    );
    assert_eq!(
        send(&app, get("/nothing")).await,
        (StatusCode::NOT_FOUND, "404 GET /404.html #6".to_owned())
    );
    let delete = Request::delete("/teapot?x").body(String::new()).unwrap();
    assert_eq!(
        send(&app, delete).await,
        (StatusCode::OK, "fallback DELETE /teapot?x #7".to_owned())
    );
    let res = app.clone().oneshot(get("/moved")).await.unwrap();
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(res.headers()["location"], "https://example.com/new");
    assert_eq!(res.body(), "");
    assert_eq!(
        send(&app, get("/fine")).await,
        (StatusCode::OK, "fine".to_owned())
    );
    // The router's own 400 gets no page here (400 is not listed).
    assert_eq!(send(&app, get("/../x")).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_failing_error_page_keeps_its_own_status() {
    let locations = Locations::builder()
        .prefix("/", status(502, "down"))
        .build()
        .unwrap();
    let pages = ErrorPages::builder()
        .page([502], "/50x.html")
        .build()
        .unwrap();
    // "/50x.html" is served by `location /` too, which fails again: no second redirect.
    let app = ErrorPage::new(locations, pages);
    assert_eq!(
        send(&app, get("/x")).await,
        (StatusCode::BAD_GATEWAY, "down".to_owned())
    );
}

#[tokio::test]
async fn matched_location_extension_carries_captures() {
    let svc = BoxCloneSyncService::new(service_fn(|req: Request<String>| async move {
        let m = req.extensions().get::<MatchedLocation>().unwrap();
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let body = format!(
            "{m} | {:?} {:?} {:?} {} | {}",
            text(m.capture(1)),
            text(m.named_capture("file")),
            text(m.capture(3)),
            m.captures_len(),
            String::from_utf8_lossy(m.path()),
        );
        Ok::<_, Infallible>(Response::new(body))
    }));
    let locations: Locations<Svc> = Locations::builder()
        .regex(r"^/(\w+)/(?<file>[^/]+)\.php$", svc.clone())
        .location(Location::prefix("/", svc.clone()))
        .build()
        .unwrap();
    assert_eq!(
        send(&locations, get("/app/%69ndex.php")).await.1,
        r#"location ~ ^/(\w+)/(?<file>[^/]+)\.php$ | Some("app") Some("index") None 3 | /app/index.php"#
    );
    assert_eq!(
        send(&locations, get("/a/b")).await.1,
        "location / | None None None 0 | /a/b"
    );
    let debug = format!("{:?}", locations.find("/a/x.php").unwrap().unwrap());
    assert!(
        debug.contains(r#"captures: [Some("/a/x.php"), Some("a"), Some("x")]"#),
        "{debug}"
    );
}

#[tokio::test]
async fn method_and_body_reach_the_target() {
    let echo = BoxCloneSyncService::new(service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(format!("{} {}", req.method(), req.body())))
    }));
    let locations: Locations<Svc> = Locations::builder().prefix("/", echo).build().unwrap();
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/x")
        .body("data".to_owned())
        .unwrap();
    assert_eq!(send(&locations, req).await.1, "PUT data");
}

#[test]
fn services_are_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Locations<Svc>>();
    assert_traits::<ErrorPage<Locations<Svc>>>();
    assert_traits::<ProxyPass<Svc>>();
    let locations: Locations<Svc> = Locations::builder().prefix("/", says("x")).build().unwrap();
    assert_eq!(locations.len(), 1);
    assert!(!locations.is_empty());
    let m = locations.find("/y").unwrap().unwrap();
    let _: &Svc = locations.service(&m);
    assert!(locations.named("@none", "/").is_none());
}

#[tokio::test]
async fn upstreams_and_other_locations_are_targets() {
    use crate::upstream::ReplayBody;
    use crate::{Peer, SelectedPeer, Upstream};

    let peer = |name: &'static str| {
        service_fn(move |_: Request<ReplayBody<String>>| async move {
            Ok::<_, Infallible>(Response::new(name.to_owned()))
        })
    };
    let upstream = |name: &'static str| {
        Upstream::builder()
            .name(name)
            .peer(Peer::new(name, peer(name)))
            .build()
            .unwrap()
    };
    // No boxing: every target is an `Upstream` of the same type.
    let locations = Locations::builder()
        .prefix("/a/", upstream("a"))
        .regex(r"\.jsp$", upstream("tomcat"))
        .build()
        .unwrap();
    let res = locations.clone().oneshot(get("/a/x")).await.unwrap();
    assert_eq!(res.extensions().get::<SelectedPeer>().unwrap().name(), "a");
    let res = locations.clone().oneshot(get("/a/x.jsp")).await.unwrap();
    assert_eq!(
        res.extensions().get::<SelectedPeer>().unwrap().name(),
        "tomcat"
    );
    // The router's own answer uses the upstream body's `Default`: an empty synthetic body.
    let res = locations.clone().oneshot(get("/b")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.body().is_synthetic());

    // A `Locations` as the target of another.
    let inner: Svc = BoxCloneSyncService::new(
        Locations::builder()
            .regex(r"\.php$", says("inner-php"))
            .prefix("/app/", says("inner-app"))
            .build()
            .unwrap(),
    );
    let outer = Locations::builder()
        .prefix("/app/", inner)
        .prefix("/", says("outer"))
        .build()
        .unwrap();
    assert_eq!(
        send(&outer, get("/app/x.php")).await.1,
        "inner-php GET /app/x.php #0"
    );
    assert_eq!(
        send(&outer, get("/app/x")).await.1,
        "inner-app GET /app/x #1"
    );
    assert_eq!(send(&outer, get("/x.php")).await.1, "outer GET /x.php #1");
    // The inner router's 404 comes through.
    let lost = Locations::builder()
        .prefix(
            "/app/",
            BoxCloneSyncService::new(
                Locations::builder()
                    .exact("/app/only", says("only"))
                    .build()
                    .unwrap(),
            ),
        )
        .build()
        .unwrap();
    assert_eq!(
        send(&lost, get("/app/other")).await.0,
        StatusCode::NOT_FOUND
    );
}
