//! `cargo xtask run --compare-qemu`: the reference. The source's guests
//! run again in one QEMU (`role=guests`: the same guests, workload and
//! `guest_mib=`, no migration of their own), and QEMU's own live migration
//! moves that whole VM (RAM, CPU, devices) to a second QEMU started with
//! the same machine arguments plus `-incoming tcp:127.0.0.1:PORT`, driven
//! over QMP at the same cap as ours (`--bandwidth`; without one QEMU's is
//! lifted, its own default being 128 MiB/s): once plain, once with XBZRLE
//! (a cache of a quarter of the VM's RAM). QEMU keeps its default
//! downtime limit (300 ms). The migration starts once the source's guests
//! are running (their log line), and counts as continued when the
//! destination's monitor logs again after it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::migrate_run::Workload;
use crate::migration_report::{guests, GuestReport, SideEnd};
use crate::qemu::{Outcome, Qemu, RunResult, Running};
use crate::qmp::{self, QemuMigration, Qmp};
use crate::status_line::StatusLine;

/// The `role=guests` monitor's line once its guests run.
pub const GUESTS_RUNNING: &str = "guests running";

/// One of QEMU's migrations, as `run-report.json`'s `qemu_migration[]`
/// holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QemuMigrationReport {
    /// `plain` or `xbzrle`.
    pub mode: String,
    /// QEMU's final `query-migrate` status (`completed`, `failed`,
    /// `cancelled`), `timeout (<status>)` when xtask cancelled it, or
    /// `error` when it could not be run.
    pub status: String,
    /// Why it did not complete or the destination did not go on.
    pub failure: Option<String>,
    /// The cap (`max-bandwidth`), MiB/s; `None`: unlimited.
    pub bandwidth_mibps: Option<u32>,
    /// XBZRLE's cache, bytes (`xbzrle` mode).
    pub xbzrle_cache_bytes: Option<u64>,
    /// RAM of each QEMU.
    pub memory_mib: u32,
    pub total_ms: Option<u64>,
    pub downtime_ms: Option<u64>,
    pub setup_ms: Option<u64>,
    /// RAM bytes sent (`ram.transferred`).
    pub bytes: Option<u64>,
    /// Of those, sent while the VM was stopped.
    pub downtime_bytes: Option<u64>,
    /// Guest RAM (`ram.total`) and QEMU's page size.
    pub ram_bytes: Option<u64>,
    pub page_size: Option<u64>,
    /// Dirty-bitmap syncs.
    pub rounds: Option<u64>,
    /// Pages sent whole, found zero, sent as XBZRLE deltas.
    pub pages_normal: Option<u64>,
    pub pages_zero: Option<u64>,
    pub pages_delta: Option<u64>,
    pub throughput_mbps: Option<f64>,
    /// The destination's monitor logged again after the migration.
    pub guest_continued: bool,
    /// The destination QEMU's outcome and its guests' `report guest`
    /// lines (when it ran to its end).
    pub destination_outcome: Option<String>,
    pub destination_guests: Vec<GuestReport>,
    pub source_qemu_command: Option<String>,
    pub destination_qemu_command: Option<String>,
}

/// What the comparison runs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub elf: PathBuf,
    pub memory_mib: u32,
    pub workload: Option<Workload>,
    pub guest_mib: Option<u32>,
    pub bandwidth_mibps: Option<u32>,
    /// More kernel options (the run's `--append`).
    pub append: String,
    /// Echo both QEMUs through this.
    pub status: Option<Arc<StatusLine>>,
    pub verbose: bool,
}

/// How long the source's guests may take to boot and start.
const GUESTS_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the destination may take to log again after the migration.
const CONTINUE_TIMEOUT: Duration = Duration::from_secs(30);
/// After the migration, the guests run at least this much longer.
const RUN_AFTER: Duration = Duration::from_secs(10);

impl CompareOptions {
    /// How long QEMU's migration may take before xtask cancels it (it
    /// does not converge when the guests dirty more than the cap carries):
    /// 20 s, plus three times what the VM's non-zero memory (guest 0, the
    /// desktops, the monitor: about `guest_mib` + 32 MiB; zero pages cost
    /// QEMU a few bytes) takes at the cap.
    pub fn migration_limit(&self) -> Duration {
        let floor = Duration::from_secs(20);
        let data_mib = u64::from(
            self.guest_mib
                .unwrap_or(crate::migrate_run::DEFAULT_GUEST_MIB),
        ) + 32;
        match self.bandwidth_mibps {
            Some(cap) if cap > 0 => floor + Duration::from_secs(3 * data_mib / u64::from(cap)),
            _ => floor,
        }
    }

    /// `run_ms=` of the guests: the migration's limit and some after.
    pub fn run_ms(&self) -> u128 {
        (self.migration_limit() + RUN_AFTER).as_millis()
    }

    /// The `role=guests` command line.
    pub fn command_line(&self) -> String {
        let mut line = vec![
            "role=guests".to_string(),
            format!("run_ms={}", self.run_ms()),
        ];
        if let Some(w) = self.workload {
            line.push(format!("workload={}", w.name()));
        }
        if let Some(mib) = self.guest_mib {
            line.push(format!("guest_mib={mib}"));
        }
        if !self.append.trim().is_empty() {
            line.push(self.append.trim().to_string());
        }
        line.join(" ")
    }

    /// XBZRLE's cache: a quarter of the RAM, as a power of two.
    pub fn xbzrle_cache_bytes(&self) -> u64 {
        let quarter = (u64::from(self.memory_mib) << 20) / 4;
        1 << quarter.max(4096).ilog2()
    }

    fn say(&self, text: &str) {
        if let Some(s) = &self.status {
            s.line(text);
        }
    }
}

/// Both of QEMU's migrations: plain, then XBZRLE.
pub fn run(opts: &CompareOptions) -> Vec<QemuMigrationReport> {
    ["plain", "xbzrle"]
        .into_iter()
        .map(|mode| {
            let xbzrle = (mode == "xbzrle").then(|| opts.xbzrle_cache_bytes());
            let mut report = match one(opts, mode, xbzrle) {
                Ok(r) => r,
                Err(e) => QemuMigrationReport {
                    status: "error".into(),
                    failure: Some(format!("{e:#}")),
                    ..empty(opts, mode, xbzrle)
                },
            };
            report.bandwidth_mibps = opts.bandwidth_mibps;
            report
        })
        .collect()
}

pub(crate) fn empty(opts: &CompareOptions, mode: &str, xbzrle: Option<u64>) -> QemuMigrationReport {
    QemuMigrationReport {
        mode: mode.into(),
        status: String::new(),
        failure: None,
        bandwidth_mibps: opts.bandwidth_mibps,
        xbzrle_cache_bytes: xbzrle,
        memory_mib: opts.memory_mib,
        total_ms: None,
        downtime_ms: None,
        setup_ms: None,
        bytes: None,
        downtime_bytes: None,
        ram_bytes: None,
        page_size: None,
        rounds: None,
        pages_normal: None,
        pages_zero: None,
        pages_delta: None,
        throughput_mbps: None,
        guest_continued: false,
        destination_outcome: None,
        destination_guests: Vec::new(),
        source_qemu_command: None,
        destination_qemu_command: None,
    }
}

/// QEMU's figures and what the two QEMUs did, as the report row.
fn row(
    opts: &CompareOptions,
    mode: &str,
    xbzrle: Option<u64>,
    m: &QemuMigration,
    continued: bool,
    source: &RunResult,
    dest: &RunResult,
) -> QemuMigrationReport {
    let failure = if m.status != "completed" {
        Some(format!(
            "QEMU's migration ended {} (the source QEMU: {})",
            m.status,
            SideEnd::of(source).describe()
        ))
    } else if !continued {
        Some(format!(
            "the destination's monitor logged nothing after the migration ({})",
            SideEnd::of(dest).describe()
        ))
    } else if dest.outcome != Outcome::Success {
        Some(format!(
            "the destination's monitor went on, then {}",
            SideEnd::of(dest).describe()
        ))
    } else {
        None
    };
    QemuMigrationReport {
        status: m.status.clone(),
        failure,
        total_ms: m.total_ms,
        downtime_ms: m.downtime_ms,
        setup_ms: m.setup_ms,
        bytes: m.bytes,
        downtime_bytes: m.downtime_bytes,
        ram_bytes: m.ram_total,
        page_size: m.page_size,
        rounds: m.rounds,
        pages_normal: m.pages_normal,
        pages_zero: m.pages_zero,
        pages_delta: m.pages_delta,
        throughput_mbps: m.throughput_mbps,
        guest_continued: continued,
        destination_outcome: Some(dest.outcome.name().to_string()),
        destination_guests: guests(dest),
        source_qemu_command: Some(crate::cmd::redact_secrets(&source.command)),
        destination_qemu_command: Some(crate::cmd::redact_secrets(&dest.command)),
        ..empty(opts, mode, xbzrle)
    }
}

/// The progress line of QEMU's migration.
fn progress_text(mode: &str, m: &QemuMigration) -> String {
    let mib = |b: Option<u64>| {
        b.map_or_else(
            || "?".into(),
            |b| format!("{:.1}", b as f64 / (1u64 << 20) as f64),
        )
    };
    format!(
        "[qemu {mode}] {} round {}: {} MiB sent, {} MiB left, {:.0} Mbit/s, expected downtime {} ms",
        m.status,
        m.rounds.unwrap_or(0),
        mib(m.bytes),
        mib(m.ram_remaining),
        m.throughput_mbps.unwrap_or(0.0),
        m.expected_downtime_ms.map_or_else(|| "?".into(), |d| d.to_string())
    )
}

fn qmp_socket(mode: &str) -> PathBuf {
    // Short and in /tmp: a Unix socket's path holds at most 107 bytes.
    std::env::temp_dir().join(format!("gmig-qmp-{}-{mode}.sock", std::process::id()))
}

fn wait_for_log(run: &mut Running, needle: &str, limit: Duration) -> Result<bool> {
    let start = Instant::now();
    while !run.log_contains(needle) {
        if run.finished()? || start.elapsed() > limit {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

fn one(opts: &CompareOptions, mode: &str, xbzrle: Option<u64>) -> Result<QemuMigrationReport> {
    let port = crate::pair::free_port()?;
    let socket = qmp_socket(mode);
    let _ = std::fs::remove_file(&socket);
    let mut base = Qemu::kernel(opts.elf.clone(), &opts.command_line());
    base.memory_mib = opts.memory_mib;
    base.timeout = GUESTS_START_TIMEOUT + opts.migration_limit() + RUN_AFTER + CONTINUE_TIMEOUT;
    base.echo = opts.status.is_some();
    if let Some(status) = &opts.status {
        let output = if opts.verbose {
            crate::migrate_run::Output::Verbose
        } else {
            crate::migrate_run::Output::Terminal
        };
        base.sink = Some(crate::migrate_run::side_sink(Arc::clone(status), output));
    }
    let mut dest = base.clone();
    dest.label = Some(format!("qemu {mode} dest"));
    dest.extra_args = vec!["-incoming".into(), format!("tcp:127.0.0.1:{port}")];
    let mut source = base;
    source.label = Some(format!("qemu {mode} source"));
    source.extra_args = vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", socket.display()),
    ];
    opts.say(&format!(
        "QEMU's own live migration ({mode}) of the same guests, at {}",
        opts.bandwidth_mibps
            .map_or_else(|| "no cap".to_string(), |c| format!("{c} MiB/s"))
    ));
    let mut dest_run = dest.spawn()?;
    let mut source_run = source.spawn()?;
    let finish = |mut s: Running, mut d: Running| -> Result<(RunResult, RunResult)> {
        s.kill();
        d.kill();
        Ok((s.wait()?, d.wait()?))
    };
    if !wait_for_log(&mut source_run, GUESTS_RUNNING, GUESTS_START_TIMEOUT)? {
        let (s, d) = finish(source_run, dest_run)?;
        bail!(
            "the source's guests did not start (no {GUESTS_RUNNING:?} line)\n{}",
            s.transcript() + &d.transcript()
        );
    }
    if dest_run.finished()? {
        let (s, d) = finish(source_run, dest_run)?;
        bail!(
            "the destination QEMU ended before the migration\n{}",
            d.transcript() + &s.transcript()
        );
    }
    let migrated = (|| {
        let mut qmp = Qmp::connect(&socket, Duration::from_secs(10))?;
        let cap = opts
            .bandwidth_mibps
            .map_or(qmp::UNLIMITED_BANDWIDTH, |c| u64::from(c) << 20);
        let uri = format!("tcp:127.0.0.1:{port}");
        qmp::migrate_watching(
            &mut qmp,
            &uri,
            cap,
            xbzrle,
            opts.migration_limit(),
            &mut |m| {
                if let Some(status) = &opts.status {
                    status.progress(
                        &format!("qemu {mode} {}", m.status),
                        &progress_text(mode, m),
                    );
                }
            },
        )
    })();
    if let Some(status) = &opts.status {
        status.finish();
    }
    let _ = std::fs::remove_file(&socket);
    let m = match migrated {
        Ok(m) => m,
        Err(e) => {
            let _ = finish(source_run, dest_run);
            return Err(e);
        }
    };
    let mut continued = false;
    if m.status == "completed" {
        // The source QEMU stays paused after handing over: done with it.
        source_run.kill();
        let lines = dest_run.log_len();
        let start = Instant::now();
        while start.elapsed() < opts.migration_limit() + RUN_AFTER + CONTINUE_TIMEOUT {
            if dest_run.log_len() > lines {
                continued = true;
                break;
            }
            if dest_run.finished()? {
                continued = dest_run.log_len() > lines;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let it end on its own (its guests' report lines), up to its timeout.
        while continued && !dest_run.finished()? {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (s, d) = finish(source_run, dest_run)?;
    Ok(row(opts, mode, xbzrle, &m, continued, &s, &d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(cap: Option<u32>) -> CompareOptions {
        CompareOptions {
            elf: PathBuf::from("gmig"),
            memory_mib: 448,
            workload: Some(Workload::Desktop),
            guest_mib: Some(8),
            bandwidth_mibps: cap,
            append: "guests=3".into(),
            status: None,
            verbose: false,
        }
    }

    #[test]
    fn the_guests_run_long_enough_for_the_migration_at_the_cap() {
        let uncapped = opts(None);
        assert_eq!(uncapped.migration_limit(), Duration::from_secs(20));
        assert_eq!(
            uncapped.command_line(),
            "role=guests run_ms=30000 workload=desktop guest_mib=8 guests=3"
        );
        // 8 + 32 MiB three times at 8 MiB/s, after 20 s.
        assert_eq!(opts(Some(8)).migration_limit(), Duration::from_secs(35));
        assert_eq!(uncapped.xbzrle_cache_bytes(), 64 << 20);
    }

    #[test]
    fn a_migration_that_did_not_complete_says_so() {
        let o = opts(Some(16));
        let m = QemuMigration::parse(&serde_json::json!({"status": "failed"})).unwrap();
        let r = crate::migration_report::tests::run(Outcome::Killed, "", &[]);
        let row = row(&o, "plain", None, &m, false, &r, &r);
        assert_eq!(row.status, "failed");
        assert_eq!(
            row.failure.as_deref(),
            Some("QEMU's migration ended failed (the source QEMU: it ended with killed)")
        );
        assert!(!row.guest_continued);
        let m = QemuMigration::parse(&serde_json::json!({"status": "completed"})).unwrap();
        let crashed = crate::migration_report::tests::run(
            Outcome::CpuException,
            "gmig-rs\n\n*** FATAL CPU EXCEPTION: vector 14 #PF\n",
            &["guest 0 frame"],
        );
        let row = super::row(&o, "plain", None, &m, true, &r, &crashed);
        assert_eq!(
            row.failure.as_deref(),
            Some("the destination's monitor went on, then it ended with cpu-exception (*** FATAL CPU EXCEPTION: vector 14 #PF)")
        );
    }
}
