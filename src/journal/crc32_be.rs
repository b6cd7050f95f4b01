//! The kernel's `crc32_be`: CRC-32 with polynomial 0x04C11DB7, most significant bit first, no
//! reflection and no final inversion. JBD2's v1 transaction checksum (COMPAT_CHECKSUM, which
//! OCFS2 turns on with `journal_async_commit`) chains it over a transaction's descriptor and
//! data blocks, seeded with `!0`.
//!
//! It lives here rather than in `format::checksum` because only the journal uses it.

const POLY: u32 = 0x04C1_1DB7;

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ POLY } else { crc << 1 };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

/// Continues a big-endian CRC32 from `seed` over `data`.
pub fn crc32_be(seed: u32, data: &[u8]) -> u32 {
    data.iter().fold(seed, |crc, &b| (crc << 8) ^ TABLE[((crc >> 24) ^ u32::from(b)) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_crc32_mpeg2_check_value() {
        // CRC-32/MPEG-2 is exactly crc32_be seeded with !0: its catalogue check value.
        assert_eq!(crc32_be(!0, b"123456789"), 0x0376_E6E7);
        assert_eq!(crc32_be(crc32_be(!0, b"1234"), b"56789"), 0x0376_E6E7);
        assert_eq!(crc32_be(0, b""), 0);
    }
}
