//! Scanner throughput on realistic command streams, against memcpy of the
//! same bytes in the same run.
//!
//! Streams (all through the full scanner: copy into the shadow, decode,
//! audit, remap, batch following): 3D draws with state in chained batches,
//! blits in the ring, media objects with inline data, video (MFX) state,
//! and a mixed stream of second-level calls and chained batches. Each is
//! timed after a warm-up as the best of N runs. The reference is a memcpy
//! of the same bytes in the same run: exactly the guest DWords the scan
//! consumed (ring and every batch segment), from the same guest memory into
//! the same shadow buffers, with the same warm-up and best of N — the floor
//! of a scanner that must copy before it checks.
//!
//! A second reference, the sequential floor, adds to that copy the bare
//! walk over the copied commands ([`chase`]: load a header, add its length,
//! load the next; no table, no checks, no audit). Each command's place
//! depends on the previous command's length, so every scanner that decodes
//! one command after another pays this chain of a load and an add per
//! command; where `floor_ratio` is below a goal, no such scanner reaches
//! that goal on this machine, whatever its audits cost.
//!
//! `cargo run -p gpu --release --example scan_bench -- [--quick] [--out DIR]`
//! writes `DIR/scan.json`:
//! `{"streams":[{"name","bytes","scan_gbps","memcpy_gbps","ratio","floor_gbps","floor_ratio"}],"ratio_min":..,"floor_ratio_min":..}`.

#[path = "../tests/scan_support/mod.rs"]
mod scan_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use gpu::engine::Engine;
use gpu::scan::scanner::BATCH_DWORDS;
use gpu::scan::{GmSpace, RingState, Shadow};
use scan_support::*;

struct Stream {
    name: &'static str,
    engine: Engine,
    gm: FakeGm,
    ring: RingState,
}

/// Writes `segments` as batches chained one to the next at `at`, `stride`
/// bytes apart; returns the first address.
fn chain(g: &mut FakeGm, at: u64, stride: u64, segments: &[Vec<u32>]) -> u64 {
    for (i, seg) in segments.iter().enumerate() {
        let mut w = seg.clone();
        if i + 1 < segments.len() {
            w.extend(bb_start(at + stride * (i as u64 + 1), false));
        } else {
            w.push(BB_END);
        }
        assert!(w.len() <= BATCH_DWORDS, "segment too long");
        g.write(at + stride * i as u64, &w);
    }
    at
}

fn draws() -> Stream {
    let mut g = FakeGm::new();
    // 110 draws with their depth packet fill one shadow batch.
    let segs: Vec<Vec<u32>> = (0..7).map(|_| draw_batch(110, false)).collect();
    let first = chain(&mut g, HIDDEN + 0x38_0000, 0x8000, &segs);
    let mut cmds = Vec::new();
    cmds.extend(pipe_control(HIDDEN + 0x3f_f000));
    cmds.extend(bb_start(first, false));
    let ring = ring(&mut g, &cmds);
    Stream {
        name: "3d_draws",
        engine: Engine::Render,
        gm: g,
        ring,
    }
}

fn blits() -> Stream {
    let mut g = FakeGm::new();
    let mut cmds = Vec::new();
    let mut i = 0u64;
    while cmds.len() < 15_000 {
        let dst = HIDDEN + 0x10_0000 + (i % 16) * 0x1_0000;
        let src = HIDDEN + 0x20_0000 + (i % 8) * 0x1_0000;
        cmds.extend(color_blt(dst, 1024, 32));
        cmds.extend(copy_blt(dst + 0x8000, src, 1024, 16));
        cmds.extend(flush_dw(HIDDEN + 0x3f_f000));
        i += 1;
    }
    let ring = ring(&mut g, &cmds);
    Stream {
        name: "blits",
        engine: Engine::Blitter,
        gm: g,
        ring,
    }
}

fn media() -> Stream {
    let mut g = FakeGm::new();
    let seg = |_| {
        let mut w = sba(HIDDEN, 0x1_0000, 0x1_0000).to_vec();
        while w.len() < 7_800 {
            w.extend(media_object(24));
            w.extend([gfx(0x1004, 2), 0]); // MEDIA_STATE_FLUSH
        }
        w
    };
    let segs: Vec<Vec<u32>> = (0..7).map(seg).collect();
    let first = chain(&mut g, HIDDEN + 0x38_0000, 0x8000, &segs);
    let ring = ring(&mut g, &bb_start(first, false));
    Stream {
        name: "media",
        engine: Engine::Render,
        gm: g,
        ring,
    }
}

fn video() -> Stream {
    let mut g = FakeGm::new();
    let b = HIDDEN + 0x10_0000;
    let mut cmds = Vec::new();
    while cmds.len() < 15_000 {
        cmds.extend(mfx_ind_obj([
            (b, b + 0x1_0000),
            (b + 0x2_0000, b + 0x3_0000),
            (b + 0x4_0000, 0),
            (b + 0x5_0000, b + 0x6_0000),
            (b + 0x7_0000, b + 0x8_0000),
        ]));
        cmds.extend(mfx_bsp([b + 0x9_0000, b + 0xa_0000, b + 0xb_0000]));
        cmds.extend([gfx(0x1000, 5), 0, 0, 0, 0]); // MFX_PIPE_MODE_SELECT
        cmds.extend(flush_dw(HIDDEN + 0x3f_f000));
    }
    let ring = ring(&mut g, &cmds);
    Stream {
        name: "video",
        engine: Engine::Video,
        gm: g,
        ring,
    }
}

fn chained_calls() -> Stream {
    let mut g = FakeGm::new();
    // A second-level batch of draws, called from every chained segment.
    let callee = HIDDEN + 0x30_0000;
    let mut c = Vec::new();
    for _ in 0..40 {
        for _ in 0..6 {
            c.extend(plain_state());
        }
        c.extend(vertex_buffers(&[(HIDDEN + 0x10_0000, 0x1000)]));
        c.extend(primitive());
    }
    c.push(BB_END);
    g.write(callee, &c);
    let seg = |i: u64| {
        let mut w = Vec::new();
        for j in 0..60u64 {
            w.extend(sdi(HIDDEN + 0x3f_0000 + 8 * ((i * 60 + j) % 256), 1));
            w.extend(bb_start(callee, true));
            w.extend(pipe_control(HIDDEN + 0x3f_f000));
        }
        w
    };
    let segs: Vec<Vec<u32>> = (0..7).map(seg).collect();
    let first = chain(&mut g, HIDDEN + 0x38_0000, 0x8000, &segs);
    let ring = ring(&mut g, &bb_start(first, false));
    Stream {
        name: "chained_calls",
        engine: Engine::Render,
        gm: g,
        ring,
    }
}

fn best<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

struct Row {
    name: &'static str,
    bytes: u64,
    scan: f64,
    memcpy: f64,
    /// GB/s of the copy plus the bare length chase (see [`chase`]).
    floor: f64,
}

/// Walks `buf` command by command with nothing but the length rule of the
/// streams' command types (MI: opcodes below 0x10 are one DWord, else a
/// 6-bit length; blitter 8-bit; 3D 8-bit; media and video 12-bit; all with
/// bias 2), and returns the commands seen. No table, no checks, no audit:
/// the dependency chain (load a header, add its length, load the next) that
/// any scanner decoding one command after another pays. Copy plus this chase
/// bounds from above what a sequential scanner can reach on this machine.
#[inline(never)]
fn chase(buf: &[u32]) -> u32 {
    let mut o = 0;
    let mut n = 0;
    while let Some(&h) = buf.get(o) {
        let len = match h >> 29 {
            0 if (h >> 23) & 0x3f < 0x10 => 1,
            0 => (h & 0x3f) as usize + 2,
            3 if (h >> 27) & 3 == 2 => (h & 0xfff) as usize + 2,
            _ => (h & 0xff) as usize + 2,
        };
        o += len;
        n += 1;
    }
    n
}

fn measure(s: &Stream, shadow: &mut Shadow, quick: bool) -> Row {
    shadow.engine = s.engine;
    let sub = shadow.scan(&s.gm, s.ring).expect("stream must be accepted");
    let bytes = 4 * u64::from(sub.dwords);
    // Iterations per timed run: about 4 MiB of commands.
    let iters = ((4u64 << 20) / bytes).max(1) as usize;
    let (warm, runs) = if quick { (2, 5) } else { (10, 30) };
    let scan_once = |sh: &mut Shadow| {
        for _ in 0..iters {
            black_box(sh.scan(black_box(&s.gm), black_box(s.ring)).ok());
        }
    };
    for _ in 0..warm {
        scan_once(shadow);
    }
    let t_scan = best(runs, || scan_once(shadow));
    // The reference: memcpy of exactly the bytes the scan consumed, from
    // where the guest keeps them into the shadow buffers the scan fills
    // (ring, then each batch segment), through the same `read_guest`.
    let mut plan = vec![(
        s.ring.start.raw() + u64::from(s.ring.head),
        sub.ring_dwords,
        None,
    )];
    for (i, b) in shadow.batches[..sub.batches].iter().enumerate() {
        plan.push((b.guest.raw(), b.len, Some(i)));
    }
    let copied: usize = plan.iter().map(|p| p.1).sum();
    assert_eq!(
        4 * copied as u64,
        bytes,
        "reference copies the scanned bytes"
    );
    // One pass: copy each piece into its shadow buffer, then `walk` it;
    // returns the commands walked in the last iteration.
    let pass = |sh: &mut Shadow, walk: fn(&[u32]) -> u32| -> u32 {
        let mut seen = 0;
        for _ in 0..iters {
            seen = 0;
            for &(at, n, slot) in &plan {
                let dst = match slot {
                    None => &mut sh.ring[..n],
                    Some(i) => &mut sh.batches[i].words[..n],
                };
                black_box(&s.gm)
                    .read_guest(gg(at), dst)
                    .expect("scanned bytes are readable");
                seen += walk(black_box(&*dst));
            }
        }
        seen
    };
    let copy_only: fn(&[u32]) -> u32 = |_| 0;
    for _ in 0..warm {
        pass(shadow, copy_only);
    }
    let t_copy = best(runs, || {
        black_box(pass(shadow, copy_only));
    });
    // The floor: the same copy, then the bare chase over each copied piece.
    assert_eq!(
        pass(shadow, chase),
        sub.commands,
        "the bare chase walks the commands the scan counted"
    );
    for _ in 0..warm {
        pass(shadow, chase);
    }
    let t_floor = best(runs, || {
        black_box(pass(shadow, chase));
    });
    let total = (bytes * iters as u64) as f64;
    eprintln!(
        "{}: {} commands, {:.1} ns/command",
        s.name,
        sub.commands,
        t_scan.as_secs_f64() * 1e9 / (iters as f64 * f64::from(sub.commands))
    );
    Row {
        name: s.name,
        bytes,
        scan: total / t_scan.as_secs_f64() / 1e9,
        memcpy: total / t_copy.as_secs_f64() / 1e9,
        floor: total / t_floor.as_secs_f64() / 1e9,
    }
}

fn main() {
    let mut quick = false;
    let mut out = None;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().expect("--out DIR")),
            "--only" => only = Some(args.next().expect("--only STREAM")),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    let streams = [draws(), blits(), media(), video(), chained_calls()];
    let mut shadow = shadow(Engine::Render);
    let rows: Vec<Row> = streams
        .iter()
        .filter(|s| only.as_deref().is_none_or(|o| o == s.name))
        .map(|s| measure(s, &mut shadow, quick))
        .collect();
    let ratio_min = rows
        .iter()
        .map(|r| r.scan / r.memcpy)
        .fold(f64::INFINITY, f64::min);
    println!(
        "{:<16} {:>10} {:>10} {:>12} {:>7} {:>12}",
        "stream", "bytes", "scan GB/s", "memcpy GB/s", "ratio", "floor ratio"
    );
    for r in &rows {
        println!(
            "{:<16} {:>10} {:>10.2} {:>12.2} {:>7.3} {:>12.3}",
            r.name,
            r.bytes,
            r.scan,
            r.memcpy,
            r.scan / r.memcpy,
            r.floor / r.memcpy
        );
    }
    println!("ratio_min {ratio_min:.3}");
    if let Some(dir) = out {
        let streams: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"name\":\"{}\",\"bytes\":{},\"scan_gbps\":{:.4},\"memcpy_gbps\":{:.4},\"ratio\":{:.4},\"floor_gbps\":{:.4},\"floor_ratio\":{:.4}}}",
                    r.name,
                    r.bytes,
                    r.scan,
                    r.memcpy,
                    r.scan / r.memcpy,
                    r.floor,
                    r.floor / r.memcpy
                )
            })
            .collect();
        let floor_min = rows
            .iter()
            .map(|r| r.floor / r.memcpy)
            .fold(f64::INFINITY, f64::min);
        let json = format!(
            "{{\"streams\":[{}],\"ratio_min\":{:.4},\"floor_ratio_min\":{:.4}}}\n",
            streams.join(","),
            ratio_min,
            floor_min
        );
        std::fs::create_dir_all(&dir).expect("create --out DIR");
        let path = std::path::Path::new(&dir).join("scan.json");
        std::fs::write(&path, json).expect("write scan.json");
        println!("wrote {}", path.display());
    }
}
