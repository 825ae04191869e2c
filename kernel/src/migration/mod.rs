//! Whole-guest live migration (ARCHITECTURE.md "Migration between
//! machines"): a ring-3 guest (`crate::vm`) moves with
//! everything it is, its RAM (which is its vGPU's guest memory: the
//! guest's pages, mapped into its graphics memory by its own GGTT
//! entries), its vGPU's device state from `gpu`, and its CPU state
//! (`vm::cpu`: registers, RIP, RFLAGS, FXSAVE area, its clock).
//!
//! The pieces both the roles between machines (`crate::roles`) and the
//! migration inside one monitor ([`local`]) use:
//!
//! * evidence for the source's tracker while the guest runs
//!   ([`report_evidence`]): the pages its CPU wrote, from the PTE dirty
//!   bits of its address space (`vm::space`, cleared as they are read),
//!   and the pages its accepted submissions may have written on the GPU,
//!   the scanner's write targets translated through the guest's own GGTT
//!   entries; what the scanner cannot name counts as untracked, and the
//!   policies then hash every page;
//! * the stop ([`stop_and_save`]): the guest held between two slices, its
//!   vGPU idle, the last evidence reported, the device state and the CPU
//!   state saved;
//! * the arrival ([`restore_guest`]): the vGPU restored onto the new
//!   slices and frames (Dynamic Graphics Address Remapping), the program
//!   read back from the boot block in the guest's migrated RAM, and the
//!   guest attached to its saved CPU state, its clock going on;
//! * the pages as the stream sees them ([`pages`]), and the dirty trace
//!   ([`crate::dirty_trace`]).

pub mod local;
pub mod pages;

use gpu::addr::GuestGgttIndex;
use gpu::backend::PhysMem;
use gpu::vgpu::{FrameRuns, GuestMemoryMap, Vgpu};
use guest::abi::{BootBlock, Image, BOOT_BLOCK_BYTES, RAM_FIRST_PAGE};
use migrate::page::{GuestPage, MemoryError};
use migrate::source::{Source, SourceError};

use crate::dirty_trace::DirtyTrace;
use crate::mem::FrameAllocator;
use crate::vgpus::VgpuManager;
use crate::vm::cpu::SAVED_BYTES;
use crate::vm::{CreateError, Guest, Runtime};

pub use local::{migrate_local, MigrationError, MigrationSettings, StreamSecurity};

/// Longest a stopped guest's vGPU may take to finish its work in flight
/// before the save gives up (the migration then fails and the guest
/// resumes).
const IDLE_TIMEOUT_US: u64 = 5_000_000;

/// The `migrate` name of guest page `n`. Guest page numbers here are
/// small (a guest's RAM from `RAM_FIRST_PAGE`), so `new` never refuses.
pub(crate) fn guest_page(n: u64) -> GuestPage {
    const LAST: GuestPage = match GuestPage::new(GuestPage::MAX) {
        Some(p) => p,
        None => panic!("MAX is a valid page"),
    };
    GuestPage::new(n).unwrap_or(LAST)
}

/// The host frame behind guest page `page` of `map`.
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

/// Calls `f` with the guest page number behind each guest GM page that
/// `writes` lists (translated through the guest's own GGTT entries), or
/// with `None` for one the monitor cannot attribute, and with each guest
/// page its PPGTT batches may write (frames, through the guest's memory
/// map).
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
    // What its PPGTT batches wrote: frames its shadow PPGTT maps (guest
    // RAM, or its scratch page, which no guest page names).
    for page in writes.ram_pages(&hosted.memory) {
        f(Some(page.number()));
    }
}

/// The index of vGPU `id` in the manager now (indices move when vGPUs go).
pub(crate) fn vgpu_index(m: &VgpuManager, id: gpu::partition::VgpuId) -> Option<usize> {
    m.vgpus.iter().position(|h| h.partition.id() == id)
}

/// Tells `source` what guest `g` wrote since the last call: the RAM pages
/// its CPU wrote (PTE dirty bits, cleared) and the pages its accepted
/// submissions may write (the scanner's write targets), again once its
/// vGPU is idle (the GPU writes while the work runs: see
/// [`crate::vm::guest::WriteLog`]). `trace`, if recording, gets the same
/// evidence.
pub fn report_evidence(
    g: &mut Guest,
    m: &mut VgpuManager,
    source: &mut Source<'_>,
    mut trace: Option<&mut DirtyTrace>,
) -> Result<(), SourceError> {
    let index =
        vgpu_index(m, g.vgpu).ok_or(SourceError::Misuse("the migrating guest's vGPU is gone"))?;
    // The write sets of what it dispatched since the last poll, from the
    // gate.
    g.collect_writes(m);
    let mut result = Ok(());
    g.take_dirty(|page| {
        if let Some(t) = trace.as_deref_mut() {
            t.cpu_wrote(page.number() - RAM_FIRST_PAGE);
        }
        if result.is_ok() {
            result = source.report_cpu_dirty(guest_page(page.number()));
        }
    });
    result?;
    // What its new submissions will write, and, once its vGPU is idle,
    // what they did write: a page the GPU wrote after the migration sent
    // it is flagged again.
    let idle = m.vgpus[index].vgpu.is_idle();
    let new = g.writes.take_new();
    report_write_sets(m, index, new, source, trace.as_deref_mut())?;
    if idle {
        let ended = g.writes.take_ended();
        report_write_sets(m, index, ended, source, trace)?;
    }
    Ok(())
}

/// Tells `source` (and `trace`) the pages `sets` name for vGPU `index`.
fn report_write_sets(
    m: &mut VgpuManager,
    index: usize,
    (sets, untracked): crate::vm::guest::WriteSets,
    source: &mut Source<'_>,
    mut trace: Option<&mut DirtyTrace>,
) -> Result<(), SourceError> {
    if untracked {
        source.report_untracked_writes();
        if let Some(t) = trace.as_deref_mut() {
            t.untracked();
        }
    }
    let mut result = Ok(());
    for set in &sets {
        each_written_page(m, index, set, |page| match page {
            Some(n) => {
                if let Some(t) = trace.as_deref_mut() {
                    t.gpu_may_have_written(n.wrapping_sub(RAM_FIRST_PAGE));
                }
                if result.is_ok() {
                    result = source.report_write_target(guest_page(n));
                }
            }
            // A write the monitor cannot attribute: trust nothing.
            None => {
                source.report_untracked_writes();
                if let Some(t) = trace.as_deref_mut() {
                    t.untracked();
                }
            }
        });
    }
    result
}

/// Why a stopped guest could not be saved (the monitor's side: the guest
/// resumes and the migration fails).
#[derive(Clone, Copy, Debug)]
pub enum SaveError {
    /// Its vGPU is gone (a monitor bug).
    NoVgpu,
    /// Its vGPU's work in flight did not end (in time, or it stopped).
    NotIdle(crate::vgpus::WaitError),
    /// The source did not take the last evidence.
    Evidence(SourceError),
    /// `gpu`'s save failed.
    Device(gpu::persist::SaveError),
}

impl core::fmt::Display for SaveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SaveError::NoVgpu => f.write_str("the guest's vGPU is gone (monitor bug)"),
            SaveError::NotIdle(e) => write!(f, "the guest's vGPU at the stop: {e}"),
            SaveError::Evidence(e) => write!(f, "the last dirty pages: {e}"),
            SaveError::Device(e) => write!(f, "device state save: {e}"),
        }
    }
}

/// What a stopped guest left to send.
pub struct Saved {
    /// Bytes of the device state written into the caller's blob.
    pub device_len: usize,
    /// The CPU state (`vm::cpu`'s saved form, with the clock).
    pub cpu: [u8; SAVED_BYTES],
}

/// Stops guest `g` between two slices for the migration's stop-and-copy:
/// it is held (it does not run until [`Guest::release`]), its vGPU
/// finishes what is in flight, what it wrote last is reported to
/// `source`, and its device state (into `device`) and CPU state are
/// saved. On an error the guest is released again.
pub fn stop_and_save(
    g: &mut Guest,
    m: &mut VgpuManager,
    source: &mut Source<'_>,
    trace: Option<&mut DirtyTrace>,
    device: &mut [u8],
) -> Result<Saved, SaveError> {
    g.hold();
    let saved = (|| {
        let index = vgpu_index(m, g.vgpu).ok_or(SaveError::NoVgpu)?;
        // The save refuses a busy vGPU: its work ends in the GPU's time.
        m.wait_idle(index, IDLE_TIMEOUT_US)
            .map_err(SaveError::NotIdle)?;
        // What its last work wrote is known from the scanner, what its CPU
        // wrote last from the dirty bits: the last evidence.
        report_evidence(g, m, source, trace).map_err(SaveError::Evidence)?;
        let hosted = &m.vgpus[index];
        let device_len = hosted
            .vgpu
            .save(m.device.backend(), &hosted.memory, device)
            .map_err(SaveError::Device)?;
        Ok(Saved {
            device_len,
            cpu: g.save_cpu(),
        })
    })();
    if saved.is_err() {
        g.release();
    }
    saved
}

/// Why an arrived guest could not be restored: the stream's content does
/// not make a guest here (the peer's fault), or the monitor failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The vGPU for it is gone (a monitor bug).
    NoVgpu,
    /// The device state does not restore onto the new partition.
    Device(gpu::persist::RestoreError),
    /// The boot block in its RAM is not one of a guest of this size.
    BootBlock,
    /// The boot block names a guest id a guest here already has.
    IdInUse(u32),
    /// The guest could not be attached (its CPU state is refused, or the
    /// monitor could not build its page tables).
    Guest(CreateError),
    /// The restored vGPU's shadow PPGTTs could not be set up (a monitor
    /// bug).
    Ppgtt(gpu::ppgtt::shadow::ShadowError),
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RestoreError::NoVgpu => f.write_str("the incoming guest's vGPU is gone (monitor bug)"),
            RestoreError::Device(e) => write!(f, "device state: {e}"),
            RestoreError::BootBlock => f.write_str(
                "the boot block in the guest's RAM does not describe a guest of this size",
            ),
            RestoreError::IdInUse(id) => {
                write!(f, "the arriving guest's id {id} is taken by a guest here")
            }
            RestoreError::Guest(e) => write!(f, "guest: {e}"),
            RestoreError::Ppgtt(e) => write!(f, "its shadow PPGTT pool: {e} (monitor bug)"),
        }
    }
}

/// Makes the guest whose RAM a migration wrote into vGPU `index` (all
/// of it there, and its states received): the vGPU restored from
/// `device` onto its new slices and frames (the guest keeps its view),
/// its program read from the boot block in its RAM, and the guest
/// attached to the saved CPU state `cpu` (its clock going on from the
/// saved value as of `stopped_at_us`, this monitor's clock). `taken` says
/// which guest ids are in use here (reports and the scheduler name guests
/// by id). The guest is not scheduled: the caller runs it once the
/// handover lets it.
#[allow(clippy::too_many_arguments)] // reason: a guest's whole placement
pub fn restore_guest(
    rt: &Runtime,
    frames: &mut FrameAllocator,
    m: &mut VgpuManager,
    index: usize,
    (device, cpu): (&[u8], &[u8]),
    stopped_at_us: u64,
    taken: impl Fn(u32) -> bool,
) -> Result<Guest, RestoreError> {
    let hosted = m.vgpus.get_mut(index).ok_or(RestoreError::NoVgpu)?;
    let vgpu = Vgpu::restore(
        device,
        &hosted.partition,
        m.device.backend(),
        &hosted.memory,
    )
    .map_err(RestoreError::Device)?;
    hosted.vgpu = vgpu;
    // Its shadows are rebuilt from its page tables over this side's pool.
    hosted
        .enable_ppgtt(m.device.backend())
        .map_err(RestoreError::Ppgtt)?;
    let ram_pages: u64 = hosted.memory.runs().iter().map(|r| r.count).sum();
    let mut bytes = [0u8; BOOT_BLOCK_BYTES];
    let at = frame_address(&hosted.memory, guest_page(RAM_FIRST_PAGE))
        .map_err(|_| RestoreError::BootBlock)?;
    m.device
        .memory()
        .read(at, &mut bytes)
        .map_err(|_| RestoreError::BootBlock)?;
    let boot = Image::ALL
        .into_iter()
        .find_map(|image| BootBlock::from_bytes(&bytes, image))
        .filter(|b| b.ram_pages == ram_pages)
        .ok_or(RestoreError::BootBlock)?;
    if taken(boot.guest) {
        return Err(RestoreError::IdInUse(boot.guest));
    }
    Guest::attach(
        rt,
        frames,
        m,
        index,
        boot.guest,
        boot.program,
        cpu,
        stopped_at_us,
    )
    .map_err(RestoreError::Guest)
}
