//! Links the monitor with the workspace linker script and defmt's script,
//! and points it at the ring-3 guest images it embeds.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    guest_images();
}

/// The guest images are built first by `cargo xtask build` into
/// `<target>/guest-images/x86_64-unknown-none/release/` (their own target
/// directory: they are compiled with other flags, see xtask/src/build.rs);
/// `<target>` is found from this build's OUT_DIR
/// (`<target>/x86_64-unknown-none/<profile>/build/kernel-*/out`).
fn guest_images() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out
        .ancestors()
        .nth(5)
        .expect("OUT_DIR is <target>/<triple>/<profile>/build/<pkg>/out");
    let dir = target.join("guest-images/x86_64-unknown-none/release");
    for name in ["gmig-guest-workload", "gmig-guest-probe"] {
        let elf = dir.join(name);
        if !elf.exists() {
            panic!(
                "the guest image {} is missing: build with `cargo xtask build`, which builds \
                 the guest images (guest/images) before the monitor",
                elf.display()
            );
        }
        println!("cargo:rerun-if-changed={}", elf.display());
    }
    println!("cargo:rustc-env=GMIG_GUEST_IMAGES={}", dir.display());
}
