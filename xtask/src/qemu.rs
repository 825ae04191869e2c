//! Booting the monitor in QEMU (TCG, `-machine q35`) and collecting what it
//! says: COM1 (text console) from QEMU's stdout, COM2 (defmt frames) from a
//! file tailed while QEMU runs, and the outcome from `isa-debug-exit`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd;
use crate::defmt_log::{LogLine, LogTable};
use crate::paths;

/// What to boot.
#[derive(Debug, Clone)]
pub enum Boot {
    /// The ELF through QEMU's `-kernel` (PVH), with a command line.
    Kernel { elf: PathBuf, append: String },
    /// A GRUB ISO from the CD-ROM (SeaBIOS, Multiboot2). `elf` is the image
    /// inside it, for the log table.
    Iso { iso: PathBuf, elf: PathBuf },
}

/// One QEMU invocation.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub boot: Boot,
    /// QEMU machine type: "q35" (PCIe, ECAM) or "pc" (i440fx, port 0xCF8 only).
    pub machine: &'static str,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Print the console and decoded log live.
    pub echo: bool,
    /// Extra QEMU arguments (devices, netdevs).
    pub extra_args: Vec<String>,
    /// Prefix for echoed lines (`[label] `), to tell two QEMUs apart.
    pub label: Option<String>,
    /// Where echoed output goes instead of stdout/stderr (a runner that
    /// filters it or keeps a status line under it); `None`: printed, each
    /// line prefixed with the label.
    pub sink: Option<EchoSink>,
}

/// One piece of a QEMU's live output.
#[derive(Debug, Clone, Copy)]
pub enum Echoed<'a> {
    /// The QEMU command about to run.
    Command(&'a str),
    /// A COM1 line.
    Console(&'a str),
    /// A decoded COM2 line.
    Log(&'a LogLine),
}

type EchoFn = dyn Fn(Option<&str>, Echoed<'_>) + Send + Sync;

/// A receiver of echoed output, called with the QEMU's label and what it
/// said, from the threads that collect it.
#[derive(Clone)]
pub struct EchoSink(Arc<EchoFn>);

impl EchoSink {
    pub fn new(f: impl Fn(Option<&str>, Echoed<'_>) + Send + Sync + 'static) -> EchoSink {
        EchoSink(Arc::new(f))
    }

    /// The default: commands to stderr, console and log lines to stdout,
    /// each prefixed with `[label] `.
    fn print() -> EchoSink {
        EchoSink::new(|label, echoed| {
            let prefix = label.map(|l| format!("[{l}] ")).unwrap_or_default();
            match echoed {
                Echoed::Command(c) => eprintln!("{prefix}$ {c}"),
                Echoed::Console(text) => println!("{prefix}{text}"),
                Echoed::Log(line) => println!("{prefix}{line}"),
            }
        })
    }

    fn emit(&self, label: Option<&str>, echoed: Echoed<'_>) {
        (self.0)(label, echoed)
    }
}

impl std::fmt::Debug for EchoSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EchoSink(..)")
    }
}

/// How a run ended. The monitor's codes are `kernel::exit::ExitCode`:
/// QEMU exits with `2 * code + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Panic,
    CpuException,
    BadCommandLine,
    /// QEMU exited 0: with `-no-reboot` that is a reset, i.e. a triple fault.
    TripleFault,
    /// Killed after the timeout.
    Timeout,
    /// Killed on purpose by the harness ([`Running::kill`]).
    Killed,
    /// Any other QEMU status (QEMU itself failed).
    QemuError(i32),
    /// A machine's console (`cargo xtask hil`) closed or failed before
    /// the monitor's exit line.
    ConsoleLost,
}

impl Outcome {
    fn from_status(code: Option<i32>) -> Outcome {
        match code {
            Some(33) => Outcome::Success,
            Some(35) => Outcome::Failure,
            Some(37) => Outcome::Panic,
            Some(39) => Outcome::CpuException,
            Some(41) => Outcome::BadCommandLine,
            Some(0) => Outcome::TripleFault,
            Some(other) => Outcome::QemuError(other),
            None => Outcome::QemuError(-1),
        }
    }

    /// Stable name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Panic => "panic",
            Outcome::CpuException => "cpu-exception",
            Outcome::BadCommandLine => "bad-command-line",
            Outcome::TripleFault => "triple-fault",
            Outcome::Timeout => "timeout",
            Outcome::Killed => "killed",
            Outcome::QemuError(_) => "qemu-error",
            Outcome::ConsoleLost => "console-lost",
        }
    }

    /// The outcome a monitor names on its last console line
    /// (`gmig-rs: exit <name>`, `kernel::exit`), on QEMU and real machines.
    pub fn from_exit_name(name: &str) -> Option<Outcome> {
        [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Panic,
            Outcome::CpuException,
            Outcome::BadCommandLine,
        ]
        .into_iter()
        .find(|o| o.name() == name)
    }

    /// The exit code `cargo xtask run` passes on.
    pub fn process_code(&self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Panic => 2,
            Outcome::CpuException => 3,
            Outcome::BadCommandLine => 4,
            Outcome::TripleFault => 5,
            Outcome::Timeout => 6,
            Outcome::QemuError(_) => 7,
            Outcome::Killed => 8,
            Outcome::ConsoleLost => 9,
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: Outcome,
    /// COM1 text.
    pub console: String,
    /// Decoded COM2 log.
    pub log: Vec<LogLine>,
    /// Undecodable log frames.
    pub malformed_frames: usize,
    /// QEMU's stderr.
    pub qemu_stderr: String,
    /// From spawning QEMU to its exit.
    pub wall: Duration,
    /// From spawning QEMU to the monitor's first console line.
    pub to_banner: Option<Duration>,
    /// CPU time QEMU used (user + system, all its threads), as last read
    /// from /proc before it exited (within 10 ms of the end); `None` where
    /// /proc is not there. Unlike `wall`, it does not grow when the host
    /// is busy with other work.
    pub cpu: Option<Duration>,
    /// The QEMU command line.
    pub command: String,
}

impl RunResult {
    /// Log messages (without timestamps and levels).
    pub fn messages(&self) -> impl Iterator<Item = &str> {
        self.log.iter().map(|l| l.message.as_str())
    }

    /// Whether any log message contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.messages().any(|m| m.contains(needle))
    }

    /// Console and log together, for failure messages.
    pub fn transcript(&self) -> String {
        let mut s = format!(
            "$ {}\n--- console (COM1) ---\n{}",
            self.command, self.console
        );
        s.push_str("--- log (COM2) ---\n");
        for line in &self.log {
            s.push_str(&format!("{line}\n"));
        }
        if !self.qemu_stderr.is_empty() {
            s.push_str(&format!("--- qemu stderr ---\n{}", self.qemu_stderr));
        }
        s.push_str(&format!(
            "--- outcome: {} after {:?} ---\n",
            self.outcome.name(),
            self.wall
        ));
        s
    }
}

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Qemu {
    /// A `-kernel` boot with defaults: 128 MiB, 60 s, quiet.
    pub fn kernel(elf: PathBuf, append: &str) -> Qemu {
        Qemu {
            boot: Boot::Kernel {
                elf,
                append: append.to_string(),
            },
            machine: "q35",
            memory_mib: 128,
            timeout: Duration::from_secs(60),
            echo: false,
            extra_args: Vec::new(),
            label: None,
            sink: None,
        }
    }

    fn elf(&self) -> &PathBuf {
        match &self.boot {
            Boot::Kernel { elf, .. } | Boot::Iso { elf, .. } => elf,
        }
    }

    /// The QEMU command for this run, with COM2 going to `log_file`.
    pub fn command(&self, log_file: &std::path::Path) -> Command {
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-machine",
            self.machine,
            "-accel",
            "tcg",
            "-display",
            "none",
        ]);
        c.args(["-m", &format!("{}M", self.memory_mib)]);
        match &self.boot {
            Boot::Kernel { elf, append } => {
                c.arg("-kernel").arg(elf);
                if !append.is_empty() {
                    c.args(["-append", append]);
                }
            }
            Boot::Iso { iso, .. } => {
                c.arg("-cdrom").arg(iso).args(["-boot", "d"]);
            }
        }
        c.args(["-serial", "stdio"]);
        c.arg("-serial").arg(format!("file:{}", log_file.display()));
        c.args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
        ]);
        // No default NIC (q35 adds an e1000e): NICs come from extra_args.
        if !self.extra_args.iter().any(|a| a.starts_with("-nic")) {
            c.args(["-nic", "none"]);
        }
        c.args(&self.extra_args);
        c
    }

    /// Boots, waits for the monitor to end (or the timeout), and collects.
    pub fn run(&self) -> Result<RunResult> {
        self.spawn()?.wait()
    }

    /// Starts QEMU and the threads that collect its console and log; the
    /// caller watches it with [`Running`] and collects with
    /// [`Running::wait`].
    pub fn spawn(&self) -> Result<Running> {
        let table = LogTable::load(self.elf())?;
        let dir = paths::xtask_dir().join("qemu");
        std::fs::create_dir_all(&dir)?;
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let log_file = dir.join(format!("com2-{}-{n}.bin", std::process::id()));
        std::fs::write(&log_file, b"")?;
        let mut command = self.command(&log_file);
        let shown = cmd::display(&command);
        let label = self.label.clone();
        let sink = self.sink.clone().unwrap_or_else(EchoSink::print);
        if self.echo {
            sink.emit(label.as_deref(), Echoed::Command(&shown));
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start QEMU: `{shown}`"))?;

        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().context("QEMU stdout")?;
        let echo = self.echo;
        let console_reader = {
            let shared = Arc::clone(&shared);
            let label = label.clone();
            let sink = sink.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).split(b'\n') {
                    let Ok(line) = line else { break };
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string();
                    let mut b = lock(&shared.banner);
                    if b.is_none() && text.contains("gmig-rs") {
                        *b = Some(start.elapsed());
                    }
                    drop(b);
                    if echo {
                        sink.emit(label.as_deref(), Echoed::Console(&text));
                    }
                    let mut c = lock(&shared.console);
                    c.push_str(&text);
                    c.push('\n');
                }
            })
        };
        let mut stderr = child.stderr.take().context("QEMU stderr")?;
        let stderr_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        // Tail COM2 while QEMU runs.
        let log_tail = {
            let shared = Arc::clone(&shared);
            let log_file = log_file.clone();
            std::thread::spawn(move || {
                let mut stream = table.stream();
                let mut offset = 0usize;
                loop {
                    let finished = shared.done.load(Ordering::Acquire);
                    if let Ok(bytes) = std::fs::read(&log_file) {
                        if bytes.len() > offset {
                            let lines = stream.feed(&bytes[offset..]);
                            offset = bytes.len();
                            for line in &lines {
                                // Dirty-trace records go to a file, not the screen.
                                if echo && !line.message.starts_with("trace ") {
                                    sink.emit(label.as_deref(), Echoed::Log(line));
                                }
                            }
                            lock(&shared.log).extend(lines);
                        }
                    }
                    shared.malformed.store(stream.malformed, Ordering::Relaxed);
                    if finished {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Ok(Running {
            child,
            start,
            timeout: self.timeout,
            command: shown,
            log_file,
            shared,
            threads: Some((console_reader, stderr_reader, log_tail)),
            status: None,
            cpu: None,
        })
    }
}

/// What the collecting threads share with [`Running`].
#[derive(Debug, Default)]
struct Shared {
    console: Mutex<String>,
    banner: Mutex<Option<Duration>>,
    log: Mutex<Vec<LogLine>>,
    malformed: AtomicUsize,
    done: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Threads = (JoinHandle<()>, JoinHandle<String>, JoinHandle<()>);

/// A QEMU that is running: watch what it says, kill it, or wait for it.
#[derive(Debug)]
pub struct Running {
    child: Child,
    start: Instant,
    timeout: Duration,
    command: String,
    log_file: PathBuf,
    shared: Arc<Shared>,
    threads: Option<Threads>,
    /// Set once QEMU is gone: its exit status, or `None` if it was killed.
    status: Option<(Option<ExitStatus>, Outcome)>,
    /// QEMU's CPU time at the last look.
    cpu: Option<Duration>,
}

/// User + system CPU time of process `pid` (Linux /proc; clock ticks of
/// 10 ms, the kernel's USER_HZ on every architecture xtask runs on).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

impl Running {
    /// Whether the console (COM1) so far contains `needle`.
    pub fn console_contains(&self, needle: &str) -> bool {
        lock(&self.shared.console).contains(needle)
    }

    /// Whether a decoded log message so far contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        lock(&self.shared.log)
            .iter()
            .any(|l| l.message.contains(needle))
    }

    /// Decoded log lines so far.
    pub fn log_len(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether QEMU has exited (or was killed); kills it once its timeout
    /// has passed.
    pub fn finished(&mut self) -> Result<bool> {
        if self.status.is_some() {
            return Ok(true);
        }
        if let Some(cpu) = cpu_time(self.child.id()) {
            self.cpu = Some(cpu);
        }
        if let Some(status) = self.child.try_wait()? {
            self.status = Some((Some(status), Outcome::from_status(status.code())));
            return Ok(true);
        }
        if self.start.elapsed() > self.timeout {
            self.stop(Outcome::Timeout);
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether QEMU was killed for outliving its timeout.
    pub fn timed_out(&self) -> bool {
        matches!(self.status, Some((_, Outcome::Timeout)))
    }

    /// Kills QEMU now (a test that pulls the plug); the outcome is
    /// [`Outcome::Killed`] unless it had exited already.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some((Some(status), Outcome::from_status(status.code())));
            } else {
                self.stop(Outcome::Killed);
            }
        }
    }

    fn stop(&mut self, outcome: Outcome) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.status = Some((None, outcome));
    }

    /// Waits for QEMU to exit (or its timeout) and collects everything.
    pub fn wait(mut self) -> Result<RunResult> {
        while !self.finished()? {
            std::thread::sleep(Duration::from_millis(10));
        }
        let wall = self.start.elapsed();
        self.shared.done.store(true, Ordering::Release);
        let (console_reader, stderr_reader, log_tail) =
            self.threads.take().context("QEMU collected twice")?;
        log_tail
            .join()
            .map_err(|_| anyhow::anyhow!("log thread panicked"))?;
        let _ = console_reader.join();
        let qemu_stderr = stderr_reader.join().unwrap_or_default();
        let _ = std::fs::remove_file(&self.log_file);
        let outcome = self.status.map_or(Outcome::Timeout, |(_, o)| o);
        Ok(RunResult {
            outcome,
            console: std::mem::take(&mut *lock(&self.shared.console)),
            log: std::mem::take(&mut *lock(&self.shared.log)),
            malformed_frames: self.shared.malformed.load(Ordering::Relaxed),
            qemu_stderr,
            wall,
            to_banner: *lock(&self.shared.banner),
            cpu: self.cpu,
            command: std::mem::take(&mut self.command),
        })
    }
}

impl Drop for Running {
    /// A `Running` dropped without `wait` (a panicking test) takes its
    /// QEMU with it.
    fn drop(&mut self) {
        if self.status.is_none() {
            self.stop(Outcome::Killed);
        }
        self.shared.done.store(true, Ordering::Release);
    }
}
