//! The o2net wire format: the 32-byte handshake each side sends first, then 24-byte message
//! headers each followed by `data_len` payload bytes. Everything is big-endian (kernel
//! `cluster/tcp.h` `struct o2net_msg`, `cluster/tcp_internal.h` `struct o2net_handshake`).
//!
//! Header byte map (`struct o2net_msg`):
//! ```text
//! 0x00 magic      be16   0x00 + 2 = 0x02 data_len be16   0x04 msg_type be16   0x06 pad1 be16
//! 0x08 sys_status be32   0x0C status be32 (the handler's int)   0x10 key be32   0x14 msg_num be32
//! 0x18 payload (at most 4096 - 24 = 4072 bytes)
//! ```
//! Handshake byte map (`struct o2net_handshake`):
//! ```text
//! 0x00 protocol_version be64   0x08 connector_id be64   0x10 o2hb_heartbeat_timeout_ms be32
//! 0x14 o2net_idle_timeout_ms be32   0x18 o2net_keepalive_delay_ms be32
//! 0x1C o2net_reconnect_delay_ms be32
//! ```
//! Invariant: no byte sequence makes [`MsgHeader::decode`], [`Handshake::decode`] or
//! [`Decoder`] panic; a stream that breaks the framing yields a [`FrameError`] and the
//! connection carrying it must be closed, as the kernel closes it.

use crate::format::bytes::{be16, be32, be64, put_be16, put_be32, put_be64};
use std::fmt;

/// A request that wants a status reply.
pub const O2NET_MSG_MAGIC: u16 = 0xfa55;
/// The status reply to a request; echoes its msg_num.
pub const O2NET_MSG_STATUS_MAGIC: u16 = 0xfa56;
/// Sent after a keepalive delay of silence from the peer.
pub const O2NET_MSG_KEEP_REQ_MAGIC: u16 = 0xfa57;
/// The answer to a keepalive request.
pub const O2NET_MSG_KEEP_RESP_MAGIC: u16 = 0xfa58;

/// Version 11 is what every kernel since 2.6.28 speaks (`O2NET_PROTOCOL_VERSION`).
pub const O2NET_PROTOCOL_VERSION: u64 = 11;
/// The kernel always sends connector_id 1 and never looks at the peer's.
pub const O2NET_CONNECTOR_ID: u64 = 1;
/// The kernel puts `O2HB_MAX_WRITE_TIMEOUT_MS` in the handshake and requires the same value.
pub const O2HB_MAX_WRITE_TIMEOUT_MS: u32 = 60_000;
/// `O2NET_TCP_USER_TIMEOUT`: unacknowledged data never fails a connection by itself; the idle
/// timer and heartbeat decide instead.
pub const O2NET_TCP_USER_TIMEOUT_MS: u32 = 0x7fff_ffff;

pub const MSG_HEADER_SIZE: usize = 24;
pub const HANDSHAKE_SIZE: usize = 32;
/// One page minus the header (`O2NET_MAX_PAYLOAD_BYTES`).
pub const O2NET_MAX_PAYLOAD_BYTES: usize = 4096 - MSG_HEADER_SIZE;

const MSG_MAGIC: usize = 0x00;
const MSG_DATA_LEN: usize = 0x02;
const MSG_TYPE: usize = 0x04;
const MSG_PAD1: usize = 0x06;
const MSG_SYS_STATUS: usize = 0x08;
const MSG_STATUS: usize = 0x0C;
const MSG_KEY: usize = 0x10;
const MSG_NUM: usize = 0x14;

const HS_VERSION: usize = 0x00;
const HS_CONNECTOR: usize = 0x08;
const HS_HB_TIMEOUT: usize = 0x10;
const HS_IDLE: usize = 0x14;
const HS_KEEPALIVE: usize = 0x18;
const HS_RECONNECT: usize = 0x1C;

/// Why bytes from a peer are not a valid o2net stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the structure needs.
    Short { need: usize, have: usize },
    /// A header whose magic is none of the four o2net magics.
    BadMagic(u16),
    /// A header announcing more payload than one page can hold.
    Oversize(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Short { need, have } => write!(f, "short frame: need {need} bytes, have {have}"),
            FrameError::BadMagic(m) => write!(f, "bad magic 0x{m:04x}"),
            FrameError::Oversize(n) => {
                write!(f, "payload of {n} bytes exceeds the maximum of {O2NET_MAX_PAYLOAD_BYTES}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// The four kinds of o2net message, told apart by the header's magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Magic {
    Request,
    Status,
    KeepaliveReq,
    KeepaliveResp,
}

impl Magic {
    pub fn from_wire(v: u16) -> Option<Magic> {
        match v {
            O2NET_MSG_MAGIC => Some(Magic::Request),
            O2NET_MSG_STATUS_MAGIC => Some(Magic::Status),
            O2NET_MSG_KEEP_REQ_MAGIC => Some(Magic::KeepaliveReq),
            O2NET_MSG_KEEP_RESP_MAGIC => Some(Magic::KeepaliveResp),
            _ => None,
        }
    }

    pub fn to_wire(self) -> u16 {
        match self {
            Magic::Request => O2NET_MSG_MAGIC,
            Magic::Status => O2NET_MSG_STATUS_MAGIC,
            Magic::KeepaliveReq => O2NET_MSG_KEEP_REQ_MAGIC,
            Magic::KeepaliveResp => O2NET_MSG_KEEP_RESP_MAGIC,
        }
    }
}

/// `enum o2net_system_error`: what the receiving o2net (not the handler) says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SysStatus {
    None = 0,
    /// No handler is registered for the (msg_type, key) pair.
    NoHandler = 1,
    /// The payload is longer than the handler accepts.
    Overflow = 2,
    /// The connection died before the reply came (never sent on the wire by the kernel).
    Died = 3,
}

impl SysStatus {
    /// Values at or above `O2NET_ERR_MAX` (4) are not valid; the kernel would BUG on them.
    pub fn from_wire(v: u32) -> Option<SysStatus> {
        match v {
            0 => Some(SysStatus::None),
            1 => Some(SysStatus::NoHandler),
            2 => Some(SysStatus::Overflow),
            3 => Some(SysStatus::Died),
            _ => None,
        }
    }

    /// The kernel's `o2net_sys_err_translations`, as a positive errno (0 for NONE).
    pub fn errno(self) -> i32 {
        match self {
            SysStatus::None => 0,
            SysStatus::NoHandler => libc::ENOPROTOOPT,
            SysStatus::Overflow => libc::EOVERFLOW,
            SysStatus::Died => libc::EHOSTDOWN,
        }
    }
}

/// `struct o2net_msg`, the 24-byte header in front of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHeader {
    pub magic: Magic,
    pub data_len: u16,
    pub msg_type: u16,
    pub pad1: u16,
    pub sys_status: u32,
    /// The handler's return value in a status reply (an s32 on the wire).
    pub status: i32,
    pub key: u32,
    pub msg_num: u32,
}

impl MsgHeader {
    /// A request header as `o2net_init_msg` fills it.
    pub fn request(msg_type: u16, key: u32, data_len: u16, msg_num: u32) -> MsgHeader {
        MsgHeader {
            magic: Magic::Request,
            data_len,
            msg_type,
            pad1: 0,
            sys_status: SysStatus::None as u32,
            status: 0,
            key,
            msg_num,
        }
    }

    /// The reply to `req`: same fields (msg_num in particular), magic twiddled, no payload,
    /// as `o2net_send_status_magic` builds it.
    pub fn status_reply(req: &MsgHeader, sys: SysStatus, status: i32) -> MsgHeader {
        MsgHeader { magic: Magic::Status, data_len: 0, sys_status: sys as u32, status, ..*req }
    }

    /// The kernel's keepalive messages are all zero except the magic.
    pub fn keepalive(magic: Magic) -> MsgHeader {
        MsgHeader { magic, data_len: 0, msg_type: 0, pad1: 0, sys_status: 0, status: 0, key: 0, msg_num: 0 }
    }

    /// Decodes and checks a header: known magic, payload within one page.
    pub fn decode(b: &[u8]) -> Result<MsgHeader, FrameError> {
        if b.len() < MSG_HEADER_SIZE {
            return Err(FrameError::Short { need: MSG_HEADER_SIZE, have: b.len() });
        }
        let raw_magic = be16(b, MSG_MAGIC);
        let data_len = be16(b, MSG_DATA_LEN);
        // The kernel tests the length as soon as the header is complete, before the magic.
        if usize::from(data_len) > O2NET_MAX_PAYLOAD_BYTES {
            return Err(FrameError::Oversize(usize::from(data_len)));
        }
        let magic = Magic::from_wire(raw_magic).ok_or(FrameError::BadMagic(raw_magic))?;
        Ok(MsgHeader {
            magic,
            data_len,
            msg_type: be16(b, MSG_TYPE),
            pad1: be16(b, MSG_PAD1),
            sys_status: be32(b, MSG_SYS_STATUS),
            status: be32(b, MSG_STATUS) as i32,
            key: be32(b, MSG_KEY),
            msg_num: be32(b, MSG_NUM),
        })
    }

    /// Writes the 24 header bytes at the start of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        assert!(b.len() >= MSG_HEADER_SIZE, "header buffer too small");
        put_be16(b, MSG_MAGIC, self.magic.to_wire());
        put_be16(b, MSG_DATA_LEN, self.data_len);
        put_be16(b, MSG_TYPE, self.msg_type);
        put_be16(b, MSG_PAD1, self.pad1);
        put_be32(b, MSG_SYS_STATUS, self.sys_status);
        put_be32(b, MSG_STATUS, self.status as u32);
        put_be32(b, MSG_KEY, self.key);
        put_be32(b, MSG_NUM, self.msg_num);
    }

    pub fn to_bytes(&self) -> [u8; MSG_HEADER_SIZE] {
        let mut b = [0u8; MSG_HEADER_SIZE];
        self.encode(&mut b);
        b
    }
}

/// `struct o2net_handshake`, sent by both sides before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub protocol_version: u64,
    pub connector_id: u64,
    pub o2hb_heartbeat_timeout_ms: u32,
    pub o2net_idle_timeout_ms: u32,
    pub o2net_keepalive_delay_ms: u32,
    pub o2net_reconnect_delay_ms: u32,
}

/// Why `o2net_check_handshake` refuses a peer. The kernel compares these four and nothing else
/// (not connector_id, not the reconnect delay), in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    Version { theirs: u64 },
    IdleTimeout { theirs: u32, ours: u32 },
    KeepaliveDelay { theirs: u32, ours: u32 },
    HeartbeatTimeout { theirs: u32, ours: u32 },
}

impl fmt::Display for HandshakeError {
    /// The kernel's wording, after its "node X (num N) at IP:PORT" prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Version { theirs } => write!(
                f,
                "Advertised net protocol version {theirs} but {O2NET_PROTOCOL_VERSION} is required. Disconnecting."
            ),
            HandshakeError::IdleTimeout { theirs, ours } => {
                write!(f, "uses a network idle timeout of {theirs} ms, but we use {ours} ms locally. Disconnecting.")
            }
            HandshakeError::KeepaliveDelay { theirs, ours } => {
                write!(f, "uses a keepalive delay of {theirs} ms, but we use {ours} ms locally. Disconnecting.")
            }
            HandshakeError::HeartbeatTimeout { theirs, ours } => {
                write!(f, "uses a heartbeat timeout of {theirs} ms, but we use {ours} ms locally. Disconnecting.")
            }
        }
    }
}

impl Handshake {
    /// The handshake this node sends, as `o2net_initialize_handshake` fills it.
    pub fn ours(heartbeat_timeout_ms: u32, idle_ms: u32, keepalive_ms: u32, reconnect_ms: u32) -> Handshake {
        Handshake {
            protocol_version: O2NET_PROTOCOL_VERSION,
            connector_id: O2NET_CONNECTOR_ID,
            o2hb_heartbeat_timeout_ms: heartbeat_timeout_ms,
            o2net_idle_timeout_ms: idle_ms,
            o2net_keepalive_delay_ms: keepalive_ms,
            o2net_reconnect_delay_ms: reconnect_ms,
        }
    }

    /// Every 32 bytes are a handshake; whether it is acceptable is [`Handshake::check`]'s call.
    pub fn decode(b: &[u8]) -> Result<Handshake, FrameError> {
        if b.len() < HANDSHAKE_SIZE {
            return Err(FrameError::Short { need: HANDSHAKE_SIZE, have: b.len() });
        }
        Ok(Handshake {
            protocol_version: be64(b, HS_VERSION),
            connector_id: be64(b, HS_CONNECTOR),
            o2hb_heartbeat_timeout_ms: be32(b, HS_HB_TIMEOUT),
            o2net_idle_timeout_ms: be32(b, HS_IDLE),
            o2net_keepalive_delay_ms: be32(b, HS_KEEPALIVE),
            o2net_reconnect_delay_ms: be32(b, HS_RECONNECT),
        })
    }

    pub fn encode(&self, b: &mut [u8]) {
        assert!(b.len() >= HANDSHAKE_SIZE, "handshake buffer too small");
        put_be64(b, HS_VERSION, self.protocol_version);
        put_be64(b, HS_CONNECTOR, self.connector_id);
        put_be32(b, HS_HB_TIMEOUT, self.o2hb_heartbeat_timeout_ms);
        put_be32(b, HS_IDLE, self.o2net_idle_timeout_ms);
        put_be32(b, HS_KEEPALIVE, self.o2net_keepalive_delay_ms);
        put_be32(b, HS_RECONNECT, self.o2net_reconnect_delay_ms);
    }

    pub fn to_bytes(&self) -> [u8; HANDSHAKE_SIZE] {
        let mut b = [0u8; HANDSHAKE_SIZE];
        self.encode(&mut b);
        b
    }

    /// `o2net_check_handshake`: the peer's handshake against ours.
    pub fn check(&self, ours: &Handshake) -> Result<(), HandshakeError> {
        if self.protocol_version != O2NET_PROTOCOL_VERSION {
            return Err(HandshakeError::Version { theirs: self.protocol_version });
        }
        if self.o2net_idle_timeout_ms != ours.o2net_idle_timeout_ms {
            return Err(HandshakeError::IdleTimeout {
                theirs: self.o2net_idle_timeout_ms,
                ours: ours.o2net_idle_timeout_ms,
            });
        }
        if self.o2net_keepalive_delay_ms != ours.o2net_keepalive_delay_ms {
            return Err(HandshakeError::KeepaliveDelay {
                theirs: self.o2net_keepalive_delay_ms,
                ours: ours.o2net_keepalive_delay_ms,
            });
        }
        if self.o2hb_heartbeat_timeout_ms != ours.o2hb_heartbeat_timeout_ms {
            return Err(HandshakeError::HeartbeatTimeout {
                theirs: self.o2hb_heartbeat_timeout_ms,
                ours: ours.o2hb_heartbeat_timeout_ms,
            });
        }
        Ok(())
    }
}

/// One unit read off a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Handshake(Handshake),
    Message(MsgHeader, Vec<u8>),
}

/// Encodes a message (header plus payload) into one buffer, ready for a single write.
pub fn encode_message(hdr: &MsgHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MSG_HEADER_SIZE + payload.len()];
    hdr.encode(&mut out);
    out[MSG_HEADER_SIZE..].copy_from_slice(payload);
    out
}

/// Splits a byte stream into frames: one handshake first, then messages.
///
/// Bytes are pushed as they arrive in any split; [`Decoder::next_frame`] returns each frame once
/// it is complete. After an error the decoder stays failed: the stream cannot be resynchronised,
/// and the connection must be closed.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    handshake_done: bool,
    failed: Option<FrameError>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.start..];
        if !self.handshake_done {
            if avail.len() < HANDSHAKE_SIZE {
                return Ok(None);
            }
            let hs = Handshake::decode(avail)?;
            self.start += HANDSHAKE_SIZE;
            self.handshake_done = true;
            return Ok(Some(Frame::Handshake(hs)));
        }
        if avail.len() < MSG_HEADER_SIZE {
            return Ok(None);
        }
        let hdr = match MsgHeader::decode(avail) {
            Ok(h) => h,
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        let total = MSG_HEADER_SIZE + usize::from(hdr.data_len);
        if avail.len() < total {
            return Ok(None);
        }
        let payload = avail[MSG_HEADER_SIZE..total].to_vec();
        self.start += total;
        Ok(Some(Frame::Message(hdr, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_sit_at_the_kernel_offsets() {
        let h = MsgHeader {
            magic: Magic::Request,
            data_len: 0x0102,
            msg_type: 0x0304,
            pad1: 0x0506,
            sys_status: 0x0708_090a,
            status: -2,
            key: 0x666c_6172,
            msg_num: 0x1112_1314,
        };
        let b = h.to_bytes();
        assert_eq!(
            b,
            [
                0xfa, 0x55, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0xff, 0xff, 0xff, 0xfe, 0x66,
                0x6c, 0x61, 0x72, 0x11, 0x12, 0x13, 0x14
            ]
        );
        assert_eq!(MsgHeader::decode(&b), Ok(h));
    }

    #[test]
    fn handshake_matches_what_the_kernel_sends() {
        // Linux 6.1 sends version 11, connector 1, 60000 / 30000 / 2000 / 2000 ms.
        let hs = Handshake::ours(60_000, 30_000, 2_000, 2_000);
        let b = hs.to_bytes();
        let mut want = [0u8; 32];
        want[7] = 11;
        want[15] = 1;
        want[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        want[20..24].copy_from_slice(&30_000u32.to_be_bytes());
        want[24..28].copy_from_slice(&2_000u32.to_be_bytes());
        want[28..32].copy_from_slice(&2_000u32.to_be_bytes());
        assert_eq!(b, want);
        assert_eq!(Handshake::decode(&b), Ok(hs));
        assert_eq!(hs.check(&hs), Ok(()));
    }

    #[test]
    fn handshake_check_compares_version_idle_keepalive_heartbeat_but_not_reconnect() {
        let ours = Handshake::ours(60_000, 30_000, 2_000, 2_000);
        let mut t = ours;
        t.o2net_reconnect_delay_ms = 5;
        t.connector_id = 99;
        assert_eq!(t.check(&ours), Ok(()));
        let mut t = ours;
        t.protocol_version = 10;
        assert_eq!(t.check(&ours), Err(HandshakeError::Version { theirs: 10 }));
        let mut t = ours;
        t.o2net_idle_timeout_ms = 10_000;
        assert_eq!(t.check(&ours), Err(HandshakeError::IdleTimeout { theirs: 10_000, ours: 30_000 }));
        let mut t = ours;
        t.o2net_keepalive_delay_ms = 5_000;
        assert_eq!(t.check(&ours), Err(HandshakeError::KeepaliveDelay { theirs: 5_000, ours: 2_000 }));
        let mut t = ours;
        t.o2hb_heartbeat_timeout_ms = 1;
        assert_eq!(t.check(&ours), Err(HandshakeError::HeartbeatTimeout { theirs: 1, ours: 60_000 }));
        // Version is checked first, as in the kernel.
        let mut t = ours;
        t.protocol_version = 7;
        t.o2net_idle_timeout_ms = 1;
        assert!(matches!(t.check(&ours), Err(HandshakeError::Version { .. })));
    }

    #[test]
    fn decode_rejects_bad_magic_oversize_and_short_buffers() {
        let mut b = MsgHeader::request(1, 2, 0, 0).to_bytes();
        b[0] = 0x12;
        assert_eq!(MsgHeader::decode(&b), Err(FrameError::BadMagic(0x1255)));
        let mut b = MsgHeader::request(1, 2, 0, 0).to_bytes();
        b[2..4].copy_from_slice(&4073u16.to_be_bytes());
        assert_eq!(MsgHeader::decode(&b), Err(FrameError::Oversize(4073)));
        b[2..4].copy_from_slice(&4072u16.to_be_bytes());
        assert!(MsgHeader::decode(&b).is_ok());
        assert_eq!(MsgHeader::decode(&b[..23]), Err(FrameError::Short { need: 24, have: 23 }));
        assert_eq!(Handshake::decode(&[0; 31]), Err(FrameError::Short { need: 32, have: 31 }));
    }

    #[test]
    fn status_reply_echoes_the_request_and_maps_errnos_like_the_kernel() {
        let req = MsgHeader::request(502, 0xdead_beef, 100, 77);
        let st = MsgHeader::status_reply(&req, SysStatus::NoHandler, -22);
        assert_eq!(st.magic, Magic::Status);
        assert_eq!((st.msg_num, st.msg_type, st.key, st.data_len), (77, 502, 0xdead_beef, 0));
        assert_eq!((st.sys_status, st.status), (1, -22));
        assert_eq!(SysStatus::None.errno(), 0);
        assert_eq!(SysStatus::NoHandler.errno(), libc::ENOPROTOOPT);
        assert_eq!(SysStatus::Overflow.errno(), libc::EOVERFLOW);
        assert_eq!(SysStatus::Died.errno(), libc::EHOSTDOWN);
        assert_eq!(SysStatus::from_wire(4), None);
        let ka = MsgHeader::keepalive(Magic::KeepaliveReq).to_bytes();
        assert_eq!(&ka[..2], &[0xfa, 0x57]);
        assert!(ka[2..].iter().all(|&x| x == 0));
    }

    #[test]
    fn decoder_reassembles_frames_split_at_every_byte() {
        let hs = Handshake::ours(60_000, 30_000, 2_000, 2_000);
        let mut stream = hs.to_bytes().to_vec();
        let m1 = MsgHeader::request(7, 9, 3, 1);
        stream.extend(encode_message(&m1, b"abc"));
        let m2 = MsgHeader::keepalive(Magic::KeepaliveReq);
        stream.extend(encode_message(&m2, b""));
        let m3 = MsgHeader::request(8, 9, 4072, 2);
        let big = vec![0x5a; 4072];
        stream.extend(encode_message(&m3, &big));
        for split in [1usize, 2, 7, 23, 24, 25, 31, 32, 33, 1000, stream.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(split) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(
                got,
                vec![
                    Frame::Handshake(hs),
                    Frame::Message(m1, b"abc".to_vec()),
                    Frame::Message(m2, vec![]),
                    Frame::Message(m3, big.clone())
                ],
                "split {split}"
            );
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn decoder_stays_failed_after_a_framing_error() {
        let mut d = Decoder::new();
        d.push(&Handshake::ours(1, 2, 3, 4).to_bytes());
        assert!(matches!(d.next_frame(), Ok(Some(Frame::Handshake(_)))));
        d.push(&[0xde, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::BadMagic(0xdead)));
        d.push(&encode_message(&MsgHeader::request(1, 1, 0, 0), b""));
        assert_eq!(d.next_frame(), Err(FrameError::BadMagic(0xdead)));
    }

    /// xorshift64*: enough randomness for a fuzz loop, and the seed replays a failure.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn decoder_never_panics_on_random_or_mutated_streams() {
        let mut valid = Handshake::ours(60_000, 30_000, 2_000, 2_000).to_bytes().to_vec();
        for i in 0..20u16 {
            let hdr = MsgHeader::request(i, u32::from(i) * 3, i * 7, u32::from(i));
            valid.extend(encode_message(&hdr, &vec![i as u8; usize::from(i * 7)]));
        }
        for seed in 1..3000u64 {
            let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut stream = if seed % 2 == 0 {
                let n = (rng(&mut s) % 9000) as usize;
                (0..n).map(|_| rng(&mut s) as u8).collect::<Vec<u8>>()
            } else {
                let mut v = valid.clone();
                for _ in 0..(1 + rng(&mut s) % 8) {
                    let at = (rng(&mut s) as usize) % v.len();
                    v[at] = rng(&mut s) as u8;
                }
                v
            };
            if seed % 5 == 0 {
                let cut = (rng(&mut s) as usize) % (stream.len() + 1);
                stream.truncate(cut);
            }
            let mut d = Decoder::new();
            let mut pos = 0;
            'feed: while pos < stream.len() {
                let n = 1 + (rng(&mut s) as usize) % 600;
                let end = (pos + n).min(stream.len());
                d.push(&stream[pos..end]);
                pos = end;
                loop {
                    match d.next_frame() {
                        Ok(Some(Frame::Message(h, p))) => assert_eq!(p.len(), usize::from(h.data_len), "seed {seed}"),
                        Ok(Some(Frame::Handshake(_))) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }
}
