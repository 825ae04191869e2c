//! Entering ring 3 and coming back: the CPU side of the guest runtime
//! (`crate::vm`).
//!
//! [`enter`] saves the monitor's callee-saved registers and stack pointer,
//! loads the guest's registers from a [`TrapFrame`] and `iretq`s into ring
//! 3 through the IDT stub's own frame restore (`gmig_trap_return`). Any trap from ring 3 (exception, timer, `int 0x80`) lands on the TSS
//! RSP0 stack, where the IDT's common stub builds the same [`TrapFrame`]
//! and, seeing CS's RPL 3, jumps to `gmig_user_exit`; that switches back
//! to the saved monitor stack and returns from [`enter`] with the frame.
//! So a guest's whole register state is one `TrapFrame` at every exit, and
//! resuming it (after emulating an access, a system call, or a migration)
//! is entering with that frame.
//!
//! The monitor runs with interrupts off; the guest with them on (its
//! RFLAGS.IF), so the APIC timer can take the CPU back.
//!
//! FPU/SSE state is not touched by the exit path: the monitor is built
//! soft-float, and its one SSE2 path saves what it uses. The runtime saves
//! and restores a guest's state with [`fxsave`] and [`fxrstor`] when it
//! switches guests.

use core::sync::atomic::AtomicU64;

use super::idt::TrapFrame;

/// The monitor's stack pointer while a guest runs (one CPU).
static MONITOR_RSP: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .section .text.gmig_ring3, "ax"
    .global gmig_ring3_enter
gmig_ring3_enter:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + {monitor_rsp}], rsp
    mov rsp, rdi
    jmp gmig_trap_return

    .global gmig_user_exit
gmig_user_exit:
    mov rax, rsp
    mov rsp, [rip + {monitor_rsp}]
    // Flags as the monitor expects them: the guest may have left DF or AC
    // (which would switch SMAP off) set; IF stays clear.
    push 2
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
"#,
    monitor_rsp = sym MONITOR_RSP,
);

extern "C" {
    fn gmig_ring3_enter(frame: *const TrapFrame) -> *const TrapFrame;
}

/// Runs the guest whose registers `frame` holds until its next trap and
/// returns the frame of that trap (vector, error code, every register).
///
/// # Safety
/// The current page tables must map the guest's code and stack for ring 3
/// and the monitor (this code, its stack, the IDT, GDT, TSS and RSP0 stack)
/// for ring 0 only; `frame` must hold a ring-3 CS and SS of the GDT, a
/// canonical RIP and RSP, and RFLAGS with IF set and IOPL 0; interrupts
/// must be off.
pub unsafe fn enter(frame: &TrapFrame) -> TrapFrame {
    // SAFETY: the caller's contract; `gmig_ring3_enter` keeps the
    // callee-saved registers and returns with the frame the stub built on
    // the RSP0 stack, which stays valid until the next trap from ring 3.
    unsafe { (*gmig_ring3_enter(frame)).clone() }
}

/// Bytes of an FXSAVE area.
pub const FXSAVE_BYTES: usize = 512;

/// FPU, MMX and SSE state in FXSAVE's format (SDM vol. 1, 10.5.1).
#[repr(C, align(16))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FxArea(pub [u8; FXSAVE_BYTES]);

impl FxArea {
    /// The state after FNINIT and a reset MXCSR: x87 control word 0x37f,
    /// MXCSR 0x1f80, every register zero.
    pub fn reset() -> Self {
        let mut a = [0u8; FXSAVE_BYTES];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FxArea(a)
    }
    /// MXCSR.
    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]])
    }
}

/// Saves this CPU's FPU/SSE state into `area`.
pub fn fxsave(area: &mut FxArea) {
    // SAFETY: FXSAVE64 writes 512 bytes at a 16-byte aligned address,
    // which `FxArea` is; SSE is enabled (`cpu::enable_sse`).
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) };
}

/// Loads this CPU's FPU/SSE state from `area`.
///
/// # Safety
/// MXCSR in `area` must have no bit outside [`mxcsr_mask`] set (FXRSTOR
/// raises #GP in the monitor otherwise).
pub unsafe fn fxrstor(area: &FxArea) {
    // SAFETY: a 16-byte aligned 512-byte area with a valid MXCSR (the
    // caller's contract); the monitor's own code does not use these
    // registers.
    unsafe {
        core::arch::asm!("fxrstor64 [{}]", in(reg) area.0.as_ptr(), options(nostack, readonly))
    };
}

/// The MXCSR bits this CPU supports (FXSAVE's MXCSR_MASK, or the default
/// 0xffbf when it reports 0: SDM vol. 1, 11.6.6).
pub fn mxcsr_mask() -> u32 {
    static MASK: spin::Once<u32> = spin::Once::new();
    *MASK.call_once(|| {
        let mut area = FxArea([0; FXSAVE_BYTES]);
        fxsave(&mut area);
        match u32::from_le_bytes([area.0[28], area.0[29], area.0[30], area.0[31]]) {
            0 => 0xffbf,
            mask => mask,
        }
    })
}

/// What [`protect_supervisor`] turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    /// SMEP: the monitor never executes user pages.
    pub smep: bool,
    /// SMAP: it never reads or writes them (it reaches guest RAM through
    /// its own mapping of the frames).
    pub smap: bool,
    /// UMIP: SGDT, SIDT, SLDT, SMSW and STR fault in ring 3 (they would
    /// show a guest where the monitor's tables are).
    pub umip: bool,
}

/// Turns on what keeps ring 3 away from the monitor where the CPU has it
/// (SMEP, SMAP, UMIP), and makes sure SYSCALL is off (EFER.SCE clear: a
/// guest's SYSCALL is then #UD, never a jump to whatever LSTAR holds).
pub fn protect_supervisor() -> Protections {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    use x86_64::registers::model_specific::{Efer, EferFlags};
    let leaf = core::arch::x86_64::__cpuid(0);
    let (ebx, ecx) = if leaf.eax >= 7 {
        let l7 = core::arch::x86_64::__cpuid_count(7, 0);
        (l7.ebx, l7.ecx)
    } else {
        (0, 0)
    };
    let on = Protections {
        smep: ebx & (1 << 7) != 0,
        smap: ebx & (1 << 20) != 0,
        umip: ecx & (1 << 2) != 0,
    };
    let mut cr4 = Cr4::read();
    if on.smep {
        cr4 |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if on.smap {
        cr4 |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    }
    if on.umip {
        cr4 |= Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION;
    }
    // SAFETY: CPUID says the CPU has these bits; the monitor neither runs
    // nor touches user pages nor uses those instructions in ring 3, so
    // turning them on changes nothing for it. Clearing EFER.SCE only
    // disables SYSCALL/SYSRET, which the monitor does not use.
    unsafe {
        Cr4::write(cr4);
        Efer::update(|f| f.remove(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    on
}
