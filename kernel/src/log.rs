//! defmt logging over COM2. Frames are rzCOBS-encoded by defmt's encoder and
//! decoded on the host by `cargo xtask` from the image's `.defmt` table.
//! Timestamps are microseconds since boot from the calibrated TSC.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::serial::{Uart, COM2};

struct LogPort {
    uart: Uart,
    encoder: defmt::Encoder,
}

/// The log port with a flag instead of a lock guard: defmt's acquire and
/// release are separate calls, so the "lock" spans them.
struct LogState {
    taken: AtomicBool,
    restore_interrupts: AtomicBool,
    port: UnsafeCell<LogPort>,
}

// SAFETY: `port` is only touched between `acquire` and `release`, and
// `taken` admits one frame at a time (interrupts are off meanwhile).
unsafe impl Sync for LogState {}

static STATE: LogState = LogState {
    taken: AtomicBool::new(false),
    restore_interrupts: AtomicBool::new(false),
    port: UnsafeCell::new(LogPort {
        uart: Uart::new(COM2),
        encoder: defmt::Encoder::new(),
    }),
};

/// Programs COM2. Call before the first log line.
pub fn init() {
    x86_64::instructions::interrupts::without_interrupts(|| {
        assert!(
            !STATE.taken.swap(true, Ordering::Acquire),
            "log port busy at init"
        );
        // SAFETY: `taken` is ours, so nothing else touches the port.
        unsafe { (*STATE.port.get()).uart.init() };
        STATE.taken.store(false, Ordering::Release);
    });
}

#[defmt::global_logger]
struct Logger;

// SAFETY: `acquire` disables interrupts and sets `taken`, so frames never
// interleave and the port is used by one frame at a time; `release` undoes
// both. A nested acquire (a fault while logging) panics instead of racing.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let enabled = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        if STATE.taken.swap(true, Ordering::Acquire) {
            panic!("defmt logger re-entered (a fault while logging)");
        }
        STATE.restore_interrupts.store(enabled, Ordering::Relaxed);
        // SAFETY: `taken` was just set by us.
        let LogPort { uart, encoder } = unsafe { &mut *STATE.port.get() };
        encoder.start_frame(|bytes| uart.write_bytes(bytes));
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: defmt calls `release` once after `acquire`, which set `taken`.
        let LogPort { uart, encoder } = unsafe { &mut *STATE.port.get() };
        encoder.end_frame(|bytes| uart.write_bytes(bytes));
        STATE.taken.store(false, Ordering::Release);
        if STATE.restore_interrupts.load(Ordering::Relaxed) {
            x86_64::instructions::interrupts::enable();
        }
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: only called between `acquire` and `release`.
        let LogPort { uart, encoder } = unsafe { &mut *STATE.port.get() };
        encoder.write(bytes, |out| uart.write_bytes(out));
    }
}

defmt::timestamp!("{=u64:us}", crate::time::micros_since_boot());
