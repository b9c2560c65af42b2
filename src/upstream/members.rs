//! The peers of an upstream as one immutable snapshot, swapped atomically when membership
//! changes (nginx Plus's upstream API, in the tower way).

use std::collections::HashSet;
use std::sync::Arc;

use super::{Shared, Tier};
use crate::affinity::{Affinity, Fallback, Table};
use crate::policy::BuildIndex;
use crate::{ConfigError, OutlierDetection, Peer, PeerSet, MAX_WEIGHT};

/// One version of an upstream's peers: their configuration, the primary and backup tiers
/// and the affinity table built from them. Requests hold the version they started with.
pub(crate) struct Members<S, P>
where
    P: BuildIndex,
{
    pub(crate) peers: Vec<Peer<S>>,
    pub(crate) primary: Tier<S, P>,
    pub(crate) backup: Option<Tier<S, P>>,
    pub(crate) affinity: Option<Table>,
}

/// What a rebuild needs besides the peers.
pub(crate) struct Settings<'a, P> {
    pub(crate) name: &'a str,
    pub(crate) policy: &'a P,
    pub(crate) outlier: Option<OutlierDetection>,
    pub(crate) affinity: Option<&'a (Affinity, Fallback)>,
}

/// Checks a list of peers: weights in range, unique names, at least one primary.
pub(crate) fn validate<S>(upstream: &str, peers: &[Peer<S>]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for p in peers {
        if !(1..=MAX_WEIGHT).contains(&p.weight) {
            return Err(ConfigError::InvalidWeight {
                peer: p.name.to_string(),
                weight: p.weight,
            });
        }
        if !names.insert(&p.name) {
            return Err(ConfigError::DuplicatePeer {
                upstream: upstream.to_owned(),
                peer: p.name.to_string(),
            });
        }
    }
    if peers.iter().all(|p| p.backup) {
        return Err(ConfigError::NoPeers {
            upstream: upstream.to_owned(),
        });
    }
    Ok(())
}

impl<S, P> Members<S, P>
where
    S: Clone,
    P: BuildIndex,
{
    /// Builds the tiers of `peers`; peers also in `previous` keep their state.
    pub(crate) fn build(
        peers: Vec<Peer<S>>,
        settings: &Settings<'_, P>,
        previous: Option<&Self>,
    ) -> Result<Self, ConfigError> {
        validate(settings.name, &peers)?;
        let (backup, primary): (Vec<_>, Vec<_>) = peers.iter().cloned().partition(|p| p.backup);
        // nginx's "single" case: one primary and no backup peer.
        let single = primary.len() == 1 && backup.is_empty();
        let primary = Tier::new(
            settings,
            primary,
            single,
            previous.map(|m| &*m.primary.peers),
        );
        let backup = (!backup.is_empty()).then(|| {
            let before = previous.and_then(|m| m.backup.as_ref()).map(|t| &*t.peers);
            Tier::new(settings, backup, false, before)
        });
        let affinity = match settings.affinity {
            Some((a, f)) => Some(Table::new(
                a.clone(),
                f.clone(),
                &primary.peers,
                backup.as_ref().map(|t| &*t.peers),
            )?),
            None => None,
        };
        Ok(Self {
            peers,
            primary,
            backup,
            affinity,
        })
    }
}

impl<S, P> Tier<S, P>
where
    P: BuildIndex,
{
    fn new(
        settings: &Settings<'_, P>,
        peers: Vec<Peer<S>>,
        single: bool,
        previous: Option<&PeerSet>,
    ) -> Self {
        let mut set = PeerSet::rebuild(&peers, single, previous);
        if let Some(od) = settings.outlier {
            set = set.with_outlier_detection(od);
        }
        let index = settings.policy.build_index(&set);
        Tier {
            peers: Arc::new(set),
            services: peers.into_iter().map(|p| p.service).collect(),
            index,
        }
    }
}

impl<S, P> Shared<S, P>
where
    S: Clone,
    P: BuildIndex,
{
    fn settings(&self) -> Settings<'_, P> {
        Settings {
            name: &self.name,
            policy: &self.policy,
            outlier: self.outlier,
            affinity: self.affinity.as_ref(),
        }
    }

    /// Applies `change` to the list of peers and swaps in the new version. Changes are
    /// serialised; requests keep going on the version they started with.
    pub(crate) fn change(
        &self,
        change: impl FnOnce(&mut Vec<Peer<S>>) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let _one_at_a_time = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.members.load_full();
        let mut peers = current.peers.clone();
        change(&mut peers)?;
        let next = Members::build(peers, &self.settings(), Some(&current))?;
        self.members.store(Arc::new(next));
        Ok(())
    }
}
