//! In-kernel self-tests: run inside QEMU with `selftest=all` (or one test by
//! name), each reported on the log as `selftest <name> ... ok|FAILED`, then a
//! summary line `selftest summary: N passed, M failed`, then the exit code.
//! The host harness (`cargo xtask test`) fails on any failure, a timeout, a
//! triple fault or a missing summary.
//!
//! The `fault-*` tests are deliberately fatal and not part of `all`: they
//! check that a monitor bug yields a readable report and a failure exit.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::cmdline::{self, CmdlineError, Mode, TestSelection};
use crate::exit::ExitCode;
use crate::platform::Platform;
use gpu::mediate::ShaderPolicy;

type TestResult = Result<(), &'static str>;

/// Fails the test with `msg` unless `cond` holds.
fn check(cond: bool, msg: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(msg)
    }
}

struct Test {
    name: &'static str,
    run: fn(&mut Platform) -> TestResult,
}

const SUITE: &[Test] = &[
    Test {
        name: "frames",
        run: frames,
    },
    Test {
        name: "paging",
        run: paging,
    },
    Test {
        name: "heap",
        run: heap,
    },
    Test {
        name: "breakpoint-returns",
        run: breakpoint,
    },
    Test {
        name: "tsc",
        run: tsc,
    },
    Test {
        name: "digest-sse2",
        run: digest_sse2,
    },
    Test {
        name: "cmdline",
        run: cmdline_cases,
    },
    Test {
        name: "acpi",
        run: acpi,
    },
    Test {
        name: "pci",
        run: pci,
    },
    Test {
        name: "gpu-memory-fenced",
        run: gpu_memory_fenced,
    },
    Test {
        name: "gpu-intel-gen9",
        run: gpu_intel_gen9,
    },
    Test {
        name: "net-e1000e-registers",
        run: crate::net::selftest::e1000e_registers,
    },
    Test {
        name: "net-e1000e-rings",
        run: crate::net::selftest::e1000e_rings,
    },
    Test {
        name: "net-tcp-checksums",
        run: crate::net::selftest::tcp_checksums,
    },
    Test {
        name: "net-virtio-hal-pool",
        run: crate::net::selftest::virtio_hal_pool,
    },
    Test {
        name: "net-bench-pattern",
        run: crate::net::selftest::bench_pattern,
    },
    Test {
        name: "migration-costs",
        run: migration_costs,
    },
    Test {
        name: "ring3-loader",
        run: crate::vm::selftest::loader_checks,
    },
    Test {
        name: "ring3-workload",
        run: crate::vm::selftest::workload_runs,
    },
    Test {
        name: "ring3-ppgtt-workload",
        run: crate::vm::selftest::ppgtt_workload_runs,
    },
    Test {
        name: "ring3-mmio",
        run: crate::vm::selftest::mmio_reaches_vgpu,
    },
    Test {
        name: "ring3-faults",
        run: crate::vm::selftest::faults_kill_alone,
    },
    Test {
        name: "ring3-twins",
        run: crate::vm::selftest::benign_twins_not_refused,
    },
    Test {
        name: "ring3-preemption",
        run: crate::vm::selftest::tight_loop_preempted,
    },
    Test {
        name: "ring3-fpu",
        run: crate::vm::selftest::fpu_state_kept,
    },
    Test {
        name: "ring3-save-restore",
        run: crate::vm::selftest::save_restore_round_trip,
    },
    Test {
        name: "ring3-dirty",
        run: crate::vm::selftest::dirty_bits,
    },
    Test {
        name: "ring3-aperture",
        run: crate::vm::selftest::aperture_window,
    },
    Test {
        name: "ring3-costs",
        run: crate::vm::selftest::costs,
    },
    Test {
        name: "local-migration",
        run: local_migration,
    },
    Test {
        name: "local-migration-throttled",
        run: local_migration_throttled,
    },
    Test {
        name: "local-migration-slow-gpu",
        run: local_migration_slow_gpu,
    },
];

const FAULTS: &[Test] = &[
    Test {
        name: "fault-pagefault",
        run: fault_pagefault,
    },
    Test {
        name: "fault-stack-overflow",
        run: fault_stack_overflow,
    },
    Test {
        name: "fault-panic",
        run: fault_panic,
    },
];

/// Runs the selected tests and ends the monitor with the outcome.
pub fn run(platform: &mut Platform, selection: TestSelection) -> ! {
    let selected: &mut dyn Iterator<Item = &Test> = match selection {
        TestSelection::All => &mut SUITE.iter(),
        TestSelection::Named(name) => {
            &mut SUITE.iter().chain(FAULTS).filter(move |t| t.name == name)
        }
    };
    let (mut passed, mut failed) = (0u32, 0u32);
    for test in selected {
        match (test.run)(platform) {
            Ok(()) => {
                passed += 1;
                defmt::info!("selftest {=str} ... ok", test.name);
            }
            Err(why) => {
                failed += 1;
                defmt::error!("selftest {=str} ... FAILED: {=str}", test.name, why);
            }
        }
    }
    if passed + failed == 0 {
        defmt::error!("selftest: no test matches the selection");
        failed = 1;
    }
    defmt::info!(
        "selftest summary: {=u32} passed, {=u32} failed",
        passed,
        failed
    );
    crate::exit::exit(if failed == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

fn frames(p: &mut Platform) -> TestResult {
    let frames = &mut p.memory.frames;
    let before = frames.free_frames();
    let a = frames.allocate().map_err(|_| "allocate a")?;
    let b = frames.allocate().map_err(|_| "allocate b")?;
    check(a != b, "two allocations returned the same frame")?;
    let run = frames
        .allocate_contiguous(16, 16)
        .map_err(|_| "allocate 16 contiguous")?;
    check(run.number() % 16 == 0, "contiguous run is not aligned")?;
    check(
        !(run.number()..run.number() + 16).contains(&a.number()),
        "run overlaps a single frame",
    )?;
    check(
        frames.free_frames() == before - 18,
        "free count did not drop by 18",
    )?;
    frames.free(a, 1).map_err(|_| "free a")?;
    frames.free(b, 1).map_err(|_| "free b")?;
    frames.free(run, 16).map_err(|_| "free run")?;
    check(frames.free(a, 1).is_err(), "double free was accepted")?;
    check(frames.free_frames() == before, "frames leaked")?;
    check(
        frames.free_frames() < frames.usable_frames(),
        "image not reserved",
    )
}

fn paging(p: &mut Platform) -> TestResult {
    use x86_64::structures::paging::PageTableFlags as F;
    let space = &p.memory.space;
    check(
        space.flags_of(p.memory.stack_guard).is_none(),
        "stack guard page is mapped",
    )?;
    let code = paging as *const () as u64;
    let code_flags = space.flags_of(code).ok_or("kernel code unmapped")?;
    check(
        !code_flags.contains(F::NO_EXECUTE),
        "kernel code is not executable",
    )?;
    let frame = p.memory.frames.allocate().map_err(|_| "allocate")?;
    let ram_flags = space.flags_of(frame.address()).ok_or("free RAM unmapped")?;
    p.memory.frames.free(frame, 1).map_err(|_| "free")?;
    check(
        ram_flags.contains(F::NO_EXECUTE | F::WRITABLE),
        "RAM not RW+NX",
    )?;
    if let Some(window) = p.acpi.ecam {
        let ecam = space.flags_of(window.base).ok_or("ECAM unmapped")?;
        check(ecam.contains(F::NO_CACHE), "ECAM mapped cacheable")?;
    }
    // Round trip through a fresh frame, through the identity map.
    let frame = p.memory.frames.allocate().map_err(|_| "allocate")?;
    let ptr = frame.address() as *mut u64;
    // SAFETY: the frame was just allocated, is identity mapped RAM, and is
    // owned by this test until freed below.
    let seen = unsafe {
        ptr.write_volatile(0x5eed_cafe_f00d_d00d);
        ptr.read_volatile()
    };
    p.memory.frames.free(frame, 1).map_err(|_| "free")?;
    check(seen == 0x5eed_cafe_f00d_d00d, "RAM write did not read back")
}

fn heap(_: &mut Platform) -> TestResult {
    let (used_before, size) = crate::mem::heap::usage();
    {
        let v: Vec<u64> = (0..10_000).collect();
        check(v.iter().sum::<u64>() == 49_995_000, "wrong sum")?;
        check(
            crate::mem::heap::usage().0 > used_before,
            "allocation not accounted",
        )?;
    }
    check(crate::mem::heap::usage().0 == used_before, "heap leaked")?;
    check(size > 0, "heap has no memory")
}

fn breakpoint(_: &mut Platform) -> TestResult {
    let before = crate::arch::idt::BREAKPOINTS.load(Ordering::Relaxed);
    // SAFETY: int3 traps into the monitor's breakpoint handler, which counts
    // it and returns to the next instruction with all registers intact.
    unsafe { core::arch::asm!("int3") };
    check(
        crate::arch::idt::BREAKPOINTS.load(Ordering::Relaxed) == before + 1,
        "breakpoint not counted",
    )
}

fn tsc(p: &mut Platform) -> TestResult {
    check(p.calibration.measured, "TSC not calibrated against the PIT")?;
    let a = crate::time::micros_since_boot();
    crate::time::delay_us(200);
    let b = crate::time::micros_since_boot();
    check(b > a, "time did not advance across a delay")
}

/// Both page digest paths give the same digests in the monitor (the SSE2
/// one with SSE enabled at bring-up), and the digest uses the path
/// bring-up measured as faster.
fn digest_sse2(p: &mut Platform) -> TestResult {
    use migrate::digest::{xxh3, xxh3_portable};
    crate::digest::with_sample_pages(|pages| {
        pages.iter().try_for_each(|page| {
            // SAFETY: bring-up enabled SSE on the only CPU.
            let sse2 = unsafe { migrate::xxh3_sse2::xxh3_page(page) };
            check(
                sse2 == xxh3_portable(page),
                "SSE2 and portable digests differ",
            )?;
            check(xxh3(page) == sse2, "the digest differs from both paths")
        })
    })?;
    let d = p.digest;
    check(
        migrate::xxh3_sse2::enabled() == d.sse2,
        "the digest does not use the path bring-up chose",
    )?;
    check(
        d.sse2 == (d.sse2_cycles < d.portable_cycles),
        "bring-up did not choose the faster path",
    )
}

fn cmdline_cases(_: &mut Platform) -> TestResult {
    let ok = |line: &'static [u8]| cmdline::parse(line, false);
    check(ok(b"").map(|o| o.mode) == Ok(Mode::Run), "empty line")?;
    check(
        ok(b"  selftest=all ").map(|o| o.mode) == Ok(Mode::SelfTest(TestSelection::All)),
        "selftest=all",
    )?;
    check(
        ok(b"selftest=pci").map(|o| o.mode) == Ok(Mode::SelfTest(TestSelection::Named("pci"))),
        "selftest=pci",
    )?;
    check(
        matches!(ok(b"bogus=1"), Err(CmdlineError::Unknown { key: "bogus" })),
        "unknown",
    )?;
    check(
        matches!(ok(b"selftest"), Err(CmdlineError::MissingValue { .. })),
        "no value",
    )?;
    check(
        matches!(ok(b"selftest=a/b"), Err(CmdlineError::BadValue { .. })),
        "bad value",
    )?;
    check(
        matches!(
            ok(b"selftest=all selftest=pci"),
            Err(CmdlineError::Repeated { .. })
        ),
        "repeat",
    )?;
    check(matches!(ok(b"\xff"), Err(CmdlineError::NotUtf8)), "utf8")?;
    let o = ok(b"vgpus=4 vgpu_type=medium").map_err(|_| "vgpus=4 vgpu_type=medium")?;
    check(
        o.vgpus == 4 && o.vgpu_type == gpu::partition::VgpuType::Medium,
        "vgpu options",
    )?;
    check(
        ok(b"").map(|o| o.vgpus) == Ok(crate::vgpus::DEFAULT_VGPUS),
        "default vgpus",
    )?;
    check(
        matches!(ok(b"vgpus=9"), Err(CmdlineError::BadValue { .. })),
        "vgpus=9",
    )?;
    check(
        matches!(ok(b"vgpus=-1"), Err(CmdlineError::BadValue { .. })),
        "vgpus=-1",
    )?;
    check(
        matches!(ok(b"vgpu_type=giant"), Err(CmdlineError::BadValue { .. })),
        "giant",
    )?;
    check(
        matches!(ok(b"vgpus=1 vgpus=2"), Err(CmdlineError::Repeated { .. })),
        "repeated vgpus",
    )?;
    check(
        ok(b"").map(|o| o.ppgtt_budget) == Ok(64)
            && ok(b"ppgtt_budget=8").map(|o| o.ppgtt_budget) == Ok(8),
        "ppgtt_budget=",
    )?;
    for bad in [
        &b"ppgtt_budget=0"[..],
        b"ppgtt_budget=65",
        b"ppgtt_budget=x",
    ] {
        check(
            matches!(
                ok(bad),
                Err(CmdlineError::BadValue {
                    key: "ppgtt_budget",
                    ..
                })
            ),
            "ppgtt_budget out of range",
        )?;
    }
    check(
        ok(b"").map(|o| o.shaders) == Ok(ShaderPolicy::PpgttOnly)
            && ok(b"shaders=deny").map(|o| o.shaders) == Ok(ShaderPolicy::Deny)
            && ok(b"shaders=allow-ggtt").map(|o| o.shaders) == Ok(ShaderPolicy::AllowGgtt),
        "shaders=",
    )?;
    check(
        matches!(ok(b"shaders=maybe"), Err(CmdlineError::BadValue { .. })),
        "shaders=maybe",
    )?;
    check(
        ok(b"trace=on").map(|o| o.trace) == Ok(true) && ok(b"").map(|o| o.trace) == Ok(false),
        "trace=",
    )?;
    for name in migrate::policy::POLICY_NAMES {
        let line: &'static [u8] = match name {
            "stop-and-copy" => b"policy=stop-and-copy",
            "precopy" => b"policy=precopy",
            "gmig-oneshot" => b"policy=gmig-oneshot",
            "gmig-tpds" => b"policy=gmig-tpds",
            "informed" => b"policy=informed",
            "informed-throttle" => b"policy=informed-throttle",
            _ => return Err("a policy name the command line test does not know"),
        };
        check(ok(line).map(|o| o.policy.name()) == Ok(name), "policy name")?;
    }
    check(
        matches!(ok(b"policy=fastest"), Err(CmdlineError::BadValue { .. })),
        "bad policy",
    )?;
    let key = ok(b"migrate_key=00112233445566778899AABBCCDDEEFF migrate_encrypt=on");
    check(
        key.map(|o| (o.migrate_key.is_some(), o.migrate_encrypt)) == Ok((true, true))
            && ok(b"").map(|o| (o.migrate_key.is_none(), o.migrate_encrypt)) == Ok((true, false)),
        "migrate_key= and migrate_encrypt=",
    )?;
    check(
        matches!(
            ok(b"migrate_key=0011223344556677889900aabbccddeeffzz"),
            Err(CmdlineError::BadValue {
                value: "(not shown)",
                ..
            })
        ),
        "a malformed migrate_key= is refused, not echoed",
    )?;
    check(
        matches!(cmdline::parse(b"", true), Err(CmdlineError::Truncated)),
        "truncated",
    )?;
    network_options()
}

/// `ip=`, `nic=`, `peer=`, `listen=`, `net_bench=` and their rules.
fn network_options() -> TestResult {
    use crate::net::config::NicChoice;
    let ok = |line: &'static [u8]| cmdline::parse(line, false);
    let bad = |line: &'static [u8]| matches!(ok(line), Err(CmdlineError::BadValue { .. }));
    let o = ok(b"ip=169.254.0.1/16 nic=e1000e peer=169.254.0.2:7000")
        .map_err(|_| "a full network line")?;
    let ip = o.net.ip.ok_or("ip= not kept")?;
    check(
        ip.address.octets() == [169, 254, 0, 1] && ip.prefix == 16,
        "ip= address or prefix",
    )?;
    check(o.net.nic == NicChoice::E1000e, "nic=e1000e")?;
    check(o.net.peer.map(|p| p.port()) == Some(7000), "peer= port")?;
    check(
        ok(b"").map(|o| o.net.ip.is_none() && o.net.nic == NicChoice::Auto) == Ok(true),
        "no network by default",
    )?;
    check(ok(b"ip=169.254.0.0/31").is_ok(), "a /31 host refused")?;
    for line in [
        &b"ip=169.254.0.0/16"[..],
        b"ip=169.254.255.255/16",
        b"ip=1.2.3.4/33",
        b"ip=1.2.3.4/0",
        b"ip=1.2.3.4",
        b"ip=224.0.0.1/8",
        b"ip=0.0.0.0/8",
        b"ip=1.2.3/24",
        b"nic=rtl8139",
        b"listen=0",
        b"listen=65536",
        b"net_bench=0",
        b"net_bench=4097",
        b"tcp_buffer_kib=3",
        b"mtu=575",
        b"mtu=8001",
        b"tcp_buffer_kib=65537",
    ] {
        // Values are checked before the rules that span options.
        let line: &'static [u8] = line;
        check(bad(line), "a bad network value accepted")?;
    }
    check(
        bad(b"ip=10.0.0.1/8 peer=10.0.0.2:0") && bad(b"ip=10.0.0.1/8 peer=10.0.0.2"),
        "a peer without a port accepted",
    )?;
    check(
        matches!(
            ok(b"peer=10.0.0.2:7000"),
            Err(CmdlineError::Needs { key: "peer", .. })
        ),
        "peer= without ip= accepted",
    )?;
    check(
        matches!(
            ok(b"nic=virtio"),
            Err(CmdlineError::Needs { key: "nic", .. })
        ),
        "nic= without ip= accepted",
    )?;
    check(
        matches!(
            ok(b"ip=10.0.0.1/24 peer=10.0.1.2:7000"),
            Err(CmdlineError::NotOnSubnet { .. })
        ),
        "a peer off the subnet accepted",
    )?;
    check(
        matches!(
            ok(b"ip=10.0.0.1/24 peer=10.0.0.1:7000"),
            Err(CmdlineError::Conflict { key: "peer", .. })
        ),
        "this machine as its own peer accepted",
    )?;
    check(
        ok(b"ip=10.0.0.1/24 listen=7000 net_bench=8").map(|o| o.mode)
            == Ok(Mode::NetBench { mib: 8 }),
        "net_bench=8 with listen=",
    )?;
    check(
        matches!(
            ok(b"ip=10.0.0.1/24 net_bench=8"),
            Err(CmdlineError::Needs {
                key: "net_bench",
                ..
            })
        ),
        "net_bench= without a direction accepted",
    )?;
    check(
        matches!(
            ok(b"ip=10.0.0.1/24 listen=7000 peer=10.0.0.2:7000 net_bench=8"),
            Err(CmdlineError::Conflict { .. })
        ),
        "net_bench= with both directions accepted",
    )?;
    check(
        matches!(
            ok(b"net_bench=8 selftest=all ip=10.0.0.1/24 listen=7000"),
            Err(CmdlineError::Conflict { .. })
        ),
        "net_bench= with selftest= accepted",
    )
}

fn acpi(p: &mut Platform) -> TestResult {
    check(p.acpi.rsdp_found, "no ACPI RSDP")?;
    check(p.acpi.tables > 0, "RSDT/XSDT lists no tables")
}

fn pci(p: &mut Platform) -> TestResult {
    let pci = &p.pci;
    check(!pci.devices.is_empty(), "no PCI devices")?;
    check(
        pci.devices
            .iter()
            .any(|d| d.class == 0x06 && d.subclass == 0x00),
        "no host bridge",
    )?;
    for dev in &pci.devices {
        let id = pci.access.read32(dev.bdf, 0);
        check(
            id == u32::from(dev.vendor) | u32::from(dev.device) << 16,
            "config read disagrees with list",
        )?;
        for bar in &dev.bars {
            check(
                bar.size() == 0 || bar.size().is_power_of_two(),
                "BAR size not a power of two",
            )?;
            check(
                bar.size() == 0 || bar.address() % bar.size() == 0,
                "BAR not aligned to its size",
            )?;
        }
    }
    Ok(())
}

fn gpu_memory_fenced(p: &mut Platform) -> TestResult {
    use gpu::addr::PhysAddr;
    use gpu::backend::PhysMem;
    let memory = p.vgpus.device.memory();
    check(memory.bytes() > 0, "the GPU owns no frames")?;
    // The monitor's own image is not GPU memory: the GPU may not reach it.
    let (image_start, _) = boot::image_range();
    let mut probe = [0u8; 4];
    let image = PhysAddr::new(image_start).map_err(|_| "image address")?;
    check(
        memory.read(image, &mut probe).is_err(),
        "GPU memory reaches the monitor image",
    )
}

/// The real-device backend's self-test (`gpu::intel` `self_test`):
/// identity, a forcewake round trip, MI_STORE_DATA_IMM on every engine
/// through two pages of the monitor's GM and its readback, and two vGPU
/// contexts kept apart. Without a supported Gen9 part (under QEMU) it
/// reports why the software model runs instead, per display device, and
/// passes: there is nothing of the backend to test.
fn gpu_intel_gen9(p: &mut Platform) -> TestResult {
    use crate::vgpus::GpuDevice;
    if let GpuDevice::Software(_) = p.vgpus.device {
        let mut displays = 0;
        for d in p.pci.devices.iter().filter(|d| d.class == 0x03) {
            displays += 1;
            defmt::info!(
                "report gpu_selftest status=skipped reason=not-a-supported-gen9-gt2-part vendor={=u16:#06x} device={=u16:#06x}",
                d.vendor,
                d.device
            );
        }
        if displays == 0 {
            defmt::info!("report gpu_selftest status=skipped reason=no-display-device");
        }
        return Ok(());
    }
    let (gm, _) = p
        .vgpus
        .monitor_pages(2, &mut p.memory.frames)
        .map_err(|_| "no room for the self-test's two GM pages")?;
    let GpuDevice::Intel { gpu, .. } = &mut p.vgpus.device else {
        return Err("backend changed");
    };
    match gpu.self_test(gpu::intel::SelfTestArea { gm }) {
        Ok(r) => {
            defmt::info!(
                "report gpu_selftest status=passed device={=u16:#06x} family={=str} forcewake_round_trip_ns={=u64} rcs_ns={=u64} bcs_ns={=u64} vcs_ns={=u64} vecs_ns={=u64}",
                r.device,
                r.family,
                r.forcewake_round_trip_ns,
                r.submission_ns[0],
                r.submission_ns[1],
                r.submission_ns[2],
                r.submission_ns[3]
            );
            Ok(())
        }
        Err(e) => {
            defmt::error!(
                "report gpu_selftest status=failed reason={}",
                defmt::Display2Format(&e)
            );
            Err("the Gen9 backend's self-test failed (see the report line)")
        }
    }
}

/// What the migration stream's per-page work costs on this CPU (under
/// QEMU TCG: the emulated CPU), in TSC cycles per 4 KiB page, beside a copy
/// of the page: the digest, the CRC32C, a keyed BLAKE3 (the other MAC the
/// monitor could use; Poly1305 measured cheaper), and sealing and opening
/// a page record authenticated and encrypted. Reported, not judged (`report
/// migration_costs ...`); the test checks that each opened record is the
/// one sealed.
fn migration_costs(_: &mut Platform) -> TestResult {
    use core::hint::black_box;
    use migrate::wire::{RecordRepr, MAX_RECORD};
    const N: usize = 32;
    let key = migrate::MigrationKey::from_bytes(&[7; 32]).map_err(|_| "key")?;
    let mut page = [0u8; 4096];
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for w in page.chunks_exact_mut(8) {
        s = s.rotate_left(13).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ 1;
        w.copy_from_slice(&s.to_le_bytes());
    }
    let per_page = |start: u64| (crate::arch::cpu::rdtsc() - start) / N as u64;
    let mut copy = [0u8; 4096];
    let t = crate::arch::cpu::rdtsc();
    for _ in 0..N {
        copy.copy_from_slice(black_box(&page));
        black_box(&copy);
    }
    let memcpy = per_page(t);
    let t = crate::arch::cpu::rdtsc();
    for _ in 0..N {
        black_box(migrate::digest::xxh3(black_box(&page)));
    }
    let digest = per_page(t);
    let t = crate::arch::cpu::rdtsc();
    for _ in 0..N {
        black_box(migrate::wire::crc32c(black_box(&page)));
    }
    let crc = per_page(t);
    let t = crate::arch::cpu::rdtsc();
    for _ in 0..N {
        black_box(blake3::keyed_hash(&[7; 32], black_box(&page)));
    }
    let blake = per_page(t);
    let gpage = migrate::GuestPage::new(1).ok_or("page")?;
    let mut records = alloc::vec![[0u8; MAX_RECORD]; N];
    let mut cycles = [0u64; 4];
    for (k, encrypt) in [false, true].into_iter().enumerate() {
        let (mut source, mut dest) =
            migrate::auth::loopback_sessions(&key, encrypt).ok_or("handshake")?;
        let mut bodies = [0usize; N];
        for (r, b) in records.iter_mut().zip(bodies.iter_mut()) {
            *b = RecordRepr::Page {
                page: gpage,
                data: &page,
            }
            .emit_body(r);
        }
        let t = crate::arch::cpu::rdtsc();
        for (r, &b) in records.iter_mut().zip(&bodies) {
            source.tx.seal(r, b).map_err(|_| "seal")?;
        }
        cycles[2 * k] = per_page(t);
        let t = crate::arch::cpu::rdtsc();
        for r in records.iter_mut() {
            dest.rx
                .open(r)
                .map_err(|_| "a sealed record does not open")?;
        }
        cycles[2 * k + 1] = per_page(t);
        check(
            records[N - 1][migrate::wire::RECORD_HEAD_LEN..][..4096] == page,
            "an opened record is not the page sealed",
        )?;
    }
    defmt::info!(
        "report migration_costs memcpy_cycles={=u64} xxh3_cycles={=u64} crc32c_cycles={=u64} blake3_keyed_cycles={=u64} seal_mac_cycles={=u64} open_mac_cycles={=u64} seal_aead_cycles={=u64} open_aead_cycles={=u64}",
        memcpy,
        digest,
        crc,
        blake,
        cycles[0],
        cycles[1],
        cycles[2],
        cycles[3]
    );
    Ok(())
}

/// A migrating ring-3 guest and its twin (the same program, never
/// moved) on fresh vGPUs, guest 0 live-migrated inside this monitor after
/// a few frames with `settings`; both run on until asked to finish.
/// Returns the report and whether the moved guest's frames and checksums
/// are the twin's, frame by frame, and both passed their final checks.
fn migrate_beside_twin(
    p: &mut Platform,
    settings: crate::migration::MigrationSettings,
) -> Result<(crate::migration::local::MigrationReport, bool, (u8, u8)), &'static str> {
    use crate::vm::{Guest, RunState, Runtime, Scheduler, Step};
    const PAGES: u64 = 2048;
    const BEFORE: u64 = 3;
    const AFTER: u64 = 4;
    let rt = Runtime::init(&mut p.memory, p.calibration.tsc_hz)
        .map_err(|_| "the ring-3 runtime did not come up")?;
    let mut sched = Scheduler::new(&rt);
    let program = guest::abi::Program::Workload {
        kind: guest::Kind::Desktop2d,
        seed: 0x10ca1,
        frames: 0,
    };
    for id in 0..2 {
        let index = p
            .vgpus
            .add_vgpu(&mut p.memory.frames, gpu::partition::VgpuType::Small, PAGES)
            .map_err(|_| "no room for a guest's vGPU")?;
        let g = Guest::create(&rt, &mut p.memory.frames, &mut p.vgpus, index, id, program)
            .map_err(|_| "a guest could not be created")?;
        sched.add(g);
    }
    let slot_of = |p: &Platform, s: &Scheduler| {
        crate::migration::vgpu_index(&p.vgpus, s.guests[0].vgpu)
            .map(|i| p.vgpus.vgpus[i].partition.id().raw())
            .unwrap_or(u8::MAX)
    };
    let before = slot_of(p, &sched);
    let limit = crate::arch::cpu::rdtsc() + 120 * rt.tsc_hz;
    // Until guest 0 has reported `frames` frames on its current vGPU.
    let run_until = |sched: &mut Scheduler, p: &mut Platform, frames: u64| {
        while sched.guests[0].stats.frames < frames
            && !sched.guests[0].state().ended()
            && crate::arch::cpu::rdtsc() < limit
        {
            if sched.step(&rt, &mut p.vgpus) == Step::Waiting {
                core::hint::spin_loop();
            }
        }
    };
    run_until(&mut sched, p, BEFORE);
    let migrated = crate::migration::migrate_local(
        &rt,
        &mut sched,
        &mut p.vgpus,
        &mut p.memory.frames,
        0,
        settings,
    );
    let after = slot_of(p, &sched);
    // Its counters went along.
    let target = sched.guests[0].stats.frames + AFTER;
    run_until(&mut sched, p, target);
    for g in &mut sched.guests {
        g.request_finish();
    }
    while sched.guests.iter().any(|g| !g.state().ended()) && crate::arch::cpu::rdtsc() < limit {
        if sched.step(&rt, &mut p.vgpus) == Step::Waiting {
            core::hint::spin_loop();
        }
    }
    let (moved, twin) = (&sched.guests[0], &sched.guests[1]);
    let n = moved.frames.all.len().min(twin.frames.all.len());
    let same = n as u64 > BEFORE
        && moved.frames.all[..n] == twin.frames.all[..n]
        && moved.state() == RunState::Exited(0)
        && twin.state() == RunState::Exited(0);
    for g in core::mem::take(&mut sched.guests) {
        if let Some(i) = crate::migration::vgpu_index(&p.vgpus, g.vgpu) {
            p.vgpus.remove_vgpu(&mut p.memory.frames, i);
        }
        g.destroy(&mut p.memory.frames);
    }
    let report = migrated.map_err(|e| {
        defmt::error!("migration: {}", defmt::Display2Format(&e));
        "local migration failed"
    })?;
    Ok((report, same, (before, after)))
}

/// A running ring-3 guest moves whole onto other slices and frames of
/// this monitor while it works (its memory checked equal at the stop by
/// the migration itself), and goes on there with its twin's checksums;
/// every frame comes back.
fn local_migration(p: &mut Platform) -> TestResult {
    // The runtime's own set-up (the APIC's mapping) stays.
    crate::vm::Runtime::init(&mut p.memory, p.calibration.tsc_hz)
        .map_err(|_| "the ring-3 runtime did not come up")?;
    let free_before = p.memory.frames.free_frames();
    let gpu_before = p.vgpus.device.memory().bytes();
    let settings = crate::migration::MigrationSettings {
        policy: p.options.policy,
        throttle: migrate::ThrottleConfig::new(),
        trace: true,
        security: crate::migration::StreamSecurity::local(&p.options),
    };
    let (report, same, (before, after)) = migrate_beside_twin(p, settings)?;
    check(before != after, "the destination is the source's partition")?;
    check(
        report.guest_slices > 0,
        "the guest did not run during pre-copy",
    )?;
    check(report.precopy_pages > 0, "nothing sent during pre-copy")?;
    check(report.trace_events > 0, "the dirty trace recorded no write")?;
    check(
        same,
        "the migrated guest's frames and checksums are not its twin's",
    )?;
    check(
        p.memory.frames.free_frames() == free_before
            && p.vgpus.device.memory().bytes() == gpu_before,
        "the guests' or the migration's frames were not returned",
    )
}

/// The software GPU's work slowed fiftyfold (`gpu_slowdown=`), so that the
/// guest's blits are still writing when pre-copy sends their pages: the
/// migration must take their write sets as evidence again once they have
/// ended (`vm::guest::WriteLog`), or the destination's memory differs
/// from the source's at the stop (checked inside `migrate_local`).
fn local_migration_slow_gpu(p: &mut Platform) -> TestResult {
    p.vgpus.set_sim_slowdown(50);
    let settings = crate::migration::MigrationSettings {
        policy: migrate::Policy::Informed,
        throttle: migrate::ThrottleConfig::new(),
        trace: false,
        security: crate::migration::StreamSecurity::local(&p.options),
    };
    let result = migrate_beside_twin(p, settings);
    p.vgpus.set_sim_slowdown(p.options.gpu_slowdown);
    let (_, same, _) = result?;
    check(same, "the migrated guest's checksums are not its twin's")
}

/// `informed-throttle` with a downtime target nothing meets, so its
/// throttle engages as soon as rounds stop shrinking: the monitor defers
/// the migrating guest's turns, never below the floor share, and the
/// migration still ends byte-identical (checked inside `migrate_local`)
/// with the guest going on with its twin's checksums.
fn local_migration_throttled(p: &mut Platform) -> TestResult {
    let mut throttle = migrate::ThrottleConfig::new();
    throttle.target_ns = 0;
    let settings = crate::migration::MigrationSettings {
        policy: migrate::Policy::InformedThrottle,
        throttle,
        trace: false,
        security: crate::migration::StreamSecurity::local(&p.options),
    };
    let (report, same, _) = migrate_beside_twin(p, settings)?;
    defmt::info!(
        "throttled migration: {=u32} rounds, {=u32} guest slices, {=u32} turns deferred, lowest share {=u16} per mille",
        report.rounds,
        report.guest_slices,
        report.throttled_steps,
        report.min_share_permille
    );
    check(
        report.throttled_steps > 0,
        "the throttle deferred no turn of the guest",
    )?;
    check(
        report.guest_slices > 0,
        "the throttled guest did no work during pre-copy",
    )?;
    check(
        report.min_share_permille >= throttle.floor.permille(),
        "share below the throttle's floor",
    )?;
    check(same, "the throttled guest's checksums are not its twin's")
}

fn fault_pagefault(_: &mut Platform) -> TestResult {
    // A canonical address the monitor never maps.
    let unmapped = 0x0000_7fff_dead_0000 as *const u64;
    // SAFETY: deliberately not safe: the read must page-fault, and the fault
    // handler ends the monitor with a report. It never returns here.
    let value = unsafe { core::ptr::read_volatile(unmapped) };
    defmt::error!("read of an unmapped page returned {=u64:#x}", value);
    Err("the read of an unmapped page did not fault")
}

#[allow(unconditional_recursion)] // reason: the recursion is the test
fn recurse(depth: u64) -> u64 {
    let pad = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + pad[(depth % 64) as usize]
}

fn fault_stack_overflow(_: &mut Platform) -> TestResult {
    let _ = core::hint::black_box(recurse(0));
    Err("stack overflow did not fault")
}

fn fault_panic(_: &mut Platform) -> TestResult {
    let n = core::hint::black_box(3usize);
    let table = [1u8, 2, 3];
    // Out of bounds on purpose: exercises the panic handler.
    let value = table[n];
    defmt::error!("out-of-bounds read returned {=u8}", value);
    Err("indexing out of bounds did not panic")
}
