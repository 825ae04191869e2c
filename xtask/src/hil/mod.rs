//! `cargo xtask hil --target FILE`: the monitor on a machine (a real one,
//! or a QEMU playing one), judged as `cargo xtask run` judges QEMU.
//!
//! A run, per target ([`target`] reads the file):
//! 1. **deliver**: start xtask's TFTP and HTTP servers with the run's
//!    iPXE script, GRUB PXE image, grub.cfg and monitor ([`netboot`]), or
//!    write the GRUB ISO to the target's block device or file;
//! 2. open the **console** ([`console`]): COM1's text and COM2's defmt
//!    frames, before the machine is powered, so an unreachable console
//!    fails the run before the machine is touched;
//! 3. **power-cycle** it ([`power`]; QEMU kinds: start QEMU);
//! 4. **watch**: the monitor's banner within `timeouts.boot_s`, its exit
//!    line (`gmig-rs: exit <outcome>`, the only verdict a real machine
//!    can give: it has no isa-debug-exit) within `timeouts.run_s`; a
//!    stream that closes first is a lost console;
//! 5. power it off (`power.off`; QEMU kinds: stop QEMU) and write
//!    `run-report.json`, `cargo xtask run`'s report plus a `hil` section
//!    (target, machine identity: CPU, GPU PCI ids, backend; the files the
//!    servers sent), into one log directory per run under
//!    `target/xtask/hil/` (and a copy at `target/xtask/run-report.json`).
//!
//! The exit status is the outcome's (`Outcome::process_code`: 0 success,
//! 6 timeout, 9 lost console, ...), or 1 with a message for bad input (a
//! malformed target file, an unreachable console, a failed power command).

pub mod console;
pub mod http;
pub mod netboot;
pub mod power;
pub mod target;
pub mod tftp;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use self::console::{Capture, Said};
use self::netboot::{BootPlan, RequestLog, Servers};
use self::target::{Delivery, Endpoint, Kind, Passthrough, Target};
use crate::defmt_log::LogLine;
use crate::migrate_run::{self, MigrationOptions};
use crate::migration_report::{Expected, MigrationRunReport};
use crate::pair::{free_port, Nic};
use crate::qemu::{Outcome, RunResult};
use crate::report::{self, RunReport};
use crate::{build, cmd, deps, paths};

/// What the monitor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `selftest=<selection>` (`all` unless one test is named).
    SelfTests(String),
    /// The monitor's own guests and a migration inside it (`role=local`).
    Guests,
    /// A live migration from the target to the peer target.
    Migration,
}

/// Options of one `cargo xtask hil` run.
#[derive(Debug, Clone)]
pub struct HilOptions {
    pub target: PathBuf,
    /// The destination of a migration.
    pub peer: Option<PathBuf>,
    pub mode: Mode,
    /// More kernel command line, after the target file's.
    pub append: String,
    /// A prebuilt monitor instead of `cargo xtask build`'s.
    pub elf: Option<PathBuf>,
    /// Print the consoles, log lines and served files live.
    pub echo: bool,
    /// Every log line, not only warnings, errors, reports and self-tests.
    pub verbose: bool,
}

/// Who the machine is, from its boot lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MachineIdentity {
    /// The CPU's brand string.
    pub cpu: Option<String>,
    /// Display controllers (PCI class 03) as "vendor:device at bb:dd.f".
    pub gpus: Vec<String>,
    /// The GPU backend the monitor chose ("intel-gen9", "software-gen9").
    pub backend: Option<String>,
}

/// Self-test results from the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SelfTestCounts {
    pub passed: u32,
    pub failed: u32,
    /// `name: why` of each failed test.
    pub failures: Vec<String>,
}

/// The `hil` section of the report: what `cargo xtask run` cannot know.
#[derive(Debug, Clone, Serialize)]
pub struct HilSection {
    pub target: String,
    pub kind: String,
    pub target_file: String,
    /// "netboot" or "iso".
    pub delivery: String,
    pub command_line: String,
    pub machine: MachineIdentity,
    pub selftests: Option<SelfTestCounts>,
    /// Each request the boot servers answered, in order.
    pub served: Vec<String>,
    /// Why the run did not succeed, in words.
    pub problem: Option<String>,
    /// Where this run's console, log and report are.
    pub log_dir: String,
}

/// `run-report.json` of a one-target run.
#[derive(Debug, Serialize)]
pub struct HilReport {
    #[serde(flatten)]
    pub run: RunReport,
    pub hil: HilSection,
}

/// `run-report.json` of a migration between two targets.
#[derive(Debug, Serialize)]
pub struct HilMigrationReport {
    #[serde(flatten)]
    pub run: MigrationRunReport,
    pub hil_source: HilSection,
    pub hil_destination: HilSection,
}

/// One target's finished run.
#[derive(Debug)]
pub struct MachineRun {
    pub result: RunResult,
    pub hil: HilSection,
    pub memory_mib: u32,
}

impl MachineRun {
    pub fn outcome(&self) -> Outcome {
        self.result.outcome
    }

    pub fn report(&self) -> HilReport {
        HilReport {
            run: report::build(&self.result, self.memory_mib),
            hil: self.hil.clone(),
        }
    }
}

/// What a run ended with: its report (written), its directory and exit code.
#[derive(Debug)]
pub struct HilRun {
    pub machines: Vec<MachineRun>,
    pub dir: PathBuf,
    pub report_path: PathBuf,
    pub exit_code: i32,
    /// The migration's report (migration mode).
    pub migration: Option<MigrationRunReport>,
}

/// `cargo xtask hil`: runs and prints a summary; returns the exit code.
pub fn main(opts: &HilOptions) -> Result<i32> {
    let run = run(opts)?;
    println!();
    for m in &run.machines {
        let h = &m.hil;
        println!(
            "{}: {} ({}, {}); cpu: {}; gpu: {}; backend: {}",
            h.target,
            m.outcome().name(),
            h.kind,
            h.delivery,
            h.machine.cpu.as_deref().unwrap_or("?"),
            if h.machine.gpus.is_empty() {
                "none".to_string()
            } else {
                h.machine.gpus.join(", ")
            },
            h.machine.backend.as_deref().unwrap_or("?")
        );
        if let Some(s) = &h.selftests {
            println!("  self-tests: {} passed, {} failed", s.passed, s.failed);
            for f in &s.failures {
                println!("    FAILED {f}");
            }
        }
        if let Some(p) = &h.problem {
            println!("  error: {p}");
        }
    }
    if let Some(m) = &run.migration {
        print!(
            "{}",
            crate::migration_report::table(&m.migrations, &m.qemu_migration)
        );
    }
    println!("logs: {}", run.dir.display());
    println!("report: {}", run.report_path.display());
    Ok(run.exit_code)
}

/// Runs the monitor on the target(s) of `opts` and writes the report.
pub fn run(opts: &HilOptions) -> Result<HilRun> {
    let target = Target::load(&opts.target)?;
    let peer = opts.peer.as_deref().map(Target::load).transpose()?;
    if (opts.mode == Mode::Migration) != peer.is_some() {
        bail!("a migration needs --peer (the destination's target file), and --peer a migration");
    }
    for t in [Some(&target), peer.as_ref()].into_iter().flatten() {
        if t.kind.is_qemu() {
            deps::ensure(deps::QEMU)?;
        }
        if matches!(t.delivery, Delivery::Netboot(_)) {
            deps::ensure(netboot::GRUB_NETBOOT)?;
        } else {
            deps::ensure(deps::GRUB_ISO)?;
        }
    }
    let elf = match &opts.elf {
        Some(e) => e.clone(),
        None => build::kernel()?,
    };
    match peer {
        None => single(opts, &target, &elf),
        Some(peer) => migration(opts, &target, &peer, &elf),
    }
}

fn join_cmdline(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn single(opts: &HilOptions, target: &Target, elf: &Path) -> Result<HilRun> {
    let mode_line = match &opts.mode {
        Mode::SelfTests(selection) => format!("selftest={selection}"),
        Mode::Guests | Mode::Migration => String::new(),
    };
    let cmdline = join_cmdline(&[&mode_line, &target.append, &opts.append]);
    let dir = run_dir(&target.name)?;
    let mut booting = Booting::start(target, elf, &cmdline, &dir, opts, None)?;
    while !booting.poll() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut machine = booting.finish(&opts.mode);
    let report_path = write_report(&dir, &machine.report())?;
    machine.hil.log_dir = dir.display().to_string();
    let exit_code = machine.outcome().process_code();
    Ok(HilRun {
        machines: vec![machine],
        dir,
        report_path,
        exit_code,
        migration: None,
    })
}

fn migration(opts: &HilOptions, source: &Target, dest: &Target, elf: &Path) -> Result<HilRun> {
    let (Some(src_net), Some(dst_net)) = (source.network, dest.network) else {
        bail!(
            "`network`: a migration needs it in both target files ({} and {})",
            source.file.display(),
            dest.file.display()
        );
    };
    if source.kind.is_qemu() != dest.kind.is_qemu() {
        bail!("a migration links two QEMU targets (a socket link) or two machines (their network), not one of each");
    }
    let key = migrate_run::fresh_key()?;
    let mopts = MigrationOptions::default();
    let (source_role, dest_role) = mopts.command_lines(&key);
    let net = |n: &target::Network| format!("ip={}/{} nic={}", n.ip, n.prefix, n.nic.name());
    let source_line = join_cmdline(&[
        &source_role,
        &net(&src_net),
        &format!("peer={}:{}", dst_net.ip, dst_net.port),
        &source.append,
        &opts.append,
    ]);
    let dest_line = join_cmdline(&[
        &dest_role,
        &net(&dst_net),
        &format!("listen={}", dst_net.port),
        &dest.append,
        &opts.append,
    ]);
    let dir = run_dir(&format!("{}-to-{}", source.name, dest.name))?;
    let (src_dir, dst_dir) = (dir.join("source"), dir.join("destination"));
    std::fs::create_dir_all(&src_dir)?;
    std::fs::create_dir_all(&dst_dir)?;
    // QEMU kinds: the destination's QEMU listens on the link, so it starts
    // first and the source's once the destination's machine runs (its
    // first request to its boot servers).
    let link = if source.kind.is_qemu() {
        Some(free_port()?)
    } else {
        None
    };
    let mut destination = Booting::start(
        dest,
        elf,
        &dest_line,
        &dst_dir,
        opts,
        link.map(|port| Link {
            netdev: format!("socket,id=link,listen=127.0.0.1:{port}"),
            nic: dst_net.nic,
            mac: crate::pair::LISTENER_MAC,
        }),
    )?;
    let wait_start = Instant::now();
    while link.is_some() && !destination.running() {
        if destination.poll() || wait_start.elapsed() > dest.boot_timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut source_boot = Booting::start(
        source,
        elf,
        &source_line,
        &src_dir,
        opts,
        link.map(|port| Link {
            netdev: format!("socket,id=link,connect=127.0.0.1:{port}"),
            nic: src_net.nic,
            mac: crate::pair::CONNECTOR_MAC,
        }),
    )?;
    loop {
        let d = destination.poll();
        let s = source_boot.poll();
        if d && s {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut src = source_boot.finish(&Mode::Migration);
    let mut dst = destination.finish(&Mode::Migration);
    src.hil.log_dir = src_dir.display().to_string();
    dst.hil.log_dir = dst_dir.display().to_string();
    let policies = mopts.policy.policies();
    let report = MigrationRunReport::build(
        &Expected {
            policies: &policies,
            nic: src_net.nic.name(),
        },
        &src.result,
        &dst.result,
        src.memory_mib,
    );
    let all_verified =
        !report.migrations.is_empty() && report.migrations.iter().all(|m| m.succeeded());
    let exit_code = crate::run::pair_exit_code(src.outcome(), dst.outcome(), all_verified);
    let full = HilMigrationReport {
        run: report,
        hil_source: src.hil.clone(),
        hil_destination: dst.hil.clone(),
    };
    let report_path = write_report(&dir, &full)?;
    Ok(HilRun {
        machines: vec![src, dst],
        dir,
        report_path,
        exit_code,
        migration: Some(full.run),
    })
}

/// A QEMU target's second NIC, on a socket link to the other QEMU.
#[derive(Debug, Clone)]
struct Link {
    netdev: String,
    nic: Nic,
    mac: &'static str,
}

/// `target/xtask/hil/<UTC time>-<name>`, new.
fn run_dir(name: &str) -> Result<PathBuf> {
    let base = paths::xtask_dir().join("hil");
    std::fs::create_dir_all(&base)?;
    let stamp = utc_stamp(SystemTime::now());
    for n in 0..100 {
        let dir = if n == 0 {
            base.join(format!("{stamp}-{name}"))
        } else {
            base.join(format!("{stamp}-{name}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("no free run directory under {}", base.display())
}

/// `YYYYmmddTHHMMSSZ` (civil-from-days, H. Hinnant's algorithm).
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn write_report(dir: &Path, value: &impl Serialize) -> Result<PathBuf> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    let path = dir.join("run-report.json");
    std::fs::write(&path, &text)?;
    std::fs::write(paths::xtask_dir().join("run-report.json"), &text)?;
    Ok(path)
}

/// A QEMU playing the machine.
#[derive(Debug)]
struct QemuMachine {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// One target being booted and watched.
struct Booting {
    target: Target,
    label: String,
    dir: PathBuf,
    cmdline: String,
    delivery: &'static str,
    capture: Arc<Capture>,
    servers: Option<Servers>,
    qemu: Option<QemuMachine>,
    /// The QEMU command or the power command, for the report.
    command: String,
    powered_at: Instant,
    outcome: Option<Outcome>,
    problem: Option<String>,
    /// When the exit line came: the log gets a moment to catch up.
    exit_seen: Option<Instant>,
    qemu_stderr: String,
    memory_mib: u32,
}

/// How long the log may lag the exit line.
const LOG_GRACE: Duration = Duration::from_millis(1500);

fn worth_showing(line: &LogLine) -> bool {
    if line.message.starts_with("migration progress ") {
        return false;
    }
    matches!(line.level.as_str(), "WARN" | "ERROR")
        || ["report ", "selftest", "migration"]
            .iter()
            .any(|p| line.message.starts_with(p))
}

impl Booting {
    /// Delivers, opens the console and powers the machine.
    fn start(
        target: &Target,
        elf: &Path,
        cmdline: &str,
        dir: &Path,
        opts: &HilOptions,
        link: Option<Link>,
    ) -> Result<Booting> {
        let label = target.name.clone();
        let echo = opts.echo;
        let verbose = opts.verbose;
        let say = {
            let label = label.clone();
            move |text: &str| {
                if echo {
                    println!("[{label}] {text}");
                }
            }
        };
        say(&format!(
            "target {} ({}), command line: {cmdline}",
            target.file.display(),
            target.kind.name()
        ));
        // 1. Deliver.
        let (servers, disk, delivery) = match &target.delivery {
            Delivery::Netboot(n) => {
                let sockets = netboot::bind(n.listen, n.tftp_port, n.http_port)?;
                let plan = BootPlan {
                    server: n.server,
                    tftp_port: sockets.tftp.port(),
                    http_port: sockets.http.port(),
                    cmdline: cmdline.to_string(),
                    label: label.clone(),
                };
                let files = plan.files(elf, &dir.join("netboot"))?;
                for name in files.names() {
                    if let Some(data) = files.get(name) {
                        std::fs::write(dir.join("netboot").join(name), data.as_slice())?;
                    }
                }
                let log = {
                    let say = say.clone();
                    RequestLog::with_callback(move |s| say(&format!("served {s}")))
                };
                say(&format!(
                    "boot servers: tftp {} http {}; DHCP boot file for iPXE: {}",
                    sockets.tftp,
                    sockets.http,
                    plan.ipxe_url()
                ));
                let servers = netboot::serve(sockets, files, log)?;
                (Some((servers, plan)), None, "netboot")
            }
            Delivery::Iso { device } => {
                let device = resolve_relative(&target.file, device);
                let (iso, _) = crate::image::build_iso(&dir.join("gmig.iso"), cmdline)?;
                write_iso(&iso, &device, target.kind)?;
                say(&format!("wrote {} to {}", iso.display(), device.display()));
                (None, Some(device), "iso")
            }
        };
        // 2. Console, 3. power.
        let echo_said = {
            let say = say.clone();
            move |said: Said<'_>| match said {
                Said::Console(text) => say(text),
                Said::Log(line) if verbose || worth_showing(line) => say(&line.to_string()),
                Said::Log(_) => {}
            }
        };
        let power_log = dir.join("power.txt");
        let (capture, qemu, command, memory_mib) = if let Some(settings) = &target.qemu {
            let ports = (free_port()?, free_port()?);
            let mut qemu = qemu_command(
                target,
                settings,
                ports,
                servers.as_ref().map(|(_, plan)| plan.ipxe_url()),
                disk.as_deref(),
                link.as_ref(),
            )?;
            let shown = cmd::display(&qemu);
            std::fs::write(dir.join("qemu-command.txt"), format!("{shown}\n"))?;
            say(&format!("$ {shown}"));
            qemu.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = qemu
                .spawn()
                .with_context(|| format!("cannot start QEMU: `{shown}`"))?;
            let stderr = child.stderr.take().map(|mut e| {
                std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = e.read_to_string(&mut s);
                    s
                })
            });
            let mut machine = QemuMachine { child, stderr };
            // QEMU waits for both serial sockets to be connected before the
            // machine runs (`wait=on`), so nothing it prints is lost.
            let until = Some(Instant::now() + Duration::from_secs(20));
            let opened = console::open(
                &Endpoint::Tcp {
                    address: format!("127.0.0.1:{}", ports.0),
                },
                "console.text",
                until,
            )
            .and_then(|text| {
                let log = console::open(
                    &Endpoint::Tcp {
                        address: format!("127.0.0.1:{}", ports.1),
                    },
                    "console.log",
                    until,
                )?;
                Capture::start(text, Some(log), elf, dir, echo_said)
            });
            let capture = match opened {
                Ok(c) => c,
                Err(e) => {
                    let _ = machine.child.kill();
                    let _ = machine.child.wait();
                    let stderr = machine
                        .stderr
                        .take()
                        .and_then(|t| t.join().ok())
                        .unwrap_or_default();
                    return Err(e.context(format!(
                        "QEMU's serial sockets (QEMU said: {})",
                        stderr.trim()
                    )));
                }
            };
            (capture, Some(machine), shown, settings.memory_mib)
        } else {
            let console = target.console.as_ref().context("`console`: missing")?;
            let text = console::open(&console.text, "console.text", None)?;
            let log = console
                .log
                .as_ref()
                .map(|l| console::open(l, "console.log", None))
                .transpose()?;
            let capture = Capture::start(text, log, elf, dir, echo_said)?;
            say("power-cycling");
            if let Err(e) = power::cycle(
                &target.name,
                target.power.cycle.as_deref(),
                target.power.timeout,
                &power_log,
            ) {
                capture.stop();
                return Err(e);
            }
            let command = target
                .power
                .cycle
                .clone()
                .unwrap_or_else(|| "(power-cycled by hand)".into());
            (capture, None, command, 0)
        };
        Ok(Booting {
            target: target.clone(),
            label,
            dir: dir.to_path_buf(),
            cmdline: cmdline.to_string(),
            delivery,
            capture,
            servers: servers.map(|(s, _)| s),
            qemu,
            command,
            powered_at: Instant::now(),
            outcome: None,
            problem: None,
            exit_seen: None,
            qemu_stderr: String::new(),
            memory_mib,
        })
    }

    /// Whether the machine is up: its banner came, or it asked the boot
    /// servers for a file.
    fn running(&self) -> bool {
        self.capture.banner_at().is_some()
            || self
                .servers
                .as_ref()
                .is_some_and(|s| !s.log.entries().is_empty())
    }

    /// Looks once; true when the run is decided (and its log caught up).
    fn poll(&mut self) -> bool {
        if self.outcome.is_some() {
            return true;
        }
        if let Some(seen) = self.exit_seen {
            if seen.elapsed() >= LOG_GRACE {
                self.outcome = self.capture.exit();
                return true;
            }
            return false;
        }
        if self.capture.exit().is_some() {
            self.exit_seen = Some(Instant::now());
            return false;
        }
        if let Some(q) = &mut self.qemu {
            if let Ok(Some(status)) = q.child.try_wait() {
                // Give the console readers what QEMU wrote last.
                std::thread::sleep(Duration::from_millis(200));
                if self.capture.exit().is_some() {
                    self.exit_seen = Some(Instant::now());
                    return false;
                }
                let (outcome, what) = match status.code() {
                    // -no-reboot: a reset ends QEMU with status 0.
                    Some(0) => (Outcome::TripleFault, "reset (a triple fault)".to_string()),
                    code => (
                        Outcome::QemuError(code.unwrap_or(-1)),
                        format!("ended with {status}"),
                    ),
                };
                self.decide(
                    outcome,
                    format!("QEMU {what} before the monitor's exit line"),
                );
                return true;
            }
        }
        if let Some(why) = self.capture.lost() {
            self.decide(Outcome::ConsoleLost, format!("console lost: {why}"));
            return true;
        }
        let since = self.powered_at.elapsed();
        match self.capture.banner_at() {
            None if since > self.target.boot_timeout => {
                let fetched = self.fetched();
                self.decide(
                    Outcome::Timeout,
                    format!(
                        "timeout: no monitor banner on `console.text` within {} s of the power-cycle (`timeouts.boot_s`); {fetched}; last console lines:\n{}",
                        self.target.boot_timeout.as_secs(),
                        self.capture.tail(10)
                    ),
                );
                true
            }
            Some(at) if at.elapsed() > self.target.run_timeout => {
                self.decide(
                    Outcome::Timeout,
                    format!(
                        "timeout: the monitor booted but printed no exit line within {} s (`timeouts.run_s`); last console lines:\n{}",
                        self.target.run_timeout.as_secs(),
                        self.capture.tail(10)
                    ),
                );
                true
            }
            _ => false,
        }
    }

    fn decide(&mut self, outcome: Outcome, problem: String) {
        self.outcome = Some(outcome);
        self.problem = Some(problem);
    }

    /// What the boot servers sent, for a timeout's message.
    fn fetched(&self) -> String {
        match &self.servers {
            None => "delivered by ISO".into(),
            Some(s) => {
                let sent: Vec<String> = s
                    .log
                    .entries()
                    .iter()
                    .filter(|e| e.result.starts_with("sent "))
                    .map(|e| e.path.clone())
                    .collect();
                if sent.is_empty() {
                    "the machine fetched nothing from the boot servers (check its DHCP boot file and network)".into()
                } else {
                    format!("the machine fetched {}", sent.join(", "))
                }
            }
        }
    }

    /// Powers off, collects, judges.
    fn finish(mut self, mode: &Mode) -> MachineRun {
        if let Some(mut q) = self.qemu.take() {
            let _ = q.child.kill();
            let _ = q.child.wait();
            self.qemu_stderr = q
                .stderr
                .take()
                .and_then(|t| t.join().ok())
                .unwrap_or_default();
            let _ = std::fs::write(self.dir.join("qemu-stderr.txt"), &self.qemu_stderr);
        } else if let Some(off) = &self.target.power.off {
            if let Err(e) = power::run(
                off,
                "power.off",
                self.target.power.timeout,
                &self.dir.join("power.txt"),
            ) {
                eprintln!("[{}] warning: {e:#}", self.label);
            }
        }
        self.capture.stop();
        let log = self.capture.log();
        let _ = std::fs::write(
            self.dir.join("log.txt"),
            log.iter().map(|l| format!("{l}\n")).collect::<String>(),
        );
        let served: Vec<String> = self
            .servers
            .as_ref()
            .map(|s| s.log.entries().iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        let _ = std::fs::write(self.dir.join("served.txt"), served.join("\n") + "\n");
        drop(self.servers.take());
        let mut outcome = self.outcome.unwrap_or(Outcome::Timeout);
        let powered = self.powered_at;
        let result = RunResult {
            outcome,
            console: self.capture.console(),
            log,
            malformed_frames: self.capture.malformed(),
            qemu_stderr: self.qemu_stderr.clone(),
            wall: powered.elapsed(),
            to_banner: self
                .capture
                .banner_at()
                .map(|b| b.saturating_duration_since(powered)),
            cpu: None,
            command: self.command.clone(),
        };
        let selftests = matches!(mode, Mode::SelfTests(_)).then(|| selftest_counts(&result));
        let mut problem = self.problem.take();
        if let Some(s) = &selftests {
            let has_log = self.target.kind.is_qemu()
                || self
                    .target
                    .console
                    .as_ref()
                    .is_some_and(|c| c.log.is_some());
            if outcome == Outcome::Success && has_log && (s.failed > 0 || s.passed == 0) {
                outcome = Outcome::Failure;
                problem = Some(format!(
                    "the monitor exited with success, but its log shows {} passed, {} failed",
                    s.passed, s.failed
                ));
            }
        }
        if problem.is_none() && outcome != Outcome::Success {
            problem = Some(format!("the monitor ended with {}", outcome.name()));
        }
        let result = RunResult { outcome, ..result };
        let machine = identity(&result);
        MachineRun {
            hil: HilSection {
                target: self.target.name.clone(),
                kind: self.target.kind.name().to_string(),
                target_file: self.target.file.display().to_string(),
                delivery: self.delivery.to_string(),
                command_line: self.cmdline.clone(),
                machine,
                selftests,
                served,
                problem,
                log_dir: self.dir.display().to_string(),
            },
            result,
            memory_mib: self.memory_mib,
        }
    }
}

/// The machine's identity from its log: the CPU from the boot line, the
/// display controllers from the PCI list, the backend from its report.
pub fn identity(result: &RunResult) -> MachineIdentity {
    let cpu = result.messages().find_map(|m| {
        let rest = m.strip_prefix("gmig-rs ")?;
        let (_, after) = rest.split_once(" on ")?;
        let (cpu, _) = after.rsplit_once(", booted via ")?;
        Some(cpu.to_string())
    });
    let report = report::build(result, 0);
    let gpus = report
        .pci
        .iter()
        .filter(|p| p.class.starts_with("03."))
        .map(|p| format!("{}:{} at {}", p.vendor, p.device, p.bdf))
        .collect();
    MachineIdentity {
        cpu,
        gpus,
        backend: report.gpu.backend,
    }
}

/// `selftest <name> ... ok|FAILED: why` and the summary line.
pub fn selftest_counts(result: &RunResult) -> SelfTestCounts {
    let mut counts = SelfTestCounts::default();
    for m in result.messages() {
        let Some(rest) = m.strip_prefix("selftest ") else {
            continue;
        };
        if rest.starts_with("summary:") {
            continue;
        }
        if let Some((name, verdict)) = rest.split_once(" ... ") {
            if verdict == "ok" {
                counts.passed += 1;
            } else {
                counts.failed += 1;
                counts.failures.push(format!(
                    "{name}: {}",
                    verdict
                        .trim_start_matches("FAILED")
                        .trim_start_matches(": ")
                ));
            }
        }
    }
    counts
}

/// A target file's relative path is relative to the file's directory.
fn resolve_relative(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(path)
    }
}

/// Writes the ISO to `device`: a block device (refused while mounted) or,
/// for a QEMU target, the file QEMU attaches as a USB stick.
fn write_iso(iso: &Path, device: &Path, kind: Kind) -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let device_text = device.display().to_string();
    if let Some(m) = mounts.lines().find(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|d| d.starts_with(&device_text))
    }) {
        bail!("`iso.device`: {device_text} is mounted ({m}): unmount it first");
    }
    let is_block = std::fs::metadata(device)
        .map(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_block_device()
        })
        .unwrap_or(false);
    if !is_block && kind == Kind::Machine && !device.parent().is_some_and(|p| p.is_dir()) {
        bail!("`iso.device`: {device_text} is neither a block device nor a file in an existing directory");
    }
    let data = std::fs::read(iso)?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(!is_block)
        .truncate(!is_block)
        .open(device)
        .with_context(|| format!("`iso.device`: cannot open {device_text} for writing"))?;
    std::io::Write::write_all(&mut out, &data)
        .with_context(|| format!("`iso.device`: writing {device_text}"))?;
    out.sync_all()
        .with_context(|| format!("`iso.device`: flushing {device_text}"))?;
    Ok(())
}

/// The QEMU that plays a `qemu` or `qemu-passthrough` target: no
/// isa-debug-exit (a real machine has none: the console's exit line is
/// the verdict), COM1 and COM2 as TCP servers xtask connects to, the
/// boot NIC's iPXE ROM pointed at xtask's TFTP server by QEMU's DHCP
/// (`bootfile=`; QEMU's own TFTP server stays off), or the ISO as a USB
/// stick; a passthrough target's GPU through VFIO.
fn qemu_command(
    target: &Target,
    settings: &target::QemuSettings,
    ports: (u16, u16),
    ipxe_url: Option<String>,
    disk: Option<&Path>,
    link: Option<&Link>,
) -> Result<Command> {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-machine",
        "q35",
        "-accel",
        &settings.accel,
        "-display",
        "none",
    ]);
    c.args(["-m", &format!("{}M", settings.memory_mib)]);
    for (id, port) in [("com1", ports.0), ("com2", ports.1)] {
        c.arg("-chardev").arg(format!(
            "socket,id={id},host=127.0.0.1,port={port},server=on,wait=on"
        ));
        c.arg("-serial").arg(format!("chardev:{id}"));
    }
    c.args(["-no-reboot", "-nic", "none"]);
    if let Some(url) = ipxe_url {
        c.arg("-netdev").arg(format!("user,id=boot,bootfile={url}"));
        let device = match settings.boot_nic {
            Nic::Virtio => "virtio-net-pci",
            Nic::E1000e => "e1000e",
        };
        c.arg("-device")
            .arg(format!("{device},netdev=boot,bootindex=1"));
    }
    if let Some(disk) = disk {
        c.arg("-drive").arg(format!(
            "if=none,id=stick,format=raw,file={}",
            disk.display()
        ));
        c.args([
            "-device",
            "qemu-xhci",
            "-device",
            "usb-storage,drive=stick,bootindex=1",
        ]);
    }
    if let Some(link) = link {
        c.arg("-netdev").arg(&link.netdev);
        let device = match link.nic {
            Nic::Virtio => format!(
                "virtio-net-pci,netdev=link,disable-legacy=on,mac={}",
                link.mac
            ),
            Nic::E1000e => format!("e1000e,netdev=link,mac={}", link.mac),
        };
        c.arg("-device").arg(device);
    }
    match &target.passthrough {
        None => {}
        Some(Passthrough::Mdev(path)) => {
            if !path.is_dir() {
                bail!(
                    "`passthrough.mdev`: {} does not exist: create the GVT-g vGPU first (README, Hardware-in-the-loop)",
                    path.display()
                );
            }
            c.args(["-vga", "none", "-device"])
                .arg(format!("vfio-pci,sysfsdev={},display=off", path.display()));
        }
        Some(Passthrough::Host(address)) => {
            let driver = std::fs::read_link(format!("/sys/bus/pci/devices/{address}/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            if driver.as_deref() != Some("vfio-pci") {
                bail!(
                    "`passthrough.host`: {address} is bound to {}, not vfio-pci: bind it first (README, Hardware-in-the-loop)",
                    driver.as_deref().unwrap_or("no driver (or does not exist)")
                );
            }
            c.args(["-vga", "none", "-device"]).arg(format!(
                "vfio-pci,host={address},addr=02.0,x-igd-opregion=on"
            ));
        }
    }
    c.args(&settings.extra_args);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_128_620);
        assert_eq!(utc_stamp(t), "20261201T123700Z");
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "20000229T000000Z");
    }

    fn result(messages: &[&str]) -> RunResult {
        RunResult {
            outcome: Outcome::Success,
            console: String::new(),
            log: messages
                .iter()
                .map(|m| LogLine {
                    micros: None,
                    level: "INFO".into(),
                    message: m.to_string(),
                })
                .collect(),
            malformed_frames: 0,
            qemu_stderr: String::new(),
            wall: Duration::ZERO,
            to_banner: None,
            cpu: None,
            command: String::new(),
        }
    }

    #[test]
    fn identity_and_self_tests_come_from_the_log() {
        let r = result(&[
            "gmig-rs 0.1.0 on Intel(R) Core(TM) i5-6260U CPU @ 1.80GHz, booted via multiboot2",
            "pci 00:02.0 [8086:1926] class 03.00.00 VGA controller (Intel)",
            "pci 00:1f.6 [8086:156f] class 02.00.00 Ethernet controller (Intel)",
            "report gpu_backend=intel-gen9 vgpus=2",
            "selftest frames ... ok",
            "selftest gpu-submit ... FAILED: readback mismatch",
            "selftest summary: 1 passed, 1 failed",
        ]);
        let id = identity(&r);
        assert_eq!(
            id.cpu.as_deref(),
            Some("Intel(R) Core(TM) i5-6260U CPU @ 1.80GHz")
        );
        assert_eq!(id.gpus, vec!["8086:1926 at 00:02.0".to_string()]);
        assert_eq!(id.backend.as_deref(), Some("intel-gen9"));
        let s = selftest_counts(&r);
        assert_eq!((s.passed, s.failed), (1, 1));
        assert_eq!(
            s.failures,
            vec!["gpu-submit: readback mismatch".to_string()]
        );
    }

    #[test]
    fn the_qemu_machine_boots_from_xtasks_servers_with_its_serial_on_sockets() {
        let t = Target::parse(
            "name = \"q\"\nkind = \"qemu\"\ndelivery = \"netboot\"\n[qemu]\nboot_nic = \"e1000e\"\n",
            Path::new("q.toml"),
        )
        .unwrap();
        let c = qemu_command(
            &t,
            t.qemu.as_ref().unwrap(),
            (4001, 4002),
            Some("tftp://10.0.2.2:6969/boot.ipxe".into()),
            None,
            None,
        )
        .unwrap();
        let shown = cmd::display(&c);
        assert!(shown.contains("-netdev user,id=boot,bootfile=tftp://10.0.2.2:6969/boot.ipxe -device e1000e,netdev=boot,bootindex=1"), "{shown}");
        assert!(shown.contains("-chardev socket,id=com1,host=127.0.0.1,port=4001,server=on,wait=on -serial chardev:com1"), "{shown}");
        assert!(shown.contains("port=4002"), "{shown}");
        assert!(!shown.contains("isa-debug-exit"), "{shown}");
        assert!(
            !shown.contains("tftp="),
            "QEMU's own TFTP server must stay off: {shown}"
        );
    }

    #[test]
    fn passthrough_needs_its_device_ready() {
        let base =
            "name = \"p\"\nkind = \"qemu-passthrough\"\ndelivery = \"netboot\"\n[passthrough]\n";
        let t = Target::parse(
            &format!(
                "{base}mdev = \"/sys/bus/mdev/devices/00000000-0000-0000-0000-000000000000\"\n"
            ),
            Path::new("p.toml"),
        )
        .unwrap();
        let e = qemu_command(&t, t.qemu.as_ref().unwrap(), (1, 2), None, None, None).unwrap_err();
        assert!(format!("{e}").contains("`passthrough.mdev`"), "{e}");
        let t = Target::parse(
            &format!("{base}host = \"0000:ff:1f.7\"\n"),
            Path::new("p.toml"),
        )
        .unwrap();
        let e = qemu_command(&t, t.qemu.as_ref().unwrap(), (1, 2), None, None, None).unwrap_err();
        assert!(
            format!("{e}").contains("`passthrough.host`")
                && format!("{e}").contains("not vfio-pci"),
            "{e}"
        );
        // A stand-in for the mdev's sysfs directory shows the command line.
        let dir = paths::xtask_dir().join("tests/hil-mdev");
        std::fs::create_dir_all(&dir).unwrap();
        let t = Target::parse(
            &format!("{base}mdev = \"{}\"\n", dir.display()),
            Path::new("p.toml"),
        )
        .unwrap();
        let shown = cmd::display(
            &qemu_command(&t, t.qemu.as_ref().unwrap(), (1, 2), None, None, None).unwrap(),
        );
        assert!(
            shown.contains(&format!(
                "-vga none -device vfio-pci,sysfsdev={},display=off",
                dir.display()
            )),
            "{shown}"
        );
    }
}
