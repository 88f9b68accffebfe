//! Emulated devices as a VMM discovers them through `VfioDevice`: device, region and IRQ
//! information with their capabilities, the configuration region's virtualization, feature
//! probing, and the errors malformed requests get.

mod common;

use common::*;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::vfio::region_info::CAP_SPARSE_MMAP;
use vfio_passthrough::vfio::*;

const CONFIG: u32 = VFIO_PCI_CONFIG_REGION_INDEX;

#[test]
fn dma_engine_reports_the_vfio_pci_regions_with_their_capabilities() {
    let dev = build("emulated:dma-engine");
    let info = dev.device_info().unwrap();
    assert_eq!(info.flags, VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI);
    assert_eq!((info.num_regions, info.num_irqs), (10, 5));
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

    let bar0 = region_info(&dev, 0).unwrap();
    assert_eq!((bar0.size, bar0.flags, bar0.offset), (0x1000, rw, 0));
    assert!(bar0.caps.is_empty() && bar0.mmap_areas().is_empty());

    let bar2 = region_info(&dev, 2).unwrap();
    assert_eq!(bar2.size, 2 << 20);
    assert_eq!(bar2.offset, 2 << 40);
    assert_eq!(
        bar2.flags & !VFIO_REGION_INFO_FLAG_CAPS,
        rw | VFIO_REGION_INFO_FLAG_MMAP
    );
    assert_eq!(
        bar2.mmap_areas(),
        vec![(0, 0x10_0000), (0x10_2000, 0xf_e000)],
        "the MSI-X table and PBA page are trapped"
    );

    for absent in [1, 3, 4, 5, VFIO_PCI_ROM_REGION_INDEX] {
        let r = region_info(&dev, absent).unwrap();
        assert_eq!((r.size, r.flags), (0, 0), "region {absent}");
    }
    let config = region_info(&dev, CONFIG).unwrap();
    assert_eq!((config.size, config.flags), (4096, rw));
    assert_eq!(
        region_info(&dev, VFIO_PCI_VGA_REGION_INDEX),
        Err(Errno::EINVAL)
    );

    let v1 = region_info(&dev, 9).unwrap();
    assert_eq!(v1.region_type(), Some((3, 1)));
    assert_eq!(
        v1.flags & VFIO_REGION_INFO_FLAG_MMAP,
        VFIO_REGION_INFO_FLAG_MMAP
    );
    assert_eq!(v1.mmap_areas(), vec![(0x1000, 0x10000)]);
    assert_eq!(v1.size, 0x21000);
    assert_eq!(region_info(&dev, 10), Err(Errno::EINVAL));

    // Without the v1 region the device-specific regions are gone.
    let v2_only = build("emulated:dma-engine,migration=v2");
    assert_eq!(v2_only.device_info().unwrap().num_regions, 9);
}

#[test]
fn a_region_info_buffer_too_small_for_the_caps_gets_the_size_needed() {
    let dev = build("emulated:dma-engine");
    let mut buf = [0u8; 32];
    buf[0..4].copy_from_slice(&32u32.to_le_bytes());
    buf[8..12].copy_from_slice(&2u32.to_le_bytes());
    dev.get_region_info(&mut buf).unwrap();
    let argsz = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let flags = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let cap_offset = u32::from_le_bytes(buf[12..16].try_into().unwrap());
    // Header 32 + sparse cap (8 header + 8 + 2 areas of 16).
    assert_eq!(argsz, 32 + 8 + 8 + 32);
    assert_ne!(flags & VFIO_REGION_INFO_FLAG_CAPS, 0);
    assert_eq!(cap_offset, 0);

    let mut full = vec![0u8; argsz as usize];
    full[0..4].copy_from_slice(&argsz.to_le_bytes());
    full[8..12].copy_from_slice(&2u32.to_le_bytes());
    dev.get_region_info(&mut full).unwrap();
    assert_eq!(u32::from_le_bytes(full[12..16].try_into().unwrap()), 32);
    assert_eq!(
        u16::from_le_bytes(full[32..34].try_into().unwrap()),
        CAP_SPARSE_MMAP
    );

    buf[0..4].copy_from_slice(&31u32.to_le_bytes());
    assert_eq!(dev.get_region_info(&mut buf), Err(Errno::EINVAL));
    // A buffer smaller than the argsz it claims faults when the reply is copied back.
    let mut lying = [0u8; 40];
    lying[0..4].copy_from_slice(&200u32.to_le_bytes());
    lying[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(dev.get_region_info(&mut lying), Err(Errno::EFAULT));
}

#[test]
fn irq_info_matches_vfio_pci() {
    let dev = build("emulated:dma-engine");
    let info = |i| dev.irq_info(i).unwrap();
    assert_eq!(
        info(VFIO_PCI_INTX_IRQ_INDEX),
        IrqInfo {
            flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
            index: 0,
            count: 1
        }
    );
    let noresize = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE;
    assert_eq!((info(1).flags, info(1).count), (noresize, 2));
    assert_eq!((info(2).flags, info(2).count), (noresize, 2));
    assert_eq!((info(3).flags, info(3).count), (noresize, 1));
    assert_eq!((info(4).flags, info(4).count), (noresize, 1));
    assert_eq!(dev.irq_info(5), Err(Errno::EINVAL));
    assert_eq!(dev.irq_info(u32::MAX), Err(Errno::EINVAL));
}

#[test]
fn the_mailbox_has_no_optional_features() {
    let dev = build("emulated:mailbox");
    assert_eq!(dev.device_info().unwrap().num_regions, 9);
    // A conventional PCI function: 256 bytes of configuration space.
    assert_eq!(region_info(&dev, CONFIG).unwrap().size, 256);
    let bar0 = region_info(&dev, 0).unwrap();
    assert_eq!(bar0.size, 0x1000);
    assert_eq!(bar0.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
    assert_eq!(dev.irq_info(0).unwrap().count, 1);
    assert_eq!(dev.irq_info(1).unwrap().count, 0);
    assert_eq!(dev.irq_info(2).unwrap().count, 0);
    assert_eq!(
        dev.irq_info(3),
        Err(Errno::EINVAL),
        "ERR exists only on PCIe"
    );
    assert_eq!(dev.irq_info(4).unwrap().count, 1);

    assert_eq!(dev.migration_flags(), Err(Errno::ENOTTY));
    assert_eq!(dev.mig_state(), Err(Errno::ENOTTY));
    assert_eq!(dev.set_mig_state(1).err(), Some(Errno::ENOTTY));
    assert_eq!(dev.mig_data_size(), Err(Errno::ENOTTY));
    let mut ps = 4096;
    let range = DmaLoggingRange {
        iova: 0,
        length: 4096,
    };
    assert_eq!(dev.dma_logging_start(&mut ps, &[range]), Err(Errno::ENOTTY));
    assert_eq!(dev.dma_logging_stop(), Err(Errno::ENOTTY));
    for feature in [1, 2, 6, 7, 8, 9] {
        assert_eq!(
            dev.feature_probe(feature, true, false),
            Err(Errno::ENOTTY),
            "feature {feature}"
        );
    }
    // MSI and MSI-X have no vectors: any SET_IRQS on them is out of range.
    let e = eventfd();
    assert_eq!(
        set_triggers(&dev, VFIO_PCI_MSI_IRQ_INDEX, 0, &[&e]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        set_triggers(&dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, &[&e]),
        Err(Errno::EINVAL)
    );
}

#[test]
fn feature_probes_follow_vfio_check_feature() {
    let dev = build("emulated:dma-engine");
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_MIGRATION, true, false),
        Ok(())
    );
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_MIGRATION, false, true),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, true, true),
        Ok(())
    );
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, true, false),
        Ok(())
    );
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, false, true),
        Ok(())
    );
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, true, false),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, false, true),
        Err(Errno::EINVAL)
    );
    // PROBE alone (neither GET nor SET) only asks whether the feature exists.
    assert_eq!(
        dev.feature_probe(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, false, false),
        Ok(())
    );
    // Low power, VF token and unknown features are not the emulated devices'.
    assert_eq!(dev.feature_probe(3, false, true), Err(Errno::ENOTTY));
    assert_eq!(dev.feature_probe(0xffff, true, false), Err(Errno::ENOTTY));
    assert_eq!(dev.feature_probe(0x1_0000, true, false), Err(Errno::EINVAL));

    let frozen = build("emulated:dma-engine,migration=off");
    assert_eq!(frozen.migration_flags(), Err(Errno::ENOTTY));
    assert_eq!(
        frozen.feature_probe(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, true, false),
        Err(Errno::ENOTTY)
    );
    assert_eq!(
        frozen.feature_probe(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, false, true),
        Ok(())
    );
    assert_eq!(
        dev.migration_flags(),
        Ok(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY)
    );
}

#[test]
fn the_config_region_virtualizes_like_vfio_pci() {
    let dev = build("emulated:dma-engine");
    assert_eq!(read32(&dev, CONFIG, 0), 0x7d10_1234);
    assert_eq!(read32(&dev, CONFIG, 8) >> 8, 0x08_8000, "class");
    assert_eq!(read32(&dev, CONFIG, 8) & 0xff, 1, "revision");
    write32(&dev, CONFIG, 0, 0xdead_beef);
    assert_eq!(read32(&dev, CONFIG, 0), 0x7d10_1234, "IDs are read-only");

    // BAR sizing works on the virtual BARs; absent BARs read 0.
    write32(&dev, CONFIG, 0x10, u32::MAX);
    assert_eq!(read32(&dev, CONFIG, 0x10), 0xffff_f000);
    write32(&dev, CONFIG, 0x18, u32::MAX);
    write32(&dev, CONFIG, 0x1c, u32::MAX);
    assert_eq!(
        read32(&dev, CONFIG, 0x18),
        0xffe0_000c,
        "64-bit prefetchable, 2 MiB"
    );
    assert_eq!(read32(&dev, CONFIG, 0x1c), u32::MAX);
    write32(&dev, CONFIG, 0x14, u32::MAX);
    assert_eq!(read32(&dev, CONFIG, 0x14), 0);
    write32(&dev, CONFIG, 0x30, u32::MAX);
    assert_eq!(read32(&dev, CONFIG, 0x30), 0, "no ROM");
    write32(&dev, CONFIG, 0x10, 0xfebf_0000);
    assert_eq!(read32(&dev, CONFIG, 0x10), 0xfebf_0000);

    // The capability list: MSI, MSI-X, PCI Express; PASID (extended) is hidden.
    assert_ne!(read16(&dev, CONFIG, 6) & 0x10, 0);
    let mut caps = Vec::new();
    let mut at = read32(&dev, CONFIG, 0x34) as u8;
    while at != 0 {
        let head = read16(&dev, CONFIG, u64::from(at));
        caps.push((at, head as u8));
        at = (head >> 8) as u8;
    }
    assert_eq!(caps, vec![(0x40, 0x05), (0x58, 0x11), (0x64, 0x10)]);
    assert_eq!(
        read32(&dev, CONFIG, 0x100),
        0,
        "no extended capability is shown"
    );

    // MSI: the vector count the user sees follows what SET_IRQS allocated (none yet), and the
    // enable bit cannot be set through config space.
    let msi_flags = read16(&dev, CONFIG, 0x42);
    assert_eq!(msi_flags & 0x0e, 0);
    assert_eq!(msi_flags & 0x180, 0x180, "64-bit, per-vector mask");
    write16(&dev, CONFIG, 0x42, msi_flags | 1);
    assert_eq!(read16(&dev, CONFIG, 0x42) & 1, 0);
    write32(&dev, CONFIG, 0x44, 0xfee0_0000);
    assert_eq!(
        read32(&dev, CONFIG, 0x44),
        0xfee0_0000,
        "MSI address is virtualized"
    );

    // MSI-X control is the device's and the user cannot write it.
    write16(&dev, CONFIG, 0x5a, 0xc000);
    assert_eq!(read16(&dev, CONFIG, 0x5a), 0x0001, "2 vectors, disabled");

    write16(&dev, CONFIG, 0x3c, 0x0b);
    assert_eq!(
        read32(&dev, CONFIG, 0x3c) & 0xffff,
        0x010b,
        "line scratch, pin A"
    );

    let mailbox = build("emulated:mailbox");
    assert_eq!(read16(&mailbox, CONFIG, 6) & 0x10, 0);
    assert_eq!(read32(&mailbox, CONFIG, 0x34) & 0xff, 0);
}

#[test]
fn malformed_accesses_get_vfio_pci_errnos() {
    let dev = build("emulated:dma-engine");
    let mut b4 = [0u8; 4];
    let mut b8 = [0u8; 8];
    assert_eq!(dev.region_read(0, 0x1000, &mut b4), Err(Errno::EINVAL));
    assert_eq!(dev.region_read(0, u64::MAX, &mut b4), Err(Errno::EINVAL));
    assert_eq!(
        dev.region_read(0, 0xffc, &mut b8),
        Ok(4),
        "short read at the end"
    );
    assert_eq!(dev.region_write(0, 0x1000, &b4), Err(Errno::EINVAL));
    assert_eq!(
        dev.region_read(1, 0, &mut b4),
        Err(Errno::EINVAL),
        "absent BAR"
    );
    assert_eq!(
        dev.region_read(VFIO_PCI_ROM_REGION_INDEX, 0, &mut b4),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        dev.region_read(VFIO_PCI_VGA_REGION_INDEX, 0, &mut b4),
        Err(Errno::EINVAL)
    );
    assert_eq!(dev.region_read(10, 0, &mut b4), Err(Errno::EINVAL));
    assert_eq!(dev.region_read(CONFIG, 4096, &mut b4), Err(Errno::EFAULT));
    assert_eq!(dev.region_read(CONFIG, 4092, &mut b8), Err(Errno::EFAULT));
    assert_eq!(dev.region_read(9, 0x21000, &mut b4), Err(Errno::EINVAL));
    assert_eq!(
        dev.region_read(9, 2, &mut b4),
        Err(Errno::EINVAL),
        "v1 header fields only at their width"
    );

    // mmap: only inside a sparse area, from a page boundary.
    assert_eq!(
        dev.region_mmap(0, 0, 0x1000, true).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        dev.region_mmap(2, 0x10_0000, 0x1000, true).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        dev.region_mmap(2, 0xf_f000, 0x2000, true).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        dev.region_mmap(2, 0x800, 0x1000, true).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(dev.region_mmap(2, 0, 0, true).err(), Some(Errno::EINVAL));
    assert_eq!(
        dev.region_mmap(CONFIG, 0, 0x1000, true).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        dev.region_mmap(9, 0, 0x1000, true).err(),
        Some(Errno::EINVAL)
    );
    let tail = dev.region_mmap(2, 0x10_2000, 0xf_e000, true).unwrap();
    assert_eq!(tail.len(), 0xf_e000);
    let window = dev.region_mmap(9, 0x1000, 0x10000, true).unwrap();
    assert_eq!(window.len(), 0x10000);

    // With memory decoding off, BAR accesses fail with EIO.
    let cmd = read16(&dev, CONFIG, 4);
    write16(&dev, CONFIG, 4, cmd & !0x2);
    assert_eq!(dev.region_read(0, 0, &mut b4), Err(Errno::EIO));
    write16(&dev, CONFIG, 4, cmd | 0x2);
    assert_eq!(dev.region_read(0, 0, &mut b4), Ok(4));
}

#[test]
fn the_msix_table_is_kept_from_the_user_and_the_pba_reads_from_the_device() {
    let dev = build("emulated:dma-engine");
    write32(&dev, 2, 0x10_0000, 0x1234_5678);
    assert_eq!(read32(&dev, 2, 0x10_0000), u32::MAX);
    assert_eq!(read32(&dev, 2, 0x10_001c), u32::MAX);
    assert_eq!(read32(&dev, 2, 0x10_0020), 0, "past the 2-entry table");
    assert_eq!(read32(&dev, 2, 0x10_1000), 0, "no vector pending");
    // A read straddling the table's start: device memory, then all-ones.
    let mut b = [0u8; 8];
    dev.region_read(2, 0xf_fffc, &mut b).unwrap();
    assert_eq!(&b[4..], &[0xff; 4]);
}

#[test]
fn registers_read_as_documented() {
    let dev = build("emulated:dma-engine");
    assert_eq!(read32(&dev, 0, REG_ID), 0x3141_4d44);
    assert_eq!(read32(&dev, 0, REG_CAPS), 0x1000_0003);
    assert_eq!(read32(&dev, 0, 0x800), 0, "undefined offsets read 0");
    write32(&dev, 0, 0x800, 5);
    assert_eq!(read32(&dev, 0, 0x800), 0);
    assert_eq!(read32(&dev, 0, REG_QUEUE_SIZE), 1);
    write32(&dev, 0, REG_QUEUE_SIZE, 3);
    assert_eq!(
        read32(&dev, 0, REG_QUEUE_SIZE),
        1,
        "invalid sizes are ignored"
    );
    write32(&dev, 0, REG_QUEUE_SIZE, 8192);
    assert_eq!(read32(&dev, 0, REG_QUEUE_SIZE), 1);
    write32(&dev, 0, REG_QUEUE_SIZE, 64);
    assert_eq!(read32(&dev, 0, REG_QUEUE_SIZE), 64);
    // A 64-bit register as one 8-byte access; the ring base is 64-byte aligned.
    dev.region_write(0, REG_QUEUE_BASE, &0x1_2345_67ffu64.to_le_bytes())
        .unwrap();
    let mut q = [0u8; 8];
    dev.region_read(0, REG_QUEUE_BASE, &mut q).unwrap();
    assert_eq!(u64::from_le_bytes(q), 0x1_2345_67c0);
    assert_eq!(read32(&dev, 0, REG_QUEUE_BASE + 4), 1);
    write32(&dev, 0, REG_QUEUE_TAIL, 64);
    assert_eq!(
        read32(&dev, 0, REG_QUEUE_TAIL),
        0,
        "a tail past the ring is ignored"
    );
    write32(&dev, 0, REG_CTRL, CTRL_RESET | CTRL_INT_ENABLE);
    assert_eq!(read32(&dev, 0, REG_CTRL), CTRL_INT_ENABLE, "RESET reads 0");

    let no_pasid = build("emulated:dma-engine,pasid=off");
    assert_eq!(read32(&no_pasid, 0, REG_CAPS) & 1, 0);
}
