//! `cargo xtask bench` entry points: digest bandwidth, the simulator table,
//! Markdown and SVG output.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use migrate::digest::{fnv1a, xor_fold_256, xxh3};
use migrate::{PageBuf, Policy, PAGE_SIZE};
use serde::Serialize;

use crate::net::LinkSetting;
use crate::run::{simulate, CostModel, RunResult, SimError};
use crate::trace::Trace;
use crate::workload::{Dirtier, Rng, WorkloadModel};

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct BenchOptions {
    /// Small sets (tests, CI smoke): 16 MiB hash set, workloads and links
    /// scaled down 16x, nominal CPU costs instead of measured ones.
    pub quick: bool,
    /// Extra workloads replayed from dirty traces: (name, trace).
    pub traces: Vec<(String, Trace)>,
}

/// Digest bandwidth over a set of 4 KiB pages, one run.
#[derive(Clone, Debug, Serialize)]
pub struct HashBench {
    /// Size of the page set.
    pub set_bytes: u64,
    /// Timed repetitions per function (best one kept), after one warm-up.
    pub reps: u32,
    /// SIMD features the bench binary was compiled with (`target_feature`),
    /// which is what xxh3 and the XOR fold could use.
    pub simd: String,
    /// xxh3-64, GB/s (10^9 bytes of page data per second).
    pub xxh3_gbps: f64,
    /// FNV-1a 64, GB/s.
    pub fnv_gbps: f64,
    /// gMig's 256-bit XOR fold, GB/s.
    pub xor_fold_gbps: f64,
    /// memcpy of every page into a second set of the same size, GB/s.
    pub memcpy_gbps: f64,
    /// xxh3 / memcpy (goal >= 1.8).
    pub xxh3_vs_memcpy: f64,
    /// xxh3 / XOR fold (goal >= 0.9).
    pub xxh3_vs_xor_fold: f64,
    /// The monitor's path: the same xxh3-64 on SSE2 only
    /// (`migrate::xxh3_sse2`), GB/s.
    pub monitor_sse2_gbps: f64,
    /// That path / memcpy.
    pub monitor_sse2_vs_memcpy: f64,
}

/// Goal ratios per workload and link.
#[derive(Clone, Debug, Serialize)]
pub struct DowntimeGoal {
    /// Workload.
    pub workload: String,
    /// Link.
    pub link: String,
    /// Policy with the lowest downtime.
    pub best_policy: String,
    /// Its downtime / gmig-oneshot downtime (goal <= 0.25).
    pub best_vs_gmig_oneshot: f64,
    /// What the best run cost the guest: time it ran throttled (0 if the
    /// best policy does not throttle or was not throttled).
    pub best_throttled_ms: f64,
    /// The best run's mean share of GPU time while throttled (1.0 if never).
    pub best_throttle_mean_share: f64,
    /// The best run's guest work held back, ms of full-speed work.
    pub best_guest_work_lost_ms: f64,
    /// Lowest downtime of a run that did not throttle the guest, over
    /// gmig-oneshot's: what is reached at no cost to the guest.
    pub best_unthrottled_vs_gmig_oneshot: f64,
    /// gmig-oneshot downtime below precopy and stop-and-copy (gMig's result).
    pub oneshot_beats_baselines: bool,
    /// 1 - gmig-oneshot downtime pages / stop-and-copy's (gMig: >= 0.8).
    pub oneshot_downtime_page_reduction: f64,
    /// Analytic floor of the downtime of any policy that lets the guest
    /// keep its write rate, on this workload model and link
    /// ([`downtime_floor_ms`]); `None` for trace replays. A throttled run
    /// may go below it, at its reported cost.
    pub floor_ms: Option<f64>,
    /// `floor_ms` / gmig-oneshot downtime: no policy that does not throttle
    /// and sends rewritten pages uncompressed gets (on average) below this
    /// ratio.
    pub floor_vs_gmig_oneshot: Option<f64>,
}

/// Bytes on the wire per full page record (head, payload, CRC).
const PAGE_WIRE: f64 = (PAGE_SIZE + 24) as f64;

/// Lower bound on the downtime of a policy that sends every fully rewritten
/// page as a whole page (no compression) and does not throttle the guest,
/// in ms.
///
/// A hot page turns dirty again at rate `lambda_f` (full rewrites per hot
/// page per second, from the model: hot writes spread over the hot set, times
/// the chance that a write is a full rewrite; CPU writes always are, see
/// [`Dirtier`]). One full-page send cleans one page, and the link carries at
/// most `B = bandwidth / page wire size` of them per second, so by Little's
/// law the hot pages that are clean number at most `B / lambda_f` on
/// average, and at least `H - B / lambda_f` hot pages wait to be sent at a
/// stop (a stop can land below that average only by its fluctuation). The
/// floor is their wire time plus the device and CPU state; it ignores cold
/// writes, CPU cost and the send-buffer backlog, so real policies sit above
/// it. The bound takes the guest's write rate as given: a policy that slows
/// the guest (`informed-throttle`) lowers `lambda_f` by the share it grants
/// and can go below it, at the cost each run reports (`throttled_ms`,
/// `throttle_mean_share`, `guest_work_lost_ms`).
pub fn downtime_floor_ms(model: &WorkloadModel, link: &LinkSetting, state_bytes: u64) -> f64 {
    let hot = ((model.pages as f64 * model.hot_fraction) as usize).max(1) as f64;
    let (u, sm, c) = (
        model.unchanged_fraction,
        model.small_edit_fraction,
        model.cpu_fraction,
    );
    let p_full = (1.0 - u - sm).max(0.0) + c * (u + sm);
    let lambda_f = model.writes_per_sec * model.hot_share / hot * p_full;
    let b = link.bandwidth / PAGE_WIRE;
    let dirty = if lambda_f > 0.0 {
        (hot - b / lambda_f).max(0.0)
    } else {
        0.0
    };
    (dirty * PAGE_WIRE + state_bytes as f64) * 1e3 / link.bandwidth
}

/// Everything `cargo xtask bench` reports from this crate.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Quick mode.
    pub quick: bool,
    /// Digest chosen for the tracker.
    pub digest: String,
    /// Digest bandwidth.
    pub hash: HashBench,
    /// CPU costs the simulator charged.
    pub cost_model: CostModel,
    /// Workload models.
    pub workloads: Vec<WorkloadModel>,
    /// Link settings.
    pub links: Vec<LinkSetting>,
    /// One row per workload x policy x link.
    pub runs: Vec<RunResult>,
    /// Goal ratios.
    pub goals: Vec<DowntimeGoal>,
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// SIMD features this binary was compiled with, as a short list.
pub fn compiled_simd() -> String {
    let mut v = Vec::new();
    if cfg!(target_feature = "sse2") {
        v.push("sse2");
    }
    if cfg!(target_feature = "avx2") {
        v.push("avx2");
    }
    if cfg!(target_feature = "avx512f") {
        v.push("avx512f");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join("+")
    }
}

/// Measure digest and memcpy bandwidth over `set_bytes` of 4 KiB pages.
///
/// Each function runs once untimed (warm-up: page faults of the copy
/// target, frequency ramp, instruction cache), then `reps` timed passes in
/// round-robin order, so drift (turbo, other load) hits every function
/// alike; the best pass of each counts. All functions read the same
/// `set_bytes` of pages; memcpy copies them into a second set (what reading
/// a page out of GPU memory into a send buffer costs). FNV-1a, an order of
/// magnitude slower, gets one timed pass.
pub fn hash_bench(set_bytes: usize, reps: usize) -> HashBench {
    let n = set_bytes / PAGE_SIZE;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut set = vec![[0u8; PAGE_SIZE]; n];
    for p in set.iter_mut() {
        for w in p.chunks_exact_mut(8) {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
    }
    let mut copy = vec![[0u8; PAGE_SIZE]; n];
    let xxh_pass = |set: &[PageBuf]| {
        let mut acc = 0u64;
        for p in set {
            acc ^= xxh3(black_box(p));
        }
        black_box(acc);
    };
    let xor_pass = |set: &[PageBuf]| {
        let mut acc = 0u64;
        for p in set {
            let t = xor_fold_256(black_box(p));
            acc ^= t[0] ^ t[1] ^ t[2] ^ t[3];
        }
        black_box(acc);
    };
    let sse2_pass = |set: &[PageBuf]| {
        let mut acc = 0u64;
        for p in set {
            // SAFETY: every x86-64 operating system enables SSE.
            acc ^= unsafe { migrate::xxh3_sse2::xxh3_page(black_box(p)) };
        }
        black_box(acc);
    };
    let copy_pass = |copy: &mut [PageBuf], set: &[PageBuf]| {
        for (d, s) in copy.iter_mut().zip(set) {
            d.copy_from_slice(black_box(s));
        }
        black_box(&copy);
    };
    // Warm-up.
    xxh_pass(&set);
    sse2_pass(&set);
    xor_pass(&set);
    copy_pass(&mut copy, &set);
    let (mut t_xxh, mut t_xor, mut t_copy) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let mut t_sse2 = f64::INFINITY;
    for _ in 0..reps.max(1) {
        t_xxh = t_xxh.min(best_of(1, || xxh_pass(&set)));
        t_sse2 = t_sse2.min(best_of(1, || sse2_pass(&set)));
        t_xor = t_xor.min(best_of(1, || xor_pass(&set)));
        t_copy = t_copy.min(best_of(1, || copy_pass(&mut copy, &set)));
    }
    let t_fnv = best_of(1, || {
        let mut acc = 0u64;
        for p in &set {
            acc ^= fnv1a(black_box(p));
        }
        black_box(acc);
    });
    let bytes = n * PAGE_SIZE;
    let (x, m, f, c) = (
        gbps(bytes, t_xxh),
        gbps(bytes, t_xor),
        gbps(bytes, t_fnv),
        gbps(bytes, t_copy),
    );
    HashBench {
        set_bytes: bytes as u64,
        reps: reps.max(1) as u32,
        simd: compiled_simd(),
        xxh3_gbps: x,
        fnv_gbps: f,
        xor_fold_gbps: m,
        memcpy_gbps: c,
        xxh3_vs_memcpy: x / c,
        xxh3_vs_xor_fold: x / m,
        monitor_sse2_gbps: gbps(bytes, t_sse2),
        monitor_sse2_vs_memcpy: gbps(bytes, t_sse2) / c,
    }
}

/// Per-page CPU costs measured on this machine (in-cache pages, which is
/// what a page just copied out of GPU memory is).
pub fn measure_costs() -> CostModel {
    let mut rng = Rng(99);
    let mut pages = vec![[0u8; PAGE_SIZE]; 256];
    for p in pages.iter_mut() {
        for w in p.chunks_exact_mut(8) {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
    }
    let per = |t: f64, n: usize| t * 1e9 / n as f64;
    let iters = 40;
    let n = pages.len() * iters;
    let mut out = [0u8; PAGE_SIZE];
    let read = best_of(3, || {
        for _ in 0..iters {
            for p in &pages {
                out.copy_from_slice(black_box(p));
                black_box(&out);
            }
        }
    });
    let xxh = best_of(3, || {
        for _ in 0..iters {
            for p in &pages {
                black_box(xxh3(black_box(p)));
            }
        }
    });
    let xor = best_of(3, || {
        for _ in 0..iters {
            for p in &pages {
                black_box(xor_fold_256(black_box(p)));
            }
        }
    });
    let mut edited = pages[0];
    edited[100] ^= 1;
    edited[3000] ^= 1;
    let mut buf = [0u8; PAGE_SIZE];
    let delta = best_of(3, || {
        for _ in 0..n / 8 {
            black_box(migrate::delta::encode(
                black_box(&pages[0]),
                black_box(&edited),
                &mut buf,
            ));
        }
    });
    let crc = best_of(3, || {
        for _ in 0..iters {
            for p in &pages {
                black_box(migrate::wire::crc32c(black_box(p)));
            }
        }
    });
    // A skip is one evidence lookup in a dirty table sized for 32768 pages
    // (the largest preset), the pages in walk order like a pre-copy round.
    let skip_pages = 32768u64;
    let mut slots = vec![migrate::Slot::EMPTY; 65536];
    let mut table = migrate::DirtyTracker::new(&mut slots, migrate::digest::DigestKind::Xxh3)
        .expect("power-of-two table");
    for i in 0..skip_pages {
        let p = migrate::GuestPage::new(0x10_0000 + i).expect("small page number");
        table
            .report_write_target(p)
            .expect("table sized for the set");
    }
    let skip = best_of(3, || {
        let mut acc = 0u8;
        for i in 0..skip_pages {
            let p = migrate::GuestPage::new(black_box(0x10_0000 + i)).expect("small page number");
            acc ^= table.flags(p);
        }
        black_box(acc);
    });
    CostModel {
        skip_ns: per(skip, skip_pages as usize),
        read_page_ns: per(read, n),
        xxh3_page_ns: per(xxh, n),
        xor_page_ns: per(xor, n),
        sample_ns: 5.0,
        delta_page_ns: per(delta, n / 8),
        crc_byte_ns: per(crc, n) / PAGE_SIZE as f64,
    }
}

/// Pre-copy round cap per policy. `precopy` never converges on a GPU
/// (every GPU page counts dirty each round), so its downtime does not depend
/// on the cap and 8 only bounds the simulation; the gMig policies stop after
/// their CPU-dirty rounds fit the budget, long before either cap.
/// `informed` stops when its rounds stop shrinking; 32 is a safety bound it
/// does not reach on the presets (nor does `informed-throttle`).
pub fn round_cap(policy: Policy) -> u32 {
    if policy.is_informed() {
        32
    } else {
        8
    }
}

/// Run the digest bench and the simulator table.
pub fn run_bench(opts: &BenchOptions) -> Result<BenchReport, SimError> {
    let k = if opts.quick { 16 } else { 1 };
    // The 256 MiB set is far larger than any cache, so every pass streams
    // from memory; quick mode keeps the size small for tests.
    let hash = if opts.quick {
        hash_bench(16 << 20, 2)
    } else {
        hash_bench(256 << 20, 7)
    };
    let cost_model = if opts.quick {
        CostModel::nominal()
    } else {
        measure_costs()
    };
    let workloads: Vec<WorkloadModel> = WorkloadModel::presets()
        .into_iter()
        .map(|w| w.scaled(k))
        .collect();
    let links = vec![
        LinkSetting::qemu_default().scaled(k),
        LinkSetting::gigabit().scaled(k),
    ];
    let mut runs = Vec::new();
    for link in &links {
        for w in &workloads {
            for policy in Policy::ALL {
                let d = Dirtier::Model {
                    model: w.clone(),
                    rng: Rng(0xabcdef),
                    carry: 0.0,
                };
                runs.push(simulate(
                    &w.name,
                    d,
                    w.zero_fraction,
                    policy,
                    link,
                    &cost_model,
                    round_cap(policy),
                )?);
            }
        }
        for (name, trace) in &opts.traces {
            for policy in Policy::ALL {
                let d = Dirtier::Replay {
                    trace: trace.clone(),
                    next: 0,
                };
                runs.push(simulate(
                    name,
                    d,
                    0.0,
                    policy,
                    link,
                    &cost_model,
                    round_cap(policy),
                )?);
            }
        }
    }
    let mut goals = goals(&runs);
    for g in &mut goals {
        let model = workloads.iter().find(|w| w.name == g.workload);
        let link = links.iter().find(|l| l.name == g.link);
        if let (Some(m), Some(l)) = (model, link) {
            let one = runs
                .iter()
                .find(|r| {
                    r.workload == g.workload && r.link == g.link && r.policy == "gmig-oneshot"
                })
                .map_or(f64::NAN, |r| r.downtime_ms);
            let floor = downtime_floor_ms(m, l, crate::workload::STATE_BYTES);
            g.floor_ms = Some(floor);
            g.floor_vs_gmig_oneshot = Some(floor / one);
        }
    }
    Ok(BenchReport {
        quick: opts.quick,
        digest: "xxh3-64".into(),
        hash,
        cost_model,
        workloads,
        links,
        runs,
        goals,
    })
}

fn goals(runs: &[RunResult]) -> Vec<DowntimeGoal> {
    let mut out = Vec::new();
    let mut keys: Vec<(String, String)> = runs
        .iter()
        .map(|r| (r.workload.clone(), r.link.clone()))
        .collect();
    keys.dedup();
    for (w, l) in keys {
        let rows: Vec<&RunResult> = runs
            .iter()
            .filter(|r| r.workload == w && r.link == l)
            .collect();
        let get = |p: &str| rows.iter().find(|r| r.policy == p).copied();
        let (Some(one), Some(sc), Some(pre)) =
            (get("gmig-oneshot"), get("stop-and-copy"), get("precopy"))
        else {
            continue;
        };
        let best = rows
            .iter()
            .min_by(|a, b| a.downtime_ms.total_cmp(&b.downtime_ms))
            .copied()
            .unwrap_or(one);
        let best_unthrottled = rows
            .iter()
            .filter(|r| r.throttled_ms == 0.0)
            .map(|r| r.downtime_ms)
            .fold(f64::INFINITY, f64::min);
        out.push(DowntimeGoal {
            workload: w,
            link: l,
            best_policy: best.policy.clone(),
            best_vs_gmig_oneshot: best.downtime_ms / one.downtime_ms,
            best_throttled_ms: best.throttled_ms,
            best_throttle_mean_share: best.throttle_mean_share,
            best_guest_work_lost_ms: best.guest_work_lost_ms,
            best_unthrottled_vs_gmig_oneshot: best_unthrottled / one.downtime_ms,
            oneshot_beats_baselines: one.downtime_ms < pre.downtime_ms
                && one.downtime_ms < sc.downtime_ms,
            oneshot_downtime_page_reduction: 1.0
                - one.downtime_pages as f64 / sc.downtime_pages.max(1) as f64,
            floor_ms: None,
            floor_vs_gmig_oneshot: None,
        });
    }
    out
}

/// A short human summary: digest ratios and per workload x link downtime
/// goal ratios.
pub fn summary(report: &BenchReport) -> String {
    use std::fmt::Write as _;
    let h = &report.hash;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "digest ({} MiB set, SIMD {}): xxh3 {:.2} GB/s, XOR fold {:.2} GB/s, memcpy {:.2} GB/s",
        h.set_bytes >> 20,
        h.simd,
        h.xxh3_gbps,
        h.xor_fold_gbps,
        h.memcpy_gbps
    );
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(
        s,
        "  xxh3/memcpy {:.2} (goal >= 1.8, {}), xxh3/XOR fold {:.2} (goal >= 0.9, {})",
        h.xxh3_vs_memcpy,
        mark(h.xxh3_vs_memcpy >= 1.8),
        h.xxh3_vs_xor_fold,
        mark(h.xxh3_vs_xor_fold >= 0.9)
    );
    let _ = writeln!(
        s,
        "  the monitor's xxh3 (SSE2 only): {:.2} GB/s = {:.2}x memcpy",
        h.monitor_sse2_gbps, h.monitor_sse2_vs_memcpy
    );
    for g in &report.goals {
        let one = report
            .runs
            .iter()
            .find(|r| r.workload == g.workload && r.link == g.link && r.policy == "gmig-oneshot")
            .map_or(f64::NAN, |r| r.downtime_ms);
        let cost = if g.best_throttled_ms > 0.0 {
            format!(
                " [throttled {:.0} ms at mean share {:.2}, {:.0} ms of guest work lost; unthrottled best {:.3}x]",
                g.best_throttled_ms,
                g.best_throttle_mean_share,
                g.best_guest_work_lost_ms,
                g.best_unthrottled_vs_gmig_oneshot
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "downtime {:<11} {:<13} gmig-oneshot {:7.1} ms, best {} {:6.1} ms = {:.3}x (goal <= 0.25, {}){}{}",
            g.workload,
            g.link,
            one,
            g.best_policy,
            one * g.best_vs_gmig_oneshot,
            g.best_vs_gmig_oneshot,
            mark(g.best_vs_gmig_oneshot <= 0.25),
            g.floor_vs_gmig_oneshot
                .map_or(String::new(), |f| format!("; no-throttle floor {f:.3}x")),
            cost
        );
    }
    s
}

/// Write `migration.md` (the table and the goal ratios) into `dir`.
pub fn write_markdown(report: &BenchReport, dir: &Path) -> std::io::Result<PathBuf> {
    use std::fmt::Write as _;
    let mut s = String::new();
    let h = &report.hash;
    let _ = writeln!(
        s,
        "# Migration bench{}\n",
        if report.quick { " (quick mode)" } else { "" }
    );
    let _ = writeln!(
        s,
        "## Page digest bandwidth ({} MiB of 4 KiB pages, best of {} after a warm-up, compiled SIMD: {})\n",
        h.set_bytes >> 20,
        h.reps,
        h.simd
    );
    let _ = writeln!(s, "| function | GB/s |\n|---|---:|");
    for (n, v) in [
        ("xxh3-64 (chosen)", h.xxh3_gbps),
        ("xxh3-64, the monitor's SSE2 path", h.monitor_sse2_gbps),
        ("gMig XOR fold 256", h.xor_fold_gbps),
        ("FNV-1a 64", h.fnv_gbps),
        ("memcpy", h.memcpy_gbps),
    ] {
        let _ = writeln!(s, "| {n} | {v:.2} |");
    }
    let _ = writeln!(
        s,
        "\nxxh3 / memcpy = **{:.2}** (goal >= 1.8); xxh3 / XOR fold = **{:.2}** (goal >= 0.9)\n",
        h.xxh3_vs_memcpy, h.xxh3_vs_xor_fold
    );
    let _ = writeln!(s, "## Simulated migrations\n");
    let _ = writeln!(
        s,
        "| workload | link | policy | total ms | downtime ms | pre-copy pages | pre-copy MiB | downtime pages | downtime MiB | send-buffer backlog at stop KiB | link time in downtime ms | CPU time in downtime ms | iterations | deltas | zero pages | throttled ms | mean share while throttled | guest work lost ms | identical |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in &report.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.1} | {} | {:.1} | {} | {:.2} | {} | {:.1} | {:.1} | {} | {} | {} | {:.1} | {:.2} | {:.1} | {} |",
            r.workload,
            r.link,
            r.policy,
            r.total_ms,
            r.downtime_ms,
            r.precopy_pages,
            r.precopy_bytes as f64 / 1048576.0,
            r.downtime_pages,
            r.downtime_bytes as f64 / 1048576.0,
            r.backlog_at_stop_bytes / 1024,
            r.stop_link_ms,
            r.stop_cpu_ms,
            r.iterations,
            r.delta_pages,
            r.zero_pages,
            r.throttled_ms,
            r.throttle_mean_share,
            r.guest_work_lost_ms,
            if r.identical { "yes" } else { "NO" }
        );
    }
    let _ = writeln!(s, "\n## Goals\n");
    let _ = writeln!(
        s,
        "| workload | link | best policy | best / gmig-oneshot downtime (goal <= 0.25) | its throttle cost: throttled ms, mean share, guest work lost ms | best unthrottled / gmig-oneshot | no-throttle floor ms | no-throttle floor / gmig-oneshot | one-shot beats precopy and stop-and-copy | one-shot downtime page reduction vs stop-and-copy (gMig: >= 80%) |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---|---:|---:|---:|---|---:|");
    for g in &report.goals {
        let cost = if g.best_throttled_ms > 0.0 {
            format!(
                "{:.0} ms at {:.2}, {:.0} ms lost",
                g.best_throttled_ms, g.best_throttle_mean_share, g.best_guest_work_lost_ms
            )
        } else {
            "none".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {} | {:.3} | {} | {} | {} | {:.1}% |",
            g.workload,
            g.link,
            g.best_policy,
            g.best_vs_gmig_oneshot,
            cost,
            g.best_unthrottled_vs_gmig_oneshot,
            g.floor_ms.map_or("-".into(), |f| format!("{f:.1}")),
            g.floor_vs_gmig_oneshot
                .map_or("-".into(), |f| format!("{f:.3}")),
            g.oneshot_beats_baselines,
            g.oneshot_downtime_page_reduction * 100.0
        );
    }
    let _ = writeln!(
        s,
        "\nThe analytic floor (`downtime_floor_ms`) bounds any policy that sends fully rewritten pages uncompressed and lets the guest keep its write rate: by Little's law at most bandwidth / full-rewrite rate hot pages are clean on average. Where it exceeds 0.25x gmig-oneshot, the goal is out of reach on that workload model and link for every such policy. A throttling policy (`informed-throttle`) slows the guest's GPU work and may go below the floor; what that costs the guest is in the throttle columns (time throttled, mean share of GPU time granted meanwhile, and the guest work held back in ms of full-speed work)."
    );
    let path = dir.join("migration.md");
    std::fs::write(&path, s)?;
    Ok(path)
}

/// Write `migration-downtime.svg`: downtime per policy per workload, one
/// panel per link, log scale.
pub fn write_svg(report: &BenchReport, dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let path = dir.join("migration-downtime.svg");
    let links: Vec<&str> = report.links.iter().map(|l| l.name.as_str()).collect();
    let mut workloads: Vec<&str> = Vec::new();
    for r in &report.runs {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    let height = 360 * links.len().max(1) as u32;
    let root = SVGBackend::new(path.as_path(), (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((links.len().max(1), 1));
    let colors = [
        RGBColor(120, 120, 120),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 114, 178),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
    ];
    let max = report
        .runs
        .iter()
        .map(|r| r.downtime_ms)
        .fold(1.0, f64::max)
        // Headroom above the tallest bar for the legend (log scale).
        * 1000.0;
    // Bars rise from BASE; the band below it holds the workload names.
    const BASE: f64 = 0.05;
    let nw = workloads.len().max(1) as f64;
    for (panel, link) in panels.iter().zip(&links) {
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("downtime per policy, link {link}"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..nw, (0.01f64..max).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            // Workload names go under their bar groups (below), not at
            // the axis' own tick positions.
            .x_labels(0)
            .y_desc("downtime (ms, log)")
            .draw()?;
        chart.draw_series(workloads.iter().enumerate().map(|(wi, w)| {
            Text::new(
                w.to_string(),
                (wi as f64 + 0.1, 0.02),
                ("sans-serif", 13).into_font(),
            )
        }))?;
        let np = Policy::ALL.len() as f64;
        for (pi, policy) in Policy::ALL.iter().enumerate() {
            let color = colors[pi % colors.len()];
            let bars: Vec<Rectangle<(f64, f64)>> = workloads
                .iter()
                .enumerate()
                .filter_map(|(wi, w)| {
                    let r = report.runs.iter().find(|r| {
                        r.workload == *w && r.link == *link && r.policy == policy.name()
                    })?;
                    let x0 = wi as f64 + 0.1 + 0.8 * pi as f64 / np;
                    Some(Rectangle::new(
                        [(x0, BASE), (x0 + 0.8 / np, r.downtime_ms.max(BASE))],
                        color.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(policy.name())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    drop(panels);
    drop(root);
    Ok(path)
}
