//! Time from the TSC, calibrated once against PIT channel 2.
//!
//! The PIT runs at a fixed 1.193182 MHz on every PC and in QEMU; gating
//! channel 2 through port 0x61 and counting TSC ticks until its output goes
//! high gives the TSC rate without interrupts. An invariant TSC is assumed
//! (true of every Gen9-era Intel CPU and of QEMU).

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use crate::arch::cpu::rdtsc;

const PIT_HZ: u64 = 1_193_182;
/// Calibration window.
const CALIBRATION_MS: u64 = 10;
/// Windows measured; the one known most tightly is kept.
const CALIBRATION_ROUNDS: usize = 5;
/// Bound on polls of the PIT output, so a missing PIT cannot hang boot.
const MAX_POLLS: u32 = 50_000_000;
/// Used when the PIT does not answer; logged as a warning.
const FALLBACK_TSC_HZ: u64 = 1_000_000_000;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// How calibration went.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct Calibration {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// False when the PIT did not answer and the fallback rate is in use.
    pub measured: bool,
}

/// Marks the boot instant (the first thing `kernel_main` does).
pub fn mark_boot() {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
}

/// Measures the TSC rate against the PIT: [`CALIBRATION_ROUNDS`] windows,
/// each bracketed by TSC reads on both sides of the PIT accesses that
/// start and end it; the window known most tightly wins. On a loaded host
/// (QEMU TCG on a busy machine) the vCPU can be descheduled between a PIT
/// access and the TSC read next to it, which would stretch or shrink a
/// single 10 ms window by a fifth or more; the brackets show when it
/// happened.
pub fn calibrate() -> Calibration {
    let mut best: Option<Window> = None;
    for _ in 0..CALIBRATION_ROUNDS {
        match measure_window() {
            Some(w) if best.is_none_or(|b| w.uncertainty < b.uncertainty) => best = Some(w),
            Some(_) => {}
            None => {
                best = None;
                break;
            }
        }
    }
    let calibration = match best {
        Some(w) => Calibration {
            tsc_hz: w.ticks * 1000 / CALIBRATION_MS,
            measured: true,
        },
        None => Calibration {
            tsc_hz: FALLBACK_TSC_HZ,
            measured: false,
        },
    };
    TSC_HZ.store(calibration.tsc_hz, Ordering::Relaxed);
    calibration
}

/// TSC ticks in one PIT window of [`CALIBRATION_MS`], and how far off
/// they can be (half the width of the start and end brackets).
#[derive(Clone, Copy)]
struct Window {
    ticks: u64,
    uncertainty: u64,
}

/// One window, or `None` if the PIT does not answer.
fn measure_window() -> Option<Window> {
    let ticks = PIT_HZ * CALIBRATION_MS / 1000;
    let mut gate: Port<u8> = Port::new(0x61);
    let mut command: Port<u8> = Port::new(0x43);
    let mut channel2: Port<u8> = Port::new(0x42);
    // SAFETY: ports 0x61/0x43/0x42 are the PC speaker gate and PIT; the
    // speaker output stays off (bit 1 clear), only channel 2 is reprogrammed,
    // and nothing else in the monitor uses channel 2.
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        // Mode 0: the output drops when the mode is set and rises when the
        // count, loaded by the second write, runs out.
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(ticks as u8);
        let start_lo = rdtsc();
        channel2.write((ticks >> 8) as u8);
        let start_hi = rdtsc();
        // The output rose after the last read that saw it low began, and
        // before the first read that saw it high ended.
        let mut low_seen_at = start_lo;
        for _ in 0..MAX_POLLS {
            let before = rdtsc();
            let high = gate.read() & 0x20 != 0;
            let after = rdtsc();
            if high {
                let (start, end) = (start_lo / 2 + start_hi / 2, low_seen_at / 2 + after / 2);
                return (end > start).then_some(Window {
                    ticks: end - start,
                    uncertainty: (start_hi - start_lo) / 2 + (after - low_seen_at) / 2,
                });
            }
            low_seen_at = before;
        }
        None
    }
}

/// Microseconds since [`mark_boot`]; 0 before calibration.
pub fn micros_since_boot() -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return 0;
    }
    let ticks = rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(hz)) as u64
}

/// Nanoseconds since [`mark_boot`]; 0 before calibration. The clock the
/// vGPU scheduler and the software GPU's model time run on.
pub fn nanos_since_boot() -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return 0;
    }
    let ticks = rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64
}

/// Microseconds since the CPU came out of reset (TSC 0), which under QEMU
/// is when the VM started: the boot time up to `kernel_main`.
pub fn micros_since_reset(tsc: u64) -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed).max(1);
    (u128::from(tsc) * 1_000_000 / u128::from(hz)) as u64
}

/// Busy-waits for `us` microseconds.
pub fn delay_us(us: u64) {
    let hz = TSC_HZ.load(Ordering::Relaxed).max(1);
    let until = rdtsc() + us * hz / 1_000_000;
    while rdtsc() < until {
        core::hint::spin_loop();
    }
}
