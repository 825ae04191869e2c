//! Legacy descriptors (82574 datasheet 7.1.4 receive, 7.2.10.1 transmit)
//! and the ring arithmetic of both queues, as plain functions the
//! in-kernel self-tests check.
//!
//! A ring of `len` descriptors is shared with the device through a head
//! (the device's next descriptor) and a tail (one past the last descriptor
//! software gave it). On receive the driver keeps the tail one behind its
//! own next descriptor, so head == tail never means "full". On transmit the
//! driver fills at the tail and reclaims from `clean`, the oldest descriptor
//! still in flight; one slot stays empty so that tail == clean is "empty".

/// Legacy receive descriptor, 16 bytes, written back by the device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RxDesc {
    /// Bus address of the buffer.
    pub buffer: u64,
    /// Bytes the device wrote into the buffer.
    pub length: u16,
    pub checksum: u16,
    pub status: u8,
    pub errors: u8,
    pub special: u16,
}

/// Legacy transmit descriptor, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TxDesc {
    pub buffer: u64,
    pub length: u16,
    pub cso: u8,
    pub cmd: u8,
    pub status: u8,
    pub css: u8,
    pub special: u16,
}

const _: () = assert!(core::mem::size_of::<RxDesc>() == 16);
const _: () = assert!(core::mem::size_of::<TxDesc>() == 16);

/// Receive status: descriptor done, end of packet.
pub const RX_DD: u8 = 1 << 0;
pub const RX_EOP: u8 = 1 << 1;
/// Receive errors that make a frame unusable: CRC, symbol, sequence,
/// carrier extension, data error (the checksum-error bits only report on
/// offloads the driver does not use).
pub const RX_FRAME_ERRORS: u8 = 0x01 | 0x02 | 0x04 | 0x10 | 0x80;

/// Transmit command: end of packet, insert the CRC, report status (DD).
pub const TX_EOP: u8 = 1 << 0;
pub const TX_IFCS: u8 = 1 << 1;
pub const TX_RS: u8 = 1 << 3;
/// Transmit status: descriptor done.
pub const TX_DD: u8 = 1 << 0;

/// What a receive descriptor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxSlot {
    /// Still the device's.
    Pending,
    /// A whole, good frame of this many bytes.
    Frame(usize),
    /// Part of a frame longer than one buffer, or a bad frame: dropped.
    /// `last` is set on the frame's final descriptor.
    Drop { last: bool },
}

/// Classifies a written-back receive descriptor whose buffer holds
/// `buffer_bytes`. A frame is delivered only from a single descriptor
/// with end-of-packet, no frame error and a length that fits.
pub const fn classify_rx(status: u8, errors: u8, length: u16, buffer_bytes: usize) -> RxSlot {
    if status & RX_DD == 0 {
        return RxSlot::Pending;
    }
    let last = status & RX_EOP != 0;
    let len = length as usize;
    if !last || errors & RX_FRAME_ERRORS != 0 || len == 0 || len > buffer_bytes {
        return RxSlot::Drop { last };
    }
    RxSlot::Frame(len)
}

/// The descriptor after `index` in a ring of `len`.
pub const fn next(index: u16, len: u16) -> u16 {
    if index + 1 >= len {
        0
    } else {
        index + 1
    }
}

/// The descriptor before `index` in a ring of `len`.
pub const fn previous(index: u16, len: u16) -> u16 {
    if index == 0 {
        len - 1
    } else {
        index - 1
    }
}

/// Transmit descriptors between `clean` (oldest in flight) and `tail`
/// (next to fill).
pub const fn in_flight(tail: u16, clean: u16, len: u16) -> u16 {
    if tail >= clean {
        tail - clean
    } else {
        len - clean + tail
    }
}

/// Whether another transmit descriptor may be filled (one stays empty).
pub const fn tx_has_room(tail: u16, clean: u16, len: u16) -> bool {
    in_flight(tail, clean, len) + 1 < len
}

/// RDT/TDT value for descriptor `index`.
pub const fn tail_register(index: u16) -> u32 {
    index as u32
}

/// RDLEN/TDLEN for `len` descriptors: a multiple of 128 bytes, i.e. of 8
/// descriptors, which the ring sizes here are.
pub const fn ring_bytes(len: u16) -> u32 {
    len as u32 * 16
}
