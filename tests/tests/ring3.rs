//! Ring-3 guests (`ring3=`): the three workloads and a hostile guest, each
//! a deprivileged program on a vGPU of its own, driving it only through
//! trapped BAR0 accesses. The workloads run all their frames and pass
//! their own check of every page; the hostile guest spins without
//! yielding (and is preempted), then reads another guest's RAM and is
//! killed for it, alone.

use std::collections::HashMap;

use tests::{boot, expect_console, expect_outcome};
use xtask::qemu::{Outcome, RunResult};

/// The `report ring3_guest` lines, as key/value maps, in guest order.
fn guest_reports(result: &RunResult) -> Vec<HashMap<String, String>> {
    result
        .messages()
        .filter_map(|m| m.strip_prefix("report ring3_guest "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn four_ring3_guests_run_and_the_hostile_one_dies_alone() {
    let result = boot("ring3=3d,desktop,video,hostile ring3_frames=12", 128);
    expect_outcome(&result, Outcome::Success);
    expect_console(&result, "gmig-rs: 4 ring-3 guests on software-gen9");
    expect_console(&result, "ring-3 guests ended as expected");
    // The kill report names the guest, the vector, RIP and address, and
    // whose RAM it was.
    expect_console(
        &result,
        "guest 3 (hostile) killed for a guest fault: vector 14 page fault (#PF) at RIP=0x",
    );
    expect_console(
        &result,
        "the RAM of vgpu0's guest (mapped for the monitor only)",
    );
    let reports = guest_reports(&result);
    assert_eq!(reports.len(), 4, "{}", result.transcript());
    for (report, program) in reports.iter().zip(["3d", "desktop", "video"]) {
        let field = |k: &str| report.get(k).map(String::as_str);
        assert_eq!(field("program"), Some(program), "{report:?}");
        assert_eq!(field("image"), Some("workload"));
        assert_eq!(field("ended"), Some("exited"), "{report:?}");
        assert_eq!(field("exit_code"), Some("0"));
        assert_eq!(field("frames"), Some("12"));
        assert_eq!(field("last_frame"), Some("11"));
        let exits: u64 = field("mmio_exits").unwrap().parse().unwrap();
        assert!(
            exits > 1000,
            "a booted driver traps on every GGTT entry: {report:?}"
        );
    }
    let hostile = &reports[3];
    assert_eq!(hostile["program"], "hostile");
    assert_eq!(hostile["ended"], "killed");
    assert_eq!(hostile["kill_vector"], "14");
    // It never yields: only the timer took the CPU from it.
    let preemptions: u64 = hostile["preemptions"].parse().unwrap();
    assert!(preemptions >= 2, "{hostile:?}");
    // The three others kept their shares while it spun.
    for report in &reports[..3] {
        let share: u64 = report["share_permille"].parse().unwrap();
        assert!(share > 100, "{report:?}");
    }
    assert!(
        result
            .messages()
            .any(|m| m.starts_with("report ring3 guests=4 ok=true")),
        "{}",
        result.transcript()
    );
}

#[test]
fn ring3_options_are_checked() {
    let result = boot("ring3=3d,chess", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(&result, "option `ring3` cannot be `3d,chess`");
    let result = boot("ring3_frames=5", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(&result, "option `ring3_frames` needs `ring3=`");
}
