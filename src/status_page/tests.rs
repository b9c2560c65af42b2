use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, BoxError, ServiceExt};

use super::*;
use crate::policy::IpHash;
use crate::stats::PeerStats;
use crate::upstream::ReplayBody;
use crate::{Peer, PeerStatus, Upstream};

type Svc =
    tower::util::BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

fn answering(status: u16) -> Svc {
    Svc::new(service_fn(
        move |_: Request<ReplayBody<String>>| async move {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, BoxError>(res)
        },
    ))
}

fn refusing() -> Svc {
    Svc::new(service_fn(|_: Request<ReplayBody<String>>| async {
        Err::<Response<String>, BoxError>(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        )
    }))
}

async fn get(
    page: &StatusPage,
    method: Method,
    uri: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let req = Request::builder().method(method).uri(uri).body(()).unwrap();
    let res = page.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn send(u: &Upstream<Svc>, n: usize) {
    for _ in 0..n {
        let res = u
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
        let _ = res.into_body().collect().await;
    }
}

/// The rows of the page: `(peer name, health)`, from the `data-` attributes.
fn rows(html: &str) -> Vec<(String, String)> {
    html.split("<tr class=\"peer ")
        .skip(1)
        .map(|row| {
            let attr = |name: &str| {
                let start = row.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                row[start..start + row[start..].find('"').unwrap()].to_owned()
            };
            (attr("data-peer"), attr("data-health"))
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn html_shows_every_peer_and_its_state() {
    let u = Upstream::builder()
        .name("tserver")
        .peer(Peer::new("ok", answering(200)).weight(3))
        .peer(Peer::new("refusing", refusing()).max_fails(1))
        .peer(Peer::new("draining", answering(200)).route("tomcat3"))
        .peer(Peer::new("off", answering(200)).down())
        .peer(Peer::new("spare", answering(200)).backup())
        .build()
        .unwrap();
    u.set_status("draining", PeerStatus::Draining).unwrap();
    send(&u, 4).await;
    tokio::time::advance(Duration::from_secs(3)).await;

    let page = StatusPage::new().title("edge-1").upstream(u.clone());
    let (status, headers, html) = get(&page, Method::GET, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    assert_eq!(
        rows(&html),
        [
            ("ok", "up"),
            ("refusing", "unavailable"),
            ("draining", "draining"),
            ("off", "down"),
            ("spare", "up"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(html.contains("<title>edge-1</title>"));
    assert!(html.contains(r#"<meta http-equiv="refresh" content="2">"#));
    assert!(html.contains(r#"<section class="upstream" data-upstream="tserver">"#));
    // The failed peer: out for the rest of fail_timeout, one error 3 s ago.
    let refusing = html.split("data-peer=\"refusing\"").nth(1).unwrap();
    let refusing = &refusing[..refusing.find("</tr>").unwrap()];
    assert!(
        refusing.contains("<span class=\"sub\">for 7.0 s</span>"),
        "{refusing}"
    );
    assert!(refusing.contains("error 1"), "{refusing}");
    assert!(refusing.contains("last 3.0 s ago"), "{refusing}");
    assert!(html.contains("<span class=\"sub\">route tomcat3</span>"));
    assert!(html.contains("<span class=\"tag\">backup</span>"));
    assert!(html.contains("2xx 4"), "the four requests went to `ok`");
    assert!(!html.contains("<script"), "no script on the page");
}

#[tokio::test(start_paused = true)]
async fn names_are_escaped() {
    let evil = r#""><script>alert('x')</script>&"#;
    let u = Upstream::builder()
        .name("<b>up</b>")
        .peer(Peer::new(evil, answering(200)))
        .build()
        .unwrap();
    let page = StatusPage::new().title("<i>t</i>").upstream(u);
    let (_, _, html) = get(&page, Method::GET, "/").await;
    assert!(!html.contains("<script>") && !html.contains("<b>up") && !html.contains("<i>t"));
    let escaped = "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;";
    assert!(html.contains(&format!("data-peer=\"{escaped}\"")));
    assert!(html.contains("<title>&lt;i&gt;t&lt;/i&gt;</title>"));
    let (_, _, json) = get(&page, Method::GET, "/?format=json").await;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["upstreams"][0]["peers"][0]["name"], evil);
    assert_eq!(doc["upstreams"][0]["name"], "<b>up</b>");
}

#[tokio::test(start_paused = true)]
async fn json_has_the_same_data() {
    let u = Upstream::builder()
        .name("tserver")
        .peer(Peer::new("a", answering(200)).weight(2))
        .peer(Peer::new("b", answering(503)))
        .build()
        .unwrap();
    // A second upstream of another type, and a closure.
    let hashed = Upstream::builder()
        .name("sticky")
        .peer(Peer::new("c", answering(200)))
        .policy(IpHash::new())
        .build()
        .unwrap();
    let page = StatusPage::new()
        .upstream(u.clone())
        .upstream(hashed)
        .upstream(|| {
            let mut peer = PeerStats::new("remote");
            peer.status = PeerStatus::Down;
            peer.available = false;
            UpstreamStats::new("elsewhere", vec![peer])
        });
    let (status, headers, json) = get(&page, Method::GET, "/status?format=json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let names: Vec<_> = doc["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tserver", "sticky", "elsewhere"]);
    assert_eq!(doc["upstreams"][2]["peers"][0]["health"], "down");
    assert_eq!(doc["upstreams"][2]["peers"][0]["status"], "down");

    // Traffic, then a second look two seconds later: counts and a rate.
    send(&u, 6).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let (_, _, json) = get(&page, Method::GET, "/?format=json").await;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tserver = &doc["upstreams"][0];
    assert_eq!(tserver["requests"], 6);
    assert_eq!(tserver["peers_up"], 2);
    assert_eq!(tserver["rate"], 3.0);
    let a = &tserver["peers"][0];
    assert_eq!(
        (
            &a["name"],
            &a["weight"],
            &a["requests"],
            &a["responses"]["2xx"]
        ),
        (&"a".into(), &2.into(), &4.into(), &4.into())
    );
    assert_eq!(
        (&a["health"], &a["available"]),
        (&"up".into(), &true.into())
    );
    assert_eq!(a["rate"], 2.0);
    assert_eq!(a["rate_history"][0]["rate"], 2.0);
    assert_eq!(a["rate_history"][0]["from_s"], 2.0);
    assert!(a["unavailable_for_ms"].is_null() && a["last_failure_ms"].is_null());
    assert!(a["response_time_ms"].is_number());
    let b = &tserver["peers"][1];
    assert_eq!(
        (&b["requests"], &b["responses"]["5xx"]),
        (&2.into(), &2.into())
    );
    assert_eq!(
        b["failures"]["status"], 0,
        "503 is not listed in proxy_next_upstream"
    );
    assert_eq!(b["effective_weight"], 1);
}

#[tokio::test(start_paused = true)]
async fn sparkline_after_two_looks() {
    let u = Upstream::builder()
        .peer(Peer::new("a", answering(200)))
        .build()
        .unwrap();
    let page = StatusPage::new().upstream(u.clone());
    let first = page.html();
    assert!(!first.contains("<polyline"), "one sample: no line yet");
    assert!(first.contains("– /s"));
    send(&u, 5).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let second = page.clone().html();
    assert!(second.contains("<polyline"), "clones share the samples");
    assert!(second.contains("<span>2.5 /s</span>"), "{second}");
}

#[tokio::test]
async fn methods_formats_and_paths() {
    let page = StatusPage::new()
        .path("/upstream-status")
        .refresh(Duration::ZERO)
        .upstream(|| UpstreamStats::new("u", vec![PeerStats::new("a")]));
    let (status, headers, _) = get(&page, Method::POST, "/upstream-status").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    let (status, _, _) = get(&page, Method::GET, "/upstream-status?format=xml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&page, Method::GET, "/elsewhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, html) = get(&page, Method::GET, "/upstream-status/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "refresh turned off"
    );
    let (status, headers, body) = get(&page, Method::HEAD, "/upstream-status?format=json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100
    );
    assert_eq!(body, "");
}

#[test]
fn debug_and_snapshot() {
    let page = StatusPage::new().upstream(|| UpstreamStats::new("u", Vec::new()));
    assert_eq!(page.snapshot().len(), 1);
    let debug = format!("{page:?}");
    assert!(debug.contains("upstreams: 1"), "{debug}");
}
