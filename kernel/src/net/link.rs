//! [`migrate::Link`] over the one TCP socket of [`Net`].
//!
//! `send` queues what fits in the socket's send buffer and polls, so the
//! segments leave at once; `recv` polls and takes what has arrived. Neither
//! waits. `unsent` is the socket's send queue: bytes queued that the peer
//! has not acknowledged yet. Ends map as the trait says: the peer's FIN
//! (after everything it sent was read) or this side's own close is
//! `Closed`; a RST, a connection smoltcp gave up on (no progress for the
//! idle timeout) or a link used before it was connected is `Reset`.

use migrate::link::{Link, LinkError};

use super::stack::Net;

/// The migration stream over TCP; borrows the network while it is used.
#[derive(Debug)]
pub struct TcpLink<'a> {
    net: &'a mut Net,
}

impl<'a> TcpLink<'a> {
    /// The link over `net`'s connection (made by `connect` or `accept`).
    pub fn new(net: &'a mut Net) -> Self {
        TcpLink { net }
    }
}

impl Link for TcpLink<'_> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        self.net.send(data)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.net.recv(buf)
    }

    fn unsent(&self) -> Option<usize> {
        Some(self.net.unsent())
    }
}
