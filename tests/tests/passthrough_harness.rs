//! Passthrough devices in the device harness (no vCPUs): emulated devices wired by
//! `--device vfio=emulated:...` exactly as on KVM, driven by the test playing the guest through
//! config space, MMIO and RAM, with the interrupts they raise recorded.

use devices::interrupt::MsiMessage;
use devices::pci::{PciBdf, walk_capabilities, walk_extended_capabilities};
use vfio_passthrough::emulated_device::models::dma_engine::config::{
    MSIX_TABLE_OFFSET, PASID_WIDTH,
};
use vfio_passthrough::emulated_device::models::dma_engine::descriptor::{
    OP_COPY, OP_INTERRUPT, OP_SRC_DEVMEM, Status,
};
use vfio_passthrough::emulated_device::models::dma_engine::regs::{
    CTRL_ENABLE, DMA_ENGINE_ID, REG_COMPLETED, REG_CTRL, REG_ERROR_CODE, REG_FAULT_ADDR, REG_ID,
    REG_QUEUE_BASE, REG_QUEUE_SIZE, REG_QUEUE_TAIL, REG_STATUS, STATUS_ERROR, STATUS_HALTED,
};
use vfio_passthrough::emulated_device::models::mailbox;
use vmm::harness::Harness;
use vmm::interrupts::RecordedInterrupt;
use vmm::layout::{MMIO32_START, MMIO64_START, PCI_ECAM_START, pci_intx_gsi};
use vmm::passthrough::{
    BackendKind, DeviceArg, DmaSpaceError, HostIommu, PassthroughError, PassthroughSpec, assign_ids,
};

const RAM_SIZE: u64 = 16 << 20;
const COMMAND: u16 = 0x04;
const BAR0: u16 = 0x10;
const BAR2: u16 = 0x18;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_MASTER: u32 = 1 << 2;
const CAP_MSIX: u16 = 0x11;
const EXT_CAP_PASID: u16 = 0x1b;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_ENTRY_MASKED: u32 = 1;

/// Where the tests put the ring, the data and the completion records in guest RAM.
const RING: u64 = 0x10_0000;
const SRC: u64 = 0x20_0000;
const DST: u64 = 0x30_0000;
const COMPLETION: u64 = 0x40_0000;
/// An IOVA inside no mapped range: above the 16 MiB of RAM.
const UNMAPPED_IOVA: u64 = 0x8000_0000;
/// The MSI-X messages the tests program.
const MSG0: MsiMessage = MsiMessage {
    address: 0xfee0_0000,
    data: 0x41,
};
const MSG1: MsiMessage = MsiMessage {
    address: 0xfee0_0000,
    data: 0x42,
};

fn specs(values: &[&str]) -> Vec<PassthroughSpec> {
    let args = values
        .iter()
        .map(|v| DeviceArg::parse(v).expect("valid --device value"))
        .collect();
    assign_ids(args).expect("distinct ids")
}

fn harness(values: &[&str]) -> Harness {
    Harness::with_passthrough(RAM_SIZE, &specs(values), HostIommu::Auto)
        .expect("harness with devices")
}

/// The same devices through the emulated host's type1 container (`--host-iommu container`).
fn harness_in_container(values: &[&str]) -> Harness {
    Harness::with_passthrough(RAM_SIZE, &specs(values), HostIommu::Container)
        .expect("harness with devices in the emulated container")
}

fn ecam(bdf: PciBdf, reg: u16) -> u64 {
    PCI_ECAM_START
        + (u64::from(bdf.device()) << 15)
        + (u64::from(bdf.function()) << 12)
        + u64::from(reg)
}

fn cfg_read(h: &Harness, bdf: PciBdf, reg: u16, len: usize) -> u32 {
    let mut v = [0u8; 4];
    h.mmio_read(ecam(bdf, reg), &mut v[..len]);
    u32::from_le_bytes(v)
}

fn cfg_write(h: &Harness, bdf: PciBdf, reg: u16, len: usize, value: u32) {
    h.mmio_write(ecam(bdf, reg), &value.to_le_bytes()[..len]);
}

fn read32(h: &Harness, addr: u64) -> u32 {
    let mut v = [0u8; 4];
    h.mmio_read(addr, &mut v);
    u32::from_le_bytes(v)
}

fn write32(h: &Harness, addr: u64, value: u32) {
    h.mmio_write(addr, &value.to_le_bytes());
}

fn bar0(h: &Harness, bdf: PciBdf) -> u64 {
    u64::from(cfg_read(h, bdf, BAR0, 4) & !0xf)
}

fn bar2(h: &Harness, bdf: PciBdf) -> u64 {
    u64::from(cfg_read(h, bdf, BAR2, 4) & !0xf) | u64::from(cfg_read(h, bdf, BAR2 + 4, 4)) << 32
}

/// The first passthrough device of the harness.
fn first(h: &Harness) -> PciBdf {
    h.core().passthrough().devices()[0].bdf()
}

/// The guest driver's set-up: memory decoding and bus mastering on, MSI-X entries 0 and 1
/// programmed (entry 0 masked if asked), MSI-X enabled, the ring (16 entries) enabled.
fn start_engine(h: &Harness, bdf: PciBdf, mask_entry0: bool) {
    cfg_write(h, bdf, COMMAND, 2, COMMAND_MEMORY | COMMAND_MASTER);
    let table = bar2(h, bdf) + u64::from(MSIX_TABLE_OFFSET);
    for (entry, msg, masked) in [(0, MSG0, mask_entry0), (1, MSG1, false)] {
        let at = table + 16 * entry;
        write32(h, at, msg.address as u32);
        write32(h, at + 4, (msg.address >> 32) as u32);
        write32(h, at + 8, msg.data);
        write32(h, at + 12, if masked { MSIX_ENTRY_MASKED } else { 0 });
    }
    let msix = walk_capabilities(|o| cfg_read(h, bdf, o, 1) as u8)
        .into_iter()
        .find(|c| c.id == CAP_MSIX)
        .expect("the DMA engine shows MSI-X")
        .offset;
    let control = cfg_read(h, bdf, msix + 2, 2) as u16;
    cfg_write(h, bdf, msix + 2, 2, u32::from(control | MSIX_ENABLE));
    let regs = bar0(h, bdf);
    write32(h, regs + REG_QUEUE_BASE, RING as u32);
    write32(h, regs + REG_QUEUE_BASE + 4, 0);
    write32(h, regs + REG_QUEUE_SIZE, 16);
    write32(h, regs + REG_CTRL, CTRL_ENABLE);
}

/// A 64-byte descriptor.
fn descriptor(op: u32, src: u64, dst: u64, len: u64, completion: u64) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&op.to_le_bytes());
    d[8..16].copy_from_slice(&src.to_le_bytes());
    d[16..24].copy_from_slice(&dst.to_le_bytes());
    d[24..32].copy_from_slice(&len.to_le_bytes());
    d[32..40].copy_from_slice(&completion.to_le_bytes());
    d
}

/// Puts `desc` in ring slot `index` and rings the doorbell for it.
fn submit(h: &Harness, bdf: PciBdf, index: u32, desc: [u8; 64]) {
    h.mem_write(RING + 64 * u64::from(index), &desc).unwrap();
    write32(h, bar0(h, bdf) + REG_QUEUE_TAIL, index + 1);
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

fn ram(h: &Harness, addr: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    h.mem_read(addr, &mut b).unwrap();
    b
}

fn completion_status(h: &Harness, at: u64) -> u32 {
    let b = ram(h, at, 4);
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[test]
fn dma_engine_sits_on_bus_0_with_its_bars_placed_and_all_ram_mapped_for_dma() {
    let h = harness(&["vfio=emulated:dma-engine,id=dma0"]);
    let passthrough = h.core().passthrough();
    let dev = passthrough.device("dma0").expect("device dma0");
    let bdf = dev.bdf();
    assert_eq!((bdf.device(), bdf.function()), (1, 0));
    assert_eq!(dev.backend(), BackendKind::EmulatedIommufd);
    assert_eq!(cfg_read(&h, bdf, 0, 4), 0x7d10_1234);
    assert_eq!(bar0(&h, bdf), MMIO32_START);
    assert_eq!(bar2(&h, bdf), MMIO64_START);
    // INTA# of slot 1, as the DSDT's _PRT routes it.
    assert_eq!(cfg_read(&h, bdf, 0x3d, 1), 1);
    assert_eq!(dev.intx_gsi(), pci_intx_gsi(1, 0));
    // One IOAS for the emulated backend, all of RAM at IOVA = guest physical address.
    let spaces = passthrough.dma_spaces();
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0].mapped(), [(0, RAM_SIZE)]);
    // BAR 2's device memory and the tail after the MSI-X pages are mmapped.
    let areas: Vec<(usize, u64, u64)> = dev
        .bar_slots()
        .areas()
        .iter()
        .map(|a| (a.index, a.offset, a.len))
        .collect();
    assert_eq!(areas, [(2, 0, 0x10_0000), (2, 0x10_2000, 0xf_e000)]);
    assert!(dev.bar_slots().mapped().is_empty(), "not decoding yet");
}

#[test]
fn guest_sees_a_virtual_pasid_capability_of_the_iommus_width() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    let ext = walk_extended_capabilities(|o| cfg_read(&h, bdf, o, 4));
    let ext: Vec<(u16, u16)> = ext.iter().map(|c| (c.id, c.offset)).collect();
    assert_eq!(ext, [(EXT_CAP_PASID, 0x100)]);
    assert_eq!(cfg_read(&h, bdf, 0x104, 2) >> 8, u32::from(PASID_WIDTH));
    // The guest's enable is kept virtually.
    cfg_write(&h, bdf, 0x106, 2, 1);
    assert_eq!(cfg_read(&h, bdf, 0x106, 2), 1);
}

#[test]
fn device_memory_is_mapped_at_bar2_and_follows_the_guest_when_it_moves_the_bar() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    start_engine(&h, bdf, false);
    let old = bar2(&h, bdf);
    let slot = h
        .hypervisor()
        .find_slot(old)
        .expect("BAR 2 mapped while decoding");
    assert_eq!((slot.guest_addr, slot.size), (old, 0x10_0000));
    let data = pattern(256, 0x5a);
    h.mmio_write(old + 0x800, &data);

    // The guest moves BAR 2 (lower half, then upper half).
    let new = MMIO64_START + 0x4000_0000;
    cfg_write(&h, bdf, BAR2, 4, new as u32);
    cfg_write(&h, bdf, BAR2 + 4, 4, (new >> 32) as u32);
    assert_eq!(bar2(&h, bdf), new);
    let mut moved = vec![0u8; data.len()];
    h.mmio_read(new + 0x800, &mut moved);
    assert_eq!(moved, data, "device memory at the new address");
    assert!(h.hypervisor().find_slot(old).is_none());
    assert_eq!(read32(&h, old + 0x800), u32::MAX, "nothing at the old one");

    // What the guest wrote is the device's memory: the engine copies it to RAM.
    submit(
        &h,
        bdf,
        0,
        descriptor(OP_COPY | OP_SRC_DEVMEM, 0x800, DST, 256, COMPLETION),
    );
    assert_eq!(completion_status(&h, COMPLETION), Status::Success as u32);
    assert_eq!(ram(&h, DST, 256), data);

    // The MSI-X table page moved too (it is trapped, not mapped).
    let table = new + u64::from(MSIX_TABLE_OFFSET);
    assert_eq!(read32(&h, table + 8), MSG0.data);

    cfg_write(&h, bdf, COMMAND, 2, COMMAND_MASTER);
    assert!(
        h.core().passthrough().devices()[0]
            .bar_slots()
            .mapped()
            .is_empty()
    );
    assert_eq!(read32(&h, new + 0x800), u32::MAX);
}

#[test]
fn msix_completion_interrupt_is_recorded_with_the_programmed_message() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    start_engine(&h, bdf, false);
    let data = pattern(512, 1);
    h.mem_write(SRC, &data).unwrap();
    h.take_interrupts();
    submit(
        &h,
        bdf,
        0,
        descriptor(OP_COPY | OP_INTERRUPT, SRC, DST, 512, COMPLETION),
    );
    assert_eq!(ram(&h, DST, 512), data);
    assert_eq!(h.take_interrupts(), [RecordedInterrupt::Msi(MSG0)]);
}

#[test]
fn masked_msix_vector_holds_the_interrupt_and_delivers_it_once_on_unmask() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    start_engine(&h, bdf, true);
    h.take_interrupts();
    submit(
        &h,
        bdf,
        0,
        descriptor(OP_COPY | OP_INTERRUPT, SRC, DST, 64, COMPLETION),
    );
    assert_eq!(completion_status(&h, COMPLETION), Status::Success as u32);
    assert_eq!(h.take_interrupts(), [], "masked: nothing delivered");
    assert_eq!(h.take_interrupts(), [], "still held");

    let entry0_control = bar2(&h, bdf) + u64::from(MSIX_TABLE_OFFSET) + 12;
    write32(&h, entry0_control, 0);
    assert_eq!(h.take_interrupts(), [RecordedInterrupt::Msi(MSG0)]);
    assert_eq!(h.take_interrupts(), [], "delivered once");
    // Masking and unmasking again delivers nothing more.
    write32(&h, entry0_control, MSIX_ENTRY_MASKED);
    write32(&h, entry0_control, 0);
    assert_eq!(h.take_interrupts(), []);
}

#[test]
fn dma_to_an_iova_outside_guest_ram_faults_instead_of_writing() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    start_engine(&h, bdf, false);
    h.mem_write(SRC, &pattern(128, 3)).unwrap();
    h.take_interrupts();
    submit(
        &h,
        bdf,
        0,
        descriptor(OP_COPY | OP_INTERRUPT, SRC, UNMAPPED_IOVA, 128, COMPLETION),
    );
    let regs = bar0(&h, bdf);
    assert_eq!(read32(&h, regs + REG_ERROR_CODE), Status::DstFault as u32);
    assert_eq!(read32(&h, regs + REG_FAULT_ADDR), UNMAPPED_IOVA as u32);
    assert_eq!(read32(&h, regs + REG_FAULT_ADDR + 4), 0);
    assert_eq!(read32(&h, regs + REG_STATUS), STATUS_ERROR | STATUS_HALTED);
    assert_eq!(completion_status(&h, COMPLETION), Status::DstFault as u32);
    // bytes_done: nothing reached the destination.
    assert_eq!(ram(&h, COMPLETION + 8, 8), [0; 8]);
    // The error vector, not the completion one.
    assert_eq!(h.take_interrupts(), [RecordedInterrupt::Msi(MSG1)]);
}

#[test]
fn ram_unmapped_from_the_dma_space_is_unreachable_until_the_hook_maps_it_again() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    start_engine(&h, bdf, false);
    let passthrough = h.core().passthrough();
    let space = passthrough.dma_spaces()[0];
    let region = h.core().ram().regions().remove(0);
    space.unmap_region(&region).unwrap();
    assert_eq!(space.mapped(), []);
    assert!(matches!(
        space.unmap_region(&region),
        Err(DmaSpaceError::NotMapped { gpa: 0, .. })
    ));

    let data = pattern(256, 9);
    h.mem_write(SRC, &data).unwrap();
    submit(&h, bdf, 0, descriptor(OP_COPY, SRC, DST, 256, COMPLETION));
    let regs = bar0(&h, bdf);
    // Even the descriptor cannot be fetched; RAM is untouched.
    assert_eq!(read32(&h, regs + REG_ERROR_CODE), Status::DescFault as u32);
    assert_eq!(read32(&h, regs + REG_FAULT_ADDR), RING as u32);
    assert_eq!(ram(&h, DST, 256), [0; 256]);

    // The RAM-change hook maps every region there is again; the engine resumes.
    passthrough.ram_changed().unwrap();
    assert_eq!(space.mapped(), [(0, RAM_SIZE)]);
    assert!(matches!(
        space.map_region(&region),
        Err(DmaSpaceError::AlreadyMapped { gpa: 0, .. })
    ));
    write32(&h, regs + REG_STATUS, STATUS_ERROR);
    assert_eq!(read32(&h, regs + REG_STATUS), 0);
    assert_eq!(read32(&h, regs + REG_COMPLETED), 1);
    assert_eq!(ram(&h, DST, 256), data);
}

#[test]
fn memory_that_is_not_guest_ram_is_never_mapped_for_dma() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let space = h.core().passthrough().dma_spaces()[0];
    let mut region = h.core().ram().regions().remove(0);
    region.guest_addr = vm_memory::GuestAddress(0x4000_0000);
    assert!(matches!(
        space.map_region(&region),
        Err(DmaSpaceError::NotRam {
            gpa: 0x4000_0000,
            ..
        })
    ));
    assert_eq!(space.mapped(), [(0, RAM_SIZE)]);
}

#[test]
fn mailbox_intx_is_raised_on_the_doorbell_and_stays_down_after_eoi_once_cleared() {
    let h = harness(&["vfio=emulated:mailbox,id=mbox"]);
    let dev = h.core().passthrough().device("mbox").unwrap();
    let (bdf, gsi) = (dev.bdf(), dev.intx_gsi());
    cfg_write(&h, bdf, COMMAND, 2, COMMAND_MEMORY);
    let regs = bar0(&h, bdf);
    assert_eq!(read32(&h, regs + mailbox::REG_ID), mailbox::MAILBOX_ID);
    // A conventional function: no extended capabilities, so no PASID for the guest.
    assert!(walk_extended_capabilities(|o| cfg_read(&h, bdf, o, 4)).is_empty());
    h.take_interrupts();

    write32(&h, regs + mailbox::REG_DOORBELL, 1);
    h.dispatch_events().unwrap();
    assert_eq!(h.take_interrupts(), [RecordedInterrupt::Line(gsi)]);
    // Level-triggered and masked in the host until the guest's EOI: no second interrupt.
    h.dispatch_events().unwrap();
    assert_eq!(h.take_interrupts(), []);

    // EOI while the device still asserts it: the line is raised again.
    h.end_of_interrupt(gsi).unwrap();
    h.dispatch_events().unwrap();
    h.dispatch_events().unwrap();
    assert_eq!(h.take_interrupts(), [RecordedInterrupt::Line(gsi)]);

    // The guest clears INT_STATUS, then EOIs: the line stays down.
    write32(&h, regs + mailbox::REG_INT_STATUS, 1);
    assert_eq!(read32(&h, regs + mailbox::REG_INT_STATUS), 0);
    h.end_of_interrupt(gsi).unwrap();
    h.dispatch_events().unwrap();
    h.dispatch_events().unwrap();
    assert_eq!(h.take_interrupts(), []);

    // And the next doorbell raises it again.
    write32(&h, regs + mailbox::REG_DOORBELL, 1);
    h.dispatch_events().unwrap();
    assert_eq!(h.take_interrupts(), [RecordedInterrupt::Line(gsi)]);
}

#[test]
fn two_devices_get_their_own_slots_and_share_one_dma_space() {
    let h = harness(&["vfio=emulated:dma-engine", "vfio=emulated:dma-engine"]);
    let devices = h.core().passthrough().devices();
    let ids: Vec<(&str, u8, u32)> = devices
        .iter()
        .map(|d| (d.id(), d.bdf().device(), d.intx_gsi()))
        .collect();
    assert_eq!(
        ids,
        [
            ("vfio0", 1, pci_intx_gsi(1, 0)),
            ("vfio1", 2, pci_intx_gsi(2, 0))
        ]
    );
    assert_eq!(h.core().passthrough().dma_spaces().len(), 1);
    // Each copies through its own ring.
    for (i, dev) in devices.iter().enumerate() {
        let bdf = dev.bdf();
        start_engine(&h, bdf, false);
        assert_eq!(read32(&h, bar0(&h, bdf) + REG_ID), DMA_ENGINE_ID);
        write32(
            &h,
            bar0(&h, bdf) + REG_QUEUE_BASE,
            (RING + 0x1000 * i as u64) as u32,
        );
    }
    for (i, dev) in devices.iter().enumerate() {
        let off = 0x1000 * i as u64;
        let data = pattern(64, i as u8);
        h.mem_write(SRC + off, &data).unwrap();
        let desc = descriptor(OP_COPY, SRC + off, DST + off, 64, COMPLETION + off);
        h.mem_write(RING + off, &desc).unwrap();
        write32(&h, bar0(&h, dev.bdf()) + REG_QUEUE_TAIL, 1);
        assert_eq!(ram(&h, DST + off, 64), data);
    }
}

#[test]
fn dropping_the_machine_removes_the_device_memory_slots() {
    let h = harness(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    start_engine(&h, bdf, false);
    let base = bar2(&h, bdf);
    let hypervisor = h.hypervisor().clone();
    assert!(hypervisor.find_slot(base).is_some());
    drop(h);
    assert!(hypervisor.find_slot(base).is_none());
}

#[test]
fn a_missing_host_device_fails_the_machine_naming_its_id_and_path() {
    let err = Harness::with_passthrough(
        RAM_SIZE,
        &specs(&[
            "vfio=emulated:dma-engine,id=ok",
            "vfio=/sys/bus/pci/devices/0000:7f:1f.7,id=missing",
        ]),
        HostIommu::Auto,
    )
    .unwrap_err();
    let text = vmm::launch::error_line(&err);
    assert!(
        text.starts_with("passthrough device missing (/sys/bus/pci/devices/0000:7f:1f.7): "),
        "{text}"
    );
    let vmm::harness::HarnessError::Assembly(vmm::assembly::AssemblyError::Passthrough(err)) = err
    else {
        panic!("not a passthrough error: {err}");
    };
    assert!(matches!(*err, PassthroughError::Open { ref id, .. } if id == "missing"));
}

#[test]
fn in_the_emulated_container_ram_is_mapped_once_for_every_group_and_dma_works() {
    let h = harness_in_container(&["vfio=emulated:dma-engine", "vfio=emulated:dma-engine"]);
    let passthrough = h.core().passthrough();
    let spaces = passthrough.dma_spaces();
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0].backend(), "emulated container");
    assert_eq!(spaces[0].mapped(), [(0, RAM_SIZE)]);
    for (i, dev) in passthrough.devices().iter().enumerate() {
        assert_eq!(dev.backend(), BackendKind::EmulatedContainer);
        let bdf = dev.bdf();
        start_engine(&h, bdf, false);
        let off = 0x1000 * i as u64;
        write32(&h, bar0(&h, bdf) + REG_QUEUE_BASE, (RING + off) as u32);
        let data = pattern(128, 0x30 + i as u8);
        h.mem_write(SRC + off, &data).unwrap();
        h.take_interrupts();
        let desc = descriptor(
            OP_COPY | OP_INTERRUPT,
            SRC + off,
            DST + off,
            128,
            COMPLETION + off,
        );
        h.mem_write(RING + off, &desc).unwrap();
        write32(&h, bar0(&h, bdf) + REG_QUEUE_TAIL, 1);
        assert_eq!(ram(&h, DST + off, 128), data);
        assert_eq!(h.take_interrupts(), [RecordedInterrupt::Msi(MSG0)]);
    }
}

#[test]
fn in_the_emulated_container_dma_outside_ram_faults_and_no_pasid_is_shown() {
    let h = harness_in_container(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    // Type1 attaches no PASID: the guest is not offered one.
    assert!(walk_extended_capabilities(|o| cfg_read(&h, bdf, o, 4)).is_empty());
    start_engine(&h, bdf, false);
    h.take_interrupts();
    submit(
        &h,
        bdf,
        0,
        descriptor(OP_COPY, SRC, UNMAPPED_IOVA, 64, COMPLETION),
    );
    let regs = bar0(&h, bdf);
    assert_eq!(read32(&h, regs + REG_ERROR_CODE), Status::DstFault as u32);
    assert_eq!(read32(&h, regs + REG_FAULT_ADDR), UNMAPPED_IOVA as u32);
    assert_eq!(h.take_interrupts(), [RecordedInterrupt::Msi(MSG1)]);
}

#[test]
fn the_ram_change_hook_unmaps_and_maps_again_in_the_emulated_container() {
    let h = harness_in_container(&["vfio=emulated:dma-engine"]);
    let bdf = first(&h);
    start_engine(&h, bdf, false);
    let passthrough = h.core().passthrough();
    let space = passthrough.dma_spaces()[0];
    let region = h.core().ram().regions().remove(0);
    space.unmap_region(&region).unwrap();
    submit(&h, bdf, 0, descriptor(OP_COPY, SRC, DST, 64, COMPLETION));
    let regs = bar0(&h, bdf);
    assert_eq!(read32(&h, regs + REG_ERROR_CODE), Status::DescFault as u32);
    passthrough.ram_changed().unwrap();
    assert_eq!(space.mapped(), [(0, RAM_SIZE)]);
    write32(&h, regs + REG_STATUS, STATUS_ERROR);
    assert_eq!(read32(&h, regs + REG_COMPLETED), 1);
}
