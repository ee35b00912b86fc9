//! `cargo xtask test`: host unit tests, then boot tests, summed into one closing line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::cli::Failure;
use crate::host;
use crate::libtest::{self, Summary};
use crate::linux;
use crate::qemu::Kvm;
use crate::workspace::Workspace;
use crate::xen;

/// Runs the kernel crates' host unit tests, xtask's own tests, and the boot tests (the KVM
/// cases only where /dev/kvm opens; Xen fetched first for the Xen cases), then prints
/// `N passed, M failed[, K skipped]`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Boot tests run two at a time: the machines have two cores and each TCG guest keeps one
/// busy.
const BOOT_TEST_THREADS: &str = "--test-threads=2";

/// Environment variable through which the boot tests receive the kernel image.
pub const KERNEL_ENV: &str = "JANUS_KERNEL";

/// Environment variable through which the boot tests receive the Xen ELF.
pub const XEN_ENV: &str = "JANUS_XEN";

/// Set instead of [`XEN_ENV`] when Xen could not be fetched: the one-line reason, with which
/// the Xen boot tests fail.
pub const XEN_ERROR_ENV: &str = "JANUS_XEN_ERROR";

pub fn run(_args: &Args) -> Result<u8, Failure> {
    host::ensure(&host::QEMU)?;
    host::ensure(&host::QBOOT)?;
    let workspace = Workspace::locate()?;
    let mut tally = Tally::default();

    let image = match workspace.build_kernel() {
        Ok(image) => Some(image),
        Err(e) => {
            println!("test: {e}; the boot tests cannot run");
            tally.broken_steps.push("the kernel build failed".into());
            None
        }
    };

    tally.step(
        "host unit tests of the kernel crates",
        workspace.cargo().args([
            "test",
            "--no-fail-fast",
            "-p",
            "janus-hypercall",
            "-p",
            "janus-drivers",
            "-p",
            "janus-kernel",
            "--lib",
        ]),
    );
    tally.step(
        "xtask unit tests",
        workspace
            .cargo()
            .args(["test", "--no-fail-fast", "-p", "xtask"]),
    );

    if let Some(image) = image {
        let mut boot_tests = workspace.cargo();
        boot_tests
            .args([
                "test",
                "--no-fail-fast",
                "-p",
                "janus-tests",
                "--",
                BOOT_TEST_THREADS,
            ])
            .env(KERNEL_ENV, &image);
        // Fetched here, once, rather than by the tests, which run in parallel.
        match xen::fetch::ensure(&xen::fetch::Cache::in_target(&workspace.target_dir)) {
            Ok(elf) => {
                boot_tests.env(XEN_ENV, elf).env_remove(XEN_ERROR_ENV);
            }
            Err(e) => {
                println!("xen: {e}; the Xen boot tests will fail with this reason");
                boot_tests
                    .env(XEN_ERROR_ENV, e.to_string())
                    .env_remove(XEN_ENV);
            }
        }
        // Fetched here too, so the boot tests that boot it do not download it side by side.
        if let Err(e) = linux::ensure(&workspace.target_dir) {
            println!("linux: {e}; the Linux peer boot tests will fail with this reason");
        }
        match Kvm::probe() {
            Kvm::Opens => {
                println!("KVM: /dev/kvm opens read-write; the KVM boot cases run too");
                boot_tests.arg("--include-ignored");
            }
            Kvm::DoesNotOpen(reason) => {
                let skipped = count_ignored_boot_tests(&workspace)
                    .map_or_else(|| "the".to_string(), |n| n.to_string());
                println!(
                    "KVM: /dev/kvm does not open here ({reason}); {skipped} KVM boot cases skipped"
                );
            }
        }
        tally.step("boot tests", &mut boot_tests);
    }

    for step in &tally.broken_steps {
        println!("test: {step}: counted as 1 failed");
    }
    let total = tally.total();
    println!("{}", total.closing_line());
    Ok(u8::from(total.failed > 0))
}

/// The boot tests marked `#[ignore]`: the KVM cases, skipped without /dev/kvm.
fn count_ignored_boot_tests(workspace: &Workspace) -> Option<usize> {
    let output = workspace
        .cargo()
        .args(["test", "-p", "janus-tests", "--", "--list", "--ignored"])
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| libtest::count_listed_tests(&String::from_utf8_lossy(&output.stdout)))
}

/// Test counts over all steps, and why steps failed without naming a failing test.
#[derive(Debug, Default)]
struct Tally {
    summary: Summary,
    broken_steps: Vec<String>,
}

impl Tally {
    /// Runs one cargo step, echoing its stdout and counting its `test result:` lines.
    fn step(&mut self, name: &str, command: &mut Command) {
        println!("==> {name}: {}", host::command_line(command));
        match stream_test_output(command) {
            Ok((summary, success)) => self.record(name, summary, success),
            Err(e) => self
                .broken_steps
                .push(format!("{name} could not run ({e})")),
        }
    }

    fn record(&mut self, name: &str, summary: Summary, success: bool) {
        self.summary += summary;
        // A step that fails with no failing test did not build or crashed its harness;
        // it must still show up in the count.
        if !success && summary.failed == 0 {
            self.broken_steps.push(format!(
                "{name} failed without a failing test (a build error or a crashed test harness)"
            ));
        }
    }

    fn total(&self) -> Summary {
        let mut total = self.summary;
        total.failed += self.broken_steps.len() as u64;
        total
    }
}

/// Runs `command`, echoing its stdout line by line and summing its libtest summaries.
fn stream_test_output(command: &mut Command) -> std::io::Result<(Summary, bool)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut summary = Summary::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(s) = libtest::parse_summary(&line) {
                summary += s;
            }
        }
    }
    Ok((summary, child.wait()?.success()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(passed: u64, failed: u64, ignored: u64) -> Summary {
        Summary {
            passed,
            failed,
            ignored,
        }
    }

    #[test]
    fn failing_tests_are_counted_once() {
        let mut t = Tally::default();
        t.record("unit", summary(10, 2, 0), false);
        t.record("boot", summary(5, 0, 2), true);
        assert_eq!(t.total(), summary(15, 2, 2));
        assert_eq!(t.total().closing_line(), "15 passed, 2 failed, 2 skipped");
    }

    #[test]
    fn a_step_that_failed_without_failing_tests_counts_as_one_failure() {
        let mut t = Tally::default();
        t.record("unit", summary(10, 0, 0), true);
        t.record("boot tests", summary(0, 0, 0), false);
        assert_eq!(t.broken_steps.len(), 1);
        assert!(t.broken_steps[0].starts_with("boot tests failed"));
        assert_eq!(t.total().closing_line(), "10 passed, 1 failed");
    }

    #[test]
    fn streaming_sums_every_summary_line() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "echo 'test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out'; \
             echo noise; \
             echo 'test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out'; \
             exit 101",
        ]);
        let (s, success) = stream_test_output(&mut c).unwrap();
        assert_eq!(s, summary(3, 1, 1));
        assert!(!success);
    }
}
