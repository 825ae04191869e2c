//! `cargo xtask build`: the ring-3 guest images, then the monitor image
//! that embeds them, for `x86_64-unknown-none`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::{cmd, deps, paths};

/// How the guest images are compiled: position-independent code (the
/// monitor's `-C relocation-model=static` in `.cargo/config.toml` would
/// need its code in the top 2 GiB, where the kernel code model of this
/// target puts absolute addresses), linked as a plain executable at the
/// fixed address of `guest::abi` by their build script. These flags
/// replace the config's for this build only, so the images have a target
/// directory of their own ([`paths::guest_images_dir`]) and the monitor's
/// artifacts are not rebuilt back and forth.
pub const GUEST_RUSTFLAGS: &str = "-C relocation-model=pic -C force-frame-pointers=yes";

/// `cargo` set up for the guest images: their flags and target directory.
pub fn guest_cargo() -> Command {
    let mut cargo = cmd::cargo();
    cargo
        .env("RUSTFLAGS", GUEST_RUSTFLAGS)
        .env("CARGO_TARGET_DIR", paths::guest_images_target());
    cargo
}

/// Builds the guest images (`guest/images`: `gmig-guest-workload`,
/// `gmig-guest-probe`) where the monitor's build script looks for them.
pub fn guest_images() -> Result<PathBuf> {
    deps::ensure_kernel_target()?;
    cmd::run(guest_cargo().args([
        "build",
        "--quiet",
        "--package",
        "guest-images",
        "--target",
        "x86_64-unknown-none",
        "--release",
    ]))?;
    Ok(paths::guest_images_dir())
}

/// Builds the guest images and the monitor (release: boot and self-tests
/// are timed) and returns the monitor's ELF path.
pub fn kernel() -> Result<PathBuf> {
    guest_images()?;
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
