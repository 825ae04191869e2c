//! The monitor's GDT and TSS. The TSS gives the double-fault and NMI handlers
//! their own stacks (IST), so a kernel stack overflow still gets reported,
//! and traps from ring-3 guests the stack they land on (RSP0, see
//! `arch::ring3`). The segments are in the order SYSRET would need (kernel
//! code and data, then user data and code), though guests enter the
//! monitor through `int 0x80`.

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in hardware, 0-based here) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot of the NMI stack.
pub const NMI_IST: u16 = 1;
/// IST slot of the machine-check stack.
pub const MACHINE_CHECK_IST: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

/// An exception stack. Only the CPU writes it (on exception entry); Rust
/// code never touches its contents, only takes its address.
#[repr(C, align(16))]
struct Stack(core::cell::UnsafeCell<[u8; IST_STACK_SIZE]>);

// SAFETY: Rust never reads or writes the contents; the CPU uses each stack
// for one exception vector on the one CPU the monitor runs on.
unsafe impl Sync for Stack {}

static DOUBLE_FAULT_STACK: Stack = Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE]));
static NMI_STACK: Stack = Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE]));
static MACHINE_CHECK_STACK: Stack = Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE]));
/// Where the CPU pushes the frame of a trap from ring 3 (TSS RSP0); the
/// entry stub leaves it at once for the monitor's stack (`arch::ring3`).
static USER_TRAP_STACK: Stack = Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE]));

/// Selectors of the loaded GDT.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    /// Ring-0 code.
    pub kernel_code: SegmentSelector,
    /// Ring-0 data.
    pub kernel_data: SegmentSelector,
    /// Ring-3 data (guests' SS).
    pub user_data: SegmentSelector,
    /// Ring-3 64-bit code (guests' CS).
    pub user_code: SegmentSelector,
    /// The TSS.
    pub tss: SegmentSelector,
}

fn stack_top(stack: &'static Stack) -> VirtAddr {
    // Stacks grow down: the top is one past the last byte.
    VirtAddr::from_ptr(stack.0.get().wrapping_add(1))
}

static TSS: spin::Once<TaskStateSegment> = spin::Once::new();
static GDT: spin::Once<(GlobalDescriptorTable, Selectors)> = spin::Once::new();

/// Builds and loads the GDT and TSS, reloading every segment register.
pub fn init() -> Selectors {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = stack_top(&DOUBLE_FAULT_STACK);
        tss.interrupt_stack_table[NMI_IST as usize] = stack_top(&NMI_STACK);
        tss.interrupt_stack_table[MACHINE_CHECK_IST as usize] = stack_top(&MACHINE_CHECK_STACK);
        tss.privilege_stack_table[0] = stack_top(&USER_TRAP_STACK);
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (
            gdt,
            Selectors {
                kernel_code,
                kernel_data,
                user_data,
                user_code,
                tss,
            },
        )
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives in a
    // `static` for the rest of the monitor's life; the TSS descriptor is
    // loaded exactly once.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        SS::set_reg(selectors.kernel_data);
        load_tss(selectors.tss);
    }
    *selectors
}

/// The selectors, once [`init`] ran.
pub fn selectors() -> Option<Selectors> {
    GDT.get().map(|(_, s)| *s)
}
