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

/// xorshift64*: deterministic, seeds printed by the tests that use it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The seed of a randomized test: `$OCFS2_TEST_SEED` to replay one, else the clock.
pub fn seed() -> u64 {
    std::env::var("OCFS2_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}
