//! Physical memory: the frame allocator, the monitor's page tables, and the
//! boot-time heap.

pub mod frames;
pub mod heap;
pub mod paging;
pub mod region;

pub use frames::{FrameAllocator, FRAME_SIZE};
