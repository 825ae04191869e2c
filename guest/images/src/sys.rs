//! The system calls (`guest::abi::syscall`): `int 0x80`, number in RAX,
//! arguments in RDI, RSI, RDX, result in RAX.

use core::fmt;

use guest::abi::{syscall, Measure};

/// One system call.
fn call(number: u64, a: u64, b: u64, c: u64) -> u64 {
    let result;
    // SAFETY: `int 0x80` enters the monitor through its DPL-3 gate; the
    // monitor preserves every register but RAX and does not touch this
    // stack (the CPU switches to the monitor's). The default memory
    // clobber stands for what the call may read (a log line) and for the
    // GPU's writes into RAM that a wait lets the guest see.
    unsafe {
        core::arch::asm!(
            "int 0x80",
            inlateout("rax") number => result,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            options(nostack),
        )
    };
    result
}

/// Raw call, for the probe that makes a wrong one on purpose.
pub fn raw(number: u64, a: u64, b: u64, c: u64) -> u64 {
    call(number, a, b, c)
}

/// A line of text on the monitor's log (cut at `LOG_MAX` bytes, on a
/// character boundary).
pub fn log(text: &str) {
    let mut end = text.len().min(syscall::LOG_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    call(syscall::LOG, text.as_ptr() as u64, end as u64, 0);
}

/// A workload frame is done; true when the monitor asks the workload to
/// finish.
pub fn frame(frame: u64, checksum: u64, submissions: u32) -> bool {
    call(syscall::FRAME, frame, checksum, u64::from(submissions)) == syscall::FRAME_FINISH
}

/// Lets the other guests run.
pub fn yield_now() {
    call(syscall::YIELD, 0, 0, 0);
}

/// Waits until the vGPU has no work in flight; false if it stopped.
pub fn wait() -> bool {
    call(syscall::WAIT, 0, 0, 0) == syscall::WAIT_OK
}

/// A timing for the monitor's report.
pub fn measure(what: Measure, total_cycles: u64, count: u64) {
    call(syscall::MEASURE, what as u64, total_cycles, count);
}

/// Declares that what follows is an attempt of `class`.
pub fn attempt(class: guest::attack::Class) {
    call(syscall::ATTEMPT, class.code(), 0, 0);
}

/// Ends the guest.
pub fn exit(code: u64) -> ! {
    call(syscall::EXIT, code, 0, 0);
    // The monitor never resumes a guest that exited.
    loop {
        core::hint::spin_loop();
    }
}

/// A log line being formatted (at most `LOG_MAX` bytes; the rest is cut).
#[derive(Debug)]
pub struct Line {
    buf: [u8; syscall::LOG_MAX],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; syscall::LOG_MAX],
            len: 0,
        }
    }
    /// Sends it.
    pub fn send(&self) {
        // Only whole `&str`s are appended, so the bytes are UTF-8 up to a
        // cut, which `log` does not see: `write_str` cuts on a boundary.
        if let Ok(text) = core::str::from_utf8(&self.buf[..self.len]) {
            log(text);
        }
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Formats and logs one line.
#[macro_export]
macro_rules! logf {
    ($($arg:tt)*) => {{
        let mut line = $crate::sys::Line::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        line.send();
    }};
}
