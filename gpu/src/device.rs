//! Which PCI display devices the real-hardware backend drives: Gen9 GT2
//! parts (Skylake and Kaby Lake), the class GVT-g mediates. Device ids are
//! from Linux `include/drm/i915_pciids.h` (`INTEL_SKL_GT2_IDS`,
//! `INTEL_KBL_GT2_IDS`). Anything else gets the software model.

/// Intel's PCI vendor id.
pub const INTEL_VENDOR: u16 = 0x8086;
/// PCI class code of display controllers.
pub const DISPLAY_CLASS: u8 = 0x03;

/// A supported device id and its marketing family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupportedDevice {
    /// PCI device id.
    pub device: u16,
    /// "Skylake GT2" or "Kaby Lake GT2".
    pub family: &'static str,
}

const SKYLAKE_GT2: [u16; 7] = [0x1912, 0x1916, 0x191a, 0x191b, 0x191d, 0x191e, 0x1921];
const KABY_LAKE_GT2: [u16; 8] = [
    0x5912, 0x5916, 0x5917, 0x591a, 0x591b, 0x591d, 0x591e, 0x5921,
];

/// The supported device a PCI function is, if it is one.
pub fn supported(vendor: u16, class: u8, device: u16) -> Option<SupportedDevice> {
    if vendor != INTEL_VENDOR || class != DISPLAY_CLASS {
        return None;
    }
    if SKYLAKE_GT2.contains(&device) {
        Some(SupportedDevice {
            device,
            family: "Skylake GT2",
        })
    } else if KABY_LAKE_GT2.contains(&device) {
        Some(SupportedDevice {
            device,
            family: "Kaby Lake GT2",
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen9_gt2_parts_are_supported() {
        assert_eq!(
            supported(0x8086, 0x03, 0x1912).map(|d| d.family),
            Some("Skylake GT2")
        );
        assert_eq!(
            supported(0x8086, 0x03, 0x5916).map(|d| d.family),
            Some("Kaby Lake GT2")
        );
    }

    #[test]
    fn other_devices_are_not() {
        // QEMU's std VGA, an Intel NIC, a Gen9 GT3 part, a Gen11 part.
        assert_eq!(supported(0x1234, 0x03, 0x1111), None);
        assert_eq!(supported(0x8086, 0x02, 0x10d3), None);
        assert_eq!(supported(0x8086, 0x03, 0x1926), None);
        assert_eq!(supported(0x8086, 0x03, 0x8a52), None);
    }
}
