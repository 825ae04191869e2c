//! In-kernel self-tests of the network's pure logic (the kernel has no host
//! tests): the e1000e register values and MAC decoding, the descriptor
//! ring arithmetic and write-back classification, and the benchmark's
//! pattern checker. `selftest.rs` lists them in its suite.

use super::bench::{fill_pattern, first_mismatch};
use super::checksum::{self, Frame};
use super::e1000e::regs::{self, ctrl, rctl, tctl};
use super::e1000e::ring::{self, RxSlot};
use crate::platform::Platform;

type TestResult = Result<(), &'static str>;

fn check(cond: bool, msg: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(msg)
    }
}

/// The register values the e1000e driver programs, and MAC decoding.
pub fn e1000e_registers(_: &mut Platform) -> TestResult {
    let Some(standard) = regs::rx_buffer_for(1514) else {
        return Err("no buffer for a 1514-byte frame");
    };
    let r = regs::rctl_value(standard, 1514);
    check(r & rctl::EN != 0, "RCTL: receiver not enabled")?;
    check(r & rctl::BAM != 0, "RCTL: broadcast (ARP) not accepted")?;
    check(r & rctl::SECRC != 0, "RCTL: CRC not stripped")?;
    check(
        r & (rctl::UPE | rctl::MPE) == 0,
        "RCTL: promiscuous reception on",
    )?;
    check(r & rctl::LPE == 0, "RCTL: long packets on (MTU is 1500)")?;
    check(r & rctl::LBM_MASK == 0, "RCTL: loopback mode")?;
    check(r & rctl::DTYP_MASK == 0, "RCTL: not legacy descriptors")?;
    check(
        r & (rctl::BSIZE_MASK | rctl::BSEX) == 0 && standard.bytes == 2048,
        "RCTL: a 1500-byte MTU does not get 2048-byte buffers",
    )?;
    // Jumbo frames: the next size up that holds the frame, and LPE.
    for (frame, bytes, bsize) in [
        (2048, 2048, 0),
        (2049, 4096, 3),
        (8014, 8192, 2),
        (16384, 16384, 1),
    ] {
        let buffer = regs::rx_buffer_for(frame).ok_or("no buffer for a jumbo frame")?;
        let r = regs::rctl_value(buffer, frame);
        check(buffer.bytes == bytes, "jumbo frame: buffer size")?;
        check(
            (r & rctl::BSIZE_MASK) >> 16 == bsize && (r & rctl::BSEX != 0) == (bytes > 2048),
            "jumbo frame: BSIZE/BSEX encoding",
        )?;
        check(r & rctl::LPE != 0, "jumbo frame: long packets not accepted")?;
    }
    check(
        regs::rx_buffer_for(16385).is_none(),
        "a frame above 16 KiB accepted",
    )?;
    let t = regs::tctl_value();
    check(
        t & tctl::EN != 0 && t & tctl::PSP != 0,
        "TCTL: EN or PSP clear",
    )?;
    check(
        (t >> tctl::CT_SHIFT) & 0xff == 0x0f,
        "TCTL: collision threshold",
    )?;
    check(
        (t >> tctl::COLD_SHIFT) & 0x3ff == 0x3f,
        "TCTL: collision distance",
    )?;
    let holds_down =
        ctrl::LRST | ctrl::PHY_RST | ctrl::ILOS | ctrl::FRCSPD | ctrl::FRCDPX | ctrl::VME;
    let up = regs::ctrl_link_up(u32::MAX);
    check(
        up & holds_down == 0,
        "CTRL: a bit holding the link down stays",
    )?;
    check(
        regs::ctrl_link_up(0) == ctrl::SLU | ctrl::ASDE,
        "CTRL: link up is not SLU|ASDE",
    )?;
    check(
        regs::ctrl_link_up(ctrl::RST) & ctrl::RST != 0,
        "CTRL: unrelated bits not kept",
    )?;
    check(
        regs::eerd_request(2) == (2 << 2) | 1,
        "EERD: request encoding",
    )?;
    check(
        regs::eerd_result(0xbeef_0002) == Some(0xbeef) && regs::eerd_result(0xbeef_0000).is_none(),
        "EERD: result decoding",
    )?;
    let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    check(
        regs::mac_from_nvm([0x5452, 0x1200, 0x5634]) == mac,
        "MAC from EEPROM words",
    )?;
    let (ral, rah) = regs::receive_address(mac);
    check(rah & regs::RAH_AV != 0, "RAH: address-valid clear")?;
    check(
        regs::mac_from_receive_address(ral, rah) == Some(mac),
        "RAL/RAH round trip",
    )?;
    check(
        regs::mac_from_receive_address(ral, rah & !regs::RAH_AV).is_none(),
        "RAL/RAH without AV taken as valid",
    )?;
    check(regs::is_station_address(mac), "a unicast MAC refused")?;
    check(
        !regs::is_station_address([0x01, 0, 0x5e, 0, 0, 1]),
        "a multicast MAC accepted",
    )?;
    check(!regs::is_station_address([0; 6]), "the zero MAC accepted")
}

/// Ring index arithmetic and receive write-back classification.
pub fn e1000e_rings(_: &mut Platform) -> TestResult {
    check(
        ring::next(7, 8) == 0 && ring::next(0, 8) == 1,
        "next does not wrap",
    )?;
    check(
        ring::previous(0, 8) == 7 && ring::previous(5, 8) == 4,
        "previous does not wrap",
    )?;
    check(ring::in_flight(3, 3, 8) == 0, "empty ring not empty")?;
    check(ring::in_flight(2, 6, 8) == 4, "wrapped in-flight count")?;
    check(ring::tx_has_room(6, 0, 8), "room with 6 of 8 in flight")?;
    check(
        !ring::tx_has_room(7, 0, 8) && !ring::tx_has_room(2, 3, 8),
        "a full ring (len - 1 in flight) reports room",
    )?;
    // Walk a ring of 8 through two laps: fill to full, reclaim, refill.
    let (len, mut tail, mut clean, mut sent) = (8u16, 0u16, 0u16, 0u32);
    for _ in 0..2 * len {
        while ring::tx_has_room(tail, clean, len) {
            tail = ring::next(tail, len);
            sent += 1;
        }
        check(
            ring::in_flight(tail, clean, len) == len - 1,
            "full ring holds len - 1",
        )?;
        clean = ring::next(ring::next(clean, len), len);
    }
    check(sent == 7 + 2 * 15, "descriptors filled over two laps")?;
    check(
        ring::ring_bytes(256).is_multiple_of(128),
        "RDLEN not a multiple of 128",
    )?;
    let ctx = ring::tcp_ipv4_context();
    check(
        ctx.tucss == 34 && ctx.tucso == 50 && ctx.tucse == 0,
        "TCP checksum context is not Ethernet + 20-byte IPv4",
    )?;
    check(
        ctx.cmd_and_length & (1 << 29) != 0 && (ctx.cmd_and_length >> 20) & 0xf == 0,
        "context descriptor is not DEXT with type 0",
    )?;
    let data = ring::tx_data(0x1000, 60, true);
    let command = ring::TX_DEXT | ring::TX_EOP | ring::TX_RS;
    check(
        data.dtyp >> 4 == 1 && data.dcmd & command == command && data.popts == ring::TX_POPTS_TXSM,
        "data descriptor type, command or TXSM",
    )?;
    check(
        ring::tx_data(0x1000, 60, false).popts == 0,
        "TXSM set for a frame without a TCP segment",
    )?;
    let buf = 2048;
    check(
        ring::classify_rx(0, 0, 60, buf) == RxSlot::Pending,
        "DD clear is not pending",
    )?;
    let frame = |checked| RxSlot::Frame {
        len: 60,
        checksum_checked: checked,
    };
    check(
        ring::classify_rx(ring::RX_DD | ring::RX_EOP, 0, 60, buf) == frame(false),
        "a good frame not delivered",
    )?;
    check(
        ring::classify_rx(ring::RX_DD | ring::RX_EOP | ring::RX_TCPCS, 0, 60, buf) == frame(true),
        "a device-checked frame not marked checked",
    )?;
    check(
        ring::classify_rx(
            ring::RX_DD | ring::RX_EOP | ring::RX_TCPCS,
            ring::RX_TCPE,
            60,
            buf,
        ) == RxSlot::Drop { last: true },
        "a frame with a wrong TCP checksum delivered",
    )?;
    check(
        ring::classify_rx(
            ring::RX_DD | ring::RX_EOP | ring::RX_TCPCS | ring::RX_IXSM,
            0,
            60,
            buf,
        ) == frame(false),
        "IXSM not honoured",
    )?;
    check(
        ring::classify_rx(ring::RX_DD, 0, 2048, buf) == RxSlot::Drop { last: false },
        "a frame without EOP delivered",
    )?;
    check(
        ring::classify_rx(ring::RX_DD | ring::RX_EOP, 0x01, 60, buf) == RxSlot::Drop { last: true },
        "a CRC error delivered",
    )?;
    check(
        ring::classify_rx(ring::RX_DD | ring::RX_EOP, ring::RX_TCPE, 60, buf) == frame(false),
        "a checksum error bit without TCPCS dropped a frame",
    )?;
    check(
        ring::classify_rx(ring::RX_DD | ring::RX_EOP, 0, 4096, buf) == RxSlot::Drop { last: true },
        "a length beyond the buffer delivered",
    )?;
    check(
        ring::classify_rx(ring::RX_DD | ring::RX_EOP, 0, 0, buf) == RxSlot::Drop { last: true },
        "an empty frame delivered",
    )
}

/// An IPv4 TCP frame: Ethernet, a 20-byte IP header, a 20-byte TCP
/// header, `payload` bytes of data (the TCP checksum field left zero).
fn tcp_frame(buf: &mut [u8; 1600], payload: usize) -> usize {
    let len = 14 + 20 + 20 + payload;
    buf.fill(0);
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut buf[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 20 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[169, 254, 0, 2]);
    ip[16..20].copy_from_slice(&[169, 254, 0, 1]);
    buf[34..36].copy_from_slice(&49152u16.to_be_bytes());
    buf[36..38].copy_from_slice(&7000u16.to_be_bytes());
    buf[46] = 5 << 4; // data offset: 20 bytes
    for (i, b) in buf[54..len].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    len
}

/// The NIC layer's TCP checksums agree with smoltcp's own code (the
/// oracle), catch a changed byte, and a seeded field completed the way a
/// device does gives the same checksum.
pub fn tcp_checksums(_: &mut Platform) -> TestResult {
    use smoltcp::wire::{checksum as reference, IpAddress, TcpPacket};
    let mut data = [0u8; 1600];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(101) ^ (i >> 3) as u8;
    }
    for start in 0..9 {
        for len in (0..80).chain([1459, 1460, 1461, 1591 - start]) {
            let d = &data[start..start + len];
            check(
                checksum::sum(d).swap_bytes() == reference::data(d),
                "64-bit-word sum differs from smoltcp's",
            )?;
        }
    }
    check(
        checksum::sum(&[0xff; 64]) == 0xffff && checksum::sum(&[]) == 0,
        "sum of all ones or of nothing",
    )?;
    let (src, dst) = (IpAddress::v4(169, 254, 0, 2), IpAddress::v4(169, 254, 0, 1));
    for payload in [0usize, 1, 7, 1460] {
        let mut frame = [0u8; 1600];
        let len = tcp_frame(&mut frame, payload);
        let Frame::Tcp(segment) = checksum::classify(&frame[..len]) else {
            return Err("an IPv4 TCP frame not recognised");
        };
        check(
            segment.start == 34 && segment.len == 20 + payload,
            "TCP segment bounds",
        )?;
        segment.fill(&mut frame[..len]);
        let tcp = TcpPacket::new_checked(&frame[34..len]).map_err(|_| "TCP header")?;
        check(
            tcp.verify_checksum(&src, &dst),
            "smoltcp rejects the checksum",
        )?;
        check(
            checksum::incoming_ok(&frame[..len]),
            "own checksum rejected",
        )?;
        let filled = [frame[50], frame[51]];
        // What a device does with the seed: sum from the TCP header to the
        // end (the seeded field included), complement, store.
        segment.seed(&mut frame[..len]);
        let device = !checksum::sum(&frame[34..len]).swap_bytes();
        check(
            device.to_be_bytes() == filled,
            "a seeded checksum completed by the device differs",
        )?;
        frame[50..52].copy_from_slice(&filled);
        frame[len - 1] ^= 0x04;
        check(
            !checksum::incoming_ok(&frame[..len]),
            "a changed byte passes the checksum",
        )?;
    }
    let mut frame = [0u8; 1600];
    let len = tcp_frame(&mut frame, 100);
    frame[20] = 0x20; // more fragments
    check(
        checksum::classify(&frame[..len]) == Frame::Malformed,
        "a fragment taken for a whole segment",
    )?;
    frame[20] = 0;
    check(
        checksum::classify(&frame[..len - 1]) == Frame::Malformed,
        "a truncated segment taken for a whole one",
    )?;
    frame[23] = 17; // UDP
    check(
        checksum::classify(&frame[..len]) == Frame::Other,
        "UDP taken for TCP",
    )?;
    frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
    check(
        checksum::classify(&frame[..len]) == Frame::Other && checksum::incoming_ok(&frame[..len]),
        "ARP not passed through",
    )
}

/// The virtio HAL's queue-memory pool hands out disjoint runs, takes
/// back only what it handed out, and refuses what does not fit.
pub fn virtio_hal_pool(_: &mut Platform) -> TestResult {
    use super::virtio::{HalPool, HAL_POOL_FRAMES};
    const PAGE: u64 = 4096;
    let base = 0x10_0000;
    let mut pool = HalPool::new(base);
    let a = pool.take(3).ok_or("3 pages of an empty pool")?;
    let b = pool.take(2).ok_or("2 more pages")?;
    check(a == base && b == base + 3 * PAGE, "runs not first fit")?;
    check(pool.take(0).is_none(), "0 pages handed out")?;
    check(
        pool.take(HAL_POOL_FRAMES).is_none(),
        "more pages than are free handed out",
    )?;
    check(
        !pool.give(a + PAGE / 2, 1),
        "an unaligned address taken back",
    )?;
    check(!pool.give(b, 3), "a longer run than handed out taken back")?;
    check(pool.give(a, 3), "a run handed out not taken back")?;
    check(!pool.give(a, 3), "a run taken back twice")?;
    check(pool.take(3) == Some(a), "a freed run not reused")?;
    check(
        !pool.give(base - PAGE, 1),
        "an address below the pool taken",
    )?;
    let mut whole = HalPool::new(base);
    check(
        whole.take(HAL_POOL_FRAMES) == Some(base) && whole.take(1).is_none(),
        "the whole pool, then nothing",
    )?;
    check(
        HalPool::new(base).take(HAL_POOL_FRAMES + 1).is_none(),
        "a run longer than the pool",
    )
}

/// The benchmark's pattern: any chunking gives the same bytes, and the
/// checker finds a changed byte at its exact position.
pub fn bench_pattern(_: &mut Platform) -> TestResult {
    let mut whole = [0u8; 1024];
    fill_pattern(&mut whole, 0);
    check(whole[..8] != whole[8..16], "pattern repeats word to word")?;
    for start in [0usize, 1, 7, 8, 13, 1000] {
        let mut part = [0u8; 24];
        fill_pattern(&mut part, start as u64);
        let n = part.len().min(whole.len() - start);
        check(
            part[..n] == whole[start..start + n],
            "a chunk at an offset differs from the whole",
        )?;
        check(
            first_mismatch(&whole[start..], start as u64).is_none(),
            "correct data reported corrupt",
        )?;
    }
    for flip in [0usize, 3, 8, 500, 1021, 1023] {
        for start in [0usize, 5] {
            let mut data = whole;
            data[flip] ^= 0x40;
            if flip < start {
                continue;
            }
            check(
                first_mismatch(&data[start..], start as u64) == Some(flip - start),
                "a flipped byte not found where it is",
            )?;
        }
    }
    // A byte lost from the stream shifts everything after it.
    check(
        first_mismatch(&whole[1..], 0) == Some(0),
        "a lost byte not noticed",
    )
}
