//! Reading a peer boot's output: when the kernel started init, whether init ran, and when
//! the boot failed, why, in one line.

use super::init;
use crate::qemu::{Outcome, kvm_internal_error};

/// The kernel's line when it starts init (Linux's init/main.c). It is logged at KERN_INFO,
/// which reaches the console at Debian's default console log level.
pub const RUN_INIT: &str = "Run /init as init process";

/// How a kernel panic's first line starts, after its timestamp.
const KERNEL_PANIC: &str = "Kernel panic - not syncing";

/// What a boot's output says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    /// /init ran: its [`init::MARKER`] line is on the console.
    pub reached_init: bool,
    /// The printk timestamp of the kernel's [`RUN_INIT`] line, in microseconds.
    pub guest_init_us: Option<u64>,
    /// Why the boot failed; `None` when init ran and the machine powered off.
    pub failure: Option<String>,
}

/// A printk line's timestamp in microseconds and the text after it:
/// `[    1.234567] Run /init as init process` gives 1234567 and `Run /init as init process`.
pub fn printk_timestamp(line: &str) -> Option<(u64, &str)> {
    let (stamp, text) = line.trim_start().strip_prefix('[')?.split_once(']')?;
    let (seconds, fraction) = stamp.trim().split_once('.')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(seconds) || !all_digits(fraction) || fraction.len() > 6 {
        return None;
    }
    let micros = fraction.parse::<u64>().ok()? * 10u64.pow(6 - fraction.len() as u32);
    let seconds = seconds.parse::<u64>().ok()?;
    Some((
        seconds.checked_mul(1_000_000)?.checked_add(micros)?,
        text.trim(),
    ))
}

/// The timestamp of the kernel's [`RUN_INIT`] line, if `line` is it.
pub fn run_init_us(line: &str) -> Option<u64> {
    printk_timestamp(line)
        .filter(|(_, text)| *text == RUN_INIT)
        .map(|(us, _)| us)
}

/// A kernel panic's reason line, without its timestamp, if `line` is one.
pub fn kernel_panic(line: &str) -> Option<&str> {
    let at = line.find(KERNEL_PANIC)?;
    Some(line[at..].trim_end())
}

/// Reads a finished run of the peer.
pub fn read(outcome: &Outcome) -> Reading {
    let guest_init_us = outcome.console.iter().find_map(|l| run_init_us(l));
    let reached_init = outcome.console.iter().any(|l| l.contains(init::MARKER));
    Reading {
        reached_init,
        guest_init_us,
        failure: failure(outcome, reached_init, guest_init_us.is_some()),
    }
}

fn failure(outcome: &Outcome, reached_init: bool, ran_init: bool) -> Option<String> {
    let stopped = match outcome.timed_out_after {
        Some(limit) => format!("killed after {} s", limit.as_secs_f64()),
        None => match outcome.status {
            Some(status) => format!("QEMU exited with status {status}"),
            None => "QEMU was killed".to_string(),
        },
    };
    if let Some(kvm) = outcome.stderr.iter().find(|l| kvm_internal_error(l)) {
        return Some(format!("{}; QEMU paused the guest; {stopped}", kvm.trim()));
    }
    if let Some(panic) = outcome.console.iter().find_map(|l| kernel_panic(l)) {
        return Some(panic.to_string());
    }
    if reached_init {
        return outcome
            .timed_out_after
            .map(|_| format!("init ran but the guest did not power off: {stopped}"));
    }
    let what = if ran_init {
        format!(
            "the kernel ran /init but it never printed `{}`",
            init::MARKER
        )
    } else {
        format!("the kernel never printed `{RUN_INIT}`")
    };
    Some(format!("{what}; {stopped}; {}", last_words(outcome)))
}

/// What the run said last: QEMU's own complaint when it failed, else the console's last line.
fn last_words(outcome: &Outcome) -> String {
    let last = |lines: &[String]| {
        lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    let qemu_failed = outcome.status.is_some_and(|s| s != 0);
    match (
        qemu_failed.then(|| last(&outcome.stderr)).flatten(),
        last(&outcome.console),
    ) {
        (Some(qemu), _) => format!("QEMU said `{qemu}`"),
        (None, Some(console)) => format!("last console line `{console}`"),
        (None, None) => "no console output".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    /// The end of a good boot of Debian's cloud kernel under TCG.
    const GOOD_BOOT: &str = "\
[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)
[    0.801234] Freeing unused kernel image (rodata/data gap) memory: 1200K
[    0.812345] Run /init as init process
janus-linux-peer: init reached
[    0.823456] reboot: Power down";

    fn exited(console: &str, status: i32) -> Outcome {
        Outcome {
            status: Some(status),
            console: lines(console),
            ..Outcome::default()
        }
    }

    fn timed_out(console: &str, stderr: &str) -> Outcome {
        Outcome {
            timed_out_after: Some(Duration::from_secs(60)),
            console: lines(console),
            stderr: lines(stderr),
            ..Outcome::default()
        }
    }

    #[test]
    fn timestamps_are_read_in_microseconds() {
        assert_eq!(
            printk_timestamp("[    1.234567] Run /init as init process"),
            Some((1_234_567, "Run /init as init process"))
        );
        assert_eq!(
            printk_timestamp("[12345.000001] x"),
            Some((12_345_000_001, "x"))
        );
        assert_eq!(
            printk_timestamp("[    0.5] short"),
            Some((500_000, "short"))
        );
        for not in [
            "Run /init as init process",
            "[ ok ] started",
            "[    1.2345678] too fine",
            "[    .5] no seconds",
            "[    1.] no fraction",
            "[    1.234567 unclosed",
        ] {
            assert_eq!(printk_timestamp(not), None, "{not}");
        }
    }

    #[test]
    fn the_init_line_gives_the_guest_time_to_init() {
        assert_eq!(
            run_init_us("[    1.234567] Run /init as init process"),
            Some(1_234_567)
        );
        assert_eq!(
            run_init_us("[    0.812345] Run /init as init process\r"),
            Some(812_345)
        );
        assert_eq!(
            run_init_us("[    0.800000] Run /sbin/init as init process"),
            None
        );
        assert_eq!(run_init_us("Run /init as init process"), None);
    }

    #[test]
    fn a_panic_line_is_kept_without_its_timestamp() {
        assert_eq!(
            kernel_panic(
                "[    2.103374] Kernel panic - not syncing: Attempted to kill init! \
                 exitcode=0x00000000"
            ),
            Some("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000")
        );
        assert_eq!(kernel_panic("[    0.1] panic=-1 in the command line"), None);
    }

    #[test]
    fn a_good_boot_has_init_and_no_failure() {
        assert_eq!(
            read(&exited(GOOD_BOOT, 0)),
            Reading {
                reached_init: true,
                guest_init_us: Some(812_345),
                failure: None,
            }
        );
    }

    #[test]
    fn a_kvm_internal_error_is_the_reason_even_after_a_timeout() {
        let reading = read(&timed_out(
            "[    0.000000] Linux version 6.1.0-56-cloud-amd64\n\
             [    0.012000] x86/fpu: Supporting XSAVE feature 0x001",
            "KVM internal error. Suberror: 1\n\
             extra data[0]: 0x0000000000000000\n\
             emulation failure\n\
             RAX=0000000000000000 RBX=0000000000000000",
        ));
        assert!(!reading.reached_init);
        assert_eq!(reading.guest_init_us, None);
        assert_eq!(
            reading.failure.as_deref(),
            Some("KVM internal error. Suberror: 1; QEMU paused the guest; killed after 60 s")
        );
    }

    #[test]
    fn a_panic_is_the_reason_even_when_init_ran() {
        let console = "[    0.812345] Run /init as init process\n\
                       janus-linux-peer: init reached\n\
                       [    0.820000] Kernel panic - not syncing: Attempted to kill init! \
                       exitcode=0x00000000\n\
                       [    0.821000] ---[ end Kernel panic - not syncing: Attempted to kill \
                       init! exitcode=0x00000000 ]---";
        let reading = read(&exited(console, 0));
        assert!(reading.reached_init);
        assert_eq!(reading.guest_init_us, Some(812_345));
        assert_eq!(
            reading.failure.as_deref(),
            Some("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000")
        );
    }

    #[test]
    fn a_hang_before_init_names_the_last_line() {
        let reading = read(&timed_out(
            "[    0.000000] Linux version 6.1.0-56-cloud-amd64\n\
             [    0.004000] tsc: Unable to calibrate against PIT\n\n",
            "",
        ));
        assert_eq!(
            reading.failure.as_deref(),
            Some(
                "the kernel never printed `Run /init as init process`; killed after 60 s; \
                 last console line `[    0.004000] tsc: Unable to calibrate against PIT`"
            )
        );
    }

    #[test]
    fn init_that_ran_but_did_not_power_off_is_a_failure() {
        let reading = read(&timed_out(
            "[    0.812345] Run /init as init process\njanus-linux-peer: init reached",
            "",
        ));
        assert!(reading.reached_init);
        assert_eq!(
            reading.failure.as_deref(),
            Some("init ran but the guest did not power off: killed after 60 s")
        );
    }

    #[test]
    fn a_silent_init_is_told_apart_from_a_kernel_that_never_ran_it() {
        let reading = read(&exited("[    0.812345] Run /init as init process", 0));
        assert!(!reading.reached_init);
        assert_eq!(reading.guest_init_us, Some(812_345));
        assert_eq!(
            reading.failure.as_deref(),
            Some(
                "the kernel ran /init but it never printed `janus-linux-peer: init reached`; \
                 QEMU exited with status 0; last console line \
                 `[    0.812345] Run /init as init process`"
            )
        );
    }

    #[test]
    fn qemu_failing_at_start_is_quoted() {
        let mut outcome = exited("", 1);
        outcome.stderr =
            lines("qemu-system-x86_64: -bios /usr/share/qemu/qboot.rom: could not load PC BIOS");
        assert_eq!(
            read(&outcome).failure.as_deref(),
            Some(
                "the kernel never printed `Run /init as init process`; QEMU exited with \
                 status 1; QEMU said `qemu-system-x86_64: -bios /usr/share/qemu/qboot.rom: \
                 could not load PC BIOS`"
            )
        );
        assert!(
            read(&exited("", 0))
                .failure
                .unwrap()
                .ends_with("no console output")
        );
    }
}
