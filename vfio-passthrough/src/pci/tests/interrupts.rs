//! Interrupts: INTx, MSI and MSI-X reach the guest through the VMM's eventfds, following
//! vfio-pci's rules; the subscriber; reset.

use std::os::fd::AsRawFd;
use std::sync::Mutex;

use devices::interrupt::{InterruptSourceGroup, LegacyIrq, MsiMessage};
use devices::pci::PciDevice;
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};

use super::*;
use crate::pci::test_utils::{CAP_MSI, CAP_MSIX};
use crate::pci::{HostIrq, VfioPciEvent};
use crate::vfio::{
    IrqSet, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX, VfioDevice,
};

const EVENTFD_TRIGGER: u32 = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
const DISABLE: u32 = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;

fn disable(index: u32) -> IrqSet {
    IrqSet {
        flags: DISABLE,
        index,
        start: 0,
        count: 0,
    }
}

fn enable(index: u32, count: u32) -> IrqSet {
    IrqSet {
        flags: EVENTFD_TRIGGER,
        index,
        start: 0,
        count,
    }
}

fn msg(address: u64, data: u32) -> MsiMessage {
    MsiMessage { address, data }
}

/// The raw fds of vectors `0..n` of a group.
fn group_fds(group: &dyn InterruptSourceGroup, n: u32) -> Vec<i32> {
    (0..n)
        .map(|i| group.notifier(i).unwrap().as_raw_fd())
        .collect()
}

/// Programs MSI-X table entry `i` and unmasks it, through trapped BAR 2 writes.
fn program_msix_entry(dev: &mut VfioPciDevice, i: u64, address: u64, data: u32) {
    let at = 0x10_0000 + 16 * i;
    dev.write_bar(2, at, &address.to_le_bytes());
    dev.write_bar(2, at + 8, &data.to_le_bytes());
    dev.write_bar(2, at + 12, &0u32.to_le_bytes());
}

/// The first PBA qword, through a trapped BAR 2 read.
fn pba(dev: &mut VfioPciDevice) -> u64 {
    let mut data = [0u8; 8];
    dev.read_bar(2, 0x10_1000, &mut data);
    u64::from_le_bytes(data)
}

#[test]
fn intx_is_wired_to_the_line_irqfd_and_its_resample_fd_at_start() {
    let f = fixture();
    let line = f.irqs.legacy_irqs()[0].clone();
    assert_eq!(line.gsi(), GSI);
    assert_eq!(f.dev.host_irq(), HostIrq::Intx);
    assert_eq!(f.host.enabled_irq(), Some((VFIO_PCI_INTX_IRQ_INDEX, 1)));
    let calls: Vec<_> = f
        .host
        .set_irqs_calls()
        .into_iter()
        .filter(|c| c.req.index == VFIO_PCI_INTX_IRQ_INDEX)
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].req, enable(VFIO_PCI_INTX_IRQ_INDEX, 1));
    assert_eq!(calls[0].fds(), [line.notifier().as_raw_fd()]);
    assert_eq!(
        calls[1].req.flags,
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK
    );
    assert_eq!(calls[1].fds(), [line.resample_notifier().as_raw_fd()]);
    // The device's INTx signals the line's irqfd and masks itself until the guest's EOI
    // signals the resample fd.
    assert!(f.host.fire(VFIO_PCI_INTX_IRQ_INDEX, 0));
    assert_eq!(line.notifier().read().unwrap(), 1);
    assert!(f.host.intx_masked());
    assert!(!f.host.fire(VFIO_PCI_INTX_IRQ_INDEX, 0));
    line.resample_notifier().write(1).unwrap();
    assert!(f.host.poll_intx_unmask());
    assert!(!f.host.intx_masked());
}

#[test]
fn msix_enable_hands_the_group_eventfds_to_vfio_after_disabling_intx() {
    let mut f = fixture();
    let msix = host_cap(&f.host, CAP_MSIX);
    program_msix_entry(&mut f.dev, 0, 0xfee0_0000, 0x41);
    program_msix_entry(&mut f.dev, 1, 0xfee0_1000, 0x42);
    f.host.take_set_irqs_calls();
    cfg_write(&mut f.dev, msix + 3, 1, 0x80);
    let group = f.irqs.groups()[1].clone();
    let calls = f.host.take_set_irqs_calls();
    assert_eq!(
        calls.iter().map(|c| c.req).collect::<Vec<_>>(),
        [
            disable(VFIO_PCI_INTX_IRQ_INDEX),
            enable(VFIO_PCI_MSIX_IRQ_INDEX, 2)
        ]
    );
    assert!(calls.iter().all(|c| c.result.is_ok()));
    assert_eq!(calls[1].fds(), group_fds(group.as_ref(), 2));
    assert_eq!(f.dev.host_irq(), HostIrq::Msix(2));
    assert_eq!(f.host.enabled_irq(), Some((VFIO_PCI_MSIX_IRQ_INDEX, 2)));
    // Enabling routed both vectors unmasked.
    assert_eq!(
        group.vector(0).map(|v| (v.msg, v.masked)),
        Some((msg(0xfee0_0000, 0x41), false))
    );
    // The device raises vector 1: it reaches the guest through the group's eventfd.
    assert!(f.host.fire(VFIO_PCI_MSIX_IRQ_INDEX, 1));
    assert_eq!(group.poll_notifiers(), 1);
    assert_eq!(group.deliveries(), [(1, msg(0xfee0_1000, 0x42))]);
}

#[test]
fn msix_vector_masking_goes_through_group_updates() {
    let mut f = fixture();
    let msix = host_cap(&f.host, CAP_MSIX);
    program_msix_entry(&mut f.dev, 0, 0xfee0_0000, 0x41);
    cfg_write(&mut f.dev, msix + 3, 1, 0x80);
    let group = f.irqs.groups()[1].clone();
    group.take_events();
    // Mask entry 0: the route is masked, and what the device raises meanwhile waits.
    f.dev.write_bar(2, 0x10_000c, &1u32.to_le_bytes());
    assert_eq!(group.updates(), [(0, msg(0xfee0_0000, 0x41), true)]);
    assert_eq!(pba(&mut f.dev), 0);
    assert!(f.host.fire(VFIO_PCI_MSIX_IRQ_INDEX, 0));
    // The guest reads the raise in the PBA, though it went from VFIO to the eventfd.
    assert_eq!(pba(&mut f.dev), 1);
    group.poll_notifiers();
    assert!(group.deliveries().is_empty());
    assert_eq!(pba(&mut f.dev), 1);
    // Unmask: the pending interrupt is delivered and its bit clears.
    f.dev.write_bar(2, 0x10_000c, &0u32.to_le_bytes());
    assert_eq!(group.deliveries(), [(0, msg(0xfee0_0000, 0x41))]);
    assert_eq!(pba(&mut f.dev), 0);
    // The function mask masks every vector without touching the host's set-up.
    f.host.take_set_irqs_calls();
    cfg_write(&mut f.dev, msix + 3, 1, 0xc0);
    assert!(group.vector(0).unwrap().masked && group.vector(1).unwrap().masked);
    assert!(f.host.take_set_irqs_calls().is_empty());
}

#[test]
fn msix_disable_returns_the_host_to_intx() {
    let mut f = fixture();
    let msix = host_cap(&f.host, CAP_MSIX);
    cfg_write(&mut f.dev, msix + 3, 1, 0x80);
    f.host.take_set_irqs_calls();
    cfg_write(&mut f.dev, msix + 3, 1, 0x00);
    let line = f.irqs.legacy_irqs()[0].clone();
    let calls = f.host.take_set_irqs_calls();
    assert_eq!(
        calls.iter().map(|c| c.req).collect::<Vec<_>>(),
        [
            disable(VFIO_PCI_MSIX_IRQ_INDEX),
            enable(VFIO_PCI_INTX_IRQ_INDEX, 1),
            IrqSet {
                flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
                index: VFIO_PCI_INTX_IRQ_INDEX,
                start: 0,
                count: 1
            },
        ]
    );
    assert_eq!(calls[1].fds(), [line.notifier().as_raw_fd()]);
    assert_eq!(f.host.enabled_irq(), Some((VFIO_PCI_INTX_IRQ_INDEX, 1)));
}

#[test]
fn msi_enable_hands_vfio_as_many_eventfds_as_the_guest_enabled() {
    let mut spec = TestDeviceSpec::default();
    spec.msi.as_mut().unwrap().max_vectors = 8;
    let mut f = fixture_with(spec, IntxDelivery::Irqfd);
    let msi = host_cap(&f.host, CAP_MSI);
    cfg_write(&mut f.dev, msi + 4, 4, 0xfee0_0000);
    cfg_write(&mut f.dev, msi + 12, 2, 0x4060);
    f.host.take_set_irqs_calls();
    // Multiple message enable 2: four of the eight vectors.
    cfg_write(&mut f.dev, msi + 2, 2, 0x0021);
    let group = f.irqs.groups()[0].clone();
    let calls = f.host.take_set_irqs_calls();
    assert_eq!(
        calls.iter().map(|c| c.req).collect::<Vec<_>>(),
        [
            disable(VFIO_PCI_INTX_IRQ_INDEX),
            enable(VFIO_PCI_MSI_IRQ_INDEX, 4)
        ]
    );
    assert_eq!(calls[1].fds(), group_fds(group.as_ref(), 4));
    assert_eq!(f.host.enabled_irq(), Some((VFIO_PCI_MSI_IRQ_INDEX, 4)));
    assert!(f.host.fire(VFIO_PCI_MSI_IRQ_INDEX, 3));
    group.poll_notifiers();
    assert_eq!(group.deliveries(), [(3, msg(0xfee0_0000, 0x4063))]);

    // A new vector count while enabled: vfio-pci cannot resize MSI, so disable, then enable.
    cfg_write(&mut f.dev, msi + 2, 2, 0x0011);
    assert_eq!(
        f.host
            .take_set_irqs_calls()
            .iter()
            .map(|c| c.req)
            .collect::<Vec<_>>(),
        [
            disable(VFIO_PCI_MSI_IRQ_INDEX),
            enable(VFIO_PCI_MSI_IRQ_INDEX, 2)
        ]
    );
    assert_eq!(f.dev.host_irq(), HostIrq::Msi(2));
}

#[test]
fn msi_vectors_are_limited_to_what_the_host_offers() {
    let host = Arc::new(TestVfioDevice::new(TestDeviceSpec::default()).unwrap());
    host.set_irq_info(
        VFIO_PCI_MSI_IRQ_INDEX,
        Ok(crate::vfio::IrqInfo {
            flags: crate::vfio::VFIO_IRQ_INFO_EVENTFD,
            index: VFIO_PCI_MSI_IRQ_INDEX,
            count: 1,
        }),
    );
    let (mut dev, _irqs) = try_build(&host, IntxDelivery::Irqfd).unwrap();
    let msi = host_cap(&host, CAP_MSI);
    // Multiple message capable reads 0 (one vector) although the capability says two.
    assert_eq!(cfg_read(&mut dev, msi + 2, 2) & 0x000e, 0);
    cfg_write(&mut dev, msi + 2, 2, 0x0011);
    assert_eq!(dev.host_irq(), HostIrq::Msi(1));
}

#[test]
fn userspace_intx_is_raised_and_unmasked_by_the_subscriber() {
    let f = fixture_with(TestDeviceSpec::default(), IntxDelivery::Userspace);
    let line = f.irqs.legacy_irqs()[0].clone();
    let intx_calls: Vec<_> = f
        .host
        .set_irqs_calls()
        .into_iter()
        .filter(|c| c.req.index == VFIO_PCI_INTX_IRQ_INDEX)
        .collect();
    // Only the trigger: no resample irqfd to hand over.
    assert_eq!(intx_calls.len(), 1);
    assert_ne!(intx_calls[0].fds(), [line.notifier().as_raw_fd()]);

    let mut manager = EventManager::<Box<dyn MutEventSubscriber + Send>>::new().unwrap();
    manager.add_subscriber(Box::new(f.dev.subscriber(Box::new(|_| {}))));
    assert!(f.host.fire(VFIO_PCI_INTX_IRQ_INDEX, 0));
    manager.run_with_timeout(0).unwrap();
    assert_eq!(line.raised(), 1);
    assert!(f.host.intx_masked());
    // The guest's EOI signals the line's resample notifier; the subscriber unmasks INTx.
    line.resample_notifier().write(1).unwrap();
    manager.run_with_timeout(0).unwrap();
    assert_eq!(f.host.intx_unmasks(), 1);
    assert!(!f.host.intx_masked());
}

#[test]
fn err_and_req_notifications_reach_the_handler() {
    let f = fixture();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut manager = EventManager::<Box<dyn MutEventSubscriber + Send>>::new().unwrap();
    manager.add_subscriber(Box::new(
        f.dev
            .subscriber(Box::new(move |e| sink.lock().unwrap().push(e))),
    ));
    assert!(f.host.fire(VFIO_PCI_REQ_IRQ_INDEX, 0));
    manager.run_with_timeout(0).unwrap();
    assert!(f.host.fire(VFIO_PCI_ERR_IRQ_INDEX, 0));
    manager.run_with_timeout(0).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [VfioPciEvent::ReleaseRequest, VfioPciEvent::DeviceError]
    );
}

#[test]
fn reset_returns_device_and_guest_view_to_their_initial_state() {
    let mut f = fixture();
    let msix = host_cap(&f.host, CAP_MSIX);
    f.dev.set_bar_address(0, 0xc000_0000).unwrap();
    f.dev.set_bar_address(2, 0x10_0000_0000).unwrap();
    cfg_write(&mut f.dev, 0x04, 2, 0x0006);
    cfg_write(&mut f.dev, 0x3c, 1, 0x0b);
    program_msix_entry(&mut f.dev, 0, 0xfee0_0000, 0x41);
    cfg_write(&mut f.dev, msix + 3, 1, 0x80);
    let group = f.irqs.groups()[1].clone();
    f.host.take_set_irqs_calls();

    let changes = f.dev.reset().unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|c| matches!(c, BarChange::Unmapped(_))));
    assert_eq!(f.host.resets(), 1);
    // Interrupts off before the reset, back to INTx after it.
    let reqs: Vec<IrqSet> = f.host.take_set_irqs_calls().iter().map(|c| c.req).collect();
    assert_eq!(
        reqs[..2],
        [
            disable(VFIO_PCI_MSIX_IRQ_INDEX),
            enable(VFIO_PCI_INTX_IRQ_INDEX, 1)
        ]
    );
    assert_eq!(reqs.len(), 3);
    assert_eq!(f.host.enabled_irq(), Some((VFIO_PCI_INTX_IRQ_INDEX, 1)));
    assert_eq!(f.dev.host_irq(), HostIrq::Intx);
    assert_eq!(cfg_read(&mut f.dev, 0x04, 2), 0);
    assert_eq!(cfg_read(&mut f.dev, 0x3c, 1), 0);
    assert_eq!(cfg_read(&mut f.dev, msix + 2, 2), 0x0001);
    assert!(group.vector(0).unwrap().masked);
    let mut entry = [0u8; 4];
    f.dev.read_bar(2, 0x10_0000, &mut entry);
    assert_eq!(entry, [0; 4]);
    // BARs stay where the VMM placed them and decode again once the guest enables memory.
    assert_eq!(cfg_read(&mut f.dev, 0x10, 4), 0xc000_0000);
    assert_eq!(cfg_write(&mut f.dev, 0x04, 2, 0x0002).len(), 2);
}

#[test]
fn reset_of_a_device_that_cannot_reset_changes_nothing() {
    let host = Arc::new(TestVfioDevice::new(TestDeviceSpec::default()).unwrap());
    let mut info = host.device_info().unwrap();
    info.flags &= !crate::vfio::VFIO_DEVICE_FLAGS_RESET;
    host.set_device_info(info);
    let (mut dev, _irqs) = try_build(&host, IntxDelivery::Irqfd).unwrap();
    cfg_write(&mut dev, 0x04, 2, 0x0002);
    let before = host.set_irqs_calls().len();
    assert!(matches!(
        dev.reset(),
        Err(VfioPciError::ResetUnsupported { .. })
    ));
    assert_eq!(cfg_read(&mut dev, 0x04, 2), 0x0002);
    assert_eq!(host.set_irqs_calls().len(), before);
    assert_eq!(host.resets(), 0);
}

#[test]
fn dropping_the_device_releases_every_host_interrupt() {
    let f = fixture();
    let host = f.host.clone();
    drop(f);
    assert_eq!(host.enabled_irq(), None);
    assert!(!host.fire(VFIO_PCI_REQ_IRQ_INDEX, 0));
    assert!(!host.fire(VFIO_PCI_ERR_IRQ_INDEX, 0));
}
