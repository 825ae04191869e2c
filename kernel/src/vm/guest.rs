//! One ring-3 guest: its address space over its vGPU's RAM, its CPU state,
//! and the loop that runs it for a slice, emulating its BAR0 accesses and
//! serving its system calls until something ends the slice.
//!
//! # The aperture window
//! A GPU's aperture (BAR2) lets the CPU reach graphics memory: an access
//! at aperture offset `o` goes through the GGTT entry of GM page `o / 4096`
//! to the page that entry names. Each guest has the same: its virtual
//! BAR2 at `guest::abi::APERTURE_VA`, as many pages as the aperture slice
//! PVINFO grants, page `i` of it the frame behind the guest page that the
//! guest's own GGTT entry for aperture page `i` names (the entry the guest
//! wrote through its BAR0 GGTT window, which the vGPU has translated).
//! The window reaches nothing the guest's GPU side could not: an entry
//! names a page of the guest's own RAM or nothing (the vGPU refuses one
//! naming another page), and the window ends with the aperture slice.
//! The monitor keeps the window following the entries:
//!
//! * at creation and at a migration's arrival, from the vGPU's entries as
//!   they are (restored ones, on the destination);
//! * after each GGTT write the guest makes through BAR0 (that entry), and
//!   after a GDRST reset (every entry: the reset clears them), with the
//!   stale TLB entry flushed (the guest's CR3 is loaded then).
//!
//! An entry that names nothing leaves its page unmapped, and a guest
//! access to it is a page fault that kills that guest alone, reported as
//! an access to its aperture page whose GGTT entry maps nothing. i915
//! points every unbound GGTT entry at a scratch page, so that the GPU and
//! the CPU never reach an unbacked address, and a guest i915 does the same
//! with a scratch page of its own RAM: that is an entry naming a guest
//! page, which works here like any other. An entry with its present bit
//! clear is different: the vGPU writes no scratch page behind it but an
//! invalid host entry, which the GPU side treats as unbacked (an engine
//! access through it faults), and the CPU side agrees with it. A
//! monitor-wide scratch page would be a channel between guests (GVT-g's
//! GGTT scratch page is shared by all vGPUs), and a private one would
//! hide from the guest what its GPU side reports as a fault.
//!
//! Caching: the aperture is write-combining on hardware (a BAR behind the
//! GGTT); here the window maps the RAM frames themselves, which the
//! software GPU reads and writes as ordinary coherent memory, so it is
//! write-back like the RAM window. A backend with a real BAR2 would map
//! the host aperture's pages write-combining instead, and fence
//! (detiling) registers would then apply; neither exists on `SimGpu`.
//!
//! The window's PTE dirty bits are CPU-dirty evidence for a migration
//! like the RAM window's, each mapped back to the guest page its frame is
//! ([`Guest::take_dirty`]); a leaf replaced by a GGTT rewrite hands its
//! dirty bit on first, so a write through the aperture is never lost by
//! a later rebinding.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use gpu::addr::GuestPage;
use gpu::backend::PhysMem;
use gpu::partition::VgpuId;
use gpu::regs::{gdrst, GGTT_BAR0_OFFSET, GGTT_WINDOW_SIZE};
use gpu::vgpu::{AccessSize, FrameRuns, GuestMemoryMap, MmioEffect, VgpuError, REFUSED_READ};
use guest::abi::{
    self, BootBlock, Image, Program, APERTURE_MAX, APERTURE_VA, BAR0_SIZE, BAR0_VA,
    BOOT_BLOCK_INDEX, BOOT_BLOCK_VA, DRIVER_INDEX, IMAGE_INDEX, IMAGE_PAGES, MIN_RAM_PAGES, PAGE,
    RAM_FIRST_PAGE, STACK_INDEX, STACK_PAGES, STACK_TOP_VA,
};
use x86_64::registers::control::{Cr2, Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::attempts::{Attempts, Refused};
use super::cpu::{Clock, CpuState, CpuStateError, SAVED_BYTES, USER_FLAGS};
use super::decode::{self, DecodeError, Op, Width};
use super::image::{self, ImageError};
use super::space::{Perm, SpaceError, UserSpace};
use super::Runtime;
use crate::arch::apic;
use crate::arch::cpu::rdtsc;
use crate::arch::idt;
use crate::arch::ring3;
use crate::mem::FrameAllocator;
use crate::time::micros_since_boot;
use crate::vgpus::VgpuManager;

const PAGE_FAULT: u64 = 14;
// The image window, the guard page and the stack do not overlap.
const _: () = assert!(IMAGE_INDEX + IMAGE_PAGES < STACK_INDEX);
/// #PF error code bits (SDM vol. 3A, 4.7).
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_RESERVED: u64 = 1 << 3;
const PF_FETCH: u64 = 1 << 4;

/// Who is to blame for a guest's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The guest did something it may not.
    Guest,
    /// The monitor failed it (a bug or a shortage).
    Monitor,
}

/// A BAR0 access the monitor did not carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioFault {
    /// The instruction bytes at RIP are not readable code of the guest.
    Unreadable,
    /// The instruction is not one the monitor emulates.
    Decode(DecodeError),
    /// The monitor failed inside the vGPU (a refusal of the guest's own
    /// doing does not kill it: `Guest::refuse_mmio`).
    Vgpu(VgpuError),
    /// The guest's vGPU is gone (a monitor bug).
    NoVgpu,
    /// The aperture window could not follow a GGTT write (a monitor bug).
    Aperture(SpaceError),
}

/// A system call the monitor refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallFault {
    /// No such call.
    Unknown,
    /// A buffer that is not readable memory of the guest.
    BadBuffer {
        /// Its address.
        address: u64,
        /// Its length.
        len: u64,
    },
    /// An argument out of range.
    BadArgument {
        /// Which (0: RDI, 1: RSI, 2: RDX).
        index: u8,
        /// Its value.
        value: u64,
    },
}

/// Why a guest was killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// A CPU exception in ring 3.
    Exception {
        /// Vector.
        vector: u64,
        /// Error code (0 for vectors without one).
        error_code: u64,
        /// Where.
        rip: u64,
        /// The faulting address of a page fault.
        address: Option<u64>,
        /// The vGPU whose guest RAM that address is (in the monitor's
        /// mapping, which ring 3 cannot use), if it is any vGPU's.
        owner: Option<VgpuId>,
    },
    /// A BAR0 access the monitor could not carry out.
    Mmio {
        /// Where.
        rip: u64,
        /// BAR0 offset.
        offset: u64,
        /// A store, not a load.
        write: bool,
        /// Why.
        fault: MmioFault,
    },
    /// A refused system call.
    Syscall {
        /// Where (after the `int 0x80`).
        rip: u64,
        /// Its number.
        number: u64,
        /// Why.
        fault: SyscallFault,
    },
    /// The monitor stopped it (`reason`).
    Stopped {
        /// Why.
        reason: &'static str,
    },
}

impl Kill {
    /// Who is to blame; nobody when the monitor stopped a guest that did
    /// nothing wrong.
    pub fn blame(&self) -> Option<Blame> {
        match self {
            Kill::Mmio {
                fault:
                    MmioFault::NoVgpu | MmioFault::Vgpu(VgpuError::Monitor(_)) | MmioFault::Aperture(_),
                ..
            } => Some(Blame::Monitor),
            Kill::Stopped { .. } => None,
            _ => Some(Blame::Guest),
        }
    }

    /// The exception vector, where there is one.
    pub fn vector(&self) -> Option<u64> {
        match self {
            Kill::Exception { vector, .. } => Some(*vector),
            _ => None,
        }
    }
}

/// What a page-fault error code and address say, in words.
fn page_fault_words(error: u64, address: u64) -> (&'static str, &'static str) {
    let access = if error & PF_FETCH != 0 {
        "instruction fetch"
    } else if error & PF_WRITE != 0 {
        "write"
    } else {
        "read"
    };
    let what = if error & PF_RESERVED != 0 {
        "a page table entry with reserved bits (monitor bug)"
    } else if (BAR0_VA..BAR0_VA + BAR0_SIZE).contains(&address) {
        "its virtual BAR0 (which is not code)"
    } else if (abi::USER_BASE..abi::USER_BASE + abi::USER_SLOT_SIZE).contains(&address) {
        if error & PF_PRESENT != 0 {
            "its own page, which does not allow this access"
        } else {
            "an address of its slot with nothing mapped (not its RAM, not its BAR0)"
        }
    } else if error & PF_PRESENT != 0 {
        "a supervisor-only page: the monitor's memory"
    } else {
        "an address outside its address space, not mapped at all"
    };
    (access, what)
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Kill::Exception {
                vector,
                error_code,
                rip,
                address,
                owner,
            } => {
                write!(
                    f,
                    "vector {vector} {} at RIP={rip:#x}",
                    idt::vector_name(vector)
                )?;
                match (address, owner) {
                    (Some(a), Some(vgpu)) => {
                        let (access, _) = page_fault_words(error_code, a);
                        write!(
                            f,
                            ": {access} of {a:#x}, the RAM of {vgpu}'s guest (mapped for the monitor only)"
                        )
                    }
                    (Some(a), None)
                        if (APERTURE_VA..APERTURE_VA + APERTURE_MAX).contains(&a)
                            && error_code & PF_PRESENT == 0 =>
                    {
                        let (access, _) = page_fault_words(error_code, a);
                        write!(
                            f,
                            ": {access} of {a:#x}, page {} of its aperture window, whose GGTT entry maps nothing (or which lies beyond its aperture slice)",
                            (a - APERTURE_VA) / PAGE
                        )
                    }
                    (Some(a), None) => {
                        let (access, what) = page_fault_words(error_code, a);
                        write!(f, ": {access} of {a:#x}, {what}")
                    }
                    (None, _) if error_code != 0 => write!(f, " (error code {error_code:#x})"),
                    (None, _) => Ok(()),
                }
            }
            Kill::Mmio {
                rip,
                offset,
                write,
                fault,
            } => {
                let access = if write { "write" } else { "read" };
                write!(
                    f,
                    "BAR0 {access} at BAR0+{offset:#x} (RIP={rip:#x}) refused: "
                )?;
                match fault {
                    MmioFault::Unreadable => f.write_str("the instruction is not readable code"),
                    MmioFault::Decode(e) => write!(f, "{e}"),
                    MmioFault::Vgpu(e) => write!(f, "{e}"),
                    MmioFault::NoVgpu => f.write_str("the guest's vGPU is gone (monitor bug)"),
                    MmioFault::Aperture(e) => {
                        write!(f, "the aperture window did not follow (monitor bug): {e}")
                    }
                }
            }
            Kill::Syscall { rip, number, fault } => {
                write!(f, "system call {number} at RIP={rip:#x} refused: ")?;
                match fault {
                    SyscallFault::Unknown => f.write_str("no such call"),
                    SyscallFault::BadBuffer { address, len } => write!(
                        f,
                        "{len} bytes at {address:#x} are not memory the guest may read"
                    ),
                    SyscallFault::BadArgument { index, value } => {
                        write!(f, "argument {index} = {value:#x} is out of range")
                    }
                }
            }
            Kill::Stopped { reason } => write!(f, "by the monitor: {reason}"),
        }
    }
}

/// Where a guest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Ready to run.
    Runnable,
    /// Blocked in `wait` until its vGPU is idle.
    Waiting,
    /// Paced: its next frame is not due before `until_us` (monitor clock).
    Sleeping {
        /// When it may run again.
        until_us: u64,
    },
    /// Stopped by the monitor between two slices (a migration saves it);
    /// it runs again only when released.
    Held,
    /// Ended with an exit code.
    Exited(u64),
    /// Killed.
    Killed(Kill),
}

impl RunState {
    /// Whether it has ended.
    pub fn ended(&self) -> bool {
        matches!(self, RunState::Exited(_) | RunState::Killed(_))
    }
    /// One word for reports.
    pub fn name(&self) -> &'static str {
        match self {
            RunState::Runnable => "runnable",
            RunState::Waiting => "waiting",
            RunState::Sleeping { .. } => "sleeping",
            RunState::Held => "held",
            RunState::Exited(0) => "exited",
            RunState::Exited(_) => "failed",
            RunState::Killed(_) => "killed",
        }
    }
}

/// How a slice ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceEnd {
    /// The timer took the CPU back.
    Preempted,
    /// The guest yielded.
    Yielded,
    /// The guest waits for its vGPU.
    Waiting,
    /// The guest reported a frame and its next one is not due yet.
    Sleeping {
        /// When it is (monitor clock, microseconds).
        until_us: u64,
    },
    /// It exited with a code.
    Exited(u64),
    /// It was killed.
    Killed(Kill),
}

/// Counters of one guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Trapped BAR0 loads and stores emulated.
    pub mmio_exits: u64,
    /// Of which stores.
    pub mmio_writes: u64,
    /// System calls served.
    pub syscalls: u64,
    /// Slices the timer ended.
    pub preemptions: u64,
    /// Slices run.
    pub slices: u64,
    /// TSC cycles on the CPU (its slices, monitor work in them included).
    pub cpu_cycles: u64,
    /// TSC cycles the monitor spent emulating BAR0 accesses (from the
    /// exit to the next entry).
    pub mmio_cycles: u64,
    /// TSC cycles the monitor spent serving system calls.
    pub syscall_cycles: u64,
    /// Frames the guest reported.
    pub frames: u64,
    /// Submissions its frame reports counted.
    pub submissions: u64,
    /// The probe's timings: (total cycles, count) per [`abi::Measure`].
    pub measures: [Option<(u64, u64)>; 3],
    /// BAR0 accesses the vGPU refused (the guest went on; see
    /// [`Guest::run`]).
    pub mmio_refused: u64,
}

impl Stats {
    /// Adds `other`'s counts (the probe's timings stay).
    fn add(&mut self, other: &Stats) {
        self.mmio_exits += other.mmio_exits;
        self.mmio_writes += other.mmio_writes;
        self.syscalls += other.syscalls;
        self.preemptions += other.preemptions;
        self.slices += other.slices;
        self.cpu_cycles += other.cpu_cycles;
        self.mmio_cycles += other.mmio_cycles;
        self.syscall_cycles += other.syscall_cycles;
        self.frames += other.frames;
        self.submissions += other.submissions;
    }
}

/// Frames a guest reported: the last, (up to a bound) each checksum, so
/// that a test can compare two runs frame by frame, and when they came on
/// the guest's clock ([`Guest::clock_us`]).
#[derive(Clone, Debug, Default)]
pub struct FrameLog {
    /// The last frame's number and checksum.
    pub last: Option<(u64, u64)>,
    /// (frame, checksum) in the order reported, the first [`FRAME_LOG`].
    pub all: Vec<(u64, u64)>,
    /// The guest's clock at the last frame report.
    pub last_at_us: Option<u64>,
    /// Intervals between consecutive reports on this monitor, the one
    /// across a migration left out: their count, sum and largest.
    pub intervals: u64,
    /// Sum of those intervals.
    pub interval_sum_us: u64,
    /// The largest of them.
    pub interval_max_us: u64,
    /// The interval from the last frame before a migration to the first
    /// after it, on the guest's clock (its downtime as it saw it); set at
    /// the first frame after [`Guest::attach`].
    pub migration_gap_us: Option<u64>,
    /// A migration brought the guest here and it has not reported since.
    resumed: bool,
}

impl FrameLog {
    /// Notes frame `frame` with `checksum` at guest time `at_us`.
    pub(super) fn note(&mut self, frame: u64, checksum: u64, at_us: u64) {
        if let Some(before) = self.last_at_us {
            let interval = at_us.saturating_sub(before);
            if core::mem::take(&mut self.resumed) {
                self.migration_gap_us = Some(interval);
            } else {
                self.intervals += 1;
                self.interval_sum_us += interval;
                self.interval_max_us = self.interval_max_us.max(interval);
            }
        }
        self.last = Some((frame, checksum));
        self.last_at_us = Some(at_us);
        if self.all.len() < FRAME_LOG {
            self.all.push((frame, checksum));
        }
    }

    /// The mean interval between frames, if there were two.
    pub fn mean_interval_us(&self) -> Option<u64> {
        self.interval_sum_us.checked_div(self.intervals)
    }
}

/// Write sets of a guest's submissions (the scanner's write targets), for
/// a migration's evidence. A set is known when the submission is scanned,
/// but the GPU writes while the work runs, which may be after the
/// migration sent the page: so each set is handed out twice, when it is
/// new ([`WriteLog::take_new`]) and once the guest's vGPU has been seen
/// idle after it ([`WriteLog::take_ended`]), when its writes are done.
/// While no migration watches the log, it keeps only the sets of work
/// that may still run (it forgets them each time the vGPU is seen idle),
/// so a migration that starts finds exactly the work in flight.
#[derive(Debug, Default)]
pub struct WriteLog {
    new: heapless::Vec<gpu::scan::WriteSet, 16>,
    in_flight: heapless::Vec<gpu::scan::WriteSet, 16>,
    /// Some new submission may have written pages no set lists (or the
    /// log overflowed): treat all of the vGPU's memory as written.
    pub untracked: bool,
    in_flight_untracked: bool,
    watched: bool,
    /// Submissions whose writes the scanner could not name, ever.
    pub untracked_submissions: u64,
}

/// Write sets handed out by [`WriteLog`]: the sets, and whether some
/// submission among them wrote what no set lists.
pub type WriteSets = (heapless::Vec<gpu::scan::WriteSet, 16>, bool);

impl WriteLog {
    /// Adds the write set of an accepted submission.
    pub fn push(&mut self, set: &gpu::scan::WriteSet) {
        self.untracked_submissions += u64::from(set.untracked);
        if set.untracked || self.new.push(*set).is_err() {
            self.untracked = true;
        }
    }

    /// A migration takes the log from now on (`true`), or no more.
    pub fn watch(&mut self, on: bool) {
        self.watched = on;
        if !on {
            self.in_flight.clear();
            self.in_flight_untracked = false;
        }
    }

    /// The guest's vGPU was seen idle: every set so far has ended. Unless
    /// a migration watches, they are forgotten.
    pub fn seen_idle(&mut self) {
        if !self.watched {
            self.new.clear();
            self.untracked = false;
        }
    }

    /// The sets added since the last call; they stay in flight until
    /// [`WriteLog::take_ended`].
    pub fn take_new(&mut self) -> WriteSets {
        let new = core::mem::take(&mut self.new);
        for set in &new {
            if self.in_flight.push(*set).is_err() {
                self.in_flight_untracked = true;
            }
        }
        let untracked = core::mem::take(&mut self.untracked);
        self.in_flight_untracked |= untracked;
        (new, untracked)
    }

    /// The sets in flight, whose work has ended (call only when the
    /// guest's vGPU is idle, or stopped).
    pub fn take_ended(&mut self) -> WriteSets {
        (
            core::mem::take(&mut self.in_flight),
            core::mem::take(&mut self.in_flight_untracked),
        )
    }
}

/// Frames [`FrameLog::all`] keeps.
pub const FRAME_LOG: usize = 1024;

/// Why a guest could not be made (the monitor's side: wrong setup, a bad
/// embedded image, no memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The vGPU index names no vGPU.
    NoVgpu,
    /// Its RAM is not one run of pages from `RAM_FIRST_PAGE` of at least
    /// `MIN_RAM_PAGES`.
    BadRam {
        /// Pages it has.
        pages: u64,
    },
    /// The image does not load.
    Image(ImageError),
    /// The page tables could not be built.
    Space(SpaceError),
    /// Guest RAM could not be written.
    Memory,
    /// A restored CPU state is not valid.
    Cpu(CpuStateError),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::NoVgpu => f.write_str("no such vGPU"),
            CreateError::BadRam { pages } => write!(
                f,
                "the vGPU's RAM ({pages} pages) is not one run from page {RAM_FIRST_PAGE:#x} of at least {MIN_RAM_PAGES} pages"
            ),
            CreateError::Image(e) => write!(f, "guest image: {e}"),
            CreateError::Space(e) => write!(f, "guest page tables: {e}"),
            CreateError::Memory => f.write_str("guest RAM is not GPU memory (monitor bug)"),
            CreateError::Cpu(e) => write!(f, "{e}"),
        }
    }
}

/// A ring-3 guest.
#[derive(Debug)]
pub struct Guest {
    /// Its number in reports.
    pub id: u32,
    /// What it runs.
    pub program: Program,
    /// Its vGPU (by partition: manager indices move when vGPUs go).
    pub vgpu: VgpuId,
    ram_pages: u64,
    /// Physical address of RAM page index 0 (the RAM is one run).
    ram_base: u64,
    /// The aperture window: the guest GGTT index of its first page, and
    /// its pages (the guest's view of its aperture slice).
    aperture: (u64, u64),
    /// RAM pages written through aperture leaves that a GGTT rewrite
    /// replaced, and (within [`Guest::take_dirty`]) every dirty page:
    /// one bit per RAM page.
    dirty_pages: Vec<u64>,
    pub(super) space: UserSpace,
    pub(super) cpu: Box<CpuState>,
    pub(super) state: RunState,
    /// Counters.
    pub stats: Stats,
    /// Frames it reported.
    pub frames: FrameLog,
    /// Write sets of its accepted submissions (the scanner's write
    /// targets), for the migration (on the heap: some KiB).
    pub writes: Box<WriteLog>,
    /// Added to the monitor's clock, the guest's (wrapping: the guest's
    /// clock may be behind the monitor's or ahead of it).
    clock_offset_us: u64,
    /// Frame pacing: the guest's frames come at most this often.
    pub(super) frame_period_us: Option<u64>,
    /// When its next frame is due (monitor clock), when paced.
    pub(super) next_frame_us: u64,
    /// The monitor asks it to finish ([`guest::abi::syscall::FRAME_FINISH`]).
    pub(super) finish: bool,
    /// Its vGPU's stop was logged.
    stop_logged: bool,
    /// Its declared attempts and the monitor's verdict on each.
    pub attempts: Attempts,
}

/// Where a guest's GPU work stands (after a poll).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgpuProgress {
    /// Nothing queued or running: every submission it made has ended.
    Idle,
    /// Work queued or on an engine.
    Busy,
    /// The vGPU stopped (a rejected submission, a guest fault on the
    /// write path, a GPU fault); its queue was dropped.
    Failed,
}

/// What the loop does after an exit.
pub(super) enum Next {
    /// Resume the guest.
    Resume,
    /// End the slice.
    End(SliceEnd),
}

/// RAM pages of vGPU `hosted.memory`, if they are one run from
/// `RAM_FIRST_PAGE`.
fn ram_pages(memory: &FrameRuns<4>) -> Result<u64, CreateError> {
    let runs = memory.runs();
    let pages = runs.iter().map(|r| r.count).sum();
    match runs {
        [run] if run.first_page.number() == RAM_FIRST_PAGE && pages >= MIN_RAM_PAGES => Ok(pages),
        _ => Err(CreateError::BadRam { pages }),
    }
}

fn frame_of(memory: &FrameRuns<4>, index: u64) -> Result<u64, CreateError> {
    let page = GuestPage::new(RAM_FIRST_PAGE + index).map_err(|_| CreateError::Memory)?;
    memory
        .frame_of(page)
        .map(|f| f.start().raw())
        .ok_or(CreateError::Memory)
}

impl Guest {
    /// A new guest on vGPU `index` of `m` (whose RAM it runs in): the
    /// program's image loaded into RAM, the boot block written, page
    /// tables built, registers at the image's entry point.
    pub fn create(
        rt: &Runtime,
        frames: &mut FrameAllocator,
        m: &mut VgpuManager,
        index: usize,
        id: u32,
        program: Program,
    ) -> Result<Guest, CreateError> {
        let hosted = m.vgpus.get(index).ok_or(CreateError::NoVgpu)?;
        let ram = ram_pages(&hosted.memory)?;
        let file = image::elf(program.image());
        let loaded = image::parse(file).map_err(CreateError::Image)?;
        let boot = BootBlock {
            guest: id,
            ram_pages: ram,
            program,
        };
        let memory = hosted.memory.clone();
        let ram_write = |m: &mut VgpuManager, va: u64, data: &[u8]| {
            let index = (va - abi::ram_index_va(0)) / PAGE;
            let at = frame_of(&memory, index)? + va % PAGE;
            let at = gpu::addr::PhysAddr::new(at).map_err(|_| CreateError::Memory)?;
            m.device
                .memory_mut()
                .write(at, data)
                .map_err(|_| CreateError::Memory)
        };
        ram_write(m, BOOT_BLOCK_VA, &boot.to_bytes())?;
        for segment in loaded.segments() {
            // Page by page: the frames behind consecutive pages are the
            // vGPU's run, but write through the one checked path anyway.
            let bytes = &file[segment.file_offset as usize..][..segment.file_size as usize];
            let mut done = 0u64;
            while done < segment.file_size {
                let va = segment.vaddr + done;
                let n = (PAGE - va % PAGE).min(segment.file_size - done);
                ram_write(m, va, &bytes[done as usize..(done + n) as usize])?;
                done += n;
            }
        }
        let cpu = CpuState::initial(loaded.entry, STACK_TOP_VA, BOOT_BLOCK_VA);
        Self::build(rt, frames, m, index, id, program, &loaded, cpu)
    }

    /// A guest on vGPU `index` whose RAM already holds a guest of
    /// `program` (moved there by a migration), resumed from its saved CPU
    /// state `cpu` ([`Guest::save_cpu`]). Its clock goes on from the saved
    /// value as of `saved_at_us` (this monitor's clock), so that the time
    /// since then counts as time the guest was stopped.
    #[allow(clippy::too_many_arguments)] // reason: a guest's whole placement
    pub fn attach(
        rt: &Runtime,
        frames: &mut FrameAllocator,
        m: &mut VgpuManager,
        index: usize,
        id: u32,
        program: Program,
        cpu: &[u8],
        saved_at_us: u64,
    ) -> Result<Guest, CreateError> {
        let loaded = image::parse(image::elf(program.image())).map_err(CreateError::Image)?;
        let mut guest = Self::build(
            rt,
            frames,
            m,
            index,
            id,
            program,
            &loaded,
            CpuState::initial(loaded.entry, STACK_TOP_VA, BOOT_BLOCK_VA),
        )?;
        match guest.restore_cpu(cpu, saved_at_us) {
            Ok(()) => Ok(guest),
            Err(e) => {
                guest.destroy(frames);
                Err(CreateError::Cpu(e))
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // reason: the two constructors' common part
    fn build(
        rt: &Runtime,
        frames: &mut FrameAllocator,
        m: &mut VgpuManager,
        index: usize,
        id: u32,
        program: Program,
        loaded: &image::Loaded,
        cpu: CpuState,
    ) -> Result<Guest, CreateError> {
        let hosted = m.vgpus.get(index).ok_or(CreateError::NoVgpu)?;
        let ram = ram_pages(&hosted.memory)?;
        let view = hosted.vgpu.translation().guest_view().aperture;
        let aperture = (
            view.base().raw() / PAGE,
            (view.len() / PAGE).min(APERTURE_MAX / PAGE),
        );
        let mut space = UserSpace::new(frames, rt.monitor_root).map_err(CreateError::Space)?;
        let mut map = |space: &mut UserSpace, index: u64, perm: Perm| {
            let phys = frame_of(&hosted.memory, index)?;
            space
                .map(frames, abi::ram_index_va(index), phys, perm)
                .map_err(CreateError::Space)
        };
        let built = (|| {
            map(&mut space, BOOT_BLOCK_INDEX, Perm::Read)?;
            for (i, perm) in loaded.pages.iter().enumerate() {
                if let Some(perm) = *perm {
                    map(&mut space, IMAGE_INDEX + i as u64, perm)?;
                }
            }
            for i in STACK_INDEX..STACK_INDEX + STACK_PAGES {
                map(&mut space, i, Perm::ReadWrite)?;
            }
            for i in DRIVER_INDEX..ram {
                map(&mut space, i, Perm::ReadWrite)?;
            }
            Ok(())
        })()
        .and_then(|()| {
            space
                .reserve(frames, APERTURE_VA, aperture.1)
                .map_err(CreateError::Space)
        });
        if let Err(e) = built {
            space.free(frames);
            return Err(e);
        }
        let ram_base = frame_of(&hosted.memory, 0)?;
        let mut guest = Guest {
            id,
            program,
            vgpu: hosted.partition.id(),
            ram_pages: ram,
            ram_base,
            aperture,
            dirty_pages: alloc::vec![0; ram.div_ceil(64) as usize],
            space,
            cpu: Box::new(cpu),
            state: RunState::Runnable,
            stats: Stats::default(),
            frames: FrameLog::default(),
            writes: Box::default(),
            clock_offset_us: 0u64.wrapping_sub(micros_since_boot()),
            frame_period_us: None,
            next_frame_us: 0,
            finish: false,
            stop_logged: false,
            attempts: Attempts::new(program == Program::Probe(abi::Probe::Twins)),
        };
        // The window as the vGPU's entries are now (restored ones, after a
        // migration); nothing of it is dirty yet.
        if let Err(e) = guest.follow_aperture(m, 0..aperture.1) {
            guest.space.free(frames);
            return Err(CreateError::Space(e));
        }
        guest.dirty_pages.fill(0);
        Ok(guest)
    }

    /// Makes aperture pages `pages` of the window map what the vGPU's
    /// GGTT entries for them name now (see the module docs); the dirty bit
    /// of each leaf it replaces is kept in `dirty_pages`.
    fn follow_aperture(
        &mut self,
        m: &mut VgpuManager,
        pages: core::ops::Range<u64>,
    ) -> Result<(), SpaceError> {
        let Some(hosted) = m.vgpus.iter().find(|h| h.partition.id() == self.vgpu) else {
            return Ok(());
        };
        let backend = m.device.backend();
        for i in pages {
            let frame = gpu::addr::GuestGgttIndex::new(self.aperture.0 + i)
                .ok()
                .and_then(|index| hosted.vgpu.guest_pte(backend, &hosted.memory, index).ok())
                .and_then(|pte| pte.page())
                .and_then(|page| hosted.memory.frame_of(page));
            let to = frame.map(|f| (f.start().raw(), Perm::ReadWrite));
            if let Some((old, true)) = self.space.set_leaf(abi::aperture_va(i), to)? {
                self.mark_dirty_frame(old);
            }
        }
        Ok(())
    }

    /// Notes the RAM page at frame `phys` as written.
    fn mark_dirty_frame(&mut self, phys: u64) {
        mark_dirty(&mut self.dirty_pages, self.ram_base, self.ram_pages, phys);
    }

    /// Follows a BAR0 write at `offset` the vGPU accepted, if it changed
    /// the guest's aperture entries: a GGTT entry of its aperture slice,
    /// or a GDRST reset (which clears them all).
    fn follow_bar0_write(&mut self, m: &mut VgpuManager, offset: u64) -> Result<(), SpaceError> {
        let ggtt = u64::from(GGTT_BAR0_OFFSET)..u64::from(GGTT_BAR0_OFFSET + GGTT_WINDOW_SIZE);
        if ggtt.contains(&offset) {
            let i = ((offset - ggtt.start) / 8).wrapping_sub(self.aperture.0);
            if i < self.aperture.1 {
                return self.follow_aperture(m, i..i + 1);
            }
        } else if offset == u64::from(gdrst::OFFSET.raw()) {
            return self.follow_aperture(m, 0..self.aperture.1);
        }
        Ok(())
    }

    /// The pages of its aperture window (its aperture slice's).
    pub fn aperture_pages(&self) -> u64 {
        self.aperture.1
    }

    /// The RAM page aperture page `index` of its window maps, as its page
    /// tables say (for tests).
    pub fn aperture_page(&self, index: u64) -> Option<GuestPage> {
        let phys = self.space.translate(abi::aperture_va(index), false)?;
        let ram = phys.wrapping_sub(self.ram_base) / PAGE;
        (ram < self.ram_pages)
            .then(|| GuestPage::new(RAM_FIRST_PAGE + ram).ok())
            .flatten()
    }

    /// Where it is.
    pub fn state(&self) -> RunState {
        self.state
    }
    /// RAM pages, from `RAM_FIRST_PAGE`.
    pub fn ram_pages(&self) -> u64 {
        self.ram_pages
    }
    /// The image it runs.
    pub fn image(&self) -> Image {
        self.program.image()
    }

    /// Its CPU state in the saved form (`vm::cpu`), with its clock: with
    /// its RAM, all there is of it. Only between slices (it is not running
    /// then).
    pub fn save_cpu(&self) -> [u8; SAVED_BYTES] {
        let clock = Clock {
            now_us: self.clock_us(),
            last_frame_us: self.frames.last_at_us,
        };
        self.cpu.save(self.image(), clock)
    }

    /// Replaces its CPU state with a saved one (of a guest of the same
    /// image) and makes it runnable: it goes on from there, its clock from
    /// the saved value as of `saved_at_us` (this monitor's clock).
    pub fn restore_cpu(&mut self, saved: &[u8], saved_at_us: u64) -> Result<(), CpuStateError> {
        let (cpu, clock) = CpuState::restore(saved, self.image())?;
        *self.cpu = cpu;
        self.clock_offset_us = clock.now_us.wrapping_sub(saved_at_us);
        self.frames.last_at_us = clock.last_frame_us;
        self.frames.resumed = true;
        self.state = RunState::Runnable;
        Ok(())
    }

    /// Takes over the frame log and the counters of `source`, the same
    /// guest before a migration inside this monitor (they are the
    /// monitor's records, not the guest's state), so that they read as one
    /// run.
    pub fn carry_records_from(&mut self, source: &mut Guest) {
        let resumed = self.frames.resumed;
        self.frames = core::mem::take(&mut source.frames);
        self.frames.resumed = resumed;
        let here = self.stats;
        self.stats = source.stats;
        self.stats.add(&here);
    }

    /// The guest's clock (microseconds): the monitor's since the guest was
    /// made, carried over by a migration (what a virtual machine's TSC
    /// is). Frame reports are stamped with it.
    pub fn clock_us(&self) -> u64 {
        micros_since_boot().wrapping_add(self.clock_offset_us)
    }

    /// Paces the guest's frames to one every `period_us` (a display's
    /// refresh): a frame report that comes early returns at the frame's
    /// time. `None`: as fast as it goes.
    pub fn pace(&mut self, period_us: Option<u64>) {
        self.frame_period_us = period_us;
        self.next_frame_us = micros_since_boot();
    }

    /// Its frame pacing ([`Guest::pace`]).
    pub fn frame_period(&self) -> Option<u64> {
        self.frame_period_us
    }

    /// Asks a workload to finish: its next frame report says so, and it
    /// makes its final check and exits.
    pub fn request_finish(&mut self) {
        self.finish = true;
    }

    /// Stops a guest that has not ended between slices (for a migration);
    /// it does not run until [`Guest::release`]. A `wait` it was in is made
    /// again then (`vm::syscall`); a frame it slept towards comes at once.
    pub fn hold(&mut self) {
        if !self.state.ended() {
            self.state = RunState::Held;
        }
    }

    /// Lets a held guest run again.
    pub fn release(&mut self) {
        if self.state == RunState::Held {
            self.state = RunState::Runnable;
        }
    }

    /// Calls `f` with every RAM page the guest's CPU wrote since the last
    /// call, in ascending order, each once: the PTE dirty bits of its RAM
    /// window and of its aperture window (by the frame the aperture page
    /// maps), cleared (`vm::space`), and the pages written through
    /// aperture leaves replaced since. Returns how many.
    pub fn take_dirty(&mut self, mut f: impl FnMut(GuestPage)) -> u64 {
        let (base, pages) = (self.ram_base, self.ram_pages);
        let dirty = &mut self.dirty_pages;
        // Both windows map RAM frames: each dirty leaf is the page its
        // frame is (for the RAM window, also the page its address names).
        self.space
            .take_dirty(|_, phys| mark_dirty(dirty, base, pages, phys));
        let mut count = 0;
        for (w, word) in self.dirty_pages.iter_mut().enumerate() {
            let mut bits = core::mem::take(word);
            while bits != 0 {
                let index = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if let Ok(page) = GuestPage::new(RAM_FIRST_PAGE + index) {
                    f(page);
                    count += 1;
                }
            }
        }
        count
    }

    /// Forgets the dirty bits: every page counts as clean from now on.
    pub fn clear_dirty(&mut self) {
        self.take_dirty(|_| {});
    }

    /// The page-table view of a RAM page (accessed, dirty), for tests.
    pub fn page_bits(&self, page: GuestPage) -> Option<(bool, bool)> {
        self.space.accessed_dirty(abi::ram_va(page.number()))
    }

    /// Stops the guest for good (it is not running: one CPU). A kill for
    /// its own fault refuses its open attempt, if any.
    pub fn kill(&mut self, kill: Kill) {
        if !self.state.ended() {
            self.state = RunState::Killed(kill);
            report_kill(self.id, self.program.name(), &kill);
            if kill.blame() == Some(Blame::Guest) {
                self.attempts.refused(Refused::Fault);
            }
            self.attempts.close(self.id, self.program.name());
        }
    }

    /// For an open attempt: whether its vGPU stopped during it (the
    /// scanner's rejection happens at dispatch, in a poll outside the
    /// guest's exits, so the stop is looked for at each exit).
    pub(super) fn observe_vgpu(&mut self, m: &VgpuManager) {
        if !self.attempts.is_open() {
            return;
        }
        if let Some(hosted) = m.vgpus.iter().find(|h| h.partition.id() == self.vgpu) {
            if let gpu::vgpu::VgpuState::Failed(reason) = hosted.vgpu.state() {
                self.attempts.vgpu_stopped(reason);
            }
        }
        if self.attempts.watching_scratch() && m.scratch_written(self.vgpu) {
            self.attempts
                .refused(Refused::Contained(super::attempts::Containment::Scratch));
        }
    }

    /// Where its GPU work stands, as of the last poll (`None`: its vGPU
    /// is gone, a monitor bug). Each stop is logged once, with its reason
    /// (on the console only outside a declared attempt, whose verdict
    /// says it).
    pub fn vgpu_progress(&mut self, m: &VgpuManager) -> Option<VgpuProgress> {
        let hosted = m.vgpus.iter().find(|h| h.partition.id() == self.vgpu)?;
        if let gpu::vgpu::VgpuState::Failed(reason) = hosted.vgpu.state() {
            if !self.stop_logged {
                self.stop_logged = true;
                if !self.attempts.is_open() {
                    crate::println!(
                        "gmig-rs: guest {} ({}): its vGPU stopped: {reason}",
                        self.id,
                        self.program.name()
                    );
                }
                defmt::warn!(
                    "guest {=u32} ({=str}): its vGPU stopped: {}",
                    self.id,
                    self.program.name(),
                    defmt::Display2Format(&reason)
                );
            }
            // What still runs of it ends by itself; nothing of it waits.
            return Some(VgpuProgress::Failed);
        }
        // Running (again, after a reset): its next stop is news.
        self.stop_logged = false;
        Some(if hosted.vgpu.is_idle() {
            VgpuProgress::Idle
        } else {
            VgpuProgress::Busy
        })
    }

    /// Takes the write sets of its submissions dispatched since the last
    /// call from the gate (call after each poll of the GPU).
    pub fn collect_writes(&mut self, m: &mut VgpuManager) {
        if let Some(index) = m.vgpus.iter().position(|h| h.partition.id() == self.vgpu) {
            m.collect_writes(index, &mut self.writes);
            if m.vgpus[index].vgpu.is_idle() {
                // Everything it dispatched has ended.
                self.writes.seen_idle();
            }
        }
    }

    /// Wakes a waiting guest whose GPU work has ended (or whose vGPU
    /// stopped: its `wait` then says so), as of the last poll of the GPU
    /// (the caller's, [`super::Scheduler::step`]), and a sleeping one
    /// whose frame is due.
    pub fn wake_if_ready(&mut self, m: &VgpuManager) {
        if let RunState::Sleeping { until_us } = self.state {
            if micros_since_boot() >= until_us {
                self.state = RunState::Runnable;
            }
            return;
        }
        if self.state != RunState::Waiting {
            return;
        }
        match self.vgpu_progress(m) {
            Some(VgpuProgress::Busy) => {}
            Some(VgpuProgress::Idle | VgpuProgress::Failed) => self.state = RunState::Runnable,
            None => self.kill(Kill::Mmio {
                rip: self.cpu.frame.rip,
                offset: 0,
                write: false,
                fault: MmioFault::NoVgpu,
            }),
        }
    }

    /// Frees its page tables (its RAM is its vGPU's, freed with it).
    pub fn destroy(self, frames: &mut FrameAllocator) {
        self.space.free(frames);
    }

    /// Runs the guest for up to `budget` TSC cycles; BAR0 accesses and
    /// system calls that resume it are handled inside the slice.
    pub fn run(&mut self, rt: &Runtime, m: &mut VgpuManager, budget: u64) -> SliceEnd {
        match self.state {
            RunState::Runnable => {}
            RunState::Waiting | RunState::Held => return SliceEnd::Waiting,
            RunState::Sleeping { until_us } => return SliceEnd::Sleeping { until_us },
            RunState::Exited(code) => return SliceEnd::Exited(code),
            RunState::Killed(kill) => return SliceEnd::Killed(kill),
        }
        self.space.sync_kernel();
        let (monitor_cr3, monitor_flags) = Cr3::read();
        let guest_cr3 = PhysFrame::containing_address(PhysAddr::new(self.space.root()));
        // SAFETY: the guest's tables map the monitor exactly as its own do
        // (supervisor-only, just synced) plus the guest's slot.
        unsafe { Cr3::write(guest_cr3, Cr3Flags::empty()) };
        // SAFETY: the guest's FPU state came from FXSAVE or a checked
        // restore (`CpuState::restore` checks MXCSR).
        unsafe { ring3::fxrstor(&self.cpu.fpu) };
        let start = rdtsc();
        let deadline = start.saturating_add(budget);
        rt.apic.arm(budget);
        let end = loop {
            let mut entry = self.cpu.frame.clone();
            entry.cs = u64::from(rt.user_code);
            entry.ss = u64::from(rt.user_data);
            entry.rflags = (entry.rflags & USER_FLAGS) | super::cpu::IF | 2;
            // SAFETY: CS/SS are the GDT's ring-3 selectors, RFLAGS has IF
            // and no system bits, RIP comes from the guest's own exits (the
            // CPU traps only at canonical RIPs; an emulated access advances
            // it within the slot) or a checked restore; RSP is whatever
            // the guest holds, which `iretq` does not check (a bad one
            // faults in ring 3); the guest's page tables are loaded;
            // interrupts are off.
            let exit = unsafe { ring3::enter(&entry) };
            let exited_at = rdtsc();
            self.cpu.frame = exit;
            let vector = self.cpu.frame.vector;
            let next = match vector {
                v if v == u64::from(apic::TIMER_VECTOR) => {
                    rt.apic.eoi();
                    let now = rdtsc();
                    if now >= deadline {
                        self.stats.preemptions += 1;
                        self.attempts.refused(Refused::Timer);
                        Next::End(SliceEnd::Preempted)
                    } else {
                        // A tick left over from an earlier slice.
                        rt.apic.arm(deadline - now);
                        Next::Resume
                    }
                }
                v if v == u64::from(apic::SPURIOUS_VECTOR)
                    || (u64::from(apic::PIC_VECTORS)..u64::from(apic::PIC_VECTORS) + 16)
                        .contains(&v) =>
                {
                    Next::Resume
                }
                PAGE_FAULT => {
                    let address = Cr2::read_raw();
                    let error = self.cpu.frame.error_code;
                    let in_bar = (BAR0_VA..BAR0_VA + BAR0_SIZE).contains(&address);
                    if in_bar && error & (PF_PRESENT | PF_RESERVED | PF_FETCH) == 0 {
                        let next = self.mmio(m, address, error & PF_WRITE != 0);
                        self.stats.mmio_cycles += rdtsc() - exited_at;
                        next
                    } else {
                        self.exception(m, Some(address))
                    }
                }
                v if v == u64::from(idt::SYSCALL_VECTOR) => {
                    let next = self.syscall(m);
                    self.stats.syscall_cycles += rdtsc() - exited_at;
                    next
                }
                // The machine's, not the guest's: as fatal as in the monitor.
                2 | 8 | 18 => idt::fatal(&self.cpu.frame),
                _ => self.exception(m, None),
            };
            if let Next::End(end) = next {
                break end;
            }
        };
        rt.apic.stop();
        ring3::fxsave(&mut self.cpu.fpu);
        // SAFETY: back to the monitor's own tables.
        unsafe { Cr3::write(monitor_cr3, monitor_flags) };
        self.stats.slices += 1;
        self.stats.cpu_cycles += rdtsc() - start;
        match end {
            SliceEnd::Waiting => self.state = RunState::Waiting,
            SliceEnd::Sleeping { until_us } => self.state = RunState::Sleeping { until_us },
            SliceEnd::Exited(code) => {
                self.state = RunState::Exited(code);
                self.attempts.close(self.id, self.program.name());
                defmt::info!(
                    "guest {=u32} ({=str}) exited with code {=u64}",
                    self.id,
                    self.program.name(),
                    code
                );
            }
            SliceEnd::Killed(kill) => self.kill(kill),
            SliceEnd::Preempted | SliceEnd::Yielded => {}
        }
        end
    }

    fn exception(&mut self, m: &VgpuManager, address: Option<u64>) -> Next {
        let t = &self.cpu.frame;
        let owner = address.and_then(|a| {
            m.vgpus.iter().find_map(|h| {
                let owns = h.memory.runs().iter().any(|r| {
                    let start = r.first_frame.start().raw();
                    (start..start + r.count * PAGE).contains(&a)
                });
                owns.then(|| h.partition.id())
            })
        });
        Next::End(SliceEnd::Killed(Kill::Exception {
            vector: t.vector,
            error_code: t.error_code,
            rip: t.rip,
            address,
            owner,
        }))
    }

    /// Emulates the access at RIP that faulted on BAR0 at `address`.
    fn mmio(&mut self, m: &mut VgpuManager, address: u64, write: bool) -> Next {
        self.observe_vgpu(m);
        let rip = self.cpu.frame.rip;
        let offset = address - BAR0_VA;
        let kill = |fault| {
            Next::End(SliceEnd::Killed(Kill::Mmio {
                rip,
                offset,
                write,
                fault,
            }))
        };
        let mut bytes = [0u8; decode::MAX_INSTRUCTION];
        let mut len = 0;
        while len < bytes.len() {
            let at = rip.wrapping_add(len as u64);
            let in_page = (PAGE - at % PAGE) as usize;
            let n = in_page.min(bytes.len() - len);
            if !self.space.executable(at) || !self.space.read_user(at, &mut bytes[len..len + n]) {
                break;
            }
            len += n;
        }
        if len == 0 {
            return kill(MmioFault::Unreadable);
        }
        let access = match decode::decode(&bytes[..len], &self.cpu.frame, address) {
            Ok(a) => a,
            Err(e) => return kill(MmioFault::Decode(e)),
        };
        let Some(hosted) = m.vgpus.iter_mut().find(|h| h.partition.id() == self.vgpu) else {
            return kill(MmioFault::NoVgpu);
        };
        let size = match access.width {
            Width::Dword => AccessSize::Dword,
            Width::Qword => AccessSize::Qword,
        };
        // Below 16 MiB: fits.
        let offset32 = offset as u32;
        let backend = m.device.backend();
        let result = match access.op {
            Op::Read { dest } => {
                match hosted
                    .vgpu
                    .mmio_read(backend, &hosted.memory, offset32, size)
                {
                    Ok(v) => {
                        decode::write_register(&mut self.cpu.frame, dest, v);
                        Ok(MmioEffect::Done)
                    }
                    Err(e) => {
                        if e.is_guest_fault() {
                            // What a refused load returns (the access completes).
                            decode::write_register(&mut self.cpu.frame, dest, REFUSED_READ);
                        }
                        Err(e)
                    }
                }
            }
            Op::Write { value } => {
                hosted
                    .vgpu
                    .mmio_write(backend, &hosted.memory, offset32, size, value)
            }
        };
        match result {
            Ok(effect) => {
                if write {
                    if let Err(e) = self.follow_bar0_write(m, offset) {
                        return kill(MmioFault::Aperture(e));
                    }
                }
                if let MmioEffect::Queued(_) = effect {
                    // A TAIL write only queues the commands (the scanner
                    // sees them at dispatch): start them now if their
                    // engine is free. The guest learns how they ended from
                    // its ring HEAD, its fences and `wait`, as on a GPU.
                    m.poll(crate::time::nanos_since_boot());
                    self.collect_writes(m);
                }
                self.stats.mmio_exits += 1;
                self.stats.mmio_writes += u64::from(write);
                self.cpu.frame.rip = rip.wrapping_add(access.len as u64);
                Next::Resume
            }
            Err(e) if e.is_guest_fault() => {
                self.refuse_mmio(offset, write, e);
                self.cpu.frame.rip = rip.wrapping_add(access.len as u64);
                Next::Resume
            }
            Err(e) => kill(MmioFault::Vgpu(e)),
        }
    }

    /// A BAR0 access the vGPU refused, as a device does: the access
    /// completes (a store is dropped, a load reads [`REFUSED_READ`]) and
    /// the guest goes on; a refused store has stopped the vGPU, which the
    /// guest learns from `wait` (and undoes only with a full GDRST reset,
    /// `gpu::vgpu::Vgpu::mmio_write`). Killing the guest instead would
    /// punish in the CPU what is the device's business, and leave a guest
    /// driver no way to recover as i915 does from a hung GPU. The first
    /// few refusals of a guest are logged, all are counted.
    fn refuse_mmio(&mut self, offset: u64, write: bool, e: VgpuError) {
        const LOGGED: u64 = 8;
        self.stats.mmio_refused += 1;
        if let VgpuError::Guest(fault) = e {
            self.attempts.refused(Refused::Device(fault));
        }
        if self.stats.mmio_refused <= LOGGED {
            let access = if write { "write" } else { "read" };
            defmt::warn!(
                "guest {=u32} ({=str}): BAR0 {=str} at +{=u64:#x} refused: {}",
                self.id,
                self.program.name(),
                access,
                offset,
                defmt::Display2Format(&e)
            );
        }
    }
}

/// Sets the bit of the RAM page at frame `phys` (of a guest whose RAM is
/// the `pages` frames from `base`) in `bits`; a frame outside is no RAM
/// page of the guest and is left out.
fn mark_dirty(bits: &mut [u64], base: u64, pages: u64, phys: u64) {
    let index = phys.wrapping_sub(base) / PAGE;
    if index < pages {
        if let Some(word) = bits.get_mut((index / 64) as usize) {
            *word |= 1 << (index % 64);
        }
    }
}

/// The console and log line of a killed guest.
pub(super) fn report_kill(id: u32, name: &str, kill: &Kill) {
    let how = match kill.blame() {
        Some(Blame::Guest) => "killed for a guest fault",
        Some(Blame::Monitor) => "killed by a monitor failure",
        None => "stopped",
    };
    crate::println!("gmig-rs: guest {id} ({name}) {how}: {kill}");
    defmt::warn!(
        "guest {=u32} ({=str}) {=str}: {}",
        id,
        name,
        how,
        defmt::Display2Format(kill)
    );
}
