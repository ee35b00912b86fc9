//! Getting the Xen hypervisor: Debian's `xen-hypervisor-4.17-amd64` package, fetched with
//! `apt-get download` (never installed: its scripts rewrite /boot and grub), unpacked with
//! `dpkg-deb -x`, and its gzip-compressed hypervisor inflated to `<target>/xen/xen.elf`,
//! because QEMU's multiboot loader reads only an uncompressed ELF.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::host;

/// The Debian 12 package that carries the hypervisor.
pub const PACKAGE: &str = "xen-hypervisor-4.17-amd64";

/// The cache folder under the cargo target directory.
pub const CACHE_DIR: &str = "xen";

/// The hypervisor QEMU boots, inside the cache folder.
pub const ELF_NAME: &str = "xen.elf";

/// apt-get's wording (under `LC_ALL=C`) when its package lists do not know the package.
const UNKNOWN_PACKAGE: [&str; 3] = [
    "Unable to locate package",
    "has no installation candidate",
    "Can't select candidate version",
];

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

    /// What a user types to put the package where [`ensure`] looks for it first.
    fn manual_download(&self, root: bool) -> String {
        let sudo = if root { "" } else { "sudo " };
        format!(
            "{sudo}apt-get update && cd {} && apt-get download {PACKAGE}",
            self.dir.display()
        )
    }
}

/// Why the hypervisor could not be had; every message is one line that says what to do.
#[derive(Debug)]
pub enum FetchError {
    /// apt-get, dpkg-deb or gzip could not be started.
    Tool {
        program: &'static str,
        reason: String,
        elf: PathBuf,
    },
    /// Reading or writing the cache folder failed.
    Cache { path: PathBuf, reason: String },
    /// `apt-get download` failed; `apt_said` is its error line.
    Download { apt_said: String, command: String },
    /// More than one copy of the package lies in the cache folder.
    SeveralPackages { dir: PathBuf, names: Vec<String> },
    /// `dpkg-deb -x` refused the package.
    Unpack { deb: PathBuf, said: String },
    /// The package holds no `boot/xen-*.gz`, or more than one.
    NoHypervisor { deb: PathBuf, found: Vec<String> },
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
            FetchError::Tool {
                program,
                reason,
                elf,
            } => write!(
                f,
                "cannot run {program} ({reason}): fetching Xen needs Debian's apt-get, dpkg-deb \
                 and gzip; elsewhere put an uncompressed Xen 4.17 ELF at {}",
                elf.display()
            ),
            FetchError::Cache { path, reason } => {
                write!(
                    f,
                    "cannot use the Xen cache at {}: {reason}",
                    path.display()
                )
            }
            FetchError::Download { apt_said, command } => write!(
                f,
                "cannot download Xen: `apt-get download {PACKAGE}` said `{apt_said}`; \
                 run `{command}`, then try again"
            ),
            FetchError::SeveralPackages { dir, names } => write!(
                f,
                "{} holds several Xen packages ({}); delete all but one",
                dir.display(),
                names.join(", ")
            ),
            FetchError::Unpack { deb, said } => write!(
                f,
                "cannot unpack {} ({said}); delete it to download it again",
                deb.display()
            ),
            FetchError::NoHypervisor { deb, found } => {
                let found = if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                };
                write!(
                    f,
                    "{} does not hold exactly one boot/xen-*.gz (found: {found}); \
                     delete it to download {PACKAGE} again",
                    deb.display()
                )
            }
            FetchError::Inflate { deb, gz, said } => write!(
                f,
                "cannot inflate boot/{gz} from {} ({said}); delete the package to download it again",
                deb.display()
            ),
        }
    }
}

impl std::error::Error for FetchError {}

/// Returns the cached hypervisor, fetching and unpacking it first when it is missing.
///
/// A package already in the cache folder is used without downloading, so a machine without
/// a registry can be served by copying the `.deb` there.
pub fn ensure(cache: &Cache) -> Result<PathBuf, FetchError> {
    let elf = cache.elf();
    if is_elf(&elf) {
        return Ok(elf);
    }
    fs::create_dir_all(&cache.dir).map_err(|e| cache_error(&cache.dir, &e))?;
    let names = file_names(&cache.dir)?;
    let deb = match select_package(&names) {
        Ok(Some(name)) => cache.dir.join(name),
        Ok(None) => download(cache)?,
        Err(names) => {
            return Err(FetchError::SeveralPackages {
                dir: cache.dir.clone(),
                names,
            });
        }
    };
    unpack(cache, &deb)?;
    println!(
        "xen: {} inflated from {}",
        elf.display(),
        deb.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(elf)
}

/// Picks the package among a folder's file names: `None` when there is none, the names
/// when there are several (versions cannot be ordered without dpkg's rules).
fn select_package(names: &[String]) -> Result<Option<&str>, Vec<String>> {
    let prefix = format!("{PACKAGE}_");
    let debs: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        .collect();
    match debs.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.as_str())),
        several => Err(several.iter().map(|s| s.to_string()).collect()),
    }
}

/// Picks the compressed hypervisor among the package's `boot/` file names. The name carries
/// the version (`xen-4.17-amd64.gz`), and `boot/` also holds its `.config` and `.efi`.
fn select_hypervisor(names: &[String]) -> Result<&str, Vec<String>> {
    let gz: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("xen-") && n.ends_with(".gz"))
        .collect();
    match gz.as_slice() {
        [one] => Ok(one.as_str()),
        _ => Err(gz.iter().map(|s| s.to_string()).collect()),
    }
}

/// Whether apt-get failed because its package lists lack the package, which
/// `apt-get update` cures, rather than for a reason it does not (network, disk).
fn is_unknown_package(apt_output: &str) -> bool {
    UNKNOWN_PACKAGE.iter().any(|m| apt_output.contains(m))
}

/// The line of a tool's output that says what went wrong: apt's first `E:` line, else the
/// last line with text.
fn error_line(output: &str) -> String {
    let lines = || output.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.starts_with("E: "))
        .or_else(|| lines().next_back())
        .unwrap_or("no output")
        .to_string()
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0; 4];
    File::open(path).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok()) && magic == *b"\x7fELF"
}

fn cache_error(path: &Path, error: &io::Error) -> FetchError {
    FetchError::Cache {
        path: path.to_path_buf(),
        reason: host::io_reason(error),
    }
}

/// The names of the files in `dir`; a missing folder has none.
fn file_names(dir: &Path) -> Result<Vec<String>, FetchError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(cache_error(dir, &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| cache_error(dir, &e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A scratch folder inside the cache, removed when dropped. Unique per process and call, so
/// two runs fetching at once never see each other's half-written files.
struct Scratch(PathBuf);

impl Scratch {
    fn new(cache: &Cache, what: &str) -> Result<Scratch, FetchError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = cache
            .dir
            .join(format!(".{what}-{}-{n}", std::process::id()));
        // A crashed earlier run with the same pid may have left it behind.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| cache_error(&path, &e))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool with captured output and C-locale messages, which [`is_unknown_package`]
/// and [`error_line`] read.
fn run_tool(
    program: &'static str,
    command: &mut Command,
    elf: &Path,
) -> Result<Output, FetchError> {
    command
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FetchError::Tool {
            program,
            reason: host::io_reason(&e),
            elf: elf.to_path_buf(),
        })
}

fn combined(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Downloads the package into the cache folder and returns its path.
fn download(cache: &Cache) -> Result<PathBuf, FetchError> {
    let elf = cache.elf();
    let root = host::effective_uid() == Some(0);
    let scratch = Scratch::new(cache, "download")?;
    let attempt = || {
        println!(
            "xen: fetching {PACKAGE} into {} (apt-get download)",
            cache.dir.display()
        );
        run_tool(
            "apt-get",
            Command::new("apt-get")
                .args(["download", PACKAGE])
                .current_dir(&scratch.0),
            &elf,
        )
    };
    let mut output = attempt()?;
    if !output.status.success() && root && is_unknown_package(&combined(&output)) {
        println!("xen: apt-get does not know {PACKAGE} yet; running apt-get update");
        // Progress of a slow update is worth seeing, so its output is not captured.
        let updated = Command::new("apt-get")
            .arg("update")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| FetchError::Tool {
                program: "apt-get",
                reason: host::io_reason(&e),
                elf: elf.clone(),
            })?;
        if updated.success() {
            output = attempt()?;
        }
    }
    let failed = |apt_said: String| FetchError::Download {
        apt_said,
        command: cache.manual_download(root),
    };
    if !output.status.success() {
        return Err(failed(error_line(&combined(&output))));
    }
    let names = file_names(&scratch.0)?;
    let Ok(Some(name)) = select_package(&names) else {
        return Err(failed(format!(
            "success, but it left no single {PACKAGE}_*.deb (found: {})",
            names.join(", ")
        )));
    };
    let deb = cache.dir.join(name);
    fs::rename(scratch.0.join(name), &deb).map_err(|e| cache_error(&deb, &e))?;
    Ok(deb)
}

/// Unpacks `deb` and inflates its hypervisor to the cache's `xen.elf`, which appears only
/// once complete: a run killed halfway leaves no truncated ELF to be reused.
fn unpack(cache: &Cache, deb: &Path) -> Result<(), FetchError> {
    let elf = cache.elf();
    let scratch = Scratch::new(cache, "unpack")?;
    let output = run_tool(
        "dpkg-deb",
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&scratch.0),
        &elf,
    )?;
    if !output.status.success() {
        return Err(FetchError::Unpack {
            deb: deb.to_path_buf(),
            said: error_line(&combined(&output)),
        });
    }
    let boot = scratch.0.join("boot");
    let names = file_names(&boot)?;
    let gz = select_hypervisor(&names).map_err(|found| FetchError::NoHypervisor {
        deb: deb.to_path_buf(),
        found,
    })?;
    let inflated = scratch.0.join(ELF_NAME);
    let out = File::create(&inflated).map_err(|e| cache_error(&inflated, &e))?;
    let output = run_tool(
        "gzip",
        Command::new("gzip")
            .arg("-dc")
            .arg(boot.join(gz))
            .stdout(out),
        &elf,
    )?;
    let inflate_error = |said: String| FetchError::Inflate {
        deb: deb.to_path_buf(),
        gz: gz.to_string(),
        said,
    };
    if !output.status.success() {
        return Err(inflate_error(error_line(&combined(&output))));
    }
    if !is_elf(&inflated) {
        return Err(inflate_error("the result is not an ELF file".into()));
    }
    fs::rename(&inflated, &elf).map_err(|e| cache_error(&elf, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// A fresh folder under the system temp dir, removed when the test ends.
    fn temp_dir(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("janus-xen-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch(path)
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

    /// Builds a package like Debian's whose `boot/` holds `boot_files` as given.
    fn build_deb(dir: &Path, boot_files: &[(&str, &[u8])]) -> PathBuf {
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        fs::create_dir_all(tree.join("boot")).unwrap();
        fs::write(
            tree.join("DEBIAN/control"),
            format!(
                "Package: {PACKAGE}\nVersion: 4.17.0-test\nArchitecture: amd64\n\
                 Maintainer: test <test@example.org>\nDescription: test\n"
            ),
        )
        .unwrap();
        for (name, content) in boot_files {
            fs::write(tree.join("boot").join(name), content).unwrap();
        }
        let deb = dir.join(format!("{PACKAGE}_4.17.0-test_amd64.deb"));
        let output = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-b"])
            .arg(&tree)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        fs::remove_dir_all(&tree).unwrap();
        deb
    }

    #[test]
    fn cache_lives_in_the_target_dir() {
        let cache = Cache::in_target(Path::new("/w/target"));
        assert_eq!(cache.dir, Path::new("/w/target/xen"));
        assert_eq!(cache.elf(), Path::new("/w/target/xen/xen.elf"));
    }

    #[test]
    fn package_selection_takes_the_one_deb_of_the_package() {
        assert_eq!(select_package(&names(&[])), Ok(None));
        assert_eq!(
            select_package(&names(&[
                "xen.elf",
                ".unpack-1-0",
                "xen-hypervisor-4.17-amd64_4.17.7+13-g2445b30a44-0+deb12u1_amd64.deb",
                "xen-utils-4.17_4.17.7_amd64.deb",
            ])),
            Ok(Some(
                "xen-hypervisor-4.17-amd64_4.17.7+13-g2445b30a44-0+deb12u1_amd64.deb"
            ))
        );
        assert_eq!(
            select_package(&names(&[
                "xen-hypervisor-4.17-amd64_4.17.5_amd64.deb",
                "xen-hypervisor-4.17-amd64_4.17.7_amd64.deb",
            ])),
            Err(names(&[
                "xen-hypervisor-4.17-amd64_4.17.5_amd64.deb",
                "xen-hypervisor-4.17-amd64_4.17.7_amd64.deb",
            ]))
        );
    }

    #[test]
    fn hypervisor_selection_skips_config_and_efi() {
        let boot = names(&[
            "xen-4.17-amd64.config",
            "xen-4.17-amd64.efi",
            "xen-4.17-amd64.gz",
        ]);
        assert_eq!(select_hypervisor(&boot), Ok("xen-4.17-amd64.gz"));
        assert_eq!(
            select_hypervisor(&names(&["xen-4.17.7-amd64.gz"])),
            Ok("xen-4.17.7-amd64.gz")
        );
        assert_eq!(
            select_hypervisor(&names(&["vmlinuz.gz", "xen-4.17-amd64.efi"])),
            Err(vec![])
        );
        assert_eq!(
            select_hypervisor(&names(&["xen-4.17-amd64.gz", "xen-4.18-amd64.gz"])),
            Err(names(&["xen-4.17-amd64.gz", "xen-4.18-amd64.gz"]))
        );
    }

    #[test]
    fn unknown_package_is_told_apart_from_other_apt_failures() {
        let unknown = "E: Unable to locate package xen-hypervisor-4.17-amd64\n\
                       E: Couldn't find any package by glob 'xen-hypervisor-4.17-amd64'";
        assert!(is_unknown_package(unknown));
        assert!(is_unknown_package(
            "E: Package 'xen-hypervisor-4.17-amd64' has no installation candidate"
        ));
        let network = "Err:1 http://deb.debian.org/debian bookworm/main amd64 x\n\
                       E: Failed to fetch http://deb.debian.org/x.deb  Could not connect";
        assert!(!is_unknown_package(network));
    }

    #[test]
    fn error_line_prefers_apt_errors_over_warnings() {
        let apt = "Get:1 http://x\nW: Download is performed unsandboxed as root\n\
                   E: Failed to fetch http://x  Could not connect\nE: second";
        assert_eq!(
            error_line(apt),
            "E: Failed to fetch http://x  Could not connect"
        );
        assert_eq!(
            error_line("\ndpkg-deb: error: 'x.deb' is not a Debian format archive\n\n"),
            "dpkg-deb: error: 'x.deb' is not a Debian format archive"
        );
        assert_eq!(error_line(" \n"), "no output");
    }

    #[test]
    fn download_failure_says_what_to_run_on_one_line() {
        let cache = Cache::in_target(Path::new("/w/target"));
        let e = FetchError::Download {
            apt_said: "E: Unable to locate package xen-hypervisor-4.17-amd64".into(),
            command: cache.manual_download(true),
        };
        assert_eq!(
            e.to_string(),
            "cannot download Xen: `apt-get download xen-hypervisor-4.17-amd64` said \
             `E: Unable to locate package xen-hypervisor-4.17-amd64`; run `apt-get update && \
             cd /w/target/xen && apt-get download xen-hypervisor-4.17-amd64`, then try again"
        );
        assert_eq!(
            cache.manual_download(false),
            "sudo apt-get update && cd /w/target/xen && apt-get download xen-hypervisor-4.17-amd64"
        );
    }

    #[test]
    fn every_error_is_one_line() {
        let deb = PathBuf::from("/w/target/xen/x.deb");
        let errors = [
            FetchError::Tool {
                program: "dpkg-deb",
                reason: "No such file or directory".into(),
                elf: "/w/target/xen/xen.elf".into(),
            },
            FetchError::Cache {
                path: "/w/target/xen".into(),
                reason: "Permission denied".into(),
            },
            FetchError::SeveralPackages {
                dir: "/w/target/xen".into(),
                names: names(&["a.deb", "b.deb"]),
            },
            FetchError::Unpack {
                deb: deb.clone(),
                said: "dpkg-deb: error: not a Debian format archive".into(),
            },
            FetchError::NoHypervisor {
                deb: deb.clone(),
                found: vec![],
            },
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
            dir: dir.0.join("xen"),
        };
        fs::create_dir_all(&cache.dir).unwrap();
        let deb = build_deb(
            &cache.dir,
            &[
                ("xen-4.17-amd64.config", b"CONFIG_PV=y\n"),
                ("xen-4.17-amd64.gz", &gzip(b"\x7fELF hypervisor")),
            ],
        );
        let elf = ensure(&cache).unwrap();
        assert_eq!(elf, cache.elf());
        assert_eq!(fs::read(&elf).unwrap(), b"\x7fELF hypervisor");
        // Nothing else to download or unpack: the package can go.
        fs::remove_file(&deb).unwrap();
        assert_eq!(ensure(&cache).unwrap(), elf);
        assert_eq!(file_names(&cache.dir).unwrap(), [ELF_NAME]);
    }

    #[test]
    fn a_truncated_elf_in_the_cache_is_replaced() {
        let dir = temp_dir("truncated");
        let cache = Cache { dir: dir.0.clone() };
        build_deb(&cache.dir, &[("xen-4.17-amd64.gz", &gzip(b"\x7fELF good"))]);
        fs::write(cache.elf(), b"\x7fE").unwrap();
        ensure(&cache).unwrap();
        assert_eq!(fs::read(cache.elf()).unwrap(), b"\x7fELF good");
    }

    #[test]
    fn a_corrupt_package_is_named_with_what_to_do() {
        let dir = temp_dir("corrupt");
        let cache = Cache { dir: dir.0.clone() };
        let deb = cache.dir.join(format!("{PACKAGE}_1_amd64.deb"));
        fs::write(&deb, b"not an archive").unwrap();
        let e = ensure(&cache).unwrap_err();
        assert!(matches!(e, FetchError::Unpack { .. }), "{e}");
        let line = e.to_string();
        assert!(line.contains(&deb.display().to_string()), "{line}");
        assert!(line.contains("delete it"), "{line}");
        assert!(!cache.elf().exists());
    }

    #[test]
    fn a_package_without_the_hypervisor_is_refused() {
        let dir = temp_dir("empty");
        let cache = Cache { dir: dir.0.clone() };
        build_deb(&cache.dir, &[("xen-4.17-amd64.efi", b"MZ")]);
        let e = ensure(&cache).unwrap_err();
        assert!(
            e.to_string()
                .contains("exactly one boot/xen-*.gz (found: none)"),
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
            let cache = Cache { dir: dir.0.clone() };
            build_deb(&cache.dir, &[("xen-4.17-amd64.gz", &content)]);
            let e = ensure(&cache).unwrap_err();
            assert!(matches!(e, FetchError::Inflate { .. }), "{e}");
            assert!(e.to_string().contains(expected), "{e}");
            assert!(!cache.elf().exists());
        }
    }
}
