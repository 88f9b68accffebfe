//! Group `kernel-vfio`: the kernel VFIO devices (`CdevDevice`, `GroupDevice`) against edu and
//! nvme bound to vfio-pci (devices boot): device and region info, config space, BAR mmap and
//! trapped access, what each route refuses, hot-reset info, and the device opener.

use std::path::Path;
use std::sync::Arc;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::{Iommufd, IommufdDevice, KernelIommufd};
use vfio_passthrough::vfio::kernel::{DeviceRoute, KernelDevice, KernelDeviceOpener};
use vfio_passthrough::vfio::*;

use super::kernel_support::{Check, LabDevice, Route, ensure, expect_eq, expect_errno, on};
use crate::lab::case::Case;
use crate::lab::outcome::{Boot, Outcome};
use crate::lab::sysfs::{PciFunction, SysRoot};

/// A lab PCI device.
#[derive(Debug, Clone, Copy)]
enum Lab {
    Edu,
    Nvme,
}

impl Lab {
    fn name(self) -> &'static str {
        match self {
            Lab::Edu => "edu",
            Lab::Nvme => "nvme",
        }
    }

    fn function(self) -> Result<PciFunction, String> {
        let root = SysRoot::system();
        match self {
            Lab::Edu => root.edu(),
            Lab::Nvme => root.nvme(),
        }
        .map_err(|e| e.to_string())
    }
}

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    if boot != Boot::Devices {
        return Vec::new();
    }
    let mut cases = Vec::new();
    for lab in [Lab::Edu, Lab::Nvme] {
        for route in Route::ALL {
            let on_device = |what: &str, body: fn(Lab, &LabDevice) -> Check| {
                Case::kernel_only(
                    format!("{}-{}-{what}", lab.name(), route.name()),
                    move || {
                        Outcome::from_result(
                            lab.function()
                                .and_then(|f| LabDevice::open(&f, route))
                                .and_then(|d| body(lab, &d)),
                        )
                    },
                )
            };
            cases.push(on_device("info-and-regions", info_and_regions));
            cases.push(on_device("config-ids", config_ids));
            cases.push(on_device(
                "bar0-mmap-matches-trapped",
                bar0_mmap_matches_trapped,
            ));
            cases.push(on_device("hot-reset-info-enodev", hot_reset_info));
            cases.push(on_device("irq-info", irq_info));
            cases.push(on_device("reset", reset));
        }
    }
    cases.extend([
        Case::kernel_only("cdev-bind-attach-rules", || {
            Outcome::from_result(cdev_bind_attach_rules())
        }),
        Case::kernel_only("group-device-refuses-iommufd", || {
            Outcome::from_result(group_device_refuses_iommufd())
        }),
        Case::kernel_only("opener-routes-edu-through-the-cdev", || {
            Outcome::from_result(opener_routes_edu())
        }),
    ]);
    cases
}

fn info_and_regions(lab: Lab, dev: &LabDevice) -> Check {
    let info = on("VFIO_DEVICE_GET_INFO", dev.vfio().device_info())?;
    ensure(info.flags & VFIO_DEVICE_FLAGS_PCI != 0, || {
        format!("device flags {:#x} lack PCI", info.flags)
    })?;
    ensure(info.num_regions >= VFIO_PCI_NUM_REGIONS, || {
        format!("{} regions", info.num_regions)
    })?;
    expect_eq("IRQ indexes", info.num_irqs, VFIO_PCI_NUM_IRQS)?;

    let config = on(
        "config region info",
        region_info(dev.vfio(), VFIO_PCI_CONFIG_REGION_INDEX),
    )?;
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    expect_eq("config region flags & RW", config.flags & rw, rw)?;
    ensure(config.size >= 256, || {
        format!("config region of {} bytes", config.size)
    })?;
    let bar0 = on("BAR0 region info", region_info(dev.vfio(), 0))?;
    let (want_size, want_caps) = match lab {
        Lab::Edu => (1 << 20, vec![]),
        // Registers, doorbells and the MSI-X table; 6.12 lets the table be mmapped too.
        Lab::Nvme => (16 << 10, vec![RegionCap::MsixMappable]),
    };
    expect_eq("BAR0 size", bar0.size, want_size)?;
    expect_eq("BAR0 capabilities", bar0.caps.clone(), want_caps)?;
    let rwm = rw | VFIO_REGION_INFO_FLAG_MMAP;
    expect_eq("BAR0 flags & RW|MMAP", bar0.flags & rwm, rwm)?;
    // Regions past the last index are refused.
    expect_errno(
        "region info past the last index",
        region_info(dev.vfio(), info.num_regions),
        Errno::EINVAL,
    )
}

fn config_ids(lab: Lab, dev: &LabDevice) -> Check {
    let function = lab.function()?;
    let ids = dev.config_read::<4>(0)?;
    expect_eq(
        "vendor id from config space",
        u16::from_le_bytes([ids[0], ids[1]]),
        function.vendor,
    )?;
    expect_eq(
        "device id from config space",
        u16::from_le_bytes([ids[2], ids[3]]),
        function.device,
    )?;
    let class = dev.config_read::<4>(8)?;
    expect_eq(
        "class code from config space",
        u32::from_le_bytes(class) >> 8,
        function.class,
    )
}

/// A register both access paths must agree on: edu's identification (0x010000ed) and
/// liveness (reads back the inverse of what was written); nvme's CAP and VS registers.
fn bar0_mmap_matches_trapped(lab: Lab, dev: &LabDevice) -> Check {
    dev.enable_memory_and_bus_master()?;
    let bar0 = on("BAR0 region info", region_info(dev.vfio(), 0))?;
    let (off, len) = *bar0
        .mmap_areas()
        .first()
        .ok_or("BAR0 has no mmap-able area")?;
    let map = on(
        "mmap of BAR0",
        dev.vfio().region_mmap(0, off, len.min(0x1000), true),
    )?;
    let trapped32 = |at: u64| -> Result<u32, String> {
        let mut b = [0u8; 4];
        on(
            format!("pread of BAR0 at {at:#x}"),
            dev.vfio().region_read(0, at, &mut b),
        )?;
        Ok(u32::from_le_bytes(b))
    };
    let mapped32 = |at: u64| -> Result<u32, String> {
        on("read through the mmap", map.read_u32((at - off) as usize))
    };
    match lab {
        Lab::Edu => {
            expect_eq("edu identification (trapped)", trapped32(0)?, 0x0100_00ed)?;
            expect_eq("edu identification (mmap)", mapped32(0)?, 0x0100_00ed)?;
            // Liveness: write through the mmap, read through the trap, and the other way.
            on(
                "mmap write of liveness",
                map.write_u32(4 - off as usize, 0x1234_5678),
            )?;
            expect_eq("liveness (trapped read)", trapped32(4)?, !0x1234_5678u32)?;
            on(
                "pwrite of liveness",
                dev.vfio().region_write(0, 4, &0x0f0f_0f0fu32.to_le_bytes()),
            )?;
            expect_eq("liveness (mmap read)", mapped32(4)?, !0x0f0f_0f0fu32)
        }
        Lab::Nvme => {
            for (what, at) in [("CAP low", 0u64), ("CAP high", 4), ("VS", 8)] {
                expect_eq(
                    format!("nvme {what} (mmap vs trapped)"),
                    mapped32(at)?,
                    trapped32(at)?,
                )?;
            }
            let vs = trapped32(8)?;
            ensure(vs >> 16 >= 1, || {
                format!("nvme VS {vs:#x}: major version 0")
            })
        }
    }
    .and_then(|()| {
        // Ranges outside the mmap areas are refused before mmap.
        expect_errno(
            "mmap past the region",
            dev.vfio()
                .region_mmap(0, bar0.size, 0x1000, false)
                .map(drop),
            Errno::EINVAL,
        )
    })
}

/// Both lab devices sit on QEMU's root bus, which has no bus or slot reset: the kernel answers
/// `ENODEV` (measured), through either route.
fn hot_reset_info(_lab: Lab, dev: &LabDevice) -> Check {
    let file = match &dev.device {
        KernelDevice::Cdev(d) => d.file(),
        KernelDevice::Group(d) => d.file(),
    };
    expect_errno(
        "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on a root-bus device",
        file.pci_hot_reset_info(),
        Errno::ENODEV,
    )
}

/// The IRQ indexes as vfio-pci reports them for QEMU's edu (conventional PCI, INTx and one
/// MSI vector) and nvme (PCIe, MSI-X only), measured on the lab kernel.
fn irq_info(lab: Lab, dev: &LabDevice) -> Check {
    let e = VFIO_IRQ_INFO_EVENTFD;
    let intx = e | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    let nr = e | VFIO_IRQ_INFO_NORESIZE;
    // (flags, count) per index: INTx, MSI, MSI-X, ERR, REQ; None = EINVAL.
    let want: [Option<(u32, u32)>; 5] = match lab {
        // No PCIe capability: no ERR index.
        Lab::Edu => [
            Some((intx, 1)),
            Some((nr, 1)),
            Some((nr, 0)),
            None,
            Some((nr, 1)),
        ],
        // MSI-X can grow while enabled (interrupt remapping): no NORESIZE.
        Lab::Nvme => [
            Some((intx, 1)),
            Some((nr, 0)),
            Some((e, 65)),
            Some((nr, 1)),
            Some((nr, 1)),
        ],
    };
    for (index, want) in want.into_iter().enumerate() {
        let got = dev.vfio().irq_info(index as u32);
        match want {
            Some(w) => {
                let got = on(format!("GET_IRQ_INFO({index})"), got)?;
                expect_eq(
                    format!("IRQ index {index} (flags, count)"),
                    (got.flags, got.count),
                    w,
                )?;
            }
            None => expect_errno(format!("GET_IRQ_INFO({index})"), got, Errno::EINVAL)?,
        }
    }
    Ok(())
}

/// nvme advertises `VFIO_DEVICE_FLAGS_RESET` and resets; edu (no FLR, no PM reset) does not
/// and is refused.
fn reset(lab: Lab, dev: &LabDevice) -> Check {
    let flags = on("VFIO_DEVICE_GET_INFO", dev.vfio().device_info())?.flags;
    match lab {
        Lab::Edu => {
            expect_eq("edu RESET flag", flags & VFIO_DEVICE_FLAGS_RESET, 0)?;
            expect_errno(
                "VFIO_DEVICE_RESET of edu",
                dev.vfio().reset(),
                Errno::EINVAL,
            )
        }
        Lab::Nvme => {
            ensure(flags & VFIO_DEVICE_FLAGS_RESET != 0, || {
                format!("nvme device flags {flags:#x} lack RESET")
            })?;
            on("VFIO_DEVICE_RESET of nvme", dev.vfio().reset())?;
            config_ids(lab, dev)
        }
    }
}

fn cdev_bind_attach_rules() -> Check {
    let edu = Lab::Edu.function()?;
    let dev = LabDevice::open(&edu, Route::Cdev)?;
    let KernelDevice::Cdev(cdev) = &dev.device else {
        return Err("opened through the group".into());
    };
    let ctx: Arc<dyn Iommufd> = Arc::new(on("opening /dev/iommu", KernelIommufd::open())?);
    expect_errno("a second BIND", cdev.bind_iommufd(&ctx), Errno::EINVAL)?;
    ensure(cdev.dev_id() != 0, || "dev_id 0 after bind".into())?;
    // Attaching to the IOAS again replaces atomically and reports the same HWPT.
    let super::kernel_support::DmaPath::Iommufd { ioas, hwpt, .. } = &dev.dma else {
        return Err("no iommufd DMA path".into());
    };
    ensure(hwpt != ioas, || {
        format!("attach reported the IOAS id {ioas} as HWPT")
    })?;
    expect_eq(
        "HWPT after re-attaching to the IOAS",
        on("ATTACH again", cdev.attach(None, *ioas))?,
        *hwpt,
    )?;
    // 6.12 knows no PASID attach: the flag is refused.
    expect_errno(
        "ATTACH with a PASID",
        cdev.attach(Some(1), *ioas),
        Errno::EINVAL,
    )?;
    on("DETACH", cdev.detach(None))?;
    on("DETACH twice", cdev.detach(None))
}

fn group_device_refuses_iommufd() -> Check {
    let edu = Lab::Edu.function()?;
    let dev = LabDevice::open(&edu, Route::Group)?;
    let ctx: Arc<dyn Iommufd> = Arc::new(on("opening /dev/iommu", KernelIommufd::open())?);
    expect_errno(
        "BIND on a group device",
        dev.vfio().bind_iommufd(&ctx),
        Errno::EINVAL,
    )?;
    expect_errno(
        "ATTACH on a group device",
        dev.vfio().attach_pt(1, None),
        Errno::ENOTTY,
    )?;
    // While the group holds the device, its cdev cannot be bound.
    let node = edu.vfio_cdev().ok_or("edu has no cdev")?;
    let cdev = on(
        format!("opening {}", node.display()),
        vfio_passthrough::vfio::kernel::CdevDevice::open(&node),
    )?;
    expect_errno(
        "BIND of the cdev while the group has the device",
        cdev.bind_iommufd(&ctx),
        Errno::EBUSY,
    )
}

fn opener_routes_edu() -> Check {
    let edu = Lab::Edu.function()?;
    let mut opener = KernelDeviceOpener::new();
    let sysfs = format!("/sys/bus/pci/devices/{}", edu.bdf);
    let route = on_open(&sysfs, opener.locate(Path::new(&sysfs)))?;
    expect_eq(
        "route of edu",
        route,
        DeviceRoute::Cdev {
            node: edu.vfio_cdev().ok_or("edu has no cdev")?,
        },
    )?;
    let device = on_open(&sysfs, opener.open(Path::new(&sysfs)))?;
    ensure(matches!(device, KernelDevice::Cdev(_)), || {
        "the opener did not use the cdev".into()
    })?;
    drop(device);
    // A device on another driver is named with it. The lab binds every PCI function except the
    // host bridge and the like to their drivers; pick the first one not on vfio-pci.
    let others: Vec<_> = SysRoot::system()
        .pci_functions()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|f| f.driver().as_deref() != Some("vfio-pci"))
        .collect();
    if let Some(other) = others.first() {
        let err = opener
            .locate(Path::new(&other.bdf))
            .err()
            .ok_or_else(|| format!("{} located although not on vfio-pci", other.bdf))?;
        ensure(err.to_string().starts_with(&other.bdf), || {
            format!("error does not name the path: {err}")
        })?;
    }
    Ok(())
}

fn on_open<T>(
    path: &str,
    r: Result<T, vfio_passthrough::vfio::kernel::KernelOpenError>,
) -> Result<T, String> {
    r.map_err(|e| format!("opening {path}: {e}"))
}
