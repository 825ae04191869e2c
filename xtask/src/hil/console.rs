//! A machine's two serial streams, read while it runs: COM1's text lines
//! and COM2's defmt frames (decoded with the table of the ELF that was
//! booted), each also written raw to the run's log directory. The
//! streams are opened before the machine is powered, so nothing it says
//! is missed and an unreachable console stops the run before the machine
//! is touched.
//!
//! A TCP stream that ends, or a serial device that fails, is a lost
//! console; a file (a console server's log) that stops growing is only
//! quiet: it is read on as it grows.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::target::{resolve, Endpoint};
use crate::defmt_log::{LogLine, LogTable};
use crate::qemu::Outcome;

/// The monitor's first console line (`kernel_main`).
pub const BANNER: &str = "monitor: booted via";
/// The monitor's last console line (`kernel::exit::EXIT_LINE_PREFIX`).
pub const EXIT_PREFIX: &str = "gmig-rs: exit ";

/// How long a TCP console may take to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One opened stream.
pub struct Stream {
    reader: Box<dyn Read + Send>,
    /// To end a blocking TCP read when the run is over.
    tcp: Option<TcpStream>,
    /// A plain file: EOF means "nothing yet".
    tails: bool,
    /// `console.text` or `console.log`, for messages.
    pub field: String,
    pub endpoint: Endpoint,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("field", &self.field)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Opens `endpoint` (for the target file's `field`); a TCP endpoint is
/// retried until `retry_until` (a QEMU that is still starting) if given.
pub fn open(endpoint: &Endpoint, field: &str, retry_until: Option<Instant>) -> Result<Stream> {
    match endpoint {
        Endpoint::Tcp { address } => {
            let addr = resolve(address).with_context(|| format!("`{field}`"))?;
            let stream = loop {
                match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    Ok(s) => break s,
                    Err(e) if retry_until.is_some_and(|t| Instant::now() < t) => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        bail!("`{field}`: console unreachable: cannot connect to {address}: {e}")
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let tcp = stream.try_clone().ok();
            Ok(Stream {
                reader: Box::new(stream),
                tcp,
                tails: false,
                field: field.to_string(),
                endpoint: endpoint.clone(),
            })
        }
        Endpoint::Serial { path, baud } => {
            if let Some(baud) = baud {
                set_raw(path, *baud).with_context(|| format!("`{field}`"))?;
            }
            let file = File::open(path).with_context(|| {
                format!(
                    "`{field}`: console unreachable: cannot open {}",
                    path.display()
                )
            })?;
            let tails = file.metadata().map(|m| m.is_file()).unwrap_or(false);
            Ok(Stream {
                reader: Box::new(file),
                tcp: None,
                tails,
                field: field.to_string(),
                endpoint: endpoint.clone(),
            })
        }
    }
}

/// `stty`: the device raw at `baud`, 8N1, no flow control, no echo.
fn set_raw(path: &Path, baud: u32) -> Result<()> {
    let mut stty = Command::new("stty");
    stty.arg("-F").arg(path).args([
        &baud.to_string(),
        "raw",
        "-echo",
        "cs8",
        "-cstopb",
        "-parenb",
        "-crtscts",
        "-ixon",
    ]);
    let out = stty
        .output()
        .with_context(|| format!("cannot start `{}`", crate::cmd::display(&stty)))?;
    if !out.status.success() {
        bail!(
            "console unreachable: `{}` failed: {}",
            crate::cmd::display(&stty),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// What the console readers gathered so far.
#[derive(Debug, Default)]
pub struct Capture {
    console: Mutex<String>,
    log: Mutex<Vec<LogLine>>,
    malformed: AtomicUsize,
    /// The first stream that ended, and why.
    lost: Mutex<Option<String>>,
    banner: Mutex<Option<Instant>>,
    exit: Mutex<Option<String>>,
    stop: AtomicBool,
    tcp: Mutex<Vec<TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A line of what the machine said, for the live output.
#[derive(Debug, Clone, Copy)]
pub enum Said<'a> {
    Console(&'a str),
    Log(&'a LogLine),
}

type Echo = Arc<dyn Fn(Said<'_>) + Send + Sync>;

impl Capture {
    /// Starts reading `text` (and `log`, decoded with `elf`'s table),
    /// writing the raw bytes into `dir` (console.txt, log.bin).
    pub fn start(
        text: Stream,
        log: Option<Stream>,
        elf: &Path,
        dir: &Path,
        echo: impl Fn(Said<'_>) + Send + Sync + 'static,
    ) -> Result<Arc<Capture>> {
        let capture = Arc::new(Capture::default());
        let echo: Echo = Arc::new(echo);
        let table = match &log {
            Some(_) => Some(LogTable::load(elf)?),
            None => None,
        };
        for s in [Some(&text), log.as_ref()].into_iter().flatten() {
            if let Some(t) = s.tcp.as_ref().and_then(|t| t.try_clone().ok()) {
                lock(&capture.tcp).push(t);
            }
        }
        let raw = File::create(dir.join("console.txt"))?;
        {
            let capture = Arc::clone(&capture);
            let echo = Arc::clone(&echo);
            std::thread::spawn(move || capture.read_text(text, raw, echo));
        }
        if let (Some(log), Some(table)) = (log, table) {
            let raw = File::create(dir.join("log.bin"))?;
            let capture = Arc::clone(&capture);
            std::thread::spawn(move || capture.read_log(log, raw, &table, echo));
        }
        Ok(capture)
    }

    /// Reads `stream` until it ends or the capture stops, handing each
    /// chunk to `take`.
    fn pump(&self, mut stream: Stream, mut raw: File, mut take: impl FnMut(&[u8])) {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            match stream.reader.read(&mut buf) {
                Ok(0) if stream.tails => std::thread::sleep(Duration::from_millis(50)),
                Ok(0) if self.stop.load(Ordering::Relaxed) => return,
                Ok(0) => {
                    self.lose(format!(
                        "`{}` ({}) closed after {total} bytes",
                        stream.field, stream.endpoint
                    ));
                    return;
                }
                Ok(n) => {
                    total += n;
                    let _ = raw.write_all(&buf[..n]);
                    take(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !self.stop.load(Ordering::Relaxed) {
                        self.lose(format!(
                            "`{}` ({}) failed after {total} bytes: {e}",
                            stream.field, stream.endpoint
                        ));
                    }
                    return;
                }
            }
        }
    }

    fn read_text(&self, stream: Stream, raw: File, echo: Echo) {
        let mut partial: Vec<u8> = Vec::new();
        self.pump(stream, raw, |bytes| {
            partial.extend_from_slice(bytes);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                self.take_line(&text);
                echo(Said::Console(&text));
            }
        });
    }

    fn take_line(&self, text: &str) {
        if text.contains(BANNER) {
            lock(&self.banner).get_or_insert_with(Instant::now);
        }
        if let Some(name) = text.split(EXIT_PREFIX).nth(1) {
            lock(&self.exit).get_or_insert_with(|| name.trim().to_string());
        }
        let mut c = lock(&self.console);
        c.push_str(text);
        c.push('\n');
    }

    fn read_log(&self, stream: Stream, raw: File, table: &LogTable, echo: Echo) {
        let mut decoder = table.stream();
        self.pump(stream, raw, |bytes| {
            let lines = decoder.feed(bytes);
            self.malformed.store(decoder.malformed, Ordering::Relaxed);
            for line in &lines {
                echo(Said::Log(line));
            }
            lock(&self.log).extend(lines);
        });
    }

    fn lose(&self, why: String) {
        lock(&self.lost).get_or_insert(why);
    }

    /// Ends the readers (TCP ones at once; a serial device's at its next byte).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in lock(&self.tcp).drain(..) {
            let _ = t.shutdown(Shutdown::Both);
        }
    }

    /// When the monitor's banner came.
    pub fn banner_at(&self) -> Option<Instant> {
        *lock(&self.banner)
    }

    /// The outcome the monitor's exit line names (an unknown name is a
    /// failure: the monitor and xtask disagree).
    pub fn exit(&self) -> Option<Outcome> {
        lock(&self.exit)
            .as_deref()
            .map(|name| Outcome::from_exit_name(name).unwrap_or(Outcome::Failure))
    }

    /// Why a stream ended, if one did.
    pub fn lost(&self) -> Option<String> {
        lock(&self.lost).clone()
    }

    pub fn console(&self) -> String {
        lock(&self.console).clone()
    }

    pub fn log(&self) -> Vec<LogLine> {
        lock(&self.log).clone()
    }

    pub fn malformed(&self) -> usize {
        self.malformed.load(Ordering::Relaxed)
    }

    /// The last `n` console lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// The path of a console's raw capture in a run directory.
pub fn raw_console(dir: &Path) -> PathBuf {
    dir.join("console.txt")
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn an_unreachable_console_is_named_by_its_field() {
        // A port nobody listens on: bound, then closed.
        let port = crate::pair::free_port().unwrap();
        let e = open(
            &Endpoint::Tcp {
                address: format!("127.0.0.1:{port}"),
            },
            "console.text",
            None,
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("`console.text`: console unreachable"), "{e}");
        assert!(e.contains("refused"), "{e}");
        let e = open(
            &Endpoint::Serial {
                path: "/dev/ttyUSB-none".into(),
                baud: None,
            },
            "console.log",
            None,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("`console.log`: console unreachable"),
            "{e:#}"
        );
        let e = open(
            &Endpoint::Serial {
                path: "/dev/ttyUSB-none".into(),
                baud: Some(115_200),
            },
            "console.text",
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("`console.text`"), "{e:#}");
    }

    #[test]
    fn lines_banner_exit_and_a_closed_stream_are_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let stream = open(&Endpoint::Tcp { address }, "console.text", None).unwrap();
        let (mut machine, _) = listener.accept().unwrap();
        let dir = crate::paths::xtask_dir().join("tests/hil-console");
        std::fs::create_dir_all(&dir).unwrap();
        let capture = Capture::start(stream, None, Path::new("unused"), &dir, |_| {}).unwrap();
        machine
            .write_all(b"gmig-rs 0.1.0 monitor: booted via multiboot2\r\nhalf")
            .unwrap();
        machine
            .write_all(b" a line\r\ngmig-rs: exit failure\r\n")
            .unwrap();
        drop(machine);
        let start = Instant::now();
        while capture.lost().is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(capture.banner_at().is_some());
        assert_eq!(capture.exit(), Some(Outcome::Failure));
        assert_eq!(
            capture.console(),
            "gmig-rs 0.1.0 monitor: booted via multiboot2\nhalf a line\ngmig-rs: exit failure\n"
        );
        let lost = capture.lost().unwrap();
        assert!(
            lost.contains("`console.text`") && lost.contains("closed after"),
            "{lost}"
        );
        assert_eq!(
            std::fs::read(raw_console(&dir)).unwrap().len(),
            "gmig-rs 0.1.0 monitor: booted via multiboot2\r\nhalf a line\r\ngmig-rs: exit failure\r\n".len()
        );
    }
}
