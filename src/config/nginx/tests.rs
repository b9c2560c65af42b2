use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::config::{
    ErrorPageAnswer, ErrorPageConfig, LocationConfig, Modifier, PeerConfig, PolicyConfig,
    ProxyPassConfig, ReturnConfig, UpstreamConfig,
};

const SEED: &str = include_str!("../../../tests/data/seed-nginx.conf");

fn entries(report: &Report) -> Vec<(usize, &str, Outcome)> {
    report
        .iter()
        .map(|e| (e.line(), e.directive(), e.outcome()))
        .collect()
}

/// The rejected entries of a failed import.
fn rejected(text: &str) -> Vec<(usize, String, String)> {
    match import(text) {
        Err(ImportError::Rejected { report }) => report
            .with_outcome(Outcome::Rejected)
            .map(|e| (e.line(), e.directive().to_owned(), e.message().to_owned()))
            .collect(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn server(body: &str) -> String {
    format!("http {{\nserver {{\n{body}\n}}\n}}\n")
}

fn location(modifier: Option<Modifier>, pattern: &str) -> LocationConfig {
    LocationConfig::new(modifier, pattern)
}

#[test]
fn the_seed_imports_as_written() {
    let imported = import(SEED).unwrap();
    let root = || Some(PathBuf::from("/www/ROOT"));
    let tserver = || Some(ProxyPassConfig::new("tserver", None));
    let headers = || {
        Some(vec![
            ("Host".to_owned(), "$host".to_owned()),
            ("X-Real-IP".to_owned(), "$remote_addr".to_owned()),
        ])
    };

    let mut php = location(Some(Modifier::Regex), ".*.(php|php5)?$");
    php.root = root();
    php.unsupported = Some("fastcgi_pass 127.0.0.1:9000".into());
    let mut java = location(Some(Modifier::Regex), ".(jsp|jspx|do|htm)?$");
    java.proxy_set_header = headers();
    java.proxy_pass = tserver();
    let mut dwr = location(Some(Modifier::Regex), "(/dwr/)?");
    dwr.proxy_set_header = headers();
    dwr.proxy_pass = tserver();
    let mut slash = location(None, "/");
    slash.root = root();
    slash.index = Some(
        [
            "index.html",
            "index.jsp",
            "default.jsp",
            "index.do",
            "default.do",
        ]
        .map(String::from)
        .to_vec(),
    );
    let mut page404 = location(Some(Modifier::Exact), "/404.html");
    page404.root = root();
    let mut page50x = location(Some(Modifier::Exact), "/50x.html");
    page50x.root = root();

    let mut want = GatewayConfig::new();
    want.listen = vec![SocketAddr::from(([0, 0, 0, 0], 80))];
    want.server_name = vec!["_".into()];
    want.upstreams = vec![UpstreamConfig::new(
        "tserver",
        [
            PeerConfig::new("127.0.0.1:18081"),
            PeerConfig::new("127.0.0.1:18082"),
        ],
    )];
    want.locations = vec![php, java, dwr, slash, page404, page50x];
    want.error_page = vec![
        ErrorPageConfig::new([404], "/404.html"),
        ErrorPageConfig::new([500, 502, 503, 504], "/50x.html"),
    ];
    want.client_max_body_size = Some(8 << 20);
    assert_eq!(imported.config, want);

    use Outcome::{Ignored, Unsupported};
    assert_eq!(
        entries(&imported.report),
        [
            (3, "user", Ignored),
            (4, "worker_processes", Ignored),
            (5, "error_log", Ignored),
            (6, "pid", Ignored),
            (8, "events", Ignored),
            (9, "worker_connections", Ignored),
            (13, "include", Ignored),
            (14, "default_type", Ignored),
            (15, "log_format", Ignored),
            (18, "access_log", Ignored),
            (19, "server_names_hash_bucket_size", Ignored),
            (20, "client_header_buffer_size", Ignored),
            (21, "large_client_header_buffers", Ignored),
            (23, "sendfile", Ignored),
            (24, "tcp_nopush", Ignored),
            (25, "keepalive_timeout", Ignored),
            (26, "gzip_min_length", Ignored),
            (27, "gzip_buffers", Ignored),
            (28, "gzip_http_version", Ignored),
            (29, "gzip_comp_level", Ignored),
            (30, "gzip_types", Ignored),
            (31, "gzip_vary", Ignored),
            (44, "fastcgi_pass", Unsupported),
            (45, "fastcgi_index", Unsupported),
            (46, "include", Unsupported),
            (76, "include", Unsupported),
        ]
    );
    let text = imported.report.to_string();
    assert!(
        text.contains("line 44: fastcgi_pass: unsupported: no FastCGI client here: the location answers 502 Bad Gateway\n"),
        "{text}"
    );
    assert!(
        text.contains("line 76: include: unsupported: not read: included files are not imported\n"),
        "{text}"
    );
    assert!(
        text.contains("line 13: include: ignored: content types are guessed"),
        "{text}"
    );
}

#[test]
fn the_seed_builds() {
    let imported = import(SEED).unwrap();
    let gateway = imported.config.build().unwrap();
    assert_eq!(gateway.stats().len(), 1);
    assert_eq!(gateway.stats()[0].peers.len(), 2);
}

#[test]
fn upstream_parameters_and_policies() {
    let text = "http {
        upstream a {
            server 10.0.0.1:8080 weight=5 max_fails=3 fail_timeout=30s max_conns=100;
            server 10.0.0.2 backup;
            server backend.local:81 down route=n3 slow_start=1m;
            ip_hash;
        }
        upstream b { hash $cookie_sid consistent; server 10.0.0.3:80; }
        upstream c { least_conn; server 10.0.0.4:80; }
        upstream d { random two least_conn; server 10.0.0.5:80; }
        upstream e { random; server 10.0.0.6:80; keepalive 16; zone e 64k; }
        upstream f { server 10.0.0.7:80; }
        server { location / { proxy_pass http://a; } }
    }";
    let imported = import(text).unwrap();
    let upstreams = &imported.config.upstreams;
    let a = &upstreams[0];
    assert_eq!(a.name, "a");
    assert_eq!(a.policy, PolicyConfig::IpHash);
    let mut first = PeerConfig::new("10.0.0.1:8080").weight(5);
    first.max_fails = 3;
    first.fail_timeout = Duration::from_secs(30);
    first.max_conns = 100;
    let mut third = PeerConfig::new("backend.local:81");
    third.down = true;
    third.route = Some("n3".into());
    third.slow_start = Duration::from_secs(60);
    assert_eq!(
        a.peers,
        [first, PeerConfig::new("10.0.0.2:80").backup(), third]
    );
    let policies: Vec<_> = upstreams.iter().map(|u| u.policy.clone()).collect();
    assert_eq!(
        policies,
        [
            PolicyConfig::IpHash,
            PolicyConfig::ConsistentHash("$cookie_sid".into()),
            PolicyConfig::LeastConn,
            PolicyConfig::RandomTwoLeastConn,
            PolicyConfig::Random,
            PolicyConfig::RoundRobin,
        ]
    );
    assert_eq!(
        entries(&imported.report),
        [
            (11, "keepalive", Outcome::Ignored),
            (11, "zone", Outcome::Ignored)
        ]
    );
}

#[test]
fn a_redefined_balancing_method_is_reported_on_the_first() {
    let imported = import("http {\nupstream a {\nip_hash;\nserver 10.0.0.1;\nleast_conn;\n}\nserver { location / { proxy_pass http://a; } }\n}").unwrap();
    assert_eq!(imported.config.upstreams[0].policy, PolicyConfig::LeastConn);
    let entry = imported.report.iter().next().unwrap();
    assert_eq!((entry.line(), entry.directive()), (3, "ip_hash"));
    assert_eq!(
        entry.message(),
        "load balancing method redefined by `least_conn` on line 5; nginx uses the last"
    );
}

#[test]
fn listen_forms() {
    let imported = import(&server(
        "listen 8080;\nlisten 127.0.0.1;\nlisten 127.0.0.2:81 default_server;\nlisten [::1]:82;\nlisten *:83 reuseport;\nlocation / { return 204; }",
    ))
    .unwrap();
    let listen: Vec<String> = imported
        .config
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        listen,
        [
            "0.0.0.0:8080",
            "127.0.0.1:80",
            "127.0.0.2:81",
            "[::1]:82",
            "0.0.0.0:83"
        ]
    );
    assert_eq!(
        entries(&imported.report),
        [
            (5, "listen default_server", Outcome::Ignored),
            (7, "listen reuseport", Outcome::Ignored)
        ]
    );
}

/// `keepalive_requests`: the server's own, else the `http` block's, else none (the server
/// loop's default); a location's is ignored, as the other client connection settings.
#[test]
fn keepalive_requests_for_the_server_loop() {
    let with = |http: &str, server: &str| {
        import(&format!(
            "http {{\n{http}\nserver {{\n{server}\nlocation / {{ keepalive_requests 5; return 204; }}\n}}\n}}\n"
        ))
        .unwrap()
    };
    assert_eq!(with("", "").config.keepalive_requests, None);
    assert_eq!(
        with("keepalive_requests 100;", "")
            .config
            .keepalive_requests,
        Some(100)
    );
    let both = with("keepalive_requests 100;", "keepalive_requests 0;");
    assert_eq!(both.config.keepalive_requests, Some(0));
    assert_eq!(
        entries(&both.report),
        [(5, "keepalive_requests", Outcome::Ignored)]
    );
    assert_eq!(
        rejected(&server(
            "keepalive_requests many;\nkeepalive_requests 1;\nkeepalive_requests 2;\nkeepalive_requests;"
        )),
        [
            (3, "keepalive_requests".into(), "invalid number `many`".into()),
            (5, "keepalive_requests".into(), "is duplicate".into()),
            (6, "keepalive_requests".into(), "invalid number of arguments".into()),
        ]
    );
}

#[test]
fn locations_handlers_and_inheritance() {
    let text = "http {
        root /srv/http;
        proxy_set_header X-From http;
        upstream app { server 127.0.0.1:9001; }
        server {
            index main.html;
            error_page 502 /oops.html;
            location =/exact { return 301 http://example.com/; }
            location ~*\\.PNG$ { return 200 'an image'; }
            location ^~ /static/ { root /srv/static; internal; }
            location @named { proxy_pass http://app; }
            location /app/ {
                proxy_pass http://app:9001/v2/;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection \"upgrade\";
                client_max_body_size 0;
                error_page 404 = @named;
                location /app/inner/ { return 418; return 200; }
            }
            location /direct/ { proxy_pass http://127.0.0.1:9002/; }
            location /again/ { proxy_pass http://127.0.0.1:9002; }
            location /host/ { proxy_pass http://backend; }
        }
    }";
    let imported = import(text).unwrap();
    let config = &imported.config;
    // http-level settings are the server's.
    assert_eq!(config.root, Some(PathBuf::from("/srv/http")));
    assert_eq!(
        config.proxy_set_header,
        Some(vec![("X-From".into(), "http".into())])
    );
    assert_eq!(config.index, Some(vec!["main.html".into()]));
    assert_eq!(
        config.error_page,
        [ErrorPageConfig::new([502], "/oops.html")]
    );
    let locs = &config.locations;
    assert_eq!(
        (locs[0].modifier, locs[0].pattern.as_str()),
        (Some(Modifier::Exact), "/exact")
    );
    assert_eq!(
        locs[0].return_,
        Some(ReturnConfig::new(301, Some("http://example.com/".into())))
    );
    assert_eq!(
        (locs[1].modifier, locs[1].pattern.as_str()),
        (Some(Modifier::RegexNoCase), r"\.PNG$")
    );
    assert_eq!(
        locs[1].return_,
        Some(ReturnConfig::new(200, Some("an image".into())))
    );
    assert_eq!(locs[2].modifier, Some(Modifier::PrefixNoRegex));
    assert!(locs[2].internal);
    assert_eq!(locs[2].root, Some(PathBuf::from("/srv/static")));
    assert_eq!(
        (locs[3].modifier, locs[3].pattern.as_str()),
        (None, "@named")
    );
    let app = &locs[4];
    // `app:9001` is the upstream `app`, whatever the port.
    assert_eq!(
        app.proxy_pass,
        Some(ProxyPassConfig::new("app", Some("/v2/".into())))
    );
    // Upgrade and Connection are reported, not passed on, but still replace the
    // inherited list.
    assert_eq!(app.proxy_set_header, Some(vec![]));
    assert_eq!(app.client_max_body_size, Some(0));
    let mut named = ErrorPageConfig::new([404], "@named");
    named.answer = ErrorPageAnswer::Page;
    assert_eq!(app.error_page, Some(vec![named]));
    assert_eq!(app.locations[0].return_, Some(ReturnConfig::new(418, None)));
    // A host that is no upstream becomes one, once.
    assert_eq!(
        locs[5].proxy_pass,
        Some(ProxyPassConfig::new("127.0.0.1:9002", Some("/".into())))
    );
    assert_eq!(
        locs[6].proxy_pass,
        Some(ProxyPassConfig::new("127.0.0.1:9002", None))
    );
    let names: Vec<_> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["app", "127.0.0.1:9002", "backend"]);
    assert_eq!(config.upstreams[2].peers, [PeerConfig::new("backend:80")]);
    assert_eq!(
        entries(&imported.report),
        [
            (14, "proxy_set_header", Outcome::Ignored),
            (15, "proxy_set_header", Outcome::Ignored),
            (18, "return", Outcome::Ignored),
        ]
    );
    assert!(imported
        .report
        .to_string()
        .contains("line 18: return: ignored: never reached: the return on line 18 answers first"));
    config.build().unwrap();
}

#[test]
fn rejections_are_all_listed_with_their_lines() {
    let text = "http {
        upstream a { server 10.0.0.1 weight=0; }
        upstream b { server 10.0.0.2; hash $request_uri; }
        upstream c { server 10.0.0.3; hash $remote_addr consistent; }
        upstream d { server unix:/tmp/s; }
        upstream e { }
        upstream f { server 10.0.0.4; }
        upstream f { server 10.0.0.5; }
        proxy_pass http://a;
        server {
            listen 443 ssl;
            listen localhost:80;
            location / {
                rewrite ^ /x;
                root /srv;
                root /other;
                if ($x) { return 403; }
            }
            location ~ \\.jsp$ { proxy_pass http://f/app/; }
            location /s/ { proxy_pass https://f; }
            location /r/ { root /srv/$host; return 444; }
            location ~ (?<=x)y { return 200; }
            location /e/ { error_page 200 /x; error_page 404 =abc /y; client_max_body_size 8q; }
            location /h/ { proxy_set_header X-Bad $nonsense; proxy_set_header \"Bad Name\" x; }
        }
        server { }
    }";
    let got = rejected(text);
    let summary: Vec<(usize, &str)> = got.iter().map(|(l, d, _)| (*l, d.as_str())).collect();
    assert_eq!(
        summary,
        [
            (2, "server"),
            (3, "hash"),
            (4, "hash"),
            (5, "server"),
            (6, "upstream"),
            (8, "upstream"),
            (9, "proxy_pass"),
            (11, "listen ssl"),
            (12, "listen"),
            (14, "rewrite"),
            (16, "root"),
            (17, "if"),
            (19, "proxy_pass"),
            (20, "proxy_pass"),
            (21, "root"),
            (21, "return"),
            (22, "location"),
            (23, "error_page"),
            (23, "error_page"),
            (23, "client_max_body_size"),
            (24, "proxy_set_header"),
            (24, "proxy_set_header"),
            (26, "server"),
        ]
    );
    let message = |line: usize, directive: &str| {
        got.iter()
            .find(|(l, d, _)| *l == line && d == directive)
            .map(|(_, _, m)| m.as_str())
            .unwrap()
    };
    assert_eq!(message(2, "server"), "invalid parameter `weight=0`");
    assert_eq!(message(9, "proxy_pass"), "not allowed here");
    assert_eq!(message(14, "rewrite"), "unsupported directive");
    assert_eq!(message(16, "root"), "is duplicate");
    assert_eq!(
        message(20, "proxy_pass"),
        "invalid proxy_pass `https://f`: https peers are not supported"
    );
    assert_eq!(
        message(26, "server"),
        "a second server block is not supported"
    );
    assert!(message(22, "location").contains("invalid regex"), "{got:?}");
    assert!(message(24, "proxy_set_header").contains("unknown variable `$nonsense`"));
}

#[test]
fn syntax_errors_and_missing_blocks() {
    match import("http {\n  server {\n    listen 80;\n  }\n") {
        Err(ImportError::Syntax { line, message }) => {
            assert_eq!(
                (line, message.as_str()),
                (5, "unexpected end of file, expecting \"}\"")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rejected("events { worker_connections 1024; }\n"),
        [(1, "http".into(), "no `server` block".into())]
    );
    assert_eq!(
        rejected("\nhttp { upstream a { server 10.0.0.1; } }"),
        [(2, "http".into(), "no `server` block".into())]
    );
    assert_eq!(
        rejected("http { server; }"),
        [(1, "server".into(), "has no opening \"{\"".into())]
    );
    assert_eq!(
        rejected("http { gzip { } server { location / { return 200; } } }"),
        [(1, "gzip".into(), "has no block (\"{\")".into())]
    );
    let err = import("http {\nserver {\nlocation / { }\n}\n}").unwrap();
    // Accepted by the importer; the builder says what is missing.
    let built = err.config.build().unwrap_err();
    assert_eq!(
        built.to_string(),
        "`location /`: it has no proxy_pass, return or root (nginx's default root `html` is not assumed)"
    );
}

#[test]
fn other_protocols_in_and_out_of_their_location() {
    let text = server(
        "fastcgi_param A b;\nlocation ~ \\.py$ {\n  uwsgi_param X y;\n  uwsgi_pass 127.0.0.1:3031;\n  include uwsgi_params;\n  root /srv;\n}",
    );
    let imported = import(&text).unwrap();
    assert_eq!(
        imported.config.locations[0].unsupported.as_deref(),
        Some("uwsgi_pass 127.0.0.1:3031")
    );
    assert_eq!(
        imported.report.to_string(),
        "line 3: fastcgi_param: unsupported: not applied: FastCGI is not supported\n\
         line 5: uwsgi_param: unsupported: not applied: the location answers 502\n\
         line 6: uwsgi_pass: unsupported: no uwsgi client here: the location answers 502 Bad Gateway\n\
         line 7: include: unsupported: not applied: the location answers 502\n"
    );
    // A location has one handler.
    assert_eq!(
        rejected(&server(
            "location / { fastcgi_pass a:1; proxy_pass http://b; }"
        )),
        [(
            3,
            "proxy_pass".into(),
            "a location has one content handler".into()
        )]
    );
}

#[test]
fn import_file_reads_and_names_the_file() {
    let missing = import_file("/nonexistent/nginx.conf").unwrap_err();
    assert!(missing
        .to_string()
        .starts_with("cannot read /nonexistent/nginx.conf: "));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed-nginx.conf");
    assert_eq!(
        import_file(path).unwrap().config,
        import(SEED).unwrap().config
    );
}
