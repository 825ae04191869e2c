//! Feed arbitrary bytes to the stream decoder: it must return an error or a
//! summary, never panic. The sink is a small in-memory map.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|data: &[u8]| {
    let _ = decode_stream(data, 0, &mut Sink::default());
});
