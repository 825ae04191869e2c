//! Intel 82574L driver (QEMU's `e1000e`, and the same register model as
//! many real Intel GbE parts), polled: interrupts stay masked, the main
//! loop's stack asks for frames and the driver looks at its rings.
//!
//! One receive queue of legacy descriptors and one transmit queue of
//! extended ones (one context descriptor, then a data descriptor per
//! frame), each with a buffer per descriptor in monitor frames (2 KiB for
//! a 1500-byte MTU, up to 16 KiB for jumbo frames)
//! ([`super::dma`]); frames are handed to smoltcp in place and built in
//! place (no copy in the driver, no allocation after bring-up). The device
//! inserts TCP checksums on transmit and checks them on receive
//! ([`super::checksum`]). Doorbells (tail writes, each an
//! MMIO exit) are coalesced: the receive tail moves every [`RX_BATCH`]
//! frames or when the ring is found empty, the transmit tail at
//! [`super::nic::Nic::flush`] after each poll or every [`TX_BATCH`] frames.
//!
//! Bring-up, each step named in errors: map BAR0, enable bus mastering,
//! quiesce bus mastering and reset the device, mask interrupts, read the
//! MAC from the EEPROM (EERD; RAL0/RAH0 as fall-back and cross-check),
//! program the receive address, set the link up and wait for it, then the
//! receive and transmit rings.

pub mod regs;
pub mod ring;

use core::sync::atomic::{fence, Ordering};

use self::regs::{ctrl, ctrl_ext, reg, status, RxBufferSize};
use self::ring::{RxDesc, RxSlot, TxContextDesc, TxDataDesc};
use super::checksum::{self, Frame};
use super::dma::DmaRegion;
use super::nic::{NicCounters, NicFault, StepError};
use crate::pci::{Device as PciDevice, PciBus};
use crate::platform::Memory;
use crate::time;

/// Vendor and device id of the 82574L.
pub const PCI_ID: (u16, u16) = (0x8086, 0x10d3);

/// Receive descriptors (a multiple of 8, as RDLEN requires).
const RX_LEN: u16 = 256;
/// Transmit descriptors.
const TX_LEN: u16 = 256;
/// Frames the peer can send before the driver hands buffers back.
pub const RX_BURST: usize = RX_LEN as usize - 1 - RX_BATCH as usize;
/// Receive buffers returned to the device per tail write.
const RX_BATCH: u16 = 32;
/// Transmit frames queued per tail write at most.
const TX_BATCH: u16 = 32;

/// How long bring-up waits for the device at each step.
const RESET_TIMEOUT_MS: u64 = 50;
const EEPROM_TIMEOUT_MS: u64 = 10;
const LINK_TIMEOUT_MS: u64 = 5_000;

/// BAR0: the register file.
#[derive(Clone, Copy, Debug)]
struct Regs {
    base: u64,
}

impl Regs {
    fn read(self, offset: u32) -> u32 {
        // SAFETY: BAR0 (128 KiB) is mapped uncached at `base` (identity)
        // and every offset used is a 4-aligned register inside it.
        unsafe { core::ptr::read_volatile((self.base + u64::from(offset)) as *const u32) }
    }

    fn write(self, offset: u32, value: u32) {
        // SAFETY: as in `read`; the driver owns the device.
        unsafe { core::ptr::write_volatile((self.base + u64::from(offset)) as *mut u32, value) }
    }

    /// Polls `offset` until `done(value)` or `timeout_ms`; the last value.
    fn wait(
        self,
        offset: u32,
        timeout_ms: u64,
        done: impl Fn(u32) -> bool,
    ) -> Result<u32, NicFault> {
        let start = time::micros_since_boot();
        loop {
            let value = self.read(offset);
            if done(value) {
                return Ok(value);
            }
            let waited = time::micros_since_boot() - start;
            if waited > timeout_ms * 1000 {
                return Err(NicFault::Timeout {
                    waited_ms: waited / 1000,
                    register: value,
                });
            }
            time::delay_us(10);
        }
    }

    fn set_base(self, low: u32, high: u32, phys: u64) {
        self.write(low, phys as u32);
        self.write(high, (phys >> 32) as u32);
    }
}

/// The receive queue: descriptors, their buffers, and where the driver is.
#[derive(Debug)]
struct RxRing {
    descs: DmaRegion,
    buffers: DmaRegion,
    /// Bytes per buffer (one per descriptor).
    buffer_bytes: usize,
    /// Next descriptor the driver looks at.
    next: u16,
    /// Descriptors processed since the tail last moved.
    unreturned: u16,
    /// Inside a frame that spans descriptors (dropped to its end).
    discarding: bool,
    counters: NicCounters,
}

/// The transmit queue.
#[derive(Debug)]
struct TxRing {
    descs: DmaRegion,
    buffers: DmaRegion,
    /// Bytes per buffer: one whole frame.
    buffer_bytes: usize,
    /// Next descriptor to fill.
    tail: u16,
    /// Oldest descriptor the device may still own.
    clean: u16,
    /// Filled descriptors not yet announced by a tail write.
    unannounced: u16,
    frames: u64,
}

/// The 82574L after bring-up.
#[derive(Debug)]
pub struct E1000e {
    regs: Regs,
    mac: [u8; 6],
    /// Largest frame (without CRC), from the MTU.
    max_frame: usize,
    rx: RxRing,
    tx: TxRing,
}

impl RxRing {
    fn desc(&self, index: u16) -> *mut RxDesc {
        debug_assert!(index < RX_LEN);
        self.descs
            .ptr()
            .cast::<RxDesc>()
            .wrapping_add(usize::from(index))
    }

    fn buffer(&self, index: u16) -> *mut u8 {
        self.buffers
            .ptr()
            .wrapping_add(usize::from(index) * self.buffer_bytes)
    }

    /// Gives descriptor `index` a fresh buffer (its own, rewritten).
    fn arm(&self, index: u16) {
        let desc = RxDesc {
            buffer: self.buffers.phys_at(usize::from(index) * self.buffer_bytes),
            ..RxDesc::default()
        };
        // SAFETY: `index` < RX_LEN, the descriptor is in the ring's DMA
        // region, and the device does not own it (not yet handed back).
        unsafe { core::ptr::write_volatile(self.desc(index), desc) };
    }

    /// The state of the next descriptor.
    fn peek(&self) -> RxSlot {
        let desc = self.desc(self.next);
        // SAFETY: the descriptor is in the ring's DMA region; the status
        // byte is read first and alone, since the device writes it last.
        let status = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*desc).status)) };
        if status & ring::RX_DD == 0 {
            return RxSlot::Pending;
        }
        // The rest of the write-back is visible once DD is (x86 keeps the
        // device's stores in order); keep the compiler from hoisting reads.
        fence(Ordering::Acquire);
        // SAFETY: as above; DD is set, so the device is done with it.
        let (errors, length) = unsafe {
            (
                core::ptr::read_volatile(core::ptr::addr_of!((*desc).errors)),
                core::ptr::read_volatile(core::ptr::addr_of!((*desc).length)),
            )
        };
        ring::classify_rx(status, errors, length, self.buffer_bytes)
    }

    /// Done with the next descriptor: re-arm it, move on, and move the
    /// tail when a batch is ready (or `force`).
    fn recycle(&mut self, regs: Regs, force: bool) {
        self.arm(self.next);
        self.next = ring::next(self.next, RX_LEN);
        self.unreturned += 1;
        if force || self.unreturned >= RX_BATCH {
            self.return_buffers(regs);
        }
    }

    /// Tells the device about every re-armed descriptor: the tail goes to
    /// the one before `next` (the gap that keeps head != tail).
    fn return_buffers(&mut self, regs: Regs) {
        if self.unreturned == 0 {
            return;
        }
        fence(Ordering::Release);
        regs.write(
            reg::RDT,
            ring::tail_register(ring::previous(self.next, RX_LEN)),
        );
        self.unreturned = 0;
    }

    /// Skips descriptors that carry no deliverable frame; the length of
    /// the next good frame, if one is there. A TCP checksum the device did
    /// not check is checked here (smoltcp leaves TCP checksums to the NIC).
    fn next_frame(&mut self, regs: Regs) -> Option<usize> {
        loop {
            match self.peek() {
                RxSlot::Pending => {
                    // Nothing more now: hand everything back so the device
                    // never waits on a batch.
                    self.return_buffers(regs);
                    return None;
                }
                RxSlot::Frame {
                    len,
                    checksum_checked,
                } if !self.discarding => {
                    // SAFETY: DD is set: the device is done with the buffer
                    // until `recycle` re-arms it; `len` fits the buffer.
                    let frame = unsafe { core::slice::from_raw_parts(self.buffer(self.next), len) };
                    let usable = match checksum::classify(frame) {
                        Frame::Other => true,
                        Frame::Tcp(segment) => checksum_checked || segment.verify(frame),
                        Frame::Malformed => false,
                    };
                    if usable {
                        return Some(len);
                    }
                    self.counters.rx_dropped += 1;
                    self.recycle(regs, false);
                }
                RxSlot::Frame { .. } => {
                    // The last descriptor of a frame that was dropped.
                    self.discarding = false;
                    self.counters.rx_dropped += 1;
                    self.recycle(regs, false);
                }
                RxSlot::Drop { last } => {
                    if last {
                        self.discarding = false;
                        self.counters.rx_dropped += 1;
                    } else {
                        self.discarding = true;
                    }
                    self.recycle(regs, false);
                }
            }
        }
    }
}

impl TxRing {
    fn desc(&self, index: u16) -> *mut TxDataDesc {
        debug_assert!(index < TX_LEN);
        self.descs
            .ptr()
            .cast::<TxDataDesc>()
            .wrapping_add(usize::from(index))
    }

    /// Moves `clean` past every descriptor the device has sent.
    fn reclaim(&mut self) {
        while self.clean != self.tail {
            // SAFETY: the descriptor is in the ring's DMA region.
            let status = unsafe {
                core::ptr::read_volatile(core::ptr::addr_of!((*self.desc(self.clean)).status))
            };
            if status & ring::TX_DD == 0 {
                break;
            }
            self.clean = ring::next(self.clean, TX_LEN);
        }
    }

    fn has_room(&mut self) -> bool {
        if !ring::tx_has_room(self.tail, self.clean, TX_LEN) {
            self.reclaim();
        }
        ring::tx_has_room(self.tail, self.clean, TX_LEN)
    }

    fn announce(&mut self, regs: Regs) {
        if self.unannounced == 0 {
            return;
        }
        fence(Ordering::Release);
        regs.write(reg::TDT, ring::tail_register(self.tail));
        self.unannounced = 0;
    }
}

fn step<T>(name: &'static str, result: Result<T, NicFault>) -> Result<T, StepError> {
    result.map_err(StepError::at(name))
}

impl E1000e {
    /// Brings the 82574L at `device` up; see the module docs for the steps.
    pub fn bring_up(
        device: &PciDevice,
        pci: &PciBus,
        memory: &mut Memory,
        max_frame: usize,
    ) -> Result<Self, StepError> {
        let buffer = step(
            "size the buffers",
            regs::rx_buffer_for(max_frame).ok_or(NicFault::FrameTooLong { max_frame }),
        )?;
        let (base, size) = step(
            "find BAR0",
            device.bars[0]
                .memory()
                .ok_or(NicFault::MissingBar { index: 0 }),
        )?;
        step(
            "map BAR0",
            memory
                .space
                .map_mmio(&mut memory.frames, base, size)
                .map_err(NicFault::Map),
        )?;
        let regs = Regs { base };
        pci.access.enable_polled_dma(device.bdf);

        regs.write(reg::IMC, u32::MAX);
        // Stop bus mastering so the reset cannot cut a DMA in half.
        regs.write(reg::CTRL, regs.read(reg::CTRL) | ctrl::GIO_MASTER_DISABLE);
        if let Err(e) = regs.wait(reg::STATUS, RESET_TIMEOUT_MS, |s| {
            s & status::GIO_MASTER_ENABLE == 0
        }) {
            // The datasheet's sequence resets anyway; say so.
            defmt::warn!(
                "e1000e: bus mastering did not stop before reset: {}",
                defmt::Display2Format(&e)
            );
        }
        regs.write(reg::RCTL, 0);
        regs.write(reg::TCTL, regs::tctl::PSP);
        regs.write(reg::CTRL, regs.read(reg::CTRL) | ctrl::RST);
        // The device ignores register accesses for a moment after RST.
        time::delay_us(1_000);
        step(
            "global reset",
            regs.wait(reg::CTRL, RESET_TIMEOUT_MS, |c| c & ctrl::RST == 0),
        )?;
        regs.write(reg::IMC, u32::MAX);
        let _ = regs.read(reg::ICR);

        let mac = step("read the MAC address", Self::read_mac(regs))?;
        let (ral, rah) = regs::receive_address(mac);
        regs.write(reg::RAL0, ral);
        regs.write(reg::RAH0, rah);
        for i in 0..128 {
            regs.write(reg::MTA + 4 * i, 0);
        }

        regs.write(reg::CTRL, regs::ctrl_link_up(regs.read(reg::CTRL)));
        step(
            "bring the link up",
            regs.wait(reg::STATUS, LINK_TIMEOUT_MS, |s| s & status::LU != 0),
        )?;
        regs.write(reg::CTRL_EXT, regs.read(reg::CTRL_EXT) | ctrl_ext::DRV_LOAD);

        let rx = step(
            "receive ring",
            Self::receive_ring(regs, memory, buffer, max_frame),
        )?;
        let tx = match Self::transmit_ring(regs, memory, buffer.bytes) {
            Ok(tx) => tx,
            Err(fault) => {
                regs.write(reg::RCTL, 0);
                rx.descs.free(&mut memory.frames);
                rx.buffers.free(&mut memory.frames);
                return Err(StepError::at("transmit ring")(fault));
            }
        };
        Ok(E1000e {
            regs,
            mac,
            max_frame,
            rx,
            tx,
        })
    }

    /// The MAC from EEPROM words 0..2, checked against RAL0/RAH0 (which
    /// the device loads from the same words at reset); RAL0/RAH0 alone
    /// when the EEPROM does not answer.
    fn read_mac(regs: Regs) -> Result<[u8; 6], NicFault> {
        let mut words = [0u16; 3];
        let mut eeprom = Ok(());
        for (word, out) in words.iter_mut().enumerate() {
            regs.write(reg::EERD, regs::eerd_request(word as u8));
            match regs.wait(reg::EERD, EEPROM_TIMEOUT_MS, |v| {
                regs::eerd_result(v).is_some()
            }) {
                Ok(v) => *out = regs::eerd_result(v).unwrap_or(0),
                Err(e) => {
                    eeprom = Err(e);
                    break;
                }
            }
        }
        let from_ral = regs::mac_from_receive_address(regs.read(reg::RAL0), regs.read(reg::RAH0));
        let mac = match (eeprom, from_ral) {
            (Ok(()), ral) => {
                let mac = regs::mac_from_nvm(words);
                if ral.is_some_and(|r| r != mac) {
                    defmt::warn!("e1000e: RAL0/RAH0 differ from the EEPROM; using the EEPROM's");
                }
                mac
            }
            (Err(e), Some(ral)) => {
                defmt::warn!(
                    "e1000e: EEPROM read failed ({}); MAC from RAL0/RAH0",
                    defmt::Display2Format(&e)
                );
                ral
            }
            (Err(e), None) => return Err(e),
        };
        if regs::is_station_address(mac) {
            Ok(mac)
        } else {
            Err(NicFault::NoMacAddress { mac })
        }
    }

    fn receive_ring(
        regs: Regs,
        memory: &mut Memory,
        buffer: RxBufferSize,
        max_frame: usize,
    ) -> Result<RxRing, NicFault> {
        let descs = DmaRegion::allocate(&mut memory.frames, usize::from(RX_LEN) * 16)
            .map_err(NicFault::Frames)?;
        let buffers =
            match DmaRegion::allocate(&mut memory.frames, usize::from(RX_LEN) * buffer.bytes) {
                Ok(b) => b,
                Err(e) => {
                    descs.free(&mut memory.frames);
                    return Err(NicFault::Frames(e));
                }
            };
        let rx = RxRing {
            descs,
            buffers,
            buffer_bytes: buffer.bytes,
            next: 0,
            unreturned: 0,
            discarding: false,
            counters: NicCounters::default(),
        };
        for i in 0..RX_LEN {
            rx.arm(i);
        }
        // Legacy descriptors (RFCTL.EXTEN clear), no interrupt delays.
        regs.write(reg::RFCTL, 0);
        regs.write(reg::RDTR, 0);
        regs.write(reg::RADV, 0);
        regs.set_base(reg::RDBAL, reg::RDBAH, rx.descs.phys());
        regs.write(reg::RDLEN, ring::ring_bytes(RX_LEN));
        regs.write(reg::RDH, 0);
        fence(Ordering::Release);
        // Every descriptor but the gap belongs to the device.
        regs.write(reg::RDT, ring::tail_register(RX_LEN - 1));
        regs.write(reg::RCTL, regs::rctl_value(buffer, max_frame));
        Ok(rx)
    }

    fn transmit_ring(
        regs: Regs,
        memory: &mut Memory,
        buffer_bytes: usize,
    ) -> Result<TxRing, NicFault> {
        let descs = DmaRegion::allocate(&mut memory.frames, usize::from(TX_LEN) * 16)
            .map_err(NicFault::Frames)?;
        let buffers =
            match DmaRegion::allocate(&mut memory.frames, usize::from(TX_LEN) * buffer_bytes) {
                Ok(b) => b,
                Err(e) => {
                    descs.free(&mut memory.frames);
                    return Err(NicFault::Frames(e));
                }
            };
        regs.write(reg::TIDV, 0);
        regs.write(reg::TADV, 0);
        regs.set_base(reg::TDBAL, reg::TDBAH, descs.phys());
        regs.write(reg::TDLEN, ring::ring_bytes(TX_LEN));
        regs.write(reg::TDH, 0);
        regs.write(reg::TDT, 0);
        regs.write(reg::TARC0, regs.read(reg::TARC0) | regs::TARC_ENABLE);
        regs.write(reg::TCTL, regs::tctl_value());
        // The first descriptor sets the checksum context every data
        // descriptor after it uses.
        // SAFETY: descriptor 0 is in the fresh ring, not yet the device's.
        unsafe {
            core::ptr::write_volatile(
                descs.ptr().cast::<TxContextDesc>(),
                ring::tcp_ipv4_context(),
            )
        };
        let mut tx = TxRing {
            descs,
            buffers,
            buffer_bytes,
            tail: 1,
            clean: 0,
            unannounced: 1,
            frames: 0,
        };
        tx.announce(regs);
        Ok(tx)
    }

    /// The station address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Largest frame the driver sends and receives (without CRC).
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Announces queued transmit descriptors.
    pub fn flush(&mut self) {
        self.tx.announce(self.regs);
    }

    /// Frame counters, with the device's own drop counts (missed: receive
    /// FIFO full; no buffers: ring empty), which clear when read.
    pub fn counters(&mut self) -> NicCounters {
        let dropped = self.regs.read(reg::MPC) + self.regs.read(reg::RNBC);
        self.rx.counters.device_dropped += u64::from(dropped);
        NicCounters {
            tx_frames: self.tx.frames,
            ..self.rx.counters
        }
    }

    /// A received frame with room to answer it, if both are there.
    pub fn receive(&mut self) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let regs = self.regs;
        let len = self.rx.next_frame(regs)?;
        if !self.tx.has_room() {
            // smoltcp wants to answer what it receives; leave the frame
            // in the ring until the device has sent something.
            self.tx.announce(regs);
            return None;
        }
        Some((
            RxToken {
                ring: &mut self.rx,
                regs,
                len,
            },
            TxToken {
                ring: &mut self.tx,
                regs,
            },
        ))
    }

    /// Room for a frame to send, if there is.
    pub fn transmit(&mut self) -> Option<TxToken<'_>> {
        if !self.tx.has_room() {
            self.tx.announce(self.regs);
            return None;
        }
        Some(TxToken {
            ring: &mut self.tx,
            regs: self.regs,
        })
    }
}

/// The next received frame, in its ring buffer.
pub struct RxToken<'a> {
    ring: &'a mut RxRing,
    regs: Regs,
    len: usize,
}

impl RxToken<'_> {
    /// Shows the frame to `f`, then gives the buffer back to the device.
    pub fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: the descriptor at `next` is done (DD set, checked by
        // `next_frame`), so the device no longer writes its buffer until
        // `recycle` re-arms it below; `len` fits the buffer.
        let frame =
            unsafe { core::slice::from_raw_parts(self.ring.buffer(self.ring.next), self.len) };
        let result = f(frame);
        self.ring.counters.rx_frames += 1;
        self.ring.recycle(self.regs, false);
        result
    }
}

/// A free transmit descriptor and its buffer.
pub struct TxToken<'a> {
    ring: &'a mut TxRing,
    regs: Regs,
}

impl TxToken<'_> {
    /// Lets `f` build a frame of `len` bytes in place and queues it.
    pub fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let index = self.ring.tail;
        let len = len.min(self.ring.buffer_bytes);
        let offset = usize::from(index) * self.ring.buffer_bytes;
        // SAFETY: `has_room` showed the descriptor at `tail` is not in
        // flight, so the device does not read its buffer; the buffer is
        // `buffer_bytes` long inside the ring's DMA region.
        let buffer = unsafe {
            core::slice::from_raw_parts_mut(self.ring.buffers.ptr().wrapping_add(offset), len)
        };
        let result = f(buffer);
        // smoltcp leaves the TCP checksum to the NIC: seed the field with
        // the pseudo-header's sum for the device to complete, when the
        // frame fits the context (a 20-byte IPv4 header); compute it here
        // otherwise.
        let insert = match checksum::classify(buffer) {
            Frame::Tcp(segment) if segment.start == usize::from(ring::tcp_ipv4_context().tucss) => {
                segment.seed(buffer);
                true
            }
            Frame::Tcp(segment) => {
                segment.fill(buffer);
                false
            }
            Frame::Other | Frame::Malformed => false,
        };
        let desc = ring::tx_data(self.ring.buffers.phys_at(offset), len as u16, insert);
        // SAFETY: the descriptor is in the ring's DMA region and not the
        // device's until the tail moves past it.
        unsafe { core::ptr::write_volatile(self.ring.desc(index), desc) };
        self.ring.tail = ring::next(index, TX_LEN);
        self.ring.unannounced += 1;
        self.ring.frames += 1;
        if self.ring.unannounced >= TX_BATCH {
            self.ring.announce(self.regs);
        }
        result
    }
}
