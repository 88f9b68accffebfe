//! Group `kernel-edu`: QEMU's edu device driven through the kernel VFIO backends (devices
//! boot), through the cdev (DMA via an iommufd IOAS) and through the group (DMA via a type1
//! container): a DMA round trip through an IOVA we mapped, and interrupts (INTx with unmask,
//! MSI) delivered to eventfds.
//!
//! edu's registers (QEMU `hw/misc/edu.c`, BAR0): 0x24 interrupt status, 0x60 raise interrupt
//! (status |= value), 0x64 acknowledge (status &= !value), 0x80 DMA source, 0x88 DMA
//! destination, 0x90 DMA count, 0x98 DMA command (bit 0 start, bit 1 direction: 0 RAM to
//! device, 1 device to RAM; bit 2 raise interrupt 0x100 when done), device buffer at 0x40000.
//! QEMU 7.2's edu aborts on a DMA of exactly 4096 bytes, so transfers stay below it. Its DMA
//! mask is 28 bits: IOVAs stay below 256 MiB.

use std::time::{Duration, Instant};

use vfio_passthrough::errno::Errno;
use vfio_passthrough::vfio::*;

use super::kernel_support::{
    Check, LabDevice, Route, ensure, eventfd, eventfd_signalled, expect_eq, expect_errno, on,
    wait_eventfd,
};
use crate::lab::case::Case;
use crate::lab::outcome::{Boot, Outcome};
use crate::lab::sysfs::SysRoot;

const IRQ_STATUS: u64 = 0x24;
const IRQ_RAISE: u64 = 0x60;
const IRQ_ACK: u64 = 0x64;
const DMA_SRC: u64 = 0x80;
const DMA_DST: u64 = 0x88;
const DMA_COUNT: u64 = 0x90;
const DMA_CMD: u64 = 0x98;
const DMA_START: u64 = 1;
const DMA_TO_RAM: u64 = 2;
const DEVICE_BUFFER: u64 = 0x40000;
/// Where our buffer is mapped: below edu's 28-bit DMA mask, clear of anything reserved.
const IOVA: u64 = 0x10_0000;
/// Bytes moved each way (edu aborts at exactly 4096).
const TRANSFER: usize = 3000;
/// How long edu gets for a DMA or an interrupt (its DMA fires on a 100 ms timer, under TCG).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    if boot != Boot::Devices {
        return Vec::new();
    }
    let mut cases = Vec::new();
    for route in Route::ALL {
        let on_edu = |what: &str, body: fn(&mut LabDevice) -> Check| {
            Case::kernel_only(format!("{}-{what}", route.name()), move || {
                Outcome::from_result(
                    SysRoot::system()
                        .edu()
                        .map_err(|e| e.to_string())
                        .and_then(|f| LabDevice::open(&f, route))
                        .and_then(|mut d| {
                            d.enable_memory_and_bus_master()?;
                            body(&mut d)
                        }),
                )
            })
        };
        cases.push(on_edu("dma-round-trip", dma_round_trip));
        cases.push(on_edu("intx-to-eventfd-with-unmask", intx));
        cases.push(on_edu("msi-to-eventfd", msi));
    }
    cases
}

fn read_reg(dev: &LabDevice, at: u64) -> Result<u32, String> {
    let mut b = [0u8; 4];
    let n = on(
        format!("edu read at {at:#x}"),
        dev.vfio().region_read(0, at, &mut b),
    )?;
    expect_eq(format!("bytes read at {at:#x}"), n, 4)?;
    Ok(u32::from_le_bytes(b))
}

fn write_reg(dev: &LabDevice, at: u64, value: u32) -> Check {
    let n = on(
        format!("edu write at {at:#x}"),
        dev.vfio().region_write(0, at, &value.to_le_bytes()),
    )?;
    expect_eq(format!("bytes written at {at:#x}"), n, 4)
}

fn write_reg64(dev: &LabDevice, at: u64, value: u64) -> Check {
    let n = on(
        format!("edu write at {at:#x}"),
        dev.vfio().region_write(0, at, &value.to_le_bytes()),
    )?;
    expect_eq(format!("bytes written at {at:#x}"), n, 8)
}

/// Runs one edu DMA and waits for the engine to go idle.
fn dma(dev: &LabDevice, src: u64, dst: u64, count: usize, cmd: u64) -> Check {
    write_reg64(dev, DMA_SRC, src)?;
    write_reg64(dev, DMA_DST, dst)?;
    write_reg64(dev, DMA_COUNT, count as u64)?;
    write_reg64(dev, DMA_CMD, cmd | DMA_START)?;
    let deadline = Instant::now() + TIMEOUT;
    while read_reg(dev, DMA_CMD)? & DMA_START as u32 != 0 {
        ensure(Instant::now() < deadline, || {
            format!("edu DMA {src:#x} -> {dst:#x} still running after {TIMEOUT:?}")
        })?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn dma_round_trip(dev: &mut LabDevice) -> Check {
    let buf = dev.map_buffer(IOVA, 2 * 4096)?;
    let pattern: Vec<u8> = (0..TRANSFER).map(|i| (i * 7 + 3) as u8).collect();
    buf.write(0, &pattern);
    // RAM -> device buffer, then device buffer -> the second page of RAM.
    dma(dev, IOVA, DEVICE_BUFFER, TRANSFER, 0)?;
    dma(dev, DEVICE_BUFFER, IOVA + 4096, TRANSFER, DMA_TO_RAM)?;
    let back = buf.read(4096, TRANSFER);
    let first_diff = back.iter().zip(&pattern).position(|(a, b)| a != b);
    ensure(first_diff.is_none(), || {
        let i = first_diff.unwrap_or(0);
        format!(
            "the round trip through IOVA {IOVA:#x} differs at byte {i}: {:#04x}, expected {:#04x}",
            back[i], pattern[i]
        )
    })
}

fn irq_set(flags: u32, index: u32, count: u32) -> IrqSet {
    IrqSet {
        flags,
        index,
        start: 0,
        count,
    }
}

/// Raises edu interrupt `bit`, waits for `fd`, checks and acknowledges the status.
fn raise_and_wait(
    dev: &LabDevice,
    fd: &vmm_sys_util::eventfd::EventFd,
    bit: u32,
    what: &str,
) -> Check {
    write_reg(dev, IRQ_RAISE, bit)?;
    wait_eventfd(fd, what, TIMEOUT)?;
    expect_eq(
        format!("interrupt status after {what}"),
        read_reg(dev, IRQ_STATUS)?,
        bit,
    )?;
    write_reg(dev, IRQ_ACK, bit)
}

fn intx(dev: &mut LabDevice) -> Check {
    let info = on(
        "GET_IRQ_INFO(INTx)",
        dev.vfio().irq_info(VFIO_PCI_INTX_IRQ_INDEX),
    )?;
    expect_eq("INTx count", info.count, 1)?;
    let want = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    expect_eq("INTx flags", info.flags & want, want)?;
    let fd = eventfd()?;
    on(
        "SET_IRQS(INTx, EVENTFD|TRIGGER)",
        dev.vfio().set_irqs(
            &irq_set(
                VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                VFIO_PCI_INTX_IRQ_INDEX,
                1,
            ),
            &std::os::fd::AsRawFd::as_raw_fd(&fd).to_ne_bytes(),
        ),
    )?;
    raise_and_wait(dev, &fd, 1, "the first INTx")?;
    // INTx is automasked: a second interrupt is held until we unmask.
    write_reg(dev, IRQ_RAISE, 2)?;
    std::thread::sleep(Duration::from_millis(200));
    ensure(!eventfd_signalled(&fd), || {
        "INTx fired again while automasked".into()
    })?;
    on(
        "SET_IRQS(INTx, NONE|UNMASK)",
        dev.vfio().set_irqs(
            &irq_set(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
                VFIO_PCI_INTX_IRQ_INDEX,
                1,
            ),
            &[],
        ),
    )?;
    wait_eventfd(&fd, "INTx after unmask", TIMEOUT)?;
    write_reg(dev, IRQ_ACK, 2)?;
    disable(dev, VFIO_PCI_INTX_IRQ_INDEX)
}

fn msi(dev: &mut LabDevice) -> Check {
    let info = on(
        "GET_IRQ_INFO(MSI)",
        dev.vfio().irq_info(VFIO_PCI_MSI_IRQ_INDEX),
    )?;
    ensure(info.count >= 1, || "edu offers no MSI vector".into())?;
    let fd = eventfd()?;
    // Before MSI is enabled, disabling it is refused (measured on 6.12).
    expect_errno(
        "disabling MSI that is not enabled",
        dev.vfio().set_irqs(
            &irq_set(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                VFIO_PCI_MSI_IRQ_INDEX,
                0,
            ),
            &[],
        ),
        Errno::EINVAL,
    )?;
    on(
        "SET_IRQS(MSI, EVENTFD|TRIGGER)",
        dev.vfio().set_irqs(
            &irq_set(
                VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                VFIO_PCI_MSI_IRQ_INDEX,
                1,
            ),
            &std::os::fd::AsRawFd::as_raw_fd(&fd).to_ne_bytes(),
        ),
    )?;
    raise_and_wait(dev, &fd, 4, "the first MSI")?;
    // Edge-triggered: no unmask needed for the next one.
    raise_and_wait(dev, &fd, 8, "the second MSI")?;
    disable(dev, VFIO_PCI_MSI_IRQ_INDEX)
}

/// `NONE|TRIGGER` with count 0: disables the index.
fn disable(dev: &LabDevice, index: u32) -> Check {
    on(
        format!("SET_IRQS(index {index}, NONE|TRIGGER, count 0)"),
        dev.vfio().set_irqs(
            &irq_set(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                index,
                0,
            ),
            &[],
        ),
    )
}
