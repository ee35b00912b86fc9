//! `cargo xtask bench`: boots the kernel in every environment that runs here ([`matrix`]),
//! collects the `@janus bench` lines of each boot ([`results`]), boots Janus with nothing to
//! do and the Linux peer side by side for boot time ([`boot_time`], [`crate::linux`]),
//! answers the seeds' three claims from the numbers ([`claims`]) and writes
//! `target/janus-report/` ([`report`]: report.json, report.md and the [`chart`]s).
//! `--compare` lists what got worse since an earlier report ([`compare`]).

pub mod boot_time;
pub mod chart;
pub mod claims;
pub mod compare;
pub mod family;
pub mod host;
pub mod markdown;
pub mod matrix;
pub mod report;
pub mod results;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Failure;
use crate::devices;
use crate::host as host_tools;
use crate::linux;
use crate::qemu::{Kvm, Machine, RunConfig};
use crate::report::Report;
use crate::workspace::Workspace;
use crate::xen;
use boot_time::{BootComparison, JanusBoot, LinuxBoot};
use claims::Claims;
use matrix::{Matrix, Place, Target};
use report::{BenchReport, Environment, HostFacts, Skipped};
use results::{Row, Summary};

/// Boots the kernel in every environment available here (KVM where /dev/kvm opens, TCG,
/// Xen PVH and Xen PV), with a Linux guest beside each QEMU-booted one for boot time, and
/// writes report.json, report.md and SVG charts to target/janus-report/. Exit status: 0
/// every Janus boot passed (and nothing regressed against --compare), 1 one failed or a
/// benchmark regressed, 2 anything that stopped the run.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to run, repeatable or comma-separated [default: everything that runs here].
    #[arg(long = "env", value_enum, value_delimiter = ',')]
    pub envs: Vec<Place>,
    /// Machine types for kvm and tcg, repeatable or comma-separated; Xen runs on pc
    /// [default: microvm, pc, q35].
    #[arg(long = "machine", value_enum, value_delimiter = ',')]
    pub machines: Vec<Machine>,
    /// Boots of each environment; the report shows the spread between them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// An earlier report.json: list the benchmarks that got worse beyond the spread.
    #[arg(long, value_name = "OLD_JSON")]
    pub compare: Option<PathBuf>,
    /// Where to write the report [default: target/janus-report].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Boot no Linux peer (no boot-time ratio).
    #[arg(long)]
    pub no_linux: bool,
    /// Boot this ELF instead of building the kernel.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Seconds before one boot is killed (the Linux peer's at most 60).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// The kernel command line of the boot-time boots: boot, print `@janus done`, exit.
pub const BOOT_ONLY_CMDLINE: &str = "tests=off bench=off";

pub fn run(args: &Args) -> Result<u8, Failure> {
    let kvm = Kvm::probe();
    let matrix = Matrix::plan(&args.envs, &args.machines, &kvm)?;
    let earlier = args
        .compare
        .as_deref()
        .map(compare::Earlier::load)
        .transpose()?;
    host_tools::ensure(&host_tools::QEMU)?;
    if matrix
        .targets
        .iter()
        .any(|t| matches!(t, Target::Direct { machine, .. } if machine.firmware().is_some()))
    {
        host_tools::ensure(&host_tools::QBOOT)?;
    }
    let workspace = Workspace::locate()?;
    let image = match &args.image {
        Some(image) => image.clone(),
        None => workspace.build_kernel()?,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace.target_dir.join(report::DIR));
    let mut skipped: Vec<Skipped> = matrix
        .excluded
        .iter()
        .map(|e| Skipped {
            environment: e.environment.clone(),
            reason: e.reason.clone(),
        })
        .collect();
    for s in &skipped {
        println!("bench: {} not run: {}", s.environment, s.reason);
    }

    let xen_cache = xen::fetch::Cache::in_target(&workspace.target_dir);
    let mut targets = matrix.targets.clone();
    let mut xen_elf = None;
    if targets.iter().any(|t| matches!(t, Target::Xen { .. })) {
        match xen::fetch::ensure(&xen_cache) {
            Ok(elf) => xen_elf = Some(elf),
            Err(e) if !args.envs.is_empty() => return Err(e.into()),
            Err(e) => {
                println!("bench: the Xen environments are not run: {e}");
                targets.retain(|t| {
                    let xen = matches!(t, Target::Xen { .. });
                    if xen {
                        skipped.push(Skipped {
                            environment: t.label(),
                            reason: e.to_string(),
                        });
                    }
                    !xen
                });
            }
        }
    }
    let wants_linux = !args.no_linux && targets.iter().any(|t| matches!(t, Target::Direct { .. }));
    let peer: Result<Option<linux::Peer>, String> = if wants_linux {
        linux::ensure(&workspace.target_dir)
            .map(Some)
            .map_err(|e| e.to_string())
    } else {
        Ok(None)
    };
    if let Err(e) = &peer {
        println!("bench: no Linux peer, so no boot-time ratio: {e}");
    }

    let io_root = workspace.target_dir.join(devices::ROOT_DIR);
    let steps_per_run: u64 = targets
        .iter()
        .map(|t| match (t, &peer) {
            (Target::Direct { .. }, Ok(Some(_))) => 3,
            _ => 2,
        })
        .sum();
    let progress = Progress::new(steps_per_run * u64::from(args.runs));
    let started = host_tools::unix_time().unwrap_or(0);
    let mut environments: Vec<Environment> = targets
        .iter()
        .map(|t| Environment {
            name: t.label(),
            env: Default::default(),
            boots: Vec::new(),
        })
        .collect();
    let mut raw: Vec<(String, u32, crate::report::Bench)> = Vec::new();
    let mut janus_boots: Vec<Vec<JanusBoot>> = vec![Vec::new(); targets.len()];
    let mut linux_boots: Vec<Vec<LinuxBoot>> = vec![Vec::new(); targets.len()];

    for run in 1..=args.runs {
        for (i, &target) in targets.iter().enumerate() {
            let label = target.label();
            let config = |cmdline: &str, devices: bool| {
                let mut config = match target {
                    Target::Direct { accel, machine } => {
                        RunConfig::new(accel, machine, image.clone())
                    }
                    Target::Xen { dom0 } => RunConfig::xen(
                        dom0,
                        xen_elf
                            .clone()
                            .expect("Xen targets remain only when fetched"),
                        image.clone(),
                    ),
                };
                config.cmdline = cmdline.to_string();
                config.devices = devices;
                config.timeout = Duration::from_secs(args.timeout);
                config
            };

            progress.start(&format!("{label} run {run}: tests and benchmarks"));
            let mut full = config("", true);
            let boot = match full.prepare_devices_under(&io_root) {
                Ok(()) => boot_once(&full),
                Err(e) => Err(e.to_string()),
            };
            let record = match boot {
                Ok(b) => {
                    if environments[i].env.is_empty()
                        && let Some(env) = &b.report.env
                    {
                        environments[i].env = env.clone();
                    }
                    raw.extend(
                        b.report
                            .benches
                            .iter()
                            .map(|bench| (label.clone(), run, bench.clone())),
                    );
                    if let Some(line) = &b.kept_files {
                        progress.line(line);
                    }
                    b.record(run)
                }
                Err(e) => report::Boot {
                    run,
                    passed: false,
                    verdict: format!("janus: ERROR {label}: {e}"),
                    benches: 0,
                    guest_boot_us: None,
                    host_ms: 0,
                },
            };
            progress.finish(&format!(
                "{label} run {run}: {} ({} benches, {} ms)",
                record.verdict, record.benches, record.host_ms
            ));
            environments[i].boots.push(record);

            progress.start(&format!("{label} run {run}: boot time"));
            let quick = boot_once(&config(BOOT_ONLY_CMDLINE, false));
            let janus = match quick {
                Ok(b) if b.passed => JanusBoot {
                    run,
                    guest_us: b.report.done.as_ref().map(|d| d.boot_us),
                    host_ms: b.host_ms,
                    failure: None,
                },
                Ok(b) => JanusBoot {
                    run,
                    guest_us: None,
                    host_ms: b.host_ms,
                    failure: Some(b.verdict),
                },
                Err(e) => JanusBoot {
                    run,
                    guest_us: None,
                    host_ms: 0,
                    failure: Some(e),
                },
            };
            progress.finish(&format!(
                "{label} run {run}: Janus boot {} ms on the host{}",
                janus.host_ms,
                janus
                    .failure
                    .as_deref()
                    .map(|f| format!(", failed: {f}"))
                    .unwrap_or_default()
            ));
            janus_boots[i].push(janus);

            if let (Target::Direct { accel, machine }, Ok(Some(peer))) = (target, &peer) {
                progress.start(&format!("{label} run {run}: Linux peer"));
                let timeout = Duration::from_secs(args.timeout);
                let linux = match linux::boot(peer, accel, machine, timeout) {
                    Ok(b) => LinuxBoot {
                        run,
                        kernel: b.kernel_version.clone(),
                        guest_us: b.guest_init_us.filter(|_| b.failure.is_none()),
                        host_ms: b.host_ms,
                        failure: b.failure.clone(),
                    },
                    Err(e) => LinuxBoot {
                        run,
                        kernel: peer.kernel_version.clone(),
                        guest_us: None,
                        host_ms: 0,
                        failure: Some(e.to_string()),
                    },
                };
                progress.finish(&format!(
                    "{label} run {run}: Linux boot {} ms on the host{}",
                    linux.host_ms,
                    linux
                        .failure
                        .as_deref()
                        .map(|f| format!(", failed: {f}"))
                        .unwrap_or_default()
                ));
                linux_boots[i].push(linux);
            }
        }
    }
    progress.done();

    let guest_xen = environments.iter().find_map(|e| e.env.get("xen").cloned());
    let provenance = host::provenance(
        &workspace.root,
        guest_xen
            .as_deref()
            .and_then(|g| host::xen_version(Some(g), &xen_cache.dir)),
        started,
    );
    let rows: Vec<Row> = raw
        .iter()
        .map(|(env, run, bench)| Row::new(env, *run, bench, &provenance))
        .collect();
    let summary = Summary::from_rows(&rows);
    let kvm_paging = host::kvm_paging(Path::new("/sys/module"));
    let claims = Claims::answer(&summary, kvm_paging.as_deref());
    let boot = targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let linux_skipped = match (target, &peer) {
                (Target::Xen { .. }, _) => {
                    Some("the Linux peer is booted only where QEMU boots the guest directly")
                }
                (_, Ok(None)) => Some("--no-linux"),
                (_, Err(e)) => Some(e.as_str()),
                (_, Ok(Some(_))) => None,
            };
            BootComparison::new(
                &target.label(),
                std::mem::take(&mut janus_boots[i]),
                std::mem::take(&mut linux_boots[i]),
                linux_skipped,
            )
        })
        .collect();
    let document = BenchReport {
        schema: report::SCHEMA,
        provenance,
        host: HostFacts {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kvm: match &kvm {
                Kvm::Opens => "opens".into(),
                Kvm::DoesNotOpen(reason) => format!("does not open ({reason})"),
            },
            kvm_paging,
        },
        runs: args.runs,
        environments,
        skipped,
        rows,
        summary,
        boot,
        claims,
    };
    let written = document.write(&out)?;

    println!("claims:");
    for (name, claim) in [
        ("mmu", &document.claims.mmu),
        ("clock", &document.claims.clock),
        ("io", &document.claims.io),
    ] {
        println!("  {name}: {}", claim.verdict);
    }
    for b in &document.boot {
        match b.guest_ratio {
            Some(r) => println!(
                "  boot {}: Janus {:.1} ms, Linux {:.1} ms of guest time (ratio {r:.3})",
                b.environment,
                b.janus_guest_ms.unwrap_or(0.0),
                b.linux_guest_ms.unwrap_or(0.0)
            ),
            None => println!("  boot {}: {}", b.environment, b.note),
        }
    }
    let mut regressed = false;
    if let Some(earlier) = earlier {
        let comparison = compare::compare(&earlier.summary, &document.summary);
        println!(
            "compare: {} benchmarks in both reports, {} regressed",
            comparison.compared,
            comparison.regressions.len()
        );
        for r in &comparison.regressions {
            println!("  regression: {r}");
        }
        for m in &comparison.missing {
            println!("  not measured this time: {m}");
        }
        for u in &comparison.unit_changed {
            println!("  not comparable, the unit changed: {u}");
        }
        regressed = !comparison.regressions.is_empty();
    }
    for path in &written {
        println!("wrote {}", path.display());
    }
    // The Linux peer's failures are findings about Linux, reported in the boot table;
    // Janus's own boot-time boots count like its full ones.
    let failed = document
        .environments
        .iter()
        .flat_map(|e| &e.boots)
        .filter(|b| !b.passed)
        .count()
        + document
            .boot
            .iter()
            .flat_map(|b| &b.janus)
            .filter(|b| b.failure.is_some())
            .count();
    println!(
        "bench: {} environments, {} Janus boots, {failed} failed; report in {}",
        document.environments.len(),
        document
            .environments
            .iter()
            .map(|e| e.boots.len())
            .sum::<usize>()
            + document.boot.iter().map(|b| b.janus.len()).sum::<usize>(),
        out.display()
    );
    Ok(u8::from(failed > 0 || regressed))
}

/// One boot and what it printed.
struct Booted {
    report: Report,
    passed: bool,
    verdict: String,
    host_ms: u64,
    /// Where the device files were kept because the boot failed.
    kept_files: Option<String>,
}

impl Booted {
    fn record(&self, run: u32) -> report::Boot {
        report::Boot {
            run,
            passed: self.passed,
            verdict: self.verdict.clone(),
            benches: self.report.benches.len(),
            guest_boot_us: self.report.done.as_ref().map(|d| d.boot_us),
            host_ms: self.host_ms,
        }
    }
}

/// Boots `config`, timing QEMU from launch to exit; an error is a boot that could not be
/// started, as one line.
fn boot_once(config: &RunConfig) -> Result<Booted, String> {
    let launched = Instant::now();
    let outcome = config.run(&mut |_, _| {}).map_err(|e| e.to_string())?;
    let host_ms = u64::try_from(launched.elapsed().as_millis()).unwrap_or(u64::MAX);
    let report = Report::from_lines(&outcome.console);
    let verdict = config.verdict(&outcome, &report);
    let passed = verdict.exit_code() == 0;
    let kept_files = outcome
        .io_dir
        .as_deref()
        .and_then(|dir| devices::keep_or_remove(dir, passed));
    Ok(Booted {
        report,
        passed,
        verdict: verdict.to_string(),
        host_ms,
        kept_files,
    })
}

/// The progress bar on a terminal, one line per finished step everywhere: CI logs and
/// pipes get no bar, so the lines are what shows progress there.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(steps: u64) -> Progress {
        let bar = ProgressBar::new(steps);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {wide_msg}")
        {
            bar.set_style(style);
        }
        Progress { bar }
    }

    fn start(&self, what: &str) {
        self.bar.set_message(what.to_string());
    }

    fn line(&self, text: &str) {
        if self.bar.is_hidden() {
            println!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    fn finish(&self, what: &str) {
        self.bar.inc(1);
        let position = self.bar.position();
        let length = self.bar.length().unwrap_or(position);
        self.line(&format!("bench [{position}/{length}] {what}"));
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}
