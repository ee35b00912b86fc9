//! The cpio "newc" format Linux unpacks an initramfs from (Linux's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`): per entry a 110-byte
//! ASCII header, the NUL-terminated name and the data, the header with its name and the
//! data each padded to a multiple of 4 bytes; the archive ends with an entry named
//! `TRAILER!!!`.

/// The header's first field: "new ASCII" format, without checksums.
const MAGIC: &[u8; 6] = b"070701";

/// The name that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// The header's size: the magic and 13 fields of 8 hex digits.
pub const HEADER_SIZE: usize = 6 + 13 * 8;

// File types of `st_mode` (include/uapi/linux/stat.h).
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// One file of an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path inside the archive, without a leading `/`: `dev/console`.
    pub name: &'a str,
    pub kind: Kind<'a>,
    /// The permission bits: `0o755`.
    pub permissions: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    Directory,
    File(&'a [u8]),
    CharDevice { major: u32, minor: u32 },
}

impl Entry<'_> {
    fn mode(&self) -> u32 {
        let file_type = match self.kind {
            Kind::Directory => S_IFDIR,
            Kind::File(_) => S_IFREG,
            Kind::CharDevice { .. } => S_IFCHR,
        };
        file_type | self.permissions
    }

    fn data(&self) -> &[u8] {
        match self.kind {
            Kind::File(data) => data,
            Kind::Directory | Kind::CharDevice { .. } => &[],
        }
    }
}

/// The archive of `entries`, in order, owned by root, dated 1970, and ended by the trailer.
///
/// # Panics
/// When a name or a file does not fit the format's 32-bit sizes.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        // Distinct inode numbers: the unpacker takes entries with equal ones and several
        // links for hard links of one another.
        let inode = u32::try_from(index + 1).expect("fewer than 2^32 entries");
        let links = if entry.kind == Kind::Directory { 2 } else { 1 };
        let (rdev_major, rdev_minor) = match entry.kind {
            Kind::CharDevice { major, minor } => (major, minor),
            Kind::Directory | Kind::File(_) => (0, 0),
        };
        append(
            &mut out,
            entry.name,
            [inode, entry.mode(), links, rdev_major, rdev_minor],
            entry.data(),
        );
    }
    append(&mut out, TRAILER, [0, 0, 1, 0, 0], &[]);
    out
}

/// Appends one entry; `fields` are its inode, mode, link count and device numbers, the
/// fields that differ between entries here.
fn append(out: &mut Vec<u8>, name: &str, fields: [u32; 5], data: &[u8]) {
    let [inode, mode, links, rdev_major, rdev_minor] = fields;
    let name_size = u32::try_from(name.len() + 1).expect("a name shorter than 4 GiB");
    let file_size = u32::try_from(data.len()).expect("a file smaller than 4 GiB");
    out.extend_from_slice(MAGIC);
    let header = [
        inode, mode, 0, // uid
        0, // gid
        links, 0, // mtime
        file_size, 0, // devmajor, of the file system holding the file: none
        0, // devminor
        rdev_major, rdev_minor, name_size, 0, // check: unused by this format
    ];
    for field in header {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad_to_4(out);
    out.extend_from_slice(data);
    pad_to_4(out);
}

/// Entries start at offset 0, so padding the archive pads the entry.
fn pad_to_4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Archives read back the way the kernel's unpacker walks them, for tests here and of the
/// archives built from these entries.
#[cfg(test)]
pub mod reader {
    use super::{HEADER_SIZE, MAGIC};

    /// One entry as read back: the 13 header fields, the name and the data.
    #[derive(Debug)]
    pub struct ReadEntry {
        pub fields: [u32; 13],
        pub name: String,
        pub data: Vec<u8>,
        pub header_at: usize,
        pub data_at: usize,
    }

    /// Reads an archive back the way the kernel's unpacker walks it.
    pub fn read_back(archive: &[u8]) -> Vec<ReadEntry> {
        let mut entries = Vec::new();
        let mut at = 0;
        while at < archive.len() {
            let header = &archive[at..at + HEADER_SIZE];
            assert_eq!(&header[..6], MAGIC, "entry at {at}");
            let mut fields = [0; 13];
            for (i, field) in fields.iter_mut().enumerate() {
                let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap();
                *field = u32::from_str_radix(hex, 16).unwrap();
            }
            let name_at = at + HEADER_SIZE;
            let name_size = fields[11] as usize;
            let name = &archive[name_at..name_at + name_size];
            assert_eq!(name.last(), Some(&0), "names end with NUL");
            let data_at = (name_at + name_size).next_multiple_of(4);
            let data_size = fields[6] as usize;
            entries.push(ReadEntry {
                fields,
                name: String::from_utf8(name[..name_size - 1].to_vec()).unwrap(),
                data: archive[data_at..data_at + data_size].to_vec(),
                header_at: at,
                data_at,
            });
            at = (data_at + data_size).next_multiple_of(4);
        }
        assert_eq!(at, archive.len(), "no bytes after the last entry");
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::reader::read_back;
    use super::*;

    #[test]
    fn header_fields_are_eight_hex_digits_in_newc_order() {
        let archive = archive(&[Entry {
            name: "init",
            kind: Kind::File(b"\x7fELF"),
            permissions: 0o755,
        }]);
        let header = std::str::from_utf8(&archive[..HEADER_SIZE]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000001\
             000081ED\
             00000000\
             00000000\
             00000001\
             00000000\
             00000004\
             00000000\
             00000000\
             00000000\
             00000000\
             00000005\
             00000000"
        );
        assert_eq!(&archive[HEADER_SIZE..HEADER_SIZE + 5], b"init\0");
    }

    #[test]
    fn a_device_carries_its_numbers_and_type() {
        let entries = read_back(&archive(&[Entry {
            name: "dev/console",
            kind: Kind::CharDevice { major: 5, minor: 1 },
            permissions: 0o600,
        }]));
        let console = &entries[0];
        assert_eq!(console.name, "dev/console");
        assert_eq!(console.fields[1], 0o020600, "mode");
        assert_eq!(console.fields[6], 0, "file size");
        assert_eq!((console.fields[9], console.fields[10]), (5, 1), "rdev");
    }

    #[test]
    fn every_header_and_every_data_start_on_four_bytes() {
        let data: Vec<u8> = (0..7).collect();
        let names = ["a", "ab", "abc", "abcd", "abcde"];
        let entries: Vec<Entry> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Entry {
                name,
                kind: Kind::File(&data[..i + 1]),
                permissions: 0o644,
            })
            .collect();
        let archive = archive(&entries);
        assert_eq!(archive.len() % 4, 0);
        let read = read_back(&archive);
        assert_eq!(read.len(), names.len() + 1);
        for (i, (entry, name)) in read.iter().zip(names).enumerate() {
            assert_eq!(entry.header_at % 4, 0, "{name}");
            assert_eq!(entry.data_at % 4, 0, "{name}");
            assert_eq!(entry.name, name);
            assert_eq!(entry.data, &data[..i + 1]);
            assert_eq!(entry.fields[0] as usize, i + 1, "distinct inodes");
        }
    }

    #[test]
    fn the_archive_ends_with_the_trailer() {
        let archive = archive(&[Entry {
            name: "dev",
            kind: Kind::Directory,
            permissions: 0o755,
        }]);
        let read = read_back(&archive);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].fields[1], 0o040755);
        assert_eq!(read[0].fields[4], 2, "a directory's links");
        let trailer = read.last().unwrap();
        assert_eq!(trailer.name, TRAILER);
        assert_eq!(trailer.fields[11], 11, "name size with its NUL");
        assert!(trailer.data.is_empty());
        assert!(archive.ends_with(b"TRAILER!!!\0\0\0\0"));
    }
}
