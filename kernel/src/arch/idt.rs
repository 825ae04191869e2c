//! Interrupt descriptor table and the exception path.
//!
//! `extern "x86-interrupt"` is unstable, so each vector has a tiny assembly
//! stub that pushes a uniform [`TrapFrame`] (a zero error code where the CPU
//! pushes none, then the vector number and all general registers) and calls
//! [`gmig_trap_handler`]. A handler that returns resumes the interrupted code
//! with the (possibly edited) frame. Unexpected exceptions are fatal: the
//! report names the vector, error code, RIP, CR2 and every register.
//!
//! A trap from ring 3 (a guest: CS's RPL is 3) never reaches that handler:
//! the common stub hands its frame to `gmig_user_exit` (`arch::ring3`),
//! which returns to the monitor code that entered the guest. Vector
//! [`SYSCALL_VECTOR`] is the guests' system call gate, the only one besides
//! `int3` that ring 3 may raise with `int`.

use core::fmt;

use x86_64::instructions::tables::lidt;
use x86_64::registers::control::{Cr2, Cr3};
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

use super::gdt;

/// Vectors with a stub in the table; 0-31 are CPU exceptions, 32-63
/// device interrupts: 32 the local APIC timer, 47 the APIC's spurious
/// vector, 48-63 the legacy PICs (remapped there and masked, `arch::apic`).
pub const STUB_VECTORS: usize = 64;
/// The guests' system call (`int 0x80`, a DPL-3 gate).
pub const SYSCALL_VECTOR: u8 = 0x80;

core::arch::global_asm!(
    r#"
    .section .text.gmig_isr, "ax"
    .macro GMIG_ISR_NOERR vec
    .balign 16
gmig_isr_\vec:
    push 0
    push \vec
    jmp gmig_isr_common
    .endm

    .macro GMIG_ISR_ERR vec
    .balign 16
gmig_isr_\vec:
    push \vec
    jmp gmig_isr_common
    .endm

    .irp vec, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    GMIG_ISR_NOERR \vec
    .endr
    .irp vec, 48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,128
    GMIG_ISR_NOERR \vec
    .endr
    .irp vec, 8,10,11,12,13,14,17,21,29,30
    GMIG_ISR_ERR \vec
    .endr

gmig_isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    // From ring 3 (CS's RPL, 18 words up): back to the monitor code that
    // entered the guest.
    test qword ptr [rsp + 18 * 8], 3
    jnz gmig_user_exit
    cld
    mov rdi, rsp
    call gmig_trap_handler
    // Restores the TrapFrame at RSP and returns to where it says; ring 3
    // is entered through here too (`arch::ring3`).
    .global gmig_trap_return
gmig_trap_return:
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

    .section .rodata.gmig_isr_table, "a"
    .balign 8
    .global gmig_isr_table
gmig_isr_table:
    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    .quad gmig_isr_\vec
    .endr
    .global gmig_isr_syscall
gmig_isr_syscall:
    .quad gmig_isr_128
"#
);

/// What the stub pushes, lowest address first.
#[repr(C)]
#[derive(Debug, Clone)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector.
    pub vector: u64,
    /// CPU error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// One 16-byte gate descriptor (SDM vol. 3A, 6.14.1).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// Present 64-bit interrupt gate (interrupts off on entry).
    fn interrupt(handler: u64, selector: u16, ist: Option<u16>, user_callable: bool) -> Gate {
        let dpl = if user_callable { 3 << 5 } else { 0 };
        Gate {
            offset_low: handler as u16,
            selector,
            ist: ist.map_or(0, |slot| slot as u8 + 1),
            attributes: 0x80 | dpl | 0x0e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Table([Gate; 256]);

static IDT: spin::Once<Table> = spin::Once::new();

/// Exception names (SDM vol. 3A, table 6-1).
pub fn vector_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error (#DE)",
        "debug (#DB)",
        "non-maskable interrupt (NMI)",
        "breakpoint (#BP)",
        "overflow (#OF)",
        "bound range exceeded (#BR)",
        "invalid opcode (#UD)",
        "device not available (#NM)",
        "double fault (#DF)",
        "coprocessor segment overrun",
        "invalid TSS (#TS)",
        "segment not present (#NP)",
        "stack-segment fault (#SS)",
        "general protection (#GP)",
        "page fault (#PF)",
        "reserved",
        "x87 floating point (#MF)",
        "alignment check (#AC)",
        "machine check (#MC)",
        "SIMD floating point (#XM)",
        "virtualization (#VE)",
        "control protection (#CP)",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection (#HV)",
        "VMM communication (#VC)",
        "security (#SX)",
        "reserved",
    ];
    if vector == u64::from(SYSCALL_VECTOR) {
        return "system call (int 0x80)";
    }
    NAMES
        .get(vector as usize)
        .copied()
        .unwrap_or("device interrupt")
}

/// Builds and loads the IDT.
pub fn init(selectors: gdt::Selectors) {
    extern "C" {
        static gmig_isr_table: [u64; STUB_VECTORS];
        static gmig_isr_syscall: u64;
    }
    let table = IDT.call_once(|| {
        let mut gates = [Gate::MISSING; 256];
        for (vector, gate) in gates.iter_mut().enumerate().take(STUB_VECTORS) {
            // SAFETY: `gmig_isr_table` is an immutable table of stub addresses
            // emitted by the global_asm! above with exactly STUB_VECTORS entries.
            let handler = unsafe { gmig_isr_table[vector] };
            let ist = match vector {
                2 => Some(gdt::NMI_IST),
                8 => Some(gdt::DOUBLE_FAULT_IST),
                18 => Some(gdt::MACHINE_CHECK_IST),
                _ => None,
            };
            // Breakpoint may be raised from ring 3 (guests' int3).
            *gate = Gate::interrupt(handler, selectors.kernel_code.0, ist, vector == 3);
        }
        // SAFETY: as above; one address emitted by the same global_asm!.
        let syscall = unsafe { gmig_isr_syscall };
        gates[usize::from(SYSCALL_VECTOR)] =
            Gate::interrupt(syscall, selectors.kernel_code.0, None, true);
        Table(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Table>() - 1) as u16,
        base: VirtAddr::from_ptr(table.0.as_ptr()),
    };
    // SAFETY: the table lives in a `static` forever and every present gate
    // points at a stub that builds a TrapFrame and calls the handler.
    unsafe { lidt(&pointer) };
}

/// The unmapped page below the kernel stack, so that a fault there is
/// reported as the stack overflow it is.
static STACK_GUARD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(u64::MAX);

/// Records the stack guard page for fault reports.
pub fn set_stack_guard(page: u64) {
    STACK_GUARD.store(page, core::sync::atomic::Ordering::Relaxed);
}

/// Breakpoints taken, for the self-test that checks a trap returns.
pub static BREAKPOINTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Entry from every stub.
#[no_mangle]
extern "C" fn gmig_trap_handler(frame: &mut TrapFrame) {
    match frame.vector {
        3 => {
            // Resumable: `int3` leaves RIP after the instruction.
            BREAKPOINTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
        v if v >= 32 => {
            defmt::warn!("spurious interrupt on vector {=u64}", v);
        }
        _ => fatal(frame),
    }
}

/// Prints a full report of an unexpected exception and stops the monitor.
pub fn fatal(frame: &TrapFrame) -> ! {
    // SAFETY: this path never returns to whatever held the console.
    unsafe { crate::console::force_unlock() };
    crate::println!("{}", FaultReport(frame));
    crate::exit::exit(crate::exit::ExitCode::CpuException)
}

/// Text form of a fatal exception.
struct FaultReport<'a>(&'a TrapFrame);

impl fmt::Display for FaultReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        writeln!(
            f,
            "\n*** FATAL CPU EXCEPTION: vector {} {}",
            t.vector,
            vector_name(t.vector)
        )?;
        writeln!(f, "    error code {:#x}", t.error_code)?;
        if t.vector == 14 {
            let e = t.error_code;
            writeln!(
                f,
                "    page fault at CR2={:#018x}: {} {} in {} mode{}",
                Cr2::read_raw(),
                if e & 1 != 0 {
                    "protection violation on"
                } else {
                    "not-present page on"
                },
                if e & 2 != 0 {
                    "write"
                } else if e & 16 != 0 {
                    "instruction fetch"
                } else {
                    "read"
                },
                if e & 4 != 0 { "user" } else { "supervisor" },
                if e & 8 != 0 {
                    " (reserved bit set)"
                } else {
                    ""
                },
            )?;
        } else {
            writeln!(f, "    CR2={:#018x}", Cr2::read_raw())?;
        }
        let guard = STACK_GUARD.load(core::sync::atomic::Ordering::Relaxed);
        if matches!(t.vector, 8 | 14) && Cr2::read_raw() & !0xfff == guard {
            writeln!(
                f,
                "    CR2 is in the stack guard page: kernel stack overflow"
            )?;
        }
        let (cr3, _) = Cr3::read_raw();
        writeln!(
            f,
            "    RIP={:#018x} CS={:#06x} RFLAGS={:#010x}",
            t.rip, t.cs, t.rflags
        )?;
        writeln!(
            f,
            "    RSP={:#018x} SS={:#06x} CR3={:#018x}",
            t.rsp,
            t.ss,
            cr3.start_address().as_u64()
        )?;
        writeln!(
            f,
            "    RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}",
            t.rax, t.rbx, t.rcx, t.rdx
        )?;
        writeln!(
            f,
            "    RSI={:#018x} RDI={:#018x} RBP={:#018x} R8 ={:#018x}",
            t.rsi, t.rdi, t.rbp, t.r8
        )?;
        writeln!(
            f,
            "    R9 ={:#018x} R10={:#018x} R11={:#018x} R12={:#018x}",
            t.r9, t.r10, t.r11, t.r12
        )?;
        write!(
            f,
            "    R13={:#018x} R14={:#018x} R15={:#018x}",
            t.r13, t.r14, t.r15
        )
    }
}
