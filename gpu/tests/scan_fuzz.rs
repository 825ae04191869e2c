//! Proptest: random and mutated command streams through the scanner never
//! panic, end within the budget, and every address the scanner rewrote in
//! an accepted submission lies in the vGPU's host slices (or, for batch
//! starts, in the monitor's shadow batches).

mod scan_support;

use gpu::engine::Engine;
use gpu::scan::operands::{Extent, High, When};
use gpu::scan::scanner::{MAX_COMMANDS, MAX_DWORDS};
use gpu::scan::{decode, CommandRepr, Op, Shadow};
use proptest::prelude::*;
use scan_support::*;

/// Checks every remappable address of the accepted buffer `buf` (which
/// decoded cleanly during the scan) against the host slices.
fn check_buffer(engine: Engine, buf: &[u32]) {
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
            _ => match CommandRepr::parse(&c) {
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

fn run(engine: Engine, g: &FakeGm, cmds: &[u32], s: &mut Shadow) {
    let mut g2 = FakeGm {
        aperture: g.aperture.clone(),
        hidden: g.hidden.clone(),
    };
    let rs = ring(&mut g2, cmds);
    s.engine = engine;
    if let Ok(sub) = s.scan(&g2, rs) {
        assert!(sub.commands <= MAX_COMMANDS && sub.dwords <= MAX_DWORDS);
        check_buffer(engine, &s.ring[..sub.ring_dwords]);
        for b in &s.batches[..sub.batches] {
            check_buffer(engine, &b.words[..b.len]);
        }
    }
}

/// Valid seeds to mutate: a draw stream, blits, video, a batch call.
fn seeds() -> Vec<(Engine, Vec<u32>)> {
    let b = HIDDEN + 0x1_0000;
    let mut blit = color_blt(b, 256, 8).to_vec();
    blit.extend(copy_blt(b + 0x4000, b, 256, 8));
    blit.extend(flush_dw(b + 0x8000));
    let mut video = mfx_ind_obj([(b, b + 0x100); 5]).to_vec();
    video.extend(mfx_bsp([b, b, b]));
    let mut call = bb_start(HIDDEN + 0x30_0000, false).to_vec();
    call.extend(sdi(b, 7));
    vec![
        (Engine::Render, draw_batch(2, false)),
        (Engine::Blitter, blit),
        (Engine::Video, video),
        (Engine::Render, call),
    ]
}

fn fixture() -> FakeGm {
    let mut g = FakeGm::new();
    // A batch that calls a second-level batch twice and chains once.
    let a = HIDDEN + 0x30_0000;
    let c = HIDDEN + 0x31_0000;
    let mut w = bb_start(c, true).to_vec();
    w.extend(bb_start(c, true));
    w.extend(draw_batch(1, true));
    g.write(a, &w);
    g.write(c, &draw_batch(1, true));
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_streams(words in prop::collection::vec(any::<u32>(), 0..200), e in 0usize..4) {
        let g = fixture();
        let mut s = shadow(Engine::ALL[e]);
        run(Engine::ALL[e], &g, &words, &mut s);
    }

    #[test]
    fn mutated_streams(
        seed in 0usize..4,
        flips in prop::collection::vec((any::<usize>(), 0u32..32), 1..6),
        sets in prop::collection::vec((any::<usize>(), any::<u32>()), 0..3),
    ) {
        let g = fixture();
        let (engine, mut cmds) = seeds().swap_remove(seed);
        for (i, b) in flips {
            let n = cmds.len();
            cmds[i % n] ^= 1 << b;
        }
        for (i, v) in sets {
            let n = cmds.len();
            cmds[i % n] = v;
        }
        let mut s = shadow(engine);
        run(engine, &g, &cmds, &mut s);
    }
}

#[test]
fn seeds_are_accepted() {
    let g = fixture();
    for (engine, cmds) in seeds() {
        let mut g2 = FakeGm {
            aperture: g.aperture.clone(),
            hidden: g.hidden.clone(),
        };
        let rs = ring(&mut g2, &cmds);
        let mut s = shadow(engine);
        let sub = s.scan(&g2, rs).unwrap_or_else(|e| panic!("{e}"));
        check_buffer(engine, &s.ring[..sub.ring_dwords]);
    }
}
