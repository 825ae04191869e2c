//! `cargo xtask run`: by default a live migration between two monitors in
//! two QEMUs ([`crate::migrate_run`]), with a progress line while it runs
//! and a table like QEMU's `info migrate` at the end, optionally beside
//! QEMU's own migration of the same guests ([`crate::compare_qemu`]);
//! with `--local`, one monitor on the embedded defaults (its guests, and
//! a migration inside it). Either way it writes `run-report.json` and
//! exits with the outcome.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::compare_qemu::{self, CompareOptions};
use crate::migrate_run::{self, MigrationOptions, Output, PolicyChoice, Workload};
use crate::migration_report;
use crate::pair::Nic;
use crate::qemu::{Boot, Outcome, Qemu};
use crate::status_line::StatusLine;
use crate::{build, deps, paths, report};

/// Options of `cargo xtask run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// One QEMU (`role=local`) instead of the two-QEMU migration.
    pub local: bool,
    /// RAM of each QEMU (default: 128 MiB with `local`, else
    /// [`migrate_run::default_memory_mib`]).
    pub memory_mib: Option<u32>,
    /// Kernel options (for both monitors of the pair).
    pub append: String,
    /// Default: 120 s with `local`, 300 s for one migration, 1200 s for
    /// `--policy all`.
    pub timeout: Option<Duration>,
    /// Boot the GRUB ISO instead of `-kernel` (`local` only).
    pub iso: bool,
    pub nic: Nic,
    /// `None`: the monitor's default.
    pub policy: Option<PolicyChoice>,
    pub workload: Option<Workload>,
    pub guest_mib: Option<u32>,
    pub bandwidth_mibps: Option<u32>,
    pub encrypt: bool,
    pub compare_qemu: bool,
    pub verbose: bool,
}

/// Runs and returns the process exit code.
pub fn main(opts: &RunOptions) -> Result<i32> {
    deps::ensure(deps::QEMU)?;
    if opts.local {
        local(opts)
    } else {
        two_qemus(opts)
    }
}

fn write_report(value: &impl serde::Serialize) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(paths::xtask_dir())?;
    let path = paths::xtask_dir().join("run-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")?;
    Ok(path)
}

/// The exit code of a pair: the first side that did not succeed (source
/// first), else 1 when a migration failed, else 0.
pub(crate) fn pair_exit_code(source: Outcome, destination: Outcome, all_verified: bool) -> i32 {
    match (source, destination) {
        (Outcome::Success, Outcome::Success) if all_verified => 0,
        (Outcome::Success, Outcome::Success) => 1,
        (Outcome::Success, d) => d.process_code(),
        (s, _) => s.process_code(),
    }
}

fn two_qemus(opts: &RunOptions) -> Result<i32> {
    let elf = build::kernel()?;
    let policy = opts
        .policy
        .clone()
        .unwrap_or_else(|| PolicyChoice::One(PolicyChoice::DEFAULT.to_string()));
    let timeout = opts.timeout.unwrap_or(match policy {
        PolicyChoice::All => Duration::from_secs(1200),
        PolicyChoice::One(_) => Duration::from_secs(300),
    });
    let output = if opts.verbose {
        Output::Verbose
    } else {
        Output::Terminal
    };
    let mopts = MigrationOptions {
        nic: opts.nic,
        policy,
        workload: opts.workload,
        guest_mib: opts.guest_mib,
        bandwidth_mibps: opts.bandwidth_mibps,
        encrypt: opts.encrypt,
        append: opts.append.clone(),
        // The source's fifth guest, the PPGTT renderer (`3d-ppgtt`), runs
        // beside the migrated one, unless the command line says how many.
        source_append: if opts
            .append
            .split_whitespace()
            .any(|w| w.starts_with("guests="))
        {
            String::new()
        } else {
            "guests=5".into()
        },
        memory_mib: opts.memory_mib,
        timeout,
        output,
        ..MigrationOptions::default()
    };
    let status = Arc::new(StatusLine::stdout());
    let mut run = migrate_run::run(&elf, &mopts, Some(Arc::clone(&status)))?;
    if opts.compare_qemu {
        run.report.qemu_migration = compare_qemu::run(&CompareOptions {
            elf: elf.clone(),
            memory_mib: mopts.memory_mib(),
            workload: opts.workload,
            guest_mib: opts.guest_mib,
            bandwidth_mibps: opts.bandwidth_mibps,
            append: opts.append.clone(),
            status: Some(Arc::clone(&status)),
            verbose: opts.verbose,
        });
    }
    let path = write_report(&run.report)?;
    let report = &run.report;
    println!();
    println!(
        "source: {}; destination: {}; {} over {} ({}), {} MiB of RAM each",
        report.source.outcome,
        report.destination.outcome,
        if opts.encrypt {
            "authenticated and encrypted stream"
        } else {
            "authenticated stream"
        },
        opts.nic.name(),
        opts.bandwidth_mibps
            .map_or_else(|| "no cap".to_string(), |c| format!("cap {c} MiB/s")),
        mopts.memory_mib()
    );
    println!();
    print!(
        "{}",
        migration_report::table(&report.migrations, &report.qemu_migration)
    );
    println!();
    print!(
        "{}",
        migration_report::guests_table(&report.source.guests, &report.destination.guests)
    );
    if !report.reference.is_empty() {
        println!();
        print!("{}", crate::reference::table(&report.reference));
    }
    for m in report.migrations.iter().filter(|m| !m.succeeded()) {
        println!(
            "{}: {}",
            m.policy.as_deref().unwrap_or("?"),
            m.failure.as_deref().unwrap_or("not verified")
        );
    }
    for q in &report.qemu_migration {
        if let Some(f) = &q.failure {
            println!("QEMU {}: {f}", q.mode);
        }
    }
    let figures = migration_report::figures(&report.migrations, &report.qemu_migration);
    if !figures.is_empty() {
        println!();
        for f in figures {
            println!("{f}");
        }
    }
    if let Some(line) = write_trace(&run.source)? {
        println!("{line}");
    }
    println!("report: {}", path.display());
    for (side, result) in [("source", &run.source), ("destination", &run.destination)] {
        if !result.qemu_stderr.trim().is_empty() {
            eprintln!("{side} QEMU's stderr:\n{}", result.qemu_stderr);
        }
    }
    let all_verified =
        report.migrations.iter().all(|m| m.succeeded()) && report.outcome == "success";
    Ok(pair_exit_code(
        run.source.outcome,
        run.destination.outcome,
        all_verified,
    ))
}

fn local(opts: &RunOptions) -> Result<i32> {
    let mut append = opts.append.clone();
    let mut add = |option: String| {
        if !append.is_empty() {
            append.push(' ');
        }
        append.push_str(&option);
    };
    if let Some(p) = &opts.policy {
        add(format!("policy={}", p.name()));
    }
    if let Some(w) = opts.workload {
        add(format!("workload={}", w.name()));
    }
    if let Some(mib) = opts.guest_mib {
        add(format!("guest_mib={mib}"));
    }
    let boot = if opts.iso {
        let (iso, elf) = crate::image::build_iso(&paths::iso(), &append)?;
        Boot::Iso { iso, elf }
    } else {
        Boot::Kernel {
            elf: build::kernel()?,
            append,
        }
    };
    let memory_mib = opts.memory_mib.unwrap_or(128);
    let qemu = Qemu {
        boot,
        machine: "q35",
        memory_mib,
        timeout: opts.timeout.unwrap_or(Duration::from_secs(120)),
        echo: true,
        extra_args: Vec::new(),
        label: None,
        sink: None,
    };
    let result = qemu.run()?;
    let report = report::build(&result, memory_mib);
    let path = write_report(&report)?;
    let trace = write_trace(&result)?;
    println!();
    println!("outcome: {}", report.outcome);
    if let Some(line) = trace {
        println!("{line}");
    }
    if let Some(ms) = report.boot.host_ms_to_banner {
        println!("boot: {ms:.0} ms from QEMU start to the monitor's banner (host clock)");
    }
    if let Some(ms) = report.boot.guest_ms_to_kernel_main {
        println!("boot: {ms:.1} ms from CPU reset to kernel_main (guest TSC)");
    }
    if let Some(backend) = &report.gpu.backend {
        println!(
            "gpu: {} vGPUs on {backend}; {} guest workloads verified; hostile guest contained: {}",
            report.gpu.vgpus.len(),
            report.gpu.workloads_verified.unwrap_or(0),
            report.gpu.isolation_shown.unwrap_or(false)
        );
    }
    if let (Some(policy), Some(true)) = (&report.migration.policy, report.migration.verified) {
        println!(
            "migration: guest 0 moved to new slices with {policy}: {} pages in pre-copy, {} in stop-and-copy, memory identical",
            report.migration.precopy_pages.unwrap_or(0),
            report.migration.stop_pages.unwrap_or(0)
        );
    }
    println!(
        "pci: {} functions; report: {}",
        report.pci.len(),
        path.display()
    );
    if !result.qemu_stderr.trim().is_empty() {
        eprintln!("qemu stderr:\n{}", result.qemu_stderr);
    }
    Ok(result.outcome.process_code())
}

/// Writes the dirty trace a `trace=on` run recorded (the migrating guest's
/// writes, in `migrate-sim`'s format) to `target/xtask/trace.txt`, where
/// `cargo xtask bench` replays it; the line that says so, if there was one.
fn write_trace(result: &crate::qemu::RunResult) -> Result<Option<String>> {
    let Some(text) = report::dirty_trace(result) else {
        return Ok(None);
    };
    let at = paths::xtask_dir().join("trace.txt");
    std::fs::write(&at, &text)?;
    let events = text.lines().count().saturating_sub(3);
    Ok(Some(format!(
        "dirty trace: {events} writes in {}",
        at.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_names_the_side_that_failed_first() {
        assert_eq!(pair_exit_code(Outcome::Success, Outcome::Success, true), 0);
        assert_eq!(pair_exit_code(Outcome::Success, Outcome::Success, false), 1);
        assert_eq!(pair_exit_code(Outcome::Success, Outcome::Panic, true), 2);
        assert_eq!(pair_exit_code(Outcome::Timeout, Outcome::Panic, false), 6);
    }
}
