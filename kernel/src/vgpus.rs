//! The vGPU manager (ARCHITECTURE.md "Graphics memory and its partition",
//! "GPU backends"): picks the GPU backend from PCI, owns the host GGTT through
//! it, keeps the monitor's slice of graphics memory, creates one partition
//! and one [`Vgpu`] per vGPU asked for, and gives each vGPU its guest
//! memory. All decisions about slices, registers, commands and whose turn
//! it is on an engine are the `gpu` crate's; this module only provides
//! frames, BAR0, the clock and the wiring.
//!
//! The GPU's work takes time (on the software model too): a guest's TAIL
//! write only queues its commands, and [`VgpuManager::poll`] (the
//! `gpu::sched` scheduler over every vGPU, on the TSC clock) dispatches and
//! completes them. Every loop that waits for the GPU calls it: the guests'
//! waits for their fences, the roles' main loops, the self-tests
//! ([`VgpuManager::wait_idle`]).

use alloc::boxed::Box;
use core::fmt;

use gpu::addr::{GuestPage, HostGgttIndex, HostGm, HostGmRange, PhysAddr, PhysFrame, PAGE_SIZE};
use gpu::backend::{Backend, BackendError, ContextId, PhysMem};
use gpu::engine::Engine;
use gpu::ggtt::{GgttFlush, HostPte, PteFlags};
use gpu::intel::{context_pages, ContextTable, EngineContext, IntelGen9, Mmio};
use gpu::mediate::{ScanGate, SHADOW_BYTES_PER_ENGINE};
use gpu::partition::{
    GmLayout, Partition, PartitionAllocator, PartitionError, VgpuType, MAX_VGPUS,
};
use gpu::ppgtt::shadow::{pool_frames, ShadowError};
use gpu::regs::MmioOffset;
use gpu::sched::{PollReport, Scheduler};
use gpu::sim::{SimError, SimGpu};
use gpu::vgpu::{FrameRun, FrameRuns, Vgpu, VgpuState, SHADOW_TABLES};

use crate::gpu_mem::{GpuMemory, GpuMemoryError};
use crate::mem::paging::MapError;
use crate::mem::FrameAllocator;
use crate::pci::{Bar, Bdf, ConfigAccess, PciBus};
use crate::platform::Memory;

/// vGPUs created when the command line does not say (`vgpus=`).
pub const DEFAULT_VGPUS: u8 = 2;
/// Their type (`vgpu_type=`).
pub const DEFAULT_TYPE: VgpuType = VgpuType::Small;
/// Guest memory (the RAM of its ring-3 guest, `role=local`) of each vGPU
/// of the bring-up (`vgpus=`): 8 MiB, room for a workload.
pub const GUEST_MEMORY_PAGES: u64 = 2048;
/// First guest page number of that memory, as the guest names it in PTEs.
pub const GUEST_MEMORY_FIRST_PAGE: u64 = 0x100;
/// The software model's GGTT table: one 8-byte PTE per 4 KiB of 4 GiB.
const GGTT_TABLE_PAGES: u64 = 2048;
/// GM (and frames) the real backend's logical ring contexts take: one per
/// engine for the monitor and for every vGPU slot.
const fn context_bytes() -> u64 {
    let mut per_context = 0;
    let mut i = 0;
    while i < Engine::COUNT {
        per_context += context_pages(Engine::ALL[i]);
        i += 1;
    }
    per_context * ContextId::COUNT as u64 * PAGE_SIZE
}

/// BAR0 of a real Gen9 GPU, mapped uncached: registers in the low 2 MiB,
/// the GGTT at +8 MiB; with the function's configuration space and the
/// TSC clock, what [`Mmio`] asks for.
#[derive(Debug)]
pub struct Bar0 {
    base: u64,
    size: u64,
    config: ConfigAccess,
    bdf: Bdf,
}

impl Bar0 {
    fn address(&self, offset: MmioOffset, width: u64) -> Option<u64> {
        let offset = u64::from(offset.raw());
        (offset + width <= self.size && offset % width == 0).then_some(self.base + offset)
    }
}

impl Mmio for Bar0 {
    fn read32(&mut self, offset: MmioOffset) -> u32 {
        match self.address(offset, 4) {
            // SAFETY: inside the BAR, mapped uncached, naturally aligned;
            // GPU register reads have no memory side effects on the monitor.
            Some(addr) => unsafe { core::ptr::read_volatile(addr as *const u32) },
            None => u32::MAX, // like a master abort
        }
    }

    fn write32(&mut self, offset: MmioOffset, value: u32) {
        if let Some(addr) = self.address(offset, 4) {
            // SAFETY: as in `read32`; the gpu crate decides which registers
            // are written, none of them maps monitor memory except the GGTT,
            // whose entries it validates.
            unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
        }
    }

    fn read64(&mut self, offset: MmioOffset) -> u64 {
        match self.address(offset, 8) {
            // SAFETY: as in `read32` (GGTT entries are 64-bit).
            Some(addr) => unsafe { core::ptr::read_volatile(addr as *const u64) },
            None => u64::MAX,
        }
    }

    fn write64(&mut self, offset: MmioOffset, value: u64) {
        if let Some(addr) = self.address(offset, 8) {
            // SAFETY: as in `write32`.
            unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
        }
    }

    fn config_read32(&mut self, offset: u16) -> u32 {
        self.config.read32(self.bdf, offset)
    }

    fn config_write32(&mut self, offset: u16, value: u32) {
        self.config.write32(self.bdf, offset, value);
    }

    fn now_ns(&mut self) -> u64 {
        crate::time::nanos_since_boot()
    }
}

/// The GPU the vGPUs share.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // reason: one instance for the monitor's life; boxing buys nothing
pub enum GpuDevice {
    /// The software Gen9 model (no supported Intel GPU found). On the heap:
    /// its per-context register files make it tens of KiB, too much to move
    /// around the monitor's stack.
    Software(Box<SimGpu<GpuMemory>>),
    /// A real Gen9 GT2 GPU.
    Intel {
        gpu: IntelGen9<Bar0, GpuMemory>,
        family: &'static str,
        device: u16,
    },
}

impl GpuDevice {
    /// The backend every vGPU submits through.
    pub fn backend(&mut self) -> &mut dyn Backend {
        match self {
            GpuDevice::Software(sim) => &mut **sim,
            GpuDevice::Intel { gpu, .. } => gpu,
        }
    }

    /// Short name for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            GpuDevice::Software(_) => "software-gen9",
            GpuDevice::Intel { .. } => "intel-gen9",
        }
    }

    /// The memory the GPU reaches.
    pub fn memory(&self) -> &GpuMemory {
        match self {
            GpuDevice::Software(sim) => sim.mem(),
            GpuDevice::Intel { gpu, .. } => gpu.mem(),
        }
    }

    /// The memory the GPU reaches, for writing (guests' CPU writes).
    pub fn memory_mut(&mut self) -> &mut GpuMemory {
        match self {
            GpuDevice::Software(sim) => sim.mem_mut(),
            GpuDevice::Intel { gpu, .. } => gpu.mem_mut(),
        }
    }
}

/// The scanner's shadow buffers (about 1.3 MiB): a static, because the
/// monitor's stacks are far smaller. The manager holds its lock for good.
static GATE: spin::Mutex<ScanGate> = spin::Mutex::new(ScanGate::new());

/// One vGPU with the memory its guest owns.
#[derive(Debug)]
pub struct HostedVgpu {
    pub vgpu: Vgpu,
    pub partition: Partition,
    /// The guest's pages: guest page -> host frame.
    pub memory: FrameRuns<4>,
    /// Its shadow PPGTT pool: [`pool_frames`]`(budget)` frames,
    /// the monitor's memory given to this vGPU's shadow tables alone (no
    /// guest maps it: it is in no guest's RAM, so no GGTT entry, guest
    /// page table or shadow leaf can name it).
    pub ppgtt_pool: PhysAddr,
    /// The budget, in shadow table pages.
    pub ppgtt_budget: usize,
}

impl HostedVgpu {
    /// A vGPU on `partition` with guest `memory`, its shadow PPGTT pool
    /// of `budget` table pages freshly allocated and enabled. On an error
    /// the frames of `memory` are released too (the partition is the
    /// caller's).
    fn new(
        device: &mut GpuDevice,
        frames: &mut FrameAllocator,
        partition: Partition,
        memory: FrameRuns<4>,
        budget: usize,
    ) -> Result<HostedVgpu, SetupError> {
        let pool = match device.memory_mut().allocate(frames, pool_frames(budget), 1) {
            Ok(pool) => pool,
            Err(e) => {
                let _ = device.memory_mut().release(frames, &memory);
                return Err(SetupError::Memory(e));
            }
        };
        let mut hosted = HostedVgpu {
            vgpu: Vgpu::new(&partition),
            partition,
            memory,
            ppgtt_pool: pool,
            ppgtt_budget: budget,
        };
        if let Err(e) = hosted.enable_ppgtt(device.backend()) {
            let _ = device
                .memory_mut()
                .release_run(frames, pool, pool_frames(budget));
            let _ = device.memory_mut().release(frames, &hosted.memory);
            return Err(SetupError::Ppgtt(e));
        }
        Ok(hosted)
    }

    /// Gives its vGPU (a new one, or one just restored) shadow PPGTTs
    /// over its pool.
    pub fn enable_ppgtt(&mut self, backend: &mut dyn Backend) -> Result<(), ShadowError> {
        self.vgpu
            .enable_ppgtt(self.ppgtt_pool.frame(), self.ppgtt_budget, backend)
    }
}

/// The scheduler serves the manager's vGPUs.
impl AsMut<Vgpu> for HostedVgpu {
    fn as_mut(&mut self) -> &mut Vgpu {
        &mut self.vgpu
    }
}

/// ... which the manager keeps boxed.
impl AsMut<Vgpu> for Box<HostedVgpu> {
    fn as_mut(&mut self) -> &mut Vgpu {
        &mut self.vgpu
    }
}

/// Why [`VgpuManager::wait_idle`] returned before the vGPU was idle.
#[derive(Debug, Clone, Copy)]
pub enum WaitError {
    /// No vGPU at that index (a monitor bug).
    NoVgpu,
    /// The vGPU stopped (its guest's fault, or its GPU work faulted).
    Failed(gpu::vgpu::FailReason),
    /// Its work did not end within the time given.
    Timeout { us: u64 },
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NoVgpu => f.write_str("no such vGPU (monitor bug)"),
            WaitError::Failed(r) => write!(f, "the vGPU stopped: {r}"),
            WaitError::Timeout { us } => {
                write!(f, "its GPU work did not end within {us} us")
            }
        }
    }
}

/// What a vGPU used of the GPU ([`VgpuManager::gpu_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuUse {
    /// Engine time of its submissions, all engines, in microseconds.
    pub busy_us: u64,
    /// Its submissions that ended.
    pub submissions: u64,
    /// Its thousandths of the engine time every vGPU used.
    pub share_permille: u32,
    /// Per engine (`Engine::ALL` order): its engine time in microseconds,
    /// and its thousandths of what every vGPU used of that engine.
    pub engines: [(u64, u32); Engine::COUNT],
}

/// The manager.
#[derive(Debug)]
pub struct VgpuManager {
    pub device: GpuDevice,
    pub partitions: PartitionAllocator,
    /// Boxed: a `Vgpu` (its shadow PPGTT tables inline) is about 13 KiB,
    /// too much for the monitor's stacks eight times over.
    pub vgpus: heapless::Vec<Box<HostedVgpu>, MAX_VGPUS>,
    /// The scanner every submission passes.
    pub gate: spin::MutexGuard<'static, ScanGate>,
    /// Whose turn it is on each engine, and the engine time each used.
    pub sched: Scheduler,
    /// The last monitor fault a dispatch met (logged once).
    last_fault: Option<gpu::vgpu::MonitorFault>,
    /// Next free page of the monitor's hidden slice.
    monitor_next: u64,
    /// Shadow PPGTT table pages each new vGPU gets (`ppgtt_budget=`).
    ppgtt_budget: usize,
}

/// Why the GPU could not be set up.
#[derive(Debug)]
pub enum SetupError {
    Memory(GpuMemoryError),
    Map(MapError),
    Partition(PartitionError),
    Sim(SimError),
    Backend(BackendError),
    /// The Intel GPU's BAR0 or BAR2 is missing or not memory.
    BadBars,
    /// The monitor's slice of GM is full.
    MonitorSliceFull,
    /// The manager was set up twice (a monitor bug).
    AlreadySetUp,
    /// A vGPU's shadow PPGTT pool could not be set up (a monitor bug:
    /// the pool is the monitor's own frames).
    Ppgtt(ShadowError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Memory(e) => write!(f, "GPU memory: {e}"),
            SetupError::Map(e) => write!(f, "mapping BAR0: {e}"),
            SetupError::Partition(e) => write!(f, "partitioning GM: {e}"),
            SetupError::Sim(e) => write!(f, "software GPU: {e}"),
            SetupError::Backend(e) => write!(f, "GPU initialisation: {e}"),
            SetupError::BadBars => {
                f.write_str("the Intel GPU's BAR0 (GTTMMADR) or BAR2 (GMADR) is not a memory BAR")
            }
            SetupError::MonitorSliceFull => {
                f.write_str("the monitor's slice of graphics memory is full")
            }
            SetupError::AlreadySetUp => f.write_str("the vGPU manager is already set up"),
            SetupError::Ppgtt(e) => write!(f, "a vGPU's shadow PPGTT pool: {e}"),
        }
    }
}

fn memory_bar(bar: Bar) -> Option<(u64, u64)> {
    match bar {
        Bar::Memory { address, size, .. } if address != 0 => Some((address, size)),
        _ => None,
    }
}

/// Gives a guest's memory (`pages` fresh frames) to the GPU and describes
/// it as guest pages from [`GUEST_MEMORY_FIRST_PAGE`].
pub fn guest_memory(
    gpu_mem: &mut GpuMemory,
    frames: &mut FrameAllocator,
    pages: u64,
) -> Result<FrameRuns<4>, SetupError> {
    let base = gpu_mem
        .allocate(frames, pages, 1)
        .map_err(SetupError::Memory)?;
    let mut runs = FrameRuns::new();
    let run = FrameRun {
        first_page: GuestPage::new(GUEST_MEMORY_FIRST_PAGE).map_err(|_| SetupError::BadBars)?,
        first_frame: base.frame(),
        count: pages,
    };
    // A fresh table has room for one run.
    let _ = runs.push(run);
    Ok(runs)
}

impl VgpuManager {
    /// Picks the backend and creates `count` vGPUs of `vgpu_type`, each
    /// with a shadow PPGTT pool of `ppgtt_budget` table pages (at most
    /// [`SHADOW_TABLES`]).
    pub fn bring_up(
        memory: &mut Memory,
        pci: &PciBus,
        count: u8,
        vgpu_type: VgpuType,
        ppgtt_budget: usize,
    ) -> Result<Self, SetupError> {
        let ppgtt_budget = ppgtt_budget.min(SHADOW_TABLES);
        let mut gpu_mem = GpuMemory::default();
        let mut guest_memories: heapless::Vec<FrameRuns<4>, MAX_VGPUS> = heapless::Vec::new();
        for _ in 0..count {
            let runs = guest_memory(&mut gpu_mem, &mut memory.frames, GUEST_MEMORY_PAGES)?;
            // `count` is at most MAX_VGPUS (checked by the command line).
            let _ = guest_memories.push(runs);
        }
        let intel = pci
            .devices
            .iter()
            .find_map(|d| gpu::device::supported(d.vendor, d.class, d.device).map(|s| (d, s)));
        let (mut device, layout) = match intel {
            Some((dev, supported)) => {
                let (bar0, bar0_size) = memory_bar(dev.bars[0]).ok_or(SetupError::BadBars)?;
                let (_, aperture) = memory_bar(dev.bars[2]).ok_or(SetupError::BadBars)?;
                let layout = GmLayout::new(aperture).map_err(SetupError::Partition)?;
                memory
                    .space
                    .map_mmio(&mut memory.frames, bar0, bar0_size)
                    .map_err(SetupError::Map)?;
                // Contexts (the monitor's and one per vGPU slot, on every
                // engine) go at the bottom of the monitor's hidden slice.
                let unset = EngineContext {
                    lrca: layout.hidden().base(),
                    image: PhysAddr::new(0).map_err(|_| SetupError::BadBars)?,
                };
                let mut contexts: ContextTable = [[unset; Engine::COUNT]; ContextId::COUNT];
                let mut offset = 0;
                for context in ContextId::all() {
                    for engine in Engine::ALL {
                        let pages = context_pages(engine);
                        let image = gpu_mem
                            .allocate(&mut memory.frames, pages, 1)
                            .map_err(SetupError::Memory)?;
                        let lrca = layout
                            .hidden()
                            .at(offset)
                            .ok_or(SetupError::MonitorSliceFull)?;
                        contexts[context.index()][engine.index()] = EngineContext { lrca, image };
                        offset += pages * PAGE_SIZE;
                    }
                }
                // Behind every GGTT entry without a mapping; never handed out.
                let scratch = gpu_mem
                    .allocate(&mut memory.frames, 1, 1)
                    .map_err(SetupError::Memory)?;
                let scratch =
                    PhysFrame::new(scratch.raw() / PAGE_SIZE).map_err(|_| SetupError::BadBars)?;
                let mut gpu = IntelGen9::new(
                    Bar0 {
                        base: bar0,
                        size: bar0_size,
                        config: pci.access,
                        bdf: dev.bdf,
                    },
                    gpu_mem,
                    contexts,
                    scratch,
                );
                // Init first: it points every GGTT entry at the scratch page.
                gpu.init().map_err(SetupError::Backend)?;
                let mut device = GpuDevice::Intel {
                    gpu,
                    family: supported.family,
                    device: supported.device,
                };
                for row in &contexts {
                    for (ctx, engine) in row.iter().zip(Engine::ALL) {
                        map_pages(device.backend(), ctx.lrca, ctx.image, context_pages(engine))?;
                    }
                }
                (device, layout)
            }
            None => {
                let table = gpu_mem
                    .allocate(&mut memory.frames, GGTT_TABLE_PAGES, 1)
                    .map_err(SetupError::Memory)?;
                let sim = SimGpu::new(gpu_mem, table).map_err(SetupError::Sim)?;
                (GpuDevice::Software(Box::new(sim)), GmLayout::DEFAULT)
            }
        };
        let used_by_contexts = match &device {
            GpuDevice::Intel { .. } => context_bytes(),
            GpuDevice::Software(_) => 0,
        };
        let mut partitions = PartitionAllocator::new(layout, PartitionAllocator::GVT_MONITOR_SHARE)
            .map_err(SetupError::Partition)?;
        let mut vgpus = heapless::Vec::new();
        for guest in guest_memories {
            let partition = partitions
                .allocate(vgpu_type)
                .map_err(SetupError::Partition)?;
            // Firmware may have left mappings there (a boot framebuffer).
            gpu::vgpu::scrub_partition(device.backend(), &partition);
            let hosted = HostedVgpu::new(
                &mut device,
                &mut memory.frames,
                partition,
                guest,
                ppgtt_budget,
            )?;
            // At most MAX_VGPUS, as the allocator would have refused more.
            let _ = vgpus.push(Box::new(hosted));
        }
        let gate = GATE.try_lock().ok_or(SetupError::AlreadySetUp)?;
        let mut manager = VgpuManager {
            device,
            partitions,
            vgpus,
            gate,
            sched: Scheduler::default(),
            last_fault: None,
            monitor_next: used_by_contexts,
            ppgtt_budget,
        };
        let pages = SHADOW_BYTES_PER_ENGINE * Engine::COUNT as u64 / PAGE_SIZE;
        let (area, _) = manager.monitor_pages(pages, &mut memory.frames)?;
        let area =
            HostGmRange::new(area, pages * PAGE_SIZE).map_err(|_| SetupError::MonitorSliceFull)?;
        if !manager.gate.place(area) {
            return Err(SetupError::MonitorSliceFull);
        }
        Ok(manager)
    }

    /// Reserves `pages` pages of the monitor's hidden slice, backed by fresh
    /// frames given to the GPU, and maps them in the host GGTT. Returns the
    /// GM address and the physical address of the first page.
    pub fn monitor_pages(
        &mut self,
        pages: u64,
        frames: &mut crate::mem::FrameAllocator,
    ) -> Result<(HostGm, PhysAddr), SetupError> {
        let hidden = self.partitions.monitor().hidden;
        if self.monitor_next + pages * PAGE_SIZE > hidden.len() {
            return Err(SetupError::MonitorSliceFull);
        }
        let gm = hidden
            .at(self.monitor_next)
            .ok_or(SetupError::MonitorSliceFull)?;
        let phys = match &mut self.device {
            GpuDevice::Software(sim) => sim.mem_mut().allocate(frames, pages, 1),
            GpuDevice::Intel { gpu, .. } => gpu.mem_mut().allocate(frames, pages, 1),
        }
        .map_err(SetupError::Memory)?;
        map_pages(self.device.backend(), gm, phys, pages)?;
        self.monitor_next += pages * PAGE_SIZE;
        Ok((gm, phys))
    }

    /// A new vGPU of `vgpu_type` with `pages` pages of fresh guest memory,
    /// on a partition of its own (scrubbed first); returns its index.
    pub fn add_vgpu(
        &mut self,
        frames: &mut FrameAllocator,
        vgpu_type: VgpuType,
        pages: u64,
    ) -> Result<usize, SetupError> {
        if self.vgpus.is_full() {
            return Err(SetupError::Partition(PartitionError::NoFreeSlot));
        }
        let partition = self
            .partitions
            .allocate(vgpu_type)
            .map_err(SetupError::Partition)?;
        gpu::vgpu::scrub_partition(self.device.backend(), &partition);
        let memory = match guest_memory(self.device.memory_mut(), frames, pages) {
            Ok(m) => m,
            Err(e) => {
                let _ = self.partitions.free(partition.id());
                return Err(e);
            }
        };
        // Nothing of the slot's earlier owner counts for the new vGPU.
        self.sched.forget(partition.id());
        self.gate
            .forget_writes(gpu::backend::ContextId::of_vgpu(partition.id()));
        let id = partition.id();
        let hosted = match HostedVgpu::new(
            &mut self.device,
            frames,
            partition,
            memory,
            self.ppgtt_budget,
        ) {
            Ok(h) => h,
            Err(e) => {
                let _ = self.partitions.free(id);
                return Err(e);
            }
        };
        // Not full: checked above.
        let _ = self.vgpus.push(Box::new(hosted));
        Ok(self.vgpus.len() - 1)
    }

    /// On the software GPU, makes work take `factor` times its model cost
    /// (`gpu_slowdown=`); hardware runs at its own speed.
    pub fn set_sim_slowdown(&mut self, factor: u32) {
        if let GpuDevice::Software(sim) = &mut self.device {
            sim.set_slowdown(factor);
            if factor > 1 {
                defmt::info!("report gpu_slowdown={=u32}", factor);
            }
        }
    }

    /// Runs the GPU on to `now_ns` (the TSC clock,
    /// [`crate::time::nanos_since_boot`]): ends and dispatches the vGPUs'
    /// work on every engine. A monitor fault a dispatch meets leaves that
    /// work queued; it is logged once.
    pub fn poll(&mut self, now_ns: u64) -> PollReport {
        let report = self.sched.poll(
            now_ns,
            self.device.backend(),
            &mut *self.gate,
            &mut self.vgpus,
        );
        let fault = report.monitor_fault.map(|(_, f)| f);
        if fault.is_some() && fault != self.last_fault {
            if let Some((id, f)) = report.monitor_fault {
                defmt::error!(
                    "gpu: dispatch for {} refused: {}",
                    defmt::Display2Format(&id),
                    defmt::Display2Format(&f)
                );
            }
        }
        self.last_fault = fault;
        report
    }

    /// Polls until vGPU `index` has nothing queued or running, for at most
    /// `timeout_us`: before a save (which refuses a busy vGPU), or where a
    /// caller needs its work done.
    pub fn wait_idle(&mut self, index: usize, timeout_us: u64) -> Result<(), WaitError> {
        let until = crate::time::micros_since_boot().saturating_add(timeout_us);
        loop {
            let v = &self.vgpus.get(index).ok_or(WaitError::NoVgpu)?.vgpu;
            if let VgpuState::Failed(r) = v.state() {
                // Its queue is dropped; what still runs ends by itself.
                if v.is_idle() {
                    return Err(WaitError::Failed(r));
                }
            } else if v.is_idle() {
                return Ok(());
            }
            if crate::time::micros_since_boot() > until {
                return Err(WaitError::Timeout { us: timeout_us });
            }
            self.poll(crate::time::nanos_since_boot());
        }
    }

    /// The scratch page of vGPU `id`'s shadow PPGTTs (the first frame of
    /// its pool), where every access its guest's tables aim outside its
    /// memory lands.
    fn scratch_page(&self, id: gpu::partition::VgpuId) -> Option<PhysAddr> {
        let hosted = self.vgpus.iter().find(|h| h.partition.id() == id)?;
        hosted
            .vgpu
            .shadows()
            .map(|s| s.tables().scratch_page().start())
    }

    /// Zeroes the first bytes of vGPU `id`'s scratch page (before a
    /// hostile attempt whose containment [`Self::scratch_written`] then
    /// sees).
    pub fn clear_scratch(&mut self, id: gpu::partition::VgpuId) {
        if let Some(at) = self.scratch_page(id) {
            let _ = self.device.memory_mut().write(at, &[0u8; 64]);
        }
    }

    /// Whether anything was written to the first bytes of vGPU `id`'s
    /// scratch page since [`Self::clear_scratch`].
    pub fn scratch_written(&self, id: gpu::partition::VgpuId) -> bool {
        let mut b = [0u8; 64];
        self.scratch_page(id)
            .is_some_and(|at| self.device.memory().read(at, &mut b).is_ok() && b != [0u8; 64])
    }

    /// Moves the write sets of vGPU `index`'s dispatched submissions from
    /// the gate into `log` (what a migration must treat as written).
    pub fn collect_writes(&mut self, index: usize, log: &mut crate::vm::guest::WriteLog) {
        let Some(hosted) = self.vgpus.get(index) else {
            return;
        };
        let context = hosted.vgpu.context();
        while let Some(set) = self.gate.take_write_set(context) {
            log.push(&set);
        }
    }

    /// What vGPU `id` used of the GPU so far, over all engines and per
    /// engine (the scheduler's accounts).
    pub fn gpu_use(&self, id: gpu::partition::VgpuId) -> GpuUse {
        let usage = self.sched.usage(id);
        GpuUse {
            busy_us: usage.busy_ns / 1000,
            submissions: usage.submissions,
            share_permille: self.sched.share_permille(id),
            engines: Engine::ALL.map(|e| {
                (
                    self.sched.engine_usage(id, e).busy_ns / 1000,
                    self.sched.engine_share_permille(id, e),
                )
            }),
        }
    }

    /// Logs vGPU `id`'s engine time and its share of what every vGPU used
    /// so far (`report vgpu_share`, README).
    pub fn report_share(&self, id: gpu::partition::VgpuId) {
        let u = self.gpu_use(id);
        let [rcs, bcs, vcs, vecs] = u.engines;
        defmt::info!(
            "report vgpu_share id={=u8} busy_us={=u64} submissions={=u64} share_permille={=u32} rcs_busy_us={=u64} rcs_share_permille={=u32} bcs_busy_us={=u64} bcs_share_permille={=u32} vcs_busy_us={=u64} vcs_share_permille={=u32} vecs_busy_us={=u64} vecs_share_permille={=u32}",
            id.raw(),
            u.busy_us,
            u.submissions,
            u.share_permille,
            rcs.0,
            rcs.1,
            bcs.0,
            bcs.1,
            vcs.0,
            vcs.1,
            vecs.0,
            vecs.1
        );
    }

    /// [`VgpuManager::report_share`] of every vGPU.
    pub fn report_shares(&self) {
        for hosted in &self.vgpus {
            self.report_share(hosted.partition.id());
        }
    }

    /// Tears vGPU `index` down: its GGTT entries and fences cleared, its
    /// partition free, its frames zeroed and returned. The vGPUs after it
    /// move down one index.
    pub fn remove_vgpu(&mut self, frames: &mut FrameAllocator, index: usize) {
        if index >= self.vgpus.len() {
            return;
        }
        let mut gone = self.vgpus.remove(index);
        // Its work still on an engine is abandoned (the reset releases its
        // contexts); the scheduler sees it gone at its next poll.
        gone.vgpu.reset(self.device.backend());
        self.sched.forget(gone.partition.id());
        let _ = self.partitions.free(gone.partition.id());
        // With its GGTT entries gone the GPU cannot reach the frames; with
        // its shadows released (the reset) no context root names its pool.
        if let Err(e) = self.device.memory_mut().release(frames, &gone.memory) {
            defmt::warn!("vgpu frames: {}", defmt::Display2Format(&e));
        }
        let pool_len = pool_frames(gone.ppgtt_budget);
        if let Err(e) = self
            .device
            .memory_mut()
            .release_run(frames, gone.ppgtt_pool, pool_len)
        {
            defmt::warn!("vgpu shadow pool: {}", defmt::Display2Format(&e));
        }
    }

    /// Logs the backend and the partition map.
    pub fn log_map(&self) {
        match &self.device {
            GpuDevice::Software(_) => {
                defmt::info!("gpu: backend software-gen9 (no supported Intel GPU on PCI)")
            }
            GpuDevice::Intel { family, device, .. } => {
                defmt::info!(
                    "gpu: backend intel-gen9, {=str} [8086:{=u16:04x}]",
                    family,
                    device
                )
            }
        }
        let layout = self.partitions.layout();
        let monitor = self.partitions.monitor();
        defmt::info!(
            "gpu: GM aperture {=u64} MiB + hidden {=u64} MiB; monitor aperture {} hidden {} fences {=u32}..{=u32}",
            layout.aperture().len() >> 20,
            layout.hidden().len() >> 20,
            defmt::Display2Format(&monitor.aperture),
            defmt::Display2Format(&monitor.hidden),
            monitor.fences.first(),
            monitor.fences.first() + monitor.fences.count()
        );
        defmt::info!(
            "gpu: {=u64} KiB of monitor frames reachable by the GPU",
            self.device.memory().bytes() >> 10
        );
        defmt::info!(
            "report gpu_backend={=str} vgpus={=usize}",
            self.device.name(),
            self.vgpus.len()
        );
        for hosted in &self.vgpus {
            let p = &hosted.partition;
            defmt::info!("vgpu {}", defmt::Display2Format(p));
            defmt::info!(
                "report vgpu id={=u8} type={=str} aperture={=u64:#x}+{=u64:#x} hidden={=u64:#x}+{=u64:#x} fences={=u32}+{=u32} guest_pages={=u64:#x}+{=u64:#x}",
                p.id().raw(),
                p.vgpu_type().name(),
                p.aperture().base().raw(),
                p.aperture().len(),
                p.hidden().base().raw(),
                p.hidden().len(),
                p.fences().first(),
                p.fences().count(),
                GUEST_MEMORY_FIRST_PAGE,
                GUEST_MEMORY_PAGES
            );
        }
    }
}

/// Maps `pages` pages of GM from `gm` to frames from `phys` in the host
/// GGTT, with one flush for the run.
fn map_pages(
    backend: &mut dyn Backend,
    gm: HostGm,
    phys: PhysAddr,
    pages: u64,
) -> Result<(), SetupError> {
    let mut pending: Option<GgttFlush> = None;
    for i in 0..pages {
        let index = HostGgttIndex::new(u64::from(gm.ggtt_index().raw()) + i)
            .map_err(|_| SetupError::MonitorSliceFull)?;
        let frame =
            PhysFrame::new(phys.frame().number() + i).map_err(|_| SetupError::MonitorSliceFull)?;
        let flush = backend.write_pte(index, HostPte::map(frame, PteFlags::NONE));
        if let Some(earlier) = pending.replace(flush) {
            earlier.ignore(); // the flush after the last entry covers it
        }
    }
    if let Some(last) = pending {
        backend.flush_ggtt(last);
    }
    Ok(())
}
