//! A small QMP client (QEMU Machine Protocol: newline-delimited JSON over
//! a socket) for driving QEMU's own live migration, the reference that
//! `cargo xtask run --compare-qemu` measures the monitor against.
//!
//! Protocol facts (QEMU `docs/interop/qmp-spec`): the server greets with
//! `{"QMP": {...}}`; the client must send `qmp_capabilities` before any
//! other command; each command gets one `{"return": ...}` or
//! `{"error": {"class", "desc"}}`; asynchronous `{"event": ...}` messages
//! may come in between and are skipped here.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// A QMP session.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to the QMP socket at `path` (retrying until QEMU has
    /// created it, for up to `wait`), reads the greeting and negotiates
    /// capabilities.
    pub fn connect(path: &Path, wait: Duration) -> Result<Qmp> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < wait => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e).with_context(|| format!("QMP socket {}", path.display())),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("QMP: expected a greeting, got {greeting}");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).context("QMP read")?;
            if n == 0 {
                bail!("QMP: QEMU closed the connection");
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(line.trim())
                .with_context(|| format!("QMP: bad JSON {line:?}"));
        }
    }

    /// Runs `command` with `arguments`; returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .context("QMP write")?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                let class = e.get("class").and_then(Value::as_str).unwrap_or("?");
                let desc = e.get("desc").and_then(Value::as_str).unwrap_or("?");
                bail!("QMP {command}: {class}: {desc}");
            }
            bail!("QMP {command}: unexpected reply {reply}");
        }
    }
}

/// QEMU's own figures for one migration (`query-migrate`).
#[derive(Debug, Clone, PartialEq)]
pub struct QemuMigration {
    /// `completed`, `failed`, `cancelled`, or a state it was left in.
    pub status: String,
    /// Whole migration, ms.
    pub total_ms: Option<u64>,
    /// Guest stopped, ms.
    pub downtime_ms: Option<u64>,
    /// Set-up, ms.
    pub setup_ms: Option<u64>,
    /// RAM bytes sent.
    pub bytes: Option<u64>,
    /// Of those, bytes sent while the guest was stopped.
    pub downtime_bytes: Option<u64>,
    /// Dirty-bitmap syncs (QEMU's rounds).
    pub rounds: Option<u64>,
    /// Pages sent whole, and found to be one repeated byte.
    pub pages_normal: Option<u64>,
    /// Zero (duplicate) pages.
    pub pages_zero: Option<u64>,
    /// Pages sent as XBZRLE deltas.
    pub pages_delta: Option<u64>,
    /// Throughput QEMU reports, Mbit/s.
    pub throughput_mbps: Option<f64>,
}

impl QemuMigration {
    /// Reads `query-migrate`'s return value.
    pub fn parse(v: &Value) -> Result<QemuMigration> {
        let status = v
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("query-migrate without a status: {v}"))?
            .to_string();
        let num = |p: &[&str]| {
            let mut at = v;
            for k in p {
                at = at.get(*k)?;
            }
            at.as_u64()
        };
        Ok(QemuMigration {
            status,
            total_ms: num(&["total-time"]),
            downtime_ms: num(&["downtime"]),
            setup_ms: num(&["setup-time"]),
            bytes: num(&["ram", "transferred"]),
            downtime_bytes: num(&["ram", "downtime-bytes"]),
            rounds: num(&["ram", "dirty-sync-count"]),
            pages_normal: num(&["ram", "normal"]),
            pages_zero: num(&["ram", "duplicate"]),
            pages_delta: num(&["xbzrle-cache", "pages"]),
            throughput_mbps: v
                .get("ram")
                .and_then(|r| r.get("mbps"))
                .and_then(Value::as_f64),
        })
    }

    /// Whether QEMU is done with it, one way or the other.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// Sets up and starts a migration to `uri` at `max_bandwidth` bytes/s,
/// with XBZRLE (and its cache of `xbzrle_cache` bytes) when asked; then
/// polls until QEMU finishes or `timeout` passes.
pub fn migrate(
    qmp: &mut Qmp,
    uri: &str,
    max_bandwidth: u64,
    xbzrle: Option<u64>,
    timeout: Duration,
) -> Result<QemuMigration> {
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({ "capabilities": [
            { "capability": "xbzrle", "state": xbzrle.is_some() }
        ]})),
    )?;
    let mut params = json!({ "max-bandwidth": max_bandwidth });
    if let Some(cache) = xbzrle {
        params["xbzrle-cache-size"] = json!(cache);
    }
    qmp.execute("migrate-set-parameters", Some(params))?;
    qmp.execute("migrate", Some(json!({ "uri": uri })))?;
    let start = Instant::now();
    loop {
        let m = QemuMigration::parse(&qmp.execute("query-migrate", None)?)?;
        if m.finished() {
            return Ok(m);
        }
        if start.elapsed() > timeout {
            let _ = qmp.execute("migrate_cancel", None);
            return Ok(QemuMigration {
                status: format!("timeout ({})", m.status),
                ..m
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A QMP server that greets, then answers each command from `replies`
    /// (sending an event first, as QEMU may), recording what it got.
    fn serve(path: &Path, replies: Vec<Value>) -> std::thread::JoinHandle<Vec<Value>> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut got = Vec::new();
            for reply in std::iter::once(json!({"return": {}})).chain(replies) {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                got.push(serde_json::from_str(&line).unwrap());
                writeln!(w, r#"{{"event": "SOMETHING", "data": {{}}}}"#).unwrap();
                writeln!(w, "{reply}\r").unwrap();
            }
            got
        })
    }

    #[test]
    fn a_migration_is_set_up_started_and_polled_to_completion() {
        let dir = std::env::temp_dir().join(format!("qmp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let done = json!({"return": {
            "status": "completed", "total-time": 4012, "downtime": 3, "setup-time": 1,
            "ram": {"transferred": 12345, "dirty-sync-count": 7, "normal": 100,
                    "duplicate": 50, "mbps": 268.4},
            "xbzrle-cache": {"pages": 42}
        }});
        let server = serve(
            &path,
            vec![
                json!({"return": {}}),
                json!({"return": {}}),
                json!({"return": {}}),
                json!({"return": {"status": "active"}}),
                done,
            ],
        );
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let m = migrate(
            &mut qmp,
            "tcp:127.0.0.1:1",
            32 << 20,
            Some(64 << 20),
            Duration::from_secs(10),
        )
        .unwrap();
        drop(qmp);
        let got = server.join().unwrap();
        assert_eq!(got[0]["execute"], "qmp_capabilities");
        assert_eq!(got[1]["arguments"]["capabilities"][0]["state"], true);
        assert_eq!(got[2]["arguments"]["max-bandwidth"], 32 << 20);
        assert_eq!(got[3]["arguments"]["uri"], "tcp:127.0.0.1:1");
        assert_eq!(m.status, "completed");
        assert_eq!(m.downtime_ms, Some(3));
        assert_eq!(m.total_ms, Some(4012));
        assert_eq!(m.bytes, Some(12345));
        assert_eq!(m.pages_delta, Some(42));
        assert_eq!(m.rounds, Some(7));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_error_reply_names_the_command_and_qemus_words() {
        let dir = std::env::temp_dir().join(format!("qmp-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let server = serve(
            &path,
            vec![json!({"error": {"class": "GenericError", "desc": "no such thing"}})],
        );
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let e = qmp.execute("migrate", None).unwrap_err().to_string();
        assert!(e.contains("migrate") && e.contains("no such thing"), "{e}");
        drop(qmp);
        let _ = server.join();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
