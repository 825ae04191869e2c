//! The ring-3 guest runtime (ARCHITECTURE.md "Ring-3 guest runtime"): guests
//! that are small `no_std` ELF programs (`guest/images`, embedded by
//! [`image`]) running deprivileged, each in an address space of its own,
//! reaching their vGPU only through trapped MMIO and a few system calls.
//!
//! * [`space`]: per guest its own page tables; its RAM (the vGPU's guest
//!   memory, every page a guest page number the guest can put in a GGTT
//!   entry) mapped user read/write in the one user slot, the image's pages
//!   with their segments' permissions, the boot block read-only, the
//!   monitor's mappings present but supervisor-only, and the virtual BAR0
//!   left unmapped. The layout is `guest::abi`'s. Its aperture window
//!   (its virtual BAR2, the size of its aperture slice) maps each aperture
//!   page to the RAM page its own GGTT entry names, following the guest's
//!   GGTT writes ([`guest`]'s "The aperture window": unbound entries,
//!   caching). PTE dirty bits of the RAM and aperture mappings are the CPU
//!   half of the migration's dirty tracking ([`Guest::take_dirty`]).
//! * [`cpu`]: the guest's CPU state (registers, RIP, RFLAGS, FXSAVE area)
//!   and its versioned saved form.
//! * [`decode`]: the faulting instruction of a BAR0 access, decoded with
//!   `iced-x86` and emulated if it is a 32/64-bit `MOV`.
//! * [`guest`]: one guest; [`Guest::run`] enters ring 3 and handles every
//!   exit of a slice: BAR0 faults through `gpu::Vgpu::mmio_read`/
//!   `mmio_write` (a TAIL write's submission through the scanner; an access
//!   the vGPU refuses completes as on a device, and the guest goes on),
//!   system calls, the timer; any other trap kills the guest alone with a
//!   report (vector, RIP, address, guest id). Its clock, frame pacing, the
//!   request to finish, and holding it for a migration's stop are here
//!   too.
//! * [`syscall`]: log, frame report, yield, wait for the GPU, exit, a
//!   probe's timing report, and a hostile guest's declared attempts
//!   ([`attempts`]: judged by what the monitor refused itself).
//! * [`verify`]: the monitor's own checks of a workload guest (its
//!   checksums against the same program's alone on another vGPU, every
//!   data page against its bookkeeping).
//! * [`sched`]: round-robin over the guests with APIC-timer preemption;
//!   waiting, sleeping (paced) and held guests are skipped.
//! * [`demo`]: the `ring3=` mode (guests on the scheduler, a report line
//!   per guest); [`selftest`]: the self-tests.
//!
//! # Entering and leaving ring 3
//! `iretq` in, and in through the IDT back: exceptions, the timer and
//! `int 0x80` all arrive as one [`crate::arch::idt::TrapFrame`] on the TSS
//! RSP0 stack ([`crate::arch::ring3`]). System calls use `int 0x80`
//! through a DPL-3 interrupt gate rather than SYSCALL/SYSRET: every exit
//! then leaves the same complete register state, which is what save,
//! restore and preemption need (SYSCALL clobbers RCX and R11 and needs its
//! own stack switch, and SYSRET to a non-canonical RCX faults in ring 0 on
//! Intel CPUs, a classic hole); the price is a few tens of cycles per
//! call on hardware, measured below.
//!
//! # Costs
//! Measured by the `ring3-costs` self-test (`report ring3_costs ...`),
//! in TSC cycles; see the README for the figures of a run. The guest-side
//! round trip (fault or `int 0x80`, handling, `iretq`) is the probe's
//! RDTSC loop minus the same loop over plain RAM reads; the monitor-side
//! part is from the exit's return into the monitor to the next entry.
//!
//! # What this is not (yet)
//! The monitor's mappings are in every guest's page tables (supervisor
//! only, SMEP and SMAP on where the CPU has them): on CPUs open to
//! Meltdown (Skylake and Kaby Lake among them) a guest can read them
//! speculatively. Separate page tables for ring 3 with only the entry
//! path mapped (as KPTI does) would close that.

pub mod attempts;
pub mod cpu;
pub mod decode;
pub mod demo;
pub mod guest;
pub mod image;
pub mod sched;
pub mod selftest;
pub mod space;
pub mod syscall;
pub mod verify;

use core::fmt;

pub use guest::{CreateError, Guest, Kill, RunState};
pub use sched::{Scheduler, Step};

use crate::arch::apic::{self, Apic, ApicError};
use crate::platform::Memory;

/// What every guest shares: the APIC timer, the monitor's page tables and
/// the ring-3 selectors.
#[derive(Debug, Clone, Copy)]
pub struct Runtime {
    /// The local APIC (its timer preempts guests).
    pub apic: &'static Apic,
    /// Physical address of the monitor's PML4.
    pub monitor_root: u64,
    /// Ring-3 code selector.
    pub user_code: u16,
    /// Ring-3 data selector.
    pub user_data: u16,
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// SMEP is on.
    pub smep: bool,
    /// SMAP is on.
    pub smap: bool,
    /// UMIP is on.
    pub umip: bool,
}

/// Why guests cannot run.
#[derive(Debug, Clone, Copy)]
pub enum RuntimeError {
    /// No usable APIC timer.
    Apic(ApicError),
    /// The GDT has no ring-3 segments (a monitor bug).
    NoGdt,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Apic(e) => write!(f, "{e}"),
            RuntimeError::NoGdt => f.write_str("the GDT is not loaded (monitor bug)"),
        }
    }
}

impl Runtime {
    /// Sets up what guests need (once; later calls return the same): the
    /// APIC timer calibrated, the PICs masked, SSE on, SMEP/SMAP on where
    /// the CPU has them.
    pub fn init(memory: &mut Memory, tsc_hz: u64) -> Result<Runtime, RuntimeError> {
        let selectors = crate::arch::gdt::selectors().ok_or(RuntimeError::NoGdt)?;
        crate::arch::cpu::enable_sse();
        let apic = apic::init(memory, tsc_hz).map_err(RuntimeError::Apic)?;
        let on = crate::arch::ring3::protect_supervisor();
        decode::warm_up();
        let rt = Runtime {
            apic,
            monitor_root: memory.space.root(),
            user_code: selectors.user_code.0,
            user_data: selectors.user_data.0,
            tsc_hz,
            smep: on.smep,
            smap: on.smap,
            umip: on.umip,
        };
        static LOGGED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if LOGGED.swap(true, core::sync::atomic::Ordering::Relaxed) {
            return Ok(rt);
        }
        defmt::info!(
            "vm: ring-3 guests ready: APIC timer {=u64} kHz, SMEP {=bool}, SMAP {=bool}, UMIP {=bool}",
            apic.timer_hz / 1000,
            on.smep,
            on.smap,
            on.umip
        );
        Ok(rt)
    }
}
