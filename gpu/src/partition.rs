//! GGTT ownership and partitioning (ARCHITECTURE.md "Graphics memory and its
//! partition"), and the one guest-GM <-> host-GM translation.
//!
//! The 4 GiB graphics address space is the aperture (CPU-mappable,
//! `[0, aperture_size)`) followed by hidden GM (`[aperture_size, 4 GiB)`).
//! The monitor owns the whole GGTT. [`PartitionAllocator`] hands out:
//! the monitor's own slice (at the bottom of both regions, like the GVT-g
//! host's share) and, per vGPU, one aperture slice, one hidden slice and a
//! range of fence registers, sized by a [`VgpuType`].
//!
//! Decisions:
//! * The aperture size is a parameter of [`GmLayout`]: real Skylake boards
//!   expose 256 MiB or 512 MiB (BIOS "aperture size"); the default is
//!   512 MiB, which fits the monitor's 128 MiB plus six 64 MiB vGPUs.
//! * Allocation is first-fit over at most [`MAX_VGPUS`] slots, no heap.
//! * [`GmTranslation`] is the only code that turns a guest GM address into a
//!   host one. Everything guest-supplied (GGTT indices, ring START, fence
//!   ranges, and the scanner's command operands) goes through
//!   [`GmTranslation::claim`] / [`GmTranslation::g2h`]. A guest view may
//!   differ from the host slices after migration (Dynamic Graphics Address
//!   Remapping): then PVINFO shows the guest view and only this type knows
//!   both.

use crate::addr::{
    AddrError, GuestGgttIndex, GuestGm, GuestGmRange, HostGgttIndex, HostGm, HostGmRange, GM_SIZE,
    PAGE_SIZE,
};
use crate::regs::fence;
use core::fmt;

const MIB: u64 = 1 << 20;

/// Most vGPUs one partition allocator serves.
pub const MAX_VGPUS: usize = 8;

/// Aperture/hidden split of the 4 GiB GM space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GmLayout {
    aperture_size: u64,
}

impl GmLayout {
    /// Default layout: 512 MiB aperture.
    pub const DEFAULT: GmLayout = GmLayout {
        aperture_size: 512 * MIB,
    };

    /// A layout with the given aperture size: a power of two from 64 MiB to
    /// 2 GiB (the range of Gen9 MSAC aperture sizes).
    pub const fn new(aperture_size: u64) -> Result<Self, PartitionError> {
        if aperture_size.is_power_of_two()
            && aperture_size >= 64 * MIB
            && aperture_size <= 2048 * MIB
        {
            Ok(GmLayout { aperture_size })
        } else {
            Err(PartitionError::BadAperture { aperture_size })
        }
    }
    /// Aperture size in bytes.
    pub const fn aperture_size(self) -> u64 {
        self.aperture_size
    }
    /// The aperture region.
    pub fn aperture(self) -> HostGmRange {
        region(0, self.aperture_size)
    }
    /// The hidden region.
    pub fn hidden(self) -> HostGmRange {
        region(self.aperture_size, GM_SIZE - self.aperture_size)
    }
}

fn region(base: u64, len: u64) -> HostGmRange {
    // Both callers pass values validated by GmLayout::new.
    HostGm::new(base)
        .and_then(|b| HostGmRange::new_pages(b, len))
        .unwrap_or_else(|_| unreachable_layout())
}

#[cold]
fn unreachable_layout() -> ! {
    panic!("GmLayout invariant broken: region outside GM")
}

/// The resources a vGPU type asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Aperture (mappable) GM in bytes.
    pub aperture: u64,
    /// Hidden (non-mappable) GM in bytes.
    pub hidden: u64,
    /// Fence registers.
    pub fences: u32,
}

/// Named vGPU sizes, after GVT-g's types (Linux `drivers/gpu/drm/i915/gvt/vgpu.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VgpuType {
    /// 64 MiB aperture + 384 MiB hidden, 4 fences (GVT-g "_8").
    Small = 1,
    /// 128 MiB + 512 MiB, 4 fences (GVT-g "_4").
    Medium = 2,
    /// 256 MiB + 1024 MiB, 4 fences (GVT-g "_2").
    Large = 3,
    /// 512 MiB + 2048 MiB, 4 fences (GVT-g "_1").
    Huge = 4,
}

impl VgpuType {
    /// Every type, smallest first.
    pub const ALL: [VgpuType; 4] = [
        VgpuType::Small,
        VgpuType::Medium,
        VgpuType::Large,
        VgpuType::Huge,
    ];
    /// What the type asks for.
    pub const fn resources(self) -> Resources {
        let (aperture, hidden) = match self {
            VgpuType::Small => (64, 384),
            VgpuType::Medium => (128, 512),
            VgpuType::Large => (256, 1024),
            VgpuType::Huge => (512, 2048),
        };
        Resources {
            aperture: aperture * MIB,
            hidden: hidden * MIB,
            fences: 4,
        }
    }
    /// Name as given on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            VgpuType::Small => "small",
            VgpuType::Medium => "medium",
            VgpuType::Large => "large",
            VgpuType::Huge => "huge",
        }
    }
    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<VgpuType> {
        VgpuType::ALL.into_iter().find(|t| t.name() == name)
    }
    /// Wire code (save/restore).
    pub const fn code(self) -> u8 {
        self as u8
    }
    /// From a wire code.
    pub const fn from_code(code: u8) -> Option<VgpuType> {
        match code {
            1 => Some(VgpuType::Small),
            2 => Some(VgpuType::Medium),
            3 => Some(VgpuType::Large),
            4 => Some(VgpuType::Huge),
            _ => None,
        }
    }
}

impl fmt::Display for VgpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.resources();
        write!(
            f,
            "{} ({} MiB aperture + {} MiB hidden, {} fences)",
            self.name(),
            r.aperture / MIB,
            r.hidden / MIB,
            r.fences
        )
    }
}

/// A contiguous range of host fence registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FenceRange {
    first: u32,
    count: u32,
}

impl FenceRange {
    /// First host fence register.
    pub const fn first(self) -> u32 {
        self.first
    }
    /// Number of fences.
    pub const fn count(self) -> u32 {
        self.count
    }
    /// The host fence backing guest fence `guest_index`, if owned.
    pub const fn host_fence(self, guest_index: u32) -> Option<u32> {
        if guest_index < self.count {
            Some(self.first + guest_index)
        } else {
            None
        }
    }
    const fn overlaps(self, other: FenceRange) -> bool {
        self.first < other.first + other.count && other.first < self.first + self.count
    }
}

/// Identifies one vGPU slot of the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VgpuId(u8);

impl VgpuId {
    /// Checked constructor: below [`MAX_VGPUS`].
    pub const fn new(raw: u8) -> Option<Self> {
        if (raw as usize) < MAX_VGPUS {
            Some(VgpuId(raw))
        } else {
            None
        }
    }
    /// Slot number.
    pub const fn raw(self) -> u8 {
        self.0
    }
}

impl fmt::Display for VgpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vgpu{}", self.0)
    }
}

/// The host resources of one vGPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    id: VgpuId,
    vgpu_type: VgpuType,
    aperture: HostGmRange,
    hidden: HostGmRange,
    fences: FenceRange,
}

impl Partition {
    /// Slot id.
    pub const fn id(&self) -> VgpuId {
        self.id
    }
    /// Its type.
    pub const fn vgpu_type(&self) -> VgpuType {
        self.vgpu_type
    }
    /// Host aperture slice.
    pub const fn aperture(&self) -> HostGmRange {
        self.aperture
    }
    /// Host hidden slice.
    pub const fn hidden(&self) -> HostGmRange {
        self.hidden
    }
    /// Host fence registers.
    pub const fn fences(&self) -> FenceRange {
        self.fences
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: aperture {} hidden {} fences {}..{}",
            self.id,
            self.vgpu_type.name(),
            self.aperture,
            self.hidden,
            self.fences.first,
            self.fences.first + self.fences.count
        )
    }
}

/// Errors of the partition allocator. All are the caller's (monitor
/// configuration) problem, none is a guest fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionError {
    /// Aperture size not a power of two in 64 MiB..=2 GiB.
    BadAperture { aperture_size: u64 },
    /// The monitor's reservation does not fit the layout.
    ReservationTooLarge,
    /// All vGPU slots are in use.
    NoFreeSlot,
    /// No aperture gap large enough.
    ApertureExhausted { requested: u64 },
    /// No hidden-GM gap large enough.
    HiddenExhausted { requested: u64 },
    /// Not enough contiguous fence registers.
    FencesExhausted { requested: u32 },
    /// `free` of a slot that holds no vGPU.
    NotAllocated { id: VgpuId },
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionError::BadAperture { aperture_size } => write!(
                f,
                "aperture size {aperture_size:#x} is not a power of two between 64 MiB and 2 GiB"
            ),
            PartitionError::ReservationTooLarge => {
                f.write_str("the monitor's GM/fence reservation does not fit the layout")
            }
            PartitionError::NoFreeSlot => write!(f, "all {MAX_VGPUS} vGPU slots are in use"),
            PartitionError::ApertureExhausted { requested } => {
                write!(f, "no free aperture range of {} MiB", requested / MIB)
            }
            PartitionError::HiddenExhausted { requested } => {
                write!(f, "no free hidden GM range of {} MiB", requested / MIB)
            }
            PartitionError::FencesExhausted { requested } => {
                write!(f, "no {requested} contiguous free fence registers")
            }
            PartitionError::NotAllocated { id } => write!(f, "{id} is not allocated"),
        }
    }
}

/// The monitor's own share: the bottom of the aperture, the bottom of hidden
/// GM, and the first fences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorSlice {
    /// Monitor aperture slice.
    pub aperture: HostGmRange,
    /// Monitor hidden slice (shadow rings and batches, contexts).
    pub hidden: HostGmRange,
    /// Monitor fences.
    pub fences: FenceRange,
}

/// Owns the host GM and fence space and hands out [`Partition`]s.
#[derive(Clone, Debug)]
pub struct PartitionAllocator {
    layout: GmLayout,
    monitor: MonitorSlice,
    slots: [Option<Partition>; MAX_VGPUS],
}

impl PartitionAllocator {
    /// GVT-g's host share: 128 MiB aperture, 384 MiB hidden, 4 fences.
    pub const GVT_MONITOR_SHARE: Resources = Resources {
        aperture: 128 * MIB,
        hidden: 384 * MIB,
        fences: 4,
    };

    /// An allocator over `layout` that keeps `monitor` for the monitor.
    pub fn new(layout: GmLayout, monitor: Resources) -> Result<Self, PartitionError> {
        let ap = layout.aperture();
        let hid = layout.hidden();
        if monitor.aperture == 0
            || monitor.hidden == 0
            || monitor.aperture >= ap.len()
            || monitor.hidden >= hid.len()
            || monitor.fences >= fence::COUNT
            || !monitor.aperture.is_multiple_of(PAGE_SIZE)
            || !monitor.hidden.is_multiple_of(PAGE_SIZE)
        {
            return Err(PartitionError::ReservationTooLarge);
        }
        let monitor = MonitorSlice {
            aperture: HostGmRange::new_pages(ap.base(), monitor.aperture)
                .map_err(|_| PartitionError::ReservationTooLarge)?,
            hidden: HostGmRange::new_pages(hid.base(), monitor.hidden)
                .map_err(|_| PartitionError::ReservationTooLarge)?,
            fences: FenceRange {
                first: 0,
                count: monitor.fences,
            },
        };
        Ok(PartitionAllocator {
            layout,
            monitor,
            slots: [None; MAX_VGPUS],
        })
    }

    /// The layout.
    pub const fn layout(&self) -> GmLayout {
        self.layout
    }
    /// The monitor's own slice.
    pub const fn monitor(&self) -> MonitorSlice {
        self.monitor
    }
    /// Every live partition.
    pub fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.slots.iter().flatten()
    }
    /// The partition in slot `id`.
    pub fn get(&self, id: VgpuId) -> Option<&Partition> {
        self.slots[usize::from(id.0)].as_ref()
    }

    /// Allocates a partition for a vGPU of type `vgpu_type`.
    pub fn allocate(&mut self, vgpu_type: VgpuType) -> Result<Partition, PartitionError> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(PartitionError::NoFreeSlot)?;
        let want = vgpu_type.resources();
        let aperture = self
            .find_gm(
                self.layout.aperture(),
                self.monitor.aperture,
                want.aperture,
                |p| p.aperture,
            )
            .ok_or(PartitionError::ApertureExhausted {
                requested: want.aperture,
            })?;
        let hidden = self
            .find_gm(
                self.layout.hidden(),
                self.monitor.hidden,
                want.hidden,
                |p| p.hidden,
            )
            .ok_or(PartitionError::HiddenExhausted {
                requested: want.hidden,
            })?;
        let fences = self
            .find_fences(want.fences)
            .ok_or(PartitionError::FencesExhausted {
                requested: want.fences,
            })?;
        let partition = Partition {
            id: VgpuId(slot as u8),
            vgpu_type,
            aperture,
            hidden,
            fences,
        };
        self.slots[slot] = Some(partition);
        Ok(partition)
    }

    /// Returns a partition's resources to the pool.
    pub fn free(&mut self, id: VgpuId) -> Result<Partition, PartitionError> {
        self.slots[usize::from(id.0)]
            .take()
            .ok_or(PartitionError::NotAllocated { id })
    }

    /// First-fit: candidate bases are the region start and the end of every
    /// used range; the first candidate whose range is free wins.
    fn find_gm(
        &self,
        region: HostGmRange,
        reserved: HostGmRange,
        len: u64,
        pick: fn(&Partition) -> HostGmRange,
    ) -> Option<HostGmRange> {
        let used = || core::iter::once(reserved).chain(self.partitions().map(pick));
        let candidates = core::iter::once(region.base().raw()).chain(used().map(|r| r.end_raw()));
        let mut best: Option<HostGmRange> = None;
        for base in candidates {
            let Ok(base) = HostGm::new(base) else {
                continue;
            };
            let Ok(range) = HostGmRange::new_pages(base, len) else {
                continue;
            };
            if !region.contains_range(range) || used().any(|u| u.overlaps(range)) {
                continue;
            }
            if best.is_none_or(|b| range.base() < b.base()) {
                best = Some(range);
            }
        }
        best
    }

    fn find_fences(&self, count: u32) -> Option<FenceRange> {
        let used =
            || core::iter::once(self.monitor.fences).chain(self.partitions().map(|p| p.fences));
        (0..=fence::COUNT.checked_sub(count)?)
            .map(|first| FenceRange { first, count })
            .find(|cand| !used().any(|u| u.overlaps(*cand)))
    }
}

/// What the guest believes its slices are (PVINFO's view). After migration
/// this is the source's host layout, kept across the move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestView {
    /// Guest-visible aperture slice.
    pub aperture: GuestGmRange,
    /// Guest-visible hidden slice.
    pub hidden: GuestGmRange,
    /// Number of fences the guest may use (guest fences `0..count`).
    pub fences: u32,
}

/// Why a guest GM address or range is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// The raw value is not even a GM address / a valid range.
    Malformed(AddrError),
    /// The range is not entirely inside one of the guest's slices.
    OutsideSlices { base: u64, len: u64 },
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TranslateError::Malformed(e) => write!(f, "malformed guest GM range: {e}"),
            TranslateError::OutsideSlices { base, len } => write!(
                f,
                "guest GM range {base:#x}+{len:#x} is not inside the vGPU's aperture or hidden slice"
            ),
        }
    }
}

/// Why a guest view cannot be put on a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewError {
    /// Slice sizes or fence count of the view differ from the partition's.
    SizeMismatch,
    /// The guest's aperture and hidden slices overlap.
    Overlapping,
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViewError::SizeMismatch => {
                f.write_str("guest view's slice sizes differ from the partition's")
            }
            ViewError::Overlapping => {
                f.write_str("guest view's aperture and hidden slices overlap")
            }
        }
    }
}

/// A guest-supplied GM range that lies inside one of the vGPU's slices,
/// with its host translation. Only [`GmTranslation::claim`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimedRange {
    guest: GuestGmRange,
    host: HostGmRange,
}

impl ClaimedRange {
    /// The range as the guest named it.
    pub const fn guest(self) -> GuestGmRange {
        self.guest
    }
    /// Where it is in host GM.
    pub const fn host(self) -> HostGmRange {
        self.host
    }
}

/// The one guest-GM <-> host-GM translation of a vGPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GmTranslation {
    view: GuestView,
    host_aperture: HostGmRange,
    host_hidden: HostGmRange,
}

impl GmTranslation {
    /// The view a freshly created vGPU gets: its host slices, as they are
    /// (what GVT-g's ballooning shows).
    pub fn identity(partition: &Partition) -> Self {
        let view = GuestView {
            aperture: guest_range_of(partition.aperture),
            hidden: guest_range_of(partition.hidden),
            fences: partition.fences.count,
        };
        GmTranslation {
            view,
            host_aperture: partition.aperture,
            host_hidden: partition.hidden,
        }
    }

    /// A translation that keeps an existing guest view on (possibly
    /// different) host slices: Dynamic Graphics Address Remapping.
    pub fn with_view(partition: &Partition, view: GuestView) -> Result<Self, ViewError> {
        if view.aperture.len() != partition.aperture.len()
            || view.hidden.len() != partition.hidden.len()
            || view.fences != partition.fences.count
        {
            return Err(ViewError::SizeMismatch);
        }
        if view.aperture.overlaps(view.hidden) {
            return Err(ViewError::Overlapping);
        }
        Ok(GmTranslation {
            view,
            host_aperture: partition.aperture,
            host_hidden: partition.hidden,
        })
    }

    /// The guest's view (what PVINFO shows).
    pub const fn guest_view(&self) -> GuestView {
        self.view
    }
    /// Host aperture slice.
    pub const fn host_aperture(&self) -> HostGmRange {
        self.host_aperture
    }
    /// Host hidden slice.
    pub const fn host_hidden(&self) -> HostGmRange {
        self.host_hidden
    }

    /// Validates a guest-supplied range (raw base and length) against the
    /// guest's slices and translates it. The whole range must lie inside one
    /// slice.
    pub fn claim(&self, base: u64, len: u64) -> Result<ClaimedRange, TranslateError> {
        let base_gm = GuestGm::new(base).map_err(TranslateError::Malformed)?;
        let guest = GuestGmRange::new(base_gm, len).map_err(TranslateError::Malformed)?;
        let pairs = [
            (self.view.aperture, self.host_aperture),
            (self.view.hidden, self.host_hidden),
        ];
        for (g, h) in pairs {
            if g.contains_range(guest) {
                let off = base - g.base().raw();
                let host_base = h
                    .at(off)
                    .ok_or(TranslateError::OutsideSlices { base, len })?;
                let host = HostGmRange::new(host_base, len).map_err(TranslateError::Malformed)?;
                return Ok(ClaimedRange { guest, host });
            }
        }
        Err(TranslateError::OutsideSlices { base, len })
    }

    /// Translates a guest range to host GM.
    pub fn g2h(&self, range: GuestGmRange) -> Result<HostGmRange, TranslateError> {
        self.claim(range.base().raw(), range.len())
            .map(ClaimedRange::host)
    }

    /// Translates one guest GM address.
    pub fn g2h_addr(&self, addr: GuestGm) -> Result<HostGm, TranslateError> {
        self.claim(addr.raw(), 1).map(|c| c.host().base())
    }

    /// Translates a guest GGTT index (the entry mapping guest page `index`).
    pub fn g2h_index(&self, index: GuestGgttIndex) -> Result<HostGgttIndex, TranslateError> {
        self.g2h_addr(index.gm()).map(HostGm::ggtt_index)
    }

    /// The guest address that maps to `addr`, if it lies in the vGPU's
    /// host slices.
    pub fn h2g(&self, addr: HostGm) -> Option<GuestGm> {
        let pairs = [
            (self.view.aperture, self.host_aperture),
            (self.view.hidden, self.host_hidden),
        ];
        pairs
            .into_iter()
            .find_map(|(g, h)| h.offset_of(addr).and_then(|off| g.at(off)))
    }

    /// Every guest GGTT index the vGPU owns, aperture first.
    pub fn guest_indices(&self) -> impl Iterator<Item = GuestGgttIndex> {
        let ranges = [self.view.aperture, self.view.hidden];
        ranges.into_iter().flat_map(|r| {
            let first = r.base().ggtt_index().raw();
            (first..first + r.page_count() as u32)
                .filter_map(|i| GuestGgttIndex::new(u64::from(i)).ok())
        })
    }
}

fn guest_range_of(host: HostGmRange) -> GuestGmRange {
    // Same numbers in the other space: valid by construction of `host`.
    GuestGm::new(host.base().raw())
        .and_then(|b| GuestGmRange::new(b, host.len()))
        .unwrap_or_else(|_| unreachable_layout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allocator() -> PartitionAllocator {
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap()
    }

    #[test]
    fn gvt_types_fill_then_report_exhaustion() {
        let mut a = allocator();
        // 512 MiB aperture - 128 MiB monitor = 384 MiB: three 128 MiB vGPUs.
        for _ in 0..3 {
            a.allocate(VgpuType::Medium).unwrap();
        }
        assert_eq!(
            a.allocate(VgpuType::Medium),
            Err(PartitionError::ApertureExhausted {
                requested: 128 * MIB
            })
        );
        let mut b = allocator();
        assert_eq!(
            b.allocate(VgpuType::Huge),
            Err(PartitionError::ApertureExhausted {
                requested: 512 * MIB
            })
        );
        let mut c = PartitionAllocator::new(
            GmLayout::new(2048 * MIB).unwrap(),
            PartitionAllocator::GVT_MONITOR_SHARE,
        )
        .unwrap();
        // hidden: 2 GiB - 384 MiB monitor = 1664 MiB < 2048 MiB.
        assert_eq!(
            c.allocate(VgpuType::Huge),
            Err(PartitionError::HiddenExhausted {
                requested: 2048 * MIB
            })
        );
        let mut d = PartitionAllocator::new(
            GmLayout::new(1024 * MIB).unwrap(),
            PartitionAllocator::GVT_MONITOR_SHARE,
        )
        .unwrap();
        d.allocate(VgpuType::Huge).unwrap();
        assert_eq!(
            d.allocate(VgpuType::Large),
            Err(PartitionError::HiddenExhausted {
                requested: 1024 * MIB
            })
        );
    }

    #[test]
    fn fences_run_out_with_a_typed_error() {
        let mut a = PartitionAllocator::new(
            GmLayout::new(2048 * MIB).unwrap(),
            Resources {
                aperture: 4096,
                hidden: 4096,
                fences: 28,
            },
        )
        .unwrap();
        a.allocate(VgpuType::Small).unwrap();
        assert_eq!(
            a.allocate(VgpuType::Small),
            Err(PartitionError::FencesExhausted { requested: 4 })
        );
    }

    #[test]
    fn free_and_reuse_do_not_leak() {
        let mut a = allocator();
        let first: [Partition; 3] = core::array::from_fn(|_| a.allocate(VgpuType::Medium).unwrap());
        for _ in 0..100 {
            a.free(first[1].id()).unwrap();
            let again = a.allocate(VgpuType::Medium).unwrap();
            assert_eq!(again, first[1]);
        }
        a.free(first[0].id()).unwrap();
        assert_eq!(
            a.free(first[0].id()),
            Err(PartitionError::NotAllocated { id: first[0].id() })
        );
    }

    #[test]
    fn claim_rejects_ranges_straddling_or_outside_slices() {
        let mut a = allocator();
        let p = a.allocate(VgpuType::Small).unwrap();
        let t = GmTranslation::identity(&p);
        let ap = p.aperture();
        assert!(t.claim(ap.base().raw(), ap.len()).is_ok());
        assert!(t.claim(ap.base().raw(), ap.len() + 1).is_err());
        assert!(t.claim(ap.base().raw() - 1, 2).is_err());
        assert!(t.claim(0, 4).is_err(), "monitor slice is not the guest's");
        assert!(matches!(
            t.claim(GM_SIZE, 4),
            Err(TranslateError::Malformed(_))
        ));
        assert!(matches!(
            t.claim(ap.base().raw(), 0),
            Err(TranslateError::Malformed(_))
        ));
    }

    #[test]
    fn with_view_remaps_to_other_slices() {
        let mut a = allocator();
        let src = a.allocate(VgpuType::Small).unwrap();
        let dst = a.allocate(VgpuType::Small).unwrap();
        let view = GmTranslation::identity(&src).guest_view();
        let t = GmTranslation::with_view(&dst, view).unwrap();
        let g = src.hidden().base().raw() + 0x1234;
        let h = t.g2h_addr(GuestGm::new(g).unwrap()).unwrap();
        assert_eq!(h.raw(), dst.hidden().base().raw() + 0x1234);
        assert_eq!(t.h2g(h), Some(GuestGm::new(g).unwrap()));
        let big = a.allocate(VgpuType::Medium).unwrap();
        assert_eq!(
            GmTranslation::with_view(&big, view),
            Err(ViewError::SizeMismatch)
        );
    }

    fn all_used(
        a: &PartitionAllocator,
    ) -> impl Iterator<Item = (Option<VgpuId>, HostGmRange)> + '_ {
        let m = a.monitor();
        [(None, m.aperture), (None, m.hidden)].into_iter().chain(
            a.partitions()
                .flat_map(|p| [(Some(p.id()), p.aperture()), (Some(p.id()), p.hidden())]),
        )
    }

    proptest! {
        #[test]
        fn slices_never_overlap(ops in proptest::collection::vec((0u8..4, 0u8..8, proptest::bool::ANY), 1..60),
                                aperture_log in 8u32..=11) {
            let layout = GmLayout::new(MIB << aperture_log).unwrap();
            let mut a = PartitionAllocator::new(layout, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
            for (ty, slot, alloc) in ops {
                if alloc {
                    let _ = a.allocate(VgpuType::ALL[usize::from(ty)]);
                } else {
                    let _ = a.free(VgpuId::new(slot).unwrap());
                }
                let used: Vec<_> = all_used(&a).collect();
                for (i, (_, x)) in used.iter().enumerate() {
                    for (_, y) in &used[i + 1..] {
                        prop_assert!(!x.overlaps(*y), "{x} overlaps {y}");
                    }
                }
                for p in a.partitions() {
                    prop_assert!(layout.aperture().contains_range(p.aperture()));
                    prop_assert!(layout.hidden().contains_range(p.hidden()));
                    prop_assert_eq!(p.aperture().len(), p.vgpu_type().resources().aperture);
                    for q in a.partitions().filter(|q| q.id() != p.id()) {
                        prop_assert!(!p.fences().overlaps(q.fences()));
                    }
                    prop_assert!(!p.fences().overlaps(a.monitor().fences));
                }
            }
        }

        #[test]
        fn every_guest_address_translates_into_its_own_slices_only(
            types in proptest::collection::vec(0usize..2, 1..5),
            probes in proptest::collection::vec((0u64..GM_SIZE, 1u64..0x10000), 1..200),
            remap in proptest::bool::ANY,
        ) {
            let mut a = allocator();
            let parts: Vec<Partition> = types.iter().filter_map(|&t| a.allocate(VgpuType::ALL[t]).ok()).collect();
            for p in &parts {
                // Optionally put the guest's view on another, same-typed partition.
                let t = if remap {
                    match parts.iter().find(|q| q.id() != p.id() && q.vgpu_type() == p.vgpu_type()) {
                        Some(q) => GmTranslation::with_view(q, GmTranslation::identity(p).guest_view()).unwrap(),
                        None => GmTranslation::identity(p),
                    }
                } else {
                    GmTranslation::identity(p)
                };
                for &(base, len) in &probes {
                    if let Ok(c) = t.claim(base, len) {
                        let h = c.host();
                        prop_assert!(t.host_aperture().contains_range(h) || t.host_hidden().contains_range(h));
                        for (owner, used) in all_used(&a) {
                            let mine = used == t.host_aperture() || used == t.host_hidden();
                            if !mine {
                                prop_assert!(!used.overlaps(h), "{h} hits {owner:?}'s {used}");
                            }
                        }
                        prop_assert_eq!(t.h2g(h.base()).map(GuestGm::raw), Some(base));
                    } else {
                        let v = t.guest_view();
                        let inside = GuestGm::new(base).ok().and_then(|b| GuestGmRange::new(b, len).ok())
                            .is_some_and(|r| v.aperture.contains_range(r) || v.hidden.contains_range(r));
                        prop_assert!(!inside);
                    }
                }
            }
        }
    }
}
