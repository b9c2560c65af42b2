//! [`GatewayConfig::build`]: the model in, running services out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Request, StatusCode};
use tower::ServiceBuilder;

use super::model::{
    ErrorPageAnswer, ErrorPageConfig, GatewayConfig, LocationConfig, Modifier, PolicyConfig,
    ProxyPassConfig, UpstreamConfig,
};
use super::service::{
    boxed, BodyLimit, Gateway, Pages, Redirects, ReqBody, Return, StaticFiles, StatsFn, Svc,
    Unsupported,
};
use crate::location::{ErrorPageStatus, ErrorPages, Location, Locations, ProxyPass};
use crate::policy::{
    key, BuildIndex, ConsistentHash, IpHash, LeastConn, Policy, Random, RoundRobin,
};
use crate::proxy_headers::{ProxyHeadersLayer, UpgradeLayer};
use crate::upstream::{Builder as UpstreamBuilder, ReplayBody};
use crate::{ConfigError, HttpClient, HttpPeer, Peer, Upstream};

/// nginx's default `client_max_body_size`.
const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// nginx's default `proxy_connect_timeout` and `proxy_read_timeout`.
const PROXY_TIMEOUT: Duration = Duration::from_secs(60);

type PeerSvc = HttpPeer<ReplayBody<ReqBody>>;

/// The settings a location inherits from the one around it, and the server.
#[derive(Clone)]
struct Inherited<'a> {
    root: Option<&'a PathBuf>,
    index: Option<&'a Vec<String>>,
    headers: Option<&'a Vec<(String, String)>>,
    /// `None`: the server's pages.
    pages: Option<ErrorPages>,
    max_body: u64,
}

impl GatewayConfig {
    /// Builds the gateway: an [`Upstream`] of [`HttpPeer`]s for each upstream (sharing one
    /// connection pool, with nginx's 60 s connect and read timeouts), and the locations
    /// with their targets, inside nginx's `error_page` and `index` handling.
    ///
    /// Each location answers with, in nginx's order: its `return`; `502` for an
    /// `unsupported` handler; its upstream for `proxy_pass` (with [`UpgradeLayer`], a
    /// [`ProxyHeadersLayer`] of the `proxy_set_header` lines in force, `$proxy_host` the
    /// upstream's name, and [`ProxyPass`] for a URI part); else the files under its
    /// `root` (tower-http's `ServeDir`, on nginx's normalised path). A request body over
    /// `client_max_body_size` gets `413`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the item: [`DuplicateUpstream`], [`UnknownUpstream`] (a
    /// `proxy_pass` to an upstream that is not defined), [`InvalidPeerAddress`],
    /// [`UnsupportedHashKey`], [`InvalidReturn`], [`InvalidLocation`] (a location with
    /// nothing to answer with, or a `proxy_pass` URI part in a regex or named location), and
    /// the errors of the builders used: weights, duplicate peers, regexes, duplicate
    /// locations, headers, error pages.
    ///
    /// [`Upstream`]: crate::Upstream
    /// [`HttpPeer`]: crate::HttpPeer
    /// [`DuplicateUpstream`]: ConfigError::DuplicateUpstream
    /// [`UnknownUpstream`]: ConfigError::UnknownUpstream
    /// [`InvalidPeerAddress`]: ConfigError::InvalidPeerAddress
    /// [`UnsupportedHashKey`]: ConfigError::UnsupportedHashKey
    /// [`InvalidReturn`]: ConfigError::InvalidReturn
    /// [`InvalidLocation`]: ConfigError::InvalidLocation
    pub fn build(&self) -> Result<Gateway, ConfigError> {
        let client = HttpClient::builder()
            .connect_timeout(PROXY_TIMEOUT)
            .read_timeout(PROXY_TIMEOUT)
            .build::<ReplayBody<ReqBody>>();
        let mut upstreams = HashMap::new();
        let mut stats = Vec::new();
        for config in &self.upstreams {
            let (svc, stat) = upstream(config, &client)?;
            if upstreams.insert(config.name.as_str(), svc).is_some() {
                return Err(ConfigError::DuplicateUpstream {
                    upstream: config.name.clone(),
                });
            }
            stats.push(stat);
        }
        let server = Inherited {
            root: self.root.as_ref(),
            index: self.index.as_ref(),
            headers: self.proxy_set_header.as_ref(),
            pages: None,
            max_body: self.client_max_body_size.unwrap_or(DEFAULT_MAX_BODY),
        };
        let mut builder = Locations::builder();
        let mut pages = Vec::new();
        for config in &self.locations {
            builder = builder.location(self.location(config, &server, &upstreams, &mut pages)?);
        }
        let locations = builder.build()?;
        let server_pages = error_pages(&self.error_page)?;
        let by_location = pages.iter().any(Option::is_some).then(|| {
            pages
                .into_iter()
                .map(|p| p.unwrap_or_else(|| server_pages.clone()))
                .collect()
        });
        let pages = boxed(Pages {
            locations,
            server: server_pages,
            by_location,
        });
        Ok(Gateway::new(boxed(Redirects { inner: pages }), stats))
    }

    /// One location and its nested ones; `pages` gets each one's error pages, in the order
    /// [`Locations`] numbers them (depth first).
    fn location<'a>(
        &'a self,
        config: &'a LocationConfig,
        parent: &Inherited<'a>,
        upstreams: &HashMap<&str, Svc>,
        pages: &mut Vec<Option<ErrorPages>>,
    ) -> Result<Location<Svc>, ConfigError> {
        let name = config.display();
        let here = Inherited {
            root: config.root.as_ref().or(parent.root),
            index: config.index.as_ref().or(parent.index),
            headers: config.proxy_set_header.as_ref().or(parent.headers),
            pages: match &config.error_page {
                Some(lines) => Some(error_pages(lines)?),
                None => parent.pages.clone(),
            },
            max_body: config.client_max_body_size.unwrap_or(parent.max_body),
        };
        pages.push(here.pages.clone());
        let named = config.modifier.is_none() && config.pattern.starts_with('@');
        let is_static = matches!(
            config.modifier,
            None | Some(Modifier::Exact | Modifier::PrefixNoRegex)
        ) && !named;
        let target = if let Some(ret) = &config.return_ {
            let status = StatusCode::from_u16(ret.status)
                .ok()
                .filter(|s| s.as_u16() != 444)
                .ok_or_else(|| ConfigError::InvalidReturn {
                    location: name.clone(),
                    reason: format!("status {} (100 to 999, not 444)", ret.status),
                })?;
            boxed(Return {
                status,
                text: ret.text.as_deref().map(Into::into),
            })
        } else if let Some(handler) = &config.unsupported {
            boxed(Unsupported {
                location: name.as_str().into(),
                handler: handler.as_str().into(),
            })
        } else if let Some(pass) = &config.proxy_pass {
            self.proxy(&name, pass, &here, upstreams, is_static)?
        } else if let Some(root) = here.root {
            let index = here
                .index
                .cloned()
                .unwrap_or_else(|| vec!["index.html".to_owned()]);
            boxed(StaticFiles::new(root, index))
        } else {
            return Err(ConfigError::InvalidLocation {
                location: name,
                reason: "it has no proxy_pass, return or root (nginx's default root `html` \
                         is not assumed)"
                    .into(),
            });
        };
        let target = match here.max_body {
            0 => target,
            limit => boxed(BodyLimit {
                inner: target,
                limit,
            }),
        };
        let pattern = config.pattern.clone();
        let mut location = match config.modifier {
            None if named => Location::named(pattern, target),
            None => Location::prefix(pattern, target),
            Some(Modifier::Exact) => Location::exact(pattern, target),
            Some(Modifier::PrefixNoRegex) => Location::prefix_no_regex(pattern, target),
            Some(Modifier::Regex) => Location::regex(pattern, target),
            Some(Modifier::RegexNoCase) => Location::regex_nocase(pattern, target),
        };
        if config.internal {
            location = location.internal();
        }
        for child in &config.locations {
            location = location.nest(self.location(child, &here, upstreams, pages)?);
        }
        Ok(location)
    }

    /// `proxy_pass`: the upstream behind the proxy headers, and the URI rewrite.
    fn proxy(
        &self,
        location: &str,
        pass: &ProxyPassConfig,
        here: &Inherited<'_>,
        upstreams: &HashMap<&str, Svc>,
        is_static: bool,
    ) -> Result<Svc, ConfigError> {
        let upstream = upstreams
            .get(pass.upstream.as_str())
            .ok_or_else(|| ConfigError::UnknownUpstream {
                location: location.into(),
                upstream: pass.upstream.clone(),
            })?
            .clone();
        let mut headers = ProxyHeadersLayer::builder().proxy_host(&pass.upstream);
        if let Some(name) = self.server_name.first() {
            headers = headers.server_name(name);
        }
        for (name, value) in here.headers.into_iter().flatten() {
            headers = headers.set(name, value);
        }
        let headers = headers.build()?;
        let target = match &pass.uri {
            None => upstream,
            Some(_) if !is_static => {
                return Err(ConfigError::InvalidLocation {
                    location: location.into(),
                    reason: "proxy_pass cannot have a URI part in a regex or named location".into(),
                })
            }
            Some(uri) => boxed(ProxyPass::new(upstream, uri)?),
        };
        Ok(boxed(
            ServiceBuilder::new()
                .layer(UpgradeLayer::new())
                .layer(headers)
                .service(target),
        ))
    }
}

/// nginx's `error_page` lines as [`ErrorPages`].
fn error_pages(lines: &[ErrorPageConfig]) -> Result<ErrorPages, ConfigError> {
    let mut builder = ErrorPages::builder();
    for line in lines {
        let status = match line.answer {
            ErrorPageAnswer::Error => ErrorPageStatus::Error,
            ErrorPageAnswer::Page => ErrorPageStatus::Page,
            ErrorPageAnswer::Status(status) => {
                ErrorPageStatus::Fixed(StatusCode::from_u16(status).map_err(|_| {
                    ConfigError::InvalidErrorPage {
                        page: line.uri.clone(),
                        reason: format!("invalid status {status}"),
                    }
                })?)
            }
        };
        builder = builder.page_with(line.codes.iter().copied(), status, &line.uri);
    }
    builder.build()
}

/// `host[:port]` with nginx's default port 80.
pub(crate) fn with_default_port(addr: &str) -> String {
    let has_port = match addr.rsplit_once(':') {
        // `[::1]:80`, `host:80`; not a bare IPv6 address.
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        addr.to_owned()
    } else {
        format!("{addr}:80")
    }
}

/// One upstream, boxed, and a closure that reads its stats.
fn upstream(
    config: &UpstreamConfig,
    client: &HttpClient<ReplayBody<ReqBody>>,
) -> Result<(Svc, StatsFn), ConfigError> {
    let mut peers = Vec::with_capacity(config.peers.len());
    for p in &config.peers {
        let addr = with_default_port(&p.addr);
        let svc = client
            .peer(&addr)
            .map_err(|_| ConfigError::InvalidPeerAddress {
                upstream: config.name.clone(),
                peer: p.addr.clone(),
            })?;
        let mut peer = Peer::new(addr.as_str(), svc)
            .weight(p.weight)
            .max_fails(p.max_fails)
            .fail_timeout(p.fail_timeout)
            .max_conns(p.max_conns)
            .slow_start(p.slow_start);
        if p.backup {
            peer = peer.backup();
        }
        if p.down {
            peer = peer.down();
        }
        if let Some(route) = &p.route {
            peer = peer.route(route.as_str());
        }
        peers.push(peer);
    }
    let builder = Upstream::builder().name(config.name.as_str()).peers(peers);
    match &config.policy {
        PolicyConfig::RoundRobin => finish(builder.policy(RoundRobin::new())),
        PolicyConfig::IpHash => finish(builder.policy(IpHash::new())),
        PolicyConfig::LeastConn => finish(builder.policy(LeastConn::new())),
        PolicyConfig::Random => finish(builder.policy(Random::new())),
        PolicyConfig::RandomTwoLeastConn => finish(builder.policy(Random::two_least_conn())),
        PolicyConfig::ConsistentHash(text) => {
            let unsupported = || ConfigError::UnsupportedHashKey {
                upstream: config.name.clone(),
                key: text.clone(),
            };
            let var = text.strip_prefix('$').ok_or_else(unsupported)?;
            if var == "request_uri" {
                finish(builder.policy(ConsistentHash::new(key::RequestUri)))
            } else if let Some(name) = var.strip_prefix("http_") {
                let header = HeaderName::from_bytes(name.replace('_', "-").as_bytes())
                    .map_err(|_| unsupported())?;
                finish(builder.policy(ConsistentHash::new(key::Header::new(header))))
            } else if let Some(name) = var.strip_prefix("cookie_").filter(|n| !n.is_empty()) {
                finish(builder.policy(ConsistentHash::new(key::Cookie::new(name))))
            } else if let Some(name) = var.strip_prefix("arg_").filter(|n| !n.is_empty()) {
                finish(builder.policy(ConsistentHash::new(key::Arg::new(name))))
            } else {
                Err(unsupported())
            }
        }
    }
}

fn finish<P>(builder: UpstreamBuilder<PeerSvc, P>) -> Result<(Svc, StatsFn), ConfigError>
where
    P: BuildIndex + Policy<Request<ReqBody>> + Send + Sync + 'static,
    P::Key: Send,
{
    let upstream = builder.build()?;
    let reader = upstream.clone();
    Ok((boxed(upstream), Box::new(move || reader.stats())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_as_nginx() {
        assert_eq!(with_default_port("backend"), "backend:80");
        assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:80");
        assert_eq!(with_default_port("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(with_default_port("[::1]:8080"), "[::1]:8080");
        assert_eq!(with_default_port("[::1]"), "[::1]:80");
    }
}
