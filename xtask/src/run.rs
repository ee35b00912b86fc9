//! `cargo xtask run`: boot the kernel once under QEMU and judge the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Failure;
use crate::devices;
use crate::host;
use crate::qemu::{Env, Guest, Kvm, Machine, MemSize, RunConfig, Stream};
use crate::report::{self, Record, Report};
use crate::symbolize::Symbolizer;
use crate::workspace::Workspace;
use crate::xen;

/// Boots the kernel under QEMU with its paravirtual I/O devices, streams the console,
/// symbolizes fault backtraces, checks on the host what the kernel did with the devices and
/// ends with a one-line verdict. Exit status: 0 all passed, 1 a test or a host check
/// failed, 2 panic, fault, timeout, no output or an unexpected QEMU status.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Env::Auto)]
    pub env: Env,
    /// QEMU machine type [default: microvm; pc with --env xen-pvh and xen-pv].
    #[arg(long, value_enum)]
    pub machine: Option<Machine>,
    /// Machine RAM, like QEMU's -m: 128M, 3G [default: 128M; 1G with --env xen-pvh and
    /// xen-pv].
    #[arg(long)]
    pub mem: Option<MemSize>,
    /// Kernel command line.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub cmdline: String,
    /// Seconds before QEMU is killed.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Boot this ELF instead of building the kernel.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Attach no virtio devices and no ATA disk (under Xen there are none anyway).
    #[arg(long)]
    pub no_devices: bool,
}

pub fn run(args: &Args) -> Result<u8, Failure> {
    let resolved = args.env.resolve(&Kvm::probe())?;
    if let Some(dom0) = args.env.xen_dom0() {
        println!("env: {} ({})", dom0.env_name(), resolved.why);
    } else if args.env == Env::Auto {
        println!("env: {} ({})", resolved.accel, resolved.why);
    }
    host::ensure(&host::QEMU)?;
    let workspace = Workspace::locate()?;
    let image = match &args.image {
        Some(image) => image.clone(),
        None => workspace.build_kernel()?,
    };
    let mut config = match args.env.xen_dom0() {
        Some(dom0) => {
            let xen = xen::fetch::ensure(&xen::fetch::Cache::in_target(&workspace.target_dir))?;
            RunConfig::xen(dom0, xen, image)
        }
        None => RunConfig::new(resolved.accel, Machine::Microvm, image),
    };
    if let Some(machine) = args.machine {
        config.machine = machine;
    }
    if let Some(mem) = args.mem {
        config.mem = mem;
    }
    config.cmdline = args.cmdline.clone();
    config.timeout = Duration::from_secs(args.timeout);
    if args.no_devices {
        config.devices = false;
    }
    config.check()?;
    if config.firmware().is_some() {
        host::ensure(&host::QBOOT)?;
    }
    config.prepare_devices_under(&workspace.target_dir.join(devices::ROOT_DIR))?;
    println!("{}", devices_line(&config));
    println!("running: {}", host::command_line(&config.command()));
    let mut console = Console::new(&config.image, &workspace.root);
    let outcome = config.run(&mut |stream, line| console.show(stream, line))?;
    let report = Report::from_lines(&outcome.console);
    for check in &outcome.host_checks {
        println!("{check}");
    }
    let verdict = config.verdict(&outcome, &report);
    if let Some(dir) = &outcome.io_dir
        && let Some(line) = devices::keep_or_remove(dir, verdict.exit_code() == 0)
    {
        println!("{line}");
    }
    println!("{verdict}");
    Ok(verdict.exit_code())
}

/// The one line that tells the user which devices the run attaches.
fn devices_line(config: &RunConfig) -> String {
    match (config.attached(), &config.guest) {
        (Some(io), _) => io.describe(),
        (None, Guest::Xen { dom0, .. }) => format!(
            "devices: none (--env {}: Janus has no Xen PV device drivers)",
            dom0.env_name()
        ),
        (None, Guest::Direct) => "devices: none (--no-devices)".to_string(),
    }
}

/// Prints the run as it happens, adding source locations to fault addresses.
struct Console<'a> {
    image: &'a Path,
    source_root: &'a Path,
    /// Loaded at the first address to resolve: most runs have none.
    symbolizer: Option<Result<Symbolizer, String>>,
}

impl<'a> Console<'a> {
    fn new(image: &'a Path, source_root: &'a Path) -> Console<'a> {
        Console {
            image,
            source_root,
            symbolizer: None,
        }
    }

    /// Prints `line` as it came, with symbols added to fault lines, which under Xen may
    /// carry Xen's prefix.
    fn show(&mut self, stream: Stream, line: &str) {
        if stream == Stream::Qemu {
            eprintln!("{line}");
            return;
        }
        let text = xen::console::split_prefix(line).1;
        if let Some(frame) = report::parse_backtrace_frame(text) {
            // Frame 0 is where the fault happened; deeper frames are return addresses.
            let symbol = match self.symbolizer() {
                Ok(s) if frame.index == 0 => s.lookup(frame.address).map(|s| s.to_string()),
                Ok(s) => s
                    .lookup_return_address(frame.address)
                    .map(|s| s.to_string()),
                Err(e) => Some(format!("(not symbolized: {e})")),
            };
            println!("{line} {}", symbol.as_deref().unwrap_or("??"));
            return;
        }
        println!("{line}");
        if let Some(Ok(Record::Abort(abort))) = report::parse_line(text)
            && let Some(rip) = abort.rip()
        {
            let symbol = match self.symbolizer() {
                Ok(s) => s
                    .lookup(rip)
                    .map_or_else(|| "??".to_string(), |s| s.to_string()),
                Err(e) => format!("(not symbolized: {e})"),
            };
            println!("  rip {rip:#018x} = {symbol}");
        }
    }

    fn symbolizer(&mut self) -> Result<&Symbolizer, &str> {
        let (image, root) = (self.image, self.source_root);
        self.symbolizer
            .get_or_insert_with(|| {
                Symbolizer::load(image)
                    .map(|s| s.relative_to(root))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}
