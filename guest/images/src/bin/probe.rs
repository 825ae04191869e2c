//! The probe image: one behaviour per boot block, for the monitor's tests
//! and measurements: accesses and instructions that must kill it, a wrong
//! system call, a tight loop, BAR0 reads and writes that must reach its
//! vGPU, timings of trapped accesses and calls, FPU/SSE registers that must
//! survive other guests, RAM writes that the dirty bits must show, and the
//! hostile guest of the four-guest run (`guest::attack`).
#![no_std]
#![no_main]

use core::arch::asm;
use core::arch::x86_64::_rdtsc;

use gpu::ggtt::{GuestPte, PteFlags};
use gpu::regs::{pvinfo, ring, GGTT_BAR0_OFFSET};
use guest::abi::{
    exit_code, ram_index_va, syscall, BootBlock, FaultKind, Image, Measure, Probe, Program,
    DRIVER_INDEX,
};
use guest_images::platform::mmio_read64;
use guest_images::{logf, sys, RingError, RingPlatform};

use guest::attack::{self, AttackError, Attacker, Class};
use guest::Platform;

guest_images::entry!(Image::Probe, main);

fn main(boot: &BootBlock) -> u64 {
    let Program::Probe(probe) = boot.program else {
        return exit_code::BAD_BOOT_BLOCK;
    };
    let (first, pages) = boot.driver_ram();
    let mut p = RingPlatform::new(first, pages);
    match probe {
        Probe::Spin { iterations } => {
            spin(iterations);
            exit_code::SUCCESS
        }
        Probe::Touch { address, write } => {
            touch(address, write);
            logf!("the access to {address:#x} went through");
            exit_code::PROBE_FAILED
        }
        Probe::Fault(kind) => {
            fault(kind);
            logf!("{} did not fault", kind.name());
            exit_code::PROBE_FAILED
        }
        Probe::BadSyscall { number } => {
            sys::raw(number, 0, 0, 0);
            logf!("system call {number} returned");
            exit_code::PROBE_FAILED
        }
        Probe::BadPointer { address } => {
            sys::raw(syscall::LOG, address, 16, 0);
            logf!("a log call with the text at {address:#x} returned");
            exit_code::PROBE_FAILED
        }
        Probe::MmioEcho { vgt_id, value } => mmio_echo(&mut p, first, vgt_id, value),
        Probe::Costs { count } => costs(&mut p, count),
        Probe::Fpu { seed, rounds } => fpu(seed, rounds),
        Probe::Dirty {
            first,
            count,
            stride,
            rounds,
        } => {
            for round in 0..rounds {
                for k in 0..count {
                    let at = ram_index_va(DRIVER_INDEX + first + round + k * stride);
                    // SAFETY: a page of this guest's RAM (the monitor sized it
                    // for the probe), mapped read/write; no reference covers it.
                    unsafe { core::ptr::write_volatile(at as *mut u8, round as u8 + 1) };
                }
                sys::yield_now();
            }
            exit_code::SUCCESS
        }
        Probe::Hostile {
            iterations,
            address,
            victim,
        } => hostile(&mut p, first, pages, iterations, address, victim),
        Probe::Twins => twins(&mut p, first, pages),
        Probe::Aperture => aperture(&mut p, first, pages),
    }
}

/// `Probe::Aperture` (see its docs): what goes through the aperture
/// window reaches the RAM page its GGTT entry names, the GPU sees it, a
/// rebinding moves the window, and an unbound page kills.
fn aperture(p: &mut RingPlatform, first: u64, pages: u64) -> u64 {
    use guest::driver::APERTURE_PROBE_PAGES as A;
    let run = |p: &mut RingPlatform| -> Result<(), guest::DriverError<RingError>> {
        let mut d = guest::Driver::probe(p, first, pages)?;
        d.boot(p)?;
        let platform = guest::DriverError::Platform;
        let mut pattern = [0u8; guest::content::PAGE];
        let mut got = [0u8; guest::content::PAGE];
        let window = d
            .aperture_page(A[0])
            .ok_or(guest::DriverError::OutOfRange)?;
        // Round 1: through the aperture, then the blitter copies the
        // aperture page (GM) onto another page.
        guest::abi::aperture_pattern(0, &mut pattern);
        p.aperture_write(window, 0, &pattern).map_err(platform)?;
        let mut batch = d.batch(gpu::engine::Engine::Blitter);
        let copy = gpu::encode::copy_blt(d.gm(A[1]), 256, 0, 0, 64, 16, d.gm(A[0]), 256, 0, 0);
        batch.push(p, &d, &copy)?;
        d.run(p, batch)?;
        p.ram_read(d.page(A[1]), 0, &mut got).map_err(platform)?;
        if got != pattern {
            logf!("the blit of aperture page {window} did not copy what was written through it");
            return Err(guest::DriverError::OutOfRange);
        }
        sys::yield_now();
        // Round 2: rebound to A[2], written, rebound to A[3].
        let aperture_gm = u64::from(
            p.mmio_read32(pvinfo::PAGE + pvinfo::APERTURE_BASE)
                .map_err(platform)?,
        );
        let slot = u32::try_from(u64::from(GGTT_BAR0_OFFSET) + (aperture_gm / 4096 + window) * 8)
            .map_err(|_| guest::DriverError::OutOfRange)?;
        let bind = |p: &mut RingPlatform, i: u64| {
            let page =
                gpu::addr::GuestPage::new(d.page(i)).map_err(|_| guest::DriverError::OutOfRange)?;
            p.mmio_write64(slot, GuestPte::map(page, PteFlags::NONE).raw())
                .map_err(platform)
        };
        bind(p, A[2])?;
        guest::abi::aperture_pattern(1, &mut pattern);
        p.aperture_write(window, 0, &pattern).map_err(platform)?;
        bind(p, A[3])?;
        sys::yield_now();
        // Round 3: unbound, then read through it.
        p.mmio_write64(slot, GuestPte::INVALID.raw())
            .map_err(platform)?;
        // SAFETY: a page of this guest's aperture window, which the
        // monitor unmapped just now (its GGTT entry names nothing): the
        // load must fault and kill this guest; it touches no memory of
        // this program.
        let value =
            unsafe { core::ptr::read_volatile(guest::abi::aperture_va(window) as *const u64) };
        logf!("the read through unbound aperture page {window} went through: {value:#x}");
        Ok(())
    };
    if let Err(e) = run(p) {
        logf!("aperture probe: {e}");
    }
    exit_code::PROBE_FAILED
}

/// Every stream's benign twin, declared as its attack would be; the
/// monitor judges (none may be refused).
fn twins(p: &mut RingPlatform, first: u64, pages: u64) -> u64 {
    let run = |p: &mut RingPlatform| -> Result<u64, AttackError<RingError>> {
        let mut a = Attacker::probe(p, first, pages, 0)?;
        let mut made = 0;
        for class in Class::ALL {
            if class.refusal() == attack::Refusal::Contained {
                a.fresh(p, class)?;
                sys::attempt(class);
                a.ppgtt_draw(p, class, true)?;
                made += 1;
                continue;
            }
            let Some(twin) = attack::stream(class, a.layout(), true) else {
                continue;
            };
            a.fresh(p, class)?;
            sys::attempt(class);
            a.run_stream(p, &twin)?;
            made += 1;
        }
        // Back to a vGPU that runs (a twin the software GPU does not model
        // stops it).
        a.fresh(p, Class::TightLoop)?;
        Ok(made)
    };
    match run(p) {
        Ok(made) => {
            logf!("twins: {made} benign twins submitted");
            exit_code::SUCCESS
        }
        Err(e) => {
            logf!("twins: {e}");
            exit_code::PROBE_FAILED
        }
    }
}

/// TSC cycles between two looks at the clock, in a loop that never enters
/// the monitor, beyond which the guest was not running: another guest had
/// the CPU (a slice is 2 ms, millions of cycles; the loop's own turns take
/// a few thousand).
const DESCHEDULED: u64 = 1_000_000;

/// The hostile guest: every stream and device attempt of `guest::attack`,
/// then the tight loop, then the read of another guest's RAM at
/// `address`, which ends it. Counts what it saw refused; anything that
/// went through is logged loudly and makes it fail.
fn hostile(
    p: &mut RingPlatform,
    first: u64,
    pages: u64,
    iterations: u64,
    address: u64,
    victim: u64,
) -> u64 {
    let mut a = match Attacker::probe(p, first, pages, victim) {
        Ok(a) => a,
        Err(e) => {
            logf!("hostile: cannot attack: {e}");
            return exit_code::PROBE_FAILED;
        }
    };
    // The PPGTT attempts name the frame of the RAM it reads last.
    a.aim_at_frame(address);
    logf!(
        "hostile: {} classes of attempt, aimed at GM {:#x}",
        Class::ALL.len(),
        a.layout().victim
    );
    let (mut attempts, mut refused) = (0u64, 0u64);
    let mut tally = |class: Class, was_refused: bool| {
        attempts += 1;
        if was_refused {
            refused += 1;
        } else {
            logf!(
                "hostile: ATTEMPT NOT REFUSED: {class} ({})",
                class.refusal().name()
            );
        }
    };
    for class in Class::ALL {
        let outcome = a.fresh(p, class).and_then(|()| a.attempt(p, class));
        match outcome {
            Ok(Some(o)) => tally(o.class, o.refused),
            Ok(None) => {}
            Err(e) => {
                logf!("hostile: {class}: {e}");
                return exit_code::PROBE_FAILED;
            }
        }
    }
    // The vGPU runs again after the last refusal.
    if let Err(e) = a.fresh(p, Class::TightLoop) {
        logf!("hostile: {e}");
        return exit_code::PROBE_FAILED;
    }
    sys::attempt(Class::TightLoop);
    let longest = spin_watching(iterations);
    tally(Class::TightLoop, longest > DESCHEDULED);
    logf!(
        "hostile: {attempts} attempts, {refused} seen refused (longest time off the CPU in the loop: {longest} TSC cycles); last: a read of another guest's RAM at {address:#x}"
    );
    sys::attempt(Class::ForeignRam);
    touch(address, false);
    logf!("hostile: ATTEMPT NOT REFUSED: foreign-ram: the read went through");
    exit_code::PROBE_FAILED
}

/// `iterations` turns (0: for ever) without entering the monitor, looking
/// at the TSC every 1024; returns the longest gap seen between two looks.
fn spin_watching(iterations: u64) -> u64 {
    // SAFETY: RDTSC is allowed in ring 3 (CR4.TSD clear), no side effects.
    let tsc = || unsafe { _rdtsc() };
    let (mut last, mut longest) = (tsc(), 0);
    let mut i = 0u64;
    while iterations == 0 || i < iterations {
        i = core::hint::black_box(i) + 1;
        if i.is_multiple_of(1024) {
            let now = tsc();
            longest = longest.max(now.wrapping_sub(last));
            last = now;
        }
    }
    longest
}

/// A loop the compiler keeps and that never enters the monitor.
fn spin(iterations: u64) {
    let mut i = 0u64;
    while iterations == 0 || i < iterations {
        i = core::hint::black_box(i) + 1;
    }
}

fn touch(address: u64, write: bool) {
    if write {
        // SAFETY: deliberately wrong: `address` is not this guest's. The
        // monitor kills the guest at the fault; nothing here runs after it.
        unsafe { core::ptr::write_volatile(address as *mut u64, 0x6a6a) };
    } else {
        // SAFETY: as above.
        let v = unsafe { core::ptr::read_volatile(address as *const u64) };
        core::hint::black_box(v);
    }
}

fn fault(kind: FaultKind) {
    // SAFETY: each instruction faults in ring 3 (that is the test); the
    // monitor kills the guest there. None of them changes memory.
    unsafe {
        match kind {
            FaultKind::Hlt => asm!("hlt", options(nostack)),
            FaultKind::Cli => asm!("cli", options(nostack)),
            FaultKind::WriteCr3 => {
                asm!("xor eax, eax", "mov cr3, rax", out("rax") _, options(nostack))
            }
            FaultKind::PortOut => {
                asm!("mov al, 0x31", "out 0xf4, al", out("al") _, options(nostack))
            }
            FaultKind::Wrmsr => asm!(
                "xor eax, eax", "xor edx, edx", "mov ecx, 0xc0000080", "wrmsr",
                out("eax") _, out("edx") _, out("ecx") _, options(nostack)
            ),
            FaultKind::Ud2 => asm!("ud2", options(nostack)),
            FaultKind::DivideByZero => asm!(
                "xor edx, edx", "mov eax, 1", "xor ecx, ecx", "div ecx",
                out("eax") _, out("edx") _, out("ecx") _, options(nostack)
            ),
            FaultKind::NonCanonical => asm!(
                "mov rax, 0x8000000000000000", "mov rax, [rax]",
                out("rax") _, options(nostack)
            ),
            FaultKind::Int3 => asm!("int3", options(nostack)),
            FaultKind::Gate => asm!("int 0x81", options(nostack)),
            FaultKind::Syscall => asm!("syscall", out("rcx") _, out("r11") _, options(nostack)),
            FaultKind::Sgdt => {
                let mut gdtr = [0u8; 10];
                asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack));
            }
        }
    }
}

/// PVINFO through 32-bit reads, a ring register and a GGTT entry written
/// and read back (32- and 64-bit), all through trapped accesses.
fn mmio_echo(p: &mut RingPlatform, first: u64, vgt_id: u32, value: u32) -> u64 {
    let read = |p: &mut RingPlatform, offset| p.mmio_read32(offset).unwrap_or(0);
    let magic = u64::from(read(p, pvinfo::PAGE + pvinfo::MAGIC_OFFSET))
        | u64::from(read(p, pvinfo::PAGE + pvinfo::MAGIC_OFFSET + 4)) << 32;
    let id = read(p, pvinfo::PAGE + pvinfo::VGT_ID);
    let aperture = read(p, pvinfo::PAGE + pvinfo::APERTURE_BASE);
    if magic != pvinfo::MAGIC || id != vgt_id {
        logf!("PVINFO magic {magic:#x}, vgt_id {id}: not this vGPU");
        return exit_code::PROBE_FAILED;
    }
    let start = gpu::engine::Engine::Render.mmio_base() + ring::START;
    if p.mmio_write32(start, value).is_err() || read(p, start) != value {
        logf!("RING_START did not keep {value:#x}");
        return exit_code::PROBE_FAILED;
    }
    let Ok(page) = gpu::addr::GuestPage::new(first) else {
        return exit_code::PROBE_FAILED;
    };
    let pte = GuestPte::map(page, PteFlags::NONE).raw();
    let slot = GGTT_BAR0_OFFSET + aperture / 4096 * 8;
    if p.mmio_write64(slot, pte).is_err() || mmio_read64(slot) != Ok(pte) {
        logf!("the GGTT entry of aperture page 0 did not keep {pte:#x}");
        return exit_code::PROBE_FAILED;
    }
    exit_code::SUCCESS
}

/// Times `count` trapped BAR0 reads, `count` `wait` calls and `count`
/// plain RAM reads in one loop shape, and reports each.
fn costs(p: &mut RingPlatform, count: u64) -> u64 {
    let magic = pvinfo::PAGE + pvinfo::MAGIC_OFFSET;
    let ram = ram_index_va(DRIVER_INDEX) as *const u32;
    let time = |f: &mut dyn FnMut()| {
        // SAFETY: RDTSC is allowed in ring 3 (the monitor leaves CR4.TSD
        // clear) and has no side effects.
        let t0 = unsafe { _rdtsc() };
        for _ in 0..count {
            f();
        }
        // SAFETY: as above.
        let t1 = unsafe { _rdtsc() };
        t1 - t0
    };
    let mmio = time(&mut || {
        core::hint::black_box(p.mmio_read32(magic).ok());
    });
    let calls = time(&mut || {
        core::hint::black_box(sys::wait());
    });
    let plain = time(&mut || {
        // SAFETY: the first page of the driver's RAM, mapped read/write.
        core::hint::black_box(unsafe { core::ptr::read_volatile(ram) });
    });
    sys::measure(Measure::MmioRead, mmio, count);
    sys::measure(Measure::Syscall, calls, count);
    sys::measure(Measure::Baseline, plain, count);
    exit_code::SUCCESS
}

/// 16 XMM registers, MXCSR and the x87 control word set from `seed`, then
/// checked after each of `rounds` yields: another guest running in
/// between must not show through.
fn fpu(seed: u64, rounds: u64) -> u64 {
    let mut want = [0u64; 32];
    let mut state = seed;
    for w in &mut want {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *w = state;
    }
    // Rounding toward zero, all exceptions masked: not the reset value.
    let mxcsr: u32 = 0x7f80;
    // Single precision, round down, exceptions masked.
    let fcw: u16 = 0x047f;
    // SAFETY: loads the XMM registers from `want` (256 bytes) and sets
    // MXCSR and the FPU control word to valid values; this program has no
    // other code that uses these registers (its target is soft-float).
    unsafe {
        asm!(
            "movdqu xmm0, [{w}]", "movdqu xmm1, [{w} + 16]", "movdqu xmm2, [{w} + 32]",
            "movdqu xmm3, [{w} + 48]", "movdqu xmm4, [{w} + 64]", "movdqu xmm5, [{w} + 80]",
            "movdqu xmm6, [{w} + 96]", "movdqu xmm7, [{w} + 112]", "movdqu xmm8, [{w} + 128]",
            "movdqu xmm9, [{w} + 144]", "movdqu xmm10, [{w} + 160]", "movdqu xmm11, [{w} + 176]",
            "movdqu xmm12, [{w} + 192]", "movdqu xmm13, [{w} + 208]", "movdqu xmm14, [{w} + 224]",
            "movdqu xmm15, [{w} + 240]",
            "ldmxcsr [{m}]", "fldcw [{c}]",
            w = in(reg) want.as_ptr(), m = in(reg) &mxcsr, c = in(reg) &fcw,
            options(nostack, readonly),
        )
    };
    for round in 0..rounds {
        sys::yield_now();
        let mut got = [0u64; 32];
        let mut got_mxcsr: u32 = 0;
        let mut got_fcw: u16 = 0;
        // SAFETY: stores the XMM registers into `got` (256 bytes) and
        // MXCSR and the control word into their locals.
        unsafe {
            asm!(
                "movdqu [{g}], xmm0", "movdqu [{g} + 16], xmm1", "movdqu [{g} + 32], xmm2",
                "movdqu [{g} + 48], xmm3", "movdqu [{g} + 64], xmm4", "movdqu [{g} + 80], xmm5",
                "movdqu [{g} + 96], xmm6", "movdqu [{g} + 112], xmm7", "movdqu [{g} + 128], xmm8",
                "movdqu [{g} + 144], xmm9", "movdqu [{g} + 160], xmm10",
                "movdqu [{g} + 176], xmm11", "movdqu [{g} + 192], xmm12",
                "movdqu [{g} + 208], xmm13", "movdqu [{g} + 224], xmm14",
                "movdqu [{g} + 240], xmm15",
                "stmxcsr [{m}]", "fnstcw [{c}]",
                g = in(reg) got.as_mut_ptr(), m = in(reg) &mut got_mxcsr, c = in(reg) &mut got_fcw,
                options(nostack),
            )
        };
        if got != want || got_mxcsr != mxcsr || got_fcw != fcw {
            logf!("round {round}: the FPU/SSE registers changed while other guests ran");
            return exit_code::PROBE_FAILED;
        }
    }
    exit_code::SUCCESS
}
