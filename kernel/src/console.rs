//! Text console on COM1: the banner, fault reports and panics. It must work
//! before anything else is set up and from any context, so it is a spin lock
//! taken with interrupts off; `force_unlock` lets the panic path print even if
//! the panicking code held it.

use core::fmt::Write;

use crate::serial::{Uart, COM1};

static CONSOLE: spin::Mutex<Uart> = spin::Mutex::new(Uart::new(COM1));

/// Programs COM1.
pub fn init() {
    CONSOLE.lock().init();
}

/// Prints formatted text; use `print!` / `println!`.
pub fn print_fmt(args: core::fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        // A console write cannot fail: the UART drops bytes rather than error.
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// Releases the console lock if the code that panicked held it.
///
/// # Safety
/// Only for the panic and fatal-exception paths, which never return to
/// the interrupted holder.
pub unsafe fn force_unlock() {
    if CONSOLE.is_locked() {
        // SAFETY: the caller guarantees the holder never runs again.
        unsafe { CONSOLE.force_unlock() };
    }
}

/// Prints to the COM1 console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the COM1 console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
