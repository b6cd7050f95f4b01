//! Sequential write and read of a 1 GiB file through `Volume::write`/`Volume::read` (O_DIRECT,
//! 4 MiB calls, a `sync_data` at the end of the write), against fio writing and reading 1 GiB
//! of a raw file beside the image with O_DIRECT and the same block size, in one run.
//!
//! `cargo bench -p ocfs2-examples --bench write_throughput -- [RUNS] [DIR]`
//! DIR (default /var/tmp) holds the 2 GiB image (4K blocks, 1M clusters, made by mkfs.ocfs2)
//! and fio's 1 GiB file; both are removed at the end.

use ocfs2::{MountOptions, Volume};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const SIZE: u64 = 1 << 30;
const CHUNK: usize = 4 << 20;

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// fio's bandwidth in MiB/s for `rw` (write or read) of 1 GiB of `file` with O_DIRECT.
fn fio(file: &Path, rw: &str) -> f64 {
    let out = Command::new("fio")
        .args(["--name=raw", "--bs=4M", "--direct=1", "--ioengine=psync", "--end_fsync=1"])
        .arg(format!("--rw={rw}"))
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={SIZE}"))
        .args(["--output-format=terse", "--terse-version=3"])
        .output()
        .expect("run fio (apt-get install -y fio)");
    assert!(out.status.success(), "fio failed: {}", String::from_utf8_lossy(&out.stderr));
    // Terse v3: field 7 is the read bandwidth in KiB/s, field 48 the write bandwidth.
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.lines().last().expect("fio output").split(';').collect();
    let kib: f64 = fields[if rw == "read" { 6 } else { 47 }].parse().expect("fio bandwidth");
    kib / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runs: usize = args.first().and_then(|r| r.parse().ok()).unwrap_or(3);
    let dir = Path::new(args.get(1).map_or("/var/tmp", String::as_str)).to_path_buf();
    let img = dir.join("ocfs2-bench-write.img");
    let raw = dir.join("ocfs2-bench-write.raw");
    let f = std::fs::File::create(&img).expect("create image");
    f.set_len(2 * SIZE).unwrap();
    drop(f);
    let status = Command::new("mkfs.ocfs2")
        .args(["-q", "-F", "-M", "local", "-b", "4096", "-C", "1M", "-N", "1", "-J", "size=64M"])
        .arg(&img)
        .status()
        .expect("run mkfs.ocfs2");
    assert!(status.success());
    // The data as fio writes it: a page-aligned buffer of incompressible bytes.
    let mut backing = vec![0u8; CHUNK + 4096];
    let skip = backing.as_ptr().align_offset(4096);
    let buf = &mut backing[skip..skip + CHUNK];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let (mut w, mut r, mut fw, mut fr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let vol = Volume::open_path(&img, MountOptions { direct: Some(true), ..MountOptions::writable() }).unwrap();
        let name = format!("big{run}");
        let ino = vol.create(vol.root(), name.as_bytes(), 0o644).unwrap();
        let t = Instant::now();
        let mut off = 0;
        while off < SIZE {
            vol.write(ino, off, buf).unwrap();
            off += CHUNK as u64;
        }
        vol.sync_data(ino).unwrap();
        w.push(mib_per_s(SIZE, t.elapsed().as_secs_f64()));
        let t = Instant::now();
        let mut off = 0;
        while off < SIZE {
            let n = vol.read(ino, off, buf).unwrap();
            assert_eq!(n, CHUNK);
            off += n as u64;
        }
        r.push(mib_per_s(SIZE, t.elapsed().as_secs_f64()));
        vol.unlink(vol.root(), name.as_bytes()).unwrap();
        vol.close().unwrap();
        fw.push(fio(&raw, "write"));
        fr.push(fio(&raw, "read"));
        let _ = std::fs::remove_file(&raw);
    }
    let _ = std::fs::remove_file(&img);
    let (w, r, fw, fr) = (median(w), median(r), median(fw), median(fr));
    println!("1 GiB sequential, 4 MiB calls, O_DIRECT, {runs} runs, medians:");
    println!("  ocfs2-rs Volume::write + sync_data: {w:8.1} MiB/s   fio write: {fw:8.1} MiB/s   ratio {:.2}", w / fw);
    println!("  ocfs2-rs Volume::read:              {r:8.1} MiB/s   fio read:  {fr:8.1} MiB/s   ratio {:.2}", r / fr);
}
