//! Where each block of a journal file lives on the device.
//!
//! The journal is an ordinary file (usually one extent); JBD2 addresses it by logical block.
//! The caller builds the map from the journal inode's extents, so this module needs no
//! knowledge of extent trees.

use super::error::{JournalError, Result};

/// One contiguous piece of the journal: `count` device blocks from `first_blkno`, holding the
/// journal's logical blocks from `logical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    logical: u64,
    first_blkno: u64,
    count: u64,
}

/// Logical journal block → device block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMap {
    runs: Vec<Run>,
    len: u64,
}

impl JournalMap {
    /// A map from `(first_blkno, count)` runs given in logical order. Empty runs are refused,
    /// as are runs whose end overflows.
    pub fn from_runs(runs: &[(u64, u64)]) -> Result<Self> {
        let mut out = Vec::with_capacity(runs.len());
        let mut logical = 0u64;
        for (i, &(first_blkno, count)) in runs.iter().enumerate() {
            if count == 0 {
                return Err(JournalError::InvalidArgument(format!("journal run {i} is empty")));
            }
            first_blkno
                .checked_add(count)
                .ok_or_else(|| JournalError::InvalidArgument(format!("journal run {i} overflows")))?;
            out.push(Run { logical, first_blkno, count });
            logical = logical
                .checked_add(count)
                .ok_or_else(|| JournalError::InvalidArgument("journal runs overflow".into()))?;
        }
        Ok(JournalMap { runs: out, len: logical })
    }

    /// A journal in one extent.
    pub fn contiguous(first_blkno: u64, count: u64) -> Result<Self> {
        Self::from_runs(&[(first_blkno, count)])
    }

    /// Blocks the map covers.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device block of logical block `logical`, if the map covers it.
    pub fn device_block(&self, logical: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.logical + r.count <= logical);
        let r = self.runs.get(i)?;
        (logical >= r.logical).then(|| r.first_blkno + (logical - r.logical))
    }

    /// The device block one past the last one the map uses.
    pub fn device_end(&self) -> u64 {
        self.runs.iter().map(|r| r.first_blkno + r.count).max().unwrap_or(0)
    }

    /// The runs as `(first_blkno, count)`.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|r| (r.first_blkno, r.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_logical_blocks_across_runs() {
        let m = JournalMap::from_runs(&[(100, 3), (50, 2), (200, 1)]).unwrap();
        assert_eq!(m.len(), 6);
        let got: Vec<_> = (0..7).map(|l| m.device_block(l)).collect();
        assert_eq!(got, [Some(100), Some(101), Some(102), Some(50), Some(51), Some(200), None]);
        assert_eq!(m.device_end(), 201);
        assert_eq!(m.runs().collect::<Vec<_>>(), [(100, 3), (50, 2), (200, 1)]);
    }

    #[test]
    fn refuses_empty_and_overflowing_runs() {
        assert!(JournalMap::from_runs(&[(1, 0)]).is_err());
        assert!(JournalMap::from_runs(&[(u64::MAX, 2)]).is_err());
        assert!(JournalMap::from_runs(&[]).unwrap().is_empty());
        assert_eq!(JournalMap::contiguous(7, 4).unwrap().device_block(3), Some(10));
    }
}
