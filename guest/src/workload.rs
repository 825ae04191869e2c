//! Deterministic, self-checking GPU workloads with the write behaviour of
//! the migration simulator's models (`migrate/sim/src/workload.rs`): a
//! 3D-like renderer, a 2D desktop and video-like playback, over a working
//! set of the guest's RAM mapped into its graphics memory.
//!
//! # Layout of the working set
//! After the driver's pages ([`crate::driver::DATA_FIRST`]): bookkeeping
//! (8 bytes per RAM page, [`crate::content::PageState`]), textures
//! (contents written once by the CPU at boot), upload pages (rewritten by
//! the CPU), the hot set (render targets / the frame ring), cold pages
//! (written once at boot, rarely after) and pages that stay zero. Sizes
//! follow the model's fractions.
//!
//! # A frame
//! The model's page writes per frame (its writes per second at 60 frames
//! a second, scaled to the working set), each on one page: the hot set
//! with the model's hot share, else a cold page; by the model's fractions
//! a rewrite that leaves the content unchanged (a blit of the page onto
//! itself), a small edit (MI_STORE_DATA_IMM of 4 bytes), a CPU write (an
//! upload page gets fresh content) or a full rewrite (a blit from a
//! texture or an upload page). GPU writes go in blitter batches, in order;
//! CPU writes come after the frame's batches have completed, so that a
//! blit from an upload page copies what the bookkeeping says. A render
//! submission stores the frame number. Then the guest checks pages it can
//! predict exactly (the last page the frame wrote and two random data
//! pages, whenever they were written) against their bookkeeping and folds
//! them into its running checksum. A live migration must leave the frame
//! counter and the checksum going on exactly as without it.
//!
//! CPU writes (textures at boot, uploads each frame) go through the
//! aperture where the page is in it, for the kinds that draw that way
//! ([`Kind::cpu_writes_through_aperture`]), else through RAM.
//!
//! GPU writes are blits and stores whose destinations the scanner sees
//! (tracked write targets), and in [`Kind::Render3d`] draws too.
//!
//! # The PPGTT renderer
//! [`Kind::Render3d`] is the 3D game driven as a Gen9 i915 drives the
//! render engine in a GVT-g VM: in execlist mode
//! ([`Driver::boot_execlists`]), in a logical ring context whose 4-level
//! PPGTT the guest builds itself. It maps the first [`RENDER_TARGETS`]
//! pages of its hot set at PPGTT addresses from [`RENDER_VA`] (above all
//! of GM: they are reachable only through its PPGTT), and besides the
//! game's blits each frame it clears [`DRAWS`] of them by a draw in its
//! render batch, a PPGTT batch as i915 starts a user's: STATE_BASE_ADDRESS
//! as Mesa sets it (every base 0 but the surface state base, which is the
//! state page's PPGTT address [`crate::driver::STATE_VA`], bounds 4 GiB),
//! a binding table whose entry 0 names a RENDER_SURFACE_STATE of the
//! render target at its PPGTT address and a clear colour,
//! 3DSTATE_BINDING_TABLE_POINTERS_PS, 3DPRIMITIVE, ended by the driver's
//! post-sync fence (to the fence page's PPGTT address). No address in it
//! is GM, so nothing in it changes when the vGPU moves to other slices.
//! The pixels land on the page through the shadow of its PPGTT; the
//! page's bookkeeping names the colour (a solid content,
//! [`content::solid`]), so the same checks see every draw's result. Its
//! blits stay on the legacy blitter ring.

use core::fmt;
use core::ops::Range;

use gpu::encode;
use gpu::engine::Engine;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::content::{self, PageState, PAGE};
use crate::driver::{Driver, DriverError, DATA_FIRST};
use crate::platform::Platform;

/// The kinds of workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A 3D game: hot render targets rewritten every frame, half of the
    /// rewrites leaving content unchanged.
    Game3d,
    /// A 2D desktop: small damage, many small edits, CPU uploads.
    Desktop2d,
    /// Video playback: a ring of frames fully rewritten.
    Video,
    /// The 3D game in a PPGTT context, drawing through surface states
    /// (see the module docs).
    Render3d,
}

/// The model's parameters, in thousandths (see the simulator's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Share of data pages in the hot set.
    pub hot: u32,
    /// Share of writes that hit the hot set.
    pub hot_share: u32,
    /// Page writes per frame per million data pages.
    pub writes_per_mpage: u32,
    /// Share of writes that leave the content unchanged.
    pub unchanged: u32,
    /// Share of writes that change 4 bytes.
    pub small_edit: u32,
    /// Share of writes done by the CPU.
    pub cpu: u32,
    /// Share of data pages that stay zero.
    pub zero: u32,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Game3d, Kind::Desktop2d, Kind::Video, Kind::Render3d];

    /// Its name on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Game3d => "3d",
            Kind::Desktop2d => "desktop",
            Kind::Video => "video",
            Kind::Render3d => "3d-ppgtt",
        }
    }

    /// Whether it drives its render engine through execlists, in a PPGTT
    /// context.
    pub const fn execlists(self) -> bool {
        matches!(self, Kind::Render3d)
    }

    /// Of `ram_pages` pages of driver RAM, those the workload's regions
    /// take (the execlist mode's pages are the driver's).
    pub const fn data_pages(self, ram_pages: u64) -> u64 {
        if self.execlists() {
            ram_pages.saturating_sub(crate::driver::EXECLIST_PAGES)
        } else {
            ram_pages
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether its CPU writes pages through the aperture (the GGTT
    /// mapping of its graphics memory) rather than its RAM mapping, as
    /// graphics drivers do: a 2D driver draws its damage into the
    /// GTT-mapped framebuffer, a 3D driver streams its uploads through a
    /// GTT map; the video guest's frames come from its decoder's buffers
    /// in plain RAM. The content is the same either way: only the path
    /// differs (the monitor's dirty tracking must see both).
    pub const fn cpu_writes_through_aperture(self) -> bool {
        matches!(self, Kind::Game3d | Kind::Desktop2d)
    }

    /// Its model: the simulator's 3d-game, 2d-desktop and video presets
    /// (writes per second / pages / 60 frames a second).
    pub const fn profile(self) -> Profile {
        match self {
            Kind::Game3d | Kind::Render3d => Profile {
                hot: 60,
                hot_share: 950,
                writes_per_mpage: 15_259,
                unchanged: 500,
                small_edit: 150,
                cpu: 50,
                zero: 300,
            },
            Kind::Desktop2d => Profile {
                hot: 40,
                hot_share: 850,
                writes_per_mpage: 2_035,
                unchanged: 600,
                small_edit: 300,
                cpu: 300,
                zero: 500,
            },
            Kind::Video => Profile {
                hot: 80,
                hot_share: 970,
                writes_per_mpage: 8_138,
                unchanged: 100,
                small_edit: 20,
                cpu: 100,
                zero: 200,
            },
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a workload stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadError<E> {
    /// The driver (or the platform under it) failed.
    Driver(DriverError<E>),
    /// The working set is too small for the model's regions.
    TooSmall {
        /// RAM pages of the working set.
        pages: u64,
    },
    /// A page does not hold what the workload wrote there.
    Corrupt {
        /// Frame that found it.
        frame: u64,
        /// Guest page number.
        page: u64,
        /// First differing byte.
        offset: usize,
    },
}

impl<E> From<DriverError<E>> for WorkloadError<E> {
    fn from(e: DriverError<E>) -> Self {
        WorkloadError::Driver(e)
    }
}

impl<E: fmt::Display> fmt::Display for WorkloadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadError::Driver(e) => write!(f, "{e}"),
            WorkloadError::TooSmall { pages } => {
                write!(f, "a working set of {pages} pages is too small")
            }
            WorkloadError::Corrupt {
                frame,
                page,
                offset,
            } => write!(
                f,
                "frame {frame}: guest page {page:#x} differs from what was written at byte {offset}"
            ),
        }
    }
}

/// What one frame did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameReport {
    /// The frame's number (from 0).
    pub frame: u64,
    /// The running checksum after it.
    pub checksum: u64,
    /// Page writes by the GPU (blits and stores).
    pub gpu_writes: u32,
    /// Of those, rewrites that left the content unchanged.
    pub unchanged: u32,
    /// Upload pages the CPU rewrote.
    pub cpu_writes: u32,
    /// Submissions.
    pub submissions: u32,
    /// Pages checked against their bookkeeping.
    pub checked: u32,
}

/// Data regions, as RAM page indices.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Regions {
    book: Range<u64>,
    textures: Range<u64>,
    uploads: Range<u64>,
    hot: Range<u64>,
    cold: Range<u64>,
    zero: Range<u64>,
}

fn take(at: &mut u64, n: u64) -> Range<u64> {
    let r = *at..*at + n;
    *at += n;
    r
}

impl Regions {
    fn of(kind: Kind, ram_pages: u64) -> Option<Regions> {
        let p = kind.profile();
        let book_pages = (ram_pages * 8).div_ceil(PAGE as u64);
        let data = ram_pages.checked_sub(DATA_FIRST + book_pages)?;
        let textures = (data / 64).max(16);
        let uploads = (data / 128).max(8);
        let zero = data * u64::from(p.zero) / 1000;
        let hot = (data * u64::from(p.hot) / 1000).max(16);
        let cold = data.checked_sub(textures + uploads + zero + hot)?;
        if cold < 16 {
            return None;
        }
        let mut at = DATA_FIRST;
        Some(Regions {
            book: take(&mut at, book_pages),
            textures: take(&mut at, textures),
            uploads: take(&mut at, uploads),
            hot: take(&mut at, hot),
            cold: take(&mut at, cold),
            zero: take(&mut at, zero),
        })
    }
    /// Pages whose content the workload predicts.
    fn data(&self) -> Range<u64> {
        self.textures.start..self.zero.end
    }
}

/// Where the bookkeeping of data page `i` is: guest page and offset
/// (`first`: the guest page of RAM index 0).
fn book_slot(first: u64, regions: &Regions, i: u64) -> (u64, usize) {
    let byte = i * 8;
    (
        first + regions.book.start + byte / PAGE as u64,
        (byte % PAGE as u64) as usize,
    )
}

/// The bookkeeping of data page `i`. It stores the content id plus one,
/// so that the zero page (id [`crate::content::ZERO`]) is all-zero bookkeeping and needs
/// no writes at boot.
fn read_state<P: Platform>(
    p: &mut P,
    first: u64,
    regions: &Regions,
    i: u64,
) -> Result<PageState, WorkloadError<P::Error>> {
    let (page, at) = book_slot(first, regions, i);
    let mut b = [0u8; 8];
    p.ram_read(page, at, &mut b)
        .map_err(|e| WorkloadError::Driver(DriverError::Platform(e)))?;
    let stored = PageState::from_bytes(b);
    Ok(PageState {
        content: stored.content.wrapping_sub(1),
        edit: stored.edit,
    })
}

/// Checks data page `i` against its bookkeeping (`frame`: for the error);
/// leaves its bytes in `pages.0`.
fn check_page<P: Platform>(
    p: &mut P,
    seed: u64,
    first: u64,
    regions: &Regions,
    i: u64,
    pages: (&mut [u8; PAGE], &mut [u8; PAGE]),
    frame: u64,
) -> Result<(), WorkloadError<P::Error>> {
    let (page, want) = pages;
    let s = read_state(p, first, regions, i)?;
    content::expected(seed, i as u32, s, want);
    p.ram_read(first + i, 0, page)
        .map_err(|e| WorkloadError::Driver(DriverError::Platform(e)))?;
    match page.iter().zip(want.iter()).position(|(a, b)| a != b) {
        Some(offset) => Err(WorkloadError::Corrupt {
            frame,
            page: first + i,
            offset,
        }),
        None => Ok(()),
    }
}

/// Checks, reading only, every data page of a workload of `kind` and
/// `seed` whose driver RAM is the `ram_pages` guest pages from
/// `ram_first` against the bookkeeping it keeps there; returns how many.
/// What the monitor does after a run to see, by content, that no one else
/// changed a guest's pages (the guest checks itself the same way, but a
/// guest's word is not evidence). A corrupt page is reported with frame
/// `u64::MAX`.
pub fn verify<P: Platform>(
    p: &mut P,
    ram_first: u64,
    ram_pages: u64,
    kind: Kind,
    seed: u64,
) -> Result<u64, WorkloadError<P::Error>> {
    let regions = Regions::of(kind, kind.data_pages(ram_pages))
        .ok_or(WorkloadError::TooSmall { pages: ram_pages })?;
    let (mut page, mut want) = ([0u8; PAGE], [0u8; PAGE]);
    let data = regions.data();
    for i in data.clone() {
        check_page(
            p,
            seed,
            ram_first,
            &regions,
            i,
            (&mut page, &mut want),
            u64::MAX,
        )?;
    }
    Ok(data.end - data.start)
}

/// A workload over a booted driver.
#[derive(Clone, Debug)]
pub struct Workload {
    kind: Kind,
    seed: u64,
    regions: Regions,
    driver: Driver,
    frame: u64,
    rng: u64,
    checksum: u64,
    next_content: u32,
    page: [u8; PAGE],
    want: [u8; PAGE],
}

/// A surface of one page: 64 pixels of 4 bytes by 16 rows.
const PITCH: u32 = 256;
const WIDTH: u32 = 64;
const ROWS: u32 = 16;
/// Where frame numbers land (an offset in the driver's fence page, past
/// its fences).
const FRAME_SLOT: u64 = 256;
/// Content ids of CPU uploads start here (textures count from 0), up to
/// the solid ids.
const UPLOAD_IDS: u32 = 0x4000_0000;
/// [`Kind::Render3d`]: PPGTT address of its first render target.
pub const RENDER_VA: u64 = 0x1_0000_0000;
/// Its render targets: the first pages of its hot set (one PT maps them).
pub const RENDER_TARGETS: u64 = 512;
/// Its draws a frame.
pub const DRAWS: u64 = 2;
/// Where in the driver's state page the binding tables are (one per
/// draw, 32 bytes apart); the surface states are at 64 bytes a draw from
/// its start.
const BINDING_TABLES: u64 = 0x800;
/// RENDER_SURFACE_STATE of a `WIDTH` x `ROWS` R8G8B8A8_UNORM linear 2D
/// surface of `PITCH` bytes at PPGTT `va`, cleared to `colour` (channel
/// `c` is byte `c` of it): PRM vol 2d, genxml RENDER_SURFACE_STATE.
fn surface_state(va: u64, colour: u32) -> [u32; 16] {
    let mut s = [0u32; 16];
    // Surface Type 2D, Surface Format R8G8B8A8_UNORM, linear.
    s[0] = 1 << 29 | 0xc7 << 18;
    s[2] = (WIDTH - 1) | (ROWS - 1) << 16;
    s[3] = PITCH - 1;
    s[8] = va as u32;
    s[9] = (va >> 32) as u32;
    for (c, dw) in s[12..16].iter_mut().enumerate() {
        *dw = (colour >> (8 * c)) & 0xff;
    }
    s
}
/// 3DSTATE_BINDING_TABLE_POINTERS_PS: the binding table at `offset` from
/// the surface state base.
const fn binding_table_ps(offset: u32) -> [u32; 2] {
    [(0x782a << 16), offset]
}
/// 3DPRIMITIVE of one triangle (a rectangle list's worth for the model,
/// which clears the whole render target).
const PRIMITIVE: [u32; 7] = [(0x7b00 << 16) | (7 - 2), 4, 3, 0, 1, 0, 0];

fn chance(rng: &mut u64, permille: u32) -> bool {
    content::splitmix(rng) % 1000 < u64::from(permille)
}

fn pick(rng: &mut u64, r: &Range<u64>) -> u64 {
    r.start + content::splitmix(rng) % (r.end - r.start)
}

impl Workload {
    /// Boots the driver and the workload: maps the working set, writes the
    /// textures and uploads with the CPU, fills the hot and cold pages from
    /// the textures with the GPU.
    pub fn boot<P: Platform>(
        p: &mut P,
        mut driver: Driver,
        kind: Kind,
        seed: u64,
    ) -> Result<Workload, WorkloadError<P::Error>> {
        let regions = Regions::of(kind, kind.data_pages(driver.ram_pages())).ok_or(
            WorkloadError::TooSmall {
                pages: driver.ram_pages(),
            },
        )?;
        if kind.execlists() {
            driver.boot_execlists(p, &[Engine::Render])?;
            let targets =
                regions.hot.start..regions.hot.end.min(regions.hot.start + RENDER_TARGETS);
            for (k, i) in targets.enumerate() {
                driver.ppgtt_map(p, RENDER_VA + k as u64 * PAGE as u64, i)?;
            }
        } else {
            driver.boot(p)?;
        }
        let mut w = Workload {
            kind,
            seed,
            regions,
            driver,
            frame: 0,
            rng: seed ^ 0x6a09_e667_f3bc_c908,
            checksum: seed,
            next_content: UPLOAD_IDS,
            page: [0; PAGE],
            want: [0; PAGE],
        };
        let textures = w.regions.textures.clone();
        for i in textures.clone() {
            w.cpu_fill(p, i, (i - textures.start) as u32)?;
        }
        for i in w.regions.uploads.clone() {
            let id = w.fresh_content();
            w.cpu_fill(p, i, id)?;
        }
        let count = textures.end - textures.start;
        let mut batch = w.driver.batch(Engine::Blitter);
        for i in w.regions.hot.start..w.regions.cold.end {
            let src = textures.start + i % count;
            if !batch.fits(10) {
                w.driver.run(p, batch)?;
                batch = w.driver.batch(Engine::Blitter);
            }
            batch.push(p, &w.driver, &w.copy(i, src))?;
            w.set_state(
                p,
                i,
                PageState {
                    content: (i % count) as u32,
                    edit: 0,
                },
            )?;
        }
        w.driver.run(p, batch)?;
        Ok(w)
    }

    /// The workload's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Frames completed.
    pub fn frame(&self) -> u64 {
        self.frame
    }
    /// The running checksum.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }
    /// The driver.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }
    /// Page writes one frame makes.
    pub fn writes_per_frame(&self) -> u64 {
        let data = self.regions.data().end - self.regions.data().start;
        (data * u64::from(self.kind.profile().writes_per_mpage) / 1_000_000).max(1)
    }

    fn fresh_content(&mut self) -> u32 {
        let id = self.next_content;
        self.next_content = match self.next_content + 1 {
            next if next >= content::SOLID_FIRST => UPLOAD_IDS,
            next => next,
        };
        id
    }

    fn copy(&self, dst: u64, src: u64) -> [u32; 10] {
        let (d, s) = (self.driver.gm(dst), self.driver.gm(src));
        encode::copy_blt(d, PITCH, 0, 0, WIDTH, ROWS, s, PITCH, 0, 0)
    }

    fn cpu_fill<P: Platform>(
        &mut self,
        p: &mut P,
        i: u64,
        id: u32,
    ) -> Result<(), WorkloadError<P::Error>> {
        content::fill(self.seed, id, &mut self.page);
        let aperture = self.driver.aperture_page(i);
        match aperture.filter(|_| self.kind.cpu_writes_through_aperture()) {
            Some(index) => p.aperture_write(index, 0, &self.page),
            None => p.ram_write(self.driver.page(i), 0, &self.page),
        }
        .map_err(|e| WorkloadError::Driver(DriverError::Platform(e)))?;
        self.set_state(
            p,
            i,
            PageState {
                content: id,
                edit: 0,
            },
        )
    }

    fn book_slot(&self, i: u64) -> (u64, usize) {
        book_slot(self.driver.page(0), &self.regions, i)
    }

    /// Bookkeeping stores the content id plus one, so that the zero page
    /// (id [`crate::content::ZERO`]) is all-zero bookkeeping and needs no writes at boot.
    fn set_state<P: Platform>(
        &mut self,
        p: &mut P,
        i: u64,
        s: PageState,
    ) -> Result<(), WorkloadError<P::Error>> {
        let (page, at) = self.book_slot(i);
        let stored = PageState {
            content: s.content.wrapping_add(1),
            edit: s.edit,
        };
        p.ram_write(page, at, &stored.to_bytes())
            .map_err(|e| WorkloadError::Driver(DriverError::Platform(e)))
    }

    fn state<P: Platform>(&self, p: &mut P, i: u64) -> Result<PageState, WorkloadError<P::Error>> {
        read_state(p, self.driver.page(0), &self.regions, i)
    }

    /// One frame: the model's writes, then the checks.
    pub fn step<P: Platform>(&mut self, p: &mut P) -> Result<FrameReport, WorkloadError<P::Error>> {
        let profile = self.kind.profile();
        let mut rng = self.rng;
        let mut report = FrameReport {
            frame: self.frame,
            ..FrameReport::default()
        };
        let mut uploads: [u64; 64] = [0; 64];
        let mut n_uploads = 0;
        let mut last_written = None;
        let mut batch = self.driver.batch(Engine::Blitter);
        for _ in 0..self.writes_per_frame() {
            let target = if chance(&mut rng, profile.hot_share) {
                pick(&mut rng, &self.regions.hot)
            } else {
                pick(&mut rng, &self.regions.cold)
            };
            let roll = (content::splitmix(&mut rng) % 1000) as u32;
            if roll < profile.cpu {
                // After this frame's batches (see the module docs).
                if n_uploads < uploads.len() {
                    uploads[n_uploads] = pick(&mut rng, &self.regions.uploads);
                    n_uploads += 1;
                }
                continue;
            }
            if !batch.fits(10) {
                self.driver.run(p, batch)?;
                report.submissions += 1;
                batch = self.driver.batch(Engine::Blitter);
            }
            let before = self.state(p, target)?;
            if roll < profile.cpu + profile.unchanged {
                batch.push(p, &self.driver, &self.copy(target, target))?;
                report.unchanged += 1;
            } else if roll < profile.cpu + profile.unchanged + profile.small_edit {
                let edit = (content::splitmix(&mut rng) as u32) | 1;
                let at = self.driver.gm(target) + content::edit_offset(target as u32) as u64;
                batch.push(p, &self.driver, &encode::sdi(at, edit))?;
                self.set_state(p, target, PageState { edit, ..before })?;
            } else {
                let src = if chance(&mut rng, 250) {
                    pick(&mut rng, &self.regions.uploads)
                } else {
                    pick(&mut rng, &self.regions.textures)
                };
                let content = self.state(p, src)?.content;
                batch.push(p, &self.driver, &self.copy(target, src))?;
                self.set_state(p, target, PageState { content, edit: 0 })?;
            }
            report.gpu_writes += 1;
            last_written = Some(target);
        }
        if !batch.is_empty() {
            self.driver.run(p, batch)?;
            report.submissions += 1;
        }
        for &u in &uploads[..n_uploads] {
            let id = self.fresh_content();
            self.cpu_fill(p, u, id)?;
            report.cpu_writes += 1;
        }
        let mut render = self.driver.batch(Engine::Render);
        let low = self.frame as u32;
        let store = if self.driver.uses_execlists(Engine::Render) {
            encode::ppgtt_sdi(self.driver.fence_page_va() + FRAME_SLOT, low)
        } else {
            encode::sdi(self.frame_gm(), low)
        };
        render.push(p, &self.driver, &store)?;
        let drawn = if self.kind.execlists() {
            Some(self.draws(p, &mut render, &mut rng, &mut report)?)
        } else {
            None
        };
        self.driver.run(p, render)?;
        report.submissions += 1;
        let mut got = [0u8; 4];
        p.ram_read(self.frame_page(), FRAME_SLOT as usize, &mut got)
            .map_err(|e| WorkloadError::Driver(DriverError::Platform(e)))?;
        if u32::from_le_bytes(got) != low {
            return Err(WorkloadError::Corrupt {
                frame: self.frame,
                page: self.frame_page(),
                offset: FRAME_SLOT as usize,
            });
        }
        let data = self.regions.data();
        let checks = [
            last_written,
            drawn,
            Some(pick(&mut rng, &data)),
            Some(pick(&mut rng, &data)),
        ];
        for i in checks.into_iter().flatten() {
            self.check(p, i)?;
            report.checked += 1;
        }
        self.rng = rng;
        self.frame += 1;
        report.checksum = self.checksum;
        Ok(report)
    }

    /// [`Kind::Render3d`]'s draws of a frame into `render`: each clears a
    /// render target picked by `rng` to the next solid colour; returns
    /// the last one drawn.
    fn draws<P: Platform>(
        &mut self,
        p: &mut P,
        render: &mut crate::driver::Batch,
        rng: &mut u64,
        report: &mut FrameReport,
    ) -> Result<u64, WorkloadError<P::Error>> {
        let hot = &self.regions.hot;
        let targets = hot.start..hot.end.min(hot.start + RENDER_TARGETS);
        let state = self.driver.state_page();
        let base = crate::driver::STATE_VA;
        render.push(p, &self.driver, &encode::mesa_state_base(base))?;
        let mut last = targets.start;
        for k in 0..DRAWS {
            let target = pick(rng, &targets);
            let colour = content::solid(self.frame * DRAWS + k);
            let va = RENDER_VA + (target - targets.start) * PAGE as u64;
            let rss = 64 * k;
            let table = BINDING_TABLES + 32 * k;
            let mut bytes = [0u8; 64];
            for (raw, w) in bytes.chunks_exact_mut(4).zip(surface_state(va, colour)) {
                raw.copy_from_slice(&w.to_le_bytes());
            }
            let page = self.driver.page(state);
            p.ram_write(page, rss as usize, &bytes)
                .and_then(|()| p.ram_write(page, table as usize, &(rss as u32).to_le_bytes()))
                .map_err(|e| WorkloadError::Driver(DriverError::Platform(e)))?;
            render.push(p, &self.driver, &binding_table_ps(table as u32))?;
            render.push(p, &self.driver, &PRIMITIVE)?;
            self.set_state(
                p,
                target,
                PageState {
                    content: colour,
                    edit: 0,
                },
            )?;
            report.gpu_writes += 1;
            last = target;
        }
        Ok(last)
    }

    fn frame_page(&self) -> u64 {
        // The driver's fence page: the one just before the batch areas.
        self.driver.page(crate::driver::ENGINES.len() as u64)
    }
    fn frame_gm(&self) -> u64 {
        self.driver.gm(crate::driver::ENGINES.len() as u64) + FRAME_SLOT
    }

    /// Checks data page `i` against its bookkeeping and folds it into the
    /// checksum.
    fn check<P: Platform>(&mut self, p: &mut P, i: u64) -> Result<(), WorkloadError<P::Error>> {
        let first = self.driver.page(0);
        let pages = (&mut self.page, &mut self.want);
        check_page(p, self.seed, first, &self.regions, i, pages, self.frame)?;
        self.checksum =
            xxh3_64_with_seed(&self.page, self.checksum ^ self.frame.rotate_left(32) ^ i);
        Ok(())
    }

    /// Checks every data page (a slow, whole check, e.g. after a
    /// migration); returns how many.
    pub fn check_all<P: Platform>(&mut self, p: &mut P) -> Result<u64, WorkloadError<P::Error>> {
        let saved = self.checksum;
        let data = self.regions.data();
        for i in data.clone() {
            self.check(p, i)?;
        }
        self.checksum = saved;
        Ok(data.end - data.start)
    }
}
