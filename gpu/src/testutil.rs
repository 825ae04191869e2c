//! Host-test helpers: a sparse physical memory and command encoders.

use crate::addr::{HostGgttIndex, HostGm, HostGmRange, PhysAddr, PhysFrame};
use crate::backend::{Backend, PhysMem, PhysMemError};
use crate::ggtt::{HostPte, PteFlags};
use crate::sim::SimGpu;
use std::collections::BTreeMap;

/// Physical memory backed by pages allocated on first touch, below `limit`.
#[derive(Debug, Default)]
pub struct SparseMem {
    pages: BTreeMap<u64, Box<[u8; 4096]>>,
    pub limit: u64,
}

impl SparseMem {
    pub fn new(limit: u64) -> Self {
        SparseMem {
            pages: BTreeMap::new(),
            limit,
        }
    }
}

impl PhysMem for SparseMem {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        if addr.raw() + buf.len() as u64 > self.limit {
            return Err(PhysMemError { addr });
        }
        let mut done = 0;
        while done < buf.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(buf.len() - done);
            match self.pages.get(&(a >> 12)) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }
    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysMemError> {
        if addr.raw() + data.len() as u64 > self.limit {
            return Err(PhysMemError { addr });
        }
        let mut done = 0;
        while done < data.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(data.len() - done);
            let chunk = &data[done..done + n];
            if let Some(p) = self.pages.get_mut(&(a >> 12)) {
                p[off..off + n].copy_from_slice(chunk);
            } else if chunk.iter().any(|&b| b != 0) {
                let mut p = Box::new([0u8; 4096]);
                p[off..off + n].copy_from_slice(chunk);
                self.pages.insert(a >> 12, p);
            }
            done += n;
        }
        Ok(())
    }
}

/// Where test GGTT tables live: 16 GiB, above every test frame.
pub const GGTT_TABLE: u64 = 16 << 30;

pub fn sim() -> SimGpu<SparseMem> {
    SimGpu::new(SparseMem::new(32 << 30), PhysAddr::new(GGTT_TABLE).unwrap()).unwrap()
}

pub fn gm(raw: u64) -> HostGm {
    HostGm::new(raw).unwrap()
}

/// Maps `pages` pages of host GM at `gm_base` to frames starting at `frame`.
pub fn map(b: &mut dyn Backend, gm_base: u64, frame: u64, pages: u64) {
    for i in 0..pages {
        let idx = HostGgttIndex::new((gm_base >> 12) + i).unwrap();
        let f = b.write_pte(
            idx,
            HostPte::map(PhysFrame::new(frame + i).unwrap(), PteFlags::NONE),
        );
        b.flush_ggtt(f);
    }
}

pub fn range(base: u64, len: u64) -> HostGmRange {
    HostGmRange::new(gm(base), len).unwrap()
}

pub fn write_dwords(b: &mut dyn Backend, at: u64, dwords: &[u32]) {
    let bytes: Vec<u8> = dwords.iter().flat_map(|d| d.to_le_bytes()).collect();
    b.write_gm(gm(at), &bytes).unwrap();
}

pub fn read_u32(b: &mut dyn Backend, at: u64) -> u32 {
    let mut x = [0u8; 4];
    b.read_gm(gm(at), &mut x).unwrap();
    u32::from_le_bytes(x)
}

pub fn read_u64(b: &mut dyn Backend, at: u64) -> u64 {
    let mut x = [0u8; 8];
    b.read_gm(gm(at), &mut x).unwrap();
    u64::from_le_bytes(x)
}

pub use crate::encode::*;

use crate::addr::GuestPage;
use crate::backend::Submission;
use crate::partition::GmTranslation;
use crate::vgpu::{FrameRun, FrameRuns, GateRejection, RingSubmission, SubmissionGate};

pub fn guest_mem(first_page: u64, first_frame: u64, count: u64) -> FrameRuns<4> {
    let mut m = FrameRuns::new();
    m.push(FrameRun {
        first_page: GuestPage::new(first_page).unwrap(),
        first_frame: PhysFrame::new(first_frame).unwrap(),
        count,
    })
    .unwrap();
    m
}

/// A test-only gate that does the two things the scanner must do for these
/// tests to mean anything: copy the span into a monitor-owned shadow ring,
/// and remap the GM operands of the SimGpu's command subset through the
/// vGPU's translation (refusing anything outside its slices). It is not the
/// scanner (no batches, no register whitelist).
#[derive(Debug)]
pub struct RemapGate {
    pub shadow: u64,
}

impl SubmissionGate for RemapGate {
    fn admit(
        &mut self,
        t: &GmTranslation,
        req: &RingSubmission,
        backend: &mut dyn Backend,
    ) -> Result<Submission, GateRejection> {
        let ring = req.ring().host();
        let size = ring.len() as u32;
        let span = (req.tail() + size - req.head()) % size;
        let mut words = vec![0u32; (span / 4) as usize];
        for (i, w) in words.iter_mut().enumerate() {
            let off = (req.head() + 4 * i as u32) % size;
            *w = read_u32(backend, ring.base().raw() + u64::from(off));
        }
        let reject = |offset: usize, header: u32, reason| GateRejection {
            engine: req.engine(),
            offset: offset as u32 * 4,
            header,
            reason,
        };
        let remap = |lo: u32, hi: u32| -> Option<(u32, u32)> {
            let g = u64::from(lo) | (u64::from(hi) << 32);
            let h = t.g2h_addr(crate::addr::GuestGm::new(g).ok()?).ok()?.raw();
            Some((h as u32, (h >> 32) as u32))
        };
        let mut i = 0;
        while i < words.len() {
            let h = words[i];
            let (len, addr_slots): (usize, &[usize]) = match (h >> 29, (h >> 23) & 0x3f) {
                (0, 0) | (0, 2) => (1, &[]),
                (0, 0x20) => ((h & 0x3ff) as usize + 2, &[1]),
                (0, 0x26) => ((h & 0xff) as usize + 2, &[1]),
                (3, _) if h & 0xffff_0000 == 0x7a00_0000 => (6, &[2]),
                (2, _) if (h >> 22) & 0x7f == 0x50 => (7, &[4]),
                (2, _) if (h >> 22) & 0x7f == 0x53 => (10, &[4, 8]),
                _ => return Err(reject(i, h, "not in the test gate's subset")),
            };
            if i + len > words.len() {
                return Err(reject(i, h, "runs past tail"));
            }
            for &s in addr_slots {
                let low_bits = words[i + s] & 7;
                let (lo, hi) = remap(words[i + s] & !7, words[i + s + 1]).ok_or(reject(
                    i,
                    h,
                    "address outside the vGPU's slices",
                ))?;
                words[i + s] = lo | low_bits;
                words[i + s + 1] = hi;
            }
            i += len;
        }
        write_dwords(backend, self.shadow, &words);
        Submission::new(req.engine(), range(self.shadow, 4096), 0, span)
            .map_err(|_| reject(0, 0, "shadow too small"))
    }
}
