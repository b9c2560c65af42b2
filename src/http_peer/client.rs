//! The shared client and its builder.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::uri::Authority;
use http_body::Body;

use super::error::InvalidAuthority;
use super::pool::{Config, Pool};
use super::uri::parse_authority;
use super::HttpPeer;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

// ===== HttpClient =====

/// A pooled keep-alive HTTP/1.1 client that [`HttpPeer`]s are made from.
///
/// It is a cheap handle: every clone, and every peer made with [`peer`](HttpClient::peer),
/// shares its settings and its connection pools. Idle connections are kept per peer
/// authority: two peers made for the same authority share their connections.
///
/// See the [module docs](super) for an example.
pub struct HttpClient<B> {
    config: Arc<Config>,
    /// Looked up when a peer is made, never per request.
    pools: Arc<Mutex<HashMap<Authority, Weak<Pool>>>>,
    /// The request body type its peers send; `fn(B)` keeps the client `Send + Sync`.
    _body: PhantomData<fn(B)>,
}

impl HttpClient<()> {
    /// Returns a builder to configure the timeouts and the pool.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_upstream::http_peer::HttpClient;
    ///
    /// let client = HttpClient::builder()
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .build::<String>();
    /// # drop(client);
    /// ```
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::new()
    }
}

impl<B> HttpClient<B>
where
    B: Body + Send,
    B::Data: Send,
{
    /// Creates a client with the default settings of [`HttpClientBuilder`].
    pub fn new() -> Self {
        HttpClientBuilder::new().build()
    }
}

impl<B> HttpClient<B>
where
    B: Send + 'static,
{
    /// Returns a peer that sends requests to `authority` (`host[:port]`, port 80 by default) over
    /// this client's pool.
    ///
    /// `authority` must not carry a scheme, userinfo, path, query or fragment.
    ///
    /// ```
    /// use tower_upstream::http_peer::HttpClient;
    ///
    /// let client = HttpClient::<String>::new();
    /// assert!(client.peer("127.0.0.1:8080").is_ok());
    /// assert!(client.peer("[::1]:8080").is_ok());
    /// assert!(client.peer("backend.local").is_ok());
    /// assert!(client.peer("backend.local/api").is_err());
    /// ```
    pub fn peer(&self, authority: &str) -> Result<HttpPeer<B>, InvalidAuthority> {
        let authority = parse_authority(authority)?;
        Ok(HttpPeer::from_parts(self.clone(), self.pool(authority)))
    }

    /// The live pool for `authority`, or a new one.
    pub(crate) fn pool(&self, authority: Authority) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(&authority).and_then(Weak::upgrade) {
            return pool;
        }
        pools.retain(|_, pool| pool.strong_count() > 0);
        let pool = Arc::new(Pool::new(self.config.clone(), authority.clone()));
        pools.insert(authority, Arc::downgrade(&pool));
        pool
    }
}

impl<B> Default for HttpClient<B>
where
    B: Body + Send,
    B::Data: Send,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Clone for HttpClient<B> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            pools: self.pools.clone(),
            _body: PhantomData,
        }
    }
}

impl<B> fmt::Debug for HttpClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.config.connect_timeout)
            .field("read_timeout", &self.config.read_timeout)
            .field("pool_idle_timeout", &self.config.idle_timeout)
            .field("pool_max_idle_per_host", &self.config.max_idle)
            .finish_non_exhaustive()
    }
}

// ===== HttpClientBuilder =====

/// Builder for [`HttpClient`], made with [`HttpClient::builder`] or `Default`.
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpClientBuilder {
    connect_timeout: Duration,
    read_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

impl HttpClientBuilder {
    /// Returns a builder with the default settings.
    pub fn new() -> Self {
        Self {
            connect_timeout: DEFAULT_TIMEOUT,
            read_timeout: DEFAULT_TIMEOUT,
            pool_idle_timeout: DEFAULT_TIMEOUT,
            pool_max_idle_per_host: usize::MAX,
        }
    }

    /// Time allowed to open a TCP connection, like nginx's `proxy_connect_timeout`.
    /// Default: 60 s.
    ///
    /// When a host name resolves to several addresses, the time is split between them.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_upstream::http_peer::HttpClient;
    /// let builder = HttpClient::builder().connect_timeout(Duration::from_secs(1));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed between handing the request to a connection and receiving the response
    /// head, like nginx's `proxy_read_timeout` for the header. Default: 60 s.
    ///
    /// It does not cover the connect (see [`connect_timeout`](Self::connect_timeout)) nor the
    /// reading of the response body.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_upstream::http_peer::HttpClient;
    /// let builder = HttpClient::builder().read_timeout(Duration::from_secs(5));
    /// ```
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long an idle keep-alive connection stays in the pool, like the `keepalive_timeout`
    /// of an nginx `upstream` block. Default: 60 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_upstream::http_peer::HttpClient;
    /// let builder = HttpClient::builder().pool_idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Most idle connections kept per peer authority and thread, like the `keepalive`
    /// directive of an nginx `upstream` block (which counts per worker process). Default:
    /// unbounded; idle connections are still closed after
    /// [`pool_idle_timeout`](Self::pool_idle_timeout). `0` disables keep-alive.
    ///
    /// A connection is kept by the thread that used it last and handed out to requests on
    /// that thread, so that its I/O runs on the runtime that polls the request.
    ///
    /// ```
    /// # use tower_upstream::http_peer::HttpClient;
    /// let builder = HttpClient::builder().pool_max_idle_per_host(32);
    /// ```
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Builds the client. `TCP_NODELAY` is set on every connection.
    ///
    /// No runtime is needed to build it, but requests must run inside a Tokio runtime with the
    /// time and I/O drivers enabled.
    pub fn build<B>(self) -> HttpClient<B>
    where
        B: Body + Send,
        B::Data: Send,
    {
        HttpClient {
            config: Arc::new(Config {
                connect_timeout: self.connect_timeout,
                read_timeout: self.read_timeout,
                idle_timeout: self.pool_idle_timeout,
                max_idle: self.pool_max_idle_per_host,
            }),
            pools: Arc::default(),
            _body: PhantomData,
        }
    }
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}
