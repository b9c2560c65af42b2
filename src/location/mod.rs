//! [`Locations`]: nginx's `location` blocks as a `tower::Service` that routes each request to
//! one of many services.
//!
//! The location is chosen by nginx's rules:
//!
//! 1. an exact location (`location = /404.html`) equal to the path wins at once;
//! 2. otherwise the longest prefix location the path starts with is remembered; if it is a
//!    `^~` location, it wins (after its nested locations have been searched);
//! 3. otherwise the regex locations (`~` case-sensitive, `~*` case-insensitive) are tried in
//!    configuration order, and the first that matches wins;
//! 4. otherwise the remembered prefix wins; with none, the router answers `404 Not Found`.
//!
//! Nested locations ([`Location::nest`]) are searched as nginx searches them: once a prefix
//! location is the longest match, its own locations are searched by the same rules, before
//! the regexes of the level around it. Named locations (`@name`) are reached only by an
//! internal redirect ([`InternalRedirect`]), such as an [error page](ErrorPage).
//!
//! Every target is a service of the same type `S`: an [`Upstream`](crate::Upstream),
//! tower-http's `ServeDir`, a fixed response, or another `Locations`. To mix them, box them
//! as [`BoxCloneSyncService`](tower::util::BoxCloneSyncService) (which is `Clone + Send +
//! Sync`, as axum needs), with a common response body type.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, util::BoxCloneSyncService, ServiceExt};
//! use tower_upstream::location::{Location, Locations};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type Svc = BoxCloneSyncService<Request<String>, Response<String>, Infallible>;
//! let says = |name: &'static str| -> Svc {
//!     BoxCloneSyncService::new(service_fn(move |_: Request<String>| async move {
//!         Ok::<_, Infallible>(Response::new(name.to_owned()))
//!     }))
//! };
//! let locations = Locations::builder()
//!     .exact("/404.html", says("exact"))
//!     .prefix("/", says("root"))
//!     .prefix_no_regex("/static/", says("static"))
//!     .regex(r"\.(jsp|do)$", says("java"))
//!     .regex_nocase(r"\.(gif|jpg|png)$", says("images"))
//!     .location(Location::prefix("/app/", says("app")).nest(Location::regex(r"\.php$", says("app-php"))))
//!     .named("@fallback", says("fallback"))
//!     .build()?;
//!
//! let get = |path: &str| {
//!     let locations = locations.clone();
//!     let req = Request::get(path).body(String::new()).unwrap();
//!     async move {
//!         let res = locations.oneshot(req).await.unwrap();
//!         (res.status(), res.into_body())
//!     }
//! };
//! assert_eq!(get("/404.html").await.1, "exact");
//! assert_eq!(get("/static/logo.PNG").await.1, "static"); // ^~ wins over the regex
//! assert_eq!(get("/logo.PNG").await.1, "images"); // ~* ignores case
//! assert_eq!(get("/index.jsp").await.1, "java");
//! assert_eq!(get("/app/index.php").await.1, "app-php"); // nested
//! assert_eq!(get("/app/../index.jsp").await.1, "java"); // normalised first
//! assert_eq!(get("/readme").await.1, "root");
//! assert_eq!(get("/../etc/passwd").await.0, StatusCode::BAD_REQUEST);
//! # Ok(()) }
//! ```
//!
//! # The path that is matched
//!
//! Locations are matched against the path normalised as nginx normalises it for `$uri`:
//! every `%XX` escape decoded (`%2F` is a slash, `%2E` a dot, `%FF` the byte 0xFF),
//! repeated slashes merged ([`Builder::merge_slashes`]), `.` and `..` segments resolved.
//! `/admin/../secret`, `//secret` and `/%73ecret` all reach `location /secret`, and
//! `/%2e%2e/secret` cannot climb anywhere. A path nginx rejects gets `400 Bad Request`: a
//! `..` above the root, a NUL byte (`%00`), or a `%` without two hex digits. The request
//! itself is passed on unchanged (nginx's `proxy_pass` without a URI sends the client's URI
//! too); the normalised path, the location and the regex captures are in the
//! [`MatchedLocation`] request extension. [`ProxyPass`] rewrites the URI as `proxy_pass` with a URI part does.
//!
//! # Answers of the router itself
//!
//! `400 Bad Request` for a path nginx rejects, `404 Not Found` when no location matches
//! (nginx would serve its root directory) or a client reaches an
//! [`internal`](Location::internal) location, and `500 Internal Server Error` for a redirect
//! to an unknown named location. The body is `ResBody::default()`; wrap the router in an
//! [`ErrorPage`] for content.
//!
//! # Backpressure
//!
//! Like axum's router, `Locations` is always ready: it cannot know which service a request
//! goes to before it sees the request, and waiting until every target is ready (as
//! `tower::steer::Steer` does) would let one slow target hold up all the others. The
//! chosen target's readiness is driven inside the response future, with a clone of it
//! ([`tower::util::Oneshot`]); an error from its `poll_ready` comes out of that future.
//!
//! # Sharing
//!
//! Cloning a `Locations` is cheap (one `Arc`): the compiled locations and the services are
//! shared. Each request clones its target service.
//!
//! # Performance
//!
//! Prefix and exact locations of a level are kept in a radix tree, walked once per request
//! whatever their number; the regex locations of a level are tried in one pass of a
//! [`regex::bytes::RegexSet`], the lowest index winning. `cargo bench --bench locations`
//! measures one match among 10 to 1,000 locations.
//!
//! # Differences from nginx
//!
//! - Regexes use the `regex` crate, not PCRE: no look-around, no backreferences, no
//!   possessive quantifiers or `\Z` (a pattern using them is a [`ConfigError`] naming the
//!   location, at build time). Matching follows PCRE without UTF-8 mode, as nginx uses it:
//!   on bytes, `.` matches any byte except `\n`, classes and `~*` are ASCII-only, and `$`
//!   also matches before a final newline (`/x.php%0A` reaches `~ \.php$`). Patterns that
//!   consume a newline after `$` are not supported.
//! - Two named locations with the same name are an error (nginx silently uses one).
//! - With no location matching, the answer is `404` (nginx serves its root directory).
//! - nginx's automatic `301` to `/prefix/` for a location `/prefix/` with `proxy_pass` and
//!   a request to `/prefix` is not done.
//! - Prefix matching is case-sensitive, as nginx on Linux (nginx on macOS and Windows,
//!   whose file systems ignore case, matches prefixes ignoring case).
//! - Before the router sees a request, hyper rejects request targets that are not valid
//!   UTF-8 or hold bytes like `<`, `>` or a backtick (nginx accepts them).
//!
//! [`ConfigError`]: crate::ConfigError

mod builder;
mod config;
pub mod error_page;
mod future;
mod matched;
mod matcher;
mod normalize;
mod regexes;
mod rewrite;
mod service;
mod tree;

pub use builder::Builder;
pub use config::{Location, LocationKind};
pub use error_page::{ErrorPage, ErrorPageLayer, ErrorPageStatus, ErrorPages, ErrorPagesBuilder};
pub use future::ResponseFuture;
pub use matched::{InternalRedirect, MatchedLocation};
pub use normalize::InvalidPath;
pub(crate) use rewrite::escape_into;
pub use rewrite::{ProxyPass, ProxyPassLayer};
pub use service::Locations;

#[cfg(test)]
mod tests;
