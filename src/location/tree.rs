//! The prefix and exact locations of one level, in a radix tree: a lookup walks the path once,
//! whatever the number of locations.

/// What the static locations say about a path (nginx's `ngx_http_core_find_static_location`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Static {
    /// An exact (`=`) location equals the path: it wins at once.
    Exact(u32),
    /// The longest prefix location that the path starts with.
    Prefix(u32),
    /// No static location applies.
    None,
}

/// A radix tree of location names. Each node holds the location ids whose name ends there.
#[derive(Debug, Default)]
pub(crate) struct PrefixTree {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// The bytes on the edge into this node (empty for the root only).
    label: Box<[u8]>,
    /// First byte of each child's label, in the same order as `children` (sorted).
    first: Vec<u8>,
    children: Vec<Node>,
    prefix: Option<u32>,
    exact: Option<u32>,
}

/// Which slot of a node a location takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Prefix,
    Exact,
}

impl PrefixTree {
    /// Adds location `id` named `name`. Returns the id already in that slot, if any (a
    /// duplicate location).
    pub(crate) fn insert(&mut self, name: &[u8], slot: Slot, id: u32) -> Option<u32> {
        let node = self.root.node_for(name);
        let place = match slot {
            Slot::Prefix => &mut node.prefix,
            Slot::Exact => &mut node.exact,
        };
        match *place {
            Some(existing) => Some(existing),
            None => {
                *place = Some(id);
                None
            }
        }
    }

    /// Whether the tree holds no location.
    pub(crate) fn is_empty(&self) -> bool {
        self.root.children.is_empty() && self.root.prefix.is_none() && self.root.exact.is_none()
    }

    /// The exact location equal to `path`, else the longest prefix location of `path`.
    #[inline]
    pub(crate) fn find(&self, path: &[u8]) -> Static {
        let mut node = &self.root;
        let mut rest = path;
        let mut best = None;
        loop {
            if rest.is_empty() {
                if let Some(id) = node.exact {
                    return Static::Exact(id);
                }
            }
            if node.prefix.is_some() {
                best = node.prefix;
            }
            let Some((&b, _)) = rest.split_first() else {
                break;
            };
            let Some(i) = node.child_index(b) else {
                break;
            };
            let child = &node.children[i];
            match rest.strip_prefix(&*child.label) {
                Some(after) => {
                    rest = after;
                    node = child;
                }
                None => break,
            }
        }
        best.map_or(Static::None, Static::Prefix)
    }
}

impl Node {
    #[inline]
    fn child_index(&self, b: u8) -> Option<usize> {
        if self.first.len() <= 8 {
            self.first.iter().position(|&f| f == b)
        } else {
            self.first.binary_search(&b).ok()
        }
    }

    /// The node for `name` below `self`, splitting edges and adding nodes as needed.
    fn node_for(&mut self, name: &[u8]) -> &mut Node {
        if name.is_empty() {
            return self;
        }
        match self.first.binary_search(&name[0]) {
            Err(at) => {
                self.first.insert(at, name[0]);
                self.children.insert(
                    at,
                    Node {
                        label: name.into(),
                        ..Node::default()
                    },
                );
                &mut self.children[at]
            }
            Ok(at) => {
                let common = self.children[at]
                    .label
                    .iter()
                    .zip(name)
                    .take_while(|(a, b)| a == b)
                    .count();
                if common < self.children[at].label.len() {
                    // Split the edge: a new node for the shared part, the old child below it.
                    let old = std::mem::take(&mut self.children[at]);
                    let (shared, tail) = old.label.split_at(common);
                    let mid = Node {
                        label: shared.into(),
                        first: vec![tail[0]],
                        children: vec![Node {
                            label: tail.into(),
                            ..old
                        }],
                        prefix: None,
                        exact: None,
                    };
                    self.children[at] = mid;
                }
                self.children[at].node_for(&name[common..])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(names: &[(&str, Slot)]) -> PrefixTree {
        let mut t = PrefixTree::default();
        for (id, (name, slot)) in names.iter().enumerate() {
            assert_eq!(t.insert(name.as_bytes(), *slot, id as u32), None);
        }
        t
    }

    #[test]
    fn longest_prefix_and_exact() {
        use Slot::*;
        let t = tree(&[
            ("/", Prefix),             // 0
            ("/api/", Prefix),         // 1
            ("/api/v1/", Prefix),      // 2
            ("/api/v1/users", Exact),  // 3
            ("/apple", Prefix),        // 4
            ("/a", Exact),             // 5
            ("/api/v1/users", Prefix), // 6
            ("/static", Prefix),       // 7
            ("/stat", Exact),          // 8
        ]);
        let find = |p: &str| t.find(p.as_bytes());
        assert_eq!(find("/"), Static::Prefix(0));
        assert_eq!(find("/x"), Static::Prefix(0));
        assert_eq!(find("/api"), Static::Prefix(0));
        assert_eq!(find("/api/"), Static::Prefix(1));
        assert_eq!(find("/api/v2"), Static::Prefix(1));
        assert_eq!(find("/api/v1/x"), Static::Prefix(2));
        assert_eq!(find("/api/v1/users"), Static::Exact(3));
        assert_eq!(find("/api/v1/users/1"), Static::Prefix(6));
        assert_eq!(find("/apple/pie"), Static::Prefix(4));
        assert_eq!(find("/appl"), Static::Prefix(0));
        assert_eq!(find("/a"), Static::Exact(5));
        assert_eq!(find("/ab"), Static::Prefix(0));
        assert_eq!(find("/stat"), Static::Exact(8));
        assert_eq!(find("/stati"), Static::Prefix(0));
        assert_eq!(find("/static/x"), Static::Prefix(7));
        assert_eq!(find(""), Static::None);
        assert_eq!(find("x"), Static::None);
    }

    #[test]
    fn duplicates_are_reported() {
        let mut t = PrefixTree::default();
        assert_eq!(t.insert(b"/a", Slot::Prefix, 0), None);
        assert_eq!(t.insert(b"/a", Slot::Exact, 1), None);
        assert_eq!(t.insert(b"/a", Slot::Prefix, 2), Some(0));
        assert_eq!(t.insert(b"/a", Slot::Exact, 3), Some(1));
    }

    #[test]
    fn many_children_use_binary_search() {
        let mut t = PrefixTree::default();
        for (i, c) in (b'a'..=b'z').enumerate() {
            let name = [b'/', c, b'/'];
            t.insert(&name, Slot::Prefix, i as u32);
        }
        assert_eq!(t.find(b"/q/x"), Static::Prefix((b'q' - b'a') as u32));
        assert_eq!(t.find(b"/Q/x"), Static::None);
    }
}
