//! What the o2hb disk heartbeat costs per interval: bytes read and written and the time spent in
//! I/O, for one node alone and for several nodes sharing a disk, on an image file (with and
//! without O_DIRECT) and in memory. Prints the share of each interval spent in heartbeat I/O.
//!
//! `cargo bench -p ocfs2-examples --bench cluster_heartbeat [-- SECONDS [DIR]]`
//! (defaults: 3 seconds per case, the image in the temporary directory).

use ocfs2::cluster::heartbeat::{
    FenceSwitch, Heartbeat, HeartbeatConfig, HeartbeatRegion, NodeMap, SystemClock, O2HB_DEFAULT_DEAD_THRESHOLD,
};
use ocfs2::device::{BlockDevice, DeviceError, FileDevice, FileDeviceOptions, MemDevice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A device that counts the time and bytes of every transfer.
struct Timed<D> {
    inner: D,
    read_ns: AtomicU64,
    write_ns: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
}

impl<D: BlockDevice> Timed<D> {
    fn new(inner: D) -> Self {
        Timed {
            inner,
            read_ns: AtomicU64::new(0),
            write_ns: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
        }
    }
}

impl<D: BlockDevice> BlockDevice for Timed<D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let t = Instant::now();
        let r = self.inner.read_at(offset, buf);
        self.read_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.read_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        r
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let t = Instant::now();
        let r = self.inner.write_at(offset, buf);
        self.write_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        r
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

struct Row {
    case: String,
    per_interval_read: f64,
    per_interval_written: f64,
    io_us: f64,
    share: f64,
}

/// Runs `nodes` heartbeats for `secs` on `dev`; reports node 0's costs per iteration.
fn run(
    case: &str,
    devs: Vec<Arc<Timed<Box<dyn BlockDevice>>>>,
    nodes: &[u8],
    watched: &[u8],
    interval: Duration,
    secs: u64,
) -> Row {
    let region = HeartbeatRegion::new(1 << 20, devs[0].sector_size(), 255);
    let config = HeartbeatConfig {
        interval,
        dead_threshold: O2HB_DEFAULT_DEAD_THRESHOLD,
        nodes: watched.iter().copied().collect::<NodeMap>(),
    };
    let hbs: Vec<Heartbeat> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .zip(&devs)
            .map(|(&n, d)| {
                let dev: Arc<dyn BlockDevice> = d.clone();
                let config = config.clone();
                s.spawn(move || {
                    Heartbeat::start_with_fence(
                        dev,
                        region,
                        n,
                        config,
                        Arc::new(SystemClock::new()),
                        FenceSwitch::new(),
                    )
                    .expect("heartbeat starts")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let d = &devs[0];
    let (r0, w0, rb0, wb0, rn0, wn0) = (
        d.reads.load(Ordering::Relaxed),
        d.writes.load(Ordering::Relaxed),
        d.read_bytes.load(Ordering::Relaxed),
        d.write_bytes.load(Ordering::Relaxed),
        d.read_ns.load(Ordering::Relaxed),
        d.write_ns.load(Ordering::Relaxed),
    );
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let elapsed = start.elapsed();
    let reads = d.reads.load(Ordering::Relaxed) - r0;
    let writes = d.writes.load(Ordering::Relaxed) - w0;
    let rb = d.read_bytes.load(Ordering::Relaxed) - rb0;
    let wb = d.write_bytes.load(Ordering::Relaxed) - wb0;
    let ns = d.read_ns.load(Ordering::Relaxed) - rn0 + d.write_ns.load(Ordering::Relaxed) - wn0;
    let live = hbs[0].live_nodes().len();
    for hb in hbs {
        hb.stop().expect("clean stop");
    }
    assert_eq!(live, nodes.len(), "{case}: every node saw the others");
    let iterations = reads.min(writes).max(1) as f64;
    let io_us = ns as f64 / 1000.0 / iterations;
    Row {
        case: case.to_string(),
        per_interval_read: rb as f64 / iterations,
        per_interval_written: wb as f64 / iterations,
        io_us,
        share: ns as f64 / elapsed.as_nanos() as f64,
    }
}

fn file_dev(path: &std::path::Path, direct: bool) -> Arc<Timed<Box<dyn BlockDevice>>> {
    let dev =
        FileDevice::open_with(path, FileDeviceOptions { writable: true, direct: Some(direct) }).expect("open image");
    Arc::new(Timed::new(Box::new(dev) as Box<dyn BlockDevice>))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let secs: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = args.get(1).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let img = dir.join(format!("ocfs2-bench-hb-{}.img", std::process::id()));
    std::fs::File::create(&img).unwrap().set_len(4 << 20).unwrap();
    let interval = Duration::from_millis(100);
    let mut rows = Vec::new();
    let mem: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(4 << 20));
    let mem_dev = || Arc::new(Timed::new(Box::new(mem.clone()) as Box<dyn BlockDevice>));
    rows.push(run("memory, 1 node, 3 configured", vec![mem_dev()], &[0], &[0, 1, 2], interval, secs));
    rows.push(run("file, 1 node, 3 configured", vec![file_dev(&img, false)], &[0], &[0, 1, 2], interval, secs));
    rows.push(run(
        "file, 3 nodes, 3 configured",
        (0..3).map(|_| file_dev(&img, false)).collect(),
        &[0, 1, 2],
        &[0, 1, 2],
        interval,
        secs,
    ));
    rows.push(run(
        "file, 3 nodes, 255 configured",
        (0..3).map(|_| file_dev(&img, false)).collect(),
        &[0, 1, 2],
        &(0..255).collect::<Vec<u8>>(),
        interval,
        secs,
    ));
    let direct_ok = FileDevice::open_with(&img, FileDeviceOptions { writable: true, direct: Some(true) }).is_ok();
    if direct_ok {
        rows.push(run(
            "file O_DIRECT, 3 nodes, 3 configured",
            (0..3).map(|_| file_dev(&img, true)).collect(),
            &[0, 1, 2],
            &[0, 1, 2],
            interval,
            secs,
        ));
    }
    let _ = std::fs::remove_file(&img);
    println!("o2hb cost per {} ms interval, node 0's view, {secs} s per case", interval.as_millis());
    println!("{:<40} {:>12} {:>12} {:>12} {:>14}", "case", "read B", "written B", "I/O us", "share of time");
    for r in &rows {
        println!(
            "{:<40} {:>12.0} {:>12.0} {:>12.1} {:>13.4}%",
            r.case,
            r.per_interval_read,
            r.per_interval_written,
            r.io_us,
            r.share * 100.0
        );
    }
    let base = &rows[1];
    for r in &rows[2..] {
        println!(
            "ratio {:<34} to {}: bytes read x{:.1}, I/O time x{:.2}",
            r.case,
            base.case,
            r.per_interval_read / base.per_interval_read,
            r.io_us / base.io_us
        );
    }
    println!(
        "at the kernel's 2000 ms interval the same I/O takes {:.5}% of the time",
        rows[2].io_us / 2_000_000.0 * 100.0
    );
}
