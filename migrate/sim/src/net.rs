//! Link model: bandwidth, one-way latency and a send buffer, on a virtual
//! clock the simulator advances.
//!
//! Parameters and their basis: `qemu-32MiB/s` is QEMU 2.3's default
//! migration bandwidth limit and 300 ms downtime target, the setting gMig
//! ran with (the gMig paper's set-up); `1GbE` is gigabit Ethernet's TCP payload rate
//! (about 117 MiB/s after Ethernet, IP and TCP framing) with the same
//! target. The 100 us one-way latency is an assumption for one switch hop;
//! the 256 KiB send buffer (set in [`crate::run`]) is an assumption of a
//! typical TCP send buffer, and its fill at the stop shows up in the
//! downtime breakdown (`backlog_at_stop_bytes`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use migrate::{Link, LinkError};
use serde::Serialize;

/// A link setting.
#[derive(Clone, Debug, Serialize)]
pub struct LinkSetting {
    /// Name in reports.
    pub name: String,
    /// Bytes per second.
    pub bandwidth: f64,
    /// One-way latency.
    pub latency_ns: u64,
    /// Downtime budget the policies aim for.
    pub downtime_budget_ns: u64,
}

impl LinkSetting {
    /// QEMU 2.3's defaults as gMig ran them: 32 MiB/s limit, 300 ms target.
    pub fn qemu_default() -> Self {
        Self {
            name: "qemu-32MiB/s".into(),
            bandwidth: 32.0 * 1048576.0,
            latency_ns: 100_000,
            downtime_budget_ns: 300_000_000,
        }
    }
    /// Gigabit Ethernet, same 300 ms target.
    pub fn gigabit() -> Self {
        Self {
            name: "1GbE".into(),
            bandwidth: 117.0 * 1048576.0,
            latency_ns: 100_000,
            downtime_budget_ns: 300_000_000,
        }
    }
    /// The bandwidth scaled down by `k` (quick runs with scaled workloads).
    pub fn scaled(mut self, k: usize) -> Self {
        self.bandwidth /= k as f64;
        self
    }
}

#[derive(Debug)]
struct Dir {
    /// (arrival time, bytes)
    queue: VecDeque<(u64, Vec<u8>)>,
    /// When the wire is free again.
    wire_free_ns: u64,
}

#[derive(Debug)]
struct Shared {
    now: Cell<u64>,
    dirs: [RefCell<Dir>; 2],
    setting: LinkSetting,
    buffer: u64,
}

/// One end of a simulated link.
#[derive(Debug, Clone)]
pub struct SimEnd {
    shared: Rc<Shared>,
    tx: usize,
}

/// Build a link with `buffer` bytes of send buffer per direction.
pub fn sim_link(setting: LinkSetting, buffer: u64) -> (SimEnd, SimEnd) {
    let dir = || {
        RefCell::new(Dir {
            queue: VecDeque::new(),
            wire_free_ns: 0,
        })
    };
    let shared = Rc::new(Shared {
        now: Cell::new(0),
        dirs: [dir(), dir()],
        setting,
        buffer,
    });
    (
        SimEnd {
            shared: shared.clone(),
            tx: 0,
        },
        SimEnd { shared, tx: 1 },
    )
}

impl SimEnd {
    /// Set the virtual clock (shared by both ends).
    pub fn set_now(&self, now_ns: u64) {
        self.shared.now.set(now_ns);
    }

    /// Bytes accepted by this end but not yet on the wire (its send buffer).
    pub fn backlog(&self) -> u64 {
        let now = self.shared.now.get();
        let d = self.shared.dirs[self.tx].borrow();
        (d.wire_free_ns.saturating_sub(now) as f64 * self.shared.setting.bandwidth / 1e9) as u64
    }
}

impl Link for SimEnd {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        let now = self.shared.now.get();
        let mut d = self.shared.dirs[self.tx].borrow_mut();
        let bw = self.shared.setting.bandwidth;
        let start = d.wire_free_ns.max(now);
        // Bytes still waiting in the send buffer.
        let backlog = ((start - now) as f64 * bw / 1e9) as u64;
        let room = self.shared.buffer.saturating_sub(backlog) as usize;
        let n = data.len().min(room);
        if n == 0 {
            return Ok(0);
        }
        let done = start + (n as f64 * 1e9 / bw) as u64;
        d.wire_free_ns = done;
        d.queue
            .push_back((done + self.shared.setting.latency_ns, data[..n].to_vec()));
        Ok(n)
    }

    fn unsent(&self) -> Option<usize> {
        Some(self.backlog() as usize)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let now = self.shared.now.get();
        let mut d = self.shared.dirs[1 - self.tx].borrow_mut();
        let mut n = 0;
        while n < buf.len() {
            let Some((t, bytes)) = d.queue.front_mut() else {
                break;
            };
            if *t > now {
                break;
            }
            let k = bytes.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&bytes[..k]);
            n += k;
            if k == bytes.len() {
                d.queue.pop_front();
            } else {
                bytes.drain(..k);
            }
        }
        Ok(n)
    }
}
