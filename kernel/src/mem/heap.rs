//! The boot-time heap. Only set-up code allocates (PCI tables, instruction
//! decoding); hot paths use fixed-size structures.

use linked_list_allocator::LockedHeap;

/// Heap size; set-up needs far less.
const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands the heap area to the allocator. Call once.
pub fn init() {
    // SAFETY: called once during boot, before any allocation; the static
    // area is used by nothing else, so the allocator owns it from here on.
    unsafe {
        let area = core::ptr::addr_of_mut!(HEAP_AREA);
        ALLOCATOR.lock().init(area.cast::<u8>(), HEAP_SIZE);
    }
}

/// Bytes in use and total, for the report.
pub fn usage() -> (usize, usize) {
    let heap = ALLOCATOR.lock();
    (heap.used(), heap.size())
}
