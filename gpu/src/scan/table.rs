//! The scanner's own opcode table: every command the Gen9 engines accept,
//! with its header key, length rule, the engines that accept it and the
//! semantic class the auditor acts on.
//!
//! Facts come from Intel's public PRMs (vol 2a "Command Reference:
//! Instructions"), Mesa's genxml (`gen9.xml`) and the Linux i915/GVT-g
//! command parser. The rows of the families genxml describes (MI, 3D,
//! media/GPGPU, MFX/MFD/MFC, HCP, HUC, VDENC, SFC) were transcribed from
//! genxml; the blitter (BCS) and VEBOX rows, which genxml lacks, and a few MI
//! commands genxml omits, come from the PRM and i915. The conformance test
//! (`gpu/tests/scan_conformance.rs`) re-reads genxml and checks every row it
//! can against it, so hand edits cannot drift silently.
//!
//! The blitter rows beyond XY_COLOR/SRC_COPY/FAST_COPY/PAT/MONO_PAT and
//! the setup family are [`Op::XyBlit`] rows: their operand positions come
//! from i915 GVT-g's pre-Gen8 table widened to Gen8+ 64-bit addresses (see
//! [`BlitShape`]); their lengths are exact where the format is fixed.
//! [`Op::Unsupported`] rows (COLOR_BLT, SRC_COPY_BLT, the VEBOX commands,
//! HCP_TILE_CODING, MFX_VP8_ENCODER_CFG) are refused with a [`Refusal`]
//! the rejection names.
//!
//! Lengths: genxml's `length` attribute is wrong for many video commands
//! (the header alone, or another command's size) and Skylake and Kaby Lake
//! differ; the rows take the fields', the PRM's and the media-driver's
//! lengths and accept both platforms' forms. The conformance test lists
//! each deviation from genxml with its reason (`LENGTH_DEVIATIONS`) and
//! checks that the longest accepted form holds every field genxml declares.
//!
//! STATE_SIP is accepted: its System Instruction Pointer is an offset from
//! Instruction Base Address (genxml: `offset`), bounded like every kernel
//! start pointer by the instruction heap STATE_BASE_ADDRESS sets and the
//! scanner audits, and it is render context state; i965 and crocus emit it
//! in every context, NEO for mid-thread preemption.
//!
//! Per-engine deviations from genxml's `engine` attribute, on purpose:
//! - `MI_FLUSH_DW` is listed for the video engine only in genxml; the PRM
//!   defines it for every non-render streamer (BCS, VCS, VECS).
//! - `SFC_*` commands are also issued from the VEBOX streamer (VEBOX+SFC).
//!
//! Lookup is a constant-time array index per engine, built at compile time;
//! a duplicate key on one engine is a compile error.

use super::operands::{self, Layout};
use super::repr::{self as r, BlitShape};
use super::tracked::{consumer_of, Consumer, Tracked, CONSUMERS};
use crate::engine::Engine;

/// A set of engines, as a bit mask over [`Engine::index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Engines(u8);

impl Engines {
    /// No engine.
    pub const NONE: Engines = Engines(0);
    /// Every engine.
    pub const ALL: Engines = Engines(0b1111);

    /// The set holding only `e`.
    pub const fn only(e: Engine) -> Engines {
        Engines(1 << e as u8)
    }
    /// Union of two sets.
    pub const fn union(self, other: Engines) -> Engines {
        Engines(self.0 | other.0)
    }
    /// Whether `e` is in the set.
    pub const fn contains(self, e: Engine) -> bool {
        self.0 & (1 << e as u8) != 0
    }
    /// Raw bit mask (bit i = engine with index i).
    pub const fn bits(self) -> u8 {
        self.0
    }
}

const RCS: Engines = Engines::only(Engine::Render);
const BCS: Engines = Engines::only(Engine::Blitter);
const VCS: Engines = Engines::only(Engine::Video);
const VECS: Engines = Engines::only(Engine::VideoEnhance);
const ALL: Engines = Engines::ALL;

/// Command type, header bits 31:29 (PRM vol 2a, "Command Header").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandType {
    /// Memory interface (MI) commands, type 0.
    Mi,
    /// 2D (blitter) commands, type 2.
    Blt,
    /// GFXPIPE (3D, media, GPGPU, video) commands, type 3.
    Gfx,
}

/// The bits of a command header that identify the command.
///
/// - MI: opcode, bits 28:23 (6 bits).
/// - 2D: opcode, bits 28:22 (7 bits).
/// - GFXPIPE: bits 28:16 (13 bits) = pipeline/subtype (28:27), opcode
///   (26:24) and sub-opcode (23:16). The video families subdivide these same
///   bits differently (MFX: opcode 26:24, sub-opcode A 23:21, B 20:16;
///   HCP/HUC/VDENC/SFC: opcode 26:23, sub-opcode 22:16), so one 13-bit key
///   covers them all; which command a key means depends on the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// MI opcode (bits 28:23).
    Mi(u8),
    /// 2D opcode (bits 28:22).
    Blt(u8),
    /// GFXPIPE key (bits 28:16).
    Gfx(u16),
}

impl Opcode {
    /// Splits a header DWord into its opcode key; `None` for the reserved
    /// command types (1, 4-7).
    #[inline]
    pub const fn of(header: u32) -> Option<Opcode> {
        match header >> 29 {
            0 => Some(Opcode::Mi(((header >> 23) & 0x3f) as u8)),
            2 => Some(Opcode::Blt(((header >> 22) & 0x7f) as u8)),
            3 => Some(Opcode::Gfx(((header >> 16) & 0x1fff) as u16)),
            _ => None,
        }
    }

    /// The command type.
    pub const fn command_type(self) -> CommandType {
        match self {
            Opcode::Mi(_) => CommandType::Mi,
            Opcode::Blt(_) => CommandType::Blt,
            Opcode::Gfx(_) => CommandType::Gfx,
        }
    }

    /// Header bits this key fixes (type + opcode fields), all others zero.
    pub const fn header_bits(self) -> u32 {
        match self {
            Opcode::Mi(op) => (op as u32 & 0x3f) << 23,
            Opcode::Blt(op) => (2 << 29) | ((op as u32 & 0x7f) << 22),
            Opcode::Gfx(key) => (3 << 29) | ((key as u32 & 0x1fff) << 16),
        }
    }

    /// Mask of the header bits that make up the key (including the type).
    pub const fn mask(self) -> u32 {
        match self {
            Opcode::Mi(_) => 0xff80_0000,
            Opcode::Blt(_) => 0xffc0_0000,
            Opcode::Gfx(_) => 0xffff_0000,
        }
    }
}

/// How long a command is, in DWords.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Len {
    /// No DWord Length field: the command is always this long.
    Fixed(u8),
    /// A DWord Length field in header bits `bits-1:0`; length =
    /// field + `bias`. Lengths outside `min..=max` are rejected (a fixed-size
    /// command has `min == max`).
    Field {
        /// Width of the DWord Length field.
        bits: u8,
        /// Length bias (the DWords the field does not count).
        bias: u8,
        /// Smallest accepted total length.
        min: u32,
        /// Largest accepted total length.
        max: u32,
    },
}

impl Len {
    /// Shorthand constructor for [`Len::Field`].
    pub const fn field(bits: u8, bias: u8, min: u32, max: u32) -> Len {
        Len::Field {
            bits,
            bias,
            min,
            max,
        }
    }
}

/// What the auditor must do with a command (the semantic class).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// MI_NOOP.
    Noop,
    /// No graphics-memory or register operand: passes unchanged.
    Plain,
    /// Carries absolute graphics addresses the auditor has no operand
    /// description for: rejected (fail closed).
    GmOperands,
    /// Graphics-address operands declared by a [`Layout`]: each used field
    /// is audited against the slices and remapped.
    Gm(&'static Layout),
    /// HCP_PAK_INSERT_OBJECT: an inline payload passes; with Indirect
    /// Payload Enable (DWord 1 bit 31) every indirect payload descriptor's
    /// base is audited over its stated size and remapped.
    PakInsert,
    /// Only a privileged batch or the kernel driver may issue it (display,
    /// context switch, power, HWSP, resource streamer...): rejected.
    Privileged,
    /// MI_BATCH_BUFFER_START.
    BatchStart,
    /// MI_BATCH_BUFFER_END.
    BatchEnd,
    /// MI_CONDITIONAL_BATCH_BUFFER_END.
    CondBatchEnd,
    /// MI_SET_PREDICATE (only NOOP Never is accepted).
    SetPredicate,
    /// MI_STORE_DATA_IMM.
    StoreDataImm,
    /// MI_STORE_REGISTER_MEM.
    StoreRegMem,
    /// MI_LOAD_REGISTER_MEM.
    LoadRegMem,
    /// MI_LOAD_REGISTER_IMM.
    LoadRegImm,
    /// MI_LOAD_REGISTER_REG.
    LoadRegReg,
    /// MI_COPY_MEM_MEM.
    CopyMemMem,
    /// MI_ATOMIC.
    Atomic,
    /// MI_FLUSH_DW (post-sync write).
    FlushDw,
    /// PIPE_CONTROL (post-sync write).
    PipeControl,
    /// MI_SEMAPHORE_WAIT (memory poll).
    SemaphoreWait,
    /// MI_SEMAPHORE_SIGNAL (signals another engine's context).
    SemaphoreSignal,
    /// STATE_BASE_ADDRESS (base/size pairs).
    StateBaseAddress,
    /// XY_COLOR_BLT (destination surface).
    XyColorBlt,
    /// XY_SRC_COPY_BLT (source and destination surfaces).
    XySrcCopyBlt,
    /// XY_FAST_COPY_BLT (source and destination surfaces).
    XyFastCopyBlt,
    /// XY_SETUP_BLT / XY_SETUP_MONO_PATTERN_SL_BLT: the destination (and
    /// pattern) of the XY_PIXEL/SCANLINES/TEXT_IMMEDIATE blits that follow.
    BltSetup,
    /// XY_PIXEL_BLT, XY_SCANLINES_BLT, XY_TEXT_IMMEDIATE_BLT: a rectangle
    /// drawn into the destination of the last blitter setup.
    BltSetupDraw,
    /// XY_PAT_BLT (destination and 8x8 pattern surfaces).
    XyPatBlt,
    /// XY_MONO_PAT_BLT (destination; the mono pattern is inline).
    XyMonoPatBlt,
    /// One of the other XY blits, its operands declared by a
    /// [`BlitShape`]: destination (own or the setup's), colour or packed
    /// 1-bpp source, colour pattern.
    XyBlit(&'static BlitShape),
    /// A command the scanner does not accept (fail closed), with the
    /// reason.
    Unsupported(Refusal),
}

/// Why an [`Op::Unsupported`] command is refused (a one-byte code, so the
/// table rows stay small).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// COLOR_BLT, SRC_COPY_BLT: not a Gen9 command form.
    PreGen8Blit,
    /// VEBOX_STATE, VEBOX_SURFACE_STATE, VEB_DI_IECP: extents not modelled.
    Vebox,
    /// MFX_STATE_POINTER: points at memory-resident state of unknown size.
    StatePointer,
    /// HCP_TILE_CODING: genxml lists it for Gen9 with a length rule (bias
    /// 1) no other GFXPIPE command has; no Gen9 driver emits it.
    NotGen9,
    /// MFX_VP8_ENCODER_CFG: its frame-header update pointers (DW25-28) are
    /// offsets into the frame header buffer that nothing bounds.
    UnboundedOffsets,
}

impl Refusal {
    /// The reason, for logs and rejections.
    pub const fn why(self) -> &'static str {
        match self {
            Refusal::PreGen8Blit => {
                "pre-Gen8 blitter command (32-bit address form; neither i915 GVT-g's Gen8+ \
                 table nor i915's Gen9 blitter parser lists it): use its XY_ form"
            }
            Refusal::Vebox => {
                "VEBOX command: its surfaces' extents depend on VEBOX_SURFACE_STATE and \
                 VEBOX_STATE layouts the scanner does not model"
            }
            Refusal::StatePointer => {
                "MFX_STATE_POINTER: a graphics address (genxml types it uint) of memory-resident \
                 state whose size no public source gives; no Gen9 driver emits it"
            }
            Refusal::NotGen9 => {
                "not a Gen9 command (media-driver has it from Gen10), and genxml's length \
                 rule for it (bias 1) disagrees with every other GFXPIPE command's"
            }
            Refusal::UnboundedOffsets => {
                "its frame-header update pointers are offsets into the frame header buffer \
                 that no field bounds, so the PAK's writes through them cannot be audited"
            }
        }
    }
}

/// One row of the opcode table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdSpec {
    /// Name as in the PRM / genxml.
    pub name: &'static str,
    /// Header key.
    pub opcode: Opcode,
    /// Length rule.
    pub len: Len,
    /// Engines that accept it.
    pub engines: Engines,
    /// Semantic class.
    pub op: Op,
    /// It makes the engine write memory that the context's memory-resident
    /// state names rather than its own operands (see [`STATE_WRITERS`]).
    pub writes_through_state: bool,
    /// It starts shader threads, which reach memory through binding tables
    /// and surface states the scanner does not parse (see
    /// [`SHADER_DISPATCHES`]).
    pub dispatches_shaders: bool,
    /// The state it sets that later commands consume
    /// ([`super::tracked`]).
    pub tracks: Option<Tracked>,
    /// Its entry in [`CONSUMERS`]: the state it consumes.
    consumes: Option<u8>,
}

impl CmdSpec {
    /// The state this command consumes ([`CONSUMERS`]), if any.
    pub fn consumer(&self) -> Option<&'static Consumer> {
        CONSUMERS.get(usize::from(self.consumes?))
    }

    /// Nothing to do for it: no operand, no effect on the scan's state
    /// (no tracked state set or consumed, no writes through state).
    pub const fn inert(&self) -> bool {
        let plain = match self.op {
            Op::Noop | Op::Plain => true,
            Op::Gm(l) => l.fields.is_empty() && l.group.is_none(),
            _ => false,
        };
        plain && !self.writes_through_state && self.tracks.is_none() && self.consumes.is_none()
    }

    /// A command with nothing to audit that writes through memory-resident
    /// state and consumes at most a settled depth packet: the fast loop's
    /// class 13, which checks the packet itself.
    const fn plain_state_writer(&self) -> bool {
        let plain = match self.op {
            Op::Noop | Op::Plain => true,
            Op::Gm(l) => l.fields.is_empty() && l.group.is_none(),
            _ => false,
        };
        let consumes_only_depth = match self.consumes {
            None => true,
            Some(i) => super::tracked::CONSUMER_LIST[i as usize].only_settled_depth(),
        };
        plain && self.writes_through_state && self.tracks.is_none() && consumes_only_depth
    }

    /// A command that sets tracked state ([`Self::tracks`]) outside the
    /// render pipe (whose depth packet a state command may advance) and
    /// does nothing else: no operand, nothing consumed, nothing written
    /// through state. The full path only keeps its DWords; the fast loop's
    /// class 15 (`RECORDED_KIND`) does the same, and cannot fail.
    pub(crate) const fn fast_recorded(&self) -> bool {
        let no_operands = match self.op {
            Op::Noop | Op::Plain => true,
            Op::Gm(l) => l.fields.is_empty() && l.group.is_none(),
            _ => false,
        };
        let outside_render = match self.tracks {
            Some(t) => !matches!(t.pipe(), super::tracked::Pipe::Render),
            None => false,
        };
        no_operands
            && outside_render
            && self.consumes.is_none()
            && !self.writes_through_state
            && !self.dispatches_shaders
    }
}

/// Commands that start work which writes memory named by state the
/// scanner does not parse: shader threads writing render targets and
/// other surfaces through binding tables and surface states (3DPRIMITIVE,
/// the GPGPU and media dispatches), depth/HiZ operations on the depth
/// buffer set earlier (3DSTATE_WM_HZ_OP), and the video, VEBOX and SFC
/// objects that decode, encode or process into pictures set up by state
/// commands, possibly of an earlier submission. The targets of such a
/// command are not in its operands, so a submission with one has untracked
/// writes ([`crate::scan::WriteSet::untracked`]).
pub const STATE_WRITERS: [&str; 28] = [
    "3DPRIMITIVE",
    "3DSTATE_WM_HZ_OP",
    "GPGPU_WALKER",
    "MEDIA_OBJECT",
    "MEDIA_OBJECT_GRPID",
    "MEDIA_OBJECT_PRT",
    "MEDIA_OBJECT_WALKER",
    "HCP_BSD_OBJECT",
    "HCP_PAK_OBJECT",
    "HCP_PAK_INSERT_OBJECT",
    "HUC_START",
    "HUC_STREAM_OBJECT",
    "MFC_AVC_PAK_OBJECT",
    "MFC_JPEG_SCAN_OBJECT",
    "MFC_MPEG2_PAK_OBJECT",
    "MFD_AVC_BSD_OBJECT",
    "MFD_IT_OBJECT",
    "MFD_JPEG_BSD_OBJECT",
    "MFD_MPEG2_BSD_OBJECT",
    "MFD_VC1_BSD_OBJECT",
    "MFD_VP8_BSD_OBJECT",
    "MFX_DBK_OBJECT",
    "MFX_PAK_INSERT_OBJECT",
    "MFX_STITCH_OBJECT",
    "MFX_VP8_PAK_OBJECT",
    "VDENC_WALKER_STATE",
    "SFC_FRAME_START",
    "VEB_DI_IECP",
];

/// Commands that start shader threads: the render pipeline's draws and the
/// GPGPU and media dispatches. Their shaders read and write whatever
/// surfaces the binding tables and surface states in memory name, which
/// the scanner cannot audit, so a monitor that must contain hostile guests
/// completely can refuse them ([`crate::scan::Shadow::deny_shaders`]).
pub const SHADER_DISPATCHES: [&str; 6] = [
    "3DPRIMITIVE",
    "GPGPU_WALKER",
    "MEDIA_OBJECT",
    "MEDIA_OBJECT_GRPID",
    "MEDIA_OBJECT_PRT",
    "MEDIA_OBJECT_WALKER",
];

const fn listed(name: &str, list: &[&str]) -> bool {
    let mut i = 0;
    while i < list.len() {
        if same_name(name, list[i]) {
            return true;
        }
        i += 1;
    }
    false
}

const fn spec(name: &'static str, opcode: Opcode, len: Len, engines: Engines, op: Op) -> CmdSpec {
    CmdSpec {
        name,
        opcode,
        len,
        engines,
        op,
        writes_through_state: listed(name, &STATE_WRITERS),
        dispatches_shaders: listed(name, &SHADER_DISPATCHES),
        tracks: Tracked::set_by(name),
        consumes: consumer_of(name),
    }
}
const fn mi(op: u8) -> Opcode {
    Opcode::Mi(op)
}
const fn blt(op: u8) -> Opcode {
    Opcode::Blt(op)
}
const fn gfx(key: u16) -> Opcode {
    Opcode::Gfx(key)
}
/// Blitter DWord Length field: bits 7:0, bias 2 (PRM vol 2a, BCS commands).
const fn blt_len(min: u32, max: u32) -> Len {
    Len::field(8, 2, min, max)
}

/// Every command the scanner knows, sorted by type then key.
pub static COMMANDS: &[CmdSpec] = &TABLE;

/// Number of rows in [`COMMANDS`].
pub const N_COMMANDS: usize = 259;

const TABLE: [CmdSpec; N_COMMANDS] = [
    // ---- rows transcribed from genxml gen9.xml (MI, 3D, media, video) ----
    spec("MI_NOOP", mi(0x00), Len::Fixed(1), ALL, Op::Noop),
    spec(
        "MI_SET_PREDICATE",
        mi(0x01),
        Len::Fixed(1),
        ALL,
        Op::SetPredicate,
    ),
    spec("MI_USER_INTERRUPT", mi(0x02), Len::Fixed(1), ALL, Op::Plain),
    spec(
        "MI_WAIT_FOR_EVENT",
        mi(0x03),
        Len::Fixed(1),
        RCS.union(BCS),
        Op::Privileged,
    ),
    spec("MI_ARB_CHECK", mi(0x05), Len::Fixed(1), ALL, Op::Plain),
    spec(
        "MI_RS_CONTROL",
        mi(0x06),
        Len::Fixed(1),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_REPORT_HEAD",
        mi(0x07),
        Len::Fixed(1),
        ALL,
        Op::Privileged,
    ),
    spec(
        "MI_ARB_ON_OFF",
        mi(0x08),
        Len::Fixed(1),
        ALL,
        Op::Privileged,
    ),
    spec(
        "MI_URB_ATOMIC_ALLOC",
        mi(0x09),
        Len::Fixed(1),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_BATCH_BUFFER_END",
        mi(0x0a),
        Len::Fixed(1),
        ALL,
        Op::BatchEnd,
    ),
    spec(
        "MI_SUSPEND_FLUSH",
        mi(0x0b),
        Len::Fixed(1),
        ALL,
        Op::Privileged,
    ),
    spec("MI_PREDICATE", mi(0x0c), Len::Fixed(1), ALL, Op::Plain),
    spec(
        "MI_TOPOLOGY_FILTER",
        mi(0x0d),
        Len::Fixed(1),
        RCS,
        Op::Plain,
    ),
    spec(
        "MI_RS_CONTEXT",
        mi(0x0f),
        Len::Fixed(1),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_LOAD_SCAN_LINES_INCL",
        mi(0x12),
        Len::field(6, 2, 2, 2),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_LOAD_SCAN_LINES_EXCL",
        mi(0x13),
        Len::field(6, 2, 2, 2),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_DISPLAY_FLIP",
        mi(0x14),
        Len::field(8, 2, 3, 3),
        RCS.union(BCS),
        Op::Privileged,
    ),
    spec(
        "MI_SET_CONTEXT",
        mi(0x18),
        Len::field(8, 2, 2, 2),
        ALL,
        Op::Privileged,
    ),
    spec(
        "MI_MATH",
        mi(0x1a),
        Len::field(8, 2, 2, 257),
        ALL,
        Op::Plain,
    ),
    spec(
        "MI_SEMAPHORE_SIGNAL",
        mi(0x1b),
        Len::field(8, 2, 2, 2),
        ALL,
        Op::SemaphoreSignal,
    ),
    spec(
        "MI_SEMAPHORE_WAIT",
        mi(0x1c),
        Len::field(8, 2, 4, 4),
        ALL,
        Op::SemaphoreWait,
    ),
    spec(
        "MI_FORCE_WAKEUP",
        mi(0x1d),
        Len::field(8, 2, 2, 2),
        ALL,
        Op::Privileged,
    ),
    spec(
        "MI_STORE_DATA_IMM",
        mi(0x20),
        Len::field(10, 2, 4, 5),
        ALL,
        Op::StoreDataImm,
    ),
    spec(
        "MI_STORE_DATA_INDEX",
        mi(0x21),
        Len::field(8, 2, 3, 3),
        ALL,
        Op::Privileged,
    ),
    spec(
        "MI_LOAD_REGISTER_IMM",
        mi(0x22),
        Len::field(8, 2, 3, 257),
        ALL,
        Op::LoadRegImm,
    ),
    spec(
        "MI_STORE_REGISTER_MEM",
        mi(0x24),
        Len::field(8, 2, 4, 4),
        ALL,
        Op::StoreRegMem,
    ),
    spec(
        "MI_FLUSH_DW",
        mi(0x26),
        Len::field(6, 2, 4, 5),
        BCS.union(VCS).union(VECS),
        Op::FlushDw,
    ),
    spec(
        "MI_CLFLUSH",
        mi(0x27),
        Len::field(10, 2, 3, 1025),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_REPORT_PERF_COUNT",
        mi(0x28),
        Len::field(6, 2, 4, 4),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_LOAD_REGISTER_MEM",
        mi(0x29),
        Len::field(8, 2, 4, 4),
        ALL,
        Op::LoadRegMem,
    ),
    spec(
        "MI_LOAD_REGISTER_REG",
        mi(0x2a),
        Len::field(8, 2, 3, 3),
        ALL,
        Op::LoadRegReg,
    ),
    spec(
        "MI_RS_STORE_DATA_IMM",
        mi(0x2b),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_LOAD_URB_MEM",
        mi(0x2c),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_STORE_URB_MEM",
        mi(0x2d),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MI_COPY_MEM_MEM",
        mi(0x2e),
        Len::field(8, 2, 5, 5),
        ALL,
        Op::CopyMemMem,
    ),
    spec(
        "MI_ATOMIC",
        mi(0x2f),
        Len::field(8, 2, 3, 11),
        ALL,
        Op::Atomic,
    ),
    spec(
        "MI_BATCH_BUFFER_START",
        mi(0x31),
        Len::field(8, 2, 3, 3),
        ALL,
        Op::BatchStart,
    ),
    spec(
        "MI_CONDITIONAL_BATCH_BUFFER_END",
        mi(0x36),
        Len::field(8, 2, 4, 4),
        ALL,
        Op::CondBatchEnd,
    ),
    spec(
        "STATE_PREFETCH",
        gfx(0x0003),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Gm(&operands::STATE_PREFETCH),
    ),
    spec(
        "STATE_BASE_ADDRESS",
        gfx(0x0101),
        Len::field(8, 2, 18, 19),
        RCS,
        Op::StateBaseAddress,
    ),
    spec(
        "STATE_SIP",
        gfx(0x0102),
        Len::field(8, 2, 3, 3),
        RCS,
        Op::Plain,
    ),
    spec(
        "GPGPU_CSR_BASE_ADDRESS",
        gfx(0x0104),
        Len::field(8, 2, 3, 3),
        RCS,
        Op::Privileged,
    ),
    spec(
        "MFX_WAIT",
        gfx(0x0800),
        Len::field(6, 1, 1, 1),
        VCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_VF_STATISTICS",
        gfx(0x080b),
        Len::Fixed(1),
        RCS,
        Op::Plain,
    ),
    spec(
        "PIPELINE_SELECT",
        gfx(0x0904),
        Len::Fixed(1),
        RCS,
        Op::Plain,
    ),
    spec(
        "MEDIA_VFE_STATE",
        gfx(0x1000),
        Len::field(16, 2, 9, 9),
        RCS,
        Op::Gm(&operands::SCRATCH_DW1),
    ),
    spec(
        "MFX_PIPE_MODE_SELECT",
        gfx(0x1000),
        Len::field(12, 2, 5, 5),
        VCS,
        Op::Plain,
    ),
    spec(
        "MEDIA_CURBE_LOAD",
        gfx(0x1001),
        Len::field(16, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "MFX_SURFACE_STATE",
        gfx(0x1001),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "MEDIA_INTERFACE_DESCRIPTOR_LOAD",
        gfx(0x1002),
        Len::field(16, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "MFX_PIPE_BUF_ADDR_STATE",
        gfx(0x1002),
        Len::field(12, 2, 65, 68),
        VCS,
        Op::Gm(&operands::MFX_PIPE_BUF_ADDR),
    ),
    spec(
        "MFX_IND_OBJ_BASE_ADDR_STATE",
        gfx(0x1003),
        Len::field(12, 2, 26, 26),
        VCS,
        Op::Gm(&operands::MFX_IND_OBJ_BASE_ADDR),
    ),
    spec(
        "MEDIA_STATE_FLUSH",
        gfx(0x1004),
        Len::field(16, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "MFX_BSP_BUF_BASE_ADDR_STATE",
        gfx(0x1004),
        Len::field(12, 2, 10, 10),
        VCS,
        Op::Gm(&operands::MFX_BSP_BUF_BASE_ADDR),
    ),
    spec(
        "MFX_STATE_POINTER",
        gfx(0x1006),
        Len::field(12, 2, 2, 2),
        VCS,
        Op::Unsupported(Refusal::StatePointer),
    ),
    spec(
        "MFX_QM_STATE",
        gfx(0x1007),
        Len::field(12, 2, 18, 18),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_FQM_STATE",
        gfx(0x1008),
        Len::field(12, 2, 34, 34),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_DBK_OBJECT",
        gfx(0x1009),
        Len::field(12, 2, 13, 13),
        VCS,
        Op::Gm(&operands::MFX_DBK_OBJECT),
    ),
    spec(
        "MFD_IT_OBJECT",
        gfx(0x1029),
        Len::field(12, 2, 8, 4097),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_PAK_INSERT_OBJECT",
        gfx(0x1048),
        Len::field(12, 2, 2, 4097),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_STITCH_OBJECT",
        gfx(0x104a),
        Len::field(12, 2, 2, 4097),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_MPEG_TS_CONTROL",
        gfx(0x104b),
        Len::field(12, 2, 5, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "VDENC_PIPE_MODE_SELECT",
        gfx(0x1080),
        Len::field(12, 2, 2, 2),
        VCS,
        Op::Plain,
    ),
    spec(
        "VDENC_SRC_SURFACE_STATE",
        gfx(0x1081),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "VDENC_REF_SURFACE_STATE",
        gfx(0x1082),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "VDENC_DS_REF_SURFACE_STATE",
        gfx(0x1083),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "VDENC_PIPE_BUF_ADDR_STATE",
        gfx(0x1084),
        Len::field(12, 2, 37, 38),
        VCS,
        Op::Gm(&operands::VDENC_PIPE_BUF_ADDR),
    ),
    spec(
        "VDENC_IMG_STATE",
        gfx(0x1085),
        Len::field(12, 2, 35, 36),
        VCS,
        Op::Plain,
    ),
    spec(
        "VDENC_CONST_QPT_STATE",
        gfx(0x1086),
        Len::field(12, 2, 61, 62),
        VCS,
        Op::Plain,
    ),
    spec(
        "VDENC_WALKER_STATE",
        gfx(0x1087),
        Len::field(12, 2, 2, 4),
        VCS,
        Op::Plain,
    ),
    spec(
        "MEDIA_OBJECT",
        gfx(0x1100),
        Len::field(16, 2, 6, 65537),
        RCS,
        Op::Gm(&operands::MEDIA_OBJECT),
    ),
    spec(
        "MFX_AVC_IMG_STATE",
        gfx(0x1100),
        Len::field(12, 2, 21, 21),
        VCS,
        Op::Plain,
    ),
    spec(
        "MEDIA_OBJECT_PRT",
        gfx(0x1102),
        Len::field(16, 2, 16, 16),
        RCS,
        Op::Plain,
    ),
    spec(
        "MFX_AVC_DIRECTMODE_STATE",
        gfx(0x1102),
        Len::field(12, 2, 71, 71),
        VCS,
        Op::Gm(&operands::MFX_AVC_DIRECTMODE),
    ),
    spec(
        "MEDIA_OBJECT_WALKER",
        gfx(0x1103),
        Len::field(16, 2, 17, 65537),
        RCS,
        Op::Plain,
    ),
    spec(
        "MFX_AVC_SLICE_STATE",
        gfx(0x1103),
        Len::field(12, 2, 11, 11),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_AVC_REF_IDX_STATE",
        gfx(0x1104),
        Len::field(12, 2, 10, 10),
        VCS,
        Op::Plain,
    ),
    spec(
        "GPGPU_WALKER",
        gfx(0x1105),
        Len::field(8, 2, 15, 15),
        RCS,
        Op::Plain,
    ),
    spec(
        "MFX_AVC_WEIGHTOFFSET_STATE",
        gfx(0x1105),
        Len::field(12, 2, 98, 98),
        VCS,
        Op::Plain,
    ),
    spec(
        "MEDIA_OBJECT_GRPID",
        gfx(0x1106),
        Len::field(16, 2, 7, 65537),
        RCS,
        Op::Gm(&operands::MEDIA_OBJECT),
    ),
    spec(
        "MFD_AVC_PICID_STATE",
        gfx(0x1125),
        Len::field(12, 2, 10, 10),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFD_AVC_DPB_STATE",
        gfx(0x1126),
        Len::field(12, 2, 27, 27),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFD_AVC_SLICEADDR",
        gfx(0x1127),
        Len::field(12, 2, 3, 4),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFD_AVC_BSD_OBJECT",
        gfx(0x1128),
        Len::field(12, 2, 6, 7),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFC_AVC_PAK_OBJECT",
        gfx(0x1149),
        Len::field(12, 2, 12, 24),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_VC1_PRED_PIPE_STATE",
        gfx(0x1201),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_VC1_DIRECTMODE_STATE",
        gfx(0x1202),
        Len::field(12, 2, 7, 7),
        VCS,
        Op::Gm(&operands::MFX_VC1_DIRECTMODE),
    ),
    spec(
        "MFD_VC1_SHORT_PIC_STATE",
        gfx(0x1220),
        Len::field(12, 2, 5, 5),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFD_VC1_LONG_PIC_STATE",
        gfx(0x1221),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFD_VC1_BSD_OBJECT",
        gfx(0x1228),
        Len::field(12, 2, 5, 5),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_MPEG2_PIC_STATE",
        gfx(0x1300),
        Len::field(12, 2, 12, 13),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFD_MPEG2_BSD_OBJECT",
        gfx(0x1328),
        Len::field(12, 2, 5, 5),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFC_MPEG2_SLICEGROUP_STATE",
        gfx(0x1343),
        Len::field(12, 2, 8, 8),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFC_MPEG2_PAK_OBJECT",
        gfx(0x1349),
        Len::field(12, 2, 9, 9),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_PIPE_MODE_SELECT",
        gfx(0x1380),
        Len::field(12, 2, 4, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_SURFACE_STATE",
        gfx(0x1381),
        Len::field(12, 2, 3, 3),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_PIPE_BUF_ADDR_STATE",
        gfx(0x1382),
        Len::field(12, 2, 95, 104),
        VCS,
        Op::Gm(&operands::HCP_PIPE_BUF_ADDR),
    ),
    spec(
        "HCP_IND_OBJ_BASE_ADDR_STATE",
        gfx(0x1383),
        Len::field(12, 2, 14, 14),
        VCS,
        Op::Gm(&operands::HCP_IND_OBJ_BASE_ADDR),
    ),
    spec(
        "HCP_QM_STATE",
        gfx(0x1384),
        Len::field(12, 2, 18, 18),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_FQM_STATE",
        gfx(0x1385),
        Len::field(12, 2, 34, 34),
        VCS,
        Op::Plain,
    ),
    spec(
        "HEVC_VP9_RDOQ_STATE",
        gfx(0x1388),
        Len::field(12, 2, 130, 130),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_PIC_STATE",
        gfx(0x1390),
        Len::field(12, 2, 19, 32),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_TILE_STATE",
        gfx(0x1391),
        Len::field(12, 2, 13, 13),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_REF_IDX_STATE",
        gfx(0x1392),
        Len::field(12, 2, 18, 18),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_WEIGHTOFFSET_STATE",
        gfx(0x1393),
        Len::field(12, 2, 34, 34),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_SLICE_STATE",
        gfx(0x1394),
        Len::field(12, 2, 9, 11),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_TILE_CODING",
        gfx(0x1395),
        Len::field(12, 1, 1, 1),
        VCS,
        Op::Unsupported(Refusal::NotGen9),
    ),
    spec(
        "HCP_BSD_OBJECT",
        gfx(0x13a0),
        Len::field(12, 2, 3, 3),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_PAK_OBJECT",
        gfx(0x13a1),
        Len::field(12, 2, 3, 3),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_PAK_INSERT_OBJECT",
        gfx(0x13a2),
        Len::field(12, 2, 2, 4097),
        VCS,
        Op::PakInsert,
    ),
    spec(
        "HCP_VP9_PIC_STATE",
        gfx(0x13b0),
        Len::field(12, 2, 19, 19),
        VCS,
        Op::Plain,
    ),
    spec(
        "HCP_VP9_SEGMENT_STATE",
        gfx(0x13b2),
        Len::field(12, 2, 7, 8),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_VP8_PIC_STATE",
        gfx(0x1400),
        Len::field(12, 2, 38, 38),
        VCS,
        Op::Gm(&operands::MFX_VP8_PIC),
    ),
    spec(
        "MFD_VP8_BSD_OBJECT",
        gfx(0x1428),
        Len::field(12, 2, 22, 22),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_VP8_ENCODER_CFG",
        gfx(0x1441),
        Len::field(12, 2, 30, 30),
        VCS,
        Op::Unsupported(Refusal::UnboundedOffsets),
    ),
    spec(
        "MFX_VP8_BSP_BUF_BASE_ADDR_STATE",
        gfx(0x1443),
        Len::field(12, 2, 32, 32),
        VCS,
        Op::Gm(&operands::MFX_VP8_BSP_BUF_BASE_ADDR),
    ),
    spec(
        "MFX_VP8_PAK_OBJECT",
        gfx(0x1449),
        Len::field(12, 2, 7, 7),
        VCS,
        Op::Plain,
    ),
    spec(
        "SFC_LOCK",
        gfx(0x1500),
        Len::field(12, 2, 2, 2),
        VCS.union(VECS),
        Op::Plain,
    ),
    spec(
        "SFC_STATE",
        gfx(0x1501),
        Len::field(12, 2, 32, 34),
        VCS.union(VECS),
        Op::Gm(&operands::SFC_STATE),
    ),
    spec(
        "SFC_AVS_STATE",
        gfx(0x1502),
        Len::field(12, 2, 3, 3),
        VCS.union(VECS),
        Op::Plain,
    ),
    spec(
        "SFC_IEF_STATE",
        gfx(0x1503),
        Len::field(12, 2, 24, 24),
        VCS.union(VECS),
        Op::Plain,
    ),
    spec(
        "SFC_FRAME_START",
        gfx(0x1504),
        Len::field(12, 2, 2, 2),
        VCS.union(VECS),
        Op::Plain,
    ),
    spec(
        "SFC_AVS_LUMA_COEFF_TABLE",
        gfx(0x1505),
        Len::field(12, 2, 129, 129),
        VCS.union(VECS),
        Op::Plain,
    ),
    spec(
        "SFC_AVS_CHROMA_COEFF_TABLE",
        gfx(0x1506),
        Len::field(12, 2, 65, 65),
        VCS.union(VECS),
        Op::Plain,
    ),
    spec(
        "HUC_PIPE_MODE_SELECT",
        gfx(0x1580),
        Len::field(12, 2, 3, 3),
        VCS,
        Op::Plain,
    ),
    spec(
        "HUC_IMEM_STATE",
        gfx(0x1581),
        Len::field(12, 2, 5, 5),
        VCS,
        Op::Plain,
    ),
    spec(
        "HUC_DMEM_STATE",
        gfx(0x1582),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Gm(&operands::HUC_DMEM),
    ),
    spec(
        "HUC_CFG_STATE",
        gfx(0x1583),
        Len::field(12, 2, 2, 2),
        VCS,
        Op::Plain,
    ),
    spec(
        "HUC_VIRTUAL_ADDR_STATE",
        gfx(0x1584),
        Len::field(12, 2, 49, 49),
        VCS,
        Op::Gm(&operands::HUC_VIRTUAL_ADDR),
    ),
    spec(
        "HUC_IND_OBJ_BASE_ADDR_STATE",
        gfx(0x1585),
        Len::field(12, 2, 11, 11),
        VCS,
        Op::Gm(&operands::HUC_IND_OBJ_BASE_ADDR),
    ),
    spec(
        "HUC_STREAM_OBJECT",
        gfx(0x15a0),
        Len::field(12, 2, 5, 5),
        VCS,
        Op::Gm(&operands::HUC_STREAM_OBJECT),
    ),
    spec(
        "HUC_START",
        gfx(0x15a1),
        Len::field(12, 2, 2, 2),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_JPEG_PIC_STATE",
        gfx(0x1700),
        Len::field(12, 2, 3, 3),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFX_JPEG_HUFF_TABLE_STATE",
        gfx(0x1702),
        Len::field(12, 2, 53, 53),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFD_JPEG_BSD_OBJECT",
        gfx(0x1728),
        Len::field(12, 2, 6, 6),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFC_JPEG_HUFF_TABLE_STATE",
        gfx(0x1743),
        Len::field(12, 2, 176, 176),
        VCS,
        Op::Plain,
    ),
    spec(
        "MFC_JPEG_SCAN_OBJECT",
        gfx(0x1749),
        Len::field(12, 2, 3, 3),
        VCS,
        Op::Plain,
    ),
    spec(
        "VD_PIPELINE_FLUSH",
        gfx(0x1780),
        Len::field(12, 2, 2, 2),
        VCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_CLEAR_PARAMS",
        gfx(0x1804),
        Len::field(8, 2, 3, 3),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_DEPTH_BUFFER",
        gfx(0x1805),
        Len::field(8, 2, 8, 8),
        RCS,
        Op::Gm(&operands::DEPTH_BUFFER),
    ),
    spec(
        "3DSTATE_STENCIL_BUFFER",
        gfx(0x1806),
        Len::field(8, 2, 5, 5),
        RCS,
        Op::Gm(&operands::STENCIL_BUFFER),
    ),
    spec(
        "3DSTATE_HIER_DEPTH_BUFFER",
        gfx(0x1807),
        Len::field(8, 2, 5, 5),
        RCS,
        Op::Gm(&operands::HIER_DEPTH_BUFFER),
    ),
    spec(
        "3DSTATE_VERTEX_BUFFERS",
        gfx(0x1808),
        Len::field(8, 2, 5, 257),
        RCS,
        Op::Gm(&operands::VERTEX_BUFFERS),
    ),
    spec(
        "3DSTATE_VERTEX_ELEMENTS",
        gfx(0x1809),
        Len::field(8, 2, 3, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_INDEX_BUFFER",
        gfx(0x180a),
        Len::field(8, 2, 5, 5),
        RCS,
        Op::Gm(&operands::INDEX_BUFFER),
    ),
    spec(
        "3DSTATE_VF",
        gfx(0x180c),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_MULTISAMPLE",
        gfx(0x180d),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_CC_STATE_POINTERS",
        gfx(0x180e),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SCISSOR_STATE_POINTERS",
        gfx(0x180f),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_VS",
        gfx(0x1810),
        Len::field(8, 2, 9, 9),
        RCS,
        Op::Gm(&operands::SCRATCH_DW4),
    ),
    spec(
        "3DSTATE_GS",
        gfx(0x1811),
        Len::field(8, 2, 10, 10),
        RCS,
        Op::Gm(&operands::SCRATCH_DW4),
    ),
    spec(
        "3DSTATE_CLIP",
        gfx(0x1812),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SF",
        gfx(0x1813),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_WM",
        gfx(0x1814),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_CONSTANT_VS",
        gfx(0x1815),
        Len::field(8, 2, 11, 11),
        RCS,
        Op::Gm(&operands::CONSTANT),
    ),
    spec(
        "3DSTATE_CONSTANT_GS",
        gfx(0x1816),
        Len::field(8, 2, 11, 11),
        RCS,
        Op::Gm(&operands::CONSTANT),
    ),
    spec(
        "3DSTATE_CONSTANT_PS",
        gfx(0x1817),
        Len::field(8, 2, 11, 11),
        RCS,
        Op::Gm(&operands::CONSTANT),
    ),
    spec(
        "3DSTATE_SAMPLE_MASK",
        gfx(0x1818),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_CONSTANT_HS",
        gfx(0x1819),
        Len::field(8, 2, 11, 11),
        RCS,
        Op::Gm(&operands::CONSTANT),
    ),
    spec(
        "3DSTATE_CONSTANT_DS",
        gfx(0x181a),
        Len::field(8, 2, 11, 11),
        RCS,
        Op::Gm(&operands::CONSTANT),
    ),
    spec(
        "3DSTATE_HS",
        gfx(0x181b),
        Len::field(8, 2, 9, 9),
        RCS,
        Op::Gm(&operands::SCRATCH_DW5),
    ),
    spec(
        "3DSTATE_TE",
        gfx(0x181c),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_DS",
        gfx(0x181d),
        Len::field(8, 2, 11, 11),
        RCS,
        Op::Gm(&operands::SCRATCH_DW4),
    ),
    spec(
        "3DSTATE_STREAMOUT",
        gfx(0x181e),
        Len::field(8, 2, 5, 5),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SBE",
        gfx(0x181f),
        Len::field(8, 2, 6, 6),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PS",
        gfx(0x1820),
        Len::field(8, 2, 12, 12),
        RCS,
        Op::Gm(&operands::SCRATCH_DW4),
    ),
    spec(
        "3DSTATE_VIEWPORT_STATE_POINTERS_SF_CLIP",
        gfx(0x1821),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_VIEWPORT_STATE_POINTERS_CC",
        gfx(0x1823),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BLEND_STATE_POINTERS",
        gfx(0x1824),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_POINTERS_VS",
        gfx(0x1826),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_POINTERS_HS",
        gfx(0x1827),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_POINTERS_DS",
        gfx(0x1828),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_POINTERS_GS",
        gfx(0x1829),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_POINTERS_PS",
        gfx(0x182a),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SAMPLER_STATE_POINTERS_VS",
        gfx(0x182b),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SAMPLER_STATE_POINTERS_HS",
        gfx(0x182c),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SAMPLER_STATE_POINTERS_DS",
        gfx(0x182d),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SAMPLER_STATE_POINTERS_GS",
        gfx(0x182e),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SAMPLER_STATE_POINTERS_PS",
        gfx(0x182f),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_URB_VS",
        gfx(0x1830),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_URB_HS",
        gfx(0x1831),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_URB_DS",
        gfx(0x1832),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_URB_GS",
        gfx(0x1833),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_GATHER_CONSTANT_VS",
        gfx(0x1834),
        Len::field(8, 2, 2, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_GATHER_CONSTANT_GS",
        gfx(0x1835),
        Len::field(8, 2, 3, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_GATHER_CONSTANT_HS",
        gfx(0x1836),
        Len::field(8, 2, 3, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_GATHER_CONSTANT_DS",
        gfx(0x1837),
        Len::field(8, 2, 3, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_GATHER_CONSTANT_PS",
        gfx(0x1838),
        Len::field(8, 2, 3, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_EDIT_VS",
        gfx(0x1843),
        Len::field(9, 2, 2, 513),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_EDIT_GS",
        gfx(0x1844),
        Len::field(9, 2, 2, 513),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_EDIT_HS",
        gfx(0x1845),
        Len::field(9, 2, 2, 513),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_EDIT_DS",
        gfx(0x1846),
        Len::field(9, 2, 2, 513),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_BINDING_TABLE_EDIT_PS",
        gfx(0x1847),
        Len::field(9, 2, 2, 513),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_VF_INSTANCING",
        gfx(0x1849),
        Len::field(8, 2, 3, 3),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_VF_SGVS",
        gfx(0x184a),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_VF_TOPOLOGY",
        gfx(0x184b),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_WM_CHROMAKEY",
        gfx(0x184c),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PS_BLEND",
        gfx(0x184d),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_WM_DEPTH_STENCIL",
        gfx(0x184e),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PS_EXTRA",
        gfx(0x184f),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_RASTER",
        gfx(0x1850),
        Len::field(8, 2, 5, 5),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SBE_SWIZ",
        gfx(0x1851),
        Len::field(8, 2, 11, 11),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_WM_HZ_OP",
        gfx(0x1852),
        Len::field(8, 2, 5, 5),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_RS_CONSTANT_POINTER",
        gfx(0x1854),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Privileged,
    ),
    spec(
        "3DSTATE_VF_COMPONENT_PACKING",
        gfx(0x1855),
        Len::field(8, 2, 5, 5),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_DRAWING_RECTANGLE",
        gfx(0x1900),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SAMPLER_PALETTE_LOAD0",
        gfx(0x1902),
        Len::field(8, 2, 2, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_CHROMA_KEY",
        gfx(0x1904),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_POLY_STIPPLE_OFFSET",
        gfx(0x1906),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_POLY_STIPPLE_PATTERN",
        gfx(0x1907),
        Len::field(8, 2, 33, 33),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_LINE_STIPPLE",
        gfx(0x1908),
        Len::field(8, 2, 3, 3),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_AA_LINE_PARAMETERS",
        gfx(0x190a),
        Len::field(8, 2, 3, 3),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SAMPLER_PALETTE_LOAD1",
        gfx(0x190c),
        Len::field(8, 2, 2, 257),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_MONOFILTER_SIZE",
        gfx(0x1911),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PUSH_CONSTANT_ALLOC_VS",
        gfx(0x1912),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PUSH_CONSTANT_ALLOC_HS",
        gfx(0x1913),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PUSH_CONSTANT_ALLOC_DS",
        gfx(0x1914),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PUSH_CONSTANT_ALLOC_GS",
        gfx(0x1915),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_PUSH_CONSTANT_ALLOC_PS",
        gfx(0x1916),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SO_DECL_LIST",
        gfx(0x1917),
        Len::field(9, 2, 2, 513),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_SO_BUFFER",
        gfx(0x1918),
        Len::field(8, 2, 8, 8),
        RCS,
        Op::Gm(&operands::SO_BUFFER),
    ),
    spec(
        "3DSTATE_BINDING_TABLE_POOL_ALLOC",
        gfx(0x1919),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Gm(&operands::BINDING_TABLE_POOL),
    ),
    spec(
        "3DSTATE_GATHER_POOL_ALLOC",
        gfx(0x191a),
        Len::field(8, 2, 4, 4),
        RCS,
        Op::Gm(&operands::GATHER_POOL),
    ),
    spec(
        "3DSTATE_SAMPLE_PATTERN",
        gfx(0x191c),
        Len::field(8, 2, 9, 9),
        RCS,
        Op::Plain,
    ),
    spec(
        "3DSTATE_URB_CLEAR",
        gfx(0x191d),
        Len::field(8, 2, 2, 2),
        RCS,
        Op::Plain,
    ),
    spec(
        "PIPE_CONTROL",
        gfx(0x1a00),
        Len::field(8, 2, 6, 6),
        RCS,
        Op::PipeControl,
    ),
    spec(
        "3DPRIMITIVE",
        gfx(0x1b00),
        Len::field(8, 2, 7, 7),
        RCS,
        Op::Plain,
    ),
    // ---- MI commands genxml does not list (i915 GVT-g, PRM vol 2a) ----
    spec("MI_SET_APPID", mi(0x0e), Len::Fixed(1), ALL, Op::Privileged),
    spec(
        "MI_UPDATE_GTT",
        mi(0x23),
        Len::field(10, 2, 3, 1025),
        ALL,
        Op::Privileged,
    ),
    // ---- 2D blitter (BCS) commands, PRM vol 2a; opcode bits 28:22 ----
    spec(
        "XY_SETUP_BLT",
        blt(0x01),
        blt_len(10, 10),
        BCS,
        Op::BltSetup,
    ),
    spec(
        "XY_SETUP_CLIP_BLT",
        blt(0x03),
        blt_len(3, 3),
        BCS,
        Op::Plain,
    ),
    spec(
        "XY_SETUP_MONO_PATTERN_SL_BLT",
        blt(0x11),
        blt_len(10, 10),
        BCS,
        Op::BltSetup,
    ),
    spec(
        "XY_PIXEL_BLT",
        blt(0x24),
        blt_len(2, 2),
        BCS,
        Op::BltSetupDraw,
    ),
    spec(
        "XY_SCANLINES_BLT",
        blt(0x25),
        blt_len(3, 3),
        BCS,
        Op::BltSetupDraw,
    ),
    spec(
        "XY_TEXT_BLT",
        blt(0x26),
        blt_len(5, 5),
        BCS,
        Op::XyBlit(&r::XY_TEXT),
    ),
    spec(
        "XY_TEXT_IMMEDIATE_BLT",
        blt(0x31),
        blt_len(3, 257),
        BCS,
        Op::BltSetupDraw,
    ),
    spec(
        "COLOR_BLT",
        blt(0x40),
        blt_len(3, 257),
        BCS,
        Op::Unsupported(Refusal::PreGen8Blit),
    ),
    spec(
        "XY_FAST_COPY_BLT",
        blt(0x42),
        blt_len(10, 10),
        BCS,
        Op::XyFastCopyBlt,
    ),
    spec(
        "SRC_COPY_BLT",
        blt(0x43),
        blt_len(3, 257),
        BCS,
        Op::Unsupported(Refusal::PreGen8Blit),
    ),
    spec(
        "XY_COLOR_BLT",
        blt(0x50),
        blt_len(7, 7),
        BCS,
        Op::XyColorBlt,
    ),
    spec("XY_PAT_BLT", blt(0x51), blt_len(8, 8), BCS, Op::XyPatBlt),
    spec(
        "XY_MONO_PAT_BLT",
        blt(0x52),
        blt_len(10, 10),
        BCS,
        Op::XyMonoPatBlt,
    ),
    spec(
        "XY_SRC_COPY_BLT",
        blt(0x53),
        blt_len(10, 10),
        BCS,
        Op::XySrcCopyBlt,
    ),
    spec(
        "XY_MONO_SRC_COPY_BLT",
        blt(0x54),
        blt_len(10, 10),
        BCS,
        Op::XyBlit(&r::XY_MONO_SRC_COPY),
    ),
    spec(
        "XY_FULL_BLT",
        blt(0x55),
        blt_len(12, 12),
        BCS,
        Op::XyBlit(&r::XY_FULL),
    ),
    spec(
        "XY_FULL_MONO_SRC_BLT",
        blt(0x56),
        blt_len(12, 12),
        BCS,
        Op::XyBlit(&r::XY_FULL_MONO_SRC),
    ),
    spec(
        "XY_FULL_MONO_PATTERN_BLT",
        blt(0x57),
        blt_len(14, 14),
        BCS,
        Op::XyBlit(&r::XY_FULL_MONO_PATTERN),
    ),
    spec(
        "XY_FULL_MONO_PATTERN_MONO_SRC_BLT",
        blt(0x58),
        blt_len(14, 14),
        BCS,
        Op::XyBlit(&r::XY_FULL_MONO_PATTERN_MONO_SRC),
    ),
    spec(
        "XY_MONO_PAT_FIXED_BLT",
        blt(0x59),
        blt_len(8, 8),
        BCS,
        Op::XyBlit(&r::XY_MONO_PAT_FIXED),
    ),
    spec(
        "XY_MONO_SRC_COPY_IMMEDIATE_BLT",
        blt(0x71),
        blt_len(8, 257),
        BCS,
        Op::XyBlit(&r::XY_MONO_SRC_COPY_IMMEDIATE),
    ),
    spec(
        "XY_PAT_BLT_IMMEDIATE",
        blt(0x72),
        blt_len(22, 70),
        BCS,
        Op::XyBlit(&r::XY_PAT_IMMEDIATE),
    ),
    spec(
        "XY_SRC_COPY_CHROMA_BLT",
        blt(0x73),
        blt_len(12, 12),
        BCS,
        Op::XyBlit(&r::XY_SRC_COPY_CHROMA),
    ),
    spec(
        "XY_FULL_IMMEDIATE_PATTERN_BLT",
        blt(0x74),
        blt_len(26, 74),
        BCS,
        Op::XyBlit(&r::XY_FULL_IMMEDIATE_PATTERN),
    ),
    spec(
        "XY_FULL_MONO_SRC_IMMEDIATE_PATTERN_BLT",
        blt(0x75),
        blt_len(26, 74),
        BCS,
        Op::XyBlit(&r::XY_FULL_MONO_SRC_IMMEDIATE_PATTERN),
    ),
    spec(
        "XY_PAT_CHROMA_BLT",
        blt(0x76),
        blt_len(10, 10),
        BCS,
        Op::XyBlit(&r::XY_PAT_CHROMA),
    ),
    spec(
        "XY_PAT_CHROMA_BLT_IMMEDIATE",
        blt(0x77),
        blt_len(24, 72),
        BCS,
        Op::XyBlit(&r::XY_PAT_CHROMA_IMMEDIATE),
    ),
    // ---- VEBOX (VECS) commands, PRM vol 2a / i915 GVT-g; pipeline 2, opcode 4 ----
    spec(
        "VEBOX_SURFACE_STATE",
        gfx(0x1400),
        Len::field(12, 2, 2, 4097),
        VECS,
        Op::Unsupported(Refusal::Vebox),
    ),
    spec(
        "VEBOX_STATE",
        gfx(0x1402),
        Len::field(12, 2, 2, 4097),
        VECS,
        Op::Unsupported(Refusal::Vebox),
    ),
    spec(
        "VEB_DI_IECP",
        gfx(0x1403),
        Len::field(12, 2, 2, 4097),
        VECS,
        Op::Unsupported(Refusal::Vebox),
    ),
];

const NONE: u16 = u16::MAX;

/// Per-engine dense indices into [`TABLE`], one array per command type.
struct Index {
    mi: [[u16; 64]; Engine::COUNT],
    blt: [[u16; 128]; Engine::COUNT],
    gfx: [[u16; 8192]; Engine::COUNT],
}

const fn build_index() -> Index {
    let mut ix = Index {
        mi: [[NONE; 64]; Engine::COUNT],
        blt: [[NONE; 128]; Engine::COUNT],
        gfx: [[NONE; 8192]; Engine::COUNT],
    };
    let mut i = 0;
    while i < N_COMMANDS {
        let s = &TABLE[i];
        let mut e = 0;
        while e < Engine::COUNT {
            if s.engines.bits() & (1 << e) != 0 {
                let slot = match s.opcode {
                    Opcode::Mi(op) => &mut ix.mi[e][op as usize],
                    Opcode::Blt(op) => &mut ix.blt[e][op as usize],
                    Opcode::Gfx(key) => &mut ix.gfx[e][key as usize],
                };
                assert!(*slot == NONE, "duplicate opcode on one engine");
                *slot = i as u16;
            }
            e += 1;
        }
        // Sanity of the length rule, checked at compile time.
        match s.len {
            Len::Fixed(n) => assert!(n >= 1),
            Len::Field {
                bits,
                bias,
                min,
                max,
            } => {
                assert!(bits >= 1 && bits <= 16 && min <= max && min >= bias as u32);
                assert!(max <= (1u32 << bits) - 1 + bias as u32);
            }
        }
        i += 1;
    }
    ix
}

static INDEX: Index = build_index();

/// Looks up the command whose header is `header` on `engine`.
///
/// `None` when the command type is reserved, the opcode is unknown, or the
/// command exists but not on this engine (see [`lookup_any`] to tell the two
/// apart).
#[inline]
pub fn lookup(engine: Engine, header: u32) -> Option<&'static CmdSpec> {
    TABLE.get(row(engine, header)?)
}

/// The row of `header` on `engine`: one index load.
#[inline(always)]
fn row(engine: Engine, header: u32) -> Option<usize> {
    let e = engine.index();
    let i = match header >> 29 {
        0 => INDEX.mi.get(e)?.get((header >> 23 & 0x3f) as usize),
        2 => INDEX.blt.get(e)?.get((header >> 22 & 0x7f) as usize),
        3 => INDEX.gfx.get(e)?.get((header >> 16 & 0x1fff) as usize),
        _ => None,
    };
    match i {
        Some(&i) if i != NONE => Some(usize::from(i)),
        _ => None,
    }
}

/// A row's length rule, precomputed for the decoder's hot loop: length =
/// `(header & mask) + add`, accepted when `min <= length <= max` (a fixed
/// length has `mask` 0 and `min == max == add`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LenRule {
    mask: u32,
    add: u32,
    min: u32,
    max: u32,
}

const fn build_rules() -> [LenRule; N_COMMANDS] {
    let mut r = [LenRule {
        mask: 0,
        add: 0,
        min: 0,
        max: 0,
    }; N_COMMANDS];
    let mut i = 0;
    while i < N_COMMANDS {
        r[i] = match TABLE[i].len {
            Len::Fixed(n) => LenRule {
                mask: 0,
                add: n as u32,
                min: n as u32,
                max: n as u32,
            },
            Len::Field {
                bits,
                bias,
                min,
                max,
            } => LenRule {
                mask: (1u32 << bits) - 1,
                add: bias as u32,
                min,
                max,
            },
        };
        i += 1;
    }
    r
}

static RULES: [LenRule; N_COMMANDS] = build_rules();

/// A length in DWords, or `(length, min, max)` when outside its bounds.
pub(crate) type LenCheck = Result<usize, (usize, u32, u32)>;

/// Looks up `header` on `engine` and applies the row's length rule: the
/// row and the length in DWords, or (row, length) with `Err` when the
/// length is outside the row's bounds.
#[inline(always)]
pub(crate) fn lookup_len(engine: Engine, header: u32) -> Option<(&'static CmdSpec, LenCheck)> {
    let i = row(engine, header)?;
    let (spec, r) = (TABLE.get(i)?, RULES.get(i)?);
    let len = (header & r.mask) + r.add;
    Some((
        spec,
        if len < r.min || len > r.max {
            Err((len as usize, r.min, r.max))
        } else {
            Ok(len as usize)
        },
    ))
}

/// Looks up `header` on any engine (for error messages: "valid on another
/// engine" versus "unknown").
pub fn lookup_any(header: u32) -> Option<&'static CmdSpec> {
    Engine::ALL.iter().find_map(|&e| lookup(e, header))
}

/// Slots of one engine's flat dispatch table: MI keys at 0, blitter keys
/// at 64, GFXPIPE keys at 192.
const FAST_SLOTS: usize = 64 + 128 + 8192;

/// A packed dispatch entry of [`fast_entry`], set for every command the
/// scanner's fast loop may take: those with nothing to audit ([`FAST_PLAIN`]:
/// MI_NOOP, the [`Op::Plain`] rows and the [`Op::Gm`] rows whose layout has
/// no address field) and those audited in place ([`FAST_AUDIT`]: every
/// class with operands except MI_BATCH_BUFFER_END and the classes that are
/// always rejected; of MI_BATCH_BUFFER_START the fast loop takes only calls
/// of a second-level batch whose shadow is reused).
/// Layout: bits 7:0 the bias (or fixed length), bits 12:8 the DWord Length
/// field width (0: fixed length), bits 29:13 the smallest and bits 46:30
/// the largest accepted length, bits 56:47 the row in [`COMMANDS`], bit 62
/// [`FAST_AUDIT`], bit 63 set.
pub(crate) const FAST_PLAIN: u64 = 1 << 63;
/// Set, with [`FAST_PLAIN`] (and [`FAST_AUDIT`] if audited), for a command
/// whose DWord Length field has bias 2 and at least 8 bits: its length is
/// `(header & 0xff) + 2`
/// whenever the field's bits above bit 7 are clear. Such an entry has its
/// own layout (the generic fields are not kept): bits 15:0 the field's
/// bits above bit 7 (header bits that must be clear), bits 23:16 the
/// smallest and bits 31:24 the largest accepted length minus 2 (capped at
/// 255), bits 56:47 the row.
pub(crate) const FAST_GUESS: u64 = 1 << 61;
/// See [`FAST_PLAIN`].
pub(crate) const FAST_AUDIT: u64 = 1 << 62;
/// The fast class of a command with nothing to audit that writes through
/// memory-resident state ([`CmdSpec::writes_through_state`]).
pub(crate) const STATE_WRITER_KIND: u64 = 13;
/// The fast class of a tracked state command with nothing to audit,
/// check or advance ([`CmdSpec::fast_recorded`]): it is only kept.
pub(crate) const RECORDED_KIND: u64 = 15;
/// Bits 60:57 of an audited entry: the hot classes the fast loop audits
/// without loading the row (0: any other; see [`fast_kind_code`]).
const FAST_KIND_SHIFT: u32 = 57;

/// The class of the packed entry `entry` when it is one of the hot
/// audited classes, read from the entry alone (see [`fast_kind_code`]);
/// `None` for any other (the row's [`CmdSpec::op`] then tells).
#[cfg(test)]
pub(crate) fn fast_kind(entry: u64) -> Option<Op> {
    use super::operands as o;
    Some(match fast_kind_code(entry) {
        1 => Op::PipeControl,
        2 => Op::StoreDataImm,
        3 => Op::FlushDw,
        4 => Op::XyColorBlt,
        5 => Op::XySrcCopyBlt,
        6 => Op::XyFastCopyBlt,
        7 => Op::Gm(&o::INDEX_BUFFER),
        8 => Op::Gm(&o::CONSTANT),
        9 => Op::Gm(&o::DEPTH_BUFFER),
        10 => Op::Gm(&o::VERTEX_BUFFERS),
        11 => Op::Gm(&o::MFX_IND_OBJ_BASE_ADDR),
        12 => Op::Gm(&o::MFX_BSP_BUF_BASE_ADDR),
        _ => return None,
    })
}

/// The hot class code in bits 60:57 of an audited entry (0: none): 1
/// PIPE_CONTROL, 2 MI_STORE_DATA_IMM, 3 MI_FLUSH_DW, 4 XY_COLOR_BLT, 5
/// XY_SRC_COPY_BLT, 6 XY_FAST_COPY_BLT, 7-12 the layouts of
/// 3DSTATE_INDEX_BUFFER, 3DSTATE_CONSTANT_*, 3DSTATE_DEPTH_BUFFER,
/// 3DSTATE_VERTEX_BUFFERS, MFX_IND_OBJ_BASE_ADDR_STATE and
/// MFX_BSP_BUF_BASE_ADDR_STATE, 13 the state writers with nothing to
/// audit ([`STATE_WRITER_KIND`]), 14 the layouts of
/// 3DSTATE_HIER_DEPTH_BUFFER and 3DSTATE_STENCIL_BUFFER (their rows tell
/// which), 15 the tracked state commands only kept ([`RECORDED_KIND`])
/// (`fast_kind` names the classes of one layout; a test checks each
/// against its row).
#[inline(always)]
pub(crate) fn fast_kind_code(entry: u64) -> u32 {
    (entry >> FAST_KIND_SHIFT & 0xf) as u32
}

const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn kind_bits(s: &CmdSpec) -> u64 {
    let k: u64 = match s.op {
        Op::PipeControl => 1,
        Op::StoreDataImm => 2,
        Op::FlushDw => 3,
        Op::XyColorBlt => 4,
        Op::XySrcCopyBlt => 5,
        Op::XyFastCopyBlt => 6,
        Op::Gm(_) => {
            const HOT: [(&str, u64); 12] = [
                ("3DSTATE_INDEX_BUFFER", 7),
                ("3DSTATE_CONSTANT_VS", 8),
                ("3DSTATE_CONSTANT_GS", 8),
                ("3DSTATE_CONSTANT_PS", 8),
                ("3DSTATE_CONSTANT_HS", 8),
                ("3DSTATE_CONSTANT_DS", 8),
                ("3DSTATE_DEPTH_BUFFER", 9),
                ("3DSTATE_VERTEX_BUFFERS", 10),
                ("MFX_IND_OBJ_BASE_ADDR_STATE", 11),
                ("MFX_BSP_BUF_BASE_ADDR_STATE", 12),
                ("3DSTATE_HIER_DEPTH_BUFFER", 14),
                ("3DSTATE_STENCIL_BUFFER", 14),
            ];
            let mut k = 0;
            let mut i = 0;
            while i < HOT.len() {
                if same_name(s.name, HOT[i].0) {
                    k = HOT[i].1;
                }
                i += 1;
            }
            k
        }
        _ => 0,
    };
    k << FAST_KIND_SHIFT
}

const fn build_fast() -> [[u64; FAST_SLOTS]; Engine::COUNT] {
    let mut t = [[0u64; FAST_SLOTS]; Engine::COUNT];
    let mut i = 0;
    while i < N_COMMANDS {
        let s = &TABLE[i];
        let kind = match s.op {
            // Nothing to audit but untracked writes to note (and maybe a
            // shader dispatch to refuse, or a half-set depth packet): the
            // fast loop's class 13.
            _ if s.plain_state_writer() => {
                FAST_PLAIN | FAST_AUDIT | STATE_WRITER_KIND << FAST_KIND_SHIFT
            }
            // Tracked state only kept: the fast loop's class 15.
            _ if s.fast_recorded() => FAST_PLAIN | FAST_AUDIT | RECORDED_KIND << FAST_KIND_SHIFT,
            // Nothing to audit and nothing to track (a layout of offsets
            // relative to audited bases only has nothing to audit either).
            _ if s.inert() => FAST_PLAIN,
            Op::BatchEnd
            | Op::GmOperands
            | Op::Privileged
            | Op::SemaphoreSignal
            | Op::Unsupported(_) => 0,
            _ => FAST_PLAIN | FAST_AUDIT | kind_bits(s),
        };
        let (bits, bias, min, max) = match s.len {
            Len::Fixed(n) => (0, n, n as u32, n as u32),
            Len::Field {
                bits,
                bias,
                min,
                max,
            } => (bits, bias, min, max),
        };
        assert!(bits <= 16 && max < 1 << 17 && N_COMMANDS <= 1 << 10);
        let packed = kind
            | (bits as u64) << 8
            | bias as u64
            | (min as u64) << 13
            | (max as u64) << 30
            | (i as u64) << 47;
        let packed = if kind != 0 && bias == 2 && bits >= 8 && min >= 2 {
            let upper = ((1u64 << bits) - 1) & !0xff;
            let hi = if max - 2 > 255 { 255 } else { max - 2 };
            if min - 2 <= 255 {
                kind | FAST_GUESS
                    | upper
                    | ((min - 2) as u64) << 16
                    | (hi as u64) << 24
                    | (i as u64) << 47
            } else {
                packed
            }
        } else {
            packed
        };
        if kind != 0 {
            let slot = match s.opcode {
                Opcode::Mi(op) => op as usize,
                Opcode::Blt(op) => 64 + op as usize,
                Opcode::Gfx(key) => 192 + key as usize,
            };
            let mut e = 0;
            while e < Engine::COUNT {
                if s.engines.bits() & (1 << e) != 0 {
                    // A command that starts work on the video engine (a
                    // codec object) consumes its pipe's state, so it takes
                    // the full path, which notes this submission's own work
                    // for the codec status reads
                    // ([`super::regs::Reads::AfterOwnWork`]); the fast
                    // loop's state writers (draws, dispatches) need not.
                    assert!(
                        !(packed >> FAST_KIND_SHIFT & 0xf == STATE_WRITER_KIND
                            && e == Engine::Video.index()),
                        "a video state writer in the fast loop would not note own work"
                    );
                    t[e][slot] = packed;
                }
                e += 1;
            }
        }
        i += 1;
    }
    t
}

static FAST: [[u64; FAST_SLOTS]; Engine::COUNT] = build_fast();

/// The packed entry of `header` on the engine with index `e` (0: the full
/// path decodes it); [`fast_len`] gives its length. Agrees with
/// [`lookup_len`] on every header it accepts.
#[inline(always)]
pub(crate) fn fast_entry(e: usize, header: u32) -> u64 {
    let slot = match header >> 29 {
        0 => (header >> 23 & 0x3f) as usize,
        2 => 64 + (header >> 22 & 0x7f) as usize,
        3 => 192 + (header >> 16 & 0x1fff) as usize,
        _ => return 0,
    };
    match FAST.get(e) {
        Some(t) => t.get(slot).copied().unwrap_or(0),
        None => 0,
    }
}

/// Length in DWords of the command `header` whose packed entry is `entry`,
/// or `None` when its length rule rejects it (left to the full decoder).
#[inline(always)]
pub(crate) fn fast_len(entry: u64, header: u32) -> Option<usize> {
    if entry & FAST_GUESS != 0 {
        let low = u64::from(header & 0xff);
        let ok = u64::from(header) & entry & 0xffff == 0
            && low >= (entry >> 16 & 0xff)
            && low <= (entry >> 24 & 0xff);
        return ok.then_some(low as usize + 2);
    }
    let mask = (1u32 << (entry >> 8 & 0x1f)) - 1;
    let len = (header & mask) as usize + (entry & 0xff) as usize;
    if fast_len_ok(entry, len) {
        Some(len)
    } else {
        None
    }
}

/// Whether `len` is inside the length bounds of the packed entry `entry`.
#[inline(always)]
pub(crate) fn fast_len_ok(entry: u64, len: usize) -> bool {
    let len = len as u64;
    len >= (entry >> 13 & 0x1_ffff) && len <= (entry >> 30 & 0x1_ffff)
}

/// The table row of the packed entry `entry`.
#[inline(always)]
pub(crate) fn fast_spec(entry: u64) -> Option<&'static CmdSpec> {
    TABLE.get((entry >> 47 & 0x3ff) as usize)
}

#[cfg(test)]
mod fast_tests {
    use super::*;

    /// The packed dispatch table agrees with the full lookup: an entry
    /// exists only for rows with nothing to audit, and its length (and
    /// acceptance) is the full decoder's, for every key on every engine
    /// and every value of the low 16 header bits.
    /// The class packed in an entry is its row's, and every hot audited
    /// row carries its class.
    /// Every name in [`STATE_WRITERS`] is a row, and the fast loop notes
    /// the untracked writes of each: a plain-like one through its class,
    /// any other through the full path ([`FAST_AUDIT`] or no entry).
    /// Every shader dispatch is a row and a state writer (so the fast loop
    /// never takes it as plain, and the deny check sees it).
    #[test]
    fn shader_dispatches_are_state_writer_rows() {
        for name in SHADER_DISPATCHES {
            let rows: Vec<_> = COMMANDS.iter().filter(|c| c.name == name).collect();
            assert!(!rows.is_empty(), "{name} is not in the table");
            assert!(
                rows.iter()
                    .all(|c| c.dispatches_shaders && c.writes_through_state),
                "{name}"
            );
        }
    }

    #[test]
    fn state_writers_are_rows_and_never_plain() {
        for name in STATE_WRITERS {
            let rows: Vec<_> = COMMANDS.iter().filter(|c| c.name == name).collect();
            assert!(!rows.is_empty(), "{name} is not in the table");
            assert!(rows.iter().all(|c| c.writes_through_state), "{name}");
        }
        let flagged = COMMANDS.iter().filter(|c| c.writes_through_state).count();
        assert!(flagged >= STATE_WRITERS.len(), "{flagged}");
        for t in FAST.iter() {
            for &entry in t.iter().filter(|&&e| e != 0) {
                let spec = fast_spec(entry).expect("row");
                if spec.writes_through_state {
                    assert!(entry & FAST_AUDIT != 0, "{} taken as plain", spec.name);
                }
                let code = u64::from(fast_kind_code(entry));
                if code == STATE_WRITER_KIND {
                    assert!(spec.writes_through_state, "{}", spec.name);
                }
                assert_eq!(code == RECORDED_KIND, spec.fast_recorded(), "{}", spec.name);
                if code == 14 {
                    let packet = [Some(Tracked::HierDepth), Some(Tracked::Stencil)];
                    assert!(packet.contains(&spec.tracks), "{}", spec.name);
                }
            }
        }
    }

    #[test]
    fn fast_kinds_agree_with_rows() {
        let mut seen = 0;
        for t in FAST.iter() {
            for &entry in t.iter().filter(|&&e| e != 0) {
                let spec = fast_spec(entry).expect("row");
                let hot = matches!(
                    spec.op,
                    Op::PipeControl
                        | Op::StoreDataImm
                        | Op::FlushDw
                        | Op::XyColorBlt
                        | Op::XySrcCopyBlt
                        | Op::XyFastCopyBlt
                );
                if hot {
                    assert!(entry & FAST_AUDIT != 0 && fast_kind(entry).is_some());
                }
                assert!(fast_kind(entry).is_none() || entry & FAST_AUDIT != 0);
                if let Some(op) = fast_kind(entry) {
                    match (op, spec.op) {
                        (Op::Gm(a), Op::Gm(b)) => {
                            assert!(core::ptr::eq(a, b), "{}", spec.name)
                        }
                        _ => assert_eq!(op, spec.op, "{}", spec.name),
                    }
                    seen += 1;
                }
            }
        }
        assert!(seen >= 15, "{seen}");
    }

    #[test]
    fn fast_entries_agree_with_lookup() {
        let keys = (0u32..64)
            .map(|op| op << 23)
            .chain((0u32..128).map(|op| 2 << 29 | op << 22))
            .chain((0u32..8192).map(|k| 3 << 29 | k << 16));
        let keys: Vec<u32> = keys.collect();
        for &engine in Engine::ALL.iter() {
            for &key in &keys {
                let full = lookup_len(engine, key);
                let entry = fast_entry(engine.index(), key);
                if entry == 0 {
                    continue;
                }
                let (spec, _) = full.expect("fast entry for an unknown command");
                assert_eq!(fast_spec(entry), Some(spec));
                assert!(!matches!(spec.op, Op::BatchEnd), "{}", spec.name);
                if entry & FAST_AUDIT == 0 {
                    assert!(
                        matches!(spec.op, Op::Noop | Op::Plain | Op::Gm(_)),
                        "{}",
                        spec.name
                    );
                    if let Op::Gm(l) = spec.op {
                        assert!(l.fields.is_empty() && l.group.is_none(), "{}", spec.name);
                    }
                }
                let low_bits = (0u32..0x1_0000)
                    .filter(|v| *v < 0x200 || v.is_multiple_of(0x101) || v.count_ones() == 1);
                for low in low_bits {
                    let h = key | low;
                    let want = match lookup_len(engine, h) {
                        Some((_, Ok(len))) => Some(len),
                        _ => None,
                    };
                    let got = fast_len(entry, h);
                    // A header-only entry leaves a length field with bits
                    // above bit 7 set to the full decoder.
                    let deferred = entry & FAST_GUESS != 0 && u64::from(h) & entry & 0xffff != 0;
                    if got.is_some() || !deferred {
                        assert_eq!(got, want, "{} {h:#x}", spec.name);
                    }
                }
            }
        }
    }
}
