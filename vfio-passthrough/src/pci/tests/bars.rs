//! BAR contents: mmap areas, the MSI-X carve-out, trapped accesses.

use devices::pci::{BarKind, PCI_ROM_BAR_INDEX, PciBar};

use super::*;
use crate::pci::BarAccessFault;
use crate::pci::test_utils::{RegionAccess, TestBar, TestMmap};

fn areas(dev: &VfioPciDevice) -> Vec<(usize, u64, usize)> {
    dev.mmap_areas()
        .iter()
        .map(|m| (m.index(), m.offset(), m.area().len()))
        .collect()
}

#[test]
fn msix_table_is_trapped_while_the_rest_of_bar2_is_mapped() {
    let mut f = fixture();
    assert_eq!(areas(&f.dev), [(2, 0, 0x10_0000), (2, 0x10_2000, 0xf_e000)]);
    // Guest writes to the table (entry 0's address and data) reach the MSI-X model only.
    f.dev.write_bar(2, 0x10_0000, &0xfee0_0000u32.to_le_bytes());
    f.dev.write_bar(2, 0x10_0008, &0x0000_0041u32.to_le_bytes());
    let mut entry = [0u8; 8];
    f.dev.read_bar(2, 0x10_0008, &mut entry);
    assert_eq!(u64::from_le_bytes(entry), 0x0000_0001_0000_0041);
    let mut pba = [0u8; 8];
    f.dev.read_bar(2, 0x10_1000, &mut pba);
    assert_eq!(pba, [0; 8]);
    f.dev.write_bar(2, 0x10_1000, &u64::MAX.to_le_bytes());
    f.dev.read_bar(2, 0x10_1000, &mut pba);
    assert_eq!(pba, [0; 8], "the PBA is read-only");
    assert_eq!(f.host.region_accesses(), []);
    assert_eq!(f.host.backing_read(2, 0x10_0000, 4), [0; 4]);
}

#[test]
fn msix_table_is_carved_out_even_when_the_device_lets_it_be_mapped() {
    let mut spec = TestDeviceSpec::default();
    let bar2 = spec.bars.iter_mut().find(|b| b.bar.index == 2).unwrap();
    bar2.mmap = TestMmap::Whole;
    bar2.msix_mappable = true;
    let f = fixture_with(spec, IntxDelivery::Irqfd);
    assert_eq!(areas(&f.dev), [(2, 0, 0x10_0000), (2, 0x10_2000, 0xf_e000)]);
}

#[test]
fn mmap_areas_really_map_the_device_memory() {
    let f = fixture();
    let area = &f.dev.mmap_areas()[1];
    assert_eq!((area.index(), area.offset()), (2, 0x10_2000));
    area.area().write(0x10, b"dma!").unwrap();
    assert_eq!(f.host.backing_read(2, 0x10_2010, 4), b"dma!");
    f.host.backing_write(2, 0x10_2020, b"back");
    let mut seen = [0u8; 4];
    area.area().read(0x20, &mut seen).unwrap();
    assert_eq!(&seen, b"back");
    // Mapped areas are not accesses the device records: the guest reaches memory directly.
    assert_eq!(f.host.region_accesses(), []);
}

#[test]
fn trapped_accesses_reach_the_device_at_their_exact_width() {
    let mut f = fixture();
    for (offset, width) in [(0x20u64, 1usize), (0x22, 2), (0x24, 4), (0x28, 8)] {
        let data: Vec<u8> = (1..=width as u8).collect();
        f.dev.write_bar(0, offset, &data);
        let mut back = vec![0u8; width];
        f.dev.read_bar(0, offset, &mut back);
        assert_eq!(back, data);
    }
    assert_eq!(
        f.host.take_region_accesses(),
        [
            RegionAccess::Write {
                index: 0,
                offset: 0x20,
                data: vec![1]
            },
            RegionAccess::Read {
                index: 0,
                offset: 0x20,
                len: 1
            },
            RegionAccess::Write {
                index: 0,
                offset: 0x22,
                data: vec![1, 2]
            },
            RegionAccess::Read {
                index: 0,
                offset: 0x22,
                len: 2
            },
            RegionAccess::Write {
                index: 0,
                offset: 0x24,
                data: vec![1, 2, 3, 4]
            },
            RegionAccess::Read {
                index: 0,
                offset: 0x24,
                len: 4
            },
            RegionAccess::Write {
                index: 0,
                offset: 0x28,
                data: (1..=8).collect()
            },
            RegionAccess::Read {
                index: 0,
                offset: 0x28,
                len: 8
            },
        ]
    );
    // I/O BARs are forwarded the same way; BAR 2 outside the MSI-X pages too.
    f.dev.write_bar(4, 0x10, &[0xab, 0xcd]);
    f.dev.write_bar(2, 0x10_1800, &[0x5a; 4]);
    assert_eq!(
        f.host.take_region_accesses(),
        [
            RegionAccess::Write {
                index: 4,
                offset: 0x10,
                data: vec![0xab, 0xcd]
            },
            RegionAccess::Write {
                index: 2,
                offset: 0x10_1800,
                data: vec![0x5a; 4]
            },
        ]
    );
}

#[test]
fn rom_reads_come_from_the_rom_region_and_writes_are_refused() {
    let mut f = fixture();
    f.host
        .backing_write(PCI_ROM_BAR_INDEX as u32, 0, &[0x55, 0xaa]);
    let mut sig = [0u8; 2];
    f.dev.read_bar(PCI_ROM_BAR_INDEX, 0, &mut sig);
    assert_eq!(sig, [0x55, 0xaa]);
    let err = f.dev.bar_write(PCI_ROM_BAR_INDEX, 0, &[0; 4]).unwrap_err();
    assert!(matches!(
        err,
        VfioPciError::BarAccess {
            index: PCI_ROM_BAR_INDEX,
            fault: BarAccessFault::ReadOnly,
            ..
        }
    ));
    assert_eq!(
        f.host.region_accesses(),
        [RegionAccess::Read {
            index: PCI_ROM_BAR_INDEX as u32,
            offset: 0,
            len: 2
        }]
    );
}

#[test]
fn sub_page_and_trapped_bars_are_not_mapped() {
    let mut spec = TestDeviceSpec::default();
    spec.bars.push(TestBar {
        bar: PciBar {
            index: 5,
            size: 0x800,
            kind: BarKind::Memory32,
            prefetchable: false,
        },
        host_address: 0xfe20_0000,
        mmap: TestMmap::Whole,
        msix_mappable: false,
    });
    let f = fixture_with(spec, IntxDelivery::Irqfd);
    // BAR 0 is trapped (no MMAP flag), BAR 5 is smaller than a page.
    assert!(areas(&f.dev).iter().all(|(index, ..)| *index == 2));
}
