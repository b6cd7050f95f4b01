//! NBD client: a [`BlockDevice`] on an export of a Network Block Device server, so that nodes on
//! several hosts share one disk (`qemu-nbd --shared=N --cache=none`, nbdkit, nbd-server) as the
//! seed setup shares a partition over iSCSI. The protocol is the one in NetworkBlockDevice/nbd's
//! doc/proto.md: fixed newstyle handshake with `NBD_OPT_GO` (falling back to
//! `NBD_OPT_EXPORT_NAME`, and to oldstyle servers), structured replies when the server has them,
//! `NBD_CMD_FLUSH` and `NBD_CMD_FLAG_FUA`.
//!
//! Invariants:
//! - One TCP connection per device and one command in flight. A mutex covers each command from
//!   its first byte sent to its last reply byte read, and the whole of a split or
//!   read-modify-write request, so replies never need sorting and the stream never slips.
//! - Every wait has a deadline: `connect_timeout` to dial, `io_timeout` for the handshake and for
//!   each command. A slow trickle of bytes cannot stretch a command past its deadline.
//! - A connection that breaks in a command (EOF, reset, timeout, a reply that breaks the protocol)
//!   is closed at once and the command fails with EIO: after a lost reply nothing read from that
//!   stream can be trusted. The next command dials again when `reconnect` is on. A server's error
//!   reply leaves the connection up and returns the server's errno.
//! - No command carries more than the server's maximum payload. When the server's minimum block
//!   size is above one byte, unaligned edges go through a read-modify-write of whole minimum
//!   blocks. That cycle is atomic against this device's other callers, not against other
//!   clients of the export; OCFS2 writes whole sectors, and [`BlockDevice::sector_size`] reports
//!   the minimum block so that it does.
#![deny(unsafe_code)]

use super::{check_range, BlockDevice, DeviceError};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The TCP port IANA reserved for NBD.
pub const NBD_DEFAULT_PORT: u16 = 10809;

// Magic numbers of the handshake and of transmission.
const NBDMAGIC: u64 = 0x4e42444d41474943; // "NBDMAGIC"
const IHAVEOPT: u64 = 0x49484156454f5054; // "IHAVEOPT"
const CLISERV_MAGIC: u64 = 0x0000420281861253; // oldstyle
const OPT_REPLY_MAGIC: u64 = 0x0003e889045565a9;
const REQUEST_MAGIC: u32 = 0x25609513;
const SIMPLE_REPLY_MAGIC: u32 = 0x67446698;
const STRUCTURED_REPLY_MAGIC: u32 = 0x668e33ef;

// Handshake flags (server) and client flags.
const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;
const CLIENT_FIXED_NEWSTYLE: u32 = 1 << 0;
const CLIENT_NO_ZEROES: u32 = 1 << 1;

// Transmission flags.
const FLAG_HAS_FLAGS: u16 = 1 << 0;
const FLAG_READ_ONLY: u16 = 1 << 1;
const FLAG_SEND_FLUSH: u16 = 1 << 2;
const FLAG_SEND_FUA: u16 = 1 << 3;
const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Options and their replies.
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR: u32 = 1 << 31;
const REP_ERR_UNSUP: u32 = REP_ERR + 1;
const REP_ERR_POLICY: u32 = REP_ERR + 2;
const REP_ERR_TLS_REQD: u32 = REP_ERR + 5;
const REP_ERR_UNKNOWN: u32 = REP_ERR + 6;
const REP_ERR_SHUTDOWN: u32 = REP_ERR + 7;
const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

// Commands.
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_FLAG_FUA: u16 = 1 << 0;

// Structured reply chunks.
const REPLY_FLAG_DONE: u16 = 1 << 0;
const REPLY_TYPE_NONE: u16 = 0;
const REPLY_TYPE_OFFSET_DATA: u16 = 1;
const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
const REPLY_TYPE_ERROR_BIT: u16 = 1 << 15;
const REPLY_TYPE_ERROR_OFFSET: u16 = REPLY_TYPE_ERROR_BIT + 2;

/// The payload limit the protocol tells clients to assume when the server names none.
const DEFAULT_MAX_PAYLOAD: u32 = 32 << 20;
/// The largest option reply or error chunk we accept: the protocol caps strings at 4096 bytes.
const MAX_SMALL_PAYLOAD: u32 = 64 << 10;
/// Option replies to one option (NBD_REP_INFO and the like) before we call the server broken.
const MAX_OPTION_REPLIES: usize = 256;
/// Error chunks in one structured reply before we call the server broken.
const MAX_ERROR_CHUNKS: usize = 1024;
/// Payloads up to this size go out in one write together with their request header.
const COALESCE: usize = 64 << 10;

/// Where an export lives: `nbd://HOST[:PORT][/EXPORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdAddress {
    /// Host name or address; IPv6 addresses without brackets.
    pub host: String,
    pub port: u16,
    /// Export name; empty for the server's default export.
    pub export: String,
}

impl NbdAddress {
    /// Parses `nbd://HOST[:PORT][/EXPORT]`; the export name may be percent-encoded.
    pub fn parse(url: &str) -> io::Result<NbdAddress> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url:?} is not an NBD URL: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected nbd://HOST[:PORT][/EXPORT]"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "nbd" => {}
            "nbds" | "nbds+unix" | "nbds+vsock" => return Err(bad("TLS (nbds://) is not supported")),
            "nbd+unix" | "nbd+vsock" => return Err(bad("only TCP (nbd://) is supported")),
            _ => return Err(bad("expected nbd://HOST[:PORT][/EXPORT]")),
        }
        if rest.contains(['?', '#']) {
            return Err(bad("query strings and fragments are not supported"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(bad("user names are not supported"));
        }
        let (host, port_part) = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split_once(']').ok_or_else(|| bad("unclosed '[' in the host"))?,
            None => match authority.rfind(':') {
                Some(at) => (&authority[..at], &authority[at..]),
                None => (authority, ""),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains([':', '[', ']']) && !authority.starts_with('[') {
            return Err(bad("an IPv6 address needs brackets, as in nbd://[::1]:10809/"));
        }
        let port = if port_part.is_empty() {
            NBD_DEFAULT_PORT
        } else {
            let digits = port_part.strip_prefix(':').ok_or_else(|| bad("junk after the host"))?;
            match digits.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad("the port is not a number from 1 to 65535")),
            }
        };
        let export = percent_decode(path).map_err(|why| bad(&why))?;
        if export.len() > 4096 || export.contains('\0') {
            return Err(bad("the export name is longer than 4096 bytes or holds a NUL"));
        }
        Ok(NbdAddress { host: host.to_string(), port, export })
    }

    /// The URL again, with the export percent-encoded where needed.
    pub fn url(&self) -> String {
        self.to_string()
    }
}

impl FromStr for NbdAddress {
    type Err = io::Error;
    fn from_str(url: &str) -> io::Result<NbdAddress> {
        NbdAddress::parse(url)
    }
}

impl fmt::Display for NbdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "nbd://[{}]:{}/", self.host, self.port)?;
        } else {
            write!(f, "nbd://{}:{}/", self.host, self.port)?;
        }
        for &b in self.export.as_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/:@!$&'()*+,;=".contains(&b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("a bad %-escape in the export name")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the export name is not UTF-8".to_string())
}

/// How to connect to an export and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdOptions {
    /// Refuse writes here (EROFS) even when the export takes them.
    pub read_only: bool,
    /// Ask for structured replies (reads can then skip holes and carry error messages).
    pub structured_replies: bool,
    /// How long dialling one address may take.
    pub connect_timeout: Duration,
    /// How long the handshake, and each command from request to last reply byte, may take.
    pub io_timeout: Duration,
    /// After a connection breaks, dial again on the next request (which fails with EIO if the
    /// export has changed size or block size, or cannot be reached).
    pub reconnect: bool,
    /// The largest payload of one command from our side; the server's maximum also applies.
    pub max_payload: u32,
}

impl Default for NbdOptions {
    fn default() -> Self {
        NbdOptions {
            read_only: false,
            structured_replies: true,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            reconnect: true,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// Which handshake the server spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NbdNegotiation {
    /// Fixed newstyle with `NBD_OPT_GO` (export and block size information).
    Go,
    /// Newstyle with `NBD_OPT_EXPORT_NAME` (older servers, or GO refused as unknown).
    ExportName,
    /// The oldstyle greeting: one unnamed export, no options.
    Oldstyle,
}

/// What the server said about the export in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdExport {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags (`NBD_FLAG_*`); zero when the server did not set `NBD_FLAG_HAS_FLAGS`.
    pub flags: u16,
    /// Requests must be aligned to this (a power of two, 1 to 64 KiB).
    pub min_block: u32,
    /// The size the server prefers for efficient I/O.
    pub preferred_block: u32,
    /// The largest payload of one command the server accepts.
    pub max_payload: u32,
    /// True when the server sent `NBD_INFO_BLOCK_SIZE`; otherwise the sizes are the defaults.
    pub block_sizes_advertised: bool,
    /// True when structured replies were negotiated.
    pub structured_replies: bool,
    pub negotiation: NbdNegotiation,
}

impl NbdExport {
    pub fn is_read_only(&self) -> bool {
        self.flags & FLAG_READ_ONLY != 0
    }
    pub fn can_flush(&self) -> bool {
        self.flags & FLAG_SEND_FLUSH != 0
    }
    pub fn can_fua(&self) -> bool {
        self.flags & FLAG_SEND_FUA != 0
    }
    /// The server shares its cache between connections, so a flush on one covers all.
    pub fn can_multi_conn(&self) -> bool {
        self.flags & FLAG_CAN_MULTI_CONN != 0
    }
}

/// Counters of one device, for tests and for seeing how requests were split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NbdStats {
    /// Commands sent (reads, writes, flushes), counting every piece of a split request.
    pub commands: u64,
    /// Connections dialled again after one broke.
    pub reconnects: u64,
}

/// Why a command failed.
#[derive(Debug)]
enum Fail {
    /// The server refused the command; the connection stays in step.
    Server { errno: i32 },
    /// The connection can no longer be trusted and must be closed.
    Broken { kind: io::ErrorKind, why: String },
}

impl Fail {
    fn protocol(why: impl Into<String>) -> Fail {
        Fail::Broken { kind: io::ErrorKind::InvalidData, why: why.into() }
    }
}

impl From<Fail> for io::Error {
    fn from(f: Fail) -> io::Error {
        match f {
            Fail::Server { errno } => io::Error::from_raw_os_error(errno),
            Fail::Broken { kind, why } => io::Error::new(kind, why),
        }
    }
}

/// The byte stream under a connection: TCP, or a scripted server in unit tests.
trait Transport: Read + Write + Send {
    fn set_read_limit(&mut self, limit: Duration) -> io::Result<()>;
    fn set_write_limit(&mut self, limit: Duration) -> io::Result<()>;
    fn close(&mut self);
}

impl Transport for TcpStream {
    fn set_read_limit(&mut self, limit: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(limit.max(Duration::from_millis(1))))
    }
    fn set_write_limit(&mut self, limit: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(limit.max(Duration::from_millis(1))))
    }
    fn close(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// A stream with a deadline that every read and write respects.
struct Wire<S> {
    stream: S,
    deadline: Instant,
}

impl<S: Transport> Wire<S> {
    fn arm(&mut self, limit: Duration) {
        self.deadline = Instant::now() + limit;
    }

    fn left(&self) -> Result<Duration, Fail> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Fail::Broken { kind: io::ErrorKind::TimedOut, why: "timed out waiting for the server".into() });
        }
        Ok(left)
    }

    fn io_fail(what: &str, e: io::Error) -> Fail {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Fail::Broken { kind: io::ErrorKind::TimedOut, why: format!("timed out on {what} the server") }
            }
            kind => Fail::Broken { kind, why: format!("{what} the server failed: {e}") },
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Fail> {
        let mut done = 0;
        while done < buf.len() {
            let left = self.left()?;
            self.stream.set_read_limit(left).map_err(|e| Self::io_fail("reading from", e))?;
            match self.stream.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(Fail::Broken {
                        kind: io::ErrorKind::UnexpectedEof,
                        why: "the server closed the connection".into(),
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Self::io_fail("reading from", e)),
            }
        }
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Fail> {
        let mut done = 0;
        while done < buf.len() {
            let left = self.left()?;
            self.stream.set_write_limit(left).map_err(|e| Self::io_fail("writing to", e))?;
            match self.stream.write(&buf[done..]) {
                Ok(0) => {
                    return Err(Fail::Broken {
                        kind: io::ErrorKind::WriteZero,
                        why: "the server stopped taking data".into(),
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Self::io_fail("writing to", e)),
            }
        }
        Ok(())
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let mut b = [0u8; N];
        self.read_exact(&mut b)?;
        Ok(b)
    }
    fn read_u16(&mut self) -> Result<u16, Fail> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }
    fn read_u32(&mut self) -> Result<u32, Fail> {
        Ok(u32::from_be_bytes(self.read_array()?))
    }
    fn read_u64(&mut self) -> Result<u64, Fail> {
        Ok(u64::from_be_bytes(self.read_array()?))
    }
    fn read_vec(&mut self, len: u32) -> Result<Vec<u8>, Fail> {
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v)?;
        Ok(v)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// One negotiated connection in the transmission phase.
struct Conn<S> {
    wire: Wire<S>,
    export: NbdExport,
    io_timeout: Duration,
    /// Payload limit of one command: the smaller of ours and the server's, in whole minimum blocks.
    chunk: u32,
    next_handle: u64,
    commands: u64,
}

// ---- Handshake ----

/// Negotiates `export` on a freshly connected stream.
fn handshake<S: Transport>(stream: S, export: &str, options: &NbdOptions) -> io::Result<Conn<S>> {
    let mut wire = Wire { stream, deadline: Instant::now() + options.io_timeout };
    let result = negotiate(&mut wire, export, options);
    match result {
        Ok(info) => {
            let chunk = options.max_payload.min(info.max_payload) / info.min_block * info.min_block;
            Ok(Conn {
                wire,
                export: info,
                io_timeout: options.io_timeout,
                chunk: chunk.max(info.min_block),
                next_handle: 1,
                commands: 0,
            })
        }
        Err(e) => {
            wire.stream.close();
            Err(e)
        }
    }
}

fn negotiate<S: Transport>(w: &mut Wire<S>, export: &str, options: &NbdOptions) -> io::Result<NbdExport> {
    if w.read_u64()? != NBDMAGIC {
        return Err(Fail::protocol("not an NBD server: the greeting lacks NBDMAGIC").into());
    }
    match w.read_u64()? {
        IHAVEOPT => {}
        CLISERV_MAGIC => return oldstyle(w, export),
        other => return Err(Fail::protocol(format!("unknown NBD handshake magic {other:#x}")).into()),
    }
    let server_flags = w.read_u16()?;
    let fixed = server_flags & FLAG_FIXED_NEWSTYLE != 0;
    let no_zeroes = server_flags & FLAG_NO_ZEROES != 0;
    let mut client_flags = 0;
    if fixed {
        client_flags |= CLIENT_FIXED_NEWSTYLE;
    }
    if no_zeroes {
        client_flags |= CLIENT_NO_ZEROES;
    }
    w.write_all(&u32::to_be_bytes(client_flags))?;
    let mut structured = false;
    if fixed {
        if options.structured_replies {
            structured = ask_structured_replies(w)?;
        }
        if let Some(mut info) = go(w, export)? {
            info.structured_replies = structured;
            return Ok(info);
        }
    }
    let mut info = export_name(w, export, no_zeroes)?;
    info.structured_replies = structured;
    Ok(info)
}

fn oldstyle<S: Transport>(w: &mut Wire<S>, export: &str) -> io::Result<NbdExport> {
    if !export.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the server speaks the oldstyle handshake, which has no export names (asked for {export:?})"),
        ));
    }
    let size = w.read_u64()?;
    // The oldstyle flags field is 32 bits; the transmission flags are its low half.
    let flags = w.read_u32()? as u16;
    w.read_array::<124>()?;
    Ok(default_export(size, flags, NbdNegotiation::Oldstyle))
}

fn default_export(size: u64, flags: u16, negotiation: NbdNegotiation) -> NbdExport {
    NbdExport {
        size,
        flags: if flags & FLAG_HAS_FLAGS != 0 { flags } else { 0 },
        min_block: 1,
        preferred_block: 4096,
        max_payload: DEFAULT_MAX_PAYLOAD,
        block_sizes_advertised: false,
        structured_replies: false,
        negotiation,
    }
}

fn send_option<S: Transport>(w: &mut Wire<S>, option: u32, data: &[u8]) -> Result<(), Fail> {
    let mut msg = Vec::with_capacity(16 + data.len());
    msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    w.write_all(&msg)
}

/// One option reply: (reply type, data).
fn read_option_reply<S: Transport>(w: &mut Wire<S>, option: u32) -> Result<(u32, Vec<u8>), Fail> {
    let magic = w.read_u64()?;
    if magic != OPT_REPLY_MAGIC {
        return Err(Fail::protocol(format!("bad option reply magic {magic:#x}")));
    }
    let replied_to = w.read_u32()?;
    if replied_to != option {
        return Err(Fail::protocol(format!("reply to option {replied_to} while option {option} was asked")));
    }
    let kind = w.read_u32()?;
    let len = w.read_u32()?;
    if len > MAX_SMALL_PAYLOAD {
        return Err(Fail::protocol(format!("option reply of {len} bytes is too long")));
    }
    Ok((kind, w.read_vec(len)?))
}

fn ask_structured_replies<S: Transport>(w: &mut Wire<S>) -> Result<bool, Fail> {
    send_option(w, OPT_STRUCTURED_REPLY, &[])?;
    for _ in 0..MAX_OPTION_REPLIES {
        let (kind, _) = read_option_reply(w, OPT_STRUCTURED_REPLY)?;
        if kind == REP_ACK {
            return Ok(true);
        }
        if kind & REP_ERR != 0 {
            return Ok(false);
        }
    }
    Err(Fail::protocol("no final reply to NBD_OPT_STRUCTURED_REPLY"))
}

/// `NBD_OPT_GO`; `None` when the server does not know the option.
fn go<S: Transport>(w: &mut Wire<S>, export: &str) -> io::Result<Option<NbdExport>> {
    let mut data = Vec::with_capacity(8 + export.len());
    data.extend_from_slice(&(export.len() as u32).to_be_bytes());
    data.extend_from_slice(export.as_bytes());
    // Asking for the block sizes promises the server that we honour them.
    data.extend_from_slice(&1u16.to_be_bytes());
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(w, OPT_GO, &data)?;
    let mut basics: Option<(u64, u16)> = None;
    let mut sizes: Option<(u32, u32, u32)> = None;
    for _ in 0..MAX_OPTION_REPLIES {
        let (kind, data) = read_option_reply(w, OPT_GO)?;
        match kind {
            REP_ACK => {
                let (size, flags) = basics.ok_or_else(|| Fail::protocol("NBD_OPT_GO ended without NBD_INFO_EXPORT"))?;
                let mut info = default_export(size, flags, NbdNegotiation::Go);
                if let Some((min, preferred, max)) = sizes {
                    info.min_block = min;
                    info.preferred_block = preferred;
                    info.max_payload = max;
                    info.block_sizes_advertised = true;
                }
                return Ok(Some(info));
            }
            REP_INFO => {
                if data.len() < 2 {
                    return Err(Fail::protocol("NBD_REP_INFO shorter than its type").into());
                }
                match be16(&data, 0) {
                    INFO_EXPORT if data.len() == 12 => basics = Some((be64(&data, 2), be16(&data, 10))),
                    INFO_BLOCK_SIZE if data.len() == 14 => {
                        sizes = Some(check_block_sizes(be32(&data, 2), be32(&data, 6), be32(&data, 10))?)
                    }
                    INFO_EXPORT | INFO_BLOCK_SIZE => {
                        return Err(Fail::protocol(format!("NBD_REP_INFO of the wrong length {}", data.len())).into())
                    }
                    _ => {}
                }
            }
            REP_ERR_UNSUP => return Ok(None),
            k if k & REP_ERR != 0 => {
                let error = option_error(k, &data, export);
                let _ = send_option(w, OPT_ABORT, &[]);
                return Err(error);
            }
            _ => {}
        }
    }
    Err(Fail::protocol("no final reply to NBD_OPT_GO").into())
}

/// Checks NBD_INFO_BLOCK_SIZE against the protocol's rules and returns (min, preferred, max).
fn check_block_sizes(min: u32, preferred: u32, max: u32) -> Result<(u32, u32, u32), Fail> {
    if !min.is_power_of_two() || min > 64 << 10 {
        return Err(Fail::protocol(format!("minimum block size {min} is not a power of two up to 64 KiB")));
    }
    if max < min || (max != u32::MAX && !max.is_multiple_of(min)) {
        return Err(Fail::protocol(format!("maximum payload {max} is not a multiple of the minimum block {min}")));
    }
    // The preferred size is only a hint: keep a sane one.
    let preferred = if preferred.is_power_of_two() && preferred >= min { preferred } else { min.max(4096) };
    Ok((min, preferred, max))
}

fn option_error(kind: u32, data: &[u8], export: &str) -> io::Error {
    let said = String::from_utf8_lossy(&data[..data.len().min(512)]).into_owned();
    let said = if said.is_empty() { String::new() } else { format!(": {said}") };
    let (errkind, what) = match kind {
        REP_ERR_UNKNOWN => (io::ErrorKind::NotFound, format!("the server has no export named {export:?}")),
        REP_ERR_POLICY => (io::ErrorKind::PermissionDenied, "the server's policy refuses the export".to_string()),
        REP_ERR_TLS_REQD => (io::ErrorKind::PermissionDenied, "the server requires TLS, which we do not speak".into()),
        REP_ERR_SHUTDOWN => (io::ErrorKind::ConnectionAborted, "the server is shutting down".to_string()),
        _ => (io::ErrorKind::Other, format!("the server refused NBD_OPT_GO with error {:#x}", kind)),
    };
    io::Error::new(errkind, format!("{what}{said}"))
}

fn export_name<S: Transport>(w: &mut Wire<S>, export: &str, no_zeroes: bool) -> io::Result<NbdExport> {
    send_option(w, OPT_EXPORT_NAME, export.as_bytes())?;
    let reply = (|| -> Result<(u64, u16), Fail> {
        let size = w.read_u64()?;
        let flags = w.read_u16()?;
        if !no_zeroes {
            w.read_array::<124>()?;
        }
        Ok((size, flags))
    })();
    match reply {
        Ok((size, flags)) => Ok(default_export(size, flags, NbdNegotiation::ExportName)),
        // This option has no error reply: a server without the export hangs up.
        Err(Fail::Broken { kind: io::ErrorKind::UnexpectedEof, .. }) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the server hung up on NBD_OPT_EXPORT_NAME: it has no export named {export:?}"),
        )),
        Err(f) => Err(f.into()),
    }
}

// ---- Transmission ----

/// What a command carries.
enum Payload<'a> {
    None,
    Write(&'a [u8]),
    Read(&'a mut [u8]),
}

/// Byte ranges of a read already filled by content chunks, to refuse overlaps and gaps.
#[derive(Default)]
struct Coverage {
    ranges: BTreeMap<u64, u64>,
    total: u64,
}

impl Coverage {
    /// Adds `[start, end)`; false when it overlaps a range already there.
    fn add(&mut self, start: u64, end: u64) -> bool {
        if let Some((_, &prev_end)) = self.ranges.range(..end).next_back() {
            if prev_end > start {
                return false;
            }
        }
        self.ranges.insert(start, end);
        self.total += end - start;
        true
    }
}

impl<S: Transport> Conn<S> {
    /// Sends one command and reads its whole reply.
    fn command(&mut self, cmd: u16, flags: u16, offset: u64, mut payload: Payload<'_>) -> Result<(), Fail> {
        self.wire.arm(self.io_timeout);
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        self.commands += 1;
        let len = match &payload {
            Payload::None => 0,
            Payload::Write(b) => b.len(),
            Payload::Read(b) => b.len(),
        };
        let mut msg = Vec::with_capacity(28 + if len <= COALESCE { len } else { 0 });
        msg.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        msg.extend_from_slice(&flags.to_be_bytes());
        msg.extend_from_slice(&cmd.to_be_bytes());
        msg.extend_from_slice(&handle.to_be_bytes());
        msg.extend_from_slice(&offset.to_be_bytes());
        msg.extend_from_slice(&(len as u32).to_be_bytes());
        match payload {
            Payload::Write(data) if data.len() <= COALESCE => {
                msg.extend_from_slice(data);
                self.wire.write_all(&msg)?;
            }
            Payload::Write(data) => {
                self.wire.write_all(&msg)?;
                self.wire.write_all(data)?;
            }
            _ => self.wire.write_all(&msg)?,
        }
        self.receive(handle, cmd, offset, &mut payload)
    }

    fn receive(&mut self, handle: u64, cmd: u16, offset: u64, payload: &mut Payload<'_>) -> Result<(), Fail> {
        match self.wire.read_u32()? {
            SIMPLE_REPLY_MAGIC => {
                let errno = self.wire.read_u32()?;
                let got = self.wire.read_u64()?;
                if got != handle {
                    return Err(Fail::protocol(format!("reply for handle {got:#x}, expected {handle:#x}")));
                }
                if errno != 0 {
                    return Err(Fail::Server { errno: errno_of(errno) });
                }
                if let Payload::Read(buf) = payload {
                    if self.export.structured_replies {
                        return Err(Fail::protocol(
                            "a simple reply carrying data after structured replies were agreed",
                        ));
                    }
                    self.wire.read_exact(buf)?;
                }
                Ok(())
            }
            STRUCTURED_REPLY_MAGIC if self.export.structured_replies => {
                self.receive_chunks(handle, cmd, offset, payload)
            }
            magic => Err(Fail::protocol(format!("bad reply magic {magic:#x}"))),
        }
    }

    /// The chunks of a structured reply, the first one's magic already read.
    fn receive_chunks(&mut self, handle: u64, cmd: u16, offset: u64, payload: &mut Payload<'_>) -> Result<(), Fail> {
        let mut coverage = Coverage::default();
        let mut error: Option<i32> = None;
        let mut error_chunks = 0usize;
        loop {
            let flags = self.wire.read_u16()?;
            let kind = self.wire.read_u16()?;
            let got = self.wire.read_u64()?;
            let len = self.wire.read_u32()?;
            if got != handle {
                return Err(Fail::protocol(format!("reply chunk for handle {got:#x}, expected {handle:#x}")));
            }
            match (kind, &mut *payload) {
                (REPLY_TYPE_NONE, _) => {
                    if len != 0 || flags & REPLY_FLAG_DONE == 0 {
                        return Err(Fail::protocol("NBD_REPLY_TYPE_NONE with a payload or not final"));
                    }
                }
                (REPLY_TYPE_OFFSET_DATA, Payload::Read(buf)) => {
                    if len < 9 {
                        return Err(Fail::protocol("data chunk shorter than 9 bytes"));
                    }
                    let at = self.wire.read_u64()?;
                    let (start, end) = chunk_range(offset, buf.len(), at, u64::from(len - 8))?;
                    if !coverage.add(start, end) {
                        return Err(Fail::protocol("data chunk overlaps an earlier chunk"));
                    }
                    self.wire.read_exact(&mut buf[start as usize..end as usize])?;
                }
                (REPLY_TYPE_OFFSET_HOLE, Payload::Read(buf)) => {
                    if len != 12 {
                        return Err(Fail::protocol("hole chunk whose length is not 12"));
                    }
                    let at = self.wire.read_u64()?;
                    let size = self.wire.read_u32()?;
                    if size == 0 {
                        return Err(Fail::protocol("hole chunk of zero bytes"));
                    }
                    let (start, end) = chunk_range(offset, buf.len(), at, u64::from(size))?;
                    if !coverage.add(start, end) {
                        return Err(Fail::protocol("hole chunk overlaps an earlier chunk"));
                    }
                    buf[start as usize..end as usize].fill(0);
                }
                (k, _) if k & REPLY_TYPE_ERROR_BIT != 0 => {
                    error_chunks += 1;
                    if error_chunks > MAX_ERROR_CHUNKS {
                        return Err(Fail::protocol("too many error chunks"));
                    }
                    let errno = self.error_chunk(k, len, cmd)?;
                    error.get_or_insert(errno);
                }
                (k, _) => return Err(Fail::protocol(format!("unexpected reply chunk type {k} to command {cmd}"))),
            }
            if flags & REPLY_FLAG_DONE != 0 {
                break;
            }
            let magic = self.wire.read_u32()?;
            if magic != STRUCTURED_REPLY_MAGIC {
                return Err(Fail::protocol(format!("bad reply chunk magic {magic:#x}")));
            }
        }
        if let Some(errno) = error {
            return Err(Fail::Server { errno });
        }
        if let Payload::Read(buf) = payload {
            if coverage.total != buf.len() as u64 {
                return Err(Fail::protocol("read reply ended before covering the request"));
            }
        }
        Ok(())
    }

    /// Reads an error chunk's payload and returns its errno.
    fn error_chunk(&mut self, kind: u16, len: u32, cmd: u16) -> Result<i32, Fail> {
        let fixed = if kind == REPLY_TYPE_ERROR_OFFSET { 14 } else { 6 };
        if len < fixed || len > MAX_SMALL_PAYLOAD {
            return Err(Fail::protocol(format!("error chunk of {len} bytes")));
        }
        let body = self.wire.read_vec(len)?;
        let msg_len = u32::from(be16(&body, 4));
        if msg_len > len - fixed {
            return Err(Fail::protocol("error chunk message longer than the chunk"));
        }
        let errno = errno_of(be32(&body, 0));
        let msg = String::from_utf8_lossy(&body[6..6 + msg_len as usize]);
        log::debug!("nbd: server error {errno} on command {cmd}: {msg}");
        Ok(errno)
    }

    /// Reads `buf` at `offset`, both multiples of the minimum block, in pieces of `chunk`.
    fn read_span(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Fail> {
        let chunk = self.chunk as usize;
        let mut at = offset;
        for piece in buf.chunks_mut(chunk) {
            let n = piece.len() as u64;
            self.command(CMD_READ, 0, at, Payload::Read(piece))?;
            at += n;
        }
        Ok(())
    }

    fn write_span(&mut self, offset: u64, buf: &[u8], flags: u16) -> Result<(), Fail> {
        let mut at = offset;
        for piece in buf.chunks(self.chunk as usize) {
            self.command(CMD_WRITE, flags, at, Payload::Write(piece))?;
            at += piece.len() as u64;
        }
        Ok(())
    }

    /// The minimum block starting at `start`, shortened where the export ends.
    fn edge_block(&self, start: u64) -> Vec<u8> {
        let len = u64::from(self.export.min_block).min(self.export.size.saturating_sub(start));
        vec![0u8; len as usize]
    }

    /// Reads any range that lies inside the export.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Fail> {
        let a = u64::from(self.export.min_block);
        let (mut pos, mut done) = (offset, 0usize);
        while done < buf.len() {
            let rest = buf.len() - done;
            let skip = pos % a;
            if skip == 0 && rest as u64 >= a {
                let n = (rest as u64 / a * a) as usize;
                self.read_span(pos, &mut buf[done..done + n])?;
                pos += n as u64;
                done += n;
            } else {
                let mut block = self.edge_block(pos - skip);
                self.read_span(pos - skip, &mut block)?;
                let n = ((a - skip) as usize).min(rest);
                buf[done..done + n].copy_from_slice(&block[skip as usize..skip as usize + n]);
                pos += n as u64;
                done += n;
            }
        }
        Ok(())
    }

    /// Writes any range that lies inside the export, merging partial minimum blocks.
    fn write(&mut self, offset: u64, buf: &[u8], flags: u16) -> Result<(), Fail> {
        let a = u64::from(self.export.min_block);
        let (mut pos, mut done) = (offset, 0usize);
        while done < buf.len() {
            let rest = buf.len() - done;
            let skip = pos % a;
            if skip == 0 && rest as u64 >= a {
                let n = (rest as u64 / a * a) as usize;
                self.write_span(pos, &buf[done..done + n], flags)?;
                pos += n as u64;
                done += n;
            } else {
                let mut block = self.edge_block(pos - skip);
                self.read_span(pos - skip, &mut block)?;
                let n = ((a - skip) as usize).min(rest);
                block[skip as usize..skip as usize + n].copy_from_slice(&buf[done..done + n]);
                self.write_span(pos - skip, &block, flags)?;
                pos += n as u64;
                done += n;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Fail> {
        self.command(CMD_FLUSH, 0, 0, Payload::None)
    }

    /// Says goodbye (`NBD_CMD_DISC`, which has no reply) and closes the stream.
    fn disconnect(&mut self) {
        self.wire.arm(self.io_timeout.min(Duration::from_secs(2)));
        let mut msg = Vec::with_capacity(28);
        msg.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        msg.extend_from_slice(&0u16.to_be_bytes());
        msg.extend_from_slice(&CMD_DISC.to_be_bytes());
        msg.extend_from_slice(&self.next_handle.to_be_bytes());
        msg.extend_from_slice(&[0u8; 12]);
        let _ = self.wire.write_all(&msg);
        self.wire.stream.close();
    }
}

/// The errno a server's error value stands for; zero in an error is itself an error.
fn errno_of(value: u32) -> i32 {
    match i32::try_from(value) {
        Ok(e) if e > 0 => e,
        _ => libc::EIO,
    }
}

/// `[start, end)` inside a request buffer of `len` bytes at `offset` for a chunk of `size`
/// bytes at `at`, or a protocol error when the chunk lies outside the request.
fn chunk_range(offset: u64, len: usize, at: u64, size: u64) -> Result<(u64, u64), Fail> {
    let start = at.checked_sub(offset).ok_or_else(|| Fail::protocol("chunk before the requested range"))?;
    match start.checked_add(size) {
        Some(end) if end <= len as u64 => Ok((start, end)),
        _ => Err(Fail::protocol("chunk beyond the requested range")),
    }
}

// ---- The device ----

/// A [`BlockDevice`] on an NBD export. `Send + Sync`: commands from many threads take turns on
/// one connection.
pub struct NbdDevice {
    address: NbdAddress,
    options: NbdOptions,
    export: NbdExport,
    state: Mutex<State>,
}

struct State {
    conn: Option<Conn<TcpStream>>,
    /// Commands of connections that are gone, so that the count survives reconnects.
    commands_before: u64,
    reconnects: u64,
}

impl NbdDevice {
    /// Connects to `nbd://HOST[:PORT][/EXPORT]` with the default options.
    pub fn connect(url: &str) -> io::Result<NbdDevice> {
        NbdDevice::connect_with(&NbdAddress::parse(url)?, NbdOptions::default())
    }

    /// Connects to `address` as `options` say.
    pub fn connect_with(address: &NbdAddress, options: NbdOptions) -> io::Result<NbdDevice> {
        let conn = dial(address, &options)?;
        Ok(NbdDevice {
            address: address.clone(),
            export: conn.export,
            options,
            state: Mutex::new(State { conn: Some(conn), commands_before: 0, reconnects: 0 }),
        })
    }

    pub fn address(&self) -> &NbdAddress {
        &self.address
    }

    /// What the server said about the export when we first connected.
    pub fn export(&self) -> &NbdExport {
        &self.export
    }

    /// True when writes are refused, by the export or by our options.
    pub fn is_read_only(&self) -> bool {
        self.options.read_only || self.export.is_read_only()
    }

    /// True while a connection is up (false after one broke and before the next request).
    pub fn is_connected(&self) -> bool {
        self.state.lock().conn.is_some()
    }

    pub fn stats(&self) -> NbdStats {
        let state = self.state.lock();
        NbdStats {
            commands: state.commands_before + state.conn.as_ref().map_or(0, |c| c.commands),
            reconnects: state.reconnects,
        }
    }

    /// Writes `buf` at `offset` and returns only once it is durable: with `NBD_CMD_FLAG_FUA`
    /// when the server offers it, else followed by a flush.
    pub fn write_at_fua(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.check_write(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let (fua, flush) = (self.export.can_fua(), self.export.can_flush());
        self.run("write", offset, buf.len(), |c| {
            if fua {
                c.write(offset, buf, CMD_FLAG_FUA)
            } else {
                c.write(offset, buf, 0)?;
                if flush {
                    c.flush()?;
                }
                Ok(())
            }
        })
    }

    fn check_write(&self, offset: u64, len: usize) -> Result<(), DeviceError> {
        if self.is_read_only() {
            return Err(DeviceError::ReadOnly);
        }
        check_range(offset, len, self.export.size)
    }

    /// Runs `f` on the connection, dialling again first if the last one broke.
    fn run<R>(
        &self,
        op: &'static str,
        offset: u64,
        len: usize,
        f: impl FnOnce(&mut Conn<TcpStream>) -> Result<R, Fail>,
    ) -> Result<R, DeviceError> {
        let fail = |errno| DeviceError::Io { op, offset, len, errno };
        let mut state = self.state.lock();
        if state.conn.is_none() {
            let conn = self.redial().map_err(|e| {
                log::warn!("{}: cannot reconnect: {e}", self.address);
                fail(libc::EIO)
            })?;
            state.conn = Some(conn);
            state.reconnects += 1;
        }
        let Some(conn) = state.conn.as_mut() else { return Err(fail(libc::EIO)) };
        match f(conn) {
            Ok(r) => Ok(r),
            Err(Fail::Server { errno }) => {
                if errno == libc::ESHUTDOWN {
                    // The protocol asks for a soft disconnect after ESHUTDOWN.
                    conn.disconnect();
                    let commands = conn.commands;
                    state.commands_before += commands;
                    state.conn = None;
                }
                Err(fail(errno))
            }
            Err(Fail::Broken { why, .. }) => {
                log::warn!("{}: connection dropped during {op} of {len} bytes at {offset}: {why}", self.address);
                conn.wire.stream.close();
                let commands = conn.commands;
                state.commands_before += commands;
                state.conn = None;
                Err(fail(libc::EIO))
            }
        }
    }

    fn redial(&self) -> io::Result<Conn<TcpStream>> {
        if !self.options.reconnect {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the connection broke and reconnect is off"));
        }
        let mut conn = dial(&self.address, &self.options)?;
        let (old, new) = (self.export, conn.export);
        if new.size != old.size || new.min_block != old.min_block || new.is_read_only() != old.is_read_only() {
            conn.disconnect();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the export changed: size {} -> {}, minimum block {} -> {}, read-only {} -> {}",
                    old.size,
                    new.size,
                    old.min_block,
                    new.min_block,
                    old.is_read_only(),
                    new.is_read_only()
                ),
            ));
        }
        Ok(conn)
    }
}

/// Opens a TCP connection to `address` and negotiates its export.
fn dial(address: &NbdAddress, options: &NbdOptions) -> io::Result<Conn<TcpStream>> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{address}: {e}"));
    let addrs = (address.host.as_str(), address.port).to_socket_addrs().map_err(context)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", address.host));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, options.connect_timeout) {
            Ok(stream) => {
                stream.set_nodelay(true).map_err(context)?;
                return handshake(stream, &address.export, options).map_err(context);
            }
            Err(e) => last = e,
        }
    }
    Err(context(last))
}

impl BlockDevice for NbdDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(offset, buf.len(), self.export.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        self.run("read", offset, len, |c| c.read(offset, buf))
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.check_write(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        self.run("write", offset, buf.len(), |c| c.write(offset, buf, 0))
    }

    /// Sends `NBD_CMD_FLUSH`. A server that offers no flush has nothing to make durable that we
    /// could ask for, and a device that refuses writes has written nothing: both succeed at once.
    fn flush(&self) -> Result<(), DeviceError> {
        if self.is_read_only() || !self.export.can_flush() {
            return Ok(());
        }
        self.run("flush", 0, 0, |c| c.flush())
    }

    fn len(&self) -> u64 {
        self.export.size
    }

    /// The server's minimum block size, and never less than 512.
    fn sector_size(&self) -> u32 {
        self.export.min_block.max(512)
    }
}

impl Drop for NbdDevice {
    fn drop(&mut self) {
        if let Some(conn) = self.state.get_mut().conn.as_mut() {
            conn.disconnect();
        }
    }
}

impl fmt::Debug for NbdDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NbdDevice").field("address", &self.address.to_string()).field("export", &self.export).finish()
    }
}

#[cfg(test)]
mod tests {
    //! The client against scripted servers: what it sends, what it makes of every reply, and
    //! that no byte sequence from a server makes it panic.
    use super::*;

    /// A server whose every byte is written in advance; reads come in small pieces so that
    /// every field is also read in parts.
    struct Script {
        input: Vec<u8>,
        pos: usize,
        step: usize,
        sent: Vec<u8>,
    }

    impl Script {
        fn new(input: Vec<u8>) -> Script {
            Script { input, pos: 0, step: 7, sent: Vec::new() }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.input.len() - self.pos).min(self.step);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for Script {
        fn set_read_limit(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
        fn set_write_limit(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
        fn close(&mut self) {}
    }

    fn greeting(flags: u16) -> Vec<u8> {
        let mut v = NBDMAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&IHAVEOPT.to_be_bytes());
        v.extend_from_slice(&flags.to_be_bytes());
        v
    }

    fn opt_reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
        let mut v = OPT_REPLY_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&option.to_be_bytes());
        v.extend_from_slice(&kind.to_be_bytes());
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn info_export(size: u64, flags: u16) -> Vec<u8> {
        let mut d = INFO_EXPORT.to_be_bytes().to_vec();
        d.extend_from_slice(&size.to_be_bytes());
        d.extend_from_slice(&flags.to_be_bytes());
        opt_reply(OPT_GO, REP_INFO, &d)
    }

    fn info_block(min: u32, preferred: u32, max: u32) -> Vec<u8> {
        let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        for x in [min, preferred, max] {
            d.extend_from_slice(&x.to_be_bytes());
        }
        opt_reply(OPT_GO, REP_INFO, &d)
    }

    const RW_FLAGS: u16 = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA;

    /// A full fixed-newstyle handshake: structured replies as asked, GO with both infos.
    fn handshake_bytes(structured: bool, size: u64, min: u32, max: u32) -> Vec<u8> {
        let mut v = greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        v.extend(opt_reply(OPT_STRUCTURED_REPLY, if structured { REP_ACK } else { REP_ERR_UNSUP }, &[]));
        v.extend(info_export(size, RW_FLAGS));
        v.extend(info_block(min, 4096.max(min), max));
        v.extend(opt_reply(OPT_GO, REP_ACK, &[]));
        v
    }

    fn simple(errno: u32, handle: u64, data: &[u8]) -> Vec<u8> {
        let mut v = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&errno.to_be_bytes());
        v.extend_from_slice(&handle.to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn chunk(flags: u16, kind: u16, handle: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&flags.to_be_bytes());
        v.extend_from_slice(&kind.to_be_bytes());
        v.extend_from_slice(&handle.to_be_bytes());
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn data_chunk(flags: u16, handle: u64, at: u64, data: &[u8]) -> Vec<u8> {
        let mut p = at.to_be_bytes().to_vec();
        p.extend_from_slice(data);
        chunk(flags, REPLY_TYPE_OFFSET_DATA, handle, &p)
    }

    fn hole_chunk(flags: u16, handle: u64, at: u64, size: u32) -> Vec<u8> {
        let mut p = at.to_be_bytes().to_vec();
        p.extend_from_slice(&size.to_be_bytes());
        chunk(flags, REPLY_TYPE_OFFSET_HOLE, handle, &p)
    }

    fn error_chunk(flags: u16, handle: u64, errno: u32, msg: &str) -> Vec<u8> {
        let mut p = errno.to_be_bytes().to_vec();
        p.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        p.extend_from_slice(msg.as_bytes());
        chunk(flags, REPLY_TYPE_ERROR_BIT + 1, handle, &p)
    }

    fn opts() -> NbdOptions {
        NbdOptions { io_timeout: Duration::from_secs(5), ..NbdOptions::default() }
    }

    fn connect(script: Vec<u8>) -> Conn<Script> {
        handshake(Script::new(script), "disk", &opts()).expect("handshake")
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
    }

    /// The requests the client sent after the handshake: (flags, type, handle, offset, length, payload).
    fn requests(sent: &[u8]) -> Vec<(u16, u16, u64, u64, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = sent.windows(4).position(|w| w == REQUEST_MAGIC.to_be_bytes()).expect("a request");
        while at < sent.len() {
            assert_eq!(be32(sent, at), REQUEST_MAGIC);
            let (flags, kind, handle, offset, len) =
                (be16(sent, at + 4), be16(sent, at + 6), be64(sent, at + 8), be64(sent, at + 16), be32(sent, at + 24));
            at += 28;
            let payload = if kind == CMD_WRITE { sent[at..at + len as usize].to_vec() } else { Vec::new() };
            at += payload.len();
            out.push((flags, kind, handle, offset, len, payload));
        }
        out
    }

    #[test]
    fn go_handshake_reads_size_flags_block_sizes_and_asks_for_them() {
        let conn = connect(handshake_bytes(true, 1 << 30, 512, 1 << 20));
        let e = conn.export;
        assert_eq!(
            (e.size, e.flags, e.min_block, e.preferred_block, e.max_payload),
            (1 << 30, RW_FLAGS, 512, 4096, 1 << 20)
        );
        assert!(e.block_sizes_advertised && e.structured_replies && e.can_fua() && e.can_flush() && !e.is_read_only());
        assert_eq!(e.negotiation, NbdNegotiation::Go);
        assert_eq!(conn.chunk, 1 << 20);
        let sent = &conn.wire.stream.sent;
        assert_eq!(be32(sent, 0), CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES);
        // NBD_OPT_STRUCTURED_REPLY, then NBD_OPT_GO naming the export and asking for block sizes.
        assert_eq!((be64(sent, 4), be32(sent, 12), be32(sent, 16)), (IHAVEOPT, OPT_STRUCTURED_REPLY, 0));
        assert_eq!((be64(sent, 20), be32(sent, 28), be32(sent, 32)), (IHAVEOPT, OPT_GO, 4 + 4 + 2 + 2));
        assert_eq!(be32(sent, 36), 4);
        assert_eq!(&sent[40..44], b"disk");
        assert_eq!((be16(sent, 44), be16(sent, 46)), (1, INFO_BLOCK_SIZE));
        assert_eq!(sent.len(), 48);
    }

    #[test]
    fn server_without_go_gets_export_name() {
        let mut s = greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        s.extend(opt_reply(OPT_STRUCTURED_REPLY, REP_ERR_UNSUP, &[]));
        s.extend(opt_reply(OPT_GO, REP_ERR_UNSUP, b"what is GO?"));
        s.extend_from_slice(&12345u64.to_be_bytes());
        s.extend_from_slice(&(FLAG_HAS_FLAGS | FLAG_READ_ONLY).to_be_bytes());
        let conn = connect(s);
        let e = conn.export;
        assert_eq!(
            (e.size, e.negotiation, e.min_block, e.structured_replies),
            (12345, NbdNegotiation::ExportName, 1, false)
        );
        assert!(e.is_read_only() && !e.block_sizes_advertised);
        let sent = &conn.wire.stream.sent;
        let tail = &sent[sent.len() - 20..];
        assert_eq!((be64(tail, 0), be32(tail, 8), be32(tail, 12)), (IHAVEOPT, OPT_EXPORT_NAME, 4));
        assert_eq!(&tail[16..], b"disk");
    }

    #[test]
    fn plain_newstyle_server_gets_export_name_at_once_and_its_zero_padding_is_read() {
        let mut s = greeting(0);
        s.extend_from_slice(&4096u64.to_be_bytes());
        s.extend_from_slice(&(FLAG_HAS_FLAGS | FLAG_SEND_FLUSH).to_be_bytes());
        s.extend_from_slice(&[0u8; 124]);
        s.extend(simple(0, 1, &[]));
        let mut conn = connect(s);
        assert_eq!(be32(&conn.wire.stream.sent, 0), 0, "no client flags the server did not offer");
        assert_eq!(be32(&conn.wire.stream.sent, 12), OPT_EXPORT_NAME);
        assert_eq!(conn.export.negotiation, NbdNegotiation::ExportName);
        conn.flush().expect("the flush reply follows the padding");
    }

    #[test]
    fn oldstyle_server_gives_its_one_unnamed_export() {
        let mut s = NBDMAGIC.to_be_bytes().to_vec();
        s.extend_from_slice(&CLISERV_MAGIC.to_be_bytes());
        s.extend_from_slice(&(1u64 << 20).to_be_bytes());
        s.extend_from_slice(&u32::from(FLAG_HAS_FLAGS | FLAG_SEND_FLUSH).to_be_bytes());
        s.extend_from_slice(&[0u8; 124]);
        let conn = handshake(Script::new(s.clone()), "", &opts()).unwrap();
        assert_eq!((conn.export.size, conn.export.negotiation), (1 << 20, NbdNegotiation::Oldstyle));
        let err = handshake(Script::new(s), "named", &opts()).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn unknown_export_is_not_found_and_carries_the_servers_words() {
        let mut s = greeting(FLAG_FIXED_NEWSTYLE);
        s.extend(opt_reply(OPT_STRUCTURED_REPLY, REP_ACK, &[]));
        s.extend(opt_reply(OPT_GO, REP_ERR_UNKNOWN, b"export 'disk' not present"));
        let err = handshake(Script::new(s), "disk", &opts()).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("not present"), "{err}");
    }

    #[test]
    fn impossible_block_sizes_are_refused() {
        for (min, max) in [(3, 4096), (128 << 10, 128 << 10), (4096, 2048), (4096, 6144)] {
            let err = handshake(Script::new(handshake_bytes(true, 1 << 20, min, max)), "disk", &opts()).err();
            assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::InvalidData), "min {min} max {max}");
        }
        let conn = connect(handshake_bytes(true, 1 << 20, 4096, u32::MAX));
        assert_eq!(conn.chunk, DEFAULT_MAX_PAYLOAD, "an unlimited server still gets our own limit");
    }

    #[test]
    fn structured_read_assembles_data_and_hole_chunks_sent_out_of_order() {
        let data = pattern(3000, 1);
        let mut s = handshake_bytes(true, 1 << 20, 1, 1 << 20);
        s.extend(data_chunk(0, 1, 1000 + 2000, &data[2000..]));
        s.extend(hole_chunk(0, 1, 1000 + 500, 1500));
        s.extend(data_chunk(REPLY_FLAG_DONE, 1, 1000, &data[..500]));
        let mut conn = connect(s);
        let mut buf = vec![0xEEu8; 3000];
        conn.read(1000, &mut buf).unwrap();
        assert_eq!(&buf[..500], &data[..500]);
        assert!(buf[500..2000].iter().all(|&b| b == 0));
        assert_eq!(&buf[2000..], &data[2000..]);
    }

    #[test]
    fn error_chunk_gives_the_servers_errno_and_keeps_the_connection() {
        let mut s = handshake_bytes(true, 1 << 20, 1, 1 << 20);
        s.extend(error_chunk(0, 1, libc::ENOSPC as u32, "disk full"));
        s.extend(chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 1, &[]));
        s.extend(simple(0, 2, &[]));
        let mut conn = connect(s);
        assert!(matches!(conn.write(0, &[1, 2, 3], 0), Err(Fail::Server { errno: libc::ENOSPC })));
        conn.flush().expect("the next command works");
    }

    #[test]
    fn replies_that_break_the_protocol_break_the_connection() {
        let d = pattern(100, 3);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "overlapping chunks",
                [data_chunk(0, 1, 0, &d[..60]), data_chunk(REPLY_FLAG_DONE, 1, 50, &d[50..])].concat(),
            ),
            ("done before all data", data_chunk(REPLY_FLAG_DONE, 1, 0, &d[..99])),
            ("chunk outside the request", data_chunk(REPLY_FLAG_DONE, 1, 1, &d)),
            ("wrong handle", data_chunk(REPLY_FLAG_DONE, 9, 0, &d)),
            ("simple reply with data", simple(0, 1, &d)),
            ("unknown chunk type", chunk(REPLY_FLAG_DONE, 77, 1, &[])),
            ("hole of zero bytes", hole_chunk(REPLY_FLAG_DONE, 1, 0, 0)),
            ("error message longer than its chunk", chunk(REPLY_FLAG_DONE, 0x8001, 1, &[0, 0, 0, 5, 0, 9, b'x'])),
            ("none with payload", chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 1, &[0])),
            ("bad magic", vec![0xde, 0xad, 0xbe, 0xef]),
            ("server hangs up", Vec::new()),
        ];
        for (what, reply) in cases {
            let mut s = handshake_bytes(true, 1 << 20, 1, 1 << 20);
            s.extend(reply);
            let mut conn = connect(s);
            let mut buf = vec![0u8; 100];
            assert!(matches!(conn.read(0, &mut buf), Err(Fail::Broken { .. })), "{what}");
        }
    }

    #[test]
    fn simple_replies_carry_data_or_an_errno() {
        let d = pattern(64, 9);
        let mut s = handshake_bytes(false, 1 << 20, 1, 1 << 20);
        s.extend(simple(0, 1, &d));
        s.extend(simple(libc::EIO as u32, 2, &[]));
        s.extend(simple(0, 3, &[]));
        let mut conn = connect(s);
        let mut buf = vec![0u8; 64];
        conn.read(4096, &mut buf).unwrap();
        assert_eq!(buf, d);
        assert!(matches!(conn.read(0, &mut buf), Err(Fail::Server { errno: libc::EIO })));
        conn.flush().unwrap();
    }

    #[test]
    fn reads_split_at_the_maximum_payload_and_align_edges_to_the_minimum_block() {
        // min 512, max 1024: a read of 2000 bytes at 100 becomes block 0, then 1024 + 512 bytes
        // of whole blocks from 512, then the block at 2048.
        let disk = pattern(4096, 5);
        let mut s = handshake_bytes(false, 4096, 512, 1024);
        s.extend(simple(0, 1, &disk[0..512]));
        s.extend(simple(0, 2, &disk[512..1536]));
        s.extend(simple(0, 3, &disk[1536..2048]));
        s.extend(simple(0, 4, &disk[2048..2560]));
        let mut conn = connect(s);
        let mut buf = vec![0u8; 2000];
        conn.read(100, &mut buf).unwrap();
        assert_eq!(buf, &disk[100..2100]);
        let got: Vec<(u64, u32)> = requests(&conn.wire.stream.sent).iter().map(|r| (r.3, r.4)).collect();
        assert_eq!(got, vec![(0, 512), (512, 1024), (1536, 512), (2048, 512)]);
    }

    #[test]
    fn unaligned_write_merges_into_whole_minimum_blocks_with_fua_on_every_piece() {
        let disk = pattern(1024, 2);
        let mut s = handshake_bytes(false, 4096, 512, 1 << 20);
        s.extend(simple(0, 1, &disk[0..512]));
        s.extend(simple(0, 2, &[]));
        s.extend(simple(0, 3, &disk[512..1024]));
        s.extend(simple(0, 4, &[]));
        let mut conn = connect(s);
        let new = pattern(500, 99);
        conn.write(300, &new, CMD_FLAG_FUA).unwrap();
        let reqs = requests(&conn.wire.stream.sent);
        let shape: Vec<(u16, u16, u64, u32)> = reqs.iter().map(|r| (r.0, r.1, r.3, r.4)).collect();
        assert_eq!(
            shape,
            vec![
                (0, CMD_READ, 0, 512),
                (CMD_FLAG_FUA, CMD_WRITE, 0, 512),
                (0, CMD_READ, 512, 512),
                (CMD_FLAG_FUA, CMD_WRITE, 512, 512)
            ]
        );
        let mut expect = disk.clone();
        expect[300..800].copy_from_slice(&new);
        assert_eq!([reqs[1].5.clone(), reqs[3].5.clone()].concat(), expect);
        let handles: Vec<u64> = reqs.iter().map(|r| r.2).collect();
        assert_eq!(handles, vec![1, 2, 3, 4]);
    }

    #[test]
    fn url_parsing_accepts_hosts_ports_ipv6_and_escaped_exports() {
        let ok = |url: &str| NbdAddress::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let a = ok("nbd://127.0.0.1:10900/disk");
        assert_eq!((a.host.as_str(), a.port, a.export.as_str()), ("127.0.0.1", 10900, "disk"));
        let a = ok("NBD://server");
        assert_eq!((a.host.as_str(), a.port, a.export.as_str()), ("server", NBD_DEFAULT_PORT, ""));
        let a = ok("nbd://[::1]:99/a%20b/c");
        assert_eq!((a.host.as_str(), a.port, a.export.as_str()), ("::1", 99, "a b/c"));
        assert_eq!(a.url(), "nbd://[::1]:99/a%20b/c");
        assert_eq!(NbdAddress::parse(&a.url()).unwrap(), a);
        for bad in [
            "/dev/sdb",
            "nbd://",
            "nbd://:10809/x",
            "nbd://h:0/",
            "nbd://h:70000/",
            "nbd://h:x/",
            "nbd://::1/",
            "nbd://h/%zz",
            "nbd://h/x?socket=y",
            "nbds://h/",
            "nbd+unix:///x?socket=/s",
            "nbd://[::1/",
        ] {
            assert!(NbdAddress::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    use crate::testing::Rng;

    /// A plausible server transcript for one read of `len` bytes at `at`: valid, then mangled.
    fn transcript(rng: &mut Rng, min: u32, at: u64, len: usize) -> Vec<u8> {
        let structured = rng.below(2) == 0;
        let mut s = handshake_bytes(structured, 1 << 20, min, 1 << 20);
        let data = pattern(len, rng.next_u64() as u8);
        if structured {
            let mut pos = 0;
            while pos < len {
                let n = (1 + rng.below(len as u64) as usize).min(len - pos);
                let done = if pos + n == len { REPLY_FLAG_DONE } else { 0 };
                match rng.below(3) {
                    0 => s.extend(hole_chunk(done, 1, at + pos as u64, n as u32)),
                    1 => s.extend(error_chunk(0, 1, rng.below(200) as u32, "no")),
                    _ => s.extend(data_chunk(done, 1, at + pos as u64, &data[pos..pos + n])),
                }
                pos += n;
            }
        } else {
            s.extend(simple(0, 1, &data));
        }
        // Mangle: flip bytes, cut the end, or splice in random bytes.
        for _ in 0..rng.below(4) {
            if s.is_empty() {
                break;
            }
            match rng.below(3) {
                0 => {
                    let i = rng.below(s.len() as u64) as usize;
                    s[i] = rng.next_u64() as u8;
                }
                1 => s.truncate(rng.below(s.len() as u64) as usize),
                _ => {
                    let i = rng.below(s.len() as u64) as usize;
                    let junk: Vec<u8> = (0..rng.below(40)).map(|_| rng.next_u64() as u8).collect();
                    s.splice(i..i, junk);
                }
            }
        }
        s
    }

    #[test]
    fn no_server_bytes_make_the_client_panic() {
        let seed = 0x5eed_0000_1234_5678u64;
        let mut rng = Rng::new(seed);
        let mut outcomes = [0u32; 3]; // reads that succeeded, got a server error, broke
        for round in 0..20_000 {
            // Aligned to the minimum block, so that one command answers the read.
            let min = 1u32 << rng.below(13);
            let at = rng.below(1 << 19) / u64::from(min) * u64::from(min);
            let len = (1 + rng.below(5000) as usize).div_ceil(min as usize) * min as usize;
            let bytes = if round % 10 == 0 {
                // Pure noise after a valid greeting, or from the first byte.
                let mut v = if rng.below(2) == 0 { greeting(FLAG_FIXED_NEWSTYLE) } else { Vec::new() };
                v.extend((0..rng.below(300)).map(|_| rng.next_u64() as u8));
                v
            } else {
                transcript(&mut rng, min, at, len)
            };
            let mut script = Script::new(bytes);
            script.step = 1 + rng.below(64) as usize;
            // Any outcome but a panic (or a read past the script, which the EOF turns into an error).
            if let Ok(mut conn) = handshake(script, "disk", &opts()) {
                let mut buf = vec![0u8; len];
                match conn.read(at, &mut buf) {
                    Ok(()) => outcomes[0] += 1,
                    Err(Fail::Server { .. }) => outcomes[1] += 1,
                    Err(Fail::Broken { .. }) => outcomes[2] += 1,
                }
                let _ = conn.write(at, &buf, CMD_FLAG_FUA);
                let _ = conn.flush();
            }
        }
        // The mangling leaves enough replies whole that every outcome is reached often.
        assert!(outcomes.iter().all(|&n| n > 1000), "seed {seed:#x}: outcomes {outcomes:?}");
    }
}
