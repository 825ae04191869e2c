//! Address types: every kind of address the monitor handles is
//! its own newtype, with checked constructors and no arithmetic operators.
//!
//! * [`GuestGm`] / [`HostGm`]: a graphics-memory (GM) address as the guest
//!   sees it and as the hardware GGTT sees it. They are never mixed: the only
//!   way from one to the other is [`crate::partition::GmTranslation`].
//! * [`GuestGgttIndex`] / [`HostGgttIndex`]: an entry of the guest's view of
//!   the GGTT and of the real one (index = GM address >> 12).
//! * [`GuestPage`]: a page of the guest's own memory, as it names it in PTEs.
//! * [`PhysAddr`] / [`PhysFrame`]: a host physical address / 4 KiB frame.
//!
//! Ranges are [`GuestGmRange`] and [`HostGmRange`]: non-empty, inside the
//! 4 GiB GM space. A range a guest hands in becomes usable only as a
//! [`crate::partition::ClaimedRange`], whose single constructor validates it
//! against the vGPU's slices.

use core::fmt;

/// Size of a GTT page and of a host frame.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Size of the graphics address space a Gen8/Gen9 GGTT maps (4 GiB).
pub const GM_SIZE: u64 = 1 << 32;
/// Number of GGTT entries (one 8-byte PTE per 4 KiB of GM).
pub const GGTT_ENTRIES: u32 = (GM_SIZE >> PAGE_SHIFT) as u32;
/// Highest physical address bit a Gen9 PTE can hold (address field bits 38:12).
pub const PHYS_ADDR_BITS: u32 = 39;

/// Why an integer could not become an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// The value lies beyond the 4 GiB graphics address space.
    OutsideGm { raw: u64 },
    /// A GGTT index beyond [`GGTT_ENTRIES`].
    IndexOutOfRange { raw: u64 },
    /// A physical address beyond what a GGTT PTE can express.
    PhysOutOfRange { raw: u64 },
    /// A range of zero length.
    EmptyRange,
    /// A range whose end lies beyond the address space it belongs to.
    RangeOverflow { base: u64, len: u64 },
    /// A value that must be page aligned is not.
    Unaligned { raw: u64 },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::OutsideGm { raw } => {
                write!(f, "address {raw:#x} lies outside the 4 GiB graphics space")
            }
            AddrError::IndexOutOfRange { raw } => {
                write!(f, "GGTT index {raw:#x} is beyond the last entry")
            }
            AddrError::PhysOutOfRange { raw } => {
                write!(f, "physical address {raw:#x} exceeds 39 bits")
            }
            AddrError::EmptyRange => f.write_str("range has zero length"),
            AddrError::RangeOverflow { base, len } => {
                write!(f, "range {base:#x}+{len:#x} runs past the end of its space")
            }
            AddrError::Unaligned { raw } => write!(f, "{raw:#x} is not page aligned"),
        }
    }
}

macro_rules! gm_address {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// Checked constructor: the address must lie inside the 4 GiB GM space.
            pub const fn new(raw: u64) -> Result<Self, AddrError> {
                if raw < GM_SIZE {
                    Ok(Self(raw))
                } else {
                    Err(AddrError::OutsideGm { raw })
                }
            }
            /// The raw address value.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// Byte offset inside its 4 KiB page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
            /// The address `bytes` further on, if still inside GM.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) if v < GM_SIZE => Some(Self(v)),
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#010x}", self.0)
            }
        }
    };
}

gm_address!(
    /// A graphics memory address in the guest's view (what it writes into
    /// commands, ring START and its GGTT window).
    GuestGm
);
gm_address!(
    /// A graphics memory address in the host GGTT (what the engines use).
    HostGm
);

impl HostGm {
    /// The host GGTT entry that maps this address.
    pub const fn ggtt_index(self) -> HostGgttIndex {
        HostGgttIndex((self.0 >> PAGE_SHIFT) as u32)
    }
}

impl GuestGm {
    /// The guest GGTT entry that maps this address in the guest's view.
    pub const fn ggtt_index(self) -> GuestGgttIndex {
        GuestGgttIndex((self.0 >> PAGE_SHIFT) as u32)
    }
}

macro_rules! ggtt_index {
    ($(#[$meta:meta])* $name:ident, $gm:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u32);

        impl $name {
            /// Checked constructor: the index must be below [`GGTT_ENTRIES`].
            pub const fn new(raw: u64) -> Result<Self, AddrError> {
                if raw < GGTT_ENTRIES as u64 {
                    Ok(Self(raw as u32))
                } else {
                    Err(AddrError::IndexOutOfRange { raw })
                }
            }
            /// The raw index.
            pub const fn raw(self) -> u32 {
                self.0
            }
            /// The first GM address this entry maps.
            pub const fn gm(self) -> $gm {
                $gm((self.0 as u64) << PAGE_SHIFT)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "#{:#x}", self.0)
            }
        }
    };
}

ggtt_index!(
    /// An entry of the guest's view of the GGTT.
    GuestGgttIndex,
    GuestGm
);
ggtt_index!(
    /// An entry of the real (host) GGTT.
    HostGgttIndex,
    HostGm
);

/// A page of the guest's own memory, by page number, as the guest writes it
/// into a GGTT PTE. The monitor maps it to a [`PhysFrame`] through
/// [`crate::vgpu::GuestMemoryMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPage(u64);

impl GuestPage {
    /// Checked constructor: the page's address must fit a PTE's address field.
    pub const fn new(number: u64) -> Result<Self, AddrError> {
        if number < (1 << (PHYS_ADDR_BITS - PAGE_SHIFT)) {
            Ok(Self(number))
        } else {
            Err(AddrError::PhysOutOfRange {
                raw: number << PAGE_SHIFT,
            })
        }
    }
    /// The page number.
    pub const fn number(self) -> u64 {
        self.0
    }
}

/// A host physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Checked constructor: at most 39 bits, the reach of a Gen9 GGTT PTE.
    pub const fn new(raw: u64) -> Result<Self, AddrError> {
        if raw < (1 << PHYS_ADDR_BITS) {
            Ok(Self(raw))
        } else {
            Err(AddrError::PhysOutOfRange { raw })
        }
    }
    /// The raw address.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// The frame containing this address.
    pub const fn frame(self) -> PhysFrame {
        PhysFrame(self.0 >> PAGE_SHIFT)
    }
    /// The address `bytes` further on, if still addressable.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(v) if v < (1 << PHYS_ADDR_BITS) => Some(Self(v)),
            _ => None,
        }
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "phys {:#x}", self.0)
    }
}

/// A host physical 4 KiB frame, by frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysFrame(u64);

impl PhysFrame {
    /// Checked constructor: the frame's address must fit 39 bits.
    pub const fn new(number: u64) -> Result<Self, AddrError> {
        if number < (1 << (PHYS_ADDR_BITS - PAGE_SHIFT)) {
            Ok(Self(number))
        } else {
            Err(AddrError::PhysOutOfRange {
                raw: number << PAGE_SHIFT,
            })
        }
    }
    /// The frame number.
    pub const fn number(self) -> u64 {
        self.0
    }
    /// The frame's first byte.
    pub const fn start(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// The address `offset` bytes into this frame (`offset` < 4096).
    pub const fn at(self, offset: u64) -> PhysAddr {
        PhysAddr((self.0 << PAGE_SHIFT) | (offset & (PAGE_SIZE - 1)))
    }
}

macro_rules! gm_range {
    ($(#[$meta:meta])* $name:ident, $addr:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name {
            base: $addr,
            len: u64,
        }

        impl $name {
            /// Checked constructor: non-empty and ending inside GM.
            pub const fn new(base: $addr, len: u64) -> Result<Self, AddrError> {
                if len == 0 {
                    return Err(AddrError::EmptyRange);
                }
                match base.0.checked_add(len) {
                    Some(end) if end <= GM_SIZE => Ok(Self { base, len }),
                    _ => Err(AddrError::RangeOverflow { base: base.0, len }),
                }
            }
            /// Checked constructor for a page-aligned slice.
            pub const fn new_pages(base: $addr, len: u64) -> Result<Self, AddrError> {
                if !base.0.is_multiple_of(PAGE_SIZE) {
                    return Err(AddrError::Unaligned { raw: base.0 });
                }
                if !len.is_multiple_of(PAGE_SIZE) {
                    return Err(AddrError::Unaligned { raw: len });
                }
                Self::new(base, len)
            }
            /// First address.
            pub const fn base(self) -> $addr {
                self.base
            }
            /// Length in bytes (never zero).
            pub const fn len(self) -> u64 {
                self.len
            }
            /// Always false: ranges are never empty. Present for clippy's
            /// `len_without_is_empty`.
            pub const fn is_empty(self) -> bool {
                false
            }
            /// One past the last byte, as a raw value (may equal 4 GiB).
            pub const fn end_raw(self) -> u64 {
                self.base.0 + self.len
            }
            /// Whether `addr` lies inside.
            pub const fn contains(self, addr: $addr) -> bool {
                addr.0 >= self.base.0 && addr.0 < self.end_raw()
            }
            /// Whether `other` lies entirely inside.
            pub const fn contains_range(self, other: Self) -> bool {
                other.base.0 >= self.base.0 && other.end_raw() <= self.end_raw()
            }
            /// Whether the two ranges share at least one byte.
            pub const fn overlaps(self, other: Self) -> bool {
                self.base.0 < other.end_raw() && other.base.0 < self.end_raw()
            }
            /// Byte offset of `addr` from the base, if inside.
            pub const fn offset_of(self, addr: $addr) -> Option<u64> {
                if self.contains(addr) {
                    Some(addr.0 - self.base.0)
                } else {
                    None
                }
            }
            /// The address `offset` bytes in, if inside.
            pub const fn at(self, offset: u64) -> Option<$addr> {
                if offset < self.len {
                    Some($addr(self.base.0 + offset))
                } else {
                    None
                }
            }
            /// Number of 4 KiB pages the range touches.
            pub const fn page_count(self) -> u64 {
                let first = self.base.0 >> PAGE_SHIFT;
                let last = (self.end_raw() - 1) >> PAGE_SHIFT;
                last - first + 1
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "[{:#010x}, {:#010x})", self.base.0, self.end_raw())
            }
        }
    };
}

gm_range!(
    /// A non-empty range of guest GM.
    GuestGmRange,
    GuestGm
);
gm_range!(
    /// A non-empty range of host GM.
    HostGmRange,
    HostGm
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_reject_out_of_range_values() {
        assert_eq!(
            GuestGm::new(GM_SIZE),
            Err(AddrError::OutsideGm { raw: GM_SIZE })
        );
        assert!(HostGm::new(GM_SIZE - 1).is_ok());
        assert!(HostGgttIndex::new(u64::from(GGTT_ENTRIES)).is_err());
        assert!(PhysAddr::new(1 << 39).is_err());
        assert_eq!(
            HostGmRange::new(HostGm::new(GM_SIZE - 4096).unwrap(), 8192),
            Err(AddrError::RangeOverflow {
                base: GM_SIZE - 4096,
                len: 8192
            })
        );
        assert_eq!(
            GuestGmRange::new(GuestGm::new(0).unwrap(), 0),
            Err(AddrError::EmptyRange)
        );
        assert!(HostGmRange::new_pages(HostGm::new(4).unwrap(), 4096).is_err());
    }

    #[test]
    fn ranges_answer_containment_and_overlap() {
        let a = HostGmRange::new(HostGm::new(0x1000).unwrap(), 0x2000).unwrap();
        let b = HostGmRange::new(HostGm::new(0x2fff).unwrap(), 1).unwrap();
        let c = HostGmRange::new(HostGm::new(0x3000).unwrap(), 1).unwrap();
        assert!(a.overlaps(b));
        assert!(!a.overlaps(c));
        assert!(a.contains_range(b));
        assert_eq!(a.page_count(), 2);
        assert_eq!(b.page_count(), 1);
        assert_eq!(a.offset_of(HostGm::new(0x1800).unwrap()), Some(0x800));
        assert_eq!(HostGm::new(0x5123).unwrap().ggtt_index().raw(), 5);
    }
}
