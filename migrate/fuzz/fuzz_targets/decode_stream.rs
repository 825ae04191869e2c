//! Feed arbitrary bytes to the stream decoder: it must return an error or a
//! summary, never panic. The sink is a small in-memory map.
//!
//! The first input byte picks the mode. Odd: the rest is decoded as is, so
//! checksums, magic and framing are attacked. Even: the rest is re-signed
//! first (header CRC and every record's CRC recomputed along the announced
//! lengths), because random mutations almost never keep a CRC32C valid and
//! would otherwise never reach the record parser, the order rules, the
//! state-blob bookkeeping or the delta decoder. Seeds: `seeds/` (see its
//! README).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use migrate::wire::crc32c;
use migrate::{decode_stream, GuestPage, MemoryError, PageBuf, PageSink};

#[derive(Default)]
struct Sink(HashMap<GuestPage, PageBuf>, Vec<u8>);

impl PageSink for Sink {
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError> {
        if self.0.len() > 64 && !self.0.contains_key(&page) {
            return Err(MemoryError::Refused(page));
        }
        self.0.insert(page, *data);
        Ok(())
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        *out = *self.0.get(&page).ok_or(MemoryError::NotMapped(page))?;
        Ok(())
    }
    fn write_device_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        if total > 1 << 20 {
            return Err(MemoryError::StateOutOfRange {
                offset,
                len: data.len(),
            });
        }
        self.1.resize(total, 0);
        self.1[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_cpu_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        self.write_device_state(offset, total, data)
    }
}

/// Recompute the header CRC and each record's CRC in place, following the
/// announced payload lengths until they run past the end.
fn resign(buf: &mut [u8]) {
    const HEADER: usize = 16;
    const HEAD: usize = 20;
    if buf.len() < HEADER {
        return;
    }
    let c = crc32c(&buf[..12]);
    buf[12..16].copy_from_slice(&c.to_le_bytes());
    let mut pos = HEADER;
    while pos + HEAD + 4 <= buf.len() {
        let len = u32::from_le_bytes([buf[pos + 16], buf[pos + 17], buf[pos + 18], buf[pos + 19]]);
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|l| (pos + HEAD).checked_add(l))
            .filter(|&e| e + 4 <= buf.len())
        else {
            return;
        };
        let c = crc32c(&buf[pos..end]);
        buf[end..end + 4].copy_from_slice(&c.to_le_bytes());
        pos = end + 4;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        let _ = decode_stream(rest, 0, &mut Sink::default());
    } else {
        let mut buf = rest.to_vec();
        resign(&mut buf);
        let _ = decode_stream(&buf, 0, &mut Sink::default());
    }
});
