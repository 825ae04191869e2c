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
//! - [`checksum`]: TCP checksums, which the NIC layer does instead of
//!   smoltcp (the e1000e's hardware, or a 64-bit-word sum);
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
//! the receive buffer is the window the sender may fill, and it sends a
//! window update only once the window has doubled: with small buffers the
//! sender stops and goes. Measured 2026-12-01 with `cargo xtask netbench
//! --mib 64 --tcp-buffer-kib K` (two QEMU 7.2 TCG instances linked by
//! `-netdev socket` on 127.0.0.1, one vCPU each, on this project's 2-core
//! machine while other builds ran on it: load 4-5), the sender's
//! end-to-end rate in Mbit/s, median of three runs (range):
//!
//! | socket buffers | virtio-net | e1000e |
//! |---|---|---|
//! | 64 KiB | 28 (21-32) | 59 (54-194) |
//! | 256 KiB | 97 (60-105) | 123 (74-177) |
//! | 1 MiB (default) | 183 (168-258) | 386 (162-622) |
//! | 4 MiB | 180 (129-313) | 336 (254-409) |
//! | 16 MiB | 195 (152-264) | 354 (215-493) |
//!
//! From 1 MiB up the window no longer limits the transfer: the rate is the
//! CPU's (TCG emulating both guests, smoltcp's checksums and copies, and
//! QEMU's own threads on two shared cores), and the spread is the
//! machine's load. virtio-net's transmit path runs in QEMU's main thread
//! (another thread competing for the cores), the e1000e's in the vCPU's
//! own register write. Hence [`stack::DEFAULT_SOCKET_BUFFER_KIB`] = 1024;
//! `tcp_buffer_kib=` changes it.
//!
//! In QEMU a full receive ring holds frames back (the device model stops
//! reading its backend), so nothing is lost however late the monitor
//! polls. A real NIC drops what does not fit: the receive ring holds 255
//! frames, about 3 ms at 1 Gbit/s, so a receiving monitor must poll at
//! least that often, or smoltcp's retransmission (fast retransmit, else a
//! 1 s timeout) pays for it.

pub mod bench;
pub mod checksum;
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
        "report net nic={=str} bdf={} mac={=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x} ip={}/{=u8} mtu={=u16}",
        id.kind.name(),
        defmt::Display2Format(&id.bdf),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        defmt::Display2Format(&ip.address),
        ip.prefix,
        config.mtu
    );
    Ok(Some(net))
}
