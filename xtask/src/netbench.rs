//! `cargo xtask netbench`: two monitors linked by QEMU socket networking
//! ([`crate::pair`]) move N MiB over raw TCP (`net_bench=`): the connector
//! sends a known pattern, the listener checks every byte. Prints both
//! sides' throughput; exits 0 when both verified the transfer.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::pair::{Nic, Pair, PairResult};
use crate::qemu::{Outcome, RunResult};
use crate::{build, deps, report};

/// Options of `cargo xtask netbench`.
#[derive(Debug, Clone)]
pub struct NetBenchOptions {
    pub nic: Nic,
    pub mib: u32,
    /// `tcp_buffer_kib=` for both monitors (the monitor's default if None).
    pub tcp_buffer_kib: Option<u32>,
    /// `mtu=` for both monitors ([`crate::pair::LINK_MTU`] if None).
    pub mtu: Option<u16>,
    pub memory_mib: u32,
    pub timeout: Duration,
    pub echo: bool,
}

/// One side's `report net_bench` figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchFigures {
    /// "send" or "receive".
    pub role: String,
    pub nic: String,
    pub bytes: u64,
    pub micros: u64,
    /// 10^6 bits per second.
    pub mbps: f64,
    pub verified: bool,
}

/// The `report net_bench ...` line of a run, if it printed one.
pub fn figures(result: &RunResult) -> Option<BenchFigures> {
    let fields = report::report_records(result, "net_bench").next()?;
    let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    Some(BenchFigures {
        role: get("role")?.to_string(),
        nic: get("nic")?.to_string(),
        bytes: get("bytes")?.parse().ok()?,
        micros: get("micros")?.parse().ok()?,
        mbps: get("mbps")?.parse().ok()?,
        verified: get("verified")? == "true",
    })
}

/// Runs the transfer on a fresh pair; the figures of (sender, receiver).
pub fn measure(opts: &NetBenchOptions) -> Result<(PairResult, BenchFigures, BenchFigures)> {
    deps::ensure(deps::QEMU)?;
    let elf = build::kernel()?;
    let mut bench = format!("net_bench={}", opts.mib);
    if let Some(kib) = opts.tcp_buffer_kib {
        bench.push_str(&format!(" tcp_buffer_kib={kib}"));
    }
    let mut pair = Pair::new(elf, opts.nic, &bench, &bench);
    if let Some(mtu) = opts.mtu {
        pair.mtu = mtu;
    }
    for q in [&mut pair.listener, &mut pair.connector] {
        q.memory_mib = opts.memory_mib;
        q.timeout = opts.timeout;
        q.echo = opts.echo;
    }
    let result = pair.run()?;
    let both_ok =
        result.listener.outcome == Outcome::Success && result.connector.outcome == Outcome::Success;
    match (
        both_ok,
        figures(&result.connector),
        figures(&result.listener),
    ) {
        (true, Some(send), Some(receive)) if send.verified && receive.verified => {
            Ok((result, send, receive))
        }
        _ => bail!("the network benchmark failed\n{}", result.transcript()),
    }
}

/// MiB moved per second of CPU time of both QEMUs together (boot
/// included): how much work a byte costs, which the host's other load
/// does not change the way it changes the wall-clock rate.
pub fn mib_per_cpu_second(result: &PairResult, bytes: u64) -> Option<f64> {
    let cpu = result.listener.cpu? + result.connector.cpu?;
    (!cpu.is_zero()).then(|| (bytes as f64 / f64::from(1 << 20)) / cpu.as_secs_f64())
}

/// Runs and returns the process exit code.
pub fn main(opts: &NetBenchOptions) -> Result<i32> {
    let (result, send, receive) = measure(opts)?;
    println!();
    let per_cpu = mib_per_cpu_second(&result, send.bytes)
        .map(|r| format!(", {r:.1} MiB per CPU second of both QEMUs"))
        .unwrap_or_default();
    println!(
        "netbench over {}: {} MiB; sender {:.1} Mbit/s end to end ({} ms), receiver {:.1} Mbit/s{per_cpu}, every byte verified",
        send.nic,
        send.bytes >> 20,
        send.mbps,
        send.micros / 1000,
        receive.mbps
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::defmt_log::LogLine;

    #[test]
    fn the_report_line_becomes_figures() {
        let result = RunResult {
            outcome: Outcome::Success,
            console: String::new(),
            log: ["report net nic=virtio bdf=00:02.0 mac=52:54:00:67:6d:01 ip=169.254.0.1/16",
                "report net_bench role=send nic=virtio bytes=67108864 micros=1300000 mbps=412.95856 verified=true"]
                .iter()
                .map(|m| LogLine {
                    micros: Some(1),
                    level: "INFO".into(),
                    message: m.to_string(),
                })
                .collect(),
            malformed_frames: 0,
            qemu_stderr: String::new(),
            wall: Duration::from_secs(1),
            to_banner: None,
            cpu: None,
            command: String::new(),
        };
        let f = figures(&result).expect("figures");
        assert_eq!(f.role, "send");
        assert_eq!(f.nic, "virtio");
        assert_eq!(f.bytes, 64 << 20);
        assert_eq!(f.micros, 1_300_000);
        assert!((f.mbps - 412.95856).abs() < 1e-6);
        assert!(f.verified);
        let mut none = result.clone();
        none.log.pop();
        assert_eq!(figures(&none), None);
    }
}
