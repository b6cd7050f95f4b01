//! Sequential read throughput of one large file through `Volume`, against reading the same
//! bytes of the image directly (dd and, when installed, fio), all with O_DIRECT, in one run.
//!
//! `cargo bench -p ocfs2-examples --bench read_throughput -- IMAGE PATH [RUNS]`
//! (benches/read-throughput.sh makes a suitable image with the Linux kernel and runs this).

use ocfs2::{MountOptions, Volume};
use std::process::Command;
use std::time::Instant;

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Seconds for `dd` to read `bytes` from byte `start` of `image` with O_DIRECT.
fn dd_seconds(image: &str, start: u64, bytes: u64) -> f64 {
    let bs = 4u64 << 20;
    assert_eq!(start % 4096, 0);
    let t = Instant::now();
    let out = Command::new("dd")
        .arg(format!("if={image}"))
        .arg("of=/dev/null")
        .arg(format!("bs={bs}"))
        .arg(format!("count={}", bytes.div_ceil(bs)))
        .arg(format!("skip={}", start))
        .args(["iflag=direct,skip_bytes", "status=none"])
        .output()
        .expect("run dd");
    assert!(out.status.success(), "dd failed: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

/// fio's read bandwidth in MiB/s over the same range, if fio is installed.
fn fio_mib_per_s(image: &str, start: u64, bytes: u64) -> Option<f64> {
    let out = Command::new("fio")
        .args(["--name=raw", "--rw=read", "--bs=4M", "--direct=1", "--ioengine=psync", "--readonly"])
        .arg(format!("--filename={image}"))
        .arg(format!("--offset={start}"))
        .arg(format!("--size={bytes}"))
        .args(["--output-format=terse", "--terse-version=3"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // Terse v3: field 7 is the read bandwidth in KiB/s.
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: f64 = text.lines().last()?.split(';').nth(6)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (image, path) = match args.as_slice() {
        [i, p, ..] => (i.clone(), p.clone()),
        _ => {
            eprintln!("usage: read_throughput IMAGE PATH [RUNS]");
            std::process::exit(2);
        }
    };
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(3);
    let opts = MountOptions { direct: Some(true), ..MountOptions::default() };
    let vol = Volume::open_path(&image, opts).expect("open volume");
    let ino = vol.resolve(&path).expect("file");
    let size = vol.metadata(ino).unwrap().size;
    let start = vol.physical_offset(ino, 0).expect("map").expect("first byte is allocated");
    // A plain Vec (not page-aligned, so O_DIRECT goes through a bounce buffer) and a
    // page-aligned window of a larger Vec (read straight into it, as dd does).
    let mut plain = vec![0u8; 4 << 20];
    let mut backing = vec![0u8; (4 << 20) + 4096];
    let skip = backing.as_ptr().align_offset(4096);
    let aligned = &mut backing[skip..skip + (4 << 20)];
    let read_all = |buf: &mut [u8]| {
        let t = Instant::now();
        let mut off = 0;
        while off < size {
            let n = vol.read(ino, off, buf).expect("read");
            assert!(n > 0);
            off += n as u64;
        }
        mib_per_s(size, t.elapsed().as_secs_f64())
    };
    let mut ours = Vec::new();
    let mut ours_aligned = Vec::new();
    let mut dd = Vec::new();
    let mut fio = Vec::new();
    for _ in 0..runs {
        ours.push(read_all(&mut plain));
        ours_aligned.push(read_all(aligned));
        dd.push(mib_per_s(size, dd_seconds(&image, start, size)));
        if let Some(f) = fio_mib_per_s(&image, start, size) {
            fio.push(f);
        }
    }
    let (o, a, d) = (median(ours), median(ours_aligned), median(dd));
    println!("file {path}: {size} bytes, first byte at image offset {start}; {runs} runs, medians:");
    println!("  dd iflag=direct bs=4M on the image:                 {d:8.1} MiB/s");
    println!("  ocfs2-rs Volume::read, page-aligned 4 MiB buffer:   {a:8.1} MiB/s   ratio to dd = {:.2}", a / d);
    println!("  ocfs2-rs Volume::read, plain Vec 4 MiB buffer:      {o:8.1} MiB/s   ratio to dd = {:.2}", o / d);
    if !fio.is_empty() {
        let f = median(fio);
        println!("  fio --direct=1 --bs=4M on the image:                {f:8.1} MiB/s");
        println!("  ratios to fio: aligned {:.2}, plain Vec {:.2}", a / f, o / f);
    }
}
