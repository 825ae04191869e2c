//! The NIC: which PCI function drives the network, the driver that came up
//! on it, and that driver as one smoltcp [`Device`] (the enum keeps the
//! stack and the link free of generics; each call is one match).
//!
//! Selection: the first supported function in PCI bus order, or the first
//! of the kind `nic=` names. A NIC that does not come up stops boot with
//! its BDF, ids, the step that failed and why ([`NicError`]).

use core::fmt;

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

use super::config::NicChoice;
use super::{e1000e, virtio};
use crate::mem::frames::FrameError;
use crate::mem::paging::MapError;
use crate::pci::{Bdf, Device as PciDevice, PciBus};
use crate::platform::Memory;

/// The kinds of NIC the monitor drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicKind {
    Virtio,
    E1000e,
}

impl NicKind {
    /// The kind a PCI function is, if it is one the monitor drives.
    pub fn of(device: &PciDevice) -> Option<NicKind> {
        match (device.vendor, device.device) {
            virtio::PCI_ID => Some(NicKind::Virtio),
            e1000e::PCI_ID => Some(NicKind::E1000e),
            _ => None,
        }
    }

    /// The name `nic=` and the report use.
    pub fn name(self) -> &'static str {
        match self {
            NicKind::Virtio => "virtio",
            NicKind::E1000e => "e1000e",
        }
    }

    fn wanted_by(self, choice: NicChoice) -> bool {
        matches!(
            (choice, self),
            (NicChoice::Auto, _)
                | (NicChoice::Virtio, NicKind::Virtio)
                | (NicChoice::E1000e, NicKind::E1000e)
        )
    }
}

/// Which function a NIC is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicId {
    pub kind: NicKind,
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
}

impl fmt::Display for NicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} NIC at {} [{:04x}:{:04x}]",
            self.kind.name(),
            self.bdf,
            self.vendor,
            self.device
        )
    }
}

/// Why a bring-up step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicFault {
    /// A BAR the driver needs is missing or of the wrong kind.
    MissingBar { index: usize },
    /// Mapping a BAR into the monitor's address space failed.
    Map(MapError),
    /// No frames for rings or buffers.
    Frames(FrameError),
    /// The device did not do what was asked within the time allowed.
    Timeout {
        waited_ms: u64,
        /// The register that was polled, as read at the end.
        register: u32,
    },
    /// `mtu=` asks for frames longer than the device's buffers take.
    FrameTooLong { max_frame: usize },
    /// The device reports no usable station (MAC) address.
    NoMacAddress { mac: [u8; 6] },
    /// virtio-drivers refused the PCI transport.
    VirtioTransport(virtio_drivers::transport::pci::VirtioPciError),
    /// virtio-drivers refused the device or a queue.
    Virtio(virtio_drivers::Error),
}

impl fmt::Display for NicFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicFault::MissingBar { index } => write!(f, "BAR{index} is not an assigned memory BAR"),
            NicFault::FrameTooLong { max_frame } => {
                write!(f, "frames of {max_frame} bytes do not fit its buffers")
            }
            NicFault::Map(e) => write!(f, "{e}"),
            NicFault::Frames(e) => write!(f, "{e}"),
            NicFault::Timeout {
                waited_ms,
                register,
            } => write!(
                f,
                "no answer within {waited_ms} ms (register reads {register:#010x})"
            ),
            NicFault::NoMacAddress { mac } => write!(
                f,
                "no usable MAC address (read {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x})",
                mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
            ),
            NicFault::VirtioTransport(e) => write!(f, "{e}"),
            NicFault::Virtio(e) => write!(f, "{e}"),
        }
    }
}

/// A bring-up step that failed, and why: the driver's own error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    /// What the driver was doing, e.g. "global reset".
    pub step: &'static str,
    pub fault: NicFault,
}

impl StepError {
    /// Tags `fault` with `step`.
    pub fn at(step: &'static str) -> impl FnOnce(NicFault) -> StepError {
        move |fault| StepError { step, fault }
    }
}

/// Why no NIC came up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicError {
    /// PCI lists no NIC of the kind asked for.
    NotFound { choice: NicChoice },
    /// The NIC chosen failed at a step of its bring-up.
    BringUp { nic: NicId, error: StepError },
}

impl fmt::Display for NicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicError::NotFound { choice } => {
                let what = match choice {
                    NicChoice::Auto => "no supported NIC",
                    NicChoice::Virtio => "nic=virtio but no virtio-net",
                    NicChoice::E1000e => "nic=e1000e but no Intel 82574L",
                };
                write!(
                    f,
                    "{what} on PCI (the monitor drives virtio-net [{:04x}:{:04x}], modern PCI, and the Intel 82574L [{:04x}:{:04x}])",
                    virtio::PCI_ID.0,
                    virtio::PCI_ID.1,
                    e1000e::PCI_ID.0,
                    e1000e::PCI_ID.1
                )
            }
            NicError::BringUp { nic, error } => {
                write!(f, "{nic}: {} failed: {}", error.step, error.fault)
            }
        }
    }
}

/// A NIC that came up.
#[derive(Debug)]
pub enum Nic {
    /// Boxed: virtio-drivers keeps a shadow of each 256-entry descriptor
    /// table inside the driver (about 11 KiB).
    Virtio(alloc::boxed::Box<virtio::VirtioNet>),
    E1000e(e1000e::E1000e),
}

/// Frame counters a driver keeps (frames dropped in the driver itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Received frames dropped: bad, too long, or a driver error.
    pub rx_dropped: u64,
    /// Frames smoltcp built that could not be queued.
    pub tx_dropped: u64,
    /// Frames the device itself dropped (e1000e: missed and no-buffer
    /// counts; virtio-net has no such counters).
    pub device_dropped: u64,
}

/// Finds the NIC `choice` asks for and brings it up.
pub fn bring_up(
    pci: &PciBus,
    memory: &mut Memory,
    choice: NicChoice,
    mtu: u16,
) -> Result<(Nic, NicId), NicError> {
    let max_frame = usize::from(mtu) + ETHERNET_HEADER;
    let (device, kind) = pci
        .devices
        .iter()
        .find_map(|d| {
            NicKind::of(d)
                .filter(|k| k.wanted_by(choice))
                .map(|k| (d, k))
        })
        .ok_or(NicError::NotFound { choice })?;
    let id = NicId {
        kind,
        bdf: device.bdf,
        vendor: device.vendor,
        device: device.device,
    };
    let nic = match kind {
        NicKind::Virtio => virtio::VirtioNet::bring_up(device, pci, memory, max_frame)
            .map(|n| Nic::Virtio(alloc::boxed::Box::new(n))),
        NicKind::E1000e => {
            e1000e::E1000e::bring_up(device, pci, memory, max_frame).map(Nic::E1000e)
        }
    }
    .map_err(|error| NicError::BringUp { nic: id, error })?;
    Ok((nic, id))
}

impl Nic {
    /// The station address.
    pub fn mac(&self) -> [u8; 6] {
        match self {
            Nic::Virtio(n) => n.mac(),
            Nic::E1000e(n) => n.mac(),
        }
    }

    /// Hands queued transmit descriptors to the device (doorbells are
    /// coalesced while smoltcp emits a burst; the stack calls this after
    /// every poll).
    pub fn flush(&mut self) {
        match self {
            Nic::Virtio(_) => {}
            Nic::E1000e(n) => n.flush(),
        }
    }

    /// Frame counters.
    pub fn counters(&mut self) -> NicCounters {
        match self {
            Nic::Virtio(n) => n.counters(),
            Nic::E1000e(n) => n.counters(),
        }
    }
}

/// Ethernet header bytes before the IP packet (no VLAN tag).
pub const ETHERNET_HEADER: usize = 14;

/// Received frame, still in the driver's buffer.
pub enum NicRxToken<'a> {
    Virtio(virtio::RxToken<'a>),
    E1000e(e1000e::RxToken<'a>),
}

/// Room for one frame to send.
pub enum NicTxToken<'a> {
    Virtio(virtio::TxToken<'a>),
    E1000e(e1000e::TxToken<'a>),
}

impl phy::RxToken for NicRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self {
            NicRxToken::Virtio(t) => t.consume(f),
            NicRxToken::E1000e(t) => t.consume(f),
        }
    }
}

impl phy::TxToken for NicTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self {
            NicTxToken::Virtio(t) => t.consume(len, f),
            NicTxToken::E1000e(t) => t.consume(len, f),
        }
    }
}

impl Device for Nic {
    type RxToken<'a> = NicRxToken<'a>;
    type TxToken<'a> = NicTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        match self {
            Nic::Virtio(n) => n
                .receive()
                .map(|(rx, tx)| (NicRxToken::Virtio(rx), NicTxToken::Virtio(tx))),
            Nic::E1000e(n) => n
                .receive()
                .map(|(rx, tx)| (NicRxToken::E1000e(rx), NicTxToken::E1000e(tx))),
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        match self {
            Nic::Virtio(n) => n.transmit().map(NicTxToken::Virtio),
            Nic::E1000e(n) => n.transmit().map(NicTxToken::E1000e),
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        // smoltcp's Ethernet MTU counts the header, not the CRC.
        caps.max_transmission_unit = match self {
            Nic::Virtio(n) => n.max_frame(),
            Nic::E1000e(n) => n.max_frame(),
        };
        // The drivers compute and check TCP checksums (`net::checksum`).
        caps.checksum.tcp = phy::Checksum::None;
        // The receive ring is what a burst from the peer must fit in.
        caps.max_burst_size = Some(match self {
            Nic::Virtio(_) => virtio::RX_BURST,
            Nic::E1000e(_) => e1000e::RX_BURST,
        });
        caps
    }
}
