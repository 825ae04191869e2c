//! The simulation loop: the real `migrate` state machines on simulated
//! memory, a simulated link and a virtual clock charged with CPU costs.

use migrate::source::SourceStorage;
use migrate::{
    DeterministicEntropy, MigrationKey, PageRange, Policy, Receiver, ReceiverConfig,
    ReceiverStatus, Slot, Source, SourceConfig, SourceStatus, PAGE_SIZE,
};
use serde::Serialize;

use crate::net::{sim_link, LinkSetting};
use crate::workload::{Dirtier, SimMemory, SimSink};

/// CPU cost per unit of work on the source, in nanoseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CostModel {
    /// Copying one page out of GPU memory.
    pub read_page_ns: f64,
    /// One xxh3-64 page digest.
    pub xxh3_page_ns: f64,
    /// One 256-bit XOR fold of a page.
    pub xor_page_ns: f64,
    /// One sampling pre-filter check.
    pub sample_ns: f64,
    /// One delta encoding attempt.
    pub delta_page_ns: f64,
    /// CRC32C and framing, per byte sent.
    pub crc_byte_ns: f64,
    /// Authenticating records (the ChaCha20-Poly1305 tag over header and
    /// payload, `migrate_encrypt=off`), per byte sent.
    pub mac_byte_ns: f64,
    /// Deciding that a page needs no work (one dirty-table lookup of its
    /// evidence flags). Charged per skipped page, so walking a large set
    /// that is mostly clean costs what the lookups cost, not a poll's idle
    /// tick per batch.
    pub skip_ns: f64,
}

impl CostModel {
    /// Fixed figures for tests (deterministic; close to this machine's).
    pub fn nominal() -> Self {
        Self {
            read_page_ns: 400.0,
            xxh3_page_ns: 300.0,
            xor_page_ns: 300.0,
            sample_ns: 20.0,
            delta_page_ns: 1500.0,
            crc_byte_ns: 0.15,
            mac_byte_ns: 0.5,
            skip_ns: 10.0,
        }
    }
}

/// Results of one workload x policy x link run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// Workload name.
    pub workload: String,
    /// Policy name.
    pub policy: String,
    /// Link setting name.
    pub link: String,
    /// Start to destination resume.
    pub total_ms: f64,
    /// Source stop to destination resume.
    pub downtime_ms: f64,
    /// Page records sent during pre-copy.
    pub precopy_pages: u64,
    /// Bytes sent during pre-copy.
    pub precopy_bytes: u64,
    /// Page records sent during downtime.
    pub downtime_pages: u64,
    /// Bytes sent during downtime.
    pub downtime_bytes: u64,
    /// Pre-copy rounds.
    pub iterations: u32,
    /// Full page digests computed.
    pub hashes: u64,
    /// Zero-page and delta records.
    pub zero_pages: u64,
    /// Delta records.
    pub delta_pages: u64,
    /// Destination byte-identical to the source at stop.
    pub identical: bool,
    /// Where the downtime went: bytes still in the send buffer when the
    /// guest stopped (pre-copy data that had to drain first).
    pub backlog_at_stop_bytes: u64,
    /// Where the downtime went: CPU time the source spent after the stop
    /// (reads, digests, delta encoding, CRC), overlapped with the link or not.
    pub stop_cpu_ms: f64,
    /// Where the downtime went: wire time of the bytes sent after the stop
    /// plus the send-buffer backlog, at the link's bandwidth.
    pub stop_link_ms: f64,
    /// The throttle's cost: time the guest ran below its full share of GPU
    /// time (0 for policies that do not throttle, and when pre-copy
    /// converged without it).
    pub throttled_ms: f64,
    /// Mean share of GPU time granted while throttled (1.0 if never).
    pub throttle_mean_share: f64,
    /// Lowest share granted (1.0 if never throttled).
    pub throttle_min_share: f64,
    /// Guest GPU work the throttle held back, in ms of full-speed work:
    /// `throttled_ms x (1 - throttle_mean_share)`. The guest is that much
    /// behind where it would be unthrottled (for a game: frames not drawn).
    pub guest_work_lost_ms: f64,
    /// Times the throttle lowered the share.
    pub throttle_steps: u32,
}

/// Simulation errors (a bug in the simulated monitor or the model).
#[derive(Debug)]
pub enum SimError {
    /// The source failed.
    Source(migrate::SourceError),
    /// The destination failed.
    Receive(migrate::ReceiveError),
    /// No completion within the time limit.
    Timeout,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Source(e) => write!(f, "simulated source: {e}"),
            Self::Receive(e) => write!(f, "simulated destination: {e}"),
            Self::Timeout => {
                f.write_str("simulated migration did not finish within 10 minutes of virtual time")
            }
        }
    }
}

impl std::error::Error for SimError {}

/// Run one migration. `workload_name` labels the result.
pub fn simulate(
    workload_name: &str,
    mut dirtier: Dirtier,
    zero_fraction: f64,
    policy: Policy,
    link: &LinkSetting,
    cost: &CostModel,
    max_rounds: u32,
) -> Result<RunResult, SimError> {
    let pages = dirtier.pages();
    let untracked = dirtier.gpu_writes_untracked();
    let mut mem = SimMemory::new(pages, zero_fraction, 0x5eed);
    let mut sink = SimSink::new(pages);
    let slots_n = (pages * 8 / 7 + 1).next_power_of_two();
    let mut slots = vec![Slot::EMPTY; slots_n];
    // Delta cache budget: 4 KiB + 8 bytes per slot, held only while a
    // migration runs. An eighth of the migrated set (16 MiB for the 128 MiB
    // game preset: enough for its ~8 MiB hot set in two ways), capped at
    // QEMU's default XBZRLE cache of 64 MiB (16384 slots), the budget QEMU
    // users already accept for the same purpose.
    let cache_n = if policy.is_informed() {
        (pages / 8).clamp(16, 16384)
    } else {
        0
    };
    let mut cache_pages = vec![[0u8; PAGE_SIZE]; cache_n];
    let mut cache_owners = vec![0u64; cache_n];
    let mut cfg = SourceConfig::new(policy);
    cfg.downtime_budget_ns = link.downtime_budget_ns;
    cfg.max_rounds = max_rounds;
    cfg.work_per_poll = 32;
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cache_pages,
        cache_owners: &mut cache_owners,
    };
    // Simulated runs repeat: a fixed key and deterministic nonces (the
    // records are authenticated as on the wire, their CPU cost charged below).
    let key = MigrationKey::from_bytes(b"migrate-sim fixed key, not secret").expect("32 bytes");
    let mut src =
        Source::new(cfg, storage, &key, &mut DeterministicEntropy(1)).map_err(SimError::Source)?;
    let (mut a, mut b) = sim_link(link.clone(), 256 * 1024);
    let range = PageRange::new(SimMemory::gfn(0), pages as u64).expect("small page numbers");
    let mut rx = Receiver::new(
        ReceiverConfig::new(0, range),
        &key,
        &mut DeterministicEntropy(2),
    );
    let digest_ns = if policy.digest() == migrate::digest::DigestKind::XorFold {
        cost.xor_page_ns
    } else {
        cost.xxh3_page_ns
    };
    let idle_ns = ((migrate::wire::MAX_RECORD as f64 * 1e9 / link.bandwidth) as u64).max(1000);
    let mut now = 0u64;
    let mut last_writes = 0u64;
    // The guest's own clock: it advances at the share of GPU time the
    // source grants, so a throttled guest issues its writes (the model's
    // rate, or the trace's timeline) more slowly, with the same content.
    let (mut guest_ns, mut guest_rem) = (0u64, 0u64);
    let (mut throttled_ns, mut granted_ns) = (0u64, 0u64);
    let mut stopped_at: Option<u64> = None;
    let mut backlog_at_stop = 0u64;
    let mut stop_cpu_ns = 0f64;
    let mut writes = Vec::new();
    let (mut prev_stats, mut prev_tr, mut prev_bytes) = (*src.stats(), src.tracker_stats(), 0u64);
    while now < 600_000_000_000 {
        if stopped_at.is_none() && now > last_writes {
            // The share set at the last poll held over (last_writes, now].
            let share = u64::from(src.submission_share().permille());
            let dt = now - last_writes;
            guest_rem += dt * share;
            let guest_from = guest_ns;
            guest_ns += guest_rem / 1000;
            guest_rem %= 1000;
            if share < 1000 {
                throttled_ns += dt;
                granted_ns += dt * share / 1000;
            }
            writes.clear();
            dirtier.writes(guest_from, guest_ns, &mut writes);
            for w in &writes {
                mem.apply(*w);
                let page = SimMemory::gfn(w.index);
                let r = if w.kind == crate::trace::WriteKind::Cpu {
                    src.report_cpu_dirty(page)
                } else if untracked {
                    src.report_untracked_writes();
                    Ok(())
                } else {
                    src.report_write_target(page)
                };
                r.map_err(SimError::Source)?;
            }
            last_writes = now;
        }
        a.set_now(now);
        let status = src.poll(now, &mut mem, &mut a).map_err(SimError::Source)?;
        if status == SourceStatus::StopGuest {
            stopped_at = Some(now);
            backlog_at_stop = a.backlog();
            src.guest_stopped(now).map_err(SimError::Source)?;
        }
        let (st, tr, bytes) = (*src.stats(), src.tracker_stats(), src.bytes_sent());
        let spent = (st.pages_read - prev_stats.pages_read) as f64 * cost.read_page_ns
            + (tr.hashes - prev_tr.hashes) as f64 * digest_ns
            + (tr.sample_checks - prev_tr.sample_checks) as f64 * cost.sample_ns
            + (st.delta_tries - prev_stats.delta_tries) as f64 * cost.delta_page_ns
            + (bytes - prev_bytes) as f64 * (cost.crc_byte_ns + cost.mac_byte_ns)
            + (st.skipped - prev_stats.skipped) as f64 * cost.skip_ns;
        if stopped_at.is_some() {
            stop_cpu_ns += spent;
        }
        (prev_stats, prev_tr, prev_bytes) = (st, tr, bytes);
        let received = rx
            .poll(now, &mut sink, &mut b, u32::MAX)
            .map_err(SimError::Receive)?;
        if received == ReceiverStatus::Received {
            rx.ready(now, &mut b).map_err(SimError::Receive)?;
        }
        if received == ReceiverStatus::Resume {
            // The guest runs on the destination from here: its pause ends.
            rx.resumed(&mut b).map_err(SimError::Receive)?;
            let done = now;
            // Let the resumed reach the source so its state machine completes too.
            while src.poll(now, &mut mem, &mut a).map_err(SimError::Source)?
                != SourceStatus::Completed
            {
                if now > done + 10_000_000_000 {
                    return Err(SimError::Timeout);
                }
                now += idle_ns;
                a.set_now(now);
                rx.poll(now, &mut sink, &mut b, u32::MAX)
                    .map_err(SimError::Receive)?;
            }
            let stop = stopped_at.unwrap_or(0);
            let s = src.stats();
            let mean_share = if throttled_ns > 0 {
                granted_ns as f64 / throttled_ns as f64
            } else {
                1.0
            };
            return Ok(RunResult {
                workload: workload_name.into(),
                policy: policy.name().into(),
                link: link.name.clone(),
                total_ms: done as f64 / 1e6,
                downtime_ms: (done - stop) as f64 / 1e6,
                precopy_pages: s.precopy_pages,
                precopy_bytes: s.precopy_bytes,
                downtime_pages: s.stop_pages,
                downtime_bytes: s.stop_bytes,
                iterations: s.rounds,
                hashes: src.tracker_stats().hashes,
                zero_pages: s.zero_pages,
                delta_pages: s.delta_pages,
                identical: sink.identical(&mem),
                backlog_at_stop_bytes: backlog_at_stop,
                stop_cpu_ms: stop_cpu_ns / 1e6,
                stop_link_ms: (s.stop_bytes + backlog_at_stop) as f64 * 1e3 / link.bandwidth,
                throttled_ms: throttled_ns as f64 / 1e6,
                throttle_mean_share: mean_share,
                throttle_min_share: s.throttle.min_share.as_f64(),
                guest_work_lost_ms: (throttled_ns - granted_ns) as f64 / 1e6,
                throttle_steps: s.throttle.steps,
            });
        }
        now += if spent > 0.0 { spent as u64 } else { idle_ns };
    }
    Err(SimError::Timeout)
}
