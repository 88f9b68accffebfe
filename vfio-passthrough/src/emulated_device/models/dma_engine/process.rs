//! Running the ring: fetch the descriptor at `HEAD` (without PASID), check it, move the data
//! through the DMA port (with the descriptor's PASID when PASID is enabled) or device memory,
//! write the completion record, advance, interrupt; on a failure, record it and halt.
//!
//! The device runs synchronously with what lets it run: the doorbell, the write that clears an
//! error or enables it, bus mastering being turned on, or the migration state allowing DMA
//! again.

use super::DmaEngine;
use super::descriptor::{
    COMPLETION_SIZE, DESCRIPTOR_SIZE, Descriptor, Opcode, Operand, Operation, Status,
    completion_record,
};
use super::devmem::DEVMEM_SIZE;
use super::regs::{CTRL_ENABLE, STATUS_ERROR, STATUS_HALTED};
use crate::host::dma::DmaFault;

/// Bytes moved per step of an operation.
const CHUNK: usize = 64 << 10;
/// Interrupt vectors.
const VECTOR_COMPLETION: u32 = 0;
const VECTOR_ERROR: u32 = 1;

/// A failed descriptor.
#[derive(Debug, Clone, Copy)]
struct Failure {
    status: Status,
    fault_addr: Option<u64>,
    bytes_done: u64,
    /// Where to write the completion record (and with which PASID), if it can be written.
    record: Option<(u64, Option<u32>)>,
}

impl DmaEngine {
    /// Whether the device may process descriptors now.
    fn may_run(&self) -> bool {
        self.operating
            && self.dma_allowed
            && self.bus_master()
            && self.regs.ctrl & CTRL_ENABLE != 0
            && self.regs.status & STATUS_HALTED == 0
    }

    /// Processes descriptors until the ring is empty, the device halts on an error, or it may
    /// not run.
    pub(super) fn process(&mut self) {
        let size = self.regs.queue_size.max(1);
        // A queue shrunk under pending work wraps its indexes into the new size.
        self.regs.head %= size;
        self.regs.tail %= size;
        while self.may_run() && self.regs.head != self.regs.tail {
            match self.run_one() {
                Ok(interrupt) => {
                    self.regs.completed = self.regs.completed.wrapping_add(1);
                    self.regs.head = (self.regs.head + 1) % size;
                    if interrupt {
                        self.raise(VECTOR_COMPLETION);
                    }
                }
                Err(f) => self.fail(f),
            }
        }
    }

    /// Runs the descriptor at `HEAD`; `Ok(interrupt)` when it succeeded.
    fn run_one(&mut self) -> Result<bool, Failure> {
        let at = self
            .regs
            .queue_base
            .wrapping_add(u64::from(self.regs.head) * DESCRIPTOR_SIZE);
        let mut raw = [0u8; DESCRIPTOR_SIZE as usize];
        self.dma.read(None, at, &mut raw).map_err(|f| Failure {
            status: Status::DescFault,
            fault_addr: Some(f.iova),
            bytes_done: 0,
            record: None,
        })?;
        let desc = Descriptor::parse(&raw);
        let pasid = desc.requested_pasid().filter(|_| self.pasid_enabled());
        let record = (desc.completion != 0).then_some((desc.completion, pasid));
        let op = desc.check(DEVMEM_SIZE).map_err(|status| Failure {
            status,
            fault_addr: None,
            bytes_done: 0,
            record,
        })?;
        let result = self.execute(&op, pasid).map_err(|mut f| {
            f.record = record;
            f
        })?;
        if let Some((iova, pasid)) = record {
            let bytes = completion_record(Status::Success, result, op.len);
            self.dma.write(pasid, iova, &bytes).map_err(|f| Failure {
                status: Status::DstFault,
                fault_addr: Some(f.iova),
                bytes_done: op.len,
                record: None,
            })?;
        }
        Ok(op.interrupt)
    }

    /// Records a failed descriptor and halts with `HEAD` on it.
    fn fail(&mut self, f: Failure) {
        if let Some((iova, pasid)) = f.record {
            let bytes = completion_record(f.status, 0, f.bytes_done);
            // "When it can": a record that does not translate is simply not written.
            let _ = self.dma.write(pasid, iova, &bytes[..COMPLETION_SIZE]);
        }
        let r = &mut self.regs;
        r.error_code = f.status as u32;
        r.error_desc = r.head;
        if let Some(addr) = f.fault_addr {
            r.fault_addr = addr;
        }
        r.status |= STATUS_ERROR | STATUS_HALTED;
        log::debug!(
            "dma-engine: descriptor {} failed with {:?} (fault address {:?})",
            r.head,
            f.status,
            f.fault_addr
        );
        self.raise(VECTOR_ERROR);
    }

    /// Reads an operand (`src` selects the fault kind).
    fn read_operand(
        &self,
        operand: Operand,
        offset: u64,
        pasid: Option<u32>,
        buf: &mut [u8],
        src: bool,
    ) -> Result<(), Failure> {
        let status = if src {
            Status::SrcFault
        } else {
            Status::DstFault
        };
        match operand {
            Operand::Iova(a) => self
                .dma
                .read(pasid, a.wrapping_add(offset), buf)
                .map_err(|f| fault(status, &f, offset)),
            Operand::Devmem(o) => self.mem.read(o + offset, buf).map_err(|_| Failure {
                status: Status::DevmemRange,
                fault_addr: None,
                bytes_done: offset,
                record: None,
            }),
        }
    }

    /// Writes the destination operand at `offset` of the operation.
    fn write_dst(
        &self,
        operand: Operand,
        offset: u64,
        pasid: Option<u32>,
        data: &[u8],
    ) -> Result<(), Failure> {
        match operand {
            Operand::Iova(a) => {
                let start = a.wrapping_add(offset);
                self.dma.write(pasid, start, data).map_err(|f| {
                    // The pages before the faulting one were written.
                    let partial = f.iova.wrapping_sub(start).min(data.len() as u64);
                    fault(Status::DstFault, &f, offset + partial)
                })
            }
            Operand::Devmem(o) => self.mem.write(o + offset, data).map_err(|_| Failure {
                status: Status::DevmemRange,
                fault_addr: None,
                bytes_done: offset,
                record: None,
            }),
        }
    }

    /// Runs a checked operation; returns the completion record's `result`.
    fn execute(&self, op: &Operation, pasid: Option<u32>) -> Result<u32, Failure> {
        let mut a = vec![0u8; CHUNK.min(op.len as usize)];
        let mut b = vec![
            0u8;
            if op.opcode == Opcode::Compare {
                a.len()
            } else {
                0
            }
        ];
        let mut offset = 0u64;
        while offset < op.len {
            let n = (op.len - offset).min(CHUNK as u64) as usize;
            match op.opcode {
                Opcode::Copy => {
                    self.read_operand(op.src, offset, pasid, &mut a[..n], true)?;
                    self.write_dst(op.dst, offset, pasid, &a[..n])?;
                }
                Opcode::Fill => {
                    for (i, byte) in a[..n].iter_mut().enumerate() {
                        *byte = op.pattern[((offset + i as u64) % 8) as usize];
                    }
                    self.write_dst(op.dst, offset, pasid, &a[..n])?;
                }
                Opcode::Compare => {
                    self.read_operand(op.src, offset, pasid, &mut a[..n], true)?;
                    self.read_operand(op.dst, offset, pasid, &mut b[..n], false)?;
                    if a[..n] != b[..n] {
                        return Ok(1);
                    }
                }
            }
            offset += n as u64;
        }
        Ok(0)
    }
}

fn fault(status: Status, f: &DmaFault, bytes_done: u64) -> Failure {
    Failure {
        status,
        fault_addr: Some(f.iova),
        bytes_done,
        record: None,
    }
}
