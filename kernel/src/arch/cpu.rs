//! CPU identification and small privileged helpers.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdrand64_step, _rdseed64_step, _rdtsc};

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and has no side effects.
    unsafe { _rdtsc() }
}

/// The 12-byte hypervisor vendor signature (CPUID leaf 0x4000_0000), when
/// CPUID says a hypervisor is present.
pub fn hypervisor_signature() -> Option<[u8; 12]> {
    // CPUID is always present on x86_64.
    let leaf1 = __cpuid(1);
    if leaf1.ecx & (1 << 31) == 0 {
        return None;
    }
    let leaf = __cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    sig[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    sig[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
    sig[8..12].copy_from_slice(&leaf.edx.to_le_bytes());
    Some(sig)
}

/// Whether we run under QEMU (TCG or KVM), where isa-debug-exit may exist.
pub fn running_under_qemu() -> bool {
    matches!(
        hypervisor_signature(),
        Some(sig) if &sig == b"TCGTCGTCGTCG" || &sig[..9] == b"KVMKVMKVM"
    )
}

/// CPU brand string (CPUID 0x8000_0002..4), trailing NULs and spaces trimmed.
pub fn brand_string(buf: &mut [u8; 48]) -> &str {
    if __cpuid(0x8000_0000).eax < 0x8000_0004 {
        return "unknown CPU";
    }
    for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let r = __cpuid(leaf);
        for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
            buf[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
        }
    }
    let s = core::str::from_utf8(buf).unwrap_or("unknown CPU");
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// Enables SSE on this CPU (CR0.EM clear, CR0.MP set, CR4.OSFXSR and
/// OSXMMEXCPT set) for the page digest's SSE2 path
/// ([`migrate::xxh3_sse2`]). The monitor is built soft-float: that path's
/// `asm!` block, which saves and restores the XMM registers it uses, is the
/// only code that executes SSE instructions, so there is no vector state
/// to save on traps.
pub fn enable_sse() {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    let cr0 = (Cr0::read() - Cr0Flags::EMULATE_COPROCESSOR) | Cr0Flags::MONITOR_COPROCESSOR;
    let cr4 = Cr4::read() | Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE;
    // SAFETY: SSE is architectural on x86_64; these bits only allow SSE
    // instructions to run (no memory or paging effect), and the monitor's
    // compiled code never executes them.
    unsafe {
        Cr0::write(cr0);
        Cr4::write(cr4);
    }
}

/// Whether the CPU has RDRAND (CPUID.01H:ECX bit 30).
pub fn has_rdrand() -> bool {
    __cpuid(1).ecx & (1 << 30) != 0
}

/// Whether the CPU has RDSEED (CPUID.(EAX=07H,ECX=0):EBX bit 18).
pub fn has_rdseed() -> bool {
    __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0
}

/// One RDSEED word, retried a few times (it fails while the conditioner
/// refills); `None` without RDSEED or when it keeps failing.
pub fn rdseed64() -> Option<u64> {
    if !has_rdseed() {
        return None;
    }
    let mut v = 0u64;
    (0..32).find_map(|_| {
        // SAFETY: CPUID says the CPU has RDSEED; it only writes `v`.
        (unsafe { _rdseed64_step(&mut v) } == 1).then_some(v)
    })
}

/// One RDRAND word, retried as Intel's DRNG guide advises (10 times);
/// `None` without RDRAND or when it keeps failing.
pub fn rdrand64() -> Option<u64> {
    if !has_rdrand() {
        return None;
    }
    let mut v = 0u64;
    (0..10).find_map(|_| {
        // SAFETY: CPUID says the CPU has RDRAND; it only writes `v`.
        (unsafe { _rdrand64_step(&mut v) } == 1).then_some(v)
    })
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
