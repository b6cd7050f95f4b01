//! The two CRC32 flavours OCFS2 uses.
//!
//! `crc32_le` is the kernel's: reflected polynomial 0xEDB88320, caller-chosen seed, no final
//! inversion. Metaecc seeds it with `!0` (so the result is the bitwise NOT of zlib's CRC-32);
//! o2hb seeds it with 0. JBD2 checksums are CRC32C, which the `crc32c` crate computes.

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// The kernel's `crc32_le(seed, data, len)`.
pub fn crc32_le(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC32C (Castagnoli) as JBD2 uses it: `jbd2_chksum(seed, data)`.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    // The crate's function applies the usual pre- and post-inversion; undo both to get the
    // raw update the kernel's crc32c(seed, ...) performs.
    !crc32c::crc32c_append(!seed, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_le_with_inverted_seed_is_not_of_zlib_crc() {
        // zlib's CRC-32 of "123456789" is 0xCBF43926.
        assert_eq!(!crc32_le(!0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The standard CRC-32C check value, with the usual inversions applied around ours.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }
}
