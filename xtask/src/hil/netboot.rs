//! Network boot from xtask's own servers: what a machine (or QEMU's NIC
//! ROM) fetches, in order, and from where.
//!
//! 1. Its iPXE (QEMU's NIC ROM; on a real machine iPXE chainloaded by the
//!    DHCP server, or flashed) gets `tftp://SERVER:PORT/boot.ipxe` as its
//!    DHCP boot file, over [`super::tftp`].
//! 2. `boot.ipxe` chains `grub.pxe` over TFTP: GRUB's i386-pc-pxe image,
//!    built per run by `grub-mkimage` with an embedded configuration that
//!    names xtask's HTTP server.
//! 3. GRUB loads `grub.cfg` and the monitor's ELF over [`super::http`] and
//!    boots it with `multiboot2`, the kernel command line on that line.
//!
//! Why GRUB in the middle: iPXE's BIOS build boots Multiboot 1 images
//! only (32-bit ELF or the a.out kludge), and the monitor is a 64-bit
//! ELF with a Multiboot2 header and a PVH note. A Multiboot 1 header
//! would make QEMU's `-kernel` take the Multiboot 1 path (it checks that
//! before PVH) and refuse the 64-bit ELF (PLATFORM_NOTES.md), so the
//! monitor keeps its two boot paths and GRUB, which the ISO uses too,
//! does Multiboot2 here. The same files serve a plain PXE ROM when the
//! DHCP server names `grub.pxe` on TFTP port 69.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{cmd, deps};

/// The files of one run, by name.
#[derive(Debug, Clone)]
pub struct Files(Arc<BTreeMap<String, Arc<Vec<u8>>>>);

impl Files {
    pub fn new(files: BTreeMap<String, Arc<Vec<u8>>>) -> Files {
        Files(Arc::new(files))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Vec<u8>>> {
        self.0.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// One request a server answered.
#[derive(Debug, Clone)]
pub struct Served {
    pub protocol: &'static str,
    pub peer: SocketAddr,
    pub path: String,
    /// What was sent, or why not.
    pub result: String,
    /// Since the servers started.
    pub at_ms: u128,
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7} ms {} {} {}: {}",
            self.at_ms, self.protocol, self.peer, self.path, self.result
        )
    }
}

/// What both servers answered, shared with their threads.
#[derive(Clone)]
pub struct RequestLog {
    start: Instant,
    entries: Arc<Mutex<Vec<Served>>>,
    /// Called with each entry as it is recorded (the run's live output).
    #[allow(clippy::type_complexity)] // one callback, named by its use
    on_record: Option<Arc<dyn Fn(&Served) + Send + Sync>>,
}

impl Default for RequestLog {
    fn default() -> RequestLog {
        RequestLog {
            start: Instant::now(),
            entries: Arc::default(),
            on_record: None,
        }
    }
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl RequestLog {
    /// A log that also hands each entry to `f`.
    pub fn with_callback(f: impl Fn(&Served) + Send + Sync + 'static) -> RequestLog {
        RequestLog {
            on_record: Some(Arc::new(f)),
            ..RequestLog::default()
        }
    }

    pub fn record(&self, protocol: &'static str, peer: SocketAddr, path: &str, result: &str) {
        let entry = Served {
            protocol,
            peer,
            path: path.to_string(),
            result: result.to_string(),
            at_ms: self.start.elapsed().as_millis(),
        };
        if let Some(f) = &self.on_record {
            f(&entry);
        }
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    pub fn entries(&self) -> Vec<Served> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `path` was sent whole at least once.
    pub fn sent(&self, path: &str) -> bool {
        self.entries()
            .iter()
            .any(|e| e.path == path && e.result.starts_with("sent "))
    }
}

/// Where the machine finds the servers and what it boots.
#[derive(Debug, Clone)]
pub struct BootPlan {
    /// The servers' address as the machine sees it.
    pub server: Ipv4Addr,
    pub tftp_port: u16,
    pub http_port: u16,
    /// The monitor's command line.
    pub cmdline: String,
    /// Shown by iPXE and GRUB, to tell runs apart on a screen.
    pub label: String,
}

/// The boot file a DHCP server (or QEMU's `bootfile=`) names for iPXE.
pub const IPXE_SCRIPT: &str = "boot.ipxe";
/// GRUB's PXE image (also the boot file for a plain PXE ROM).
pub const GRUB_PXE: &str = "grub.pxe";
pub const GRUB_CFG: &str = "grub.cfg";
pub const MONITOR_ELF: &str = "gmig.elf";

impl BootPlan {
    /// The DHCP boot file URL for iPXE.
    pub fn ipxe_url(&self) -> String {
        format!("tftp://{}:{}/{IPXE_SCRIPT}", self.server, self.tftp_port)
    }

    fn http(&self) -> String {
        format!("(http,{}:{})", self.server, self.http_port)
    }

    /// iPXE's script: show the run, chain GRUB over TFTP.
    pub fn ipxe_script(&self) -> String {
        format!(
            "#!ipxe\n\
             echo xtask netboot: {label}\n\
             echo kernel command line: {cmdline}\n\
             chain tftp://{server}:{port}/{GRUB_PXE} || goto failed\n\
             :failed\n\
             echo xtask netboot: chaining {GRUB_PXE} failed\n\
             sleep 30\n\
             reboot\n",
            label = self.label,
            cmdline = self.cmdline,
            server = self.server,
            port = self.tftp_port,
        )
    }

    /// GRUB's embedded configuration: its output on COM1 too (so a
    /// loading error reaches the run's console), then grub.cfg over HTTP.
    pub fn grub_early_cfg(&self) -> String {
        format!(
            "serial --unit=0 --speed={baud}\n\
             terminal_output --append serial\n\
             echo \"xtask netboot: GRUB fetching {http}/{GRUB_CFG}\"\n\
             configfile {http}/{GRUB_CFG}\n",
            baud = super::target::MONITOR_BAUD,
            http = self.http(),
        )
    }

    /// The run's grub.cfg: the monitor and its command line.
    pub fn grub_cfg(&self) -> String {
        format!(
            "echo \"xtask netboot: GRUB loading {http}/{MONITOR_ELF}\"\n\
             multiboot2 {http}/{MONITOR_ELF} {cmdline}\n\
             boot\n",
            http = self.http(),
            cmdline = self.cmdline,
        )
    }

    /// Every file of the run; `work` holds GRUB's build inputs.
    pub fn files(&self, elf: &Path, work: &Path) -> Result<Files> {
        let grub = grub_pxe_image(&self.grub_early_cfg(), work)?;
        let full =
            std::fs::read(elf).with_context(|| format!("reading the monitor {}", elf.display()))?;
        let monitor = loadable_image(&full)
            .with_context(|| format!("the monitor {} is not a 64-bit ELF", elf.display()))?;
        let text = |s: String| Arc::new(s.into_bytes());
        Ok(Files::new(BTreeMap::from([
            (IPXE_SCRIPT.to_string(), text(self.ipxe_script())),
            (GRUB_PXE.to_string(), Arc::new(grub)),
            (GRUB_CFG.to_string(), text(self.grub_cfg())),
            (MONITOR_ELF.to_string(), Arc::new(monitor)),
        ])))
    }
}

/// The monitor as the machine needs it: the ELF cut after its last
/// loadable byte, without section headers. GRUB then loads only the
/// program headers' segments (with section headers it also reads them,
/// and the symbol table, from the end of a 17 MiB file it fetches over
/// HTTP), and the machine fetches about 3 MiB instead of 17: the debug
/// information and the `.defmt` table stay on the host, which decodes
/// the log with the full ELF.
pub fn loadable_image(elf: &[u8]) -> Result<Vec<u8>> {
    let u16_at = |at: usize| -> Result<u16> {
        let b = elf.get(at..at + 2).context("truncated header")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| -> Result<u64> {
        let b = elf.get(at..at + 8).context("truncated header")?;
        Ok(u64::from_le_bytes(b.try_into()?))
    };
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        bail!("no ELF64 little-endian magic");
    }
    let phoff = u64_at(0x20)?;
    let (phentsize, phnum) = (u64::from(u16_at(0x36)?), u64::from(u16_at(0x38)?));
    let mut end = phoff + phentsize * phnum;
    for i in 0..phnum {
        let ph = usize::try_from(phoff + i * phentsize)?;
        let (offset, filesz) = (u64_at(ph + 8)?, u64_at(ph + 32)?);
        end = end.max(offset + filesz);
    }
    let end = usize::try_from(end)?;
    let mut image = elf
        .get(..end)
        .context("a segment past the end of the file")?
        .to_vec();
    // e_shoff, then e_shentsize, e_shnum, e_shstrndx: no section headers.
    image[0x28..0x30].fill(0);
    image[0x3a..0x40].fill(0);
    Ok(image)
}

/// The GRUB modules the PXE image embeds (it loads none at run time).
const GRUB_MODULES: &[&str] = &[
    "pxe",
    "net",
    "tftp",
    "http",
    "multiboot2",
    "normal",
    "configfile",
    "echo",
    "serial",
    "terminal",
];

/// What building GRUB's PXE image needs.
pub const GRUB_NETBOOT: &[deps::Tool] = &[deps::Tool {
    binary: "grub-mkimage",
    package: "grub-common",
}];

/// Builds GRUB's i386-pc-pxe image with `early_cfg` embedded.
fn grub_pxe_image(early_cfg: &str, work: &Path) -> Result<Vec<u8>> {
    deps::ensure(GRUB_NETBOOT)?;
    std::fs::create_dir_all(work)?;
    let cfg = work.join("grub-early.cfg");
    let image = work.join(GRUB_PXE);
    std::fs::write(&cfg, early_cfg)?;
    let mut mkimage = Command::new("grub-mkimage");
    mkimage
        .args(["-O", "i386-pc-pxe", "-p", "/"])
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&image)
        .args(GRUB_MODULES);
    let out = mkimage
        .output()
        .with_context(|| format!("cannot start `{}`", cmd::display(&mkimage)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            cmd::display(&mkimage),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read(&image).with_context(|| format!("reading {}", image.display()))
}

/// Both servers' sockets, bound (so their ports can go into the files).
#[derive(Debug)]
pub struct Sockets {
    udp: UdpSocket,
    tcp: TcpListener,
    pub tftp: SocketAddr,
    pub http: SocketAddr,
}

/// Binds TFTP (UDP) and HTTP (TCP) on `listen`; a port of 0 picks a free one.
pub fn bind(listen: Ipv4Addr, tftp_port: u16, http_port: u16) -> Result<Sockets> {
    let hint = |port: u16| {
        if port < 1024 && port != 0 {
            " (ports below 1024 need root)"
        } else {
            ""
        }
    };
    let udp = UdpSocket::bind(SocketAddrV4::new(listen, tftp_port)).with_context(|| {
        format!(
            "`netboot.tftp_port`: cannot bind the TFTP server to {listen}:{tftp_port}{}",
            hint(tftp_port)
        )
    })?;
    let tcp = TcpListener::bind(SocketAddrV4::new(listen, http_port)).with_context(|| {
        format!(
            "`netboot.http_port`: cannot bind the HTTP server to {listen}:{http_port}{}",
            hint(http_port)
        )
    })?;
    Ok(Sockets {
        tftp: udp.local_addr()?,
        http: tcp.local_addr()?,
        udp,
        tcp,
    })
}

/// Running servers; stopped when dropped.
#[derive(Debug)]
pub struct Servers {
    pub tftp: SocketAddr,
    pub http: SocketAddr,
    pub log: RequestLog,
    pub files: Files,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts both servers on `sockets` with `files`.
pub fn serve(sockets: Sockets, files: Files, log: RequestLog) -> Result<Servers> {
    let stop = Arc::new(AtomicBool::new(false));
    let tftp = super::tftp::serve(sockets.udp, files.clone(), log.clone(), Arc::clone(&stop))
        .context("starting the TFTP server")?;
    let http = super::http::serve(sockets.tcp, files.clone(), log.clone(), Arc::clone(&stop))
        .context("starting the HTTP server")?;
    Ok(Servers {
        tftp: sockets.tftp,
        http: sockets.http,
        log,
        files,
        stop,
        threads: vec![tftp, http],
    })
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> BootPlan {
        BootPlan {
            server: Ipv4Addr::new(10, 0, 2, 2),
            tftp_port: 6969,
            http_port: 8080,
            cmdline: "selftest=all vgpus=2".into(),
            label: "qemu".into(),
        }
    }

    #[test]
    fn each_file_names_the_next_and_grub_cfg_carries_the_command_line() {
        let p = plan();
        assert_eq!(p.ipxe_url(), "tftp://10.0.2.2:6969/boot.ipxe");
        assert!(p
            .ipxe_script()
            .contains("chain tftp://10.0.2.2:6969/grub.pxe"));
        assert!(p.ipxe_script().starts_with("#!ipxe\n"));
        assert!(p
            .grub_early_cfg()
            .contains("configfile (http,10.0.2.2:8080)/grub.cfg"));
        assert!(p
            .grub_cfg()
            .contains("multiboot2 (http,10.0.2.2:8080)/gmig.elf selftest=all vgpus=2\n"));
    }

    #[test]
    fn the_served_monitor_keeps_every_segment_and_drops_the_rest() {
        let elf = crate::paths::kernel_elf();
        let Ok(full) = std::fs::read(&elf) else {
            return; // not built yet: the hil integration test covers it
        };
        let image = loadable_image(&full).unwrap();
        assert!(
            image.len() < full.len() / 2,
            "{} of {}",
            image.len(),
            full.len()
        );
        assert_eq!(&image[..0x28], &full[..0x28]);
        assert_eq!(&image[0x30..0x3a], &full[0x30..0x3a]);
        assert!(image[0x28..0x30]
            .iter()
            .chain(&image[0x3a..0x40])
            .all(|&b| b == 0));
        assert!(full[image.len()..].iter().any(|&b| b != 0));
        assert!(loadable_image(b"\x7fELF\x01\x01").is_err());
        assert!(loadable_image(&full[..0x30]).is_err());
    }

    #[test]
    fn a_taken_port_is_named_by_its_field() {
        let taken = bind(Ipv4Addr::LOCALHOST, 0, 0).unwrap();
        let e = bind(Ipv4Addr::LOCALHOST, 0, taken.http.port()).unwrap_err();
        assert!(format!("{e:#}").contains("`netboot.http_port`"), "{e:#}");
        let e = bind(Ipv4Addr::LOCALHOST, taken.tftp.port(), 0).unwrap_err();
        assert!(format!("{e:#}").contains("`netboot.tftp_port`"), "{e:#}");
    }
}
