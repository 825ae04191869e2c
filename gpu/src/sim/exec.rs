//! The command streamer of [`SimGpu`]: it fetches each command of a
//! submission through the GGTT (from the ring, a first-level or a
//! second-level batch), decodes it with the scanner's own table
//! ([`crate::scan::decode::head`]: one declaration of every Gen9 command's
//! length, engines and class for the decoder, the audit and the model),
//! and executes it in the submission's context.
//!
//! Executed, with their memory and register effects (encodings from Mesa's
//! genxml `gen9.xml` and the PRM vol 2a, as the Gen9 command headers of the
//! Intel media driver (`mhw_mi_hwcmd_g9_X.h`) restate them):
//! * flow: MI_BATCH_BUFFER_START (ring -> first level, chained, second
//!   level; Predication Enable on the render engine: ignored while bit 0 of
//!   MI_PREDICATE_RESULT_1 is clear, SKL PRM as Mesa's `mi_builder.h`
//!   quotes it), MI_BATCH_BUFFER_END, MI_CONDITIONAL_BATCH_BUFFER_END (with
//!   Compare Semaphore set, the batch, and a second level's parent, end
//!   unless the memory dword, ANDed with the mask dword before it in compare
//!   mask mode, is greater than the inline data);
//! * predication: MI_PREDICATE (compare SRC0/SRC1 or their delta against
//!   MI_PREDICATE_DATA, combine with the current predicate, then keep, load
//!   or load inverted into MI_PREDICATE_RESULT; SRCS_EQUAL also sets DATA to
//!   SRC0 - SRC1, as Mesa's MI runner does), MI_SET_PREDICATE (per
//!   context: the commands after it are skipped while its condition holds;
//!   a command outside the short list the PRM allows in its scope stops the
//!   engine), Predicate Enable of MI_STORE_REGISTER_MEM, 3DPRIMITIVE and
//!   GPGPU_WALKER (skipped while MI_PREDICATE_RESULT bit 0 is clear);
//! * registers: MI_LOAD_REGISTER_IMM (with byte write disables), _MEM,
//!   _REG, MI_STORE_REGISTER_MEM, MI_MATH (the Gen9 ALU over the context's
//!   GPRs; ZF and CF read as all ones when set, which Mesa's `mi_builder`
//!   tests check on hardware);
//! * memory: MI_STORE_DATA_IMM, MI_COPY_MEM_MEM, MI_ATOMIC (every Gen9
//!   opcode, dword / qword / octword, inline or GPR operands, the old value
//!   returned to CS_GPR4/5), MI_FLUSH_DW and PIPE_CONTROL post-sync writes,
//!   XY_COLOR_BLT and XY_SRC_COPY_BLT (linear);
//! * waits: MI_SEMAPHORE_WAIT, evaluated at once when the engine reaches
//!   it: nothing else (another engine, the CPU) runs while one command
//!   executes, so memory does not change while it waits, and a failed
//!   memory compare, polled or waiting for a signal, can never pass and
//!   ends as a [`FaultKind::Hang`] (a wait that engines' interleaving could
//!   satisfy is not modelled). A register
//!   poll re-reads the register, one command of the budget per read (the
//!   timestamp moves). MI_SEMAPHORE_SIGNAL therefore wakes no one and has
//!   no effect;
//! * state: every 3D, media and video state command is recorded in the
//!   context ([`PipelineState`]): PIPELINE_SELECT and the depth, stencil,
//!   HiZ and clear parameters a depth operation would use in full, the rest
//!   counted.
//!
//! * draws: 3DPRIMITIVE writes its render target found through the
//!   binding table and RENDER_SURFACE_STATE (module `draw`).
//!
//! Not executed, each a loud [`FaultKind::Unmodeled`] naming the command:
//! dispatches and the video / VEBOX / SFC objects (the table's
//! `writes_through_state` and `dispatches_shaders` rows) unless predicated
//! off, 3DSTATE_WM_HZ_OP with a depth, stencil or HiZ operation, the
//! commands that read or write memory named by state (MEDIA_CURBE_LOAD,
//! MEDIA_INTERFACE_DESCRIPTOR_LOAD, STATE_PREFETCH, the binding table
//! edits), the other blits, tiled blits, every privileged command, and the
//! forms of modelled commands the model does not cover (store data index,
//! LRI post-sync, MI_ATOMIC post-sync, Add Offset Enable...).

use super::ppgtt::{Space, Va};
use super::{ContextImage, Running, SimGpu, Stop, COMMAND_BUDGET};
use crate::addr::{HostGmRange, PhysFrame};
use crate::backend::{ContextId, FaultKind, PhysMem, Submission};
use crate::encode::{alu, atomic, predicate};
use crate::engine::Engine;
use crate::scan::regs::nonprivileged_register;
use crate::scan::table::{CmdSpec, Op, Opcode};
use crate::scan::tracked::HZ_OPERATIONS;

/// Bytes one submission's blits may write.
pub const BLIT_BYTE_BUDGET: u64 = 64 << 20;

/// Longest command the executor keeps (MI_LOAD_REGISTER_IMM and MI_MATH
/// reach 257 DWords); the DWords of a longer command are fetched (a fetch
/// through an invalid entry faults) but not kept.
const MAX_COMMAND_DWORDS: usize = 260;

// MI opcodes of the commands the table classes as plain (bits 28:23).
const MI_NOOP: u8 = 0x00;
const MI_SET_PREDICATE: u8 = 0x01;
const MI_USER_INTERRUPT: u8 = 0x02;
const MI_ARB_CHECK: u8 = 0x05;
const MI_PREDICATE: u8 = 0x0c;
const MI_TOPOLOGY_FILTER: u8 = 0x0d;
const MI_MATH: u8 = 0x1a;

/// "Use Global GTT" of the MI memory commands (bit 22; MI_ATOMIC and
/// MI_SEMAPHORE_WAIT call it Memory Type, MI_COPY_MEM_MEM "Source").
const MI_USE_GGTT: u32 = 1 << 22;
/// MI_COPY_MEM_MEM "Use Global GTT Destination".
const COPY_DST_GGTT: u32 = 1 << 21;
/// MI_STORE_DATA_IMM "Store Qword".
const SDI_STORE_QWORD: u32 = 1 << 21;
/// MI_STORE_REGISTER_MEM "Predicate Enable".
const SRM_PREDICATE: u32 = 1 << 21;
/// MI_LOAD_REGISTER_IMM "Byte Write Disables" (bits 11:8).
const LRI_BYTE_DISABLES_SHIFT: u32 = 8;
/// MI_NOOP "Identification Number Register Write Enable".
const NOOP_WRITE_NOPID: u32 = 1 << 22;
/// RING_NOPID, relative to the engine base (i915 `RING_NOPID`).
const NOPID: u32 = 0x94;
/// MI_BATCH_BUFFER_START "Second Level Batch Buffer".
const BBS_SECOND_LEVEL: u32 = 1 << 22;
/// MI_BATCH_BUFFER_START "Add Offset Enable".
const BBS_ADD_OFFSET: u32 = 1 << 16;
/// MI_BATCH_BUFFER_START "Predication Enable".
const BBS_PREDICATED: u32 = 1 << 15;
/// MI_BATCH_BUFFER_START "Resource Streamer Enable".
const BBS_RESOURCE_STREAMER: u32 = 1 << 10;
/// MI_BATCH_BUFFER_START "Address Space Indicator" (1 = PPGTT).
const BBS_PPGTT: u32 = 1 << 8;
/// MI_CONDITIONAL_BATCH_BUFFER_END "Compare Semaphore".
const CBBE_COMPARE: u32 = 1 << 21;
/// MI_CONDITIONAL_BATCH_BUFFER_END "Compare Mask Mode".
const CBBE_MASK_MODE: u32 = 1 << 19;
/// MI_SEMAPHORE_WAIT "Register Poll Mode".
const SEMA_REGISTER_POLL: u32 = 1 << 16;
/// MI_SEMAPHORE_SIGNAL / MI_ATOMIC "Post-Sync Operation".
const POST_SYNC_OP: u32 = 1 << 21;
/// MI_ATOMIC "Inline Data".
const ATOMIC_INLINE: u32 = 1 << 18;
/// MI_ATOMIC "Return Data Control".
const ATOMIC_RETURN: u32 = 1 << 16;
/// MI_FLUSH_DW header "Store Data Index".
const FLUSH_DW_STORE_INDEX: u32 = 1 << 21;
/// MI_FLUSH_DW dword 1 "Destination Address Type" (1 = GGTT).
const FLUSH_DW_GGTT: u32 = 1 << 2;
/// PIPE_CONTROL dword 1 "Destination Address Type" (bit 56 overall).
const PIPE_CONTROL_GGTT: u32 = 1 << 24;
/// PIPE_CONTROL dword 1 "LRI Post Sync Operation" (bit 55).
const PIPE_CONTROL_LRI: u32 = 1 << 23;
/// PIPE_CONTROL dword 1 "Store Data Index" (bit 53).
const PIPE_CONTROL_STORE_INDEX: u32 = 1 << 21;
/// 3DPRIMITIVE / GPGPU_WALKER "Predicate Enable".
const DRAW_PREDICATED: u32 = 1 << 8;

const BLT_XY_COLOR: u32 = 0x50;
const BLT_XY_SRC_COPY: u32 = 0x53;
/// Blit header "Dest Tiling Enable" (bit 11) and "Src Tiling Enable" (bit 15).
const BLT_TILED: u32 = (1 << 11) | (1 << 15);
const ROP_PATCOPY: u32 = 0xf0;
const ROP_SRCCOPY: u32 = 0xcc;

/// The predicate registers, relative to the engine's base (i915
/// `MI_PREDICATE_*(base)`; render: 0x2400..).
const PREDICATE_SRC0: u32 = 0x400;
const PREDICATE_SRC1: u32 = 0x408;
const PREDICATE_DATA: u32 = 0x410;
const PREDICATE_RESULT: u32 = 0x418;
const PREDICATE_RESULT_1: u32 = 0x41c;
const PREDICATE_RESULT_2: u32 = 0x3bc;

/// GPRs MI_ATOMIC reads its operands from and returns data to.
const ATOMIC_OPERAND1_GPR: usize = 0;
const ATOMIC_OPERAND2_GPR: usize = 2;
const ATOMIC_RETURN_GPR: usize = 4;

/// The only commands the PRM allows inside an MI_SET_PREDICATE scope
/// (MI_SET_PREDICATE, Gen9 vol 2a), and MI_NOOP.
const PREDICATE_SCOPE_COMMANDS: [&str; 16] = [
    "MI_NOOP",
    "MI_LOAD_REGISTER_IMM",
    "3DSTATE_URB_VS",
    "3DSTATE_URB_HS",
    "3DSTATE_URB_DS",
    "3DSTATE_URB_GS",
    "3DSTATE_PUSH_CONSTANT_ALLOC_VS",
    "3DSTATE_PUSH_CONSTANT_ALLOC_HS",
    "3DSTATE_PUSH_CONSTANT_ALLOC_DS",
    "3DSTATE_PUSH_CONSTANT_ALLOC_GS",
    "3DSTATE_PUSH_CONSTANT_ALLOC_PS",
    "MEDIA_VFE_STATE",
    "MEDIA_OBJECT",
    "MEDIA_OBJECT_WALKER",
    "MEDIA_INTERFACE_DESCRIPTOR_LOAD",
    "3DSTATE_WM_HZ_OP",
];

/// State commands that read or write memory when they execute (not only
/// at a later draw), through addresses state names: not modelled.
fn moves_memory_by_itself(name: &str) -> bool {
    matches!(
        name,
        "MEDIA_CURBE_LOAD" | "MEDIA_INTERFACE_DESCRIPTOR_LOAD" | "STATE_PREFETCH"
    ) || name.starts_with("3DSTATE_BINDING_TABLE_EDIT")
}

/// What the 3D, media and video state commands of a context set: what a
/// depth / stencil / HiZ operation would consume, and a count of the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PipelineState {
    /// PIPELINE_SELECT's Pipeline Selection (0 3D, 1 media, 2 GPGPU).
    pub(super) pipeline: u32,
    /// The DWords of the last 3DSTATE_DEPTH_BUFFER (none: all zero).
    pub(super) depth: [u32; 8],
    /// The last 3DSTATE_STENCIL_BUFFER.
    pub(super) stencil: [u32; 5],
    /// The last 3DSTATE_HIER_DEPTH_BUFFER.
    pub(super) hiz: [u32; 5],
    /// The last 3DSTATE_CLEAR_PARAMS.
    pub(super) clear: [u32; 3],
    /// State commands executed in the context, of any kind.
    pub(super) commands: u32,
    /// STATE_BASE_ADDRESS's Surface State Base Address, once set.
    pub(super) surface_base: Option<u64>,
    /// 3DSTATE_BINDING_TABLE_POOL_ALLOC's base, when the pool is enabled.
    pub(super) binding_table_pool: Option<u64>,
    /// 3DSTATE_BINDING_TABLE_POINTERS_PS: the pixel shader's binding
    /// table, as an offset from the pool (or the surface state base).
    pub(super) binding_table_ps: u32,
}

impl PipelineState {
    pub(super) const fn new() -> Self {
        PipelineState {
            pipeline: 0,
            depth: [0; 8],
            stencil: [0; 5],
            hiz: [0; 5],
            clear: [0; 3],
            commands: 0,
            surface_base: None,
            binding_table_pool: None,
            binding_table_ps: 0,
        }
    }
}

/// The command streamer's ALU registers (per context).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Alu {
    srca: u64,
    srcb: u64,
    accu: u64,
    zf: u64,
    cf: u64,
}

impl Alu {
    pub(super) const ZERO: Alu = Alu {
        srca: 0,
        srcb: 0,
        accu: 0,
        zf: 0,
        cf: 0,
    };

    fn operand(&self, gpr: &[u64; 16], operand: u32) -> Result<u64, Stop> {
        Ok(match operand {
            0..=15 => gpr[operand as usize],
            alu::SRCA => self.srca,
            alu::SRCB => self.srcb,
            alu::ACCU => self.accu,
            alu::ZF => self.zf,
            alu::CF => self.cf,
            _ => return Err(invalid()),
        })
    }

    /// LOAD*: the destination is SRCA or SRCB.
    fn load(&mut self, operand: u32, value: u64) -> Result<(), Stop> {
        match operand {
            alu::SRCA => self.srca = value,
            alu::SRCB => self.srcb = value,
            _ => return Err(invalid()),
        }
        Ok(())
    }

    /// An arithmetic or logic result: the flags read as all ones when set.
    fn set(&mut self, accu: u64, carry: bool) {
        let flag = |set: bool| if set { u64::MAX } else { 0 };
        self.accu = accu;
        self.zf = flag(accu == 0);
        self.cf = flag(carry);
    }

    /// One ALU instruction: opcode bits 31:20, operand 1 19:10, operand 2
    /// 9:0.
    fn execute(&mut self, gpr: &mut [u64; 16], inst: u32) -> Result<(), Stop> {
        let (opcode, op1, op2) = (inst >> 20, (inst >> 10) & 0x3ff, inst & 0x3ff);
        let (srca, srcb) = (self.srca, self.srcb);
        match opcode {
            alu::NOOP => {}
            alu::LOAD => self.load(op1, self.operand(gpr, op2)?)?,
            alu::LOADINV => self.load(op1, !self.operand(gpr, op2)?)?,
            alu::LOAD0 => self.load(op1, 0)?,
            alu::LOAD1 => self.load(op1, u64::MAX)?,
            alu::ADD => {
                let (sum, carry) = srca.overflowing_add(srcb);
                self.set(sum, carry);
            }
            alu::SUB => {
                let (diff, borrow) = srca.overflowing_sub(srcb);
                self.set(diff, borrow);
            }
            alu::AND => self.set(srca & srcb, false),
            alu::OR => self.set(srca | srcb, false),
            alu::XOR => self.set(srca ^ srcb, false),
            alu::STORE | alu::STOREINV => {
                let value = self.operand(gpr, op2)?;
                // The destination is a GPR.
                let slot = gpr.get_mut(op1 as usize).ok_or_else(invalid)?;
                *slot = if opcode == alu::STORE { value } else { !value };
            }
            _ => return Err(invalid()),
        }
        Ok(())
    }
}

/// Where the command streamer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Ring,
    First,
    Second,
}

/// The command streamer's read position: the ring's head, the batch head,
/// and where a second-level batch returns to (the hardware's three head
/// storage elements; no stack). Kept between [`SimGpu::run_engine`] calls
/// while a submission runs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor {
    ring: HostGmRange,
    tail: u32,
    level: Level,
    ring_pos: u32,
    batch_pos: u64,
    return_pos: u64,
    /// Whether the first / second level batch runs from the PPGTT
    /// (non-privileged).
    first_ppgtt: bool,
    second_ppgtt: bool,
}

impl Cursor {
    pub(super) fn new(sub: &Submission) -> Self {
        Cursor {
            ring: sub.ring(),
            tail: sub.tail(),
            level: Level::Ring,
            ring_pos: sub.head(),
            batch_pos: 0,
            return_pos: 0,
            first_ppgtt: false,
            second_ppgtt: false,
        }
    }

    /// Whether the command streamer reads a non-privileged (PPGTT) batch.
    fn in_ppgtt_batch(&self) -> bool {
        match self.level {
            Level::Ring => false,
            Level::First => self.first_ppgtt,
            Level::Second => self.second_ppgtt,
        }
    }

    /// Where DWord `index` of the current command is, in the space it is
    /// read from (`ppgtt`: the context's PML4).
    fn va(&self, index: u32, ppgtt: Option<PhysFrame>) -> Result<Va, Stop> {
        let space = match (self.in_ppgtt_batch(), ppgtt) {
            (true, Some(root)) => Space::Ppgtt(root),
            (true, None) => return Err(Stop::kind(FaultKind::Ppgtt)),
            (false, _) => Space::Ggtt,
        };
        Va::new(space, self.dword(index))
    }

    fn ring_len(&self) -> u32 {
        self.ring.len() as u32
    }

    pub(super) fn done(&self) -> bool {
        self.level == Level::Ring && self.ring_pos == self.tail
    }

    /// GM address of DWord `index` of the current command.
    fn dword(&self, index: u32) -> u64 {
        match self.level {
            Level::Ring => {
                let off = (self.ring_pos + 4 * index) % self.ring_len();
                self.ring.base().raw() + u64::from(off)
            }
            _ => self.batch_pos + 4 * u64::from(index),
        }
    }

    /// Bytes left before the tail, in the ring.
    fn ring_room(&self) -> Option<u32> {
        (self.level == Level::Ring)
            .then(|| (self.tail + self.ring_len() - self.ring_pos) % self.ring_len())
    }

    fn advance(&mut self, len: usize) {
        match self.level {
            Level::Ring => self.ring_pos = (self.ring_pos + 4 * len as u32) % self.ring_len(),
            _ => self.batch_pos += 4 * len as u64,
        }
    }

    /// MI_BATCH_BUFFER_START of `len` DWords to `target`, from the PPGTT
    /// if `ppgtt`.
    fn start_batch(
        &mut self,
        target: u64,
        second_level: bool,
        len: usize,
        ppgtt: bool,
    ) -> Result<(), Stop> {
        match self.level {
            Level::Ring => {
                self.advance(len);
                self.level = Level::First;
            }
            Level::First if second_level => {
                self.return_pos = self.batch_pos + 4 * len as u64;
                self.level = Level::Second;
            }
            Level::Second if second_level => return Err(Stop::kind(FaultKind::BatchNesting)),
            // Chained: the current level's head moves.
            Level::First | Level::Second => {}
        }
        match self.level {
            Level::Second => self.second_ppgtt = ppgtt,
            _ => self.first_ppgtt = ppgtt,
        }
        self.batch_pos = target;
        Ok(())
    }

    /// MI_BATCH_BUFFER_END: back one level; false in the ring itself, where
    /// it does nothing.
    fn end_batch(&mut self) -> bool {
        match self.level {
            Level::Ring => false,
            // The ring head was advanced past the start already.
            Level::First => {
                self.level = Level::Ring;
                true
            }
            Level::Second => {
                self.level = Level::First;
                self.batch_pos = self.return_pos;
                true
            }
        }
    }

    /// A batch end that ends a second level's parent too.
    fn end_all_batches(&mut self) -> bool {
        let in_batch = self.level != Level::Ring;
        self.level = Level::Ring;
        in_batch
    }
}

/// Where and when a submission stopped: the faulting command's header
/// and address, why, and the model time the command started.
struct Fault {
    header: u32,
    at: u64,
    stop: Stop,
    at_ns: u64,
}

/// What a command did to the flow.
enum Flow {
    /// Go on with the command after it.
    Next,
    /// The cursor was moved (a batch started or ended).
    Moved,
}

/// The engine and context a command runs on, the context's PPGTT, and
/// whether the command comes from a non-privileged batch.
#[derive(Clone, Copy, Debug)]
struct On {
    engine: Engine,
    context: ContextId,
    ppgtt: Option<PhysFrame>,
    nonprivileged: bool,
}

impl On {
    fn reg(self, rel: u32) -> u32 {
        self.engine.mmio_base() + rel
    }

    /// The address an MI memory command names: in the GGTT when its GGTT
    /// bit is set (not from a non-privileged batch), else in the
    /// context's PPGTT.
    fn mi_addr(self, use_ggtt: bool, lo: u32, hi: u32) -> Result<Va, Stop> {
        let space = match (use_ggtt, self.ppgtt) {
            (true, _) if self.nonprivileged => {
                return Err(Stop::kind(FaultKind::PrivilegeViolation("a GGTT access")))
            }
            (true, _) => Space::Ggtt,
            (false, Some(root)) => Space::Ppgtt(root),
            (false, None) => return Err(Stop::kind(FaultKind::Ppgtt)),
        };
        Va::new(space, addr48(lo, hi))
    }

    /// An address a non-MI command (a blit, state) names: in the
    /// context's PPGTT when it has one, else in the GGTT.
    fn gfx_addr(self, lo: u32, hi: u32) -> Result<Va, Stop> {
        Va::new(self.gfx_space(), addr48(lo, hi))
    }

    /// The space of the addresses non-MI commands and the state they read
    /// name.
    fn gfx_space(self) -> Space {
        match self.ppgtt {
            Some(root) => Space::Ppgtt(root),
            None => Space::Ggtt,
        }
    }

    /// Refuses, in a non-privileged batch, a register outside the
    /// hardware's non-privileged set. The Gen9 blitter does not check
    /// (see [`crate::scan::regs::NONPRIVILEGED_REGISTERS`]): there only the
    /// scanner stands between a guest batch and any register.
    fn register(self, abs: u32) -> Result<(), Stop> {
        if self.nonprivileged
            && self.engine != Engine::Blitter
            && !nonprivileged_register(self.engine, abs)
        {
            return Err(Stop::kind(FaultKind::PrivilegeViolation(
                "a register outside the non-privileged set",
            )));
        }
        Ok(())
    }
}

fn invalid() -> Stop {
    Stop::kind(FaultKind::InvalidCommand)
}

fn unmodeled(what: &'static str) -> Stop {
    Stop::kind(FaultKind::Unmodeled(what))
}

/// A 48-bit address from a low and a high DWord.
pub(super) fn addr48(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi & 0xffff) << 32)
}

/// MI_SEMAPHORE_WAIT's compare: true when the fetched (`sad`) and inline
/// (`sdd`) data let the engine go on.
fn semaphore_passes(compare: u32, sad: u32, sdd: u32) -> Result<bool, Stop> {
    Ok(match compare {
        0 => sad > sdd,
        1 => sad >= sdd,
        2 => sad < sdd,
        3 => sad <= sdd,
        4 => sad == sdd,
        5 => sad != sdd,
        _ => return Err(invalid()),
    })
}

/// An MI_ATOMIC operation on a `bits`-wide value (`old` and the operands
/// already truncated): the new memory value.
fn atomic_result(op: u32, bits: u32, old: u64, op1: u64, op2: u64) -> Result<u64, Stop> {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let signed = |v: u64| -> i64 {
        if bits == 64 {
            v as i64
        } else {
            i64::from(v as u32 as i32)
        }
    };
    let new = match op {
        atomic::AND => old & op1,
        atomic::OR => old | op1,
        atomic::XOR => old ^ op1,
        atomic::MOVE => op1,
        atomic::INC => old.wrapping_add(1),
        atomic::DEC | atomic::PREDEC => old.wrapping_sub(1),
        atomic::ADD => old.wrapping_add(op1),
        atomic::SUB => old.wrapping_sub(op1),
        atomic::RSUB => op1.wrapping_sub(old),
        atomic::IMAX => {
            if signed(op1) > signed(old) {
                op1
            } else {
                old
            }
        }
        atomic::IMIN => {
            if signed(op1) < signed(old) {
                op1
            } else {
                old
            }
        }
        atomic::UMAX => old.max(op1),
        atomic::UMIN => old.min(op1),
        atomic::CMP_WR => {
            if old == op1 {
                op2
            } else {
                old
            }
        }
        _ => return Err(invalid()),
    };
    Ok(new & mask)
}

impl<M: PhysMem> SimGpu<M> {
    fn image(&mut self, on: On) -> &mut ContextImage {
        &mut self.contexts[on.context.index()][on.engine.index()]
    }

    fn reg(&self, on: On, abs: u32) -> u32 {
        self.reg_read(on.engine, on.context, abs)
    }

    fn set_reg(&mut self, on: On, abs: u32, value: u32) -> Result<(), Stop> {
        self.reg_write(on.engine, on.context, abs, value)
    }

    fn reg64(&self, on: On, rel: u32) -> u64 {
        u64::from(self.reg(on, on.reg(rel))) | u64::from(self.reg(on, on.reg(rel + 4))) << 32
    }

    fn set_reg64(&mut self, on: On, rel: u32, value: u64) -> Result<(), Stop> {
        self.set_reg(on, on.reg(rel), value as u32)?;
        self.set_reg(on, on.reg(rel + 4), (value >> 32) as u32)
    }

    /// Bit 0 of a predicate register of the engine.
    fn predicate_bit(&self, on: On, rel: u32) -> bool {
        self.reg(on, on.reg(rel)) & 1 != 0
    }

    fn read_u32(&self, addr: Va) -> Result<u32, Stop> {
        let mut b = [0u8; 4];
        self.va_read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn write_u32(&mut self, addr: Va, value: u32) -> Result<(), Stop> {
        self.va_write(addr, &value.to_le_bytes())
    }

    fn fetch(&self, on: On, cur: &Cursor, index: u32) -> Result<u32, Stop> {
        self.read_u32(cur.va(index, on.ppgtt)?)
    }

    /// Runs `engine`'s submission on to the model's clock: every command
    /// that starts at or before it executes; then the submission completes
    /// once the end of its last command has come, or stops on a fault.
    pub(super) fn run_engine(&mut self, engine: Engine) {
        let Some(mut run) = self.engines[engine.index()].running.take() else {
            return;
        };
        match self.execute(&mut run, self.now_ns) {
            Err(Fault {
                header,
                at,
                stop,
                at_ns,
            }) => {
                self.record_fault(&run.submission, run.id, header, at, stop);
                self.engines[engine.index()].finished = Some((run.id, at_ns));
            }
            Ok(()) if run.cursor.done() && run.clock_ns() <= self.now_ns => {
                self.complete(engine, run.id, run.submission.tail(), run.clock_ns());
            }
            Ok(()) => self.engines[engine.index()].running = Some(run),
        }
    }

    /// Executes the commands of `run` that start at or before `until_ns`.
    fn execute(&mut self, run: &mut Running, until_ns: u64) -> Result<(), Fault> {
        let sub = run.submission;
        let base = On {
            engine: sub.engine(),
            context: sub.context(),
            ppgtt: sub.ppgtt(),
            nonprivileged: false,
        };
        let mut cmd = [0u32; MAX_COMMAND_DWORDS];
        while !run.cursor.done() {
            let at_ns = run.clock_ns();
            if at_ns > until_ns {
                break;
            }
            let cur = &mut run.cursor;
            let on = On {
                nonprivileged: cur.in_ppgtt_batch(),
                ..base
            };
            let at = cur.dword(0);
            let fault = |header, stop| Fault {
                header,
                at,
                stop,
                at_ns,
            };
            run.commands += 1;
            if run.commands > COMMAND_BUDGET {
                return Err(fault(0, Stop::kind(FaultKind::Hang)));
            }
            self.timestamp += 1;
            let header = self.fetch(on, cur, 0).map_err(|s| fault(0, s))?;
            let fail = |s: Stop| fault(header, s);
            let (spec, len) =
                crate::scan::decode::head(on.engine, header).map_err(|_| fail(invalid()))?;
            if cur.ring_room().is_some_and(|room| (len as u32) * 4 > room) {
                return Err(fail(Stop::kind(FaultKind::RingOverrun)));
            }
            cmd[0] = header;
            for i in 1..len {
                let word = self.fetch(on, cur, i as u32).map_err(fail)?;
                if let Some(slot) = cmd.get_mut(i) {
                    *slot = word;
                }
            }
            let c = &cmd[..len.min(MAX_COMMAND_DWORDS)];
            let flow = self
                .step(on, spec, c, cur, (&mut run.commands, &mut run.blit_bytes))
                .map_err(fail)?;
            if let Flow::Next = flow {
                cur.advance(len);
            }
        }
        Ok(())
    }

    /// Executes one decoded command (`c` its DWords, cut to
    /// [`MAX_COMMAND_DWORDS`]).
    fn step(
        &mut self,
        on: On,
        spec: &'static CmdSpec,
        c: &[u32],
        cur: &mut Cursor,
        (commands, blit_bytes): (&mut u32, &mut u64),
    ) -> Result<Flow, Stop> {
        let header = c[0];
        if on.nonprivileged && spec.op == Op::Privileged {
            return Err(Stop::kind(FaultKind::PrivilegeViolation(spec.name)));
        }
        let mode = self.image(on).set_predicate;
        if mode != 0 && spec.opcode != Opcode::Mi(MI_SET_PREDICATE) {
            if !PREDICATE_SCOPE_COMMANDS.contains(&spec.name) {
                return Err(unmodeled(
                    "a command the PRM does not allow inside an MI_SET_PREDICATE scope",
                ));
            }
            if self.set_predicate_noops(on, mode) {
                return Ok(Flow::Next);
            }
        }
        match spec.op {
            Op::Noop => {
                if header & NOOP_WRITE_NOPID != 0 {
                    self.set_reg(on, on.reg(NOPID), header & 0x3f_ffff)?;
                }
            }
            Op::BatchStart => return self.batch_start(on, c, cur),
            Op::BatchEnd => {
                if cur.end_batch() {
                    return Ok(Flow::Moved);
                }
            }
            Op::CondBatchEnd => return self.cond_batch_end(on, c, cur),
            Op::StoreDataImm => self.store_data_imm(on, c)?,
            Op::StoreRegMem => {
                if c.len() != 4 {
                    return Err(invalid());
                }
                if header & SRM_PREDICATE != 0 && !self.predicate_bit(on, PREDICATE_RESULT) {
                    return Ok(Flow::Next);
                }
                on.register(c[1])?;
                let addr = on.mi_addr(header & MI_USE_GGTT != 0, c[2] & !3, c[3])?;
                let value = self.reg(on, c[1]);
                self.write_u32(addr, value)?;
            }
            Op::LoadRegImm => self.load_register_imm(on, c)?,
            Op::LoadRegMem => {
                if c.len() != 4 {
                    return Err(invalid());
                }
                on.register(c[1])?;
                let addr = on.mi_addr(header & MI_USE_GGTT != 0, c[2] & !3, c[3])?;
                let value = self.read_u32(addr)?;
                self.set_reg(on, c[1], value)?;
            }
            Op::LoadRegReg => {
                if c.len() != 3 {
                    return Err(invalid());
                }
                on.register(c[1])?;
                on.register(c[2])?;
                let value = self.reg(on, c[1]);
                self.set_reg(on, c[2], value)?;
            }
            Op::CopyMemMem => {
                if c.len() != 5 {
                    return Err(invalid());
                }
                let src = on.mi_addr(header & MI_USE_GGTT != 0, c[3] & !3, c[4])?;
                let dst = on.mi_addr(header & COPY_DST_GGTT != 0, c[1] & !3, c[2])?;
                let value = self.read_u32(src)?;
                self.write_u32(dst, value)?;
            }
            Op::Atomic => self.atomic(on, c)?,
            Op::FlushDw => self.flush_dw(on, c)?,
            Op::PipeControl => self.pipe_control(on, c)?,
            Op::SemaphoreWait => self.semaphore_wait(on, c, commands)?,
            Op::SemaphoreSignal => {
                if header & POST_SYNC_OP != 0 {
                    return Err(unmodeled("MI_SEMAPHORE_SIGNAL Post-Sync Operation"));
                }
                // Target engine 4 is VCS1, which a GT2 part does not have.
                if (header >> 15) & 7 > 3 {
                    return Err(invalid());
                }
                // No wait can be pending while this submission runs alone
                // (see the module docs): the signal wakes no one.
            }
            Op::XyColorBlt | Op::XySrcCopyBlt => self.blit(on, c, blit_bytes)?,
            Op::Privileged
            | Op::GmOperands
            | Op::Unsupported(_)
            | Op::XyFastCopyBlt
            | Op::BltSetup
            | Op::BltSetupDraw
            | Op::XyPatBlt
            | Op::XyMonoPatBlt
            | Op::XyBlit(_) => return Err(unmodeled(spec.name)),
            Op::Plain | Op::SetPredicate | Op::Gm(_) | Op::PakInsert | Op::StateBaseAddress => {
                match spec.opcode {
                    Opcode::Mi(op) => self.plain_mi(on, op, spec.name, c)?,
                    Opcode::Gfx(_) => self.gfx(on, spec, c, blit_bytes)?,
                    Opcode::Blt(_) => return Err(unmodeled(spec.name)),
                }
            }
        }
        Ok(Flow::Next)
    }

    /// Whether MI_SET_PREDICATE mode `mode` skips the next command.
    fn set_predicate_noops(&self, on: On, mode: u8) -> bool {
        match mode {
            1 => !self.predicate_bit(on, PREDICATE_RESULT_2),
            2 => self.predicate_bit(on, PREDICATE_RESULT_2),
            3 => !self.predicate_bit(on, PREDICATE_RESULT),
            4 => self.predicate_bit(on, PREDICATE_RESULT),
            // A GT2 part has one slice: "execute when one slice is
            // enabled" executes, the two- and three-slice modes skip.
            5 => false,
            _ => true,
        }
    }

    fn batch_start(&mut self, on: On, c: &[u32], cur: &mut Cursor) -> Result<Flow, Stop> {
        let header = c[0];
        let ppgtt = header & BBS_PPGTT != 0;
        if ppgtt && on.ppgtt.is_none() {
            return Err(Stop::kind(FaultKind::Ppgtt));
        }
        if !ppgtt && on.nonprivileged {
            return Err(Stop::kind(FaultKind::PrivilegeViolation(
                "a GGTT batch started from a non-privileged batch",
            )));
        }
        if header & BBS_ADD_OFFSET != 0 {
            return Err(unmodeled("MI_BATCH_BUFFER_START Add Offset Enable"));
        }
        if header & BBS_RESOURCE_STREAMER != 0 {
            return Err(unmodeled("MI_BATCH_BUFFER_START Resource Streamer Enable"));
        }
        if header & BBS_PREDICATED != 0 {
            if on.engine != Engine::Render {
                return Err(unmodeled(
                    "MI_BATCH_BUFFER_START predication outside the render engine",
                ));
            }
            if !self.predicate_bit(on, PREDICATE_RESULT_1) {
                return Ok(Flow::Next);
            }
        }
        let space = match on.ppgtt {
            Some(root) if ppgtt => Space::Ppgtt(root),
            _ => Space::Ggtt,
        };
        let target = Va::new(space, addr48(c[1] & !3, c[2]))?.raw;
        cur.start_batch(target, header & BBS_SECOND_LEVEL != 0, c.len(), ppgtt)?;
        Ok(Flow::Moved)
    }

    fn cond_batch_end(&mut self, on: On, c: &[u32], cur: &mut Cursor) -> Result<Flow, Stop> {
        let header = c[0];
        if c.len() != 4 {
            return Err(invalid());
        }
        if header & CBBE_COMPARE == 0 {
            // "The parser will continue to the next command."
            return Ok(Flow::Next);
        }
        let addr = on.mi_addr(header & MI_USE_GGTT != 0, c[2] & !7, c[3])?;
        let value = if header & CBBE_MASK_MODE != 0 {
            let mut b = [0u8; 8];
            self.va_read(addr, &mut b)?;
            let mask = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let data = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            mask & data
        } else {
            self.read_u32(addr)?
        };
        if value > c[1] || !cur.end_all_batches() {
            return Ok(Flow::Next);
        }
        Ok(Flow::Moved)
    }

    fn store_data_imm(&mut self, on: On, c: &[u32]) -> Result<(), Stop> {
        let header = c[0];
        if c.get(1).is_some_and(|dw| dw & 1 != 0) {
            return Err(unmodeled("MI_STORE_DATA_IMM Core Mode Enable"));
        }
        let bytes: usize = match (c.len(), header & SDI_STORE_QWORD != 0) {
            (4, false) => 4,
            (5, _) => 8,
            _ => return Err(invalid()),
        };
        let addr = on.mi_addr(header & MI_USE_GGTT != 0, c[1] & !3, c[2])?;
        let mut data = [0u8; 8];
        data[..4].copy_from_slice(&c[3].to_le_bytes());
        if bytes == 8 {
            data[4..].copy_from_slice(&c[4].to_le_bytes());
        }
        self.va_write(addr, &data[..bytes])
    }

    fn load_register_imm(&mut self, on: On, c: &[u32]) -> Result<(), Stop> {
        if c.len().is_multiple_of(2) {
            return Err(invalid());
        }
        let disabled = (c[0] >> LRI_BYTE_DISABLES_SHIFT) & 0xf;
        let keep = (0..4)
            .filter(|byte| disabled >> byte & 1 != 0)
            .fold(0u32, |m, byte| m | 0xff << (8 * byte));
        for pair in c[1..].chunks_exact(2) {
            on.register(pair[0])?;
            let value = if keep == 0 {
                pair[1]
            } else {
                (self.reg(on, pair[0]) & keep) | (pair[1] & !keep)
            };
            self.set_reg(on, pair[0], value)?;
        }
        Ok(())
    }

    fn atomic(&mut self, on: On, c: &[u32]) -> Result<(), Stop> {
        let header = c[0];
        if header & POST_SYNC_OP != 0 {
            return Err(unmodeled("MI_ATOMIC Post-Sync Operation"));
        }
        let opcode = (header >> 8) & 0xff;
        let inline = header & ATOMIC_INLINE != 0;
        let (bytes, op) = match ((header >> 19) & 3, opcode) {
            (0, 0x01..=0x0f) => (4usize, opcode),
            (1, 0x21..=0x2f) => (8, opcode - atomic::QWORD),
            (2, atomic::CMP_WR16B) => (16, opcode),
            // The data size must match the opcode.
            _ => return Err(invalid()),
        };
        // With Inline Data the command holds all four DWords of both
        // operands whatever the data size (DWord Length 9; PRM vol 2a).
        let want = if inline { 11 } else { 3 };
        if c.len() != want {
            return Err(invalid());
        }
        let addr = on.mi_addr(header & MI_USE_GGTT != 0, c[1] & !3, c[2])?;
        // Operand dwords: inline, interleaved (operand 1 DW0, operand 2 DW0,
        // operand 1 DW1...); else [GPR1:GPR0] and [GPR3:GPR2].
        let mut op1 = [0u32; 4];
        let mut op2 = [0u32; 4];
        let gpr = self.image(on).gpr;
        for i in 0..bytes / 4 {
            if inline {
                op1[i] = c[3 + 2 * i];
                op2[i] = c[4 + 2 * i];
            } else {
                let half = |n: usize| (gpr[n + i / 2] >> (32 * (i % 2))) as u32;
                op1[i] = half(ATOMIC_OPERAND1_GPR);
                op2[i] = half(ATOMIC_OPERAND2_GPR);
            }
        }
        let mut old = [0u8; 16];
        self.va_read(addr, &mut old[..bytes])?;
        let dword = |b: &[u8; 16], i: usize| {
            u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        };
        let old_dw: [u32; 4] = core::array::from_fn(|i| dword(&old, i));
        let qword = |d: &[u32; 4], i: usize| u64::from(d[2 * i]) | u64::from(d[2 * i + 1]) << 32;
        let (new_dw, returned): ([u32; 4], [u32; 4]) = if bytes == 16 {
            // CMP_WR16B: compare and write the whole octword.
            let new = if old_dw == op1 { op2 } else { old_dw };
            (new, old_dw)
        } else {
            let bits = 8 * bytes as u32;
            let (o, a, b) = if bytes == 8 {
                (qword(&old_dw, 0), qword(&op1, 0), qword(&op2, 0))
            } else {
                (u64::from(old_dw[0]), u64::from(op1[0]), u64::from(op2[0]))
            };
            let new = atomic_result(op, bits, o, a, b)?;
            let ret = if op == atomic::PREDEC { new } else { o };
            let split = |v: u64| [v as u32, (v >> 32) as u32, 0, 0];
            (split(new), split(ret))
        };
        let mut out = [0u8; 16];
        for (i, d) in new_dw.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&d.to_le_bytes());
        }
        self.va_write(addr, &out[..bytes])?;
        if header & ATOMIC_RETURN != 0 {
            let image = self.image(on);
            let r = ATOMIC_RETURN_GPR;
            match bytes {
                // Only the low dword of GPR4 changes.
                4 => {
                    image.gpr[r] = (image.gpr[r] & !0xffff_ffff) | u64::from(returned[0]);
                }
                8 => image.gpr[r] = qword(&returned, 0),
                _ => {
                    image.gpr[r] = qword(&returned, 0);
                    image.gpr[r + 1] = qword(&returned, 1);
                }
            }
        }
        Ok(())
    }

    fn semaphore_wait(&mut self, on: On, c: &[u32], commands: &mut u32) -> Result<(), Stop> {
        let header = c[0];
        if c.len() != 4 {
            return Err(invalid());
        }
        let compare = (header >> 12) & 7;
        let sdd = c[1];
        if header & SEMA_REGISTER_POLL != 0 {
            // Always polling; the register may change by itself (the
            // timestamp): one command of the budget per read.
            let reg = c[2] & 0x7f_fffc;
            on.register(reg)?;
            loop {
                if semaphore_passes(compare, self.reg(on, reg), sdd)? {
                    return Ok(());
                }
                *commands += 1;
                self.timestamp += 1;
                if *commands > COMMAND_BUDGET {
                    return Err(Stop::kind(FaultKind::Hang));
                }
            }
        }
        let sad = self.read_u32(on.mi_addr(header & MI_USE_GGTT != 0, c[2] & !3, c[3])?)?;
        if semaphore_passes(compare, sad, sdd)? {
            return Ok(());
        }
        // Polling (Wait Mode 1) re-reads memory nothing else writes while
        // this submission runs; a signal (Wait Mode 0) could only come from
        // a submission that cannot run before this one ends. Either way the
        // wait never ends: the budget is spent.
        *commands = COMMAND_BUDGET;
        Err(Stop::kind(FaultKind::Hang))
    }

    /// The MI commands the table classes as plain.
    fn plain_mi(&mut self, on: On, op: u8, name: &'static str, c: &[u32]) -> Result<(), Stop> {
        let header = c[0];
        match op {
            MI_USER_INTERRUPT => self.engines[on.engine.index()].user_interrupts += 1,
            // No arbitration in a model that runs one submission at a time;
            // the topology filter only affects draws.
            MI_ARB_CHECK | MI_TOPOLOGY_FILTER => {}
            MI_SET_PREDICATE => {
                let mode = (header & 0xf) as u8;
                if (8..15).contains(&mode) {
                    return Err(invalid());
                }
                self.image(on).set_predicate = mode;
            }
            MI_PREDICATE => self.mi_predicate(on, header)?,
            MI_MATH => self.math(on, &c[1..])?,
            MI_NOOP => {}
            _ => return Err(unmodeled(name)),
        }
        Ok(())
    }

    fn mi_predicate(&mut self, on: On, header: u32) -> Result<(), Stop> {
        let load = (header >> 6) & 3;
        let combine = (header >> 3) & 3;
        let compare = header & 3;
        let src0 = self.reg64(on, PREDICATE_SRC0);
        let src1 = self.reg64(on, PREDICATE_SRC1);
        let result = match compare {
            predicate::COMPARE_TRUE => true,
            predicate::COMPARE_FALSE => false,
            predicate::COMPARE_SRCS_EQUAL => {
                self.set_reg64(on, PREDICATE_DATA, src0.wrapping_sub(src1))?;
                src0 == src1
            }
            _ => src0.wrapping_sub(src1) == self.reg64(on, PREDICATE_DATA),
        };
        let current = self.predicate_bit(on, PREDICATE_RESULT);
        let combined = match combine {
            predicate::COMBINE_SET => result,
            predicate::COMBINE_AND => current & result,
            predicate::COMBINE_OR => current | result,
            _ => current ^ result,
        };
        let new = match load {
            predicate::LOAD_KEEP => return Ok(()),
            predicate::LOAD_LOAD => combined,
            predicate::LOAD_LOADINV => !combined,
            _ => return Err(invalid()),
        };
        self.set_reg(on, on.reg(PREDICATE_RESULT), u32::from(new))
    }

    /// MI_MATH's ALU instructions over the context's GPRs.
    fn math(&mut self, on: On, instructions: &[u32]) -> Result<(), Stop> {
        let image = self.image(on);
        let mut a = image.alu;
        let mut gpr = image.gpr;
        for &inst in instructions {
            a.execute(&mut gpr, inst)?;
        }
        let image = self.image(on);
        image.alu = a;
        image.gpr = gpr;
        Ok(())
    }

    /// A 3D, media or video command other than PIPE_CONTROL.
    fn gfx(
        &mut self,
        on: On,
        spec: &'static CmdSpec,
        c: &[u32],
        budget: &mut u64,
    ) -> Result<(), Stop> {
        let header = c[0];
        let name = spec.name;
        if matches!(name, "3DPRIMITIVE" | "GPGPU_WALKER")
            && header & DRAW_PREDICATED != 0
            && !self.predicate_bit(on, PREDICATE_RESULT)
        {
            return Ok(());
        }
        let hz_operation =
            name == "3DSTATE_WM_HZ_OP" && c.get(1).is_some_and(|d| d & HZ_OPERATIONS != 0);
        if hz_operation {
            return Err(unmodeled(
                "3DSTATE_WM_HZ_OP depth, stencil or HiZ operation",
            ));
        }
        if name == "3DPRIMITIVE" {
            return self.draw(on.engine, on.context, on.gfx_space(), budget);
        }
        if (spec.writes_through_state || spec.dispatches_shaders) && name != "3DSTATE_WM_HZ_OP" {
            return Err(unmodeled(name));
        }
        if moves_memory_by_itself(name) {
            return Err(unmodeled(name));
        }
        let state = &mut self.image(on).pipeline;
        let keep = |dst: &mut [u32], c: &[u32]| {
            for (d, s) in dst.iter_mut().zip(c) {
                *d = *s;
            }
        };
        match name {
            "PIPELINE_SELECT" => {
                // Mask Bits 15:8 select which of bits 7:0 the command sets.
                let mask = (header >> 8) & 3;
                state.pipeline = (state.pipeline & !mask) | (header & mask);
            }
            "3DSTATE_DEPTH_BUFFER" => keep(&mut state.depth, c),
            "3DSTATE_STENCIL_BUFFER" => keep(&mut state.stencil, c),
            "3DSTATE_HIER_DEPTH_BUFFER" => keep(&mut state.hiz, c),
            "3DSTATE_CLEAR_PARAMS" => keep(&mut state.clear, c),
            "STATE_BASE_ADDRESS" => {
                // Surface State Base Address: DWords 4-5, Modify Enable bit 0.
                if let (Some(&lo), Some(&hi)) = (c.get(4), c.get(5)) {
                    if lo & 1 != 0 {
                        state.surface_base = Some(addr48(lo & !0xfff, hi));
                    }
                }
            }
            "3DSTATE_BINDING_TABLE_POOL_ALLOC" => {
                // Pool Enable DWord 1 bit 11, base bits 47:12.
                state.binding_table_pool = match (c.get(1), c.get(2)) {
                    (Some(&lo), Some(&hi)) if lo & (1 << 11) != 0 => Some(addr48(lo & !0xfff, hi)),
                    _ => None,
                };
            }
            "3DSTATE_BINDING_TABLE_POINTERS_PS" => {
                state.binding_table_ps = c.get(1).map_or(0, |d| d & 0xffe0);
            }
            _ => {}
        }
        state.commands = state.commands.saturating_add(1);
        Ok(())
    }

    fn flush_dw(&mut self, on: On, c: &[u32]) -> Result<(), Stop> {
        let header = c[0];
        if c.len() != 4 && c.len() != 5 {
            return Err(invalid());
        }
        let post_sync = (header >> 14) & 3;
        if post_sync == 0 {
            return Ok(());
        }
        if header & FLUSH_DW_STORE_INDEX != 0 {
            return Err(unmodeled("MI_FLUSH_DW Store Data Index"));
        }
        let addr = on.mi_addr(c[1] & FLUSH_DW_GGTT != 0, c[1] & !7, c[2])?;
        match post_sync {
            1 if c.len() == 4 => self.write_u32(addr, c[3]),
            1 => {
                let v = u64::from(c[3]) | (u64::from(c[4]) << 32);
                self.va_write(addr, &v.to_le_bytes())
            }
            3 => {
                let ts = self.timestamp;
                self.va_write(addr, &ts.to_le_bytes())
            }
            _ => Err(invalid()),
        }
    }

    fn pipe_control(&mut self, on: On, c: &[u32]) -> Result<(), Stop> {
        if c.len() != 6 {
            return Err(invalid());
        }
        if c[1] & PIPE_CONTROL_LRI != 0 {
            return Err(unmodeled("PIPE_CONTROL LRI Post Sync Operation"));
        }
        let post_sync = (c[1] >> 14) & 3;
        if post_sync == 0 {
            return Ok(());
        }
        if c[1] & PIPE_CONTROL_STORE_INDEX != 0 {
            return Err(unmodeled("PIPE_CONTROL Store Data Index"));
        }
        let addr = on.mi_addr(c[1] & PIPE_CONTROL_GGTT != 0, c[2] & !7, c[3])?;
        let value = match post_sync {
            1 => u64::from(c[4]) | (u64::from(c[5]) << 32),
            2 => 0, // PS depth count: no pixels in this model.
            _ => self.timestamp,
        };
        self.va_write(addr, &value.to_le_bytes())
    }

    fn blit(&mut self, on: On, c: &[u32], budget: &mut u64) -> Result<(), Stop> {
        let header = c[0];
        let op = (header >> 22) & 0x7f;
        if header & BLT_TILED != 0 {
            return Err(unmodeled("tiled XY blit"));
        }
        let br13 = c.get(1).copied().unwrap_or(0);
        let bpp: u64 = match (br13 >> 24) & 3 {
            0 => 1,
            1 | 2 => 2,
            _ => 4,
        };
        let rop = (br13 >> 16) & 0xff;
        let dst_pitch = u64::from(br13 & 0xffff);
        let (op_ok, want_len) = match op {
            BLT_XY_COLOR => (rop == ROP_PATCOPY, 7),
            BLT_XY_SRC_COPY => (rop == ROP_SRCCOPY, 10),
            _ => (false, 0),
        };
        if c.len() != want_len {
            return Err(invalid());
        }
        if !op_ok {
            return Err(unmodeled(
                "XY blit raster operation other than PATCOPY / SRCCOPY",
            ));
        }
        if br13 & 0x8000 != 0 {
            return Err(unmodeled("XY blit with a negative destination pitch"));
        }
        let (x1, y1) = (u64::from(c[2] & 0xffff), u64::from(c[2] >> 16));
        let (x2, y2) = (u64::from(c[3] & 0xffff), u64::from(c[3] >> 16));
        if x2 <= x1 || y2 <= y1 {
            return Ok(());
        }
        let row_bytes = (x2 - x1) * bpp;
        *budget += row_bytes * (y2 - y1);
        if *budget > BLIT_BYTE_BUDGET {
            return Err(Stop::kind(FaultKind::Hang));
        }
        let dst = on.gfx_addr(c[4], c[5])?;
        // A page at a time: one GGTT lookup per page and side, as the
        // engine's TLB would have it (the copy is the model's hot loop).
        let mut chunk = [0u8; 4096];
        let fill = (row_bytes as usize).min(chunk.len());
        if op == BLT_XY_COLOR {
            let color = c[6].to_le_bytes();
            for (i, b) in chunk[..fill].iter_mut().enumerate() {
                *b = color[i % bpp as usize];
            }
        }
        let (src, src_pitch, sx, sy) = if op == BLT_XY_SRC_COPY {
            if c[7] & 0x8000 != 0 {
                return Err(unmodeled("XY blit with a negative source pitch"));
            }
            (
                on.gfx_addr(c[8], c[9])?,
                u64::from(c[7] & 0xffff),
                u64::from(c[6] & 0xffff),
                u64::from(c[6] >> 16),
            )
        } else {
            (dst, 0, 0, 0)
        };
        for row in 0..(y2 - y1) {
            let drow = dst.add((y1 + row) * dst_pitch + x1 * bpp)?;
            let srow = src.add((sy + row) * src_pitch + sx * bpp)?;
            let mut done = 0;
            while done < row_bytes {
                let n = (row_bytes - done).min(chunk.len() as u64);
                let buf = &mut chunk[..n as usize];
                if op == BLT_XY_SRC_COPY {
                    self.va_read(srow.add(done)?, buf)?;
                }
                self.va_write(drow.add(done)?, buf)?;
                done += n;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{idle, run, run_on, setup, vgpu_context, BATCH, DATA};
    use super::*;
    use crate::backend::{Backend, EngineStatus};
    use crate::encode::predicate::*;
    use crate::regs::{ring, MmioOffset};
    use crate::scan::table::{Len, COMMANDS};
    use crate::testutil::*;

    const RENDER: Engine = Engine::Render;
    const RESULT: u32 = 0x2418;
    const RESULT_1: u32 = 0x241c;
    const SRC0: u32 = 0x2400;
    const SRC1: u32 = 0x2408;

    fn gpr(engine: Engine, n: u32) -> u32 {
        engine.mmio_base() + ring::GPR_BASE + 8 * n
    }

    fn fault_kind(st: EngineStatus) -> Option<FaultKind> {
        match st {
            EngineStatus::Faulted(f) => Some(f.kind),
            _ => None,
        }
    }

    fn unmodeled_fault(st: EngineStatus) -> &'static str {
        match fault_kind(st) {
            Some(FaultKind::Unmodeled(what)) => what,
            other => panic!("not an Unmodeled fault: {other:?}"),
        }
    }

    /// The shortest form of a command of the table, all fields zero but
    /// its header.
    fn shortest(name: &str) -> Vec<u32> {
        let spec = COMMANDS.iter().find(|c| c.name == name).unwrap();
        let (len, field) = match spec.len {
            Len::Fixed(n) => (u32::from(n), 0),
            Len::Field { bias, min, .. } => (min, min - u32::from(bias)),
        };
        let mut v = vec![0; len as usize];
        v[0] = spec.opcode.header_bits() | field;
        v
    }

    /// Runs `cmds` on the render engine and returns what MI_STORE_REGISTER_MEM
    /// of `reg` stored afterwards.
    fn render_reg_after(g: &mut SimGpu<SparseMem>, cmds: &[u32], reg: u32) -> u32 {
        let mut s = cmds.to_vec();
        s.extend(srm(reg, DATA + 0xff0));
        idle(run(g, RENDER, &s));
        read_u32(g, DATA + 0xff0)
    }

    fn load64(reg: u32, v: u64) -> Vec<u32> {
        let mut s = lri(reg, v as u32).to_vec();
        s.extend(lri(reg + 4, (v >> 32) as u32));
        s
    }

    #[test]
    fn mi_predicate_compares_combines_and_loads() {
        let mut g = setup();
        let equal_sources = [load64(SRC0, 5), load64(SRC1, 5)].concat();
        let differ = [load64(SRC0, 7), load64(SRC1, 5)].concat();
        let cases: [(&[u32], u32, u32); 8] = [
            (
                &equal_sources,
                mi_predicate(LOAD_LOAD, COMBINE_SET, COMPARE_SRCS_EQUAL),
                1,
            ),
            (
                &differ,
                mi_predicate(LOAD_LOAD, COMBINE_SET, COMPARE_SRCS_EQUAL),
                0,
            ),
            (
                &differ,
                mi_predicate(LOAD_LOADINV, COMBINE_SET, COMPARE_SRCS_EQUAL),
                1,
            ),
            (&[], mi_predicate(LOAD_LOAD, COMBINE_SET, COMPARE_TRUE), 1),
            (&[], mi_predicate(LOAD_LOAD, COMBINE_SET, COMPARE_FALSE), 0),
            // Current predicate 1 (from the case before is 0: set it first).
            (
                &lri(RESULT, 1),
                mi_predicate(LOAD_LOAD, COMBINE_AND, COMPARE_FALSE),
                0,
            ),
            (
                &lri(RESULT, 1),
                mi_predicate(LOAD_LOAD, COMBINE_XOR, COMPARE_TRUE),
                0,
            ),
            (
                &lri(RESULT, 1),
                mi_predicate(LOAD_KEEP, COMBINE_SET, COMPARE_FALSE),
                1,
            ),
        ];
        for (i, (setup_cmds, pred, want)) in cases.into_iter().enumerate() {
            let mut s = setup_cmds.to_vec();
            s.push(pred);
            assert_eq!(render_reg_after(&mut g, &s, RESULT), want, "case {i}");
        }
        // OR with a set predicate stays set.
        let s = [
            lri(RESULT, 1).to_vec(),
            vec![mi_predicate(LOAD_LOAD, COMBINE_OR, COMPARE_FALSE)],
        ]
        .concat();
        assert_eq!(render_reg_after(&mut g, &s, RESULT), 1);
    }

    #[test]
    fn deltas_equal_compares_against_the_last_srcs_equal_delta() {
        let mut g = setup();
        let mut s = [load64(SRC0, 10), load64(SRC1, 4)].concat();
        // SRCS_EQUAL records DATA = 6.
        s.push(mi_predicate(LOAD_LOAD, COMBINE_SET, COMPARE_SRCS_EQUAL));
        s.extend([load64(SRC0, 106), load64(SRC1, 100)].concat());
        s.push(mi_predicate(LOAD_LOAD, COMBINE_SET, COMPARE_DELTAS_EQUAL));
        assert_eq!(render_reg_after(&mut g, &s, RESULT), 1);
        s.extend(load64(SRC1, 99));
        s.push(mi_predicate(LOAD_LOAD, COMBINE_SET, COMPARE_DELTAS_EQUAL));
        assert_eq!(render_reg_after(&mut g, &s, RESULT), 0);
        assert_eq!(render_reg_after(&mut g, &[], 0x2410), 6);
    }

    #[test]
    fn predicated_store_register_mem_follows_the_predicate() {
        let mut g = setup();
        for (result, want) in [(0, 0xaaaa), (1, 0x5555)] {
            let mut s = lri(DATA as u32, 0).to_vec();
            s.clear();
            s.extend(sdi(DATA, 0xaaaa));
            s.extend(lri(gpr(RENDER, 0), 0x5555));
            s.extend(lri(RESULT, result));
            let mut store = srm(gpr(RENDER, 0), DATA);
            store[0] |= SRM_PREDICATE;
            s.extend(store);
            idle(run(&mut g, RENDER, &s));
            assert_eq!(read_u32(&mut g, DATA), want, "result {result}");
        }
    }

    #[test]
    fn predicated_batch_start_falls_through_while_result_1_is_clear() {
        let mut g = setup();
        let mut batch = sdi(DATA + 4, 0xbb).to_vec();
        batch.push(BB_END);
        write_dwords(&mut g, BATCH, &batch);
        for (result_1, jumped) in [(0, false), (1, true)] {
            write_dwords(&mut g, DATA, &[0, 0]);
            let mut s = lri(RESULT_1, result_1).to_vec();
            s.extend(bb_start_predicated(BATCH));
            s.extend(sdi(DATA, 0xaa));
            idle(run(&mut g, RENDER, &s));
            // Ignored, the start falls through to the store after it in the
            // ring; taken, the batch runs and returns to that same store.
            assert_eq!(read_u32(&mut g, DATA), 0xaa);
            assert_eq!(read_u32(&mut g, DATA + 4) == 0xbb, jumped);
        }
        // Only the render streamer predicates batch starts.
        let st = run(&mut g, Engine::Blitter, &bb_start_predicated(BATCH));
        assert!(unmodeled_fault(st).contains("render"));
    }

    #[test]
    fn set_predicate_skips_its_scope_while_the_condition_holds() {
        let mut g = setup();
        let a = vgpu_context(0);
        let gpr0 = gpr(RENDER, 0);
        for (result, want) in [(1, 0), (0, 0x77)] {
            let mut s = lri(gpr0, 0).to_vec();
            s.extend(lri(RESULT, result));
            // NOOP on result set.
            s.push(set_predicate(4));
            s.extend(lri(gpr0, 0x77));
            s.push(set_predicate(0));
            s.extend(srm(gpr0, DATA));
            idle(run_on(&mut g, RENDER, a, &s));
            assert_eq!(read_u32(&mut g, DATA), want, "result {result}");
        }
        // NOOP always, scope left open: the next submission of the same
        // context is still inside it; another context is not.
        idle(run_on(&mut g, RENDER, a, &[set_predicate(15)]));
        let st = run_on(&mut g, RENDER, a, &sdi(DATA, 1));
        assert!(unmodeled_fault(st).contains("MI_SET_PREDICATE"));
        g.reset_engine(RENDER);
        idle(run_on(&mut g, RENDER, vgpu_context(1), &sdi(DATA, 2)));
        assert_eq!(read_u32(&mut g, DATA), 2);
        // Reserved modes are command errors.
        let st = run(&mut g, RENDER, &[set_predicate(9)]);
        assert_eq!(fault_kind(st), Some(FaultKind::InvalidCommand));
    }

    #[test]
    fn conditional_batch_end_ends_the_batch_unless_memory_is_greater() {
        let mut g = setup();
        let sem = DATA + 0x100;
        for (mem, mask_mode, ended) in [
            (5, false, true),
            (6, false, false),
            (0xf1f, true, false),
            (0x0f0f, true, true),
        ] {
            write_dwords(&mut g, DATA, &[0, 0]);
            // In mask mode the qword is (mask, data): 0xff & mem.
            let words = if mask_mode { [0xff, mem] } else { [mem, 0] };
            write_dwords(&mut g, sem, &words);
            let mut batch = cond_bb_end(sem, if mask_mode { 0x0f } else { 5 }, mask_mode).to_vec();
            batch.extend(sdi(DATA + 4, 0xbb));
            batch.push(BB_END);
            write_dwords(&mut g, BATCH, &batch);
            let mut s = bb_start(BATCH, false).to_vec();
            s.extend(sdi(DATA, 0xaa));
            idle(run(&mut g, RENDER, &s));
            assert_eq!(read_u32(&mut g, DATA), 0xaa, "mem {mem:#x}");
            assert_eq!(read_u32(&mut g, DATA + 4) != 0xbb, ended, "mem {mem:#x}");
        }
    }

    #[test]
    fn conditional_batch_end_in_a_second_level_ends_its_parent_too() {
        let mut g = setup();
        let sem = DATA + 0x100;
        write_dwords(&mut g, sem, &[0]);
        let mut second = cond_bb_end(sem, 0, false).to_vec();
        second.push(BB_END);
        write_dwords(&mut g, BATCH + 0x200, &second);
        let mut first = bb_start(BATCH + 0x200, true).to_vec();
        first.extend(sdi(DATA + 4, 0xbb));
        first.push(BB_END);
        write_dwords(&mut g, BATCH, &first);
        let mut s = bb_start(BATCH, false).to_vec();
        s.extend(sdi(DATA, 0xaa));
        idle(run(&mut g, RENDER, &s));
        assert_eq!(read_u32(&mut g, DATA), 0xaa);
        assert_eq!(read_u32(&mut g, DATA + 4), 0);
        // Without Compare Semaphore it never ends the batch (nor reads).
        let mut second = cond_bb_end(0x4000_0000, 0, false).to_vec();
        second[0] &= !CBBE_COMPARE;
        second.push(BB_END);
        write_dwords(&mut g, BATCH + 0x200, &second);
        idle(run(&mut g, RENDER, &s));
        assert_eq!(read_u32(&mut g, DATA + 4), 0xbb);
    }

    #[test]
    fn load_register_mem_and_reg_move_data_between_memory_and_registers() {
        let mut g = setup();
        write_dwords(&mut g, DATA, &[0x1234_5678]);
        let e = Engine::Video;
        let mut s = lrm(gpr(e, 2), DATA).to_vec();
        s.extend(lrr(gpr(e, 2), gpr(e, 3) + 4));
        s.extend(srm(gpr(e, 3) + 4, DATA + 8));
        idle(run(&mut g, e, &s));
        assert_eq!(read_u32(&mut g, DATA + 8), 0x1234_5678);
        // A per-process address is refused, as the model has no PPGTT.
        let mut s = lrm(gpr(e, 2), DATA).to_vec();
        s[0] &= !MI_USE_GGTT;
        assert_eq!(fault_kind(run(&mut g, e, &s)), Some(FaultKind::Ppgtt));
    }

    #[test]
    fn copy_mem_mem_copies_one_dword_through_the_ggtt() {
        let mut g = setup();
        write_dwords(&mut g, DATA + 0x40, &[0xc0ffee, 0xdead]);
        idle(run(
            &mut g,
            Engine::Blitter,
            &copy_mem_mem(DATA + 0x1000, DATA + 0x40),
        ));
        assert_eq!(read_u32(&mut g, DATA + 0x1000), 0xc0ffee);
        assert_eq!(read_u32(&mut g, DATA + 0x1004), 0);
        let st = run(&mut g, RENDER, &copy_mem_mem(0x4000_0000, DATA));
        assert_eq!(fault_kind(st), Some(FaultKind::InvalidPte));
    }

    #[test]
    fn atomics_apply_every_dword_opcode_and_return_the_old_value() {
        use crate::encode::atomic::*;
        let mut g = setup();
        let m = u32::MAX;
        // (opcode, memory before, operand 1, operand 2, memory after)
        let cases = [
            (AND, 0b1100, 0b1010, 0, 0b1000),
            (OR, 0b1100, 0b1010, 0, 0b1110),
            (XOR, 0b1100, 0b1010, 0, 0b0110),
            (MOVE, 1, 9, 0, 9),
            (INC, m, 0, 0, 0),
            (DEC, 0, 0, 0, m),
            (ADD, 5, 7, 0, 12),
            (SUB, 5, 7, 0, m - 1),
            (RSUB, 5, 7, 0, 2),
            (IMAX, m, 1, 0, 1),
            (IMIN, m, 1, 0, m),
            (UMAX, m, 1, 0, m),
            (UMIN, m, 1, 0, 1),
            (CMP_WR, 3, 3, 8, 8),
            (CMP_WR, 3, 4, 8, 3),
            (PREDEC, 3, 0, 0, 2),
        ];
        for (op, before, op1, op2, after) in cases {
            write_dwords(&mut g, DATA, &[before, 0xeeee]);
            let mut s = load64(gpr(RENDER, 4), 0xffff_0000_ffff_0000);
            s.extend(atomic_dword(DATA, op, op1, op2, true));
            s.extend(srm(gpr(RENDER, 4), DATA + 8));
            s.extend(srm(gpr(RENDER, 4) + 4, DATA + 12));
            idle(run(&mut g, RENDER, &s));
            assert_eq!(read_u32(&mut g, DATA), after, "opcode {op:#x}");
            assert_eq!(read_u32(&mut g, DATA + 4), 0xeeee, "opcode {op:#x}");
            let returned = if op == PREDEC { after } else { before };
            assert_eq!(read_u32(&mut g, DATA + 8), returned, "opcode {op:#x}");
            // A dword return changes only the low half of GPR4.
            assert_eq!(read_u32(&mut g, DATA + 12), 0xffff_0000, "opcode {op:#x}");
        }
    }

    #[test]
    fn atomics_on_qwords_octwords_and_gpr_operands() {
        use crate::encode::atomic::*;
        let mut g = setup();
        write_dwords(&mut g, DATA, &[u32::MAX, 1]);
        idle(run(&mut g, RENDER, &atomic_qword(DATA, ADD, 1, 0, false)));
        assert_eq!(read_u64(&mut g, DATA), 0x2_0000_0000);
        // Operands from GPR0 (operand 1) and GPR2 (operand 2).
        let mut s = load64(gpr(RENDER, 0), 0x2_0000_0000);
        s.extend(load64(gpr(RENDER, 2), 42));
        let mut cmp = atomic_qword(DATA, CMP_WR, 0, 0, true)[..3].to_vec();
        cmp[0] = (cmp[0] & !0xff & !ATOMIC_INLINE) | 1;
        s.extend(cmp);
        s.extend(srm(gpr(RENDER, 4) + 4, DATA + 0x10));
        idle(run(&mut g, RENDER, &s));
        assert_eq!(read_u64(&mut g, DATA), 42);
        assert_eq!(read_u32(&mut g, DATA + 0x10), 2);
        // The octword compare-and-write, inline.
        write_dwords(&mut g, DATA + 0x20, &[1, 2, 3, 4]);
        let mut s =
            vec![(0x2f << 23) | MI_USE_GGTT | (2 << 19) | ATOMIC_INLINE | (CMP_WR16B << 8) | 9];
        s.extend([(DATA + 0x20) as u32, 0]);
        for i in 0..4 {
            s.extend([1 + i, 10 + i]);
        }
        idle(run(&mut g, RENDER, &s));
        for i in 0..4 {
            assert_eq!(read_u32(&mut g, DATA + 0x20 + 4 * u64::from(i)), 10 + i);
        }
        // A data size the opcode does not have is a command error; the
        // post-sync form is not modelled.
        let mut bad = atomic_dword(DATA, ADD, 1, 0, false);
        bad[0] |= 1 << 19;
        assert_eq!(
            fault_kind(run(&mut g, RENDER, &bad)),
            Some(FaultKind::InvalidCommand)
        );
        g.reset_engine(RENDER);
        let mut post = atomic_dword(DATA, ADD, 1, 0, false);
        post[0] |= POST_SYNC_OP;
        assert!(unmodeled_fault(run(&mut g, RENDER, &post)).contains("MI_ATOMIC"));
    }

    #[test]
    fn semaphore_waits_pass_on_their_compare_and_hang_otherwise() {
        let mut g = setup();
        write_dwords(&mut g, DATA, &[5]);
        // (compare, inline data) pairs that pass against 5, then ones that do not.
        let passing = [(0, 4), (1, 5), (2, 6), (3, 5), (4, 5), (5, 4)];
        let failing = [(0, 5), (1, 6), (2, 5), (3, 4), (4, 4), (5, 5)];
        for (compare, data) in passing {
            let mut s = semaphore_wait(DATA, data, compare, true).to_vec();
            s.extend(sdi(DATA + 4, compare + 1));
            idle(run(&mut g, Engine::Video, &s));
            assert_eq!(read_u32(&mut g, DATA + 4), compare + 1);
        }
        for (i, (compare, data)) in failing.into_iter().enumerate() {
            let st = run(
                &mut g,
                Engine::Video,
                &semaphore_wait(DATA, data, compare, i % 2 == 0),
            );
            assert_eq!(fault_kind(st), Some(FaultKind::Hang), "compare {compare}");
            g.reset_engine(Engine::Video);
        }
    }

    #[test]
    fn a_register_poll_rereads_the_register_within_the_budget() {
        let mut g = setup();
        let timestamp = RENDER.mmio_base() + ring::TIMESTAMP;
        let now = g.read_reg(MmioOffset::reg(timestamp));
        let mut wait = semaphore_wait(0, now + 100, 1, true);
        wait[0] |= SEMA_REGISTER_POLL;
        wait[2] = timestamp;
        let mut s = wait.to_vec();
        s.extend(sdi(DATA, 1));
        idle(run(&mut g, RENDER, &s));
        assert_eq!(read_u32(&mut g, DATA), 1);
        assert!(g.read_reg(MmioOffset::reg(timestamp)) >= now + 100);
        // A GPR nothing changes never satisfies it.
        wait[2] = gpr(RENDER, 0);
        wait[1] = 1;
        assert_eq!(
            fault_kind(run(&mut g, RENDER, &wait)),
            Some(FaultKind::Hang)
        );
    }

    #[test]
    fn semaphore_signal_has_no_effect_but_names_a_real_engine() {
        let mut g = setup();
        idle(run(&mut g, Engine::Blitter, &semaphore_signal(0, 1)));
        let st = run(&mut g, Engine::Blitter, &semaphore_signal(4, 1));
        assert_eq!(fault_kind(st), Some(FaultKind::InvalidCommand));
    }

    fn math(ops: &[u32]) -> Vec<u32> {
        let mut v = vec![mi_math(ops.len() as u32)];
        v.extend(ops);
        v
    }

    #[test]
    fn mi_math_runs_the_alu_over_the_contexts_gprs() {
        use crate::encode::alu::*;
        let mut g = setup();
        let e = Engine::Blitter;
        let r = |n| gpr(e, n);
        let mut s = load64(r(0), u64::MAX);
        s.extend(load64(r(1), 2));
        s.extend(math(&[
            op(LOAD, SRCA, 0),
            op(LOAD, SRCB, 1),
            op(ADD, 0, 0),
            op(STORE, 2, ACCU),
            op(STORE, 3, CF),
            op(SUB, 0, 0),
            op(STORE, 4, ACCU),
            op(STOREINV, 5, CF),
            op(LOAD, SRCA, 1),
            op(LOAD, SRCB, 1),
            op(XOR, 0, 0),
            op(STORE, 6, ZF),
            op(LOADINV, SRCA, 1),
            op(LOAD1, SRCB, 0),
            op(AND, 0, 0),
            op(STORE, 7, ACCU),
            op(LOAD0, SRCB, 0),
            op(OR, 0, 0),
            op(STORE, 8, ACCU),
        ]));
        for (i, n) in (2..=8).enumerate() {
            s.extend(srm(r(n), DATA + 8 * i as u64));
            s.extend(srm(r(n) + 4, DATA + 8 * i as u64 + 4));
        }
        idle(run(&mut g, e, &s));
        let want = [1, u64::MAX, u64::MAX - 2, u64::MAX, u64::MAX, !2, !2];
        for (i, w) in want.into_iter().enumerate() {
            assert_eq!(read_u64(&mut g, DATA + 8 * i as u64), w, "GPR{}", i + 2);
        }
        // An operand that does not exist, or a store into SRCA, is a
        // command error.
        for bad in [
            op(LOAD, SRCA, 0x3ff),
            op(STORE, SRCA, ACCU),
            op(0x7ff, 0, 0),
        ] {
            assert_eq!(
                fault_kind(run(&mut g, e, &math(&[bad]))),
                Some(FaultKind::InvalidCommand)
            );
            g.reset_engine(e);
        }
    }

    #[test]
    fn alu_state_is_per_context() {
        use crate::encode::alu::*;
        let mut g = setup();
        let (a, b) = (vgpu_context(0), vgpu_context(1));
        let mut s = load64(gpr(RENDER, 0), 0x77);
        s.extend(math(&[
            op(LOAD, SRCA, 0),
            op(LOAD0, SRCB, 0),
            op(ADD, 0, 0),
        ]));
        idle(run_on(&mut g, RENDER, a, &s));
        let mut s = math(&[op(STORE, 1, ACCU)]);
        s.extend(srm(gpr(RENDER, 1), DATA));
        idle(run_on(&mut g, RENDER, b, &s));
        assert_eq!(read_u32(&mut g, DATA), 0);
        idle(run_on(&mut g, RENDER, a, &s));
        assert_eq!(read_u32(&mut g, DATA), 0x77);
    }

    #[test]
    fn draws_and_dispatches_are_skipped_when_predicated_off_and_unmodeled_otherwise() {
        let mut g = setup();
        // A draw without its state is not modelled (see `draw`); a
        // dispatch is never.
        for (name, fault) in [
            ("3DPRIMITIVE", "a draw before STATE_BASE_ADDRESS"),
            ("GPGPU_WALKER", "GPGPU_WALKER"),
        ] {
            let mut draw = shortest(name);
            draw[0] |= DRAW_PREDICATED;
            let mut s = lri(RESULT, 0).to_vec();
            s.extend(&draw);
            idle(run(&mut g, RENDER, &s));
            s[2] = 1;
            assert_eq!(unmodeled_fault(run(&mut g, RENDER, &s)), fault);
            g.reset_engine(RENDER);
            assert_eq!(unmodeled_fault(run(&mut g, RENDER, &shortest(name))), fault);
            g.reset_engine(RENDER);
        }
    }

    #[test]
    fn state_commands_run_and_are_recorded_per_context() {
        let mut g = setup();
        let (a, b) = (vgpu_context(0), vgpu_context(1));
        let names = [
            "PIPELINE_SELECT",
            "STATE_BASE_ADDRESS",
            "3DSTATE_CLIP",
            "3DSTATE_VF",
            "3DSTATE_CLEAR_PARAMS",
            "3DSTATE_STENCIL_BUFFER",
            "3DSTATE_HIER_DEPTH_BUFFER",
            "3DSTATE_WM_HZ_OP",
            "3DSTATE_VERTEX_BUFFERS",
            "3DSTATE_DRAWING_RECTANGLE",
        ];
        let mut s = Vec::new();
        for name in names {
            s.extend(shortest(name));
        }
        let mut depth = shortest("3DSTATE_DEPTH_BUFFER");
        depth[1] = 0xdead;
        s.extend(&depth);
        let mut select = shortest("PIPELINE_SELECT");
        select[0] |= (3 << 8) | 2;
        s.extend(&select);
        idle(run_on(&mut g, RENDER, a, &s));
        let state = |g: &SimGpu<SparseMem>, c: ContextId| g.contexts[c.index()][0].pipeline.clone();
        assert_eq!(state(&g, a).depth[1], 0xdead);
        assert_eq!(state(&g, a).pipeline, 2);
        assert_eq!(state(&g, a).commands, names.len() as u32 + 2);
        assert_eq!(state(&g, b), PipelineState::new());
        // Video state too.
        let video = [
            shortest("MFX_PIPE_MODE_SELECT"),
            shortest("MFX_SURFACE_STATE"),
            shortest("MFX_WAIT"),
        ]
        .concat();
        idle(run_on(&mut g, Engine::Video, a, &video));
        g.release_context(a);
        assert_eq!(state(&g, a), PipelineState::new());
    }

    #[test]
    fn depth_operations_and_commands_moving_memory_through_state_are_unmodeled() {
        let mut g = setup();
        let mut hz = shortest("3DSTATE_WM_HZ_OP");
        hz[1] = 1 << 30;
        assert!(unmodeled_fault(run(&mut g, RENDER, &hz)).contains("WM_HZ_OP"));
        for (engine, name) in [
            (RENDER, "MEDIA_CURBE_LOAD"),
            (RENDER, "MEDIA_INTERFACE_DESCRIPTOR_LOAD"),
            (RENDER, "3DSTATE_BINDING_TABLE_EDIT_PS"),
            (RENDER, "MI_STORE_DATA_INDEX"),
            (Engine::Video, "MFD_AVC_BSD_OBJECT"),
            (Engine::Video, "HUC_START"),
            (Engine::Blitter, "XY_FAST_COPY_BLT"),
        ] {
            g.reset_engine(engine);
            assert_eq!(unmodeled_fault(run(&mut g, engine, &shortest(name))), name);
        }
        g.reset_engine(RENDER);
        let mut pc = pipe_control_imm(DATA, 1);
        pc[1] |= PIPE_CONTROL_STORE_INDEX;
        assert!(unmodeled_fault(run(&mut g, RENDER, &pc)).contains("Store Data Index"));
    }

    #[test]
    fn lri_byte_write_disables_keep_the_disabled_bytes() {
        let mut g = setup();
        let r = gpr(RENDER, 9);
        let mut partial = lri(r, 0xaabb_ccdd);
        partial[0] |= 0b0101 << LRI_BYTE_DISABLES_SHIFT;
        let s = [lri(r, 0x1122_3344), partial].concat();
        assert_eq!(render_reg_after(&mut g, &s, r), 0xaa22_cc44);
    }

    #[test]
    fn noop_can_write_the_identification_number() {
        let mut g = setup();
        let s = [NOOP_WRITE_NOPID | 0x1234, NOOP];
        assert_eq!(
            render_reg_after(&mut g, &s, RENDER.mmio_base() + NOPID),
            0x1234
        );
    }
}
