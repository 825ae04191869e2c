//! vGPUs on the software GPU: the default boot runs a ring-3 guest on
//! every vGPU (workloads through the whole mediated path, the hostile
//! guest on the last one, contained) and migrates guest 0 inside the
//! monitor; the command line sizes the vGPUs; impossible requests stop
//! boot.

use tests::{boot, expect_console, expect_log, expect_outcome};
use xtask::qemu::Outcome;

#[test]
fn default_run_verifies_workloads_and_contains_a_hostile_guest() {
    let result = boot("", 128);
    expect_outcome(&result, Outcome::Success);
    expect_console(&result, "2 vGPUs on software-gen9");
    expect_console(&result, "the hostile guest killed for its own fault");
    expect_log(&result, "guest 1 (hostile) killed for a guest fault");
    expect_log(&result, "report guest id=0 kind=3d");
    let report = xtask::report::build(&result, 128);
    assert_eq!(report.gpu.backend.as_deref(), Some("software-gen9"));
    assert_eq!(report.gpu.vgpus.len(), 2);
    assert_eq!(report.gpu.workloads_verified, Some(1));
    assert_eq!(report.gpu.isolation_shown, Some(true));
    assert_eq!(report.gpu.shaders.as_deref(), Some("ppgtt"));
    // Slices never overlap: distinct apertures.
    assert_ne!(report.gpu.vgpus[0].aperture, report.gpu.vgpus[1].aperture);
}

#[test]
fn command_line_sizes_the_vgpus() {
    // With shader dispatches refused too: the workloads blit and store
    // only, so every one still runs (3d and desktop; the third vGPU's
    // guest is the hostile one).
    let result = boot("vgpus=3 vgpu_type=medium shaders=deny", 128);
    expect_outcome(&result, Outcome::Success);
    let report = xtask::report::build(&result, 128);
    assert_eq!(report.gpu.shaders.as_deref(), Some("deny"));
    assert_eq!(report.gpu.workloads_verified, Some(2));
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

#[test]
fn default_run_live_migrates_guest_zero_to_new_slices() {
    let result = boot("", 128);
    expect_outcome(&result, Outcome::Success);
    expect_console(&result, "guest 0 live-migrated to new slices with informed");
    let report = xtask::report::build(&result, 128);
    assert_eq!(report.migration.policy.as_deref(), Some("informed"));
    assert_eq!(report.migration.verified, Some(true));
    // Pre-copy carried the bulk (the guest's 8 MiB); the stop sent only
    // what changed.
    let (pre, stop) = (
        report.migration.precopy_pages.unwrap(),
        report.migration.stop_pages.unwrap(),
    );
    assert!(pre >= 2048, "pre-copy sent {pre} pages");
    assert!(stop < 256, "stop-and-copy sent {stop} pages");
}

#[test]
fn stop_and_copy_policy_sends_everything_at_the_stop() {
    let result = boot("policy=stop-and-copy", 128);
    expect_outcome(&result, Outcome::Success);
    let report = xtask::report::build(&result, 128);
    assert_eq!(report.migration.policy.as_deref(), Some("stop-and-copy"));
    assert_eq!(report.migration.stop_pages, Some(2048));
    assert_eq!(report.migration.precopy_pages, Some(0));
}

#[test]
fn unknown_policy_is_rejected() {
    let result = boot("policy=fastest", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(&result, "option `policy` cannot be `fastest`");
}
