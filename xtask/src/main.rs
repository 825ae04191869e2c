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
    /// Boot the monitor in QEMU (TCG, q35) and write target/xtask/run-report.json.
    Run {
        /// Guest RAM in MiB.
        #[arg(long, default_value_t = 128)]
        memory: u32,
        /// Kernel command line (e.g. "selftest=all").
        #[arg(long, default_value = "")]
        append: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Boot through GRUB from the ISO instead of QEMU's -kernel.
        #[arg(long)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build => xtask::build::kernel().map(|elf| {
            println!("built {}", elf.display());
            0
        }),
        Command::Run {
            memory,
            append,
            timeout,
            iso,
        } => xtask::run::main(&xtask::run::RunOptions {
            memory_mib: memory,
            append,
            timeout: Duration::from_secs(timeout),
            iso,
        }),
        Command::Test => xtask::test::main().map(|()| 0),
        Command::Bench { quick } => xtask::bench::main(quick).map(|()| 0),
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
