//! A ready-made HTTP peer: a pooled keep-alive HTTP/1.1 client bound to one backend.
//!
//! [`HttpPeer`] is a [`tower::Service`] that sends each request to one `host:port`, the way an
//! nginx `server` line in an `upstream` block does, so it can be used as a peer of the load
//! balancer. Peers are made from an [`HttpClient`], a cheap handle holding the settings and
//! the keep-alive pools (one per authority) that its peers share.
//!
//! For each request the peer sends the URI in origin form (`/x?y`; an absolute URI loses its
//! scheme and authority, a missing path becomes `/`), forces HTTP/1.1 and leaves the headers
//! alone. If there is no `Host` header, one is added from the peer's authority; set `Host`
//! yourself to forward the client's. Bodies stream both ways: the request body is written as
//! it comes, and the response body is a [`PeerBody`] read from the connection as the server
//! asks for it.
//!
//! # The connection
//!
//! The client is an HTTP/1.1 codec built for proxying, on [`httparse`] (the parser hyper
//! uses) and Tokio's `TcpStream`, with hyper's framing rules for what it sends. Each
//! connection has no task of its own: the request's future writes the request and reads the
//! response head, and the response body reads the rest. hyper's client drives each connection
//! from a spawned task and talks to it over channels, which was about a third of the gateway
//! example's user-space instructions per proxied request. A peer knows its one authority, so its idle connections are a
//! stack behind an uncontended lock, with no hashing of the authority. A connection returns to
//! the pool when its response body has been read to the end; a body dropped before its end
//! closes it.
//!
//! What the backend sends is held to RFC 9112: a response head must parse (at most 100 header
//! fields and 64 KiB; else [`Error::is_invalid_response`]), conflicting or malformed
//! `Content-Length` values are refused, a response with both `Transfer-Encoding` and
//! `Content-Length` is read as chunked, loses its `Content-Length` and closes the connection
//! afterwards, and a body without either ends when the backend closes. Interim responses
//! (`100 Continue`, `103 Early Hints`) are skipped. A `101 Switching Protocols` answer to a
//! request with an `Upgrade` header hands the connection over as a [`PeerUpgrade`] response
//! extension, which [`UpgradeLayer`](crate::proxy_headers::UpgradeLayer) tunnels.
//! Request trailers are not sent.
//!
//! | nginx | here |
//! |---|---|
//! | `proxy_connect_timeout` | [`HttpClientBuilder::connect_timeout`] |
//! | `proxy_read_timeout` (response head only) | [`HttpClientBuilder::read_timeout`] |
//! | `keepalive_timeout` in `upstream` | [`HttpClientBuilder::pool_idle_timeout`] |
//! | `keepalive` in `upstream` | [`HttpClientBuilder::pool_max_idle_per_host`] |
//! | `proxy_http_version 1.1` | always |
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::rt::TokioIo;
//! use tower::{Service, ServiceExt};
//! use tower_upstream::http_peer::HttpClient;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // A tiny backend on 127.0.0.1 that echoes the path and query.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((stream, _)) = listener.accept().await {
//!         let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
//!             let body = Full::new(Bytes::from(req.uri().to_string()));
//!             Ok::<_, Infallible>(Response::new(body))
//!         });
//!         let conn = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(TokioIo::new(stream), svc);
//!         tokio::spawn(conn);
//!     }
//! });
//!
//! let client = HttpClient::builder().build();
//! let mut peer = client.peer(&addr.to_string())?;
//!
//! let req = Request::get("/hello?name=world").body(Full::new(Bytes::new()))?;
//! let res = peer.ready().await?.call(req).await?;
//!
//! assert_eq!(res.status(), StatusCode::OK);
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "/hello?name=world");
//! # Ok(())
//! # }
//! ```
//!
//! # Timeouts
//!
//! - The **connect timeout** bounds opening the TCP connection. Reusing a pooled connection
//!   takes no connect.
//! - The **read timeout** starts when the request is handed to a connection, just before it is
//!   written, and ends when the response head arrives. It does not include the connect, and
//!   it does not cover the response body: wrap the body if you need that.
//! - The read timeout also runs while a streamed request body is still being sent: raise it
//!   for slow uploads. There is no separate send timeout (nginx's `proxy_send_timeout`).
//!
//! [`Error`] says which one fired: [`Error::is_timeout`] for both, [`Error::is_connect`] for the
//! connect timeout only. When the read timeout fires the connection is closed, not returned to
//! the pool.
//!
//! An idle connection that the backend closed just as it was picked is replaced by another
//! one transparently: always when the write fails before a byte of the request is sent (as
//! hyper-util's client does), and also when the connection ends without a byte of response
//! if the request is idempotent and was sent whole from one buffer (RFC 9112, section 9.3.1),
//! which is the race of a backend closing a kept-alive connection as the request leaves.
//!
//! # Clone
//!
//! Cloning an [`HttpClient`] or an [`HttpPeer`] is cheap (a few reference counts) and shares
//! the connection pool; no clone carries per-request state, and [`HttpPeer`] is always ready.
//! This is what hyper's `TowerToHyperService`, which clones the service for every request,
//! needs. Peers made with [`HttpPeer::new`] each get their own pool; make peers with
//! [`HttpClient::peer`] to share one.

mod body;
mod client;
mod conn;
mod connect;
mod decode;
mod encode;
mod error;
mod future;
mod peer;
mod pool;
mod upgraded;
mod uri;

pub use self::body::PeerBody;
pub use self::client::{HttpClient, HttpClientBuilder};
pub use self::error::{Error, InvalidAuthority};
pub use self::future::ResponseFuture;
pub use self::peer::HttpPeer;
pub use self::upgraded::{PeerUpgrade, Upgraded};
