//! `role=local` (the default): what exists inside one machine, end to
//! end. Every vGPU of the bring-up (`vgpus=`) gets a ring-3 guest: the
//! workloads in turn (3D, desktop, video) and, with two vGPUs or more, the
//! hostile guest on the last one. Once guest 0 has done its frames it is
//! live-migrated, whole, onto a new vGPU of other slices and frames of
//! this monitor (`crate::migration::local`, with `policy=`) while every
//! guest runs; the destination's memory is checked equal to the source's
//! and the guest goes on there. Then the workloads run their last frames,
//! are asked to finish and make their final checks.
//!
//! Report lines: `report guest ...` per guest (as the roles'), `report
//! migration_policy=...` for the migration, `report workload_guests_ok=
//! workload_submissions= isolation_shown=` (README).

use guest::abi::Program;
use guest::Kind;

use super::{GuestError, Guests};
use crate::exit::{exit, ExitCode};
use crate::migration::{migrate_local, MigrationError, MigrationSettings, StreamSecurity};
use crate::platform::Platform;
use crate::println;
use crate::vm::{Guest, Step};

/// Guest 0 migrates once it has done this many frames.
const MIGRATE_AFTER: u64 = 5;
/// Frames every workload runs after the migration before it is asked to
/// finish.
const FRAMES_AFTER: u64 = 5;
/// The migrating guest.
const MIGRATING: u32 = 0;

/// What guest `i` of `n` runs: the workloads in turn, the last one of two
/// or more hostile (aiming at guest 0: `vm::demo::victim_of`).
fn program(i: usize, n: usize, victim: Option<(u64, u64)>) -> Program {
    if n >= 2 && i == n - 1 {
        return crate::vm::demo::hostile(victim);
    }
    Program::Workload {
        kind: [Kind::Game3d, Kind::Desktop2d, Kind::Video][i % 3],
        seed: 0x5eed_0000 + i as u64,
        frames: 0,
    }
}

pub fn run(p: &mut Platform) -> ! {
    defmt::info!(
        "monitor: bring-up complete in {=u64} us",
        crate::time::micros_since_boot()
    );
    let n = p.vgpus.vgpus.len();
    println!(
        "gmig-rs: bring-up complete, {} PCI functions, {} vGPUs on {}",
        p.pci.devices.len(),
        n,
        p.vgpus.device.name()
    );
    if n == 0 {
        exit(ExitCode::Success);
    }
    let mut guests = Guests::new(p);
    for i in 0..n {
        let victim = crate::vm::demo::victim_of(&p.vgpus, 0);
        let created = Guest::create(
            &guests.rt,
            &mut p.memory.frames,
            &mut p.vgpus,
            i,
            i as u32,
            program(i, n, victim),
        );
        match created {
            Ok(g) => guests.add(g),
            Err(e) => {
                println!("error: {}", GuestError::Create(e));
                exit(ExitCode::Failure)
            }
        }
    }
    println!("gmig-rs: {n} ring-3 guests running");
    run_frames(p, &mut guests, MIGRATE_AFTER);
    if p.options.policy.digest() == migrate::digest::DigestKind::XorFold {
        // Only this local migration can compare memory afterwards.
        println!(
            "warning: policy={} verifies pages with gMig's XOR fold, which misses edits that \
             cancel over 32-byte lanes; the monitor checks memory after this local migration, \
             a migration to another machine could not",
            p.options.policy.name()
        );
    }
    let settings = MigrationSettings {
        policy: p.options.policy,
        throttle: migrate::ThrottleConfig::new(),
        trace: p.options.trace,
        security: StreamSecurity::local(&p.options),
    };
    let migrated = migrate_local(
        &guests.rt,
        &mut guests.sched,
        &mut p.vgpus,
        &mut p.memory.frames,
        MIGRATING,
        settings,
    );
    let migration_ok = match &migrated {
        Ok(r) => {
            defmt::info!(
                "migration: vgpu{=u8} -> vgpu{=u8} with {=str}: {=u32} rounds, pre-copy {=u64} pages / {=u64} bytes, stop-and-copy {=u64} pages / {=u64} bytes, {=u32} guest slices during pre-copy, {=u32} turns deferred by the throttle (lowest share {=u16} per mille)",
                r.source,
                r.destination,
                r.policy.name(),
                r.rounds,
                r.precopy_pages,
                r.precopy_bytes,
                r.stop_pages,
                r.stop_bytes,
                r.guest_slices,
                r.throttled_steps,
                r.min_share_permille
            );
            println!(
                "gmig-rs: guest 0 live-migrated to new slices with {} ({} pages in stop-and-copy, downtime {} us under TCG); memory identical, guest runs on",
                r.policy.name(),
                r.stop_pages,
                r.downtime_us
            );
            true
        }
        Err(MigrationError::Setup(e)) => {
            // All partitions in use: nowhere to migrate to on this machine.
            println!("gmig-rs: live migration skipped: no room for a destination vGPU ({e})");
            true
        }
        Err(e) => {
            println!("error: migration failed: {e}");
            if !matches!(e, MigrationError::Unconfirmed(_)) {
                println!("gmig-rs: guest 0 goes on on the source vGPU");
            }
            false
        }
    };
    run_frames(p, &mut guests, FRAMES_AFTER);
    guests.finish(p, None);
    let (mut workloads_ok, mut submissions, mut hostile_killed, mut hostiles) = (0, 0, true, 0);
    for i in 0..guests.sched.guests.len() {
        let g = &guests.sched.guests[i];
        let expected = guests.as_expected(g.id);
        match g.program {
            Program::Workload { .. } | Program::Busy { .. } => {
                workloads_ok += usize::from(expected)
            }
            Program::Probe(_) => {
                hostiles += 1;
                hostile_killed &= expected;
            }
        }
        submissions += g.stats.submissions;
        guests.report(&p.vgpus, i, guests.ended_word(i, "exited"));
    }
    p.vgpus.report_shares();
    let workloads = n - hostiles;
    let isolation_shown = hostiles > 0 && hostile_killed && workloads_ok == workloads;
    defmt::info!(
        "report workload_guests_ok={=usize} workload_submissions={=u64} isolation_shown={=bool}",
        workloads_ok,
        submissions,
        isolation_shown
    );
    println!(
        "gmig-rs: {workloads_ok} of {workloads} guest workloads verified ({submissions} submissions){}",
        if isolation_shown {
            ", the hostile guest killed for its own fault, the others unharmed"
        } else {
            ""
        }
    );
    if let Ok(r) = migrated {
        // The guest ran on to its final check on the destination vGPU.
        let verified = guests.as_expected(MIGRATING);
        defmt::info!(
            "report migration_policy={=str} migration_downtime_us={=u64} migration_total_us={=u64} migration_stop_pages={=u64} migration_precopy_pages={=u64} migration_throttled_steps={=u32} migration_min_share_permille={=u16} migration_verified={=bool} migration_authenticated=true migration_encrypted={=bool}",
            r.policy.name(),
            r.downtime_us,
            r.total_us,
            r.stop_pages,
            r.precopy_pages,
            r.throttled_steps,
            r.min_share_permille,
            verified,
            r.encrypted
        );
    }
    let ok = migration_ok && workloads_ok == workloads && hostile_killed;
    exit(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// Runs the guests until guest 0 did `frames` more frames (or ended).
fn run_frames(p: &mut Platform, guests: &mut Guests, frames: u64) {
    let target = guests.get(MIGRATING).map_or(0, |g| g.stats.frames) + frames;
    let limit = crate::time::micros_since_boot() + super::FINISH_LIMIT_US;
    while guests
        .get(MIGRATING)
        .is_some_and(|g| !g.state().ended() && g.stats.frames < target)
        && crate::time::micros_since_boot() < limit
    {
        if guests.step(p) == Step::Waiting {
            core::hint::spin_loop();
        }
    }
}
