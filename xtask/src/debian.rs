//! A Debian package fetched with `apt-get download` into a cache folder and unpacked with
//! `dpkg-deb -x`: how xtask takes the files it boots (Xen's hypervisor, Linux's kernel) from
//! Debian without installing their packages, whose scripts rewrite /boot and grub.
//!
//! A package already in the cache folder is used without asking apt, so a machine without a
//! registry can be served by copying the `.deb` there. Downloads and unpacked trees go to a
//! scratch folder first and whatever is kept is renamed into place, so a run killed halfway
//! leaves nothing half-written for the next run to trust, and two runs fetching at once do
//! not see each other's files.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::host;

/// apt's wording (under `LC_ALL=C`) when its package lists do not know a package, which
/// `apt-get update` cures, unlike a network or disk failure.
const UNKNOWN_PACKAGE: [&str; 4] = [
    "Unable to locate package",
    "has no installation candidate",
    "Can't select candidate version",
    // apt-cache's.
    "No packages found",
];

/// A cache folder for one kind of package, and how messages name what the package brings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageCache {
    pub dir: PathBuf,
    /// What the package brings, as messages name it: `Xen`, `Linux`.
    pub what: &'static str,
    /// The host programs fetching runs, for the message when one cannot be started:
    /// `apt-get, dpkg-deb and gzip`.
    pub tools: &'static str,
    /// What a user on a host without those programs can do instead: `put an uncompressed
    /// Xen 4.17 ELF at …`.
    pub instead: String,
}

/// Why a package could not be had; every message is one line that says what to do.
#[derive(Debug)]
pub enum Error {
    /// apt-get, apt-cache, dpkg-deb or a caller's tool could not be started.
    Tool {
        program: &'static str,
        reason: String,
        what: &'static str,
        tools: &'static str,
        instead: String,
    },
    /// Reading or writing the cache folder failed.
    Cache {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// An apt command failed: `command` is what ran, `apt_said` its error line, `fix` the
    /// shell command that lets the next try succeed.
    Apt {
        what: &'static str,
        command: String,
        apt_said: String,
        fix: String,
    },
    /// More than one copy of the package lies in the cache folder.
    SeveralPackages {
        what: &'static str,
        dir: PathBuf,
        names: Vec<String>,
    },
    /// `dpkg-deb -x` refused the package.
    Unpack { deb: PathBuf, said: String },
    /// The package holds no file matching `pattern`, or more than one.
    NoFile {
        deb: PathBuf,
        pattern: String,
        found: Vec<String>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Tool {
                program,
                reason,
                what,
                tools,
                instead,
            } => write!(
                f,
                "cannot run {program} ({reason}): fetching {what} needs Debian's {tools}; \
                 elsewhere {instead}"
            ),
            Error::Cache { what, path, reason } => write!(
                f,
                "cannot use the {what} cache at {}: {reason}",
                path.display()
            ),
            Error::Apt {
                what,
                command,
                apt_said,
                fix,
            } => write!(
                f,
                "cannot download {what}: `{command}` said `{apt_said}`; run `{fix}`, then try again"
            ),
            Error::SeveralPackages { what, dir, names } => write!(
                f,
                "{} holds several {what} packages ({}); delete all but one",
                dir.display(),
                names.join(", ")
            ),
            Error::Unpack { deb, said } => write!(
                f,
                "cannot unpack {} ({said}); delete it to download it again",
                deb.display()
            ),
            Error::NoFile {
                deb,
                pattern,
                found,
            } => {
                let found = if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                };
                let file_name = deb.file_name().unwrap_or_default().to_string_lossy();
                let package = package_name(&file_name).unwrap_or(&file_name);
                write!(
                    f,
                    "{} does not hold exactly one {pattern} (found: {found}); \
                     delete it to download {package} again",
                    deb.display()
                )
            }
        }
    }
}

impl std::error::Error for Error {}

impl PackageCache {
    /// The one package in the cache folder whose name `is_wanted` accepts; `None` when there
    /// is none. Several are refused: versions cannot be ordered without dpkg's rules.
    pub fn cached(&self, is_wanted: &dyn Fn(&str) -> bool) -> Result<Option<PathBuf>, Error> {
        self.create()?;
        let names = self.file_names(&self.dir)?;
        match select_package(&names, is_wanted) {
            Ok(found) => Ok(found.map(|name| self.dir.join(name))),
            Err(names) => Err(Error::SeveralPackages {
                what: self.what,
                dir: self.dir.clone(),
                names,
            }),
        }
    }

    /// The packages `package` depends on, as `apt-cache depends` lists them: how a
    /// metapackage such as `linux-image-cloud-amd64` names the versioned package it stands
    /// for today.
    pub fn depends(&self, package: &str) -> Result<Vec<String>, Error> {
        self.create()?;
        let output = self.apt("apt-cache", "depends", package, &self.dir, |sudo| {
            format!("{sudo}apt-get update")
        })?;
        Ok(dependencies(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Downloads `package` into the cache folder and returns its path.
    pub fn download(&self, package: &str) -> Result<PathBuf, Error> {
        self.create()?;
        let scratch = self.scratch("download")?;
        println!(
            "{}: fetching {package} into {} (apt-get download)",
            self.log_name(),
            self.dir.display()
        );
        self.apt("apt-get", "download", package, scratch.path(), |sudo| {
            self.manual_download(package, sudo)
        })?;
        let names = self.file_names(scratch.path())?;
        let Ok(Some(name)) = select_package(&names, &|name| name == package) else {
            return Err(Error::Apt {
                what: self.what,
                command: format!("apt-get download {package}"),
                apt_said: format!(
                    "success, but it left no single {package}_*.deb (found: {})",
                    names.join(", ")
                ),
                fix: self.manual_download(package, sudo_prefix()),
            });
        };
        let deb = self.dir.join(name);
        fs::rename(scratch.path().join(name), &deb).map_err(|e| self.cache_error(&deb, &e))?;
        Ok(deb)
    }

    /// Unpacks `deb` into a scratch folder of the cache, removed when the result is dropped.
    pub fn unpack(&self, deb: &Path) -> Result<Unpacked, Error> {
        let tree = self.scratch("unpack")?;
        let output = self.run_tool(
            "dpkg-deb",
            Command::new("dpkg-deb").arg("-x").arg(deb).arg(tree.path()),
        )?;
        if !output.status.success() {
            return Err(Error::Unpack {
                deb: deb.to_path_buf(),
                said: error_line(&combined(&output)),
            });
        }
        Ok(Unpacked {
            deb: deb.to_path_buf(),
            what: self.what,
            tree,
        })
    }

    /// Runs a tool with captured output and C-locale messages, which [`error_line`] and the
    /// unknown-package check read.
    pub fn run_tool(&self, program: &'static str, command: &mut Command) -> Result<Output, Error> {
        command
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.tool_error(program, &e))
    }

    /// The names of the files in `dir`, sorted; a missing folder has none.
    pub fn file_names(&self, dir: &Path) -> Result<Vec<String>, Error> {
        file_names(dir).map_err(|e| cache_error(self.what, dir, &e))
    }

    pub fn cache_error(&self, path: &Path, error: &io::Error) -> Error {
        cache_error(self.what, path, error)
    }

    fn tool_error(&self, program: &'static str, error: &io::Error) -> Error {
        Error::Tool {
            program,
            reason: host::io_reason(error),
            what: self.what,
            tools: self.tools,
            instead: self.instead.clone(),
        }
    }

    /// What a user types to put `package` where [`PackageCache::cached`] looks for it;
    /// `sudo` is `"sudo "` or empty.
    pub fn manual_download(&self, package: &str, sudo: &str) -> String {
        format!(
            "{sudo}apt-get update && cd {} && apt-get download {package}",
            self.dir.display()
        )
    }

    fn create(&self) -> Result<(), Error> {
        fs::create_dir_all(&self.dir).map_err(|e| self.cache_error(&self.dir, &e))
    }

    fn scratch(&self, purpose: &str) -> Result<Scratch, Error> {
        Scratch::new(&self.dir, purpose).map_err(|e| self.cache_error(&self.dir, &e))
    }

    /// The prefix of this cache's progress lines: `xen`, `linux`.
    fn log_name(&self) -> String {
        self.what.to_lowercase()
    }

    /// Runs `program verb package` in `dir`. When it fails because the package lists lack
    /// the package and xtask runs as root, runs `apt-get update` once and tries again; a
    /// failure is an [`Error::Apt`] whose fix is `fix(sudo)`.
    fn apt(
        &self,
        program: &'static str,
        verb: &str,
        package: &str,
        dir: &Path,
        fix: impl FnOnce(&str) -> String,
    ) -> Result<Output, Error> {
        let attempt = || {
            self.run_tool(
                program,
                Command::new(program).args([verb, package]).current_dir(dir),
            )
        };
        let mut output = attempt()?;
        let root = sudo_prefix().is_empty();
        if !output.status.success() && root && is_unknown_package(&combined(&output)) {
            println!(
                "{}: {program} does not know {package} yet; running apt-get update",
                self.log_name()
            );
            // Progress of a slow update is worth seeing, so its output is not captured.
            let updated = Command::new("apt-get")
                .arg("update")
                .stdin(Stdio::null())
                .status()
                .map_err(|e| self.tool_error("apt-get", &e))?;
            if updated.success() {
                output = attempt()?;
            }
        }
        if output.status.success() {
            Ok(output)
        } else {
            Err(Error::Apt {
                what: self.what,
                command: format!("{program} {verb} {package}"),
                apt_said: error_line(&combined(&output)),
                fix: fix(sudo_prefix()),
            })
        }
    }
}

/// A package's files, unpacked into a scratch folder of its cache.
pub struct Unpacked {
    pub deb: PathBuf,
    what: &'static str,
    tree: Scratch,
}

impl Unpacked {
    /// The package's root: `boot/…`, `usr/…`.
    pub fn root(&self) -> &Path {
        self.tree.path()
    }

    /// The one file in the package's `folder` whose name starts with `prefix` and ends
    /// with `suffix`.
    pub fn only_file(&self, folder: &str, prefix: &str, suffix: &str) -> Result<PathBuf, Error> {
        let dir = self.root().join(folder);
        let names = file_names(&dir).map_err(|e| cache_error(self.what, &dir, &e))?;
        match only_match(&names, prefix, suffix) {
            Ok(name) => Ok(dir.join(name)),
            Err(found) => Err(Error::NoFile {
                deb: self.deb.clone(),
                pattern: format!("{folder}/{prefix}*{suffix}"),
                found,
            }),
        }
    }
}

/// A fresh folder, removed with its contents when dropped. Unique per process and call, so
/// two runs at once never see each other's half-written files.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Makes `<parent>/.<purpose>-<pid>-<n>`.
    pub fn new(parent: &Path, purpose: &str) -> io::Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(".{purpose}-{}-{n}", std::process::id()));
        // A crashed earlier run with the same pid may have left it behind.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `"sudo "` when xtask does not run as root, for the commands messages tell users to type.
fn sudo_prefix() -> &'static str {
    if host::effective_uid() == Some(0) {
        ""
    } else {
        "sudo "
    }
}

/// The package a `.deb` file holds, from its name: Debian names them
/// `<package>_<version>_<arch>.deb`, and package names cannot contain `_`.
fn package_name(file_name: &str) -> Option<&str> {
    package_and_version(file_name).map(|(name, _)| name)
}

/// The package and version of a `.deb` file, from its name (see [`package_name`]).
pub fn package_and_version(file_name: &str) -> Option<(&str, &str)> {
    let mut parts = file_name.strip_suffix(".deb")?.split('_');
    let (name, version) = (parts.next()?, parts.next()?);
    (!version.is_empty()).then_some((name, version))
}

/// Picks the package among a folder's file names: `None` when there is none, the names
/// when there are several.
fn select_package<'a>(
    names: &'a [String],
    is_wanted: &dyn Fn(&str) -> bool,
) -> Result<Option<&'a str>, Vec<String>> {
    let debs: Vec<&String> = names
        .iter()
        .filter(|n| package_name(n).is_some_and(is_wanted))
        .collect();
    match debs.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.as_str())),
        several => Err(several.iter().map(|s| s.to_string()).collect()),
    }
}

/// The one name that starts with `prefix` and ends with `suffix`, or all that do.
fn only_match<'a>(names: &'a [String], prefix: &str, suffix: &str) -> Result<&'a str, Vec<String>> {
    let matching: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.as_str()),
        _ => Err(matching.iter().map(|s| s.to_string()).collect()),
    }
}

/// The `Depends:` of `apt-cache depends` output. Alternatives (`|Depends:`) count too;
/// virtual packages (`<name>`) are left out, as no `.deb` carries their name.
fn dependencies(apt_cache_output: &str) -> Vec<String> {
    apt_cache_output
        .lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('<'))
        .map(str::to_string)
        .collect()
}

/// Whether apt failed because its package lists lack the package, which `apt-get update`
/// cures, rather than for a reason it does not (network, disk).
fn is_unknown_package(apt_output: &str) -> bool {
    UNKNOWN_PACKAGE.iter().any(|m| apt_output.contains(m))
}

/// The line of a tool's output that says what went wrong: apt's first `E:` line, else the
/// last line with text.
pub fn error_line(output: &str) -> String {
    let lines = || output.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.starts_with("E: "))
        .or_else(|| lines().next_back())
        .unwrap_or("no output")
        .to_string()
}

/// A finished tool's stdout and stderr, for [`error_line`].
pub fn combined(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn file_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn cache_error(what: &'static str, path: &Path, error: &io::Error) -> Error {
    Error::Cache {
        what,
        path: path.to_path_buf(),
        reason: host::io_reason(error),
    }
}

/// Packages built for tests, in place of Debian's.
#[cfg(test)]
pub mod test_packages {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Builds `<package>_<version>_amd64.deb` in `dir`, holding `files` (paths relative to
    /// the package root) as given.
    pub fn build(dir: &Path, package: &str, version: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let tree = dir.join(format!(".tree-{package}"));
        fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        fs::write(
            tree.join("DEBIAN/control"),
            format!(
                "Package: {package}\nVersion: {version}\nArchitecture: amd64\n\
                 Maintainer: test <test@example.org>\nDescription: test\n"
            ),
        )
        .unwrap();
        for (path, content) in files {
            let path = tree.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        let deb = dir.join(format!("{package}_{version}_amd64.deb"));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn cache(dir: &Path) -> PackageCache {
        PackageCache {
            dir: dir.to_path_buf(),
            what: "Test",
            tools: "apt-get and dpkg-deb",
            instead: "put the file there".into(),
        }
    }

    #[test]
    fn package_names_come_from_debian_file_names() {
        assert_eq!(
            package_name("linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb"),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(package_name("xen.elf"), None);
        assert_eq!(
            package_and_version(
                "xen-hypervisor-4.17-amd64_4.17.7+13-g2445b30a44-0+deb12u1_amd64.deb"
            ),
            Some((
                "xen-hypervisor-4.17-amd64",
                "4.17.7+13-g2445b30a44-0+deb12u1"
            ))
        );
        assert_eq!(package_name("notes.deb"), None);
    }

    #[test]
    fn package_selection_takes_the_one_deb_of_the_package() {
        let xen = |name: &str| name == "xen-hypervisor-4.17-amd64";
        assert_eq!(select_package(&names(&[]), &xen), Ok(None));
        assert_eq!(
            select_package(
                &names(&[
                    "xen.elf",
                    ".unpack-1-0",
                    "xen-hypervisor-4.17-amd64_4.17.7+13-g2445b30a44-0+deb12u1_amd64.deb",
                    "xen-hypervisor-4.17-amd64-dbg_4.17.7_amd64.deb",
                    "xen-utils-4.17_4.17.7_amd64.deb",
                ]),
                &xen
            ),
            Ok(Some(
                "xen-hypervisor-4.17-amd64_4.17.7+13-g2445b30a44-0+deb12u1_amd64.deb"
            ))
        );
        assert_eq!(
            select_package(
                &names(&[
                    "xen-hypervisor-4.17-amd64_4.17.5_amd64.deb",
                    "xen-hypervisor-4.17-amd64_4.17.7_amd64.deb",
                ]),
                &xen
            ),
            Err(names(&[
                "xen-hypervisor-4.17-amd64_4.17.5_amd64.deb",
                "xen-hypervisor-4.17-amd64_4.17.7_amd64.deb",
            ]))
        );
    }

    #[test]
    fn file_selection_skips_other_suffixes() {
        let boot = names(&[
            "xen-4.17-amd64.config",
            "xen-4.17-amd64.efi",
            "xen-4.17-amd64.gz",
        ]);
        assert_eq!(only_match(&boot, "xen-", ".gz"), Ok("xen-4.17-amd64.gz"));
        assert_eq!(
            only_match(&names(&["vmlinuz.gz", "xen-4.17-amd64.efi"]), "xen-", ".gz"),
            Err(vec![])
        );
        assert_eq!(
            only_match(
                &names(&["xen-4.17-amd64.gz", "xen-4.18-amd64.gz"]),
                "xen-",
                ".gz"
            ),
            Err(names(&["xen-4.17-amd64.gz", "xen-4.18-amd64.gz"]))
        );
        let kernel = names(&[
            "System.map-6.1.0-56-cloud-amd64",
            "config-6.1.0-56-cloud-amd64",
            "vmlinuz-6.1.0-56-cloud-amd64",
        ]);
        assert_eq!(
            only_match(&kernel, "vmlinuz-", ""),
            Ok("vmlinuz-6.1.0-56-cloud-amd64")
        );
    }

    #[test]
    fn dependencies_are_read_from_apt_cache_depends() {
        let output = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(dependencies(output), ["linux-image-6.1.0-56-cloud-amd64"]);
        let output = "foo\n  PreDepends: libc6\n |Depends: bar\n  Depends: baz\n  \
                      Depends: <virtual>\n    provider\n  Recommends: qux\n";
        assert_eq!(dependencies(output), ["bar", "baz"]);
        assert!(dependencies("").is_empty());
    }

    #[test]
    fn unknown_package_is_told_apart_from_other_apt_failures() {
        let unknown = "E: Unable to locate package xen-hypervisor-4.17-amd64\n\
                       E: Couldn't find any package by glob 'xen-hypervisor-4.17-amd64'";
        assert!(is_unknown_package(unknown));
        assert!(is_unknown_package(
            "E: Package 'xen-hypervisor-4.17-amd64' has no installation candidate"
        ));
        assert!(is_unknown_package("E: No packages found"));
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
    fn manual_download_asks_for_sudo_only_when_needed() {
        let c = cache(Path::new("/w/target/linux"));
        assert_eq!(
            c.manual_download("linux-image-6.1.0-56-cloud-amd64", ""),
            "apt-get update && cd /w/target/linux && apt-get download linux-image-6.1.0-56-cloud-amd64"
        );
        assert!(
            c.manual_download("x", "sudo ")
                .starts_with("sudo apt-get update && ")
        );
    }

    #[test]
    fn every_error_is_one_line() {
        let deb =
            PathBuf::from("/w/target/linux/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb");
        let errors = [
            Error::Tool {
                program: "dpkg-deb",
                reason: "No such file or directory".into(),
                what: "Linux",
                tools: "apt-get and dpkg-deb",
                instead: "put a bzImage there".into(),
            },
            Error::Cache {
                what: "Linux",
                path: "/w/target/linux".into(),
                reason: "Permission denied".into(),
            },
            Error::Apt {
                what: "Linux",
                command: "apt-cache depends linux-image-cloud-amd64".into(),
                apt_said: "E: No packages found".into(),
                fix: "apt-get update".into(),
            },
            Error::SeveralPackages {
                what: "Linux",
                dir: "/w/target/linux".into(),
                names: names(&["a.deb", "b.deb"]),
            },
            Error::Unpack {
                deb: deb.clone(),
                said: "dpkg-deb: error: not a Debian format archive".into(),
            },
            Error::NoFile {
                deb,
                pattern: "boot/vmlinuz-*".into(),
                found: vec![],
            },
        ];
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn a_missing_file_names_the_package_to_download_again() {
        let e = Error::NoFile {
            deb: "/w/target/linux/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb".into(),
            pattern: "boot/vmlinuz-*".into(),
            found: names(&["vmlinuz-a", "vmlinuz-b"]),
        };
        assert_eq!(
            e.to_string(),
            "/w/target/linux/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb does not hold \
             exactly one boot/vmlinuz-* (found: vmlinuz-a, vmlinuz-b); delete it to download \
             linux-image-6.1.0-56-cloud-amd64 again"
        );
    }

    #[test]
    fn a_cached_package_is_found_unpacked_and_its_scratch_removed() {
        let dir = Scratch::new(&std::env::temp_dir(), "janus-debian-cached").unwrap();
        let c = cache(dir.path());
        assert_eq!(c.cached(&|name| name == "janus-test").unwrap(), None);
        let deb = test_packages::build(
            dir.path(),
            "janus-test",
            "1.0",
            &[("boot/file-1.bin", b"one"), ("boot/file-1.txt", b"text")],
        );
        assert_eq!(
            c.cached(&|name| name == "janus-test").unwrap(),
            Some(deb.clone())
        );
        let unpacked = c.unpack(&deb).unwrap();
        let file = unpacked.only_file("boot", "file-", ".bin").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"one");
        let e = unpacked.only_file("boot", "other-", "").unwrap_err();
        assert!(
            e.to_string()
                .contains("exactly one boot/other-* (found: none)"),
            "{e}"
        );
        drop(unpacked);
        assert_eq!(
            c.file_names(dir.path()).unwrap(),
            ["janus-test_1.0_amd64.deb"]
        );
    }

    #[test]
    fn a_corrupt_package_is_refused_with_what_to_do() {
        let dir = Scratch::new(&std::env::temp_dir(), "janus-debian-corrupt").unwrap();
        let deb = dir.path().join("janus-test_1_amd64.deb");
        fs::write(&deb, b"not an archive").unwrap();
        let e = cache(dir.path()).unpack(&deb).err().unwrap();
        assert!(matches!(e, Error::Unpack { .. }), "{e}");
        assert!(e.to_string().contains("delete it"), "{e}");
    }

    #[test]
    fn a_scratch_folder_is_unique_and_removed_when_dropped() {
        let parent = std::env::temp_dir();
        let a = Scratch::new(&parent, "janus-debian-scratch").unwrap();
        let b = Scratch::new(&parent, "janus-debian-scratch").unwrap();
        assert_ne!(a.path(), b.path());
        let path = a.path().to_path_buf();
        fs::write(path.join("x"), b"x").unwrap();
        drop(a);
        assert!(!path.exists());
    }
}
