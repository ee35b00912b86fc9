//! The kernel command line: extraction from guest memory and option parsing.
//!
//! The command line is what `-append` (QEMU) or the dom0 arguments (Xen) say, exactly:
//! words of `key=value` separated by spaces or tabs. Options the kernel does not know, or
//! values it cannot parse, are reported as [`Warning`]s and ignored, so an old kernel still
//! boots with a newer xtask's command line.

use core::fmt;

use log::LevelFilter;

/// Longest accepted command line, excluding the NUL; Linux x86's `COMMAND_LINE_SIZE`.
pub const MAX_CMDLINE_LEN: usize = 2048;

/// Why the command line in guest memory was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// No NUL within the first `MAX_CMDLINE_LEN + 1` bytes (or within the whole window, if
    /// the caller could read less).
    TooLong,
    /// The byte at `offset` is neither printable ASCII nor a space or tab.
    NotPrintable { offset: usize, byte: u8 },
}

impl CmdlineError {
    /// Short kebab-case tag for the `@janus abort kind=boot-info reason=<tag>` line.
    pub const fn reason(&self) -> &'static str {
        match self {
            CmdlineError::TooLong => "cmdline-too-long",
            CmdlineError::NotPrintable { .. } => "cmdline-not-printable",
        }
    }
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::TooLong => write!(
                f,
                "command line has no NUL terminator within {MAX_CMDLINE_LEN} bytes: too long \
                 or unterminated"
            ),
            CmdlineError::NotPrintable { offset, byte } => write!(
                f,
                "command line byte {offset} is {byte:#04x}, not printable ASCII: only \
                 printable ASCII, spaces and tabs are accepted"
            ),
        }
    }
}

/// Extracts the command line from `window`, the bytes read at the command line's physical
/// address (normally `MAX_CMDLINE_LEN + 1` of them; only that many are looked at).
pub fn from_nul_terminated(window: &[u8]) -> Result<&str, CmdlineError> {
    let window = &window[..window.len().min(MAX_CMDLINE_LEN + 1)];
    let len = window
        .iter()
        .position(|&b| b == 0)
        .ok_or(CmdlineError::TooLong)?;
    let text = &window[..len];
    if let Some(offset) = text
        .iter()
        .position(|&b| !(b.is_ascii_graphic() || b == b' ' || b == b'\t'))
    {
        return Err(CmdlineError::NotPrintable {
            offset,
            byte: text[offset],
        });
    }
    // Cannot fail: every byte was just checked to be ASCII.
    core::str::from_utf8(text).map_err(|e| CmdlineError::NotPrintable {
        offset: e.valid_up_to(),
        byte: text[e.valid_up_to()],
    })
}

/// A self-test that deliberately crashes the kernel, to check that the crash is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// `selftest=fault`: take a page fault on an unmapped address.
    Fault,
    /// `selftest=stack-overflow`: recurse into the stack's guard page.
    StackOverflow,
    /// `selftest=panic`: panic on purpose.
    Panic,
}

/// How page tables are updated, when the command line forces a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// `paging=direct`: PTEs written in place (any boot but Xen PV).
    Direct,
    /// `paging=xen-pv-mmu`: `mmu_update` hypercalls (a Xen PV boot only).
    XenPv,
}

/// Which clock to use, when the command line forces one; each is used only if it exists here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockChoice {
    Kvmclock,
    XenPvclock,
    Tsc,
    Hpet,
    PmTimer,
}

/// How I/O drivers learn that the device finished a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Halt until the device's interrupt (default).
    Interrupt,
    /// Spin on the used ring.
    Poll,
}

/// How a PCI device's interrupt reaches the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciInterrupt {
    /// A message through MSI-X when the function has it, else INTx (default).
    Msix,
    /// Always the legacy INTx pin through the IOAPIC, MSI-X left disabled.
    Intx,
}

/// The options the kernel understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `log=error|warn|info|debug|trace|off`; default `info`.
    pub log_level: LevelFilter,
    /// `selftest=fault|stack-overflow|panic`; default none.
    pub selftest: Option<SelfTest>,
    /// `seed=<u64>`, decimal or `0x` hexadecimal; default none.
    pub seed: Option<u64>,
    /// `paging=direct|xen-pv-mmu`; default: what the boot protocol calls for.
    pub paging: Option<Paging>,
    /// `mmu-batch=on|off`: whether the Xen PV MMU queues page-table updates and sends them
    /// in batches (default), or makes one hypercall per update, for comparison.
    pub mmu_batch: bool,
    /// `tests=on|off`: run the self-tests (`off` with `bench=off` only boots, for timing).
    pub tests: bool,
    /// `bench=on|off`: run the benchmarks.
    pub bench: bool,
    /// `clock=kvmclock|xen-pvclock|tsc|hpet|pmtimer`; default: the platform's choice.
    pub clock: Option<ClockChoice>,
    /// `host-time=<unix seconds>`: the host's wall clock when it launched the machine, which
    /// the wall-clock self-test compares with; xtask passes it.
    pub host_time: Option<u64>,
    /// `io-completion=interrupt|poll`: how drivers wait for their devices.
    pub io_completion: Completion,
    /// `pci-irq=msix|intx`: how PCI devices interrupt.
    pub pci_irq: PciInterrupt,
    /// `net-echo=<seconds>`: serve UDP echo on port 7 until the host sends its end marker,
    /// for at most this long; xtask passes it when it forwards a host port.
    pub net_echo_secs: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log_level: LevelFilter::Info,
            selftest: None,
            seed: None,
            paging: None,
            mmu_batch: true,
            tests: true,
            bench: true,
            clock: None,
            host_time: None,
            io_completion: Completion::Interrupt,
            pci_irq: PciInterrupt::Msix,
            net_echo_secs: None,
        }
    }
}

/// A problem with one word of the command line; the word is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    /// A key (or a bare word without `=`) that the kernel does not know.
    UnknownOption { key: &'a str },
    /// A known key written without `=value`.
    MissingValue {
        key: &'a str,
        expected: &'static str,
    },
    /// A known key with a value it cannot take.
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownOption { key } => write!(f, "unknown option '{key}' ignored"),
            Warning::MissingValue { key, expected } => {
                write!(
                    f,
                    "option '{key}' needs a value (expected {expected}) ignored"
                )
            }
            Warning::BadValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "bad value '{value}' for '{key}' (expected {expected}) ignored"
            ),
        }
    }
}

const LOG_LEVELS: &str = "error|warn|info|debug|trace|off";
const SELFTESTS: &str = "fault|stack-overflow|panic";
const SEED: &str = "a decimal or 0x-prefixed hexadecimal u64";
const PAGING: &str = "direct|xen-pv-mmu";
const ON_OFF: &str = "on|off";
const CLOCKS: &str = "kvmclock|xen-pvclock|tsc|hpet|pmtimer";
const HOST_TIME: &str = "seconds since the Unix epoch";
const COMPLETIONS: &str = "interrupt|poll";
const PCI_INTERRUPTS: &str = "msix|intx";
const NET_ECHO: &str = "seconds to serve the UDP echo";
/// Linux's `size@base:irq` device entries; `devices::virtio_mmio` reads them from the raw
/// command line, since there may be several.
pub const VIRTIO_MMIO_DEVICE: &str = "virtio_mmio.device";

/// Parses `cmdline` into [`Options`], calling `warn` for each word it ignores. When a key
/// appears twice, the last valid value wins, as on Linux.
pub fn parse(cmdline: &str, mut warn: impl FnMut(Warning<'_>)) -> Options {
    let mut options = Options::default();
    for word in cmdline.split([' ', '\t']).filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (word, None),
        };
        let expected = match key {
            "log" => LOG_LEVELS,
            "selftest" => SELFTESTS,
            "seed" => SEED,
            "paging" => PAGING,
            "mmu-batch" | "tests" | "bench" => ON_OFF,
            "clock" => CLOCKS,
            "host-time" => HOST_TIME,
            "io-completion" => COMPLETIONS,
            "pci-irq" => PCI_INTERRUPTS,
            "net-echo" => NET_ECHO,
            VIRTIO_MMIO_DEVICE => continue,
            _ => {
                warn(Warning::UnknownOption { key });
                continue;
            }
        };
        let Some(value) = value else {
            warn(Warning::MissingValue { key, expected });
            continue;
        };
        let accepted = match key {
            "log" => parse_level(value).map(|level| options.log_level = level),
            "selftest" => parse_selftest(value).map(|test| options.selftest = Some(test)),
            "paging" => parse_paging(value).map(|paging| options.paging = Some(paging)),
            "mmu-batch" => parse_on_off(value).map(|on| options.mmu_batch = on),
            "tests" => parse_on_off(value).map(|on| options.tests = on),
            "bench" => parse_on_off(value).map(|on| options.bench = on),
            "clock" => parse_clock(value).map(|clock| options.clock = Some(clock)),
            "host-time" => parse_u64(value).map(|secs| options.host_time = Some(secs)),
            "io-completion" => parse_completion(value).map(|c| options.io_completion = c),
            "pci-irq" => parse_pci_interrupt(value).map(|irq| options.pci_irq = irq),
            "net-echo" => parse_u64(value).map(|secs| options.net_echo_secs = Some(secs)),
            _ => parse_u64(value).map(|seed| options.seed = Some(seed)),
        };
        if accepted.is_none() {
            warn(Warning::BadValue {
                key,
                value,
                expected,
            });
        }
    }
    options
}

fn parse_level(value: &str) -> Option<LevelFilter> {
    [
        ("error", LevelFilter::Error),
        ("warn", LevelFilter::Warn),
        ("info", LevelFilter::Info),
        ("debug", LevelFilter::Debug),
        ("trace", LevelFilter::Trace),
        ("off", LevelFilter::Off),
    ]
    .into_iter()
    .find(|(name, _)| value.eq_ignore_ascii_case(name))
    .map(|(_, level)| level)
}

fn parse_completion(value: &str) -> Option<Completion> {
    match value {
        "interrupt" => Some(Completion::Interrupt),
        "poll" => Some(Completion::Poll),
        _ => None,
    }
}

fn parse_pci_interrupt(value: &str) -> Option<PciInterrupt> {
    match value {
        "msix" => Some(PciInterrupt::Msix),
        "intx" => Some(PciInterrupt::Intx),
        _ => None,
    }
}

fn parse_paging(value: &str) -> Option<Paging> {
    match value {
        "direct" => Some(Paging::Direct),
        "xen-pv-mmu" => Some(Paging::XenPv),
        _ => None,
    }
}

fn parse_clock(value: &str) -> Option<ClockChoice> {
    match value {
        "kvmclock" => Some(ClockChoice::Kvmclock),
        "xen-pvclock" => Some(ClockChoice::XenPvclock),
        "tsc" => Some(ClockChoice::Tsc),
        "hpet" => Some(ClockChoice::Hpet),
        "pmtimer" => Some(ClockChoice::PmTimer),
        _ => None,
    }
}

fn parse_on_off(value: &str) -> Option<bool> {
    match value {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

fn parse_selftest(value: &str) -> Option<SelfTest> {
    match value {
        "fault" => Some(SelfTest::Fault),
        "stack-overflow" => Some(SelfTest::StackOverflow),
        "panic" => Some(SelfTest::Panic),
        _ => None,
    }
}

/// Decimal or `0x`/`0X` hexadecimal, digits only: `from_str_radix` alone would also take a
/// sign (`0x+5`).
fn parse_u64(value: &str) -> Option<u64> {
    let (digits, radix) = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => (hex, 16),
        None => (value, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift64 as Rng;
    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;

    fn parse_collecting(cmdline: &str) -> (Options, Vec<String>) {
        let mut warnings = Vec::new();
        let options = parse(cmdline, |w| warnings.push(w.to_string()));
        (options, warnings)
    }

    #[test]
    fn extracts_up_to_the_nul() {
        assert_eq!(
            from_nul_terminated(b"log=debug seed=7\0garbage\xff"),
            Ok("log=debug seed=7")
        );
        assert_eq!(from_nul_terminated(b"\0"), Ok(""));
        assert_eq!(from_nul_terminated(b"a\tb\0"), Ok("a\tb"));
    }

    #[test]
    fn longest_line_is_accepted_one_more_is_too_long() {
        let mut window = vec![b'a'; MAX_CMDLINE_LEN + 1];
        window[MAX_CMDLINE_LEN] = 0;
        assert_eq!(from_nul_terminated(&window).unwrap().len(), MAX_CMDLINE_LEN);

        let mut window = vec![b'a'; MAX_CMDLINE_LEN + 2];
        window[MAX_CMDLINE_LEN + 1] = 0;
        let err = from_nul_terminated(&window).unwrap_err();
        assert_eq!(err, CmdlineError::TooLong);
        assert_eq!(err.reason(), "cmdline-too-long");
        assert_eq!(
            err.to_string(),
            "command line has no NUL terminator within 2048 bytes: too long or unterminated"
        );
    }

    #[test]
    fn unterminated_short_window_is_too_long() {
        assert_eq!(from_nul_terminated(b""), Err(CmdlineError::TooLong));
        assert_eq!(from_nul_terminated(b"log=info"), Err(CmdlineError::TooLong));
    }

    #[test]
    fn control_and_non_ascii_bytes_are_refused_with_their_offset() {
        let err = from_nul_terminated(b"log=info\nseed=1\0").unwrap_err();
        assert_eq!(
            err,
            CmdlineError::NotPrintable {
                offset: 8,
                byte: b'\n'
            }
        );
        assert_eq!(err.reason(), "cmdline-not-printable");
        assert_eq!(
            from_nul_terminated("caf\u{e9}\0".as_bytes()),
            Err(CmdlineError::NotPrintable {
                offset: 3,
                byte: 0xc3
            })
        );
        assert_eq!(
            from_nul_terminated(b"\x7f\0"),
            Err(CmdlineError::NotPrintable {
                offset: 0,
                byte: 0x7f
            })
        );
    }

    #[test]
    fn empty_command_line_gives_defaults_silently() {
        let (options, warnings) = parse_collecting("");
        assert_eq!(options, Options::default());
        assert_eq!(options.log_level, LevelFilter::Info);
        assert!(warnings.is_empty());
        assert_eq!(parse_collecting(" \t  ").1.len(), 0);
    }

    #[test]
    fn known_options_are_parsed() {
        let (options, warnings) = parse_collecting(
            "log=debug\tselftest=stack-overflow  seed=0x2A paging=xen-pv-mmu mmu-batch=off \
             clock=hpet host-time=1795264496 io-completion=poll pci-irq=intx net-echo=30 \
             tests=off bench=off virtio_mmio.device=512@0xfeb00e00:12",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            options,
            Options {
                log_level: LevelFilter::Debug,
                selftest: Some(SelfTest::StackOverflow),
                seed: Some(42),
                paging: Some(Paging::XenPv),
                mmu_batch: false,
                tests: false,
                bench: false,
                clock: Some(ClockChoice::Hpet),
                host_time: Some(1_795_264_496),
                io_completion: Completion::Poll,
                pci_irq: PciInterrupt::Intx,
                net_echo_secs: Some(30),
            }
        );
        assert_eq!(
            parse_collecting("io-completion=busy").1,
            ["bad value 'busy' for 'io-completion' (expected interrupt|poll) ignored"]
        );
        for (name, clock) in [
            ("kvmclock", ClockChoice::Kvmclock),
            ("xen-pvclock", ClockChoice::XenPvclock),
            ("tsc", ClockChoice::Tsc),
            ("pmtimer", ClockChoice::PmTimer),
        ] {
            let line = alloc::format!("clock={name}");
            assert_eq!(parse_collecting(&line).0.clock, Some(clock));
        }
        assert_eq!(
            parse_collecting("clock=jiffies host-time=-1").1,
            [
                "bad value 'jiffies' for 'clock' (expected kvmclock|xen-pvclock|tsc|hpet|pmtimer) \
                 ignored",
                "bad value '-1' for 'host-time' (expected seconds since the Unix epoch) ignored",
            ]
        );
        assert_eq!(
            parse_collecting("paging=direct").0.paging,
            Some(Paging::Direct)
        );
        assert_eq!(
            parse_collecting("paging=shadow").1,
            ["bad value 'shadow' for 'paging' (expected direct|xen-pv-mmu) ignored"]
        );
        let (options, _) = parse_collecting("log=off selftest=fault seed=18446744073709551615");
        assert_eq!(options.log_level, LevelFilter::Off);
        assert_eq!(options.selftest, Some(SelfTest::Fault));
        assert_eq!(options.seed, Some(u64::MAX));
    }

    #[test]
    fn tests_and_bench_are_on_unless_turned_off() {
        let defaults = Options::default();
        assert!(defaults.tests && defaults.bench);
        let (options, warnings) = parse_collecting("bench=off");
        assert!(options.tests && !options.bench && warnings.is_empty());
        assert_eq!(
            parse_collecting("tests=no").1,
            ["bad value 'no' for 'tests' (expected on|off) ignored"]
        );
    }

    #[test]
    fn pci_irq_takes_msix_or_intx_and_warns_on_anything_else() {
        assert_eq!(Options::default().pci_irq, PciInterrupt::Msix);
        assert_eq!(
            parse_collecting("pci-irq=intx pci-irq=msix").0.pci_irq,
            PciInterrupt::Msix
        );
        assert_eq!(
            parse_collecting("pci-irq=msix pci-irq=intx").0.pci_irq,
            PciInterrupt::Intx
        );
        for bad in ["msi", "INTX", "", "intx,msix"] {
            let line = alloc::format!("pci-irq={bad}");
            let (options, warnings) = parse_collecting(&line);
            assert_eq!(options.pci_irq, PciInterrupt::Msix, "{bad}");
            assert_eq!(
                warnings,
                [alloc::format!(
                    "bad value '{bad}' for 'pci-irq' (expected msix|intx) ignored"
                )]
            );
        }
        assert_eq!(
            parse_collecting("pci-irq").1,
            ["option 'pci-irq' needs a value (expected msix|intx) ignored"]
        );
    }

    #[test]
    fn every_log_level_is_known() {
        for (name, level) in [
            ("error", LevelFilter::Error),
            ("warn", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("debug", LevelFilter::Debug),
            ("trace", LevelFilter::Trace),
            ("off", LevelFilter::Off),
        ] {
            let line = alloc::format!("log={name}");
            assert_eq!(parse_collecting(&line).0.log_level, level);
        }
    }

    #[test]
    fn unknown_options_warn_and_are_ignored() {
        let (options, warnings) = parse_collecting("frobnicate=1 quiet log=trace");
        assert_eq!(options.log_level, LevelFilter::Trace);
        assert_eq!(
            warnings,
            [
                "unknown option 'frobnicate' ignored",
                "unknown option 'quiet' ignored"
            ]
        );
        assert_eq!(
            parse_collecting("frobnicate").1,
            ["unknown option 'frobnicate' ignored"]
        );
    }

    #[test]
    fn bad_values_warn_and_keep_the_default() {
        let (options, warnings) = parse_collecting("log=loud selftest=explode seed=12ab seed=");
        assert_eq!(options, Options::default());
        assert_eq!(
            warnings,
            [
                "bad value 'loud' for 'log' (expected error|warn|info|debug|trace|off) ignored",
                "bad value 'explode' for 'selftest' (expected fault|stack-overflow|panic) ignored",
                "bad value '12ab' for 'seed' (expected a decimal or 0x-prefixed hexadecimal \
                 u64) ignored",
                "bad value '' for 'seed' (expected a decimal or 0x-prefixed hexadecimal u64) \
                 ignored",
            ]
        );
    }

    #[test]
    fn known_key_without_value_warns() {
        let (options, warnings) = parse_collecting("log");
        assert_eq!(options.log_level, LevelFilter::Info);
        assert_eq!(
            warnings,
            ["option 'log' needs a value (expected error|warn|info|debug|trace|off) ignored"]
        );
    }

    #[test]
    fn seeds_refuse_signs_overflow_and_empty_hex() {
        for bad in [
            "+5",
            "-5",
            "0x",
            "0x+5",
            "18446744073709551616",
            "0x1_0",
            "1e3",
        ] {
            let line = alloc::format!("seed={bad}");
            let (options, warnings) = parse_collecting(&line);
            assert_eq!(options.seed, None, "{bad}");
            assert_eq!(warnings.len(), 1, "{bad}");
        }
        assert_eq!(parse_collecting("seed=0XfF").0.seed, Some(255));
        assert_eq!(parse_collecting("seed=007").0.seed, Some(7));
    }

    #[test]
    fn last_valid_value_wins() {
        let (options, warnings) = parse_collecting("log=debug log=warn log=bogus");
        assert_eq!(options.log_level, LevelFilter::Warn);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn value_may_contain_equals() {
        let (_, warnings) = parse_collecting("log=info=debug");
        assert_eq!(
            warnings,
            ["bad value 'info=debug' for 'log' (expected error|warn|info|debug|trace|off) ignored"]
        );
    }

    #[test]
    fn random_windows_never_panic_and_accepted_lines_are_printable_and_bounded() {
        let mut rng = Rng::new(0xdead_beef_cafe_f00d);
        let alphabet = b"log=seed=selftest=0x123 \tfault-stack-overflow\0\n\x7f\xff";
        for round in 0..5000 {
            let len = (rng.next_u64() % (MAX_CMDLINE_LEN as u64 + 64)) as usize;
            let len = if round % 2 == 0 { len % 64 } else { len };
            let window: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next_u64();
                    if r.is_multiple_of(4) {
                        r as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            match from_nul_terminated(&window) {
                Ok(line) => {
                    assert!(line.len() <= MAX_CMDLINE_LEN);
                    assert_eq!(window[line.len()], 0);
                    assert!(
                        line.bytes()
                            .all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
                    );
                    let mut warned = 0;
                    let options = parse(line, |w| {
                        let text = w.to_string();
                        assert!(text.ends_with(" ignored"), "{text}");
                        warned += 1;
                    });
                    assert!(warned <= line.len());
                    if !line.contains("seed=") {
                        assert_eq!(options.seed, None);
                    }
                    if !line.contains("selftest=") {
                        assert_eq!(options.selftest, None);
                    }
                }
                Err(CmdlineError::TooLong) => {
                    assert!(!window.iter().take(MAX_CMDLINE_LEN + 1).any(|&b| b == 0));
                }
                Err(CmdlineError::NotPrintable { offset, byte }) => {
                    assert_eq!(window[offset], byte);
                    assert!(offset < MAX_CMDLINE_LEN + 1);
                }
            }
        }
    }
}
