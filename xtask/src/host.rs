//! The host machine: which programs and files it has, who runs xtask, and installing the
//! Debian packages a boot needs.

use std::env;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::qemu;

/// Something a boot needs from the host, and the Debian package that provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// What to call it in messages.
    pub what: &'static str,
    /// How to tell whether it is there.
    pub probe: Probe,
    /// The Debian 12 package that provides it.
    pub package: &'static str,
}

/// How a [`Requirement`] is found on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A program on `PATH`.
    Program(&'static str),
    /// A file at a fixed path.
    File(&'static str),
}

/// QEMU itself.
pub const QEMU: Requirement = Requirement {
    what: "QEMU",
    probe: Probe::Program(qemu::PROGRAM),
    package: "qemu-system-x86",
};

/// The qboot firmware that `-M pc` and `-M q35` boot with.
pub const QBOOT: Requirement = Requirement {
    what: "qboot firmware",
    probe: Probe::File(qemu::QBOOT_ROM),
    package: "qemu-system-data",
};

/// What [`ensure`] does about a requirement.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Already on the host.
    Present,
    /// Missing, and xtask runs as root: install it with this shell command.
    Install(String),
    /// Missing, and xtask cannot install it: the user should run this shell command.
    AskUser(String),
}

/// Why a requirement could not be met.
#[derive(Debug)]
pub enum SetupError {
    /// Not root, so the user has to install it.
    NeedsInstall { what: &'static str, command: String },
    /// The install command could not be started.
    Spawn(io::Error),
    /// The install command ran and failed.
    InstallFailed {
        what: &'static str,
        status: std::process::ExitStatus,
    },
    /// The install command succeeded but the requirement is still missing.
    StillMissing {
        what: &'static str,
        package: &'static str,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NeedsInstall { what, command } => {
                write!(f, "{what} is not installed; install it with: {command}")
            }
            SetupError::Spawn(e) => write!(f, "cannot run the install command through sh: {e}"),
            SetupError::InstallFailed { what, status } => write!(
                f,
                "installing {what} failed ({status}); see the apt-get output above"
            ),
            SetupError::StillMissing { what, package } => write!(
                f,
                "package {package} is installed but {what} is still missing; check `dpkg -L {package}`"
            ),
        }
    }
}

impl std::error::Error for SetupError {}

impl Requirement {
    /// Whether the host has it now.
    pub fn is_present(&self) -> bool {
        match self.probe {
            Probe::Program(name) => find_program(name).is_some(),
            Probe::File(path) => Path::new(path).is_file(),
        }
    }

    /// Decides what to do, given whether it is present and whether xtask runs as root.
    pub fn plan(&self, present: bool, root: bool) -> Plan {
        let install = format!(
            "apt-get update && apt-get install -y --no-install-recommends {}",
            self.package
        );
        match (present, root) {
            (true, _) => Plan::Present,
            (false, true) => Plan::Install(install),
            (false, false) => Plan::AskUser(format!(
                "sudo apt-get update && sudo apt-get install -y --no-install-recommends {}",
                self.package
            )),
        }
    }
}

/// Makes sure the host has `requirement`, installing its package when running as root.
pub fn ensure(requirement: &Requirement) -> Result<(), SetupError> {
    let root = effective_uid() == Some(0);
    match requirement.plan(requirement.is_present(), root) {
        Plan::Present => Ok(()),
        Plan::AskUser(command) => Err(SetupError::NeedsInstall {
            what: requirement.what,
            command,
        }),
        Plan::Install(command) => {
            println!("installing {}: {command}", requirement.what);
            let status = Command::new("sh")
                .arg("-c")
                .arg(&command)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status()
                .map_err(SetupError::Spawn)?;
            if !status.success() {
                return Err(SetupError::InstallFailed {
                    what: requirement.what,
                    status,
                });
            }
            if requirement.is_present() {
                Ok(())
            } else {
                Err(SetupError::StillMissing {
                    what: requirement.what,
                    package: requirement.package,
                })
            }
        }
    }
}

/// Finds `name` in the directories of `PATH`, as the shell would.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A field of the first processor in /proc/cpuinfo's text, e.g. `model name`, `flags`.
pub fn cpuinfo_field<'a>(cpuinfo: &'a str, name: &str) -> Option<&'a str> {
    let first = cpuinfo.split("\n\n").next()?;
    first.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then_some(value.trim())
    })
}

/// The effective user id, read from `/proc/self/status` so that xtask needs no `unsafe`.
pub fn effective_uid() -> Option<u32> {
    parse_effective_uid(&fs::read_to_string("/proc/self/status").ok()?)
}

/// The `Uid:` line of `/proc/<pid>/status` holds real, effective, saved and fs uids.
fn parse_effective_uid(status: &str) -> Option<u32> {
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// The host's wall clock in whole seconds since the Unix epoch; `None` for a clock set
/// before 1970.
pub fn unix_time() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The reason an I/O error gives, without the `(os error N)` suffix std appends.
pub fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// A command as a user would type it, for logs: the program by name, not by path, and
/// arguments with spaces or quotes quoted.
pub fn command_line(command: &Command) -> String {
    let program = Path::new(command.get_program());
    std::iter::once(program.file_name().unwrap_or(program.as_os_str()))
        .chain(command.get_args())
        .map(|arg| shell_quote(&arg.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=,:+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_field_of_the_uid_line() {
        let status = "Name:\txtask\nUmask:\t0022\nUid:\t1000\t0\t1000\t1000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
        assert_eq!(parse_effective_uid("Uid:\t1000\n"), None);
    }

    #[test]
    fn effective_uid_of_this_process_is_readable() {
        assert!(effective_uid().is_some());
    }

    #[test]
    fn missing_qemu_as_root_installs_without_sudo() {
        assert_eq!(
            QEMU.plan(false, true),
            Plan::Install(
                "apt-get update && apt-get install -y --no-install-recommends qemu-system-x86"
                    .into()
            )
        );
    }

    #[test]
    fn missing_qemu_as_user_asks_for_sudo() {
        let Plan::AskUser(command) = QEMU.plan(false, false) else {
            panic!("a non-root user cannot install");
        };
        assert_eq!(
            command,
            "sudo apt-get update && sudo apt-get install -y --no-install-recommends qemu-system-x86"
        );
    }

    #[test]
    fn present_requirement_needs_nothing() {
        assert_eq!(QBOOT.plan(true, false), Plan::Present);
        assert_eq!(QBOOT.plan(true, true), Plan::Present);
    }

    #[test]
    fn qboot_comes_from_qemu_system_data() {
        assert!(
            matches!(QBOOT.plan(false, true), Plan::Install(c) if c.ends_with(" qemu-system-data"))
        );
    }

    #[test]
    fn find_program_searches_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-no-such-program-janus").is_none());
    }

    #[test]
    fn io_reason_drops_the_os_error_suffix() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
        let custom = io::Error::other("plain");
        assert_eq!(io_reason(&custom), "plain");
    }

    #[test]
    fn command_line_quotes_only_what_needs_it() {
        let mut c = Command::new("/usr/bin/qemu-system-x86_64");
        c.args(["-append", "a b", "-m", "128M", "-x", "it's", "-y", ""]);
        assert_eq!(
            command_line(&c),
            r"qemu-system-x86_64 -append 'a b' -m 128M -x 'it'\''s' -y ''"
        );
    }
}
