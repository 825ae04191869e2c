//! `Vgpu`: the guest's view of a virtual BAR0 (ARCHITECTURE.md "The vGPU and
//! its BAR0").
//!
//! The guest's BAR0 accesses are trapped by the kernel and handed to
//! [`Vgpu::mmio_read`] / [`Vgpu::mmio_write`]. Each register has a policy
//! ([`RegPolicy`], from [`Vgpu::policy`]):
//! * *emulated*: the vGPU keeps the value (interrupt masks, HWS address,
//!   MI_MODE, PVINFO display_ready...), nothing reaches hardware;
//! * *read-only*: PVINFO ballooning fields, ACTHD; writes are guest faults;
//! * *virtualized*: a handler acts (ring START/CTL/HEAD/TAIL, fences via the
//!   GM translation, forcewake request/ack, g2v notification, GGTT window,
//!   GDRST, and the execlist port);
//! * *rejected*: everything else.
//!
//! The vGPU offers its guest both submission interfaces of Gen9: the
//! legacy ring buffer (START, CTL, HEAD, TAIL) for simple guests, and
//! execlists ([`crate::execlist`]: GFX_MODE's run-list enable, ELSP,
//! the CSB and its pointer, the execlist status) as a Gen9 i915 uses
//! them, with each context in its own shadow PPGTT
//! ([`crate::ppgtt::shadow`], enabled per vGPU by
//! [`Vgpu::enable_ppgtt`]). An engine is in one mode at a time: a TAIL
//! write in execlist mode is a guest fault. Both feed the same queue
//! discipline, scanner and scheduler: an ELSP write reads each element's
//! context image, acquires (and syncs) its shadow PPGTT, and makes its
//! ring span the engine's next work; the dispatch of that span carries
//! the shadow's PML4 to the backend ([`Submission::with_ppgtt`]).
//!
//! Submission path: a TAIL write queues the new span of the guest ring on
//! its engine (the ring's GM range checked against the vGPU's slices
//! first) and yields [`MmioEffect::Queued`]; the guest never sees an error
//! because the engine is busy, its own earlier work or another vGPU's. The
//! monitor's scheduler ([`crate::sched`]) dispatches queued work when the
//! vGPU's turn on an idle engine comes: the span, as a [`RingSubmission`],
//! goes through a [`SubmissionGate`] (the command scanner, which copies,
//! audits and remaps the commands into the engine's shadow and returns the
//! [`Submission`] that reaches the backend), then to the backend. The
//! guest's ring never reaches a backend.
//!
//! Queueing, not a shadow per vGPU: a vGPU keeps, per engine, the TAIL
//! positions written since its last dispatch (up to [`MAX_QUEUED_TAILS`];
//! beyond that the newest grows to the later TAIL), and nothing is scanned
//! before its dispatch. So one shadow per engine is enough, and it is
//! never rewritten while the engine may still read it: the gate writes it
//! only for a dispatch, which happens only on an idle engine. Each TAIL
//! write's span is dispatched on its own, in order, one at a time per
//! vGPU and engine, so a vGPU's submissions complete in the order it made
//! them and a burst of small TAIL writes never joins into one span larger
//! than the shadow ring. Because the scan happens at dispatch, a rejection
//! stops the vGPU then, not at the TAIL write: the guest sees it at its
//! next access (or when it waits for its GPU).
//!
//! Failsafe: any guest fault on the write path, a rejected submission or a
//! GPU fault in the vGPU's submission stops the vGPU with a recorded
//! [`FailReason`]; later writes and submissions are refused until
//! [`Vgpu::reset`], which the monitor calls or the guest asks for with a
//! full GDRST reset (the one write a stopped vGPU takes). Reads keep
//! working (so the guest can inspect). Nothing a guest does panics: every
//! path returns a [`VgpuError`].

use crate::addr::{GuestGgttIndex, GuestPage, PhysFrame, PAGE_SHIFT, PAGE_SIZE};
use crate::backend::{
    Backend, BackendError, ContextId, EngineStatus, GpuFault, Submission, SubmissionId,
};
use crate::engine::Engine;
use crate::execlist::{ContextRegisters, Descriptor, Element, Execlist};
use crate::ggtt::{GuestPte, HostPte, PteError};
use crate::partition::{ClaimedRange, GmTranslation, Partition, TranslateError, VgpuId, VgpuType};
use crate::ppgtt::shadow::{ContextShadows, ShadowError};
use crate::regs::{
    fence, forcewake, gdrst, pvinfo, ring, MmioOffset, GGTT_BAR0_OFFSET, GGTT_WINDOW_SIZE,
};
use core::fmt;

/// The guest's own memory: which host frame backs each guest page. The
/// kernel implements it over the guest's address space; [`FrameRuns`] is a
/// ready implementation for contiguous runs.
pub trait GuestMemoryMap {
    /// The frame backing `page`, if the page belongs to this guest.
    fn frame_of(&self, page: GuestPage) -> Option<PhysFrame>;
    /// The guest page a frame backs, if the frame belongs to this guest.
    fn page_of(&self, frame: PhysFrame) -> Option<GuestPage>;
}

/// `count` guest pages from `first_page` backed by frames from `first_frame`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRun {
    /// First guest page.
    pub first_page: GuestPage,
    /// Its frame.
    pub first_frame: PhysFrame,
    /// Pages in the run.
    pub count: u64,
}

/// A guest memory map made of up to `N` contiguous runs.
#[derive(Clone, Debug, Default)]
pub struct FrameRuns<const N: usize> {
    runs: heapless::Vec<FrameRun, N>,
}

impl<const N: usize> FrameRuns<N> {
    /// No pages.
    pub const fn new() -> Self {
        FrameRuns {
            runs: heapless::Vec::new(),
        }
    }
    /// Adds a run; returns it back if the table is full.
    pub fn push(&mut self, run: FrameRun) -> Result<(), FrameRun> {
        self.runs.push(run)
    }
    /// The runs, in the order they were added.
    pub fn runs(&self) -> &[FrameRun] {
        &self.runs
    }
}

impl<const N: usize> GuestMemoryMap for FrameRuns<N> {
    fn frame_of(&self, page: GuestPage) -> Option<PhysFrame> {
        self.runs.iter().find_map(|r| {
            let off = page.number().checked_sub(r.first_page.number())?;
            (off < r.count)
                .then(|| PhysFrame::new(r.first_frame.number() + off).ok())
                .flatten()
        })
    }
    fn page_of(&self, frame: PhysFrame) -> Option<GuestPage> {
        self.runs.iter().find_map(|r| {
            let off = frame.number().checked_sub(r.first_frame.number())?;
            (off < r.count)
                .then(|| GuestPage::new(r.first_page.number() + off).ok())
                .flatten()
        })
    }
}

/// Width of a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessSize {
    /// 32-bit access.
    Dword,
    /// 64-bit access.
    Qword,
}

/// What a register does for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegPolicy {
    /// The vGPU stores the value; hardware never sees it.
    Emulated,
    /// Reads only; a write is a guest fault.
    ReadOnly,
    /// A handler gives the register its meaning.
    Virtualized(Handler),
    /// Any access is a guest fault.
    Rejected,
}

/// The handlers of virtualized registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// RING_TAIL: submits the new span.
    RingTail(Engine),
    /// RING_HEAD: guest may reposition an idle ring.
    RingHead(Engine),
    /// RING_START: guest GM of the ring, checked at submission.
    RingStart(Engine),
    /// RING_CTL: enable and size.
    RingCtl(Engine),
    /// A guest fence register (index, high half).
    Fence { index: u32, high: bool },
    /// Forcewake request of a domain (kept virtual: the monitor holds
    /// forcewake itself).
    ForcewakeRequest(forcewake::Domain),
    /// Forcewake ack: mirrors the request.
    ForcewakeAck(forcewake::Domain),
    /// PVINFO g2v_notify.
    G2vNotify,
    /// PVINFO read-only fields (ballooning info).
    Pvinfo,
    /// The GGTT window at BAR0 + 8 MiB.
    Ggtt,
    /// ELSP: the execlist submit port.
    Elsp(Engine),
    /// GFX_MODE: the run-list enable.
    GfxMode(Engine),
    /// The CSB pointer: the guest moves its read pointer.
    CsbPtr(Engine),
    /// The CSB entries and the execlist status: read only.
    ExeclistStatus(Engine),
    /// GDRST: a full reset of the vGPU ([`Vgpu::mmio_write`]).
    Reset,
}

/// Faults a guest causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFault {
    /// Offset beyond BAR0.
    OutsideBar { offset: u32 },
    /// Register the vGPU does not expose.
    RejectedRegister { offset: u32 },
    /// Write to a read-only register.
    ReadOnlyRegister { offset: u32 },
    /// Misaligned access or wrong width.
    BadAccess { offset: u32 },
    /// GGTT write/read outside the vGPU's slices.
    GgttOutsideSlices { index: u32 },
    /// Malformed PTE.
    BadPte(PteError),
    /// PTE naming a page that is not the guest's.
    ForeignPage { page: u64 },
    /// Ring (START + size) outside the vGPU's slices.
    RingOutsideSlices {
        engine: Engine,
        error: TranslateError,
    },
    /// TAIL/HEAD beyond the ring size or misaligned.
    BadRingOffset { engine: Engine, value: u32 },
    /// HEAD written while the ring has work in flight.
    RingBusy { engine: Engine },
    /// Fence register beyond the guest's count.
    FenceNotOwned { index: u32 },
    /// Fence range outside the vGPU's slices.
    FenceOutsideSlices { index: u32, error: TranslateError },
    /// Unknown g2v notification.
    BadNotification { value: u32 },
    /// An ELSP submission the vGPU refuses (see [`crate::execlist`]).
    BadSubmission {
        engine: Engine,
        reason: &'static str,
    },
    /// A context image or its ring outside the vGPU's slices.
    ContextOutsideSlices {
        engine: Engine,
        error: TranslateError,
    },
    /// A submission interface used in the other mode (TAIL in execlist
    /// mode, ELSP without it), or execlists turned off with work held.
    WrongMode { engine: Engine },
    /// The context's PPGTT could not be shadowed (the guest's doing).
    Ppgtt(ShadowError),
    /// A GDRST request for engine domains alone (only the full reset is
    /// offered).
    PartialReset { value: u32 },
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFault::OutsideBar { offset } => {
                write!(f, "access at BAR0+{offset:#x} is outside BAR0")
            }
            GuestFault::RejectedRegister { offset } => {
                write!(f, "register BAR0+{offset:#x} is not available to a vGPU")
            }
            GuestFault::ReadOnlyRegister { offset } => {
                write!(f, "register BAR0+{offset:#x} is read-only")
            }
            GuestFault::BadAccess { offset } => {
                write!(f, "misaligned or wrong-width access at BAR0+{offset:#x}")
            }
            GuestFault::GgttOutsideSlices { index } => {
                write!(f, "GGTT entry {index:#x} is outside the vGPU's slices")
            }
            GuestFault::BadPte(e) => write!(f, "bad GGTT entry: {e}"),
            GuestFault::ForeignPage { page } => {
                write!(
                    f,
                    "GGTT entry names page {page:#x}, which is not the guest's"
                )
            }
            GuestFault::RingOutsideSlices { engine, error } => {
                write!(f, "{engine} ring: {error}")
            }
            GuestFault::BadRingOffset { engine, value } => {
                write!(
                    f,
                    "{engine} ring offset {value:#x} is outside the ring or misaligned"
                )
            }
            GuestFault::RingBusy { engine } => {
                write!(f, "{engine} ring HEAD written while commands are in flight")
            }
            GuestFault::FenceNotOwned { index } => write!(f, "fence {index} is not the vGPU's"),
            GuestFault::FenceOutsideSlices { index, error } => write!(f, "fence {index}: {error}"),
            GuestFault::BadNotification { value } => {
                write!(f, "unknown g2v notification {value}")
            }
            GuestFault::BadSubmission { engine, reason } => {
                write!(f, "{engine} execlist submission refused: {reason}")
            }
            GuestFault::ContextOutsideSlices { engine, error } => {
                write!(f, "{engine} context image or ring: {error}")
            }
            GuestFault::WrongMode { engine } => write!(
                f,
                "{engine}: ring TAIL in execlist mode, ELSP without it, or execlists \
                 turned off with work held"
            ),
            GuestFault::Ppgtt(e) => write!(f, "PPGTT: {e}"),
            GuestFault::PartialReset { value } => write!(
                f,
                "GDRST {value:#x} resets engine domains alone; only the full reset (bit 0) is offered"
            ),
        }
    }
}

/// The scanner's verdict on a submission it refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateRejection {
    /// Engine of the submission.
    pub engine: Engine,
    /// Byte offset of the offending command (in the ring or batch).
    pub offset: u32,
    /// Its header dword.
    pub header: u32,
    /// Why.
    pub reason: &'static str,
}

impl fmt::Display for GateRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} command {:#010x} at offset {:#x} rejected: {}",
            self.engine, self.header, self.offset, self.reason
        )
    }
}

/// Why a vGPU was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// A guest fault on the write path.
    Guest(GuestFault),
    /// The scanner refused a submission.
    Rejected(GateRejection),
    /// The GPU faulted while running the vGPU's work.
    Gpu(GpuFault),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Guest(g) => write!(f, "guest fault: {g}"),
            FailReason::Rejected(r) => write!(f, "submission rejected: {r}"),
            FailReason::Gpu(g) => write!(f, "GPU fault: {g}"),
        }
    }
}

/// Monitor-side failures (bugs or hardware trouble, not the guest's doing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorFault {
    /// The backend refused.
    Backend(BackendError),
    /// The gate returned a submission for another engine or context.
    GateMismatch,
    /// A host GGTT entry in the vGPU's slices names a frame the guest does
    /// not own.
    GgttInconsistent { index: u32 },
    /// The shadow PPGTT failed on the monitor's side (memory, pool).
    Ppgtt(ShadowError),
    /// A context's shadow PPGTT was not acquired before its dispatch.
    PpgttNotAcquired,
}

impl fmt::Display for MonitorFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorFault::Backend(e) => write!(f, "backend: {e}"),
            MonitorFault::GateMismatch => {
                f.write_str("submission gate returned work for another engine or context")
            }
            MonitorFault::GgttInconsistent { index } => {
                write!(
                    f,
                    "host GGTT entry {index:#x} maps a frame the guest does not own"
                )
            }
            MonitorFault::Ppgtt(e) => write!(f, "shadow PPGTT: {e}"),
            MonitorFault::PpgttNotAcquired => {
                f.write_str("a context's shadow PPGTT was not acquired before its dispatch")
            }
        }
    }
}

/// Every error of the vGPU, by who is to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgpuError {
    /// The guest did something wrong (on writes the vGPU is now stopped).
    Guest(GuestFault),
    /// The vGPU is stopped and refuses the operation.
    Stopped(FailReason),
    /// The scanner refused the submission; the vGPU is now stopped.
    Rejected(GateRejection),
    /// The monitor or the hardware failed.
    Monitor(MonitorFault),
}

impl VgpuError {
    /// True if the guest is to blame.
    pub const fn is_guest_fault(&self) -> bool {
        !matches!(self, VgpuError::Monitor(_))
    }
}

impl fmt::Display for VgpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VgpuError::Guest(g) => write!(f, "guest fault: {g}"),
            VgpuError::Stopped(r) => write!(f, "vGPU is stopped ({r})"),
            VgpuError::Rejected(r) => write!(f, "submission rejected: {r}"),
            VgpuError::Monitor(m) => write!(f, "monitor fault: {m}"),
        }
    }
}

/// Running or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgpuState {
    /// Accepting work.
    Running,
    /// Stopped until reset.
    Failed(FailReason),
}

/// What a trapped write asks the kernel to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a Queued effect waits for the scheduler: poll it so the work starts"]
pub enum MmioEffect {
    /// Nothing more.
    Done,
    /// A TAIL or ELSP write queued new commands on the engine: the scheduler
    /// ([`crate::sched::Scheduler::poll`]) runs them when the vGPU's turn
    /// on the engine comes; polling it now starts them on an idle engine.
    Queued(Engine),
}

/// Most TAIL writes a vGPU's engine queues before its next dispatch; a
/// later one extends the newest queued span. 32: a driver that keeps its
/// engine fed queues a few submissions ahead, and each stays its own
/// submission (its own preemption point) up to this many.
pub const MAX_QUEUED_TAILS: usize = 32;

/// A PPGTT context's address space, as the gate reads and runs its
/// PPGTT batches in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextPpgtt {
    /// The shadow PML4 the engine walks.
    pub root: PhysFrame,
    /// The first of the vGPU's shadow batch frames, which the shadow maps
    /// read-only at the reserved window
    /// ([`crate::ppgtt::WINDOW_BASE`]; [`crate::ppgtt::WINDOW_BATCH_PAGES`]
    /// contiguous frames).
    pub window: PhysFrame,
}

/// The span `[head, tail)` of a guest ring to dispatch, with the ring's GM
/// range claimed against the vGPU's slices. Only a dispatch makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSubmission {
    engine: Engine,
    context: ContextId,
    ring: ClaimedRange,
    head: u32,
    tail: u32,
    ppgtt: Option<ContextPpgtt>,
}

impl RingSubmission {
    /// Engine.
    pub const fn engine(&self) -> Engine {
        self.engine
    }
    /// The vGPU's engine context, which the admitted submission must run on.
    pub const fn context(&self) -> ContextId {
        self.context
    }
    /// The guest ring buffer (guest and host range).
    pub const fn ring(&self) -> ClaimedRange {
        self.ring
    }
    /// First byte of the new commands (offset in the ring).
    pub const fn head(&self) -> u32 {
        self.head
    }
    /// One past the last byte (offset in the ring; may be below `head` when
    /// the span wraps).
    pub const fn tail(&self) -> u32 {
        self.tail
    }
    /// Whether the span runs in a PPGTT context (an execlist element's)
    /// rather than a GGTT one (a legacy ring's).
    pub const fn ppgtt(&self) -> bool {
        self.ppgtt.is_some()
    }
    /// The PPGTT of the span's context, if it runs in one.
    pub const fn context_ppgtt(&self) -> Option<ContextPpgtt> {
        self.ppgtt
    }
}

/// The scanner's seat between a TAIL write and the backend: turns the
/// guest's ring span into what the engine may execute (a shadow copy,
/// audited and remapped through `translation`) or refuses it.
pub trait SubmissionGate {
    /// Admits or rejects `request`.
    fn admit(
        &mut self,
        translation: &GmTranslation,
        request: &RingSubmission,
        backend: &mut dyn Backend,
    ) -> Result<Submission, GateRejection>;
}

/// One guest ring's registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingState {
    /// RING_START as written (guest GM, page aligned).
    pub start: u32,
    /// RING_CTL as written.
    pub ctl: u32,
    /// RING_HEAD as the guest sees it (advances on completion).
    pub head: u32,
    /// RING_TAIL as written.
    pub tail: u32,
}

impl RingState {
    fn enabled(&self) -> bool {
        self.ctl & ring::CTL_ENABLE != 0
    }
    fn size(&self) -> u32 {
        (((self.ctl & ring::CTL_SIZE_MASK) >> PAGE_SHIFT) + 1) * PAGE_SIZE as u32
    }
}

/// What a BAR0 load the vGPU refuses returns to a guest (the kernel loads
/// it for [`Vgpu::mmio_read`]'s guest faults): all ones, as a PCI read
/// nobody answers (a master abort). A GGTT entry never reads so (all ones
/// sets its reserved bits), so a guest can tell a refused GGTT read.
pub const REFUSED_READ: u64 = u64::MAX;

/// Most guest fences a vGPU type grants.
pub const MAX_GUEST_FENCES: usize = 16;
/// Most emulated registers a vGPU stores.
pub const MAX_EMULATED_REGS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    id: SubmissionId,
    tail: u32,
}

/// A virtual GPU. Not `Clone`: its shadow PPGTT owns frames.
#[derive(Debug)]
pub struct Vgpu {
    id: VgpuId,
    vgpu_type: VgpuType,
    translation: GmTranslation,
    pub(crate) host_fences: crate::partition::FenceRange,
    pub(crate) rings: [RingState; Engine::COUNT],
    /// Offset up to which commands were dispatched per ring.
    pub(crate) dispatched: [u32; Engine::COUNT],
    /// TAIL positions written since, in order: each ends one span to
    /// dispatch.
    queued: [heapless::Deque<u32, MAX_QUEUED_TAILS>; Engine::COUNT],
    in_flight: [Option<InFlight>; Engine::COUNT],
    pub(crate) fences: [(u32, u32); MAX_GUEST_FENCES],
    pub(crate) forcewake: [u32; 3],
    pub(crate) emulated: heapless::LinearMap<u32, u32, MAX_EMULATED_REGS>,
    pub(crate) state: VgpuState,
    notifications: u32,
    /// vgt_id shown in PVINFO (kept across migration).
    pub(crate) vgt_id: u32,
    /// GGTT blocks the guest has written an entry of (see [`GgttBlocks`]).
    ggtt_written: GgttBlocks,
    /// Each engine's execlist port.
    pub(crate) execlists: [Execlist; Engine::COUNT],
    /// The shadow PPGTTs of its execlist contexts, once enabled.
    shadow: Option<VgpuShadows>,
}

/// Shadow table pages a vGPU's pool provides (its budget may be lower):
/// 64 cover about 120 MiB mapped in 4 KiB pages.
pub const SHADOW_TABLES: usize = 64;
/// Distinct PPGTT roots (guest contexts' address spaces) a vGPU keeps
/// shadows of at once.
pub const SHADOW_ROOTS: usize = 8;
/// A vGPU's shadow PPGTTs.
pub type VgpuShadows = ContextShadows<SHADOW_TABLES, SHADOW_ROOTS>;

/// One bit per block of [`GgttBlocks::ENTRIES`] guest GGTT entries: set
/// once the guest writes any entry of the block. The partition's entries
/// start invalid ([`scrub_partition`]) and only the guest's writes (or a
/// restore's replay of them) change them, so a clear block holds no
/// mapping and save need not read it: over real MMIO each read is a bus
/// round trip, and a large vGPU has up to 640 Ki entries, almost all of
/// them never written. 256 bytes cover the 4 GiB GM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GgttBlocks([u64; GgttBlocks::WORDS]);

impl GgttBlocks {
    /// Entries per block (2 MiB of GM).
    const ENTRIES: u64 = 512;
    const WORDS: usize = (crate::addr::GM_SIZE / 4096 / Self::ENTRIES / 64) as usize;
    const NONE: GgttBlocks = GgttBlocks([0; Self::WORDS]);

    fn mark(&mut self, index: GuestGgttIndex) {
        let block = u64::from(index.raw()) / Self::ENTRIES;
        if let Some(w) = self.0.get_mut((block / 64) as usize) {
            *w |= 1 << (block % 64);
        }
    }

    /// Whether the block holding `index` may hold a mapping.
    pub(crate) fn written(&self, index: GuestGgttIndex) -> bool {
        let block = u64::from(index.raw()) / Self::ENTRIES;
        self.0
            .get((block / 64) as usize)
            .is_some_and(|w| w >> (block % 64) & 1 == 1)
    }
}

/// The scheduler serves slices of anything that holds a vGPU; a plain
/// vGPU holds itself.
impl AsMut<Vgpu> for Vgpu {
    fn as_mut(&mut self) -> &mut Vgpu {
        self
    }
}

fn domain_index(d: forcewake::Domain) -> usize {
    match d {
        forcewake::Domain::Render => 0,
        forcewake::Domain::Media => 1,
        forcewake::Domain::Blitter => 2,
    }
}

impl Vgpu {
    /// A fresh vGPU on `partition`, showing the guest its host slices.
    pub fn new(partition: &Partition) -> Self {
        Self::with_translation(partition, GmTranslation::identity(partition))
    }

    /// A vGPU on `partition` with an explicit guest view (restore).
    pub(crate) fn with_translation(partition: &Partition, translation: GmTranslation) -> Self {
        Vgpu {
            id: partition.id(),
            vgpu_type: partition.vgpu_type(),
            translation,
            host_fences: partition.fences(),
            rings: [RingState::default(); Engine::COUNT],
            dispatched: [0; Engine::COUNT],
            queued: core::array::from_fn(|_| heapless::Deque::new()),
            in_flight: [None; Engine::COUNT],
            fences: [(0, 0); MAX_GUEST_FENCES],
            forcewake: [0; 3],
            emulated: heapless::LinearMap::new(),
            state: VgpuState::Running,
            notifications: 0,
            vgt_id: u32::from(partition.id().raw()),
            ggtt_written: GgttBlocks::NONE,
            execlists: [Execlist::new(); Engine::COUNT],
            shadow: None,
        }
    }

    /// Gives the vGPU shadow PPGTTs over the pool at frame `pool`
    /// ([`crate::ppgtt::shadow::pool_frames`]`(budget)` frames the monitor
    /// gives this vGPU alone: scratch, the reserved window's tables and
    /// shadow batches, then `budget` table pages, `budget` at most
    /// [`SHADOW_TABLES`]): without them, an execlist submission is refused.
    pub fn enable_ppgtt(
        &mut self,
        pool: PhysFrame,
        budget: usize,
        backend: &mut dyn Backend,
    ) -> Result<(), ShadowError> {
        self.shadow = Some(ContextShadows::new(pool, budget, backend.phys_mem())?);
        Ok(())
    }

    /// The vGPU's shadow PPGTTs, if enabled.
    pub fn shadows(&self) -> Option<&VgpuShadows> {
        self.shadow.as_ref()
    }

    /// An engine's execlist port.
    pub fn execlist(&self, engine: Engine) -> &Execlist {
        &self.execlists[engine.index()]
    }

    /// Slot id (also PVINFO vgt_id).
    pub const fn id(&self) -> VgpuId {
        self.id
    }
    /// The engine context every submission of this vGPU runs on (one per
    /// engine in the backend, the slot's own).
    pub const fn context(&self) -> ContextId {
        ContextId::of_vgpu(self.id)
    }
    /// The vGPU type.
    pub const fn vgpu_type(&self) -> VgpuType {
        self.vgpu_type
    }
    /// The one guest<->host GM translation (the scanner uses it).
    pub const fn translation(&self) -> &GmTranslation {
        &self.translation
    }
    /// Running or stopped.
    pub const fn state(&self) -> VgpuState {
        self.state
    }
    /// A ring's registers.
    pub const fn ring(&self, engine: Engine) -> RingState {
        self.rings[engine.index()]
    }
    /// g2v notifications received.
    pub const fn notifications(&self) -> u32 {
        self.notifications
    }
    /// Whether no submission is queued or running.
    pub fn is_idle(&self) -> bool {
        self.in_flight.iter().all(Option::is_none)
            && self.queued.iter().all(|q| q.is_empty())
            && !self.execlists.iter().any(Execlist::busy)
    }

    /// Whether `engine`'s current execlist element has work not yet
    /// dispatched.
    fn execlist_work(&self, engine: Engine) -> bool {
        self.execlists[engine.index()]
            .current()
            .is_some_and(|e| e.head != e.tail)
    }

    /// Spans queued on `engine`, waiting for dispatch.
    pub fn queued(&self, engine: Engine) -> usize {
        self.queued[engine.index()].len()
    }

    /// Whether the scheduler may dispatch on `engine` now: the vGPU runs,
    /// has work queued there, and none running there (one submission at a
    /// time per vGPU and engine).
    pub fn ready(&self, engine: Engine) -> bool {
        let i = engine.index();
        self.state == VgpuState::Running
            && self.in_flight[i].is_none()
            && (!self.queued[i].is_empty() || self.execlist_work(engine))
    }

    /// The vGPU's submission running on `engine`, if any.
    pub fn in_flight(&self, engine: Engine) -> Option<SubmissionId> {
        self.in_flight[engine.index()].map(|f| f.id)
    }

    /// Stops the vGPU with `reason` (keeps the first reason). Queued work
    /// is dropped (it would never be dispatched); work already running
    /// ends as it will.
    pub fn fail(&mut self, reason: FailReason) {
        if self.state == VgpuState::Running {
            self.state = VgpuState::Failed(reason);
            self.queued.iter_mut().for_each(heapless::Deque::clear);
            for x in &mut self.execlists {
                let mut released = heapless::Vec::new();
                x.clear(&mut released);
                if let Some(s) = self.shadow.as_mut() {
                    released.iter().for_each(|e| s.release(e.pml4));
                }
            }
        }
    }

    /// The policy of the register at BAR0 `offset`.
    pub fn policy(offset: MmioOffset) -> RegPolicy {
        let raw = offset.raw();
        if (GGTT_BAR0_OFFSET..GGTT_BAR0_OFFSET + GGTT_WINDOW_SIZE).contains(&raw) {
            return RegPolicy::Virtualized(Handler::Ggtt);
        }
        if (pvinfo::PAGE..pvinfo::PAGE + pvinfo::SIZE).contains(&raw) {
            return match raw - pvinfo::PAGE {
                pvinfo::G2V_NOTIFY => RegPolicy::Virtualized(Handler::G2vNotify),
                pvinfo::DISPLAY_READY | pvinfo::EXECLIST_DESC_LO | pvinfo::EXECLIST_DESC_HI => {
                    RegPolicy::Emulated
                }
                // The root a PPGTT notification names (GVT-g keeps them
                // as the guest wrote them).
                r if (pvinfo::PDP0_LO..pvinfo::PDP_END).contains(&r) => RegPolicy::Emulated,
                _ => RegPolicy::Virtualized(Handler::Pvinfo),
            };
        }
        if let Some((index, high)) = fence::decode(raw) {
            return RegPolicy::Virtualized(Handler::Fence { index, high });
        }
        if offset == gdrst::OFFSET {
            return RegPolicy::Virtualized(Handler::Reset);
        }
        for d in forcewake::Domain::ALL {
            if d.request() == offset {
                return RegPolicy::Virtualized(Handler::ForcewakeRequest(d));
            }
            if d.ack() == offset {
                return RegPolicy::Virtualized(Handler::ForcewakeAck(d));
            }
        }
        if let Some((engine, rel)) = crate::regs::ring_register_of(offset) {
            return match rel {
                ring::TAIL => RegPolicy::Virtualized(Handler::RingTail(engine)),
                ring::HEAD => RegPolicy::Virtualized(Handler::RingHead(engine)),
                ring::START => RegPolicy::Virtualized(Handler::RingStart(engine)),
                ring::CTL => RegPolicy::Virtualized(Handler::RingCtl(engine)),
                ring::IMR | ring::HWS_PGA | ring::MI_MODE => RegPolicy::Emulated,
                ring::ACTHD => RegPolicy::ReadOnly,
                ring::ELSP => RegPolicy::Virtualized(Handler::Elsp(engine)),
                ring::MODE => RegPolicy::Virtualized(Handler::GfxMode(engine)),
                ring::CSB_PTR => RegPolicy::Virtualized(Handler::CsbPtr(engine)),
                ring::EXECLIST_STATUS_LO | ring::EXECLIST_STATUS_HI => {
                    RegPolicy::Virtualized(Handler::ExeclistStatus(engine))
                }
                r if (ring::CSB_BASE..ring::CSB_BASE + 8 * ring::CSB_ENTRIES).contains(&r) => {
                    RegPolicy::Virtualized(Handler::ExeclistStatus(engine))
                }
                _ => RegPolicy::Rejected,
            };
        }
        RegPolicy::Rejected
    }

    /// A trapped guest read of BAR0.
    pub fn mmio_read(
        &mut self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        offset: u32,
        size: AccessSize,
    ) -> Result<u64, VgpuError> {
        let reg =
            MmioOffset::new(offset).ok_or(VgpuError::Guest(GuestFault::OutsideBar { offset }))?;
        let policy = Self::policy(reg);
        let bad_access = VgpuError::Guest(GuestFault::BadAccess { offset });
        if let RegPolicy::Virtualized(Handler::Ggtt) = policy {
            if size != AccessSize::Qword || !offset.is_multiple_of(8) {
                return Err(bad_access);
            }
            let index = self.guest_ggtt_index(offset)?;
            return self.read_guest_pte(backend, mem, index).map(GuestPte::raw);
        }
        if !offset.is_multiple_of(4) {
            return Err(bad_access);
        }
        let lo = self.read_dword(reg, policy)?;
        match size {
            AccessSize::Dword => Ok(u64::from(lo)),
            AccessSize::Qword => {
                let hi_reg = MmioOffset::new(offset + 4).ok_or(bad_access)?;
                let hi = self.read_dword(hi_reg, Self::policy(hi_reg))?;
                Ok(u64::from(lo) | (u64::from(hi) << 32))
            }
        }
    }

    fn read_dword(&self, reg: MmioOffset, policy: RegPolicy) -> Result<u32, VgpuError> {
        let offset = reg.raw();
        Ok(match policy {
            RegPolicy::Rejected => {
                return Err(VgpuError::Guest(GuestFault::RejectedRegister { offset }))
            }
            RegPolicy::Emulated => self.emulated.get(&offset).copied().unwrap_or(0),
            RegPolicy::ReadOnly => {
                // ACTHD: where the guest's head is.
                crate::regs::ring_register_of(reg)
                    .map(|(e, _)| self.rings[e.index()].head)
                    .unwrap_or(0)
            }
            RegPolicy::Virtualized(h) => match h {
                Handler::RingTail(e) => self.rings[e.index()].tail,
                Handler::RingHead(e) => self.rings[e.index()].head,
                Handler::RingStart(e) => self.rings[e.index()].start,
                Handler::RingCtl(e) => self.rings[e.index()].ctl,
                Handler::Fence { index, high } => {
                    let f = self
                        .fences
                        .get(index as usize)
                        .filter(|_| index < self.translation.guest_view().fences)
                        .ok_or(VgpuError::Guest(GuestFault::FenceNotOwned { index }))?;
                    if high {
                        f.1
                    } else {
                        f.0
                    }
                }
                Handler::ForcewakeRequest(d) | Handler::ForcewakeAck(d) => {
                    self.forcewake[domain_index(d)] & 0xffff
                }
                // The reset completes at once.
                Handler::G2vNotify | Handler::Reset => 0,
                Handler::Pvinfo => self.pvinfo_dword(offset - pvinfo::PAGE),
                Handler::Ggtt => return Err(VgpuError::Guest(GuestFault::BadAccess { offset })),
                Handler::Elsp(e)
                | Handler::GfxMode(e)
                | Handler::CsbPtr(e)
                | Handler::ExeclistStatus(e) => {
                    let rel = offset - e.mmio_base();
                    self.execlists[e.index()].read(rel).unwrap_or(0)
                }
            },
        })
    }

    /// The PVINFO page as this vGPU's guest sees it.
    pub fn pvinfo_dword(&self, rel: u32) -> u32 {
        let v = self.translation.guest_view();
        match rel {
            pvinfo::MAGIC_OFFSET => pvinfo::MAGIC as u32,
            r if r == pvinfo::MAGIC_OFFSET + 4 => (pvinfo::MAGIC >> 32) as u32,
            pvinfo::VERSION => {
                u32::from(pvinfo::VERSION_MAJOR) | (u32::from(pvinfo::VERSION_MINOR) << 16)
            }
            pvinfo::VGT_ID => self.vgt_id,
            pvinfo::APERTURE_BASE => v.aperture.base().raw() as u32,
            pvinfo::APERTURE_SIZE => v.aperture.len() as u32,
            pvinfo::HIDDEN_BASE => v.hidden.base().raw() as u32,
            pvinfo::HIDDEN_SIZE => v.hidden.len() as u32,
            pvinfo::FENCE_NUM => v.fences,
            _ => 0,
        }
    }

    fn guest_ggtt_index(&self, offset: u32) -> Result<GuestGgttIndex, VgpuError> {
        GuestGgttIndex::new(u64::from((offset - GGTT_BAR0_OFFSET) / 8))
            .map_err(|_| VgpuError::Guest(GuestFault::OutsideBar { offset }))
    }

    fn read_guest_pte(
        &self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        index: GuestGgttIndex,
    ) -> Result<GuestPte, VgpuError> {
        let host = self
            .translation
            .g2h_index(index)
            .map_err(|_| VgpuError::Guest(GuestFault::GgttOutsideSlices { index: index.raw() }))?;
        let pte = backend.read_pte(host);
        match pte.frame() {
            None => Ok(GuestPte::INVALID),
            Some(frame) => mem
                .page_of(frame)
                .map(|page| GuestPte::map(page, pte.flags()))
                .ok_or(VgpuError::Monitor(MonitorFault::GgttInconsistent {
                    index: host.raw(),
                })),
        }
    }

    /// A trapped guest write of BAR0. Guest faults stop the vGPU.
    pub fn mmio_write(
        &mut self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        offset: u32,
        size: AccessSize,
        value: u64,
    ) -> Result<MmioEffect, VgpuError> {
        if MmioOffset::new(offset) == Some(gdrst::OFFSET) {
            return self.write_reset(backend, size, value);
        }
        if let VgpuState::Failed(r) = self.state {
            return Err(VgpuError::Stopped(r));
        }
        let result = self.write_inner(backend, mem, offset, size, value);
        if let Err(VgpuError::Guest(g)) = result {
            self.fail(FailReason::Guest(g));
        }
        result
    }

    /// A GDRST write: with [`gdrst::FULL`], [`Vgpu::reset`], the stopped
    /// state lifted with the rest; 0 does nothing. It is accepted while
    /// the vGPU is stopped, as a guest driver resets a hung GPU to go on
    /// (GVT-g's `gdrst_mmio_write`). Lifting the stop is safe because the
    /// reset leaves nothing of what the guest had set up: its rings, GGTT
    /// entries, fences and engine contexts are gone, and every later
    /// submission is scanned as before. Engine domains alone are refused:
    /// resetting one engine of a vGPU would have to stop its work on a
    /// shared engine without touching the others'.
    fn write_reset(
        &mut self,
        backend: &mut dyn Backend,
        size: AccessSize,
        value: u64,
    ) -> Result<MmioEffect, VgpuError> {
        let offset = gdrst::OFFSET.raw();
        let value = value as u32;
        let fault = if size != AccessSize::Dword {
            GuestFault::BadAccess { offset }
        } else if value & gdrst::FULL != 0 {
            self.reset(backend);
            return Ok(MmioEffect::Done);
        } else if value == 0 {
            return Ok(MmioEffect::Done);
        } else {
            GuestFault::PartialReset { value }
        };
        self.fail(FailReason::Guest(fault));
        Err(VgpuError::Guest(fault))
    }

    fn write_inner(
        &mut self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        offset: u32,
        size: AccessSize,
        value: u64,
    ) -> Result<MmioEffect, VgpuError> {
        let guest = VgpuError::Guest;
        let reg = MmioOffset::new(offset).ok_or(guest(GuestFault::OutsideBar { offset }))?;
        let policy = Self::policy(reg);
        if let RegPolicy::Virtualized(Handler::Ggtt) = policy {
            if size != AccessSize::Qword || !offset.is_multiple_of(8) {
                return Err(guest(GuestFault::BadAccess { offset }));
            }
            let index = self.guest_ggtt_index(offset)?;
            self.write_guest_pte(backend, mem, index, value)?;
            return Ok(MmioEffect::Done);
        }
        if !offset.is_multiple_of(4) {
            return Err(guest(GuestFault::BadAccess { offset }));
        }
        match size {
            AccessSize::Dword => self.write_dword(backend, mem, reg, policy, value as u32),
            AccessSize::Qword => {
                // Two dword writes, low first, as the bus splits them.
                let first = self.write_dword(backend, mem, reg, policy, value as u32)?;
                let hi_reg =
                    MmioOffset::new(offset + 4).ok_or(guest(GuestFault::BadAccess { offset }))?;
                let hi_policy = Self::policy(hi_reg);
                let second =
                    self.write_dword(backend, mem, hi_reg, hi_policy, (value >> 32) as u32)?;
                match (first, second) {
                    (MmioEffect::Done, e) | (e, MmioEffect::Done) => Ok(e),
                    _ => Err(guest(GuestFault::BadAccess { offset })),
                }
            }
        }
    }

    fn write_guest_pte(
        &mut self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        index: GuestGgttIndex,
        raw: u64,
    ) -> Result<(), VgpuError> {
        let guest = VgpuError::Guest;
        let host = self
            .translation
            .g2h_index(index)
            .map_err(|_| guest(GuestFault::GgttOutsideSlices { index: index.raw() }))?;
        let pte = GuestPte::parse(raw).map_err(|e| guest(GuestFault::BadPte(e)))?;
        let host_pte = match pte.page() {
            None => HostPte::INVALID,
            Some(page) => {
                let frame = mem.frame_of(page).ok_or(guest(GuestFault::ForeignPage {
                    page: page.number(),
                }))?;
                HostPte::map(frame, pte.flags())
            }
        };
        let flush = backend.write_pte(host, host_pte);
        backend.flush_ggtt(flush);
        self.ggtt_written.mark(index);
        Ok(())
    }

    fn write_dword(
        &mut self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        reg: MmioOffset,
        policy: RegPolicy,
        value: u32,
    ) -> Result<MmioEffect, VgpuError> {
        let offset = reg.raw();
        let guest = VgpuError::Guest;
        match policy {
            RegPolicy::Rejected => Err(guest(GuestFault::RejectedRegister { offset })),
            RegPolicy::ReadOnly => Err(guest(GuestFault::ReadOnlyRegister { offset })),
            RegPolicy::Emulated => {
                let rel = crate::regs::ring_register_of(reg).map(|(_, r)| r);
                let stored = if rel == Some(ring::MI_MODE) {
                    let old = self.emulated.get(&offset).copied().unwrap_or(0);
                    let mask = value >> 16;
                    (old & !mask) | (value & mask)
                } else {
                    value
                };
                // The policy table names fewer registers than the map holds.
                let _ = self.emulated.insert(offset, stored);
                Ok(MmioEffect::Done)
            }
            RegPolicy::Virtualized(h) => match h {
                Handler::RingTail(e) => self.write_tail(e, value),
                Handler::RingHead(e) => {
                    let r = &self.rings[e.index()];
                    if self.in_flight[e.index()].is_some() || !self.queued[e.index()].is_empty() {
                        return Err(guest(GuestFault::RingBusy { engine: e }));
                    }
                    let head = value & ring::OFFSET_MASK;
                    if head >= r.size() {
                        return Err(guest(GuestFault::BadRingOffset { engine: e, value }));
                    }
                    self.rings[e.index()].head = head;
                    self.rings[e.index()].tail = head;
                    self.dispatched[e.index()] = head;
                    Ok(MmioEffect::Done)
                }
                Handler::RingStart(e) => {
                    self.rings[e.index()].start = value & 0xffff_f000;
                    Ok(MmioEffect::Done)
                }
                Handler::RingCtl(e) => {
                    self.rings[e.index()].ctl = value & (ring::CTL_SIZE_MASK | ring::CTL_ENABLE);
                    Ok(MmioEffect::Done)
                }
                Handler::Fence { index, high } => {
                    self.write_fence(backend, index, high, value)?;
                    Ok(MmioEffect::Done)
                }
                Handler::ForcewakeRequest(d) => {
                    let slot = &mut self.forcewake[domain_index(d)];
                    let mask = value >> 16;
                    *slot = (*slot & !mask) | (value & mask);
                    Ok(MmioEffect::Done)
                }
                Handler::ForcewakeAck(_) | Handler::Pvinfo => {
                    Err(guest(GuestFault::ReadOnlyRegister { offset }))
                }
                Handler::G2vNotify => {
                    if !(pvinfo::G2V_FIRST..pvinfo::G2V_MAX).contains(&value) {
                        return Err(guest(GuestFault::BadNotification { value }));
                    }
                    self.notifications += 1;
                    Ok(MmioEffect::Done)
                }
                // Written before the failure check (`mmio_write`).
                Handler::Ggtt | Handler::Reset => Err(guest(GuestFault::BadAccess { offset })),
                Handler::Elsp(e) => {
                    if !self.execlists[e.index()].enabled {
                        return Err(guest(GuestFault::WrongMode { engine: e }));
                    }
                    match self.execlists[e.index()].write_port(value) {
                        Some(list) => self.submit_list(e, list, backend, mem),
                        None => Ok(MmioEffect::Done),
                    }
                }
                Handler::GfxMode(e) => {
                    let legacy_busy =
                        self.in_flight[e.index()].is_some() || !self.queued[e.index()].is_empty();
                    let enabling = value & (ring::MODE_RUN_LIST_ENABLE << 16) != 0
                        && value & ring::MODE_RUN_LIST_ENABLE != 0;
                    if enabling && legacy_busy {
                        return Err(guest(GuestFault::WrongMode { engine: e }));
                    }
                    self.execlists[e.index()]
                        .write_mode(value)
                        .map_err(|_| guest(GuestFault::WrongMode { engine: e }))?;
                    Ok(MmioEffect::Done)
                }
                Handler::CsbPtr(e) => {
                    self.execlists[e.index()].write_csb_ptr(value);
                    Ok(MmioEffect::Done)
                }
                Handler::ExeclistStatus(_) => Err(guest(GuestFault::ReadOnlyRegister { offset })),
            },
        }
    }

    /// An ELSP list: reads each valid element's context image, acquires
    /// its shadow PPGTT (synced now: the submission is the moment to
    /// validate), and hands the list to the engine's port.
    fn submit_list(
        &mut self,
        engine: Engine,
        list: [Descriptor; 2],
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
    ) -> Result<MmioEffect, VgpuError> {
        let refuse = |reason| VgpuError::Guest(GuestFault::BadSubmission { engine, reason });
        if !list[0].valid() {
            return Err(refuse("element 0 is not valid"));
        }
        let mut elements = [None, None];
        for (slot, desc) in elements.iter_mut().zip(list) {
            if desc.valid() {
                desc.check().map_err(refuse)?;
                *slot = Some(self.read_element(engine, desc, backend)?);
            }
        }
        let Some(shadow) = self.shadow.as_mut() else {
            return Err(refuse("no shadow PPGTT for this vGPU"));
        };
        let mut acquired: heapless::Vec<Element, 2> = heapless::Vec::new();
        for e in elements.iter().flatten() {
            if let Err(err) = shadow.acquire(e.pml4, mem, backend.phys_mem()) {
                acquired.iter().for_each(|a| shadow.release(a.pml4));
                return Err(if err.is_guest_fault() {
                    VgpuError::Guest(GuestFault::Ppgtt(err))
                } else {
                    VgpuError::Monitor(MonitorFault::Ppgtt(err))
                });
            }
            let _ = acquired.push(*e);
        }
        let i = engine.index();
        let in_flight = self.in_flight[i].is_some();
        let mut released = heapless::Vec::new();
        self.execlists[i].schedule_in(elements, in_flight, &mut released);
        if !in_flight {
            self.execlists[i].settle(&mut released);
        }
        self.retire_elements(&released, backend);
        Ok(if self.execlist_work(engine) {
            MmioEffect::Queued(engine)
        } else {
            MmioEffect::Done
        })
    }

    /// What the hardware reads of a context when it loads it: the ring
    /// registers and the PPGTT root from its image in the guest's GM.
    fn read_element(
        &self,
        engine: Engine,
        desc: Descriptor,
        backend: &mut dyn Backend,
    ) -> Result<Element, VgpuError> {
        use crate::execlist::lrc;
        let outside = |error| VgpuError::Guest(GuestFault::ContextOutsideSlices { engine, error });
        let state = self
            .translation
            .claim(desc.lrca() + lrc::STATE_PAGE, 4 * lrc::READ_DWORDS as u64)
            .map_err(outside)?;
        let mut bytes = [0u8; 4 * lrc::READ_DWORDS];
        backend
            .read_gm(state.host().base(), &mut bytes)
            .map_err(|_| {
                VgpuError::Guest(GuestFault::BadSubmission {
                    engine,
                    reason: "context image not mapped in the GGTT",
                })
            })?;
        let mut dwords = [0u32; lrc::READ_DWORDS];
        for (d, b) in dwords.iter_mut().zip(bytes.chunks_exact(4)) {
            *d = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let regs = ContextRegisters::parse(&dwords);
        let ring = self
            .translation
            .claim(u64::from(regs.start), u64::from(regs.ring_size()))
            .map_err(outside)?;
        let bad = |reason| VgpuError::Guest(GuestFault::BadSubmission { engine, reason });
        if regs.head >= regs.ring_size() || regs.tail >= regs.ring_size() {
            return Err(bad("ring head or tail outside the ring"));
        }
        if !regs.tail.is_multiple_of(8) {
            return Err(bad("ring tail not qword aligned"));
        }
        let pml4 = GuestPage::new(regs.pml4 >> PAGE_SHIFT)
            .ok()
            .filter(|_| regs.pml4.is_multiple_of(PAGE_SIZE))
            .ok_or(bad("PPGTT root beyond guest memory or unaligned"))?;
        Ok(Element {
            desc,
            state,
            ring,
            head: regs.head,
            tail: regs.tail,
            pml4,
        })
    }

    /// Elements the port let go: each one's RING_HEAD goes back into its
    /// context image (where its work stopped), and its shadow is released.
    fn retire_elements(&mut self, released: &[Element], backend: &mut dyn Backend) {
        use crate::execlist::lrc;
        for e in released {
            let at = e
                .state
                .host()
                .base()
                .checked_add(4 * (lrc::RING_HEAD as u64 + 1));
            if let Some(at) = at {
                // The image was read through this mapping at submission; a
                // guest that unmapped it since loses only its own head.
                let _ = backend.write_gm(at, &e.head.to_le_bytes());
            }
            if let Some(s) = self.shadow.as_mut() {
                s.release(e.pml4);
            }
        }
    }

    fn write_tail(&mut self, engine: Engine, value: u32) -> Result<MmioEffect, VgpuError> {
        let guest = VgpuError::Guest;
        let i = engine.index();
        if self.execlists[i].enabled {
            return Err(guest(GuestFault::WrongMode { engine }));
        }
        let r = self.rings[i];
        let tail = value & ring::OFFSET_MASK;
        if !tail.is_multiple_of(8) || tail >= r.size() {
            return Err(guest(GuestFault::BadRingOffset { engine, value }));
        }
        self.rings[i].tail = tail;
        if !r.enabled() {
            // A disabled ring consumes nothing: HEAD follows TAIL.
            self.queued[i].clear();
            self.dispatched[i] = tail;
            if self.in_flight[i].is_none() {
                self.rings[i].head = tail;
            }
            return Ok(MmioEffect::Done);
        }
        let last = self.queued[i].back().copied().unwrap_or(self.dispatched[i]);
        if tail == last {
            return Ok(MmioEffect::Done);
        }
        // Checked now, so that the guest learns at once; again at dispatch.
        self.claim_ring(engine)?;
        if let Err(tail) = self.queued[i].push_back(tail) {
            if let Some(newest) = self.queued[i].back_mut() {
                *newest = tail;
            }
        }
        Ok(MmioEffect::Queued(engine))
    }

    /// The guest ring of `engine` (START, CTL size), claimed against the
    /// vGPU's slices.
    fn claim_ring(&self, engine: Engine) -> Result<ClaimedRange, VgpuError> {
        let r = self.rings[engine.index()];
        self.translation
            .claim(u64::from(r.start), u64::from(r.size()))
            .map_err(|error| VgpuError::Guest(GuestFault::RingOutsideSlices { engine, error }))
    }

    pub(crate) fn write_fence(
        &mut self,
        backend: &mut dyn Backend,
        index: u32,
        high: bool,
        value: u32,
    ) -> Result<(), VgpuError> {
        let guest = VgpuError::Guest;
        let host_index = self
            .host_fences
            .host_fence(index)
            .filter(|_| (index as usize) < MAX_GUEST_FENCES)
            .ok_or(guest(GuestFault::FenceNotOwned { index }))?;
        let slot = &mut self.fences[index as usize];
        if high {
            slot.1 = value;
            return Ok(());
        }
        let hi = slot.1;
        if value & fence::VALID == 0 {
            slot.0 = value;
            backend.write_reg(fence::lo(host_index), 0);
            backend.write_reg(fence::hi(host_index), 0);
            return Ok(());
        }
        let start = u64::from(value & fence::PAGE_MASK);
        let end = u64::from(hi & fence::PAGE_MASK) + PAGE_SIZE;
        let claimed = self
            .translation
            .claim(start, end.saturating_sub(start))
            .map_err(|error| guest(GuestFault::FenceOutsideSlices { index, error }))?;
        self.fences[index as usize].0 = value;
        let host = claimed.host();
        let host_lo = host.base().raw() as u32 | (value & !fence::PAGE_MASK);
        let host_hi = (host.end_raw() - PAGE_SIZE) as u32 | (hi & !fence::PAGE_MASK);
        // Invalidate first, then program high, then low with valid (i915 order).
        backend.write_reg(fence::lo(host_index), 0);
        backend.write_reg(fence::hi(host_index), host_hi);
        backend.write_reg(fence::lo(host_index), host_lo);
        Ok(())
    }

    /// Dispatches the oldest queued span of `engine`: through `gate` (the
    /// scanner) to the backend. The scheduler calls it when the vGPU's
    /// turn on the idle engine comes; `Ok(None)` if nothing is queued.
    /// A rejection (or a ring now outside the slices) stops the vGPU; a
    /// monitor fault leaves the span queued.
    /// The span was queued by `ready_ns` at the latest: the backend may
    /// start it from then ([`Backend::submit_ready_since`]; `u64::MAX`:
    /// now).
    pub(crate) fn dispatch(
        &mut self,
        engine: Engine,
        backend: &mut dyn Backend,
        gate: &mut dyn SubmissionGate,
        ready_ns: u64,
    ) -> Result<Option<SubmissionId>, VgpuError> {
        if let VgpuState::Failed(r) = self.state {
            return Err(VgpuError::Stopped(r));
        }
        let i = engine.index();
        let element = self.execlists[i].current().copied();
        let (head, tail, ppgtt) = match element {
            Some(e) if self.execlists[i].enabled => {
                if e.head == e.tail {
                    return Ok(None);
                }
                let space = self
                    .shadow
                    .as_ref()
                    .and_then(|s| {
                        Some(ContextPpgtt {
                            root: s.frame_of(e.pml4)?,
                            window: s.tables().window_batch_frame(0)?,
                        })
                    })
                    .ok_or(VgpuError::Monitor(MonitorFault::PpgttNotAcquired))?;
                (e.head, e.tail, Some((e.ring, space)))
            }
            _ if self.execlists[i].enabled => return Ok(None),
            _ => match self.queued[i].front() {
                Some(&tail) => (self.dispatched[i], tail, None),
                None => return Ok(None),
            },
        };
        // The gate rewrites the engine's shadow ring and batches, which a
        // busy engine may still be running: only on an idle engine.
        let idle = matches!(backend.poll(engine), EngineStatus::Idle { .. });
        if self.in_flight[i].is_some() || !idle {
            let busy = BackendError::EngineNotIdle(engine);
            return Err(VgpuError::Monitor(MonitorFault::Backend(busy)));
        }
        let ring = match ppgtt {
            Some((ring, _)) => ring,
            None => match self.claim_ring(engine) {
                Ok(ring) => ring,
                Err(VgpuError::Guest(g)) => {
                    self.fail(FailReason::Guest(g));
                    return Err(VgpuError::Guest(g));
                }
                Err(other) => return Err(other),
            },
        };
        let request = RingSubmission {
            engine,
            context: self.context(),
            ring,
            head,
            tail,
            ppgtt: ppgtt.map(|(_, space)| space),
        };
        let submission = match gate.admit(&self.translation, &request, backend) {
            Ok(s) => s,
            Err(rejection) => {
                self.fail(FailReason::Rejected(rejection));
                return Err(VgpuError::Rejected(rejection));
            }
        };
        if submission.engine() != engine || submission.context() != self.context() {
            return Err(VgpuError::Monitor(MonitorFault::GateMismatch));
        }
        let submission = match ppgtt {
            Some((_, space)) => submission.with_ppgtt(space.root),
            None => submission,
        };
        let id = backend
            .submit_ready_since(&submission, ready_ns)
            .map_err(|e| VgpuError::Monitor(MonitorFault::Backend(e)))?;
        match (ppgtt, self.execlists[i].current_mut()) {
            (Some(_), Some(e)) => e.head = tail,
            _ => {
                let _ = self.queued[i].pop_front();
                self.dispatched[i] = tail;
            }
        }
        self.in_flight[i] = Some(InFlight { id, tail });
        Ok(Some(id))
    }

    /// Collects the end of the vGPU's submission on `engine`: on completion
    /// the guest-visible HEAD advances; on a fault the vGPU stops and the
    /// engine is reset for the others. Returns the submission still in
    /// flight, if any.
    pub(crate) fn collect(
        &mut self,
        engine: Engine,
        backend: &mut dyn Backend,
    ) -> Option<SubmissionId> {
        let i = engine.index();
        let flight = self.in_flight[i]?;
        match backend.poll(engine) {
            EngineStatus::Idle {
                last_completed: Some(done),
            } if done >= flight.id => {
                self.in_flight[i] = None;
                if self.execlists[i].enabled {
                    let mut released = heapless::Vec::new();
                    self.execlists[i].span_done(&mut released);
                    self.retire_elements(&released, backend);
                } else {
                    self.rings[i].head = flight.tail;
                }
            }
            EngineStatus::Faulted(fault) if fault.submission == flight.id => {
                self.in_flight[i] = None;
                self.fail(FailReason::Gpu(fault));
                backend.reset_engine(engine);
            }
            _ => {}
        }
        self.in_flight(engine)
    }

    /// Back to power-on state: rings, fences, emulated registers, the
    /// guest's GGTT entries and the vGPU's engine contexts cleared (work
    /// still in flight is abandoned), failure state lifted. Only the GGTT
    /// blocks the guest wrote are cleared: the others hold no mapping
    /// ([`GgttBlocks`]), and a guest that resets often (a driver
    /// recovering from hangs, the hostile guest) must not cost the monitor
    /// a write per page of its slices each time.
    pub fn reset(&mut self, backend: &mut dyn Backend) {
        let written = self
            .written_indices()
            .filter_map(|i| self.translation.g2h_index(i).ok());
        clear_host_state(
            backend,
            written,
            self.translation.host_aperture().base().ggtt_index(),
            self.host_fences,
            self.context(),
        );
        self.rings = [RingState::default(); Engine::COUNT];
        self.dispatched = [0; Engine::COUNT];
        self.queued.iter_mut().for_each(heapless::Deque::clear);
        self.in_flight = [None; Engine::COUNT];
        self.fences = [(0, 0); MAX_GUEST_FENCES];
        self.forcewake = [0; 3];
        self.emulated.clear();
        self.ggtt_written = GgttBlocks::NONE;
        self.execlists = [Execlist::new(); Engine::COUNT];
        if let Some(s) = self.shadow.as_mut() {
            s.release_all();
        }
        self.state = VgpuState::Running;
    }

    /// A CPU write through the vGPU's aperture (the guest's BAR2) as the
    /// hardware makes one: `data` at byte `offset` of page `index` of the
    /// guest's aperture slice, through the host GGTT entry behind it. For
    /// models of a guest without page tables (host tests, the reference
    /// run); a ring-3 guest's aperture window is the kernel's mapping of
    /// the same entries. An access beyond its slice, or across a page, is
    /// refused as outside GM.
    pub fn aperture_write(
        &self,
        backend: &mut dyn Backend,
        index: u64,
        offset: usize,
        data: &[u8],
    ) -> Result<(), crate::backend::GmAccessError> {
        let aperture = self.translation.guest_view().aperture;
        let gm = aperture.base().raw() + index.saturating_mul(PAGE_SIZE) + offset as u64;
        let outside = crate::backend::GmAccessError::OutsideGm { addr: gm };
        if index >= aperture.len() / PAGE_SIZE || offset + data.len() > PAGE_SIZE as usize {
            return Err(outside);
        }
        let claimed = self
            .translation
            .claim(gm, data.len() as u64)
            .map_err(|_| outside)?;
        backend.write_gm(claimed.host().base(), data)
    }

    /// Reads one guest GGTT entry as the guest wrote it (save uses it).
    pub fn guest_pte(
        &self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        index: GuestGgttIndex,
    ) -> Result<GuestPte, VgpuError> {
        self.read_guest_pte(backend, mem, index)
    }

    /// Replays one guest GGTT entry (restore uses it).
    /// Guest GGTT indices of the vGPU's view whose block the guest has
    /// written (every index that may hold a mapping).
    pub(crate) fn written_indices(&self) -> impl Iterator<Item = GuestGgttIndex> + '_ {
        self.translation
            .guest_indices()
            .filter(|&i| self.ggtt_written.written(i))
    }

    pub(crate) fn replay_pte(
        &mut self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        index: GuestGgttIndex,
        raw: u64,
    ) -> Result<(), VgpuError> {
        self.write_guest_pte(backend, mem, index, raw)
    }
}

/// Invalidates every host GGTT entry of `partition`'s slices, zeroes its
/// host fences and releases its slot's engine contexts, before a vGPU is
/// created or restored on it: whatever an earlier owner (firmware, a vGPU
/// torn down without reset) left there, in memory or in an engine, must
/// not be reachable by the new guest. It writes one entry per page of the
/// slices, so the kernel runs it when it allocates a partition, never on a
/// migration's stop path.
pub fn scrub_partition(backend: &mut dyn Backend, partition: &Partition) {
    let every = [partition.aperture(), partition.hidden()]
        .into_iter()
        .flat_map(|slice| {
            let first = u64::from(slice.base().ggtt_index().raw());
            first..first + slice.len() / 4096
        })
        .filter_map(|i| crate::addr::HostGgttIndex::new(i).ok());
    clear_host_state(
        backend,
        every,
        partition.aperture().base().ggtt_index(),
        partition.fences(),
        ContextId::of_vgpu(partition.id()),
    );
}

/// Invalidates the host GGTT entries `entries` (then flushes, with a last
/// write at `flush_at`, an entry of the slices), zeroes `fences` and
/// releases `context`.
fn clear_host_state(
    backend: &mut dyn Backend,
    entries: impl Iterator<Item = crate::addr::HostGgttIndex>,
    flush_at: crate::addr::HostGgttIndex,
    fences: crate::partition::FenceRange,
    context: ContextId,
) {
    // First: work of the context still running must not write into the
    // slices after they are cleared.
    backend.release_context(context);
    for index in entries {
        backend.write_pte(index, HostPte::INVALID).ignore();
    }
    // One flush covers the writes above (the backend orders them).
    let flush = backend.write_pte(flush_at, HostPte::INVALID);
    backend.flush_ggtt(flush);
    for i in 0..fences.count() {
        if let Some(h) = fences.host_fence(i) {
            backend.write_reg(fence::lo(h), 0);
            backend.write_reg(fence::hi(h), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{GmLayout, PartitionAllocator};
    use crate::sim::SimGpu;
    use crate::testutil::*;
    use proptest::prelude::*;

    struct World {
        gpu: SimGpu<SparseMem>,
        gate: Box<crate::mediate::ScanGate>,
        parts: Vec<Partition>,
        run: Runner,
    }

    fn world() -> World {
        let mut gpu = sim();
        let gate = scan_gate(&mut gpu);
        let mut a =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap();
        let parts = vec![
            a.allocate(VgpuType::Small).unwrap(),
            a.allocate(VgpuType::Small).unwrap(),
        ];
        World {
            gpu,
            gate,
            parts,
            run: Runner::new(),
        }
    }

    fn ggtt_offset(guest_gm: u64) -> u32 {
        GGTT_BAR0_OFFSET + (guest_gm >> 12) as u32 * 8
    }

    /// Guest `page` count pages at frames `frame..`; maps its first `n`
    /// aperture pages to its pages 0..n and sets up a 1-page render ring
    /// in aperture page 0.
    fn boot_guest(w: &mut World, v: &mut Vgpu, mem: &FrameRuns<4>, n: u64) -> u64 {
        let ap = v.translation().guest_view().aperture.base().raw();
        for i in 0..n {
            let pte = GuestPte::map(GuestPage::new(i).unwrap(), crate::ggtt::PteFlags::NONE);
            let e = v
                .mmio_write(
                    &mut w.gpu,
                    mem,
                    ggtt_offset(ap + i * 4096),
                    AccessSize::Qword,
                    pte.raw(),
                )
                .unwrap();
            assert_eq!(e, MmioEffect::Done);
        }
        let base = Engine::Render.mmio_base();
        let _ = v
            .mmio_write(&mut w.gpu, mem, base + ring::START, AccessSize::Dword, ap)
            .unwrap();
        let _ = v
            .mmio_write(&mut w.gpu, mem, base + ring::CTL, AccessSize::Dword, 1)
            .unwrap();
        ap
    }

    /// Writes commands into the guest ring (guest page 0, via its frame) and
    /// bumps TAIL; the scheduler runs the work to its end.
    fn guest_submit(
        w: &mut World,
        v: &mut Vgpu,
        mem: &FrameRuns<4>,
        cmds: &[u32],
    ) -> Result<(), VgpuError> {
        match guest_queue(w, v, mem, cmds)? {
            MmioEffect::Queued(_) => {
                w.run
                    .run_idle(&mut w.gpu, &mut *w.gate, core::slice::from_mut(v));
                outcome(v)
            }
            MmioEffect::Done => panic!("no submission"),
        }
    }

    /// Writes commands into the guest ring and bumps TAIL, nothing more.
    fn guest_queue(
        w: &mut World,
        v: &mut Vgpu,
        mem: &FrameRuns<4>,
        cmds: &[u32],
    ) -> Result<MmioEffect, VgpuError> {
        let mut c = cmds.to_vec();
        if c.len() % 2 == 1 {
            c.push(NOOP);
        }
        let head = v.ring(Engine::Render).tail;
        let frame = mem.frame_of(GuestPage::new(0).unwrap()).unwrap();
        for (i, d) in c.iter().enumerate() {
            let off = (u64::from(head) + 4 * i as u64) % 4096;
            crate::backend::PhysMem::write(w.gpu.mem_mut(), frame.at(off), &d.to_le_bytes())
                .unwrap();
        }
        let tail = (head + 4 * c.len() as u32) % 4096;
        let tail_reg = Engine::Render.mmio_base() + ring::TAIL;
        v.mmio_write(
            &mut w.gpu,
            mem,
            tail_reg,
            AccessSize::Dword,
            u64::from(tail),
        )
    }

    fn read_page_u32(w: &World, mem: &FrameRuns<4>, page: u64, off: u64) -> u32 {
        let frame = mem.frame_of(GuestPage::new(page).unwrap()).unwrap();
        let mut b = [0u8; 4];
        crate::backend::PhysMem::read(w.gpu.mem(), frame.at(off), &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    /// Stale entries an earlier owner left in a partition's slices are
    /// gone after the scrub, so a guest created there cannot reach their
    /// frames (or read them back as its own); the neighbours keep theirs.
    #[test]
    fn scrub_clears_stale_entries_of_the_partition_only() {
        let mut w = world();
        let stale = HostPte::map(PhysFrame::new(0x7777).unwrap(), crate::ggtt::PteFlags::NONE);
        let index = |gm: crate::addr::HostGm| gm.ggtt_index();
        let p = w.parts[0];
        let ours = [
            index(p.aperture().base()),
            index(p.hidden().base()),
            crate::addr::HostGgttIndex::new(
                u64::from(index(p.hidden().base()).raw()) + p.hidden().len() / 4096 - 1,
            )
            .unwrap(),
        ];
        let theirs = index(w.parts[1].aperture().base());
        for i in ours.into_iter().chain([theirs]) {
            w.gpu.write_pte(i, stale).ignore();
        }
        let h = p.fences().host_fence(0).unwrap();
        w.gpu.write_reg(fence::lo(h), 0x1001);
        // Before the scrub a guest on the partition would see a page it
        // does not own.
        let mem = guest_mem(0, 0x1000, 8);
        let v = Vgpu::new(&p);
        let first = GuestGgttIndex::new(u64::from(
            v.translation()
                .guest_view()
                .aperture
                .base()
                .ggtt_index()
                .raw(),
        ))
        .unwrap();
        assert!(v.guest_pte(&mut w.gpu, &mem, first).is_err());
        scrub_partition(&mut w.gpu, &p);
        for i in ours {
            assert_eq!(w.gpu.read_pte(i).frame(), None);
        }
        assert_eq!(w.gpu.read_reg(fence::lo(h)), 0);
        assert_eq!(w.gpu.read_pte(theirs), stale);
        assert_eq!(v.guest_pte(&mut w.gpu, &mem, first), Ok(GuestPte::INVALID));
    }

    #[test]
    fn pvinfo_shows_the_guest_its_slices() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut v = Vgpu::new(&w.parts[1]);
        let mut rd = |rel: u32| {
            v.mmio_read(&mut w.gpu, &mem, pvinfo::PAGE + rel, AccessSize::Dword)
                .unwrap() as u32
        };
        assert_eq!(rd(0), 0x7654_4776);
        assert_eq!(rd(4), 0x4776_5447);
        assert_eq!(rd(pvinfo::VERSION), 1);
        assert_eq!(rd(pvinfo::VGT_ID), 1);
        assert_eq!(
            u64::from(rd(pvinfo::APERTURE_BASE)),
            w.parts[1].aperture().base().raw()
        );
        assert_eq!(u64::from(rd(pvinfo::APERTURE_SIZE)), 64 << 20);
        assert_eq!(
            u64::from(rd(pvinfo::HIDDEN_BASE)),
            w.parts[1].hidden().base().raw()
        );
        assert_eq!(u64::from(rd(pvinfo::HIDDEN_SIZE)), 384 << 20);
        assert_eq!(rd(pvinfo::FENCE_NUM), 4);
        let magic = v
            .mmio_read(&mut w.gpu, &mem, pvinfo::PAGE, AccessSize::Qword)
            .unwrap();
        assert_eq!(magic, pvinfo::MAGIC);
    }

    #[test]
    fn guest_ggtt_writes_land_at_the_translated_index() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut v = Vgpu::new(&w.parts[0]);
        let hidden = v.translation().guest_view().hidden.base().raw() + 5 * 4096;
        let pte = GuestPte::map(GuestPage::new(7).unwrap(), crate::ggtt::PteFlags::NONE);
        let _ = v
            .mmio_write(
                &mut w.gpu,
                &mem,
                ggtt_offset(hidden),
                AccessSize::Qword,
                pte.raw(),
            )
            .unwrap();
        let host = v
            .translation()
            .g2h_addr(crate::addr::GuestGm::new(hidden).unwrap())
            .unwrap();
        assert_eq!(
            w.gpu.read_pte(host.ggtt_index()).frame(),
            PhysFrame::new(0x1007).ok()
        );
        let back = v
            .mmio_read(&mut w.gpu, &mem, ggtt_offset(hidden), AccessSize::Qword)
            .unwrap();
        assert_eq!(back, pte.raw());
    }

    #[test]
    fn bad_ggtt_writes_are_typed_guest_faults_and_stop_only_that_vgpu() {
        let mem = guest_mem(0, 0x1000, 64);
        let other_mem = guest_mem(0, 0x2000, 64);
        type Check = fn(&VgpuError) -> bool;
        let cases: [(u64, u64, Check); 4] = [
            // index in the other vGPU's slice
            (1, 0x1, |e| {
                matches!(e, VgpuError::Guest(GuestFault::GgttOutsideSlices { .. }))
            }),
            // page the guest does not own
            (0, (100 << 12) | 1, |e| {
                matches!(e, VgpuError::Guest(GuestFault::ForeignPage { page: 100 }))
            }),
            // reserved bits
            (0, (1 << 50) | 1, |e| {
                matches!(e, VgpuError::Guest(GuestFault::BadPte(_)))
            }),
            // the monitor's slice (index 0)
            (2, 1, |e| {
                matches!(
                    e,
                    VgpuError::Guest(GuestFault::GgttOutsideSlices { index: 1 })
                )
            }),
        ];
        for (target, raw, check) in cases {
            let mut w = world();
            let mut v = Vgpu::new(&w.parts[0]);
            let mut other = Vgpu::new(&w.parts[1]);
            let gm = match target {
                0 => v.translation().guest_view().aperture.base().raw(),
                1 => w.parts[1].aperture().base().raw(),
                _ => 0x1000,
            };
            let err = v
                .mmio_write(&mut w.gpu, &mem, ggtt_offset(gm), AccessSize::Qword, raw)
                .unwrap_err();
            assert!(check(&err), "{err}");
            assert!(err.is_guest_fault());
            assert!(matches!(v.state(), VgpuState::Failed(FailReason::Guest(_))));
            // Nothing reached the host GGTT.
            assert!(!w
                .gpu
                .read_pte(crate::addr::HostGm::new(gm).unwrap().ggtt_index())
                .is_present());
            // Stopped: further writes refused.
            assert!(matches!(
                v.mmio_write(
                    &mut w.gpu,
                    &mem,
                    Engine::Render.mmio_base() + ring::TAIL,
                    AccessSize::Dword,
                    8
                ),
                Err(VgpuError::Stopped(_))
            ));
            // The other vGPU goes on.
            boot_guest(&mut w, &mut other, &other_mem, 2);
            let target = w.parts[1].aperture().base().raw() + 4096;
            guest_submit(&mut w, &mut other, &other_mem, &sdi(target, 42)).unwrap();
            assert_eq!(read_page_u32(&w, &other_mem, 1, 0), 42);
        }
    }

    /// Save refuses a vGPU with work queued or running (its device state
    /// would not say what the GPU still does): the monitor lets the
    /// scheduler finish it first. The HEAD the guest sees moves only when
    /// the work completed, not when the TAIL write queued it.
    #[test]
    fn save_refuses_queued_and_running_work_until_it_completed() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut v = Vgpu::new(&w.parts[0]);
        let ap = boot_guest(&mut w, &mut v, &mem, 4);
        let mut blob = vec![0u8; 1 << 16];
        // 128 stores: 12.8 us of model time, longer than a runner's step.
        let cmds: Vec<u32> = (0..128)
            .flat_map(|i| sdi(ap + 2 * 4096 + 8 * i, 4))
            .collect();
        let queued = guest_queue(&mut w, &mut v, &mem, &cmds).unwrap();
        assert_eq!(queued, MmioEffect::Queued(Engine::Render));
        assert!(!v.is_idle());
        assert_eq!(
            v.save(&mut w.gpu, &mem, &mut blob),
            Err(crate::persist::SaveError::Busy)
        );
        w.run
            .step(&mut w.gpu, &mut *w.gate, core::slice::from_mut(&mut v));
        assert!(v.in_flight(Engine::Render).is_some());
        assert_eq!(v.ring(Engine::Render).head, 0);
        assert_eq!(
            v.save(&mut w.gpu, &mem, &mut blob),
            Err(crate::persist::SaveError::Busy)
        );
        w.run
            .run_idle(&mut w.gpu, &mut *w.gate, core::slice::from_mut(&mut v));
        assert_eq!(v.ring(Engine::Render).head, 2048);
        assert!(v.save(&mut w.gpu, &mem, &mut blob).is_ok());
    }

    #[test]
    fn tail_write_runs_through_the_gate_into_guest_pages() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut v = Vgpu::new(&w.parts[0]);
        let ap = boot_guest(&mut w, &mut v, &mem, 4);
        guest_submit(&mut w, &mut v, &mem, &sdi(ap + 2 * 4096 + 16, 0xfeed)).unwrap();
        assert_eq!(read_page_u32(&w, &mem, 2, 16), 0xfeed);
        assert_eq!(v.ring(Engine::Render).head, 16);
        let head = v
            .mmio_read(
                &mut w.gpu,
                &mem,
                Engine::Render.mmio_base() + ring::HEAD,
                AccessSize::Dword,
            )
            .unwrap();
        assert_eq!(head, 16);
    }

    /// What one vGPU loads into an engine (a GPR, a predicate source) is
    /// not what another vGPU reads back: each runs on its own context.
    #[test]
    fn engine_registers_one_vgpu_loads_are_invisible_to_another() {
        let mut w = world();
        let (mem0, mem1) = (guest_mem(0, 0x1000, 8), guest_mem(0, 0x2000, 8));
        let mut v0 = Vgpu::new(&w.parts[0]);
        let mut v1 = Vgpu::new(&w.parts[1]);
        boot_guest(&mut w, &mut v0, &mem0, 2);
        let ap1 = boot_guest(&mut w, &mut v1, &mem1, 2);
        let gpr0 = Engine::Render.mmio_base() + ring::GPR_BASE;
        let predicate_src0 = 0x2400;
        for (i, reg) in [gpr0, predicate_src0].into_iter().enumerate() {
            guest_submit(&mut w, &mut v0, &mem0, &lri(reg, 0x1eaf)).unwrap();
            let at = ap1 + 4096 + 4 * i as u64;
            guest_submit(&mut w, &mut v1, &mem1, &srm(reg, at)).unwrap();
            assert_eq!(read_page_u32(&w, &mem1, 1, 4 * i as u64), 0, "{reg:#x}");
        }
    }

    fn gdrst(
        w: &mut World,
        v: &mut Vgpu,
        mem: &FrameRuns<4>,
        value: u32,
    ) -> Result<MmioEffect, VgpuError> {
        let offset = gdrst::OFFSET.raw();
        v.mmio_write(&mut w.gpu, mem, offset, AccessSize::Dword, u64::from(value))
    }

    /// A guest whose submission was refused is stopped until it resets its
    /// vGPU with a full GDRST reset; the reset leaves nothing of what it
    /// had set up (rings, GGTT entries, fences, emulated registers, what
    /// its engine context held) and touches nothing of its neighbour's.
    #[test]
    fn a_full_gdrst_reset_restarts_a_stopped_vgpu_and_scrubs_its_state() {
        let mut w = world();
        let (mem0, mem1) = (guest_mem(0, 0x1000, 8), guest_mem(0, 0x2000, 8));
        let mut v0 = Vgpu::new(&w.parts[0]);
        let mut v1 = Vgpu::new(&w.parts[1]);
        let ap0 = boot_guest(&mut w, &mut v0, &mem0, 4);
        let ap1 = boot_guest(&mut w, &mut v1, &mem1, 4);
        let base = Engine::Render.mmio_base();
        let gpr0 = base + ring::GPR_BASE;
        let write = |w: &mut World, v: &mut Vgpu, mem, offset, value| {
            v.mmio_write(&mut w.gpu, mem, offset, AccessSize::Dword, value)
        };
        // What the guest sets up: a GPR, an interrupt mask, a fence, a
        // mapping deep in its hidden slice.
        guest_submit(&mut w, &mut v0, &mem0, &lri(gpr0, 0x1eaf)).unwrap();
        let hidden = v0.translation().guest_view().hidden.base().raw() + 0x30_0000;
        let pte = GuestPte::map(GuestPage::new(3).unwrap(), crate::ggtt::PteFlags::NONE);
        let _ = v0
            .mmio_write(
                &mut w.gpu,
                &mem0,
                ggtt_offset(hidden),
                AccessSize::Qword,
                pte.raw(),
            )
            .unwrap();
        let _ = write(&mut w, &mut v0, &mem0, base + ring::IMR, 0xfff0).unwrap();
        let _ = write(&mut w, &mut v0, &mem0, fence::hi(0).raw(), ap0 + 4096).unwrap();
        let _ = write(&mut w, &mut v0, &mem0, fence::lo(0).raw(), ap0 | 1).unwrap();
        // A store into the neighbour's aperture: refused, the vGPU stops.
        let refused = guest_submit(&mut w, &mut v0, &mem0, &sdi(ap1 + 4096, 7));
        assert!(
            matches!(refused, Err(VgpuError::Rejected(_))),
            "{refused:?}"
        );
        assert!(matches!(v0.state(), VgpuState::Failed(_)));
        let stopped = write(&mut w, &mut v0, &mem0, base + ring::START, ap0);
        assert!(matches!(stopped, Err(VgpuError::Stopped(_))));
        // The reset is accepted while stopped, completes at once.
        assert_eq!(
            gdrst(&mut w, &mut v0, &mem0, gdrst::FULL),
            Ok(MmioEffect::Done)
        );
        assert_eq!(v0.state(), VgpuState::Running);
        let read = |w: &mut World, v: &mut Vgpu, mem, offset| {
            v.mmio_read(&mut w.gpu, mem, offset, AccessSize::Dword)
                .unwrap()
        };
        assert_eq!(read(&mut w, &mut v0, &mem0, gdrst::OFFSET.raw()), 0);
        assert_eq!(v0.ring(Engine::Render), RingState::default());
        assert_eq!(read(&mut w, &mut v0, &mem0, base + ring::IMR), 0);
        assert_eq!(read(&mut w, &mut v0, &mem0, fence::lo(0).raw()), 0);
        let host_fence = w.parts[0].fences().host_fence(0).unwrap();
        assert_eq!(w.gpu.read_reg(fence::lo(host_fence)), 0);
        for gm in [ap0, hidden] {
            let index = GuestGgttIndex::new(gm / 4096).unwrap();
            assert_eq!(
                v0.guest_pte(&mut w.gpu, &mem0, index),
                Ok(GuestPte::INVALID)
            );
        }
        // Booted again, it runs; its context no longer holds the GPR.
        boot_guest(&mut w, &mut v0, &mem0, 4);
        guest_submit(&mut w, &mut v0, &mem0, &srm(gpr0, ap0 + 2 * 4096)).unwrap();
        assert_eq!(read_page_u32(&w, &mem0, 2, 0), 0);
        // The neighbour kept its mapping and runs on.
        assert!(v1
            .guest_pte(&mut w.gpu, &mem1, GuestGgttIndex::new(ap1 / 4096).unwrap())
            .unwrap()
            .is_present());
        guest_submit(&mut w, &mut v1, &mem1, &sdi(ap1 + 4096, 9)).unwrap();
        assert_eq!(read_page_u32(&w, &mem1, 1, 0), 9);
    }

    /// GDRST 0 asks for nothing; engine domains alone are refused (the
    /// vGPU stops), as is any width but a DWord.
    #[test]
    fn gdrst_offers_only_the_full_reset() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 8);
        let mut v = Vgpu::new(&w.parts[0]);
        boot_guest(&mut w, &mut v, &mem, 2);
        assert_eq!(gdrst(&mut w, &mut v, &mem, 0), Ok(MmioEffect::Done));
        assert_eq!(v.ring(Engine::Render).ctl, 1, "nothing was reset");
        let render = gdrst::engine_bit(Engine::Render);
        assert_eq!(
            gdrst(&mut w, &mut v, &mem, render),
            Err(VgpuError::Guest(GuestFault::PartialReset { value: render }))
        );
        assert!(matches!(v.state(), VgpuState::Failed(_)));
        assert_eq!(
            gdrst(&mut w, &mut v, &mem, gdrst::FULL | render),
            Ok(MmioEffect::Done)
        );
        let qword = v.mmio_write(&mut w.gpu, &mem, gdrst::OFFSET.raw(), AccessSize::Qword, 1);
        assert!(matches!(
            qword,
            Err(VgpuError::Guest(GuestFault::BadAccess { .. }))
        ));
    }

    /// A gate that hands back work on another context is a monitor bug:
    /// the submission never reaches the backend.
    #[test]
    fn work_for_another_context_is_refused_as_a_monitor_fault() {
        struct OtherContext(Box<crate::mediate::ScanGate>, Option<ContextId>);
        impl SubmissionGate for OtherContext {
            fn admit(
                &mut self,
                translation: &GmTranslation,
                request: &RingSubmission,
                backend: &mut dyn Backend,
            ) -> Result<Submission, GateRejection> {
                self.1 = Some(request.context());
                let s = self.0.admit(translation, request, backend)?;
                Ok(
                    Submission::new(s.engine(), ContextId::MONITOR, s.ring(), s.head(), s.tail())
                        .unwrap(),
                )
            }
        }
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 8);
        let mut v = Vgpu::new(&w.parts[0]);
        let ap = boot_guest(&mut w, &mut v, &mem, 2);
        let frame = mem.frame_of(GuestPage::new(0).unwrap()).unwrap();
        for (i, d) in sdi(ap + 4096, 5).iter().enumerate() {
            crate::backend::PhysMem::write(
                w.gpu.mem_mut(),
                frame.at(4 * i as u64),
                &d.to_le_bytes(),
            )
            .unwrap();
        }
        let tail = Engine::Render.mmio_base() + ring::TAIL;
        let effect = v
            .mmio_write(&mut w.gpu, &mem, tail, AccessSize::Dword, 16)
            .unwrap();
        assert_eq!(effect, MmioEffect::Queued(Engine::Render));
        let mut gate = OtherContext(crate::testutil::scan_gate(&mut w.gpu), None);
        let err = v
            .dispatch(Engine::Render, &mut w.gpu, &mut gate, u64::MAX)
            .unwrap_err();
        assert_eq!(gate.1, Some(v.context()));
        assert_eq!(err, VgpuError::Monitor(MonitorFault::GateMismatch));
        assert!(!err.is_guest_fault());
        finish(&mut w.gpu, Engine::Render);
        assert_eq!(read_page_u32(&w, &mem, 1, 0), 0);
        // The work stays queued, and runs through a gate that is right.
        assert_eq!(v.queued(Engine::Render), 1);
        w.run
            .run_idle(&mut w.gpu, &mut *w.gate, core::slice::from_mut(&mut v));
        assert_eq!(read_page_u32(&w, &mem, 1, 0), 5);
    }

    /// A reset vGPU (or a new one in the same slot) starts from a fresh
    /// context: nothing the slot's earlier work loaded is left.
    #[test]
    fn reset_and_scrub_release_the_slots_engine_context() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 8);
        let gpr3 = Engine::Render.mmio_base() + ring::GPR_BASE + 3 * 8;
        let load_reset_store = |w: &mut World, reset: &dyn Fn(&mut World, &mut Vgpu)| {
            let mut v = Vgpu::new(&w.parts[0]);
            boot_guest(w, &mut v, &mem, 2);
            guest_submit(w, &mut v, &mem, &lri(gpr3, 9)).unwrap();
            reset(w, &mut v);
            let ap = boot_guest(w, &mut v, &mem, 2);
            guest_submit(w, &mut v, &mem, &srm(gpr3, ap + 4096)).unwrap();
            read_page_u32(w, &mem, 1, 0)
        };
        assert_eq!(load_reset_store(&mut w, &|_, _| {}), 9);
        assert_eq!(load_reset_store(&mut w, &|w, v| v.reset(&mut w.gpu)), 0);
        let scrub = |w: &mut World, v: &mut Vgpu| {
            let p = w.parts[0];
            scrub_partition(&mut w.gpu, &p);
            *v = Vgpu::new(&p);
        };
        assert_eq!(load_reset_store(&mut w, &scrub), 0);
    }

    #[test]
    fn rejected_submission_and_gpu_fault_stop_the_vgpu() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut v = Vgpu::new(&w.parts[0]);
        boot_guest(&mut w, &mut v, &mem, 4);
        let foreign = w.parts[1].aperture().base().raw();
        let err = guest_submit(&mut w, &mut v, &mem, &sdi(foreign, 1)).unwrap_err();
        assert!(matches!(err, VgpuError::Rejected(_)));
        assert!(matches!(
            v.state(),
            VgpuState::Failed(FailReason::Rejected(_))
        ));
        v.reset(&mut w.gpu);
        assert_eq!(v.state(), VgpuState::Running);
        // After reset the GGTT is empty: a store to its own (unmapped) page
        // faults in the GPU and stops the vGPU; the engine is reset.
        let ap = v.translation().guest_view().aperture.base().raw();
        let base = Engine::Render.mmio_base();
        let _ = v
            .mmio_write(&mut w.gpu, &mem, ggtt_offset(ap), AccessSize::Qword, 1)
            .unwrap();
        let _ = v
            .mmio_write(&mut w.gpu, &mem, base + ring::START, AccessSize::Dword, ap)
            .unwrap();
        let _ = v
            .mmio_write(&mut w.gpu, &mem, base + ring::CTL, AccessSize::Dword, 1)
            .unwrap();
        guest_submit(&mut w, &mut v, &mem, &sdi(ap + 8 * 4096, 1)).unwrap();
        assert!(matches!(v.state(), VgpuState::Failed(FailReason::Gpu(_))));
        assert!(matches!(
            w.gpu.poll(Engine::Render),
            EngineStatus::Idle { .. }
        ));
    }

    #[test]
    fn fences_are_translated_to_the_host_slice_and_host_fence() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut src = Vgpu::new(&w.parts[0]);
        // Put parts[0]'s view on parts[1]: guest addresses differ from host.
        let t = GmTranslation::with_view(&w.parts[1], src.translation().guest_view()).unwrap();
        let mut v = Vgpu::with_translation(&w.parts[1], t);
        let ap = v.translation().guest_view().aperture.base().raw() as u32;
        let _ = v
            .mmio_write(
                &mut w.gpu,
                &mem,
                fence::hi(1).raw(),
                AccessSize::Dword,
                u64::from(ap + 0x3000 + 7),
            )
            .unwrap();
        let _ = v
            .mmio_write(
                &mut w.gpu,
                &mem,
                fence::lo(1).raw(),
                AccessSize::Dword,
                u64::from(ap + 0x1000 + 1),
            )
            .unwrap();
        let hf = w.parts[1].fences().first() + 1;
        let host_ap = w.parts[1].aperture().base().raw() as u32;
        assert_eq!(w.gpu.read_reg(fence::lo(hf)), host_ap + 0x1001);
        assert_eq!(w.gpu.read_reg(fence::hi(hf)), host_ap + 0x3007);
        assert_eq!(
            v.mmio_read(&mut w.gpu, &mem, fence::lo(1).raw(), AccessSize::Dword)
                .unwrap(),
            u64::from(ap + 0x1001)
        );
        let err = v
            .mmio_write(&mut w.gpu, &mem, fence::lo(5).raw(), AccessSize::Dword, 1)
            .unwrap_err();
        assert_eq!(
            err,
            VgpuError::Guest(GuestFault::FenceNotOwned { index: 5 })
        );
        src.reset(&mut w.gpu);
    }

    #[test]
    fn register_policies_give_typed_errors() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut v = Vgpu::new(&w.parts[0]);
        let elsp = Engine::Render.mmio_base() + ring::ELSP;
        assert_eq!(
            Vgpu::policy(MmioOffset::reg(elsp)),
            RegPolicy::Virtualized(Handler::Elsp(Engine::Render))
        );
        let bb_addr = Engine::Render.mmio_base() + ring::BB_ADDR;
        assert_eq!(Vgpu::policy(MmioOffset::reg(bb_addr)), RegPolicy::Rejected);
        assert!(matches!(
            v.mmio_read(&mut w.gpu, &mem, 0x4, AccessSize::Dword),
            Err(VgpuError::Guest(GuestFault::RejectedRegister { offset: 4 }))
        ));
        assert!(matches!(
            v.mmio_read(&mut w.gpu, &mem, 0x0100_0000, AccessSize::Dword),
            Err(VgpuError::Guest(GuestFault::OutsideBar { .. }))
        ));
        assert!(matches!(
            v.mmio_read(&mut w.gpu, &mem, GGTT_BAR0_OFFSET + 4, AccessSize::Qword),
            Err(VgpuError::Guest(GuestFault::BadAccess { .. }))
        ));
        // Reads do not stop the vGPU.
        assert_eq!(v.state(), VgpuState::Running);
        let imr = Engine::Blitter.mmio_base() + ring::IMR;
        let _ = v
            .mmio_write(&mut w.gpu, &mem, imr, AccessSize::Dword, 0xffff_fffe)
            .unwrap();
        assert_eq!(
            v.mmio_read(&mut w.gpu, &mem, imr, AccessSize::Dword)
                .unwrap(),
            0xffff_fffe
        );
        let fw = forcewake::Domain::Render;
        let _ = v
            .mmio_write(
                &mut w.gpu,
                &mem,
                fw.request().raw(),
                AccessSize::Dword,
                0x0001_0001,
            )
            .unwrap();
        assert_eq!(
            v.mmio_read(&mut w.gpu, &mem, fw.ack().raw(), AccessSize::Dword)
                .unwrap(),
            1
        );
        let _ = v
            .mmio_write(
                &mut w.gpu,
                &mem,
                pvinfo::PAGE + pvinfo::G2V_NOTIFY,
                AccessSize::Dword,
                6,
            )
            .unwrap();
        assert_eq!(v.notifications(), 1);
        let err = v
            .mmio_write(
                &mut w.gpu,
                &mem,
                pvinfo::PAGE + pvinfo::APERTURE_BASE,
                AccessSize::Dword,
                0,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            VgpuError::Guest(GuestFault::ReadOnlyRegister { .. })
        ));
        assert!(matches!(v.state(), VgpuState::Failed(_)));
    }

    #[test]
    fn ring_outside_slices_is_refused() {
        let mut w = world();
        let mem = guest_mem(0, 0x1000, 64);
        let mut v = Vgpu::new(&w.parts[0]);
        let base = Engine::Render.mmio_base();
        let foreign = w.parts[1].aperture().base().raw();
        let _ = v
            .mmio_write(
                &mut w.gpu,
                &mem,
                base + ring::START,
                AccessSize::Dword,
                foreign,
            )
            .unwrap();
        let _ = v
            .mmio_write(&mut w.gpu, &mem, base + ring::CTL, AccessSize::Dword, 1)
            .unwrap();
        let err = v
            .mmio_write(&mut w.gpu, &mem, base + ring::TAIL, AccessSize::Dword, 8)
            .unwrap_err();
        assert!(matches!(
            err,
            VgpuError::Guest(GuestFault::RingOutsideSlices { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_guest_mmio_never_panics_or_escapes(
            ops in proptest::collection::vec((0u32..0x0100_1000, any::<u64>(), any::<bool>(), any::<bool>()), 1..64)
        ) {
            let mut w = world();
            let mem = guest_mem(0, 0x1000, 64);
            let mut v = Vgpu::new(&w.parts[0]);
            for (offset, value, qword, write) in ops {
                // Bias half the offsets into interesting places.
                let offset = if offset & 1 == 1 {
                    [GGTT_BAR0_OFFSET + (offset & 0x7f_fff8), pvinfo::PAGE + (offset & 0xffc),
                     0x2000 + (offset & 0x7fc), fence::BASE + (offset & 0xfc)][(offset as usize >> 1) & 3]
                } else { offset };
                let size = if qword { AccessSize::Qword } else { AccessSize::Dword };
                if write {
                    if let Ok(MmioEffect::Queued(_)) = v.mmio_write(&mut w.gpu, &mem, offset, size, value) {
                        w.run.step(&mut w.gpu, &mut *w.gate, core::slice::from_mut(&mut v));
                    }
                } else {
                    let _ = v.mmio_read(&mut w.gpu, &mem, offset, size);
                }
            }
            // No host GGTT entry outside the vGPU's slices was set.
            for p in [&w.parts[1]] {
                for r in [p.aperture(), p.hidden()] {
                    let first = r.base().ggtt_index().raw();
                    for i in (first..first + r.page_count() as u32).step_by(97) {
                        prop_assert!(!w.gpu.read_pte(crate::addr::HostGgttIndex::new(u64::from(i)).unwrap()).is_present());
                    }
                }
            }
        }
    }
}
