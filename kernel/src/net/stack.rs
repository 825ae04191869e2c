//! TCP/IPv4 over the NIC through smoltcp: one interface with the address
//! from `ip=`, ARP, and one TCP socket that either connects to `peer=` or
//! accepts one connection on `listen=`. Everything is polled: [`Net::poll`]
//! moves frames between the NIC and smoltcp, and the link, connect and
//! accept call it themselves while they wait. The clock is the TSC.
//!
//! The socket's buffers come from monitor frames at bring-up (smoltcp
//! keeps them as fixed rings; nothing is allocated afterwards). Their size
//! sets the receive window the peer sees (smoltcp scales the window from
//! the buffer size, RFC 7323) and how much the sender may have in flight;
//! see the measurements in `net/mod.rs`.

use core::fmt;
use core::net::SocketAddrV4;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp::{self, RecvError, SendError, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint};

use super::config::NetConfig;
use super::nic::{self, Nic, NicCounters, NicError, NicId};
use crate::mem::frames::FrameError;
use crate::mem::FRAME_SIZE;
use crate::pci::PciBus;
use crate::platform::Memory;
use crate::time;
use migrate::link::LinkError;

/// KiB of each socket buffer (receive and send) unless `tcp_buffer_kib=`
/// says otherwise. 4 MiB keeps a transfer over QEMU's socket link from
/// being window-limited (measurements in `net`'s module docs); the window
/// scale follows from it (shift 6).
pub const DEFAULT_SOCKET_BUFFER_KIB: u32 = 4096;
/// Bounds of `tcp_buffer_kib=`: smoltcp's largest window scale (14) covers
/// 1 GiB; 64 MiB is more than any link here needs.
pub const SOCKET_BUFFER_KIB_RANGE: core::ops::RangeInclusive<u32> = 4..=65536;
/// A connection with no acknowledged progress for this long is reset
/// (smoltcp aborts it; the link then reports `Reset`): how long a side
/// takes to notice that its peer died.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Probes an idle connection this often, so a dead peer is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// How long [`Net::close`] keeps polling after the stream ended.
const LINGER_MS: u64 = 20;
/// Pause between connection attempts while the peer is not listening.
const CONNECT_RETRY_MS: u64 = 100;
/// First local port for outgoing connections (IANA's dynamic range).
const EPHEMERAL_BASE: u16 = 49152;

/// Why the network did not come up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// No NIC, or the NIC's bring-up failed.
    Nic(NicError),
    /// No frames for the socket buffers.
    Buffers(FrameError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Nic(e) => write!(f, "{e}"),
            NetError::Buffers(e) => write!(f, "TCP socket buffers: {e}"),
        }
    }
}

/// Why no connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// The peer did not accept within the time allowed.
    TimedOut {
        peer: SocketAddrV4,
        waited_ms: u64,
        /// Connection attempts made (each refused, or unanswered).
        attempts: u32,
    },
    /// smoltcp cannot address the peer (no route from `ip=`).
    Unaddressable { peer: SocketAddrV4 },
    /// Nobody connected to the listening port in time.
    NoPeer { port: u16, waited_ms: u64 },
    /// The NIC or the socket is not in a state to start (a monitor bug).
    Busy,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TimedOut {
                peer,
                waited_ms,
                attempts,
            } => write!(
                f,
                "no connection to {peer} within {waited_ms} ms ({attempts} attempts refused or unanswered: is the peer up and listening?)"
            ),
            ConnectError::Unaddressable { peer } => {
                write!(f, "{peer} is not reachable from this machine's address")
            }
            ConnectError::NoPeer { port, waited_ms } => {
                write!(f, "nobody connected to port {port} within {waited_ms} ms")
            }
            ConnectError::Busy => f.write_str("the TCP socket is already in use"),
        }
    }
}

/// Why a connection did not end in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseError {
    /// It was reset (or smoltcp gave up on the peer) while closing.
    Reset,
    /// The time ran out.
    TimedOut {
        /// Bytes (the FIN counts one) the peer had not acknowledged.
        unacknowledged: usize,
        /// Whether the peer's FIN had arrived.
        peer_closed: bool,
    },
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::Reset => f.write_str("the connection was reset while closing"),
            CloseError::TimedOut {
                unacknowledged,
                peer_closed,
            } => write!(
                f,
                "the connection did not close in time ({unacknowledged} bytes unacknowledged, the peer {} closed its side)",
                if *peer_closed { "had" } else { "had not" }
            ),
        }
    }
}

/// What the one TCP connection has been through, for telling a peer's
/// orderly close from a reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct History {
    /// This side sent its FIN ([`Net::close`]).
    closed_by_us: bool,
}

/// The network: NIC, interface, and the one TCP socket.
pub struct Net {
    nic: Nic,
    id: NicId,
    config: NetConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
    history: History,
    next_port: u16,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("nic", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `bytes` of zeroed frames, the monitor's from now on.
fn socket_buffer(memory: &mut Memory, bytes: usize) -> Result<&'static mut [u8], FrameError> {
    let frames = (bytes as u64).div_ceil(FRAME_SIZE);
    let first = memory.frames.allocate_contiguous(frames, 1)?;
    // SAFETY: the frames were just allocated, are identity-mapped RAM, and
    // are never freed: the slice is their only user for good.
    Ok(unsafe {
        let ptr = first.address() as *mut u8;
        core::ptr::write_bytes(ptr, 0, bytes);
        core::slice::from_raw_parts_mut(ptr, bytes)
    })
}

fn now() -> Instant {
    Instant::from_micros(time::micros_since_boot() as i64)
}

impl Net {
    /// Brings up the NIC `config.nic` asks for and the interface on it.
    /// Only called when `ip=` is given (`config.ip` is `Some`).
    pub fn bring_up(memory: &mut Memory, pci: &PciBus, config: NetConfig) -> Result<Net, NetError> {
        let (mut nic, id) =
            nic::bring_up(pci, memory, config.nic, config.mtu).map_err(NetError::Nic)?;
        let mac = nic.mac();
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // ISNs and ports differ from boot to boot.
        iface_config.random_seed = crate::arch::cpu::rdtsc();
        let mut iface = Interface::new(iface_config, &mut nic, now());
        if let Some(ip) = config.ip {
            iface.update_ip_addrs(|addrs| {
                // Cannot fail: the list is empty and holds one address.
                let _ = addrs.push(IpCidr::new(ip.address.into(), ip.prefix));
            });
        }
        let bytes = config.tcp_buffer_kib as usize * 1024;
        let rx = socket_buffer(memory, bytes).map_err(NetError::Buffers)?;
        let tx = socket_buffer(memory, bytes).map_err(NetError::Buffers)?;
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        Self::tune(&mut socket);
        let storage: &'static mut [SocketStorage<'static>] =
            alloc::boxed::Box::leak(alloc::boxed::Box::new([SocketStorage::EMPTY]));
        let mut sockets = SocketSet::new(storage);
        let tcp = sockets.add(socket);
        let next_port = EPHEMERAL_BASE + (crate::arch::cpu::rdtsc() % 1024) as u16;
        Ok(Net {
            nic,
            id,
            config,
            iface,
            sockets,
            tcp,
            history: History::default(),
            next_port,
        })
    }

    fn tune(socket: &mut tcp::Socket<'static>) {
        // Records go out as soon as they are queued (the stream is bulk;
        // the last record of a migration must not wait for an ACK).
        socket.set_nagle_enabled(false);
        socket.set_timeout(Some(IDLE_TIMEOUT));
        socket.set_keep_alive(Some(KEEP_ALIVE));
    }

    /// Which NIC carries the network.
    pub fn nic(&self) -> NicId {
        self.id
    }

    /// The station address.
    pub fn mac(&self) -> [u8; 6] {
        self.nic.mac()
    }

    /// What the command line said.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The NIC's frame counters.
    pub fn counters(&mut self) -> NicCounters {
        self.nic.counters()
    }

    fn socket(&self) -> &tcp::Socket<'static> {
        self.sockets.get::<tcp::Socket>(self.tcp)
    }

    fn socket_mut(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.tcp)
    }

    /// Moves frames both ways and runs smoltcp's timers once.
    pub fn poll(&mut self) {
        self.iface.poll(now(), &mut self.nic, &mut self.sockets);
        self.nic.flush();
    }

    /// Connects to `peer`, retrying while it refuses or does not answer
    /// (it may still be booting), for up to `timeout_ms`. `meanwhile` runs
    /// between polls: the caller's guests must not stop while it waits.
    pub fn connect(
        &mut self,
        peer: SocketAddrV4,
        timeout_ms: u64,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), ConnectError> {
        self.start_fresh()?;
        let start = time::micros_since_boot();
        let mut attempts = 0u32;
        let mut retry_at = start;
        loop {
            let elapsed = time::micros_since_boot() - start;
            match self.socket().state() {
                State::Established => {
                    defmt::info!(
                        "net: connected to {} after {=u32} attempts, {=u64} ms",
                        defmt::Display2Format(&peer),
                        attempts,
                        elapsed / 1000
                    );
                    return Ok(());
                }
                State::Closed if time::micros_since_boot() >= retry_at => {
                    let port = self.next_local_port();
                    let cx = self.iface.context();
                    let socket = self.sockets.get_mut::<tcp::Socket>(self.tcp);
                    socket.connect(cx, peer, port).map_err(|e| match e {
                        tcp::ConnectError::Unaddressable => ConnectError::Unaddressable { peer },
                        tcp::ConnectError::InvalidState => ConnectError::Busy,
                    })?;
                    attempts += 1;
                    retry_at = time::micros_since_boot() + CONNECT_RETRY_MS * 1000;
                }
                _ => {}
            }
            if elapsed > timeout_ms * 1000 {
                self.socket_mut().abort();
                self.poll();
                return Err(ConnectError::TimedOut {
                    peer,
                    waited_ms: elapsed / 1000,
                    attempts,
                });
            }
            self.poll();
            meanwhile();
        }
    }

    /// Waits up to `timeout_ms` for one connection on `port`; the peer.
    /// `meanwhile` runs between polls (see [`Net::connect`]).
    pub fn accept(
        &mut self,
        port: u16,
        timeout_ms: u64,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<IpEndpoint, ConnectError> {
        self.start_fresh()?;
        self.socket_mut()
            .listen(port)
            .map_err(|_| ConnectError::Busy)?;
        let start = time::micros_since_boot();
        loop {
            self.poll();
            meanwhile();
            let socket = self.socket();
            if socket.state() == State::Established {
                let peer = socket.remote_endpoint();
                if let Some(peer) = peer {
                    defmt::info!(
                        "net: accepted a connection on port {=u16} from {}",
                        port,
                        defmt::Display2Format(&peer)
                    );
                    return Ok(peer);
                }
            }
            let elapsed = time::micros_since_boot() - start;
            if elapsed > timeout_ms * 1000 {
                self.socket_mut().abort();
                self.poll();
                return Err(ConnectError::NoPeer {
                    port,
                    waited_ms: elapsed / 1000,
                });
            }
        }
    }

    /// A socket in `Closed` with a clean history, ready for a new
    /// connection (an old one that is still closing is aborted).
    fn start_fresh(&mut self) -> Result<(), ConnectError> {
        if self.socket().state() != State::Closed {
            self.socket_mut().abort();
            self.poll();
        }
        if self.socket().state() != State::Closed {
            return Err(ConnectError::Busy);
        }
        self.history = History::default();
        Ok(())
    }

    fn next_local_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if port == u16::MAX {
            EPHEMERAL_BASE
        } else {
            port + 1
        };
        port
    }

    /// Queues what fits of `data` (see [`migrate::Link::send`]).
    pub(super) fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        let history = self.history;
        let result = match self.socket_mut().send_slice(data) {
            Ok(n) => Ok(n),
            Err(SendError::InvalidState) => Err(self.ended(history)),
        };
        self.poll();
        result
    }

    /// Takes what has arrived (see [`migrate::Link::recv`]).
    pub(super) fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.poll();
        // Nothing asked, nothing taken, whatever the stream's state (as
        // the in-memory pipe does).
        if buf.is_empty() {
            return Ok(0);
        }
        let history = self.history;
        match self.socket_mut().recv_slice(buf) {
            Ok(n) => Ok(n),
            // The peer closed its side and everything it sent was read.
            Err(RecvError::Finished) => Err(LinkError::Closed),
            Err(RecvError::InvalidState) => Err(self.ended(history)),
        }
    }

    /// What a socket that cannot send or receive any more means.
    fn ended(&self, history: History) -> LinkError {
        match self.socket().state() {
            // Still opening: not a link yet (a caller bug); say reset
            // rather than pretend bytes moved.
            State::Listen | State::SynSent | State::SynReceived => LinkError::Reset,
            // This side closed (FIN sent): the stream is over by choice.
            _ if history.closed_by_us => LinkError::Closed,
            // The peer's FIN arrived (recv reports that as Finished).
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait => {
                LinkError::Closed
            }
            // Closed without our FIN: a RST, or smoltcp gave up on an
            // unresponsive peer (IDLE_TIMEOUT).
            _ => LinkError::Reset,
        }
    }

    /// Bytes queued on the socket that the peer has not acknowledged.
    pub fn unsent(&self) -> usize {
        self.socket().send_queue()
    }

    /// Closes this side (FIN after everything queued) and waits up to
    /// `timeout_ms` for the stream to end in order: everything this side
    /// sent, its FIN included, acknowledged, and the peer's FIN received.
    /// `meanwhile` runs between polls (see [`Net::connect`]).
    pub fn close(
        &mut self,
        timeout_ms: u64,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), CloseError> {
        self.history.closed_by_us = true;
        self.socket_mut().close();
        let start = time::micros_since_boot();
        let mut last = self.socket().state();
        loop {
            self.poll();
            meanwhile();
            let state = self.socket().state();
            match (last, state) {
                // Both FINs are through (TIME-WAIT), or the peer closed
                // first and acknowledged ours (LAST-ACK -> CLOSED).
                (_, State::TimeWait) | (State::LastAck, State::Closed) => {
                    self.linger();
                    return Ok(());
                }
                (_, State::Closed) => return Err(CloseError::Reset),
                _ => {}
            }
            last = state;
            if time::micros_since_boot() - start > timeout_ms * 1000 {
                return Err(CloseError::TimedOut {
                    unacknowledged: self.socket().send_queue(),
                    peer_closed: matches!(state, State::Closing | State::LastAck),
                });
            }
        }
    }

    /// Keeps polling for a moment, so that the last ACK leaves the NIC
    /// before the caller may stop the machine.
    fn linger(&mut self) {
        let until = time::micros_since_boot() + LINGER_MS * 1000;
        while time::micros_since_boot() < until {
            self.poll();
        }
    }

    /// Drops the connection at once (RST to the peer).
    pub fn abort(&mut self) {
        self.socket_mut().abort();
        self.poll();
    }
}
