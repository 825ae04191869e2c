//! `role=source`: the guests run; once guest 0 has done its frames, it
//! migrates live to the destination (for `policy=all`, a fresh guest 0
//! once per policy), and the others run on.
//!
//! One migration: connect, then `migrate::Source` over the TCP link (capped
//! by `migrate_mbps=`) while guest 0 keeps running, its CPU writes and the
//! scanner's write targets reported after every frame; at the stop its
//! vGPU's device state and the guest's own state are saved; the source
//! keeps the stopped guest until the destination's resumed arrives, then
//! frees it. A migration that fails before the commit, or that the
//! destination rejects after it (it then never resumes), resumes guest 0
//! here; one that cannot be confirmed after the commit keeps it stopped,
//! neither resumed nor freed, and says so.

use alloc::vec::Vec;

use migrate::link::{Capped, FaultConfig, FaultInjector, RecordAction, RecordFault};
use migrate::policy::Policy;
use migrate::source::{
    Source, SourceConfig, SourceError, SourceStats, SourceStatus, SourceStorage,
};
use migrate::throttle::{Pacer, ThrottleConfig};
use migrate::wire::{Kind as RecordKind, FORWARD_PRELUDE_LEN};

use super::pages::{Digests, GuestPages, SourceBuffers};
use super::{step_due, Hosted, CONNECT_MS, MIN_SLICE_US, PROGRESS_US, TIMEOUT_NS, VGPU_TYPE};
use crate::cmdline::MigrateFault;
use crate::entropy::MonitorEntropy;
use crate::exit::{exit, ExitCode};
use crate::migration::{each_written_page, guest_page};
use crate::net::link::TcpLink;
use crate::net::Net;
use crate::platform::Platform;
use crate::println;

/// How long a source whose wait for the resumed timed out listens on for
/// a late answer before it reports the handover unconfirmed. The
/// destination's wait for the commit began when it sent ready, before the
/// commit went out here, so its deadline is at about ours and its reject
/// (it gave up: the guest is this side's) arrives just after it; a late
/// resumed completes the migration.
const LATE_ANSWER_US: u64 = 3_000_000;

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
        MigrateFault::None | MigrateFault::LoseResumed => {}
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
    let mut guests: Vec<Hosted> = Vec::new();
    if let Err(e) = super::boot_side_guests(p, 1, roles.guests - 1, &mut guests) {
        println!("error: a guest does not boot: {e}");
        exit(ExitCode::Failure);
    }
    let policies: &[Policy] = if roles.all_policies {
        &Policy::ALL
    } else {
        core::slice::from_ref(&opts.policy)
    };
    let mut completed = 0usize;
    let mut held = false;
    for (n, &policy) in policies.iter().enumerate() {
        // A guest 0 that a failed migration left here migrates again.
        if !guests.iter().any(|g| g.id == 0) {
            let seed = 0x0e5e_ed00 ^ n as u64;
            match Hosted::boot(p, 0, roles.workload, roles.guest_mib, seed) {
                Ok(g) => guests.insert(0, g),
                Err(e) => {
                    println!("error: guest 0 does not boot: {e}");
                    break;
                }
            }
        }
        defmt::info!("guests running");
        let start_frame = guests[0].workload.frame();
        while guests.first().is_some_and(|g| g.id == 0)
            && guests[0].workload.frame() < start_frame + u64::from(roles.migrate_after_frames)
        {
            step_due(p, &mut guests, None);
        }
        if guests.first().is_none_or(|g| g.id != 0) {
            println!("error: guest 0 failed before its migration");
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
        if let Err(e) = net.close(5_000, &mut || step_due(p, &mut guests, None)) {
            defmt::warn!(
                "closing the migration connection: {}",
                defmt::Display2Format(&e)
            );
        }
    }
    // Every guest here runs `frames_after` more frames after the last
    // migration (each from its own count: one that stood still while a
    // migration failed does not have to catch up with the others).
    let until: Vec<(u8, u64)> = guests
        .iter()
        .map(|g| (g.id, g.workload.frame() + u64::from(roles.frames_after)))
        .collect();
    let behind = |g: &Hosted| {
        !(held && g.id == 0)
            && until
                .iter()
                .any(|&(id, end)| id == g.id && g.workload.frame() < end)
    };
    while guests.iter().any(behind) {
        step_due(p, &mut guests, held.then_some(0));
    }
    for g in &guests {
        g.report(&p.vgpus, if held && g.id == 0 { "held" } else { "running" });
    }
    let all = completed == policies.len();
    println!(
        "gmig-rs: source: {completed} of {} migrations completed{}",
        policies.len(),
        if held {
            "; guest 0 is held stopped here (handover not confirmed)"
        } else {
            ""
        }
    );
    exit(if all {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// Reports a migration that did not get as far as a stream.
fn report_unstarted(policy: Policy, nic: &str, why: &dyn core::fmt::Display) {
    defmt::info!(
        "report migration status=failed transport=tcp nic={=str} policy={=str} authenticated=false encrypted=false total_ms=0 downtime_ms=0 setup_ms=0 rounds=0 pages_total=0 pages_precopy=0 pages_downtime=0 pages_zero=0 pages_delta=0 bytes=0 throughput_mbps=0 digest=0x0",
        nic,
        policy.name()
    );
    defmt::info!("migration failure: {}", defmt::Display2Format(why));
}

/// Migrates guest 0 (the first of `guests`) once with `policy`; the first
/// migration measures the raw link first.
fn migrate_once(
    p: &mut Platform,
    net: &mut Net,
    guests: &mut Vec<Hosted>,
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
    if let Err(e) = net.connect(peer, connect_ms, &mut || step_due(p, guests, None)) {
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
    let pages = u64::from(guests[0].mib) * 256;
    let mut buffers = match SourceBuffers::allocate(&mut p.memory.frames, pages) {
        Ok(b) => b,
        Err(e) => {
            report_unstarted(policy, nic, &e);
            return Ended::Failed("buffers");
        }
    };
    let result = stream(p, net, guests, policy, &key, &mut buffers, pages, start_us);
    buffers.free(&mut p.memory.frames);
    let (ended, figures, failure) = result;
    let f = &figures;
    let total_ms = f.total_us as f64 / 1000.0;
    let active_s = f.total_us.saturating_sub(f.setup_us).max(1) as f64 / 1e6;
    defmt::info!(
        "report migration status={=str} transport=tcp nic={=str} policy={=str} authenticated={=bool} encrypted={=bool} total_ms={=f64} downtime_ms={=f64} setup_ms={=f64} rounds={=u32} pages_total={=u64} pages_precopy={=u64} pages_downtime={=u64} pages_zero={=u64} pages_delta={=u64} bytes={=u64} throughput_mbps={=f64} digest={=u64:#x}",
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

/// The stream itself; returns how it ended, its figures and, unless it
/// completed, why.
#[allow(clippy::too_many_arguments)] // reason: one call site, the migration's whole context
fn stream(
    p: &mut Platform,
    net: &mut Net,
    guests: &mut Vec<Hosted>,
    policy: Policy,
    key: &migrate::MigrationKey,
    buffers: &mut SourceBuffers,
    pages: u64,
    start_us: u64,
) -> (Ended, Figures, Option<SourceError>) {
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
        digest: 0,
    };
    let Some(parts) = buffers.parts() else {
        return (
            Ended::Failed("buffers"),
            figures,
            Some(SourceError::Misuse("buffers")),
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
        Err(e) => return (Ended::Failed("source"), figures, Some(e)),
    };
    let cap = u64::from(opts.roles.migrate_mbps) << 20;
    let mut link = FaultInjector::new(
        Capped::new(TcpLink::new(net), cap),
        fault_config(opts.roles.fault),
        start_us | 1,
    );
    let mut cpu_state = [0u8; guest::workload::GUEST_STATE_BYTES];
    let (mut blob_len, mut cpu_len) = (0usize, 0usize);
    let mut stopped_us: Option<u64> = None;
    let mut setup_us: Option<u64> = None;
    let mut pacer = Pacer::new();
    let mut last_progress = 0u64;
    let mut last_status: Option<SourceStatus> = None;
    // `Err` from the source means the guest is intact here and must run
    // on, even after the commit (an authentic reject); only `Unconfirmed`
    // keeps it stopped.
    let mut late_answer_until: Option<u64> = None;
    let outcome: Result<Ended, SourceError> = loop {
        // The guests' turn: guest 0 (paced by the convergence throttle's
        // share) until it stops, and the others.
        let turn_us = crate::time::micros_since_boot();
        if stopped_us.is_none() && guests[0].due(turn_us) && pacer.admit(source.submission_share())
        {
            if let Err(e) = guests[0].step(&mut p.vgpus) {
                println!("guest 0: {e}");
                break Ok(Ended::Failed("guest 0 failed"));
            }
            if let Err(e) = report_dirt(p, &mut guests[0], &mut source) {
                break Err(e);
            }
        }
        step_due(p, guests, Some(0));
        let Ok(index) = guests[0].index(&p.vgpus) else {
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
            let hosted = &p.vgpus.vgpus[index];
            let mut src = GuestPages {
                memory: p.vgpus.device.memory(),
                map: &hosted.memory,
                pages,
                device: &blob[..blob_len],
                cpu: &cpu_state[..cpu_len],
            };
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
                let saved = stop(
                    p,
                    &mut guests[0],
                    index,
                    (blob, &mut blob_len),
                    (&mut cpu_state, &mut cpu_len),
                    &mut source,
                    now_ns,
                );
                if let Err(e) = saved {
                    break Ok(e);
                }
                stopped_us = Some(now_us);
            }
            Ok(SourceStatus::Completed) => break Ok(Ended::Completed),
            Ok(SourceStatus::Unconfirmed(e)) => {
                // Only a wait that timed out can still be answered.
                let until = *late_answer_until.get_or_insert(now_us + LATE_ANSWER_US);
                if !matches!(e, SourceError::Timeout(_)) || now_us >= until {
                    break Ok(Ended::Unconfirmed(e));
                }
            }
            Ok(_) => {}
            Err(e) => break Err(e),
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
    match outcome {
        Ok(Ended::Completed) => {
            figures.status = "completed";
            // The stopped guest's memory, as the stream had to carry it.
            if let Ok(index) = guests[0].index(&p.vgpus) {
                figures.digest = Digests::of_memory(
                    p.vgpus.device.memory(),
                    &p.vgpus.vgpus[index].memory,
                    pages,
                );
                let g = guests.remove(0);
                g.report(&p.vgpus, "migrated");
                p.vgpus.remove_vgpu(&mut p.memory.frames, index);
            }
            (Ended::Completed, figures, None)
        }
        Ok(Ended::Unconfirmed(e)) => {
            figures.status = "unconfirmed";
            println!(
                "migration: committed but not confirmed ({e}); guest 0 is kept stopped here, not resumed and not freed"
            );
            (Ended::Unconfirmed(e), figures, Some(e))
        }
        Err(e) => {
            resume(&mut guests[0]);
            println!("migration failed: {e}; guest 0 runs on here");
            (Ended::Failed("stream"), figures, Some(e))
        }
        Ok(other) => {
            resume(&mut guests[0]);
            (
                other,
                figures,
                Some(SourceError::Misuse("the guest or its vGPU failed")),
            )
        }
    }
}

/// Longest wait at the stop for guest 0's GPU work to end (its last
/// frame's work takes microseconds to a few milliseconds).
const DRAIN_US: u64 = 1_000_000;

/// Guest 0 stops: its GPU work ends, its device state and its own state
/// are saved, and the source told.
fn stop(
    p: &mut Platform,
    g: &mut Hosted,
    index: usize,
    (blob, blob_len): (&mut [u8], &mut usize),
    (cpu_state, cpu_len): (&mut [u8; guest::workload::GUEST_STATE_BYTES], &mut usize),
    source: &mut Source<'_>,
    now_ns: u64,
) -> Result<(), Ended> {
    // The GPU's work takes time: what guest 0 queued may still be queued or
    // running, and the save refuses a busy vGPU. Wait for it (bounded; on
    // failure the migration fails and guest 0 runs on here), then report
    // what it may have written.
    if let Err(e) = p.vgpus.wait_idle(index, DRAIN_US) {
        defmt::error!(
            "guest 0's GPU work at the stop: {}",
            defmt::Display2Format(&e)
        );
        return Err(Ended::Failed("GPU work did not end at the stop"));
    }
    p.vgpus.collect_writes(index, &mut g.writes);
    if report_dirt(p, g, source).is_err() {
        return Err(Ended::Failed("write targets at the stop"));
    }
    let hosted = &p.vgpus.vgpus[index];
    match hosted
        .vgpu
        .save(p.vgpus.device.backend(), &hosted.memory, blob)
    {
        Ok(n) => *blob_len = n,
        Err(e) => {
            defmt::error!("device state save: {}", defmt::Display2Format(&e));
            return Err(Ended::Failed("device state save failed"));
        }
    }
    *cpu_state = g.workload.save().0;
    *cpu_len = cpu_state.len();
    // Its last frame's writes were reported; nothing runs from here.
    source
        .guest_stopped(now_ns)
        .map_err(|_| Ended::Failed("guest_stopped"))
}

/// Guest 0 goes on here after a migration that did not commit.
fn resume(g: &mut Hosted) {
    g.next_frame_us = crate::time::micros_since_boot();
}

/// What guest 0's last frame wrote, as evidence for the source: the pages
/// its CPU wrote, and the scanner's write targets of its submissions.
fn report_dirt(
    p: &mut Platform,
    g: &mut Hosted,
    source: &mut Source<'_>,
) -> Result<(), SourceError> {
    let first = crate::vgpus::GUEST_MEMORY_FIRST_PAGE;
    let mut result = Ok(());
    g.cpu.take(|i| {
        if result.is_ok() {
            result = source.report_cpu_dirty(guest_page(first + i));
        }
    });
    result?;
    if g.writes.untracked {
        source.report_untracked_writes();
    }
    let index = g
        .index(&p.vgpus)
        .map_err(|_| SourceError::Misuse("guest 0's vGPU is gone"))?;
    for set in g.writes.drain() {
        each_written_page(&mut p.vgpus, index, &set, |page| match page {
            Some(n) => {
                if result.is_ok() {
                    result = source.report_write_target(guest_page(n));
                }
            }
            None => source.report_untracked_writes(),
        });
    }
    result
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
