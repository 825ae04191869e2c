//! A live migration inside one monitor (`role=local` and the self-tests):
//! a running ring-3 guest moves, whole, onto a new vGPU of other slices
//! and other frames of the same machine. Everything but the wire is the
//! real thing: the `migrate` crate's source state machine with the policy
//! from `policy=`, its stream encoder and decoder, the dirty tracker fed
//! with the guest's PTE dirty bits and the scanner's write targets
//! ([`super::report_evidence`]), the guest held, its vGPU's device state
//! and its CPU state saved ([`super::stop_and_save`]), and the restore
//! onto the new partition with Dynamic Graphics Address Remapping
//! ([`super::restore_guest`]). The link is an in-memory pipe.
//!
//! The guests keep running while pre-copy runs, the migrating one too; at
//! the stop the destination's memory must equal the source's byte for
//! byte (only a migration inside one machine can check that), and the
//! guest goes on on the destination, its frame counter and checksums
//! continuing.
//!
//! The stream is the real one too: authenticated with the migration key
//! (`migrate_key=`, or a key made up for this boot: both ends are this
//! monitor), encrypted with `migrate_encrypt=on`, and ended by the
//! handover (`migrate::handover`): the destination restores the guest and
//! checks its memory before it says ready, runs it only on the source's
//! commit, and the source frees its guest only on the destination's
//! resumed. Every wait has a timeout ([`TIMEOUT_NS`]).
//!
//! The monitor decides when a guest runs, so it honours the convergence
//! throttle of a policy that has one (`informed-throttle`, see
//! `migrate::throttle`): when the migrating guest's turn comes, it asks
//! the source for the guest's share and lets that share of its turns
//! through ([`migrate::Pacer`]); the others pass to the next guest, so
//! the guest's work goes on more slowly, unchanged. The share is full
//! again from the stop on and whenever the migration fails.

use gpu::backend::PhysMem;
use guest::abi::RAM_FIRST_PAGE;
use migrate::dest::{ReceiveError, Receiver, ReceiverConfig, ReceiverStatus};
use migrate::link::Pipe;
use migrate::page::{GuestPage, PageBuf, PageRange, PAGE_SIZE};
use migrate::policy::Policy;
use migrate::source::{Source, SourceConfig, SourceError, SourceStatus, SourceStorage};
use migrate::throttle::{Pacer, ThrottleConfig};
use migrate::wire::{RejectReason, MAX_RECORD};
use migrate::MigrationKey;

use super::pages::{DestBuffers, GuestPages, GuestSink, SourceBuffers, BLOB_BYTES};
use super::{
    frame_address, guest_page, report_evidence, restore_guest, stop_and_save, vgpu_index,
    RestoreError, SaveError,
};
use crate::dirty_trace::DirtyTrace;
use crate::entropy::MonitorEntropy;
use crate::mem::frames::FrameError;
use crate::mem::FrameAllocator;
use crate::vgpus::{SetupError, VgpuManager};
use crate::vm::cpu::SAVED_BYTES;
use crate::vm::{Guest, Runtime, Scheduler, Step};
use gpu::partition::{VgpuId, VgpuType};

/// Bytes the in-memory link buffers each way.
const PIPE_BYTES: usize = 16 * MAX_RECORD;
/// Longest either side waits for the other without progress. Generous for
/// TCG, where restoring and checking the destination takes a while.
pub const TIMEOUT_NS: u64 = 10_000_000_000;
/// The migration's shortest turn between two guest slices.
const MIN_SLICE_US: u64 = 2_000;

/// Too big for any stack; one migration at a time.
static PIPE: spin::Mutex<Pipe<PIPE_BYTES>> = spin::Mutex::new(Pipe::new());

/// What a migration showed.
#[derive(Debug, Clone, Copy)]
pub struct MigrationReport {
    pub policy: Policy,
    /// Partition (slot) ids of the source and destination vGPUs.
    pub source: u8,
    pub destination: u8,
    pub rounds: u32,
    pub precopy_pages: u64,
    pub precopy_bytes: u64,
    pub stop_pages: u64,
    pub stop_bytes: u64,
    /// Slices the migrating guest ran during pre-copy.
    pub guest_slices: u32,
    /// Turns of the migrating guest the convergence throttle deferred
    /// during pre-copy (0 unless the policy throttles and pre-copy did
    /// not converge by itself).
    pub throttled_steps: u32,
    /// Lowest share of its turns the throttle granted, in thousandths.
    pub min_share_permille: u16,
    /// From stopping the guest to the destination's resume confirmed.
    pub downtime_us: u64,
    pub total_us: u64,
    /// Writes the dirty trace recorded (`trace=on`; 0 without).
    pub trace_events: u32,
    /// Whether the stream was encrypted (it is always authenticated).
    pub encrypted: bool,
}

/// How the migration stream is protected.
#[derive(Debug, Clone, Copy)]
pub struct StreamSecurity {
    /// The pre-shared key.
    pub key: MigrationKey,
    /// Encrypt the records too.
    pub encrypt: bool,
}

impl StreamSecurity {
    /// For the local role: `migrate_key=` if given, else a key made up for
    /// this boot (both ends are this monitor, so nothing else needs it).
    pub fn local(options: &crate::cmdline::Options) -> Self {
        let key = options
            .migrate_key
            .unwrap_or_else(|| MigrationKey::random(&mut MonitorEntropy::new()));
        Self {
            key,
            encrypt: options.migrate_encrypt,
        }
    }
}

/// What a local migration runs with.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSettings {
    pub policy: Policy,
    /// The convergence throttle, if the policy throttles.
    pub throttle: ThrottleConfig,
    /// Record the dirty trace (`trace=on`).
    pub trace: bool,
    pub security: StreamSecurity,
}

/// Why a migration failed. In every case but [`MigrationError::Unconfirmed`]
/// the guest goes on on the source, released.
#[derive(Debug)]
pub enum MigrationError {
    /// No such guest, or it has ended.
    NoGuest,
    /// No room for the destination vGPU.
    Setup(SetupError),
    /// No frames for the migration's buffers.
    Buffers(FrameError),
    /// The source state machine failed (or the destination rejected).
    Source(SourceError),
    /// The destination refused the stream.
    Destination(ReceiveError),
    /// The stopped guest could not be saved.
    Save(SaveError),
    /// The arrived guest could not be restored.
    Restore(RestoreError),
    /// The guest ended before it could stop.
    GuestEnded,
    /// The source committed the handover and then lost the destination:
    /// the guest stays stopped on the source (not resumed, not freed).
    Unconfirmed(SourceError),
    /// The destination's memory differs from the source's at the stop.
    /// `weak_digest`: the policy verified pages with gMig's XOR fold.
    Mismatch { page: u64, weak_digest: bool },
    /// Another migration holds the link.
    Busy,
}

impl core::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MigrationError::NoGuest => f.write_str("no running guest to migrate"),
            MigrationError::Setup(e) => write!(f, "destination vGPU: {e}"),
            MigrationError::Buffers(e) => write!(f, "migration buffers: {e}"),
            MigrationError::Source(e) => write!(f, "source: {e}"),
            MigrationError::Destination(e) => write!(f, "destination: {e}"),
            MigrationError::Save(e) => write!(f, "save: {e}"),
            MigrationError::Restore(e) => write!(f, "restore: {e}"),
            MigrationError::GuestEnded => f.write_str("the guest ended before it could stop"),
            MigrationError::Unconfirmed(e) => write!(
                f,
                "handover committed but not confirmed ({e}); the guest stays stopped on the source"
            ),
            MigrationError::Mismatch { page, weak_digest } => {
                write!(
                    f,
                    "guest page {page:#x} differs after migration; the source goes on"
                )?;
                if *weak_digest {
                    f.write_str(
                        " (the policy's XOR-fold tags miss edits that cancel over 32-byte lanes, \
                         such as filling an even number of lanes with one value: gMig's known weakness)",
                    )?;
                }
                Ok(())
            }
            MigrationError::Busy => f.write_str("another migration is running"),
        }
    }
}

/// Migrates guest `id` of `sched` (whose vGPU is one of `m`'s) onto a new
/// vGPU of the same type on other slices and frames, with `settings`,
/// while every guest keeps running. On success the arrived guest takes
/// the source's place in `sched` (its frame log and counters carried over) and the
/// source guest, its vGPU and frames go; on failure the source guest goes
/// on (stopped, not to be resumed, after [`MigrationError::Unconfirmed`])
/// and everything made for the destination is freed.
pub fn migrate_local(
    rt: &Runtime,
    sched: &mut Scheduler,
    m: &mut VgpuManager,
    frames: &mut FrameAllocator,
    id: u32,
    settings: MigrationSettings,
) -> Result<MigrationReport, MigrationError> {
    let start_us = crate::time::micros_since_boot();
    let mut pipe = PIPE.try_lock().ok_or(MigrationError::Busy)?;
    let g = sched
        .guests
        .iter()
        .find(|g| g.id == id && !g.state().ended())
        .ok_or(MigrationError::NoGuest)?;
    let (pages, source_vgpu) = (g.ram_pages(), g.vgpu);
    let index = vgpu_index(m, source_vgpu).ok_or(MigrationError::NoGuest)?;
    let vgpu_type = m.vgpus[index].partition.vgpu_type();
    // Before the pre-copy, not in the downtime: a partition of its own
    // (scrubbed) and fresh frames.
    let dest_index = m
        .add_vgpu(frames, vgpu_type, pages)
        .map_err(MigrationError::Setup)?;
    let dest_vgpu = m.vgpus[dest_index].partition.id();
    let buffers = match SourceBuffers::allocate(frames, pages) {
        Ok(out) => match DestBuffers::allocate(frames, pages) {
            Ok(inc) => Ok((out, inc)),
            Err(e) => {
                out.free(frames);
                Err(e)
            }
        },
        Err(e) => Err(e),
    };
    let (mut out, mut inc) = match buffers {
        Ok(b) => b,
        Err(e) => {
            if let Some(i) = vgpu_index(m, dest_vgpu) {
                m.remove_vgpu(frames, i);
            }
            return Err(MigrationError::Buffers(e));
        }
    };
    let moved = transfer(
        rt,
        sched,
        (m, frames),
        (id, source_vgpu, dest_vgpu, vgpu_type),
        pages,
        settings,
        (&mut out, &mut inc, &mut pipe),
    );
    out.free(frames);
    inc.free(frames);
    let (t, mut arrived) = match moved {
        Ok(done) => done,
        Err(e) => {
            // Not handed over: the destination's vGPU and frames go (a
            // restored guest's page tables went in `transfer`).
            if let Some(i) = vgpu_index(m, dest_vgpu) {
                m.remove_vgpu(frames, i);
            }
            if !matches!(e, MigrationError::Unconfirmed(_)) {
                if let Some(g) = sched.guests.iter_mut().find(|g| g.id == id) {
                    g.writes.watch(false);
                    g.release();
                }
            }
            return Err(e);
        }
    };
    // The arrived guest takes the source's place; the source guest, its
    // vGPU (GGTT entries cleared, slices free) and its frames go.
    if let Some(pos) = sched.guests.iter().position(|g| g.id == id) {
        let mut source = sched.guests.remove(pos);
        arrived.carry_records_from(&mut source);
        if let Some(period) = source.frame_period() {
            arrived.pace(Some(period));
        }
        sched.guests.insert(pos, arrived);
        if let Some(i) = vgpu_index(m, source_vgpu) {
            m.remove_vgpu(frames, i);
        }
        source.destroy(frames);
    }
    Ok(MigrationReport {
        policy: settings.policy,
        source: source_vgpu.raw(),
        destination: dest_vgpu.raw(),
        rounds: t.stats.rounds,
        precopy_pages: t.stats.precopy_pages,
        precopy_bytes: t.stats.precopy_bytes,
        stop_pages: t.stats.stop_pages,
        stop_bytes: t.stats.stop_bytes,
        guest_slices: t.slices,
        throttled_steps: t.throttled_steps,
        min_share_permille: t.stats.throttle.min_share.permille(),
        downtime_us: t.downtime_us,
        total_us: crate::time::micros_since_boot() - start_us,
        trace_events: t.trace_events,
        encrypted: t.encrypted,
    })
}

/// What the transfer hands over besides the arrived guest: the figures.
struct Transfer {
    stats: migrate::source::SourceStats,
    slices: u32,
    throttled_steps: u32,
    downtime_us: u64,
    trace_events: u32,
    encrypted: bool,
}

/// Pre-copy while the guests run, stop, stop-and-copy, then the handover:
/// the destination checks its memory against the source's, restores the
/// guest onto vGPU `dest_vgpu` before it says ready, and takes the guest
/// on the source's commit.
fn transfer(
    rt: &Runtime,
    sched: &mut Scheduler,
    (m, frames): (&mut VgpuManager, &mut FrameAllocator),
    (id, source_vgpu, dest_vgpu, vgpu_type): (u32, VgpuId, VgpuId, VgpuType),
    pages: u64,
    settings: MigrationSettings,
    (out, inc, pipe): (&mut SourceBuffers, &mut DestBuffers, &mut Pipe<PIPE_BYTES>),
) -> Result<(Transfer, Guest), MigrationError> {
    let MigrationSettings {
        policy,
        throttle,
        trace,
        security,
    } = settings;
    let mut cfg = SourceConfig::new(policy);
    cfg.vgpu_type = u16::from(vgpu_type.code());
    cfg.work_per_poll = 16;
    cfg.throttle = throttle;
    cfg.encrypt = security.encrypt;
    cfg.timeout_ns = TIMEOUT_NS;
    let parts = out.parts().ok_or(MigrationError::Busy)?;
    let source_blob = parts.blob;
    let (digests, dest_blob) = inc.parts().ok_or(MigrationError::Busy)?;
    digests.fill(migrate::digest::zero_page_xxh3());
    let mut entropy = MonitorEntropy::new();
    defmt::info!(
        "migration stream: authenticated with key {=u32:08x}, encrypted {=bool}, nonces from {=str}",
        security.key.fingerprint(),
        security.encrypt,
        entropy.source().name()
    );
    let mut source = Source::new(
        cfg,
        SourceStorage {
            slots: parts.slots,
            cache_pages: parts.cache_pages,
            cache_owners: parts.cache_owners,
        },
        &security.key,
        &mut entropy,
    )
    .map_err(MigrationError::Source)?;
    // A failed migration may have left bytes in flight.
    pipe.reset();
    let (mut source_end, mut dest_end) = pipe.ends();
    let range = GuestPage::new(RAM_FIRST_PAGE)
        .and_then(|first| PageRange::new(first, pages))
        .ok_or(MigrationError::NoGuest)?;
    let mut rx_cfg = ReceiverConfig::new(cfg.vgpu_type, range);
    rx_cfg.max_device_state = BLOB_BYTES as u32;
    rx_cfg.max_cpu_state = SAVED_BYTES as u32;
    rx_cfg.encrypt = security.encrypt;
    rx_cfg.timeout_ns = TIMEOUT_NS;
    let mut receiver = Receiver::new(rx_cfg, &security.key, &mut entropy);
    let index_of = |m: &VgpuManager, v| vgpu_index(m, v).ok_or(MigrationError::NoGuest);
    let mut recorder = if trace {
        let index = index_of(m, source_vgpu)?;
        Some(DirtyTrace::start(&mut GuestPages::of(
            m,
            index,
            pages,
            (&[], &[]),
        )))
    } else {
        None
    };
    if let Some(g) = sched.guests.iter_mut().find(|g| g.id == id) {
        // The CPU's writes from before the migration: the first round
        // sends every page as it is then; work still running is watched.
        g.clear_dirty();
        g.writes.watch(true);
    }
    let mut cpu_state = [0u8; SAVED_BYTES];
    let mut dest_cpu = [0u8; SAVED_BYTES];
    let (mut blob_len, mut cpu_len) = (0usize, 0usize);
    let (mut dest_blob_len, mut dest_cpu_len) = (0usize, 0usize);
    let mut stopped_us: Option<u64> = None;
    let mut slices = 0u32;
    let mut pacer = Pacer::new();
    let mut throttled_steps = 0u32;
    let mut arrived: Option<Guest> = None;
    let mut dest_runs = false;

    // Every wait in the two state machines has a timeout: this ends.
    let mut run = || -> Result<(), MigrationError> {
        loop {
            // The guests' turn.
            let turn_us = crate::time::micros_since_boot();
            let share = source.submission_share();
            let stopped = stopped_us.is_some();
            let step = sched.step_admitting(rt, m, |g| {
                let admit = g.id != id || stopped || pacer.admit(share);
                throttled_steps += u32::from(!admit);
                admit
            });
            let Some(pos) = sched.guests.iter().position(|g| g.id == id) else {
                break Err(MigrationError::NoGuest);
            };
            if sched.guests[pos].state().ended() {
                break Err(MigrationError::GuestEnded);
            }
            if matches!(step, Step::Ran { index, .. } if index == pos) && !stopped {
                slices += 1;
                let g = &mut sched.guests[pos];
                if let Err(e) = report_evidence(g, m, &mut source, recorder.as_mut()) {
                    break Err(MigrationError::Source(e));
                }
                if let Some(r) = recorder.as_mut() {
                    let index = index_of(m, source_vgpu)?;
                    r.step(&mut GuestPages::of(m, index, pages, (&[], &[])));
                }
            }
            // The migration's turn: as long as the guests' was, at least
            // [`MIN_SLICE_US`].
            let now_us = crate::time::micros_since_boot();
            let slice_end = now_us + (now_us - turn_us).max(MIN_SLICE_US);
            let result = loop {
                let now_ns = crate::time::micros_since_boot() * 1000;
                let index = index_of(m, source_vgpu)?;
                let status = {
                    let states = (&source_blob[..blob_len], &cpu_state[..cpu_len]);
                    let mut src = GuestPages::of(m, index, pages, states);
                    source.poll(now_ns, &mut src, &mut source_end)
                };
                match status {
                    Ok(SourceStatus::StopGuest) => {
                        let g = &mut sched.guests[pos];
                        let saved =
                            stop_and_save(g, m, &mut source, recorder.as_mut(), source_blob)
                                .map_err(MigrationError::Save)?;
                        blob_len = saved.device_len;
                        cpu_state = saved.cpu;
                        cpu_len = cpu_state.len();
                        stopped_us = Some(crate::time::micros_since_boot());
                        source
                            .guest_stopped(now_ns)
                            .map_err(MigrationError::Source)?;
                    }
                    Ok(SourceStatus::Completed) => break Some(Ok(())),
                    // Both ends are here, so the destination's side settles it.
                    Ok(SourceStatus::Unconfirmed(_)) if dest_runs => break Some(Ok(())),
                    Ok(SourceStatus::Unconfirmed(e)) => {
                        break Some(Err(MigrationError::Unconfirmed(e)))
                    }
                    Ok(_) => {}
                    // Not committed: the destination never runs the guest.
                    Err(e) => break Some(Err(MigrationError::Source(e))),
                }
                let dest_index = index_of(m, dest_vgpu)?;
                let received = {
                    let vgpus = &mut *m;
                    let map = &vgpus.vgpus[dest_index].memory;
                    let mut sink = GuestSink {
                        memory: vgpus.device.memory_mut(),
                        map,
                        digests: &mut *digests,
                        device: &mut *dest_blob,
                        device_len: &mut dest_blob_len,
                        cpu: &mut dest_cpu,
                        cpu_len: &mut dest_cpu_len,
                    };
                    receiver
                        .poll(now_ns, &mut sink, &mut dest_end, 64)
                        .map_err(MigrationError::Destination)?
                };
                match received {
                    ReceiverStatus::Received => {
                        // Check and restore before saying ready; on failure
                        // the source learns it and resumes its guest.
                        let restored = same_memory(m, (source_vgpu, dest_vgpu), pages, policy)
                            .and_then(|()| {
                                restore_guest(
                                    rt,
                                    frames,
                                    m,
                                    dest_index,
                                    (&dest_blob[..dest_blob_len], &dest_cpu[..dest_cpu_len]),
                                    stopped_us.unwrap_or(now_us),
                                    // The source guest keeps its id until
                                    // the arrived one takes its place.
                                    |other| {
                                        other != id && sched.guests.iter().any(|g| g.id == other)
                                    },
                                )
                                .map_err(MigrationError::Restore)
                            });
                        match restored {
                            Ok(g) => {
                                arrived = Some(g);
                                receiver
                                    .ready(now_ns, &mut dest_end)
                                    .map_err(MigrationError::Destination)?;
                            }
                            Err(e) => {
                                let _ = receiver.abort(RejectReason::Restore, &mut dest_end);
                                break Some(Err(e));
                            }
                        }
                    }
                    ReceiverStatus::Resume => {
                        // The source committed: the restored guest is the
                        // one that runs now (it takes the slot on return).
                        dest_runs = true;
                        receiver
                            .resumed(&mut dest_end)
                            .map_err(MigrationError::Destination)?;
                    }
                    _ => {}
                }
                if crate::time::micros_since_boot() >= slice_end {
                    break None;
                }
            };
            match result {
                Some(r) => break r,
                None => continue,
            }
        }
    };
    let outcome = run();
    let result = outcome.and_then(|()| {
        let g = arrived
            .take()
            .ok_or(MigrationError::Restore(RestoreError::NoVgpu))?;
        let stopped_us = stopped_us.ok_or(MigrationError::GuestEnded)?;
        if let Some(r) = &recorder {
            r.end();
        }
        // Stop to the destination's resume acknowledgement, as the source
        // sees it.
        Ok((
            Transfer {
                stats: *source.stats(),
                slices,
                throttled_steps,
                downtime_us: crate::time::micros_since_boot() - stopped_us,
                trace_events: recorder.as_ref().map_or(0, DirtyTrace::events),
                encrypted: source.encrypted(),
            },
            g,
        ))
    });
    if let Some(g) = arrived.take() {
        g.destroy(frames);
    }
    result
}

/// The local role's check that the destination's memory (vGPU `dest`)
/// equals the source's (vGPU `source`) byte for byte, at the stop.
fn same_memory(
    m: &VgpuManager,
    (source, dest): (VgpuId, VgpuId),
    pages: u64,
    policy: Policy,
) -> Result<(), MigrationError> {
    let (Some(a), Some(b)) = (vgpu_index(m, source), vgpu_index(m, dest)) else {
        return Err(MigrationError::NoGuest);
    };
    let memory = m.device.memory();
    let (mut x, mut y): (PageBuf, PageBuf) = ([0u8; PAGE_SIZE], [0u8; PAGE_SIZE]);
    for n in 0..pages {
        let page = guest_page(RAM_FIRST_PAGE + n);
        let read = |index: usize, buf: &mut PageBuf| {
            frame_address(&m.vgpus[index].memory, page)
                .ok()
                .and_then(|at| memory.read(at, buf).ok())
        };
        if read(a, &mut x).is_none() || read(b, &mut y).is_none() || x != y {
            return Err(MigrationError::Mismatch {
                page: page.get(),
                weak_digest: policy.digest() == migrate::digest::DigestKind::XorFold,
            });
        }
    }
    Ok(())
}
