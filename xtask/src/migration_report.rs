//! What a two-QEMU live migration showed, from both monitors' `report ...`
//! log lines (the lines are specified in the kernel's migration roles):
//! the figures of each migration, paired source with destination and
//! checked (digests equal, guest continued), each side's boot and guests,
//! the live progress line, and the `info migrate`-like table. Field names
//! are stable and documented in the README; nothing here asserts a figure.

use std::fmt;

use serde::Serialize;

use crate::compare_qemu::QemuMigrationReport;
use crate::qemu::{Outcome, RunResult};
use crate::report::{self, BootReport};

/// The `key=value` pairs of one `report` line.
#[derive(Debug, Clone, Default)]
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(rest: &'a str) -> Fields<'a> {
        Fields(
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.get(key)?.parse().ok()
    }

    /// A figure the monitor reports as -1 when it has none.
    fn non_negative(&self, key: &str) -> Option<f64> {
        self.num::<f64>(key).filter(|v| *v >= 0.0)
    }

    /// A count or code the monitor reports as -1 when there is none.
    fn present(&self, key: &str) -> Option<i64> {
        self.num::<i64>(key).filter(|v| *v >= 0)
    }

    fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

/// The line that follows a failed migration's report on either side.
const FAILURE_PREFIX: &str = "migration failure: ";

/// The source's `report migration ...` line (and its failure line).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceMigration {
    /// `completed`, `failed` or `unconfirmed`.
    pub status: String,
    pub transport: Option<String>,
    pub nic: Option<String>,
    pub policy: Option<String>,
    pub authenticated: Option<bool>,
    pub encrypted: Option<bool>,
    pub total_ms: Option<f64>,
    pub downtime_ms: Option<f64>,
    pub setup_ms: Option<f64>,
    pub rounds: Option<u64>,
    pub pages_total: Option<u64>,
    pub pages_precopy: Option<u64>,
    pub pages_downtime: Option<u64>,
    pub pages_zero: Option<u64>,
    pub pages_delta: Option<u64>,
    pub bytes: Option<u64>,
    pub throughput_mbps: Option<f64>,
    /// Fold of every migrated page's digest at the stop, `0x...`.
    pub digest: Option<String>,
    /// The `migration failure:` text after it.
    pub failure: Option<String>,
}

/// The destination's `report migration_dest ...` line (and its failure line).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DestMigration {
    /// `completed` or `failed`.
    pub status: String,
    pub policy: Option<String>,
    pub authenticated: Option<bool>,
    pub encrypted: Option<bool>,
    pub pages_received: Option<u64>,
    /// The same fold over the pages as restored.
    pub digest: Option<String>,
    /// Frames the guest completed on the destination.
    pub guest_continued: Option<u64>,
    /// The gap in the guest's frame times across the migration, on its
    /// own clock (its downtime as it saw it).
    pub guest_frame_gap_ms: Option<f64>,
    /// Its mean frame interval on the destination otherwise.
    pub guest_frame_ms: Option<f64>,
    /// The migrated guest's own check of every page it predicts, after
    /// its frames on the destination.
    pub checked: Option<bool>,
    /// Every frame the destination allocated for the migration came back
    /// once it ended (refused, or its guest gone after its frames there).
    pub freed: Option<bool>,
    pub failure: Option<String>,
}

impl SourceMigration {
    fn parse(f: &Fields<'_>) -> SourceMigration {
        SourceMigration {
            status: f.text("status").unwrap_or_default(),
            transport: f.text("transport"),
            nic: f.text("nic"),
            policy: f.text("policy"),
            authenticated: f.flag("authenticated"),
            encrypted: f.flag("encrypted"),
            total_ms: f.num("total_ms"),
            downtime_ms: f.num("downtime_ms"),
            setup_ms: f.num("setup_ms"),
            rounds: f.num("rounds"),
            pages_total: f.num("pages_total"),
            pages_precopy: f.num("pages_precopy"),
            pages_downtime: f.num("pages_downtime"),
            pages_zero: f.num("pages_zero"),
            pages_delta: f.num("pages_delta"),
            bytes: f.num("bytes"),
            throughput_mbps: f.num("throughput_mbps"),
            digest: f.text("digest"),
            failure: None,
        }
    }
}

impl DestMigration {
    fn parse(f: &Fields<'_>) -> DestMigration {
        DestMigration {
            status: f.text("status").unwrap_or_default(),
            policy: f.text("policy"),
            authenticated: f.flag("authenticated"),
            encrypted: f.flag("encrypted"),
            pages_received: f.num("pages_received"),
            digest: f.text("digest"),
            guest_continued: f.num("guest_continued"),
            guest_frame_gap_ms: f.non_negative("guest_frame_gap_ms"),
            guest_frame_ms: f.non_negative("guest_frame_ms"),
            checked: f.flag("checked"),
            freed: f.flag("freed"),
            failure: None,
        }
    }
}

/// The records of kind `kind` in `messages`, in order, each with the
/// `migration failure:` line that follows it (before the next record).
fn records_with_failures<'a, T>(
    messages: impl Iterator<Item = &'a str>,
    kind: &str,
    parse: impl Fn(&Fields<'a>) -> T,
    failure: impl Fn(&mut T) -> &mut Option<String>,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for m in messages {
        if let Some(rest) = m
            .strip_prefix("report ")
            .and_then(|r| r.strip_prefix(kind))
            .and_then(|r| r.strip_prefix(' '))
        {
            out.push(parse(&Fields::parse(rest)));
        } else if let Some(text) = m.strip_prefix(FAILURE_PREFIX) {
            if let Some(last) = out.last_mut() {
                failure(last).get_or_insert_with(|| text.trim().to_string());
            }
        }
    }
    out
}

/// Every `report migration` of the source's log, in order.
pub fn source_migrations(result: &RunResult) -> Vec<SourceMigration> {
    records_with_failures(
        result.messages(),
        "migration",
        SourceMigration::parse,
        |m| &mut m.failure,
    )
}

/// Every `report migration_dest` of the destination's log, in order.
pub fn dest_migrations(result: &RunResult) -> Vec<DestMigration> {
    records_with_failures(
        result.messages(),
        "migration_dest",
        DestMigration::parse,
        |m| &mut m.failure,
    )
}

/// The source's raw TCP transfer before the first migration, Mbit/s.
pub fn raw_tcp_mbps(result: &RunResult) -> Option<f64> {
    let fields = report::report_records(result, "raw_tcp").next()?;
    Fields(fields).num("mbps")
}

/// One `report guest ...` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestReport {
    pub id: Option<u64>,
    /// `3d`, `desktop`, `video` or `hostile`.
    pub kind: Option<String>,
    pub mib: Option<u64>,
    /// Frames completed, by the guest's own count (on the destination:
    /// counting the source's).
    pub frames: Option<u64>,
    /// `0x...`: the guest's own running checksum of its frames.
    pub checksum: Option<String>,
    /// Frames it reported on this monitor.
    pub frames_here: Option<u64>,
    /// Its mean frame interval here, ms.
    pub frame_ms: Option<f64>,
    /// Its trapped BAR0 accesses here.
    pub mmio_exits: Option<u64>,
    /// Submissions its frames reported here.
    pub submissions: Option<u64>,
    /// Its share of the CPU time this monitor's guests had, in thousandths.
    pub cpu_share_permille: Option<u64>,
    /// Its vGPU's engine time on this monitor (the vGPU scheduler's).
    pub gpu_busy_us: Option<u64>,
    /// Its share of the engine time every vGPU of this monitor used, in
    /// thousandths; `None` where the monitor does not say.
    pub gpu_share_permille: Option<u64>,
    /// Where it ended: `source` or `destination` (ran to its end there),
    /// `migrated` (left the source), `held` (stopped after an unconfirmed
    /// handover), `killed`, `failed` (its own check failed), `running`.
    pub ended: Option<String>,
    /// Its exit code, if it exited.
    pub exit_code: Option<i64>,
    /// The exception vector that killed it, if one did.
    pub kill_vector: Option<i64>,
    /// Attacks it declared (the hostile guest), and how many of them the
    /// monitor refused with the refusal their class names.
    pub attempts: Option<u64>,
    pub refused: Option<u64>,
}

/// Every `report guest` line of a run.
pub fn guests(result: &RunResult) -> Vec<GuestReport> {
    report::report_records(result, "guest")
        .map(|fields| {
            let f = Fields(fields);
            GuestReport {
                id: f.num("id"),
                kind: f.text("kind"),
                mib: f.num("mib"),
                frames: f.num("frames"),
                checksum: f.text("checksum"),
                frames_here: f.num("frames_here"),
                frame_ms: f.non_negative("frame_ms"),
                mmio_exits: f.num("mmio_exits"),
                submissions: f.num("submissions"),
                cpu_share_permille: f.num("cpu_share_permille"),
                gpu_busy_us: f.num("gpu_busy_us"),
                gpu_share_permille: f.present("gpu_share_permille").map(|v| v as u64),
                ended: f.text("ended"),
                exit_code: f.present("exit_code"),
                kill_vector: f.present("kill_vector"),
                attempts: f.num("attempts"),
                refused: f.num("refused"),
            }
        })
        .collect()
}

/// One migration as `run-report.json` holds it (`migration`,
/// `migrations[]`): the field list, and whether the destination
/// freed what it allocated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationFields {
    /// The source's view: `completed`, `failed` or `unconfirmed` (the
    /// source cannot know whether the destination resumed); `failed` when
    /// the source never reported this migration.
    pub status: String,
    /// Why it failed or could not be verified; `None` when completed and
    /// verified.
    pub failure: Option<String>,
    pub transport: Option<String>,
    pub nic: Option<String>,
    pub policy: Option<String>,
    pub authenticated: Option<bool>,
    pub encrypted: Option<bool>,
    pub total_ms: Option<f64>,
    pub downtime_ms: Option<f64>,
    pub setup_ms: Option<f64>,
    pub rounds: Option<u64>,
    pub pages_total: Option<u64>,
    pub pages_precopy: Option<u64>,
    pub pages_downtime: Option<u64>,
    pub pages_zero: Option<u64>,
    pub pages_delta: Option<u64>,
    pub bytes: Option<u64>,
    pub throughput_mbps: Option<f64>,
    pub raw_tcp_mbps: Option<f64>,
    /// Both sides completed and the destination's digest of the restored
    /// pages equals the source's at the stop.
    pub verified: bool,
    pub guest_continued: Option<u64>,
    /// The gap in the migrated guest's frame times across the migration,
    /// on its own clock: its downtime as it saw it (ms).
    pub guest_frame_gap_ms: Option<f64>,
    /// Its mean frame interval on the destination otherwise (ms).
    pub guest_frame_ms: Option<f64>,
    /// The destination got back every frame it allocated for this
    /// migration; `None` when it did not report it.
    pub freed: Option<bool>,
}

impl MigrationFields {
    /// Completed and verified.
    pub fn succeeded(&self) -> bool {
        self.status == "completed" && self.verified
    }
}

/// How one side's run ended, for the reasons of migrations it never
/// reported.
#[derive(Debug, Clone)]
pub struct SideEnd {
    pub outcome: Outcome,
    /// The first line of its console that says what went wrong (`error:
    /// ...`, or the `*** ...` head of a fault report or panic), if any.
    pub error: Option<String>,
}

impl SideEnd {
    pub fn of(result: &RunResult) -> SideEnd {
        SideEnd {
            outcome: result.outcome,
            error: result
                .console
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("error:") || l.starts_with("*** "))
                .map(str::to_string),
        }
    }

    /// "it ended with <outcome> (<console line>)".
    pub fn describe(&self) -> String {
        match &self.error {
            Some(e) => format!("it ended with {} ({e})", self.outcome.name()),
            None => format!("it ended with {}", self.outcome.name()),
        }
    }
}

/// Two digests are the same value (`0x...` hex, any case, any width).
fn same_digest(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let hex = s.trim().trim_start_matches("0x").trim_start_matches("0X");
        hex.trim_start_matches('0').to_ascii_lowercase()
    };
    !a.trim().is_empty() && norm(a) == norm(b)
}

/// What was asked of the pair, for pairing and for the migrations neither
/// side reported.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The policies, in the order the source migrates them.
    pub policies: &'a [&'a str],
    /// `virtio` or `e1000e`.
    pub nic: &'a str,
}

/// Pairs the n-th source migration with the n-th destination migration
/// and derives `verified`; a migration one side never reported is
/// `failed` with the reason (how that side ended).
pub fn pair_migrations(
    expected: &Expected<'_>,
    source: &[SourceMigration],
    dest: &[DestMigration],
    raw_tcp_mbps: Option<f64>,
    source_end: &SideEnd,
    dest_end: &SideEnd,
) -> Vec<MigrationFields> {
    let n = expected.policies.len().max(source.len()).max(dest.len());
    (0..n)
        .map(|i| {
            let s = source.get(i);
            let d = dest.get(i);
            let asked = expected.policies.get(i).map(|p| p.to_string());
            let policy = s
                .and_then(|s| s.policy.clone())
                .or_else(|| d.and_then(|d| d.policy.clone()))
                .or(asked);
            let name = policy.as_deref().unwrap_or("?");
            let mut reasons = Vec::new();
            match s {
                None => reasons.push(format!(
                    "the source reported no migration with {name}: {}",
                    source_end.describe()
                )),
                Some(s) => match &s.failure {
                    Some(f) => reasons.push(f.clone()),
                    None if s.status != "completed" => {
                        reasons.push(format!("the source says {} without a reason", s.status))
                    }
                    None => {}
                },
            }
            match d {
                None => reasons.push(format!(
                    "the destination reported no migration with {name}: {}",
                    dest_end.describe()
                )),
                Some(d) => {
                    if let Some(f) = &d.failure {
                        reasons.push(format!("destination: {f}"));
                    } else if d.status != "completed" {
                        reasons.push(format!(
                            "the destination says {} without a reason",
                            d.status
                        ));
                    }
                }
            }
            let mut verified = false;
            if let (Some(s), Some(d)) = (s, d) {
                let both_completed = s.status == "completed" && d.status == "completed";
                // The destination learns the policy only if it says so.
                let same_policy = d.policy.is_none() || s.policy == d.policy;
                if !same_policy {
                    reasons.push(format!(
                        "the destination's migration {} is policy {}, the source's {}",
                        i + 1,
                        d.policy.as_deref().unwrap_or("?"),
                        s.policy.as_deref().unwrap_or("?")
                    ));
                }
                let digests = (s.digest.as_deref(), d.digest.as_deref());
                let same = matches!(digests, (Some(a), Some(b)) if same_digest(a, b));
                if both_completed && !same {
                    reasons.push(format!(
                        "the digests differ: source {}, destination {}",
                        digests.0.unwrap_or("none"),
                        digests.1.unwrap_or("none")
                    ));
                }
                let checked = d.checked != Some(false);
                if both_completed && !checked {
                    reasons.push(
                        "the migrated guest's check of its pages on the destination failed"
                            .to_string(),
                    );
                }
                let freed = d.freed != Some(false);
                if !freed {
                    reasons.push(
                        "the destination did not get back every frame it allocated for the migration"
                            .to_string(),
                    );
                }
                verified = both_completed && same_policy && same && checked && freed;
            }
            MigrationFields {
                status: s.map_or_else(|| "failed".to_string(), |s| s.status.clone()),
                failure: (!verified).then(|| reasons.join("; ")),
                transport: s
                    .and_then(|s| s.transport.clone())
                    .or_else(|| Some("tcp".to_string())),
                nic: s
                    .and_then(|s| s.nic.clone())
                    .or_else(|| Some(expected.nic.to_string())),
                policy,
                authenticated: s
                    .and_then(|s| s.authenticated)
                    .or_else(|| d.and_then(|d| d.authenticated)),
                encrypted: s
                    .and_then(|s| s.encrypted)
                    .or_else(|| d.and_then(|d| d.encrypted)),
                total_ms: s.and_then(|s| s.total_ms),
                downtime_ms: s.and_then(|s| s.downtime_ms),
                setup_ms: s.and_then(|s| s.setup_ms),
                rounds: s.and_then(|s| s.rounds),
                pages_total: s.and_then(|s| s.pages_total),
                pages_precopy: s.and_then(|s| s.pages_precopy),
                pages_downtime: s.and_then(|s| s.pages_downtime),
                pages_zero: s.and_then(|s| s.pages_zero),
                pages_delta: s.and_then(|s| s.pages_delta),
                bytes: s.and_then(|s| s.bytes),
                throughput_mbps: s.and_then(|s| s.throughput_mbps),
                raw_tcp_mbps,
                verified,
                guest_continued: d.and_then(|d| d.guest_continued),
                guest_frame_gap_ms: d.and_then(|d| d.guest_frame_gap_ms),
                guest_frame_ms: d.and_then(|d| d.guest_frame_ms),
                freed: d.and_then(|d| d.freed),
            }
        })
        .collect()
}

/// One monitor of the pair, as `run-report.json`'s `source` and
/// `destination` hold it.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// `source` or `dest`, from its `report role=` line.
    pub role: Option<String>,
    /// The QEMU run's outcome (as the top-level `outcome` of `--local`).
    pub outcome: String,
    /// The NIC it drove, from its `report role=` line.
    pub nic: Option<String>,
    pub boot: BootReport,
    /// RAM given to its QEMU.
    pub memory_mib: u32,
    pub guests: Vec<GuestReport>,
    pub malformed_log_frames: usize,
    pub qemu_command: String,
}

impl SideReport {
    pub fn of(result: &RunResult, memory_mib: u32) -> SideReport {
        // `report role=<role> nic=<nic> ...`
        let role_line = result
            .messages()
            .find_map(|m| m.strip_prefix("report role="));
        let role = role_line
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string);
        SideReport {
            role,
            outcome: result.outcome.name().to_string(),
            nic: role_line.and_then(|r| Fields::parse(r).text("nic")),
            boot: report::boot(result),
            memory_mib,
            guests: guests(result),
            malformed_log_frames: result.malformed_frames,
            qemu_command: crate::cmd::redact_secrets(&result.command),
        }
    }
}

/// `run-report.json` of the two-QEMU run.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRunReport {
    /// `success` when both monitors succeeded and every migration
    /// completed verified, else `failure`.
    pub outcome: String,
    /// The run's migration when it made one (`migrations[0]`); `None`
    /// with `--policy all`.
    pub migration: Option<MigrationFields>,
    /// Every migration, in order (one per policy with `--policy all`).
    pub migrations: Vec<MigrationFields>,
    pub source: SideReport,
    pub destination: SideReport,
    /// QEMU's own migration of the same guests (`--compare-qemu`).
    pub qemu_migration: Vec<QemuMigrationReport>,
    /// Each guest that arrived on the destination, frame by frame against
    /// the reference run of its program (`crate::reference`).
    pub reference: Vec<crate::reference::ReferenceCheck>,
}

impl MigrationRunReport {
    /// The report of a finished pair.
    pub fn build(
        expected: &Expected<'_>,
        source: &RunResult,
        destination: &RunResult,
        memory_mib: u32,
    ) -> MigrationRunReport {
        let migrations = pair_migrations(
            expected,
            &source_migrations(source),
            &dest_migrations(destination),
            raw_tcp_mbps(source),
            &SideEnd::of(source),
            &SideEnd::of(destination),
        );
        let success = source.outcome == Outcome::Success
            && destination.outcome == Outcome::Success
            && !migrations.is_empty()
            && migrations.iter().all(MigrationFields::succeeded);
        MigrationRunReport {
            outcome: if success { "success" } else { "failure" }.to_string(),
            migration: (migrations.len() == 1).then(|| migrations[0].clone()),
            migrations,
            source: SideReport::of(source, memory_mib),
            destination: SideReport::of(destination, memory_mib),
            qemu_migration: Vec::new(),
            reference: Vec::new(),
        }
    }

    /// Adds the comparison of each arrived guest with its reference run;
    /// the run fails unless every completed migration's guest has one and
    /// each matches.
    pub fn check_reference(&mut self, source: &RunResult, destination: &RunResult) {
        self.reference = crate::reference::compare(source, destination);
        let completed = self.migrations.iter().filter(|m| m.succeeded()).count();
        if self.reference.len() < completed || !self.reference_matches() {
            self.outcome = "failure".to_string();
        }
    }

    /// Every arrived guest's checksums equal its reference run's.
    pub fn reference_matches(&self) -> bool {
        self.reference.iter().all(|r| r.matches)
    }
}

/// The source's `migration progress ...` line, for the live status line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub policy: String,
    /// `handshake`, `precopy`, `stopcopy` or `handover`.
    pub phase: String,
    pub round: u64,
    pub sent_pages: u64,
    pub left_pages: u64,
    pub bytes: u64,
    pub rate_mbps: f64,
    pub expected_downtime_ms: f64,
}

impl Progress {
    /// Parses a `migration progress ...` log message.
    pub fn parse(message: &str) -> Option<Progress> {
        let f = Fields::parse(message.strip_prefix("migration progress ")?);
        Some(Progress {
            policy: f.text("policy")?,
            phase: f.text("phase")?,
            round: f.num("round")?,
            sent_pages: f.num("sent_pages")?,
            left_pages: f.num("left_pages")?,
            bytes: f.num("bytes")?,
            rate_mbps: f.num("rate_mbps")?,
            expected_downtime_ms: f.num("expected_downtime_ms")?,
        })
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} round {}: {} pages sent, {} left, {:.1} MiB, {:.0} Mbit/s, expected downtime ",
            self.policy,
            self.phase,
            self.round,
            self.sent_pages,
            self.left_pages,
            self.bytes as f64 / MIB,
            self.rate_mbps,
        )?;
        // The monitor says -1 before it has measured the link.
        if self.expected_downtime_ms >= 0.0 {
            write!(f, "{:.1} ms", self.expected_downtime_ms)
        } else {
            f.write_str("?")
        }
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// Columns of the migration table (QEMU's `info migrate` figures, one row
/// per migration).
const COLUMNS: [&str; 18] = [
    "migration",
    "status",
    "total ms",
    "downtime ms",
    "setup ms",
    "rounds",
    "pages",
    "pre-copy",
    "in downtime",
    "zero",
    "delta",
    "MiB sent",
    "downtime MiB",
    "Mbit/s",
    "raw TCP Mbit/s",
    "verified",
    "guest continued",
    "guest gap ms",
];

fn cell<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn ms(v: Option<f64>) -> String {
    cell(v.map(|v| format!("{v:.1}")))
}

fn mib(bytes: Option<u64>) -> String {
    cell(bytes.map(|b| format!("{:.1}", b as f64 / MIB)))
}

fn row_of(m: &MigrationFields) -> Vec<String> {
    vec![
        m.policy.clone().unwrap_or_else(|| "?".into()),
        m.status.clone(),
        ms(m.total_ms),
        ms(m.downtime_ms),
        ms(m.setup_ms),
        cell(m.rounds),
        cell(m.pages_total),
        cell(m.pages_precopy),
        cell(m.pages_downtime),
        cell(m.pages_zero),
        cell(m.pages_delta),
        mib(m.bytes),
        "-".into(),
        cell(m.throughput_mbps.map(|v| format!("{v:.0}"))),
        cell(m.raw_tcp_mbps.map(|v| format!("{v:.0}"))),
        if m.verified { "yes" } else { "no" }.into(),
        cell(m.guest_continued.map(|f| format!("{f} frames"))),
        ms(m.guest_frame_gap_ms),
    ]
}

fn qemu_row(q: &QemuMigrationReport) -> Vec<String> {
    let page = q.page_size.unwrap_or(4096).max(1);
    vec![
        format!("QEMU {}", q.mode),
        q.status.clone(),
        ms(q.total_ms.map(|v| v as f64)),
        ms(q.downtime_ms.map(|v| v as f64)),
        ms(q.setup_ms.map(|v| v as f64)),
        cell(q.rounds),
        cell(q.ram_bytes.map(|b| b / page)),
        "-".into(),
        "-".into(),
        cell(q.pages_zero),
        cell(q.pages_delta),
        mib(q.bytes),
        mib(q.downtime_bytes),
        cell(q.throughput_mbps.map(|v| format!("{v:.0}"))),
        "-".into(),
        "-".into(),
        if q.guest_continued { "yes" } else { "no" }.into(),
        "-".into(),
    ]
}

/// A plain-text table with a header rule; text columns left-aligned,
/// figures right-aligned.
fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([headers[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric = |c: usize| {
        rows.iter()
            .all(|r| r[c] == "-" || r[c].starts_with(|ch: char| ch.is_ascii_digit()))
    };
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, text)| {
                if c > 0 && numeric(c) {
                    format!("{text:>w$}", w = widths[c])
                } else {
                    format!("{text:<w$}", w = widths[c])
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The migration table: our migrations, then QEMU's; a column with
/// nothing in any row is left out.
pub fn table(migrations: &[MigrationFields], qemu: &[QemuMigrationReport]) -> String {
    let rows: Vec<Vec<String>> = migrations
        .iter()
        .map(row_of)
        .chain(qemu.iter().map(qemu_row))
        .collect();
    let keep: Vec<usize> = (0..COLUMNS.len())
        .filter(|&c| c == 0 || rows.iter().any(|r| r[c] != "-"))
        .collect();
    let headers: Vec<&str> = keep.iter().map(|&c| COLUMNS[c]).collect();
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| keep.iter().map(|&c| r[c].clone()).collect())
        .collect();
    format_table(&headers, &rows)
}

/// Every guest of both sides, one row each: frames and checksum (the
/// guest's own), MMIO exits, shares, and where it ended.
pub fn guests_table(source: &[GuestReport], destination: &[GuestReport]) -> String {
    let headers = [
        "side",
        "guest",
        "kind",
        "MiB",
        "frames",
        "checksum",
        "frames here",
        "frame ms",
        "MMIO exits",
        "CPU share",
        "GPU share",
        "attacks refused",
        "ended",
    ];
    let permille = |v: Option<u64>| cell(v.map(|p| format!("{:.3}", p as f64 / 1000.0)));
    let rows: Vec<Vec<String>> = [("source", source), ("destination", destination)]
        .iter()
        .flat_map(|(side, guests)| {
            guests.iter().map(move |g| {
                vec![
                    side.to_string(),
                    cell(g.id),
                    cell(g.kind.clone()),
                    cell(g.mib),
                    cell(g.frames),
                    cell(g.checksum.clone()),
                    cell(g.frames_here),
                    ms(g.frame_ms),
                    cell(g.mmio_exits),
                    permille(g.cpu_share_permille),
                    permille(g.gpu_share_permille),
                    match (g.refused, g.attempts) {
                        (Some(r), Some(a)) if a > 0 => format!("{r} of {a}"),
                        _ => "-".into(),
                    },
                    cell(g.ended.clone()),
                ]
            })
        })
        .collect();
    format_table(&headers, &rows)
}

/// The figures the issue asks to see (reported, never asserted): the best
/// policy's downtime pages against stop-and-copy's, migration throughput
/// against raw TCP, our downtime beside QEMU's with XBZRLE.
pub fn figures(migrations: &[MigrationFields], qemu: &[QemuMigrationReport]) -> Vec<String> {
    let mut out = Vec::new();
    let done: Vec<&MigrationFields> = migrations.iter().filter(|m| m.succeeded()).collect();
    let stop_copy = done
        .iter()
        .find(|m| m.policy.as_deref() == Some("stop-and-copy"))
        .and_then(|m| m.pages_downtime);
    let best = done
        .iter()
        .filter(|m| m.policy.as_deref() != Some("stop-and-copy"))
        .filter_map(|m| Some((m.pages_downtime?, m.policy.as_deref()?)))
        .min();
    if let (Some(stop), Some((pages, policy))) = (stop_copy, best) {
        if stop > 0 {
            out.push(format!(
                "pages in downtime: {policy} {pages}, stop-and-copy {stop} ({:.3}x)",
                pages as f64 / stop as f64
            ));
        }
    }
    let name = |m: &MigrationFields| m.policy.clone().unwrap_or_else(|| "?".into());
    let raw = done
        .iter()
        .find_map(|m| m.raw_tcp_mbps)
        .filter(|r| *r > 0.0);
    if let Some(raw) = raw {
        let ratios: Vec<String> = done
            .iter()
            .filter_map(|m| Some(format!("{} {:.2}x", name(m), m.throughput_mbps? / raw)))
            .collect();
        if !ratios.is_empty() {
            out.push(format!(
                "throughput against raw TCP on the same link ({raw:.0} Mbit/s): {}",
                ratios.join(", ")
            ));
        }
    }
    for m in &done {
        if let (Some(gap), Some(period)) = (m.guest_frame_gap_ms, m.guest_frame_ms) {
            out.push(format!(
                "downtime as the guest saw it ({}): {gap:.1} ms between its last frame on the source and its first on the destination (its frames {period:.1} ms apart otherwise; the source measured {} ms stopped)",
                name(m),
                ms(m.downtime_ms)
            ));
        }
    }
    let xbzrle = qemu
        .iter()
        .find(|q| q.mode == "xbzrle" && q.status == "completed")
        .and_then(|q| q.downtime_ms);
    if let Some(qemu_ms) = xbzrle {
        let ours: Vec<String> = done
            .iter()
            .filter_map(|m| Some(format!("{} {:.1} ms", name(m), m.downtime_ms?)))
            .collect();
        if !ours.is_empty() {
            out.push(format!(
                "downtime: QEMU+XBZRLE {qemu_ms} ms (the whole VM stopped); ours (guest 0 stopped): {}",
                ours.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::defmt_log::LogLine;

    pub(crate) fn run(outcome: Outcome, console: &str, messages: &[&str]) -> RunResult {
        RunResult {
            outcome,
            console: console.into(),
            log: messages
                .iter()
                .map(|m| LogLine {
                    micros: Some(1),
                    level: "INFO".into(),
                    message: m.to_string(),
                })
                .collect(),
            malformed_frames: 0,
            qemu_stderr: String::new(),
            wall: Duration::from_millis(900),
            to_banner: Some(Duration::from_millis(100)),
            cpu: None,
            command: "qemu-system-x86_64 ...".into(),
        }
    }

    const SOURCE_OK: &[&str] = &[
        "report boot_to_main_us=78000 tsc_hz=2600000000",
        "report role=source nic=virtio guests=2",
        "report raw_tcp bytes=16777216 micros=250000 mbps=536.870912",
        "migration progress policy=informed phase=precopy round=1 sent_pages=1000 left_pages=15384 bytes=4100000 rate_mbps=400.5 expected_downtime_ms=310.2",
        "report migration status=completed transport=tcp nic=virtio policy=informed authenticated=true encrypted=false total_ms=1234.5 downtime_ms=12.25 setup_ms=3.5 rounds=4 pages_total=16384 pages_precopy=16384 pages_downtime=312 pages_zero=100 pages_delta=50 bytes=69000000 throughput_mbps=449.1 digest=0x00ab12",
        "report guest id=0 kind=3d mib=64 frames=10 checksum=0x1234 frames_here=10 frame_ms=16.7 mmio_exits=900 submissions=30 cpu_share_permille=400 gpu_busy_us=0 gpu_share_permille=-1 ended=migrated exit_code=-1 kill_vector=-1",
        "report guest id=1 kind=desktop mib=8 frames=30 checksum=0x99 frames_here=30 frame_ms=16.7 mmio_exits=700 submissions=60 cpu_share_permille=300 gpu_busy_us=5000 gpu_share_permille=250 ended=source exit_code=0 kill_vector=-1",
        "report guest id=3 kind=hostile mib=2 frames=0 checksum=0x0 frames_here=0 frame_ms=-1.0 mmio_exits=1 submissions=0 cpu_share_permille=300 gpu_share_permille=-1 ended=killed exit_code=-1 kill_vector=14",
    ];
    const DEST_OK: &[&str] = &[
        "report role=dest nic=virtio",
        "report migration_dest status=completed authenticated=true encrypted=false pages_received=16696 digest=0xAB12 guest_continued=20 guest_frame_gap_ms=45.5 guest_frame_ms=16.8 checked=true freed=true",
        "report guest id=0 kind=3d mib=64 frames=30 checksum=0x5678 frames_here=20 frame_ms=16.8 mmio_exits=40 submissions=40 cpu_share_permille=500 gpu_share_permille=-1 ended=destination exit_code=0 kill_vector=-1",
    ];

    fn expected() -> Expected<'static> {
        Expected {
            policies: &["informed"],
            nic: "virtio",
        }
    }

    #[test]
    fn a_completed_migration_is_verified_field_for_field() {
        let source = run(Outcome::Success, "gmig-rs\n", SOURCE_OK);
        let dest = run(Outcome::Success, "gmig-rs\n", DEST_OK);
        let r = MigrationRunReport::build(&expected(), &source, &dest, 448);
        assert_eq!(r.outcome, "success");
        let m = r.migration.as_ref().expect("one migration");
        assert_eq!(r.migrations, vec![m.clone()]);
        assert_eq!(m.status, "completed");
        assert_eq!(m.failure, None);
        assert_eq!(m.transport.as_deref(), Some("tcp"));
        assert_eq!(m.nic.as_deref(), Some("virtio"));
        assert_eq!(m.policy.as_deref(), Some("informed"));
        assert_eq!(m.authenticated, Some(true));
        assert_eq!(m.encrypted, Some(false));
        assert_eq!(m.total_ms, Some(1234.5));
        assert_eq!(m.downtime_ms, Some(12.25));
        assert_eq!(m.setup_ms, Some(3.5));
        assert_eq!(m.rounds, Some(4));
        assert_eq!(m.pages_total, Some(16384));
        assert_eq!(m.pages_precopy, Some(16384));
        assert_eq!(m.pages_downtime, Some(312));
        assert_eq!(m.pages_zero, Some(100));
        assert_eq!(m.pages_delta, Some(50));
        assert_eq!(m.bytes, Some(69_000_000));
        assert_eq!(m.throughput_mbps, Some(449.1));
        assert_eq!(m.raw_tcp_mbps, Some(536.870912));
        // 0x00ab12 and 0xAB12 are one value.
        assert!(m.verified);
        assert_eq!(m.guest_continued, Some(20));
        assert_eq!(m.guest_frame_gap_ms, Some(45.5));
        assert_eq!(m.guest_frame_ms, Some(16.8));
        assert_eq!(m.freed, Some(true));
        assert_eq!(r.source.role.as_deref(), Some("source"));
        assert_eq!(r.source.nic.as_deref(), Some("virtio"));
        assert_eq!(r.source.guests.len(), 3);
        assert_eq!(r.source.guests[0].ended.as_deref(), Some("migrated"));
        assert_eq!(r.source.guests[0].mmio_exits, Some(900));
        assert_eq!(r.source.guests[0].gpu_share_permille, None);
        assert_eq!(r.source.guests[0].exit_code, None);
        assert_eq!(r.source.guests[1].kind.as_deref(), Some("desktop"));
        assert_eq!(r.source.guests[1].cpu_share_permille, Some(300));
        assert_eq!(r.source.guests[1].gpu_share_permille, Some(250));
        assert_eq!(r.source.guests[1].gpu_busy_us, Some(5000));
        assert_eq!(r.source.guests[1].exit_code, Some(0));
        assert_eq!(r.source.guests[1].frame_ms, Some(16.7));
        assert_eq!(r.source.guests[2].ended.as_deref(), Some("killed"));
        assert_eq!(r.source.guests[2].kill_vector, Some(14));
        assert_eq!(r.source.guests[2].frame_ms, None);
        assert_eq!(r.source.boot.guest_ms_to_kernel_main, Some(78.0));
        assert_eq!(r.destination.role.as_deref(), Some("dest"));
        assert_eq!(r.destination.guests[0].frames, Some(30));
        assert_eq!(r.destination.outcome, "success");
        assert_eq!(r.destination.memory_mib, 448);
        assert!(r.qemu_migration.is_empty());
    }

    #[test]
    fn different_digests_are_not_verified_and_say_why() {
        let source = run(Outcome::Success, "", SOURCE_OK);
        let dest_lines: Vec<String> = DEST_OK
            .iter()
            .map(|l| l.replace("digest=0xAB12", "digest=0xAB13"))
            .collect();
        let dest_lines: Vec<&str> = dest_lines.iter().map(String::as_str).collect();
        let dest = run(Outcome::Success, "", &dest_lines);
        let r = MigrationRunReport::build(&expected(), &source, &dest, 448);
        let m = r.migration.expect("one migration");
        assert!(!m.verified);
        assert_eq!(r.outcome, "failure");
        assert_eq!(m.status, "completed");
        assert_eq!(
            m.failure.as_deref(),
            Some("the digests differ: source 0x00ab12, destination 0xAB13")
        );
    }

    #[test]
    fn a_guest_whose_own_check_failed_on_the_destination_is_not_verified() {
        let source = run(Outcome::Success, "", SOURCE_OK);
        let dest_lines: Vec<String> = DEST_OK
            .iter()
            .map(|l| l.replace("checked=true", "checked=false"))
            .collect();
        let dest_lines: Vec<&str> = dest_lines.iter().map(String::as_str).collect();
        let r = MigrationRunReport::build(
            &expected(),
            &source,
            &run(Outcome::Failure, "", &dest_lines),
            448,
        );
        let m = r.migration.expect("one migration");
        assert!(!m.verified);
        assert_eq!(
            m.failure.as_deref(),
            Some("the migrated guest's check of its pages on the destination failed")
        );
    }

    #[test]
    fn frames_the_destination_did_not_get_back_are_not_verified() {
        let source = run(Outcome::Success, "", SOURCE_OK);
        let dest_lines: Vec<String> = DEST_OK
            .iter()
            .map(|l| l.replace("freed=true", "freed=false"))
            .collect();
        let dest_lines: Vec<&str> = dest_lines.iter().map(String::as_str).collect();
        let r = MigrationRunReport::build(
            &expected(),
            &source,
            &run(Outcome::Success, "", &dest_lines),
            448,
        );
        let m = r.migration.expect("one migration");
        assert!(!m.verified);
        assert_eq!(m.freed, Some(false));
        assert_eq!(
            m.failure.as_deref(),
            Some("the destination did not get back every frame it allocated for the migration")
        );
        assert_eq!(r.outcome, "failure");
    }

    #[test]
    fn an_unconfirmed_handover_holds_guest_0_on_the_source() {
        let source_lines: Vec<String> = SOURCE_OK
            .iter()
            .map(|l| {
                l.replace("status=completed", "status=unconfirmed")
                    .replace("ended=migrated", "ended=held")
            })
            .chain([
                "migration failure: no resumed from the destination within 10000 ms".to_string(),
            ])
            .collect();
        // The failure line follows the report line it belongs to.
        let mut s: Vec<&str> = source_lines.iter().map(String::as_str).collect();
        let failure = s.pop().unwrap();
        s.insert(5, failure);
        let r = MigrationRunReport::build(
            &expected(),
            &run(Outcome::Failure, "", &s),
            &run(Outcome::Success, "", DEST_OK),
            448,
        );
        let m = r.migration.expect("one migration");
        assert_eq!(m.status, "unconfirmed");
        assert!(!m.verified);
        assert_eq!(
            m.failure.as_deref(),
            Some("no resumed from the destination within 10000 ms")
        );
        assert_eq!(m.freed, Some(true));
        assert_eq!(r.source.guests[0].ended.as_deref(), Some("held"));
        assert_eq!(
            r.destination.guests[0].ended.as_deref(),
            Some("destination")
        );
    }

    #[test]
    fn failure_lines_belong_to_the_migration_before_them() {
        let source = run(
            Outcome::Failure,
            "gmig-rs\nerror: migration failed\n",
            &[
                "report role=source nic=e1000e guests=2",
                "report migration status=failed transport=tcp nic=e1000e policy=precopy authenticated=false encrypted=false total_ms=5000 downtime_ms=0 setup_ms=5000 rounds=0 pages_total=2048 pages_precopy=0 pages_downtime=0 pages_zero=0 pages_delta=0 bytes=0 throughput_mbps=0 digest=0x0",
                "migration failure: peer does not know the migration key",
                "report guest id=0 kind=3d mib=8 frames=40 checksum=0x1 ended=running",
            ],
        );
        let dest = run(
            Outcome::Failure,
            "",
            &[
                "report role=dest nic=e1000e",
                "report migration_dest status=failed authenticated=false encrypted=false pages_received=0 digest=0x0 guest_continued=0 checked=false freed=true",
                "migration failure: the source's handshake proof is wrong (wrong key?)",
            ],
        );
        let exp = Expected {
            policies: &["precopy"],
            nic: "e1000e",
        };
        let r = MigrationRunReport::build(&exp, &source, &dest, 256);
        let m = r.migration.expect("one migration");
        assert_eq!(m.status, "failed");
        assert!(!m.verified);
        assert_eq!(
            m.failure.as_deref(),
            Some("peer does not know the migration key; destination: the source's handshake proof is wrong (wrong key?)")
        );
        assert_eq!(m.guest_continued, Some(0));
        assert_eq!(m.freed, Some(true));
        assert_eq!(r.outcome, "failure");
        assert_eq!(r.source.outcome, "failure");
        assert_eq!(r.source.guests[0].ended.as_deref(), Some("running"));
    }

    #[test]
    fn a_side_that_never_reported_is_named_with_how_it_ended() {
        let source = run(Outcome::Success, "", SOURCE_OK);
        let dest = run(
            Outcome::Killed,
            "gmig-rs\n",
            &["report role=dest nic=virtio"],
        );
        let r = MigrationRunReport::build(&expected(), &source, &dest, 448);
        let m = r.migration.expect("one migration");
        assert_eq!(m.status, "completed");
        assert!(!m.verified);
        assert_eq!(m.guest_continued, None);
        assert_eq!(
            m.failure.as_deref(),
            Some("the destination reported no migration with informed: it ended with killed")
        );
        let source = run(
            Outcome::Panic,
            "gmig-rs\n\n*** MONITOR PANIC: boom\n",
            &["report role=source nic=virtio guests=2"],
        );
        let dest = run(Outcome::Failure, "", DEST_OK);
        let r = MigrationRunReport::build(&expected(), &source, &dest, 448);
        let m = r.migration.expect("one migration");
        assert_eq!(m.status, "failed");
        assert_eq!(m.policy.as_deref(), Some("informed"));
        assert_eq!(m.transport.as_deref(), Some("tcp"));
        assert_eq!(m.nic.as_deref(), Some("virtio"));
        assert_eq!(m.total_ms, None);
        assert_eq!(
            m.failure.as_deref(),
            Some("the source reported no migration with informed: it ended with panic (*** MONITOR PANIC: boom)")
        );
    }

    fn source_line(policy: &str, digest: &str, downtime_pages: u64) -> String {
        format!("report migration status=completed transport=tcp nic=virtio policy={policy} authenticated=true encrypted=true total_ms=900 downtime_ms=5 setup_ms=2 rounds=3 pages_total=2048 pages_precopy=2048 pages_downtime={downtime_pages} pages_zero=0 pages_delta=0 bytes=9000000 throughput_mbps=400 digest={digest}")
    }

    fn dest_line(digest: &str) -> String {
        format!("report migration_dest status=completed authenticated=true encrypted=true pages_received=2100 digest={digest} guest_continued=20 checked=true freed=true")
    }

    #[test]
    fn several_migrations_pair_in_order_and_missing_ones_fail() {
        let policies = ["stop-and-copy", "precopy", "informed"];
        let mut source_lines = vec!["report raw_tcp bytes=1 micros=1 mbps=500".to_string()];
        let mut dest_lines = Vec::new();
        for (i, p) in policies.iter().take(2).enumerate() {
            source_lines.push(source_line(p, &format!("0x{i}f"), [2048, 40][i]));
            dest_lines.push(dest_line(&format!("0x{i}f")));
        }
        // The second pair disagrees on the digest.
        dest_lines[1] = dest_line("0x2f");
        let s: Vec<&str> = source_lines.iter().map(String::as_str).collect();
        let d: Vec<&str> = dest_lines.iter().map(String::as_str).collect();
        let exp = Expected {
            policies: &policies,
            nic: "virtio",
        };
        let r = MigrationRunReport::build(
            &exp,
            &run(Outcome::Timeout, "", &s),
            &run(Outcome::Timeout, "", &d),
            300,
        );
        assert!(r.migration.is_none());
        assert_eq!(r.migrations.len(), 3);
        assert!(r.migrations[0].verified);
        assert_eq!(r.migrations[0].policy.as_deref(), Some("stop-and-copy"));
        assert!(!r.migrations[1].verified);
        assert_eq!(r.migrations[2].status, "failed");
        assert_eq!(r.migrations[2].policy.as_deref(), Some("informed"));
        assert!(r.migrations[2]
            .failure
            .as_deref()
            .unwrap()
            .starts_with("the source reported no migration with informed: it ended with timeout"));
        assert!(r.migrations.iter().all(|m| m.raw_tcp_mbps == Some(500.0)));
        assert_eq!(r.outcome, "failure");
    }

    #[test]
    fn a_destination_out_of_step_is_not_verified() {
        let s = source_line("precopy", "0x1", 5);
        let d = dest_line("0x1").replace("status=completed", "status=completed policy=informed");
        let exp = Expected {
            policies: &["precopy"],
            nic: "virtio",
        };
        let r = MigrationRunReport::build(
            &exp,
            &run(Outcome::Success, "", &[&s]),
            &run(Outcome::Success, "", &[&d]),
            300,
        );
        let m = r.migration.unwrap();
        assert!(!m.verified);
        assert_eq!(
            m.failure.as_deref(),
            Some("the destination's migration 1 is policy informed, the source's precopy")
        );
    }

    #[test]
    fn progress_lines_parse_and_show_round_pages_rate_and_downtime() {
        let p = Progress::parse(SOURCE_OK[3]).expect("progress");
        assert_eq!(p.policy, "informed");
        assert_eq!(p.phase, "precopy");
        assert_eq!(p.round, 1);
        assert_eq!(p.sent_pages, 1000);
        assert_eq!(p.left_pages, 15384);
        assert_eq!(
            p.to_string(),
            "informed precopy round 1: 1000 pages sent, 15384 left, 3.9 MiB, 400 Mbit/s, expected downtime 310.2 ms"
        );
        let unknown = SOURCE_OK[3].replace("expected_downtime_ms=310.2", "expected_downtime_ms=-1");
        assert!(Progress::parse(&unknown)
            .unwrap()
            .to_string()
            .ends_with("expected downtime ?"));
        assert_eq!(Progress::parse("migration progress policy=informed"), None);
        assert_eq!(Progress::parse(SOURCE_OK[4]), None);
    }

    #[test]
    fn the_table_has_a_row_per_migration_and_figures_compare_policies() {
        let lines = [
            "report raw_tcp bytes=1 micros=1 mbps=500".to_string(),
            source_line("stop-and-copy", "0x1", 2048),
            source_line("informed", "0x2", 20),
        ];
        let dest = [dest_line("0x1"), dest_line("0x2")];
        let s: Vec<&str> = lines.iter().map(String::as_str).collect();
        let d: Vec<&str> = dest.iter().map(String::as_str).collect();
        let exp = Expected {
            policies: &["stop-and-copy", "informed"],
            nic: "virtio",
        };
        let r = MigrationRunReport::build(
            &exp,
            &run(Outcome::Success, "", &s),
            &run(Outcome::Success, "", &d),
            300,
        );
        let text = table(&r.migrations, &[]);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert!(rows[0].starts_with("migration      status"), "{text}");
        assert!(rows[2].starts_with("stop-and-copy  completed"), "{text}");
        assert!(
            rows[3].contains("yes") && rows[3].contains("20 frames"),
            "{text}"
        );
        let figures = figures(&r.migrations, &[]);
        assert_eq!(
            figures[0],
            "pages in downtime: informed 20, stop-and-copy 2048 (0.010x)"
        );
        assert_eq!(
            figures[1],
            "throughput against raw TCP on the same link (500 Mbit/s): stop-and-copy 0.80x, informed 0.80x"
        );
        let mut q = crate::compare_qemu::empty(&compare_options(), "xbzrle", Some(1 << 26));
        q.status = "completed".into();
        q.downtime_ms = Some(4);
        q.downtime_bytes = Some(600_000);
        let with_qemu = super::figures(&r.migrations, &[q.clone()]);
        assert_eq!(
            with_qemu[2],
            "downtime: QEMU+XBZRLE 4 ms (the whole VM stopped); ours (guest 0 stopped): stop-and-copy 5.0 ms, informed 5.0 ms"
        );
        // QEMU's rows join the table; columns with nothing in them go.
        let text = table(&r.migrations, &[]);
        assert!(!text.contains("downtime MiB"), "{text}");
        let text = table(&r.migrations, &[q]);
        assert!(text.contains("downtime MiB"), "{text}");
        assert!(
            text.lines()
                .nth(4)
                .unwrap()
                .starts_with("QEMU xbzrle    completed"),
            "{text}"
        );
    }

    fn compare_options() -> crate::compare_qemu::CompareOptions {
        crate::compare_qemu::CompareOptions {
            elf: "gmig".into(),
            memory_mib: 448,
            workload: None,
            guest_mib: None,
            bandwidth_mibps: None,
            append: String::new(),
            status: None,
            verbose: false,
        }
    }

    /// Every field path of a JSON value that is not an object itself:
    /// `a.b`, arrays as `a[]` (their first element's fields below).
    fn paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if !v.is_object() {
                        out.push(path.clone());
                    }
                    paths(v, &path, out);
                }
            }
            serde_json::Value::Array(items) => {
                let path = format!("{prefix}[]");
                if let Some(first) = items.first() {
                    if let Some(last) = out.last_mut().filter(|l| **l == prefix) {
                        *last = path.clone();
                    }
                    paths(first, &path, out);
                }
            }
            _ => {}
        }
    }

    /// A path is documented when the README's report section names it in
    /// backticks, whole or without leading parts (`source.boot.protocol`
    /// as `boot.protocol`), or names its last part (`` `x` `` or
    /// `` `.x` ``) on a line that names its parent.
    fn documented(section: &str, path: &str) -> bool {
        let parts: Vec<&str> = path.split('.').collect();
        (0..parts.len().saturating_sub(1))
            .any(|i| section.contains(&format!("`{}`", parts[i..].join("."))))
            || match parts.as_slice() {
                [leaf] => section.contains(&format!("`{leaf}`")),
                [.., parent, leaf] => section.lines().any(|line| {
                    { line.contains(&format!("`{parent}")) || line.contains(&format!(".{parent}")) }
                        .then_some(line)
                        .is_some_and(|line| {
                            line.contains(&format!("`{leaf}`"))
                                || line.contains(&format!("`.{leaf}`"))
                                || line.contains(&format!(", .{leaf}"))
                                || line.contains(&format!("{parent}.{leaf}`"))
                        })
                }),
                [] => false,
            }
    }

    fn readme_report_section() -> String {
        let readme = std::fs::read_to_string(crate::paths::root().join("README.md")).unwrap();
        let start = readme
            .find("### `target/xtask/run-report.json`")
            .expect("the README's report section");
        let rest = &readme[start..];
        let end = rest[4..].find("\n## ").map_or(rest.len(), |e| e + 4);
        rest[..end].to_string()
    }

    /// Fields the README documents once for two places: each of
    /// `migrations[]` is a `migration` object, and QEMU's destination
    /// guests are `guests[]` entries.
    const ALIASES: [(&str, &str); 2] = [
        ("migrations[].", "migration."),
        ("destination_guests[].", "guests[]."),
    ];

    fn undocumented(value: &serde_json::Value) -> Vec<String> {
        let section = readme_report_section();
        let mut all = Vec::new();
        paths(value, "", &mut all);
        assert!(all.len() > 20, "{all:?}");
        all.into_iter()
            .filter(|p| {
                let aliased = ALIASES
                    .iter()
                    .fold(p.clone(), |p, (from, to)| p.replace(from, to));
                !documented(&section, &aliased)
            })
            .collect()
    }

    #[test]
    fn every_field_of_both_reports_is_documented_in_the_readme() {
        let source = run(
            Outcome::Success,
            "gmig-rs 0.1.0 monitor: booted via pvh\n",
            SOURCE_OK,
        );
        let dest = run(Outcome::Success, "", DEST_OK);
        let mut r = MigrationRunReport::build(&expected(), &source, &dest, 448);
        let mut q = crate::compare_qemu::empty(&compare_options(), "xbzrle", Some(1 << 26));
        q.destination_guests = r.destination.guests.clone();
        r.qemu_migration.push(q);
        let pair = serde_json::to_value(&r).unwrap();
        assert_eq!(undocumented(&pair), Vec::<String>::new());
        let local = crate::report::build(
            &run(
                Outcome::Success,
                "",
                &[
                    "pci 00:01.0 [1234:1111] class 03.00.00 VGA controller (QEMU)",
                    "pci 00:01.0   bar0 mem32 0xfd000000 size 0x1000000",
                    "report vgpu id=0 type=small aperture=0x8000000+0x4000000 hidden=0x38000000+0x18000000 fences=4+4 guest_pages=0x100+0x100",
                ],
            ),
            128,
        );
        assert_eq!(
            undocumented(&serde_json::to_value(&local).unwrap()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_undocumented_field_is_found() {
        let value = serde_json::json!({"migration": {"status": "x", "frobs": 1}, "source": {"guests": [{"kind": "3d", "zork": 2}]}});
        assert_eq!(
            undocumented_in(&value),
            vec![
                "migration.frobs".to_string(),
                "source.guests[].zork".to_string()
            ]
        );
    }

    fn undocumented_in(value: &serde_json::Value) -> Vec<String> {
        let section = readme_report_section();
        let mut all = Vec::new();
        paths(value, "", &mut all);
        all.into_iter()
            .filter(|p| !documented(&section, p))
            .collect()
    }
}
