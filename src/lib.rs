//! nginx-style upstreams as Tower services:
//! `async fn(Request) -> Response` balanced over peers exactly as nginx would.
//!
//! # Overview
//!
//! `tower-upstream` gives a Rust gateway what nginx's `upstream` block gives an nginx one:
//!
//! - an [`Upstream`] service over a set of [`Peer`]s with nginx's `server` parameters
//!   (`weight`, `max_fails`, `fail_timeout`, `max_conns`, `backup`, `down`);
//! - selection [policies](policy) that reproduce nginx's choices: smooth weighted
//!   round-robin, `ip_hash`, `hash ... consistent`, `least_conn`, `random two least_conn`;
//! - a pooled keep-alive [`HttpPeer`] that sends requests to one backend
//!   with nginx's connect and read timeouts;
//! - [`Locations`]: nginx's `location` matching on nginx's normalised path, with
//!   [`error_page`](location::ErrorPage) and `proxy_pass` URI rewriting
//!   ([`location::ProxyPass`]).
//! - [proxy headers](proxy_headers) as nginx sets them: `proxy_set_header`, the realip
//!   module, hop-by-hop headers, WebSocket tunnels, `proxy_redirect` and `proxy_cookie_*`;
//! - [statistics](stats) per upstream and peer, a [status page](status_page) (HTML and
//!   JSON), an optional `metrics` exporter and one `tracing` span per request;
//! - [`config`]: a whole gateway (upstreams, locations, static files, error pages) as
//!   plain data, loaded from TOML with the `serde` feature or imported from an nginx
//!   configuration file ([`config::nginx`]), and built into one service.
//!
//! The `Upstream` is `Clone + Send + Sync`, never fails (failures become `502`/`504`
//! responses) and mounts in hyper or axum as it is.
//!
//! For Rust backends behind it, [`route_cookie::RouteCookieLayer`] writes the node's route
//! on a session cookie (Tomcat's `jvmRoute`), for [`affinity`] to route by.
//!
//! # Example: a hyper server
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//! use hyper_util::service::TowerToHyperService;
//! use tower_upstream::{http_peer::HttpPeer, Peer, Upstream};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let upstream = Upstream::builder()
//!     .peer(Peer::new("127.0.0.1:18081", HttpPeer::new("127.0.0.1:18081")?).weight(2))
//!     .peer(Peer::new("127.0.0.1:18082", HttpPeer::new("127.0.0.1:18082")?))
//!     .build()?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, client) = listener.accept().await?;
//!     let upstream = upstream.clone();
//!     // Tell the upstream who the client is (for ip_hash).
//!     let svc = tower::ServiceBuilder::new()
//!         .map_request(move |mut req: http::Request<_>| {
//!             req.extensions_mut().insert::<SocketAddr>(client);
//!             req
//!         })
//!         .service(upstream);
//!     tokio::spawn(async move {
//!         let _ = auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! # Example: axum
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower_upstream::{http_peer::HttpPeer, Peer, Upstream};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let upstream = Upstream::builder()
//!     .peer(Peer::new("127.0.0.1:18081", HttpPeer::new("127.0.0.1:18081")?))
//!     .peer(Peer::new("127.0.0.1:18082", HttpPeer::new("127.0.0.1:18082")?))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .nest_service("/api", upstream.clone())
//!     .fallback_service(upstream);
//! # let _ = app; Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `metrics` (off by default): `metrics::MetricsExporter` publishes every upstream's and
//!   peer's statistics through the [`metrics`](https://docs.rs/metrics) facade crate, for
//!   any exporter (Prometheus, StatsD, ...).
//! - `serde` (off by default): `Serialize` and `Deserialize` for the [`config`] model.
//!
//! Everything else is always compiled, including the [`status_page`].
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.85 (hyper-util's).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod affinity;
mod body;
pub mod config;
mod error;
pub mod http_peer;
pub mod location;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod outlier;
mod peer;
mod peer_set;
pub mod policy;
pub mod proxy_headers;
pub mod route_cookie;
pub mod stats;
pub mod status_page;
pub mod upstream;

pub use body::ResponseBody;
pub use error::ConfigError;
pub use http_peer::{HttpClient, HttpClientBuilder, HttpPeer};
pub use location::Locations;
pub use outlier::OutlierDetection;
pub use peer::Peer;
pub use peer_set::{PeerSet, PeerState, PeerStatus, Tried, Weights};
pub use upstream::{SelectedPeer, Upstream};

/// Alias for a type-erased error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest peer weight accepted.
pub const MAX_WEIGHT: u32 = 65_535;

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
