//! `cargo xtask build`: the monitor image for `x86_64-unknown-none`.

use std::path::PathBuf;

use anyhow::Result;

use crate::{cmd, deps, paths};

/// Builds the monitor (release: boot and self-tests are timed) and returns
/// the ELF path.
pub fn kernel() -> Result<PathBuf> {
    deps::ensure_kernel_target()?;
    cmd::run(cmd::cargo().args([
        "build",
        "--quiet",
        "--package",
        "kernel",
        "--target",
        "x86_64-unknown-none",
        "--release",
    ]))?;
    Ok(paths::kernel_elf())
}
