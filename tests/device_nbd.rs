//! `NbdDevice` against real NBD servers (issue 5, shared disk over the network): qemu-nbd as
//! the referee, nbdkit as a second one, and a fake server that sends mangled replies.
//!
//! What each server holds is checked through a second path: the image file qemu-nbd exports,
//! a second client, or the protocol's own error when a request breaks the server's rules.

mod common;

use common::*;
use ocfs2::device::{open_device, BlockDevice, DeviceError, NbdAddress, NbdDevice, NbdNegotiation, NbdOptions};
use ocfs2::{MountOptions, Volume};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- Servers ----

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

/// A server process on 127.0.0.1:port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    what: String,
    log: PathBuf,
}

impl Server {
    fn start(program: &str, args: &[String], port: u16, log: PathBuf) -> Server {
        let package = if program == "qemu-nbd" { "qemu-utils" } else { program };
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
        assert!(found, "the NBD referee `{program}` is not installed: run `apt-get install -y {package}`");
        let out = std::fs::File::create(&log).expect("server log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut server = Server { child, port, what: format!("{program} {}", args.join(" ")), log };
        server.wait_ready();
        server
    }

    /// `qemu-nbd` sharing `image` with up to four clients, without its page cache.
    fn qemu(scratch: &Scratch, image: &Path, export: &str, port: u16, extra: &[&str]) -> Server {
        let mut args: Vec<String> =
            ["--persistent", "--shared=4", "--cache=none", "-f", "raw", "-b", "127.0.0.1"].map(String::from).to_vec();
        args.extend(["-p".to_string(), port.to_string(), "-x".to_string(), export.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(image.display().to_string());
        let log = scratch.path(&format!("qemu-nbd-{port}.log"));
        Server::start("qemu-nbd", &args, port, log)
    }

    /// `nbdkit` with `args` (filters, plugin, its parameters) in the foreground.
    fn nbdkit(scratch: &Scratch, port: u16, args: &[&str]) -> Server {
        let mut all: Vec<String> = ["-f", "--exit-with-parent", "-i", "127.0.0.1"].map(String::from).to_vec();
        all.extend(["-p".to_string(), port.to_string()]);
        all.extend(args.iter().map(|s| s.to_string()));
        let log = scratch.path(&format!("nbdkit-{port}.log"));
        Server::start("nbdkit", &all, port, log)
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited with {status}: {}",
                    self.what,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not listen on port {} within 20 s", self.what, self.port);
    }

    fn url(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.port)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{sig} {}", self.child.id());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

// ---- Helpers ----

use ocfs2::testing::Rng;

/// An image of `size` bytes filled with a seeded pattern.
fn patterned_image(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    let data = Rng::new(seed).bytes(size);
    std::fs::write(path, &data).unwrap();
    data
}

fn opts(timeout_ms: u64) -> NbdOptions {
    NbdOptions {
        io_timeout: Duration::from_millis(timeout_ms),
        connect_timeout: Duration::from_secs(2),
        ..NbdOptions::default()
    }
}

fn connect(url: &str, options: NbdOptions) -> NbdDevice {
    NbdDevice::connect_with(&NbdAddress::parse(url).unwrap(), options).unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// Random unaligned writes mirrored in `model`, then random unaligned reads checked against it.
fn random_io(dev: &NbdDevice, model: &mut [u8], seed: u64, rounds: usize, fua: bool) {
    let mut rng = Rng::new(seed);
    let size = model.len() as u64;
    for round in 0..rounds {
        let len = 1 + rng.below(20_000) as usize;
        let at = rng.below(size - len as u64);
        if rng.below(2) == 0 {
            let data = rng.bytes(len);
            if fua && rng.below(4) == 0 {
                dev.write_at_fua(at, &data).unwrap_or_else(|e| panic!("seed {seed:#x} round {round}: {e}"));
            } else {
                dev.write_at(at, &data).unwrap_or_else(|e| panic!("seed {seed:#x} round {round}: {e}"));
            }
            model[at as usize..at as usize + len].copy_from_slice(&data);
        } else {
            let mut buf = vec![0u8; len];
            dev.read_at(at, &mut buf).unwrap_or_else(|e| panic!("seed {seed:#x} round {round}: {e}"));
            assert!(buf == model[at as usize..at as usize + len], "seed {seed:#x} round {round}: read {len} at {at}");
        }
    }
}

// Linux errno values (the examples crate does not link libc).
const EIO: i32 = 5;
const EINVAL: u32 = 22;
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;

fn errno(r: Result<(), DeviceError>) -> Option<i32> {
    r.err().map(|e| e.errno())
}

// ---- qemu-nbd ----

#[test]
fn unaligned_reads_and_writes_through_qemu_nbd_match_the_image_file() {
    let scratch = Scratch::new("nbd-rw");
    let img = scratch.path("disk.img");
    let mut model = patterned_image(&img, 16 << 20, 1);
    let server = Server::qemu(&scratch, &img, "disk", free_port(), &[]);
    for structured in [true, false] {
        let dev = connect(&server.url("disk"), NbdOptions { structured_replies: structured, ..opts(10_000) });
        let e = *dev.export();
        eprintln!("qemu-nbd export: {e:?}");
        assert_eq!(e.size, 16 << 20);
        assert_eq!(e.negotiation, NbdNegotiation::Go);
        assert_eq!(e.structured_replies, structured);
        assert!(e.can_flush() && !e.is_read_only());
        assert!(e.block_sizes_advertised, "qemu-nbd answers NBD_INFO_BLOCK_SIZE");
        assert_eq!(dev.sector_size(), e.min_block.max(512));
        random_io(&dev, &mut model, 0x1234 + structured as u64, 400, true);
        dev.flush().unwrap();
        drop(dev);
        // The file under the server holds exactly what the client wrote.
        assert!(std::fs::read(&img).unwrap() == model, "structured={structured}: image differs from the writes");
    }
}

#[test]
fn fua_and_flush_writes_are_in_the_file_when_they_return() {
    let scratch = Scratch::new("nbd-fua");
    let img = scratch.path("disk.img");
    patterned_image(&img, 1 << 20, 2);
    let server = Server::qemu(&scratch, &img, "disk", free_port(), &[]);
    let dev = connect(&server.url("disk"), opts(10_000));
    assert!(dev.export().can_fua(), "qemu-nbd offers FUA");
    let before = dev.stats().commands;
    dev.write_at_fua(4096 + 3, b"forced unit access").unwrap();
    // With the server's FUA one command does it (plus read-modify-write when the server has a
    // minimum block above one byte: a read and a write).
    let used = dev.stats().commands - before;
    assert!(used == 1 || (dev.export().min_block > 1 && used == 2), "{used} commands for one FUA write");
    let file = std::fs::read(&img).unwrap();
    assert_eq!(&file[4099..4099 + 18], b"forced unit access");
    dev.write_at(8192, b"then a flush").unwrap();
    dev.flush().unwrap();
    assert_eq!(&std::fs::read(&img).unwrap()[8192..8204], b"then a flush");
}

#[test]
fn read_only_export_refuses_writes_with_erofs() {
    let scratch = Scratch::new("nbd-ro");
    let img = scratch.path("disk.img");
    let data = patterned_image(&img, 1 << 20, 3);
    let server = Server::qemu(&scratch, &img, "ro", free_port(), &["-r"]);
    let dev = connect(&server.url("ro"), opts(10_000));
    assert!(dev.export().is_read_only() && dev.is_read_only());
    assert_eq!(errno(dev.write_at(0, b"x")), Some(EROFS));
    assert_eq!(errno(dev.write_at_fua(512, &[0u8; 512])), Some(EROFS));
    dev.flush().expect("flushing a read-only device is a no-op");
    let mut buf = vec![0u8; 1000];
    dev.read_at(777, &mut buf).unwrap();
    assert_eq!(buf, &data[777..1777]);
    // Through the path-or-URL opener: asking to write fails at open, reading works.
    let err = open_device(&server.url("ro"), true).err().expect("a writable open of a read-only export fails");
    assert_eq!(err.raw_os_error(), Some(EROFS), "{err}");
    let ro = open_device(&server.url("ro"), false).unwrap();
    assert_eq!(ro.len(), 1 << 20);
    // A writable export opened read-only refuses writes here too, and nothing reaches the file.
    let img2 = scratch.path("disk2.img");
    std::fs::write(&img2, &data).unwrap();
    let server2 = Server::qemu(&scratch, &img2, "rw", free_port(), &[]);
    let dev = open_device(&server2.url("rw"), false).unwrap();
    assert_eq!(errno(dev.write_at(0, b"nope")), Some(EROFS));
    drop(dev);
    assert!(std::fs::read(&img2).unwrap() == data);
}

#[test]
fn two_clients_of_one_export_see_each_others_writes() {
    let scratch = Scratch::new("nbd-shared");
    let img = scratch.path("disk.img");
    patterned_image(&img, 4 << 20, 4);
    let server = Server::qemu(&scratch, &img, "shared", free_port(), &[]);
    let a = Arc::new(connect(&server.url("shared"), opts(10_000)));
    let b = Arc::new(connect(&server.url("shared"), opts(10_000)));
    // Like o2hb: each node writes its own sector with a rising sequence and reads the other's.
    for seq in 1..=200u64 {
        let mut sector = [0u8; 512];
        sector[..8].copy_from_slice(&seq.to_le_bytes());
        a.write_at(0, &sector).unwrap();
        sector[8] = 0xbb;
        b.write_at(512, &sector).unwrap();
        let (mut from_a, mut from_b) = ([0u8; 512], [0u8; 512]);
        b.read_at(0, &mut from_a).unwrap();
        a.read_at(512, &mut from_b).unwrap();
        assert_eq!(u64::from_le_bytes(from_a[..8].try_into().unwrap()), seq, "b sees a's sequence");
        assert_eq!(u64::from_le_bytes(from_b[..8].try_into().unwrap()), seq, "a sees b's sequence");
        assert_eq!(from_b[8], 0xbb);
    }
    // Many threads on each client, disjoint regions, checked through the other client.
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (mine, other) = if t % 2 == 0 { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
            std::thread::spawn(move || {
                let mut rng = Rng::new(0xabc0 + t);
                let base = (1 << 20) + t * (256 << 10);
                for _ in 0..50 {
                    let len = 1 + rng.below(9000) as usize;
                    let at = base + rng.below((256 << 10) - len as u64);
                    let data = rng.bytes(len);
                    mine.write_at(at, &data).unwrap();
                    let mut back = vec![0u8; len];
                    other.read_at(at, &mut back).unwrap();
                    assert!(back == data, "thread {t}: the other client reads what this one wrote");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
}

#[test]
fn requests_above_qemu_nbds_maximum_payload_are_split() {
    let scratch = Scratch::new("nbd-split");
    let img = scratch.path("disk.img");
    let size = 80 << 20;
    let mut model = patterned_image(&img, size, 5);
    let server = Server::qemu(&scratch, &img, "big", free_port(), &[]);
    let dev = connect(&server.url("big"), opts(30_000));
    let max = dev.export().max_payload as usize;
    eprintln!("qemu-nbd maximum payload: {max}");
    assert!(max < 40 << 20, "qemu-nbd caps a request at 32 MiB");
    // One read and one write of 40 MiB + 3 bytes at an odd offset.
    let (at, len) = (12_345u64, (40 << 20) + 3);
    let before = dev.stats().commands;
    let mut buf = vec![0u8; len];
    dev.read_at(at, &mut buf).unwrap();
    assert!(buf == model[at as usize..at as usize + len]);
    assert!(dev.stats().commands - before >= 2, "the read went out in pieces");
    let data = Rng::new(6).bytes(len);
    dev.write_at(at, &data).unwrap();
    model[at as usize..at as usize + len].copy_from_slice(&data);
    dev.flush().unwrap();
    assert!(std::fs::read(&img).unwrap() == model, "the split write landed whole");
}

#[test]
fn a_killed_server_gives_eio_promptly_and_a_restarted_one_is_dialled_again() {
    let scratch = Scratch::new("nbd-kill");
    let img = scratch.path("disk.img");
    let data = patterned_image(&img, 1 << 20, 7);
    let port = free_port();
    let mut server = Server::qemu(&scratch, &img, "disk", port, &[]);
    let dev = connect(&server.url("disk"), opts(5_000));
    let stay_down = connect(&server.url("disk"), NbdOptions { reconnect: false, ..opts(5_000) });
    let mut buf = vec![0u8; 4096];
    dev.read_at(0, &mut buf).unwrap();
    server.kill();
    let start = Instant::now();
    assert_eq!(errno(dev.read_at(0, &mut buf)), Some(EIO), "EIO after the server died");
    assert_eq!(errno(dev.write_at(0, b"lost")), Some(EIO));
    assert_eq!(errno(dev.flush()), Some(EIO));
    assert!(!dev.is_connected());
    assert!(start.elapsed() < Duration::from_secs(5), "errors came at once: {:?}", start.elapsed());
    // The server comes back on the same port: the next request dials it again.
    let _server = Server::qemu(&scratch, &img, "disk", port, &[]);
    dev.read_at(100, &mut buf).unwrap();
    assert_eq!(buf, &data[100..4196]);
    assert_eq!(dev.stats().reconnects, 1);
    // Without reconnect a broken device stays broken.
    assert_eq!(errno(stay_down.read_at(0, &mut buf)), Some(EIO));
    assert_eq!(errno(stay_down.read_at(0, &mut buf)), Some(EIO));
}

#[test]
fn a_stopped_server_times_out_instead_of_hanging() {
    let scratch = Scratch::new("nbd-stall");
    let img = scratch.path("disk.img");
    patterned_image(&img, 1 << 20, 8);
    let server = Server::qemu(&scratch, &img, "disk", free_port(), &[]);
    let dev = connect(&server.url("disk"), NbdOptions { reconnect: false, ..opts(400) });
    let mut buf = vec![0u8; 4096];
    dev.read_at(0, &mut buf).unwrap();
    server.signal("STOP");
    let start = Instant::now();
    assert_eq!(errno(dev.read_at(0, &mut buf)), Some(EIO));
    let waited = start.elapsed();
    server.signal("CONT");
    assert!(waited >= Duration::from_millis(350) && waited < Duration::from_secs(3), "waited {waited:?}");
}

/// Inode numbers and names of a directory as `debugfs.ocfs2 -R 'ls -l DIR'` prints them.
fn debugfs_listing(img: &Path, dir: &str) -> Vec<(u64, String)> {
    let mut rows: Vec<(u64, String)> = debugfs(img, &format!("ls -l {dir}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            assert!(parts.len() >= 9, "short ls -l line {l:?}");
            (parts[0].parse().unwrap(), parts[8..].join(" "))
        })
        .collect();
    rows.sort();
    rows
}

fn our_listing(vol: &Volume, ino: u64) -> Vec<(u64, String)> {
    let mut rows: Vec<(u64, String)> = vol
        .read_dir(ino)
        .unwrap()
        .into_iter()
        .map(|e| (e.ino, String::from_utf8_lossy(&e.name).into_owned()))
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_volume_made_by_mkfs_ocfs2_opens_over_nbd_and_lists_like_debugfs() {
    let scratch = Scratch::new("nbd-mkfs");
    let img = scratch.path("vol.img");
    sparse_image(&img, 256 << 20);
    mkfs_ocfs2(&img, &["-b", "4096", "-C", "4096", "-N", "4", "-L", "nbdvol"]);
    let server = Server::qemu(&scratch, &img, "vol", free_port(), &["-r"]);
    let dev = NbdDevice::connect(&server.url("vol")).expect("connect");
    let vol = Volume::open(dev, MountOptions::default()).expect("open the volume over NBD");
    assert_eq!(vol.info().label, "nbdvol");
    assert_eq!(vol.info().max_slots, 4);
    let ours = our_listing(&vol, vol.info().root_blkno);
    assert_eq!(ours, debugfs_listing(&img, "/"));
    assert!(ours.iter().any(|(_, n)| n == "lost+found"));
    assert_eq!(our_listing(&vol, vol.info().system_dir_blkno), debugfs_listing(&img, "//"));
}

#[test]
fn a_kernel_written_volume_reads_the_same_over_nbd_as_the_kernel_wrote_it() {
    require_tool("xz");
    let scratch = Scratch::new("nbd-kernel");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    let img = scratch.path("kernel-4k.img");
    let out = std::fs::File::create(&img).unwrap();
    let ok = Command::new("xz").arg("-dc").arg(data.join("kernel-4k.img.xz")).stdout(out).status().unwrap();
    assert!(ok.success(), "xz -dc kernel-4k.img.xz");
    let server = Server::qemu(&scratch, &img, "kernel", free_port(), &["-r"]);
    let vol = Volume::open(NbdDevice::connect(&server.url("kernel")).unwrap(), MountOptions::default()).unwrap();
    assert_eq!(our_listing(&vol, vol.info().root_blkno), debugfs_listing(&img, "/"));
    // Every regular file of the kernel's manifest up to 8 MiB (a few hundred) hashes as the
    // kernel hashed it, read through NBD.
    let manifest = std::fs::read(data.join("kernel-4k.manifest")).unwrap();
    let mut checked = 0;
    // Some names are not UTF-8; those lines are left to the kernel_tree test.
    for line in manifest.split(|&c| c == b'\n').filter_map(|l| std::str::from_utf8(l).ok()) {
        let f: Vec<&str> = line.splitn(6, ' ').collect();
        if f.len() < 6 {
            continue;
        }
        let size: u64 = f[3].parse().unwrap();
        if f[0] != "f" || size == 0 || size > 8 << 20 || checked >= 300 {
            continue;
        }
        let ino = vol.resolve(f[5]).unwrap_or_else(|e| panic!("resolve {}: {e}", f[5]));
        let bytes = vol.read_all(ino).unwrap();
        assert_eq!(bytes.len() as u64, size, "{}", f[5]);
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, f[4], "{}", f[5]);
        checked += 1;
    }
    eprintln!("{checked} files hashed through NBD");
    assert!(checked >= 20, "only {checked} files checked");
}

// ---- nbdkit ----

/// A connection that speaks just enough NBD to send one read the way a careless client would,
/// and returns the server's error field (0 when it served the read).
fn raw_read_error(port: u16, offset: u64, len: u32) -> u32 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).unwrap();
    s.write_all(&1u32.to_be_bytes()).unwrap(); // fixed newstyle
    let mut opt = b"IHAVEOPT".to_vec();
    opt.extend_from_slice(&1u32.to_be_bytes()); // NBD_OPT_EXPORT_NAME, default export
    opt.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&opt).unwrap();
    let mut export = [0u8; 8 + 2 + 124];
    s.read_exact(&mut export).unwrap();
    let mut req = 0x25609513u32.to_be_bytes().to_vec();
    req.extend_from_slice(&[0, 0, 0, 0]); // flags, NBD_CMD_READ
    req.extend_from_slice(&7u64.to_be_bytes());
    req.extend_from_slice(&offset.to_be_bytes());
    req.extend_from_slice(&len.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 16];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..4], &0x67446698u32.to_be_bytes());
    u32::from_be_bytes(reply[4..8].try_into().unwrap())
}

#[test]
fn nbdkit_with_strict_block_sizes_gets_aligned_split_requests() {
    let scratch = Scratch::new("nbdkit-blocks");
    let port = free_port();
    let _server = Server::nbdkit(
        &scratch,
        port,
        &[
            "--filter=blocksize-policy",
            "memory",
            "size=8M",
            "blocksize-minimum=4096",
            "blocksize-preferred=4096",
            "blocksize-maximum=65536",
            "blocksize-error-policy=error",
        ],
    );
    // The referee really refuses what breaks its rules: unaligned, and above the maximum.
    assert_eq!(raw_read_error(port, 1, 100), EINVAL, "EINVAL for an unaligned read");
    assert_ne!(raw_read_error(port, 0, 128 << 10), 0, "an error for a read above the maximum");
    assert_eq!(raw_read_error(port, 4096, 4096), 0);
    let url = format!("nbd://127.0.0.1:{port}/");
    let dev = connect(&url, opts(10_000));
    let e = *dev.export();
    assert_eq!((e.min_block, e.preferred_block, e.max_payload), (4096, 4096, 65536));
    assert_eq!(dev.sector_size(), 4096);
    let mut model = vec![0u8; 8 << 20];
    random_io(&dev, &mut model, 0x4b17, 300, true);
    // One write of 1 MiB + 5 at an odd offset: read-modify-write at both edges, 64 KiB pieces.
    let data = Rng::new(9).bytes((1 << 20) + 5);
    let before = dev.stats().commands;
    dev.write_at(4095, &data).unwrap();
    assert!(dev.stats().commands - before >= 16, "split into at most 64 KiB pieces");
    model[4095..4095 + data.len()].copy_from_slice(&data);
    let second = connect(&url, opts(10_000));
    let mut all = vec![0u8; 8 << 20];
    second.read_at(0, &mut all).unwrap();
    assert!(all == model, "a second client reads back every write");
}

#[test]
fn nbdkit_speaks_every_handshake_and_reply_style_we_support() {
    let scratch = Scratch::new("nbdkit-styles");
    for (flags, negotiation, structured) in [
        (vec![], NbdNegotiation::Go, true),
        (vec!["--no-sr"], NbdNegotiation::Go, false),
        (vec!["--mask-handshake=0"], NbdNegotiation::ExportName, false),
        (vec!["--oldstyle"], NbdNegotiation::Oldstyle, false),
    ] {
        let port = free_port();
        let mut args = flags.clone();
        args.extend(["memory", "size=4M"]);
        let _server = Server::nbdkit(&scratch, port, &args);
        let dev = connect(&format!("nbd://127.0.0.1:{port}"), opts(10_000));
        let e = *dev.export();
        assert_eq!((e.negotiation, e.structured_replies, e.size), (negotiation, structured, 4 << 20), "{flags:?}");
        let mut model = vec![0u8; 4 << 20];
        // nbdkit 1.32 in oldstyle advertises flush and FUA but answers both with EINVAL, as if
        // it had advertised nothing: there we check only that the refusal comes back as such.
        let oldstyle = negotiation == NbdNegotiation::Oldstyle;
        random_io(&dev, &mut model, 0x5151, 200, !oldstyle);
        if oldstyle {
            assert_eq!(errno(dev.flush()), Some(22));
        } else {
            dev.flush().unwrap();
        }
    }
}

#[test]
fn nbdkit_error_replies_come_back_as_the_servers_errno() {
    let scratch = Scratch::new("nbdkit-errors");
    for sr in [true, false] {
        let port = free_port();
        let mut args = vec!["--filter=error", "memory", "size=1M", "error-pwrite=ENOSPC", "error-pwrite-rate=100%"];
        if !sr {
            args.insert(0, "--no-sr");
        }
        let _server = Server::nbdkit(&scratch, port, &args);
        let dev = connect(&format!("nbd://127.0.0.1:{port}"), opts(10_000));
        assert_eq!(errno(dev.write_at(0, &[1u8; 4096])), Some(ENOSPC), "ENOSPC, structured replies {sr}");
        // The connection stays up after an error reply.
        let mut buf = [0u8; 10];
        dev.read_at(0, &mut buf).unwrap();
        assert!(dev.is_connected());
        assert_eq!(dev.stats().reconnects, 0);
    }
    let err = NbdDevice::connect("nbd://127.0.0.1:1/").expect_err("nothing listens on port 1");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

// ---- A fake server ----

/// A server that negotiates properly, then answers each request with a reply that is valid,
/// mangled, truncated or absent, chosen by `seed`.
fn fake_server(listener: TcpListener, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new(seed);
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = serve_one(&mut s, &mut rng);
    }
}

fn serve_one(s: &mut TcpStream, rng: &mut Rng) -> std::io::Result<()> {
    let mut hello = b"NBDMAGICIHAVEOPT".to_vec();
    hello.extend_from_slice(&3u16.to_be_bytes());
    s.write_all(&hello)?;
    let mut four = [0u8; 4];
    s.read_exact(&mut four)?;
    let mut structured = false;
    loop {
        let mut head = [0u8; 16];
        s.read_exact(&mut head)?;
        let option = u32::from_be_bytes(head[8..12].try_into().unwrap());
        let mut data = vec![0u8; u32::from_be_bytes(head[12..16].try_into().unwrap()) as usize];
        s.read_exact(&mut data)?;
        let reply = |kind: u32, payload: &[u8]| {
            let mut r = 0x0003e889045565a9u64.to_be_bytes().to_vec();
            r.extend_from_slice(&option.to_be_bytes());
            r.extend_from_slice(&kind.to_be_bytes());
            r.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            r.extend_from_slice(payload);
            r
        };
        if option == 8 {
            structured = rng.below(2) == 0;
            s.write_all(&reply(if structured { 1 } else { 0x8000_0001 }, &[]))?;
        } else if option == 7 {
            let mut info = 0u16.to_be_bytes().to_vec();
            info.extend_from_slice(&(1u64 << 20).to_be_bytes());
            info.extend_from_slice(&0x000du16.to_be_bytes()); // flags, flush, FUA
            let mut out = reply(3, &info);
            out.extend(reply(1, &[]));
            s.write_all(&out)?;
            break;
        } else {
            return Ok(());
        }
    }
    loop {
        let mut req = [0u8; 28];
        s.read_exact(&mut req)?;
        let kind = u16::from_be_bytes(req[6..8].try_into().unwrap());
        let handle = u64::from_be_bytes(req[8..16].try_into().unwrap());
        let offset = u64::from_be_bytes(req[16..24].try_into().unwrap());
        let len = u32::from_be_bytes(req[24..28].try_into().unwrap());
        if kind == 1 {
            let mut payload = vec![0u8; len as usize];
            s.read_exact(&mut payload)?;
        }
        if kind == 2 {
            return Ok(());
        }
        let mut reply = Vec::new();
        if structured && kind == 0 {
            let mut chunk = 0x668e33efu32.to_be_bytes().to_vec();
            chunk.extend_from_slice(&1u16.to_be_bytes());
            chunk.extend_from_slice(&1u16.to_be_bytes());
            chunk.extend_from_slice(&handle.to_be_bytes());
            chunk.extend_from_slice(&(len + 8).to_be_bytes());
            chunk.extend_from_slice(&offset.to_be_bytes());
            chunk.extend(rng.bytes(len as usize));
            reply.extend(chunk);
        } else {
            reply.extend_from_slice(&0x67446698u32.to_be_bytes());
            reply.extend_from_slice(&0u32.to_be_bytes());
            reply.extend_from_slice(&handle.to_be_bytes());
            if kind == 0 {
                reply.extend(rng.bytes(len as usize));
            }
        }
        // Mostly valid; a mangled reply is followed by a hang-up so that the client sees the
        // end at once, and now and then the server falls silent and the deadline must end it.
        let valid = match rng.below(8) {
            0..=2 => true,
            3 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(reply.len().min(64) as u64) as usize;
                    reply[i] = rng.next_u64() as u8;
                }
                false
            }
            4 => {
                reply.truncate(rng.below(reply.len() as u64) as usize);
                false
            }
            5 => {
                let n = rng.below(100) as usize;
                reply = rng.bytes(n);
                false
            }
            6 => {
                let n = 1 + rng.below(30) as usize;
                let junk = rng.bytes(n);
                reply.splice(0..0, junk);
                false
            }
            _ => {
                if rng.below(4) == 0 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                return Ok(());
            }
        };
        s.write_all(&reply)?;
        if !valid || rng.below(4) == 0 {
            return Ok(());
        }
    }
}

#[test]
fn a_server_sending_mangled_replies_gets_errors_never_a_panic_or_a_hang() {
    let seed = 0xf00d_5eed_u64;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || fake_server(listener, seed, stop))
    };
    let url = format!("nbd://127.0.0.1:{port}/fake");
    let dev = connect(&url, opts(200));
    let mut rng = Rng::new(seed ^ 0xffff);
    let (mut ok, mut failed) = (0, 0);
    let start = Instant::now();
    for _ in 0..400 {
        let len = 1 + rng.below(3000) as usize;
        let at = rng.below((1 << 20) - len as u64);
        let t = Instant::now();
        let result = match rng.below(3) {
            0 => dev.write_at(at, &rng.bytes(len)),
            1 => dev.flush(),
            _ => dev.read_at(at, &mut vec![0u8; len]),
        };
        assert!(t.elapsed() < Duration::from_secs(3), "seed {seed:#x}: one request took {:?}", t.elapsed());
        match result {
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(matches!(e, DeviceError::Io { .. }), "seed {seed:#x}: {e}");
                failed += 1
            }
        }
    }
    eprintln!("fake server: {ok} requests served, {failed} failed, {:?}", start.elapsed());
    assert!(ok > 20 && failed > 20, "seed {seed:#x}: {ok} ok, {failed} failed");
    drop(dev);
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(("127.0.0.1", port));
    server.join().unwrap();
}
