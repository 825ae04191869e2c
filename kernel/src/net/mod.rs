//! The network (ARCHITECTURE.md "Network"): a polled NIC behind smoltcp's
//! `phy::Device`, TCP/IPv4 through smoltcp, and a [`migrate::Link`] over one
//! TCP connection.
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
//! --mib 256 --tcp-buffer-kib K [--mtu M]`: two QEMU 7.2 TCG instances
//! linked by `-netdev socket` on 127.0.0.1, one vCPU each, on this
//! project's 2-core machine while other builds ran on it (load 4 to 8).
//! The first figure is MiB moved per second of CPU time of both QEMUs
//! together (boot included): both monitors poll without pause, so this is
//! what a byte costs, and the host's load does not change it; in brackets
//! the sender's end-to-end rate in Mbit/s, which the load does change, by
//! up to 3x. One entry per run:
//!
//! | socket buffers, MTU | virtio-net | e1000e |
//! |---|---|---|
//! | 64 KiB, 8000 | 9.3, 8.9 (99, 85) | 19.7, 16.6 (219, 186) |
//! | 256 KiB, 8000 | 17.9, 18.2 (161, 149) | 24.2, 34.2 (213, 286) |
//! | 1 MiB, 1500 | 24.4, 21.9 (354, 194) | 26.1, 36.9 (328, 620) |
//! | 1 MiB, 8000 | 43.2, 40.5 (460, 347) | 54.4, 53.2 (936, 744) |
//! | 4 MiB (default), 8000 | 66.7, 70.9, 65.8, 71.3 (1170, 1016, 1286, 1041) | 66.3, 84.8, 74.0, 91.1 (746, 545, 1025, 941) |
//! | 16 MiB, 8000 | 85.0, 78.5 (1086, 1255) | 73.1, 74.0 (1229, 1140) |
//!
//! Up to 4 MiB the window limits the transfer; from there on the rate is
//! the CPU's (TCG emulating both guests: smoltcp, the copies, virtio-net's
//! software checksum) and QEMU's. Hence
//! [`stack::DEFAULT_SOCKET_BUFFER_KIB`] = 4096 (`tcp_buffer_kib=` changes
//! it). Jumbo frames (`mtu=8000`, which xtask's QEMU link uses) give 1.5
//! to 2 times the rate of standard ones: under TCG the cost is mostly per
//! frame, not per byte. Of the per-byte work, smoltcp's TCP checksums were
//! half: with them switched off altogether the e1000e's rate doubled in
//! paired runs (about 200 to 400 Mbit/s, standard frames), which is why
//! the NIC layer does them now ([`checksum`]).
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
