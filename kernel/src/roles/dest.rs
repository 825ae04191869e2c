//! `role=dest`: a desktop guest of its own runs; the monitor accepts
//! `migrations=` streams on `listen=`, one after another. For each: a new
//! vGPU on a partition of its own (other slices than the source's, which
//! its own guest's slot makes sure of) and fresh frames; `migrate::Receiver`
//! checks and applies the stream; on its end the guest is restored
//! ([`crate::migration::restore_guest`]: its vGPU onto the new slices with
//! Dynamic Graphics Address Remapping, the guest keeping its view; its
//! program from the boot block in its RAM; its CPU state and clock) and
//! only then "ready" goes out; the guest runs here only on the source's
//! commit. It runs `frames_after` frames, is asked to finish, makes its
//! own final check of every data page and exits, and goes away. Anything
//! that fails before the commit frees what was allocated.

use migrate::dest::{ReceiveError, Receiver, ReceiverConfig, ReceiverStatus};
use migrate::link::{FaultConfig, FaultInjector, RecordAction, RecordFault};
use migrate::page::{GuestPage, PageRange};
use migrate::wire::{Kind as RecordKind, RejectReason, BACK_PRELUDE_LEN};

use guest::abi::{Program, RAM_FIRST_PAGE};
use guest::Kind;

use super::{
    Guests, CONNECT_MS, FINISH_LIMIT_US, MIN_SLICE_US, SIDE_GUEST_MIB, TIMEOUT_NS, VGPU_TYPE,
};
use crate::cmdline::MigrateFault;
use crate::entropy::MonitorEntropy;
use crate::exit::{exit, ExitCode};
use crate::migration::pages::{DestBuffers, Digests, GuestSink};
use crate::migration::{restore_guest, vgpu_index, RestoreError};
use crate::net::link::TcpLink;
use crate::net::Net;
use crate::platform::Platform;
use crate::println;
use crate::vm::cpu::SAVED_BYTES;
use crate::vm::{Guest, Kill, RunState, Step};

/// How long the destination waits for each source to connect, unless
/// `connect_ms=` says.
const ACCEPT_MS: u64 = 10 * CONNECT_MS;
/// This monitor's own guest.
const OWN_GUEST: u32 = 100;

pub fn run(p: &mut Platform) -> ! {
    let opts = p.options;
    let roles = opts.roles;
    let Some(mut net) = p.net.take() else {
        println!("error: role=dest needs the network (ip=)");
        exit(ExitCode::BadCommandLine);
    };
    let Some(port) = opts.net.listen else {
        exit(ExitCode::BadCommandLine);
    };
    defmt::info!("report role=dest nic={=str}", net.nic().kind.name());
    // Its own guest takes the first slot, so an incoming guest lands on
    // other slices than it had on the source.
    let mut guests = Guests::new(p);
    let own = Program::Workload {
        kind: Kind::Desktop2d,
        seed: 0xde5c_0064,
        frames: 0,
    };
    if let Err(e) = guests.spawn(p, OWN_GUEST, own, SIDE_GUEST_MIB) {
        println!("error: the destination's own guest does not boot: {e}");
        exit(ExitCode::Failure);
    }
    defmt::info!("guests running");
    let mut completed = 0u32;
    for n in 0..roles.migrations {
        // This monitor's own guest runs on while no source is there.
        let wait_ms = roles.connect_ms.map_or(ACCEPT_MS, u64::from);
        if let Err(e) = net.accept(port, wait_ms, &mut || {
            guests.step(p);
        }) {
            println!("error: no source connected on port {port}: {e}");
            report_failed(&e, true);
            break;
        }
        if n == 0 && roles.raw_tcp_mib > 0 {
            match crate::net::bench::receive(&mut net, u64::from(roles.raw_tcp_mib) << 20) {
                Ok(r) => defmt::info!(
                    "report raw_tcp bytes={=u64} micros={=u64} mbps={=f32}",
                    r.bytes,
                    r.micros,
                    r.mbps()
                ),
                Err(e) => {
                    println!("error: raw TCP transfer failed: {e}");
                    report_failed(&e, true);
                    break;
                }
            }
        }
        if let Some((id, summary)) = receive(p, &mut net, &mut guests) {
            if run_arrived(p, &mut guests, id, summary) {
                completed += 1;
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
    guests.finish(p, None);
    let own_ok = guests.as_expected(OWN_GUEST);
    for i in 0..guests.sched.guests.len() {
        guests.report(&p.vgpus, i, guests.ended_word(i, "destination"));
    }
    println!(
        "gmig-rs: destination: {completed} of {} migrations completed",
        roles.migrations
    );
    exit(if completed == roles.migrations && own_ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// What the destination saw of a migration that handed the guest over.
struct Summary {
    authenticated: bool,
    encrypted: bool,
    records: u64,
    digest: u64,
    /// Free frames before anything was allocated for the migration.
    free_before: u64,
}

/// The migrated guest runs `frames_after` frames here, beside this
/// monitor's own, is asked to finish (it checks every data page it
/// predicts and exits) and goes away; then the migration's report.
/// Whether the guest came through whole.
fn run_arrived(p: &mut Platform, guests: &mut Guests, id: u32, s: Summary) -> bool {
    let frames_after = u64::from(p.options.roles.frames_after);
    let limit = crate::time::micros_since_boot() + FINISH_LIMIT_US;
    let running = |guests: &mut Guests| {
        guests
            .get(id)
            .is_some_and(|g| !g.state().ended() && g.stats.frames < frames_after)
    };
    while running(guests) && crate::time::micros_since_boot() < limit {
        if guests.step(p) == Step::Waiting {
            core::hint::spin_loop();
        }
    }
    if let Some(g) = guests.get(id) {
        g.request_finish();
    }
    while guests.get(id).is_some_and(|g| !g.state().ended())
        && crate::time::micros_since_boot() < limit
    {
        if guests.step(p) == Step::Waiting {
            core::hint::spin_loop();
        }
    }
    let Some(g) = guests.get(id) else {
        return false;
    };
    g.kill(Kill::Stopped {
        reason: "it did not end in time on the destination",
    });
    // Its own final check of every data page passed.
    let whole = g.state() == RunState::Exited(0);
    let continued = g.stats.frames;
    let gap_ms = g
        .frames
        .migration_gap_us
        .map_or(-1.0, |us| us as f64 / 1000.0);
    let frame_ms = g
        .frames
        .mean_interval_us()
        .map_or(-1.0, |us| us as f64 / 1000.0);
    if !whole {
        println!("error: the migrated guest ended {}", g.state().name());
    }
    let ended = if whole { "destination" } else { "failed" };
    let ended = match g.state() {
        RunState::Killed(_) => "killed",
        _ => ended,
    };
    guests.report_frames(id);
    guests.remove(p, id, ended);
    let freed = p.memory.frames.free_frames() == s.free_before;
    report_dest("completed", &s, (continued, gap_ms, frame_ms), whole, freed);
    whole
}

/// The migration's line; `freed`: every frame allocated for it is back.
fn report_dest(
    status: &str,
    s: &Summary,
    (continued, gap_ms, frame_ms): (u64, f64, f64),
    checked: bool,
    freed: bool,
) {
    defmt::info!(
        "report migration_dest status={=str} authenticated={=bool} encrypted={=bool} pages_received={=u64} digest={=u64:#x} guest_continued={=u64} guest_frame_gap_ms={=f64} guest_frame_ms={=f64} checked={=bool} freed={=bool}",
        status,
        s.authenticated,
        s.encrypted,
        s.records,
        s.digest,
        continued,
        gap_ms,
        frame_ms,
        checked,
        freed
    );
}

fn report_failed(why: &dyn core::fmt::Display, freed: bool) {
    let none = Summary {
        authenticated: false,
        encrypted: false,
        records: 0,
        digest: 0,
        free_before: 0,
    };
    report_dest("failed", &none, (0, -1.0, -1.0), false, freed);
    defmt::info!("migration failure: {}", defmt::Display2Format(why));
}

/// One incoming migration; the id of the guest, handed over and running
/// here, when the source committed.
fn receive(p: &mut Platform, net: &mut Net, guests: &mut Guests) -> Option<(u32, Summary)> {
    let pages = u64::from(p.options.roles.guest_mib) * 256;
    let free_before = p.memory.frames.free_frames();
    let index = match p.vgpus.add_vgpu(&mut p.memory.frames, VGPU_TYPE, pages) {
        Ok(i) => i,
        Err(e) => {
            println!("error: no vGPU for the incoming guest: {e}");
            report_failed(&e, p.memory.frames.free_frames() == free_before);
            return None;
        }
    };
    let vgpu = p.vgpus.vgpus[index].partition.id();
    let mut buffers = match DestBuffers::allocate(&mut p.memory.frames, pages) {
        Ok(b) => b,
        Err(e) => {
            p.vgpus.remove_vgpu(&mut p.memory.frames, index);
            report_failed(&e, p.memory.frames.free_frames() == free_before);
            return None;
        }
    };
    let outcome = stream(p, net, guests, vgpu, pages, &mut buffers);
    buffers.free(&mut p.memory.frames);
    match outcome {
        Ok((id, mut summary)) => {
            summary.free_before = free_before;
            Some((id, summary))
        }
        Err(e) => {
            // Never handed over: what was allocated for it goes (a guest
            // restored before the commit was destroyed by `stream`).
            if let Some(i) = vgpu_index(&p.vgpus, vgpu) {
                p.vgpus.remove_vgpu(&mut p.memory.frames, i);
            }
            let freed = p.memory.frames.free_frames() == free_before;
            println!(
                "migration refused: {e}; what it allocated is {}",
                if freed { "freed" } else { "NOT all freed" }
            );
            report_failed(&e, freed);
            None
        }
    }
}

/// Why a migration did not complete here.
#[derive(Debug)]
enum DestError {
    Stream(ReceiveError),
    Restore(RestoreError),
    /// The monitor's own trouble.
    Monitor(&'static str),
}

impl core::fmt::Display for DestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DestError::Stream(e) => write!(f, "{e}"),
            DestError::Restore(e) => write!(f, "restore: {e}"),
            DestError::Monitor(what) => write!(f, "{what} (monitor bug)"),
        }
    }
}

fn stream(
    p: &mut Platform,
    net: &mut Net,
    guests: &mut Guests,
    vgpu: gpu::partition::VgpuId,
    pages: u64,
    buffers: &mut DestBuffers,
) -> Result<(u32, Summary), DestError> {
    let opts = p.options;
    let range = GuestPage::new(RAM_FIRST_PAGE)
        .and_then(|first| PageRange::new(first, pages))
        .ok_or(DestError::Monitor("guest page range"))?;
    let mut cfg = ReceiverConfig::new(u16::from(VGPU_TYPE.code()), range);
    cfg.max_device_state = crate::migration::pages::BLOB_BYTES as u32;
    cfg.max_cpu_state = SAVED_BYTES as u32;
    cfg.encrypt = opts.migrate_encrypt;
    cfg.timeout_ns = TIMEOUT_NS;
    let Some(key) = opts.migrate_key else {
        return Err(DestError::Monitor("no key"));
    };
    let mut entropy = MonitorEntropy::new();
    let mut receiver = Receiver::new(cfg, &key, &mut entropy);
    let mut faults = FaultConfig::default();
    if opts.roles.fault == MigrateFault::LoseResumed {
        faults.at_record = Some(RecordFault {
            kind: RecordKind::Resumed as u8,
            prelude: BACK_PRELUDE_LEN,
            after: 0,
            action: RecordAction::Lose,
        });
    }
    let mut link = FaultInjector::new(TcpLink::new(net), faults, 7);
    let Some((digests, blob)) = buffers.parts() else {
        return Err(DestError::Monitor("buffers"));
    };
    // Pages the stream never sends hold what a fresh frame holds.
    digests.fill(migrate::digest::zero_page_xxh3());
    let mut cpu_state = [0u8; SAVED_BYTES];
    let (mut blob_len, mut cpu_len) = (0usize, 0usize);
    // The guest, restored and waiting for the commit; then its id.
    let mut arrived: Option<Guest> = None;
    let mut resumed: Option<u32> = None;
    // When this side learned that the source stopped the guest (the end
    // of pre-copy record): the guest's clock stood at its saved value then.
    let mut stopped_at_us: Option<u64> = None;
    let mut digest = 0u64;
    let mut last_status: Option<ReceiverStatus> = None;
    let result = loop {
        // This monitor's guests run on meanwhile; the migrated one among
        // them once the source has committed.
        let turn_us = crate::time::micros_since_boot();
        guests.step(p);
        let Some(index) = vgpu_index(&p.vgpus, vgpu) else {
            break Err(DestError::Monitor("the incoming vGPU is gone"));
        };
        // The stream's turn, as long as the guests' (see the source).
        let start_us = crate::time::micros_since_boot();
        let slice_end = start_us + (start_us - turn_us).max(MIN_SLICE_US);
        let (status, now_ns) = loop {
            let now_ns = crate::time::micros_since_boot() * 1000;
            let vgpus = &mut p.vgpus;
            let map = &vgpus.vgpus[index].memory;
            let mut sink = GuestSink {
                memory: vgpus.device.memory_mut(),
                map,
                digests: &mut *digests,
                device: &mut *blob,
                device_len: &mut blob_len,
                cpu: &mut cpu_state,
                cpu_len: &mut cpu_len,
            };
            let status = receiver.poll(now_ns, &mut sink, &mut link, 64);
            if matches!(status, Ok(ReceiverStatus::StopCopy)) {
                stopped_at_us.get_or_insert(now_ns / 1000);
            }
            let busy = matches!(
                status,
                Ok(ReceiverStatus::Handshake
                    | ReceiverStatus::Precopy
                    | ReceiverStatus::StopCopy
                    | ReceiverStatus::AwaitingCommit
                    | ReceiverStatus::Acknowledging)
            );
            if !busy || now_ns / 1000 >= slice_end {
                break (status, now_ns);
            }
        };
        if let Ok(st) = status {
            if Some(st) != last_status {
                last_status = Some(st);
                defmt::info!(
                    "migration: {} at {=u64} us",
                    defmt::Debug2Format(&st),
                    now_ns / 1000
                );
            }
        }
        match status {
            Ok(ReceiverStatus::Received) => {
                digest = Digests::fold(digests.iter().copied());
                let restored = restore_guest(
                    &guests.rt,
                    &mut p.memory.frames,
                    &mut p.vgpus,
                    index,
                    (&blob[..blob_len], &cpu_state[..cpu_len]),
                    stopped_at_us.unwrap_or(now_ns / 1000),
                    |id| guests.sched.guests.iter().any(|g| g.id == id),
                );
                match restored {
                    Ok(g) => {
                        arrived = Some(g);
                        if let Err(e) = receiver.ready(now_ns, &mut link) {
                            break Err(DestError::Stream(e));
                        }
                    }
                    Err(e) => {
                        let _ = receiver.abort(RejectReason::Restore, &mut link);
                        break Err(DestError::Restore(e));
                    }
                }
            }
            Ok(ReceiverStatus::Resume) => {
                // The source committed: the guest is this side's now.
                if let Some(g) = arrived.take() {
                    resumed = Some(g.id);
                    guests.add(g);
                }
                if let Err(e) = receiver.resumed(&mut link) {
                    break Err(DestError::Stream(e));
                }
            }
            Ok(ReceiverStatus::Completed) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(DestError::Stream(e)),
        }
    };
    // Restored but never committed: its page tables go (its vGPU with
    // the caller's clean-up).
    if let Some(g) = arrived.take() {
        g.destroy(&mut p.memory.frames);
    }
    let stats = receiver.stats();
    let summary = Summary {
        authenticated: receiver.authenticated(),
        encrypted: receiver.encrypted(),
        records: stats.records,
        digest,
        free_before: 0,
    };
    match (result, resumed) {
        // Once the source committed the guest runs here, whatever became
        // of the acknowledgement.
        (Err(e), Some(id)) => {
            println!(
                "migration: the guest runs here; the resumed acknowledgement may be lost: {e}"
            );
            Ok((id, summary))
        }
        (Ok(()), Some(id)) => {
            let frame = guests
                .get(id)
                .and_then(|g| g.frames.last)
                .map_or(0, |(f, _)| f + 1);
            println!("gmig-rs: destination: guest {id} arrived and runs here (frame {frame})");
            Ok((id, summary))
        }
        (Ok(()), None) => Err(DestError::Monitor("completed without a restored guest")),
        (Err(e), None) => Err(e),
    }
}
