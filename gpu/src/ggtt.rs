//! The Gen8+ 64-bit GGTT page table entry, and the flush obligation that
//! follows every GGTT update.
//!
//! PTE layout (PRM Vol 5 "Global GTT": "GGTT PTE, Gen8+"; i915
//! `gen8_ggtt_pte_encode`): bit 0 present, bit 1 writable (ignored by the
//! GGTT, i915 sets it only in PPGTT), bits 4:3 and 7 PAT index (cacheability),
//! bits 38:12 physical page address; bits 63:39 and 11:8 are reserved and
//! must be zero. The guest writes the same format with a guest page number in
//! the address field; the monitor replaces the address, keeps the flag bits.

use crate::addr::{GuestPage, PhysFrame, PAGE_SHIFT};
use core::fmt;

/// Present bit.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Writable bit (kept, not interpreted).
pub const PTE_WRITABLE: u64 = 1 << 1;
/// PAT index bits (PWT bit 3, PCD bit 4, PAT bit 7).
pub const PTE_PAT_MASK: u64 = (1 << 3) | (1 << 4) | (1 << 7);
/// Physical page address field, bits 38:12.
pub const PTE_ADDR_MASK: u64 = ((1 << 39) - 1) & !((1 << PAGE_SHIFT) - 1);
/// Every bit a valid PTE may have set.
pub const PTE_DEFINED_BITS: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_PAT_MASK | PTE_ADDR_MASK;

/// A host GGTT entry: what the hardware (or the software model) walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct HostPte(u64);

impl HostPte {
    /// The "not present" entry.
    pub const INVALID: HostPte = HostPte(0);

    /// A present entry mapping `frame`, with the flag bits of `flags`
    /// (only present/writable/PAT bits are taken).
    pub const fn map(frame: PhysFrame, flags: PteFlags) -> Self {
        HostPte((frame.number() << PAGE_SHIFT) | flags.0 | PTE_PRESENT)
    }
    /// Reinterprets a raw value read back from a GGTT.
    pub const fn from_raw(raw: u64) -> Self {
        HostPte(raw)
    }
    /// The raw 64-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Whether the present bit is set.
    pub const fn is_present(self) -> bool {
        self.0 & PTE_PRESENT != 0
    }
    /// The mapped frame, if present.
    pub fn frame(self) -> Option<PhysFrame> {
        if self.is_present() {
            PhysFrame::new((self.0 & PTE_ADDR_MASK) >> PAGE_SHIFT).ok()
        } else {
            None
        }
    }
    /// The flag bits.
    pub const fn flags(self) -> PteFlags {
        PteFlags(self.0 & (PTE_WRITABLE | PTE_PAT_MASK))
    }
}

/// The non-address bits of a PTE the monitor carries from guest to host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PteFlags(u64);

impl PteFlags {
    /// No flags (write-back via PAT 0).
    pub const NONE: PteFlags = PteFlags(0);
    /// The raw flag bits.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// A guest GGTT entry, as written by the guest: its address field names a
/// [`GuestPage`], not a host frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GuestPte(u64);

/// Why a guest PTE value is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteError {
    /// Reserved bits (63:39 or 11:8) are set.
    ReservedBits { raw: u64 },
}

impl fmt::Display for PteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PteError::ReservedBits { raw } => {
                write!(f, "PTE {raw:#018x} sets reserved bits")
            }
        }
    }
}

impl GuestPte {
    /// The "not present" entry.
    pub const INVALID: GuestPte = GuestPte(0);

    /// Checked constructor from the raw value a guest wrote.
    pub const fn parse(raw: u64) -> Result<Self, PteError> {
        if raw & !PTE_DEFINED_BITS != 0 {
            Err(PteError::ReservedBits { raw })
        } else {
            Ok(GuestPte(raw))
        }
    }
    /// A present entry mapping guest page `page`.
    pub const fn map(page: GuestPage, flags: PteFlags) -> Self {
        GuestPte((page.number() << PAGE_SHIFT) | flags.0 | PTE_PRESENT)
    }
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Whether the present bit is set.
    pub const fn is_present(self) -> bool {
        self.0 & PTE_PRESENT != 0
    }
    /// The guest page named, if present.
    pub fn page(self) -> Option<GuestPage> {
        if self.is_present() {
            GuestPage::new((self.0 & PTE_ADDR_MASK) >> PAGE_SHIFT).ok()
        } else {
            None
        }
    }
    /// The flag bits.
    pub const fn flags(self) -> PteFlags {
        PteFlags(self.0 & (PTE_WRITABLE | PTE_PAT_MASK))
    }
}

/// Proof that GGTT entries changed and the GPU's GGTT TLB must be flushed
/// before the engines use them (x86_64 `MapperFlush` style). Pass it to
/// [`crate::backend::Backend::flush_ggtt`], or call [`GgttFlush::ignore`]
/// when a later flush covers it.
#[must_use = "a GGTT update is not visible to the GPU until flushed"]
#[derive(Debug)]
pub struct GgttFlush {
    _private: (),
}

impl GgttFlush {
    /// Made by backends when they write a PTE.
    pub(crate) const fn new() -> Self {
        GgttFlush { _private: () }
    }
    /// Drops the obligation on purpose (a later flush covers this update).
    pub fn ignore(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pte_round_trips_frame_and_flags() {
        let frame = PhysFrame::new(0x12345).unwrap();
        let pte = HostPte::map(frame, PteFlags(1 << 3));
        assert_eq!(pte.raw(), 0x1234_5000 | (1 << 3) | 1);
        assert_eq!(pte.frame(), Some(frame));
        assert_eq!(HostPte::INVALID.frame(), None);
    }

    #[test]
    fn guest_pte_rejects_reserved_bits() {
        assert!(GuestPte::parse(1 << 40 | 1).is_err());
        assert!(GuestPte::parse(1 << 9 | 1).is_err());
        let pte = GuestPte::parse(0x7000 | 3).unwrap();
        assert_eq!(pte.page(), Some(GuestPage::new(7).unwrap()));
        assert_eq!(pte.flags().raw(), 2);
    }
}
