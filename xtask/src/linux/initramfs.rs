//! The peer's initramfs: a cpio archive holding `/dev/console`, which the kernel opens as
//! init's standard input and outputs, and [`init`]'s `/init`, which the kernel runs from an
//! initramfs by default. Uncompressed: Linux takes a plain archive, and compressing a few
//! hundred bytes would only add a decompressor's start-up to the boot measured.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Error;
use super::cpio::{self, Entry, Kind};
use super::init;
use crate::debian::Scratch;
use crate::host;

/// The archive's name in the cache folder.
pub const FILE_NAME: &str = "initramfs.cpio";

/// The console's device numbers (Linux's Documentation/admin-guide/devices.txt: 5, 1 is
/// `/dev/console`).
const CONSOLE_MAJOR: u32 = 5;
const CONSOLE_MINOR: u32 = 1;

/// The archive's bytes.
pub fn archive() -> Vec<u8> {
    let init = init::executable();
    cpio::archive(&[
        Entry {
            name: "dev",
            kind: Kind::Directory,
            permissions: 0o755,
        },
        Entry {
            name: "dev/console",
            kind: Kind::CharDevice {
                major: CONSOLE_MAJOR,
                minor: CONSOLE_MINOR,
            },
            permissions: 0o600,
        },
        Entry {
            name: "init",
            kind: Kind::File(&init),
            permissions: 0o755,
        },
    ])
}

/// Writes the archive to `dir`/[`FILE_NAME`] unless it is there already, and returns its
/// path. The file appears complete or not at all, so a run booting it meanwhile never reads
/// half of it.
pub fn write(dir: &Path) -> Result<PathBuf, Error> {
    let path = dir.join(FILE_NAME);
    let archive = archive();
    if fs::read(&path).is_ok_and(|old| old == archive) {
        return Ok(path);
    }
    let error = |e: io::Error| Error::Initramfs {
        path: path.clone(),
        reason: host::io_reason(&e),
    };
    fs::create_dir_all(dir).map_err(error)?;
    let scratch = Scratch::new(dir, "initramfs").map_err(error)?;
    let staged = scratch.path().join(FILE_NAME);
    fs::write(&staged, &archive).map_err(error)?;
    fs::rename(&staged, &path).map_err(error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_the_console_before_init() {
        let archive = archive();
        let entries = cpio::reader::read_back(&archive);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", cpio::TRAILER]);
        assert_eq!(
            (entries[1].fields[9], entries[1].fields[10]),
            (CONSOLE_MAJOR, CONSOLE_MINOR)
        );
        assert_eq!(entries[2].data, init::executable());
        assert_eq!(entries[2].fields[1], 0o100755, "a regular executable file");
    }

    #[test]
    fn writing_twice_leaves_one_archive_and_no_scratch() {
        let dir = Scratch::new(&std::env::temp_dir(), "janus-linux-initramfs").unwrap();
        let path = write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(FILE_NAME));
        assert_eq!(fs::read(&path).unwrap(), archive());
        fs::write(&path, b"stale").unwrap();
        write(dir.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), archive());
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }
}
