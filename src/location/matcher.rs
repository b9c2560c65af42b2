//! nginx's location search (`ngx_http_core_find_location`) over compiled levels.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use regex::bytes::Regex;

use super::matched::{Captured, LocationInfo, MatchedLocation};
use super::normalize::{normalize, InvalidPath};
use super::regexes::{captures, RegexLevel};
use super::tree::{PrefixTree, Static};

/// The locations at one level: the server's, or those nested in one location.
#[derive(Debug, Default)]
pub(crate) struct Level {
    pub(crate) tree: PrefixTree,
    pub(crate) regexes: Option<RegexLevel>,
}

/// One compiled location.
#[derive(Debug)]
pub(crate) struct Loc {
    pub(crate) info: Arc<LocationInfo>,
    /// `^~`.
    pub(crate) noregex: bool,
    /// For regex locations: the regex alone, for captures.
    pub(crate) regex: Option<Regex>,
    /// The nested locations, if any.
    pub(crate) children: Option<Level>,
}

/// Every location of a [`Locations`](super::Locations), ready to match.
#[derive(Debug)]
pub(crate) struct Matcher {
    pub(crate) top: Level,
    pub(crate) locs: Box<[Loc]>,
    pub(crate) named: HashMap<Box<str>, u32>,
    pub(crate) merge_slashes: bool,
}

/// The outcome of a search: the location, and the last regex location that matched (whose
/// captures the request gets).
#[derive(Debug, Default, Clone, Copy)]
struct Found {
    location: Option<u32>,
    regex: Option<u32>,
}

impl Matcher {
    /// The location for the raw request path `raw` (percent-encoded, as sent).
    pub(crate) fn find(&self, raw: &[u8]) -> Result<Option<MatchedLocation>, InvalidPath> {
        let normalized = normalize(raw, self.merge_slashes)?;
        let mut found = Found::default();
        self.find_in(&self.top, &normalized.path, &mut found);
        let Some(id) = found.location else {
            return Ok(None);
        };
        let captures = found.regex.and_then(|rid| {
            let regex = self.locs[rid as usize].regex.as_ref()?;
            // Only groups beyond the whole match are worth the second search.
            if regex.captures_len() <= 1 {
                return None;
            }
            let locations = captures(regex, &normalized.path)?;
            Some(Arc::new(Captured {
                regex: regex.clone(),
                locations,
            }))
        });
        Ok(Some(MatchedLocation {
            info: self.locs[id as usize].info.clone(),
            path: Bytes::copy_from_slice(&normalized.path),
            quoted: normalized.quoted,
            captures,
        }))
    }

    /// The named location `name`, for a request to the raw path `raw`.
    pub(crate) fn named(&self, name: &str, raw: &[u8]) -> Option<MatchedLocation> {
        let id = *self.named.get(name)?;
        // The path is informative here; an invalid one is kept as it came.
        let (path, quoted) = match normalize(raw, self.merge_slashes) {
            Ok(n) => (Bytes::copy_from_slice(&n.path), n.quoted),
            Err(_) => (Bytes::copy_from_slice(raw), raw.contains(&b'%')),
        };
        Some(MatchedLocation {
            info: self.locs[id as usize].info.clone(),
            path,
            quoted,
            captures: None,
        })
    }

    /// One level of the search; `true` when the answer is final (an exact location, or a
    /// regex location, matched at this level or below).
    fn find_in(&self, level: &Level, path: &[u8], found: &mut Found) -> bool {
        let mut noregex = false;
        match level.tree.find(path) {
            Static::Exact(id) => {
                found.location = Some(id);
                return true;
            }
            Static::Prefix(id) => {
                found.location = Some(id);
                let loc = &self.locs[id as usize];
                noregex = loc.noregex;
                if let Some(children) = &loc.children {
                    if self.find_in(children, path, found) {
                        return true;
                    }
                }
            }
            Static::None => {}
        }
        if noregex {
            return false;
        }
        let Some(regexes) = &level.regexes else {
            return false;
        };
        let Some(id) = regexes.first_match(path) else {
            return false;
        };
        found.location = Some(id);
        found.regex = Some(id);
        if let Some(children) = &self.locs[id as usize].children {
            self.find_in(children, path, found);
        }
        true
    }
}
