//! One live migration between two monitors, each in its own QEMU, linked
//! by QEMU socket networking ([`crate::pair`]): the destination
//! (`role=dest`, the pair's listener) starts first, then the source
//! (`role=source`, the connector) with its guests, which migrates guest 0
//! (once per policy with `policy=all`) when its trigger comes. Both get a
//! fresh random `migrate_key=` per run. While they run, the source's
//! `migration progress` lines drive a status line and each side's
//! warnings, errors, `report` and `migration` lines are shown labelled by
//! side (everything with `verbose`); at the end both logs become a
//! [`MigrationRunReport`].
//!
//! [`run`] is the one way to do this: `cargo xtask run` calls it, and so do
//! the integration tests, which can also pull the plug on one side when a
//! log line appears ([`KillAt`]).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::defmt_log::LogLine;
use crate::migration_report::{Expected, MigrationRunReport, Progress};
use crate::pair::{Nic, Pair};
use crate::qemu::{EchoSink, Echoed, RunResult};
use crate::status_line::StatusLine;

/// The guest workloads (`workload=`), the `guest` crate's models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    ThreeD,
    Desktop,
    Video,
    /// The 3D game in a PPGTT context (`guest::Kind::Render3d`).
    ThreeDPpgtt,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::ThreeD,
        Workload::Desktop,
        Workload::Video,
        Workload::ThreeDPpgtt,
    ];

    /// The monitor's `workload=` value (and the CLI's `--workload`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::ThreeD => "3d",
            Workload::Desktop => "desktop",
            Workload::Video => "video",
            Workload::ThreeDPpgtt => "3d-ppgtt",
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// The policy the source migrates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChoice {
    /// One migration with this policy (a `migrate::POLICY_NAMES` name).
    One(String),
    /// One migration per policy, in `migrate::POLICY_NAMES` order.
    All,
}

impl PolicyChoice {
    /// The monitor's default policy.
    pub const DEFAULT: &'static str = "informed";

    /// Parses a policy name or `all`.
    pub fn from_name(name: &str) -> Option<PolicyChoice> {
        if name == "all" {
            Some(PolicyChoice::All)
        } else {
            migrate::POLICY_NAMES
                .contains(&name)
                .then(|| PolicyChoice::One(name.to_string()))
        }
    }

    /// The source's `policy=` value.
    pub fn name(&self) -> &str {
        match self {
            PolicyChoice::One(name) => name,
            PolicyChoice::All => "all",
        }
    }

    /// The policies the source migrates with, in order.
    pub fn policies(&self) -> Vec<&str> {
        match self {
            PolicyChoice::One(name) => vec![name.as_str()],
            PolicyChoice::All => migrate::POLICY_NAMES.to_vec(),
        }
    }
}

/// One side of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    /// The label of its echoed lines.
    pub fn label(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "dest",
        }
    }
}

/// Kill one side's QEMU once a log line appears (a test that pulls the
/// plug at a chosen moment of the migration).
#[derive(Debug, Clone)]
pub struct KillAt {
    /// The side whose QEMU is killed.
    pub victim: Side,
    /// The side whose decoded log is watched.
    pub watch: Side,
    /// Kill when a log message of `watch` contains this.
    pub line: String,
    /// How long after the line appeared.
    pub delay: Duration,
}

/// What goes to the terminal while the pair runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Nothing (tests: the transcript says it all on failure).
    Quiet,
    /// The QEMU commands, both consoles, each side's warnings, errors,
    /// `report` and `migration` lines, and the progress line.
    Terminal,
    /// As `Terminal`, with every log line.
    Verbose,
}

/// Options of one two-QEMU migration run.
#[derive(Debug, Clone)]
pub struct MigrationOptions {
    pub nic: Nic,
    pub policy: PolicyChoice,
    /// `workload=` of the source's guest 0 (the monitor's default if None).
    pub workload: Option<Workload>,
    /// `guest_mib=` of the source's guest 0 (the monitor's default if None).
    pub guest_mib: Option<u32>,
    /// `migrate_mbps=`: the source's cap on the stream, MiB/s.
    pub bandwidth_mibps: Option<u32>,
    /// `migrate_encrypt=on` on both sides.
    pub encrypt: bool,
    /// More kernel options for both sides.
    pub append: String,
    /// More kernel options for the source only (e.g. `migrate_fault=`).
    pub source_append: String,
    /// More kernel options for the destination only.
    pub dest_append: String,
    /// The source's `migrate_key=` instead of the run's fresh key (hex; a
    /// key the destination does not know).
    pub source_key: Option<String>,
    /// The destination's `migrate_key=` instead of the run's fresh key.
    pub dest_key: Option<String>,
    /// The TCP port the destination's monitor listens on, instead of the
    /// one the source connects to ([`crate::pair::TCP_PORT`]): with another,
    /// nobody listens where the source connects (connection refused).
    pub dest_port: Option<u16>,
    /// RAM of each QEMU ([`default_memory_mib`] if None).
    pub memory_mib: Option<u32>,
    /// Both QEMUs are killed once one has run this long.
    pub timeout: Duration,
    pub output: Output,
    pub kill: Option<KillAt>,
}

impl Default for MigrationOptions {
    /// virtio-net, the default policy and guests, 5 minutes, quiet.
    fn default() -> MigrationOptions {
        MigrationOptions {
            nic: Nic::Virtio,
            policy: PolicyChoice::One(PolicyChoice::DEFAULT.to_string()),
            workload: None,
            guest_mib: None,
            bandwidth_mibps: None,
            encrypt: false,
            append: String::new(),
            source_append: String::new(),
            dest_append: String::new(),
            source_key: None,
            dest_key: None,
            dest_port: None,
            memory_mib: None,
            timeout: Duration::from_secs(300),
            output: Output::Quiet,
            kill: None,
        }
    }
}

/// The monitor's default `guest_mib=`.
pub const DEFAULT_GUEST_MIB: u32 = 64;

/// RAM for each QEMU of the pair: the monitor and its own guests (256
/// MiB) plus three times guest 0's memory (its pages, the migration's
/// copy on the destination, and a fresh guest 0 per policy).
pub fn default_memory_mib(guest_mib: Option<u32>) -> u32 {
    256 + 3 * guest_mib.unwrap_or(DEFAULT_GUEST_MIB)
}

impl MigrationOptions {
    /// RAM of each QEMU.
    pub fn memory_mib(&self) -> u32 {
        self.memory_mib
            .unwrap_or_else(|| default_memory_mib(self.guest_mib))
    }

    /// The source's and the destination's kernel options (the pair adds
    /// the network's); `key` is the run's migration key, which both get
    /// unless a side's own overrides it.
    pub fn command_lines(&self, key: &str) -> (String, String) {
        let mut both = Vec::new();
        if self.encrypt {
            both.push("migrate_encrypt=on".to_string());
        }
        let key_of =
            |own: &Option<String>| format!("migrate_key={}", own.as_deref().unwrap_or(key));
        let mut source = vec![
            "role=source".to_string(),
            format!("policy={}", self.policy.name()),
        ];
        if let Some(w) = self.workload {
            source.push(format!("workload={}", w.name()));
        }
        // The destination sets up for the incoming guest's size.
        let mut dest = vec!["role=dest".to_string()];
        if let Some(mib) = self.guest_mib {
            source.push(format!("guest_mib={mib}"));
            dest.push(format!("guest_mib={mib}"));
        }
        if let Some(cap) = self.bandwidth_mibps {
            source.push(format!("migrate_mbps={cap}"));
        }
        if let PolicyChoice::All = self.policy {
            dest.push(format!("migrations={}", migrate::POLICY_NAMES.len()));
        }
        source.push(key_of(&self.source_key));
        dest.push(key_of(&self.dest_key));
        let join = |role: Vec<String>, own: &str| {
            role.into_iter()
                .chain(both.iter().cloned())
                .chain([self.append.clone(), own.to_string()])
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        (
            join(source, &self.source_append),
            join(dest, &self.dest_append),
        )
    }
}

/// A fresh migration key: 32 bytes from the kernel's random source, as
/// 64 hex digits.
pub fn fresh_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading a migration key from /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a log line is shown without `verbose`.
fn worth_showing(line: &LogLine) -> bool {
    matches!(line.level.as_str(), "WARN" | "ERROR")
        || line.message.starts_with("report ")
        || line.message.starts_with("migration ")
}

/// The echo of one side: lines through the status line, filtered; the
/// source's progress lines as the progress line.
pub fn side_sink(status: Arc<StatusLine>, output: Output) -> EchoSink {
    EchoSink::new(move |label, echoed| {
        let prefix = label.map(|l| format!("[{l}] ")).unwrap_or_default();
        match echoed {
            Echoed::Command(c) => status.line(&format!("{prefix}$ {c}")),
            Echoed::Console(text) => status.line(&format!("{prefix}{text}")),
            Echoed::Log(line) => {
                if let Some(p) = Progress::parse(&line.message) {
                    status.progress(
                        &format!("{} {}", p.policy, p.phase),
                        &format!("{prefix}{p}"),
                    );
                } else if output == Output::Verbose || worth_showing(line) {
                    status.line(&format!("{prefix}{line}"));
                }
            }
        }
    })
}

/// Everything a two-QEMU migration run produced.
#[derive(Debug, Clone)]
pub struct MigrationRun {
    pub source: RunResult,
    pub destination: RunResult,
    pub report: MigrationRunReport,
    /// The side [`KillAt`] killed, and when (since the pair started).
    pub killed: Option<(Side, Duration)>,
}

impl MigrationRun {
    /// Both transcripts, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "=== source ===\n{}=== destination ===\n{}",
            self.source.transcript(),
            self.destination.transcript()
        )
    }
}

/// Runs both monitors to their end (or the timeout) and builds the report.
/// `status` is the terminal's output when `opts.output` is not quiet.
pub fn run(
    elf: &Path,
    opts: &MigrationOptions,
    status: Option<Arc<StatusLine>>,
) -> Result<MigrationRun> {
    let key = fresh_key()?;
    let (source_line, dest_line) = opts.command_lines(&key);
    let mut pair = Pair::new(elf.to_path_buf(), opts.nic, &dest_line, &source_line);
    if let Some(port) = opts.dest_port {
        pair.listen_port = port;
    }
    let echo = opts.output != Output::Quiet;
    let status = match (echo, status) {
        (true, None) => Some(Arc::new(StatusLine::stdout())),
        (_, s) => s,
    };
    for (q, side) in [
        (&mut pair.listener, Side::Destination),
        (&mut pair.connector, Side::Source),
    ] {
        q.memory_mib = opts.memory_mib();
        q.timeout = opts.timeout;
        q.label = Some(side.label().to_string());
        q.echo = echo;
        q.sink = status
            .as_ref()
            .map(|s| side_sink(Arc::clone(s), opts.output));
    }
    let start = Instant::now();
    let mut running = pair.spawn()?;
    let mut kill = opts.kill.clone();
    let mut seen_at: Option<Instant> = None;
    let mut killed = None;
    loop {
        let dest_done = running.listener.finished()?;
        let source_done = running.connector.finished()?;
        if (dest_done && source_done)
            || running.listener.timed_out()
            || running.connector.timed_out()
        {
            break;
        }
        if let Some(k) = &kill {
            let watched = match k.watch {
                Side::Source => &running.connector,
                Side::Destination => &running.listener,
            };
            if seen_at.is_none() && watched.log_contains(&k.line) {
                seen_at = Some(Instant::now());
            }
            if seen_at.is_some_and(|t| t.elapsed() >= k.delay) {
                match k.victim {
                    Side::Source => running.connector.kill(),
                    Side::Destination => running.listener.kill(),
                }
                killed = Some((k.victim, start.elapsed()));
                kill = None;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let result = running.wait()?;
    if let Some(s) = &status {
        s.finish();
    }
    let policies = opts.policy.policies();
    let expected = Expected {
        policies: &policies,
        nic: opts.nic.name(),
    };
    let mut report = MigrationRunReport::build(
        &expected,
        &result.connector,
        &result.listener,
        opts.memory_mib(),
    );
    report.check_reference(&result.connector, &result.listener);
    if let Some(k) = &opts.kill {
        if killed.is_none() {
            bail!(
                "the {} never logged {:?}, so the {} was not killed\n{}",
                k.watch.label(),
                k.line,
                k.victim.label(),
                result.transcript()
            );
        }
    }
    Ok(MigrationRun {
        source: result.connector,
        destination: result.listener,
        report,
        killed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_gets_its_role_key_and_options() {
        let opts = MigrationOptions {
            policy: PolicyChoice::All,
            workload: Some(Workload::Video),
            guest_mib: Some(8),
            bandwidth_mibps: Some(32),
            encrypt: true,
            append: "frames_after=5".into(),
            source_append: "migrate_fault=flip@4096".into(),
            ..MigrationOptions::default()
        };
        let (source, dest) = opts.command_lines("00ff");
        assert_eq!(
            source,
            "role=source policy=all workload=video guest_mib=8 migrate_mbps=32 migrate_key=00ff migrate_encrypt=on frames_after=5 migrate_fault=flip@4096"
        );
        assert_eq!(
            dest,
            "role=dest guest_mib=8 migrations=6 migrate_key=00ff migrate_encrypt=on frames_after=5"
        );
        assert_eq!(opts.memory_mib(), 256 + 24);
        let wrong = MigrationOptions {
            dest_key: Some("11".into()),
            ..MigrationOptions::default()
        };
        let (source, dest) = wrong.command_lines("00ff");
        assert_eq!(source, "role=source policy=informed migrate_key=00ff");
        assert_eq!(dest, "role=dest migrate_key=11");
        let wrong = MigrationOptions {
            source_key: Some("22".into()),
            ..MigrationOptions::default()
        };
        let (source, dest) = wrong.command_lines("00ff");
        assert_eq!(source, "role=source policy=informed migrate_key=22");
        assert_eq!(dest, "role=dest migrate_key=00ff");
        let (source, dest) = MigrationOptions::default().command_lines("k");
        assert_eq!(source, "role=source policy=informed migrate_key=k");
        assert_eq!(dest, "role=dest migrate_key=k");
        assert_eq!(MigrationOptions::default().memory_mib(), 448);
    }

    #[test]
    fn keys_are_fresh_64_hex_digits() {
        let (a, b) = (fresh_key().unwrap(), fresh_key().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn policy_and_workload_names_parse() {
        assert_eq!(PolicyChoice::from_name("all"), Some(PolicyChoice::All));
        assert_eq!(
            PolicyChoice::from_name("gmig-tpds"),
            Some(PolicyChoice::One("gmig-tpds".into()))
        );
        assert_eq!(PolicyChoice::from_name("fastest"), None);
        assert_eq!(PolicyChoice::All.policies().len(), 6);
        assert!(migrate::POLICY_NAMES.contains(&PolicyChoice::DEFAULT));
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
        assert_eq!(Workload::from_name("4k"), None);
    }

    #[test]
    fn only_warnings_errors_reports_and_migration_lines_show_by_default() {
        let line = |level: &str, message: &str| LogLine {
            micros: None,
            level: level.into(),
            message: message.into(),
        };
        assert!(worth_showing(&line("WARN", "net: slow")));
        assert!(worth_showing(&line(
            "INFO",
            "report migration status=completed"
        )));
        assert!(worth_showing(&line("INFO", "migration failure: x")));
        assert!(!worth_showing(&line("INFO", "guest 0: frame 12")));
    }
}
