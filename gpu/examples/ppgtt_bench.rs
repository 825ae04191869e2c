//! Shadow-PPGTT maintenance cost ([`gpu::ppgtt::shadow`], validate at
//! submission), against the plain scan of a submission in the same run.
//!
//! The guest's tables are laid out as i915 lays them: every unused entry
//! of each level names one scratch table of the next level, the mapped
//! working set is a run of PTs under one PD chain. For each working set
//! (16, 64, 256 MiB mapped) it times, best of N after a warm-up:
//! * `pin_us`: building the shadow from nothing (a context's first
//!   submission);
//! * `sync_clean_us`: a full re-derive that finds nothing changed
//!   ([`SyncScope::Everything`], what a memory-map change costs);
//! * `sync_one_update_us`, `sync_rebind_pt_us`: the same after one PTE,
//!   and after one whole PT (512 PTEs, a 2 MiB object rebound), changed;
//!   `per_update_ns` is the rebind's extra cost over the clean walk, per
//!   PTE;
//! * `changed_*`: the same with [`SyncScope::Changed`] (every table
//!   re-read, only the chunks whose digest changed re-derived): the
//!   per-submission path;
//! * `written_clean_us`, `written_one_update_us`: the re-walk narrowed to
//!   the guest pages written since the last sync ([`SyncScope::Written`]).
//!
//! The reference, `scan_us`, is the scanner's time for one 3D submission
//! (the `3d_draws` stream of `scan_bench`: seven chained batches of 110
//! draws), so `*_vs_scan` says what the shadow adds to a submission.
//!
//! `cargo run -p gpu --release --example ppgtt_bench -- [--quick] [--out DIR]`
//! writes `DIR/ppgtt.json`:
//! `{"scan_us","sets":[{"mapped_mib","tables","pin_us","sync_clean_us",...,"sync_clean_vs_scan"}]}`.

#[path = "../tests/scan_support/mod.rs"]
mod scan_support;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use gpu::addr::{GuestPage, PhysAddr, PhysFrame};
use gpu::backend::{PhysMem, PhysMemError};
use gpu::engine::Engine;
use gpu::ppgtt::shadow::{ShadowPpgtt, SyncScope};
use gpu::ppgtt::{Entry, WRITABLE};
use gpu::scan::RingState;
use gpu::vgpu::{FrameRun, FrameRuns};
use scan_support::*;

/// Guest memory: 512 MiB of pages from frame GUEST_FRAME.
const GUEST_PAGES: u64 = 128 * 1024;
const GUEST_FRAME: u64 = 0x100;
const POOL: u64 = GUEST_FRAME + GUEST_PAGES;
const SHADOW_TABLES: usize = 1024;

/// Flat physical memory, one vector.
struct Flat(Vec<u8>);

impl PhysMem for Flat {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let a = addr.raw() as usize;
        let src = self.0.get(a..a + buf.len()).ok_or(PhysMemError { addr })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysMemError> {
        let a = addr.raw() as usize;
        let dst = self
            .0
            .get_mut(a..a + data.len())
            .ok_or(PhysMemError { addr })?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

struct Guest {
    mem: Flat,
    map: FrameRuns<1>,
}

impl Guest {
    fn set(&mut self, page: u64, index: usize, e: Entry) {
        let at = PhysFrame::new(GUEST_FRAME + page)
            .unwrap()
            .at(index as u64 * 8);
        self.mem.write(at, &e.raw().to_le_bytes()).unwrap();
    }
}

/// Guest page numbers of the tables.
const PML4: u64 = 1;
const PDP: u64 = 2;
const PD: u64 = 3;
const SCRATCH_PDP: u64 = 4;
const SCRATCH_PD: u64 = 5;
const SCRATCH_PT: u64 = 6;
const SCRATCH: u64 = 7;
const FIRST_PT: u64 = 16;
const FIRST_DATA: u64 = 1024;

/// i915's layout with `pts` PTs mapped (2 MiB each) at PPGTT 0.
fn guest(pts: u64) -> Guest {
    let mut g = Guest {
        mem: Flat(vec![
            0;
            ((POOL + gpu::ppgtt::shadow::pool_frames(SHADOW_TABLES)) * 4096)
                as usize
        ]),
        map: FrameRuns::new(),
    };
    g.map
        .push(FrameRun {
            first_page: GuestPage::new(0).unwrap(),
            first_frame: PhysFrame::new(GUEST_FRAME).unwrap(),
            count: GUEST_PAGES,
        })
        .unwrap();
    let t = |p| Entry::new(p, WRITABLE);
    for i in 0..512 {
        g.set(PML4, i, t(SCRATCH_PDP));
        g.set(SCRATCH_PDP, i, t(SCRATCH_PD));
        g.set(PDP, i, t(SCRATCH_PD));
        g.set(SCRATCH_PD, i, t(SCRATCH_PT));
        g.set(PD, i, t(SCRATCH_PT));
        g.set(SCRATCH_PT, i, t(SCRATCH));
    }
    g.set(PML4, 0, t(PDP));
    g.set(PDP, 0, t(PD));
    for n in 0..pts {
        g.set(PD, n as usize, t(FIRST_PT + n));
        for i in 0..512 {
            let data = FIRST_DATA + (n * 512 + i) % (GUEST_PAGES - FIRST_DATA);
            g.set(FIRST_PT + n, i as usize, t(data));
        }
    }
    g
}

fn best(warm: usize, runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    for _ in 0..warm {
        f();
    }
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Scanner time for one 3D submission (scan_bench's `3d_draws`).
fn scan_reference(warm: usize, runs: usize) -> Duration {
    let mut g = FakeGm::new();
    let stride = 0x8000;
    let at = HIDDEN + 0x38_0000;
    for i in 0..7u64 {
        let mut w = draw_batch(110, false);
        if i < 6 {
            w.extend(bb_start(at + stride * (i + 1), false));
        } else {
            w.push(BB_END);
        }
        g.write(at + stride * i, &w);
    }
    let mut cmds = pipe_control(HIDDEN + 0x3f_f000).to_vec();
    cmds.extend(bb_start(at, false));
    let ring: RingState = ring(&mut g, &cmds);
    let mut sh = shadow(Engine::Render);
    sh.scan(&g, ring).expect("the 3D stream is accepted");
    best(warm, runs, || {
        timed(|| {
            black_box(sh.scan(black_box(&g), black_box(ring)).ok());
        })
    })
}

fn main() {
    let mut quick = false;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().expect("--out DIR")),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let (warm, runs) = if quick { (2, 5) } else { (5, 25) };
    let scan = scan_reference(warm * 4, runs * 4);
    eprintln!("scan of one 3D submission: {:.1} us", us(scan));
    let pool = PhysFrame::new(POOL).unwrap();
    let mut sets = Vec::new();
    for mib in [16u64, 64, 256] {
        let pts = mib / 2;
        let mut g = guest(pts);
        let mut s = ShadowPpgtt::<SHADOW_TABLES>::new(pool, SHADOW_TABLES, &mut g.mem).unwrap();
        let root_page = GuestPage::new(PML4).unwrap();
        let pin = best(warm, runs, || {
            let mut r = None;
            let t = timed(|| r = Some(s.pin(root_page, &g.map, &mut g.mem).unwrap()));
            let (root, _) = r.unwrap();
            s.unpin(root, &g.map, &mut g.mem).unwrap();
            t
        });
        let (root, stats) = s.pin(root_page, &g.map, &mut g.mem).unwrap();
        let tables = stats.tables_allocated;
        let mut sync = |g: &mut Guest, scope: SyncScope<'_>| {
            timed(|| {
                black_box(s.sync(&root, &g.map, &mut g.mem, scope).unwrap());
            })
        };
        let clean = best(warm, runs, || sync(&mut g, SyncScope::Everything));
        // Each run flips one PTE between two pages, so every run changes it.
        let mut flip = 0u64;
        let mut one_update = |g: &mut Guest| {
            flip ^= 1;
            g.set(FIRST_PT, 0, Entry::new(FIRST_DATA + 7 + flip, WRITABLE));
        };
        let one = best(warm, runs, || {
            one_update(&mut g);
            sync(&mut g, SyncScope::Everything)
        });
        let mut rebind = 0u64;
        let rebind_pt = |g: &mut Guest, rebind: &mut u64| {
            *rebind += 1;
            for i in 0..512 {
                let data = FIRST_DATA + (*rebind * 4096 + i) % (GUEST_PAGES - FIRST_DATA);
                g.set(FIRST_PT + 1, i as usize, Entry::new(data, WRITABLE));
            }
        };
        let pt = best(warm, runs, || {
            rebind_pt(&mut g, &mut rebind);
            sync(&mut g, SyncScope::Everything)
        });
        let changed_clean = best(warm, runs, || sync(&mut g, SyncScope::Changed));
        let changed_one = best(warm, runs, || {
            one_update(&mut g);
            sync(&mut g, SyncScope::Changed)
        });
        let changed_pt = best(warm, runs, || {
            rebind_pt(&mut g, &mut rebind);
            sync(&mut g, SyncScope::Changed)
        });
        let nothing_written = |_: GuestPage| false;
        let written_clean = best(warm, runs, || {
            sync(&mut g, SyncScope::Written(&nothing_written))
        });
        let first_pt: BTreeSet<u64> = [FIRST_PT].into();
        let written = |p: GuestPage| first_pt.contains(&p.number());
        let written_one = best(warm, runs, || {
            one_update(&mut g);
            sync(&mut g, SyncScope::Written(&written))
        });
        let per_update_ns = (pt.saturating_sub(clean)).as_secs_f64() * 1e9 / 512.0;
        let changed_per_update_ns =
            (changed_pt.saturating_sub(changed_clean)).as_secs_f64() * 1e9 / 512.0;
        eprintln!(
            "{mib} MiB mapped, {tables} shadow tables: pin {:.1} us; full re-derive: clean {:.1} us, \
             one update {:.1} us, one PT rebound {:.1} us ({per_update_ns:.1} ns per PTE); \
             changed chunks: clean {:.1} us, one update {:.1} us, one PT rebound {:.1} us \
             ({changed_per_update_ns:.1} ns per PTE); written-scope clean {:.2} us, one update {:.2} us",
            us(pin),
            us(clean),
            us(one),
            us(pt),
            us(changed_clean),
            us(changed_one),
            us(changed_pt),
            us(written_clean),
            us(written_one)
        );
        sets.push(serde_like(&[
            ("mapped_mib", mib as f64),
            ("tables", f64::from(tables)),
            ("pin_us", us(pin)),
            ("sync_clean_us", us(clean)),
            ("sync_one_update_us", us(one)),
            ("sync_rebind_pt_us", us(pt)),
            ("per_update_ns", per_update_ns),
            ("changed_clean_us", us(changed_clean)),
            ("changed_one_update_us", us(changed_one)),
            ("changed_rebind_pt_us", us(changed_pt)),
            ("changed_per_update_ns", changed_per_update_ns),
            ("written_clean_us", us(written_clean)),
            ("written_one_update_us", us(written_one)),
            ("pin_vs_scan", pin.as_secs_f64() / scan.as_secs_f64()),
            (
                "sync_clean_vs_scan",
                clean.as_secs_f64() / scan.as_secs_f64(),
            ),
            (
                "changed_clean_vs_scan",
                changed_clean.as_secs_f64() / scan.as_secs_f64(),
            ),
            (
                "written_clean_vs_scan",
                written_clean.as_secs_f64() / scan.as_secs_f64(),
            ),
        ]));
        s.unpin(root, &g.map, &mut g.mem).unwrap();
    }
    let json = format!(
        "{{\"scan_us\":{:.3},\"sets\":[{}]}}\n",
        us(scan),
        sets.join(",")
    );
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(std::path::Path::new(&dir).join("ppgtt.json"), &json).unwrap();
        }
        None => print!("{json}"),
    }
}

/// A flat JSON object of numbers (the example has no serde).
fn serde_like(fields: &[(&str, f64)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v:.4}"))
        .collect();
    format!("{{{}}}", body.join(","))
}
