//! `--compare old.json`: the benchmarks that got worse since an earlier report, beyond the
//! noise both runs show.
//!
//! A benchmark regressed when each median lies outside the other run's spread, on the worse
//! side: the new median beyond the old spread and the old median beyond the new one. Asking
//! both keeps one noisy run (a wide spread on either side) from raising or hiding a
//! regression on its own. The spread is the one [`Summary::spread`] gives: between boots
//! with `--runs`, else min to p99 within the boot.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::results::Summary;

/// The part of an earlier report.json that a comparison reads.
#[derive(Debug, Deserialize)]
pub struct Earlier {
    /// [`super::report::SCHEMA`] of the xtask that wrote it.
    pub schema: u32,
    pub summary: Vec<Summary>,
}

/// Why the earlier report cannot be compared with.
#[derive(Debug)]
pub enum CompareError {
    Read { path: PathBuf, reason: String },
    Parse { path: PathBuf, reason: String },
    Schema { path: PathBuf, schema: u32 },
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareError::Read { path, reason } => write!(
                f,
                "--compare {}: cannot read it ({reason}); give the report.json of an earlier \
                 `cargo xtask bench`",
                path.display()
            ),
            CompareError::Parse { path, reason } => write!(
                f,
                "--compare {}: not a `cargo xtask bench` report.json ({reason})",
                path.display()
            ),
            CompareError::Schema { path, schema } => write!(
                f,
                "--compare {}: written in report schema {schema}, this xtask writes {}; run \
                 `cargo xtask bench` on the earlier commit again to compare",
                path.display(),
                super::report::SCHEMA
            ),
        }
    }
}

impl std::error::Error for CompareError {}

impl Earlier {
    pub fn load(path: &Path) -> Result<Earlier, CompareError> {
        let text = fs::read_to_string(path).map_err(|e| CompareError::Read {
            path: path.to_path_buf(),
            reason: crate::host::io_reason(&e),
        })?;
        let earlier: Earlier = serde_json::from_str(&text).map_err(|e| CompareError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if earlier.schema != super::report::SCHEMA {
            return Err(CompareError::Schema {
                path: path.to_path_buf(),
                schema: earlier.schema,
            });
        }
        Ok(earlier)
    }
}

/// One benchmark that got worse.
#[derive(Clone, Debug, PartialEq)]
pub struct Regression {
    pub environment: String,
    pub id: String,
    pub unit: String,
    pub old: f64,
    pub new: f64,
    pub old_spread: (f64, f64),
}

impl Regression {
    /// The change of the median, in percent of the old one; `None` from an old median of 0.
    pub fn change_percent(&self) -> Option<f64> {
        (self.old != 0.0).then(|| (self.new - self.old) / self.old * 100.0)
    }
}

impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: median {} -> {} {} ({}), outside the earlier spread {}..{}",
            self.environment,
            self.id,
            self.old,
            self.new,
            self.unit,
            self.change_percent()
                .map_or_else(|| "from 0".to_string(), |p| format!("{p:+.1}%")),
            self.old_spread.0,
            self.old_spread.1
        )
    }
}

/// What a comparison found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Benchmarks in both runs.
    pub compared: usize,
    pub regressions: Vec<Regression>,
    /// `environment id` pairs the earlier run had and this one lacks.
    pub missing: Vec<String>,
    /// Benchmarks measured in another unit this time, which cannot be compared.
    pub unit_changed: Vec<String>,
}

pub fn compare(old: &[Summary], new: &[Summary]) -> Comparison {
    let mut comparison = Comparison::default();
    for before in old {
        let same = |s: &&Summary| s.environment == before.environment && s.id == before.id;
        let Some(after) = new.iter().filter(same).find(|s| s.unit == before.unit) else {
            let name = format!("{} {}", before.environment, before.id);
            match new.iter().find(same) {
                Some(other) => comparison
                    .unit_changed
                    .push(format!("{name}: {} then, {} now", before.unit, other.unit)),
                None => comparison.missing.push(name),
            }
            continue;
        };
        comparison.compared += 1;
        let Some(higher_is_better) = after.family.higher_is_better(&after.unit) else {
            continue;
        };
        let (old_low, old_high) = before.spread();
        let (new_low, new_high) = after.spread();
        let regressed = if higher_is_better {
            after.median < old_low && before.median > new_high
        } else {
            after.median > old_high && before.median < new_low
        };
        if regressed {
            comparison.regressions.push(Regression {
                environment: after.environment.clone(),
                id: after.id.clone(),
                unit: after.unit.clone(),
                old: before.median,
                new: after.median,
                old_spread: (old_low, old_high),
            });
        }
    }
    comparison
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::family::Family;

    fn summary(id: &str, unit: &str, run_medians: &[f64], min: f64, p99: f64) -> Summary {
        Summary {
            environment: "tcg/pc".into(),
            id: id.into(),
            family: Family::of(id),
            unit: unit.into(),
            median: crate::bench::results::median(run_medians),
            min,
            p99,
            run_medians: run_medians.to_vec(),
            cycles_per_pte: None,
        }
    }

    #[test]
    fn slower_latency_beyond_both_spreads_is_a_regression() {
        let old = [summary("cpuid", "ns", &[100.0], 90.0, 120.0)];
        let new = [summary("cpuid", "ns", &[200.0], 180.0, 240.0)];
        let c = compare(&old, &new);
        assert_eq!(c.compared, 1);
        assert_eq!(c.regressions.len(), 1);
        assert_eq!(c.regressions[0].change_percent(), Some(100.0));
        assert!(c.regressions[0].to_string().contains("(+100.0%)"));
    }

    #[test]
    fn a_change_inside_the_noise_is_not() {
        let old = [summary("cpuid", "ns", &[100.0], 90.0, 120.0)];
        let new = [summary("cpuid", "ns", &[115.0], 90.0, 130.0)];
        assert!(compare(&old, &new).regressions.is_empty());
        // Beyond the old spread, but the new run is so noisy that the old median is inside.
        let noisy = [summary("cpuid", "ns", &[130.0], 50.0, 400.0)];
        assert!(compare(&old, &noisy).regressions.is_empty());
    }

    #[test]
    fn throughput_regresses_downwards() {
        let old = [summary(
            "virtio-blk-seq-read-64k",
            "bytes_per_s",
            &[600.0, 620.0, 610.0],
            500.0,
            700.0,
        )];
        let faster = [summary(
            "virtio-blk-seq-read-64k",
            "bytes_per_s",
            &[900.0, 910.0],
            800.0,
            950.0,
        )];
        assert!(compare(&old, &faster).regressions.is_empty());
        let slower = [summary(
            "virtio-blk-seq-read-64k",
            "bytes_per_s",
            &[300.0, 310.0],
            200.0,
            400.0,
        )];
        // Between-boot spreads: 600..620 and 300..310.
        let c = compare(&old, &slower);
        assert_eq!(c.regressions.len(), 1);
        assert_eq!(c.regressions[0].old_spread, (600.0, 620.0));
    }

    #[test]
    fn drift_never_regresses_and_missing_ones_are_listed() {
        let old = [
            summary("clock-drift-hpet", "ppm", &[1.0], 1.0, 1.0),
            summary("hypercall", "ns", &[1.0], 1.0, 1.0),
        ];
        let new = [summary("clock-drift-hpet", "ppm", &[900.0], 900.0, 900.0)];
        let c = compare(&old, &new);
        assert!(c.regressions.is_empty());
        assert_eq!(c.missing, ["tcg/pc hypercall"]);
    }

    #[test]
    fn a_unit_change_is_listed_not_compared_and_a_zero_median_has_no_percentage() {
        let old = [summary("cpuid", "ns", &[100.0], 90.0, 120.0)];
        let new = [summary("cpuid", "cycles", &[900.0], 800.0, 950.0)];
        let c = compare(&old, &new);
        assert_eq!((c.compared, c.regressions.len()), (0, 0));
        assert_eq!(c.unit_changed, ["tcg/pc cpuid: ns then, cycles now"]);
        assert!(c.missing.is_empty());

        let zero = [summary("cpuid", "ns", &[0.0], 0.0, 0.0)];
        let c = compare(&zero, &[summary("cpuid", "ns", &[5.0], 4.0, 6.0)]);
        assert_eq!(c.regressions[0].change_percent(), None);
        assert!(c.regressions[0].to_string().contains("(from 0)"));
    }

    #[test]
    fn an_unreadable_or_foreign_file_is_one_clear_line() {
        let missing = Earlier::load(Path::new("/nonexistent/report.json")).unwrap_err();
        assert!(missing.to_string().contains("cannot read it"), "{missing}");
        let path = std::env::temp_dir().join(format!("janus-compare-{}.json", std::process::id()));
        fs::write(&path, "{\"rows\": []}").unwrap();
        let foreign = Earlier::load(&path).unwrap_err();
        fs::write(&path, "{\"schema\": 0, \"summary\": []}").unwrap();
        let older = Earlier::load(&path).unwrap_err();
        fs::remove_file(&path).unwrap();
        assert!(older.to_string().contains("schema 0"), "{older}");
        assert!(
            foreign
                .to_string()
                .contains("not a `cargo xtask bench` report.json")
        );
        assert!(!foreign.to_string().contains('\n'));
    }
}
