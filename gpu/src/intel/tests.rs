//! The real backend on the executable device model: every rule the model
//! enforces is met by the backend's sequences, and each test that leaves
//! one step out (`omit`) shows that the model catches it.

use super::*;
use crate::addr::HostGmRange;
use crate::encode::{lri, sdi, semaphore_wait, srm, NOOP};
use crate::sim::device::{DeviceOptions, SimDevice, Violation};
use crate::testutil::SharedMem;

type Device = IntelGen9<SimDevice<SharedMem>, SharedMem>;

/// The model's GGTT table ("stolen memory").
const STOLEN: u64 = 0x8000_0000;
/// The scratch page.
const SCRATCH: u64 = 0x7_0000;
/// GM of the rings (one page per engine) and of the data pages, and the
/// frames behind them.
const RING_GM: u64 = 0x4000_0000;
const RING_PHYS: u64 = 0x5000_0000;
const DATA_GM: u64 = 0x4100_0000;
const DATA_PHYS: u64 = 0x5100_0000;

/// GM address of the context of `c` on engine `e` (0x20000 apart per
/// engine, 1 MiB per context).
fn lrca(c: usize, e: usize) -> u64 {
    0x10_0000 * (c as u64 + 1) + 0x2_0000 * e as u64
}

/// Physical address of its image (16 MiB up, same spacing).
fn image(c: usize, e: usize) -> u64 {
    0x100_0000 + 0x10_0000 * c as u64 + 0x2_0000 * e as u64
}

fn contexts() -> ContextTable {
    core::array::from_fn(|c| {
        core::array::from_fn(|e| EngineContext {
            lrca: HostGm::new(lrca(c, e)).unwrap(),
            image: PhysAddr::new(image(c, e)).unwrap(),
        })
    })
}

fn device_with(options: DeviceOptions, omit: Option<Step>) -> Device {
    let mem = SharedMem::new(1 << 33);
    let model = SimDevice::new(mem.clone(), PhysAddr::new(STOLEN).unwrap(), options);
    let mut d = IntelGen9::new(
        model,
        mem,
        contexts(),
        PhysFrame::new(SCRATCH >> 12).unwrap(),
    );
    d.omit = omit;
    d
}

fn map(d: &mut Device, gm: u64, phys: u64, pages: u64) {
    for i in 0..pages {
        let pte = HostPte::map(PhysFrame::new((phys >> 12) + i).unwrap(), PteFlags::NONE);
        let f = d.write_pte(HostGm::new(gm + 4096 * i).unwrap().ggtt_index(), pte);
        d.flush_ggtt(f);
    }
}

/// Initialised, contexts, rings and data mapped.
fn ready_with(options: DeviceOptions, omit: Option<Step>) -> Device {
    let mut d = device_with(options, omit);
    d.init().unwrap();
    for c in 0..ContextId::COUNT {
        for (e, engine) in Engine::ALL.into_iter().enumerate() {
            map(&mut d, lrca(c, e), image(c, e), context_pages(engine));
        }
    }
    map(&mut d, RING_GM, RING_PHYS, Engine::COUNT as u64);
    map(&mut d, DATA_GM, DATA_PHYS, 4);
    d
}

fn ready() -> Device {
    ready_with(DeviceOptions::default(), None)
}

fn omitting(step: Step) -> Device {
    ready_with(DeviceOptions::default(), Some(step))
}

fn violations(d: &Device) -> Vec<Violation> {
    d.mmio().violations().to_vec()
}

fn vgpu_context(slot: u8) -> ContextId {
    ContextId::of_vgpu(crate::partition::VgpuId::new(slot).unwrap())
}

/// Writes `cmds` (padded to a qword) into `engine`'s ring page and submits
/// them on `context`.
fn submit(d: &mut Device, engine: Engine, context: ContextId, cmds: &[u32]) -> SubmissionId {
    let mut v = cmds.to_vec();
    if v.len() % 2 == 1 {
        v.push(NOOP);
    }
    let ring = RING_GM + 4096 * engine.index() as u64;
    let bytes: Vec<u8> = v.iter().flat_map(|w| w.to_le_bytes()).collect();
    d.write_gm(HostGm::new(ring).unwrap(), &bytes).unwrap();
    let range = HostGmRange::new(HostGm::new(ring).unwrap(), 4096).unwrap();
    let sub = Submission::new(engine, context, range, 0, (v.len() * 4) as u32).unwrap();
    d.submit(&sub).unwrap()
}

/// Polls until the engine is no longer busy (bounded).
fn finish(d: &mut Device, engine: Engine) -> EngineStatus {
    for _ in 0..1_000_000 {
        match d.poll(engine) {
            EngineStatus::Busy { .. } => {}
            done => return done,
        }
    }
    panic!("{engine} still busy")
}

fn data(d: &mut Device, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    d.read_gm(HostGm::new(DATA_GM + offset).unwrap(), &mut b)
        .unwrap();
    u32::from_le_bytes(b)
}

/// Some work: `n` NOOPs, then a store of `value` at data offset `at`.
fn work(n: usize, at: u64, value: u32) -> Vec<u32> {
    let mut v = vec![NOOP; n];
    v.extend(sdi(DATA_GM + at, value));
    v
}

#[test]
fn init_brings_the_device_up_as_i915_does() {
    let mut d = ready();
    assert_eq!(violations(&d), vec![]);
    let command = d.mmio_mut().config_read32(pci::COMMAND);
    assert_ne!(command & pci::COMMAND_BUS_MASTER, 0);
    assert_eq!(d.read_reg(caching::PAT_LO), caching::PAT as u32);
    assert_eq!(d.read_reg(caching::PAT_HI), (caching::PAT >> 32) as u32);
    assert_eq!(d.read_reg(caching::mocs(Engine::Blitter, 2)), 0x3b);
    for engine in Engine::ALL {
        let csb = d.read_reg(ring::reg(engine, ring::CSB_PTR));
        assert_eq!(csb, 0x0505, "{engine}");
        let mode = d.read_reg(ring::reg(engine, ring::MODE));
        assert_ne!(mode & ring::MODE_RUN_LIST_ENABLE, 0);
    }
    // Unused entries point at the scratch page and read as no mapping.
    let far = HostGgttIndex::new(0xf_ffff).unwrap();
    assert_eq!(d.read_pte(far), HostPte::INVALID);
    let raw = d.mmio_mut().read64(ggtt_offset(far));
    assert_eq!(
        HostPte::from_raw(raw).frame(),
        PhysFrame::new(SCRATCH >> 12).ok()
    );
}

#[test]
fn submissions_run_on_every_engine_at_once_and_complete_later() {
    let mut d = ready();
    let mut ids = Vec::new();
    for (i, engine) in Engine::ALL.into_iter().enumerate() {
        let id = submit(
            &mut d,
            engine,
            vgpu_context(i as u8),
            &work(64, 4 * i as u64, 0x100 + i as u32),
        );
        ids.push(id);
    }
    // All four in flight: nothing completes at submission.
    for (engine, id) in Engine::ALL.into_iter().zip(&ids) {
        assert_eq!(d.poll(engine), EngineStatus::Busy { running: *id });
    }
    for (engine, id) in Engine::ALL.into_iter().zip(&ids) {
        assert_eq!(
            finish(&mut d, engine),
            EngineStatus::Idle {
                last_completed: Some(*id)
            }
        );
    }
    for i in 0..Engine::COUNT as u64 {
        assert_eq!(data(&mut d, 4 * i), 0x100 + i as u32);
    }
    // A second round on the same contexts (now restored from what the
    // hardware saved, without restore inhibit).
    for (i, engine) in Engine::ALL.into_iter().enumerate() {
        submit(
            &mut d,
            engine,
            vgpu_context(i as u8),
            &work(8, 0x100 + 4 * i as u64, 7),
        );
        assert!(matches!(finish(&mut d, engine), EngineStatus::Idle { .. }));
        assert_eq!(data(&mut d, 0x100 + 4 * i as u64), 7);
    }
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn the_image_has_the_gen9_layout_of_its_engine_and_restore_inhibit_first() {
    let mut d = ready();
    let dword = |d: &Device, c: usize, e: Engine, i: usize| {
        let mut b = [0u8; 4];
        let at = PhysAddr::new(image(c, e.index()) + 4096 + 4 * i as u64).unwrap();
        d.mem().read(at, &mut b).unwrap();
        u32::from_le_bytes(b)
    };
    for engine in [Engine::Render, Engine::Video] {
        let id = submit(&mut d, engine, ContextId::MONITOR, &work(2, 0, 1));
        // Before the hardware saved it: restore inhibit set (and masked on).
        let control = dword(&d, 0, engine, lrc::CONTEXT_CONTROL);
        assert_eq!(control & 0x0001_0001, 0x0001_0001, "{engine}");
        assert_eq!(dword(&d, 0, engine, 1), lrc::lri(14, true));
        assert_eq!(dword(&d, 0, engine, 0x52), engine.mmio_base() + 0x28);
        let third = if engine == Engine::Render {
            lrc::lri(1, false)
        } else {
            lrc::lri(1, true)
        };
        assert_eq!(dword(&d, 0, engine, 0x41), third);
        assert_eq!(
            finish(&mut d, engine),
            EngineStatus::Idle {
                last_completed: Some(id)
            }
        );
        // The hardware saved it: restore inhibit gone, and the monitor
        // does not put it back.
        assert_eq!(dword(&d, 0, engine, lrc::CONTEXT_CONTROL) & 1, 0);
        submit(&mut d, engine, ContextId::MONITOR, &work(2, 0, 2));
        assert_eq!(dword(&d, 0, engine, lrc::CONTEXT_CONTROL) & 1, 0);
        finish(&mut d, engine);
    }
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn a_context_keeps_the_state_the_hardware_saved_and_only_its_own() {
    let mut d = ready();
    let render = Engine::Render;
    let gpr0 = render.mmio_base() + ring::GPR_BASE;
    let (a, b) = (vgpu_context(0), vgpu_context(1));
    submit(&mut d, render, a, &lri(gpr0, 0x5a5a));
    finish(&mut d, render);
    submit(&mut d, render, b, &srm(gpr0, DATA_GM + 0x10));
    finish(&mut d, render);
    submit(&mut d, render, a, &srm(gpr0, DATA_GM + 0x20));
    finish(&mut d, render);
    assert_eq!(data(&mut d, 0x10), 0);
    assert_eq!(data(&mut d, 0x20), 0x5a5a);
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn without_restore_inhibit_a_never_saved_context_does_not_run() {
    let mut d = omitting(Step::RestoreInhibit);
    d.set_time_limit(1_000_000);
    submit(&mut d, Engine::Blitter, ContextId::MONITOR, &work(2, 0, 1));
    let st = finish(&mut d, Engine::Blitter);
    assert!(
        matches!(st, EngineStatus::Faulted(f) if f.kind == FaultKind::Hang),
        "{st:?}"
    );
    assert!(matches!(
        violations(&d)[..],
        [Violation::RestoreOfUnsavedContext {
            engine: Engine::Blitter,
            ..
        }]
    ));
}

#[test]
fn a_hang_is_detected_by_its_time_limit_and_the_engine_reset() {
    let mut d = ready();
    d.set_time_limit(2_000_000);
    let video = Engine::Video;
    // A semaphore that never passes: the dword is 0, never > 1.
    let hung = submit(
        &mut d,
        video,
        vgpu_context(3),
        &semaphore_wait(DATA_GM, 1, 0, true),
    );
    let st = finish(&mut d, video);
    let EngineStatus::Faulted(f) = st else {
        panic!("{st:?}")
    };
    assert_eq!(
        (f.kind, f.submission, f.context),
        (FaultKind::Hang, hung, vgpu_context(3))
    );
    assert!(d.mmio().is_hung(video));
    d.reset_engine(video);
    assert!(!d.mmio().is_hung(video));
    // The engine takes work again, the abandoned context starts afresh.
    let next = submit(&mut d, video, vgpu_context(3), &work(4, 0x40, 9));
    assert_eq!(
        finish(&mut d, video),
        EngineStatus::Idle {
            last_completed: Some(next)
        }
    );
    assert_eq!(data(&mut d, 0x40), 9);
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn a_reset_without_the_handshake_never_completes() {
    let mut d = ready();
    d.set_time_limit(1_000_000);
    submit(
        &mut d,
        Engine::Video,
        ContextId::MONITOR,
        &semaphore_wait(DATA_GM, 1, 0, true),
    );
    assert!(matches!(
        finish(&mut d, Engine::Video),
        EngineStatus::Faulted(_)
    ));
    d.omit = Some(Step::ResetHandshake);
    d.reset_engine(Engine::Video);
    assert_eq!(
        violations(&d),
        vec![Violation::ResetWithoutHandshake(Engine::Video)]
    );
    // Still faulted: the reset did not happen.
    assert!(matches!(d.poll(Engine::Video), EngineStatus::Faulted(_)));
    assert!(d.mmio().is_hung(Engine::Video));
}

#[test]
fn after_a_reset_execlists_are_enabled_again() {
    let mut d = ready();
    d.set_time_limit(1_000_000);
    submit(
        &mut d,
        Engine::Render,
        ContextId::MONITOR,
        &semaphore_wait(DATA_GM, 1, 0, true),
    );
    finish(&mut d, Engine::Render);
    d.omit = Some(Step::ExeclistsAfterReset);
    d.reset_engine(Engine::Render);
    submit(&mut d, Engine::Render, ContextId::MONITOR, &work(2, 0, 1));
    assert!(matches!(
        finish(&mut d, Engine::Render),
        EngineStatus::Faulted(_)
    ));
    assert_eq!(
        violations(&d),
        vec![Violation::ExeclistsDisabled(Engine::Render)]
    );
}

#[test]
fn a_fault_is_reported_on_the_engine_that_faulted() {
    let mut d = ready();
    // A hole in the GGTT (the backend itself never leaves one: it writes
    // the scratch page).
    let hole = 0x4200_0000;
    let index = HostGm::new(hole).unwrap().ggtt_index();
    d.mmio_mut()
        .gpu()
        .write_pte(index, HostPte::INVALID)
        .ignore();
    // The blitter (engine index 1) is busy; the video engine (hardware id
    // 1) faults.
    let long = work(4096 / 4 - 8, 0x80, 1);
    submit(&mut d, Engine::Blitter, ContextId::MONITOR, &long);
    let id = submit(&mut d, Engine::Video, ContextId::MONITOR, &sdi(hole + 8, 5));
    let st = finish(&mut d, Engine::Video);
    let EngineStatus::Faulted(f) = st else {
        panic!("{st:?}")
    };
    assert_eq!(
        (f.engine, f.submission, f.kind),
        (Engine::Video, id, FaultKind::InvalidPte)
    );
    assert_eq!(f.address, Some(hole));
    assert!(matches!(d.poll(Engine::Blitter), EngineStatus::Busy { .. }));
    assert!(matches!(
        finish(&mut d, Engine::Blitter),
        EngineStatus::Idle { .. }
    ));
    d.reset_engine(Engine::Video);
    assert_eq!(d.read_reg(gt::RING_FAULT) & gt::RING_FAULT_VALID, 0);
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn an_unused_gm_page_is_the_scratch_page_not_a_fault() {
    let mut d = ready();
    submit(
        &mut d,
        Engine::Blitter,
        ContextId::MONITOR,
        &sdi(0x4300_0010, 0x77),
    );
    assert!(matches!(
        finish(&mut d, Engine::Blitter),
        EngineStatus::Idle { .. }
    ));
    let mut b = [0u8; 4];
    d.mem()
        .read(PhysAddr::new(SCRATCH + 0x10).unwrap(), &mut b)
        .unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x77);
}

#[test]
fn a_bad_command_is_reported_through_eir() {
    let mut d = ready();
    let bad = 0x3f << 23; // no MI command has opcode 0x3f
    let id = submit(
        &mut d,
        Engine::Blitter,
        ContextId::MONITOR,
        &[NOOP, NOOP, bad, 0],
    );
    let st = finish(&mut d, Engine::Blitter);
    let EngineStatus::Faulted(f) = st else {
        panic!("{st:?}")
    };
    assert_eq!(
        (f.submission, f.kind, f.header),
        (id, FaultKind::InvalidCommand, bad)
    );
    d.reset_engine(Engine::Blitter);
    assert_eq!(d.read_reg(ring::reg(Engine::Blitter, ring::EIR)), 0);
    submit(&mut d, Engine::Blitter, ContextId::MONITOR, &work(2, 0, 3));
    assert!(matches!(
        finish(&mut d, Engine::Blitter),
        EngineStatus::Idle { .. }
    ));
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn context_ids_are_masked_to_21_bits() {
    let mut d = ready();
    d.next_submission = (1 << 21) + 5;
    let id = submit(&mut d, Engine::Render, ContextId::MONITOR, &work(2, 0, 1));
    assert_eq!(
        finish(&mut d, Engine::Render),
        EngineStatus::Idle {
            last_completed: Some(id)
        }
    );
    assert_eq!(violations(&d), vec![]);
}

/// Submits on the render engine of a device missing `step` and returns
/// what the model saw.
fn first_submission_without(step: Step) -> Vec<Violation> {
    let mut d = omitting(step);
    d.set_time_limit(1_000_000);
    submit(&mut d, Engine::Render, ContextId::MONITOR, &work(2, 0, 1));
    let st = finish(&mut d, Engine::Render);
    assert!(
        matches!(st, EngineStatus::Faulted(f) if f.kind == FaultKind::Hang),
        "{st:?}"
    );
    violations(&d)
}

#[test]
fn without_bus_mastering_nothing_runs() {
    assert_eq!(
        first_submission_without(Step::BusMaster),
        vec![Violation::NoBusMaster(Engine::Render)]
    );
}

#[test]
fn without_a_gt_reset_first_nothing_runs() {
    assert_eq!(
        first_submission_without(Step::GtReset),
        vec![Violation::NotReset(Engine::Render)]
    );
}

#[test]
fn without_pat_and_mocs_nothing_runs() {
    assert_eq!(
        first_submission_without(Step::Caching),
        vec![Violation::CachingNotSetUp(Engine::Render)]
    );
}

#[test]
fn without_forcewake_the_registers_are_out_of_reach() {
    let mut d = device_with(DeviceOptions::default(), Some(Step::Forcewake));
    assert_eq!(
        d.init(),
        Err(BackendError::Timeout {
            what: "engine ready-to-reset"
        })
    );
    assert!(matches!(violations(&d)[0], Violation::Asleep { .. }));
}

#[test]
fn forcewake_waits_for_a_stale_ack_to_clear() {
    let on = DeviceOptions {
        forcewake_left_on: true,
        ..DeviceOptions::default()
    };
    let d = ready_with(on, None);
    assert_eq!(violations(&d), vec![]);
    let mut d = device_with(on, Some(Step::AckClearWait));
    let _ = d.init();
    assert!(matches!(violations(&d)[0], Violation::Asleep { .. }));
}

#[test]
fn a_lost_forcewake_ack_is_recovered_by_the_fallback_kick() {
    let stuck = DeviceOptions {
        stuck_ack: Some(forcewake::Domain::Media),
        ..DeviceOptions::default()
    };
    let mut d = ready_with(stuck, None);
    submit(&mut d, Engine::Video, ContextId::MONITOR, &work(2, 0, 1));
    assert!(matches!(
        finish(&mut d, Engine::Video),
        EngineStatus::Idle { .. }
    ));
    assert_eq!(violations(&d), vec![]);
    let mut d = device_with(stuck, Some(Step::FallbackKick));
    assert_eq!(
        d.init(),
        Err(BackendError::Timeout {
            what: "forcewake ack"
        })
    );
}

#[test]
fn a_ggtt_smaller_than_the_gm_is_refused() {
    let mut d = device_with(
        DeviceOptions {
            ggms: 2,
            ..DeviceOptions::default()
        },
        None,
    );
    assert!(matches!(d.init(), Err(BackendError::Unsupported(_))));
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn a_released_context_is_rewritten_fresh_before_its_next_use() {
    let mut d = ready();
    let a = vgpu_context(2);
    let render = Engine::Render;
    let gpr0 = render.mmio_base() + ring::GPR_BASE;
    submit(&mut d, render, a, &lri(gpr0, 0xdead));
    finish(&mut d, render);
    d.release_context(a);
    // Nothing was running it: the engine is not reset.
    assert!(!d.mmio().violations().iter().any(|_| true));
    submit(&mut d, render, a, &srm(gpr0, DATA_GM + 0x30));
    finish(&mut d, render);
    assert_eq!(data(&mut d, 0x30), 0);
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn releasing_a_context_still_running_resets_its_engine_only() {
    let mut d = ready();
    let (a, b) = (vgpu_context(0), vgpu_context(1));
    submit(
        &mut d,
        Engine::Video,
        a,
        &semaphore_wait(DATA_GM, 1, 0, true),
    );
    let long = work(4096 / 4 - 8, 0x80, 1);
    let blit = submit(&mut d, Engine::Blitter, b, &long);
    d.release_context(a);
    assert!(!d.mmio().is_hung(Engine::Video));
    // The video engine takes new work; b's work on the blitter was not
    // abandoned: it completes.
    submit(&mut d, Engine::Video, b, &work(2, 0, 1));
    assert!(matches!(
        finish(&mut d, Engine::Video),
        EngineStatus::Idle { .. }
    ));
    assert_eq!(
        finish(&mut d, Engine::Blitter),
        EngineStatus::Idle {
            last_completed: Some(blit)
        }
    );
    assert_eq!(data(&mut d, 0x80), 1);
    assert_eq!(violations(&d), vec![]);
}

#[test]
fn pte_writes_go_to_bar0_plus_8mib() {
    let mut d = ready();
    let pte = HostPte::map(PhysFrame::new(0x1234).unwrap(), PteFlags::NONE);
    let index = HostGgttIndex::new(5).unwrap();
    let f = d.write_pte(index, pte);
    d.flush_ggtt(f);
    assert_eq!(
        d.mmio_mut()
            .read64(MmioOffset::new(0x80_0000 + 40).unwrap()),
        0x123_4001
    );
    assert_eq!(d.read_pte(index), pte);
    d.write_gm(HostGm::new(5 * 4096 + 8).unwrap(), &[1, 2, 3])
        .unwrap();
    let mut b = [0u8; 3];
    d.mem()
        .read(PhysAddr::new(0x123_4008).unwrap(), &mut b)
        .unwrap();
    assert_eq!(b, [1, 2, 3]);
    // Invalidated: the scratch page behind it, no mapping to the CPU.
    let f = d.write_pte(index, HostPte::INVALID);
    d.flush_ggtt(f);
    assert_eq!(d.read_pte(index), HostPte::INVALID);
    assert!(d.read_gm(HostGm::new(5 * 4096).unwrap(), &mut b).is_err());
}

/// Over MMIO, save reads back only the GGTT blocks the guest wrote an
/// entry of (a bus round trip each), not all of the vGPU's entries; a
/// restore onto other slices rebuilds the same mappings.
#[test]
fn save_reads_only_the_ggtt_blocks_the_guest_wrote() {
    use crate::addr::GuestPage;
    use crate::ggtt::GuestPte;
    use crate::partition::{GmLayout, PartitionAllocator, VgpuType};
    use crate::testutil::guest_mem;
    use crate::vgpu::{scrub_partition, AccessSize, Vgpu};
    let mut d = ready();
    let mut a =
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
    let p = a.allocate(VgpuType::Small).unwrap();
    scrub_partition(&mut d, &p);
    let mem = guest_mem(0, 0x2000, 16);
    let mut v = Vgpu::new(&p);
    // Three entries: two in the first aperture block, one in the hidden.
    let gms = [
        p.aperture().base().raw(),
        p.aperture().base().raw() + 5 * 4096,
        p.hidden().base().raw() + 0x40_0000,
    ];
    for (i, gm) in gms.into_iter().enumerate() {
        let pte = GuestPte::map(GuestPage::new(i as u64).unwrap(), PteFlags::NONE);
        let off = GGTT_BAR0_OFFSET + (gm >> 12) as u32 * 8;
        let done = v.mmio_write(&mut d, &mem, off, AccessSize::Qword, pte.raw());
        assert_eq!(done, Ok(crate::vgpu::MmioEffect::Done));
    }
    let before = d.mmio().ggtt_reads();
    let mut blob = vec![0u8; 1 << 16];
    let n = v.save(&mut d, &mem, &mut blob).unwrap();
    // Two blocks of 512 entries, out of the 112 Ki of a small vGPU.
    assert_eq!(d.mmio().ggtt_reads() - before, 2 * 512);
    let q = a.allocate(VgpuType::Small).unwrap();
    scrub_partition(&mut d, &q);
    let other = guest_mem(0, 0x3000, 16);
    let w = Vgpu::restore(&blob[..n], &q, &mut d, &other).unwrap();
    for (i, gm) in gms.into_iter().enumerate() {
        let guest = crate::addr::GuestGgttIndex::new(gm >> 12).unwrap();
        let host = w.translation().g2h_index(guest).unwrap();
        assert_eq!(
            d.read_pte(host).frame(),
            Some(PhysFrame::new(0x3000 + i as u64).unwrap())
        );
    }
}

/// The project's own vGPU (on `SimGpu`, behind the real scanner and
/// scheduler) as a GVT-g mdev stand-in: the backend sees the BAR0 a guest
/// of the monitor sees, and the host runs its queued work whenever the
/// backend reads a register (so completions arrive later, not at once).
/// Every GGTT write it sees is recorded (as the GM address it maps).
struct VgpuStandIn {
    vgpu: crate::vgpu::Vgpu,
    gpu: crate::sim::SimGpu<SharedMem>,
    mem: crate::vgpu::FrameRuns<4>,
    gate: Box<crate::mediate::ScanGate>,
    run: crate::testutil::Runner,
    bar_writes: usize,
    ggtt_writes: Vec<u64>,
    now: u64,
}

impl Mmio for VgpuStandIn {
    fn read32(&mut self, offset: MmioOffset) -> u32 {
        self.read(offset, crate::vgpu::AccessSize::Dword) as u32
    }
    fn write32(&mut self, offset: MmioOffset, value: u32) {
        self.bar_writes += 1;
        let size = crate::vgpu::AccessSize::Dword;
        let _ = self
            .vgpu
            .mmio_write(&mut self.gpu, &self.mem, offset.raw(), size, value.into());
    }
    fn read64(&mut self, offset: MmioOffset) -> u64 {
        self.read(offset, crate::vgpu::AccessSize::Qword)
    }
    fn write64(&mut self, offset: MmioOffset, value: u64) {
        self.bar_writes += 1;
        let raw = offset.raw();
        if (GGTT_BAR0_OFFSET..GGTT_BAR0_OFFSET + GGTT_WINDOW_SIZE).contains(&raw) {
            self.ggtt_writes
                .push(u64::from((raw - GGTT_BAR0_OFFSET) / 8) << 12);
        }
        let size = crate::vgpu::AccessSize::Qword;
        let _ = self
            .vgpu
            .mmio_write(&mut self.gpu, &self.mem, offset.raw(), size, value);
    }
    /// GVT-g gives a vGPU the host's configuration space (the host's
    /// device id and GMCH_CTRL).
    fn config_read32(&mut self, offset: u16) -> u32 {
        match offset {
            pci::ID => 0x1912_8086,
            0x08 => 0x0300_0000,
            pci::GMCH_CTRL => 3 << pci::GMCH_GGMS_SHIFT,
            _ => 0,
        }
    }
    fn config_write32(&mut self, _: u16, _: u32) {}
    fn now_ns(&mut self) -> u64 {
        self.now += 20;
        self.now
    }
}

/// The guest's physical memory as the monitor inside it sees it: guest
/// page p is host frame `GUEST_FRAME + p` of the stand-in's memory.
#[derive(Debug)]
struct GuestPhys(SharedMem);

const GUEST_FRAME: u64 = 0x2000;
const GUEST_PAGES: u64 = 2048;

impl GuestPhys {
    fn host(&self, addr: PhysAddr) -> Result<PhysAddr, crate::backend::PhysMemError> {
        PhysAddr::new(addr.raw() + (GUEST_FRAME << 12))
            .ok()
            .filter(|_| addr.raw() < GUEST_PAGES << 12)
            .ok_or(crate::backend::PhysMemError { addr })
    }
}

impl PhysMem for GuestPhys {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), crate::backend::PhysMemError> {
        self.0.read(self.host(addr)?, buf)
    }
    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), crate::backend::PhysMemError> {
        let at = self.host(addr)?;
        self.0.write(at, data)
    }
}

impl VgpuStandIn {
    fn read(&mut self, offset: MmioOffset, size: crate::vgpu::AccessSize) -> u64 {
        self.now += 100;
        let vgpus = core::slice::from_mut(&mut self.vgpu);
        self.run.step(&mut self.gpu, &mut *self.gate, vgpus);
        self.vgpu
            .mmio_read(&mut self.gpu, &self.mem, offset.raw(), size)
            .unwrap_or(crate::vgpu::REFUSED_READ)
    }
}

type Nested = IntelGen9<VgpuStandIn, GuestPhys>;

/// Guest-physical layout of the monitor inside the vGPU: page 0 the
/// scratch page, 1 the PML4, 2-3 the self-test area, the context images
/// from 1 MiB (0x8_0000 per context, 0x2_0000 per engine).
const NESTED_PML4: u64 = 1;
const NESTED_AREA: u64 = 2;

fn nested_image(c: usize, e: usize) -> u64 {
    0x10_0000 + 0x8_0000 * c as u64 + 0x2_0000 * e as u64
}

/// The monitor's backend on a vGPU of a small partition; its contexts in
/// the balloon's hidden slice, its self-test area at the aperture's base.
fn nested(omit: Option<Step>) -> (Nested, Balloon) {
    use crate::partition::{GmLayout, PartitionAllocator, VgpuType};
    let mut alloc =
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
    let p = alloc.allocate(VgpuType::Small).unwrap();
    let shared = SharedMem::new(32 << 30);
    let mut gpu = crate::sim::SimGpu::new(
        shared.clone(),
        PhysAddr::new(crate::testutil::GGTT_TABLE).unwrap(),
    )
    .unwrap();
    let gate = crate::testutil::scan_gate(&mut gpu);
    let mut vgpu = crate::vgpu::Vgpu::new(&p);
    vgpu.enable_ppgtt(PhysFrame::new(0x8000).unwrap(), 16, &mut gpu)
        .unwrap();
    let stand_in = VgpuStandIn {
        vgpu,
        gpu,
        mem: crate::testutil::guest_mem(0, GUEST_FRAME, GUEST_PAGES),
        gate,
        run: crate::testutil::Runner::new(),
        bar_writes: 0,
        ggtt_writes: Vec::new(),
        now: 0,
    };
    let balloon = Balloon {
        vgt_id: p.id().raw().into(),
        aperture: p.aperture(),
        hidden: p.hidden(),
        fences: 0,
    };
    let hidden = p.hidden().base().raw();
    let table = core::array::from_fn(|c| {
        core::array::from_fn(|e| EngineContext {
            lrca: HostGm::new(hidden + 0x10_0000 * c as u64 + 0x2_0000 * e as u64).unwrap(),
            image: PhysAddr::new(nested_image(c, e)).unwrap(),
        })
    });
    let mut d = IntelGen9::new(
        stand_in,
        GuestPhys(shared),
        table,
        PhysFrame::new(0).unwrap(),
    );
    d.set_ppgtt_root(PhysFrame::new(NESTED_PML4).unwrap());
    d.omit = omit;
    (d, balloon)
}

/// Maps what the monitor placed in its balloon: the context areas and the
/// self-test area.
fn place(d: &mut Nested) -> selftest::SelfTestArea {
    let contexts = d.contexts;
    for row in contexts {
        for (area, engine) in row.into_iter().zip(Engine::ALL) {
            let first = area.image.raw() >> 12;
            for i in 0..context_pages(engine) {
                let pte = HostPte::map(PhysFrame::new(first + i).unwrap(), PteFlags::NONE);
                let gm = HostGm::new(area.lrca.raw() + 4096 * i).unwrap();
                let f = d.write_pte(gm.ggtt_index(), pte);
                d.flush_ggtt(f);
            }
        }
    }
    let gm = d.balloon().unwrap().aperture.base();
    for i in 0..2 {
        let pte = HostPte::map(PhysFrame::new(NESTED_AREA + i).unwrap(), PteFlags::NONE);
        let at = HostGm::new(gm.raw() + 4096 * i).unwrap();
        let f = d.write_pte(at.ggtt_index(), pte);
        d.flush_ggtt(f);
    }
    selftest::SelfTestArea { gm }
}

fn writes_outside(d: &Nested, balloon: &Balloon) -> usize {
    d.mmio()
        .ggtt_writes
        .iter()
        .filter(|&&gm| !balloon.holds(HostGm::new(gm).unwrap().ggtt_index()))
        .count()
}

/// Nested: PVINFO read first, the balloon the only GM written, the
/// monitor's PPGTT announced, and the self-test (MI_STORE_DATA_IMM on
/// every engine and a context switch) through the vGPU's execlists in the
/// monitor's PPGTT contexts.
#[test]
fn on_a_gvt_g_vgpu_the_backend_runs_nested_inside_its_balloon() {
    let (mut d, balloon) = nested(None);
    d.init().unwrap();
    let DeviceKind::Vgpu(seen) = d.kind() else {
        panic!("PVINFO not seen")
    };
    assert_eq!(
        (seen.aperture, seen.hidden),
        (balloon.aperture, balloon.hidden)
    );
    assert!(seen.fences > 0);
    // The PPGTT announced: pdp[0] names the PML4, then L4 create.
    let s = d.mmio_mut();
    let pdp0 = s.vgpu.mmio_read(
        &mut s.gpu,
        &s.mem,
        pvinfo::PAGE + pvinfo::PDP0_LO,
        crate::vgpu::AccessSize::Qword,
    );
    assert_eq!(pdp0, Ok(NESTED_PML4 << 12));
    assert_eq!(s.vgpu.notifications(), 1);
    let area = place(&mut d);
    // Every engine's store went through the vGPU's execlists and was read
    // back. The context-switch step then finds GPR0 shared: the stand-in
    // runs all of its guest's execlist contexts in its one host context
    // per engine (GVT-g keeps a shadow context per guest context), which
    // is a limit of the stand-in, not of the nested backend.
    let result = d.self_test(area);
    assert!(
        matches!(result, Err(selftest::SelfTestError::ContextLeak { .. })),
        "{result:?}"
    );
    for engine in Engine::ALL {
        let at = area.gm.raw() + 4096 + 4 * engine.index() as u64;
        let mut b = [0u8; 4];
        d.read_gm(HostGm::new(at).unwrap(), &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x5e1f_7e57 ^ engine.index() as u32);
    }
    assert_eq!(d.mmio().vgpu.state(), crate::vgpu::VgpuState::Running);
    for engine in Engine::ALL {
        assert!(d.mmio().vgpu.execlist(engine).enabled);
    }
    // A placement outside the balloon is refused, never written.
    let outside = balloon.hidden.end_raw();
    let pte = HostPte::map(PhysFrame::new(NESTED_AREA).unwrap(), PteFlags::NONE);
    let _ = d.write_pte(HostGm::new(outside).unwrap().ggtt_index(), pte);
    assert_eq!(d.writes_outside_balloon(), 1);
    // Only the fences PVINFO gives: the last one is written, the next not.
    let fences = seen.fences;
    d.write_reg(crate::regs::fence::lo(fences - 1), 0x1000);
    assert_eq!(d.writes_outside_balloon(), 1);
    d.write_reg(crate::regs::fence::lo(fences), 0x1000);
    assert_eq!(d.writes_outside_balloon(), 2);
    assert!(d.mmio().ggtt_writes.len() > 1 << 16);
    assert_eq!(writes_outside(&d, &balloon), 0);
    assert_eq!(d.mmio().vgpu.state(), crate::vgpu::VgpuState::Running);
    // The physical device has no PVINFO.
    let mut physical = device_with(DeviceOptions::default(), None);
    assert_eq!(physical.probe(), Ok(DeviceKind::Physical));
}

/// Nested init needs the monitor's PPGTT root (GVT-g runs only PPGTT
/// contexts): without it, it stops after the probe, having written nothing.
#[test]
fn on_a_vgpu_without_a_ppgtt_root_nothing_is_written() {
    let (mut d, _) = nested(None);
    d.ppgtt_root = None;
    assert!(matches!(d.init(), Err(BackendError::Unsupported(_))));
    assert_eq!(d.mmio().bar_writes, 0);
}

/// Without the probe the backend brings the vGPU up as the physical
/// device: the vGPU refuses it (and GVT-g would put it in failsafe mode).
#[test]
fn on_a_vgpu_without_the_probe_the_vgpu_stops_the_monitor() {
    let (mut d, balloon) = nested(Some(Step::Probe));
    let _ = d.init();
    assert!(matches!(
        d.mmio().vgpu.state(),
        crate::vgpu::VgpuState::Failed(_)
    ));
    assert!(writes_outside(&d, &balloon) > 0);
}

/// Clearing GGTT entries beyond the balloon is seen, and stops the vGPU.
#[test]
fn on_a_vgpu_ggtt_writes_outside_the_balloon_are_seen_and_refused() {
    let (mut d, balloon) = nested(Some(Step::Balloon));
    let _ = d.init();
    assert!(writes_outside(&d, &balloon) > 0);
    assert!(matches!(
        d.mmio().vgpu.state(),
        crate::vgpu::VgpuState::Failed(_)
    ));
}

#[test]
fn the_self_test_passes_on_a_supported_part_and_names_an_unsupported_one() {
    let mut d = ready();
    let area = selftest::SelfTestArea {
        gm: HostGm::new(DATA_GM).unwrap(),
    };
    let report = d.self_test(area).unwrap();
    assert_eq!((report.device, report.family), (0x1912, "Skylake GT2"));
    assert!(report.forcewake_round_trip_ns >= 2 * crate::sim::device::FORCEWAKE_NS);
    assert!(report.submission_ns.iter().all(|&ns| ns > 0));
    assert_eq!(violations(&d), vec![]);
    let gt3 = DeviceOptions {
        device_id: 0x1926,
        ..DeviceOptions::default()
    };
    let mut d = ready_with(gt3, None);
    assert_eq!(
        d.self_test(area),
        Err(selftest::SelfTestError::NotSupported {
            vendor: 0x8086,
            device: 0x1926,
            class: 0x03
        })
    );
}
