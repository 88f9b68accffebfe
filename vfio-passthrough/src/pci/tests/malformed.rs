//! Malformed devices and accesses: clear errors, no panic, nothing reaches the device.

use devices::pci::PciDevice;

use super::*;
use crate::errno::Errno;
use crate::pci::BarAccessFault;
use crate::pci::test_utils::RegionAccess;
use crate::vfio::{
    DeviceInfo, IrqInfo, RegionCap, RegionInfo, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE, VfioDevice,
};

fn host() -> Arc<TestVfioDevice> {
    Arc::new(TestVfioDevice::new(TestDeviceSpec::default()).unwrap())
}

fn build_err(host: &Arc<TestVfioDevice>) -> VfioPciError {
    try_build(host, IntxDelivery::Irqfd).unwrap_err()
}

#[test]
fn a_sparse_area_outside_its_region_is_refused_by_name() {
    let host = host();
    host.set_region(RegionInfo {
        flags: VFIO_REGION_INFO_FLAG_READ
            | VFIO_REGION_INFO_FLAG_WRITE
            | VFIO_REGION_INFO_FLAG_MMAP,
        index: 2,
        size: 0x20_0000,
        offset: 2 << 40,
        caps: vec![RegionCap::SparseMmap(vec![(0x1f_f000, 0x2000)])],
    });
    let err = build_err(&host);
    assert!(
        matches!(
            err,
            VfioPciError::RegionInfo {
                index: 2,
                source: Errno::EINVAL,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "VFIO device test:dma: region info of region 2 failed or is malformed"
    );
    assert!(host.set_irqs_calls().is_empty());
}

#[test]
fn irq_info_for_another_index_or_failing_is_refused() {
    let host = host();
    host.set_irq_info(
        VFIO_PCI_MSIX_IRQ_INDEX,
        Ok(IrqInfo {
            flags: 1,
            index: 7,
            count: 2,
        }),
    );
    assert!(matches!(
        build_err(&host),
        VfioPciError::IrqIndexMismatch {
            index: 2,
            reported: 7,
            ..
        }
    ));
    host.set_irq_info(VFIO_PCI_MSI_IRQ_INDEX, Err(Errno::EIO));
    let err = build_err(&host);
    assert!(matches!(
        err,
        VfioPciError::IrqInfo {
            index: 1,
            source: Errno::EIO,
            ..
        }
    ));
    assert!(host.set_irqs_calls().is_empty());
}

#[test]
fn trapped_accesses_outside_a_bar_are_refused_before_the_device() {
    let mut f = fixture();
    let fault = |r: Result<(), VfioPciError>| match r {
        Err(VfioPciError::BarAccess { fault, .. }) => Some(fault),
        _ => None,
    };
    let mut data = [0u8; 4];
    assert_eq!(
        fault(f.dev.bar_read(0, 0x1000, &mut data)),
        Some(BarAccessFault::OutOfRange { size: 0x1000 })
    );
    assert_eq!(
        fault(f.dev.bar_read(0, 0xffe, &mut data)),
        Some(BarAccessFault::OutOfRange { size: 0x1000 })
    );
    assert_eq!(
        fault(f.dev.bar_read(0, u64::MAX - 1, &mut data)),
        Some(BarAccessFault::OutOfRange { size: 0x1000 })
    );
    assert_eq!(
        fault(f.dev.bar_write(1, 0, &data)),
        Some(BarAccessFault::NoSuchBar)
    );
    assert_eq!(
        fault(f.dev.bar_write(0, 0, &[0; 3])),
        Some(BarAccessFault::BadWidth)
    );
    assert_eq!(
        fault(f.dev.bar_write(2, 0xf_fffc, &[0; 8])),
        Some(BarAccessFault::StraddlesMsix)
    );
    // Through the bus entry point: all-ones, nothing forwarded.
    f.dev.read_bar(0, 0x1000, &mut data);
    assert_eq!(data, [0xff; 4]);
    assert_eq!(f.host.region_accesses(), Vec::<RegionAccess>::new());
}

#[test]
fn a_device_that_is_not_pci_is_refused() {
    let host = host();
    let info = host.device_info().unwrap();
    host.set_device_info(DeviceInfo { flags: 0, ..info });
    assert!(matches!(
        build_err(&host),
        VfioPciError::NotPci { flags: 0, .. }
    ));
    host.set_device_info(DeviceInfo {
        num_regions: 7,
        ..info
    });
    assert!(matches!(
        build_err(&host),
        VfioPciError::TooFewRegions { num_regions: 7, .. }
    ));
}

#[test]
fn a_64bit_bar_whose_upper_slot_is_a_region_is_refused() {
    let host = host();
    host.set_region(RegionInfo {
        flags: VFIO_REGION_INFO_FLAG_READ,
        index: 3,
        size: 0x1000,
        offset: 3 << 40,
        caps: vec![],
    });
    let err = build_err(&host);
    assert!(
        matches!(err, VfioPciError::InvalidBar { index: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("region 3 (its upper half) has size 0x1000")
    );
}

#[test]
fn a_bar_region_of_impossible_size_is_refused() {
    let host = host();
    host.set_region(RegionInfo {
        flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        index: 0,
        size: 0x1800,
        offset: 0,
        caps: vec![],
    });
    assert!(matches!(
        build_err(&host),
        VfioPciError::Bar { index: 0, .. }
    ));
}

#[test]
fn an_msix_table_past_the_end_of_its_bar_is_refused() {
    let mut spec = TestDeviceSpec::default();
    let msix = spec.msix.as_mut().unwrap();
    msix.table_size = 32;
    msix.table_offset = 0x1f_ff00;
    let host = Arc::new(TestVfioDevice::new(spec).unwrap());
    let err = build_err(&host);
    assert!(
        matches!(
            err,
            VfioPciError::MsixOutsideBar {
                what: "table",
                bir: 2,
                offset: 0x1f_ff00,
                len: 0x200,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_config_region_too_small_for_a_header_is_refused() {
    let host = host();
    host.set_region(RegionInfo {
        flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        index: 7,
        size: 32,
        offset: 7 << 40,
        caps: vec![],
    });
    assert!(matches!(build_err(&host), VfioPciError::ConfigRead { .. }));
}

#[test]
fn interrupt_groups_without_eventfds_are_refused() {
    let host = host();
    let irqs = devices::test_utils::RecordingInterruptManager::new();
    let err = VfioPciDevice::new(host.clone(), &irqs, config(IntxDelivery::Irqfd)).unwrap_err();
    assert!(matches!(
        err,
        VfioPciError::NoNotifier {
            what: "MSI",
            vector: 0,
            ..
        }
    ));
    assert!(host.set_irqs_calls().is_empty());
}

#[test]
fn a_conventional_config_space_has_no_extended_capabilities() {
    let host = host();
    host.set_region(RegionInfo {
        flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        index: 7,
        size: 256,
        offset: 7 << 40,
        caps: vec![],
    });
    let (mut dev, _irqs) = try_build(&host, IntxDelivery::Irqfd).unwrap();
    assert_eq!(cfg_read(&mut dev, 0x100, 4), 0);
    cfg_write(&mut dev, 0x14e, 2, 1);
    assert!(host.config_writes().is_empty());
}

#[test]
fn a_conventional_config_space_gets_no_pasid_capability_even_with_iommu_support() {
    let host = host();
    host.set_region(RegionInfo {
        flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        index: 7,
        size: 256,
        offset: 7 << 40,
        caps: vec![],
    });
    let irqs = RecordingInterruptManager::with_notifiers();
    let config = VfioPciDeviceConfig {
        pasid: Some(PasidSupport {
            max_pasid_log2: 20,
            execute: true,
            privileged: true,
        }),
        ..config(IntxDelivery::Irqfd)
    };
    let mut dev = VfioPciDevice::new(host.clone(), &irqs, config).unwrap();
    assert_eq!(cfg_read(&mut dev, 0x100, 4), 0);
    assert_eq!(cfg_read(&mut dev, 0x104, 4), 0);
}

#[test]
fn a_conventional_function_without_the_err_index_builds_without_the_notification() {
    // vfio-pci answers EINVAL for the ERR index of a function that is not PCI Express.
    let spec = TestDeviceSpec {
        pcie: false,
        extended: false,
        ..TestDeviceSpec::default()
    };
    let host = Arc::new(TestVfioDevice::new(spec).unwrap());
    assert_eq!(host.irq_info(VFIO_PCI_ERR_IRQ_INDEX), Err(Errno::EINVAL));
    let (_dev, _irqs) = try_build(&host, IntxDelivery::Irqfd).unwrap();
    let indexes: Vec<u32> = host.set_irqs_calls().iter().map(|c| c.req.index).collect();
    assert!(!indexes.contains(&VFIO_PCI_ERR_IRQ_INDEX), "{indexes:?}");
    assert!(indexes.contains(&VFIO_PCI_REQ_IRQ_INDEX), "{indexes:?}");
}
