//! Reading the output of Rust's test harness (libtest) as `cargo test` prints it.

use std::ops::AddAssign;

/// Counts from `test result:` lines, summed over test binaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl AddAssign for Summary {
    fn add_assign(&mut self, other: Summary) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

impl Summary {
    /// The closing line `N passed, M failed`, with `, K skipped` only when something was.
    pub fn closing_line(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed);
        if self.ignored > 0 {
            line.push_str(&format!(", {} skipped", self.ignored));
        }
        line
    }
}

/// Parses `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
pub fn parse_summary(line: &str) -> Option<Summary> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_outcome, counts) = rest.split_once(". ")?;
    let mut summary = Summary::default();
    let mut seen_passed = false;
    for part in counts.split("; ") {
        let Some((number, what)) = part.split_once(' ') else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        match what {
            "passed" => {
                summary.passed = number;
                seen_passed = true;
            }
            "failed" => summary.failed = number,
            "ignored" => summary.ignored = number,
            _ => {}
        }
    }
    seen_passed.then_some(summary)
}

/// Counts the tests a `--list` run names (`name: test` lines).
pub fn count_listed_tests(output: &str) -> usize {
    output.lines().filter(|l| l.ends_with(": test")).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ok_and_failed_summaries() {
        assert_eq!(
            parse_summary(
                "test result: ok. 12 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some(Summary {
                passed: 12,
                failed: 0,
                ignored: 2
            })
        );
        assert_eq!(
            parse_summary(
                "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 4.20s"
            ),
            Some(Summary {
                passed: 3,
                failed: 1,
                ignored: 0
            })
        );
    }

    #[test]
    fn ignores_other_lines() {
        for line in [
            "",
            "test heap ... ok",
            "running 3 tests",
            "test result: garbage",
            "test result: ok. no numbers here",
            "  Doc-tests xtask",
        ] {
            assert_eq!(parse_summary(line), None, "{line:?}");
        }
    }

    #[test]
    fn summaries_add_up() {
        let mut total = Summary::default();
        total += Summary {
            passed: 2,
            failed: 1,
            ignored: 0,
        };
        total += Summary {
            passed: 5,
            failed: 0,
            ignored: 3,
        };
        assert_eq!(
            total,
            Summary {
                passed: 7,
                failed: 1,
                ignored: 3
            }
        );
    }

    #[test]
    fn closing_line_mentions_skipped_only_when_some_were() {
        let none_skipped = Summary {
            passed: 7,
            failed: 1,
            ignored: 0,
        };
        assert_eq!(none_skipped.closing_line(), "7 passed, 1 failed");
        let some_skipped = Summary {
            ignored: 2,
            ..none_skipped
        };
        assert_eq!(some_skipped.closing_line(), "7 passed, 1 failed, 2 skipped");
    }

    #[test]
    fn counts_listed_tests() {
        let listing = "kvm_microvm_passes: test\nkvm_fault_selftest_reports_and_exits_2: test\n\n2 tests, 0 benchmarks\n";
        assert_eq!(count_listed_tests(listing), 2);
        assert_eq!(count_listed_tests("0 tests, 0 benchmarks\n"), 0);
    }
}
