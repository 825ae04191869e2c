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

/// Transmit data descriptor, extended form (datasheet 7.2.10.3), 16
/// bytes: the driver uses it for every frame, so that the TCP checksum can
/// be inserted (the legacy form's checksum fields are not modelled by
/// QEMU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TxDataDesc {
    pub buffer: u64,
    /// Length bits 15:0.
    pub length: u16,
    /// Length bits 19:16 (0 here) and the descriptor type (bits 23:20).
    pub dtyp: u8,
    pub dcmd: u8,
    /// Written back: DD in bit 0. At the same offset in every descriptor
    /// form, which is what reclaiming reads.
    pub status: u8,
    pub popts: u8,
    pub special: u16,
}

/// Transmit context descriptor (datasheet 7.2.10.2): where the IP and TCP
/// headers and their checksums are, for the data descriptors after it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TxContextDesc {
    /// IP checksum start, offset and end (inclusive).
    pub ipcss: u8,
    pub ipcso: u8,
    pub ipcse: u16,
    /// TCP checksum start, offset, end (0: to the end of the frame).
    pub tucss: u8,
    pub tucso: u8,
    pub tucse: u16,
    /// Payload length bits 19:0 (TSO only), type 23:20 (0), command 31:24.
    pub cmd_and_length: u32,
    pub status: u8,
    pub hdr_len: u8,
    pub mss: u16,
}

const _: () = assert!(core::mem::size_of::<RxDesc>() == 16);
const _: () = assert!(core::mem::size_of::<TxDataDesc>() == 16);
const _: () = assert!(core::mem::size_of::<TxContextDesc>() == 16);

/// Receive status: descriptor done, end of packet.
pub const RX_DD: u8 = 1 << 0;
pub const RX_EOP: u8 = 1 << 1;
/// Receive status: the device checked the TCP/UDP checksum (TCPCS), and
/// asks that checksum indications be ignored (IXSM).
pub const RX_TCPCS: u8 = 1 << 5;
pub const RX_IXSM: u8 = 1 << 2;
/// Receive errors that make a frame unusable: CRC, symbol, sequence,
/// carrier extension, data error. (IPE, the IP header checksum, is left to
/// smoltcp, which checks the header itself.)
pub const RX_FRAME_ERRORS: u8 = 0x01 | 0x02 | 0x04 | 0x10 | 0x80;
/// Receive error: the TCP/UDP checksum the device checked is wrong.
pub const RX_TCPE: u8 = 0x20;

/// Data descriptor command: end of packet, insert the CRC, report status
/// (DD), extended descriptor.
pub const TX_EOP: u8 = 1 << 0;
pub const TX_IFCS: u8 = 1 << 1;
pub const TX_RS: u8 = 1 << 3;
pub const TX_DEXT: u8 = 1 << 5;
/// Descriptor type in `dtyp` bits 7:4: data (0001b); context is 0000b.
pub const TX_DTYP_DATA: u8 = 1 << 4;
/// Packet options: insert the TCP/UDP checksum.
pub const TX_POPTS_TXSM: u8 = 1 << 1;
/// Context command (bits 31:24 of `cmd_and_length`): TCP, IPv4, report
/// status, extended.
pub const TX_CONTEXT_CMD: u32 = (1 << 24) | (1 << 25) | (1 << 27) | (1 << 29);
/// Transmit status: descriptor done.
pub const TX_DD: u8 = 1 << 0;

/// The one context the driver uses: an Ethernet frame with a 20-byte IPv4
/// header (smoltcp sends no IP options) and TCP after it, the TCP checksum
/// from the TCP header to the end of the frame.
pub const fn tcp_ipv4_context() -> TxContextDesc {
    TxContextDesc {
        ipcss: 14,
        ipcso: 14 + 10,
        ipcse: 14 + 20 - 1,
        tucss: 14 + 20,
        tucso: 14 + 20 + 16,
        tucse: 0,
        cmd_and_length: TX_CONTEXT_CMD,
        status: 0,
        hdr_len: 0,
        mss: 0,
    }
}

/// The data descriptor for a frame of `len` bytes at `buffer`, with the
/// TCP checksum inserted by the device when `insert_tcp_checksum`.
pub const fn tx_data(buffer: u64, len: u16, insert_tcp_checksum: bool) -> TxDataDesc {
    TxDataDesc {
        buffer,
        length: len,
        dtyp: TX_DTYP_DATA,
        dcmd: TX_EOP | TX_IFCS | TX_RS | TX_DEXT,
        status: 0,
        popts: if insert_tcp_checksum {
            TX_POPTS_TXSM
        } else {
            0
        },
        special: 0,
    }
}

/// What a receive descriptor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxSlot {
    /// Still the device's.
    Pending,
    /// A whole, good frame of `len` bytes; `checksum_checked` when the
    /// device verified its TCP/UDP checksum (a wrong one is a `Drop`).
    Frame { len: usize, checksum_checked: bool },
    /// Part of a frame longer than one buffer, or a bad frame: dropped.
    /// `last` is set on the frame's final descriptor.
    Drop { last: bool },
}

/// Classifies a written-back receive descriptor whose buffer holds
/// `buffer_bytes`. A frame is delivered only from a single descriptor
/// with end-of-packet, no frame error, no checksum error the device found,
/// and a length that fits.
pub const fn classify_rx(status: u8, errors: u8, length: u16, buffer_bytes: usize) -> RxSlot {
    if status & RX_DD == 0 {
        return RxSlot::Pending;
    }
    let last = status & RX_EOP != 0;
    let len = length as usize;
    let checked = status & RX_TCPCS != 0 && status & RX_IXSM == 0;
    let bad_checksum = checked && errors & RX_TCPE != 0;
    if !last || errors & RX_FRAME_ERRORS != 0 || bad_checksum || len == 0 || len > buffer_bytes {
        return RxSlot::Drop { last };
    }
    RxSlot::Frame {
        len,
        checksum_checked: checked,
    }
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
