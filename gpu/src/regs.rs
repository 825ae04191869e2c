//! Gen9 (Skylake / Kaby Lake GT2) register facts, declared as tables
//!: one table per block, offsets checked at compile time, each
//! entry citing where the fact comes from.
//!
//! Sources: Intel "Skylake" PRM (Vol 2c: Command Reference: Registers;
//! Vol 5: Memory Views; Vol 7: 3D-Media-GPGPU "Execlists"), and the Linux
//! i915 driver (`i915_reg.h`, `gt/intel_engine_regs.h`, `gt/intel_lrc_reg.h`,
//! `i915_pvinfo.h`). Offsets are BAR0 (GTTMMADR) byte offsets.
//!
//! Register offsets are [`MmioOffset`] values; per-engine registers are
//! declared relative to [`Engine::mmio_base`].

use crate::engine::Engine;
use core::fmt;

/// Size of the register part of BAR0 the monitor emulates (2 MiB, PRM Vol 2c
/// "MMIO space"); the GGTT window starts at [`GGTT_BAR0_OFFSET`].
pub const MMIO_REGISTER_SPACE: u32 = 0x20_0000;
/// The GGTT's window inside BAR0 (BAR0 + 8 MiB; PRM Vol 5 "GTTMMADR").
pub const GGTT_BAR0_OFFSET: u32 = 0x80_0000;
/// Size of the GGTT window (1 Mi entries × 8 bytes).
pub const GGTT_WINDOW_SIZE: u32 = 0x80_0000;

/// A byte offset into BAR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MmioOffset(u32);

impl MmioOffset {
    /// Any offset inside BAR0's 16 MiB.
    pub const fn new(raw: u32) -> Option<Self> {
        if raw < GGTT_BAR0_OFFSET + GGTT_WINDOW_SIZE {
            Some(Self(raw))
        } else {
            None
        }
    }
    /// Offset of a register known to be inside BAR0 (a table constant).
    pub const fn reg(raw: u32) -> Self {
        assert!(raw < MMIO_REGISTER_SPACE);
        Self(raw)
    }
    /// The raw offset.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Display for MmioOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BAR0+{:#x}", self.0)
    }
}

/// How software may access a register, as the PRM lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwAccess {
    /// Read/write.
    ReadWrite,
    /// Read only.
    ReadOnly,
    /// Write only (reads return 0 or undefined).
    WriteOnly,
    /// Masked: bits 31:16 select which of bits 15:0 a write changes.
    Masked,
}

/// One register of a block: name, offset (relative to the block base), access,
/// and the source of the fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegDef {
    /// Name as in i915 / the PRM.
    pub name: &'static str,
    /// Offset from the block's base.
    pub offset: u32,
    /// Hardware access type.
    pub access: HwAccess,
    /// Where the fact comes from.
    pub source: &'static str,
}

/// Checks at compile time that a table's offsets are strictly increasing and
/// dword aligned (so no two entries alias).
const fn offsets_strictly_increasing(table: &[RegDef]) -> bool {
    let mut i = 1;
    while i < table.len() {
        if table[i].offset <= table[i - 1].offset || !table[i].offset.is_multiple_of(4) {
            return false;
        }
        i += 1;
    }
    true
}

/// Writes a masked register value: set `bits` (in 15:0) to `value`.
pub const fn masked(bits: u32, value: u32) -> u32 {
    (bits << 16) | (value & bits)
}

/// Per-engine ring / execlist register block, relative to
/// [`Engine::mmio_base`].
pub mod ring {
    use super::{offsets_strictly_increasing, HwAccess, MmioOffset, RegDef};
    use crate::engine::Engine;

    /// RING_TAIL: ring buffer tail offset, bits 20:3 (qword aligned).
    /// PRM Vol 2c "RING_BUFFER_TAIL"; i915 `RING_TAIL(base)` = base + 0x30.
    pub const TAIL: u32 = 0x30;
    /// RING_HEAD: head offset bits 20:2, wrap count 31:21.
    /// PRM Vol 2c "RING_BUFFER_HEAD"; i915 `RING_HEAD(base)` = base + 0x34.
    pub const HEAD: u32 = 0x34;
    /// RING_START: GM address of the ring, bits 31:12.
    /// PRM Vol 2c "RING_BUFFER_START"; i915 `RING_START(base)` = base + 0x38.
    pub const START: u32 = 0x38;
    /// RING_CTL: bit 0 enable, bits 20:12 length in pages minus one.
    /// PRM Vol 2c "RING_BUFFER_CTL"; i915 `RING_CTL(base)` = base + 0x3c.
    pub const CTL: u32 = 0x3c;
    /// IPEHR: header of the instruction that caused an error.
    /// i915 `RING_IPEHR(base)` = base + 0x68.
    pub const IPEHR: u32 = 0x68;
    /// ACTHD: active head (current command address) low dword.
    /// i915 `RING_ACTHD(base)` = base + 0x74.
    pub const ACTHD: u32 = 0x74;
    /// HWS_PGA: GM address of the hardware status page.
    /// i915 `RING_HWS_PGA(base)` = base + 0x80.
    pub const HWS_PGA: u32 = 0x80;
    /// MI_MODE (masked). i915 `RING_MI_MODE(base)` = base + 0x9c.
    pub const MI_MODE: u32 = 0x9c;
    /// IMR: engine interrupt mask. i915 `RING_IMR(base)` = base + 0xa8.
    pub const IMR: u32 = 0xa8;
    /// EIR: error identity. i915 `RING_EIR(base)` = base + 0xb0.
    pub const EIR: u32 = 0xb0;
    /// BB_ADDR: current batch address low. i915 `RING_BBADDR(base)` = base + 0x140.
    pub const BB_ADDR: u32 = 0x140;
    /// ELSP: execlist submit port (write only, four dwords per submission:
    /// element 1 high, element 1 low, element 0 high, element 0 low).
    /// PRM Vol 2c "EXECLIST_SUBMITPORT"; i915 `RING_ELSP(base)` = base + 0x230.
    pub const ELSP: u32 = 0x230;
    /// EXECLIST_STATUS low. i915 `RING_EXECLIST_STATUS_LO(base)` = base + 0x234.
    pub const EXECLIST_STATUS_LO: u32 = 0x234;
    /// EXECLIST_STATUS high. i915 `RING_EXECLIST_STATUS_HI(base)` = base + 0x238.
    pub const EXECLIST_STATUS_HI: u32 = 0x238;
    /// CONTEXT_CONTROL (masked, saved in the context image).
    /// i915 `RING_CONTEXT_CONTROL(base)` = base + 0x244.
    pub const CONTEXT_CONTROL: u32 = 0x244;
    /// GFX_MODE (masked): bit 15 enables execlists.
    /// i915 `RING_MODE_GEN7(base)` = base + 0x29c, `GFX_RUN_LIST_ENABLE` = bit 15.
    pub const MODE: u32 = 0x29c;
    /// Timestamp low. i915 `RING_TIMESTAMP(base)` = base + 0x358.
    pub const TIMESTAMP: u32 = 0x358;
    /// Context status buffer: 6 entries of (low, high) dwords.
    /// i915 `RING_CONTEXT_STATUS_BUF_BASE(base)` = base + 0x370.
    pub const CSB_BASE: u32 = 0x370;
    /// Context status buffer pointer: write pointer 3:0, read pointer 11:8
    /// (masked). i915 `RING_CONTEXT_STATUS_PTR(base)` = base + 0x3a0.
    pub const CSB_PTR: u32 = 0x3a0;
    /// General purpose registers CS_GPR0..15, 64 bit each.
    /// i915 `GEN8_RING_CS_GPR(base, n)` = base + 0x600 + 8n.
    pub const GPR_BASE: u32 = 0x600;
    /// Number of context status buffer entries on Gen9.
    pub const CSB_ENTRIES: u32 = 6;

    /// RING_CTL: ring enable.
    pub const CTL_ENABLE: u32 = 1 << 0;
    /// RING_CTL: buffer length field (pages minus one), bits 20:12.
    pub const CTL_SIZE_MASK: u32 = 0x001f_f000;
    /// RING_TAIL / RING_HEAD offset field, bits 20:2 (TAIL uses 20:3).
    pub const OFFSET_MASK: u32 = 0x001f_fffc;
    /// GFX_MODE bit 15: execlist (run list) enable.
    pub const MODE_RUN_LIST_ENABLE: u32 = 1 << 15;
    /// CSB entry status: context completed (i915 `GEN8_CTX_STATUS_COMPLETE`).
    pub const CSB_STATUS_COMPLETE: u32 = 1 << 4;
    /// CSB entry status: engine went idle (i915 `GEN8_CTX_STATUS_ACTIVE_IDLE`).
    pub const CSB_STATUS_ACTIVE_IDLE: u32 = 1 << 3;

    /// The block, as a table.
    pub const BLOCK: [RegDef; 20] = [
        RegDef {
            name: "RING_TAIL",
            offset: TAIL,
            access: HwAccess::ReadWrite,
            source: "PRM Vol2c RING_BUFFER_TAIL; i915_reg.h RING_TAIL",
        },
        RegDef {
            name: "RING_HEAD",
            offset: HEAD,
            access: HwAccess::ReadWrite,
            source: "PRM Vol2c RING_BUFFER_HEAD; i915_reg.h RING_HEAD",
        },
        RegDef {
            name: "RING_START",
            offset: START,
            access: HwAccess::ReadWrite,
            source: "PRM Vol2c RING_BUFFER_START; i915_reg.h RING_START",
        },
        RegDef {
            name: "RING_CTL",
            offset: CTL,
            access: HwAccess::ReadWrite,
            source: "PRM Vol2c RING_BUFFER_CTL; i915_reg.h RING_CTL",
        },
        RegDef {
            name: "RING_IPEHR",
            offset: IPEHR,
            access: HwAccess::ReadOnly,
            source: "i915_reg.h RING_IPEHR",
        },
        RegDef {
            name: "RING_ACTHD",
            offset: ACTHD,
            access: HwAccess::ReadOnly,
            source: "i915_reg.h RING_ACTHD",
        },
        RegDef {
            name: "RING_HWS_PGA",
            offset: HWS_PGA,
            access: HwAccess::ReadWrite,
            source: "i915_reg.h RING_HWS_PGA",
        },
        RegDef {
            name: "RING_MI_MODE",
            offset: MI_MODE,
            access: HwAccess::Masked,
            source: "i915_reg.h RING_MI_MODE",
        },
        RegDef {
            name: "RING_IMR",
            offset: IMR,
            access: HwAccess::ReadWrite,
            source: "i915_reg.h RING_IMR",
        },
        RegDef {
            name: "RING_EIR",
            offset: EIR,
            access: HwAccess::ReadWrite,
            source: "i915_reg.h RING_EIR",
        },
        RegDef {
            name: "RING_BBADDR",
            offset: BB_ADDR,
            access: HwAccess::ReadOnly,
            source: "i915_reg.h RING_BBADDR",
        },
        RegDef {
            name: "RING_ELSP",
            offset: ELSP,
            access: HwAccess::WriteOnly,
            source: "PRM Vol2c EXECLIST_SUBMITPORT; i915 RING_ELSP",
        },
        RegDef {
            name: "RING_EXECLIST_STATUS_LO",
            offset: EXECLIST_STATUS_LO,
            access: HwAccess::ReadOnly,
            source: "PRM Vol2c EXECLIST_STATUS",
        },
        RegDef {
            name: "RING_EXECLIST_STATUS_HI",
            offset: EXECLIST_STATUS_HI,
            access: HwAccess::ReadOnly,
            source: "PRM Vol2c EXECLIST_STATUS",
        },
        RegDef {
            name: "RING_CONTEXT_CONTROL",
            offset: CONTEXT_CONTROL,
            access: HwAccess::Masked,
            source: "i915 intel_lrc_reg.h RING_CONTEXT_CONTROL",
        },
        RegDef {
            name: "RING_MODE_GEN7",
            offset: MODE,
            access: HwAccess::Masked,
            source: "PRM Vol2c GFX_MODE; i915 RING_MODE_GEN7",
        },
        RegDef {
            name: "RING_TIMESTAMP",
            offset: TIMESTAMP,
            access: HwAccess::ReadOnly,
            source: "i915_reg.h RING_TIMESTAMP",
        },
        RegDef {
            name: "RING_CONTEXT_STATUS_BUF",
            offset: CSB_BASE,
            access: HwAccess::ReadOnly,
            source: "PRM Vol2c CTX_STATUS_BUF; i915 RING_CONTEXT_STATUS_BUF_BASE",
        },
        RegDef {
            name: "RING_CONTEXT_STATUS_PTR",
            offset: CSB_PTR,
            access: HwAccess::Masked,
            source: "PRM Vol2c CTX_STATUS_PTR; i915 RING_CONTEXT_STATUS_PTR",
        },
        RegDef {
            name: "CS_GPR",
            offset: GPR_BASE,
            access: HwAccess::ReadWrite,
            source: "i915 GEN8_RING_CS_GPR",
        },
    ];
    const _: () = assert!(offsets_strictly_increasing(&BLOCK));

    /// The absolute offset of a ring-block register of `engine`.
    pub const fn reg(engine: Engine, offset: u32) -> MmioOffset {
        MmioOffset::reg(engine.mmio_base() + offset)
    }
}

/// Fence registers (Gen6+ layout, 64-bit each): lo = start page 31:12,
/// tile walk Y bit 1, valid bit 0; hi = end page 31:12 (address bits 63:44 of
/// the whole register), pitch in 128-byte units minus one bits 11:0 of hi.
/// PRM Vol 2c "FENCE"; i915 `FENCE_REG_GEN6_LO(i)` = 0x100000 + 8i.
pub mod fence {
    use super::MmioOffset;

    /// Offset of fence 0 low dword.
    pub const BASE: u32 = 0x10_0000;
    /// Fence registers on Gen9 (i915 `num_fences` = 32 on Gen7+).
    pub const COUNT: u32 = 32;
    /// Valid bit of the low dword.
    pub const VALID: u32 = 1 << 0;
    /// Page-address field of both dwords.
    pub const PAGE_MASK: u32 = 0xffff_f000;

    /// Low dword of fence `i`.
    pub const fn lo(i: u32) -> MmioOffset {
        MmioOffset::reg(BASE + 8 * i)
    }
    /// High dword of fence `i`.
    pub const fn hi(i: u32) -> MmioOffset {
        MmioOffset::reg(BASE + 8 * i + 4)
    }
    /// Which fence and which half a BAR0 offset names, if it is a fence.
    pub const fn decode(offset: u32) -> Option<(u32, bool)> {
        if offset >= BASE && offset < BASE + 8 * COUNT {
            let rel = offset - BASE;
            Some((rel / 8, rel % 8 == 4))
        } else {
            None
        }
    }
}

/// Forcewake domains (Gen9): a masked request register and an ack register
/// per domain. i915 `FORCEWAKE_RENDER_GEN9` 0xa278 / `FORCEWAKE_ACK_RENDER_GEN9`
/// 0x0d84, `FORCEWAKE_MEDIA_GEN9` 0xa270 / `FORCEWAKE_ACK_MEDIA_GEN9` 0x0d88,
/// `FORCEWAKE_BLITTER_GEN9` 0xa188 / `FORCEWAKE_ACK_BLITTER_GEN9` 0x130044;
/// request bit `FORCEWAKE_KERNEL` = bit 0.
pub mod forcewake {
    use super::{offsets_strictly_increasing, HwAccess, MmioOffset, RegDef};

    /// Request bit the kernel owns.
    pub const KERNEL: u32 = 1 << 0;

    /// A forcewake power domain.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Domain {
        /// Render engine and common registers.
        Render,
        /// Video and video-enhancement engines.
        Media,
        /// Blitter engine.
        Blitter,
    }

    impl Domain {
        /// All domains, in wake order.
        pub const ALL: [Domain; 3] = [Domain::Render, Domain::Media, Domain::Blitter];
        /// Masked request register.
        pub const fn request(self) -> MmioOffset {
            MmioOffset::reg(match self {
                Domain::Render => 0xa278,
                Domain::Media => 0xa270,
                Domain::Blitter => 0xa188,
            })
        }
        /// Acknowledge register.
        pub const fn ack(self) -> MmioOffset {
            MmioOffset::reg(match self {
                Domain::Render => 0x0d84,
                Domain::Media => 0x0d88,
                Domain::Blitter => 0x13_0044,
            })
        }
    }

    /// The block, as a table (absolute offsets).
    pub const BLOCK: [RegDef; 6] = [
        RegDef {
            name: "FORCEWAKE_ACK_RENDER_GEN9",
            offset: 0x0d84,
            access: HwAccess::ReadOnly,
            source: "i915_reg.h",
        },
        RegDef {
            name: "FORCEWAKE_ACK_MEDIA_GEN9",
            offset: 0x0d88,
            access: HwAccess::ReadOnly,
            source: "i915_reg.h",
        },
        RegDef {
            name: "FORCEWAKE_BLITTER_GEN9",
            offset: 0xa188,
            access: HwAccess::Masked,
            source: "i915_reg.h",
        },
        RegDef {
            name: "FORCEWAKE_MEDIA_GEN9",
            offset: 0xa270,
            access: HwAccess::Masked,
            source: "i915_reg.h",
        },
        RegDef {
            name: "FORCEWAKE_RENDER_GEN9",
            offset: 0xa278,
            access: HwAccess::Masked,
            source: "i915_reg.h",
        },
        RegDef {
            name: "FORCEWAKE_ACK_BLITTER_GEN9",
            offset: 0x13_0044,
            access: HwAccess::ReadOnly,
            source: "i915_reg.h",
        },
    ];
    const _: () = assert!(offsets_strictly_increasing(&BLOCK));
}

/// Global GT registers the backends use.
pub mod gt {
    use super::MmioOffset;

    /// GFX_FLSH_CNTL: write 1 to flush GGTT writes (TLB) after PTE updates.
    /// i915 `GFX_FLSH_CNTL_GEN6` = 0x101008.
    pub const GFX_FLSH_CNTL: MmioOffset = MmioOffset::reg(0x10_1008);
    /// Page fault record: bit 0 valid, bits 2:1 fault type, bits 14:12 engine
    /// id. i915 `GEN8_RING_FAULT_REG` = 0x4094.
    pub const RING_FAULT: MmioOffset = MmioOffset::reg(0x4094);
    /// Faulting virtual address bits 43:12. i915 `GEN8_FAULT_TLB_DATA0` = 0x4b10.
    pub const FAULT_TLB_DATA0: MmioOffset = MmioOffset::reg(0x4b10);
    /// Faulting address bits 47:44 (3:0) and GGTT bit 4.
    /// i915 `GEN8_FAULT_TLB_DATA1` = 0x4b14.
    pub const FAULT_TLB_DATA1: MmioOffset = MmioOffset::reg(0x4b14);
    /// RING_FAULT_REG valid bit.
    pub const RING_FAULT_VALID: u32 = 1 << 0;
    /// FAULT_TLB_DATA1: fault was a GGTT access.
    pub const FAULT_GGTT: u32 = 1 << 4;
}

/// GEN6_GDRST, the graphics reset request (i915 `i915_reg.h`: `GEN6_GDRST`
/// 0x941c, `GEN6_GRDOM_FULL` bit 0, `GEN6_GRDOM_RENDER` bit 1,
/// `GEN6_GRDOM_MEDIA` bit 2, `GEN6_GRDOM_BLT` bit 3, `GEN6_GRDOM_VECS`
/// bit 4). Software sets the domains to reset and polls until the
/// hardware clears them; GVT-g completes a guest's request at once and
/// reads back 0 (`gdrst_mmio_write`).
pub mod gdrst {
    use super::MmioOffset;
    use crate::engine::Engine;

    /// The register.
    pub const OFFSET: MmioOffset = MmioOffset::reg(0x941c);
    /// Full GPU reset: every engine and the GT state.
    pub const FULL: u32 = 1 << 0;

    /// The reset domain of `engine`.
    pub const fn engine_bit(engine: Engine) -> u32 {
        match engine {
            Engine::Render => 1 << 1,
            Engine::Video => 1 << 2,
            Engine::Blitter => 1 << 3,
            Engine::VideoEnhance => 1 << 4,
        }
    }
}

/// The PVINFO page (BAR0 + 0x78000, 4 KiB) through which a vGPU learns it is
/// virtualized and which resources it owns (ballooning). Layout of
/// `struct vgt_if` in i915 `i915_pvinfo.h`.
///
/// The page carries only a fence *count*: the guest uses fences
/// `0..count`, and the monitor maps guest fence `i` to host fence
/// `base + i`, so the host base never reaches the guest.
pub mod pvinfo {
    use super::{offsets_strictly_increasing, HwAccess, RegDef};

    /// BAR0 offset of the page (i915 `VGT_PVINFO_PAGE`).
    pub const PAGE: u32 = 0x7_8000;
    /// Page size (i915 `VGT_PVINFO_SIZE`).
    pub const SIZE: u32 = 0x1000;
    /// `VGT_MAGIC`, "vGTvGTvG".
    pub const MAGIC: u64 = 0x4776_5447_7654_4776;
    /// `VGT_VERSION_MAJOR`.
    pub const VERSION_MAJOR: u16 = 1;
    /// `VGT_VERSION_MINOR`.
    pub const VERSION_MINOR: u16 = 0;

    /// magic (u64).
    pub const MAGIC_OFFSET: u32 = 0x00;
    /// version_major (u16) and version_minor (u16) in one dword.
    pub const VERSION: u32 = 0x08;
    /// vgt_id.
    pub const VGT_ID: u32 = 0x0c;
    /// vgt_caps.
    pub const VGT_CAPS: u32 = 0x10;
    /// avail_rs.mappable_gmadr.base (aperture slice base, guest view).
    pub const APERTURE_BASE: u32 = 0x40;
    /// avail_rs.mappable_gmadr.size.
    pub const APERTURE_SIZE: u32 = 0x44;
    /// avail_rs.nonmappable_gmadr.base (hidden slice base, guest view).
    pub const HIDDEN_BASE: u32 = 0x48;
    /// avail_rs.nonmappable_gmadr.size.
    pub const HIDDEN_SIZE: u32 = 0x4c;
    /// avail_rs.fence_num.
    pub const FENCE_NUM: u32 = 0x50;
    /// display_ready (guest → monitor).
    pub const DISPLAY_READY: u32 = 0x804;
    /// g2v_notify (guest → monitor notification, `enum vgt_g2v_type`).
    pub const G2V_NOTIFY: u32 = 0x818;
    /// pdp[0].lo: the root the next PPGTT notification names (for a
    /// 4-level PPGTT its PML4); pdp[1..4] follow, lo then hi, to 0x858.
    pub const PDP0_LO: u32 = 0x838;
    /// pdp[0].hi.
    pub const PDP0_HI: u32 = 0x83c;
    /// One past pdp[3].hi.
    pub const PDP_END: u32 = 0x858;
    /// execlist_context_descriptor_lo.
    pub const EXECLIST_DESC_LO: u32 = 0x858;
    /// execlist_context_descriptor_hi.
    pub const EXECLIST_DESC_HI: u32 = 0x85c;

    /// `VGT_G2V_PPGTT_L3_PAGE_TABLE_CREATE` .. `VGT_G2V_EXECLIST_CONTEXT_DESTROY`
    /// are 2..=7; `VGT_G2V_MAX` is 8.
    pub const G2V_FIRST: u32 = 2;
    /// One past the last valid notification.
    pub const G2V_MAX: u32 = 8;
    /// `VGT_G2V_PPGTT_L4_PAGE_TABLE_CREATE`: the guest created the 4-level
    /// PPGTT whose PML4 is in pdp[0] (the host starts shadowing it).
    pub const G2V_PPGTT_L4_CREATE: u32 = 4;
    /// `VGT_G2V_PPGTT_L4_PAGE_TABLE_DESTROY`: the PPGTT in pdp[0] is gone.
    pub const G2V_PPGTT_L4_DESTROY: u32 = 5;

    /// The page as a table (offsets relative to [`PAGE`]).
    pub const LAYOUT: [RegDef; 14] = [
        RegDef {
            name: "magic_lo",
            offset: MAGIC_OFFSET,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h vgt_if.magic",
        },
        RegDef {
            name: "magic_hi",
            offset: MAGIC_OFFSET + 4,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h vgt_if.magic",
        },
        RegDef {
            name: "version",
            offset: VERSION,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h vgt_if.version_major/minor",
        },
        RegDef {
            name: "vgt_id",
            offset: VGT_ID,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h vgt_if.vgt_id",
        },
        RegDef {
            name: "vgt_caps",
            offset: VGT_CAPS,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h vgt_if.vgt_caps",
        },
        RegDef {
            name: "mappable_gmadr.base",
            offset: APERTURE_BASE,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h avail_rs",
        },
        RegDef {
            name: "mappable_gmadr.size",
            offset: APERTURE_SIZE,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h avail_rs",
        },
        RegDef {
            name: "nonmappable_gmadr.base",
            offset: HIDDEN_BASE,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h avail_rs",
        },
        RegDef {
            name: "nonmappable_gmadr.size",
            offset: HIDDEN_SIZE,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h avail_rs",
        },
        RegDef {
            name: "fence_num",
            offset: FENCE_NUM,
            access: HwAccess::ReadOnly,
            source: "i915_pvinfo.h avail_rs",
        },
        RegDef {
            name: "display_ready",
            offset: DISPLAY_READY,
            access: HwAccess::ReadWrite,
            source: "i915_pvinfo.h vgt_if.display_ready",
        },
        RegDef {
            name: "g2v_notify",
            offset: G2V_NOTIFY,
            access: HwAccess::WriteOnly,
            source: "i915_pvinfo.h vgt_if.g2v_notify",
        },
        RegDef {
            name: "execlist_context_descriptor_lo",
            offset: EXECLIST_DESC_LO,
            access: HwAccess::ReadWrite,
            source: "i915_pvinfo.h",
        },
        RegDef {
            name: "execlist_context_descriptor_hi",
            offset: EXECLIST_DESC_HI,
            access: HwAccess::ReadWrite,
            source: "i915_pvinfo.h",
        },
    ];
    const _: () = assert!(offsets_strictly_increasing(&LAYOUT));
}

/// Whether `offset` is a register of `engine`'s ring block, and which.
pub fn ring_register_of(offset: MmioOffset) -> Option<(Engine, u32)> {
    Engine::ALL.iter().find_map(|&e| {
        let base = e.mmio_base();
        let raw = offset.raw();
        (raw >= base && raw < base + 0x800).then(|| (e, raw - base))
    })
}

/// Which forcewake domains a register needs awake to be reached (Gen9),
/// i915 `intel_uncore.c` `__gen9_fw_ranges`: i915's "GT" domain is the one
/// [`forcewake::Domain::Blitter`] names (request 0xa188, ack 0x130044).
/// Registers outside every range (the uncore range, the GGTT window, the
/// fences, PVINFO, display) need none.
pub mod fw_ranges {
    use super::forcewake::Domain;

    /// Render domain.
    pub const RENDER: u8 = 1 << 0;
    /// Media domain.
    pub const MEDIA: u8 = 1 << 1;
    /// i915's GT domain (the blitter and the common GT registers).
    pub const GT: u8 = 1 << 2;

    /// The bit of a domain in a set.
    pub const fn bit(domain: Domain) -> u8 {
        match domain {
            Domain::Render => RENDER,
            Domain::Media => MEDIA,
            Domain::Blitter => GT,
        }
    }

    /// (first, last, domains), ascending, as i915 lists them for Gen9.
    pub const GEN9: [(u32, u32, u8); 33] = [
        (0x0, 0xaff, GT),
        (0xb00, 0x1fff, 0),
        (0x2000, 0x26ff, RENDER),
        (0x2700, 0x2fff, GT),
        (0x3000, 0x3fff, RENDER),
        (0x4000, 0x51ff, GT),
        (0x5200, 0x7fff, RENDER),
        (0x8000, 0x812f, GT),
        (0x8130, 0x813f, MEDIA),
        (0x8140, 0x815f, RENDER),
        (0x8160, 0x82ff, GT),
        (0x8300, 0x84ff, RENDER),
        (0x8500, 0x87ff, GT),
        (0x8800, 0x89ff, MEDIA),
        (0x8a00, 0x8bff, GT),
        (0x8c00, 0x8cff, RENDER),
        (0x8d00, 0x93ff, GT),
        (0x9400, 0x97ff, RENDER | MEDIA),
        (0x9800, 0xafff, GT),
        (0xb000, 0xb47f, RENDER),
        (0xb480, 0xcfff, GT),
        (0xd000, 0xd7ff, MEDIA),
        (0xd800, 0xdfff, GT),
        (0xe000, 0xe8ff, RENDER),
        (0xe900, 0x11fff, GT),
        (0x12000, 0x13fff, MEDIA),
        (0x14000, 0x19fff, GT),
        (0x1a000, 0x1e9ff, MEDIA),
        (0x1ea00, 0x243ff, GT),
        (0x24400, 0x247ff, RENDER),
        (0x24800, 0x2ffff, GT),
        (0x30000, 0x3ffff, MEDIA),
        (0x40000, 0x7f_ffff, 0),
    ];

    /// The domains register `offset` needs.
    pub fn domains_of(offset: u32) -> u8 {
        GEN9.iter()
            .find(|&&(first, last, _)| offset >= first && offset <= last)
            .map_or(0, |&(_, _, d)| d)
    }
}

/// Registers of the engine block beyond [`ring`]'s table that the
/// real-device backend programs (i915 `gt/intel_engine_regs.h`).
pub mod engine_ctl {
    /// RING_EMR: error mask (base + 0xb4).
    pub const EMR: u32 = 0xb4;
    /// RING_ESR: error status (base + 0xb8).
    pub const ESR: u32 = 0xb8;
    /// RING_RESET_CTL (masked, base + 0xd0).
    pub const RESET_CTL: u32 = 0xd0;
    /// RESET_CTL: software asks the engine to get ready for reset.
    pub const REQUEST_RESET: u32 = 1 << 0;
    /// RESET_CTL: the engine is ready to be reset.
    pub const READY_TO_RESET: u32 = 1 << 1;
    /// RING_MI_MODE STOP_RING (masked).
    pub const STOP_RING: u32 = 1 << 8;
    /// RING_MI_MODE MODE_IDLE (read only): the command streamer stopped.
    pub const MODE_IDLE: u32 = 1 << 9;
    /// RING_HWSTAM: which status-page writes the engine makes (base + 0x98).
    pub const HWSTAM: u32 = 0x98;
    /// RING_EIR / ESR bit of an invalid instruction (i915
    /// `I915_ERROR_INSTRUCTION`).
    pub const ERROR_INSTRUCTION: u32 = 1 << 0;
    /// The CSB read and write pointers software sets after a reset, so
    /// that the first entry the hardware writes (entry 0) is the next one
    /// read (i915 `reset_csb_pointers`).
    pub const CSB_RESET_VALUE: u32 = super::ring::CSB_ENTRIES - 1;
    /// RING_CONTEXT_STATUS_PTR as hardware leaves it after a reset: both
    /// pointers at 7, outside the 6 entries, until software writes them.
    pub const CSB_PTR_AFTER_RESET: u32 = 0x0707;
    /// CSB entry status: the engine left idle for an element (i915
    /// `GEN8_CTX_STATUS_IDLE_ACTIVE`).
    pub const CSB_STATUS_IDLE_ACTIVE: u32 = 1 << 0;
}

/// PCI configuration space of the GPU function (PCI spec; i915
/// `SNB_GMCH_CTRL`, `BDW_GMCH_GGMS_SHIFT`/`_MASK`).
pub mod pci {
    /// Vendor id (15:0) and device id (31:16).
    pub const ID: u16 = 0x00;
    /// Command (15:0) and status (31:16).
    pub const COMMAND: u16 = 0x04;
    /// Command: memory space decoding.
    pub const COMMAND_MEMORY: u32 = 1 << 1;
    /// Command: bus master (the GPU may read and write memory).
    pub const COMMAND_BUS_MASTER: u32 = 1 << 2;
    /// GMCH graphics control (16 bit, in the dword at 0x50).
    pub const GMCH_CTRL: u16 = 0x50;
    /// GGTT size field, bits 7:6: 0 none, else `1 << field` MiB of PTEs.
    pub const GMCH_GGMS_SHIFT: u32 = 6;
    /// Its mask (after the shift).
    pub const GMCH_GGMS_MASK: u32 = 0x3;

    /// Bytes of GGTT entries `gmch_ctrl` declares (i915
    /// `gen8_get_total_gtt_size`).
    pub const fn ggtt_bytes(gmch_ctrl: u32) -> u32 {
        let ggms = (gmch_ctrl >> GMCH_GGMS_SHIFT) & GMCH_GGMS_MASK;
        if ggms == 0 {
            0
        } else {
            (1 << ggms) << 20
        }
    }
}

/// GPU caching set-up (i915 `gt/intel_gtt.c` `bdw_setup_private_ppat`,
/// `gt/intel_mocs.c` `skl_mocs_table`).
pub mod caching {
    use super::MmioOffset;
    use crate::engine::Engine;

    /// GEN8_PRIVATE_PAT_LO / _HI.
    pub const PAT_LO: MmioOffset = MmioOffset::reg(0x40e0);
    /// High half.
    pub const PAT_HI: MmioOffset = MmioOffset::reg(0x40e4);
    /// The eight PAT entries as i915 sets them on Gen9: 0 WB LLC, 1 WC
    /// LLC/eLLC, 2 WB eLLC override, 3 UC, 4..7 WB LLC/eLLC age 0..3.
    pub const PAT: u64 = 0x3b2b_1b0b_0003_0907;
    /// MOCS entries per engine (GEN9_NUM_MOCS_ENTRIES).
    pub const MOCS_ENTRIES: u32 = 64;
    /// GEN9_LNCFCMOCS(i): the L3 control of two entries per register.
    pub const fn l3cc(i: u32) -> MmioOffset {
        MmioOffset::reg(0xb020 + 4 * i)
    }
    /// The engine's MOCS control registers (`__GEN9_*_MOCS0`).
    pub const fn mocs(engine: Engine, i: u32) -> MmioOffset {
        let base = match engine {
            Engine::Render => 0xc800,
            Engine::Video => 0xc900,
            Engine::VideoEnhance => 0xcb00,
            Engine::Blitter => 0xcc00,
        };
        MmioOffset::reg(base + 4 * i)
    }
    /// (control, l3cc) of MOCS entry `i`: 0 uncached, 1 as the PTE says
    /// (also every entry the table leaves unused), 2 cached, 63 the L3's
    /// eviction entry.
    pub const fn mocs_entry(i: u32) -> (u32, u16) {
        match i {
            0 => (0x09, 0x10),
            2 => (0x3b, 0x30),
            63 => (0x37, 0x10),
            _ => (0x30, 0x30),
        }
    }
}

/// The hardware engine id, as RING_FAULT_REG bits 14:12 name the engine
/// (i915 `RCS_HW` 0, `VCS_HW` 1, `BCS_HW` 2, `VECS_HW` 3): not the
/// project's engine index.
pub const fn hw_engine_id(engine: Engine) -> u32 {
    match engine {
        Engine::Render => 0,
        Engine::Video => 1,
        Engine::Blitter => 2,
        Engine::VideoEnhance => 3,
    }
}

/// The Gen9 logical ring context's register state page (i915
/// `gt/intel_lrc.c` `gen9_rcs_offsets` / `gen9_xcs_offsets`, and
/// `intel_lrc_reg.h`): blocks of MI_LOAD_REGISTER_IMM, each followed by
/// (register, value) pairs, at fixed dwords. Render and the other
/// engines differ in the third block (R_PWR_CLK_STATE, not posted, on
/// render; 0x200 posted elsewhere).
pub mod lrc {
    use crate::engine::Engine;

    /// One MI_LOAD_REGISTER_IMM block: its dword, whether it is posted,
    /// and the engine-relative registers it loads.
    #[derive(Clone, Copy, Debug)]
    pub struct Block {
        /// Dword of the LRI header.
        pub at: usize,
        /// MI_LRI_FORCE_POSTED.
        pub posted: bool,
        /// Registers (relative to the engine base).
        pub regs: &'static [u32],
    }

    const RING: [u32; 14] = [
        0x244, 0x34, 0x30, 0x38, 0x3c, 0x168, 0x140, 0x110, 0x11c, 0x114, 0x118, 0x1c0, 0x1c4,
        0x1c8,
    ];
    const PDPS: [u32; 9] = [
        0x3a8, 0x28c, 0x288, 0x284, 0x280, 0x27c, 0x278, 0x274, 0x270,
    ];
    const RCS_PWR: [u32; 1] = [0xc8];
    const XCS_200: [u32; 1] = [0x200];
    const STATE: [u32; 44] = [
        0x28, 0x9c, 0xc0, 0x178, 0x17c, 0x358, 0x170, 0x150, 0x154, 0x158, 0x41c, 0x600, 0x604,
        0x608, 0x60c, 0x610, 0x614, 0x618, 0x61c, 0x620, 0x624, 0x628, 0x62c, 0x630, 0x634, 0x638,
        0x63c, 0x640, 0x644, 0x648, 0x64c, 0x650, 0x654, 0x658, 0x65c, 0x660, 0x664, 0x668, 0x66c,
        0x670, 0x674, 0x678, 0x67c, 0x68,
    ];

    /// The blocks of `engine`'s image.
    pub const fn blocks(engine: Engine) -> [Block; 4] {
        let third = match engine {
            Engine::Render => Block {
                at: 0x41,
                posted: false,
                regs: &RCS_PWR,
            },
            _ => Block {
                at: 0x41,
                posted: true,
                regs: &XCS_200,
            },
        };
        [
            Block {
                at: 0x01,
                posted: true,
                regs: &RING,
            },
            Block {
                at: 0x21,
                posted: true,
                regs: &PDPS,
            },
            third,
            Block {
                at: 0x51,
                posted: true,
                regs: &STATE,
            },
        ]
    }

    /// MI_LOAD_REGISTER_IMM of `count` registers.
    pub const fn lri(count: usize, posted: bool) -> u32 {
        (0x22 << 23) | if posted { FORCE_POSTED } else { 0 } | (2 * count as u32 - 1)
    }
    /// MI_LRI_FORCE_POSTED.
    pub const FORCE_POSTED: u32 = 1 << 12;

    /// Value dwords (i915 `CTX_*`: the register's dword plus one).
    pub const CONTEXT_CONTROL: usize = 0x03;
    /// RING_HEAD value.
    pub const RING_HEAD: usize = 0x05;
    /// RING_TAIL value.
    pub const RING_TAIL: usize = 0x07;
    /// RING_START value.
    pub const RING_START: usize = 0x09;
    /// RING_CTL value.
    pub const RING_CTL: usize = 0x0b;
    /// PDP0 (the PML4 of a 4-level PPGTT) upper and lower dwords.
    pub const PDP0_UDW: usize = 0x31;
    /// Lower dword.
    pub const PDP0_LDW: usize = 0x33;
    /// RING_MI_MODE value (i915 `GEN9_CTX_RING_MI_MODE` + 1).
    pub const MI_MODE: usize = 0x55;
    /// Dwords the blocks span (the last block's end).
    pub const DWORDS: usize = 0x51 + 1 + 2 * 44;

    /// CONTEXT_CONTROL: do not restore the engine state from the image
    /// (a context the hardware never saved).
    pub const CTX_CTRL_RESTORE_INHIBIT: u32 = 1 << 0;
    /// CONTEXT_CONTROL: do not save the engine state.
    pub const CTX_CTRL_SAVE_INHIBIT: u32 = 1 << 2;
    /// CONTEXT_CONTROL: resource streamer context.
    pub const CTX_CTRL_RS_CTX_ENABLE: u32 = 1 << 1;
    /// CONTEXT_CONTROL: inhibit synchronous context switch.
    pub const CTX_CTRL_INHIBIT_SYN_CTX_SWITCH: u32 = 1 << 3;

    /// Descriptor bits (i915 `GEN8_CTX_*`).
    pub const DESC_VALID: u32 = 1 << 0;
    /// Force restore (i915 `CTX_DESC_FORCE_RESTORE`).
    pub const DESC_FORCE_RESTORE: u32 = 1 << 2;
    /// Addressing mode field, bits 4:3.
    pub const DESC_ADDRESSING_SHIFT: u32 = 3;
    /// Legacy 32-bit (GGTT / 3-level) addressing.
    pub const DESC_LEGACY_32B: u32 = 1 << DESC_ADDRESSING_SHIFT;
    /// Legacy 64-bit (4-level PPGTT) addressing.
    pub const DESC_LEGACY_64B: u32 = 3 << DESC_ADDRESSING_SHIFT;
    /// Privileged context.
    pub const DESC_PRIVILEGE: u32 = 1 << 8;
    /// Context id: the descriptor's upper dword, 21 bits
    /// (`GEN8_CTX_ID_WIDTH`).
    pub const CONTEXT_ID_MASK: u32 = (1 << 21) - 1;
}
