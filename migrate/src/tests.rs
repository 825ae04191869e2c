//! End-to-end tests: every policy migrates a changing page set through the
//! in-memory pipe and hands the guest over; the destination rejects broken,
//! forged and replayed streams; every row of the handover table
//! ([`crate::handover`]) leaves the guest on exactly one side (or, after a
//! commit whose outcome cannot be known, stopped on the source).

use std::collections::HashMap;

use proptest::prelude::*;

use crate::link::{RecordAction, RecordFault};
use crate::page::PageBuf;
use crate::source::{SourceStatus, SourceStorage};
use crate::tracker::Slot;
use crate::wire::{
    self, Kind, Record, RecordRepr, FORWARD_PRELUDE_LEN, HELLO_LEN, MAX_RECORD, PROOF_LEN,
};
use crate::*;

/// Guest pages start here in the tests.
const FIRST_PAGE: u64 = 0x1000;
/// The destination's entropy seed in every test (its nonce is what a
/// recorded stream was sealed against).
const DEST_SEED: u64 = 1000;

/// The tests' key (the fuzz target uses it too).
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn key() -> MigrationKey {
    MigrationKey::from_hex(KEY_HEX).unwrap()
}

fn other_key() -> MigrationKey {
    MigrationKey::from_hex("ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        .unwrap()
}

pub(crate) struct MemSource {
    pub pages: Vec<PageBuf>,
    pub device: Vec<u8>,
    pub cpu: Vec<u8>,
}

impl PageSource for MemSource {
    fn page_count(&self) -> usize {
        self.pages.len()
    }
    fn page_at(&self, index: usize) -> GuestPage {
        GuestPage::new(FIRST_PAGE + index as u64).unwrap()
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let i = page
            .get()
            .checked_sub(FIRST_PAGE)
            .ok_or(MemoryError::NotMapped(page))? as usize;
        *out = *self.pages.get(i).ok_or(MemoryError::NotMapped(page))?;
        Ok(())
    }
    fn device_state_len(&self) -> usize {
        self.device.len()
    }
    fn read_device_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
        crate::page::read_state_chunk(&self.device, offset, out)
    }
    fn cpu_state_len(&self) -> usize {
        self.cpu.len()
    }
    fn read_cpu_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
        crate::page::read_state_chunk(&self.cpu, offset, out)
    }
}

/// The destination's memory: fresh pages read as zeros, as fresh frames
/// do (the [`PageSink`] contract).
#[derive(Default)]
pub(crate) struct MemSink {
    pub pages: HashMap<GuestPage, PageBuf>,
    pub device: Vec<u8>,
    pub cpu: Vec<u8>,
    /// Refuse to store pages (a destination out of memory).
    pub refuse: bool,
}

impl PageSink for MemSink {
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError> {
        if self.refuse {
            return Err(MemoryError::Refused(page));
        }
        self.pages.insert(page, *data);
        Ok(())
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        *out = self.pages.get(&page).copied().unwrap_or([0; PAGE_SIZE]);
        Ok(())
    }
    fn write_device_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        self.device.resize(total, 0);
        self.device[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_cpu_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        self.cpu.resize(total, 0);
        self.cpu[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn initial(n: usize, rng: &mut Rng) -> MemSource {
    let mut pages = vec![[0u8; PAGE_SIZE]; n];
    for (i, p) in pages.iter_mut().enumerate() {
        if i % 4 != 0 {
            for b in p.iter_mut() {
                *b = rng.next() as u8;
            }
        }
    }
    MemSource {
        pages,
        device: (0..9000u32).map(|i| i as u8).collect(),
        cpu: vec![0xcc; 300],
    }
}

/// One step of guest activity: edits a few pages and reports evidence as
/// the kernel would (GPU writes as write targets, CPU writes as dirty bits).
fn mutate(src: &mut MemSource, s: &mut Source<'_>, rng: &mut Rng) {
    let n = src.pages.len();
    for _ in 0..3 {
        let i = (rng.next() as usize) % n;
        let page = src.page_at(i);
        let p = &mut src.pages[i];
        match rng.next() % 6 {
            0 => p.iter_mut().for_each(|b| *b = 0),
            1 | 5 => {
                let o = rng.next() as usize % PAGE_SIZE;
                p[o] = p[o].wrapping_add(1);
            }
            2 => {} // rewrite with the same content
            _ => p.iter_mut().for_each(|b| *b = rng.next() as u8),
        }
        if rng.next().is_multiple_of(3) {
            s.report_cpu_dirty(page).unwrap();
        } else {
            s.report_write_target(page).unwrap();
        }
    }
}

fn new_source<'a>(cfg: SourceConfig, storage: SourceStorage<'a>) -> Source<'a> {
    Source::new(cfg, storage, &key(), &mut DeterministicEntropy(1)).unwrap()
}

fn rx_config(vgpu_type: u16, pages: usize) -> ReceiverConfig {
    let first = GuestPage::new(FIRST_PAGE).unwrap();
    ReceiverConfig::new(vgpu_type, PageRange::new(first, pages as u64).unwrap())
}

/// A destination as the kernel drives it: restores on `Received` (here:
/// nothing to do) and resumes on `Resume`.
struct Dest {
    rx: Receiver,
    sink: MemSink,
}

impl Dest {
    fn new(vgpu_type: u16, pages: usize) -> Self {
        Self::with(rx_config(vgpu_type, pages), &key())
    }
    fn with(cfg: ReceiverConfig, key: &MigrationKey) -> Self {
        Self {
            rx: Receiver::new(cfg, key, &mut DeterministicEntropy(DEST_SEED)),
            sink: MemSink::default(),
        }
    }
    fn step<L: Link>(
        &mut self,
        now: u64,
        link: &mut L,
        max: u32,
    ) -> Result<ReceiverStatus, ReceiveError> {
        let s = self.rx.poll(now, &mut self.sink, link, max)?;
        match s {
            ReceiverStatus::Received => self.rx.ready(now, link)?,
            ReceiverStatus::Resume => self.rx.resumed(link)?,
            _ => {}
        }
        Ok(s)
    }
}

/// Settings of [`migrate_with`]: four rounds at most; the throttling policy
/// gets room to step and a target nothing meets, so its throttle engages.
fn test_config(policy: Policy) -> SourceConfig {
    let mut cfg = SourceConfig::new(policy);
    cfg.vgpu_type = 3;
    cfg.work_per_poll = 4;
    cfg.max_rounds = 4;
    if policy.throttles() {
        cfg.max_rounds = 24;
        cfg.throttle.target_ns = 0;
    }
    cfg
}

/// Migrates 96 pages that the guest keeps changing while it runs; the
/// guest's steps go through the source's [`Source::submission_share`] as
/// the kernel's do.
fn migrate_with(policy: Policy, seed: u64, encrypt: bool) -> (MemSource, MemSink, SourceStats) {
    let mut rng = Rng(seed | 1);
    let mut src = initial(96, &mut rng);
    let mut slots = vec![Slot::EMPTY; 256];
    let mut cache_pages = vec![[0u8; PAGE_SIZE]; 128];
    let mut cache_owners = vec![0u64; 128];
    let mut cfg = test_config(policy);
    cfg.encrypt = encrypt;
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cache_pages,
        cache_owners: &mut cache_owners,
    };
    let mut s = new_source(cfg, storage);
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut dest = Dest::new(3, 96);
    let mut stopped = false;
    let mut now = 0u64;
    let mut pacer = Pacer::new();
    for _ in 0..200_000 {
        now += 10_000;
        let share = s.submission_share();
        assert!(share >= cfg.throttle.floor, "{policy}: {share}");
        if !policy.throttles() || stopped {
            assert_eq!(share, Share::FULL, "{policy}");
        }
        if !stopped && pacer.admit(share) {
            mutate(&mut src, &mut s, &mut rng);
        }
        let before = s.progress(96);
        match s.poll(now, &mut src, &mut a).unwrap() {
            SourceStatus::StopGuest => {
                assert!(matches!(before.phase, "precopy" | "handshake"), "{policy}");
                stopped = true;
                s.guest_stopped(now).unwrap();
                assert_eq!(s.submission_share(), Share::FULL, "released at the stop");
            }
            SourceStatus::Completed => {
                let p = s.progress(96);
                assert_eq!(p.phase, "completed");
                assert_eq!(p.pages_sent, s.stats().precopy_pages + s.stats().stop_pages);
                assert!(p.bytes >= p.pages_sent, "{policy}");
                assert_eq!(
                    dest.step(now, &mut b, 8).unwrap(),
                    ReceiverStatus::Completed
                );
                assert!(s.authenticated() && dest.rx.authenticated());
                assert_eq!((s.encrypted(), dest.rx.encrypted()), (encrypt, encrypt));
                return (src, dest.sink, *s.stats());
            }
            _ => {}
        }
        dest.step(now, &mut b, 8).unwrap();
    }
    panic!("{policy} did not complete");
}

#[test]
fn every_policy_ends_byte_identical() {
    for policy in Policy::ALL {
        for (seed, encrypt) in [(1u64, false), (77, true)] {
            let (src, sink, stats) = migrate_with(policy, seed, encrypt);
            assert_eq!(sink.pages.len(), src.pages.len(), "{policy}");
            for (i, p) in src.pages.iter().enumerate() {
                assert!(
                    sink.pages[&src.page_at(i)] == *p,
                    "{policy}: page {i} differs"
                );
            }
            assert_eq!(sink.device, src.device);
            assert_eq!(sink.cpu, src.cpu);
            if policy.is_informed() {
                assert!(stats.zero_pages > 0 && stats.delta_pages > 0, "{stats:?}");
            }
            // The throttling policy was throttled (down to its floor) on
            // the way, and still ends byte-identical.
            if policy.throttles() {
                assert!(stats.throttle.steps > 0, "{stats:?}");
                assert!(!stats.throttle.min_share.is_full(), "{stats:?}");
                assert!(stats.throttle.min_share >= ThrottleConfig::new().floor);
            } else {
                assert_eq!(stats.throttle.steps, 0, "{policy}");
            }
        }
    }
}

#[test]
fn verifying_policies_send_fewer_pages_at_stop() {
    let (_, _, sc) = migrate_with(Policy::StopAndCopy, 5, false);
    let (_, _, one) = migrate_with(Policy::GmigOneShot, 5, false);
    let (_, _, inf) = migrate_with(Policy::Informed, 5, false);
    assert_eq!(sc.stop_pages, 96);
    assert!(one.stop_pages < sc.stop_pages, "{one:?}");
    assert!(inf.stop_bytes < sc.stop_bytes, "{inf:?}");
}

/// gMig's XOR fold leaves a swapped-chunk page stale; xxh3 does not.
#[test]
fn gmig_misses_a_chunk_swap_informed_does_not() {
    for (policy, stale) in [(Policy::GmigOneShot, true), (Policy::Informed, false)] {
        let mut rng = Rng(3);
        let mut src = initial(8, &mut rng);
        let mut slots = vec![Slot::EMPTY; 16];
        let storage = SourceStorage {
            slots: &mut slots,
            cache_pages: &mut [],
            cache_owners: &mut [],
        };
        let mut s = new_source(SourceConfig::new(policy), storage);
        let pipe = Pipe::<{ 64 * MAX_RECORD }>::new();
        let (mut a, mut b) = pipe.ends();
        let mut dest = Dest::new(0, 8);
        let mut swapped = false;
        let mut now = 0;
        loop {
            now += 1_000_000;
            let st = s.poll(now, &mut src, &mut a).unwrap();
            dest.step(now, &mut b, 64).unwrap();
            if st == SourceStatus::StopGuest {
                if !swapped {
                    // A GPU blit swaps two 32-byte chunks of page 1; the scanner reports it.
                    let p = &mut src.pages[1];
                    let tmp: [u8; 32] = p[0..32].try_into().unwrap();
                    p.copy_within(64..96, 0);
                    p[64..96].copy_from_slice(&tmp);
                    s.report_write_target(src.page_at(1)).unwrap();
                    swapped = true;
                }
                s.guest_stopped(now).unwrap();
            }
            if st == SourceStatus::Completed {
                break;
            }
        }
        assert_eq!(
            dest.sink.pages[&src.page_at(1)] != src.pages[1],
            stale,
            "{policy}"
        );
    }
}

/// A link that keeps a copy of everything the inner link took.
struct Tee<L> {
    inner: L,
    sent: Vec<u8>,
}

impl<L: Link> Link for Tee<L> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        let n = self.inner.send(data)?;
        self.sent.extend_from_slice(&data[..n]);
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

/// A whole migration of 6 pages (the last edited during pre-copy), its forward
/// stream recorded, against a destination with entropy `dest_seed`.
fn recorded_migration(policy: Policy, dest_seed: u64) -> (Vec<u8>, MemSource) {
    let mut rng = Rng(11);
    let mut src = initial(6, &mut rng);
    src.device.truncate(5000);
    record(policy, dest_seed, src, |round| round == 3)
}

/// Migrates `src` and records the forward stream; the guest edits its
/// last page at the polls `edit` picks while it runs.
fn record(
    policy: Policy,
    dest_seed: u64,
    mut src: MemSource,
    edit: impl Fn(u64) -> bool,
) -> (Vec<u8>, MemSource) {
    let n = src.pages.len();
    let mut slots = vec![Slot::EMPTY; 16];
    let mut cp = vec![[0u8; PAGE_SIZE]; 8];
    let mut co = vec![0u64; 8];
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cp,
        cache_owners: &mut co,
    };
    let mut cfg = SourceConfig::new(policy);
    // Rounds spread over polls, so the guest's edits land between them.
    cfg.work_per_poll = 2;
    let mut s = new_source(cfg, storage);
    let pipe = Pipe::<{ 64 * MAX_RECORD }>::new();
    let (a, mut b) = pipe.ends();
    let mut a = Tee {
        inner: a,
        sent: Vec::new(),
    };
    let mut dest = Dest {
        rx: Receiver::new(
            rx_config(0, n),
            &key(),
            &mut DeterministicEntropy(dest_seed),
        ),
        sink: MemSink::default(),
    };
    let mut stopped = false;
    for round in 0..10_000u64 {
        if edit(round) && !stopped {
            src.pages[n - 1][100 + round as usize % 64] ^= 0x5a;
            s.report_write_target(src.page_at(n - 1)).unwrap();
        }
        let now = round * 1_000_000;
        match s.poll(now, &mut src, &mut a).unwrap() {
            SourceStatus::StopGuest => {
                stopped = true;
                s.guest_stopped(now).unwrap();
            }
            SourceStatus::Completed => return (a.sent, src),
            _ => {}
        }
        dest.step(now, &mut b, 64).unwrap();
    }
    panic!("{policy} did not complete");
}

fn full_migration_bytes(policy: Policy) -> (Vec<u8>, MemSource) {
    recorded_migration(policy, DEST_SEED)
}

/// Record boundaries of a forward stream.
fn records(stream: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut at = FORWARD_PRELUDE_LEN;
    let mut v = Vec::new();
    while at < stream.len() {
        let r = Record::new_checked(&stream[at..]).unwrap();
        v.push(at..at + r.total_len());
        at += r.total_len();
    }
    v
}

fn decode(stream: &[u8], sink: &mut MemSink) -> Result<wire_summary::StreamSummary, ReceiveError> {
    decode_stream(
        stream,
        &rx_config(0, 6),
        &key(),
        &mut DeterministicEntropy(DEST_SEED),
        sink,
    )
}

mod wire_summary {
    pub use crate::dest::StreamSummary;
}

fn stream_err(stream: &[u8]) -> ReceiveError {
    decode(stream, &mut MemSink::default()).unwrap_err()
}

/// Re-sign `stream` (edited) for the test destination.
fn reseal(stream: &mut [u8]) {
    reseal_stream(
        stream,
        &rx_config(0, 6),
        &key(),
        &mut DeterministicEntropy(DEST_SEED),
    );
}

/// Overwrite a record's sequence field and fix its CRC (what anyone on the
/// wire can do without the key).
fn set_seq(rec: &mut [u8], seq: u32) {
    rec[4..8].copy_from_slice(&seq.to_le_bytes());
    let body = Record::new_checked(&rec[..]).unwrap().body_len();
    wire::put_crc(rec, body + wire::TAG_LEN);
}

#[test]
fn recorded_stream_decodes() {
    for policy in Policy::ALL {
        let (stream, src) = full_migration_bytes(policy);
        let mut sink = MemSink::default();
        decode(&stream, &mut sink).unwrap();
        for (i, p) in src.pages.iter().enumerate() {
            assert!(sink.pages[&src.page_at(i)] == *p, "{policy}");
        }
        assert_eq!(sink.device, src.device);
        // The stream ends with the commit.
        let last = records(&stream).pop().unwrap();
        assert_eq!(stream[last.start], Kind::Commit as u8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn truncated_streams_fail(cut in 0.0f64..1.0, p in 0usize..Policy::ALL.len()) {
        let (stream, _) = full_migration_bytes(Policy::ALL[p]);
        let at = ((stream.len() as f64) * cut) as usize;
        let e = stream_err(&stream[..at]);
        prop_assert_eq!(e, ReceiveError::Stream(WireError::Truncated));
    }

    #[test]
    fn bit_flips_fail_as_damage(pos in any::<prop::sample::Index>(), bit in 0u8..8, p in 0usize..Policy::ALL.len()) {
        let (mut stream, _) = full_migration_bytes(Policy::ALL[p]);
        let i = pos.index(stream.len());
        stream[i] ^= 1 << bit;
        let e = stream_err(&stream);
        // Damage, never mistaken for a wrong key or a forgery.
        prop_assert!(matches!(
            e,
            ReceiveError::Stream(
                WireError::HandshakeCrc
                    | WireError::RecordCrc { .. }
                    | WireError::BadMagic
                    | WireError::UnsupportedVersion(_)
                    | WireError::BadLength { .. }
                    | WireError::Truncated
                    | WireError::Sequence { .. }
            )
        ), "{:?} at {}", e, i);
    }

    #[test]
    fn reordered_or_duplicated_records_fail(a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), dup in any::<bool>(), fix_seq in any::<bool>(), p in 0usize..Policy::ALL.len()) {
        let (stream, _) = full_migration_bytes(Policy::ALL[p]);
        let recs = records(&stream);
        let (i, j) = (a.index(recs.len()), b.index(recs.len()));
        let mut order: Vec<usize> = (0..recs.len()).collect();
        if dup {
            order.insert(i, i);
        } else {
            prop_assume!(i != j);
            order.swap(i, j);
        }
        let mut out = stream[..FORWARD_PRELUDE_LEN].to_vec();
        for (at, k) in order.into_iter().enumerate() {
            let mut rec = stream[recs[k].clone()].to_vec();
            if fix_seq {
                set_seq(&mut rec, at as u32);
            }
            out.extend_from_slice(&rec);
        }
        let e = stream_err(&out);
        if e == ReceiveError::Stream(WireError::TrailingData) {
            // The commit sent again: after the stream's end.
            prop_assert!(dup && i == recs.len() - 1, "{:?}", e);
        } else if fix_seq {
            // Right sequence field, wrong position: the tag does not verify.
            prop_assert!(matches!(e, ReceiveError::Stream(WireError::Authentication { .. })), "{:?}", e);
        } else {
            prop_assert!(matches!(e, ReceiveError::Stream(WireError::Sequence { .. })), "{:?}", e);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), prefix in any::<bool>()) {
        let (stream, _) = full_migration_bytes(Policy::Precopy);
        let mut s = Vec::new();
        if prefix {
            s.extend_from_slice(&stream[..FORWARD_PRELUDE_LEN]);
        }
        s.extend_from_slice(&bytes);
        prop_assert!(decode(&s, &mut MemSink::default()).is_err());
    }
}

#[test]
fn a_record_from_another_session_fails_authentication() {
    // The same migration recorded against two destinations (two nonces).
    let (ours, _) = recorded_migration(Policy::Precopy, DEST_SEED);
    let (theirs, _) = recorded_migration(Policy::Precopy, DEST_SEED + 1);
    let (a, b) = (records(&ours), records(&theirs));
    assert_eq!(a.len(), b.len());
    for k in [0, 3, a.len() - 2, a.len() - 1] {
        let mut spliced = ours[..a[k].start].to_vec();
        spliced.extend_from_slice(&theirs[b[k].clone()]);
        spliced.extend_from_slice(&ours[a[k].end..]);
        assert_eq!(
            stream_err(&spliced),
            ReceiveError::Stream(WireError::Authentication { seq: k as u32 }),
            "record {k}"
        );
    }
}

#[test]
fn a_replayed_record_fails_authentication() {
    let (stream, _) = full_migration_bytes(Policy::Precopy);
    let recs = records(&stream);
    // An earlier record sent again in place of record 5, its sequence
    // field set to 5.
    let mut rec = stream[recs[1].clone()].to_vec();
    set_seq(&mut rec, 5);
    let mut out = stream[..recs[5].start].to_vec();
    out.extend_from_slice(&rec);
    out.extend_from_slice(&stream[recs[5].end..]);
    assert_eq!(
        stream_err(&out),
        ReceiveError::Stream(WireError::Authentication { seq: 5 })
    );
}

#[test]
fn a_replayed_session_does_not_pass_the_handshake() {
    // The whole recorded stream, replayed to a destination with a fresh nonce.
    let (stream, _) = full_migration_bytes(Policy::Precopy);
    let e = decode_stream(
        &stream,
        &rx_config(0, 6),
        &key(),
        &mut DeterministicEntropy(DEST_SEED + 7),
        &mut MemSink::default(),
    )
    .unwrap_err();
    assert_eq!(e, ReceiveError::KeyMismatch);
}

#[test]
fn wrong_version_is_typed() {
    let (mut stream, _) = full_migration_bytes(Policy::Precopy);
    stream[4] = 9;
    wire::put_crc(&mut stream, HELLO_LEN - 4);
    assert_eq!(
        stream_err(&stream),
        ReceiveError::Stream(WireError::UnsupportedVersion(9))
    );
    // A version 1 stream: 16-byte header, then CRC-only records.
    let mut v1 = b"GMIG\x01\x00\x00\x00\x00\x10\x00\x00".to_vec();
    let c = wire::crc32c(&v1);
    v1.extend_from_slice(&c.to_le_bytes());
    v1.extend_from_slice(&[0u8; 64]);
    assert_eq!(
        stream_err(&v1),
        ReceiveError::Stream(WireError::UnsupportedVersion(1))
    );
    stream[0] = b'X';
    assert_eq!(
        stream_err(&stream),
        ReceiveError::Stream(WireError::BadMagic)
    );
}

/// Forged streams (re-sealed with the key) that break a content rule: the
/// destination blames the stream, and its sink never sees the bad part.
#[test]
fn content_rules_blame_the_stream() {
    let (stream, _) = full_migration_bytes(Policy::StopAndCopy);
    let recs = records(&stream);
    // A page record naming a page outside the guest.
    let first_page = recs
        .iter()
        .find(|r| stream[r.start] == Kind::Page as u8)
        .unwrap()
        .clone();
    let mut s = stream.clone();
    let outside = FIRST_PAGE + 6;
    s[first_page.start + 8..first_page.start + 16].copy_from_slice(&outside.to_le_bytes());
    reseal(&mut s);
    let mut sink = MemSink::default();
    assert_eq!(
        decode(&s, &mut sink).unwrap_err(),
        ReceiveError::Stream(WireError::PageOutOfRange(GuestPage::new(outside).unwrap()))
    );
    assert!(sink.pages.is_empty(), "the sink saw the page");
    // One byte of the device state changed: its digest catches it.
    let device = recs
        .iter()
        .find(|r| stream[r.start] == Kind::DeviceState as u8)
        .unwrap()
        .clone();
    let mut s = stream.clone();
    s[device.start + wire::RECORD_HEAD_LEN + 7] ^= 1;
    reseal(&mut s);
    assert_eq!(
        stream_err(&s),
        ReceiveError::Stream(WireError::StateDigest(wire::Blob::Device))
    );
    // A larger device state than this side accepts.
    let mut cfg = rx_config(0, 6);
    cfg.max_device_state = 4999;
    let e = decode_stream(
        &stream,
        &cfg,
        &key(),
        &mut DeterministicEntropy(DEST_SEED),
        &mut MemSink::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        ReceiveError::Stream(WireError::StateTooLarge {
            blob: wire::Blob::Device,
            total: 5000,
            max: 4999
        })
    );
    // A well-formed done record before end of pre-copy.
    let mut s = stream[..recs[0].start].to_vec();
    let mut r = [0u8; MAX_RECORD];
    let n = RecordRepr::Done { page_records: 0 }.emit_body(&mut r) + wire::RECORD_TRAILER_LEN;
    s.extend_from_slice(&r[..n]);
    reseal(&mut s);
    assert!(matches!(
        stream_err(&s),
        ReceiveError::Stream(WireError::Order(_))
    ));
    // The stream is fine, the sink refuses: this side's fault.
    let mut sink = MemSink {
        refuse: true,
        ..MemSink::default()
    };
    assert!(matches!(
        decode(&stream, &mut sink).unwrap_err(),
        ReceiveError::Memory(MemoryError::Refused(_))
    ));
}

/// The fuzzer's seeds (migrate/fuzz/seeds): small recorded streams of 2
/// pages, for the fuzz target's key, entropy and destination (the test
/// ones here), so the fuzzer starts from shapes that reach every record
/// kind. `GMIG_WRITE_FUZZ_SEEDS=1` rewrites them after a format change.
#[test]
fn fuzz_seeds_are_current_streams() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let small = || {
        let mut rng = Rng(11);
        let mut src = initial(2, &mut rng);
        src.device.truncate(16);
        src.cpu.truncate(8);
        src
    };
    let full = record(Policy::StopAndCopy, DEST_SEED, small(), |_| false).0;
    let delta = record(Policy::Informed, DEST_SEED, small(), |_| true).0;
    assert!(records(&delta)
        .iter()
        .any(|r| delta[r.start] == Kind::Delta as u8));
    for (name, stream, mode) in [
        ("full_stream.raw", &full, 1u8),
        ("full_stream.resign", &full, 0),
        ("delta_stream.raw", &delta, 1),
        ("delta_stream.resign", &delta, 0),
    ] {
        let mut seed = vec![mode];
        seed.extend_from_slice(stream);
        let path = dir.join(name);
        if std::env::var_os("GMIG_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::write(&path, &seed).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap();
        assert!(
            on_disk == seed,
            "{name} is stale: GMIG_WRITE_FUZZ_SEEDS=1 cargo test -p migrate fuzz_seeds"
        );
        decode_stream(
            &on_disk[1..],
            &rx_config(0, 2),
            &key(),
            &mut DeterministicEntropy(DEST_SEED),
            &mut MemSink::default(),
        )
        .unwrap();
        // The fuzzer's re-signing reproduces a valid stream exactly: it
        // seals as the source does.
        let mut again = stream.clone();
        reseal_stream(
            &mut again,
            &rx_config(0, 2),
            &key(),
            &mut DeterministicEntropy(DEST_SEED),
        );
        assert!(
            again == *stream,
            "{name}: re-signing changed a valid stream"
        );
    }
    // The fuzz target decodes as this test's destination.
    let target = include_str!("../fuzz/fuzz_targets/decode_stream.rs");
    for line in [
        format!("const KEY_HEX: &str = \"{KEY_HEX}\";"),
        format!("const DEST_SEED: u64 = {DEST_SEED};"),
        format!("const FIRST_PAGE: u64 = {FIRST_PAGE:#x};"),
        "const PAGES: u64 = 2;".to_string(),
    ] {
        assert!(target.contains(&line), "fuzz target lacks `{line}`");
    }
}

// ---------------------------------------------------------------------
// The handover table and the failure cases, each row driven end to end.
// ---------------------------------------------------------------------

/// How a scenario ends for the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceEnd {
    /// Still running its state machine when the run ended.
    Running,
    Completed,
    Failed(SourceError),
    Unconfirmed(SourceError),
}

/// How a scenario ends for the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DestEnd {
    Running(ReceiverStatus),
    Completed,
    Failed(ReceiveError),
    /// Crashed (stopped polling) in the scenario.
    Gone,
}

/// When a side disappears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Death {
    /// At the first poll after its status was this (source: a
    /// [`SourceStatus`] matched by name).
    at: &'static str,
    /// Whether its end of the link closes (a process exit) or goes silent.
    close: bool,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    policy: Policy,
    source_key: MigrationKey,
    dest_key: MigrationKey,
    forward: FaultConfig,
    back: FaultConfig,
    dest_dies: Option<Death>,
    source_dies: Option<Death>,
    restore_fails: bool,
    /// The destination takes this long to restore before it sends ready.
    restore_ms: u64,
    /// Pages the destination was set up for.
    dest_pages: usize,
    /// Seed of the fault injectors.
    seed: u64,
    /// The destination closes the link as soon as it is done (its resumed
    /// sent), before the source has read it.
    dest_closes_when_done: bool,
    /// The destination's clock runs at this percentage of the source's
    /// (its timeouts end later by the source's clock).
    dest_clock_percent: u64,
}

impl Scenario {
    fn new() -> Self {
        Self {
            policy: Policy::Informed,
            source_key: key(),
            dest_key: key(),
            forward: FaultConfig::default(),
            back: FaultConfig::default(),
            dest_dies: None,
            source_dies: None,
            restore_fails: false,
            restore_ms: 0,
            dest_pages: 24,
            seed: 1,
            dest_closes_when_done: false,
            dest_clock_percent: 100,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    source: SourceEnd,
    dest: DestEnd,
    /// The guest runs on the source at the end (never stopped, or resumed).
    source_runs: bool,
    /// The guest runs on the destination at the end.
    dest_runs: bool,
    /// The destination's memory equals the source's at the stop.
    identical: bool,
}

const TIMEOUT_MS: u64 = 100;

fn status_name(s: SourceStatus) -> &'static str {
    match s {
        SourceStatus::Handshake => "Handshake",
        SourceStatus::Precopy => "Precopy",
        SourceStatus::StopGuest | SourceStatus::StopCopy => "StopCopy",
        SourceStatus::AwaitingReady => "AwaitingReady",
        SourceStatus::Committed => "Committed",
        SourceStatus::Completed => "Completed",
        SourceStatus::Unconfirmed(_) => "Unconfirmed",
    }
}

fn receiver_status_name(s: ReceiverStatus) -> &'static str {
    match s {
        ReceiverStatus::Handshake => "Handshake",
        ReceiverStatus::Precopy => "Precopy",
        ReceiverStatus::StopCopy => "StopCopy",
        ReceiverStatus::Received => "Received",
        ReceiverStatus::AwaitingCommit => "AwaitingCommit",
        ReceiverStatus::Resume => "Resume",
        ReceiverStatus::Acknowledging => "Acknowledging",
        ReceiverStatus::Completed => "Completed",
    }
}

/// Runs `sc` on a virtual clock (1 ms per step) as the two kernels would:
/// the source resumes its guest on an error and frees it on completion,
/// keeps it stopped when unconfirmed; the destination resumes on `Resume`
/// and frees on an error; a side that fails closes its end of the link.
/// Checks at every step that the guest never runs on both sides.
fn run(sc: Scenario) -> Outcome {
    let mut rng = Rng(5);
    let mut src = initial(24, &mut rng);
    let mut slots = vec![Slot::EMPTY; 64];
    let mut cache_pages = vec![[0u8; PAGE_SIZE]; 8];
    let mut cache_owners = vec![0u64; 8];
    let mut cfg = SourceConfig::new(sc.policy);
    cfg.work_per_poll = 4;
    cfg.max_rounds = 3;
    cfg.timeout_ns = TIMEOUT_MS * 1_000_000;
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cache_pages,
        cache_owners: &mut cache_owners,
    };
    let mut s = Source::new(cfg, storage, &sc.source_key, &mut DeterministicEntropy(1)).unwrap();
    let pipe = Pipe::<{ 4 * MAX_RECORD }>::new();
    let (a, b) = pipe.ends();
    let mut a = FaultInjector::new(a, sc.forward, sc.seed);
    let mut b = FaultInjector::new(b, sc.back, sc.seed + 1);
    let mut rcfg = rx_config(0, sc.dest_pages);
    rcfg.timeout_ns = cfg.timeout_ns;
    let mut dest = Receiver::new(rcfg, &sc.dest_key, &mut DeterministicEntropy(DEST_SEED));
    let mut sink = MemSink::default();
    let (mut source_end, mut dest_end) = (
        SourceEnd::Running,
        DestEnd::Running(ReceiverStatus::Handshake),
    );
    let (mut stopped, mut source_runs, mut dest_runs) = (false, true, false);
    let mut at_stop: Option<Vec<PageBuf>> = None;
    let mut last_source = SourceStatus::Handshake;
    let mut received_at: Option<u64> = None;
    for step in 0..20 * TIMEOUT_MS {
        let now = step * 1_000_000;
        // An unconfirmed source has stopped listening, as the kernel does:
        // its answer window is over.
        let source_live = source_end == SourceEnd::Running;
        if source_live {
            if sc
                .source_dies
                .is_some_and(|d| d.at == status_name(last_source))
            {
                if sc.source_dies.is_some_and(|d| d.close) {
                    a.close();
                }
                // A crashed source: its guest is gone with it.
                source_end = SourceEnd::Failed(SourceError::Misuse("crashed"));
                source_runs = false;
            } else {
                if !stopped && step % 3 == 0 {
                    mutate(&mut src, &mut s, &mut rng);
                }
                match s.poll(now, &mut src, &mut a) {
                    Ok(SourceStatus::StopGuest) => {
                        stopped = true;
                        source_runs = false;
                        at_stop = Some(src.pages.clone());
                        s.guest_stopped(now).unwrap();
                    }
                    Ok(SourceStatus::Completed) => source_end = SourceEnd::Completed,
                    Ok(SourceStatus::Unconfirmed(e)) => {
                        assert!(s.committed());
                        source_end = SourceEnd::Unconfirmed(e);
                    }
                    Ok(st) => last_source = st,
                    Err(e) => {
                        // Only ever before the commit, or on the
                        // destination's word that it never resumes.
                        assert!(
                            !s.committed() || matches!(e, SourceError::Rejected(_)),
                            "{e}"
                        );
                        source_end = SourceEnd::Failed(e);
                        source_runs = true;
                        a.close();
                    }
                }
            }
        }
        if let DestEnd::Running(last) = dest_end {
            if sc
                .dest_dies
                .is_some_and(|d| d.at == receiver_status_name(last))
            {
                if sc.dest_dies.is_some_and(|d| d.close) {
                    b.close();
                }
                dest_end = DestEnd::Gone;
            } else {
                let now = now * sc.dest_clock_percent / 100;
                match dest.poll(now, &mut sink, &mut b, 4) {
                    Ok(ReceiverStatus::Received) => {
                        let since = *received_at.get_or_insert(now);
                        if sc.restore_fails {
                            let e = dest.abort(RejectReason::Restore, &mut b);
                            dest_end = DestEnd::Failed(e);
                            b.close();
                        } else if now - since >= sc.restore_ms * 1_000_000 {
                            dest.ready(now, &mut b).unwrap();
                            dest_end = DestEnd::Running(ReceiverStatus::AwaitingCommit);
                        }
                    }
                    Ok(ReceiverStatus::Resume) => {
                        assert!(s.committed(), "resume before the source committed");
                        dest_runs = true;
                        dest.resumed(&mut b).unwrap();
                        dest_end = DestEnd::Running(ReceiverStatus::Resume);
                        if sc.dest_closes_when_done {
                            let st = dest.poll(now, &mut sink, &mut b, 4).unwrap();
                            assert_eq!(st, ReceiverStatus::Completed);
                            dest_end = DestEnd::Completed;
                            b.close();
                        }
                    }
                    Ok(ReceiverStatus::Completed) => dest_end = DestEnd::Completed,
                    Ok(st) => dest_end = DestEnd::Running(st),
                    Err(e) => {
                        assert!(!dest_runs);
                        dest_end = DestEnd::Failed(e);
                        b.close();
                    }
                }
            }
        }
        assert!(
            !(source_runs && dest_runs),
            "the guest runs on both sides at step {step}"
        );
        let settled = matches!(source_end, SourceEnd::Completed | SourceEnd::Failed(_))
            && !matches!(dest_end, DestEnd::Running(_));
        if settled {
            break;
        }
    }
    let identical = at_stop.is_some_and(|pages| {
        pages
            .iter()
            .enumerate()
            .all(|(i, p)| sink.pages.get(&src.page_at(i)) == Some(p))
    });
    Outcome {
        source: source_end,
        dest: dest_end,
        source_runs,
        dest_runs,
        identical,
    }
}

fn at_record(kind: Kind, forward: bool, after: usize, action: RecordAction) -> FaultConfig {
    FaultConfig {
        at_record: Some(RecordFault {
            kind: kind as u8,
            prelude: if forward {
                wire::FORWARD_PRELUDE_LEN
            } else {
                wire::BACK_PRELUDE_LEN
            },
            after,
            action,
        }),
        ..FaultConfig::default()
    }
}

/// The source resumed its guest (or never stopped it) and failed with
/// `why`; the destination freed everything.
fn assert_source_keeps_it(o: &Outcome, why: SourceError, dest: ReceiveError) {
    assert_eq!(o.source, SourceEnd::Failed(why), "{o:?}");
    assert_eq!(o.dest, DestEnd::Failed(dest), "{o:?}");
    assert!(o.source_runs && !o.dest_runs, "{o:?}");
}

#[test]
fn handover_completes_and_the_source_frees_only_after_resumed() {
    for policy in Policy::ALL {
        let o = run(Scenario {
            policy,
            ..Scenario::new()
        });
        assert_eq!(o.source, SourceEnd::Completed, "{policy}: {o:?}");
        assert_eq!(o.dest, DestEnd::Completed, "{policy}: {o:?}");
        assert!(
            o.dest_runs && !o.source_runs && o.identical,
            "{policy}: {o:?}"
        );
    }
}

/// A destination that closes the connection right after its resumed (a
/// real TCP peer that is done) still completes the handover: the source
/// takes the resumed and does not mistake the close that follows it for a
/// lost answer.
#[test]
fn handover_completes_when_the_destination_closes_right_after_resumed() {
    let o = run(Scenario {
        dest_closes_when_done: true,
        ..Scenario::new()
    });
    assert_eq!(o.source, SourceEnd::Completed, "{o:?}");
    assert_eq!(o.dest, DestEnd::Completed, "{o:?}");
    assert!(o.dest_runs && !o.source_runs && o.identical, "{o:?}");
}

#[test]
fn handover_ready_lost() {
    let o = run(Scenario {
        back: at_record(Kind::Ready, false, 0, RecordAction::Lose),
        ..Scenario::new()
    });
    assert_source_keeps_it(
        &o,
        SourceError::Timeout(Wait::Ready),
        // The source gave up and closed its end first.
        ReceiveError::Stream(WireError::Truncated),
    );
}

#[test]
fn handover_ready_too_late() {
    let o = run(Scenario {
        restore_ms: 2 * TIMEOUT_MS,
        ..Scenario::new()
    });
    assert_eq!(
        o.source,
        SourceEnd::Failed(SourceError::Timeout(Wait::Ready)),
        "{o:?}"
    );
    assert!(matches!(o.dest, DestEnd::Failed(_)), "{o:?}");
    assert!(o.source_runs && !o.dest_runs);
}

#[test]
fn handover_commit_lost_but_the_back_channel_works() {
    let o = run(Scenario {
        forward: at_record(Kind::Commit, true, 0, RecordAction::Lose),
        ..Scenario::new()
    });
    // Committed, then the destination's reject says it will never resume.
    assert_source_keeps_it(
        &o,
        SourceError::Rejected(RejectReason::Timeout),
        ReceiveError::Timeout(Wait::Commit),
    );
}

/// The destination's commit wait ends later than the source's own
/// timeout would (its clock runs slow, or its loop polls late): the
/// committed source still hears the reject and resumes, because it waits
/// for the answer longer than the destination waits for the commit by
/// construction ([`crate::handover::answer_wait_ns`]), not by a margin
/// of the kernel's.
#[test]
fn handover_commit_lost_and_the_reject_comes_late() {
    let o = run(Scenario {
        forward: at_record(Kind::Commit, true, 0, RecordAction::Lose),
        dest_clock_percent: 60,
        ..Scenario::new()
    });
    assert_source_keeps_it(
        &o,
        SourceError::Rejected(RejectReason::Timeout),
        ReceiveError::Timeout(Wait::Commit),
    );
}

#[test]
fn handover_commit_lost_and_the_back_channel_dead() {
    let o = run(Scenario {
        forward: at_record(Kind::Commit, true, 0, RecordAction::Lose),
        back: at_record(Kind::Reject, false, 0, RecordAction::Lose),
        ..Scenario::new()
    });
    // The destination's reject is lost, then it closes its end.
    assert_eq!(
        o.source,
        SourceEnd::Unconfirmed(SourceError::Link(LinkError::Closed)),
        "{o:?}"
    );
    assert_eq!(o.dest, DestEnd::Failed(ReceiveError::Timeout(Wait::Commit)));
    // Nobody runs it: the source keeps it stopped and says it cannot know.
    assert!(!o.source_runs && !o.dest_runs);
}

#[test]
fn handover_destination_crashes_after_ready() {
    let o = run(Scenario {
        dest_dies: Some(Death {
            at: "AwaitingCommit",
            close: false,
        }),
        ..Scenario::new()
    });
    assert_eq!(
        o.source,
        SourceEnd::Unconfirmed(SourceError::Timeout(Wait::Resumed)),
        "{o:?}"
    );
    assert_eq!(o.dest, DestEnd::Gone);
    assert!(!o.source_runs && !o.dest_runs);
}

#[test]
fn handover_commit_partly_sent_is_not_a_commit() {
    let o = run(Scenario {
        forward: at_record(Kind::Commit, true, 10, RecordAction::Close),
        ..Scenario::new()
    });
    assert_source_keeps_it(
        &o,
        SourceError::Link(LinkError::Closed),
        ReceiveError::Stream(WireError::Truncated),
    );
}

#[test]
fn handover_resumed_lost() {
    let o = run(Scenario {
        back: at_record(Kind::Resumed, false, 0, RecordAction::Lose),
        ..Scenario::new()
    });
    assert_eq!(
        o.source,
        SourceEnd::Unconfirmed(SourceError::Timeout(Wait::Resumed)),
        "{o:?}"
    );
    assert_eq!(o.dest, DestEnd::Completed);
    assert!(o.dest_runs && !o.source_runs && o.identical);
}

#[test]
fn handover_link_dies_after_the_commit() {
    let o = run(Scenario {
        back: at_record(Kind::Resumed, false, 0, RecordAction::Close),
        ..Scenario::new()
    });
    assert_eq!(
        o.source,
        SourceEnd::Unconfirmed(SourceError::Link(LinkError::Closed)),
        "{o:?}"
    );
    assert_eq!(o.dest, DestEnd::Completed);
    assert!(o.dest_runs && !o.source_runs);
}

#[test]
fn handover_restore_fails() {
    let o = run(Scenario {
        restore_fails: true,
        ..Scenario::new()
    });
    assert_source_keeps_it(
        &o,
        SourceError::Rejected(RejectReason::Restore),
        ReceiveError::Aborted(RejectReason::Restore),
    );
}

#[test]
fn failure_destination_gone_during_precopy() {
    for (close, why) in [
        (true, SourceError::Link(LinkError::Closed)),
        (false, SourceError::Timeout(Wait::SendRoom)),
    ] {
        let o = run(Scenario {
            dest_dies: Some(Death {
                at: "Precopy",
                close,
            }),
            ..Scenario::new()
        });
        assert_eq!(o.source, SourceEnd::Failed(why), "{o:?}");
        assert_eq!(o.dest, DestEnd::Gone);
        assert!(o.source_runs && !o.dest_runs);
    }
}

#[test]
fn failure_destination_gone_during_stop_and_copy() {
    for policy in [Policy::Informed, Policy::StopAndCopy] {
        for close in [true, false] {
            let o = run(Scenario {
                policy,
                dest_dies: Some(Death {
                    at: "StopCopy",
                    close,
                }),
                ..Scenario::new()
            });
            assert!(
                matches!(
                    o.source,
                    SourceEnd::Failed(
                        SourceError::Link(LinkError::Closed)
                            | SourceError::Timeout(Wait::SendRoom | Wait::Ready)
                    )
                ),
                "{policy} {close}: {o:?}"
            );
            assert_eq!(o.dest, DestEnd::Gone);
            // It had stopped the guest, and resumed it.
            assert!(o.source_runs && !o.dest_runs);
        }
    }
}

#[test]
fn failure_source_gone() {
    for (at, close, why) in [
        ("Precopy", true, ReceiveError::Stream(WireError::Truncated)),
        ("Precopy", false, ReceiveError::Timeout(Wait::Stream)),
        ("StopCopy", false, ReceiveError::Timeout(Wait::Stream)),
        ("Handshake", false, ReceiveError::Timeout(Wait::Hello)),
    ] {
        let o = run(Scenario {
            source_dies: Some(Death { at, close }),
            ..Scenario::new()
        });
        assert_eq!(o.dest, DestEnd::Failed(why), "{at}: {o:?}");
        assert!(!o.dest_runs);
    }
}

#[test]
fn failure_stream_truncated() {
    let (stream, _) = full_migration_bytes(Policy::Informed);
    for at in [3, HELLO_LEN + 2, FORWARD_PRELUDE_LEN + 5, 20_000, 60_000] {
        let o = run(Scenario {
            forward: FaultConfig {
                close_at: Some(at as u64),
                ..FaultConfig::default()
            },
            ..Scenario::new()
        });
        assert_source_keeps_it(
            &o,
            SourceError::Link(LinkError::Closed),
            ReceiveError::Stream(WireError::Truncated),
        );
        assert!(at < stream.len() * 4);
    }
}

#[test]
fn failure_one_byte_flipped_in_flight() {
    // Forward: in the hello, the proof, a record's header, its payload.
    for (at, source, dest) in [
        (
            10u64,
            SourceError::Refused(Refusal::Malformed),
            WireError::HandshakeCrc,
        ),
        (
            HELLO_LEN as u64 + 3,
            SourceError::Link(LinkError::Closed),
            WireError::HandshakeCrc,
        ),
        (
            FORWARD_PRELUDE_LEN as u64 + 9,
            SourceError::Rejected(RejectReason::BadStream),
            WireError::RecordCrc { seq: 0 },
        ),
        (
            FORWARD_PRELUDE_LEN as u64 + 300,
            SourceError::Rejected(RejectReason::BadStream),
            // Record 0 is a zero page (40 bytes): this is in record 1.
            WireError::RecordCrc { seq: 1 },
        ),
    ] {
        let o = run(Scenario {
            forward: FaultConfig {
                flip_byte_at: Some(at),
                ..FaultConfig::default()
            },
            ..Scenario::new()
        });
        assert_source_keeps_it(&o, source, ReceiveError::Stream(dest));
    }
    // In the commit: the destination rejects it, and the committed source
    // learns from the reject that the guest never resumes there.
    let o = run(Scenario {
        forward: at_record(Kind::Commit, true, 25, RecordAction::Flip),
        ..Scenario::new()
    });
    assert!(matches!(
        o.dest,
        DestEnd::Failed(ReceiveError::Stream(WireError::RecordCrc { .. }))
    ));
    assert_eq!(
        o.source,
        SourceEnd::Failed(SourceError::Rejected(RejectReason::BadStream)),
        "{o:?}"
    );
    assert!(o.source_runs && !o.dest_runs);
    // Back channel: in the challenge, in the ready, in the resumed.
    let o = run(Scenario {
        back: FaultConfig {
            flip_byte_at: Some(20),
            ..FaultConfig::default()
        },
        ..Scenario::new()
    });
    assert_source_keeps_it(
        &o,
        SourceError::BadReply(WireError::HandshakeCrc),
        ReceiveError::Stream(WireError::Truncated),
    );
    // In the argument field, so the reported sequence field is intact.
    let ready_at = wire::BACK_PRELUDE_LEN as u64 + 9;
    let o = run(Scenario {
        back: FaultConfig {
            flip_byte_at: Some(ready_at),
            ..FaultConfig::default()
        },
        ..Scenario::new()
    });
    assert_source_keeps_it(
        &o,
        SourceError::BadReply(WireError::RecordCrc { seq: 0 }),
        ReceiveError::Stream(WireError::Truncated),
    );
    let resumed_at = ready_at + wire::EMPTY_RECORD_LEN as u64;
    let o = run(Scenario {
        back: FaultConfig {
            flip_byte_at: Some(resumed_at),
            ..FaultConfig::default()
        },
        ..Scenario::new()
    });
    assert_eq!(
        o.source,
        SourceEnd::Unconfirmed(SourceError::BadReply(WireError::RecordCrc { seq: 1 })),
        "{o:?}"
    );
    assert!(o.dest_runs && !o.source_runs);
}

#[test]
fn failure_wrong_key_is_typed_on_both_sides() {
    let o = run(Scenario {
        dest_key: other_key(),
        ..Scenario::new()
    });
    assert_source_keeps_it(&o, SourceError::KeyMismatch, ReceiveError::KeyMismatch);
    assert!(SourceError::KeyMismatch
        .to_string()
        .contains("peer does not know the migration key"));
    assert!(ReceiveError::KeyMismatch
        .to_string()
        .contains("peer does not know the migration key"));
}

#[test]
fn failure_guest_size_differs() {
    let o = run(Scenario {
        dest_pages: 23,
        ..Scenario::new()
    });
    assert_source_keeps_it(
        &o,
        SourceError::Refused(Refusal::GuestSize),
        ReceiveError::Stream(WireError::GuestSize {
            expected: 23,
            got: 24,
        }),
    );
}

/// A link that rewrites the first `N` bytes it sends (another version's
/// peer).
struct Rewrite<L, const N: usize> {
    inner: L,
    head: [u8; N],
    fill: usize,
    pushed: usize,
    edit: fn(&mut [u8; N]),
}

impl<L: Link, const N: usize> Link for Rewrite<L, N> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        if self.pushed == N {
            return self.inner.send(data);
        }
        let n = (N - self.fill).min(data.len());
        self.head[self.fill..self.fill + n].copy_from_slice(&data[..n]);
        self.fill += n;
        if self.fill == N && self.pushed == 0 {
            (self.edit)(&mut self.head);
        }
        if self.fill == N {
            self.pushed += self.inner.send(&self.head[self.pushed..])?;
        }
        Ok(n)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.inner.recv(buf)
    }
}

#[test]
fn failure_wrong_stream_version() {
    fn v3_hello(h: &mut [u8; HELLO_LEN]) {
        h[4] = 3;
        wire::put_crc(h, HELLO_LEN - 4);
    }
    fn v3_challenge(c: &mut [u8; wire::CHALLENGE_LEN]) {
        c[4] = 3;
        wire::put_crc(c, wire::CHALLENGE_LEN - 4);
    }
    let mut rng = Rng(5);
    let mut src = initial(8, &mut rng);
    for forward in [true, false] {
        let mut slots = vec![Slot::EMPTY; 16];
        let storage = SourceStorage {
            slots: &mut slots,
            cache_pages: &mut [],
            cache_owners: &mut [],
        };
        let mut s = new_source(SourceConfig::new(Policy::Precopy), storage);
        let pipe = Pipe::<{ 4 * MAX_RECORD }>::new();
        let (a, b) = pipe.ends();
        let mut a = Rewrite {
            inner: a,
            head: [0; HELLO_LEN],
            fill: 0,
            pushed: 0,
            edit: if forward { v3_hello } else { |_| {} },
        };
        let mut b = Rewrite {
            inner: b,
            head: [0; wire::CHALLENGE_LEN],
            fill: 0,
            pushed: 0,
            edit: if forward { |_| {} } else { v3_challenge },
        };
        let mut dest = Dest::new(0, 8);
        let (mut source_err, mut dest_err) = (None, None);
        for t in 0..1000 {
            if source_err.is_none() {
                if let Err(e) = s.poll(t * 1_000_000, &mut src, &mut a) {
                    source_err = Some(e);
                    a.inner.close();
                }
            }
            if dest_err.is_none() {
                if let Err(e) = dest.step(t * 1_000_000, &mut b, 8) {
                    dest_err = Some(e);
                    b.inner.close();
                }
            }
        }
        if forward {
            assert_eq!(source_err, Some(SourceError::Refused(Refusal::Version)));
            assert_eq!(
                dest_err,
                Some(ReceiveError::Stream(WireError::UnsupportedVersion(3)))
            );
        } else {
            assert_eq!(
                source_err,
                Some(SourceError::BadReply(WireError::UnsupportedVersion(3)))
            );
            assert_eq!(dest_err, Some(ReceiveError::Stream(WireError::Truncated)));
        }
    }
}

/// Under random injected faults the destination rejects, the source learns
/// it and fails with a typed error (so the kernel resumes the vGPU), and a
/// clean retry then succeeds.
#[test]
fn faults_are_rejected_and_the_source_can_retry() {
    let mut rejected = 0;
    for seed in 1..12u64 {
        let o = run(Scenario {
            policy: Policy::GmigTpds,
            forward: FaultConfig {
                corrupt_one_in: 40,
                drop_one_in: 60,
                duplicate_one_in: 60,
                max_chunk: 300,
                ..FaultConfig::default()
            },
            seed,
            ..Scenario::new()
        });
        match o.source {
            SourceEnd::Completed => assert!(o.identical),
            SourceEnd::Failed(e) => {
                assert!(
                    matches!(
                        e,
                        SourceError::Rejected(RejectReason::BadStream)
                            | SourceError::Refused(Refusal::Malformed)
                            | SourceError::Link(LinkError::Closed)
                    ),
                    "{e}"
                );
                assert!(
                    matches!(o.dest, DestEnd::Failed(ReceiveError::Stream(_))),
                    "{o:?}"
                );
                assert!(o.source_runs && !o.dest_runs);
                rejected += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(rejected > 5);
    let (src, sink, _) = migrate_with(Policy::GmigTpds, 9, false);
    assert!(src
        .pages
        .iter()
        .enumerate()
        .all(|(i, p)| sink.pages[&src.page_at(i)] == *p));
}

#[test]
fn link_reset_is_a_link_error() {
    let mut rng = Rng(2);
    let mut src = initial(24, &mut rng);
    let mut slots = vec![Slot::EMPTY; 64];
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut [],
        cache_owners: &mut [],
    };
    let mut s = new_source(SourceConfig::new(Policy::Precopy), storage);
    let pipe = Pipe::<{ 64 * MAX_RECORD }>::new();
    let (a, mut b) = pipe.ends();
    let mut a = FaultInjector::new(
        a,
        FaultConfig {
            reset_after: 10_000,
            ..FaultConfig::default()
        },
        1,
    );
    let mut dest = Dest::new(0, 24);
    let mut err = None;
    for t in 0..1000 {
        if let Err(e) = s.poll(t, &mut src, &mut a) {
            err = Some(e);
            break;
        }
        dest.step(t, &mut b, 8).unwrap();
    }
    assert_eq!(err, Some(SourceError::Link(LinkError::Reset)));
    assert!(matches!(
        s.poll(0, &mut src, &mut a),
        Err(SourceError::Misuse(_))
    ));
}

#[test]
fn the_receiver_api_refuses_misuse() {
    let mut dest = Dest::new(0, 4);
    let pipe = Pipe::<64>::new();
    let (_, mut b) = pipe.ends();
    assert!(matches!(
        dest.rx.ready(0, &mut b),
        Err(ReceiveError::Misuse(_))
    ));
    assert!(matches!(
        dest.rx.resumed(&mut b),
        Err(ReceiveError::Misuse(_))
    ));
    assert_eq!(
        dest.rx.abort(RejectReason::Restore, &mut b),
        ReceiveError::Aborted(RejectReason::Restore)
    );
    assert_eq!(
        dest.rx.poll(0, &mut dest.sink, &mut b, 4),
        Err(ReceiveError::Aborted(RejectReason::Restore))
    );
}

#[test]
fn proof_message_is_where_the_layout_says() {
    let (stream, _) = full_migration_bytes(Policy::Precopy);
    assert!(wire::parse_proof(&stream[HELLO_LEN..HELLO_LEN + PROOF_LEN]).is_ok());
    assert!(wire::HelloRepr::parse(&stream[..HELLO_LEN]).is_ok());
}

/// A link that reports a fixed send-buffer fill.
struct Reporting<L> {
    inner: L,
    unsent: Option<usize>,
}

impl<L: Link> Link for Reporting<L> {
    fn send(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        self.inner.send(data)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.inner.recv(buf)
    }
    fn unsent(&self) -> Option<usize> {
        self.unsent
    }
}

/// Time (ms) of the first StopGuest of an `informed` migration of a static
/// set over a link that reports `unsent`, with a 50 ms downtime budget.
fn informed_stop_ms(unsent: Option<usize>) -> u64 {
    let mut rng = Rng(9);
    let mut src = initial(16, &mut rng);
    let mut slots = vec![Slot::EMPTY; 64];
    let mut cfg = SourceConfig::new(Policy::Informed);
    cfg.downtime_budget_ns = 50_000_000;
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut [],
        cache_owners: &mut [],
    };
    let mut s = new_source(cfg, storage);
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (a, mut b) = pipe.ends();
    let mut a = Reporting { inner: a, unsent };
    let mut dest = Dest::new(0, 16);
    for ms in 1..1000u64 {
        if s.poll(ms * 1_000_000, &mut src, &mut a).unwrap() == SourceStatus::StopGuest {
            return ms;
        }
        dest.step(ms * 1_000_000, &mut b, 64).unwrap();
    }
    panic!("no stop request");
}

#[test]
fn informed_stops_only_with_an_empty_send_buffer() {
    let unknown = informed_stop_ms(None);
    let empty = informed_stop_ms(Some(0));
    let never_empty = informed_stop_ms(Some(4096));
    assert!(unknown < 50, "{unknown}");
    assert_eq!(empty, unknown);
    // Waits while bytes are unsent, but no longer than the downtime budget.
    assert!(
        (unknown + 50..unknown + 55).contains(&never_empty),
        "{unknown} {never_empty}"
    );
}

/// An `informed-throttle` migration of 32 pages; `dirty` pages change per
/// guest step. Returns the shares the source asked for, in poll order, and
/// the final stats.
fn throttle_run(dirty: usize, target_ns: u64) -> (Vec<Share>, SourceStats) {
    let mut rng = Rng(21);
    let mut src = initial(32, &mut rng);
    let mut slots = vec![Slot::EMPTY; 64];
    let mut cache_pages = vec![[0u8; PAGE_SIZE]; 8];
    let mut cache_owners = vec![0u64; 8];
    let mut cfg = SourceConfig::new(Policy::InformedThrottle);
    cfg.work_per_poll = 4;
    cfg.max_rounds = 24;
    cfg.throttle.target_ns = target_ns;
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cache_pages,
        cache_owners: &mut cache_owners,
    };
    let mut s = new_source(cfg, storage);
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut dest = Dest::new(0, 32);
    let mut shares = Vec::new();
    let mut pacer = Pacer::new();
    let mut stopped = false;
    for step in 1..100_000u64 {
        let share = s.submission_share();
        shares.push(share);
        if !stopped && pacer.admit(share) {
            for k in 0..dirty {
                let i = (step as usize * 7 + k * 5) % 32;
                src.pages[i][k] = src.pages[i][k].wrapping_add(1);
                s.report_write_target(src.page_at(i)).unwrap();
            }
        }
        match s.poll(step * 10_000, &mut src, &mut a).unwrap() {
            SourceStatus::StopGuest => {
                stopped = true;
                s.guest_stopped(step * 10_000).unwrap();
            }
            SourceStatus::Completed => {
                for (i, p) in src.pages.iter().enumerate() {
                    assert!(dest.sink.pages[&src.page_at(i)] == *p, "page {i}");
                }
                return (shares, *s.stats());
            }
            _ => {}
        }
        dest.step(step * 10_000, &mut b, 64).unwrap();
    }
    panic!("no completion");
}

#[test]
fn throttle_stays_off_while_pre_copy_converges() {
    // Nothing changes: round 2 sends nothing, the policy stops unthrottled.
    let (shares, stats) = throttle_run(0, 0);
    assert!(shares.iter().all(|s| s.is_full()));
    assert_eq!(stats.throttle.steps, 0);
    // Changes whose re-send fits the (default, 30 ms) target: no throttle.
    let (shares, stats) = throttle_run(2, ThrottleConfig::new().target_ns);
    assert!(shares.iter().all(|s| s.is_full()));
    assert_eq!(stats.throttle.steps, 0);
}

#[test]
fn throttle_engages_when_not_converging_and_releases_at_the_stop() {
    let (shares, stats) = throttle_run(6, 0);
    let floor = ThrottleConfig::new().floor;
    assert!(stats.throttle.steps > 0, "{stats:?}");
    assert!(shares.iter().all(|s| *s >= floor));
    assert!(shares.iter().any(|s| !s.is_full()));
    // Full again from the stop on.
    let last_throttled = shares.iter().rposition(|s| !s.is_full()).unwrap();
    assert!(shares[last_throttled + 1..].iter().all(|s| s.is_full()));
    assert!(shares[last_throttled + 1..].len() > 1);
}

#[test]
fn throttle_released_when_the_migration_fails() {
    let mut rng = Rng(4);
    let mut src = initial(32, &mut rng);
    let mut slots = vec![Slot::EMPTY; 64];
    let cfg = test_config(Policy::InformedThrottle);
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut [],
        cache_owners: &mut [],
    };
    let mut s = new_source(cfg, storage);
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut dest = Dest::new(cfg.vgpu_type, 32);
    let mut step = 0u64;
    while s.submission_share().is_full() {
        step += 1;
        assert!(step < 100_000, "throttle never engaged");
        for k in 0..6 {
            let i = (step as usize * 7 + k * 5) % 32;
            src.pages[i][k] ^= 0x55;
            s.report_write_target(src.page_at(i)).unwrap();
        }
        assert!(matches!(
            s.poll(step * 10_000, &mut src, &mut a).unwrap(),
            SourceStatus::Precopy | SourceStatus::Handshake
        ));
        dest.step(step * 10_000, &mut b, 64).unwrap();
    }
    // The destination goes away mid pre-copy: the source fails, and the
    // guest it keeps gets its full rate back.
    b.close();
    let mut failed = false;
    for k in 1..1000 {
        if s.poll((step + k) * 10_000, &mut src, &mut a).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed);
    assert_eq!(s.submission_share(), Share::FULL);
}

/// Writes the scanner cannot bound (a draw's render targets) make every
/// page a candidate; rounds still measure what changed by hashing them, so
/// the throttle still engages, and the destination still ends identical.
#[test]
fn throttle_works_with_untracked_writes() {
    let mut rng = Rng(8);
    let mut src = initial(32, &mut rng);
    let mut slots = vec![Slot::EMPTY; 64];
    let cfg = test_config(Policy::InformedThrottle);
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut [],
        cache_owners: &mut [],
    };
    let mut s = new_source(cfg, storage);
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut dest = Dest::new(cfg.vgpu_type, 32);
    let mut pacer = Pacer::new();
    let mut engaged = false;
    let mut step = 0u64;
    loop {
        step += 1;
        assert!(step < 200_000, "never completed");
        if pacer.admit(s.submission_share()) && s.stats().stopped_at_ns.is_none() {
            for k in 0..6 {
                let i = (step as usize * 7 + k * 5) % 32;
                src.pages[i][k] ^= 0x55;
            }
            s.report_untracked_writes();
        }
        engaged |= !s.submission_share().is_full();
        match s.poll(step * 10_000, &mut src, &mut a).unwrap() {
            SourceStatus::StopGuest => s.guest_stopped(step * 10_000).unwrap(),
            SourceStatus::Completed => {
                let done = dest.step(step * 10_000, &mut b, 64).unwrap();
                assert_eq!(done, ReceiverStatus::Completed);
                break;
            }
            _ => {}
        }
        dest.step(step * 10_000, &mut b, 64).unwrap();
    }
    assert!(engaged, "the throttle never engaged");
    for i in 0..32 {
        assert_eq!(
            dest.sink.pages.get(&src.page_at(i)),
            Some(&src.pages[i]),
            "page {i}"
        );
    }
}
