//! A read-only TFTP server (RFC 1350) with option negotiation (RFC 2347)
//! for `blksize` (RFC 2348) and `tsize` (RFC 2349): what PXE and iPXE
//! ROMs fetch their first files with. It serves only the files of one
//! run (by name, from memory: no path ever reaches the file system), in
//! octet mode; a write request, an unknown file or netascii gets an ERROR
//! packet. Each transfer runs on its own socket (its own transfer id, as
//! the RFC wants) in its own thread; a block is resent only when its ACK
//! is late, never on a duplicate ACK (the "Sorcerer's Apprentice" bug).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::netboot::{Files, RequestLog};

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// RFC 1350's block size, without a `blksize` option.
const DEFAULT_BLOCK: usize = 512;
/// RFC 2348's limits on `blksize`.
const MIN_BLOCK: usize = 8;
const MAX_BLOCK: usize = 65464;
/// Resends of one packet before the transfer is given up.
const RETRIES: u32 = 5;
const RESEND_AFTER: Duration = Duration::from_secs(1);

/// Error codes (RFC 1350 section 5, RFC 2347).
mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const NOT_FOUND: u16 = 1;
    pub const ACCESS: u16 = 2;
    pub const ILLEGAL: u16 = 4;
}

/// A parsed read request.
#[derive(Debug, PartialEq, Eq)]
struct ReadRequest {
    file: String,
    mode: String,
    /// Options in request order, names lower-cased.
    options: Vec<(String, String)>,
}

/// Why a request is refused: the ERROR packet's code and text.
#[derive(Debug, PartialEq, Eq)]
struct Refusal(u16, String);

/// Splits `RRQ`/`WRQ` payloads into their NUL-terminated strings.
fn parse_request(packet: &[u8]) -> Result<ReadRequest, Refusal> {
    let opcode = packet
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| Refusal(code::ILLEGAL, "short packet".into()))?;
    match opcode {
        RRQ => {}
        WRQ => return Err(Refusal(code::ACCESS, "this server is read-only".into())),
        _ => {
            return Err(Refusal(
                code::ILLEGAL,
                format!("opcode {opcode} is not a request"),
            ))
        }
    }
    let body = &packet[2..];
    if body.last() != Some(&0) {
        return Err(Refusal(code::ILLEGAL, "request not NUL-terminated".into()));
    }
    let mut strings = body[..body.len() - 1]
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let file = strings.next().unwrap_or_default();
    let mode = strings
        .next()
        .ok_or_else(|| Refusal(code::ILLEGAL, "request has no mode".into()))?
        .to_ascii_lowercase();
    let rest: Vec<String> = strings.collect();
    let options = rest
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| (pair[0].to_ascii_lowercase(), pair[1].clone()))
        .collect();
    Ok(ReadRequest {
        file,
        mode,
        options,
    })
}

fn error_packet(Refusal(code, text): &Refusal) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + text.len());
    p.extend_from_slice(&ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(text.as_bytes());
    p.push(0);
    p
}

/// The options this server accepts, with the values it answers: the
/// block size (clamped to RFC 2348's range and to what the socket can
/// carry) and the file's size.
fn negotiate(options: &[(String, String)], size: usize) -> (usize, Vec<(String, String)>) {
    let mut block = DEFAULT_BLOCK;
    let mut accepted = Vec::new();
    for (name, value) in options {
        match name.as_str() {
            "blksize" => {
                if let Ok(asked) = value.parse::<usize>() {
                    if asked >= MIN_BLOCK {
                        block = asked.min(MAX_BLOCK);
                        accepted.push((name.clone(), block.to_string()));
                    }
                }
            }
            "tsize" => accepted.push((name.clone(), size.to_string())),
            // `timeout` and anything else: not acknowledged, so the client
            // keeps its defaults (RFC 2347: unknown options are left out).
            _ => {}
        }
    }
    (block, accepted)
}

/// Serves `files` on `socket` until `stop` is set.
pub fn serve(
    socket: UdpSocket,
    files: Files,
    log: RequestLog,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let local = socket.local_addr()?;
    Ok(std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let packet = buf[..n].to_vec();
            let (files, log, stop) = (files.clone(), log.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let outcome = transfer(local, peer, &packet, &files, &stop);
                let (file, result) = match outcome {
                    Ok((file, result)) | Err((file, result)) => (file, result),
                };
                log.record("tftp", peer, &file, &result);
            });
        }
    }))
}

/// One transfer from a fresh socket; `Ok((file, what happened))`.
fn transfer(
    local: SocketAddr,
    peer: SocketAddr,
    packet: &[u8],
    files: &Files,
    stop: &AtomicBool,
) -> Result<(String, String), (String, String)> {
    let socket = UdpSocket::bind(SocketAddr::new(local.ip(), 0))
        .and_then(|s| s.connect(peer).map(|()| s))
        .map_err(|e| (String::new(), format!("no socket for the transfer: {e}")))?;
    let _ = socket.set_read_timeout(Some(RESEND_AFTER));
    let refuse = |r: Refusal, file: String| {
        let _ = socket.send(&error_packet(&r));
        Err((file, format!("refused: {}", r.1)))
    };
    let request = match parse_request(packet) {
        Ok(r) => r,
        Err(r) => return refuse(r, String::new()),
    };
    let name = request.file.trim_start_matches('/').to_string();
    if request.mode != "octet" {
        return refuse(
            Refusal(
                code::NOT_DEFINED,
                format!("mode {} not supported: use octet", request.mode),
            ),
            name,
        );
    }
    let Some(data) = files.get(&name) else {
        return refuse(Refusal(code::NOT_FOUND, format!("no file {name}")), name);
    };
    let (block, accepted) = negotiate(&request.options, data.len());
    let mut sender = Sender {
        socket: &socket,
        stop,
        buf: vec![0u8; MAX_BLOCK + 4],
    };
    if !accepted.is_empty() {
        let mut oack = OACK.to_be_bytes().to_vec();
        for (k, v) in &accepted {
            oack.extend_from_slice(k.as_bytes());
            oack.push(0);
            oack.extend_from_slice(v.as_bytes());
            oack.push(0);
        }
        sender
            .send_until_acked(&oack, 0)
            .map_err(|e| (name.clone(), format!("option ack: {e}")))?;
    }
    // Block n (from 1) carries bytes (n-1)*block..; the last one is short,
    // empty when the size is a multiple of the block.
    let blocks = data.len() / block + 1;
    for index in 0..blocks {
        let chunk = &data[index * block..((index + 1) * block).min(data.len())];
        let number = (index as u64 + 1) as u16; // wraps past 65535, as clients expect
        let mut packet = Vec::with_capacity(4 + chunk.len());
        packet.extend_from_slice(&DATA.to_be_bytes());
        packet.extend_from_slice(&number.to_be_bytes());
        packet.extend_from_slice(chunk);
        sender
            .send_until_acked(&packet, number)
            .map_err(|e| (name.clone(), format!("block {}: {e}", index + 1)))?;
    }
    Ok((
        name,
        format!(
            "sent {} bytes in {blocks} blocks of {block}{}",
            data.len(),
            if accepted.is_empty() {
                ""
            } else {
                " (options acknowledged)"
            }
        ),
    ))
}

struct Sender<'a> {
    socket: &'a UdpSocket,
    stop: &'a AtomicBool,
    buf: Vec<u8>,
}

impl Sender<'_> {
    /// Sends `packet` and waits for ACK `number`, resending after each
    /// silent second; other ACKs (duplicates of older blocks) are ignored.
    fn send_until_acked(&mut self, packet: &[u8], number: u16) -> Result<(), String> {
        for _ in 0..=RETRIES {
            self.socket
                .send(packet)
                .map_err(|e| format!("send failed: {e}"))?;
            loop {
                if self.stop.load(Ordering::Relaxed) {
                    return Err("server stopped".into());
                }
                let n = match self.socket.recv(&mut self.buf) {
                    Ok(n) => n,
                    // Timed out: resend.
                    Err(_) => break,
                };
                let reply = &self.buf[..n];
                if n < 4 {
                    continue;
                }
                let opcode = u16::from_be_bytes([reply[0], reply[1]]);
                let value = u16::from_be_bytes([reply[2], reply[3]]);
                match opcode {
                    ACK if value == number => return Ok(()),
                    ACK => continue,
                    ERROR => {
                        let text = String::from_utf8_lossy(&reply[4..]);
                        return Err(format!(
                            "the client gave up (error {value}: {})",
                            text.trim_end_matches('\0')
                        ));
                    }
                    _ => continue,
                }
            }
        }
        Err(format!("no ACK after {} tries", RETRIES + 1))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rrq(file: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
        let mut p = RRQ.to_be_bytes().to_vec();
        for s in [file, mode]
            .into_iter()
            .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
        {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        p
    }

    struct Server {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        log: RequestLog,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn server(files: &[(&str, Vec<u8>)]) -> Server {
        let map: BTreeMap<String, Arc<Vec<u8>>> = files
            .iter()
            .map(|(n, d)| (n.to_string(), Arc::new(d.clone())))
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = RequestLog::default();
        serve(socket, Files::new(map), log.clone(), Arc::clone(&stop)).unwrap();
        Server { addr, stop, log }
    }

    /// The file, the options the server acknowledged, blocks that came twice.
    type Fetched = (Vec<u8>, Vec<(String, String)>, usize);

    /// A client as a ROM is one: fetches `file`, ACKing every block;
    /// `drop_first_ack` loses the ACK of block 1 once (the server resends).
    fn fetch(server: SocketAddr, request: &[u8], drop_first_ack: bool) -> Result<Fetched, String> {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.send_to(request, server).unwrap();
        let mut data = Vec::new();
        let mut options = Vec::new();
        let mut buf = vec![0u8; 70000];
        let mut expected: u16 = 1;
        let mut dropped = !drop_first_ack;
        let mut resent = 0;
        let mut block_size = None;
        loop {
            let (n, from) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
            assert_ne!(from, server, "the transfer must come from a new port");
            let p = &buf[..n];
            let opcode = u16::from_be_bytes([p[0], p[1]]);
            match opcode {
                OACK => {
                    let strings: Vec<String> = p[2..n - 1]
                        .split(|&b| b == 0)
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    options = strings
                        .chunks(2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    socket.send_to(&[0, 4, 0, 0], from).unwrap();
                }
                DATA => {
                    let number = u16::from_be_bytes([p[2], p[3]]);
                    if number != expected {
                        resent += 1;
                    } else {
                        data.extend_from_slice(&p[4..]);
                        expected = expected.wrapping_add(1);
                    }
                    let size = *block_size.get_or_insert(n - 4);
                    if !dropped && number == 1 {
                        dropped = true;
                        continue;
                    }
                    let mut ack = ACK.to_be_bytes().to_vec();
                    ack.extend_from_slice(&number.to_be_bytes());
                    socket.send_to(&ack, from).unwrap();
                    if n - 4 < size || (n - 4 == 0) {
                        return Ok((data, options, resent));
                    }
                }
                ERROR => {
                    return Err(String::from_utf8_lossy(&p[4..n - 1]).into_owned());
                }
                other => return Err(format!("unexpected opcode {other}")),
            }
        }
    }

    #[test]
    fn a_file_comes_whole_with_blksize_and_tsize_acknowledged() {
        let file: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let s = server(&[("grub.pxe", file.clone())]);
        let (data, options, _) = fetch(
            s.addr,
            &rrq(
                "/grub.pxe",
                "octet",
                &[("blksize", "1432"), ("tsize", "0"), ("timeout", "3")],
            ),
            false,
        )
        .unwrap();
        assert_eq!(data, file);
        assert_eq!(
            options,
            vec![
                ("blksize".into(), "1432".into()),
                ("tsize".into(), "10000".into())
            ]
        );
        // Plain RFC 1350: 512-byte blocks, no OACK; a multiple of the
        // block size ends with an empty block.
        let even: Vec<u8> = vec![0xa5; 1024];
        let s = server(&[("x", even.clone())]);
        let (data, options, _) = fetch(s.addr, &rrq("x", "OCTET", &[]), false).unwrap();
        assert_eq!(data, even);
        assert!(options.is_empty());
        assert!(s
            .log
            .entries()
            .iter()
            .all(|e| e.result.starts_with("sent 1024 bytes in 3 blocks")));
    }

    #[test]
    fn a_lost_ack_is_resent_after_a_second() {
        let file = vec![7u8; 3000];
        let s = server(&[("f", file.clone())]);
        let (data, _, resent) = fetch(s.addr, &rrq("f", "octet", &[]), true).unwrap();
        assert_eq!(data, file);
        assert_eq!(resent, 1, "block 1 came again, once");
    }

    #[test]
    fn bad_requests_get_an_error_packet() {
        let s = server(&[("f", vec![1, 2, 3])]);
        let e = fetch(s.addr, &rrq("missing", "octet", &[]), false).unwrap_err();
        assert!(e.contains("no file missing"), "{e}");
        let e = fetch(s.addr, &rrq("f", "netascii", &[]), false).unwrap_err();
        assert!(e.contains("use octet"), "{e}");
        let mut wrq = rrq("f", "octet", &[]);
        wrq[1] = WRQ as u8;
        let e = fetch(s.addr, &wrq, false).unwrap_err();
        assert!(e.contains("read-only"), "{e}");
        assert_eq!(
            parse_request(&[0, 1, b'f', 0]),
            Err(Refusal(code::ILLEGAL, "request has no mode".into()))
        );
        assert_eq!(parse_request(&[0, 1, b'f']).unwrap_err().0, code::ILLEGAL);
    }

    #[test]
    fn blksize_is_clamped_to_the_rfc_range() {
        let opts = |v: &str| vec![("blksize".to_string(), v.to_string())];
        assert_eq!(negotiate(&opts("100000"), 5).0, MAX_BLOCK);
        assert_eq!(negotiate(&opts("4"), 5), (DEFAULT_BLOCK, vec![]));
        assert_eq!(negotiate(&opts("junk"), 5), (DEFAULT_BLOCK, vec![]));
        assert_eq!(negotiate(&opts("1468"), 5).0, 1468);
    }
}
