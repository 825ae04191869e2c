//! A read-only HTTP/1.1 server for GRUB's and iPXE's `http` (RFC 9112
//! framing, the least of it): `GET` (and `HEAD`) of the run's files by
//! name, from memory, one connection per request (`Connection: close`),
//! no ranges. Anything else is answered with a status, never a panic: a
//! machine's loader that asks oddly gets 400, 404 or 405. A client that
//! closes early (GRUB reads an ELF's headers, closes, and opens it again)
//! is normal and only noted in the log.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::netboot::{Files, RequestLog};

/// The request head is small; a longer one is refused.
const MAX_HEAD: usize = 8192;

/// The status and what the request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Get { path: String, head_only: bool },
    Refused { status: u16, reason: &'static str },
}

/// Reads the request line of `head` (up to the blank line).
fn parse(head: &[u8]) -> Request {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Request::Refused {
            status: 400,
            reason: "Bad Request",
        };
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Refused {
            status: 505,
            reason: "HTTP Version Not Supported",
        };
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Request::Refused {
                status: 405,
                reason: "Method Not Allowed",
            }
        }
    };
    // An absolute form (`http://host/x`) or the origin form (`/x`).
    let path = target.split_once("://").map_or(target, |(_, rest)| {
        rest.find('/').map_or("/", |i| &rest[i..])
    });
    let path = path.split(['?', '#']).next().unwrap_or("");
    Request::Get {
        path: path.trim_start_matches('/').to_string(),
        head_only,
    }
}

/// Serves `files` on `listener` until `stop` is set.
pub fn serve(
    listener: TcpListener,
    files: Files,
    log: RequestLog,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let (files, log) = (files.clone(), log.clone());
                    std::thread::spawn(move || {
                        let (path, result) = answer(stream, &files);
                        log.record("http", peer, &path, &result);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }))
}

/// Answers one connection; returns the path and what happened.
fn answer(mut stream: TcpStream, files: &Files) -> (String, String) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return (String::new(), "closed before a whole request".into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            let _ = respond(
                &mut stream,
                431,
                "Request Header Fields Too Large",
                &[],
                false,
            );
            return (String::new(), "refused: request head too long".into());
        }
    }
    match parse(&head) {
        Request::Refused { status, reason } => {
            let _ = respond(&mut stream, status, reason, &[], false);
            (String::new(), format!("refused: {status} {reason}"))
        }
        Request::Get { path, head_only } => match files.get(&path) {
            None => {
                let _ = respond(&mut stream, 404, "Not Found", b"no such file\n", false);
                (path, "refused: 404 Not Found".into())
            }
            Some(data) => match respond(&mut stream, 200, "OK", &data, head_only) {
                Ok(()) if head_only => (path, "sent the headers (HEAD)".into()),
                Ok(()) => (path, format!("sent {} bytes", data.len())),
                Err(e) => (path, format!("client closed early ({e})")),
            },
        },
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use std::net::SocketAddr;

    use super::*;

    fn get(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&reply[..split]).into_owned(),
            reply[split + 4..].to_vec(),
        )
    }

    #[test]
    fn files_by_name_and_statuses_for_the_rest() {
        let elf: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let files = Files::new(BTreeMap::from([(
            "gmig.elf".to_string(),
            Arc::new(elf.clone()),
        )]));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = RequestLog::default();
        serve(listener, files, log.clone(), Arc::clone(&stop)).unwrap();
        let (head, body) = get(
            addr,
            "GET /gmig.elf HTTP/1.1\r\nHost: 10.0.2.2:80\r\nUser-Agent: GRUB 2.06\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Length: 300000"), "{head}");
        assert_eq!(body, elf);
        let (head, body) = get(addr, "HEAD http://10.0.2.2/gmig.elf?x=1 HTTP/1.0\r\n\r\n");
        assert!(head.contains("Content-Length: 300000"), "{head}");
        assert!(body.is_empty());
        assert!(get(addr, "GET /nothing HTTP/1.1\r\n\r\n").0.contains("404"));
        assert!(get(addr, "PUT /gmig.elf HTTP/1.1\r\n\r\n")
            .0
            .contains("405"));
        assert!(get(addr, "GET /gmig.elf SPDY/3\r\n\r\n").0.contains("505"));
        assert!(get(addr, "nonsense\r\n\r\n").0.contains("400"));
        // A client that reads the start and hangs up.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /gmig.elf HTTP/1.1\r\n\r\n").unwrap();
        let mut first = [0u8; 64];
        s.read_exact(&mut first).unwrap();
        drop(s);
        // The server is still there.
        assert_eq!(
            get(addr, "GET /gmig.elf HTTP/1.1\r\n\r\n").1.len(),
            elf.len()
        );
        stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        let entries = log.entries();
        assert!(entries
            .iter()
            .any(|e| e.path == "nothing" && e.result.contains("404")));
        assert!(
            entries
                .iter()
                .filter(|e| e.result == "sent 300000 bytes")
                .count()
                >= 2
        );
    }
}
