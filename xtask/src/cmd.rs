//! Running external commands: each is printed before it runs, so a user can
//! repeat any step by hand.

use std::process::{Command, ExitStatus};

use anyhow::{bail, Context, Result};

/// The command line as a shell would show it, with the environment
/// variables set on it first.
/// `shown` (a command as [`display`] writes it) with the value of every
/// `migrate_key=` replaced by `<redacted>`: reports are files a user shares,
/// and the run's stream key would let anyone on the link forge records.
pub fn redact_secrets(shown: &str) -> String {
    const KEY: &str = "migrate_key=";
    let mut out = String::with_capacity(shown.len());
    let mut rest = shown;
    while let Some(at) = rest.find(KEY) {
        let value = &rest[at + KEY.len()..];
        let end = value
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(value.len());
        out.push_str(&rest[..at + KEY.len()]);
        out.push_str("<redacted>");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

pub fn display(cmd: &Command) -> String {
    let mut s = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let value = value.to_string_lossy();
            if value.contains(' ') || value.is_empty() {
                s.push_str(&format!("{}='{value}' ", key.to_string_lossy()));
            } else {
                s.push_str(&format!("{}={value} ", key.to_string_lossy()));
            }
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.contains(' ') || arg.is_empty() {
            s.push_str(&format!(" '{arg}'"));
        } else {
            s.push(' ');
            s.push_str(&arg);
        }
    }
    s
}

/// Prints and runs `cmd`, failing unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed with {status}", display(cmd));
    }
    Ok(())
}

/// Prints and runs `cmd`, returning its status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    eprintln!("$ {}", display(cmd));
    cmd.status()
        .with_context(|| format!("cannot start `{}`", display(cmd)))
}

/// `cargo` as cargo itself was invoked (respects `CARGO`).
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::paths::root());
    cmd
}

#[cfg(test)]
mod redact_tests {
    use super::redact_secrets;

    #[test]
    fn every_migration_key_is_redacted_and_nothing_else_changes() {
        let shown =
            "qemu -append 'role=source migrate_key=00ff11 policy=informed' -append migrate_key=ab";
        assert_eq!(
            redact_secrets(shown),
            "qemu -append 'role=source migrate_key=<redacted> policy=informed' -append migrate_key=<redacted>"
        );
        assert_eq!(redact_secrets("qemu -m 128M"), "qemu -m 128M");
    }
}
