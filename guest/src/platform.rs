//! What a guest has of the machine: its virtual BAR0 and its own RAM.

use core::fmt;

/// The guest's machine. A ring-3 guest implements it over real loads and
/// stores (its BAR0 accesses trap into the monitor); the host tests over
/// `gpu::vgpu::Vgpu` and a model of the guest's frames.
pub trait Platform {
    /// What a failed access reports (e.g. the vGPU refused a write and
    /// stopped).
    type Error: fmt::Debug + fmt::Display;
    /// 32-bit read of the virtual BAR0 at `offset`.
    fn mmio_read32(&mut self, offset: u32) -> Result<u32, Self::Error>;
    /// 32-bit write of the virtual BAR0 at `offset`.
    fn mmio_write32(&mut self, offset: u32, value: u32) -> Result<(), Self::Error>;
    /// 64-bit write of the virtual BAR0 at `offset` (GGTT entries).
    fn mmio_write64(&mut self, offset: u32, value: u64) -> Result<(), Self::Error>;
    /// Reads `out.len()` bytes of the guest's RAM page `page` (a guest page
    /// number) from byte `offset`; the range stays inside the page.
    fn ram_read(&mut self, page: u64, offset: usize, out: &mut [u8]) -> Result<(), Self::Error>;
    /// Writes guest RAM, as [`Platform::ram_read`] reads it.
    fn ram_write(&mut self, page: u64, offset: usize, data: &[u8]) -> Result<(), Self::Error>;
    /// Writes through the aperture (the vGPU's BAR2): `data` at byte
    /// `offset` of page `index` of the aperture slice PVINFO grants, which
    /// lands in whatever page the guest's GGTT entry for it names, as a
    /// CPU write through a GPU's aperture does. The range stays inside
    /// the page.
    fn aperture_write(&mut self, index: u64, offset: usize, data: &[u8])
        -> Result<(), Self::Error>;
    /// Lets the rest of the machine run while the guest waits for its GPU
    /// (a yield or a wait-for-completion system call).
    fn pause(&mut self) -> Result<(), Self::Error>;
}
