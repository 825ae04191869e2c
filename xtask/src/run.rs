//! `cargo xtask run`: boot the monitor in QEMU on the embedded defaults,
//! show its console and decoded log live, write `run-report.json`, and exit
//! with the monitor's status.

use std::time::Duration;

use anyhow::Result;

use crate::qemu::{Boot, Qemu};
use crate::{build, deps, paths, report};

/// Options of `cargo xtask run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub memory_mib: u32,
    pub append: String,
    pub timeout: Duration,
    /// Boot the GRUB ISO instead of `-kernel`.
    pub iso: bool,
}

/// Runs and returns the process exit code.
pub fn main(opts: &RunOptions) -> Result<i32> {
    deps::ensure(deps::QEMU)?;
    let boot = if opts.iso {
        let (iso, elf) = crate::image::build_iso(&paths::iso(), &opts.append)?;
        Boot::Iso { iso, elf }
    } else {
        Boot::Kernel {
            elf: build::kernel()?,
            append: opts.append.clone(),
        }
    };
    let qemu = Qemu {
        boot,
        machine: "q35",
        memory_mib: opts.memory_mib,
        timeout: opts.timeout,
        echo: true,
        extra_args: Vec::new(),
        label: None,
    };
    let result = qemu.run()?;
    let report = report::build(&result, opts.memory_mib);
    std::fs::create_dir_all(paths::xtask_dir())?;
    let path = paths::xtask_dir().join("run-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    let trace = report::dirty_trace(&result).map(|text| {
        let at = paths::xtask_dir().join("trace.txt");
        (
            std::fs::write(&at, &text),
            at,
            text.lines().count().saturating_sub(3),
        )
    });
    println!();
    println!("outcome: {}", report.outcome);
    if let Some((written, at, events)) = trace {
        written?;
        println!("dirty trace: {events} writes in {}", at.display());
    }
    if let Some(ms) = report.boot.host_ms_to_banner {
        println!("boot: {ms:.0} ms from QEMU start to the monitor's banner (host clock)");
    }
    if let Some(ms) = report.boot.guest_ms_to_kernel_main {
        println!("boot: {ms:.1} ms from CPU reset to kernel_main (guest TSC)");
    }
    if let Some(backend) = &report.gpu.backend {
        println!(
            "gpu: {} vGPUs on {backend}; {} guest workloads verified; hostile submission contained: {}",
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
