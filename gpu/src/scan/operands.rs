//! Declared graphics-address operands of the GFXPIPE (3D, media) and video
//! (MFX, HCP, VDENC, HUC, SFC) commands: where each address sits in the
//! command, how many bytes the hardware may touch from it, and whether it
//! writes.
//!
//! The scanner audits and remaps every field of a command's [`Layout`] the
//! same way ([`super::scanner`]). The conformance test
//! (`gpu/tests/scan_conformance.rs`) checks that every genxml field of an
//! accepted command that is named like an address (`*Address*`, `*Base*`,
//! `*Pointer*`, whatever its genxml type: SFC_STATE's output frame is a
//! `uint` there) is covered by that command's layout, by a hand-written
//! operand parser, or by its list of fields that are not addresses, each
//! with its reason; so a layout cannot silently miss an operand.
//!
//! Field positions are genxml `gen9.xml` (DWord, low bit) and PRM vol 2a.
//!
//! # Extents
//!
//! Every extent is computed from the state that defines it; what no state
//! bounds is refused. Where a rule must guess between layouts it takes the
//! larger, so a surface near the end of a slice may be refused although it
//! fits, never accepted although it does not.
//!
//! - **Stated sizes.** Where the command states a size (vertex/index buffer
//!   size, stream-out surface size, constant buffer read length, pool size,
//!   HuC DMEM length), the audited range is exactly that. A pool of size
//!   zero holds "No Valid Data": nothing is accessed, but its base must
//!   translate (it is remapped).
//! - **Bounded objects.** Where the command pairs a base with an
//!   upper-bound address (MFX/HCP/HUC indirect objects), the audited range
//!   is `[base, bound)`, and the bound is remapped with the base. A zero
//!   bound turns the hardware's check off: the base must then translate (it
//!   is remapped), and every command that reads or writes through that
//!   object is refused ([`super::tracked::Consumer::bounded`]), because no
//!   state bounds its offsets.
//! - **Depth, stencil, HiZ** ([`Extent::Surface`], [`super::surface`]).
//!   3DSTATE_DEPTH_BUFFER's surface is its pitch times the rows the
//!   engine reaches: the rendered level's far corner in the Gen9 2D mip
//!   layout (level 1 below level 0, levels 2 and on right of level 1),
//!   each level aligned to 16 samples (the largest alignment Gen9 uses for
//!   depth, stencil or HiZ), plus `QPitch x 4` rows per slice before the
//!   last one the surface's Depth or render target view (Minimum Array
//!   Element + Render Target View Extent) reaches, six faces per cube
//!   element, in whole Y tiles (128 bytes x 32 rows), a row wider than the
//!   pitch spilling into the next tile row. Multisampled depth, stencil and
//!   HiZ buffers interleave their samples (2x: 2 x 1 samples a pixel, 4x: 2
//!   x 2, 8x: 4 x 2, 16x: 4 x 4), so the dimensions are scaled by the
//!   sample count of the submission's last 3DSTATE_MULTISAMPLE before the
//!   buffer, or by 16x when there is none. 1D surfaces (Gen9 renders 1D
//!   depth as 2D), Yf/Ys tiled resources and unknown formats are refused.
//!   3DSTATE_STENCIL_BUFFER and 3DSTATE_HIER_DEPTH_BUFFER give only a pitch
//!   and a QPitch: their dimensions are the depth buffer's, so each must
//!   follow a 3DSTATE_DEPTH_BUFFER in the same submission (as every Mesa
//!   driver and blorp emit them, with 3DSTATE_CLEAR_PARAMS, as one
//!   packet). The stencil buffer is W-tiled 8-bit samples (a 4 KiB tile of
//!   64 x 64 samples laid 128 bytes across the programmed pitch); the HiZ
//!   buffer is 16 bytes per 8 x 4 samples, Y-tiled, QPitch HiZ rows
//!   between slices. A stencil buffer is audited only when enabled, a HiZ
//!   buffer only when the depth buffer is not NULL and enables HiZ: the
//!   all-zero (unused) HiZ and stencil state Mesa emits with a NULL depth
//!   buffer is accepted. The packet's rules across commands (a draw with a
//!   half-programmed packet, a sample count raised after it, 3DSTATE_WM_HZ_
//!   OP's own sample count) are [`super::tracked`]'s.
//! - **SFC output** ([`Extent::Surface`]). SFC_STATE's output frame is a
//!   picture (below) of its output surface at its output frame size; its
//!   AVS and IEF line buffers are five 64-byte cache lines per 8 pixels of
//!   the largest frame dimension the state gives (the media driver sizes
//!   them by 3 or 5 lines per 8 pixels of a width or height).
//! - **Video pictures and buffers** ([`Extent::Pipe`]). The MFX, HCP and
//!   VDENC pipes write where their state commands point, sized by other
//!   state commands that may come in any order (MFX_PIPE_BUF_ADDR_STATE
//!   before MFX_AVC_IMG_STATE, which gives the frame size). Those addresses
//!   are remapped where they are set (they must translate), and their
//!   extents are audited when a command consumes them (an MFX, HCP or
//!   VDENC object: [`super::tracked::CONSUMERS`]), from the pipe's state in
//!   the same submission:
//!   - the frame size is the largest any of the pipe's surface and picture
//!     states give (MFX_SURFACE_STATE; MFX_AVC_IMG_STATE, MFX_MPEG2_PIC_
//!     STATE, MFD_VC1_LONG_PIC_STATE, MFX_JPEG_PIC_STATE, MFX_VP8_PIC_STATE;
//!     HCP_PIC_STATE and HCP_VP9_PIC_STATE, in 64-pixel units; VDENC_IMG_
//!     STATE), every "minus one" count taken plus one;
//!   - a picture ([`PipeSize::Picture`]) is the pitch times the rows of its
//!     luma plane and of its chroma planes from their offsets (half the
//!     rows for 4:2:0, all of them for any other planar or unknown format),
//!     in whole tiles of its tiling, for the largest extent any of the
//!     pipe's surface states gives at the frame size;
//!   - a buffer whose size follows the frame ([`PipeSize::Size`]: row
//!     stores, line buffers, motion vectors, stream-outs) is a fixed part
//!     plus bytes per 16-pixel column, per row and per 16 x 16 block, from
//!     the largest of the media driver's Gen9 sizes over the codecs that
//!     use it (`mhw_vdbox_hcp_g9_X.h` `GetHevcBufferSize` and
//!     `GetVp9BufferSize` at 10 bits a sample and 16-pixel LCUs; the MFX
//!     row stores of the `codechal_decode_*` allocations, at most 22
//!     cache lines per macroblock column; 16 DWords of stream-out per
//!     macroblock);
//!   - a buffer no state bounds ([`PipeSize::Unknown`]: HCP and MFX
//!     stream-outs of the encoder whose records the PRM does not size, HuC
//!     regions, whose reach is the firmware's) is refused when its pipe may
//!     use it ([`When::PipeMode`]), so those modes are refused as a whole.
//!
//!   A field used only in a mode its pipe's mode-select command enables is
//!   remapped where it is set if it translates, else left alone; its extent
//!   is audited (and an untranslated one refused) only when the consuming
//!   command finds the mode on.
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
//! disabled stream-out buffer, SURFTYPE_NULL depth buffer, disabled stencil,
//! HiZ not enabled by the depth buffer, disabled pool, zero read length) is
//! neither audited nor rewritten: the hardware does not access it. Every
//! other address, zero included, must lie inside the vGPU's slices; a guest
//! points an operand it does not use at its own memory.
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
    /// A size in pages (bits 31:12 of DWord `dword`, command-relative).
    /// Zero is "No Valid Data" (genxml): nothing is accessed, but the base
    /// must translate (it is remapped).
    Pages {
        /// DWord holding the size.
        dword: u8,
    },
    /// Up to the absolute upper-bound address in DWords `dword`, `dword+1`
    /// (64-bit), which is remapped together with the base. A zero bound
    /// disables the hardware's check: the base must translate, and the
    /// commands that use the object refuse it ([`super::tracked`]).
    UpperBound {
        /// Low DWord of the bound.
        dword: u8,
    },
    /// A surface whose extent this command's own fields (and, for the
    /// depth packet, the submission's depth buffer and sample count) give.
    Surface(Surface),
    /// A video picture or buffer sized by the pipe's state: remapped here,
    /// audited when a command consumes the pipe's state.
    Pipe(PipeSize),
}

/// The surfaces whose extent the scanner computes where they are set
/// ([`super::surface`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// 3DSTATE_DEPTH_BUFFER's surface.
    Depth,
    /// 3DSTATE_HIER_DEPTH_BUFFER: its pitch and QPitch at the depth
    /// buffer's dimensions.
    Hiz,
    /// 3DSTATE_STENCIL_BUFFER: likewise.
    Stencil,
    /// SFC_STATE's output frame.
    SfcOutput,
    /// SFC_STATE's AVS or IEF line buffer.
    SfcLine,
}

/// How a video pipe's state sizes one of its buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipeSize {
    /// A picture described by the pipe's surface states.
    Picture(Pictures),
    /// Bytes in terms of the frame size.
    Size(Size),
    /// No state bounds it: a command that may use it is refused.
    Unknown,
}

/// Which surface states describe a picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pictures {
    /// Any of the pipe's own (MFX_SURFACE_STATE, HCP_SURFACE_STATE).
    Pipe,
    /// VDENC_SRC_SURFACE_STATE.
    VdencSource,
    /// VDENC_REF_SURFACE_STATE.
    VdencReference,
    /// VDENC_DS_REF_SURFACE_STATE (4x downscaled: a quarter of the frame
    /// in each direction, or the state's own size if larger).
    VdencDownscaled,
}

/// `fixed + per_col * cols + per_row * rows + per_block * cols * rows`
/// bytes, for a frame of `cols` x `rows` 16-pixel units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Size {
    /// Bytes whatever the frame size.
    pub fixed: u32,
    /// Bytes per 16-pixel column.
    pub per_col: u32,
    /// Bytes per 16-pixel row.
    pub per_row: u32,
    /// Bytes per 16 x 16 block.
    pub per_block: u32,
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
    /// When the submission's depth buffer is not NULL and enables HiZ.
    HizEnabled,
    /// When bit `.0` of DWord 1 of the pipe's mode-select command
    /// (MFX_PIPE_MODE_SELECT, HCP_PIPE_MODE_SELECT, VDENC_PIPE_MODE_SELECT)
    /// is set: known only when the pipe's state is consumed.
    PipeMode(u8),
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

const fn size(fixed: u32, per_col: u32, per_row: u32, per_block: u32) -> PipeSize {
    PipeSize::Size(Size {
        fixed,
        per_col,
        per_row,
        per_block,
    })
}

/// A 64-bit video address (bits 63:0) sized by the pipe.
const fn pipe(name: &'static str, dword: u8, size: PipeSize, access: Access) -> AddrField {
    f(name, dword, 0, Bits32, Extent::Pipe(size), access)
}
/// A 48-bit (bits 47:6) video address sized by the pipe.
const fn pipe48(name: &'static str, dword: u8, size: PipeSize, access: Access) -> AddrField {
    f(name, dword, 6, Bits16, Extent::Pipe(size), access)
}
/// Used when the pipe's mode select sets `bit`.
const fn mode(a: AddrField, bit: u8) -> AddrField {
    when(a, When::PipeMode(bit))
}

const PICTURE: PipeSize = PipeSize::Picture(Pictures::Pipe);
const UNKNOWN: PipeSize = PipeSize::Unknown;

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
    f(
        "Surface Base Address",
        2,
        0,
        Bits32,
        Extent::Surface(Surface::Depth),
        Write,
    ),
    When::NotNullSurface(1),
)]);

/// 3DSTATE_HIER_DEPTH_BUFFER: DWord 2-3, used when the depth buffer is not
/// NULL and enables HiZ.
pub static HIER_DEPTH_BUFFER: Layout = layout(&[when(
    f(
        "Surface Base Address",
        2,
        0,
        Bits32,
        Extent::Surface(Surface::Hiz),
        Write,
    ),
    When::HizEnabled,
)]);

/// 3DSTATE_STENCIL_BUFFER: DWord 2-3; DWord 1 bit 31 enables it.
pub static STENCIL_BUFFER: Layout = layout(&[when(
    f(
        "Surface Base Address",
        2,
        0,
        Bits32,
        Extent::Surface(Surface::Stencil),
        Write,
    ),
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
/// pages DWord 3 bits 31:12, enabled by DWord 1 bit 11. Written: the
/// 3DSTATE_BINDING_TABLE_EDIT_* commands make the engine write binding
/// tables into the pool.
pub static BINDING_TABLE_POOL: Layout = layout(&[when(
    f(
        "Binding Table Pool Base Address",
        1,
        12,
        Bits32,
        Extent::Pages { dword: 3 },
        Write,
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
        Extent::Pages { dword: 3 },
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
//
// MFX_PIPE_MODE_SELECT DWord 1 (genxml): bit 4 Codec Select (1: encode),
// 7 Scaled Surface Enable, 8 Pre Deblocking Output Enable, 9 Post
// Deblocking Output Enable, 10 Stream-Out Enable, 12 Deblocker Stream-Out
// Enable.

/// MFX row stores: at most 22 cache lines per macroblock column (the
/// largest of the media driver's Gen9 MFX row stores: VP8's MPR row store;
/// deblocking 7, BSD/MPC 2, intra 1 for the other codecs).
const MFX_ROW_STORE: PipeSize = size(0, 22 * 64, 0, 0);
/// 16 DWords per macroblock (MFX stream-out data, MB statistics, direct
/// motion vectors).
const MFX_PER_MB: PipeSize = size(0, 0, 0, 64);

/// MFX_PIPE_BUF_ADDR_STATE (bits 47:6 buffers, 64-bit reference pictures).
pub static MFX_PIPE_BUF_ADDR: Layout = layout(&[
    mode(
        pipe48("Pre Deblocking Destination - Address", 1, PICTURE, Write),
        8,
    ),
    mode(
        pipe48("Post Deblocking Destination - Address", 4, PICTURE, Write),
        9,
    ),
    mode(
        pipe48(
            "Original Uncompressed Picture Source - Address",
            7,
            PICTURE,
            Read,
        ),
        4,
    ),
    mode(
        pipe48(
            "Stream-Out Data Destination - Address",
            10,
            MFX_PER_MB,
            Write,
        ),
        10,
    ),
    pipe48(
        "Intra Row Store Scratch Buffer - Address",
        13,
        MFX_ROW_STORE,
        Write,
    ),
    pipe48(
        "Deblocking Filter Row Store Scratch - Address",
        16,
        MFX_ROW_STORE,
        Write,
    ),
    pipe("Reference Picture - Address", 19, PICTURE, Read),
    pipe("Reference Picture - Address", 21, PICTURE, Read),
    pipe("Reference Picture - Address", 23, PICTURE, Read),
    pipe("Reference Picture - Address", 25, PICTURE, Read),
    pipe("Reference Picture - Address", 27, PICTURE, Read),
    pipe("Reference Picture - Address", 29, PICTURE, Read),
    pipe("Reference Picture - Address", 31, PICTURE, Read),
    pipe("Reference Picture - Address", 33, PICTURE, Read),
    pipe("Reference Picture - Address", 35, PICTURE, Read),
    pipe("Reference Picture - Address", 37, PICTURE, Read),
    pipe("Reference Picture - Address", 39, PICTURE, Read),
    pipe("Reference Picture - Address", 41, PICTURE, Read),
    pipe("Reference Picture - Address", 43, PICTURE, Read),
    pipe("Reference Picture - Address", 45, PICTURE, Read),
    pipe("Reference Picture - Address", 47, PICTURE, Read),
    pipe("Reference Picture - Address", 49, PICTURE, Read),
    mode(
        pipe48("MB Status Buffer - Address", 52, MFX_PER_MB, Write),
        4,
    ),
    mode(
        pipe48("MB ILDB Stream-Out Buffer - Address", 55, UNKNOWN, Write),
        12,
    ),
    mode(
        pipe48(
            "Second MB ILDB Stream-Out Buffer - Address",
            58,
            UNKNOWN,
            Write,
        ),
        12,
    ),
    mode(
        pipe48("Scaled Reference Surface - Address", 62, PICTURE, Write),
        7,
    ),
    // Beyond genxml's 65-DWord length: audited when present.
    mode(
        pipe48(
            "SliceSize Stream-Out Data Destination - Address",
            65,
            UNKNOWN,
            Write,
        ),
        4,
    ),
]);

/// MFX_IND_OBJ_BASE_ADDR_STATE: five base / upper-bound pairs.
pub static MFX_IND_OBJ_BASE_ADDR: Layout = layout(&[
    bound("MFX Indirect Bitstream Object - Address", 1, 4, Write),
    bound("MFX Indirect MV Object - Address", 6, 9, Write),
    bound("MFD Indirect IT-COEFF Object - Address", 11, 14, Read),
    bound("MFD Indirect IT-DBLK Object - Address", 16, 19, Read),
    bound("MFC Indirect PAK-BSE Object - Address", 21, 24, Write),
]);

/// MFX_BSP_BUF_BASE_ADDR_STATE: row stores and the VC1 bitplane buffer (at
/// most 255 bytes a macroblock row: MFD_VC1_LONG_PIC_STATE's Bitplane
/// Buffer Pitch is 8 bits).
pub static MFX_BSP_BUF_BASE_ADDR: Layout = layout(&[
    pipe48(
        "BSD/MPC Row Store Scratch Buffer - Address",
        1,
        MFX_ROW_STORE,
        Write,
    ),
    pipe48(
        "MPR Row Store Scratch Buffer - Address",
        4,
        MFX_ROW_STORE,
        Write,
    ),
    pipe48(
        "Bitplane Read Buffer - Address",
        7,
        size(0, 0, 256, 0),
        Read,
    ),
]);

/// MFX_DBK_OBJECT: pictures and a row store; the deblocking control data's
/// size is not given by any state, so the object is refused.
pub static MFX_DBK_OBJECT: Layout = layout(&[
    pipe48("Pre Deblocking Source - Address", 1, PICTURE, Read),
    pipe48("Deblocking Control - Address", 4, UNKNOWN, Read),
    pipe48("Deblocking Destination - Address", 7, PICTURE, Write),
    pipe48("Deblock Row Store - Address", 10, MFX_ROW_STORE, Write),
]);

/// AVC direct motion vectors: 16 DWords per macroblock, the frame's
/// macroblock rows rounded up to a pair (field and MBAFF pictures).
const AVC_DMV: PipeSize = size(0, 64, 0, 64);

/// MFX_AVC_DIRECTMODE_STATE: 16 direct MV buffers read, one written.
pub static MFX_AVC_DIRECTMODE: Layout = Layout {
    fields: &[pipe(
        "Direct MV Buffer (Write) - Address",
        34,
        AVC_DMV,
        Write,
    )],
    group: Some((
        Group {
            start: 1,
            stride: 2,
            count: 16,
        },
        &[pipe("Direct MV Buffer - Address", 0, AVC_DMV, Read)],
    )),
    relative: &[],
    internal: &[],
};

/// MFX_VC1_DIRECTMODE_STATE: one cache line of motion vectors per
/// macroblock.
pub static MFX_VC1_DIRECTMODE: Layout = layout(&[
    pipe("Direct MV Write Buffer - Address", 1, MFX_PER_MB, Write),
    pipe("Direct MV Read Buffer - Address", 4, MFX_PER_MB, Read),
]);

/// MFX_VP8_BSP_BUF_BASE_ADDR_STATE (fields present up to the command's
/// length): the VP8 encoder's buffers, whose sizes no state the scanner
/// reads gives.
pub static MFX_VP8_BSP_BUF_BASE_ADDR: Layout = layout(&[
    pipe("Frame Header - Address", 1, UNKNOWN, Read),
    pipe("Intermediate Buffer - Address", 4, UNKNOWN, Write),
    pipe("Final Frame - Address", 16, UNKNOWN, Write),
    pipe("Stream-Out - Address", 20, UNKNOWN, Write),
    pipe("Coeff Probs Stream-In Surface - Address", 23, UNKNOWN, Read),
    pipe("Token Statistics Surface - Address", 26, UNKNOWN, Write),
    pipe("MPC Row Store Surface - Address", 29, MFX_ROW_STORE, Write),
]);

/// MFX_VP8_PIC_STATE (38 DWords on Gen9, media-driver and genxml's fields;
/// genxml types both addresses `uint`): the coefficient probability table
/// it reads (4 x 8 x 3 x 11 bytes, media-driver
/// `m_codechalDecodeVp8CoeffprobTableSize`) and the segmentation ID stream
/// it reads or writes when DW2 bits 7:6 enable stream-in or stream-out (16
/// bytes a macroblock, at least 64).
pub static MFX_VP8_PIC: Layout = layout(&[
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
            Extent::Pipe(size(64, 0, 0, 16)),
            Write,
        ),
        When::AnySet(2, 3 << 6),
    ),
]);

// ---- video: VDENC, HCP, HUC, SFC ----
//
// VDENC_PIPE_MODE_SELECT DWord 1: bit 5 Frame Statistics Stream-Out
// Enable, 9 VDEnc Stream-In Enable.

/// VDENC_PIPE_BUF_ADDR_STATE.
pub static VDENC_PIPE_BUF_ADDR: Layout = layout(&[
    pipe(
        "DS FWD REF0.Address",
        1,
        PipeSize::Picture(Pictures::VdencDownscaled),
        Read,
    ),
    pipe(
        "DS FWD REF1.Address",
        4,
        PipeSize::Picture(Pictures::VdencDownscaled),
        Read,
    ),
    pipe(
        "Original Uncompressed Picture.Address",
        10,
        PipeSize::Picture(Pictures::VdencSource),
        Read,
    ),
    // 16 DWords of stream-in per macroblock.
    mode(
        pipe(
            "Stream-In Data Picture.Address",
            13,
            size(0, 0, 0, 64),
            Read,
        ),
        9,
    ),
    // One cache line per macroblock column.
    pipe(
        "Row Store Scratch Buffer.Address",
        16,
        size(0, 64, 0, 0),
        Write,
    ),
    // The previous picture's direct motion vectors, as AVC_DMV.
    pipe("Colocated MV Read Buffer.Address", 19, AVC_DMV, Read),
    pipe(
        "FWD REF0.Address",
        22,
        PipeSize::Picture(Pictures::VdencReference),
        Read,
    ),
    pipe(
        "FWD REF1.Address",
        25,
        PipeSize::Picture(Pictures::VdencReference),
        Read,
    ),
    pipe(
        "FWD REF2.Address",
        28,
        PipeSize::Picture(Pictures::VdencReference),
        Read,
    ),
    pipe(
        "BWD REF0.Address",
        31,
        PipeSize::Picture(Pictures::VdencReference),
        Read,
    ),
    // Frame statistics: the media driver's 80-byte buffer, a page.
    mode(
        pipe(
            "VDEnc Statistics Stream-Out.Address",
            34,
            size(4096, 0, 0, 0),
            Write,
        ),
        5,
    ),
]);

// HCP_PIPE_MODE_SELECT DWord 1: bit 0 Codec Select (1: encode), 1
// Deblocker Stream-Out Enable, 2 PAK Pipeline Stream-Out Enable, 3 Pic
// Status/Error Report Enable. Sizes: `GetHevcBufferSize` and
// `GetVp9BufferSize` of the media driver's Gen9 HCP, each the larger of
// the HEVC size (10-bit, 16-pixel LCUs) and the VP9 size (10-bit, 64-pixel
// superblocks), bounded in 16-pixel units.

/// Deblocking line and tile-line buffers (VP9: 36 lines per superblock
/// column).
const HCP_DBLK_LINE: PipeSize = size(2304, 576, 0, 0);
/// Deblocking tile-column buffer (VP9: 34 lines per superblock row).
const HCP_DBLK_COL: PipeSize = size(2176, 0, 544, 0);
/// Metadata line and tile-line buffers (VP9: 5 lines per superblock).
const HCP_META_LINE: PipeSize = size(320, 80, 0, 0);
/// Metadata tile-column buffer.
const HCP_META_COL: PipeSize = size(320, 0, 80, 0);
/// SAO line and tile-line buffers (HEVC: (w/2 + 6 w/16) / 4 lines).
const HCP_SAO_LINE: PipeSize = size(256, 224, 0, 0);
/// SAO tile-column buffer.
const HCP_SAO_COL: PipeSize = size(256, 0, 224, 0);
/// Motion-vector temporal buffers (VP9: 9 lines per superblock).
const HCP_MV: PipeSize = size(640, 144, 144, 36);

/// HCP_PIPE_BUF_ADDR_STATE.
pub static HCP_PIPE_BUF_ADDR: Layout = layout(&[
    pipe("Decoded Picture - Address", 1, PICTURE, Write),
    pipe(
        "Deblocking Filter Line Buffer - Address",
        4,
        HCP_DBLK_LINE,
        Write,
    ),
    pipe(
        "Deblocking Filter Tile Line Buffer - Address",
        7,
        HCP_DBLK_LINE,
        Write,
    ),
    pipe(
        "Deblocking Filter Tile Column Buffer - Address",
        10,
        HCP_DBLK_COL,
        Write,
    ),
    pipe("Metadata Line Buffer - Address", 13, HCP_META_LINE, Write),
    pipe(
        "Metadata Tile Line Buffer - Address",
        16,
        HCP_META_LINE,
        Write,
    ),
    pipe(
        "Metadata Tile Column Buffer - Address",
        19,
        HCP_META_COL,
        Write,
    ),
    pipe("SAO Line Buffer - Address", 22, HCP_SAO_LINE, Write),
    pipe("SAO Tile Line Buffer - Address", 25, HCP_SAO_LINE, Write),
    pipe("SAO Tile Column Buffer - Address", 28, HCP_SAO_COL, Write),
    pipe("Current MV Temporal Buffer - Address", 31, HCP_MV, Write),
    pipe("Reference Picture - Address", 37, PICTURE, Read),
    pipe("Reference Picture - Address", 39, PICTURE, Read),
    pipe("Reference Picture - Address", 41, PICTURE, Read),
    pipe("Reference Picture - Address", 43, PICTURE, Read),
    pipe("Reference Picture - Address", 45, PICTURE, Read),
    pipe("Reference Picture - Address", 47, PICTURE, Read),
    pipe("Reference Picture - Address", 49, PICTURE, Read),
    pipe("Reference Picture - Address", 51, PICTURE, Read),
    mode(
        pipe(
            "Original Uncompressed Picture Source - Address",
            54,
            PICTURE,
            Read,
        ),
        0,
    ),
    mode(
        pipe("Stream-Out Data Destination - Address", 57, UNKNOWN, Write),
        2,
    ),
    mode(
        pipe(
            "Decoded Picture Status Buffer - Address",
            60,
            UNKNOWN,
            Write,
        ),
        3,
    ),
    mode(
        pipe("LCU ILDB Stream-Out Buffer - Address", 63, UNKNOWN, Write),
        1,
    ),
    pipe("Collocated MV Temporal Buffer - Address", 66, HCP_MV, Read),
    pipe("Collocated MV Temporal Buffer - Address", 68, HCP_MV, Read),
    pipe("Collocated MV Temporal Buffer - Address", 70, HCP_MV, Read),
    pipe("Collocated MV Temporal Buffer - Address", 72, HCP_MV, Read),
    pipe("Collocated MV Temporal Buffer - Address", 74, HCP_MV, Read),
    pipe("Collocated MV Temporal Buffer - Address", 76, HCP_MV, Read),
    pipe("Collocated MV Temporal Buffer - Address", 78, HCP_MV, Read),
    pipe("Collocated MV Temporal Buffer - Address", 80, HCP_MV, Read),
    // CODEC_VP9_PROB_MAX_NUM_ELEM bytes, read and adapted.
    pipe(
        "VP9 Probability Buffer - Address",
        83,
        size(2048, 0, 0, 0),
        Write,
    ),
    // genxml types it uint: one cache line per superblock.
    pipe(
        "VP9 Segment ID Buffer - Address",
        86,
        size(64, 16, 16, 4),
        Write,
    ),
    // One cache line per superblock column.
    pipe(
        "VP9 HVD Line Row Store Buffer - Address",
        89,
        size(64, 16, 0, 0),
        Write,
    ),
    pipe(
        "VP9 HVD Tile Row Store Buffer - Address",
        92,
        size(64, 16, 0, 0),
        Write,
    ),
]);

/// HCP_IND_OBJ_BASE_ADDR_STATE: bitstream and PAK-BSE with bounds; the
/// encoder's CU object has no bound and no state sizes it.
pub static HCP_IND_OBJ_BASE_ADDR: Layout = layout(&[
    bound("HCP Indirect Bitstream Object - Base Address", 1, 4, Write),
    mode(
        pipe("HCP Indirect CU Object - Base Address", 6, UNKNOWN, Read),
        0,
    ),
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

/// HUC_VIRTUAL_ADDR_STATE: 16 regions of 3 DWords from DWord 1. The HuC
/// firmware reaches them at offsets its own parameters choose: no state
/// bounds them, so HUC_START is refused.
pub static HUC_VIRTUAL_ADDR: Layout = Layout {
    fields: &[],
    group: Some((
        Group {
            start: 1,
            stride: 3,
            count: 16,
        },
        &[pipe("Address", 0, UNKNOWN, Write)],
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

/// SFC_STATE: the output frame and the AVS and IEF line buffers, 48-bit
/// (bits 47:12) addresses genxml types `uint`, sized from the command's own
/// frame fields.
pub static SFC_STATE: Layout = layout(&[
    f(
        "Output Frame - Address",
        17,
        12,
        Bits16,
        Extent::Surface(Surface::SfcOutput),
        Write,
    ),
    f(
        "AVS Line Buffer - Address",
        20,
        12,
        Bits16,
        Extent::Surface(Surface::SfcLine),
        Write,
    ),
    f(
        "IEF Line Buffer - Address",
        23,
        12,
        Bits16,
        Extent::Surface(Surface::SfcLine),
        Write,
    ),
]);
