//! Power-cycling a real machine: the target file's command (an IPMI call,
//! a smart plug's HTTP API, a relay board), run through `sh -c` with a
//! time limit, its output kept in the run's log directory; or, without
//! one, the user at the terminal. A command that fails stops the run with
//! its status and output, naming the step.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Runs the power command `command` (the target file's `field`), killing
/// it after `timeout`; its output is appended to `log`.
pub fn run(command: &str, field: &str, timeout: Duration, log: &Path) -> Result<()> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("`{field}`: cannot start `sh -c {command:?}`"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(file, "$ {command}\n{stdout}{stderr}--- {status:?}")?;
    let output = || {
        let text = format!("{stdout}{stderr}");
        if text.trim().is_empty() {
            String::new()
        } else {
            format!(":\n{}", text.trim_end())
        }
    };
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!(
            "`{field}`: power command `{command}` failed ({s}){}",
            output()
        ),
        None => bail!(
            "`{field}`: power command `{command}` still running after {timeout:?}, killed{}",
            output()
        ),
    }
}

/// Power-cycles the machine `name`: with `command`, or by asking the user
/// on the terminal (an error when there is none, e.g. under CI).
pub fn cycle(name: &str, command: Option<&str>, timeout: Duration, log: &Path) -> Result<()> {
    match command {
        Some(c) => run(c, "power.cycle", timeout, log),
        None => ask(
            &format!("power-cycle {name} now (or power it on), then press Enter"),
            std::io::stdin().is_terminal(),
            &mut std::io::stdin().lock(),
        ),
    }
}

fn ask(what: &str, terminal: bool, input: &mut impl BufRead) -> Result<()> {
    if !terminal {
        bail!("`power.cycle` is not set and there is no terminal to ask on: give the target file a power command");
    }
    eprint!("xtask hil: {what} ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the answer on the terminal")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> std::path::PathBuf {
        let dir = crate::paths::xtask_dir().join("tests/hil-power");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("power-{}.txt", std::process::id()))
    }

    #[test]
    fn a_failing_power_command_names_the_step_status_and_output() {
        let e = run(
            "echo 'ipmi: connection timed out' >&2; exit 3",
            "power.cycle",
            Duration::from_secs(10),
            &log(),
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("`power.cycle`: power command"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("ipmi: connection timed out"), "{e}");
        run("true", "power.cycle", Duration::from_secs(10), &log()).unwrap();
        let e = run("sleep 5", "power.off", Duration::from_millis(200), &log()).unwrap_err();
        assert!(format!("{e:#}").contains("`power.off`") && format!("{e:#}").contains("killed"));
        assert!(std::fs::read_to_string(log()).unwrap().contains("$ true"));
    }

    #[test]
    fn without_a_command_the_user_is_asked_only_on_a_terminal() {
        let e = ask("power-cycle", false, &mut &b"\n"[..]).unwrap_err();
        assert!(format!("{e}").contains("`power.cycle` is not set"), "{e}");
        ask("power-cycle", true, &mut &b"\n"[..]).unwrap();
    }
}
