//! The network (DESIGN.md "Hardware and emulation", "Migration between
//! machines"): a polled NIC behind smoltcp's `phy::Device`, TCP/IPv4
//! through smoltcp, and a [`migrate::Link`] over one TCP connection.
//!
//! - [`nic`]: which PCI function, the driver that came up on it, and the
//!   smoltcp device over either driver;
//! - [`virtio`]: virtio-net (modern PCI) through `virtio-drivers`, with its
//!   HAL over the monitor's frames and page tables;
//! - [`e1000e`]: the Intel 82574L, hand-written (registers and ring
//!   arithmetic in `regs` and `ring`, checked by the in-kernel self-tests);
//! - [`dma`]: frames the devices reach;
//! - [`stack`]: the interface, ARP, the one TCP socket, connect / accept;
//! - [`link`]: `migrate::Link` over that socket;
//! - [`bench`]: the raw TCP throughput measurement (`net_bench=`);
//! - [`config`]: what `nic=`, `ip=`, `peer=`, `listen=` say.
//!
//! Nothing here takes an interrupt or allocates on the data path: the NIC
//! rings, packet buffers and socket buffers are monitor frames set aside at
//! bring-up, and whoever waits for the network polls it ([`Net::poll`],
//! called by the link's `send`/`recv` and by connect / accept).
//!
//! ## Buffers and throughput
//!
//! smoltcp scales its receive window from the socket buffer (RFC 7323), so
//! the receive buffer is the window the sender may fill. Measured with
//! `net_bench=64` between two QEMU 7.2 TCG instances linked by
//! `-netdev socket` on 127.0.0.1 (this project's 2-core machine, each
//! QEMU one vCPU; sender's end-to-end rate, Mbit/s), the socket buffers
//! both sides use:
//!
//! | socket buffers | virtio-net | e1000e |
//! |---|---|---|
//! | see [`stack::DEFAULT_SOCKET_BUFFER_KIB`] | measured below | |
//!
//! (The table is filled in by the measurement commit.)

pub mod bench;
pub mod config;
pub mod dma;
pub mod e1000e;
pub mod link;
pub mod nic;
pub mod selftest;
pub mod stack;
pub mod virtio;

pub use config::NetConfig;
pub use stack::{Net, NetError};

use crate::pci::PciBus;
use crate::platform::Memory;

/// Brings the network up when `ip=` asks for it, and logs what came up.
pub fn bring_up(
    memory: &mut Memory,
    pci: &PciBus,
    config: NetConfig,
) -> Result<Option<Net>, NetError> {
    let Some(ip) = config.ip else {
        return Ok(None);
    };
    let net = Net::bring_up(memory, pci, config)?;
    let id = net.nic();
    let mac = net.mac();
    defmt::info!(
        "net: {} up, address {}/{=u8}",
        defmt::Display2Format(&id),
        defmt::Display2Format(&ip.address),
        ip.prefix
    );
    defmt::info!(
        "report net nic={=str} bdf={} mac={=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x} ip={}/{=u8}",
        id.kind.name(),
        defmt::Display2Format(&id.bdf),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        defmt::Display2Format(&ip.address),
        ip.prefix
    );
    Ok(Some(net))
}
