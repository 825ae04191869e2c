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
        Mode::Run => roles::run(&mut platform),
        Mode::NetBench { mib } => net::bench::run(&mut platform, mib),
        Mode::Ring3 => vm::demo::run(&mut platform),
    }
}
