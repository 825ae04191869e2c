//! The registers a guest command may read (MI_STORE_REGISTER_MEM, the
//! source of MI_LOAD_REGISTER_REG) or write (MI_LOAD_REGISTER_IMM/MEM, the
//! destination of MI_LOAD_REGISTER_REG), per engine, and the values it may
//! write: one table ([`REGISTERS`]), one rule ([`check_read`],
//! [`check_write`]).
//!
//! A register is listed when a real Gen9 driver writes or reads it from a
//! batch (Mesa iris/anv/i965 context set-up, L3 configuration, queries,
//! indirect draws and dispatches, conditional rendering; the i915 context
//! workarounds; the intel media-driver; igt) and it is safe per vGPU:
//!
//! - written registers are part of the engine's logical context image, so
//!   with one context per vGPU a value one vGPU sets is seen only by its own
//!   later work (sources: igt `tests/intel/gem_ctx_isolation.c`, whose
//!   `nonpriv_registers` marks the context-saved ones per gen; i915 GVT-g
//!   `gvt/mmio_context.c` `gen9_engine_mmio_list`, `in_context`), and none
//!   of them reaches memory, another engine or global state (GGTT, fences,
//!   display, power, interrupts);
//! - a register where only some bits are safe lists those bits: a masked
//!   register ([`Writes::Masked`]: bits 31:16 select which of bits 15:0
//!   the write changes) may only select the bits drivers change, and a bit
//!   the monitor relies on may only be written as 1 (CS_DEBUG_MODE2 bit 4,
//!   which keeps constant buffer 0 an absolute, audited address; the render
//!   prologue sets it in every submission, see [`crate::mediate`]); a plain
//!   register ([`Writes::Bits`]) may only set its documented fields;
//! - registers that are not context-saved are only read, and those whose
//!   value a previous vGPU's work left (the video engine's codec status
//!   registers, igt: `MFC_VDBOX1`, NOCTX) only after this submission's own
//!   codec work ([`Reads::AfterOwnWork`]): then they hold this vGPU's
//!   result.
//!
//! MI_LOAD_REGISTER_MEM and MI_LOAD_REGISTER_REG write a value the scan
//! cannot see: they may only target registers that accept every value
//! ([`Writes::Any`]). MI_LOAD_REGISTER_IMM's Byte Write Disables (header
//! bits 11:8) only narrow a write, but make a masked write's meaning
//! depend on byte lanes: they are refused for registers with bit rules.
//!
//! The blitter's tiling register BCS_SWCTRL (Y tiling for the source and
//! destination of the XY_ blits) is guest-writable: the scanner's blit
//! extents do not depend on it, they take the worst of X and Y tiling
//! ([`super::repr`]).
//!
//! Offsets: Linux i915 (`i915_reg.h`, `gt/intel_gt_regs.h`,
//! `i915_cmd_parser.c`), Mesa genxml `gen9.xml` registers, media-driver
//! `mhw_mmio_g9.h`, PRM vol 2c.

use core::fmt;

use super::table::Engines;
use crate::engine::Engine;

/// The kind of access a command makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegAccess {
    /// The command reads the register (SRM, LRR source).
    Read,
    /// The command writes the register (LRI, LRM, LRR destination).
    Write,
}

impl fmt::Display for RegAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegAccess::Read => "read",
            RegAccess::Write => "write",
        })
    }
}

/// Why a register access is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegRefusal {
    /// The register is not on the engine's list.
    NotListed,
    /// The register is listed for reading only.
    ReadOnly,
    /// MI_LOAD_REGISTER_IMM of a value that changes bits a guest may not
    /// change (or clears one it must keep set).
    Value(u32),
    /// A write whose value the scan cannot see (MI_LOAD_REGISTER_MEM/REG)
    /// into a register that accepts only some values.
    UnknownValue,
    /// MI_LOAD_REGISTER_IMM with Byte Write Disables into a register that
    /// accepts only some values.
    ByteDisables,
    /// A status register another vGPU's work may have set, read before
    /// this submission's own work on the engine.
    BeforeOwnWork,
    /// In a non-privileged (PPGTT) batch: outside the hardware's
    /// non-privileged set ([`NONPRIVILEGED_REGISTERS`]).
    NotNonPrivileged,
}

impl fmt::Display for RegRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegRefusal::NotListed => f.write_str("not on the engine's register list"),
            RegRefusal::ReadOnly => f.write_str("read-only for guests"),
            RegRefusal::Value(v) => write!(f, "value {v:#x} changes bits a guest may not change"),
            RegRefusal::UnknownValue => {
                f.write_str("value unknown at scan time, and only some values are allowed")
            }
            RegRefusal::ByteDisables => {
                f.write_str("byte write disables on a register with bit rules")
            }
            RegRefusal::BeforeOwnWork => {
                f.write_str("status of earlier work read before this submission's own work")
            }
            RegRefusal::NotNonPrivileged => {
                f.write_str("outside the hardware's non-privileged set, in a PPGTT batch")
            }
        }
    }
}

/// When a guest may read a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Whenever (context-saved state, timestamps).
    Always,
    /// Only once the submission has started work on the engine itself
    /// (a command the table marks [`super::table::CmdSpec::writes_through_state`]
    /// was scanned before): the register then reports that work, not an
    /// earlier vGPU's.
    AfterOwnWork,
}

/// What a guest may write to a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    /// Nothing: read-only.
    No,
    /// Every value.
    Any,
    /// A plain register: only these bits may be set.
    Bits(u32),
    /// A masked register: the write may select (bits 31:16) only bits in
    /// `may_change`, and may write a bit of `keep_set` only as 1.
    Masked {
        /// Bits 15:0 the write may change.
        may_change: u16,
        /// Bits that must stay set.
        keep_set: u16,
    },
}

impl Writes {
    /// Whether `value` is allowed.
    pub const fn allows(self, value: u32) -> bool {
        match self {
            Writes::No => false,
            Writes::Any => true,
            Writes::Bits(may_set) => value & !may_set == 0,
            Writes::Masked {
                may_change,
                keep_set,
            } => {
                let selected = (value >> 16) as u16;
                let cleared = selected & !(value as u16);
                selected & !may_change == 0 && cleared & keep_set == 0
            }
        }
    }
}

/// One listed register (or a run of them with one rule).
#[derive(Clone, Copy, Debug)]
pub struct Reg {
    /// Name (i915 / genxml / media-driver).
    pub name: &'static str,
    /// Engines whose commands may access it.
    pub engines: Engines,
    /// First byte, engine-relative (to [`Engine::mmio_base`]) when
    /// `relative`, else absolute.
    pub start: u32,
    /// Bytes covered.
    pub bytes: u32,
    /// Offset relative to the engine's MMIO base.
    pub relative: bool,
    /// When it may be read.
    pub reads: Reads,
    /// What may be written.
    pub writes: Writes,
    /// Who uses it, and why it is safe per vGPU (with sources).
    pub why: &'static str,
}

impl Reg {
    /// Whether the register covers byte `offset` when accessed from
    /// `engine`.
    pub const fn covers(&self, engine: Engine, offset: u32) -> bool {
        let start = if self.relative {
            engine.mmio_base() + self.start
        } else {
            self.start
        };
        self.engines.contains(engine) && offset >= start && offset < start + self.bytes
    }
}

const RCS: Engines = Engines::only(Engine::Render);
const BCS: Engines = Engines::only(Engine::Blitter);
const VCS: Engines = Engines::only(Engine::Video);

const fn masked(may_change: u16) -> Writes {
    Writes::Masked {
        may_change,
        keep_set: 0,
    }
}

/// Context-saved render register, any value.
const fn rcs_any(name: &'static str, start: u32, bytes: u32, why: &'static str) -> Reg {
    Reg {
        name,
        engines: RCS,
        start,
        bytes,
        relative: false,
        reads: Reads::Always,
        writes: Writes::Any,
        why,
    }
}

/// Context-saved render register with a bit rule.
const fn rcs_bits(name: &'static str, start: u32, writes: Writes, why: &'static str) -> Reg {
    Reg {
        name,
        engines: RCS,
        start,
        bytes: 4,
        relative: false,
        reads: Reads::Always,
        writes,
        why,
    }
}

/// A video-engine status register: read after the submission's own codec
/// work, never written.
const fn vcs_status(name: &'static str, start: u32, bytes: u32) -> Reg {
    Reg {
        name,
        engines: VCS,
        start,
        bytes,
        relative: false,
        reads: Reads::AfterOwnWork,
        writes: Writes::No,
        why: STATUS_WHY,
    }
}

const STATUS_WHY: &str = "codec status the media-driver reads after each frame (decode \
     error flags, CRC and MB count; encode byte counts and image status; mhw_mmio_g9.h, \
     mhw_vdbox_mfx_g9_X.h, mhw_vdbox_hcp_g9_X.h); not context-saved (igt gem_ctx_isolation \
     MFC_VDBOX1: NOCTX), so only read, and only after this submission's own codec work";

const CHICKEN_WHY: &str = "i915 writes it by LRI at context creation \
     (intel_workarounds.c gen9/skl/kbl/cfl_ctx_workarounds_init); in the render context image \
     (GVT-g mmio_context.c gen9_engine_mmio_list, in_context); only the bits i915 changes";

/// Every register guests may access. Offsets do not overlap on any engine
/// (a unit test checks it).
pub static REGISTERS: &[Reg] = &[
    // ---- every engine (engine-relative) ----
    Reg {
        name: "RING_TIMESTAMP",
        engines: Engines::ALL,
        start: 0x358,
        bytes: 8,
        relative: true,
        reads: Reads::Always,
        writes: Writes::No,
        why: "free-running GPU clock, the same for every vGPU (Mesa timestamp queries; i915 \
              gen9_blt_regs); read only",
    },
    Reg {
        name: "RING_CTX_TIMESTAMP",
        engines: Engines::ALL,
        start: 0x3a8,
        bytes: 4,
        relative: true,
        reads: Reads::Always,
        writes: Writes::No,
        why: "the running context's own run time, saved in its context image (i915 \
              gen9_blt_regs allows it); read only",
    },
    Reg {
        name: "CS_GPR0..15",
        engines: Engines::ALL,
        start: 0x600,
        bytes: 0x80,
        relative: true,
        reads: Reads::Always,
        writes: Writes::Any,
        why: "MI_MATH operands: Mesa query and indirect code, media-driver BRC; context-saved \
              on every engine (igt gem_ctx_isolation xCS_GPR, Gen9)",
    },
    // ---- render: counters, predicates, indirect parameters (any value) ----
    rcs_any(
        "CS_INVOCATION_COUNT",
        0x2290,
        8,
        "compute invocations, read by Mesa pipeline-statistics queries; context-saved (igt \
         gem_ctx_isolation GPGPU_THREADS_DISPATCHED, Gen8+)",
    ),
    rcs_any(
        "HS_INVOCATION_COUNT..PS_DEPTH_COUNT",
        0x2300,
        0x58,
        "pipeline statistics and occlusion counters (Mesa queries); context-saved (igt \
         gem_ctx_isolation, Gen4+)",
    ),
    rcs_any(
        "MI_PREDICATE_SRC0/SRC1/DATA/RESULT/RESULT_1",
        0x2400,
        0x20,
        "MI_PREDICATE operands (Mesa conditional rendering, anv indirect draw counts); \
         context-saved (igt gem_ctx_isolation, Gen8+)",
    ),
    rcs_any(
        "3DPRIM_END_OFFSET",
        0x2420,
        4,
        "indirect draw parameter (Mesa); context-saved (igt gem_ctx_isolation, Gen6+)",
    ),
    rcs_any(
        "3DPRIM_START_VERTEX..3DPRIM_BASE_VERTEX",
        0x2430,
        0x14,
        "indirect draw parameters loaded by MI_LOAD_REGISTER_MEM (Mesa iris/anv/i965 \
         indirect draws); context-saved (igt gem_ctx_isolation, Gen6+)",
    ),
    rcs_any(
        "GPGPU_DISPATCHDIMX/Y/Z",
        0x2500,
        0xc,
        "indirect dispatch sizes (Mesa indirect compute); context-saved (igt \
         gem_ctx_isolation, Gen8+)",
    ),
    rcs_any(
        "SO_NUM_PRIMS_WRITTEN0..3",
        0x5200,
        0x20,
        "transform feedback counters (Mesa queries); context-saved (igt gem_ctx_isolation, \
         Gen6+)",
    ),
    rcs_any(
        "SO_PRIM_STORAGE_NEEDED0..3",
        0x5240,
        0x20,
        "transform feedback counters (Mesa queries); context-saved (igt gem_ctx_isolation, \
         Gen6+)",
    ),
    rcs_any(
        "SO_WRITE_OFFSET0..3",
        0x5280,
        0x10,
        "stream-out write offsets, loaded to resume transform feedback (Mesa); an offset \
         into the audited SO buffer, whose size bounds it; context-saved (igt \
         gem_ctx_isolation, Gen7+)",
    ),
    // ---- render: configuration with bit rules ----
    rcs_bits(
        "CS_DEBUG_MODE2",
        0x20d8,
        Writes::Masked {
            may_change: 1 << 4,
            keep_set: 1 << 4,
        },
        "Mesa iris_init_render_context / anv init_render_queue_state set bit 4 \
         (CONSTANT_BUFFER Address Offset Disable) in every Gen9 context; context-saved \
         (GVT-g gen9_engine_mmio_list 0x20d8 in_context; anv: 'only safe with context \
         isolation'); the scanner audits constant buffer 0 as an absolute address, so bit 4 \
         may only be set, and no other bit changed",
    ),
    rcs_bits(
        "CS_CHICKEN1",
        0x2580,
        masked(0x7),
        "preemption granularity: bit 0 3D object level (Mesa iris_enable_obj_preemption; \
         i915 WaDisable3DMidCmdPreemption), bits 2:1 GPGPU level (i915 \
         WaDisableGPGPUMidCmdPreemption, media-driver mhw_render_legacy.c 0x00060004); \
         context-saved (igt gem_ctx_isolation, Gen9; GVT-g in_context)",
    ),
    rcs_bits(
        "CACHE_MODE_0",
        0x7000,
        masked(1 << 5),
        "bit 5 STC PMA Optimization Enable, toggled by Mesa's Gen9 PMA fix (anv/iris \
         update_pma_fix); context-saved (igt gem_ctx_isolation Cache_Mode_0; GVT-g \
         in_context)",
    ),
    rcs_bits(
        "CACHE_MODE_1",
        0x7004,
        masked((1 << 1) | (1 << 4) | (1 << 6) | (1 << 9)),
        "bits 1 (Partial Resolve Disable In VC), 4 (Float Blend Optimization Enable), 9 \
         (MSC RAW Hazard Avoidance) set by Mesa's Gen9 context set-up, 6 (4x4 STC \
         Optimization Disable) by i915's; context-saved (igt gem_ctx_isolation \
         Cache_Mode_1; GVT-g in_context)",
    ),
    rcs_bits("GT_MODE", 0x7008, masked(0x3f), CHICKEN_WHY),
    rcs_bits(
        "COMMON_SLICE_CHICKEN2",
        0x7014,
        masked((1 << 8) | (1 << 13)),
        CHICKEN_WHY,
    ),
    rcs_bits(
        "L3CNTLREG",
        0x7034,
        // SLM enable (0), URB (7:1), RO (17:11), DC (24:18), all (31:25);
        // bits 10:8 reserved.
        Writes::Bits(!0x0000_0700),
        "L3 partitioning, written by Mesa (iris_emit_l3_config, anv emit_l3_config) and the \
         media-driver (mhw_render_g9_X.cpp) for every Gen9 context; context-saved (igt \
         gem_ctx_isolation L3_Config, Gen8-11); only its documented fields",
    ),
    rcs_bits(
        "HDC_CHICKEN0",
        0x7300,
        masked((1 << 4) | (1 << 5) | (1 << 15)),
        CHICKEN_WHY,
    ),
    rcs_bits("HALF_SLICE_CHICKEN1", 0xe100, masked(1 << 4), CHICKEN_WHY),
    rcs_bits("HALF_SLICE_CHICKEN2", 0xe180, masked(1 << 13), CHICKEN_WHY),
    rcs_bits("HALF_SLICE_CHICKEN3", 0xe184, masked(1 << 1), CHICKEN_WHY),
    rcs_bits("HALF_SLICE_CHICKEN5", 0xe188, masked(1 << 3), CHICKEN_WHY),
    rcs_bits(
        "HALF_SLICE_CHICKEN7",
        0xe194,
        masked((1 << 2) | (1 << 4) | (1 << 8)),
        CHICKEN_WHY,
    ),
    rcs_bits(
        "ROW_CHICKEN",
        0xe4f0,
        masked((1 << 8) | (1 << 15)),
        CHICKEN_WHY,
    ),
    // ---- blitter ----
    Reg {
        name: "BCS_SWCTRL",
        engines: BCS,
        start: 0x2_2200,
        bytes: 4,
        relative: false,
        reads: Reads::Always,
        writes: masked(0x3),
        why: "Y tiling of the XY_ blits' source (bit 0) and destination (bit 1), written \
              around tiled blits by igt (intel_batchbuffer.c) and the media-driver; allowed \
              by i915's Gen9 blitter parser (gen9_blt_regs); context-saved (igt \
              gem_ctx_isolation BCS_SWCTRL, Gen8+); the blit extents take the worst of X and \
              Y tiling whatever it says",
    },
    // ---- video: codec status (read after own work) ----
    vcs_status("MFX_ERROR_FLAG", 0x1_2800, 4),
    vcs_status("MFX_FRAME_CRC", 0x1_2850, 4),
    vcs_status("MFX_MB_COUNT", 0x1_2868, 4),
    vcs_status("MFC_BITSTREAM_BYTECOUNT_FRAME/SE_BITCOUNT", 0x1_28a0, 8),
    vcs_status(
        "MFC_IMAGE_STATUS_MASK/CTRL, MFC_QP_STATUS_COUNT",
        0x1_28b4,
        0xc,
    ),
    vcs_status("MFC_BITSTREAM_BYTECOUNT_SLICE", 0x1_28d0, 4),
    vcs_status("MFC_VP8_IMAGE_STATUS_MASK/CTRL/BYTECOUNT", 0x1_2900, 0xc),
    vcs_status("MFX_VP8_BRC_*", 0x1_2910, 0x1c),
    vcs_status("MFC_AVC_NUM_SLICES", 0x1_2954, 4),
    vcs_status("HCP_DEC_STATUS, HCP_CABAC_STATUS", 0x1_e900, 8),
    vcs_status(
        "HCP_ENC_BITSTREAM_BYTECOUNT_FRAME(_NO_HEADER)/SE_BITCOUNT",
        0x1_e9a0,
        0xc,
    ),
    vcs_status(
        "HCP_ENC_IMAGE_STATUS_MASK/CTRL, HCP_ENC_QP_STATUS_COUNT",
        0x1_e9b8,
        0xc,
    ),
    vcs_status(
        "HCP_VP9_ENC_BITSTREAM_BYTECOUNT_FRAME(_NO_HEADER)",
        0x1_e9e0,
        8,
    ),
    vcs_status("HCP_VP9_ENC_IMAGE_STATUS_MASK/CTRL", 0x1_e9f0, 8),
    vcs_status("HUC_STATUS", 0xd000, 4),
    Reg {
        name: "HUC_STATUS2",
        engines: VCS,
        start: 0xd3b0,
        bytes: 4,
        relative: false,
        reads: Reads::Always,
        writes: Writes::No,
        why: "HuC firmware load and authentication status, a property of the device, not of \
              any vGPU's work (media-driver checks it before HuC use); read only",
    },
];

/// The listed register holding byte `offset` for `engine`.
pub fn find(engine: Engine, offset: u32) -> Option<&'static Reg> {
    REGISTERS.iter().find(|r| r.covers(engine, offset))
}

/// May a command on `engine` read the register at `offset`? `own_work`:
/// the submission has already started work on the engine (see
/// [`Reads::AfterOwnWork`]).
pub fn check_read(engine: Engine, offset: u32, own_work: bool) -> Result<(), RegRefusal> {
    let r = find(engine, offset).ok_or(RegRefusal::NotListed)?;
    match r.reads {
        Reads::Always => Ok(()),
        Reads::AfterOwnWork if own_work => Ok(()),
        Reads::AfterOwnWork => Err(RegRefusal::BeforeOwnWork),
    }
}

/// May a command on `engine` write the register at `offset`? `value`: the
/// value of an MI_LOAD_REGISTER_IMM (`None` for MI_LOAD_REGISTER_MEM/REG,
/// whose value the scan cannot see); `byte_disables`: the LRI's Byte
/// Write Disables are not all clear.
pub fn check_write(
    engine: Engine,
    offset: u32,
    value: Option<u32>,
    byte_disables: bool,
) -> Result<(), RegRefusal> {
    let r = find(engine, offset).ok_or(RegRefusal::NotListed)?;
    match (r.writes, value) {
        (Writes::No, _) => Err(RegRefusal::ReadOnly),
        (Writes::Any, _) => Ok(()),
        (_, None) => Err(RegRefusal::UnknownValue),
        (_, Some(_)) if byte_disables => Err(RegRefusal::ByteDisables),
        (w, Some(v)) if w.allows(v) => Ok(()),
        (_, Some(v)) => Err(RegRefusal::Value(v)),
    }
}

/// The registers a non-privileged batch (one started with the Address
/// Space Indicator: a PPGTT batch) may read and write on Gen9:
/// `(engine, first offset, dwords)`, absolute. From igt's
/// `gem_ctx_isolation.c` `nonpriv_registers` (the registers a Gen9 user
/// batch writes, context saved or not: pipeline statistics, predicates,
/// indirect draw and dispatch parameters, GPRs, stream-out, L3 and cache
/// modes, NOPID, OA and performance counters, BCS_SWCTRL, the video
/// engine's codec status), and the four i915 adds on Skylake through
/// RING_FORCE_TO_NONPRIV (`skl_whitelist_build` / `gen9_whitelist_build`:
/// CTX_PREEMPT, CS_CHICKEN1, HDC_CHICKEN1, L3SQCREG4), which the monitor
/// must program likewise on hardware.
///
/// The blitter is the exception: the Gen9 BCS does not check register
/// accesses in non-privileged batches at all (i915 `i915_cmd_parser.c`:
/// "For Gen9 we can still rely on the h/w to enforce cmd security, and
/// only need to re-enforce the register access checks", which its Gen9
/// blitter parser does with `gen9_blt_regs`). Its rows here are that
/// parser's list (BCS_SWCTRL, the blitter's GPRs, its RING_TIMESTAMP and
/// CTX_TIMESTAMP; the render and video timestamps it also allows are not
/// the blitter's own registers and stay out), which only the scanner
/// enforces.
///
/// One list: `SimGpu` stops a non-privileged batch that leaves it (on every
/// engine but the blitter, as the hardware does), and the scanner refuses
/// such an access before it runs (its own register list,
/// [`REGISTERS`], applies as well: a PPGTT batch may reach a register only
/// when both allow it).
pub const NONPRIVILEGED_REGISTERS: &[(Engine, u32, u32)] = &[
    (Engine::Render, 0x2094, 1),          // NOPID
    (Engine::Render, 0x20c0, 1),          // INSTPM
    (Engine::Render, 0x2158, 1),          // BB_OFFSET
    (Engine::Render, 0x2248, 1),          // CTX_PREEMPT (FORCE_TO_NONPRIV)
    (Engine::Render, 0x2290, 2),          // GPGPU_THREADS_DISPATCHED
    (Engine::Render, 0x22c8, 2),          // PS_INVOCATION_COUNT_0
    (Engine::Render, 0x22d8, 2),          // PS_DEPTH_COUNT_0
    (Engine::Render, 0x22f0, 4),          // PS_INVOCATION_COUNT_1, PS_DEPTH_COUNT_1
    (Engine::Render, 0x2300, 18),         // HS..CL_PRIMITIVES_COUNT (0x2300..0x2348)
    (Engine::Render, 0x2360, 2),          // OA_CTX_CONTROL, OACTXID
    (Engine::Render, 0x23bc, 1),          // MI_PREDICATE_RESULT_2
    (Engine::Render, 0x2400, 8),          // MI_PREDICATE_SRC0/1, DATA, RESULT, RESULT_1
    (Engine::Render, 0x2420, 1),          // 3DPRIM_END_OFFSET
    (Engine::Render, 0x2430, 5),          // 3DPRIM_START_VERTEX..BASE_VERTEX
    (Engine::Render, 0x2448, 4),          // PS_INVOCATION_COUNT_2, PS_DEPTH_COUNT_2
    (Engine::Render, 0x2500, 3),          // GPGPU_DISPATCHDIMX/Y/Z
    (Engine::Render, 0x2580, 1),          // CS_CHICKEN1 (FORCE_TO_NONPRIV)
    (Engine::Render, 0x2600, 32),         // CS_GPR
    (Engine::Render, 0x2b00, 1),          // OA_CONTROL
    (Engine::Render, 0x5200, 8),          // SO_NUM_PRIMS_WRITTEN0..3
    (Engine::Render, 0x5240, 8),          // SO_PRIM_STORAGE_NEEDED0..3
    (Engine::Render, 0x5280, 4),          // SO_WRITE_OFFSET0..3
    (Engine::Render, 0x7000, 3),          // CACHE_MODE_0/1, GT_MODE
    (Engine::Render, 0x7034, 1),          // L3CNTLREG
    (Engine::Render, 0x7304, 1),          // HDC_CHICKEN1 (FORCE_TO_NONPRIV)
    (Engine::Render, 0x91b8, 4),          // PERF_CNT_1/2
    (Engine::Render, 0xb118, 1),          // L3SQCREG4 (FORCE_TO_NONPRIV)
    (Engine::Render, 0xe400, 2),          // TD_CTL, TD_CTL2
    (Engine::Blitter, 0x2_2200, 1),       // BCS_SWCTRL
    (Engine::Blitter, 0x2_2358, 2),       // BCS RING_TIMESTAMP (i915 gen9_blt_regs)
    (Engine::Blitter, 0x2_23a8, 1),       // BCS RING_CTX_TIMESTAMP (i915 gen9_blt_regs)
    (Engine::Blitter, 0x2_2600, 32),      // BCS_GPR
    (Engine::Video, 0x1_2600, 32),        // VCS0_GPR
    (Engine::Video, 0x1_2800, 64),        // MFC_VDBOX1
    (Engine::VideoEnhance, 0x1_a600, 32), // VECS_GPR
];

/// Whether a non-privileged batch on `engine` may access register `abs`.
pub fn nonprivileged_register(engine: Engine, abs: u32) -> bool {
    let abs = abs & 0x7f_fffc;
    NONPRIVILEGED_REGISTERS
        .iter()
        .any(|&(e, first, dwords)| e == engine && abs >= first && abs < first + 4 * dwords)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No two entries cover the same byte on one engine, every entry is
    /// DWord aligned and says why it is safe.
    #[test]
    fn entries_are_disjoint_aligned_and_explained() {
        for (i, a) in REGISTERS.iter().enumerate() {
            assert!(
                a.start % 4 == 0 && a.bytes % 4 == 0 && a.bytes > 0,
                "{}",
                a.name
            );
            assert!(!a.why.is_empty(), "{}", a.name);
            for b in &REGISTERS[i + 1..] {
                for e in Engine::ALL {
                    let start = |r: &Reg| {
                        if r.relative {
                            e.mmio_base() + r.start
                        } else {
                            r.start
                        }
                    };
                    let (sa, sb) = (start(a), start(b));
                    let overlap = sa < sb + b.bytes && sb < sa + a.bytes;
                    assert!(
                        !(overlap && a.engines.contains(e) && b.engines.contains(e)),
                        "{} and {} overlap on {e}",
                        a.name,
                        b.name
                    );
                }
            }
        }
    }

    /// What Mesa's Gen9 render context set-up writes is accepted; the
    /// monitor's constant-buffer bit may only be set.
    #[test]
    fn mesa_context_set_up_and_the_constant_buffer_bit() {
        let w = |off, v| check_write(Engine::Render, off, Some(v), false);
        // iris/anv: CS_DEBUG_MODE2 bit 4 with its mask.
        assert_eq!(w(0x20d8, 0x0010_0010), Ok(()));
        // Clearing it, or touching bit 0 (3D instruction disable).
        assert_eq!(w(0x20d8, 0x0010_0000), Err(RegRefusal::Value(0x0010_0000)));
        assert_eq!(w(0x20d8, 0x0001_0001), Err(RegRefusal::Value(0x0001_0001)));
        // Unmasked bits are not written: any low half is fine.
        assert_eq!(w(0x20d8, 0x0000_ffef), Ok(()));
        // CACHE_MODE_1 bits 1, 4, 9 (anv init_render_queue_state).
        let cm1 = (1 << 1) | (1 << 4) | (1 << 9);
        assert_eq!(w(0x7004, cm1 << 16 | cm1), Ok(()));
        assert!(w(0x7004, 1 << 31 | 1 << 15).is_err());
        // CS_CHICKEN1 replay mode (object-level preemption) and the
        // media-driver's mid-batch value.
        assert_eq!(w(0x2580, 0x0001_0001), Ok(()));
        assert_eq!(w(0x2580, 0x0006_0004), Ok(()));
        // L3CNTLREG: a typical Gen9 3D configuration; reserved bits not.
        assert_eq!(w(0x7034, 0x6000_0060), Ok(()));
        assert!(w(0x7034, 1 << 9).is_err());
        // An LRM cannot prove what it loads into a register with rules.
        assert_eq!(
            check_write(Engine::Render, 0x20d8, None, false),
            Err(RegRefusal::UnknownValue)
        );
        assert_eq!(
            check_write(Engine::Render, 0x7034, Some(0), true),
            Err(RegRefusal::ByteDisables)
        );
        // Counters and indirect parameters take anything, from anywhere.
        assert_eq!(check_write(Engine::Render, 0x2434, None, true), Ok(()));
        // The unlisted gaps of the old ranges.
        assert_eq!(w(0x2424, 0), Err(RegRefusal::NotListed));
        assert_eq!(w(0x5220, 0), Err(RegRefusal::NotListed));
        // Render configuration is not reachable from other engines.
        assert_eq!(
            check_write(Engine::Blitter, 0x7034, Some(0), false),
            Err(RegRefusal::NotListed)
        );
    }

    #[test]
    fn blitter_tiling_and_video_status() {
        // igt: set both Y bits, then clear them.
        let w = |v| check_write(Engine::Blitter, 0x2_2200, Some(v), false);
        assert_eq!(w(0x0003_0003), Ok(()));
        assert_eq!(w(0x0003_0000), Ok(()));
        assert!(w(0x0004_0004).is_err());
        // Codec status: read only, and only after own work.
        assert_eq!(
            check_read(Engine::Video, 0x1_2800, false),
            Err(RegRefusal::BeforeOwnWork)
        );
        assert_eq!(check_read(Engine::Video, 0x1_2800, true), Ok(()));
        assert_eq!(
            check_write(Engine::Video, 0x1_2800, Some(0), false),
            Err(RegRefusal::ReadOnly)
        );
        // Every engine's own GPRs and timestamps; not another's.
        for e in Engine::ALL {
            assert_eq!(check_read(e, e.mmio_base() + 0x358, false), Ok(()));
            assert_eq!(check_write(e, e.mmio_base() + 0x67c, None, false), Ok(()));
            assert_eq!(
                check_write(e, e.mmio_base() + 0x358, Some(0), false),
                Err(RegRefusal::ReadOnly)
            );
        }
        assert_eq!(
            check_write(Engine::Render, 0x2_2600, Some(0), false),
            Err(RegRefusal::NotListed)
        );
    }
}
