//! Booting the kernel under QEMU: which environment, which machine, the command line, and a
//! run that streams the console and enforces a timeout.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::devices::udp_echo::{EchoThread, Patience};
use crate::devices::{self, Attachment, HostCheck};
use crate::host;
use crate::report::{self, Report, Verdict};
use crate::xen;

/// The QEMU binary, looked up on `PATH`.
pub const PROGRAM: &str = "qemu-system-x86_64";

/// Firmware for `-M pc` / `-M q35`: SeaBIOS takes 3.6–5 s under this project's KVM, qboot
/// 0.15 s (ENVIRONMENTS.md).
pub const QBOOT_ROM: &str = "/usr/share/qemu/qboot.rom";

/// The KVM device whose read-write open decides whether KVM is usable.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// The isa-debug-exit port the kernel writes its exit value to (DESIGN.md, output contract).
pub const DEBUG_EXIT_IOBASE: u16 = 0xf4;

/// Where the kernel should run, as the user asks for it on the command line.
///
/// New environments become new variants here, resolved in [`Env::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Env {
    /// KVM when /dev/kvm opens read-write, TCG otherwise.
    Auto,
    /// QEMU with KVM; fails when /dev/kvm does not open.
    Kvm,
    /// QEMU's software emulation (TCG).
    Tcg,
    /// Xen 4.17 under QEMU TCG, the kernel as its PVH dom0.
    XenPvh,
    /// Xen 4.17 under QEMU TCG, the kernel as its classic PV dom0.
    XenPv,
}

/// QEMU's accelerator: what an [`Env`] resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The `-cpu` value.
    pub fn cpu(self) -> &'static str {
        match self {
            // Under this project's KVM (kvm_pvm) `-cpu host` and `-cpu max` abort with
            // "failed to set MSR 0x10a" (IA32_ARCH_CAPABILITIES); dropping that MSR works
            // (ENVIRONMENTS.md).
            Accel::Kvm => "host,-arch-capabilities",
            Accel::Tcg => "max",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether KVM can be used on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kvm {
    /// /dev/kvm opens read-write.
    Opens,
    /// It does not; the reason is the OS error, e.g. "No such file or directory".
    DoesNotOpen(String),
}

impl Kvm {
    /// Opens /dev/kvm read-write, which is exactly what QEMU needs to use it.
    pub fn probe() -> Kvm {
        Kvm::probe_device(Path::new(KVM_DEVICE))
    }

    fn probe_device(path: &Path) -> Kvm {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(_) => Kvm::Opens,
            Err(e) => Kvm::DoesNotOpen(host::io_reason(&e)),
        }
    }
}

/// An [`Env`] resolved on this host, with the reason for the choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub accel: Accel,
    pub why: String,
}

/// An environment that cannot run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvError {
    KvmUnavailable { reason: String },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::KvmUnavailable { reason } => write!(
                f,
                "--env kvm needs {KVM_DEVICE}, which does not open read-write here ({reason}); \
                 use --env tcg, or --env auto to take KVM only where it works"
            ),
        }
    }
}

impl std::error::Error for EnvError {}

impl Env {
    /// How Xen boots the kernel in this environment; `None` where QEMU boots it directly.
    pub fn xen_dom0(self) -> Option<xen::Dom0> {
        match self {
            Env::XenPvh => Some(xen::Dom0::Pvh),
            Env::XenPv => Some(xen::Dom0::Pv),
            Env::Auto | Env::Kvm | Env::Tcg => None,
        }
    }

    /// Picks the accelerator; `kvm` never falls back silently to TCG.
    pub fn resolve(self, kvm: &Kvm) -> Result<Resolved, EnvError> {
        match (self, kvm) {
            (Env::Tcg, _) => Ok(Resolved {
                accel: Accel::Tcg,
                why: "asked for with --env tcg".into(),
            }),
            // A PVH dom0 needs SVM or VT-x with nested paging in Xen's CPU, which this
            // project's KVM (kvm_pvm) does not offer and QEMU's emulation does; Xen itself,
            // for a PV dom0 too, fails there on its CET instructions (ENVIRONMENTS.md).
            (Env::XenPvh, _) => Ok(Resolved {
                accel: Accel::Tcg,
                why: "Xen runs under TCG: it needs SVM with nested paging".into(),
            }),
            (Env::XenPv, _) => Ok(Resolved {
                accel: Accel::Tcg,
                why: "Xen runs under TCG: shadow-paging KVM (kvm_pvm) fails on its CET \
                      instructions"
                    .into(),
            }),
            (Env::Kvm | Env::Auto, Kvm::Opens) => Ok(Resolved {
                accel: Accel::Kvm,
                why: format!("{KVM_DEVICE} opens read-write"),
            }),
            (Env::Auto, Kvm::DoesNotOpen(reason)) => Ok(Resolved {
                accel: Accel::Tcg,
                why: format!("{KVM_DEVICE} does not open: {reason}"),
            }),
            (Env::Kvm, Kvm::DoesNotOpen(reason)) => Err(EnvError::KvmUnavailable {
                reason: reason.clone(),
            }),
        }
    }
}

/// QEMU's machine type (`-M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Machine {
    /// Minimal virtio-mmio machine, no PCI, no firmware.
    Microvm,
    /// i440FX PC, booted through qboot (SeaBIOS under Xen).
    Pc,
    /// Q35 PC with PCIe, booted through qboot (SeaBIOS under Xen).
    Q35,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }

    /// The `-bios` image this machine boots with, when not QEMU's default.
    pub fn firmware(self) -> Option<&'static str> {
        match self {
            Machine::Microvm => None,
            Machine::Pc | Machine::Q35 => Some(QBOOT_ROM),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Guest RAM in MiB, written like QEMU's `-m`: `128M`, `3G`, or a bare number of MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSize {
    mib: u64,
}

impl MemSize {
    pub const fn from_mib(mib: u64) -> MemSize {
        MemSize { mib }
    }

    pub fn mib(self) -> u64 {
        self.mib
    }
}

impl FromStr for MemSize {
    type Err = String;

    fn from_str(s: &str) -> Result<MemSize, String> {
        let bad = || format!("'{s}' is not a memory size; write it like 128M or 3G");
        let (digits, scale) = match s.as_bytes().last() {
            Some(b'M' | b'm') => (&s[..s.len() - 1], 1),
            Some(b'G' | b'g') => (&s[..s.len() - 1], 1024),
            _ => (s, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let mib = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .ok_or_else(bad)?;
        if mib == 0 {
            return Err(format!("memory size '{s}' is zero; give at least 16M"));
        }
        Ok(MemSize { mib })
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

/// What QEMU loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guest {
    /// The kernel, through QEMU's own PVH loader (`-kernel`).
    Direct,
    /// Xen, through QEMU's multiboot loader; Xen boots the kernel as its dom0.
    Xen {
        /// The uncompressed hypervisor ELF.
        xen: PathBuf,
        /// PVH or classic PV.
        dom0: xen::Dom0,
    },
}

/// A run that cannot be set up as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Xen on a machine QEMU cannot boot it on.
    XenMachine { dom0: xen::Dom0, machine: Machine },
    /// An image path Xen would cut at the space.
    XenImagePath { dom0: xen::Dom0, image: PathBuf },
    /// A command line Xen would cut short.
    XenCmdline { dom0: xen::Dom0, len: usize },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::XenMachine { dom0, machine } => write!(
                f,
                "--env {} runs on --machine pc or q35, not {machine}: QEMU boots Xen \
                 through its multiboot loader, which -M {machine} lacks",
                dom0.env_name()
            ),
            ConfigError::XenImagePath { dom0, image } => write!(
                f,
                "--env {} hands the image to Xen as `-initrd \"<image> <cmdline>\"`, \
                 where a space ends the path, and {} has one; copy the image to a path \
                 without spaces",
                dom0.env_name(),
                image.display()
            ),
            ConfigError::XenCmdline { dom0, len } => write!(
                f,
                "--env {} passes at most {} bytes of command line to dom0 and drops the \
                 rest without a word; this one has {len}",
                dom0.env_name(),
                xen::MAX_CMDLINE
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Everything one boot needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    pub accel: Accel,
    pub machine: Machine,
    pub mem: MemSize,
    /// The kernel command line: QEMU's `-append`, or under Xen the tail of dom0's module.
    pub cmdline: String,
    /// The kernel ELF.
    pub image: PathBuf,
    /// QEMU is killed when the run takes longer.
    pub timeout: Duration,
    pub guest: Guest,
    /// The host's wall clock in seconds since the Unix epoch, appended to the command line
    /// as `host-time=` for the kernel's wall-clock self-test; [`RunConfig::run`] sets it at
    /// launch.
    pub host_time: Option<u64>,
    /// Whether QEMU attaches the paravirtual I/O devices ([`devices`]). Only a kernel QEMU
    /// boots directly gets them: Janus has no Xen PV device drivers, so Xen runs never do.
    pub devices: bool,
    /// The attached devices' files and port: made by [`RunConfig::prepare_devices`], or by
    /// [`RunConfig::run`] at launch.
    pub io: Option<Attachment>,
}

impl RunConfig {
    pub const DEFAULT_MEM: MemSize = MemSize::from_mib(128);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// A run of the kernel alone with the default memory, empty command line and default
    /// timeout.
    pub fn new(accel: Accel, machine: Machine, image: PathBuf) -> RunConfig {
        RunConfig {
            accel,
            machine,
            mem: RunConfig::DEFAULT_MEM,
            cmdline: String::new(),
            image,
            timeout: RunConfig::DEFAULT_TIMEOUT,
            guest: Guest::Direct,
            host_time: None,
            devices: true,
            io: None,
        }
    }

    /// A run of the kernel as Xen's dom0 on the machine ENVIRONMENTS.md verified: TCG,
    /// `pc`, 1 GiB, no devices.
    pub fn xen(dom0: xen::Dom0, xen: PathBuf, image: PathBuf) -> RunConfig {
        RunConfig {
            mem: xen::DEFAULT_MEM,
            guest: Guest::Xen { xen, dom0 },
            devices: false,
            ..RunConfig::new(Accel::Tcg, Machine::Pc, image)
        }
    }

    /// Refuses what QEMU or Xen would misread.
    pub fn check(&self) -> Result<(), ConfigError> {
        let Guest::Xen { dom0, .. } = self.guest else {
            return Ok(());
        };
        // Checked: QEMU 7.2 with -M microvm hangs silently on a multiboot kernel.
        if self.machine == Machine::Microvm {
            Err(ConfigError::XenMachine {
                dom0,
                machine: self.machine,
            })
        } else if xen::path_has_space(&self.image) {
            Err(ConfigError::XenImagePath {
                dom0,
                image: self.image.clone(),
            })
        } else if self.kernel_cmdline().len() > xen::MAX_CMDLINE {
            Err(ConfigError::XenCmdline {
                dom0,
                len: self.kernel_cmdline().len(),
            })
        } else {
            Ok(())
        }
    }

    /// What the kernel gets: the user's command line, then `host-time=`, and
    /// `net-echo=` when the devices are attached, each unless the user gave one.
    pub fn kernel_cmdline(&self) -> String {
        let mut line = self.cmdline.clone();
        let mut add = |key: &str, value: String| {
            if !devices::cmdline_has(&self.cmdline, key) {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&format!("{key}={value}"));
            }
        };
        if let Some(secs) = self.host_time {
            add("host-time", secs.to_string());
        }
        if self.attached().is_some() {
            add(
                devices::NET_ECHO_KEY,
                devices::NET_ECHO_WAIT_SECS.to_string(),
            );
        }
        line
    }

    /// The devices this run attaches: none under Xen, with `devices` off, or before they
    /// are prepared.
    pub fn attached(&self) -> Option<&Attachment> {
        match self.guest {
            Guest::Direct if self.devices => self.io.as_ref(),
            _ => None,
        }
    }

    /// Creates the devices' files in a fresh directory under `<target>/janus-io` and picks
    /// the echo port, unless this run attaches no devices or they are prepared already.
    pub fn prepare_devices(&mut self) -> Result<(), devices::SetupError> {
        if !self.wants_devices() {
            return Ok(());
        }
        self.prepare_devices_under(&devices::default_root()?)
    }

    /// [`RunConfig::prepare_devices`] with the files under `root`.
    pub fn prepare_devices_under(&mut self, root: &Path) -> Result<(), devices::SetupError> {
        if self.wants_devices() {
            self.io = Some(Attachment::create(root, &self.label(), self.machine)?);
        }
        Ok(())
    }

    fn wants_devices(&self) -> bool {
        self.devices && self.guest == Guest::Direct && self.io.is_none()
    }

    /// The environment as verdicts name it, e.g. `tcg/microvm`, `xen-pvh/pc`, `xen-pv/q35`.
    pub fn label(&self) -> String {
        match self.guest {
            Guest::Direct => format!("{}/{}", self.accel, self.machine),
            Guest::Xen { dom0, .. } => format!("{}/{}", dom0.env_name(), self.machine),
        }
    }

    /// The `-bios` image, when not QEMU's default.
    pub fn firmware(&self) -> Option<&'static str> {
        match self.guest {
            Guest::Direct => self.machine.firmware(),
            // qboot has no multiboot loader: QEMU exits at once without a word.
            Guest::Xen { .. } => None,
        }
    }

    /// The QEMU command; stdio is set up by [`RunConfig::run`].
    pub fn command(&self) -> Command {
        let mut command = Command::new(PROGRAM);
        command
            .args(["-accel", self.accel.name()])
            .args(["-M", self.machine.name()])
            .arg("-m")
            .arg(self.mem.to_string());
        match &self.guest {
            Guest::Direct => {
                command.args(["-cpu", self.accel.cpu()]);
            }
            Guest::Xen { dom0, .. } => {
                if let Some(cpu) = dom0.cpu() {
                    command.args(["-cpu", cpu]);
                }
                // No VGA, NIC or disks: nothing for Xen to set up or to hand to dom0.
                command.arg("-nodefaults");
            }
        }
        command
            // Checked on microvm, pc and q35, and with -nodefaults: with no display and no
            // monitor, `-serial stdio` puts COM1, and only COM1, on QEMU's stdout.
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-no-reboot");
        match &self.guest {
            Guest::Direct => command
                .arg("-kernel")
                .arg(&self.image)
                .arg("-append")
                .arg(self.kernel_cmdline()),
            Guest::Xen { xen, dom0 } => command
                .arg("-kernel")
                .arg(xen)
                .arg("-initrd")
                .arg(xen::dom0_module(&self.image, &self.kernel_cmdline()))
                .arg("-append")
                .arg(dom0.options()),
        };
        command.arg("-device").arg(format!(
            "isa-debug-exit,iobase={DEBUG_EXIT_IOBASE:#x},iosize=4"
        ));
        if let Some(firmware) = self.firmware() {
            command.args(["-bios", firmware]);
        }
        if let Some(io) = self.attached() {
            command.args(io.qemu_args());
        }
        command
    }

    /// Boots, handing each output line to `sink` as it arrives, and kills QEMU at the
    /// timeout, or shortly after a line that says the machine will not stop by itself.
    ///
    /// With devices, prepares them unless done already, answers the kernel's
    /// `@janus net-echo ready` with the UDP echo exchange, and after QEMU exits fills the
    /// outcome's [`Outcome::host_checks`] and [`Outcome::io_dir`]; the caller removes or
    /// keeps that directory ([`devices::keep_or_remove`]). When QEMU cannot be run, the
    /// directory is removed, whoever prepared it: it holds nothing a boot wrote.
    pub fn run(&self, sink: &mut dyn FnMut(Stream, &str)) -> Result<Outcome, RunError> {
        let mut launch = RunConfig {
            host_time: self.host_time.or_else(host::unix_time),
            ..self.clone()
        };
        let result = launch
            .check()
            .map_err(RunError::Config)
            .and_then(|()| launch.prepare_devices().map_err(RunError::Devices))
            .and_then(|()| launch.run_prepared(sink));
        if result.is_err()
            && let Some(io) = launch.attached()
        {
            let _ = std::fs::remove_dir_all(&io.dir);
        }
        result
    }

    fn run_prepared(&self, sink: &mut dyn FnMut(Stream, &str)) -> Result<Outcome, RunError> {
        let ends_run = |stream: Stream, line: &str| match (stream, &self.guest) {
            (Stream::Console, Guest::Xen { .. }) => xen::console::terminal(line).is_some(),
            (Stream::Qemu, _) => kvm_internal_error(line),
            (Stream::Console, Guest::Direct) => false,
        };
        let io = self.attached();
        let mut echo: Option<EchoThread> = None;
        let mut watch = |stream: Stream, line: &str| {
            sink(stream, line);
            if let Some(io) = io
                && echo.is_none()
                && stream == Stream::Console
                && devices::is_echo_ready(line)
            {
                echo = Some(EchoThread::spawn(io.echo_target(), Patience::default()));
            }
        };
        let mut outcome = run_with_timeout(self.command(), self.timeout, &ends_run, &mut watch)?;
        let echo = echo.map(EchoThread::finish);
        if let Some(io) = io {
            let report = Report::from_lines(&outcome.console);
            outcome.host_checks = devices::host_checks(io, &report, echo.as_ref(), &self.cmdline);
            outcome.io_dir = Some(io.dir.clone());
        }
        Ok(outcome)
    }

    /// The verdict on a run of this configuration.
    pub fn verdict(&self, outcome: &Outcome, report: &Report) -> Verdict {
        let label = self.label();
        match self.guest {
            Guest::Direct => report::verdict(&label, &self.cmdline, outcome, report),
            Guest::Xen { .. } => xen::console::verdict(&label, &self.cmdline, outcome, report),
        }
    }
}

/// How QEMU's stderr line starts when KVM cannot go on with the guest (an instruction it
/// could not emulate, under this machine kind's `kvm_pvm`); QEMU then pauses the guest
/// instead of exiting, so only the timeout would end the run.
const KVM_INTERNAL_ERROR: &str = "KVM internal error";

/// Whether QEMU's `line` says KVM could not go on with the guest.
pub fn kvm_internal_error(line: &str) -> bool {
    line.contains(KVM_INTERNAL_ERROR)
}

/// Where an output line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The guest's serial console (QEMU's stdout).
    Console,
    /// QEMU's own messages (its stderr).
    Qemu,
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// QEMU's exit status; `None` when it was killed by a signal (including by the timeout).
    pub status: Option<i32>,
    /// Set to the limit when QEMU was killed for running too long.
    pub timed_out_after: Option<Duration>,
    /// The console line after which QEMU was killed, [`END_GRACE`] later, because the
    /// machine would never have stopped by itself.
    pub ended_early: Option<String>,
    /// Console lines, without line endings.
    pub console: Vec<String>,
    /// QEMU's stderr lines.
    pub stderr: Vec<String>,
    /// The host's checks of the attached devices, in the order they ran; empty without
    /// devices.
    pub host_checks: Vec<HostCheck>,
    /// The run's device directory, when devices were attached.
    pub io_dir: Option<PathBuf>,
}

impl Outcome {
    /// The last console line with any text on it.
    pub fn last_console_line(&self) -> Option<&str> {
        self.console
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    }
}

/// QEMU could not be run at all.
#[derive(Debug)]
pub enum RunError {
    Config(ConfigError),
    Devices(devices::SetupError),
    Spawn { program: String, source: io::Error },
    Wait(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Config(e) => e.fmt(f),
            RunError::Devices(e) => e.fmt(f),
            RunError::Spawn { program, source } => write!(
                f,
                "cannot start {program}: {source}; `cargo xtask run` installs QEMU when run as root"
            ),
            RunError::Wait(e) => write!(f, "lost track of QEMU: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// How long the output is still read after a line that ends the run: the lines that say
/// why (a panic's reason, a register dump) follow within milliseconds.
pub const END_GRACE: Duration = Duration::from_secs(1);

enum Event {
    Line(Stream, String),
    Closed,
}

/// Runs `command` with stdin closed, streaming its stdout and stderr lines to `sink`, and
/// kills it once `timeout` has passed, or [`END_GRACE`] after a line for which `ends_run`
/// holds.
pub fn run_with_timeout(
    mut command: Command,
    timeout: Duration,
    ends_run: &dyn Fn(Stream, &str) -> bool,
    sink: &mut dyn FnMut(Stream, &str),
) -> Result<Outcome, RunError> {
    let mut deadline = Instant::now() + timeout;
    let mut child = KillOnDrop(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RunError::Spawn {
                program: command.get_program().to_string_lossy().into_owned(),
                source,
            })?,
    );
    let (sender, events) = mpsc::channel();
    let readers = [
        child
            .0
            .stdout
            .take()
            .map(|out| forward_lines(out, Stream::Console, sender.clone())),
        child
            .0
            .stderr
            .take()
            .map(|err| forward_lines(err, Stream::Qemu, sender.clone())),
    ];
    drop(sender);

    let mut outcome = Outcome::default();
    let mut record = |outcome: &mut Outcome, stream, line: String| {
        sink(stream, &line);
        match stream {
            Stream::Console => outcome.console.push(line),
            Stream::Qemu => outcome.stderr.push(line),
        }
    };
    let mut open = readers.iter().flatten().count();
    while open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Line(stream, line)) => {
                if outcome.ended_early.is_none() && ends_run(stream, &line) {
                    outcome.ended_early = Some(line.clone());
                    deadline = deadline.min(Instant::now() + END_GRACE);
                }
                record(&mut outcome, stream, line);
            }
            Ok(Event::Closed) => open -= 1,
            // Whether QEMU is still running is decided below, not by the silence.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = match wait_until(&mut child.0, deadline).map_err(RunError::Wait)? {
        Some(status) => status,
        None => {
            if outcome.ended_early.is_none() {
                outcome.timed_out_after = Some(timeout);
            }
            // Killing closes the pipes, so the readers finish and the drain below ends.
            let _ = child.0.kill();
            child.0.wait().map_err(RunError::Wait)?
        }
    };
    // A partial last line (no newline before the kill) arrives only now.
    for event in events.iter() {
        if let Event::Line(stream, line) = event {
            record(&mut outcome, stream, line);
        }
    }
    for reader in readers.into_iter().flatten() {
        let _ = reader.join();
    }
    outcome.status = status.code();
    Ok(outcome)
}

/// Kills QEMU if the run is abandoned early (an error, or a panic in the line sink), so no
/// guest outlives the tool or the test that started it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls for the child's exit until `deadline`; `None` means it is still running.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> io::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn forward_lines(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    sender: Sender<Event>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while buf.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                        buf.pop();
                    }
                    // The guest may print anything; a stray byte must not end the run.
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if sender.send(Event::Line(stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sender.send(Event::Closed);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of(args: &[String], flag: &str) -> Option<String> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).cloned()
    }

    fn config(accel: Accel, machine: Machine) -> RunConfig {
        RunConfig::new(accel, machine, PathBuf::from("/tmp/janus"))
    }

    /// A run with its devices prepared at `/t/io` and port 40000, without touching the file
    /// system.
    fn with_devices(accel: Accel, machine: Machine) -> RunConfig {
        let mut c = config(accel, machine);
        c.io = Some(Attachment::at("/t/io", 40000, machine));
        c
    }

    #[test]
    fn tcg_microvm_command_is_exactly_the_documented_one() {
        let mut c = with_devices(Accel::Tcg, Machine::Microvm);
        c.cmdline = "selftest=fault log=debug".into();
        let command = c.command();
        assert_eq!(command.get_program(), PROGRAM);
        assert_eq!(
            args(&command),
            [
                "-accel",
                "tcg",
                "-M",
                "microvm",
                "-m",
                "128M",
                "-cpu",
                "max",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-kernel",
                "/tmp/janus",
                "-append",
                "selftest=fault log=debug net-echo=30",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=4",
                "-drive",
                "if=none,id=janus-disk,file=/t/io/disk.img,format=raw",
                "-device",
                "virtio-blk-device,drive=janus-disk",
                "-netdev",
                "user,id=janus-net,hostfwd=udp:127.0.0.1:40000-:7",
                "-device",
                "virtio-net-device,netdev=janus-net",
                "-device",
                "virtio-rng-device",
                "-device",
                "virtio-serial-device",
                "-chardev",
                "file,id=janus-vcon,path=/t/io/virtcon.log",
                "-device",
                "virtconsole,chardev=janus-vcon",
            ]
        );
    }

    #[test]
    fn tcg_pc_command_is_exactly_the_documented_one() {
        let c = with_devices(Accel::Tcg, Machine::Pc);
        assert_eq!(
            args(&c.command()),
            [
                "-accel",
                "tcg",
                "-M",
                "pc",
                "-m",
                "128M",
                "-cpu",
                "max",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-kernel",
                "/tmp/janus",
                "-append",
                "net-echo=30",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=4",
                "-bios",
                QBOOT_ROM,
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
    }

    /// q35: the pc command on `-M q35`, without the IDE disk (its controller is AHCI).
    #[test]
    fn kvm_q35_command_is_exactly_the_documented_one() {
        let c = with_devices(Accel::Kvm, Machine::Q35);
        assert_eq!(
            args(&c.command()),
            [
                "-accel",
                "kvm",
                "-M",
                "q35",
                "-m",
                "128M",
                "-cpu",
                "host,-arch-capabilities",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-kernel",
                "/tmp/janus",
                "-append",
                "net-echo=30",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=4",
                "-bios",
                QBOOT_ROM,
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
            ]
        );
    }

    #[test]
    fn without_devices_the_command_has_none_and_no_net_echo() {
        let mut c = with_devices(Accel::Tcg, Machine::Pc);
        c.devices = false;
        let a = args(&c.command());
        assert_eq!(value_of(&a, "-append").as_deref(), Some(""));
        assert_eq!(a.last().map(String::as_str), Some(QBOOT_ROM));
        assert!(
            !a.iter()
                .any(|x| x.contains("virtio") || x.contains("-drive"))
        );
        assert_eq!(c.attached(), None);
    }

    /// Xen runs attach nothing: Janus has no Xen PV device drivers.
    #[test]
    fn xen_runs_attach_no_devices_even_when_asked() {
        for dom0 in DOM0S {
            let mut c = xen_config(dom0);
            assert!(!c.devices);
            c.devices = true;
            c.io = Some(Attachment::at("/t/io", 40000, Machine::Pc));
            assert_eq!(c.attached(), None);
            let a = args(&c.command());
            assert!(
                !a.iter().any(|x| x.contains("virtio") || x == "-drive"),
                "{a:?}"
            );
            assert!(!c.kernel_cmdline().contains("net-echo"));
            let mut unprepared = xen_config(dom0);
            unprepared.devices = true;
            unprepared
                .prepare_devices_under(Path::new("/nonexistent/janus-io"))
                .unwrap();
            assert_eq!(unprepared.io, None);
        }
    }

    #[test]
    fn net_echo_follows_host_time_unless_the_user_gave_one() {
        let mut c = with_devices(Accel::Tcg, Machine::Microvm);
        c.host_time = Some(7);
        assert_eq!(c.kernel_cmdline(), "host-time=7 net-echo=30");
        c.cmdline = "log=debug".into();
        assert_eq!(c.kernel_cmdline(), "log=debug host-time=7 net-echo=30");
        c.cmdline = "net-echo=5 log=debug".into();
        assert_eq!(c.kernel_cmdline(), "net-echo=5 log=debug host-time=7");
        c.cmdline = "net-echoes=5".into();
        assert_eq!(c.kernel_cmdline(), "net-echoes=5 host-time=7 net-echo=30");
    }

    #[test]
    fn devices_are_prepared_once_and_only_when_attached() {
        let mut c = with_devices(Accel::Tcg, Machine::Pc);
        let before = c.io.clone();
        c.prepare_devices_under(Path::new("/nonexistent/janus-io"))
            .unwrap();
        assert_eq!(c.io, before, "a second call keeps what is there");
        let mut off = config(Accel::Tcg, Machine::Pc);
        off.devices = false;
        off.prepare_devices_under(Path::new("/nonexistent/janus-io"))
            .unwrap();
        assert_eq!(off.io, None);
        let mut on = config(Accel::Tcg, Machine::Pc);
        let err = on
            .prepare_devices_under(Path::new("/proc/janus-io"))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot create the directory /proc/janus-io: "),
            "{err}"
        );
    }

    const DOM0S: [xen::Dom0; 2] = [xen::Dom0::Pvh, xen::Dom0::Pv];

    fn xen_config(dom0: xen::Dom0) -> RunConfig {
        RunConfig::xen(
            dom0,
            PathBuf::from("/t/xen/xen.elf"),
            PathBuf::from("/t/janus"),
        )
    }

    #[test]
    fn xen_pvh_command_is_exactly_the_documented_one() {
        let mut c = xen_config(xen::Dom0::Pvh);
        c.cmdline = "log=debug seed=1".into();
        assert_eq!(
            args(&c.command()),
            [
                "-accel",
                "tcg",
                "-M",
                "pc",
                "-m",
                "1G",
                "-cpu",
                "qemu64,+npt",
                "-nodefaults",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-kernel",
                "/t/xen/xen.elf",
                "-initrd",
                "/t/janus log=debug seed=1",
                "-append",
                "console=com1 loglvl=all guest_loglvl=all console_timestamps=boot dom0=pvh \
                 dom0-iommu=none noreboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=4",
            ]
        );
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.label(), "xen-pvh/pc");
    }

    /// ENVIRONMENTS.md: the PVH command without `-cpu`, `dom0=pvh` and `dom0-iommu=none`.
    #[test]
    fn xen_pv_command_is_exactly_the_documented_one() {
        let mut c = xen_config(xen::Dom0::Pv);
        c.cmdline = "log=debug seed=1".into();
        assert_eq!(
            args(&c.command()),
            [
                "-accel",
                "tcg",
                "-M",
                "pc",
                "-m",
                "1G",
                "-nodefaults",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-kernel",
                "/t/xen/xen.elf",
                "-initrd",
                "/t/janus log=debug seed=1",
                "-append",
                "console=com1 loglvl=all guest_loglvl=all console_timestamps=boot noreboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=4",
            ]
        );
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.label(), "xen-pv/pc");
    }

    #[test]
    fn xen_escapes_commas_for_qemu() {
        for dom0 in DOM0S {
            let mut c = xen_config(dom0);
            c.cmdline = "opt=a,b".into();
            let a = args(&c.command());
            assert_eq!(
                value_of(&a, "-initrd").as_deref(),
                Some("/t/janus opt=a,,b"),
                "{dom0:?}"
            );
        }
    }

    #[test]
    fn xen_runs_on_pc_and_q35_with_seabios_only() {
        for dom0 in DOM0S {
            for machine in [Machine::Pc, Machine::Q35] {
                let mut c = xen_config(dom0);
                c.machine = machine;
                assert_eq!(c.check(), Ok(()), "{dom0:?} {machine}");
                assert!(!args(&c.command()).iter().any(|a| a == "-bios"));
            }
            let mut c = xen_config(dom0);
            c.machine = Machine::Microvm;
            let err = c.check().unwrap_err();
            assert_eq!(
                err,
                ConfigError::XenMachine {
                    dom0,
                    machine: Machine::Microvm
                }
            );
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("--env {} ", dom0.env_name())),
                "{message}"
            );
            assert!(message.contains("--machine pc or q35"), "{message}");
        }
    }

    #[test]
    fn xen_labels_name_the_dom0_and_the_machine() {
        use xen::Dom0::{Pv, Pvh};
        for (dom0, machine, label) in [
            (Pvh, Machine::Pc, "xen-pvh/pc"),
            (Pvh, Machine::Q35, "xen-pvh/q35"),
            (Pv, Machine::Pc, "xen-pv/pc"),
            (Pv, Machine::Q35, "xen-pv/q35"),
        ] {
            let mut c = xen_config(dom0);
            c.machine = machine;
            assert_eq!(c.label(), label);
        }
    }

    #[test]
    fn xen_refuses_an_image_path_with_a_space() {
        for dom0 in DOM0S {
            let mut c = xen_config(dom0);
            c.image = PathBuf::from("/my kernels/janus");
            let err = c.check().unwrap_err();
            assert!(err.to_string().contains("/my kernels/janus"), "{err}");
            assert!(err.to_string().contains(dom0.env_name()), "{err}");
            assert!(!err.to_string().contains('\n'));
            let err = c.run(&mut |_, _| {}).unwrap_err();
            assert!(matches!(err, RunError::Config(_)), "{err}");
        }
    }

    #[test]
    fn xen_refuses_a_cmdline_xen_would_cut() {
        for dom0 in DOM0S {
            let mut c = xen_config(dom0);
            c.cmdline = "x".repeat(xen::MAX_CMDLINE);
            assert_eq!(c.check(), Ok(()));
            c.cmdline.push('x');
            let err = c.check().unwrap_err();
            assert_eq!(err, ConfigError::XenCmdline { dom0, len: 1024 });
            assert!(err.to_string().contains("at most 1023 bytes"), "{err}");
        }
    }

    #[test]
    fn xen_envs_are_tcg_even_where_kvm_works() {
        for env in [Env::XenPvh, Env::XenPv] {
            let resolved = env.resolve(&Kvm::Opens).unwrap();
            assert_eq!(resolved.accel, Accel::Tcg, "{env:?}");
            assert!(resolved.why.starts_with("Xen runs under TCG"), "{env:?}");
        }
    }

    #[test]
    fn only_xen_envs_have_a_dom0() {
        assert_eq!(Env::XenPvh.xen_dom0(), Some(xen::Dom0::Pvh));
        assert_eq!(Env::XenPv.xen_dom0(), Some(xen::Dom0::Pv));
        for env in [Env::Auto, Env::Kvm, Env::Tcg] {
            assert_eq!(env.xen_dom0(), None, "{env:?}");
        }
    }

    #[test]
    fn kvm_uses_host_cpu_without_arch_capabilities() {
        let a = args(&config(Accel::Kvm, Machine::Microvm).command());
        assert_eq!(value_of(&a, "-accel").as_deref(), Some("kvm"));
        assert_eq!(
            value_of(&a, "-cpu").as_deref(),
            Some("host,-arch-capabilities")
        );
    }

    #[test]
    fn pc_and_q35_boot_through_qboot_and_microvm_does_not() {
        for machine in [Machine::Pc, Machine::Q35] {
            let a = args(&config(Accel::Tcg, machine).command());
            assert_eq!(value_of(&a, "-M").as_deref(), Some(machine.name()));
            assert_eq!(value_of(&a, "-bios").as_deref(), Some(QBOOT_ROM));
        }
        let a = args(&config(Accel::Kvm, Machine::Microvm).command());
        assert!(!a.iter().any(|x| x == "-bios"));
    }

    #[test]
    fn host_time_follows_the_user_command_line_unless_given() {
        let mut c = config(Accel::Tcg, Machine::Microvm);
        c.host_time = Some(1_795_264_496);
        assert_eq!(c.kernel_cmdline(), "host-time=1795264496");
        c.cmdline = "log=debug".into();
        assert_eq!(c.kernel_cmdline(), "log=debug host-time=1795264496");
        let a = args(&c.command());
        assert_eq!(
            value_of(&a, "-append").as_deref(),
            Some("log=debug host-time=1795264496")
        );
        c.cmdline = "host-time=5".into();
        assert_eq!(c.kernel_cmdline(), "host-time=5");
        let mut x = xen_config(xen::Dom0::Pv);
        x.host_time = Some(7);
        x.cmdline = "x".repeat(xen::MAX_CMDLINE - 5);
        assert!(x.check().is_err(), "host-time counts towards Xen's limit");
    }

    #[test]
    fn empty_cmdline_is_still_passed_as_an_argument() {
        let a = args(&config(Accel::Tcg, Machine::Microvm).command());
        assert_eq!(value_of(&a, "-append").as_deref(), Some(""));
    }

    #[test]
    fn label_names_accel_and_machine() {
        assert_eq!(config(Accel::Tcg, Machine::Microvm).label(), "tcg/microvm");
        assert_eq!(config(Accel::Kvm, Machine::Q35).label(), "kvm/q35");
    }

    #[test]
    fn mem_sizes_parse_like_qemu() {
        assert_eq!("128M".parse::<MemSize>().unwrap().mib(), 128);
        assert_eq!("128m".parse::<MemSize>().unwrap().mib(), 128);
        assert_eq!("3G".parse::<MemSize>().unwrap().mib(), 3072);
        assert_eq!("64".parse::<MemSize>().unwrap().mib(), 64);
        for bad in ["", "M", "12X", "-5M", "1.5G", "0M", "99999999999999999999G"] {
            assert!(bad.parse::<MemSize>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn mem_sizes_print_in_the_largest_whole_unit() {
        assert_eq!(MemSize::from_mib(3072).to_string(), "3G");
        assert_eq!(MemSize::from_mib(16).to_string(), "16M");
        assert_eq!(MemSize::from_mib(1536).to_string(), "1536M");
    }

    #[test]
    fn auto_takes_kvm_only_when_it_opens() {
        let kvm = Env::Auto.resolve(&Kvm::Opens).unwrap();
        assert_eq!(kvm.accel, Accel::Kvm);
        let tcg = Env::Auto
            .resolve(&Kvm::DoesNotOpen("No such file or directory".into()))
            .unwrap();
        assert_eq!(tcg.accel, Accel::Tcg);
        assert_eq!(tcg.why, "/dev/kvm does not open: No such file or directory");
    }

    #[test]
    fn kvm_without_dev_kvm_is_an_error_not_a_fallback() {
        let err = Env::Kvm
            .resolve(&Kvm::DoesNotOpen("Permission denied".into()))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("Permission denied"), "{message}");
        assert!(message.contains("--env tcg"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn tcg_is_tcg_even_where_kvm_works() {
        assert_eq!(Env::Tcg.resolve(&Kvm::Opens).unwrap().accel, Accel::Tcg);
    }

    #[test]
    fn kvm_probe_reports_why_the_device_does_not_open() {
        let missing = Kvm::probe_device(Path::new("/nonexistent/janus/kvm"));
        assert_eq!(
            missing,
            Kvm::DoesNotOpen("No such file or directory".into())
        );
        let file = std::env::temp_dir().join(format!("janus-kvm-probe-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let opens = Kvm::probe_device(&file);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(opens, Kvm::Opens);
    }

    fn shell(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn run_streams_both_outputs_and_returns_the_status() {
        let mut seen = Vec::new();
        let outcome = run_with_timeout(
            shell("printf 'one\\r\\ntwo\\n'; echo oops >&2; printf 'partial'; exit 33"),
            Duration::from_secs(10),
            &|_, _| false,
            &mut |stream, line| seen.push((stream, line.to_string())),
        )
        .unwrap();
        assert_eq!(outcome.status, Some(33));
        assert_eq!(outcome.timed_out_after, None);
        assert_eq!(outcome.console, ["one", "two", "partial"]);
        assert_eq!(outcome.stderr, ["oops"]);
        assert!(seen.contains(&(Stream::Console, "two".into())));
        assert!(seen.contains(&(Stream::Qemu, "oops".into())));
        assert_eq!(outcome.last_console_line(), Some("partial"));
    }

    #[test]
    fn run_kills_at_the_timeout_and_keeps_what_was_printed() {
        let start = Instant::now();
        let outcome = run_with_timeout(
            shell("echo started; exec sleep 30"),
            Duration::from_millis(300),
            &|_, _| false,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(outcome.timed_out_after, Some(Duration::from_millis(300)));
        assert_eq!(outcome.status, None);
        assert_eq!(outcome.console, ["started"]);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_panicking_sink_does_not_leave_the_guest_running() {
        let mut pid = None;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with_timeout(
                shell("echo $$; exec sleep 30"),
                Duration::from_secs(20),
                &|_, _| false,
                &mut |_, line| {
                    pid = Some(line.to_string());
                    panic!("sink gives up");
                },
            )
        }));
        assert!(result.is_err());
        let pid = pid.expect("the child printed its pid");
        assert!(
            !Path::new("/proc").join(&pid).exists(),
            "process {pid} is still there"
        );
    }

    #[test]
    fn a_line_that_ends_the_run_stops_qemu_after_the_grace() {
        let start = Instant::now();
        let outcome = run_with_timeout(
            shell("echo booting; echo FATAL; echo why; exec sleep 30"),
            Duration::from_secs(20),
            &|_, line| line == "FATAL",
            &mut |_, _| {},
        )
        .unwrap();
        let took = start.elapsed();
        assert_eq!(outcome.ended_early.as_deref(), Some("FATAL"));
        assert_eq!(outcome.timed_out_after, None);
        assert_eq!(outcome.status, None);
        assert_eq!(outcome.console, ["booting", "FATAL", "why"]);
        assert!(
            took >= END_GRACE && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[test]
    fn the_stream_decides_whether_a_line_ends_a_run() {
        let console_only = run_with_timeout(
            shell("echo FATAL >&2; exit 33"),
            Duration::from_secs(10),
            &|stream, line| stream == Stream::Console && line == "FATAL",
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(console_only.ended_early, None);
        assert_eq!(console_only.status, Some(33));
        let qemu_too = run_with_timeout(
            shell("echo FATAL >&2; exec sleep 30"),
            Duration::from_secs(20),
            &|stream, line| stream == Stream::Qemu && line == "FATAL",
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(qemu_too.ended_early.as_deref(), Some("FATAL"));
        assert_eq!(qemu_too.stderr, ["FATAL"]);
    }

    #[test]
    fn run_reports_a_missing_program() {
        let err = run_with_timeout(
            Command::new("/nonexistent/qemu-system-x86_64"),
            Duration::from_secs(1),
            &|_, _| false,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot start"), "{err}");
    }
}
