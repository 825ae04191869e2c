//! Live migration between two monitors in two QEMUs, as `cargo xtask run`
//! makes it: four ring-3 guests on the source, guest 0 moved whole; the
//! destination verifies every page against the source's digest, the guest
//! runs on there to its end with every frame's checksum equal to the
//! reference run's (the same program on the host, never migrated:
//! `xtask::reference`), and run-report.json says so in its documented
//! field names.

use std::time::Duration;

use serde_json::Value;
use xtask::migrate_run::{self, MigrationOptions, MigrationRun, Workload};
use xtask::pair::Nic;
use xtask::qemu::Outcome;

/// A small guest keeps the test short; raw_tcp_mib too.
/// `workload`: guest 0's (the monitor's default, 3d, if None).
fn migrate(nic: Nic, encrypt: bool, workload: Option<Workload>) -> (MigrationRun, Value) {
    let opts = MigrationOptions {
        nic,
        workload,
        guest_mib: Some(8),
        encrypt,
        append: "raw_tcp_mib=4".into(),
        // As `cargo xtask run`: the PPGTT renderer beside the migrated guest.
        source_append: "guests=5".into(),
        timeout: Duration::from_secs(180),
        ..MigrationOptions::default()
    };
    let run = migrate_run::run(&tests::kernel(), &opts, None).expect("running two QEMUs");
    let json = serde_json::to_value(&run.report).expect("the report serializes");
    (run, json)
}

/// `kind`: guest 0's workload.
fn check_completed(run: &MigrationRun, json: &Value, nic: Nic, encrypted: bool, kind: &str) {
    let t = || run.transcript();
    for (side, outcome) in [
        ("source", run.source.outcome),
        ("destination", run.destination.outcome),
    ] {
        assert_eq!(outcome, Outcome::Success, "{side} failed\n{}", t());
    }
    let m = &json["migration"];
    assert_eq!(json["outcome"], "success", "{m}\n{}", t());
    assert_eq!(m["status"], "completed", "{m}\n{}", t());
    assert_eq!(m["failure"], Value::Null, "{m}\n{}", t());
    assert_eq!(m["verified"], true, "{m}\n{}", t());
    assert!(
        m["guest_continued"].as_u64().unwrap_or(0) > 0,
        "{m}\n{}",
        t()
    );
    assert_eq!(m["transport"], "tcp", "{m}");
    assert_eq!(m["nic"], nic.name(), "{m}");
    assert_eq!(m["policy"], "informed", "{m}");
    assert_eq!(m["authenticated"], true, "{m}");
    assert_eq!(m["encrypted"], encrypted, "{m}");
    // 8 MiB of guest 0, every page of it moved at least once.
    assert_eq!(m["pages_total"], 2048, "{m}");
    let precopy = m["pages_precopy"].as_u64().expect("pages_precopy");
    let downtime = m["pages_downtime"].as_u64().expect("pages_downtime");
    assert!(precopy + downtime >= 2048, "{m}");
    assert!(m["bytes"].as_u64().unwrap_or(0) > 2048 * 16, "{m}");
    for key in ["total_ms", "setup_ms", "throughput_mbps", "raw_tcp_mbps"] {
        assert!(m[key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {m}");
    }
    assert!(m["downtime_ms"].as_f64().is_some(), "{m}");
    assert!(m["rounds"].as_u64().is_some(), "{m}");
    assert_eq!(json["migrations"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["migrations"][0], *m);
    // Each side's guests: guest 0 left the source and ran on at the
    // destination, counting its frames from the source.
    let source_guests = json["source"]["guests"].as_array().expect("source guests");
    let frames_at_source = source_guests
        .iter()
        .find(|g| g["id"] == 0)
        .map(|g| {
            assert_eq!(g["ended"], "migrated", "{g}");
            g["frames"].as_u64().unwrap()
        })
        .expect("guest 0 on the source");
    let arrived = json["destination"]["guests"]
        .as_array()
        .expect("destination guests")
        .iter()
        .find(|g| g["id"] == 0 && g["ended"] == "destination")
        .unwrap_or_else(|| panic!("guest 0 on the destination\n{}", t()))
        .clone();
    // Its frame counter went on from where it stopped (the destination
    // may run a frame or two between the resume and the completion that
    // `guest_continued` starts counting from).
    let frames_here = arrived["frames"].as_u64().expect("frames");
    let continued = m["guest_continued"].as_u64().unwrap();
    assert!(
        frames_here >= frames_at_source + continued,
        "{arrived}: {frames_at_source} frames on the source, {continued} continued"
    );
    // Its downtime as it saw it: the gap in its frame times.
    assert!(
        m["guest_frame_gap_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "{m}\n{}",
        t()
    );
    assert_eq!(arrived["exit_code"], 0, "{arrived}");
    // Its checksums went on exactly as the same program's that never
    // moved: frame by frame, on the source before the migration and on
    // the destination after it.
    let reference = json["reference"].as_array().expect("reference");
    assert_eq!(reference.len(), 1, "{}", json["reference"]);
    let r = &reference[0];
    let rows = xtask::reference::table(&run.report.reference);
    assert_eq!(
        (&r["guest"], &r["kind"]),
        (&Value::from(0), &Value::from(kind)),
        "{rows}"
    );
    assert_eq!(r["failure"], Value::Null, "{rows}");
    assert_eq!(r["destination_frames"], arrived["frames_here"], "{rows}");
    assert!(r["destination_frames"].as_u64().unwrap_or(0) > 0, "{rows}");
    assert_eq!(r["continuous"], true, "{rows}");
    let frames = r["frames"].as_array().expect("frames");
    assert_eq!(
        frames.len() as u64,
        arrived["frames"].as_u64().unwrap(),
        "{rows}"
    );
    for f in frames {
        assert_eq!(
            f["checksum"], f["reference"],
            "frame {}: {rows}",
            f["frame"]
        );
    }
    assert_eq!(r["mismatches"], 0, "{rows}");
    assert_eq!(r["matches"], true, "{rows}");
    assert!(arrived["mmio_exits"].as_u64().unwrap_or(0) > 0, "{arrived}");
    // The source's other guests: three workloads that ran to their end
    // there with their final checks passing, and the hostile guest,
    // killed for its own fault (a page fault on another guest's RAM).
    // The PPGTT renderer (guest 4) ran beside guest 0, drawing through
    // surface states in its own PPGTT, to its end with its checks passing.
    for (id, kind) in [(1, "desktop"), (2, "video"), (4, "3d-ppgtt")] {
        let g = source_guests
            .iter()
            .find(|g| g["id"] == id)
            .unwrap_or_else(|| panic!("no guest {id} on the source\n{}", t()));
        assert_eq!(g["kind"], kind, "{g}");
        assert_eq!(g["ended"], "source", "{g}\n{}", t());
        assert!(g["frames"].as_u64().unwrap_or(0) > 0, "{g}");
        assert!(g["mmio_exits"].as_u64().unwrap_or(0) > 0, "{g}");
        assert!(g["cpu_share_permille"].as_u64().is_some(), "{g}");
    }
    let hostile = source_guests
        .iter()
        .find(|g| g["id"] == 3)
        .unwrap_or_else(|| panic!("no hostile guest on the source\n{}", t()));
    assert_eq!(hostile["kind"], "hostile", "{hostile}");
    assert_eq!(hostile["ended"], "killed", "{hostile}\n{}", t());
    assert_eq!(hostile["kill_vector"], 14, "{hostile}");
    // Every attack class was tried in the migration run too, and refused.
    let classes = guest::attack::Class::ALL.len() as u64;
    assert_eq!(hostile["attempts"], classes, "{hostile}\n{}", t());
    assert_eq!(hostile["refused"], classes, "{hostile}\n{}", t());
    assert_eq!(json["source"]["role"], "source");
    assert_eq!(json["destination"]["role"], "dest");
    assert_eq!(json["destination"]["nic"], nic.name());
    assert_eq!(json["qemu_migration"], Value::Array(Vec::new()));
}

#[test]
fn a_guest_migrates_live_between_two_qemus_verified() {
    let (run, json) = migrate(Nic::Virtio, false, None);
    check_completed(&run, &json, Nic::Virtio, false, "3d");
}

/// The PPGTT renderer as guest 0: its render engine in execlist mode, its
/// draws in PPGTT batches through surface states in its own PPGTT. It
/// lands on other slices and frames with a fresh shadow PPGTT and goes
/// on drawing: every frame's checksum equals the reference's.
#[test]
fn a_ppgtt_renderer_migrates_and_goes_on_drawing() {
    let (run, json) = migrate(Nic::Virtio, false, Some(Workload::ThreeDPpgtt));
    check_completed(&run, &json, Nic::Virtio, false, "3d-ppgtt");
}

#[test]
fn an_encrypted_migration_over_e1000e_is_verified() {
    let (run, json) = migrate(Nic::E1000e, true, None);
    check_completed(&run, &json, Nic::E1000e, true, "3d");
}
