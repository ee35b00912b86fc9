//! What one `cargo xtask bench` collected: every raw `@janus bench` row with where it came
//! from, each environment's boots, and the per-benchmark summary across boots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::family::{Display, Family};
use crate::report::Bench;

/// Where the numbers come from; every row carries it, so a row copied out of the report
/// still says what produced it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub cpu_model: String,
    pub qemu_version: String,
    /// `None` when no Xen environment ran.
    pub xen_version: Option<String>,
    /// `git describe`-like: the commit, with `-dirty` when the tree had changes.
    pub commit: String,
    /// When the run started, UTC, RFC 3339.
    pub date: String,
}

/// One `@janus bench` line of one boot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The environment label, e.g. `tcg/pc`, `xen-pv/pc`.
    pub environment: String,
    /// Which boot of the environment, from 1.
    pub run: u32,
    pub id: String,
    pub family: Family,
    pub unit: String,
    pub n: u64,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    /// The line's other pairs (`median_cycles`, `cycles_per_pte`, `source`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
    #[serde(flatten)]
    pub provenance: Provenance,
}

impl Row {
    pub fn new(environment: &str, run: u32, bench: &Bench, provenance: &Provenance) -> Row {
        Row {
            environment: environment.to_string(),
            run,
            id: bench.id.clone(),
            family: Family::of(&bench.id),
            unit: bench.unit.clone(),
            n: bench.n,
            min: bench.min,
            median: bench.median,
            p99: bench.p99,
            extra: bench.extra.clone(),
            provenance: provenance.clone(),
        }
    }

    /// A numeric extra field, e.g. `cycles_per_pte`.
    pub fn extra_number(&self, key: &str) -> Option<f64> {
        self.extra
            .get(key)?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
    }
}

/// One benchmark in one environment, over every boot of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub environment: String,
    pub id: String,
    pub family: Family,
    pub unit: String,
    /// The median of the boots' medians.
    pub median: f64,
    /// The lowest `min` and highest `p99` of any boot: the spread within a boot.
    pub min: f64,
    pub p99: f64,
    /// Each boot's median, in run order: their range is the spread between boots.
    pub run_medians: Vec<f64>,
    /// The median over boots of `cycles_per_pte`, for page-table rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycles_per_pte: Option<f64>,
}

/// A value with its spread, in the unit its family is shown in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shown {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

impl Summary {
    /// Groups rows by environment, id and unit, in first-seen order: a kernel that knew no
    /// TSC frequency in one boot printed cycles where the others printed ns, and the two
    /// must not share a median.
    pub fn from_rows(rows: &[Row]) -> Vec<Summary> {
        let mut order: Vec<(&str, &str, &str)> = Vec::new();
        let mut groups: BTreeMap<(&str, &str, &str), Vec<&Row>> = BTreeMap::new();
        for row in rows {
            let key = (row.environment.as_str(), row.id.as_str(), row.unit.as_str());
            let group = groups.entry(key).or_default();
            if group.is_empty() {
                order.push(key);
            }
            group.push(row);
        }
        order
            .into_iter()
            .map(|key| Summary::of(&groups[&key]))
            .collect()
    }

    fn of(rows: &[&Row]) -> Summary {
        let first = rows[0];
        let run_medians: Vec<f64> = rows.iter().map(|r| r.median).collect();
        let per_pte: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.extra_number("cycles_per_pte"))
            .collect();
        Summary {
            environment: first.environment.clone(),
            id: first.id.clone(),
            family: first.family,
            unit: first.unit.clone(),
            median: median(&run_medians),
            min: rows.iter().map(|r| r.min).fold(f64::INFINITY, f64::min),
            p99: rows.iter().map(|r| r.p99).fold(f64::NEG_INFINITY, f64::max),
            cycles_per_pte: (!per_pte.is_empty()).then(|| median(&per_pte)),
            run_medians,
        }
    }

    /// The spread that says how much to trust the median: between boots when there were
    /// several, else min to p99 within the one boot.
    pub fn spread(&self) -> (f64, f64) {
        if self.run_medians.len() > 1 {
            let low = self
                .run_medians
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let high = self
                .run_medians
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            (low, high)
        } else {
            (self.min, self.p99)
        }
    }

    /// The value and spread in the family's display unit. Page-table rows show cycles per
    /// PTE, their spread scaled from the batch's: the PTEs of one batch cost alike.
    pub fn shown(&self) -> Option<Shown> {
        let display = self.family.display();
        let (low, high) = self.spread();
        let shown = match display {
            Display::CyclesPerPte => {
                let per_pte = self.cycles_per_pte?;
                let scale = if self.median > 0.0 {
                    per_pte / self.median
                } else {
                    0.0
                };
                Shown {
                    median: per_pte,
                    low: low * scale,
                    high: high * scale,
                }
            }
            _ => Shown {
                median: display.scale(self.median),
                low: display.scale(low),
                high: display.scale(high),
            },
        };
        [shown.median, shown.low, shown.high]
            .iter()
            .all(|v| v.is_finite())
            .then_some(shown)
    }

    /// The unit [`Summary::shown`] is in.
    pub fn shown_unit(&self) -> String {
        self.family.display().label(&self.unit)
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{self, Record};

    fn bench(line: &str) -> Bench {
        match report::parse_line(line) {
            Some(Ok(Record::Bench(b))) => b,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn row(env: &str, run: u32, line: &str) -> Row {
        Row::new(env, run, &bench(line), &Provenance::default())
    }

    #[test]
    fn a_row_keeps_the_line_and_its_family() {
        let r = row(
            "xen-pv/pc",
            1,
            "@janus bench pte-map-2mib-4k unit=ns n=100 min=1 median=2 p99=3 \
             median_cycles=5 ptes=512 cycles_per_pte=7336",
        );
        assert_eq!(r.family, Family::PageTable);
        assert_eq!(r.extra_number("cycles_per_pte"), Some(7336.0));
        assert_eq!(r.extra_number("ptes"), Some(512.0));
        assert_eq!(r.extra_number("missing"), None);
    }

    #[test]
    fn summaries_group_by_environment_and_id_in_first_seen_order() {
        let rows = [
            row(
                "tcg/pc",
                1,
                "@janus bench cpuid unit=ns n=9 min=1 median=10 p99=20",
            ),
            row(
                "tcg/pc",
                1,
                "@janus bench hypercall unit=ns n=9 min=1 median=5 p99=9",
            ),
            row(
                "tcg/pc",
                2,
                "@janus bench cpuid unit=ns n=9 min=2 median=12 p99=30",
            ),
            row(
                "tcg/pc",
                3,
                "@janus bench cpuid unit=ns n=9 min=3 median=11 p99=25",
            ),
            row(
                "kvm/pc",
                1,
                "@janus bench cpuid unit=ns n=9 min=1 median=3 p99=4",
            ),
        ];
        let s = Summary::from_rows(&rows);
        let ids: Vec<_> = s
            .iter()
            .map(|s| (s.environment.as_str(), s.id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("tcg/pc", "cpuid"),
                ("tcg/pc", "hypercall"),
                ("kvm/pc", "cpuid")
            ]
        );
        assert_eq!(s[0].run_medians, [10.0, 12.0, 11.0]);
        assert_eq!(s[0].median, 11.0);
        assert_eq!((s[0].min, s[0].p99), (1.0, 30.0));
        // Several boots: the spread is between their medians.
        assert_eq!(s[0].spread(), (10.0, 12.0));
        // One boot: min to p99.
        assert_eq!(s[1].spread(), (1.0, 9.0));
    }

    #[test]
    fn page_table_rows_are_shown_per_pte() {
        let rows = [row(
            "xen-pv/pc",
            1,
            "@janus bench pte-map-2mib-4k unit=ns n=100 min=1000 median=2000 p99=4000 \
             ptes=512 cycles_per_pte=7000",
        )];
        let s = &Summary::from_rows(&rows)[0];
        let shown = s.shown().unwrap();
        assert_eq!(
            (shown.median, shown.low, shown.high),
            (7000.0, 3500.0, 14000.0)
        );
        assert_eq!(s.shown_unit(), "cycles per PTE");
    }

    #[test]
    fn throughput_is_shown_in_mib_per_second() {
        let rows = [row(
            "tcg/pc",
            1,
            "@janus bench virtio-blk-seq-read-64k unit=bytes_per_s n=5 min=1048576 \
             median=2097152 p99=3145728",
        )];
        let shown = Summary::from_rows(&rows)[0].shown().unwrap();
        assert_eq!((shown.median, shown.low, shown.high), (2.0, 1.0, 3.0));
    }

    #[test]
    fn median_of_even_odd_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[f64::NAN, 1.0]), 1.0);
    }
}
