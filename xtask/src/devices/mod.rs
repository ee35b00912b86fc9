//! The paravirtual I/O devices a run attaches, the files behind them, and the host's checks
//! of what the kernel did with them.
//!
//! A kernel that QEMU boots directly gets a virtio-blk disk, a virtio-net NIC on QEMU's user
//! network with a UDP port forwarded to the guest's port 7, a virtio-rng and a virtio
//! console writing to a file; `-M pc` adds an ATA disk, the baseline virtio-blk is measured
//! against. Runs under Xen get none: Janus has no Xen PV device drivers (netfront,
//! blkfront), and QEMU's devices would belong to Xen's dom0 driver domain, not to a guest.
//!
//! Each run has its own directory, `<target>/janus-io/<label>-<pid>-<n>/`, because boot tests
//! run side by side: `disk.img` (the virtio-blk disk), `ata.img` (a second copy of the
//! pristine image, `-M pc` only), and `virtcon.log` (what the kernel wrote on the virtio
//! console). After QEMU exits, [`host_checks`] judges them together with the kernel's
//! `@janus` lines and the UDP echo exchange.

pub mod disk;
pub mod udp_echo;
pub mod virtio_console;

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::host;
use crate::qemu::Machine;
use crate::report::Report;
use crate::workspace::Workspace;
use disk::Access;
use janus_drivers::disk_pattern::SECTOR_SIZE;
use udp_echo::EchoResult;

/// The directory under cargo's target directory that holds the runs' directories.
pub const ROOT_DIR: &str = "janus-io";

/// The file names in a run's directory.
pub const DISK_FILE: &str = "disk.img";
pub const ATA_FILE: &str = "ata.img";
pub const VIRTCON_FILE: &str = "virtcon.log";

/// Seconds the kernel waits for the host's first datagram: the value of the `net-echo=`
/// xtask appends to the command line.
pub const NET_ECHO_WAIT_SECS: u32 = 30;

/// The command-line key that asks the kernel to serve the UDP echo.
pub const NET_ECHO_KEY: &str = "net-echo";

/// The devices of one run: its directory and the forwarded port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The run's own directory, holding the images and the console log.
    pub dir: PathBuf,
    /// The port on 127.0.0.1 that QEMU forwards to the guest's UDP port 7.
    pub port: u16,
    /// The machine the devices are attached to: virtio-mmio on microvm, PCI on pc and
    /// q35, plus the ATA disk on pc.
    pub machine: Machine,
    /// The size of each disk image: [`disk::IMAGE_SECTORS`].
    pub disk_sectors: u64,
}

/// Why the devices' files could not be made.
#[derive(Debug)]
pub enum SetupError {
    /// `cargo metadata` did not say where the target directory is.
    NoTargetDir(String),
    /// A file or directory could not be made.
    Create {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// QEMU's option syntax needs the paths as text.
    NotUtf8(PathBuf),
    /// No UDP port could be bound on 127.0.0.1.
    Port(io::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NoTargetDir(e) => write!(
                f,
                "cannot find the target directory for the device files ({e}); run with \
                 --no-devices to boot without them"
            ),
            SetupError::Create { what, path, source } => write!(
                f,
                "cannot create {what} {}: {}; free space there, or run with --no-devices",
                path.display(),
                host::io_reason(source)
            ),
            SetupError::NotUtf8(path) => write!(
                f,
                "the device files would live in {}, which is not UTF-8 and cannot be given to \
                 QEMU; set CARGO_TARGET_DIR to a UTF-8 path",
                path.display()
            ),
            SetupError::Port(e) => write!(
                f,
                "cannot bind a UDP port on 127.0.0.1 for the echo test: {}; run with \
                 --no-devices to boot without a NIC",
                host::io_reason(e)
            ),
        }
    }
}

impl std::error::Error for SetupError {}

/// `<target>/janus-io` of this workspace, asked of cargo once per process.
pub fn default_root() -> Result<PathBuf, SetupError> {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOT.get_or_init(|| {
        Workspace::locate()
            .map(|w| w.target_dir.join(ROOT_DIR))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(SetupError::NoTargetDir)
}

/// Numbers the runs of this process, so two of them never share a directory.
static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

impl Attachment {
    /// The devices at `dir` with `port`, without touching the file system.
    pub fn at(dir: impl Into<PathBuf>, port: u16, machine: Machine) -> Attachment {
        Attachment {
            dir: dir.into(),
            port,
            machine,
            disk_sectors: disk::IMAGE_SECTORS,
        }
    }

    /// Makes a fresh directory under `root` for the run labelled `label` (`tcg/pc`), writes
    /// the disk images into it and picks a free UDP port.
    pub fn create(root: &Path, label: &str, machine: Machine) -> Result<Attachment, SetupError> {
        Attachment::create_sized(root, label, machine, disk::IMAGE_SECTORS)
    }

    /// [`Attachment::create`] with disks of `disk_sectors` sectors.
    pub fn create_sized(
        root: &Path,
        label: &str,
        machine: Machine,
        disk_sectors: u64,
    ) -> Result<Attachment, SetupError> {
        if root.to_str().is_none() {
            return Err(SetupError::NotUtf8(root.to_path_buf()));
        }
        let create = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| SetupError::Create { what, path, source }
        };
        fs::create_dir_all(root).map_err(create("the directory", root))?;
        let stem = format!("{}-{}", label.replace('/', "-"), std::process::id());
        let dir = loop {
            let dir = root.join(format!(
                "{stem}-{}",
                NEXT_RUN.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                // Left by an earlier process with the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(create("the directory", &dir)(e)),
            }
        };
        let attachment = Attachment {
            disk_sectors,
            ..Attachment::at(dir, 0, machine)
        };
        let filled = attachment
            .fill()
            .and_then(|()| udp_echo::pick_free_port().map_err(SetupError::Port));
        match filled {
            Ok(port) => Ok(Attachment { port, ..attachment }),
            Err(e) => {
                let _ = fs::remove_dir_all(&attachment.dir);
                Err(e)
            }
        }
    }

    /// Writes the images.
    fn fill(&self) -> Result<(), SetupError> {
        let disk = self.disk();
        disk::create_image(&disk, self.disk_sectors).map_err(|source| SetupError::Create {
            what: "the test disk",
            path: disk.clone(),
            source,
        })?;
        if let Some(ata) = self.ata_disk() {
            fs::copy(&disk, &ata).map_err(|source| SetupError::Create {
                what: "the ATA test disk",
                path: ata.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The virtio-blk image.
    pub fn disk(&self) -> PathBuf {
        self.dir.join(DISK_FILE)
    }

    /// The ATA image, on `-M pc` only: q35 has AHCI, not legacy IDE, and microvm neither.
    pub fn ata_disk(&self) -> Option<PathBuf> {
        (self.machine == Machine::Pc).then(|| self.dir.join(ATA_FILE))
    }

    /// The file QEMU writes the virtio console to.
    pub fn virtcon(&self) -> PathBuf {
        self.dir.join(VIRTCON_FILE)
    }

    /// Where the echo datagrams go.
    pub fn echo_target(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// The virtio transport's device-name suffix: `-pci`, or `-device` for virtio-mmio.
    fn virtio(&self, device: &str) -> String {
        match self.machine {
            Machine::Microvm => format!("virtio-{device}-device"),
            Machine::Pc | Machine::Q35 => format!("virtio-{device}-pci"),
        }
    }

    /// QEMU's arguments for the devices (each name checked with QEMU 7.2's `-device help`
    /// on microvm, pc and q35, and a boot with all of them on each).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut args = vec![
            "-drive".into(),
            format!(
                "if=none,id=janus-disk,file={},format=raw",
                qemu_path(&self.disk())
            ),
            "-device".into(),
            format!("{},drive=janus-disk", self.virtio("blk")),
            "-netdev".into(),
            format!(
                "user,id=janus-net,hostfwd=udp:127.0.0.1:{}-:{}",
                self.port,
                udp_echo::GUEST_PORT
            ),
            "-device".into(),
            format!("{},netdev=janus-net", self.virtio("net")),
            "-device".into(),
            self.virtio("rng"),
            "-device".into(),
            self.virtio("serial"),
            "-chardev".into(),
            format!("file,id=janus-vcon,path={}", qemu_path(&self.virtcon())),
            "-device".into(),
            "virtconsole,chardev=janus-vcon".into(),
        ];
        if let Some(ata) = self.ata_disk() {
            args.push("-drive".into());
            args.push(format!(
                "file={},if=ide,index=0,media=disk,format=raw",
                qemu_path(&ata)
            ));
        }
        args
    }

    /// One line for the user: what is attached, and where its files are.
    pub fn describe(&self) -> String {
        let bus = match self.machine {
            Machine::Microvm => "virtio-mmio",
            Machine::Pc | Machine::Q35 => "PCI",
        };
        let ata = if self.ata_disk().is_some() {
            " and an ATA disk (read only)"
        } else {
            ""
        };
        format!(
            "devices: virtio-blk ({} MiB), virtio-net (UDP echo via 127.0.0.1:{}), \
             virtio-rng, virtio-console over {bus}{ata}; files in {}; --no-devices boots \
             without them",
            (self.disk_sectors * SECTOR_SIZE as u64) >> 20,
            self.port,
            self.dir.display()
        )
    }
}

/// A path inside a QEMU option, where a comma ends the value unless doubled.
fn qemu_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// Whether `line` (from the serial console) says the kernel serves the UDP echo:
/// `@janus net-echo ready ...`.
pub fn is_echo_ready(line: &str) -> bool {
    let mut words = line.split_whitespace();
    (words.next(), words.next(), words.next()) == (Some("@janus"), Some("net-echo"), Some("ready"))
}

/// Whether `cmdline` already sets `key=`.
pub fn cmdline_has(cmdline: &str, key: &str) -> bool {
    cmdline.split_whitespace().any(|w| {
        w.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('='))
    })
}

/// How a host check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    Passed,
    Failed,
    /// It could not be done, and that is already explained elsewhere: the run ended first,
    /// or the kernel reported its own test for the device failed.
    NotChecked,
}

/// One host-side check of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCheck {
    /// What was checked, as its `host:` line names it: `disk check`, `udp echo`, ...
    pub name: &'static str,
    pub status: CheckStatus,
    /// One line: what was found, or what is wrong.
    pub detail: String,
}

impl HostCheck {
    pub fn passed(&self) -> bool {
        self.status == CheckStatus::Passed
    }

    pub fn failed(&self) -> bool {
        self.status == CheckStatus::Failed
    }

    fn new(name: &'static str, status: CheckStatus, detail: impl Into<String>) -> HostCheck {
        HostCheck {
            name,
            status,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for HostCheck {
    /// `host: udp echo: 16/16 ...`, `host: disk check FAILED: ...` or
    /// `host: virtio-console check not checked: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            CheckStatus::Passed => "",
            CheckStatus::Failed => " FAILED",
            CheckStatus::NotChecked => " not checked",
        };
        write!(f, "host: {}{status}: {}", self.name, self.detail)
    }
}

pub const DISK_CHECK: &str = "disk check";
pub const ATA_CHECK: &str = "ata disk check";
pub const ECHO_CHECK: &str = "udp echo";
pub const CONSOLE_CHECK: &str = "virtio-console check";

/// The kernel's self-tests that use each device; the same names the boot tests require.
const DISK_TESTS: &[&str] = &["virtio-blk-read", "virtio-blk-write"];
const ATA_TESTS: &[&str] = &["ata-pio-read"];
const NET_TESTS: &[&str] = &["virtio-net-gateway", "virtio-net-udp-echo"];
const CONSOLE_TESTS: &[&str] = &["virtio-console"];

/// Judges what the kernel did with the devices of `io`, from the files after QEMU exited,
/// the kernel's report, the echo exchange (`None` when the kernel never said it was ready)
/// and the user's command line.
pub fn host_checks(
    io: &Attachment,
    report: &Report,
    echo: Option<&EchoResult>,
    user_cmdline: &str,
) -> Vec<HostCheck> {
    let write_test_passed = report.test("virtio-blk-write").is_some_and(|t| t.pass);
    let mut checks = vec![disk_check(
        DISK_CHECK,
        (&io.disk(), io.disk_sectors),
        Access::Shared { write_test_passed },
        report,
        "virtio-blk",
        DISK_TESTS,
    )];
    if let Some(ata) = io.ata_disk() {
        checks.push(disk_check(
            ATA_CHECK,
            (&ata, io.disk_sectors),
            Access::ReadOnly,
            report,
            "the ATA disk",
            ATA_TESTS,
        ));
    }
    checks.push(echo_check(io, report, echo, user_cmdline));
    checks.push(console_check(io, report));
    checks
}

/// The check of a device the kernel printed no test for: not checked when the run ended
/// before it got there, failed when it finished without using the device.
fn unused(
    name: &'static str,
    report: &Report,
    device: &str,
    tests: &[&str],
    found: &str,
) -> HostCheck {
    if report.done.is_none() {
        return HostCheck::new(
            name,
            CheckStatus::NotChecked,
            format!("the run ended before the kernel used {device}; {found}"),
        );
    }
    HostCheck::new(
        name,
        CheckStatus::Failed,
        format!(
            "{device} was attached but the kernel printed no {} test: it found no such \
             device, or predates its driver (--no-devices leaves the devices out); {found}",
            tests.join(" or ")
        ),
    )
}

/// The first of `tests` the kernel reported failed, as `name (reason=...)`.
fn failed_test(report: &Report, tests: &[&str]) -> Option<String> {
    tests.iter().find_map(|&name| {
        let test = report.test(name).filter(|t| !t.pass)?;
        Some(match &test.reason {
            Some(reason) => format!("{name} (reason={reason})"),
            None => name.to_string(),
        })
    })
}

/// Checks the image at `path` of `sectors`, used by the kernel's `tests`.
fn disk_check(
    name: &'static str,
    (path, sectors): (&Path, u64),
    access: Access,
    report: &Report,
    device: &str,
    tests: &[&str],
) -> HostCheck {
    match disk::check_image(path, access, sectors) {
        Err(e) => HostCheck::new(
            name,
            CheckStatus::Failed,
            format!("{e} ({})", path.display()),
        ),
        Ok(check) if !check.passed() => {
            HostCheck::new(name, CheckStatus::Failed, check.to_string())
        }
        Ok(check) if tests.iter().any(|t| report.test(t).is_some()) => {
            HostCheck::new(name, CheckStatus::Passed, check.to_string())
        }
        Ok(check) => unused(name, report, device, tests, &check.to_string()),
    }
}

fn echo_check(
    io: &Attachment,
    report: &Report,
    echo: Option<&EchoResult>,
    user_cmdline: &str,
) -> HostCheck {
    if let Some(result) = echo {
        let status = if result.passed() {
            CheckStatus::Passed
        } else {
            CheckStatus::Failed
        };
        return HostCheck::new(ECHO_CHECK, status, result.to_string());
    }
    let never = "the kernel never printed `@janus net-echo ready`";
    if let Some(test) = failed_test(report, NET_TESTS) {
        return HostCheck::new(
            ECHO_CHECK,
            CheckStatus::NotChecked,
            format!("{never}; its test {test} failed"),
        );
    }
    if let Some(given) = user_cmdline
        .split_whitespace()
        .find(|w| w.starts_with("net-echo="))
    {
        return HostCheck::new(
            ECHO_CHECK,
            CheckStatus::NotChecked,
            format!("{never} with the command line's {given}"),
        );
    }
    if report.done.is_none() {
        return HostCheck::new(
            ECHO_CHECK,
            CheckStatus::NotChecked,
            format!(
                "the run ended before the kernel served the echo on 127.0.0.1:{}",
                io.port
            ),
        );
    }
    HostCheck::new(
        ECHO_CHECK,
        CheckStatus::Failed,
        format!(
            "virtio-net was attached, with 127.0.0.1:{} forwarded to the guest's UDP port {}, \
             but {never}: it found no virtio-net device, or ignores {NET_ECHO_KEY}= \
             (--no-devices leaves the devices out)",
            io.port,
            udp_echo::GUEST_PORT
        ),
    )
}

fn console_check(io: &Attachment, report: &Report) -> HostCheck {
    let name = CONSOLE_CHECK;
    let Some(test) = report.test("virtio-console") else {
        return unused(
            name,
            report,
            "the virtio console",
            CONSOLE_TESTS,
            "nothing to look for in virtcon.log",
        );
    };
    if !test.pass {
        let failed = failed_test(report, CONSOLE_TESTS).unwrap_or_default();
        return HostCheck::new(
            name,
            CheckStatus::NotChecked,
            format!("the kernel's test {failed} failed"),
        );
    }
    let Some(nonce) = test.extra.get("nonce") else {
        return HostCheck::new(
            name,
            CheckStatus::Failed,
            "`@janus test virtio-console pass` carries no nonce= to look for in virtcon.log",
        );
    };
    let path = io.virtcon();
    let log = match fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            return HostCheck::new(
                name,
                CheckStatus::Failed,
                format!("cannot read {}: {}", path.display(), host::io_reason(&e)),
            );
        }
    };
    match virtio_console::check_nonce(&log, nonce, VIRTCON_FILE) {
        Ok(detail) => HostCheck::new(name, CheckStatus::Passed, detail),
        Err(detail) => HostCheck::new(name, CheckStatus::Failed, detail),
    }
}

/// After a run: removes its directory when it `passed`; otherwise keeps it and returns the
/// line that says where it is.
pub fn keep_or_remove(dir: &Path, passed: bool) -> Option<String> {
    if !passed {
        return Some(format!(
            "host: the device files (disk images, {VIRTCON_FILE}) are kept in {}",
            dir.display()
        ));
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(format!(
            "host: cannot remove {}: {}; delete it by hand",
            dir.display(),
            host::io_reason(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lines: &[&str]) -> Report {
        Report::from_lines(lines)
    }

    const DONE: &str = "@janus done tests_passed=1 tests_failed=0 boot_us=5";

    /// A real run directory in the system's temp directory with 4 MiB disks (quick to
    /// write in a debug build), removed at the end.
    struct TempRun(Attachment);

    const SECTORS: u64 = 8192;

    impl TempRun {
        fn new(machine: Machine) -> TempRun {
            // A root of its own, so removing it races with no other test.
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let root = std::env::temp_dir().join(format!(
                "janus-devices-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            TempRun(Attachment::create_sized(&root, "tcg/test", machine, SECTORS).unwrap())
        }
    }

    impl Drop for TempRun {
        fn drop(&mut self) {
            if let Some(root) = self.0.dir.parent() {
                let _ = fs::remove_dir_all(root);
            }
        }
    }

    fn find(checks: &[HostCheck], name: &str) -> (CheckStatus, String) {
        let check = checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} in {checks:?}"));
        (check.status, check.detail.clone())
    }

    fn echoed() -> EchoResult {
        EchoResult {
            target: Some("127.0.0.1:40000".parse().unwrap()),
            intact: udp_echo::DATAGRAMS,
            round_trips: vec![std::time::Duration::from_micros(700); 16],
            end_echoed: true,
            ..EchoResult::default()
        }
    }

    #[test]
    fn create_makes_a_fresh_directory_with_the_images() {
        let pc = TempRun::new(Machine::Pc);
        let microvm = TempRun::new(Machine::Microvm);
        assert_ne!(pc.0.dir, microvm.0.dir);
        let name = pc.0.dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("tcg-test-{}-", std::process::id())),
            "{name}"
        );
        assert_ne!(pc.0.port, 0);
        for (run, ata) in [(&pc, true), (&microvm, false)] {
            assert_eq!(fs::metadata(run.0.disk()).unwrap().len(), SECTORS * 512);
            assert_eq!(run.0.ata_disk().is_some_and(|a| a.is_file()), ata);
            assert!(!run.0.virtcon().exists(), "QEMU creates the console log");
        }
    }

    #[test]
    fn create_says_what_it_could_not_make() {
        let file = std::env::temp_dir().join(format!("janus-devices-file-{}", std::process::id()));
        fs::write(&file, b"").unwrap();
        let err = Attachment::create(&file.join("io"), "tcg/pc", Machine::Pc).unwrap_err();
        fs::remove_file(&file).unwrap();
        let message = err.to_string();
        assert!(
            message.starts_with("cannot create the directory "),
            "{message}"
        );
        assert!(message.contains("--no-devices"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn pci_machines_get_pci_devices_and_pc_the_ata_disk() {
        let pc = Attachment::at("/t/io", 40000, Machine::Pc);
        assert_eq!(
            pc.qemu_args(),
            [
                "-drive",
                "if=none,id=janus-disk,file=/t/io/disk.img,format=raw",
                "-device",
                "virtio-blk-pci,drive=janus-disk",
                "-netdev",
                "user,id=janus-net,hostfwd=udp:127.0.0.1:40000-:7",
                "-device",
                "virtio-net-pci,netdev=janus-net",
                "-device",
                "virtio-rng-pci",
                "-device",
                "virtio-serial-pci",
                "-chardev",
                "file,id=janus-vcon,path=/t/io/virtcon.log",
                "-device",
                "virtconsole,chardev=janus-vcon",
                "-drive",
                "file=/t/io/ata.img,if=ide,index=0,media=disk,format=raw",
            ]
        );
        let q35 = Attachment::at("/t/io", 40000, Machine::Q35).qemu_args();
        assert_eq!(q35[..], pc.qemu_args()[..16], "q35: the same without IDE");
    }

    #[test]
    fn microvm_gets_virtio_mmio_devices_and_no_ide() {
        let args = Attachment::at("/t/io", 40000, Machine::Microvm).qemu_args();
        let devices: Vec<&str> = args
            .iter()
            .zip(args.iter().skip(1))
            .filter(|(flag, _)| *flag == "-device")
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(
            devices,
            [
                "virtio-blk-device,drive=janus-disk",
                "virtio-net-device,netdev=janus-net",
                "virtio-rng-device",
                "virtio-serial-device",
                "virtconsole,chardev=janus-vcon",
            ]
        );
        assert!(!args.iter().any(|a| a.contains("if=ide")));
    }

    #[test]
    fn commas_in_paths_are_doubled_for_qemu() {
        let args = Attachment::at("/t/a,b", 1, Machine::Q35).qemu_args();
        assert_eq!(
            args[1],
            "if=none,id=janus-disk,file=/t/a,,b/disk.img,format=raw"
        );
    }

    #[test]
    fn the_devices_line_names_the_port_and_the_directory() {
        let line = Attachment::at("/t/io", 40000, Machine::Pc).describe();
        assert_eq!(
            line,
            "devices: virtio-blk (32 MiB), virtio-net (UDP echo via 127.0.0.1:40000), \
             virtio-rng, virtio-console over PCI and an ATA disk (read only); files in /t/io; \
             --no-devices boots without them"
        );
        assert!(
            Attachment::at("/t/io", 1, Machine::Microvm)
                .describe()
                .contains("over virtio-mmio; files")
        );
    }

    #[test]
    fn echo_ready_and_cmdline_keys_are_recognised_exactly() {
        assert!(is_echo_ready("@janus net-echo ready ip=10.0.2.15 port=7"));
        assert!(is_echo_ready("@janus net-echo ready"));
        assert!(!is_echo_ready("@janus net-echo readying"));
        assert!(!is_echo_ready("janus: @janus net-echo ready"));
        assert!(cmdline_has("log=debug net-echo=5", "net-echo"));
        assert!(!cmdline_has("net-echoes=5 xnet-echo=1", "net-echo"));
    }

    #[test]
    fn a_kernel_that_used_every_device_passes_every_check() {
        let run = TempRun::new(Machine::Pc);
        fs::write(
            run.0.virtcon(),
            "@janus console-check nonce=00112233deadbeef\r\n",
        )
        .unwrap();
        let r = report(&[
            "@janus test virtio-blk-read pass",
            "@janus test ata-pio-read pass",
            "@janus test virtio-console pass nonce=00112233deadbeef",
            DONE,
        ]);
        let checks = host_checks(&run.0, &r, Some(&echoed()), "");
        assert_eq!(
            checks.iter().map(|c| c.name).collect::<Vec<_>>(),
            [DISK_CHECK, ATA_CHECK, ECHO_CHECK, CONSOLE_CHECK]
        );
        assert!(checks.iter().all(HostCheck::passed), "{checks:#?}");
        assert_eq!(
            checks[0].to_string(),
            "host: disk check: 8192 sectors, 0 damaged, 0 written by the guest"
        );
        assert_eq!(
            checks[2].to_string(),
            "host: udp echo: 16/16 datagrams echoed intact via 127.0.0.1:40000 (median round \
             trip 700 us)"
        );
        assert_eq!(
            checks[3].to_string(),
            "host: virtio-console check: nonce 00112233deadbeef found in virtcon.log"
        );
    }

    #[test]
    fn a_finished_kernel_that_ignored_the_devices_fails_every_check() {
        let run = TempRun::new(Machine::Microvm);
        let checks = host_checks(&run.0, &report(&[DONE]), None, "");
        assert_eq!(checks.len(), 3);
        assert!(checks.iter().all(HostCheck::failed), "{checks:#?}");
        let (_, disk) = find(&checks, DISK_CHECK);
        assert_eq!(
            disk,
            "virtio-blk was attached but the kernel printed no virtio-blk-read or \
             virtio-blk-write test: it found no such device, or predates its driver \
             (--no-devices leaves the devices out); 8192 sectors, 0 damaged, 0 written by the \
             guest"
        );
        let (_, echo) = find(&checks, ECHO_CHECK);
        assert!(
            echo.contains("but the kernel never printed `@janus net-echo ready`"),
            "{echo}"
        );
        assert!(
            echo.contains(&format!("127.0.0.1:{} forwarded", run.0.port)),
            "{echo}"
        );
        let (_, console) = find(&checks, CONSOLE_CHECK);
        assert!(
            console.starts_with("the virtio console was attached"),
            "{console}"
        );
    }

    #[test]
    fn a_run_that_ended_early_or_a_failed_test_leaves_checks_not_checked() {
        let run = TempRun::new(Machine::Microvm);
        let checks = host_checks(&run.0, &report(&["@janus abort kind=panic"]), None, "");
        assert!(
            checks.iter().all(|c| c.status == CheckStatus::NotChecked),
            "{checks:#?}"
        );
        let r = report(&[
            "@janus test virtio-blk-read pass",
            "@janus test virtio-net-gateway fail reason=no-device",
            "@janus test virtio-console fail reason=no-port",
            DONE,
        ]);
        let checks = host_checks(&run.0, &r, None, "");
        assert_eq!(
            find(&checks, ECHO_CHECK),
            (
                CheckStatus::NotChecked,
                "the kernel never printed `@janus net-echo ready`; its test virtio-net-gateway \
                 (reason=no-device) failed"
                    .into()
            )
        );
        assert_eq!(
            find(&checks, CONSOLE_CHECK),
            (
                CheckStatus::NotChecked,
                "the kernel's test virtio-console (reason=no-port) failed".into()
            )
        );
        assert_eq!(find(&checks, DISK_CHECK).0, CheckStatus::Passed);
    }

    #[test]
    fn the_users_own_net_echo_is_not_held_against_the_kernel() {
        let run = TempRun::new(Machine::Q35);
        let checks = host_checks(&run.0, &report(&[DONE]), None, "log=debug net-echo=0");
        assert_eq!(
            find(&checks, ECHO_CHECK),
            (
                CheckStatus::NotChecked,
                "the kernel never printed `@janus net-echo ready` with the command line's \
                 net-echo=0"
                    .into()
            )
        );
    }

    #[test]
    fn a_failed_echo_fails_its_check() {
        let run = TempRun::new(Machine::Microvm);
        let lossy = EchoResult {
            intact: 15,
            lost: vec![3],
            ..echoed()
        };
        let checks = host_checks(&run.0, &report(&[DONE]), Some(&lossy), "");
        let (status, detail) = find(&checks, ECHO_CHECK);
        assert_eq!(status, CheckStatus::Failed);
        assert!(
            detail.starts_with("15/16 datagrams echoed intact"),
            "{detail}"
        );
        assert!(detail.contains("not echoed intact: #3 (100 B)"), "{detail}");
    }

    #[test]
    fn a_passed_write_test_whose_data_never_arrived_fails_the_disk_check() {
        let run = TempRun::new(Machine::Microvm);
        let r = report(&["@janus test virtio-blk-write pass", DONE]);
        let (status, detail) = find(&host_checks(&run.0, &r, None, ""), DISK_CHECK);
        assert_eq!(status, CheckStatus::Failed);
        assert!(detail.starts_with("LBA 6144 holds host data"), "{detail}");
    }

    #[test]
    fn the_console_check_needs_the_nonce_in_the_file() {
        let run = TempRun::new(Machine::Microvm);
        let passed = report(&[
            "@janus test virtio-console pass nonce=00112233deadbeef",
            DONE,
        ]);
        let (status, detail) = find(&host_checks(&run.0, &passed, None, ""), CONSOLE_CHECK);
        assert_eq!(status, CheckStatus::Failed);
        assert!(detail.starts_with("cannot read "), "{detail}");
        fs::write(run.0.virtcon(), "").unwrap();
        let (_, detail) = find(&host_checks(&run.0, &passed, None, ""), CONSOLE_CHECK);
        assert!(detail.contains("virtcon.log is empty"), "{detail}");
        let no_nonce = report(&["@janus test virtio-console pass", DONE]);
        let (status, detail) = find(&host_checks(&run.0, &no_nonce, None, ""), CONSOLE_CHECK);
        assert_eq!(status, CheckStatus::Failed);
        assert!(detail.contains("carries no nonce="), "{detail}");
    }

    #[test]
    fn host_check_lines_say_how_they_came_out() {
        let line = |status| HostCheck::new(ECHO_CHECK, status, "x").to_string();
        assert_eq!(line(CheckStatus::Passed), "host: udp echo: x");
        assert_eq!(line(CheckStatus::Failed), "host: udp echo FAILED: x");
        assert_eq!(
            line(CheckStatus::NotChecked),
            "host: udp echo not checked: x"
        );
    }

    #[test]
    fn a_passing_run_removes_its_directory_and_a_failing_one_keeps_it() {
        let run = TempRun::new(Machine::Microvm);
        let kept = keep_or_remove(&run.0.dir, false).unwrap();
        assert!(kept.contains(&run.0.dir.display().to_string()), "{kept}");
        assert!(run.0.dir.is_dir());
        assert_eq!(keep_or_remove(&run.0.dir, true), None);
        assert!(!run.0.dir.exists());
        assert_eq!(keep_or_remove(&run.0.dir, true), None, "already gone");
    }
}
