//! Per-engine whitelist of the registers a guest command may load or store
//! (MI_LOAD_REGISTER_IMM/MEM/REG, MI_STORE_REGISTER_MEM).
//!
//! Only registers that are per-context user state of the submitting engine
//! are listed: general-purpose registers, predicate and 3D/GPGPU indirect
//! draw/dispatch parameters, pipeline statistics, stream-out counters and the
//! engine timestamp (read only). Nothing that touches the GGTT, fences,
//! display, power/forcewake, interrupts or another engine is reachable.
//! Offsets: Linux i915 (`i915_reg.h`, `i915_cmd_parser.c` register tables)
//! and PRM vol 2c.

use crate::engine::Engine;

/// The kind of access a command makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegAccess {
    /// The command reads the register (SRM, LRR source).
    Read,
    /// The command writes the register (LRI, LRM, LRR destination).
    Write,
}

/// A whitelisted range, relative to the engine's MMIO base when `relative`.
struct Range {
    start: u32,
    end: u32,
    writable: bool,
    relative: bool,
}

const fn rel(start: u32, end: u32, writable: bool) -> Range {
    Range {
        start,
        end,
        writable,
        relative: true,
    }
}
const fn abs(start: u32, end: u32, writable: bool) -> Range {
    Range {
        start,
        end,
        writable,
        relative: false,
    }
}

/// Registers of every engine (relative to its MMIO base).
const COMMON: &[Range] = &[
    // RING_TIMESTAMP (64-bit), read only.
    rel(0x358, 0x360, false),
    // CS general-purpose registers GPR0..GPR15 (64-bit each).
    rel(0x600, 0x680, true),
];

/// Render-engine user registers (absolute offsets).
const RENDER: &[Range] = &[
    // Pipeline statistics counters HS_INVOCATION_COUNT .. PS_DEPTH_COUNT.
    abs(0x2300, 0x2358, true),
    // MI_PREDICATE_SRC0/SRC1/DATA/RESULT.
    abs(0x2400, 0x241c, true),
    // 3DPRIM_END_OFFSET, START_VERTEX, VERTEX_COUNT, INSTANCE_COUNT,
    // START_INSTANCE, BASE_VERTEX (indirect draw parameters).
    abs(0x2420, 0x2444, true),
    // GPGPU_DISPATCHDIMX/Y/Z (indirect dispatch).
    abs(0x2500, 0x250c, true),
    // SO_NUM_PRIMS_WRITTEN0-3, SO_PRIM_STORAGE_NEEDED0-3, SO_WRITE_OFFSET0-3.
    abs(0x5200, 0x5290, true),
];

/// Whether a command on `engine` may make `access` to register `offset`.
pub fn allowed(engine: Engine, offset: u32, access: RegAccess) -> bool {
    let base = engine.mmio_base();
    let hit = |r: &Range| {
        let (lo, hi) = if r.relative {
            (base + r.start, base + r.end)
        } else {
            (r.start, r.end)
        };
        offset >= lo && offset < hi && (access == RegAccess::Read || r.writable)
    };
    COMMON.iter().any(hit) || (engine == Engine::Render && RENDER.iter().any(hit))
}
