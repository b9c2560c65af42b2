//! The directives: what each one maps to, in which context.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::parse::Directive;
use super::{Import, ImportError, Outcome, Report, ReportEntry};
use crate::config::build::with_default_port;
use crate::config::model::{
    ErrorPageAnswer, ErrorPageConfig, GatewayConfig, LocationConfig, Modifier, PeerConfig,
    PolicyConfig, ProxyPassConfig, ReturnConfig, UpstreamConfig,
};
use crate::config::units::{parse_size, parse_time};
use crate::location::{ErrorPageStatus, ErrorPages, Locations};
use crate::proxy_headers::ProxyHeadersLayer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Main,
    Events,
    Http,
    Server,
    Upstream,
    Location,
}

const PROCESS: &str = "not applicable: the gateway is one process";
const LOGGING: &str = "not applicable: the gateway logs through `tracing`";
const EVENTS: &str = "not applicable: connections are handled by Tokio";
const SOCKET_IO: &str = "not applicable: socket and file I/O tuning";
const BUFFERS: &str = "not applicable: bodies are streamed, and hyper limits request heads";
const HASHES: &str = "not applicable: nginx's hash table sizes";
const TIMEOUTS: &str = "not applied: client connection timeouts are the server loop's";
const GZIP: &str = "responses are not compressed";
const MIME: &str = "content types are guessed from file extensions (tower-http's ServeDir)";
const TOKENS: &str = "no Server header is added";
const HTTP11: &str = "peers always get HTTP/1.1";
const POOL: &str = "peer connections are always pooled and kept alive";
const ZONE: &str = "peer state is always shared by the whole gateway";
const HOP_BY_HOP: &str =
    "hop-by-hop headers are the gateway's: WebSocket upgrades are always tunnelled, and peer \
     connections kept alive";
const NOT_READ: &str = "not read: included files are not imported";
const IN_502: &str = "not applied: the location answers 502";
const UNSUPPORTED: &str = "unsupported directive";
const NOT_ALLOWED: &str = "not allowed here";

/// Content handlers of other protocols: their locations answer `502`.
const HANDLERS: [(&str, &str); 5] = [
    ("fastcgi_pass", "FastCGI"),
    ("uwsgi_pass", "uwsgi"),
    ("scgi_pass", "SCGI"),
    ("grpc_pass", "gRPC"),
    ("memcached_pass", "memcached"),
];

/// Directives of those handlers (`fastcgi_param`, `fastcgi_index`, ...).
fn handler_family(name: &str) -> Option<&'static str> {
    HANDLERS.iter().find_map(|&(pass, protocol)| {
        let prefix = pass.strip_suffix("pass").expect("ends with pass");
        name.starts_with(prefix).then_some(protocol)
    })
}

/// Directives ignored as not applicable, in the contexts nginx allows them.
fn not_applicable(ctx: Ctx, name: &str) -> Option<&'static str> {
    use Ctx::{Http, Location, Main, Server, Upstream};
    let any = matches!(ctx, Http | Server | Location);
    Some(match name {
        "user"
        | "worker_processes"
        | "worker_rlimit_nofile"
        | "worker_cpu_affinity"
        | "worker_priority"
        | "pid"
        | "daemon"
        | "master_process"
        | "pcre_jit"
        | "lock_file"
            if ctx == Main =>
        {
            PROCESS
        }
        "error_log" if ctx == Main || any => LOGGING,
        "access_log" | "log_not_found" | "log_subrequest" | "open_log_file_cache" if any => LOGGING,
        "log_format" if ctx == Http => LOGGING,
        "sendfile"
        | "tcp_nopush"
        | "tcp_nodelay"
        | "sendfile_max_chunk"
        | "aio"
        | "directio"
        | "output_buffers"
        | "postpone_output"
        | "open_file_cache"
        | "open_file_cache_valid"
        | "open_file_cache_min_uses"
        | "open_file_cache_errors"
            if any =>
        {
            SOCKET_IO
        }
        "client_header_buffer_size" | "large_client_header_buffers"
            if matches!(ctx, Http | Server) =>
        {
            BUFFERS
        }
        "client_body_buffer_size"
        | "proxy_buffering"
        | "proxy_buffer_size"
        | "proxy_buffers"
        | "proxy_busy_buffers_size"
        | "proxy_request_buffering"
            if any =>
        {
            BUFFERS
        }
        "server_names_hash_bucket_size"
        | "server_names_hash_max_size"
        | "variables_hash_bucket_size"
        | "variables_hash_max_size"
        | "map_hash_bucket_size"
        | "map_hash_max_size"
            if ctx == Http =>
        {
            HASHES
        }
        "types_hash_bucket_size"
        | "types_hash_max_size"
        | "proxy_headers_hash_bucket_size"
        | "proxy_headers_hash_max_size"
            if any =>
        {
            HASHES
        }
        "client_header_timeout" if matches!(ctx, Http | Server) => TIMEOUTS,
        "keepalive_timeout"
        | "keepalive_requests"
        | "send_timeout"
        | "client_body_timeout"
        | "lingering_close"
        | "lingering_time"
        | "lingering_timeout"
        | "reset_timedout_connection"
            if any =>
        {
            TIMEOUTS
        }
        _ if any && (name == "gzip" || name.starts_with("gzip_")) => GZIP,
        "default_type" if any => MIME,
        "server_tokens" if any => TOKENS,
        "proxy_http_version" if any => HTTP11,
        "keepalive" | "keepalive_timeout" | "keepalive_requests" | "keepalive_time"
            if ctx == Upstream =>
        {
            POOL
        }
        "zone" if ctx == Upstream => ZONE,
        _ => return None,
    })
}

/// Every directive name handled somewhere, for "not allowed here".
fn is_known(name: &str) -> bool {
    const MAPPED: [&str; 26] = [
        "http",
        "events",
        "server",
        "upstream",
        "location",
        "listen",
        "server_name",
        "root",
        "index",
        "proxy_set_header",
        "error_page",
        "client_max_body_size",
        "proxy_pass",
        "return",
        "internal",
        "ip_hash",
        "hash",
        "least_conn",
        "random",
        "include",
        "types",
        "worker_connections",
        "use",
        "multi_accept",
        "accept_mutex",
        "accept_mutex_delay",
    ];
    MAPPED.contains(&name)
        || handler_family(name).is_some()
        || [Ctx::Main, Ctx::Http, Ctx::Upstream]
            .into_iter()
            .any(|ctx| not_applicable(ctx, name).is_some())
}

/// Settings nginx inherits from level to level.
#[derive(Debug, Default)]
struct Settings {
    root: Option<PathBuf>,
    index: Option<Vec<String>>,
    headers: Option<Vec<(String, String)>>,
    error_page: Option<Vec<ErrorPageConfig>>,
    max_body: Option<u64>,
    /// `keepalive_requests`: in `http` and `server` only (a `location`'s is ignored).
    keepalive_requests: Option<u32>,
}

#[derive(Default)]
struct Importer {
    report: Report,
    http: Option<Settings>,
    server: Option<(GatewayConfig, Settings)>,
    upstreams: Vec<UpstreamConfig>,
    upstream_names: HashSet<String>,
    /// A `server` directive was seen, even a rejected one.
    server_seen: bool,
}

pub(super) fn import(directives: &[Directive]) -> Result<Import, ImportError> {
    let mut imp = Importer::default();
    imp.main(directives);
    let config = imp.finish(directives);
    imp.report.sort();
    if imp.report.with_outcome(Outcome::Rejected).next().is_some() {
        return Err(ImportError::Rejected { report: imp.report });
    }
    Ok(Import {
        config: config.expect("a config when nothing was rejected"),
        report: imp.report,
    })
}

impl Importer {
    fn note(&mut self, d: &Directive, outcome: Outcome, message: impl Into<String>) {
        self.report
            .push(ReportEntry::new(d.line, d.name.as_str(), outcome, message));
    }

    fn reject(&mut self, d: &Directive, message: impl Into<String>) {
        self.note(d, Outcome::Rejected, message);
    }

    /// Rejects `d` unless it has `min..=max` arguments and no block.
    fn leaf(&mut self, d: &Directive, min: usize, max: usize) -> bool {
        if d.block.is_some() {
            self.reject(d, "has no block (\"{\")");
            false
        } else if d.args.len() < min || d.args.len() > max {
            self.reject(d, "invalid number of arguments");
            false
        } else {
            true
        }
    }

    /// The block of `d`, unless it has none or more than `max_args` arguments.
    fn block<'d>(&mut self, d: &'d Directive, min: usize, max: usize) -> Option<&'d [Directive]> {
        match &d.block {
            None => {
                self.reject(d, "has no opening \"{\"");
                None
            }
            Some(_) if d.args.len() < min || d.args.len() > max => {
                self.reject(d, "invalid number of arguments");
                None
            }
            Some(block) => Some(block),
        }
    }

    /// Directives every context shares: not applicable ones, `include`, and the rest
    /// rejected. `handler`: the location answers 502 because of this handler.
    fn other(&mut self, ctx: Ctx, d: &Directive, handler: Option<&str>) {
        if let Some(reason) = not_applicable(ctx, &d.name) {
            if d.block.is_some() {
                self.reject(d, "has no block (\"{\")");
            } else {
                self.note(d, Outcome::Ignored, reason);
            }
        } else if handler.is_some() && (d.name == "include" || handler_family(&d.name).is_some()) {
            self.note(d, Outcome::Unsupported, IN_502);
        } else if let Some(protocol) = handler_family(&d.name).filter(|_| ctx != Ctx::Main) {
            self.note(
                d,
                Outcome::Unsupported,
                format!("not applied: {protocol} is not supported"),
            );
        } else if d.name == "include" {
            if self.leaf(d, 1, 1) {
                if d.args[0].ends_with("mime.types") {
                    self.note(d, Outcome::Ignored, MIME);
                } else {
                    self.note(d, Outcome::Unsupported, NOT_READ);
                }
            }
        } else if d.name == "types" && matches!(ctx, Ctx::Http | Ctx::Server | Ctx::Location) {
            self.note(d, Outcome::Ignored, MIME);
        } else if is_known(&d.name) {
            self.reject(d, NOT_ALLOWED);
        } else {
            self.reject(d, UNSUPPORTED);
        }
    }

    fn main(&mut self, directives: &[Directive]) {
        for d in directives {
            match d.name.as_str() {
                "http" => {
                    let Some(block) = self.block(d, 0, 0) else {
                        continue;
                    };
                    if self.http.is_some() {
                        self.reject(d, "is duplicate");
                        continue;
                    }
                    let mut settings = Settings::default();
                    for d in block {
                        self.http(d, &mut settings);
                    }
                    self.http = Some(settings);
                }
                "events" => {
                    let Some(block) = self.block(d, 0, 0) else {
                        continue;
                    };
                    self.note(d, Outcome::Ignored, EVENTS);
                    for d in block {
                        match d.name.as_str() {
                            "worker_connections"
                            | "use"
                            | "multi_accept"
                            | "accept_mutex"
                            | "accept_mutex_delay"
                            | "worker_aio_requests"
                            | "debug_connection" => {
                                if self.leaf(d, 1, 1) {
                                    self.note(d, Outcome::Ignored, EVENTS);
                                }
                            }
                            _ => self.other(Ctx::Events, d, None),
                        }
                    }
                }
                _ => self.other(Ctx::Main, d, None),
            }
        }
    }

    fn http(&mut self, d: &Directive, settings: &mut Settings) {
        match d.name.as_str() {
            "upstream" => {
                if let Some(block) = self.block(d, 1, 1) {
                    self.upstream(d, block);
                }
            }
            "server" => {
                self.server_seen = true;
                let Some(block) = self.block(d, 0, 0) else {
                    return;
                };
                if self.server.is_some() {
                    self.reject(d, "a second server block is not supported");
                    return;
                }
                let mut config = GatewayConfig::default();
                let mut own = Settings::default();
                for d in block {
                    self.server(d, &mut config, &mut own);
                }
                self.server = Some((config, own));
            }
            "keepalive_requests" => self.keepalive_requests(d, settings),
            _ => {
                if !self.setting(d, settings) {
                    self.other(Ctx::Http, d, None);
                }
            }
        }
    }

    fn server(&mut self, d: &Directive, config: &mut GatewayConfig, settings: &mut Settings) {
        match d.name.as_str() {
            "listen" => {
                if self.leaf(d, 1, usize::MAX) {
                    if let Some(addr) = self.listen(d) {
                        config.listen.push(addr);
                    }
                }
            }
            "server_name" => {
                if self.leaf(d, 1, usize::MAX) {
                    config.server_name.extend(d.args.iter().cloned());
                }
            }
            "location" => {
                if let Some(location) = self.location(d) {
                    config.locations.push(location);
                }
            }
            "keepalive_requests" => self.keepalive_requests(d, settings),
            _ => {
                if !self.setting(d, settings) {
                    self.other(Ctx::Server, d, None);
                }
            }
        }
    }

    /// `keepalive_requests number`, for the server loop.
    fn keepalive_requests(&mut self, d: &Directive, settings: &mut Settings) {
        if self.leaf(d, 1, 1) {
            match d.args[0].parse::<u32>() {
                _ if settings.keepalive_requests.is_some() => self.reject(d, "is duplicate"),
                Ok(n) => settings.keepalive_requests = Some(n),
                Err(_) => self.reject(d, format!("invalid number `{}`", d.args[0])),
            }
        }
    }

    /// `listen address[:port] [parameters]`.
    fn listen(&mut self, d: &Directive) -> Option<SocketAddr> {
        let value = d.args[0].as_str();
        let any = |port: &str| {
            port.parse::<u16>()
                .ok()
                .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p))
        };
        let addr = if value.bytes().all(|b| b.is_ascii_digit()) {
            any(value)
        } else if let Some(port) = value.strip_prefix("*:") {
            any(port)
        } else if value.starts_with("unix:") {
            self.reject(d, "unix sockets are not supported");
            return None;
        } else {
            value
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| with_default_port(value).parse().ok())
        };
        let Some(addr) = addr else {
            self.reject(
                d,
                format!("invalid address `{value}` (host names are not resolved)"),
            );
            return None;
        };
        for param in &d.args[1..] {
            let name = param.split('=').next().unwrap_or_default();
            let entry = |outcome, message: String| {
                ReportEntry::new(d.line, format!("listen {param}"), outcome, message)
            };
            match name {
                "default_server" | "default" => self.report.push(entry(
                    Outcome::Ignored,
                    "one server block: it is the default".into(),
                )),
                "ssl" | "http2" | "quic" | "proxy_protocol" | "spdy" => {
                    self.report.push(entry(
                        Outcome::Rejected,
                        format!("`{name}` is not supported"),
                    ));
                    return None;
                }
                "backlog" | "rcvbuf" | "sndbuf" | "reuseport" | "deferred" | "bind"
                | "ipv6only" | "so_keepalive" | "fastopen" | "accept_filter" | "setfib" => {
                    self.report.push(entry(Outcome::Ignored, SOCKET_IO.into()))
                }
                _ => {
                    self.report.push(entry(
                        Outcome::Rejected,
                        format!("invalid parameter `{param}`"),
                    ));
                    return None;
                }
            }
        }
        Some(addr)
    }

    /// `root`, `index`, `proxy_set_header`, `error_page`, `client_max_body_size`: whether
    /// `d` is one of them (handled, or rejected).
    fn setting(&mut self, d: &Directive, settings: &mut Settings) -> bool {
        match d.name.as_str() {
            "root" => {
                if self.leaf(d, 1, 1) && self.literal(d) {
                    if settings.root.is_some() {
                        self.reject(d, "is duplicate");
                    } else {
                        settings.root = Some(PathBuf::from(&d.args[0]));
                    }
                }
            }
            "index" => {
                if self.leaf(d, 1, usize::MAX) && self.literal(d) {
                    if d.args.iter().any(String::is_empty) {
                        self.reject(d, "index cannot be empty");
                    } else {
                        settings
                            .index
                            .get_or_insert_with(Vec::new)
                            .extend(d.args.iter().cloned());
                    }
                }
            }
            "proxy_set_header" => {
                if self.leaf(d, 2, 2) {
                    let headers = settings.headers.get_or_insert_with(Vec::new);
                    let (name, value) = (&d.args[0], &d.args[1]);
                    const HOP: [&str; 7] = [
                        "connection",
                        "keep-alive",
                        "proxy-connection",
                        "te",
                        "trailer",
                        "transfer-encoding",
                        "upgrade",
                    ];
                    if HOP.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                        self.note(d, Outcome::Ignored, HOP_BY_HOP);
                    } else if let Err(e) = ProxyHeadersLayer::builder().set(name, value).build() {
                        self.reject(d, e.to_string());
                    } else {
                        headers.push((name.clone(), value.clone()));
                    }
                }
            }
            "error_page" => {
                if self.leaf(d, 2, usize::MAX) {
                    if let Some(page) = self.error_page(d) {
                        settings.error_page.get_or_insert_with(Vec::new).push(page);
                    }
                }
            }
            "client_max_body_size" => {
                if self.leaf(d, 1, 1) {
                    match parse_size(&d.args[0]) {
                        _ if settings.max_body.is_some() => self.reject(d, "is duplicate"),
                        Some(size) => settings.max_body = Some(size),
                        None => self.reject(d, format!("invalid size `{}`", d.args[0])),
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Rejects arguments with variables.
    fn literal(&mut self, d: &Directive) -> bool {
        if d.args.iter().any(|a| a.contains('$')) {
            self.reject(d, "variables are not supported here");
            false
        } else {
            true
        }
    }

    /// `error_page code ... [=[response]] uri`.
    fn error_page(&mut self, d: &Directive) -> Option<ErrorPageConfig> {
        let (uri, rest) = d.args.split_last().expect("at least two arguments");
        let (answer, codes) = match rest.split_last() {
            Some((last, codes)) if last.starts_with('=') => {
                let answer = match &last[1..] {
                    "" => ErrorPageAnswer::Page,
                    status => match status.parse() {
                        Ok(status) => ErrorPageAnswer::Status(status),
                        Err(_) => {
                            self.reject(d, format!("invalid response code `{status}`"));
                            return None;
                        }
                    },
                };
                (answer, codes)
            }
            _ => (ErrorPageAnswer::Error, rest),
        };
        let mut parsed = Vec::with_capacity(codes.len());
        for code in codes {
            match code.parse::<u16>() {
                Ok(code) => parsed.push(code),
                Err(_) => {
                    self.reject(d, format!("invalid value `{code}`"));
                    return None;
                }
            }
        }
        if uri.contains('$') {
            self.reject(d, "variables are not supported here");
            return None;
        }
        let status = match answer {
            ErrorPageAnswer::Error => ErrorPageStatus::Error,
            ErrorPageAnswer::Page => ErrorPageStatus::Page,
            ErrorPageAnswer::Status(s) => match http::StatusCode::from_u16(s) {
                Ok(s) => ErrorPageStatus::Fixed(s),
                Err(_) => {
                    self.reject(d, format!("invalid response code `{s}`"));
                    return None;
                }
            },
        };
        let check = ErrorPages::builder()
            .page_with(parsed.iter().copied(), status, uri)
            .build();
        if let Err(e) = check {
            self.reject(d, e.to_string());
            return None;
        }
        let mut page = ErrorPageConfig::new(parsed, uri.as_str());
        page.answer = answer;
        Some(page)
    }

    fn upstream(&mut self, d: &Directive, block: &[Directive]) {
        let name = d.args[0].clone();
        let mut upstream = UpstreamConfig::new(name.as_str(), []);
        let mut policy_line: Option<(usize, &str)> = None;
        let mut servers = 0;
        for d in block {
            let policy = match d.name.as_str() {
                "server" => {
                    servers += 1;
                    if self.leaf(d, 1, usize::MAX) {
                        if let Some(peer) = self.peer(d) {
                            upstream.peers.push(peer);
                        }
                    }
                    continue;
                }
                "ip_hash" | "least_conn" if !self.leaf(d, 0, 0) => continue,
                "ip_hash" => PolicyConfig::IpHash,
                "least_conn" => PolicyConfig::LeastConn,
                "hash" => {
                    if !self.leaf(d, 1, 2) {
                        continue;
                    }
                    let key = &d.args[0];
                    if d.args.get(1).map(String::as_str) != Some("consistent") {
                        self.reject(
                            d,
                            "only `hash ... consistent` is supported (ketama consistent hashing)",
                        );
                        continue;
                    }
                    let supported = key == "$request_uri"
                        || ["$http_", "$cookie_", "$arg_"]
                            .iter()
                            .any(|p| key.len() > p.len() && key.starts_with(p));
                    if !supported {
                        self.reject(
                            d,
                            format!(
                                "unsupported key `{key}` (supported: $request_uri, $http_NAME, \
                                 $cookie_NAME, $arg_NAME)"
                            ),
                        );
                        continue;
                    }
                    PolicyConfig::ConsistentHash(key.clone())
                }
                "random" => {
                    if !self.leaf(d, 0, 2) {
                        continue;
                    }
                    match d.args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                        [] => PolicyConfig::Random,
                        ["two"] | ["two", "least_conn"] => PolicyConfig::RandomTwoLeastConn,
                        _ => {
                            self.reject(
                                d,
                                "only `random` and `random two least_conn` are supported",
                            );
                            continue;
                        }
                    }
                }
                _ => {
                    self.other(Ctx::Upstream, d, None);
                    continue;
                }
            };
            if let Some((line, previous)) = policy_line {
                self.report.push(ReportEntry::new(
                    line,
                    previous,
                    Outcome::Ignored,
                    format!(
                        "load balancing method redefined by `{}` on line {}; nginx uses the last",
                        d.name, d.line
                    ),
                ));
            }
            policy_line = Some((d.line, d.name.as_str()));
            upstream.policy = policy;
        }
        if servers == 0 {
            self.reject(d, format!("no servers are inside upstream `{name}`"));
        } else if !self.upstream_names.insert(name.clone()) {
            self.reject(d, format!("duplicate upstream `{name}`"));
        } else if upstream.peers.len() == servers {
            // Complete: no server line was rejected.
            self.upstreams.push(upstream);
        }
    }

    /// `server address [parameters]` in an upstream.
    fn peer(&mut self, d: &Directive) -> Option<PeerConfig> {
        let addr = &d.args[0];
        if addr.starts_with("unix:") {
            self.reject(d, "unix sockets are not supported");
            return None;
        }
        let mut peer = PeerConfig::new(with_default_port(addr));
        for param in &d.args[1..] {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let number = || value.parse::<u32>().ok();
            let time = || parse_time(value, true);
            let ok = match key {
                "weight" => number()
                    .filter(|&w| w >= 1)
                    .map(|w| peer.weight = w)
                    .is_some(),
                "max_fails" => number().map(|n| peer.max_fails = n).is_some(),
                "max_conns" => number().map(|n| peer.max_conns = n).is_some(),
                "fail_timeout" => time().map(|t| peer.fail_timeout = t).is_some(),
                "slow_start" => time().map(|t| peer.slow_start = t).is_some(),
                "route" if !value.is_empty() => {
                    peer.route = Some(value.to_owned());
                    true
                }
                "backup" if value.is_empty() && !param.contains('=') => {
                    peer.backup = true;
                    true
                }
                "down" if value.is_empty() && !param.contains('=') => {
                    peer.down = true;
                    true
                }
                "resolve" | "service" | "drain" => {
                    self.reject(d, format!("parameter `{key}` is not supported"));
                    return None;
                }
                _ => false,
            };
            if !ok {
                self.reject(d, format!("invalid parameter `{param}`"));
                return None;
            }
        }
        Some(peer)
    }

    /// `location [modifier] pattern { ... }`.
    fn location(&mut self, d: &Directive) -> Option<LocationConfig> {
        let block = self.block(d, 1, 2)?;
        let (modifier, pattern) = match &d.args[..] {
            [modifier, pattern] => match Modifier::parse(modifier) {
                Some(m) => (Some(m), pattern.clone()),
                None => {
                    self.reject(d, format!("invalid location modifier `{modifier}`"));
                    return None;
                }
            },
            [pattern] => {
                // nginx also reads `=/path`, `~\.php$`: the modifier stuck to the pattern.
                let attached = ["^~", "~*", "=", "~"]
                    .into_iter()
                    .find(|m| pattern.len() > m.len() && pattern.starts_with(m));
                match attached {
                    Some(m) => (Modifier::parse(m), pattern[m.len()..].to_owned()),
                    None => (None, pattern.clone()),
                }
            }
            _ => unreachable!("one or two arguments"),
        };
        let mut location = LocationConfig::new(modifier, pattern);
        if matches!(modifier, Some(Modifier::Regex | Modifier::RegexNoCase)) {
            let check = match modifier {
                Some(Modifier::Regex) => Locations::builder().regex(&location.pattern, ()),
                _ => Locations::builder().regex_nocase(&location.pattern, ()),
            };
            if let Err(e) = check.build() {
                self.reject(d, e.to_string());
                return None;
            }
        }
        // The handler of another protocol makes the location answer 502, whatever its
        // other directives are.
        let handler = block
            .iter()
            .find(|d| HANDLERS.iter().any(|(pass, _)| d.name == *pass));
        if let Some(h) = handler {
            let protocol = HANDLERS
                .iter()
                .find(|(pass, _)| h.name == *pass)
                .map(|(_, p)| *p)
                .expect("found above");
            let written = std::iter::once(h.name.as_str())
                .chain(h.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            self.note(
                h,
                Outcome::Unsupported,
                format!("no {protocol} client here: the location answers 502 Bad Gateway"),
            );
            location.unsupported = Some(written);
        }
        let mut settings = Settings::default();
        let mut returned: Option<usize> = None;
        for inner in block {
            match inner.name.as_str() {
                name if handler.is_some_and(|h| std::ptr::eq(h, inner)) => {
                    debug_assert!(handler_family(name).is_some());
                }
                "location" => {
                    if let Some(nested) = self.location(inner) {
                        location.locations.push(nested);
                    }
                }
                "proxy_pass" => {
                    if !self.leaf(inner, 1, 1) {
                        continue;
                    }
                    if location.proxy_pass.is_some() {
                        self.reject(inner, "is duplicate");
                    } else if handler.is_some() {
                        self.reject(inner, "a location has one content handler");
                    } else {
                        match inner.args[0].parse::<ProxyPassConfig>() {
                            Err(e) => self.reject(inner, e.to_string()),
                            Ok(pass)
                                if pass.uri.is_some()
                                    && (matches!(
                                        modifier,
                                        Some(Modifier::Regex | Modifier::RegexNoCase)
                                    ) || location.pattern.starts_with('@')) =>
                            {
                                self.reject(
                                    inner,
                                    "proxy_pass cannot have a URI part in a location given by a \
                                     regular expression, or inside a named location",
                                );
                            }
                            Ok(pass) => location.proxy_pass = Some(pass),
                        }
                    }
                }
                "return" => {
                    if !self.leaf(inner, 1, 2) {
                        continue;
                    }
                    if let Some(first) = returned {
                        self.note(
                            inner,
                            Outcome::Ignored,
                            format!("never reached: the return on line {first} answers first"),
                        );
                        continue;
                    }
                    if let Some(ret) = self.return_(inner) {
                        location.return_ = Some(ret);
                        returned = Some(inner.line);
                    }
                }
                "internal" => {
                    if self.leaf(inner, 0, 0) {
                        location.internal = true;
                    }
                }
                _ => {
                    if !self.setting(inner, &mut settings) {
                        self.other(Ctx::Location, inner, location.unsupported.as_deref());
                    }
                }
            }
        }
        location.root = settings.root;
        location.index = settings.index;
        location.proxy_set_header = settings.headers;
        location.error_page = settings.error_page;
        location.client_max_body_size = settings.max_body;
        Some(location)
    }

    /// `return code [text]`, `return URL`.
    fn return_(&mut self, d: &Directive) -> Option<ReturnConfig> {
        if d.args.iter().any(|a| a.contains('$')) {
            self.reject(d, "variables are not supported here");
            return None;
        }
        let first = &d.args[0];
        if d.args.len() == 1 && (first.starts_with("http://") || first.starts_with("https://")) {
            return Some(ReturnConfig::new(302, Some(first.clone())));
        }
        match first.parse::<u16>() {
            Ok(444) => {
                self.reject(d, "444 (close the connection) is not supported");
                None
            }
            Ok(status) if (100..=999).contains(&status) => {
                Some(ReturnConfig::new(status, d.args.get(1).cloned()))
            }
            _ => {
                self.reject(d, format!("invalid return code `{first}`"));
                None
            }
        }
    }

    /// The configuration, once every directive has been read: the `http` settings given to
    /// the server where it has none, and the `proxy_pass` targets resolved.
    fn finish(&mut self, top: &[Directive]) -> Option<GatewayConfig> {
        let Some((mut config, own)) = self.server.take() else {
            if self.server_seen {
                return None;
            }
            let line = top.iter().find(|d| d.name == "http").map_or(1, |d| d.line);
            self.report.push(ReportEntry::new(
                line,
                "http",
                Outcome::Rejected,
                "no `server` block",
            ));
            return None;
        };
        let http = self.http.take().unwrap_or_default();
        config.root = own.root.or(http.root);
        config.index = own.index.or(http.index);
        config.proxy_set_header = own.headers.or(http.headers);
        config.error_page = own.error_page.or(http.error_page).unwrap_or_default();
        config.client_max_body_size = own.max_body.or(http.max_body);
        config.keepalive_requests = own.keepalive_requests.or(http.keepalive_requests);
        let mut upstreams = std::mem::take(&mut self.upstreams);
        let mut implicit = HashSet::new();
        for location in &mut config.locations {
            resolve(
                location,
                &self.upstream_names,
                &mut implicit,
                &mut upstreams,
            );
        }
        config.upstreams = upstreams;
        Some(config)
    }
}

/// Points `proxy_pass` at an upstream: one named by the host (any port), or else a new
/// upstream of one peer at `host[:port]`, as nginx makes for a host.
fn resolve(
    location: &mut LocationConfig,
    names: &HashSet<String>,
    implicit: &mut HashSet<String>,
    upstreams: &mut Vec<UpstreamConfig>,
) {
    if let Some(pass) = &mut location.proxy_pass {
        let host = match pass.upstream.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => pass.upstream.as_str(),
        };
        if names.contains(host) {
            pass.upstream = host.to_owned();
        } else if !names.contains(&pass.upstream) && implicit.insert(pass.upstream.clone()) {
            upstreams.push(UpstreamConfig::new(
                pass.upstream.as_str(),
                [PeerConfig::new(with_default_port(&pass.upstream))],
            ));
        }
    }
    for nested in &mut location.locations {
        resolve(nested, names, implicit, upstreams);
    }
}
