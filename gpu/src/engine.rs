//! The command streamers (engines) of a Gen9 GT2 part that a vGPU may use.

/// One hardware engine (command streamer). The discriminant is a dense index
/// usable for per-engine arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Engine {
    /// Render command streamer (RCS): 3D, GPGPU, MI.
    Render = 0,
    /// Blitter command streamer (BCS): 2D blits, MI.
    Blitter = 1,
    /// Video command streamer (VCS, "BSD"): MFX/HCP/VDENC/HUC, MI.
    Video = 2,
    /// Video enhancement command streamer (VECS): VEBOX/SFC, MI.
    VideoEnhance = 3,
}

impl Engine {
    /// Number of engines; per-engine arrays have this many entries.
    pub const COUNT: usize = 4;
    /// Every engine, in index order.
    pub const ALL: [Engine; Engine::COUNT] = [
        Engine::Render,
        Engine::Blitter,
        Engine::Video,
        Engine::VideoEnhance,
    ];

    /// Dense index in `0..Engine::COUNT`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Short name as used in logs and error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Engine::Render => "rcs",
            Engine::Blitter => "bcs",
            Engine::Video => "vcs",
            Engine::VideoEnhance => "vecs",
        }
    }

    /// MMIO base of this engine's ring/execlist register block
    /// (i915: RENDER_RING_BASE, BLT_RING_BASE, GEN6_BSD_RING_BASE, VEBOX_RING_BASE).
    pub const fn mmio_base(self) -> u32 {
        match self {
            Engine::Render => 0x0_2000,
            Engine::Blitter => 0x2_2000,
            Engine::Video => 0x1_2000,
            Engine::VideoEnhance => 0x1_a000,
        }
    }
}

impl core::fmt::Display for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
