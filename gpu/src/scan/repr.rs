//! Validated representations of the commands whose operands the auditor
//! inspects (smoltcp `Repr` style): each variant holds the decoded operand
//! values, with the bit layouts declared once here.
//!
//! Field positions: PRM vol 2a and genxml `gen9.xml` (DWord n, bits hi:lo);
//! the operand DWords of the blits genxml lacks: i915 GVT-g
//! (`cmd_parser.c`) widened to Gen8+ 64-bit addresses ([`BlitShape`]).

use core::fmt;

use super::decode::Command;
use super::table::{Op, Opcode};

/// Why a command's operands are malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReprError {
    /// The command is shorter than its operand layout needs.
    TooShort {
        /// Name of the command.
        name: &'static str,
        /// DWords present.
        len: usize,
    },
    /// MI_LOAD_REGISTER_IMM without whole (register, value) pairs.
    OddRegisterList,
    /// MI_ATOMIC with an inline-data length other than 3 or 11.
    BadAtomicLength,
    /// A repeated structure (e.g. VERTEX_BUFFER_STATE) cut short.
    PartialGroup,
    /// A blit with a negative pitch (its surface would extend below the
    /// audited base address).
    NegativePitch,
    /// A tiled blit whose rectangle is wider than the surface pitch.
    TiledOverrun,
    /// A blit whose inline colour pattern is not exactly 8x8 pixels of its
    /// colour depth (the engine would take the rest as commands, or the
    /// next commands as pattern).
    InlineLength {
        /// Name of the command.
        name: &'static str,
        /// DWords present.
        len: usize,
        /// DWords its pattern needs.
        want: usize,
    },
    /// An HCP_PAK_INSERT_OBJECT indirect payload whose memory attributes
    /// ask for compression or a tiled-resource mode: then it is not the
    /// linear run of bytes its size describes.
    PayloadNotLinear,
    /// HCP_PAK_INSERT_OBJECT with Indirect Payload Enable whose payload is
    /// not a whole number (at least one) of 4-DWord indirect payload
    /// descriptors.
    PartialPayload,
}

impl fmt::Display for ReprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReprError::TooShort { name, len } => write!(f, "{name} too short ({len} DWords)"),
            ReprError::OddRegisterList => {
                f.write_str("MI_LOAD_REGISTER_IMM without whole register/value pairs")
            }
            ReprError::BadAtomicLength => f.write_str("MI_ATOMIC length must be 3 or 11"),
            ReprError::PartialGroup => f.write_str("repeated structure cut short"),
            ReprError::NegativePitch => f.write_str("blit with a negative pitch"),
            ReprError::TiledOverrun => f.write_str("tiled blit wider than its pitch"),
            ReprError::InlineLength { name, len, want } => {
                write!(f, "{name}: {len} DWords, its inline pattern needs {want}")
            }
            ReprError::PayloadNotLinear => {
                f.write_str("indirect payload compressed or in a tiled-resource mode")
            }
            ReprError::PartialPayload => {
                f.write_str("indirect payload not whole 4-DWord descriptors")
            }
        }
    }
}

/// Post-sync operation of PIPE_CONTROL / MI_FLUSH_DW (2-bit field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostSync {
    /// No write.
    None,
    /// Write the immediate data (PIPE_CONTROL: 8 bytes; MI_FLUSH_DW: 4 or 8).
    WriteImmediate,
    /// Write the PS_DEPTH_COUNT (8 bytes).
    WriteDepthCount,
    /// Write the timestamp (8 bytes).
    WriteTimestamp,
}

impl PostSync {
    const fn from_bits(b: u32) -> PostSync {
        match b & 3 {
            0 => PostSync::None,
            1 => PostSync::WriteImmediate,
            2 => PostSync::WriteDepthCount,
            _ => PostSync::WriteTimestamp,
        }
    }
}

/// A memory operand: address, whether it is a GGTT (not PPGTT) address, and
/// the bytes the command touches there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperand {
    /// DWord index of the operand's low address DWord within the command
    /// (the high DWord follows); the remapper rewrites these two DWords.
    pub dword: usize,
    /// Lowest address bit in the low DWord; the bits below are flags and
    /// survive the rewrite.
    pub shift: u32,
    /// Graphics address.
    pub addr: u64,
    /// Bytes accessed from `addr`.
    pub size: u64,
    /// True for a global-GTT address; false means per-process GTT.
    pub ggtt: bool,
    /// True if the command may write there.
    pub write: bool,
}

/// The checked form of a command.
#[allow(clippy::large_enum_variant)] // reason: no_std, no Box; a parse result lives briefly on the stack
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandRepr<'a> {
    /// No operand the auditor needs (including MI_NOOP).
    Plain,
    /// MI_BATCH_BUFFER_START.
    BatchStart {
        /// Target of the batch (DWord 1-2).
        target: MemOperand,
        /// Bit 22: second-level batch (returns to the caller on END).
        second_level: bool,
        /// Bit 10: resource streamer enable (privileged).
        resource_streamer: bool,
        /// Bit 15: predication enable.
        predicated: bool,
        /// Bit 16: add offset enable (adds a register to the address).
        add_offset: bool,
    },
    /// MI_BATCH_BUFFER_END.
    BatchEnd,
    /// MI_CONDITIONAL_BATCH_BUFFER_END (DWord 2-3; reads a DWord, or with
    /// Compare Mask Mode, bit 19, a QWord: mask and data).
    CondBatchEnd {
        /// The compared memory.
        mem: MemOperand,
    },
    /// MI_SET_PREDICATE.
    SetPredicate {
        /// PREDICATE ENABLE (bits 3:0; 0: NOOP Never).
        enable: u8,
    },
    /// MI_STORE_DATA_IMM (DWord 1-2 address; bit 21 store qword).
    StoreDataImm {
        /// Destination.
        mem: MemOperand,
    },
    /// MI_STORE_REGISTER_MEM (DWord 1 register, DWord 2-3 address).
    StoreRegMem {
        /// Register offset read.
        reg: u32,
        /// Destination (4 bytes).
        mem: MemOperand,
    },
    /// MI_LOAD_REGISTER_MEM (DWord 1 register, DWord 2-3 address).
    LoadRegMem {
        /// Register offset written.
        reg: u32,
        /// Source (4 bytes).
        mem: MemOperand,
    },
    /// MI_LOAD_REGISTER_IMM: (register, value) pairs from DWord 1.
    LoadRegImm {
        /// The pairs, flattened.
        pairs: &'a [u32],
        /// Byte Write Disables (header bits 11:8): a set bit keeps that
        /// byte of every register written unchanged.
        byte_disables: u32,
    },
    /// MI_LOAD_REGISTER_REG (DWord 1 source, DWord 2 destination register).
    LoadRegReg {
        /// Source register offset.
        src: u32,
        /// Destination register offset.
        dst: u32,
    },
    /// MI_COPY_MEM_MEM (4 bytes from DWord 3-4 to DWord 1-2).
    CopyMemMem {
        /// Destination.
        dst: MemOperand,
        /// Source.
        src: MemOperand,
    },
    /// MI_ATOMIC (DWord 1-2 address; data size bits 20:19).
    Atomic {
        /// The memory operated on.
        mem: MemOperand,
    },
    /// MI_FLUSH_DW with its post-sync write.
    FlushDw {
        /// Post-sync operation (bits 15:14).
        post_sync: PostSync,
        /// Bit 21: the address is an index into the hardware status page.
        store_index: bool,
        /// Destination of the post-sync write (DWord 1-2).
        mem: MemOperand,
    },
    /// PIPE_CONTROL with its post-sync write.
    PipeControl {
        /// Post-sync operation (DWord 1 bits 15:14).
        post_sync: PostSync,
        /// DWord 1 bit 21: the address indexes the hardware status page.
        store_index: bool,
        /// DWord 1 bit 23: the post-sync write goes to a register.
        lri_post_sync: bool,
        /// Destination of the post-sync write (DWord 2-3).
        mem: MemOperand,
    },
    /// MI_SEMAPHORE_WAIT (DWord 2-3 address, 4 bytes read).
    SemaphoreWait {
        /// Bit 16: polls a register instead of memory.
        register_poll: bool,
        /// The polled memory.
        mem: MemOperand,
    },
    /// STATE_BASE_ADDRESS: base/size pairs, parsed on demand
    /// ([`SbaView::bases`]) so that the common variants stay small.
    StateBaseAddress(SbaView<'a>),
    /// XY_COLOR_BLT / XY_SRC_COPY_BLT / XY_FAST_COPY_BLT surfaces.
    Blit {
        /// Destination surface (pitch x height from its top row).
        dst: MemOperand,
        /// Source surface, for copies.
        src: Option<MemOperand>,
    },
    /// XY_SETUP_BLT / XY_SETUP_MONO_PATTERN_SL_BLT: destination surface of
    /// the setup-relative blits that follow, and the pattern they read.
    BltSetup {
        /// Destination base (DW4-5); its extent comes from each blit.
        dst: MemOperand,
        /// The destination pitch field (DW1 15:0).
        pitch: u32,
        /// Header bit 11: destination tiled.
        tiled: bool,
        /// Bytes per pixel (DW1 25:24).
        bpp: u64,
        /// XY_SETUP_BLT's 8x8 colour pattern (DW8-9), when the raster
        /// operation reads a pattern.
        pattern: Option<MemOperand>,
    },
    /// XY_PIXEL_BLT / XY_SCANLINES_BLT / XY_TEXT_IMMEDIATE_BLT: the
    /// rectangle `x1..x2, y1..y2` (exclusive) drawn into the setup's
    /// destination.
    BltSetupDraw {
        /// Left, top, right, bottom.
        rect: [u32; 4],
    },
    /// A blit of a modelled shape ([`BlitShape`], [`Op::XyBlit`]): the
    /// written destination and up to two read operands.
    ShapedBlit {
        /// The destination surface, or `None` when the blit draws into the
        /// destination of the last blitter setup (XY_TEXT_BLT).
        dst: Option<MemOperand>,
        /// The destination rectangle `x1, y1, x2, y2` (exclusive), for a
        /// setup-relative blit.
        rect: [u32; 4],
        /// The source (colour or packed 1 bpp), when the blit has one.
        src: Option<MemOperand>,
        /// The 8x8 colour pattern, when the blit has one in memory.
        pattern: Option<MemOperand>,
    },
    /// Any other class: the auditor decides from [`Op`] alone.
    Other(Op),
}

/// One STATE_BASE_ADDRESS base with its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseRange {
    /// Name of the base (genxml).
    pub name: &'static str,
    /// Base Address Modify Enable: this command changes the base.
    pub modify: bool,
    /// The base (`size` unused: see `bytes`).
    pub mem: MemOperand,
    /// This command changes the size (Buffer Size Modify Enable; for the
    /// bindless heap, whose size has no enable of its own, the base's).
    pub size_modify: bool,
    /// The size the command sets, in bytes (`None`: the base has no size
    /// field, the hardware does not bound it).
    pub bytes: Option<u64>,
}

/// The bases STATE_BASE_ADDRESS (19 DWords on Gen9, or 18 without the
/// bindless surface state size) sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateBaseAddress {
    /// General, surface, dynamic, indirect object, instruction, bindless.
    pub bases: [BaseRange; 6],
}

/// A STATE_BASE_ADDRESS of at least 18 DWords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbaView<'a> {
    c: Command<'a>,
}

impl SbaView<'_> {
    /// The bases the command sets, with their sizes.
    pub fn bases(&self) -> StateBaseAddress {
        let c = &self.c;
        let bit = |w: u32, b: u32| (w >> b) & 1 == 1;
        // Sizes: 4 KiB pages in bits 31:12 with a modify enable in bit 0
        // (DWords 12-15); the bindless heap: (n + 1) surface states of 64
        // bytes in DWord 18 bits 31:12, set with its base (genxml, Mesa
        // anv).
        let pages = |dw: usize| u64::from(c.dw(dw) >> 12) * 4096;
        let base = |name, lo: usize, size_dw: Option<usize>| {
            let modify = bit(c.dw(lo), 0);
            BaseRange {
                name,
                modify,
                mem: mem(c, lo, 12, 0, true, true),
                size_modify: size_dw.is_some_and(|d| bit(c.dw(d), 0)),
                bytes: size_dw.map(pages),
            }
        };
        // The 18-DWord form (igt rendercopy_gen9.c, for
        // WaBindlessSurfaceStateModifyEnable:skl,bxt) has no size DWord:
        // a bindless base it sets keeps the size set earlier.
        let mut bindless = base("Bindless Surface State Base Address", 16, None);
        bindless.size_modify = bindless.modify && c.len() >= 19;
        bindless.bytes = Some((u64::from(c.dw(18) >> 12) + 1) * 64);
        StateBaseAddress {
            bases: [
                base("General State Base Address", 1, Some(12)),
                base("Surface State Base Address", 4, None),
                base("Dynamic State Base Address", 6, Some(13)),
                base("Indirect Object Base Address", 8, Some(14)),
                base("Instruction Base Address", 10, Some(15)),
                bindless,
            ],
        }
    }
}

/// Address in DWord `lo` (bits 31:`align`) and `lo + 1` (bits 31:0).
fn addr(c: &Command<'_>, lo: usize, align: u32) -> u64 {
    let low = c.dw(lo) & !((1u32 << align) - 1);
    (u64::from(c.dw(lo + 1)) << 32) | u64::from(low)
}

fn mem(c: &Command<'_>, lo: usize, align: u32, size: u64, ggtt: bool, write: bool) -> MemOperand {
    MemOperand {
        dword: lo,
        shift: align,
        addr: addr(c, lo, align),
        size,
        ggtt,
        write,
    }
}

/// How a blit surface is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// Rows `pitch` bytes apart.
    Linear,
    /// The legacy XY_ blits' "tiled" bit: X tiling, or Y where BCS_SWCTRL
    /// (a register the guest may write) says so. Its extent is the larger
    /// of the two.
    Legacy,
    /// X-major tiles of 512 bytes x 8 rows.
    X,
    /// Legacy Y-major tiles of 128 bytes x 32 rows.
    Y,
    /// Y-major 4 KiB tiles whose shape depends on the bytes per pixel.
    Yf,
    /// Y-major 64 KiB tiles whose shape depends on the bytes per pixel.
    Ys,
}

impl Tiling {
    /// Tile width in bytes and height in rows for `bpp` bytes per pixel
    /// (PRM vol 5 "Memory Views", tiling formats; Mesa isl
    /// `isl_tiling_get_info`): X 512 x 8, Y 128 x 32; Yf 64 x 64 at 1 byte
    /// per pixel, 128 x 32 at 2 and 4, 256 x 16 at 8 and 16; Ys each of
    /// those 4 times wider and taller (256 x 256, 512 x 128, 1024 x 64).
    /// `None` for linear and legacy (not one geometry).
    pub const fn tile(self, bpp: u64) -> Option<(u64, u32)> {
        let yf = match bpp {
            0 | 1 => (64, 64),
            2..=4 => (128, 32),
            _ => (256, 16),
        };
        match self {
            Tiling::Linear | Tiling::Legacy => None,
            Tiling::X => Some((512, 8)),
            Tiling::Y => Some((128, 32)),
            Tiling::Yf => Some(yf),
            Tiling::Ys => Some((yf.0 * 4, yf.1 * 4)),
        }
    }
}

/// One blit surface as the blitter walks it (PRM vol 2a, XY_* commands):
/// rows `0 .. rows` from the base, `pitch` apart, each touched up to byte
/// `x_end` of the row.
#[derive(Clone, Copy)]
struct BlitSurface {
    /// The 16-bit pitch field (bit 15: negative pitch); in DWords when
    /// tiled.
    pitch: u32,
    /// Memory layout.
    tiling: Tiling,
    /// Bytes per pixel (the Yf/Ys tile shape depends on it).
    bpp: u64,
    /// Rows from the base to the last row touched, exclusive.
    rows: u32,
    /// Bytes from the start of a row to the end of the last pixel touched.
    x_end: u64,
}

impl BlitSurface {
    /// Bytes from the base the blit may touch. Linear: the rows above the
    /// last touched one in full, and the last to the end of its rectangle
    /// (or its pitch, whichever is further). Tiled: whole rows of tiles,
    /// each `ceil(pitch / tile width)` tiles long (so a pitch that is not
    /// a multiple of the tile width is never under-counted), and in the
    /// last one the tiles up to the rectangle's right edge. A negative
    /// pitch would walk below the base and is rejected; so is a tiled
    /// rectangle wider than its pitch (tiles would wrap into other rows of
    /// tiles).
    #[inline(always)]
    fn bytes(self) -> Result<u64, ReprError> {
        if self.pitch & 0x8000 != 0 {
            return Err(ReprError::NegativePitch);
        }
        if self.rows == 0 || self.x_end == 0 {
            // Empty rectangle: nothing is accessed.
            return Ok(0);
        }
        if self.tiling == Tiling::Linear {
            let pitch = u64::from(self.pitch);
            // 16-bit fields and at most 16 bytes per pixel: no overflow.
            return Ok(u64::from(self.rows - 1) * pitch + self.x_end.max(pitch));
        }
        tiled_bytes(self.pitch, self.tiling, self.bpp, self.rows, self.x_end)
    }
}

/// [`BlitSurface::bytes`] of a tiled surface with a non-empty rectangle
/// (its fields): out of line, so that the scanner's hot loop keeps only
/// the linear case, and given scalars, so that the loop passes them in
/// registers instead of building the surface in memory on every blit.
#[cold]
#[inline(never)]
fn tiled_bytes(
    pitch: u32,
    tiling: Tiling,
    bpp: u64,
    rows: u32,
    x_end: u64,
) -> Result<u64, ReprError> {
    let pitch = u64::from(pitch) * 4;
    if x_end > pitch {
        return Err(ReprError::TiledOverrun);
    }
    let tiled = |(width, height): (u64, u32)| {
        let tile = width * u64::from(height);
        let tile_rows = u64::from(rows.div_ceil(height));
        (tile_rows - 1) * pitch.div_ceil(width) * tile + x_end.div_ceil(width) * tile
    };
    Ok(match tiling.tile(bpp) {
        Some(geometry) => tiled(geometry),
        None => {
            let x = Tiling::X.tile(bpp).map_or(0, tiled);
            let y = Tiling::Y.tile(bpp).map_or(0, tiled);
            x.max(y)
        }
    })
}

/// Bytes per pixel of an XY_COLOR_BLT / XY_SRC_COPY_BLT (BR13 bits 25:24:
/// 8, 16 (565), 16 (1555) or 32 bits per pixel).
#[inline(always)]
fn xy_bpp(br13: u32) -> u64 {
    match (br13 >> 24) & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => 4,
    }
}

/// Whether a ternary raster operation reads the pattern: its result,
/// indexed by (pattern, source, destination) bits, differs between P = 0
/// (low nibble) and P = 1 (high nibble).
pub fn rop_uses_pattern(rop: u32) -> bool {
    (rop >> 4) & 0xf != rop & 0xf
}

/// Bytes of an 8x8 colour pattern at `bpp` bytes per pixel.
fn pattern_bytes(bpp: u64) -> u64 {
    64 * bpp
}

/// Bytes per pixel of an XY_FAST_COPY_BLT (DW1 bits 26:24: 8, 16, 32, 64
/// or 128 bits per pixel as 0, 1, 3, 4, 5; igt `lib/intel_reg.h`
/// XY_FAST_COPY_COLOR_DEPTH_*). The reserved codes take the largest.
#[inline(always)]
fn fast_copy_bpp(dw1: u32) -> u64 {
    match dw1 >> 24 & 7 {
        0 => 1,
        1 => 2,
        3 => 4,
        4 => 8,
        _ => 16,
    }
}

/// The tiling of one XY_FAST_COPY_BLT surface from its 2-bit field (DW0
/// bits 14:13 destination, 21:20 source: linear, X, Y, Ys) and its "Tile Y
/// type" bit (DW1 bit 30 destination, 31 source: Yf instead of legacy Y).
#[inline(always)]
fn fast_copy_tiling(field: u32, yf: bool) -> Tiling {
    match field & 3 {
        0 => Tiling::Linear,
        1 => Tiling::X,
        2 if yf => Tiling::Yf,
        2 => Tiling::Y,
        _ => Tiling::Ys,
    }
}

/// The tiling of a legacy XY_ blit surface from its "tiled" bit.
#[inline(always)]
const fn legacy(tiled: bool) -> Tiling {
    if tiled {
        Tiling::Legacy
    } else {
        Tiling::Linear
    }
}

/// The destination and (for copies) source surfaces of an XY blit whose
/// destination rectangle is DW2 (y1:x1) .. DW3 (y2:x2) exclusive, pitch in
/// DW1 15:0, source origin DW6 (y:x), source pitch DW7 15:0.
#[inline(always)]
fn xy_surfaces(
    dw: impl Fn(usize) -> u32,
    bpp: u64,
    dst_tiling: Tiling,
    src_tiling: Tiling,
) -> BlitPair {
    let (x1, y1) = (dw(2) & 0xffff, dw(2) >> 16);
    let (x2, y2) = (dw(3) & 0xffff, dw(3) >> 16);
    let empty = x2 <= x1 || y2 <= y1;
    let dst = BlitSurface {
        pitch: dw(1) & 0xffff,
        tiling: dst_tiling,
        bpp,
        rows: if empty { 0 } else { y2 },
        x_end: if empty { 0 } else { u64::from(x2) * bpp },
    };
    let (sx, sy) = (dw(6) & 0xffff, dw(6) >> 16);
    let src = BlitSurface {
        pitch: dw(7) & 0xffff,
        tiling: src_tiling,
        bpp,
        rows: if empty { 0 } else { sy + (y2 - y1) },
        x_end: if empty {
            0
        } else {
            u64::from(sx + (x2 - x1)) * bpp
        },
    };
    (dst, src)
}

type BlitPair = (BlitSurface, BlitSurface);

/// Bytes touched from the destination and (0 for XY_COLOR_BLT) source
/// base by the XY_COLOR_BLT, XY_SRC_COPY_BLT or XY_FAST_COPY_BLT (`op`)
/// whose DWord `i` is `dw(i)`: the extents [`CommandRepr::parse`] gives
/// its operands, and its errors. `None` for any other `op`.
#[inline(always)]
pub(crate) fn xy_blit_bytes(
    op: Op,
    dw: impl Fn(usize) -> u32,
) -> Option<Result<(u64, u64), ReprError>> {
    let h = dw(0);
    let bit = |w: u32, b: u32| (w >> b) & 1 == 1;
    // XY_COLOR_BLT: header bit 11 destination tiled. XY_SRC_COPY_BLT:
    // header bit 11 destination tiled, bit 15 source tiled.
    // XY_FAST_COPY_BLT: see `fast_copy_tiling`.
    let (bpp, dt, st) = match op {
        Op::XyColorBlt => (xy_bpp(dw(1)), legacy(bit(h, 11)), Tiling::Linear),
        Op::XySrcCopyBlt => (xy_bpp(dw(1)), legacy(bit(h, 11)), legacy(bit(h, 15))),
        Op::XyFastCopyBlt => {
            let d1 = dw(1);
            (
                fast_copy_bpp(d1),
                fast_copy_tiling(h >> 13, bit(d1, 30)),
                fast_copy_tiling(h >> 20, bit(d1, 31)),
            )
        }
        _ => return None,
    };
    let (dst, src) = xy_surfaces(&dw, bpp, dt, st);
    let d = match dst.bytes() {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    if matches!(op, Op::XyColorBlt) {
        return Some(Ok((d, 0)));
    }
    Some(src.bytes().map(|s| (d, s)))
}

/// Bytes from a blitter setup's destination base that a setup-relative
/// blit of `rect` (left, top, right, bottom; exclusive) touches.
pub(crate) fn setup_draw_bytes(
    pitch: u32,
    tiled: bool,
    bpp: u64,
    rect: [u32; 4],
) -> Result<u64, ReprError> {
    let [x1, y1, x2, y2] = rect;
    let empty = x2 <= x1 || y2 <= y1;
    BlitSurface {
        pitch,
        tiling: legacy(tiled),
        bpp,
        rows: if empty { 0 } else { y2 },
        x_end: if empty { 0 } else { u64::from(x2) * bpp },
    }
    .bytes()
}

// ---- the other XY blits: shapes, packed 1-bpp sources ----

/// Where a modelled blit draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlitDst {
    /// Its own destination: BR13 in DW1 (bytes per pixel 25:24, pitch
    /// 15:0), the rectangle in DW2 (y1:x1) .. DW3 (y2:x2) exclusive, the
    /// 64-bit base in DW4-5, header bit 11 tiled; the extent is that of
    /// XY_COLOR_BLT.
    Rect,
    /// The destination of the last XY_SETUP_BLT /
    /// XY_SETUP_MONO_PATTERN_SL_BLT, the rectangle in DW1 (y1:x1) .. DW2
    /// (y2:x2) exclusive (as XY_TEXT_IMMEDIATE_BLT).
    Setup,
}

/// The source a modelled blit reads, with the DWord of its 64-bit base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlitSrc {
    /// None in memory (fills, inline data).
    None,
    /// A colour surface at the destination's depth: origin DW6 (y:x),
    /// pitch DW7 15:0, header bit 15 tiled; the extent is that of
    /// XY_SRC_COPY_BLT's source.
    Color(u8),
    /// A packed 1-bpp source without a pitch of its own: one row per
    /// destination row, each row starting on a 16-bit word ([`mono_bytes`]).
    Mono(u8),
    /// Monochrome text data (XY_TEXT_BLT): one bit per destination pixel,
    /// rows bit- or byte-packed ([`text_bytes`]).
    Text(u8),
}

/// The operands of one blitter command the auditor models beyond the
/// basic blits: where it draws, what it reads, the DWord of its 8x8 colour
/// pattern in memory, and where an inline colour pattern starts.
///
/// Layouts: the pre-Gen8 operand DWords i915 GVT-g lists for these
/// commands (`cmd_parser.c`, `ADDR_FIX_*`), each address widened to the
/// two DWords (bits 31:0, 47:32) every Gen8+ blitter address takes (the
/// rule the XY_COLOR/SRC_COPY/PAT/SETUP rows already follow, PRM vol 2a).
/// The X.org SNA driver's Gen8+ paths emit three of them with exactly
/// these layouts and lengths (XY_MONO_SRC_COPY_BLT: 10 DWords, addresses
/// at DW4 and DW6; XY_FULL_MONO_PATTERN_MONO_SRC_BLT: 14, at DW4 and DW6;
/// XY_MONO_SRC_COPY_IMMEDIATE_BLT: destination at DW4, data from DW8);
/// a command of fixed format has its exact length pinned in the table so
/// the scanner and the engine agree on where the next command starts, and
/// a command with an inline colour pattern must carry exactly the 8x8
/// pixels of its colour depth.
///
/// Unlike XY_PAT_BLT's, a pattern in memory is audited whatever the raster
/// operation: the PRM has the engine fetch the whole pattern when the blit
/// starts, and these commands exist to use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlitShape {
    /// Where it draws.
    pub dst: BlitDst,
    /// What it reads.
    pub src: BlitSrc,
    /// DWord of the 64-bit colour pattern base, if it has one.
    pub pattern: Option<u8>,
    /// First DWord of an inline 8x8 colour pattern, if it has one: the
    /// command is then exactly that DWord plus 16 DWords per byte of
    /// colour depth long.
    pub inline_pattern: Option<u8>,
}

impl BlitShape {
    /// DWords the operands need (the table pins the full length).
    pub const fn min_len(&self) -> usize {
        let mut n = match self.dst {
            BlitDst::Rect => 6,
            BlitDst::Setup => 3,
        };
        let s = match self.src {
            BlitSrc::None => 0,
            BlitSrc::Color(d) | BlitSrc::Mono(d) | BlitSrc::Text(d) => d as usize + 2,
        };
        if s > n {
            n = s;
        }
        if let Some(p) = self.pattern {
            if p as usize + 2 > n {
                n = p as usize + 2;
            }
        }
        if let Some(p) = self.inline_pattern {
            if p as usize > n {
                n = p as usize;
            }
        }
        n
    }
}

const fn shape(dst: BlitDst, src: BlitSrc, pattern: Option<u8>) -> BlitShape {
    BlitShape {
        dst,
        src,
        pattern,
        inline_pattern: None,
    }
}

const fn with_inline_pattern(s: BlitShape, from: u8) -> BlitShape {
    BlitShape {
        inline_pattern: Some(from),
        ..s
    }
}

/// XY_TEXT_BLT (5 DWords): rectangle DW1-2 in the setup's destination,
/// text data DW3-4.
pub static XY_TEXT: BlitShape = shape(BlitDst::Setup, BlitSrc::Text(3), None);
/// XY_MONO_SRC_COPY_BLT (10 DWords): destination DW4-5, packed source
/// DW6-7, background and foreground colours DW8-9.
pub static XY_MONO_SRC_COPY: BlitShape = shape(BlitDst::Rect, BlitSrc::Mono(6), None);
/// XY_MONO_SRC_COPY_IMMEDIATE_BLT: destination DW4-5, colours DW6-7, the
/// packed source inline from DW8.
pub static XY_MONO_SRC_COPY_IMMEDIATE: BlitShape = shape(BlitDst::Rect, BlitSrc::None, None);
/// XY_FULL_BLT (12 DWords): destination DW4-5, colour source (origin DW6,
/// pitch DW7, base DW8-9), pattern DW10-11.
pub static XY_FULL: BlitShape = shape(BlitDst::Rect, BlitSrc::Color(8), Some(10));
/// XY_FULL_MONO_SRC_BLT (12 DWords): destination DW4-5, packed source
/// DW6-7, colours DW8-9, pattern DW10-11.
pub static XY_FULL_MONO_SRC: BlitShape = shape(BlitDst::Rect, BlitSrc::Mono(6), Some(10));
/// XY_FULL_MONO_PATTERN_BLT (14 DWords): destination DW4-5, colour source
/// (origin DW6, pitch DW7, base DW8-9), pattern colours DW10-11 and the
/// inline mono pattern DW12-13.
pub static XY_FULL_MONO_PATTERN: BlitShape = shape(BlitDst::Rect, BlitSrc::Color(8), None);
/// XY_FULL_MONO_PATTERN_MONO_SRC_BLT (14 DWords): destination DW4-5,
/// packed source DW6-7, source and pattern colours DW8-11, the inline
/// mono pattern DW12-13.
pub static XY_FULL_MONO_PATTERN_MONO_SRC: BlitShape = shape(BlitDst::Rect, BlitSrc::Mono(6), None);
/// XY_MONO_PAT_FIXED_BLT (8 DWords): destination DW4-5, pattern colours
/// DW6-7 (the pattern is one of the fixed ones the header selects).
pub static XY_MONO_PAT_FIXED: BlitShape = shape(BlitDst::Rect, BlitSrc::None, None);
/// XY_PAT_BLT_IMMEDIATE: destination DW4-5, the colour pattern inline from
/// DW6.
pub static XY_PAT_IMMEDIATE: BlitShape =
    with_inline_pattern(shape(BlitDst::Rect, BlitSrc::None, None), 6);
/// XY_SRC_COPY_CHROMA_BLT (12 DWords): XY_SRC_COPY_BLT's operands, then
/// the chroma key range DW10-11.
pub static XY_SRC_COPY_CHROMA: BlitShape = shape(BlitDst::Rect, BlitSrc::Color(8), None);
/// XY_FULL_IMMEDIATE_PATTERN_BLT: XY_SRC_COPY_BLT's operands, then the
/// colour pattern inline from DW10.
pub static XY_FULL_IMMEDIATE_PATTERN: BlitShape =
    with_inline_pattern(shape(BlitDst::Rect, BlitSrc::Color(8), None), 10);
/// XY_FULL_MONO_SRC_IMMEDIATE_PATTERN_BLT: destination DW4-5, packed
/// source DW6-7, colours DW8-9, the colour pattern inline from DW10.
pub static XY_FULL_MONO_SRC_IMMEDIATE_PATTERN: BlitShape =
    with_inline_pattern(shape(BlitDst::Rect, BlitSrc::Mono(6), None), 10);
/// XY_PAT_CHROMA_BLT (10 DWords): destination DW4-5, pattern DW6-7, the
/// chroma key range DW8-9.
pub static XY_PAT_CHROMA: BlitShape = shape(BlitDst::Rect, BlitSrc::None, Some(6));
/// XY_PAT_CHROMA_BLT_IMMEDIATE: destination DW4-5, chroma key range
/// DW6-7, the colour pattern inline from DW8.
pub static XY_PAT_CHROMA_IMMEDIATE: BlitShape =
    with_inline_pattern(shape(BlitDst::Rect, BlitSrc::None, None), 8);

/// Bytes the blitter may read from a packed 1-bpp source of `rows` rows of
/// `width` pixels: each row starts on a 16-bit word (PRM: non-text
/// monochrome sources are word aligned, the bits up to the next word
/// boundary are ignored) and its first pixel may sit at any bit of the
/// first byte (the header's 3-bit source bit position), so a row takes
/// `ceil((width + 7) / 8)` bytes rounded up to a word; the whole source is
/// rounded up to a quadword, the blitter's fetch unit. Over-counts by at
/// most a byte per row and 7 at the end, never under.
pub fn mono_bytes(width: u32, rows: u32) -> u64 {
    if width == 0 || rows == 0 {
        return 0;
    }
    let row = (u64::from(width) + 7).div_ceil(8).next_multiple_of(2);
    (row * u64::from(rows)).next_multiple_of(8)
}

/// Bytes XY_TEXT_BLT may read from its text data for a `width` x `rows`
/// rectangle: byte-packed rows take `ceil(width / 8)` bytes each;
/// bit-packed data is never longer; rounded up to a quadword.
pub fn text_bytes(width: u32, rows: u32) -> u64 {
    if width == 0 || rows == 0 {
        return 0;
    }
    (u64::from(width).div_ceil(8) * u64::from(rows)).next_multiple_of(8)
}

/// The operands of the [`BlitShape`] blit `c` (length checked against
/// [`BlitShape::min_len`] by the caller).
fn shaped_blit<'a>(c: &Command<'_>, s: &BlitShape) -> Result<CommandRepr<'a>, ReprError> {
    let h = c.header();
    let bit = |w: u32, b: u32| (w >> b) & 1 == 1;
    let dw = |i: usize| c.dw(i);
    let (rect_lo, rect_hi) = match s.dst {
        BlitDst::Rect => (2, 3),
        BlitDst::Setup => (1, 2),
    };
    let (x1, y1) = (dw(rect_lo) & 0xffff, dw(rect_lo) >> 16);
    let (x2, y2) = (dw(rect_hi) & 0xffff, dw(rect_hi) >> 16);
    let (w, rows) = if x2 <= x1 || y2 <= y1 {
        (0, 0)
    } else {
        (x2 - x1, y2 - y1)
    };
    let bpp = xy_bpp(dw(1));
    let (dst, color_src) = match s.dst {
        BlitDst::Rect => {
            let (d, src) = xy_surfaces(dw, bpp, legacy(bit(h, 11)), legacy(bit(h, 15)));
            (Some(mem(c, 4, 0, d.bytes()?, true, true)), Some(src))
        }
        BlitDst::Setup => (None, None),
    };
    let src = match s.src {
        BlitSrc::None => None,
        BlitSrc::Color(d) => {
            let bytes = match color_src {
                Some(src) => src.bytes()?,
                None => 0,
            };
            Some(mem(c, usize::from(d), 0, bytes, true, false))
        }
        BlitSrc::Mono(d) => Some(mem(c, usize::from(d), 0, mono_bytes(w, rows), true, false)),
        BlitSrc::Text(d) => Some(mem(c, usize::from(d), 0, text_bytes(w, rows), true, false)),
    };
    let pattern = s
        .pattern
        .map(|p| mem(c, usize::from(p), 0, pattern_bytes(bpp), true, false));
    if let Some(from) = s.inline_pattern {
        // 8x8 pixels of `bpp` bytes: 16 DWords per byte of depth.
        let want = usize::from(from) + 16 * bpp as usize;
        if c.len() != want {
            return Err(ReprError::InlineLength {
                name: c.spec().name,
                len: c.len(),
                want,
            });
        }
    }
    Ok(CommandRepr::ShapedBlit {
        dst,
        rect: [x1, y1, x2, y2],
        src,
        pattern,
    })
}

// ---- HCP_PAK_INSERT_OBJECT ----

/// First DWord of HCP_PAK_INSERT_OBJECT's payload (genxml gen9.xml: the
/// payload group starts at bit 64).
pub const PAK_PAYLOAD: usize = 2;
/// DWords of one HCP_PAK_INSERT_OBJECT_INDIRECT_PAYLOAD descriptor
/// (genxml: 128 bits): DW0 data size in bits, DW1-2 the 64-bit base
/// address, DW3 its memory attributes.
pub const PAK_DESCRIPTOR: usize = 4;

/// The number of indirect payload descriptors of an HCP_PAK_INSERT_OBJECT
/// of `len` DWords whose DWord 1 is `dw1`: 0 for an inline payload
/// (Indirect Payload Enable, DW1 bit 31, clear), else the whole number of
/// 4-DWord descriptors from DW2 (at least one).
pub fn pak_insert_descriptors(len: usize, dw1: u32) -> Result<usize, ReprError> {
    if dw1 >> 31 == 0 {
        return Ok(0);
    }
    let body = len.saturating_sub(PAK_PAYLOAD);
    if body == 0 || !body.is_multiple_of(PAK_DESCRIPTOR) {
        return Err(ReprError::PartialPayload);
    }
    Ok(body / PAK_DESCRIPTOR)
}

/// Bytes the PAK reads from an indirect payload of `bits` bits.
pub fn pak_payload_bytes(bits: u32) -> u64 {
    u64::from(bits).div_ceil(8)
}

/// Checks a descriptor's MEMORYADDRESSATTRIBUTES DWord (genxml: bit 9
/// Memory Compression Enable, bits 14:13 Tiled Resource Mode): the payload
/// must be plain linear memory for `[base, base + size)` to be what the
/// engine reads.
pub fn pak_payload_linear(attributes: u32) -> Result<(), ReprError> {
    if attributes >> 9 & 1 != 0 || attributes >> 13 & 3 != 0 {
        return Err(ReprError::PayloadNotLinear);
    }
    Ok(())
}

impl<'a> CommandRepr<'a> {
    /// Parses the operands of a decoded command.
    #[inline]
    pub fn parse(c: &Command<'a>) -> Result<CommandRepr<'a>, ReprError> {
        let spec = c.spec();
        let h = c.header();
        let need = |n: usize| {
            if c.len() < n {
                Err(ReprError::TooShort {
                    name: spec.name,
                    len: c.len(),
                })
            } else {
                Ok(())
            }
        };
        let bit = |w: u32, b: u32| (w >> b) & 1 == 1;
        Ok(match spec.op {
            Op::Noop | Op::Plain => CommandRepr::Plain,
            Op::BatchStart => {
                need(3)?;
                CommandRepr::BatchStart {
                    // The batch's length is found by scanning it; `size` is
                    // the minimum (one DWord).
                    target: mem(c, 1, 2, 4, !bit(h, 8), false),
                    second_level: bit(h, 22),
                    resource_streamer: bit(h, 10),
                    predicated: bit(h, 15),
                    add_offset: bit(h, 16),
                }
            }
            Op::BatchEnd => CommandRepr::BatchEnd,
            Op::CondBatchEnd => {
                need(4)?;
                // Compare Mask Mode: a QWord, mask then data (PRM; Intel's
                // media driver's Gen9 layout).
                let size = if bit(h, 19) { 8 } else { 4 };
                CommandRepr::CondBatchEnd {
                    mem: mem(c, 2, 3, size, bit(h, 22), false),
                }
            }
            Op::SetPredicate => CommandRepr::SetPredicate {
                enable: (h & 0xf) as u8,
            },
            Op::StoreDataImm => {
                need(4)?;
                // Store Qword (bit 21) or a 5-DWord form writes 8 bytes.
                let size = if bit(h, 21) || c.len() >= 5 { 8 } else { 4 };
                CommandRepr::StoreDataImm {
                    mem: mem(c, 1, 2, size, bit(h, 22), true),
                }
            }
            Op::StoreRegMem => {
                need(4)?;
                CommandRepr::StoreRegMem {
                    reg: c.dw(1) & 0x007f_fffc,
                    mem: mem(c, 2, 2, 4, bit(h, 22), true),
                }
            }
            Op::LoadRegMem => {
                need(4)?;
                CommandRepr::LoadRegMem {
                    reg: c.dw(1) & 0x007f_fffc,
                    mem: mem(c, 2, 2, 4, bit(h, 22), false),
                }
            }
            Op::LoadRegImm => {
                let pairs = c.words().get(1..).unwrap_or(&[]);
                if pairs.is_empty() || pairs.len() % 2 != 0 {
                    return Err(ReprError::OddRegisterList);
                }
                CommandRepr::LoadRegImm {
                    pairs,
                    byte_disables: h >> 8 & 0xf,
                }
            }
            Op::LoadRegReg => {
                need(3)?;
                CommandRepr::LoadRegReg {
                    src: c.dw(1) & 0x007f_fffc,
                    dst: c.dw(2) & 0x007f_fffc,
                }
            }
            Op::CopyMemMem => {
                need(5)?;
                CommandRepr::CopyMemMem {
                    dst: mem(c, 1, 2, 4, bit(h, 21), true),
                    src: mem(c, 3, 2, 4, bit(h, 22), false),
                }
            }
            Op::Atomic => {
                if c.len() != 3 && c.len() != 11 {
                    return Err(ReprError::BadAtomicLength);
                }
                let size = match (h >> 19) & 3 {
                    0 => 4,
                    1 => 8,
                    _ => 16,
                };
                CommandRepr::Atomic {
                    mem: mem(c, 1, 2, size, bit(h, 22), true),
                }
            }
            Op::FlushDw => {
                need(4)?;
                let size = if c.len() >= 5 { 8 } else { 4 };
                CommandRepr::FlushDw {
                    post_sync: PostSync::from_bits(h >> 14),
                    store_index: bit(h, 21),
                    mem: mem(c, 1, 3, size, bit(c.dw(1), 2), true),
                }
            }
            Op::PipeControl => {
                need(6)?;
                let d1 = c.dw(1);
                CommandRepr::PipeControl {
                    post_sync: PostSync::from_bits(d1 >> 14),
                    store_index: bit(d1, 21),
                    lri_post_sync: bit(d1, 23),
                    mem: mem(c, 2, 3, 8, bit(d1, 24), true),
                }
            }
            Op::SemaphoreWait => {
                need(4)?;
                CommandRepr::SemaphoreWait {
                    register_poll: bit(h, 16),
                    mem: mem(c, 2, 2, 4, bit(h, 22), false),
                }
            }
            Op::StateBaseAddress => {
                need(18)?;
                CommandRepr::StateBaseAddress(SbaView { c: *c })
            }
            Op::XyColorBlt => {
                need(7)?;
                let (d, _) = xy_blit_bytes(spec.op, |i| c.dw(i)).unwrap_or(Ok((0, 0)))?;
                CommandRepr::Blit {
                    dst: mem(c, 4, 0, d, true, true),
                    src: None,
                }
            }
            Op::XySrcCopyBlt | Op::XyFastCopyBlt => {
                need(10)?;
                let (d, s) = xy_blit_bytes(spec.op, |i| c.dw(i)).unwrap_or(Ok((0, 0)))?;
                CommandRepr::Blit {
                    dst: mem(c, 4, 0, d, true, true),
                    src: Some(mem(c, 8, 0, s, true, false)),
                }
            }
            Op::BltSetup => {
                need(10)?;
                // Gen8+ layout (64-bit addresses): DW1 BR13, DW2-3 clip
                // rectangle, DW4-5 destination, DW6-7 colours, DW8-9 the
                // pattern (XY_SETUP_BLT) or the inline mono pattern
                // (XY_SETUP_MONO_PATTERN_SL_BLT).
                let br13 = c.dw(1);
                let bpp = xy_bpp(br13);
                let pitch = br13 & 0xffff;
                if pitch & 0x8000 != 0 {
                    return Err(ReprError::NegativePitch);
                }
                let colour_pattern = Opcode::of(h) == Some(Opcode::Blt(0x01));
                CommandRepr::BltSetup {
                    dst: mem(c, 4, 0, 0, true, true),
                    pitch,
                    tiled: bit(h, 11),
                    bpp,
                    pattern: (colour_pattern && rop_uses_pattern(br13 >> 16 & 0xff))
                        .then(|| mem(c, 8, 0, pattern_bytes(bpp), true, false)),
                }
            }
            Op::BltSetupDraw => {
                need(2)?;
                let (x1, y1) = (c.dw(1) & 0xffff, c.dw(1) >> 16);
                // XY_PIXEL_BLT (2 DWords) draws one pixel; the others give
                // the bottom-right corner in DW2.
                let (x2, y2) = if c.len() == 2 {
                    (x1 + 1, y1 + 1)
                } else {
                    (c.dw(2) & 0xffff, c.dw(2) >> 16)
                };
                CommandRepr::BltSetupDraw {
                    rect: [x1, y1, x2, y2],
                }
            }
            Op::XyPatBlt | Op::XyMonoPatBlt => {
                // XY_PAT_BLT (8 DWords): DW1 BR13, DW2-3 rectangle, DW4-5
                // destination, DW6-7 pattern. XY_MONO_PAT_BLT (10 DWords):
                // the same up to DW5, then colours and the inline pattern.
                need(if matches!(spec.op, Op::XyPatBlt) {
                    8
                } else {
                    10
                })?;
                let bpp = xy_bpp(c.dw(1));
                let (dst, _) = xy_surfaces(|i| c.dw(i), bpp, legacy(bit(h, 11)), Tiling::Linear);
                let pattern =
                    matches!(spec.op, Op::XyPatBlt) && rop_uses_pattern(c.dw(1) >> 16 & 0xff);
                CommandRepr::Blit {
                    dst: mem(c, 4, 0, dst.bytes()?, true, true),
                    src: pattern.then(|| mem(c, 6, 0, pattern_bytes(bpp), true, false)),
                }
            }
            Op::XyBlit(shape) => {
                need(shape.min_len())?;
                shaped_blit(c, shape)?
            }
            other => CommandRepr::Other(other),
        })
    }
}

#[cfg(test)]
mod shaped_tests {
    use super::*;
    use crate::engine::Engine;
    use crate::scan::decode::decode;

    /// Tile shapes by hand from the PRM's tables: every tile is 4 KiB
    /// (X, Y, Yf) or 64 KiB (Ys).
    #[test]
    fn tile_geometry() {
        assert_eq!(Tiling::X.tile(4), Some((512, 8)));
        assert_eq!(Tiling::Y.tile(16), Some((128, 32)));
        let yf = [
            (1, 64, 64),
            (2, 128, 32),
            (4, 128, 32),
            (8, 256, 16),
            (16, 256, 16),
        ];
        for (bpp, w, h) in yf {
            assert_eq!(Tiling::Yf.tile(bpp), Some((w, h)), "Yf {bpp}");
            assert_eq!(Tiling::Ys.tile(bpp), Some((4 * w, 4 * h)), "Ys {bpp}");
            assert_eq!(w * u64::from(h), 4096);
        }
        assert_eq!(Tiling::Linear.tile(4), None);
        assert_eq!(Tiling::Legacy.tile(4), None);
    }

    /// Tiled extents: whole rows of tiles (pitch rounded up to whole
    /// tiles), the last one to the tile holding the right edge.
    #[test]
    fn tiled_extents() {
        let s = |tiling, bpp, pitch_dw, rows, x_end| BlitSurface {
            pitch: pitch_dw,
            tiling,
            bpp,
            rows,
            x_end,
        };
        // X, pitch 1 KiB: 9 rows are 2 tile rows; the right edge in the
        // first tile: 1 row of 8 KiB + 4 KiB.
        assert_eq!(s(Tiling::X, 4, 256, 9, 100).bytes(), Ok(8192 + 4096));
        // Y, same: 1 tile row, right edge at 300 bytes = 3 tiles.
        assert_eq!(s(Tiling::Y, 4, 256, 9, 300).bytes(), Ok(3 * 4096));
        // Legacy: the larger of the two.
        assert_eq!(s(Tiling::Legacy, 4, 256, 9, 300).bytes(), Ok(8192 + 4096));
        assert_eq!(s(Tiling::Legacy, 4, 256, 20, 1024).bytes(), Ok(8 * 4096));
        // A pitch of 640 bytes counts two X tiles per row.
        assert_eq!(
            s(Tiling::X, 4, 160, 9, 640).bytes(),
            Ok(2 * 4096 + 2 * 4096)
        );
        // Ys at 1 byte a pixel: 256-row tiles.
        assert_eq!(s(Tiling::Ys, 1, 64, 257, 256).bytes(), Ok(2 * 65536));
        // Wider than the pitch, or a negative pitch.
        assert_eq!(
            s(Tiling::Yf, 4, 32, 1, 129).bytes(),
            Err(ReprError::TiledOverrun)
        );
        assert_eq!(
            s(Tiling::Ys, 4, 0x8000, 1, 1).bytes(),
            Err(ReprError::NegativePitch)
        );
        // Fast copy fields.
        assert_eq!(fast_copy_bpp(4 << 24), 8);
        assert_eq!(fast_copy_bpp(2 << 24), 16);
        assert_eq!(fast_copy_tiling(2, true), Tiling::Yf);
        assert_eq!(fast_copy_tiling(2, false), Tiling::Y);
        assert_eq!(fast_copy_tiling(3, false), Tiling::Ys);
    }

    /// Packed 1-bpp sources, by hand from the PRM rule (rows of
    /// `ceil((w + 7) / 8)` bytes up to a 16-bit word, total up to a
    /// quadword).
    #[test]
    fn mono_source_bytes() {
        // 13 px: 20 bits -> 3 bytes -> 4 (word); 5 rows = 20 -> 24.
        assert_eq!(mono_bytes(13, 5), 24);
        // 16 px: 23 bits -> 3 -> 4; 1 row = 4 -> 8.
        assert_eq!(mono_bytes(16, 1), 8);
        // 64 px: 71 bits -> 9 -> 10; 8 rows = 80 (a quadword multiple).
        assert_eq!(mono_bytes(64, 8), 80);
        // 1 px: 1 byte -> 2; 1 row -> 8.
        assert_eq!(mono_bytes(1, 1), 8);
        // 65535 x 65535: 65542 bits -> 8193 bytes -> 8194; no overflow.
        assert_eq!(
            mono_bytes(0xffff, 0xffff),
            (8194 * 0xffff_u64).next_multiple_of(8)
        );
        assert_eq!(mono_bytes(0, 5), 0);
        assert_eq!(mono_bytes(5, 0), 0);
    }

    /// Text data: byte-packed rows of `ceil(w / 8)` bytes, up to a
    /// quadword.
    #[test]
    fn text_source_bytes() {
        assert_eq!(text_bytes(8, 8), 8);
        // 9 px: 2 bytes a row; 3 rows = 6 -> 8.
        assert_eq!(text_bytes(9, 3), 8);
        // 100 px: 13 bytes a row; 10 rows = 130 -> 136.
        assert_eq!(text_bytes(100, 10), 136);
        assert_eq!(text_bytes(0, 10), 0);
    }

    /// HCP_PAK_INSERT_OBJECT descriptors (genxml: 4 DWords from DW2) and
    /// payload sizes (bits rounded up to bytes).
    #[test]
    fn pak_insert_payloads() {
        assert_eq!(pak_insert_descriptors(2, 0), Ok(0));
        assert_eq!(pak_insert_descriptors(7, 0x7fff_ffff), Ok(0));
        assert_eq!(pak_insert_descriptors(6, 1 << 31), Ok(1));
        assert_eq!(pak_insert_descriptors(10, 1 << 31), Ok(2));
        for len in [2, 3, 5, 7, 9] {
            assert_eq!(
                pak_insert_descriptors(len, 1 << 31),
                Err(ReprError::PartialPayload)
            );
        }
        assert_eq!(pak_payload_bytes(0), 0);
        assert_eq!(pak_payload_bytes(1), 1);
        assert_eq!(pak_payload_bytes(8), 1);
        assert_eq!(pak_payload_bytes(9), 2);
        assert_eq!(pak_payload_bytes(u32::MAX), 0x2000_0000);
        // MOCS and arbitration bits are fine; compression, Yf/Ys are not.
        assert_eq!(pak_payload_linear(0x1ff & !(1 << 9)), Ok(()));
        for a in [1 << 9, 1 << 13, 2 << 13] {
            assert_eq!(pak_payload_linear(a), Err(ReprError::PayloadNotLinear));
        }
    }

    fn parse_blt(words: &[u32]) -> Result<CommandRepr<'_>, ReprError> {
        let c = decode(Engine::Blitter, words, 0).expect("decodes");
        CommandRepr::parse(&c)
    }

    /// XY_MONO_SRC_COPY_BLT, 32 bpp, pitch 1 KiB, rectangle (8,2)-(72,10):
    /// the destination spans rows 0..10 (9 whole rows and the last to the
    /// pitch), the source 8 rows of 64 px (10 bytes each).
    #[test]
    fn mono_source_copy_extents() {
        let w = [
            (2 << 29) | (0x54 << 22) | (7 << 17) | 8,
            (3 << 24) | (0xcc << 16) | 1024,
            2 << 16 | 8,
            10 << 16 | 72,
            0x1000,
            0,
            0x8000,
            0,
            0,
            !0,
        ];
        let Ok(CommandRepr::ShapedBlit {
            dst: Some(d),
            src: Some(s),
            pattern: None,
            ..
        }) = parse_blt(&w)
        else {
            panic!("{:?}", parse_blt(&w))
        };
        assert_eq!(
            (d.dword, d.addr, d.size, d.write),
            (4, 0x1000, 10 * 1024, true)
        );
        assert_eq!((s.dword, s.addr, s.size, s.write), (6, 0x8000, 80, false));
        // A negative destination pitch is malformed.
        let mut neg = w;
        neg[1] |= 0x8000;
        assert_eq!(parse_blt(&neg), Err(ReprError::NegativePitch));
    }

    /// XY_FULL_BLT (12 DWords), 16 bpp: colour source as XY_SRC_COPY_BLT's,
    /// pattern 8x8 x 2 bytes.
    #[test]
    fn full_blit_extents() {
        let w = |rop: u32| {
            [
                (2 << 29) | (0x55 << 22) | 10,
                (1 << 24) | (rop << 16) | 256,
                0,
                4 << 16 | 16,
                0x1000,
                0,
                1 << 16 | 2, // source origin (2, 1)
                512,
                0x9000,
                0,
                0x7000,
                0,
            ]
        };
        let words = w(0xf0);
        let Ok(CommandRepr::ShapedBlit {
            dst: Some(d),
            src: Some(s),
            pattern: Some(p),
            ..
        }) = parse_blt(&words)
        else {
            panic!()
        };
        // Destination: 3 rows of 256 + max(16 * 2, 256).
        assert_eq!(d.size, 3 * 256 + 256);
        // Source rows 0..5 of pitch 512, last to (2 + 16) * 2 = 36 bytes
        // (less than the pitch): 4 * 512 + 512.
        assert_eq!((s.dword, s.size), (8, 4 * 512 + 512));
        assert_eq!((p.dword, p.addr, p.size), (10, 0x7000, 64 * 2));
        // Audited whatever the raster operation.
        let words = w(0xcc);
        let Ok(CommandRepr::ShapedBlit {
            pattern: Some(p), ..
        }) = parse_blt(&words)
        else {
            panic!()
        };
        assert_eq!(p.size, 128);
    }

    /// XY_TEXT_BLT (5 DWords): rectangle in DW1-2, text data in DW3-4,
    /// destination from the setup.
    #[test]
    fn text_blit_extents() {
        let w = [
            (2 << 29) | (0x26 << 22) | 3,
            1 << 16 | 4,
            11 << 16 | 104,
            0x3000,
            0,
        ];
        let Ok(CommandRepr::ShapedBlit {
            dst: None,
            rect,
            src: Some(s),
            pattern: None,
        }) = parse_blt(&w)
        else {
            panic!()
        };
        assert_eq!(rect, [4, 1, 104, 11]);
        // 100 x 10 px: 136 bytes (see text_source_bytes).
        assert_eq!((s.dword, s.addr, s.size), (3, 0x3000, 136));
    }

    /// XY_PAT_BLT_IMMEDIATE carries exactly 8x8 pixels: 16 DWords at
    /// 8 bpp, 64 at 32 bpp, after its 6 DWords of operands.
    #[test]
    fn inline_pattern_lengths() {
        let blit = |depth: u32, len: usize| {
            let mut w = vec![0u32; len];
            w[0] = (2 << 29) | (0x72 << 22) | (len as u32 - 2);
            w[1] = depth << 24 | 0xf0 << 16 | 64;
            w[3] = 1 << 16 | 1;
            w
        };
        assert!(parse_blt(&blit(0, 22)).is_ok());
        assert!(parse_blt(&blit(1, 38)).is_ok());
        assert!(parse_blt(&blit(3, 70)).is_ok());
        for (depth, len) in [(0, 38), (3, 22), (3, 69)] {
            assert!(
                matches!(
                    parse_blt(&blit(depth, len)),
                    Err(ReprError::InlineLength { .. })
                ),
                "{depth} {len}"
            );
        }
    }

    /// Every shaped blit row of the table can hold its operands, and a row
    /// with an inline colour pattern admits exactly the 8, 16 and 32 bpp
    /// pattern sizes.
    #[test]
    fn table_rows_fit_their_shapes() {
        use crate::scan::table::{Len, COMMANDS};
        let mut n = 0;
        for s in COMMANDS {
            let Op::XyBlit(shape) = s.op else { continue };
            let Len::Field { min, max, .. } = s.len else {
                panic!("{}", s.name)
            };
            assert!(min as usize >= shape.min_len(), "{}", s.name);
            if let Some(from) = shape.inline_pattern {
                let from = u32::from(from);
                assert_eq!((min, max), (from + 16, from + 64), "{}", s.name);
            }
            n += 1;
        }
        assert_eq!(n, 14);
    }
}
