//! Raw TCP throughput between two monitors (`net_bench=MIB`): the side
//! with `peer=` connects and sends MIB MiB of a known pattern, the side
//! with `listen=` accepts, checks every byte and answers with the count it
//! verified. Both print `report net_bench role=... bytes=... micros=...
//! mbps=... verified=...` (mbps: 10^6 bits per second); the sender's time
//! runs from its first byte to the receiver's answer, so it is the
//! end-to-end rate, which `migration.raw_tcp_mbps` reports beside the
//! migration's own throughput on the same pair.
//!
//! The stream: a 16-byte header (`gmig-net`, length as u64 LE), the data,
//! and the receiver's 16-byte answer (`gmig-ack`, bytes verified as u64
//! LE). Data byte `o` is byte `o % 8` (LE) of [`pattern_word`]`(o / 8)`:
//! cheap to make and to check eight bytes at a time, and a byte that is
//! lost, repeated, moved or flipped changes what the checker expects.

use core::fmt;

use migrate::link::{Link, LinkError};

use super::link::TcpLink;
use super::stack::{ConnectError, Net};
use crate::exit::{exit, ExitCode};
use crate::platform::Platform;
use crate::println;
use crate::time;

const HEADER_MAGIC: [u8; 8] = *b"gmig-net";
const ANSWER_MAGIC: [u8; 8] = *b"gmig-ack";
/// How long the sender keeps trying to reach a peer that is still booting.
const CONNECT_TIMEOUT_MS: u64 = 60_000;
/// How long the receiver waits for the sender to connect.
const ACCEPT_TIMEOUT_MS: u64 = 60_000;
/// A transfer that makes no progress for this long has failed.
const STALL_TIMEOUT_MS: u64 = 20_000;
/// How long closing may take once the data is through.
const CLOSE_TIMEOUT_MS: u64 = 5_000;
/// Bytes generated or checked per step.
const CHUNK: usize = 16 * 1024;

/// Word `index` of the data (see the module docs).
pub const fn pattern_word(index: u64) -> u64 {
    (index ^ 0x676d_6967_2d6e_6574).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn pattern_byte(offset: u64) -> u8 {
    pattern_word(offset / 8).to_le_bytes()[(offset % 8) as usize]
}

/// Fills `buf` with the data starting at stream offset `offset`.
pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    let mut at = 0;
    while at < buf.len() && !(offset + at as u64).is_multiple_of(8) {
        buf[at] = pattern_byte(offset + at as u64);
        at += 1;
    }
    let mut words = buf[at..].chunks_exact_mut(8);
    let mut index = (offset + at as u64) / 8;
    for word in &mut words {
        word.copy_from_slice(&pattern_word(index).to_le_bytes());
        index += 1;
    }
    let tail = words.into_remainder();
    for (i, b) in tail.iter_mut().enumerate() {
        *b = pattern_word(index).to_le_bytes()[i];
    }
}

/// The offset (in `data`) of the first byte that differs from the data
/// at stream offset `offset`, if any.
pub fn first_mismatch(data: &[u8], offset: u64) -> Option<usize> {
    let mut at = 0;
    while at < data.len() && !(offset + at as u64).is_multiple_of(8) {
        if data[at] != pattern_byte(offset + at as u64) {
            return Some(at);
        }
        at += 1;
    }
    let mut index = (offset + at as u64) / 8;
    let mut words = data[at..].chunks_exact(8);
    for word in &mut words {
        if word != pattern_word(index).to_le_bytes() {
            let i = (0..8)
                .find(|&i| word[i] != pattern_word(index).to_le_bytes()[i])
                .unwrap_or(0);
            return Some(at + i);
        }
        at += 8;
        index += 1;
    }
    let tail = words.remainder();
    (0..tail.len())
        .find(|&i| tail[i] != pattern_word(index).to_le_bytes()[i])
        .map(|i| at + i)
}

/// What a transfer measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchReport {
    pub bytes: u64,
    pub micros: u64,
    /// Every byte equalled the pattern (the receiver checked; the sender
    /// knows from the receiver's answer).
    pub verified: bool,
}

impl BenchReport {
    /// 10^6 bits per second.
    pub fn mbps(&self) -> f32 {
        self.bytes as f32 * 8.0 / self.micros.max(1) as f32
    }
}

/// Why a transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchError {
    /// No connection.
    Connect(ConnectError),
    /// The link broke after `done` bytes.
    Link { error: LinkError, done: u64 },
    /// No progress for [`STALL_TIMEOUT_MS`] after `done` bytes.
    Stalled { done: u64 },
    /// The peer sent something that is not this protocol.
    BadHeader,
    /// The sender announced another length than this side expects.
    LengthMismatch { announced: u64, expected: u64 },
    /// A byte of the data differs from the pattern (a corrupted stream).
    Corrupt { offset: u64, got: u8, expected: u8 },
    /// The receiver verified fewer bytes than were sent.
    ShortAnswer { verified: u64, sent: u64 },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Connect(e) => write!(f, "{e}"),
            BenchError::Link { error, done } => write!(f, "{error} after {done} bytes"),
            BenchError::Stalled { done } => write!(
                f,
                "no progress for {STALL_TIMEOUT_MS} ms after {done} bytes"
            ),
            BenchError::BadHeader => f.write_str("the peer's stream is not a network benchmark"),
            BenchError::LengthMismatch {
                announced,
                expected,
            } => write!(
                f,
                "the sender announced {announced} bytes, this side expects {expected} (net_bench differs)"
            ),
            BenchError::Corrupt {
                offset,
                got,
                expected,
            } => write!(
                f,
                "byte {offset} of the stream is {got:#04x}, the pattern says {expected:#04x}"
            ),
            BenchError::ShortAnswer { verified, sent } => {
                write!(f, "the receiver verified {verified} of {sent} bytes")
            }
        }
    }
}

/// Tracks progress against the stall timeout.
struct Progress {
    last: u64,
    at: u64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            last: 0,
            at: time::micros_since_boot(),
        }
    }

    fn check(&mut self, done: u64) -> Result<(), BenchError> {
        let now = time::micros_since_boot();
        if done != self.last {
            self.last = done;
            self.at = now;
            Ok(())
        } else if now - self.at > STALL_TIMEOUT_MS * 1000 {
            Err(BenchError::Stalled { done })
        } else {
            Ok(())
        }
    }
}

fn send_all(link: &mut TcpLink<'_>, data: &[u8], done: u64) -> Result<(), BenchError> {
    let mut sent = 0;
    let mut progress = Progress::new();
    while sent < data.len() {
        sent += link
            .send(&data[sent..])
            .map_err(|error| BenchError::Link { error, done })?;
        progress.check(sent as u64)?;
    }
    Ok(())
}

fn recv_exact(link: &mut TcpLink<'_>, buf: &mut [u8], done: u64) -> Result<(), BenchError> {
    let mut got = 0;
    let mut progress = Progress::new();
    while got < buf.len() {
        got += link
            .recv(&mut buf[got..])
            .map_err(|error| BenchError::Link { error, done })?;
        progress.check(got as u64)?;
    }
    Ok(())
}

/// Sends `bytes` of the pattern over the connected `net` and waits for
/// the receiver's answer.
pub fn send(net: &mut Net, bytes: u64) -> Result<BenchReport, BenchError> {
    let mut link = TcpLink::new(net);
    let start = time::micros_since_boot();
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&HEADER_MAGIC);
    header[8..].copy_from_slice(&bytes.to_le_bytes());
    send_all(&mut link, &header, 0)?;
    let mut chunk = [0u8; CHUNK];
    let mut offset = 0u64;
    let mut progress = Progress::new();
    while offset < bytes {
        let len = (bytes - offset).min(CHUNK as u64) as usize;
        fill_pattern(&mut chunk[..len], offset);
        let mut sent = 0;
        while sent < len {
            sent += link
                .send(&chunk[sent..len])
                .map_err(|error| BenchError::Link {
                    error,
                    done: offset + sent as u64,
                })?;
            progress.check(offset + sent as u64)?;
        }
        offset += len as u64;
    }
    let mut answer = [0u8; 16];
    recv_exact(&mut link, &mut answer, bytes)?;
    let micros = time::micros_since_boot() - start;
    if answer[..8] != ANSWER_MAGIC {
        return Err(BenchError::BadHeader);
    }
    let verified = u64::from_le_bytes(answer[8..].try_into().unwrap_or([0; 8]));
    if verified != bytes {
        return Err(BenchError::ShortAnswer {
            verified,
            sent: bytes,
        });
    }
    Ok(BenchReport {
        bytes,
        micros,
        verified: true,
    })
}

/// Receives and checks `bytes` of the pattern from the connected `net`,
/// then answers with the count verified.
pub fn receive(net: &mut Net, bytes: u64) -> Result<BenchReport, BenchError> {
    let mut link = TcpLink::new(net);
    let mut header = [0u8; 16];
    recv_exact(&mut link, &mut header, 0)?;
    let start = time::micros_since_boot();
    if header[..8] != HEADER_MAGIC {
        return Err(BenchError::BadHeader);
    }
    let announced = u64::from_le_bytes(header[8..].try_into().unwrap_or([0; 8]));
    if announced != bytes {
        return Err(BenchError::LengthMismatch {
            announced,
            expected: bytes,
        });
    }
    let mut chunk = [0u8; CHUNK];
    let mut offset = 0u64;
    let mut progress = Progress::new();
    while offset < bytes {
        let want = (bytes - offset).min(CHUNK as u64) as usize;
        let got = link
            .recv(&mut chunk[..want])
            .map_err(|error| BenchError::Link {
                error,
                done: offset,
            })?;
        if let Some(i) = first_mismatch(&chunk[..got], offset) {
            let at = offset + i as u64;
            return Err(BenchError::Corrupt {
                offset: at,
                got: chunk[i],
                expected: pattern_byte(at),
            });
        }
        offset += got as u64;
        progress.check(offset)?;
    }
    let micros = time::micros_since_boot() - start;
    let mut answer = [0u8; 16];
    answer[..8].copy_from_slice(&ANSWER_MAGIC);
    answer[8..].copy_from_slice(&offset.to_le_bytes());
    send_all(&mut link, &answer, offset)?;
    Ok(BenchReport {
        bytes,
        micros,
        verified: true,
    })
}

/// Reads until the peer's FIN ([`LinkError::Closed`]); anything else the
/// peer sends, or a reset, is an error.
fn await_peer_close(net: &mut Net) -> Result<(), BenchError> {
    let mut link = TcpLink::new(net);
    let mut byte = [0u8; 1];
    let start = time::micros_since_boot();
    loop {
        match link.recv(&mut byte) {
            Err(LinkError::Closed) => return Ok(()),
            Err(error) => return Err(BenchError::Link { error, done: 0 }),
            Ok(0) if time::micros_since_boot() - start < CLOSE_TIMEOUT_MS * 1000 => {}
            Ok(0) => return Err(BenchError::Stalled { done: 0 }),
            Ok(_) => return Err(BenchError::BadHeader),
        }
    }
}

/// `net_bench=MIB`: connect and send (with `peer=`) or accept and receive
/// (with `listen=`), print the figures, and end the monitor.
pub fn run(platform: &mut Platform, mib: u32) -> ! {
    let Some(net) = platform.net.as_mut() else {
        // The command line requires ip= with net_bench=.
        println!("error: network benchmark: the network is not up");
        exit(ExitCode::Failure)
    };
    let bytes = u64::from(mib) << 20;
    let config = *net.config();
    let (role, outcome) = match (config.peer, config.listen) {
        (Some(peer), _) => (
            "send",
            net.connect(peer, CONNECT_TIMEOUT_MS, &mut || {})
                .map_err(BenchError::Connect)
                .and_then(|()| send(net, bytes)),
        ),
        (None, Some(port)) => (
            "receive",
            net.accept(port, ACCEPT_TIMEOUT_MS, &mut || {})
                .map_err(BenchError::Connect)
                .and_then(|_| receive(net, bytes)),
        ),
        (None, None) => {
            println!("error: network benchmark: neither peer= nor listen= given");
            exit(ExitCode::Failure)
        }
    };
    match outcome {
        Ok(report) => {
            // The receiver waits for the sender's FIN after its answer, so
            // that both ends see the stream end in order.
            if role == "receive" {
                match await_peer_close(net) {
                    Ok(()) => defmt::info!("net: the peer closed the connection"),
                    Err(e) => defmt::warn!(
                        "net: waiting for the peer to close: {}",
                        defmt::Display2Format(&e)
                    ),
                }
            }
            let closed = net.close(CLOSE_TIMEOUT_MS, &mut || {});
            let counters = net.counters();
            defmt::info!(
                "net: {=u64} frames received, {=u64} sent, {=u64} dropped on receive, {=u64} on send",
                counters.rx_frames,
                counters.tx_frames,
                counters.rx_dropped,
                counters.tx_dropped
            );
            defmt::info!(
                "report net_bench role={=str} nic={=str} bytes={=u64} micros={=u64} mbps={=f32} verified={=bool}",
                role,
                net.nic().kind.name(),
                report.bytes,
                report.micros,
                report.mbps(),
                report.verified
            );
            println!(
                "gmig-rs: network benchmark ({role}): {} MiB in {} ms over {}, {:.1} Mbit/s, every byte verified",
                mib,
                report.micros / 1000,
                net.nic(),
                report.mbps()
            );
            if let Err(e) = closed {
                // The data and the answer are through; only the goodbye
                // was not.
                defmt::warn!("net: closing the connection: {}", defmt::Display2Format(&e));
            }
            exit(ExitCode::Success)
        }
        Err(e) => {
            defmt::error!(
                "net: benchmark ({=str}) failed: {}",
                role,
                defmt::Display2Format(&e)
            );
            println!("error: network benchmark ({role}) failed: {e}");
            net.abort();
            exit(ExitCode::Failure)
        }
    }
}
