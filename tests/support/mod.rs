//! Shared helpers for the integration tests: real hyper servers on 127.0.0.1:0.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};

pub mod example;
pub mod killable;
pub mod ws;

/// A demo backend: answers every request with its name, counts requests and connections.
pub struct Backend {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
}

impl Backend {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Starts a backend called `name` on 127.0.0.1:0. Its body is `name`; it echoes the
/// `x-real-ip` and `host` headers it received as `x-seen-real-ip` / `x-seen-host`.
pub async fn spawn_backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (req_count, conn_count) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            conn_count.fetch_add(1, Ordering::SeqCst);
            let req_count = req_count.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                req_count.fetch_add(1, Ordering::SeqCst);
                let mut res = Response::builder().header("x-backend", name);
                for (from, to) in [("x-real-ip", "x-seen-real-ip"), ("host", "x-seen-host")] {
                    if let Some(v) = req.headers().get(from) {
                        res = res.header(to, v);
                    }
                }
                async move {
                    Ok::<_, Infallible>(
                        res.body(Full::new(Bytes::from_static(name.as_bytes())))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        requests,
        connections,
    }
}

/// Serves a tower service on 127.0.0.1:0 the way a gateway does: each request carries the
/// client's `SocketAddr` as an extension, and the service is cloned per request by
/// `TowerToHyperService`.
pub async fn serve<S, B>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, client)) = listener.accept().await else {
                return;
            };
            let svc = tower::ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(client);
                    req
                })
                .service(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    addr
}

/// One HTTP/1.1 connection from `from` (any 127/8 address) to `to`.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Conn {
    pub async fn open(from: IpAddr, to: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let stream = socket.connect(to).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    /// GETs `path`; returns the status, the `x-backend` header and the body.
    pub async fn get(&mut self, path: &str) -> (u16, String, String) {
        self.sender.ready().await.unwrap();
        let req = Request::get(path)
            .header("host", "gateway.test")
            .body(Empty::new())
            .unwrap();
        let res = self.sender.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let backend = res
            .headers()
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, backend, String::from_utf8_lossy(&body).into_owned())
    }
}

/// GET over a fresh connection from 127.0.0.1.
pub async fn get(to: SocketAddr, path: &str) -> (u16, String, String) {
    Conn::open("127.0.0.1".parse().unwrap(), to)
        .await
        .get(path)
        .await
}

/// Sends up to `most` GETs of `/` over one connection to `to`, one at a time; the number of
/// the first response that says `Connection: close` (after which the server must close the
/// connection), or `None`.
pub async fn closes_after(to: SocketAddr, most: usize) -> Option<usize> {
    let stream = tokio::net::TcpStream::connect(to).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for n in 1..=most {
        sender.ready().await.unwrap();
        let req = Request::get("/")
            .header("host", "gateway.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200, "request {n}");
        let close = res
            .headers()
            .get("connection")
            .is_some_and(|v| v == "close");
        res.into_body().collect().await.unwrap();
        if close {
            let ended = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
            ended
                .expect("the server closes the connection")
                .unwrap()
                .unwrap();
            return Some(n);
        }
    }
    None
}
