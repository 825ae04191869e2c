//! The contract between the monitor and a ring-3 guest image (ARCHITECTURE.md
//! "Ring-3 guest runtime"): where things are in the guest's address
//! space, what the monitor leaves in its RAM at start-up, and its system
//! calls. The monitor (`kernel/src/vm/`) and the images
//! (`guest/images/`) both take every number from here, so they cannot
//! disagree; the images' linker script is written from these constants too.
//!
//! # Address space
//! Everything the guest can reach lies in one 512 GiB slot of the lower
//! half, from [`USER_BASE`]:
//!
//! * its RAM: guest page `p` (the number the guest writes into GGTT
//!   entries) at [`ram_va`]`(p)`, from [`RAM_FIRST_PAGE`]. RAM page index
//!   [`BOOT_BLOCK_INDEX`] holds the [`BootBlock`] (read-only), the image
//!   window follows ([`IMAGE_INDEX`], [`IMAGE_PAGES`]; only the pages the
//!   image's segments cover are mapped, with their permissions), then an
//!   unmapped guard page, the stack ([`STACK_PAGES`]), and from
//!   [`DRIVER_INDEX`] to the end the RAM the guest's vGPU driver and
//!   workload use (read/write, never executable);
//! * its virtual BAR0 at [`BAR0_VA`] ([`BAR0_SIZE`] bytes), never mapped:
//!   every access faults into the monitor, which emulates it;
//! * its aperture window (its virtual BAR2) at [`APERTURE_VA`], as many
//!   pages as PVINFO's aperture size: page `i` ([`aperture_va`]) reaches
//!   the RAM page that the guest's own GGTT entry for aperture page `i`
//!   names, as the CPU reaches memory through a GPU's aperture. An entry
//!   that names nothing leaves the page unmapped, and an access to it
//!   kills the guest (the monitor's `vm::space` docs say why). The GGTT
//!   entries decide, not the RAM window: an entry that names a page the
//!   guest maps read-only in its RAM window (its boot block, its code)
//!   makes that page writable through the aperture, as the GPU can write
//!   it through the same entry.
//!
//! The monitor's own mappings are present in the guest's page tables but
//! supervisor-only: a guest access to them faults, and the guest dies.
//!
//! # Start-up
//! The guest starts at its ELF entry point in ring 3 with RSP at
//! [`STACK_TOP_VA`] (16-byte aligned), RDI = [`BOOT_BLOCK_VA`], every other
//! register zero, interrupts on, and a fresh FPU/SSE state (FCW 0x37f,
//! MXCSR 0x1f80).
//!
//! # System calls
//! `int 0x80` with the call number in RAX and arguments in RDI, RSI, RDX;
//! the result comes back in RAX, every other register is preserved. A
//! number not in [`syscall`], or an argument the call refuses (a buffer
//! that is not the guest's), kills the guest.

use crate::workload::Kind;

pub use layout::*;

mod layout;

/// System call numbers and results.
pub mod syscall {
    /// `log(text: *const u8, len: usize)`: one line of UTF-8 text (at most
    /// [`LOG_MAX`] bytes) on the monitor's log.
    pub const LOG: u64 = 0;
    /// `frame(frame, checksum, submissions)`: a workload finished frame
    /// `frame` with running checksum `checksum` after `submissions`
    /// submissions in it. The result is [`FRAME_GO_ON`], or
    /// [`FRAME_FINISH`] when the monitor asks the workload to end (as a
    /// virtual machine's power button does): it then makes its final
    /// check and exits. A monitor that paces its guests (a display's
    /// refresh) returns from the call at the guest's next frame time.
    pub const FRAME: u64 = 1;
    /// `yield()`: let the other guests run.
    pub const YIELD: u64 = 2;
    /// `wait()`: return once the vGPU has no work in flight; the result is
    /// [`WAIT_OK`] or [`WAIT_VGPU_FAILED`].
    pub const WAIT: u64 = 3;
    /// `exit(code)`: the guest ends ([`crate::abi::exit_code`]).
    pub const EXIT: u64 = 4;
    /// `measure(what, total_cycles, count)`: a probe's timing
    /// ([`crate::abi::Measure`]).
    pub const MEASURE: u64 = 5;
    /// `attempt(class)`: what the guest does from now on, until its next
    /// `attempt` or its end, is an attempt of `class` (a
    /// [`crate::attack::Class`] code) that must be refused; the monitor
    /// judges from what it refused itself, not from the guest's word.
    pub const ATTEMPT: u64 = 6;
    /// Longest log line.
    pub const LOG_MAX: usize = 256;
    /// `wait`: the vGPU is idle.
    pub const WAIT_OK: u64 = 0;
    /// `wait`: the vGPU stopped (a refused submission or a GPU fault); it
    /// will not complete anything.
    pub const WAIT_VGPU_FAILED: u64 = 1;
    /// `frame`: go on with the next frame.
    pub const FRAME_GO_ON: u64 = 0;
    /// `frame`: the monitor asks the workload to end now.
    pub const FRAME_FINISH: u64 = 1;
}

/// What a guest's exit code says.
pub mod exit_code {
    /// The program did what it was asked.
    pub const SUCCESS: u64 = 0;
    /// The workload failed (a wrong result, or its vGPU stopped).
    pub const WORKLOAD_FAILED: u64 = 1;
    /// The boot block does not describe a program of this image.
    pub const BAD_BOOT_BLOCK: u64 = 2;
    /// The guest panicked.
    pub const PANIC: u64 = 3;
    /// A probe saw something other than it expected (e.g. an access that
    /// should have faulted went through).
    pub const PROBE_FAILED: u64 = 4;
}

/// What a probe's `measure` call times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Trapped BAR0 reads: fault, emulation and return, seen from the guest.
    MmioRead = 0,
    /// `wait` calls on an idle vGPU: trap, call and return.
    Syscall = 1,
    /// The same loop over plain RAM reads (what the loop itself costs).
    Baseline = 2,
}

impl Measure {
    /// Every kind, by code.
    pub const ALL: [Measure; 3] = [Measure::MmioRead, Measure::Syscall, Measure::Baseline];
    /// The kind with code `code`.
    pub fn from_code(code: u64) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| *m as u64 == code)
    }
}

/// A deliberately faulting instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `hlt` (privileged: #GP).
    Hlt = 1,
    /// `cli` (IOPL 0: #GP).
    Cli = 2,
    /// `mov cr3, rax` (privileged: #GP).
    WriteCr3 = 3,
    /// `out 0xf4, al` (IOPL 0, no I/O bitmap: #GP); 0xf4 is QEMU's exit port.
    PortOut = 4,
    /// `wrmsr` (privileged: #GP).
    Wrmsr = 5,
    /// `ud2` (#UD).
    Ud2 = 6,
    /// Division by zero (#DE).
    DivideByZero = 7,
    /// A load from a non-canonical address (#GP).
    NonCanonical = 8,
    /// `int3` (#BP).
    Int3 = 9,
    /// `int 0x81`, a gate the guest may not use (#GP).
    Gate = 10,
    /// `syscall` (the monitor keeps SYSCALL off: #UD).
    Syscall = 11,
    /// `sgdt` (#GP where the CPU has UMIP; otherwise it shows where the
    /// monitor's GDT is and the probe goes on).
    Sgdt = 12,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Hlt,
        FaultKind::Cli,
        FaultKind::WriteCr3,
        FaultKind::PortOut,
        FaultKind::Wrmsr,
        FaultKind::Ud2,
        FaultKind::DivideByZero,
        FaultKind::NonCanonical,
        FaultKind::Int3,
        FaultKind::Gate,
        FaultKind::Syscall,
        FaultKind::Sgdt,
    ];
    /// The kind with code `code`.
    pub fn from_code(code: u64) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| *k as u64 == code)
    }
    /// Short name, for reports.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::Hlt => "hlt",
            FaultKind::Cli => "cli",
            FaultKind::WriteCr3 => "mov-cr3",
            FaultKind::PortOut => "out",
            FaultKind::Wrmsr => "wrmsr",
            FaultKind::Ud2 => "ud2",
            FaultKind::DivideByZero => "divide",
            FaultKind::NonCanonical => "non-canonical",
            FaultKind::Int3 => "int3",
            FaultKind::Gate => "int-0x81",
            FaultKind::Syscall => "syscall",
            FaultKind::Sgdt => "sgdt",
        }
    }
}

/// What the probe image does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Loops `iterations` times (0: for ever) without a system call, then
    /// exits with [`exit_code::SUCCESS`].
    Spin {
        /// Loop turns.
        iterations: u64,
    },
    /// Reads (or writes) `address`, which must fault; exits with
    /// [`exit_code::PROBE_FAILED`] if the access went through.
    Touch {
        /// Virtual address.
        address: u64,
        /// A store, not a load.
        write: bool,
    },
    /// Executes a faulting instruction; exits with
    /// [`exit_code::PROBE_FAILED`] if it did not fault.
    Fault(FaultKind),
    /// Makes system call `number`, which the monitor does not have.
    BadSyscall {
        /// The call number.
        number: u64,
    },
    /// Logs `len` bytes from `address`, which is not the guest's.
    BadPointer {
        /// Virtual address of the text.
        address: u64,
    },
    /// Reads PVINFO (magic, vgt_id = `vgt_id`), writes `value` into the
    /// render ring's RING_START and reads it back; exits with
    /// [`exit_code::SUCCESS`] if everything read as expected.
    MmioEcho {
        /// The vGPU's vgt_id.
        vgt_id: u32,
        /// What to write (a page-aligned GM address of its aperture).
        value: u32,
    },
    /// `count` BAR0 reads, `count` `wait` calls and `count` RAM reads,
    /// each timed with RDTSC and reported with `measure`.
    Costs {
        /// Operations of each kind.
        count: u64,
    },
    /// Fills the 16 XMM registers and the x87 control word with values from
    /// `seed`, then `rounds` times yields and checks they are unchanged.
    Fpu {
        /// Pattern seed.
        seed: u64,
        /// Yields.
        rounds: u64,
    },
    /// `rounds` times: writes one byte to each of `count` RAM pages from
    /// driver-region index `first` plus the round's number (from 0),
    /// `stride` pages apart, then yields.
    Dirty {
        /// First page (index from [`DRIVER_INDEX`]).
        first: u64,
        /// Pages written each round.
        count: u64,
        /// Distance between them.
        stride: u64,
        /// Rounds.
        rounds: u64,
    },
    /// The hostile guest of the four-guest run ([`crate::attack`]): makes
    /// every stream and device attempt through its vGPU (each declared
    /// with `attempt`, each must be refused; it resets its vGPU after
    /// each), spins `iterations` turns without yielding, then reads
    /// `address` (another guest's RAM as the monitor maps it), which must
    /// kill it. Exits [`exit_code::PROBE_FAILED`] if it could not attack
    /// or something went through.
    Hostile {
        /// Loop turns.
        iterations: u64,
        /// Virtual address of the last attempt.
        address: u64,
        /// Graphics memory of another guest to aim at (0: outside its
        /// slices, by its own choice).
        victim: u64,
    },
    /// The hostile guest's benign twins ([`crate::attack::stream`] with
    /// `benign`), each declared with `attempt` as its attack would be:
    /// the monitor must find none of them refused. Exits
    /// [`exit_code::SUCCESS`] once each was submitted and its end awaited.
    Twins,
    /// Boots its driver (aperture page `i` then maps RAM page index `i`
    /// of the driver's region) and, with `A` the data pages of
    /// [`crate::driver::APERTURE_PROBE_PAGES`], in three rounds ending in
    /// a yield (the monitor looks between them): writes
    /// [`aperture_pattern`]`(0)` through aperture page `A[0]` and has the
    /// blitter copy that aperture page onto RAM page `A[1]`, which it
    /// checks; rebinds aperture page `A[0]` to `A[2]`, writes
    /// `aperture_pattern(1)` through it, and rebinds it to `A[3]`; unbinds
    /// it and reads through it, which must kill it. Exits
    /// [`exit_code::PROBE_FAILED`] if anything else happened.
    Aperture,
}

/// The page the [`Probe::Aperture`] guest writes in round `round`.
pub fn aperture_pattern(round: u32, out: &mut [u8; PAGE as usize]) {
    crate::content::fill(0xa9e7_0000, round, out);
}

/// What a guest runs: the image and its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// The workload image: boots its driver and runs `frames` frames (0:
    /// until the monitor asks it to finish) of `kind` with `seed`,
    /// reporting each with `frame`, then checks every data page.
    Workload {
        /// Which workload.
        kind: Kind,
        /// Its seed.
        seed: u64,
        /// Frames to run.
        frames: u64,
    },
    /// The workload image keeping its blitter busy: boots its driver, then
    /// until the TSC reads `until_tsc` keeps [`busy_depth`] fills of
    /// `pages` pages (one XY_COLOR_BLT each) queued, yielding in between,
    /// reporting each completed fill with `frame`; then waits for the last,
    /// checks the filled pages and exits. The four-busy-guests run of the
    /// vGPU scheduler's fairness (`ring3=busy,...`).
    Busy {
        /// Pages each fill writes.
        pages: u64,
        /// TSC value at which it stops queueing.
        until_tsc: u64,
    },
    /// The probe image.
    Probe(Probe),
}

/// Most fills a [`Program::Busy`] guest keeps queued.
pub const BUSY_DEPTH: usize = 32;
/// Pages a [`Program::Busy`] guest keeps queued: the same engine time
/// for every fill size, so that none has more left to run alone when
/// they all stop.
pub const BUSY_QUEUE_PAGES: u64 = 2048;

/// Fills a [`Program::Busy`] guest of `pages` pages a fill keeps queued.
pub const fn busy_depth(pages: u64) -> usize {
    let depth = BUSY_QUEUE_PAGES / if pages == 0 { 1 } else { pages };
    if depth < 1 {
        1
    } else if depth > BUSY_DEPTH as u64 {
        BUSY_DEPTH
    } else {
        depth as usize
    }
}

/// The guest images the monitor embeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    /// Runs a [`crate::Workload`].
    Workload,
    /// Runs a [`Probe`].
    Probe,
}

impl Image {
    /// Every image.
    pub const ALL: [Image; 2] = [Image::Workload, Image::Probe];
    /// Its name (also the ELF's file name without the `gmig-guest-` prefix).
    pub const fn name(self) -> &'static str {
        match self {
            Image::Workload => "workload",
            Image::Probe => "probe",
        }
    }
    const fn code(self) -> u32 {
        match self {
            Image::Workload => 1,
            Image::Probe => 2,
        }
    }
    fn from_code(code: u32) -> Option<Image> {
        Image::ALL.into_iter().find(|i| i.code() == code)
    }
}

impl Program {
    /// The image that runs it.
    pub const fn image(&self) -> Image {
        match self {
            Program::Workload { .. } | Program::Busy { .. } => Image::Workload,
            Program::Probe(_) => Image::Probe,
        }
    }

    /// Its name, for reports: the workload's kind or the probe's.
    pub const fn name(&self) -> &'static str {
        match self {
            Program::Workload { kind, .. } => kind.name(),
            Program::Busy { .. } => "busy",
            Program::Probe(p) => match p {
                Probe::Spin { .. } => "spin",
                Probe::Touch { .. } => "touch",
                Probe::Fault(k) => k.name(),
                Probe::BadSyscall { .. } => "bad-syscall",
                Probe::BadPointer { .. } => "bad-pointer",
                Probe::MmioEcho { .. } => "mmio-echo",
                Probe::Costs { .. } => "costs",
                Probe::Fpu { .. } => "fpu",
                Probe::Dirty { .. } => "dirty",
                Probe::Hostile { .. } => "hostile",
                Probe::Twins => "twins",
                Probe::Aperture => "aperture",
            },
        }
    }

    /// Its code and four arguments.
    fn encode(&self) -> (u32, [u64; 4]) {
        match *self {
            Program::Workload { kind, seed, frames } => (1, [kind_code(kind), seed, frames, 0]),
            Program::Busy { pages, until_tsc } => (2, [pages, until_tsc, 0, 0]),
            Program::Probe(p) => match p {
                Probe::Spin { iterations } => (16, [iterations, 0, 0, 0]),
                Probe::Touch { address, write } => (17, [address, u64::from(write), 0, 0]),
                Probe::Fault(k) => (18, [k as u64, 0, 0, 0]),
                Probe::BadSyscall { number } => (19, [number, 0, 0, 0]),
                Probe::BadPointer { address } => (20, [address, 0, 0, 0]),
                Probe::MmioEcho { vgt_id, value } => {
                    (21, [u64::from(vgt_id), u64::from(value), 0, 0])
                }
                Probe::Costs { count } => (22, [count, 0, 0, 0]),
                Probe::Fpu { seed, rounds } => (23, [seed, rounds, 0, 0]),
                Probe::Dirty {
                    first,
                    count,
                    stride,
                    rounds,
                } => (24, [first, count, stride, rounds]),
                Probe::Hostile {
                    iterations,
                    address,
                    victim,
                } => (25, [iterations, address, victim, 0]),
                Probe::Twins => (26, [0; 4]),
                Probe::Aperture => (27, [0; 4]),
            },
        }
    }

    fn decode(code: u32, a: [u64; 4]) -> Option<Program> {
        let narrow = |v: u64| u32::try_from(v).ok();
        Some(match code {
            1 => Program::Workload {
                kind: Kind::ALL.into_iter().find(|k| kind_code(*k) == a[0])?,
                seed: a[1],
                frames: a[2],
            },
            2 => Program::Busy {
                pages: a[0],
                until_tsc: a[1],
            },
            16 => Program::Probe(Probe::Spin { iterations: a[0] }),
            17 => Program::Probe(Probe::Touch {
                address: a[0],
                write: match a[1] {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            }),
            18 => Program::Probe(Probe::Fault(FaultKind::from_code(a[0])?)),
            19 => Program::Probe(Probe::BadSyscall { number: a[0] }),
            20 => Program::Probe(Probe::BadPointer { address: a[0] }),
            21 => Program::Probe(Probe::MmioEcho {
                vgt_id: narrow(a[0])?,
                value: narrow(a[1])?,
            }),
            22 => Program::Probe(Probe::Costs { count: a[0] }),
            23 => Program::Probe(Probe::Fpu {
                seed: a[0],
                rounds: a[1],
            }),
            24 => Program::Probe(Probe::Dirty {
                first: a[0],
                count: a[1],
                stride: a[2],
                rounds: a[3],
            }),
            25 => Program::Probe(Probe::Hostile {
                iterations: a[0],
                address: a[1],
                victim: a[2],
            }),
            26 => Program::Probe(Probe::Twins),
            27 => Program::Probe(Probe::Aperture),
            _ => return None,
        })
    }
}

fn kind_code(kind: Kind) -> u64 {
    match kind {
        Kind::Game3d => 1,
        Kind::Desktop2d => 2,
        Kind::Video => 3,
        Kind::Render3d => 4,
    }
}

/// Bytes of an encoded [`BootBlock`].
pub const BOOT_BLOCK_BYTES: usize = 64;
const BOOT_MAGIC: [u8; 4] = *b"GBT1";

/// What the monitor leaves at [`BOOT_BLOCK_VA`] before the guest starts.
///
/// Layout, little endian: magic `GBT1` (4 bytes), image code (u32), guest
/// id (u32), program code (u32), RAM pages (u64), four program arguments
/// (u64 each), 8 reserved bytes (zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootBlock {
    /// The guest's number in the monitor's reports.
    pub guest: u32,
    /// RAM pages from [`RAM_FIRST_PAGE`].
    pub ram_pages: u64,
    /// What to run.
    pub program: Program,
}

impl BootBlock {
    /// Its bytes.
    pub fn to_bytes(&self) -> [u8; BOOT_BLOCK_BYTES] {
        let mut b = [0u8; BOOT_BLOCK_BYTES];
        let (code, args) = self.program.encode();
        b[..4].copy_from_slice(&BOOT_MAGIC);
        b[4..8].copy_from_slice(&self.program.image().code().to_le_bytes());
        b[8..12].copy_from_slice(&self.guest.to_le_bytes());
        b[12..16].copy_from_slice(&code.to_le_bytes());
        b[16..24].copy_from_slice(&self.ram_pages.to_le_bytes());
        for (chunk, a) in b[24..56].chunks_exact_mut(8).zip(args) {
            chunk.copy_from_slice(&a.to_le_bytes());
        }
        b
    }

    /// The block from its bytes, if they are one for `image`.
    pub fn from_bytes(b: &[u8; BOOT_BLOCK_BYTES], image: Image) -> Option<BootBlock> {
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let quad = |at: usize| {
            let mut q = [0u8; 8];
            q.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(q)
        };
        if b[..4] != BOOT_MAGIC || Image::from_code(word(4))? != image {
            return None;
        }
        let args = [quad(24), quad(32), quad(40), quad(48)];
        let program = Program::decode(word(12), args)?;
        let ram_pages = quad(16);
        if program.image() != image || ram_pages < MIN_RAM_PAGES || b[56..].iter().any(|&x| x != 0)
        {
            return None;
        }
        Some(BootBlock {
            guest: word(8),
            ram_pages,
            program,
        })
    }

    /// The RAM the driver may use: its first guest page and page count.
    pub const fn driver_ram(&self) -> (u64, u64) {
        (RAM_FIRST_PAGE + DRIVER_INDEX, self.ram_pages - DRIVER_INDEX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_blocks_round_trip() {
        let programs = [
            Program::Workload {
                kind: Kind::Video,
                seed: 7,
                frames: 20,
            },
            Program::Busy {
                pages: 64,
                until_tsc: 1 << 40,
            },
            Program::Probe(Probe::Spin { iterations: 0 }),
            Program::Probe(Probe::Touch {
                address: 0x10_0000,
                write: true,
            }),
            Program::Probe(Probe::Fault(FaultKind::Gate)),
            Program::Probe(Probe::BadSyscall { number: 99 }),
            Program::Probe(Probe::BadPointer { address: 1 }),
            Program::Probe(Probe::MmioEcho {
                vgt_id: 3,
                value: 0x1000,
            }),
            Program::Probe(Probe::Costs { count: 100 }),
            Program::Probe(Probe::Fpu { seed: 1, rounds: 2 }),
            Program::Probe(Probe::Dirty {
                first: 1,
                count: 2,
                stride: 3,
                rounds: 4,
            }),
            Program::Probe(Probe::Hostile {
                iterations: 5,
                address: 6,
                victim: 7,
            }),
            Program::Probe(Probe::Twins),
            Program::Probe(Probe::Aperture),
        ];
        for program in programs {
            let block = BootBlock {
                guest: 2,
                ram_pages: MIN_RAM_PAGES,
                program,
            };
            let bytes = block.to_bytes();
            assert_eq!(BootBlock::from_bytes(&bytes, program.image()), Some(block));
            let other = match program.image() {
                Image::Workload => Image::Probe,
                Image::Probe => Image::Workload,
            };
            assert_eq!(BootBlock::from_bytes(&bytes, other), None, "{program:?}");
        }
    }

    #[test]
    fn malformed_boot_blocks_are_refused() {
        let block = BootBlock {
            guest: 0,
            ram_pages: MIN_RAM_PAGES,
            program: Program::Probe(Probe::Fault(FaultKind::Ud2)),
        };
        let good = block.to_bytes();
        let mut bad = good;
        bad[0] ^= 1;
        assert_eq!(BootBlock::from_bytes(&bad, Image::Probe), None, "magic");
        let mut bad = good;
        bad[24] = 0; // fault kind 0 does not exist
        assert_eq!(BootBlock::from_bytes(&bad, Image::Probe), None, "argument");
        let mut bad = good;
        bad[16..24].copy_from_slice(&(MIN_RAM_PAGES - 1).to_le_bytes());
        assert_eq!(BootBlock::from_bytes(&bad, Image::Probe), None, "too small");
        let mut bad = good;
        bad[60] = 1;
        assert_eq!(BootBlock::from_bytes(&bad, Image::Probe), None, "reserved");
    }
}
