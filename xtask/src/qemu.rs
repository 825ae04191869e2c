//! Booting the monitor in QEMU (TCG, `-machine q35`) and collecting what it
//! says: COM1 (text console) from QEMU's stdout, COM2 (defmt frames) from a
//! file tailed while QEMU runs, and the outcome from `isa-debug-exit`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Any other QEMU status (QEMU itself failed).
    QemuError(i32),
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
            Outcome::QemuError(_) => "qemu-error",
        }
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
        if !self
            .extra_args
            .iter()
            .any(|a| a.starts_with("-nic") || a.starts_with("-netdev"))
        {
            c.args(["-nic", "none"]);
        }
        c.args(&self.extra_args);
        c
    }

    /// Boots, waits for the monitor to end (or the timeout), and collects.
    pub fn run(&self) -> Result<RunResult> {
        let table = LogTable::load(self.elf())?;
        let dir = paths::xtask_dir().join("qemu");
        std::fs::create_dir_all(&dir)?;
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let log_file = dir.join(format!("com2-{}-{n}.bin", std::process::id()));
        std::fs::write(&log_file, b"")?;
        let mut command = self.command(&log_file);
        let shown = cmd::display(&command);
        if self.echo {
            eprintln!("$ {shown}");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start QEMU: `{shown}`"))?;

        let console = Arc::new(Mutex::new(String::new()));
        let banner = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().context("QEMU stdout")?;
        let echo = self.echo;
        let console_reader = {
            let (console, banner) = (Arc::clone(&console), Arc::clone(&banner));
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).split(b'\n') {
                    let Ok(line) = line else { break };
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string();
                    let mut b = banner.lock().unwrap_or_else(|e| e.into_inner());
                    if b.is_none() && text.contains("gmig-rs") {
                        *b = Some(start.elapsed());
                    }
                    drop(b);
                    if echo {
                        println!("{text}");
                    }
                    let mut c = console.lock().unwrap_or_else(|e| e.into_inner());
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
        let done = AtomicBool::new(false);
        let (log, malformed, status) = std::thread::scope(|scope| -> Result<_> {
            let tail = scope.spawn(|| {
                let mut stream = table.stream();
                let mut lines = Vec::new();
                let mut offset = 0usize;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    if let Ok(bytes) = std::fs::read(&log_file) {
                        if bytes.len() > offset {
                            for line in stream.feed(&bytes[offset..]) {
                                // Dirty-trace records go to a file, not the screen.
                                if echo && !line.message.starts_with("trace ") {
                                    println!("{line}");
                                }
                                lines.push(line);
                            }
                            offset = bytes.len();
                        }
                    }
                    if finished {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (lines, stream.malformed)
            });
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break Some(status);
                }
                if start.elapsed() > self.timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            done.store(true, Ordering::Release);
            let (lines, malformed) = tail
                .join()
                .map_err(|_| anyhow::anyhow!("log thread panicked"))?;
            Ok((lines, malformed, status))
        })?;
        let wall = start.elapsed();
        let _ = console_reader.join();
        let qemu_stderr = stderr_reader.join().unwrap_or_default();
        let _ = std::fs::remove_file(&log_file);
        let outcome = match status {
            Some(s) => Outcome::from_status(s.code()),
            None => Outcome::Timeout,
        };
        let console = std::mem::take(&mut *console.lock().unwrap_or_else(|e| e.into_inner()));
        let to_banner = *banner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(RunResult {
            outcome,
            console,
            log,
            malformed_frames: malformed,
            qemu_stderr,
            wall,
            to_banner,
            command: shown,
        })
    }
}
