//! The one trait every GPU backend implements (ARCHITECTURE.md "GPU
//! backends"), and the physical-memory trait the backends reach memory
//! through.
//!
//! Decisions:
//! * Memory is reached through [`PhysMem`], implemented by the kernel over
//!   frames it owns and by tests over a map of pages. The software model keeps
//!   its GGTT table in that memory too (like the real GGTT in stolen memory),
//!   so nothing here needs a heap.
//! * Register access at this level is 32 bit; GGTT entries go through
//!   [`Backend::write_pte`], which returns a [`GgttFlush`] obligation.
//! * [`Backend::read_gm`] / [`Backend::write_gm`] are the CPU's view of GM
//!   through the host GGTT: the scanner copies guest rings and batches with
//!   them, tests read results with them.
//! * Every submission names the engine context it runs on ([`ContextId`]):
//!   the monitor's own, or one per vGPU slot. A backend keeps one context
//!   per (context id, engine), switched on submission, so nothing one vGPU
//!   loads into an engine (GPRs, predicates, pipeline state) is visible to
//!   another: on `SimGpu` its own register file and pipeline state, on
//!   `IntelGen9` its own logical ring context. [`Backend::release_context`]
//!   puts a context back to its power-on state; the vGPU calls it on reset,
//!   teardown and before a vGPU is created or restored in a slot
//!   (`vgpu::scrub_partition`), so a new vGPU never sees the old one's
//!   state.
//! * Work takes time. [`Backend::submit`] only starts a submission; it
//!   completes later, and only [`Backend::poll`] says so: the monitor never
//!   assumes a submission is done when `submit` returns. Submission stays
//!   one at a time per engine (a busy engine refuses another); the monitor's
//!   scheduler ([`crate::sched`]) queues the vGPUs' work and takes turns.
//! * Time: the monitor tells a backend its clock with [`Backend::advance`]
//!   (nanoseconds, monotonic). The software model executes as that clock
//!   passes (its cost model is in [`crate::sim`]); hardware keeps its own
//!   time and ignores it. [`Backend::finished_at_ns`] says, where the
//!   backend knows it, when a submission ended on that clock, so that the
//!   scheduler charges each vGPU the engine time it used and not the
//!   monitor's polling delay.

use crate::addr::{HostGgttIndex, HostGm, HostGmRange, PhysAddr, PhysFrame, PAGE_SIZE};
use crate::engine::Engine;
use crate::ggtt::{GgttFlush, HostPte};
use crate::partition::{VgpuId, MAX_VGPUS};
use crate::regs::MmioOffset;
use core::fmt;

/// Host physical memory, as the kernel (or a test) provides it.
pub trait PhysMem {
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError>;
    /// Writes `data` at `addr`.
    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysMemError>;
}

/// An access to physical memory the provider does not back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysMemError {
    /// First address of the refused access.
    pub addr: PhysAddr,
}

impl fmt::Display for PhysMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no memory backs {}", self.addr)
    }
}

/// Why a GM access through the GGTT failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmAccessError {
    /// The access runs past the 4 GiB GM space.
    OutsideGm { addr: u64 },
    /// The GGTT entry for `addr` is not present.
    InvalidPte { addr: HostGm },
    /// The PTE points at memory the provider does not back.
    NoMemory { addr: HostGm, phys: PhysAddr },
}

impl fmt::Display for GmAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GmAccessError::OutsideGm { addr } => {
                write!(f, "GM access at {addr:#x} is beyond 4 GiB")
            }
            GmAccessError::InvalidPte { addr } => {
                write!(f, "GGTT entry for GM {addr} is not present")
            }
            GmAccessError::NoMemory { addr, phys } => {
                write!(f, "GM {addr} maps to unbacked {phys}")
            }
        }
    }
}

/// Splits a GM access into page pieces and runs `access(phys, offset_in_buf,
/// len)` for each, translating through `pte_of`.
pub(crate) fn for_each_gm_page(
    addr: HostGm,
    len: usize,
    mut pte_of: impl FnMut(HostGgttIndex) -> HostPte,
    mut access: impl FnMut(PhysAddr, usize, usize) -> Result<(), PhysMemError>,
) -> Result<(), GmAccessError> {
    let mut done = 0usize;
    while done < len {
        let at = addr
            .checked_add(done as u64)
            .ok_or(GmAccessError::OutsideGm {
                addr: addr.raw() + done as u64,
            })?;
        let in_page = (PAGE_SIZE - at.page_offset()) as usize;
        let chunk = in_page.min(len - done);
        let frame = pte_of(at.ggtt_index())
            .frame()
            .ok_or(GmAccessError::InvalidPte { addr: at })?;
        let phys = frame.at(at.page_offset());
        access(phys, done, chunk).map_err(|_| GmAccessError::NoMemory { addr: at, phys })?;
        done += chunk;
    }
    Ok(())
}

/// Names an engine context: the monitor's own (index 0) or the one of a
/// vGPU slot (index slot + 1). A backend keeps one context per id and
/// engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContextId(u8);

impl ContextId {
    /// Contexts a backend keeps per engine: the monitor's plus one per slot.
    pub const COUNT: usize = MAX_VGPUS + 1;
    /// The monitor's own context (self-tests, streams the monitor builds).
    pub const MONITOR: ContextId = ContextId(0);

    /// Checked constructor: below [`ContextId::COUNT`].
    pub const fn new(raw: u8) -> Option<Self> {
        if (raw as usize) < Self::COUNT {
            Some(ContextId(raw))
        } else {
            None
        }
    }
    /// The context of vGPU slot `id`.
    pub const fn of_vgpu(id: VgpuId) -> Self {
        ContextId(id.raw() + 1)
    }
    /// Dense index in `0..ContextId::COUNT`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The vGPU slot this context belongs to; `None` for the monitor's.
    pub const fn vgpu(self) -> Option<VgpuId> {
        match self.0.checked_sub(1) {
            Some(slot) => VgpuId::new(slot),
            None => None,
        }
    }
    /// Every context id, in index order.
    pub fn all() -> impl Iterator<Item = ContextId> {
        (0..Self::COUNT as u8).map(ContextId)
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vgpu() {
            Some(v) => write!(f, "context of {v}"),
            None => f.write_str("monitor context"),
        }
    }
}

/// Identifies one submission to one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubmissionId(pub u64);

/// Largest ring a RING_CTL can describe (512 pages = 2 MiB).
pub const MAX_RING_SIZE: u64 = 512 * PAGE_SIZE;

/// Commands for an engine: the bytes `[head, tail)` (wrapping) of a ring
/// buffer in host GM, run on engine context `context`, with the PPGTT
/// whose (shadow) PML4 is `ppgtt`, if any. Only the scanner (or
/// monitor-built streams) make these: the guest's ring never reaches a
/// backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    engine: Engine,
    context: ContextId,
    ring: HostGmRange,
    head: u32,
    tail: u32,
    ppgtt: Option<PhysFrame>,
}

/// Why a submission is malformed (a monitor bug, never a guest's doing: the
/// vGPU checks guest ring registers first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmissionError {
    /// Ring not page aligned, or larger than 2 MiB.
    BadRing,
    /// Head or tail not inside the ring or not aligned (head 4, tail 8 bytes).
    BadOffsets { head: u32, tail: u32 },
}

impl fmt::Display for SubmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmissionError::BadRing => f.write_str("ring is not page aligned or exceeds 2 MiB"),
            SubmissionError::BadOffsets { head, tail } => {
                write!(
                    f,
                    "ring head {head:#x} / tail {tail:#x} misaligned or outside the ring"
                )
            }
        }
    }
}

impl Submission {
    /// Checked constructor.
    pub fn new(
        engine: Engine,
        context: ContextId,
        ring: HostGmRange,
        head: u32,
        tail: u32,
    ) -> Result<Self, SubmissionError> {
        if ring.base().page_offset() != 0
            || !ring.len().is_multiple_of(PAGE_SIZE)
            || ring.len() > MAX_RING_SIZE
        {
            return Err(SubmissionError::BadRing);
        }
        let len = ring.len();
        if u64::from(head) >= len
            || u64::from(tail) >= len
            || !head.is_multiple_of(4)
            || !tail.is_multiple_of(8)
        {
            return Err(SubmissionError::BadOffsets { head, tail });
        }
        Ok(Submission {
            engine,
            context,
            ring,
            head,
            tail,
            ppgtt: None,
        })
    }
    /// The same submission in a PPGTT context: batches started with the
    /// PPGTT address space run non-privileged through the 4-level tables
    /// rooted at `pml4` (a shadow PML4 the monitor built,
    /// [`crate::ppgtt::shadow`]), and every address without the "use
    /// GGTT" choice is a PPGTT address.
    pub const fn with_ppgtt(mut self, pml4: PhysFrame) -> Self {
        self.ppgtt = Some(pml4);
        self
    }
    /// The PML4 of the context's PPGTT, if it has one.
    pub const fn ppgtt(&self) -> Option<PhysFrame> {
        self.ppgtt
    }
    /// Target engine.
    pub const fn engine(&self) -> Engine {
        self.engine
    }
    /// The engine context it runs on.
    pub const fn context(&self) -> ContextId {
        self.context
    }
    /// The ring buffer.
    pub const fn ring(&self) -> HostGmRange {
        self.ring
    }
    /// First byte to execute.
    pub const fn head(&self) -> u32 {
        self.head
    }
    /// One past the last byte to execute.
    pub const fn tail(&self) -> u32 {
        self.tail
    }
}

/// What went wrong in an engine, as the hardware reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Access through a not-present GGTT entry (page fault).
    InvalidPte,
    /// Access beyond the 4 GiB GGTT range.
    OutsideGgtt,
    /// A PTE points at memory that does not exist.
    NoMemory,
    /// A per-process GTT access in a context without a PPGTT.
    Ppgtt,
    /// A PPGTT access through a not-present entry (page fault).
    PpgttNotPresent,
    /// A PPGTT write through an entry without the writable bit.
    PpgttReadOnly,
    /// A non-privileged (PPGTT) batch issued what only a privileged one
    /// may: a privileged command, a GGTT access, or a register outside
    /// the hardware's non-privileged set (the hardware drops the command
    /// and flags a command privilege violation; the model stops).
    PrivilegeViolation(&'static str),
    /// Unknown or unsupported command (instruction error).
    InvalidCommand,
    /// A batch start beyond the second level.
    BatchNesting,
    /// A command runs past the ring's tail.
    RingOverrun,
    /// The submission exceeded its command or byte budget (hang detection).
    Hang,
    /// The software model does not execute this command (or this form of
    /// it): a loud stop instead of a silent no-op, naming what is missing.
    Unmodeled(&'static str),
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::InvalidPte => "page fault: GGTT entry not present",
            FaultKind::OutsideGgtt => "access beyond the GGTT",
            FaultKind::NoMemory => "GGTT entry points at missing memory",
            FaultKind::Ppgtt => "PPGTT access in a context without a PPGTT",
            FaultKind::PpgttNotPresent => "page fault: PPGTT entry not present",
            FaultKind::PpgttReadOnly => "PPGTT write through a read-only entry",
            FaultKind::PrivilegeViolation(what) => {
                return write!(f, "privilege violation in a non-privileged batch: {what}")
            }
            FaultKind::InvalidCommand => "instruction error: unknown or unsupported command",
            FaultKind::BatchNesting => "batch buffers nested beyond the second level",
            FaultKind::RingOverrun => "command runs past the ring tail",
            FaultKind::Hang => "engine hang: submission exceeded its budget",
            FaultKind::Unmodeled(what) => return write!(f, "not modelled: {what}"),
        })
    }
}

/// A fault record: engine, submission, what, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuFault {
    /// Engine that faulted.
    pub engine: Engine,
    /// Context the submission ran on.
    pub context: ContextId,
    /// Submission that was running.
    pub submission: SubmissionId,
    /// What happened.
    pub kind: FaultKind,
    /// Faulting memory address, for memory faults.
    pub address: Option<u64>,
    /// Header of the command being executed.
    pub header: u32,
}

impl fmt::Display for GpuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fault in submission {} on the {} ({}), command {:#010x}",
            self.engine, self.submission.0, self.context, self.kind, self.header
        )?;
        if let Some(a) = self.address {
            write!(f, " at GM {a:#x}")?;
        }
        Ok(())
    }
}

/// State of one engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineStatus {
    /// Idle; the last submission that completed, if any.
    Idle {
        last_completed: Option<SubmissionId>,
    },
    /// Still running `running`.
    Busy { running: SubmissionId },
    /// Stopped on a fault until [`Backend::reset_engine`].
    Faulted(GpuFault),
}

/// Errors a backend reports to the monitor (never a guest fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The engine is still running or stopped on a fault.
    EngineNotIdle(Engine),
    /// The hardware did not acknowledge in time.
    Timeout { what: &'static str },
    /// The backend was not initialised.
    NotInitialised,
    /// The backend cannot run this kind of submission.
    Unsupported(&'static str),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::EngineNotIdle(e) => write!(f, "engine {e} is busy or faulted"),
            BackendError::Timeout { what } => write!(f, "hardware timeout waiting for {what}"),
            BackendError::NotInitialised => f.write_str("backend used before init"),
            BackendError::Unsupported(what) => write!(f, "backend does not support {what}"),
        }
    }
}

/// A GPU the monitor drives: the software model or real Gen9 hardware.
pub trait Backend {
    /// Reads a 32-bit register.
    fn read_reg(&mut self, reg: MmioOffset) -> u32;
    /// Writes a 32-bit register.
    fn write_reg(&mut self, reg: MmioOffset, value: u32);
    /// Reads a host GGTT entry.
    fn read_pte(&mut self, index: HostGgttIndex) -> HostPte;
    /// Writes a host GGTT entry; the GPU sees it after the flush.
    fn write_pte(&mut self, index: HostGgttIndex, pte: HostPte) -> GgttFlush;
    /// Makes earlier PTE writes visible to the engines.
    fn flush_ggtt(&mut self, flush: GgttFlush);
    /// CPU read of GM through the host GGTT.
    fn read_gm(&mut self, addr: HostGm, buf: &mut [u8]) -> Result<(), GmAccessError>;
    /// CPU write of GM through the host GGTT.
    fn write_gm(&mut self, addr: HostGm, data: &[u8]) -> Result<(), GmAccessError>;
    /// The physical memory the GPU reaches, for the monitor's own tables
    /// in it (the shadow PPGTTs the engines walk).
    fn phys_mem(&mut self) -> &mut dyn PhysMem;
    /// Starts executing `submission` on its engine, in its context (the
    /// engine switches to that context first). It runs as time passes and
    /// completes later ([`Backend::poll`]); an engine that is busy or
    /// faulted refuses it ([`BackendError::EngineNotIdle`]).
    fn submit(&mut self, submission: &Submission) -> Result<SubmissionId, BackendError>;
    /// [`Backend::submit`] of work the monitor had ready since `ready_ns`
    /// (on the [`Backend::advance`] clock): an engine that went idle after
    /// that starts it at the moment it went idle, as hardware starts the
    /// context waiting in its second execlist port at once, not when the
    /// monitor next looks. The software model so stays busy back to back
    /// while work is queued however seldom the monitor polls; hardware
    /// (which starts it on submission) need not override this.
    fn submit_ready_since(
        &mut self,
        submission: &Submission,
        ready_ns: u64,
    ) -> Result<SubmissionId, BackendError> {
        let _ = ready_ns;
        self.submit(submission)
    }
    /// Reports an engine's state.
    fn poll(&mut self, engine: Engine) -> EngineStatus;
    /// The monitor's clock is now `now_ns` (monotonic; an earlier value is
    /// ignored). The software model runs its engines' work up to that
    /// time; hardware runs by itself and ignores it.
    fn advance(&mut self, now_ns: u64);
    /// When submission `id` ended on `engine` (completed, or stopped on a
    /// fault), on the [`Backend::advance`] clock: `None` if it is not the
    /// last to end there or the backend does not know (hardware).
    fn finished_at_ns(&mut self, engine: Engine, id: SubmissionId) -> Option<u64>;
    /// Resets an engine: its fault is cleared and work still running on
    /// it is abandoned (it never completes), so others can use it again.
    fn reset_engine(&mut self, engine: Engine);
    /// Puts `context` back to its power-on state on every engine: nothing
    /// a submission on it loaded (registers, predicates, pipeline state)
    /// survives. Work of that context still on an engine, or a fault it
    /// left there, is abandoned first (that engine is reset), so the
    /// release always completes.
    fn release_context(&mut self, context: ContextId);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_ids_are_the_monitors_and_one_per_slot() {
        assert_eq!(ContextId::MONITOR.vgpu(), None);
        for slot in 0..MAX_VGPUS as u8 {
            let id = VgpuId::new(slot).unwrap();
            let c = ContextId::of_vgpu(id);
            assert_eq!(c.vgpu(), Some(id));
            assert_eq!(ContextId::new(c.index() as u8), Some(c));
        }
        assert_eq!(ContextId::new(ContextId::COUNT as u8), None);
        assert_eq!(ContextId::all().count(), ContextId::COUNT);
    }
}
