//! Getting the Xen hypervisor: Debian's `xen-hypervisor-4.17-amd64` package, fetched with
//! `apt-get download` (never installed: its scripts rewrite /boot and grub), unpacked with
//! `dpkg-deb -x` (both by [`debian`]), and its gzip-compressed hypervisor inflated to
//! `<target>/xen/xen.elf`, because QEMU's multiboot loader reads only an uncompressed ELF.

use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::debian::{self, PackageCache};

/// The Debian 12 package that carries the hypervisor.
pub const PACKAGE: &str = "xen-hypervisor-4.17-amd64";

/// The cache folder under the cargo target directory.
pub const CACHE_DIR: &str = "xen";

/// The hypervisor QEMU boots, inside the cache folder.
pub const ELF_NAME: &str = "xen.elf";

/// Where the fetched hypervisor and its package are kept between runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    /// The cache inside cargo's target directory, so `cargo clean` removes it too.
    pub fn in_target(target_dir: &Path) -> Cache {
        Cache {
            dir: target_dir.join(CACHE_DIR),
        }
    }

    pub fn elf(&self) -> PathBuf {
        self.dir.join(ELF_NAME)
    }

    /// The same folder as the package's cache, with the wording of Xen's messages.
    fn packages(&self) -> PackageCache {
        PackageCache {
            dir: self.dir.clone(),
            what: "Xen",
            tools: "apt-get, dpkg-deb and gzip",
            instead: format!(
                "put an uncompressed Xen 4.17 ELF at {}",
                self.elf().display()
            ),
        }
    }
}

/// Why the hypervisor could not be had; every message is one line that says what to do.
#[derive(Debug)]
pub enum FetchError {
    /// Fetching or unpacking the package failed, or it holds no single `boot/xen-*.gz`.
    Package(debian::Error),
    /// gzip could not inflate the hypervisor, or the result is not an ELF file.
    Inflate {
        deb: PathBuf,
        gz: String,
        said: String,
    },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Package(e) => e.fmt(f),
            FetchError::Inflate { deb, gz, said } => write!(
                f,
                "cannot inflate boot/{gz} from {} ({said}); delete the package to download it again",
                deb.display()
            ),
        }
    }
}

impl std::error::Error for FetchError {}

impl From<debian::Error> for FetchError {
    fn from(e: debian::Error) -> FetchError {
        FetchError::Package(e)
    }
}

/// Returns the cached hypervisor, fetching and unpacking it first when it is missing.
///
/// A package already in the cache folder is used without downloading, so a machine without
/// a registry can be served by copying the `.deb` there.
pub fn ensure(cache: &Cache) -> Result<PathBuf, FetchError> {
    let elf = cache.elf();
    if is_elf(&elf) {
        return Ok(elf);
    }
    let packages = cache.packages();
    let deb = match packages.cached(&|name| name == PACKAGE)? {
        Some(deb) => deb,
        None => packages.download(PACKAGE)?,
    };
    inflate(&packages, &deb, &elf)?;
    println!(
        "xen: {} inflated from {}",
        elf.display(),
        deb.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(elf)
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0; 4];
    File::open(path).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok()) && magic == *b"\x7fELF"
}

/// Unpacks `deb` and inflates its hypervisor to `elf`, which appears only once complete: a
/// run killed halfway leaves no truncated ELF to be reused.
fn inflate(packages: &PackageCache, deb: &Path, elf: &Path) -> Result<(), FetchError> {
    let unpacked = packages.unpack(deb)?;
    // The name carries the version (`xen-4.17-amd64.gz`), and `boot/` also holds its
    // `.config` and `.efi`.
    let gz = unpacked.only_file("boot", "xen-", ".gz")?;
    let inflated = unpacked.root().join(ELF_NAME);
    let out = File::create(&inflated).map_err(|e| packages.cache_error(&inflated, &e))?;
    let output = packages.run_tool("gzip", Command::new("gzip").arg("-dc").arg(&gz).stdout(out))?;
    let inflate_error = |said: String| FetchError::Inflate {
        deb: deb.to_path_buf(),
        gz: gz
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        said,
    };
    if !output.status.success() {
        return Err(inflate_error(debian::error_line(&debian::combined(
            &output,
        ))));
    }
    if !is_elf(&inflated) {
        return Err(inflate_error("the result is not an ELF file".into()));
    }
    fs::rename(&inflated, elf).map_err(|e| packages.cache_error(elf, &e).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::{Scratch, test_packages};
    use std::process::Stdio;

    /// A fresh folder under the system temp dir, removed when the test ends.
    fn temp_dir(name: &str) -> Scratch {
        Scratch::new(&std::env::temp_dir(), &format!("janus-xen-{name}")).unwrap()
    }

    /// `content` compressed by gzip, as Debian ships the hypervisor.
    fn gzip(content: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(content).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        output.stdout
    }

    /// Builds a package like Debian's holding `files` (paths from the package root).
    fn build_deb(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        test_packages::build(dir, PACKAGE, "4.17.0-test", files)
    }

    fn file_names(dir: &Path) -> Vec<String> {
        Cache {
            dir: dir.to_path_buf(),
        }
        .packages()
        .file_names(dir)
        .unwrap()
    }

    #[test]
    fn cache_lives_in_the_target_dir() {
        let cache = Cache::in_target(Path::new("/w/target"));
        assert_eq!(cache.dir, Path::new("/w/target/xen"));
        assert_eq!(cache.elf(), Path::new("/w/target/xen/xen.elf"));
    }

    #[test]
    fn download_failure_says_what_to_run_on_one_line() {
        let packages = Cache::in_target(Path::new("/w/target")).packages();
        let e = FetchError::Package(debian::Error::Apt {
            what: packages.what,
            command: format!("apt-get download {PACKAGE}"),
            apt_said: "E: Unable to locate package xen-hypervisor-4.17-amd64".into(),
            fix: packages.manual_download(PACKAGE, ""),
        });
        assert_eq!(
            e.to_string(),
            "cannot download Xen: `apt-get download xen-hypervisor-4.17-amd64` said \
             `E: Unable to locate package xen-hypervisor-4.17-amd64`; run `apt-get update && \
             cd /w/target/xen && apt-get download xen-hypervisor-4.17-amd64`, then try again"
        );
        assert_eq!(
            packages.manual_download(PACKAGE, "sudo "),
            "sudo apt-get update && cd /w/target/xen && apt-get download xen-hypervisor-4.17-amd64"
        );
    }

    #[test]
    fn a_missing_tool_names_the_elf_to_put_in_its_place() {
        let packages = Cache::in_target(Path::new("/w/target")).packages();
        let e = packages
            .run_tool("gzip", &mut Command::new("/nonexistent/janus/gzip"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot run gzip (No such file or directory): fetching Xen needs Debian's apt-get, \
             dpkg-deb and gzip; elsewhere put an uncompressed Xen 4.17 ELF at \
             /w/target/xen/xen.elf"
        );
    }

    #[test]
    fn every_error_is_one_line() {
        let deb = PathBuf::from("/w/target/xen/x.deb");
        let errors = [
            FetchError::Package(debian::Error::Unpack {
                deb: deb.clone(),
                said: "dpkg-deb: error: not a Debian format archive".into(),
            }),
            FetchError::Inflate {
                deb,
                gz: "xen-4.17-amd64.gz".into(),
                said: "gzip: not in gzip format".into(),
            },
        ];
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn a_cached_package_is_unpacked_without_downloading_and_then_reused() {
        let dir = temp_dir("unpack");
        let cache = Cache {
            dir: dir.path().join("xen"),
        };
        fs::create_dir_all(&cache.dir).unwrap();
        let deb = build_deb(
            &cache.dir,
            &[
                ("boot/xen-4.17-amd64.config", b"CONFIG_PV=y\n"),
                ("boot/xen-4.17-amd64.gz", &gzip(b"\x7fELF hypervisor")),
            ],
        );
        let elf = ensure(&cache).unwrap();
        assert_eq!(elf, cache.elf());
        assert_eq!(fs::read(&elf).unwrap(), b"\x7fELF hypervisor");
        // Nothing else to download or unpack: the package can go.
        fs::remove_file(&deb).unwrap();
        assert_eq!(ensure(&cache).unwrap(), elf);
        assert_eq!(file_names(&cache.dir), [ELF_NAME]);
    }

    #[test]
    fn a_truncated_elf_in_the_cache_is_replaced() {
        let dir = temp_dir("truncated");
        let cache = Cache {
            dir: dir.path().to_path_buf(),
        };
        build_deb(
            &cache.dir,
            &[("boot/xen-4.17-amd64.gz", &gzip(b"\x7fELF good"))],
        );
        fs::write(cache.elf(), b"\x7fE").unwrap();
        ensure(&cache).unwrap();
        assert_eq!(fs::read(cache.elf()).unwrap(), b"\x7fELF good");
    }

    #[test]
    fn two_cached_packages_are_refused_with_their_names() {
        let dir = temp_dir("several");
        let cache = Cache {
            dir: dir.path().to_path_buf(),
        };
        for version in ["4.17.5", "4.17.7"] {
            fs::write(
                cache.dir.join(format!("{PACKAGE}_{version}_amd64.deb")),
                b"",
            )
            .unwrap();
        }
        let e = ensure(&cache).unwrap_err();
        assert!(
            e.to_string().contains(
                "holds several Xen packages (xen-hypervisor-4.17-amd64_4.17.5_amd64.deb, \
                 xen-hypervisor-4.17-amd64_4.17.7_amd64.deb); delete all but one"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_corrupt_package_is_named_with_what_to_do() {
        let dir = temp_dir("corrupt");
        let cache = Cache {
            dir: dir.path().to_path_buf(),
        };
        let deb = cache.dir.join(format!("{PACKAGE}_1_amd64.deb"));
        fs::write(&deb, b"not an archive").unwrap();
        let e = ensure(&cache).unwrap_err();
        assert!(
            matches!(e, FetchError::Package(debian::Error::Unpack { .. })),
            "{e}"
        );
        let line = e.to_string();
        assert!(line.contains(&deb.display().to_string()), "{line}");
        assert!(line.contains("delete it"), "{line}");
        assert!(!cache.elf().exists());
    }

    #[test]
    fn a_package_without_the_hypervisor_is_refused() {
        let dir = temp_dir("empty");
        let cache = Cache {
            dir: dir.path().to_path_buf(),
        };
        build_deb(&cache.dir, &[("boot/xen-4.17-amd64.efi", b"MZ")]);
        let e = ensure(&cache).unwrap_err();
        assert!(
            e.to_string().contains(
                "exactly one boot/xen-*.gz (found: none); delete it to download \
                 xen-hypervisor-4.17-amd64 again"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_hypervisor_that_is_not_gzip_or_not_elf_is_refused() {
        for (content, expected) in [
            (b"plain text".to_vec(), "not in gzip format"),
            (gzip(b"MZ not elf"), "not an ELF file"),
        ] {
            let dir = temp_dir("inflate");
            let cache = Cache {
                dir: dir.path().to_path_buf(),
            };
            build_deb(&cache.dir, &[("boot/xen-4.17-amd64.gz", &content)]);
            let e = ensure(&cache).unwrap_err();
            assert!(matches!(e, FetchError::Inflate { .. }), "{e}");
            assert!(e.to_string().contains(expected), "{e}");
            assert!(!cache.elf().exists());
        }
    }
}
