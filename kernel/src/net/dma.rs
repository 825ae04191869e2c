//! Memory a NIC reaches by DMA: a [`Region`] of the monitor's frames. x86
//! DMA is cache-coherent, so the write-back mapping of RAM is right for
//! descriptor rings and packet buffers alike, and the identity map makes
//! the CPU's address the bus address.

pub use crate::mem::region::Region as DmaRegion;
