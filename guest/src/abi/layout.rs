//! Where things are in a ring-3 guest's address space (see the module
//! above). Plain constants without dependencies: the images' build script
//! includes this file to write their linker script.

/// Bytes in a page.
pub const PAGE: u64 = 4096;
/// Start of the slot that holds the guest's address space (PML4 entry 128).
pub const USER_BASE: u64 = 0x0000_4000_0000_0000;
/// Bytes of that slot.
pub const USER_SLOT_SIZE: u64 = 1 << 39;
/// Guest page number of the first RAM page.
pub const RAM_FIRST_PAGE: u64 = 0x100;
/// Where the virtual BAR0 appears (unmapped: every access traps).
pub const BAR0_VA: u64 = USER_BASE + (1 << 38);
/// Bytes of the virtual BAR0: registers, then the GGTT window at +8 MiB.
pub const BAR0_SIZE: u64 = 16 << 20;
/// Where the guest's aperture window (its virtual BAR2) appears: page `i`
/// of it is page `i` of the aperture slice PVINFO grants (guest GM
/// `aperture_base + i * PAGE`), mapped to whatever the guest's GGTT entry
/// for that page names.
pub const APERTURE_VA: u64 = USER_BASE + (1 << 38) + (1 << 37);
/// Room for the aperture window: a whole 4 GiB GM would fit.
pub const APERTURE_MAX: u64 = 4 << 30;

/// RAM page index of the boot block.
pub const BOOT_BLOCK_INDEX: u64 = 0;
/// RAM page index where the image window starts.
pub const IMAGE_INDEX: u64 = 1;
/// Pages of the image window (the largest image).
pub const IMAGE_PAGES: u64 = 256;
/// RAM page index of the unmapped page below the stack.
pub const STACK_GUARD_INDEX: u64 = IMAGE_INDEX + IMAGE_PAGES;
/// RAM page index of the stack's lowest page.
pub const STACK_INDEX: u64 = STACK_GUARD_INDEX + 1;
/// Pages of stack.
pub const STACK_PAGES: u64 = 32;
/// RAM page index of the first page the driver and workload use.
pub const DRIVER_INDEX: u64 = STACK_INDEX + STACK_PAGES;
/// The fewest RAM pages a guest can have: the fixed pages and a few for
/// a probe (a workload needs more: [`crate::WorkloadError::TooSmall`]).
pub const MIN_RAM_PAGES: u64 = DRIVER_INDEX + 64;

/// Virtual address of guest page `page`.
pub const fn ram_va(page: u64) -> u64 {
    USER_BASE + page * PAGE
}
/// Virtual address of RAM page index `index`.
pub const fn ram_index_va(index: u64) -> u64 {
    ram_va(RAM_FIRST_PAGE + index)
}
/// Virtual address of aperture page `index` (from the aperture slice's
/// base).
pub const fn aperture_va(index: u64) -> u64 {
    APERTURE_VA + index * PAGE
}
/// Where the boot block is.
pub const BOOT_BLOCK_VA: u64 = ram_index_va(BOOT_BLOCK_INDEX);
/// Where the image is linked (its first segment's page).
pub const IMAGE_VA: u64 = ram_index_va(IMAGE_INDEX);
/// One past the image window.
pub const IMAGE_END_VA: u64 = ram_index_va(IMAGE_INDEX + IMAGE_PAGES);
/// The stack's top (RSP at entry).
pub const STACK_TOP_VA: u64 = ram_index_va(STACK_INDEX + STACK_PAGES);

// The layout holds together (checked when anything using it compiles).
const _: () = {
    assert!(USER_BASE >> 39 == 128, "the user slot is PML4 entry 128");
    assert!(USER_BASE.is_multiple_of(USER_SLOT_SIZE));
    assert!(BAR0_VA + BAR0_SIZE <= APERTURE_VA);
    assert!(APERTURE_VA + APERTURE_MAX <= USER_BASE + USER_SLOT_SIZE);
    assert!(APERTURE_VA.is_multiple_of(1 << 30));
    assert!(STACK_TOP_VA.is_multiple_of(16));
    assert!(IMAGE_END_VA < STACK_TOP_VA);
    // 64 GiB of RAM end below the BAR.
    assert!(ram_va(RAM_FIRST_PAGE + (64 << 18)) <= BAR0_VA);
};
