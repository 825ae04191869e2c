//! `target/xtask/run-report.json`: what a boot showed, in stable field names
//! (documented in the README). Figures come from the monitor's `report ...`
//! and `pci ...` log lines; timings measured on the host are marked so.

use serde::Serialize;

use crate::qemu::RunResult;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// "success", "failure", "panic", "cpu-exception", "bad-command-line",
    /// "triple-fault", "timeout" or "qemu-error".
    pub outcome: String,
    pub boot: BootReport,
    pub memory: MemoryReport,
    pub pci: Vec<PciReport>,
    pub gpu: GpuReport,
    pub migration: MigrationReport,
    /// Log frames the host could not decode (should be 0).
    pub malformed_log_frames: usize,
    /// The exact QEMU command.
    pub qemu_command: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootReport {
    /// "pvh" or "multiboot2".
    pub protocol: Option<String>,
    /// Host-measured: QEMU spawn to the monitor's banner on COM1, in ms.
    pub host_ms_to_banner: Option<f64>,
    /// Guest-measured: CPU reset to `kernel_main` by the TSC, in ms.
    pub guest_ms_to_kernel_main: Option<f64>,
    /// Host-measured: QEMU spawn to exit, in ms.
    pub host_ms_total: f64,
    /// TSC rate the monitor calibrated, in Hz.
    pub tsc_hz: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    /// RAM given to QEMU, in MiB.
    pub configured_mib: u32,
    /// RAM in the memory map (usable and ACPI), in bytes.
    pub ram_bytes: Option<u64>,
    /// Usable RAM in the memory map, in bytes.
    pub usable_bytes: Option<u64>,
    /// Free after bring-up, in bytes.
    pub free_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct PciReport {
    /// "bb:dd.f".
    pub bdf: String,
    /// Hex vendor and device ids, e.g. "8086".
    pub vendor: String,
    pub device: String,
    /// "cc.ss.pp".
    pub class: String,
    pub description: String,
    pub bars: Vec<BarReport>,
}

#[derive(Debug, Serialize)]
pub struct BarReport {
    pub index: u32,
    /// "io", "mem32" or "mem64".
    pub kind: String,
    /// Hex base address.
    pub address: String,
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct GpuReport {
    /// "software-gen9" or "intel-gen9".
    pub backend: Option<String>,
    pub vgpus: Vec<VgpuReport>,
    /// Ring-3 workload guests that ran to their end and passed their own
    /// final check.
    pub workloads_verified: Option<u64>,
    /// Submissions their frames reported.
    pub submissions_verified: Option<u64>,
    /// Whether the hostile guest was killed for its own fault with the
    /// workloads unharmed.
    pub isolation_shown: Option<bool>,
    /// The shader policy (`shaders=`): "ppgtt", "allow-ggtt" or "deny".
    pub shaders: Option<String>,
}

/// The local live migration `run` performs (guest 0 to new slices).
#[derive(Debug, Serialize)]
pub struct MigrationReport {
    /// Policy name (`policy=`).
    pub policy: Option<String>,
    /// Whether the destination's memory equalled the source's at the stop
    /// and the guest went on there.
    pub verified: Option<bool>,
    /// Pages sent during pre-copy and during stop-and-copy.
    pub precopy_pages: Option<u64>,
    pub stop_pages: Option<u64>,
    /// Guest stop to destination restored, and whole migration, in µs
    /// (under TCG: the monitor's work, emulated).
    pub downtime_us: Option<u64>,
    pub total_us: Option<u64>,
    /// Guest submission steps the convergence throttle deferred during
    /// pre-copy, and the lowest share of GPU time it granted (thousandths;
    /// 1000 when the policy did not throttle).
    pub throttled_steps: Option<u64>,
    pub min_share_permille: Option<u64>,
    /// Which code hashes pages in the monitor ("sse2" or "portable": the
    /// faster at bring-up), and each one's TSC cycles per 4 KiB page.
    pub digest_path: Option<String>,
    pub digest_sse2_cycles_per_page: Option<u64>,
    pub digest_portable_cycles_per_page: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct VgpuReport {
    pub id: u64,
    /// "small", "medium", "large" or "huge".
    pub vgpu_type: String,
    /// Host GM slices as "0xbase+0xlen".
    pub aperture: String,
    pub hidden: String,
    /// Host fences as "first+count".
    pub fences: String,
    /// Guest pages the vGPU's guest owns, as "0xfirst+0xcount".
    pub guest_pages: String,
}

/// The `key=value` pairs of every `report <kind> ...` line, in order.
pub fn report_records<'a>(
    result: &'a RunResult,
    kind: &'a str,
) -> impl Iterator<Item = Vec<(&'a str, &'a str)>> + 'a {
    result
        .messages()
        .filter_map(move |m| {
            m.strip_prefix("report ")?
                .strip_prefix(kind)?
                .strip_prefix(' ')
        })
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .collect()
        })
}

fn vgpus(result: &RunResult) -> Vec<VgpuReport> {
    report_records(result, "vgpu")
        .map(|fields| {
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            };
            VgpuReport {
                id: get("id").parse().unwrap_or(0),
                vgpu_type: get("type"),
                aperture: get("aperture"),
                hidden: get("hidden"),
                fences: get("fences"),
                guest_pages: get("guest_pages"),
            }
        })
        .collect()
}

/// `key=value` pairs of a `report ...` line.
fn report_value(result: &RunResult, key: &str) -> Option<String> {
    result
        .messages()
        .filter_map(|m| m.strip_prefix("report "))
        .flat_map(|rest| rest.split_whitespace())
        .find_map(|kv| {
            kv.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_string)
        })
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Parses `pci bb:dd.f [vvvv:dddd] class cc.ss.pp description` and
/// `pci bb:dd.f   barN kind 0xaddr size 0xsize` lines.
fn pci_devices(result: &RunResult) -> Vec<PciReport> {
    let mut devices: Vec<PciReport> = Vec::new();
    for m in result.messages() {
        let Some(rest) = m.strip_prefix("pci ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(bdf), Some(second)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some(ids) = second.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let (vendor, device) = ids.split_once(':').unwrap_or((ids, ""));
            let _ = words.next(); // "class"
            let class = words.next().unwrap_or_default().to_string();
            devices.push(PciReport {
                bdf: bdf.to_string(),
                vendor: vendor.to_string(),
                device: device.to_string(),
                class,
                description: words.collect::<Vec<_>>().join(" "),
                bars: Vec::new(),
            });
        } else if let Some(index) = second.strip_prefix("bar").and_then(|i| i.parse().ok()) {
            let kind = words.next().unwrap_or_default().to_string();
            let address = words.next().unwrap_or_default().to_string();
            let size = words.nth(1).and_then(parse_hex).unwrap_or(0);
            if let Some(dev) = devices.iter_mut().rev().find(|d| d.bdf == bdf) {
                dev.bars.push(BarReport {
                    index,
                    kind,
                    address,
                    size,
                });
            }
        }
    }
    devices
}

/// The dirty trace a `trace=on` run recorded, in `migrate-sim`'s format
/// (`gmig-trace 1`, `pages N`, then `<ns> <page> <kind>` lines); `None`
/// when the run recorded none.
pub fn dirty_trace(result: &RunResult) -> Option<String> {
    let pages = result
        .messages()
        .find_map(|m| m.strip_prefix("trace-start pages="))?;
    let mut text = format!("gmig-trace 1\n# recorded by the monitor (trace=on)\npages {pages}\n");
    for m in result.messages() {
        if let Some(event) = m.strip_prefix("trace ") {
            text.push_str(event);
            text.push('\n');
        }
    }
    Some(text)
}

/// How a run booted: the console's protocol line, the monitor's boot
/// timings, the host's clock.
pub fn boot(result: &RunResult) -> BootReport {
    let num = |key: &str| report_value(result, key).and_then(|v| v.parse::<u64>().ok());
    let protocol = result
        .console
        .lines()
        .find_map(|l| l.split("booted via ").nth(1))
        .map(|p| p.trim().to_string());
    BootReport {
        protocol,
        host_ms_to_banner: result.to_banner.map(|d| d.as_secs_f64() * 1e3),
        guest_ms_to_kernel_main: num("boot_to_main_us").map(|us| us as f64 / 1e3),
        host_ms_total: result.wall.as_secs_f64() * 1e3,
        tsc_hz: num("tsc_hz"),
    }
}

/// Builds the report of a run.
pub fn build(result: &RunResult, memory_mib: u32) -> RunReport {
    let num = |key: &str| report_value(result, key).and_then(|v| v.parse::<u64>().ok());
    RunReport {
        outcome: result.outcome.name().to_string(),
        boot: boot(result),
        memory: MemoryReport {
            configured_mib: memory_mib,
            ram_bytes: num("memory_bytes"),
            usable_bytes: num("usable_bytes"),
            free_bytes: num("free_bytes"),
        },
        pci: pci_devices(result),
        gpu: GpuReport {
            backend: report_value(result, "gpu_backend"),
            vgpus: vgpus(result),
            workloads_verified: num("workload_guests_ok"),
            submissions_verified: num("workload_submissions"),
            isolation_shown: report_value(result, "isolation_shown").and_then(|v| v.parse().ok()),
            shaders: report_value(result, "shaders"),
        },
        migration: MigrationReport {
            policy: report_value(result, "migration_policy"),
            verified: report_value(result, "migration_verified").and_then(|v| v.parse().ok()),
            precopy_pages: num("migration_precopy_pages"),
            stop_pages: num("migration_stop_pages"),
            downtime_us: num("migration_downtime_us"),
            total_us: num("migration_total_us"),
            throttled_steps: num("migration_throttled_steps"),
            min_share_permille: num("migration_min_share_permille"),
            digest_path: report_value(result, "digest_path"),
            digest_sse2_cycles_per_page: num("digest_sse2_cycles_per_page"),
            digest_portable_cycles_per_page: num("digest_portable_cycles_per_page"),
        },
        malformed_log_frames: result.malformed_frames,
        qemu_command: crate::cmd::redact_secrets(&result.command),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::defmt_log::LogLine;
    use crate::qemu::Outcome;

    fn result(messages: &[&str]) -> RunResult {
        RunResult {
            outcome: Outcome::Success,
            console: "gmig-rs 0.1.0 monitor: booted via pvh\n".into(),
            log: messages
                .iter()
                .map(|m| LogLine {
                    micros: Some(1),
                    level: "INFO".into(),
                    message: m.to_string(),
                })
                .collect(),
            malformed_frames: 0,
            qemu_stderr: String::new(),
            wall: Duration::from_millis(250),
            to_banner: Some(Duration::from_millis(100)),
            cpu: None,
            command: "qemu".into(),
        }
    }

    #[test]
    fn report_lines_become_fields() {
        let r = build(
            &result(&[
                "report tsc_hz=2600000000 tsc_measured=true boot_to_main_us=78103",
                "report memory_bytes=100 usable_bytes=90 free_bytes=80",
                "pci 00:01.0 [1234:1111] class 03.00.00 VGA controller (QEMU)",
                "pci 00:01.0   bar0 mem32 0xfd000000 size 0x1000000",
                "pci 00:1f.3 [8086:2930] class 0c.05.00 SMBus controller (Intel)",
                "pci 00:1f.3   bar4 io 0x700 size 0x40",
                "report gpu_backend=software-gen9 vgpus=1",
                "report vgpu id=0 type=small aperture=0x8000000+0x4000000 hidden=0x38000000+0x18000000 fences=4+4 guest_pages=0x100+0x100",
                "report workload_guests_ok=1 workload_submissions=2 isolation_shown=false",
            ]),
            128,
        );
        assert_eq!(r.outcome, "success");
        assert_eq!(r.boot.protocol.as_deref(), Some("pvh"));
        assert_eq!(r.boot.tsc_hz, Some(2_600_000_000));
        assert_eq!(r.boot.guest_ms_to_kernel_main, Some(78.103));
        assert_eq!(r.memory.usable_bytes, Some(90));
        assert_eq!(r.pci.len(), 2);
        assert_eq!(r.pci[0].vendor, "1234");
        assert_eq!(r.pci[0].description, "VGA controller (QEMU)");
        assert_eq!(r.pci[0].bars[0].size, 0x100_0000);
        assert_eq!(r.pci[1].bars[0].kind, "io");
        assert_eq!(r.pci[1].bars[0].index, 4);
        assert_eq!(r.gpu.backend.as_deref(), Some("software-gen9"));
        assert_eq!(r.gpu.vgpus.len(), 1);
        assert_eq!(r.gpu.vgpus[0].vgpu_type, "small");
        assert_eq!(r.gpu.vgpus[0].aperture, "0x8000000+0x4000000");
        assert_eq!(r.gpu.submissions_verified, Some(2));
        assert_eq!(r.gpu.isolation_shown, Some(false));
    }

    #[test]
    fn a_recorded_dirty_trace_becomes_the_simulators_format() {
        let r = result(&[
            "report tsc_hz=1",
            "trace-start pages=256",
            "trace 1000 3 g",
            "trace 2000 0 c",
            "trace-end events=2",
        ]);
        assert_eq!(
            dirty_trace(&r).as_deref(),
            Some("gmig-trace 1\n# recorded by the monitor (trace=on)\npages 256\n1000 3 g\n2000 0 c\n")
        );
        assert_eq!(dirty_trace(&result(&["report tsc_hz=1"])), None);
    }

    #[test]
    fn missing_lines_leave_fields_empty() {
        let r = build(&result(&["report tsc_hz=nonsense"]), 64);
        assert_eq!(r.boot.tsc_hz, None);
        assert!(r.pci.is_empty());
        assert_eq!(r.memory.configured_mib, 64);
    }
}
