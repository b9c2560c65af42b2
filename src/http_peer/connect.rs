//! Opening a connection to a peer: resolve, then TCP connect with a timeout.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;

use super::conn::Conn;
use super::error::Error;

/// Where a peer's authority points: an address, or a name resolved at each connect (as
/// hyper-util's `HttpConnector` does, so DNS changes are seen by new connections).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

impl Target {
    pub(crate) fn new(authority: &Authority) -> Self {
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Self::Addr(SocketAddr::new(ip, port)),
            Err(_) => Self::Name(bare.to_owned(), port),
        }
    }

    async fn addrs(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            Self::Addr(addr) => Ok(vec![*addr]),
            Self::Name(host, port) => {
                let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), *port))
                    .await?
                    .collect();
                if addrs.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{host} has no address"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

/// Opens a connection to `target`. The timeout covers name resolution, and what is left of
/// it is shared between the addresses the name resolves to.
pub(crate) async fn connect(target: &Target, timeout: Duration) -> Result<Conn, Error> {
    tcp(target, timeout).await.map(Conn::new)
}

async fn tcp(target: &Target, timeout: Duration) -> Result<TcpStream, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let addrs = match tokio::time::timeout_at(deadline, target.addrs()).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => return Err(Error::connect(e.into())),
        Err(_) => return Err(Error::connect_timeout()),
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let each = left / u32::try_from(addrs.len()).unwrap_or(u32::MAX);
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(each, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Requests are written whole: no reason to wait for ACKs (nginx sets it too).
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                last = Some(Error::connect_timeout_from(e.into()));
            }
            Ok(Err(e)) => last = Some(Error::connect(e.into())),
            Err(_) => last = Some(Error::connect_timeout()),
        }
    }
    Err(last.expect("at least one address was tried"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |a: &'static str| Target::new(&Authority::from_static(a));
        assert!(
            matches!(t("127.0.0.1:8080"), Target::Addr(a) if a.to_string() == "127.0.0.1:8080")
        );
        assert!(matches!(t("[::1]:9"), Target::Addr(a) if a.to_string() == "[::1]:9"));
        assert!(matches!(t("[::1]"), Target::Addr(a) if a.port() == 80));
        assert!(matches!(t("backend.local"), Target::Name(h, 80) if h == "backend.local"));
        assert!(matches!(t("localhost:81"), Target::Name(h, 81) if h == "localhost"));
    }
}
