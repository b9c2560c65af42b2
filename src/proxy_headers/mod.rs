//! Proxy headers, the nginx way: `proxy_set_header`, the realip module, hop-by-hop
//! headers, WebSocket upgrades, `proxy_hide_header`, `proxy_redirect` and `proxy_cookie_*`.
//!
//! Four layers, each doing one of nginx's jobs. Put them around an [`Upstream`], outermost
//! first (`ServiceBuilder` runs top to bottom):
//!
//! | layer | nginx | what it does |
//! |---|---|---|
//! | [`RealIpLayer`] | `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` | finds the client address behind trusted proxies and stores it as an `IpAddr` request extension, which `$remote_addr` and [`IpHash`] read |
//! | [`UpgradeLayer`] | `proxy_set_header Upgrade $http_upgrade` + `Connection "upgrade"` | tunnels a WebSocket (any accepted upgrade) between client and peer |
//! | [`RewriteResponseLayer`] | `proxy_hide_header`, `proxy_redirect`, `proxy_cookie_domain`, `proxy_cookie_path` | rewrites the peer's response headers |
//! | [`ProxyHeadersLayer`] | `proxy_set_header` | sets request headers from nginx-style values (`$host`, `$remote_addr`, `$proxy_add_x_forwarded_for`, ...) or closures; removes hop-by-hop headers from requests and responses |
//!
//! The layers sit outside the [`Upstream`], so each request is rewritten once whatever
//! peers it tries, and the response layer can read the [`SelectedPeer`] that answered
//! (for `proxy_redirect default`). Nothing needs the peer before it is chosen: nginx's
//! `$proxy_host` is the `proxy_pass` host (the upstream's name), a fixed value set with
//! [`ProxyHeadersBuilder::proxy_host`]; left unset, the default `Host: $proxy_host` sends no
//! `Host` and [`HttpPeer`] writes the chosen peer's own address.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_upstream::proxy_headers::{
//!     ProxyHeadersLayer, RealIpHeader, RealIpLayer, RewriteResponseLayer, UpgradeLayer,
//! };
//! use tower_upstream::{upstream::ReplayBody, Peer, Upstream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A peer that answers with the headers it received, and redirects to its own address.
//! let peer = service_fn(|req: Request<ReplayBody<String>>| async move {
//!     let mut res = Response::new(String::new());
//!     *res.headers_mut() = req.headers().clone();
//!     res.headers_mut().insert("location", "http://10.0.0.5:8080/login".parse().unwrap());
//!     Ok::<_, Infallible>(res)
//! });
//! let upstream = Upstream::builder().peer(Peer::new("10.0.0.5:8080", peer)).build()?;
//!
//! let gateway = ServiceBuilder::new()
//!     .layer(
//!         RealIpLayer::builder()
//!             .trust("10.0.0.0/8")
//!             .header(RealIpHeader::XForwardedFor)
//!             .recursive(true)
//!             .build()?,
//!     )
//!     .layer(UpgradeLayer::new())
//!     .layer(RewriteResponseLayer::builder().redirect_default().build()?)
//!     .layer(
//!         ProxyHeadersLayer::builder()
//!             .set("Host", "$host")
//!             .set("X-Real-IP", "$remote_addr")
//!             .set("X-Forwarded-Proto", "$scheme")
//!             .build()?,
//!     )
//!     .service(upstream);
//!
//! // From a load balancer at 10.0.0.1, for the client 203.0.113.9.
//! let mut req = Request::get("/account")
//!     .header("host", "Shop.Example:443")
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
//!     .header("connection", "keep-alive, X-Secret")
//!     .header("x-secret", "s3cret")
//!     .body(String::new())?;
//! req.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 1], 50123)));
//!
//! let res = gateway.oneshot(req).await?;
//! let seen = res.headers();
//! assert_eq!(seen["host"], "shop.example");
//! assert_eq!(seen["x-real-ip"], "203.0.113.9");
//! assert_eq!(seen["x-forwarded-proto"], "http");
//! assert_eq!(seen["x-forwarded-for"], "6.6.6.6, 203.0.113.9"); // passed on untouched
//! assert!(!seen.contains_key("x-secret") && !seen.contains_key("connection"));
//! assert_eq!(seen["location"], "/login");
//! # Ok(()) }
//! ```
//!
//! A hyper server that tunnels WebSockets must serve connections with
//! `serve_connection_with_upgrades`; `examples/gateway/` does.
//!
//! # Request headers
//!
//! [`ProxyHeadersBuilder::set`] takes nginx's syntax. The defaults are nginx's:
//! `Host $proxy_host` and `Expect ""`; every other client header goes on unless it is
//! hop-by-hop or set. A value that comes out empty sends no header, so `set(name, "")`
//! removes one. Variables: `$host`, `$proxy_host`, `$remote_addr`,
//! `$proxy_add_x_forwarded_for`, `$scheme`, `$request_uri`, `$http_<name>`. Values may also
//! come from a closure ([`MakeHeaderValue`]), and [`x_forwarded`], [`forwarded`] (RFC 7239)
//! and [`via`] add the usual headers. Literal text is checked when the layer is built:
//! control characters are a [`ConfigError`], so no header can be split or smuggled, and a
//! computed value that would be invalid is never sent.
//!
//! # Client address
//!
//! `$remote_addr` is the address [`ConnectAddr`] reads: an `IpAddr` request extension,
//! else the `SocketAddr` one the server inserted, else the connection's client given to
//! [`ProxyHeaders::with_client_addr`] by a server that makes a service per connection.
//! [`RealIpLayer`] replaces it with the
//! address a trusted proxy reported, walking `X-Forwarded-For`, `X-Real-IP` or `Forwarded`
//! from the right. A client that is not trusted never changes it, whatever headers it sends,
//! and a malformed entry is never taken.
//!
//! # Hop-by-hop headers
//!
//! `Connection`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//! `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, and every header
//! that `Connection` names, are removed from requests and responses by [`ProxyHeaders`]
//! ([`remove_hop_by_hop_headers`] does it to any header map). hyper writes the framing
//! headers of each connection itself. The exception is an upgrade that [`UpgradeLayer`]
//! tunnels: `Upgrade` and `Connection: upgrade` go to the peer, and its `101` goes back.
//!
//! # Sharing
//!
//! Each layer keeps its configuration in an `Arc`: cloning a layer or a service (as hyper
//! and axum do for every request) copies a pointer.
//!
//! # Differences from nginx
//!
//! - Headers that `Connection` names, `Proxy-Connection`, `Proxy-Authorization` and
//!   `Trailer` are not forwarded (nginx 1.22 forwards them; it removes only `Connection`,
//!   `Keep-Alive`, `TE`, `Expect` and `Upgrade`).
//! - Peers get HTTP/1.1 over kept-alive connections and no `Connection` header; nginx's
//!   default is `proxy_http_version 1.0` with `Connection: close`.
//! - Peer responses lose their hop-by-hop headers too, including those their `Connection`
//!   names (nginx passes those on), and no header of the application is hidden by default
//!   (nginx hides `Date`, `Server`, `X-Pad` and `X-Accel-*`).
//! - A `Location` that `proxy_redirect` made relative stays relative; nginx's default
//!   `absolute_redirect on` makes it absolute again with its own host and port.
//! - WebSocket upgrades are tunnelled without any configuration beyond [`UpgradeLayer`]
//!   (nginx needs `proxy_http_version 1.1` and the `Upgrade`/`Connection` headers set).
//! - A request whose host is invalid gets `$host` = the server name instead of nginx's
//!   `400 Bad Request`; the layers never refuse a request.
//! - Setting the same header twice keeps the last value (nginx sends both).
//! - `proxy_set_header` for a hop-by-hop header with a value is a [`ConfigError`]; an empty
//!   value is accepted and changes nothing.
//! - `RealIpHeader::Forwarded` reads RFC 7239 `for=` nodes (nginx 1.22 cannot), and trusted
//!   blocks must not have bits set past their prefix (nginx masks them with a warning).
//! - `$http_<name>` joins the lines of `Cookie` with `"; "` and of `X-Forwarded-For` with
//!   `", "`, and takes the first line of any other header, as nginx 1.22 does.
//! - `proxy_redirect default` matches `http://<the peer that answered><path>`; nginx
//!   matches its `proxy_pass` URL (`http://tserver/`), which
//!   [`RewriteResponseBuilder::redirect`] can add. Regular expressions are not supported in
//!   redirect and cookie rules.
//!
//! [`Upstream`]: crate::Upstream
//! [`SelectedPeer`]: crate::SelectedPeer
//! [`HttpPeer`]: crate::HttpPeer
//! [`IpHash`]: crate::policy::IpHash
//! [`ConnectAddr`]: crate::policy::ConnectAddr
//! [`ConfigError`]: crate::ConfigError
//! [`x_forwarded`]: ProxyHeadersBuilder::x_forwarded
//! [`forwarded`]: ProxyHeadersBuilder::forwarded
//! [`via`]: ProxyHeadersBuilder::via

mod cidr;
mod forwarded;
pub(crate) mod hop_by_hop;
pub mod real_ip;
pub mod request;
pub mod response;
mod rewrite;
mod template;
pub mod upgrade;
mod value;

pub use hop_by_hop::remove_hop_by_hop_headers;
pub use real_ip::{RealIp, RealIpBuilder, RealIpHeader, RealIpLayer};
pub use request::{ProxyHeaders, ProxyHeadersBuilder, ProxyHeadersLayer};
pub use response::{RewriteResponse, RewriteResponseBuilder, RewriteResponseLayer};
pub use upgrade::{Upgrade, UpgradeLayer};
pub use value::MakeHeaderValue;
