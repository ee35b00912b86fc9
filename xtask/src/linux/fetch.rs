//! Getting the peer's kernel: Debian's cloud kernel, the one Debian builds for virtual
//! machines, with few drivers to probe. `linux-image-cloud-amd64` is a metapackage whose
//! dependency names today's versioned package (`linux-image-6.1.0-56-cloud-amd64`);
//! [`crate::debian`] fetches that one into `<target>/linux/` and unpacks it, and its
//! `boot/vmlinuz-<version>`, a bzImage that QEMU's `-kernel` boots as is, is kept there.
//! The modules the package also holds are not: the peer's init loads none.
//!
//! A kernel in the cache is used without asking apt; to move to a newer one, delete the
//! cache folder.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::Error;
use crate::debian::PackageCache;

/// The package that always depends on Debian's current cloud kernel.
pub const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// The cache folder under the cargo target directory.
pub const CACHE_DIR: &str = "linux";

/// The kernel's file name before its version, in the package's `boot/` and in the cache.
const KERNEL_PREFIX: &str = "vmlinuz-";

/// A bzImage's marks (Linux's Documentation/arch/x86/boot.rst): `boot_flag` 0xAA55 at
/// 0x1FE and the header magic "HdrS" at 0x202.
const BOOT_FLAG_AT: usize = 0x1fe;
const HEADER_MAGIC_AT: usize = 0x202;

/// The kernel QEMU boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub path: PathBuf,
    /// The version in its name, as `uname -r` says it: `6.1.0-56-cloud-amd64`.
    pub version: String,
}

/// Returns the cached kernel in `dir`, fetching and unpacking it first when there is none.
pub fn ensure(dir: &Path) -> Result<Kernel, Error> {
    let packages = package_cache(dir);
    if let Some(kernel) = cached_kernel(&packages)? {
        return Ok(kernel);
    }
    let deb = match packages.cached(&is_kernel_package)? {
        Some(deb) => deb,
        None => packages.download(&kernel_package(&packages)?)?,
    };
    let kernel = take_kernel(&packages, &deb)?;
    println!(
        "linux: {} taken from {}",
        kernel.path.display(),
        deb.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(kernel)
}

fn package_cache(dir: &Path) -> PackageCache {
    PackageCache {
        dir: dir.to_path_buf(),
        what: "Linux",
        tools: "apt-get, apt-cache and dpkg-deb",
        instead: format!(
            "put a Linux bzImage named {KERNEL_PREFIX}<version> in {}",
            dir.display()
        ),
    }
}

/// Whether `package` is a versioned cloud kernel: `linux-image-6.1.0-56-cloud-amd64`, not
/// the metapackage, not its `-dbg` or `-unsigned` siblings.
fn is_kernel_package(package: &str) -> bool {
    package
        .strip_prefix("linux-image-")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        && package.ends_with("-cloud-amd64")
}

/// The versioned package the metapackage depends on.
fn kernel_package(packages: &PackageCache) -> Result<String, Error> {
    let listed = packages.depends(METAPACKAGE)?;
    let kernels: Vec<&String> = listed.iter().filter(|p| is_kernel_package(p)).collect();
    match kernels.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(Error::NoKernelPackage {
            listed,
            dir: packages.dir.clone(),
        }),
    }
}

/// The one kernel in the cache folder; `None` when there is none.
fn cached_kernel(packages: &PackageCache) -> Result<Option<Kernel>, Error> {
    let names = packages.file_names(&packages.dir)?;
    let kernels: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(KERNEL_PREFIX))
        .collect();
    match kernels.as_slice() {
        [] => Ok(None),
        [name] => {
            let path = packages.dir.join(name);
            if !is_bzimage(&path) {
                return Err(Error::CachedNotAKernel { path });
            }
            Ok(Some(Kernel {
                version: version_of(name).to_string(),
                path,
            }))
        }
        several => Err(Error::SeveralKernels {
            dir: packages.dir.clone(),
            names: several.iter().map(|n| n.to_string()).collect(),
        }),
    }
}

/// Unpacks `deb` and moves its kernel into the cache folder, where it appears complete or
/// not at all.
fn take_kernel(packages: &PackageCache, deb: &Path) -> Result<Kernel, Error> {
    let unpacked = packages.unpack(deb)?;
    // `boot/` also holds the kernel's `config-` and `System.map-`.
    let unpacked_kernel = unpacked.only_file("boot", KERNEL_PREFIX, "")?;
    let name = unpacked_kernel
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if !is_bzimage(&unpacked_kernel) {
        return Err(Error::PackagedNotAKernel {
            deb: deb.to_path_buf(),
            name,
        });
    }
    let path = packages.dir.join(&name);
    fs::rename(&unpacked_kernel, &path).map_err(|e| packages.cache_error(&path, &e))?;
    Ok(Kernel {
        version: version_of(&name).to_string(),
        path,
    })
}

fn version_of(kernel_name: &str) -> &str {
    kernel_name
        .strip_prefix(KERNEL_PREFIX)
        .unwrap_or(kernel_name)
}

fn is_bzimage(path: &Path) -> bool {
    let mut start = [0; HEADER_MAGIC_AT + 4];
    File::open(path).is_ok_and(|mut f| f.read_exact(&mut start).is_ok())
        && has_bzimage_marks(&start)
}

fn has_bzimage_marks(start: &[u8]) -> bool {
    start.get(BOOT_FLAG_AT..BOOT_FLAG_AT + 2) == Some(&[0x55, 0xaa])
        && start.get(HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4) == Some(b"HdrS")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::{Scratch, test_packages};

    /// The start of a bzImage, as far as [`is_bzimage`] looks.
    fn fake_bzimage() -> Vec<u8> {
        let mut image = vec![0; 0x400];
        image[BOOT_FLAG_AT..BOOT_FLAG_AT + 2].copy_from_slice(&[0x55, 0xaa]);
        image[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4].copy_from_slice(b"HdrS");
        image
    }

    fn temp_dir(name: &str) -> Scratch {
        Scratch::new(&std::env::temp_dir(), &format!("janus-linux-{name}")).unwrap()
    }

    #[test]
    fn only_versioned_cloud_kernels_are_kernel_packages() {
        assert!(is_kernel_package("linux-image-6.1.0-56-cloud-amd64"));
        for not in [
            "linux-image-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64-dbg",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-amd64",
            "linux-headers-6.1.0-56-cloud-amd64",
        ] {
            assert!(!is_kernel_package(not), "{not}");
        }
    }

    #[test]
    fn the_version_is_the_kernel_name_after_vmlinuz() {
        assert_eq!(
            version_of("vmlinuz-6.1.0-56-cloud-amd64"),
            "6.1.0-56-cloud-amd64"
        );
    }

    #[test]
    fn a_bzimage_is_told_by_its_boot_flag_and_header_magic() {
        assert!(has_bzimage_marks(&fake_bzimage()));
        let mut elf = fake_bzimage();
        elf[HEADER_MAGIC_AT] = b'h';
        assert!(!has_bzimage_marks(&elf));
        assert!(!has_bzimage_marks(b"\x7fELF"));
    }

    #[test]
    fn a_cached_package_gives_its_kernel_which_is_then_reused() {
        let dir = temp_dir("cached");
        let deb = test_packages::build(
            dir.path(),
            "linux-image-6.1.0-99-cloud-amd64",
            "6.1.999-1",
            &[
                ("boot/vmlinuz-6.1.0-99-cloud-amd64", &fake_bzimage()),
                ("boot/config-6.1.0-99-cloud-amd64", b"CONFIG_PVH=y\n"),
                ("lib/modules/6.1.0-99-cloud-amd64/modules.dep", b""),
            ],
        );
        let kernel = ensure(dir.path()).unwrap();
        assert_eq!(
            kernel,
            Kernel {
                path: dir.path().join("vmlinuz-6.1.0-99-cloud-amd64"),
                version: "6.1.0-99-cloud-amd64".into(),
            }
        );
        assert_eq!(fs::read(&kernel.path).unwrap(), fake_bzimage());
        fs::remove_file(&deb).unwrap();
        assert_eq!(ensure(dir.path()).unwrap(), kernel);
        let names = package_cache(dir.path()).file_names(dir.path()).unwrap();
        assert_eq!(names, ["vmlinuz-6.1.0-99-cloud-amd64"]);
    }

    #[test]
    fn a_package_whose_kernel_is_no_bzimage_is_refused() {
        let dir = temp_dir("not-bzimage");
        test_packages::build(
            dir.path(),
            "linux-image-6.1.0-99-cloud-amd64",
            "6.1.999-1",
            &[("boot/vmlinuz-6.1.0-99-cloud-amd64", b"\x7fELF")],
        );
        let e = ensure(dir.path()).unwrap_err();
        assert!(matches!(e, Error::PackagedNotAKernel { .. }), "{e}");
        assert!(e.to_string().contains("delete"), "{e}");
        assert!(!dir.path().join("vmlinuz-6.1.0-99-cloud-amd64").exists());
    }

    #[test]
    fn a_cached_file_that_is_no_bzimage_is_refused_not_booted() {
        let dir = temp_dir("cached-not-bzimage");
        let path = dir.path().join("vmlinuz-6.1.0-99-cloud-amd64");
        fs::write(&path, b"truncated").unwrap();
        let e = ensure(dir.path()).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn several_cached_kernels_are_refused_with_their_names() {
        let dir = temp_dir("several");
        for version in ["6.1.0-55", "6.1.0-56"] {
            fs::write(
                dir.path().join(format!("vmlinuz-{version}-cloud-amd64")),
                fake_bzimage(),
            )
            .unwrap();
        }
        let e = ensure(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("vmlinuz-6.1.0-55-cloud-amd64, vmlinuz-6.1.0-56-cloud-amd64"),
            "{e}"
        );
    }
}
