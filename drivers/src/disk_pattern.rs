//! The test disk's contents: what the host writes into the image before a boot, and what
//! the kernel writes back, so that each side can tell, sector by sector, who wrote it.
//!
//! Every 512-byte sector starts with an 8-byte tag naming its writer and the sector's own
//! LBA (little endian), then a body derived from both. A sector read from the wrong LBA, a
//! torn write or a stale cache shows up as a sector that matches neither writer. The kernel
//! only ever writes to a disk whose sector 0 carries the host's tag, so a user's own disk
//! attached by mistake is never touched.
//!
//! Both the kernel (no_std) and xtask (host) use this module, so the two cannot drift apart.

pub const SECTOR_SIZE: usize = 512;

/// Who wrote a sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// xtask, when it created the image.
    Host,
    /// The kernel's write test or write benchmark.
    Guest,
}

impl Writer {
    const fn tag(self) -> &'static [u8; 8] {
        match self {
            Writer::Host => b"JANUSHST",
            Writer::Guest => b"JANUSGST",
        }
    }

    /// The guest's body is the host's inverted: a write that did not land leaves every byte
    /// different, not just the tag.
    const fn body_mask(self) -> u8 {
        match self {
            Writer::Host => 0x00,
            Writer::Guest => 0xff,
        }
    }
}

const HEADER: usize = 16;

fn body_byte(lba: u64, index: usize, writer: Writer) -> u8 {
    // A multiplicative hash of (lba, index): neighbouring sectors and offsets differ.
    let mixed = (lba.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u8;
    mixed.wrapping_add((index as u8).wrapping_mul(7)) ^ writer.body_mask()
}

/// Fills `sector` (exactly [`SECTOR_SIZE`] bytes) with `writer`'s pattern for `lba`.
///
/// # Panics
/// If `sector` is not one sector long.
pub fn fill(writer: Writer, lba: u64, sector: &mut [u8]) {
    assert_eq!(sector.len(), SECTOR_SIZE, "one sector at a time");
    sector[..8].copy_from_slice(writer.tag());
    sector[8..HEADER].copy_from_slice(&lba.to_le_bytes());
    for (index, byte) in sector.iter_mut().enumerate().skip(HEADER) {
        *byte = body_byte(lba, index, writer);
    }
}

/// Fills consecutive sectors starting at `first_lba`.
///
/// # Panics
/// If `buf` is not a whole number of sectors.
pub fn fill_sectors(writer: Writer, first_lba: u64, buf: &mut [u8]) {
    assert_eq!(buf.len() % SECTOR_SIZE, 0, "whole sectors only");
    for (i, sector) in buf.chunks_exact_mut(SECTOR_SIZE).enumerate() {
        fill(writer, first_lba + i as u64, sector);
    }
}

/// Who wrote `sector`, read from `lba`; `None` when it matches neither pattern.
pub fn classify(lba: u64, sector: &[u8]) -> Option<Writer> {
    if sector.len() != SECTOR_SIZE || sector[8..HEADER] != lba.to_le_bytes() {
        return None;
    }
    let writer = [Writer::Host, Writer::Guest]
        .into_iter()
        .find(|w| sector[..8] == *w.tag())?;
    sector
        .iter()
        .enumerate()
        .skip(HEADER)
        .all(|(index, &byte)| byte == body_byte(lba, index, writer))
        .then_some(writer)
}

/// The first sector of `buf` (read from `first_lba` on) that `expected` did not write, with
/// what it holds instead.
pub fn first_mismatch(
    expected: Writer,
    first_lba: u64,
    buf: &[u8],
) -> Option<(u64, Option<Writer>)> {
    buf.chunks(SECTOR_SIZE).enumerate().find_map(|(i, sector)| {
        let lba = first_lba + i as u64;
        let found = classify(lba, sector);
        (found != Some(expected)).then_some((lba, found))
    })
}

/// How the disk is shared out: the host-written first half is only read; the kernel writes
/// into the second half, its write test into the last [`WRITE_TEST_SECTORS`].
pub fn guest_writable(capacity_sectors: u64) -> core::ops::Range<u64> {
    capacity_sectors / 2..capacity_sectors
}

/// The sectors the kernel's write self-test writes, at the end of the disk (1 MiB).
pub const WRITE_TEST_SECTORS: u64 = 2048;

/// Where the write self-test writes, or `None` on a disk too small to hold it in its
/// guest-writable half.
pub fn write_test_range(capacity_sectors: u64) -> Option<core::ops::Range<u64>> {
    let writable = guest_writable(capacity_sectors);
    let start = capacity_sectors.checked_sub(WRITE_TEST_SECTORS)?;
    (start >= writable.start).then_some(start..capacity_sectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_writer_recognises_its_own_sectors_only() {
        let mut sector = [0u8; SECTOR_SIZE];
        for lba in [0, 1, 2047, 1 << 40] {
            for writer in [Writer::Host, Writer::Guest] {
                fill(writer, lba, &mut sector);
                assert_eq!(classify(lba, &sector), Some(writer));
                assert_eq!(classify(lba + 1, &sector), None, "read from the wrong LBA");
            }
        }
    }

    #[test]
    fn one_flipped_bit_anywhere_is_caught() {
        let mut sector = [0u8; SECTOR_SIZE];
        fill(Writer::Host, 77, &mut sector);
        for i in 0..SECTOR_SIZE {
            let mut bad = sector;
            bad[i] ^= 0x10;
            assert_eq!(classify(77, &bad), None, "byte {i}");
        }
    }

    #[test]
    fn guest_body_differs_from_host_body_in_every_byte() {
        let (mut host, mut guest) = ([0u8; SECTOR_SIZE], [0u8; SECTOR_SIZE]);
        fill(Writer::Host, 5, &mut host);
        fill(Writer::Guest, 5, &mut guest);
        assert!(
            host[HEADER..]
                .iter()
                .zip(&guest[HEADER..])
                .all(|(h, g)| h != g)
        );
    }

    #[test]
    fn first_mismatch_names_the_sector() {
        let mut buf = [0u8; 4 * SECTOR_SIZE];
        fill_sectors(Writer::Host, 10, &mut buf);
        assert_eq!(first_mismatch(Writer::Host, 10, &buf), None);
        fill(
            Writer::Guest,
            12,
            &mut buf[2 * SECTOR_SIZE..3 * SECTOR_SIZE],
        );
        assert_eq!(
            first_mismatch(Writer::Host, 10, &buf),
            Some((12, Some(Writer::Guest)))
        );
    }

    #[test]
    fn the_write_test_stays_in_the_guest_half() {
        assert_eq!(write_test_range(65536), Some(63488..65536));
        assert_eq!(write_test_range(4096), Some(2048..4096));
        assert_eq!(write_test_range(4000), None);
        assert_eq!(write_test_range(0), None);
    }
}
