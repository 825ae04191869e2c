//! The state later commands are audited against, tracked per submission
//! ([`TrackedState`]: one value, joined where paths meet), and the one
//! declaration of which command consumes which state ([`CONSUMERS`]).
//!
//! It holds STATE_BASE_ADDRESS's bases and sizes, the last blitter setup,
//! and the DWords of every state command ([`Tracked`]: the depth packet,
//! 3DSTATE_MULTISAMPLE, the video pipes' mode, surface, buffer and picture
//! states, SFC_STATE) whose DWords a later command (a depth/HiZ operation,
//! a video object, HUC_START, SFC_FRAME_START) makes the engine read and
//! write through, at sizes they give. The context may hold another vGPU's
//! state or the host addresses of a vGPU before it migrated, so the
//! tracked state starts unknown in every submission, and such a command is
//! accepted only when every state it consumes was set, and audited, in the
//! same submission on every path ([`super::Reason::UnseenState`]
//! otherwise). The scanner keeps the guest DWords of each tracked command
//! as it was set and audits, when a command consumes them, the extents the
//! operand layouts declare ([`super::operands::Extent::Pipe`]), sized from
//! that state ([`super::surface`]).
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
//! Where paths meet (after a batch that may have ended early at an
//! MI_CONDITIONAL_BATCH_BUFFER_END, the scanner's `Exits`), the state is
//! the [`TrackedState::join`] of the states on all of them, a field-wise
//! meet: what differs becomes unknown. A state command's DWords stay only
//! when both paths set them alike, and the depth packet's three commands
//! only together (a re-audit needs all three); the packet is open if
//! either path left it open, and audited for the fewer samples of the
//! two. A command after the join sees only what every path set.

use super::operands::{self as o, Layout, When};
use super::surface::{self, Depth, SurfaceError};
use crate::addr::GuestGm;

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
    /// When it consumes anything (DWords of the command itself): a
    /// 3DSTATE_WM_HZ_OP with no clear or resolve enabled is the one Mesa
    /// emits to end an operation (and at context start), and touches no
    /// surface.
    pub active: When,
}

impl Consumer {
    /// It consumes nothing but a settled depth packet (a draw): the fast
    /// loop checks that itself.
    pub const fn only_settled_depth(&self) -> bool {
        self.needs.is_empty() && self.bounded.is_none()
    }

    /// It works on the depth packet at a sample count of its own
    /// (3DSTATE_WM_HZ_OP): the packet is audited again at that count,
    /// which changes the tracked state.
    pub fn reaudits_depth(&self) -> bool {
        self.needs.iter().any(|g| g.contains(&Tracked::DepthBuffer))
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
/// 3DSTATE_WM_HZ_OP DWord 1: Stencil Buffer Clear (31), Depth Buffer
/// Clear (30), Depth Buffer Resolve (28) and Hierarchical Depth Buffer
/// Resolve (27) Enable, the operations (genxml); with none set the command
/// touches no surface (the scanner's consumer rule and the model's
/// executor both read this).
pub const HZ_OPERATIONS: u32 = 1 << 31 | 1 << 30 | 1 << 28 | 1 << 27;
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
        active: When::Always,
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
        active: When::Always,
    },
    Consumer {
        command: "3DSTATE_WM_HZ_OP",
        needs: &[&[T::DepthBuffer], &[T::HierDepth], &[T::Stencil]],
        bounded: None,
        settled_depth: true,
        active: When::AnySet(1, HZ_OPERATIONS),
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

/// The meet of two values of one piece of tracked state: what is known on
/// both paths that reach a point. Equal values stay known; values that
/// differ become unknown (`None`), and a command that depends on unknown
/// state is refused ([`super::Reason::UnseenState`]), as one that depends
/// on state not set in the submission is.
trait Meet: Copy {
    #[must_use]
    fn meet(self, other: Self) -> Self;
}

impl<T: Copy + PartialEq> Meet for Option<T> {
    #[inline]
    fn meet(self, other: Self) -> Self {
        if self == other {
            self
        } else {
            None
        }
    }
}

impl<T: Meet, const N: usize> Meet for [T; N] {
    #[inline]
    fn meet(mut self, other: Self) -> Self {
        for (a, b) in self.iter_mut().zip(other) {
            *a = a.meet(b);
        }
        self
    }
}

/// STATE_BASE_ADDRESS state as this submission has set it: per base, the
/// guest base and the size in bytes (`None`: not set in this submission,
/// or not the same on every path here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sba {
    pub(crate) base: [Option<GuestGm>; 6],
    pub(crate) size: [Option<u64>; 6],
}

impl Sba {
    const UNKNOWN: Sba = Sba {
        base: [None; 6],
        size: [None; 6],
    };
}

impl Meet for Sba {
    fn meet(self, other: Self) -> Self {
        // A base and its size meet apart: each half is audited with the
        // other whenever either changes, so a known half is the same on
        // every path whatever the other is.
        Sba {
            base: self.base.meet(other.base),
            size: self.size.meet(other.size),
        }
    }
}

/// The destination an XY_SETUP_BLT set for the blits that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BltSetup {
    /// Guest GM of the destination base.
    pub(crate) base: u64,
    /// Pitch field.
    pub(crate) pitch: u32,
    /// Tiled destination.
    pub(crate) tiled: bool,
    /// Bytes per pixel.
    pub(crate) bpp: u64,
}

/// The context state this submission has set that later commands are
/// audited against, as it stands at one point of the scan: unknown at the
/// start of every submission (what earlier submissions left in the context
/// is never trusted), and at a point several paths reach, their
/// [`TrackedState::join`]. A new piece of state is a field here, met in
/// `join` (whose exhaustive destructuring makes the compiler ask for it),
/// and read and written through the scanner's `State::state` and
/// `State::state_mut`, so that a second-level batch that depends on it is
/// not reused.
///
/// `repr(C)`: the flags the fast loop reads first, the DWords last.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct TrackedState {
    /// Which [`Tracked`] states were set in this submission (bit per
    /// discriminant).
    set: u64,
    /// The depth packet is half set, or a sample count above the one its
    /// buffers were audited for applies to it.
    depth_open: bool,
    /// log2 of the sample count the packet was audited for.
    depth_samples: u8,
    /// The depth buffer's geometry, parsed where it was set.
    depth: Option<Result<Option<Depth>, SurfaceError>>,
    /// STATE_BASE_ADDRESS bases and sizes.
    pub(crate) sba: Sba,
    /// The last blitter setup (XY_SETUP_BLT, XY_SETUP_MONO_PATTERN_SL_BLT).
    pub(crate) blt: Option<BltSetup>,
    /// DWords each instance holds (the command's length, at most
    /// [`Tracked::words`]); 0: not set in this submission.
    len: [u8; STORAGE_SLOTS],
    /// The guest DWords of every tracked state command of this submission,
    /// as it set them (before remapping).
    words: [u32; STORAGE],
}

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

impl PartialEq for TrackedState {
    /// The same state known: the DWords a forgotten state left behind in
    /// its storage are not part of it.
    fn eq(&self, other: &TrackedState) -> bool {
        let TrackedState {
            set: _,
            depth_open,
            depth_samples,
            depth,
            sba,
            blt,
            len: _,
            words: _,
        } = self;
        *depth_open == other.depth_open
            && *depth_samples == other.depth_samples
            && *depth == other.depth
            && *sba == other.sba
            && *blt == other.blt
            && Tracked::ALL.iter().all(|&t| self.alike(other, t))
    }
}

impl Eq for TrackedState {}

impl Default for TrackedState {
    fn default() -> Self {
        Self::UNKNOWN
    }
}

impl TrackedState {
    /// Nothing known (the start of a submission).
    pub const UNKNOWN: TrackedState = TrackedState {
        set: 0,
        depth_open: false,
        depth_samples: 0,
        depth: None,
        sba: Sba::UNKNOWN,
        blt: None,
        len: [0; STORAGE_SLOTS],
        words: [0; STORAGE],
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

    /// Whether `t` is set alike in `self` and `other`: in neither, or in
    /// both with the same DWords in every instance.
    fn alike(&self, other: &TrackedState, t: Tracked) -> bool {
        self.is_set(t) == other.is_set(t)
            && (0..t.keys()).all(|k| {
                let s = t.slot() + k;
                let at = t.offset() + k * t.words();
                let n = usize::from(self.len.get(s).copied().unwrap_or(0));
                self.len.get(s) == other.len.get(s)
                    && self.words.get(at..at + n) == other.words.get(at..at + n)
            })
    }

    /// The state at a point that both `self`'s and `other`'s paths reach:
    /// field by field, what both know alike. A state command's DWords
    /// stay when both set them alike, the depth packet's three commands
    /// only together (re-auditing the packet at more samples needs all
    /// three: a HiZ buffer forgotten while its depth buffer is kept would
    /// go un-re-audited); the packet is open if either path left it open,
    /// and audited for the fewer samples of the two.
    #[must_use]
    pub fn join(&self, other: &TrackedState) -> TrackedState {
        // Exhaustive: a new field must say how it meets.
        let TrackedState {
            set: _,
            depth_open,
            depth_samples,
            depth: _,
            sba,
            blt,
            len: _,
            words: _,
        } = self;
        // `set`, `depth`, `len` and `words` meet per tracked state below.
        let mut out = self.clone();
        out.depth_open = *depth_open || other.depth_open;
        out.depth_samples = (*depth_samples).min(other.depth_samples);
        out.sba = sba.meet(other.sba);
        out.blt = blt.meet(other.blt);
        let packet = [Tracked::DepthBuffer, Tracked::HierDepth, Tracked::Stencil];
        let packet_alike = packet.iter().all(|&t| self.alike(other, t));
        for &t in Tracked::ALL {
            if !self.alike(other, t) || (!packet_alike && packet.contains(&t)) {
                out.clear(t);
            }
        }
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
        let mut a = TrackedState::UNKNOWN;
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

    /// The depth packet meets as one: a HiZ buffer that differs takes the
    /// depth and stencil buffers with it (a re-audit at more samples could
    /// not reach it), and the packet counts as audited for the fewer
    /// samples of the two paths.
    #[test]
    fn the_depth_packet_meets_as_one() {
        let mut a = TrackedState::UNKNOWN;
        a.record(Tracked::DepthBuffer, &[0; 8]);
        a.open_packet(1);
        a.record(Tracked::HierDepth, &[0, 0, 0x1000, 0, 0]);
        a.record(Tracked::Stencil, &[0, 0, 0x2000, 0, 0]);
        a.close_packet();
        let mut b = a.clone();
        b.record(Tracked::HierDepth, &[0, 0, 0x3000, 0, 0]);
        let j = a.join(&b);
        for t in [Tracked::DepthBuffer, Tracked::HierDepth, Tracked::Stencil] {
            assert!(!j.is_set(t), "{t:?}");
        }
        assert_eq!(j.depth(), None);
        assert!(!j.depth_open());
        let mut b = a.clone();
        b.packet_audited(3);
        let j = a.join(&b);
        assert!(j.is_set(Tracked::HierDepth) && j.depth().is_some());
        assert_eq!((j.depth_samples(), b.join(&a).depth_samples()), (1, 1));
    }

    #[test]
    fn a_base_and_its_size_meet_apart() {
        let mut a = TrackedState::UNKNOWN;
        a.sba.base[2] = Some(GuestGm::new(0x1000).unwrap());
        a.sba.size[2] = Some(0x4000);
        let mut b = a.clone();
        b.sba.base[2] = Some(GuestGm::new(0x9000).unwrap());
        let m = a.join(&b);
        assert_eq!(m.sba.base[2], None);
        assert_eq!(m.sba.size[2], Some(0x4000));
    }

    mod lattice {
        use super::super::*;
        use proptest::prelude::*;

        /// Tracked states the generated states set (keyed, the depth
        /// packet, a sample count, a plain one).
        const SOME: [Tracked; 6] = [
            Tracked::DepthBuffer,
            Tracked::HierDepth,
            Tracked::Stencil,
            Tracked::Multisample,
            Tracked::MfxSurface,
            Tracked::MfxPipeMode,
        ];

        /// A state from small choices, so that random pairs often agree.
        fn state(
            bases: [u8; 6],
            sizes: [u8; 6],
            blt: u8,
            cmds: [u8; 6],
            packet: u8,
        ) -> TrackedState {
            let pick = |v: u8| (!v.is_multiple_of(3)).then_some(u64::from(v % 3) * 0x1000);
            let mut t = TrackedState::UNKNOWN;
            for i in 0..6 {
                t.sba.base[i] = pick(bases[i]).map(|a| GuestGm::new(a).unwrap());
                t.sba.size[i] = pick(sizes[i]);
            }
            t.blt = pick(blt).map(|base| BltSetup {
                base,
                pitch: 64,
                tiled: false,
                bpp: 4,
            });
            for (&k, c) in SOME.iter().zip(cmds) {
                if let Some(v) = pick(c) {
                    // A value in the DWord the instance key is read from,
                    // and one in a DWord that is only kept.
                    let v = v as u32;
                    let mut w = [0u32; 8];
                    w[1] = v >> 12;
                    w[2] = v;
                    t.record(k, &w[..k.words().min(8)]);
                }
            }
            t.depth_open = packet & 1 == 1;
            t.depth_samples = packet >> 1 & 3;
            t
        }

        fn any_state() -> impl Strategy<Value = TrackedState> {
            (
                any::<[u8; 6]>(),
                any::<[u8; 6]>(),
                any::<u8>(),
                any::<[u8; 6]>(),
                any::<u8>(),
            )
                .prop_map(|(b, s, t, c, p)| state(b, s, t, c, p))
        }

        /// Every field known in `low` is known, and the same, in `high`
        /// (the depth packet's commands as one); `low`'s packet is open if
        /// `high`'s is, and audited for no more samples.
        fn below(low: &TrackedState, high: &TrackedState) -> bool {
            let le = |a: Option<u64>, b: Option<u64>| a.is_none() || a == b;
            let gm = |a: Option<GuestGm>| a.map(GuestGm::raw);
            let packet = [Tracked::DepthBuffer, Tracked::HierDepth, Tracked::Stencil];
            let cmds = Tracked::ALL
                .iter()
                .filter(|t| !packet.contains(t))
                .all(|&t| !low.is_set(t) || low.alike(high, t));
            let depth = packet.iter().all(|&t| !low.is_set(t))
                || packet.iter().all(|&t| low.alike(high, t));
            (0..6).all(|i| {
                le(gm(low.sba.base[i]), gm(high.sba.base[i]))
                    && le(low.sba.size[i], high.sba.size[i])
            }) && (low.blt.is_none() || low.blt == high.blt)
                && cmds
                && depth
                && (low.depth_open || !high.depth_open)
                && low.depth_samples <= high.depth_samples
        }

        proptest! {
            /// `join` is a meet over every field: idempotent, commutative,
            /// associative, below both sides and the greatest such state
            /// (what both know alike stays known); joined with the start
            /// of a submission, nothing set stays known.
            #[test]
            fn join_is_the_meet(a in any_state(), b in any_state(), c in any_state()) {
                prop_assert_eq!(a.join(&a), a.clone());
                prop_assert_eq!(a.join(&b), b.join(&a));
                prop_assert_eq!(a.join(&b).join(&c), a.join(&b.join(&c)));
                let m = a.join(&b);
                prop_assert!(below(&m, &a) && below(&m, &b));
                if below(&c, &a) && below(&c, &b) {
                    prop_assert!(below(&c, &m));
                }
                let u = a.join(&TrackedState::UNKNOWN);
                prop_assert!(Tracked::ALL.iter().all(|&t| !u.is_set(t)));
                prop_assert_eq!((u.sba, u.blt), (TrackedState::UNKNOWN.sba, None));
            }
        }
    }

    #[test]
    fn surface_ids_are_kept_apart() {
        let mut s = TrackedState::UNKNOWN;
        s.record(Tracked::MfxSurface, &[0, 0, 1, 0, 0, 0]);
        s.record(Tracked::MfxSurface, &[0, 4, 2, 0, 0, 0]);
        s.record(Tracked::MfxSurface, &[0, 0, 3, 0, 0, 0]);
        let ids: Vec<u32> = s.instances(Tracked::MfxSurface).map(|w| w[2]).collect();
        assert_eq!(ids, [3, 2]);
    }
}
