//! The DMA engine behind VFIO (docs/dma-engine.md), driven as a VMM drives a passthrough
//! device: BAR accesses, configuration writes and interrupts through `VfioDevice`, its DMA
//! reaching an in-memory test port.

mod common;

use common::*;
use vfio_passthrough::vfio::*;

const CONFIG: u32 = VFIO_PCI_CONFIG_REGION_INDEX;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn a_copy_moves_data_between_iovas_and_raises_msix_vector_0() {
    let mut e = Engine::new("emulated:dma-engine");
    let vectors = e.msix();
    let data = pattern(1, 0x1800);
    e.port.poke(None, BUF_A + 0x100, &data);
    e.submit(Desc {
        op: OP_COPY | OP_INTERRUPT,
        src: BUF_A + 0x100,
        dst: BUF_B + 0x80,
        len: data.len() as u64,
        completion: COMPLETIONS,
        ..Desc::default()
    });
    assert_eq!(e.port.peek(None, BUF_B + 0x80, data.len()), data);
    assert_eq!(
        completion(&e.port, None, COMPLETIONS),
        (ST_SUCCESS, 0, 0x1800)
    );
    assert_eq!(drain(&vectors[0]), 1);
    assert_eq!(drain(&vectors[1]), 0);
    assert_eq!((e.read(REG_QUEUE_HEAD), e.read(REG_COMPLETED)), (1, 1));
    assert_eq!(e.read(REG_INT_STATUS), 0, "MSI-X in use: no INTx source");

    // Without the INTERRUPT flag: done, no interrupt.
    e.submit(Desc {
        op: OP_COPY,
        src: BUF_A,
        dst: BUF_C,
        len: 16,
        ..Desc::default()
    });
    assert_eq!(e.read(REG_COMPLETED), 2);
    assert_eq!(drain(&vectors[0]), 0);
}

#[test]
fn bar2_memory_mapped_by_the_user_is_what_the_device_copies() {
    let mut e = Engine::new("emulated:dma-engine");
    let map = e.dev.region_mmap(2, 0, 0x10_0000, true).unwrap();
    let data = pattern(7, 300);
    map.write(0x2000, &data).unwrap();
    e.submit(Desc {
        op: OP_COPY | OP_SRC_DEVMEM,
        src: 0x2000,
        dst: BUF_A,
        len: 300,
        completion: COMPLETIONS,
        ..Desc::default()
    });
    assert_eq!(e.port.peek(None, BUF_A, 300), data);

    let back = pattern(9, 0x1000);
    e.port.poke(None, BUF_B, &back);
    e.submit(Desc {
        op: OP_COPY | OP_DST_DEVMEM,
        src: BUF_B,
        dst: 0xf_f000,
        len: 0x1000,
        ..Desc::default()
    });
    let mut seen = vec![0u8; 0x1000];
    map.read(0xf_f000, &mut seen).unwrap();
    assert_eq!(
        seen, back,
        "the device's write is visible through the mapping"
    );
    let mut trapped = vec![0u8; 0x1000];
    e.dev.region_read(2, 0xf_f000, &mut trapped).unwrap();
    assert_eq!(trapped, back, "and through the trapped path");

    // Device memory to device memory.
    e.submit(Desc {
        op: OP_COPY | OP_SRC_DEVMEM | OP_DST_DEVMEM,
        src: 0x2000,
        dst: 0x8000,
        len: 300,
        ..Desc::default()
    });
    let mut moved = vec![0u8; 300];
    map.read(0x8000, &mut moved).unwrap();
    assert_eq!(moved, data);
}

#[test]
fn fill_repeats_the_pattern_and_compare_reports_equality() {
    let mut e = Engine::new("emulated:dma-engine");
    e.submit(Desc {
        op: OP_FILL,
        src: 0x8877_6655_4433_2211,
        dst: BUF_A + 3,
        len: 21,
        completion: COMPLETIONS,
        ..Desc::default()
    });
    let filled = e.port.peek(None, BUF_A, 26);
    assert_eq!(&filled[..3], &[0, 0, 0]);
    assert_eq!(
        &filled[3..24],
        &[
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
            0x77, 0x88, 0x11, 0x22, 0x33, 0x44, 0x55
        ]
    );
    assert_eq!(&filled[24..], &[0, 0]);

    let data = pattern(3, 0x3000);
    e.port.poke(None, BUF_B, &data);
    e.port.poke(None, BUF_C, &data);
    e.submit(Desc {
        op: OP_COMPARE,
        src: BUF_B,
        dst: BUF_C,
        len: 0x3000,
        completion: COMPLETIONS + 16,
        ..Desc::default()
    });
    assert_eq!(
        completion(&e.port, None, COMPLETIONS + 16),
        (ST_SUCCESS, 0, 0x3000)
    );
    e.port.poke(None, BUF_C + 0x2fff, &[!data[0x2fff]]);
    e.submit(Desc {
        op: OP_COMPARE,
        src: BUF_B,
        dst: BUF_C,
        len: 0x3000,
        completion: COMPLETIONS + 32,
        ..Desc::default()
    });
    assert_eq!(completion(&e.port, None, COMPLETIONS + 32).1, 1);

    // FILL into device memory, COMPARE device memory with an IOVA.
    e.submit(Desc {
        op: OP_FILL | OP_DST_DEVMEM,
        src: 0x0101_0101_0101_0101,
        dst: 0x100,
        len: 64,
        ..Desc::default()
    });
    e.port.poke(None, BUF_A + 0x1000, &[1u8; 64]);
    e.submit(Desc {
        op: OP_COMPARE | OP_SRC_DEVMEM,
        src: 0x100,
        dst: BUF_A + 0x1000,
        len: 64,
        completion: COMPLETIONS + 48,
        ..Desc::default()
    });
    assert_eq!(
        completion(&e.port, None, COMPLETIONS + 48),
        (ST_SUCCESS, 0, 64)
    );
}

#[test]
fn an_unmapped_source_faults_halts_the_queue_and_raises_the_error_vector() {
    let mut e = Engine::new("emulated:dma-engine");
    let vectors = e.msix();
    let bad = 0x7777_0000;
    let failed = e.submit(Desc {
        op: OP_COPY | OP_INTERRUPT,
        src: bad + 0x10,
        dst: BUF_B,
        len: 64,
        completion: COMPLETIONS,
        ..Desc::default()
    });
    e.queue(Desc {
        op: OP_FILL,
        src: 0xff,
        dst: BUF_C,
        len: 8,
        ..Desc::default()
    });
    e.doorbell();
    assert_eq!(completion(&e.port, None, COMPLETIONS), (ST_SRC_FAULT, 0, 0));
    assert_eq!(e.read(REG_ERROR_CODE), ST_SRC_FAULT);
    assert_eq!(e.read(REG_ERROR_DESC), failed);
    assert_eq!(e.read(REG_FAULT_ADDR), (bad + 0x10) as u32);
    assert_eq!(e.read(REG_FAULT_ADDR + 4), 0);
    assert_eq!(e.read(REG_STATUS), STATUS_HALTED | STATUS_ERROR);
    assert_eq!(
        e.read(REG_QUEUE_HEAD),
        failed,
        "HEAD stays on the failed descriptor"
    );
    assert_eq!((drain(&vectors[1]), drain(&vectors[0])), (1, 0));
    assert_eq!(
        e.port.peek(None, BUF_C, 8),
        vec![0; 8],
        "the queue is halted"
    );

    // Clearing ERROR resumes at HEAD, which fails again until software fixes the descriptor.
    e.write(REG_STATUS, STATUS_ERROR);
    assert_eq!(e.read(REG_STATUS), STATUS_HALTED | STATUS_ERROR);
    assert_eq!(drain(&vectors[1]), 1);
    e.port.map(None, bad, 0x1000);
    e.write(REG_STATUS, STATUS_ERROR);
    assert_eq!(e.read(REG_STATUS), 0);
    assert_eq!(e.read(REG_QUEUE_HEAD), 2);
    assert_eq!(e.port.peek(None, BUF_C, 8), vec![0xff, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        drain(&vectors[0]),
        1,
        "the retried descriptor completed with INTERRUPT"
    );
}

#[test]
fn an_unmapped_destination_page_faults_after_the_pages_before_it() {
    let mut e = Engine::new("emulated:dma-engine");
    let data = pattern(5, 0x2000);
    e.port.poke(None, BUF_A, &data);
    e.port.unmap_page(None, BUF_B + 0x1000);
    e.submit(Desc {
        op: OP_COPY,
        src: BUF_A,
        dst: BUF_B,
        len: 0x2000,
        completion: COMPLETIONS,
        ..Desc::default()
    });
    assert_eq!(
        completion(&e.port, None, COMPLETIONS),
        (ST_DST_FAULT, 0, 0x1000)
    );
    assert_eq!(e.read(REG_FAULT_ADDR), (BUF_B + 0x1000) as u32);
    assert_eq!(e.port.peek(None, BUF_B, 0x1000), data[..0x1000]);
}

#[test]
fn bad_descriptors_fail_with_their_status_codes() {
    let cases = [
        (
            Desc {
                op: 9,
                len: 8,
                ..Desc::default()
            },
            ST_BAD_OPCODE,
        ),
        (
            Desc {
                op: OP_COPY | 1 << 12,
                len: 8,
                ..Desc::default()
            },
            ST_BAD_OPCODE,
        ),
        (
            Desc {
                op: OP_COPY,
                len: 0,
                ..Desc::default()
            },
            ST_BAD_LENGTH,
        ),
        (
            Desc {
                op: OP_FILL,
                len: (16 << 20) + 1,
                ..Desc::default()
            },
            ST_BAD_LENGTH,
        ),
        (
            Desc {
                op: OP_COPY | OP_DST_DEVMEM,
                src: BUF_A,
                dst: 0xf_fff0,
                len: 32,
                ..Desc::default()
            },
            ST_DEVMEM_RANGE,
        ),
    ];
    for (desc, status) in cases {
        let mut e = Engine::new("emulated:dma-engine");
        e.submit(Desc {
            completion: COMPLETIONS,
            ..desc
        });
        assert_eq!(e.read(REG_ERROR_CODE), status, "{desc:?}");
        assert_eq!(completion(&e.port, None, COMPLETIONS).0, status);
        assert_eq!(e.read(REG_STATUS), STATUS_HALTED | STATUS_ERROR);
        // CTRL.RESET clears the queue and the error.
        e.write(REG_CTRL, CTRL_RESET | CTRL_ENABLE);
        assert_eq!(
            (
                e.read(REG_STATUS),
                e.read(REG_QUEUE_HEAD),
                e.read(REG_ERROR_CODE)
            ),
            (0, 0, 0)
        );
    }
}

#[test]
fn an_unfetchable_descriptor_is_a_desc_fault_without_a_record() {
    let mut e = Engine::new("emulated:dma-engine");
    e.port.poke(None, COMPLETIONS, &[0xaa; 16]);
    e.queue(Desc {
        op: OP_COPY,
        len: 8,
        completion: COMPLETIONS,
        ..Desc::default()
    });
    e.port.unmap_page(None, RING);
    e.doorbell();
    assert_eq!(e.read(REG_ERROR_CODE), ST_DESC_FAULT);
    assert_eq!(e.read(REG_FAULT_ADDR), RING as u32);
    assert_eq!(e.port.peek(None, COMPLETIONS, 16), vec![0xaa; 16]);
}

#[test]
fn descriptor_pasids_reach_the_port_only_when_pasid_is_enabled() {
    const PASID: u32 = 0x1_2345;
    let run = |spec: &str, pasid_enabled: bool| {
        let port = MemPort::new();
        port.map(Some(PASID), BUF_A, 0x1000);
        port.map(Some(PASID), COMPLETIONS, 0x1000);
        let mut e = Engine::with_port(spec, port, pasid_enabled);
        e.port.poke(None, BUF_A, &[1, 2, 3, 4]);
        e.port.poke(Some(PASID), BUF_A, &[5, 6, 7, 8]);
        e.submit(Desc {
            op: OP_COPY,
            pasid: PASID_VALID | PASID,
            src: BUF_A,
            dst: BUF_A + 0x10,
            len: 4,
            completion: COMPLETIONS,
        });
        e
    };

    let e = run("emulated:dma-engine", true);
    assert_eq!(e.port.peek(Some(PASID), BUF_A + 0x10, 4), vec![5, 6, 7, 8]);
    assert_eq!(completion(&e.port, Some(PASID), COMPLETIONS).0, ST_SUCCESS);
    let accesses = e.port.accesses();
    assert!(
        accesses.contains(&(None, RING, false)),
        "the ring is fetched without PASID"
    );
    assert!(accesses.contains(&(Some(PASID), BUF_A, false)));
    assert!(accesses.contains(&(Some(PASID), COMPLETIONS, true)));

    for (spec, enabled) in [
        ("emulated:dma-engine", false),
        ("emulated:dma-engine,pasid=off", true),
    ] {
        let e = run(spec, enabled);
        assert_eq!(
            e.port.peek(None, BUF_A + 0x10, 4),
            vec![1, 2, 3, 4],
            "{spec}"
        );
        assert!(
            e.port.accesses().iter().all(|(p, _, _)| p.is_none()),
            "{spec}"
        );
    }
}

#[test]
fn msi_is_used_without_msix_and_honours_its_mask_bits() {
    let mut e = Engine::new("emulated:dma-engine");
    let v = [eventfd(), eventfd()];
    set_triggers(&e.dev, VFIO_PCI_MSI_IRQ_INDEX, 0, &[&v[0], &v[1]]).unwrap();
    // The user now sees MSI enabled with 2 vectors.
    let flags = read16(&e.dev, CONFIG, 0x42);
    assert_eq!(flags & 0x0e, 1 << 1);
    let ok = Desc {
        op: OP_FILL | OP_INTERRUPT,
        src: 1,
        dst: BUF_A,
        len: 8,
        ..Desc::default()
    };
    e.submit(ok);
    assert_eq!((drain(&v[0]), drain(&v[1])), (1, 0));

    // Mask vector 0 in the device's MSI mask register: the interrupt stays pending.
    write32(&e.dev, CONFIG, 0x50, 1);
    e.submit(ok);
    assert_eq!(drain(&v[0]), 0);
    assert_eq!(read32(&e.dev, CONFIG, 0x54) & 1, 1, "pending bit");
    write32(&e.dev, CONFIG, 0x50, 0);
    assert_eq!(drain(&v[0]), 1, "delivered on unmask");
    assert_eq!(read32(&e.dev, CONFIG, 0x54), 0);

    e.submit(Desc {
        op: 0x55,
        len: 1,
        ..Desc::default()
    });
    assert_eq!(drain(&v[1]), 1, "errors on vector 1");
}

#[test]
fn intx_is_used_without_msi_and_follows_int_status() {
    let mut e = Engine::new("emulated:dma-engine");
    let trigger = eventfd();
    set_triggers(&e.dev, VFIO_PCI_INTX_IRQ_INDEX, 0, &[&trigger]).unwrap();
    let ok = Desc {
        op: OP_FILL | OP_INTERRUPT,
        src: 1,
        dst: BUF_A,
        len: 8,
        ..Desc::default()
    };
    e.submit(ok);
    assert_eq!(e.read(REG_INT_STATUS), 1);
    assert_eq!(drain(&trigger), 1);
    assert_ne!(
        read16(&e.dev, CONFIG, 6) & 0x8,
        0,
        "status: interrupt asserted"
    );
    // Automasked: a second completion while the line is high sends nothing more.
    e.submit(ok);
    assert_eq!(drain(&trigger), 0);
    e.write(REG_INT_STATUS, 1);
    assert_eq!(read16(&e.dev, CONFIG, 6) & 0x8, 0);
    let unmask = IrqSet {
        flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        index: 0,
        start: 0,
        count: 1,
    };
    e.dev.set_irqs(&unmask, &[]).unwrap();
    assert_eq!(drain(&trigger), 0);
    // Without INT_ENABLE the status bit is set but the line stays low.
    e.write(REG_CTRL, CTRL_ENABLE);
    e.submit(ok);
    assert_eq!((e.read(REG_INT_STATUS), drain(&trigger)), (1, 0));
    e.write(REG_CTRL, CTRL_ENABLE | CTRL_INT_ENABLE);
    assert_eq!(drain(&trigger), 1);
}

#[test]
fn work_waits_for_bus_mastering() {
    let mut e = Engine::new("emulated:dma-engine");
    let cmd = read16(&e.dev, CONFIG, 4);
    write16(&e.dev, CONFIG, 4, cmd & !0x4);
    e.submit(Desc {
        op: OP_FILL,
        src: 7,
        dst: BUF_A,
        len: 1,
        ..Desc::default()
    });
    assert_eq!((e.read(REG_QUEUE_HEAD), e.read(REG_QUEUE_TAIL)), (0, 1));
    assert!(e.port.accesses().is_empty(), "no DMA without bus mastering");
    write16(&e.dev, CONFIG, 4, cmd | 0x4);
    assert_eq!(e.read(REG_QUEUE_HEAD), 1);
    assert_eq!(e.port.peek(None, BUF_A, 1), vec![7]);
}

#[test]
fn a_device_reset_restores_power_on_state() {
    let mut e = Engine::new("emulated:dma-engine");
    let map = e.dev.region_mmap(2, 0, 0x1000, true).unwrap();
    map.write(0, &[9; 16]).unwrap();
    e.submit(Desc {
        op: OP_FILL,
        src: 1,
        dst: BUF_A,
        len: 1,
        ..Desc::default()
    });
    e.dev.reset().unwrap();
    assert_eq!(e.read(REG_CTRL), 0);
    assert_eq!(e.read(REG_COMPLETED), 0);
    assert_eq!(e.read(REG_QUEUE_SIZE), 1);
    let mut back = [0xffu8; 16];
    map.read(0, &mut back).unwrap();
    assert_eq!(back, [0; 16], "device memory is cleared");
    // Interrupt configuration and bus mastering survive (the config space is restored).
    assert_ne!(read16(&e.dev, CONFIG, 4) & 0x4, 0);
}

#[test]
fn the_mailbox_doorbell_raises_intx_until_acknowledged() {
    let dev = build("emulated:mailbox");
    assert_eq!(read32(&dev, 0, 0), 0x3158_4f4d);
    write32(&dev, 0, 4, 0xfeed);
    assert_eq!(read32(&dev, 0, 4), 0xfeed);
    let trigger = eventfd();
    set_triggers(&dev, VFIO_PCI_INTX_IRQ_INDEX, 0, &[&trigger]).unwrap();
    write32(&dev, 0, 8, 1);
    assert_eq!(read32(&dev, 0, 0xc), 1);
    assert_eq!(drain(&trigger), 1);
    write32(&dev, 0, 0xc, 1);
    assert_eq!(read32(&dev, 0, 0xc), 0);
    dev.reset().unwrap();
    assert_eq!(read32(&dev, 0, 4), 0);
}

#[test]
fn a_function_level_reset_through_config_space_resets_the_device() {
    let mut e = Engine::new("emulated:dma-engine");
    e.submit(Desc {
        op: OP_FILL,
        src: 1,
        dst: BUF_A,
        len: 1,
        ..Desc::default()
    });
    assert_eq!(e.read(REG_COMPLETED), 1);
    // PCI Express capability at 0x64: device control at +8, bit 15 initiates FLR.
    let devctl = read16(&e.dev, CONFIG, 0x6c);
    write16(&e.dev, CONFIG, 0x6c, devctl | 0x8000);
    assert_eq!(read16(&e.dev, CONFIG, 0x6c) & 0x8000, 0, "FLR reads 0");
    assert_eq!((e.read(REG_COMPLETED), e.read(REG_CTRL)), (0, 0));
    assert_eq!(e.dev.mig_state().unwrap(), 2, "RUNNING");
}
