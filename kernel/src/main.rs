//! gmig-rs: a bare-metal type-1 monitor that shares an Intel Gen9 GPU
//! between guests and live-migrates their vGPUs (ARCHITECTURE.md).
//!
//! This binary is thin glue plus the hardware-facing code: CPU set-up,
//! memory, console and logging, PCI, and the main loop. The decisions live in
//! the `gpu` and `migrate` crates, tested on the host. Every `unsafe` block
//! here says why it holds.
#![no_std]
#![no_main]

extern crate alloc;

mod acpi;
mod arch;
mod cmdline;
mod console;
mod digest;
mod dirty_trace;
mod entropy;
mod exit;
mod gpu_mem;
mod guests;
mod log;
mod mem;
mod migration;
mod net;
mod panic;
mod pci;
mod platform;
mod roles;
mod selftest;
mod serial;
mod time;
mod vgpus;
mod vm;
mod workload;

use boot::BootInfo;

use crate::cmdline::{Mode, KNOWN_OPTIONS};
use crate::exit::{exit, ExitCode};

boot::entry_point!(kernel_main);

fn kernel_main(info: &'static BootInfo) -> ! {
    let tsc_at_main = arch::cpu::rdtsc();
    time::mark_boot();
    console::init();
    log::init();
    println!(
        "gmig-rs {} monitor: booted via {}",
        env!("CARGO_PKG_VERSION"),
        info.protocol.name()
    );
    let selectors = arch::gdt::init();
    arch::idt::init(selectors);
    let calibration = time::calibrate();
    mem::heap::init();

    let mut brand = [0u8; 48];
    defmt::info!(
        "gmig-rs {=str} on {=str}, booted via {=str}",
        env!("CARGO_PKG_VERSION"),
        arch::cpu::brand_string(&mut brand),
        info.protocol.name()
    );
    defmt::info!(
        "report tsc_hz={=u64} tsc_measured={=bool} boot_to_main_us={=u64}",
        calibration.tsc_hz,
        calibration.measured,
        time::micros_since_reset(tsc_at_main)
    );

    let cmdline = core::str::from_utf8(info.cmdline()).unwrap_or("<not UTF-8>");
    defmt::info!(
        "command line: {}",
        defmt::Display2Format(&cmdline::Redacted(cmdline))
    );
    let options = match cmdline::parse(info.cmdline(), info.cmdline_truncated) {
        Ok(options) => options,
        Err(e) => {
            println!("error: bad kernel command line: {e}");
            println!("known options:");
            for (name, help) in KNOWN_OPTIONS {
                println!("  {name}={help}");
            }
            exit(ExitCode::BadCommandLine);
        }
    };

    let mut platform = match platform::bring_up(info, options, calibration) {
        Ok(p) => p,
        Err(e) => {
            println!("error: bring-up failed: {e}");
            exit(ExitCode::Failure);
        }
    };
    platform.log_summary();
    platform.vgpus.log_map();

    match platform.options.mode {
        Mode::SelfTest(selection) => selftest::run(&mut platform, selection),
        Mode::Run if platform.options.roles.role != cmdline::Role::Local => {
            roles::run(&mut platform)
        }
        Mode::Run => run(&mut platform),
        Mode::NetBench { mib } => net::bench::run(&mut platform, mib),
        Mode::Ring3 => vm::demo::run(&mut platform),
    }
}

/// The monitor on the embedded defaults: every vGPU's built-in guest runs
/// its workload, then a hostile submission is shown contained.
fn run(platform: &mut platform::Platform) -> ! {
    defmt::info!(
        "monitor: bring-up complete in {=u64} us",
        time::micros_since_boot()
    );
    println!(
        "gmig-rs: bring-up complete, {} PCI functions, {} vGPUs on {}",
        platform.pci.devices.len(),
        platform.vgpus.vgpus.len(),
        platform.vgpus.device.name()
    );
    match workload::scenario(&mut platform.vgpus) {
        Ok(report) => {
            defmt::info!(
                "report workload_guests_ok={=usize} workload_submissions={=u32} isolation_shown={=bool}",
                report.guests_ok,
                report.submissions,
                report.isolation_shown
            );
            println!(
                "gmig-rs: {} guest workloads verified ({} submissions){}",
                report.guests_ok,
                report.submissions,
                if report.isolation_shown {
                    ", hostile submission contained"
                } else {
                    ""
                }
            );
        }
        Err(e) => {
            println!("error: workload failed: {e}");
            exit(ExitCode::Failure)
        }
    }
    if platform.vgpus.vgpus.is_empty() {
        exit(ExitCode::Success);
    }
    // Live-migrate guest 0's vGPU onto new slices and frames while it works.
    if platform.options.policy.digest() == migrate::digest::DigestKind::XorFold {
        // Only this local migration can compare memory afterwards.
        println!(
            "warning: policy={} verifies pages with gMig's XOR fold, which misses edits that \
             cancel over 32-byte lanes; the monitor checks memory after this local migration, \
             a migration to another machine could not",
            platform.options.policy.name()
        );
    }
    let outcome = workload::GuestDriver::resume(&mut platform.vgpus, 0)
        .map_err(migration::MigrationError::Guest)
        .and_then(|guest| {
            migration::migrate_local(
                &mut platform.vgpus,
                &mut platform.memory.frames,
                0,
                guest,
                migration::MigrationSettings {
                    policy: platform.options.policy,
                    throttle: migrate::ThrottleConfig::new(),
                    trace: platform.options.trace,
                    security: migration::StreamSecurity::local(&platform.options),
                },
            )
        })
        .and_then(|(report, guest)| {
            guest
                .smoke(&mut platform.vgpus)
                .map(|_| report)
                .map_err(migration::MigrationError::Guest)
        });
    match outcome {
        Ok(r) => {
            defmt::info!(
                "migration: vgpu{=u8} -> vgpu{=u8} with {=str}: {=u32} rounds, pre-copy {=u64} pages / {=u64} bytes, stop-and-copy {=u64} pages / {=u64} bytes, {=u32} guest submissions during pre-copy, {=u32} submission steps deferred by the throttle (lowest share {=u16} per mille)",
                r.source,
                r.destination,
                r.policy.name(),
                r.rounds,
                r.precopy_pages,
                r.precopy_bytes,
                r.stop_pages,
                r.stop_bytes,
                r.guest_submissions,
                r.throttled_steps,
                r.min_share_permille
            );
            defmt::info!(
                "report migration_policy={=str} migration_downtime_us={=u64} migration_total_us={=u64} migration_stop_pages={=u64} migration_precopy_pages={=u64} migration_throttled_steps={=u32} migration_min_share_permille={=u16} migration_verified=true migration_authenticated=true migration_encrypted={=bool}",
                r.policy.name(),
                r.downtime_us,
                r.total_us,
                r.stop_pages,
                r.precopy_pages,
                r.throttled_steps,
                r.min_share_permille,
                r.encrypted
            );
            println!(
                "gmig-rs: guest 0 live-migrated to new slices with {} ({} pages in stop-and-copy, downtime {} us under TCG); memory identical, guest runs on",
                r.policy.name(),
                r.stop_pages,
                r.downtime_us
            );
            exit(ExitCode::Success)
        }
        Err(migration::MigrationError::Setup(e)) => {
            // All partitions in use: nowhere to migrate to on this machine.
            println!("gmig-rs: live migration skipped: no room for a destination vGPU ({e})");
            exit(ExitCode::Success)
        }
        Err(e @ migration::MigrationError::Unconfirmed(_)) => {
            // Committed: the guest may run elsewhere; it must not run here too.
            println!("error: migration failed: {e}");
            exit(ExitCode::Failure)
        }
        Err(e) => {
            println!("error: migration failed: {e}");
            // Nothing is lost: the guest goes on where it was.
            let source_runs = workload::GuestDriver::resume(&mut platform.vgpus, 0)
                .and_then(|guest| guest.smoke(&mut platform.vgpus));
            match source_runs {
                Ok(_) => {
                    println!("gmig-rs: guest 0 goes on on the source vGPU, its workload verified")
                }
                Err(e) => println!("error: guest 0 does not run on the source either: {e}"),
            }
            exit(ExitCode::Failure)
        }
    }
}
