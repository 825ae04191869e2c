//! The local APIC in xAPIC mode (SDM vol. 3A, ch. 11), for one thing: the
//! one-shot timer that takes the CPU back from a ring-3 guest. The legacy
//! 8259 PICs are remapped off the exception vectors and masked, so that
//! nothing but the APIC timer interrupts a guest (firmware leaves the PIT
//! routed to vector 8, which a guest with interrupts on would otherwise
//! take as a double fault).
//!
//! The timer counts the APIC's bus clock divided by 16; its rate is
//! measured once against the TSC ([`crate::time`]), so slices are given in
//! TSC cycles.

use core::fmt;

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::mem::paging::MapError;
use crate::platform::Memory;

/// The timer's vector.
pub const TIMER_VECTOR: u8 = 32;
/// The APIC's spurious-interrupt vector (low four bits set, as P6-family
/// APICs require).
pub const SPURIOUS_VECTOR: u8 = 47;
/// Where the PICs' sixteen lines go (masked): 48..64.
pub const PIC_VECTORS: u8 = 48;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ADDRESS: u64 = 0x000f_ffff_f000;

const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_LVT_ERROR: usize = 0x370;
const REG_INITIAL_COUNT: usize = 0x380;
const REG_CURRENT_COUNT: usize = 0x390;
const REG_DIVIDE: usize = 0x3e0;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 0b0011: the bus clock divided by 16.
const DIVIDE_BY_16: u32 = 0b0011;
/// Calibration window.
const CALIBRATION_US: u64 = 10_000;

/// Why the APIC could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID says there is no local APIC.
    Missing,
    /// Its registers could not be mapped.
    Map(MapError),
    /// The timer did not count during calibration.
    TimerStopped,
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApicError::Missing => f.write_str("the CPU has no local APIC"),
            ApicError::Map(e) => write!(f, "mapping the local APIC: {e}"),
            ApicError::TimerStopped => f.write_str("the APIC timer does not count"),
        }
    }
}

/// The local APIC, set up.
#[derive(Debug)]
pub struct Apic {
    base: u64,
    /// Timer ticks per second.
    pub timer_hz: u64,
    tsc_hz: u64,
}

static APIC: spin::Once<Apic> = spin::Once::new();

impl Apic {
    fn read(&self, reg: usize) -> u32 {
        // SAFETY: `base` is the APIC's register page, mapped uncached by
        // `init`; `reg` is one of the 16-byte aligned registers above.
        unsafe { core::ptr::read_volatile((self.base as usize + reg) as *const u32) }
    }

    fn write(&self, reg: usize, value: u32) {
        // SAFETY: as in `read`; writing these registers affects only the
        // APIC's interrupt delivery to this CPU.
        unsafe { core::ptr::write_volatile((self.base as usize + reg) as *mut u32, value) }
    }

    /// Fires the timer once after `cycles` TSC cycles (at least one tick).
    pub fn arm(&self, cycles: u64) {
        let ticks = (u128::from(cycles) * u128::from(self.timer_hz) / u128::from(self.tsc_hz))
            .clamp(1, u128::from(u32::MAX)) as u32;
        self.write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
        self.write(REG_INITIAL_COUNT, ticks);
    }

    /// Stops the timer (a tick already pending still arrives).
    pub fn stop(&self) {
        self.write(REG_INITIAL_COUNT, 0);
    }

    /// Ends the interrupt being handled (not for the spurious vector).
    pub fn eoi(&self) {
        self.write(REG_EOI, 0);
    }
}

/// Masks the PICs and sets the local APIC up in xAPIC mode with its timer
/// calibrated against the TSC (`tsc_hz`). Runs once; later calls return
/// the same APIC.
pub fn init(memory: &mut Memory, tsc_hz: u64) -> Result<&'static Apic, ApicError> {
    if let Some(apic) = APIC.get() {
        return Ok(apic);
    }
    if core::arch::x86_64::__cpuid(1).edx & (1 << 9) == 0 {
        return Err(ApicError::Missing);
    }
    mask_pics();
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC.
    let value = unsafe { msr.read() };
    let base = value & APIC_BASE_ADDRESS;
    // SAFETY: leaving x2APIC mode must go through "disabled" (SDM vol. 3A,
    // 11.12.5); the monitor has not used the APIC, so its state (reset by
    // this) matters to nobody. Then xAPIC mode, enabled, same base.
    unsafe {
        if value & APIC_BASE_X2APIC != 0 {
            msr.write(value & !(APIC_BASE_ENABLE | APIC_BASE_X2APIC));
        }
        msr.write((value & !APIC_BASE_X2APIC) | APIC_BASE_ENABLE);
    }
    memory
        .space
        .map_mmio(&mut memory.frames, base, 4096)
        .map_err(ApicError::Map)?;
    let mut apic = Apic {
        base,
        timer_hz: 0,
        tsc_hz: tsc_hz.max(1),
    };
    apic.write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    apic.write(REG_LVT_LINT0, LVT_MASKED);
    apic.write(REG_LVT_ERROR, LVT_MASKED);
    apic.write(REG_DIVIDE, DIVIDE_BY_16);
    // Count down from the top for a while, masked, and see how far it got.
    apic.write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    apic.write(REG_INITIAL_COUNT, u32::MAX);
    crate::time::delay_us(CALIBRATION_US);
    let left = apic.read(REG_CURRENT_COUNT);
    apic.write(REG_INITIAL_COUNT, 0);
    let ticks = u64::from(u32::MAX - left);
    if ticks == 0 {
        return Err(ApicError::TimerStopped);
    }
    apic.timer_hz = ticks * 1_000_000 / CALIBRATION_US;
    Ok(APIC.call_once(|| apic))
}

/// Remaps both 8259 PICs to [`PIC_VECTORS`] (so that even their spurious
/// IRQ 7 and 15 land on vectors the monitor knows) and masks every line.
fn mask_pics() {
    let mut master_cmd: Port<u8> = Port::new(0x20);
    let mut master_data: Port<u8> = Port::new(0x21);
    let mut slave_cmd: Port<u8> = Port::new(0xa0);
    let mut slave_data: Port<u8> = Port::new(0xa1);
    // SAFETY: the standard 8259 initialisation sequence (ICW1-4) on the
    // PC's fixed PIC ports, then all lines masked; the monitor uses no
    // PIC interrupt.
    unsafe {
        master_cmd.write(0x11);
        slave_cmd.write(0x11);
        master_data.write(PIC_VECTORS);
        slave_data.write(PIC_VECTORS + 8);
        master_data.write(4);
        slave_data.write(2);
        master_data.write(1);
        slave_data.write(1);
        master_data.write(0xff);
        slave_data.write(0xff);
    }
}
