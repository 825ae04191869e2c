//! `role=dest`: a desktop guest of its own runs; the monitor accepts
//! `migrations=` streams on `listen=`, one after another. For each: a new
//! vGPU on a partition of its own (other slices than the source's, which
//! its own guest's slot makes sure of) and fresh frames; `migrate::Receiver`
//! checks and applies the stream; on its end the vGPU is restored onto the
//! new slices (Dynamic Graphics Address Remapping: the guest keeps its
//! view) and the guest's own state with it, and only then "ready" goes
//! out; the guest runs here only on the source's commit. It runs
//! `frames_after` frames, then goes away. Anything that fails before the
//! commit frees what was allocated.

use alloc::vec::Vec;

use gpu::vgpu::Vgpu;
use guest::workload::{GuestState, GUEST_STATE_BYTES};
use guest::Workload;
use migrate::dest::{ReceiveError, Receiver, ReceiverConfig, ReceiverStatus};
use migrate::link::{FaultConfig, FaultInjector, RecordAction, RecordFault};
use migrate::page::{GuestPage, PageRange};
use migrate::wire::{Kind as RecordKind, RejectReason, BACK_PRELUDE_LEN};

use super::pages::{DestBuffers, Digests, GuestSink};
use super::{step_due, Hosted, CONNECT_MS, MIN_SLICE_US, TIMEOUT_NS, VGPU_TYPE};
use crate::cmdline::MigrateFault;
use crate::entropy::MonitorEntropy;
use crate::exit::{exit, ExitCode};
use crate::guests::{CpuDirty, WriteLog};
use crate::net::link::TcpLink;
use crate::net::Net;
use crate::platform::Platform;
use crate::println;
use crate::vgpus::GUEST_MEMORY_FIRST_PAGE;

/// How long the destination waits for each source to connect, unless
/// `connect_ms=` says.
const ACCEPT_MS: u64 = 10 * CONNECT_MS;

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
    let mut guests: Vec<Hosted> = Vec::new();
    if let Err(e) = super::boot_side_guests(p, 100, 1, &mut guests) {
        println!("error: the destination's own guest does not boot: {e}");
        exit(ExitCode::Failure);
    }
    defmt::info!("guests running");
    let mut completed = 0u32;
    for n in 0..roles.migrations {
        // This monitor's own guest runs on while no source is there.
        let wait_ms = roles.connect_ms.map_or(ACCEPT_MS, u64::from);
        if let Err(e) = net.accept(port, wait_ms, &mut || step_due(p, &mut guests, None)) {
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
        if let Some((g, summary)) = receive(p, &mut net, &mut guests) {
            if run_arrived(p, &mut guests, g, summary) {
                completed += 1;
            }
        }
        if let Err(e) = net.close(5_000, &mut || step_due(p, &mut guests, None)) {
            defmt::warn!(
                "closing the migration connection: {}",
                defmt::Display2Format(&e)
            );
        }
    }
    for g in &guests {
        g.report(&p.vgpus, "running");
    }
    println!(
        "gmig-rs: destination: {completed} of {} migrations completed",
        roles.migrations
    );
    exit(if completed == roles.migrations {
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
    /// The guest's frame count when it was handed over.
    resumed_frame: u64,
    /// Free frames before anything was allocated for the migration.
    free_before: u64,
}

/// The migrated guest runs `frames_after` frames here, beside this
/// monitor's own, checks every page it predicts, and goes away; then the
/// migration's report. Whether the guest came through whole.
fn run_arrived(p: &mut Platform, guests: &mut Vec<Hosted>, g: Hosted, s: Summary) -> bool {
    let id = g.id;
    let first = s.resumed_frame;
    let until = first + u64::from(p.options.roles.frames_after);
    guests.push(g);
    while guests
        .iter()
        .any(|g| g.id == id && g.workload.frame() < until)
    {
        step_due(p, guests, None);
    }
    let Some(pos) = guests.iter().position(|g| g.id == id) else {
        // It failed here (step_due reported and removed it).
        let freed = p.memory.frames.free_frames() == s.free_before;
        report_dest("completed", &s, 0, false, freed);
        return false;
    };
    let mut g = guests.remove(pos);
    let whole = check_whole(p, &mut g);
    g.report(&p.vgpus, "destination");
    if let Ok(index) = g.index(&p.vgpus) {
        p.vgpus.remove_vgpu(&mut p.memory.frames, index);
    }
    let freed = p.memory.frames.free_frames() == s.free_before;
    report_dest("completed", &s, g.workload.frame() - first, whole, freed);
    whole
}

/// The migration's line; `freed`: every frame allocated for it is back.
fn report_dest(status: &str, s: &Summary, continued: u64, checked: bool, freed: bool) {
    defmt::info!(
        "report migration_dest status={=str} authenticated={=bool} encrypted={=bool} pages_received={=u64} digest={=u64:#x} guest_continued={=u64} checked={=bool} freed={=bool}",
        status,
        s.authenticated,
        s.encrypted,
        s.records,
        s.digest,
        continued,
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
        resumed_frame: 0,
        free_before: 0,
    };
    report_dest("failed", &none, 0, false, freed);
    defmt::info!("migration failure: {}", defmt::Display2Format(why));
}

/// The migrated guest checks every page it predicts after its frames here.
fn check_whole(p: &mut Platform, g: &mut Hosted) -> bool {
    let Ok(index) = g.index(&p.vgpus) else {
        return false;
    };
    let mut machine = crate::guests::StandIn {
        m: &mut p.vgpus,
        index,
        cpu: &mut g.cpu,
        writes: &mut g.writes,
    };
    match g.workload.check_all(&mut machine) {
        Ok(n) => {
            defmt::info!("migrated guest {=u8}: all {=u64} pages checked", g.id, n);
            true
        }
        Err(e) => {
            println!("error: migrated guest {}: {e}", g.id);
            defmt::error!("migrated guest {=u8}: {}", g.id, defmt::Display2Format(&e));
            false
        }
    }
}

/// One incoming migration; the guest, handed over and running here, when
/// the source committed.
fn receive(p: &mut Platform, net: &mut Net, guests: &mut Vec<Hosted>) -> Option<(Hosted, Summary)> {
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
        Ok((g, mut summary)) => {
            summary.free_before = free_before;
            Some((g, summary))
        }
        Err(e) => {
            // Never handed over: what was allocated for it goes.
            if let Some(i) = p.vgpus.vgpus.iter().position(|h| h.partition.id() == vgpu) {
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
    Restore(&'static str),
}

impl core::fmt::Display for DestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DestError::Stream(e) => write!(f, "{e}"),
            DestError::Restore(what) => write!(f, "restore: {what}"),
        }
    }
}

fn stream(
    p: &mut Platform,
    net: &mut Net,
    guests: &mut Vec<Hosted>,
    vgpu: gpu::partition::VgpuId,
    pages: u64,
    buffers: &mut DestBuffers,
) -> Result<(Hosted, Summary), DestError> {
    let opts = p.options;
    let range = GuestPage::new(GUEST_MEMORY_FIRST_PAGE)
        .and_then(|first| PageRange::new(first, pages))
        .ok_or(DestError::Restore("guest page range"))?;
    let mut cfg = ReceiverConfig::new(u16::from(VGPU_TYPE.code()), range);
    cfg.max_device_state = super::pages::BLOB_BYTES as u32;
    cfg.max_cpu_state = GUEST_STATE_BYTES as u32;
    cfg.encrypt = opts.migrate_encrypt;
    cfg.timeout_ns = TIMEOUT_NS;
    let Some(key) = opts.migrate_key else {
        return Err(DestError::Restore("no key"));
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
        return Err(DestError::Restore("buffers"));
    };
    // Pages the stream never sends hold what a fresh frame holds.
    digests.fill(migrate::digest::zero_page_xxh3());
    let mut cpu_state = [0u8; GUEST_STATE_BYTES];
    let (mut blob_len, mut cpu_len) = (0usize, 0usize);
    let mut arrived: Option<Hosted> = None;
    let mut resumed = false;
    let mut resumed_frame = 0u64;
    let mut digest = 0u64;
    let mut last_status: Option<ReceiverStatus> = None;
    let result = loop {
        // This monitor's guests run on meanwhile; the migrated one once the
        // source has committed.
        let turn_us = crate::time::micros_since_boot();
        step_due(p, guests, None);
        if let Some(g) = arrived.as_mut().filter(|_| resumed) {
            if g.due(turn_us) {
                if let Err(e) = g.step(&mut p.vgpus) {
                    println!("error: the migrated guest: {e}");
                }
            }
        }
        let Some(index) = p.vgpus.vgpus.iter().position(|h| h.partition.id() == vgpu) else {
            break Err(DestError::Restore("the incoming vGPU is gone"));
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
                match restore(p, index, pages, &blob[..blob_len], &cpu_state[..cpu_len]) {
                    Ok(g) => {
                        arrived = Some(g);
                        if let Err(e) = receiver.ready(now_ns, &mut link) {
                            break Err(DestError::Stream(e));
                        }
                    }
                    Err(e) => {
                        let _ = receiver.abort(RejectReason::Restore, &mut link);
                        break Err(e);
                    }
                }
            }
            Ok(ReceiverStatus::Resume) => {
                // The source committed: the guest is this side's now.
                resumed = true;
                if let Some(g) = arrived.as_mut() {
                    g.next_frame_us = now_ns / 1000;
                    resumed_frame = g.workload.frame();
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
    let stats = receiver.stats();
    let summary = Summary {
        authenticated: receiver.authenticated(),
        encrypted: receiver.encrypted(),
        records: stats.records,
        digest,
        resumed_frame,
        free_before: 0,
    };
    match (result, arrived) {
        // Once the source committed the guest runs here, whatever became
        // of the acknowledgement.
        (Err(e), Some(g)) if resumed => {
            println!(
                "migration: the guest runs here; the resumed acknowledgement may be lost: {e}"
            );
            Ok((g, summary))
        }
        (Ok(()), Some(g)) => {
            println!(
                "gmig-rs: destination: guest {} arrived and runs here (frame {})",
                g.id,
                g.workload.frame()
            );
            Ok((g, summary))
        }
        (Ok(()), None) => Err(DestError::Restore("completed without a restored guest")),
        (Err(e), _) => Err(e),
    }
}
/// The vGPU restored onto the new partition and frames (the guest keeps
/// its view: PVINFO shows the source's slices, every address it wrote is
/// remapped), and the guest's own state.
fn restore(
    p: &mut Platform,
    index: usize,
    pages: u64,
    blob: &[u8],
    cpu: &[u8],
) -> Result<Hosted, DestError> {
    let mut state = [0u8; GUEST_STATE_BYTES];
    if cpu.len() != GUEST_STATE_BYTES {
        return Err(DestError::Restore("guest state of the wrong size"));
    }
    state.copy_from_slice(cpu);
    let workload = Workload::restore::<crate::guests::StandInError>(&GuestState(state))
        .map_err(|_| DestError::Restore("guest state is not a workload's"))?;
    if workload.driver().ram_pages() != pages {
        return Err(DestError::Restore("guest of another size"));
    }
    let hosted = &mut p.vgpus.vgpus[index];
    let vgpu = Vgpu::restore(
        blob,
        &hosted.partition,
        p.vgpus.device.backend(),
        &hosted.memory,
    )
    .map_err(|_| DestError::Restore("device state does not restore"))?;
    hosted.vgpu = vgpu;
    let id = 0;
    Ok(Hosted {
        id,
        vgpu: hosted.partition.id(),
        workload,
        cpu: CpuDirty::new(pages),
        writes: WriteLog::default(),
        mib: (pages / 256) as u32,
        // Not before the source's commit.
        next_frame_us: u64::MAX,
        last: guest::FrameReport::default(),
    })
}
