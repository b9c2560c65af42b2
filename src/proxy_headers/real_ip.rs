//! [`RealIpLayer`]: the client address behind trusted proxies, like nginx's realip module
//! (`set_real_ip_from`, `real_ip_header`, `real_ip_recursive`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName};
use http::Request;
use tower::{Layer, Service};

use super::cidr::Cidr;
use super::forwarded;
use crate::policy::{ClientAddr, ConnectAddr};
use crate::ConfigError;

/// The header a [`RealIpLayer`] reads the client address from (nginx `real_ip_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RealIpHeader {
    /// `X-Real-IP` (nginx's default).
    XRealIp,
    /// `X-Forwarded-For`: a list, the nearest proxy's entry last.
    XForwardedFor,
    /// RFC 7239 `Forwarded`: the `for=` node of each element (not in nginx 1.22).
    Forwarded,
    /// Any other header holding an address or a list of them (`CF-Connecting-IP`, ...).
    Other(HeaderName),
}

/// Builder for [`RealIpLayer`], made with [`RealIpLayer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RealIpBuilder {
    trusted: Vec<String>,
    header: RealIpHeader,
    recursive: bool,
}

impl RealIpBuilder {
    /// nginx `set_real_ip_from`: trusts an address (`192.0.2.1`, `::1`) or a block
    /// (`10.0.0.0/8`, `2001:db8::/32`) to report the client address. Repeat for more.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RealIpLayer;
    /// let layer = RealIpLayer::builder().trust("10.0.0.0/8").trust("::1").build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn trust(mut self, cidr: &str) -> Self {
        self.trusted.push(cidr.to_owned());
        self
    }

    /// nginx `real_ip_header` (default: [`RealIpHeader::XRealIp`], as in nginx).
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::{RealIpHeader, RealIpLayer};
    /// let layer = RealIpLayer::builder()
    ///     .trust("10.0.0.0/8")
    ///     .header(RealIpHeader::XForwardedFor)
    ///     .build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn header(mut self, header: RealIpHeader) -> Self {
        self.header = header;
        self
    }

    /// nginx `real_ip_recursive` (default `false`): when `true`, trusted addresses are
    /// skipped from the right of the list, and the client is the last untrusted one; when
    /// `false`, the client is the last address in the list.
    ///
    /// ```
    /// # use tower_upstream::proxy_headers::RealIpLayer;
    /// let layer = RealIpLayer::builder().trust("10.0.0.0/8").recursive(true).build()?;
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidCidr`] for an entry of [`trust`](Self::trust) that is not an
    /// address or a block, or has bits set past its prefix (`10.0.0.1/8`).
    pub fn build(self) -> Result<RealIpLayer, ConfigError> {
        let trusted = self
            .trusted
            .iter()
            .map(|c| Cidr::parse(c))
            .collect::<Result<_, _>>()?;
        Ok(RealIpLayer {
            config: Arc::new(Config {
                trusted,
                header: self.header,
                recursive: self.recursive,
            }),
        })
    }
}

#[derive(Debug)]
struct Config {
    trusted: Box<[Cidr]>,
    header: RealIpHeader,
    recursive: bool,
}

/// Layer that finds the client address behind trusted proxies and puts it on the request as
/// an [`IpAddr`] extension, where [`ConnectAddr`] (so `IpHash`) and [`ProxyHeadersLayer`]'s
/// `$remote_addr` find it. See the [module docs](super) for an example.
///
/// The address the connection came from is read with [`ConnectAddr`] (an `IpAddr`
/// extension, else a `SocketAddr` one). Only when that address is trusted is the header
/// read; otherwise the request is left alone, so a client that is not a trusted proxy can
/// never choose its address. A malformed entry is never taken: the walk stops there and the
/// client is the last good address reached, as in nginx.
///
/// Cloning the layer, or its services, shares one configuration.
///
/// [`ProxyHeadersLayer`]: super::ProxyHeadersLayer
#[derive(Debug, Clone)]
pub struct RealIpLayer {
    config: Arc<Config>,
}

impl RealIpLayer {
    /// Starts a configuration that trusts nobody, reads `X-Real-IP` and is not recursive
    /// (nginx's defaults).
    pub fn builder() -> RealIpBuilder {
        RealIpBuilder {
            trusted: Vec::new(),
            header: RealIpHeader::XRealIp,
            recursive: false,
        }
    }

    /// The client address for a request that came from `remote` with `headers`.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_upstream::proxy_headers::{RealIpHeader, RealIpLayer};
    ///
    /// let layer = RealIpLayer::builder()
    ///     .trust("10.0.0.0/8")
    ///     .header(RealIpHeader::XForwardedFor)
    ///     .recursive(true)
    ///     .build()?;
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2".parse().unwrap());
    /// let from_proxy = layer.client_addr("10.0.0.1".parse().unwrap(), &headers);
    /// assert_eq!(from_proxy, "203.0.113.9".parse::<std::net::IpAddr>().unwrap());
    /// let from_client = layer.client_addr("198.51.100.1".parse().unwrap(), &headers);
    /// assert_eq!(from_client, "198.51.100.1".parse::<std::net::IpAddr>().unwrap());
    /// # Ok::<_, tower_upstream::ConfigError>(())
    /// ```
    pub fn client_addr(&self, remote: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.config.resolve(remote, headers).unwrap_or(remote)
    }
}

impl<S> Layer<S> for RealIpLayer {
    type Service = RealIp<S>;

    fn layer(&self, inner: S) -> RealIp<S> {
        RealIp {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

impl Config {
    fn trusts(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(addr))
    }

    /// The address from the header, or `None` to keep `remote` (nginx `NGX_DECLINED`).
    fn resolve(&self, remote: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.trusts(remote) {
            return None;
        }
        let entries = self.entries(headers);
        let mut current = None;
        for entry in entries.into_iter().rev() {
            // A malformed entry stops the walk; what was found so far stands.
            let Some(addr) = entry else { break };
            current = Some(addr);
            if !self.recursive || !self.trusts(addr) {
                break;
            }
        }
        current
    }

    /// The header's entries, left to right; `None` for one that is not an address.
    fn entries(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        let name = match &self.header {
            RealIpHeader::XRealIp => HeaderName::from_static("x-real-ip"),
            RealIpHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            RealIpHeader::Forwarded => http::header::FORWARDED,
            RealIpHeader::Other(name) => name.clone(),
        };
        let lines = headers.get_all(&name).iter();
        if self.header == RealIpHeader::Forwarded {
            return lines
                .flat_map(|v| forwarded::for_nodes(v.as_bytes()))
                .collect();
        }
        lines
            .flat_map(|v| v.as_bytes().split(|&b| b == b',' || b == b' '))
            .filter(|e| !e.is_empty())
            .map(parse_addr_port)
            .collect()
    }
}

/// An entry of `X-Forwarded-For` or `X-Real-IP` as nginx reads it: `addr`, `v4:port`, or
/// `[v6]:port`.
fn parse_addr_port(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    let (addr, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (v6, port) = rest.split_once("]:")?;
            (v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?, port)
        }
        None => {
            let (v4, port) = entry.split_once(':')?;
            (v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)?, port)
        }
    };
    let valid_port = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
    valid_port.then_some(addr)
}

/// Middleware that sets the client address from a trusted proxy's header; made by
/// [`RealIpLayer`].
#[derive(Clone)]
pub struct RealIp<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RealIp<S> {
    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RealIp<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealIp")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for RealIp<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(remote) = ConnectAddr.client_addr(&req) {
            if let Some(client) = self.config.resolve(remote, req.headers()) {
                tracing::trace!(%remote, %client, "client address from a trusted proxy");
                req.extensions_mut().insert(client);
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
#[path = "real_ip_tests.rs"]
mod tests;
