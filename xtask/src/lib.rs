//! The gmig-rs developer tool behind `cargo xtask`: one
//! module per subcommand plus the shared pieces the integration tests in
//! `tests/` use too (building the kernel, booting it in QEMU, decoding its
//! defmt log).

pub mod bench;
pub mod build;
pub mod cmd;
pub mod compare_qemu;
pub mod defmt_log;
pub mod deps;
pub mod hil;
pub mod image;
pub mod migrate_run;
pub mod migration_report;
pub mod netbench;
pub mod pair;
pub mod paths;
pub mod qemu;
pub mod qmp;
pub mod reference;
pub mod report;
pub mod run;
pub mod status_line;
pub mod test;
