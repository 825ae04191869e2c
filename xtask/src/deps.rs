//! Tools cargo cannot install: the Rust target (rustup), QEMU and the GRUB
//! ISO tools (Debian/Ubuntu packages). Installed when running as root,
//! otherwise the exact command to run is printed and xtask stops.

use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd;

/// A host tool and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub binary: &'static str,
    pub package: &'static str,
}

/// QEMU for `run` and the integration tests.
pub const QEMU: &[Tool] = &[Tool {
    binary: "qemu-system-x86_64",
    package: "qemu-system-x86",
}];

/// What `grub-mkrescue` needs to make a BIOS-bootable ISO.
pub const GRUB_ISO: &[Tool] = &[
    Tool {
        binary: "grub-mkrescue",
        package: "grub-common",
    },
    Tool {
        binary: "xorriso",
        package: "xorriso",
    },
    Tool {
        binary: "mformat",
        package: "mtools",
    },
];

/// grub-mkrescue and grub-mkimage need the i386-pc modules, which have no binary to look for.
const GRUB_PC_MODULES: &str = "/usr/lib/grub/i386-pc";
const GRUB_PC_PACKAGE: &str = "grub-pc-bin";

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Makes sure every tool is there, installing missing packages as root.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|t| !on_path(t.binary))
        .map(|t| t.package)
        .collect();
    // grub-mkrescue (the ISO) and grub-mkimage (the netboot image) both
    // build i386-pc images.
    if tools
        .iter()
        .any(|t| t.binary == "grub-mkrescue" || t.binary == "grub-mkimage")
        && !std::path::Path::new(GRUB_PC_MODULES).is_dir()
    {
        missing.push(GRUB_PC_PACKAGE);
    }
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = missing.join(" ");
    if !is_root() {
        bail!(
            "missing host packages: {packages}\nrun this, then try again:\n    sudo apt-get update && sudo apt-get install -y {packages}"
        );
    }
    eprintln!("xtask: installing {packages}");
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Makes sure rustup has the kernel's target.
pub fn ensure_kernel_target() -> Result<()> {
    let sysroot = Command::new("rustc")
        .arg("--print")
        .arg("sysroot")
        .current_dir(crate::paths::root())
        .output();
    if let Ok(out) = sysroot {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if std::path::Path::new(&path)
            .join("lib/rustlib/x86_64-unknown-none")
            .is_dir()
        {
            return Ok(());
        }
    }
    cmd::run(
        Command::new("rustup")
            .args(["target", "add", "x86_64-unknown-none"])
            .current_dir(crate::paths::root()),
    )
}
