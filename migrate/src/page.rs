//! Pages and the traits through which the migration reads the source vGPU
//! and writes the destination one.

use core::fmt;

/// Size of one migrated page: the GGTT maps 4 KiB pages.
pub const PAGE_SIZE: usize = 4096;

/// One page's content.
pub type PageBuf = [u8; PAGE_SIZE];

/// A guest page number (guest frame number of a page the vGPU references).
///
/// Not an address: no arithmetic is offered, so a guest page cannot be
/// confused with a host frame or a GGTT index by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPage(u64);

impl GuestPage {
    /// The largest representable page number. `u64::MAX` is reserved as the
    /// empty marker of the dirty table.
    pub const MAX: u64 = u64::MAX - 1;

    /// A guest page number, or `None` for the reserved value `u64::MAX`.
    pub const fn new(gfn: u64) -> Option<Self> {
        if gfn > Self::MAX {
            None
        } else {
            Some(Self(gfn))
        }
    }

    /// The raw guest frame number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for GuestPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gfn {:#x}", self.0)
    }
}

/// A contiguous run of guest pages: the migrated guest's own range, which
/// the destination checks every page record against before its
/// [`PageSink`] sees the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRange {
    first: u64,
    count: u64,
}

impl PageRange {
    /// `count` pages from `first`, or `None` when the run would reach the
    /// reserved page number (its end, one past the last page, is at most
    /// `u64::MAX`).
    pub const fn new(first: GuestPage, count: u64) -> Option<Self> {
        match first.0.checked_add(count) {
            Some(_) => Some(Self {
                first: first.0,
                count,
            }),
            None => None,
        }
    }

    /// Number of pages.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// Whether `page` lies in the run.
    pub const fn contains(&self, page: GuestPage) -> bool {
        page.0 >= self.first && page.0 - self.first < self.count
    }
}

impl fmt::Display for PageRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gfn {:#x}+{:#x}", self.first, self.count)
    }
}

/// Failure of the local memory provider (the kernel's GGTT mapping or the
/// simulator's memory). Always a local fault, never the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The page is not mapped (any more) in the provider.
    NotMapped(GuestPage),
    /// A device or CPU state blob read went past its end.
    StateOutOfRange {
        /// Requested offset.
        offset: usize,
        /// Requested length.
        len: usize,
    },
    /// The destination refused to store the page (out of memory, bad gfn).
    Refused(GuestPage),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMapped(p) => write!(f, "local memory provider: {p} is not mapped"),
            Self::StateOutOfRange { offset, len } => write!(
                f,
                "local memory provider: state read of {len} bytes at offset {offset} is out of range"
            ),
            Self::Refused(p) => write!(f, "local memory provider refused to store {p}"),
        }
    }
}

/// Copies `out.len()` bytes of a state blob starting at `offset`: the
/// bounds-checked read every [`PageSource`] over an in-memory blob needs.
pub fn read_state_chunk(blob: &[u8], offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
    let chunk = offset
        .checked_add(out.len())
        .and_then(|end| blob.get(offset..end))
        .ok_or(MemoryError::StateOutOfRange {
            offset,
            len: out.len(),
        })?;
    out.copy_from_slice(chunk);
    Ok(())
}

/// The source side's view of the vGPU being migrated.
///
/// The kernel implements it over GPU memory reached through the host GGTT
/// (pages) and the `gpu` crate's save function (device state blob); the
/// simulator and the tests implement it over plain memory.
pub trait PageSource {
    /// Number of pages the vGPU references (the migrated set).
    fn page_count(&self) -> usize;
    /// The `index`-th referenced page, `index < page_count()`. The order must
    /// stay the same during one migration.
    fn page_at(&self, index: usize) -> GuestPage;
    /// Copy the current content of `page` into `out`.
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError>;
    /// Length of the device-state blob (called once the vGPU is stopped).
    fn device_state_len(&self) -> usize;
    /// Copy `out.len()` bytes of the device-state blob starting at `offset`.
    fn read_device_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError>;
    /// Length of the CPU (guest register) state blob.
    fn cpu_state_len(&self) -> usize;
    /// Copy `out.len()` bytes of the CPU state blob starting at `offset`.
    fn read_cpu_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError>;
}

/// The destination side's memory and state store.
///
/// The receiver checks the stream before it calls the sink: every page is
/// in the guest's [`PageRange`], every state chunk continues its blob within
/// the configured size. So an error from the sink is this side's own fault
/// (out of memory, a mapping bug), never the peer's: `read_page` must
/// succeed for every page in the range, written or not (a page never
/// written reads as whatever the fresh frame holds).
pub trait PageSink {
    /// Store the content of `page`.
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError>;
    /// Read back a stored page (the base a delta record applies to).
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError>;
    /// Store a chunk of the device-state blob; `total` is the blob's length.
    fn write_device_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError>;
    /// Store a chunk of the CPU state blob; `total` is the blob's length.
    fn write_cpu_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError>;
}
