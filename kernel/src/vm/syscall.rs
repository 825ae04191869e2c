//! The guests' system calls (`guest::abi::syscall`): `int 0x80`, number in
//! RAX, arguments in RDI, RSI, RDX, result in RAX.
//!
//! A call that would block (`wait` while the vGPU has work queued or
//! running: the GPU's work takes model time, `VgpuManager::poll`) moves
//! RIP back onto its `int 0x80` and ends the slice; the guest waits, and
//! the others run, until its work has ended, and when it runs again it
//! makes the call again. So a guest never sits inside the
//! monitor, and its saved CPU state is always one it can resume from
//! anywhere (a migration does not need to know that it was waiting).

use guest::abi::syscall::{self, FRAME_FINISH, FRAME_GO_ON, LOG_MAX, WAIT_OK, WAIT_VGPU_FAILED};
use guest::abi::Measure;
use guest::attack::Class;

use super::guest::{Guest, Kill, Next, SliceEnd, SyscallFault, VgpuProgress};
use crate::vgpus::VgpuManager;

/// Bytes of `int 0x80`.
const INT_LEN: u64 = 2;

impl Guest {
    /// Serves the call in the guest's registers.
    pub(super) fn syscall(&mut self, m: &mut VgpuManager) -> Next {
        self.stats.syscalls += 1;
        self.observe_vgpu(m);
        let t = &self.cpu.frame;
        let (number, a, b, c, rip) = (t.rax, t.rdi, t.rsi, t.rdx, t.rip);
        let refuse = |fault| Next::End(SliceEnd::Killed(Kill::Syscall { rip, number, fault }));
        let result = match number {
            syscall::LOG => {
                if b > LOG_MAX as u64 {
                    return refuse(SyscallFault::BadArgument { index: 1, value: b });
                }
                let mut text = [0u8; LOG_MAX];
                let text = &mut text[..b as usize];
                if !self.space.read_user(a, text) {
                    return refuse(SyscallFault::BadBuffer { address: a, len: b });
                }
                // Control characters would let a guest forge log lines.
                for byte in text.iter_mut() {
                    if *byte < 0x20 || *byte == 0x7f {
                        *byte = b'?';
                    }
                }
                let line = core::str::from_utf8(text).unwrap_or("(not UTF-8)");
                defmt::info!(
                    "guest {=u32} ({=str}): {=str}",
                    self.id,
                    self.program.name(),
                    line
                );
                0
            }
            syscall::FRAME => {
                self.stats.frames += 1;
                self.stats.submissions += c;
                let at = self.clock_us();
                self.frames.note(a, b, at);
                defmt::debug!(
                    "guest {=u32} frame {=u64} checksum {=u64:#x} submissions {=u64}",
                    self.id,
                    a,
                    b,
                    c
                );
                self.cpu.frame.rax = if self.finish {
                    FRAME_FINISH
                } else {
                    FRAME_GO_ON
                };
                if let Some(period) = self.frame_period_us {
                    // The next frame is due a period after this one was;
                    // one that came late does not make the next one early.
                    let now = crate::time::micros_since_boot();
                    self.next_frame_us = (self.next_frame_us + period).max(now);
                    if self.next_frame_us > now && !self.finish {
                        return Next::End(SliceEnd::Sleeping {
                            until_us: self.next_frame_us,
                        });
                    }
                }
                return Next::Resume;
            }
            syscall::YIELD => {
                self.cpu.frame.rax = 0;
                return Next::End(SliceEnd::Yielded);
            }
            syscall::WAIT => {
                // The GPU's work takes time: run it on to now, then see.
                m.poll(crate::time::nanos_since_boot());
                self.collect_writes(m);
                match self.vgpu_progress(m) {
                    None => {
                        return Next::End(SliceEnd::Killed(Kill::Stopped {
                            reason: "its vGPU is gone (monitor bug)",
                        }))
                    }
                    Some(VgpuProgress::Failed) => WAIT_VGPU_FAILED,
                    Some(VgpuProgress::Idle) => WAIT_OK,
                    Some(VgpuProgress::Busy) => {
                        // Made again when the guest runs next (module
                        // docs); until its work ends the scheduler passes
                        // it over.
                        self.cpu.frame.rip = rip - INT_LEN;
                        return Next::End(SliceEnd::Waiting);
                    }
                }
            }
            syscall::EXIT => return Next::End(SliceEnd::Exited(a)),
            syscall::ATTEMPT => {
                let Some(class) = Class::from_code(a) else {
                    return refuse(SyscallFault::BadArgument { index: 0, value: a });
                };
                let stopped = m
                    .vgpus
                    .iter()
                    .find(|h| h.partition.id() == self.vgpu)
                    .is_none_or(|h| matches!(h.vgpu.state(), gpu::vgpu::VgpuState::Failed(_)));
                self.attempts
                    .open(self.id, self.program.name(), class, stopped);
                self.attempts
                    .set_context(gpu::backend::ContextId::of_vgpu(self.vgpu));
                if class.refusal() == guest::attack::Refusal::Contained {
                    // What lands there from now on is this attempt's.
                    m.clear_scratch(self.vgpu);
                }
                0
            }
            syscall::MEASURE => {
                let Some(what) = Measure::from_code(a) else {
                    return refuse(SyscallFault::BadArgument { index: 0, value: a });
                };
                self.stats.measures[what as usize] = Some((b, c));
                0
            }
            _ => return refuse(SyscallFault::Unknown),
        };
        self.cpu.frame.rax = result;
        Next::Resume
    }
}
