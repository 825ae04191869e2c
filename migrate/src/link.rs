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
    /// Close the sending direction: the peer's `recv` reports
    /// [`LinkError::Closed`] once it has taken what was sent (TCP: FIN).
    /// What a side does when it gives up; the default does nothing.
    fn close(&mut self) {}
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
    fn close(&mut self) {
        (**self).close()
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
    /// Empties both directions and opens them again, in place (a pipe of
    /// many KiB is not built anew on a small stack).
    pub fn reset(&mut self) {
        for ring in [&mut self.ab, &mut self.ba] {
            let r = ring.get_mut();
            r.head = 0;
            r.len = 0;
            r.closed = false;
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
    fn close(&mut self) {
        self.tx.borrow_mut().closed = true;
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
/// `n` on average, 0 disables the fault. Offsets count the bytes of the
/// sending direction from its first byte.
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
    /// Invert the byte at this offset (one byte flipped in flight).
    pub flip_byte_at: Option<u64>,
    /// Take the bytes from this offset on and never deliver them: a peer
    /// gone silent, or a message lost with everything after it.
    pub lose_from: Option<u64>,
    /// Close the link at this offset: the peer sees the stream end there,
    /// later sends fail with [`LinkError::Closed`].
    pub close_at: Option<u64>,
    /// Act on the first record of a kind (the stream's framing followed).
    pub at_record: Option<RecordFault>,
}

/// A fault at the first record of one kind, for the handover tests: the
/// injector follows the record framing of [`crate::wire`] after `prelude`
/// bytes (the handshake: [`crate::wire::FORWARD_PRELUDE_LEN`] or
/// [`crate::wire::BACK_PRELUDE_LEN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFault {
    /// Record kind byte ([`crate::wire::Kind`]).
    pub kind: u8,
    /// Bytes before the first record.
    pub prelude: usize,
    /// Bytes of the record let through before the fault.
    pub after: usize,
    /// What happens there.
    pub action: RecordAction,
}

/// What a [`RecordFault`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordAction {
    /// Lose the rest of the stream from there, silently.
    Lose,
    /// Close the link there.
    Close,
    /// Invert the byte there.
    Flip,
}

/// Follows record boundaries of the stream passing through an injector.
#[derive(Clone, Copy, Debug, Default)]
struct Framing {
    /// Offset of the current record's first byte.
    start: u64,
    /// Offset just past it, once its length field went by.
    end: Option<u64>,
    len: [u8; 4],
}

/// Wraps a link and injects faults on the sending direction (smoltcp
/// `FaultInjector` style), deterministic from a seed.
#[derive(Debug)]
pub struct FaultInjector<L> {
    inner: L,
    cfg: FaultConfig,
    rng: u64,
    sent: usize,
    offset: u64,
    losing: bool,
    closed: bool,
    framing: Framing,
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
            offset: 0,
            losing: false,
            closed: false,
            framing: Framing {
                start: cfg.at_record.map_or(0, |r| r.prelude as u64),
                ..Framing::default()
            },
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

    /// The offset of the next record fault, as far as the framing tells
    /// it by now, and the longest chunk that keeps framing in step (never
    /// past a record's length field or its end).
    fn record_fault(&self, data: &[u8]) -> (Option<(u64, RecordAction)>, u64) {
        let Some(rf) = self.cfg.at_record else {
            return (None, u64::MAX);
        };
        let (pos, f) = (self.offset, self.framing);
        if pos < f.start {
            return (None, f.start - pos);
        }
        let fault = (pos == f.start && data.first() == Some(&rf.kind))
            .then_some((f.start + rf.after as u64, rf.action));
        let limit = match f.end {
            Some(end) => end - pos,
            None => f.start + crate::wire::RECORD_HEAD_LEN as u64 - pos,
        };
        (fault, limit)
    }

    /// Account for `chunk` going out at the current offset.
    fn follow(&mut self, chunk: &[u8]) {
        if self.cfg.at_record.is_none() {
            return;
        }
        let head = crate::wire::RECORD_HEAD_LEN as u64;
        for (i, &b) in chunk.iter().enumerate() {
            let at = self.offset + i as u64;
            let f = &mut self.framing;
            if at < f.start {
                continue;
            }
            let rel = at - f.start;
            if (16..20).contains(&rel) {
                f.len[(rel - 16) as usize] = b;
                if rel == 19 {
                    let len = u64::from(u32::from_le_bytes(f.len));
                    f.end = Some(f.start + head + len + crate::wire::RECORD_TRAILER_LEN as u64);
                }
            }
            if f.end == Some(at + 1) {
                f.start = at + 1;
                f.end = None;
            }
        }
    }
}

impl<L: Link> Link for FaultInjector<L> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        if self.cfg.reset_after != 0 && self.sent >= self.cfg.reset_after {
            return Err(LinkError::Reset);
        }
        if self.closed {
            return Err(LinkError::Closed);
        }
        let mut chunk = [0u8; 512];
        let limit = if self.cfg.max_chunk == 0 {
            chunk.len()
        } else {
            self.cfg.max_chunk.min(chunk.len())
        };
        let mut n = data.len().min(limit) as u64;
        if n == 0 {
            return Ok(0);
        }
        if self.losing {
            self.offset += n;
            self.sent += n as usize;
            return Ok(n as usize);
        }
        let pos = self.offset;
        // Fault offsets: a chunk ends where one begins.
        let (record, frame_limit) = self.record_fault(data);
        if let Some((at, action)) = record {
            match action {
                RecordAction::Lose => self.cfg.lose_from = Some(at),
                RecordAction::Close => self.cfg.close_at = Some(at),
                RecordAction::Flip => self.cfg.flip_byte_at = Some(at),
            }
        }
        n = n.min(frame_limit);
        for at in [self.cfg.lose_from, self.cfg.close_at]
            .into_iter()
            .flatten()
        {
            if at > pos {
                n = n.min(at - pos);
            }
        }
        if self.cfg.close_at == Some(pos) {
            self.injected += 1;
            self.closed = true;
            self.inner.close();
            return Err(LinkError::Closed);
        }
        let n = n as usize;
        if self.cfg.lose_from.is_some_and(|at| at <= pos) {
            self.injected += 1;
            self.losing = true;
            return self.send(data);
        }
        chunk[..n].copy_from_slice(&data[..n]);
        if let Some(at) = self.cfg.flip_byte_at {
            if (pos..pos + n as u64).contains(&at) {
                chunk[(at - pos) as usize] ^= 0xff;
                self.injected += 1;
            }
        }
        if self.roll(self.cfg.drop_one_in) {
            self.injected += 1;
            self.follow(&data[..n]);
            self.offset += n as u64;
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
        self.follow(&data[..taken]);
        self.offset += taken as u64;
        self.sent += taken;
        Ok(taken)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.inner.recv(buf)
    }
    fn unsent(&self) -> Option<usize> {
        self.inner.unsent()
    }
    fn close(&mut self) {
        self.inner.close()
    }
}

/// Caps what a link sends at `bytes_per_sec` (QEMU's `max-bandwidth`
/// meaning: stream bytes a second, from the first send on), by taking no
/// more than the budget the time since then allows. The caller tells it
/// the time ([`Capped::set_now`]) before it polls: the link holds no clock.
/// A burst of at most [`CAP_BURST`] bytes may run ahead of the budget,
/// so a record is never held back for its last bytes.
#[derive(Debug)]
pub struct Capped<L> {
    inner: L,
    bytes_per_sec: u64,
    start_ns: Option<u64>,
    now_ns: u64,
    sent: u64,
}

/// Bytes a [`Capped`] link lets run ahead of the elapsed time's budget.
pub const CAP_BURST: u64 = 64 * 1024;

impl<L: Link> Capped<L> {
    /// `inner`, capped at `bytes_per_sec` (0: no cap).
    pub fn new(inner: L, bytes_per_sec: u64) -> Self {
        Self {
            inner,
            bytes_per_sec,
            start_ns: None,
            now_ns: 0,
            sent: 0,
        }
    }
    /// The time, in the caller's clock.
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }
    /// The wrapped link.
    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }
    /// Bytes the budget allows now.
    fn allowance(&mut self) -> u64 {
        if self.bytes_per_sec == 0 {
            return u64::MAX;
        }
        let start = *self.start_ns.get_or_insert(self.now_ns);
        let elapsed = u128::from(self.now_ns.saturating_sub(start));
        let budget = elapsed * u128::from(self.bytes_per_sec) / 1_000_000_000;
        let budget = u64::try_from(budget).unwrap_or(u64::MAX);
        budget.saturating_add(CAP_BURST).saturating_sub(self.sent)
    }
}

impl<L: Link> Link for Capped<L> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        let allowed = usize::try_from(self.allowance()).unwrap_or(usize::MAX);
        let take = data.len().min(allowed);
        if take == 0 {
            return Ok(0);
        }
        let n = self.inner.send(&data[..take])?;
        self.sent += n as u64;
        Ok(n)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.inner.recv(buf)
    }
    fn unsent(&self) -> Option<usize> {
        self.inner.unsent()
    }
    fn close(&mut self) {
        self.inner.close()
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
    fn a_reset_pipe_is_empty_and_open_both_ways() {
        let mut pipe = Pipe::<8>::new();
        {
            let (mut a, mut b) = pipe.ends();
            a.send(b"left").unwrap();
            b.send(b"over").unwrap();
            a.close();
        }
        pipe.reset();
        let (mut a, mut b) = pipe.ends();
        let mut buf = [0u8; 8];
        assert_eq!(b.recv(&mut buf), Ok(0));
        assert_eq!(a.recv(&mut buf), Ok(0));
        assert_eq!(a.send(b"new").unwrap(), 3);
        assert_eq!(b.recv(&mut buf), Ok(3));
        assert_eq!(&buf[..3], b"new");
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

    #[test]
    fn fault_injector_flips_loses_and_closes_at_offsets() {
        let pipe = Pipe::<4096>::new();
        let (a, mut b) = pipe.ends();
        let cfg = FaultConfig {
            flip_byte_at: Some(5),
            lose_from: Some(8),
            ..FaultConfig::default()
        };
        let mut f = FaultInjector::new(a, cfg, 1);
        assert_eq!(f.send(&[0u8; 6]).unwrap(), 6);
        assert_eq!(f.send(&[0u8; 6]).unwrap(), 2);
        assert_eq!(f.send(&[0u8; 6]).unwrap(), 6);
        let mut out = [0u8; 32];
        assert_eq!(b.recv(&mut out).unwrap(), 8);
        assert_eq!(out[..8], [0, 0, 0, 0, 0, 0xff, 0, 0]);
        let pipe = Pipe::<4096>::new();
        let (a, mut b) = pipe.ends();
        let cfg = FaultConfig {
            close_at: Some(3),
            ..FaultConfig::default()
        };
        let mut f = FaultInjector::new(a, cfg, 1);
        assert_eq!(f.send(&[1u8; 6]).unwrap(), 3);
        assert_eq!(f.send(&[1u8; 6]), Err(LinkError::Closed));
        assert_eq!(b.recv(&mut out).unwrap(), 3);
        assert_eq!(b.recv(&mut out), Err(LinkError::Closed));
    }

    #[test]
    fn fault_injector_finds_a_record_kind() {
        use crate::wire::{RecordRepr, EMPTY_RECORD_LEN, MAX_RECORD, RECORD_TRAILER_LEN};
        let mut stream = vec![9u8; 10];
        let mut rec = [0u8; MAX_RECORD];
        let page = [0u8; crate::PAGE_SIZE];
        for repr in [
            RecordRepr::Page {
                page: crate::GuestPage::new(1).unwrap(),
                data: &page,
            },
            RecordRepr::Done { page_records: 1 },
            RecordRepr::Commit { done_seq: 1 },
        ] {
            let n = repr.emit_body(&mut rec) + RECORD_TRAILER_LEN;
            stream.extend_from_slice(&rec[..n]);
        }
        let pipe = Pipe::<16384>::new();
        let (a, mut b) = pipe.ends();
        let cfg = FaultConfig {
            max_chunk: 7,
            at_record: Some(RecordFault {
                kind: 10,
                prelude: 10,
                after: 0,
                action: RecordAction::Lose,
            }),
            ..FaultConfig::default()
        };
        let mut f = FaultInjector::new(a, cfg, 1);
        let mut at = 0;
        while at < stream.len() {
            at += f.send(&stream[at..]).unwrap();
        }
        let mut out = vec![0u8; 16384];
        let n = b.recv(&mut out).unwrap();
        assert_eq!(n, stream.len() - EMPTY_RECORD_LEN);
        assert_eq!(out[..n], stream[..n]);
        assert_eq!(f.injected, 1);
    }

    #[test]
    fn a_capped_link_sends_at_most_its_rate_plus_a_burst() {
        let pipe = Pipe::<{ 1 << 20 }>::new();
        let (a, mut b) = pipe.ends();
        // 1 MiB/s.
        let mut link = Capped::new(a, 1 << 20);
        let data = vec![7u8; 512 * 1024];
        let mut sent = 0usize;
        let mut out = vec![0u8; 1 << 20];
        for ms in 0..=250u64 {
            link.set_now(1_000_000_000 + ms * 1_000_000);
            sent += link.send(&data[..]).unwrap();
            let allowed = (ms << 20) / 1000 + CAP_BURST;
            assert!(sent as u64 <= allowed, "{sent} > {allowed} at {ms} ms");
            let _ = b.recv(&mut out).unwrap();
        }
        // 250 ms at 1 MiB/s: a quarter MiB, and the burst.
        assert!(sent as u64 >= (1 << 18), "{sent}");
        let mut free = Capped::new(pipe.ends().0, 0);
        assert_eq!(free.send(&data[..1000]).unwrap(), 1000);
    }
}
