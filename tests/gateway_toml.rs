//! The `config` model in TOML (feature `serde`): `examples/gateway.toml` is the seed's
//! `nginx.conf`, the model round-trips, mistakes are errors, and `examples/gateway/
//! --config` serves a file.
//!
//! Run with `cargo test --features serde --test gateway_toml` (`.ci/run` does).
#![cfg(feature = "serde")]

mod support;

use support::example::gateway_binary;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tower_upstream::config::{nginx, GatewayConfig, PeerConfig};

const GATEWAY_TOML: &str = include_str!("../examples/gateway.toml");

fn seed() -> String {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed/nginx.conf");
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-nginx.conf");
    std::fs::read_to_string(shared)
        .or_else(|_| std::fs::read_to_string(copy))
        .expect("the seed's nginx.conf")
}

fn parse(text: &str) -> Result<GatewayConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[test]
fn examples_gateway_toml_is_the_seed() {
    let from_toml = parse(GATEWAY_TOML).unwrap();
    let mut from_nginx = nginx::import(&seed()).unwrap().config;
    // The one difference, on purpose: loopback instead of `listen 80`.
    assert_eq!(from_nginx.listen, ["0.0.0.0:80".parse().unwrap()]);
    from_nginx.listen = vec!["127.0.0.1:8080".parse().unwrap()];
    assert_eq!(from_toml, from_nginx);
}

#[test]
fn the_model_round_trips() {
    let config = nginx::import(&seed()).unwrap().config;
    let text = toml::to_string(&config).unwrap();
    assert_eq!(parse(&text).unwrap(), config, "{text}");
    // Times and sizes are written in nginx's syntax or as numbers.
    let mut config = GatewayConfig::new();
    let mut peer = PeerConfig::new("127.0.0.1:1");
    peer.fail_timeout = Duration::from_millis(1500);
    peer.slow_start = Duration::from_secs(60);
    config.upstreams = vec![tower_upstream::config::UpstreamConfig::new("a", [peer])];
    config.client_max_body_size = Some(1024);
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("fail_timeout = \"1500ms\""), "{text}");
    assert!(text.contains("slow_start = \"60s\""), "{text}");
    assert!(text.contains("client_max_body_size = 1024"), "{text}");
    assert_eq!(parse(&text).unwrap(), config);
}

#[test]
fn nginx_defaults_and_syntax() {
    let config = parse(
        r#"
        client_max_body_size = "32k"
        [[upstream]]
        name = "a"
        policy = { consistent_hash = "$request_uri" }
        peer = [
            { addr = "10.0.0.1:80" },
            { addr = "10.0.0.2:80", fail_timeout = 30, max_fails = 0, backup = true },
            { addr = "10.0.0.3:80", fail_timeout = "1m 30s", route = "n3" },
        ]
        [[upstream]]
        name = "b"
        policy = "ip_hash"
        peer = [{ addr = "10.0.0.4:80" }]
        [[location]]
        modifier = "^~"
        pattern = "/app/"
        proxy_pass = "http://a/v2/"
        error_page = [{ codes = [502], answer = { status = 200 }, uri = "/x" }]
        [[location.location]]
        modifier = "~*"
        pattern = '\.png$'
        return = { status = 404 }
        "#,
    )
    .unwrap();
    assert_eq!(config.client_max_body_size, Some(32 << 10));
    let peers = &config.upstreams[0].peers;
    assert_eq!(peers[0], PeerConfig::new("10.0.0.1:80"));
    assert_eq!(peers[0].weight, 1);
    assert_eq!(peers[0].max_fails, 1);
    assert_eq!(peers[0].fail_timeout, Duration::from_secs(10));
    assert_eq!(peers[1].fail_timeout, Duration::from_secs(30));
    assert_eq!((peers[1].max_fails, peers[1].backup), (0, true));
    assert_eq!(peers[2].fail_timeout, Duration::from_secs(90));
    assert_eq!(peers[2].route.as_deref(), Some("n3"));
    let app = &config.locations[0];
    assert_eq!(app.proxy_pass.as_ref().unwrap().to_string(), "http://a/v2/");
    assert_eq!(app.locations[0].return_.as_ref().unwrap().status, 404);
    config.build().unwrap();
}

#[test]
fn mistakes_are_errors() {
    for (text, error) in [
        ("lisen = []", "unknown field `lisen`"),
        (
            "[[location]]\npattern = \"/\"\nproxy_pas = \"http://a\"",
            "unknown field `proxy_pas`",
        ),
        (
            "[[location]]\npattern = \"/\"\nproxy_pass = \"https://a\"",
            "https peers are not supported",
        ),
        (
            "[[location]]\nmodifier = \"~~\"\npattern = \"/\"",
            "unknown variant `~~`",
        ),
        (
            "[[upstream]]\nname = \"a\"\npeer = [{ addr = \"x\", fail_timeout = \"10x\" }]",
            "invalid time `10x`",
        ),
        (
            "[[upstream]]\nname = \"a\"\npeer = [{ addr = \"x\", fail_timeout = -1 }]",
            "negative time -1",
        ),
        ("client_max_body_size = \"8q\"", "invalid size `8q`"),
        (
            "[[upstream]]\nname = \"a\"\npolicy = \"ip-hash\"\npeer = []",
            "unknown variant `ip-hash`",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(error), "{text:?}: {err}");
    }
}

#[tokio::test]
async fn the_gateway_example_serves_a_toml_config() {
    let backends = [
        support::spawn_backend("tomcat1").await,
        support::spawn_backend("tomcat2").await,
    ];
    let dir = std::env::temp_dir().join(format!("tower-upstream-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("50x.html"), "sorry\n").unwrap();
    let toml = GATEWAY_TOML
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:18081", &backends[0].addr.to_string())
        .replace("127.0.0.1:18082", &backends[1].addr.to_string())
        .replace("/www/ROOT", &dir.display().to_string());
    let file = dir.join("gateway.toml");
    std::fs::write(&file, toml).unwrap();
    // The file's `listen`: 127.0.0.1:0.
    let (addr, _guard) = support::example::spawn(
        Command::new(gateway_binary(&["serde"]))
            .arg("--config")
            .arg(&file),
    );
    // As written, the seed's php regex takes everything: 502 with the 50x page.
    assert_eq!(
        support::get(addr, "/index.jsp").await,
        (502, String::new(), "sorry\n".into())
    );
    assert_eq!(
        support::get(addr, "/50x.html").await,
        (200, String::new(), "sorry\n".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
