//! The `cargo xtask` command line.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use crate::{bench, build, lint, run, test};

/// An error that stops a subcommand; its message says what to do.
pub type Failure = Box<dyn std::error::Error>;

/// The exit code for usage errors and for anything that stopped a subcommand.
pub const EXIT_ERROR: u8 = 2;

/// Build, boot and test the Janus kernel.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the kernel (release) and print the image path as the last line.
    Build(build::Args),
    /// Boot the kernel under QEMU, stream its console and judge the run
    /// (exit 0 passed, 1 a test failed, 2 anything else).
    Run(run::Args),
    /// Host unit tests, then boot tests; ends with one line `N passed, M failed`.
    Test(test::Args),
    /// Boot every environment that runs here, with a Linux guest beside for boot time, and
    /// write report.json, report.md and charts to target/janus-report/.
    Bench(bench::Args),
    /// rustfmt and clippy over the whole workspace, for the kernel target and the host.
    Lint(lint::Args),
}

impl Command {
    /// Runs the subcommand; the result is the process exit code.
    pub fn run(&self) -> Result<u8, Failure> {
        match self {
            Command::Build(args) => build::run(args),
            Command::Run(args) => run::run(args),
            Command::Test(args) => test::run(args),
            Command::Bench(args) => bench::run(args),
            Command::Lint(args) => lint::run(args),
        }
    }
}

/// A clap error squeezed onto one line, ending with where to find help.
pub fn one_line_error(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .collect();
    if let Some(first) = parts.first_mut() {
        *first = first.trim_start_matches("error: ");
    }
    format!(
        "error: {}; see `cargo xtask --help` or `cargo xtask <command> --help`",
        parts.join(" ")
    )
}

/// The `cargo xtask` entry point.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            let code = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                EXIT_ERROR
            } else {
                0
            };
            return ExitCode::from(code);
        }
        Err(e) => {
            eprintln!("{}", one_line_error(&e));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match cli.command.run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;
    use crate::qemu::{Env, Machine};

    fn parse<const N: usize>(args: [&str; N]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(args)
    }

    fn error_line(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).expect_err("these arguments are wrong");
        one_line_error(&e)
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_match_the_documentation() {
        let Command::Run(args) = parse(["xtask", "run"]).unwrap().command else {
            panic!("not run");
        };
        assert_eq!(args.env, Env::Auto);
        // Each environment has its own machine and memory defaults, applied by `run`.
        assert_eq!(args.machine, None);
        assert_eq!(args.mem, None);
        assert_eq!(args.cmdline, "");
        assert_eq!(args.timeout, 120);
        assert_eq!(args.image, None);
    }

    #[test]
    fn run_takes_every_option() {
        let Command::Run(args) = parse([
            "xtask",
            "run",
            "--env",
            "kvm",
            "--machine",
            "q35",
            "--mem",
            "3G",
            "--cmdline",
            "-x selftest=fault",
            "--timeout",
            "5",
            "--image",
            "/tmp/k",
        ])
        .unwrap()
        .command
        else {
            panic!("not run");
        };
        assert_eq!(args.env, Env::Kvm);
        assert_eq!(args.machine, Some(Machine::Q35));
        assert_eq!(args.mem.map(|m| m.mib()), Some(3072));
        assert_eq!(args.cmdline, "-x selftest=fault");
        assert_eq!(args.timeout, 5);
        assert_eq!(args.image.as_deref(), Some(Path::new("/tmp/k")));
    }

    #[test]
    fn bad_env_lists_the_choices_on_one_line() {
        let line = error_line(&["xtask", "run", "--env", "xen"]);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("'xen'"), "{line}");
        assert!(line.contains("auto, kvm, tcg, xen-pvh, xen-pv"), "{line}");
        assert!(line.ends_with("--help`"), "{line}");
    }

    #[test]
    fn xen_pvh_and_xen_pv_are_envs() {
        for (name, env) in [("xen-pvh", Env::XenPvh), ("xen-pv", Env::XenPv)] {
            let Command::Run(args) = parse(["xtask", "run", "--env", name]).unwrap().command else {
                panic!("not run");
            };
            assert_eq!(args.env, env);
        }
    }

    #[test]
    fn run_help_gives_the_xen_defaults() {
        let help = Cli::command()
            .find_subcommand_mut("run")
            .expect("run is a subcommand")
            .render_long_help()
            .to_string();
        for text in [
            "xen-pvh",
            "xen-pv",
            "pc with --env xen-pvh and xen-pv",
            "1G with --env xen-pvh and xen-pv",
        ] {
            assert!(help.contains(text), "{text:?} not in:\n{help}");
        }
    }

    #[test]
    fn bad_machine_mem_and_timeout_are_refused_on_one_line() {
        for (args, expected) in [
            (
                &["xtask", "run", "--machine", "isapc"][..],
                "microvm, pc, q35",
            ),
            (
                &["xtask", "run", "--mem", "12X"][..],
                "write it like 128M or 3G",
            ),
            (&["xtask", "run", "--timeout", "0"][..], "--timeout"),
            (&["xtask", "run", "--timeout", "soon"][..], "--timeout"),
            (&["xtask", "frobnicate"][..], "frobnicate"),
            (&["xtask", "build", "--release"][..], "--release"),
        ] {
            let line = error_line(args);
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains(expected), "{args:?}: {line}");
        }
    }

    #[test]
    fn bench_defaults_to_everything_once() {
        let Command::Bench(args) = parse(["xtask", "bench"]).unwrap().command else {
            panic!("not bench");
        };
        assert!(args.envs.is_empty() && args.machines.is_empty());
        assert_eq!(args.runs, 1);
        assert_eq!((args.compare, args.out, args.no_linux), (None, None, false));
    }

    #[test]
    fn bench_takes_lists_runs_and_a_comparison() {
        use crate::bench::matrix::Place;
        let Command::Bench(args) = parse([
            "xtask",
            "bench",
            "--env",
            "tcg,xen-pv",
            "--env",
            "kvm",
            "--machine",
            "pc",
            "--runs",
            "3",
            "--compare",
            "/tmp/old.json",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench");
        };
        assert_eq!(args.envs, [Place::Tcg, Place::XenPv, Place::Kvm]);
        assert_eq!(args.machines, [Machine::Pc]);
        assert_eq!(args.runs, 3);
        assert_eq!(args.compare.as_deref(), Some(Path::new("/tmp/old.json")));
    }

    #[test]
    fn bad_bench_flags_are_refused_on_one_line() {
        for (args, expected) in [
            (&["xtask", "bench", "--runs", "0"][..], "--runs"),
            (
                &["xtask", "bench", "--env", "auto"][..],
                "kvm, tcg, xen-pvh, xen-pv",
            ),
            (
                &["xtask", "bench", "--machine", "isapc"][..],
                "microvm, pc, q35",
            ),
        ] {
            let line = error_line(args);
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains(expected), "{args:?}: {line}");
        }
    }

    #[test]
    fn every_subcommand_has_help() {
        for sub in ["build", "run", "test", "bench", "lint"] {
            let e = parse(["xtask", sub, "--help"]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{sub}");
        }
    }
}
