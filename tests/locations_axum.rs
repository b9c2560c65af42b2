//! `Locations` (with `ErrorPage`) mounted as an axum `Router`'s fallback, with axum routers
//! and handlers as location targets, served by `axum::serve` on loopback.

mod support;

use std::convert::Infallible;

use axum::body::Body;
use axum::{routing::get, Router};
use http::{Request, Response, StatusCode};
use tower::service_fn;
use tower::util::BoxCloneSyncService;
use tower_upstream::location::{ErrorPage, ErrorPages, Location, Locations, MatchedLocation};

type Svc = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

fn boxed<S>(svc: S) -> Svc
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(svc)
}

fn fixed(status: StatusCode, body: &'static str) -> Svc {
    boxed(service_fn(move |_: Request<Body>| async move {
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = status;
        Ok::<_, Infallible>(res)
    }))
}

#[tokio::test]
async fn locations_as_an_axum_fallback() {
    // An axum app as the target of `location /api/`; it sees the original URI and the
    // regex captures of the location.
    let api = Router::new().fallback(|req: Request<Body>| async move {
        let m = req.extensions().get::<MatchedLocation>().unwrap();
        format!("api saw {} via {m}", req.uri())
    });
    let images = service_fn(|req: Request<Body>| async move {
        let m = req.extensions().get::<MatchedLocation>().unwrap();
        let ext = String::from_utf8_lossy(m.capture(1).unwrap()).into_owned();
        Ok::<_, Infallible>(Response::new(Body::from(format!("image .{ext}"))))
    });
    let locations = Locations::builder()
        .prefix("/", fixed(StatusCode::NOT_FOUND, "plain 404"))
        .prefix("/api/", boxed(api))
        .regex_nocase(r"\.(png|jpe?g)$", boxed(images))
        .location(Location::exact("/404.html", fixed(StatusCode::OK, "the 404 page")).internal())
        .build()
        .unwrap();
    let pages = ErrorPages::builder()
        .page([404], "/404.html")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback_service(ErrorPage::new(locations, pages));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(
        support::get(addr, "/health").await,
        (200, String::new(), "ok".into())
    );
    assert_eq!(
        support::get(addr, "/api//users/../items?id=7").await.2,
        "api saw /api//users/../items?id=7 via location /api/"
    );
    assert_eq!(support::get(addr, "/api/logo.PNG").await.2, "image .PNG");
    assert_eq!(
        support::get(addr, "/nothing").await,
        (404, String::new(), "the 404 page".into())
    );
    // The internal location answers only the error page's redirect.
    assert_eq!(
        support::get(addr, "/404.html").await,
        (404, String::new(), "the 404 page".into())
    );
    assert_eq!(support::get(addr, "/%2e%2e/x").await.0, 400);
}
