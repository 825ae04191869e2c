//! How the monitor ends. Under QEMU the `isa-debug-exit` device (port 0xf4)
//! carries the outcome to the host harness: writing `v` makes QEMU exit with
//! status `2v + 1`. On bare metal the monitor halts.

use x86_64::instructions::port::Port;

/// I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4`).
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Outcomes the host harness tells apart. The values are part of the xtask
/// contract (`xtask::qemu::Outcome`); QEMU's status is `2 * value + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
#[repr(u8)]
pub enum ExitCode {
    /// Everything asked for ran and passed.
    Success = 0x10,
    /// A self-test or the scenario failed.
    Failure = 0x11,
    /// The monitor panicked (a monitor bug).
    Panic = 0x12,
    /// An unexpected CPU exception in the monitor.
    CpuException = 0x13,
    /// The kernel command line was rejected.
    BadCommandLine = 0x14,
}

impl ExitCode {
    /// The outcome's name on the console's last line; the same names as
    /// `xtask::qemu::Outcome::name`, which reads them back.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::Failure => "failure",
            ExitCode::Panic => "panic",
            ExitCode::CpuException => "cpu-exception",
            ExitCode::BadCommandLine => "bad-command-line",
        }
    }
}

/// The console line that ends every run, `gmig-rs: exit <name>`: on a
/// real machine (no isa-debug-exit) the only way the host harness
/// (`cargo xtask hil`) learns the outcome.
pub const EXIT_LINE_PREFIX: &str = "gmig-rs: exit ";

/// Ends the monitor: says so on the console, then exits QEMU with
/// `code`, or halts forever on hardware. Callers on the panic and fault
/// paths have already released the console's lock.
pub fn exit(code: ExitCode) -> ! {
    crate::println!("{EXIT_LINE_PREFIX}{}", code.name());
    if crate::arch::cpu::running_under_qemu() {
        // SAFETY: under QEMU the monitor is started with isa-debug-exit at
        // 0xf4; the write ends the VM. Without the device it is ignored.
        unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(code as u32) };
    }
    crate::arch::cpu::halt_forever()
}
