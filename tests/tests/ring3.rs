//! Ring-3 guests (`ring3=`): the three workloads and a hostile guest, each
//! a deprivileged program on a vGPU of its own, driving it only through
//! trapped BAR0 accesses. The workloads run all their frames, their
//! checksums are those the monitor's stand-in computes for the same
//! workload, and the monitor finds every data page of their RAM holding
//! what their bookkeeping says; the hostile guest tries every class of
//! attempt (`guest::attack`) through its vGPU and its CPU, aimed at the
//! first workload guest, each is refused by the party its class names, it
//! spins without yielding (and is preempted), and it ends killed for its
//! last attempt (a read of that guest's RAM), alone.

use std::collections::HashMap;

use guest::attack::{Class, Refusal};
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

/// The monitor's words for who refused (`kernel/src/vm/attempts.rs`).
fn refused_by(r: Refusal) -> &'static str {
    match r {
        Refusal::Scanner => "refused by the scanner",
        Refusal::Device => "refused by the vGPU",
        Refusal::Timer => "refused by the timer",
        Refusal::Fault => "refused by the CPU",
        Refusal::Contained => "refused by the shadow PPGTT",
    }
}

#[test]
fn four_ring3_guests_run_and_the_hostile_one_is_refused_everything_and_dies_alone() {
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
    assert!(
        !result.transcript().contains("NOT REFUSED"),
        "{}",
        result.transcript()
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
        // The monitor's own checks: the stand-in's checksums, frame by
        // frame, and every data page by content.
        assert_eq!(field("checksum_ok"), Some("true"), "{report:?}");
        let pages: u64 = field("pages_verified").unwrap().parse().unwrap();
        assert!(pages > 3000, "{report:?}");
        assert_eq!(field("attempts"), Some("0"));
        assert_eq!(field("as_expected"), Some("true"));
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
    let every = Class::ALL.len().to_string();
    assert_eq!(hostile["attempts"], every, "{hostile:?}");
    assert_eq!(hostile["refused"], every, "{hostile:?}");
    assert_eq!(hostile["classes"], every, "{hostile:?}");
    assert_eq!(hostile["as_expected"], "true");
    // Each device class's access was refused (and the guest went on).
    let device = Class::ALL
        .iter()
        .filter(|c| c.refusal() == Refusal::Device)
        .count() as u64;
    let refused_mmio: u64 = hostile["mmio_refused"].parse().unwrap();
    assert!(refused_mmio >= device, "{hostile:?}");
    // Every class, in order, refused by the party it names, in the
    // monitor's log.
    for (i, class) in Class::ALL.iter().enumerate() {
        let verdict = format!(
            "guest 3 (hostile) attempt {} {}: {}",
            i + 1,
            class.name(),
            refused_by(class.refusal())
        );
        assert!(
            result.messages().any(|m| m.starts_with(&verdict)),
            "no `{verdict}`\n{}",
            result.transcript()
        );
    }
    // The guest saw each refused too.
    let seen = format!("{n} attempts, {n} seen refused", n = Class::ALL.len() - 1);
    assert!(
        result.messages().any(|m| m.contains(&seen)),
        "{}",
        result.transcript()
    );
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

/// Four ring-3 guests that each keep their blitter busy, with fills of 64,
/// 128, 256 and 512 pages (0.5 to 4.2 ms of engine time each with
/// `gpu_slowdown=8`, which makes the software GPU's engine, not the
/// emulated CPU that executes its blits, what limits them): the vGPU
/// scheduler shares the engine by time, so each gets about a quarter of
/// it (the goal and the figure in `report ring3 ... gpu_fair_*`: within
/// 0.8..1.2 of fair; 0.99..1.0 in runs here), not a share in proportion
/// to its fills' size. The test asserts the looser band 0.5..1.5, because
/// under TCG the guests' CPU time (and so how promptly each refills its
/// queue) is noisy; a scheduler that shared by submissions gave the
/// 64-page guest 0.28 of fair (checked by swapping the turn rule for one
/// submission per turn).
#[test]
fn four_busy_ring3_guests_share_the_gpu_fairly() {
    let result = boot("ring3=busy,busy,busy,busy gpu_slowdown=8", 128);
    expect_outcome(&result, Outcome::Success);
    let reports = guest_reports(&result);
    assert_eq!(reports.len(), 4, "{}", result.transcript());
    for report in &reports {
        println!(
            "guest {} fills={} gpu_busy_us={} gpu_share_permille={} bcs_share_permille={} cpu share_permille={}",
            report["id"],
            report["frames"],
            report["gpu_busy_us"],
            report["gpu_share_permille"],
            report["bcs_share_permille"],
            report["share_permille"]
        );
        assert_eq!(report["program"], "busy", "{report:?}");
        assert_eq!(report["ended"], "exited", "{report:?}");
        assert_eq!(report["as_expected"], "true", "{report:?}");
        // All its engine time was the blitter's.
        assert_eq!(report["rcs_busy_us"], "0", "{report:?}");
        let share: f64 = report["gpu_share_permille"].parse().unwrap();
        let ratio = share * 4.0 / 1000.0;
        assert!(
            (0.5..=1.5).contains(&ratio),
            "guest {} got {ratio:.2} of its fair share: {report:?}",
            report["id"]
        );
    }
    let summary = result
        .messages()
        .find_map(|m| m.strip_prefix("report ring3 "))
        .expect("no report ring3 line")
        .to_string();
    println!("report ring3 {summary}");
    assert!(summary.contains("gpu_guests=4"), "{summary}");
}
