//! The migration stream against the link it runs on: a whole migration of a
//! guest's pages (the real [`Source`] and [`Receiver`], authenticated, and
//! encrypted) over TCP on the loopback interface, beside a raw transfer of
//! the same number of bytes over the same interface in the same run.
//!
//! Loopback TCP is far faster than any NIC the monitor drives, so the ratio
//! here is the stream's processing (page digests, records, tags, the
//! destination's checks) against the fastest link this machine has; the
//! stream's own rate in Gbit/s says which real links it can fill. Inside
//! the monitor under QEMU TCG every one of those steps runs emulated, which
//! is why `cargo xtask run`'s `throughput_mbps` sits far below its
//! `raw_tcp_mbps` (README, Known limits).
//!
//! `--out DIR` writes `stream.json`; `--quick` moves 16 MiB instead of
//! 128 MiB.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use migrate::{
    DeterministicEntropy, GuestPage, Link, LinkError, MemoryError, MigrationKey, PageBuf,
    PageRange, PageSink, PageSource, Policy, Receiver, ReceiverConfig, ReceiverStatus, Slot,
    Source, SourceConfig, SourceStatus, SourceStorage, PAGE_SIZE,
};

const FIRST_PAGE: u64 = 0x10000;
const KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// A guest whose pages hold distinct, incompressible content (no zero
/// pages, nothing a delta could shrink): the stream's worst case per page.
struct Pages(Vec<PageBuf>);

impl Pages {
    fn new(n: usize) -> Self {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut pages = vec![[0u8; PAGE_SIZE]; n];
        for p in &mut pages {
            for word in p.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
        }
        Self(pages)
    }
}

impl PageSource for Pages {
    fn page_count(&self) -> usize {
        self.0.len()
    }
    fn page_at(&self, index: usize) -> GuestPage {
        GuestPage::new(FIRST_PAGE + index as u64).expect("page number in range")
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let i = (page.get() - FIRST_PAGE) as usize;
        *out = *self.0.get(i).ok_or(MemoryError::NotMapped(page))?;
        Ok(())
    }
    fn device_state_len(&self) -> usize {
        0
    }
    fn read_device_state(&mut self, _: usize, _: &mut [u8]) -> Result<(), MemoryError> {
        Ok(())
    }
    fn cpu_state_len(&self) -> usize {
        0
    }
    fn read_cpu_state(&mut self, _: usize, _: &mut [u8]) -> Result<(), MemoryError> {
        Ok(())
    }
}

/// The destination's memory, checked against the source's at the end.
struct Sink(Vec<PageBuf>);

impl PageSink for Sink {
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError> {
        let slot = (page.get() - FIRST_PAGE) as usize;
        *self.0.get_mut(slot).ok_or(MemoryError::Refused(page))? = *data;
        Ok(())
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let slot = (page.get() - FIRST_PAGE) as usize;
        *out = *self.0.get(slot).ok_or(MemoryError::NotMapped(page))?;
        Ok(())
    }
    fn write_device_state(&mut self, _: usize, _: usize, _: &[u8]) -> Result<(), MemoryError> {
        Ok(())
    }
    fn write_cpu_state(&mut self, _: usize, _: usize, _: &[u8]) -> Result<(), MemoryError> {
        Ok(())
    }
}

/// [`Link`] over a non-blocking TCP stream, as the monitor's smoltcp link
/// is: `send` takes what the socket takes now, `recv` what has arrived.
struct TcpLink(TcpStream);

impl Link for TcpLink {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        match self.0.write(data) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(LinkError::Reset),
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        match self.0.read(buf) {
            Ok(0) => Err(LinkError::Closed),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(LinkError::Reset),
        }
    }
}

fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let client = TcpStream::connect(addr).expect("connect loopback");
    let (server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_nodelay(true).expect("nodelay");
    }
    (client, server)
}

fn now_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// CPU time this process has used (user and system, both threads), from
/// `/proc/self/stat` in clock ticks of 10 ms: the stream's own cost,
/// which a loaded machine does not inflate the way it inflates wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

struct Run {
    seconds: f64,
    cpu_seconds: f64,
    bytes: u64,
}

impl Run {
    fn mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e6
    }
    /// The rate at which one side's core becomes the limit, from the CPU
    /// time both sides used (split evenly: on two machines each pays its
    /// half).
    fn cpu_limit_mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.cpu_seconds.max(0.01) / 1e6 * 2.0
    }
}

/// One whole migration (stop-and-copy: every page once, then the
/// handover), source and destination each on a thread of its own.
fn migrate_once(pages: usize, encrypt: bool) -> Run {
    let key = MigrationKey::from_hex(KEY_HEX).expect("bench key");
    let (src_sock, dst_sock) = connected_pair();
    for s in [&src_sock, &dst_sock] {
        s.set_nonblocking(true).expect("non-blocking");
    }
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let dest_key = key;
    let dest = std::thread::spawn(move || {
        let range = PageRange::new(
            GuestPage::new(FIRST_PAGE).expect("first page"),
            pages as u64,
        )
        .expect("page range");
        let mut cfg = ReceiverConfig::new(0, range);
        cfg.encrypt = encrypt;
        let mut rx = Receiver::new(cfg, &dest_key, &mut DeterministicEntropy(2));
        let mut sink = Sink(vec![[0u8; PAGE_SIZE]; pages]);
        let mut link = TcpLink(dst_sock);
        loop {
            let now = now_ns(start);
            match rx.poll(now, &mut sink, &mut link, 64).expect("destination") {
                ReceiverStatus::Received => rx.ready(now, &mut link).expect("ready"),
                ReceiverStatus::Resume => rx.resumed(&mut link).expect("resumed"),
                ReceiverStatus::Completed => return sink,
                _ => {}
            }
        }
    });
    let mut guest = Pages::new(pages);
    let mut slots = vec![Slot::EMPTY; (pages * 2).next_power_of_two()];
    let mut cache_pages = vec![[0u8; PAGE_SIZE]; 1];
    let mut cache_owners = vec![0u64; 1];
    let mut cfg = SourceConfig::new(Policy::StopAndCopy);
    cfg.encrypt = encrypt;
    cfg.work_per_poll = 64;
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cache_pages,
        cache_owners: &mut cache_owners,
    };
    let mut source = Source::new(cfg, storage, &key, &mut DeterministicEntropy(1)).expect("source");
    let mut link = TcpLink(src_sock);
    loop {
        let now = now_ns(start);
        match source.poll(now, &mut guest, &mut link).expect("source") {
            SourceStatus::StopGuest => source.guest_stopped(now).expect("stop"),
            SourceStatus::Completed => break,
            _ => {}
        }
    }
    let bytes = source.bytes_sent();
    let sink = dest.join().expect("destination thread");
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu_start;
    assert!(
        sink.0 == guest.0,
        "the destination's pages differ from the source's"
    );
    Run {
        seconds,
        cpu_seconds,
        bytes,
    }
}

/// `bytes` over a fresh loopback connection, written and read in 64 KiB
/// pieces: the link's own rate.
fn raw_tcp(bytes: u64) -> Run {
    let (mut tx, mut rx) = connected_pair();
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0u64;
        while got < bytes {
            let n = rx.read(&mut buf).expect("raw read");
            assert!(n > 0, "raw transfer ended early");
            got += n as u64;
        }
    });
    let chunk = vec![0xa5u8; 64 << 10];
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(chunk.len() as u64) as usize;
        tx.write_all(&chunk[..n]).expect("raw write");
        sent += n as u64;
    }
    reader.join().expect("raw reader");
    Run {
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu_start,
        bytes,
    }
}

fn main() {
    let mut out: Option<PathBuf> = None;
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            other => {
                eprintln!("stream_bench: unknown argument {other} (--out DIR, --quick)");
                std::process::exit(2);
            }
        }
    }
    let pages = if quick { 4096 } else { 32768 };
    let mib = (pages * PAGE_SIZE) >> 20;
    // Best of three of each, alternating, against a noisy machine.
    let best = |f: &dyn Fn() -> Run| {
        (0..3)
            .map(|_| f())
            .max_by(|a, b| a.mbps().total_cmp(&b.mbps()))
            .expect("three runs")
    };
    let authenticated = best(&|| migrate_once(pages, false));
    let encrypted = best(&|| migrate_once(pages, true));
    let raw = best(&|| raw_tcp(authenticated.bytes));
    let ratio = |r: &Run| r.mbps() / raw.mbps();
    println!("migration stream over loopback TCP, {mib} MiB of incompressible pages:");
    println!("  raw TCP          {:>9.0} Mbit/s", raw.mbps());
    for (name, r) in [("authenticated", &authenticated), ("encrypted", &encrypted)] {
        println!(
            "  {name:<16} {:>9.0} Mbit/s  {:.2}x raw TCP; CPU-bound at {:.0} Mbit/s a side ({} stream bytes, {:.3} s, {:.2} CPU s)",
            r.mbps(),
            ratio(r),
            r.cpu_limit_mbps(),
            r.bytes,
            r.seconds,
            r.cpu_seconds
        );
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir).expect("output directory");
        let json = format!(
            "{{\"mib\":{mib},\"raw_tcp_mbps\":{:.1},\"authenticated_mbps\":{:.1},\"authenticated_ratio\":{:.3},\"authenticated_cpu_limit_mbps\":{:.1},\"encrypted_mbps\":{:.1},\"encrypted_ratio\":{:.3},\"encrypted_cpu_limit_mbps\":{:.1}}}\n",
            raw.mbps(),
            authenticated.mbps(),
            ratio(&authenticated),
            authenticated.cpu_limit_mbps(),
            encrypted.mbps(),
            ratio(&encrypted),
            encrypted.cpu_limit_mbps()
        );
        std::fs::write(dir.join("stream.json"), json).expect("write stream.json");
    }
}
