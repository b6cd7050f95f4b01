//! The local alloc window (`local_alloc:NNNN`): a run of clusters this node reserved in the
//! global bitmap, handed out to small data allocations without touching the global bitmap.
//!
//! The window's clusters are all set in the global bitmap while it exists; its own bitmap says
//! which of them were handed out. A slide returns the unused bits (`ocfs2_sync_local_to_main`)
//! and reserves a new window. When the global bitmap has no run of the window's size, the
//! window shrinks by half each time until it would drop to 1 MB, then local alloc is disabled
//! (`ocfs2_recalc_la_window`); it comes back when a large free is seen or after 30 seconds.
//! Closing the volume, and recovery after a crash, return the unused bits and clear the window.
//!
//! fsck.ocfs2 accepts this state: bits clear in a window must be set in the global bitmap;
//! bits set in a window may have been freed since.

use super::super::error::{Error, Result};
use super::super::tx::Tx;
use super::global;
use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
use crate::format::group::{count_set_bits, set_bit, test_bit};
use crate::format::local_alloc::{megabytes_to_clusters, LocalAlloc};
use crate::format::{SystemInode, LOCAL_ALLOC_FL};
use std::time::{Duration, Instant};

/// How long local alloc stays disabled after the global bitmap ran out of windows
/// (`OCFS2_LA_ENABLE_INTERVAL`).
const REENABLE_AFTER: Duration = Duration::from_secs(30);

/// Whether small allocations go through the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaMode {
    Enabled,
    /// Enabled with a window smaller than the default.
    Throttled,
    Disabled,
}

/// The node's in-memory view of its window policy; the window itself is on disk.
#[derive(Debug, Clone)]
pub(crate) struct LaState {
    pub mode: LaMode,
    /// Window size in clusters asked for at the next slide.
    pub bits: u32,
    pub default_bits: u32,
    /// The global bitmap group the last window came from.
    pub last_group: u64,
    disabled_at: Option<Instant>,
}

impl LaState {
    pub fn new(default_bits: u32) -> Self {
        let mode = if default_bits == 0 { LaMode::Disabled } else { LaMode::Enabled };
        LaState { mode, bits: default_bits, default_bits, last_group: 0, disabled_at: None }
    }

    fn enable(&mut self) {
        if self.default_bits > 0 {
            self.mode = LaMode::Enabled;
            self.bits = self.default_bits;
            self.disabled_at = None;
        }
    }

    fn usable(&mut self) -> bool {
        if self.mode == LaMode::Disabled && self.disabled_at.is_some_and(|t| t.elapsed() >= REENABLE_AFTER) {
            self.enable();
        }
        self.mode != LaMode::Disabled
    }
}

/// A slot's window as the transaction sees it.
struct Window {
    ino: u64,
    di: Dinode,
    la: LocalAlloc,
}

impl Window {
    fn total(&self) -> u32 {
        self.di.i_total()
    }

    fn used(&self) -> u32 {
        self.di.i_used()
    }
}

fn load(tx: &Tx, slot: u16) -> Result<Window> {
    let ino = tx.vol.system_inode(SystemInode::LocalAlloc, slot)?;
    let di = tx.dinode(ino)?;
    if di.i_flags & LOCAL_ALLOC_FL == 0 {
        return Err(Error::corrupt(ino, "local alloc inode lacks OCFS2_LOCAL_ALLOC_FL"));
    }
    let block = tx.block(ino, super::super::meta::BlockKind::Inode)?;
    let la = LocalAlloc::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
    let w = Window { ino, di, la };
    let (total, used) = (w.total(), w.used());
    if total > w.la.bits() || used > total {
        return Err(Error::corrupt(
            ino,
            format!("window of {total} bits ({used} used) in a {}-bit bitmap", w.la.bits()),
        ));
    }
    if total > 0 && u64::from(w.la.la_bm_off) + u64::from(total) > u64::from(tx.vol.geo.clusters) {
        return Err(Error::corrupt(ino, "window reaches past the volume's end"));
    }
    let set = count_set_bits(&w.la.la_bitmap, total as usize) as u32;
    if set != used {
        return Err(Error::corrupt(ino, format!("window says {used} bits are used, its bitmap has {set}")));
    }
    Ok(w)
}

fn store(tx: &mut Tx, w: &Window) -> Result<()> {
    let ino = w.ino;
    let (di, la) = (w.di.clone(), w.la.clone());
    tx.update_dinode(ino, |head, block| {
        *head = di;
        la.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))
    })
}

/// Claims `1..=wanted` contiguous clusters for file data: from the window when the request is
/// small enough (at most half a window), else (or when no window can be had) from the global
/// bitmap. Returns (first cluster, clusters).
pub(crate) fn claim_data(tx: &mut Tx, wanted: u32) -> Result<(u32, u32)> {
    if wanted == 0 {
        return Err(Error::InvalidArgument("a claim of 0 clusters".into()));
    }
    let small = {
        let la = &mut tx.ws.alloc.la;
        la.usable() && wanted <= la.bits / 2
    };
    if small {
        match claim_from_window(tx, wanted, true) {
            Err(Error::NoSpace(_)) => {}
            other => return other,
        }
    }
    match global::claim_clusters(tx, 1, wanted) {
        // The window's unused bits are the last free space: use them rather than fail.
        Err(Error::NoSpace(why)) => claim_from_window(tx, wanted, false).map_err(|_| Error::NoSpace(why)),
        other => other,
    }
}

fn claim_from_window(tx: &mut Tx, wanted: u32, may_slide: bool) -> Result<(u32, u32)> {
    let slot = tx.ws.slot;
    let mut w = load(tx, slot)?;
    if may_slide && w.total() - w.used() < wanted {
        slide(tx, slot)?;
        w = load(tx, slot)?;
    }
    let (off, len) = best_run(&w.la.la_bitmap, w.total(), wanted)
        .ok_or_else(|| Error::NoSpace("the local alloc window is full".into()))?;
    for b in off..off + len {
        set_bit(&mut w.la.la_bitmap, b as usize);
    }
    let (used, total) = (w.used() + len, w.total());
    w.di.set_bitmap1(used, total);
    store(tx, &w)?;
    Ok((w.la.la_bm_off + off, len))
}

/// The first run of `wanted` clear bits among the first `total`, else the longest one.
fn best_run(bitmap: &[u8], total: u32, wanted: u32) -> Option<(u32, u32)> {
    let (mut best, mut start, mut found) = ((0u32, 0u32), 0u32, 0u32);
    for b in 0..total {
        if test_bit(bitmap, b as usize) {
            found = 0;
            continue;
        }
        if found == 0 {
            start = b;
        }
        found += 1;
        if found > best.1 {
            best = (start, found);
        }
        if found == wanted {
            break;
        }
    }
    (best.1 > 0).then_some(best)
}

/// Returns the window's unused bits and reserves a new window.
fn slide(tx: &mut Tx, slot: u16) -> Result<()> {
    sync_to_main(tx, slot)?;
    new_window(tx, slot)
}

fn new_window(tx: &mut Tx, slot: u16) -> Result<()> {
    let one_mb = megabytes_to_clusters(tx.vol.geo.cluster_bits, 1);
    loop {
        if !tx.ws.alloc.la.usable() {
            return Err(Error::NoSpace("local alloc is disabled".into()));
        }
        let mut w = load(tx, slot)?;
        let bits = tx.ws.alloc.la.bits.min(w.la.bits());
        let hint = Some(tx.ws.alloc.la.last_group);
        match global::claim_clusters_near(tx, bits, bits, hint) {
            Ok((start, n, group)) => {
                w.la.la_bm_off = start;
                w.la.la_bitmap.fill(0);
                w.di.set_bitmap1(0, n);
                store(tx, &w)?;
                tx.ws.alloc.la.last_group = group;
                return Ok(());
            }
            Err(Error::NoSpace(_)) => {
                let la = &mut tx.ws.alloc.la;
                let half = bits >> 1;
                if half > one_mb {
                    la.mode = LaMode::Throttled;
                    la.bits = half;
                } else {
                    la.mode = LaMode::Disabled;
                    la.disabled_at = Some(Instant::now());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Gives the window's unused bits back to the global bitmap and clears the window of `slot`:
/// at close, before a slide, and when recovering a slot after a crash.
pub(crate) fn sync_to_main(tx: &mut Tx, slot: u16) -> Result<()> {
    let mut w = load(tx, slot)?;
    let total = w.total();
    if total == 0 {
        return Ok(());
    }
    let mut b = 0u32;
    while b < total {
        if test_bit(&w.la.la_bitmap, b as usize) {
            b += 1;
            continue;
        }
        let start = b;
        while b < total && !test_bit(&w.la.la_bitmap, b as usize) {
            b += 1;
        }
        global::release_clusters(tx, w.la.la_bm_off + start, b - start)?;
    }
    w.la.la_bm_off = 0;
    w.la.la_bitmap.fill(0);
    w.di.set_bitmap1(0, 0);
    store(tx, &w)
}

/// Tells the window policy that `count` clusters went back to the global bitmap: a free at
/// least as large as a default window re-enables a throttled or disabled local alloc
/// (`ocfs2_local_alloc_seen_free_bits`).
pub(crate) fn seen_free_bits(tx: &mut Tx, count: u32) {
    let la = &mut tx.ws.alloc.la;
    if la.mode != LaMode::Enabled && count >= la.default_bits {
        la.enable();
    }
}

/// (used, total, first cluster) of `slot`'s window.
#[cfg(test)]
pub(crate) fn usage(tx: &Tx, slot: u16) -> Result<(u32, u32, u32)> {
    let w = load(tx, slot)?;
    Ok((w.used(), w.total(), w.la.la_bm_off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_run_prefers_first_full_run() {
        let bitmap = [0b0000_0011u8, 0b1111_0000, 0];
        // Clear: bits 2..12 (10 bits) and 16..24 (8 bits).
        assert_eq!(best_run(&bitmap, 24, 2), Some((2, 2)));
        assert_eq!(best_run(&bitmap, 24, 8), Some((2, 8)));
        assert_eq!(best_run(&bitmap, 24, 11), Some((2, 10)), "longest when no run is long enough");
        assert_eq!(best_run(&bitmap, 8, 8), Some((2, 6)), "bits past the window are not used");
        assert_eq!(best_run(&[0xFF], 8, 1), None);
        let mut la = LaState::new(64);
        la.mode = LaMode::Disabled;
        la.disabled_at = Some(Instant::now());
        assert!(!la.usable());
        la.disabled_at = Some(Instant::now() - REENABLE_AFTER);
        assert!(la.usable() && la.bits == 64);
        assert!(!LaState::new(0).usable());
    }
}
