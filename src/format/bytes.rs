//! Little helpers to read and write integers at fixed offsets. Callers check the buffer length
//! once (with [`FormatError::need`](super::FormatError::need)) before using them.

use byteorder::{BigEndian, ByteOrder, LittleEndian};

pub fn le16(b: &[u8], off: usize) -> u16 {
    LittleEndian::read_u16(&b[off..off + 2])
}
pub fn le32(b: &[u8], off: usize) -> u32 {
    LittleEndian::read_u32(&b[off..off + 4])
}
pub fn le64(b: &[u8], off: usize) -> u64 {
    LittleEndian::read_u64(&b[off..off + 8])
}
pub fn be16(b: &[u8], off: usize) -> u16 {
    BigEndian::read_u16(&b[off..off + 2])
}
pub fn be32(b: &[u8], off: usize) -> u32 {
    BigEndian::read_u32(&b[off..off + 4])
}
pub fn be64(b: &[u8], off: usize) -> u64 {
    BigEndian::read_u64(&b[off..off + 8])
}
pub fn put_le16(b: &mut [u8], off: usize, v: u16) {
    LittleEndian::write_u16(&mut b[off..off + 2], v)
}
pub fn put_le32(b: &mut [u8], off: usize, v: u32) {
    LittleEndian::write_u32(&mut b[off..off + 4], v)
}
pub fn put_le64(b: &mut [u8], off: usize, v: u64) {
    LittleEndian::write_u64(&mut b[off..off + 8], v)
}
pub fn put_be16(b: &mut [u8], off: usize, v: u16) {
    BigEndian::write_u16(&mut b[off..off + 2], v)
}
pub fn put_be32(b: &mut [u8], off: usize, v: u32) {
    BigEndian::write_u32(&mut b[off..off + 4], v)
}
pub fn put_be64(b: &mut [u8], off: usize, v: u64) {
    BigEndian::write_u64(&mut b[off..off + 8], v)
}

/// Copies a fixed-size byte array out of `b`.
pub fn array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[off..off + N]);
    out
}

/// The bytes of a NUL-padded string field, up to the first NUL.
pub fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&c| c == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}
