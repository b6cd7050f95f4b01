//! `ocfs2-files DEVICE COMMAND ...`: read an OCFS2 volume directly, without mounting it.
//!
//! Commands: `ls [-l] [PATH]`, `stat PATH`, `cat PATH...`, `get SRC DST`, `tree [PATH]`, `df`.
//! DEVICE is an image file, a block device or an `nbd://host:port/export` URL. Paths are absolute
//! inside the volume; `//` names the system directory as in debugfs.ocfs2.

use ocfs2::fs::{DirEntry, FileType, Metadata, Timestamp};
use ocfs2::{OpenOptions, Volume};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: ocfs2-files DEVICE COMMAND [ARGS]
commands:
  ls [-l] [PATH]     list a directory (default /)
  stat PATH          show an inode
  cat PATH...        write files to standard output
  get SRC DST        copy a file or a whole tree out of the volume
  tree [PATH]        every path below PATH with type, mode, links, size and SHA-256
  df                 space used and free";

type CmdResult = Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("{USAGE}");
        return if args.iter().any(|a| a == "-h" || a == "--help") { ExitCode::SUCCESS } else { ExitCode::from(2) };
    }
    // The device is a path (image file or block device) or an nbd:// URL.
    let opened = ocfs2::device::open_device(&args[0], false)
        .map_err(|e| e.to_string())
        .and_then(|dev| Volume::open(dev, OpenOptions::default()).map_err(|e| e.to_string()));
    let vol = match opened {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ocfs2-files: {}: {e}", args[0]);
            return ExitCode::FAILURE;
        }
    };
    let rest = &args[2..];
    let result = match args[1].as_str() {
        "ls" => cmd_ls(&vol, rest),
        "stat" => cmd_stat(&vol, rest),
        "cat" => cmd_cat(&vol, rest),
        "get" => cmd_get(&vol, rest),
        "tree" => cmd_tree(&vol, rest),
        "df" => cmd_df(&vol),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ocfs2-files: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn err(path: &str, e: ocfs2::Error) -> String {
    format!("{path}: {e}")
}

fn resolve(vol: &Volume, path: &str) -> Result<u64, String> {
    vol.resolve(path).map_err(|e| err(path, e))
}

fn out() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::new(std::io::stdout().lock())
}

fn cmd_ls(vol: &Volume, args: &[String]) -> CmdResult {
    let long = args.iter().any(|a| a == "-l");
    let path = args.iter().find(|a| !a.starts_with('-')).map(String::as_str).unwrap_or("/");
    let ino = resolve(vol, path)?;
    let meta = vol.metadata(ino).map_err(|e| err(path, e))?;
    let entries = if meta.is_dir() {
        vol.read_dir(ino).map_err(|e| err(path, e))?
    } else {
        let name = path.rsplit('/').next().unwrap_or(path).as_bytes().to_vec();
        vec![DirEntry { name, ino, file_type: Some(meta.file_type) }]
    };
    let mut w = out();
    for entry in entries {
        let name = String::from_utf8_lossy(&entry.name);
        if long {
            let m = vol.metadata(entry.ino).map_err(|e| err(&name, e))?;
            // The columns of debugfs.ocfs2's `ls -l`, with times in UTC.
            let _ = writeln!(
                w,
                "\t{:<15} {:>10} {:>3} {:>5} {:>5} {:>15} {} {}",
                entry.ino,
                mode_string(&m),
                m.nlink,
                m.uid,
                m.gid,
                m.size,
                format_time(m.mtime),
                name
            );
        } else {
            let _ = writeln!(w, "{name}");
        }
    }
    w.flush().map_err(|e| e.to_string())
}

fn cmd_stat(vol: &Volume, args: &[String]) -> CmdResult {
    let path = args.first().ok_or("stat needs a PATH")?;
    let ino = resolve(vol, path)?;
    let m = vol.metadata(ino).map_err(|e| err(path, e))?;
    let mut w = out();
    let _ = writeln!(
        w,
        "Inode: {}   Mode: {:04o}   Type: {:?}   Generation: {:#x}",
        m.ino,
        m.permissions(),
        m.file_type,
        m.generation
    );
    let _ = writeln!(w, "User: {}   Group: {}   Size: {}", m.uid, m.gid, m.size);
    let _ = writeln!(w, "Links: {}   Clusters: {}   Blocks (512 B): {}", m.nlink, m.clusters, m.blocks);
    let _ = writeln!(w, "Flags: {:#x}   Dynamic Features: {:#x}", m.flags, m.dyn_features);
    for (what, t) in [("atime", m.atime), ("mtime", m.mtime), ("ctime", m.ctime)] {
        let _ = writeln!(w, "{what}: {}.{:09} -- {}", t.secs, t.nsecs, format_time(t));
    }
    if matches!(m.file_type, FileType::CharDevice | FileType::BlockDevice) {
        let _ = writeln!(w, "Device: {:#x}", m.rdev);
    }
    if m.file_type == FileType::Symlink {
        let target = vol.read_link(ino).map_err(|e| err(path, e))?;
        let _ = writeln!(w, "Target: {}", String::from_utf8_lossy(&target));
    }
    w.flush().map_err(|e| e.to_string())
}

/// Streams file `ino` to `sink` in large chunks.
fn copy_file(vol: &Volume, ino: u64, path: &str, sink: &mut dyn Write) -> CmdResult {
    let mut buf = vec![0u8; 4 << 20];
    let mut offset = 0u64;
    loop {
        let n = vol.read(ino, offset, &mut buf).map_err(|e| err(path, e))?;
        if n == 0 {
            return Ok(());
        }
        sink.write_all(&buf[..n]).map_err(|e| format!("{path}: {e}"))?;
        offset += n as u64;
    }
}

fn cmd_cat(vol: &Volume, args: &[String]) -> CmdResult {
    if args.is_empty() {
        return Err("cat needs a PATH".into());
    }
    let mut w = out();
    for path in args {
        let ino = vol.resolve_follow(path).map_err(|e| err(path, e))?;
        copy_file(vol, ino, path, &mut w)?;
    }
    w.flush().map_err(|e| e.to_string())
}

fn cmd_get(vol: &Volume, args: &[String]) -> CmdResult {
    let [src, dst] = args else {
        return Err("get needs SRC and DST".into());
    };
    let ino = resolve(vol, src)?;
    let mut dst = PathBuf::from(dst);
    if dst.is_dir() {
        let name = src.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if !name.is_empty() {
            dst.push(name);
        }
    }
    get_into(vol, ino, src, &dst)
}

fn get_into(vol: &Volume, ino: u64, src: &str, dst: &Path) -> CmdResult {
    use std::os::unix::fs::PermissionsExt;
    let m = vol.metadata(ino).map_err(|e| err(src, e))?;
    match m.file_type {
        FileType::Directory => {
            std::fs::create_dir_all(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
            for entry in vol.read_dir(ino).map_err(|e| err(src, e))? {
                if entry.name == b"." || entry.name == b".." {
                    continue;
                }
                let child = format!("{}/{}", src.trim_end_matches('/'), String::from_utf8_lossy(&entry.name));
                get_into(vol, entry.ino, &child, &dst.join(std::ffi::OsStr::from_bytes(&entry.name)))?;
            }
        }
        FileType::Regular => {
            let file = std::fs::File::create(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            copy_file(vol, ino, src, &mut w)?;
            w.flush().map_err(|e| format!("{}: {e}", dst.display()))?;
        }
        FileType::Symlink => {
            let target = vol.read_link(ino).map_err(|e| err(src, e))?;
            let _ = std::fs::remove_file(dst);
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), dst)
                .map_err(|e| format!("{}: {e}", dst.display()))?;
            return Ok(());
        }
        other => {
            eprintln!("ocfs2-files: {src}: skipping special file ({other:?})");
            return Ok(());
        }
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.permissions() as u32))
        .map_err(|e| format!("{}: {e}", dst.display()))
}

fn cmd_tree(vol: &Volume, args: &[String]) -> CmdResult {
    let path = args.first().map(String::as_str).unwrap_or("/");
    let ino = resolve(vol, path)?;
    let mut lines: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let root = if path == "/" { Vec::new() } else { path.trim_end_matches('/').as_bytes().to_vec() };
    walk(vol, ino, root, &mut lines)?;
    lines.sort();
    let mut w = out();
    for (_, line) in lines {
        w.write_all(&line).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

/// Adds a manifest line for `path` (and everything below it) to `lines`, keyed by path.
fn walk(vol: &Volume, ino: u64, path: Vec<u8>, lines: &mut Vec<(Vec<u8>, Vec<u8>)>) -> CmdResult {
    let shown = if path.is_empty() { b"/".to_vec() } else { path.clone() };
    let shown_str = String::from_utf8_lossy(&shown).into_owned();
    let m = vol.metadata(ino).map_err(|e| err(&shown_str, e))?;
    let digest = match m.file_type {
        FileType::Regular => {
            let mut hasher = HashWriter(Sha256::new());
            copy_file(vol, ino, &shown_str, &mut hasher)?;
            hex(&hasher.0.finalize())
        }
        FileType::Symlink => hex(&Sha256::digest(vol.read_link(ino).map_err(|e| err(&shown_str, e))?)),
        _ => "-".to_string(),
    };
    let mut line =
        format!("{} {:04o} {} {} {} ", m.file_type.letter(), m.permissions(), m.nlink, m.size, digest).into_bytes();
    line.extend_from_slice(&shown);
    line.push(b'\n');
    lines.push((shown, line));
    if m.is_dir() {
        for entry in vol.read_dir(ino).map_err(|e| err(&shown_str, e))? {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let mut child = path.clone();
            child.push(b'/');
            child.extend_from_slice(&entry.name);
            walk(vol, entry.ino, child, lines)?;
        }
    }
    Ok(())
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cmd_df(vol: &Volume) -> CmdResult {
    let s = vol.statfs().map_err(|e| e.to_string())?;
    let info = vol.info();
    let mut w = out();
    let _ = writeln!(w, "Label: {}   UUID: {}", info.label, info.uuid_hex());
    let _ = writeln!(w, "Block size: {}   Cluster size: {}", s.block_size, s.cluster_size);
    let _ = writeln!(
        w,
        "Clusters: total {}   used {}   free {}",
        s.total_clusters,
        s.total_clusters - s.free_clusters,
        s.free_clusters
    );
    let _ = writeln!(w, "Blocks: total {}   free {}", s.total_blocks, s.free_blocks);
    let kib = |clusters: u64| clusters * s.cluster_size as u64 / 1024;
    let _ = writeln!(
        w,
        "1K-blocks: {}   Used: {}   Available: {}",
        kib(s.total_clusters),
        kib(s.total_clusters - s.free_clusters),
        kib(s.free_clusters)
    );
    w.flush().map_err(|e| e.to_string())
}

fn mode_string(m: &Metadata) -> String {
    let mut s = String::with_capacity(10);
    s.push(match m.file_type {
        FileType::Regular => '-',
        other => other.letter(),
    });
    let p = m.permissions();
    for (shift, special, special_ch) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (p >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        s.push(match (p & special != 0, exec) {
            (true, true) => special_ch,
            (true, false) => special_ch.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `DD-Mon-YYYY HH:MM` in UTC, the shape debugfs.ocfs2 prints.
fn format_time(t: Timestamp) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = t.secs.div_euclid(86400);
    let secs_of_day = t.secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!(
        "{:02}-{}-{} {:02}:{:02}",
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs_of_day / 3600,
        secs_of_day % 3600 / 60
    )
}
