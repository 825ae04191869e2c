//! `SimGpu`: a software model of the parts of a Gen9 GPU the monitor uses
//! (ARCHITECTURE.md "GPU backends"). The embedded default backend.
//!
//! What it models:
//! * Registers, in three homes, by one rule (`home_of`): each engine's
//!   ring / execlist control registers (the `regs::ring::BLOCK` table
//!   without CS_GPR: head, tail, CSB, ELSP, fault and error records...),
//!   the few GT-wide registers the monitor programs (forcewake, fences,
//!   the fault records, the GGTT flush), and *everything else*, which is
//!   context-saved: kept per engine context ([`ContextId`] × engine), so
//!   what one vGPU loads is never what another reads. That covers the
//!   GPRs, the predicate registers, the indirect draw / dispatch
//!   parameters and every register a guest may load, whatever the
//!   scanner's whitelist grows to. A context register outside every
//!   engine's block (L3CNTLREG, CACHE_MODE_*, SO_*) belongs to the engine
//!   that accesses it (the render engine for the monitor's MMIO). A
//!   context holds at most [`CONTEXT_REGS`] such registers besides the
//!   GPRs; a command that would store one more stops the engine
//!   ([`FaultKind::Unmodeled`]) instead of dropping it. Masked registers
//!   (forcewake requests, MI_MODE, GFX_MODE, CSB pointer, and the masked
//!   context registers of [`MASKED_CONTEXT_REGISTERS`]) apply the mask and
//!   read back their low half; a forcewake ack mirrors its request. The
//!   monitor's MMIO reads and writes of a context register reach the
//!   context the engine ran last, as on hardware.
//! * Contexts: a submission switches its engine to the submission's
//!   context; [`Backend::release_context`] puts one back to power-on
//!   state (all registers 0).
//! * The GGTT: 1 Mi 8-byte PTEs kept in [`PhysMem`] at a table address the
//!   kernel gives (like the real GGTT in stolen memory).
//! * Submission and time: [`Backend::submit`] only starts a submission on
//!   its engine; the engine executes it incrementally as the monitor's
//!   clock passes ([`Backend::advance`]), each engine on its own, and
//!   completes it in a later [`Backend::poll`]. The cost model
//!   ([`cost_ns`]): every command costs [`COMMAND_NS`] (a register poll one
//!   per read), and a blit one more nanosecond per [`BLIT_BYTES_PER_NS`]
//!   bytes it writes: a 4 KiB page copy or fill costs 1.1 us. Executing
//!   incrementally (rather than whole at submission, completion reported
//!   late) keeps a submission's effects in step with model time, so a
//!   guest waiting for its fence waits for its work's cost: what the
//!   scheduler shares is then real. A command starts when the engine's
//!   clock (the submission's start plus the cost of the commands before
//!   it) is at or before the monitor's; it executes then, whole, and the
//!   next command starts after its cost. When the last command's cost has
//!   elapsed the engine writes a context-status-buffer entry (COMPLETE |
//!   ACTIVE_IDLE) and RING_HEAD, as an execlist engine reports a completed
//!   context, and [`Backend::finished_at_ns`] gives that instant.
//!
//!   What a guest may observe early: a command's memory effects (a store,
//!   a post-sync fence write, a blit's bytes) appear when the command
//!   starts, not when its cost has elapsed, so a guest polling its memory
//!   sees them up to that command's cost (1.1 us for a 4 KiB blit) early,
//!   and the effects of a submission's last commands before the engine
//!   reports the submission complete (a fence written by the last command
//!   is seen before the CSB entry, as on hardware). Nothing depends on the
//!   difference: the scanner audited every command before submission, and
//!   the shadow the engine reads is never rewritten while the engine is
//!   busy ([`crate::mediate`]). A fault stops the engine when the faulting
//!   command starts. MI_SEMAPHORE_WAIT is still evaluated when the engine
//!   reaches it, at once (see `exec`).
//! * The command streamer (module `exec`): every command the scanner
//!   accepts that moves data or control is executed (flow, predication,
//!   register and memory commands, atomics, waits, the ALU, the modelled
//!   blits) and every state command recorded in the context; what the model
//!   does not execute stops the engine with [`FaultKind::Unmodeled`] naming
//!   it, never a silent no-op. Commands are decoded with the scanner's own
//!   table, so the model and the scanner agree on every command's length.
//!
//! * Address spaces (module `ppgtt`): the GGTT, and for a submission in a
//!   PPGTT context ([`Submission::ppgtt`]) the 4-level PPGTT walked with
//!   the Gen9 entry format; a batch started from the PPGTT runs
//!   non-privileged, with the hardware's restrictions (privileged
//!   commands, GGTT accesses and registers outside the non-privileged set
//!   stop the engine with [`FaultKind::PrivilegeViolation`]).
//!
//! Every memory access goes through the GGTT or the context's PPGTT. A
//! not-present GGTT or PPGTT entry, a PPGTT write through a read-only
//! entry, an address past 4 GiB in the GGTT, a PPGTT access in a context
//! without one, a privilege violation, an unknown command, an unmodelled
//! one, a third batch level or a spent budget stops the engine with a
//! [`GpuFault`],
//! fills RING_FAULT_REG / FAULT_TLB_DATA0/1 (memory faults) or EIR / IPEHR
//! (command errors), and leaves the engine faulted until reset. Each
//! submission may run at most [`COMMAND_BUDGET`] commands and write at most
//! [`BLIT_BYTE_BUDGET`] bytes by blits, so a looping batch ends.

use crate::addr::{HostGgttIndex, HostGm, PhysAddr, GGTT_ENTRIES};
use crate::backend::{
    for_each_gm_page, Backend, BackendError, ContextId, EngineStatus, FaultKind, GmAccessError,
    GpuFault, PhysMem, PhysMemError, Submission, SubmissionId,
};
use crate::engine::Engine;
use crate::ggtt::{GgttFlush, HostPte};
use crate::regs::{fence, forcewake, gt, ring, MmioOffset};
use core::fmt;

#[cfg(test)]
pub(crate) mod device;
mod draw;
mod exec;
pub(crate) mod ppgtt;

pub use exec::BLIT_BYTE_BUDGET;

/// Commands one submission may execute (a register poll counts one per
/// read).
pub const COMMAND_BUDGET: u32 = 1 << 20;
/// Model time one command takes (fetch, decode, execute; each read of a
/// register poll again): 100 ns, the order of a command streamer's
/// per-command time, so that a submission of MI commands is cheap next to
/// one that moves memory.
pub const COMMAND_NS: u64 = 100;
/// Bytes a blit writes per nanosecond of model time, on top of its
/// command's [`COMMAND_NS`]: 4 bytes (4 GB/s, the order of a Gen9
/// blitter's fill and copy rate), so that a 4 KiB page copy or fill costs
/// about a microsecond. What a copy reads is not counted separately.
pub const BLIT_BYTES_PER_NS: u64 = 4;

/// Model time of `commands` commands whose blits wrote `blit_bytes` bytes.
pub const fn cost_ns(commands: u32, blit_bytes: u64) -> u64 {
    (commands as u64 * COMMAND_NS).saturating_add(blit_bytes / BLIT_BYTES_PER_NS)
}
/// Distinct GT-wide registers the model stores (forcewake, fences, fault
/// records).
pub const GLOBAL_REGS: usize = 128;
/// Context-saved registers one context holds per engine, besides its 16
/// GPRs.
pub const CONTEXT_REGS: usize = 64;
/// Context registers with a write mask in bits 31:16 (absolute offsets;
/// i915 writes them with `_MASKED_BIT_ENABLE` / `wa_masked_*`, Mesa with
/// its `REG_MASK`): CS_DEBUG_MODE2, CS_CHICKEN1, CACHE_MODE_0, CACHE_MODE_1,
/// BCS_SWCTRL.
pub const MASKED_CONTEXT_REGISTERS: [u32; 5] = [0x20d8, 0x2580, 0x7000, 0x7004, 0x2_2200];
/// Bytes of PhysMem the GGTT table occupies.
pub const GGTT_TABLE_BYTES: u64 = GGTT_ENTRIES as u64 * 8;

const ENGINE_BLOCK_DWORDS: usize = 0x800 / 4;

/// Errors building a [`SimGpu`] (monitor configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// The GGTT table is not page aligned or not backed by memory.
    BadGgttTable(PhysAddr),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::BadGgttTable(a) => {
                write!(
                    f,
                    "GGTT table at {a} is not page aligned or not backed (needs 8 MiB)"
                )
            }
        }
    }
}

/// The submission an engine is executing: where its command streamer
/// reads, what it has spent of its budgets, and when it started.
#[derive(Clone, Copy, Debug)]
struct Running {
    id: SubmissionId,
    submission: Submission,
    cursor: exec::Cursor,
    commands: u32,
    blit_bytes: u64,
    started_ns: u64,
    /// [`SimGpu::set_slowdown`] when it was submitted.
    slowdown: u64,
}

impl Running {
    /// When the next command starts (once the cursor is done: when the
    /// submission ends).
    fn clock_ns(&self) -> u64 {
        self.started_ns
            .saturating_add(cost_ns(self.commands, self.blit_bytes).saturating_mul(self.slowdown))
    }
}

#[derive(Clone, Debug)]
struct SimEngine {
    /// The ring / execlist control registers (only those: see [`home_of`]).
    regs: [u32; ENGINE_BLOCK_DWORDS],
    /// The context loaded last (the monitor's until a submission runs).
    current: ContextId,
    running: Option<Running>,
    last_completed: Option<SubmissionId>,
    /// The submission that ended last (completed or faulted), and when.
    finished: Option<(SubmissionId, u64)>,
    fault: Option<GpuFault>,
    user_interrupts: u64,
    csb_write: u32,
}

impl SimEngine {
    const fn new() -> Self {
        SimEngine {
            regs: [0; ENGINE_BLOCK_DWORDS],
            current: ContextId::MONITOR,
            running: None,
            last_completed: None,
            finished: None,
            fault: None,
            user_interrupts: 0,
            // CSB write pointer starts at the last entry (i915 resets it to 5
            // on Gen9 so that the first event lands in entry 0).
            csb_write: ring::CSB_ENTRIES - 1,
        }
    }
}

/// What one engine saves and restores with one context: its context
/// registers (all 0 at power-on and after a release).
#[derive(Clone, Debug)]
struct ContextImage {
    /// CS_GPR0..15 of the engine, 64 bits each.
    gpr: [u64; 16],
    /// Every other context-saved register, by absolute offset.
    regs: heapless::LinearMap<u32, u32, CONTEXT_REGS>,
    /// The command streamer ALU's sources, accumulator and flags.
    alu: exec::Alu,
    /// MI_SET_PREDICATE's Predicate Enable (kept in MI_MODE, which the
    /// hardware saves with the context).
    set_predicate: u8,
    /// What the state commands set.
    pipeline: exec::PipelineState,
}

impl ContextImage {
    fn is_fresh(&self) -> bool {
        self.gpr == [0; 16]
            && self.regs.is_empty()
            && self.alu == exec::Alu::ZERO
            && self.set_predicate == 0
            && self.pipeline == exec::PipelineState::new()
    }

    const fn new() -> Self {
        ContextImage {
            gpr: [0; 16],
            regs: heapless::LinearMap::new(),
            alu: exec::Alu::ZERO,
            set_predicate: 0,
            pipeline: exec::PipelineState::new(),
        }
    }
}

/// Where the model keeps a register ([`home_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    /// A ring / execlist control register of an engine (offset in its block).
    Control(Engine, u32),
    /// A GT-wide register the model keeps once.
    Global,
    /// Context-saved state of whatever context runs on the engine.
    Context(Engine),
}

/// The one rule: a register is an engine's control register if the ring
/// block table declares it (CS_GPR aside; the CSB entries and the upper
/// half of the timestamp with their first dword), GT-wide if it is a
/// forcewake, fence, fault-record or GGTT-flush register, and otherwise
/// context-saved, of its block's engine, or of `accessing` outside every
/// engine block.
fn home_of(abs: u32, accessing: Engine) -> Home {
    if let Some((engine, rel)) = crate::regs::ring_register_of(MmioOffset::reg(abs & 0x1f_fffc))
        .filter(|_| abs < crate::regs::MMIO_REGISTER_SPACE)
    {
        let csb = ring::CSB_BASE..ring::CSB_BASE + 8 * ring::CSB_ENTRIES;
        let control = csb.contains(&rel)
            || rel == ring::TIMESTAMP + 4
            || ring::BLOCK
                .iter()
                .any(|r| r.offset == rel && r.offset != ring::GPR_BASE);
        return if control {
            Home::Control(engine, rel)
        } else {
            Home::Context(engine)
        };
    }
    let global = forcewake::BLOCK.iter().any(|r| r.offset == abs)
        || fence::decode(abs).is_some()
        || [
            gt::RING_FAULT,
            gt::FAULT_TLB_DATA0,
            gt::FAULT_TLB_DATA1,
            gt::GFX_FLSH_CNTL,
        ]
        .iter()
        .any(|r| r.raw() == abs);
    if global {
        Home::Global
    } else {
        Home::Context(accessing)
    }
}

/// The GPR (and which half) a context register offset names.
fn gpr_of(engine: Engine, abs: u32) -> Option<(usize, bool)> {
    let rel = abs.checked_sub(engine.mmio_base() + ring::GPR_BASE)?;
    (rel < 16 * 8).then_some(((rel / 8) as usize, rel % 8 == 4))
}

/// The software Gen9 GPU over memory `M`.
#[derive(Debug)]
pub struct SimGpu<M: PhysMem> {
    mem: M,
    ggtt_table: PhysAddr,
    engines: [SimEngine; Engine::COUNT],
    /// Per context and engine, what the engine saves with the context.
    contexts: [[ContextImage; Engine::COUNT]; ContextId::COUNT],
    globals: heapless::LinearMap<u32, u32, GLOBAL_REGS>,
    next_submission: u64,
    timestamp: u64,
    /// The monitor's clock as [`Backend::advance`] last gave it.
    now_ns: u64,
    /// Model time per unit of [`cost_ns`] ([`SimGpu::set_slowdown`]).
    slowdown: u64,
}

struct Stop {
    kind: FaultKind,
    address: Option<u64>,
}

impl Stop {
    fn kind(kind: FaultKind) -> Self {
        Stop {
            kind,
            address: None,
        }
    }
}

impl From<GmAccessError> for Stop {
    fn from(e: GmAccessError) -> Self {
        match e {
            GmAccessError::OutsideGm { addr } => Stop {
                kind: FaultKind::OutsideGgtt,
                address: Some(addr),
            },
            GmAccessError::InvalidPte { addr } => Stop {
                kind: FaultKind::InvalidPte,
                address: Some(addr.raw()),
            },
            GmAccessError::NoMemory { addr, .. } => Stop {
                kind: FaultKind::NoMemory,
                address: Some(addr.raw()),
            },
        }
    }
}

impl<M: PhysMem> SimGpu<M> {
    /// A model whose memory is `mem` and whose GGTT table lives at
    /// `ggtt_table` (8 MiB of `mem`, page aligned). All PTEs start not
    /// present.
    pub fn new(mut mem: M, ggtt_table: PhysAddr) -> Result<Self, SimError> {
        if !ggtt_table.raw().is_multiple_of(4096) {
            return Err(SimError::BadGgttTable(ggtt_table));
        }
        let zero = [0u8; 4096];
        let mut off = 0;
        while off < GGTT_TABLE_BYTES {
            let at = ggtt_table
                .checked_add(off)
                .ok_or(SimError::BadGgttTable(ggtt_table))?;
            mem.write(at, &zero)
                .map_err(|_| SimError::BadGgttTable(ggtt_table))?;
            off += 4096;
        }
        Ok(SimGpu {
            mem,
            ggtt_table,
            engines: core::array::from_fn(|_| SimEngine::new()),
            contexts: core::array::from_fn(|_| core::array::from_fn(|_| ContextImage::new())),
            globals: heapless::LinearMap::new(),
            next_submission: 1,
            timestamp: 0,
            now_ns: 0,
            slowdown: 1,
        })
    }

    /// From the next submission on, work takes `factor` (at least 1)
    /// times its [`cost_ns`]: a slower engine. Under full emulation (QEMU
    /// TCG) the CPU executes the model's blits more slowly than their
    /// model time passes, so no amount of guest work keeps the model's
    /// engine busy; slowed enough, the engine is what limits busy guests,
    /// as a real GPU is, and the vGPU scheduler has something to share.
    pub fn set_slowdown(&mut self, factor: u32) {
        self.slowdown = u64::from(factor.max(1));
    }

    /// The model's clock: the latest time [`Backend::advance`] gave.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The memory (for the kernel's and tests' own access).
    pub fn mem(&self) -> &M {
        &self.mem
    }
    /// Mutable access to the memory.
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }
    /// MI_USER_INTERRUPTs an engine has executed.
    pub fn user_interrupts(&self, engine: Engine) -> u64 {
        self.engines[engine.index()].user_interrupts
    }
    /// Puts `context`'s state on `engine` alone back to power-on (what a
    /// context load with restore inhibit does: the engine state is not
    /// restored from the image; the device model of [`device`] uses it).
    #[cfg(test)]
    pub(crate) fn reset_context_on(&mut self, context: ContextId, engine: Engine) {
        self.contexts[context.index()][engine.index()] = ContextImage::new();
    }

    /// Whether `context` holds only power-on state on every engine: no
    /// register, ALU, predicate or pipeline state was set in it since its
    /// last release. The fuzz harness checks with it that no other
    /// context's work reached a context.
    pub fn context_is_fresh(&self, context: ContextId) -> bool {
        self.contexts[context.index()]
            .iter()
            .all(ContextImage::is_fresh)
    }

    fn pte(&self, index: HostGgttIndex) -> HostPte {
        let mut b = [0u8; 8];
        let at = self
            .ggtt_table
            .checked_add(u64::from(index.raw()) * 8)
            .map(|a| self.mem.read(a, &mut b));
        match at {
            Some(Ok(())) => HostPte::from_raw(u64::from_le_bytes(b)),
            _ => HostPte::INVALID,
        }
    }

    fn gm_read(&self, addr: HostGm, buf: &mut [u8]) -> Result<(), GmAccessError> {
        let mem = &self.mem;
        for_each_gm_page(
            addr,
            buf.len(),
            |i| self.pte(i),
            |phys, at, len| mem.read(phys, &mut buf[at..at + len]),
        )
    }

    fn gm_write(&mut self, addr: HostGm, data: &[u8]) -> Result<(), GmAccessError> {
        let table = self.ggtt_table;
        let mem = &mut self.mem;
        // PTE lookups read the table through a shared view of `mem` inside
        // the access closure's borrow; do them up front page by page.
        let mut done = 0usize;
        while done < data.len() {
            let at = addr
                .checked_add(done as u64)
                .ok_or(GmAccessError::OutsideGm {
                    addr: addr.raw() + done as u64,
                })?;
            let chunk = ((4096 - at.page_offset()) as usize).min(data.len() - done);
            let mut b = [0u8; 8];
            let entry = table
                .checked_add(u64::from(at.ggtt_index().raw()) * 8)
                .and_then(|a| mem.read(a, &mut b).ok())
                .map(|()| HostPte::from_raw(u64::from_le_bytes(b)))
                .unwrap_or(HostPte::INVALID);
            let frame = entry
                .frame()
                .ok_or(GmAccessError::InvalidPte { addr: at })?;
            let phys = frame.at(at.page_offset());
            mem.write(phys, &data[done..done + chunk])
                .map_err(|_: PhysMemError| GmAccessError::NoMemory { addr: at, phys })?;
            done += chunk;
        }
        Ok(())
    }

    /// Reads a register as `engine` running `context` sees it (a command
    /// of that context, or the monitor's MMIO for the engine's current
    /// context).
    fn reg_read(&self, engine: Engine, context: ContextId, abs: u32) -> u32 {
        let abs = abs & 0x7f_fffc;
        match home_of(abs, engine) {
            Home::Control(e, rel) => {
                if rel == ring::TIMESTAMP {
                    return self.timestamp as u32;
                }
                if rel == ring::TIMESTAMP + 4 {
                    return (self.timestamp >> 32) as u32;
                }
                self.engines[e.index()].regs[(rel / 4) as usize]
            }
            Home::Global => {
                if let Some(d) = forcewake::Domain::ALL.iter().find(|d| d.ack().raw() == abs) {
                    return self.globals.get(&d.request().raw()).copied().unwrap_or(0) & 0xffff;
                }
                self.globals.get(&abs).copied().unwrap_or(0)
            }
            Home::Context(e) => {
                // A command of `context` reaching another engine's block
                // sees that engine's current context, as the hardware's
                // registers hold whatever context runs there.
                let ctx = if e == engine {
                    context
                } else {
                    self.engines[e.index()].current
                };
                let image = &self.contexts[ctx.index()][e.index()];
                let value = match gpr_of(e, abs) {
                    Some((n, high)) => (image.gpr[n] >> if high { 32 } else { 0 }) as u32,
                    None => image.regs.get(&abs).copied().unwrap_or(0),
                };
                if MASKED_CONTEXT_REGISTERS.contains(&abs) {
                    value & 0xffff
                } else {
                    value
                }
            }
        }
    }

    /// Writes a register as `engine` running `context` does; `Err` when
    /// the context's register file is full (the caller decides whether
    /// that stops the engine).
    fn reg_write(
        &mut self,
        engine: Engine,
        context: ContextId,
        abs: u32,
        value: u32,
    ) -> Result<(), Stop> {
        let abs = abs & 0x7f_fffc;
        let home = home_of(abs, engine);
        let masked = match home {
            Home::Control(_, rel) => matches!(
                rel,
                ring::MI_MODE | ring::MODE | ring::CSB_PTR | ring::CONTEXT_CONTROL
            ),
            Home::Global => forcewake::Domain::ALL
                .iter()
                .any(|d| d.request().raw() == abs),
            Home::Context(_) => MASKED_CONTEXT_REGISTERS.contains(&abs),
        };
        let value = if masked {
            let old = match home {
                // Unmasked storage: a masked context register keeps its low
                // half only.
                Home::Global => self.globals.get(&abs).copied().unwrap_or(0),
                _ => self.reg_read(engine, context, abs),
            };
            let mask = value >> 16;
            (old & !mask) | (value & mask)
        } else {
            value
        };
        match home {
            Home::Control(e, rel) => self.engines[e.index()].regs[(rel / 4) as usize] = value,
            Home::Global => {
                // A full map drops the write: an unimplemented offset.
                let _ = self.globals.insert(abs, value);
            }
            Home::Context(e) => {
                let ctx = if e == engine {
                    context
                } else {
                    self.engines[e.index()].current
                };
                let image = &mut self.contexts[ctx.index()][e.index()];
                match gpr_of(e, abs) {
                    Some((n, high)) => {
                        let shift = if high { 32 } else { 0 };
                        image.gpr[n] =
                            (image.gpr[n] & !(0xffff_ffff << shift)) | (u64::from(value) << shift);
                    }
                    None => {
                        image.regs.insert(abs, value).map_err(|_| {
                            Stop::kind(FaultKind::Unmodeled(
                                "a context register beyond the model's register file",
                            ))
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The monitor's MMIO view: a context register of `reg`'s engine (the
    /// render engine outside every block) in that engine's current context.
    fn mmio_engine(&self, abs: u32) -> (Engine, ContextId) {
        let engine = match home_of(abs & 0x7f_fffc, Engine::Render) {
            Home::Context(e) | Home::Control(e, _) => e,
            Home::Global => Engine::Render,
        };
        (engine, self.engines[engine.index()].current)
    }

    fn engine_reg(&mut self, engine: Engine, rel: u32) -> &mut u32 {
        &mut self.engines[engine.index()].regs[(rel / 4) as usize]
    }

    fn record_fault(
        &mut self,
        sub: &Submission,
        id: SubmissionId,
        header: u32,
        at: u64,
        stop: Stop,
    ) {
        let engine = sub.engine();
        let fault = GpuFault {
            engine,
            context: sub.context(),
            submission: id,
            kind: stop.kind,
            address: stop.address,
            header,
        };
        match stop.address {
            Some(addr) => {
                // RING_FAULT_REG names the hardware engine id.
                let engine_id = crate::regs::hw_engine_id(engine);
                let _ = self.globals.insert(
                    gt::RING_FAULT.raw(),
                    gt::RING_FAULT_VALID | (engine_id << 12),
                );
                let _ = self
                    .globals
                    .insert(gt::FAULT_TLB_DATA0.raw(), (addr >> 12) as u32);
                // The GGTT bit tells a GGTT fault from a PPGTT one.
                let ppgtt = matches!(
                    stop.kind,
                    FaultKind::PpgttNotPresent | FaultKind::PpgttReadOnly
                );
                let space = if ppgtt { 0 } else { gt::FAULT_GGTT };
                let _ = self.globals.insert(
                    gt::FAULT_TLB_DATA1.raw(),
                    space | ((addr >> 44) & 0xf) as u32,
                );
            }
            None => {
                *self.engine_reg(engine, ring::EIR) |= 1;
                *self.engine_reg(engine, ring::IPEHR) = header;
            }
        }
        *self.engine_reg(engine, ring::ACTHD) = at as u32;
        self.engines[engine.index()].fault = Some(fault);
    }

    fn complete(&mut self, engine: Engine, id: SubmissionId, tail: u32, at_ns: u64) {
        let e = &mut self.engines[engine.index()];
        e.last_completed = Some(id);
        e.finished = Some((id, at_ns));
        e.csb_write = (e.csb_write + 1) % ring::CSB_ENTRIES;
        let slot = e.csb_write;
        e.regs[((ring::CSB_BASE + 8 * slot) / 4) as usize] =
            ring::CSB_STATUS_COMPLETE | ring::CSB_STATUS_ACTIVE_IDLE;
        e.regs[((ring::CSB_BASE + 8 * slot + 4) / 4) as usize] = id.0 as u32;
        let ptr = &mut e.regs[(ring::CSB_PTR / 4) as usize];
        *ptr = (*ptr & !0xf) | slot;
        e.regs[(ring::HEAD / 4) as usize] = tail;
        e.regs[(ring::TAIL / 4) as usize] = tail;
    }
}

impl<M: PhysMem> Backend for SimGpu<M> {
    fn read_reg(&mut self, reg: MmioOffset) -> u32 {
        let (engine, context) = self.mmio_engine(reg.raw());
        self.reg_read(engine, context, reg.raw())
    }

    fn write_reg(&mut self, reg: MmioOffset, value: u32) {
        let (engine, context) = self.mmio_engine(reg.raw());
        // A full register file drops the monitor's write, as for an
        // unimplemented offset.
        let _ = self.reg_write(engine, context, reg.raw(), value);
    }

    fn read_pte(&mut self, index: HostGgttIndex) -> HostPte {
        self.pte(index)
    }

    fn write_pte(&mut self, index: HostGgttIndex, pte: HostPte) -> GgttFlush {
        if let Some(at) = self.ggtt_table.checked_add(u64::from(index.raw()) * 8) {
            // The table was checked to be backed at construction.
            let _ = self.mem.write(at, &pte.raw().to_le_bytes());
        }
        GgttFlush::new()
    }

    fn flush_ggtt(&mut self, flush: GgttFlush) {
        // The model has no GGTT TLB: writes are visible at once.
        flush.ignore();
    }

    fn read_gm(&mut self, addr: HostGm, buf: &mut [u8]) -> Result<(), GmAccessError> {
        self.gm_read(addr, buf)
    }

    fn write_gm(&mut self, addr: HostGm, data: &[u8]) -> Result<(), GmAccessError> {
        self.gm_write(addr, data)
    }

    fn phys_mem(&mut self) -> &mut dyn PhysMem {
        &mut self.mem
    }

    fn submit(&mut self, submission: &Submission) -> Result<SubmissionId, BackendError> {
        self.submit_ready_since(submission, self.now_ns)
    }

    fn submit_ready_since(
        &mut self,
        submission: &Submission,
        ready_ns: u64,
    ) -> Result<SubmissionId, BackendError> {
        let engine = submission.engine();
        let e = &self.engines[engine.index()];
        if e.fault.is_some() || e.running.is_some() {
            return Err(BackendError::EngineNotIdle(engine));
        }
        // Not before it was ready, nor before the engine's last work ended,
        // nor after now.
        let idle_since = e.finished.map_or(0, |(_, at)| at);
        let start_ns = ready_ns.max(idle_since).min(self.now_ns);
        let id = SubmissionId(self.next_submission);
        self.next_submission += 1;
        self.engines[engine.index()].current = submission.context();
        *self.engine_reg(engine, ring::START) = submission.ring().base().raw() as u32;
        *self.engine_reg(engine, ring::HEAD) = submission.head();
        // Nothing executes before the clock is advanced.
        self.engines[engine.index()].running = Some(Running {
            id,
            submission: *submission,
            cursor: exec::Cursor::new(submission),
            commands: 0,
            blit_bytes: 0,
            started_ns: start_ns,
            slowdown: self.slowdown,
        });
        Ok(id)
    }

    fn poll(&mut self, engine: Engine) -> EngineStatus {
        let e = &self.engines[engine.index()];
        match (e.fault, e.running) {
            (Some(f), _) => EngineStatus::Faulted(f),
            (None, Some(run)) => EngineStatus::Busy { running: run.id },
            (None, None) => EngineStatus::Idle {
                last_completed: e.last_completed,
            },
        }
    }

    fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        for engine in Engine::ALL {
            self.run_engine(engine);
        }
    }

    fn finished_at_ns(&mut self, engine: Engine, id: SubmissionId) -> Option<u64> {
        self.engines[engine.index()]
            .finished
            .filter(|&(done, _)| done == id)
            .map(|(_, at)| at)
    }

    fn reset_engine(&mut self, engine: Engine) {
        let e = &mut self.engines[engine.index()];
        e.fault = None;
        // Work still running is abandoned: it never completes.
        e.running = None;
        e.regs[(ring::EIR / 4) as usize] = 0;
        let _ = self.globals.remove(&gt::RING_FAULT.raw());
    }

    fn release_context(&mut self, context: ContextId) {
        for engine in Engine::ALL {
            // Work of the context still running, or a fault it left, holds
            // the engine: reset it first.
            let e = &self.engines[engine.index()];
            let held = e.fault.is_some_and(|f| f.context == context)
                || e.running.is_some_and(|r| r.submission.context() == context);
            if held {
                self.reset_engine(engine);
            }
            self.contexts[context.index()][engine.index()] = ContextImage::new();
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::testutil::*;

    pub(super) const RING: u64 = 0x10_0000;
    pub(super) const BATCH: u64 = 0x20_0000;
    pub(super) const DATA: u64 = 0x30_0000;

    pub(super) fn setup() -> SimGpu<SparseMem> {
        let mut g = sim();
        map(&mut g, RING, 0x100, 1);
        map(&mut g, BATCH, 0x200, 4);
        map(&mut g, DATA, 0x300, 16);
        g
    }

    pub(super) fn run(g: &mut SimGpu<SparseMem>, engine: Engine, cmds: &[u32]) -> EngineStatus {
        run_on(g, engine, ContextId::MONITOR, cmds)
    }

    pub(super) fn run_on(
        g: &mut SimGpu<SparseMem>,
        engine: Engine,
        context: ContextId,
        cmds: &[u32],
    ) -> EngineStatus {
        let mut v = cmds.to_vec();
        if v.len() % 2 == 1 {
            v.push(NOOP);
        }
        write_dwords(g, RING, &v);
        let sub =
            Submission::new(engine, context, range(RING, 4096), 0, (v.len() * 4) as u32).unwrap();
        let id = g.submit(&sub).unwrap();
        let st = finish(g, engine);
        if let EngineStatus::Idle { last_completed } = st {
            assert_eq!(last_completed, Some(id));
        }
        st
    }

    pub(super) fn idle(st: EngineStatus) {
        assert!(matches!(st, EngineStatus::Idle { .. }), "{st:?}");
    }

    #[test]
    fn store_data_imm_writes_dword_and_qword_through_the_ggtt() {
        let mut g = setup();
        let mut s = sdi(DATA + 8, 0xdead_beef).to_vec();
        s.extend(sdi_qword(DATA + 0x1000, 0x0123_4567_89ab_cdef));
        idle(run(&mut g, Engine::Render, &s));
        assert_eq!(read_u32(&mut g, DATA + 8), 0xdead_beef);
        assert_eq!(read_u32(&mut g, DATA + 4), 0);
        assert_eq!(read_u32(&mut g, DATA + 12), 0);
        assert_eq!(read_u64(&mut g, DATA + 0x1000), 0x0123_4567_89ab_cdef);
        // The bytes landed in the frames the PTEs name.
        let mut b = [0u8; 4];
        g.mem()
            .read(PhysAddr::new(0x300_008).unwrap(), &mut b)
            .unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
    }

    #[test]
    fn lri_then_srm_round_trips_a_register() {
        let mut g = setup();
        let gpr0 = Engine::Blitter.mmio_base() + ring::GPR_BASE;
        let mut s = lri(gpr0, 0x5555_aaaa).to_vec();
        s.extend(srm(gpr0, DATA + 0x40));
        idle(run(&mut g, Engine::Blitter, &s));
        assert_eq!(read_u32(&mut g, DATA + 0x40), 0x5555_aaaa);
        assert_eq!(g.read_reg(MmioOffset::reg(gpr0)), 0x5555_aaaa);
    }

    #[test]
    fn post_sync_writes_of_flush_dw_and_pipe_control() {
        let mut g = setup();
        idle(run(&mut g, Engine::Blitter, &flush_dw_imm(DATA + 0x80, 7)));
        let pc = pipe_control_imm(DATA + 0x88, 0x1111_2222_3333_4444);
        idle(run(&mut g, Engine::Render, &pc));
        // MI_FLUSH_DW is not a render command.
        let st = run(&mut g, Engine::Render, &flush_dw_imm(DATA + 0x90, 7));
        assert!(matches!(st, EngineStatus::Faulted(f) if f.kind == FaultKind::InvalidCommand));
        assert_eq!(read_u32(&mut g, DATA + 0x80), 7);
        assert_eq!(read_u32(&mut g, DATA + 0x84), 0);
        assert_eq!(read_u64(&mut g, DATA + 0x88), 0x1111_2222_3333_4444);
    }

    #[test]
    fn user_interrupt_and_noop_are_counted_and_csb_reports_completion() {
        let mut g = setup();
        idle(run(
            &mut g,
            Engine::Video,
            &[NOOP, USER_INTERRUPT, USER_INTERRUPT, NOOP],
        ));
        assert_eq!(g.user_interrupts(Engine::Video), 2);
        let base = Engine::Video.mmio_base();
        let ptr = g.read_reg(MmioOffset::reg(base + ring::CSB_PTR)) & 0xf;
        assert_eq!(ptr, 0);
        let status = g.read_reg(MmioOffset::reg(base + ring::CSB_BASE));
        assert_eq!(
            status,
            ring::CSB_STATUS_COMPLETE | ring::CSB_STATUS_ACTIVE_IDLE
        );
        assert_eq!(g.read_reg(MmioOffset::reg(base + ring::HEAD)), 16);
    }

    #[test]
    fn batches_chain_and_nest_two_levels() {
        let mut g = setup();
        // first level at BATCH: store 1, call second level, store 3, chain to BATCH+0x200
        let mut first = sdi(DATA, 1).to_vec();
        first.extend(bb_start(BATCH + 0x100, true));
        first.extend(sdi(DATA + 8, 3));
        first.extend(bb_start(BATCH + 0x200, false));
        write_dwords(&mut g, BATCH, &first);
        let mut second = sdi(DATA + 4, 2).to_vec();
        second.push(BB_END);
        write_dwords(&mut g, BATCH + 0x100, &second);
        let mut chained = sdi(DATA + 12, 4).to_vec();
        chained.push(BB_END);
        write_dwords(&mut g, BATCH + 0x200, &chained);
        let mut ring_cmds = bb_start(BATCH, false).to_vec();
        ring_cmds.extend(sdi(DATA + 16, 5));
        idle(run(&mut g, Engine::Render, &ring_cmds));
        for (i, v) in [1, 2, 3, 4, 5].into_iter().enumerate() {
            assert_eq!(read_u32(&mut g, DATA + 4 * i as u64), v);
        }
    }

    #[test]
    fn third_batch_level_faults() {
        let mut g = setup();
        write_dwords(&mut g, BATCH, &bb_start(BATCH + 0x100, true));
        write_dwords(&mut g, BATCH + 0x100, &bb_start(BATCH + 0x200, true));
        let st = run(&mut g, Engine::Render, &bb_start(BATCH, false));
        assert!(matches!(
            st,
            EngineStatus::Faulted(GpuFault {
                kind: FaultKind::BatchNesting,
                ..
            })
        ));
    }

    #[test]
    fn looping_batch_ends_as_a_hang() {
        let mut g = setup();
        write_dwords(&mut g, BATCH, &bb_start(BATCH, false));
        let st = run(&mut g, Engine::Render, &bb_start(BATCH, false));
        assert!(matches!(
            st,
            EngineStatus::Faulted(GpuFault {
                kind: FaultKind::Hang,
                ..
            })
        ));
    }

    #[test]
    fn color_blt_fills_exactly_the_rectangle() {
        let mut g = setup();
        // 16 px wide surface (pitch 64), fill x 2..5, y 1..3.
        idle(run(
            &mut g,
            Engine::Blitter,
            &color_blt(DATA, 64, 2, 1, 5, 3, 0xaabb_ccdd),
        ));
        for y in 0..4u64 {
            for x in 0..16u64 {
                let v = read_u32(&mut g, DATA + y * 64 + x * 4);
                let inside = (2..5).contains(&x) && (1..3).contains(&y);
                assert_eq!(v, if inside { 0xaabb_ccdd } else { 0 }, "x {x} y {y}");
            }
        }
    }

    #[test]
    fn src_copy_blt_copies_rows_between_pitches() {
        let mut g = setup();
        let src: Vec<u32> = (0..64).collect(); // 8x8 px, pitch 32
        write_dwords(&mut g, DATA + 0x2000, &src);
        let cmd = copy_blt(DATA, 64, 1, 1, 4, 3, DATA + 0x2000, 32, 2, 5);
        idle(run(&mut g, Engine::Blitter, &cmd));
        for y in 0..4u64 {
            for x in 0..16u64 {
                let v = read_u32(&mut g, DATA + y * 64 + x * 4);
                let want = if (1..4).contains(&x) && (1..3).contains(&y) {
                    ((5 + y - 1) * 8 + (2 + x - 1)) as u32
                } else {
                    0
                };
                assert_eq!(v, want, "x {x} y {y}");
            }
        }
    }

    #[test]
    fn invalid_pte_is_a_recorded_page_fault_not_a_panic() {
        let mut g = setup();
        let hole = 0x4000_0000u64;
        let st = run(&mut g, Engine::Render, &sdi(hole + 0x10, 1));
        let EngineStatus::Faulted(f) = st else {
            panic!("{st:?}")
        };
        assert_eq!(f.kind, FaultKind::InvalidPte);
        assert_eq!(f.address, Some(hole + 0x10));
        assert_eq!(g.read_reg(gt::RING_FAULT) & gt::RING_FAULT_VALID, 1);
        assert_eq!(g.read_reg(gt::FAULT_TLB_DATA0), (hole >> 12) as u32);
        // Faulted engine refuses work until reset; other engines go on.
        let sub =
            Submission::new(Engine::Render, ContextId::MONITOR, range(RING, 4096), 0, 8).unwrap();
        assert_eq!(
            g.submit(&sub),
            Err(BackendError::EngineNotIdle(Engine::Render))
        );
        idle(run(&mut g, Engine::Blitter, &sdi(DATA, 9)));
        g.reset_engine(Engine::Render);
        idle(run(&mut g, Engine::Render, &sdi(DATA, 9)));
    }

    #[test]
    fn unknown_command_sets_ipehr() {
        let mut g = setup();
        let bad = 0x3f << 23;
        let st = run(&mut g, Engine::Render, &[bad, 0]);
        assert!(matches!(
            st,
            EngineStatus::Faulted(GpuFault {
                kind: FaultKind::InvalidCommand,
                ..
            })
        ));
        assert_eq!(
            g.read_reg(MmioOffset::reg(Engine::Render.mmio_base() + ring::IPEHR)),
            bad
        );
    }

    #[test]
    fn ring_wraps_around_its_end() {
        let mut g = setup();
        let cmd = sdi(DATA, 0x77);
        // Place the 4 dwords across the ring end: head at 4096 - 8.
        write_dwords(&mut g, RING + 4088, &cmd[..2]);
        write_dwords(&mut g, RING, &cmd[2..]);
        let sub = Submission::new(
            Engine::Render,
            ContextId::MONITOR,
            range(RING, 4096),
            4088,
            8,
        )
        .unwrap();
        g.submit(&sub).unwrap();
        idle(finish(&mut g, Engine::Render));
        assert_eq!(read_u32(&mut g, DATA), 0x77);
    }

    pub(super) fn vgpu_context(slot: u8) -> ContextId {
        ContextId::of_vgpu(crate::partition::VgpuId::new(slot).unwrap())
    }

    /// Loads `value` into `reg` on context `load`, then stores `reg` from
    /// context `store` into DATA + `at`; returns what was stored.
    fn load_then_store(
        g: &mut SimGpu<SparseMem>,
        engine: Engine,
        (load, store): (ContextId, ContextId),
        reg: u32,
        value: u32,
        at: u64,
    ) -> u32 {
        idle(run_on(g, engine, load, &lri(reg, value)));
        idle(run_on(g, engine, store, &srm(reg, DATA + at)));
        read_u32(g, DATA + at)
    }

    #[test]
    fn a_gpr_one_context_loads_is_not_what_another_reads() {
        let mut g = setup();
        let (a, b) = (vgpu_context(0), vgpu_context(1));
        for engine in Engine::ALL {
            let gpr0_hi = engine.mmio_base() + ring::GPR_BASE + 4;
            let at = 0x100 + 8 * engine.index() as u64;
            assert_eq!(
                load_then_store(&mut g, engine, (a, b), gpr0_hi, 0x5eed, at),
                0,
                "{engine}"
            );
            // The loading context still has its own value.
            idle(run_on(&mut g, engine, a, &srm(gpr0_hi, DATA + at + 4)));
            assert_eq!(read_u32(&mut g, DATA + at + 4), 0x5eed, "{engine}");
        }
    }

    #[test]
    fn predicate_and_other_context_registers_are_per_context() {
        let mut g = setup();
        let (a, b) = (vgpu_context(0), vgpu_context(1));
        // MI_PREDICATE_SRC0, MI_PREDICATE_RESULT (render block), the
        // indirect draw count, and L3CNTLREG, outside every engine block.
        for (i, reg) in [0x2400, 0x2418, 0x2434, 0x7034].into_iter().enumerate() {
            let at = 0x200 + 4 * i as u64;
            assert_eq!(
                load_then_store(&mut g, Engine::Render, (a, b), reg, 0xabc0 + i as u32, at),
                0,
                "{reg:#x}"
            );
            idle(run_on(&mut g, Engine::Render, a, &srm(reg, DATA + at)));
            assert_eq!(read_u32(&mut g, DATA + at), 0xabc0 + i as u32, "{reg:#x}");
        }
    }

    #[test]
    fn release_puts_a_context_back_to_power_on_state() {
        let mut g = setup();
        let a = vgpu_context(3);
        let gpr5 = Engine::Video.mmio_base() + ring::GPR_BASE + 5 * 8;
        idle(run_on(&mut g, Engine::Video, a, &lri(gpr5, 77)));
        idle(run_on(&mut g, Engine::Render, a, &lri(0x2408, 78)));
        assert!(!g.context_is_fresh(a));
        assert!(g.context_is_fresh(vgpu_context(2)));
        g.release_context(a);
        assert!(g.context_is_fresh(a));
        idle(run_on(&mut g, Engine::Video, a, &srm(gpr5, DATA)));
        idle(run_on(&mut g, Engine::Render, a, &srm(0x2408, DATA + 4)));
        assert_eq!(read_u32(&mut g, DATA), 0);
        assert_eq!(read_u32(&mut g, DATA + 4), 0);
    }

    #[test]
    fn release_resets_an_engine_the_context_left_faulted() {
        let mut g = setup();
        let a = vgpu_context(0);
        let st = run_on(&mut g, Engine::Blitter, a, &sdi(0x4000_0000, 1));
        assert!(matches!(st, EngineStatus::Faulted(f) if f.context == a));
        // Another context's release leaves the fault for its owner.
        g.release_context(vgpu_context(1));
        assert!(matches!(g.poll(Engine::Blitter), EngineStatus::Faulted(_)));
        g.release_context(a);
        idle(run_on(&mut g, Engine::Blitter, a, &sdi(DATA, 2)));
        assert_eq!(read_u32(&mut g, DATA), 2);
    }

    #[test]
    fn mmio_reads_the_context_an_engine_ran_last() {
        let mut g = setup();
        let (a, b) = (vgpu_context(0), vgpu_context(1));
        let gpr1 = Engine::Render.mmio_base() + ring::GPR_BASE + 8;
        idle(run_on(&mut g, Engine::Render, a, &lri(gpr1, 11)));
        assert_eq!(g.read_reg(MmioOffset::reg(gpr1)), 11);
        idle(run_on(&mut g, Engine::Render, b, &[NOOP, NOOP]));
        assert_eq!(g.read_reg(MmioOffset::reg(gpr1)), 0);
    }

    #[test]
    fn masked_context_registers_apply_their_mask() {
        let mut g = setup();
        let cache_mode_1 = 0x7004;
        let mut s = lri(cache_mode_1, crate::regs::masked(0x0101, 0x0101)).to_vec();
        s.extend(lri(cache_mode_1, crate::regs::masked(0x0001, 0)));
        s.extend(srm(cache_mode_1, DATA));
        idle(run(&mut g, Engine::Render, &s));
        assert_eq!(read_u32(&mut g, DATA), 0x0100);
    }

    #[test]
    fn a_full_context_register_file_stops_the_engine_loudly() {
        let mut g = setup();
        let mut s = Vec::new();
        for i in 0..=CONTEXT_REGS as u32 {
            s.extend(lri(0x5200 + 4 * i, i));
        }
        let st = run(&mut g, Engine::Render, &s);
        assert!(
            matches!(st, EngineStatus::Faulted(f) if matches!(f.kind, FaultKind::Unmodeled(_))),
            "{st:?}"
        );
    }

    /// A 4 KiB fill then a store on the blitter, submitted at `t0` (its
    /// ring at BATCH).
    fn fill_then_store(g: &mut SimGpu<SparseMem>, t0: u64) -> SubmissionId {
        g.advance(t0);
        let mut cmds = color_blt(DATA, 4096, 0, 0, 1024, 1, 0xabab_abab).to_vec();
        cmds.extend(sdi(DATA + 0x2000, 9));
        cmds.push(NOOP);
        // A ring of its own (`run` rewrites RING).
        write_dwords(g, BATCH, &cmds);
        let sub = Submission::new(
            Engine::Blitter,
            ContextId::MONITOR,
            range(BATCH, 4096),
            0,
            (cmds.len() * 4) as u32,
        )
        .unwrap();
        g.submit(&sub).unwrap()
    }

    #[test]
    fn a_4k_blit_costs_about_a_microsecond() {
        assert_eq!(cost_ns(1, 4096), 1124);
        assert_eq!(cost_ns(3, 0), 300);
    }

    /// Work takes its cost in model time: nothing runs at `submit`, each
    /// command runs when the clock reaches its start, and the completion
    /// (CSB entry, HEAD, `poll`) comes only once the last command's cost
    /// has elapsed.
    #[test]
    fn work_runs_as_model_time_passes_and_completes_in_a_later_poll() {
        let mut g = setup();
        let t0 = 5_000_000;
        let id = fill_then_store(&mut g, t0);
        let base = Engine::Blitter.mmio_base();
        let csb_ptr = || MmioOffset::reg(base + ring::CSB_PTR);
        let ptr_before = g.read_reg(csb_ptr());
        assert_eq!(g.poll(Engine::Blitter), EngineStatus::Busy { running: id });
        assert_eq!(read_u32(&mut g, DATA), 0, "ran before the clock moved");
        // The fill starts at t0; the store after the fill's cost.
        g.advance(t0);
        assert_eq!(read_u32(&mut g, DATA + 4092), 0xabab_abab);
        let store_at = t0 + cost_ns(1, 4096);
        g.advance(store_at - 1);
        assert_eq!(read_u32(&mut g, DATA + 0x2000), 0);
        g.advance(store_at);
        assert_eq!(read_u32(&mut g, DATA + 0x2000), 9);
        // Every command ran; the last one's cost has not elapsed.
        let end = t0 + cost_ns(3, 4096);
        g.advance(end - 1);
        assert_eq!(g.poll(Engine::Blitter), EngineStatus::Busy { running: id });
        assert_eq!(g.read_reg(csb_ptr()), ptr_before, "CSB written early");
        assert_eq!(g.read_reg(MmioOffset::reg(base + ring::HEAD)), 0);
        assert_eq!(g.finished_at_ns(Engine::Blitter, id), None);
        g.advance(end);
        assert_eq!(
            g.poll(Engine::Blitter),
            EngineStatus::Idle {
                last_completed: Some(id)
            }
        );
        assert_eq!(g.finished_at_ns(Engine::Blitter, id), Some(end));
        assert_eq!(g.read_reg(csb_ptr()) & 0xf, 0);
        assert_eq!(g.read_reg(MmioOffset::reg(base + ring::HEAD)), 48);
    }

    #[test]
    fn a_busy_engine_refuses_more_work_while_the_others_run_theirs() {
        let mut g = setup();
        let id = fill_then_store(&mut g, 1000);
        let again =
            Submission::new(Engine::Blitter, ContextId::MONITOR, range(RING, 4096), 0, 8).unwrap();
        assert_eq!(
            g.submit(&again),
            Err(BackendError::EngineNotIdle(Engine::Blitter))
        );
        // The render engine runs its own work meanwhile.
        idle(run(&mut g, Engine::Render, &sdi(DATA + 0x3000, 4)));
        assert_eq!(read_u32(&mut g, DATA + 0x3000), 4);
        idle(finish(&mut g, Engine::Blitter));
        assert_eq!(
            g.finished_at_ns(Engine::Blitter, id),
            Some(1000 + cost_ns(3, 4096))
        );
    }

    /// An engine reset (or the release of the context running there)
    /// abandons the running submission: its later commands never run and
    /// it never completes.
    #[test]
    fn reset_and_release_abandon_the_running_submission() {
        for release in [false, true] {
            let mut g = setup();
            let id = fill_then_store(&mut g, 1000);
            g.advance(1000);
            assert_eq!(read_u32(&mut g, DATA), 0xabab_abab);
            if release {
                g.release_context(ContextId::MONITOR);
            } else {
                g.reset_engine(Engine::Blitter);
            }
            assert!(matches!(
                g.poll(Engine::Blitter),
                EngineStatus::Idle { last_completed } if last_completed != Some(id)
            ));
            g.advance(1_000_000);
            assert_eq!(read_u32(&mut g, DATA + 0x2000), 0, "release {release}");
        }
    }

    #[test]
    fn forcewake_ack_mirrors_masked_request() {
        let mut g = setup();
        let d = forcewake::Domain::Media;
        g.write_reg(
            d.request(),
            crate::regs::masked(forcewake::KERNEL, forcewake::KERNEL),
        );
        assert_eq!(g.read_reg(d.ack()) & forcewake::KERNEL, 1);
        g.write_reg(d.request(), crate::regs::masked(forcewake::KERNEL, 0));
        assert_eq!(g.read_reg(d.ack()) & forcewake::KERNEL, 0);
    }
}
