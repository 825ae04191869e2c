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
    /// What authenticating (and encrypting) records costs.
    pub auth: AuthBench,
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

/// What protecting records costs ([`migrate::auth`]): sealing and opening
/// full page records, authenticated only (`migrate_encrypt=off`) and
/// encrypted (`migrate_encrypt=on`), against a memcpy of the same pages and
/// against the link rates. Measured on the host build (which may use the
/// ciphers' SIMD code); the monitor builds their portable code.
#[derive(Clone, Debug, Serialize)]
pub struct AuthBench {
    /// Page records per pass.
    pub pages: u64,
    /// Timed passes per function (best one kept), after one warm-up.
    pub reps: u32,
    /// Sealing page records, authentication only: GB/s of page data.
    pub mac_seal_gbps: f64,
    /// Opening (checking) them on the destination, GB/s.
    pub mac_open_gbps: f64,
    /// Sealing page records with encryption, GB/s.
    pub aead_seal_gbps: f64,
    /// Opening (checking and decrypting) them, GB/s.
    pub aead_open_gbps: f64,
    /// memcpy of the same pages, GB/s.
    pub memcpy_gbps: f64,
    /// The CRC32C alone over the same records, GB/s: part of every seal
    /// and open (it tells damage from forgery), there before records had
    /// tags.
    pub crc_gbps: f64,
    /// Sealing one page record, authentication only, ns.
    pub mac_seal_ns_per_page: f64,
    /// Sealing one page record with encryption, ns.
    pub aead_seal_ns_per_page: f64,
    /// Authentication-only sealing / memcpy.
    pub mac_vs_memcpy: f64,
    /// Encrypted sealing / memcpy.
    pub aead_vs_memcpy: f64,
    /// Per link setting: sealing throughput over the link's rate (above 1:
    /// one core seals faster than the link carries).
    pub vs_links: Vec<AuthVsLink>,
}

/// Record sealing throughput against one link.
#[derive(Clone, Debug, Serialize)]
pub struct AuthVsLink {
    /// Link setting.
    pub link: String,
    /// Authentication-only sealing / link rate.
    pub mac_vs_link: f64,
    /// Encrypted sealing / link rate.
    pub aead_vs_link: f64,
}

/// Both ends' record protection after a handshake in `encrypt` mode.
fn sessions(encrypt: bool) -> (migrate::auth::Session, migrate::auth::Session) {
    use migrate::auth::{Expectation, Initiator, Responder};
    let key = migrate::MigrationKey::from_bytes(&[7; 32]).expect("32 bytes");
    let hello = migrate::wire::HelloRepr {
        vgpu_type: 0,
        encrypt,
        page_count: 1,
        nonce: [1; 32],
    };
    let init = Initiator::new(&key, &hello);
    let expect = Expectation {
        vgpu_type: 0,
        page_count: 1,
        encrypt,
    };
    let answer = Responder::new(&key, [2; 32], expect).answer(init.hello());
    let est = init.finish(&answer.challenge).expect("same key");
    let dest = answer
        .outcome
        .expect("hello accepted")
        .check(&est.proof)
        .expect("same key");
    (est.session, dest)
}

/// Measure record sealing and opening over `pages` page records.
pub fn auth_bench(pages: usize, reps: usize, links: &[LinkSetting]) -> AuthBench {
    use migrate::wire::{RecordRepr, MAX_RECORD};
    let mut rng = Rng(0x5ea1);
    let mut set = vec![[0u8; PAGE_SIZE]; pages];
    for p in set.iter_mut() {
        for w in p.chunks_exact_mut(8) {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
    }
    let mut records = vec![[0u8; MAX_RECORD]; pages];
    let mut bodies = vec![0usize; pages];
    for (i, (r, p)) in records.iter_mut().zip(&set).enumerate() {
        let page = migrate::GuestPage::new(i as u64).expect("small page number");
        bodies[i] = RecordRepr::Page { page, data: p }.emit_body(r);
    }
    let mut copy = vec![[0u8; PAGE_SIZE]; pages];
    let reps = reps.max(1);
    // (seal, open) seconds per pass, best of `reps` after a warm-up.
    let mut time = |encrypt: bool| {
        let (source, dest) = sessions(encrypt);
        let seal_pass = |records: &mut [[u8; MAX_RECORD]]| {
            let mut tx = source.tx.clone();
            for (r, &body) in records.iter_mut().zip(&bodies) {
                black_box(tx.seal(black_box(r), body).expect("few records"));
            }
        };
        let open_pass = |records: &mut [[u8; MAX_RECORD]]| {
            let mut rx = dest.rx.clone();
            for r in records.iter_mut() {
                rx.open(black_box(r)).expect("sealed by its peer");
            }
        };
        seal_pass(&mut records);
        open_pass(&mut records);
        let (mut t_seal, mut t_open) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..reps {
            t_seal = t_seal.min(best_of(1, || seal_pass(&mut records)));
            // Encrypted records decrypt in place: seal them again first.
            if encrypt {
                seal_pass(&mut records);
            }
            t_open = t_open.min(best_of(1, || open_pass(&mut records)));
        }
        (t_seal, t_open)
    };
    let (mac_seal, mac_open) = time(false);
    let (aead_seal, aead_open) = time(true);
    let copy_pass = |copy: &mut [PageBuf]| {
        for (d, s) in copy.iter_mut().zip(&set) {
            d.copy_from_slice(black_box(s));
        }
        black_box(&copy);
    };
    copy_pass(&mut copy);
    let t_copy = (0..reps)
        .map(|_| best_of(1, || copy_pass(&mut copy)))
        .fold(f64::INFINITY, f64::min);
    let crc_pass = || {
        for r in &records {
            black_box(migrate::wire::crc32c(black_box(&r[..PAGE_SIZE + 36])));
        }
    };
    crc_pass();
    let t_crc = (0..reps)
        .map(|_| best_of(1, crc_pass))
        .fold(f64::INFINITY, f64::min);
    let bytes = pages * PAGE_SIZE;
    let memcpy = gbps(bytes, t_copy);
    let (mac, aead) = (gbps(bytes, mac_seal), gbps(bytes, aead_seal));
    AuthBench {
        pages: pages as u64,
        reps: reps as u32,
        mac_seal_gbps: mac,
        mac_open_gbps: gbps(bytes, mac_open),
        aead_seal_gbps: aead,
        aead_open_gbps: gbps(bytes, aead_open),
        memcpy_gbps: memcpy,
        crc_gbps: gbps(bytes, t_crc),
        mac_seal_ns_per_page: mac_seal * 1e9 / pages as f64,
        aead_seal_ns_per_page: aead_seal * 1e9 / pages as f64,
        mac_vs_memcpy: mac / memcpy,
        aead_vs_memcpy: aead / memcpy,
        vs_links: links
            .iter()
            .map(|l| AuthVsLink {
                link: l.name.clone(),
                mac_vs_link: mac * 1e9 / l.bandwidth,
                aead_vs_link: aead * 1e9 / l.bandwidth,
            })
            .collect(),
    }
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
        // Set from the record sealing bench by `run_bench`.
        mac_byte_ns: 0.0,
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
    // Against the links at their real rates (not scaled down for quick runs).
    let real_links = [LinkSetting::qemu_default(), LinkSetting::gigabit()];
    // 2048 page records (8 MiB) stay in the last-level cache, as a record
    // just copied out of GPU memory is.
    let auth = if opts.quick {
        auth_bench(256, 2, &real_links)
    } else {
        auth_bench(2048, 7, &real_links)
    };
    let cost_model = if opts.quick {
        CostModel::nominal()
    } else {
        let mut c = measure_costs();
        // The seal's tag, beyond the CRC it also computes.
        c.mac_byte_ns =
            (auth.mac_seal_ns_per_page / (PAGE_SIZE + 20) as f64 - c.crc_byte_ns).max(0.0);
        c
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
        auth,
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
    let a = &report.auth;
    let _ = writeln!(
        s,
        "record sealing: authenticated {:.2} GB/s ({:.0} ns/page, {:.2}x memcpy), encrypted {:.2} GB/s ({:.0} ns/page, {:.2}x memcpy); CRC32C alone {:.2} GB/s",
        a.mac_seal_gbps,
        a.mac_seal_ns_per_page,
        a.mac_vs_memcpy,
        a.aead_seal_gbps,
        a.aead_seal_ns_per_page,
        a.aead_vs_memcpy,
        a.crc_gbps
    );
    for l in &a.vs_links {
        let _ = writeln!(
            s,
            "  vs link {}: authenticated {:.1}x, encrypted {:.1}x the link rate",
            l.link, l.mac_vs_link, l.aead_vs_link
        );
    }
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
    let a = &report.auth;
    let _ = writeln!(
        s,
        "## Record protection ({} page records, best of {} after a warm-up)\n",
        a.pages, a.reps
    );
    let _ = writeln!(
        s,
        "| records | seal GB/s | open GB/s | seal ns/page | seal / memcpy |\n|---|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        s,
        "| authenticated (`migrate_encrypt=off`) | {:.2} | {:.2} | {:.0} | {:.2} |",
        a.mac_seal_gbps, a.mac_open_gbps, a.mac_seal_ns_per_page, a.mac_vs_memcpy
    );
    let _ = writeln!(
        s,
        "| encrypted (`migrate_encrypt=on`) | {:.2} | {:.2} | {:.0} | {:.2} |",
        a.aead_seal_gbps, a.aead_open_gbps, a.aead_seal_ns_per_page, a.aead_vs_memcpy
    );
    let _ = writeln!(
        s,
        "\nmemcpy: {:.2} GB/s; the CRC32C alone (part of every seal and open): {:.2} GB/s\n",
        a.memcpy_gbps, a.crc_gbps
    );
    let _ = writeln!(
        s,
        "| link | authenticated / link rate | encrypted / link rate |\n|---|---:|---:|"
    );
    for l in &a.vs_links {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.1} |",
            l.link, l.mac_vs_link, l.aead_vs_link
        );
    }
    let _ = writeln!(s);
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
