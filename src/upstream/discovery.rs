//! Membership driven from outside: a `tower::discover::Discover` stream, or DNS.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use tower::discover::{Change, Discover};

use super::Upstream;
use crate::policy::BuildIndex;
use crate::{ConfigError, Peer};

impl<S, P> Upstream<S, P>
where
    S: Clone,
    P: BuildIndex,
{
    /// Keeps the peers in step with a [`Discover`] stream until it ends: each
    /// `Change::Insert(key, service)` adds (or replaces) the peer named `key`, made by
    /// `make_peer`; each `Change::Remove(key)` removes it. Spawn the returned future.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower::discover::ServiceList;
    /// use tower_upstream::{upstream::ReplayBody, Peer, Upstream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let svc = tower::service_fn(|_: http::Request<ReplayBody<String>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(String::new()))
    /// });
    /// let upstream = Upstream::builder().peer(Peer::new("seed", svc.clone())).build().unwrap();
    /// // Any `Discover` works (a watch on a registry, a channel...); this one inserts two.
    /// let found = ServiceList::new(vec![svc.clone(), svc]);
    /// upstream
    ///     .discover(found, |key, svc| Peer::new(format!("found-{key}"), svc).weight(2))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(upstream.peer_names(), ["seed", "found-0", "found-1"]);
    /// # }
    ///     /// ```
    pub async fn discover<D, F>(&self, discover: D, make_peer: F) -> Result<(), D::Error>
    where
        D: Discover<Service = S>,
        D::Key: Display,
        F: Fn(String, S) -> Peer<S>,
    {
        let mut discover = pin!(discover);
        while let Some(change) = poll_fn(|cx| discover.as_mut().poll_discover(cx)).await {
            let result = match change? {
                Change::Insert(key, service) => {
                    let peer = make_peer(key.to_string(), service);
                    self.replace_peer(peer)
                }
                Change::Remove(key) => self.remove_peer(&key.to_string()),
            };
            if let Err(e) = result {
                tracing::warn!(upstream = %self.name(), error = %e, "discovery change refused");
            }
        }
        Ok(())
    }

    /// Adds `peer`, or replaces the peer of the same name: its state (requests in flight,
    /// failures, statistics) stays, its parameters are `peer`'s (its name and route stay).
    pub fn replace_peer(&self, peer: Peer<S>) -> Result<(), ConfigError> {
        self.shared.change(|peers| {
            match peers.iter().position(|p| p.name() == peer.name()) {
                Some(i) => peers[i] = peer,
                None => peers.push(peer),
            }
            Ok(())
        })
    }

    /// Re-resolves `host:port` every `every` and keeps one peer per address it resolves to
    /// (named by the address, made by `make_peer`), like nginx's `server ... resolve`. When
    /// the lookup fails, the peers stay as they were. Runs until dropped: spawn it.
    pub async fn resolve<F>(&self, host_port: String, every: Duration, make_peer: F)
    where
        F: Fn(SocketAddr) -> Peer<S>,
    {
        let mut mine: HashSet<SocketAddr> = HashSet::new();
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let found: HashSet<SocketAddr> = match tokio::net::lookup_host(&host_port).await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    tracing::warn!(upstream = %self.name(), host = %host_port, error = %e, "resolve failed; keeping the peers");
                    continue;
                }
            };
            for addr in found.difference(&mine) {
                if let Err(e) = self.replace_peer(make_peer(*addr)) {
                    tracing::warn!(upstream = %self.name(), %addr, error = %e, "resolved peer refused");
                }
            }
            for addr in mine.difference(&found) {
                if let Err(e) = self.remove_peer(&addr.to_string()) {
                    tracing::warn!(upstream = %self.name(), %addr, error = %e, "stale peer kept");
                }
            }
            mine = found;
        }
    }
}
