//! The hostile guest's command streams (`guest::attack`) against the
//! command scanner itself: each attack is refused for its class's rule
//! (the reason is checked, not only that it failed), and its benign twin,
//! the same submission with only the offending bit or operand changed,
//! is accepted. So no attack can pass by being malformed in some other
//! way, and the class list cannot drift from what the scanner refuses.

use std::cell::RefCell;
use std::collections::HashMap;

use gpu::addr::{GuestGm, GuestGmRange, HostGm};
use gpu::partition::{GmLayout, PartitionAllocator, VgpuType};
use gpu::scan::scanner::BATCH_POOL;
use gpu::scan::{ControlFlow, GmFault, GmSpace, Reason, RingState, Shadow};
use guest::attack::{self, ring_index, Class, Layout, Refusal, Stream};

/// A guest's graphics memory over its two slices, each at a host delta.
struct Gm {
    layout: Layout,
    words: RefCell<HashMap<u64, u32>>,
}

/// The host sees the slices where the guest does (the scanner only needs
/// a linear translation).
const HOST_DELTA: u64 = 0;

impl Gm {
    fn slice(&self, at: u64) -> Option<GuestGmRange> {
        let l = &self.layout;
        [(l.aperture, l.aperture_size), (l.hidden, l.hidden_size)]
            .into_iter()
            .find(|&(base, size)| (base..base + size).contains(&at))
            .map(|(base, size)| GuestGmRange::new(GuestGm::new(base).unwrap(), size).unwrap())
    }
    fn write(&self, at: u64, words: &[u32]) {
        let mut m = self.words.borrow_mut();
        for (i, &w) in words.iter().enumerate() {
            m.insert(at + 4 * i as u64, w);
        }
    }
}

impl GmSpace for Gm {
    fn read_guest(&self, at: GuestGm, out: &mut [u32]) -> Result<(), GmFault> {
        let len = 4 * out.len() as u64;
        let slice = self.slice(at.raw()).ok_or(GmFault::OutOfSlices)?;
        if at.raw() + len > slice.end_raw() {
            return Err(GmFault::OutOfSlices);
        }
        let m = self.words.borrow();
        for (i, w) in out.iter_mut().enumerate() {
            *w = m.get(&(at.raw() + 4 * i as u64)).copied().unwrap_or(0);
        }
        Ok(())
    }
    fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault> {
        let slice = self.slice(range.base().raw()).ok_or(GmFault::OutOfSlices)?;
        if !slice.contains_range(range) {
            return Err(GmFault::OutOfSlices);
        }
        Ok(HostGm::new(range.base().raw() + HOST_DELTA).unwrap())
    }
    fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault> {
        self.slice(at.raw()).ok_or(GmFault::OutOfSlices)
    }
}

/// A small vGPU's slices as the partition allocator hands them out (the
/// second vGPU's, so another's lie on both sides), aimed at the first's.
fn layout() -> Layout {
    let mut a =
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
    let victim = a.allocate(VgpuType::Small).unwrap();
    let me = a.allocate(VgpuType::Small).unwrap();
    Layout::new(
        me.aperture().base().raw(),
        me.aperture().len(),
        me.hidden().base().raw(),
        me.hidden().len(),
        4,
        victim.aperture().base().raw() + 0x2_0000,
    )
}

fn scan(l: &Layout, s: &Stream) -> Result<(), Reason> {
    let gm = Gm {
        layout: *l,
        words: RefCell::new(HashMap::new()),
    };
    for (at, words) in s.batches.iter().flatten() {
        gm.write(*at, words.words());
    }
    let ring = l.gm(ring_index(s.engine));
    gm.write(ring, s.ring.words());
    let mut hosts = [HostGm::new(0).unwrap(); BATCH_POOL];
    for (i, h) in hosts.iter_mut().enumerate() {
        *h = HostGm::new(0x8000_0000 + 0x1_0000 * i as u64).unwrap();
    }
    let mut shadow = Box::new(Shadow::new(
        s.engine,
        HostGm::new(0x7000_0000).unwrap(),
        hosts,
    ));
    let rs = RingState {
        start: GuestGm::new(ring).unwrap(),
        size: 4096,
        head: 0,
        tail: 4 * s.ring.words().len() as u32,
    };
    shadow.scan(&gm, rs).map(|_| ()).map_err(|e| e.reason)
}

/// The rule each stream class must be refused by.
fn refused_for_its_class(class: Class, r: Reason) -> bool {
    use Class::*;
    let memory = matches!(
        r,
        Reason::Memory {
            fault: GmFault::OutOfSlices,
            ..
        }
    );
    match class {
        PrivilegedCommand | ResourceStreamer => matches!(r, Reason::Privileged(_)),
        PpgttBatch => r == Reason::Ppgtt,
        UnknownOpcode | TruncatedCommand => matches!(r, Reason::Decode(_)),
        RegisterNotListed | RegisterValue | RegisterFromMemory | LoadIntoStreamer
        | StatusBeforeOwnWork => matches!(r, Reason::Register { .. }),
        StoreOutside | PostSyncOutside | BlitPastSlice | CopyFromOutside | BlitFromOutside
        | SemaphoreOutside | VertexBufferOutside | BatchOutside | BatchRunsOff | SfcPastSlice
        | DepthPastSlice | TiledBlitPastSlice => memory,
        BatchCycle => r == Reason::BatchCycle,
        BatchDepth => r == Reason::DepthExceeded,
        PredicatedBatchStart => r == Reason::ControlFlow(ControlFlow::PredicatedBatchStart),
        BatchEndInRing => r == Reason::ControlFlow(ControlFlow::BatchEndInRing),
        ChainInSecondLevel => r == Reason::ControlFlow(ControlFlow::ChainInSecondLevel),
        SetPredicate => r == Reason::ControlFlow(ControlFlow::SetPredicate),
        StateAfterConditionalEnd | ConsumerWithoutState | StaleState => {
            matches!(r, Reason::UnseenState(_))
        }
        UnsupportedCommand | UnboundedState => matches!(r, Reason::Unsupported(_)),
        _ => false,
    }
}

#[test]
fn every_stream_is_refused_for_its_class_and_its_twin_is_accepted() {
    let l = layout();
    let mut streams = 0;
    for class in Class::ALL {
        let attack = attack::stream(class, &l, false);
        let twin = attack::stream(class, &l, true);
        if class.refusal() != Refusal::Scanner {
            assert!(
                attack.is_none() && twin.is_none(),
                "{class} is not a stream"
            );
            continue;
        }
        let (attack, twin) = (attack.unwrap(), twin.unwrap());
        streams += 1;
        match scan(&l, &attack) {
            Ok(()) => panic!("{class}: the attack was accepted"),
            Err(r) => assert!(refused_for_its_class(class, r), "{class}: refused for {r}"),
        }
        if let Err(r) = scan(&l, &twin) {
            panic!("{class}: the benign twin was refused: {r}");
        }
        assert_eq!(attack.engine, twin.engine, "{class}");
    }
    assert!(streams >= 30, "{streams} stream classes");
}

/// Every class has its own code, and the codes round-trip.
#[test]
fn class_codes_are_distinct() {
    for c in Class::ALL {
        assert_eq!(Class::from_code(c.code()), Some(c));
        assert_eq!(
            Class::ALL.iter().filter(|d| d.name() == c.name()).count(),
            1
        );
    }
    assert_eq!(Class::from_code(0), None);
    let bits = Class::ALL.iter().fold(0u64, |m, c| m | c.bit());
    assert_eq!(bits.count_ones() as usize, Class::ALL.len());
}

/// The attacker's pages: the low ones in the aperture, the edge ones
/// ending exactly at the hidden slice's end; the victim lies outside.
#[test]
fn the_layout_maps_its_pages_inside_and_aims_outside() {
    let l = layout();
    assert!(l.fits());
    for i in 0..attack::PAGES {
        assert!(l.inside(l.gm(i)), "page {i}");
        assert_eq!(l.index_of(l.gm(i) + 12), Some((i, 12)));
    }
    assert_eq!(l.gm(attack::PAGES - 1) + 4096, l.end());
    assert!(!l.inside(l.victim));
    // Without a victim named, the page below its aperture.
    let own = Layout::new(l.aperture, l.aperture_size, l.hidden, l.hidden_size, 4, 0);
    assert_eq!(own.victim, l.aperture - 4096);
}
