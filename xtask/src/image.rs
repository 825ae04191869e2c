//! `cargo xtask image`: a GRUB rescue ISO (BIOS and, where the EFI modules
//! are installed, UEFI) that boots the monitor through Multiboot2, with
//! GRUB and the monitor's console on the first serial port.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{build, cmd, deps, paths};

/// grub.cfg for a command line.
fn grub_cfg(append: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout=0\n\
         menuentry \"gmig-rs\" {{\n    multiboot2 /boot/gmig.elf {append}\n    boot\n}}\n"
    )
}

/// Builds the monitor and writes an ISO at `output` whose GRUB entry passes
/// `append` as the kernel command line. Returns the ISO and the ELF in it.
pub fn build_iso(output: &Path, append: &str) -> Result<(PathBuf, PathBuf)> {
    deps::ensure(deps::GRUB_ISO)?;
    let elf = build::kernel()?;
    let stem = output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("gmig");
    let tree = paths::xtask_dir().join(format!("{stem}-tree"));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("boot/grub"))?;
    std::fs::copy(&elf, tree.join("boot/gmig.elf"))
        .context("copying the monitor into the ISO tree")?;
    std::fs::write(tree.join("boot/grub/grub.cfg"), grub_cfg(append))?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut mkrescue = Command::new("grub-mkrescue");
    mkrescue.arg("-o").arg(output).arg(&tree);
    eprintln!("$ {}", cmd::display(&mkrescue));
    // xorriso is chatty on success; show its output only when it fails.
    let out = mkrescue.output().context("cannot start grub-mkrescue")?;
    if !out.status.success() {
        anyhow::bail!(
            "grub-mkrescue failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((output.to_path_buf(), elf))
}

/// `cargo xtask image [--append ...]`.
pub fn main(append: &str) -> Result<()> {
    let (iso, _) = build_iso(&paths::iso(), append)?;
    println!("wrote {}", iso.display());
    Ok(())
}
