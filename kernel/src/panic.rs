//! The panic handler: a panic is a monitor bug (guest and network input
//! never panic), so it prints where and why on the console and ends the
//! monitor with a failure code.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    // SAFETY: a panic never returns to the code that may hold the console.
    unsafe { crate::console::force_unlock() };
    match info.location() {
        Some(at) => crate::println!(
            "\n*** MONITOR PANIC at {}:{}:{}: {}",
            at.file(),
            at.line(),
            at.column(),
            info.message()
        ),
        None => crate::println!("\n*** MONITOR PANIC: {}", info.message()),
    }
    crate::exit::exit(crate::exit::ExitCode::Panic)
}
