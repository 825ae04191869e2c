//! `role=source`: the ring-3 guests run (guest 0 with the chosen
//! workload, then a desktop, a video and the hostile guest); once guest 0
//! has done its frames, it migrates live, whole, to the destination (for
//! `policy=all`, a fresh guest 0 once per policy), and the others run on.
//!
//! One migration: connect, then `migrate::Source` over the TCP link
//! (capped by `migrate_mbps=`) while the guests keep running; after each
//! of guest 0's slices the pages its CPU wrote (PTE dirty bits) and its
//! submissions' write targets go to the source as evidence
//! ([`crate::migration::report_evidence`]). At the stop guest 0 is held
//! between two slices, its vGPU finishes what is in flight, and its
//! device state and CPU state are saved
//! ([`crate::migration::stop_and_save`]); the source keeps the stopped
//! guest until the destination's resumed arrives, then frees it. A
//! migration that fails before the commit, or that the destination
//! rejects after it (it then never resumes), releases guest 0 here; one
//! that cannot be confirmed after the commit keeps it held, neither
//! resumed nor freed, and says so.

use alloc::vec::Vec;

use migrate::link::{Capped, FaultConfig, FaultInjector, RecordAction, RecordFault};
use migrate::policy::Policy;
use migrate::source::{
    Source, SourceConfig, SourceError, SourceStats, SourceStatus, SourceStorage,
};
use migrate::throttle::{Pacer, ThrottleConfig};
use migrate::wire::{Kind as RecordKind, FORWARD_PRELUDE_LEN};

use super::{
    guest_zero, spawn_side_guests, Guests, CONNECT_MS, MIN_SLICE_US, PROGRESS_US, TIMEOUT_NS,
    VGPU_TYPE,
};
use crate::cmdline::MigrateFault;
use crate::dirty_trace::DirtyTrace;
use crate::entropy::MonitorEntropy;
use crate::exit::{exit, ExitCode};
use crate::migration::pages::{Digests, GuestPages, SourceBuffers};
use crate::migration::{report_evidence, stop_and_save, vgpu_index};
use crate::net::link::TcpLink;
use crate::net::Net;
use crate::platform::Platform;
use crate::println;
use crate::vm::cpu::SAVED_BYTES;
use crate::vm::{RunState, Step};

/// The guest that migrates.
const MIGRATING: u32 = 0;

/// How one migration ended.
enum Ended {
    /// The destination resumed the guest; the source freed it.
    Completed,
    /// Not committed, or the destination rejected after the commit (it
    /// never resumes): the guest runs on here.
    Failed(&'static str),
    /// Committed, not confirmed (why): the guest stays stopped here.
    Unconfirmed(SourceError),
}

/// Figures of one migration for its report line.
struct Figures {
    policy: Policy,
    status: &'static str,
    authenticated: bool,
    encrypted: bool,
    stats: SourceStats,
    bytes: u64,
    pages: u64,
    total_us: u64,
    setup_us: u64,
    downtime_us: u64,
    /// Turns of guest 0 the convergence throttle deferred.
    throttled: u32,
    digest: u64,
}

/// The faults `migrate_fault=` asks of the source's link.
fn fault_config(fault: MigrateFault) -> FaultConfig {
    let mut cfg = FaultConfig::default();
    match fault {
        MigrateFault::Flip(at) => cfg.flip_byte_at = Some(at),
        MigrateFault::Truncate(at) => cfg.close_at = Some(at),
        // The hello's version field (bytes 4..6): another version.
        MigrateFault::Version => cfg.flip_byte_at = Some(4),
        MigrateFault::LoseCommit => {
            cfg.at_record = Some(RecordFault {
                kind: RecordKind::Commit as u8,
                prelude: FORWARD_PRELUDE_LEN,
                // Taken and never delivered: the source is committed.
                after: 0,
                action: RecordAction::Lose,
            })
        }
        MigrateFault::None | MigrateFault::LoseResumed | MigrateFault::CpuState => {}
    }
    cfg
}

pub fn run(p: &mut Platform) -> ! {
    let opts = p.options;
    let roles = opts.roles;
    let Some(mut net) = p.net.take() else {
        println!("error: role=source needs the network (ip=)");
        exit(ExitCode::BadCommandLine);
    };
    defmt::info!(
        "report role=source nic={=str} guests={=u8}",
        net.nic().kind.name(),
        roles.guests
    );
    let mut guests = Guests::new(p);
    let policies: &[Policy] = if roles.all_policies {
        &Policy::ALL
    } else {
        core::slice::from_ref(&opts.policy)
    };
    let mut completed = 0usize;
    let mut held = false;
    let mut side_booted = false;
    for (n, &policy) in policies.iter().enumerate() {
        // A guest 0 that a failed migration left here migrates again.
        if guests.position(MIGRATING).is_none() {
            let seed = 0x0e5e_ed00 ^ n as u64;
            let program = guest_zero(roles.workload, seed);
            if let Err(e) = guests.spawn(p, MIGRATING, program, roles.guest_mib) {
                println!("error: guest 0 does not boot: {e}");
                break;
            }
        }
        // After guest 0, so that its slot is the same on every run.
        if !side_booted {
            side_booted = true;
            if let Err(e) = spawn_side_guests(p, &mut guests, roles.guests - 1) {
                println!("error: a guest does not boot: {e}");
                exit(ExitCode::Failure);
            }
            defmt::info!("guests running");
        }
        let start = frames_of(&mut guests);
        while guests.get(MIGRATING).is_some_and(|g| {
            !g.state().ended() && g.stats.frames < start + u64::from(roles.migrate_after_frames)
        }) {
            if guests.step(p) == Step::Waiting {
                core::hint::spin_loop();
            }
        }
        if guests.get(MIGRATING).is_none_or(|g| g.state().ended()) {
            println!("error: guest 0 ended before its migration");
            break;
        }
        match migrate_once(p, &mut net, &mut guests, policy, n == 0) {
            Ended::Completed => completed += 1,
            Ended::Failed(step) => {
                defmt::warn!(
                    "migration with {=str} failed at: {=str}",
                    policy.name(),
                    step
                )
            }
            Ended::Unconfirmed(_) => {
                held = true;
                break;
            }
        }
        if let Err(e) = net.close(5_000, &mut || {
            guests.step(p);
        }) {
            defmt::warn!(
                "closing the migration connection: {}",
                defmt::Display2Format(&e)
            );
        }
    }
    // Every guest here runs `frames_after` more frames after the last
    // migration (each from its own count: one that stood still while a
    // migration failed does not have to catch up with the others), then
    // the workloads are asked to finish and make their final checks.
    let until: Vec<(u32, u64)> = guests
        .sched
        .guests
        .iter()
        .map(|g| (g.id, g.stats.frames + u64::from(roles.frames_after)))
        .collect();
    let behind = |g: &crate::vm::Guest| {
        matches!(g.program, guest::abi::Program::Workload { .. })
            && !g.state().ended()
            && g.state() != RunState::Held
            && until
                .iter()
                .any(|&(id, end)| id == g.id && g.stats.frames < end)
    };
    while guests.sched.guests.iter().any(behind) {
        if guests.step(p) == Step::Waiting {
            core::hint::spin_loop();
        }
    }
    guests.finish(p, held.then_some(MIGRATING));
    let mut expected = true;
    for i in 0..guests.sched.guests.len() {
        let id = guests.sched.guests[i].id;
        if !(held && id == MIGRATING) {
            expected &= guests.as_expected(id);
        }
        guests.report(&p.vgpus, i, guests.ended_word(i, "source"));
    }
    let all = completed == policies.len();
    println!(
        "gmig-rs: source: {completed} of {} migrations completed{}{}",
        policies.len(),
        if held {
            "; guest 0 is held stopped here (handover not confirmed)"
        } else {
            ""
        },
        if expected {
            ""
        } else {
            "; a guest did not end as its program should"
        }
    );
    exit(if all && expected {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// Frames guest 0 reported on this monitor.
fn frames_of(guests: &mut Guests) -> u64 {
    guests.get(MIGRATING).map_or(0, |g| g.stats.frames)
}

/// Reports a migration that did not get as far as a stream.
fn report_unstarted(policy: Policy, nic: &str, why: &dyn core::fmt::Display) {
    defmt::info!(
        "report migration status=failed transport=tcp nic={=str} policy={=str} authenticated=false encrypted=false total_ms=0 downtime_ms=0 setup_ms=0 rounds=0 pages_total=0 pages_precopy=0 pages_downtime=0 pages_zero=0 pages_delta=0 bytes=0 throughput_mbps=0 throttled_slices=0 digest=0x0",
        nic,
        policy.name()
    );
    defmt::info!("migration failure: {}", defmt::Display2Format(why));
}

/// Migrates guest 0 once with `policy`; the first migration measures the
/// raw link first.
fn migrate_once(
    p: &mut Platform,
    net: &mut Net,
    guests: &mut Guests,
    policy: Policy,
    first: bool,
) -> Ended {
    let opts = p.options;
    let nic = net.nic().kind.name();
    let Some(peer) = opts.net.peer else {
        return Ended::Failed("no peer");
    };
    let Some(key) = opts.migrate_key else {
        return Ended::Failed("no key");
    };
    let mut start_us = crate::time::micros_since_boot();
    let connect_ms = opts.roles.connect_ms.map_or(CONNECT_MS, u64::from);
    // The guests run on while the destination is not there yet.
    if let Err(e) = net.connect(peer, connect_ms, &mut || {
        guests.step(p);
    }) {
        println!("migration: cannot reach the destination {peer}: {e}; guest 0 runs on here");
        report_unstarted(policy, nic, &e);
        return Ended::Failed("connect");
    }
    if first && opts.roles.raw_tcp_mib > 0 {
        let bench_start = crate::time::micros_since_boot();
        match crate::net::bench::send(net, u64::from(opts.roles.raw_tcp_mib) << 20) {
            Ok(r) => {
                defmt::info!(
                    "report raw_tcp bytes={=u64} micros={=u64} mbps={=f32}",
                    r.bytes,
                    r.micros,
                    r.mbps()
                );
                // The migration's own time leaves the measurement out (its
                // set-up still counts the connection).
                start_us += crate::time::micros_since_boot() - bench_start;
            }
            Err(e) => {
                println!("migration: raw TCP transfer failed: {e}");
                report_unstarted(policy, nic, &e);
                return Ended::Failed("raw tcp");
            }
        }
    }
    let pages = guests.get(MIGRATING).map_or(0, |g| g.ram_pages());
    let mut buffers = match SourceBuffers::allocate(&mut p.memory.frames, pages) {
        Ok(b) => b,
        Err(e) => {
            report_unstarted(policy, nic, &e);
            return Ended::Failed("buffers");
        }
    };
    // One trace per run: the first migration's (the simulator replays one).
    let trace = opts.trace && first;
    let result = stream(
        p,
        net,
        guests,
        (policy, trace),
        &key,
        &mut buffers,
        pages,
        start_us,
    );
    buffers.free(&mut p.memory.frames);
    let (ended, figures, failure) = result;
    let f = &figures;
    let total_ms = f.total_us as f64 / 1000.0;
    let active_s = f.total_us.saturating_sub(f.setup_us).max(1) as f64 / 1e6;
    defmt::info!(
        "report migration status={=str} transport=tcp nic={=str} policy={=str} authenticated={=bool} encrypted={=bool} total_ms={=f64} downtime_ms={=f64} setup_ms={=f64} rounds={=u32} pages_total={=u64} pages_precopy={=u64} pages_downtime={=u64} pages_zero={=u64} pages_delta={=u64} bytes={=u64} throughput_mbps={=f64} throttled_slices={=u32} digest={=u64:#x}",
        f.status,
        nic,
        f.policy.name(),
        f.authenticated,
        f.encrypted,
        total_ms,
        f.downtime_us as f64 / 1000.0,
        f.setup_us as f64 / 1000.0,
        f.stats.rounds,
        f.pages,
        f.stats.precopy_pages,
        f.stats.stop_pages,
        f.stats.zero_pages,
        f.stats.delta_pages,
        f.bytes,
        f.bytes as f64 * 8.0 / 1e6 / active_s,
        f.throttled,
        f.digest
    );
    if let Some(e) = failure {
        // After the commit, the error only says why the confirmation
        // never came; the report says what that means for the guest.
        let unconfirmed = if f.status == "unconfirmed" {
            "committed, but the destination's resumed never came (guest 0 is held stopped here): "
        } else {
            ""
        };
        defmt::info!(
            "migration failure: {=str}{}",
            unconfirmed,
            defmt::Display2Format(&e)
        );
        println!("migration with {} {}: {e}", f.policy.name(), f.status);
    } else {
        println!(
            "migration with {}: completed in {total_ms:.0} ms, downtime {:.1} ms, {} pages in downtime",
            f.policy.name(),
            f.downtime_us as f64 / 1000.0,
            f.stats.stop_pages
        );
    }
    ended
}

/// Why a migration failed on this side before the destination had a say.
#[derive(Clone, Copy, Debug)]
enum LocalFailure {
    /// The migration's state machine.
    Source(SourceError),
    /// Guest 0 ended (exited or was killed) before it could stop.
    GuestEnded,
    /// Guest 0 could not be stopped and saved.
    Save(crate::migration::SaveError),
}

impl core::fmt::Display for LocalFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LocalFailure::Source(e) => write!(f, "{e}"),
            LocalFailure::GuestEnded => f.write_str("guest 0 ended before it could stop"),
            LocalFailure::Save(e) => write!(f, "guest 0 could not be saved: {e}"),
        }
    }
}

/// The stream itself; returns how it ended, its figures and, unless it
/// completed, why.
#[allow(clippy::too_many_arguments)] // reason: one call site, the migration's whole context
fn stream(
    p: &mut Platform,
    net: &mut Net,
    guests: &mut Guests,
    (policy, trace): (Policy, bool),
    key: &migrate::MigrationKey,
    buffers: &mut SourceBuffers,
    pages: u64,
    start_us: u64,
) -> (Ended, Figures, Option<LocalFailure>) {
    let opts = p.options;
    let mut figures = Figures {
        policy,
        status: "failed",
        authenticated: false,
        encrypted: false,
        stats: SourceStats::default(),
        bytes: 0,
        pages,
        total_us: 0,
        setup_us: 0,
        downtime_us: 0,
        throttled: 0,
        digest: 0,
    };
    let Some(parts) = buffers.parts() else {
        return (
            Ended::Failed("buffers"),
            figures,
            Some(LocalFailure::Source(SourceError::Misuse("buffers"))),
        );
    };
    let blob = parts.blob;
    let mut cfg = SourceConfig::new(policy);
    cfg.vgpu_type = u16::from(VGPU_TYPE.code());
    cfg.work_per_poll = 64;
    cfg.throttle = ThrottleConfig::new();
    cfg.encrypt = opts.migrate_encrypt;
    cfg.timeout_ns = TIMEOUT_NS;
    let mut entropy = MonitorEntropy::new();
    let storage = SourceStorage {
        slots: parts.slots,
        cache_pages: parts.cache_pages,
        cache_owners: parts.cache_owners,
    };
    let mut source = match Source::new(cfg, storage, key, &mut entropy) {
        Ok(s) => s,
        Err(e) => {
            return (
                Ended::Failed("source"),
                figures,
                Some(LocalFailure::Source(e)),
            )
        }
    };
    let cap = u64::from(opts.roles.migrate_mbps) << 20;
    let mut link = FaultInjector::new(
        Capped::new(TcpLink::new(net), cap),
        fault_config(opts.roles.fault),
        start_us | 1,
    );
    // Guest 0's pages as the stream sees them, its states once saved.
    let memory_of = |p: &Platform, guests: &mut Guests| {
        let g = guests.get(MIGRATING)?;
        vgpu_index(&p.vgpus, g.vgpu)
    };
    let mut trace = if trace {
        memory_of(p, guests)
            .map(|index| DirtyTrace::start(&mut GuestPages::of(&p.vgpus, index, pages, (&[], &[]))))
    } else {
        None
    };
    // The CPU's writes from before the migration are no migration's
    // business (the first round sends every page as it is then); the
    // write sets of work still running are: it may write pages after the
    // first round sent them.
    if let Some(g) = guests.get(MIGRATING) {
        g.clear_dirty();
        g.writes.watch(true);
    }
    let mut cpu_state = [0u8; SAVED_BYTES];
    let (mut blob_len, mut cpu_len) = (0usize, 0usize);
    let mut stopped_us: Option<u64> = None;
    let mut setup_us: Option<u64> = None;
    let mut pacer = Pacer::new();
    let mut last_progress = 0u64;
    let mut last_status: Option<SourceStatus> = None;
    // `Err` from the source means the guest is intact here and must run
    // on, even after the commit (an authentic reject); only `Unconfirmed`
    // keeps it stopped. The source's wait for the answer to its commit
    // already outlasts the destination's wait for the commit
    // (`migrate::handover::answer_wait_ns`): `Unconfirmed` is final.
    let outcome: Result<Ended, LocalFailure> = loop {
        // The guests' turn: one slice of the next guest that may run;
        // guest 0 only with the convergence throttle's share of its turns.
        let turn_us = crate::time::micros_since_boot();
        let share = source.submission_share();
        let mut throttled = 0u32;
        let step = guests.sched.step_admitting(&guests.rt, &mut p.vgpus, |g| {
            let admit = g.id != MIGRATING || pacer.admit(share);
            throttled += u32::from(!admit);
            admit
        });
        figures.throttled += throttled;
        let Some(i) = guests.position(MIGRATING) else {
            break Ok(Ended::Failed("guest 0 is gone"));
        };
        if guests.sched.guests[i].state().ended() {
            break Err(LocalFailure::GuestEnded);
        }
        let ran = matches!(step, Step::Ran { index, .. } if index == i);
        if ran && stopped_us.is_none() {
            let g = &mut guests.sched.guests[i];
            if let Err(e) = report_evidence(g, &mut p.vgpus, &mut source, trace.as_mut()) {
                break Err(LocalFailure::Source(e));
            }
            if let (Some(t), Some(index)) = (trace.as_mut(), vgpu_index(&p.vgpus, g.vgpu)) {
                t.step(&mut GuestPages::of(&p.vgpus, index, pages, (&[], &[])));
            }
        }
        let Some(index) = memory_of(p, guests) else {
            break Ok(Ended::Failed("guest 0's vGPU is gone"));
        };
        // The migration's turn: as long as the guests' was (here the
        // software GPU's work runs on the monitor's CPU too, so the two
        // share it evenly), at least [`MIN_SLICE_US`], or until the
        // migration has something for the loop to do.
        let now_us = crate::time::micros_since_boot();
        let slice_end = now_us + (now_us - turn_us).max(MIN_SLICE_US);
        let status = loop {
            let now_ns = crate::time::micros_since_boot() * 1000;
            link.inner_mut().set_now(now_ns);
            let states = (&blob[..blob_len], &cpu_state[..cpu_len]);
            let mut src = GuestPages::of(&p.vgpus, index, pages, states);
            let status = source.poll(now_ns, &mut src, &mut link);
            let busy = matches!(
                status,
                Ok(SourceStatus::Handshake
                    | SourceStatus::Precopy
                    | SourceStatus::StopCopy
                    | SourceStatus::AwaitingReady
                    | SourceStatus::Committed)
            );
            if !busy || now_ns / 1000 >= slice_end {
                break status;
            }
        };
        let now_us = crate::time::micros_since_boot();
        let now_ns = now_us * 1000;
        if now_us >= last_progress + PROGRESS_US {
            last_progress = now_us;
            progress(&source, policy, pages, now_us - start_us);
        }
        if let Ok(s) = status {
            if Some(s) != last_status {
                last_status = Some(s);
                defmt::info!(
                    "migration: {} at {=u64} us",
                    defmt::Debug2Format(&s),
                    now_us - start_us
                );
            }
        }
        if setup_us.is_none() && matches!(status, Ok(s) if s != SourceStatus::Handshake) {
            setup_us = Some(now_us - start_us);
        }
        match status {
            Ok(SourceStatus::StopGuest) => {
                let g = &mut guests.sched.guests[i];
                let saved = stop_and_save(g, &mut p.vgpus, &mut source, trace.as_mut(), blob);
                match saved {
                    Ok(s) => {
                        blob_len = s.device_len;
                        cpu_state = s.cpu;
                        cpu_len = cpu_state.len();
                        if opts.roles.fault == MigrateFault::CpuState {
                            // Damaged before the stream takes it: only the
                            // state's own CRC can tell (test hook).
                            cpu_state[crate::vm::cpu::HEADER_BYTES + 40] ^= 0x10;
                        }
                    }
                    Err(e) => break Err(LocalFailure::Save(e)),
                }
                if let Err(e) = source.guest_stopped(now_ns) {
                    break Err(LocalFailure::Source(e));
                }
                stopped_us = Some(now_us);
            }
            Ok(SourceStatus::Completed) => break Ok(Ended::Completed),
            Ok(SourceStatus::Unconfirmed(e)) => break Ok(Ended::Unconfirmed(e)),
            Ok(_) => {}
            Err(e) => break Err(LocalFailure::Source(e)),
        }
    };
    let end_us = crate::time::micros_since_boot();
    figures.authenticated = source.authenticated();
    figures.encrypted = source.encrypted();
    figures.stats = *source.stats();
    figures.bytes = source.bytes_sent();
    figures.total_us = end_us - start_us;
    figures.setup_us = setup_us.unwrap_or(figures.total_us);
    figures.downtime_us = stopped_us.map_or(0, |s| end_us - s);
    progress(&source, policy, pages, end_us - start_us);
    drop(source);
    if let Some(t) = &trace {
        t.end();
    }
    match outcome {
        Ok(Ended::Completed) => {
            figures.status = "completed";
            // The stopped guest's memory, as the stream had to carry it.
            if let Some(index) = memory_of(p, guests) {
                figures.digest = Digests::of_memory(
                    p.vgpus.device.memory(),
                    &p.vgpus.vgpus[index].memory,
                    pages,
                );
            }
            guests.report_frames(MIGRATING);
            guests.remove(p, MIGRATING, "migrated");
            (Ended::Completed, figures, None)
        }
        Ok(Ended::Unconfirmed(e)) => {
            figures.status = "unconfirmed";
            println!(
                "migration: committed but not confirmed ({e}); guest 0 is kept stopped here, not resumed and not freed"
            );
            (
                Ended::Unconfirmed(e),
                figures,
                Some(LocalFailure::Source(e)),
            )
        }
        Err(e) => {
            if let Some(g) = guests.get(MIGRATING) {
                g.writes.watch(false);
                g.release();
            }
            println!("migration failed: {e}; guest 0 runs on here");
            let step = match e {
                LocalFailure::Source(_) => "stream",
                LocalFailure::GuestEnded => "guest 0 ended",
                LocalFailure::Save(_) => "save",
            };
            (Ended::Failed(step), figures, Some(e))
        }
        Ok(other) => {
            if let Some(g) = guests.get(MIGRATING) {
                g.writes.watch(false);
                g.release();
            }
            (
                other,
                figures,
                Some(LocalFailure::Source(SourceError::Misuse(
                    "the guest or its vGPU failed",
                ))),
            )
        }
    }
}

fn progress(source: &Source<'_>, policy: Policy, pages: u64, elapsed_us: u64) {
    let pr = source.progress(pages as usize);
    let rate = pr.bytes as f64 * 8.0 / elapsed_us.max(1) as f64;
    defmt::info!(
        "migration progress policy={=str} phase={=str} round={=u32} sent_pages={=u64} left_pages={=u64} bytes={=u64} rate_mbps={=f64} expected_downtime_ms={=f64}",
        policy.name(),
        pr.phase,
        pr.round,
        pr.pages_sent,
        pr.pages_left,
        pr.bytes,
        rate,
        pr.expected_stop_ns.map_or(-1.0, |ns| ns as f64 / 1e6)
    );
}
