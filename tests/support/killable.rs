//! A hyper backend on loopback that can be killed and restarted on the same port.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

type Handler = Arc<
    dyn Fn(
            Request<Incoming>,
        )
            -> Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, io::Error>> + Send>>
        + Send
        + Sync,
>;

/// A hyper backend whose handler is `f`. [`kill`](Self::kill) closes the listener and drops
/// every connection mid-flight, as a crashed process would; [`restart`](Self::restart)
/// listens on the same address again. A handler error closes its connection without an
/// answer.
#[derive(Clone)]
pub struct Killable {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<JoinSet<()>>>,
    handler: Handler,
}

impl Killable {
    pub async fn spawn<F, Fut>(f: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Full<Bytes>>, io::Error>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handler: Handler = Arc::new(move |req| Box::pin(f(req)));
        let this = Self {
            addr: listener.local_addr().unwrap(),
            tasks: Arc::default(),
            handler,
        };
        this.serve(listener);
        this
    }

    fn serve(&self, listener: TcpListener) {
        let conns = self.tasks.clone();
        let handler = self.handler.clone();
        self.tasks.lock().unwrap().spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let svc = hyper::service::service_fn(move |req| handler(req));
                let mut conns = conns.lock().unwrap();
                // Finished connections are kept until joined: let them go.
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }

    /// Closes the listener and every connection.
    pub fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    /// Kills the backend if it runs, waits until its tasks are gone, and listens on the
    /// same address again (retrying for up to 5 s while the port is still held).
    pub async fn restart(&self) {
        self.kill();
        let mut old = std::mem::take(&mut *self.tasks.lock().unwrap());
        old.shutdown().await;
        // A connection the listener accepted while it was being aborted.
        self.kill();
        let mut tries = 0;
        let listener = loop {
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            match socket.bind(self.addr).and_then(|()| socket.listen(1024)) {
                Ok(listener) => break listener,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}
