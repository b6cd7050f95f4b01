//! A set of node numbers, the library's form of the kernel's `O2NM_MAX_NODES` bitmaps.

use crate::format::O2NM_MAX_NODES;
use std::fmt;

/// Node numbers `0..O2NM_MAX_NODES` (0 to 254); 255 is o2nm's "no node" and never a member.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NodeMap([u64; 4]);

impl NodeMap {
    /// The empty set.
    pub const fn new() -> Self {
        NodeMap([0; 4])
    }

    /// Every node number o2nm allows.
    pub fn all() -> Self {
        (0..O2NM_MAX_NODES).map(|n| n as u8).collect()
    }

    /// Adds `node`; false when it was already present or is not a valid node number.
    pub fn insert(&mut self, node: u8) -> bool {
        if u32::from(node) >= O2NM_MAX_NODES || self.contains(node) {
            return false;
        }
        self.0[usize::from(node / 64)] |= 1 << (node % 64);
        true
    }

    /// Removes `node`; false when it was absent.
    pub fn remove(&mut self, node: u8) -> bool {
        let present = self.contains(node);
        self.0[usize::from(node / 64)] &= !(1 << (node % 64));
        present
    }

    pub fn contains(&self, node: u8) -> bool {
        self.0[usize::from(node / 64)] & (1 << (node % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(move |n| self.contains(*n))
    }

    pub fn lowest(&self) -> Option<u8> {
        self.iter().next()
    }

    pub fn highest(&self) -> Option<u8> {
        (0..=u8::MAX).rev().find(|n| self.contains(*n))
    }

    /// Members of either set.
    pub fn union(&self, other: &NodeMap) -> NodeMap {
        NodeMap([self.0[0] | other.0[0], self.0[1] | other.0[1], self.0[2] | other.0[2], self.0[3] | other.0[3]])
    }

    /// The members as a vector, for printing and comparing in tests.
    pub fn to_vec(&self) -> Vec<u8> {
        self.iter().collect()
    }
}

impl FromIterator<u8> for NodeMap {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        let mut map = NodeMap::new();
        for n in iter {
            map.insert(n);
        }
        map
    }
}

impl fmt::Debug for NodeMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_node_numbers_0_to_254_only() {
        let mut m = NodeMap::new();
        assert!(m.is_empty() && m.lowest().is_none() && m.highest().is_none());
        assert!(m.insert(0) && m.insert(63) && m.insert(64) && m.insert(254));
        assert!(!m.insert(255) && !m.insert(64));
        assert_eq!(m.to_vec(), vec![0, 63, 64, 254]);
        assert_eq!((m.len(), m.lowest(), m.highest()), (4, Some(0), Some(254)));
        assert!(m.remove(63) && !m.remove(63) && !m.remove(255));
        assert_eq!(format!("{m:?}"), "{0, 64, 254}");
        assert_eq!(NodeMap::all().len(), 255);
        let u = m.union(&[1u8, 2].into_iter().collect());
        assert_eq!(u.to_vec(), vec![0, 1, 2, 64, 254]);
    }
}
