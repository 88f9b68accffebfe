//! What a VFIO PCI device is made of: its regions, its BARs, its IRQ indexes and its config space
//! as it was when we took it over.
//!
//! Everything here comes from the host (the kernel, or a device model) and is checked as
//! untrusted: reply indexes must match the question, a BAR register and its region must agree,
//! a 64-bit BAR's upper slot must be empty, sizes must be powers of two a BAR can have.

use devices::pci::{
    BarKind, PCI_NUM_BARS, PCI_ROM_BAR_INDEX, PciBar, PciConfiguration, PciIdentity,
};

use super::error::VfioPciError;
use crate::errno::Errno;
use crate::vfio::{
    DeviceInfo, IrqInfo, RegionInfo, VFIO_DEVICE_FLAGS_PCI, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_PCI_VGA_REGION_INDEX,
    VfioDevice, region_info,
};

/// Size of PCI Express configuration space; bytes past it are never read.
pub(super) const CONFIG_SPACE_SIZE: usize = 4096;
/// Offset of BAR 0.
pub(super) const BAR0_OFFSET: usize = 0x10;

const BAR_IO: u32 = 0x1;
const BAR_MEM_TYPE_MASK: u32 = 0x6;
const BAR_MEM_TYPE_64: u32 = 0x4;
const BAR_MEM_TYPE_RESERVED: u32 = 0x6;
const BAR_MEM_PREFETCH: u32 = 0x8;

/// The device as discovered when the passthrough device was built.
#[derive(Debug, Clone)]
pub(super) struct DeviceLayout {
    /// `VFIO_DEVICE_GET_INFO`.
    pub info: DeviceInfo,
    /// Every region, by index (`size` 0 for an absent one).
    pub regions: Vec<RegionInfo>,
    /// The device's config space as read at start (up to 4 KiB, as long as its region).
    pub config: Vec<u8>,
    /// The BARs it implements, the ROM included (index 6).
    pub bars: Vec<PciBar>,
    /// IRQ info for each vfio-pci index (INTx, MSI, MSI-X, ERR, REQ) the device reports.
    pub irqs: [Option<IrqInfo>; VFIO_PCI_NUM_IRQS as usize],
}

impl DeviceLayout {
    /// Asks the device for everything the passthrough device needs to know.
    pub fn discover(device: &dyn VfioDevice, name: &str) -> Result<Self, VfioPciError> {
        let dev = || name.to_string();
        let info = device
            .device_info()
            .map_err(|source| VfioPciError::DeviceInfo {
                device: dev(),
                source,
            })?;
        if info.flags & VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(VfioPciError::NotPci {
                device: dev(),
                flags: info.flags,
            });
        }
        if info.num_regions < VFIO_PCI_NUM_REGIONS {
            return Err(VfioPciError::TooFewRegions {
                device: dev(),
                num_regions: info.num_regions,
            });
        }
        let regions = (0..info.num_regions)
            .map(|index| {
                let region = match region_info(device, index) {
                    // vfio-pci answers EINVAL for the VGA region of a function without VGA:
                    // the region is simply absent.
                    Err(Errno::EINVAL) if index == VFIO_PCI_VGA_REGION_INDEX => RegionInfo {
                        flags: 0,
                        index,
                        size: 0,
                        offset: 0,
                        caps: Vec::new(),
                    },
                    other => other.map_err(|source| VfioPciError::RegionInfo {
                        device: dev(),
                        index,
                        source,
                    })?,
                };
                if region.index != index {
                    return Err(VfioPciError::RegionIndexMismatch {
                        device: dev(),
                        index,
                        reported: region.index,
                    });
                }
                Ok(region)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = read_config(
            device,
            name,
            &regions[VFIO_PCI_CONFIG_REGION_INDEX as usize],
        )?;
        let bars = discover_bars(name, &regions, &config)?;
        let mut irqs = [None; VFIO_PCI_NUM_IRQS as usize];
        for index in 0..info.num_irqs.min(VFIO_PCI_NUM_IRQS) {
            let irq = match device.irq_info(index) {
                Ok(irq) => irq,
                // vfio-pci answers EINVAL for the ERR index of a conventional PCI function.
                Err(Errno::EINVAL) if index == VFIO_PCI_ERR_IRQ_INDEX => continue,
                Err(source) => {
                    return Err(VfioPciError::IrqInfo {
                        device: dev(),
                        index,
                        source,
                    });
                }
            };
            if irq.index != index {
                return Err(VfioPciError::IrqIndexMismatch {
                    device: dev(),
                    index,
                    reported: irq.index,
                });
            }
            irqs[index as usize] = Some(irq);
        }
        Ok(Self {
            info,
            regions,
            config,
            bars,
            irqs,
        })
    }

    /// The identification fields of the device's header.
    pub fn identity(&self) -> PciIdentity {
        let c = &self.config;
        let word = |o: usize| u16::from_le_bytes([c[o], c[o + 1]]);
        PciIdentity {
            vendor_id: word(0x00),
            device_id: word(0x02),
            subsystem_vendor_id: word(0x2c),
            subsystem_id: word(0x2e),
            revision_id: c[0x08],
            class_code: devices::pci::PciClassCode {
                class: c[0x0b],
                subclass: c[0x0a],
                prog_if: c[0x09],
            },
        }
    }

    /// The dword at `offset` of the initial config space (0 past its end).
    pub fn config_dword(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = self.config.get(offset + i).copied().unwrap_or(0);
        }
        u32::from_le_bytes(b)
    }

    /// The BAR at `index`, if the device implements one there.
    pub fn bar(&self, index: usize) -> Option<PciBar> {
        self.bars.iter().copied().find(|b| b.index == index)
    }

    /// IRQ info of `index` if the device can signal it through an eventfd with at least one
    /// vector.
    pub fn usable_irq(&self, index: u32) -> Option<IrqInfo> {
        self.irqs
            .get(index as usize)
            .copied()
            .flatten()
            .filter(|i| i.count > 0 && i.flags & crate::vfio::VFIO_IRQ_INFO_EVENTFD != 0)
    }

    /// The device-specific regions (index 9 and up), e.g. a v1 migration region.
    pub fn device_specific_regions(&self) -> &[RegionInfo] {
        &self.regions[VFIO_PCI_NUM_REGIONS as usize..]
    }
}

/// Reads the whole config region (at most 4 KiB) as it is now.
fn read_config(
    device: &dyn VfioDevice,
    name: &str,
    region: &RegionInfo,
) -> Result<Vec<u8>, VfioPciError> {
    // A config space smaller than the type 0 header cannot describe a function.
    let len = usize::try_from(region.size)
        .unwrap_or(usize::MAX)
        .min(CONFIG_SPACE_SIZE);
    let error = |source| VfioPciError::ConfigRead {
        device: name.to_string(),
        offset: 0,
        len: len.max(64),
        source,
    };
    if len < 64 {
        return Err(error(crate::errno::Errno::EIO));
    }
    let mut config = vec![0u8; len];
    let done = device
        .region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut config)
        .map_err(error)?;
    if done != len {
        return Err(error(crate::errno::Errno::EIO));
    }
    Ok(config)
}

/// The BARs the device's BAR registers and regions describe together.
fn discover_bars(
    name: &str,
    regions: &[RegionInfo],
    config: &[u8],
) -> Result<Vec<PciBar>, VfioPciError> {
    let invalid = |index: usize, reason: String| VfioPciError::InvalidBar {
        device: name.to_string(),
        index,
        reason,
    };
    let register = |offset: usize| {
        u32::from_le_bytes([
            config[offset],
            config[offset + 1],
            config[offset + 2],
            config[offset + 3],
        ])
    };
    let mut bars = Vec::new();
    let mut index = 0;
    while index < PCI_NUM_BARS {
        let size = regions[index].size;
        if size == 0 {
            index += 1;
            continue;
        }
        let reg = register(BAR0_OFFSET + 4 * index);
        let (kind, prefetchable) = if reg & BAR_IO != 0 {
            (BarKind::Io, false)
        } else {
            let kind = match reg & BAR_MEM_TYPE_MASK {
                BAR_MEM_TYPE_64 => BarKind::Memory64,
                BAR_MEM_TYPE_RESERVED => {
                    return Err(invalid(index, format!("reserved memory type in {reg:#x}")));
                }
                // Type 1 ("below 1 MiB") is obsolete; such a BAR is placed like a 32-bit one.
                _ => BarKind::Memory32,
            };
            (kind, reg & BAR_MEM_PREFETCH != 0)
        };
        if kind == BarKind::Memory64 {
            let upper = regions.get(index + 1).filter(|_| index + 1 < PCI_NUM_BARS);
            match upper {
                None => {
                    return Err(invalid(
                        index,
                        "a 64-bit BAR needs the next BAR slot for its upper half".into(),
                    ));
                }
                Some(r) if r.size != 0 => {
                    return Err(invalid(
                        index,
                        format!(
                            "64-bit BAR, but region {} (its upper half) has size {:#x}",
                            index + 1,
                            r.size
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        bars.push(PciBar {
            index,
            size,
            kind,
            prefetchable,
        });
        index += if kind == BarKind::Memory64 { 2 } else { 1 };
    }
    let rom_size = regions[PCI_ROM_BAR_INDEX].size;
    if rom_size != 0 {
        bars.push(PciBar {
            index: PCI_ROM_BAR_INDEX,
            size: rom_size,
            kind: BarKind::Rom,
            prefetchable: false,
        });
    }
    // Let the config space model judge sizes and indexes, as it will when the device is built.
    let mut scratch = PciConfiguration::new(&PciIdentity::default());
    for bar in &bars {
        scratch.add_bar(*bar).map_err(|source| VfioPciError::Bar {
            device: name.to_string(),
            index: bar.index,
            source,
        })?;
    }
    Ok(bars)
}
