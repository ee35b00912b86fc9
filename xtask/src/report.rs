//! The kernel's output contract: `@janus` machine lines parsed into typed records, a whole
//! run gathered into a [`Report`], and the [`Verdict`] on a run.
//!
//! Machine lines are `@janus <word> [k=v ...]` (DESIGN.md, "Output contract"). Values hold
//! no spaces but may hold `=`: a pair splits at its first `=`. Unknown words are kept, not
//! refused, so the kernel can add kinds of lines without breaking older tools; a known word
//! with a missing or unparsable field is a contract break and is reported.

use std::collections::BTreeMap;
use std::fmt;

use crate::devices::HostCheck;
use crate::qemu::{self, Outcome};
use crate::xen;

/// The prefix of every machine-readable line.
pub const PREFIX: &str = "@janus ";

/// QEMU's exit status for guest exit value 0x10 (`(value << 1) | 1`): all tests passed.
pub const STATUS_PASSED: i32 = 33;
/// Guest exit value 0x11: a test failed.
pub const STATUS_TEST_FAILED: i32 = 35;
/// Guest exit value 0x12: panic, fault or unusable boot information.
pub const STATUS_ABORTED: i32 = 37;

/// `key=value` pairs in the order-independent form the records keep them.
pub type Fields = BTreeMap<String, String>;

/// One parsed `@janus` line.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// `@janus env k=v ...`: where the kernel found itself and what it chose.
    Env(Fields),
    Test(Test),
    Bench(Bench),
    Done(Done),
    Abort(Abort),
    /// A word this tool does not know yet, with the rest of the line.
    Unknown {
        word: String,
        rest: String,
    },
}

/// `@janus test <name> pass|fail [reason=...]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Test {
    pub name: String,
    pub pass: bool,
    pub reason: Option<String>,
    /// Any other pairs.
    pub extra: Fields,
}

/// `@janus bench <id> unit=<u> n=<N> min=<v> median=<v> p99=<v> [k=v...]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bench {
    pub id: String,
    pub unit: String,
    pub n: u64,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    /// Any other pairs.
    pub extra: Fields,
}

/// `@janus done tests_passed=<N> tests_failed=<N> boot_us=<N>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub tests_passed: u64,
    pub tests_failed: u64,
    pub boot_us: u64,
    /// Any other pairs.
    pub extra: Fields,
}

/// `@janus abort kind=<fault|panic|boot-info> [k=v...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abort {
    pub kind: String,
    /// Every pair but `kind`.
    pub fields: Fields,
}

impl Abort {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The faulting instruction pointer, when the line carries one as `rip=0x...`.
    pub fn rip(&self) -> Option<u64> {
        parse_hex(self.get("rip")?)
    }
}

/// Why a `@janus` line does not follow the contract.
#[derive(Clone, Debug, PartialEq)]
pub enum ParseError {
    MissingWord,
    MissingName {
        word: &'static str,
    },
    BadOutcome {
        name: String,
        found: String,
    },
    NotKeyValue {
        token: String,
    },
    EmptyKey {
        token: String,
    },
    DuplicateKey {
        key: String,
    },
    MissingKey {
        word: &'static str,
        key: &'static str,
    },
    BadNumber {
        key: &'static str,
        value: String,
    },
    /// A bench line whose statistics are not `min <= median <= p99`.
    BadSpread {
        min: f64,
        median: f64,
        p99: f64,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::MissingWord => write!(f, "no word after `@janus`"),
            ParseError::MissingName { word } => write!(f, "`{word}` line without a name"),
            ParseError::BadOutcome { name, found } => {
                write!(f, "test {name}: expected pass or fail, found `{found}`")
            }
            ParseError::NotKeyValue { token } => write!(f, "`{token}` is not key=value"),
            ParseError::EmptyKey { token } => write!(f, "`{token}` has an empty key"),
            ParseError::DuplicateKey { key } => write!(f, "key `{key}` given twice"),
            ParseError::MissingKey { word, key } => write!(f, "`{word}` line without `{key}=`"),
            ParseError::BadNumber { key, value } => {
                write!(f, "`{key}={value}` is not a finite number")
            }
            ParseError::BadSpread { min, median, p99 } => write!(
                f,
                "min={min} median={median} p99={p99} are not min <= median <= p99"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one console line: `None` when it is not a machine line at all.
pub fn parse_line(line: &str) -> Option<Result<Record, ParseError>> {
    let body = line.trim_end().strip_prefix(PREFIX.trim_end())?;
    if !body.is_empty() && !body.starts_with(char::is_whitespace) {
        // `@janusfoo` is some other text, not a machine line.
        return None;
    }
    Some(parse_body(body))
}

fn parse_body(body: &str) -> Result<Record, ParseError> {
    let mut tokens = body.split_whitespace();
    let word = tokens.next().ok_or(ParseError::MissingWord)?;
    match word {
        "env" => Ok(Record::Env(fields(tokens)?)),
        "test" => parse_test(tokens).map(Record::Test),
        "bench" => parse_bench(tokens).map(Record::Bench),
        "done" => parse_done(tokens).map(Record::Done),
        "abort" => parse_abort(tokens).map(Record::Abort),
        other => Ok(Record::Unknown {
            word: other.to_string(),
            rest: tokens.collect::<Vec<_>>().join(" "),
        }),
    }
}

fn fields<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<Fields, ParseError> {
    let mut fields = Fields::new();
    for token in tokens {
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| ParseError::NotKeyValue {
                token: token.to_string(),
            })?;
        if key.is_empty() {
            return Err(ParseError::EmptyKey {
                token: token.to_string(),
            });
        }
        if fields.insert(key.to_string(), value.to_string()).is_some() {
            return Err(ParseError::DuplicateKey {
                key: key.to_string(),
            });
        }
    }
    Ok(fields)
}

/// The first token, which must be a bare name, not a pair.
fn name<'a>(
    tokens: &mut impl Iterator<Item = &'a str>,
    word: &'static str,
) -> Result<String, ParseError> {
    match tokens.next() {
        Some(name) if !name.contains('=') => Ok(name.to_string()),
        _ => Err(ParseError::MissingName { word }),
    }
}

fn take(fields: &mut Fields, word: &'static str, key: &'static str) -> Result<String, ParseError> {
    fields
        .remove(key)
        .ok_or(ParseError::MissingKey { word, key })
}

fn take_u64(fields: &mut Fields, word: &'static str, key: &'static str) -> Result<u64, ParseError> {
    let value = take(fields, word, key)?;
    value
        .parse()
        .map_err(|_| ParseError::BadNumber { key, value })
}

fn take_f64(fields: &mut Fields, word: &'static str, key: &'static str) -> Result<f64, ParseError> {
    let value = take(fields, word, key)?;
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ParseError::BadNumber { key, value }),
    }
}

fn parse_test<'a>(mut tokens: impl Iterator<Item = &'a str>) -> Result<Test, ParseError> {
    let name = name(&mut tokens, "test")?;
    let pass = match tokens.next() {
        Some("pass") => true,
        Some("fail") => false,
        found => {
            return Err(ParseError::BadOutcome {
                name,
                found: found.unwrap_or("").to_string(),
            });
        }
    };
    let mut extra = fields(tokens)?;
    let reason = extra.remove("reason");
    Ok(Test {
        name,
        pass,
        reason,
        extra,
    })
}

fn parse_bench<'a>(mut tokens: impl Iterator<Item = &'a str>) -> Result<Bench, ParseError> {
    let id = name(&mut tokens, "bench")?;
    let mut f = fields(tokens)?;
    let bench = Bench {
        id,
        unit: take(&mut f, "bench", "unit")?,
        n: take_u64(&mut f, "bench", "n")?,
        min: take_f64(&mut f, "bench", "min")?,
        median: take_f64(&mut f, "bench", "median")?,
        p99: take_f64(&mut f, "bench", "p99")?,
        extra: f,
    };
    if !(bench.min <= bench.median && bench.median <= bench.p99) {
        return Err(ParseError::BadSpread {
            min: bench.min,
            median: bench.median,
            p99: bench.p99,
        });
    }
    Ok(bench)
}

fn parse_done<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<Done, ParseError> {
    let mut f = fields(tokens)?;
    Ok(Done {
        tests_passed: take_u64(&mut f, "done", "tests_passed")?,
        tests_failed: take_u64(&mut f, "done", "tests_failed")?,
        boot_us: take_u64(&mut f, "done", "boot_us")?,
        extra: f,
    })
}

fn parse_abort<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<Abort, ParseError> {
    let mut fields = fields(tokens)?;
    let kind = take(&mut fields, "abort", "kind")?;
    Ok(Abort { kind, fields })
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    // from_str_radix would take a sign too.
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// One frame of a fault backtrace: a console line `  bt #<n> 0x<hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub index: u32,
    pub address: u64,
}

/// Parses a backtrace line (`^\s*bt #<n> 0x<hex>$`).
pub fn parse_backtrace_frame(line: &str) -> Option<Frame> {
    let rest = line.trim().strip_prefix("bt #")?;
    let (index, address) = rest.split_once(' ')?;
    if !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Frame {
        index: index.parse().ok()?,
        address: parse_hex(address)?,
    })
}

/// A machine line that broke the contract.
#[derive(Clone, Debug, PartialEq)]
pub struct Malformed {
    /// 1-based console line number.
    pub line_number: usize,
    pub line: String,
    pub error: ParseError,
}

/// A line the contract allows once, seen again.
#[derive(Clone, Debug, PartialEq)]
pub struct Repeated {
    pub line_number: usize,
    pub word: &'static str,
}

/// Everything a run printed, sorted by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub env: Option<Fields>,
    pub tests: Vec<Test>,
    pub benches: Vec<Bench>,
    pub done: Option<Done>,
    pub abort: Option<Abort>,
    pub backtrace: Vec<Frame>,
    pub malformed: Vec<Malformed>,
    pub repeated: Vec<Repeated>,
}

impl Report {
    /// Gathers the records of a console, reading each line without the prefix Xen's
    /// console may put before the guest's text.
    pub fn from_lines<S: AsRef<str>>(lines: &[S]) -> Report {
        let mut report = Report::default();
        for (i, line) in lines.iter().enumerate() {
            let line = xen::console::split_prefix(line.as_ref()).1;
            let line_number = i + 1;
            if let Some(frame) = parse_backtrace_frame(line) {
                report.backtrace.push(frame);
                continue;
            }
            match parse_line(line) {
                None => {}
                Some(Err(error)) => report.malformed.push(Malformed {
                    line_number,
                    line: line.to_string(),
                    error,
                }),
                Some(Ok(record)) => report.add(line_number, record),
            }
        }
        report
    }

    fn add(&mut self, line_number: usize, record: Record) {
        fn once<T>(slot: &mut Option<T>, value: T) -> bool {
            let first = slot.is_none();
            if first {
                *slot = Some(value);
            }
            first
        }
        let repeated = match record {
            Record::Env(fields) => (!once(&mut self.env, fields)).then_some("env"),
            Record::Done(done) => (!once(&mut self.done, done)).then_some("done"),
            Record::Abort(abort) => (!once(&mut self.abort, abort)).then_some("abort"),
            Record::Test(test) => {
                self.tests.push(test);
                None
            }
            Record::Bench(bench) => {
                self.benches.push(bench);
                None
            }
            // Lines from a newer kernel that this tool cannot judge yet.
            Record::Unknown { .. } => None,
        };
        if let Some(word) = repeated {
            self.repeated.push(Repeated { line_number, word });
        }
    }

    /// A value of the `@janus env` line.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.as_ref()?.get(key).map(String::as_str)
    }

    pub fn test(&self, name: &str) -> Option<&Test> {
        self.tests.iter().find(|t| t.name == name)
    }

    pub fn bench(&self, id: &str) -> Option<&Bench> {
        self.benches.iter().find(|b| b.id == id)
    }

    pub fn failed_tests(&self) -> impl Iterator<Item = &Test> {
        self.tests.iter().filter(|t| !t.pass)
    }
}

/// What a run amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictKind {
    /// Status 33, and the output agrees.
    Pass,
    /// Status 35: the kernel ran to the end and a test failed.
    TestsFailed,
    /// Status 33 and the output agrees, but a host check of the devices failed: what the
    /// kernel did with them did not reach the host as it should have.
    HostCheckFailed,
    /// Status 37 with `@janus abort kind=fault`.
    Fault,
    /// Status 37 with `@janus abort kind=panic`.
    Panic,
    /// Status 37 with `@janus abort kind=boot-info`: the kernel refused what the host gave it.
    BadBootInfo,
    /// Status 37 with an abort of another kind, or without an abort line.
    Aborted,
    /// Killed at the timeout.
    Timeout,
    /// Nothing on the console at all.
    NoOutput,
    /// QEMU exited with a status the kernel never asks for (QEMU error, crash, signal).
    QemuFailed,
    /// Status 33 while the output says otherwise, or a malformed `@janus` line.
    Inconsistent,
    /// Xen panicked or reported that dom0 crashed.
    XenFatal,
    /// The guest stopped without writing an exit value: under Xen, a shutdown hypercall or
    /// a triple fault.
    NoExitStatus,
}

impl VerdictKind {
    /// What `cargo xtask run` exits with: 0 passed, 1 a test failed, 2 anything else.
    pub fn exit_code(self) -> u8 {
        match self {
            VerdictKind::Pass => 0,
            VerdictKind::TestsFailed | VerdictKind::HostCheckFailed => 1,
            _ => 2,
        }
    }

    fn word(self) -> &'static str {
        match self {
            VerdictKind::Pass => "PASS",
            VerdictKind::TestsFailed | VerdictKind::HostCheckFailed => "FAIL",
            VerdictKind::Fault => "FAULT",
            VerdictKind::Panic => "PANIC",
            VerdictKind::BadBootInfo => "BOOT-INFO",
            VerdictKind::Aborted => "ABORT",
            VerdictKind::Timeout => "TIMEOUT",
            VerdictKind::NoOutput => "NO-OUTPUT",
            VerdictKind::QemuFailed => "QEMU-ERROR",
            VerdictKind::Inconsistent => "INCONSISTENT",
            VerdictKind::XenFatal => "XEN-FATAL",
            VerdictKind::NoExitStatus => "NO-EXIT-STATUS",
        }
    }
}

/// The one-line judgement on a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// The environment, e.g. `tcg/microvm`.
    pub label: String,
    pub detail: String,
}

impl Verdict {
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = if self.kind == VerdictKind::Timeout {
            " "
        } else {
            ": "
        };
        write!(
            f,
            "janus: {} {}{separator}{}",
            self.kind.word(),
            self.label,
            self.detail
        )
    }
}

/// How much of the command line a verdict quotes; a 4 KiB garbage line would drown it.
const CMDLINE_QUOTE_MAX: usize = 48;

/// Judges a run from QEMU's status, the kernel's output and the host's checks.
///
/// `label` names the environment (`tcg/microvm`); `cmdline` is quoted in the verdict of an
/// abort, where it usually says which self-test was asked for.
pub fn verdict(label: &str, cmdline: &str, outcome: &Outcome, report: &Report) -> Verdict {
    let (kind, detail) = judge(cmdline, outcome, report);
    let (kind, detail) = add_host_checks(kind, detail, &outcome.host_checks);
    Verdict {
        kind,
        label: label.to_string(),
        detail,
    }
}

fn judge(cmdline: &str, outcome: &Outcome, report: &Report) -> (VerdictKind, String) {
    let last_line = match outcome.last_console_line() {
        Some(line) => format!("last line: {line}"),
        None => "no console output".to_string(),
    };
    if let Some(kvm) = outcome.stderr.iter().find(|l| qemu::kvm_internal_error(l)) {
        return (
            VerdictKind::QemuFailed,
            format!(
                "{}: KVM could not go on with the guest and QEMU paused it; {last_line}",
                kvm.trim()
            ),
        );
    }
    if let Some(limit) = outcome.timed_out_after {
        return (
            VerdictKind::Timeout,
            format!("after {} s; {last_line}", limit.as_secs_f64()),
        );
    }
    let status = match outcome.status {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    let qemu_said = outcome
        .stderr
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!("; QEMU said: {}", l.trim()))
        .unwrap_or_default();
    if outcome.last_console_line().is_none() {
        return (
            VerdictKind::NoOutput,
            format!("QEMU ended with {status} and nothing on the console{qemu_said}"),
        );
    }
    match outcome.status {
        Some(STATUS_PASSED) => judge_passed(report),
        Some(STATUS_TEST_FAILED) => (VerdictKind::TestsFailed, describe_failures(report)),
        Some(STATUS_ABORTED) => judge_abort(cmdline, report, &last_line),
        _ => (
            VerdictKind::QemuFailed,
            format!("QEMU ended with {status}, not a Janus exit value; {last_line}{qemu_said}"),
        ),
    }
}

/// Fails a passing run on a failed host check, and names failed host checks beside failed
/// tests. After an abort or a timeout the verdict stays what it is: the `host:` lines say
/// the rest.
fn add_host_checks(
    kind: VerdictKind,
    detail: String,
    checks: &[HostCheck],
) -> (VerdictKind, String) {
    let failed: Vec<&HostCheck> = checks.iter().filter(|c| c.failed()).collect();
    let what = match failed[..] {
        [] => return (kind, detail),
        [one] => format!("host check failed: {}: {}", one.name, one.detail),
        ref several => format!(
            "{} host checks failed: {}",
            several.len(),
            several
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    match kind {
        VerdictKind::Pass => (
            VerdictKind::HostCheckFailed,
            format!("{what}; the kernel reported {detail}"),
        ),
        VerdictKind::TestsFailed => (kind, format!("{detail}; {what}")),
        _ => (kind, detail),
    }
}

fn judge_passed(report: &Report) -> (VerdictKind, String) {
    let claim = "exit status 33 (all passed)";
    let inconsistent = |why: String| (VerdictKind::Inconsistent, format!("{claim} but {why}"));
    if let Some(m) = report.malformed.first() {
        return inconsistent(format!(
            "console line {} breaks the @janus contract ({}): {}",
            m.line_number, m.error, m.line
        ));
    }
    if let Some(r) = report.repeated.first() {
        return inconsistent(format!(
            "console line {} is a second `@janus {}` line",
            r.line_number, r.word
        ));
    }
    if let Some(abort) = &report.abort {
        return inconsistent(format!(
            "the kernel printed `@janus abort kind={}`",
            abort.kind
        ));
    }
    if let Some(test) = report.failed_tests().next() {
        return inconsistent(format!("test {} failed", describe_test(test)));
    }
    let Some(done) = &report.done else {
        return inconsistent("no `@janus done` line".to_string());
    };
    let passed = report.tests.len() as u64;
    if done.tests_failed != 0 || done.tests_passed != passed {
        return inconsistent(format!(
            "`@janus done` says tests_passed={} tests_failed={} while {passed} test lines passed",
            done.tests_passed, done.tests_failed
        ));
    }
    (
        VerdictKind::Pass,
        format!(
            "{passed} tests passed, 0 failed, {} benches, boot {} us",
            report.benches.len(),
            done.boot_us
        ),
    )
}

fn describe_test(test: &Test) -> String {
    match &test.reason {
        Some(reason) => format!("{} (reason={reason})", test.name),
        None => test.name.clone(),
    }
}

fn describe_failures(report: &Report) -> String {
    let failed: Vec<String> = report.failed_tests().map(describe_test).collect();
    if failed.is_empty() {
        return "exit status 35 (a test failed) but no `@janus test ... fail` line".to_string();
    }
    format!(
        "{} of {} tests failed: {}",
        failed.len(),
        report.tests.len(),
        failed.join(", ")
    )
}

fn judge_abort(cmdline: &str, report: &Report, last_line: &str) -> (VerdictKind, String) {
    let context = if cmdline.trim().is_empty() {
        String::new()
    } else {
        format!(" ({})", quote_cmdline(cmdline.trim()))
    };
    let Some(abort) = &report.abort else {
        return (
            VerdictKind::Aborted,
            format!("exit status 37 (panic or fault) without an `@janus abort` line; {last_line}"),
        );
    };
    let others = |skip: &[&str]| {
        abort
            .fields
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    match abort.kind.as_str() {
        "fault" => {
            let what = match (abort.get("exception"), abort.get("vector")) {
                (Some(exception), _) => exception.to_string(),
                (None, Some(vector)) => format!("vector {vector}"),
                (None, None) => "fault".to_string(),
            };
            let mut detail = what;
            if let Some(rip) = abort.get("rip") {
                detail.push_str(&format!(" at rip={rip}"));
            }
            for pair in others(&["exception", "vector", "rip"]) {
                detail.push(' ');
                detail.push_str(&pair);
            }
            (VerdictKind::Fault, detail + &context)
        }
        "panic" => {
            let pairs = others(&[]);
            let detail = if pairs.is_empty() {
                format!("kernel panic; {last_line}")
            } else {
                pairs.join(" ")
            };
            (VerdictKind::Panic, detail + &context)
        }
        "boot-info" => (
            VerdictKind::BadBootInfo,
            format!(
                "the kernel refused its boot information: {}",
                others(&[]).join(" ")
            ) + &context,
        ),
        other => (
            VerdictKind::Aborted,
            format!("abort kind={other} {}", others(&[]).join(" "))
                .trim_end()
                .to_string()
                + &context,
        ),
    }
}

fn quote_cmdline(cmdline: &str) -> String {
    if cmdline.chars().count() <= CMDLINE_QUOTE_MAX {
        return cmdline.to_string();
    }
    let head: String = cmdline.chars().take(CMDLINE_QUOTE_MAX).collect();
    format!("{head}... ({} bytes)", cmdline.len())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::devices::CheckStatus;

    fn parse(line: &str) -> Record {
        parse_line(line)
            .expect("a machine line")
            .expect("a valid machine line")
    }

    fn error(line: &str) -> ParseError {
        parse_line(line)
            .expect("a machine line")
            .expect_err("a malformed machine line")
    }

    #[test]
    fn env_line_keeps_every_pair() {
        let Record::Env(env) = parse(
            "@janus env hypervisor=tcg boot=pvh paging=direct clock=tsc console=com1 cpus=1 mem_mib=127 tsc_khz=2400000",
        ) else {
            panic!("not an env record");
        };
        assert_eq!(env["hypervisor"], "tcg");
        assert_eq!(env["mem_mib"], "127");
        assert_eq!(env.len(), 8);
    }

    #[test]
    fn values_may_contain_equals_signs_and_be_empty() {
        let Record::Env(env) = parse("@janus env cmdline=a=b=c hypervisor=other:KVMKVMKVM x=")
        else {
            panic!("not an env record");
        };
        assert_eq!(env["cmdline"], "a=b=c");
        assert_eq!(env["hypervisor"], "other:KVMKVMKVM");
        assert_eq!(env["x"], "");
    }

    #[test]
    fn test_lines_with_and_without_reason() {
        assert_eq!(
            parse("@janus test heap pass"),
            Record::Test(Test {
                name: "heap".into(),
                pass: true,
                reason: None,
                extra: Fields::new()
            })
        );
        let Record::Test(t) = parse("@janus test mapper fail reason=pte=0x3 frames=2") else {
            panic!("not a test record");
        };
        assert!(!t.pass);
        assert_eq!(t.reason.as_deref(), Some("pte=0x3"));
        assert_eq!(t.extra["frames"], "2");
    }

    #[test]
    fn bench_line_with_decimals_and_extras() {
        let Record::Bench(b) = parse(
            "@janus bench pte-map-unmap unit=ns n=1000 min=12.5 median=13 p99=40.25 batch=64",
        ) else {
            panic!("not a bench record");
        };
        assert_eq!(b.id, "pte-map-unmap");
        assert_eq!(b.unit, "ns");
        assert_eq!(b.n, 1000);
        assert_eq!((b.min, b.median, b.p99), (12.5, 13.0, 40.25));
        assert_eq!(b.extra["batch"], "64");
    }

    #[test]
    fn done_and_abort_lines() {
        assert_eq!(
            parse("@janus done tests_passed=4 tests_failed=0 boot_us=812"),
            Record::Done(Done {
                tests_passed: 4,
                tests_failed: 0,
                boot_us: 812,
                extra: Fields::new()
            })
        );
        let Record::Abort(a) = parse(
            "@janus abort kind=fault vector=14 exception=page-fault error=0x2 rip=0xffffffff80105a3c cr2=0x0",
        ) else {
            panic!("not an abort record");
        };
        assert_eq!(a.kind, "fault");
        assert_eq!(a.get("vector"), Some("14"));
        assert_eq!(a.rip(), Some(0xffff_ffff_8010_5a3c));
        assert!(!a.fields.contains_key("kind"));
    }

    #[test]
    fn trailing_carriage_return_and_extra_spaces_are_tolerated() {
        assert!(matches!(
            parse("@janus  test  heap   pass\r"),
            Record::Test(Test { pass: true, .. })
        ));
    }

    #[test]
    fn unknown_words_are_kept_not_refused() {
        assert_eq!(
            parse("@janus platform paging=direct whatever"),
            Record::Unknown {
                word: "platform".into(),
                rest: "paging=direct whatever".into()
            }
        );
    }

    #[test]
    fn non_machine_lines_are_ignored() {
        for line in [
            "",
            "janus: booting",
            " @janus test heap pass",
            "@janusx test heap pass",
            "warning: unknown option 'frobnicate' ignored",
        ] {
            assert!(parse_line(line).is_none(), "{line:?}");
        }
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert_eq!(error("@janus"), ParseError::MissingWord);
        assert_eq!(error("@janus   "), ParseError::MissingWord);
        assert_eq!(
            error("@janus test"),
            ParseError::MissingName { word: "test" }
        );
        assert_eq!(
            error("@janus test heap maybe"),
            ParseError::BadOutcome {
                name: "heap".into(),
                found: "maybe".into()
            }
        );
        assert_eq!(
            error("@janus test heap"),
            ParseError::BadOutcome {
                name: "heap".into(),
                found: "".into()
            }
        );
        assert_eq!(
            error("@janus env hypervisor=kvm stray"),
            ParseError::NotKeyValue {
                token: "stray".into()
            }
        );
        assert_eq!(
            error("@janus env =kvm"),
            ParseError::EmptyKey {
                token: "=kvm".into()
            }
        );
        assert_eq!(
            error("@janus env a=1 a=2"),
            ParseError::DuplicateKey { key: "a".into() }
        );
        assert_eq!(
            error("@janus bench rdtsc unit=ns n=10 min=1 median=2"),
            ParseError::MissingKey {
                word: "bench",
                key: "p99"
            }
        );
        assert_eq!(
            error("@janus bench rdtsc unit=ns n=-1 min=1 median=2 p99=3"),
            ParseError::BadNumber {
                key: "n",
                value: "-1".into()
            }
        );
        assert_eq!(
            error("@janus bench rdtsc unit=ns n=1 min=nan median=2 p99=3"),
            ParseError::BadNumber {
                key: "min",
                value: "nan".into()
            }
        );
        assert_eq!(
            error("@janus bench rdtsc unit=ns n=3 min=5 median=2 p99=3"),
            ParseError::BadSpread {
                min: 5.0,
                median: 2.0,
                p99: 3.0
            }
        );
        assert_eq!(
            error("@janus bench unit=ns n=1 min=1 median=2 p99=3"),
            ParseError::MissingName { word: "bench" }
        );
        assert_eq!(
            error("@janus done tests_passed=1 boot_us=5"),
            ParseError::MissingKey {
                word: "done",
                key: "tests_failed"
            }
        );
        assert_eq!(
            error("@janus abort vector=14"),
            ParseError::MissingKey {
                word: "abort",
                key: "kind"
            }
        );
    }

    #[test]
    fn backtrace_frames() {
        assert_eq!(
            parse_backtrace_frame("  bt #0 0x0000000000105a3c"),
            Some(Frame {
                index: 0,
                address: 0x105a3c
            })
        );
        assert_eq!(
            parse_backtrace_frame("bt #12 0xffffffff80000000"),
            Some(Frame {
                index: 12,
                address: 0xffff_ffff_8000_0000
            })
        );
        for line in [
            "bt #0 105a3c",
            "bt #x 0x10",
            "bt # 0x10",
            "bt #0 0x10 extra",
            "  bt 0x10",
            "abt #0 0x10",
            "bt #0 0x",
            "bt #0 0x+10",
        ] {
            assert_eq!(parse_backtrace_frame(line), None, "{line:?}");
        }
    }

    const HEALTHY: &[&str] = &[
        "Janus booting",
        "@janus env hypervisor=tcg boot=pvh paging=direct clock=tsc console=com1 cpus=1 mem_mib=127",
        "@janus test frame-allocator pass",
        "@janus test heap pass",
        "@janus bench rdtsc unit=ns n=100 min=10 median=11 p99=20",
        "@janus done tests_passed=2 tests_failed=0 boot_us=812",
    ];

    fn outcome(status: Option<i32>, console: &[&str]) -> Outcome {
        Outcome {
            status,
            console: console.iter().map(|s| s.to_string()).collect(),
            ..Outcome::default()
        }
    }

    fn judge_lines(status: Option<i32>, console: &[&str]) -> Verdict {
        let outcome = outcome(status, console);
        verdict(
            "tcg/microvm",
            "",
            &outcome,
            &Report::from_lines(&outcome.console),
        )
    }

    #[test]
    fn report_gathers_records_and_frames() {
        let mut lines = HEALTHY.to_vec();
        lines.extend([
            "  bt #0 0x10",
            "@janus bench cpuid broken",
            "@janus env a=b",
        ]);
        let r = Report::from_lines(&lines);
        assert_eq!(r.env_value("hypervisor"), Some("tcg"));
        assert_eq!(r.tests.len(), 2);
        assert!(r.test("heap").is_some_and(|t| t.pass));
        assert_eq!(r.bench("rdtsc").map(|b| b.n), Some(100));
        assert_eq!(r.done.as_ref().map(|d| d.boot_us), Some(812));
        assert_eq!(
            r.backtrace,
            [Frame {
                index: 0,
                address: 0x10
            }]
        );
        assert_eq!(r.malformed.len(), 1);
        assert_eq!(r.malformed[0].line_number, 8);
        assert_eq!(
            r.repeated,
            [Repeated {
                line_number: 9,
                word: "env"
            }]
        );
    }

    #[test]
    fn records_and_frames_are_found_behind_xen_console_prefixes() {
        let r = Report::from_lines(&[
            "(XEN) [    1.113616] Freed 656kB init memory",
            "(d0) [    1.118103] @janus env hypervisor=xen boot=pvh paging=direct",
            "@janus test xen-console-io pass",
            "(d0v0) [    1.2] @janus test heap fail reason=leak",
            "(d0) [    1.3]   bt #0 0x105a3c",
            "(XEN) [    1.4] @janus done tests_passed=1 tests_failed=1 boot_us=5",
        ]);
        assert_eq!(r.env_value("hypervisor"), Some("xen"));
        assert!(r.test("xen-console-io").is_some_and(|t| t.pass));
        assert_eq!(
            r.test("heap").and_then(|t| t.reason.as_deref()),
            Some("leak")
        );
        assert_eq!(
            r.backtrace,
            [Frame {
                index: 0,
                address: 0x105a3c
            }]
        );
        assert_eq!(r.done.map(|d| d.tests_failed), Some(1));
        assert!(r.malformed.is_empty(), "{:?}", r.malformed);
    }

    #[test]
    fn status_33_with_consistent_output_passes() {
        let v = judge_lines(Some(33), HEALTHY);
        assert_eq!(v.kind, VerdictKind::Pass);
        assert_eq!(v.exit_code(), 0);
        assert_eq!(
            v.to_string(),
            "janus: PASS tcg/microvm: 2 tests passed, 0 failed, 1 benches, boot 812 us"
        );
    }

    #[test]
    fn status_33_contradicted_by_the_output_is_inconsistent() {
        let failing = [HEALTHY, &["@janus test mapper fail reason=x"]].concat();
        let no_done = &HEALTHY[..HEALTHY.len() - 1];
        let miscounted = [
            &HEALTHY[..HEALTHY.len() - 1],
            &["@janus done tests_passed=3 tests_failed=0 boot_us=1"],
        ]
        .concat();
        let malformed = [HEALTHY, &["@janus bench x unit=ns"]].concat();
        let aborted = [HEALTHY, &["@janus abort kind=panic"]].concat();
        let twice = [
            HEALTHY,
            &["@janus done tests_passed=2 tests_failed=0 boot_us=1"],
        ]
        .concat();
        for (lines, expected) in [
            (&failing[..], "test mapper (reason=x) failed"),
            (no_done, "no `@janus done` line"),
            (&miscounted[..], "tests_passed=3"),
            (&malformed[..], "breaks the @janus contract"),
            (&aborted[..], "abort kind=panic"),
            (&twice[..], "second `@janus done`"),
        ] {
            let v = judge_lines(Some(33), lines);
            assert_eq!(v.kind, VerdictKind::Inconsistent, "{v}");
            assert_eq!(v.exit_code(), 2);
            assert!(v.detail.contains(expected), "{v}");
        }
    }

    fn host_check(name: &'static str, status: CheckStatus) -> HostCheck {
        HostCheck {
            name,
            status,
            detail: format!("{name} detail"),
        }
    }

    #[test]
    fn a_failed_host_check_fails_a_passing_run_with_exit_1() {
        let mut o = outcome(Some(33), HEALTHY);
        o.host_checks = vec![
            host_check("disk check", CheckStatus::Passed),
            host_check("udp echo", CheckStatus::Failed),
            host_check("virtio-console check", CheckStatus::NotChecked),
        ];
        let v = verdict("tcg/pc", "", &o, &Report::from_lines(&o.console));
        assert_eq!(v.kind, VerdictKind::HostCheckFailed);
        assert_eq!(v.exit_code(), 1);
        assert_eq!(
            v.to_string(),
            "janus: FAIL tcg/pc: host check failed: udp echo: udp echo detail; the kernel \
             reported 2 tests passed, 0 failed, 1 benches, boot 812 us"
        );
        o.host_checks[2].status = CheckStatus::Failed;
        let v = verdict("tcg/pc", "", &o, &Report::from_lines(&o.console));
        assert!(
            v.detail
                .starts_with("2 host checks failed: udp echo, virtio-console check; "),
            "{v}"
        );
    }

    #[test]
    fn passed_and_unchecked_host_checks_leave_the_verdict_alone() {
        let mut o = outcome(Some(33), HEALTHY);
        o.host_checks = vec![
            host_check("disk check", CheckStatus::Passed),
            host_check("udp echo", CheckStatus::NotChecked),
        ];
        let v = verdict("tcg/pc", "", &o, &Report::from_lines(&o.console));
        assert_eq!(v.kind, VerdictKind::Pass);
    }

    #[test]
    fn failed_host_checks_join_failed_tests_and_not_aborts() {
        let lines = [
            &HEALTHY[..3],
            &[
                "@janus test heap fail reason=leak",
                "@janus done tests_passed=1 tests_failed=1 boot_us=9",
            ],
        ]
        .concat();
        let mut o = outcome(Some(35), &lines);
        o.host_checks = vec![host_check("disk check", CheckStatus::Failed)];
        let v = verdict("tcg/pc", "", &o, &Report::from_lines(&o.console));
        assert_eq!(v.kind, VerdictKind::TestsFailed);
        assert_eq!(
            v.detail,
            "1 of 2 tests failed: heap (reason=leak); host check failed: disk check: disk \
             check detail"
        );
        let mut o = outcome(Some(37), &["@janus abort kind=panic location=x.rs:1"]);
        o.host_checks = vec![host_check("disk check", CheckStatus::Failed)];
        let v = verdict("tcg/pc", "", &o, &Report::from_lines(&o.console));
        assert_eq!(v.kind, VerdictKind::Panic);
        assert_eq!(v.detail, "location=x.rs:1");
    }

    #[test]
    fn status_35_is_a_test_failure_naming_the_tests() {
        let lines = [
            &HEALTHY[..3],
            &[
                "@janus test heap fail reason=leak",
                "@janus done tests_passed=1 tests_failed=1 boot_us=9",
            ],
        ]
        .concat();
        let v = judge_lines(Some(35), &lines);
        assert_eq!(v.kind, VerdictKind::TestsFailed);
        assert_eq!(v.exit_code(), 1);
        assert_eq!(
            v.to_string(),
            "janus: FAIL tcg/microvm: 1 of 2 tests failed: heap (reason=leak)"
        );
        let v = judge_lines(Some(35), HEALTHY);
        assert_eq!(v.exit_code(), 1);
        assert!(v.detail.contains("no `@janus test ... fail` line"), "{v}");
    }

    #[test]
    fn status_37_names_the_fault_and_the_cmdline() {
        let lines = [
            "@janus abort kind=fault vector=14 exception=page-fault error=0x2 rip=0x105a3c cr2=0x0",
            "  bt #0 0x105a3c",
        ];
        let outcome = outcome(Some(37), &lines);
        let v = verdict(
            "tcg/microvm",
            "selftest=fault",
            &outcome,
            &Report::from_lines(&outcome.console),
        );
        assert_eq!(v.kind, VerdictKind::Fault);
        assert_eq!(v.exit_code(), 2);
        assert_eq!(
            v.to_string(),
            "janus: FAULT tcg/microvm: page-fault at rip=0x105a3c cr2=0x0 error=0x2 (selftest=fault)"
        );
    }

    #[test]
    fn status_37_panic_boot_info_and_other_aborts() {
        let v = judge_lines(
            Some(37),
            &["@janus abort kind=panic location=kernel/src/mm/heap.rs:12"],
        );
        assert_eq!(v.kind, VerdictKind::Panic);
        assert_eq!(v.detail, "location=kernel/src/mm/heap.rs:12");
        let v = judge_lines(Some(37), &["panicked at x", "@janus abort kind=panic"]);
        assert_eq!(v.detail, "kernel panic; last line: @janus abort kind=panic");
        let v = judge_lines(
            Some(37),
            &["@janus abort kind=boot-info reason=cmdline-too-long"],
        );
        assert_eq!(v.kind, VerdictKind::BadBootInfo);
        assert_eq!(
            v.detail,
            "the kernel refused its boot information: reason=cmdline-too-long"
        );
        let v = judge_lines(Some(37), &["@janus abort kind=oom size=4096"]);
        assert_eq!(v.kind, VerdictKind::Aborted);
        assert_eq!(v.detail, "abort kind=oom size=4096");
        let v = judge_lines(Some(37), &["something broke"]);
        assert_eq!(v.kind, VerdictKind::Aborted);
        assert!(v.detail.contains("last line: something broke"), "{v}");
        for v in [
            judge_lines(Some(37), &["@janus abort kind=panic"]),
            judge_lines(Some(37), &["x"]),
        ] {
            assert_eq!(v.exit_code(), 2);
        }
    }

    #[test]
    fn long_cmdlines_are_shortened_in_verdicts() {
        let cmdline = "x".repeat(4096);
        let outcome = outcome(
            Some(37),
            &["@janus abort kind=boot-info reason=cmdline-too-long"],
        );
        let v = verdict(
            "tcg/q35",
            &cmdline,
            &outcome,
            &Report::from_lines(&outcome.console),
        );
        assert!(v.detail.ends_with("... (4096 bytes))"), "{v}");
        assert!(v.to_string().len() < 200);
    }

    #[test]
    fn a_kvm_internal_error_is_named_instead_of_a_timeout() {
        let mut o = outcome(None, &["@janus env hypervisor=kvm"]);
        o.timed_out_after = Some(std::time::Duration::from_secs(150));
        o.stderr = vec![
            "KVM internal error. Suberror: 1".into(),
            "RAX=0000000000000000 RBX=0000000000000000".into(),
        ];
        let v = verdict("kvm/pc", "", &o, &Report::from_lines(&o.console));
        assert_eq!(v.kind, VerdictKind::QemuFailed);
        assert!(
            v.detail
                .starts_with("KVM internal error. Suberror: 1: KVM could not go on"),
            "{v}"
        );
    }

    #[test]
    fn other_statuses_are_qemu_failures() {
        for status in [Some(0), Some(1), Some(3), Some(34), None] {
            let mut o = outcome(status, &["Janus booting"]);
            o.stderr = vec!["qemu-system-x86_64: something".into()];
            let v = verdict("kvm/pc", "", &o, &Report::from_lines(&o.console));
            assert_eq!(v.kind, VerdictKind::QemuFailed, "{status:?}");
            assert_eq!(v.exit_code(), 2);
            assert!(
                v.detail
                    .contains("QEMU said: qemu-system-x86_64: something"),
                "{v}"
            );
            assert!(v.detail.contains("last line: Janus booting"), "{v}");
        }
    }

    #[test]
    fn no_console_output_is_a_failure_whatever_the_status() {
        for status in [Some(33), Some(35), Some(37), Some(1)] {
            let v = judge_lines(status, &["", "  "]);
            assert_eq!(v.kind, VerdictKind::NoOutput, "{status:?}");
            assert_eq!(v.exit_code(), 2);
        }
    }

    #[test]
    fn timeout_names_the_environment_and_the_last_line() {
        let mut o = outcome(None, &["@janus test heap pass", "calibrating tsc", ""]);
        o.timed_out_after = Some(Duration::from_secs(120));
        let v = verdict("tcg/microvm", "", &o, &Report::from_lines(&o.console));
        assert_eq!(v.kind, VerdictKind::Timeout);
        assert_eq!(v.exit_code(), 2);
        assert_eq!(
            v.to_string(),
            "janus: TIMEOUT tcg/microvm after 120 s; last line: calibrating tsc"
        );
        let mut silent = outcome(None, &[]);
        silent.timed_out_after = Some(Duration::from_millis(1500));
        let v = verdict("kvm/microvm", "", &silent, &Report::default());
        assert_eq!(
            v.to_string(),
            "janus: TIMEOUT kvm/microvm after 1.5 s; no console output"
        );
    }
}
