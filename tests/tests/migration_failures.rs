//! Failure atomicity of the live migration between two QEMUs (issue 10):
//! whatever fails, the destination rejects the guest and frees what it
//! allocated, exactly one side runs the guest (the source, unless the
//! handover committed), the guest's own checks pass every frame, and the
//! report says what happened and why. The faults are the monitor's
//! `migrate_fault=` test hooks, a wrong key or port, and a QEMU killed at
//! a log line (`migrate/src/handover.rs` has the table of who does what).

use std::time::Duration;

use serde_json::Value;
use xtask::migrate_run::{self, KillAt, MigrationOptions, MigrationRun, PolicyChoice, Side};
use xtask::qemu::Outcome;

/// Guest 0 migrates after this many frames (the monitor's default).
const MIGRATE_AFTER: u64 = 10;
/// Frames the guests run after the migration ended, either side.
const FRAMES_AFTER: u64 = 30;

/// A small guest, no raw TCP transfer first, `frames_after` short: a run
/// is a few seconds plus whatever timeout the failure waits out.
fn options() -> MigrationOptions {
    MigrationOptions {
        guest_mib: Some(8),
        append: format!("raw_tcp_mib=0 frames_after={FRAMES_AFTER}"),
        timeout: Duration::from_secs(90),
        ..MigrationOptions::default()
    }
}

/// A migration capped at 4 MiB/s with `policy`: its 8 MiB take two
/// seconds in pre-copy or in stop-and-copy, time for a kill to land there;
/// the source's small send buffer keeps it from queueing the rest after.
fn slow(policy: &str) -> MigrationOptions {
    MigrationOptions {
        policy: PolicyChoice::One(policy.into()),
        bandwidth_mibps: Some(4),
        source_append: "tcp_buffer_kib=512".into(),
        ..options()
    }
}

fn run(opts: &MigrationOptions) -> (MigrationRun, Value) {
    let run = migrate_run::run(&tests::kernel(), opts, None).expect("running two QEMUs");
    let json = serde_json::to_value(&run.report).expect("the report serializes");
    (run, json)
}

/// Guest `id`'s report line on one side of `json` (`source` or
/// `destination`), if it has one.
fn guest<'a>(json: &'a Value, side: &str, id: u64) -> Option<&'a Value> {
    json[side]["guests"]
        .as_array()?
        .iter()
        .find(|g| g["id"] == id)
}

/// The migration failed, and says so with `cause` in its reason; the
/// source ran guest 0 on, past the migration, to its end with its final
/// check passing (a failed check ends a guest `failed`); no guest 0 on
/// the destination.
fn check_failed_on_source(run: &MigrationRun, json: &Value, cause: &str) {
    let t = || run.transcript();
    let m = &json["migration"];
    assert_eq!(json["outcome"], "failure", "{m}\n{}", t());
    assert_eq!(m["status"], "failed", "{m}\n{}", t());
    assert_eq!(m["verified"], false, "{m}\n{}", t());
    // The source's reason comes first, then the destination's (or how it
    // ended without one).
    let failure = m["failure"].as_str().unwrap_or_default();
    let ours = failure
        .split("; destination: ")
        .next()
        .and_then(|f| f.split("; the destination reported no migration").next())
        .unwrap_or_default();
    assert!(
        ours.contains(cause) && !ours.starts_with("the source reported no migration"),
        "the source's reason does not name {cause:?}: {failure:?}\n{}",
        t()
    );
    assert_eq!(run.source.outcome, Outcome::Failure, "{}", t());
    let g0 =
        guest(json, "source", 0).unwrap_or_else(|| panic!("no guest 0 on the source\n{}", t()));
    assert_eq!(g0["ended"], "source", "{g0}\n{}", t());
    assert_eq!(g0["exit_code"], 0, "{g0}\n{}", t());
    let frames = g0["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= MIGRATE_AFTER + FRAMES_AFTER,
        "guest 0 did not run on after the migration: {g0}\n{}",
        t()
    );
    // The source's other guests never stopped working either, and the
    // hostile one was killed for its own fault.
    for id in [1, 2] {
        let g = guest(json, "source", id)
            .unwrap_or_else(|| panic!("no guest {id} on the source\n{}", t()));
        assert_eq!(g["ended"], "source", "{g}\n{}", t());
    }
    let hostile =
        guest(json, "source", 3).unwrap_or_else(|| panic!("no guest 3 on the source\n{}", t()));
    assert_eq!(hostile["ended"], "killed", "{hostile}\n{}", t());
    assert!(
        guest(json, "destination", 0).is_none(),
        "guest 0 ran on the destination too\n{}",
        t()
    );
}

/// The destination ran to its end and refused the migration with `cause`
/// in its reason, every frame it allocated for it back; its own guest ran
/// on unharmed.
fn check_destination_refused(run: &MigrationRun, json: &Value, cause: &str) {
    let t = || run.transcript();
    let m = &json["migration"];
    assert_eq!(run.destination.outcome, Outcome::Failure, "{}", t());
    assert_eq!(m["freed"], true, "{m}\n{}", t());
    let failure = m["failure"].as_str().unwrap_or_default();
    let theirs = failure
        .split_once("destination: ")
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("the destination gave no reason: {failure:?}\n{}", t()));
    assert!(
        theirs.contains(cause),
        "the destination's reason does not name {cause:?}: {theirs:?}\n{}",
        t()
    );
    let own = guest(json, "destination", 100)
        .unwrap_or_else(|| panic!("no own guest on the destination\n{}", t()));
    assert_eq!(own["ended"], "destination", "{own}\n{}", t());
}

/// The kill came, and the destination's QEMU was the one killed.
fn check_destination_killed(run: &MigrationRun) {
    assert!(matches!(run.killed, Some((Side::Destination, _))));
    assert_eq!(
        run.destination.outcome,
        Outcome::Killed,
        "{}",
        run.transcript()
    );
}

/// Whether the source's log has a phase line `migration: <phase> at`.
fn source_reached(run: &MigrationRun, phase: &str) -> bool {
    run.source.log_contains(&format!("migration: {phase} at"))
}

#[test]
fn a_destination_killed_in_pre_copy_leaves_the_guest_running_on_the_source() {
    let opts = MigrationOptions {
        kill: Some(KillAt {
            victim: Side::Destination,
            watch: Side::Source,
            line: "migration: Precopy at".into(),
            delay: Duration::from_millis(300),
        }),
        ..slow("precopy")
    };
    let (run, json) = run(&opts);
    check_destination_killed(&run);
    // It died before the guest ever stopped.
    assert!(!source_reached(&run, "StopGuest"), "{}", run.transcript());
    check_failed_on_source(&run, &json, "link");
    assert_eq!(json["migration"]["pages_downtime"], 0);
}

#[test]
fn a_destination_killed_in_stop_and_copy_leaves_the_guest_running_on_the_source() {
    let opts = MigrationOptions {
        kill: Some(KillAt {
            victim: Side::Destination,
            watch: Side::Source,
            line: "migration: StopCopy at".into(),
            delay: Duration::from_millis(300),
        }),
        ..slow("stop-and-copy")
    };
    let (run, json) = run(&opts);
    check_destination_killed(&run);
    // The guest had stopped, and the source had not sent everything yet.
    assert!(source_reached(&run, "StopCopy"), "{}", run.transcript());
    assert!(
        !source_reached(&run, "AwaitingReady"),
        "{}",
        run.transcript()
    );
    check_failed_on_source(&run, &json, "link");
}

#[test]
fn a_truncated_stream_is_refused_and_freed() {
    // 1 MiB into the stream: inside the page records of the 8 MiB guest.
    let opts = MigrationOptions {
        source_append: "migrate_fault=truncate@1048576".into(),
        ..options()
    };
    let (run, json) = run(&opts);
    check_failed_on_source(&run, &json, "link");
    check_destination_refused(&run, &json, "ends inside a message or record");
}

#[test]
fn a_byte_flipped_in_flight_is_refused_and_freed() {
    let opts = MigrationOptions {
        source_append: "migrate_fault=flip@1048576".into(),
        ..options()
    };
    let (run, json) = run(&opts);
    check_failed_on_source(&run, &json, "rejected");
    check_destination_refused(&run, &json, "checksum mismatch");
}

#[test]
fn a_refused_connection_leaves_the_guest_running_on_the_source() {
    // Nobody listens where the source connects; both give up in seconds.
    let opts = MigrationOptions {
        dest_port: Some(xtask::pair::TCP_PORT + 1),
        source_append: "connect_ms=3000".into(),
        dest_append: "connect_ms=8000".into(),
        ..options()
    };
    let (run, json) = run(&opts);
    check_failed_on_source(&run, &json, "no connection to 169.254.0.1:7000");
    check_destination_refused(&run, &json, "nobody connected to port 7001");
    // Neither side's guests stood still while it waited for the other (at
    // a quarter of their 60 frames a second, for a loaded machine).
    let frames = |side, id| guest(&json, side, id).and_then(|g| g["frames"].as_u64());
    let at_quarter_rate = |ms: u64| ms * 60 / 1000 / 4;
    let source_frames = frames("source", 0).unwrap_or(0);
    assert!(
        source_frames >= MIGRATE_AFTER + FRAMES_AFTER + at_quarter_rate(3000),
        "guest 0 stood still while the source tried to connect: {source_frames} frames\n{}",
        run.transcript()
    );
    let dest_frames = frames("destination", 100).unwrap_or(0);
    assert!(
        dest_frames >= at_quarter_rate(8000),
        "the destination's guest stood still while it waited: {dest_frames} frames\n{}",
        run.transcript()
    );
}

#[test]
fn a_stream_of_another_version_is_refused_and_freed() {
    let opts = MigrationOptions {
        source_append: "migrate_fault=version".into(),
        ..options()
    };
    let (run, json) = run(&opts);
    check_failed_on_source(&run, &json, "version");
    check_destination_refused(&run, &json, "version");
}

#[test]
fn a_cpu_state_damaged_before_the_stream_is_refused_and_freed() {
    // The stream carries it intact (its digest matches what the source
    // sent), so only the CPU state's own CRC can tell.
    let opts = MigrationOptions {
        source_append: "migrate_fault=cpu-state".into(),
        ..options()
    };
    let (run, json) = run(&opts);
    check_failed_on_source(&run, &json, "rejected");
    check_destination_refused(&run, &json, "CPU state's CRC does not match");
}

#[test]
fn a_wrong_key_is_refused_on_both_sides() {
    let opts = MigrationOptions {
        dest_key: Some(migrate_run::fresh_key().expect("a key")),
        ..options()
    };
    let (run, json) = run(&opts);
    check_failed_on_source(&run, &json, "key");
    check_destination_refused(&run, &json, "key");
    assert_eq!(json["migration"]["authenticated"], false);
}

#[test]
fn a_lost_resumed_leaves_the_guest_on_the_destination_and_held_on_the_source() {
    let opts = MigrationOptions {
        dest_append: "migrate_fault=lose-resumed".into(),
        ..options()
    };
    let (run, json) = run(&opts);
    let t = || run.transcript();
    let m = &json["migration"];
    assert_eq!(json["outcome"], "failure", "{m}\n{}", t());
    assert_eq!(m["status"], "unconfirmed", "{m}\n{}", t());
    let failure = m["failure"].as_str().unwrap_or_default();
    assert!(
        failure.starts_with("committed, but the destination's resumed never came"),
        "{failure:?}\n{}",
        t()
    );
    // The source keeps guest 0 stopped, neither resumed nor freed.
    let g0 =
        guest(&json, "source", 0).unwrap_or_else(|| panic!("no guest 0 on the source\n{}", t()));
    assert_eq!(g0["ended"], "held", "{g0}\n{}", t());
    assert_eq!(run.source.outcome, Outcome::Failure, "{}", t());
    let held_at = g0["frames"].as_u64().unwrap();
    // The destination had the commit: the guest ran there, counting on
    // from where it stopped, every check passing, and went away freed.
    assert_eq!(run.destination.outcome, Outcome::Success, "{}", t());
    let arrived = guest(&json, "destination", 0)
        .unwrap_or_else(|| panic!("guest 0 never ran on the destination\n{}", t()));
    assert_eq!(arrived["ended"], "destination", "{arrived}\n{}", t());
    let continued = m["guest_continued"].as_u64().unwrap_or(0);
    assert!(continued >= FRAMES_AFTER, "{m}\n{}", t());
    assert!(
        arrived["frames"].as_u64().unwrap() >= held_at + continued,
        "{arrived}: held at frame {held_at}, {continued} continued\n{}",
        t()
    );
    assert_eq!(m["freed"], true, "{m}\n{}", t());
    assert!(
        run.destination
            .log_contains("report migration_dest status=completed"),
        "{}",
        t()
    );
    assert!(run.destination.log_contains("checked=true"), "{}", t());
}

#[test]
fn a_lost_commit_is_refused_by_the_destination_and_the_source_runs_on() {
    // The source is committed (its link took the whole commit), the
    // destination never sees it: it gives up and rejects, and only that
    // authentic reject lets the committed source resume.
    // With every guest kind on the source, the PPGTT renderer too
    // (`guests=5`, as `cargo xtask run` gives): the source must hear the
    // reject however busy its guests keep it.
    let opts = MigrationOptions {
        source_append: "migrate_fault=lose-commit guests=5".into(),
        ..options()
    };
    let (run, json) = run(&opts);
    assert!(
        run.source.log_contains("migration: Committed at"),
        "{}",
        run.transcript()
    );
    check_failed_on_source(&run, &json, "destination rejected the migration");
    check_destination_refused(&run, &json, "timed out waiting for the source's commit");
}
