//! Helpers for the journal's unit and crash tests: small volumes in memory with a journal
//! file at a known place, and a seeded generator.

use super::{Journal, JournalMap};
use crate::device::{BlockDevice, MemDevice};
use crate::format::jbd2::JournalSuperblock;
use std::sync::Arc;

pub const UUID: [u8; 16] = *b"ocfs2-rs-journal";

/// A volume of `blocks` blocks whose journal occupies `jlen` blocks from `jstart`, with a
/// clean v2 superblock (`s_start` 0) carrying `incompat` and `compat` features.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub bs: u32,
    pub blocks: u64,
    pub jstart: u64,
    pub jlen: u32,
    pub incompat: u32,
    pub compat: u32,
}

impl Layout {
    pub fn new(bs: u32, jlen: u32) -> Self {
        Layout { bs, blocks: 512, jstart: 16, jlen, incompat: 0, compat: 0 }
    }

    pub fn map(&self) -> JournalMap {
        JournalMap::contiguous(self.jstart, u64::from(self.jlen)).unwrap()
    }

    /// The image bytes of a freshly formatted volume: home blocks hold a pattern of their
    /// own number, the journal a clean superblock.
    pub fn image(&self) -> Vec<u8> {
        let bs = self.bs as usize;
        let mut img = vec![0u8; self.blocks as usize * bs];
        for b in 0..self.blocks as usize {
            img[b * bs..(b + 1) * bs].fill((b % 251) as u8);
        }
        let j = self.jstart as usize * bs;
        img[j..j + self.jlen as usize * bs].fill(0);
        let mut sb = JournalSuperblock::new(self.bs, self.jlen, UUID, self.incompat);
        sb.s_feature_compat = self.compat;
        sb.s_start = 0;
        sb.encode(&mut img[j..j + bs]).unwrap();
        img
    }

    pub fn block<'a>(&self, img: &'a [u8], b: u64) -> &'a [u8] {
        let bs = self.bs as usize;
        &img[b as usize * bs..(b as usize + 1) * bs]
    }

    pub fn open<D: BlockDevice>(&self, dev: D) -> Journal<D> {
        Journal::open(dev, self.map(), self.bs, UUID).unwrap()
    }

    /// Opens a journal on a copy of `img`.
    pub fn open_copy(&self, img: &[u8]) -> Journal<Arc<MemDevice>> {
        self.open(Arc::new(MemDevice::from_bytes(img.to_vec())))
    }
}

pub use crate::testing::{seed, Rng};
