//! What the command line says about the network (`nic=`, `ip=`, `peer=`,
//! `listen=`), as checked values. Parsing and its errors are in
//! `cmdline.rs`; the rules that need more than one option are here.

use core::net::{Ipv4Addr, SocketAddrV4};

/// Which NIC driver to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicChoice {
    /// The first supported NIC on PCI, in bus order (the default).
    Auto,
    /// A virtio-net device (modern PCI, `disable-legacy=on` in QEMU).
    Virtio,
    /// An Intel 82574L (QEMU's `e1000e`).
    E1000e,
}

impl NicChoice {
    /// Parses `auto`, `virtio` or `e1000e`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(NicChoice::Auto),
            "virtio" => Some(NicChoice::Virtio),
            "e1000e" => Some(NicChoice::E1000e),
            _ => None,
        }
    }
}

/// This machine's IPv4 address and the prefix length of its subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `A.B.C.D/N` for a host address (not the subnet's network or
    /// broadcast address, not multicast) with `N` from 1 to 32.
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = text.split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
        let cidr = Ipv4Cidr { address, prefix };
        let host_bits = !cidr.mask();
        let host = u32::from(address) & host_bits;
        // A /31 or /32 has no network or broadcast address (RFC 3021).
        let edge = prefix < 31 && (host == 0 || host == host_bits);
        let usable = !address.is_unspecified()
            && !address.is_multicast()
            && !address.is_broadcast()
            && !edge;
        usable.then_some(cidr)
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// Whether `other` is on this subnet (reachable without a router,
    /// which the monitor does not have).
    pub fn contains(self, other: Ipv4Addr) -> bool {
        (u32::from(self.address) ^ u32::from(other)) & self.mask() == 0
    }
}

/// Parses `A.B.C.D:PORT` with a port from 1 to 65535.
pub fn parse_endpoint(text: &str) -> Option<SocketAddrV4> {
    let endpoint: SocketAddrV4 = text.parse().ok()?;
    (endpoint.port() != 0 && !endpoint.ip().is_unspecified() && !endpoint.ip().is_multicast())
        .then_some(endpoint)
}

/// Parses a TCP port from 1 to 65535.
pub fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// The network part of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// `nic=`.
    pub nic: NicChoice,
    /// `ip=`: without it the monitor brings up no NIC.
    pub ip: Option<Ipv4Cidr>,
    /// `peer=`: the machine this one connects to.
    pub peer: Option<SocketAddrV4>,
    /// `listen=`: the port this one accepts one connection on.
    pub listen: Option<u16>,
    /// `tcp_buffer_kib=`: each TCP socket buffer (receive, send).
    pub tcp_buffer_kib: u32,
    /// `mtu=`: the largest IP packet, in bytes.
    pub mtu: u16,
}

/// The IP MTU without `mtu=`: what every Ethernet carries.
pub const DEFAULT_MTU: u16 = 1500;
/// Bounds of `mtu=`: IPv4's minimum, and jumbo frames that fit the
/// drivers' 8 KiB buffers (the e1000e's are 2, 4, 8 or 16 KiB).
pub const MTU_RANGE: core::ops::RangeInclusive<u16> = 576..=8000;

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            nic: NicChoice::Auto,
            ip: None,
            peer: None,
            listen: None,
            tcp_buffer_kib: super::stack::DEFAULT_SOCKET_BUFFER_KIB,
            mtu: DEFAULT_MTU,
        }
    }
}
