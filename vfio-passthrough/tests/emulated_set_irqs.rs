//! `VFIO_DEVICE_SET_IRQS` on emulated devices: every validation rule of
//! `vfio_set_irqs_validate_and_prepare` and `vfio_pci_set_irqs_ioctl`, and INTx masking
//! (automask, unmask, the unmask eventfd, the command register's INTx disable).

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::vfio::*;

const EVENTFD_TRIGGER: u32 = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
const NONE_TRIGGER: u32 = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
const MSIX: u32 = VFIO_PCI_MSIX_IRQ_INDEX;
const MSI: u32 = VFIO_PCI_MSI_IRQ_INDEX;
const INTX: u32 = VFIO_PCI_INTX_IRQ_INDEX;

fn set(flags: u32, index: u32, start: u32, count: u32) -> IrqSet {
    IrqSet {
        flags,
        index,
        start,
        count,
    }
}

#[test]
fn malformed_requests_are_refused_as_the_kernel_refuses_them() {
    let dev = build("emulated:dma-engine");
    let e = eventfd();
    let one = fds(&[e.as_raw_fd()]);
    let irqs = |req: IrqSet, data: &[u8]| dev.set_irqs(&req, data);
    assert_eq!(
        irqs(set(EVENTFD_TRIGGER, 5, 0, 1), &one),
        Err(Errno::EINVAL),
        "index"
    );
    assert_eq!(
        irqs(set(EVENTFD_TRIGGER | 1 << 6, MSIX, 0, 1), &one),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        irqs(
            set(EVENTFD_TRIGGER | VFIO_IRQ_SET_DATA_BOOL, MSIX, 0, 1),
            &one
        ),
        Err(Errno::EINVAL),
        "two data types"
    );
    assert_eq!(
        irqs(set(VFIO_IRQ_SET_ACTION_TRIGGER, MSIX, 0, 1), &one),
        Err(Errno::EINVAL),
        "no data type"
    );
    assert_eq!(
        irqs(set(EVENTFD_TRIGGER, MSIX, 2, 1), &one),
        Err(Errno::EINVAL),
        "start"
    );
    assert_eq!(
        irqs(set(EVENTFD_TRIGGER, MSIX, 1, 2), &one),
        Err(Errno::EINVAL),
        "start + count"
    );
    assert_eq!(
        irqs(set(EVENTFD_TRIGGER, MSIX, 1, u32::MAX - 1), &one),
        Err(Errno::EINVAL),
        "count overflow"
    );
    assert_eq!(
        irqs(set(EVENTFD_TRIGGER, MSIX, 0, 2), &one),
        Err(Errno::EINVAL),
        "short data"
    );
    assert_eq!(
        irqs(
            set(
                VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
                MSIX,
                0,
                2
            ),
            &[1]
        ),
        Err(Errno::EINVAL)
    );
    // An action field with no or several actions picks no handler.
    assert_eq!(
        irqs(set(VFIO_IRQ_SET_DATA_NONE, MSIX, 0, 1), &[]),
        Err(Errno::ENOTTY)
    );
    assert_eq!(
        irqs(
            set(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK,
                INTX,
                0,
                1
            ),
            &[]
        ),
        Err(Errno::ENOTTY)
    );
    // MSI and MSI-X masking is not supported by vfio-pci.
    assert_eq!(
        irqs(
            set(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
                MSIX,
                0,
                1
            ),
            &[]
        ),
        Err(Errno::ENOTTY)
    );
    // ERR and REQ take only TRIGGER.
    assert_eq!(
        irqs(
            set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 3, 0, 1),
            &[]
        ),
        Err(Errno::ENOTTY)
    );
}

#[test]
fn enabling_and_disabling_follow_the_verified_rules() {
    let dev = build("emulated:dma-engine");
    // NONE|TRIGGER with count 0 on an index that is not enabled: EINVAL.
    assert_eq!(
        dev.set_irqs(&set(NONE_TRIGGER, MSIX, 0, 0), &[]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        dev.set_irqs(&set(NONE_TRIGGER, INTX, 0, 0), &[]),
        Err(Errno::EINVAL)
    );
    // EVENTFD|TRIGGER with count 0 on MSI/MSI-X: no vectors to allocate, ERANGE.
    assert_eq!(
        dev.set_irqs(&set(EVENTFD_TRIGGER, MSIX, 0, 0), &[]),
        Err(Errno::ERANGE)
    );
    assert_eq!(
        dev.set_irqs(&set(EVENTFD_TRIGGER, MSI, 0, 0), &[]),
        Err(Errno::ERANGE)
    );

    let e = eventfd();
    set_triggers(&dev, MSIX, 0, &[&e]).unwrap();
    // The device's MSI-X capability now reads enabled.
    assert_ne!(read16(&dev, VFIO_PCI_CONFIG_REGION_INDEX, 0x5a) & 0x8000, 0);
    // One index at a time.
    assert_eq!(set_triggers(&dev, MSI, 0, &[&e]), Err(Errno::EINVAL));
    assert_eq!(set_triggers(&dev, INTX, 0, &[&e]), Err(Errno::EINVAL));
    // NORESIZE: vector 1 was not allocated when MSI-X was enabled with one vector.
    assert_eq!(set_triggers(&dev, MSIX, 1, &[&e]), Err(Errno::EINVAL));
    // Disable, then another index works.
    dev.set_irqs(&set(NONE_TRIGGER, MSIX, 0, 0), &[]).unwrap();
    assert_eq!(read16(&dev, VFIO_PCI_CONFIG_REGION_INDEX, 0x5a) & 0x8000, 0);
    set_triggers(&dev, MSI, 0, &[&e]).unwrap();
    dev.set_irqs(&set(NONE_TRIGGER, MSI, 0, 0), &[]).unwrap();
    set_triggers(&dev, INTX, 0, &[&e]).unwrap();
    // INTx takes exactly one vector.
    assert_eq!(
        dev.set_irqs(&set(EVENTFD_TRIGGER, INTX, 0, 0), &[]),
        Err(Errno::EINVAL)
    );
    dev.set_irqs(&set(NONE_TRIGGER, INTX, 0, 0), &[]).unwrap();
    assert_eq!(
        dev.set_irqs(&set(NONE_TRIGGER, INTX, 0, 0), &[]),
        Err(Errno::EINVAL)
    );
}

#[test]
fn eventfds_are_checked_and_referenced() {
    let dev = build("emulated:dma-engine");
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let not_eventfd = fds(&[file.as_raw_fd()]);
    assert_eq!(
        dev.set_irqs(&set(EVENTFD_TRIGGER, MSIX, 0, 1), &not_eventfd),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        dev.set_irqs(&set(EVENTFD_TRIGGER, MSIX, 0, 1), &fds(&[1 << 29])),
        Err(Errno::EBADF)
    );
    // A failed enable leaves the index disabled: MSI can be enabled now.
    let e = eventfd();
    set_triggers(&dev, MSI, 0, &[&e]).unwrap();
    dev.set_irqs(&set(NONE_TRIGGER, MSI, 0, 0), &[]).unwrap();

    // The device keeps its own reference: closing the caller's copy changes nothing.
    let (a, b) = (eventfd(), eventfd());
    let (a_peer, b_peer) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    set_triggers(&dev, MSIX, 0, &[&a, &b]).unwrap();
    drop((a, b));
    dev.set_irqs(
        &set(
            VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
            MSIX,
            0,
            2,
        ),
        &[0, 1],
    )
    .unwrap();
    assert_eq!(
        (drain(&a_peer), drain(&b_peer)),
        (0, 1),
        "loopback of vector 1 only"
    );

    // -1 de-assigns a vector and leaves the other.
    dev.set_irqs(&set(EVENTFD_TRIGGER, MSIX, 0, 1), &fds(&[-1]))
        .unwrap();
    dev.set_irqs(&set(NONE_TRIGGER, MSIX, 0, 2), &[]).unwrap();
    assert_eq!((drain(&a_peer), drain(&b_peer)), (0, 1));

    // A failure inside a block de-assigns the block's vectors set before it.
    let c = eventfd();
    assert_eq!(
        dev.set_irqs(
            &set(EVENTFD_TRIGGER, MSIX, 0, 2),
            &fds(&[c.as_raw_fd(), file.as_raw_fd()])
        ),
        Err(Errno::EINVAL)
    );
    dev.set_irqs(&set(NONE_TRIGGER, MSIX, 0, 2), &[]).unwrap();
    assert_eq!((drain(&c), drain(&b_peer)), (0, 0));
}

#[test]
fn err_and_req_eventfds_follow_the_single_trigger_rules() {
    let dev = build("emulated:dma-engine");
    for index in [VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX] {
        assert_eq!(
            dev.set_irqs(&set(NONE_TRIGGER, index, 0, 1), &[]),
            Err(Errno::EINVAL)
        );
        let e = eventfd();
        set_triggers(&dev, index, 0, &[&e]).unwrap();
        dev.set_irqs(&set(NONE_TRIGGER, index, 0, 1), &[]).unwrap();
        assert_eq!(drain(&e), 1);
        assert_eq!(
            dev.set_irqs(
                &set(
                    VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
                    index,
                    0,
                    0
                ),
                &[]
            ),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            dev.set_irqs(&set(EVENTFD_TRIGGER, index, 0, 1), &fds(&[-2])),
            Err(Errno::EINVAL)
        );
        dev.set_irqs(&set(NONE_TRIGGER, index, 0, 0), &[]).unwrap();
        assert_eq!(
            dev.set_irqs(&set(NONE_TRIGGER, index, 0, 1), &[]),
            Err(Errno::EINVAL)
        );
    }
}

fn intx_action(dev: &dyn VfioDevice, data: u32, action: u32, payload: &[u8]) -> Result<(), Errno> {
    dev.set_irqs(&set(data | action, INTX, 0, 1), payload)
}

#[test]
fn intx_is_automasked_and_redelivered_on_unmask_while_asserted() {
    let dev = build("emulated:mailbox");
    let trigger = eventfd();
    // MASK and UNMASK need INTx enabled.
    assert_eq!(
        intx_action(
            &dev,
            VFIO_IRQ_SET_DATA_NONE,
            VFIO_IRQ_SET_ACTION_UNMASK,
            &[]
        ),
        Err(Errno::EINVAL)
    );
    set_triggers(&dev, INTX, 0, &[&trigger]).unwrap();
    let doorbell = || write32(&dev, 0, 8, 1);
    let ack = || write32(&dev, 0, 0xc, 1);
    let unmask = || {
        intx_action(
            &dev,
            VFIO_IRQ_SET_DATA_NONE,
            VFIO_IRQ_SET_ACTION_UNMASK,
            &[],
        )
        .unwrap()
    };

    doorbell();
    assert_eq!(drain(&trigger), 1);
    doorbell();
    assert_eq!(drain(&trigger), 0, "automasked");
    unmask();
    assert_eq!(
        drain(&trigger),
        1,
        "still asserted: sent again, still masked"
    );
    ack();
    unmask();
    assert_eq!(drain(&trigger), 0);
    doorbell();
    assert_eq!(drain(&trigger), 1);
    ack();
    unmask();

    // Explicit masking, with NONE and BOOL; EVENTFD masking is not implemented by vfio-pci.
    intx_action(&dev, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_ACTION_MASK, &[1]).unwrap();
    doorbell();
    assert_eq!(drain(&trigger), 0);
    intx_action(
        &dev,
        VFIO_IRQ_SET_DATA_BOOL,
        VFIO_IRQ_SET_ACTION_UNMASK,
        &[0],
    )
    .unwrap();
    assert_eq!(drain(&trigger), 0, "BOOL false does nothing");
    intx_action(
        &dev,
        VFIO_IRQ_SET_DATA_BOOL,
        VFIO_IRQ_SET_ACTION_UNMASK,
        &[1],
    )
    .unwrap();
    assert_eq!(drain(&trigger), 1);
    assert_eq!(
        intx_action(
            &dev,
            VFIO_IRQ_SET_DATA_EVENTFD,
            VFIO_IRQ_SET_ACTION_MASK,
            &fds(&[-1])
        ),
        Err(Errno::ENOTTY)
    );
    ack();
    unmask();

    // Loopback trigger.
    intx_action(
        &dev,
        VFIO_IRQ_SET_DATA_NONE,
        VFIO_IRQ_SET_ACTION_TRIGGER,
        &[],
    )
    .unwrap();
    assert_eq!(drain(&trigger), 1);
    // De-assigning the trigger keeps INTx enabled (a second disable would fail otherwise).
    intx_action(
        &dev,
        VFIO_IRQ_SET_DATA_EVENTFD,
        VFIO_IRQ_SET_ACTION_TRIGGER,
        &fds(&[-1]),
    )
    .unwrap();
    doorbell();
    assert_eq!(drain(&trigger), 0);
    dev.set_irqs(&set(NONE_TRIGGER, INTX, 0, 0), &[]).unwrap();
}

#[test]
fn the_unmask_eventfd_unmasks_like_the_ioctl() {
    let dev = build("emulated:mailbox");
    let trigger = eventfd();
    let resample = eventfd();
    set_triggers(&dev, INTX, 0, &[&trigger]).unwrap();
    intx_action(
        &dev,
        VFIO_IRQ_SET_DATA_EVENTFD,
        VFIO_IRQ_SET_ACTION_UNMASK,
        &fds(&[resample.as_raw_fd()]),
    )
    .unwrap();
    write32(&dev, 0, 8, 1);
    assert_eq!(drain(&trigger), 1);
    // The guest's EOI: the line is still asserted, so the interrupt comes again.
    resample.write(1).unwrap();
    assert_eq!(wait_signal(&trigger, Duration::from_secs(10)), 1);
    // Still masked: a new doorbell sends nothing until the next EOI.
    write32(&dev, 0, 0xc, 1);
    write32(&dev, 0, 8, 1);
    assert_eq!(drain(&trigger), 0);
    resample.write(1).unwrap();
    assert_eq!(wait_signal(&trigger, Duration::from_secs(10)), 1);
    // Removing the unmask eventfd stops it from unmasking.
    intx_action(
        &dev,
        VFIO_IRQ_SET_DATA_EVENTFD,
        VFIO_IRQ_SET_ACTION_UNMASK,
        &fds(&[-1]),
    )
    .unwrap();
    resample.write(1).unwrap();
    assert_eq!(wait_signal(&trigger, Duration::from_millis(200)), 0);
}

#[test]
fn the_command_registers_intx_disable_masks_intx() {
    let dev = build("emulated:mailbox");
    let trigger = eventfd();
    set_triggers(&dev, INTX, 0, &[&trigger]).unwrap();
    let cmd = read16(&dev, VFIO_PCI_CONFIG_REGION_INDEX, 4);
    write16(&dev, VFIO_PCI_CONFIG_REGION_INDEX, 4, cmd | 0x400);
    assert_ne!(
        read16(&dev, VFIO_PCI_CONFIG_REGION_INDEX, 4) & 0x400,
        0,
        "virtualized"
    );
    write32(&dev, 0, 8, 1);
    assert_eq!(drain(&trigger), 0);
    write16(&dev, VFIO_PCI_CONFIG_REGION_INDEX, 4, cmd & !0x400);
    assert_eq!(drain(&trigger), 1, "re-enabled while asserted");
}
