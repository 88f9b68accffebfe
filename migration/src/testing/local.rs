//! A user-side view of an in-process engine and fake device, as the emulated host gives one:
//! `MigrationDevice` and `DataStream` over a shared `MigrationEngine` + `FakeDevice`, recording
//! every state request in a log shared between devices (to check multi-device ordering).

use std::cell::RefCell;
use std::rc::Rc;

use super::fake_device::FakeDevice;
use crate::engine::{MigrationEngine, SessionId};
use crate::errno::Errno;
use crate::user_v2::{DataStream, MigrationDevice, ReadOutcome};
use crate::vfio_v2::{DeviceState, PrecopyInfo};

#[derive(Debug)]
pub(crate) struct Node {
    pub engine: MigrationEngine,
    pub dev: FakeDevice,
}

/// `(device index, requested state)`, in request order; `None` for a reset.
pub(crate) type Log = Rc<RefCell<Vec<(usize, Option<DeviceState>)>>>;

#[derive(Debug, Clone)]
pub(crate) struct LocalDevice {
    pub node: Rc<RefCell<Node>>,
    pub index: usize,
    pub log: Log,
}

impl LocalDevice {
    pub(crate) fn new(flags: u64, dev: FakeDevice, index: usize, log: &Log) -> Self {
        LocalDevice {
            node: Rc::new(RefCell::new(Node {
                engine: MigrationEngine::new(flags).unwrap(),
                dev,
            })),
            index,
            log: log.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct LocalStream {
    node: Rc<RefCell<Node>>,
    id: SessionId,
}

impl MigrationDevice for LocalDevice {
    type Stream = LocalStream;

    fn migration_flags(&self) -> Result<u64, Errno> {
        Ok(self.node.borrow().engine.flags())
    }

    fn state(&self) -> Result<DeviceState, Errno> {
        Ok(self.node.borrow().engine.state())
    }

    fn set_state(&mut self, state: DeviceState) -> Result<Option<LocalStream>, Errno> {
        self.log.borrow_mut().push((self.index, Some(state)));
        let mut node = self.node.borrow_mut();
        let Node { engine, dev } = &mut *node;
        let opened = engine.set_state(dev, state).map_err(|e| e.errno())?;
        Ok(opened.map(|id| LocalStream {
            node: self.node.clone(),
            id,
        }))
    }

    fn data_size(&self) -> Result<u64, Errno> {
        let node = self.node.borrow();
        Ok(node.engine.data_size(&node.dev))
    }

    fn reset(&mut self) -> Result<(), Errno> {
        self.log.borrow_mut().push((self.index, None));
        let mut node = self.node.borrow_mut();
        let Node { engine, dev } = &mut *node;
        engine.reset(dev);
        Ok(())
    }
}

impl DataStream for LocalStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, Errno> {
        let mut node = self.node.borrow_mut();
        let Node { engine, dev } = &mut *node;
        ReadOutcome::from_read_result(engine.read(dev, self.id, buf).map_err(|e| e.errno()))
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        let mut node = self.node.borrow_mut();
        let Node { engine, dev } = &mut *node;
        engine.write(dev, self.id, data).map_err(|e| e.errno())
    }

    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno> {
        let mut node = self.node.borrow_mut();
        let Node { engine, dev } = &mut *node;
        engine.precopy_info(dev, self.id).map_err(|e| e.errno())
    }
}
