//! The `local` migration role (ARCHITECTURE.md "Migration roles").
//!
//! Until the network lands, the monitor migrates a running vGPU to a new
//! vGPU of its own: the `local` role. Everything but the wire is the real
//! thing: the `migrate` crate's source state machine with the policy from
//! `policy=`, its stream encoder and decoder, the dirty tracker fed with the
//! scanner's write targets and the guest's CPU writes, the vGPU's saved
//! device state, and a restore onto different slices and different frames
//! (Dynamic Graphics Address Remapping). The link is an in-memory pipe.
//!
//! The guest keeps submitting work while pre-copy runs; at the stop, the
//! destination's memory must equal the source's byte for byte, and the
//! guest must go on working on the destination.
//!
//! The stream is the real one too: authenticated with the migration key
//! (`migrate_key=`, or a key made up for this boot: both ends are this
//! monitor), encrypted with `migrate_encrypt=on`, and ended by the
//! handover (`migrate::handover`): the destination restores the vGPU and
//! checks its memory before it says ready, runs it only on the source's
//! commit, and the source frees its vGPU only on the destination's
//! resumed. Every wait has a timeout ([`TIMEOUT_NS`]); a handover that
//! cannot be confirmed leaves the source vGPU stopped, not resumed.
//!
//! The monitor decides when a guest's submissions reach the GPU, so it
//! honours the convergence throttle of a policy that has one
//! (`informed-throttle`, see `migrate::throttle`): before each of the
//! guest's submission steps it asks the source for the vGPU's share of GPU
//! time and lets that share of the steps through ([`migrate::Pacer`]); the
//! others are deferred, so the guest's work goes on more slowly, unchanged.
//! The share is full again from the stop on and whenever the migration
//! fails.

use gpu::addr::GuestGgttIndex;
use gpu::partition::Partition;
use gpu::vgpu::{FrameRuns, GuestMemoryMap, Vgpu};
use migrate::dest::{ReceiveError, Receiver, ReceiverConfig, ReceiverStatus};
use migrate::link::Pipe;
use migrate::page::{
    read_state_chunk, GuestPage, MemoryError, PageBuf, PageRange, PageSink, PageSource, PAGE_SIZE,
};
use migrate::policy::Policy;
use migrate::source::{Source, SourceConfig, SourceError, SourceStatus, SourceStorage};
use migrate::throttle::{Pacer, ThrottleConfig};
use migrate::wire::RejectReason;
use migrate::MigrationKey;

use crate::dirty_trace::{mark, DirtyTrace, PageSet};
use crate::entropy::MonitorEntropy;
use migrate::tracker::Slot;
use migrate::wire::MAX_RECORD;

use gpu::backend::PhysMem;

use crate::gpu_mem::GpuMemory;
use crate::mem::FrameAllocator;
use crate::vgpus::{
    HostedVgpu, SetupError, VgpuManager, GUEST_MEMORY_FIRST_PAGE, GUEST_MEMORY_PAGES,
};
use crate::workload::{DriverError, GuestDriver};

/// Dirty-table slots: a power of two comfortably above the page count.
const SLOTS: usize = 512;
/// Delta cache: 1/8 of the guest's pages (the simulator's sizing).
const CACHE_PAGES: usize = GUEST_MEMORY_PAGES as usize / 8;
/// Device-state blob room on each side. A blob holds ~60 bytes per engine
/// and 12 bytes per present guest GGTT entry; 2 MiB covers every entry of a
/// `small` vGPU. A guest that maps more makes the save fail with a typed
/// error, and the source keeps running.
const BLOB_BYTES: usize = 2 << 20;
/// Bytes the in-memory link buffers each way.
const PIPE_BYTES: usize = 16 * MAX_RECORD;
/// Longest either side waits for the other without progress. Generous for
/// TCG, where restoring and checking the destination takes a while.
pub const TIMEOUT_NS: u64 = 10_000_000_000;
/// The guest submits more work every this many polls during pre-copy.
const WORK_EVERY: u32 = 4;

struct Storage {
    slots: [Slot; SLOTS],
    cache_pages: [PageBuf; CACHE_PAGES],
    cache_owners: [u64; CACHE_PAGES],
    pipe: Pipe<PIPE_BYTES>,
}

/// The source's and the destination's device-state blobs.
struct Blobs {
    source: [u8; BLOB_BYTES],
    dest: [u8; BLOB_BYTES],
}

/// Too big for any stack; one migration at a time. (The dirty table's
/// empty marker is not zero, so it sits in `.data`: 24 KiB.)
static STORAGE: spin::Mutex<Storage> = spin::Mutex::new(Storage {
    slots: [Slot::EMPTY; SLOTS],
    cache_pages: [[0; PAGE_SIZE]; CACHE_PAGES],
    cache_owners: [0; CACHE_PAGES],
    pipe: Pipe::new(),
});

/// All zeros, so in `.bss`: 4 MiB that the image does not carry.
static BLOBS: spin::Mutex<Blobs> = spin::Mutex::new(Blobs {
    source: [0; BLOB_BYTES],
    dest: [0; BLOB_BYTES],
});

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
    pub guest_submissions: u32,
    /// Guest submission steps the convergence throttle deferred during
    /// pre-copy (0 unless the policy throttles and pre-copy did not
    /// converge by itself).
    pub throttled_steps: u32,
    /// Lowest share of GPU time the throttle granted, in thousandths.
    pub min_share_permille: u16,
    /// From stopping the guest to the destination's vGPU restored.
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

/// Why a migration failed. In every case the source vGPU is intact and
/// its guest goes on there.
#[derive(Debug)]
pub enum MigrationError {
    /// No room for the destination vGPU.
    Setup(SetupError),
    /// The source state machine failed (or the destination rejected).
    Source(SourceError),
    /// The destination refused the stream.
    Destination(ReceiveError),
    /// Saving or restoring the device state failed.
    DeviceState(&'static str),
    /// The guest's own work failed.
    Guest(DriverError),
    /// The source committed the handover and then lost the destination:
    /// the guest stays stopped on the source (not resumed, not freed).
    Unconfirmed(SourceError),
    /// The destination's memory differs from the source's at the stop.
    /// `weak_digest`: the policy verified pages with gMig's XOR fold.
    Mismatch { page: u64, weak_digest: bool },
    /// Another migration holds the buffers.
    Busy,
}

impl core::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MigrationError::Setup(e) => write!(f, "destination vGPU: {e}"),
            MigrationError::Source(e) => write!(f, "source: {e}"),
            MigrationError::Destination(e) => write!(f, "destination: {e}"),
            MigrationError::DeviceState(what) => write!(f, "device state: {what}"),
            MigrationError::Guest(e) => write!(f, "guest: {e}"),
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

/// The `migrate` name of guest page `n`. Guest page numbers here are small
/// (`GUEST_MEMORY_FIRST_PAGE..+GUEST_MEMORY_PAGES`), so `new` never refuses.
pub(crate) fn guest_page(n: u64) -> GuestPage {
    const LAST: GuestPage = match GuestPage::new(GuestPage::MAX) {
        Some(p) => p,
        None => panic!("MAX is a valid page"),
    };
    GuestPage::new(n).unwrap_or(LAST)
}

/// The source vGPU's pages and, once stopped, its device state.
struct SourcePages<'a> {
    memory: &'a GpuMemory,
    map: &'a FrameRuns<4>,
    blob: &'a [u8],
}

impl<'a> SourcePages<'a> {
    /// The pages of vGPU `index`'s guest, with `blob` as its device state.
    fn of(m: &'a VgpuManager, index: usize, blob: &'a [u8]) -> Self {
        SourcePages {
            memory: m.device.memory(),
            map: &m.vgpus[index].memory,
            blob,
        }
    }
}

pub(crate) fn frame_address(
    map: &FrameRuns<4>,
    page: GuestPage,
) -> Result<gpu::addr::PhysAddr, MemoryError> {
    let gpu_page =
        gpu::addr::GuestPage::new(page.get()).map_err(|_| MemoryError::NotMapped(page))?;
    map.frame_of(gpu_page)
        .map(|f| f.start())
        .ok_or(MemoryError::NotMapped(page))
}

impl PageSource for SourcePages<'_> {
    fn page_count(&self) -> usize {
        GUEST_MEMORY_PAGES as usize
    }
    fn page_at(&self, index: usize) -> GuestPage {
        guest_page(GUEST_MEMORY_FIRST_PAGE + index as u64)
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let at = frame_address(self.map, page)?;
        self.memory
            .read(at, out)
            .map_err(|_| MemoryError::NotMapped(page))
    }
    fn device_state_len(&self) -> usize {
        self.blob.len()
    }
    fn read_device_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
        read_state_chunk(self.blob, offset, out)
    }
    // The guests are the monitor's own stand-ins: no CPU register state yet.
    fn cpu_state_len(&self) -> usize {
        0
    }
    fn read_cpu_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
        read_state_chunk(&[], offset, out)
    }
}

/// The destination's fresh frames and its device-state buffer.
struct DestPages<'a> {
    memory: &'a mut GpuMemory,
    map: &'a FrameRuns<4>,
    blob: &'a mut [u8],
    blob_len: &'a mut usize,
}

impl PageSink for DestPages<'_> {
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError> {
        let at = frame_address(self.map, page).map_err(|_| MemoryError::Refused(page))?;
        self.memory
            .write(at, data)
            .map_err(|_| MemoryError::Refused(page))
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let at = frame_address(self.map, page)?;
        self.memory
            .read(at, out)
            .map_err(|_| MemoryError::NotMapped(page))
    }
    fn write_device_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        let end = offset
            .checked_add(data.len())
            .filter(|end| *end <= total && total <= self.blob.len());
        let Some(end) = end else {
            return Err(MemoryError::StateOutOfRange {
                offset,
                len: data.len(),
            });
        };
        self.blob[offset..end].copy_from_slice(data);
        *self.blob_len = total;
        Ok(())
    }
    // The stand-in guests have no CPU state: only an empty blob fits.
    fn write_cpu_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        if total == 0 && data.is_empty() {
            Ok(())
        } else {
            Err(MemoryError::StateOutOfRange {
                offset,
                len: data.len(),
            })
        }
    }
}

/// Calls `f` with the guest page number behind each guest GM page that
/// `writes` lists (translated through the guest's own GGTT entries), or
/// with `None` for one the monitor cannot attribute.
pub(crate) fn each_written_page(
    m: &mut VgpuManager,
    index: usize,
    writes: &gpu::scan::WriteSet,
    mut f: impl FnMut(Option<u64>),
) {
    let hosted = &m.vgpus[index];
    for gm_page in writes.pages() {
        let page = GuestGgttIndex::new(gm_page)
            .ok()
            .and_then(|i| {
                hosted
                    .vgpu
                    .guest_pte(m.device.backend(), &hosted.memory, i)
                    .ok()
            })
            .and_then(|pte| pte.page());
        f(page.map(|p| p.number()));
    }
}

/// Tells the source which guest pages the last accepted submission may
/// have written (the scanner's write targets, guest GM pages translated to
/// guest pages through the guest's own GGTT entries).
fn report_write_targets(
    m: &mut VgpuManager,
    index: usize,
    source: &mut Source<'_>,
    targets: &mut PageSet,
) -> Result<(), SourceError> {
    let Some(writes) = m.gate.last_writes().copied() else {
        return Ok(());
    };
    if writes.untracked {
        source.report_untracked_writes();
        return Ok(());
    }
    let mut result = Ok(());
    each_written_page(m, index, &writes, |page| match page {
        Some(p) => {
            mark(targets, p.wrapping_sub(GUEST_MEMORY_FIRST_PAGE));
            if result.is_ok() {
                result = source.report_write_target(guest_page(p));
            }
        }
        // A write the monitor cannot attribute: trust nothing.
        None => source.report_untracked_writes(),
    });
    result
}

/// What the transfer hands over: the restored vGPU and the figures.
struct Transfer {
    vgpu: Vgpu,
    stats: migrate::source::SourceStats,
    submissions: u32,
    throttled_steps: u32,
    downtime_us: u64,
    trace_events: u32,
    encrypted: bool,
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

/// Migrates vGPU `index` (whose guest is `guest`) to a new vGPU on other
/// slices and frames, with `settings`, while the guest keeps working. On
/// success the new vGPU takes the guest's slot and the old one is torn
/// down; on failure the old one goes on untouched (stopped, not to be
/// resumed, after [`MigrationError::Unconfirmed`]) and the new one is torn
/// down; the frames of whichever side goes away return to the allocator.
pub fn migrate_local(
    m: &mut VgpuManager,
    frames: &mut FrameAllocator,
    index: usize,
    guest: GuestDriver,
    settings: MigrationSettings,
) -> Result<(MigrationReport, GuestDriver), MigrationError> {
    let policy = settings.policy;
    let mut storage = STORAGE.try_lock().ok_or(MigrationError::Busy)?;
    let mut blobs = BLOBS.try_lock().ok_or(MigrationError::Busy)?;
    let vgpu_type = m.vgpus[index].partition.vgpu_type();
    let source_id = m.vgpus[index].partition.id().raw();
    let partition: Partition = m
        .partitions
        .allocate(vgpu_type)
        .map_err(|e| MigrationError::Setup(SetupError::Partition(e)))?;
    // Before the pre-copy, not in the downtime: restore writes only the
    // entries the guest mapped.
    gpu::vgpu::scrub_partition(m.device.backend(), &partition);
    let start_us = crate::time::micros_since_boot();
    let dest_map =
        match crate::vgpus::guest_memory(m.device.memory_mut(), frames, GUEST_MEMORY_PAGES) {
            Ok(map) => map,
            Err(e) => {
                let _ = m.partitions.free(partition.id());
                return Err(MigrationError::Setup(e));
            }
        };
    let transfer = transfer(
        m,
        (&mut storage, &mut blobs),
        index,
        guest,
        settings,
        (&partition, &dest_map),
    );
    let t = match transfer {
        Ok(t) => t,
        Err(e) => {
            // Nothing maps the destination any more (a failed restore or
            // check took its GGTT entries back): its slices and frames go.
            let _ = m.partitions.free(partition.id());
            if let Err(r) = m.device.memory_mut().release(frames, &dest_map) {
                defmt::warn!("destination frames: {}", defmt::Display2Format(&r));
            }
            return Err(e);
        }
    };
    // The destination takes over the guest's slot; the source vGPU goes
    // away (its GGTT entries cleared, its slices free for reuse).
    let mut old = core::mem::replace(
        &mut m.vgpus[index],
        HostedVgpu {
            vgpu: t.vgpu,
            partition,
            memory: dest_map,
        },
    );
    old.vgpu.reset(m.device.backend());
    let _ = m.partitions.free(old.partition.id());
    // With its GGTT entries gone the GPU cannot reach the old frames.
    if let Err(r) = m.device.memory_mut().release(frames, &old.memory) {
        defmt::warn!("source frames: {}", defmt::Display2Format(&r));
    }
    let report = MigrationReport {
        policy,
        source: source_id,
        destination: partition.id().raw(),
        rounds: t.stats.rounds,
        precopy_pages: t.stats.precopy_pages,
        precopy_bytes: t.stats.precopy_bytes,
        stop_pages: t.stats.stop_pages,
        stop_bytes: t.stats.stop_bytes,
        guest_submissions: t.submissions,
        throttled_steps: t.throttled_steps,
        min_share_permille: t.stats.throttle.min_share.permille(),
        downtime_us: t.downtime_us,
        total_us: crate::time::micros_since_boot() - start_us,
        trace_events: t.trace_events,
        encrypted: t.encrypted,
    };
    let resumed = GuestDriver::resume(m, index).map_err(MigrationError::Guest)?;
    Ok((report, resumed))
}

/// Pre-copy while the guest works, stop, stop-and-copy, then the
/// handover: the destination restores onto `partition` and `dest_map` and
/// checks its memory before it says ready, and takes the guest on the
/// source's commit.
fn transfer(
    m: &mut VgpuManager,
    (storage, blobs): (&mut Storage, &mut Blobs),
    index: usize,
    guest: GuestDriver,
    settings: MigrationSettings,
    (partition, dest_map): (&Partition, &FrameRuns<4>),
) -> Result<Transfer, MigrationError> {
    let Storage {
        slots,
        cache_pages,
        cache_owners,
        pipe,
    } = storage;
    let Blobs {
        source: source_blob,
        dest: dest_blob,
    } = blobs;
    let MigrationSettings {
        policy,
        throttle,
        trace,
        security,
    } = settings;
    // A failed migration may have left bytes in flight.
    *pipe = Pipe::new();
    let mut cfg = SourceConfig::new(policy);
    cfg.vgpu_type = u16::from(m.vgpus[index].partition.vgpu_type().code());
    cfg.work_per_poll = 16;
    cfg.throttle = throttle;
    cfg.encrypt = security.encrypt;
    cfg.timeout_ns = TIMEOUT_NS;
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
            slots,
            cache_pages,
            cache_owners,
        },
        &security.key,
        &mut entropy,
    )
    .map_err(MigrationError::Source)?;
    let (mut source_end, mut dest_end) = pipe.ends();
    let mut rx_cfg = ReceiverConfig::new(cfg.vgpu_type, GUEST_PAGES);
    rx_cfg.max_device_state = BLOB_BYTES as u32;
    // The stand-in guests have no CPU state.
    rx_cfg.max_cpu_state = 0;
    rx_cfg.encrypt = security.encrypt;
    rx_cfg.timeout_ns = TIMEOUT_NS;
    let mut receiver = Receiver::new(rx_cfg, &security.key, &mut entropy);
    let mut dest_blob_len = 0usize;
    let mut blob_len = 0usize;
    let mut stopped_us = None;
    let mut submissions = 0u32;
    let mut round_tag = 0u32;
    let mut pacer = Pacer::new();
    let mut throttled_steps = 0u32;
    let mut restored: Option<Vgpu> = None;
    let mut dest_runs = false;
    let mut recorder = trace.then(|| DirtyTrace::start(&mut SourcePages::of(m, index, &[])));

    // Every wait in the two state machines has a timeout: this ends.
    let mut poll = 0u32;
    loop {
        let now_ns = crate::time::micros_since_boot() * 1000;
        let step_due = stopped_us.is_none() && poll.is_multiple_of(WORK_EVERY);
        // Only the throttle's share of the guest's steps goes through.
        let admitted = step_due && pacer.admit(source.submission_share());
        if step_due && !admitted {
            throttled_steps += 1;
        }
        if admitted {
            round_tag += 1;
            let (mut targets, mut cpu): (PageSet, PageSet) = Default::default();
            for (engine, cmds) in guest.churn(round_tag) {
                guest
                    .submit(m, engine, &cmds)
                    .map_err(MigrationError::Guest)?;
                // What the GPU may have written, and the ring the CPU wrote.
                report_write_targets(m, index, &mut source, &mut targets)
                    .map_err(MigrationError::Source)?;
                let ring = crate::workload::ring_page(engine);
                mark(&mut cpu, ring);
                source
                    .report_cpu_dirty(guest_page(GUEST_MEMORY_FIRST_PAGE + ring))
                    .map_err(MigrationError::Source)?;
                submissions += 1;
            }
            if let Some(r) = recorder.as_mut() {
                r.step(&mut SourcePages::of(m, index, &[]), &targets, &cpu);
            }
        }
        let status = {
            let mut pages = SourcePages::of(m, index, &source_blob[..blob_len]);
            source.poll(now_ns, &mut pages, &mut source_end)
        };
        match status {
            Ok(SourceStatus::StopGuest) => {
                // The guest submits nothing from here on; its vGPU is idle
                // (the software GPU completes work synchronously).
                stopped_us = Some(crate::time::micros_since_boot());
                let hosted = &m.vgpus[index];
                blob_len = hosted
                    .vgpu
                    .save(m.device.backend(), &hosted.memory, source_blob)
                    .map_err(|_| MigrationError::DeviceState("save failed"))?;
                source
                    .guest_stopped(now_ns)
                    .map_err(MigrationError::Source)?;
            }
            Ok(SourceStatus::Completed) => break,
            // Both ends are here, so the destination's side settles it.
            Ok(SourceStatus::Unconfirmed(_)) if dest_runs => break,
            Ok(SourceStatus::Unconfirmed(e)) => return Err(MigrationError::Unconfirmed(e)),
            Ok(_) => {}
            Err(e) => {
                // Not committed: the destination never runs the guest.
                if let Some(mut v) = restored.take() {
                    v.reset(m.device.backend());
                }
                return Err(MigrationError::Source(e));
            }
        }
        let received = {
            let mut sink = DestPages {
                memory: m.device.memory_mut(),
                map: dest_map,
                blob: dest_blob,
                blob_len: &mut dest_blob_len,
            };
            receiver
                .poll(now_ns, &mut sink, &mut dest_end, 64)
                .map_err(MigrationError::Destination)?
        };
        match received {
            ReceiverStatus::Received => {
                // Restore and check before saying ready; on failure the
                // source learns it and resumes its guest.
                match restore_and_check(
                    m,
                    index,
                    &dest_blob[..dest_blob_len],
                    partition,
                    dest_map,
                    policy,
                ) {
                    Ok(v) => {
                        restored = Some(v);
                        receiver
                            .ready(now_ns, &mut dest_end)
                            .map_err(MigrationError::Destination)?;
                    }
                    Err(e) => {
                        let _ = receiver.abort(RejectReason::Restore, &mut dest_end);
                        return Err(e);
                    }
                }
            }
            ReceiverStatus::Resume => {
                // The source committed: the restored vGPU is the guest's now
                // (it takes the slot once the transfer returns).
                dest_runs = true;
                receiver
                    .resumed(&mut dest_end)
                    .map_err(MigrationError::Destination)?;
            }
            _ => {}
        }
        poll = poll.wrapping_add(1);
    }
    if let Some(r) = &recorder {
        defmt::info!("trace-end events={=u32}", r.events());
    }
    let vgpu = restored.ok_or(MigrationError::DeviceState("completed without a restore"))?;
    let stopped_us = stopped_us.ok_or(MigrationError::DeviceState("completed without a stop"))?;
    // Stop to the destination's resume acknowledgement, as the source sees it.
    let downtime_us = crate::time::micros_since_boot() - stopped_us;
    Ok(Transfer {
        vgpu,
        stats: *source.stats(),
        submissions,
        throttled_steps,
        downtime_us,
        trace_events: recorder.as_ref().map_or(0, DirtyTrace::events),
        encrypted: source.encrypted(),
    })
}

/// The guest's own pages, which every page record must name (checked at
/// compile time).
const GUEST_PAGES: PageRange = match GuestPage::new(GUEST_MEMORY_FIRST_PAGE) {
    Some(first) => match PageRange::new(first, GUEST_MEMORY_PAGES) {
        Some(r) => r,
        None => panic!("the guest's pages are a small range"),
    },
    None => panic!("the guest's pages are a small range"),
};

/// The destination's restore onto `partition` and `dest_map`, and the local
/// role's check that its memory equals the source's byte for byte.
fn restore_and_check(
    m: &mut VgpuManager,
    index: usize,
    blob: &[u8],
    partition: &Partition,
    dest_map: &FrameRuns<4>,
    policy: Policy,
) -> Result<Vgpu, MigrationError> {
    let mut vgpu = Vgpu::restore(blob, partition, m.device.backend(), dest_map)
        .map_err(|_| MigrationError::DeviceState("restore failed"))?;
    let memory = m.device.memory();
    for n in 0..GUEST_MEMORY_PAGES {
        let page = guest_page(GUEST_MEMORY_FIRST_PAGE + n);
        let read = |map: &FrameRuns<4>, buf: &mut PageBuf| {
            frame_address(map, page)
                .ok()
                .and_then(|at| memory.read(at, buf).ok())
        };
        let (mut a, mut b) = ([0u8; PAGE_SIZE], [0u8; PAGE_SIZE]);
        if read(&m.vgpus[index].memory, &mut a).is_none()
            || read(dest_map, &mut b).is_none()
            || a != b
        {
            vgpu.reset(m.device.backend());
            return Err(MigrationError::Mismatch {
                page: page.get(),
                weak_digest: policy.digest() == migrate::digest::DigestKind::XorFold,
            });
        }
    }
    Ok(vgpu)
}
