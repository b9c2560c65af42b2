//! Response future of [`Upstream`].

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::Service;

use super::classify::{classify, is_non_idempotent};
use super::members::Members;
use super::replay::{Buffering, Replay, ReplayBody};
use super::{CloseConnection, Condition, SelectedPeer, Selection, Upstream};
use crate::body::{Active, ResponseBody};
use crate::policy::Policy;
use crate::stats::{FailureKind, Outcome};
use crate::BoxError;

pin_project! {
    /// Response future of [`Upstream`](crate::Upstream): reads a small request body, then
    /// sends the request to one peer after another until one answers or nginx's
    /// `proxy_next_upstream` rules say to stop.
    pub struct ResponseFuture<S, P, B>
    where
        S: Service<Request<ReplayBody<B>>>,
        P: Policy<Request<B>>,
    {
        #[pin]
        state: State<S, S::Future>,
        ctx: Ctx<S, P, B>,
        // One span per request, entered while it is polled (see `request_span`).
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Buffering,
        // A peer is chosen; its service is polled for readiness before the call. Not
        // `tower::util::Oneshot`, which would keep a copy of the whole request here too.
        Ready { svc: S },
        Calling { #[pin] future: F },
        Done,
    }
}

struct Ctx<S, P, B>
where
    P: Policy<Request<B>>,
{
    upstream: Upstream<S, P>,
    /// The peers as they were when the request came in, for all its attempts.
    members: Arc<Members<S, P>>,
    /// The request's head, while another attempt may still need it (see `request`).
    parts: Option<Parts>,
    buffering: Option<Buffering<B>>,
    replay: Option<Replay<B>>,
    selection: Selection<P::Key>,
    attempts: u32,
    max_attempts: Option<u32>,
    /// When the first attempt began, once the body was read: where nginx starts
    /// `proxy_next_upstream_timeout` (`peer.start_time`).
    started: Option<Instant>,
    current: Option<Attempt>,
}

/// The peer a request was sent to, and its in-flight count.
struct Attempt {
    active: Active,
    selected: SelectedPeer,
    started: Instant,
}

/// The response the upstream makes itself for `status`: the configured error page, or a
/// one-line text like nginx's.
fn synthetic<S, P, B>(upstream: &Upstream<S, P>, status: StatusCode) -> Response<ResponseBody<B>>
where
    P: crate::policy::BuildIndex,
{
    let (content_type, body) = match upstream.shared.error_pages.get(&status) {
        Some(page) => (page.content_type.clone(), page.body.clone()),
        None => {
            let reason = status.canonical_reason().unwrap_or("Error");
            let text = format!("{} {reason}\n", status.as_u16());
            (
                HeaderValue::from_static("text/plain; charset=utf-8"),
                Bytes::from(text),
            )
        }
    };
    let mut res = Response::new(ResponseBody::synthetic(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, content_type);
    res
}

impl<S, P, B> ResponseFuture<S, P, B>
where
    S: Service<Request<ReplayBody<B>>>,
    P: Policy<Request<B>>,
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(upstream: Upstream<S, P>, mut req: Request<B>) -> Self {
        let members = upstream.shared.members.load_full();
        let sticky = match &members.affinity {
            Some(table) => table.extract(&mut req),
            None => Default::default(),
        };
        let key = upstream.shared.policy.key(&req);
        let (parts, body) = req.into_parts();
        let limit = upstream.next.body_buffer();
        upstream.next.deposit();
        Self {
            span: request_span(&upstream.shared.name),
            state: State::Buffering,
            ctx: Ctx {
                parts: Some(parts),
                buffering: Some(Buffering::new(body, limit)),
                replay: None,
                selection: Selection::new(key, sticky),
                attempts: 0,
                max_attempts: None,
                started: None,
                current: None,
                members,
                upstream,
            },
        }
    }
}

impl<S, P, B> Ctx<S, P, B>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    P: Policy<Request<B>>,
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    /// Picks the next peer, or `None` when no peer is left: its service, to be called once
    /// ready with [`request`](Self::request).
    fn start(&mut self, span: &tracing::Span) -> Option<S> {
        let now = Instant::now();
        let shared = &*self.upstream.shared;
        let (tier, index, active) = loop {
            let (tier, index) = self.members.select(shared, &mut self.selection, now)?;
            // A request on another thread may have filled the peer since the pick: pick
            // again. The full peer is marked tried, so this ends.
            if let Some(active) = Active::try_acquire(&tier.peers, index, now) {
                break (tier, index, active);
            }
        };
        let selected = SelectedPeer {
            peers: Arc::clone(&tier.peers),
            index,
            backup: self.selection.last_backup,
        };
        self.attempts += 1;
        self.started.get_or_insert(now);
        if !span.is_disabled() {
            let source = self.selection.sticky.source;
            let source = source.or_else(|| shared.policy.affinity_source());
            span.record("peer", selected.name());
            span.record("attempt", self.attempts);
            span.record("affinity", source.map_or("none", |s| s.as_str()));
        }
        self.current = Some(Attempt {
            active,
            selected,
            started: now,
        });
        Some(tier.services[index].clone())
    }

    /// The request for the current attempt: a copy of its head while another attempt may
    /// follow, else the head itself. A copy (and its drop) costs about 1,200 instructions,
    /// a twentieth of a proxied request, and one peer or `proxy_next_upstream off` never
    /// needs one. Nor does a peer whose errors give the head back (`gives_back`), unless a
    /// response, which cannot, may be passed over.
    fn request(&mut self, gives_back: bool) -> Request<ReplayBody<B>> {
        let replay = self
            .replay
            .as_ref()
            .expect("body read before the first attempt");
        let body = replay.body();
        // A response cannot give the head back.
        let comes_back = gives_back && !self.upstream.next.on_status();
        let copy = !comes_back && self.may_follow(replay);
        let parts = if copy {
            self.parts.clone()
        } else {
            self.parts.take()
        };
        Request::from_parts(parts.expect("a head kept for every attempt"), body)
    }

    /// Whether an attempt may follow the current one, by what is known before it starts:
    /// `proxy_next_upstream` is on, the body can be sent again, and `tries` and the number
    /// of peers leave room. A cheap upper bound of `may_retry`'s limit: it counts down peers
    /// too, which `may_retry` does only once a retry is considered.
    fn may_follow(&self, replay: &Replay<B>) -> bool {
        let peers = u32::try_from(self.members.peers.len()).unwrap_or(u32::MAX);
        let limit = self.upstream.next.max_tries().min(peers);
        self.attempts < limit && replay.can_replay()
    }

    /// Whether nginx would send this request to another peer after `condition`.
    fn may_retry(&mut self, condition: Condition, sent: bool) -> bool {
        let next = &*self.upstream.next;
        if !next.contains(condition) {
            return false;
        }
        // The head went to the last attempt `may_follow` allowed.
        let Some(parts) = &self.parts else {
            return false;
        };
        if sent && is_non_idempotent(&parts.method) && !next.contains(Condition::NonIdempotent) {
            return false;
        }
        if !self.replay.as_ref().is_some_and(Replay::can_replay) {
            return false;
        }
        // nginx's `peer.tries`: every peer that is not down, capped by
        // `proxy_next_upstream_tries`. Counted only once a retry is considered.
        let max = *self
            .max_attempts
            .get_or_insert_with(|| self.members.tries().min(next.max_tries()));
        if self.attempts >= max {
            return false;
        }
        if next
            .timeout_value()
            .zip(self.started)
            .is_some_and(|(t, started)| started.elapsed() >= t)
        {
            return false;
        }
        next.withdraw()
    }
}

impl<S, P, B, ResBody> Future for ResponseFuture<S, P, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError> + 'static,
    P: Policy<Request<B>>,
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let ctx = this.ctx;
        let span = &*this.span;
        let _entered = span.enter();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::Buffering => {
                    let buffering = ctx.buffering.as_mut().expect("buffering state");
                    match ready!(buffering.poll(cx)) {
                        Ok(replay) => ctx.replay = Some(replay),
                        Err(err) => {
                            // The client's body failed (it went away, or sent a bad chunk).
                            tracing::debug!(error = %err, "request body error");
                            this.state.set(State::Done);
                            outcome(span, "bad_request", StatusCode::BAD_REQUEST);
                            let mut res = synthetic(&ctx.upstream, StatusCode::BAD_REQUEST);
                            ctx.close_if_unread(&mut res);
                            return Poll::Ready(Ok(res));
                        }
                    }
                    ctx.buffering = None;
                    match ctx.start(span) {
                        Some(svc) => this.state.set(State::Ready { svc }),
                        None => {
                            let shared = &ctx.upstream.shared;
                            let status = if ctx.selection.refused {
                                tracing::warn!(upstream = %shared.name, "pinned peer unavailable (strict affinity)");
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                tracing::error!(upstream = %shared.name, "no live upstreams");
                                shared.unavailable
                            };
                            this.state.set(State::Done);
                            outcome(span, "unavailable", status);
                            let mut res = synthetic(&ctx.upstream, status);
                            ctx.decide(res.extensions_mut());
                            ctx.close_if_unread(&mut res);
                            return Poll::Ready(Ok(res));
                        }
                    }
                    continue;
                }
                StateProj::Ready { svc } => match ready!(svc.poll_ready(cx)) {
                    Ok(()) => {
                        let future = svc.call(ctx.request(gives_head_back::<S::Error>()));
                        this.state.set(State::Calling { future });
                        continue;
                    }
                    Err(err) => Err(err),
                },
                StateProj::Calling { future } => ready!(future.poll(cx)),
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };
            let Attempt {
                active,
                selected,
                started,
            } = ctx.current.take().expect("an attempt is under way");
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(started);
            let peers = active.peers();
            match result {
                Ok(res) => {
                    let status = res.status().as_u16();
                    peers.count(active.index(), Outcome::Status(status), elapsed, now);
                    peers.observe(active.index(), status >= 500, now);
                    let listed =
                        Condition::for_status(status).filter(|&c| ctx.upstream.next.contains(c));
                    let Some(condition) = listed else {
                        peers.record(active.index(), false, now);
                        this.state.set(State::Done);
                        outcome(span, "response", res.status());
                        return Poll::Ready(Ok(ctx.finish(res, active, selected)));
                    };
                    // Listed statuses count as failures, except 403 and 404 (nginx).
                    let counts = !matches!(status, 403 | 404);
                    peers.record(active.index(), counts, now);
                    peers.count_listed(active.index(), now);
                    if ctx.may_retry(condition, true) {
                        if let Some(svc) = ctx.start(span) {
                            tracing::debug!(peer = %selected.name(), status, "next upstream");
                            drop((res, active));
                            this.state.set(State::Ready { svc });
                            continue;
                        }
                    }
                    // No retry, or no peer left: the peer's own answer is the best.
                    this.state.set(State::Done);
                    outcome(span, "response", res.status());
                    return Poll::Ready(Ok(ctx.finish(res, active, selected)));
                }
                Err(err) => {
                    let mut err: BoxError = err.into();
                    if ctx.parts.is_none() {
                        // Not copied for this attempt (see `request`): take it back.
                        if let Some(e) = err.downcast_mut::<crate::http_peer::Error>() {
                            ctx.parts = e.take_request_head();
                        }
                    }
                    let failed = classify(&*err);
                    let kind = match failed.condition {
                        Condition::Timeout => FailureKind::Timeout,
                        Condition::InvalidHeader => FailureKind::InvalidHeader,
                        _ => FailureKind::Error,
                    };
                    peers.count(active.index(), Outcome::Failed(kind), elapsed, now);
                    peers.record(active.index(), true, now);
                    peers.observe(active.index(), true, now);
                    drop(active);
                    tracing::warn!(
                        peer = %selected.name(),
                        error = %err,
                        condition = failed.condition.as_str(),
                        "upstream attempt failed"
                    );
                    if ctx.may_retry(failed.condition, failed.sent) {
                        if let Some(svc) = ctx.start(span) {
                            this.state.set(State::Ready { svc });
                            continue;
                        }
                    }
                    let status = if failed.condition == Condition::Timeout {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    outcome(span, "failed", status);
                    let mut res = synthetic(&ctx.upstream, status);
                    ctx.decide(res.extensions_mut());
                    ctx.close_if_unread(&mut res);
                    res.extensions_mut().insert(selected);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(res));
                }
            }
        }
    }
}

/// Whether a peer's errors give a request's head back: [`HttpPeer`](crate::HttpPeer)'s do
/// ([`take_request_head`](crate::http_peer::Error::take_request_head)). Known when the
/// future is compiled, so the other peers' futures pay nothing for it.
fn gives_head_back<E: 'static>() -> bool {
    TypeId::of::<E>() == TypeId::of::<crate::http_peer::Error>()
}

/// The request's span: `upstream`, then `peer`, `attempt` and `affinity` (its source) for
/// each attempt, and at the end `outcome` (`response`, `failed`, `unavailable` or
/// `bad_request`) with the `status` sent back. A disabled span costs nothing.
fn request_span(upstream: &str) -> tracing::Span {
    tracing::info_span!(
        "upstream",
        upstream,
        peer = tracing::field::Empty,
        attempt = tracing::field::Empty,
        affinity = tracing::field::Empty,
        outcome = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

fn outcome(span: &tracing::Span, outcome: &'static str, status: StatusCode) {
    // As in `start`: a span no subscriber wants records nothing (with tracing's `log`
    // feature on, recording into it would still cost a few hundred instructions).
    if !span.is_disabled() {
        span.record("outcome", outcome);
        span.record("status", status.as_u16());
    }
}

impl<S, P, B> Ctx<S, P, B>
where
    P: Policy<Request<B>>,
{
    /// A peer's response, passed on: counts as active until its body ends, and carries the
    /// chosen peer and the affinity decision (and an inserted cookie if one is due).
    fn finish<R>(
        &self,
        res: Response<R>,
        active: Active,
        selected: SelectedPeer,
    ) -> Response<ResponseBody<R>> {
        let (mut parts, body) = res.into_parts();
        if let Some(table) = &self.members.affinity {
            table.respond(&self.selection.sticky, selected.route(), &mut parts.headers);
        }
        self.decide(&mut parts.extensions);
        parts.extensions.insert(selected);
        let mut res = Response::from_parts(parts, ResponseBody::upstream(body, active));
        self.close_if_unread(&mut res);
        res
    }

    /// When the client's body was not read to its end, hyper closes the client's connection
    /// after this response: say so (`Connection: close`, and the [`CloseConnection`] marker
    /// by which `ProxyHeaders` keeps it), so the client does not send another request on it.
    fn close_if_unread<R>(&self, res: &mut Response<R>) {
        if self.replay.as_ref().is_some_and(Replay::is_complete) {
            return;
        }
        res.headers_mut()
            .append(header::CONNECTION, HeaderValue::from_static("close"));
        res.extensions_mut().insert(CloseConnection);
    }

    /// Records how affinity decided, as a response extension and a tracing event.
    fn decide(&self, extensions: &mut http::Extensions) {
        let shared = &self.upstream.shared;
        let policy_source = shared.policy.affinity_source();
        if self.members.affinity.is_none() && policy_source.is_none() {
            return;
        }
        let decision = self.selection.decision(policy_source);
        tracing::debug!(
            upstream = %shared.name,
            source = decision.source().as_str(),
            route = decision.route(),
            fallback = decision.is_fallback(),
            "affinity"
        );
        extensions.insert(decision);
    }
}

impl<S, P, B> fmt::Debug for ResponseFuture<S, P, B>
where
    S: Service<Request<ReplayBody<B>>>,
    P: Policy<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.ctx.attempts)
            .finish_non_exhaustive()
    }
}
