//! The test disks: a raw image xtask writes with the host's pattern before the boot, and the
//! check after it that every sector holds what its owner may have written there.
//!
//! The pattern is `janus_drivers::disk_pattern`, the module the kernel uses too, so the two
//! sides cannot disagree on what a sector should hold.

use std::borrow::Cow;
use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use janus_drivers::disk_pattern::{self, SECTOR_SIZE, Writer};

/// The size of every test image: 32 MiB, room for the 1 MiB read and write benchmarks in
/// each half.
pub const IMAGE_BYTES: u64 = 32 << 20;

/// [`IMAGE_BYTES`] in sectors.
pub const IMAGE_SECTORS: u64 = IMAGE_BYTES / SECTOR_SIZE as u64;

/// The host's pattern for `sectors` sectors from LBA 0.
///
/// The pattern is computed byte by byte, which takes seconds for 32 MiB in a debug build
/// (`cargo xtask` and the boot tests run one): a process computes the image of
/// [`IMAGE_SECTORS`] once, writes every run's images from it and compares their sectors
/// with it.
pub fn host_pattern(sectors: u64) -> Cow<'static, [u8]> {
    fn compute(sectors: u64) -> Vec<u8> {
        let mut image = vec![0u8; sectors as usize * SECTOR_SIZE];
        disk_pattern::fill_sectors(Writer::Host, 0, &mut image);
        image
    }
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    if sectors == IMAGE_SECTORS {
        Cow::Borrowed(IMAGE.get_or_init(|| compute(IMAGE_SECTORS)))
    } else {
        Cow::Owned(compute(sectors))
    }
}

/// Writes a raw image of `sectors` sectors ([`IMAGE_SECTORS`] for a run) at `path`, every
/// sector in the host's pattern.
///
/// A raw image is a plain file, so no `qemu-img` is needed.
pub fn create_image(path: &Path, sectors: u64) -> io::Result<()> {
    fs::write(path, host_pattern(sectors))
}

/// What the kernel may do to a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only read (the ATA baseline disk): every sector must still be the host's.
    ReadOnly,
    /// Read the first half, write the second ([`disk_pattern::guest_writable`]).
    /// `write_test_passed`: the kernel reported `virtio-blk-write` passed, so the data is
    /// known to have reached the host and its range must hold the guest's pattern.
    Shared { write_test_passed: bool },
}

/// What a sector holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// The pattern `writer` writes at this LBA.
    Written(Writer),
    /// All zeros.
    Zeros,
    /// `writer`'s tag for another LBA: a read or write that went to the wrong sector.
    Misplaced { writer: Writer, lba: u64 },
    /// `writer`'s tag and this LBA, but a body that does not match: a torn or damaged write.
    Torn(Writer),
    /// Neither pattern; the first 8 bytes.
    Unknown([u8; 8]),
}

impl Content {
    /// Reads `sector` (from `lba`).
    pub fn of(lba: u64, sector: &[u8]) -> Content {
        if let Some(writer) = disk_pattern::classify(lba, sector) {
            return Content::Written(writer);
        }
        if sector.iter().all(|&b| b == 0) {
            return Content::Zeros;
        }
        let mut head = [0u8; 8];
        let n = sector.len().min(8);
        head[..n].copy_from_slice(&sector[..n]);
        let tagged = [Writer::Host, Writer::Guest]
            .into_iter()
            .find(|&w| head == tag(w));
        match (tagged, sector.get(8..16)) {
            (Some(writer), Some(lba_bytes)) => {
                let tagged_lba = u64::from_le_bytes(lba_bytes.try_into().expect("8 bytes"));
                if tagged_lba == lba {
                    Content::Torn(writer)
                } else {
                    Content::Misplaced {
                        writer,
                        lba: tagged_lba,
                    }
                }
            }
            _ => Content::Unknown(head),
        }
    }
}

/// The tag `writer` puts at the start of every sector, taken from the pattern itself.
fn tag(writer: Writer) -> [u8; 8] {
    let mut sector = [0u8; SECTOR_SIZE];
    disk_pattern::fill(writer, 0, &mut sector);
    sector[..8].try_into().expect("8 bytes")
}

fn writer_name(writer: Writer) -> &'static str {
    match writer {
        Writer::Host => "host",
        Writer::Guest => "guest",
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Written(w) => write!(f, "{} data", writer_name(*w)),
            Content::Zeros => f.write_str("zeros"),
            Content::Misplaced { writer, lba } => {
                write!(f, "{} data for LBA {lba}", writer_name(*writer))
            }
            Content::Torn(w) => write!(f, "a damaged {} sector (body differs)", writer_name(*w)),
            Content::Unknown(head) => {
                f.write_str("unrecognised bytes")?;
                for b in head {
                    write!(f, " {b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The first sector that breaks the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSector {
    pub lba: u64,
    pub found: Content,
    /// The rule it breaks.
    pub rule: Rule,
}

/// Who may have written a part of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The whole of a read-only disk: the host's only.
    ReadOnlyDisk,
    /// The first half of a shared disk: the host's only.
    ReadOnlyHalf,
    /// The second half: either's.
    WritableHalf,
    /// The write test's range after it passed: the guest's only.
    WriteTestRange,
}

impl Rule {
    fn allows(self, content: Content) -> bool {
        match self {
            Rule::ReadOnlyDisk | Rule::ReadOnlyHalf => content == Content::Written(Writer::Host),
            Rule::WritableHalf => matches!(content, Content::Written(_)),
            Rule::WriteTestRange => content == Content::Written(Writer::Guest),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Rule::ReadOnlyDisk => "the kernel only reads this disk",
            Rule::ReadOnlyHalf => "the first half is read-only",
            Rule::WritableHalf => "expected host or guest data",
            Rule::WriteTestRange => "virtio-blk-write passed, so its range must hold guest data",
        }
    }
}

impl fmt::Display for BadSector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LBA {} holds {} ({})",
            self.lba,
            self.found,
            self.rule.expected()
        )
    }
}

/// What the check found on one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskCheck {
    pub sectors: u64,
    /// Sectors that break their part's rule.
    pub damaged: u64,
    /// Sectors in the guest's pattern.
    pub guest_written: u64,
    /// The first of the damaged sectors.
    pub first_bad: Option<BadSector>,
}

impl DiskCheck {
    pub fn passed(&self) -> bool {
        self.damaged == 0
    }
}

impl fmt::Display for DiskCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(bad) = &self.first_bad {
            write!(f, "{bad}; ")?;
        }
        write!(
            f,
            "{} sectors, {} damaged, {} written by the guest",
            self.sectors, self.damaged, self.guest_written
        )
    }
}

/// Why an image could not be checked at all.
#[derive(Debug)]
pub enum CheckError {
    Read(io::Error),
    /// Not the size xtask wrote.
    Size {
        found: u64,
        expected: u64,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Read(e) => {
                write!(f, "cannot read the image: {}", crate::host::io_reason(e))
            }
            CheckError::Size { found, expected } => write!(
                f,
                "the image is {found} bytes, not the {expected} xtask wrote"
            ),
        }
    }
}

/// The rule for `lba` on a disk of `capacity` sectors.
fn rule(access: Access, capacity: u64, write_test: &Option<Range<u64>>, lba: u64) -> Rule {
    match access {
        Access::ReadOnly => Rule::ReadOnlyDisk,
        Access::Shared { write_test_passed } => {
            if !disk_pattern::guest_writable(capacity).contains(&lba) {
                Rule::ReadOnlyHalf
            } else if write_test_passed && write_test.as_ref().is_some_and(|r| r.contains(&lba)) {
                Rule::WriteTestRange
            } else {
                Rule::WritableHalf
            }
        }
    }
}

/// Checks the image of `capacity` sectors at `path` sector by sector against what `access`
/// allows.
pub fn check_image(path: &Path, access: Access, capacity: u64) -> Result<DiskCheck, CheckError> {
    let image = fs::read(path).map_err(CheckError::Read)?;
    let expected = capacity * SECTOR_SIZE as u64;
    if image.len() as u64 != expected {
        return Err(CheckError::Size {
            found: image.len() as u64,
            expected,
        });
    }
    let pristine = host_pattern(capacity);
    let write_test = disk_pattern::write_test_range(capacity);
    let mut check = DiskCheck {
        sectors: capacity,
        damaged: 0,
        guest_written: 0,
        first_bad: None,
    };
    let sectors = image
        .chunks_exact(SECTOR_SIZE)
        .zip(pristine.chunks_exact(SECTOR_SIZE));
    for (lba, (sector, host)) in (0..).zip(sectors) {
        // Most sectors are untouched, and a slice comparison is quick even in a debug build.
        let found = if sector == host {
            Content::Written(Writer::Host)
        } else {
            Content::of(lba, sector)
        };
        if found == Content::Written(Writer::Guest) {
            check.guest_written += 1;
        }
        let rule = rule(access, capacity, &write_test, lba);
        if !rule.allows(found) {
            check.damaged += 1;
            check
                .first_bad
                .get_or_insert(BadSector { lba, found, rule });
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;

    use super::*;

    /// 4 MiB: big enough for the write test's 1 MiB in the guest's half, small enough to
    /// write quickly in a debug build.
    const SECTORS: u64 = 8192;

    /// A fresh image of [`SECTORS`] in a directory of its own, removed at the end of the
    /// test.
    struct TempImage {
        dir: PathBuf,
        path: PathBuf,
    }

    impl TempImage {
        fn new(name: &str) -> TempImage {
            let dir =
                std::env::temp_dir().join(format!("janus-disk-test-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join("disk.img");
            create_image(&path, SECTORS).unwrap();
            TempImage { dir, path }
        }

        fn write_sector(&self, lba: u64, writer: Writer) {
            let mut sector = [0u8; SECTOR_SIZE];
            disk_pattern::fill(writer, lba, &mut sector);
            self.write_raw(lba, &sector);
        }

        fn write_raw(&self, lba: u64, bytes: &[u8]) {
            let file = fs::OpenOptions::new().write(true).open(&self.path).unwrap();
            file.write_all_at(bytes, lba * SECTOR_SIZE as u64).unwrap();
        }

        /// What the kernel's write test leaves: its range in the guest's pattern.
        fn write_test(&self) {
            for lba in disk_pattern::write_test_range(SECTORS).unwrap() {
                self.write_sector(lba, Writer::Guest);
            }
        }
    }

    impl Drop for TempImage {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    const SHARED: Access = Access::Shared {
        write_test_passed: false,
    };
    const WRITTEN: Access = Access::Shared {
        write_test_passed: true,
    };

    #[test]
    fn a_new_image_is_all_host_sectors() {
        let image = TempImage::new("new");
        assert_eq!(fs::metadata(&image.path).unwrap().len(), 4 << 20);
        let bytes = fs::read(&image.path).unwrap();
        assert_eq!(
            disk_pattern::first_mismatch(Writer::Host, 0, &bytes),
            None,
            "every sector is the host's"
        );
    }

    #[test]
    fn a_pristine_image_passes_every_access() {
        let image = TempImage::new("pristine");
        for access in [Access::ReadOnly, SHARED] {
            let check = check_image(&image.path, access, SECTORS).unwrap();
            assert!(check.passed(), "{access:?}: {check}");
            assert_eq!(
                check.to_string(),
                "8192 sectors, 0 damaged, 0 written by the guest"
            );
        }
    }

    #[test]
    fn the_pattern_of_a_run_image_is_computed_once() {
        let a = host_pattern(IMAGE_SECTORS);
        let b = host_pattern(IMAGE_SECTORS);
        assert!(matches!((&a, &b), (Cow::Borrowed(_), Cow::Borrowed(_))));
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(a.len() as u64, IMAGE_BYTES);
        assert_eq!(
            disk_pattern::first_mismatch(Writer::Host, 0, &a[a.len() - 4 * SECTOR_SIZE..]),
            Some((0, None)),
            "the tail is the tail's pattern, not LBA 0's"
        );
        assert_eq!(
            disk_pattern::first_mismatch(
                Writer::Host,
                IMAGE_SECTORS - 4,
                &a[a.len() - 4 * SECTOR_SIZE..]
            ),
            None
        );
        assert_eq!(
            &a[..SECTORS as usize * SECTOR_SIZE],
            &*host_pattern(SECTORS)
        );
    }

    #[test]
    fn images_of_any_size_are_written_and_checked() {
        let image = TempImage::new("odd");
        create_image(&image.path, 3000).unwrap();
        assert_eq!(fs::metadata(&image.path).unwrap().len(), 3000 * 512);
        let check = check_image(&image.path, Access::ReadOnly, 3000).unwrap();
        assert!(check.passed(), "{check}");
    }

    #[test]
    fn guest_writes_in_the_second_half_pass() {
        let image = TempImage::new("guest-half");
        image.write_test();
        image.write_sector(SECTORS / 2, Writer::Guest);
        let check = check_image(&image.path, WRITTEN, SECTORS).unwrap();
        assert!(check.passed(), "{check}");
        assert_eq!(check.guest_written, 2049);
        assert_eq!(
            check.to_string(),
            "8192 sectors, 0 damaged, 2049 written by the guest"
        );
    }

    #[test]
    fn guest_data_in_the_read_only_half_fails_with_the_lba() {
        let image = TempImage::new("read-only-half");
        image.write_sector(100, Writer::Guest);
        image.write_sector(200, Writer::Guest);
        let check = check_image(&image.path, SHARED, SECTORS).unwrap();
        assert!(!check.passed());
        assert_eq!(check.damaged, 2);
        assert_eq!(
            check.first_bad,
            Some(BadSector {
                lba: 100,
                found: Content::Written(Writer::Guest),
                rule: Rule::ReadOnlyHalf
            })
        );
        assert_eq!(
            check.to_string(),
            "LBA 100 holds guest data (the first half is read-only); 8192 sectors, 2 damaged, 2 \
             written by the guest"
        );
    }

    #[test]
    fn a_damaged_sector_fails_with_the_lba_and_what_it_holds() {
        let image = TempImage::new("damaged");
        image.write_raw(SECTORS - 3, &[0u8; SECTOR_SIZE]);
        let check = check_image(&image.path, SHARED, SECTORS).unwrap();
        assert_eq!(check.damaged, 1);
        assert_eq!(
            check.first_bad.unwrap().to_string(),
            "LBA 8189 holds zeros (expected host or guest data)"
        );
        // One flipped byte in the body.
        let image = TempImage::new("torn");
        let mut sector = [0u8; SECTOR_SIZE];
        disk_pattern::fill(Writer::Host, 7, &mut sector);
        sector[300] ^= 1;
        image.write_raw(7, &sector);
        let bad = check_image(&image.path, SHARED, SECTORS)
            .unwrap()
            .first_bad
            .unwrap();
        assert_eq!(bad.lba, 7);
        assert_eq!(bad.found, Content::Torn(Writer::Host));
    }

    #[test]
    fn a_sector_written_to_the_wrong_lba_is_named() {
        let image = TempImage::new("misplaced");
        let mut sector = [0u8; SECTOR_SIZE];
        disk_pattern::fill(Writer::Guest, 5000, &mut sector);
        image.write_raw(5001, &sector);
        let check = check_image(&image.path, SHARED, SECTORS).unwrap();
        assert_eq!(
            check.first_bad.unwrap().to_string(),
            "LBA 5001 holds guest data for LBA 5000 (expected host or guest data)"
        );
        image.write_raw(5001, b"garbage!");
        let bad = check_image(&image.path, SHARED, SECTORS)
            .unwrap()
            .first_bad
            .unwrap();
        assert_eq!(
            bad.found.to_string(),
            "unrecognised bytes 67 61 72 62 61 67 65 21"
        );
    }

    #[test]
    fn a_passed_write_test_must_have_reached_the_image() {
        let image = TempImage::new("write-test");
        let check = check_image(&image.path, WRITTEN, SECTORS).unwrap();
        assert_eq!(check.damaged, 2048);
        assert_eq!(
            check.first_bad.unwrap().to_string(),
            "LBA 6144 holds host data (virtio-blk-write passed, so its range must hold guest \
             data)"
        );
        image.write_test();
        image.write_sector(8000, Writer::Host);
        let check = check_image(&image.path, WRITTEN, SECTORS).unwrap();
        assert_eq!(check.damaged, 1);
        assert_eq!(check.first_bad.map(|b| b.lba), Some(8000));
    }

    #[test]
    fn a_read_only_disk_may_hold_no_guest_data_anywhere() {
        let image = TempImage::new("ata");
        image.write_sector(SECTORS - 1, Writer::Guest);
        let check = check_image(&image.path, Access::ReadOnly, SECTORS).unwrap();
        assert_eq!(check.damaged, 1);
        assert_eq!(
            check.first_bad.unwrap().to_string(),
            "LBA 8191 holds guest data (the kernel only reads this disk)"
        );
    }

    #[test]
    fn a_resized_or_missing_image_is_an_error() {
        let image = TempImage::new("resized");
        fs::OpenOptions::new()
            .write(true)
            .open(&image.path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let err = check_image(&image.path, SHARED, SECTORS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the image is 4096 bytes, not the 4194304 xtask wrote"
        );
        let err = check_image(&image.dir.join("absent.img"), SHARED, SECTORS).unwrap_err();
        assert!(matches!(err, CheckError::Read(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot read the image: No such file or directory"
        );
    }
}
