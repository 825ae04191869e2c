//! The monitor boots in QEMU, from `-kernel` (PVH) and from the GRUB ISO
//! (Multiboot2 via SeaBIOS), with small and large memory, and shows what a
//! user needs: a banner, the memory map summary and the PCI device list.

use tests::{boot, expect_console, expect_log, expect_outcome, expect_self_tests_pass};
use xtask::qemu::{Boot, Outcome, Qemu};

#[test]
fn run_mode_prints_banner_memory_and_pci() {
    let result = boot("", 128);
    expect_outcome(&result, Outcome::Success);
    expect_console(&result, "gmig-rs");
    expect_console(&result, "booted via pvh");
    expect_log(&result, "memory: ");
    expect_log(&result, "MiB usable");
    expect_log(
        &result,
        "pci 00:00.0 [8086:29c0] class 06.00.00 host bridge",
    );
    let report = xtask::report::build(&result, 128);
    assert!(
        report.pci.len() >= 4,
        "PCI list too short: {:?}",
        report.pci
    );
    let usable = report.memory.usable_bytes.expect("usable memory reported");
    assert!(
        (100 << 20..=128 << 20).contains(&usable),
        "usable {usable} for 128 MiB"
    );
    assert!(report.boot.guest_ms_to_kernel_main.is_some());
    assert_eq!(report.malformed_log_frames, 0);
}

#[test]
fn self_tests_pass_with_128_mib() {
    expect_self_tests_pass(&boot("selftest=all", 128));
}

#[test]
fn self_tests_pass_with_2_gib() {
    let result = boot("selftest=all", 2048);
    expect_self_tests_pass(&result);
    let usable = xtask::report::build(&result, 2048)
        .memory
        .usable_bytes
        .expect("usable memory");
    assert!(
        usable > 1900 << 20,
        "2 GiB guest reports only {usable} usable bytes"
    );
}

#[test]
fn boots_from_grub_iso() {
    let dir = xtask::paths::xtask_dir().join("tests");
    let (iso, elf) = xtask::image::build_iso(&dir.join("selftest.iso"), "selftest=all")
        .expect("building the ISO");
    let mut qemu = Qemu::kernel(elf.clone(), "");
    qemu.boot = Boot::Iso { iso, elf };
    let result = qemu.run().expect("running QEMU");
    expect_console(&result, "booted via multiboot2");
    expect_log(&result, "command line: selftest=all");
    expect_self_tests_pass(&result);
}

#[test]
fn self_tests_pass_with_memory_above_4_gib() {
    let result = boot("selftest=all", 6144);
    expect_self_tests_pass(&result);
    expect_log(&result, "0x0100000000..");
}

#[test]
fn legacy_pc_without_mcfg_uses_port_config_access() {
    let mut qemu = Qemu::kernel(tests::kernel(), "selftest=all");
    qemu.machine = "pc";
    let result = qemu.run().expect("running QEMU");
    expect_self_tests_pass(&result);
    expect_log(&result, "no MCFG");
    expect_log(&result, "via port-cf8");
    expect_log(
        &result,
        "pci 00:00.0 [8086:1237] class 06.00.00 host bridge",
    );
}
