//! The 82574L's registers the driver uses, and the decisions made about
//! their values, as plain functions the in-kernel self-tests check.
//!
//! Offsets and bits are from the Intel 82574 GbE Controller Family
//! datasheet (chapter 10, "Device registers"), as Linux's e1000e driver
//! (`regs.h`, `defines.h`) and QEMU's `e1000e` model also name them.

/// Register offsets in BAR0.
pub mod reg {
    /// Device Control (10.2.2.1).
    pub const CTRL: u32 = 0x0000;
    /// Device Status, read-only (10.2.2.2).
    pub const STATUS: u32 = 0x0008;
    /// EEPROM Read, through the NVM's auto-read interface (10.2.2.5).
    pub const EERD: u32 = 0x0014;
    /// Extended Device Control (10.2.2.6).
    pub const CTRL_EXT: u32 = 0x0018;
    /// Interrupt Cause Read, clear on read (10.2.4.1).
    pub const ICR: u32 = 0x00c0;
    /// Interrupt Mask Clear (10.2.4.5).
    pub const IMC: u32 = 0x00d8;
    /// Receive Control (10.2.5.1).
    pub const RCTL: u32 = 0x0100;
    /// Transmit Control (10.2.6.1).
    pub const TCTL: u32 = 0x0400;
    /// Receive queue 0: descriptor base (low, high), length, head, tail.
    pub const RDBAL: u32 = 0x2800;
    pub const RDBAH: u32 = 0x2804;
    pub const RDLEN: u32 = 0x2808;
    pub const RDH: u32 = 0x2810;
    pub const RDT: u32 = 0x2818;
    /// Receive interrupt delay timers (0: none; interrupts are masked anyway).
    pub const RDTR: u32 = 0x2820;
    pub const RADV: u32 = 0x282c;
    /// Transmit queue 0: descriptor base (low, high), length, head, tail.
    pub const TDBAL: u32 = 0x3800;
    pub const TDBAH: u32 = 0x3804;
    pub const TDLEN: u32 = 0x3808;
    pub const TDH: u32 = 0x3810;
    pub const TDT: u32 = 0x3818;
    /// Transmit interrupt delay timers.
    pub const TIDV: u32 = 0x3820;
    pub const TADV: u32 = 0x382c;
    /// Transmit Arbitration Count, queue 0 (10.2.6.9).
    pub const TARC0: u32 = 0x3840;
    /// Missed packets (no room in the receive FIFO), clear on read.
    pub const MPC: u32 = 0x4010;
    /// Receive No Buffers Count (ring empty when a frame came), clear on read.
    pub const RNBC: u32 = 0x40a0;
    /// Receive Filter Control (10.2.5.4): EXTEN clear selects legacy
    /// receive descriptors.
    pub const RFCTL: u32 = 0x5008;
    /// Multicast Table Array, 128 dwords.
    pub const MTA: u32 = 0x5200;
    /// Receive Address 0, low and high (10.2.5.11).
    pub const RAL0: u32 = 0x5400;
    pub const RAH0: u32 = 0x5404;
}

/// CTRL bits.
pub mod ctrl {
    /// Blocks new bus-master requests (before a reset).
    pub const GIO_MASTER_DISABLE: u32 = 1 << 2;
    /// Link reset.
    pub const LRST: u32 = 1 << 3;
    /// Auto-speed detection.
    pub const ASDE: u32 = 1 << 5;
    /// Set link up.
    pub const SLU: u32 = 1 << 6;
    /// Invert loss-of-signal.
    pub const ILOS: u32 = 1 << 7;
    /// Force speed / force duplex.
    pub const FRCSPD: u32 = 1 << 11;
    pub const FRCDPX: u32 = 1 << 12;
    /// Device reset, self-clearing.
    pub const RST: u32 = 1 << 26;
    /// VLAN mode.
    pub const VME: u32 = 1 << 30;
    /// PHY reset.
    pub const PHY_RST: u32 = 1 << 31;
}

/// STATUS bits.
pub mod status {
    /// Link up.
    pub const LU: u32 = 1 << 1;
    /// Bus-master requests still pending.
    pub const GIO_MASTER_ENABLE: u32 = 1 << 19;
}

/// CTRL_EXT bits.
pub mod ctrl_ext {
    /// Tells management firmware that a driver owns the device.
    pub const DRV_LOAD: u32 = 1 << 28;
}

/// RCTL bits.
pub mod rctl {
    pub const EN: u32 = 1 << 1;
    /// Unicast / multicast promiscuous (the driver sets neither).
    pub const UPE: u32 = 1 << 3;
    pub const MPE: u32 = 1 << 4;
    /// Long packets (above 1522 bytes): off, the MTU is 1500.
    pub const LPE: u32 = 1 << 5;
    /// Loopback mode, bits 7:6 (00: normal).
    pub const LBM_MASK: u32 = 3 << 6;
    /// Descriptor type, bits 11:10 (00: legacy).
    pub const DTYP_MASK: u32 = 3 << 10;
    /// Accept broadcast (ARP requests).
    pub const BAM: u32 = 1 << 15;
    /// Buffer size, bits 17:16 (00 with BSEX clear: 2048 bytes).
    pub const BSIZE_MASK: u32 = 3 << 16;
    /// Buffer size extension (x16).
    pub const BSEX: u32 = 1 << 25;
    /// Strip the Ethernet CRC from received frames.
    pub const SECRC: u32 = 1 << 26;
}

/// TCTL bits.
pub mod tctl {
    pub const EN: u32 = 1 << 1;
    /// Pad short packets to 64 bytes.
    pub const PSP: u32 = 1 << 3;
    /// Collision threshold, bits 11:4 (the datasheet's recommended 0x0F).
    pub const CT_SHIFT: u32 = 4;
    /// Collision distance, bits 21:12 (0x3F for full duplex).
    pub const COLD_SHIFT: u32 = 12;
    /// Retransmit on late collision.
    pub const RTLC: u32 = 1 << 24;
}

/// TARC0: bit 10 enables the queue's arbitration (set at reset on the
/// 82574L; QEMU's model transmits nothing without it).
pub const TARC_ENABLE: u32 = 1 << 10;

/// RAH: the address is valid (used for filtering).
pub const RAH_AV: u32 = 1 << 31;

/// EERD fields (82574: start bit 0, done bit 1, word address from bit 2,
/// data in bits 31:16).
pub mod eerd {
    pub const START: u32 = 1 << 0;
    pub const DONE: u32 = 1 << 1;
    pub const ADDR_SHIFT: u32 = 2;
    pub const DATA_SHIFT: u32 = 16;
}

/// A receive buffer size the device offers and its RCTL encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxBufferSize {
    pub bytes: usize,
    /// BSIZE (bits 17:16) and BSEX.
    pub rctl_bits: u32,
}

/// Largest frame (without CRC) the device takes with RCTL.LPE clear.
const LONG_FRAME: usize = 1518;

/// The smallest receive buffer that holds a frame of `frame` bytes (the
/// CRC is stripped): 2048 (BSIZE 00), or with BSEX 4096 (11), 8192 (10),
/// 16384 (01).
pub const fn rx_buffer_for(frame: usize) -> Option<RxBufferSize> {
    let (bytes, rctl_bits) = if frame <= 2048 {
        (2048, 0)
    } else if frame <= 4096 {
        (4096, rctl::BSEX | (3 << 16))
    } else if frame <= 8192 {
        (8192, rctl::BSEX | (2 << 16))
    } else if frame <= 16384 {
        (16384, rctl::BSEX | (1 << 16))
    } else {
        return None;
    };
    Some(RxBufferSize { bytes, rctl_bits })
}

/// RCTL for normal reception: enabled, our unicast address and broadcast
/// only, legacy descriptors, `buffer`-sized buffers, CRC stripped, long
/// packets accepted when frames of `frame` bytes need them.
pub const fn rctl_value(buffer: RxBufferSize, frame: usize) -> u32 {
    // LBM, DTYP, UPE, MPE 0.
    let long = if frame > LONG_FRAME { rctl::LPE } else { 0 };
    rctl::EN | rctl::BAM | rctl::SECRC | buffer.rctl_bits | long
}

/// TCTL for normal transmission: enabled, short packets padded, the
/// datasheet's collision threshold and full-duplex collision distance.
pub const fn tctl_value() -> u32 {
    tctl::EN | tctl::PSP | (0x0f << tctl::CT_SHIFT) | (0x3f << tctl::COLD_SHIFT) | tctl::RTLC
}

/// CTRL with the link forced up (SLU) and speed detected, everything that
/// would hold the link down cleared.
pub const fn ctrl_link_up(ctrl: u32) -> u32 {
    (ctrl | ctrl::SLU | ctrl::ASDE)
        & !(ctrl::LRST | ctrl::PHY_RST | ctrl::ILOS | ctrl::FRCSPD | ctrl::FRCDPX | ctrl::VME)
}

/// The EERD value that starts reading NVM word `word`.
pub const fn eerd_request(word: u8) -> u32 {
    ((word as u32) << eerd::ADDR_SHIFT) | eerd::START
}

/// The word an EERD read delivered, once DONE is set.
pub const fn eerd_result(value: u32) -> Option<u16> {
    if value & eerd::DONE != 0 {
        Some((value >> eerd::DATA_SHIFT) as u16)
    } else {
        None
    }
}

/// The MAC address in NVM words 0..2 (each word little-endian: the first
/// octet is the low byte of word 0).
pub const fn mac_from_nvm(words: [u16; 3]) -> [u8; 6] {
    [
        words[0] as u8,
        (words[0] >> 8) as u8,
        words[1] as u8,
        (words[1] >> 8) as u8,
        words[2] as u8,
        (words[2] >> 8) as u8,
    ]
}

/// The MAC address in RAL0/RAH0, if RAH0 marks it valid.
pub const fn mac_from_receive_address(ral: u32, rah: u32) -> Option<[u8; 6]> {
    if rah & RAH_AV == 0 {
        return None;
    }
    Some([
        ral as u8,
        (ral >> 8) as u8,
        (ral >> 16) as u8,
        (ral >> 24) as u8,
        rah as u8,
        (rah >> 8) as u8,
    ])
}

/// RAL0 and RAH0 (valid) for `mac`.
pub const fn receive_address(mac: [u8; 6]) -> (u32, u32) {
    let ral = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
    let rah = (mac[4] as u32) | ((mac[5] as u32) << 8) | RAH_AV;
    (ral, rah)
}

/// Whether `mac` can be the station's address: unicast and not all zeros.
pub const fn is_station_address(mac: [u8; 6]) -> bool {
    let zero =
        mac[0] == 0 && mac[1] == 0 && mac[2] == 0 && mac[3] == 0 && mac[4] == 0 && mac[5] == 0;
    !zero && mac[0] & 1 == 0
}
