//! `ocfs2-mount`: an OCFS2 volume mounted through FUSE, served by the library.
//!
//! `ocfs2-mount [-o OPT,...] [-f] [-v] [--syslog] DEVICE MOUNTPOINT`
//!
//! What a kernel filesystem does, this does too:
//! - The kernel checks permissions (`default_permissions`); new inodes belong to the caller's
//!   uid and gid (or the group of a set-group-ID parent, see [`ocfs2::fs::Owner`]) with the
//!   umask FUSE passes applied; chown and writes by non-root clear set-user-ID and
//!   set-group-ID as `setattr_prepare` and `file_remove_privs` do.
//! - Files that are open hold their inode ([`Volume::hold`]): unlinking one makes it an orphan
//!   that stays readable and writable until its last close.
//! - Every failure reaches the caller as the errno [`ocfs2::Error::errno`] gives; names longer
//!   than 255 bytes are refused with ENAMETOOLONG wherever a name comes in.
//! - Requests are read by fuser's session loop in one thread and handed to a pool of worker
//!   threads, which reply (fuser's replies are `Send`); the library takes the inode locks.
//! - SIGINT and SIGTERM unmount (so does `fusermount3 -u`), then the volume is synced and
//!   closed. Without `-f` the program starts itself again in the foreground as a child in its
//!   own process group, waits until the mount is up, and returns: daemonizing by `fork` needs
//!   `unsafe`, which the examples do not use.
//!
//! Options (`-o`): `ro`, `rw`, `allow_other`, `allow_root`, `auto_unmount`, `dev`, `nodev`,
//! `suid`, `nosuid`, `exec`, `noexec`, `atime`, `noatime`, `sync`, `async`, `dirsync`,
//! `default_permissions` (always on), `fsname=NAME`, and ours: `threads=N` (worker threads,
//! default 8), `cache_mb=N` (metadata cache), `direct` (O_DIRECT on the device), `slot=N`
//! (preferred slot), `localalloc=MB`.

#[allow(dead_code)]
#[path = "cli.rs"]
mod cli;

use fuser::consts::{FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FUSE_PARALLEL_DIROPS};
use fuser::{
    FileAttr, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session, TimeOrNow,
};
use ocfs2::fs::{FileType, Metadata, OpenInode, Owner, SetAttr, Timestamp};
use ocfs2::{MountOptions, Volume};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: ocfs2-mount [-o OPT[,OPT...]] [-f] [-v] [--syslog] DEVICE MOUNTPOINT
  -f          stay in the foreground (otherwise the mount runs in a background process)
  -v, -vv     log info, debug
  --syslog    log to syslog as well as to standard error
  -o ro,rw,allow_other,allow_root,auto_unmount,dev,nodev,suid,nosuid,exec,noexec,atime,noatime,
     sync,async,dirsync,default_permissions,fsname=NAME,threads=N,cache_mb=N,direct,slot=N,localalloc=MB";

/// Longest name a directory entry holds (`OCFS2_MAX_FILENAME_LEN`).
const NAME_MAX: usize = 255;
/// Largest write the kernel sends in one request (its FUSE limit is 256 pages).
const MAX_WRITE: u32 = 1 << 20;
/// The child started for the background mode prints this line once the mount is up.
const READY: &str = "ocfs2-mount: mounted";
/// Set in the environment of that child.
const NOTIFY_ENV: &str = "OCFS2_MOUNT_NOTIFY";

const S_ISUID: u16 = 0o4000;
const S_ISGID: u16 = 0o2000;
const S_IXGRP: u16 = 0o0010;

/// `fallocate` modes (linux/falloc.h).
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;
/// `renameat2` flags (linux/fs.h).
const RENAME_NOREPLACE: u32 = 1 << 0;
const RENAME_EXCHANGE: u32 = 1 << 1;

/// What the command line asked for.
struct Args {
    device: String,
    mountpoint: PathBuf,
    foreground: bool,
    verbose: u8,
    syslog: bool,
    read_only: bool,
    threads: usize,
    fuse: Vec<MountOption>,
    volume: MountOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: String::new(),
        mountpoint: PathBuf::new(),
        foreground: false,
        verbose: 0,
        syslog: false,
        read_only: false,
        threads: 8,
        fuse: Vec::new(),
        volume: MountOptions::writable(),
    };
    let mut fsname = None;
    let mut positional = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-f" => args.foreground = true,
            "-v" => args.verbose += 1,
            "-vv" => args.verbose += 2,
            "--syslog" => args.syslog = true,
            "-o" => {
                let opts = it.next().ok_or("-o needs a value")?;
                for opt in opts.split(',').filter(|o| !o.is_empty()) {
                    parse_option(&mut args, &mut fsname, opt)?;
                }
            }
            s if s.starts_with("-o") => {
                for opt in s[2..].split(',').filter(|o| !o.is_empty()) {
                    parse_option(&mut args, &mut fsname, opt)?;
                }
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ => positional.push(a),
        }
    }
    let [device, mountpoint] = <[String; 2]>::try_from(positional).map_err(|_| "give DEVICE and MOUNTPOINT")?;
    args.volume.read_only = args.read_only;
    args.fuse.push(if args.read_only { MountOption::RO } else { MountOption::RW });
    args.fuse.push(MountOption::DefaultPermissions);
    args.fuse.push(MountOption::FSName(fsname.unwrap_or_else(|| device.clone())));
    args.fuse.push(MountOption::Subtype("ocfs2".into()));
    args.device = device;
    args.mountpoint = PathBuf::from(mountpoint);
    Ok(args)
}

fn parse_option(args: &mut Args, fsname: &mut Option<String>, opt: &str) -> Result<(), String> {
    let number = |v: &str| v.parse::<u64>().map_err(|_| format!("-o {opt}: not a number"));
    let fuse = match opt {
        "ro" => {
            args.read_only = true;
            return Ok(());
        }
        "rw" => {
            args.read_only = false;
            return Ok(());
        }
        "default_permissions" => return Ok(()),
        "direct" => {
            args.volume.direct = Some(true);
            return Ok(());
        }
        "allow_other" => MountOption::AllowOther,
        "allow_root" => MountOption::AllowRoot,
        "auto_unmount" => MountOption::AutoUnmount,
        "dev" => MountOption::Dev,
        "nodev" => MountOption::NoDev,
        "suid" => MountOption::Suid,
        "nosuid" => MountOption::NoSuid,
        "exec" => MountOption::Exec,
        "noexec" => MountOption::NoExec,
        "atime" => MountOption::Atime,
        "noatime" => MountOption::NoAtime,
        "sync" => MountOption::Sync,
        "async" => MountOption::Async,
        "dirsync" => MountOption::DirSync,
        _ => {
            let (key, value) = opt.split_once('=').ok_or_else(|| format!("unknown mount option {opt}"))?;
            match key {
                "fsname" => *fsname = Some(value.to_string()),
                "threads" => args.threads = number(value)?.clamp(1, 256) as usize,
                "cache_mb" => args.volume.cache_mb = u32::try_from(number(value)?).map_err(|_| "cache_mb too large")?,
                "slot" => {
                    args.volume.preferred_slot = Some(u16::try_from(number(value)?).map_err(|_| "slot too large")?)
                }
                "localalloc" => {
                    args.volume.local_alloc_mb =
                        Some(u32::try_from(number(value)?).map_err(|_| "localalloc too large")?)
                }
                _ => return Err(format!("unknown mount option {opt}")),
            }
            return Ok(());
        }
    };
    args.fuse.push(fuse);
    Ok(())
}

/// An errno for a reply.
type Errno = i32;

/// The errno of a library error; failures that mean damage or a broken device are logged.
fn errno(e: ocfs2::Error) -> Errno {
    match &e {
        ocfs2::Error::Io(_)
        | ocfs2::Error::Corrupt { .. }
        | ocfs2::Error::Journal(_)
        | ocfs2::Error::Stopped(_)
        | ocfs2::Error::NotOcfs2(_) => log::error!("{e}"),
        _ => log::debug!("{e}"),
    }
    e.errno()
}

/// Refuses names a directory entry cannot hold.
fn check_name(name: &OsStr) -> Result<&[u8], Errno> {
    let name = name.as_bytes();
    if name.len() > NAME_MAX {
        return Err(nix::libc::ENAMETOOLONG);
    }
    Ok(name)
}

fn system_time(t: Timestamp) -> SystemTime {
    let whole = Duration::from_secs(t.secs.unsigned_abs());
    let at = if t.secs >= 0 { UNIX_EPOCH + whole } else { UNIX_EPOCH - whole };
    at + Duration::from_nanos(u64::from(t.nsecs))
}

fn timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp { secs: d.as_secs() as i64, nsecs: d.subsec_nanos() },
        Err(before) => {
            let d = before.duration();
            let (secs, nsecs) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nsecs == 0 {
                Timestamp { secs, nsecs: 0 }
            } else {
                Timestamp { secs: secs - 1, nsecs: 1_000_000_000 - nsecs }
            }
        }
    }
}

fn time_or_now(t: TimeOrNow) -> Timestamp {
    match t {
        TimeOrNow::SpecificTime(t) => timestamp(t),
        TimeOrNow::Now => timestamp(SystemTime::now()),
    }
}

fn kind(t: FileType) -> fuser::FileType {
    match t {
        FileType::Regular => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
    }
}

/// An open file or directory: the hold that keeps its inode alive past its last name.
struct Handle {
    hold: OpenInode,
    /// Opened with O_APPEND.
    append: bool,
    /// A directory's entries as of the `readdir` at offset 0 (so that offsets stay stable while
    /// a listing is read in several calls, as POSIX allows).
    listing: Option<Arc<Vec<ocfs2::DirEntry>>>,
}

/// The state every worker shares.
struct Mount {
    vol: Volume,
    root: u64,
    /// How long the kernel may keep attributes and names.
    ///
    /// On a local volume (mkfs -M local) every change passes through this daemon, and the
    /// kernel invalidates what it cached of each inode and directory that a request of its own
    /// changes (write, setattr, create, link, unlink, rename): it may cache for one second,
    /// libfuse's default, which saves a lookup per path component and a getattr per stat. On a
    /// cluster volume other nodes change inodes without the kernel hearing of it, so nothing is
    /// cached (0) and file data bypasses the page cache (direct I/O), as the kernel's OCFS2 drops
    /// its caches when a cluster lock moves to another node.
    ttl: Duration,
    local: bool,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
}

impl Mount {
    /// The volume's inode number for FUSE's.
    fn ino(&self, fuse_ino: u64) -> u64 {
        if fuse_ino == fuser::FUSE_ROOT_ID {
            self.root
        } else {
            fuse_ino
        }
    }

    /// FUSE's inode number for the volume's (the root is 1; no other inode sits in block 1).
    fn fuse_ino(&self, ino: u64) -> u64 {
        if ino == self.root {
            fuser::FUSE_ROOT_ID
        } else {
            ino
        }
    }

    fn attr(&self, m: &Metadata) -> FileAttr {
        FileAttr {
            ino: self.fuse_ino(m.ino),
            size: m.size,
            blocks: m.blocks,
            atime: system_time(m.atime),
            mtime: system_time(m.mtime),
            ctime: system_time(m.ctime),
            crtime: system_time(m.ctime),
            kind: kind(m.file_type),
            perm: m.permissions(),
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            // FUSE carries the kernel's 32-bit encoding, which equals the user-space dev_t
            // for every number the kernel can represent.
            rdev: m.rdev as u32,
            blksize: self.vol.geometry().cluster_size,
            flags: 0,
        }
    }

    fn stat(&self, ino: u64) -> Result<(FileAttr, u64), Errno> {
        let m = self.vol.metadata(ino).map_err(errno)?;
        Ok((self.attr(&m), u64::from(m.generation)))
    }

    fn open_handle(&self, ino: u64, append: bool) -> Result<u64, Errno> {
        let hold = self.vol.hold(ino).map_err(errno)?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Handle { hold, append, listing: None };
        self.handles.lock().unwrap_or_else(|e| e.into_inner()).insert(fh, handle);
        Ok(fh)
    }

    fn close_handle(&self, fh: u64) {
        let handle = self.handles.lock().unwrap_or_else(|e| e.into_inner()).remove(&fh);
        if let Some(handle) = handle {
            let ino = handle.hold.ino();
            if let Err(e) = handle.hold.close() {
                log::error!("releasing inode {ino}: {e}");
            }
        }
    }

    /// Flags for an open reply: the page cache may stay across opens on a local volume; a
    /// cluster volume's data is read and written through (see [`Mount::ttl`]). An O_DIRECT
    /// open needs nothing here: the kernel sends its I/O straight through (`fuse_direct_IO`)
    /// and still lets it be mapped, which FOPEN_DIRECT_IO would refuse.
    fn open_flags(&self) -> u32 {
        if self.local {
            FOPEN_KEEP_CACHE
        } else {
            FOPEN_DIRECT_IO
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<(FileAttr, u64), Errno> {
        let name = check_name(name)?;
        let ino = self.vol.lookup(self.ino(parent), name).map_err(errno)?;
        self.stat(ino)
    }

    fn setattr(&self, ino: u64, mut attr: SetAttr) -> Result<FileAttr, Errno> {
        let ino = self.ino(ino);
        if attr.uid.is_some() || attr.gid.is_some() {
            // chown clears set-user-ID, and set-group-ID where it means mandatory locking
            // it does not (group execute set), on everything but directories; the kernel
            // usually sends that mode along, but not always (`ATTR_KILL_SUID`).
            let m = self.vol.metadata(ino).map_err(errno)?;
            if attr.mode.is_none() && !m.is_dir() {
                let mut mode = m.permissions() & !S_ISUID;
                if mode & S_IXGRP != 0 {
                    mode &= !S_ISGID;
                }
                if mode != m.permissions() {
                    attr.mode = Some(mode);
                }
            }
        }
        if attr == SetAttr::default() {
            // chown(-1, -1) and the like still change the inode's ctime.
            attr.ctime = Some(timestamp(SystemTime::now()));
        }
        let m = self.vol.setattr(ino, &attr).map_err(errno)?;
        Ok(self.attr(&m))
    }

    fn write(&self, caller: Caller, ino: u64, fh: u64, offset: i64, data: &[u8]) -> Result<u32, Errno> {
        let ino = self.ino(ino);
        let offset = u64::try_from(offset).map_err(|_| nix::libc::EINVAL)?;
        let append = self.handles.lock().unwrap_or_else(|e| e.into_inner()).get(&fh).is_some_and(|h| h.append);
        if caller.uid != 0 {
            self.remove_privs(ino)?;
        }
        // The kernel knows the size on a local volume (it caches the page it wrote); through
        // direct I/O on a cluster volume only the library finds the true end for O_APPEND.
        if append && !self.local {
            self.vol.append(ino, data).map_err(errno)?;
        } else {
            self.vol.write(ino, offset, data).map_err(errno)?;
        }
        Ok(data.len() as u32)
    }

    /// A write by anyone but root clears set-user-ID, and set-group-ID with group execute
    /// (`file_remove_privs`).
    fn remove_privs(&self, ino: u64) -> Result<(), Errno> {
        let m = self.vol.metadata(ino).map_err(errno)?;
        let perm = m.permissions();
        let mut mode = perm & !S_ISUID;
        if perm & S_IXGRP != 0 {
            mode &= !S_ISGID;
        }
        if mode != perm {
            self.vol.setattr(ino, &SetAttr { mode: Some(mode), ..SetAttr::default() }).map_err(errno)?;
        }
        Ok(())
    }

    fn fallocate(&self, ino: u64, offset: i64, length: i64, mode: i32) -> Result<(), Errno> {
        let ino = self.ino(ino);
        let (Ok(offset), Ok(len)) = (u64::try_from(offset), u64::try_from(length)) else {
            return Err(nix::libc::EINVAL);
        };
        if len == 0 {
            return Err(nix::libc::EINVAL);
        }
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        let r = match mode & !FALLOC_FL_KEEP_SIZE {
            0 => self.vol.fallocate(ino, offset, len, keep),
            FALLOC_FL_PUNCH_HOLE if keep => self.vol.punch_hole(ino, offset, len),
            FALLOC_FL_PUNCH_HOLE => return Err(nix::libc::EINVAL),
            FALLOC_FL_ZERO_RANGE => self.vol.zero_range(ino, offset, len, keep),
            _ => return Err(nix::libc::EOPNOTSUPP),
        };
        r.map_err(errno)
    }

    fn readdir(&self, ino: u64, fh: u64, offset: i64, reply: &mut ReplyDirectory) -> Result<(), Errno> {
        let ino = self.ino(ino);
        let start = usize::try_from(offset).map_err(|_| nix::libc::EINVAL)?;
        let listing = {
            let cached =
                self.handles.lock().unwrap_or_else(|e| e.into_inner()).get(&fh).and_then(|h| h.listing.clone());
            match cached {
                Some(l) if start > 0 => l,
                _ => {
                    // A directory removed while open lists nothing, as a kernel filesystem's does.
                    let entries = match self.vol.read_dir(ino) {
                        Err(ocfs2::Error::NotFound(_)) => Vec::new(),
                        other => other.map_err(errno)?,
                    };
                    let fresh = Arc::new(entries);
                    if let Some(h) = self.handles.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&fh) {
                        h.listing = Some(fresh.clone());
                    }
                    fresh
                }
            }
        };
        for (i, entry) in listing.iter().enumerate().skip(start) {
            let ft = match entry.file_type {
                Some(t) => t,
                None => match self.vol.metadata(entry.ino) {
                    Ok(m) => m.file_type,
                    Err(_) => continue,
                },
            };
            let name = OsStr::from_bytes(&entry.name);
            if reply.add(self.fuse_ino(entry.ino), (i + 1) as i64, kind(ft), name) {
                break;
            }
        }
        Ok(())
    }
}

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
struct Caller {
    uid: u32,
    gid: u32,
}

impl Caller {
    fn of(req: &Request<'_>) -> Caller {
        Caller { uid: req.uid(), gid: req.gid() }
    }

    fn owner(self) -> Owner {
        Owner { uid: self.uid, gid: self.gid }
    }
}

type Job = Box<dyn FnOnce(&Mount) + Send>;

/// Worker threads that run requests and reply.
struct Pool {
    sender: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(mount: Arc<Mount>, threads: usize) -> std::io::Result<Pool> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (mount, receiver) = (mount.clone(), receiver.clone());
            let worker = std::thread::Builder::new().name(format!("ocfs2-fuse-{i}")).spawn(move || loop {
                let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                match job {
                    Ok(job) => job(&mount),
                    Err(_) => return,
                }
            })?;
            workers.push(worker);
        }
        Ok(Pool { sender: Some(sender), workers })
    }

    /// Finishes the queued requests and stops the workers.
    fn finish(&mut self) {
        self.sender = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The FUSE side: every request becomes a job for the pool.
struct Fs {
    jobs: mpsc::Sender<Job>,
}

impl Fs {
    fn run(&self, job: impl FnOnce(&Mount) + Send + 'static) {
        if self.jobs.send(Box::new(job)).is_err() {
            log::error!("the worker threads are gone; a request is dropped");
        }
    }
}

fn reply_entry(reply: ReplyEntry, ttl: Duration, r: Result<(FileAttr, u64), Errno>) {
    match r {
        Ok((attr, generation)) => reply.entry(&ttl, &attr, generation),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), std::os::raw::c_int> {
        // Lookups and readdir in one directory may run at once: the library locks.
        let _ = config.add_capabilities(FUSE_PARALLEL_DIROPS);
        let _ = config.set_max_write(MAX_WRITE);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.run(move |m| reply_entry(reply, m.ttl, m.lookup(parent, &name)));
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        self.run(move |m| match m.stat(m.ino(ino)) {
            Ok((attr, _)) => reply.attr(&m.ttl, &attr),
            Err(e) => reply.error(e),
        });
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let attr = SetAttr {
            size,
            mode: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            atime: atime.map(time_or_now),
            mtime: mtime.map(time_or_now),
            ctime: ctime.map(timestamp),
        };
        self.run(move |m| match m.setattr(ino, attr) {
            Ok(attr) => reply.attr(&m.ttl, &attr),
            Err(e) => reply.error(e),
        });
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        self.run(move |m| match m.vol.read_link(m.ino(ino)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn mknod(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (caller, name) = (Caller::of(req), name.to_owned());
        self.run(move |m| {
            let r = check_name(&name).and_then(|n| {
                let mode = (mode & !(umask & 0o7777)) as u16;
                let ino = m.vol.mknod_as(m.ino(parent), n, mode, u64::from(rdev), caller.owner()).map_err(errno)?;
                m.stat(ino)
            });
            reply_entry(reply, m.ttl, r)
        });
    }

    fn mkdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let (caller, name) = (Caller::of(req), name.to_owned());
        self.run(move |m| {
            let r = check_name(&name).and_then(|n| {
                let perm = (mode & !umask & 0o7777) as u16;
                let ino = m.vol.mkdir_as(m.ino(parent), n, perm, caller.owner()).map_err(errno)?;
                m.stat(ino)
            });
            reply_entry(reply, m.ttl, r)
        });
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run(move |m| {
            let r = check_name(&name).and_then(|n| m.vol.unlink(m.ino(parent), n).map_err(errno));
            reply_empty(reply, r)
        });
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run(move |m| {
            let r = check_name(&name).and_then(|n| m.vol.rmdir(m.ino(parent), n).map_err(errno));
            reply_empty(reply, r)
        });
    }

    fn symlink(&mut self, req: &Request<'_>, parent: u64, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let (caller, name, target) = (Caller::of(req), link_name.to_owned(), target.to_owned());
        self.run(move |m| {
            let r = check_name(&name).and_then(|n| {
                let t = target.as_os_str().as_bytes();
                let ino = m.vol.symlink_as(m.ino(parent), n, t, caller.owner()).map_err(errno)?;
                m.stat(ino)
            });
            reply_entry(reply, m.ttl, r)
        });
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.run(move |m| {
            let r = check_name(&name).and_then(|old| {
                let new = check_name(&newname)?;
                let (from, to) = (m.ino(parent), m.ino(newparent));
                // OCFS2 has no atomic exchange (the kernel's ocfs2_rename refuses it too).
                match flags {
                    0 => m.vol.rename(from, old, to, new).map_err(errno),
                    RENAME_NOREPLACE => m.vol.rename_noreplace(from, old, to, new).map_err(errno),
                    f if f & RENAME_EXCHANGE != 0 => Err(nix::libc::EINVAL),
                    _ => Err(nix::libc::EINVAL),
                }
            });
            reply_empty(reply, r)
        });
    }

    fn link(&mut self, _req: &Request<'_>, ino: u64, newparent: u64, newname: &OsStr, reply: ReplyEntry) {
        let newname = newname.to_owned();
        self.run(move |m| {
            let r = check_name(&newname).and_then(|n| {
                let ino = m.ino(ino);
                m.vol.link(ino, m.ino(newparent), n).map_err(errno)?;
                m.stat(ino)
            });
            reply_entry(reply, m.ttl, r)
        });
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        self.run(move |m| match m.open_handle(m.ino(ino), flags & nix::libc::O_APPEND != 0) {
            Ok(fh) => reply.opened(fh, m.open_flags()),
            Err(e) => reply.error(e),
        });
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        self.run(move |m| {
            let Ok(offset) = u64::try_from(offset) else {
                return reply.error(nix::libc::EINVAL);
            };
            let mut buf = vec![0u8; size as usize];
            match m.vol.read(m.ino(ino), offset, &mut buf) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let (caller, data) = (Caller::of(req), data.to_vec());
        self.run(move |m| match m.write(caller, ino, fh, offset, &data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        });
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        // Each write is a committed transaction already; close(2) promises no durability.
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.run(move |m| {
            m.close_handle(fh);
            reply.ok()
        });
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, datasync: bool, reply: ReplyEmpty) {
        self.run(move |m| {
            let ino = m.ino(ino);
            let r = if datasync { m.vol.sync_data(ino) } else { m.vol.sync_all(ino) };
            reply_empty(reply, r.map_err(errno))
        });
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        self.run(move |m| match m.open_handle(m.ino(ino), false) {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(e),
        });
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, fh: u64, offset: i64, mut reply: ReplyDirectory) {
        self.run(move |m| match m.readdir(ino, fh, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    fn releasedir(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _flags: i32, reply: ReplyEmpty) {
        self.run(move |m| {
            m.close_handle(fh);
            reply.ok()
        });
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        self.run(move |m| reply_empty(reply, m.vol.sync().map_err(errno)));
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        self.run(move |m| match m.vol.statfs() {
            Ok(s) => reply.statfs(
                s.total_blocks,
                s.free_blocks,
                s.free_blocks,
                s.files,
                s.free_files,
                s.block_size,
                s.name_max,
                s.block_size,
            ),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (caller, name) = (Caller::of(req), name.to_owned());
        self.run(move |m| {
            let r = check_name(&name).and_then(|n| {
                let perm = (mode & !umask & 0o7777) as u16;
                let ino = m.vol.create_as(m.ino(parent), n, perm, caller.owner()).map_err(errno)?;
                let (attr, generation) = m.stat(ino)?;
                let fh = m.open_handle(ino, flags & nix::libc::O_APPEND != 0)?;
                Ok((attr, generation, fh))
            });
            match r {
                Ok((attr, generation, fh)) => reply.created(&m.ttl, &attr, generation, fh, m.open_flags()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.run(move |m| reply_empty(reply, m.fallocate(ino, offset, length, mode)));
    }
}

/// Background mode: runs this program again with `-f` in a process group of its own, and
/// returns once the child says the mount is up (or failed).
fn start_in_background() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("ocfs2-mount: cannot find this program to run it in the background: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut child = match Command::new(exe)
        .arg("-f")
        .args(std::env::args_os().skip(1))
        .env(NOTIFY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("ocfs2-mount: cannot start the background process: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(out) = child.stdout.take() else { return ExitCode::FAILURE };
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    if line.trim_end() == READY {
        return ExitCode::SUCCESS;
    }
    // The child failed before mounting and said why on standard error.
    match child.wait() {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(_) => ExitCode::FAILURE,
    }
}

/// Blocks the signals that unmount in this thread and in every thread it starts afterwards,
/// so that only [`signal_waiter`] receives them.
fn block_signals() -> nix::Result<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()?;
    Ok(set)
}

/// A thread that waits for the blocked signals (`sigwait`: no handler, no `unsafe`) and
/// unmounts on SIGINT or SIGTERM; SIGHUP is ignored, as a mount outlives its terminal.
fn signal_waiter(
    set: nix::sys::signal::SigSet,
    mut unmount: fuser::SessionUnmounter,
    mountpoint: PathBuf,
) -> std::io::Result<()> {
    use nix::sys::signal::Signal;
    std::thread::Builder::new().name("ocfs2-fuse-signals".into()).spawn(move || loop {
        match set.wait() {
            Ok(Signal::SIGHUP) => log::info!("SIGHUP ignored"),
            Ok(sig) => {
                log::warn!("{sig}: unmounting {}", mountpoint.display());
                let _ = unmount.unmount();
                // A busy mount point refuses umount(2): detach it, as `fusermount3 -uz` does.
                if is_mounted(&mountpoint) {
                    let _ = Command::new("fusermount3").arg("-uzq").arg(&mountpoint).stderr(Stdio::null()).status();
                }
                return;
            }
            Err(e) => {
                log::error!("waiting for signals: {e}");
                return;
            }
        }
    })?;
    Ok(())
}

/// True while a FUSE filesystem is mounted at `mountpoint` (per /proc/self/mountinfo).
fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(path) = mountpoint.canonicalize() else { return false };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        fields.get(4) == Some(&want.as_str()) && l.contains(" - fuse")
    })
}

fn serve(args: Args) -> Result<(), String> {
    let device = &args.device;
    // Before any thread starts (the volume starts its committer), so that none but the
    // waiter can take a signal.
    let sigs = block_signals().map_err(|e| format!("blocking signals: {e}"))?;
    let vol = Volume::open_path(device, args.volume.clone()).map_err(|e| format!("{device}: {e}"))?;
    let local = vol.info().is_local();
    let mount = Arc::new(Mount {
        root: vol.root(),
        vol: vol.clone(),
        ttl: if local { Duration::from_secs(1) } else { Duration::ZERO },
        local,
        handles: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(1),
    });
    let pool = Pool::new(mount.clone(), args.threads).map_err(|e| format!("starting workers: {e}"))?;
    let mut pool = pool;
    let Some(jobs) = pool.sender.clone() else { return Err("no worker threads".into()) };
    let fs = Fs { jobs };
    let mut session = match Session::new(fs, &args.mountpoint, &args.fuse) {
        Ok(s) => s,
        Err(e) => {
            let _ = vol.close();
            return Err(format!("mounting {} on {}: {e}", device, args.mountpoint.display()));
        }
    };
    signal_waiter(sigs, session.unmount_callable(), args.mountpoint.clone())
        .map_err(|e| format!("signal thread: {e}"))?;
    log::info!("{} mounted on {} ({})", device, args.mountpoint.display(), if args.read_only { "ro" } else { "rw" });
    if std::env::var_os(NOTIFY_ENV).is_some() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{READY}");
        let _ = out.flush();
    }
    let served = session.run();
    // The kernel ended the session. fuser's own unmount at drop then fails with EINVAL when
    // the mount went away by `fusermount3 -u` (it cannot tell): nothing to report.
    let level = log::max_level();
    if !is_mounted(&args.mountpoint) {
        log::set_max_level(log::LevelFilter::Off);
    }
    drop(session);
    log::set_max_level(level);
    // Let the workers finish what they were given, then close.
    pool.finish();
    let held: Vec<u64> = mount.handles.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
    for fh in held {
        mount.close_handle(fh);
    }
    drop(mount);
    vol.sync().map_err(|e| format!("syncing {device}: {e}"))?;
    vol.close().map_err(|e| format!("closing {device}: {e}"))?;
    log::info!("{device} unmounted from {}", args.mountpoint.display());
    served.map_err(|e| format!("FUSE session: {e}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("ocfs2-mount: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !args.foreground {
        return start_in_background();
    }
    cli::start_logging("ocfs2-mount", args.verbose, args.syslog);
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            log::error!("{msg}");
            ExitCode::FAILURE
        }
    }
}
