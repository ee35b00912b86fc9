//! The report of `cargo xtask bench` on a short run: one boot each of tcg/pc, xen-pvh and
//! xen-pv (together they hold every number the three claims need) and the Linux peer on
//! tcg/pc. Checks the shape of report.json, that every claim and the Linux boot ratio are
//! filled from measured numbers, and that report.md links charts that exist.

use std::fs;
use std::path::Path;

use serde_json::Value;
use xtask::bench::{self, matrix::Place};
use xtask::linux;
use xtask::qemu::{Accel, Machine};

const ENVIRONMENTS: [&str; 3] = ["tcg/pc", "xen-pvh/pc", "xen-pv/pc"];

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

fn positive(value: &Value, key: &str) -> f64 {
    let number = value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"));
    assert!(number > 0.0 && number.is_finite(), "{key} = {number}");
    number
}

#[test]
fn short_bench_run_writes_a_complete_report() {
    // Fails with the reason `cargo xtask test` gave when Xen could not be fetched.
    janus_tests::xen_image();
    let out = std::env::temp_dir().join(format!("janus-bench-shape-{}", std::process::id()));
    let args = bench::Args {
        envs: vec![Place::Tcg, Place::XenPvh, Place::XenPv],
        machines: vec![Machine::Pc],
        runs: 1,
        compare: None,
        out: Some(out.clone()),
        no_linux: false,
        image: Some(janus_tests::kernel_image()),
        timeout: 300,
    };
    let status = bench::run(&args).unwrap_or_else(|e| panic!("bench did not run: {e}"));
    assert_eq!(
        status,
        0,
        "a boot failed; the report is in {}",
        out.display()
    );
    check_json(&out);
    check_markdown_and_charts(&out);
    fs::remove_dir_all(&out).unwrap();
}

fn check_json(out: &Path) {
    let json: Value = serde_json::from_str(&fs::read_to_string(out.join("report.json")).unwrap())
        .expect("report.json is JSON");
    assert_eq!(json["schema"], 1);
    for key in ["cpu_model", "qemu_version", "xen_version", "commit", "date"] {
        assert!(!text(&json, key).is_empty(), "{key}");
    }
    let names: Vec<&str> = json["environments"]
        .as_array()
        .expect("environments")
        .iter()
        .map(|e| text(e, "name"))
        .collect();
    assert_eq!(names, ENVIRONMENTS);
    for environment in json["environments"].as_array().unwrap() {
        assert!(
            environment["env"]["hypervisor"].is_string(),
            "{environment}"
        );
        let boot = &environment["boots"][0];
        assert_eq!(boot["passed"], true, "{boot}");
        positive(boot, "host_ms");
    }

    let rows = json["rows"].as_array().expect("rows");
    for name in ENVIRONMENTS {
        assert!(
            rows.iter().any(|r| r["environment"] == name),
            "no rows from {name}"
        );
    }
    for row in rows {
        for key in [
            "environment",
            "id",
            "family",
            "unit",
            "cpu_model",
            "qemu_version",
            "xen_version",
            "commit",
            "date",
        ] {
            assert!(!text(row, key).is_empty(), "{key} in {row}");
        }
        assert_eq!(row["run"], 1);
        for key in ["min", "median", "p99"] {
            assert!(row[key].is_number(), "{key} in {row}");
        }
    }
    assert!(!json["summary"].as_array().expect("summary").is_empty());

    for claim in ["mmu", "clock", "io"] {
        let claim = &json["claims"][claim];
        positive(claim, "ratio");
        assert!(!text(claim, "ratio_of").is_empty());
        assert!(
            !text(claim, "verdict").starts_with("not answered"),
            "{claim}"
        );
        let numbers = claim["numbers"].as_array().expect("numbers");
        assert!(numbers.len() >= 2, "{claim}");
        for n in numbers {
            assert!(
                n["value"].is_number() && n["environment"].is_string(),
                "{n}"
            );
        }
    }

    let boot = json["boot"]
        .as_array()
        .expect("boot")
        .iter()
        .find(|b| b["environment"] == "tcg/pc")
        .expect("a boot comparison for tcg/pc");
    positive(boot, "guest_ratio");
    positive(boot, "host_ratio");
    positive(&boot["linux"][0], "guest_us");
    assert!(!text(&boot["linux"][0], "kernel").is_empty());
    for xen in ["xen-pvh/pc", "xen-pv/pc"] {
        let b = json["boot"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["environment"] == xen)
            .unwrap();
        positive(b, "janus_host_ms");
        assert!(b["guest_ratio"].is_null(), "{b}");
        assert!(text(b, "note").starts_with("only Janus boots here"), "{b}");
    }
}

fn check_markdown_and_charts(out: &Path) {
    let md = fs::read_to_string(out.join("report.md")).unwrap();
    for heading in [
        "## The three claims",
        "## Boot time against Linux",
        "## Environments",
        "## Page-table updates",
        "## Clock source read cost",
        "## Block sequential throughput",
    ] {
        assert!(md.contains(heading), "{heading} not in report.md");
    }
    let charts: Vec<&str> = md
        .match_indices("](charts/")
        .map(|(i, _)| {
            let link = &md[i + 2..];
            &link[..link.find(')').unwrap()]
        })
        .collect();
    assert!(charts.len() >= 5, "{charts:?}");
    for chart in charts {
        let svg = fs::read_to_string(out.join(chart)).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(svg.contains("<svg"), "{chart}");
        assert!(!svg.contains("NaN"), "{chart}");
    }
}

/// The Linux peer on the machine type the short run above leaves out, and on pc, each
/// reaching init under TCG.
#[test]
fn linux_peer_reaches_init_under_tcg() {
    let workspace = xtask::workspace::Workspace::locate().unwrap();
    let peer = linux::ensure(&workspace.target_dir).unwrap_or_else(|e| panic!("{e}"));
    for machine in [Machine::Microvm, Machine::Pc] {
        let boot = linux::boot(&peer, Accel::Tcg, machine, linux::boot::MAX_TIMEOUT)
            .unwrap_or_else(|e| panic!("{machine}: {e}"));
        assert_eq!(boot.failure, None, "{machine}");
        assert!(boot.reached_init, "{machine}");
        let init_us = boot.guest_init_us.expect("the kernel's init line");
        assert!(init_us > 0 && init_us < 30_000_000, "{init_us} us");
        assert!(
            boot.host_ms * 1000 > init_us,
            "host time includes the guest's"
        );
    }
}
