//! A wrapper that makes a healthy device fail on purpose, for tests of error paths and crashes.
//!
//! Faults are chosen by a [`FaultPlan`]: fail the n-th read or write (counting from 0), fail
//! every access that touches a byte range, or "crash" after the n-th write, after which writes
//! are silently dropped (as a power cut would lose them), optionally tearing the last one.

use super::{BlockDevice, DeviceError};
use parking_lot::{Condvar, Mutex};

/// One kind of injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The read with this index (0-based, counting every read) fails with EIO.
    FailRead(u64),
    /// The write with this index fails with EIO and changes nothing.
    FailWrite(u64),
    /// Every read touching `[start, end)` fails with EIO.
    FailReadRange { start: u64, end: u64 },
    /// Every write touching `[start, end)` fails with EIO.
    FailWriteRange { start: u64, end: u64 },
    /// Writes with an index above `last` are dropped while reporting success. When
    /// `torn_bytes` is set, write `last` itself lands only its first `torn_bytes` bytes.
    CrashAfterWrite { last: u64, torn_bytes: Option<usize> },
    /// Every write waits (the disk stalls) until the plan is replaced without this fault.
    StallWrites,
}

/// The faults a [`FaultDevice`] injects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub faults: Vec<FaultKind>,
}

impl FaultPlan {
    pub fn new() -> Self {
        FaultPlan::default()
    }

    /// Adds a fault to the plan.
    pub fn with(mut self, fault: FaultKind) -> Self {
        self.faults.push(fault);
        self
    }
}

#[derive(Default)]
struct Counters {
    reads: u64,
    writes: u64,
    injected: u64,
}

/// A device that passes everything to `inner` except what its plan says to fail.
pub struct FaultDevice<D: BlockDevice> {
    inner: D,
    plan: Mutex<FaultPlan>,
    /// Signalled when the plan changes, to release stalled writes.
    plan_changed: Condvar,
    counters: Mutex<Counters>,
}

fn overlaps(offset: u64, len: usize, start: u64, end: u64) -> bool {
    offset < end && offset.saturating_add(len as u64) > start
}

fn eio(op: &'static str, offset: u64, len: usize) -> DeviceError {
    DeviceError::Io { op, offset, len, errno: libc::EIO }
}

impl<D: BlockDevice> FaultDevice<D> {
    pub fn new(inner: D, plan: FaultPlan) -> Self {
        FaultDevice {
            inner,
            plan: Mutex::new(plan),
            plan_changed: Condvar::new(),
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Replaces the plan; counters keep counting.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock() = plan;
        self.plan_changed.notify_all();
    }

    /// Reads seen so far.
    pub fn reads(&self) -> u64 {
        self.counters.lock().reads
    }

    /// Writes seen so far, including dropped ones.
    pub fn writes(&self) -> u64 {
        self.counters.lock().writes
    }

    /// How many accesses failed or were dropped by the plan.
    pub fn injected(&self) -> u64 {
        self.counters.lock().injected
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: BlockDevice> BlockDevice for FaultDevice<D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let index = {
            let mut c = self.counters.lock();
            c.reads += 1;
            c.reads - 1
        };
        let fail = self.plan.lock().faults.iter().any(|f| match *f {
            FaultKind::FailRead(n) => n == index,
            FaultKind::FailReadRange { start, end } => overlaps(offset, buf.len(), start, end),
            _ => false,
        });
        if fail {
            self.counters.lock().injected += 1;
            return Err(eio("read", offset, buf.len()));
        }
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let index = {
            let mut c = self.counters.lock();
            c.writes += 1;
            c.writes - 1
        };
        let mut torn = None;
        let mut drop_write = false;
        let mut fail = false;
        let mut plan = self.plan.lock();
        while plan.faults.contains(&FaultKind::StallWrites) {
            self.plan_changed.wait(&mut plan);
        }
        for f in plan.faults.iter() {
            match *f {
                FaultKind::FailWrite(n) if n == index => fail = true,
                FaultKind::FailWriteRange { start, end } if overlaps(offset, buf.len(), start, end) => fail = true,
                FaultKind::CrashAfterWrite { last, torn_bytes } => {
                    if index > last {
                        drop_write = true;
                    } else if index == last {
                        torn = torn_bytes;
                    }
                }
                _ => {}
            }
        }
        drop(plan);
        if fail {
            self.counters.lock().injected += 1;
            return Err(eio("write", offset, buf.len()));
        }
        if drop_write {
            self.counters.lock().injected += 1;
            return Ok(());
        }
        match torn {
            Some(n) => self.inner.write_at(offset, &buf[..n.min(buf.len())]),
            None => self.inner.write_at(offset, buf),
        }
    }

    fn flush(&self) -> Result<(), DeviceError> {
        self.inner.flush()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
}
