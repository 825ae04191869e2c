//! Declared graphics-address operands of the GFXPIPE (3D, media) and video
//! (MFX, HCP, VDENC, HUC) commands: where each address sits in the command,
//! how many bytes the hardware may touch from it, and whether it writes.
//!
//! The scanner audits and remaps every field of a command's [`Layout`] the
//! same way ([`super::scanner`]); the conformance test
//! (`gpu/tests/scan_conformance.rs`) checks that every `type="address"`
//! field genxml declares for a command is covered by that command's layout,
//! so a layout cannot silently miss an operand.
//!
//! Field positions are genxml `gen9.xml` (DWord, low bit) and PRM vol 2a.
//!
//! # Extents
//!
//! - Where the command states a size (vertex/index buffer size, stream-out
//!   surface size, constant buffer read length, pool size, HuC DMEM
//!   length), the audited range is exactly that.
//! - Where the command pairs a base with an upper-bound address (MFX/HCP/HUC
//!   indirect objects), the audited range is `[base, bound)`, and the bound
//!   is remapped with the base. A zero bound disables the hardware's check,
//!   so the range is then bounded by the slice (below).
//! - Where the hardware gives no extent from the command alone (depth,
//!   stencil and HiZ surfaces, video pictures, row stores, stream-outs,
//!   HuC regions), the extent is [`Extent::Slice`]: from the address to the
//!   end of the vGPU slice holding it. The address must lie inside a slice;
//!   the surface is assumed not to run past that slice's end, and it is
//!   recorded as a write target of the whole rest of the slice (which
//!   overflows the write set, so migration treats all of the vGPU's memory
//!   as possibly written). This is the conservative choice the monitor can
//!   make without parsing surface layouts; a surface larger than the rest
//!   of its slice is the one thing it cannot see.
//! - Offsets that genxml types as addresses but that the hardware adds to an
//!   audited base and checks against that base's bound (scratch space from
//!   General State Base, MEDIA_OBJECT indirect data from Indirect Object
//!   Base, HUC_STREAM_OBJECT from the HuC indirect bases) are [`Relative`]:
//!   nothing to remap, listed so the conformance test sees them covered.
//!
//! # Absolute constant buffers
//!
//! 3DSTATE_CONSTANT_* buffer 0 is absolute only while CS_DEBUG_MODE2
//! "Constant Buffer Address Offset Disable" is set (else it is an offset
//! from Dynamic State Base). Guests may write the register only keeping
//! the bit set ([`super::regs`]); the monitor's render prologue sets it,
//! and the scanner treats all four buffers as absolute addresses.
//!
//! # Disabled operands and zero
//!
//! A field whose command says it is unused ([`When`]: null vertex buffer,
//! disabled stream-out buffer, SURFTYPE_NULL depth buffer, disabled stencil
//! or pool, zero read length) is neither audited nor rewritten: the hardware
//! does not access it. Every other address, zero included, must lie inside
//! the vGPU's slices; a guest points an operand it does not use at its own
//! memory.
//!
//! # Memory-resident state
//!
//! Addresses held in memory rather than in the command stream (surface
//! states, which binding tables name as offsets from Surface State Base;
//! interface descriptors; sampler border colours) are outside the command
//! scanner's reach. Offsets into the state heaps are bounded by the heap
//! bases and sizes that STATE_BASE_ADDRESS sets and the scanner audits; the
//! absolute addresses inside RENDER_SURFACE_STATE are not, and contain a
//! residual risk until surface states are parsed or each vGPU runs under its
//! own PPGTT (see README.md, "Known limits").

/// Bits of the address held in the DWord after the low one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum High {
    /// 32-bit address: no high DWord.
    None,
    /// 48-bit address: the next DWord's bits 15:0 (its upper bits are other
    /// fields and are kept).
    Bits16,
    /// 64-bit address: the whole next DWord.
    Bits32,
}

/// How many bytes the hardware may touch from an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Extent {
    /// A fixed number of bytes.
    Bytes(u32),
    /// `(field + plus) * unit` bytes, `field` = DWord `dword` bits
    /// `shift + bits - 1 : shift` (DWord relative to the group element).
    /// A product of 0 means the operand is not accessed.
    Field {
        /// DWord holding the size.
        dword: u8,
        /// Lowest bit of the size field.
        shift: u8,
        /// Width of the size field.
        bits: u8,
        /// Bytes per unit.
        unit: u32,
        /// Added to the field before scaling (1 for "size minus one").
        plus: u8,
    },
    /// A size in pages (bits 31:12 of DWord `dword`, command-relative),
    /// where zero may mean "the largest size": bounded by the slice then.
    PagesOrSlice {
        /// DWord holding the size.
        dword: u8,
    },
    /// Up to the absolute upper-bound address in DWords `dword`, `dword+1`
    /// (64-bit), which is remapped together with the base; a zero bound
    /// disables the check and the extent is the slice.
    UpperBound {
        /// Low DWord of the bound.
        dword: u8,
    },
    /// Unknown: to the end of the slice holding the address.
    Slice,
}

/// Whether the hardware reads or may write the memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Only read.
    Read,
    /// May be written (recorded as a write target).
    Write,
}

/// When a field is in use (DWords relative to the group element).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum When {
    /// Always.
    Always,
    /// When bit `.1` of DWord `.0` is set.
    Set(u8, u8),
    /// When bit `.1` of DWord `.0` is clear.
    Clear(u8, u8),
    /// When the surface type (bits 31:29 of DWord `.0`) is not SURFTYPE_NULL.
    NotNullSurface(u8),
    /// When any bit of mask `.1` in DWord `.0` is set.
    AnySet(u8, u32),
}

/// One absolute graphics-address field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrField {
    /// Name as in genxml.
    pub name: &'static str,
    /// Low DWord of the address (relative to the group element).
    pub dword: u8,
    /// Lowest address bit in the low DWord; bits below are flags, kept.
    pub shift: u8,
    /// Where the high bits are.
    pub high: High,
    /// Bytes touched.
    pub extent: Extent,
    /// Read or write.
    pub access: Access,
    /// Condition for the field to be used.
    pub when: When,
    /// A bit (DWord, bit) that must be set when the field is used: the
    /// hardware otherwise keeps an earlier, unaudited value.
    pub must: Option<(u8, u8)>,
}

/// A genxml "address" that is really an offset from an audited base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Relative {
    /// Name as in genxml.
    pub name: &'static str,
    /// DWord of the field.
    pub dword: u8,
    /// Its lowest bit.
    pub shift: u8,
    /// The base it is relative to.
    pub base: &'static str,
}

/// A repeated structure: elements of `stride` DWords from DWord `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    /// First DWord of element 0.
    pub start: u8,
    /// DWords per element.
    pub stride: u8,
    /// Fixed element count, or 0: as many whole elements as the command
    /// holds (a partial element is malformed).
    pub count: u8,
}

/// The address operands of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Fields at fixed positions.
    pub fields: &'static [AddrField],
    /// Fields repeated per group element (positions element-relative).
    pub group: Option<(Group, &'static [AddrField])>,
    /// Offsets from audited bases (nothing to rewrite).
    pub relative: &'static [Relative],
    /// Fields that address engine-internal memory, not GM (HuC DMEM).
    pub internal: &'static [(u8, u8)],
}

impl Layout {
    /// Whether the layout accounts for the genxml address field whose low
    /// bit is at DWord `dword`, bit `bit` of the command. Group fields
    /// count at every element position.
    pub fn describes(&self, dword: u32, bit: u32) -> bool {
        let at = |d: u8, s: u8| u32::from(d) == dword && u32::from(s) == bit;
        if self.fields.iter().any(|f| at(f.dword, f.shift))
            || self.relative.iter().any(|r| at(r.dword, r.shift))
            || self.internal.iter().any(|&(d, s)| at(d, s))
            || self.fields.iter().any(|f| bound_at(f, dword, bit))
        {
            return true;
        }
        if let Some((g, fs)) = self.group {
            if dword < u32::from(g.start) {
                return false;
            }
            let rel = (dword - u32::from(g.start)) % u32::from(g.stride);
            let elem = (dword - u32::from(g.start)) / u32::from(g.stride);
            if g.count != 0 && elem >= u32::from(g.count) {
                return false;
            }
            return fs
                .iter()
                .any(|f| u32::from(f.dword) == rel && u32::from(f.shift) == bit);
        }
        false
    }
}

fn bound_at(f: &AddrField, dword: u32, bit: u32) -> bool {
    matches!(f.extent, Extent::UpperBound { dword: d } if u32::from(d) == dword && bit == 0)
}

const fn f(
    name: &'static str,
    dword: u8,
    shift: u8,
    high: High,
    extent: Extent,
    access: Access,
) -> AddrField {
    AddrField {
        name,
        dword,
        shift,
        high,
        extent,
        access,
        when: When::Always,
        must: None,
    }
}

const fn when(mut a: AddrField, w: When) -> AddrField {
    a.when = w;
    a
}

const fn rel(name: &'static str, dword: u8, shift: u8, base: &'static str) -> Relative {
    Relative {
        name,
        dword,
        shift,
        base,
    }
}

use Access::{Read, Write};
use Extent::Slice;
use High::{Bits16, Bits32};

const fn layout(fields: &'static [AddrField]) -> Layout {
    Layout {
        fields,
        group: None,
        relative: &[],
        internal: &[],
    }
}

const fn relative_only(relative: &'static [Relative]) -> Layout {
    Layout {
        fields: &[],
        group: None,
        relative,
        internal: &[],
    }
}

/// A 64-bit surface address with a slice-bounded extent.
const fn surf(name: &'static str, dword: u8, access: Access) -> AddrField {
    f(name, dword, 0, Bits32, Slice, access)
}
/// A 48-bit (bits 47:6) video buffer address with a slice-bounded extent.
const fn buf48(name: &'static str, dword: u8, access: Access) -> AddrField {
    f(name, dword, 6, Bits16, Slice, access)
}
const fn bound(name: &'static str, dword: u8, bound: u8, access: Access) -> AddrField {
    f(
        name,
        dword,
        0,
        Bits32,
        Extent::UpperBound { dword: bound },
        access,
    )
}

// ---- 3D ----

/// 3DSTATE_VERTEX_BUFFERS: VERTEX_BUFFER_STATE elements of 4 DWords from
/// DWord 1 (address DWord 1-2, size in bytes DWord 3; bit 13 null buffer;
/// bit 14 address modify enable must be set).
pub static VERTEX_BUFFERS: Layout = Layout {
    fields: &[],
    group: Some((
        Group {
            start: 1,
            stride: 4,
            count: 0,
        },
        &[AddrField {
            name: "Buffer Starting Address",
            dword: 1,
            shift: 0,
            high: Bits32,
            extent: Extent::Field {
                dword: 3,
                shift: 0,
                bits: 32,
                unit: 1,
                plus: 0,
            },
            access: Read,
            when: When::Clear(0, 13),
            must: Some((0, 14)),
        }],
    )),
    relative: &[],
    internal: &[],
};

/// 3DSTATE_INDEX_BUFFER: DWord 2-3 address, DWord 4 size in bytes.
pub static INDEX_BUFFER: Layout = layout(&[f(
    "Buffer Starting Address",
    2,
    0,
    Bits32,
    Extent::Field {
        dword: 4,
        shift: 0,
        bits: 32,
        unit: 1,
        plus: 0,
    },
    Read,
)]);

/// 3DSTATE_DEPTH_BUFFER: DWord 2-3; unused when the surface type is NULL.
pub static DEPTH_BUFFER: Layout = layout(&[when(
    surf("Surface Base Address", 2, Write),
    When::NotNullSurface(1),
)]);

/// 3DSTATE_HIER_DEPTH_BUFFER: DWord 2-3 (enabled from the depth buffer
/// command, so always audited).
pub static HIER_DEPTH_BUFFER: Layout = layout(&[surf("Surface Base Address", 2, Write)]);

/// 3DSTATE_STENCIL_BUFFER: DWord 2-3; DWord 1 bit 31 enables it.
pub static STENCIL_BUFFER: Layout = layout(&[when(
    surf("Surface Base Address", 2, Write),
    When::Set(1, 31),
)]);

/// 3DSTATE_SO_BUFFER: surface DWord 2-3 (bits 47:2) of (DWord 4 + 1)
/// DWords, enabled by DWord 1 bit 31; the write-offset address DWord 5-6
/// (4 bytes), enabled by DWord 1 bit 20.
pub static SO_BUFFER: Layout = layout(&[
    when(
        f(
            "Surface Base Address",
            2,
            2,
            Bits16,
            Extent::Field {
                dword: 4,
                shift: 0,
                bits: 30,
                unit: 4,
                plus: 1,
            },
            Write,
        ),
        When::Set(1, 31),
    ),
    when(
        f(
            "Stream Output Buffer Offset Address",
            5,
            2,
            Bits16,
            Extent::Bytes(4),
            Write,
        ),
        When::Set(1, 20),
    ),
]);

const fn constant(dword: u8, len_dword: u8, len_shift: u8) -> AddrField {
    f(
        "Buffer",
        dword,
        5,
        Bits32,
        Extent::Field {
            dword: len_dword,
            shift: len_shift,
            bits: 16,
            unit: 32,
            plus: 0,
        },
        Read,
    )
}

/// 3DSTATE_CONSTANT_{VS,HS,DS,GS,PS}: four buffers at DWords 3, 5, 7, 9
/// (bits 63:5), read lengths in 32-byte units at DWord 1 (15:0, 31:16)
/// and DWord 2 (15:0, 31:16).
pub static CONSTANT: Layout = layout(&[
    constant(3, 1, 0),
    constant(5, 1, 16),
    constant(7, 2, 0),
    constant(9, 2, 16),
]);

/// 3DSTATE_BINDING_TABLE_POOL_ALLOC: base DWord 1-2 (bits 63:12), size in
/// pages DWord 3 bits 31:12, enabled by DWord 1 bit 11.
pub static BINDING_TABLE_POOL: Layout = layout(&[when(
    f(
        "Binding Table Pool Base Address",
        1,
        12,
        Bits32,
        Extent::PagesOrSlice { dword: 3 },
        Read,
    ),
    When::Set(1, 11),
)]);

/// 3DSTATE_GATHER_POOL_ALLOC: same layout as the binding table pool.
pub static GATHER_POOL: Layout = layout(&[when(
    f(
        "Gather Pool Base Address",
        1,
        12,
        Bits32,
        Extent::PagesOrSlice { dword: 3 },
        Read,
    ),
    When::Set(1, 11),
)]);

/// STATE_PREFETCH: 32-bit pointer DWord 1 bits 31:6, (count + 1) cache
/// lines of 64 bytes (count: DWord 1 bits 2:0).
pub static STATE_PREFETCH: Layout = layout(&[f(
    "Prefetch Pointer",
    1,
    6,
    High::None,
    Extent::Field {
        dword: 1,
        shift: 0,
        bits: 3,
        unit: 64,
        plus: 1,
    },
    Read,
)]);

const GENERAL: &str = "General State Base Address";

/// 3DSTATE_VS / GS / DS / PS: scratch space (DWord 4, bits 63:10) is an
/// offset from General State Base.
pub static SCRATCH_DW4: Layout =
    relative_only(&[rel("Scratch Space Base Pointer", 4, 10, GENERAL)]);
/// 3DSTATE_HS: scratch space at DWord 5.
pub static SCRATCH_DW5: Layout =
    relative_only(&[rel("Scratch Space Base Pointer", 5, 10, GENERAL)]);
/// MEDIA_VFE_STATE: scratch space at DWord 1.
pub static SCRATCH_DW1: Layout =
    relative_only(&[rel("Scratch Space Base Pointer", 1, 10, GENERAL)]);
/// MEDIA_OBJECT / MEDIA_OBJECT_GRPID: DWord 3 is an offset from Indirect
/// Object Base, bounded by the indirect object size.
pub static MEDIA_OBJECT: Layout = relative_only(&[rel(
    "Indirect Data Start Address",
    3,
    0,
    "Indirect Object Base Address",
)]);

// ---- video: MFX ----

/// MFX_PIPE_BUF_ADDR_STATE (bits 47:6 buffers, 64-bit reference pictures).
pub static MFX_PIPE_BUF_ADDR: Layout = layout(&[
    buf48("Pre Deblocking Destination - Address", 1, Write),
    buf48("Post Deblocking Destination - Address", 4, Write),
    buf48("Original Uncompressed Picture Source - Address", 7, Read),
    buf48("Stream-Out Data Destination - Address", 10, Write),
    buf48("Intra Row Store Scratch Buffer - Address", 13, Write),
    buf48("Deblocking Filter Row Store Scratch - Address", 16, Write),
    surf("Reference Picture - Address", 19, Read),
    surf("Reference Picture - Address", 21, Read),
    surf("Reference Picture - Address", 23, Read),
    surf("Reference Picture - Address", 25, Read),
    surf("Reference Picture - Address", 27, Read),
    surf("Reference Picture - Address", 29, Read),
    surf("Reference Picture - Address", 31, Read),
    surf("Reference Picture - Address", 33, Read),
    surf("Reference Picture - Address", 35, Read),
    surf("Reference Picture - Address", 37, Read),
    surf("Reference Picture - Address", 39, Read),
    surf("Reference Picture - Address", 41, Read),
    surf("Reference Picture - Address", 43, Read),
    surf("Reference Picture - Address", 45, Read),
    surf("Reference Picture - Address", 47, Read),
    surf("Reference Picture - Address", 49, Read),
    buf48("MB Status Buffer - Address", 52, Write),
    buf48("MB ILDB Stream-Out Buffer - Address", 55, Write),
    buf48("Second MB ILDB Stream-Out Buffer - Address", 58, Write),
    buf48("Scaled Reference Surface - Address", 62, Write),
    // Beyond genxml's 65-DWord length: audited when present.
    buf48("SliceSize Stream-Out Data Destination - Address", 65, Write),
]);

/// MFX_IND_OBJ_BASE_ADDR_STATE: five base / upper-bound pairs.
pub static MFX_IND_OBJ_BASE_ADDR: Layout = layout(&[
    bound("MFX Indirect Bitstream Object - Address", 1, 4, Write),
    bound("MFX Indirect MV Object - Address", 6, 9, Write),
    bound("MFD Indirect IT-COEFF Object - Address", 11, 14, Read),
    bound("MFD Indirect IT-DBLK Object - Address", 16, 19, Read),
    bound("MFC Indirect PAK-BSE Object - Address", 21, 24, Write),
]);

/// MFX_BSP_BUF_BASE_ADDR_STATE: row stores and the bitplane buffer.
pub static MFX_BSP_BUF_BASE_ADDR: Layout = layout(&[
    buf48("BSD/MPC Row Store Scratch Buffer - Address", 1, Write),
    buf48("MPR Row Store Scratch Buffer - Address", 4, Write),
    buf48("Bitplane Read Buffer - Address", 7, Read),
]);

/// MFX_DBK_OBJECT.
pub static MFX_DBK_OBJECT: Layout = layout(&[
    buf48("Pre Deblocking Source - Address", 1, Read),
    buf48("Deblocking Control - Address", 4, Read),
    buf48("Deblocking Destination - Address", 7, Write),
    buf48("Deblock Row Store - Address", 10, Write),
]);

/// MFX_AVC_DIRECTMODE_STATE: 16 direct MV buffers read, one written.
pub static MFX_AVC_DIRECTMODE: Layout = Layout {
    fields: &[surf("Direct MV Buffer (Write) - Address", 34, Write)],
    group: Some((
        Group {
            start: 1,
            stride: 2,
            count: 16,
        },
        &[surf("Direct MV Buffer - Address", 0, Read)],
    )),
    relative: &[],
    internal: &[],
};

/// MFX_VC1_DIRECTMODE_STATE.
pub static MFX_VC1_DIRECTMODE: Layout = layout(&[
    surf("Direct MV Write Buffer - Address", 1, Write),
    surf("Direct MV Read Buffer - Address", 4, Read),
]);

/// MFX_VP8_BSP_BUF_BASE_ADDR_STATE (fields present up to the command's
/// length).
pub static MFX_VP8_BSP_BUF_BASE_ADDR: Layout = layout(&[
    surf("Frame Header - Address", 1, Read),
    surf("Intermediate Buffer - Address", 4, Write),
    surf("Final Frame - Address", 16, Write),
    surf("Stream-Out - Address", 20, Write),
    surf("Coeff Probs Stream-In Surface - Address", 23, Read),
    surf("Token Statistics Surface - Address", 26, Write),
    surf("MPC Row Store Surface - Address", 29, Write),
]);

/// MFX_VP8_PIC_STATE (38 DWords on Gen9, media-driver and genxml's fields;
/// genxml types both addresses `uint`): the coefficient probability table
/// it reads (4 x 8 x 3 x 11 bytes, media-driver
/// `m_codechalDecodeVp8CoeffprobTableSize`) and the segmentation ID stream
/// it reads or writes (DW2 bits 7:6 enable stream-in / stream-out).
pub static MFX_VP8_PIC_STATE: Layout = layout(&[
    f(
        "CoeffProbability Stream-In - Address",
        16,
        6,
        Bits16,
        Extent::Bytes(4 * 8 * 3 * 11),
        Read,
    ),
    when(
        f(
            "Segmentation ID Stream - Address",
            35,
            0,
            Bits16,
            Slice,
            Write,
        ),
        When::AnySet(2, 3 << 6),
    ),
]);

// ---- video: VDENC, HCP, HUC ----

/// VDENC_PIPE_BUF_ADDR_STATE.
pub static VDENC_PIPE_BUF_ADDR: Layout = layout(&[
    surf("DS FWD REF0.Address", 1, Read),
    surf("DS FWD REF1.Address", 4, Read),
    surf("Original Uncompressed Picture.Address", 10, Read),
    surf("Stream-In Data Picture.Address", 13, Read),
    surf("Row Store Scratch Buffer.Address", 16, Write),
    surf("Colocated MV Read Buffer.Address", 19, Read),
    surf("FWD REF0.Address", 22, Read),
    surf("FWD REF1.Address", 25, Read),
    surf("FWD REF2.Address", 28, Read),
    surf("BWD REF0.Address", 31, Read),
    surf("VDEnc Statistics Stream-Out.Address", 34, Write),
]);

/// HCP_PIPE_BUF_ADDR_STATE.
pub static HCP_PIPE_BUF_ADDR: Layout = layout(&[
    surf("Decoded Picture - Address", 1, Write),
    surf("Deblocking Filter Line Buffer - Address", 4, Write),
    surf("Deblocking Filter Tile Line Buffer - Address", 7, Write),
    surf("Deblocking Filter Tile Column Buffer - Address", 10, Write),
    surf("Metadata Line Buffer - Address", 13, Write),
    surf("Metadata Tile Line Buffer - Address", 16, Write),
    surf("Metadata Tile Column Buffer - Address", 19, Write),
    surf("SAO Line Buffer - Address", 22, Write),
    surf("SAO Tile Line Buffer - Address", 25, Write),
    surf("SAO Tile Column Buffer - Address", 28, Write),
    surf("Current MV Temporal Buffer - Address", 31, Write),
    surf("Reference Picture - Address", 37, Read),
    surf("Reference Picture - Address", 39, Read),
    surf("Reference Picture - Address", 41, Read),
    surf("Reference Picture - Address", 43, Read),
    surf("Reference Picture - Address", 45, Read),
    surf("Reference Picture - Address", 47, Read),
    surf("Reference Picture - Address", 49, Read),
    surf("Reference Picture - Address", 51, Read),
    surf("Original Uncompressed Picture Source - Address", 54, Read),
    surf("Stream-Out Data Destination - Address", 57, Write),
    surf("Decoded Picture Status Buffer - Address", 60, Write),
    surf("LCU ILDB Stream-Out Buffer - Address", 63, Write),
    surf("Collocated MV Temporal Buffer - Address", 66, Read),
    surf("Collocated MV Temporal Buffer - Address", 68, Read),
    surf("Collocated MV Temporal Buffer - Address", 70, Read),
    surf("Collocated MV Temporal Buffer - Address", 72, Read),
    surf("Collocated MV Temporal Buffer - Address", 74, Read),
    surf("Collocated MV Temporal Buffer - Address", 76, Read),
    surf("Collocated MV Temporal Buffer - Address", 78, Read),
    surf("Collocated MV Temporal Buffer - Address", 80, Read),
    surf("VP9 Probability Buffer - Address", 83, Write),
    surf("VP9 HVD Line Row Store Buffer - Address", 89, Write),
    surf("VP9 HVD Tile Row Store Buffer - Address", 92, Write),
]);

/// HCP_IND_OBJ_BASE_ADDR_STATE: bitstream and PAK-BSE with bounds, CU
/// object without.
pub static HCP_IND_OBJ_BASE_ADDR: Layout = layout(&[
    bound("HCP Indirect Bitstream Object - Base Address", 1, 4, Write),
    surf("HCP Indirect CU Object - Base Address", 6, Read),
    bound("HCP PAK-BSE Object - Base Address", 9, 12, Write),
]);

/// HUC_DMEM_STATE: source DWord 1-2 of DWord 5 bits 16:6 bytes; the
/// destination (DWord 4) is an offset in the HuC's own data memory.
pub static HUC_DMEM: Layout = Layout {
    fields: &[f(
        "HUC Data Source - Address",
        1,
        0,
        Bits32,
        Extent::Field {
            dword: 5,
            shift: 6,
            bits: 11,
            unit: 64,
            plus: 0,
        },
        Read,
    )],
    group: None,
    relative: &[],
    internal: &[(4, 6)],
};

/// HUC_VIRTUAL_ADDR_STATE: 16 regions of 3 DWords from DWord 1.
pub static HUC_VIRTUAL_ADDR: Layout = Layout {
    fields: &[],
    group: Some((
        Group {
            start: 1,
            stride: 3,
            count: 16,
        },
        &[surf("Address", 0, Write)],
    )),
    relative: &[],
    internal: &[],
};

/// HUC_IND_OBJ_BASE_ADDR_STATE: stream-in and stream-out with bounds.
pub static HUC_IND_OBJ_BASE_ADDR: Layout = layout(&[
    bound("HUC Indirect Stream-In Object - Address", 1, 4, Read),
    bound("HUC Indirect Stream-Out Object - Address", 6, 9, Write),
]);

/// HUC_STREAM_OBJECT: offsets from the HuC indirect bases.
pub static HUC_STREAM_OBJECT: Layout = relative_only(&[
    rel(
        "Indirect Stream-In - Address",
        2,
        0,
        "HUC Indirect Stream-In Object - Address",
    ),
    rel(
        "Indirect Stream-Out - Address",
        3,
        0,
        "HUC Indirect Stream-Out Object - Address",
    ),
]);
