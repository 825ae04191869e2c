//! Execlist submission as the vGPU offers it to a Gen9 guest driver (i915
//! `intel_lrc.c` in a GVT-g VM; GVT-g `execlist.c`; PRM vol 7
//! "Execlists"): the per-engine state machine of the execlist submit port
//! (ELSP), the context status buffer (CSB) and the execlist status
//! registers, and the logical ring context (LRC) fields the monitor reads.
//!
//! The guest writes a list of two context descriptors to ELSP, four
//! dwords, element 1 first (upper, lower), element 0 last; the last write
//! submits. Each descriptor names a logical ring context in the guest's GM
//! (its LRCA): page 0 the per-process status page, page 1 the register
//! state, from which the monitor reads, at the submission, the ring
//! buffer's start, control, head and tail and the PPGTT root (PDP0, a
//! PML4 in the guest's memory in the 4-level mode). Each element's ring
//! span `[head, tail)` then runs, as a legacy ring's span does, through
//! the same scanner and scheduler ([`crate::vgpu`]), in the context's
//! shadow PPGTT. When an element's work is done the monitor writes its new
//! RING_HEAD into the guest's context image.
//!
//! Context switches the CSB reports (status dword: i915 `GEN8_CTX_STATUS_*`;
//! context id: the descriptor's upper dword), as GVT-g emulates them:
//! * a list submitted to an idle engine: IDLE_ACTIVE;
//! * element 0 done with element 1 valid: ELEMENT_SWITCH | COMPLETE;
//! * the last element done: COMPLETE | ACTIVE_IDLE, and if a list was
//!   waiting, IDLE_ACTIVE for it;
//! * a list whose element 0 is the running context (the same LRCA and
//!   id), submitted again with more work (i915 appends requests this way):
//!   a lite restore, PREEMPTED | LITE_RESTORE; the running element takes
//!   the new tail (and the new list's element 1);
//! * a list for other contexts while one runs preempts it: the running
//!   element is switched out at the next arbitration point (at once if
//!   none of its work reached the engine yet; else when the span on the
//!   engine ends, the monitor's dispatch being the unit of arbitration),
//!   PREEMPTED with its context id, its head left where its work stopped
//!   (the guest resubmits it to go on), and the new list runs.
//!
//! What is refused (a guest fault): a list whose element 0 is not valid,
//! a descriptor without the privilege bit (GVT-g refuses these too), an
//! addressing mode other than 4-level (legacy 64-bit) PPGTT, a context
//! image or ring outside the vGPU's slices, a ring offset outside its
//! ring.

use crate::addr::GuestPage;
use crate::partition::ClaimedRange;
use crate::regs::ring;
use core::fmt;

/// CSB status: the engine went from idle to active.
pub const CTX_STATUS_IDLE_ACTIVE: u32 = 1 << 0;
/// CSB status: the context was preempted.
pub const CTX_STATUS_PREEMPTED: u32 = 1 << 1;
/// CSB status: element 0 ended and element 1 runs.
pub const CTX_STATUS_ELEMENT_SWITCH: u32 = 1 << 2;
/// CSB status: the engine went idle.
pub const CTX_STATUS_ACTIVE_IDLE: u32 = ring::CSB_STATUS_ACTIVE_IDLE;
/// CSB status: the context's work is complete.
pub const CTX_STATUS_COMPLETE: u32 = ring::CSB_STATUS_COMPLETE;
/// CSB status: the running context was resubmitted (lite restore).
pub const CTX_STATUS_LITE_RESTORE: u32 = 1 << 15;

/// Descriptor bit 0: valid.
pub const DESC_VALID: u64 = 1 << 0;
/// Descriptor bits 4:3: addressing mode (`GEN8_CTX_ADDRESSING_MODE_SHIFT`).
pub const DESC_ADDRESSING_SHIFT: u32 = 3;
/// Addressing mode 3: legacy 64-bit, a 4-level PPGTT
/// (`INTEL_LEGACY_64B_CONTEXT`).
pub const ADDRESSING_4_LEVEL: u64 = 3;
/// Descriptor bit 8: privilege access (`GEN8_CTX_PRIVILEGE`).
pub const DESC_PRIVILEGE: u64 = 1 << 8;
/// Descriptor bits 31:12: the LRCA, the context's GGTT address.
pub const DESC_LRCA_MASK: u64 = 0xffff_f000;

/// The register state page of a logical ring context (Gen9, i915
/// `CTX_*` indices, each the register's offset dword; its value follows).
pub mod lrc {
    /// Byte offset of the register state from the LRCA (after the
    /// per-process status page).
    pub const STATE_PAGE: u64 = 4096;
    /// RING_HEAD.
    pub const RING_HEAD: usize = 0x04;
    /// RING_TAIL.
    pub const RING_TAIL: usize = 0x06;
    /// RING_BUFFER_START.
    pub const RING_START: usize = 0x08;
    /// RING_BUFFER_CONTROL.
    pub const RING_CTL: usize = 0x0a;
    /// PDP0 upper dword (the PML4's address bits 63:32 in 4-level mode).
    pub const PDP0_UDW: usize = 0x30;
    /// PDP0 lower dword.
    pub const PDP0_LDW: usize = 0x32;
    /// Dwords of the state the monitor reads.
    pub const READ_DWORDS: usize = 0x34;
}

/// A context descriptor, as written to ELSP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor(pub u64);

impl Descriptor {
    /// Whether the valid bit is set.
    pub const fn valid(self) -> bool {
        self.0 & DESC_VALID != 0
    }
    /// The LRCA: the context image's guest GM address.
    pub const fn lrca(self) -> u64 {
        self.0 & DESC_LRCA_MASK
    }
    /// The context id the CSB reports (the upper dword).
    pub const fn context_id(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Whether two descriptors name the same context (GVT-g
    /// `same_context`: LRCA and id).
    pub const fn same_context(self, other: Descriptor) -> bool {
        self.lrca() == other.lrca() && self.context_id() == other.context_id()
    }
    /// Checks what the vGPU supports: privileged, 4-level PPGTT.
    pub const fn check(self) -> Result<(), &'static str> {
        if self.0 & DESC_PRIVILEGE == 0 {
            return Err("descriptor without the privilege bit");
        }
        if (self.0 >> DESC_ADDRESSING_SHIFT) & 3 != ADDRESSING_4_LEVEL {
            return Err("addressing mode other than the 4-level PPGTT");
        }
        Ok(())
    }
}

/// What the monitor read of a context at its submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element {
    /// Its descriptor.
    pub desc: Descriptor,
    /// The register state page, claimed against the vGPU's slices.
    pub state: ClaimedRange,
    /// The ring buffer, claimed.
    pub ring: ClaimedRange,
    /// Ring offset up to which its work was dispatched.
    pub head: u32,
    /// Ring offset its work ends at.
    pub tail: u32,
    /// Its PPGTT's PML4, in the guest's memory.
    pub pml4: GuestPage,
}

/// A context switch the CSB reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Status dword.
    pub status: u32,
    /// Context id.
    pub context_id: u32,
}

/// What a new list did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleIn {
    /// It runs now (the engine was idle, or its element 0 was preempted
    /// at once); the previous running elements, if any, are returned to
    /// be released.
    Started,
    /// Lite restore: the running element took the new tail.
    LiteRestore,
    /// It waits for the running element's span on the engine to end.
    Waiting,
}

/// One engine's execlist port, as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execlist {
    /// GFX_MODE's run-list enable, as the guest set it.
    pub enabled: bool,
    port: [u32; 4],
    port_len: u8,
    /// The running list, and which of its elements runs.
    running: [Option<Element>; 2],
    current: usize,
    /// A list submitted while the running element's span was on the
    /// engine: it preempts at that span's end.
    waiting: Option<[Option<Element>; 2]>,
    csb: [Event; ring::CSB_ENTRIES as usize],
    /// Write pointer (bits 3:0 of CSB_PTR) and the guest's read pointer
    /// (bits 10:8).
    csb_write: u32,
    csb_read: u32,
}

/// CSB pointer value meaning "nothing written yet" at reset (GVT-g
/// `write_ptr == 0x7`).
const CSB_PTR_RESET: u32 = 0x7;

/// Every status bit an event the port reports may carry.
const CTX_STATUS_ANY: u32 = CTX_STATUS_IDLE_ACTIVE
    | CTX_STATUS_PREEMPTED
    | CTX_STATUS_ELEMENT_SWITCH
    | CTX_STATUS_ACTIVE_IDLE
    | CTX_STATUS_COMPLETE
    | CTX_STATUS_LITE_RESTORE;

/// What an idle port holds, all of it guest-visible (the device state a
/// save carries, [`crate::persist`]): with no list running or waiting,
/// the execlist status reads 0 and no context or shadow PPGTT is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdlePort {
    /// GFX_MODE's run-list enable.
    pub enabled: bool,
    /// The ELSP dwords as last written (the first `port_len` are the next
    /// list's, the rest left from earlier lists).
    pub port: [u32; 4],
    /// ELSP dwords written of the next list (0..=3).
    pub port_len: u8,
    /// The CSB entries.
    pub csb: [Event; ring::CSB_ENTRIES as usize],
    /// CSB_PTR's write pointer (bits 3:0) and the guest's read pointer
    /// (bits 10:8).
    pub csb_write: u32,
    /// See `csb_write`.
    pub csb_read: u32,
}

impl Default for Execlist {
    fn default() -> Self {
        Self::new()
    }
}

impl Execlist {
    /// Power-on state: disabled, nothing submitted, the CSB empty.
    pub const fn new() -> Self {
        Execlist {
            enabled: false,
            port: [0; 4],
            port_len: 0,
            running: [None, None],
            current: 0,
            waiting: None,
            csb: [Event {
                status: 0,
                context_id: 0,
            }; ring::CSB_ENTRIES as usize],
            csb_write: CSB_PTR_RESET,
            csb_read: CSB_PTR_RESET,
        }
    }

    /// What the port holds, if it is idle (no list running or waiting).
    pub fn idle_port(&self) -> Option<IdlePort> {
        (!self.busy()).then_some(IdlePort {
            enabled: self.enabled,
            port: self.port,
            port_len: self.port_len,
            csb: self.csb,
            csb_write: self.csb_write,
            csb_read: self.csb_read,
        })
    }

    /// An idle port holding `p`, if a port can hold it (the fields a
    /// guest's writes can set take any value they can set: a CSB read
    /// pointer of 3 bits, a write pointer of 4; the events only the
    /// statuses the port reports).
    pub fn from_idle_port(p: IdlePort) -> Result<Self, &'static str> {
        if p.port_len > 3 {
            return Err("ELSP dwords written");
        }
        if p.csb_write > 0xf || p.csb_read > 0x7 {
            return Err("CSB pointer");
        }
        if p.csb.iter().any(|e| e.status & !CTX_STATUS_ANY != 0) {
            return Err("CSB status");
        }
        Ok(Execlist {
            enabled: p.enabled,
            port: p.port,
            port_len: p.port_len,
            csb: p.csb,
            csb_write: p.csb_write,
            csb_read: p.csb_read,
            ..Execlist::new()
        })
    }

    /// One ELSP dword; after the fourth, the list (element 0, element 1).
    pub fn write_port(&mut self, value: u32) -> Option<[Descriptor; 2]> {
        self.port[usize::from(self.port_len)] = value;
        self.port_len += 1;
        if self.port_len < 4 {
            return None;
        }
        self.port_len = 0;
        let qword = |hi: u32, lo: u32| Descriptor(u64::from(hi) << 32 | u64::from(lo));
        Some([
            qword(self.port[2], self.port[3]),
            qword(self.port[0], self.port[1]),
        ])
    }

    /// The element whose work is next or on the engine.
    pub fn current(&self) -> Option<&Element> {
        self.running[self.current].as_ref()
    }

    /// Mutable access to it (the vGPU advances its head at dispatch).
    pub fn current_mut(&mut self) -> Option<&mut Element> {
        self.running[self.current].as_mut()
    }

    /// Whether a list is running or waiting.
    pub fn busy(&self) -> bool {
        self.current().is_some() || self.waiting.is_some()
    }

    /// Every element held (running or waiting), for release.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.running
            .iter()
            .chain(self.waiting.iter().flatten())
            .flatten()
    }

    fn event(&mut self, status: u32, context_id: u32) {
        let next = if self.csb_write == CSB_PTR_RESET {
            0
        } else {
            (self.csb_write + 1) % ring::CSB_ENTRIES
        };
        self.csb[next as usize] = Event { status, context_id };
        self.csb_write = next;
    }

    /// A new list. `in_flight`: the current element's span is on the
    /// engine. Elements it displaces are appended to `released`.
    pub fn schedule_in(
        &mut self,
        list: [Option<Element>; 2],
        in_flight: bool,
        released: &mut heapless::Vec<Element, 4>,
    ) -> ScheduleIn {
        let Some(new0) = list[0] else {
            // The caller refuses a list without element 0.
            return ScheduleIn::Waiting;
        };
        let Some(cur) = self.current().copied() else {
            self.running = list;
            self.current = 0;
            self.waiting = None;
            self.event(CTX_STATUS_IDLE_ACTIVE, 0);
            return ScheduleIn::Started;
        };
        if cur.desc.same_context(new0.desc) {
            // The running context again, with a new tail: it goes on from
            // where its work was dispatched to.
            let mut next = new0;
            next.head = cur.head;
            if let Some(old) = self.running[self.current].replace(next) {
                let _ = released.push(old);
            }
            // The new list's element 1 replaces whatever followed.
            let other = 1 - self.current;
            if self.current == 0 {
                if let Some(old) = core::mem::replace(&mut self.running[other], list[1]) {
                    let _ = released.push(old);
                }
            } else if let Some(e1) = list[1] {
                // Element 1 of the old list ran; the new list becomes the
                // running one with the resubmitted context as element 0.
                self.running = [Some(next), Some(e1)];
                self.current = 0;
            }
            if let Some(w) = self.waiting.take() {
                w.into_iter().flatten().for_each(|e| {
                    let _ = released.push(e);
                });
            }
            self.event(
                CTX_STATUS_PREEMPTED | CTX_STATUS_LITE_RESTORE,
                new0.desc.context_id(),
            );
            return ScheduleIn::LiteRestore;
        }
        if let Some(w) = self.waiting.replace(list) {
            w.into_iter().flatten().for_each(|e| {
                let _ = released.push(e);
            });
        }
        if in_flight {
            return ScheduleIn::Waiting;
        }
        self.preempt(released);
        ScheduleIn::Started
    }

    /// Switches the running list out for the waiting one: PREEMPTED.
    fn preempt(&mut self, released: &mut heapless::Vec<Element, 4>) {
        let Some(next) = self.waiting.take() else {
            return;
        };
        let id = self.current().map_or(0, |e| e.desc.context_id());
        for e in core::mem::replace(&mut self.running, next)
            .into_iter()
            .flatten()
        {
            let _ = released.push(e);
        }
        self.current = 0;
        self.event(CTX_STATUS_PREEMPTED, id);
    }

    /// The current element's span on the engine ended: a waiting list
    /// preempts now, an element with no more work completes. Elements
    /// that leave are appended to `released`.
    pub fn span_done(&mut self, released: &mut heapless::Vec<Element, 4>) {
        if self.waiting.is_some() {
            self.preempt(released);
        }
        self.settle(released);
    }

    /// Completes every running element that has no work left (an empty
    /// span completes at once).
    pub fn settle(&mut self, released: &mut heapless::Vec<Element, 4>) {
        while let Some(cur) = self.current().copied() {
            if cur.head != cur.tail {
                return;
            }
            let id = cur.desc.context_id();
            let _ = released.push(cur);
            self.running[self.current] = None;
            if self.current == 0 && self.running[1].is_some() {
                self.current = 1;
                self.event(CTX_STATUS_ELEMENT_SWITCH | CTX_STATUS_COMPLETE, id);
                continue;
            }
            self.running = [None, None];
            self.current = 0;
            self.event(CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE, id);
            if let Some(next) = self.waiting.take() {
                self.running = next;
                self.event(CTX_STATUS_IDLE_ACTIVE, 0);
            }
        }
    }

    /// Abandons everything (reset, a failed vGPU): the elements held are
    /// appended to `released`; the CSB is left as it was.
    pub fn clear(&mut self, released: &mut heapless::Vec<Element, 4>) {
        for e in self.elements() {
            let _ = released.push(*e);
        }
        self.running = [None, None];
        self.current = 0;
        self.waiting = None;
        self.port_len = 0;
    }

    /// A read of one of the engine's execlist registers (`rel`: offset in
    /// the engine block), if it is one.
    pub fn read(&self, rel: u32) -> Option<u32> {
        let csb_end = ring::CSB_BASE + 8 * ring::CSB_ENTRIES;
        Some(match rel {
            ring::ELSP => 0,
            ring::MODE => u32::from(self.enabled) * ring::MODE_RUN_LIST_ENABLE,
            ring::CSB_PTR => self.csb_read << 8 | self.csb_write,
            ring::EXECLIST_STATUS_LO => self.status_lo(),
            ring::EXECLIST_STATUS_HI => self.current().map_or(0, |e| e.desc.context_id()),
            r if (ring::CSB_BASE..csb_end).contains(&r) => {
                let e = self.csb[((r - ring::CSB_BASE) / 8) as usize];
                if (r - ring::CSB_BASE).is_multiple_of(8) {
                    e.status
                } else {
                    e.context_id
                }
            }
            _ => return None,
        })
    }

    /// EXECLIST_STATUS low dword (GVT-g `execlist_status_format`): bit 0
    /// the current element, bit 1 the write pointer, bit 2 queue full,
    /// bits 3/4 element 1/0 valid, bits 15/16... the active elements.
    fn status_lo(&self) -> u32 {
        let Some(_) = self.current() else {
            return 0;
        };
        let bit = |b: bool, n: u32| u32::from(b) << n;
        let one = self.current == 1;
        bit(one, 0)
            | bit(!one, 1)
            | bit(self.waiting.is_some(), 2)
            | bit(one, 3)
            | bit(!one, 4)
            | bit(one, 17)
            | bit(!one, 18)
    }

    /// A masked write of CSB_PTR: the guest moves its read pointer (and
    /// may reset the write pointer, as i915 does at engine reset).
    pub fn write_csb_ptr(&mut self, value: u32) {
        let mask = value >> 16;
        let apply = |old: u32, field: u32, shift: u32| {
            let m = (mask >> shift) & field;
            (old & !m) | ((value >> shift) & m)
        };
        self.csb_read = apply(self.csb_read, 0x7, 8);
        self.csb_write = apply(self.csb_write, 0xf, 0);
    }

    /// A masked write of GFX_MODE: the run-list enable. Refused when the
    /// guest turns execlists off with work held.
    pub fn write_mode(&mut self, value: u32) -> Result<(), BadSubmission> {
        let bit = ring::MODE_RUN_LIST_ENABLE;
        if (value >> 16) & bit == 0 {
            return Ok(());
        }
        let enable = value & bit != 0;
        if !enable && self.busy() {
            return Err(BadSubmission("execlists turned off with work held"));
        }
        self.enabled = enable;
        Ok(())
    }
}

/// The ring registers read from a context image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextRegisters {
    /// RING_HEAD (offset bits only).
    pub head: u32,
    /// RING_TAIL.
    pub tail: u32,
    /// RING_BUFFER_START (guest GM, page aligned).
    pub start: u32,
    /// RING_BUFFER_CONTROL.
    pub ctl: u32,
    /// PDP0: the PML4's address.
    pub pml4: u64,
}

impl ContextRegisters {
    /// Parses the register state's first [`lrc::READ_DWORDS`] dwords.
    pub fn parse(state: &[u32; lrc::READ_DWORDS]) -> Self {
        let value = |i: usize| state[i + 1];
        ContextRegisters {
            head: value(lrc::RING_HEAD) & ring::OFFSET_MASK,
            tail: value(lrc::RING_TAIL) & ring::OFFSET_MASK,
            start: value(lrc::RING_START) & 0xffff_f000,
            ctl: value(lrc::RING_CTL),
            pml4: u64::from(value(lrc::PDP0_UDW)) << 32 | u64::from(value(lrc::PDP0_LDW)),
        }
    }
    /// Ring size from RING_CTL (pages - 1 in bits 20:12).
    pub const fn ring_size(&self) -> u32 {
        (self.ctl & ring::CTL_SIZE_MASK) + 4096
    }
}

/// Why an ELSP submission was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSubmission(pub &'static str);

impl fmt::Display for BadSubmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod ppgtt_batch_tests;
#[cfg(test)]
mod vgpu_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{GmLayout, GmTranslation, PartitionAllocator, VgpuType};

    fn claim(base: u64) -> ClaimedRange {
        let mut alloc =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap();
        let p = alloc.allocate(VgpuType::Small).unwrap();
        let t = GmTranslation::identity(&p);
        let at = t.host_aperture().base().raw() + base;
        t.claim(at, 4096).unwrap()
    }

    fn element(lrca: u64, id: u32, head: u32, tail: u32) -> Element {
        Element {
            desc: Descriptor(u64::from(id) << 32 | lrca | DESC_PRIVILEGE | 3 << 3 | 1),
            state: claim(lrca),
            ring: claim(0x10_0000),
            head,
            tail,
            pml4: GuestPage::new(1).unwrap(),
        }
    }

    fn csb(e: &Execlist) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut at = e.csb_read;
        while at != e.csb_write {
            at = if at == CSB_PTR_RESET {
                0
            } else {
                (at + 1) % ring::CSB_ENTRIES
            };
            out.push((e.csb[at as usize].status, e.csb[at as usize].context_id));
        }
        out
    }

    #[test]
    fn the_port_takes_element_1_first_and_submits_on_the_fourth_write() {
        let mut x = Execlist::new();
        assert_eq!(x.write_port(0x22), None);
        assert_eq!(x.write_port(0x2000_0019), None);
        assert_eq!(x.write_port(0x11), None);
        let list = x.write_port(0x1000_0119).unwrap();
        assert_eq!(list[0], Descriptor(0x11_1000_0119));
        assert_eq!(list[1], Descriptor(0x22_2000_0019));
        assert_eq!(list[0].lrca(), 0x1000_0000);
        assert_eq!(list[0].context_id(), 0x11);
        assert_eq!(list[0].check(), Ok(()));
        assert!(list[1].check().is_err(), "no privilege bit");
    }

    #[test]
    fn a_list_runs_element_by_element_and_reports_each_switch() {
        let mut x = Execlist::new();
        let mut rel = heapless::Vec::new();
        let (a, b) = (element(0x1000, 1, 0, 0x40), element(0x3000, 2, 0, 0x80));
        assert_eq!(
            x.schedule_in([Some(a), Some(b)], false, &mut rel),
            ScheduleIn::Started
        );
        assert_eq!(x.current().unwrap().desc, a.desc);
        // Dispatch: head reaches tail; the span ends.
        x.current_mut().unwrap().head = 0x40;
        x.span_done(&mut rel);
        assert_eq!(x.current().unwrap().desc, b.desc);
        assert_eq!(x.read(ring::EXECLIST_STATUS_HI), Some(2));
        x.current_mut().unwrap().head = 0x80;
        x.span_done(&mut rel);
        assert!(!x.busy());
        assert_eq!(rel.len(), 2);
        assert_eq!(
            csb(&x),
            vec![
                (CTX_STATUS_IDLE_ACTIVE, 0),
                (CTX_STATUS_ELEMENT_SWITCH | CTX_STATUS_COMPLETE, 1),
                (CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE, 2),
            ]
        );
        assert_eq!(x.read(ring::CSB_PTR), Some(CSB_PTR_RESET << 8 | 2));
        // The guest consumes the events: its read pointer follows.
        x.write_csb_ptr(crate::regs::masked(0x7 << 8, 2 << 8));
        assert_eq!(csb(&x), vec![]);
    }

    #[test]
    fn resubmitting_the_running_context_is_a_lite_restore() {
        let mut x = Execlist::new();
        let mut rel = heapless::Vec::new();
        let a = element(0x1000, 1, 0, 0x40);
        x.schedule_in([Some(a), None], false, &mut rel);
        x.current_mut().unwrap().head = 0x40; // on the engine
        let more = element(0x1000, 1, 0, 0x60);
        assert_eq!(
            x.schedule_in([Some(more), None], true, &mut rel),
            ScheduleIn::LiteRestore
        );
        let cur = x.current().unwrap();
        assert_eq!((cur.head, cur.tail), (0x40, 0x60));
        x.span_done(&mut rel);
        assert!(x.busy(), "the appended work is still to run");
        x.current_mut().unwrap().head = 0x60;
        x.span_done(&mut rel);
        assert!(!x.busy());
        assert_eq!(
            csb(&x)[1..],
            [
                (CTX_STATUS_PREEMPTED | CTX_STATUS_LITE_RESTORE, 1),
                (CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE, 1)
            ]
        );
    }

    #[test]
    fn another_context_preempts_at_once_or_at_the_end_of_the_span_on_the_engine() {
        let mut x = Execlist::new();
        let mut rel = heapless::Vec::new();
        let (a, b) = (element(0x1000, 1, 0, 0x40), element(0x3000, 2, 0, 0x80));
        // Not dispatched yet: preempted at once, its head unchanged.
        x.schedule_in([Some(a), None], false, &mut rel);
        assert_eq!(
            x.schedule_in([Some(b), None], false, &mut rel),
            ScheduleIn::Started
        );
        assert_eq!(x.current().unwrap().desc, b.desc);
        assert_eq!(rel.last().unwrap().head, 0);
        assert_eq!(csb(&x)[1], (CTX_STATUS_PREEMPTED, 1));
        // On the engine: the new list waits for the span's end.
        x.current_mut().unwrap().head = 0x80;
        assert_eq!(
            x.schedule_in([Some(a), None], true, &mut rel),
            ScheduleIn::Waiting
        );
        assert_eq!(x.current().unwrap().desc, b.desc);
        assert_eq!(x.read(ring::EXECLIST_STATUS_LO).map(|s| s & 4), Some(4));
        x.span_done(&mut rel);
        assert_eq!(x.current().unwrap().desc, a.desc);
        assert_eq!(csb(&x)[2], (CTX_STATUS_PREEMPTED, 2));
    }

    #[test]
    fn the_context_registers_come_from_the_state_page() {
        let mut s = [0u32; lrc::READ_DWORDS];
        s[lrc::RING_HEAD + 1] = 0x40;
        s[lrc::RING_TAIL + 1] = 0x88;
        s[lrc::RING_START + 1] = 0x1234_5678;
        s[lrc::RING_CTL + 1] = (3 << 12) | 1;
        s[lrc::PDP0_UDW + 1] = 0x1;
        s[lrc::PDP0_LDW + 1] = 0x2345_6000;
        let r = ContextRegisters::parse(&s);
        assert_eq!((r.head, r.tail, r.start), (0x40, 0x88, 0x1234_5000));
        assert_eq!(r.ring_size(), 4 * 4096);
        assert_eq!(r.pml4, 0x1_2345_6000);
    }
}
