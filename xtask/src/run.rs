//! `cargo xtask run`: boot the kernel once under QEMU and judge the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Failure;
use crate::host;
use crate::qemu::{Env, Kvm, Machine, MemSize, RunConfig, Stream};
use crate::report::{self, Record, Report};
use crate::symbolize::Symbolizer;
use crate::workspace::Workspace;

/// Boots the kernel under QEMU, streams the console, symbolizes fault backtraces and ends
/// with a one-line verdict. Exit status: 0 all passed, 1 a test failed, 2 panic, fault,
/// timeout, no output or an unexpected QEMU status.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Env::Auto)]
    pub env: Env,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    pub machine: Machine,
    /// Guest RAM, like QEMU's -m: 128M, 3G.
    #[arg(long, default_value = "128M")]
    pub mem: MemSize,
    /// Kernel command line.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub cmdline: String,
    /// Seconds before QEMU is killed.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Boot this ELF instead of building the kernel.
    #[arg(long)]
    pub image: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<u8, Failure> {
    let resolved = args.env.resolve(&Kvm::probe())?;
    if args.env == Env::Auto {
        println!("env: {} ({})", resolved.accel, resolved.why);
    }
    host::ensure(&host::QEMU)?;
    if args.machine.firmware().is_some() {
        host::ensure(&host::QBOOT)?;
    }
    let workspace = Workspace::locate()?;
    let image = match &args.image {
        Some(image) => image.clone(),
        None => workspace.build_kernel()?,
    };
    let config = RunConfig {
        accel: resolved.accel,
        machine: args.machine,
        mem: args.mem,
        cmdline: args.cmdline.clone(),
        image,
        timeout: Duration::from_secs(args.timeout),
    };
    println!("running: {}", host::command_line(&config.command()));
    let mut console = Console::new(&config.image, &workspace.root);
    let outcome = config.run(&mut |stream, line| console.show(stream, line))?;
    let report = Report::from_lines(&outcome.console);
    let verdict = report::verdict(&config.label(), &config.cmdline, &outcome, &report);
    println!("{verdict}");
    Ok(verdict.exit_code())
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

    fn show(&mut self, stream: Stream, line: &str) {
        if stream == Stream::Qemu {
            eprintln!("{line}");
            return;
        }
        if let Some(frame) = report::parse_backtrace_frame(line) {
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
        if let Some(Ok(Record::Abort(abort))) = report::parse_line(line)
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
