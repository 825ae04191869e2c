//! Where things are, from any working directory.

use std::path::PathBuf;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root().join("target"),
    }
}

/// Where xtask writes its outputs: reports, logs, the ISO.
pub fn xtask_dir() -> PathBuf {
    target_dir().join("xtask")
}

/// The monitor's ELF image after `build::kernel`.
pub fn kernel_elf() -> PathBuf {
    target_dir()
        .join("x86_64-unknown-none")
        .join("release")
        .join("gmig")
}

/// The target directory of the guest images' build (`build::guest_images`;
/// the monitor's build script finds it next to its own target directory).
pub fn guest_images_target() -> PathBuf {
    target_dir().join("guest-images")
}

/// Where the guest images' ELF files are after `build::guest_images`.
pub fn guest_images_dir() -> PathBuf {
    guest_images_target()
        .join("x86_64-unknown-none")
        .join("release")
}

/// The GRUB rescue ISO after `image`.
pub fn iso() -> PathBuf {
    xtask_dir().join("gmig.iso")
}
