//! `target/janus-report/`: report.json (every raw row, the summaries, the boot comparison and
//! the claims), report.md (tables, one per family, environments side by side) and one SVG
//! chart per family under `charts/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::boot_time::BootComparison;
use super::chart;
use super::claims::Claims;
use super::family::Family;
use super::markdown;
use super::results::{Provenance, Row, Summary};

/// Bumped when a field changes meaning, so `--compare` can tell.
pub const SCHEMA: u32 = 1;

/// The folder under the cargo target directory.
pub const DIR: &str = "janus-report";

/// Everything one `cargo xtask bench` measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    pub schema: u32,
    #[serde(flatten)]
    pub provenance: Provenance,
    pub host: HostFacts,
    /// Boots of each environment (`--runs`).
    pub runs: u32,
    pub environments: Vec<Environment>,
    /// Environments that did not run here, with why.
    pub skipped: Vec<Skipped>,
    pub rows: Vec<Row>,
    pub summary: Vec<Summary>,
    pub boot: Vec<BootComparison>,
    pub claims: Claims,
}

/// What the host offered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostFacts {
    pub cores: usize,
    /// "opens", or why /dev/kvm does not.
    pub kvm: String,
    /// How this host's KVM pages guests, when its module says.
    pub kvm_paging: Option<String>,
}

/// One environment and its boots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Environment {
    /// e.g. `tcg/pc`, `xen-pv/pc`.
    pub name: String,
    /// The kernel's `@janus env` pairs from its first boot that printed them.
    pub env: BTreeMap<String, String>,
    pub boots: Vec<Boot>,
}

/// One boot with the tests and benchmarks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Boot {
    pub run: u32,
    pub passed: bool,
    /// xtask's one-line verdict on the boot.
    pub verdict: String,
    pub benches: usize,
    /// Guest time from entry to ready (`@janus done boot_us`).
    pub guest_boot_us: Option<u64>,
    /// QEMU's launch to its exit, on the host.
    pub host_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub environment: String,
    pub reason: String,
}

impl BenchReport {
    /// The environments in the order they ran.
    pub fn environment_names(&self) -> Vec<&str> {
        self.environments.iter().map(|e| e.name.as_str()).collect()
    }

    /// The charts, one per family that has numbers, environments in run order.
    pub fn charts(&self) -> Vec<(Family, chart::Chart)> {
        let series: Vec<String> = self
            .environment_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        Family::ALL
            .iter()
            .filter_map(|&family| {
                let ids = self.ids_of(family);
                if ids.is_empty() {
                    return None;
                }
                let unit = self.family_unit(family);
                let groups = ids
                    .iter()
                    .map(|id| chart::Group {
                        label: id.to_string(),
                        values: series
                            .iter()
                            .map(|env| {
                                let shown = self
                                    .find_all(env, id)
                                    .find(|s| s.shown_unit() == unit)?
                                    .shown()?;
                                Some(chart::Value {
                                    median: shown.median,
                                    low: shown.low,
                                    high: shown.high,
                                })
                            })
                            .collect(),
                    })
                    .collect();
                Some((
                    family,
                    chart::Chart {
                        title: family.title().to_string(),
                        unit,
                        series: series.clone(),
                        groups,
                    },
                ))
            })
            .collect()
    }

    /// The benchmark ids of a family, in first-seen order.
    pub fn ids_of(&self, family: Family) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for s in self.summary.iter().filter(|s| s.family == family) {
            if !ids.contains(&s.id.as_str()) {
                ids.push(&s.id);
            }
        }
        ids
    }

    /// The summaries of `id` in `environment`: one, unless boots printed it in different
    /// units.
    pub fn find_all<'a>(
        &'a self,
        environment: &'a str,
        id: &'a str,
    ) -> impl Iterator<Item = &'a Summary> + 'a {
        self.summary
            .iter()
            .filter(move |s| s.environment == environment && s.id == id)
    }

    /// The unit a family's table and chart are labelled in: that of its first summary.
    /// Numbers in another unit are marked with theirs in the table and left off the chart.
    pub fn family_unit(&self, family: Family) -> String {
        self.summary
            .iter()
            .find(|s| s.family == family)
            .map(Summary::shown_unit)
            .unwrap_or_default()
    }

    /// Writes report.json, report.md and the charts into `dir`, replacing an earlier
    /// report there; returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        let charts_dir = dir.join(markdown::CHARTS_DIR);
        let failed = |path: &Path, e: std::io::Error| {
            format!(
                "cannot write {}: {}",
                path.display(),
                crate::host::io_reason(&e)
            )
        };
        if charts_dir.exists() {
            fs::remove_dir_all(&charts_dir).map_err(|e| failed(&charts_dir, e))?;
        }
        fs::create_dir_all(&charts_dir).map_err(|e| failed(&charts_dir, e))?;
        let mut written = Vec::new();
        let json = dir.join("report.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        fs::write(&json, text + "\n").map_err(|e| failed(&json, e))?;
        written.push(json);
        let mut chart_files = Vec::new();
        for (family, chart) in self.charts() {
            let path = charts_dir.join(format!("{}.svg", family.slug()));
            // One family's numbers that cannot be drawn must not cost the rest of the report:
            // its table still shows them.
            let svg = match chart::render_svg(&chart) {
                Ok(svg) => svg,
                Err(e) => {
                    println!("bench: no chart for {}: {e}", family.title());
                    continue;
                }
            };
            fs::write(&path, svg).map_err(|e| failed(&path, e))?;
            chart_files.push(family);
            written.push(path);
        }
        let md = dir.join("report.md");
        fs::write(&md, markdown::render(self, &chart_files)).map_err(|e| failed(&md, e))?;
        written.push(md);
        Ok(written)
    }
}
