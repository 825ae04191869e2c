//! 16550 UART driver, polled. COM1 carries the text console, COM2 the
//! binary defmt log stream (text and defmt frames on one port garble the text).

use x86_64::instructions::port::Port;

/// I/O base of COM1 (text console).
pub const COM1: u16 = 0x3f8;
/// I/O base of COM2 (defmt frames).
pub const COM2: u16 = 0x2f8;

/// Register offsets from the UART base (8250/16550 data sheet).
mod reg {
    pub const DATA: u16 = 0;
    pub const INTERRUPT_ENABLE: u16 = 1;
    pub const FIFO_CONTROL: u16 = 2;
    pub const LINE_CONTROL: u16 = 3;
    pub const MODEM_CONTROL: u16 = 4;
    pub const LINE_STATUS: u16 = 5;
    /// Line status: transmit holding register empty.
    pub const LSR_THR_EMPTY: u8 = 1 << 5;
}

/// Upper bound on polls of the line status before a byte is dropped: a
/// missing or stuck UART must not hang the monitor.
const MAX_SPINS: u32 = 100_000;

/// One polled UART.
#[derive(Debug)]
pub struct Uart {
    base: u16,
}

impl Uart {
    /// A UART at I/O base `base`; call [`Uart::init`] before use.
    pub const fn new(base: u16) -> Self {
        Uart { base }
    }

    fn port(&self, offset: u16) -> Port<u8> {
        Port::new(self.base + offset)
    }

    /// 115200 8N1, FIFOs on, interrupts off.
    pub fn init(&mut self) {
        let writes: [(u16, u8); 7] = [
            (reg::INTERRUPT_ENABLE, 0x00),
            (reg::LINE_CONTROL, 0x80), // DLAB on: next two are the divisor
            (reg::DATA, 0x01),         // divisor 1 = 115200 baud
            (reg::INTERRUPT_ENABLE, 0x00),
            (reg::LINE_CONTROL, 0x03), // 8 bits, no parity, 1 stop, DLAB off
            (reg::FIFO_CONTROL, 0xc7), // enable + clear FIFOs, 14-byte trigger
            (reg::MODEM_CONTROL, 0x03), // DTR + RTS, no loopback
        ];
        for (offset, value) in writes {
            // SAFETY: the UART registers at `base` are I/O ports with no
            // memory effects; writing them only reconfigures the UART.
            unsafe { self.port(offset).write(value) };
        }
    }

    /// Sends one byte, waiting (bounded) for room in the transmitter.
    pub fn write_byte(&mut self, byte: u8) {
        for _ in 0..MAX_SPINS {
            // SAFETY: reading the line status register has no side effects.
            let status = unsafe { self.port(reg::LINE_STATUS).read() };
            if status & reg::LSR_THR_EMPTY != 0 {
                break;
            }
        }
        // SAFETY: writing the data register queues one byte for transmission.
        unsafe { self.port(reg::DATA).write(byte) };
    }

    /// Sends all bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}
