//! TCP checksums done by the NIC layer instead of smoltcp: the device's
//! capabilities tell smoltcp to leave TCP checksums alone, and the drivers
//! compute (transmit) and verify (receive) them: the e1000e's hardware
//! where it can, this module's code otherwise.
//!
//! Why: under TCG the guest's checksum loop was half the CPU time of a
//! bulk transfer (smoltcp sums 16-bit words; `cargo xtask netbench` went
//! from about 200 to about 400 Mbit/s on the e1000e with checksums off).
//! [`sum`] adds 64-bit words with end-around carry, a quarter of the
//! additions, with the same result (RFC 1071: the ones'-complement sum
//! does not depend on the word size or the byte order it is taken in, as
//! long as the final 16 bits are read in the order they were summed).
//!
//! Only IPv4 TCP is handled (smoltcp is built with `socket-tcp` and
//! `proto-ipv4` only); the IPv4 header checksum stays smoltcp's (20 bytes).

use smoltcp::wire::{checksum, IpProtocol, Ipv4Address};

/// Ethernet header bytes (no VLAN tag: the monitor sends none and accepts
/// none, VLAN filtering being off).
const ETHERNET_HEADER: usize = 14;
/// Offset of the checksum inside the TCP header.
const TCP_CHECKSUM_AT: usize = 16;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];

/// The ones'-complement sum of `data` as 16-bit words in memory order,
/// folded to 16 bits (not complemented). Read as little-endian, which is
/// how it was summed; its bytes swapped, it is the sum of the big-endian
/// (network order) words.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut carries: u64 = 0;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        // Cannot fail: the chunk is 8 bytes.
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let (s, c) = acc.overflowing_add(w);
        acc = s;
        carries += u64::from(c);
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let (s, c) = acc.overflowing_add(u64::from_le_bytes(tail));
    acc = s;
    carries += u64::from(c);
    // Fold 64 -> 16 bits; every carry out of bit 63 is worth 1.
    let (s, c) = acc.overflowing_add(carries);
    let mut folded = u128::from(s) + u128::from(c);
    while folded > 0xffff {
        folded = (folded & 0xffff) + (folded >> 16);
    }
    folded as u16
}

/// Where the TCP segment of an IPv4 frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    /// Offset of the TCP header in the frame.
    pub start: usize,
    /// Bytes of header and payload (from the IPv4 total length).
    pub len: usize,
    src: Ipv4Address,
    dst: Ipv4Address,
}

/// What a frame is, for checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not IPv4 TCP: nothing to do (ARP, and anything smoltcp drops).
    Other,
    /// An unfragmented IPv4 TCP segment.
    Tcp(TcpSegment),
    /// IPv4 TCP that cannot be checked: truncated, lengths that do not add
    /// up, or a fragment. Dropped on receive.
    Malformed,
}

/// Finds the TCP segment of an Ethernet frame, if it carries one.
pub fn classify(frame: &[u8]) -> Frame {
    if frame.len() < ETHERNET_HEADER + 20 || frame[12..14] != ETHERTYPE_IPV4 {
        return Frame::Other;
    }
    let ip = &frame[ETHERNET_HEADER..];
    if ip[0] >> 4 != 4 || ip[9] != u8::from(IpProtocol::Tcp) {
        return Frame::Other;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if header < 20 || total > ip.len() || total < header + 20 || fragmented {
        return Frame::Malformed;
    }
    let address = |at: usize| Ipv4Address::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Frame::Tcp(TcpSegment {
        start: ETHERNET_HEADER + header,
        len: total - header,
        src: address(12),
        dst: address(16),
    })
}

impl TcpSegment {
    /// The pseudo-header's sum (not complemented), in network order.
    fn pseudo_header(&self) -> u16 {
        // smoltcp returns the folded, not complemented sum.
        checksum::pseudo_header_v4(&self.src, &self.dst, IpProtocol::Tcp, self.len as u32)
    }

    fn checksum_at(&self) -> usize {
        self.start + TCP_CHECKSUM_AT
    }

    /// Writes the segment's checksum (the field's old value is ignored).
    pub fn fill(&self, frame: &mut [u8]) {
        let at = self.checksum_at();
        frame[at..at + 2].fill(0);
        let data = sum(&frame[self.start..self.start + self.len]).swap_bytes();
        let total = checksum::combine(&[self.pseudo_header(), data]);
        frame[at..at + 2].copy_from_slice(&(!total).to_be_bytes());
    }

    /// Writes the pseudo-header's sum into the checksum field, which a NIC
    /// that inserts TCP checksums expects there.
    pub fn seed(&self, frame: &mut [u8]) {
        let at = self.checksum_at();
        frame[at..at + 2].copy_from_slice(&self.pseudo_header().to_be_bytes());
    }

    /// Whether the segment's checksum is right.
    pub fn verify(&self, frame: &[u8]) -> bool {
        let data = sum(&frame[self.start..self.start + self.len]).swap_bytes();
        checksum::combine(&[self.pseudo_header(), data]) == 0xffff
    }
}

/// Fills in the TCP checksum of an outgoing frame, if it has a segment.
pub fn fill_outgoing(frame: &mut [u8]) {
    if let Frame::Tcp(segment) = classify(frame) {
        segment.fill(frame);
    }
}

/// Whether an incoming frame may go to smoltcp: not TCP, or TCP with a
/// right checksum.
pub fn incoming_ok(frame: &[u8]) -> bool {
    match classify(frame) {
        Frame::Other => true,
        Frame::Tcp(segment) => segment.verify(frame),
        Frame::Malformed => false,
    }
}
