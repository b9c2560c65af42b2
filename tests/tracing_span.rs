//! One `tracing` span per request through an `Upstream`, with its upstream, peer, attempt,
//! affinity source and outcome, checked with a small recording subscriber.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{header, Request, Response};
use tower::{service_fn, BoxError, ServiceExt};
use tower_upstream::affinity::Affinity;
use tower_upstream::policy::IpHash;
use tower_upstream::upstream::ReplayBody;
use tower_upstream::{Peer, Upstream};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Svc =
    tower::util::BoxCloneSyncService<Request<ReplayBody<String>>, Response<String>, BoxError>;

fn ok() -> Svc {
    Svc::new(service_fn(|_: Request<ReplayBody<String>>| async {
        Ok::<_, BoxError>(Response::new("hello".to_owned()))
    }))
}

fn refusing() -> Svc {
    Svc::new(service_fn(|_: Request<ReplayBody<String>>| async {
        Err::<Response<String>, BoxError>(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        )
    }))
}

/// A span as the subscriber saw it: its name and the last value of each field.
#[derive(Debug, Clone)]
struct SpanData {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    spans: Vec<SpanData>,
    /// The spans entered on this (single) test thread, innermost last.
    stack: Vec<u64>,
    /// Each event's message and the span it happened in.
    events: Vec<(String, Option<u64>)>,
}

/// Records spans, their fields and the events inside them.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<State>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut state = self.0.lock().unwrap();
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        state.spans.push(SpanData {
            name: attrs.metadata().name(),
            fields,
        });
        Id::from_u64(state.spans.len() as u64)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut state = self.0.lock().unwrap();
        let span = &mut state.spans[id.into_u64() as usize - 1];
        values.record(&mut Fields(&mut span.fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let mut state = self.0.lock().unwrap();
        let current = state.stack.last().copied();
        let message = fields.remove("message").unwrap_or_default();
        state.events.push((message, current));
    }

    fn enter(&self, id: &Id) {
        self.0.lock().unwrap().stack.push(id.into_u64());
    }

    fn exit(&self, id: &Id) {
        let mut state = self.0.lock().unwrap();
        let top = state.stack.pop();
        assert_eq!(top, Some(id.into_u64()), "spans exit in order");
    }
}

impl Recorder {
    /// The `upstream` spans, with their fields.
    fn upstream_spans(&self) -> Vec<BTreeMap<String, String>> {
        let state = self.0.lock().unwrap();
        state
            .spans
            .iter()
            .filter(|s| s.name == "upstream")
            .map(|s| s.fields.clone())
            .collect()
    }

    /// The span (1-based id) an event with this message happened in.
    fn span_of_event(&self, message: &str) -> Option<u64> {
        let state = self.0.lock().unwrap();
        state
            .events
            .iter()
            .find(|(m, _)| m == message)
            .and_then(|(_, span)| *span)
    }
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn one_span_per_request_with_peer_attempt_affinity_and_outcome() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());

    // A failed first attempt, then a response from the second peer.
    let failover = Upstream::builder()
        .name("tserver")
        .peer(Peer::new("tomcat1", refusing()))
        .peer(Peer::new("tomcat2", ok()))
        .build()
        .unwrap();
    let res = failover.clone().oneshot(Request::new(String::new())).await;
    assert_eq!(res.unwrap().status(), 200);

    // Session affinity from the cookie.
    let sticky = Upstream::builder()
        .name("sessions")
        .peer(Peer::new("one", ok()).route("tomcat1"))
        .peer(Peer::new("two", ok()).route("tomcat2"))
        .affinity(Affinity::route("JSESSIONID"))
        .build()
        .unwrap();
    let req = Request::get("/app")
        .header(header::COOKIE, "JSESSIONID=5F3C0A.tomcat2")
        .body(String::new())
        .unwrap();
    sticky.clone().oneshot(req).await.unwrap();

    // ip_hash: the client address is the affinity.
    let hashed = Upstream::builder()
        .name("hashed")
        .peer(Peer::new("a", ok()))
        .policy(IpHash::new())
        .build()
        .unwrap();
    let mut req = Request::new(String::new());
    req.extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 7], 40000)));
    hashed.clone().oneshot(req).await.unwrap();

    // No live peer: the upstream answers itself.
    let down = Upstream::builder()
        .name("down")
        .peer(Peer::new("off", ok()).down())
        .build()
        .unwrap();
    let res = down.clone().oneshot(Request::new(String::new())).await;
    assert_eq!(res.unwrap().status(), 502);

    let spans = recorder.upstream_spans();
    assert_eq!(
        spans,
        [
            fields(&[
                ("upstream", "tserver"),
                ("peer", "tomcat2"),
                ("attempt", "2"),
                ("affinity", "none"),
                ("outcome", "response"),
                ("status", "200"),
            ]),
            fields(&[
                ("upstream", "sessions"),
                ("peer", "two"),
                ("attempt", "1"),
                ("affinity", "cookie"),
                ("outcome", "response"),
                ("status", "200"),
            ]),
            fields(&[
                ("upstream", "hashed"),
                ("peer", "a"),
                ("attempt", "1"),
                ("affinity", "ip"),
                ("outcome", "response"),
                ("status", "200"),
            ]),
            fields(&[
                ("upstream", "down"),
                ("outcome", "unavailable"),
                ("status", "502"),
            ]),
        ],
        "one span per request"
    );
    // The span is entered while the request runs: the failed attempt's warning is inside it.
    assert_eq!(recorder.span_of_event("upstream attempt failed"), Some(1));
    assert_eq!(recorder.span_of_event("no live upstreams"), Some(4));
}
