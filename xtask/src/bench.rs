//! `cargo xtask bench`: the benchmarks, each reported as a ratio against a
//! reference measured in the same run (never as a timed assertion):
//!
//! - the command scanner's throughput vs memcpy of the same bytes
//!   (`gpu/examples/scan_bench.rs`);
//! - the page digest's bandwidth vs memcpy and vs gMig's XOR fold, and the
//!   migration simulator's policies on its workload models and links
//!   (`migrate/sim/examples/bench.rs`);
//! - the shadow PPGTT's maintenance cost per submission and per guest
//!   page-table update vs the scan of one 3D submission
//!   (`gpu/examples/ppgtt_bench.rs`; reported, no goal);
//! - the real migration stream (authenticated, and encrypted) between two
//!   threads over loopback TCP vs a raw transfer of as many bytes, and the
//!   rate at which its CPU cost alone would limit it
//!   (`migrate/examples/stream_bench.rs`).
//!
//! Each bench is an example binary built in release for this machine's CPU
//! (`-C target-cpu=native`, in its own target directory so the normal build
//! is not invalidated): what a deployment would build. The results go to
//! `target/xtask/bench.json` (with the goals the issues set, and whether
//! they are met), `target/xtask/migration.md` and
//! `target/xtask/migration-downtime.svg`.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::{cmd, paths};

fn run_example(
    package: &str,
    example: &str,
    out: &Path,
    quick: bool,
    extra: &[&Path],
) -> Result<()> {
    let mut c = cmd::cargo();
    c.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        package,
        "--example",
        example,
        "--",
    ]);
    c.arg("--out").arg(out);
    if quick {
        c.arg("--quick");
    }
    for trace in extra {
        c.arg("--trace").arg(trace);
    }
    c.env("RUSTFLAGS", "-C target-cpu=native");
    c.env("CARGO_TARGET_DIR", paths::target_dir().join("bench"));
    cmd::run(&mut c)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// One goal from the issues, with the measured value.
fn goal(name: &str, measured: Option<f64>, op: &str, target: f64) -> Value {
    let met = measured.map(|m| if op == ">=" { m >= target } else { m <= target });
    json!({ "goal": name, "measured": measured, "op": op, "target": target, "met": met })
}

/// Collects the goals from the benches' outputs.
pub fn goals(scan: &Value, migration: &Value, stream: &Value) -> Vec<Value> {
    let f = |v: &Value| v.as_f64();
    let mut scanner = goal(
        "scanner throughput / memcpy, worst stream",
        f(&scan["ratio_min"]),
        ">=",
        0.25,
    );
    // What any scanner that decodes one command after another could reach
    // here: the copy plus the bare header chase (see scan_bench's `chase`).
    scanner["sequential_floor_worst_stream"] = scan["floor_ratio_min"].clone();
    let mut goals = vec![scanner];
    goals.push(goal(
        "digest bandwidth / memcpy",
        f(&migration["hash"]["xxh3_vs_memcpy"]),
        ">=",
        1.8,
    ));
    goals.push(goal(
        "digest bandwidth / gMig XOR fold",
        f(&migration["hash"]["xxh3_vs_xor_fold"]),
        ">=",
        0.9,
    ));
    let per_case = migration["goals"].as_array().cloned().unwrap_or_default();
    let worst_case = per_case
        .iter()
        .filter(|g| f(&g["best_vs_gmig_oneshot"]).is_some())
        .max_by(|a, b| {
            let r = |g: &Value| f(&g["best_vs_gmig_oneshot"]).unwrap_or(f64::NAN);
            r(a).total_cmp(&r(b))
        });
    let mut downtime = goal(
        "best policy downtime / gMig one-shot, worst case",
        worst_case.and_then(|g| f(&g["best_vs_gmig_oneshot"])),
        "<=",
        0.25,
    );
    // Which case, which policy, and what its throttle cost the guest.
    if let Some(g) = worst_case {
        downtime["case"] = json!({
            "workload": g["workload"],
            "link": g["link"],
            "best_policy": g["best_policy"],
            "throttled_ms": g["best_throttled_ms"],
            "throttle_mean_share": g["best_throttle_mean_share"],
            "guest_work_lost_ms": g["best_guest_work_lost_ms"],
        });
    }
    goals.push(downtime);
    let reduction = per_case
        .iter()
        .filter_map(|g| f(&g["oneshot_downtime_page_reduction"]))
        .fold(None, |acc: Option<f64>, r| {
            Some(acc.map_or(r, |a| a.min(r)))
        });
    goals.push(goal(
        "gMig one-shot: fewer pages in downtime than stop-and-copy, worst case",
        reduction,
        ">=",
        0.8,
    ));
    let mut link = goal(
        "migration stream (authenticated) / raw TCP, loopback",
        f(&stream["authenticated_ratio"]),
        ">=",
        0.8,
    );
    // Loopback is faster than any NIC: what one side's CPU alone allows.
    link["cpu_limit_mbps"] = stream["authenticated_cpu_limit_mbps"].clone();
    link["raw_tcp_mbps"] = stream["raw_tcp_mbps"].clone();
    goals.push(link);
    goals
}

/// Runs both benches and writes the reports.
pub fn main(quick: bool) -> Result<()> {
    let out = paths::xtask_dir();
    std::fs::create_dir_all(&out)?;
    run_example("gpu", "scan_bench", &out, quick, &[])?;
    run_example("gpu", "ppgtt_bench", &out, quick, &[])?;
    // A dirty trace the monitor recorded (`cargo xtask run --append
    // trace=on`) is replayed beside the workload models.
    let trace = out.join("trace.txt");
    let traces: Vec<&Path> = if trace.is_file() {
        vec![trace.as_path()]
    } else {
        Vec::new()
    };
    run_example("migrate-sim", "bench", &out, quick, &traces)?;
    run_example("migrate", "stream_bench", &out, quick, &[])?;
    let scan = read_json(&out.join("scan.json"))?;
    let migration = read_json(&out.join("migration.json"))?;
    let stream = read_json(&out.join("stream.json"))?;
    let ppgtt = read_json(&out.join("ppgtt.json"))?;
    let goals = goals(&scan, &migration, &stream);
    let report = json!({
        "quick": quick,
        "host": { "cpu": cpu_model(), "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) },
        "goals": goals,
        "scanner": scan,
        "ppgtt": ppgtt,
        "migration": migration,
        "stream": stream,
    });
    let path = out.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\n{:<72} {:>10} {:>10}  met", "goal", "measured", "target");
    for g in report["goals"].as_array().into_iter().flatten() {
        let measured = g["measured"]
            .as_f64()
            .map_or("-".to_string(), |m| format!("{m:.3}"));
        let met = match g["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!(
            "{:<72} {:>10} {:>2} {:>7.2}  {met}",
            g["goal"].as_str().unwrap_or_default(),
            measured,
            g["op"].as_str().unwrap_or_default(),
            g["target"].as_f64().unwrap_or_default()
        );
    }
    println!(
        "\nwrote {}, {}, {}",
        path.display(),
        out.join("migration.md").display(),
        out.join("migration-downtime.svg").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_read_both_reports() {
        let scan = json!({"ratio_min": 0.3});
        let migration = json!({
            "hash": {"xxh3_vs_memcpy": 1.7, "xxh3_vs_xor_fold": 0.95},
            "goals": [
                {"best_vs_gmig_oneshot": 0.2, "oneshot_downtime_page_reduction": 0.9,
                 "best_policy": "informed", "best_throttled_ms": 0.0},
                {"best_vs_gmig_oneshot": 0.4, "oneshot_downtime_page_reduction": 0.85,
                 "best_policy": "informed-throttle", "best_throttled_ms": 900.0}
            ]
        });
        let stream = json!({"authenticated_ratio": 0.5, "authenticated_cpu_limit_mbps": 3000.0});
        let g = goals(&scan, &migration, &stream);
        let met: Vec<Option<bool>> = g.iter().map(|g| g["met"].as_bool()).collect();
        assert_eq!(
            met,
            vec![
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(false)
            ]
        );
        assert_eq!(g[5]["cpu_limit_mbps"].as_f64(), Some(3000.0));
        assert_eq!(g[3]["measured"].as_f64(), Some(0.4));
        assert_eq!(
            g[3]["case"]["best_policy"].as_str(),
            Some("informed-throttle")
        );
        assert_eq!(g[3]["case"]["throttled_ms"].as_f64(), Some(900.0));
    }

    #[test]
    fn missing_figures_are_not_met() {
        let g = goals(&json!({}), &json!({}), &json!({}));
        assert!(g.iter().all(|g| g["met"].is_null()));
    }
}
