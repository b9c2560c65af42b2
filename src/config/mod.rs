//! A gateway from configuration: upstreams and locations as plain data
//! ([`GatewayConfig`]), loaded from TOML (with the `serde` feature) or imported from an
//! nginx configuration file ([`nginx`]), and built into one service ([`Gateway`]).
//!
//! | nginx | model | built into |
//! |---|---|---|
//! | `upstream name { server ...; ip_hash; }` | [`UpstreamConfig`], [`PeerConfig`], [`PolicyConfig`] | an [`Upstream`] of [`HttpPeer`]s |
//! | `listen`, `server_name` | [`GatewayConfig::listen`], [`GatewayConfig::server_name`] | for the server loop; `$host` |
//! | `keepalive_requests` | [`GatewayConfig::keepalive_requests`] | for the server loop |
//! | `location [=|^~|~|~*] pattern { ... }` | [`LocationConfig`], [`Modifier`] | [`Locations`] |
//! | `proxy_pass http://name[/uri]` | [`ProxyPassConfig`] | the upstream, with [`ProxyPass`] for a URI |
//! | `proxy_set_header` | `proxy_set_header` | [`ProxyHeadersLayer`] (and [`UpgradeLayer`]) |
//! | `root`, `index` | `root`, `index` | tower-http's `ServeDir`, nginx's index redirect |
//! | `return` | [`ReturnConfig`] | a fixed answer |
//! | `error_page` | [`ErrorPageConfig`] | [`ErrorPage`] |
//! | `client_max_body_size` | `client_max_body_size` | `413` / a body limit |
//! | `fastcgi_pass` and other handlers | `unsupported` | `502 Bad Gateway` and a warning |
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::{BodyExt, Empty};
//! use tower::ServiceExt;
//! use tower_upstream::config::{
//!     GatewayConfig, LocationConfig, Modifier, PeerConfig, ReturnConfig, UpstreamConfig,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // upstream app { server 127.0.0.1:18081 weight=2; server 127.0.0.1:18082; }
//! // location / { proxy_pass http://app; }
//! // location = /health { return 200 ok; }
//! let mut config = GatewayConfig::new();
//! config.upstreams.push(UpstreamConfig::new(
//!     "app",
//!     [PeerConfig::new("127.0.0.1:18081").weight(2), PeerConfig::new("127.0.0.1:18082")],
//! ));
//! let mut app = LocationConfig::new(None, "/");
//! app.proxy_pass = Some("http://app".parse()?);
//! let mut health = LocationConfig::new(Some(Modifier::Exact), "/health");
//! health.return_ = Some(ReturnConfig::new(200, Some("ok".into())));
//! config.locations = vec![app, health];
//!
//! let gateway = config.build()?;
//! let res = gateway.oneshot(Request::get("/health").body(Empty::<Bytes>::new())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "ok");
//! # Ok(()) }
//! ```
//!
//! `examples/gateway/` serves a configuration: `--nginx-conf nginx.conf`, or
//! `--config gateway.toml` with the `serde` feature (`examples/gateway.toml` is the seed's
//! `nginx.conf` in TOML).
//!
//! # Serving
//!
//! [`Gateway`] is a `Service<Request<B>>` for any body, always ready and cheap to clone.
//! Give each request the client's `SocketAddr` as an extension (for `$remote_addr` and
//! `ip_hash`), and serve connections with hyper's `serve_connection_with_upgrades` to
//! tunnel WebSockets. The listen addresses are the caller's to bind.
//!
//! # Differences from nginx
//!
//! Those of the parts it is built from (see [`Upstream`], [`Locations`],
//! [`proxy_headers`](crate::proxy_headers) and [`ErrorPage`]), and:
//!
//! - One `server` block. Peers get HTTP/1.1 over pooled keep-alive connections, with
//!   nginx's default 60 s connect and read timeouts.
//! - Files: `ServeDir` guesses the content type from the extension (`mime.types` is not
//!   read), and answers ranges and conditional requests its own way. A relative `root` is
//!   relative to the working directory (nginx: to its prefix). A location with neither a
//!   `root` (its own or inherited) nor another handler is an error, where nginx would use
//!   its compiled-in `html` directory.
//! - A directory without its slash is redirected with a relative `Location`.
//! - `index` names are literal (no variables); the first one that exists is used, as in
//!   nginx, and a directory with none answers `403`.
//! - A body without `Content-Length` that grows past `client_max_body_size` breaks off, and
//!   the upstream answers `400` (nginx: `413`).
//! - `return` text is literal (no variables) and sent as `text/plain`; `return 444` (close
//!   the connection) is not supported.
//! - Error pages are chosen by the location the request's URI matches.
//!
//! [`Upstream`]: crate::Upstream
//! [`HttpPeer`]: crate::HttpPeer
//! [`Locations`]: crate::Locations
//! [`ProxyPass`]: crate::location::ProxyPass
//! [`ErrorPage`]: crate::location::ErrorPage
//! [`ProxyHeadersLayer`]: crate::proxy_headers::ProxyHeadersLayer
//! [`UpgradeLayer`]: crate::proxy_headers::UpgradeLayer

mod build;
mod model;
pub mod nginx;
mod service;
mod units;

pub use model::{
    ErrorPageAnswer, ErrorPageConfig, GatewayConfig, LocationConfig, Modifier, PeerConfig,
    PolicyConfig, ProxyPassConfig, ReturnConfig, UpstreamConfig,
};
pub use service::{Gateway, GatewayBody, ResponseFuture};

#[cfg(test)]
mod tests;
