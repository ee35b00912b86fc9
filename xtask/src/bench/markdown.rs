//! report.md: the claims first (what a reader came for), then boot time against Linux, the
//! environments, and one table per benchmark family with environments side by side, each
//! under its chart.

use std::fmt::Write;

use super::claims::{Claim, times};
use super::family::Family;
use super::report::BenchReport;

/// The charts' folder, relative to report.md.
pub const CHARTS_DIR: &str = "charts";

/// A number the way the tables show it: three significant digits or whole units.
pub fn value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// `median (low .. high)`, or the bare value where there is no spread (one sample).
pub fn with_spread(median: f64, low: f64, high: f64) -> String {
    let (m, l, h) = (value(median), value(low), value(high));
    if l == m && h == m {
        m
    } else {
        format!("{m} ({l} .. {h})")
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn optional(v: Option<f64>, show: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_string(), show)
}

/// The whole document; `charts` are the families that have a chart file.
pub fn render(report: &BenchReport, charts: &[Family]) -> String {
    let mut out = String::new();
    let p = &report.provenance;
    let _ = writeln!(out, "# Janus benchmark report\n");
    let _ = writeln!(
        out,
        "Janus `{}` on {}, QEMU {}{}; {}; {} boot{} per environment; {} host cores. \
         /dev/kvm {}{}.\n",
        p.commit,
        p.cpu_model,
        p.qemu_version,
        p.xen_version
            .as_deref()
            .map(|x| format!(", Xen {x}"))
            .unwrap_or_default(),
        p.date,
        report.runs,
        if report.runs == 1 { "" } else { "s" },
        report.host.cores,
        report.host.kvm,
        report
            .host
            .kvm_paging
            .as_deref()
            .map(|k| format!("; the host's KVM module: {k}"))
            .unwrap_or_default(),
    );

    let _ = writeln!(out, "## The three claims\n");
    let _ = writeln!(out, "| claim | ratio | verdict |\n|---|---|---|");
    let claims = [
        ("MMU paravirtualization", &report.claims.mmu),
        ("Paravirtual clocks", &report.claims.clock),
        ("Paravirtual I/O", &report.claims.io),
    ];
    for (name, claim) in claims {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            optional(claim.ratio, times),
            cell(&claim.verdict)
        );
    }
    out.push('\n');
    for (name, claim) in claims {
        numbers(&mut out, name, claim);
    }

    let _ = writeln!(out, "## Boot time against Linux\n");
    let _ = writeln!(
        out,
        "Guest: entry to ready (Janus) or to init (Linux). Host: QEMU launch to exit. \
         Ratios are Janus over Linux.\n"
    );
    let _ = writeln!(
        out,
        "| environment | Janus guest ms | Janus host ms | Linux guest ms | Linux host ms | \
         guest ratio | host ratio | note |\n|---|---|---|---|---|---|---|---|"
    );
    for b in &report.boot {
        let ratio = |r: Option<f64>| optional(r, |r| format!("{r:.3}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            b.environment,
            optional(b.janus_guest_ms, value),
            optional(b.janus_host_ms, value),
            optional(b.linux_guest_ms, value),
            optional(b.linux_host_ms, value),
            ratio(b.guest_ratio),
            ratio(b.host_ratio),
            cell(&b.note)
        );
    }
    out.push('\n');

    let _ = writeln!(out, "## Environments\n");
    let _ = writeln!(
        out,
        "| environment | hypervisor | paging | clock | timer | boots passed |\n|---|---|---|---|---|---|"
    );
    for e in &report.environments {
        let key = |k: &str| cell(e.env.get(k).map_or("?", String::as_str));
        let passed = e.boots.iter().filter(|b| b.passed).count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {passed}/{} |",
            e.name,
            key("hypervisor"),
            key("paging"),
            key("clock"),
            key("timer"),
            e.boots.len()
        );
    }
    for s in &report.skipped {
        let _ = writeln!(out, "\nNot run: {} ({}).", s.environment, cell(&s.reason));
    }
    out.push('\n');

    let environments = report.environment_names();
    for family in Family::ALL {
        let ids = report.ids_of(family);
        if ids.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {}\n", family.title());
        if charts.contains(&family) {
            let _ = writeln!(
                out,
                "![{}]({CHARTS_DIR}/{}.svg)\n",
                family.title(),
                family.slug()
            );
        }
        let unit = report.family_unit(family);
        let _ = write!(out, "| benchmark ({unit}) |");
        for env in &environments {
            let _ = write!(out, " {env} |");
        }
        let _ = write!(out, "\n|---|");
        for _ in &environments {
            out.push_str("---|");
        }
        out.push('\n');
        for id in ids {
            let _ = write!(out, "| {} |", cell(id));
            for env in &environments {
                let values: Vec<String> = report
                    .find_all(env, id)
                    .filter_map(|s| {
                        let v = s.shown()?;
                        let text = with_spread(v.median, v.low, v.high);
                        let own_unit = s.shown_unit();
                        Some(if own_unit == unit {
                            text
                        } else {
                            format!("{text} {own_unit}")
                        })
                    })
                    .collect();
                let text = if values.is_empty() {
                    "–".to_string()
                } else {
                    values.join("; ")
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## How to read this report\n");
    let spread = if report.runs > 1 {
        "the lowest and highest median of the boots"
    } else {
        "min and p99 within the boot (run with `--runs N` for the spread between boots)"
    };
    let _ = writeln!(
        out,
        "Each cell is the median with its spread in brackets: {spread}. Absolute numbers \
         belong to this host; compare environments within one report, and reports of \
         different commits with `cargo xtask bench --compare old/report.json`. Under TCG and \
         under Xen (which runs inside QEMU's TCG here) every number includes emulation; the \
         ratios inside one environment are what carries over to other hosts."
    );
    out
}

fn numbers(out: &mut String, name: &str, claim: &Claim) {
    let _ = writeln!(out, "### {name}\n");
    let _ = writeln!(out, "Ratio: {}.\n", claim.ratio_of);
    if claim.numbers.is_empty() {
        let _ = writeln!(out, "No numbers: {}.\n", claim.verdict);
        return;
    }
    let _ = writeln!(
        out,
        "| number | environment | benchmark | value |\n|---|---|---|---|"
    );
    for n in &claim.numbers {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} {} |",
            cell(&n.label),
            n.environment,
            cell(&n.id),
            value(n.value),
            cell(&n.unit)
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_three_significant_digits() {
        assert_eq!(value(7336.0), "7336");
        assert_eq!(value(551.14), "551");
        assert_eq!(value(42.25), "42.2");
        assert_eq!(value(1.2345), "1.23");
        assert_eq!(value(0.12345), "0.123");
        assert_eq!(value(-722.656), "-723");
        assert_eq!(value(0.0), "0");
    }

    #[test]
    fn spread_is_left_out_when_there_is_none() {
        assert_eq!(with_spread(10.0, 9.0, 12.5), "10.0 (9.00 .. 12.5)");
        assert_eq!(with_spread(-903.0, -903.0, -903.0), "-903");
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
