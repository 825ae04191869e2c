//! End-to-end tests: every policy migrates a changing page set through the
//! in-memory pipe; the decoder rejects broken streams.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::page::PageBuf;
use crate::source::{SourceStatus, SourceStorage};
use crate::tracker::Slot;
use crate::wire::{HeaderRepr, RecordRepr, HEADER_LEN, MAX_RECORD};
use crate::*;

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
        GuestPage::new(0x1000 + index as u64).unwrap()
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let i = page
            .get()
            .checked_sub(0x1000)
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

#[derive(Default)]
pub(crate) struct MemSink {
    pub pages: HashMap<GuestPage, PageBuf>,
    pub device: Vec<u8>,
    pub cpu: Vec<u8>,
}

impl PageSink for MemSink {
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError> {
        self.pages.insert(page, *data);
        Ok(())
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        *out = *self.pages.get(&page).ok_or(MemoryError::NotMapped(page))?;
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
fn migrate_with(policy: Policy, seed: u64) -> (MemSource, MemSink, SourceStats) {
    let mut rng = Rng(seed | 1);
    let mut src = initial(96, &mut rng);
    let mut slots = vec![Slot::EMPTY; 256];
    let mut cache_pages = vec![[0u8; PAGE_SIZE]; 128];
    let mut cache_owners = vec![0u64; 128];
    let cfg = test_config(policy);
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cache_pages,
        cache_owners: &mut cache_owners,
    };
    let mut s = Source::new(cfg, storage).unwrap();
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut rx = Receiver::new(3);
    let mut sink = MemSink::default();
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
        match s.poll(now, &mut src, &mut a).unwrap() {
            SourceStatus::StopGuest => {
                stopped = true;
                s.guest_stopped(now).unwrap();
                assert_eq!(s.submission_share(), Share::FULL, "released at the stop");
            }
            SourceStatus::Completed => {
                assert_eq!(
                    rx.poll(&mut sink, &mut b, 8).unwrap(),
                    ReceiverStatus::Completed
                );
                return (src, sink, *s.stats());
            }
            _ => {}
        }
        rx.poll(&mut sink, &mut b, 8).unwrap();
    }
    panic!("{policy} did not complete");
}

#[test]
fn every_policy_ends_byte_identical() {
    for policy in Policy::ALL {
        for seed in [1u64, 77] {
            let (src, sink, stats) = migrate_with(policy, seed);
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
    let (_, _, sc) = migrate_with(Policy::StopAndCopy, 5);
    let (_, _, one) = migrate_with(Policy::GmigOneShot, 5);
    let (_, _, inf) = migrate_with(Policy::Informed, 5);
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
        let mut s = Source::new(SourceConfig::new(policy), storage).unwrap();
        let pipe = Pipe::<{ 64 * MAX_RECORD }>::new();
        let (mut a, mut b) = pipe.ends();
        let mut rx = Receiver::new(0);
        let mut sink = MemSink::default();
        let mut swapped = false;
        let mut now = 0;
        loop {
            now += 1_000_000;
            let st = s.poll(now, &mut src, &mut a).unwrap();
            rx.poll(&mut sink, &mut b, 64).unwrap();
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
            sink.pages[&src.page_at(1)] != src.pages[1],
            stale,
            "{policy}"
        );
    }
}

fn full_migration_bytes(policy: Policy) -> (Vec<u8>, MemSource) {
    let mut rng = Rng(11);
    let mut src = initial(6, &mut rng);
    src.device.truncate(5000);
    let mut slots = vec![Slot::EMPTY; 16];
    let mut cp = vec![[0u8; PAGE_SIZE]; 8];
    let mut co = vec![0u64; 8];
    let storage = SourceStorage {
        slots: &mut slots,
        cache_pages: &mut cp,
        cache_owners: &mut co,
    };
    let mut s = Source::new(SourceConfig::new(policy), storage).unwrap();
    let pipe = Pipe::<{ 64 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for round in 0..1000u64 {
        if round == 3 {
            src.pages[2][100] ^= 0xff;
            s.report_write_target(src.page_at(2)).unwrap();
        }
        match s.poll(round * 1_000_000_000, &mut src, &mut a).unwrap() {
            SourceStatus::StopGuest => s.guest_stopped(round).unwrap(),
            SourceStatus::AwaitingConfirm => break,
            _ => {}
        }
        loop {
            let n = b.recv(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
    loop {
        let n = b.recv(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    (out, src)
}

/// Record boundaries of a stream produced by the source.
fn records(stream: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut at = HEADER_LEN;
    let mut v = Vec::new();
    while at < stream.len() {
        let r = wire::Record::new_checked(&stream[at..]).unwrap();
        v.push(at..at + r.total_len());
        at += r.total_len();
    }
    v
}

#[test]
fn recorded_stream_decodes() {
    for policy in Policy::ALL {
        let (stream, src) = full_migration_bytes(policy);
        let mut sink = MemSink::default();
        decode_stream(&stream, 0, &mut sink).unwrap();
        for (i, p) in src.pages.iter().enumerate() {
            assert!(sink.pages[&src.page_at(i)] == *p, "{policy}");
        }
        assert_eq!(
            decode_stream(&stream, 1, &mut MemSink::default()),
            Err(ReceiveError::Stream(WireError::VgpuType {
                expected: 1,
                got: 0
            }))
        );
    }
}

fn stream_err(stream: &[u8]) -> ReceiveError {
    decode_stream(stream, 0, &mut MemSink::default()).unwrap_err()
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
    fn bit_flips_fail(pos in any::<prop::sample::Index>(), bit in 0u8..8, p in 0usize..Policy::ALL.len()) {
        let (mut stream, _) = full_migration_bytes(Policy::ALL[p]);
        let i = pos.index(stream.len());
        stream[i] ^= 1 << bit;
        let e = stream_err(&stream);
        prop_assert!(matches!(e, ReceiveError::Stream(_)), "{:?}", e);
    }

    #[test]
    fn reordered_or_duplicated_records_fail(a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), dup in any::<bool>(), p in 0usize..Policy::ALL.len()) {
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
        let mut out = stream[..HEADER_LEN].to_vec();
        for k in order {
            out.extend_from_slice(&stream[recs[k].clone()]);
        }
        let e = stream_err(&out);
        prop_assert!(matches!(e, ReceiveError::Stream(WireError::Sequence { .. }) | ReceiveError::Stream(WireError::TrailingData)), "{:?}", e);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), header in any::<bool>()) {
        let mut s = Vec::new();
        if header {
            let mut h = [0u8; HEADER_LEN];
            HeaderRepr { vgpu_type: 0 }.emit(&mut h);
            s.extend_from_slice(&h);
        }
        s.extend_from_slice(&bytes);
        prop_assert!(decode_stream(&s, 0, &mut MemSink::default()).is_err());
    }
}

#[test]
fn wrong_version_is_typed() {
    let (mut stream, _) = full_migration_bytes(Policy::Precopy);
    stream[4] = 9;
    let c = wire::crc32c(&stream[..12]);
    stream[12..16].copy_from_slice(&c.to_le_bytes());
    assert_eq!(
        stream_err(&stream),
        ReceiveError::Stream(WireError::UnsupportedVersion(9))
    );
    stream[0] = b'X';
    assert_eq!(
        stream_err(&stream),
        ReceiveError::Stream(WireError::BadMagic)
    );
}

#[test]
fn re_signed_wrong_order_is_typed() {
    // A well-formed done record before end of pre-copy.
    let mut s = vec![0u8; HEADER_LEN];
    HeaderRepr { vgpu_type: 0 }.emit(&mut s);
    let mut r = [0u8; MAX_RECORD];
    let n = RecordRepr::Done { page_records: 0 }.emit(0, &mut r);
    s.extend_from_slice(&r[..n]);
    assert!(matches!(
        stream_err(&s),
        ReceiveError::Stream(WireError::Order(_))
    ));
}

/// Under injected faults the destination rejects, the source learns it and
/// fails with a typed error (so the kernel resumes the vGPU), and a clean
/// retry then succeeds.
#[test]
fn faults_are_rejected_and_the_source_can_retry() {
    let mut rejected = 0;
    for seed in 1..12u64 {
        let mut rng = Rng(seed);
        let mut src = initial(24, &mut rng);
        let mut slots = vec![Slot::EMPTY; 64];
        let storage = SourceStorage {
            slots: &mut slots,
            cache_pages: &mut [],
            cache_owners: &mut [],
        };
        let mut s = Source::new(SourceConfig::new(Policy::GmigTpds), storage).unwrap();
        let pipe = Pipe::<{ 8 * MAX_RECORD }>::new();
        let (a, mut b) = pipe.ends();
        let cfg = FaultConfig {
            corrupt_one_in: 40,
            drop_one_in: 60,
            duplicate_one_in: 60,
            max_chunk: 300,
            reset_after: 0,
        };
        let mut a = FaultInjector::new(a, cfg, seed);
        let mut rx = Receiver::new(0);
        let mut sink = MemSink::default();
        let mut result = None;
        for t in 0..100_000u64 {
            match s.poll(t * 1000, &mut src, &mut a) {
                Ok(SourceStatus::StopGuest) => s.guest_stopped(t).unwrap(),
                Ok(SourceStatus::Completed) => {
                    result = Some(Ok(()));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    result = Some(Err(e));
                    break;
                }
            }
            let _ = rx.poll(&mut sink, &mut b, 4);
        }
        match result.expect("migration neither completed nor failed") {
            Ok(()) => assert_eq!(a.injected, 0, "faults slipped through"),
            Err(e) => {
                assert_eq!(
                    e,
                    SourceError::Rejected(RejectReason::BadStream),
                    "seed {seed}"
                );
                rejected += 1;
            }
        }
    }
    assert!(rejected > 5);
    let (src, sink, _) = migrate_with(Policy::GmigTpds, 9);
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
    let mut s = Source::new(SourceConfig::new(Policy::Precopy), storage).unwrap();
    let pipe = Pipe::<{ 64 * MAX_RECORD }>::new();
    let (a, _b) = pipe.ends();
    let mut a = FaultInjector::new(
        a,
        FaultConfig {
            reset_after: 10_000,
            ..FaultConfig::default()
        },
        1,
    );
    let mut err = None;
    for t in 0..1000 {
        if let Err(e) = s.poll(t, &mut src, &mut a) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(SourceError::Link(LinkError::Reset)));
    assert!(matches!(
        s.poll(0, &mut src, &mut a),
        Err(SourceError::Misuse(_))
    ));
}

/// The fuzzer's hand-written seed (migrate/fuzz/seeds) is a valid stream, so
/// the fuzzer starts from a shape that reaches every record kind.
#[test]
fn fuzz_seed_is_a_valid_stream() {
    let seed = include_bytes!("../fuzz/seeds/full_stream.raw");
    assert_eq!(seed[0], 1, "mode byte: raw");
    let mut sink = MemSink::default();
    let summary = decode_stream(&seed[1..], 0, &mut sink).unwrap();
    assert_eq!(summary.records, 6);
    assert_eq!(sink.pages.len(), 2);
    assert_eq!(sink.device, (0u8..16).collect::<Vec<_>>());
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
    let mut s = Source::new(cfg, storage).unwrap();
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (a, mut b) = pipe.ends();
    let mut a = Reporting { inner: a, unsent };
    let mut rx = Receiver::new(0);
    let mut sink = MemSink::default();
    for ms in 1..1000u64 {
        if s.poll(ms * 1_000_000, &mut src, &mut a).unwrap() == SourceStatus::StopGuest {
            return ms;
        }
        rx.poll(&mut sink, &mut b, 64).unwrap();
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
    let mut s = Source::new(cfg, storage).unwrap();
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut rx = Receiver::new(0);
    let mut sink = MemSink::default();
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
                    assert!(sink.pages[&src.page_at(i)] == *p, "page {i}");
                }
                return (shares, *s.stats());
            }
            _ => {}
        }
        rx.poll(&mut sink, &mut b, 64).unwrap();
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
    let mut s = Source::new(cfg, storage).unwrap();
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut rx = Receiver::new(cfg.vgpu_type);
    let mut sink = MemSink::default();
    let mut step = 0u64;
    while s.submission_share().is_full() {
        step += 1;
        assert!(step < 100_000, "throttle never engaged");
        for k in 0..6 {
            let i = (step as usize * 7 + k * 5) % 32;
            src.pages[i][k] ^= 0x55;
            s.report_write_target(src.page_at(i)).unwrap();
        }
        assert_eq!(
            s.poll(step * 10_000, &mut src, &mut a).unwrap(),
            SourceStatus::Precopy
        );
        rx.poll(&mut sink, &mut b, 64).unwrap();
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
    let mut s = Source::new(cfg, storage).unwrap();
    let pipe = Pipe::<{ 3 * MAX_RECORD }>::new();
    let (mut a, mut b) = pipe.ends();
    let mut rx = Receiver::new(cfg.vgpu_type);
    let mut sink = MemSink::default();
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
                let done = rx.poll(&mut sink, &mut b, 64).unwrap();
                assert_eq!(done, ReceiverStatus::Completed);
                break;
            }
            _ => {}
        }
        rx.poll(&mut sink, &mut b, 64).unwrap();
    }
    assert!(engaged, "the throttle never engaged");
    for i in 0..32 {
        assert_eq!(
            sink.pages.get(&src.page_at(i)),
            Some(&src.pages[i]),
            "page {i}"
        );
    }
}
