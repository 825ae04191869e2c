//! A guest's declared attempts (the `attempt` system call,
//! `guest::attack`) and the monitor's own verdict on each.
//!
//! A hostile guest says what it is about to try; whether that was refused
//! is not its word but what the monitor saw itself while the attempt was
//! open (from the `attempt` call to the next one, or the guest's end):
//! the scanner rejecting a submission of its vGPU, the vGPU refusing a
//! BAR0 access, the timer taking the CPU back, the guest killed for its
//! own fault. An attempt counts as refused only if the refusal its class
//! names ([`Refusal`]) happened: a store outside the slices must be
//! refused by the scanner, not pass for refused because the ring was
//! malformed. A vGPU already stopped when the attempt opened proves
//! nothing for it.
//!
//! What nothing refuses, a draw through memory-resident state in a PPGTT
//! context ([`Refusal::Contained`]), is judged by where it went: on the
//! vGPU's own scratch page (zeroed by the monitor when the attempt opens;
//! only the vGPU's shadow pool holds it, and a shadow entry names it for
//! every page the guest's tables name outside its memory), or a GPU fault
//! in the vGPU's own context. That no other guest's memory changed the
//! monitor checks by content at the end (`verify`).

use core::fmt;

use gpu::backend::{ContextId, FaultKind};
use gpu::vgpu::{FailReason, GateRejection, GuestFault};
use guest::attack::{Class, Refusal};

/// A refusal the monitor made while an attempt was open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The scanner rejected a submission.
    Scanner(GateRejection),
    /// The vGPU refused a BAR0 access.
    Device(GuestFault),
    /// The timer preempted the guest.
    Timer,
    /// The guest was killed for its fault.
    Fault,
    /// The shadow PPGTT kept it in the vGPU's frames.
    Contained(Containment),
}

/// Where a contained access went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containment {
    /// It wrote the vGPU's own scratch page.
    Scratch,
    /// It faulted the vGPU's own context.
    Fault(FaultKind),
}

impl Refused {
    const fn kind(&self) -> Refusal {
        match self {
            Refused::Scanner(_) => Refusal::Scanner,
            Refused::Device(_) => Refusal::Device,
            Refused::Timer => Refusal::Timer,
            Refused::Fault => Refusal::Fault,
            Refused::Contained(_) => Refusal::Contained,
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Scanner(r) => write!(f, "by the scanner: {r}"),
            Refused::Device(g) => write!(f, "by the vGPU: {g}"),
            Refused::Timer => f.write_str("by the timer: preempted"),
            Refused::Fault => f.write_str("by the CPU: killed for it"),
            Refused::Contained(Containment::Scratch) => {
                f.write_str("by the shadow PPGTT: it wrote the vGPU's own scratch page")
            }
            Refused::Contained(Containment::Fault(k)) => {
                write!(f, "by the shadow PPGTT: its own context faulted ({k})")
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Open {
    class: Class,
    /// Its vGPU was stopped when the attempt opened.
    stopped_before: bool,
    /// The first refusal of the kind its class names.
    refusal: Option<Refused>,
    /// Every refusal seen, for the log when the right one is missing.
    other: Option<Refused>,
}

/// The attempts of one guest.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attempts {
    /// The guest declares benign twins of attempts (the monitor's own
    /// check that a verdict is not a foregone conclusion): a refusal is
    /// then the surprise.
    benign: bool,
    open: Option<Open>,
    /// The engine context of the guest's vGPU (a GPU fault elsewhere
    /// contains nothing of its attempt).
    context: Option<ContextId>,
    /// Attempts declared.
    pub declared: u64,
    /// Of which the monitor refused (with the refusal their class names).
    pub refused: u64,
    /// The classes declared ([`Class::bit`]).
    pub classes: u64,
}

impl Attempts {
    /// None yet; `benign`: the guest declares benign twins, not attacks.
    pub fn new(benign: bool) -> Self {
        Attempts {
            benign,
            ..Attempts::default()
        }
    }

    /// Whether an attempt is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the open attempt is judged by containment and not yet
    /// found contained: the caller looks at the vGPU's scratch page.
    pub fn watching_scratch(&self) -> bool {
        self.open
            .is_some_and(|o| o.class.refusal() == Refusal::Contained && o.refusal.is_none())
    }

    /// The engine context of the guest's vGPU.
    pub fn set_context(&mut self, context: ContextId) {
        self.context = Some(context);
    }

    /// Closes the open attempt and opens one of `class`.
    pub fn open(&mut self, id: u32, name: &str, class: Class, vgpu_stopped: bool) {
        self.close(id, name);
        self.declared += 1;
        self.classes |= class.bit();
        self.open = Some(Open {
            class,
            stopped_before: vgpu_stopped,
            refusal: None,
            other: None,
        });
    }

    /// The monitor refused something of the guest's.
    pub fn refused(&mut self, what: Refused) {
        let Some(open) = &mut self.open else { return };
        if what.kind() == open.class.refusal() {
            open.refusal.get_or_insert(what);
        } else {
            open.other.get_or_insert(what);
        }
    }

    /// Its vGPU is stopped for `reason`: a refusal if it stopped during
    /// the attempt.
    pub fn vgpu_stopped(&mut self, reason: FailReason) {
        if self.open.is_some_and(|o| o.stopped_before) {
            return;
        }
        match reason {
            FailReason::Rejected(r) => self.refused(Refused::Scanner(r)),
            FailReason::Guest(g) => self.refused(Refused::Device(g)),
            // A GPU fault refuses nothing: the scanner let the work run;
            // of its own context, it is where a contained access ends.
            FailReason::Gpu(f) if Some(f.context) == self.context => {
                self.refused(Refused::Contained(Containment::Fault(f.kind)))
            }
            FailReason::Gpu(_) => {}
        }
    }

    /// Closes the open attempt, if any, with its verdict on the log.
    pub fn close(&mut self, id: u32, name: &str) {
        let Some(open) = self.open.take() else { return };
        let number = self.declared;
        match open.refusal {
            Some(r) if self.benign => {
                self.refused += 1;
                defmt::error!(
                    "guest {=u32} ({=str}) attempt {=u64} {=str}: a benign twin was refused {}",
                    id,
                    name,
                    number,
                    open.class.name(),
                    defmt::Display2Format(&r)
                );
            }
            None if self.benign => defmt::info!(
                "guest {=u32} ({=str}) attempt {=u64} {=str}: not refused (a benign twin)",
                id,
                name,
                number,
                open.class.name()
            ),
            Some(r) => {
                self.refused += 1;
                defmt::info!(
                    "guest {=u32} ({=str}) attempt {=u64} {=str}: refused {}",
                    id,
                    name,
                    number,
                    open.class.name(),
                    defmt::Display2Format(&r)
                );
            }
            None => {
                let seen = open.other.map(|o| o.kind().name()).unwrap_or("nothing");
                crate::println!(
                    "gmig-rs: guest {id} ({name}) attempt {number} {}: NOT REFUSED (wanted a refusal by the {}, saw {seen})",
                    open.class,
                    open.class.refusal().name(),
                );
                defmt::error!(
                    "guest {=u32} ({=str}) attempt {=u64} {=str}: NOT REFUSED (wanted a refusal by the {=str}, saw {=str})",
                    id,
                    name,
                    number,
                    open.class.name(),
                    open.class.refusal().name(),
                    seen
                );
            }
        }
    }

    /// Whether every class of [`Class::ALL`] was declared and every
    /// attempt refused.
    pub fn all_refused(&self) -> bool {
        let every = Class::ALL.iter().fold(0, |m, c| m | c.bit());
        self.classes == every && self.refused == self.declared && !self.is_open()
    }

    /// Distinct classes declared.
    pub fn class_count(&self) -> u32 {
        self.classes.count_ones()
    }
}
