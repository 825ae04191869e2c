//! vGPUs on the software GPU: the default boot runs every built-in guest's
//! workload through the whole mediated path and contains a hostile one;
//! the command line sizes the vGPUs; impossible requests stop boot.

use tests::{boot, expect_console, expect_log, expect_outcome};
use xtask::qemu::Outcome;

#[test]
fn default_run_verifies_workloads_and_contains_a_hostile_guest() {
    let result = boot("", 128);
    expect_outcome(&result, Outcome::Success);
    expect_console(&result, "2 vGPUs on software-gen9");
    expect_console(&result, "hostile submission contained");
    expect_log(
        &result,
        "isolation: vgpu1 store into vgpu0's memory rejected",
    );
    let report = xtask::report::build(&result, 128);
    assert_eq!(report.gpu.backend.as_deref(), Some("software-gen9"));
    assert_eq!(report.gpu.vgpus.len(), 2);
    assert_eq!(report.gpu.workloads_verified, Some(2));
    assert_eq!(report.gpu.isolation_shown, Some(true));
    // Slices never overlap: distinct apertures.
    assert_ne!(report.gpu.vgpus[0].aperture, report.gpu.vgpus[1].aperture);
}

#[test]
fn command_line_sizes_the_vgpus() {
    let result = boot("vgpus=3 vgpu_type=medium", 128);
    expect_outcome(&result, Outcome::Success);
    let report = xtask::report::build(&result, 128);
    assert_eq!(report.gpu.vgpus.len(), 3);
    assert!(report.gpu.vgpus.iter().all(|v| v.vgpu_type == "medium"));
    assert!(report
        .gpu
        .vgpus
        .iter()
        .all(|v| v.aperture.ends_with("+0x8000000")));
}

#[test]
fn one_vgpu_runs_without_an_isolation_demo() {
    let result = boot("vgpus=1", 128);
    expect_outcome(&result, Outcome::Success);
    let report = xtask::report::build(&result, 128);
    assert_eq!(report.gpu.workloads_verified, Some(1));
    assert_eq!(report.gpu.isolation_shown, Some(false));
}

#[test]
fn more_vgpus_than_the_aperture_holds_stop_boot_with_a_message() {
    // Seven 64 MiB apertures do not fit next to the monitor's 128 MiB in 512 MiB.
    let result = boot("vgpus=7", 128);
    expect_outcome(&result, Outcome::Failure);
    expect_console(&result, "error: bring-up failed: GPU: partitioning GM:");
}

#[test]
fn bad_vgpu_options_are_rejected() {
    let result = boot("vgpus=9", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(&result, "option `vgpus` cannot be `9`");
    let result = boot("vgpu_type=giant", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(&result, "expected small, medium, large or huge");
}
