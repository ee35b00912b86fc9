//! `cargo xtask lint`: formatting and clippy, for the kernel target and for the host.

use crate::cli::Failure;
use crate::workspace::{KERNEL_TARGET, Workspace};

/// Runs rustfmt --check and clippy with -D warnings over every crate, each step once.
#[derive(Debug, clap::Args)]
pub struct Args {}

const KERNEL_CRATES: [&str; 6] = [
    "-p",
    "janus-kernel",
    "-p",
    "janus-drivers",
    "-p",
    "janus-hypercall",
];

/// The lint steps: a name and the cargo arguments.
fn steps() -> Vec<(&'static str, Vec<&'static str>)> {
    let deny_warnings = ["--", "-D", "warnings"];
    vec![
        ("rustfmt", vec!["fmt", "--all", "--", "--check"]),
        (
            "clippy, kernel crates for the kernel target",
            ["clippy"]
                .into_iter()
                .chain(KERNEL_CRATES)
                .chain(["--target", KERNEL_TARGET])
                .chain(deny_warnings)
                .collect(),
        ),
        (
            "clippy, kernel crates for the host (lib and unit tests)",
            ["clippy"]
                .into_iter()
                .chain(KERNEL_CRATES)
                .chain(["--lib", "--tests"])
                .chain(deny_warnings)
                .collect(),
        ),
        (
            "clippy, xtask and boot tests",
            [
                "clippy",
                "-p",
                "xtask",
                "-p",
                "janus-tests",
                "--all-targets",
            ]
            .into_iter()
            .chain(deny_warnings)
            .collect(),
        ),
    ]
}

pub fn run(_args: &Args) -> Result<u8, Failure> {
    let workspace = Workspace::locate()?;
    workspace.ensure_kernel_target()?;
    let steps = steps();
    let mut failed = Vec::new();
    for (name, args) in &steps {
        let status = workspace.cargo().args(args).status();
        match status {
            Ok(status) if status.success() => println!("lint: {name}: ok"),
            Ok(status) => {
                println!("lint: {name}: FAILED ({status})");
                failed.push(*name);
            }
            Err(e) => {
                println!("lint: {name}: cannot run cargo: {e}");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        println!("lint: all {} steps passed", steps.len());
        Ok(0)
    } else {
        println!(
            "lint: {} of {} steps failed: {}",
            failed.len(),
            steps.len(),
            failed.join("; ")
        );
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_the_documented_commands() {
        let lines: Vec<String> = steps().iter().map(|(_, a)| a.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "fmt --all -- --check",
                "clippy -p janus-kernel -p janus-drivers -p janus-hypercall --target x86_64-unknown-none -- -D warnings",
                "clippy -p janus-kernel -p janus-drivers -p janus-hypercall --lib --tests -- -D warnings",
                "clippy -p xtask -p janus-tests --all-targets -- -D warnings",
            ]
        );
    }
}
