//! Tests of the passthrough PCI device against the in-memory [`TestVfioDevice`].

mod bars;
mod config_space;
mod interrupts;
mod malformed;

use std::sync::Arc;

use devices::pci::{BarChange, PciDevice, walk_capabilities};
use devices::test_utils::RecordingInterruptManager;

use super::test_utils::{TestDeviceSpec, TestVfioDevice};
use super::{IntxDelivery, PasidSupport, VfioPciDevice, VfioPciDeviceConfig, VfioPciError};

/// The GSI the tests wire INTx to.
const GSI: u32 = 10;

/// A passthrough device over a test device, with the recording interrupt manager it used.
struct Fixture {
    host: Arc<TestVfioDevice>,
    irqs: Arc<RecordingInterruptManager>,
    dev: VfioPciDevice,
}

fn config(delivery: IntxDelivery) -> VfioPciDeviceConfig {
    VfioPciDeviceConfig {
        name: "test:dma".into(),
        intx_gsi: GSI,
        intx_delivery: delivery,
        pasid: None,
    }
}

/// Builds the passthrough device of `host`.
fn try_build(
    host: &Arc<TestVfioDevice>,
    delivery: IntxDelivery,
) -> Result<(VfioPciDevice, Arc<RecordingInterruptManager>), VfioPciError> {
    let irqs = Arc::new(RecordingInterruptManager::with_notifiers());
    let dev = VfioPciDevice::new(host.clone(), irqs.as_ref(), config(delivery))?;
    Ok((dev, irqs))
}

fn fixture_with(spec: TestDeviceSpec, delivery: IntxDelivery) -> Fixture {
    let host = Arc::new(TestVfioDevice::new(spec).unwrap());
    let (dev, irqs) = try_build(&host, delivery).unwrap();
    Fixture { host, irqs, dev }
}

fn fixture() -> Fixture {
    fixture_with(TestDeviceSpec::default(), IntxDelivery::Irqfd)
}

fn cfg_read(dev: &mut VfioPciDevice, offset: u16, len: usize) -> u32 {
    let mut data = [0u8; 4];
    dev.read_config(offset, &mut data[..len]);
    u32::from_le_bytes(data)
}

fn cfg_write(dev: &mut VfioPciDevice, offset: u16, len: usize, value: u32) -> Vec<BarChange> {
    dev.write_config(offset, &value.to_le_bytes()[..len])
}

/// The offset of standard capability `id` on the host device.
fn host_cap(host: &TestVfioDevice, id: u8) -> u16 {
    walk_capabilities(|o| host.config_read(o, 1) as u8)
        .into_iter()
        .find(|c| c.id == u16::from(id))
        .map(|c| c.offset)
        .expect("the test device has this capability")
}
