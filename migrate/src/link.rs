//! The transport: a byte stream polled in both directions, plus an
//! in-memory pipe, a slice reader and a fault injector for tests.
//!
//! The network issue implements [`Link`] over a smoltcp TCP socket on the
//! polled NIC. Neither call may block: `send` takes what fits now (maybe
//! nothing), `recv` returns what has arrived (maybe nothing).

use core::cell::RefCell;
use core::fmt;

/// Transport failures. The link itself broke; who is to blame is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The peer closed the connection (or the stream source is exhausted).
    Closed,
    /// The connection was reset or the NIC failed.
    Reset,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("migration link closed by the peer"),
            Self::Reset => f.write_str("migration link reset"),
        }
    }
}

/// A polled, non-blocking byte stream.
pub trait Link {
    /// Queue a prefix of `data` for sending; returns how many bytes were taken.
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError>;
    /// Take received bytes into `buf`; returns how many (0: nothing yet).
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError>;
    /// Bytes taken by [`Link::send`] that have not left this machine yet
    /// (the transport's send-buffer fill; smoltcp's `TcpSocket::send_queue`),
    /// or `None` when the transport cannot tell. The `informed` policy
    /// stops the guest only once this reaches 0, so its downtime does not
    /// start with draining pre-copy data; `None` stops at once.
    fn unsent(&self) -> Option<usize> {
        None
    }
}

impl<L: Link + ?Sized> Link for &mut L {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        (**self).send(data)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        (**self).recv(buf)
    }
    fn unsent(&self) -> Option<usize> {
        (**self).unsent()
    }
}

/// A fixed ring of `N` bytes.
#[derive(Debug)]
struct Ring<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
    closed: bool,
}

impl<const N: usize> Ring<N> {
    const fn new() -> Self {
        Self {
            buf: [0; N],
            head: 0,
            len: 0,
            closed: false,
        }
    }
    fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(N - self.len);
        for (i, &b) in data[..n].iter().enumerate() {
            self.buf[(self.head + self.len + i) % N] = b;
        }
        self.len += n;
        n
    }
    fn pop(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.buf[(self.head + i) % N];
        }
        self.head = (self.head + n) % N;
        self.len -= n;
        n
    }
}

/// An in-memory full-duplex pipe with `N` bytes of buffer per direction.
#[derive(Debug)]
pub struct Pipe<const N: usize> {
    ab: RefCell<Ring<N>>,
    ba: RefCell<Ring<N>>,
}

impl<const N: usize> Default for Pipe<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Pipe<N> {
    /// An empty pipe.
    pub const fn new() -> Self {
        Self {
            ab: RefCell::new(Ring::new()),
            ba: RefCell::new(Ring::new()),
        }
    }
    /// The two ends: (a, b).
    pub fn ends(&self) -> (PipeEnd<'_, N>, PipeEnd<'_, N>) {
        (
            PipeEnd {
                tx: &self.ab,
                rx: &self.ba,
            },
            PipeEnd {
                tx: &self.ba,
                rx: &self.ab,
            },
        )
    }
}

/// One end of a [`Pipe`].
#[derive(Debug)]
pub struct PipeEnd<'a, const N: usize> {
    tx: &'a RefCell<Ring<N>>,
    rx: &'a RefCell<Ring<N>>,
}

impl<const N: usize> PipeEnd<'_, N> {
    /// Close this end's sending direction: the peer's `recv` reports
    /// [`LinkError::Closed`] once it has drained the buffer.
    pub fn close(&mut self) {
        self.tx.borrow_mut().closed = true;
    }
}

impl<const N: usize> Link for PipeEnd<'_, N> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        if self.tx.borrow().closed {
            return Err(LinkError::Closed);
        }
        Ok(self.tx.borrow_mut().push(data))
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let mut rx = self.rx.borrow_mut();
        let n = rx.pop(buf);
        if n == 0 && rx.closed && !buf.is_empty() {
            return Err(LinkError::Closed);
        }
        Ok(n)
    }
}

/// A link that receives from a byte slice (closed at its end) and discards
/// what is sent: decodes a recorded stream.
#[derive(Debug)]
pub struct SliceLink<'a> {
    data: &'a [u8],
    /// Bytes sent into the link (and dropped).
    pub sent: usize,
}

impl<'a> SliceLink<'a> {
    /// Receive `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, sent: 0 }
    }
    /// Bytes not yet received.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
}

impl Link for SliceLink<'_> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        self.sent += data.len();
        Ok(data.len())
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        if self.data.is_empty() && !buf.is_empty() {
            return Err(LinkError::Closed);
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Fault settings of a [`FaultInjector`]; a rate of `n` means one chunk in
/// `n` on average, 0 disables the fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Flip one bit of a sent chunk.
    pub corrupt_one_in: u32,
    /// Drop a sent chunk (claim it was sent).
    pub drop_one_in: u32,
    /// Send a chunk twice.
    pub duplicate_one_in: u32,
    /// Only accept `n` bytes per `send` call at most (0: no limit).
    pub max_chunk: usize,
    /// Report the link reset after this many bytes were sent (0: never).
    pub reset_after: usize,
}

/// Wraps a link and injects faults on the sending direction (smoltcp
/// `FaultInjector` style), deterministic from a seed.
#[derive(Debug)]
pub struct FaultInjector<L> {
    inner: L,
    cfg: FaultConfig,
    rng: u64,
    sent: usize,
    /// Faults injected so far.
    pub injected: u32,
}

impl<L: Link> FaultInjector<L> {
    /// Wrap `inner`.
    pub fn new(inner: L, cfg: FaultConfig, seed: u64) -> Self {
        Self {
            inner,
            cfg,
            rng: seed | 1,
            sent: 0,
            injected: 0,
        }
    }
    /// The wrapped link.
    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }
    fn roll(&mut self, one_in: u32) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        one_in != 0 && self.rng.is_multiple_of(u64::from(one_in))
    }
}

impl<L: Link> Link for FaultInjector<L> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        if self.cfg.reset_after != 0 && self.sent >= self.cfg.reset_after {
            return Err(LinkError::Reset);
        }
        let mut chunk = [0u8; 512];
        let limit = if self.cfg.max_chunk == 0 {
            chunk.len()
        } else {
            self.cfg.max_chunk.min(chunk.len())
        };
        let n = data.len().min(limit);
        if n == 0 {
            return Ok(0);
        }
        chunk[..n].copy_from_slice(&data[..n]);
        if self.roll(self.cfg.drop_one_in) {
            self.injected += 1;
            self.sent += n;
            return Ok(n);
        }
        if self.roll(self.cfg.corrupt_one_in) {
            self.injected += 1;
            let bit = (self.rng >> 20) as usize % (n * 8);
            chunk[bit / 8] ^= 1 << (bit % 8);
        }
        let taken = self.inner.send(&chunk[..n])?;
        if taken == n && self.roll(self.cfg.duplicate_one_in) {
            self.injected += 1;
            let _ = self.inner.send(&chunk[..n])?;
        }
        self.sent += taken;
        Ok(taken)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.inner.recv(buf)
    }
    fn unsent(&self) -> Option<usize> {
        self.inner.unsent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_moves_bytes_both_ways_and_closes() {
        let pipe = Pipe::<8>::new();
        let (mut a, mut b) = pipe.ends();
        assert_eq!(a.send(b"0123456789").unwrap(), 8);
        let mut buf = [0u8; 16];
        assert_eq!(b.recv(&mut buf).unwrap(), 8);
        assert_eq!(&buf[..8], b"01234567");
        assert_eq!(b.recv(&mut buf).unwrap(), 0);
        b.send(b"xy").unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), 2);
        a.close();
        assert_eq!(b.recv(&mut buf), Err(LinkError::Closed));
    }

    #[test]
    fn fault_injector_corrupts_deterministically() {
        let pipe = Pipe::<4096>::new();
        let (a, mut b) = pipe.ends();
        let cfg = FaultConfig {
            corrupt_one_in: 1,
            ..FaultConfig::default()
        };
        let mut f = FaultInjector::new(a, cfg, 7);
        let data = [0u8; 100];
        assert_eq!(f.send(&data).unwrap(), 100);
        let mut out = [0u8; 100];
        b.recv(&mut out).unwrap();
        assert_eq!(out.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        assert_eq!(f.injected, 1);
    }
}
