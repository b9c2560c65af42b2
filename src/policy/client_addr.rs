use std::net::{IpAddr, SocketAddr};

/// Where a policy finds the client's address in a request.
///
/// Implemented for closures `Fn(&Req) -> Option<IpAddr>`, so axum users can read
/// `ConnectInfo`:
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use axum::extract::ConnectInfo;
/// use tower_upstream::policy::IpHash;
///
/// let policy = IpHash::with_addr(|req: &http::Request<axum::body::Body>| {
///     req.extensions()
///         .get::<ConnectInfo<SocketAddr>>()
///         .map(|ConnectInfo(addr)| addr.ip())
/// });
/// # let _ = policy;
/// ```
pub trait ClientAddr<Req> {
    /// The client's address, or `None` when the request does not carry one.
    fn client_addr(&self, req: &Req) -> Option<IpAddr>;
}

impl<F, Req> ClientAddr<Req> for F
where
    F: Fn(&Req) -> Option<IpAddr>,
{
    fn client_addr(&self, req: &Req) -> Option<IpAddr> {
        self(req)
    }
}

/// The default [`ClientAddr`]: an [`IpAddr`] request extension if there is one (set it from a
/// trusted `X-Forwarded-For`, say), else the [`SocketAddr`] extension that a server puts on
/// each request it accepted.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_upstream::policy::{ClientAddr, ConnectAddr};
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert("192.0.2.7:5555".parse::<SocketAddr>().unwrap());
/// assert_eq!(ConnectAddr.client_addr(&req), Some("192.0.2.7".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectAddr;

impl<B> ClientAddr<http::Request<B>> for ConnectAddr {
    fn client_addr(&self, req: &http::Request<B>) -> Option<IpAddr> {
        let ext = req.extensions();
        ext.get::<IpAddr>()
            .copied()
            .or_else(|| ext.get::<SocketAddr>().map(SocketAddr::ip))
    }
}
