//! `cargo xtask test`: every check, in order of cost: formatting, lints
//! (host and kernel target), the kernel build, the in-kernel self-tests in
//! QEMU, then `cargo test` (host unit and property tests plus the QEMU
//! integration tests in `tests/`). Stops at the first failing step.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::qemu::{Outcome, Qemu};
use crate::{build, cmd, deps};

/// Boots `selftest=all` and checks every test passed and the summary came.
pub fn self_tests(memory_mib: u32) -> Result<(u32, Duration)> {
    let elf = build::kernel()?;
    let mut qemu = Qemu::kernel(elf, "selftest=all");
    qemu.memory_mib = memory_mib;
    qemu.timeout = Duration::from_secs(120);
    let result = qemu.run()?;
    for line in result
        .log
        .iter()
        .filter(|l| l.message.starts_with("selftest "))
    {
        println!("    {}", line.message);
    }
    let summary = result
        .messages()
        .find_map(|m| m.strip_prefix("selftest summary: "))
        .and_then(|s| {
            let mut nums = s
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty());
            Some((
                nums.next()?.parse::<u32>().ok()?,
                nums.next()?.parse::<u32>().ok()?,
            ))
        });
    match (result.outcome, summary) {
        (Outcome::Success, Some((passed, 0))) if passed > 0 => Ok((passed, result.wall)),
        (_, None) => bail!("self-tests gave no summary\n{}", result.transcript()),
        _ => bail!("self-tests failed\n{}", result.transcript()),
    }
}

/// Runs every step.
pub fn main() -> Result<()> {
    let start = Instant::now();
    let mut passed = 0;
    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        println!("==> {name}");
        let t = Instant::now();
        match f() {
            Ok(()) => {
                passed += 1;
                println!("    ok ({:.1} s)", t.elapsed().as_secs_f64());
                Ok(())
            }
            Err(e) => {
                println!("    FAILED: {e:#}");
                println!("summary: {passed} passed, 1 failed");
                Err(e)
            }
        }
    };
    step("rustfmt", &mut || {
        cmd::run(cmd::cargo().args(["fmt", "--all", "--check"]))
    })?;
    step("clippy (host crates)", &mut || {
        cmd::run(cmd::cargo().args(["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"]))
    })?;
    step("clippy (monitor, x86_64-unknown-none)", &mut || {
        // The monitor's build script needs the images it embeds.
        build::guest_images()?;
        cmd::run(build::guest_cargo().args([
            "clippy",
            "--quiet",
            "--package",
            "guest-images",
            "--target",
            "x86_64-unknown-none",
            "--release",
            "--",
            "-D",
            "warnings",
        ]))?;
        cmd::run(cmd::cargo().args([
            "clippy",
            "--quiet",
            "--package",
            "kernel",
            "--package",
            "boot",
            "--target",
            "x86_64-unknown-none",
            "--release",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("kernel build", &mut || build::kernel().map(|_| ()))?;
    step("host tools (QEMU, GRUB)", &mut || {
        deps::ensure(deps::QEMU)?;
        deps::ensure(deps::GRUB_ISO)
    })?;
    step("in-kernel self-tests (QEMU, 128 MiB)", &mut || {
        let (n, wall) = self_tests(128)?;
        println!("    {n} self-tests passed in {:.1} s", wall.as_secs_f64());
        Ok(())
    })?;
    step(
        "cargo test (host unit/property tests, QEMU integration tests)",
        &mut || cmd::run(cmd::cargo().args(["test", "--quiet"])),
    )?;
    println!(
        "all checks passed in {:.0} s\nsummary: {passed} passed, 0 failed",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
