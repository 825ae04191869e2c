//! Shared by the scanner tests and `examples/scan_bench.rs`: a fake vGPU
//! graphics memory with two slices, and encoders for realistic command
//! streams (3D draws with state, blits, media, video, chained batches).
#![allow(dead_code)] // reason: each user takes the parts it needs

use gpu::addr::{GuestGm, GuestGmRange, HostGm};
use gpu::engine::Engine;
use gpu::scan::operands::{AddrField, Extent, High, When};
use gpu::scan::repr::{pak_insert_descriptors, pak_payload_bytes, BlitDst, BlitSrc};
use gpu::scan::scanner::BATCH_POOL;
use gpu::scan::tracked::{Consumer, Tracked};
use gpu::scan::{decode, CmdSpec, CommandRepr, GmFault, GmSpace, Len, Op, RingState, Shadow};

/// Guest aperture slice and where it is on the host.
pub const APERTURE: u64 = 0x0100_0000;
pub const APERTURE_SIZE: u64 = 0x10_0000;
pub const APERTURE_HOST: u64 = 0x2100_0000;
/// Guest hidden slice and where it is on the host (another delta).
pub const HIDDEN: u64 = 0x4000_0000;
pub const HIDDEN_SIZE: u64 = 0x40_0000;
pub const HIDDEN_HOST: u64 = 0x8800_0000;
/// Host GM of the monitor's shadow buffers.
pub const SHADOW_RING_HOST: u64 = 0x0010_0000;
pub const SHADOW_BATCH_HOST: u64 = 0x0020_0000;
pub const SHADOW_BATCH_STRIDE: u64 = 0x1_0000;

/// Guest memory: the two slices, DWord-addressed.
pub struct FakeGm {
    pub aperture: Vec<u32>,
    pub hidden: Vec<u32>,
}

pub fn gg(raw: u64) -> GuestGm {
    GuestGm::new(raw).unwrap()
}

impl FakeGm {
    pub fn new() -> Self {
        FakeGm {
            aperture: vec![0; (APERTURE_SIZE / 4) as usize],
            hidden: vec![0; (HIDDEN_SIZE / 4) as usize],
        }
    }
    fn slice(&self, at: u64) -> Option<(u64, u64, u64)> {
        if (APERTURE..APERTURE + APERTURE_SIZE).contains(&at) {
            Some((APERTURE, APERTURE_SIZE, APERTURE_HOST))
        } else if (HIDDEN..HIDDEN + HIDDEN_SIZE).contains(&at) {
            Some((HIDDEN, HIDDEN_SIZE, HIDDEN_HOST))
        } else {
            None
        }
    }
    pub fn write(&mut self, at: u64, words: &[u32]) {
        let (base, _, _) = self.slice(at).expect("write outside the slices");
        let i = ((at - base) / 4) as usize;
        let mem = if base == APERTURE {
            &mut self.aperture
        } else {
            &mut self.hidden
        };
        mem[i..i + words.len()].copy_from_slice(words);
    }
    /// Whether `[host, host + len)` lies in the host slices.
    pub fn host_inside(host: u64, len: u64) -> bool {
        let inside = |b: u64, s: u64| host >= b && host + len <= b + s;
        inside(APERTURE_HOST, APERTURE_SIZE) || inside(HIDDEN_HOST, HIDDEN_SIZE)
    }
}

impl Default for FakeGm {
    fn default() -> Self {
        Self::new()
    }
}

impl GmSpace for FakeGm {
    fn read_guest(&self, at: GuestGm, out: &mut [u32]) -> Result<(), GmFault> {
        let at = at.raw();
        let (base, size, _) = self.slice(at).ok_or(GmFault::OutOfSlices)?;
        let len = 4 * out.len() as u64;
        if at + len > base + size || !at.is_multiple_of(4) {
            return Err(GmFault::OutOfSlices);
        }
        let i = ((at - base) / 4) as usize;
        let mem = if base == APERTURE {
            &self.aperture
        } else {
            &self.hidden
        };
        out.copy_from_slice(&mem[i..i + out.len()]);
        Ok(())
    }
    fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault> {
        let at = range.base().raw();
        let (base, size, host) = self.slice(at).ok_or(GmFault::OutOfSlices)?;
        if range.end_raw() > base + size {
            return Err(GmFault::OutOfSlices);
        }
        Ok(HostGm::new(at - base + host).unwrap())
    }
    fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault> {
        let (base, size, _) = self.slice(at.raw()).ok_or(GmFault::OutOfSlices)?;
        Ok(GuestGmRange::new(gg(base), size).unwrap())
    }
}

pub fn shadow(engine: Engine) -> Box<Shadow> {
    let mut hosts = [HostGm::new(0).unwrap(); BATCH_POOL];
    for (i, h) in hosts.iter_mut().enumerate() {
        *h = HostGm::new(SHADOW_BATCH_HOST + SHADOW_BATCH_STRIDE * i as u64).unwrap();
    }
    Box::new(Shadow::new(
        engine,
        HostGm::new(SHADOW_RING_HOST).unwrap(),
        hosts,
    ))
}

/// Whether a rewritten batch-start target is one of the shadow batches.
pub fn is_shadow_batch(host: u64) -> bool {
    (0..BATCH_POOL as u64).any(|i| host == SHADOW_BATCH_HOST + SHADOW_BATCH_STRIDE * i)
}

/// The ring lives at the start of the aperture slice (64 KiB).
pub const RING: u64 = APERTURE;
pub const RING_SIZE: u32 = 0x1_0000;

/// Puts `cmds` in the ring at HEAD 0 and returns the ring registers.
pub fn ring(g: &mut FakeGm, cmds: &[u32]) -> RingState {
    g.write(RING, cmds);
    RingState {
        start: gg(RING),
        size: RING_SIZE,
        head: 0,
        tail: 4 * cmds.len() as u32,
    }
}

// ---- encoders ----
// The plain MI encoders are the crate's own; the rest build the realistic
// streams below.

#[allow(unused_imports)] // reason: each user takes the parts it needs
pub use gpu::encode::{bb_start, sdi, BB_END, NOOP};

pub fn lo(a: u64) -> u32 {
    a as u32
}
pub fn hi(a: u64) -> u32 {
    (a >> 32) as u32
}
/// GFXPIPE header of `key` (bits 28:16) and total length `len`.
pub fn gfx(key: u32, len: usize) -> u32 {
    (3 << 29) | (key << 16) | (len as u32 - 2)
}
/// PIPE_CONTROL writing the qword 1 at `addr` after the pipeline drains.
pub fn pipe_control(addr: u64) -> [u32; 6] {
    gpu::encode::pipe_control_imm(addr, 1)
}
/// MI_FLUSH_DW writing the dword 0 at `addr`.
pub fn flush_dw(addr: u64) -> [u32; 4] {
    gpu::encode::flush_dw_imm(addr, 0)
}
/// STATE_BASE_ADDRESS with every base at `base` + i * `step` and every
/// size `size` bytes (modify enables set).
pub fn sba(base: u64, step: u64, size: u32) -> [u32; 19] {
    let mut w = [0u32; 19];
    w[0] = gfx(0x0101, 19);
    for (i, dw) in [1usize, 4, 6, 8, 10, 16].into_iter().enumerate() {
        let a = base + step * i as u64;
        w[dw] = lo(a) | 1;
        w[dw + 1] = hi(a);
    }
    for dw in &mut w[12..=15] {
        *dw = (size & !0xfff) | 1;
    }
    w[18] = ((size / 64).saturating_sub(1) & 0xfffff) << 12;
    w
}
/// 3DSTATE_VERTEX_BUFFERS with one buffer per (address, size).
pub fn vertex_buffers(bufs: &[(u64, u32)]) -> Vec<u32> {
    let mut w = vec![gfx(0x1808, 1 + 4 * bufs.len())];
    for (i, &(a, size)) in bufs.iter().enumerate() {
        w.extend([((i as u32) << 26) | (1 << 14) | 16, lo(a), hi(a), size]);
    }
    w
}
pub fn index_buffer(a: u64, size: u32) -> [u32; 5] {
    [gfx(0x180a, 5), 1 << 8, lo(a), hi(a), size]
}
pub fn constant_vs(a: u64, len32: u32) -> [u32; 11] {
    let mut w = [0u32; 11];
    w[0] = gfx(0x1815, 11);
    w[1] = len32;
    w[3] = lo(a);
    w[4] = hi(a);
    w
}
/// 3DSTATE_DEPTH_BUFFER: 2D, D32_FLOAT, depth writes, pitch 4 KiB, 1 x 1.
pub fn depth_buffer(a: u64) -> [u32; 8] {
    [
        gfx(0x1805, 8),
        (1 << 29) | (1 << 28) | (1 << 18) | 4095,
        lo(a),
        hi(a),
        0,
        0,
        0,
        0,
    ]
}
/// 3DSTATE_MULTISAMPLE with `log2` samples.
pub fn multisample(log2: u32) -> [u32; 2] {
    [gfx(0x180d, 2), log2 << 1]
}
/// The depth packet as Mesa emits it (isl_emit_depth_stencil_hiz_s):
/// 3DSTATE_DEPTH_BUFFER (2D D32_FLOAT, 256 x 256, pitch 1 KiB, at `a`),
/// 3DSTATE_STENCIL_BUFFER (disabled), 3DSTATE_HIER_DEPTH_BUFFER (HiZ off;
/// its address `hiz` is not used) and 3DSTATE_CLEAR_PARAMS.
pub fn depth_packet(a: u64, hiz: u64) -> Vec<u32> {
    let mut w = vec![
        gfx(0x1805, 8),
        (1 << 29) | (1 << 28) | (1 << 18) | 1023,
        lo(a),
        hi(a),
        255 << 18 | 255 << 4,
        0,
        0,
        0,
    ];
    w.extend([gfx(0x1806, 5), 0, 0, 0, 0]);
    w.extend([gfx(0x1807, 5), 127, lo(hiz), hi(hiz), 0]);
    w.extend([gfx(0x1804, 3), 0, 1]);
    w
}
pub fn binding_table_pool(a: u64, size: u32) -> [u32; 4] {
    [gfx(0x1919, 4), lo(a) | (1 << 11), hi(a), size & !0xfff]
}
pub fn primitive() -> [u32; 7] {
    [gfx(0x1b00, 7), 4, 3, 0, 1, 0, 0]
}
/// 3DSTATE_VF (no address: typical address-free state).
pub fn plain_state() -> [u32; 2] {
    [gfx(0x180c, 2), 0]
}
pub fn color_blt(dst: u64, pitch: u32, rows: u32) -> [u32; 7] {
    [
        (2 << 29) | (0x50 << 22) | (3 << 20) | 5,
        (3 << 24) | (0xf0 << 16) | pitch,
        0,
        (rows << 16) | (pitch / 4),
        lo(dst),
        hi(dst),
        0xff00_ff00,
    ]
}
pub fn copy_blt(dst: u64, src: u64, pitch: u32, rows: u32) -> [u32; 10] {
    [
        (2 << 29) | (0x53 << 22) | (3 << 20) | 8,
        (3 << 24) | (0xcc << 16) | pitch,
        0,
        (rows << 16) | (pitch / 4),
        lo(dst),
        hi(dst),
        0,
        pitch,
        lo(src),
        hi(src),
    ]
}
/// Where the operands of a shaped blit ([`gpu::scan::repr::BlitShape`])
/// point, and its rectangle.
#[derive(Clone, Copy, Debug)]
pub struct BlitOps {
    pub dst: u64,
    pub src: u64,
    pub pat: u64,
    /// Destination (and colour source) pitch in bytes.
    pub pitch: u32,
    pub width: u32,
    pub rows: u32,
}

/// The command of table row `spec` (an [`Op::XyBlit`] row) at its
/// smallest length (with an inline pattern: that of 32 bpp), 32 bpp, raster operation PATCOPY (so a pattern in
/// memory is read), rectangle `0,0 .. width,rows`, operands from `o`;
/// inline data DWords are 0x5a5a_5a5a. A setup-relative blit (XY_TEXT_BLT)
/// draws into the last XY_SETUP_BLT's destination. Built from the table,
/// so every modelled blit row gets one.
pub fn shaped_blit(spec: &CmdSpec, o: BlitOps) -> Vec<u32> {
    let Op::XyBlit(shape) = spec.op else {
        panic!("{} is not a shaped blit", spec.name)
    };
    let len = match (shape.inline_pattern, spec.len) {
        // An inline 8x8 pattern of 4-byte pixels.
        (Some(from), _) => usize::from(from) + 64,
        (None, Len::Field { min, .. }) => min as usize,
        (None, Len::Fixed(n)) => usize::from(n),
    };
    let mut w = vec![0x5a5a_5a5a; len];
    w[0] = spec.opcode.header_bits() | (len as u32 - 2);
    fn put(w: &mut [u32], d: usize, a: u64) {
        w[d] = lo(a);
        w[d + 1] = hi(a);
    }
    let rect = o.rows << 16 | o.width;
    match shape.dst {
        BlitDst::Rect => {
            put(&mut w, 4, o.dst);
            w[1] = (3 << 24) | (0xf0 << 16) | o.pitch;
            w[2] = 0;
            w[3] = rect;
        }
        BlitDst::Setup => {
            w[1] = 0;
            w[2] = rect;
        }
    }
    match shape.src {
        BlitSrc::None => {}
        BlitSrc::Color(d) => {
            w[6] = 0;
            w[7] = o.pitch;
            put(&mut w, usize::from(d), o.src);
        }
        BlitSrc::Mono(d) | BlitSrc::Text(d) => put(&mut w, usize::from(d), o.src),
    }
    if let Some(p) = shape.pattern {
        put(&mut w, usize::from(p), o.pat);
    }
    w
}

/// XY_SETUP_BLT (10 DWords), 32 bpp, PATCOPY: destination `dst` of
/// `pitch` bytes, 8x8 pattern at `pat`.
pub fn patcopy_setup(dst: u64, pitch: u32, pat: u64) -> [u32; 10] {
    [
        (2 << 29) | (0x01 << 22) | 8,
        (3 << 24) | (0xf0 << 16) | pitch,
        0,
        0,
        lo(dst),
        hi(dst),
        0,
        !0,
        lo(pat),
        hi(pat),
    ]
}

/// The table's shaped blit rows ([`Op::XyBlit`]).
pub fn shaped_rows() -> impl Iterator<Item = &'static CmdSpec> {
    gpu::scan::COMMANDS
        .iter()
        .filter(|s| matches!(s.op, Op::XyBlit(_)))
}

/// Every shaped blit of the table, each with in-slice operands, after a
/// blitter setup (for the setup-relative ones).
pub fn shaped_blits(o: BlitOps) -> Vec<u32> {
    let mut w = patcopy_setup(o.dst, o.pitch, o.pat).to_vec();
    for spec in shaped_rows() {
        w.extend(shaped_blit(spec, o));
    }
    w
}

/// HCP_PAK_INSERT_OBJECT with an indirect payload: one descriptor per
/// (bits, address) pair.
pub fn pak_insert(payloads: &[(u32, u64)]) -> Vec<u32> {
    let mut w = vec![gfx(0x13a2, 2 + 4 * payloads.len()), 1 << 31];
    for &(bits, a) in payloads {
        w.extend([bits, lo(a), hi(a), 0]);
    }
    w
}

/// HCP_PIPE_MODE_SELECT with DWord 1 `mode` (bit 0: encode).
pub fn hcp_pipe_mode(mode: u32) -> [u32; 6] {
    [gfx(0x1380, 6), mode, 0, 0, 0, 0]
}
/// HCP_IND_OBJ_BASE_ADDR_STATE: bitstream and PAK-BSE (base, bound) pairs
/// and the CU object's base.
pub fn hcp_ind_obj(bitstream: (u64, u64), cu: u64, pak_bse: (u64, u64)) -> [u32; 14] {
    let mut w = [0u32; 14];
    w[0] = gfx(0x1383, 14);
    for (d, a) in [
        (1, bitstream.0),
        (4, bitstream.1),
        (6, cu),
        (9, pak_bse.0),
        (12, pak_bse.1),
    ] {
        w[d] = lo(a);
        w[d + 1] = hi(a);
    }
    w
}

/// MEDIA_OBJECT with `inline` DWords of inline data (indirect data
/// relative to Indirect Object Base).
pub fn media_object(inline: usize) -> Vec<u32> {
    let mut w = vec![gfx(0x1100, 6 + inline), 0, 64, 0x100, 0, 0];
    w.extend((0..inline as u32).map(|i| i * 3));
    w
}
/// MFX_IND_OBJ_BASE_ADDR_STATE: five (base, bound) pairs.
pub fn mfx_ind_obj(pairs: [(u64, u64); 5]) -> [u32; 26] {
    let mut w = [0u32; 26];
    w[0] = gfx(0x1003, 26);
    for (i, (base, bound)) in pairs.into_iter().enumerate() {
        let d = [1usize, 6, 11, 16, 21][i];
        w[d] = lo(base);
        w[d + 1] = hi(base);
        let b = [4usize, 9, 14, 19, 24][i];
        w[b] = lo(bound);
        w[b + 1] = hi(bound);
    }
    w
}
/// MFX_BSP_BUF_BASE_ADDR_STATE (48-bit buffer addresses).
pub fn mfx_bsp(a: [u64; 3]) -> [u32; 10] {
    let mut w = [0u32; 10];
    w[0] = gfx(0x1004, 10);
    for (i, d) in [1usize, 4, 7].into_iter().enumerate() {
        w[d] = lo(a[i]);
        w[d + 1] = hi(a[i]) & 0xffff;
    }
    w
}

/// A 3D batch: base addresses and the sample count, then `draws` draws
/// with vertex/index/constant state and the depth packet, post-sync
/// writes; ends with MI_BATCH_BUFFER_END
/// unless `end` is false. Buffers live in the hidden slice.
pub fn draw_batch(draws: usize, end: bool) -> Vec<u32> {
    let h = HIDDEN;
    let mut w = Vec::new();
    w.extend(sba(h, 0x1_0000, 0x1_0000));
    w.extend(binding_table_pool(h + 0x8_0000, 0x1000));
    w.extend(multisample(0));
    for d in 0..draws as u64 {
        for _ in 0..6 {
            w.extend(plain_state());
        }
        w.extend(vertex_buffers(&[
            (h + 0x10_0000 + d * 0x100, 0x1000),
            (h + 0x11_0000, 0x800),
        ]));
        w.extend(index_buffer(h + 0x12_0000, 0x600));
        w.extend(constant_vs(h + 0x13_0000, 4));
        w.extend(depth_packet(h + 0x20_0000, h + 0x28_0000));
        w.extend(primitive());
        w.extend(pipe_control(h + 0x3f_f000));
    }
    if end {
        w.push(BB_END);
    }
    w
}

// ---- checks and seeds shared by the proptest and the cargo-fuzz target ----

/// Checks every remappable address of the accepted buffer `buf` (which
/// decoded cleanly during the scan) against the host slices.
pub fn check_buffer(engine: Engine, buf: &[u32]) {
    let mut off = 0;
    while off < buf.len() {
        let c = decode(engine, buf, off).expect("accepted stream must decode");
        let w = c.words();
        let inside = |a: u64| FakeGm::host_inside(a, 1);
        match c.spec().op {
            Op::Gm(layout) => {
                let fields = layout.fields.iter().map(|f| (0usize, f));
                let grouped = layout.group.into_iter().flat_map(|(g, fs)| {
                    let n = if g.count == 0 {
                        (w.len() - usize::from(g.start)) / usize::from(g.stride)
                    } else {
                        usize::from(g.count)
                    };
                    (0..n).flat_map(move |e| {
                        fs.iter()
                            .map(move |f| (usize::from(g.start) + e * usize::from(g.stride), f))
                    })
                });
                for (eb, f) in fields.chain(grouped) {
                    let at = |d: u8| w.get(eb + usize::from(d)).copied();
                    let Some(lo) = at(f.dword) else { continue };
                    let hi = match f.high {
                        High::None => 0,
                        High::Bits16 => u64::from(at(f.dword + 1).unwrap_or(0) & 0xffff),
                        High::Bits32 => u64::from(at(f.dword + 1).unwrap_or(0)),
                    };
                    let bit = |d: u8, b: u8| at(d).unwrap_or(0) >> b & 1 == 1;
                    let used = match f.when {
                        When::Always => true,
                        When::Set(d, b) => bit(d, b),
                        When::Clear(d, b) => !bit(d, b),
                        When::NotNullSurface(d) => at(d).unwrap_or(0) >> 29 != 7,
                        When::AnySet(d, mask) => at(d).unwrap_or(0) & mask != 0,
                        // Decided by state outside the command (the depth
                        // buffer, the pipe's mode): left alone when unused,
                        // so not checked here.
                        When::HizEnabled | When::PipeMode(_) => false,
                    };
                    let addr = hi << 32 | u64::from(lo & !((1u32 << f.shift) - 1));
                    // A zero-length operand is not accessed and left alone.
                    let empty = match f.extent {
                        Extent::Field {
                            dword,
                            shift,
                            bits,
                            plus,
                            ..
                        } => {
                            let mask = if bits >= 32 {
                                u32::MAX
                            } else {
                                (1 << bits) - 1
                            };
                            plus == 0 && at(dword).unwrap_or(0) >> shift & mask == 0
                        }
                        _ => false,
                    };
                    if used && !empty {
                        assert!(inside(addr), "{}: {} at {addr:#x}", c.name(), f.name);
                    }
                }
            }
            Op::PakInsert => {
                let n = pak_insert_descriptors(w.len(), w[1]).expect("accepted");
                for i in 0..n {
                    let d = &w[2 + 4 * i..6 + 4 * i];
                    let size = pak_payload_bytes(d[0]);
                    let addr = u64::from(d[2]) << 32 | u64::from(d[1]);
                    if size > 0 {
                        assert!(FakeGm::host_inside(addr, size), "{}", c.name());
                    }
                }
            }
            _ => match CommandRepr::parse(&c) {
                // A PPGTT batch start runs the scanner's copy from the
                // reserved window of the context's PPGTT.
                Ok(CommandRepr::BatchStart { target, .. }) if !target.ggtt => {
                    assert!(
                        (0..BATCH_POOL).any(|slot| {
                            target.addr == gpu::ppgtt::window_batch_va(engine, slot)
                        }),
                        "PPGTT batch start {:#x}",
                        target.addr
                    )
                }
                Ok(CommandRepr::BatchStart { target, .. }) => {
                    assert!(
                        is_shadow_batch(target.addr),
                        "batch start {:#x}",
                        target.addr
                    )
                }
                Ok(CommandRepr::StoreDataImm { mem })
                | Ok(CommandRepr::StoreRegMem { mem, .. })
                | Ok(CommandRepr::LoadRegMem { mem, .. })
                | Ok(CommandRepr::Atomic { mem })
                | Ok(CommandRepr::CondBatchEnd { mem })
                | Ok(CommandRepr::SemaphoreWait { mem, .. }) => {
                    assert!(FakeGm::host_inside(mem.addr, mem.size), "{}", c.name())
                }
                Ok(CommandRepr::Blit { dst, src }) => {
                    assert!(inside(dst.addr), "{}", c.name());
                    if let Some(s) = src {
                        assert!(inside(s.addr), "{}", c.name());
                    }
                }
                Ok(CommandRepr::ShapedBlit {
                    dst, src, pattern, ..
                }) => {
                    for m in [dst, src, pattern].into_iter().flatten() {
                        assert!(FakeGm::host_inside(m.addr, m.size.max(1)), "{}", c.name());
                    }
                }
                Ok(CommandRepr::BltSetup { dst, pattern, .. }) => {
                    assert!(inside(dst.addr), "{}", c.name());
                    if let Some(p) = pattern {
                        assert!(FakeGm::host_inside(p.addr, p.size), "{}", c.name());
                    }
                }
                Ok(CommandRepr::StateBaseAddress(sba)) => {
                    for b in sba.bases().bases.iter().filter(|b| b.modify) {
                        assert!(inside(b.mem.addr), "{}: {}", c.name(), b.name);
                    }
                }
                _ => {}
            },
        }
        off += c.len();
    }
}

/// Valid seeds to mutate: a draw stream, blits, video, a batch call.
pub fn seeds() -> Vec<(Engine, Vec<u32>)> {
    let b = HIDDEN + 0x1_0000;
    let mut blit = color_blt(b, 256, 8).to_vec();
    blit.extend(copy_blt(b + 0x4000, b, 256, 8));
    blit.extend(flush_dw(b + 0x8000));
    let mut video = mfx_ind_obj([(b, b + 0x100); 5]).to_vec();
    video.extend(mfx_bsp([b, b, b]));
    let mut call = bb_start(HIDDEN + 0x30_0000, false).to_vec();
    call.extend(sdi(b, 7));
    // Blitter setup (PATCOPY, 32 bpp, pitch 1 KiB, pattern), scanlines,
    // a pixel, then a pattern blit.
    let blt = 2 << 29;
    let p = b + 0x8000;
    let mut setup = vec![
        blt | (0x01 << 22) | 8,
        (3 << 24) | (0xf0 << 16) | 1024,
        0,
        0,
        lo(b),
        hi(b),
        0,
        !0,
        lo(p),
        hi(p),
    ];
    setup.extend([blt | (0x25 << 22) | 1, 0, 8 << 16 | 64]);
    setup.extend([blt | (0x24 << 22), 2 << 16 | 3]);
    setup.extend([
        blt | (0x51 << 22) | 6,
        (3 << 24) | (0xf0 << 16) | 256,
        0,
        4 << 16 | 64,
        lo(b),
        hi(b),
        lo(p),
        hi(p),
    ]);
    // Every shaped blit of the table (mono sources, text, chroma, full
    // and immediate forms).
    let shaped = shaped_blits(BlitOps {
        dst: b,
        src: b + 0x4000,
        pat: p,
        pitch: 256,
        width: 64,
        rows: 8,
    });
    let mut pak = hcp_pipe_mode(0).to_vec();
    pak.extend(hcp_ind_obj((b, b + 0x1000), b, (b + 0x2000, b + 0x3000)));
    pak.extend(pak_insert(&[(8 * 100, b), (13, b + 0x100)]));
    pak.extend(mfx_bsp([b, b, b]));
    // Register writes with value rules (Mesa's Gen9 context set-up) and
    // STATE_SIP; the blitter's Y-tiling register around a Ys fast copy;
    // a codec status read after a decode object.
    let mut regs = vec![
        (0x22 << 23) | 7,
        0x7034,
        0xc000_0040,
        0x20d8,
        0x0010_0010,
        0x7004,
        0x0212_0212,
        0x2580,
        0x0001_0001,
    ];
    regs.extend([gfx(0x0102, 3), 0, 0]);
    let mut tiled = vec![(0x22 << 23) | 1, 0x2_2200, 0x0003_0003];
    tiled.extend([
        blt | (0x42 << 22) | (3 << 13) | 8,
        (4 << 24) | 256,
        0,
        1 << 16 | 16,
        lo(b),
        hi(b),
        0,
        1024,
        lo(b + 0x2_0000),
        hi(b + 0x2_0000),
    ]);
    tiled.extend([(0x22 << 23) | 1, 0x2_2200, 0x0003_0000]);
    let mut status = state_for(consumer("MFD_AVC_BSD_OBJECT"));
    status.extend([gfx(0x1128, 6), 0, 0, 0, 0, 0]);
    status.extend(gpu::encode::srm(0x1_2800, b));
    let mut all = vec![
        (Engine::Render, draw_batch(2, false)),
        (Engine::Blitter, blit),
        (Engine::Video, video),
        (Engine::Render, call),
        (Engine::Blitter, setup),
        (Engine::Blitter, shaped),
        (Engine::Video, pak),
        (Engine::Render, regs),
        (Engine::Blitter, tiled),
        (Engine::Video, status),
    ];
    all.extend(mi_seeds());
    all.extend(state_seeds());
    all
}

/// Streams of the MI commands that move data or control (register loads
/// and stores, the ALU, memory copies, atomics, predication, conditional
/// batch ends, waits) on every engine, for the mutator to start from.
pub fn mi_seeds() -> Vec<(Engine, Vec<u32>)> {
    use gpu::encode::predicate::{COMBINE_SET, COMPARE_SRCS_EQUAL, LOAD_LOADINV};
    use gpu::encode::{
        alu, atomic, atomic_dword, atomic_qword, copy_mem_mem, lri, lrm, lrr, mi_math,
        mi_predicate, semaphore_wait, set_predicate, srm,
    };
    use gpu::regs::ring;
    let b = HIDDEN + 0x1_0000;
    let mut out = Vec::new();
    for engine in Engine::ALL {
        let gpr = |n: u32| engine.mmio_base() + ring::GPR_BASE + 8 * n;
        let mut s = lri(gpr(0), 7).to_vec();
        s.extend(lrm(gpr(1), b));
        s.push(mi_math(4));
        s.extend([
            alu::op(alu::LOAD, alu::SRCA, 0),
            alu::op(alu::LOAD, alu::SRCB, 1),
            alu::op(alu::ADD, 0, 0),
            alu::op(alu::STORE, 2, alu::ACCU),
        ]);
        s.extend(lrr(gpr(2), gpr(3)));
        s.extend(srm(gpr(3), b + 0x10));
        s.extend(copy_mem_mem(b + 0x20, b + 0x10));
        s.extend(atomic_dword(b + 0x30, atomic::ADD, 1, 0, true));
        s.extend(atomic_qword(b + 0x38, atomic::CMP_WR, 0, 5, false));
        s.extend(semaphore_wait(b + 0x30, 0, 0, true));
        out.push((engine, s));
    }
    // MI_PREDICATE from two register-loaded sources, its result stored,
    // a predicated draw, a conditional batch end, MI_SET_PREDICATE (NOOP
    // Never: the form the scanner accepts) around a register write. The
    // forms the scanner refuses (a predicated batch start, the other
    // MI_SET_PREDICATE modes) are one bit flip away.
    let mut pred = lri(0x2400, 1).to_vec();
    pred.extend(lri(0x2408, 1));
    pred.push(mi_predicate(LOAD_LOADINV, COMBINE_SET, COMPARE_SRCS_EQUAL));
    let mut store = srm(0x2418, b + 0x40);
    store[0] |= 1 << 21;
    pred.extend(store);
    let mut draw = primitive();
    draw[0] |= 1 << 8;
    pred.extend(draw);
    // The fixture's batch with a conditional end (refused in the ring).
    pred.extend(bb_start(COND_BATCH, false));
    pred.push(set_predicate(0));
    pred.extend(lri(0x2434, 1));
    out.push((Engine::Render, pred));
    out
}

/// A first-level batch of the [`fixture`]: a conditional batch end on a
/// masked compare, a store after it (which may not run), a second-level
/// call whose callee may end early too, and the batch end.
pub const COND_BATCH: u64 = HIDDEN + 0x34_0000;

fn cond_batch() -> Vec<u32> {
    use gpu::encode::cond_bb_end;
    let b = HIDDEN + 0x1_0000;
    let callee = COND_BATCH + 0x1000;
    let mut w = cond_bb_end(b + 0x48, 0, true).to_vec();
    w.extend(sdi(b + 0x50, 1));
    w.extend(bb_start(callee, true));
    w.push(BB_END);
    w
}

fn cond_callee() -> Vec<u32> {
    use gpu::encode::cond_bb_end;
    let b = HIDDEN + 0x1_0000;
    let mut w = cond_bb_end(b + 0x58, 3, false).to_vec();
    w.extend(pipe_control(b + 0x60));
    w.push(BB_END);
    w
}

/// Streams of the commands that consume state set before them
/// ([`gpu::scan::tracked::CONSUMERS`]), each after the state it needs: a
/// HiZ depth clear (3DSTATE_WM_HZ_OP after the depth packet, as Mesa's
/// blorp emits it), an SFC frame, an HEVC decode object, a HuC stream
/// object (HUC_START itself is refused: no state bounds its regions), and
/// the video pipes' state commands alone.
pub fn state_seeds() -> Vec<(Engine, Vec<u32>)> {
    let b = HIDDEN + 0x4_0000;
    // 256 x 256 D32_FLOAT with HiZ (pitch 1 KiB, HiZ pitch 128 bytes),
    // stencil disabled, then a depth clear of the whole surface and the
    // closing all-zero WM_HZ_OP.
    let mut hz = multisample(0).to_vec();
    hz.extend([
        gfx(0x1805, 8),
        1 << 29 | 1 << 28 | 1 << 22 | 1 << 18 | 1023,
        lo(b),
        hi(b),
        255 << 18 | 255 << 4,
        0,
        0,
        64,
    ]);
    let hiz = b + 0x14_0000;
    hz.extend([gfx(0x1807, 5), 127, lo(hiz), hi(hiz), 64]);
    hz.extend([gfx(0x1806, 5), 0, 0, 0, 0]);
    hz.extend([gfx(0x1804, 3), 0x3f80_0000, 1]);
    hz.extend([
        gfx(0x1852, 5),
        1 << 30 | 1 << 25,
        0,
        256 << 16 | 256,
        0xffff,
    ]);
    hz.extend([gfx(0x1852, 5), 0, 0, 0, 0]);
    let with_object = |name: &str| {
        let c = consumer(name);
        let mut w = state_for(c);
        w.extend(tracked_object(name));
        w
    };
    let mut video_state = Vec::new();
    for t in [
        Tracked::MfxPipeMode,
        Tracked::MfxSurface,
        Tracked::MfxPipeBuf,
        Tracked::MfxAvcImg,
        Tracked::HcpPipeMode,
        Tracked::HcpSurface,
        Tracked::VdencPipeMode,
    ] {
        video_state.extend(tracked_command(t));
    }
    vec![
        (Engine::Render, hz),
        (Engine::Video, with_object("SFC_FRAME_START")),
        (Engine::Video, with_object("HCP_BSD_OBJECT")),
        (Engine::Video, with_object("HUC_STREAM_OBJECT")),
        (Engine::Video, video_state),
    ]
}

/// The shortest form of the consuming command `name` (all-zero body).
fn tracked_object(name: &str) -> Vec<u32> {
    shortest(row(name))
}

pub fn fixture() -> FakeGm {
    let mut g = FakeGm::new();
    // A batch that calls a second-level batch twice and chains once.
    let a = HIDDEN + 0x30_0000;
    let c = HIDDEN + 0x31_0000;
    let mut w = bb_start(c, true).to_vec();
    w.extend(bb_start(c, true));
    w.extend(draw_batch(1, true));
    g.write(a, &w);
    g.write(c, &draw_batch(1, true));
    g.write(COND_BATCH, &cond_batch());
    g.write(COND_BATCH + 0x1000, &cond_callee());
    g
}

// ---- the state a consuming command needs (gpu::scan::tracked) ----

/// Where [`tracked_command`] points every buffer: in the hidden slice,
/// far from its end.
pub const STATE_AT: u64 = HIDDEN + 0x10_0000;

/// The shortest form of the command of row `c`: its header with the
/// smallest accepted length, every other DWord zero.
pub fn shortest(c: &CmdSpec) -> Vec<u32> {
    let (len, bias) = match c.len {
        Len::Fixed(n) => (usize::from(n), usize::from(n)),
        Len::Field { bias, min, .. } => ((min as usize).max(usize::from(bias)), usize::from(bias)),
    };
    let mut cmd = vec![0u32; len];
    cmd[0] = c.opcode.header_bits() | (len - bias) as u32;
    cmd
}

/// Writes guest address `a` into field `f` of element base `eb` of `w`.
pub fn put_field(w: &mut [u32], eb: usize, f: &AddrField, a: u64) {
    let d = eb + usize::from(f.dword);
    let keep = (1u32 << f.shift) - 1;
    w[d] = (w[d] & keep) | (a as u32 & !keep);
    match f.high {
        High::None => {}
        High::Bits16 => w[d + 1] = (w[d + 1] & 0xffff_0000) | (hi(a) & 0xffff),
        High::Bits32 => w[d + 1] = hi(a),
    }
}

/// A valid, small instance of the command setting `t`: every buffer at
/// [`STATE_AT`], every indirect object bounded to 4 KiB, surfaces and
/// frames of one pixel or block, the pipes in decode mode with no
/// stream-out; the depth packet as a 1 x 1 depth buffer, HiZ off and a
/// disabled stencil buffer.
pub fn tracked_command(t: Tracked) -> Vec<u32> {
    tracked_command_at(t, STATE_AT)
}

/// [`tracked_command`] with every buffer at guest GM `at` instead.
pub fn tracked_command_at(t: Tracked, at: u64) -> Vec<u32> {
    let row = gpu::scan::COMMANDS
        .iter()
        .find(|s| s.name == t.command())
        .unwrap();
    match t {
        Tracked::DepthBuffer => return depth_buffer(at).to_vec(),
        Tracked::HierDepth => return vec![gfx(0x1807, 5), 127, lo(at), hi(at), 0],
        Tracked::Stencil => return vec![gfx(0x1806, 5), 0, 0, 0, 0],
        _ => {}
    }
    let mut w = shortest(row);
    if let Op::Gm(layout) = row.op {
        let fields = layout.fields.iter().map(|f| (0, f));
        let grouped = layout.group.into_iter().flat_map(|(g, fs)| {
            let n = if g.count == 0 {
                1
            } else {
                usize::from(g.count)
            };
            (0..n).flat_map(move |e| {
                fs.iter()
                    .map(move |f| (usize::from(g.start) + e * usize::from(g.stride), f))
            })
        });
        for (eb, f) in fields.chain(grouped) {
            if eb + usize::from(f.dword) + 1 >= w.len() {
                continue;
            }
            put_field(&mut w, eb, f, at);
            if let Extent::UpperBound { dword } = f.extent {
                let b = eb + usize::from(dword);
                w[b] = lo(at + 0x1000);
                w[b + 1] = hi(at + 0x1000);
            }
        }
    }
    w
}

/// The state commands consumer `c` needs (the first member of each of
/// its groups, and its indirect objects), each from [`tracked_command`].
pub fn state_for(c: &Consumer) -> Vec<u32> {
    state_for_at(c, STATE_AT)
}

/// [`state_for`] with every buffer at guest GM `at` instead.
pub fn state_for_at(c: &Consumer, at: u64) -> Vec<u32> {
    // Not the consumer itself (MFX_DBK_OBJECT sets its own buffers).
    let mut ts: Vec<Tracked> = c
        .needs
        .iter()
        .map(|g| g[0])
        .filter(|t| t.command() != c.command)
        .collect();
    if let Some((t, _)) = c.bounded {
        if !ts.contains(&t) {
            ts.push(t);
        }
    }
    ts.into_iter()
        .flat_map(|t| tracked_command_at(t, at))
        .collect()
}

/// The consumer row of command `name`.
pub fn consumer(name: &str) -> &'static Consumer {
    row(name)
        .consumer()
        .unwrap_or_else(|| panic!("{name} consumes nothing"))
}

/// The table row named `name`.
pub fn row(name: &str) -> &'static CmdSpec {
    gpu::scan::COMMANDS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name}: no row"))
}
