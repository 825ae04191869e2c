//! The gmig-rs developer tool behind `cargo xtask` (STYLE.md 10): one
//! module per subcommand plus the shared pieces the integration tests in
//! `tests/` use too (building the kernel, booting it in QEMU, decoding its
//! defmt log).

pub mod bench;
pub mod build;
pub mod cmd;
pub mod defmt_log;
pub mod deps;
pub mod image;
pub mod netbench;
pub mod pair;
pub mod paths;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod run;
pub mod test;
