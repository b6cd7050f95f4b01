//! `ocfs2-files DEVICE COMMAND ...`: read an OCFS2 volume directly, without mounting it.
//!
//! Reading: `ls [-l] [PATH]`, `stat PATH`, `cat PATH...`, `get SRC DST`, `tree [PATH]`, `df`.
//! Writing (the volume is opened writable, in one process, and closed cleanly at the end):
//! `put SRC DST`, `mkdir [-p] PATH...`, `rm [-r] PATH...`, `rmdir PATH...`, `mv SRC DST`,
//! `ln [-s] TARGET PATH`, `truncate -s SIZE PATH...`, `chmod MODE PATH...`,
//! `chown UID[:GID] PATH...`, `touch PATH...`.
//! DEVICE is an image file, a block device or an `nbd://host:port/export` URL. Paths are absolute
//! inside the volume; `//` names the system directory as in debugfs.ocfs2.

use ocfs2::fs::{DirEntry, FileType, Metadata, SetAttr, Timestamp};
use ocfs2::{MountOptions, Volume};
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
  df                 space used and free
  put SRC DST        copy a host file or a whole tree into the volume
  mkdir [-p] PATH... make directories (-p: with their parents, no error if they exist)
  rm [-r] PATH...    remove files (-r: and directories with everything in them)
  rmdir PATH...      remove empty directories
  mv SRC DST         rename or move (into DST when it is a directory)
  ln [-s] TARGET PATH  hard link to TARGET (-s: symbolic link holding TARGET)
  truncate -s SIZE PATH...  set the size of files
  chmod MODE PATH... set permissions (octal)
  chown UID[:GID] PATH...  set owner and group (numbers)
  touch PATH...      create empty files, or set times to now";

/// Commands that change the volume.
const WRITERS: &[&str] = &["put", "mkdir", "rm", "rmdir", "mv", "ln", "truncate", "chmod", "chown", "touch"];

type CmdResult = Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("{USAGE}");
        return if args.iter().any(|a| a == "-h" || a == "--help") { ExitCode::SUCCESS } else { ExitCode::from(2) };
    }
    // The device is a path (image file or block device) or an nbd:// URL.
    let writable = WRITERS.contains(&args[1].as_str());
    let options = if writable { MountOptions::writable() } else { MountOptions::default() };
    let opened = ocfs2::device::open_device(&args[0], writable)
        .map_err(|e| e.to_string())
        .and_then(|dev| Volume::open(dev, options).map_err(|e| e.to_string()));
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
        "put" => cmd_put(&vol, rest),
        "mkdir" => cmd_mkdir(&vol, rest),
        "rm" => cmd_rm(&vol, rest),
        "rmdir" => cmd_rmdir(&vol, rest),
        "truncate" => cmd_truncate(&vol, rest),
        "mv" => cmd_mv(&vol, rest),
        "ln" => cmd_ln(&vol, rest),
        "chmod" => cmd_chmod(&vol, rest),
        "chown" => cmd_chown(&vol, rest),
        "touch" => cmd_touch(&vol, rest),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    // A writer closes the volume cleanly even after a failed command, so the next open needs
    // no recovery.
    let result = match (writable, vol.close()) {
        (true, Err(e)) => result.and(Err(format!("{}: closing: {e}", args[0]))),
        _ => result,
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

/// The parent directory of `path` and the last name in it.
fn parent_and_name<'p>(vol: &Volume, path: &'p str) -> Result<(u64, &'p [u8]), String> {
    let trimmed = path.trim_end_matches('/');
    let (dir, name) = trimmed.rsplit_once('/').ok_or_else(|| format!("{path}: not an absolute path"))?;
    if name.is_empty() {
        return Err(format!("{path}: names no entry"));
    }
    let dir = if dir.is_empty() { "/" } else { dir };
    Ok((resolve(vol, dir)?, name.as_bytes()))
}

fn cmd_put(vol: &Volume, args: &[String]) -> CmdResult {
    let [src, dst] = args else {
        return Err("put needs SRC and DST".into());
    };
    let src = Path::new(src);
    let mut dst = dst.trim_end_matches('/').to_string();
    if let Ok(ino) = vol.resolve(if dst.is_empty() { "/" } else { &dst }) {
        if vol.metadata(ino).map_err(|e| err(&dst, e))?.is_dir() {
            let name = src.file_name().ok_or_else(|| format!("{}: no file name", src.display()))?;
            dst = format!("{dst}/{}", name.to_string_lossy());
        }
    }
    put_into(vol, src, &dst)
}

fn put_into(vol: &Volume, src: &Path, dst: &str) -> CmdResult {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let shown = |e: std::io::Error| format!("{}: {e}", src.display());
    let meta = std::fs::symlink_metadata(src).map_err(shown)?;
    let perm = (meta.permissions().mode() & 0o7777) as u16;
    let (dir, name) = parent_and_name(vol, dst)?;
    if meta.is_dir() {
        if vol.lookup(dir, name).is_err() {
            vol.mkdir(dir, name, perm).map_err(|e| err(dst, e))?;
        }
        let mut entries: Vec<_> = std::fs::read_dir(src).map_err(shown)?.collect::<Result<_, _>>().map_err(shown)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child = format!("{dst}/{}", entry.file_name().to_string_lossy());
            put_into(vol, &entry.path(), &child)?;
        }
        return Ok(());
    }
    if !meta.is_file() {
        eprintln!("ocfs2-files: {}: skipping (not a regular file or directory)", src.display());
        return Ok(());
    }
    let ino = match vol.lookup(dir, name) {
        Ok(ino) => {
            vol.truncate(ino, 0).map_err(|e| err(dst, e))?;
            ino
        }
        Err(_) => vol.create(dir, name, perm).map_err(|e| err(dst, e))?,
    };
    let mut file = std::fs::File::open(src).map_err(shown)?;
    let mut buf = vec![0u8; 4 << 20];
    let mut offset = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(shown)?;
        if n == 0 {
            return Ok(());
        }
        vol.write(ino, offset, &buf[..n]).map_err(|e| err(dst, e))?;
        offset += n as u64;
    }
}

fn cmd_mkdir(vol: &Volume, args: &[String]) -> CmdResult {
    let parents = args.iter().any(|a| a == "-p");
    let paths: Vec<&String> = args.iter().filter(|a| *a != "-p").collect();
    if paths.is_empty() {
        return Err("mkdir needs a PATH".into());
    }
    for path in paths {
        if parents {
            let mut at = vol.root();
            let mut so_far = String::new();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                so_far = format!("{so_far}/{part}");
                at = match vol.lookup(at, part.as_bytes()) {
                    Ok(ino) => ino,
                    Err(ocfs2::Error::NotFound(_)) => {
                        vol.mkdir(at, part.as_bytes(), 0o755).map_err(|e| err(&so_far, e))?
                    }
                    Err(e) => return Err(err(&so_far, e)),
                };
            }
        } else {
            let (dir, name) = parent_and_name(vol, path)?;
            vol.mkdir(dir, name, 0o755).map_err(|e| err(path, e))?;
        }
    }
    Ok(())
}

fn cmd_rm(vol: &Volume, args: &[String]) -> CmdResult {
    let recursive = args.iter().any(|a| a == "-r" || a == "-rf");
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if paths.is_empty() {
        return Err("rm needs a PATH".into());
    }
    for path in paths {
        let (dir, name) = parent_and_name(vol, path)?;
        let ino = vol.lookup(dir, name).map_err(|e| err(path, e))?;
        if vol.metadata(ino).map_err(|e| err(path, e))?.is_dir() {
            if !recursive {
                return Err(format!("{path}: is a directory (use rm -r)"));
            }
            remove_tree(vol, ino, path)?;
            vol.rmdir(dir, name).map_err(|e| err(path, e))?;
        } else {
            vol.unlink(dir, name).map_err(|e| err(path, e))?;
        }
    }
    Ok(())
}

/// Removes everything inside directory `dir`.
fn remove_tree(vol: &Volume, dir: u64, path: &str) -> CmdResult {
    for entry in vol.read_dir(dir).map_err(|e| err(path, e))? {
        if entry.name == b"." || entry.name == b".." {
            continue;
        }
        let child = format!("{path}/{}", String::from_utf8_lossy(&entry.name));
        if entry.file_type == Some(FileType::Directory) {
            remove_tree(vol, entry.ino, &child)?;
            vol.rmdir(dir, &entry.name).map_err(|e| err(&child, e))?;
        } else {
            vol.unlink(dir, &entry.name).map_err(|e| err(&child, e))?;
        }
    }
    Ok(())
}

fn cmd_rmdir(vol: &Volume, args: &[String]) -> CmdResult {
    if args.is_empty() {
        return Err("rmdir needs a PATH".into());
    }
    for path in args {
        let (dir, name) = parent_and_name(vol, path)?;
        vol.rmdir(dir, name).map_err(|e| err(path, e))?;
    }
    Ok(())
}

fn cmd_truncate(vol: &Volume, args: &[String]) -> CmdResult {
    let (size, paths) = match args {
        [flag, size, paths @ ..] if flag == "-s" && !paths.is_empty() => (size, paths),
        _ => return Err("truncate needs -s SIZE and a PATH".into()),
    };
    let size: u64 = size.parse().map_err(|_| format!("{size}: not a size in bytes"))?;
    for path in paths {
        let ino = resolve(vol, path)?;
        vol.truncate(ino, size).map_err(|e| err(path, e))?;
    }
    Ok(())
}

fn cmd_mv(vol: &Volume, args: &[String]) -> CmdResult {
    let [src, dst] = args else {
        return Err("mv needs SRC and DST".into());
    };
    let (from_dir, from_name) = parent_and_name(vol, src)?;
    let into = vol.resolve(dst).ok().filter(|&ino| vol.metadata(ino).is_ok_and(|m| m.is_dir()));
    let (to_dir, to_name) = match into {
        Some(dir) => (dir, from_name),
        None => parent_and_name(vol, dst)?,
    };
    vol.rename(from_dir, from_name, to_dir, to_name).map_err(|e| err(src, e))
}

fn cmd_ln(vol: &Volume, args: &[String]) -> CmdResult {
    let symbolic = args.iter().any(|a| a == "-s");
    let rest: Vec<&String> = args.iter().filter(|a| *a != "-s").collect();
    let [target, path] = rest.as_slice() else {
        return Err("ln needs TARGET and PATH".into());
    };
    let (dir, name) = parent_and_name(vol, path)?;
    if symbolic {
        vol.symlink(dir, name, target.as_bytes()).map(drop).map_err(|e| err(path, e))
    } else {
        let ino = resolve(vol, target)?;
        vol.link(ino, dir, name).map_err(|e| err(path, e))
    }
}

/// Applies `attr` to every path.
fn set_each(vol: &Volume, paths: &[String], attr: &SetAttr) -> CmdResult {
    if paths.is_empty() {
        return Err("a PATH is needed".into());
    }
    for path in paths {
        let ino = resolve(vol, path)?;
        vol.setattr(ino, attr).map_err(|e| err(path, e))?;
    }
    Ok(())
}

fn cmd_chmod(vol: &Volume, args: &[String]) -> CmdResult {
    let (mode, paths) = args.split_first().ok_or("chmod needs MODE and PATH")?;
    let mode =
        u16::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777).ok_or(format!("{mode}: not an octal mode"))?;
    set_each(vol, paths, &SetAttr { mode: Some(mode), ..Default::default() })
}

fn cmd_chown(vol: &Volume, args: &[String]) -> CmdResult {
    let (owner, paths) = args.split_first().ok_or("chown needs UID[:GID] and PATH")?;
    let bad = || format!("{owner}: not UID[:GID] in numbers");
    let (uid, gid) = match owner.split_once(':') {
        Some((u, g)) => (u.parse().map_err(|_| bad())?, Some(g.parse().map_err(|_| bad())?)),
        None => (owner.parse().map_err(|_| bad())?, None),
    };
    set_each(vol, paths, &SetAttr { uid: Some(uid), gid, ..Default::default() })
}

fn cmd_touch(vol: &Volume, args: &[String]) -> CmdResult {
    if args.is_empty() {
        return Err("touch needs a PATH".into());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let t = Timestamp { secs: now.as_secs() as i64, nsecs: now.subsec_nanos() };
    for path in args {
        match vol.resolve(path) {
            Ok(ino) => {
                vol.setattr(ino, &SetAttr { atime: Some(t), mtime: Some(t), ..Default::default() })
                    .map_err(|e| err(path, e))?;
            }
            Err(ocfs2::Error::NotFound(_)) => {
                let (dir, name) = parent_and_name(vol, path)?;
                vol.create(dir, name, 0o644).map_err(|e| err(path, e))?;
            }
            Err(e) => return Err(err(path, e)),
        }
    }
    Ok(())
}
