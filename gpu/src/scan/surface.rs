//! Extents of the surfaces the 3D and video engines write from state: the
//! depth, stencil and HiZ buffers, pictures, and the video pipes' buffers
//! whose size follows the frame. Pure arithmetic over command DWords; the
//! rules, with their sources, are in [`super::operands`]' module docs.
//!
//! Every function here over-approximates: an extent it returns covers
//! every byte the engine may touch for the state it is given (a larger
//! alignment, a larger sample factor, the largest of the drivers' sizes),
//! so a surface that fits may be refused near the end of a slice, never
//! the reverse. What it cannot bound it refuses ([`SurfaceError`]).

use super::operands::Size;

/// Why a surface's extent cannot be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SurfaceError {
    /// A layout the scanner does not model, named.
    NotModelled(&'static str),
}

impl SurfaceError {
    /// The reason, for a rejection.
    pub const fn why(self) -> &'static str {
        match self {
            SurfaceError::NotModelled(what) => what,
        }
    }
}

/// A tiling: bytes across and rows down of one tile (linear: 1 x 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Bytes of one tile row.
    pub bytes: u64,
    /// Rows of one tile.
    pub rows: u64,
}

impl Tile {
    /// Not tiled.
    pub const LINEAR: Tile = Tile { bytes: 1, rows: 1 };
    /// Tile X: 512 bytes x 8 rows.
    pub const X: Tile = Tile {
        bytes: 512,
        rows: 8,
    };
    /// Tile Y (legacy): 128 bytes x 32 rows; also HiZ's tiling.
    pub const Y: Tile = Tile {
        bytes: 128,
        rows: 32,
    };
}

/// Bytes from the base of a surface of `pitch` bytes a row, tiled by
/// `tile`, to the end of the last byte the engine touches when it reaches
/// `rows` rows of `row_bytes` bytes each. A tiled surface is laid out in
/// whole tile rows of `pitch * tile.rows` bytes; a row wider than the pitch
/// spills its far tiles into the next tile row, so the last tile row counts
/// as many tiles as the row reaches. `rows` or `row_bytes` 0 touch nothing.
pub fn tiled_extent(pitch: u64, rows: u64, row_bytes: u64, tile: Tile) -> u64 {
    if rows == 0 || row_bytes == 0 {
        return 0;
    }
    if tile == Tile::LINEAR {
        return (rows - 1) * pitch + row_bytes;
    }
    let tile_rows = rows.div_ceil(tile.rows);
    let last = pitch.max(row_bytes.div_ceil(tile.bytes) * tile.bytes);
    tile.rows * ((tile_rows - 1) * pitch + last)
}

/// Horizontal and vertical sample factors of an interleaved multisampled
/// depth, stencil or HiZ surface (PRM vol 5, "Multisampled surfaces": the
/// depth and stencil buffers interleave their samples; isl's
/// `isl_msaa_interleaved_scale_px_to_sa`) for `log2` samples (3DSTATE_
/// MULTISAMPLE "Number of Multisamples", bits 3:1).
pub const fn interleave(log2: u32) -> (u64, u64) {
    match log2 {
        0 => (1, 1),
        1 => (2, 1),
        2 => (2, 2),
        3 => (4, 2),
        _ => (4, 4),
    }
}

/// The most samples a Gen9 depth buffer may have (16, log2 4).
pub const MAX_SAMPLES_LOG2: u32 = 4;

/// Level alignment the scanner assumes for depth, stencil and HiZ mip
/// trees, in samples: the largest Gen9 uses for any of them (depth 4 or 8
/// by 4, stencil 8 by 8, HiZ 16 by 16; PRM vol 5 "Alignment Unit Size").
pub const LEVEL_ALIGN: u64 = 16;

/// The far corner (`x_end` samples, `y_end` rows) of mip level `lod` of a
/// 2D miptree whose level 0 is `w` x `h` samples, in the Gen9 2D layout
/// (PRM vol 5 "2D Surfaces": level 0 at the top, level 1 below it, levels
/// 2 and on stacked to the right of level 1), each level aligned to
/// [`LEVEL_ALIGN`].
pub fn mip_end(w: u64, h: u64, lod: u32) -> (u64, u64) {
    let al = |v: u64| v.div_ceil(LEVEL_ALIGN) * LEVEL_ALIGN;
    let minify = |v: u64, l: u32| (v >> l.min(63)).max(1);
    let (mut x, mut y) = (0, 0);
    for l in 0..lod {
        if l == 1 {
            x += al(minify(w, 1));
        } else {
            y += al(minify(h, l));
        }
    }
    (x + al(minify(w, lod)), y + al(minify(h, lod)))
}

/// 3DSTATE_DEPTH_BUFFER as the scanner reads it (DWord 1-7, genxml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Depth {
    /// Surface pitch in bytes.
    pub pitch: u64,
    /// Bytes per sample of the format.
    pub bpp: u64,
    /// Level 0 width and height, in pixels.
    pub width: u64,
    /// See `width`.
    pub height: u64,
    /// The mip level rendered to.
    pub lod: u32,
    /// Array slices (or 3D depth slices) the engine may address.
    pub slices: u64,
    /// Rows between slices.
    pub qpitch: u64,
    /// HiZ enabled (DWord 1 bit 22).
    pub hiz: bool,
}

/// The depth buffer of the 8 DWords `w` of a 3DSTATE_DEPTH_BUFFER, or
/// `None` for a SURFTYPE_NULL one (no depth or stencil surface, which Mesa
/// emits when no depth buffer is bound).
pub fn depth(w: &[u32]) -> Result<Option<Depth>, SurfaceError> {
    let dw = |i: usize| w.get(i).copied().unwrap_or(0);
    let (d1, d4, d5, d6, d7) = (dw(1), dw(4), dw(5), dw(6), dw(7));
    let bpp = match d1 >> 18 & 7 {
        // D32_FLOAT, D24_UNORM_X8_UINT.
        1 | 3 => 4,
        // D16_UNORM.
        5 => 2,
        _ => return Err(SurfaceError::NotModelled("depth buffer surface format")),
    };
    // The render target view's last slice (Minimum Array Element plus
    // Render Target View Extent), whatever Depth says.
    let view = u64::from(d5 >> 10 & 0x7ff) + u64::from(d7 >> 21) + 1;
    let depth = u64::from(d5 >> 21) + 1;
    let slices = match d1 >> 29 {
        7 => return Ok(None),
        // 2D, 3D: Depth slices.
        1 | 2 => depth.max(view),
        // Cube: six faces per element.
        3 => (6 * depth).max(view),
        _ => {
            return Err(SurfaceError::NotModelled(
                "1D depth buffer (Gen9 depth surfaces are 2D)",
            ))
        }
    };
    if d6 >> 30 != 0 {
        return Err(SurfaceError::NotModelled(
            "Yf/Ys depth buffer (Tiled Resource Mode)",
        ));
    }
    Ok(Some(Depth {
        pitch: u64::from(d1 & 0x3_ffff) + 1,
        bpp,
        width: u64::from(d4 >> 4 & 0x3fff) + 1,
        height: u64::from(d4 >> 18) + 1,
        lod: d4 & 0xf,
        slices,
        qpitch: u64::from(d7 & 0x7fff) * 4,
        hiz: d1 >> 22 & 1 == 1,
    }))
}

/// Makes the 3DSTATE_DEPTH_BUFFER `w` SURFTYPE_NULL when its surface is
/// one [`depth`] cannot size (1D, a reserved format) and it enables
/// nothing that writes it (Depth Write Enable, Stencil Write Enable and
/// Hierarchical Depth Buffer Enable clear, DWord 1 bits 28, 27, 22): igt's
/// all-zero depth buffer (`gen9_emit_depth` in `lib/rendercopy_gen9.c`:
/// SURFTYPE_1D of format 0 at address 0), which the guest uses for
/// nothing. Left as it is, a later 3DSTATE_WM_DEPTH_STENCIL enabling the
/// depth test (state the scanner does not track) would make the engine
/// read it at an address no audit covered; a NULL depth buffer is never
/// read or written. Returns whether `w` changed.
pub fn null_unsizable_depth(w: &mut [u32]) -> bool {
    const WRITERS: u32 = 1 << 28 | 1 << 27 | 1 << 22;
    let Some(d1) = w.get_mut(1) else {
        return false;
    };
    let unused = *d1 & WRITERS == 0 && *d1 >> 29 != 7;
    if !unused {
        return false;
    }
    let probe = [0, *d1, 0, 0, 0, 0, 0, 0];
    if depth(&probe).is_ok() {
        return false;
    }
    *d1 = (*d1 & !(7 << 29)) | 7 << 29;
    true
}

impl Depth {
    /// The far corner of the rendered level at `samples_log2` samples.
    fn corner(&self, samples_log2: u32) -> (u64, u64) {
        let (fx, fy) = interleave(samples_log2);
        mip_end(self.width * fx, self.height * fy, self.lod)
    }

    /// Bytes of the depth surface at `samples_log2` samples: every slice's
    /// rows up to the rendered level, Y-tiled.
    pub fn bytes(&self, samples_log2: u32) -> u64 {
        let (x, y) = self.corner(samples_log2);
        let rows = (self.slices - 1) * self.qpitch + y;
        tiled_extent(self.pitch, rows, x * self.bpp, Tile::Y)
    }

    /// Bytes of the separate stencil buffer of 3DSTATE_STENCIL_BUFFER `w`
    /// for this depth buffer: W-tiled 8-bit samples of the depth's
    /// dimensions, each W tile (64 x 64 samples) stored as 128 bytes x 32
    /// rows of the programmed pitch (the stencil pitch is twice its rows'
    /// width: PRM vol 2a 3DSTATE_STENCIL_BUFFER), slices QPitch x 4 rows
    /// apart.
    pub fn stencil_bytes(&self, w: &[u32], samples_log2: u32) -> u64 {
        let dw = |i: usize| w.get(i).copied().unwrap_or(0);
        let pitch = u64::from(dw(1) & 0x1_ffff) + 1;
        let qpitch = u64::from(dw(4) & 0x7fff) * 4;
        let (x, y) = self.corner(samples_log2);
        let rows = (self.slices - 1) * qpitch + y;
        // W tiles: 64 rows and 64 samples per 4 KiB tile, laid 128 bytes
        // of pitch across.
        let tile_rows = rows.div_ceil(64);
        let last = pitch.max(x.div_ceil(64) * 128);
        32 * ((tile_rows - 1) * pitch + last)
    }

    /// Bytes of the HiZ buffer of 3DSTATE_HIER_DEPTH_BUFFER `w` for this
    /// depth buffer: 16 bytes per 8 x 4 depth samples, Y-tiled, slices
    /// QPitch HiZ rows apart (QPitch counts depth rows in units of 4,
    /// which is one HiZ row each).
    pub fn hiz_bytes(&self, w: &[u32], samples_log2: u32) -> u64 {
        let dw = |i: usize| w.get(i).copied().unwrap_or(0);
        let pitch = u64::from(dw(1) & 0x1_ffff) + 1;
        let qpitch = u64::from(dw(4) & 0x7fff);
        let (x, y) = self.corner(samples_log2);
        let rows = (self.slices - 1) * qpitch + y.div_ceil(4);
        tiled_extent(pitch, rows, x.div_ceil(8) * 16, Tile::Y)
    }
}

/// The chroma planes of a picture format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chroma {
    /// Packed or single-plane: no chroma plane.
    None,
    /// Chroma planes of half the rows (4:2:0).
    Half,
    /// Chroma planes of as many rows as luma (4:2:2, 4:1:1 planar, or a
    /// format the scanner does not know).
    Full,
}

/// A picture's layout as a video surface state gives it: pitch, tiling,
/// bytes per pixel of its first plane and where its chroma planes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picture {
    /// Bytes per row.
    pub pitch: u64,
    /// Tiling.
    pub tile: Tile,
    bpp: u64,
    chroma: Chroma,
    /// First row and byte of the Cb (or interleaved CbCr) plane.
    cb: (u64, u64),
    /// First row and byte of the Cr plane.
    cr: (u64, u64),
    /// Width and height the surface state itself gives, in pixels (0:
    /// none, the frame size alone counts).
    pub own: (u64, u64),
}

/// Bytes per pixel and chroma planes of the video surface format `code`
/// (MFX_SURFACE_STATE "Surface Format", also used by VDENC, SFC and HCP
/// surface states: PRM vol 2a).
fn format(code: u32) -> (u64, Chroma) {
    match code {
        // YCRCB_NORMAL, _SWAPUVY, _SWAPUV, _SWAPY: packed 4:2:2.
        0..=3 => (2, Chroma::None),
        // PLANAR_420_8.
        4 => (1, Chroma::Half),
        // PLANAR_411_8, PLANAR_422_8.
        5 | 6 => (1, Chroma::Full),
        // R10G10B10A2_UNORM, R8G8B8A8_UNORM.
        8 | 9 => (4, Chroma::None),
        // R8B8_UNORM (CrCb).
        10 => (2, Chroma::None),
        // R8_UNORM, Y8_UNORM.
        11 | 12 => (1, Chroma::None),
        // P010 (HCP): 16-bit 4:2:0.
        13 => (2, Chroma::Half),
        // Anything else: the widest pixel, full chroma planes.
        _ => (8, Chroma::Full),
    }
}

impl Picture {
    /// The layout of an MFX_SURFACE_STATE-style surface: `dims` DWord
    /// (width 17:4, height 31:18, minus one; 0 when the state has none),
    /// `layout` DWord (tile walk 0, tiled 1, pitch minus one 19:3, format
    /// 31:28), `cb` and `cr` DWords (Y offset 14:0 / 15:0, X offset 30:16 /
    /// 28:16). VDENC surface states and SFC_STATE's output surface use the
    /// same fields.
    pub fn mfx(dims: Option<u32>, layout: u32, cb: u32, cr: u32) -> Picture {
        let tile = match (layout >> 1 & 1, layout & 1) {
            (0, _) => Tile::LINEAR,
            (_, 0) => Tile::X,
            _ => Tile::Y,
        };
        let (bpp, chroma) = format(layout >> 28);
        let own = dims.map_or((0, 0), |d| {
            (u64::from(d >> 4 & 0x3fff) + 1, u64::from(d >> 18) + 1)
        });
        Picture {
            pitch: u64::from(layout >> 3 & 0x1_ffff) + 1,
            tile,
            bpp,
            chroma,
            cb: (u64::from(cb & 0x7fff), u64::from(cb >> 16 & 0x7fff)),
            cr: (u64::from(cr & 0xffff), u64::from(cr >> 16 & 0x1fff)),
            own,
        }
    }

    /// The layout of an HCP_SURFACE_STATE (DWord 1: pitch minus one 16:0;
    /// DWord 2: Cb Y offset 14:0, format 31:28). HCP pictures are Y-tiled.
    pub fn hcp(d1: u32, d2: u32) -> Picture {
        let (bpp, chroma) = format(d2 >> 28);
        Picture {
            pitch: u64::from(d1 & 0x1_ffff) + 1,
            tile: Tile::Y,
            bpp,
            chroma,
            cb: (u64::from(d2 & 0x7fff), 0),
            cr: (0, 0),
            own: (0, 0),
        }
    }

    /// Bytes of the picture at `width` x `height` pixels (at least its
    /// own size): luma rows, and each chroma plane from its offset.
    pub fn bytes(&self, width: u64, height: u64) -> u64 {
        let w = width.max(self.own.0);
        let h = height.max(self.own.1);
        let row = w * self.bpp;
        let chroma_rows = match self.chroma {
            Chroma::None => 0,
            Chroma::Half => h.div_ceil(2),
            Chroma::Full => h,
        };
        let (rows, row_bytes) = if chroma_rows == 0 {
            (h, row)
        } else {
            let plane = |(y, x): (u64, u64)| (y + chroma_rows, x * self.bpp + row);
            let (cb_rows, cb_bytes) = plane(self.cb);
            let (cr_rows, cr_bytes) = plane(self.cr);
            (h.max(cb_rows).max(cr_rows), row.max(cb_bytes).max(cr_bytes))
        };
        tiled_extent(self.pitch, rows, row_bytes, self.tile)
    }
}

impl Size {
    /// Bytes for a frame of `width` x `height` pixels.
    pub fn bytes(&self, width: u64, height: u64) -> u64 {
        let cols = width.div_ceil(16);
        let rows = height.div_ceil(16);
        u64::from(self.fixed)
            + u64::from(self.per_col) * cols
            + u64::from(self.per_row) * rows
            + u64::from(self.per_block) * cols * rows
    }
}

/// Bytes of SFC_STATE's AVS or IEF line buffer: five 64-byte cache lines
/// per 8 pixels of the largest frame dimension the state gives (the most
/// either line buffer takes per 8 pixels of its frame's width or height in
/// the media driver's sizes: AVS 3 per 8 columns in VD mode, 5 per 8 rows
/// in VEBOX mode; IEF 2 per 8 rows).
pub fn sfc_line_bytes(w: &[u32]) -> u64 {
    let dw = |i: usize| w.get(i).copied().unwrap_or(0);
    let dims = [dw(2), dw(5), dw(7), dw(8)];
    let largest = dims
        .iter()
        .flat_map(|&d| [d & 0xfff, d >> 16 & 0xfff])
        .max()
        .unwrap_or(0);
    (u64::from(largest) + 1).div_ceil(8) * 5 * 64
}

/// Bytes of SFC_STATE's output frame: the output surface (DWord 29:
/// tiling, pitch, format; DWord 30/31: U and V offsets) at the output
/// frame size (DWord 7: width 11:0, height 27:16, minus one).
pub fn sfc_output_bytes(w: &[u32]) -> u64 {
    let dw = |i: usize| w.get(i).copied().unwrap_or(0);
    let p = Picture::mfx(None, dw(29), dw(30), dw(31));
    let d7 = dw(7);
    p.bytes(u64::from(d7 & 0xfff) + 1, u64::from(d7 >> 16 & 0xfff) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_extent_counts_whole_tile_rows_and_spill() {
        // 1 row of 64 bytes, pitch 512, Y-tiled: one tile row of 32 rows.
        assert_eq!(tiled_extent(512, 1, 64, Tile::Y), 32 * 512);
        // 33 rows: two tile rows.
        assert_eq!(tiled_extent(512, 33, 512, Tile::Y), 2 * 32 * 512);
        // A row wider than the pitch spills into the next tile row.
        assert_eq!(tiled_extent(512, 1, 1024, Tile::Y), 32 * 1024);
        assert_eq!(tiled_extent(100, 3, 40, Tile::LINEAR), 240);
        assert_eq!(tiled_extent(100, 0, 40, Tile::Y), 0);
    }

    #[test]
    fn mip_levels_follow_the_gen9_2d_layout() {
        // 64 x 64: level 0 ends at (64, 64); level 1 below it (32 more
        // rows); level 2 right of level 1.
        assert_eq!(mip_end(64, 64, 0), (64, 64));
        assert_eq!(mip_end(64, 64, 1), (32, 96));
        assert_eq!(mip_end(64, 64, 2), (32 + 16, 64 + 16));
        assert_eq!(mip_end(64, 64, 3), (32 + 16, 64 + 16 + 16));
    }

    fn depth_words(pitch: u32, w: u32, h: u32) -> [u32; 8] {
        [
            0,
            1 << 29 | 1 << 28 | 1 << 18 | (pitch - 1),
            0,
            0,
            (h - 1) << 18 | (w - 1) << 4,
            0,
            0,
            0,
        ]
    }

    #[test]
    fn depth_buffer_extent_is_its_surface() {
        // 256 x 64 D32, pitch 1024: 64 rows = 2 Y tile rows.
        let d = depth(&depth_words(1024, 256, 64)).unwrap().unwrap();
        assert_eq!(d.bytes(0), 64 * 1024);
        // 16x interleaved samples: 1024 x 256 samples, rows of 4 KiB
        // spilling past the 1 KiB pitch in the last of 8 tile rows.
        assert_eq!(d.bytes(4), 32 * (7 * 1024 + 4096));
        // Null surface: none; 1D: refused.
        let mut null = depth_words(1024, 256, 64);
        null[1] |= 7 << 29;
        assert_eq!(depth(&null), Ok(None));
        let mut one_d = depth_words(1024, 256, 64);
        one_d[1] &= !(7 << 29);
        assert!(depth(&one_d).is_err());
    }
}
