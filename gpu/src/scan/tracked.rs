//! State that later commands consume, tracked per submission, and the one
//! declaration of which command consumes which state ([`CONSUMERS`]).
//!
//! A state command ([`Tracked`]: the depth packet, 3DSTATE_MULTISAMPLE,
//! the video pipes' mode, surface, buffer and picture states, SFC_STATE)
//! leaves its DWords in the engine context; a later command (a depth/HiZ
//! operation, a video object, HUC_START, SFC_FRAME_START) makes the
//! engine read and write where they point, at sizes they give. The
//! context may hold another vGPU's state or the host addresses of a vGPU
//! before it migrated, so such a command is accepted only when every state
//! it consumes was set, and audited, in the same submission on every path
//! ([`super::Reason::UnseenState`] otherwise). The scanner keeps the guest
//! DWords of each tracked command as it was set ([`TrackedState`]) and
//! audits, when a command consumes them, the extents the operand layouts
//! declare ([`super::operands::Extent::Pipe`]), sized from that state
//! ([`super::surface`]).
//!
//! The depth packet (3DSTATE_DEPTH_BUFFER, 3DSTATE_HIER_DEPTH_BUFFER,
//! 3DSTATE_STENCIL_BUFFER) is audited where it is set, because the depth
//! buffer gives the dimensions of all three and comes first: HiZ and
//! stencil buffers must follow it in the submission, and until both have,
//! the packet is open. A draw (which keeps using a packet set by an earlier
//! submission of the same vGPU, audited then) is refused while the packet
//! is open, and so is a submission that ends with it open: the context's
//! HiZ and stencil buffers would be used at dimensions they were not
//! audited for. A 3DSTATE_MULTISAMPLE raising the sample count above the
//! one the packet was audited for re-audits the packet if this submission
//! set it, and opens it otherwise; 3DSTATE_WM_HZ_OP, which clears and
//! resolves the packet's surfaces at its own sample count, needs the
//! packet set in the submission and re-audits it at that count.
//!
//! Joining two paths ([`TrackedState::join`]) keeps a state only when both
//! set it to the same DWords, and keeps the depth packet open when either
//! left it open: a command after the join sees only what every path set.

use super::operands::{self as o, Layout};
use super::surface::{self, Depth, SurfaceError};

/// The pipe a tracked state belongs to: its mode-select command decides
/// which of its fields are used ([`super::operands::When::PipeMode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pipe {
    /// 3D: the depth packet and the sample count.
    Render,
    /// MFX (MFD decode, MFC encode).
    Mfx,
    /// HCP (HEVC, VP9).
    Hcp,
    /// VDENC (with the MFX PAK).
    Vdenc,
    /// HuC.
    Huc,
    /// SFC.
    Sfc,
}

macro_rules! tracked {
    ($($(#[$doc:meta])* $v:ident = ($cmd:literal, $words:literal, $keys:literal, $pipe:ident, $layout:expr),)*) => {
        /// A state command whose DWords later commands consume.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Tracked {
            $($(#[$doc])* $v,)*
        }

        impl Tracked {
            /// Every tracked state, in declaration order.
            pub const ALL: &'static [Tracked] = &[$(Tracked::$v,)*];

            /// The command that sets it (genxml name).
            pub const fn command(self) -> &'static str {
                match self {
                    $(Tracked::$v => $cmd,)*
                }
            }

            /// DWords of the command kept (a prefix holding every field a
            /// consumer reads).
            const fn words(self) -> usize {
                match self {
                    $(Tracked::$v => $words,)*
                }
            }

            /// Instances kept apart by the command's surface ID (1: one).
            const fn keys(self) -> usize {
                match self {
                    $(Tracked::$v => $keys,)*
                }
            }

            /// Its pipe.
            pub const fn pipe(self) -> Pipe {
                match self {
                    $(Tracked::$v => Pipe::$pipe,)*
                }
            }

            /// The operand layout whose fields a consumer audits.
            pub const fn layout(self) -> Option<&'static Layout> {
                match self {
                    $(Tracked::$v => $layout,)*
                }
            }
        }

        impl TrackedState {
            /// [`TrackedState::record`] of a state known only at run
            /// time: one arm per state, each with its sizes constant.
            #[inline(always)]
            pub fn record_any(&mut self, t: Tracked, w: &[u32]) {
                match t {
                    $(Tracked::$v => self.record(Tracked::$v, w),)*
                }
            }
        }
    };
}

tracked! {
    /// 3DSTATE_DEPTH_BUFFER.
    DepthBuffer = ("3DSTATE_DEPTH_BUFFER", 8, 1, Render, None),
    /// 3DSTATE_HIER_DEPTH_BUFFER.
    HierDepth = ("3DSTATE_HIER_DEPTH_BUFFER", 5, 1, Render, None),
    /// 3DSTATE_STENCIL_BUFFER.
    Stencil = ("3DSTATE_STENCIL_BUFFER", 5, 1, Render, None),
    /// 3DSTATE_MULTISAMPLE (the sample count).
    Multisample = ("3DSTATE_MULTISAMPLE", 2, 1, Render, None),
    /// MFX_PIPE_MODE_SELECT.
    MfxPipeMode = ("MFX_PIPE_MODE_SELECT", 2, 1, Mfx, None),
    /// MFX_SURFACE_STATE, per Surface ID (DWord 1 bits 3:0).
    MfxSurface = ("MFX_SURFACE_STATE", 6, 16, Mfx, None),
    /// MFX_PIPE_BUF_ADDR_STATE.
    MfxPipeBuf = ("MFX_PIPE_BUF_ADDR_STATE", 68, 1, Mfx, Some(&o::MFX_PIPE_BUF_ADDR)),
    /// MFX_IND_OBJ_BASE_ADDR_STATE.
    MfxIndObj = ("MFX_IND_OBJ_BASE_ADDR_STATE", 26, 1, Mfx, Some(&o::MFX_IND_OBJ_BASE_ADDR)),
    /// MFX_BSP_BUF_BASE_ADDR_STATE.
    MfxBsp = ("MFX_BSP_BUF_BASE_ADDR_STATE", 10, 1, Mfx, Some(&o::MFX_BSP_BUF_BASE_ADDR)),
    /// MFX_AVC_DIRECTMODE_STATE.
    MfxAvcDirect = ("MFX_AVC_DIRECTMODE_STATE", 71, 1, Mfx, Some(&o::MFX_AVC_DIRECTMODE)),
    /// MFX_VC1_DIRECTMODE_STATE.
    MfxVc1Direct = ("MFX_VC1_DIRECTMODE_STATE", 7, 1, Mfx, Some(&o::MFX_VC1_DIRECTMODE)),
    /// MFX_VP8_BSP_BUF_BASE_ADDR_STATE.
    MfxVp8Bsp = ("MFX_VP8_BSP_BUF_BASE_ADDR_STATE", 32, 1, Mfx, Some(&o::MFX_VP8_BSP_BUF_BASE_ADDR)),
    /// MFX_VP8_PIC_STATE (frame size, probability and segment buffers).
    MfxVp8Pic = ("MFX_VP8_PIC_STATE", 38, 1, Mfx, Some(&o::MFX_VP8_PIC)),
    /// MFX_DBK_OBJECT (its own buffers, sized by the pipe).
    MfxDbk = ("MFX_DBK_OBJECT", 13, 1, Mfx, Some(&o::MFX_DBK_OBJECT)),
    /// MFX_AVC_IMG_STATE (frame size in macroblocks, DWord 2).
    MfxAvcImg = ("MFX_AVC_IMG_STATE", 3, 1, Mfx, None),
    /// MFX_MPEG2_PIC_STATE (frame size in macroblocks, DWord 3).
    MfxMpeg2Pic = ("MFX_MPEG2_PIC_STATE", 4, 1, Mfx, None),
    /// MFD_VC1_LONG_PIC_STATE (frame size in macroblocks, DWord 1).
    MfxVc1Pic = ("MFD_VC1_LONG_PIC_STATE", 2, 1, Mfx, None),
    /// MFX_JPEG_PIC_STATE (frame size in 8x8 blocks, DWord 2).
    MfxJpegPic = ("MFX_JPEG_PIC_STATE", 3, 1, Mfx, None),
    /// HCP_PIPE_MODE_SELECT.
    HcpPipeMode = ("HCP_PIPE_MODE_SELECT", 2, 1, Hcp, None),
    /// HCP_SURFACE_STATE, per Surface ID (DWord 1 bits 31:28).
    HcpSurface = ("HCP_SURFACE_STATE", 3, 16, Hcp, None),
    /// HCP_PIPE_BUF_ADDR_STATE.
    HcpPipeBuf = ("HCP_PIPE_BUF_ADDR_STATE", 104, 1, Hcp, Some(&o::HCP_PIPE_BUF_ADDR)),
    /// HCP_IND_OBJ_BASE_ADDR_STATE.
    HcpIndObj = ("HCP_IND_OBJ_BASE_ADDR_STATE", 14, 1, Hcp, Some(&o::HCP_IND_OBJ_BASE_ADDR)),
    /// HCP_PIC_STATE (HEVC frame size in minimum coding blocks).
    HcpPic = ("HCP_PIC_STATE", 3, 1, Hcp, None),
    /// HCP_VP9_PIC_STATE (VP9 frame and reference frame sizes).
    HcpVp9Pic = ("HCP_VP9_PIC_STATE", 10, 1, Hcp, None),
    /// VDENC_PIPE_MODE_SELECT.
    VdencPipeMode = ("VDENC_PIPE_MODE_SELECT", 2, 1, Vdenc, None),
    /// VDENC_SRC_SURFACE_STATE.
    VdencSource = ("VDENC_SRC_SURFACE_STATE", 6, 1, Vdenc, None),
    /// VDENC_REF_SURFACE_STATE.
    VdencReference = ("VDENC_REF_SURFACE_STATE", 6, 1, Vdenc, None),
    /// VDENC_DS_REF_SURFACE_STATE.
    VdencDownscaled = ("VDENC_DS_REF_SURFACE_STATE", 6, 1, Vdenc, None),
    /// VDENC_PIPE_BUF_ADDR_STATE.
    VdencPipeBuf = ("VDENC_PIPE_BUF_ADDR_STATE", 38, 1, Vdenc, Some(&o::VDENC_PIPE_BUF_ADDR)),
    /// VDENC_IMG_STATE (frame size in macroblocks, DWords 3 and 5).
    VdencImg = ("VDENC_IMG_STATE", 6, 1, Vdenc, None),
    /// HUC_DMEM_STATE.
    HucDmem = ("HUC_DMEM_STATE", 6, 1, Huc, None),
    /// HUC_VIRTUAL_ADDR_STATE.
    HucVirtual = ("HUC_VIRTUAL_ADDR_STATE", 49, 1, Huc, Some(&o::HUC_VIRTUAL_ADDR)),
    /// HUC_IND_OBJ_BASE_ADDR_STATE.
    HucIndObj = ("HUC_IND_OBJ_BASE_ADDR_STATE", 11, 1, Huc, Some(&o::HUC_IND_OBJ_BASE_ADDR)),
    /// SFC_STATE.
    Sfc = ("SFC_STATE", 1, 1, Sfc, None),
}

impl Tracked {
    const fn bit(self) -> u64 {
        1 << self as u8
    }

    /// The tracked state the command `name` sets, if any.
    pub const fn set_by(name: &str) -> Option<Tracked> {
        let mut i = 0;
        while i < Tracked::ALL.len() {
            if same(Tracked::ALL[i].command(), name) {
                return Some(Tracked::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// First DWord of its storage in [`TrackedState`].
    #[inline(always)]
    fn offset(self) -> usize {
        OFFSETS.get(self as usize).copied().unwrap_or(0)
    }
}

/// [`Tracked::offset`] of each tracked state, by discriminant.
const OFFSETS: [usize; Tracked::ALL.len()] = {
    let mut out = [0; Tracked::ALL.len()];
    let mut at = 0;
    let mut i = 0;
    while i < Tracked::ALL.len() {
        out[Tracked::ALL[i] as usize] = at;
        at += Tracked::ALL[i].words() * Tracked::ALL[i].keys();
        i += 1;
    }
    out
};

/// Where each tracked state is kept, by discriminant: first DWord, first
/// instance slot, DWords per instance, instances.
#[derive(Clone, Copy)]
struct Place {
    offset: u16,
    slot: u8,
    words: u8,
    keys: u8,
}

const PLACES: [Place; Tracked::ALL.len()] = {
    let mut out = [Place {
        offset: 0,
        slot: 0,
        words: 0,
        keys: 0,
    }; Tracked::ALL.len()];
    let mut i = 0;
    while i < Tracked::ALL.len() {
        let t = Tracked::ALL[i];
        out[t as usize] = Place {
            offset: OFFSETS[t as usize] as u16,
            slot: SLOTS[t as usize] as u8,
            words: t.words() as u8,
            keys: t.keys() as u8,
        };
        i += 1;
    }
    out
};

/// [`Tracked::slot`] of each tracked state, by discriminant.
const SLOTS: [usize; Tracked::ALL.len()] = {
    let mut out = [0; Tracked::ALL.len()];
    let mut at = 0;
    let mut i = 0;
    while i < Tracked::ALL.len() {
        out[Tracked::ALL[i] as usize] = at;
        at += Tracked::ALL[i].keys();
        i += 1;
    }
    out
};

const fn same(a: &str, b: &str) -> bool {
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

/// DWords kept for all tracked states.
const STORAGE: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < Tracked::ALL.len() {
        n += Tracked::ALL[i].words() * Tracked::ALL[i].keys();
        i += 1;
    }
    n
};

/// A command that consumes state set earlier, and which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Consumer {
    /// The command (genxml name).
    pub command: &'static str,
    /// The state it needs set in the same submission: each group is
    /// satisfied by any one of its members (e.g. any codec's picture
    /// state for the frame size). Every set member's layout is audited.
    pub needs: &'static [&'static [Tracked]],
    /// Indirect objects it reads or writes through, as (the indirect base
    /// state, a mask of the indexes of its layout's bounded fields): that
    /// state must be set in the submission, and each of those objects must
    /// have a non-zero upper bound, the only bound on their offsets.
    pub bounded: Option<(Tracked, u8)>,
    /// It uses the depth packet the engine holds: refused while the
    /// packet is half set.
    pub settled_depth: bool,
}

impl Consumer {
    /// It consumes nothing but a settled depth packet (a draw): the fast
    /// loop checks that itself.
    pub const fn only_settled_depth(&self) -> bool {
        self.needs.is_empty() && self.bounded.is_none()
    }
}

use Tracked as T;

/// The MFX pipe every MFX object uses: mode, pictures, buffers, indirect
/// objects.
const MFX: [&[Tracked]; 4] = [
    &[T::MfxPipeMode],
    &[T::MfxSurface],
    &[T::MfxPipeBuf],
    &[T::MfxIndObj],
];
/// The HCP pipe: likewise, with the frame size of either codec.
const HCP: [&[Tracked]; 5] = [
    &[T::HcpPipeMode],
    &[T::HcpSurface],
    &[T::HcpPipeBuf],
    &[T::HcpIndObj],
    &[T::HcpPic, T::HcpVp9Pic],
];
/// Bit masks of MFX_IND_OBJ_BASE_ADDR_STATE's objects (layout order).
const BITSTREAM: u8 = 1;
const MV: u8 = 1 << 1;
const IT: u8 = 1 << 2 | 1 << 3;
const PAK_BSE: u8 = 1 << 4;
/// HCP_IND_OBJ_BASE_ADDR_STATE's bitstream and PAK-BSE objects.
const HCP_BITSTREAM: u8 = 1;
const HCP_PAK_BSE: u8 = 1 << 2;

const fn consumer(
    command: &'static str,
    needs: &'static [&'static [Tracked]],
    bounded: Option<(Tracked, u8)>,
) -> Consumer {
    Consumer {
        command,
        needs,
        bounded,
        settled_depth: false,
    }
}

/// An MFX object: its needs, and the MFX indirect objects it uses.
const fn mfx(command: &'static str, needs: &'static [&'static [Tracked]], bounded: u8) -> Consumer {
    consumer(command, needs, Some((T::MfxIndObj, bounded)))
}

/// Every command that consumes state set by earlier commands, and the
/// state it consumes (PRM vol 2a; the media driver's command order per
/// codec: `codechal_decode_*`, `codechal_encode_*`, `codechal_vdenc_avc`).
/// The table's rows read it ([`super::table::CmdSpec::consumer`]).
pub const CONSUMER_LIST: [Consumer; 23] = [
    Consumer {
        command: "3DPRIMITIVE",
        needs: &[],
        bounded: None,
        settled_depth: true,
    },
    Consumer {
        command: "3DSTATE_WM_HZ_OP",
        needs: &[&[T::DepthBuffer], &[T::HierDepth], &[T::Stencil]],
        bounded: None,
        settled_depth: true,
    },
    mfx(
        "MFD_AVC_BSD_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxAvcDirect],
            &[T::MfxAvcImg],
        ],
        BITSTREAM,
    ),
    mfx(
        "MFD_AVC_SLICEADDR",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxAvcImg],
        ],
        BITSTREAM,
    ),
    mfx(
        "MFD_VC1_BSD_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxVc1Direct],
            &[T::MfxVc1Pic],
        ],
        BITSTREAM,
    ),
    mfx(
        "MFD_MPEG2_BSD_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxMpeg2Pic],
        ],
        BITSTREAM,
    ),
    mfx(
        "MFD_JPEG_BSD_OBJECT",
        &[MFX[0], MFX[1], MFX[2], MFX[3], &[T::MfxJpegPic]],
        BITSTREAM,
    ),
    mfx(
        "MFD_VP8_BSD_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxVp8Pic],
        ],
        BITSTREAM,
    ),
    mfx(
        "MFD_IT_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxVc1Pic, T::MfxMpeg2Pic],
        ],
        MV | IT,
    ),
    mfx(
        "MFC_AVC_PAK_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxAvcDirect],
            &[T::MfxAvcImg],
        ],
        MV | PAK_BSE,
    ),
    mfx(
        "MFC_MPEG2_PAK_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxMpeg2Pic],
        ],
        PAK_BSE,
    ),
    mfx(
        "MFC_JPEG_SCAN_OBJECT",
        &[MFX[0], MFX[1], MFX[2], MFX[3], &[T::MfxJpegPic]],
        PAK_BSE,
    ),
    mfx(
        "MFX_VP8_PAK_OBJECT",
        &[
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxVp8Bsp],
            &[T::MfxVp8Pic],
        ],
        MV | PAK_BSE,
    ),
    mfx("MFX_PAK_INSERT_OBJECT", &[MFX[0]], PAK_BSE),
    mfx("MFX_STITCH_OBJECT", &[MFX[0]], PAK_BSE),
    consumer(
        "MFX_DBK_OBJECT",
        &[
            &[T::MfxSurface],
            &[T::MfxDbk],
            &[
                T::MfxAvcImg,
                T::MfxMpeg2Pic,
                T::MfxVc1Pic,
                T::MfxJpegPic,
                T::MfxVp8Pic,
            ],
        ],
        None,
    ),
    consumer("HCP_BSD_OBJECT", &HCP, Some((T::HcpIndObj, HCP_BITSTREAM))),
    consumer("HCP_PAK_OBJECT", &HCP, Some((T::HcpIndObj, HCP_PAK_BSE))),
    consumer(
        "HCP_PAK_INSERT_OBJECT",
        &[&[T::HcpPipeMode]],
        Some((T::HcpIndObj, HCP_PAK_BSE)),
    ),
    // VDENC feeds the MFX PAK, which writes the MFX pipe's pictures and
    // bitstream.
    consumer(
        "VDENC_WALKER_STATE",
        &[
            &[T::VdencPipeMode],
            &[T::VdencSource],
            &[T::VdencReference],
            &[T::VdencDownscaled],
            &[T::VdencPipeBuf],
            &[T::VdencImg],
            MFX[0],
            MFX[1],
            MFX[2],
            MFX[3],
            &[T::MfxBsp],
            &[T::MfxAvcImg],
        ],
        Some((T::MfxIndObj, PAK_BSE)),
    ),
    consumer(
        "HUC_START",
        &[&[T::HucDmem], &[T::HucVirtual], &[T::HucIndObj]],
        None,
    ),
    consumer("HUC_STREAM_OBJECT", &[], Some((T::HucIndObj, 0b11))),
    consumer("SFC_FRAME_START", &[&[T::Sfc]], None),
];

/// [`CONSUMER_LIST`], for references at run time.
pub static CONSUMERS: [Consumer; CONSUMER_LIST.len()] = CONSUMER_LIST;

/// The index in [`CONSUMERS`] of command `name`'s entry, if it has one.
pub const fn consumer_of(name: &str) -> Option<u8> {
    let mut i = 0;
    while i < CONSUMER_LIST.len() {
        if same(CONSUMER_LIST[i].command, name) {
            return Some(i as u8);
        }
        i += 1;
    }
    None
}

/// The guest DWords of every tracked state command of this submission, as
/// it set them (before remapping), and the depth packet's progress.
///
/// `repr(C)`: the flags the fast loop reads first, the DWords last.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct TrackedState {
    set: u64,
    /// The depth packet is half set, or a sample count above the one its
    /// buffers were audited for applies to it.
    depth_open: bool,
    /// log2 of the sample count the packet was audited for.
    depth_samples: u8,
    /// The depth buffer's geometry, parsed where it was set.
    depth: Option<Result<Option<Depth>, SurfaceError>>,
    /// DWords each instance holds (the command's length, at most
    /// [`Tracked::words`]); 0: not set in this submission.
    len: [u8; STORAGE_SLOTS],
    words: [u32; STORAGE],
}

/// Instances kept, all tracked states together.
const STORAGE_SLOTS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < Tracked::ALL.len() {
        n += Tracked::ALL[i].keys();
        i += 1;
    }
    n
};

impl Tracked {
    /// First instance slot in [`TrackedState::len`].
    #[inline(always)]
    fn slot(self) -> usize {
        SLOTS.get(self as usize).copied().unwrap_or(0)
    }

    /// The instance of the command `w` (its surface ID for keyed states).
    fn key(self, w: &[u32]) -> usize {
        let d1 = w.get(1).copied().unwrap_or(0);
        match self {
            Tracked::MfxSurface => (d1 & 0xf) as usize,
            Tracked::HcpSurface => (d1 >> 28) as usize,
            _ => 0,
        }
    }
}

impl Default for TrackedState {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl TrackedState {
    /// Nothing set.
    pub const EMPTY: TrackedState = TrackedState {
        words: [0; STORAGE],
        len: [0; STORAGE_SLOTS],
        set: 0,
        depth_open: false,
        depth_samples: 0,
        depth: None,
    };

    /// Whether `t` was set in this submission.
    pub fn is_set(&self, t: Tracked) -> bool {
        self.set & t.bit() != 0
    }

    /// Keeps the guest DWords `w` of the command setting `t`.
    #[inline(always)]
    pub fn record(&mut self, t: Tracked, w: &[u32]) {
        if t == Tracked::DepthBuffer {
            self.depth = Some(surface::depth(w));
        }
        let Some(&p) = PLACES.get(t as usize) else {
            return;
        };
        let full = usize::from(p.words);
        let key = if p.keys > 1 { t.key(w) } else { 0 };
        let n = w.len().min(full);
        let at = usize::from(p.offset) + key * full;
        // The whole kept prefix when the command has it (a constant
        // length where `t` is known: copied in line), else what it has.
        match (self.words.get_mut(at..at + full), w.get(..full)) {
            (Some(dst), Some(src)) => dst.copy_from_slice(src),
            (Some(dst), None) => {
                for (d, s) in dst.iter_mut().zip(w) {
                    *d = *s;
                }
            }
            _ => {}
        }
        if let Some(l) = self.len.get_mut(usize::from(p.slot) + key) {
            *l = n as u8;
        }
        self.set |= t.bit();
    }

    /// Forgets `t` (it must be set again before it is consumed).
    pub fn clear(&mut self, t: Tracked) {
        if t == Tracked::DepthBuffer {
            self.depth = None;
        }
        self.set &= !t.bit();
        for k in 0..t.keys() {
            if let Some(l) = self.len.get_mut(t.slot() + k) {
                *l = 0;
            }
        }
    }

    /// The DWords of every set instance of `t`.
    pub fn instances(&self, t: Tracked) -> impl Iterator<Item = &[u32]> + '_ {
        (0..t.keys()).filter_map(move |k| {
            let n = usize::from(*self.len.get(t.slot() + k)?);
            let at = t.offset() + k * t.words();
            (n > 0).then(|| self.words.get(at..at + n)).flatten()
        })
    }

    /// The DWords of `t` (its first set instance), if set.
    pub fn get(&self, t: Tracked) -> Option<&[u32]> {
        if !self.is_set(t) {
            return None;
        }
        self.instances(t).next()
    }

    /// DWord `i` of `t`, 0 when unset or shorter.
    pub fn dw(&self, t: Tracked, i: usize) -> u32 {
        self.get(t).and_then(|w| w.get(i)).copied().unwrap_or(0)
    }

    /// The two paths' state joined: a state set by both to the same
    /// DWords, and the depth packet open if either left it open.
    pub fn join(&self, other: &TrackedState) -> TrackedState {
        let mut out = self.clone();
        for &t in Tracked::ALL {
            let same = self.is_set(t) == other.is_set(t)
                && (0..t.keys()).all(|k| {
                    let s = t.slot() + k;
                    let at = t.offset() + k * t.words();
                    let n = usize::from(self.len.get(s).copied().unwrap_or(0));
                    self.len.get(s) == other.len.get(s)
                        && self.words.get(at..at + n) == other.words.get(at..at + n)
                });
            if !same {
                out.clear(t);
            }
        }
        out.depth_open = self.depth_open || other.depth_open;
        out.depth_samples = self.depth_samples.max(other.depth_samples);
        out
    }

    /// The missing group of `c`'s needs, named by its first member's
    /// command, if any.
    pub fn missing(&self, c: &Consumer) -> Option<&'static str> {
        c.needs
            .iter()
            .find(|g| !g.iter().any(|&t| self.is_set(t)))
            .and_then(|g| g.first())
            .map(|t| t.command())
    }

    // ---- the depth packet ----

    /// The submission's depth buffer: `None` if not set, `Some(None)` if
    /// SURFTYPE_NULL.
    #[inline(always)]
    pub fn depth(&self) -> Option<Result<Option<Depth>, SurfaceError>> {
        self.depth
    }

    /// log2 of the sample count a newly set packet is audited for: the
    /// submission's last 3DSTATE_MULTISAMPLE, or the most the engine
    /// allows when there is none (the context's count is unknown).
    pub fn packet_samples(&self) -> u32 {
        match self.get(Tracked::Multisample) {
            Some(w) => w.get(1).copied().unwrap_or(0) >> 1 & 7,
            None => surface::MAX_SAMPLES_LOG2,
        }
    }

    /// log2 of the sample count the packet was audited for.
    pub fn depth_samples(&self) -> u32 {
        u32::from(self.depth_samples)
    }

    /// A depth buffer was set (and audited at `samples`): its HiZ and
    /// stencil buffers must follow.
    pub fn open_packet(&mut self, samples: u32) {
        self.clear(Tracked::HierDepth);
        self.clear(Tracked::Stencil);
        self.depth_open = true;
        self.depth_samples = samples as u8;
    }

    /// The packet's buffers were (re)audited at `samples`.
    pub fn packet_audited(&mut self, samples: u32) {
        self.depth_samples = samples as u8;
    }

    /// A HiZ or stencil buffer followed the depth buffer: the packet is
    /// whole once both have.
    pub fn close_packet(&mut self) {
        if self.is_set(Tracked::HierDepth) && self.is_set(Tracked::Stencil) {
            self.depth_open = false;
        }
    }

    /// The engine's packet (set by an earlier submission) may be used at a
    /// sample count it was not audited for.
    pub fn stale_packet(&mut self) {
        self.depth_open = true;
    }

    /// The depth packet is half set or stale.
    pub fn depth_open(&self) -> bool {
        self.depth_open
    }

    /// Whether the submission's depth buffer is not NULL and enables HiZ.
    pub fn hiz_enabled(&self) -> bool {
        matches!(self.depth(), Some(Ok(Some(d))) if d.hiz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumer_and_tracked_command_is_a_row() {
        use crate::scan::table::COMMANDS;
        for c in &CONSUMERS {
            assert!(
                COMMANDS.iter().any(|s| s.name == c.command),
                "{}",
                c.command
            );
        }
        for &t in Tracked::ALL {
            let row = COMMANDS.iter().find(|s| s.name == t.command());
            assert!(row.is_some(), "{:?}", t);
            if let Some(l) = t.layout() {
                assert!(
                    row.is_some_and(
                        |s| matches!(s.op, crate::scan::Op::Gm(m) if core::ptr::eq(m, l))
                    ),
                    "{t:?}: its layout is its row's"
                );
            }
        }
    }

    #[test]
    fn join_keeps_only_what_both_paths_set_alike() {
        let mut a = TrackedState::EMPTY;
        a.record(Tracked::MfxPipeMode, &[0, 1]);
        a.record(Tracked::MfxSurface, &[0, 0, 5, 6, 7, 8]);
        let mut b = a.clone();
        assert_eq!(a.join(&b), a);
        b.record(Tracked::MfxSurface, &[0, 0, 9, 6, 7, 8]);
        b.record(Tracked::HcpPipeMode, &[0, 1]);
        let j = a.join(&b);
        assert!(j.is_set(Tracked::MfxPipeMode));
        assert!(!j.is_set(Tracked::MfxSurface) && !j.is_set(Tracked::HcpPipeMode));
        b = a.clone();
        b.open_packet(0);
        assert!(a.join(&b).depth_open() && b.join(&a).depth_open());
    }

    #[test]
    fn surface_ids_are_kept_apart() {
        let mut s = TrackedState::EMPTY;
        s.record(Tracked::MfxSurface, &[0, 0, 1, 0, 0, 0]);
        s.record(Tracked::MfxSurface, &[0, 4, 2, 0, 0, 0]);
        s.record(Tracked::MfxSurface, &[0, 0, 3, 0, 0, 0]);
        let ids: Vec<u32> = s.instances(Tracked::MfxSurface).map(|w| w[2]).collect();
        assert_eq!(ids, [3, 2]);
    }
}
