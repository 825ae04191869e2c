//! virtio-net over modern PCI through the `virtio-drivers` crate, polled.
//!
//! The crate's raw driver (`VirtIONetRaw`) owns the two virtqueues; this
//! module owns the packet buffers (one per queue entry in monitor frames,
//! the virtio-net header plus the largest frame the MTU allows) and lends them to the device, so nothing is allocated
//! after bring-up. Frames are handed to smoltcp in place behind the
//! virtio-net header and built in place after it. TCP checksums are
//! computed and checked here ([`super::checksum`]): virtio-drivers
//! negotiates no checksum offload.
//!
//! [`MonitorHal`] is the crate's view of the machine: queue memory from a
//! pool of monitor frames reserved at bring-up, physical = virtual (the
//! monitor identity-maps RAM), BARs mapped uncached before the transport is
//! built. The PCI transport reads configuration space through the
//! monitor's own access method ([`PciConfig`]).

use core::cell::RefCell;
use core::ptr::NonNull;

use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use super::checksum;
use super::dma::DmaRegion;
use super::nic::{NicCounters, NicFault, StepError};
use crate::mem::frames::FrameAllocator;
use crate::pci::{Bdf, ConfigAccess, Device as PciDevice, PciBus};
use crate::platform::Memory;

/// Vendor and device id of a modern (virtio 1.0) network device.
pub const PCI_ID: (u16, u16) = (0x1af4, 0x1041);

/// Entries per virtqueue (QEMU's default queue size).
const QUEUE: usize = 256;
/// Bytes of the virtio-net header (VIRTIO_F_VERSION_1) before each frame.
const HEADER_BYTES: usize = 12;
/// Frames the peer can send before the driver has handed buffers back.
pub const RX_BURST: usize = QUEUE - 1;
/// Frames of queue memory for virtio-drivers: two split queues of 256
/// entries take 3 pages each; the rest is slack.
pub const HAL_POOL_FRAMES: usize = 16;

type Raw = VirtIONetRaw<MonitorHal, PciTransport, QUEUE>;

/// Queue memory for virtio-drivers: a run of frames reserved at bring-up,
/// handed out by a one-bit-per-frame map.
#[derive(Debug)]
pub struct HalPool {
    base: u64,
    used: u64,
}

const _: () = assert!(HAL_POOL_FRAMES <= 64, "the pool's map is one u64");

impl HalPool {
    /// A pool of [`HAL_POOL_FRAMES`] frames from `base`, all free.
    pub const fn new(base: u64) -> Self {
        HalPool { base, used: 0 }
    }

    /// The address of `pages` free contiguous frames, now taken.
    pub fn take(&mut self, pages: usize) -> Option<u64> {
        if pages == 0 || pages > HAL_POOL_FRAMES {
            return None;
        }
        let want = u64::MAX >> (64 - pages);
        let first = (0..=HAL_POOL_FRAMES - pages).find(|&i| self.used & (want << i) == 0)?;
        self.used |= want << first;
        Some(self.base + (first * PAGE_SIZE) as u64)
    }

    /// Gives back `pages` frames at `address`; false if they are not a
    /// run this pool handed out (a bug in the caller).
    pub fn give(&mut self, address: u64, pages: usize) -> bool {
        let Some(offset) = address.checked_sub(self.base) else {
            return false;
        };
        let first = (offset as usize) / PAGE_SIZE;
        let aligned = (offset as usize).is_multiple_of(PAGE_SIZE);
        if !aligned || pages == 0 || first + pages > HAL_POOL_FRAMES {
            return false;
        }
        let mask = (u64::MAX >> (64 - pages)) << first;
        if self.used & mask != mask {
            return false;
        }
        self.used &= !mask;
        true
    }
}

/// The pool (virtio-drivers calls the HAL without a context).
static HAL_POOL: spin::Mutex<Option<HalPool>> = spin::Mutex::new(None);

/// The monitor's HAL for virtio-drivers.
#[derive(Debug)]
pub struct MonitorHal;

// SAFETY: `dma_alloc` hands out zeroed, page-aligned runs of the reserved
// pool, each to one caller until `dma_dealloc`; the identity map makes the
// returned pointer and physical address the same memory. `share` returns
// the buffer's own address, which is its physical address in the identity
// map, and never copies (no bounce buffers). `mmio_phys_to_virt` returns
// identity addresses of BARs mapped uncached before the transport exists.
unsafe impl Hal for MonitorHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let taken = HAL_POOL.lock().as_mut().and_then(|pool| pool.take(pages));
        match taken.and_then(|phys| NonNull::new(phys as *mut u8).map(|ptr| (phys, ptr))) {
            Some((phys, ptr)) => {
                // SAFETY: the frames are the pool's, identity mapped, and
                // now this caller's alone.
                unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, pages * PAGE_SIZE) };
                (phys, ptr)
            }
            // virtio-drivers reports a physical address of 0 as DmaError.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        let given = HAL_POOL
            .lock()
            .as_mut()
            .is_some_and(|pool| pool.give(paddr, pages));
        if given {
            0
        } else {
            -1
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // `VirtioNet::bring_up` mapped every memory BAR of the device
        // whole, and virtio-drivers checks each region lies inside its BAR.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Configuration space for virtio-drivers, through the monitor's access
/// method (ECAM or port 0xCF8).
#[derive(Debug)]
pub struct PciConfig(ConfigAccess);

fn bdf(df: DeviceFunction) -> Bdf {
    Bdf {
        bus: df.bus,
        device: df.device,
        function: df.function,
    }
}

impl ConfigurationAccess for PciConfig {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        self.0
            .read32(bdf(device_function), u16::from(register_offset & !3))
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        self.0
            .write32(bdf(device_function), u16::from(register_offset & !3), data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PciConfig(self.0)
    }
}

/// Buffers lent to one virtqueue: which entry (token) holds which buffer.
#[derive(Debug)]
struct Buffers {
    region: DmaRegion,
    /// Bytes per buffer: the header and the largest frame.
    buffer_bytes: usize,
    /// Buffer index per virtqueue token.
    slot_of: [u16; QUEUE],
    /// Bytes lent per buffer (transmit: the frame's length with header).
    lent: [u16; QUEUE],
    /// Transmit: buffers not lent to the device.
    free: heapless::Vec<u16, QUEUE>,
}

impl Buffers {
    fn new(frames: &mut FrameAllocator, buffer_bytes: usize) -> Result<Self, NicFault> {
        let region = DmaRegion::allocate(frames, QUEUE * buffer_bytes).map_err(NicFault::Frames)?;
        Ok(Buffers {
            region,
            buffer_bytes,
            slot_of: [0; QUEUE],
            lent: [0; QUEUE],
            free: heapless::Vec::new(),
        })
    }

    /// Buffer `slot`, `len` bytes of it.
    ///
    /// # Safety
    /// The device must not own the buffer while the slice lives, and no
    /// other slice of it may exist.
    #[allow(clippy::mut_from_ref)] // reason: DMA memory the caller owns, not `self`'s fields
    unsafe fn slice(&self, slot: u16, len: usize) -> &mut [u8] {
        let start = usize::from(slot) * self.buffer_bytes;
        // SAFETY: the buffer lies inside the region (slot < QUEUE, len <=
        // BUFFER_BYTES by the callers); exclusivity is the caller's.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.region.ptr().wrapping_add(start),
                len.min(self.buffer_bytes),
            )
        }
    }
}

/// A virtio-net device after bring-up.
pub struct VirtioNet {
    /// Largest frame, from the MTU.
    max_frame: usize,
    /// The crate's driver; in a cell because a receive token and a
    /// transmit token are out at the same time and each touches it briefly.
    raw: RefCell<Raw>,
    mac: [u8; 6],
    rx: Buffers,
    tx: Buffers,
    counters: NicCounters,
}

impl core::fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("mac", &self.mac)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn step<T>(name: &'static str, result: Result<T, NicFault>) -> Result<T, StepError> {
    result.map_err(StepError::at(name))
}

impl VirtioNet {
    /// Maps the device's BARs, builds the transport and the driver, and
    /// lends every receive buffer to the device.
    pub fn bring_up(
        device: &PciDevice,
        pci: &PciBus,
        memory: &mut Memory,
        max_frame: usize,
    ) -> Result<Self, StepError> {
        // Whole cache lines per buffer; at least what virtio-drivers asks.
        let buffer_bytes = (HEADER_BYTES + max_frame).max(1526).next_multiple_of(64);
        for (index, bar) in device.bars.iter().enumerate() {
            if let Some((base, size)) = bar.memory() {
                step(
                    "map BARs",
                    memory
                        .space
                        .map_mmio(&mut memory.frames, base, size)
                        .map_err(NicFault::Map),
                )
                .inspect_err(|_| {
                    defmt::error!("virtio: BAR{=usize} at {=u64:#x}", index, base);
                })?;
            }
        }
        pci.access.enable_polled_dma(device.bdf);
        {
            let mut pool = HAL_POOL.lock();
            if pool.is_none() {
                let region = step(
                    "reserve queue memory",
                    DmaRegion::allocate(&mut memory.frames, HAL_POOL_FRAMES * PAGE_SIZE)
                        .map_err(NicFault::Frames),
                )?;
                // Never freed: the pool lives as long as the monitor.
                *pool = Some(HalPool::new(region.phys()));
            }
        }
        let mut root = PciRoot::new(PciConfig(pci.access));
        let function = DeviceFunction {
            bus: device.bdf.bus,
            device: device.bdf.device,
            function: device.bdf.function,
        };
        let transport = step(
            "PCI transport (virtio capabilities)",
            PciTransport::new::<MonitorHal, _>(&mut root, function)
                .map_err(NicFault::VirtioTransport),
        )?;
        let mut raw = step(
            "feature negotiation and virtqueues",
            Raw::new(transport).map_err(NicFault::Virtio),
        )?;
        raw.disable_interrupts();
        let mac = raw.mac_address();
        if !super::e1000e::regs::is_station_address(mac) {
            return Err(StepError::at("read the MAC address")(
                NicFault::NoMacAddress { mac },
            ));
        }
        let mut rx = step(
            "receive buffers",
            Buffers::new(&mut memory.frames, buffer_bytes),
        )?;
        let mut tx = match Buffers::new(&mut memory.frames, buffer_bytes) {
            Ok(tx) => tx,
            Err(e) => {
                drop(raw); // unsets the queues before their buffers go
                rx.region.free(&mut memory.frames);
                return Err(StepError::at("transmit buffers")(e));
            }
        };
        for slot in 0..QUEUE as u16 {
            // Cannot fail: the vector holds QUEUE entries.
            let _ = tx.free.push(slot);
        }
        for slot in 0..QUEUE as u16 {
            // SAFETY: the buffer is ours and not lent yet; the device owns
            // it until its token comes back through the used ring.
            let token = unsafe { raw.receive_begin(rx.slice(slot, buffer_bytes)) };
            match token {
                Ok(token) => rx.slot_of[usize::from(token) % QUEUE] = slot,
                Err(e) => return Err(StepError::at("lend receive buffers")(NicFault::Virtio(e))),
            }
        }
        Ok(VirtioNet {
            max_frame,
            raw: RefCell::new(raw),
            mac,
            rx,
            tx,
            counters: NicCounters::default(),
        })
    }

    /// The station address (from the device's configuration space).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Frame counters.
    pub fn counters(&self) -> NicCounters {
        self.counters
    }

    /// Largest frame the driver sends and receives.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes back every buffer the device has sent.
    fn reclaim(raw: &mut Raw, tx: &mut Buffers) {
        while let Some(token) = raw.poll_transmit() {
            let slot = tx.slot_of[usize::from(token) % QUEUE];
            let len = usize::from(tx.lent[usize::from(slot)]);
            // SAFETY: the token is complete, so the device is done with
            // the buffer; it is the same buffer (and length) lent.
            let done = unsafe { raw.transmit_complete(token, tx.slice(slot, len)) };
            if done.is_err() {
                // The used ring disagrees with what was lent: the buffer
                // stays out of use rather than being reused while lent.
                defmt::error!(
                    "virtio: transmit completion for an unknown token {=u16}",
                    token
                );
                break;
            }
            // Cannot fail: at most QUEUE buffers exist.
            let _ = tx.free.push(slot);
        }
    }

    /// A received frame with room to answer it, if both are there.
    pub fn receive(&mut self) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let VirtioNet {
            raw,
            rx,
            tx,
            counters,
            ..
        } = self;
        let raw_mut = raw.get_mut();
        if tx.free.is_empty() {
            Self::reclaim(raw_mut, tx);
        }
        if tx.free.is_empty() {
            return None;
        }
        let (slot, offset, len) = loop {
            let token = raw_mut.poll_receive()?;
            let slot = rx.slot_of[usize::from(token) % QUEUE];
            // SAFETY: the token is complete: the device is done with the
            // buffer lent under it, which is passed back whole.
            let frame = unsafe { raw_mut.receive_complete(token, rx.slice(slot, rx.buffer_bytes)) };
            if let Ok((header, len)) = frame {
                // SAFETY: the buffer is back from the device (above).
                let buffer = unsafe { rx.slice(slot, rx.buffer_bytes) };
                // smoltcp leaves TCP checksums to the NIC layer.
                if header + len <= rx.buffer_bytes
                    && checksum::incoming_ok(&buffer[header..header + len])
                {
                    counters.rx_frames += 1;
                    break (slot, header, len);
                }
            }
            counters.rx_dropped += 1;
            // SAFETY: the buffer is ours again; the device owns it until
            // its token comes back.
            match unsafe { raw_mut.receive_begin(rx.slice(slot, rx.buffer_bytes)) } {
                Ok(token) => rx.slot_of[usize::from(token) % QUEUE] = slot,
                Err(e) => defmt::error!(
                    "virtio: receive buffer {=u16} not returned: {}",
                    slot,
                    defmt::Display2Format(&e)
                ),
            }
        };
        let raw: &RefCell<Raw> = raw;
        // Cannot fail: a buffer was free above.
        let tx_slot = tx.free.pop()?;
        Some((
            RxToken {
                raw,
                rx,
                slot,
                offset,
                len,
            },
            TxToken {
                raw,
                tx,
                counters,
                slot: Some(tx_slot),
            },
        ))
    }

    /// Room for a frame to send, if there is.
    pub fn transmit(&mut self) -> Option<TxToken<'_>> {
        let VirtioNet {
            raw, tx, counters, ..
        } = self;
        if tx.free.is_empty() {
            Self::reclaim(raw.get_mut(), tx);
        }
        let slot = tx.free.pop()?;
        Some(TxToken {
            raw,
            tx,
            counters,
            slot: Some(slot),
        })
    }
}

/// A received frame in a receive buffer; the buffer goes back to the
/// device when the token is dropped (consumed or not).
pub struct RxToken<'a> {
    raw: &'a RefCell<Raw>,
    rx: &'a mut Buffers,
    slot: u16,
    offset: usize,
    len: usize,
}

impl RxToken<'_> {
    /// Shows the frame to `f` (smoltcp may transmit from inside `f`).
    pub fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: the buffer came back from the device in `receive` and is
        // lent again only when this token drops.
        let buffer = unsafe { self.rx.slice(self.slot, self.rx.buffer_bytes) };
        f(&buffer[self.offset..self.offset + self.len])
    }
}

impl Drop for RxToken<'_> {
    fn drop(&mut self) {
        let Ok(mut raw) = self.raw.try_borrow_mut() else {
            // Only reachable if a transmit token were mid-consume, which
            // smoltcp's sequencing rules out; the buffer is lost, not reused.
            defmt::error!(
                "virtio: receive buffer {=u16} not returned (driver busy)",
                self.slot
            );
            return;
        };
        // SAFETY: nothing else refers to the buffer; the device owns it
        // until its token comes back.
        match unsafe { raw.receive_begin(self.rx.slice(self.slot, self.rx.buffer_bytes)) } {
            Ok(token) => self.rx.slot_of[usize::from(token) % QUEUE] = self.slot,
            Err(e) => defmt::error!(
                "virtio: receive buffer {=u16} not returned: {}",
                self.slot,
                defmt::Display2Format(&e)
            ),
        }
    }
}

/// A free transmit buffer, taken off the free list while the token lives;
/// dropped unused, it goes back.
pub struct TxToken<'a> {
    raw: &'a RefCell<Raw>,
    tx: &'a mut Buffers,
    counters: &'a mut NicCounters,
    /// The buffer; `None` once lent to the device.
    slot: Option<u16>,
}

impl TxToken<'_> {
    /// Lets `f` build a frame of `len` bytes after the virtio-net header
    /// and lends the buffer to the device.
    pub fn consume<R>(mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // Always set here: only a consume that lent the buffer clears it.
        let slot = self.slot.unwrap_or(0);
        // SAFETY: the buffer was taken off the free list for this token, so
        // the device does not own it and this is its only slice.
        let buffer = unsafe { self.tx.slice(slot, self.tx.buffer_bytes) };
        let Ok(mut raw) = self.raw.try_borrow_mut() else {
            // Unreachable under smoltcp's sequencing (see RxToken's drop):
            // the frame is built and dropped, the buffer goes back.
            self.counters.tx_dropped += 1;
            return f(&mut buffer[..len.min(self.tx.buffer_bytes)]);
        };
        let header = raw.fill_buffer_header(buffer).unwrap_or(0);
        let len = len.min(self.tx.buffer_bytes - header);
        let result = f(&mut buffer[header..header + len]);
        // smoltcp leaves the TCP checksum to the NIC layer, and this
        // device was given no checksum offload.
        checksum::fill_outgoing(&mut buffer[header..header + len]);
        let total = header + len;
        // SAFETY: the buffer stays untouched until its token completes
        // (`reclaim`), which passes the same buffer and length back.
        match unsafe { raw.transmit_begin(&buffer[..total]) } {
            Ok(token) => {
                self.tx.slot_of[usize::from(token) % QUEUE] = slot;
                self.tx.lent[usize::from(slot)] = total as u16;
                self.counters.tx_frames += 1;
                self.slot = None;
            }
            // Still in `slot`: the drop puts the buffer back.
            Err(_) => self.counters.tx_dropped += 1,
        }
        result
    }
}

impl Drop for TxToken<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // Cannot fail: at most QUEUE buffers exist.
            let _ = self.tx.free.push(slot);
        }
    }
}
