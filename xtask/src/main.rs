//! `cargo xtask <command>`: see `cargo xtask --help` and the README.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run and test the gmig-rs monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the monitor image (target/x86_64-unknown-none/release/gmig).
    Build,
    /// Live-migrate a guest between two monitors in two QEMUs (or, with
    /// --local, boot one monitor) and write target/xtask/run-report.json.
    Run {
        /// One QEMU on the embedded defaults (role=local: guests and a
        /// migration inside one monitor), as before the network.
        #[arg(long)]
        local: bool,
        /// NIC of both monitors: virtio or e1000e.
        #[arg(long, default_value = "virtio", value_parser = parse_nic, conflicts_with = "local")]
        nic: xtask::pair::Nic,
        /// Migration policy (stop-and-copy, precopy, gmig-oneshot, gmig-tpds,
        /// informed, informed-throttle), or `all`: one migration per policy
        /// to the same destination. Default: the monitor's (informed).
        #[arg(long, value_parser = parse_policy)]
        policy: Option<xtask::migrate_run::PolicyChoice>,
        /// Guest 0's workload: 3d, 3d-ppgtt, desktop or video (default 3d).
        #[arg(long, value_parser = parse_workload)]
        workload: Option<xtask::migrate_run::Workload>,
        /// Guest 0's memory in MiB, all of it its GPU working set (4..256, default 64).
        #[arg(long, value_parser = clap::value_parser!(u32).range(4..=256))]
        guest_mib: Option<u32>,
        /// Cap on the migration stream, MiB/s (migrate_mbps=; QEMU's
        /// max-bandwidth meaning). Default: no cap.
        #[arg(long, value_name = "MIB/S", conflicts_with = "local")]
        bandwidth: Option<u32>,
        /// Encrypt the migration stream too (migrate_encrypt=on).
        #[arg(long, conflicts_with = "local")]
        encrypt: bool,
        /// Then migrate the same guests with QEMU's own live migration
        /// (plain and XBZRLE, same cap) and show both.
        #[arg(long, conflicts_with = "local")]
        compare_qemu: bool,
        /// Show every log line of both monitors (default: warnings, errors,
        /// report and migration lines).
        #[arg(long)]
        verbose: bool,
        /// RAM of each QEMU in MiB (default: 128 with --local, else
        /// 256 + 3 x guest MiB).
        #[arg(long)]
        memory: Option<u32>,
        /// More kernel command line, for both monitors (e.g. "frames_after=40").
        #[arg(long, default_value = "")]
        append: String,
        /// Give up after this many seconds (default: 120 with --local, 300,
        /// or 1200 with --policy all).
        #[arg(long)]
        timeout: Option<u64>,
        /// Boot through GRUB from the ISO instead of QEMU's -kernel.
        #[arg(long, requires = "local")]
        iso: bool,
    },
    /// Every test: fmt, clippy, kernel build, in-kernel self-tests, cargo test.
    Test,
    /// Benchmarks as ratios against same-run references: target/xtask/bench.json.
    Bench {
        /// Short runs (for a quick look; figures are noisier).
        #[arg(long)]
        quick: bool,
    },
    /// Decode a captured COM2 log (defmt frames) with the monitor image
    /// that wrote it (default: the one `cargo xtask build` makes).
    Log {
        /// The captured bytes (e.g. `cat /dev/ttyUSB1 > log.bin` on the
        /// machine's second serial port).
        file: std::path::PathBuf,
        /// The monitor ELF that produced it.
        #[arg(long)]
        elf: Option<std::path::PathBuf>,
    },
    /// Raw TCP throughput between two monitors on a QEMU socket link.
    Netbench {
        /// NIC both monitors drive: virtio or e1000e.
        #[arg(long, default_value = "virtio", value_parser = parse_nic)]
        nic: xtask::pair::Nic,
        /// MiB to send.
        #[arg(long, default_value_t = 64)]
        mib: u32,
        /// KiB of each TCP socket buffer in both monitors (tcp_buffer_kib=).
        #[arg(long)]
        tcp_buffer_kib: Option<u32>,
        /// IP MTU of both monitors (mtu=; default 8000, jumbo frames).
        #[arg(long)]
        mtu: Option<u16>,
        /// Guest RAM of each QEMU, in MiB.
        #[arg(long, default_value_t = 128)]
        memory: u32,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Boot the monitor on a machine (or a QEMU playing one) described by a
    /// target file, and write the same report as `run` plus the machine's
    /// identity; logs in target/xtask/hil/<time>-<name>/.
    Hil {
        /// The target file (TOML; see tests/hil/ and the README).
        #[arg(long)]
        target: std::path::PathBuf,
        /// What the monitor runs: selftests, guests or migration.
        #[arg(long, default_value = "selftests", value_parser = ["selftests", "guests", "migration"])]
        mode: String,
        /// The destination's target file (mode migration).
        #[arg(long)]
        peer: Option<std::path::PathBuf>,
        /// One self-test by name instead of all (mode selftests).
        #[arg(long, default_value = "all")]
        selftest: String,
        /// More kernel command line, after the target file's `append`.
        #[arg(long, default_value = "")]
        append: String,
        /// Show every log line (default: warnings, errors, reports, self-tests).
        #[arg(long)]
        verbose: bool,
    },
    /// Write a GRUB rescue ISO to target/xtask/gmig.iso.
    Image {
        /// Kernel command line baked into grub.cfg.
        #[arg(long, default_value = "")]
        append: String,
    },
}

fn parse_nic(name: &str) -> Result<xtask::pair::Nic, String> {
    xtask::pair::Nic::from_name(name).ok_or_else(|| format!("`{name}`: expected virtio or e1000e"))
}

fn parse_policy(name: &str) -> Result<xtask::migrate_run::PolicyChoice, String> {
    xtask::migrate_run::PolicyChoice::from_name(name).ok_or_else(|| {
        format!(
            "`{name}`: expected all or one of {}",
            migrate::POLICY_NAMES.join(", ")
        )
    })
}

fn parse_workload(name: &str) -> Result<xtask::migrate_run::Workload, String> {
    xtask::migrate_run::Workload::from_name(name)
        .ok_or_else(|| format!("`{name}`: expected 3d, 3d-ppgtt, desktop or video"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build => xtask::build::kernel().map(|elf| {
            println!("built {}", elf.display());
            0
        }),
        Command::Run {
            local,
            nic,
            policy,
            workload,
            guest_mib,
            bandwidth,
            encrypt,
            compare_qemu,
            verbose,
            memory,
            append,
            timeout,
            iso,
        } => xtask::run::main(&xtask::run::RunOptions {
            local,
            memory_mib: memory,
            append,
            timeout: timeout.map(Duration::from_secs),
            iso,
            nic,
            policy,
            workload,
            guest_mib,
            bandwidth_mibps: bandwidth,
            encrypt,
            compare_qemu,
            verbose,
        }),
        Command::Test => xtask::test::main().map(|()| 0),
        Command::Log { file, elf } => {
            xtask::defmt_log::print_file(&file, elf.as_deref()).map(|()| 0)
        }
        Command::Bench { quick } => xtask::bench::main(quick).map(|()| 0),
        Command::Hil {
            target,
            mode,
            peer,
            selftest,
            append,
            verbose,
        } => xtask::hil::main(&xtask::hil::HilOptions {
            target,
            peer,
            mode: match mode.as_str() {
                "guests" => xtask::hil::Mode::Guests,
                "migration" => xtask::hil::Mode::Migration,
                _ => xtask::hil::Mode::SelfTests(selftest),
            },
            append,
            elf: None,
            echo: true,
            verbose,
        }),
        Command::Image { append } => xtask::image::main(&append).map(|()| 0),
        Command::Netbench {
            nic,
            mib,
            tcp_buffer_kib,
            mtu,
            memory,
            timeout,
        } => xtask::netbench::main(&xtask::netbench::NetBenchOptions {
            nic,
            mib,
            tcp_buffer_kib,
            mtu,
            memory_mib: memory,
            timeout: Duration::from_secs(timeout),
            echo: true,
        }),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
