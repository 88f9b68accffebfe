//! The guest's config space: BAR sizing and relocation, what reaches the device, the capability
//! chain.

use std::collections::HashSet;

use devices::pci::configuration::{
    PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
    PCI_STATUS_CAP_LIST,
};
use devices::pci::{
    BarChange, BarKind, BarRegion, BarReprogram, PCI_ROM_BAR_INDEX, walk_capabilities,
    walk_extended_capabilities,
};

use super::*;
use crate::pci::test_utils::{
    CAP_AF, CAP_EXP, CAP_MSI, CAP_MSIX, CAP_PCIX, CAP_PM, CAP_VNDR, CAP_VPD, EXT_CAP_PASID,
};

const COMMAND: u16 = 0x04;

fn bar_offset(index: u16) -> u16 {
    0x10 + 4 * index
}

#[test]
fn all_ones_sizing_reads_back_each_bar_size_and_type() {
    let mut f = fixture();
    for i in 0..6 {
        cfg_write(&mut f.dev, bar_offset(i), 4, u32::MAX);
    }
    cfg_write(&mut f.dev, 0x30, 4, !1);
    // BAR0: 4 KiB, 32-bit, not prefetchable.
    assert_eq!(cfg_read(&mut f.dev, bar_offset(0), 4), 0xffff_f000);
    // BAR1: not implemented.
    assert_eq!(cfg_read(&mut f.dev, bar_offset(1), 4), 0);
    // BAR2/3: 2 MiB, 64-bit, prefetchable.
    assert_eq!(cfg_read(&mut f.dev, bar_offset(2), 4), 0xffe0_000c);
    assert_eq!(cfg_read(&mut f.dev, bar_offset(3), 4), 0xffff_ffff);
    // BAR4: 256 bytes of I/O space.
    assert_eq!(cfg_read(&mut f.dev, bar_offset(4), 4), 0xffff_ff01);
    assert_eq!(cfg_read(&mut f.dev, bar_offset(5), 4), 0);
    // ROM: 64 KiB.
    assert_eq!(cfg_read(&mut f.dev, 0x30, 4), 0xffff_0000);
    // The device's own BARs were never written.
    assert!(f.host.config_writes().is_empty());
    assert_eq!(f.host.config_read(bar_offset(0), 4), 0xfe00_0000);
    assert_eq!(
        f.dev
            .bars()
            .iter()
            .map(|b| (b.index, b.size, b.kind))
            .collect::<Vec<_>>(),
        [
            (0, 0x1000, BarKind::Memory32),
            (2, 0x20_0000, BarKind::Memory64),
            (4, 0x100, BarKind::Io),
            (PCI_ROM_BAR_INDEX, 0x1_0000, BarKind::Rom),
        ]
    );
}

#[test]
fn placed_bars_decode_move_and_stop_as_the_guest_programs_them() {
    let mut f = fixture();
    f.dev.set_bar_address(0, 0xc000_0000).unwrap();
    f.dev.set_bar_address(2, 0x10_0000_0000).unwrap();
    f.dev.set_bar_address(4, 0x6000).unwrap();
    let bar0 = BarRegion {
        index: 0,
        base: 0xc000_0000,
        len: 0x1000,
        kind: BarKind::Memory32,
    };
    let bar2 = BarRegion {
        index: 2,
        base: 0x10_0000_0000,
        len: 0x20_0000,
        kind: BarKind::Memory64,
    };
    assert_eq!(
        cfg_write(&mut f.dev, COMMAND, 2, u32::from(PCI_COMMAND_MEMORY)),
        [BarChange::Mapped(bar0), BarChange::Mapped(bar2)]
    );
    // Memory decoding also reaches the device (its mmaps and trapped accesses need it).
    assert_eq!(
        f.host.config_read(COMMAND, 2) as u16 & PCI_COMMAND_MEMORY,
        PCI_COMMAND_MEMORY
    );
    assert!(cfg_write(&mut f.dev, bar_offset(2), 4, 0x0020_0000).is_empty());
    assert_eq!(
        cfg_write(&mut f.dev, bar_offset(3), 4, 0x20),
        [BarChange::Moved(BarReprogram {
            index: 2,
            old_base: 0x10_0000_0000,
            new_base: 0x20_0020_0000,
            len: 0x20_0000,
            kind: BarKind::Memory64,
        })]
    );
    assert_eq!(cfg_read(&mut f.dev, bar_offset(2), 4), 0x0020_000c);
    let io = cfg_write(
        &mut f.dev,
        COMMAND,
        2,
        u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_IO),
    );
    assert_eq!(io.len(), 1);
    assert_eq!(io[0].kind(), BarKind::Io);
    let off = cfg_write(&mut f.dev, COMMAND, 2, 0);
    assert_eq!(off.len(), 3);
    assert!(off.iter().all(|c| matches!(c, BarChange::Unmapped(_))));
    // None of the BAR moves reached the device's BAR registers.
    assert!(
        f.host
            .config_writes()
            .iter()
            .all(|(offset, _)| *offset == COMMAND)
    );
}

#[test]
fn writes_to_read_only_and_virtual_fields_never_reach_the_device() {
    let mut f = fixture();
    let pcie = host_cap(&f.host, CAP_EXP);
    let pm = host_cap(&f.host, CAP_PM);
    let msi = host_cap(&f.host, CAP_MSI);
    let msix = host_cap(&f.host, CAP_MSIX);
    let vpd = host_cap(&f.host, CAP_VPD);
    let writes: &[(u16, usize)] = &[
        (0x00, 4),        // vendor, device
        (0x06, 2),        // status
        (0x08, 4),        // revision, class
        (0x0e, 1),        // header type
        (0x0f, 1),        // BIST
        (0x10, 4),        // BAR0
        (0x14, 4),        // BAR1 (absent)
        (0x18, 4),        // BAR2
        (0x2c, 4),        // subsystem
        (0x30, 4),        // ROM
        (0x34, 1),        // capability pointer
        (0x3c, 4),        // interrupt line and pin
        (pm + 2, 2),      // PMC
        (msi, 4),         // MSI header and control
        (msi + 4, 4),     // MSI address
        (msix, 4),        // MSI-X header and control
        (msix + 4, 4),    // MSI-X table offset
        (pcie + 4, 4),    // PCIe device capabilities
        (pcie + 0x10, 4), // link control and status
        (vpd, 4),         // a hidden capability
        (0x148 + 4, 4),   // the hidden PASID capability
        (0x104, 4),       // the hidden AER capability
        (0x800, 4),       // nothing there
    ];
    for &(offset, len) in writes {
        cfg_write(&mut f.dev, offset, len, u32::MAX);
        cfg_write(&mut f.dev, offset, len, 0);
    }
    assert_eq!(f.host.config_writes(), []);
    // The guest still sees the device's identity.
    assert_eq!(cfg_read(&mut f.dev, 0x00, 4), 0x7d10_1234);
    assert_eq!(cfg_read(&mut f.dev, 0x08, 4), 0x0880_0001);
}

#[test]
fn forwarded_fields_reach_the_device_narrowed_to_their_own_bytes() {
    let mut f = fixture();
    let pcie = host_cap(&f.host, CAP_EXP);
    let vndr = host_cap(&f.host, CAP_VNDR);
    // Command and status as one dword: only the command half goes to the device.
    cfg_write(
        &mut f.dev,
        COMMAND,
        4,
        0xffff_0000 | u32::from(PCI_COMMAND_MASTER),
    );
    // Device control and status as one dword: only device control, without the fabric-wide
    // fields (Max_Payload, Max_Read_Request, phantom functions) the host owns.
    let devctl_before = f.host.config_read(pcie + 8, 2);
    cfg_write(&mut f.dev, pcie + 8, 4, 0xffff_7fff);
    cfg_write(&mut f.dev, vndr + 4, 4, 0xcafe_f00d);
    cfg_write(&mut f.dev, 0x0c, 1, 0x10);
    let writes = f.host.config_writes();
    let offsets: Vec<(u16, usize)> = writes.iter().map(|(o, d)| (*o, d.len())).collect();
    assert_eq!(
        offsets,
        [(COMMAND, 2), (pcie + 8, 2), (vndr + 4, 4), (0x0c, 1)]
    );
    assert_eq!(f.host.config_read(COMMAND, 2) as u16, PCI_COMMAND_MASTER);
    let fabric = 0x0200 | 0x00e0 | 0x7000;
    assert_eq!(
        f.host.config_read(pcie + 8, 2) & fabric,
        devctl_before & fabric
    );
    assert_eq!(f.host.config_read(pcie + 8, 2) & 0x0010, 0x0010);
    assert_eq!(f.host.config_read(vndr + 4, 4), 0xcafe_f00d);
    assert_eq!(cfg_read(&mut f.dev, vndr + 4, 4), 0xcafe_f00d);
    // Bus master reads back from the device; the status half from the device too.
    assert_eq!(
        cfg_read(&mut f.dev, COMMAND, 4),
        f.host.config_read(COMMAND, 4) | u32::from(PCI_STATUS_CAP_LIST) << 16
    );
}

#[test]
fn intx_disable_is_kept_virtually_and_forwarded_to_the_device() {
    let mut f = fixture();
    cfg_write(&mut f.dev, COMMAND, 2, u32::from(PCI_COMMAND_INTX_DISABLE));
    assert_eq!(
        cfg_read(&mut f.dev, COMMAND, 2) as u16,
        PCI_COMMAND_INTX_DISABLE
    );
    assert_eq!(
        f.host.config_read(COMMAND, 2) as u16,
        PCI_COMMAND_INTX_DISABLE
    );
}

#[test]
fn guest_sees_a_well_formed_chain_of_allowed_capabilities_only() {
    let mut f = fixture();
    let status = cfg_read(&mut f.dev, 0x06, 2) as u16;
    assert_eq!(status & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
    let walked = walk_capabilities(|o| cfg_read(&mut f.dev, o, 1) as u8);
    let ids: Vec<u8> = walked.iter().map(|c| c.id as u8).collect();
    assert_eq!(ids, [CAP_PM, CAP_MSI, CAP_EXP, CAP_MSIX, CAP_VNDR]);
    // Capabilities stay where the device has them; the list ends after the last one.
    for c in &walked {
        assert_eq!(c.offset, host_cap(&f.host, c.id as u8));
    }
    let last = walked.last().unwrap().offset;
    assert_eq!(cfg_read(&mut f.dev, last + 1, 1), 0);
    let distinct: HashSet<u16> = walked.iter().map(|c| c.offset).collect();
    assert_eq!(distinct.len(), walked.len());
    for hidden in [CAP_VPD, CAP_AF, CAP_PCIX] {
        assert!(!ids.contains(&hidden), "capability {hidden:#x} is visible");
        // Its bytes read as nothing.
        assert_eq!(cfg_read(&mut f.dev, host_cap(&f.host, hidden), 4), 0);
    }
    // The MSI-X capability is the model's: table size 2, table in BAR 2 at 1 MiB.
    let msix = host_cap(&f.host, CAP_MSIX);
    assert_eq!(cfg_read(&mut f.dev, msix + 2, 2), 0x0001);
    assert_eq!(cfg_read(&mut f.dev, msix + 4, 4), 0x0010_0002);

    // Without PASID support from the host IOMMU no extended capability is shown: AER, the
    // device's own PASID and ATS are hidden, and the header at 0x100 ends the (empty) list.
    assert_eq!(cfg_read(&mut f.dev, 0x100, 4), 0);
    assert!(walk_extended_capabilities(|o| cfg_read(&mut f.dev, o, 4)).is_empty());
    assert_eq!(cfg_read(&mut f.dev, 0x148, 4), 0);
    assert_eq!(cfg_read(&mut f.dev, 0x148 + 4, 4), 0);
}

/// A passthrough device of the default test device whose host IOMMU reported `pasid`.
fn fixture_with_pasid(pasid: PasidSupport) -> Fixture {
    let host = Arc::new(TestVfioDevice::new(TestDeviceSpec::default()).unwrap());
    let irqs = Arc::new(RecordingInterruptManager::with_notifiers());
    let config = VfioPciDeviceConfig {
        pasid: Some(pasid),
        ..config(IntxDelivery::Irqfd)
    };
    let dev = VfioPciDevice::new(host.clone(), irqs.as_ref(), config).unwrap();
    Fixture { host, irqs, dev }
}

#[test]
fn pasid_capability_is_synthesized_from_what_the_host_iommu_reports() {
    let mut f = fixture_with_pasid(PasidSupport {
        max_pasid_log2: 20,
        execute: false,
        privileged: true,
    });
    let ext = walk_extended_capabilities(|o| cfg_read(&mut f.dev, o, 4));
    let ext: Vec<(u16, u16, u8)> = ext.iter().map(|c| (c.id, c.offset, c.version)).collect();
    // In place of the placeholder of the hidden AER; the device's own PASID (0x148) stays hidden.
    assert_eq!(ext, [(EXT_CAP_PASID, 0x100, 1)]);
    assert_eq!(
        cfg_read(&mut f.dev, 0x100, 4) >> 20,
        0,
        "the list ends there"
    );
    // Max PASID Width 20, privileged mode supported, execute not.
    assert_eq!(cfg_read(&mut f.dev, 0x104, 2), 0x1404);
    assert_eq!(cfg_read(&mut f.dev, 0x106, 2), 0);
    assert_eq!(cfg_read(&mut f.dev, 0x148, 4), 0);
}

#[test]
fn guest_pasid_enables_stay_virtual_and_only_supported_ones_stick() {
    let mut f = fixture_with_pasid(PasidSupport {
        max_pasid_log2: 16,
        execute: false,
        privileged: true,
    });
    let host_ctrl = f.host.config_read(0x148 + 6, 2);
    cfg_write(&mut f.dev, 0x106, 2, 0xffff);
    // Enable and privileged mode; execute is not supported, the rest is reserved.
    assert_eq!(cfg_read(&mut f.dev, 0x106, 2), 0x0005);
    // The capability register is read-only.
    cfg_write(&mut f.dev, 0x104, 2, 0);
    assert_eq!(cfg_read(&mut f.dev, 0x104, 2), 0x1004);
    // Nothing reached the device: the host enabled PASID when it bound the device.
    assert_eq!(f.host.config_writes(), []);
    assert_eq!(f.host.config_read(0x148 + 6, 2), host_ctrl);
    cfg_write(&mut f.dev, 0x106, 2, 0);
    assert_eq!(cfg_read(&mut f.dev, 0x106, 2), 0);
}

#[test]
fn device_reset_clears_the_guest_pasid_enables() {
    let mut f = fixture_with_pasid(PasidSupport {
        max_pasid_log2: 20,
        execute: true,
        privileged: false,
    });
    cfg_write(&mut f.dev, 0x106, 2, 0x3);
    assert_eq!(cfg_read(&mut f.dev, 0x106, 2), 0x3);
    f.dev.reset().unwrap();
    assert_eq!(cfg_read(&mut f.dev, 0x106, 2), 0);
    assert_eq!(cfg_read(&mut f.dev, 0x104, 2), 0x1402);
}

#[test]
fn a_looping_host_capability_list_gives_the_guest_a_terminating_one() {
    let host = Arc::new(TestVfioDevice::new(TestDeviceSpec::default()).unwrap());
    let vndr = host_cap(&host, CAP_VNDR);
    let pm = host_cap(&host, CAP_PM);
    // The vendor capability's next points back at PM.
    let reg = usize::from(vndr / 4);
    let old = host.config_read(vndr, 4);
    host.set_config_register(reg, (old & !0xff00) | u32::from(pm) << 8);
    let (mut dev, _irqs) = try_build(&host, IntxDelivery::Irqfd).unwrap();
    let walked = walk_capabilities(|o| cfg_read(&mut dev, o, 1) as u8);
    assert_eq!(walked.len(), 5);
    assert_eq!(cfg_read(&mut dev, vndr + 1, 1), 0);
}

#[test]
fn guest_flr_resets_the_device_without_forwarding_the_bit() {
    let mut f = fixture();
    let pcie = host_cap(&f.host, CAP_EXP);
    cfg_write(&mut f.dev, pcie + 8, 2, 0x8000 | 0x0010);
    assert_eq!(f.host.resets(), 1);
    assert_eq!(cfg_read(&mut f.dev, pcie + 8, 2) & 0x8000, 0);
    let writes = f.host.config_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].1[1] & 0x80, 0, "the FLR bit reached the device");
}

#[test]
fn power_state_changes_reach_the_device_but_pme_stays_hidden() {
    let mut f = fixture();
    let pm = host_cap(&f.host, CAP_PM);
    // The device supports PME from D0 and D3hot; the guest is told none.
    assert_ne!(f.host.config_read(pm + 2, 2) & 0xf800, 0);
    assert_eq!(cfg_read(&mut f.dev, pm + 2, 2) & 0xf800, 0);
    cfg_write(&mut f.dev, pm + 4, 2, 0x0103); // D3hot, PME_En
    // The power state changed, PME_En did not; No_Soft_Reset (0x8) is the device's own.
    assert_eq!(f.host.config_read(pm + 4, 2), 0x000b);
    assert_eq!(cfg_read(&mut f.dev, pm + 4, 2), 0x000b);
}

#[test]
fn unaligned_or_odd_config_accesses_touch_nothing() {
    let mut f = fixture();
    assert_eq!(cfg_read(&mut f.dev, 0x01, 2), 0xffff);
    let mut odd = [0u8; 3];
    f.dev.read_config(0, &mut odd);
    assert_eq!(odd, [0xff; 3]);
    f.dev.write_config(COMMAND, &[0x07, 0, 0, 0, 0, 0, 0, 0]);
    f.dev.write_config(COMMAND + 1, &[0x04, 0]);
    assert!(f.host.config_writes().is_empty());
    assert_eq!(cfg_read(&mut f.dev, COMMAND, 2), 0);
}

#[test]
fn interrupt_pin_is_inta_when_intx_is_wired_and_none_otherwise() {
    let mut f = fixture();
    assert_eq!(cfg_read(&mut f.dev, 0x3d, 1), 1);
    cfg_write(&mut f.dev, 0x3c, 1, 0x0b);
    assert_eq!(cfg_read(&mut f.dev, 0x3c, 2), 0x010b);
    let spec = TestDeviceSpec {
        intx: false,
        ..TestDeviceSpec::default()
    };
    let mut f = fixture_with(spec, IntxDelivery::Irqfd);
    assert_eq!(cfg_read(&mut f.dev, 0x3d, 1), 0);
    assert!(f.dev.intx_irq().is_none());
}

#[test]
fn device_specific_regions_are_kept_for_migration() {
    let f = fixture();
    let regions = f.dev.device_specific_regions();
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].index, 9);
    assert_eq!(regions[0].region_type(), Some((3, 1)));
    assert_eq!(regions[0].size, 0x1000);
}
