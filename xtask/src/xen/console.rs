//! Xen's console, as QEMU's stdout carries it: Xen's own lines, a PVH dom0's port 0xe9
//! lines, and dom0's `console_io` text, interleaved. These shapes were seen with Xen 4.17
//! and `console_timestamps=boot`:
//!
//! ```text
//! (XEN) [0000000010fd7f4e] Xen version 4.17.7 ...      Xen, before its timer runs: raw TSC
//! (XEN) [    1.113616] Freed 656kB init memory          Xen
//! (d0) [    1.118103] @janus test e9 pass               dom0 through port 0xe9
//! @janus test console-io pass                           dom0 through console_io, as written
//! ```
//!
//! After some of Xen's lines the machine never stops by itself, so the run is ended there
//! ([`terminal`]) instead of at the timeout.

use crate::qemu::Outcome;
use crate::report::{self, Report, Verdict, VerdictKind};

/// Who wrote a console line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// Xen itself: `(XEN) `.
    Xen,
    /// A domain's port 0xe9 output: `(d0) `, or `(d0v0) ` where Xen names the vCPU.
    Domain,
    /// No prefix: dom0's `console_io` text, or a console without Xen in between.
    Unprefixed,
}

/// Splits a console line into its writer and its text, without Xen's prefix and timestamp.
pub fn split_prefix(line: &str) -> (Writer, &str) {
    if let Some(rest) = line.strip_prefix("(XEN) ") {
        return (Writer::Xen, skip_timestamp(rest));
    }
    if let Some((domain, rest)) = line
        .strip_prefix("(d")
        .and_then(|rest| rest.split_once(") "))
        && is_domain_and_vcpu(domain)
    {
        return (Writer::Domain, skip_timestamp(rest));
    }
    (Writer::Unprefixed, line)
}

/// `0` or `0v1`: a domain id, optionally with a vCPU number.
fn is_domain_and_vcpu(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('v') {
        Some((domain, vcpu)) => digits(domain) && digits(vcpu),
        None => digits(text),
    }
}

/// Drops a leading `[    1.234567] ` (seconds) or `[0000000010fd7f4e] ` (TSC before Xen's
/// timer is set up).
fn skip_timestamp(text: &str) -> &str {
    let Some((stamp, rest)) = text
        .strip_prefix('[')
        .and_then(|inner| inner.split_once(']'))
    else {
        return text;
    };
    let is_stamp = !stamp.is_empty()
        && stamp
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b" .:-".contains(&b));
    if !is_stamp {
        return text;
    }
    if rest.is_empty() {
        rest
    } else {
        rest.strip_prefix(' ').unwrap_or(text)
    }
}

/// Xen lines after which the machine neither runs the guest on nor exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// `Panic on CPU 0:`; the reason follows on the next line.
    Panic,
    /// `Hardware Dom0 crashed: 'noreboot' set - not rebooting.`, or Xen's report that
    /// starts a dom0 crash, `Domain 0 (vcpu#0) crashed on cpu#0:`.
    Dom0Crashed,
    /// `Hardware Dom0 halted: halting machine`: dom0 asked SCHEDOP_shutdown for a poweroff,
    /// which Xen answers by halting, not by powering QEMU off.
    Dom0Halted,
}

/// Whether `line` is one of Xen's [`Terminal`] lines.
pub fn terminal(line: &str) -> Option<Terminal> {
    let (Writer::Xen, text) = split_prefix(line) else {
        return None;
    };
    if text.starts_with("Panic on CPU") {
        Some(Terminal::Panic)
    } else if text.starts_with("Hardware Dom0 crashed")
        || (text.starts_with("Domain 0 ") && text.contains(" crashed"))
    {
        Some(Terminal::Dom0Crashed)
    } else if text.starts_with("Hardware Dom0 halted") {
        Some(Terminal::Dom0Halted)
    } else {
        None
    }
}

/// Judges a run under Xen: Xen's terminal lines and QEMU status 0 (Xen restarted the
/// machine, which `-no-reboot` turns into an exit) are Xen's own outcomes; everything else
/// is judged like a run without Xen, from the isa-debug-exit status.
pub fn verdict(label: &str, cmdline: &str, outcome: &Outcome, report: &Report) -> Verdict {
    match judge(outcome) {
        Some((kind, detail)) => Verdict {
            kind,
            label: label.to_string(),
            detail,
        },
        None => report::verdict(label, cmdline, outcome, report),
    }
}

fn judge(outcome: &Outcome) -> Option<(VerdictKind, String)> {
    let guest = last_guest_line(outcome);
    if let Some(end) = &outcome.ended_early
        && let Some(terminal) = terminal(end)
    {
        let text = split_prefix(end).1.trim_end();
        return Some(match terminal {
            Terminal::Panic => {
                let reason = panic_reason(outcome, end).unwrap_or("no reason given");
                (VerdictKind::XenFatal, format!("{text} {reason}; {guest}"))
            }
            Terminal::Dom0Crashed => (VerdictKind::XenFatal, format!("{text}; {guest}")),
            Terminal::Dom0Halted => (
                VerdictKind::NoExitStatus,
                format!(
                    "the guest stopped without an exit status (SCHEDOP_shutdown poweroff?) \
                     and Xen halted: {text}; {guest}"
                ),
            ),
        });
    }
    if outcome.status != Some(0) || outcome.timed_out_after.is_some() {
        return None;
    }
    let xen_lines = || {
        outcome
            .console
            .iter()
            .rev()
            .map(|l| split_prefix(l))
            .filter(|(writer, _)| *writer == Writer::Xen)
            .map(|(_, text)| text.trim_end())
    };
    // A triple fault is followed by a register dump and the reboot line; the cause is the
    // line to quote.
    let xen_said = xen_lines()
        .find(|text| text.contains("Triple fault"))
        .or_else(|| xen_lines().find(|text| text.starts_with("Hardware Dom0")))
        .map_or_else(String::new, |text| format!("; Xen said: {text}"));
    Some((
        VerdictKind::NoExitStatus,
        format!(
            "QEMU exited 0: the guest stopped without an exit status (SCHEDOP_shutdown reboot, \
             or a triple fault){xen_said}; {guest}"
        ),
    ))
}

/// The line after `Panic on CPU N:` with text, skipping Xen's `****` rulers.
fn panic_reason<'a>(outcome: &'a Outcome, panic_line: &str) -> Option<&'a str> {
    let at = outcome.console.iter().position(|l| l == panic_line)?;
    outcome.console[at + 1..]
        .iter()
        .filter_map(|l| match split_prefix(l) {
            (Writer::Xen, text) => Some(text.trim()),
            _ => None,
        })
        .find(|text| !text.is_empty() && !text.bytes().all(|b| b == b'*'))
}

/// `last guest line: ...` for the verdict: the guest's latest words say how far it got,
/// which Xen's lines after it do not.
fn last_guest_line(outcome: &Outcome) -> String {
    outcome
        .console
        .iter()
        .rev()
        .map(|l| split_prefix(l))
        .filter(|(writer, _)| *writer != Writer::Xen)
        .map(|(_, text)| text.trim())
        .find(|text| !text.is_empty())
        .map_or_else(
            || "the guest printed nothing".to_string(),
            |text| format!("last guest line: {text}"),
        )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn xen_lines_lose_prefix_and_timestamp() {
        assert_eq!(
            split_prefix("(XEN) [    1.113616] Freed 656kB init memory"),
            (Writer::Xen, "Freed 656kB init memory")
        );
        assert_eq!(
            split_prefix("(XEN) [0000000010fd7f4e] Xen version 4.17.7 (Debian)"),
            (Writer::Xen, "Xen version 4.17.7 (Debian)")
        );
        assert_eq!(
            split_prefix("(XEN) No timestamps here"),
            (Writer::Xen, "No timestamps here")
        );
        assert_eq!(split_prefix("(XEN) [    1.030514] "), (Writer::Xen, ""));
        assert_eq!(
            split_prefix("(XEN) [2024-01-02 03:04:05.678] datems style"),
            (Writer::Xen, "datems style")
        );
    }

    #[test]
    fn domain_lines_lose_prefix_and_timestamp() {
        assert_eq!(
            split_prefix("(d0) [    1.118103] @janus test e9 pass"),
            (Writer::Domain, "@janus test e9 pass")
        );
        assert_eq!(
            split_prefix("(d0) @janus env hypervisor=xen"),
            (Writer::Domain, "@janus env hypervisor=xen")
        );
        assert_eq!(
            split_prefix("(d0v0) [    1.2] @janus done tests_passed=1"),
            (Writer::Domain, "@janus done tests_passed=1")
        );
        assert_eq!(
            split_prefix("(d12v3)   bt #0 0x105a3c"),
            (Writer::Domain, "  bt #0 0x105a3c")
        );
    }

    #[test]
    fn other_lines_are_left_alone() {
        for line in [
            "@janus test console-io pass",
            "  bt #0 0x105a3c",
            "(dx) not a domain",
            "(d0v) not a vcpu",
            "(d0)no space",
            "(XEN)no space",
            "[    1.0] a timestamp without a prefix",
            "",
        ] {
            assert_eq!(split_prefix(line), (Writer::Unprefixed, line), "{line:?}");
        }
    }

    #[test]
    fn text_in_brackets_is_not_a_timestamp() {
        assert_eq!(
            split_prefix("(d0) [ok] started"),
            (Writer::Domain, "[ok] started")
        );
        assert_eq!(
            split_prefix("(XEN) [    1.0]glued"),
            (Writer::Xen, "[    1.0]glued")
        );
    }

    #[test]
    fn terminal_lines_as_xen_prints_them() {
        for (line, expected) in [
            (
                "(XEN) [    1.030038] Panic on CPU 0:",
                Some(Terminal::Panic),
            ),
            (
                "(XEN) [    1.134627] Hardware Dom0 crashed: 'noreboot' set - not rebooting.",
                Some(Terminal::Dom0Crashed),
            ),
            (
                "(XEN) [    1.2] Domain 0 (vcpu#0) crashed on cpu#0:",
                Some(Terminal::Dom0Crashed),
            ),
            (
                "(XEN) Domain 0 crashed: rebooting machine in 5 seconds.",
                Some(Terminal::Dom0Crashed),
            ),
            (
                "(XEN) [    1.134311] Hardware Dom0 halted: halting machine",
                Some(Terminal::Dom0Halted),
            ),
            // Xen restarts the machine after these, and -no-reboot makes QEMU exit.
            (
                "(XEN) [    1.145606] Hardware Dom0 shutdown: rebooting machine",
                None,
            ),
            (
                "(XEN) [    1.138635] d0v0 Triple fault - invoking HVM shutdown action 1",
                None,
            ),
            // The guest's words are never Xen's.
            ("Panic on CPU 0:", None),
            ("(d0) [    1.2] Hardware Dom0 crashed", None),
        ] {
            assert_eq!(terminal(line), expected, "{line:?}");
        }
    }

    fn outcome(status: Option<i32>, ended_early: Option<&str>, console: &[&str]) -> Outcome {
        Outcome {
            status,
            ended_early: ended_early.map(str::to_string),
            console: console.iter().map(|s| s.to_string()).collect(),
            ..Outcome::default()
        }
    }

    fn judge_lines(outcome: &Outcome) -> Verdict {
        verdict(
            "xen-pvh/pc",
            "",
            outcome,
            &Report::from_lines(&outcome.console),
        )
    }

    #[test]
    fn a_xen_panic_is_quoted_with_its_reason() {
        let panic = "(XEN) [    1.030038] Panic on CPU 0:";
        let o = outcome(
            None,
            Some(panic),
            &[
                "(XEN) [    1.028401] Failed to load kernel: -1",
                "(XEN) [    1.029850] ****************************************",
                panic,
                "(XEN) [    1.030038] Could not construct domain 0",
                "(XEN) [    1.030257] ****************************************",
                "(XEN) [    1.030643] Manual reset required ('noreboot' specified)",
            ],
        );
        let v = judge_lines(&o);
        assert_eq!(v.kind, VerdictKind::XenFatal);
        assert_eq!(v.exit_code(), 2);
        assert_eq!(
            v.to_string(),
            "janus: XEN-FATAL xen-pvh/pc: Panic on CPU 0: Could not construct domain 0; \
             the guest printed nothing"
        );
    }

    #[test]
    fn a_dom0_crash_names_the_last_guest_line() {
        let crash = "(XEN) [    1.134627] Hardware Dom0 crashed: 'noreboot' set - not rebooting.";
        let o = outcome(
            None,
            Some(crash),
            &[
                "(XEN) [    1.1] Freed 656kB init memory",
                "(d0) [    1.12] @janus test heap pass",
                "calling the hypervisor",
                crash,
            ],
        );
        let v = judge_lines(&o);
        assert_eq!(v.kind, VerdictKind::XenFatal);
        assert_eq!(
            v.detail,
            "Hardware Dom0 crashed: 'noreboot' set - not rebooting.; \
             last guest line: calling the hypervisor"
        );
    }

    #[test]
    fn a_halt_after_poweroff_is_a_run_without_exit_status() {
        let halted = "(XEN) [    1.134311] Hardware Dom0 halted: halting machine";
        let o = outcome(None, Some(halted), &["@janus test console-io pass", halted]);
        let v = judge_lines(&o);
        assert_eq!(v.kind, VerdictKind::NoExitStatus);
        assert_eq!(v.exit_code(), 2);
        assert!(v.detail.contains("SCHEDOP_shutdown poweroff"), "{v}");
        assert!(v.detail.contains("Hardware Dom0 halted"), "{v}");
    }

    #[test]
    fn status_0_is_a_run_without_exit_status_naming_what_xen_saw() {
        let reboot = [
            "@janus test console-io pass",
            "(XEN) [    1.145606] Hardware Dom0 shutdown: rebooting machine",
        ];
        let v = judge_lines(&outcome(Some(0), None, &reboot));
        assert_eq!(v.kind, VerdictKind::NoExitStatus);
        assert_eq!(v.exit_code(), 2);
        assert_eq!(
            v.to_string(),
            "janus: NO-EXIT-STATUS xen-pvh/pc: QEMU exited 0: the guest stopped without an \
             exit status (SCHEDOP_shutdown reboot, or a triple fault); Xen said: Hardware Dom0 \
             shutdown: rebooting machine; last guest line: @janus test console-io pass"
        );
        let v = judge_lines(&outcome(
            Some(0),
            None,
            &[
                "@janus test console-io pass",
                "(XEN) [    1.138635] d0v0 Triple fault - invoking HVM shutdown action 1",
                "(XEN) [    1.139020] *** Dumping Dom0 vcpu#0 state: ***",
                "(XEN) [    1.140438] RIP:    0000:[<000000000010002b>]",
                "(XEN) [    1.144970] Hardware Dom0 shutdown: rebooting machine",
            ],
        ));
        assert_eq!(v.kind, VerdictKind::NoExitStatus);
        assert!(
            v.detail
                .contains("Xen said: d0v0 Triple fault - invoking HVM shutdown action 1;"),
            "{v}"
        );
    }

    #[test]
    fn exit_statuses_are_judged_as_without_xen() {
        let lines = [
            "(XEN) [    1.1] Freed 656kB init memory",
            "@janus env hypervisor=xen boot=pvh paging=direct",
            "(d0) [    1.2] @janus test heap pass",
            "@janus done tests_passed=1 tests_failed=0 boot_us=9",
        ];
        let v = judge_lines(&outcome(Some(33), None, &lines));
        assert_eq!(v.kind, VerdictKind::Pass, "{v}");
        assert_eq!(
            v.to_string(),
            "janus: PASS xen-pvh/pc: 1 tests passed, 0 failed, 0 benches, boot 9 us"
        );
        let v = judge_lines(&outcome(Some(37), None, &lines[..1]));
        assert_eq!(v.kind, VerdictKind::Aborted, "{v}");
        let mut timed_out = outcome(None, None, &lines[..1]);
        timed_out.timed_out_after = Some(Duration::from_secs(120));
        let v = judge_lines(&timed_out);
        assert_eq!(v.kind, VerdictKind::Timeout, "{v}");
        assert!(v.detail.contains("Freed 656kB init memory"), "{v}");
    }
}
