//! Feed arbitrary bytes to the stream decoder as a destination would see
//! them: it must return an error or a summary, never panic. The sink is a
//! small in-memory map.
//!
//! The destination is fixed: the key, entropy and guest below are the ones
//! `migrate`'s tests record the seeds with (`fuzz_seeds_are_current_streams`
//! in `migrate/src/tests.rs`), so a seed is a whole valid migration.
//!
//! The first input byte picks the mode. Odd: the rest is decoded as is, so
//! the handshake, checksums, tags and framing are attacked. Even: the rest
//! is re-signed first with the key (`migrate::reseal_stream`: the hello's
//! CRC, the proof, and every record's sequence number, tag and CRC along
//! the announced lengths), because random mutations almost never keep a
//! CRC32C, let alone a Poly1305 tag, valid and would otherwise never reach
//! the record parser, the stream rules, the state-blob digests or the delta
//! decoder. Seeds: `seeds/` (see its README).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use migrate::{
    decode_stream, reseal_stream, DeterministicEntropy, GuestPage, MemoryError, MigrationKey,
    PageBuf, PageRange, PageSink, ReceiverConfig,
};

/// The tests' key (`migrate/src/tests.rs`, `key()`).
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// The tests' destination entropy seed (`DEST_SEED`).
const DEST_SEED: u64 = 1000;
/// The seeds' guest: 2 pages from gfn 0x1000, vGPU type 0.
const FIRST_PAGE: u64 = 0x1000;
const PAGES: u64 = 2;

#[derive(Default)]
struct Sink(HashMap<GuestPage, PageBuf>, Vec<u8>);

impl PageSink for Sink {
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError> {
        self.0.insert(page, *data);
        Ok(())
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        *out = self.0.get(&page).copied().unwrap_or([0; 4096]);
        Ok(())
    }
    fn write_device_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
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

fn config() -> ReceiverConfig {
    let first = GuestPage::new(FIRST_PAGE).expect("small page number");
    let mut cfg = ReceiverConfig::new(0, PageRange::new(first, PAGES).expect("small range"));
    // Blobs the fuzzer may announce stay small in memory.
    cfg.max_device_state = 1 << 20;
    cfg.max_cpu_state = 1 << 20;
    cfg
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = MigrationKey::from_hex(KEY_HEX).expect("valid hex");
    let cfg = config();
    let mut buf = rest.to_vec();
    if mode & 1 == 0 {
        reseal_stream(&mut buf, &cfg, &key, &mut DeterministicEntropy(DEST_SEED));
    }
    let _ = decode_stream(
        &buf,
        &cfg,
        &key,
        &mut DeterministicEntropy(DEST_SEED),
        &mut Sink::default(),
    );
});
