//! The guest images the monitor embeds (built by `cargo xtask build` from
//! `guest/images`) and the ELF loader that puts one into a guest's RAM.
//!
//! An image must be a static x86-64 executable (ET_EXEC) whose loadable
//! segments lie inside the image window of `guest::abi` and which needs
//! nothing at run time: no interpreter, no dynamic section, no TLS. Each
//! page gets the permissions of the segments on it, never write and
//! execute both. The images are the monitor's own build, but the loader
//! checks all of this anyway and says what is wrong, since a wrong image
//! would otherwise run with the wrong permissions.

use core::fmt;

use guest::abi::{Image, IMAGE_END_VA, IMAGE_PAGES, IMAGE_VA, PAGE};

use super::space::Perm;

static WORKLOAD_ELF: &[u8] =
    include_bytes!(concat!(env!("GMIG_GUEST_IMAGES"), "/gmig-guest-workload"));
static PROBE_ELF: &[u8] = include_bytes!(concat!(env!("GMIG_GUEST_IMAGES"), "/gmig-guest-probe"));

/// The ELF file of `image`.
pub fn elf(image: Image) -> &'static [u8] {
    match image {
        Image::Workload => WORKLOAD_ELF,
        Image::Probe => PROBE_ELF,
    }
}

/// Why an image does not load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Not a 64-bit little-endian x86-64 ELF executable.
    NotExecutable,
    /// A header or segment lies outside the file.
    Truncated,
    /// It needs a dynamic linker, dynamic relocations or TLS.
    NotStatic,
    /// A segment lies outside the image window.
    OutsideWindow {
        /// The segment's address.
        vaddr: u64,
    },
    /// A page would be writable and executable.
    WriteAndExecute {
        /// The page.
        vaddr: u64,
    },
    /// The entry point is not in an executable page.
    BadEntry {
        /// The entry point.
        entry: u64,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::NotExecutable => {
                f.write_str("not a static x86-64 ELF executable (ET_EXEC, 64-bit, little endian)")
            }
            ImageError::Truncated => f.write_str("a header or segment lies outside the file"),
            ImageError::NotStatic => {
                f.write_str("it needs a dynamic linker, dynamic relocations or TLS")
            }
            ImageError::OutsideWindow { vaddr } => write!(
                f,
                "segment at {vaddr:#x} lies outside the image window {IMAGE_VA:#x}..{IMAGE_END_VA:#x}"
            ),
            ImageError::WriteAndExecute { vaddr } => {
                write!(f, "page {vaddr:#x} would be writable and executable")
            }
            ImageError::BadEntry { entry } => {
                write!(f, "entry point {entry:#x} is not in an executable page")
            }
        }
    }
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_TLS: u32 = 7;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where it goes.
    pub vaddr: u64,
    /// Bytes in memory (the rest after the file's bytes is zero).
    pub mem_size: u64,
    /// Where its bytes are in the file.
    pub file_offset: u64,
    /// Bytes from the file.
    pub file_size: u64,
    flags: u32,
}

/// A checked image: its entry point and the permission of each page of
/// the window (`None`: not mapped).
#[derive(Debug)]
pub struct Loaded {
    /// The entry point.
    pub entry: u64,
    /// Per page of the image window.
    pub pages: [Option<Perm>; IMAGE_PAGES as usize],
    segments: heapless::Vec<Segment, 8>,
}

impl Loaded {
    /// The loadable segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ImageError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ImageError::Truncated)
}
fn u32_at(b: &[u8], at: usize) -> Result<u32, ImageError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ImageError::Truncated)
}
fn u64_at(b: &[u8], at: usize) -> Result<u64, ImageError> {
    let s = b.get(at..at + 8).ok_or(ImageError::Truncated)?;
    let mut q = [0u8; 8];
    q.copy_from_slice(s);
    Ok(u64::from_le_bytes(q))
}

/// Checks `file` and works out its pages (ELF-64 object file format,
/// version 1.5: the file header and program headers).
pub fn parse(file: &[u8]) -> Result<Loaded, ImageError> {
    let ident_ok = file.get(..7) == Some(&[0x7f, b'E', b'L', b'F', 2, 1, 1][..]);
    const ET_EXEC: u16 = 2;
    const EM_X86_64: u16 = 62;
    if !ident_ok || u16_at(file, 16)? != ET_EXEC || u16_at(file, 18)? != EM_X86_64 {
        return Err(ImageError::NotExecutable);
    }
    let entry = u64_at(file, 24)?;
    let phoff = usize::try_from(u64_at(file, 32)?).map_err(|_| ImageError::Truncated)?;
    let phentsize = usize::from(u16_at(file, 54)?);
    let phnum = usize::from(u16_at(file, 56)?);
    if phentsize < 56 {
        return Err(ImageError::NotExecutable);
    }
    let mut loaded = Loaded {
        entry,
        pages: [None; IMAGE_PAGES as usize],
        segments: heapless::Vec::new(),
    };
    let mut flags_of = [0u32; IMAGE_PAGES as usize];
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(ImageError::Truncated)?;
        let kind = u32_at(file, at)?;
        match kind {
            PT_LOAD => {}
            PT_DYNAMIC | PT_INTERP | PT_TLS => return Err(ImageError::NotStatic),
            _ => continue,
        }
        let segment = Segment {
            flags: u32_at(file, at + 4)?,
            file_offset: u64_at(file, at + 8)?,
            vaddr: u64_at(file, at + 16)?,
            file_size: u64_at(file, at + 32)?,
            mem_size: u64_at(file, at + 40)?,
        };
        let file_end = segment
            .file_offset
            .checked_add(segment.file_size)
            .ok_or(ImageError::Truncated)?;
        if file_end > file.len() as u64 || segment.file_size > segment.mem_size {
            return Err(ImageError::Truncated);
        }
        let end = segment.vaddr.checked_add(segment.mem_size);
        let outside = ImageError::OutsideWindow {
            vaddr: segment.vaddr,
        };
        if segment.vaddr < IMAGE_VA || end.is_none_or(|e| e > IMAGE_END_VA) {
            return Err(outside);
        }
        if segment.mem_size > 0 {
            let first = (segment.vaddr - IMAGE_VA) / PAGE;
            let last = (segment.vaddr + segment.mem_size - 1 - IMAGE_VA) / PAGE;
            for page in first..=last {
                flags_of[page as usize] |= segment.flags;
            }
        }
        loaded.segments.push(segment).map_err(|_| outside)?;
    }
    for (i, &flags) in flags_of.iter().enumerate() {
        let vaddr = IMAGE_VA + i as u64 * PAGE;
        loaded.pages[i] = match (flags & PF_R != 0, flags & PF_W != 0, flags & PF_X != 0) {
            (_, true, true) => return Err(ImageError::WriteAndExecute { vaddr }),
            (_, true, false) => Some(Perm::ReadWrite),
            (_, false, true) => Some(Perm::ReadExecute),
            (true, false, false) => Some(Perm::Read),
            (false, false, false) => None,
        };
    }
    let entry_page = entry
        .checked_sub(IMAGE_VA)
        .map(|o| o / PAGE)
        .filter(|&p| p < IMAGE_PAGES);
    match entry_page.map(|p| loaded.pages[p as usize]) {
        Some(Some(Perm::ReadExecute)) => Ok(loaded),
        _ => Err(ImageError::BadEntry { entry }),
    }
}
